//! Command-line definitions and dispatch. `main` only maps the result to an
//! exit code: 0 unchanged, 2 changed (or would change), 1 error.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, NodeSpec, RawConfig, Sources};
use crate::error::{Error, Result};
use crate::unit::{self, UnitSpec};
use crate::{render, write};

const EXAMPLES: &str = "\
Examples:
  podsnat render --config /etc/podsnat/config.toml
  podsnat render --flannel-env /run/flannel/subnet.env --bridge docker0
  podsnat write --config /etc/podsnat/config.toml --check --diff
  podsnat write --flannel-env /run/flannel/subnet.env --config /etc/podsnat/rest.toml

Exit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error.";

/// `podsnat --version`: the version and the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PODSNAT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "podsnat",
    version = VERSION,
    about = "Keep pod source IPs across Flannel hosts: render, check and atomically write the node's nat table.",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the nat table (iptables-restore format) to stdout.
    #[command(after_help = "Example:\n  podsnat render --config examples/flannel-docker.toml")]
    Render(SpecArgs),
    /// Put the nat table into the rules file, keeping its other tables.
    #[command(
        after_help = "Examples:\n  podsnat write --config node.toml --check --diff   # preview, exit 2 if it would change\n  podsnat write --config node.toml --output /etc/sysconfig/iptables\n\nExit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error."
    )]
    Write(WriteArgs),
    /// Install podsnat.service, which restores the nat table at boot.
    #[command(
        after_help = "Examples:\n  podsnat install-unit --check --diff\n  podsnat install-unit --after flannel.service --after docker.service\n  podsnat install-unit --root /srv/images/node --no-enable\n\nNever starts the unit: a whole-table restore at runtime would wipe kube-proxy's rules.\nExit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error."
    )]
    InstallUnit(InstallUnitArgs),
    /// Check, in rule order, that pod traffic to the cluster keeps its source IP and egress is masqueraded.
    #[command(
        after_help = "Examples:\n  podsnat verify --config /etc/podsnat/config.toml                 # the live table\n  podsnat verify --config node.toml --file golden/iptables.nat     # a rules file, for review\n  podsnat verify --config node.toml --repair --check               # show the --noflush fix\n\nExit codes: 0 ok, 2 drift (or, with --repair, repaired or would repair), 1 error or cannot decide."
    )]
    Verify(VerifyArgs),
    /// Render or check every node's golden files from one inventory.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// Print the man page or a shell completion script (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// podsnat(8) in roff.
    Man,
    /// A completion script for bash, zsh or fish.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Write DIR/<node>/iptables.nat and DIR/<node>/podsnat.service for every node.
    #[command(
        after_help = "Example:\n  podsnat fleet render --inventory inventory.toml --out-dir golden\n\nExit codes: 0 nothing changed, 2 files written or pruned, 1 error."
    )]
    Render(FleetArgs),
    /// Compare the committed golden files with a fresh render; change nothing.
    #[command(
        after_help = "Example (in CI):\n  podsnat fleet check --inventory inventory.toml --out-dir golden\n\nExit codes: 0 all match, 2 a file differs or a node directory is stale (diffs printed), 1 error."
    )]
    Check(FleetArgs),
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The inventory (TOML): cluster-wide settings, [unit], and [[nodes]].
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Where the per-node directories live.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// (render) Remove directories of nodes that are no longer in the inventory.
    #[arg(long)]
    pub prune: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Where the node's settings come from. Flags override subnet.env, which
/// must agree with the config file where both set a value.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// TOML config (see the README for the keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// flannel's subnet.env: FLANNEL_NETWORK and FLANNEL_SUBNET give cluster_cidr and pod_subnet.
    #[arg(long, value_name = "FILE")]
    pub flannel_env: Option<PathBuf>,
    /// The whole pod network (flannel's Network), e.g. 172.7.0.0/16.
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<String>,
    /// This node's pod subnet, e.g. 172.7.21.0/24.
    #[arg(long, value_name = "CIDR")]
    pub pod_subnet: Option<String>,
    /// The bridge the pods hang off [default: docker0].
    #[arg(long, value_name = "IFACE")]
    pub bridge: Option<String>,
    /// Another destination that keeps the pod source IP; repeatable. Replaces the config's list.
    #[arg(long = "no-masquerade", value_name = "CIDR")]
    pub no_masquerade: Vec<String>,
    /// Add --random-fully to podsnat's MASQUERADE rules.
    #[arg(long)]
    pub random_fully: bool,
    /// Emit docker's nat skeleton (the default).
    #[arg(long, overrides_with = "no_docker")]
    pub docker: bool,
    /// Do not emit docker's nat skeleton.
    #[arg(long)]
    pub no_docker: bool,
    /// "guard" (default; survives docker restarts) or "classic" (the one-rule hand fix).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
}

impl SpecArgs {
    pub fn load(&self) -> Result<NodeSpec> {
        let docker = match (self.docker, self.no_docker) {
            (_, true) => Some(false),
            (true, false) => Some(true),
            (false, false) => None,
        };
        let flags = RawConfig {
            cluster_cidr: self.cluster_cidr.clone(),
            pod_subnet: self.pod_subnet.clone(),
            bridge: self.bridge.clone(),
            no_masquerade: (!self.no_masquerade.is_empty()).then(|| self.no_masquerade.clone()),
            random_fully: self.random_fully.then_some(true),
            docker,
            mode: self.mode.clone(),
        };
        config::load(Sources {
            config: self.config.as_deref(),
            flannel_env: self.flannel_env.as_deref(),
            flags,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// The rules file to update [default: /etc/sysconfig/iptables, or
    /// /etc/iptables/rules.v4 where /etc/sysconfig does not exist (Debian)].
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Prefix for --output, for staging a node's files under a directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Change nothing; exit 2 if the file would change.
    #[arg(long)]
    pub check: bool,
    /// Print a unified diff of the file.
    #[arg(long)]
    pub diff: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Skip `iptables-restore --test` on the new file.
    #[arg(long)]
    pub no_test: bool,
    /// The iptables-restore used for the test (e.g. iptables-legacy-restore).
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-restore")]
    pub iptables_restore: String,
}

#[derive(Debug, Args)]
pub struct InstallUnitArgs {
    /// Install under this directory instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// A unit that creates the broad MASQUERADE rule; repeatable [default: flanneld.service docker.service].
    #[arg(long = "after", value_name = "UNIT")]
    pub after: Vec<String>,
    /// A unit that fills the nat table later; repeatable [default: kubelet.service kube-proxy.service].
    #[arg(long = "before", value_name = "UNIT")]
    pub before: Vec<String>,
    /// The rules file `podsnat write` keeps (absolute) [default: as for
    /// `write --output`, under the same --root].
    #[arg(long, value_name = "PATH")]
    pub file: Option<String>,
    /// The iptables-restore the unit runs (absolute), e.g. /usr/sbin/iptables-legacy-restore.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/usr/sbin/iptables-restore"
    )]
    pub iptables_restore: String,
    /// Enable the unit: the multi-user.target.wants link (the default).
    #[arg(long, overrides_with = "no_enable")]
    pub enable: bool,
    /// Do not create the wants link (an existing one is left as it is).
    #[arg(long)]
    pub no_enable: bool,
    /// Also install podsnat-verify.service (after every docker start) and
    /// podsnat-verify.timer (every 5 minutes): `podsnat verify --repair`.
    #[arg(long)]
    pub verify_timer: bool,
    /// With --verify-timer: the podsnat binary the verify service runs.
    #[arg(long, value_name = "PATH", default_value = "/usr/sbin/podsnat")]
    pub podsnat: String,
    /// With --verify-timer: the node's podsnat config.
    #[arg(long, value_name = "PATH", default_value = "/etc/podsnat/config.toml")]
    pub config: String,
    /// Change nothing; exit 2 if anything would change.
    #[arg(long)]
    pub check: bool,
    /// Print a unified diff of the unit files.
    #[arg(long)]
    pub diff: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

impl InstallUnitArgs {
    fn spec(&self) -> Result<UnitSpec> {
        let or_default = |given: &[String], default: &[&str]| -> Vec<String> {
            if given.is_empty() {
                default.iter().map(|s| s.to_string()).collect()
            } else {
                given.to_vec()
            }
        };
        UnitSpec::parse(
            &or_default(&self.after, &unit::DEFAULT_AFTER),
            &or_default(&self.before, &unit::DEFAULT_BEFORE),
            self.file
                .as_deref()
                .unwrap_or_else(|| default_rules_file(&self.root)),
            &self.iptables_restore,
        )
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Evaluate this rules file instead of the live table.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Put podsnat's exclusion back above a shadowing rule with one
    /// `iptables-restore --noflush` transaction; nothing else changes.
    #[arg(long, conflicts_with = "file")]
    pub repair: bool,
    /// With --repair: print the transaction, change nothing.
    #[arg(long, requires = "repair")]
    pub check: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The iptables-save that reads the live table (e.g. iptables-legacy-save).
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-save")]
    pub iptables_save: String,
    /// The iptables-restore that applies a repair.
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-restore")]
    pub iptables_restore: String,
}

/// What a command did, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unchanged,
    Changed,
    /// Exit 1 after a report that already says why (e.g. cannot decide).
    Failed,
}

/// Where the rules file lives by default on the machine under `root`:
/// RHEL-like systems restore /etc/sysconfig/iptables; Debian has no
/// /etc/sysconfig and keeps its rules in /etc/iptables/rules.v4.
pub fn default_rules_file(root: &Path) -> &'static str {
    if under_root(root, Path::new("/etc/sysconfig")).is_dir() {
        "/etc/sysconfig/iptables"
    } else {
        "/etc/iptables/rules.v4"
    }
}

/// `root` + `path`, where an absolute `path` is taken inside `root`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    if root == Path::new("/") {
        return path.to_owned();
    }
    root.join(path.strip_prefix("/").unwrap_or(path))
}

pub fn run(cli: Cli) -> Result<Status> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let status = match cli.command {
        Command::Render(spec) => {
            let table = render::nat_table(&spec.load()?);
            emit(&mut out, &table)?;
            Status::Unchanged
        }
        Command::Write(args) => {
            let table = render::nat_table(&args.spec.load()?);
            let opts = write::Options {
                check: args.check,
                diff: args.diff,
                no_fsync: false,
            };
            let test_with = (!args.no_test).then_some(args.iptables_restore.as_str());
            let output = args
                .output
                .clone()
                .unwrap_or_else(|| PathBuf::from(default_rules_file(&args.root)));
            let path = under_root(&args.root, &output);
            let outcome = write::write_nat(&table, &path, opts, test_with)?;
            let text = match args.format {
                Format::Json => json(&outcome)?,
                Format::Text => {
                    let f = &outcome.file;
                    format!(
                        "{}{}: {} ({} rules, sha256 {})\n",
                        f.diff.as_deref().unwrap_or(""),
                        verb(f.changed, args.check),
                        f.path.display(),
                        outcome.rules,
                        f.sha256
                    )
                }
            };
            emit(&mut out, &text)?;
            changed_status(outcome.file.changed)
        }
        Command::InstallUnit(args) => {
            let spec = args.spec()?;
            let verify = args
                .verify_timer
                .then(|| unit::VerifySpec::parse(&args.podsnat, &args.config, &spec.restore))
                .transpose()?;
            let opts = write::Options {
                check: args.check,
                diff: args.diff,
                no_fsync: false,
            };
            let outcome = unit::install(&spec, verify.as_ref(), &args.root, !args.no_enable, opts)?;
            let text = match args.format {
                Format::Json => json(&outcome)?,
                Format::Text => {
                    let mut t = String::new();
                    for u in &outcome.units {
                        t += &format!(
                            "{}{}: {} (sha256 {})\n",
                            u.diff.as_deref().unwrap_or(""),
                            verb(u.changed, args.check),
                            u.path.display(),
                            u.sha256
                        );
                    }
                    for l in &outcome.links {
                        t += &format!(
                            "{}: {} -> {}\n",
                            verb(l.changed, args.check),
                            l.path.display(),
                            l.target.display()
                        );
                    }
                    t + &format!("daemon-reload: {}\n", outcome.daemon_reload)
                }
            };
            emit(&mut out, &text)?;
            changed_status(outcome.changed)
        }
        Command::Verify(args) => run_verify(&args, &mut out)?,
        Command::Fleet(cmd) => run_fleet(cmd, &mut out)?,
        Command::Generate { what } => {
            let text = match what {
                GenerateCommand::Man => crate::generate::man_page(),
                GenerateCommand::Completion { shell } => crate::generate::completion(shell),
            }
            .map_err(|e| Error::io("<generate>", "cannot render", e))?;
            emit(&mut out, &text)?;
            Status::Unchanged
        }
    };
    Ok(status)
}

fn run_verify(args: &VerifyArgs, out: &mut impl Write) -> Result<Status> {
    use crate::verify::{self, Status as V};
    let spec = args.spec.load()?;
    let (source, text) = match &args.file {
        Some(path) => (path.display().to_string(), config::read_text(path)?),
        None => (
            format!("{} -t nat", args.iptables_save),
            crate::system::save_nat(&args.iptables_save)?,
        ),
    };
    let tables = crate::rules_file::parse(&text).map_err(|e| Error::Syntax {
        path: source.clone(),
        message: e.to_string(),
    })?;
    let table = tables
        .iter()
        .find(|t| t.name == "nat")
        .ok_or_else(|| Error::Syntax {
            path: source.clone(),
            message: "has no *nat table".into(),
        })?;
    let report = verify::evaluate(&spec, table);
    let exit = |r: &verify::Report| match r.status {
        V::Ok => Status::Unchanged,
        V::Drift => Status::Changed,
        V::Undecided => Status::Failed,
    };
    if !args.repair {
        let shown = match args.format {
            Format::Json => json(&report)?,
            Format::Text => verify::text(&report),
        };
        emit(out, &shown)?;
        return Ok(exit(&report));
    }
    let repair = verify::plan_repair(&spec, table)
        .map_err(|e| Error::Usage(format!("cannot repair: {e}")))?;
    let Some(repair) = repair else {
        let mut shown = verify::text(&report);
        if report.status == V::Drift {
            shown += "repair: not possible at runtime; only pod→cluster drift is repaired. \
                      The table is restored at the next boot.\n";
        } else {
            shown += "repair: nothing to do\n";
        }
        match args.format {
            Format::Json => emit(
                out,
                &json(&serde_json::json!({"before": report, "repair": null}))?,
            )?,
            Format::Text => emit(out, &shown)?,
        }
        return Ok(exit(&report));
    };
    if args.check {
        match args.format {
            Format::Json => emit(
                out,
                &json(&serde_json::json!({"before": report, "repair": repair, "applied": false}))?,
            )?,
            Format::Text => emit(
                out,
                &format!(
                    "{}would repair with `{} --noflush`:\n{}",
                    verify::text(&report),
                    args.iptables_restore,
                    repair.transaction
                ),
            )?,
        }
        return Ok(Status::Changed);
    }
    crate::system::restore_noflush(&args.iptables_restore, &repair.transaction)?;
    let text = crate::system::save_nat(&args.iptables_save)?;
    let tables = crate::rules_file::parse(&text).map_err(|e| Error::Syntax {
        path: source.clone(),
        message: e.to_string(),
    })?;
    let after = tables
        .iter()
        .find(|t| t.name == "nat")
        .map(|t| verify::evaluate(&spec, t));
    let Some(after) = after else {
        return Ok(Status::Failed);
    };
    match args.format {
        Format::Json => emit(
            out,
            &json(
                &serde_json::json!({"before": report, "repair": repair, "applied": true, "after": after}),
            )?,
        )?,
        Format::Text => emit(
            out,
            &format!(
                "{}repaired with `{} --noflush`:\n{}now:\n{}",
                verify::text(&report),
                args.iptables_restore,
                repair.transaction,
                verify::text(&after)
            ),
        )?,
    }
    Ok(match after.status {
        V::Ok => Status::Changed,
        _ => Status::Failed,
    })
}

fn run_fleet(cmd: FleetCommand, out: &mut impl Write) -> Result<Status> {
    let (args, checking) = match &cmd {
        FleetCommand::Render(a) => (a, false),
        FleetCommand::Check(a) => (a, true),
    };
    if checking && args.prune {
        return Err(Error::Usage(
            "fleet check changes nothing; --prune goes with fleet render".into(),
        ));
    }
    let fleet = crate::fleet::load(&args.inventory)?;
    let report = if checking {
        crate::fleet::check(&fleet, &args.out_dir)?
    } else {
        crate::fleet::render_to(&fleet, &args.out_dir, args.prune)?
    };
    let text = match args.format {
        Format::Json => json(&report)?,
        Format::Text => {
            let mut t = report.diffs.clone();
            let (verb, verbs) = if checking {
                ("differs", "differ")
            } else {
                ("changed", "changed")
            };
            for p in &report.changed {
                t += &format!("{verb}: {}\n", p.display());
            }
            for p in &report.stale {
                if !report.pruned.contains(p) {
                    t += &format!(
                        "stale: {} (not in the inventory; `fleet render --prune` removes it)\n",
                        p.display()
                    );
                }
            }
            for p in &report.pruned {
                t += &format!("pruned: {}\n", p.display());
            }
            t + &format!(
                "{} nodes: {} files {verbs}, {} unchanged, {} stale\n",
                fleet.nodes.len(),
                report.changed.len(),
                report.unchanged,
                report.stale.len() - report.pruned.len()
            )
        }
    };
    emit(out, &text)?;
    let differs = !report.changed.is_empty()
        || !report.pruned.is_empty()
        || (checking && !report.stale.is_empty());
    Ok(changed_status(differs))
}

fn verb(changed: bool, check: bool) -> &'static str {
    match (changed, check) {
        (false, _) => "unchanged",
        (true, true) => "would change",
        (true, false) => "changed",
    }
}

fn changed_status(changed: bool) -> Status {
    if changed {
        Status::Changed
    } else {
        Status::Unchanged
    }
}

fn json(value: &impl serde::Serialize) -> Result<String> {
    let mut s = serde_json::to_string(value)
        .map_err(|e| Error::Usage(format!("cannot encode the result as JSON: {e}")))?;
    s.push('\n');
    Ok(s)
}

fn emit(out: &mut impl Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("<stdout>", "cannot write", e))
}

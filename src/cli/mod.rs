//! The command line as clap sees it: arguments, help text and defaults,
//! nothing else. `commands` gives each command its behaviour.

use std::path::PathBuf;

mod deferred;
mod shared;

use clap::{ArgGroup, Args, Parser, Subcommand};
pub use deferred::Deferred;
pub use shared::{ChangeArgs, Families, Format, RestorePrograms, SavePrograms, VerifyFormat};

use crate::config::{EgressOwner, Mode};
use crate::paths;

const EXAMPLES: &str = "\
Examples:
  podsnat render --config /etc/podsnat/config.toml
  podsnat render --flannel-env /run/flannel/subnet.env --bridge docker0
  podsnat write --config /etc/podsnat/config.toml --check --diff
  podsnat write --flannel-env /run/flannel/subnet.env --config /etc/podsnat/rest.toml
  podsnat write --config examples/dual-stack.toml   # IPv4 and IPv6 rules files, all or nothing

Exit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error.";

// What each command's --help (and the man page) shows after its options.
const WRITE_HELP: &str = "Examples:\n  podsnat write --config node.toml --check --diff   # preview, exit 2 if it would change\n  podsnat write --config node.toml --output /etc/sysconfig/iptables\n\nExit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error.";
const INSTALL_UNIT_HELP: &str = "Examples:\n  podsnat install-unit --check --diff\n  podsnat install-unit --after flanneld.service --after network-online.target\n  podsnat install-unit --root /srv/images/node --no-enable\n  podsnat install-unit --family dual                # restore and pin rules.v4 and rules.v6\n\nNever starts the unit: a whole-table restore at runtime would wipe kube-proxy's rules.\nExit codes: 0 nothing changed, 2 changed (or would change with --check), 1 error.";
const VERIFY_HELP: &str = "Examples:\n  podsnat verify --config /etc/podsnat/config.toml                 # the live table\n  podsnat verify --config node.toml --file golden/n1.iptables.nat  # a rules file, for review\n  podsnat verify --config node.toml --repair --check               # show the --noflush fix\n  podsnat verify --config node.toml --file6 golden/n1.ip6tables.nat   # an IPv6 rules file\n\nExit codes: 0 ok, 2 drift (or, with --repair, repaired or would repair), 1 error or cannot decide.";
const PIN_HELP: &str = "Examples:\n  podsnat pin --file /etc/iptables/rules.v4           # what podsnat-pin.service runs on Debian\n  podsnat pin --file /etc/sysconfig/iptables --check  # RHEL-like: show the --noflush transaction\n  podsnat pin --file /etc/iptables/rules.v4 --file6 /etc/iptables/rules.v6   # dual stack\n\nReads podsnat's rules from the rules file (not a config) and moves only them, in one\n`iptables-restore --noflush` transaction.\nExit codes: 0 already in place, 2 pinned (or would pin with --check), 1 error.";
const FLEET_RENDER_HELP: &str = "Example:\n  podsnat fleet render --inventory inventory.toml --out-dir golden\n\nExit codes: 0 nothing changed, 2 files written or pruned, 1 error.";
const FLEET_CHECK_HELP: &str = "Example (in CI):\n  podsnat fleet check --inventory inventory.toml --out-dir golden\n\nExit codes: 0 all match, 2 a file differs or a stale file is left (diffs printed), 1 error.";

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
    /// Print the nat table (iptables-restore format), or with --anchor the nftables anchor, to stdout.
    #[command(
        after_help = "Examples:\n  podsnat render --config examples/flannel-docker.toml\n  podsnat render --config examples/flannel-docker.toml --anchor   # what `nft -f` loads"
    )]
    Render(Deferred<RenderArgs>),
    /// Put the nat table into the rules file, keeping its other tables.
    #[command(after_help = WRITE_HELP)]
    Write(Deferred<WriteArgs>),
    /// Install podsnat.service (the boot restore), podsnat-anchor.service (the nftables anchor) and podsnat-pin.service (after every docker start).
    #[command(after_help = INSTALL_UNIT_HELP)]
    InstallUnit(Deferred<InstallUnitArgs>),
    /// Check, in rule order, that pod traffic to the cluster keeps its source IP, egress is masqueraded, and podsnat leaves bridge (hairpin) and kube-proxy-marked traffic to others.
    #[command(after_help = VERIFY_HELP)]
    Verify(Deferred<VerifyArgs>),
    /// Put podsnat's rules back above docker's MASQUERADE rule; runs after every docker start.
    #[command(after_help = PIN_HELP)]
    Pin(Deferred<PinArgs>),
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
    /// Write DIR/<node>.iptables.nat for every node and each distinct unit once.
    #[command(after_help = FLEET_RENDER_HELP)]
    Render(Deferred<FleetArgs>),
    /// Compare the committed golden files with a fresh render; change nothing.
    #[command(after_help = FLEET_CHECK_HELP)]
    Check(Deferred<FleetArgs>),
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The inventory (TOML): cluster-wide settings, [unit], and [[nodes]].
    #[arg(long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// The directory of golden files: `<node>.iptables.nat` (and `.ip6tables.nat`,
    /// `.podsnat.nft`) per node, and the units.
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// (render) Remove golden files that no node of the inventory renders any more.
    #[arg(long)]
    pub prune: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Where the node's settings come from. Flags override subnet.env, which
/// must agree with the config file where both set a value. The group lets a
/// golden file (`write --table`) conflict with all of them at once.
#[derive(Debug, Args)]
#[group(id = "settings", multiple = true)]
pub struct SpecArgs {
    /// TOML config (the keys: CONFIGURATION in podsnat(8)).
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
    /// The whole IPv6 pod network (flannel's IPv6Network), e.g. fd00:7::/48.
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr_v6: Option<String>,
    /// This node's IPv6 pod subnet, e.g. fd00:7:0:21::/64.
    #[arg(long, value_name = "CIDR")]
    pub pod_subnet_v6: Option<String>,
    /// The bridge the pods hang off [default: docker0].
    #[arg(long, value_name = "IFACE")]
    pub bridge: Option<String>,
    /// Another destination (IPv4 or IPv6) that keeps the pod source IP; repeatable. Replaces the config's list.
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
    /// How podsnat writes the exclusion [default: guard].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// Who masquerades pod egress, for verify [default: detect].
    #[arg(long, value_name = "OWNER")]
    pub egress_owner: Option<EgressOwner>,
    /// The node's CNI network config (a .conflist or .conf), which verify
    /// reads to learn whether the CNI bridge plugin masquerades.
    #[arg(long, value_name = "FILE")]
    pub cni_config: Option<String>,
    /// Do not render, write or expect podsnat's nftables anchor (table ip
    /// podsnat): the iptables-only path, for nodes that forbid nftables.
    #[arg(long)]
    pub no_anchor: bool,
    /// kube-proxy's --iptables-masquerade-bit: traffic with this mark bit is
    /// left to kube-proxy's MASQUERADE [default: 14, mark 0x4000].
    #[arg(long, value_name = "BIT")]
    pub masquerade_bit: Option<i64>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the nftables anchor (`table ip podsnat`, for `nft -f`) instead of the nat table.
    #[arg(long)]
    pub anchor: bool,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Put this nat table (a fleet's golden `<node>.iptables.nat`) into the
    /// rules file instead of rendering one from the settings.
    #[arg(long, value_name = "FILE", conflicts_with = "settings")]
    pub table: Option<PathBuf>,
    /// The same for the IPv6 table (a fleet's golden `<node>.ip6tables.nat`).
    #[arg(long, value_name = "FILE", conflicts_with = "settings")]
    pub table6: Option<PathBuf>,
    /// The rules file to update [default: /etc/sysconfig/iptables, or
    /// /etc/iptables/rules.v4 where /etc/sysconfig does not exist (Debian)].
    #[arg(long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// The IPv6 rules file [default: /etc/sysconfig/ip6tables, or
    /// /etc/iptables/rules.v6 where /etc/sysconfig does not exist (Debian)].
    #[arg(long, value_name = "PATH")]
    pub output6: Option<PathBuf>,
    /// The same for the nftables anchor (a fleet's golden `<node>.podsnat.nft`).
    #[arg(long, value_name = "FILE", conflicts_with = "settings")]
    pub anchor_table: Option<PathBuf>,
    /// Where the nftables anchor goes [default: /etc/podsnat/podsnat.nft, beside the config].
    #[arg(long, value_name = "PATH")]
    pub anchor_file: Option<PathBuf>,
    /// Prefix for --output, --output6 and --anchor-file, for staging a node's files under a directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub change: ChangeArgs,
    /// The nft that checks the anchor (`nft -c -f`) before it is written.
    #[arg(long, value_name = "PROGRAM", default_value = "nft")]
    pub nft: String,
    /// Skip `iptables-restore --test` (and `nft -c`) on the new files.
    #[arg(long)]
    pub no_test: bool,
    #[command(flatten)]
    pub restore: RestorePrograms,
}

#[derive(Debug, Args)]
pub struct InstallUnitArgs {
    /// Install under this directory instead of /.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// A unit the boot restore runs after; repeatable [default: flanneld.service].
    #[arg(long = "after", value_name = "UNIT")]
    pub after: Vec<String>,
    /// A unit that adds its rules to the nat table later; repeatable
    /// [default: docker.service containerd.service crio.service
    /// kubelet.service kube-proxy.service].
    #[arg(long = "before", value_name = "UNIT")]
    pub before: Vec<String>,
    /// The rules file `podsnat write` keeps (absolute) [default: as for
    /// `write --output`, under the same --root].
    #[arg(long, value_name = "PATH")]
    pub file: Option<String>,
    /// The families the node runs: the units restore and pin the IPv4 file,
    /// the IPv6 file, or both [default: those --config names, else ipv4].
    #[arg(long, value_enum)]
    pub family: Option<Families>,
    /// The IPv6 rules file (absolute) [default: as for `write --output6`].
    #[arg(long, value_name = "PATH")]
    pub file6: Option<String>,
    /// The iptables-restore the unit runs (absolute), e.g. /usr/sbin/iptables-legacy-restore;
    /// the IPv6 file gets its ip6tables-restore twin.
    #[arg(long, value_name = "PATH", default_value = paths::IPTABLES_RESTORE)]
    pub iptables_restore: String,
    /// Enable the unit: the multi-user.target.wants link (the default).
    #[arg(long, overrides_with = "no_enable")]
    pub enable: bool,
    /// Do not create the wants link (an existing one is left as it is).
    #[arg(long)]
    pub no_enable: bool,
    /// Do not install podsnat-anchor.service, which loads the nftables anchor
    /// (`nft -f`) at boot and after every restart of nftables.service.
    #[arg(long)]
    pub no_anchor: bool,
    /// The anchor file `podsnat write` keeps (absolute).
    #[arg(long, value_name = "PATH", default_value = paths::ANCHOR_FILE)]
    pub anchor_file: String,
    /// The nft podsnat-anchor.service runs (absolute).
    #[arg(long, value_name = "PATH", default_value = paths::NFT)]
    pub nft: String,
    /// Do not install podsnat-pin.service (after every docker start) and
    /// podsnat-pin.timer (every minute), which put podsnat's rules back above
    /// docker's MASQUERADE rule. Only for nodes where docker does not masquerade.
    #[arg(long)]
    pub no_pin: bool,
    /// Also install podsnat-verify.service (after every docker start) and
    /// podsnat-verify.timer (every 5 minutes): `podsnat verify --repair`.
    #[arg(long)]
    pub verify_timer: bool,
    /// The podsnat binary the pin and verify services run.
    #[arg(long, value_name = "PATH", default_value = paths::PODSNAT_BIN)]
    pub podsnat: String,
    /// The node's podsnat config (absolute, read under --root): the units
    /// restore the families whose cluster network it names and load the
    /// anchor unless it says `anchor = false`; --family and --no-anchor win
    /// over it. With --verify-timer, the config the verify service reads
    /// [default: /etc/podsnat/config.toml, not read at install time].
    #[arg(long, value_name = "PATH")]
    pub config: Option<String>,
    /// Write metrics for node_exporter's textfile collector into DIR
    /// (absolute; Debian's node_exporter reads /var/lib/prometheus/node-exporter):
    /// the verify service and its timer (installed with this) write
    /// podsnat.prom, the pin podsnat-pin.prom.
    #[arg(long, value_name = "DIR")]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub change: ChangeArgs,
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The rules file `podsnat write` keeps [default: /etc/sysconfig/iptables,
    /// or /etc/iptables/rules.v4 where /etc/sysconfig does not exist].
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The IPv6 rules file: pin the ip6tables nat table too (or only it,
    /// without --file).
    #[arg(long, value_name = "PATH")]
    pub file6: Option<PathBuf>,
    /// Change nothing; print the transaction and exit 2 if it would pin.
    #[arg(long)]
    pub check: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also write the pin's metrics to DIR/podsnat-pin.prom, atomically, for
    /// node_exporter's textfile collector.
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// The conntrack that deletes, after a pin, the datagram flows set up
    /// while docker's rule stood on top.
    #[arg(long, value_name = "PROGRAM", default_value = "conntrack")]
    pub conntrack: String,
    #[command(flatten)]
    pub save: SavePrograms,
    #[command(flatten)]
    pub restore: RestorePrograms,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("files").args(["file", "file6"]).multiple(true)))]
pub struct VerifyArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Evaluate this rules file (IPv4) instead of the live table.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Evaluate this IPv6 rules file instead of the live ip6tables table.
    #[arg(long, value_name = "PATH")]
    pub file6: Option<PathBuf>,
    /// Put podsnat's rules back (its POSTROUTING rules above the rule that
    /// shadows them, its chain as rendered, an earlier jump replaced, and
    /// docker's broad rule moved with them or, where podsnat's rules stand
    /// in for it, deleted) with one `iptables-restore --noflush`
    /// transaction; nothing else changes. A missing anchor is loaded.
    #[arg(long, conflicts_with_all = ["file", "file6"])]
    pub repair: bool,
    /// With --repair: print the transaction, change nothing.
    #[arg(long, requires = "repair")]
    pub check: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: VerifyFormat,
    /// Also write the metrics to DIR/podsnat.prom, atomically (a temp file in
    /// DIR, then a rename), for node_exporter's textfile collector; the
    /// repair counter goes on from the file's last value.
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// The ipsets `-m set` rules match: the output of `ipset save` [default:
    /// `ipset save` itself when verifying the live table].
    #[arg(long, value_name = "FILE")]
    pub ipsets: Option<PathBuf>,
    /// docker's daemon.json to compare with the config (whether docker
    /// masquerades, its bridge and subnet) [default: /etc/docker/daemon.json
    /// and docker.service's ExecStart flags, when verifying the live table].
    #[arg(long, value_name = "PATH")]
    pub docker_config: Option<PathBuf>,
    /// docker.service (or a drop-in) whose ExecStart flags to read; repeatable.
    #[arg(long, value_name = "PATH")]
    pub docker_unit: Vec<PathBuf>,
    /// With --file or --file6: skip `iptables-restore --test` on the file.
    #[arg(long, requires = "files")]
    pub no_test: bool,
    #[command(flatten)]
    pub save: SavePrograms,
    #[command(flatten)]
    pub restore: RestorePrograms,
    /// With --file or --file6: also evaluate this saved `nft -j list ruleset`
    /// (every nftables nat chain at postrouting, in priority order).
    #[arg(long, value_name = "FILE", requires = "files")]
    pub nft_file: Option<PathBuf>,
    /// The nft that reads the live nftables nat chains (`nft -j list chains`,
    /// then `nft -j list table` for each table with a nat chain at
    /// postrouting) and, with --repair, loads a missing anchor.
    #[arg(long, value_name = "PROGRAM", default_value = "nft")]
    pub nft: String,
    /// The conntrack (conntrack-tools) that lists the live flows from the
    /// pod subnet and, with --repair, deletes those the fix did not reach.
    #[arg(long, value_name = "PROGRAM", default_value = "conntrack")]
    pub conntrack: String,
    /// With --repair: delete such TCP and SCTP flows too, which resets
    /// their connections (the clients reconnect with the pod's IP).
    #[arg(long, requires = "repair")]
    pub reset_connections: bool,
    /// With --repair: the anchor file to load when the anchor is missing.
    #[arg(long, value_name = "PATH", default_value = paths::ANCHOR_FILE)]
    pub anchor_file: PathBuf,
}

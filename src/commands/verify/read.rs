//! One family's inputs, read once: its nat table (live or `--file`) and
//! the ipsets its rules match. The verdict and the repair plan are both
//! judged from this value (with the node's nftables layer), never from a
//! second reading, so the plan is made from what the report said.

use std::path::PathBuf;

use super::inputs::{cni_masquerades, docker_settings, flows, ipsets, nft_ruleset, test_file};
use crate::cli::VerifyArgs;
use crate::commands::{nat_table, program};
use crate::config::{Node, NodeSpec};
use crate::docker::{self, DockerCheck};
use crate::error::{Error, Result, unreadable};
use crate::live::{Change, repair};
use crate::verify::flows::FlowsCheck;
use crate::verify::{self, Report, Ruleset, Sets};
use crate::{config, rules_file, system};

/// Everything one run of verify reads, read once: docker's settings (the
/// node's, judged once, in the first family's report), the nftables layer
/// (once for both families), and each family's table and sets. The
/// verdict is a function of this value alone.
pub(super) struct Inputs<'s> {
    pub(super) docker: Option<DockerCheck>,
    pub(super) ruleset: Option<Ruleset>,
    pub(super) tables: Vec<Read<'s>>,
}

impl<'s> Inputs<'s> {
    /// Reads what the families in `jobs` (each with its `--file`, if any)
    /// are judged from.
    pub(super) fn read(
        args: &VerifyArgs,
        node: &'s Node,
        jobs: Vec<(&'s NodeSpec, Option<&PathBuf>)>,
        live: bool,
    ) -> Result<Inputs<'s>> {
        // The CNI config first: a bad one stops verify before anything is
        // read or repaired.
        let cni = cni_masquerades(node)?;
        // Only where docker runs the pods are its settings the pod network's.
        let docker = docker_settings(args, live)?
            .filter(|d| docker::runs_the_pods(node.specs(), d))
            .map(|d| docker::check(node.specs(), &d));
        // Where docker runs the pods, its nftables filter chains (docker
        // 29) are read for the forward path too.
        let ruleset = nft_ruleset(args, live, docker.is_some())?;
        let tables = jobs
            .into_iter()
            .map(|(spec, file)| Read::new(args, spec, file, live, docker.as_ref(), cni.clone()))
            .collect::<Result<_>>()?;
        Ok(Inputs {
            docker,
            ruleset,
            tables,
        })
    }

    /// One report per family, from these inputs alone.
    pub(super) fn judge(&self) -> Result<Vec<Report>> {
        self.tables
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let docker = self.docker.as_ref().filter(|_| i == 0);
                r.judge(self.ruleset.as_ref(), docker)
            })
            .collect()
    }
}

/// What one family's verdict reads.
pub(super) struct Read<'s> {
    pub(super) spec: &'s NodeSpec,
    /// Where the table came from: the file, or `iptables-save -t nat`.
    pub(super) source: String,
    text: String,
    sets: Sets,
    /// iptables-save says which backend printed it; a legacy table is not
    /// the nft `ip nat` table, which is then read as any other.
    legacy: bool,
    /// Where the filter and raw tables come from, if they were read.
    forward: Forward,
    /// The docker file that sets `"allow-direct-routing": true`.
    direct_routing: Option<String>,
    /// docker's `"bridge-accept-fwmark"`, and the file that sets it.
    accept_fwmark: Option<(String, String)>,
    /// Why the CNI is known to masquerade each pod (`verify::Layers`).
    cni_masquerades: Option<String>,
    /// The live flows' verdict, where the table is the live one.
    pub(super) flows: Option<FlowsCheck>,
    /// What the reading could not do (a --test that did not run), printed
    /// as notes on stderr.
    pub(super) notes: Vec<String>,
}

impl<'s> Read<'s> {
    /// Reads the family's table (`file`, or the live one) and its ipsets.
    /// A file under review must be one the kernel would load: every rule
    /// is checked, and iptables-restore --test has the last word. `docker`
    /// is the verdict on docker's settings where docker runs the pods: the
    /// forward path (filter and raw) is then read live too, since docker
    /// 28 and later drop routed traffic there. `cni_masquerades`: why the
    /// CNI is known to masquerade each pod, if it is (the node's, read once).
    pub(super) fn new(
        args: &VerifyArgs,
        spec: &'s NodeSpec,
        file: Option<&PathBuf>,
        live: bool,
        docker: Option<&DockerCheck>,
        cni_masquerades: Option<String>,
    ) -> Result<Read<'s>> {
        let family = spec.family();
        let save = program(family, &args.save.iptables_save, &args.save.ip6tables_save);
        let (source, text) = match file {
            Some(path) => {
                let text = config::read_any(path)?;
                // Pasted `iptables -t nat -S` output reads as the table it shows.
                let text = rules_file::from_dash_s(&text).unwrap_or(text);
                (path.display().to_string(), text)
            }
            None => (format!("{save} -t nat"), system::save_nat(save)?),
        };
        let table = nat_table(&source, &text)?;
        let mut notes = Vec::new();
        if file.is_some() {
            verify::check_all(&table, family).map_err(|e| malformed(&source, e))?;
            if !args.no_test {
                let restore = program(
                    family,
                    &args.restore.iptables_restore,
                    &args.restore.ip6tables_restore,
                );
                notes.extend(test_file(restore, &source, &text)?);
            }
        }
        let forward = match file {
            Some(_) if text.contains("*filter") => Forward::InFile,
            None if live && docker.is_some() => Forward::Saved(read_forward(save)?),
            _ => Forward::Unread,
        };
        let sets = match &forward {
            Forward::Saved(saved) => ipsets(args, &format!("{text}{saved}"), live)?,
            _ => ipsets(args, &text, live)?,
        };
        Ok(Read {
            spec,
            source,
            legacy: is_legacy(&text),
            text,
            sets,
            forward,
            direct_routing: docker.and_then(|d| d.direct_routing.clone()),
            accept_fwmark: docker.and_then(|d| d.accept_fwmark.clone()),
            cni_masquerades,
            flows: match file {
                None => Some(flows(&args.conntrack, spec, args.reset_connections)?),
                Some(_) => None,
            },
            notes,
        })
    }

    /// The same family's live table read again, after a change.
    pub(super) fn again(&self, args: &VerifyArgs) -> Result<Read<'s>> {
        let save = program(
            self.spec.family(),
            &args.save.iptables_save,
            &args.save.ip6tables_save,
        );
        let text = system::save_nat(save)?;
        let forward = match self.forward {
            Forward::Saved(_) => Forward::Saved(read_forward(save)?),
            _ => Forward::Unread,
        };
        Ok(Read {
            spec: self.spec,
            source: self.source.clone(),
            legacy: is_legacy(&text),
            text,
            sets: self.sets.clone(),
            forward,
            direct_routing: self.direct_routing.clone(),
            accept_fwmark: self.accept_fwmark.clone(),
            cni_masquerades: self.cni_masquerades.clone(),
            flows: Some(flows(&args.conntrack, self.spec, args.reset_connections)?),
            notes: Vec::new(),
        })
    }

    /// The family's iptables-restore.
    pub(super) fn restore<'a>(&self, args: &'a VerifyArgs) -> &'a str {
        program(
            self.spec.family(),
            &args.restore.iptables_restore,
            &args.restore.ip6tables_restore,
        )
    }

    /// The verdict on these inputs and the node's nftables layer; docker's
    /// settings, judged once for the node, where given.
    pub(super) fn judge(
        &self,
        ruleset: Option<&Ruleset>,
        docker: Option<&DockerCheck>,
    ) -> Result<Report> {
        self.with_layers(ruleset, |layers| {
            let report = verify::evaluate_layers(self.spec, layers)
                .map_err(|e| malformed(&self.source, e))?;
            let report = match &self.flows {
                Some(f) => report.with_flows(f.clone()),
                None => report,
            };
            Ok(match docker {
                Some(d) => report.with_docker(d.clone()),
                None => report,
            })
        })
    }

    /// The `--noflush` change that ends the drift `report` names, planned
    /// from the inputs it was judged from. A malformed rule stays that
    /// error; the rest cannot be repaired.
    pub(super) fn plan(
        &self,
        ruleset: Option<&Ruleset>,
        report: &Report,
    ) -> Result<Option<Change>> {
        self.with_layers(ruleset, |layers| {
            repair::plan_repair(self.spec, report, layers).map_err(|e| match e {
                repair::RepairError::Malformed(m) => malformed(&self.source, m),
                other => Error::CannotRepair(other),
            })
        })
    }

    fn with_layers<T>(
        &self,
        ruleset: Option<&Ruleset>,
        f: impl FnOnce(verify::Layers<'_>) -> Result<T>,
    ) -> Result<T> {
        let table = nat_table(&self.source, &self.text)?;
        let text = match &self.forward {
            Forward::Unread => None,
            Forward::InFile => Some(self.text.as_str()),
            Forward::Saved(saved) => Some(saved.as_str()),
        };
        let others = match text {
            Some(text) => rules_file::parse(text).map_err(unreadable(self.source.clone()))?,
            None => Vec::new(),
        };
        let named = |name: &str| others.iter().find(|t| t.name == name);
        f(verify::Layers {
            table: &table,
            sets: &self.sets,
            nft: ruleset.map(|rs| verify::NftLayer::new(rs, !self.legacy)),
            forward: named("filter").map(|filter| verify::Forward {
                filter,
                raw: named("raw"),
                direct_routing: self.direct_routing.as_deref(),
                accept_fwmark: self
                    .accept_fwmark
                    .as_ref()
                    .map(|(m, origin)| (m.as_str(), origin.as_str())),
            }),
            cni_masquerades: self.cni_masquerades.as_deref(),
        })
    }
}

/// Where a family's filter and raw tables come from.
enum Forward {
    Unread,
    /// The `--file` under review holds them beside its nat table.
    InFile,
    /// `iptables-save -t filter` and `-t raw` of the live node.
    Saved(String),
}

/// The filter table, then the raw table, of the live node.
fn read_forward(save: &str) -> Result<String> {
    Ok(system::save_table(save, "filter")? + &system::save_table(save, "raw")?)
}

/// iptables-save names the backend that printed it in its first lines.
fn is_legacy(text: &str) -> bool {
    text.lines().take(3).any(|l| l.contains("(legacy)"))
}

fn malformed(source: &str, e: verify::Malformed) -> Error {
    unreadable(source)(e)
}

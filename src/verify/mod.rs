//! Order-aware drift detection. Walks POSTROUTING the way the kernel does
//! (jumps, gotos, RETURN, the first terminal target, `!` negations) for
//! every kind of pod packet the check is about, and names the rule that
//! decides each case. A match it does not model is never guessed: the
//! result is "cannot decide", naming the rule.
//!
//! Exactness: destinations, sources, interfaces and protocols are split
//! into "atoms" at every boundary that the reachable rules mention, and one
//! packet per atom is walked. Within an atom every rule matches all packets
//! or none, so the verdict holds for the whole class, not a sample.

// The rooms, by stage: the parsers read text into models, the engine
// walks a packet through every layer the kernel runs, the policy names the
// classes of pod traffic and what each must be, the report says it.
mod egress;
mod engine;
pub mod flows;
mod incoming;
mod parse;
mod policy;
mod report;

// Each room names its neighbours by these paths (`super::rule`).
use engine::{atoms, hook, iptables};
use parse::{malformed, nft, rule, sets};

pub use crate::verdict::Status;

use std::net::IpAddr;

use ipnet::IpNet;
use policy::{BRIDGE, CLUSTER, MARKED, OUTSIDE, podsnat_present};
pub use policy::{CheckName, Expect, Promise};
use serde::Serialize;

pub use report::text;

use crate::config::NodeSpec;
use crate::render;
use crate::rules_file::Table;
use atoms::Atoms;
use hook::Hook;
pub use incoming::Forward;
use iptables::IptablesTable;
pub use malformed::{Malformed, RuleError};
pub use nft::Ruleset;
use rule::{Rule, index_by_chain, reachable_rules};
pub use rule::{check_all, subnet_and_bridge};
pub use sets::Sets;

/// A rule named in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleRef {
    pub chain: String,
    pub position: usize,
    pub text: String,
    /// For an nftables rule, the priority of the base chain whose walk
    /// reached it (a jump never leaves its table). `None` for iptables' rules.
    #[serde(skip)]
    pub(crate) base_priority: Option<i64>,
}

impl RuleRef {
    fn of(r: &Rule<'_>) -> RuleRef {
        RuleRef {
            chain: r.chain.to_owned(),
            position: r.pos,
            text: r.text.to_owned(),
            base_priority: None,
        }
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rule {}: {}", self.chain, self.position, self.text)
    }
}

/// The outcome for one class of packets.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The class of packets, e.g. `pod-to-cluster`.
    pub name: CheckName,
    /// What must happen to it, e.g. `keep` the source IP.
    pub expect: Expect,
    pub status: Status,
    /// The rule that decided the first failing (or, when ok, the first)
    /// packet; `None` when the chain policy decided.
    pub rule: Option<RuleRef>,
    /// The packet that was decided, as `src -> dst via out_if (proto)`.
    pub packet: String,
    /// The destination range that packet stands for.
    pub destination: String,
    /// The pod source ranges whose packets of this class drift (all of them,
    /// not only the sample's), as `first-last` or a CIDR; empty when none do.
    pub sources: Vec<String>,
    /// Every pod source drifts: the text then names no ranges.
    #[serde(skip)]
    all_sources: bool,
    /// Which promise its sample stands for.
    pub class: Promise,
    pub note: Option<String>,
    /// Why it cannot be decided.
    pub reason: Option<String>,
    /// The deciding rule translated the source (for the report's words).
    /// pod→outside on a node whose CNI masquerades per pod: the number of
    /// pods its rules name, the only sources judged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_pods: Option<usize>,
    #[serde(skip)]
    pub(crate) translated: bool,
    /// Position in POSTROUTING where the walk left the built-in chain.
    #[serde(skip)]
    pub(crate) top: usize,
}

/// Whether podsnat's nftables anchor is loaded where the config wants it.
#[derive(Debug, Clone, Serialize)]
pub struct AnchorCheck {
    pub status: Status,
    /// `ip podsnat` or `ip6 podsnat`.
    pub table: String,
    /// Its postrouting chain's priority, when loaded.
    pub priority: Option<i64>,
}

/// The nftables layer a verdict also reads.
#[derive(Debug, Clone, Copy)]
pub struct NftLayer<'a> {
    ruleset: &'a Ruleset,
    /// iptables' table is iptables-nft's: the nft `ip nat` table is that
    /// same table, read once, through iptables-save.
    iptables_nft: bool,
    /// podsnat's anchor is left out: the repair of iptables' table judges
    /// that table as it stands without the anchor, as the pin does.
    skip_anchor: bool,
}

impl<'a> NftLayer<'a> {
    pub fn new(ruleset: &'a Ruleset, iptables_nft: bool) -> NftLayer<'a> {
        NftLayer {
            ruleset,
            iptables_nft,
            skip_anchor: false,
        }
    }

    /// The same layer without podsnat's anchor table.
    pub fn without_anchor(self) -> NftLayer<'a> {
        NftLayer {
            skip_anchor: true,
            ..self
        }
    }

    /// The anchor's base chain priority for `family`, if it is loaded
    /// (and not left out).
    fn anchor_priority(&self, family: crate::config::Family) -> Option<i64> {
        self.ruleset
            .anchor_priority(family)
            .filter(|_| !self.skip_anchor)
    }

    /// Whether no rule of the anchor (if loaded, and not left out) but a
    /// return sees traffic through the bridge.
    fn anchor_guarded(&self, family: crate::config::Family, bridge: &str) -> bool {
        self.skip_anchor || self.ruleset.anchor_guarded(family, bridge)
    }

    /// The nat base chains at postrouting a packet of `family` visits.
    fn base_chains(&self, family: crate::config::Family) -> Vec<&'a nft::Chain> {
        let anchor = render::nft_family(family);
        let mut chains = self.ruleset.base_chains(family, self.iptables_nft);
        if self.skip_anchor {
            chains.retain(|c| !(c.table == render::ANCHOR_TABLE && c.family == anchor));
        }
        chains
    }
}

/// Everything one family's verdict reads: iptables' nat table, the ipsets
/// its `-m set` rules match, and the nftables layer where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    pub table: &'a Table<'a>,
    pub sets: &'a Sets,
    pub nft: Option<NftLayer<'a>>,
    /// The filter (and raw) table, where they were read: the forward path
    /// of cluster→pod traffic is judged from them.
    pub forward: Option<Forward<'a>>,
    /// Why the CNI is known to masquerade each pod it adds, where the
    /// tables alone cannot tell (`egress_owner = "cni"`, or a `cni_config`
    /// with `"ipMasq": true`): pod→outside traffic is then judged for the
    /// pods its rules name, also when there are none yet.
    pub cni_masquerades: Option<&'a str>,
}

/// The whole verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub checks: Vec<Check>,
    /// podsnat's nftables anchor, when the nftables layer was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorCheck>,
    /// docker's settings against the config, where they were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker: Option<crate::docker::DockerCheck>,
    /// The live flows, where they were read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flows: Option<flows::FlowsCheck>,
}

impl Report {
    /// Adds the verdict on docker's settings; drift there is drift.
    pub fn with_docker(mut self, check: crate::docker::DockerCheck) -> Report {
        if check.status == Status::Drift {
            self.status = Status::Drift;
        }
        self.docker = Some(check);
        self
    }

    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Evaluates the nat table `table` against what `spec` promises.
/// A malformed rule (one iptables-restore would refuse) is an error, never
/// a verdict.
pub fn evaluate(spec: &NodeSpec, table: &Table<'_>) -> Result<Report, Malformed> {
    evaluate_with(spec, table, &Sets::default())
}

/// [`evaluate`] with the contents of the ipsets `-m set` rules match.
pub fn evaluate_with(spec: &NodeSpec, table: &Table<'_>, sets: &Sets) -> Result<Report, Malformed> {
    let layers = Layers {
        table,
        sets,
        nft: None,
        forward: None,
        cni_masquerades: None,
    };
    evaluate_layers(spec, layers)
}

/// [`evaluate_with`] across both layers: every nftables nat chain at
/// postrouting and iptables' nat table, in priority order.
pub fn evaluate_layers(spec: &NodeSpec, layers: Layers<'_>) -> Result<Report, Malformed> {
    let Layers {
        table,
        sets,
        nft,
        forward,
        cni_masquerades,
    } = layers;
    let rules = reachable_rules(table, spec.family())?;
    let mentions = nft.map(|n| n.ruleset.mentions()).unwrap_or_default();
    let atoms = Atoms::collect(spec, &rules, sets, &mentions);
    let evaluator = IptablesTable {
        chains: index_by_chain(&rules),
        sets,
        entry: "POSTROUTING",
    };
    let hook = Hook {
        iptables: &evaluator,
        nft: nft.map(|n| n.ruleset),
        chains: nft
            .map(|n| n.base_chains(spec.family()))
            .unwrap_or_default(),
        family: spec.family(),
    };

    let owner = render::Owner::of(spec);
    let pods = egress::cni_pods(spec, &rules, nft);
    // Whether podsnat has a rule in both layers, and in iptables' alone:
    // asked of every class, answered once.
    let present = podsnat_present(spec, &owner, table, nft);
    let present_in_iptables = podsnat_present(spec, &owner, table, None);
    let mut checks = Vec::new();
    let mark = spec.masquerade_mark().value();
    for (class, dsts, out_ifs, mark) in [
        (&CLUSTER, &atoms.cluster_dsts, &atoms.out_ifs, 0),
        (&OUTSIDE, &atoms.outside_dsts, &atoms.out_ifs, 0),
        (&BRIDGE, &atoms.bridge_dsts, &atoms.bridge, 0),
        (&MARKED, &atoms.cluster_dsts, &atoms.out_ifs, mark),
    ] {
        let only_podsnat = class.expect.only_podsnat();
        let packets = atoms.packets(spec, dsts, out_ifs, mark, only_podsnat);
        // Where the CNI masquerades per pod, egress is judged for its pods.
        let per_pod = !pods.is_empty() || cni_masquerades.is_some();
        let judged_pods = (class.name == OUTSIDE.name && per_pod).then_some(&pods);
        let packets =
            packets.filter(|p| judged_pods.is_none_or(|ps| ps.iter().any(|n| n.contains(&p.src))));
        let check = if only_podsnat && !present {
            // Where podsnat has no rule, none of its rules can decide
            // bridge or marked traffic: no walk needed.
            Some(policy::absent(spec, class))
        } else if class.name == BRIDGE.name && policy::bridge_guarded(spec, &owner, &rules, nft) {
            Some(policy::guarded_bridge(
                spec,
                policy::run(
                    spec,
                    &owner,
                    &hook,
                    class,
                    atoms.hairpin_packets(spec).into_iter(),
                ),
            ))
        } else {
            policy::run(spec, &owner, &hook, class, packets)
        };
        let mut check = check.unwrap_or_else(|| policy::empty(spec, class));
        check.cni_pods = judged_pods.map(Vec::len);
        let nft_decided = check
            .rule
            .as_ref()
            .filter(|_| check.status == Status::Drift && check.name == CLUSTER.name)
            .and_then(|r| hook::priority_note(r, present_in_iptables));
        check.note = nft_decided
            .or_else(|| policy::note(spec, &owner, table, &check))
            .or(check.note);
        if check.cni_pods == Some(0)
            && let Some(why) = cni_masquerades
        {
            check.note = Some(format!(
                "no pod has a CNI per-pod rule yet; {why}: the CNI masquerades each pod it adds"
            ));
        }
        checks.push(check);
    }
    if let Some(forward) = forward {
        checks.push(incoming::check(spec, forward, sets, nft, &mentions));
    }
    let anchor = nft.filter(|_| spec.anchor()).map(|n| {
        let priority = n.anchor_priority(spec.family());
        AnchorCheck {
            status: match priority {
                Some(p) if p < hook::IPTABLES_PRIO => Status::Ok,
                _ => Status::Drift,
            },
            table: format!(
                "{} {}",
                render::nft_family(spec.family()),
                render::ANCHOR_TABLE
            ),
            priority,
        }
    });
    let statuses = checks
        .iter()
        .map(|c| c.status)
        .chain(anchor.iter().map(|a| a.status));
    let status = Status::worst(statuses);
    Ok(Report {
        status,
        checks,
        anchor,
        docker: None,
        flows: None,
    })
}

/// Sorted, adjacent ranges joined, as `first-last` (or one address, or
/// the CIDR the range is exactly). The ranges are of one family.
fn merge_ranges(mut ranges: Vec<(IpAddr, IpAddr)>) -> Vec<String> {
    ranges.sort();
    ranges.dedup();
    let num = |a: IpAddr| match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mut merged: Vec<(IpAddr, IpAddr)> = Vec::new();
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if num(a) <= num(last.1).saturating_add(1) => {
                last.1 = last.1.max(b);
            }
            _ => merged.push((a, b)),
        }
    }
    merged
        .into_iter()
        .map(|(first, last)| {
            let (a, b) = (num(first), num(last));
            // A range that is exactly one CIDR reads as that CIDR.
            let bits = if first.is_ipv4() { 32 } else { 128 };
            let cidr = (b - a)
                .checked_add(1)
                .filter(|size| size.is_power_of_two())
                .and_then(|size| IpNet::new(first, bits - size.trailing_zeros() as u8).ok())
                .filter(|n| n.network() == first && n.broadcast() == last);
            match cidr {
                _ if a == b => first.to_string(),
                Some(n) => n.to_string(),
                None => format!("{first}-{last}"),
            }
        })
        .collect()
}

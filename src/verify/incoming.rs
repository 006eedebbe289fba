//! Traffic from the cluster to this node's pods: a pod on another host
//! sends to a pod here; flannel routes it to this node, which forwards it
//! to the bridge. Docker 28 and later drop such traffic unless told not to
//! (moby/moby#49792): the filter table's `-A DOCKER ! -i docker0 -o docker0
//! -j DROP` (moby's integration/network/bridge/iptablesdoc/generated/
//! new-daemon.md) and, per container, the raw table's `! -i docker0 -j
//! DROP`. The check walks raw PREROUTING, then filter FORWARD, with the
//! engine's one walk, for every atom of the cluster's other addresses to
//! every atom of the pod subnet, and ends at the chain's policy.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::atoms::{Packet, Span, addr, span, split, subtract};
use super::engine::{End, walk};
use super::iptables::IptablesTable;
use super::rule::{Rule, index_by_chain, reachable_from};
use super::{Check, CheckName, Expect, Malformed, Promise, RuleRef, Sets, Status, merge_ranges};
use crate::config::NodeSpec;
use crate::rules_file::Table;

/// The tables the forward path reads: filter, and raw where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    pub filter: &'a Table<'a>,
    pub raw: Option<&'a Table<'a>>,
}

/// The `:CHAIN POLICY [p:b]` of a built-in chain.
fn policy<'a>(table: &Table<'a>, chain: &str) -> Option<&'a str> {
    table.chain_decls.iter().find_map(|d| {
        let mut words = d.strip_prefix(':')?.split_whitespace();
        (words.next()? == chain).then(|| words.next()).flatten()
    })
}

/// How one packet fared.
enum Fate {
    Forwarded(Option<RuleRef>),
    Dropped(RuleRef),
    Policy(String),
    CannotDecide(RuleRef, String),
}

/// The incoming check. A rule of these tables that iptables-restore would
/// refuse makes the check "cannot decide", naming it, never an error: the
/// nat table's verdict still stands.
pub(super) fn check(spec: &NodeSpec, forward: Forward<'_>, sets: &Sets) -> Check {
    match walk_all(spec, forward, sets) {
        Ok(check) => check,
        Err(m) => {
            let mut c = empty(spec);
            c.status = Status::CannotDecide;
            c.packet = "any".into();
            c.rule = Some(RuleRef {
                chain: format!("line {}", m.line),
                position: 0,
                text: m.text.clone(),
                base_priority: None,
            });
            c.reason = Some(m.why.to_string());
            c
        }
    }
}

fn walk_all(spec: &NodeSpec, forward: Forward<'_>, sets: &Sets) -> Result<Check, Malformed> {
    let family = spec.family();
    let filter_rules = reachable_from(forward.filter, "FORWARD", family)?;
    let raw_rules = match forward.raw {
        Some(raw) => reachable_from(raw, "PREROUTING", family)?,
        None => Vec::new(),
    };
    let filter = IptablesTable {
        chains: index_by_chain(&filter_rules),
        sets,
        entry: "FORWARD",
    };
    let raw = IptablesTable {
        chains: index_by_chain(&raw_rules),
        sets,
        entry: "PREROUTING",
    };
    let forward_policy = policy(forward.filter, "FORWARD").unwrap_or("ACCEPT");
    let (srcs, dsts) = atoms(spec, filter_rules.iter().chain(&raw_rules), sets);
    let bridge = spec.bridge().as_str().to_owned();
    let mut first_ok: Option<Check> = None;
    let mut bad: Option<Check> = None;
    let mut dropped: Vec<(IpAddr, IpAddr)> = Vec::new();
    for &(src, _) in &srcs {
        for &(dst, dst_range) in &dsts {
            let mut p = Packet {
                src,
                src_range: (src, src),
                dst,
                dst_class: spec.pod_subnet(),
                in_if: "eth0".into(),
                out_if: bridge.clone(),
                proto: "any".into(),
                dport: None,
                mark: 0,
                lenient: false,
            };
            let fate = match walk(&raw, &mut p) {
                End::Drop(r) => Fate::Dropped(r),
                End::CannotDecide(r, why) => Fate::CannotDecide(r, why),
                _ => match walk(&filter, &mut p) {
                    End::Drop(r) => Fate::Dropped(r),
                    End::CannotDecide(r, why) => Fate::CannotDecide(r, why),
                    End::Accept(r, _) => Fate::Forwarded(Some(r)),
                    _ if forward_policy == "ACCEPT" => Fate::Forwarded(None),
                    _ => Fate::Policy(forward_policy.to_owned()),
                },
            };
            let mut c = empty(spec);
            c.packet = format!("{src} -> {dst} from eth0 via {bridge} (any)");
            c.destination = spec.pod_subnet().to_string();
            match fate {
                Fate::Forwarded(r) => {
                    c.rule = r;
                    first_ok.get_or_insert(c);
                }
                Fate::Dropped(r) => {
                    c.status = Status::Drift;
                    c.note = docker_setting(&r, &bridge);
                    c.rule = Some(r);
                    dropped.push(dst_range);
                    bad.get_or_insert(c);
                }
                Fate::Policy(policy) => {
                    c.status = Status::Drift;
                    c.note = Some(format!("the FORWARD policy is {policy}"));
                    dropped.push(dst_range);
                    bad.get_or_insert(c);
                }
                Fate::CannotDecide(r, why) => {
                    c.status = Status::CannotDecide;
                    c.rule = Some(r);
                    c.reason = Some(why);
                    if bad.as_ref().is_none_or(|b| b.status != Status::Drift) {
                        bad = Some(c);
                    }
                }
            }
        }
    }
    let mut check = bad.or(first_ok).unwrap_or_else(|| empty(spec));
    if check.status == Status::Drift {
        check.sources = merge_ranges(dropped);
        check.all_sources = check.sources == [spec.pod_subnet().to_string()];
    }
    Ok(check)
}

/// What lets docker's drop through, where the rule that dropped is
/// docker's and names the bridge.
fn docker_setting(r: &RuleRef, bridge: &str) -> Option<String> {
    let docker = r.chain.starts_with("DOCKER") || r.chain == "PREROUTING";
    (docker && r.text.contains(&format!("-i {bridge}"))).then(|| {
        "docker 28 and later drop traffic routed into the bridge from other interfaces; \
         \"allow-direct-routing\": true in daemon.json lets the cluster's traffic through"
            .to_owned()
    })
}

/// Sources: the cluster's addresses outside this node's pod subnet; and
/// destinations: the pod subnet's addresses but its network address and
/// the bridge's (`.1`, traffic to it is the node's own); each cut at
/// every boundary the rules (and the sets they match) name. One
/// representative per atom, with the atom's range.
type Atom = (IpAddr, (IpAddr, IpAddr));

fn atoms<'r, 'a: 'r>(
    spec: &NodeSpec,
    rules: impl Iterator<Item = &'r Rule<'a>>,
    sets: &Sets,
) -> (Vec<Atom>, Vec<Atom>) {
    let family = spec.family();
    let (mut src_cuts, mut dst_cuts) = (BTreeSet::new(), BTreeSet::new());
    let mut uses = Vec::new();
    for r in rules {
        for (cuts, net) in [(&mut src_cuts, r.src), (&mut dst_cuts, r.dst)] {
            if let Some((_, n)) = net {
                let (a, b) = span(&n);
                cuts.extend([a, b]);
            }
        }
        uses.extend(r.sets.iter().map(|(_, n, f)| (n.as_str(), f.as_slice())));
    }
    sets.cuts(family, uses.into_iter(), |is_src, net| {
        let (a, b) = span(&net);
        if is_src { &mut src_cuts } else { &mut dst_cuts }.extend([a, b]);
    });
    let pods = span(&spec.pod_subnet());
    let cluster = span(&spec.cluster_cidr());
    let srcs = subtract(&[cluster], &[pods]);
    // The network address and the bridge's own are not pods.
    let dsts: Vec<Span> = vec![(pods.0 + 2, pods.1)]
        .into_iter()
        .filter(|(a, b)| a < b)
        .collect();
    let pieces = |spans: &[Span], cuts: &BTreeSet<u128>| -> Vec<Atom> {
        let starts = split(spans, cuts);
        starts
            .iter()
            .map(|&lo| {
                let hi = spans
                    .iter()
                    .find(|(a, b)| *a <= lo && lo < *b)
                    .map_or(lo + 1, |&(_, b)| b);
                let next = cuts.range(lo + 1..hi).next().copied().unwrap_or(hi);
                (addr(family, lo), (addr(family, lo), addr(family, next - 1)))
            })
            .collect()
    };
    (pieces(&srcs, &src_cuts), pieces(&dsts, &dst_cuts))
}

/// The check before any packet was walked: ok, nothing known.
fn empty(spec: &NodeSpec) -> Check {
    Check {
        name: CheckName::ClusterToPod,
        expect: Expect::Forward,
        status: Status::Ok,
        rule: None,
        packet: String::new(),
        destination: spec.pod_subnet().to_string(),
        sources: Vec::new(),
        all_sources: false,
        class: Promise::Incoming,
        note: None,
        reason: None,
        cni_pods: None,
        translated: false,
        top: 0,
    }
}

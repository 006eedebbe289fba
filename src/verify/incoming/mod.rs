//! Traffic from the cluster to this node's pods: a pod on another host
//! sends to a pod here; flannel routes it to this node, which forwards it
//! to the bridge. Docker 28 and later drop such traffic unless told not to
//! (moby/moby#49792): the filter table's `-A DOCKER ! -i docker0 -o docker0
//! -j DROP` (moby's integration/network/bridge/iptablesdoc/generated/
//! new-daemon.md) and, per container, the raw table's `! -i docker0 -j
//! DROP`. The check walks raw PREROUTING, then filter FORWARD, with the
//! engine's one walk, for every atom of the cluster's other addresses to
//! every atom of the pod subnet, and ends at the chain's policy.

//!
//! What lifts each of docker's drops, the report's note, is `fix.rs`.

mod fix;

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::atoms::{Packet, Span, addr, num, span, split, subtract};
use super::engine::nft::BaseChain;
use super::engine::{End, walk};
use super::iptables::IptablesTable;
use super::nft::{Chain, Mentions};
use super::rule::{Rule, index_by_chain, reachable_from};
use super::{
    Check, CheckName, Expect, Malformed, NftLayer, Promise, RuleRef, Sets, Status, merge_ranges,
};
use crate::config::{Family, NodeSpec};
use crate::rules_file::Table;

/// The tables the forward path reads: filter, and raw where it was read;
/// and the docker file that sets `"allow-direct-routing": true`, if any.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'a> {
    pub filter: &'a Table<'a>,
    pub raw: Option<&'a Table<'a>>,
    pub direct_routing: Option<&'a str>,
    /// docker's `"bridge-accept-fwmark"` and the file that sets it.
    pub accept_fwmark: Option<(&'a str, &'a str)>,
}

/// The `:CHAIN POLICY [p:b]` of a built-in chain.
fn policy<'a>(table: &Table<'a>, chain: &str) -> Option<&'a str> {
    table.chain_decls.iter().find_map(|d| {
        let mut words = d.strip_prefix(':')?.split_whitespace();
        (words.next()? == chain).then(|| words.next()).flatten()
    })
}

/// The policy of a table's built-in chain; ACCEPT where the table was
/// not read or does not say.
fn policy_of<'a>(table: Option<&Table<'a>>, chain: &str) -> &'a str {
    table.and_then(|t| policy(t, chain)).unwrap_or("ACCEPT")
}

/// Walks `p` through every layer of the schedule, in order.
fn fate(
    schedule: &[(bool, i64, Scheduled<'_, '_, '_>)],
    nft: Option<NftLayer<'_>>,
    family: Family,
    p: &mut Packet,
) -> Fate {
    let mut last = None;
    for (_, _, layer) in schedule {
        let (end, policy) = match layer {
            Scheduled::Iptables(table, policy, is_raw) => {
                let end = match walk(*table, p) {
                    End::Drop(r) if *is_raw => End::Drop(in_raw(r)),
                    End::CannotDecide(r, why) if *is_raw => End::CannotDecide(in_raw(r), why),
                    end => end,
                };
                let policy = (*policy != "ACCEPT")
                    .then(|| format!("the {} policy is {policy}", table.entry));
                (end, policy)
            }
            Scheduled::Nft(base) => {
                let Some(n) = nft else { continue };
                let end = walk(
                    &BaseChain {
                        rs: n.ruleset,
                        base,
                        family,
                    },
                    p,
                );
                let policy = base.filter_hook.filter(|h| h.drops).map(|_| {
                    format!(
                        "the policy of table {} {} chain {} is drop",
                        base.family, base.table, base.name
                    )
                });
                (end, policy)
            }
        };
        match end {
            End::Drop(r) => return Fate::Dropped(r),
            End::CannotDecide(r, why) => return Fate::CannotDecide(r, why),
            End::Bind { rule, .. } => {
                return Fate::CannotDecide(rule, "a NAT statement in a filter chain".into());
            }
            End::Accept(r, _) => last = Some(r),
            End::Pass(..) => {
                if let Some(policy) = policy {
                    return Fate::Policy(policy);
                }
            }
        }
    }
    Fate::Forwarded(last)
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
/// `mentions`: what the nftables layer's rules name, collected once for
/// every class.
pub(super) fn check(
    spec: &NodeSpec,
    forward: Forward<'_>,
    sets: &Sets,
    nft: Option<NftLayer<'_>>,
    mentions: &Mentions,
) -> Check {
    match walk_all(spec, forward, sets, nft, mentions) {
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

/// One layer of a hook, in priority order: an iptables table (with its
/// entry chain's policy) or an nftables filter base chain.
enum Scheduled<'e, 'r, 'a> {
    Iptables(&'e IptablesTable<'r, 'a>, &'a str, bool),
    Nft(&'e Chain),
}

fn walk_all(
    spec: &NodeSpec,
    forward: Forward<'_>,
    sets: &Sets,
    nft: Option<NftLayer<'_>>,
    mentions: &Mentions,
) -> Result<Check, Malformed> {
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
    // The kernel runs every base chain of a hook in priority order: raw's
    // PREROUTING (-300) and nftables' chains at prerouting, then at
    // forward the filter table's FORWARD (0) and nftables' chains there.
    // An accept ends only its own chain; a drop, or a policy of drop,
    // ends the packet.
    let mut schedule: Vec<(bool, i64, Scheduled<'_, '_, '_>)> = vec![
        (
            true,
            -300,
            Scheduled::Iptables(&raw, policy_of(forward.raw, "PREROUTING"), true),
        ),
        (
            false,
            0,
            Scheduled::Iptables(&filter, policy_of(Some(forward.filter), "FORWARD"), false),
        ),
    ];
    if forward.raw.is_none() {
        schedule.remove(0);
    }
    if let Some(n) = nft {
        for pre in [true, false] {
            for c in n.ruleset.filter_chains(family, pre, n.iptables_nft) {
                let prio = c.filter_hook.map_or(0, |h| h.prio);
                schedule.push((pre, prio, Scheduled::Nft(c)));
            }
        }
    }
    // Prerouting first; a stable sort keeps iptables first at a tie.
    schedule.sort_by_key(|(pre, prio, _)| (!pre, *prio));
    let (srcs, dsts) = atoms(spec, filter_rules.iter().chain(&raw_rules), sets, mentions);
    let bridge = spec.bridge().as_str().to_owned();
    let mut first_ok: Option<Check> = None;
    let mut bad: Option<Check> = None;
    let mut dropped: Vec<(IpAddr, IpAddr)> = Vec::new();
    // Each dropping rule with the pod addresses it drops, in walk order:
    // the first is the check's rule, the others follow in its note.
    let mut by_rule: Vec<(RuleRef, Vec<(IpAddr, IpAddr)>)> = Vec::new();
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
            let fate = fate(&schedule, nft, family, &mut p);
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
                    c.note = fix::docker_fix(&r, spec, forward);
                    match by_rule.iter_mut().find(|(seen, _)| *seen == r) {
                        Some((_, ranges)) => ranges.push(dst_range),
                        None => by_rule.push((r.clone(), vec![dst_range])),
                    }
                    c.rule = Some(r);
                    dropped.push(dst_range);
                    bad.get_or_insert(c);
                }
                Fate::Policy(policy) => {
                    c.status = Status::Drift;
                    c.note = Some(policy);
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
        let others: Vec<String> = by_rule
            .into_iter()
            .filter(|(r, _)| check.rule.as_ref() != Some(r))
            .map(|(r, ranges)| {
                let fix = fix::docker_fix(&r, spec, forward)
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default();
                format!("{r} drops {}{fix}", merge_ranges(ranges).join(", "))
            })
            .collect();
        if !others.is_empty() {
            let first = check.note.take().unwrap_or_default();
            let sep = if first.is_empty() { "" } else { "; " };
            check.note = Some(format!("{first}{sep}and {}", others.join("; and ")));
        }
    }
    Ok(check)
}

/// A raw table's rule, named so: its chains share their names with the
/// filter table's and the nat table's.
fn in_raw(r: RuleRef) -> RuleRef {
    RuleRef {
        chain: format!("raw {}", r.chain),
        ..r
    }
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
    mentions: &Mentions,
) -> (Vec<Atom>, Vec<Atom>) {
    let family = spec.family();
    let (mut src_cuts, mut dst_cuts) = (BTreeSet::new(), BTreeSet::new());
    // nftables' addresses cut both sides: a listing does not say which.
    for &(a, b) in &mentions.addrs {
        if a.is_ipv4() == (family == Family::V4) {
            let (lo, hi) = (num(a), num(b).saturating_add(1));
            src_cuts.extend([lo, hi]);
            dst_cuts.extend([lo, hi]);
        }
    }
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

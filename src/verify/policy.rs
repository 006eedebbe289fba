//! The classes of pod packets verify walks, and how one class's walks
//! become one check: the worst packet stands for the class, with every
//! pod source range that drifts.

use std::net::IpAddr;

use serde::Serialize;

use super::atoms::{Packet, iface_matches};
use super::hook::{Decision, Hook};
use super::rule::Rule;
use super::{Check, NftLayer, RuleRef, Status, merge_ranges};
use crate::config::NodeSpec;
use crate::render::{self, Owner};
use crate::rules_file::Table;

/// The four classes of pod packets, by the name the JSON report gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckName {
    PodToCluster,
    PodToOutside,
    PodViaBridge,
    MarkedToCluster,
    /// Traffic from the cluster's other pods to this node's pods.
    ClusterToPod,
}

/// Which promise a check's sample stands for: `cluster` (cluster_cidr),
/// `no_masquerade` (a no_masquerade CIDR), `outside`, `bridge` or `marked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Promise {
    Cluster,
    NoMasquerade,
    Outside,
    Bridge,
    Marked,
    Incoming,
}

/// What must happen to a class of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// The pod source IP stays.
    Keep,
    /// The source is translated (masquerade or snat).
    Masquerade,
    /// No rule of podsnat's decides it: it reaches the rules below
    /// podsnat's (docker's hairpin NAT), whatever they do.
    Untouched,
    /// No rule of podsnat's keeps its source: whoever asked for its
    /// masquerade (kube-proxy's KUBE-POSTROUTING) gets to do it.
    NotKept,
    /// It is forwarded to the bridge, not dropped.
    Forward,
}

impl Expect {
    /// The class asks only whether a rule of podsnat's decides: other
    /// tools' rules may do what they like with it.
    pub(super) fn only_podsnat(self) -> bool {
        matches!(self, Expect::Untouched | Expect::NotKept)
    }
}

/// One class of packets: its name in the report, what must happen, and
/// the promise it stands for (the report's `class` label).
pub(super) struct Class {
    pub(super) name: CheckName,
    pub(super) expect: Expect,
    pub(super) promise: Promise,
}

/// Pod traffic to the cluster (and the no_masquerade CIDRs) that leaves
/// through another interface than the bridge keeps its source IP.
pub(super) const CLUSTER: Class = Class {
    name: CheckName::PodToCluster,
    expect: Expect::Keep,
    promise: Promise::Cluster,
};

/// Pod traffic to anywhere else is masqueraded.
pub(super) const OUTSIDE: Class = Class {
    name: CheckName::PodToOutside,
    expect: Expect::Masquerade,
    promise: Promise::Outside,
};

/// Pod traffic to the node's own pod subnet, which leaves through the
/// bridge (docker's hairpin NAT among it), is left to the rules below
/// podsnat's.
pub(super) const BRIDGE: Class = Class {
    name: CheckName::PodViaBridge,
    expect: Expect::Untouched,
    promise: Promise::Bridge,
};

/// Pod traffic to the cluster that carries the masquerade mark (kube-
/// proxy's KUBE-MARK-MASQ, a service with masquerade-all) is never kept by
/// podsnat: where kube-proxy's KUBE-POSTROUTING stands, it masquerades it.
pub(super) const MARKED: Class = Class {
    name: CheckName::MarkedToCluster,
    expect: Expect::NotKept,
    promise: Promise::Marked,
};

/// Whether podsnat has a rule in either layer: its chain, a rule it wrote,
/// or its anchor table.
pub(super) fn podsnat_present(
    spec: &NodeSpec,
    owner: &Owner,
    table: &Table<'_>,
    nft: Option<NftLayer<'_>>,
) -> bool {
    table.chains.contains(&render::OWN_CHAIN)
        || table.rules.iter().any(|r| owner.wrote(r.chain, r.text))
        || nft.is_some_and(|n| n.anchor_priority(spec.family()).is_some())
}

/// Whether no rule of podsnat's can see a packet that leaves through the
/// bridge: every jump to PODSNAT-POSTROUTING and every POSTROUTING rule of
/// podsnat's has `! -o BRIDGE`, and so does every rule of the anchor but
/// the mark's return. Then bridge traffic is podsnat-free by construction,
/// and only a container's traffic to itself is walked, to show the rule
/// that decides it (docker's hairpin MASQUERADE); otherwise every pair of
/// pod addresses is walked.
pub(super) fn bridge_guarded(
    spec: &NodeSpec,
    owner: &Owner,
    rules: &[Rule<'_>],
    nft: Option<NftLayer<'_>>,
) -> bool {
    let bridge = spec.bridge().as_str();
    // `! -o BRIDGE`, or `-o` another interface (that the bridge's name does
    // not match).
    let guarded = |r: &Rule<'_>| match &r.out_if {
        Some((true, name)) => name == bridge,
        Some((false, name)) => !iface_matches(name, bridge),
        None => false,
    };
    // The rules that let a packet into podsnat's: its jumps and its
    // POSTROUTING rules (its chain is reached only through them).
    let iptables = rules
        .iter()
        .all(|r| r.chain == render::OWN_CHAIN || !owner.wrote(r.chain, r.text) || guarded(r));
    let anchor = nft.is_none_or(|n| n.anchor_guarded(spec.family(), bridge));
    iptables && anchor
}

/// The bridge check where no rule of podsnat's can see bridge traffic: ok,
/// shown by the walk of a container's traffic to itself where that walk
/// decided it, and by the reason otherwise.
pub(super) fn guarded_bridge(spec: &NodeSpec, walked: Option<Check>) -> Check {
    match walked {
        Some(c) if c.status == Status::Ok => c,
        _ => {
            let mut c = empty(spec, &BRIDGE);
            c.note = Some(format!(
                "no rule of podsnat's sees it: its jumps and rules all have `! -o {}`",
                spec.bridge()
            ));
            c
        }
    }
}

/// The check of a class that only podsnat's rules could fail, where
/// podsnat has none.
pub(super) fn absent(spec: &NodeSpec, class: &Class) -> Check {
    let mut c = empty(spec, class);
    c.note = Some("podsnat has no rule here, so none of its rules can decide it".to_owned());
    c
}

/// The check of a class no packet belongs to.
pub(super) fn empty(spec: &NodeSpec, class: &Class) -> Check {
    let note = match class.expect {
        Expect::Masquerade if class.name == OUTSIDE.name => {
            "no packet of this class exists: the exclusions cover every address".to_owned()
        }
        _ => format!(
            "no packet of this class exists: every exclusion lies inside the pod subnet {}, whose traffic stays on the bridge {}",
            spec.pod_subnet(),
            spec.bridge()
        ),
    };
    Check {
        name: class.name,
        expect: class.expect,
        status: Status::Ok,
        rule: None,
        packet: String::new(),
        destination: String::new(),
        sources: Vec::new(),
        all_sources: false,
        class: class.promise,
        note: Some(note),
        reason: None,
        cni_pods: None,
        translated: false,
        top: 0,
    }
}

/// What a drift means for podsnat's own rules, where they are in the table.
pub(super) fn note(
    spec: &NodeSpec,
    owner: &Owner,
    table: &Table<'_>,
    check: &Check,
) -> Option<String> {
    if check.status != Status::Drift {
        return None;
    }
    let post: Vec<&str> = table.chain_rules("POSTROUTING");
    let ours_decided = check
        .rule
        .as_ref()
        .is_some_and(|r| owner.decides(&r.chain, &r.text));
    match check.name {
        n if n == CLUSTER.name => {
            let ours = post
                .iter()
                .position(|r| *r == owner.exclusion())
                .map(|i| i + 1);
            // Speak of podsnat's exclusion only where podsnat ran: its rule
            // or its chain is in the table.
            match ours {
                Some(q) if check.top < q => Some("inserted above podsnat's exclusion".into()),
                Some(_) => Some("podsnat's exclusion does not cover it".into()),
                None if table.chains.contains(&render::OWN_CHAIN) => {
                    Some("podsnat's exclusion is missing".into())
                }
                None if check
                    .rule
                    .as_ref()
                    .is_some_and(|r| super::egress::in_cni_chain(&r.chain)) =>
                {
                    Some("the CNI bridge plugin's masquerade of each pod, \"ipMasq\": true; podsnat's exclusion or anchor must decide before it".into())
                }
                None => None,
            }
        }
        n if n == BRIDGE.name => {
            let via = post.get(check.top.wrapping_sub(1))?;
            // A jump of podsnat's that bridge traffic reached, and that its
            // block does not hold: an earlier form, without the guard.
            let earlier = Owner::is_jump(via) && !owner.block().iter().any(|r| r == via);
            Some(if earlier {
                format!(
                    "reached through POSTROUTING rule {}: {via}, podsnat's earlier jump, without `! -o {}`; a restore of the rules file, `podsnat pin` or `verify --repair` replaces it",
                    check.top,
                    spec.bridge()
                )
            } else {
                format!("reached through POSTROUTING rule {}: {via}", check.top)
            })
        }
        n if n == MARKED.name && ours_decided => {
            Some("so kube-proxy's MASQUERADE never sees it, wherever it stands".into())
        }
        _ => None,
    }
}

/// Walks every packet of a class and folds the outcomes into one check.
pub(super) fn run(
    spec: &NodeSpec,
    owner: &Owner,
    hook: &Hook<'_, '_, '_>,
    class: &Class,
    packets: impl Iterator<Item = Packet>,
) -> Option<Check> {
    let decides = |r: &RuleRef| owner.decides(&r.chain, &r.text);
    let mut first_ok: Option<(u8, Check)> = None;
    let mut cannot_decide: Option<Check> = None;
    let mut drift: Option<Check> = None;
    // Every source range that drifts, not only the first.
    let mut drifting: Vec<(IpAddr, IpAddr)> = Vec::new();
    for p in packets {
        // Bridge traffic walked pair by pair (podsnat's rules are not all
        // guarded): the first drift answers the question, and the pairs of
        // pod addresses are too many to walk them all.
        if class.expect == Expect::Untouched && drift.is_some() {
            break;
        }
        let decision = hook.decide(&p);
        // How well an ok packet shows that podsnat left it alone: reaching
        // a translation below (docker's hairpin NAT) shows it best.
        let rank = match &decision {
            Decision::Translate(..) => 2,
            Decision::Keep(Some(_), _) => 1,
            _ => 0,
        };
        let (status, rule, top, reason) = match decision {
            Decision::Translate(r, top) => {
                let status = match class.expect {
                    Expect::Keep => Status::Drift,
                    Expect::Masquerade => Status::Ok,
                    Expect::Untouched if decides(&r) => Status::Drift,
                    // The nat walk never judges the forward path.
                    Expect::Untouched | Expect::NotKept | Expect::Forward => Status::Ok,
                };
                (status, Some(r), top, None)
            }
            Decision::Keep(r, top) => {
                let status = match class.expect {
                    Expect::Keep => Status::Ok,
                    Expect::Masquerade => Status::Drift,
                    Expect::Untouched | Expect::NotKept if r.as_ref().is_some_and(decides) => {
                        Status::Drift
                    }
                    Expect::Untouched | Expect::NotKept | Expect::Forward => Status::Ok,
                };
                (status, r, top, None)
            }
            Decision::CannotDecide(r, why) => (Status::CannotDecide, Some(r), 0, Some(why)),
        };
        let port = p.dport.map_or_else(String::new, |d| format!(" port {d}"));
        let check = Check {
            name: class.name,
            expect: class.expect,
            status,
            rule,
            packet: format!(
                "{} -> {} from {} via {} ({}{port}){}",
                p.src,
                p.dst,
                p.in_if,
                p.out_if,
                p.proto,
                if p.mark == 0 {
                    String::new()
                } else {
                    format!(" mark {:#x}", p.mark)
                }
            ),
            destination: p.dst_class.to_string(),
            sources: Vec::new(),
            all_sources: false,
            class: match class.promise {
                Promise::Cluster if !p.dst_class.contains(&spec.cluster_cidr()) => {
                    Promise::NoMasquerade
                }
                c => c,
            },
            note: None,
            reason,
            cni_pods: None,
            translated: rank == 2,
            top,
        };
        match status {
            Status::Drift => {
                if drifting.last() != Some(&p.src_range) {
                    drifting.push(p.src_range);
                }
                drift.get_or_insert(check);
            }
            Status::CannotDecide => {
                cannot_decide.get_or_insert(check);
            }
            Status::Ok => {
                let better = class.expect.only_podsnat()
                    && first_ok.as_ref().is_some_and(|(r, _)| *r < rank);
                if first_ok.is_none() || better {
                    first_ok = Some((rank, check));
                }
            }
        }
    }
    let mut check = drift.or(cannot_decide).or(first_ok.map(|(_, c)| c))?;
    if class.expect == Expect::Untouched {
        // Only the first drift was walked: no list of sources.
        drifting.clear();
    }
    check.sources = merge_ranges(drifting);
    check.all_sources = check.sources == [spec.pod_subnet().to_string()];
    Some(check)
}

//! The hook's schedule: every nat chain hooked at postrouting, in priority
//! order, as the kernel runs them for a connection's first packet
//! (`nf_nat_inet_fn`); each is walked by the engine's one `walk`.
//! iptables' nat table is one of them, at priority 100 (srcnat). An accept
//! or a return ends only its own chain; the first chain that sets up a
//! translation decides and the later ones are skipped. podsnat's anchor
//! (`snat to ip saddr` at srcnat - 1) sets up one that keeps the source.

use super::atoms::Packet;
use super::iptables::IptablesTable;
use super::model::{Chain, Ruleset};
use super::nft::BaseChain;
use super::{End, RuleRef, walk};
use crate::config::Family;

/// iptables' nat table hooks at this priority (NF_IP_PRI_NAT_SRC).
pub(in crate::verify) const IPTABLES_PRIO: i64 = 100;

/// How the walk over every chain ended.
pub(in crate::verify) enum Decision {
    /// A translation to another address (masquerade, snat to another).
    Translate(RuleRef, usize),
    /// The source stays: an identity snat, or no chain translated (the
    /// rule that decided last, if any).
    Keep(Option<RuleRef>, usize),
    CannotDecide(RuleRef, String),
}

pub(in crate::verify) struct Hook<'e, 'r, 'a> {
    pub(in crate::verify) iptables: &'e IptablesTable<'r, 'a>,
    pub(in crate::verify) nft: Option<&'e Ruleset>,
    /// The nft base chains of the family, lowest priority first.
    pub(in crate::verify) chains: Vec<&'e Chain>,
    pub(in crate::verify) family: Family,
}

/// A layer in the hook's order: iptables' nat table, or a base chain.
#[derive(Clone, Copy)]
enum Scheduled<'e> {
    Iptables,
    Nft(&'e Chain),
}

impl Hook<'_, '_, '_> {
    /// Runs the layers in priority order, each through the engine's one
    /// walk. A mark one layer sets is the packet's in the next.
    pub(in crate::verify) fn decide(&self, p: &Packet) -> Decision {
        let mut order: Vec<(i64, Scheduled<'_>)> = self
            .chains
            .iter()
            .map(|c| (c.hook_prio.unwrap_or(0), Scheduled::Nft(c)))
            .collect();
        let at = order
            .iter()
            .position(|(prio, _)| *prio > IPTABLES_PRIO)
            .unwrap_or(order.len());
        order.insert(at, (IPTABLES_PRIO, Scheduled::Iptables));

        let mut q = p.clone();
        let mut last: (Option<RuleRef>, usize) = (None, 0);
        let mut i = 0;
        while let Some(&(prio, _)) = order.get(i) {
            // Chains of one priority run in the order they were registered,
            // which no listing shows: their bindings must agree.
            let group: Vec<Scheduled<'_>> = order
                .iter()
                .skip(i)
                .take_while(|(o, _)| *o == prio)
                .map(|(_, c)| *c)
                .collect();
            i += group.len();
            let mut bound: Option<(bool, RuleRef, usize)> = None;
            for layer in group {
                let end = match layer {
                    Scheduled::Iptables => walk(self.iptables, &mut q),
                    Scheduled::Nft(base) => match self.nft {
                        // Only iptables' table positions count as `top`.
                        Some(rs) => without_top(walk(
                            &BaseChain {
                                rs,
                                base,
                                family: self.family,
                            },
                            &mut q,
                        )),
                        None => End::Pass(None, 0),
                    },
                };
                match end {
                    End::CannotDecide(r, why) => return Decision::CannotDecide(r, why),
                    // iptables refuses DROP in the nat table; nft's nat
                    // chains are walked without a drop statement.
                    End::Drop(r) => {
                        return Decision::CannotDecide(
                            r,
                            "a drop in a nat chain is not modeled".into(),
                        );
                    }
                    // An accept ends only its own chain.
                    End::Accept(r, top) => last = (Some(r), top),
                    End::Pass(r, top) => {
                        if r.is_some() {
                            last = (r, top);
                        }
                    }
                    End::Bind {
                        identity,
                        rule,
                        top,
                    } => match &bound {
                        Some((other, first, _)) if *other != identity => {
                            return Decision::CannotDecide(
                                rule,
                                format!(
                                    "it and {first} run at the same priority {prio} in an order no listing shows, and one keeps the source while the other translates it"
                                ),
                            );
                        }
                        Some(_) => {}
                        None => bound = Some((identity, rule, top)),
                    },
                }
            }
            match bound {
                Some((true, rule, top)) => return Decision::Keep(Some(rule), top),
                Some((false, rule, top)) => return Decision::Translate(rule, top),
                None => {}
            }
        }
        Decision::Keep(last.0, last.1)
    }
}

/// An nftables layer's end, with no position in iptables' POSTROUTING.
fn without_top(end: End) -> End {
    match end {
        End::Bind { identity, rule, .. } => End::Bind {
            identity,
            rule,
            top: 0,
        },
        End::Pass(r, _) => End::Pass(r, 0),
        End::Accept(r, _) => End::Accept(r, 0),
        e => e,
    }
}

/// What decides a drift that a rule of another nftables table decided:
/// the priority of the base chain whose walk reached it, against iptables'
/// nat table, never a position in iptables' POSTROUTING (nothing was
/// inserted above anything there). `ours_in_iptables`: podsnat's rules are
/// in iptables' table, where they bind no NAT for this packet, so they end
/// only that table's walk. `None` where an iptables rule decided.
pub(in crate::verify) fn priority_note(rule: &RuleRef, ours_in_iptables: bool) -> Option<String> {
    let prio = rule.base_priority?;
    // `table FAMILY NAME chain NAME`, as rule_ref writes it; nft names
    // have no spaces.
    let table = rule.chain.strip_prefix("table ")?.split(" chain ").next()?;
    let order = match prio.cmp(&IPTABLES_PRIO) {
        std::cmp::Ordering::Less => "before",
        std::cmp::Ordering::Equal => "at the same priority as",
        std::cmp::Ordering::Greater => "after",
    };
    let mut note = format!(
        "table {table} runs at priority {prio}, {order} iptables' nat table ({IPTABLES_PRIO})"
    );
    // The first NAT binding ends the walk at the hook; podsnat's exclusion
    // in iptables' table keeps the source without binding.
    if ours_in_iptables {
        note += if prio < IPTABLES_PRIO {
            ", so podsnat's exclusion there never sees the packet"
        } else {
            ", where podsnat's exclusion binds no NAT and so ends only that table's walk"
        };
    }
    Some(note)
}

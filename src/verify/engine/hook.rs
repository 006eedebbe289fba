//! The hook walk: every nat chain hooked at postrouting, in priority order,
//! as the kernel runs them for a packet's first packet (`nf_nat_inet_fn`).
//! iptables' nat table is one of them, at priority 100 (srcnat). An accept
//! or a return ends only its own chain; the first chain that sets up a
//! translation decides and the later ones are skipped. podsnat's anchor
//! (`snat to ip saddr` at srcnat - 1) sets up one that keeps the source.

use super::RuleRef;
use super::atoms::Packet;
use super::iptables::{End, Evaluator};
use super::nft::{Chain, Elem, Field, Ruleset, Stmt, VerdictMap};
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

/// One chain's outcome for a packet.
enum Outcome {
    Bind {
        identity: bool,
        rule: RuleRef,
        top: usize,
    },
    Pass(Option<RuleRef>, usize),
    CannotDecide(RuleRef, String),
}

pub(in crate::verify) struct Hook<'e, 'r, 'a> {
    pub(in crate::verify) iptables: &'e Evaluator<'r, 'a>,
    pub(in crate::verify) nft: Option<&'e Ruleset>,
    /// The nft base chains of the family, lowest priority first.
    pub(in crate::verify) chains: Vec<&'e Chain>,
    pub(in crate::verify) family: Family,
}

impl Hook<'_, '_, '_> {
    pub(in crate::verify) fn decide(&self, p: &Packet) -> Decision {
        // The chains in order; `None` stands for iptables' nat table.
        let mut order: Vec<(i64, Option<&Chain>)> = self
            .chains
            .iter()
            .map(|c| (c.hook_prio.unwrap_or(0), Some(*c)))
            .collect();
        let at = order
            .iter()
            .position(|(prio, _)| *prio > IPTABLES_PRIO)
            .unwrap_or(order.len());
        order.insert(at, (IPTABLES_PRIO, None));

        let mut mark = p.mark;
        let mut last: (Option<RuleRef>, usize) = (None, 0);
        let mut i = 0;
        while let Some(&(prio, _)) = order.get(i) {
            // Chains of one priority run in the order they were registered,
            // which no listing shows: their bindings must agree.
            let group: Vec<Option<&Chain>> = order
                .iter()
                .skip(i)
                .take_while(|(q, _)| *q == prio)
                .map(|(_, c)| *c)
                .collect();
            i += group.len();
            let mut bound: Option<(bool, RuleRef, usize)> = None;
            for chain in group {
                let mut q = p.clone();
                q.mark = mark;
                let outcome = match chain {
                    None => self.iptables_outcome(&q),
                    Some(c) => self.nft_outcome(c, &mut q),
                };
                mark = q.mark;
                match outcome {
                    Outcome::CannotDecide(r, why) => return Decision::CannotDecide(r, why),
                    Outcome::Pass(r, top) => {
                        if r.is_some() {
                            last = (r, top);
                        }
                    }
                    Outcome::Bind {
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

    fn iptables_outcome(&self, p: &Packet) -> Outcome {
        match self.iptables.walk(p) {
            End::Nat(r, top) => Outcome::Bind {
                identity: false,
                rule: RuleRef::of(r),
                top,
            },
            End::NoNat(r, top) => Outcome::Pass(r.map(RuleRef::of), top),
            End::CannotDecide(r, why) => Outcome::CannotDecide(RuleRef::of(r), why),
        }
    }

    /// One base chain and the regular chains it jumps to.
    fn nft_outcome(&self, base: &Chain, p: &mut Packet) -> Outcome {
        let Some(rs) = self.nft else {
            return Outcome::Pass(None, 0);
        };
        let mut stack: Vec<(&Chain, usize)> = vec![(base, 0)];
        let mut last = None;
        let mut steps = 0usize;
        while let Some((chain, idx)) = stack.last_mut() {
            let chain: &Chain = chain;
            let Some(rule) = chain.rules.get(*idx) else {
                stack.pop();
                continue;
            };
            *idx += 1;
            let here = rule_ref(base, chain, *idx, &rule.text);
            steps += 1;
            if steps > 100_000 || stack.len() > 64 {
                return Outcome::CannotDecide(here, "the chains loop or nest too deep".into());
            }
            // First every match: one that fails means the rule does not
            // apply, whatever else it holds.
            let mut unknown = None;
            let mut applies = true;
            for s in &rule.stmts {
                if let Stmt::Match { neg, field, any_of } = s {
                    // A match on the other family's addresses (in an `inet`
                    // table) never holds, negated or not: nft adds a check
                    // of the protocol before it.
                    if matches!(field, Field::Addr { family, .. } if *family != self.family) {
                        applies = false;
                        continue;
                    }
                    match matches(rs, chain, p, field, any_of) {
                        Some(hit) if hit == *neg => applies = false,
                        Some(_) => {}
                        None => {
                            unknown
                                .get_or_insert_with(|| "a set it uses is not modeled".to_owned());
                        }
                    }
                }
            }
            if !applies {
                continue;
            }
            if p.lenient && unknown.is_some() && ends_elsewhere(&rule.stmts) {
                // Matching or not, podsnat's rules decide nothing here.
                continue;
            }
            if let Some(why) = unknown {
                return Outcome::CannotDecide(here, why);
            }
            for s in &rule.stmts {
                // A verdict map stands for the verdict of the entry that
                // holds the packet's key; with none, the rule goes on.
                let s = match s {
                    Stmt::Vmap { field, map } => {
                        let entries = match map {
                            VerdictMap::Anonymous(e) => e.as_slice(),
                            VerdictMap::Named(name) => {
                                match rs.map(&chain.family, &chain.table, name) {
                                    Some(e) => e,
                                    None => {
                                        return Outcome::CannotDecide(
                                            here,
                                            format!("the map @{name} is not modeled"),
                                        );
                                    }
                                }
                            }
                        };
                        let other_family =
                            matches!(field, Field::Addr { family, .. } if *family != self.family);
                        let mut hit = None;
                        for (key, verdict) in entries.iter().filter(|_| !other_family) {
                            match matches(rs, chain, p, field, std::slice::from_ref(key)) {
                                Some(true) => {
                                    hit = Some(verdict);
                                    break;
                                }
                                Some(false) => {}
                                None => {
                                    return Outcome::CannotDecide(
                                        here,
                                        "a set its map uses is not modeled".into(),
                                    );
                                }
                            }
                        }
                        match hit {
                            Some(verdict) => verdict,
                            None => continue,
                        }
                    }
                    s => s,
                };
                match s {
                    Stmt::Match { .. } | Stmt::Passive | Stmt::Vmap { .. } => {}
                    Stmt::SetMark { and, xor, or } => p.mark = ((p.mark & and) ^ xor) | or,
                    Stmt::Unknown(_) if p.lenient && ends_elsewhere(&rule.stmts) => break,
                    Stmt::Unknown(why) => return Outcome::CannotDecide(here, why.clone()),
                    Stmt::Accept => return Outcome::Pass(Some(here), 0),
                    Stmt::Identity => {
                        return Outcome::Bind {
                            identity: true,
                            rule: here,
                            top: 0,
                        };
                    }
                    Stmt::Translate => {
                        return Outcome::Bind {
                            identity: false,
                            rule: here,
                            top: 0,
                        };
                    }
                    Stmt::Return => {
                        stack.pop();
                        last = Some(here);
                        break;
                    }
                    Stmt::Jump(t) | Stmt::Goto(t) => {
                        let Some(next) = rs.chain(&chain.family, &chain.table, t) else {
                            return Outcome::CannotDecide(
                                here,
                                format!("the chain {t} is not in the ruleset"),
                            );
                        };
                        if matches!(s, Stmt::Goto(_)) {
                            stack.pop();
                        }
                        stack.push((next, 0));
                        break;
                    }
                }
            }
        }
        Outcome::Pass(last, 0)
    }
}

/// A rule of someone else's table whose only verdict ends the walk (a
/// translation, an identity snat, an accept): whether its unmodeled part
/// matches or not, it cannot make a rule of podsnat's decide.
fn ends_elsewhere(stmts: &[Stmt]) -> bool {
    stmts
        .iter()
        .any(|s| matches!(s, Stmt::Translate | Stmt::Identity | Stmt::Accept))
        && !stmts.iter().any(|s| {
            matches!(
                s,
                Stmt::SetMark { .. }
                    | Stmt::Jump(_)
                    | Stmt::Goto(_)
                    | Stmt::Return
                    | Stmt::Vmap { .. }
            )
        })
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

/// A rule of `chain`, reached from the base chain `base`.
fn rule_ref(base: &Chain, chain: &Chain, position: usize, text: &str) -> RuleRef {
    RuleRef {
        base_priority: Some(base.hook_prio.unwrap_or(0)),
        chain: format!(
            "table {} {} chain {}",
            chain.family, chain.table, chain.name
        ),
        position,
        text: text.to_owned(),
    }
}

/// Whether the packet's `field` is one of `any_of`; `None` when a set it
/// names is not modeled.
fn matches(
    rs: &Ruleset,
    chain: &Chain,
    p: &Packet,
    field: &Field,
    any_of: &[Elem],
) -> Option<bool> {
    let mut elems: Vec<&Elem> = Vec::new();
    for e in any_of {
        match e {
            Elem::Name(n) if n.starts_with('@') => {
                let set = rs.set(&chain.family, &chain.table, n.trim_start_matches('@'))?;
                elems.extend(set);
            }
            _ => elems.push(e),
        }
    }
    let hit = match field {
        Field::Addr { src, .. } => {
            let a = if *src { p.src } else { p.dst };
            elems
                .iter()
                .any(|e| matches!(e, Elem::Addrs(lo, hi) if *lo <= a && a <= *hi))
        }
        Field::Iface { out } => {
            let name = if *out { &p.out_if } else { &p.in_if };
            elems.iter().any(|e| match e {
                Elem::Name(n) => match n.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => n == name,
                },
                _ => false,
            })
        }
        Field::Mark(mask) => {
            let v = p.mark & mask;
            elems.iter().any(|e| matches!(e, Elem::Num(n) if *n == v))
        }
    };
    Some(hit)
}

//! One nftables base chain (and the regular chains it jumps to) as a
//! [`Layer`]: matches on addresses, interfaces, marks, `ct state` and
//! ports, named sets, verdict maps, marks set, accept, drop, return, jump
//! and goto, and the NAT
//! statements (`snat to ip saddr` keeps the source). The walk itself is
//! the engine's.

use super::atoms::Packet;
use super::model::{Chain, Elem, Field, NftRule, Ruleset, Stmt, VerdictMap};
use super::{Layer, RuleRef, Step};
use crate::config::Family;

/// A base chain of `rs`, for packets of `family`.
pub(in crate::verify) struct BaseChain<'e> {
    pub(in crate::verify) rs: &'e Ruleset,
    pub(in crate::verify) base: &'e Chain,
    pub(in crate::verify) family: Family,
}

/// A chain of the ruleset, compared by identity (a ruleset holds each
/// chain once).
#[derive(Clone, Copy)]
pub(in crate::verify) struct ChainRef<'e>(&'e Chain);

impl PartialEq for ChainRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl<'e> Layer for BaseChain<'e> {
    type Chain = ChainRef<'e>;
    type Rule = &'e NftRule;

    fn entry(&self) -> ChainRef<'e> {
        ChainRef(self.base)
    }

    fn rule(&self, chain: ChainRef<'e>, index: usize) -> Option<&'e NftRule> {
        chain.0.rules.get(index)
    }

    fn step(&self, chain: ChainRef<'e>, rule: &'e NftRule, p: &mut Packet) -> Step<ChainRef<'e>> {
        let (rs, chain) = (self.rs, chain.0);
        // First every match: one that fails means the rule does not
        // apply, whatever else it holds.
        let mut unknown = None;
        for s in &rule.stmts {
            if let Stmt::Match { neg, field, any_of } = s {
                // A match on the other family's addresses (in an `inet`
                // table) never holds, negated or not: nft adds a check of
                // the protocol before it.
                if self.other_family(field) {
                    return Step::Next;
                }
                // Only a packet of the protocol has its port, so a packet
                // of every protocol (`any`) never matches, negated or not,
                // as iptables' `-p tcp --dport` does not.
                if let Field::Port { proto } = field
                    && *proto != p.proto
                {
                    return Step::Next;
                }
                match matches(rs, chain, p, field, any_of) {
                    Some(hit) if hit == *neg => return Step::Next,
                    Some(_) => {}
                    None => {
                        unknown.get_or_insert_with(|| match field {
                            Field::Port { .. } => "the packet's port is not modeled".to_owned(),
                            _ => "a set it uses is not modeled".to_owned(),
                        });
                    }
                }
            }
        }
        let foreign_end = ends_elsewhere(&rule.stmts);
        if let Some(why) = unknown {
            return Step::Unknown { why, foreign_end };
        }
        for s in &rule.stmts {
            // A verdict map stands for the verdict of the entry that holds
            // the packet's key; with none, the rule goes on.
            let s = match s {
                Stmt::Vmap { field, map } => match self.vmap(chain, p, field, map) {
                    Ok(Some(verdict)) => verdict,
                    Ok(None) => continue,
                    Err(why) => return Step::CannotDecide(why),
                },
                s => s,
            };
            match s {
                Stmt::Match { .. } | Stmt::Passive | Stmt::Vmap { .. } => {}
                Stmt::SetMark { and, xor, or } => p.mark = ((p.mark & and) ^ xor) | or,
                Stmt::Unknown(why) => {
                    return Step::Unknown {
                        why: why.clone(),
                        foreign_end,
                    };
                }
                Stmt::Accept => return Step::Accept,
                Stmt::Drop => return Step::Drop,
                Stmt::Identity => return Step::Bind { identity: true },
                Stmt::Translate => return Step::Bind { identity: false },
                Stmt::Return => return Step::Return,
                Stmt::Jump(t) | Stmt::Goto(t) => {
                    let Some(next) = rs.chain(&chain.family, &chain.table, t) else {
                        return Step::CannotDecide(format!("the chain {t} is not in the ruleset"));
                    };
                    return if matches!(s, Stmt::Goto(_)) {
                        Step::Goto(ChainRef(next))
                    } else {
                        Step::Jump(ChainRef(next))
                    };
                }
            }
        }
        Step::Next
    }

    fn position(&self, index: usize, _: &'e NftRule) -> usize {
        index + 1
    }

    fn named(&self, chain: ChainRef<'e>, index: usize, rule: &'e NftRule) -> RuleRef {
        rule_ref(self.base, chain.0, index + 1, &rule.text)
    }
}

impl<'e> BaseChain<'e> {
    fn other_family(&self, field: &Field) -> bool {
        matches!(field, Field::Addr { family, .. } if *family != self.family)
    }

    /// The verdict of the entry of `map` that holds the packet's key, or
    /// `None` (the rule goes on); an error where the map or a set it uses
    /// is not modeled.
    fn vmap(
        &self,
        chain: &'e Chain,
        p: &Packet,
        field: &Field,
        map: &'e VerdictMap,
    ) -> Result<Option<&'e Stmt>, String> {
        let entries = match map {
            VerdictMap::Anonymous(e) => e.as_slice(),
            VerdictMap::Named(name) => self
                .rs
                .map(&chain.family, &chain.table, name)
                .ok_or_else(|| format!("the map @{name} is not modeled"))?,
        };
        if self.other_family(field) {
            return Ok(None);
        }
        for (key, verdict) in entries {
            match matches(self.rs, chain, p, field, std::slice::from_ref(key)) {
                Some(true) => return Ok(Some(verdict)),
                Some(false) => {}
                None => return Err("a set its map uses is not modeled".into()),
            }
        }
        Ok(None)
    }
}

/// A rule of someone else's table whose only verdict ends the walk (a
/// translation, an identity snat, an accept): whether its unmodeled part
/// matches or not, it cannot make a rule of podsnat's decide.
fn ends_elsewhere(stmts: &[Stmt]) -> bool {
    stmts.iter().any(|s| {
        matches!(
            s,
            Stmt::Translate | Stmt::Identity | Stmt::Accept | Stmt::Drop
        )
    }) && !stmts.iter().any(|s| {
        matches!(
            s,
            Stmt::SetMark { .. } | Stmt::Jump(_) | Stmt::Goto(_) | Stmt::Return | Stmt::Vmap { .. }
        )
    })
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
        // The connection's first packet: new.
        Field::CtState => elems
            .iter()
            .any(|e| matches!(e, Elem::Name(n) if n == "new")),
        Field::Port { .. } => {
            let port = p.dport?;
            elems.iter().any(|e| match e {
                Elem::Num(n) => *n == u32::from(port),
                _ => false,
            })
        }
    };
    Some(hit)
}

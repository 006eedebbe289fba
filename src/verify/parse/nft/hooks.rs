//! Which chains the kernel runs where: the tables live verify lists, the
//! nat base chains at postrouting and the filter base chains at prerouting
//! and forward, in priority order; and what the rules name, for the atoms.

use std::net::IpAddr;

use super::{Chain, Elem, Field, Ruleset, Stmt, TableName, VerdictMap};
use crate::config::Family;
use crate::render;

/// What the ruleset's rules name, for the evaluator's atoms: address
/// ranges, interface names, and (protocol, port) pairs.
#[derive(Debug, Default)]
pub(in crate::verify) struct Mentions {
    pub(in crate::verify) addrs: Vec<(IpAddr, IpAddr)>,
    pub(in crate::verify) names: Vec<String>,
    pub(in crate::verify) ports: Vec<(String, u32)>,
}

impl Ruleset {
    /// Every table with a nat chain at postrouting (and, with `forward`, a
    /// filter chain at prerouting or forward), as (family, name); a listing
    /// of the chains alone is enough to find them. iptables-nft's own
    /// tables are named apart: `(tables, iptables-nft's)`.
    pub fn tables_to_read(&self, forward: bool) -> (Vec<TableName>, Vec<TableName>) {
        let mut tables: Vec<TableName> = Vec::new();
        let mut iptables = Vec::new();
        let wanted = |c: &&Chain| c.hook_prio.is_some() || (forward && c.filter_hook.is_some());
        for c in self.chains.values().filter(wanted) {
            let key = (c.family.clone(), c.table.clone());
            if is_iptables_nft(c) {
                iptables.push(key);
            } else {
                tables.push(key);
            }
        }
        tables.sort();
        tables.dedup();
        iptables.sort();
        iptables.dedup();
        (tables, iptables)
    }

    /// The filter base chains at prerouting (or forward) that see packets
    /// of `family`, lowest priority first; iptables-nft's own filter and
    /// raw tables left out with `skip_iptables_nft`, as in `base_chains`.
    pub(in crate::verify) fn filter_chains(
        &self,
        family: Family,
        prerouting: bool,
        skip_iptables_nft: bool,
    ) -> Vec<&Chain> {
        self.hooked(family, skip_iptables_nft, |c| {
            c.filter_hook
                .filter(|h| h.prerouting == prerouting)
                .map(|h| h.prio)
        })
    }

    /// The nat base chains at postrouting that see packets of `family`
    /// (tables of that family and `inet`), lowest priority first. The
    /// `skip` table (`ip nat` of iptables-nft, read through iptables-save)
    /// is left out.
    pub(in crate::verify) fn base_chains(
        &self,
        family: Family,
        skip_iptables_nft: bool,
    ) -> Vec<&Chain> {
        self.hooked(family, skip_iptables_nft, |c| c.hook_prio)
    }

    /// The chains `prio` gives a priority, of `family`'s tables and
    /// `inet`'s, by priority (then family, table and name).
    fn hooked(
        &self,
        family: Family,
        skip_iptables_nft: bool,
        prio: impl Fn(&Chain) -> Option<i64>,
    ) -> Vec<&Chain> {
        let own = render::nft_family(family);
        let mut out: Vec<(i64, &Chain)> = self
            .chains
            .values()
            .filter(|c| c.family == own || c.family == "inet")
            .filter(|c| !(skip_iptables_nft && is_iptables_nft(c)))
            .filter_map(|c| prio(c).map(|p| (p, c)))
            .collect();
        out.sort_by(|(pa, a), (pb, b)| {
            (pa, &a.family, &a.table, &a.name).cmp(&(pb, &b.family, &b.table, &b.name))
        });
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// Every address, interface and port a rule of the ruleset names, for
    /// the evaluator's atoms.
    pub(in crate::verify) fn mentions(&self) -> Mentions {
        let mut m = Mentions::default();
        let mut add = |e: &Elem| match e {
            Elem::Addrs(a, b) => m.addrs.push((*a, *b)),
            Elem::Name(n) => m.names.push(n.clone()),
            Elem::Num(_) => {}
        };
        let mut ports = Vec::new();
        for c in self.chains.values() {
            for r in &c.rules {
                for s in &r.stmts {
                    match s {
                        // Connection states are no interface names.
                        Stmt::Match {
                            field: Field::CtState,
                            ..
                        } => {}
                        Stmt::Match {
                            field: Field::Port { proto },
                            any_of,
                            ..
                        } => ports.extend(any_of.iter().filter_map(|e| match e {
                            Elem::Num(n) => Some((proto.clone(), *n)),
                            _ => None,
                        })),
                        Stmt::Match { any_of, .. } => any_of.iter().for_each(&mut add),
                        Stmt::Vmap {
                            map: VerdictMap::Anonymous(entries),
                            ..
                        } => entries.iter().for_each(|(e, _)| add(e)),
                        _ => {}
                    }
                }
            }
        }
        for e in self.sets.values().flatten().flatten() {
            add(e);
        }
        for (e, _) in self.maps.values().flatten().flatten() {
            add(e);
        }
        m.ports = ports;
        m
    }
}

/// A base chain of iptables-nft's own tables (read through iptables-save).
fn is_iptables_nft(c: &Chain) -> bool {
    (c.family == "ip" || c.family == "ip6")
        && matches!(
            (c.table.as_str(), c.name.as_str()),
            ("nat", "POSTROUTING") | ("filter", "FORWARD") | ("raw", "PREROUTING")
        )
}

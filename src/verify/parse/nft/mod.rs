//! The nftables layer, read from `nft -j list` (chains, then tables): every nat chain
//! hooked at postrouting and every filter chain at prerouting or forward
//! (hooks.rs), its rules turned into the matches and
//! statements the evaluator understands. A match or statement it does not
//! model is kept as a reason, never dropped, so a chain that could
//! translate the packet in an unmodeled way makes the verdict "cannot
//! decide", never ok.
//!
//! Serde reads the JSON into hand-written types. The `nftables` crate
//! (crates.io) has the whole schema as Rust types; podsnat reads a handful
//! of fields and must keep every statement it does not model as a reason,
//! never drop it, so its typed expressions would still be matched here one
//! by one: a dependency that would remove no code.

mod expr;
mod hooks;

pub(in crate::verify) use hooks::Mentions;

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Family;
use crate::render;
pub(in crate::verify) use expr::{Elem, Field, Stmt, VerdictMap};
use expr::{elem, entry, show, stmt};

/// A table by family and name: `("ip", "podsnat")`.
pub type TableName = (String, String);

/// A chain, set or map by (family, table, name).
type Key = (String, String, String);

/// A verdict map's entries: the element and its verdict.
type Entries = Vec<(Elem, Stmt)>;

/// The whole ruleset, as the evaluator needs it.
#[derive(Debug, Default, Clone)]
pub struct Ruleset {
    /// Every chain by (family, table, name), with its rules in order.
    chains: HashMap<Key, Chain>,
    /// Named sets by (family, table, name): their elements, or `None` when
    /// they are not modeled (concatenations, maps).
    sets: HashMap<Key, Option<Vec<Elem>>>,
    /// Named verdict maps: their entries, or `None` when not modeled.
    maps: HashMap<Key, Option<Entries>>,
}

#[derive(Debug, Clone)]
pub(in crate::verify) struct Chain {
    pub(in crate::verify) family: String,
    pub(in crate::verify) table: String,
    pub(in crate::verify) name: String,
    /// `Some(priority)` for a nat base chain at postrouting.
    pub(in crate::verify) hook_prio: Option<i64>,
    /// For a filter base chain at prerouting or forward: where, and its
    /// policy (the forward path of cluster→pod traffic walks them).
    pub(in crate::verify) filter_hook: Option<FilterHook>,
    pub(in crate::verify) rules: Vec<NftRule>,
}

/// A filter base chain's hook, priority and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::verify) struct FilterHook {
    /// At prerouting (docker 29's raw-PREROUTING), else at forward.
    pub(in crate::verify) prerouting: bool,
    pub(in crate::verify) prio: i64,
    /// `policy drop`.
    pub(in crate::verify) drops: bool,
}

/// One rule: its text for reports, its statements in order.
#[derive(Debug, Clone)]
pub(in crate::verify) struct NftRule {
    pub(in crate::verify) text: String,
    pub(in crate::verify) stmts: Vec<Stmt>,
}

#[derive(Deserialize)]
struct Doc {
    nftables: Vec<HashMap<String, Value>>,
}

#[derive(Deserialize)]
struct ChainDef {
    family: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    hook: Option<String>,
    prio: Option<i64>,
    policy: Option<String>,
}

#[derive(Deserialize)]
struct RuleDef {
    family: String,
    table: String,
    chain: String,
    #[serde(default)]
    expr: Vec<Value>,
    comment: Option<String>,
}

#[derive(Deserialize)]
struct SetDef {
    family: String,
    table: String,
    name: String,
    #[serde(rename = "type")]
    kind: Value,
    #[serde(default)]
    elem: Vec<Value>,
}

/// nftables JSON that is not what `nft -j` prints.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("it is not the JSON `nft -j list ruleset` prints")]
    Document(#[source] serde_json::Error),
    #[error("a {kind} object is not as nft prints it")]
    Object {
        kind: String,
        source: serde_json::Error,
    },
}

impl Ruleset {
    /// Parses `nft -j list ruleset` output. Malformed JSON is an error
    /// naming what is wrong; unknown objects (flowtables, counters) are
    /// skipped, as they hold no rule.
    pub fn parse(json: &str) -> Result<Ruleset, NftError> {
        let doc: Doc = serde_json::from_str(json).map_err(NftError::Document)?;
        let mut rs = Ruleset::default();
        let key = |f: &str, t: &str, n: &str| (f.to_owned(), t.to_owned(), n.to_owned());
        for item in doc.nftables {
            for (kind, value) in item {
                let bad = |source: serde_json::Error| NftError::Object {
                    kind: kind.clone(),
                    source,
                };
                match kind.as_str() {
                    "chain" => {
                        let c: ChainDef = serde_json::from_value(value).map_err(bad)?;
                        let base = c.kind.as_deref() == Some("nat")
                            && c.hook.as_deref() == Some("postrouting");
                        let filter_hook = match (c.kind.as_deref(), c.hook.as_deref()) {
                            (Some("filter"), Some(hook @ ("prerouting" | "forward"))) => {
                                Some(FilterHook {
                                    prerouting: hook == "prerouting",
                                    prio: c.prio.unwrap_or(0),
                                    drops: c.policy.as_deref() == Some("drop"),
                                })
                            }
                            _ => None,
                        };
                        let entry = rs
                            .chains
                            .entry(key(&c.family, &c.table, &c.name))
                            .or_insert_with(|| Chain {
                                family: c.family.clone(),
                                table: c.table.clone(),
                                name: c.name.clone(),
                                hook_prio: None,
                                filter_hook: None,
                                rules: Vec::new(),
                            });
                        entry.hook_prio = if base { c.prio.or(Some(0)) } else { None };
                        entry.filter_hook = filter_hook;
                    }
                    "rule" => {
                        let r: RuleDef = serde_json::from_value(value).map_err(bad)?;
                        let stmts: Vec<Stmt> = r.expr.iter().map(stmt).collect();
                        let mut text = r
                            .expr
                            .iter()
                            .zip(&stmts)
                            .map(|(v, s)| show(v, s))
                            .collect::<Vec<_>>()
                            .join(" ");
                        if let Some(c) = &r.comment {
                            text.push_str(&format!(" comment {c:?}"));
                        }
                        rs.chains
                            .entry(key(&r.family, &r.table, &r.chain))
                            .or_insert_with(|| Chain {
                                family: r.family.clone(),
                                table: r.table.clone(),
                                name: r.chain.clone(),
                                hook_prio: None,
                                filter_hook: None,
                                rules: Vec::new(),
                            })
                            .rules
                            .push(NftRule { text, stmts });
                    }
                    "map" => {
                        let m: SetDef = serde_json::from_value(value).map_err(bad)?;
                        let entries = m
                            .kind
                            .is_string()
                            .then(|| m.elem.iter().map(entry).collect::<Option<Vec<_>>>())
                            .flatten();
                        rs.maps.insert(key(&m.family, &m.table, &m.name), entries);
                    }
                    "set" => {
                        let s: SetDef = serde_json::from_value(value).map_err(bad)?;
                        // Only sets of one address or name type are modeled.
                        let elems = s
                            .kind
                            .is_string()
                            .then(|| s.elem.iter().map(elem).collect::<Option<Vec<_>>>())
                            .flatten();
                        rs.sets.insert(key(&s.family, &s.table, &s.name), elems);
                    }
                    _ => {}
                }
            }
        }
        Ok(rs)
    }

    /// Adds another listing's chains, rules and sets (a table listed on
    /// its own).
    pub fn merge(&mut self, other: Ruleset) {
        for (k, c) in other.chains {
            match self.chains.get_mut(&k) {
                Some(mine) => {
                    mine.hook_prio = mine.hook_prio.or(c.hook_prio);
                    mine.filter_hook = mine.filter_hook.or(c.filter_hook);
                    mine.rules.extend(c.rules);
                }
                None => {
                    self.chains.insert(k, c);
                }
            }
        }
        self.sets.extend(other.sets);
        self.maps.extend(other.maps);
    }

    pub(in crate::verify) fn chain(&self, family: &str, table: &str, name: &str) -> Option<&Chain> {
        self.chains
            .get(&(family.to_owned(), table.to_owned(), name.to_owned()))
    }

    /// A named set's elements (`@name` in a rule of `family`/`table`).
    pub(in crate::verify) fn set(&self, family: &str, table: &str, name: &str) -> Option<&[Elem]> {
        self.sets
            .get(&(family.to_owned(), table.to_owned(), name.to_owned()))
            .and_then(|e| e.as_deref())
    }

    /// A named verdict map's entries.
    pub(in crate::verify) fn map(
        &self,
        family: &str,
        table: &str,
        name: &str,
    ) -> Option<&[(Elem, Stmt)]> {
        self.maps
            .get(&(family.to_owned(), table.to_owned(), name.to_owned()))
            .and_then(|e| e.as_deref())
    }

    /// podsnat's anchor for `family`: its base chain's priority, if loaded.
    pub fn anchor_priority(&self, family: Family) -> Option<i64> {
        self.chain(
            render::nft_family(family),
            render::ANCHOR_TABLE,
            render::ANCHOR_CHAIN,
        )
        .and_then(|c| c.hook_prio)
    }

    /// Whether every rule of podsnat's anchor chain for `family` (if
    /// loaded) but a plain return tests `oifname != "BRIDGE"`: none of them
    /// sees traffic through the bridge.
    pub(in crate::verify) fn anchor_guarded(&self, family: Family, bridge: &str) -> bool {
        let Some(chain) = self.chain(
            render::nft_family(family),
            render::ANCHOR_TABLE,
            render::ANCHOR_CHAIN,
        ) else {
            return true;
        };
        chain.rules.iter().all(|r| {
            let verdicts: Vec<&Stmt> = r
                .stmts
                .iter()
                .filter(|s| !matches!(s, Stmt::Match { .. } | Stmt::Passive))
                .collect();
            matches!(verdicts.as_slice(), [Stmt::Return])
                || r.stmts.iter().any(|s| {
                    matches!(s, Stmt::Match { neg: true, field: Field::Iface { out: true }, any_of }
                        if any_of == &[Elem::Name(bridge.to_owned())])
                })
        })
    }
}

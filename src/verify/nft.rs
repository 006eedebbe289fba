//! The nftables layer, read from `nft -j list ruleset`: every nat chain
//! hooked at postrouting, its rules turned into the matches and
//! statements the evaluator understands. A match or statement it does not
//! model is kept as a reason, never dropped, so a chain that could
//! translate the packet in an unmodeled way makes the verdict "cannot
//! decide", never ok.
//!
//! Serde reads the JSON into hand-written types: the `nftables` crate's
//! schema types would pull in its netlink helpers and async runtime
//! features for a one-shot read of a few fields, and its expression types
//! still leave each statement to be matched by hand here.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

use crate::config::Family;
use crate::render;

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
pub(super) struct Chain {
    pub(super) family: String,
    pub(super) table: String,
    pub(super) name: String,
    /// `Some(priority)` for a nat base chain at postrouting.
    pub(super) hook_prio: Option<i64>,
    pub(super) rules: Vec<NftRule>,
}

/// One rule: its text for reports, its statements in order.
#[derive(Debug, Clone)]
pub(super) struct NftRule {
    pub(super) text: String,
    pub(super) stmts: Vec<Stmt>,
}

/// What a packet's field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Field {
    /// `ip saddr`/`ip6 daddr`: which side, and the family it implies.
    Addr { src: bool, family: Family },
    /// `oifname`/`iifname`.
    Iface { out: bool },
    /// `meta mark & MASK`.
    Mark(u32),
}

/// A set element or a right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Elem {
    /// A range of addresses, first and last (a prefix or a single address too).
    Addrs(IpAddr, IpAddr),
    Name(String),
    Num(u32),
}

#[derive(Debug, Clone)]
pub(super) enum Stmt {
    /// `left op right`: negated for `!=`; the elements any of which matches.
    Match {
        neg: bool,
        field: Field,
        any_of: Vec<Elem>,
    },
    Accept,
    Return,
    Jump(String),
    Goto(String),
    /// `snat to ip saddr`: a translation that keeps the source.
    Identity,
    /// masquerade, or snat to another address.
    Translate,
    /// `meta mark set (mark & and) ^ xor`... as `mark = (mark & and) ^ xor | or`.
    SetMark {
        and: u32,
        xor: u32,
        or: u32,
    },
    /// `KEY vmap { ELEM : VERDICT, ... }` or `KEY vmap @map`: the verdict
    /// of the first element that holds the packet's key, if any.
    Vmap {
        field: Field,
        map: VerdictMap,
    },
    /// counter and the like: no effect on the verdict.
    Passive,
    /// Anything else; evaluating it is "cannot decide".
    Unknown(String),
}

/// A vmap's entries: given in the rule, or a named map of the table.
#[derive(Debug, Clone)]
pub(super) enum VerdictMap {
    Anonymous(Entries),
    Named(String),
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

impl Ruleset {
    /// Parses `nft -j list ruleset` output. Malformed JSON is an error
    /// naming what is wrong; unknown objects (flowtables, counters) are
    /// skipped, as they hold no rule.
    pub fn parse(json: &str) -> Result<Ruleset, String> {
        let doc: Doc = serde_json::from_str(json)
            .map_err(|e| format!("is not the JSON `nft -j list ruleset` prints: {e}"))?;
        let mut rs = Ruleset::default();
        let key = |f: &str, t: &str, n: &str| (f.to_owned(), t.to_owned(), n.to_owned());
        for item in doc.nftables {
            for (kind, value) in item {
                let bad = |e: serde_json::Error| format!("a {kind} object: {e}");
                match kind.as_str() {
                    "chain" => {
                        let c: ChainDef = serde_json::from_value(value).map_err(bad)?;
                        let base = c.kind.as_deref() == Some("nat")
                            && c.hook.as_deref() == Some("postrouting");
                        let entry = rs
                            .chains
                            .entry(key(&c.family, &c.table, &c.name))
                            .or_insert_with(|| Chain {
                                family: c.family.clone(),
                                table: c.table.clone(),
                                name: c.name.clone(),
                                hook_prio: None,
                                rules: Vec::new(),
                            });
                        entry.hook_prio = if base { c.prio.or(Some(0)) } else { None };
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

    /// Every table with a nat chain at postrouting, as (family, name); a
    /// listing of the chains alone is enough to find them. iptables-nft's
    /// own nat table is named apart: `(tables, iptables-nft's)`.
    pub fn nat_tables(&self) -> (Vec<TableName>, Vec<TableName>) {
        let mut tables: Vec<TableName> = Vec::new();
        let mut iptables = Vec::new();
        for c in self.chains.values().filter(|c| c.hook_prio.is_some()) {
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

    /// The nat base chains at postrouting that see packets of `family`
    /// (tables of that family and `inet`), lowest priority first. The
    /// `skip` table (`ip nat` of iptables-nft, read through iptables-save)
    /// is left out.
    pub(super) fn base_chains(&self, family: Family, skip_iptables_nft: bool) -> Vec<&Chain> {
        let own = render::nft_family(family);
        let mut out: Vec<&Chain> = self
            .chains
            .values()
            .filter(|c| c.hook_prio.is_some())
            .filter(|c| c.family == own || c.family == "inet")
            .filter(|c| !(skip_iptables_nft && is_iptables_nft(c)))
            .collect();
        out.sort_by(|a, b| {
            (a.hook_prio, &a.family, &a.table, &a.name).cmp(&(
                b.hook_prio,
                &b.family,
                &b.table,
                &b.name,
            ))
        });
        out
    }

    pub(super) fn chain(&self, family: &str, table: &str, name: &str) -> Option<&Chain> {
        self.chains
            .get(&(family.to_owned(), table.to_owned(), name.to_owned()))
    }

    /// A named set's elements (`@name` in a rule of `family`/`table`).
    pub(super) fn set(&self, family: &str, table: &str, name: &str) -> Option<&[Elem]> {
        self.sets
            .get(&(family.to_owned(), table.to_owned(), name.to_owned()))
            .and_then(|e| e.as_deref())
    }

    /// A named verdict map's entries.
    pub(super) fn map(&self, family: &str, table: &str, name: &str) -> Option<&[(Elem, Stmt)]> {
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

    /// Every address and interface a rule of the ruleset names, for the
    /// evaluator's atoms.
    pub(super) fn mentions(&self) -> (Vec<(IpAddr, IpAddr)>, Vec<String>) {
        let mut addrs = Vec::new();
        let mut names = Vec::new();
        let mut add = |e: &Elem| match e {
            Elem::Addrs(a, b) => addrs.push((*a, *b)),
            Elem::Name(n) => names.push(n.clone()),
            Elem::Num(_) => {}
        };
        for c in self.chains.values() {
            for r in &c.rules {
                for s in &r.stmts {
                    match s {
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
        (addrs, names)
    }
}

/// iptables-nft's own nat table: `ip nat` (or `ip6 nat`) with its
/// built-in chain POSTROUTING, which iptables-save already shows.
fn is_iptables_nft(c: &Chain) -> bool {
    (c.family == "ip" || c.family == "ip6") && c.table == "nat" && c.name == "POSTROUTING"
}

/// One statement of a rule's `expr`.
fn stmt(v: &Value) -> Stmt {
    let unknown = || Stmt::Unknown(format!("the statement {v} is not modeled"));
    let Some((kind, body)) = v.as_object().and_then(|o| o.iter().next()) else {
        return unknown();
    };
    match kind.as_str() {
        "match" => matcher(body).unwrap_or_else(unknown),
        "accept" => Stmt::Accept,
        "return" => Stmt::Return,
        "jump" => target(body).map_or_else(unknown, Stmt::Jump),
        "goto" => target(body).map_or_else(unknown, Stmt::Goto),
        "counter" | "log" => Stmt::Passive,
        "masquerade" => Stmt::Translate,
        "snat" => {
            let same = body.pointer("/addr/payload/field").and_then(Value::as_str) == Some("saddr")
                && body.get("port").is_none();
            if same {
                Stmt::Identity
            } else {
                Stmt::Translate
            }
        }
        "mangle" => mark_set(body).unwrap_or_else(unknown),
        "vmap" => vmap(body).unwrap_or_else(unknown),
        _ => unknown(),
    }
}

fn vmap(body: &Value) -> Option<Stmt> {
    let field = field(body.get("key")?)?;
    let data = body.get("data")?;
    let map = match data.as_str() {
        Some(name) => VerdictMap::Named(name.strip_prefix('@')?.to_owned()),
        None => VerdictMap::Anonymous(
            data.get("set")?
                .as_array()?
                .iter()
                .map(entry)
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    Some(Stmt::Vmap { field, map })
}

/// One `ELEM : VERDICT` of a verdict map.
fn entry(v: &Value) -> Option<(Elem, Stmt)> {
    let [key, verdict] = v.as_array()?.as_slice() else {
        return None;
    };
    let verdict = match stmt(verdict) {
        s @ (Stmt::Accept | Stmt::Return | Stmt::Jump(_) | Stmt::Goto(_)) => s,
        _ => Stmt::Unknown(format!("the verdict {verdict} is not modeled")),
    };
    Some((elem(key)?, verdict))
}

fn target(body: &Value) -> Option<String> {
    body.get("target")?.as_str().map(str::to_owned)
}

fn matcher(body: &Value) -> Option<Stmt> {
    let neg = match body.get("op")?.as_str()? {
        "==" | "in" => false,
        "!=" => true,
        _ => return None,
    };
    let field = field(body.get("left")?)?;
    let right = body.get("right")?;
    let any_of = match right.get("set").and_then(Value::as_array) {
        Some(list) => list.iter().map(elem).collect::<Option<Vec<_>>>()?,
        None => vec![elem(right)?],
    };
    Some(Stmt::Match { neg, field, any_of })
}

fn field(left: &Value) -> Option<Field> {
    if let Some(p) = left.get("payload") {
        let family = match p.get("protocol")?.as_str()? {
            "ip" => Family::V4,
            "ip6" => Family::V6,
            _ => return None,
        };
        let src = match p.get("field")?.as_str()? {
            "saddr" => true,
            "daddr" => false,
            _ => return None,
        };
        return Some(Field::Addr { src, family });
    }
    if let Some(m) = left.get("meta") {
        return match m.get("key")?.as_str()? {
            "oifname" => Some(Field::Iface { out: true }),
            "iifname" => Some(Field::Iface { out: false }),
            "mark" => Some(Field::Mark(u32::MAX)),
            _ => None,
        };
    }
    let and = left.get("&")?.as_array()?;
    match and.as_slice() {
        [m, mask] if m.get("meta")?.get("key")? == "mark" => {
            Some(Field::Mark(u32::try_from(mask.as_u64()?).ok()?))
        }
        _ => None,
    }
}

/// A right-hand side or set element: an address, a prefix, a range, a
/// name, a number. `@set` is kept as a name starting with `@`.
fn elem(v: &Value) -> Option<Elem> {
    if let Some(n) = v.as_u64() {
        return u32::try_from(n).ok().map(Elem::Num);
    }
    if let Some(s) = v.as_str() {
        return Some(match s.parse::<IpAddr>() {
            Ok(a) => Elem::Addrs(a, a),
            Err(_) => Elem::Name(s.to_owned()),
        });
    }
    if let Some(p) = v.get("prefix") {
        let addr: IpAddr = p.get("addr")?.as_str()?.parse().ok()?;
        let len = u8::try_from(p.get("len")?.as_u64()?).ok()?;
        let net = ipnet::IpNet::new(addr, len).ok()?;
        return Some(Elem::Addrs(net.network(), net.broadcast()));
    }
    if let Some([a, b]) = v.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        return Some(Elem::Addrs(
            a.as_str()?.parse().ok()?,
            b.as_str()?.parse().ok()?,
        ));
    }
    // A set element with a timeout or comment wraps its value.
    v.pointer("/elem/val").and_then(elem)
}

/// `meta mark set VALUE`, where VALUE is a number or the mark combined
/// with one: `mark = (mark & and) ^ xor | or`.
fn mark_set(body: &Value) -> Option<Stmt> {
    if body.get("key")?.get("meta")?.get("key")? != "mark" {
        return None;
    }
    let value = body.get("value")?;
    if let Some(n) = value.as_u64() {
        let n = u32::try_from(n).ok()?;
        return Some(Stmt::SetMark {
            and: 0,
            xor: n,
            or: 0,
        });
    }
    let (op, args) = value.as_object()?.iter().next()?;
    let [m, n] = args.as_array()?.as_slice() else {
        return None;
    };
    if m.get("meta")?.get("key")? != "mark" {
        return None;
    }
    let n = u32::try_from(n.as_u64()?).ok()?;
    let (and, xor, or) = match op.as_str() {
        "^" => (u32::MAX, n, 0),
        "|" => (u32::MAX, 0, n),
        "&" => (n, 0, 0),
        _ => return None,
    };
    Some(Stmt::SetMark { and, xor, or })
}

/// A statement as a reader recognises it: modeled ones in nft's words,
/// others as their JSON.
fn show(v: &Value, s: &Stmt) -> String {
    let elems = |list: &[Elem]| {
        let one = |e: &Elem| match e {
            Elem::Addrs(a, b) if a == b => a.to_string(),
            Elem::Addrs(a, b) => format!("{a}-{b}"),
            Elem::Name(n) if n.starts_with('@') => n.clone(),
            Elem::Name(n) => format!("{n:?}"),
            Elem::Num(n) => format!("0x{n:08x}"),
        };
        match list {
            [e] => one(e),
            _ => format!(
                "{{ {} }}",
                list.iter().map(one).collect::<Vec<_>>().join(", ")
            ),
        }
    };
    match s {
        Stmt::Match { neg, field, any_of } => {
            let left = match field {
                Field::Addr { src, family } => format!(
                    "{} {}",
                    render::nft_family(*family),
                    if *src { "saddr" } else { "daddr" }
                ),
                Field::Iface { out: true } => "oifname".into(),
                Field::Iface { out: false } => "iifname".into(),
                Field::Mark(u32::MAX) => "meta mark".into(),
                Field::Mark(m) => format!("meta mark & 0x{m:08x} =="),
            };
            let op = if *neg { "!= " } else { "" };
            // A prefix reads as a CIDR.
            let right = match (
                v.pointer("/match/right/prefix/addr")
                    .and_then(Value::as_str),
                v.pointer("/match/right/prefix/len"),
            ) {
                (Some(addr), Some(len)) => format!("{addr}/{len}"),
                _ => elems(any_of),
            };
            format!("{left} {op}{right}")
        }
        Stmt::Accept => "accept".into(),
        Stmt::Return => "return".into(),
        Stmt::Jump(t) => format!("jump {t}"),
        Stmt::Goto(t) => format!("goto {t}"),
        Stmt::Identity => format!(
            "snat to {} saddr",
            v.pointer("/snat/addr/payload/protocol")
                .and_then(Value::as_str)
                .unwrap_or("ip")
        ),
        Stmt::Translate if v.get("masquerade").is_some() => "masquerade".into(),
        Stmt::Passive if v.get("counter").is_some() => "counter".into(),
        _ => v.to_string(),
    }
}

//! One rule's `expr` of `nft -j list`, as the evaluator sees it: the
//! matches it models (addresses, interface names, the mark), the verdicts
//! and NAT statements, verdict maps, and anything else kept as a reason.

use std::net::IpAddr;

use serde_json::Value;

use crate::config::Family;
use crate::render;

/// What a packet's field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::verify) enum Field {
    /// `ip saddr`/`ip6 daddr`: which side, and the family it implies.
    Addr { src: bool, family: Family },
    /// `oifname`/`iifname`.
    Iface { out: bool },
    /// `meta mark & MASK`.
    Mark(u32),
    /// `ct state`: a connection's first packet is `new`.
    CtState,
    /// `tcp dport`, `udp dport`...: only packets of that protocol have it.
    Port { proto: String },
}

/// A set element or a right-hand side.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::verify) enum Elem {
    /// A range of addresses, first and last (a prefix or a single address too).
    Addrs(IpAddr, IpAddr),
    Name(String),
    Num(u32),
}

#[derive(Debug, Clone)]
pub(in crate::verify) enum Stmt {
    /// `left op right`: negated for `!=`; the elements any of which matches.
    Match {
        neg: bool,
        field: Field,
        any_of: Vec<Elem>,
    },
    Accept,
    /// drop or reject: the packet goes no further (filter chains).
    Drop,
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
pub(in crate::verify) enum VerdictMap {
    Anonymous(Vec<(Elem, Stmt)>),
    Named(String),
}

/// One statement of a rule's `expr`.
pub(in crate::verify) fn stmt(v: &Value) -> Stmt {
    let unknown = || Stmt::Unknown(format!("the statement {v} is not modeled"));
    let Some((kind, body)) = v.as_object().and_then(|o| o.iter().next()) else {
        return unknown();
    };
    match kind.as_str() {
        "match" => matcher(body).unwrap_or_else(unknown),
        "accept" => Stmt::Accept,
        "drop" | "reject" => Stmt::Drop,
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
pub(in crate::verify) fn entry(v: &Value) -> Option<(Elem, Stmt)> {
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
    // `ct state established,related` lists its flags as a plain array.
    let list = right
        .get("set")
        .and_then(Value::as_array)
        .or(right.as_array());
    let any_of = match list {
        Some(list) => list.iter().map(elem).collect::<Option<Vec<_>>>()?,
        None => vec![elem(right)?],
    };
    Some(Stmt::Match { neg, field, any_of })
}

fn field(left: &Value) -> Option<Field> {
    if left.pointer("/ct/key").and_then(Value::as_str) == Some("state") {
        return Some(Field::CtState);
    }
    if let Some(p) = left.get("payload") {
        let proto = p.get("protocol")?.as_str()?;
        if p.get("field")?.as_str()? == "dport" && matches!(proto, "tcp" | "udp" | "sctp") {
            return Some(Field::Port {
                proto: proto.to_owned(),
            });
        }
        let family = match proto {
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
pub(in crate::verify) fn elem(v: &Value) -> Option<Elem> {
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
pub(in crate::verify) fn show(v: &Value, s: &Stmt) -> String {
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
                Field::CtState => "ct state".into(),
                Field::Port { proto } => format!("{proto} dport"),
            };
            let op = if *neg { "!= " } else { "" };
            // A prefix reads as a CIDR.
            let right = match (
                v.pointer("/match/right/prefix/addr")
                    .and_then(Value::as_str),
                v.pointer("/match/right/prefix/len"),
            ) {
                (Some(addr), Some(len)) => format!("{addr}/{len}"),
                _ if matches!(field, Field::CtState | Field::Port { .. }) => {
                    // A port or a connection state reads as nft prints it.
                    let plain = |e: &Elem| match e {
                        Elem::Num(n) => n.to_string(),
                        Elem::Name(n) => n.clone(),
                        Elem::Addrs(..) => elems(std::slice::from_ref(e)),
                    };
                    any_of.iter().map(plain).collect::<Vec<_>>().join(",")
                }
                _ => elems(any_of),
            };
            format!("{left} {op}{right}")
        }
        Stmt::Accept => "accept".into(),
        Stmt::Drop if v.get("drop").is_some() => "drop".into(),
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

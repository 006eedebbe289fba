//! The rule model and its parser: one `-A CHAIN ...` line of iptables-save
//! text becomes the matches and the target the evaluator understands. A
//! match it does not model is kept as a reason, never dropped.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::rules_file::{self, Table};

/// A rule as the evaluator sees it.
#[derive(Debug, Clone)]
pub(super) struct Rule<'a> {
    pub(super) chain: &'a str,
    /// 1-based position in its chain, as `iptables -L --line-numbers` counts.
    pub(super) pos: usize,
    pub(super) text: &'a str,
    pub(super) src: Option<(bool, Ipv4Net)>,
    pub(super) dst: Option<(bool, Ipv4Net)>,
    pub(super) in_if: Option<(bool, String)>,
    pub(super) out_if: Option<(bool, String)>,
    pub(super) proto: Option<(bool, String)>,
    /// `-m addrtype --src-type/--dst-type` lists. The side does not matter:
    /// a forwarded pod packet's source and destination are both UNICAST.
    pub(super) addrtype: Vec<(bool, Vec<String>)>,
    pub(super) marks: Vec<(bool, u32, u32)>,
    /// Why a match part cannot be evaluated, if one cannot.
    pub(super) unknown: Option<String>,
    pub(super) target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    /// No `-j`: only counters.
    None,
    Accept,
    Return,
    /// MASQUERADE or SNAT: the source address is rewritten.
    Nat,
    Jump(String),
    Goto(String),
    /// MARK: `mark = (mark & !clear) ^ xor`.
    Mark {
        clear: u32,
        xor: u32,
    },
    /// Targets that do not change the verdict or the packet (LOG, TRACE).
    Passive,
    Unknown(String),
}

pub(super) fn index_by_chain<'r, 'a>(rules: &'r [Rule<'a>]) -> HashMap<&'a str, Vec<&'r Rule<'a>>> {
    let mut map: HashMap<&str, Vec<&Rule<'_>>> = HashMap::new();
    for r in rules {
        map.entry(r.chain).or_default().push(r);
    }
    map
}

/// The rules of POSTROUTING and of every chain reachable from it. Other
/// chains (kube-proxy's thousands of service rules) are never tokenized.
pub(super) fn reachable_rules<'a>(table: &Table<'a>) -> Vec<Rule<'a>> {
    let mut by_chain: HashMap<&str, Vec<&rules_file::Rule<'a>>> = HashMap::new();
    for r in &table.rules {
        by_chain.entry(r.chain).or_default().push(r);
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec!["POSTROUTING"];
    while let Some(chain) = todo.pop() {
        if !seen.insert(chain) {
            continue;
        }
        for (i, raw) in by_chain.get(chain).into_iter().flatten().enumerate() {
            let rule = parse_rule(chain, i + 1, raw.text, &table.chains);
            if let Target::Jump(c) | Target::Goto(c) = &rule.target
                && let Some(name) = table.chains.iter().find(|n| **n == c.as_str())
            {
                todo.push(name);
            }
            out.push(rule);
        }
    }
    out
}

fn parse_rule<'a>(chain: &'a str, pos: usize, text: &'a str, chains: &[&str]) -> Rule<'a> {
    let mut rule = Rule {
        chain,
        pos,
        text,
        src: None,
        dst: None,
        in_if: None,
        out_if: None,
        proto: None,
        addrtype: Vec::new(),
        marks: Vec::new(),
        unknown: None,
        target: Target::None,
    };
    let Some(tokens) = shlex::split(text) else {
        rule.unknown = Some("cannot split the rule into words".into());
        return rule;
    };
    let unknown = |rule: &mut Rule<'a>, why: String| {
        rule.unknown.get_or_insert(why);
    };
    // Skip "-A CHAIN".
    let mut it = tokens.iter().skip(2).peekable();
    let mut neg = false;
    let mut module = String::new();
    let mut in_target = false;
    while let Some(tok) = it.next() {
        let tok = tok.as_str();
        if tok == "!" {
            neg = true;
            continue;
        }
        let mut value = || it.next().cloned().unwrap_or_default();
        // Options of unmodeled modules and targets take zero or more words.
        let rest = |it: &mut std::iter::Peekable<std::iter::Skip<std::slice::Iter<'_, String>>>| {
            let mut words = Vec::new();
            while let Some(w) = it.next_if(|w| !w.starts_with('-') && w.as_str() != "!") {
                words.push(w.clone());
            }
            words.join(" ")
        };
        match tok {
            "-s" | "--source" => rule.src = net(&value()).map(|n| (neg, n)),
            "-d" | "--destination" => rule.dst = net(&value()).map(|n| (neg, n)),
            "-i" | "--in-interface" => rule.in_if = Some((neg, value())),
            "-o" | "--out-interface" => rule.out_if = Some((neg, value())),
            "-p" | "--protocol" => rule.proto = Some((neg, value().to_ascii_lowercase())),
            "-m" | "--match" => {
                module = value();
                in_target = false;
                if !matches!(
                    module.as_str(),
                    "comment" | "addrtype" | "mark" | "tcp" | "udp"
                ) {
                    unknown(&mut rule, format!("the match -m {module} is not modeled"));
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let name = value();
                in_target = true;
                let is_goto = tok == "-g" || tok == "--goto";
                rule.target = match name.as_str() {
                    _ if chains.contains(&name.as_str()) && is_goto => Target::Goto(name),
                    _ if chains.contains(&name.as_str()) => Target::Jump(name),
                    "ACCEPT" => Target::Accept,
                    "RETURN" => Target::Return,
                    "MASQUERADE" | "SNAT" => Target::Nat,
                    "MARK" => Target::Mark { clear: 0, xor: 0 },
                    "LOG" | "TRACE" | "NFLOG" => Target::Passive,
                    // An extension target we do not model, or a chain that
                    // does not exist (iptables-restore would refuse that).
                    _ => Target::Unknown(name),
                };
            }
            "-f" | "--fragment" => unknown(&mut rule, "the match -f is not modeled".into()),
            opt if in_target => {
                let v = rest(&mut it);
                if let Target::Mark { clear, xor } = &mut rule.target {
                    let (val, mask) = mark_value(&v);
                    match opt {
                        "--set-xmark" => (*clear, *xor) = (mask, val),
                        "--set-mark" => (*clear, *xor) = (mask | val, val),
                        "--or-mark" => (*clear, *xor) = (val, val),
                        "--and-mark" => (*clear, *xor) = (!val, 0),
                        "--xor-mark" => (*clear, *xor) = (0, val),
                        _ => rule.target = Target::Unknown(format!("MARK {opt}")),
                    }
                }
                // Options of MASQUERADE/SNAT/LOG (--random-fully, --to-source,
                // --log-prefix, ...) do not change the verdict.
            }
            "--comment" if module == "comment" => {
                value();
            }
            "--src-type" | "--dst-type" if module == "addrtype" => {
                let types = value().split(',').map(str::to_owned).collect();
                rule.addrtype.push((neg, types));
            }
            "--mark" if module == "mark" => {
                let (val, mask) = mark_value(&value());
                rule.marks.push((neg, val, mask));
            }
            opt => {
                let v = rest(&mut it);
                unknown(
                    &mut rule,
                    format!("the option {opt} {v} (-m {module}) is not modeled"),
                );
            }
        }
        neg = false;
    }
    rule
}

fn net(s: &str) -> Option<Ipv4Net> {
    s.parse::<Ipv4Net>()
        .ok()
        .or_else(|| s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
        .map(|n| n.trunc())
}

/// `0x4000/0x4000` or `0x4000` (mask all ones).
fn mark_value(s: &str) -> (u32, u32) {
    let num = |x: &str| {
        let x = x.trim();
        match x.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16).unwrap_or(0),
            None => x.parse().unwrap_or(0),
        }
    };
    match s.split_once('/') {
        Some((v, m)) => (num(v), num(m)),
        None => (num(s), u32::MAX),
    }
}

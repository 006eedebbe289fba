//! The rule model and its parser: one `-A CHAIN ...` line of iptables-save
//! text becomes the matches and the target the evaluator understands. A
//! match it does not model is kept as a reason, never dropped.

use std::collections::{BTreeSet, HashMap, HashSet};

use ipnet::IpNet;

use super::fields::{MODELED, addr, iface, mark_value, negatable, ports};
use super::malformed::{Malformed, RuleError};
use crate::config::Family;
use crate::rules_file::{self, Table};

/// A rule as the evaluator sees it.
#[derive(Debug, Clone)]
pub(in crate::verify) struct Rule<'a> {
    pub(in crate::verify) chain: &'a str,
    /// 1-based position in its chain, as `iptables -L --line-numbers` counts.
    pub(in crate::verify) pos: usize,
    pub(in crate::verify) text: &'a str,
    pub(in crate::verify) src: Option<(bool, IpNet)>,
    pub(in crate::verify) dst: Option<(bool, IpNet)>,
    pub(in crate::verify) in_if: Option<(bool, String)>,
    pub(in crate::verify) out_if: Option<(bool, String)>,
    pub(in crate::verify) proto: Option<(bool, String)>,
    /// `-m addrtype --src-type/--dst-type` lists. The side does not matter:
    /// a forwarded pod packet's source and destination are both UNICAST.
    pub(in crate::verify) addrtype: Vec<(bool, Vec<String>)>,
    pub(in crate::verify) marks: Vec<(bool, u32, u32)>,
    /// `--dport N` or `--dport N:M` (tcp, udp): negated, first, last.
    pub(in crate::verify) dport: Option<(bool, u16, u16)>,
    /// `-m conntrack --ctstate LIST` (and `-m state --state`): negated, the
    /// states. A connection's first packet, the one NAT and the forward
    /// path decide, is NEW.
    pub(in crate::verify) ctstate: Vec<(bool, Vec<String>)>,
    /// `-m set --match-set NAME FLAGS`: negated, the set, src/dst per dimension.
    pub(in crate::verify) sets: Vec<(bool, String, Vec<String>)>,
    /// Why a match part cannot be evaluated, if one cannot.
    pub(in crate::verify) unknown: Option<String>,
    pub(in crate::verify) target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::verify) enum Target {
    /// No `-j`: only counters.
    None,
    Accept,
    Return,
    /// DROP or REJECT (filter and raw tables): the packet goes no further.
    Drop,
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

pub(in crate::verify) fn index_by_chain<'r, 'a>(
    rules: &'r [Rule<'a>],
) -> HashMap<&'a str, Vec<&'r Rule<'a>>> {
    let mut map: HashMap<&str, Vec<&Rule<'_>>> = HashMap::new();
    for r in rules {
        map.entry(r.chain).or_default().push(r);
    }
    map
}

/// The rules of POSTROUTING and of every chain reachable from it. Other
/// chains (kube-proxy's thousands of service rules) are never tokenized.
pub(in crate::verify) fn reachable_rules<'a>(
    table: &Table<'a>,
    family: Family,
) -> Result<Vec<Rule<'a>>, Malformed> {
    reachable_from(table, "POSTROUTING", family)
}

/// The rules of `entry` and of every chain reachable from it.
pub(in crate::verify) fn reachable_from<'a>(
    table: &Table<'a>,
    entry: &'static str,
    family: Family,
) -> Result<Vec<Rule<'a>>, Malformed> {
    let mut by_chain: HashMap<&str, Vec<&rules_file::Rule<'a>>> = HashMap::new();
    for r in &table.rules {
        by_chain.entry(r.chain).or_default().push(r);
    }
    // Looked up once per rule: a set, so that a table of many chains costs
    // time linear in its rules.
    let chains: HashSet<&'a str> = table.chains.iter().copied().collect();
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut todo = vec![entry];
    while let Some(chain) = todo.pop() {
        if !seen.insert(chain) {
            continue;
        }
        for (i, raw) in by_chain.get(chain).into_iter().flatten().enumerate() {
            let rule = parse(chain, i + 1, raw, &chains, family)?;
            if let Target::Jump(c) | Target::Goto(c) = &rule.target
                && let Some(name) = chains.get(c.as_str())
            {
                todo.push(name);
            }
            out.push(rule);
        }
    }
    Ok(out)
}

/// Checks every rule of the table, reachable or not: a file under review
/// must be one iptables-restore would load, or the boot restores nothing.
pub fn check_all(table: &Table<'_>, family: Family) -> Result<(), Malformed> {
    let chains: HashSet<&str> = table.chains.iter().copied().collect();
    let mut pos: HashMap<&str, usize> = HashMap::new();
    for raw in &table.rules {
        let n = pos.entry(raw.chain).or_default();
        *n += 1;
        parse(raw.chain, *n, raw, &chains, family)?;
    }
    Ok(())
}

/// The pod subnet (`-s`) and the bridge (`! -o`) a POSTROUTING rule names,
/// read by the parser every verdict reads rules with; `None` where the rule
/// names either otherwise, or does not parse.
pub fn subnet_and_bridge(text: &str, family: Family) -> Option<(IpNet, String)> {
    let chains: HashSet<&str> = ["POSTROUTING", crate::render::OWN_CHAIN].into();
    let rule = parse_rule("POSTROUTING", 1, text, &chains, family).ok()?;
    match (rule.src, rule.out_if) {
        (Some((false, net)), Some((true, bridge))) => Some((net, bridge)),
        _ => None,
    }
}

fn parse<'a>(
    chain: &'a str,
    pos: usize,
    raw: &rules_file::Rule<'a>,
    chains: &HashSet<&str>,
    family: Family,
) -> Result<Rule<'a>, Malformed> {
    parse_rule(chain, pos, raw.text, chains, family).map_err(|why| Malformed {
        line: raw.line,
        text: raw.text.to_owned(),
        why,
    })
}

/// Parses one rule strictly: a malformed rule is an error that says what
/// is wrong, never a guess. A well-formed rule with a match podsnat does
/// not model is kept, with the reason, for "cannot decide".
fn parse_rule<'a>(
    chain: &'a str,
    pos: usize,
    text: &'a str,
    chains: &HashSet<&str>,
    family: Family,
) -> Result<Rule<'a>, RuleError> {
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
        dport: None,
        ctstate: Vec::new(),
        sets: Vec::new(),
        unknown: None,
        target: Target::None,
    };
    let tokens = shlex::split(text).ok_or(RuleError::OpenQuote)?;
    let unknown = |rule: &mut Rule<'a>, why: String| {
        rule.unknown.get_or_insert(why);
    };
    // Skip "-A CHAIN".
    let mut it = tokens.iter().skip(2).peekable();
    let mut neg = false;
    let mut module = String::new();
    let mut targets = 0;
    while let Some(tok) = it.next() {
        let tok = tok.as_str();
        if tok == "!" {
            if neg {
                return Err(RuleError::NegatedTwice);
            }
            match it.peek() {
                None => return Err(RuleError::NegationAtEnd),
                Some(next) if next.as_str() == "!" => {
                    return Err(RuleError::DoubleNegation);
                }
                Some(next) if !negatable(next, &module) || targets > 0 => {
                    return Err(RuleError::NotNegatable(next.to_string()));
                }
                Some(_) => {}
            }
            neg = true;
            continue;
        }
        // The option's value: present, and not the next option.
        let mut value = |free: bool| -> Result<String, RuleError> {
            match it.next() {
                Some(v) if free || !(v.starts_with('-') && v.len() > 1) => Ok(v.clone()),
                Some(v) => Err(RuleError::OptionForValue {
                    option: tok.to_owned(),
                    found: v.clone(),
                }),
                None => Err(RuleError::NoValue {
                    option: tok.to_owned(),
                }),
            }
        };
        match tok {
            "-p" | "--protocol" => {
                let proto = value(false)?.to_ascii_lowercase();
                // iptables loads the protocol's match implicitly:
                // `-p tcp --dport 80` means `-p tcp -m tcp --dport 80`.
                if module.is_empty() && matches!(proto.as_str(), "tcp" | "udp") {
                    module = proto.clone();
                }
                rule.proto = Some((neg, proto));
            }
            "-s" | "--source" => {
                rule.src = addr(&value(false)?, family, &mut rule.unknown)?.map(|n| (neg, n))
            }
            "-d" | "--destination" => {
                rule.dst = addr(&value(false)?, family, &mut rule.unknown)?.map(|n| (neg, n));
            }
            "-i" | "--in-interface" => rule.in_if = Some((neg, iface(&value(false)?)?)),
            "-o" | "--out-interface" => rule.out_if = Some((neg, iface(&value(false)?)?)),
            "-m" | "--match" => {
                module = value(false)?;
                if !MODELED.contains(&module.as_str()) {
                    unknown(&mut rule, format!("the match -m {module} is not modeled"));
                }
            }
            "-j" | "--jump" | "-g" | "--goto" => {
                let name = value(false)?;
                targets += 1;
                if targets > 1 {
                    return Err(RuleError::SecondTarget);
                }
                module.clear();
                let is_goto = tok == "-g" || tok == "--goto";
                rule.target = match name.as_str() {
                    _ if chains.contains(&name.as_str()) && is_goto => Target::Goto(name),
                    _ if chains.contains(&name.as_str()) => Target::Jump(name),
                    "ACCEPT" => Target::Accept,
                    "RETURN" => Target::Return,
                    "DROP" | "REJECT" => Target::Drop,
                    "MASQUERADE" | "SNAT" => Target::Nat,
                    "MARK" => Target::Mark { clear: 0, xor: 0 },
                    "LOG" | "TRACE" | "NFLOG" => Target::Passive,
                    // An extension target we do not model, or a chain that
                    // does not exist (iptables-restore would refuse that).
                    _ => Target::Unknown(name),
                };
            }
            "-f" | "--fragment" => unknown(&mut rule, "the match -f is not modeled".into()),
            opt if targets > 0 => {
                // Options of MASQUERADE/SNAT/LOG (--random-fully,
                // --to-source, --log-prefix, ...) do not change the
                // verdict; MARK's do.
                let v = target_words(&mut it);
                if let Target::Mark { clear, xor } = &mut rule.target {
                    let (val, mask) = mark_value(&v)?;
                    match opt {
                        "--set-xmark" => (*clear, *xor) = (mask, val),
                        "--set-mark" => (*clear, *xor) = (mask | val, val),
                        "--or-mark" => (*clear, *xor) = (val, val),
                        "--and-mark" => (*clear, *xor) = (!val, 0),
                        "--xor-mark" => (*clear, *xor) = (0, val),
                        _ => rule.target = Target::Unknown(format!("MARK {opt}")),
                    }
                }
            }
            "--comment" if module == "comment" => {
                value(true)?;
            }
            "--src-type" | "--dst-type" if module == "addrtype" => {
                let types = value(false)?.split(',').map(str::to_owned).collect();
                rule.addrtype.push((neg, types));
            }
            "--match-set" if module == "set" => {
                let name = value(false)?;
                let flags: Vec<String> = value(false)?.split(',').map(str::to_owned).collect();
                if let Some(f) = flags.iter().find(|f| *f != "src" && *f != "dst") {
                    return Err(RuleError::SetFlag {
                        set: name,
                        flag: f.clone(),
                    });
                }
                rule.sets.push((neg, name, flags));
            }
            "--dport" | "--destination-port" if module == "tcp" || module == "udp" => {
                let v = value(false)?;
                match ports(&v) {
                    Some((lo, hi)) => rule.dport = Some((neg, lo, hi)),
                    None => unknown(&mut rule, format!("the port {v:?} is not modeled")),
                }
            }
            "--ctstate" | "--state"
                if (module == "conntrack" && tok == "--ctstate")
                    || (module == "state" && tok == "--state") =>
            {
                let v = value(false)?;
                let states: Vec<String> = v.split(',').map(str::to_owned).collect();
                // The real states; SNAT and DNAT (is the connection
                // translated?) depend on what NAT did first: not modeled.
                const REAL: [&str; 5] = ["NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"];
                if states.iter().all(|s| REAL.contains(&s.as_str())) {
                    rule.ctstate.push((neg, states));
                } else {
                    unknown(
                        &mut rule,
                        format!("the state {v:?} (-m {module}) is not modeled"),
                    );
                }
            }
            "--mark" if module == "mark" => {
                let (val, mask) = mark_value(&value(false)?)?;
                rule.marks.push((neg, val, mask));
            }
            opt if !opt.starts_with('-') => {
                return Err(RuleError::NotAnOption(opt.to_owned()));
            }
            opt if module.is_empty() => {
                return Err(RuleError::NoModule(opt.to_owned()));
            }
            opt => {
                let v = target_words(&mut it);
                unknown(
                    &mut rule,
                    format!("the option {opt} {v} (-m {module}) is not modeled"),
                );
            }
        }
        neg = false;
    }
    Ok(rule)
}

/// The words after a target's or an unmodeled module's option, up to the
/// next option.
fn target_words(
    it: &mut std::iter::Peekable<std::iter::Skip<std::slice::Iter<'_, String>>>,
) -> String {
    let mut words = Vec::new();
    while let Some(w) = it.next_if(|w| !(w.starts_with('-') && w.len() > 1) && w.as_str() != "!") {
        words.push(w.clone());
    }
    words.join(" ")
}

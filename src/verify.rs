//! Order-aware drift detection. Walks POSTROUTING the way the kernel does
//! (jumps, gotos, RETURN, the first terminal target, `!` negations) for
//! every kind of pod packet the check is about, and names the rule that
//! decides each case. A match it does not model is never guessed: the
//! result is "cannot decide", naming the rule.
//!
//! Exactness: destinations, sources, interfaces and protocols are split
//! into "atoms" at every boundary that the reachable rules mention, and one
//! packet per atom is walked. Within an atom every rule matches all packets
//! or none, so the verdict holds for the whole class, not a sample.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::config::{Mode, NodeSpec};
use crate::rules_file::Table;

/// A rule as the evaluator sees it.
#[derive(Debug, Clone)]
struct Rule<'a> {
    chain: &'a str,
    /// 1-based position in its chain, as `iptables -L --line-numbers` counts.
    pos: usize,
    text: &'a str,
    src: Option<(bool, Ipv4Net)>,
    dst: Option<(bool, Ipv4Net)>,
    in_if: Option<(bool, String)>,
    out_if: Option<(bool, String)>,
    proto: Option<(bool, String)>,
    /// `-m addrtype --src-type/--dst-type` lists. The side does not matter:
    /// a forwarded pod packet's source and destination are both UNICAST.
    addrtype: Vec<(bool, Vec<String>)>,
    marks: Vec<(bool, u32, u32)>,
    /// Why a match part cannot be evaluated, if one cannot.
    unknown: Option<String>,
    target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
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

/// One concrete packet of a class.
#[derive(Debug, Clone)]
struct Packet {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// The exclusion (or egress range) this destination stands for.
    dst_class: Ipv4Net,
    in_if: String,
    out_if: String,
    proto: String,
    mark: u32,
}

/// Where a walk ended.
#[derive(Debug, Clone)]
enum End<'a> {
    Nat(&'a Rule<'a>, usize),
    NoNat(Option<&'a Rule<'a>>, usize),
    Undecided(&'a Rule<'a>, String),
}

/// A rule named in a report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RuleRef {
    pub chain: String,
    pub position: usize,
    pub text: String,
}

impl RuleRef {
    fn of(r: &Rule<'_>) -> RuleRef {
        RuleRef {
            chain: r.chain.to_owned(),
            position: r.pos,
            text: r.text.to_owned(),
        }
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} rule {}: {}", self.chain, self.position, self.text)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Drift,
    Undecided,
}

/// The outcome for one class of packets.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `pod-to-cluster` or `pod-to-outside`.
    pub name: &'static str,
    /// What must happen: `keep` the source IP, or `masquerade`.
    pub expect: &'static str,
    pub status: Status,
    /// The rule that decided the first failing (or, when ok, the first)
    /// packet; `None` when the chain policy decided.
    pub rule: Option<RuleRef>,
    /// The packet that was decided, as `src -> dst via out_if (proto)`.
    pub packet: String,
    /// The destination range that packet stands for.
    pub destination: String,
    pub note: Option<String>,
    /// Why it cannot be decided.
    pub reason: Option<String>,
    /// Position in POSTROUTING where the walk left the built-in chain.
    #[serde(skip)]
    top: usize,
}

/// The whole verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub status: Status,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Evaluates the nat table `table` against what `spec` promises.
pub fn evaluate(spec: &NodeSpec, table: &Table<'_>) -> Report {
    let rules = reachable_rules(table);
    let exclusion = podsnat_exclusion(spec);
    let atoms = Atoms::collect(spec, &rules);
    let evaluator = Evaluator {
        chains: index_by_chain(&rules),
    };

    let mut checks = Vec::new();
    for (name, expect_nat, dsts) in [
        ("pod-to-cluster", false, &atoms.cluster_dsts),
        ("pod-to-outside", true, &atoms.outside_dsts),
    ] {
        let mut first_ok: Option<Check> = None;
        let mut undecided: Option<Check> = None;
        let mut drift: Option<Check> = None;
        'packets: for p in atoms.packets(spec, dsts) {
            let end = evaluator.walk(&p);
            let (status, rule, top, reason) = match &end {
                End::Nat(r, top) => (
                    if expect_nat {
                        Status::Ok
                    } else {
                        Status::Drift
                    },
                    Some(*r),
                    *top,
                    None,
                ),
                End::NoNat(r, top) => (
                    if expect_nat {
                        Status::Drift
                    } else {
                        Status::Ok
                    },
                    *r,
                    *top,
                    None,
                ),
                End::Undecided(r, why) => (Status::Undecided, Some(*r), 0, Some(why.clone())),
            };
            let check = Check {
                name,
                expect: if expect_nat { "masquerade" } else { "keep" },
                status,
                rule: rule.map(RuleRef::of),
                packet: format!("{} -> {} via {} ({})", p.src, p.dst, p.out_if, p.proto),
                destination: p.dst_class.to_string(),
                note: None,
                reason,
                top,
            };
            match status {
                Status::Drift => {
                    drift = Some(check);
                    break 'packets;
                }
                Status::Undecided => {
                    undecided.get_or_insert(check);
                }
                Status::Ok => {
                    first_ok.get_or_insert(check);
                }
            }
        }
        let mut check = drift.or(undecided).or(first_ok).unwrap_or_else(|| Check {
            name,
            expect: if expect_nat { "masquerade" } else { "keep" },
            status: Status::Ok,
            rule: None,
            packet: String::new(),
            destination: String::new(),
            note: Some("no packet of this class exists".into()),
            reason: None,
            top: 0,
        });
        if check.status == Status::Drift && !expect_nat {
            let ours = table
                .rules
                .iter()
                .filter(|r| r.chain == "POSTROUTING")
                .position(|r| r.text == exclusion)
                .map(|i| i + 1);
            check.note = Some(match ours {
                Some(q) if check.top < q => "inserted above podsnat's exclusion".into(),
                Some(_) => "podsnat's exclusion does not cover it".into(),
                None => "podsnat's exclusion is missing".into(),
            });
        }
        checks.push(check);
    }
    let status = if checks.iter().any(|c| c.status == Status::Drift) {
        Status::Drift
    } else if checks.iter().any(|c| c.status == Status::Undecided) {
        Status::Undecided
    } else {
        Status::Ok
    };
    Report { status, checks }
}

/// podsnat's own POSTROUTING rule that carries the exclusion: the jump in
/// guard mode, the `! -d` rule in classic mode. It is the first POSTROUTING
/// rule podsnat renders.
pub fn podsnat_exclusion(spec: &NodeSpec) -> String {
    let rendered = crate::render::nat_table(spec);
    rendered
        .lines()
        .find(|l| l.starts_with("-A POSTROUTING "))
        .unwrap_or_default()
        .to_owned()
}

/// Human-readable report lines.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let what = match c.name {
            "pod-to-cluster" => "pod→cluster traffic",
            _ => "pod→outside traffic",
        };
        let rule = c
            .rule
            .as_ref()
            .map_or_else(|| "the POSTROUTING policy".to_owned(), |r| r.to_string());
        let note = c
            .note
            .as_ref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        let line = match (c.status, c.expect) {
            (Status::Ok, "keep") => {
                format!("ok: {what} keeps the pod source IP; decided by {rule}")
            }
            (Status::Ok, _) => format!("ok: {what} is masqueraded by {rule}"),
            (Status::Drift, "keep") => format!(
                "drift: {what} is masqueraded by {rule}{note}; packet {} (destination {})",
                c.packet, c.destination
            ),
            (Status::Drift, _) => format!(
                "drift: {what} is not masqueraded; decided by {rule}{note}; packet {}",
                c.packet
            ),
            (Status::Undecided, _) => format!(
                "warning: cannot decide {what}: {rule}: {}; packet {}",
                c.reason.as_deref().unwrap_or("not modeled"),
                c.packet
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

// ---- parsing rules into the evaluator's form ------------------------------

fn index_by_chain<'r, 'a>(rules: &'r [Rule<'a>]) -> HashMap<&'a str, Vec<&'r Rule<'a>>> {
    let mut map: HashMap<&str, Vec<&Rule<'_>>> = HashMap::new();
    for r in rules {
        map.entry(r.chain).or_default().push(r);
    }
    map
}

/// The rules of POSTROUTING and of every chain reachable from it. Other
/// chains (kube-proxy's thousands of service rules) are never tokenized.
fn reachable_rules<'a>(table: &Table<'a>) -> Vec<Rule<'a>> {
    let mut by_chain: HashMap<&str, Vec<&crate::rules_file::Rule<'a>>> = HashMap::new();
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

// ---- atoms -----------------------------------------------------------------

struct Atoms {
    srcs: Vec<Ipv4Addr>,
    cluster_dsts: Vec<(Ipv4Addr, Ipv4Net)>,
    outside_dsts: Vec<(Ipv4Addr, Ipv4Net)>,
    out_ifs: Vec<String>,
    protos: Vec<String>,
}

/// Half-open u64 intervals of addresses.
type Span = (u64, u64);

fn span(n: &Ipv4Net) -> Span {
    (
        u32::from(n.network()) as u64,
        u32::from(n.broadcast()) as u64 + 1,
    )
}

/// Splits `spans` at every boundary in `cuts`; returns each piece's start.
fn split(spans: &[Span], cuts: &BTreeSet<u64>) -> Vec<u64> {
    let mut out = Vec::new();
    for &(lo, hi) in spans {
        out.push(lo);
        out.extend(cuts.range(lo + 1..hi).copied());
    }
    out
}

/// `spans` minus `holes`, both lists of half-open intervals.
fn subtract(spans: &[Span], holes: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(lo, hi) in spans {
        let mut pieces = vec![(lo, hi)];
        for &(hlo, hhi) in holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut v = Vec::new();
                    if hlo > a {
                        v.push((a, b.min(hlo)));
                    }
                    if hhi < b {
                        v.push((a.max(hhi), b));
                    }
                    v.into_iter().filter(|(x, y)| x < y).collect::<Vec<_>>()
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

fn addr(x: u64) -> Ipv4Addr {
    Ipv4Addr::from(x as u32)
}

/// Destinations that are not ordinary unicast: "this network", loopback,
/// multicast and the reserved range. Pod egress to them is not checked.
const NOT_EGRESS: [&str; 3] = ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"];

impl Atoms {
    fn collect(spec: &NodeSpec, rules: &[Rule<'_>]) -> Atoms {
        let mut src_cuts = BTreeSet::new();
        let mut dst_cuts = BTreeSet::new();
        let mut patterns = BTreeSet::new();
        let mut named_protos = BTreeSet::new();
        for r in rules {
            if let Some((_, n)) = &r.src {
                let (a, b) = span(n);
                src_cuts.extend([a, b]);
            }
            if let Some((_, n)) = &r.dst {
                let (a, b) = span(n);
                dst_cuts.extend([a, b]);
            }
            if let Some((_, name)) = &r.out_if {
                patterns.insert(name.clone());
            }
            if let Some((_, p)) = &r.proto {
                named_protos.insert(proto_name(p));
            }
        }
        let pod = span(&spec.pod_subnet());
        let exclusions: Vec<Ipv4Net> = spec.exclusions();
        // Traffic to the node's own pod subnet leaves through the bridge, so
        // it is not part of the "leaves through another interface" class.
        let mut cluster_dsts = Vec::new();
        for e in &exclusions {
            for start in split(&subtract(&[span(e)], &[pod]), &dst_cuts) {
                cluster_dsts.push((addr(start), *e));
            }
        }
        let mut holes: Vec<Span> = exclusions.iter().map(span).collect();
        holes.extend(
            NOT_EGRESS
                .iter()
                .filter_map(|s| s.parse::<Ipv4Net>().ok())
                .map(|n| span(&n)),
        );
        let everything = [(0u64, 1u64 << 32)];
        let outside_dsts = split(&subtract(&everything, &holes), &dst_cuts)
            .into_iter()
            .map(|start| (addr(start), Ipv4Net::from(addr(start))))
            .collect();

        let bridge = spec.bridge().as_str();
        let mut out_ifs: Vec<String> = patterns
            .iter()
            .map(|p| match p.strip_suffix('+') {
                Some(prefix) => {
                    let mut name = format!("{prefix}p0");
                    if name == bridge {
                        name = format!("{prefix}p1");
                    }
                    name
                }
                None => p.clone(),
            })
            .filter(|n| n != bridge)
            .collect();
        // And one interface that no rule names.
        let fresh = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| n != bridge && !patterns.iter().any(|p| iface_matches(p, n)))
            .unwrap_or_else(|| "eth0".into());
        out_ifs.push(fresh);
        out_ifs.sort();
        out_ifs.dedup();

        // Without `-p` in any reachable rule the protocol cannot matter.
        let mut protos: Vec<String> = named_protos
            .iter()
            .filter(|p| *p != "all")
            .cloned()
            .collect();
        let other = if named_protos.is_empty() {
            "any"
        } else {
            ["tcp", "udp", "icmp", "sctp", "gre", "esp"]
                .into_iter()
                .find(|p| !named_protos.contains(*p))
                .unwrap_or("ospf")
        };
        protos.push(other.to_owned());

        Atoms {
            srcs: split(&[pod], &src_cuts).into_iter().map(addr).collect(),
            cluster_dsts,
            outside_dsts,
            out_ifs,
            protos,
        }
    }

    fn packets<'s>(
        &'s self,
        spec: &'s NodeSpec,
        dsts: &'s [(Ipv4Addr, Ipv4Net)],
    ) -> impl Iterator<Item = Packet> + 's {
        self.srcs.iter().flat_map(move |&src| {
            dsts.iter().flat_map(move |&(dst, class)| {
                self.out_ifs.iter().flat_map(move |out_if| {
                    self.protos.iter().map(move |proto| Packet {
                        src,
                        dst,
                        dst_class: class,
                        in_if: spec.bridge().as_str().to_owned(),
                        out_if: out_if.clone(),
                        proto: proto.clone(),
                        mark: 0,
                    })
                })
            })
        })
    }
}

fn proto_name(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "132" => "sctp".into(),
        "47" => "gre".into(),
        "0" => "all".into(),
        other => other.to_owned(),
    }
}

/// iptables interface patterns: a trailing `+` matches any suffix.
fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

// ---- the walk --------------------------------------------------------------

struct Evaluator<'r, 'a> {
    chains: HashMap<&'a str, Vec<&'r Rule<'a>>>,
}

/// A three-valued match result.
enum Tri {
    Yes,
    No,
    Unknown(String),
}

impl<'r, 'a> Evaluator<'r, 'a> {
    fn walk(&self, packet: &Packet) -> End<'r> {
        let mut p = packet.clone();
        // Frames of (chain, next rule index). Frame 0 is POSTROUTING.
        let mut stack: Vec<(&'r str, usize)> = vec![("POSTROUTING", 0)];
        // Position in POSTROUTING of the rule the walk is under.
        let mut top = 0;
        // The RETURN that sent the packet back to POSTROUTING last: when the
        // policy then decides, that RETURN is the rule that really did.
        let mut returned: Option<&'r Rule<'a>> = None;
        let mut steps = 0usize;
        while let Some((chain, idx)) = stack.last_mut() {
            let rules = self.chains.get(*chain).map(Vec::as_slice).unwrap_or(&[]);
            let Some(rule) = rules.get(*idx) else {
                // Fell off the end: a user chain returns, POSTROUTING applies its policy.
                stack.pop();
                if stack.is_empty() {
                    return End::NoNat(returned, top);
                }
                continue;
            };
            *idx += 1;
            if *chain == "POSTROUTING" {
                top = rule.pos;
            }
            steps += 1;
            if steps > 100_000 || stack.len() > 64 {
                return End::Undecided(rule, "the chains loop or nest too deep".into());
            }
            match (matches(rule, &p), &rule.target) {
                (Tri::No, _) | (_, Target::None | Target::Passive) => continue,
                (Tri::Unknown(why), _) => return End::Undecided(rule, why),
                (Tri::Yes, Target::Accept) => return End::NoNat(Some(rule), top),
                (Tri::Yes, Target::Nat) => return End::Nat(rule, top),
                (Tri::Yes, Target::Return) => {
                    stack.pop();
                    if stack.is_empty() {
                        // RETURN in a built-in chain applies its policy.
                        return End::NoNat(Some(rule), top);
                    }
                    returned = Some(rule);
                }
                (Tri::Yes, Target::Mark { clear, xor }) => p.mark = (p.mark & !clear) ^ xor,
                (Tri::Yes, Target::Jump(c) | Target::Goto(c)) => {
                    if matches!(rule.target, Target::Goto(_)) {
                        // A goto's RETURN goes back to the caller's caller.
                        stack.pop();
                    }
                    stack.push((c.as_str(), 0));
                }
                (Tri::Yes, Target::Unknown(t)) => {
                    return End::Undecided(rule, format!("the target {t} is not modeled"));
                }
            }
        }
        End::NoNat(returned, top)
    }
}

fn matches(rule: &Rule<'_>, p: &Packet) -> Tri {
    let mut all = true;
    let mut check = |neg: bool, hit: bool| all &= hit != neg;
    if let Some((neg, n)) = &rule.src {
        check(*neg, n.contains(&p.src));
    }
    if let Some((neg, n)) = &rule.dst {
        check(*neg, n.contains(&p.dst));
    }
    if let Some((neg, name)) = &rule.in_if {
        check(*neg, iface_matches(name, &p.in_if));
    }
    if let Some((neg, name)) = &rule.out_if {
        check(*neg, iface_matches(name, &p.out_if));
    }
    if let Some((neg, proto)) = &rule.proto {
        let name = proto_name(proto);
        check(*neg, name == "all" || name == p.proto);
    }
    for (neg, types) in &rule.addrtype {
        // A forwarded pod packet's source and destination are plain unicast
        // addresses of other machines, never LOCAL to this node.
        check(*neg, types.iter().any(|t| t == "UNICAST"));
    }
    for (neg, val, mask) in &rule.marks {
        check(*neg, p.mark & mask == *val);
    }
    if !all {
        return Tri::No;
    }
    match &rule.unknown {
        Some(why) => Tri::Unknown(why.clone()),
        None => Tri::Yes,
    }
}

// ---- repair ----------------------------------------------------------------

/// The nat table of a text podsnat built itself.
fn nat_of(text: &str) -> Result<Table<'_>, String> {
    crate::rules_file::parse(text)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|t| t.name == "nat")
        .ok_or_else(|| "no *nat table".to_owned())
}

/// A runtime repair: one `iptables-restore --noflush` transaction.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The restore input, `*nat` ... `COMMIT`.
    pub transaction: String,
    /// Where podsnat's exclusion goes in POSTROUTING (1-based).
    pub position: usize,
    /// Copies of podsnat's rules that are removed.
    pub removed: Vec<String>,
}

/// Plans the smallest change that puts podsnat's exclusion above the rule
/// that shadows it and removes duplicate copies of podsnat's own rules.
/// Everything else in the table stays as it is. `None` when there is no
/// pod→cluster drift to repair.
pub fn plan_repair(spec: &NodeSpec, table: &Table<'_>) -> Result<Option<Repair>, String> {
    let report = evaluate(spec, table);
    if report.check("pod-to-cluster").map(|c| c.status) != Some(Status::Drift) {
        return Ok(None);
    }
    let rendered = crate::render::nat_table(spec);
    let ours = nat_of(&rendered)?;
    let exclusion = podsnat_exclusion(spec);
    let our_post = ours.chain_rules("POSTROUTING");
    let own_chain = "PODSNAT-POSTROUTING";
    let own_rules = ours.chain_rules(own_chain);

    // POSTROUTING after removing every copy of the exclusion, in classic
    // mode every copy of docker's broad rule (the hand fix replaces it; no
    // position of a `! -d` MASQUERADE rule can beat it), and extra copies of
    // podsnat's other POSTROUTING rules. `-D` removes the first match, so
    // the first copies go.
    let live: Vec<&str> = table.chain_rules("POSTROUTING");
    let broad = format!(
        "-A POSTROUTING -s {} ! -o {} -j MASQUERADE",
        spec.pod_subnet(),
        spec.bridge()
    );
    let replaced = |r: &str| r == exclusion || (spec.mode() == Mode::Classic && r == broad);
    let mut post: Vec<&str> = Vec::with_capacity(live.len());
    let mut removed = Vec::new();
    // Where the exclusion was, counted in the list without the removed rules.
    let mut was_at = None;
    for r in &live {
        if replaced(r) {
            if *r == exclusion {
                was_at.get_or_insert(post.len() + 1);
            }
            removed.push((*r).to_owned());
        } else {
            post.push(r);
        }
    }
    for rule in our_post.iter().filter(|r| !replaced(r)) {
        let want = our_post.iter().filter(|r2| *r2 == rule).count();
        while post.iter().filter(|r2| *r2 == rule).count() > want {
            if let Some(i) = post.iter().position(|r2| r2 == rule) {
                post.remove(i);
                removed.push((*rule).to_owned());
            }
        }
    }

    // Find what decides pod→cluster without the exclusion, then insert the
    // exclusion right there.
    let candidate = |post: &[&str]| -> String {
        let mut text = String::from("*nat\n");
        let has_own = table.chains.contains(&own_chain);
        for d in &table.chain_decls {
            text += d;
            text.push('\n');
        }
        if !has_own && !own_rules.is_empty() {
            text += &format!(":{own_chain} - [0:0]\n");
        }
        for r in post {
            text += r;
            text.push('\n');
        }
        for r in table
            .rules
            .iter()
            .filter(|r| r.chain != "POSTROUTING" && r.chain != own_chain)
        {
            text += r.text;
            text.push('\n');
        }
        for r in &own_rules {
            text += r;
            text.push('\n');
        }
        text + "COMMIT\n"
    };
    let without = candidate(&post);
    let at = match evaluate(spec, &nat_of(&without)?).check("pod-to-cluster") {
        Some(c) if c.status == Status::Drift => c.top.max(1),
        _ => was_at.unwrap_or(post.len() + 1),
    }
    .min(post.len() + 1);
    post.insert(at - 1, &exclusion);
    let with = candidate(&post);
    let after = evaluate(spec, &nat_of(&with)?);
    if after.check("pod-to-cluster").map(|c| c.status) != Some(Status::Ok) {
        return Err(format!(
            "moving podsnat's exclusion would not fix the drift:\n{}",
            text(&after)
        ));
    }

    let mut tx = String::from("*nat\n");
    if !own_rules.is_empty() {
        // Declaring a user chain under --noflush empties it (both backends),
        // so its rules are exactly podsnat's afterwards.
        tx += &format!(":{own_chain} - [0:0]\n");
        for r in &own_rules {
            tx += r;
            tx.push('\n');
        }
    }
    for r in &removed {
        tx += &format!("-D {}\n", r.trim_start_matches("-A "));
    }
    tx += &format!(
        "-I POSTROUTING {at} {}\n",
        exclusion.trim_start_matches("-A POSTROUTING ")
    );
    tx += "COMMIT\n";
    Ok(Some(Repair {
        transaction: tx,
        position: at,
        removed,
    }))
}

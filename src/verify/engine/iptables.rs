//! iptables' nat table as a [`Layer`]: POSTROUTING and the user chains
//! it jumps to, with netfilter's matches (`!` negations, interfaces with
//! `+`, protocols, marks, ports, ipsets). The walk itself is the engine's.

use std::collections::HashMap;

use super::atoms::{Packet, iface_matches, proto_name};
use super::rule::{Rule, Target};
use super::sets::{Member, Sets};
use super::{Layer, RuleRef, Step};

/// The rules the walk can reach from `entry`, by chain: iptables' nat
/// table from POSTROUTING, or the filter or raw table from FORWARD or
/// PREROUTING.
pub(in crate::verify) struct IptablesTable<'r, 'a> {
    pub(in crate::verify) chains: HashMap<&'a str, Vec<&'r Rule<'a>>>,
    pub(in crate::verify) sets: &'r Sets,
    pub(in crate::verify) entry: &'static str,
}

/// A three-valued match result.
enum Tri {
    Yes,
    No,
    Unknown(String),
}

impl<'r, 'a> Layer for IptablesTable<'r, 'a> {
    type Chain = &'r str;
    type Rule = &'r Rule<'a>;

    fn entry(&self) -> &'r str {
        self.entry
    }

    fn rule(&self, chain: &'r str, index: usize) -> Option<&'r Rule<'a>> {
        self.chains.get(chain)?.get(index).copied()
    }

    fn step(&self, _: &'r str, rule: &'r Rule<'a>, p: &mut Packet) -> Step<&'r str> {
        match (matches(rule, p, self.sets), &rule.target) {
            (Tri::No, _) | (_, Target::None | Target::Passive) => Step::Next,
            (Tri::Unknown(why), target) => Step::Unknown {
                why,
                foreign_end: matches!(target, Target::Nat | Target::Accept | Target::Drop)
                    && rule.chain != crate::render::OWN_CHAIN,
            },
            (Tri::Yes, Target::Accept) => Step::Accept,
            (Tri::Yes, Target::Drop) => Step::Drop,
            (Tri::Yes, Target::Nat) => Step::Bind { identity: false },
            (Tri::Yes, Target::Return) => Step::Return,
            (Tri::Yes, Target::Mark { clear, xor }) => {
                p.mark = (p.mark & !clear) ^ xor;
                Step::Next
            }
            (Tri::Yes, Target::Jump(c)) => Step::Jump(c.as_str()),
            (Tri::Yes, Target::Goto(c)) => Step::Goto(c.as_str()),
            (Tri::Yes, Target::Unknown(t)) => {
                Step::CannotDecide(format!("the target {t} is not modeled"))
            }
        }
    }

    fn position(&self, _: usize, rule: &'r Rule<'a>) -> usize {
        rule.pos
    }

    fn named(&self, _: &'r str, _: usize, rule: &'r Rule<'a>) -> RuleRef {
        RuleRef::of(rule)
    }
}

fn matches(rule: &Rule<'_>, p: &Packet, sets: &Sets) -> Tri {
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
    for (neg, states) in &rule.ctstate {
        // The connection's first packet: NEW.
        check(*neg, states.iter().any(|s| s == "NEW"));
    }
    let mut set_unknown = None;
    if let Some((neg, lo, hi)) = rule.dport {
        match p.dport {
            Some(d) => check(neg, lo <= d && d <= hi),
            None => set_unknown = Some("the packet's port is not modeled".to_owned()),
        }
    }
    for (neg, name, flags) in &rule.sets {
        match sets.member(name, flags, p.src, p.dst) {
            Member::Yes => check(*neg, true),
            Member::No => check(*neg, false),
            Member::Unknown(why) => {
                set_unknown.get_or_insert(why);
            }
        }
    }
    if !all {
        return Tri::No;
    }
    match rule.unknown.clone().or(set_unknown) {
        Some(why) => Tri::Unknown(why),
        None => Tri::Yes,
    }
}

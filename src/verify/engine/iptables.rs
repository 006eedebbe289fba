//! The kernel walk: POSTROUTING as netfilter traverses it for one packet
//! (jumps, gotos, RETURN, the first terminal target, `!` negations), ending
//! in NAT, no NAT, or "cannot decide" with the rule that stopped it.

use std::collections::HashMap;

use super::atoms::{Packet, iface_matches, proto_name};
use super::rule::{Rule, Target};
use super::sets::{Member, Sets};

/// Where a walk ended.
#[derive(Debug, Clone)]
pub(in crate::verify) enum End<'a> {
    Nat(&'a Rule<'a>, usize),
    NoNat(Option<&'a Rule<'a>>, usize),
    CannotDecide(&'a Rule<'a>, String),
}

pub(in crate::verify) struct Evaluator<'r, 'a> {
    pub(in crate::verify) chains: HashMap<&'a str, Vec<&'r Rule<'a>>>,
    pub(in crate::verify) sets: &'r Sets,
}

/// A three-valued match result.
enum Tri {
    Yes,
    No,
    Unknown(String),
}

impl<'r, 'a> Evaluator<'r, 'a> {
    pub(in crate::verify) fn walk(&self, packet: &Packet) -> End<'r> {
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
                return End::CannotDecide(rule, "the chains loop or nest too deep".into());
            }
            match (matches(rule, &p, self.sets), &rule.target) {
                (Tri::No, _) | (_, Target::None | Target::Passive) => continue,
                // Matching or not, podsnat's rules decide nothing here.
                (Tri::Unknown(_), Target::Nat | Target::Accept)
                    if p.lenient && rule.chain != crate::render::OWN_CHAIN =>
                {
                    continue;
                }
                (Tri::Unknown(why), _) => return End::CannotDecide(rule, why),
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
                    return End::CannotDecide(rule, format!("the target {t} is not modeled"));
                }
            }
        }
        End::NoNat(returned, top)
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

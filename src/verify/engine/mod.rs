//! The engine: packet classes cut into atoms (`atoms.rs`), and the walk of
//! one packet through each layer the kernel runs at postrouting. Every
//! layer shows the walk one face, [`Layer`] (as netavark's `FirewallDriver`
//! gives one face to two backends): iptables' nat table (`iptables.rs`)
//! and each nftables base chain with the chains it jumps to (`nft.rs`), and
//! later the filter table. [`walk`] is the one traversal: the stack of
//! jumps, gotos and returns, the guards against loops and depth, and the
//! `lenient` rule are written here once. `hook.rs` only schedules the
//! layers by priority.

pub(super) mod atoms;
pub(super) mod hook;
pub(super) mod iptables;
pub(super) mod nft;

use super::{RuleRef, nft as model, rule, sets};
use atoms::Packet;

/// A walk that takes more steps than this, or nests deeper, is taken to
/// loop: "cannot decide".
const MAX_STEPS: usize = 100_000;
const MAX_DEPTH: usize = 64;

/// What one rule does to a packet, as its layer reads it.
pub(super) enum Step<C> {
    /// The rule does not apply, or applies and sets no verdict (a mark).
    Next,
    /// A match or statement the model lacks. `foreign_end`: the rule is
    /// someone else's and its only verdict would end the walk; when only
    /// podsnat's own rules are in question (`Packet::lenient`) it is taken
    /// as not matching, since either way no rule of podsnat's decides there.
    Unknown {
        why: String,
        foreign_end: bool,
    },
    /// The rule cannot be followed (an unmodeled target, a missing chain).
    CannotDecide(String),
    Accept,
    /// DROP or REJECT: the packet goes no further (filter and raw tables).
    Drop,
    /// A NAT binding: the source kept (`identity`) or translated.
    Bind {
        identity: bool,
    },
    Return,
    Jump(C),
    Goto(C),
}

/// One layer of rules, as the walk sees it.
pub(super) trait Layer {
    /// A chain of the layer, cheap to copy and compare.
    type Chain: Copy + PartialEq;
    type Rule: Copy;
    /// The chain the hook enters.
    fn entry(&self) -> Self::Chain;
    /// The `index`th rule (from 0) of `chain`, if it has one.
    fn rule(&self, chain: Self::Chain, index: usize) -> Option<Self::Rule>;
    /// What `rule` does to `p` (which it may mark).
    fn step(&self, chain: Self::Chain, rule: Self::Rule, p: &mut Packet) -> Step<Self::Chain>;
    /// Where the rule stands in its chain (from 1), as reports count.
    fn position(&self, index: usize, rule: Self::Rule) -> usize;
    /// The rule as a report names it.
    fn named(&self, chain: Self::Chain, index: usize, rule: Self::Rule) -> RuleRef;
}

/// How one layer's walk ended. `top` is the position, in the entry chain,
/// of the rule the walk was under.
pub(super) enum End {
    Bind {
        identity: bool,
        rule: RuleRef,
        top: usize,
    },
    /// No binding: the layer's policy. The rule that decided last (an
    /// accept, or the return that led back to the policy), if any.
    Pass(Option<RuleRef>, usize),
    /// Accepted by this rule: the end of this layer, as its policy would be.
    Accept(RuleRef, usize),
    /// Dropped by this rule.
    Drop(RuleRef),
    CannotDecide(RuleRef, String),
}

/// Walks `p` through `layer` as netfilter does: rules in order, jumps push
/// a chain, a goto replaces the current one, a return (or the end of a
/// chain) goes back, the first verdict ends the layer.
pub(super) fn walk<L: Layer>(layer: &L, p: &mut Packet) -> End {
    let entry = layer.entry();
    let mut stack: Vec<(L::Chain, usize)> = vec![(entry, 0)];
    let mut top = 0;
    // The return that sent the packet back last: when the policy then
    // decides, that return is the rule that really did.
    let mut returned: Option<(L::Chain, usize, L::Rule)> = None;
    let mut steps = 0usize;
    while let Some((chain, next)) = stack.last_mut() {
        let (chain, index) = (*chain, *next);
        let Some(rule) = layer.rule(chain, index) else {
            stack.pop();
            continue;
        };
        *next += 1;
        if chain == entry {
            top = layer.position(index, rule);
        }
        steps += 1;
        let named = || layer.named(chain, index, rule);
        if steps > MAX_STEPS || stack.len() > MAX_DEPTH {
            return End::CannotDecide(named(), "the chains loop or nest too deep".into());
        }
        match layer.step(chain, rule, p) {
            Step::Next => {}
            Step::Unknown { foreign_end, .. } if foreign_end && p.lenient => {}
            Step::Unknown { why, .. } | Step::CannotDecide(why) => {
                return End::CannotDecide(named(), why);
            }
            Step::Accept => return End::Accept(named(), top),
            Step::Drop => return End::Drop(named()),
            Step::Bind { identity } => {
                return End::Bind {
                    identity,
                    rule: named(),
                    top,
                };
            }
            Step::Return => {
                stack.pop();
                returned = Some((chain, index, rule));
            }
            Step::Jump(to) => stack.push((to, 0)),
            Step::Goto(to) => {
                // A goto's return goes back to the caller's caller.
                stack.pop();
                stack.push((to, 0));
            }
        }
    }
    End::Pass(returned.map(|(c, i, r)| layer.named(c, i, r)), top)
}

//! `NodeSpec` in, nat table text out. Pure: no I/O, no clock, so the same
//! spec always gives the same bytes and golden files stay stable.

mod anchor;
mod explain;
mod owner;
mod rules;

use askama::Template;
use ipnet::IpNet;

use crate::config::{Family, Mode, NodeSpec};
pub use anchor::{ANCHOR_CHAIN, ANCHOR_TABLE, anchor, anchor_rule_count, nft_family};
use explain::{Exclusion, NetTexts, RuleText, explain, rule_for};
pub use owner::Owner;
use rules::Commented;
pub use rules::docker_broad;

/// podsnat's own chain, which guard and owner mode fill with exclusions.
pub const OWN_CHAIN: &str = "PODSNAT-POSTROUTING";

/// The comment on owner mode's egress rule: it makes the rule differ from
/// docker's broad rule, byte for byte, so a docker start that deletes its
/// own rule can never delete this one.
pub const EGRESS_COMMENT: &str = "podsnat egress";

/// One rule of PODSNAT-POSTROUTING and the reason it exists.
/// PODSNAT-POSTROUTING's rule for one exclusion.
#[derive(Clone, Copy)]
struct AcceptRule;

impl RuleText for AcceptRule {
    fn write(&self, f: &mut std::fmt::Formatter<'_>, net: &str) -> std::fmt::Result {
        write!(f, "-A {OWN_CHAIN} -d {net} -j ACCEPT")
    }
}

// podsnat's own rules, written once here: the template prints them and
// `verify` looks for them, so the two can never disagree.

/// The POSTROUTING rule that carries the exclusion: the jump to
/// PODSNAT-POSTROUTING in guard mode, the `! -d` rule in classic mode.
/// Both apply only to traffic that leaves through another interface than
/// the bridge: traffic through the bridge (to this node's own pods, and
/// docker's hairpin NAT, which masquerades a container reaching its own
/// published port) stays docker's.
pub fn exclusion(spec: &NodeSpec) -> String {
    match spec.mode() {
        Mode::Guard | Mode::Owner => {
            format!(
                "-A POSTROUTING -s {} ! -o {} -j {OWN_CHAIN}",
                spec.pod_subnet(),
                spec.bridge()
            )
        }
        Mode::Classic => format!(
            "-A POSTROUTING -s {} ! -d {} ! -o {} -j MASQUERADE{}",
            spec.pod_subnet(),
            classic_dest(spec),
            spec.bridge(),
            if spec.random_fully() {
                " --random-fully"
            } else {
                ""
            }
        ),
    }
}

/// docker's broad rule for this node, byte for byte as `iptables-save`
/// prints it.
pub fn broad(spec: &NodeSpec) -> String {
    docker_broad(&spec.pod_subnet().to_string(), spec.bridge().as_str())
}

/// Owner mode's egress rule: docker's broad rule with podsnat's comment.
pub fn egress(spec: &NodeSpec) -> String {
    format!(
        "-A POSTROUTING -s {} ! -o {} -m comment --comment \"{EGRESS_COMMENT}\" -j MASQUERADE{}",
        spec.pod_subnet(),
        spec.bridge(),
        if spec.random_fully() {
            " --random-fully"
        } else {
            ""
        }
    )
}

/// Every POSTROUTING rule podsnat renders, in order: the table's own list.
pub fn postrouting(spec: &NodeSpec) -> Vec<String> {
    rules::rules(spec)
        .into_iter()
        .filter(|r| r.chain == "POSTROUTING")
        .map(|r| r.rule)
        .collect()
}

/// Every rule of PODSNAT-POSTROUTING, in order (none in classic mode):
/// the masquerade mark's RETURN, then one ACCEPT per exclusion.
pub fn own_chain(spec: &NodeSpec) -> Vec<String> {
    let head = rules::rules(spec)
        .into_iter()
        .filter(|r| r.chain == OWN_CHAIN)
        .map(|r| r.rule);
    match spec.mode() {
        Mode::Guard | Mode::Owner => head
            .chain(spec.exclusions().iter().map(own_chain_rule))
            .collect(),
        Mode::Classic => head.collect(),
    }
}

/// PODSNAT-POSTROUTING's first rule: traffic that carries the masquerade
/// mark (kube-proxy's KUBE-MARK-MASQ) goes back to POSTROUTING before any
/// exclusion can accept it, so the rules there masquerade it wherever
/// podsnat's jump stands, above KUBE-POSTROUTING or below it.
pub fn mark_return(spec: &NodeSpec) -> String {
    let mark = spec.masquerade_mark().value();
    format!("-A {OWN_CHAIN} -m mark --mark {mark:#x}/{mark:#x} -j RETURN")
}

fn own_chain_rule(net: &IpNet) -> String {
    rule_for(AcceptRule, net)
}

/// Classic mode's single `! -d` network, of the aggregated exclusions.
fn classic_dest_of(spec: &NodeSpec, nets: &[IpNet]) -> IpNet {
    nets.first().copied().unwrap_or(spec.cluster_cidr())
}

fn classic_dest(spec: &NodeSpec) -> IpNet {
    classic_dest_of(spec, spec.exclusions())
}

#[derive(Template)]
#[template(path = "nat.rules", escape = "none")]
struct NatTable<'a> {
    version: &'static str,
    /// "IPv6 " in an ip6tables table's header; IPv4's header says nothing.
    family_word: &'static str,
    chains: Vec<String>,
    /// podsnat's rules with their comments, up to the exclusions.
    rules: Vec<Commented>,
    /// PODSNAT-POSTROUTING's exclusions, last (none in classic mode).
    exclusions: Vec<Exclusion<'a, AcceptRule>>,
}

/// Renders the complete `*nat ... COMMIT` section, header comment included.
pub fn nat_table(spec: &NodeSpec) -> String {
    let nets = spec.exclusions();
    // Guard and owner mode list their exclusions in PODSNAT-POSTROUTING.
    let own_chain = spec.mode() != Mode::Classic;
    let texts = NetTexts::of(if own_chain { nets } else { &[] });
    let table = NatTable {
        version: env!("CARGO_PKG_VERSION"),
        family_word: match spec.family() {
            Family::V4 => "",
            Family::V6 => "IPv6 ",
        },
        chains: rules::chains(spec),
        rules: rules::rules(spec),
        exclusions: if own_chain {
            explain(spec, nets, &texts, AcceptRule)
        } else {
            Vec::new()
        },
    };
    // One allocation for the whole table: an exclusion and its comment take
    // about 100 bytes with an IPv4 /32, 160 with a long IPv6 network.
    let per = match spec.family() {
        Family::V4 => 112,
        Family::V6 => 176,
    };
    let mut out = String::with_capacity(4096 + per * table.exclusions.len());
    // Writing into a String cannot fail.
    let _ = table.render_into(&mut out);
    // askama drops the template's final newline; a restore file ends with one.
    out.push('\n');
    out
}

/// The number of rules (`-A` lines) in rendered or saved table text.
pub fn rule_count(table: &str) -> usize {
    table.lines().filter(|l| l.starts_with("-A ")).count()
}

//! `NodeSpec` in, nat table text out. Pure: no I/O, no clock, so the same
//! spec always gives the same bytes and golden files stay stable.

mod anchor;
mod explain;

use askama::Template;
use ipnet::IpNet;

use crate::config::{Family, Mode, NodeSpec};
pub use anchor::{ANCHOR_CHAIN, ANCHOR_TABLE, anchor, anchor_rule, anchor_rule_count, nft_family};
use explain::{Exclusion, NetTexts, RuleText, explain, rule_for};

/// podsnat's own chain, which guard mode fills with exclusions.
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

/// docker's broad rule, byte for byte as `iptables-save` prints it.
pub fn broad(spec: &NodeSpec) -> String {
    format!(
        "-A POSTROUTING -s {} ! -o {} -j MASQUERADE",
        spec.pod_subnet(),
        spec.bridge()
    )
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

/// Every POSTROUTING rule podsnat renders, in order.
pub fn postrouting(spec: &NodeSpec) -> Vec<String> {
    let mut rules = vec![exclusion(spec)];
    match spec.mode() {
        Mode::Guard => {
            if spec.random_fully() {
                rules.push(format!("{} --random-fully", broad(spec)));
            }
            if spec.docker() || !spec.random_fully() {
                rules.push(broad(spec));
            }
        }
        Mode::Owner => rules.push(egress(spec)),
        Mode::Classic => {}
    }
    rules
}

/// Every rule of PODSNAT-POSTROUTING, in order (none in classic mode):
/// the masquerade mark's RETURN, then one ACCEPT per exclusion.
pub fn own_chain(spec: &NodeSpec) -> Vec<String> {
    match spec.mode() {
        Mode::Guard | Mode::Owner => std::iter::once(mark_return(spec))
            .chain(spec.exclusions().iter().map(own_chain_rule))
            .collect(),
        Mode::Classic => Vec::new(),
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
    /// docker's OUTPUT rule skips the loopback network of the family.
    loopback: &'static str,
    /// podsnat's nftables anchor goes with this table.
    anchor: bool,
    bridge: &'a str,
    docker: bool,
    /// Guard or owner: the exclusions live in PODSNAT-POSTROUTING.
    guard: bool,
    owner: bool,
    random_fully: bool,
    classic_dest: IpNet,
    exclusion: String,
    /// The masquerade mark's RETURN and the mark's bit, for its comment.
    mark_return: String,
    bit: u8,
    broad: String,
    egress: String,
    exclusions: Vec<Exclusion<'a, AcceptRule>>,
}

/// Renders the complete `*nat ... COMMIT` section, header comment included.
pub fn nat_table(spec: &NodeSpec) -> String {
    let nets = spec.exclusions();
    let guard = spec.mode() != Mode::Classic;
    let texts = NetTexts::of(if guard { nets } else { &[] });
    let table = NatTable {
        version: env!("CARGO_PKG_VERSION"),
        family_word: match spec.family() {
            Family::V4 => "",
            Family::V6 => "IPv6 ",
        },
        anchor: spec.anchor(),
        loopback: match spec.family() {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        },
        bridge: spec.bridge().as_str(),
        docker: spec.docker(),
        guard,
        owner: spec.mode() == Mode::Owner,
        random_fully: spec.random_fully(),
        classic_dest: classic_dest_of(spec, nets),
        exclusion: exclusion(spec),
        mark_return: mark_return(spec),
        bit: spec.masquerade_mark().bit(),
        broad: broad(spec),
        egress: egress(spec),
        exclusions: if guard {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RawConfig, node_spec};

    /// The rule lists verify uses are exactly the rules the template prints.
    #[test]
    fn rule_lists_match_the_template() {
        for mode in ["guard", "classic", "owner"] {
            for random_fully in [false, true] {
                for docker in [false, true] {
                    let raw = RawConfig {
                        cluster_cidr: Some("172.7.0.0/16".into()),
                        pod_subnet: Some("172.7.21.0/24".into()),
                        cluster_cidr_v6: Some("fd00:7::/48".into()),
                        pod_subnet_v6: Some("fd00:7:0:21::/64".into()),
                        mode: Some(mode.into()),
                        random_fully: Some(random_fully),
                        docker: Some(docker),
                        ..RawConfig::default()
                    };
                    let node = node_spec("t", &raw, &RawConfig::default()).unwrap();
                    assert_eq!(node.specs().len(), 2);
                    for spec in node.specs() {
                        let text = nat_table(spec);
                        let lines = |prefix: &str| -> Vec<String> {
                            text.lines()
                                .filter(|l| l.starts_with(prefix))
                                .map(str::to_owned)
                                .collect()
                        };
                        assert_eq!(postrouting(spec), lines("-A POSTROUTING "), "{mode}");
                        assert_eq!(own_chain(spec), lines("-A PODSNAT-POSTROUTING "), "{mode}");
                    }
                }
            }
        }
    }
}

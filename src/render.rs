//! `NodeSpec` in, nat table text out. Pure: no I/O, no clock, so the same
//! spec always gives the same bytes and golden files stay stable.

use askama::Template;
use ipnet::IpNet;

use crate::config::{Family, Mode, Node, NodeSpec};

/// podsnat's own chain, which guard mode fills with exclusions.
pub const OWN_CHAIN: &str = "PODSNAT-POSTROUTING";

/// The comment on owner mode's egress rule: it makes the rule differ from
/// docker's broad rule, byte for byte, so a docker start that deletes its
/// own rule can never delete this one.
pub const EGRESS_COMMENT: &str = "podsnat egress";

/// One rule of PODSNAT-POSTROUTING and the reason it exists.
/// One exclusion as the templates print it: its rule (the nat table's or
/// the anchor's, by `R`) and why it exists. The network's text is made once
/// and printed into both, straight into the output: 10,000 exclusions cost
/// one short string each.
struct Exclusion<'t, R> {
    kind: R,
    net: &'t str,
    why: Why,
}

impl<R: RuleText> Exclusion<'_, R> {
    fn rule(&self) -> RuleLine<'_, '_, R> {
        RuleLine(self)
    }

    fn why(&self) -> WhyLine<'_, '_, R> {
        WhyLine(self)
    }
}

/// The text of every network of a list, in one string: 10,000 networks
/// cost one allocation, not 10,000.
struct NetTexts {
    all: String,
    ends: Vec<usize>,
}

impl NetTexts {
    fn of(nets: &[IpNet]) -> NetTexts {
        use std::fmt::Write;
        let mut all = String::with_capacity(nets.len() * 16);
        let mut ends = Vec::with_capacity(nets.len());
        for net in nets {
            // Writing into a String cannot fail.
            let _ = write!(all, "{net}");
            ends.push(all.len());
        }
        NetTexts { all, ends }
    }

    /// The text of the `i`th network.
    fn get(&self, i: usize) -> &str {
        let start = i
            .checked_sub(1)
            .and_then(|j| self.ends.get(j))
            .copied()
            .unwrap_or(0);
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.all.get(start..end).unwrap_or_default()
    }
}

/// How a rule reads, given its network's text.
trait RuleText {
    fn write(&self, f: &mut std::fmt::Formatter<'_>, net: &str) -> std::fmt::Result;
}

/// An exclusion's rule, printed.
struct RuleLine<'a, 't, R>(&'a Exclusion<'t, R>);

impl<R: RuleText> std::fmt::Display for RuleLine<'_, '_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.kind.write(f, self.0.net)
    }
}

/// An exclusion's reason, printed.
struct WhyLine<'a, 't, R>(&'a Exclusion<'t, R>);

impl<R> std::fmt::Display for WhyLine<'_, '_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0.why {
            Why::One(label) => write!(f, "{label} {}", self.0.net),
            Why::Many(text) => f.write_str(text),
        }
    }
}

/// Why an exclusion exists: the one setting it is, or the several it
/// aggregates (rare, so that one is a string).
enum Why {
    One(&'static str),
    Many(String),
}

/// PODSNAT-POSTROUTING's rule for one exclusion.
#[derive(Clone, Copy)]
struct AcceptRule;

impl RuleText for AcceptRule {
    fn write(&self, f: &mut std::fmt::Formatter<'_>, net: &str) -> std::fmt::Result {
        write!(f, "-A {OWN_CHAIN} -d {net} -j ACCEPT")
    }
}

/// The anchor's rule for one exclusion.
#[derive(Clone, Copy)]
struct AnchorRule<'a> {
    spec: &'a NodeSpec,
}

impl RuleText for AnchorRule<'_> {
    fn write(&self, f: &mut std::fmt::Formatter<'_>, net: &str) -> std::fmt::Result {
        let ip = nft_family(self.spec.family());
        let to = match self.spec.family() {
            Family::V4 => "to ip saddr",
            Family::V6 => "to ip6 saddr",
        };
        write!(
            f,
            "oifname != \"{}\" {ip} saddr {} {ip} daddr {net} snat {to}",
            self.spec.bridge(),
            self.spec.pod_subnet(),
        )
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
    let net = net.to_string();
    let e = Exclusion {
        kind: AcceptRule,
        net: &net,
        why: Why::One(""),
    };
    e.rule().to_string()
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

/// The name of podsnat's nftables tables (`table ip podsnat`, `table ip6
/// podsnat`) and of their one chain.
pub const ANCHOR_TABLE: &str = "podsnat";
pub const ANCHOR_CHAIN: &str = "postrouting";

/// The nftables family of a table: `ip` or `ip6`.
pub fn nft_family(family: Family) -> &'static str {
    match family {
        Family::V4 => "ip",
        Family::V6 => "ip6",
    }
}

/// One anchor rule: identity SNAT of pod traffic to `net` that leaves
/// through any interface but the bridge, exactly as `nft list ruleset`
/// prints it.
pub fn anchor_rule(spec: &NodeSpec, net: &IpNet) -> String {
    let net = net.to_string();
    let e = Exclusion {
        kind: AnchorRule { spec },
        net: &net,
        why: Why::One(""),
    };
    e.rule().to_string()
}

struct AnchorTable<'a> {
    family: &'static str,
    bridge: String,
    rules: Vec<Exclusion<'a, AnchorRule<'a>>>,
}

#[derive(Template)]
#[template(path = "anchor.nft", escape = "none")]
struct Anchor<'a> {
    version: &'static str,
    bit: u8,
    /// The mark as nft prints it: `0x00004000`.
    mark: String,
    tables: Vec<AnchorTable<'a>>,
}

/// Renders podsnat's nftables anchor: one table per family the node runs,
/// in one file that `nft -f` loads as one transaction. Pure.
pub fn anchor(node: &Node) -> String {
    let mark = node
        .specs()
        .first()
        .map(|s| s.masquerade_mark())
        .unwrap_or_default();
    let texts: Vec<NetTexts> = node
        .specs()
        .iter()
        .map(|spec| NetTexts::of(spec.exclusions()))
        .collect();
    let tables = node
        .specs()
        .iter()
        .zip(&texts)
        .map(|(spec, texts)| AnchorTable {
            family: nft_family(spec.family()),
            bridge: spec.bridge().to_string(),
            rules: explain(spec, spec.exclusions(), texts, AnchorRule { spec }),
        })
        .collect();
    Anchor {
        version: env!("CARGO_PKG_VERSION"),
        bit: mark.bit(),
        mark: format!("0x{:08x}", mark.value()),
        tables,
    }
    .to_string()
}

/// The number of rules in rendered anchor text: the lines of a chain
/// that are neither comments nor its `type` line.
pub fn anchor_rule_count(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("\t\t") && !l.trim_start().starts_with(['#']))
        .filter(|l| !l.trim_start().starts_with("type "))
        .count()
}

/// Says, for each aggregated network, which configured CIDRs it stands for,
/// beside the rule `rule` makes for it (the nat table's or the anchor's).
/// `nets` is sorted and disjoint and every input lies in exactly one of them,
/// so one sweep over the sorted inputs assigns them all.
fn explain<'t, R: Copy>(
    spec: &NodeSpec,
    nets: &[IpNet],
    texts: &'t NetTexts,
    kind: R,
) -> Vec<Exclusion<'t, R>> {
    const SHOWN: usize = 4;
    let mut inputs: Vec<(IpNet, &'static str)> =
        std::iter::once((spec.cluster_cidr(), "cluster_cidr"))
            .chain(spec.no_masquerade().iter().map(|n| (*n, "no_masquerade")))
            .collect();
    inputs.sort();
    inputs.dedup();
    let mut rest = inputs.as_slice();
    nets.iter()
        .enumerate()
        .map(|(i, &net)| {
            let n = rest.iter().take_while(|(i, _)| net.contains(i)).count();
            let (mine, after) = rest.split_at(n);
            rest = after;
            let why = match mine {
                [(only, label)] if *only == net => Why::One(label),
                _ => {
                    let mut parts: Vec<String> = mine
                        .iter()
                        .take(SHOWN)
                        .map(|(i, label)| format!("{label} {i}"))
                        .collect();
                    if mine.len() > SHOWN {
                        parts.push(format!("and {} more", mine.len() - SHOWN));
                    }
                    Why::Many(format!("{net} aggregates {}", parts.join(", ")))
                }
            };
            Exclusion {
                kind,
                net: texts.get(i),
                why,
            }
        })
        .collect()
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

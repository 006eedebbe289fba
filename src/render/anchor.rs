//! podsnat's nftables anchor: one table per family the node runs, with one
//! chain at srcnat - 1 (`templates/anchor.nft`). Pure.

use askama::Template;

use super::explain::{Exclusion, NetTexts, RuleText, explain};
use crate::config::{Family, Node, NodeSpec};

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

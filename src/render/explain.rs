//! How an exclusion reads in a rendered file: its rule and, beside it,
//! the configured networks it stands for. The rule's text comes from a
//! [`RuleText`] (the nat table's or the anchor's); the network's text is
//! made once and printed into both.

use ipnet::IpNet;

use crate::config::NodeSpec;

/// One exclusion as the templates print it: its rule (the nat table's or
/// the anchor's, by `R`) and why it exists. The network's text is made once
/// and printed into both, straight into the output: 10,000 exclusions cost
/// one short string each.
pub(super) struct Exclusion<'t, R> {
    pub(super) kind: R,
    pub(super) net: &'t str,
    pub(super) why: Why,
}

impl<R: RuleText> Exclusion<'_, R> {
    pub(super) fn rule(&self) -> RuleLine<'_, '_, R> {
        RuleLine(self)
    }

    pub(super) fn why(&self) -> WhyLine<'_, '_, R> {
        WhyLine(self)
    }
}

/// The text of every network of a list, in one string: 10,000 networks
/// cost one allocation, not 10,000.
pub(super) struct NetTexts {
    all: String,
    ends: Vec<usize>,
}

impl NetTexts {
    pub(super) fn of(nets: &[IpNet]) -> NetTexts {
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

/// One network's rule as `kind` writes it, on its own (for `verify`, which
/// looks for podsnat's rules in a live table).
pub(super) fn rule_for<R: RuleText>(kind: R, net: &IpNet) -> String {
    let net = net.to_string();
    let e = Exclusion {
        kind,
        net: &net,
        why: Why::One(""),
    };
    e.rule().to_string()
}

/// How a rule reads, given its network's text.
pub(super) trait RuleText {
    fn write(&self, f: &mut std::fmt::Formatter<'_>, net: &str) -> std::fmt::Result;
}

/// An exclusion's rule, printed.
pub(super) struct RuleLine<'a, 't, R>(&'a Exclusion<'t, R>);

impl<R: RuleText> std::fmt::Display for RuleLine<'_, '_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.kind.write(f, self.0.net)
    }
}

/// An exclusion's reason, printed.
pub(super) struct WhyLine<'a, 't, R>(&'a Exclusion<'t, R>);

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
pub(super) enum Why {
    One(&'static str),
    Many(String),
}

/// Says, for each aggregated network, which configured CIDRs it stands for,
/// beside the rule `rule` makes for it (the nat table's or the anchor's).
/// `nets` is sorted and disjoint and every input lies in exactly one of them,
/// so one sweep over the sorted inputs assigns them all.
pub(super) fn explain<'t, R: Copy>(
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

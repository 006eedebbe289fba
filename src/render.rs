//! `NodeSpec` in, nat table text out. Pure: no I/O, no clock, so the same
//! spec always gives the same bytes and golden files stay stable.

use askama::Template;
use ipnet::Ipv4Net;

use crate::config::{Mode, NodeSpec};

/// One rule of PODSNAT-POSTROUTING and the reason it exists.
struct Exclusion {
    net: Ipv4Net,
    why: String,
}

#[derive(Template)]
#[template(path = "nat.rules", escape = "none")]
struct NatTable<'a> {
    version: &'static str,
    pod_subnet: Ipv4Net,
    bridge: &'a str,
    docker: bool,
    guard: bool,
    random_fully: bool,
    /// Classic mode's single `! -d` network.
    classic_dest: Ipv4Net,
    exclusions: Vec<Exclusion>,
}

/// Renders the complete `*nat ... COMMIT` section, header comment included.
pub fn nat_table(spec: &NodeSpec) -> String {
    let nets = spec.exclusions();
    let guard = spec.mode() == Mode::Guard;
    let table = NatTable {
        version: env!("CARGO_PKG_VERSION"),
        pod_subnet: spec.pod_subnet(),
        bridge: spec.bridge().as_str(),
        docker: spec.docker(),
        guard,
        random_fully: spec.random_fully(),
        classic_dest: nets.first().copied().unwrap_or(spec.cluster_cidr()),
        exclusions: if guard {
            explain(spec, &nets)
        } else {
            Vec::new()
        },
    };
    let mut out = table.to_string();
    // askama drops the template's final newline; a restore file ends with one.
    out.push('\n');
    out
}

/// The number of rules (`-A` lines) in rendered or saved table text.
pub fn rule_count(table: &str) -> usize {
    table.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Says, for each aggregated network, which configured CIDRs it stands for.
/// `nets` is sorted and disjoint and every input lies in exactly one of them,
/// so one sweep over the sorted inputs assigns them all.
fn explain(spec: &NodeSpec, nets: &[Ipv4Net]) -> Vec<Exclusion> {
    const SHOWN: usize = 4;
    let mut inputs: Vec<(Ipv4Net, &str)> = std::iter::once((spec.cluster_cidr(), "cluster_cidr"))
        .chain(spec.no_masquerade().iter().map(|n| (*n, "no_masquerade")))
        .collect();
    inputs.sort();
    inputs.dedup();
    let mut rest = inputs.as_slice();
    nets.iter()
        .map(|&net| {
            let n = rest.iter().take_while(|(i, _)| net.contains(i)).count();
            let (mine, after) = rest.split_at(n);
            rest = after;
            let why = match mine {
                [(only, label)] if *only == net => format!("{label} {net}"),
                _ => {
                    let mut parts: Vec<String> = mine
                        .iter()
                        .take(SHOWN)
                        .map(|(i, label)| format!("{label} {i}"))
                        .collect();
                    if mine.len() > SHOWN {
                        parts.push(format!("and {} more", mine.len() - SHOWN));
                    }
                    format!("{net} aggregates {}", parts.join(", "))
                }
            };
            Exclusion { net, why }
        })
        .collect()
}

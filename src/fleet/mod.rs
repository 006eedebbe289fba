//! Fleet mode: one inventory holds the cluster-wide settings once and every
//! node's own. `render` writes the golden files for review in pull
//! requests: each node's nat table (`DIR/<node>.iptables.nat`), and each
//! distinct set of units once (`DIR/podsnat.service` and the pin's units,
//! shared by every node whose `[nodes.unit]` does not differ;
//! `DIR/<node>.podsnat.service` ... for one that does). `check` compares them
//! with a fresh render, for users' CI. This file reads and checks the
//! inventory; `files` renders and writes.

mod files;
mod name;
mod unit;

pub use name::NodeName;

pub use files::{Report, check, render_to};
pub use unit::Units;

use unit::RawUnit;

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{self, RawConfig};
use crate::error::{Error, Result};
use crate::family::Family;

config::raw_with_settings! {
    /// The inventory as written: the cluster's networks and settings, the
    /// units, and the nodes.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawInventory {
        cluster_cidr: Option<String>,
        cluster_cidr_v6: Option<String>,
    } then {
        #[serde(default)]
        unit: RawUnit,
        #[serde(default)]
        nodes: Vec<RawNode>,
    }
}

config::raw_with_settings! {
    /// One `[[nodes]]` entry: its name, pod subnets, settings and units.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawNode {
        name: String,
        pod_subnet: Option<String>,
        pod_subnet_v6: Option<String>,
    } then {
        /// This node's own unit settings, on top of the inventory's `[unit]`.
        unit: Option<RawUnit>,
    }
}

/// One node, checked.
#[derive(Debug)]
pub struct Node {
    pub name: NodeName,
    /// Its specs, one per family.
    pub spec: config::Node,
    /// The node's own unit files, where its `[nodes.unit]` makes them
    /// differ from the shared ones; empty for most nodes.
    pub units: Units,
}

/// A checked inventory.
#[derive(Debug)]
pub struct Fleet {
    pub nodes: Vec<Node>,
    /// The units every other node shares: those of a node with the
    /// families the inventory's cluster networks name.
    pub units: Units,
}

/// Reads and checks an inventory: every node's spec, unique names, and no
/// two nodes whose pod subnets overlap.
pub fn load(path: &Path) -> Result<Fleet> {
    let text = config::read_limited(path, 64 * 1024 * 1024)?;
    let origin = path.display().to_string();
    let raw: RawInventory = toml::from_str(&text).map_err(|e| Error::Syntax {
        path: match e.span().and_then(|s| node_at(&text, s.start)) {
            Some(node) => format!("{origin}: node {node}"),
            None => origin.clone(),
        },
        message: config::toml_message(&text, &e),
    })?;
    let cluster = raw.settings_onto(RawConfig {
        cluster_cidr: raw.cluster_cidr.clone(),
        cluster_cidr_v6: raw.cluster_cidr_v6.clone(),
        ..RawConfig::default()
    });
    let shared: Vec<Family> = [
        (Family::V4, cluster.cluster_cidr.is_some()),
        (Family::V6, cluster.cluster_cidr_v6.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, set)| set.then_some(f))
    .collect();
    let anchor = raw.anchor.unwrap_or(true);
    let units = raw.unit.units(&origin, "unit.", &shared, anchor)?;

    let mut nodes: Vec<Node> = Vec::with_capacity(raw.nodes.len());
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, n) in raw.nodes.into_iter().enumerate() {
        let at = format!("{origin}: nodes[{i}]");
        let name =
            NodeName::parse(&n.name).map_err(|p| Error::field(&at, "name", n.name.as_str(), p))?;
        if let Some(first) = seen.insert(n.name.clone(), i) {
            return Err(Error::field(
                &at,
                "name",
                n.name.as_str(),
                format!("is also the name of nodes[{first}]; node names must be unique"),
            ));
        }
        if n.pod_subnet.is_none() && n.pod_subnet_v6.is_none() {
            return Err(Error::field(
                format!("{origin}: node {}", name.as_str()),
                "pod_subnet",
                "",
                "is missing: a node has pod_subnet (IPv4), pod_subnet_v6 (IPv6) or both",
            ));
        }
        if let Some(own) = n.anchor.filter(|own| *own != anchor) {
            return Err(Error::field(
                format!("{origin}: node {}", name.as_str()),
                "anchor",
                own.to_string(),
                "cannot differ per node (every node shares podsnat-anchor.service); set it for the inventory",
            ));
        }
        let node_raw = n.settings_onto(RawConfig {
            pod_subnet: n.pod_subnet.clone(),
            pod_subnet_v6: n.pod_subnet_v6.clone(),
            ..RawConfig::default()
        });
        let node_origin = format!("{origin}: node {}", name.as_str());
        let spec = config::node_spec(&node_origin, &for_node(&cluster, &node_raw), &node_raw)?;
        // A node's own unit files are those its `[nodes.unit]` (or its
        // families) make differ from the shared ones; the rest it shares.
        let families: Vec<Family> = spec.specs().iter().map(|s| s.family()).collect();
        let own = match &n.unit {
            None if families == shared => Vec::new(),
            None => raw
                .unit
                .units(&node_origin, "nodes.unit.", &families, anchor)?
                .into_iter()
                .filter(|u| !units.contains(u))
                .collect(),
            Some(over) => {
                if let Some(pin) = over.pin {
                    return Err(Error::field(
                        &node_origin,
                        "nodes.unit.pin",
                        pin.to_string(),
                        "cannot differ per node (a node picks up the shared pin units); set it in [unit]",
                    ));
                }
                raw.unit
                    .with(over)
                    .units(&node_origin, "nodes.unit.", &families, anchor)?
                    .into_iter()
                    .filter(|u| !units.contains(u))
                    .collect()
            }
        };
        nodes.push(Node {
            name,
            spec,
            units: own,
        });
    }
    check_overlaps(&origin, &nodes)?;
    Ok(Fleet { nodes, units })
}

/// The cluster-wide settings as they apply to one node: a node runs the
/// families it has a pod subnet of, so the other family's cluster network
/// and `no_masquerade` entries are not its (an IPv4-only node in a
/// dual-stack fleet). Its own `no_masquerade`, if any, is taken as given.
fn for_node(cluster: &RawConfig, node: &RawConfig) -> RawConfig {
    let has = |family: Family| match family {
        Family::V4 => node.pod_subnet.is_some(),
        Family::V6 => node.pod_subnet_v6.is_some(),
    };
    RawConfig {
        cluster_cidr: cluster.cluster_cidr.clone().filter(|_| has(Family::V4)),
        cluster_cidr_v6: cluster.cluster_cidr_v6.clone().filter(|_| has(Family::V6)),
        no_masquerade: cluster.no_masquerade.as_ref().map(|list| {
            list.iter()
                .filter(|c| {
                    has(if c.contains(':') {
                        Family::V6
                    } else {
                        Family::V4
                    })
                })
                .cloned()
                .collect()
        }),
        ..cluster.clone()
    }
}

/// The name of the `[[nodes]]` entry that holds byte `at` of the
/// inventory, for messages about a key the parser refused there.
fn node_at(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let start = before.rfind("[[nodes]]")?;
    // The entry runs to the next table header.
    let rest = text.get(start + "[[nodes]]".len()..)?;
    let end = rest.find("\n[").map_or(rest.len(), |i| i + 1);
    rest.get(..end)?.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "name").then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Pod subnets are CIDRs, so two overlap only if one contains the other.
/// Per family, sorted by address, each one is compared with the widest
/// reach so far.
fn check_overlaps(origin: &str, nodes: &[Node]) -> Result<()> {
    for family in Family::ALL {
        let mut order: Vec<(&Node, IpNet)> = nodes
            .iter()
            .filter_map(|n| n.spec.family(family).map(|s| (n, s.pod_subnet())))
            .collect();
        order.sort_by_key(|(_, net)| (net.network(), net.prefix_len()));
        let mut widest: Option<(&Node, IpNet)> = None;
        for (n, net) in order {
            match widest {
                Some((w, wnet)) if wnet.contains(&net.network()) => {
                    return Err(Error::Invalid {
                        origin: origin.to_owned(),
                        message: format!(
                            "nodes {} and {} have overlapping {}pod subnets {wnet} and {net}",
                            w.name.as_str(),
                            n.name.as_str(),
                            if family == Family::V6 { "IPv6 " } else { "" },
                        ),
                    });
                }
                Some((_, wnet)) if net.broadcast() <= wnet.broadcast() => {}
                _ => widest = Some((n, net)),
            }
        }
    }
    Ok(())
}

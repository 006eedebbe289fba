//! Fleet mode: one inventory holds the cluster-wide settings once and every
//! node's own. `render` writes each node's golden files
//! (`DIR/<node>/iptables.nat`, `DIR/<node>/podsnat.service`) for review in
//! pull requests; `check` compares them with a fresh render, for users' CI.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{self, NodeSpec, RawConfig};
use crate::error::{Error, Result};
use crate::unit::{self, UnitSpec};
use crate::{atomic, paths, render, write};

/// The files podsnat keeps per node, and nothing else.
pub const NAT_FILE: &str = "iptables.nat";
pub const UNIT_FILE: &str = "podsnat.service";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    cluster_cidr: Option<String>,
    bridge: Option<String>,
    no_masquerade: Option<Vec<String>>,
    random_fully: Option<bool>,
    docker: Option<bool>,
    mode: Option<String>,
    #[serde(default)]
    unit: RawUnit,
    #[serde(default)]
    nodes: Vec<RawNode>,
}

/// The boot unit's settings, as `install-unit` takes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    after: Option<Vec<String>>,
    before: Option<Vec<String>>,
    file: Option<String>,
    iptables_restore: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    pod_subnet: Option<String>,
    bridge: Option<String>,
    no_masquerade: Option<Vec<String>>,
    random_fully: Option<bool>,
    docker: Option<bool>,
    mode: Option<String>,
}

/// A node's name, safe as a directory name: 1-253 bytes of
/// `[A-Za-z0-9._-]`, not starting with `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() || s.len() > 253 {
            return Err("must have 1 to 253 bytes".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "has the character {c:?}; node names may only use A-Z a-z 0-9 . _ - (they name directories)"
            ));
        }
        if s.starts_with('.') || s.starts_with('-') {
            return Err("starts with '.' or '-'; it names a directory".into());
        }
        Ok(NodeName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One node, checked.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: NodeName,
    pub spec: NodeSpec,
}

/// A checked inventory.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub nodes: Vec<Node>,
    pub unit: UnitSpec,
}

/// Reads and checks an inventory: every node's spec, unique names, and no
/// two nodes whose pod subnets overlap.
pub fn load(path: &Path) -> Result<Fleet> {
    let text = config::read_limited(path, 64 * 1024 * 1024)?;
    let origin = path.display().to_string();
    let raw: RawInventory = toml::from_str(&text).map_err(|e| Error::Syntax {
        path: origin.clone(),
        message: config::toml_message(&text, &e),
    })?;
    let cluster = RawConfig {
        cluster_cidr: raw.cluster_cidr,
        pod_subnet: None,
        bridge: raw.bridge,
        no_masquerade: raw.no_masquerade,
        random_fully: raw.random_fully,
        docker: raw.docker,
        mode: raw.mode,
    };
    let strings = |v: Option<Vec<String>>, default: &[&str]| {
        v.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
    };
    let unit = UnitSpec::parse_from(
        &origin,
        false,
        &strings(raw.unit.after, &unit::DEFAULT_AFTER),
        &strings(raw.unit.before, &unit::DEFAULT_BEFORE),
        raw.unit.file.as_deref().unwrap_or(paths::SYSCONFIG_RULES),
        raw.unit
            .iptables_restore
            .as_deref()
            .unwrap_or(paths::IPTABLES_RESTORE),
    )?;

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
        let node_raw = RawConfig {
            cluster_cidr: None,
            pod_subnet: n.pod_subnet,
            bridge: n.bridge,
            no_masquerade: n.no_masquerade,
            random_fully: n.random_fully,
            docker: n.docker,
            mode: n.mode,
        };
        let spec = config::node_spec(
            &format!("{origin}: node {}", name.as_str()),
            &cluster,
            &node_raw,
        )?;
        nodes.push(Node { name, spec });
    }
    check_overlaps(&origin, &nodes)?;
    Ok(Fleet { nodes, unit })
}

/// Pod subnets are CIDRs, so two overlap only if one contains the other.
/// Sorted by address, each one is compared with the widest reach so far.
fn check_overlaps(origin: &str, nodes: &[Node]) -> Result<()> {
    let mut order: Vec<&Node> = nodes.iter().collect();
    order.sort_by_key(|n| {
        (
            n.spec.pod_subnet().network(),
            n.spec.pod_subnet().prefix_len(),
        )
    });
    let mut widest: Option<&Node> = None;
    for n in order {
        if let Some(w) = widest {
            if w.spec.pod_subnet().contains(&n.spec.pod_subnet().network()) {
                return Err(Error::Invalid {
                    origin: origin.to_owned(),
                    message: format!(
                        "nodes {} and {} have overlapping pod subnets {} and {}",
                        w.name.as_str(),
                        n.name.as_str(),
                        w.spec.pod_subnet(),
                        n.spec.pod_subnet()
                    ),
                });
            }
            if n.spec.pod_subnet().broadcast() > w.spec.pod_subnet().broadcast() {
                widest = Some(n);
            }
        } else {
            widest = Some(n);
        }
    }
    Ok(())
}

/// Every golden file of the fleet, rendered in memory: path relative to
/// the output directory, and content. Pure.
pub fn render_all(fleet: &Fleet) -> Vec<(PathBuf, String)> {
    let unit_text = unit::render(&fleet.unit);
    let mut out = Vec::with_capacity(fleet.nodes.len() * 2);
    for n in &fleet.nodes {
        let dir = PathBuf::from(n.name.as_str());
        out.push((dir.join(NAT_FILE), render::nat_table(&n.spec)));
        out.push((dir.join(UNIT_FILE), unit_text.clone()));
    }
    out
}

/// What `fleet render` or `fleet check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Files that were (or, for check, would be) written.
    pub changed: Vec<PathBuf>,
    pub unchanged: usize,
    /// Node directories in the output that the inventory no longer has.
    pub stale: Vec<PathBuf>,
    /// Stale directories removed with --prune.
    pub pruned: Vec<PathBuf>,
    /// Unified diffs (check only).
    #[serde(skip)]
    pub diffs: String,
}

/// Directories in `out_dir` that are not nodes of `fleet`.
fn stale_dirs(fleet: &Fleet, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let names: BTreeSet<&str> = fleet.nodes.iter().map(|n| n.name.as_str()).collect();
    let Some(entries) =
        atomic::present(fs::read_dir(out_dir)).map_err(|e| Error::io(out_dir, "cannot list", e))?
    else {
        return Ok(Vec::new());
    };
    let mut stale = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && !name.starts_with('.') && !names.contains(name.as_str()) {
            stale.push(e.path());
        }
    }
    stale.sort();
    Ok(stale)
}

/// Writes every node's files that changed (atomically; an unchanged file is
/// not touched), reports stale node directories and, with `prune`, removes
/// those that hold only podsnat's files.
pub fn render_to(fleet: &Fleet, out_dir: &Path, prune: bool) -> Result<Report> {
    let mut report = Report::default();
    // Golden files can be rendered again at any time, so a power loss
    // during a fleet render costs nothing: skip the fsyncs (10,000 of them
    // for 5,000 nodes).
    let opts = write::Options {
        no_fsync: true,
        locked: true,
        ..write::Options::default()
    };
    let unit_text = unit::render(&fleet.unit);
    for n in &fleet.nodes {
        // One lock per node directory covers both of its files.
        let dir = out_dir.join(n.name.as_str());
        let _lock = atomic::lock_and_clean(&dir)?;
        for (file, text) in [
            (NAT_FILE, render::nat_table(&n.spec)),
            (UNIT_FILE, unit_text.clone()),
        ] {
            let path = dir.join(file);
            let outcome = write::update(
                &path,
                opts,
                atomic::UNIT_FILE_MODE,
                |_| Ok(text),
                |_| Ok(()),
            )?;
            if outcome.changed {
                report.changed.push(path);
            } else {
                report.unchanged += 1;
            }
        }
    }
    report.stale = stale_dirs(fleet, out_dir)?;
    if prune {
        for dir in &report.stale {
            let others: Vec<String> = fs::read_dir(dir)
                .map_err(|e| Error::io(dir, "cannot list", e))?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != NAT_FILE && n != UNIT_FILE)
                .collect();
            if !others.is_empty() {
                return Err(Error::refused(
                    dir,
                    "refusing to prune",
                    format!(
                        "it holds files podsnat did not write: {}",
                        others.join(", ")
                    ),
                ));
            }
            for f in [NAT_FILE, UNIT_FILE] {
                atomic::remove_if_present(&dir.join(f), "cannot remove")?;
            }
            fs::remove_dir(dir).map_err(|e| Error::io(dir, "cannot remove", e))?;
            report.pruned.push(dir.clone());
        }
    }
    Ok(report)
}

/// Compares the committed golden files with a fresh render. Changes nothing.
pub fn check(fleet: &Fleet, out_dir: &Path) -> Result<Report> {
    let mut report = Report::default();
    for (rel, text) in render_all(fleet) {
        let path = out_dir.join(&rel);
        let old = match atomic::read(&path)? {
            Some(e) => Some(String::from_utf8(e.bytes).map_err(|err| Error::NotUtf8 {
                path: path.clone(),
                offset: err.utf8_error().valid_up_to(),
            })?),
            None => None,
        };
        if old.as_deref() == Some(text.as_str()) {
            report.unchanged += 1;
        } else {
            report.diffs += &write::unified_diff(&path, old.as_deref(), &text);
            report.changed.push(path);
        }
    }
    report.stale = stale_dirs(fleet, out_dir)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["hdss7-21", "node.example.com", "n_1"] {
            assert!(NodeName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "../x", "nöde"] {
            assert!(NodeName::parse(bad).is_err(), "{bad:?}");
        }
    }
}

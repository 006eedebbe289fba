//! The fleet's golden files: rendered in memory (pure), written under one
//! lock for the whole output directory, or compared with what is there.
//!
//! Layout, flat so that a reviewer sees the node in every path and a first
//! render creates no directories: `<node>.iptables.nat` per node (and
//! `<node>.ip6tables.nat` for one with an IPv6 pod network); the units
//! and its nftables anchor `<node>.podsnat.nft`; the units every node
//! shares once (`podsnat.service`, `podsnat-anchor.service`,
//! `podsnat-pin.service`, `podsnat-pin.timer`); `<node>.podsnat.service` where a node's
//! `[nodes.unit]` makes that unit differ. A node picks up, for each unit,
//! `<node>.<unit>` where it exists and `<unit>` otherwise.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Fleet, Units};
use crate::error::{Error, Result};
use crate::family::Family;
use crate::unit::{self, Kind};
use crate::{atomic, render, write};

/// The units a fleet renders, shared or as `<node>.` + the name (none of
/// verify's: its config path is the node's).
const RENDERED: [Kind; 4] = [unit::BOOT, unit::ANCHOR, unit::PIN, unit::PIN_TIMER];

/// A node's nat table is `<node>` + this.
pub const NAT_SUFFIX: &str = ".iptables.nat";
/// And its IPv6 nat table, on a node with an IPv6 pod network.
pub const NAT6_SUFFIX: &str = ".ip6tables.nat";

/// And its nftables anchor, unless the inventory turns the anchor off.
pub const ANCHOR_SUFFIX: &str = ".podsnat.nft";

/// Every golden file of the fleet, rendered in memory: name in the output
/// directory, and content. Pure.
pub fn render_all(fleet: &Fleet) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(fleet.nodes.len() + fleet.units.len());
    let units = |prefix: &str, units: &Units, out: &mut Vec<(String, String)>| {
        for u in units {
            out.push((format!("{prefix}{}", u.name), u.text.clone()));
        }
    };
    units("", &fleet.units, &mut out);
    for n in &fleet.nodes {
        for spec in n.spec.specs() {
            let suffix = match spec.family() {
                Family::V4 => NAT_SUFFIX,
                Family::V6 => NAT6_SUFFIX,
            };
            out.push((
                format!("{}{suffix}", n.name.as_str()),
                render::nat_table(spec),
            ));
        }
        if n.spec.anchor() {
            out.push((
                format!("{}{ANCHOR_SUFFIX}", n.name.as_str()),
                render::anchor(&n.spec),
            ));
        }
        units(&format!("{}.", n.name.as_str()), &n.units, &mut out);
    }
    out
}

/// What `fleet render` or `fleet check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Files that were (or, for check, would be) written.
    pub changed: Vec<PathBuf>,
    pub unchanged: usize,
    /// podsnat's files in the output that the inventory no longer makes.
    pub stale: Vec<PathBuf>,
    /// Stale files removed with --prune.
    pub pruned: Vec<PathBuf>,
    /// Unified diffs (check only).
    #[serde(skip)]
    pub diffs: String,
}

/// Whether podsnat writes files by this name: a node's nat table, a shared
/// unit, or a node's own unit. Nothing else is ever reported or removed.
fn podsnats(name: &str) -> bool {
    name.ends_with(NAT_SUFFIX)
        || name.ends_with(NAT6_SUFFIX)
        || name.ends_with(ANCHOR_SUFFIX)
        || RENDERED
            .iter()
            .any(|u| name == u.name || name.strip_suffix(u.name).is_some_and(|p| p.ends_with('.')))
}

/// podsnat's files in `out_dir` that `wanted` does not hold.
fn stale_files(wanted: &BTreeSet<&str>, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(entries) =
        atomic::present(fs::read_dir(out_dir)).map_err(|e| Error::io(out_dir, "cannot list", e))?
    else {
        return Ok(Vec::new());
    };
    let mut stale = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_file = e.file_type().is_ok_and(|t| t.is_file());
        if is_file && podsnats(&name) && !wanted.contains(name.as_str()) {
            stale.push(e.path());
        }
    }
    stale.sort();
    Ok(stale)
}

/// Writes every file that changed (atomically; an unchanged file is not
/// touched), reports podsnat's files the inventory no longer makes and,
/// with `prune`, removes them.
pub fn render_to(fleet: &Fleet, out_dir: &Path, prune: bool) -> Result<Report> {
    let mut report = Report::default();
    // One lock for the whole directory, taken once. Golden files can be
    // rendered again at any time, so a power loss costs nothing: no fsync.
    let _lock = atomic::lock_and_clean(out_dir)?;
    let opts = write::Options {
        no_fsync: true,
        locked: true,
        ..write::Options::default()
    };
    let files = render_all(fleet);
    for (name, text) in &files {
        let path = out_dir.join(name);
        // A new file is created in place, as tar does (most files of a first
        // render); an existing one is compared and replaced atomically.
        let changed = atomic::create_new(&path, text.as_bytes(), atomic::UNIT_FILE_MODE)?
            || write::update(
                &path,
                opts,
                atomic::UNIT_FILE_MODE,
                |_| Ok(text.clone()),
                |_| Ok(()),
            )?
            .changed;
        if changed {
            report.changed.push(path);
        } else {
            report.unchanged += 1;
        }
    }
    let wanted: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    report.stale = stale_files(&wanted, out_dir)?;
    if prune {
        for path in &report.stale {
            atomic::remove_if_present(path, "cannot remove")?;
            report.pruned.push(path.clone());
        }
    }
    Ok(report)
}

/// Compares the committed golden files with a fresh render. Changes nothing.
pub fn check(fleet: &Fleet, out_dir: &Path) -> Result<Report> {
    let mut report = Report::default();
    let files = render_all(fleet);
    for (name, text) in &files {
        let path = out_dir.join(name);
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
            report.diffs += &write::unified_diff(&path, old.as_deref(), text);
            report.changed.push(path);
        }
    }
    let wanted: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    report.stale = stale_files(&wanted, out_dir)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_podsnats_names_are_touched() {
        for ours in [
            "n1.iptables.nat",
            "n1.ip6tables.nat",
            "podsnat.service",
            "podsnat-pin.timer",
            "n1.podsnat.service",
            "node.example.com.podsnat-pin.service",
        ] {
            assert!(podsnats(ours), "{ours}");
        }
        for theirs in [
            "README.md",
            "inventory.toml",
            "xpodsnat.service",
            "n1.nat",
            ".podsnat.lock",
        ] {
            assert!(!podsnats(theirs), "{theirs}");
        }
    }
}

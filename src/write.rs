//! `podsnat write`: put the rendered nat table into the rules file, or say
//! what would change. The decision (splice, compare, diff) is pure; the
//! edges are `atomic` (files) and `system` (iptables-restore --test).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::error::{Error, Result};
use crate::rules_file;

/// How to write.
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    /// Report only; never write.
    pub check: bool,
    /// Compute a unified diff of the file.
    pub diff: bool,
    /// The iptables-restore to run `--test` with, or `None` to skip the test.
    pub test_with: Option<String>,
}

/// What happened (or, with `check`, would happen).
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub path: PathBuf,
    pub changed: bool,
    /// sha256 of the whole file as it is (or would be) after the write.
    pub sha256: String,
    /// Rules (`-A` lines) in podsnat's nat table.
    pub rules: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// Splices `nat` into the file at `opts.path` and writes it if it changed.
pub fn write_nat(nat: &str, opts: &Options) -> Result<Outcome> {
    let path = &opts.path;
    let existing = atomic::read(path)?;
    let old = match &existing {
        Some(e) => std::str::from_utf8(&e.bytes).map_err(|err| Error::NotUtf8 {
            path: path.clone(),
            offset: err.valid_up_to(),
        })?,
        None => "",
    };
    let new = rules_file::splice(old, nat).map_err(|e| Error::Syntax {
        path: path.display().to_string(),
        message: format!("{e}; fix or remove the file, nothing was changed"),
    })?;
    let changed = existing.is_none() || old != new;
    if changed {
        if let Some(restore) = &opts.test_with {
            crate::system::restore_test(restore, &new)?.map_err(|r| Error::Rejected {
                path: path.clone(),
                command: r.command,
                stderr: r.stderr,
            })?;
        }
        if !opts.check {
            atomic::write(path, new.as_bytes(), existing.as_ref())?;
        }
    }
    Ok(Outcome {
        path: path.clone(),
        changed,
        sha256: sha256_hex(new.as_bytes()),
        rules: crate::render::rule_count(nat),
        diff: opts
            .diff
            .then(|| unified_diff(path, existing.is_some().then_some(old), &new)),
    })
}

/// A unified diff from the old file (or nothing) to the new content.
pub fn unified_diff(path: &Path, old: Option<&str>, new: &str) -> String {
    let name = path.display().to_string();
    let old_name = if old.is_some() {
        name.as_str()
    } else {
        "/dev/null"
    };
    similar::TextDiff::from_lines(old.unwrap_or(""), new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, &name)
        .to_string()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

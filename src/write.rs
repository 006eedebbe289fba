//! Updating a file the way config management expects: compute the new
//! content, compare, diff, test, and write only when it changed. The
//! decision is pure; the edges are `atomic` (files) and `system` (programs).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::atomic;
use crate::error::{Error, Result};
use crate::rules_file;

/// How to update.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Report only; never write.
    pub check: bool,
    /// Compute a unified diff of the file.
    pub diff: bool,
    /// Skip fsync (see `atomic::write`): only for re-renderable files.
    pub no_fsync: bool,
    /// The caller already holds the directory's lock
    /// (`atomic::lock_and_clean`), e.g. for several files in one directory.
    pub locked: bool,
}

/// What happened to one file (or, with `check`, would happen).
#[derive(Debug, Clone, Serialize)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub changed: bool,
    /// sha256 of the whole file as it is (or would be) after the update.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// `podsnat write`'s report: the file plus the number of nat rules.
#[derive(Debug, Clone, Serialize)]
pub struct NatOutcome {
    #[serde(flatten)]
    pub file: FileOutcome,
    /// Rules (`-A` lines) in podsnat's nat table.
    pub rules: usize,
}

/// Updates `path` to `make(old content)`. `test` sees the new content before
/// anything is written and can veto it. A new file gets `new_mode`.
pub fn update(
    path: &Path,
    opts: Options,
    new_mode: u32,
    make: impl FnOnce(&str) -> Result<String>,
    test: impl FnOnce(&str) -> Result<()>,
) -> Result<FileOutcome> {
    // Every run that may write first takes the directory's lock and clears
    // temp files of killed runs, changed content or not; --check touches
    // nothing.
    let _lock = if opts.check || opts.locked {
        None
    } else {
        Some(atomic::lock_and_clean(atomic::parent(path))?)
    };
    let existing = atomic::read(path)?;
    let old = match &existing {
        Some(e) => std::str::from_utf8(&e.bytes).map_err(|err| Error::NotUtf8 {
            path: path.to_owned(),
            offset: err.valid_up_to(),
        })?,
        None => "",
    };
    let new = make(old)?;
    let changed = existing.is_none() || old != new;
    if changed {
        test(&new)?;
        if !opts.check {
            atomic::write(
                path,
                new.as_bytes(),
                existing.as_ref(),
                new_mode,
                !opts.no_fsync,
            )?;
        }
    }
    Ok(FileOutcome {
        path: path.to_owned(),
        changed,
        sha256: sha256_hex(new.as_bytes()),
        diff: opts
            .diff
            .then(|| unified_diff(path, existing.is_some().then_some(old), &new)),
    })
}

/// Splices `nat` into the rules file at `path` and writes it if it changed.
/// `test_with` names the iptables-restore that must accept the whole new
/// file first (`None` skips the test).
pub fn write_nat(
    nat: &str,
    path: &Path,
    opts: Options,
    test_with: Option<&str>,
) -> Result<NatOutcome> {
    let file = update(
        path,
        opts,
        atomic::NEW_FILE_MODE,
        |old| {
            rules_file::splice(old, nat).map_err(|e| Error::Syntax {
                path: path.display().to_string(),
                message: format!("{e}; fix or remove the file, nothing was changed"),
            })
        },
        |new| match test_with {
            None => Ok(()),
            Some(restore) => {
                crate::system::restore_test(restore, new)?.map_err(|r| Error::Rejected {
                    path: path.to_owned(),
                    command: r.command,
                    stderr: r.stderr,
                })
            }
        },
    )?;
    Ok(NatOutcome {
        file,
        rules: crate::render::rule_count(nat),
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

//! Updating a file the way config management expects: compute the new
//! content, compare, diff, test, and write only when it changed. Comparing
//! and diffing are pure; the test runs `iptables-restore --test` (through
//! `system`, the edge that runs programs) and the write goes through
//! `atomic`, the edge that writes files.

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

/// `podsnat write`'s report on one file: the file plus its rules (a nat
/// table's `-A` lines, or the anchor's rule lines).
#[derive(Debug, Clone, Serialize)]
pub struct NodeFileOutcome {
    #[serde(flatten)]
    pub file: FileOutcome,
    /// Rules in the file's content: `-A` lines of podsnat's nat table, or
    /// rule lines of the anchor.
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
    let planned = Planned::new(path, new_mode, make, test)?;
    if !opts.check {
        planned.commit(!opts.no_fsync)?;
    }
    Ok(planned.outcome(opts))
}

/// A file's update, decided and tested but not yet written.
struct Planned {
    path: PathBuf,
    existing: Option<atomic::Existing>,
    new: String,
    changed: bool,
    new_mode: u32,
}

impl Planned {
    fn new(
        path: &Path,
        new_mode: u32,
        make: impl FnOnce(&str) -> Result<String>,
        test: impl FnOnce(&str) -> Result<()>,
    ) -> Result<Planned> {
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
        }
        Ok(Planned {
            path: path.to_owned(),
            existing,
            new,
            changed,
            new_mode,
        })
    }

    fn old(&self) -> Option<&str> {
        self.existing
            .as_ref()
            .map(|e| std::str::from_utf8(&e.bytes).unwrap_or_default())
    }

    /// Writes the new content, if it changed.
    fn commit(&self, fsync: bool) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        atomic::write(
            &self.path,
            self.new.as_bytes(),
            self.existing.as_ref(),
            self.new_mode,
            fsync,
        )
    }

    /// Puts the old content back (or removes a file that did not exist):
    /// the undo of a committed update whose sibling failed.
    fn undo(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        match &self.existing {
            Some(e) => atomic::write(&self.path, &e.bytes, Some(e), self.new_mode, true),
            None => atomic::remove_if_present(&self.path, "cannot remove"),
        }
    }

    fn outcome(&self, opts: Options) -> FileOutcome {
        FileOutcome {
            path: self.path.clone(),
            changed: self.changed,
            sha256: sha256_hex(self.new.as_bytes()),
            diff: opts
                .diff
                .then(|| unified_diff(&self.path, self.old(), &self.new)),
        }
    }
}

/// What goes into a file, and which program must accept it first.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// One family's nat table, spliced into the rules file's other tables;
    /// the iptables-restore (or ip6tables-restore) runs `--test` on the
    /// whole new file.
    Nat(&'a str),
    /// podsnat's nftables anchor: the whole file; nft runs `-c -f` on it.
    Anchor(&'a str),
}

/// One file `podsnat write` keeps.
pub struct NodeFile<'a> {
    pub content: Content<'a>,
    pub path: &'a Path,
    /// The program that must accept the whole new file first (`--test`,
    /// `nft -c`); `None` skips the test.
    pub test_with: Option<&'a str>,
}

impl NodeFile<'_> {
    /// Its rules: `-A` lines of a nat table, rule lines of the anchor.
    fn rules(&self) -> usize {
        match self.content {
            Content::Nat(nat) => crate::render::rule_count(nat),
            Content::Anchor(text) => crate::render::anchor_rule_count(text),
        }
    }
}

/// Splices each nat table into its rules file (and writes the anchor
/// file) and writes the files that changed, all or nothing: every file is
/// read, spliced and tested before the first is written, so a table that
/// fails its test (or a malformed file) changes no file. Should a later
/// rename fail after an earlier one landed, the earlier file is put back
/// (and if that fails too, the error names both).
pub fn write_node_files(files: &[NodeFile<'_>], opts: Options) -> Result<Vec<NodeFileOutcome>> {
    let mut dirs: Vec<&Path> = files.iter().map(|f| atomic::parent(f.path)).collect();
    dirs.sort();
    dirs.dedup();
    // Locks in path order, so two runs never wait on each other crosswise.
    let _locks = if opts.check || opts.locked {
        Vec::new()
    } else {
        dirs.into_iter()
            .map(atomic::lock_and_clean)
            .collect::<Result<Vec<_>>>()?
    };
    let planned = files
        .iter()
        .map(|f| plan_file(f))
        .collect::<Result<Vec<_>>>()?;
    if !opts.check {
        all_or_undo(&planned, |p| p.commit(!opts.no_fsync), Planned::undo)?;
    }
    Ok(planned
        .iter()
        .zip(files)
        .map(|(p, f)| NodeFileOutcome {
            file: p.outcome(opts),
            rules: f.rules(),
        })
        .collect())
}

/// Commits each item in order. When one fails, every item committed before
/// it is undone (each one tried, whatever the others did) and the failure
/// is returned; an undo that fails too is returned beside it.
fn all_or_undo<T>(
    items: &[T],
    commit: impl Fn(&T) -> Result<()>,
    undo: impl Fn(&T) -> Result<()>,
) -> Result<()> {
    for (i, item) in items.iter().enumerate() {
        if let Err(first) = commit(item) {
            let undo: Vec<Error> = items.iter().take(i).filter_map(|d| undo(d).err()).collect();
            return Err(if undo.is_empty() {
                first
            } else {
                Error::RolledBack {
                    first: Box::new(first),
                    undo,
                }
            });
        }
    }
    Ok(())
}

fn plan_file(f: &NodeFile<'_>) -> Result<Planned> {
    let path = f.path;
    Planned::new(
        path,
        atomic::NEW_FILE_MODE,
        |old| match f.content {
            Content::Nat(nat) => {
                rules_file::splice(old, nat).map_err(|source| Error::NotRulesFile {
                    path: path.to_owned(),
                    source,
                })
            }
            Content::Anchor(text) => Ok(text.to_owned()),
        },
        |new| {
            let Some(program) = f.test_with else {
                return Ok(());
            };
            let verdict = match f.content {
                Content::Nat(_) => crate::system::restore_test(program, new)?,
                Content::Anchor(_) => crate::system::nft_check(program, new)?,
            };
            verdict.map_err(|r| Error::Rejected {
                path: path.to_owned(),
                command: r.command,
                stderr: r.stderr,
            })
        },
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn failed(what: &str) -> Error {
        Error::Usage(format!("{what} failed"))
    }

    /// The third commit fails; undoing the first fails too, the second's
    /// undo still runs, and the error names the commit's failure and the
    /// undo's.
    #[test]
    fn a_failed_rollback_reports_both_errors_and_tries_every_undo() {
        let undone = RefCell::new(Vec::new());
        let e = all_or_undo(
            &[1, 2, 3, 4],
            |&n| {
                if n == 3 {
                    Err(failed("commit 3"))
                } else {
                    Ok(())
                }
            },
            |&n| {
                undone.borrow_mut().push(n);
                if n == 1 {
                    Err(failed("undo 1"))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert_eq!(*undone.borrow(), [1, 2]);
        assert_eq!(
            e.to_string(),
            "an update stopped part way, and putting back the files written before it failed: undo 1 failed; the node now holds old and new files"
        );
        let first = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(first.as_deref(), Some("commit 3 failed"));
    }

    /// A rollback that works returns the commit's own error, unwrapped.
    #[test]
    fn a_clean_rollback_returns_the_first_error() {
        let e = all_or_undo(
            &[1, 2],
            |&n| {
                if n == 2 {
                    Err(failed("commit 2"))
                } else {
                    Ok(())
                }
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::Usage(ref m) if m == "commit 2 failed"),
            "{e}"
        );
    }
}

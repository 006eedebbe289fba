//! A command the tests ran, with what its failure must show, as ripgrep's
//! tests/util.rs `TestCommand` does: the working directory and what it
//! holds, the command line, the exit, stdout and stderr. An assertion that
//! fails on a `Ran` prints all of it, so a failed case in CI explains
//! itself without a rerun.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Ran {
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Runs `program args` in `dir`; output that is not UTF-8 is shown
    /// lossily (and so fails any comparison with a snapshot).
    pub fn new(program: &Path, args: &[String], dir: &Path) -> Ran {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        Ran {
            dir: dir.to_owned(),
            args: args.to_vec(),
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything a reader of a failure needs.
    pub fn dump(&self) -> String {
        let mut d = String::new();
        let _ = writeln!(d, "\n--- working directory: {}", self.dir.display());
        for (path, len) in listing(&self.dir) {
            let _ = writeln!(d, "  {path} ({len} bytes)");
        }
        let _ = writeln!(d, "--- command: podsnat {}", self.args.join(" "));
        let _ = writeln!(d, "--- exit: {:?}", self.code);
        let _ = writeln!(d, "--- stdout\n{}", self.stdout);
        let _ = writeln!(d, "--- stderr\n{}", self.stderr);
        d
    }

    /// Panics with the dump unless it exited with `code`.
    pub fn expect_code(&self, code: i32, why: &str) {
        assert_eq!(self.code, Some(code), "{why}{}", self.dump());
    }

    /// Panics with the dump unless `ok`.
    pub fn check(&self, ok: bool, why: &str) {
        assert!(ok, "{why}{}", self.dump());
    }
}

/// Every file under `dir`, by path relative to it, with its size; sorted.
pub fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).ok();
            if meta.as_ref().is_some_and(|m| m.is_dir()) {
                todo.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push((rel.display().to_string(), meta.map_or(0, |m| m.len())));
            }
        }
    }
    out.sort();
    out
}

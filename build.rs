//! Records the git commit podsnat is built from, for `podsnat --version`.
//! A build outside a git checkout (a source tarball) can set PODSNAT_COMMIT.
//!
//! It asks cargo to run it again only when HEAD moves, and names only
//! files that exist: cargo counts a missing file as changed, so naming
//! `.git/packed-refs` where git has not written one (a `git init` and a
//! fetch, a worktree's own git dir, a repository before `git pack-refs`)
//! made every build run this script again and relink podsnat (41 s).
//! `scripts/check-noop-build` holds it to that.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

fn main() {
    println!("cargo:rerun-if-env-changed=PODSNAT_COMMIT");
    let commit = std::env::var("PODSNAT_COMMIT")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PODSNAT_COMMIT={commit}");

    // HEAD is the worktree's own (`--git-dir`); the refs it names and
    // packed-refs are shared by every worktree (`--git-common-dir`).
    let Some(git_dir) = git(&["rev-parse", "--path-format=absolute", "--git-dir"]) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .map_or_else(|| git_dir.clone(), PathBuf::from);
    // A detached HEAD holds the commit itself: a checkout rewrites it.
    watch(&git_dir.join("HEAD"));
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = common.join(&head_ref);
        if loose.is_file() {
            // A commit rewrites the loose ref.
            watch(&loose);
        } else {
            // The branch lives in packed-refs only: a commit writes it as
            // a new loose file, which the scan of the nearest existing
            // folder of refs/ sees.
            let refs = common.join("refs");
            let folder = loose
                .ancestors()
                .skip(1)
                .take_while(|d| d.starts_with(&refs))
                .find(|d| d.is_dir())
                .unwrap_or(&refs);
            watch(folder);
        }
    }
    let packed = common.join("packed-refs");
    if packed.is_file() {
        watch(&packed);
    }
}

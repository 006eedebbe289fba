//! Golden cases: one folder per case under tests/cases/, each with an `args`
//! file (one argument per line) run from inside the folder, and its
//! reviewed `transcript.snap`. Good cases snapshot the rendered table;
//! `bad-*` cases snapshot exit code and stderr and must leave every file in
//! the folder as it was.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file under `dir` with its bytes, to prove a case changed nothing.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        out.insert(
            path.file_name().unwrap().to_string_lossy().into_owned(),
            fs::read(&path).unwrap_or_default(),
        );
    }
    out
}

/// The case folders, sorted, each with its `args`.
fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn cases() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 40, "only {} case folders found", dirs.len());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let args: Vec<String> = fs::read_to_string(dir.join("args"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let before = contents(&dir);
        let out = Command::new(common::podsnat_bin())
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(
            before,
            contents(&dir),
            "{name}: the run changed files in the case folder"
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        let code = out.status.code();
        if name.starts_with("bad-") {
            assert_eq!(code, Some(1), "{name}: bad input must exit 1\n{stderr}");
            assert!(
                stdout.is_empty(),
                "{name}: bad input printed to stdout:\n{stdout}"
            );
            assert!(!stderr.is_empty(), "{name}: bad input without a message");
        } else if args[0] == "render" && args.iter().any(|a| a == "--anchor") {
            // The anchor: one podsnat table per family, each replaced in
            // one `nft -f` transaction (restore.rs loads them for real).
            assert_eq!(code, Some(0), "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
            assert!(stdout.starts_with("# podsnat "), "{name}: {stdout}");
            assert!(stdout.contains("\ndelete table ip"), "{name}: {stdout}");
        } else if args[0] == "render" {
            assert_eq!(code, Some(0), "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
            // The output must be well-formed for our own parser, too.
            // One *nat table per family: IPv4's, IPv6's, or both in that order.
            // Each table opens with its own `# podsnat` header.
            let tables: Vec<&str> = stdout.split("\n\n").collect();
            assert!(
                (1..=2).contains(&tables.len()),
                "{name}: one *nat table per family expected"
            );
            for t in tables {
                assert!(t.starts_with("# podsnat "), "{name}: {t}");
                let parsed = podsnat::parse_rules(t).unwrap();
                assert_eq!(parsed.len(), 1, "{name}: one *nat table expected");
                assert_eq!(parsed[0].name, "nat");
            }
        } else {
            // Other good cases run with --check on files that do not exist,
            // or verify a file; an `exit` file names a code other than 2.
            let want =
                fs::read_to_string(dir.join("exit")).map_or(2, |t| t.trim().parse().unwrap());
            assert_eq!(code, Some(want), "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
        }
        let transcript = format!(
            "args: {}\nexit: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            args.join(" "),
            code.map_or("signal".to_owned(), |c| c.to_string())
        );
        // The snapshot sits in the case folder: removing a case removes it.
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(dir.join("args"));
        settings.bind(|| insta::assert_snapshot!("transcript", transcript));
    }
}

/// Rendering is deterministic: the same input twice gives the same bytes.
#[test]
fn render_is_deterministic() {
    let run = || {
        Command::new(common::podsnat_bin())
            .args(["render", "--config", "examples/flannel-docker.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .stdout
    };
    let first = run();
    assert!(!first.is_empty());
    assert_eq!(first, run());
}

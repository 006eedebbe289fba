//! Golden cases: one folder per case under tests/cases/, each with an `args`
//! file (one argument per line) run from inside the folder. Good cases
//! snapshot the rendered table; `bad-*` cases snapshot exit code and stderr
//! and must leave every file in the folder as it was.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
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

#[test]
fn cases() {
    insta::glob!("cases/*/args", |args_file| {
        let dir = args_file.parent().unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let args: Vec<String> = fs::read_to_string(args_file)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let before = contents(dir);
        let out = Command::new(common::podsnat_bin())
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(
            before,
            contents(dir),
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
        } else if args[0] == "render" {
            assert_eq!(code, Some(0), "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
            // The output must be well-formed for our own parser, too.
            let tables = podsnat::rules_file::parse(&stdout).unwrap();
            assert_eq!(tables.len(), 1, "{name}: one *nat table expected");
            assert_eq!(tables[0].name, "nat");
        } else {
            // Other good cases run with --check on files that do not exist.
            assert_eq!(code, Some(2), "{name}: {stderr}");
            assert!(stderr.is_empty(), "{name}: unexpected stderr: {stderr}");
        }
        let transcript = format!(
            "args: {}\nexit: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
            args.join(" "),
            code.map_or("signal".to_owned(), |c| c.to_string())
        );
        insta::assert_snapshot!(transcript);
    });
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

/// A snapshot whose case folder is gone is stale: CI must not carry it.
/// (insta itself, with INSTA_UPDATE=no, fails on changed or new snapshots.)
#[test]
fn no_stale_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut stale = Vec::new();
    for entry in fs::read_dir(root.join("snapshots")).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !file.ends_with(".snap.new") && !file.ends_with(".pending-snap"),
            "unreviewed snapshot {file}: run `cargo insta review`"
        );
        // tests/fleet.rs and tests/hostile.rs name their snapshots
        // themselves; insta fails on those that change.
        if file.starts_with("fleet__") || file.starts_with("hostile__") {
            continue;
        }
        let case = file
            .strip_prefix("cases__cases@")
            .and_then(|f| f.strip_suffix("__args.snap"));
        match case {
            Some(case) if root.join("cases").join(case).join("args").is_file() => {}
            _ => stale.push(file),
        }
    }
    assert!(stale.is_empty(), "stale snapshots: {stale:?}");
}

//! Golden cases: one folder per case under tests/cases/, each with an `args`
//! file (one argument per line) run from inside the folder, and its
//! reviewed `transcript.snap`. Good cases snapshot the rendered table;
//! `bad-*` cases snapshot exit code and stderr and must leave every file in
//! the folder as it was.
//!
//! Each folder is a test of its own, named after it (libtest-mimic, as
//! zram-generator's tests/test_cases.rs gives each case its own test): the
//! first failure does not hide the rest, and `cargo test --test cases
//! bad-97` runs one. A failure prints the run's working directory, its
//! files, stdout and stderr (tests/support/ran.rs).

// Test code may unwrap: a panic is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/ran.rs"]
mod ran;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use ran::Ran;

fn main() {
    let args = Arguments::from_args();
    let dirs = case_dirs();
    let count = dirs.len();
    let mut trials: Vec<Trial> = dirs
        .into_iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Trial::test(name, move || run_case(&dir))
        })
        .collect();
    // A glob that found nothing must not pass as "0 failed".
    trials.push(Trial::test("the_case_folders_are_found", move || {
        if count >= 40 {
            Ok(())
        } else {
            Err(format!("only {count} case folders found under tests/cases").into())
        }
    }));
    libtest_mimic::run(&args, trials).exit();
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

/// Every file under `dir` with its bytes, to prove a case changed nothing.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    ran::listing(dir)
        .into_iter()
        .map(|(rel, _)| {
            let bytes = fs::read(dir.join(&rel)).unwrap_or_default();
            (rel, bytes)
        })
        .collect()
}

fn run_case(dir: &Path) -> Result<(), Failed> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let args: Vec<String> = fs::read_to_string(dir.join("args"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let before = contents(dir);
    let ran = Ran::new(Path::new(env!("CARGO_BIN_EXE_podsnat")), &args, dir);
    ran.check(
        before == contents(dir),
        "the run changed files in the case folder",
    );
    let (stdout, stderr) = (&ran.stdout, &ran.stderr);
    if name.starts_with("bad-") {
        ran.expect_code(1, "bad input must exit 1");
        ran.check(stdout.is_empty(), "bad input printed to stdout");
        ran.check(!stderr.is_empty(), "bad input without a message");
    } else if args[0] == "render" && args.iter().any(|a| a == "--anchor") {
        // The anchor: one podsnat table per family, each replaced in
        // one `nft -f` transaction (restore.rs loads them for real).
        ran.expect_code(0, "render --anchor must succeed");
        ran.check(stderr.is_empty(), "unexpected stderr");
        ran.check(stdout.starts_with("# podsnat "), "no podsnat header");
        ran.check(stdout.contains("\ndelete table ip"), "no delete table");
    } else if args[0] == "render" {
        ran.expect_code(0, "render must succeed");
        ran.check(stderr.is_empty(), "unexpected stderr");
        // The output must be well-formed for our own parser, too.
        // One *nat table per family: IPv4's, IPv6's, or both in that order.
        // Each table opens with its own `# podsnat` header.
        let tables: Vec<&str> = stdout.split("\n\n").collect();
        ran.check(
            (1..=2).contains(&tables.len()),
            "one *nat table per family expected",
        );
        for t in tables {
            ran.check(t.starts_with("# podsnat "), "a table without its header");
            let parsed = podsnat::parse_rules(t).unwrap();
            ran.check(
                parsed.len() == 1 && parsed[0].name == "nat",
                "one *nat table expected",
            );
        }
    } else {
        // Other good cases run with --check on files that do not exist,
        // or verify a file; an `exit` file names a code other than 2.
        let want = fs::read_to_string(dir.join("exit")).map_or(2, |t| t.trim().parse().unwrap());
        ran.expect_code(want, "the exit the case expects");
        ran.check(stderr.is_empty(), "unexpected stderr");
    }
    let transcript = format!(
        "args: {}\nexit: {}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" "),
        ran.code.map_or("signal".to_owned(), |c| c.to_string())
    );
    // The snapshot sits in the case folder: removing a case removes it.
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_input_file(dir.join("args"));
    // insta prints the diff; the dump says what the run saw around it.
    let snapshot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!("transcript", transcript));
    }));
    ran.check(
        snapshot.is_ok(),
        "the transcript differs from transcript.snap",
    );
    Ok(())
}

//! Fleet mode: golden files of the example inventory, idempotent renders,
//! `fleet check` for users' CI, and pruning of nodes that left.

use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

const INVENTORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/inventory.toml");

fn fleet(cmd: &str, inventory: &str, out: &Path, extra: &[&str]) -> Output {
    Command::new(common::podsnat_bin())
        .args([
            "fleet",
            cmd,
            "--inventory",
            inventory,
            "--out-dir",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn golden_files_of_the_example_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fleet("render", INVENTORY, tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    for node in ["hdss7-21", "hdss7-22"] {
        for file in ["iptables.nat", "podsnat.service"] {
            let body = fs::read_to_string(tmp.path().join(node).join(file)).unwrap();
            insta::assert_snapshot!(format!("{node}-{file}"), body);
        }
    }
    // Each node's table is exactly what `render` gives for that node alone.
    let single = common::render_example(&[]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("hdss7-21/iptables.nat")).unwrap(),
        single
    );
}

#[test]
fn render_is_idempotent_and_check_catches_every_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(fleet("render", INVENTORY, dir, &[]).status.code(), Some(2));
    let nat = dir.join("hdss7-22/iptables.nat");
    let before = fs::metadata(&nat).unwrap();

    let again = fleet("render", INVENTORY, dir, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    let after = fs::metadata(&nat).unwrap();
    assert_eq!(
        (after.ino(), after.mtime_nsec()),
        (before.ino(), before.mtime_nsec()),
        "unchanged file rewritten"
    );

    let ok = fleet("check", INVENTORY, dir, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));

    // A hand edit of a golden file: check exits 2 with a unified diff.
    let edited = fs::read_to_string(&nat)
        .unwrap()
        .replace("-j ACCEPT", "-j RETURN");
    fs::write(&nat, &edited).unwrap();
    let drift = fleet("check", INVENTORY, dir, &[]);
    assert_eq!(drift.status.code(), Some(2));
    let report = text(&drift.stdout);
    assert!(report.contains("--- ") && report.contains("-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j RETURN\n+-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT"), "{report}");
    assert!(
        report.contains("differs: ") && report.contains("hdss7-22/iptables.nat"),
        "{report}"
    );
    assert_eq!(
        fs::read_to_string(&nat).unwrap(),
        edited,
        "check must not write"
    );

    // A config change without re-rendering is caught the same way.
    let inv = dir.join("inventory.toml");
    fs::write(
        &inv,
        fs::read_to_string(INVENTORY)
            .unwrap()
            .replace("random_fully = false", "random_fully = true"),
    )
    .unwrap();
    fs::write(&nat, fleet_nat(INVENTORY)).unwrap();
    let changed = fleet("check", inv.to_str().unwrap(), dir, &[]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(
        text(&changed.stdout)
            .contains("+-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE --random-fully")
    );
}

/// hdss7-22's table as the unmodified example inventory renders it.
fn fleet_nat(inventory: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    fleet("render", inventory, tmp.path(), &[]);
    fs::read_to_string(tmp.path().join("hdss7-22/iptables.nat")).unwrap()
}

#[test]
fn nodes_that_left_are_reported_and_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("golden");
    assert_eq!(fleet("render", INVENTORY, &dir, &[]).status.code(), Some(2));
    // hdss7-22 leaves the inventory.
    let inv = tmp.path().join("inventory.toml");
    let text_inv = fs::read_to_string(INVENTORY).unwrap();
    let cut = text_inv.rfind("[[nodes]]").unwrap();
    fs::write(&inv, &text_inv[..cut]).unwrap();
    let inv = inv.to_str().unwrap();

    let check = fleet("check", inv, &dir, &[]);
    assert_eq!(check.status.code(), Some(2), "a stale node fails the check");
    assert!(
        text(&check.stdout).contains("stale: "),
        "{}",
        text(&check.stdout)
    );

    let keep = fleet("render", inv, &dir, &[]);
    assert_eq!(keep.status.code(), Some(0));
    assert!(text(&keep.stdout).contains("stale: "));
    assert!(
        dir.join("hdss7-22").is_dir(),
        "without --prune nothing is removed"
    );

    // A stale directory with files podsnat did not write is not pruned.
    fs::write(dir.join("hdss7-22/notes.txt"), "mine").unwrap();
    let refused = fleet("render", inv, &dir, &["--prune"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("notes.txt"),
        "{}",
        text(&refused.stderr)
    );
    fs::remove_file(dir.join("hdss7-22/notes.txt")).unwrap();

    let pruned = fleet("render", inv, &dir, &["--prune"]);
    assert_eq!(pruned.status.code(), Some(2), "{}", text(&pruned.stderr));
    assert!(!dir.join("hdss7-22").exists());
    assert!(dir.join("hdss7-21/iptables.nat").is_file());
    assert_eq!(fleet("check", inv, &dir, &[]).status.code(), Some(0));
}

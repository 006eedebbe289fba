//! Fleet mode: golden files of the example inventory, idempotent renders,
//! `fleet check` for users' CI, and pruning of nodes that left.

use crate::common;
use crate::common::{names, text};

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

#[test]
fn golden_files_of_the_example_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = fleet("render", INVENTORY, tmp.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // One nat table per node, each unit once: the flat layout.
    let files = names(tmp.path());
    assert_eq!(
        files,
        [
            "hdss7-21.iptables.nat",
            "hdss7-21.podsnat.nft",
            "hdss7-22.iptables.nat",
            "hdss7-22.podsnat.nft",
            "podsnat-anchor.service",
            "podsnat-pin.service",
            "podsnat-pin.timer",
            "podsnat.service"
        ]
    );
    for file in &files {
        let body = fs::read_to_string(tmp.path().join(file)).unwrap();
        insta::assert_snapshot!(file.as_str(), body);
    }
    // Each node's table is exactly what `render` gives for that node alone.
    let single = common::render_example(&[]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("hdss7-21.iptables.nat")).unwrap(),
        single
    );
    // The shared unit is what `install-unit` makes with the same settings.
    let root = tempfile::tempdir().unwrap();
    let unit = Command::new(common::podsnat_bin())
        .args(["install-unit", "--root", root.path().to_str().unwrap()])
        .args(["--file", "/etc/sysconfig/iptables"])
        .output()
        .unwrap();
    assert_eq!(unit.status.code(), Some(2), "{}", text(&unit.stderr));
    for u in [
        "podsnat.service",
        "podsnat-pin.service",
        "podsnat-pin.timer",
    ] {
        assert_eq!(
            fs::read_to_string(tmp.path().join(u)).unwrap(),
            fs::read_to_string(root.path().join("etc/systemd/system").join(u)).unwrap(),
            "{u}"
        );
    }
}

/// 500 nodes that share the units give exactly one copy of each; a node
/// whose `[nodes.unit]` differs gets its own copy of what differs, and a
/// change to the shared unit is reported once.
#[test]
fn shared_units_are_written_once() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("inventory.toml");
    let mut text_inv = String::from(
        "cluster_cidr = \"10.0.0.0/8\"\n[unit]\nafter = [\"flanneld.service\"]\nplatform = \"rhel\"\n",
    );
    for i in 0..500 {
        text_inv += &format!(
            "[[nodes]]\nname = \"n{i:03}\"\npod_subnet = \"10.{}.{}.0/24\"\n",
            1 + i / 250,
            i % 250
        );
    }
    text_inv += "[[nodes]]\nname = \"odd\"\npod_subnet = \"10.3.0.0/24\"\n[nodes.unit]\nafter = [\"flannel.service\"]\n";
    fs::write(&inv, &text_inv).unwrap();
    let inv = inv.to_str().unwrap();
    let dir = tmp.path().join("golden");
    let out = fleet("render", inv, &dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let files = names(&dir);
    let units: Vec<&String> = files
        .iter()
        .filter(|f| !f.ends_with(".iptables.nat") && !f.ends_with(".podsnat.nft"))
        .collect();
    assert_eq!(
        units,
        [
            "odd.podsnat.service",
            "podsnat-anchor.service",
            "podsnat-pin.service",
            "podsnat-pin.timer",
            "podsnat.service"
        ],
        "one shared copy of each unit, and the odd node's own podsnat.service only"
    );
    // Each node's nat table and anchor, and the five shared units.
    assert_eq!(files.len(), 501 * 2 + 5);
    let odd = fs::read_to_string(dir.join("odd.podsnat.service")).unwrap();
    assert!(odd.contains("After=flannel.service\n"), "{odd}");

    // An unchanged render writes nothing.
    let again = fleet("render", inv, &dir, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert!(text(&again.stdout).contains("0 files changed"));

    // A change to the shared unit: one file differs, reported once.
    let changed = fs::read_to_string(inv).unwrap().replace(
        "after = [\"flanneld.service\"]",
        "after = [\"flanneld.service\", \"network-online.target\"]",
    );
    let inv2 = tmp.path().join("inventory2.toml");
    fs::write(&inv2, changed).unwrap();
    let check = fleet("check", inv2.to_str().unwrap(), &dir, &[]);
    assert_eq!(check.status.code(), Some(2));
    let report = text(&check.stdout);
    assert_eq!(report.matches("differs: ").count(), 1, "{report}");
    assert!(
        report.contains("differs: ") && report.contains("golden/podsnat.service"),
        "{report}"
    );
}

#[test]
fn render_is_idempotent_and_check_catches_every_difference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(fleet("render", INVENTORY, dir, &[]).status.code(), Some(2));
    let nat = dir.join("hdss7-22.iptables.nat");
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
        report.contains("differs: ") && report.contains("hdss7-22.iptables.nat"),
        "{report}"
    );
    assert_eq!(
        fs::read_to_string(&nat).unwrap(),
        edited,
        "check must not write"
    );
    // render puts it back, atomically (a new inode).
    assert_eq!(fleet("render", INVENTORY, dir, &[]).status.code(), Some(2));
    assert_ne!(fs::metadata(&nat).unwrap().ino(), before.ino());

    // A config change without re-rendering is caught the same way.
    let inv = dir.join("inventory.toml");
    fs::write(
        &inv,
        fs::read_to_string(INVENTORY)
            .unwrap()
            .replace("random_fully = false", "random_fully = true"),
    )
    .unwrap();
    let changed = fleet("check", inv.to_str().unwrap(), dir, &[]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(
        text(&changed.stdout)
            .contains("+-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE --random-fully")
    );
}

#[test]
fn nodes_that_left_are_reported_and_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("golden");
    assert_eq!(fleet("render", INVENTORY, &dir, &[]).status.code(), Some(2));
    // Files podsnat does not write are never touched.
    fs::write(dir.join("README.md"), "mine").unwrap();
    // hdss7-22 leaves the inventory.
    let inv = tmp.path().join("inventory.toml");
    let text_inv = fs::read_to_string(INVENTORY).unwrap();
    let cut = text_inv.rfind("[[nodes]]").unwrap();
    fs::write(&inv, &text_inv[..cut]).unwrap();
    let inv = inv.to_str().unwrap();

    let check = fleet("check", inv, &dir, &[]);
    assert_eq!(check.status.code(), Some(2), "a stale node fails the check");
    assert!(
        text(&check.stdout).contains("stale: ")
            && text(&check.stdout).contains("hdss7-22.iptables.nat"),
        "{}",
        text(&check.stdout)
    );

    let keep = fleet("render", inv, &dir, &[]);
    assert_eq!(keep.status.code(), Some(0));
    assert!(text(&keep.stdout).contains("stale: "));
    assert!(
        dir.join("hdss7-22.iptables.nat").is_file(),
        "without --prune nothing is removed"
    );

    let pruned = fleet("render", inv, &dir, &["--prune"]);
    assert_eq!(pruned.status.code(), Some(2), "{}", text(&pruned.stderr));
    assert!(!dir.join("hdss7-22.iptables.nat").exists());
    assert!(dir.join("hdss7-21.iptables.nat").is_file());
    assert_eq!(fs::read_to_string(dir.join("README.md")).unwrap(), "mine");
    assert_eq!(fleet("check", inv, &dir, &[]).status.code(), Some(0));
}

/// A dual-stack fleet: golden files per family (`<node>.ip6tables.nat`
/// beside `<node>.iptables.nat`), the shared units restore and pin both,
/// an IPv4-only node gets its own units, and `write --table --table6`
/// installs a node's two golden files.
#[test]
fn dual_stack_fleet_has_golden_files_per_family() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = tmp.path().join("inventory.toml");
    fs::write(
        &inv,
        "cluster_cidr = \"172.7.0.0/16\"\ncluster_cidr_v6 = \"fd00:7::/48\"\n\
         no_masquerade = [\"10.96.0.0/12\", \"fd00:96::/108\"]\n\
         [unit]\nplatform = \"debian\"\n\
         [[nodes]]\nname = \"n1\"\npod_subnet = \"172.7.21.0/24\"\npod_subnet_v6 = \"fd00:7:0:21::/64\"\n\
         [[nodes]]\nname = \"n2\"\npod_subnet = \"172.7.22.0/24\"\npod_subnet_v6 = \"fd00:7:0:22::/64\"\n\
         [[nodes]]\nname = \"v4only\"\npod_subnet = \"172.7.23.0/24\"\n\
         [nodes.unit]\nplatform = \"rhel\"\n",
    )
    .unwrap();
    let dir = tmp.path().join("golden");
    let out = fleet("render", inv.to_str().unwrap(), &dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        names(&dir),
        [
            "n1.ip6tables.nat",
            "n1.iptables.nat",
            "n1.podsnat.nft",
            "n2.ip6tables.nat",
            "n2.iptables.nat",
            "n2.podsnat.nft",
            "podsnat-anchor.service",
            "podsnat-pin.service",
            "podsnat-pin.timer",
            "podsnat.service",
            "v4only.iptables.nat",
            // Its units differ: the sandbox of an IPv4-only node has no AF_INET6.
            "v4only.podsnat-anchor.service",
            "v4only.podsnat-pin.service",
            "v4only.podsnat.nft",
            "v4only.podsnat.service",
        ]
    );
    let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
    insta::assert_snapshot!("dual-n1.ip6tables.nat", read("n1.ip6tables.nat"));
    let shared = read("podsnat.service");
    assert!(
        shared.contains("ExecStart=/usr/sbin/ip6tables-restore -w 5 -T nat /etc/iptables/rules.v6"),
        "{shared}"
    );
    assert!(read("podsnat-pin.service").contains("--file6 /etc/iptables/rules.v6"));
    // The node that chose the RHEL platform restores its own file.
    let v4only = read("v4only.podsnat.service");
    assert!(!v4only.contains("ip6tables"), "{v4only}");
    assert!(
        v4only.contains("ExecStart=/usr/sbin/iptables-restore -w 5 -T nat /etc/sysconfig/iptables"),
        "{v4only}"
    );

    // A node's golden files are what `render` gives for it, table by table.
    let rendered = Command::new(common::podsnat_bin())
        .args([
            "render",
            "--cluster-cidr",
            "172.7.0.0/16",
            "--pod-subnet",
            "172.7.21.0/24",
        ])
        .args([
            "--cluster-cidr-v6",
            "fd00:7::/48",
            "--pod-subnet-v6",
            "fd00:7:0:21::/64",
        ])
        .args([
            "--no-masquerade",
            "10.96.0.0/12",
            "--no-masquerade",
            "fd00:96::/108",
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&rendered.stdout),
        format!("{}\n{}", read("n1.iptables.nat"), read("n1.ip6tables.nat"))
    );

    // And `write --table --table6` puts both into a node's two rules files.
    let root = tempfile::tempdir().unwrap();
    let write = Command::new(common::podsnat_bin())
        .args([
            "write",
            "--root",
            root.path().to_str().unwrap(),
            "--no-test",
        ])
        .arg("--table")
        .arg(dir.join("n1.iptables.nat"))
        .arg("--table6")
        .arg(dir.join("n1.ip6tables.nat"))
        .output()
        .unwrap();
    assert_eq!(write.status.code(), Some(2), "{}", text(&write.stderr));
    let six = fs::read_to_string(root.path().join("etc/iptables/rules.v6")).unwrap();
    assert_eq!(six, read("n1.ip6tables.nat"));
    assert!(root.path().join("etc/iptables/rules.v4").is_file());
}

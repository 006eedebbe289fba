//! `podsnat verify --file` on the nat tables real clusters have, written as
//! their tools write them (each `tests/corpus/<shape>/nat.rules` cites the
//! upstream source file it follows): kube-proxy in ipvs and iptables mode,
//! flannel 0.11 and 0.2x, flanneld --ip-masq on k3s and beside the CNI
//! bridge plugin, the CNI bridge plugin (as written and as 1.1.1 wrote it
//! here), ip-masq-agent, Calico with its ipsets, docker 28's filter and raw
//! tables (a new daemon, a published port, gateway mode "nat-unprotected",
//! and the DOCKER-USER rule verify recommends) and a FORWARD policy of
//! DROP. Each
//! shape's folder holds its settings (`args`), any `ipsets` (`ipset save`
//! output), any nftables layer (`nft.json`, listed by the real nft from
//! `source.nft`), and the reviewed text and JSON reports as snapshots.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

fn shapes() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("nat.rules").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn real_world_shapes_are_decided_and_explained() {
    let dirs = shapes();
    assert!(dirs.len() >= 7, "{dirs:?}");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut args: Vec<String> = vec![
            "verify".into(),
            "--file".into(),
            "nat.rules".into(),
            "--no-test".into(),
        ];
        args.extend(
            fs::read_to_string(dir.join("args"))
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
        if dir.join("ipsets").is_file() {
            args.extend(["--ipsets".into(), "ipsets".into()]);
        }
        // The nftables layer: `nft -j list ruleset` of what `source.nft`
        // loads into a network namespace.
        if dir.join("nft.json").is_file() {
            args.extend(["--nft-file".into(), "nft.json".into()]);
        }
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(dir.join("nat.rules"));
        for format in ["text", "json"] {
            let out = Command::new(common::podsnat_bin())
                .args(&args)
                .args(["--format", format])
                .current_dir(&dir)
                .output()
                .unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            let stderr = String::from_utf8(out.stderr).unwrap();
            // Every shape is decided: ok (0) or drift (2), never "cannot decide".
            let code = out.status.code();
            assert!(
                matches!(code, Some(0 | 2)),
                "{name} ({format}): {code:?}\n{stdout}{stderr}"
            );
            assert!(
                !stdout.contains("cannot decide") && !stdout.contains("cannot_decide"),
                "{name}: {stdout}"
            );
            assert!(stderr.is_empty(), "{name}: {stderr}");
            let transcript = format!("exit: {}\n{stdout}", code.unwrap_or(-1));
            settings.bind(|| insta::assert_snapshot!(format, transcript));
        }
    }
}

/// A large table (kube-proxy's iptables mode with 25,000 services, over
/// 3 MB) is read with --file, as live verify reads it.
#[test]
fn a_large_table_is_read() {
    let mut text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/kube-proxy-iptables/nat.rules"),
    )
    .unwrap();
    let commit = text.rfind("COMMIT").unwrap();
    let mut rules = String::new();
    for i in 0..25_000 {
        rules += &format!(
            "-A KUBE-SERVICES -d 10.{}.{}.{}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
            96 + i / 62_500,
            i / 250 % 250,
            i % 250 + 1
        );
    }
    text.insert_str(commit, &rules);
    assert!(text.len() > 3 * 1024 * 1024, "{} bytes", text.len());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("nat.rules");
    fs::write(&file, &text).unwrap();
    let out = Command::new(common::podsnat_bin())
        .args([
            "verify",
            "--cluster-cidr",
            "172.7.0.0/16",
            "--pod-subnet",
            "172.7.21.0/24",
            "--no-test",
            "--file",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each shape's `nft.json` is what the real nft lists after loading its
/// `source.nft` into a fresh network namespace, and each `nat.rules` is one
/// the real iptables-restore (both backends) accepts, with its `ipsets`.
#[test]
fn corpus_files_are_what_the_real_programs_read() {
    let test = "corpus_files_are_what_the_real_programs_read";
    common::require_root_or_fail(test);
    common::require(
        test,
        true,
        &[
            "nft",
            "ipset",
            "iptables-nft-restore",
            "iptables-legacy-restore",
        ],
    );
    let mut restored = 0;
    for dir in shapes() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let rules = dir.join("nat.rules");
        // A table that matches ipsets it does not come with (kube-proxy's
        // ipvs mode; its twin -with-ipsets has them) needs sets of types
        // the listing does not give: iptables-restore would refuse it for
        // want of them, not for its rules.
        let sets_given = dir.join("ipsets").is_file();
        let loads = sets_given || !fs::read_to_string(&rules).unwrap().contains("--match-set");
        for restore in ["iptables-nft-restore", "iptables-legacy-restore"]
            .into_iter()
            .filter(|_| loads)
        {
            let ns = common::Netns::new();
            // The sets its `-m set` rules match, as `ipset save` wrote them.
            if dir.join("ipsets").is_file() {
                ns.ok(
                    "ipset",
                    &["restore", "-f", dir.join("ipsets").to_str().unwrap()],
                );
            }
            let out = ns.exec(restore, &["--test", rules.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{name}: {restore}: {}",
                common::text(&out.stderr)
            );
            restored += 1;
        }
        if !dir.join("source.nft").is_file() {
            continue;
        }
        let ns = common::Netns::new();
        ns.ok("nft", &["-f", dir.join("source.nft").to_str().unwrap()]);
        let listed = ns.ok("nft", &["-j", "list", "ruleset"]);
        let stored = fs::read_to_string(dir.join("nft.json")).unwrap();
        assert_eq!(
            listed.trim_end(),
            stored.trim_end(),
            "{name}: nft.json is not what nft lists"
        );
    }
    // Every shape but kube-proxy-ipvs, on both backends.
    assert_eq!(restored, 2 * (shapes().len() - 1), "{restored} restores");
}

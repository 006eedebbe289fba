//! `podsnat install-unit` in temp roots, and the rendered unit checked by
//! systemd's own tools: `systemd-analyze verify` and the offline security score.

use crate::common;
use crate::common::text;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

fn install(root: &Path, extra: &[&str]) -> Output {
    Command::new(common::podsnat_bin())
        .args(["install-unit", "--root", root.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const UNIT: &str = "etc/systemd/system/podsnat.service";
const LINK: &str = "etc/systemd/system/multi-user.target.wants/podsnat.service";

#[test]
fn installs_enables_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();

    let check = install(root, &["--check"]);
    assert_eq!(code(&check), 2, "{}", text(&check.stderr));
    assert!(
        fs::read_dir(root).unwrap().next().is_none(),
        "--check wrote something"
    );

    let first = install(root, &[]);
    assert_eq!(code(&first), 2, "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(out.contains("daemon-reload: not run: --root is"), "{out}");
    let unit = root.join(UNIT);
    assert_eq!(fs::metadata(&unit).unwrap().mode() & 0o7777, 0o644);
    // Exactly what `systemctl enable` makes: an absolute link to the unit.
    assert_eq!(
        fs::read_link(root.join(LINK)).unwrap(),
        Path::new("/etc/systemd/system/podsnat.service")
    );
    let before = fs::metadata(&unit).unwrap();

    let second = install(root, &[]);
    assert_eq!(code(&second), 0, "{}", text(&second.stdout));
    assert!(text(&second.stdout).contains("daemon-reload: not needed"));
    let after = fs::metadata(&unit).unwrap();
    assert_eq!(
        (after.ino(), after.mtime_nsec()),
        (before.ino(), before.mtime_nsec())
    );

    // A different ordering is a change to the unit only.
    let moved = install(root, &["--after", "flannel.service", "--check", "--diff"]);
    assert_eq!(code(&moved), 2);
    let diff = text(&moved.stdout);
    assert!(
        diff.contains("-After=flanneld.service\n+After=flannel.service\n"),
        "{diff}"
    );
    assert!(
        diff.contains("unchanged: ") && diff.contains("multi-user.target.wants"),
        "{diff}"
    );
    assert_eq!(
        fs::metadata(&unit).unwrap().mtime_nsec(),
        before.mtime_nsec()
    );

    // No temp files anywhere.
    for dir in [
        root.join("etc/systemd/system"),
        root.join("etc/systemd/system/multi-user.target.wants"),
    ] {
        for e in fs::read_dir(dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".podsnat."), "temp file left: {name}");
        }
    }
}

#[test]
fn link_elsewhere_is_fixed_and_a_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let link = root.join(LINK);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/system/podsnat.service", &link).unwrap();
    let out = install(root, &[]);
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("/etc/systemd/system/podsnat.service")
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let link = root.join(LINK);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    fs::write(&link, "not a link").unwrap();
    let out = install(root, &[]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("not a symlink"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&link).unwrap(), "not a link");
}

#[test]
fn no_enable_leaves_the_link_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = install(tmp.path(), &["--no-enable"]);
    assert_eq!(code(&out), 2);
    assert!(tmp.path().join(UNIT).is_file());
    assert!(fs::symlink_metadata(tmp.path().join(LINK)).is_err());
}

/// The rendered unit, with default and custom settings, passes
/// `systemd-analyze verify` and scores 2.5 or better on the offline
/// security check (a plain oneshot scores 9.6).
#[test]
fn systemd_accepts_the_unit() {
    let restore = "/usr/sbin/iptables-restore";
    common::require(
        "systemd_accepts_the_unit",
        false,
        &["systemd-analyze", "iptables-restore", "man", "manpath"],
    );
    let variants: [&[&str]; 4] = [
        &[],
        &["--family", "dual"],
        &[
            "--family",
            "ipv6",
            "--file6",
            "/etc/iptables/rules.v6",
            "--iptables-restore",
            "/usr/sbin/iptables-legacy-restore",
        ],
        &[
            "--after",
            "flannel.service",
            "--before",
            "kube-proxy.service",
            "--file",
            "/etc/iptables/rules.v4",
            "--iptables-restore",
            "/usr/sbin/iptables-legacy-restore",
        ],
    ];
    for extra in variants {
        let tmp = tempfile::tempdir().unwrap();
        let out = install(tmp.path(), extra);
        assert_eq!(code(&out), 2, "{}", text(&out.stderr));
        let unit = tmp.path().join(UNIT);
        assert!(Path::new(restore).exists());
        let verify = analyze_verify(&unit);
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify {extra:?}: {}",
            text(&verify.stderr)
        );
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(&unit)
            .output()
            .unwrap();
        let report = text(&security.stdout);
        let score: f64 = report
            .lines()
            .find_map(|l| {
                l.split("Overall exposure level for podsnat.service: ")
                    .nth(1)
            })
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score in: {report}{}", text(&security.stderr)));
        assert!(score <= 2.5, "exposure {score} > 2.5:\n{report}");
    }

    // The pin and verify services and timers, with the podsnat under test as binary.
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::podsnat_bin();
    let out = install(
        tmp.path(),
        &[
            "--verify-timer",
            "--metrics",
            "/var/lib/prometheus/node-exporter",
            "--podsnat",
            bin.to_str().unwrap(),
            "--family",
            "dual",
        ],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    let dir = tmp.path().join("etc/systemd/system");
    for (unit, wants) in [
        ("podsnat.service", "multi-user.target.wants"),
        ("podsnat-anchor.service", "multi-user.target.wants"),
        ("podsnat-pin.service", "docker.service.wants"),
        ("podsnat-pin.timer", "timers.target.wants"),
        ("podsnat-verify.service", "docker.service.wants"),
        ("podsnat-verify.timer", "timers.target.wants"),
    ] {
        let verify = analyze_verify(&dir.join(unit));
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "{unit}: {}",
            text(&verify.stderr)
        );
        assert_eq!(
            fs::read_link(dir.join(wants).join(unit)).unwrap(),
            Path::new("/etc/systemd/system").join(unit)
        );
    }
    // --metrics: both write to the textfile directory, and may.
    for unit in ["podsnat-pin.service", "podsnat-verify.service"] {
        let body = fs::read_to_string(dir.join(unit)).unwrap();
        let exec = body.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            exec.ends_with(" --textfile /var/lib/prometheus/node-exporter"),
            "{unit}: {exec}"
        );
        assert!(
            body.contains("\nReadWritePaths=-/var/lib/prometheus/node-exporter\n"),
            "{unit}:\n{body}"
        );
    }
    // --metrics alone brings the verify units that write podsnat.prom.
    let only = tempfile::tempdir().unwrap();
    let out = install(
        only.path(),
        &["--metrics", "/var/lib/prometheus/node-exporter"],
    );
    assert_eq!(code(&out), 2, "{}", text(&out.stderr));
    assert!(
        only.path()
            .join("etc/systemd/system/podsnat-verify.timer")
            .is_file()
    );
    for unit in ["podsnat-pin.service", "podsnat-verify.service"] {
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes"])
            .arg(dir.join(unit))
            .output()
            .unwrap();
        let report = text(&security.stdout);
        assert!(
            report.contains(&format!("Overall exposure level for {unit}: 1."))
                || report.contains(&format!("Overall exposure level for {unit}: 2.")),
            "{report}"
        );
    }

    // The check can fail: a unit that runs a missing binary does not verify.
    let tmp = tempfile::tempdir().unwrap();
    let out = install(
        tmp.path(),
        &["--iptables-restore", "/usr/sbin/no-such-restore"],
    );
    assert_eq!(code(&out), 2);
    let verify = analyze_verify(&tmp.path().join(UNIT));
    assert!(
        !verify.status.success(),
        "verify should reject a missing ExecStart binary"
    );
}

/// `systemd-analyze verify UNIT`, which also runs `man` on every
/// `Documentation=man:` page: podsnat(8) is the page `podsnat generate man`
/// renders (the packages install it), found through MANPATH.
fn analyze_verify(unit: &Path) -> std::process::Output {
    let man = tempfile::tempdir().unwrap();
    fs::create_dir(man.path().join("man8")).unwrap();
    let page = Command::new(common::podsnat_bin())
        .args(["generate", "man"])
        .output()
        .unwrap();
    assert!(page.status.success(), "podsnat generate man");
    fs::write(man.path().join("man8/podsnat.8"), page.stdout).unwrap();
    // The system's pages (iptables-restore(8), nft(8)) stay reachable.
    let system = Command::new("manpath").output().unwrap();
    let manpath = format!("{}:{}", man.path().display(), text(&system.stdout).trim());
    Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("MANPATH", manpath)
        .output()
        .unwrap()
}

//! Hostile inputs that cannot live in a case folder: a 10 MB config, a
//! target that is unreadable, a read-only directory. Each must exit 1 with
//! a message that names the file, and change nothing on disk.

use crate::common;
use crate::common::text;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::EXAMPLE;
const EXISTING: &str = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";

/// Every name and byte under `dir`, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read(&p).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Exit 1, one line naming the problem, and a reviewed snapshot of that
/// line (with the test's temp directory written as [TMP]).
fn failed_with(out: &Output, needle: &str, snapshot: &str, tmp: &Path) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {} stderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(err.contains(needle), "expected «{needle}» in: {err}");
    // The message, then a line per cause: no forged output.
    let mut lines = err.lines();
    assert!(
        lines.next().is_some_and(|l| l.starts_with("podsnat: ")),
        "{err}"
    );
    assert!(
        lines.all(|l| l.starts_with("  caused by: ")),
        "no forged output: {err}"
    );
    let transcript = format!(
        "exit: 1\n{}",
        err.replace(&tmp.display().to_string(), "[TMP]")
    );
    insta::assert_snapshot!(snapshot, transcript);
}

#[test]
fn ten_megabyte_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("big.toml");
    let mut body =
        String::from("cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\n# ");
    body.push_str(&"x".repeat(10 * 1024 * 1024));
    fs::write(&config, &body).unwrap();
    let out = Command::new(common::podsnat_bin())
        .args(["render", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let want = format!(
        "big.toml: refusing to read: it has {} bytes; podsnat reads at most 1048576",
        body.len()
    );
    failed_with(&out, &want, "ten-megabyte-config", tmp.path());
}

/// As an unprivileged user (root reads everything): the target exists but
/// cannot be read, or its directory cannot be written.
#[test]
fn unreadable_target_and_unwritable_directory() {
    common::require(
        "unreadable_target_and_unwritable_directory",
        true,
        &["setpriv"],
    );
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let config = tmp.path().join("node.toml");
    fs::copy(EXAMPLE, &config).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let target = tmp.path().join("iptables");
    fs::write(&target, EXISTING).unwrap();
    let as_nobody = |target: &Path| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::podsnat_bin())
            .args([
                "write",
                "--config",
                config.to_str().unwrap(),
                "--no-test",
                "--no-anchor",
                "--output",
                target.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };

    fs::set_permissions(&target, fs::Permissions::from_mode(0o000)).unwrap();
    let before = snapshot(tmp.path());
    failed_with(
        &as_nobody(&target),
        "iptables: cannot read\n  caused by: Permission denied",
        "unreadable-target",
        tmp.path(),
    );
    assert_eq!(snapshot(tmp.path()), before);

    // Readable, but the directory is not writable for this user: the temp
    // file cannot be created, and the target stays as it was.
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).unwrap();
    let before = snapshot(tmp.path());
    failed_with(
        &as_nobody(&target),
        "cannot create a temp file in\n  caused by: Permission denied",
        "unwritable-directory",
        tmp.path(),
    );
    assert_eq!(snapshot(tmp.path()), before);
}

/// A read-only mount (EROFS), in a mount namespace of the test's own.
#[test]
fn read_only_filesystem() {
    common::require("read_only_filesystem", true, &["unshare", "mount"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    fs::create_dir(&dir).unwrap();
    let target = dir.join("iptables");
    fs::write(&target, EXISTING).unwrap();
    let before = snapshot(&dir);
    let script = format!(
        "mount --bind '{d}' '{d}' && mount -o remount,bind,ro '{d}' && exec '{bin}' write --config '{ex}' --no-test --output '{t}'",
        d = dir.display(),
        bin = common::podsnat_bin().display(),
        ex = EXAMPLE,
        t = target.display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    failed_with(
        &out,
        "Read-only file system",
        "read-only-filesystem",
        tmp.path(),
    );
    assert_eq!(snapshot(&dir), before);
}

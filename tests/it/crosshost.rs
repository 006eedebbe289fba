//! The effect, not just the rules: a pod on host A calls a pod on host B
//! over real TCP, and we read the source address B's listener saw. Before
//! podsnat it is host A's node IP; after the restore it is pod A's IP;
//! egress to an outside machine is still masqueraded; and docker's restart
//! step undoes classic mode but not guard mode. The topology is
//! examples/lab.sh, which the demo uses too.

use crate::common;

use std::path::Path;
use std::process::Command;

use crate::common::lab::Lab;
use crate::common::{BACKENDS, Backend};

const NODE_A: &str = "10.4.7.21";
const OUTSIDE_SEEN: &str = "10.9.0.1"; // host A's address on the outside link

struct Setup {
    name: &'static str,
    config: &'static str,
    mode: &'static str,
    bridge: &'static str,
    subnet_a: &'static str,
    subnet_b: &'static str,
    /// An address on host B inside a no_masquerade CIDR.
    extra: Option<&'static str>,
}

impl Setup {
    fn pod(subnet: &str) -> String {
        subnet.replace(".0/24", ".2")
    }
}

fn expect(step: &str, seen: &str, want: &str, why: &str) {
    assert_eq!(
        seen, want,
        "{step}: the listener saw {seen}, expected {want} ({why})"
    );
}

fn cross_host(s: &Setup, backend: &Backend, tag: &str) {
    let ctx = format!("{} [{}]", s.name, backend.name);
    let lab = Lab::up(s.bridge, s.subnet_a, s.subnet_b, s.extra, tag);
    let (a, pod_a, pod_b) = (lab.ns("a"), Setup::pod(s.subnet_a), Setup::pod(s.subnet_b));

    // Step 1, the problem: the broad rule masquerades pod-to-pod traffic.
    let broad = [
        "-w",
        "5",
        "-t",
        "nat",
        "-A",
        "POSTROUTING",
        "-s",
        s.subnet_a,
        "!",
        "-o",
        s.bridge,
        "-j",
        "MASQUERADE",
    ];
    common::ok_in(&a, backend.iptables, &broad);
    let seen = lab.seen("pa", "pb", &pod_b);
    expect(
        &format!("{ctx} step 1, broad rule"),
        &seen,
        NODE_A,
        "host A's node IP: the lab must show the problem first",
    );

    // Step 2, the fix: the file `podsnat write` made, restored as the unit does.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("iptables");
    let f = file.to_str().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(s.config);
    let bin = common::podsnat_bin();
    let write = common::exec_in(
        &a,
        &bin,
        &[
            "write",
            "--config",
            config.to_str().unwrap(),
            "--mode",
            s.mode,
            "--no-anchor",
            "--output",
            f,
            "--iptables-restore",
            backend.restore,
        ],
    );
    assert_eq!(
        write.status.code(),
        Some(2),
        "{ctx}: podsnat write: {}",
        String::from_utf8_lossy(&write.stderr)
    );
    common::ok_in(&a, backend.restore, &["-w", "5", "-T", "nat", f]);
    let seen = lab.seen("pa", "pb", &pod_b);
    expect(
        &format!("{ctx} step 2, pod to pod"),
        &seen,
        &pod_a,
        "pod A's own IP after the restore",
    );
    let seen = lab.seen("pa", "out", "10.9.0.2");
    expect(
        &format!("{ctx} step 2, egress"),
        &seen,
        OUTSIDE_SEEN,
        "host A's address: egress stays masqueraded",
    );
    if let Some(extra) = s.extra {
        let ip = extra.split('/').next().unwrap();
        let seen = lab.seen("pa", "b", ip);
        expect(
            &format!("{ctx} step 2, no_masquerade {ip}"),
            &seen,
            &pod_a,
            "pod A's IP: a no_masquerade destination",
        );
    }

    // Step 3, docker starts again (every reboot, every restart): it deletes
    // its broad rule and inserts it on top, above podsnat's exclusion; with
    // "ip-masq": false (owner mode) it leaves POSTROUTING alone.
    let owner = s.mode == "owner";
    common::docker_standin(&a, backend, "start", s.subnet_a, s.bridge, !owner);
    let seen = lab.seen("pa", "pb", &pod_b);
    let (want, why) = if owner {
        (
            pod_a.as_str(),
            "owner mode: docker does not masquerade, nothing moved",
        )
    } else {
        (
            NODE_A,
            "docker's start put its rule above podsnat's: the drift is real",
        )
    };
    expect(
        &format!("{ctx} step 3, after docker's start"),
        &seen,
        want,
        why,
    );

    // Step 4, podsnat-pin.service: `podsnat pin` puts podsnat's rules back.
    let pin = common::pin_in(&a, f, backend);
    assert_eq!(
        pin.status.code(),
        Some(if owner { 0 } else { 2 }),
        "{ctx}: podsnat pin: {}{}",
        String::from_utf8_lossy(&pin.stdout),
        String::from_utf8_lossy(&pin.stderr)
    );
    let seen = lab.seen("pa", "pb", &pod_b);
    expect(
        &format!("{ctx} step 4, after the pin"),
        &seen,
        &pod_a,
        "pod A's own IP again",
    );
    let seen = lab.seen("pa", "out", "10.9.0.2");
    expect(
        &format!("{ctx} step 4, egress"),
        &seen,
        OUTSIDE_SEEN,
        "egress stays masqueraded",
    );
}

#[test]
fn pod_source_ip_survives_across_hosts() {
    let tools = ["socat", "ss", "timeout", "bash"];
    common::require_root_or_fail("pod_source_ip_survives_across_hosts");
    common::require("pod_source_ip_survives_across_hosts", true, &tools);
    let example = |mode| Setup {
        name: "example",
        config: "examples/flannel-docker.toml",
        mode,
        bridge: "docker0",
        subnet_a: "172.7.21.0/24",
        subnet_b: "172.7.22.0/24",
        extra: None,
    };
    let setups = [
        example("guard"),
        example("classic"),
        example("owner"),
        Setup {
            name: "cni",
            config: "tests/crosshost/cni.toml",
            mode: "guard",
            bridge: "cni0",
            subnet_a: "10.244.1.0/24",
            subnet_b: "10.244.2.0/24",
            extra: Some("192.168.77.10/24"),
        },
    ];
    for (i, s) in setups.iter().enumerate() {
        for (j, backend) in BACKENDS.iter().enumerate() {
            cross_host(s, backend, &format!("{i}{j}"));
        }
    }
}

/// The demo runs the same lab with the real binary and checks its own rows,
/// with the real dockerd and with the stand-in, in both of its modes (its
/// default shows guard only): with the anchor, docker's start changes
/// nothing; with `anchor = false`, it undoes the fix until the pin.
#[test]
fn demo_shows_the_fix() {
    let tools = [
        "socat",
        "ss",
        "timeout",
        "bash",
        "iptables",
        "iptables-restore",
        "nft",
        "dockerd",
        "nsenter",
    ];
    common::require("demo_shows_the_fix", true, &tools);
    for (docker, first) in [
        ("real", "docker: the real dockerd"),
        ("standin", "docker: the stand-in"),
    ] {
        let out = Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.sh"))
            .env("PODSNAT", common::podsnat_bin())
            .env("DOCKER", docker)
            .env("MODES", "guard classic")
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "demo ({docker}) failed:\n{table}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(table.starts_with(first), "{table}");
        // The docker line, the header, and seven rows per mode.
        assert_eq!(table.lines().count(), 16, "{table}");
        assert!(!table.contains("MISMATCH"), "{table}");
        // The default install: docker's start undoes nothing.
        let after_start = |step: &str| {
            table
                .lines()
                .filter(|l| l.contains(step))
                .map(|l| l.split_whitespace().nth(9).unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            after_start("3. docker starts"),
            ["172.7.21.2"; 2],
            "{table}"
        );
        assert_eq!(after_start("5. docker starts"), ["10.4.7.21"; 2], "{table}");
    }
}

fn podsnat_in(ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = common::exec_in(ns, common::podsnat_bin(), args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Live drift, caught by `podsnat verify` in rule order and repaired with
/// one --noflush transaction; only podsnat's lines move, the cross-host
/// check passes again.
#[test]
fn verify_catches_live_drift_and_repair_fixes_it() {
    let tools = ["socat", "ss", "timeout", "bash"];
    common::require_root_or_fail("verify_catches_live_drift_and_repair_fixes_it");
    common::require(
        "verify_catches_live_drift_and_repair_fixes_it",
        true,
        &tools,
    );
    let config = common::EXAMPLE;
    let s = Setup {
        name: "verify",
        config: "examples/flannel-docker.toml",
        mode: "classic",
        bridge: "docker0",
        subnet_a: "172.7.21.0/24",
        subnet_b: "172.7.22.0/24",
        extra: None,
    };
    let broad = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
    for (j, backend) in BACKENDS.iter().enumerate() {
        for mode in ["classic", "guard"] {
            let ctx = format!("{mode} [{}]", backend.name);
            let lab = Lab::up(
                s.bridge,
                s.subnet_a,
                s.subnet_b,
                None,
                &format!("v{j}{}", &mode[..1]),
            );
            let a = lab.ns("a");
            let tmp = tempfile::tempdir().unwrap();
            let file = tmp.path().join("iptables");
            let f = file.to_str().unwrap();
            let (code, _, err) = podsnat_in(
                &a,
                &[
                    "write",
                    "--config",
                    config,
                    "--mode",
                    mode,
                    "--no-anchor",
                    "--output",
                    f,
                    "--iptables-restore",
                    backend.restore,
                ],
            );
            assert_eq!(code, 2, "{ctx}: {err}");
            common::ok_in(&a, backend.restore, &["-w", "5", "-T", "nat", f]);
            let kube = tmp.path().join("kube");
            std::fs::write(&kube, common::kube_proxy_rules(300)).unwrap();
            common::ok_in(
                &a,
                backend.restore,
                &["-w", "5", "--noflush", kube.to_str().unwrap()],
            );

            // The drift: docker's restart (classic) or a hand-deleted jump (guard).
            let exclusion = match mode {
                "classic" => {
                    common::docker_standin(&a, backend, "start", "172.7.21.0/24", "docker0", true);
                    "-A POSTROUTING -s 172.7.21.0/24 ! -d 172.7.0.0/16 ! -o docker0 -j MASQUERADE"
                }
                _ => {
                    common::ok_in(
                        &a,
                        backend.iptables,
                        &[
                            "-w",
                            "5",
                            "-t",
                            "nat",
                            "-D",
                            "POSTROUTING",
                            "-s",
                            "172.7.21.0/24",
                            "!",
                            "-o",
                            "docker0",
                            "-j",
                            "PODSNAT-POSTROUTING",
                        ],
                    );
                    "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING"
                }
            };
            let pod_a = "172.7.21.2";
            assert_eq!(
                lab.seen("pa", "pb", "172.7.22.2"),
                NODE_A,
                "{ctx}: the drift is real"
            );

            let verify = [
                "verify",
                "--config",
                config,
                "--mode",
                mode,
                "--no-anchor",
                "--iptables-save",
                backend.save,
                "--iptables-restore",
                backend.restore,
            ];
            let (code, out, err) = podsnat_in(&a, &verify);
            assert_eq!(code, 2, "{ctx}: verify must report drift: {out}{err}");
            let note = if mode == "classic" {
                "inserted above podsnat's exclusion"
            } else {
                "podsnat's exclusion is missing"
            };
            let pos = if mode == "classic" { 1 } else { 2 };
            let want = format!(
                "drift: pod→cluster traffic is masqueraded by POSTROUTING rule {pos}: {broad} ({note})"
            );
            assert!(
                out.starts_with(&want),
                "{ctx}: expected «{want}» in:\n{out}"
            );

            let before = common::saved(&a, backend);
            let mut check = verify.to_vec();
            check.extend(["--repair", "--check"]);
            let (code, out, _) = podsnat_in(&a, &check);
            assert_eq!(code, 2, "{ctx}: {out}");
            assert!(out.contains("would repair with"), "{out}");
            assert_eq!(
                common::saved(&a, backend),
                before,
                "{ctx}: --repair --check changed the table"
            );

            let mut repair = verify.to_vec();
            repair.push("--repair");
            let (code, out, err) = podsnat_in(&a, &repair);
            assert_eq!(code, 2, "{ctx}: repair: {out}{err}");
            let after = common::saved(&a, backend);
            // Only podsnat's lines changed: every other line is the same, in
            // the same order, the KUBE-SERVICES rules among them.
            let ours =
                |l: &&String| l.as_str() == exclusion || (mode == "classic" && l.as_str() == broad);
            let others = |v: &[String]| v.iter().filter(|l| !ours(l)).cloned().collect::<Vec<_>>();
            let (old, new) = (others(&before).join("\n"), others(&after).join("\n"));
            if old != new {
                let diff = similar::TextDiff::from_lines(&old, &new)
                    .unified_diff()
                    .context_radius(1)
                    .to_string();
                panic!("{ctx}: lines other than podsnat's changed:\n{diff}");
            }
            assert_eq!(
                after
                    .iter()
                    .filter(|l| l.starts_with("-A KUBE-SERVICES"))
                    .count(),
                300
            );
            let post: Vec<&String> = after
                .iter()
                .filter(|l| l.starts_with("-A POSTROUTING"))
                .collect();
            assert_eq!(
                post.iter().filter(|l| l.as_str() == exclusion).count(),
                1,
                "{ctx}: {post:?}"
            );
            if mode == "classic" {
                assert!(!post.iter().any(|l| l.as_str() == broad), "{ctx}: {post:?}");
            } else {
                let at = |t: &str| post.iter().position(|l| l.as_str() == t);
                assert!(
                    at(exclusion) < at(broad),
                    "{ctx}: exclusion must sit above docker's rule: {post:?}"
                );
                assert!(
                    post[0].contains("KUBE-POSTROUTING"),
                    "{ctx}: kube-proxy's jump stays first: {post:?}"
                );
            }

            let (code, out, _) = podsnat_in(&a, &verify);
            assert_eq!(code, 0, "{ctx}: verify after repair: {out}");
            assert_eq!(
                lab.seen("pa", "pb", "172.7.22.2"),
                pod_a,
                "{ctx}: pod IP after repair"
            );
            assert_eq!(
                lab.seen("pa", "out", "10.9.0.2"),
                OUTSIDE_SEEN,
                "{ctx}: egress after repair"
            );
        }
    }
}

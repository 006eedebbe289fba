//! The anchor with the real dockerd, on both iptables backends, with no
//! pin at all: docker's stored state (a `--restart always` container
//! publishing a port, `"userland-proxy": false`), a reboot, the boot
//! restore and the anchor before docker, then 3 real restarts. After each:
//! pod B sees pod A's IP and the container's, the outside host sees the
//! node's address, the published port answers from host B, the container
//! reaches its own published port through the node's address (docker's
//! hairpin NAT), and `podsnat verify` answers ok.

use crate::common;

use crate::common::dockerd::{self, Dockerd};
use crate::common::lab::Lab;
use crate::common::{BACKENDS, Backend};

const NODE_A: &str = "10.4.7.21";
const OUTSIDE_SEEN: &str = "10.9.0.1";
const HOST_PORT: &str = "8080";
const RESTARTS: usize = 3;
const FLAGS: [&str; 8] = [
    "--cluster-cidr",
    "172.7.0.0/16",
    "--pod-subnet",
    "172.7.21.0/24",
    "--bridge",
    "docker0",
    "--mode",
    "guard",
];

fn check(lab: &Lab, docker: &Dockerd, backend: &Backend, daemon_json: &str, step: &str) {
    let a = lab.ns("a");
    let dump = || {
        format!(
            "{}\n{}\n{}",
            common::ok_in(&a, backend.save, &[]),
            common::ok_in(&a, "nft", &["list", "ruleset"]),
            docker.log()
        )
    };
    assert_eq!(
        lab.seen("pa", "pb", "172.7.22.2"),
        "172.7.21.2",
        "{step}: pod B must see pod A's IP\n{}",
        dump()
    );
    let out = docker.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.IPAddress}} {{.State.Pid}}",
        "web",
    ]);
    let (ip, pid) = out.trim().split_once(' ').unwrap();
    assert_eq!(
        lab.seen(&format!("pid:{pid}"), "pb", "172.7.22.2"),
        ip,
        "{step}: pod B must see the container's IP\n{}",
        dump()
    );
    assert_eq!(
        lab.seen("pa", "out", "10.9.0.2"),
        OUTSIDE_SEEN,
        "{step}: the outside host must see host A's address"
    );
    assert_eq!(
        lab.http("b", NODE_A, HOST_PORT),
        "hello from the container",
        "{step}: the published port must answer from host B\n{}",
        dump()
    );
    assert_eq!(
        lab.http(&format!("pid:{pid}"), NODE_A, HOST_PORT),
        "hello from the container",
        "{step}: the container must reach its own published port through the node's address (hairpin NAT)\n{}",
        dump()
    );
    let save = format!("--iptables-save={}", backend.save);
    let mut args = vec!["verify", "--docker-config", daemon_json, &save];
    args.extend(FLAGS);
    let (code, text) = common::podsnat_in(&a, &args);
    assert_eq!(code, 0, "{step}: podsnat verify:\n{text}");
    assert!(
        text.contains("keeps the pod source IP; decided by table ip podsnat"),
        "{step}: {text}"
    );
}

/// A node after its boot: docker's stored state, the rules file (and with
/// `anchor` the anchor) restored before docker, docker started.
struct Booted {
    lab: Lab,
    docker: Dockerd,
    daemon_json: String,
    file: String,
    _tmp: tempfile::TempDir,
}

fn boot(backend: &Backend, anchor: bool, tag: &str) -> Booted {
    let ctx = format!("[real dockerd, {}, anchor={anchor}]", backend.name);
    let lab = Lab::up("docker0", "172.7.21.0/24", "172.7.22.0/24", None, tag);
    let a = lab.ns("a");
    let tmp = tempfile::tempdir().unwrap();
    let daemon_json = tmp.path().join("daemon.json").display().to_string();
    std::fs::write(
        &daemon_json,
        "{\"bridge\": \"docker0\", \"fixed-cidr\": \"172.7.21.128/25\", \"userland-proxy\": false}\n",
    )
    .unwrap();
    let docker = Dockerd::new(&a, backend, &["--config-file", &daemon_json]);
    docker.stored_state(HOST_PORT);
    // A reboot empties the nat table.
    for args in [["-t", "nat", "-F"], ["-t", "nat", "-X"]] {
        common::ok_in(&a, backend.iptables, &args);
    }
    let file = tmp.path().join("rules.v4").display().to_string();
    let nft = tmp.path().join("podsnat.nft").display().to_string();
    let restore = format!("--iptables-restore={}", backend.restore);
    let mut write = vec!["write", "--output", &file, "--anchor-file", &nft, &restore];
    write.extend(FLAGS);
    if !anchor {
        write.push("--no-anchor");
    }
    let (code, out) = common::podsnat_in(&a, &write);
    assert_eq!(code, 2, "{ctx}: podsnat write: {out}");
    // Boot, as the units do: podsnat.service and podsnat-anchor.service
    // before docker.service.
    common::ok_in(&a, backend.restore, &["-w", "5", "-T", "nat", &file]);
    if anchor {
        common::ok_in(&a, "nft", &["-f", &nft]);
    }
    docker.start();
    if !anchor {
        // podsnat-pin.service, pulled in by docker's start at boot.
        let out = common::pin_in(&a, &file, backend);
        assert_eq!(out.status.code(), Some(2), "{ctx}: the pin at boot");
    }
    Booted {
        lab,
        docker,
        daemon_json,
        file,
        _tmp: tmp,
    }
}

#[test]
fn real_dockerd_with_the_anchor_and_no_pin() {
    let mut progs = dockerd::TOOLS.to_vec();
    progs.extend(["ip", "nft", "iptables-nft", "iptables-legacy"]);
    common::require_root_or_fail("real_dockerd_with_the_anchor_and_no_pin");
    common::require("real_dockerd_with_the_anchor_and_no_pin", true, &progs);
    for (j, backend) in BACKENDS.iter().enumerate() {
        let ctx = format!("[anchor, real dockerd, {}]", backend.name);
        // `_tmp` is bound, not dropped: it holds daemon.json.
        let Booted {
            lab,
            docker,
            daemon_json,
            _tmp,
            ..
        } = boot(backend, true, &format!("ad{j}"));
        let a = lab.ns("a");
        // No pin, at boot or after any restart.
        check(
            &lab,
            &docker,
            backend,
            &daemon_json,
            &format!("{ctx} after boot"),
        );
        for i in 1..=RESTARTS {
            docker.stop();
            docker.start();
            // docker's start really put its broad rule above podsnat's jump.
            let saved = common::saved(&a, backend);
            let at = |rule: &str| saved.iter().position(|l| l.starts_with(rule));
            let broad = at("-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE");
            let ours = at("-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING");
            assert!(
                broad.is_some() && ours.is_some() && broad < ours,
                "{ctx}: restart {i}: docker's rule must stand above podsnat's: {saved:?}"
            );
            check(
                &lab,
                &docker,
                backend,
                &daemon_json,
                &format!("{ctx} after restart {i}"),
            );
        }
    }
}

/// New pod A → pod B connections, one every 20 ms, across one real
/// `docker` stop and start: how many reached pod B from the node's address.
/// With the anchor none may; with guard + the pin (run the moment docker
/// answers, the best case for podsnat-pin.service) the count is reported.
fn probe_across_a_restart(b: &Booted, backend: &Backend, pin: bool) -> (usize, usize) {
    let (pa, pb) = (b.lab.ns("pa"), b.lab.ns("pb"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("seen");
    let stop = dir.path().join("stop");
    let listener = std::process::Command::new("ip")
        // `ip netns exec` execs socat itself, so killing the child stops it.
        .args([
            "netns",
            "exec",
            &pb,
            "socat",
            "TCP-LISTEN:9090,bind=172.7.22.2,fork,reuseaddr",
        ])
        .arg(format!(
            "SYSTEM:echo $(date +%s.%N) $SOCAT_PEERADDR >> {}",
            log.display()
        ))
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let script = format!(
        "while [ ! -e {stop} ]; do socat -T 1 - TCP:172.7.22.2:9090,connect-timeout=1 </dev/null >/dev/null 2>&1; sleep 0.02; done",
        stop = stop.display()
    );
    let mut probe = std::process::Command::new("ip")
        .args(["netns", "exec", &pa, "timeout", "60", "bash", "-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    b.docker.stop();
    b.docker.start();
    if pin {
        let out = common::pin_in(&b.lab.ns("a"), &b.file, backend);
        assert_eq!(
            out.status.code(),
            Some(2),
            "the pin must move podsnat's rules"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1000));
    std::fs::write(&stop, "").unwrap();
    probe.wait().unwrap();
    let mut listener = listener;
    let _ = listener.kill();
    let _ = listener.wait();
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    let all = seen.lines().count();
    let from_node = seen.lines().filter(|l| l.trim() == NODE_A).count();
    (from_node, all)
}

#[test]
fn no_connection_loses_the_pod_ip_across_a_docker_restart_with_the_anchor() {
    let mut progs = dockerd::TOOLS.to_vec();
    progs.extend(["ip", "nft", "bash", "iptables-nft", "iptables-legacy"]);
    let name = "no_connection_loses_the_pod_ip_across_a_docker_restart_with_the_anchor";
    common::require_root_or_fail(name);
    common::require(name, true, &progs);
    for (j, backend) in BACKENDS.iter().enumerate() {
        let anchored = boot(backend, true, &format!("pa{j}"));
        let (lost, all) = probe_across_a_restart(&anchored, backend, false);
        assert!(
            all >= 20,
            "[{}] the probe made only {all} connections",
            backend.name
        );
        assert_eq!(
            lost, 0,
            "[{}] with the anchor, {lost} of {all} connections reached pod B from the node's address",
            backend.name
        );
        drop(anchored);
        let pinned = boot(backend, false, &format!("pp{j}"));
        let (lost_pin, all_pin) = probe_across_a_restart(&pinned, backend, true);
        assert!(
            all_pin >= 20,
            "[{}] the probe made only {all_pin} connections",
            backend.name
        );
        eprintln!(
            "[{}] one docker restart, a connection every 20 ms: anchor {lost} of {all} from the node's address; guard + pin {lost_pin} of {all_pin}",
            backend.name
        );
    }
}

//! The central promise with the real dockerd (Debian's docker.io) on host A
//! of the two-host lab: pod traffic to another host keeps the pod source
//! IP at boot and after real docker restarts, egress is still masqueraded,
//! a restart-policy container's published port answers from another host
//! and from the container itself through the node's address (hairpin NAT:
//! docker runs with "userland-proxy": false), and kube-proxy-style rules
//! stay as they were, in guard, owner and classic mode on both backends.
//!
//! A node is set up as a real one looks: docker's stored state (dockerd ran
//! once with a `--restart always -p` container and was stopped), then a
//! "reboot" (the nat table emptied), then the boot order of the units:
//! podsnat.service's restore, dockerd, podsnat-pin.service (`podsnat pin`),
//! then kube-proxy's rules. Each docker restart is followed by the pin, as
//! podsnat-pin.service (WantedBy=docker.service) does on a node.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::dockerd::{self, Dockerd};
use crate::common::lab::Lab;
use crate::common::{self, BACKENDS, Backend};

const NODE_A: &str = "10.4.7.21";
const OUTSIDE_SEEN: &str = "10.9.0.1"; // host A's address on the outside link
const RESTARTS: usize = 3;
const HOST_PORT: &str = "8080";

/// A node's settings: held-out in the sense that the two differ in every
/// value podsnat reads.
struct Node {
    cluster: &'static str,
    bridge: &'static str,
    subnet_a: &'static str,
    subnet_b: &'static str,
}

impl Node {
    /// The node's settings as podsnat's flags.
    fn flags(&self, mode: &str) -> Vec<String> {
        [
            "--cluster-cidr",
            self.cluster,
            "--pod-subnet",
            self.subnet_a,
            "--bridge",
            self.bridge,
            "--mode",
            mode,
            // The iptables-only path (guard or owner, plus the pin) that
            // this test proves; tests/it/anchor.rs covers the anchor.
            "--no-anchor",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

const EXAMPLE: Node = Node {
    cluster: "172.7.0.0/16",
    bridge: "docker0",
    subnet_a: "172.7.21.0/24",
    subnet_b: "172.7.22.0/24",
};

const OTHER: Node = Node {
    cluster: "10.244.0.0/16",
    bridge: "cni0",
    subnet_a: "10.244.1.0/24",
    subnet_b: "10.244.2.0/24",
};

/// Where the boot restore runs relative to docker.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Order {
    /// podsnat.service as installed: Before=docker.service.
    BeforeDocker,
    /// The old After=docker.service ordering.
    AfterDocker,
}

fn pod(subnet: &str) -> String {
    subnet.replace(".0/24", ".2")
}

struct Run<'a> {
    node: &'a Node,
    backend: &'a Backend,
    lab: Lab,
    docker: Dockerd,
    file: String,
    /// docker's daemon.json, for verify.
    daemon_json: String,
    spec: Vec<String>,
    /// kube-proxy's rules as they were after boot.
    kube: Vec<String>,
    ctx: String,
}

impl Run<'_> {
    fn a(&self) -> String {
        self.lab.ns("a")
    }

    fn verify(&self) -> (i32, String) {
        let mut args = vec!["verify".to_owned()];
        args.extend(self.spec.iter().cloned());
        args.extend([
            "--iptables-save".to_owned(),
            self.backend.save.to_owned(),
            "--docker-config".to_owned(),
            self.daemon_json.clone(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::podsnat_in(&self.a(), &args)
    }

    /// What podsnat-pin.service runs; returns its exit code and duration.
    fn pin(&self) -> (i32, Duration) {
        let t = Instant::now();
        let pinned = common::pin_in(&self.a(), &self.file, self.backend);
        let code = pinned.status.code().unwrap_or(-1);
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&pinned.stdout),
            String::from_utf8_lossy(&pinned.stderr)
        );
        assert!(code == 0 || code == 2, "{}: pin failed: {out}", self.ctx);
        (code, t.elapsed())
    }

    fn restore_file(&self) {
        common::ok_in(
            &self.a(),
            self.backend.restore,
            &["-w", "5", "-T", "nat", &self.file],
        );
    }

    fn container(&self) -> (String, String) {
        let f = "{{.NetworkSettings.IPAddress}} {{.State.Pid}}";
        let out = self.docker.ok(&["inspect", "-f", f, "web"]);
        let (ip, pid) = out.split_once(' ').unwrap();
        (ip.to_owned(), pid.to_owned())
    }

    /// The whole ruleset and docker's log, for a failure message.
    fn dump(&self) -> String {
        format!(
            "{}\n{}",
            common::ok_in(&self.a(), self.backend.save, &[]),
            self.docker.log()
        )
    }

    /// Every promise, after boot or after a restart.
    fn check(&self, step: &str, port_map_expected: bool) {
        let ctx = format!("{} {step}", self.ctx);
        let (pod_a, pod_b) = (pod(self.node.subnet_a), pod(self.node.subnet_b));
        assert_eq!(
            self.lab.seen("pa", "pb", &pod_b),
            pod_a,
            "{ctx}: pod B must see pod A's IP\n{}",
            self.dump()
        );
        let (ip, pid) = self.container();
        assert_eq!(
            self.lab.seen(&format!("pid:{pid}"), "pb", &pod_b),
            ip,
            "{ctx}: pod B must see the container's IP\n{}",
            self.dump()
        );
        assert_eq!(
            self.lab.seen("pa", "out", "10.9.0.2"),
            OUTSIDE_SEEN,
            "{ctx}: the outside host must see host A's IP"
        );
        let answer = self.lab.http("b", NODE_A, HOST_PORT);
        if port_map_expected {
            assert_eq!(
                answer, "hello from the container",
                "{ctx}: the published port must answer from host B"
            );
            // Hairpin NAT: the container reaches its own published port
            // through the node's address, which needs docker's masquerade
            // for traffic leaving through the bridge.
            assert_eq!(
                self.lab.http(&format!("pid:{pid}"), NODE_A, HOST_PORT),
                "hello from the container",
                "{ctx}: the container must reach its own published port through the node's address\n{}",
                self.dump()
            );
        } else {
            assert_eq!(answer, "none", "{ctx}: the port map should be gone");
        }
        let kube = kube_lines(&self.a(), self.backend);
        assert_eq!(kube, self.kube, "{ctx}: kube-proxy's rules changed");
        let (code, out) = self.verify();
        assert_eq!(code, 0, "{ctx}: podsnat verify: {out}");
        // docker 20.10 does not drop traffic routed into its bridge: the
        // forward path of the real filter table is judged ok.
        assert!(
            out.contains("ok: cluster→pod traffic to this node's pods is forwarded to the bridge"),
            "{ctx}: {out}"
        );
    }
}

impl Run<'_> {
    /// podsnat's earlier jump, without `! -o BRIDGE`, on top: the container
    /// no longer reaches its own published port (the check above can fail),
    /// verify names the jump, and the pin replaces it.
    fn earlier_jump_breaks_the_hairpin_and_the_pin_replaces_it(&self) {
        let ctx = format!("{} earlier jump", self.ctx);
        let (_, pid) = self.container();
        let hairpin = || self.lab.http(&format!("pid:{pid}"), NODE_A, HOST_PORT);
        common::ok_in(
            &self.a(),
            self.backend.iptables,
            &[
                "-w",
                "5",
                "-t",
                "nat",
                "-I",
                "POSTROUTING",
                "1",
                "-s",
                self.node.subnet_a,
                "-j",
                "PODSNAT-POSTROUTING",
            ],
        );
        assert_eq!(
            hairpin(),
            "none",
            "{ctx}: the earlier jump takes the hairpin NAT away"
        );
        let (code, text) = self.verify();
        assert_eq!(code, 2, "{ctx}: {text}");
        assert!(text.contains("podsnat's earlier jump"), "{ctx}: {text}");
        assert_eq!(self.pin().0, 2, "{ctx}: the pin replaces it");
        assert_eq!(
            hairpin(),
            "hello from the container",
            "{ctx}: after the pin"
        );
        assert_eq!(self.verify().0, 0, "{ctx}: after the pin");
    }
}

fn kube_lines(ns: &str, backend: &Backend) -> Vec<String> {
    common::saved(ns, backend)
        .into_iter()
        .filter(|l| l.contains("KUBE"))
        .collect()
}

/// One node through boot and `restarts` docker restarts, podsnat in
/// `mode`. In owner mode docker runs with --ip-masq=false, so nothing is
/// ever moved.
fn real_node(
    node: &Node,
    backend: &Backend,
    order: Order,
    mode: &str,
    restarts: usize,
    tag: &str,
) -> Vec<Duration> {
    let owner = mode == "owner";
    let ctx = format!("[{} {} {order:?} {mode}]", node.bridge, backend.name);
    let lab = Lab::up(node.bridge, node.subnet_a, node.subnet_b, None, tag);
    let a = lab.ns("a");
    let fixed = node.subnet_a.replace(".0/24", ".128/25");
    // docker's settings in its own daemon.json, which verify reads too.
    // "userland-proxy": false: a published port then answers only through
    // docker's DNAT rule (docker-proxy would answer without it).
    let tmp = tempfile::tempdir().unwrap();
    let daemon_json = tmp.path().join("daemon.json").display().to_string();
    std::fs::write(
        &daemon_json,
        format!(
            "{{\"bridge\": \"{}\", \"fixed-cidr\": \"{fixed}\", \"userland-proxy\": false, \"ip-masq\": {}}}\n",
            node.bridge, !owner
        ),
    )
    .unwrap();
    let docker = Dockerd::new(&a, backend, &["--config-file", &daemon_json]);

    // docker's stored state: a first start, a restart-policy container with
    // a published port, a stop. Then a reboot empties the nat table.
    docker.stored_state(HOST_PORT);
    for args in [["-t", "nat", "-F"], ["-t", "nat", "-X"]] {
        common::ok_in(&a, backend.iptables, &args);
    }

    let file = tmp.path().join("iptables").display().to_string();
    let spec = node.flags(mode);
    let mut write: Vec<&str> = vec![
        "write",
        "--output",
        &file,
        "--iptables-restore",
        backend.restore,
    ];
    write.extend(spec.iter().map(String::as_str));
    let (code, out) = common::podsnat_in(&a, &write);
    assert_eq!(code, 2, "{ctx}: podsnat write: {out}");

    let mut run = Run {
        node,
        backend,
        lab,
        docker,
        file,
        daemon_json,
        spec,
        kube: Vec::new(),
        ctx,
    };

    // Boot.
    match order {
        Order::BeforeDocker => {
            run.restore_file();
            run.docker.start();
        }
        Order::AfterDocker => {
            run.docker.start();
            run.restore_file();
        }
    }
    let (code, verify) = run.verify();
    if order == Order::BeforeDocker {
        // docker's start really did move its rule above podsnat's exclusion
        // (in owner mode docker leaves POSTROUTING alone).
        assert_eq!(
            code,
            if owner { 0 } else { 2 },
            "{}: before the pin: {verify}",
            run.ctx
        );
    }
    run.pin();
    let kube = Path::new(tmp.path()).join("kube");
    std::fs::write(&kube, common::kube_proxy_rules(50)).unwrap();
    common::ok_in(
        &run.a(),
        backend.restore,
        &["-w", "5", "--noflush", kube.to_str().unwrap()],
    );
    run.kube = kube_lines(&run.a(), backend);
    assert!(run.kube.len() > 50, "{}: {:?}", run.ctx, run.kube);
    // A whole-table restore after docker deletes the port maps docker just
    // made; before docker, docker makes them on top of the restored table.
    run.check("after boot", order == Order::BeforeDocker);
    if mode != "classic" && order == Order::BeforeDocker {
        run.earlier_jump_breaks_the_hairpin_and_the_pin_replaces_it();
    }

    let mut pins = Vec::new();
    for i in 1..=restarts {
        run.docker.stop();
        run.docker.start();
        let (code, verify) = run.verify();
        let moved = if owner { 0 } else { 2 };
        assert_eq!(
            code, moved,
            "{}: restart {i}: docker's start must move its rule on top again (not in owner mode): {verify}",
            run.ctx
        );
        let (code, took) = run.pin();
        assert_eq!(
            code, moved,
            "{}: restart {i}: the pin must move podsnat's rules (owner mode: nothing to move)",
            run.ctx
        );
        pins.push(took);
        assert_eq!(run.pin().0, 0, "{}: a second pin changes nothing", run.ctx);
        run.check(&format!("after restart {i}"), true);
    }
    pins
}

#[test]
fn real_dockerd_keeps_the_pod_ip_across_restarts() {
    let mut progs = dockerd::TOOLS.to_vec();
    progs.extend(["ip", "iptables-nft", "iptables-legacy"]);
    common::require_root_or_fail("real_dockerd_keeps_the_pod_ip_across_restarts");
    common::require(
        "real_dockerd_keeps_the_pod_ip_across_restarts",
        true,
        &progs,
    );
    let [nft, legacy] = &BACKENDS;
    // Every mode on both backends at boot (BeforeDocker) and after
    // after restarts; two guard runs with the old After=docker ordering.
    let runs = [
        (&EXAMPLE, nft, Order::BeforeDocker, "guard", RESTARTS),
        (&EXAMPLE, legacy, Order::AfterDocker, "guard", RESTARTS),
        (&OTHER, legacy, Order::BeforeDocker, "guard", RESTARTS),
        (&OTHER, nft, Order::AfterDocker, "guard", RESTARTS),
        (&OTHER, nft, Order::BeforeDocker, "owner", RESTARTS),
        (&EXAMPLE, legacy, Order::BeforeDocker, "owner", 1),
        (&EXAMPLE, nft, Order::BeforeDocker, "classic", 1),
        (&OTHER, legacy, Order::BeforeDocker, "classic", 1),
    ];
    for (i, (node, backend, order, mode, restarts)) in runs.into_iter().enumerate() {
        let pins = real_node(node, backend, order, mode, restarts, &format!("d{i}"));
        eprintln!(
            "real dockerd [{} {} {order:?} {mode}]: pin after each restart took {pins:?}",
            node.bridge, backend.name
        );
    }
}

/// The boot test's stand-in for dockerd (tests/docker-standin.sh) leaves
/// the same nat table as the real dockerd, started on a node with stored
/// state (a restart-policy container with a published port) after podsnat's
/// table was restored, then stopped, then started again: the stand-in
/// cannot drift from the real thing.
#[test]
fn the_stand_in_does_what_the_real_dockerd_does() {
    let mut progs = dockerd::TOOLS.to_vec();
    progs.extend(["ip", "sh"]);
    common::require_root_or_fail("the_stand_in_does_what_the_real_dockerd_does");
    common::require("the_stand_in_does_what_the_real_dockerd_does", true, &progs);
    let [nft, legacy] = &BACKENDS;
    // (node, backend, docker's ip-masq); without ip-masq the node runs owner mode.
    let runs = [
        (&EXAMPLE, nft, true),
        (&EXAMPLE, legacy, true),
        (&OTHER, nft, true),
        (&OTHER, legacy, true),
        (&EXAMPLE, nft, false),
    ];
    for (node, backend, ip_masq) in runs {
        let ctx = format!("[{} {} ip-masq={ip_masq}]", node.bridge, backend.name);
        let flags = node.flags(if ip_masq { "guard" } else { "owner" });
        let table = common::render_example(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("nat");
        std::fs::write(&file, &table).unwrap();
        let file = file.to_str().unwrap();
        let node_ns = || {
            let ns = common::Netns::new();
            let gw = node.subnet_a.replace(".0/24", ".1/24");
            for args in [
                vec!["link", "add", node.bridge, "type", "bridge"],
                vec!["addr", "add", &gw, "dev", node.bridge],
                vec!["link", "set", node.bridge, "up"],
            ] {
                ns.ok("ip", &args);
            }
            ns
        };

        // The real dockerd: stored state, a reboot, the restore, a start.
        let real_ns = node_ns();
        let fixed = node.subnet_a.replace(".0/24", ".128/25");
        let docker = Dockerd::new(
            &real_ns.name,
            backend,
            &[
                "--bridge",
                node.bridge,
                "--fixed-cidr",
                &fixed,
                if ip_masq {
                    "--ip-masq=true"
                } else {
                    "--ip-masq=false"
                },
            ],
        );
        docker.stored_state("8080");
        real_ns.ok(backend.iptables, &["-t", "nat", "-F"]);
        real_ns.ok(backend.iptables, &["-t", "nat", "-X"]);
        real_ns.ok(backend.restore, &["-w", "5", "-T", "nat", file]);
        let mut real = Vec::new();
        docker.start();
        let ip = docker.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"]);
        real.push(common::saved(&real_ns.name, backend));
        docker.stop();
        real.push(common::saved(&real_ns.name, backend));
        docker.start();
        real.push(common::saved(&real_ns.name, backend));
        docker.stop();

        // The stand-in, from the same restored table.
        let standin_ns = node_ns();
        standin_ns.ok(backend.restore, &["-w", "5", "-T", "nat", file]);
        let mut stand_in = Vec::new();
        assert_eq!(ip, node.subnet_a.replace(".0/24", ".128"), "{ctx}");
        for action in ["start", "stop", "start"] {
            common::docker_standin(
                &standin_ns.name,
                backend,
                action,
                node.subnet_a,
                node.bridge,
                ip_masq,
            );
            stand_in.push(common::saved(&standin_ns.name, backend));
        }
        for (i, step) in ["start", "stop", "second start"].iter().enumerate() {
            assert_eq!(
                stand_in[i], real[i],
                "{ctx} after {step}: the stand-in's nat table (left) differs from the real dockerd's (right)"
            );
        }
        let real = &real[0];
        if !ip_masq {
            continue;
        }
        // And docker's rule really is on top of podsnat's exclusion.
        let post: Vec<&String> = real
            .iter()
            .filter(|l| l.starts_with("-A POSTROUTING"))
            .collect();
        assert!(
            post[0].ends_with("-j MASQUERADE") && post[1].contains("PODSNAT"),
            "{ctx}: {post:?}"
        );
    }
}

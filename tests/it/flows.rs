//! Live flows, for real: in the two-host lab (dual stack, both iptables
//! backends), pod A sends a fixed-port UDP stream and holds a TCP
//! connection to pod B, in both families, while docker's broad rule
//! masquerades them; a kube-proxy-style service (mark, DNAT, the mark's
//! masquerade) carries one more TCP connection. Then podsnat's anchor is
//! put in force. The kernel keeps each flow's NAT: pod B still sees the
//! node's address, and verify says so (exit 2), counting neither the
//! service's DNATed flow nor anything else. `--repair` deletes the UDP
//! flows (the stream arrives from the pod's IP at once) and leaves the
//! connections, saying so; `--reset-connections` resets them (the client
//! reconnects with the pod's IP), the service's connection untouched;
//! verify is then ok. tests/it/flows/peer.py is both ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use crate::common::{self, BACKENDS, Backend, lab::Lab};

const POD_A: &str = "172.7.21.2";
const POD_B: &str = "172.7.22.2";
const POD6_A: &str = "fd00:7:0:21::2";
const POD6_B: &str = "fd00:7:0:22::2";
const NODE_A: &str = "10.4.7.21";
const NODE6_A: &str = "fd00:4:7::21";
const SERVICE: &str = "10.96.0.10";

const CONFIG: &str = "cluster_cidr = \"172.7.0.0/16\"
pod_subnet = \"172.7.21.0/24\"
cluster_cidr_v6 = \"fd00:7::/48\"
pod_subnet_v6 = \"fd00:7:0:21::/64\"
no_masquerade = [\"10.96.0.0/12\"]
";

/// A peer.py process, killed when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn peer(ns: &str, args: &[&str]) -> Peer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/flows/peer.py");
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(script)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Peer(child)
}

/// The sources pod B's UDP socket saw over the next 0.6 s.
fn udp_sources(log: &Path) -> Vec<String> {
    fs::write(log, "").unwrap();
    sleep(Duration::from_millis(600));
    let mut seen: Vec<String> = fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("udp "))
        .map(str::to_owned)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}

fn verify(lab: &Lab, backend: &Backend, dir: &Path, extra: &[&str]) -> (i32, String) {
    let (config, anchor) = (dir.join("node.toml"), dir.join("podsnat.nft"));
    let mut args = vec![
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--anchor-file",
        anchor.to_str().unwrap(),
        "--iptables-save",
        backend.save,
        "--ip6tables-save",
        backend.of(podsnat::Family::V6).save,
    ];
    args.extend(extra);
    common::podsnat_in(&lab.ns("a"), &args)
}

fn in_a(lab: &Lab, prog: &str, args: &[&str]) {
    common::ok_in(&lab.ns("a"), prog, args);
}

#[test]
fn flows_set_up_before_the_fix_are_found_and_cleared() {
    let test = "flows_set_up_before_the_fix_are_found_and_cleared";
    common::require_root_or_fail(test);
    common::require(test, true, &["conntrack", "python3", "nft", "bash"]);
    for (i, backend) in BACKENDS.iter().enumerate() {
        let b = backend.name;
        let six = backend.of(podsnat::Family::V6);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("node.toml"), CONFIG).unwrap();
        let lab = Lab::dual(
            "docker0",
            ("172.7.21.0/24", "172.7.22.0/24"),
            ("fd00:7:0:21::/64", "fd00:7:0:22::/64"),
            &format!("f{i}"),
        );
        // The problem: docker's broad rule, both families; and a service
        // as kube-proxy writes one: mark, DNAT, the mark's masquerade.
        for (prog, subnet) in [
            (backend.iptables, "172.7.21.0/24"),
            (six.iptables, "fd00:7:0:21::/64"),
        ] {
            in_a(
                &lab,
                prog,
                &[
                    "-w",
                    "5",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-s",
                    subnet,
                    "!",
                    "-o",
                    "docker0",
                    "-j",
                    "MASQUERADE",
                ],
            );
        }
        let svc = [
            "-w",
            "5",
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            SERVICE,
            "-p",
            "tcp",
            "--dport",
            "7001",
        ];
        in_a(
            &lab,
            backend.iptables,
            &[&svc[..], &["-j", "MARK", "--set-xmark", "0x4000/0x4000"]].concat(),
        );
        in_a(
            &lab,
            backend.iptables,
            &[
                &svc[..],
                &["-j", "DNAT", "--to-destination", "172.7.22.2:7000"],
            ]
            .concat(),
        );
        in_a(
            &lab,
            backend.iptables,
            &[
                "-w",
                "5",
                "-t",
                "nat",
                "-I",
                "POSTROUTING",
                "1",
                "-m",
                "mark",
                "--mark",
                "0x4000/0x4000",
                "-j",
                "MASQUERADE",
            ],
        );

        let log = |n: &str| dir.join(n).to_str().unwrap().to_owned();
        let (server, c4, c6, cs) = (
            log("server.log"),
            log("c4.log"),
            log("c6.log"),
            log("svc.log"),
        );
        let _server = peer(&lab.ns("pb"), &["serve", &server, POD_B, POD6_B]);
        sleep(Duration::from_millis(400));
        let _c4 = peer(&lab.ns("pa"), &["send", &c4, POD_A, POD_B]);
        let _c6 = peer(&lab.ns("pa"), &["send", &c6, POD6_A, POD6_B]);
        let _cs = peer(&lab.ns("pa"), &["send", &cs, POD_A, SERVICE, "7001"]);
        sleep(Duration::from_millis(500));
        let server = PathBuf::from(server);
        // Both streams running (a new lab's IPv6 takes a moment).
        let mut first = udp_sources(&server);
        for _ in 0..8 {
            if first.len() == 2 {
                break;
            }
            first = udp_sources(&server);
        }
        assert_eq!(first, [NODE_A, NODE6_A], "{b}: before the fix");

        // The fix: podsnat's anchor. The flows keep the node's address.
        let anchor = Command::new(common::podsnat_bin())
            .args(["render", "--anchor", "--config"])
            .arg(dir.join("node.toml"))
            .output()
            .unwrap();
        fs::write(dir.join("podsnat.nft"), &anchor.stdout).unwrap();
        in_a(
            &lab,
            "nft",
            &["-f", dir.join("podsnat.nft").to_str().unwrap()],
        );
        assert_eq!(
            udp_sources(&server),
            [NODE_A, NODE6_A],
            "{b}: the kernel keeps the flows' NAT"
        );
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 2, "{b}:\n{out}");
        // Two flows per family: the service's DNATed one is not counted.
        for named in [
            "drift: 2 live flows from the pod subnet to the cluster still carry the node's address (tcp 1, udp 1)",
            "udp 172.7.21.2:5140 -> 172.7.22.2:5140 seen as 10.4.7.21",
            "udp [fd00:7:0:21::2]:5140 -> [fd00:7:0:22::2]:5140 seen as fd00:4:7::21",
            "-> 172.7.22.2:7000 seen as 10.4.7.21",
        ] {
            assert!(out.contains(named), "{b}: no {named:?} in\n{out}");
        }
        assert_eq!(out.matches("drift: 2 live flows").count(), 2, "{b}:\n{out}");

        // --repair: the datagrams take the fixed path; the connections stay.
        let (code, out) = verify(&lab, backend, dir, &["--repair"]);
        assert_eq!(code, 2, "{b}: the repair changed the node:\n{out}");
        assert_eq!(
            out.matches("deleted 1 datagram flow and 0 connections")
                .count(),
            2,
            "{b}:\n{out}"
        );
        assert_eq!(
            out.matches("left 1 connection that still carries the node's address")
                .count(),
            2,
            "{b}:\n{out}"
        );
        assert_eq!(udp_sources(&server), [POD_A, POD6_A], "{b}: after --repair");
        for client in [&c4, &c6, &cs] {
            assert!(
                !fs::read_to_string(client).unwrap().contains("reset"),
                "{b}: {client} was reset"
            );
        }

        // --reset-connections: the clients reconnect with the pods' IPs.
        let (code, out) = verify(&lab, backend, dir, &["--repair", "--reset-connections"]);
        assert_eq!(code, 2, "{b}:\n{out}");
        assert_eq!(
            out.matches("deleted 0 datagram flows and 1 connection")
                .count(),
            2,
            "{b}:\n{out}"
        );
        sleep(Duration::from_millis(1500));
        let seen = fs::read_to_string(&server).unwrap();
        for reconnected in [format!("tcp {POD_A}"), format!("tcp {POD6_A}")] {
            assert!(
                seen.contains(&reconnected),
                "{b}: no {reconnected:?} in\n{seen}"
            );
        }
        for client in [&c4, &c6] {
            assert!(
                fs::read_to_string(client).unwrap().contains("reset"),
                "{b}: {client} kept its connection"
            );
        }
        assert!(
            !fs::read_to_string(&cs).unwrap().contains("reset"),
            "{b}: the service's connection was reset"
        );
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 0, "{b}:\n{out}");
        assert_eq!(
            out.matches(
                "ok: no live flows from the pod subnet to the cluster carry the node's address"
            )
            .count(),
            2,
            "{b}:\n{out}"
        );
        // The service's flow is still there, source-NATed, and not counted.
        let listed = common::ok_in(
            &lab.ns("a"),
            "conntrack",
            &["-L", "-d", SERVICE, "--src-nat"],
        );
        assert!(listed.contains("dport=7001"), "{b}: {listed}");
    }
}

/// Output conntrack never prints is refused, naming the command and the
/// line, and nothing is guessed: a stand-in that prints one such line (the
/// real conntrack's format, tests/it/flows.rs above, with a terminal
/// escape in it).
#[test]
fn odd_conntrack_output_is_refused_by_name() {
    let test = "odd_conntrack_output_is_refused_by_name";
    common::require_root_or_fail(test);
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("conntrack");
    fs::write(
        &fake,
        "#!/bin/sh\nprintf 'udp 17 29 src=172.7.21.2 dst=172.7.22.2 sport=1 dport=2 src=172.7.22.2 dst=10.4.7.21\\033[2J sport=2 dport=1\\n'\n",
    )
    .unwrap();
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ns = common::Netns::new();
    let out = ns.exec(
        common::podsnat_bin(),
        &[
            "verify",
            "--cluster-cidr",
            "172.7.0.0/16",
            "--pod-subnet",
            "172.7.21.0/24",
            "--no-anchor",
            "--conntrack",
            fake.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = common::text(&out.stderr);
    assert!(
        err.contains("-L -f ipv4 -s 172.7.21.0/24 --src-nat: line 1: podsnat cannot read it\n  caused by: has the byte 0x1b at offset 84, which conntrack never prints"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// The pin (anchor = false): docker's start put its broad rule on top, and a
/// fixed-port UDP stream started meanwhile is masqueraded; the pin puts
/// podsnat's rules back and deletes that flow, so the stream's next
/// datagram arrives from the pod's IP at once. Both backends.
#[test]
fn the_pin_clears_the_datagram_flows_of_docker_start() {
    let test = "the_pin_clears_the_datagram_flows_of_docker_start";
    common::require_root_or_fail(test);
    common::require(test, true, &["conntrack", "python3", "bash"]);
    for (i, backend) in BACKENDS.iter().enumerate() {
        let b = backend.name;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(
            dir.join("node.toml"),
            "cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\nanchor = false\n",
        )
        .unwrap();
        let lab = Lab::up(
            "docker0",
            "172.7.21.0/24",
            "172.7.22.0/24",
            None,
            &format!("p{i}"),
        );
        let rules = dir.join("iptables");
        let (config, file) = (dir.join("node.toml"), rules.to_str().unwrap());
        let out = common::exec_in(
            &lab.ns("a"),
            common::podsnat_bin(),
            &[
                "write",
                "--config",
                config.to_str().unwrap(),
                "--output",
                file,
                "--iptables-restore",
                backend.restore,
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "{b}: {}",
            common::text(&out.stderr)
        );
        in_a(&lab, backend.restore, &["-w", "5", "-T", "nat", file]);
        // docker starts: its broad rule goes on top; a stream starts.
        in_a(
            &lab,
            backend.iptables,
            &[
                "-w",
                "5",
                "-t",
                "nat",
                "-I",
                "POSTROUTING",
                "1",
                "-s",
                "172.7.21.0/24",
                "!",
                "-o",
                "docker0",
                "-j",
                "MASQUERADE",
            ],
        );
        let server = dir.join("server.log");
        let _server = peer(&lab.ns("pb"), &["serve", server.to_str().unwrap(), POD_B]);
        sleep(Duration::from_millis(400));
        let client = dir.join("client.log");
        let _client = peer(
            &lab.ns("pa"),
            &["send", client.to_str().unwrap(), POD_A, POD_B],
        );
        sleep(Duration::from_millis(300));
        assert_eq!(udp_sources(&server), [NODE_A], "{b}: docker's rule on top");

        let pin = common::exec_in(
            &lab.ns("a"),
            common::podsnat_bin(),
            &[
                "pin",
                "--file",
                file,
                "--iptables-save",
                backend.save,
                "--iptables-restore",
                backend.restore,
            ],
        );
        let text = common::text(&pin.stdout);
        assert_eq!(
            pin.status.code(),
            Some(2),
            "{b}: {text}{}",
            common::text(&pin.stderr)
        );
        assert!(
            text.contains("deleted 1 datagram flow that carried the node's address, with `conntrack -D -f ipv4 -p udp -s 172.7.21.0/24 -d 172.7.0.0/16 --src-nat`"),
            "{b}: {text}"
        );
        assert_eq!(udp_sources(&server), [POD_A], "{b}: after the pin");
    }
}

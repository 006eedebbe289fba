//! Docker 28's and 29's forward path, for real (only docker 20.10 runs
//! here): docker 28's filter and raw tables as moby writes them
//! (integration/network/bridge/iptablesdoc/generated/new-daemon.md and
//! usernet-portmap.md) loaded into the lab's host A by the real
//! iptables-restore of each backend, docker 29's nftables table
//! (nftablesdoc/generated/new-daemon.md, tests/corpus/docker-29-nftables)
//! by the real nft, and traffic from pod B on host B to pod A. What verify
//! says of cluster→pod traffic must be what the traffic does: dropped by
//! docker's DOCKER chain; let through by the very command verify
//! recommends; dropped again by a raw-table drop, whose fix verify names
//! from daemon.json. With docker 29: dropped, still dropped past another
//! table's accept, let through by the mark docker's "bridge-accept-fwmark"
//! accepts.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{self, BACKENDS, Backend, lab::Lab};

const POD_A: &str = "172.7.21.2";
const POD_B: &str = "172.7.22.2";

/// docker 28's filter table on a new daemon (new-daemon.md, moby at
/// b985e2313a86), the lab's bridge being docker0 as docker's is.
const FILTER: &str = "*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-INTERNAL - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER ! -i docker0 -o docker0 -j DROP
-A DOCKER-BRIDGE -o docker0 -j DOCKER
-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-INTERNAL
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i docker0 -j ACCEPT
COMMIT
";

/// The raw-table drop docker 28 adds for a container with a published
/// port (usernet-portmap.md's, for pod A on docker0).
const RAW: &str = "*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 172.7.21.2/32 ! -i docker0 -j DROP
COMMIT
";

/// The node's config, an empty daemon.json and a plain docker.service in
/// `dir`, and the lab, tagged `tag` and the backend's number.
fn node(dir: &Path, tag: &str, i: usize) -> Lab {
    fs::write(
        dir.join("node.toml"),
        "cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\nanchor = false\n",
    )
    .unwrap();
    fs::write(dir.join("daemon.json"), "{}\n").unwrap();
    fs::write(
        dir.join("docker.service"),
        "[Service]\nExecStart=/usr/bin/dockerd\n",
    )
    .unwrap();
    Lab::up(
        "docker0",
        "172.7.21.0/24",
        "172.7.22.0/24",
        None,
        &format!("{tag}{i}"),
    )
}

fn verify(lab: &Lab, backend: &Backend, dir: &Path) -> (i32, String) {
    let (config, json, unit) = (
        dir.join("node.toml"),
        dir.join("daemon.json"),
        dir.join("docker.service"),
    );
    common::podsnat_in(
        &lab.ns("a"),
        &[
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--docker-config",
            json.to_str().unwrap(),
            "--docker-unit",
            unit.to_str().unwrap(),
            "--iptables-save",
            backend.save,
        ],
    )
}

/// The line of verify's report on cluster→pod traffic.
fn incoming(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains("cluster→pod traffic"))
        .unwrap_or_else(|| panic!("no cluster→pod line in:\n{out}"))
}

fn restore(lab: &Lab, backend: &Backend, table: &str) {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &lab.ns("a"), backend.restore, "--noflush"]);
    let out = common::with_stdin(&mut cmd, table.as_bytes());
    assert!(out.status.success(), "{}", common::text(&out.stderr));
}

#[test]
fn docker_28_drops_cluster_traffic_as_verify_says() {
    let test = "docker_28_drops_cluster_traffic_as_verify_says";
    common::require_root_or_fail(test);
    common::require(test, true, &["socat", "ss", "timeout", "bash"]);
    for (i, backend) in BACKENDS.iter().enumerate() {
        let b = backend.name;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let lab = node(dir, "d", i);
        assert_eq!(
            lab.seen("pb", "pa", POD_A),
            POD_B,
            "{b}: before docker 28's rules"
        );

        restore(&lab, backend, FILTER);
        assert_eq!(
            lab.seen("pb", "pa", POD_A),
            "none",
            "{b}: docker 28's filter table"
        );
        let (code, out) = verify(&lab, backend, dir);
        assert_eq!(code, 2, "{b}:\n{out}");
        let line = incoming(&out);
        assert!(
            line.starts_with(
                "drift: cluster→pod traffic to this node's pods is dropped by DOCKER rule 1: -A DOCKER ! -i docker0 -o docker0 -j DROP"
            ),
            "{b}: {line}"
        );

        // The command the report recommends, run as it is printed.
        let command = line
            .split("lets the cluster's traffic through: ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .unwrap_or_else(|| panic!("{b}: no command in {line}"));
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"iptables"), "{b}: {command}");
        common::ok_in(&lab.ns("a"), backend.iptables, &words[1..]);
        assert_eq!(lab.seen("pb", "pa", POD_A), POD_B, "{b}: after `{command}`");
        let out = verify(&lab, backend, dir).1;
        assert_eq!(
            incoming(&out),
            "ok: cluster→pod traffic to this node's pods is forwarded to the bridge; decided by DOCKER-USER rule 1: -A DOCKER-USER -s 172.7.0.0/16 -o docker0 -j ACCEPT",
            "{b}:\n{out}"
        );

        // A published port's raw-table drop comes before DOCKER-USER.
        restore(&lab, backend, RAW);
        assert!(lab.dropped("pb", "pa", POD_A), "{b}: the raw drop");
        let out = verify(&lab, backend, dir).1;
        let line = incoming(&out);
        assert!(
            line.starts_with("drift: cluster→pod traffic to this node's pods is dropped by raw PREROUTING rule 1: -A PREROUTING -d 172.7.21.2/32 ! -i docker0 -j DROP")
                && line.contains("\"allow-direct-routing\": true in daemon.json (docker 28.2 and later) ends them"),
            "{b}: {line}"
        );
        // daemon.json already sets it: docker's next start removes the drop.
        fs::write(
            dir.join("daemon.json"),
            "{\"allow-direct-routing\": true}\n",
        )
        .unwrap();
        let out = verify(&lab, backend, dir).1;
        let sets = format!(
            "{} sets \"allow-direct-routing\": true, and docker removes these drops when it next starts",
            dir.join("daemon.json").display()
        );
        assert!(incoming(&out).contains(&sets), "{b}: {out}");
    }
}

/// docker 29's table on a new daemon, as the corpus case holds it.
fn docker_29_table() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/docker-29-nftables/source.nft")
}

fn nft(lab: &Lab, args: &[&str]) {
    common::ok_in(&lab.ns("a"), "nft", args);
}

/// `nft -f` on `text`, in host A.
fn nft_file(lab: &Lab, dir: &Path, text: &str) {
    let file = dir.join("change.nft");
    fs::write(&file, text).unwrap();
    nft(lab, &["-f", file.to_str().unwrap()]);
}

#[test]
fn docker_29_drops_cluster_traffic_as_verify_says() {
    let test = "docker_29_drops_cluster_traffic_as_verify_says";
    common::require_root_or_fail(test);
    common::require(test, true, &["socat", "ss", "timeout", "bash", "nft"]);
    for (i, backend) in BACKENDS.iter().enumerate() {
        let b = backend.name;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let lab = node(dir, "n", i);
        nft(&lab, &["-f", docker_29_table().to_str().unwrap()]);
        assert!(lab.dropped("pb", "pa", POD_A), "{b}: docker 29's table");
        let drop = "drift: cluster→pod traffic to this node's pods is dropped by table ip docker-bridges chain filter-forward-in__docker0 rule 3: counter drop comment \"UNPUBLISHED PORT DROP\"";
        let (code, out) = verify(&lab, backend, dir);
        assert_eq!(code, 2, "{b}:\n{out}");
        assert!(incoming(&out).starts_with(drop), "{b}: {out}");
        assert!(
            incoming(&out).contains("\"bridge-accept-fwmark\""),
            "{b}: {out}"
        );

        // An accept in a table of one's own ends only its own chain.
        nft_file(
            &lab,
            dir,
            "table inet mine {\n\tchain early {\n\t\ttype filter hook forward priority -10; policy accept;\n\t\tip saddr 172.7.0.0/16 accept\n\t}\n}\n",
        );
        assert!(
            lab.dropped("pb", "pa", POD_A),
            "{b}: past another table's accept"
        );
        // daemon.json names the mark: the note says so.
        fs::write(
            dir.join("daemon.json"),
            "{\"bridge-accept-fwmark\": \"1\"}\n",
        )
        .unwrap();
        let out = verify(&lab, backend, dir).1;
        assert!(incoming(&out).starts_with(drop), "{b}: {out}");
        let sets = format!(
            "{} sets \"bridge-accept-fwmark\": \"1\", and docker accepts packets carrying it",
            dir.join("daemon.json").display()
        );
        assert!(incoming(&out).contains(&sets), "{b}: {out}");

        // The fix the note names: docker's rule for "bridge-accept-fwmark":
        // "1", as moby's nftabler writes it (after the conntrack rule), and
        // a rule of one's own that sets the mark on the cluster's traffic.
        nft_file(
            &lab,
            dir,
            "insert rule ip docker-bridges filter-forward-in__docker0 index 1 meta mark 1 counter accept comment \"ALLOW FW MARK\"\nflush chain inet mine early\nadd rule inet mine early ip saddr 172.7.0.0/16 meta mark set 1\n",
        );
        assert_eq!(lab.seen("pb", "pa", POD_A), POD_B, "{b}: with the mark");
        let out = verify(&lab, backend, dir).1;
        assert!(
            incoming(&out).starts_with("ok: cluster→pod traffic to this node's pods is forwarded to the bridge; decided by table ip docker-bridges chain filter-forward-in__docker0 rule 2: meta mark"),
            "{b}: {out}"
        );
    }
}

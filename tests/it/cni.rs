//! A containerd node with the real CNI bridge plugin (Debian's
//! containernetworking-plugins, called as containerd calls it: "ipMasq":
//! true, host-local IPAM), no docker in the pod network, on both iptables
//! backends: before podsnat the pod on host B sees host A's address; after
//! `verify --repair` it sees the pod's IP, egress is still masqueraded and
//! verify is ok; a pod added after podsnat ran (the plugin's ADD) keeps its
//! IP too, and a pod deleted (DEL) leaves no drift; with the last pod gone,
//! `cni_config` naming the network config the plugin ran with tells verify
//! the CNI masquerades the pods to come.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{self, BACKENDS, Backend, lab::Lab};

const CNI_PATH: &str = "/usr/lib/cni";
const NODE_A: &str = "10.4.7.21";
const POD_B: &str = "10.244.2.2";

/// A directory whose `iptables`, `iptables-save` and `iptables-restore`
/// are `backend`'s: the plugin runs the first `iptables` on its PATH.
fn shim(dir: &Path, backend: &Backend) {
    fs::create_dir_all(dir).unwrap();
    for (name, real) in [
        ("iptables", backend.iptables),
        ("iptables-save", backend.save),
        ("iptables-restore", backend.restore),
    ] {
        std::os::unix::fs::symlink(Path::new("/usr/sbin").join(real), dir.join(name)).unwrap();
    }
}

/// `podsnat verify` in host A with `backend`'s programs: exit code and
/// everything it printed.
fn verify(lab: &Lab, backend: &Backend, dir: &Path, extra: &[&str]) -> (i32, String) {
    let config = dir.join("node.toml");
    let anchor = dir.join("podsnat.nft");
    let mut args = vec![
        "verify",
        "--config",
        config.to_str().unwrap(),
        "--anchor-file",
        anchor.to_str().unwrap(),
        "--iptables-save",
        backend.save,
        "--iptables-restore",
        backend.restore,
    ];
    args.extend(extra);
    common::podsnat_in(&lab.ns("a"), &args)
}

#[test]
fn cni_bridge_node_keeps_pod_ips_after_repair() {
    common::require_root_or_fail("cni_bridge_node_keeps_pod_ips_after_repair");
    common::require(
        "cni_bridge_node_keeps_pod_ips_after_repair",
        true,
        &[
            "socat",
            "ss",
            "timeout",
            "bash",
            "nft",
            "/usr/lib/cni/bridge",
        ],
    );
    for (i, backend) in BACKENDS.iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        shim(&dir.join("shim"), backend);
        // The config a new user writes: no docker key, no mode.
        fs::write(
            dir.join("node.toml"),
            "cluster_cidr = \"10.244.0.0/16\"\npod_subnet = \"10.244.1.0/24\"\nbridge = \"cni0\"\n",
        )
        .unwrap();
        let tag = format!("c{i}");
        let anchor = Command::new(common::podsnat_bin())
            .args(["render", "--anchor", "--config"])
            .arg(dir.join("node.toml"))
            .output()
            .unwrap();
        assert!(anchor.status.success());
        fs::write(dir.join("podsnat.nft"), &anchor.stdout).unwrap();

        let lab = Lab::cni(
            "cni0",
            "10.244.1.0/24",
            "10.244.2.0/24",
            CNI_PATH,
            &dir.join("shim"),
            &tag,
        );
        let b = backend.name;
        assert_eq!(lab.seen("pa", "pb", POD_B), NODE_A, "{b}: before podsnat");

        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 2, "{b}: the CNI masquerades pod→cluster:\n{out}");
        assert!(
            out.contains("the CNI bridge plugin's masquerade of each pod"),
            "{b}:\n{out}"
        );
        // docker is installed here, but it does not run these pods.
        assert!(!out.contains("docker's settings"), "{b}:\n{out}");

        let (code, out) = verify(&lab, backend, dir, &["--repair"]);
        assert_eq!(code, 2, "{b}: the repair changed the node:\n{out}");
        assert_eq!(
            lab.seen("pa", "pb", POD_B),
            "10.244.1.2",
            "{b}: after the repair"
        );
        assert_eq!(lab.seen("pa", "out", "10.9.0.2"), "10.9.0.1", "{b}: egress");
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 0, "{b}: after the repair:\n{out}");

        // kubelet starts a pod after podsnat ran: the plugin's ADD.
        lab.cni_pod("ADD", "pc", "c3");
        assert_eq!(
            lab.seen("pc", "pb", POD_B),
            "10.244.1.3",
            "{b}: the new pod"
        );
        assert_eq!(
            lab.seen("pc", "out", "10.9.0.2"),
            "10.9.0.1",
            "{b}: its egress"
        );
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 0, "{b}: with the new pod:\n{out}");
        assert!(out.contains("judged for the 2 pods"), "{b}:\n{out}");

        // And a pod goes: the plugin's DEL removes its chain.
        lab.cni_pod("DEL", "pa", "a1");
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 0, "{b}: after a pod left:\n{out}");
        assert!(out.contains("judged for the 1 pod"), "{b}:\n{out}");

        // The last pod goes: with cni_config naming the network config the
        // plugin ran with, verify knows the CNI masquerades the pods to come.
        lab.cni_pod("DEL", "pc", "c3");
        let with_conf = format!(
            "cluster_cidr = \"10.244.0.0/16\"\npod_subnet = \"10.244.1.0/24\"\nbridge = \"cni0\"\ncni_config = {:?}\n",
            lab.cni_conf().display().to_string()
        );
        fs::write(dir.join("node.toml"), with_conf).unwrap();
        let (code, out) = verify(&lab, backend, dir, &[]);
        assert_eq!(code, 0, "{b}: no pod left:\n{out}");
        let want = format!(
            "ok: pod→outside traffic: no pod has a CNI per-pod rule yet; {} sets \"ipMasq\": true: the CNI masquerades each pod it adds",
            lab.cni_conf().display()
        );
        assert!(out.contains(&want), "{b}:\n{out}");
    }
}

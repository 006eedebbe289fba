//! The two-host lab of examples/lab.sh (host A, host B, a pod on each, an
//! outside machine behind host A), its namespaces deleted on drop even
//! when an assertion fails.

use std::path::Path;
use std::process::Command;

/// The lab's namespaces, deleted on drop even when an assertion fails.
pub struct Lab {
    name: String,
    env: Vec<(&'static str, String)>,
}

pub fn lab_sh() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lab.sh"))
}

impl Lab {
    /// Host A and host B with pod subnets `subnet_a` and `subnet_b` (/24s)
    /// on `bridge`; `extra` is an address on host B routed from A.
    pub fn up(bridge: &str, subnet_a: &str, subnet_b: &str, extra: Option<&str>, tag: &str) -> Lab {
        let mut env = vec![
            ("BRIDGE", bridge.to_owned()),
            ("SUBNET_A", subnet_a.to_owned()),
            ("SUBNET_B", subnet_b.to_owned()),
        ];
        if let Some(extra) = extra {
            env.push(("EXTRA", extra.to_owned()));
        }
        Lab::start(env, tag)
    }

    /// A dual-stack lab: the IPv4 lab plus IPv6 pod subnets (/64s) on the
    /// same hosts and links.
    pub fn dual(bridge: &str, v4: (&str, &str), v6: (&str, &str), tag: &str) -> Lab {
        let env = vec![
            ("BRIDGE", bridge.to_owned()),
            ("SUBNET_A", v4.0.to_owned()),
            ("SUBNET_B", v4.1.to_owned()),
            ("SUBNET6_A", v6.0.to_owned()),
            ("SUBNET6_B", v6.1.to_owned()),
        ];
        Lab::start(env, tag)
    }

    /// A containerd-style host A: its bridge and pod A (`pa`, the pod
    /// subnet's .2) made by the real CNI bridge plugin in `cni_path`, which
    /// runs the `iptables` found first in `iptables_dir`; host B as ever.
    pub fn cni(
        bridge: &str,
        subnet_a: &str,
        subnet_b: &str,
        cni_path: &str,
        iptables_dir: &Path,
        tag: &str,
    ) -> Lab {
        let env = vec![
            ("BRIDGE", bridge.to_owned()),
            ("SUBNET_A", subnet_a.to_owned()),
            ("SUBNET_B", subnet_b.to_owned()),
            ("CNI_PATH", cni_path.to_owned()),
            ("CNI_IPTABLES", iptables_dir.display().to_string()),
        ];
        Lab::start(env, tag)
    }

    /// The CNI plugin's `ADD` or `DEL` of pod `name` (namespace LAB-name)
    /// with container id `id`, as the runtime calls it for kubelet.
    pub fn cni_pod(&self, command: &str, name: &str, id: &str) {
        let out = self.run(&["cni", command, name, id]);
        assert!(
            out.status.success(),
            "cni {command} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(env: Vec<(&'static str, String)>, tag: &str) -> Lab {
        let lab = Lab {
            name: format!("psx{}{tag}", std::process::id()),
            env,
        };
        let out = lab.run(&["up"]);
        assert!(
            out.status.success(),
            "lab up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(lab_sh())
            .args(args)
            .env("LAB", &self.name)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// The CNI network config the lab's plugin runs with (`Lab::cni`).
    pub fn cni_conf(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/run/{}-cni.conf", self.name))
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// The source address `to` saw for a TCP connection from `from`; an
    /// IPv6 one as Rust prints it (socat prints `[fd00:0007:...]`).
    pub fn seen(&self, from: &str, to: &str, ip: &str) -> String {
        let out = self.run(&["probe", from, to, ip]);
        let seen = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let bare = seen.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<std::net::IpAddr>()
            .map_or(seen.clone(), |a| a.to_string())
    }

    /// Whether a TCP connection from `from` to `ip` on `to` fails to
    /// arrive within a second: the lab's links answer in microseconds, so
    /// a second is a dropped packet, not a slow one.
    pub fn dropped(&self, from: &str, to: &str, ip: &str) -> bool {
        let out = Command::new("bash")
            .arg(lab_sh())
            .args(["probe", from, to, ip])
            .env("LAB", &self.name)
            .env("PROBE_WAIT", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "none"
    }

    /// The source address `to` saw for a TCP connection from `from` to
    /// `via` (a service address that DNATs to `ip`, `to`'s own).
    pub fn seen_via(&self, from: &str, to: &str, ip: &str, via: &str) -> String {
        let out = self.run(&["probe", from, to, ip, via]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The last line of an HTTP GET from `from` to `ip:port`, or "none".
    pub fn http(&self, from: &str, ip: &str, port: &str) -> String {
        let out = self.run(&["http", from, ip, port]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

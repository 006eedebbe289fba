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

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.name)
    }

    /// The source address `to` saw for a TCP connection from `from`.
    pub fn seen(&self, from: &str, to: &str, ip: &str) -> String {
        let out = self.run(&["probe", from, to, ip]);
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

//! Test helpers shared by the integration tests: a network namespace that
//! cleans up after itself, the two iptables backends, and the root check.

pub mod boot;
pub mod dockerd;
pub mod lab;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// One iptables backend's programs.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub name: &'static str,
    pub iptables: &'static str,
    pub restore: &'static str,
    pub save: &'static str,
}

pub const BACKENDS: [Backend; 2] = [
    Backend {
        name: "nft",
        iptables: "iptables-nft",
        restore: "iptables-nft-restore",
        save: "iptables-nft-save",
    },
    Backend {
        name: "legacy",
        iptables: "iptables-legacy",
        restore: "iptables-legacy-restore",
        save: "iptables-legacy-save",
    },
];

/// The same two backends' ip6tables programs.
pub const BACKENDS6: [Backend; 2] = [
    Backend {
        name: "nft",
        iptables: "ip6tables-nft",
        restore: "ip6tables-nft-restore",
        save: "ip6tables-nft-save",
    },
    Backend {
        name: "legacy",
        iptables: "ip6tables-legacy",
        restore: "ip6tables-legacy-restore",
        save: "ip6tables-legacy-save",
    },
];

impl Backend {
    /// This backend's programs for `family`.
    pub fn of(&self, family: podsnat::Family) -> Backend {
        let all = match family {
            podsnat::Family::V4 => &BACKENDS,
            podsnat::Family::V6 => &BACKENDS6,
        };
        all.iter()
            .find(|b| b.name == self.name)
            .copied()
            .unwrap_or(*self)
    }
}

/// The test may touch netfilter: root, `ip` and both backends are there.
/// Otherwise the test fails (never skips), naming what is missing.
pub fn require_root_or_fail(test: &str) {
    let progs: Vec<&str> = std::iter::once("ip")
        .chain(
            BACKENDS
                .iter()
                .chain(&BACKENDS6)
                .flat_map(|b| [b.iptables, b.restore, b.save]),
        )
        .collect();
    require(test, true, &progs);
}

/// The general form: `root` and every program in `progs` must be there, or
/// the test fails, with or without CI, naming what is missing and the one
/// command that installs every test dependency. A test that skipped and
/// passed would be a check that cannot fail.
pub fn require(test: &str, root: bool, progs: &[&str]) {
    let mut missing = Vec::new();
    if root {
        let uid = Command::new("id").arg("-u").output();
        if !matches!(&uid, Ok(o) if o.stdout.starts_with(b"0\n")) {
            missing.push("root".to_owned());
        }
    }
    for prog in progs {
        if !on_path(prog) {
            missing.push((*prog).to_owned());
        }
    }
    assert!(
        missing.is_empty(),
        "{test} needs {}, which this machine lacks; `bash scripts/test` installs every test dependency and runs every test",
        missing.join(", ")
    );
}

fn on_path(prog: &str) -> bool {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .chain(
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(prog)),
        )
        .any(|p| p.is_file())
}

/// A network namespace with a unique name, deleted on drop, also when the
/// test panics. Nothing in it can reach the host's own firewall.
pub struct Netns {
    pub name: String,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "podsnat-t{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Netns { name }
    }

    /// Runs a program inside the namespace.
    pub fn exec(&self, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        exec_in(&self.name, prog, args)
    }

    /// Runs a program inside the namespace and returns its stdout; panics
    /// with its stderr when it fails.
    pub fn ok(&self, prog: &str, args: &[&str]) -> String {
        ok_in(&self.name, prog, args)
    }
}

/// Runs a program inside the named namespace.
pub fn exec_in(ns: &str, prog: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(prog)
        .args(args)
        .output()
        .expect("run ip netns exec")
}

/// `exec_in` that must succeed; returns stdout.
pub fn ok_in(ns: &str, prog: &str, args: &[&str]) -> String {
    let out = exec_in(ns, prog, args);
    assert!(
        out.status.success(),
        "in {ns}: {prog} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `podsnat ARGS` inside the namespace `ns`: its exit code, and its stdout
/// and stderr together.
pub fn podsnat_in(ns: &str, args: &[&str]) -> (i32, String) {
    let out = exec_in(ns, podsnat_bin(), args);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// docker's broad rule for the example node as iptables arguments, with
/// `op` in place (`["-A", "POSTROUTING"]`, `["-I", "POSTROUTING", "1"]`).
pub fn example_broad<'a>(op: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-w", "5", "-t", "nat"];
    args.extend_from_slice(op);
    args.extend([
        "-s",
        "172.7.21.0/24",
        "!",
        "-o",
        "docker0",
        "-j",
        "MASQUERADE",
    ]);
    args
}

/// Runs `cmd` with `input` on its stdin; its output.
pub fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// The shipped example config, by absolute path.
pub const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/flannel-docker.toml");

/// `podsnat render` of the example config (plus `extra` flags), by the
/// binary under test.
pub fn render_example(extra: &[&str]) -> String {
    let out = Command::new(podsnat_bin())
        .args(["render", "--config", EXAMPLE])
        .args(extra)
        .output()
        .expect("run podsnat render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The podsnat binary under test.
pub fn podsnat_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podsnat"))
}

/// tests/docker-standin.sh: what dockerd does to the nat table when it
/// starts (or stops) on a node with a stored bridge network, as measured;
/// tests/it/docker.rs compares it with the real dockerd. `ip_masq` false
/// acts as `dockerd --ip-masq=false`.
/// The address a container gets in `subnet` in the stand-in: .128 of an
/// IPv4 /24, ::80 of an IPv6 /64.
pub fn container_ip(subnet: &str) -> String {
    match subnet.strip_suffix("::/64") {
        Some(prefix) => format!("{prefix}::80"),
        None => subnet.replace(".0/24", ".128"),
    }
}

pub fn docker_standin(
    ns: &str,
    backend: &Backend,
    action: &str,
    subnet: &str,
    bridge: &str,
    ip_masq: bool,
) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sh",
            STANDIN,
            action,
            backend.iptables,
            subnet,
            bridge,
        ])
        .arg(container_ip(subnet))
        .env("IP_MASQ", if ip_masq { "true" } else { "false" })
        .output()
        .expect("run the docker stand-in");
    assert!(
        out.status.success(),
        "docker stand-in {action} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The dockerd stand-in script.
pub const STANDIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/docker-standin.sh");

/// kube-proxy-style rules that were there before the drift: a jump on top
/// of POSTROUTING into KUBE-POSTROUTING and a KUBE-SERVICES chain with a few
/// hundred service rules. A repair must leave them byte for byte.
pub fn kube_proxy_rules(services: usize) -> String {
    let mut t = String::from(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         -I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I POSTROUTING 1 -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    for i in 0..services {
        t += &format!(
            "-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
            i / 250,
            i % 250 + 1
        );
    }
    t + "COMMIT\n"
}

/// iptables-save output without its timestamp comments and with the
/// policy counters zeroed: the legacy backend resets the built-in chains'
/// counters on any change at all, even a plain `iptables -I` (measured).
pub fn saved(ns: &str, backend: &Backend) -> Vec<String> {
    ok_in(ns, backend.save, &["-t", "nat"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) => format!("{} [0:0]", &l[..i]),
            _ => l.to_owned(),
        })
        .collect()
}

/// `podsnat pin --file FILE` in `ns` on `backend`, as podsnat-pin.service
/// runs it after a docker start.
pub fn pin_in(ns: &str, file: &str, backend: &Backend) -> Output {
    // An ip6tables backend pins the IPv6 file.
    let (flag, tool) = if backend.iptables.starts_with("ip6tables") {
        ("--file6", "ip6tables")
    } else {
        ("--file", "iptables")
    };
    exec_in(
        ns,
        podsnat_bin(),
        &[
            "pin",
            flag,
            file,
            &format!("--{tool}-save"),
            backend.save,
            &format!("--{tool}-restore"),
            backend.restore,
        ],
    )
}

/// A program's output bytes as text, for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The names in a directory, sorted (e.g. to prove no temp file was left).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

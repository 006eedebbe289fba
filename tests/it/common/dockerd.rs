//! The real dockerd (Debian's docker.io) inside a test's network namespace,
//! on the iptables backend under test. Facts measured here:
//! - `nsenter --net=/run/netns/NAME`, not `ip netns exec`, which remounts
//!   /sys and makes dockerd stop with "Devices cgroup isn't mounted";
//! - its own --data-root, --exec-root, --pidfile and -H unix://..., and
//!   --storage-driver vfs;
//! - a PATH shim of `iptables*` links to the backend's programs;
//! - an image without a registry: busybox-static in a rootfs, `docker import`.
//!
//! Drop stops dockerd by its own pid, waits for its pid file to go, kills
//! what it left (containerd shims), unmounts what it mounted and removes
//! its state, also when a test fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::Backend;

/// The docker client that pairs with Debian's dockerd (the machine may
/// have a newer client earlier on PATH).
pub const DOCKER: &str = "/usr/bin/docker";
pub const DOCKERD: &str = "/usr/sbin/dockerd";
pub const BUSYBOX: &str = "/bin/busybox";
/// The image every test container runs.
pub const IMAGE: &str = "local/busybox";
/// What a real-dockerd test needs besides root and iptables.
pub const TOOLS: [&str; 11] = [
    "dockerd",
    "docker",
    "containerd",
    "runc",
    "busybox",
    "nsenter",
    "socat",
    "ss",
    "timeout",
    "tar",
    "pkill",
];

pub struct Dockerd {
    ns: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// The nsenter processes that became dockerd, reaped after each stop.
    children: std::cell::RefCell<Vec<std::process::Child>>,
}

impl Dockerd {
    /// A dockerd for namespace `ns` (not started), its nat rules made with
    /// `backend`; `args` are extra dockerd flags (`--bridge docker0`, ...).
    pub fn new(ns: &str, backend: &Backend, args: &[&str]) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("podsnat-dockerd.")
            .tempdir()
            .unwrap();
        let shim = dir.path().join("shim");
        fs::create_dir(&shim).unwrap();
        // ip6tables too, for dockerd --ip6tables.
        let six = backend.of(podsnat::Family::V6);
        for (name, real) in [
            ("iptables", backend.iptables),
            ("iptables-save", backend.save),
            ("iptables-restore", backend.restore),
            ("ip6tables", six.iptables),
            ("ip6tables-save", six.save),
            ("ip6tables-restore", six.restore),
        ] {
            std::os::unix::fs::symlink(Path::new("/usr/sbin").join(real), shim.join(name)).unwrap();
        }
        Dockerd {
            ns: ns.to_owned(),
            dir,
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            children: std::cell::RefCell::new(Vec::new()),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn sock(&self) -> String {
        format!("unix://{}", self.path("sock").display())
    }

    /// Starts dockerd and waits until it answers (it has then rebuilt its
    /// chains, its networks and its restart-policy containers).
    pub fn start(&self) -> Duration {
        let t = Instant::now();
        let path = format!(
            "{}:{}",
            self.path("shim").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(DOCKERD)
            .args(["--data-root", &self.path("data").display().to_string()])
            .args(["--exec-root", &self.path("exec").display().to_string()])
            .args(["--pidfile", &self.path("pid").display().to_string()])
            .args(["-H", &self.sock()])
            .args(["--storage-driver", "vfs"])
            .args(["--shutdown-timeout", "1"])
            .args(&self.args)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.borrow_mut().push(child);
        while t.elapsed() < Duration::from_secs(60) {
            if self.docker(&["info"]).status.success() {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dockerd did not start in 60 s:\n{}", self.log());
    }

    /// Stops dockerd by its own pid and waits for the pid file to go.
    pub fn stop(&self) {
        let Ok(pid) = fs::read_to_string(self.path("pid")) else {
            return;
        };
        let _ = Command::new("kill").arg(pid.trim()).status();
        let t = Instant::now();
        while self.path("pid").exists() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "dockerd did not stop in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for mut child in self.children.borrow_mut().drain(..) {
            let _ = child.wait();
        }
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .args(["-H", &self.sock()])
            .args(args)
            .output()
            .unwrap()
    }

    /// `docker ARGS` that must succeed; its trimmed stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Imports the busybox-static image, offline.
    pub fn import_busybox(&self) {
        let root = self.path("rootfs");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("www")).unwrap();
        fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
        fs::write(root.join("www/index.html"), "hello from the container\n").unwrap();
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Command::new(DOCKER)
            .args(["-H", &self.sock(), "import", "-", IMAGE])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tar.wait().unwrap().success(), "tar of the busybox rootfs");
        assert!(
            out.status.success(),
            "docker import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// docker's stored state, as a node has it after its first day: dockerd
    /// started once, a `--restart always` busybox httpd container publishing
    /// `HOST_PORT:80` (imported offline), dockerd stopped. Its next start is
    /// the one every reboot and restart makes.
    pub fn stored_state(&self, host_port: &str) {
        self.start();
        self.import_busybox();
        self.ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--restart",
            "always",
            "--stop-timeout",
            "1",
            "-p",
            &format!("{host_port}:80"),
            IMAGE,
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]);
        self.stop();
    }

    /// The last lines of dockerd's log, for failure messages.
    pub fn log(&self) -> String {
        let text = fs::read_to_string(self.path("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.path("pid").exists() && !std::thread::panicking() {
            self.stop();
        } else if let Ok(pid) = fs::read_to_string(self.path("pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            std::thread::sleep(Duration::from_secs(2));
        }
        // containerd shims name the exec root in their command line.
        let exec = self.path("exec").display().to_string();
        let _ = Command::new("pkill").args(["-KILL", "-f", &exec]).status();
        let base = self.dir.path().display().to_string();
        let mut mounts: Vec<String> = fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
            .filter(|m| m.starts_with(&base))
            .collect();
        mounts.sort_by(|a, b| b.cmp(a));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
    }
}

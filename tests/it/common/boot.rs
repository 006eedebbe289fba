//! The boot tests' shared parts: the cached Debian rootfs and running a
//! script (overlay mounts, systemd-nspawn) in private mount and network
//! namespaces, cleaning up what nspawn leaves in the cgroup tree.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where the minimal rootfs is cached between runs: outside the repo, so a
/// fresh clone (as CI makes) on the same machine reuses it.
/// PODSNAT_ROOTFS_CACHE overrides the place.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("PODSNAT_ROOTFS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/podsnat-tests/boot-rootfs"))
}

/// The mirror and suite apt uses on this machine (deb822 or one-line form).
pub fn apt_source() -> (String, String) {
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let (mut uri, mut suite) = (None, None);
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("URIs:") {
                uri = v.split_whitespace().next().map(str::to_owned);
            } else if let Some(v) = line.strip_prefix("Suites:") {
                suite = v.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let words: Vec<&str> = rest
                    .split_whitespace()
                    .filter(|w| !w.starts_with('['))
                    .collect();
                if let [u, s, ..] = words[..] {
                    return (u.to_owned(), s.to_owned());
                }
            }
            if let (Some(u), Some(s)) = (&uri, &suite) {
                return (u.clone(), s.clone());
            }
        }
    }
    panic!("no apt source found in /etc/apt/sources.list or /etc/apt/sources.list.d");
}

/// Builds the rootfs once (about 35 s, 255 MB); later runs reuse it.
pub fn rootfs() -> PathBuf {
    let dir = cache_dir();
    let done = dir.join("rootfs");
    if done.join("usr/lib/systemd/systemd").exists()
        && done.join("usr/sbin/iptables-legacy-restore").exists()
        && done.join("usr/sbin/nft").exists()
    {
        return done;
    }
    let partial = dir.join("rootfs.partial");
    let _ = fs::remove_dir_all(&partial);
    fs::create_dir_all(&dir).unwrap();
    let (mirror, suite) = apt_source();
    eprintln!("building the boot-test rootfs with debootstrap {suite} {mirror} (once)...");
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,iptables,nftables,iproute2,dbus",
        ])
        .arg(&suite)
        .arg(&partial)
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debootstrap failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = fs::remove_dir_all(&done);
    fs::rename(&partial, &done).unwrap();
    done
}

/// cgroup dirs systemd-nspawn --keep-unit leaves next to ours.
fn nspawn_cgroups() -> Vec<PathBuf> {
    ["unified", "systemd"]
        .iter()
        .flat_map(|h| {
            ["payload", "supervisor"].map(|d| Path::new("/sys/fs/cgroup").join(h).join(d))
        })
        .filter(|p| p.exists())
        .collect()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Runs `script` with bash in new mount and network namespaces (so mounts
/// and any --test stay private), then removes the cgroup directories
/// `systemd-nspawn --keep-unit` created.
pub fn in_private_namespaces(script: &str) -> Output {
    let cgroups_before = nspawn_cgroups();
    let run = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "bash",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    for dir in nspawn_cgroups() {
        if !cgroups_before.contains(&dir) {
            remove_cgroup_tree(&dir);
        }
    }
    run
}

//! Every path podsnat touches comes from a root (`--root`, default `/`),
//! and every default path or program lives here, once. Pure except for
//! [`default_rules_file`], which looks at the root to pick the platform.

use std::path::{Path, PathBuf};

use crate::family::Family;

/// RHEL-like systems restore this file at boot (iptables-services).
pub const SYSCONFIG_RULES: &str = "/etc/sysconfig/iptables";
/// Debian and Ubuntu keep their rules here (netfilter-persistent).
pub const DEBIAN_RULES: &str = "/etc/iptables/rules.v4";
/// The IPv6 rules files of the same two services.
pub const SYSCONFIG_RULES6: &str = "/etc/sysconfig/ip6tables";
pub const DEBIAN_RULES6: &str = "/etc/iptables/rules.v6";
/// Where `install-unit` puts podsnat's units.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The iptables-restore a unit runs at boot, by absolute path.
pub const IPTABLES_RESTORE: &str = "/usr/sbin/iptables-restore";
/// The podsnat binary a unit runs.
pub const PODSNAT_BIN: &str = "/usr/sbin/podsnat";
/// The node's podsnat config.
pub const CONFIG: &str = "/etc/podsnat/config.toml";
/// podsnat's nftables anchor, beside the config.
pub const ANCHOR_FILE: &str = "/etc/podsnat/podsnat.nft";
/// The nft a unit runs, by absolute path.
pub const NFT: &str = "/usr/sbin/nft";

/// docker's config file.
pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// Where docker.service and its drop-ins live, most specific first.
pub const DOCKER_UNIT_DROPINS: &str = "/etc/systemd/system/docker.service.d";
pub const DOCKER_UNITS: [&str; 3] = [
    "/etc/systemd/system/docker.service",
    "/lib/systemd/system/docker.service",
    "/usr/lib/systemd/system/docker.service",
];

/// `root` + `path`, where an absolute `path` is taken inside `root`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    if root == Path::new("/") {
        return path.to_owned();
    }
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Where the rules file lives by default on the machine under `root`:
/// RHEL-like systems restore /etc/sysconfig/iptables; Debian has no
/// /etc/sysconfig and keeps its rules in /etc/iptables/rules.v4.
pub fn default_rules_file(root: &Path) -> &'static str {
    default_rules_file_of(root, Family::V4)
}

/// The same for either family: `/etc/sysconfig/ip6tables` or
/// `/etc/iptables/rules.v6` for IPv6.
pub fn default_rules_file_of(root: &Path, family: Family) -> &'static str {
    let sysconfig = under_root(root, Path::new("/etc/sysconfig")).is_dir();
    match (family, sysconfig) {
        (Family::V4, true) => SYSCONFIG_RULES,
        (Family::V4, false) => DEBIAN_RULES,
        (Family::V6, true) => SYSCONFIG_RULES6,
        (Family::V6, false) => DEBIAN_RULES6,
    }
}

/// `iptables-restore` -> `ip6tables-restore`, also by path and for a
/// backend's name (`/usr/sbin/iptables-legacy-restore` ->
/// `/usr/sbin/ip6tables-legacy-restore`): the tools come in pairs.
pub fn ip6_program(program: &str) -> Option<String> {
    let (dir, name) = match program.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, program),
    };
    let rest = name.strip_prefix("iptables")?;
    let name = format!("ip6tables{rest}");
    Some(match dir {
        Some(d) => format!("{d}/{name}"),
        None => name,
    })
}

/// The unit directory under `root`.
pub fn unit_dir(root: &Path) -> PathBuf {
    under_root(root, Path::new(UNIT_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip6_programs_pair() {
        assert_eq!(
            ip6_program("iptables-restore").unwrap(),
            "ip6tables-restore"
        );
        assert_eq!(
            ip6_program("/usr/sbin/iptables-legacy-save").unwrap(),
            "/usr/sbin/ip6tables-legacy-save"
        );
        assert!(ip6_program("/usr/sbin/xtables-restore").is_none());
    }

    #[test]
    fn root_joins() {
        assert_eq!(
            under_root(Path::new("/"), Path::new("/etc/x")),
            Path::new("/etc/x")
        );
        assert_eq!(
            under_root(Path::new("/srv/n"), Path::new("/etc/x")),
            Path::new("/srv/n/etc/x")
        );
        assert_eq!(
            under_root(Path::new("/srv/n"), Path::new("rel")),
            Path::new("/srv/n/rel")
        );
    }
}

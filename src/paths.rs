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

/// The two ways a distribution restores iptables rules at boot, which
/// decide where the rules files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// RHEL-like: iptables-services restores /etc/sysconfig/iptables.
    Rhel,
    /// Debian and Ubuntu: netfilter-persistent restores
    /// /etc/iptables/rules.v4.
    Debian,
}

impl Platform {
    /// The platform of the machine under `root`: Debian has no
    /// /etc/sysconfig.
    pub fn of_root(root: &Path) -> Platform {
        if under_root(root, Path::new("/etc/sysconfig")).is_dir() {
            Platform::Rhel
        } else {
            Platform::Debian
        }
    }

    /// The one default rules file of each family: `write`, `install-unit`,
    /// `pin` and a fleet's nodes all take it from here.
    pub fn rules_file(self, family: Family) -> &'static str {
        match (family, self) {
            (Family::V4, Platform::Rhel) => SYSCONFIG_RULES,
            (Family::V4, Platform::Debian) => DEBIAN_RULES,
            (Family::V6, Platform::Rhel) => SYSCONFIG_RULES6,
            (Family::V6, Platform::Debian) => DEBIAN_RULES6,
        }
    }
}

/// Where `family`'s rules file lives by default on the machine under
/// `root`.
pub fn default_rules_file(root: &Path, family: Family) -> &'static str {
    Platform::of_root(root).rules_file(family)
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

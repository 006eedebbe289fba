//! Every path podsnat touches comes from a root (`--root`, default `/`),
//! and every default path or program lives here, once. Pure except for
//! [`default_rules_file`], which looks at the root to pick the platform.

use std::path::{Path, PathBuf};

/// RHEL-like systems restore this file at boot (iptables-services).
pub const SYSCONFIG_RULES: &str = "/etc/sysconfig/iptables";
/// Debian and Ubuntu keep their rules here (netfilter-persistent).
pub const DEBIAN_RULES: &str = "/etc/iptables/rules.v4";
/// Where `install-unit` puts podsnat's units.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// The iptables-restore a unit runs at boot, by absolute path.
pub const IPTABLES_RESTORE: &str = "/usr/sbin/iptables-restore";
/// The podsnat binary a unit runs.
pub const PODSNAT_BIN: &str = "/usr/sbin/podsnat";
/// The node's podsnat config.
pub const CONFIG: &str = "/etc/podsnat/config.toml";

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
    if under_root(root, Path::new("/etc/sysconfig")).is_dir() {
        SYSCONFIG_RULES
    } else {
        DEBIAN_RULES
    }
}

/// The unit directory under `root`.
pub fn unit_dir(root: &Path) -> PathBuf {
    under_root(root, Path::new(UNIT_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The units: `podsnat.service` runs `iptables-restore -T nat` on the file
//! `podsnat write` produced, after flanneld and before docker, containerd,
//! CRI-O, kubelet and kube-proxy, which then build their rules on top of the
//! restored table;
//! podsnat-anchor.service loads the nftables anchor; podsnat-pin.service
//! runs after every docker start. Rendering is pure; installing goes
//! through `write::update` (files) and `atomic::symlink` (enablement).

mod files;
mod names;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use files::{
    ALL, ANCHOR, BOOT, Extras, Kind, PIN, PIN_TIMER, RuntimeSpec, UnitFile, flag_path, render,
    unit_files,
};
pub use names::{UnitName, UnitPath};

use crate::config::FLAGS_ORIGIN;
use crate::error::{Error, Result};
use crate::family::Family;
use crate::write::{self, FileOutcome, Options};
use crate::{atomic, paths, system};

/// Everything the unit depends on, checked.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub after: Vec<UnitName>,
    pub before: Vec<UnitName>,
    /// One rules file per family the node runs, IPv4's first.
    pub tables: Vec<UnitTable>,
    /// podsnat-anchor.service, which loads the nftables anchor (the default).
    pub anchor: Option<AnchorUnit>,
}

/// The nftables anchor file and the nft that loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchorUnit {
    pub file: UnitPath,
    pub nft: UnitPath,
}

/// A rules file the units restore and pin, and the restore program of its
/// family.
#[derive(Debug, Clone)]
pub struct UnitTable {
    pub family: Family,
    /// The rules file `podsnat write` keeps.
    pub file: UnitPath,
    /// The iptables-restore (ip6tables-restore) binary the unit runs.
    pub restore: UnitPath,
}

/// The rules files and restore program, as given (paths not yet checked).
#[derive(Debug, Clone, Copy)]
pub struct Files<'a> {
    pub families: &'a [Family],
    pub file: &'a str,
    pub file6: &'a str,
    /// IPv4's restore program; IPv6's is its ip6tables twin.
    pub restore: &'a str,
}

impl UnitSpec {
    /// Whether a table is IPv6's: the sandbox then allows AF_INET6.
    pub fn has_ipv6(&self) -> bool {
        self.tables.iter().any(|t| t.family == Family::V6)
    }

    /// With podsnat-anchor.service, which loads `file` with `nft`; errors
    /// name `origin` and the keys `anchor_file` and `nft` (flags on the
    /// command line).
    pub fn with_anchor(
        mut self,
        origin: &str,
        prefix: &str,
        file: &str,
        nft: &str,
    ) -> Result<Self> {
        let key = |k: &str| crate::config::key_name(origin == FLAGS_ORIGIN, prefix, k);
        let path =
            |k: &str, v: &str| UnitPath::parse(v).map_err(|p| Error::field(origin, key(k), v, p));
        self.anchor = Some(AnchorUnit {
            file: path("anchor_file", file)?,
            nft: path("nft", nft)?,
        });
        Ok(self)
    }

    /// Parses raw command-line values; `--after`/`--before` errors name the flag.
    pub fn parse(after: &[String], before: &[String], files: Files<'_>) -> Result<Self> {
        Self::parse_from(FLAGS_ORIGIN, true, "", after, before, files)
    }

    /// The same for settings read from a file (an inventory's `[unit]`):
    /// errors name `origin` and the key (`unit.after`) instead of the flag.
    pub fn parse_from(
        origin: &str,
        from_flags: bool,
        prefix: &str,
        after: &[String],
        before: &[String],
        files: Files<'_>,
    ) -> Result<Self> {
        let key = |k: &str| crate::config::key_name(from_flags, prefix, k);
        let names = |k: &str, list: &[String]| {
            list.iter()
                .map(|s| {
                    UnitName::parse(s).map_err(|p| Error::field(origin, key(k), s.as_str(), p))
                })
                .collect::<Result<Vec<_>>>()
        };
        let path =
            |k: &str, v: &str| UnitPath::parse(v).map_err(|p| Error::field(origin, key(k), v, p));
        let restore = path("iptables_restore", files.restore)?;
        let tables = files
            .families
            .iter()
            .map(|&family| {
                Ok(match family {
                    Family::V4 => UnitTable {
                        family,
                        file: path("file", files.file)?,
                        restore: restore.clone(),
                    },
                    Family::V6 => UnitTable {
                        family,
                        file: path("file6", files.file6)?,
                        restore: paths::ip6_program(files.restore)
                            .ok_or_else(|| {
                                Error::field(
                                    origin,
                                    key("iptables_restore"),
                                    files.restore,
                                    "is not named iptables*, so its ip6tables twin cannot be derived",
                                )
                            })
                            .and_then(|r| path("iptables_restore", &r))?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(UnitSpec {
            after: names("after", after)?,
            before: names("before", before)?,
            tables,
            anchor: None,
        })
    }
}

/// After flanneld; before the container runtimes (docker, containerd,
/// CRI-O: the CNI bridge plugin adds a pod's rules when the runtime sets the
/// pod up), kubelet and kube-proxy, which then build their own rules
/// (docker's DOCKER chain and port maps, the CNI's per-pod chains,
/// kube-proxy's chains) on top of the restored table instead of losing them
/// to it. systemd ignores a Before= unit that is not installed.
pub const DEFAULT_AFTER: [&str; 1] = ["flanneld.service"];
pub const DEFAULT_BEFORE: [&str; 5] = [
    "docker.service",
    "containerd.service",
    "crio.service",
    "kubelet.service",
    "kube-proxy.service",
];

/// An enablement link's state after (or, with `check`, before) install.
#[derive(Debug, Clone, Serialize)]
pub struct LinkOutcome {
    pub path: PathBuf,
    pub target: PathBuf,
    pub changed: bool,
}

/// What `install-unit` did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallOutcome {
    pub units: Vec<FileOutcome>,
    /// Empty with `--no-enable`: links are left as they are.
    pub links: Vec<LinkOutcome>,
    pub changed: bool,
    /// What happened about `systemctl daemon-reload`, in words.
    pub daemon_reload: String,
}

/// Writes the units under `root` and, with `enable`, their wants links
/// exactly as `systemctl enable` makes them. Never starts a unit: a
/// whole-table restore at runtime would wipe kube-proxy's rules.
pub fn install(
    spec: &UnitSpec,
    extras: Option<&Extras>,
    root: &Path,
    enable: bool,
    opts: Options,
) -> Result<InstallOutcome> {
    let unit_dir = paths::unit_dir(root);
    let mut units = Vec::new();
    let mut links = Vec::new();
    for file in unit_files(spec, extras) {
        units.push(write::update(
            &unit_dir.join(file.name),
            opts,
            atomic::UNIT_FILE_MODE,
            |_| Ok(file.text),
            |_| Ok(()),
        )?);
        if enable {
            let link = unit_dir
                .join(format!("{}.wants", file.wanted_by))
                .join(file.name);
            let target = Path::new(paths::UNIT_DIR).join(file.name);
            let _lock = if opts.check {
                None
            } else {
                Some(atomic::lock_and_clean(atomic::parent(&link))?)
            };
            let changed = atomic::link_state(&link, &target)? != atomic::LinkState::Correct;
            if changed && !opts.check {
                atomic::symlink(&link, &target)?;
            }
            links.push(LinkOutcome {
                path: link,
                target,
                changed,
            });
        }
    }
    let changed = units.iter().any(|u| u.changed) || links.iter().any(|l| l.changed);
    let daemon_reload = if !changed {
        "not needed: nothing changed".to_owned()
    } else if opts.check {
        "not run: --check".to_owned()
    } else if root != Path::new("/") {
        format!("not run: --root is {}, not /", root.display())
    } else if !system::systemd_booted() {
        "not possible: systemd is not running as PID 1 here; run `systemctl daemon-reload` once it is".to_owned()
    } else {
        system::daemon_reload()?;
        "done".to_owned()
    };
    Ok(InstallOutcome {
        units,
        links,
        changed,
        daemon_reload,
    })
}

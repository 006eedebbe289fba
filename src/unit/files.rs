//! The unit files, rendered from `units/*.in`: podsnat.service (the boot
//! restore), podsnat-pin.service and its timer (after every docker start),
//! podsnat-verify.service and its timer (optional). Pure.

use askama::Template;

use super::{UnitName, UnitPath, UnitSpec, UnitTable};
use crate::config::FLAGS_ORIGIN;
use crate::error::{Error, Result};
use crate::family::Family;

/// A unit podsnat installs: its name, and the target whose `.wants`
/// directory enables it (rendered into the unit's `WantedBy=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    pub wanted_by: &'static str,
}

pub const BOOT: Kind = Kind {
    name: "podsnat.service",
    wanted_by: "multi-user.target",
};
pub const ANCHOR: Kind = Kind {
    name: "podsnat-anchor.service",
    wanted_by: "multi-user.target",
};
/// After every docker start, which is what wants it.
pub const PIN: Kind = Kind {
    name: "podsnat-pin.service",
    wanted_by: "docker.service",
};
pub const PIN_TIMER: Kind = Kind {
    name: "podsnat-pin.timer",
    wanted_by: "timers.target",
};
pub const VERIFY: Kind = Kind {
    name: "podsnat-verify.service",
    wanted_by: "docker.service",
};
pub const VERIFY_TIMER: Kind = Kind {
    name: "podsnat-verify.timer",
    wanted_by: "timers.target",
};

/// The one table of podsnat's units, in the order they are installed:
/// the templates, `install-unit`, the fleet's golden files and (checked
/// by tests/it/ansible.rs) the Ansible role's `podsnat_golden_units` all
/// take names and targets from here.
pub const ALL: [Kind; 6] = [BOOT, ANCHOR, PIN, PIN_TIMER, VERIFY, VERIFY_TIMER];

#[derive(Template)]
#[template(path = "podsnat-anchor.service.in", escape = "none")]
struct AnchorService<'a> {
    version: &'static str,
    wanted_by: &'static str,
    file: &'a UnitPath,
    nft: &'a UnitPath,
    before: String,
    ipv6: bool,
}

#[derive(Template)]
#[template(path = "podsnat.service.in", escape = "none")]
struct ServiceUnit<'a> {
    version: &'static str,
    wanted_by: &'static str,
    after: String,
    before: String,
    tables: &'a [UnitTable],
    /// The sandbox lets ip6tables-legacy's AF_INET6 socket through.
    ipv6: bool,
}

#[derive(Template)]
#[template(path = "podsnat-verify.service.in", escape = "none")]
struct VerifyService<'a> {
    version: &'static str,
    wanted_by: &'static str,
    podsnat: &'a UnitPath,
    config: &'a UnitPath,
    /// `--iptables-save S --iptables-restore R`, and IPv6's pair.
    programs: String,
    ipv6: bool,
    /// The textfile directory verify writes its metrics to.
    metrics: Option<&'a UnitPath>,
}

#[derive(Template)]
#[template(path = "podsnat-verify.timer.in", escape = "none")]
struct VerifyTimer {
    version: &'static str,
    wanted_by: &'static str,
}

#[derive(Template)]
#[template(path = "podsnat-pin.service.in", escape = "none")]
struct PinService<'a> {
    version: &'static str,
    wanted_by: &'static str,
    podsnat: &'a UnitPath,
    tables: &'a [UnitTable],
    /// Each family's `--file F --iptables-save S --iptables-restore R`.
    args: String,
    ipv6: bool,
    /// The textfile directory the pin writes its metrics to.
    metrics: Option<&'a UnitPath>,
}

#[derive(Template)]
#[template(path = "podsnat-pin.timer.in", escape = "none")]
struct PinTimer {
    version: &'static str,
    wanted_by: &'static str,
}

/// What the units that run podsnat itself (the pin, verify) need: the
/// binary, and for each table the iptables-save that pairs with the boot
/// unit's restore.
#[derive(Debug, Clone)]
pub struct RuntimeSpec {
    pub podsnat: UnitPath,
    /// One per `UnitSpec::tables`, in order.
    pub saves: Vec<UnitPath>,
}

/// The units beside podsnat.service: podsnat-pin.service and its timer
/// (the default), podsnat-verify.service and its timer (`--verify-timer`,
/// with the node's config).
#[derive(Debug, Clone)]
pub struct Extras {
    pub runtime: RuntimeSpec,
    pub pin: bool,
    pub verify_config: Option<UnitPath>,
    /// node_exporter's textfile directory, where the pin and verify write
    /// their metrics (`install-unit --metrics`).
    pub metrics: Option<UnitPath>,
}

/// A path given with `flag` on the command line.
pub fn flag_path(flag: &str, v: &str) -> Result<UnitPath> {
    UnitPath::parse(v).map_err(|p| Error::field(FLAGS_ORIGIN, flag, v, p))
}

impl RuntimeSpec {
    /// From command-line flags.
    pub fn parse(podsnat: &str, tables: &[UnitTable]) -> Result<Self> {
        Self::parse_from(FLAGS_ORIGIN, "", podsnat, tables)
    }

    /// From a file (an inventory's `[unit]`): errors name `origin` and the
    /// key under `prefix`; with an empty prefix, the flag.
    pub fn parse_from(
        origin: &str,
        prefix: &str,
        podsnat: &str,
        tables: &[UnitTable],
    ) -> Result<Self> {
        let key = |k: &str| crate::config::key_name(prefix.is_empty(), prefix, k);
        let path =
            |k: &str, v: &str| UnitPath::parse(v).map_err(|p| Error::field(origin, key(k), v, p));
        // iptables-restore and iptables-save come in pairs per backend.
        let saves = tables
            .iter()
            .map(|t| {
                let restore = t.restore.as_str();
                let save = restore
                    .strip_suffix("-restore")
                    .map(|stem| format!("{stem}-save"))
                    .ok_or_else(|| {
                        Error::field(
                            origin,
                            key("iptables_restore"),
                            restore,
                            "does not end in \"-restore\", so its iptables-save cannot be derived",
                        )
                    })?;
                path("iptables_restore", &save)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RuntimeSpec {
            podsnat: path("podsnat", podsnat)?,
            saves,
        })
    }
}

fn join(list: &[UnitName]) -> String {
    list.iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// askama drops a template's final newline; unit files end with one.
fn with_newline(mut s: String) -> String {
    s.push('\n');
    s
}

/// One unit file podsnat installs, and the target whose `.wants`
/// directory enables it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    pub name: &'static str,
    pub text: String,
    pub wanted_by: &'static str,
}

impl UnitFile {
    fn new(kind: Kind, text: String) -> UnitFile {
        UnitFile {
            name: kind.name,
            text: with_newline(text),
            wanted_by: kind.wanted_by,
        }
    }
}

/// Renders podsnat.service. Pure.
pub fn render(spec: &UnitSpec) -> String {
    with_newline(
        ServiceUnit {
            version: env!("CARGO_PKG_VERSION"),
            wanted_by: BOOT.wanted_by,
            after: join(&spec.after),
            before: join(&spec.before),
            tables: &spec.tables,
            ipv6: spec.has_ipv6(),
        }
        .to_string(),
    )
}

/// The pin's (`with_files`) or verify's options that name each family's
/// rules file and programs, IPv4's first.
fn table_args(spec: &UnitSpec, rt: &RuntimeSpec, with_files: bool) -> String {
    spec.tables
        .iter()
        .zip(&rt.saves)
        .map(|(t, save)| {
            let (file, tool) = match t.family {
                Family::V4 => ("--file", "iptables"),
                Family::V6 => ("--file6", "ip6tables"),
            };
            let programs = format!("--{tool}-save {save} --{tool}-restore {}", t.restore);
            if with_files {
                format!("{file} {} {programs}", t.file)
            } else {
                programs
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every unit file to install, rendered. Pure.
pub fn unit_files(spec: &UnitSpec, extras: Option<&Extras>) -> Vec<UnitFile> {
    let version = env!("CARGO_PKG_VERSION");
    let ipv6 = spec.has_ipv6();
    let mut files = vec![UnitFile {
        name: BOOT.name,
        text: render(spec),
        wanted_by: BOOT.wanted_by,
    }];
    if let Some(a) = &spec.anchor {
        let text = AnchorService {
            version,
            wanted_by: ANCHOR.wanted_by,
            file: &a.file,
            nft: &a.nft,
            before: join(&spec.before),
            ipv6,
        };
        files.push(UnitFile::new(ANCHOR, text.to_string()));
    }
    let Some(x) = extras else {
        return files;
    };
    let rt = &x.runtime;
    if x.pin {
        let text = PinService {
            version,
            wanted_by: PIN.wanted_by,
            podsnat: &rt.podsnat,
            tables: &spec.tables,
            args: table_args(spec, rt, true),
            ipv6,
            metrics: x.metrics.as_ref(),
        };
        files.push(UnitFile::new(PIN, text.to_string()));
        let timer = PinTimer {
            version,
            wanted_by: PIN_TIMER.wanted_by,
        };
        files.push(UnitFile::new(PIN_TIMER, timer.to_string()));
    }
    if let Some(config) = &x.verify_config {
        let text = VerifyService {
            version,
            wanted_by: VERIFY.wanted_by,
            podsnat: &rt.podsnat,
            config,
            programs: table_args(spec, rt, false),
            ipv6,
            metrics: x.metrics.as_ref(),
        };
        files.push(UnitFile::new(VERIFY, text.to_string()));
        let timer = VerifyTimer {
            version,
            wanted_by: VERIFY_TIMER.wanted_by,
        };
        files.push(UnitFile::new(VERIFY_TIMER, timer.to_string()));
    }
    files
}

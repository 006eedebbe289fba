//! `podsnat install-unit`: write podsnat's units under `--root` (the boot
//! restore, the pin after every docker start and its timer, and with
//! `--verify-timer` the verify service and timer), enable them as
//! `systemctl enable` would, and never start them.

use std::path::Path;

use super::{ExitStatus, changed_status, verb};
use crate::cli::{Families, Format, InstallUnitArgs};
use crate::config::{self, UnitSettings};
use crate::error::Result;
use crate::family::Family;
use crate::printer::{Json, Printer, Shown};
use crate::unit::{self, Extras, RuntimeSpec, UnitSpec};
use crate::{paths, write};

pub fn run(args: &InstallUnitArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let from_config = args
        .config
        .as_deref()
        .map(|c| config::unit_settings(&paths::under_root(&args.root, Path::new(c))))
        .transpose()?;
    let spec = unit_spec(args, from_config.as_ref())?;
    // --metrics comes with the verify units: they write podsnat.prom.
    let verify = args.verify_timer || args.metrics.is_some();
    let extras = if args.no_pin && !verify {
        None
    } else {
        Some(Extras {
            runtime: RuntimeSpec::parse(&args.podsnat, &spec.tables)?,
            pin: !args.no_pin,
            verify_config: verify
                .then(|| {
                    unit::flag_path("--config", args.config.as_deref().unwrap_or(paths::CONFIG))
                })
                .transpose()?,
            metrics: args
                .metrics
                .as_deref()
                .map(|d| unit::flag_path("--metrics", d))
                .transpose()?,
        })
    };
    let opts = write::Options {
        check: args.change.check,
        diff: args.change.diff,
        ..write::Options::default()
    };
    let outcome = unit::install(&spec, extras.as_ref(), &args.root, !args.no_enable, opts)?;
    let text = match args.change.format {
        Format::Json => Shown::Json(Json::of(&outcome)?),
        Format::Text => {
            let mut t = String::new();
            for u in &outcome.units {
                t += &format!(
                    "{}{}: {} (sha256 {})\n",
                    u.diff.as_deref().unwrap_or(""),
                    verb(u.changed, args.change.check),
                    u.path.display(),
                    u.sha256
                );
            }
            for l in &outcome.links {
                t += &format!(
                    "{}: {} -> {}\n",
                    verb(l.changed, args.change.check),
                    l.path.display(),
                    l.target.display()
                );
            }
            Shown::Text(t + &format!("daemon-reload: {}\n", outcome.daemon_reload))
        }
    };
    p.show(&text)?;
    Ok(changed_status(outcome.changed))
}

/// The unit's settings: the flags, then the node's config file (its
/// families and anchor), then the defaults.
fn unit_spec(args: &InstallUnitArgs, from_config: Option<&UnitSettings>) -> Result<UnitSpec> {
    let or_default = |given: &[String], default: &[&str]| -> Vec<String> {
        if given.is_empty() {
            default.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        }
    };
    let families: &[Family] = match (args.family, from_config) {
        (Some(Families::Ipv4), _) => &[Family::V4],
        (Some(Families::Ipv6), _) => &[Family::V6],
        (Some(Families::Dual), _) => &Family::ALL,
        (None, Some(c)) => &c.families,
        (None, None) => &[Family::V4],
    };
    let spec = UnitSpec::parse(
        &or_default(&args.after, &unit::DEFAULT_AFTER),
        &or_default(&args.before, &unit::DEFAULT_BEFORE),
        unit::Files {
            families,
            file: args
                .file
                .as_deref()
                .unwrap_or_else(|| paths::default_rules_file(&args.root, Family::V4)),
            file6: args
                .file6
                .as_deref()
                .unwrap_or_else(|| paths::default_rules_file(&args.root, Family::V6)),
            restore: &args.iptables_restore,
        },
    )?;
    if args.no_anchor || from_config.is_some_and(|c| !c.anchor) {
        return Ok(spec);
    }
    spec.with_anchor(
        crate::config::FLAGS_ORIGIN,
        "",
        &args.anchor_file,
        &args.nft,
    )
}

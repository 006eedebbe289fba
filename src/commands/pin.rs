//! `podsnat pin`: podsnat's rules back above docker's broad MASQUERADE rule,
//! in one `iptables-restore --noflush` transaction (see `crate::live::pin`), for
//! each family's rules file given. podsnat-pin.service runs it after every
//! docker start.

use std::path::{Path, PathBuf};

use serde_json::json as object;

use super::{ExitStatus, nat_table, program, textfile};
use crate::cli::{Format, PinArgs};
use crate::error::{Error, Result};
use crate::family::Family;
use crate::live::pin;
use crate::printer::{Json, Printer, Shown};
use crate::{config, metrics, paths, system};

/// A rules file holds every table of the node; podsnat's own is small, but
/// the file may carry a large filter table beside it.
const MAX_RULES_FILE: u64 = 256 * 1024 * 1024;

/// The live table can change between `iptables-save` and the restore
/// (docker still adding port maps); a `-D` of a moved rule then fails the
/// whole transaction, which is planned and tried again.
const ATTEMPTS: usize = 3;

pub fn run(args: &PinArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let clock = textfile::Stopwatch::start();
    // The files given; without any, the IPv4 rules file at its default place.
    let mut files: Vec<(Family, PathBuf)> = [(Family::V4, &args.file), (Family::V6, &args.file6)]
        .into_iter()
        .filter_map(|(f, p)| p.clone().map(|p| (f, p)))
        .collect();
    if files.is_empty() {
        files.push((
            Family::V4,
            PathBuf::from(paths::default_rules_file(Path::new("/"), Family::V4)),
        ));
    }
    let titled = files.len() > 1;
    let mut shown = Vec::new();
    let mut status = ExitStatus::Unchanged;
    let mut runs = Vec::new();
    for (family, path) in &files {
        let (changed, value, text) = pin_one(args, *family, path)?;
        if changed {
            status = ExitStatus::Changed;
        }
        runs.push(metrics::PinRun {
            family: *family,
            pinned: changed && !args.check,
        });
        shown.push((family, value, text));
    }
    if let Some(dir) = &args.textfile {
        textfile::write(dir, metrics::PIN_FILE, |previous| {
            metrics::pin(&runs, clock.read(), previous)
        })?;
    }
    let text = match (args.format, shown.as_slice()) {
        (Format::Json, [(_, value, _)]) => Shown::Json(Json::of(value)?),
        (Format::Json, all) => {
            let map: serde_json::Map<String, serde_json::Value> = all
                .iter()
                .map(|(f, v, _)| (f.key().to_owned(), v.clone()))
                .collect();
            Shown::Json(Json::of(&map)?)
        }
        (Format::Text, all) => Shown::Text(
            all.iter()
                .map(|(f, _, t)| {
                    if titled {
                        format!("{}: {t}", f.iptables())
                    } else {
                        t.clone()
                    }
                })
                .collect(),
        ),
    };
    p.show(&text)?;
    Ok(status)
}

/// Pins one family's rules; returns whether it pinned (or would), and the
/// report as JSON and as text.
fn pin_one(
    args: &PinArgs,
    family: Family,
    path: &Path,
) -> Result<(bool, serde_json::Value, String)> {
    let save = program(family, &args.save.iptables_save, &args.save.ip6tables_save);
    let restore = program(
        family,
        &args.restore.iptables_restore,
        &args.restore.ip6tables_restore,
    );
    let origin = path.display().to_string();
    let text = config::read_limited(path, MAX_RULES_FILE)?;
    let file_nat = nat_table(&origin, &text)?;
    let ours = pin::ours(&text, &file_nat, family).map_err(|e| Error::Unreadable {
        origin: origin.clone(),
        source: e.into(),
    })?;
    let live_source = format!("{save} -t nat");
    let mut attempt = 1;
    loop {
        let live_text = system::save_nat(save)?;
        let Some(plan) = pin::plan(&ours, &nat_table(&live_source, &live_text)?) else {
            return Ok((
                false,
                object!({"pin": null, "applied": false}),
                "pin: podsnat's rules already stand above docker's; nothing to do\n".to_owned(),
            ));
        };
        if args.check {
            let text = format!(
                "would pin podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}",
                plan.position, plan.transaction
            );
            return Ok((true, object!({"pin": plan, "applied": false}), text));
        }
        match system::restore_noflush(restore, &plan.transaction) {
            Ok(()) => {
                let text = format!(
                    "pinned podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}",
                    plan.position, plan.transaction
                );
                let value = object!({"pin": plan, "applied": true, "attempts": attempt});
                return Ok((true, value, text));
            }
            Err(Error::Failed { .. }) if attempt < ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

//! `podsnat pin`: podsnat's rules back above docker's broad MASQUERADE rule,
//! in one `iptables-restore --noflush` transaction (see `crate::pin`).
//! podsnat-pin.service runs it after every docker start.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json as object;

use super::{ExitStatus, emit, json, nat_table};
use crate::cli::{Format, PinArgs};
use crate::error::{Error, Result};
use crate::{config, paths, pin, system};

/// A rules file holds every table of the node; podsnat's own is small, but
/// the file may carry a large filter table beside it.
const MAX_RULES_FILE: u64 = 256 * 1024 * 1024;

/// The live table can change between `iptables-save` and the restore
/// (docker still adding port maps); a `-D` of a moved rule then fails the
/// whole transaction, which is planned and tried again.
const ATTEMPTS: usize = 3;

pub fn run(args: &PinArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let path = args
        .file
        .clone()
        .unwrap_or_else(|| PathBuf::from(paths::default_rules_file(Path::new("/"))));
    let origin = path.display().to_string();
    let text = config::read_limited(&path, MAX_RULES_FILE)?;
    let file_nat = nat_table(&origin, &text)?;
    let ours = pin::ours(&text, &file_nat).map_err(|message| Error::Invalid {
        origin: origin.clone(),
        message,
    })?;
    let live_source = format!("{} -t nat", args.iptables_save);
    let restore = &args.iptables_restore;
    let mut attempt = 1;
    loop {
        let live_text = system::save_nat(&args.iptables_save)?;
        let Some(plan) = pin::plan(&ours, &nat_table(&live_source, &live_text)?) else {
            let shown = match args.format {
                Format::Json => json(&object!({"pin": null, "applied": false}))?,
                Format::Text => {
                    "pin: podsnat's rules already stand above docker's; nothing to do\n".to_owned()
                }
            };
            emit(out, &shown)?;
            return Ok(ExitStatus::Unchanged);
        };
        if args.check {
            let shown = match args.format {
                Format::Json => json(&object!({"pin": plan, "applied": false}))?,
                Format::Text => format!(
                    "would pin podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}",
                    plan.position, plan.transaction
                ),
            };
            emit(out, &shown)?;
            return Ok(ExitStatus::Changed);
        }
        match system::restore_noflush(restore, &plan.transaction) {
            Ok(()) => {
                let shown = match args.format {
                    Format::Json => {
                        json(&object!({"pin": plan, "applied": true, "attempts": attempt}))?
                    }
                    Format::Text => format!(
                        "pinned podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}",
                        plan.position, plan.transaction
                    ),
                };
                emit(out, &shown)?;
                return Ok(ExitStatus::Changed);
            }
            Err(Error::Failed { .. }) if attempt < ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

//! `podsnat verify`: evaluate the live nat table (or `--file`) in rule
//! order; with `--repair`, put podsnat's exclusion back with one
//! `iptables-restore --noflush` transaction and evaluate again. `inputs`
//! gathers what the evaluation reads besides the table.

mod inputs;

use inputs::{docker_settings, ipsets, test_file};

use std::io::Write;

use serde_json::json as object;

use super::{ExitStatus, emit, json, load_spec, nat_table};
use crate::cli::{Format, VerifyArgs};

use crate::error::{Error, Result};
use crate::system;
use crate::verify::docker;
use crate::verify::{self, Report, Status};
use crate::{config, rules_file};

pub fn run(args: &VerifyArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let spec = load_spec(&args.spec)?;
    let (source, text) = match &args.file {
        Some(path) => {
            let text = config::read_any(path)?;
            // Pasted `iptables -t nat -S` output reads as the table it shows.
            let text = rules_file::from_dash_s(&text).unwrap_or(text);
            (path.display().to_string(), text)
        }
        None => (
            format!("{} -t nat", args.iptables_save),
            system::save_nat(&args.iptables_save)?,
        ),
    };
    let table = nat_table(&source, &text)?;
    let malformed = |e: verify::Malformed| Error::Syntax {
        path: source.clone(),
        message: e.to_string(),
    };
    if args.file.is_some() {
        // A file under review must be one the kernel would load: every
        // rule is checked, and iptables-restore --test has the last word.
        verify::check_all(&table).map_err(malformed)?;
        if !args.no_test {
            test_file(&args.iptables_restore, &source, &text)?;
        }
    }
    let docker = docker_settings(args)?;
    let sets = ipsets(args, &text)?;
    let judge = |table: &_| -> Result<Report> {
        let report = verify::evaluate_with(&spec, table, &sets).map_err(malformed)?;
        Ok(match &docker {
            Some(d) => report.with_docker(docker::check(&spec, d)),
            None => report,
        })
    };
    let report = judge(&table)?;
    if !args.repair {
        let shown = match args.format {
            Format::Json => json(&report)?,
            Format::Text => verify::text(&report),
        };
        emit(out, &shown)?;
        return Ok(exit(&report));
    }

    let repair = verify::plan_repair(&spec, &table).map_err(Error::CannotRepair)?;
    let restore = &args.iptables_restore;
    let Some(repair) = repair else {
        let shown = match args.format {
            Format::Json => json(&object!({"before": report, "repair": null}))?,
            Format::Text if report.status == Status::Drift => format!(
                "{}repair: not possible at runtime; only pod→cluster drift is repaired. \
                 The table is restored at the next boot.\n",
                verify::text(&report)
            ),
            Format::Text => format!("{}repair: nothing to do\n", verify::text(&report)),
        };
        emit(out, &shown)?;
        return Ok(exit(&report));
    };
    if args.check {
        let shown = match args.format {
            Format::Json => json(&object!({"before": report, "repair": repair, "applied": false}))?,
            Format::Text => format!(
                "{}would repair with `{restore} --noflush`:\n{}",
                verify::text(&report),
                repair.transaction
            ),
        };
        emit(out, &shown)?;
        return Ok(ExitStatus::Changed);
    }

    system::restore_noflush(restore, &repair.transaction)?;
    let text = system::save_nat(&args.iptables_save)?;
    let after = judge(&nat_table(&source, &text)?)?;
    let shown = match args.format {
        Format::Json => {
            json(&object!({"before": report, "repair": repair, "applied": true, "after": after}))?
        }
        Format::Text => format!(
            "{}repaired with `{restore} --noflush`:\n{}now:\n{}",
            verify::text(&report),
            repair.transaction,
            verify::text(&after)
        ),
    };
    emit(out, &shown)?;
    Ok(match after.status {
        Status::Ok => ExitStatus::Changed,
        _ => ExitStatus::Failed,
    })
}

/// 0 ok, 2 drift, 1 cannot decide.
fn exit(report: &Report) -> ExitStatus {
    match report.status {
        Status::Ok => ExitStatus::Unchanged,
        Status::Drift => ExitStatus::Changed,
        Status::Undecided => ExitStatus::Failed,
    }
}

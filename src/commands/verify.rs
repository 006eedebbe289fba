//! `podsnat verify`: evaluate the live nat table (or `--file`) in rule
//! order; with `--repair`, put podsnat's exclusion back with one
//! `iptables-restore --noflush` transaction and evaluate again.

use std::io::Write;

use serde_json::json as object;

use super::{ExitStatus, emit, json, load_spec, nat_table};
use crate::cli::{Format, VerifyArgs};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::paths;
use crate::system;
use crate::verify::Sets;
use crate::verify::docker::{self, DockerSettings};
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

/// `iptables-restore --test` on the whole file; a rejection is an error.
/// Where it cannot run (not root, not installed) a note on stderr says so.
fn test_file(restore: &str, source: &str, text: &str) -> Result<()> {
    if !system::is_root() {
        eprintln!(
            "podsnat: note: {restore} --test was not run on {source}: it needs root (--no-test skips it)"
        );
        return Ok(());
    }
    match system::restore_test(restore, text) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(rejected)) => Err(Error::Invalid {
            origin: source.to_owned(),
            message: format!(
                "{} rejects it, so a boot would restore nothing: {}{}",
                rejected.command,
                rejected.stderr.lines().collect::<Vec<_>>().join(" | "),
                if text.contains('\r') {
                    " (the file has CRLF line ends, which iptables-restore refuses)"
                } else {
                    ""
                }
            ),
        }),
        Err(Error::Spawn { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "podsnat: note: {restore} --test was not run on {source}: {restore} is not installed (--no-test skips it)"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The sets `-m set` rules match: `--ipsets FILE`, or on the live table
/// the kernel's (`ipset save`, where the table uses sets and ipset is
/// installed). None known otherwise.
fn ipsets(args: &VerifyArgs, table_text: &str) -> Result<Sets> {
    let (origin, text) = match (&args.ipsets, &args.file) {
        (Some(path), _) => (path.display().to_string(), config::read_any(path)?),
        (None, None) if table_text.contains("--match-set") => match system::ipset_save()? {
            Some(text) => ("ipset save".to_owned(), text),
            None => return Ok(Sets::default()),
        },
        _ => return Ok(Sets::default()),
    };
    Sets::parse(&text).map_err(|message| Error::Syntax {
        path: origin,
        message,
    })
}

/// docker's settings: the files given, or in live mode the usual places
/// that exist. `None` when there is nothing to read (docker not installed,
/// or a `--file` review without `--docker-config`).
fn docker_settings(args: &VerifyArgs) -> Result<Option<DockerSettings>> {
    let live = args.file.is_none();
    let json = args
        .docker_config
        .clone()
        .or_else(|| live.then(|| PathBuf::from(paths::DOCKER_DAEMON_JSON)));
    let mut units = args.docker_unit.clone();
    if live && units.is_empty() {
        let mut dropins: Vec<PathBuf> = std::fs::read_dir(paths::DOCKER_UNIT_DROPINS)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dropins.sort();
        units.extend(
            dropins
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "conf")),
        );
        units.extend(paths::DOCKER_UNITS.iter().map(PathBuf::from));
    }
    let mut settings = DockerSettings::default();
    let given = |p: &Path| {
        args.docker_config.as_deref() == Some(p) || args.docker_unit.iter().any(|u| u == p)
    };
    if let Some(path) = json
        && (given(&path) || path.exists())
    {
        let origin = path.display().to_string();
        let text = config::read_text(&path)?;
        settings
            .add_daemon_json(&origin, &text)
            .map_err(|message| Error::Syntax {
                path: origin,
                message,
            })?;
    }
    for path in units {
        if given(&path) || path.exists() {
            settings.add_unit(&path.display().to_string(), &config::read_text(&path)?);
        }
    }
    Ok((!settings.read.is_empty()).then_some(settings))
}

/// 0 ok, 2 drift, 1 cannot decide.
fn exit(report: &Report) -> ExitStatus {
    match report.status {
        Status::Ok => ExitStatus::Unchanged,
        Status::Drift => ExitStatus::Changed,
        Status::Undecided => ExitStatus::Failed,
    }
}

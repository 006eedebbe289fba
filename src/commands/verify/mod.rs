//! `podsnat verify`: evaluate the live nat table (or `--file`) in rule
//! order; with `--repair`, put podsnat's exclusion back with one
//! `iptables-restore --noflush` transaction and evaluate again. `inputs`
//! gathers what the evaluation reads besides the table.

mod inputs;
mod outcome;

use inputs::{docker_settings, ipsets, test_file};
use outcome::{Outcome, worst};

use super::textfile;

use std::io::Write;
use std::path::PathBuf;

use serde_json::json as object;

use super::{ExitStatus, emit, json, load_spec, nat_table, program};
use crate::cli::{Format, VerifyArgs, VerifyFormat};
use crate::metrics;

use crate::config::NodeSpec;
use crate::error::{Error, Result};
use crate::family::Family;
use crate::system;
use crate::verify::docker;
use crate::verify::{self, Report, Status};
use crate::{config, rules_file};

pub fn run(args: &VerifyArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let clock = textfile::Stopwatch::start();
    let node = load_spec(&args.spec)?;
    let live = args.file.is_none() && args.file6.is_none();
    for (family, flag, given) in [
        (Family::V4, "--file", &args.file),
        (Family::V6, "--file6", &args.file6),
    ] {
        if given.is_some() && node.family(family).is_none() {
            return Err(Error::Usage(format!(
                "{flag} is the {} rules file, but the node has no {} pod network",
                family.name(),
                family.name()
            )));
        }
    }
    // Live: every family the node has. Files: the families given one.
    let jobs: Vec<(&NodeSpec, Option<&PathBuf>)> = node
        .specs()
        .iter()
        .map(|spec| {
            let file = match spec.family() {
                Family::V4 => args.file.as_ref(),
                Family::V6 => args.file6.as_ref(),
            };
            (spec, file)
        })
        .filter(|(_, file)| live || file.is_some())
        .collect();
    // docker's settings are the node's, not a family's: judged once, in
    // the first family's report.
    let mut docker = docker_settings(args, live)?.map(|d| docker::check(node.specs(), &d));
    // The nftables layer, read once for both families.
    let mut ruleset = nft_ruleset(args, live)?;
    let mut anchor_note = String::new();
    // The families whose missing anchor this run loaded, for the metrics.
    let mut anchor_loaded: Vec<Family> = Vec::new();
    let missing: Vec<Family> = match &ruleset {
        Some(rs) if args.repair && node.anchor() => node
            .specs()
            .iter()
            .map(|s| s.family())
            .filter(|f| rs.anchor_priority(*f).is_none())
            .collect(),
        _ => Vec::new(),
    };
    if !missing.is_empty() {
        let file = args.anchor_file.display();
        if args.check {
            anchor_note = format!("would load the anchor with `{} -f {file}`\n", args.nft);
        } else {
            system::nft_load(&args.nft, &args.anchor_file)?;
            anchor_note = format!("loaded the anchor with `{} -f {file}`\n", args.nft);
            ruleset = nft_ruleset(args, live)?;
            anchor_loaded = missing;
        }
    }
    let mut results = Vec::new();
    for (spec, file) in jobs {
        let mut r = one(args, spec, file, docker.take(), live, ruleset.as_ref())?;
        if !anchor_note.is_empty() {
            r.text = format!("{anchor_note}{}", r.text);
            anchor_note.clear();
            if r.exit == ExitStatus::Unchanged {
                r.exit = ExitStatus::Changed;
            }
        }
        results.push(r);
    }
    let titled = node.specs().len() > 1 || node.family(Family::V4).is_none();
    let runs: Vec<metrics::VerifyRun<'_>> = results
        .iter()
        .map(|r| metrics::VerifyRun {
            family: r.family,
            report: &r.report,
            repaired: r.repaired,
            anchor_loaded: anchor_loaded.contains(&r.family),
        })
        .collect();
    let metrics = |previous: &str| metrics::verify(&runs, clock.read(), previous);
    let textfile = match &args.textfile {
        Some(dir) => Some(textfile::write(dir, metrics::VERIFY_FILE, metrics)?),
        None => None,
    };
    let shown = match (args.format, results.as_slice()) {
        // The file's text where one was written: the counters go on from it.
        (VerifyFormat::Prometheus, _) => match textfile {
            Some(text) => text,
            None => metrics("").map_err(textfile::unmade)?,
        },
        (VerifyFormat::Json, [one]) => json(&one.json)?,
        // Each family's report as it is alone, under "ipv4" and "ipv6".
        (VerifyFormat::Json, all) => {
            let mut both = serde_json::Map::new();
            both.insert("status".into(), object!(worst(all)));
            for r in all {
                both.insert(r.family.key().into(), r.json.clone());
            }
            json(&both)?
        }
        (VerifyFormat::Text, all) => all
            .iter()
            .map(|r| {
                if titled {
                    format!("{} nat table ({}):\n{}", r.family.name(), r.source, r.text)
                } else {
                    r.text.clone()
                }
            })
            .collect(),
    };
    // The metrics hold no input text, but they are printed lines like any
    // report's, so they go through the same function.
    match args.format {
        VerifyFormat::Text | VerifyFormat::Prometheus => emit(out, Format::Text, &shown)?,
        VerifyFormat::Json => emit(out, Format::Json, &shown)?,
    }
    // As within one table, drift outranks "cannot decide" (exit 2 over 1);
    // with --repair a repair that failed outranks one that worked.
    Ok(results
        .iter()
        .map(|r| r.exit)
        .max_by_key(|e| match (e, args.repair) {
            (ExitStatus::Unchanged, _) => 0,
            (ExitStatus::Failed, false) | (ExitStatus::Changed, true) => 1,
            (ExitStatus::Changed, false) | (ExitStatus::Failed, true) => 2,
        })
        .unwrap_or(ExitStatus::Unchanged))
}

/// The nftables ruleset: the live one, or `--nft-file` with `--file`;
/// `None` when a file is judged alone.
///
/// Live, it lists the chains first, then each table that has a nat chain
/// at postrouting (a jump never leaves its table). iptables-nft's own nat
/// table is left to iptables-save: on a node with kube-proxy's 20,000 rules
/// `nft -j list ruleset` takes seconds, most of them for that table.
fn nft_ruleset(args: &VerifyArgs, live: bool) -> Result<Option<verify::Ruleset>> {
    let parse = |origin: String, text: &str| {
        verify::Ruleset::parse(text).map_err(|e| Error::Syntax {
            path: origin,
            message: e.to_string(),
        })
    };
    if let Some(path) = &args.nft_file {
        let text = config::read_any(path)?;
        return parse(path.display().to_string(), &text).map(Some);
    }
    if !live {
        return Ok(None);
    }
    let list = |what: &[&str]| {
        system::nft_list(&args.nft, what).map_err(|e| match e {
            Error::Spawn { command, source } => Error::Failed {
                command,
                stderr: format!(
                    "{source}; verify reads every nftables nat chain too, since any of them can masquerade pod traffic (the nftables package has nft)"
                ),
            },
            e => e,
        })
    };
    let origin = |what: &str| format!("{} -j list {what}", args.nft);
    let chains = parse(origin("chains"), &list(&["chains"])?)?;
    let (mut tables, iptables) = chains.nat_tables();
    for (family, table) in iptables {
        // Legacy iptables makes no nftables table: one of that name is
        // someone else's and is read as any other.
        let save = if family == "ip6" {
            &args.save.ip6tables_save
        } else {
            &args.save.iptables_save
        };
        if !system::iptables_is_nft(save)? {
            tables.push((family, table));
        }
    }
    let mut ruleset = verify::Ruleset::default();
    for (family, table) in tables {
        let text = list(&["table", &family, &table])?;
        ruleset.merge(parse(origin(&format!("table {family} {table}")), &text)?);
    }
    Ok(Some(ruleset))
}

/// Verifies (and with --repair repairs) one family's table.
fn one(
    args: &VerifyArgs,
    spec: &NodeSpec,
    file: Option<&PathBuf>,
    docker: Option<docker::DockerCheck>,
    live: bool,
    ruleset: Option<&verify::Ruleset>,
) -> Result<Outcome> {
    let family = spec.family();
    let save = program(family, &args.save.iptables_save, &args.save.ip6tables_save);
    let restore = program(
        family,
        &args.restore.iptables_restore,
        &args.restore.ip6tables_restore,
    );
    let (source, text) = match file {
        Some(path) => {
            let text = config::read_any(path)?;
            // Pasted `iptables -t nat -S` output reads as the table it shows.
            let text = rules_file::from_dash_s(&text).unwrap_or(text);
            (path.display().to_string(), text)
        }
        None => (format!("{save} -t nat"), system::save_nat(save)?),
    };
    let table = nat_table(&source, &text)?;
    let malformed = |e: verify::Malformed| Error::Syntax {
        path: source.clone(),
        message: e.to_string(),
    };
    if file.is_some() {
        // A file under review must be one the kernel would load: every
        // rule is checked, and iptables-restore --test has the last word.
        verify::check_all(&table, family).map_err(malformed)?;
        if !args.no_test {
            test_file(restore, &source, &text)?;
        }
    }
    let sets = ipsets(args, &text, live)?;
    // iptables-save says which backend printed it; a legacy table is not
    // the nft `ip nat` table, which is then read as any other.
    let legacy = text.lines().take(3).any(|l| l.contains("(legacy)"));
    let nft = ruleset.map(|ruleset| verify::NftLayer {
        ruleset,
        iptables_nft: !legacy,
    });
    let judge = |table: &_| -> Result<Report> {
        let report = verify::evaluate_layers(spec, table, &sets, nft).map_err(malformed)?;
        Ok(match &docker {
            Some(d) => report.with_docker(d.clone()),
            None => report,
        })
    };
    let report = judge(&table)?;
    let done = |exit, text: String, value: serde_json::Value, report: Report, repaired| Outcome {
        family,
        source: source.clone(),
        exit,
        text,
        json: value,
        report,
        repaired,
    };
    if !args.repair {
        let json = object!(report);
        return Ok(done(
            exit(&report),
            verify::text(&report),
            json,
            report,
            false,
        ));
    }

    // A malformed rule stays that error; the rest cannot be repaired.
    let repair = verify::plan_repair(spec, &table, &sets).map_err(|e| match e {
        verify::RepairError::Malformed(m) => malformed(m),
        other => Error::CannotRepair(other.to_string()),
    })?;
    let Some(repair) = repair else {
        let text = if report.status == Status::Drift {
            format!(
                "{}repair: not possible at runtime; only pod→cluster, bridge and \
                 marked traffic drift is repaired. \
                 The table is restored at the next boot.\n",
                verify::text(&report)
            )
        } else {
            format!("{}repair: nothing to do\n", verify::text(&report))
        };
        let json = object!({"before": report, "repair": null});
        return Ok(done(exit(&report), text, json, report, false));
    };
    if args.check {
        let text = format!(
            "{}would repair with `{restore} --noflush`:\n{}",
            verify::text(&report),
            repair.transaction
        );
        let json = object!({"before": report, "repair": repair, "applied": false});
        return Ok(done(ExitStatus::Changed, text, json, report, false));
    }

    system::restore_noflush(restore, &repair.transaction)?;
    let text = system::save_nat(save)?;
    let after = judge(&nat_table(&source, &text)?)?;
    let shown = format!(
        "{}repaired with `{restore} --noflush`:\n{}now:\n{}",
        verify::text(&report),
        repair.transaction,
        verify::text(&after)
    );
    let json = object!({"before": report, "repair": repair, "applied": true, "after": after});
    let exit = match after.status {
        Status::Ok => ExitStatus::Changed,
        _ => ExitStatus::Failed,
    };
    Ok(done(exit, shown, json, after, true))
}

/// 0 ok, 2 drift, 1 cannot decide.
fn exit(report: &Report) -> ExitStatus {
    match report.status {
        Status::Ok => ExitStatus::Unchanged,
        Status::Drift => ExitStatus::Changed,
        Status::Undecided => ExitStatus::Failed,
    }
}

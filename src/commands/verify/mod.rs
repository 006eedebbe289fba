//! `podsnat verify`: evaluate the live nat table (or `--file`) in rule
//! order; with `--repair`, put podsnat's exclusion back with one
//! `iptables-restore --noflush` transaction and evaluate again. `inputs`
//! gathers what the evaluation reads besides the table.

mod inputs;
mod outcome;
mod read;

use inputs::docker_settings;
use outcome::{Outcome, Repair, worst};
use read::Read;

use super::textfile;

use std::path::PathBuf;

use serde_json::json as object;

use super::{ExitStatus, load_spec};
use crate::cli::{VerifyArgs, VerifyFormat};
use crate::live::Change;
use crate::metrics;
use crate::printer::{Json, Printer, Shown};

use crate::config;
use crate::config::NodeSpec;
use crate::docker;
use crate::error::{Error, Result};
use crate::family::Family;
use crate::system;
use crate::verify::{self, Report};

pub fn run(args: &VerifyArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
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
    // Read every input once: docker's settings (the node's, not a
    // family's: judged once, in the first family's report), the nftables
    // layer (read once for both families), each family's table and sets.
    let docker = docker_settings(args, live)?.map(|d| docker::check(node.specs(), &d));
    let ruleset = nft_ruleset(args, live)?;
    let reads: Vec<Read<'_>> = jobs
        .into_iter()
        .map(|(spec, file)| Read::new(args, spec, file, live))
        .collect::<Result<_>>()?;
    // Judge: one report per family, from those inputs alone.
    let before: Vec<Report> = reads
        .iter()
        .enumerate()
        .map(|(i, r)| r.judge(ruleset.as_ref(), docker.as_ref().filter(|_| i == 0)))
        .collect::<Result<_>>()?;
    let (results, anchor_line) = if args.repair {
        let plans = plan(&node, &reads, &before, ruleset.as_ref())?;
        let after = if args.check {
            vec![None; reads.len()]
        } else {
            act(args, &reads, &plans, docker.as_ref())?
        };
        (
            outcomes(args, &reads, before, &plans, after),
            plans.anchor_line(args),
        )
    } else {
        let results = reads
            .iter()
            .zip(before)
            .map(|(read, report)| Outcome {
                family: read.spec.family(),
                source: read.source.clone(),
                before: report,
                repair: None,
            })
            .collect();
        (results, None)
    };
    let titled = node.specs().len() > 1 || node.family(Family::V4).is_none();
    let runs: Vec<metrics::VerifyRun<'_>> = results
        .iter()
        .map(|r| metrics::VerifyRun {
            family: r.family,
            report: r.last(),
            repaired: r.repaired(),
            anchor_loaded: r.anchor_loaded(),
        })
        .collect();
    let metrics = |previous: &str| metrics::verify(&runs, clock.read(), previous);
    let textfile = match &args.textfile {
        Some(dir) => Some(textfile::write(dir, metrics::VERIFY_FILE, metrics)?),
        None => None,
    };
    let shown = match (args.format, results.as_slice()) {
        // The file's text where one was written: the counters go on from it.
        (VerifyFormat::Prometheus, _) => Shown::Text(match textfile {
            Some(text) => text,
            None => metrics("").map_err(textfile::unmade)?,
        }),
        (VerifyFormat::Json, [one]) => Shown::Json(Json::of(&one.json())?),
        // Each family's report as it is alone, under "ipv4" and "ipv6".
        (VerifyFormat::Json, all) => {
            let mut both = serde_json::Map::new();
            both.insert("status".into(), object!(worst(all)));
            for r in all {
                both.insert(r.family.key().into(), r.json());
            }
            Shown::Json(Json::of(&both)?)
        }
        // The anchor holds every family: its line goes before the first.
        (VerifyFormat::Text, all) => Shown::Text(
            anchor_line
                .into_iter()
                .chain(all.iter().map(|r| {
                    if titled {
                        format!(
                            "{} nat table ({}):\n{}",
                            r.family.name(),
                            r.source,
                            r.text()
                        )
                    } else {
                        r.text()
                    }
                }))
                .collect(),
        ),
    };
    // The notes of the reading (a --test that could not run) first, on
    // stderr. The metrics hold no input text, but they are printed lines
    // like any report's, so they go through the same door.
    for note in reads.iter().flat_map(|r| &r.notes) {
        p.note(note);
    }
    p.show(&shown)?;
    Ok(outcome::node_exit(&results, args.repair))
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
        verify::Ruleset::parse(text).map_err(|e| Error::Unreadable {
            origin,
            source: e.into(),
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

/// What `--repair` plans, from the reports the families were judged with:
/// the families whose anchor the config wants and the kernel lacks, and
/// each table's `--noflush` change.
struct Plans {
    missing: Vec<Family>,
    changes: Vec<Option<Change>>,
}

impl Plans {
    /// The line that says the anchor is (or would be) loaded.
    fn anchor_line(&self, args: &VerifyArgs) -> Option<String> {
        let file = args.anchor_file.display();
        let verb = if args.check { "would load" } else { "loaded" };
        (!self.missing.is_empty())
            .then(|| format!("{verb} the anchor with `{} -f {file}`\n", args.nft))
    }
}

fn plan(
    node: &config::Node,
    reads: &[Read<'_>],
    before: &[Report],
    ruleset: Option<&verify::Ruleset>,
) -> Result<Plans> {
    let missing = match ruleset {
        Some(rs) if node.anchor() => reads
            .iter()
            .map(|r| r.spec.family())
            .filter(|f| rs.anchor_priority(*f).is_none())
            .collect(),
        _ => Vec::new(),
    };
    let changes = reads
        .iter()
        .zip(before)
        .map(|(r, report)| r.plan(ruleset, report))
        .collect::<Result<_>>()?;
    Ok(Plans { missing, changes })
}

/// Acts on the plans: the anchor first (it decides before iptables'
/// table), then each table's change; then reads the tables that changed
/// and the nftables layer again and judges them. `None` for a family
/// nothing was done to.
fn act(
    args: &VerifyArgs,
    reads: &[Read<'_>],
    plans: &Plans,
    docker: Option<&docker::DockerCheck>,
) -> Result<Vec<Option<Report>>> {
    if !plans.missing.is_empty() {
        system::nft_load(&args.nft, &args.anchor_file)?;
    }
    for (read, change) in reads.iter().zip(&plans.changes) {
        if let Some(change) = change {
            system::restore_noflush(read.restore(args), &change.transaction)?;
        }
    }
    let acted: Vec<bool> = reads
        .iter()
        .zip(&plans.changes)
        .map(|(r, c)| c.is_some() || plans.missing.contains(&r.spec.family()))
        .collect();
    if !acted.contains(&true) {
        return Ok(vec![None; reads.len()]);
    }
    let ruleset = nft_ruleset(args, true)?;
    reads
        .iter()
        .zip(&acted)
        .enumerate()
        .map(|(i, (read, acted))| {
            let docker = docker.filter(|_| i == 0);
            acted
                .then(|| read.again(args)?.judge(ruleset.as_ref(), docker))
                .transpose()
        })
        .collect()
}

/// Each family's facts: its verdict, its plan and what came after.
fn outcomes(
    args: &VerifyArgs,
    reads: &[Read<'_>],
    before: Vec<Report>,
    plans: &Plans,
    after: Vec<Option<Report>>,
) -> Vec<Outcome> {
    reads
        .iter()
        .zip(before)
        .zip(&plans.changes)
        .zip(after)
        .map(|(((read, before), change), after)| Outcome {
            family: read.spec.family(),
            source: read.source.clone(),
            before,
            repair: Some(Repair {
                plan: change.clone(),
                restore: read.restore(args).to_owned(),
                loads_anchor: plans.missing.contains(&read.spec.family()),
                after,
            }),
        })
        .collect()
}

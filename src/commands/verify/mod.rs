//! `podsnat verify`: evaluate the live nat table (or `--file`) in rule
//! order; with `--repair`, put podsnat's exclusion back with one
//! `iptables-restore --noflush` transaction and evaluate again. The data
//! goes one way: `read.rs` reads every input once into one value
//! (`Inputs`, with `inputs.rs`' readers), the verdict is judged from it,
//! `--repair` plans from that verdict, acts and judges again, and
//! `outcome.rs` derives the text, the JSON, the metrics and the exit from
//! the facts.

mod flows;
mod inputs;
mod outcome;
mod read;

use outcome::{NodeOutcome, Outcome, Repair};
use read::{Inputs, Read};

use super::textfile;

use std::path::PathBuf;

use inputs::nft_ruleset;

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
    // Read every input once, then judge that value alone.
    let inputs = Inputs::read(args, &node, jobs, live)?;
    let before = inputs.judge()?;
    let (reads, ruleset, docker) = (
        &inputs.tables,
        inputs.ruleset.as_ref(),
        inputs.docker.as_ref(),
    );
    let (families, anchor_line) = if args.repair {
        let plans = plan(&node, reads, &before, ruleset)?;
        let (after, flows) = if args.check {
            (
                vec![None; reads.len()],
                flows::clear_all(args, reads, false)?,
            )
        } else {
            act(args, reads, &plans, docker)?
        };
        (
            outcomes(args, reads, before, &plans, after, flows),
            plans.anchor_line(args),
        )
    } else {
        let families = reads
            .iter()
            .zip(before)
            .map(|(read, report)| Outcome {
                family: read.spec.family(),
                source: read.source.clone(),
                before: report,
                repair: None,
            })
            .collect();
        (families, None)
    };
    let verdict = NodeOutcome {
        families,
        anchor_line,
    };
    let titled = node.specs().len() > 1 || node.family(Family::V4).is_none();
    let runs: Vec<metrics::VerifyRun<'_>> = verdict
        .families
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
    let shown = match args.format {
        // The file's text where one was written: the counters go on from it.
        VerifyFormat::Prometheus => Shown::Text(match textfile {
            Some(text) => text,
            None => metrics("").map_err(textfile::unmade)?,
        }),
        VerifyFormat::Json => Shown::Json(Json::of(&verdict.json())?),
        VerifyFormat::Text => Shown::Text(verdict.text(titled)),
    };
    // The notes of the reading (a --test that could not run) first, on
    // stderr. The metrics hold no input text, but they are printed lines
    // like any report's, so they go through the same door.
    for note in reads.iter().flat_map(|r| &r.notes) {
        p.note(note);
    }
    p.show(&shown)?;
    Ok(verdict.exit(args.repair))
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

/// Each family's verdict after acting, and what was done to its flows.
type Acted = (Vec<Option<Report>>, Vec<Option<flows::FlowRepair>>);

/// Acts on the plans: the anchor first (it decides before iptables'
/// table), then each table's change, then the flows the fix did not
/// reach (flows.rs); then reads the tables that changed and the nftables
/// layer again and judges them. `None` for a family nothing was done to.
fn act(
    args: &VerifyArgs,
    reads: &[Read<'_>],
    plans: &Plans,
    docker: Option<&docker::DockerCheck>,
) -> Result<Acted> {
    if !plans.missing.is_empty() {
        system::nft_load(&args.nft, &args.anchor_file)?;
    }
    for (read, change) in reads.iter().zip(&plans.changes) {
        if let Some(change) = change {
            system::restore_noflush(read.restore(args), &change.transaction)?;
        }
    }
    // The rules now keep the pods' source: the flows set up before go.
    let cleared = flows::clear_all(args, reads, true)?;
    let acted: Vec<bool> = reads
        .iter()
        .zip(&plans.changes)
        .zip(&cleared)
        .map(|((r, c), f)| {
            c.is_some()
                || plans.missing.contains(&r.spec.family())
                || f.as_ref().is_some_and(|f| f.deleted + f.reset > 0)
        })
        .collect();
    if !acted.contains(&true) {
        return Ok((vec![None; reads.len()], cleared));
    }
    let ruleset = nft_ruleset(args, true, docker.is_some())?;
    let after = reads
        .iter()
        .zip(&acted)
        .enumerate()
        .map(|(i, (read, acted))| {
            let docker = docker.filter(|_| i == 0);
            acted
                .then(|| read.again(args)?.judge(ruleset.as_ref(), docker))
                .transpose()
        })
        .collect::<Result<_>>()?;
    Ok((after, cleared))
}

/// Each family's facts: its verdict, its plan and what came after.
fn outcomes(
    args: &VerifyArgs,
    reads: &[Read<'_>],
    before: Vec<Report>,
    plans: &Plans,
    after: Vec<Option<Report>>,
    flows: Vec<Option<flows::FlowRepair>>,
) -> Vec<Outcome> {
    reads
        .iter()
        .zip(before)
        .zip(&plans.changes)
        .zip(after)
        .zip(flows)
        .map(|((((read, before), change), after), flows)| Outcome {
            family: read.spec.family(),
            source: read.source.clone(),
            before,
            repair: Some(Repair {
                plan: change.clone(),
                restore: read.restore(args).to_owned(),
                loads_anchor: plans.missing.contains(&read.spec.family()),
                after,
                flows,
            }),
        })
        .collect()
}

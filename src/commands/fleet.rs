//! `podsnat fleet render|check`: every node's golden files from one
//! inventory; render writes what changed, check only compares.

use super::{ExitStatus, changed_status};
use crate::cli::{FleetCommand, Format};
use crate::error::{Error, Result};
use crate::fleet;
use crate::printer::{Json, Printer, Shown};

pub fn run(cmd: &FleetCommand, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let (args, checking) = match cmd {
        FleetCommand::Render(a) => (a, false),
        FleetCommand::Check(a) => (a, true),
    };
    if checking && args.prune {
        return Err(Error::Usage(
            "fleet check changes nothing; --prune goes with fleet render".into(),
        ));
    }
    let inventory = fleet::load(&args.inventory)?;
    let report = if checking {
        fleet::check(&inventory, &args.out_dir)?
    } else {
        fleet::render_to(&inventory, &args.out_dir, args.prune)?
    };
    let text = match args.format {
        Format::Json => Shown::Json(Json::of(&report)?),
        Format::Text => Shown::Text(text(&report, inventory.nodes.len(), checking)),
    };
    p.show(&text)?;
    let differs = !report.changed.is_empty()
        || !report.pruned.is_empty()
        || (checking && !report.stale.is_empty());
    Ok(changed_status(differs))
}

fn text(report: &fleet::Report, nodes: usize, checking: bool) -> String {
    let mut t = report.diffs.clone();
    let (verb, verbs) = if checking {
        ("differs", "differ")
    } else {
        ("changed", "changed")
    };
    for p in &report.changed {
        t += &format!("{verb}: {}\n", p.display());
    }
    for p in &report.stale {
        if !report.pruned.contains(p) {
            t += &format!(
                "stale: {} (not in the inventory; `fleet render --prune` removes it)\n",
                p.display()
            );
        }
    }
    for p in &report.pruned {
        t += &format!("pruned: {}\n", p.display());
    }
    t + &format!(
        "{nodes} nodes: {} files {verbs}, {} unchanged, {} stale\n",
        report.changed.len(),
        report.unchanged,
        report.stale.len() - report.pruned.len()
    )
}

//! Runtime repair: podsnat's block put back above the rule that shadows
//! its exclusion, planned from the verdict `verify` reported and checked
//! with the same inputs before anything runs.

use super::{Change, put_back, take};
use crate::config::NodeSpec;
use crate::render::{OWN_CHAIN, Owner};
use crate::rules_file::{self, Table};
use crate::verify::{self, CheckName, Layers, Malformed, Report, Status};

/// Why no repair could be planned.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A rule of the live table that iptables-restore would refuse: the same
    /// error `verify` gives for it.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// The candidate table podsnat built does not read back: a bug.
    #[error("podsnat's own candidate table does not parse")]
    Candidate(#[from] rules_file::ParseError),
    /// The candidate table podsnat built has no nat table: a bug.
    #[error("podsnat's own candidate table has no *nat table")]
    NoNat,
    /// Moving the exclusion would not end the drift; the report says why.
    #[error("moving podsnat's exclusion would not fix the drift:\n{report}")]
    NotFixed { report: String },
}

/// Whether the verdict names a drift podsnat's rules are to blame for:
/// pod→cluster traffic masqueraded, bridge traffic decided by podsnat, or
/// marked traffic kept.
fn drifts(report: &Report) -> bool {
    [
        CheckName::PodToCluster,
        CheckName::PodViaBridge,
        CheckName::MarkedToCluster,
    ]
    .into_iter()
    .any(|name| report.check(name).map(|c| c.status) == Some(Status::Drift))
}

/// Plans the change that ends the drift `report` names, judged from
/// `layers`, the inputs the report was judged from. `None` when the report
/// names no drift a change of podsnat's rules can end.
///
/// iptables' table is judged without podsnat's nftables anchor (a missing
/// anchor is loaded apart, and the table must hold on its own, as after a
/// pin), but with every other nftables table and the ipsets: a drift
/// another table decides is named, not planned around. The block goes
/// where the rule that decides pod→cluster traffic without it stands, and
/// the table with the block in place must then be ok.
pub fn plan_repair(
    spec: &NodeSpec,
    report: &Report,
    layers: Layers<'_>,
) -> Result<Option<Change>, RepairError> {
    if !drifts(report) {
        return Ok(None);
    }
    let owner = Owner::of(spec);
    let live = layers.table;
    let judge = |post: &[&str]| -> Result<Report, RepairError> {
        let text = candidate(&owner, live, post);
        let table = rules_file::parse(&text)?
            .into_iter()
            .find(|t| t.name == "nat")
            .ok_or(RepairError::NoNat)?;
        let inputs = Layers {
            table: &table,
            nft: layers.nft.map(|n| n.without_anchor()),
            ..layers
        };
        Ok(verify::evaluate_layers(spec, inputs)?)
    };
    let taken = take(&owner, live);
    let at = match judge(&taken.kept)?.check(CheckName::PodToCluster) {
        Some(c) if c.status == Status::Drift && c.top > 0 => c.top - 1,
        _ => taken.home(),
    }
    .min(taken.kept.len());
    let mut post = taken.kept.clone();
    post.splice(at..at, owner.block().iter().map(String::as_str));
    let after = judge(&post)?;
    if drifts(&after) || after.check(CheckName::PodToCluster).map(|c| c.status) != Some(Status::Ok)
    {
        return Err(RepairError::NotFixed {
            report: verify::text(&after),
        });
    }
    Ok(put_back(&owner, live, taken, at))
}

/// The live table with POSTROUTING as `post` and podsnat's chain as the
/// owner has it: what the change would leave.
fn candidate(owner: &Owner, live: &Table<'_>, post: &[&str]) -> String {
    let mut text = String::from("*nat\n");
    for d in &live.chain_decls {
        text += d;
        text.push('\n');
    }
    let own = owner.own_chain().unwrap_or_default();
    if !live.chains.contains(&OWN_CHAIN) && !own.is_empty() {
        text += &format!(":{OWN_CHAIN} - [0:0]\n");
    }
    let others = live
        .rules
        .iter()
        .filter(|r| r.chain != "POSTROUTING" && r.chain != OWN_CHAIN)
        .map(|r| r.text);
    for r in post.iter().copied().chain(others) {
        text += r;
        text.push('\n');
    }
    for r in own {
        text += r;
        text.push('\n');
    }
    text + "COMMIT\n"
}

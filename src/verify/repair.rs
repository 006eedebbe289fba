//! Runtime repair: the smallest `iptables-restore --noflush` transaction
//! that puts podsnat's exclusion back above the rule that shadows it.
//! Everything else in the table stays as it is.

use serde::Serialize;

use super::{CheckName, Malformed, Sets, Status, evaluate_with, text};
use crate::config::{Mode, NodeSpec};
use crate::render;
use crate::rules_file::{self, Table};

/// Why no repair could be planned.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// A rule of the live table that iptables-restore would refuse: the same
    /// error `verify` gives for it.
    #[error(transparent)]
    Malformed(#[from] Malformed),
    /// The candidate table podsnat built does not read back: a bug.
    #[error("podsnat's own candidate table does not parse: {0}")]
    Candidate(#[from] rules_file::ParseError),
    /// The candidate table podsnat built has no nat table: a bug.
    #[error("podsnat's own candidate table has no *nat table")]
    NoNat,
    /// Moving the exclusion would not end the drift; the report says why.
    #[error("moving podsnat's exclusion would not fix the drift:\n{report}")]
    NotFixed { report: String },
}

/// The nat table of a text podsnat built itself.
fn nat_of(text: &str) -> Result<Table<'_>, RepairError> {
    rules_file::parse(text)?
        .into_iter()
        .find(|t| t.name == "nat")
        .ok_or(RepairError::NoNat)
}

/// Whether podsnat's rules are to blame for a drift a repair can fix:
/// pod→cluster traffic masqueraded, bridge traffic decided by podsnat, or
/// marked traffic kept.
fn drifts(report: &super::Report) -> bool {
    [
        CheckName::PodToCluster,
        CheckName::PodViaBridge,
        CheckName::MarkedToCluster,
    ]
    .into_iter()
    .any(|name| report.check(name).map(|c| c.status) == Some(Status::Drift))
}

/// A runtime repair: one `iptables-restore --noflush` transaction.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The restore input, `*nat` ... `COMMIT`.
    pub transaction: String,
    /// Where podsnat's exclusion goes in POSTROUTING (1-based).
    pub position: usize,
    /// Copies of podsnat's rules that are removed.
    pub removed: Vec<String>,
}

/// Plans the smallest change that puts podsnat's exclusion above the rule
/// that shadows it and removes duplicate copies of podsnat's own rules.
/// Everything else in the table stays as it is. `None` when there is no
/// pod→cluster drift to repair.
///
/// `sets` are the ipsets the table's `-m set` rules match, the same ones the
/// report was judged with: without them such a rule cannot be decided, and
/// a drift the report names would read as nothing to repair.
pub fn plan_repair(
    spec: &NodeSpec,
    table: &Table<'_>,
    sets: &Sets,
) -> Result<Option<Repair>, RepairError> {
    let report = evaluate_with(spec, table, sets)?;
    if !drifts(&report) {
        return Ok(None);
    }
    let exclusion = render::exclusion(spec);
    let our_post_owned = render::postrouting(spec);
    let our_post: Vec<&str> = our_post_owned.iter().map(String::as_str).collect();
    let own_chain = render::OWN_CHAIN;
    let own_rules = render::own_chain(spec);

    // POSTROUTING after removing every copy of the exclusion, in classic
    // mode every copy of docker's broad rule (the hand fix replaces it; no
    // position of a `! -d` MASQUERADE rule can beat it), and extra copies of
    // podsnat's other POSTROUTING rules. `-D` removes the first match, so
    // the first copies go.
    let live: Vec<&str> = table.chain_rules("POSTROUTING");
    let broad = render::broad(spec);
    // Every jump to podsnat's chain is podsnat's: an earlier one (without
    // `! -o BRIDGE`, which caught docker's hairpin traffic) goes too.
    let jump = format!(" -j {own_chain}");
    let replaced = |r: &str| {
        r == exclusion || (spec.mode() == Mode::Classic && r == broad) || r.ends_with(&jump)
    };
    let mut post: Vec<&str> = Vec::with_capacity(live.len());
    let mut removed = Vec::new();
    // Where the exclusion was, counted in the list without the removed rules.
    let mut was_at = None;
    for r in &live {
        if replaced(r) {
            if *r == exclusion {
                was_at.get_or_insert(post.len() + 1);
            }
            removed.push((*r).to_owned());
        } else {
            post.push(r);
        }
    }
    for rule in our_post.iter().filter(|r| !replaced(r)) {
        let want = our_post.iter().filter(|r2| *r2 == rule).count();
        while post.iter().filter(|r2| *r2 == rule).count() > want {
            if let Some(i) = post.iter().position(|r2| r2 == rule) {
                post.remove(i);
                removed.push((*rule).to_owned());
            }
        }
    }

    // Find what decides pod→cluster without the exclusion, then insert the
    // exclusion right there.
    let candidate = |post: &[&str]| -> String {
        let mut text = String::from("*nat\n");
        let has_own = table.chains.contains(&own_chain);
        for d in &table.chain_decls {
            text += d;
            text.push('\n');
        }
        if !has_own && !own_rules.is_empty() {
            text += &format!(":{own_chain} - [0:0]\n");
        }
        for r in post {
            text += r;
            text.push('\n');
        }
        for r in table
            .rules
            .iter()
            .filter(|r| r.chain != "POSTROUTING" && r.chain != own_chain)
        {
            text += r.text;
            text.push('\n');
        }
        for r in &own_rules {
            text += r;
            text.push('\n');
        }
        text + "COMMIT\n"
    };
    let without = candidate(&post);
    let at = match evaluate_with(spec, &nat_of(&without)?, sets)?.check(CheckName::PodToCluster) {
        Some(c) if c.status == Status::Drift => c.top.max(1),
        _ => was_at.unwrap_or(post.len() + 1),
    }
    .min(post.len() + 1);
    post.insert(at - 1, &exclusion);
    let with = candidate(&post);
    let after = evaluate_with(spec, &nat_of(&with)?, sets)?;
    if drifts(&after) || after.check(CheckName::PodToCluster).map(|c| c.status) != Some(Status::Ok)
    {
        return Err(RepairError::NotFixed {
            report: text(&after),
        });
    }

    let own: Vec<&str> = own_rules.iter().map(String::as_str).collect();
    let tx = rules_file::noflush_transaction(
        (!own.is_empty()).then_some((own_chain, own.as_slice())),
        &removed,
        at,
        &[exclusion.as_str()],
    );
    Ok(Some(Repair {
        transaction: tx,
        position: at,
        removed,
    }))
}

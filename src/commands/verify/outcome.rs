//! What verify found and did, as facts: each family's verdict and, with
//! `--repair`, the change planned and the verdict after it. The text, the
//! JSON, the metrics and the exit code are all derived from these facts
//! here; nothing maps an exit code back into a verdict.

use serde_json::json as object;

use super::flows::FlowRepair;
use crate::commands::ExitStatus;
use crate::family::Family;
use crate::live::Change;
use crate::verify::{self, Report, Status};

/// One family's outcome.
pub(super) struct Outcome {
    pub(super) family: Family,
    /// Where its table came from: the file, or `iptables-save -t nat`.
    pub(super) source: String,
    /// The verdict on the inputs as read.
    pub(super) before: Report,
    /// With `--repair`: what was planned and done.
    pub(super) repair: Option<Repair>,
}

/// `--repair` for one family.
pub(super) struct Repair {
    /// The `--noflush` change that ends the drift, if one does.
    pub(super) plan: Option<Change>,
    /// The iptables-restore that runs (or would run) it.
    pub(super) restore: String,
    /// The node's missing anchor is (or would be) loaded for this family.
    pub(super) loads_anchor: bool,
    /// The verdict after acting; `None` under `--check` or where nothing
    /// was done.
    pub(super) after: Option<Report>,
    /// What was done (or would be) to the flows the fix did not reach.
    pub(super) flows: Option<FlowRepair>,
}

impl Outcome {
    /// The last verdict: after the repair, where one was applied.
    pub(super) fn last(&self) -> &Report {
        self.repair
            .as_ref()
            .and_then(|r| r.after.as_ref())
            .unwrap_or(&self.before)
    }

    /// A `--noflush` repair was applied.
    pub(super) fn repaired(&self) -> bool {
        self.repair
            .as_ref()
            .is_some_and(|r| r.plan.is_some() && r.after.is_some())
    }

    /// The missing anchor was loaded.
    pub(super) fn anchor_loaded(&self) -> bool {
        self.repair
            .as_ref()
            .is_some_and(|r| r.loads_anchor && r.after.is_some())
    }

    /// Without `--repair`: 0 ok, 2 drift, 1 cannot decide. With it: 2 when
    /// something changed (or would, under `--check`) and the change ended
    /// the drift or was the anchor's load, 1 when a table change left
    /// drift, else the verdict's own code.
    pub(super) fn exit(&self) -> ExitStatus {
        let Some(r) = &self.repair else {
            return verdict_exit(&self.before);
        };
        match (&r.plan, &r.after) {
            // Connections left on purpose (no --reset-connections) are in
            // the report; the rules' repair worked.
            (Some(_), Some(now)) if now.status_without_flows() == Status::Ok => ExitStatus::Changed,
            (Some(_), Some(_)) => ExitStatus::Failed,
            (None, Some(_)) => ExitStatus::Changed,
            (Some(_), None) => ExitStatus::Changed,
            (None, None) if r.loads_anchor => ExitStatus::Changed,
            (None, None) => verdict_exit(&self.before),
        }
    }

    pub(super) fn text(&self) -> String {
        let shown = verify::text(&self.before);
        let Some(r) = &self.repair else {
            return shown;
        };
        let restore = &r.restore;
        let flows = r
            .flows
            .as_ref()
            .map(|f| f.text(r.after.is_some()))
            .unwrap_or_default();
        match (&r.plan, &r.after) {
            (plan, Some(now)) => {
                let what = match plan {
                    Some(c) => format!("repaired with `{restore} --noflush`:\n{}", c.transaction),
                    None => String::new(),
                };
                format!("{shown}{what}{flows}now:\n{}", verify::text(now))
            }
            (Some(c), None) => format!(
                "{shown}would repair with `{restore} --noflush`:\n{}{flows}",
                c.transaction
            ),
            (None, None) if r.loads_anchor => format!("{shown}{flows}"),
            (None, None) if r.flows.is_some() => format!("{shown}{flows}"),
            (None, None) if self.before.status == Status::Drift => format!(
                "{shown}repair: not possible at runtime; only pod→cluster, bridge and \
                 marked traffic drift is repaired. \
                 The table is restored at the next boot.\n"
            ),
            (None, None) => format!("{shown}repair: nothing to do\n"),
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        let report = &self.before;
        match &self.repair {
            None => object!(report),
            Some(Repair {
                plan,
                after: Some(now),
                flows,
                ..
            }) => with_flows(
                object!({"before": report, "repair": plan, "applied": true, "after": now}),
                flows,
            ),
            Some(Repair { plan, flows, .. }) => with_flows(
                object!({"before": report, "repair": plan, "applied": false}),
                flows,
            ),
        }
    }
}

/// `repair`'s object with `"flows"`, where flows were (or would be) deleted.
fn with_flows(mut repair: serde_json::Value, flows: &Option<FlowRepair>) -> serde_json::Value {
    if let (Some(f), Some(o)) = (flows, repair.as_object_mut()) {
        o.insert("flows".into(), object!(f));
    }
    repair
}

/// 0 ok, 2 drift, 1 cannot decide.
fn verdict_exit(report: &Report) -> ExitStatus {
    match report.status {
        Status::Ok => ExitStatus::Unchanged,
        Status::Drift => ExitStatus::Changed,
        Status::CannotDecide => ExitStatus::Failed,
    }
}

/// The node's outcome: its families', and the anchor's load, which holds
/// every family.
pub(super) struct NodeOutcome {
    pub(super) families: Vec<Outcome>,
    /// "loaded the anchor ..." (or "would load"), where it was missing.
    pub(super) anchor_line: Option<String>,
}

impl NodeOutcome {
    /// The worst verdict of the families, from their last reports.
    pub(super) fn status(&self) -> Status {
        worst(&self.families)
    }

    /// The node's exit over its families. As within one table, drift
    /// outranks "cannot decide" (exit 2 over 1); with `--repair`, a repair
    /// that failed (1) outranks one that worked (2).
    pub(super) fn exit(&self, repair: bool) -> ExitStatus {
        self.families
            .iter()
            .map(Outcome::exit)
            .max_by_key(|e| match (e, repair) {
                (ExitStatus::Unchanged, _) => 0,
                (ExitStatus::Failed, false) | (ExitStatus::Changed, true) => 1,
                (ExitStatus::Changed, false) | (ExitStatus::Failed, true) => 2,
            })
            .unwrap_or(ExitStatus::Unchanged)
    }

    /// The anchor's line, then each family's text, `titled` with its
    /// family and source on a node of more than IPv4.
    pub(super) fn text(&self, titled: bool) -> String {
        let families = self.families.iter().map(|r| {
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
        });
        self.anchor_line.iter().cloned().chain(families).collect()
    }

    /// One family's report as it is; several under "ipv4" and "ipv6", with
    /// the node's status.
    pub(super) fn json(&self) -> serde_json::Value {
        if let [one] = self.families.as_slice() {
            return one.json();
        }
        let mut both = serde_json::Map::new();
        both.insert("status".into(), object!(self.status()));
        for r in &self.families {
            both.insert(r.family.key().into(), r.json());
        }
        serde_json::Value::Object(both)
    }
}

/// The worst verdict of several families, from their last reports.
fn worst(all: &[Outcome]) -> Status {
    Status::worst(all.iter().map(|o| o.last().status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status) -> Report {
        Report {
            status,
            checks: Vec::new(),
            anchor: None,
            docker: None,
            flows: None,
        }
    }

    fn change() -> Change {
        Change {
            transaction: "*nat\nCOMMIT\n".into(),
            position: 1,
            removed: Vec::new(),
        }
    }

    /// A family repaired: drift before, the change applied, `now` after.
    fn repaired(family: Family, now: Status) -> Outcome {
        Outcome {
            family,
            source: String::new(),
            before: report(Status::Drift),
            repair: Some(Repair {
                plan: Some(change()),
                restore: "iptables-restore".into(),
                loads_anchor: false,
                after: Some(report(now)),
                flows: None,
            }),
        }
    }

    /// Dual-stack `--repair --format json`: a family whose repair left it
    /// drifting (exit 1) is drift in the top-level status, not "cannot
    /// decide"; a family repaired to ok (exit 2) is ok.
    #[test]
    fn the_families_status_comes_from_their_reports() {
        use Status::{CannotDecide, Drift, Ok};
        for (v4, v6, want) in [
            (Ok, Drift, Drift),
            (Ok, Ok, Ok),
            (Ok, CannotDecide, CannotDecide),
        ] {
            let all = [repaired(Family::V4, v4), repaired(Family::V6, v6)];
            assert_eq!(worst(&all), want, "{v4:?} {v6:?}");
        }
    }

    /// The exit comes from the facts: a repair that ended the drift is 2,
    /// one that left drift is 1 and outranks it, an anchor load alone is 2,
    /// and without --repair drift (2) outranks cannot decide (1).
    #[test]
    fn the_exit_is_derived_from_the_facts() {
        let fixed = repaired(Family::V4, Status::Ok);
        let failed = repaired(Family::V6, Status::Drift);
        assert_eq!(fixed.exit(), ExitStatus::Changed);
        assert_eq!(failed.exit(), ExitStatus::Failed);
        let node = |families| NodeOutcome {
            families,
            anchor_line: None,
        };
        assert_eq!(node(vec![fixed, failed]).exit(true), ExitStatus::Failed);
        let anchor_only = Outcome {
            repair: Some(Repair {
                plan: None,
                restore: String::new(),
                loads_anchor: true,
                after: Some(report(Status::Drift)),
                flows: None,
            }),
            ..repaired(Family::V4, Status::Ok)
        };
        assert_eq!(anchor_only.exit(), ExitStatus::Changed);
        let plain = |status| Outcome {
            family: Family::V4,
            source: String::new(),
            before: report(status),
            repair: None,
        };
        let both = node(vec![plain(Status::CannotDecide), plain(Status::Drift)]);
        assert_eq!(both.exit(false), ExitStatus::Changed);
        assert_eq!(both.status(), Status::Drift);
        assert_eq!(
            node(vec![plain(Status::Ok)]).exit(false),
            ExitStatus::Unchanged
        );
    }
}

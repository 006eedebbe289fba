//! One family's verdict as verify shows it, and the node's status over
//! its families.

use crate::commands::ExitStatus;
use crate::family::Family;
use crate::verify::{Report, Status};

/// The worst verdict of several families, from their last reports (after
/// the repair, where one was applied), never from their exit codes: under
/// `--repair` exit 1 is a repair that did not fix a drift, and exit 2 one
/// that did.
pub(super) fn worst(all: &[Outcome]) -> Status {
    Status::worst(all.iter().map(|r| r.report.status))
}

/// One family's verdict, shown.
pub(super) struct Outcome {
    pub(super) family: Family,
    pub(super) source: String,
    pub(super) exit: ExitStatus,
    pub(super) text: String,
    /// The report, for `--format json`.
    pub(super) json: serde_json::Value,
    /// The last verdict: after the repair, where one was applied.
    pub(super) report: Report,
    /// A `--noflush` repair was applied.
    pub(super) repaired: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(family: Family, exit: ExitStatus, status: Status) -> Outcome {
        Outcome {
            family,
            source: String::new(),
            exit,
            text: String::new(),
            json: serde_json::Value::Null,
            report: Report {
                status,
                checks: Vec::new(),
                anchor: None,
                docker: None,
            },
            repaired: true,
        }
    }

    /// Dual-stack `--repair --format json`: a family whose repair left it
    /// drifting (exit 1) is drift in the top-level status, not "undecided";
    /// a family repaired to ok (exit 2) is ok.
    #[test]
    fn the_families_status_comes_from_their_reports() {
        let still_drifts = outcome(Family::V6, ExitStatus::Failed, Status::Drift);
        let repaired = outcome(Family::V4, ExitStatus::Changed, Status::Ok);
        assert_eq!(worst(&[repaired, still_drifts]), Status::Drift);
        let still_drifts = outcome(Family::V6, ExitStatus::Failed, Status::Drift);
        let fine = outcome(Family::V4, ExitStatus::Unchanged, Status::Ok);
        assert_eq!(worst(&[fine, still_drifts]), Status::Drift);
        let repaired = outcome(Family::V4, ExitStatus::Changed, Status::Ok);
        let also = outcome(Family::V6, ExitStatus::Changed, Status::Ok);
        assert_eq!(worst(&[repaired, also]), Status::Ok);
        let odd = outcome(Family::V6, ExitStatus::Failed, Status::Undecided);
        let fine = outcome(Family::V4, ExitStatus::Unchanged, Status::Ok);
        assert_eq!(worst(&[fine, odd]), Status::Undecided);
    }
}

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
    /// The missing anchor was loaded.
    pub(super) anchor_loaded: bool,
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
            anchor_loaded: false,
        }
    }

    /// Dual-stack `--repair --format json`: a family whose repair left it
    /// drifting (exit 1) is drift in the top-level status, not "undecided";
    /// a family repaired to ok (exit 2) is ok.
    #[test]
    fn the_families_status_comes_from_their_reports() {
        use ExitStatus::{Changed, Failed, Unchanged};
        use Status::{CannotDecide, Drift, Ok};
        // (IPv4's exit and report, IPv6's, the node's status)
        for (v4, v6, want) in [
            ((Changed, Ok), (Failed, Drift), Drift),
            ((Unchanged, Ok), (Failed, Drift), Drift),
            ((Changed, Ok), (Changed, Ok), Ok),
            ((Unchanged, Ok), (Failed, CannotDecide), CannotDecide),
        ] {
            let all = [
                outcome(Family::V4, v4.0, v4.1),
                outcome(Family::V6, v6.0, v6.1),
            ];
            assert_eq!(worst(&all), want, "{v4:?} {v6:?}");
        }
    }
}

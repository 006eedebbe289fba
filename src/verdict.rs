//! The verdict's one type, below every room that judges (verify, docker's
//! settings) so that each can name it without importing the other.

use serde::Serialize;

/// A verdict. One state, one spelling per medium: "cannot decide" in text,
/// `cannot_decide` in JSON and in Prometheus' labels.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Drift,
    CannotDecide,
}

impl Status {
    /// The worst of several verdicts: drift outranks "cannot decide", which
    /// outranks ok. One node's verdict over its checks and over its families.
    pub fn worst(all: impl IntoIterator<Item = Status>) -> Status {
        all.into_iter()
            .fold(Status::Ok, |worst, s| match (worst, s) {
                (Status::Drift, _) | (_, Status::Drift) => Status::Drift,
                (Status::CannotDecide, _) | (_, Status::CannotDecide) => Status::CannotDecide,
                _ => Status::Ok,
            })
    }
}

//! `--repair` for live flows: once the rules keep pod→cluster traffic's
//! source, the flows set up before still carry the node's address until
//! they are deleted. A datagram flow (udp, icmp...) is deleted outright: its
//! next packet starts a new flow on the fixed path. A connection (tcp, sctp,
//! dccp) is deleted only with `--reset-connections`, since that resets it:
//! its next packet no longer matches either end's state.
//!
//! Datagram flows go with one `conntrack -D` per protocol and exclusion,
//! the kernel matching (`-s POD_SUBNET -d NET --src-nat`): that also drops
//! datagram flows of service traffic both DNATed and masqueraded, whose
//! next packet takes the same path again. Connections are deleted one by
//! one by their original tuple, so no other connection is reset.

use std::fmt::Write as _;

use crate::cli::VerifyArgs;
use crate::config::NodeSpec;
use crate::conntrack::{self, Flow};
use crate::error::Result;
use crate::system;
use crate::verify::flows::{FlowStatus, FlowsCheck, count};

/// What the repair did (or, under `--check`, would do) to one family's
/// translated flows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(super) struct FlowRepair {
    /// Datagram flows deleted (or, under `--check`, to delete).
    pub(super) deleted: usize,
    /// Connections deleted, which resets them.
    pub(super) reset: usize,
    /// Connections left as they are (no `--reset-connections`).
    pub(super) left: usize,
    /// The conntrack commands run (or to run).
    pub(super) commands: Vec<String>,
}

impl FlowRepair {
    pub(super) fn text(&self, acted: bool) -> String {
        let mut out = String::new();
        let verb = if acted { "deleted" } else { "would delete" };
        if self.deleted > 0 || self.reset > 0 {
            let _ = writeln!(
                out,
                "{verb} {} and {} that carried the node's address, with `{}`",
                count(self.deleted, "datagram flow", "datagram flows"),
                count(self.reset, "connection", "connections"),
                self.commands.join("`, `")
            );
        }
        if self.left > 0 {
            let _ = writeln!(
                out,
                "left {} that still {} the node's address: deleting one resets it; `verify --repair --reset-connections` does",
                count(self.left, "connection", "connections"),
                if self.left == 1 { "carries" } else { "carry" }
            );
        }
        out
    }
}

/// The `conntrack -D` arguments for one connection, by its original tuple.
fn connection_args(spec: &NodeSpec, flow: &Flow) -> Vec<String> {
    let mut args: Vec<String> = [
        "-f",
        spec.family().key(),
        "-p",
        &flow.proto,
        "--orig-src",
        &flow.orig.src.to_string(),
        "--orig-dst",
        &flow.orig.dst.to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    if let (Some(s), Some(d)) = (flow.orig.sport, flow.orig.dport) {
        args.extend([
            "--sport".into(),
            s.to_string(),
            "--dport".into(),
            d.to_string(),
        ]);
    }
    args
}

/// [`clear`] for every family read (those with live flows).
pub(super) fn clear_all(
    args: &VerifyArgs,
    reads: &[super::Read<'_>],
    act: bool,
) -> Result<Vec<Option<FlowRepair>>> {
    reads
        .iter()
        .map(|r| match &r.flows {
            Some(f) => clear(args, r.spec, f, act),
            None => Ok(None),
        })
        .collect()
}

/// Deletes (or, with `act` false, counts) the translated flows `check`
/// found: the datagram ones always, the connections with
/// `--reset-connections`. `None` where there were none.
fn clear(
    args: &VerifyArgs,
    spec: &NodeSpec,
    check: &FlowsCheck,
    act: bool,
) -> Result<Option<FlowRepair>> {
    if check.status != FlowStatus::Drift {
        return Ok(None);
    }
    let mut done = FlowRepair::default();
    let datagram_protos: Vec<&String> = check
        .translated
        .keys()
        .filter(|p| !conntrack::connection_oriented(p))
        .collect();
    for proto in datagram_protos {
        for net in spec.exclusions() {
            let a = conntrack::delete_args(proto, &spec.pod_subnet(), net);
            done.commands
                .push(format!("{} -D {}", args.conntrack, a.join(" ")));
            if act {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                done.deleted += system::conntrack_delete(&args.conntrack, &a)?;
            }
        }
    }
    if !act {
        done.deleted = check.connectionless();
    }
    let connections = check.total() - check.connectionless();
    if args.reset_connections {
        for flow in &check.connections {
            let a = connection_args(spec, flow);
            done.commands
                .push(format!("{} -D {}", args.conntrack, a.join(" ")));
            if act {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                done.reset += system::conntrack_delete(&args.conntrack, &a)?;
            } else {
                done.reset += 1;
            }
        }
    } else {
        done.left = connections;
    }
    Ok(Some(done))
}

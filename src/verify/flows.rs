//! Live flows: the kernel decides NAT once per connection and keeps it in
//! conntrack for the flow's life, so a flow set up while pod→cluster
//! traffic was masqueraded still carries the node's address after the
//! rules are fixed (a fixed-port UDP stream refreshes its entry with every
//! datagram and never expires). A flow counts as translated when its
//! original source is in the pod subnet, its original destination in the
//! cluster or a `no_masquerade` network, and its reply goes to another
//! address than its source. Flows the node was asked to masquerade are not
//! counted: service traffic that was DNATed (its reply comes from another
//! address than the one the pod sent to). kube-proxy's masquerade mark is a
//! packet mark that conntrack does not keep, and every rule of kube-proxy
//! that sets it also DNATs (KUBE-SVC, KUBE-EXT, KUBE-SEP's hairpin), so its
//! flows are among those. A closed connection (TIME_WAIT and the like)
//! carries no more traffic and is not counted either.
//!
//! The judge folds flows one at a time: a node holds up to 262,144 of
//! them, and none is kept but the first few, for the report, and (where
//! asked) the connections a repair is to reset.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Report;
use crate::config::NodeSpec;
use crate::conntrack::Flow;
use crate::verdict::Status;

/// How many flows the report names.
const NAMED: usize = 5;

/// The verdict on the live flows of one family.
#[derive(Debug, Clone, Serialize)]
pub struct FlowsCheck {
    pub status: FlowStatus,
    /// The source-NATed flows from the pod subnet conntrack listed.
    pub read: usize,
    /// The translated ones, by protocol.
    pub translated: BTreeMap<String, usize>,
    /// The first few translated flows, as the report names them.
    pub named: Vec<String>,
    /// Why the flows were not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The translated connections (tcp, sctp, dccp), kept only where a
    /// repair is to reset them.
    #[serde(skip)]
    pub connections: Vec<Flow>,
}

/// A flow check's state: `not_checked` where conntrack could not be run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    Ok,
    Drift,
    NotChecked,
}

impl FlowsCheck {
    /// Flows that could not be read: said so, never ok.
    pub fn not_checked(reason: String) -> FlowsCheck {
        FlowsCheck {
            reason: Some(reason),
            ..FlowsCheck::none(FlowStatus::NotChecked)
        }
    }

    /// No flow yet, with `status`.
    fn none(status: FlowStatus) -> FlowsCheck {
        FlowsCheck {
            status,
            read: 0,
            translated: BTreeMap::new(),
            named: Vec::new(),
            reason: None,
            connections: Vec::new(),
        }
    }

    pub fn total(&self) -> usize {
        self.translated.values().sum()
    }

    /// The translated flows a datagram's next packet replaces (all but
    /// connections).
    pub fn connectionless(&self) -> usize {
        self.translated
            .iter()
            .filter(|(p, _)| !crate::conntrack::connection_oriented(p))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Folds a family's flows into its verdict, one flow at a time.
pub struct FlowJudge<'s> {
    spec: &'s NodeSpec,
    keep_connections: bool,
    check: FlowsCheck,
}

impl<'s> FlowJudge<'s> {
    /// `keep_connections`: keep the translated connections, for a repair
    /// that resets them.
    pub fn new(spec: &'s NodeSpec, keep_connections: bool) -> FlowJudge<'s> {
        FlowJudge {
            spec,
            keep_connections,
            check: FlowsCheck::none(FlowStatus::Ok),
        }
    }

    pub fn add(&mut self, flow: Flow) {
        self.check.read += 1;
        if !translated(self.spec, &flow) {
            return;
        }
        *self.check.translated.entry(flow.proto.clone()).or_default() += 1;
        if self.check.named.len() < NAMED {
            self.check.named.push(name(&flow));
        }
        if self.keep_connections && flow.connection_oriented() {
            self.check.connections.push(flow);
        }
    }

    pub fn done(mut self) -> FlowsCheck {
        if !self.check.translated.is_empty() {
            self.check.status = FlowStatus::Drift;
        }
        self.check
    }
}

/// Whether `flow` is one the fix did not reach: from a pod to the cluster
/// (or a `no_masquerade` network), not DNATed, its source translated.
pub fn translated(spec: &NodeSpec, flow: &Flow) -> bool {
    let (o, r) = (&flow.orig, &flow.reply);
    flow.live()
        && spec.pod_subnet().contains(&o.src)
        && spec.exclusions().iter().any(|n| n.contains(&o.dst))
        && r.src == o.dst
        && r.dst != o.src
}

/// `udp 172.7.21.2:5140 -> 172.7.22.2:5140 seen as 10.4.7.21`.
fn name(flow: &Flow) -> String {
    let at = |a: std::net::IpAddr, port: Option<u16>| match (a, port) {
        (std::net::IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    };
    let (o, r) = (&flow.orig, &flow.reply);
    let id = o
        .icmp
        .map(|(t, c, id)| format!(" (type {t} code {c} id {id})"))
        .unwrap_or_default();
    format!(
        "{} {} -> {}{id} seen as {}",
        flow.proto,
        at(o.src, o.sport),
        at(o.dst, o.dport),
        r.dst
    )
}

impl Report {
    /// Adds the verdict on the live flows; translated flows are drift.
    pub fn with_flows(mut self, check: FlowsCheck) -> Report {
        if check.status == FlowStatus::Drift {
            self.status = Status::Drift;
        }
        self.flows = Some(check);
        self
    }

    /// The verdict of the rules, the anchor and docker's settings, the
    /// live flows aside: a repair that left connections on purpose (no
    /// `--reset-connections`) still repaired the rules.
    pub fn status_without_flows(&self) -> Status {
        if self
            .flows
            .as_ref()
            .is_none_or(|f| f.status != FlowStatus::Drift)
        {
            return self.status;
        }
        let docker = self.docker.as_ref().map(|d| d.status);
        Status::worst(
            self.checks
                .iter()
                .map(|c| c.status)
                .chain(self.anchor.as_ref().map(|a| a.status))
                .chain(docker),
        )
    }
}

/// `1 flow`, `2 flows`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The flows' report line.
pub(super) fn line(f: &FlowsCheck) -> String {
    let what = "live flows from the pod subnet to the cluster";
    match f.status {
        FlowStatus::NotChecked => format!(
            "not checked: {what}: {}",
            f.reason.as_deref().unwrap_or("conntrack could not be read")
        ),
        FlowStatus::Ok => format!(
            "ok: no {what} carry the node's address (conntrack listed {} source-NATed flows from the pod subnet)",
            f.read
        ),
        FlowStatus::Drift => {
            let by: Vec<String> = f
                .translated
                .iter()
                .map(|(p, n)| format!("{p} {n}"))
                .collect();
            let more = f.total().saturating_sub(f.named.len());
            let more = if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            };
            let (flows, carry) = if f.total() == 1 {
                ("live flow", "carries")
            } else {
                ("live flows", "carry")
            };
            format!(
                "drift: {} {flows} from the pod subnet to the cluster still {carry} the node's address ({}), set up while that traffic was masqueraded: the kernel keeps a flow's NAT for its life: {}{more}; `verify --repair` deletes the connectionless ones (their next packet takes the fixed path), `--reset-connections` the connections too, which resets them",
                f.total(),
                by.join(", "),
                f.named.join("; ")
            )
        }
    }
}

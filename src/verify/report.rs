//! The human-readable report: one line per check, then podsnat's anchor
//! and docker's settings.

use super::egress::in_cni_chain;
use super::{Check, CheckName, Expect, Promise, Report, Status};
use crate::render;

/// `; sources A-B, C` for a drift that not every pod source shares.
fn sources(c: &Check) -> String {
    match c.sources.as_slice() {
        _ if c.all_sources => String::new(),
        [] => String::new(),
        list => format!("; pod sources that drift: {}", list.join(", ")),
    }
}

/// flanneld's `--ip-masq` chain (flannel-io/flannel
/// pkg/trafficmngr/iptables/iptables.go).
const FLANNEL_CHAIN: &str = "FLANNEL-POSTRTG";

fn pods(n: usize) -> String {
    if n == 1 {
        "1 pod".into()
    } else {
        format!("{n} pods")
    }
}

/// `; judged for the N pods ...` where the CNI's per-pod rules chose the
/// sources.
fn judged(c: &Check) -> String {
    c.cni_pods.map_or_else(String::new, |n| {
        format!("; judged for the {} the CNI's per-pod rules name", pods(n))
    })
}

/// The forward path's line.
fn incoming(c: &Check) -> String {
    let what = "cluster→pod traffic to this node's pods";
    let rule = c
        .rule
        .as_ref()
        .map_or_else(|| "the FORWARD policy".to_owned(), |r| r.to_string());
    let note = c
        .note
        .as_ref()
        .map_or_else(String::new, |n| format!(" ({n})"));
    let pods = match c.sources.as_slice() {
        _ if c.all_sources => String::new(),
        [] => String::new(),
        list => format!("; pod addresses it cannot reach: {}", list.join(", ")),
    };
    match c.status {
        Status::Ok if c.packet.is_empty() => format!("ok: {what}: no such traffic exists"),
        Status::Ok => format!("ok: {what} is forwarded to the bridge; decided by {rule}"),
        Status::Drift if c.rule.is_none() => {
            format!("drift: {what} is dropped{note}; packet {}{pods}", c.packet)
        }
        Status::Drift => format!(
            "drift: {what} is dropped by {rule}{note}; packet {}{pods}",
            c.packet
        ),
        Status::CannotDecide => format!(
            "warning: cannot decide {what}: {rule}: {}; packet {}",
            c.reason.as_deref().unwrap_or("not modeled"),
            c.packet
        ),
    }
}

/// Human-readable report lines.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        if c.name == CheckName::ClusterToPod {
            out.push_str(&incoming(c));
            out.push('\n');
            continue;
        }
        let what = match (c.name, c.class, c.status) {
            (
                CheckName::PodToCluster,
                Promise::NoMasquerade,
                Status::Drift | Status::CannotDecide,
            ) => {
                format!("pod→no_masquerade {} traffic", c.destination)
            }
            (CheckName::PodToCluster, _, _) => "pod→cluster traffic".to_owned(),
            (CheckName::PodViaBridge, _, _) => "pod→pod traffic through the bridge".to_owned(),
            (CheckName::MarkedToCluster, _, _) => {
                "pod→cluster traffic with the masquerade mark (kube-proxy's)".to_owned()
            }
            (CheckName::PodToOutside, _, _) => "pod→outside traffic".to_owned(),
            (CheckName::ClusterToPod, _, _) => "cluster→pod traffic".to_owned(),
        };
        if c.packet.is_empty() {
            let note = c
                .note
                .as_deref()
                .unwrap_or("no packet of this class exists");
            out.push_str(&format!("ok: {what}: {note}\n"));
            continue;
        }
        let rule = c
            .rule
            .as_ref()
            .map_or_else(|| "the POSTROUTING policy".to_owned(), |r| r.to_string());
        let note = c
            .note
            .as_ref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        let line = match (c.status, c.expect) {
            (Status::Ok, Expect::NotKept) if c.translated => {
                format!("ok: {what} is masqueraded by {rule}")
            }
            (Status::Ok, Expect::Untouched | Expect::NotKept) => {
                format!("ok: {what} is left to the rules below podsnat's; decided by {rule}")
            }
            (Status::Drift, Expect::NotKept) => format!(
                "drift: {what} keeps the pod source IP, decided by podsnat's {rule}{note}; packet {}{}",
                c.packet,
                sources(c)
            ),
            (Status::Drift, Expect::Untouched) => format!(
                "drift: {what} is decided by podsnat's {rule}{note}, so docker's hairpin NAT never sees it; packet {}{}",
                c.packet,
                sources(c)
            ),
            (Status::Ok, Expect::Keep) => {
                // k3s, RKE2, flanneld --ip-masq: flannel's chain returns it.
                let why = match &c.rule {
                    Some(r) if r.chain == FLANNEL_CHAIN => {
                        " (flannel's own masquerade, flanneld --ip-masq, leaves pod→cluster traffic alone)"
                    }
                    _ => "",
                };
                format!("ok: {what} keeps the pod source IP; decided by {rule}{why}")
            }
            (Status::Ok, _) => match c.cni_pods {
                // A CNI node before its first pod: nothing sends yet.
                Some(0) => format!(
                    "ok: {what}: {}",
                    c.note
                        .as_deref()
                        .unwrap_or("no pod has a CNI per-pod rule yet")
                ),
                Some(n) if c.rule.as_ref().is_some_and(|r| in_cni_chain(&r.chain)) => {
                    format!(
                        "ok: {what} is masqueraded by the CNI's per-pod chains ({})",
                        pods(n)
                    )
                }
                _ => format!("ok: {what} is masqueraded by {rule}{}", judged(c)),
            },
            (Status::Drift, Expect::Keep) => format!(
                "drift: {what} is masqueraded by {rule}{note}; packet {} (destination {}){}",
                c.packet,
                c.destination,
                sources(c)
            ),
            (Status::Drift, _) => format!(
                "drift: {what} is not masqueraded; decided by {rule}{note}; packet {}{}{}",
                c.packet,
                sources(c),
                judged(c)
            ),
            (Status::CannotDecide, _) => format!(
                "warning: cannot decide {what}: {rule}: {}; packet {}",
                c.reason.as_deref().unwrap_or("not modeled"),
                c.packet
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    if let Some(a) = &report.anchor {
        out += &match (a.status, a.priority) {
            (Status::Ok, Some(p)) => format!(
                "ok: podsnat's nftables anchor table {} is loaded (chain {} at priority {p})\n",
                a.table,
                render::ANCHOR_CHAIN
            ),
            (_, Some(p)) => format!(
                "drift: podsnat's nftables anchor table {} runs at priority {p}, not before srcnat (100)\n",
                a.table
            ),
            (_, None) => format!(
                "drift: podsnat's nftables anchor table {} is not loaded; `nft -f` on the anchor file (or verify --repair) loads it\n",
                a.table
            ),
        };
    }
    if let Some(d) = &report.docker {
        if d.findings.is_empty() {
            out += &format!(
                "ok: docker's settings agree with the config (read {})\n",
                d.read.join(", ")
            );
        }
        for f in &d.findings {
            out += &format!("drift: {f}\n");
        }
        for n in &d.notes {
            out += &format!("note: {n}\n");
        }
    }
    if let Some(f) = &report.flows {
        out += &super::flows::line(f);
        out.push('\n');
    }
    out
}

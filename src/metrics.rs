//! verify's and the pin's results as Prometheus metrics, in the text
//! exposition format (0.0.4) that node_exporter's textfile collector reads.
//! Pure: the caller passes the clock's readings and the previous file (for
//! the counters, which are kept across runs in the file itself).
//!
//! The `prometheus` crate (without its protobuf feature) encodes them: it
//! names, types, escapes and orders every series as the format wants.
//! `prometheus-client` writes OpenMetrics only, whose `info` type and
//! `# EOF` the 0.0.4 parser of node_exporter and promtool do not take.
//!
//! verify's file and the pin's share no metric name: node_exporter refuses
//! a series that two files both hold.

use prometheus::{Gauge, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::family::Family;
use crate::verify::{CheckName, Report, Status};

/// The file verify writes in the textfile directory.
pub const VERIFY_FILE: &str = "podsnat.prom";
/// The file the pin writes beside it.
pub const PIN_FILE: &str = "podsnat-pin.prom";

/// A metric could not be made (a name or label the crate refuses): a bug.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the metrics")]
pub struct MetricsError(#[from] prometheus::Error);

type Made<T> = std::result::Result<T, MetricsError>;

/// One family's verify: its final report (after a repair, when one ran)
/// and what this run changed.
pub struct VerifyRun<'a> {
    pub family: Family,
    pub report: &'a Report,
    /// A `--noflush` repair of iptables' table was applied.
    pub repaired: bool,
    /// The missing nftables anchor was loaded.
    pub anchor_loaded: bool,
}

/// When the run started (unix seconds) and how long it took (seconds).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub started: f64,
    pub duration: f64,
}

/// 1 ok, 0 drift, NaN when it cannot be decided: an alert on `== 0`
/// fires on drift only, and "cannot decide" has its own series.
fn verdict(status: Option<Status>) -> f64 {
    match status {
        Some(Status::Ok) => 1.0,
        Some(Status::Drift) => 0.0,
        Some(Status::CannotDecide) | None => f64::NAN,
    }
}

fn status_label(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Drift => "drift",
        Status::CannotDecide => "cannot_decide",
    }
}

fn gauges(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Made<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn gauge(reg: &Registry, name: &str, help: &str) -> Made<Gauge> {
    let g = Gauge::with_opts(Opts::new(name, help))?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counters(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> Made<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

fn encode(reg: &Registry) -> Made<String> {
    let mut out = String::new();
    TextEncoder::new().encode_utf8(&reg.gather(), &mut out)?;
    Ok(out)
}

/// The value of `name{labels}` in a previous file of ours, 0 when absent:
/// the counters go on from there. The file is the one this module wrote,
/// so a sample line is `name{a="x",b="y"} value`, labels in name order.
pub fn previous(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut sorted = labels.to_vec();
    sorted.sort();
    let series = if sorted.is_empty() {
        name.to_owned()
    } else {
        let pairs: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        format!("{name}{{{}}}", pairs.join(","))
    };
    text.lines()
        .filter_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .filter_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| {
            if v.is_finite() && v > 0.0 {
                v as u64
            } else {
                0
            }
        })
        .next()
        .unwrap_or(0)
}

/// verify's metrics for every family it judged.
pub fn verify(runs: &[VerifyRun<'_>], clock: Clock, previous_file: &str) -> Made<String> {
    let reg = Registry::new();
    let exclusion = gauges(
        &reg,
        "podsnat_exclusion_ok",
        "Pod traffic to the cluster and every no_masquerade network keeps its source IP: 1 yes, 0 no (drift), NaN cannot decide.",
        &["family"],
    )?;
    let egress = gauges(
        &reg,
        "podsnat_egress_masqueraded",
        "Pod traffic to every other address is masqueraded: 1 yes, 0 no (drift), NaN cannot decide.",
        &["family"],
    )?;
    let status = gauges(
        &reg,
        "podsnat_status",
        "The last verify's verdict on the family's nat table, one series per state: the one that holds is 1.",
        &["family", "status"],
    )?;
    let anchor = gauges(
        &reg,
        "podsnat_anchor_loaded",
        "podsnat's nftables anchor is loaded at a priority before iptables' nat table: 1 yes, 0 no.",
        &["family"],
    )?;
    let repairs = counters(
        &reg,
        "podsnat_repairs_total",
        "Repairs verify --repair applied: layer iptables is a --noflush transaction, layer nftables a load of the missing anchor.",
        &["family", "layer"],
    )?;
    let flows = gauges(
        &reg,
        "podsnat_translated_flows",
        "Live flows from the pod subnet to the cluster that still carry the node's address (set up before the fix), by protocol; tcp and udp are always given.",
        &["family", "proto"],
    )?;
    let flows_checked = gauges(
        &reg,
        "podsnat_flows_checked",
        "The live flows were read (conntrack): 1 yes, 0 no (conntrack missing or failing).",
        &["family"],
    )?;
    for run in runs {
        let family = run.family.key();
        if let Some(f) = &run.report.flows {
            let checked = f.status != crate::verify::flows::FlowStatus::NotChecked;
            flows_checked
                .with_label_values(&[family])
                .set(if checked { 1.0 } else { 0.0 });
            if checked {
                for proto in ["tcp", "udp"] {
                    flows.with_label_values(&[family, proto]).set(0.0);
                }
                for (proto, n) in &f.translated {
                    flows
                        .with_label_values(&[family, proto.as_str()])
                        .set(*n as f64);
                }
            }
        }
        let check = |name| run.report.check(name).map(|c| c.status);
        exclusion
            .with_label_values(&[family])
            .set(verdict(check(CheckName::PodToCluster)));
        egress
            .with_label_values(&[family])
            .set(verdict(check(CheckName::PodToOutside)));
        for s in [Status::Ok, Status::Drift, Status::CannotDecide] {
            let holds = run.report.status == s;
            status
                .with_label_values(&[family, status_label(s)])
                .set(if holds { 1.0 } else { 0.0 });
        }
        if let Some(a) = &run.report.anchor {
            anchor
                .with_label_values(&[family])
                .set(if a.status == Status::Ok { 1.0 } else { 0.0 });
        }
        for (layer, now) in [("iptables", run.repaired), ("nftables", run.anchor_loaded)] {
            let before = previous(
                previous_file,
                "podsnat_repairs_total",
                &[("family", family), ("layer", layer)],
            );
            repairs
                .with_label_values(&[family, layer])
                .inc_by(before + u64::from(now));
        }
    }
    if let Some(d) = runs.iter().find_map(|r| r.report.docker.as_ref()) {
        gauge(
            &reg,
            "podsnat_docker_settings_ok",
            "docker's daemon.json and unit flags agree with the config (ip-masq, bip, bridge, fixed-cidr-v6): 1 yes, 0 no.",
        )?
        .set(if d.status == Status::Drift { 0.0 } else { 1.0 });
    }
    gauge(
        &reg,
        "podsnat_last_run_timestamp_seconds",
        "When the last verify started, in unix seconds.",
    )?
    .set(clock.started);
    gauge(
        &reg,
        "podsnat_last_run_duration_seconds",
        "How long the last verify took, reads and repair included.",
    )?
    .set(clock.duration);
    gauges(
        &reg,
        "podsnat_build_info",
        "The podsnat that wrote this file: its version and the git commit it was built from; always 1.",
        &["version", "commit"],
    )?
    .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("PODSNAT_COMMIT")])
    .set(1.0);
    encode(&reg)
}

/// One family's pin: whether it moved podsnat's rules.
pub struct PinRun {
    pub family: Family,
    pub pinned: bool,
}

/// The pin's metrics: when it ran, and how many times it moved the rules.
pub fn pin(runs: &[PinRun], clock: Clock, previous_file: &str) -> Made<String> {
    let reg = Registry::new();
    let pins = counters(
        &reg,
        "podsnat_pins_total",
        "Times podsnat pin moved podsnat's rules back above docker's MASQUERADE rule.",
        &["family"],
    )?;
    for run in runs {
        let family = run.family.key();
        let before = previous(previous_file, "podsnat_pins_total", &[("family", family)]);
        pins.with_label_values(&[family])
            .inc_by(before + u64::from(run.pinned));
    }
    gauge(
        &reg,
        "podsnat_pin_last_run_timestamp_seconds",
        "When podsnat pin last ran (after every docker start, and every minute), in unix seconds.",
    )?
    .set(clock.started);
    encode(&reg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_reads_our_own_series() {
        let text = "# TYPE podsnat_repairs_total counter\n\
            podsnat_repairs_total{family=\"ipv4\",layer=\"iptables\"} 3\n\
            podsnat_repairs_total{family=\"ipv4\",layer=\"nftables\"} 1\n";
        let got = |layer| {
            previous(
                text,
                "podsnat_repairs_total",
                &[("layer", layer), ("family", "ipv4")],
            )
        };
        assert_eq!(got("iptables"), 3);
        assert_eq!(got("nftables"), 1);
        assert_eq!(
            previous(
                text,
                "podsnat_repairs_total",
                &[("family", "ipv6"), ("layer", "iptables")]
            ),
            0
        );
        assert_eq!(previous("", "podsnat_pins_total", &[]), 0);
        assert_eq!(
            previous(
                "podsnat_pins_total{family=\"ipv4\"} junk\n",
                "podsnat_pins_total",
                &[("family", "ipv4")]
            ),
            0
        );
    }
}

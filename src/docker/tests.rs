//! docker's settings read and judged against the config.
use super::*;
use crate::config::{RawConfig, node_spec};

fn spec(mode: &str) -> Vec<NodeSpec> {
    let raw = RawConfig {
        cluster_cidr: Some("172.7.0.0/16".into()),
        pod_subnet: Some("172.7.21.0/24".into()),
        mode: Some(mode.into()),
        ..RawConfig::default()
    };
    node_spec("t", &raw, &RawConfig::default())
        .unwrap()
        .specs()
        .to_vec()
}

#[test]
fn owner_mode_needs_ip_masq_off() {
    let mut d = DockerSettings::default();
    d.add_daemon_json("daemon.json", r#"{"bip": "172.7.21.1/24"}"#)
        .unwrap();
    assert_eq!(check(&spec("owner"), &d).status, Status::Drift);
    assert_eq!(check(&spec("guard"), &d).status, Status::Ok);
    let mut d = DockerSettings::default();
    d.add_daemon_json("daemon.json", r#"{"ip-masq": false}"#)
        .unwrap();
    assert_eq!(check(&spec("owner"), &d).status, Status::Ok);
    let c = check(&spec("guard"), &d);
    assert_eq!(c.status, Status::Ok);
    assert!(c.notes[0].contains("fits this node"), "{:?}", c.notes);
}

/// docker with its default docker0 beside pods on cni0 is not their
/// runtime; a docker that names a bridge, or pods on docker0, is.
#[test]
fn docker_runs_the_pods_only_on_its_bridge() {
    let node = |bridge: &str| {
        let raw = RawConfig {
            cluster_cidr: Some("10.244.0.0/16".into()),
            pod_subnet: Some("10.244.1.0/24".into()),
            bridge: Some(bridge.into()),
            ..RawConfig::default()
        };
        node_spec("test", &raw, &RawConfig::default()).unwrap()
    };
    let default = DockerSettings::default();
    assert!(!runs_the_pods(node("cni0").specs(), &default));
    assert!(runs_the_pods(node("docker0").specs(), &default));
    let mut named = DockerSettings::default();
    named.add_unit(
        "docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -b cbr0\n",
    );
    assert!(runs_the_pods(node("cni0").specs(), &named));
}

#[test]
fn unit_flags_count_and_the_subnet_must_match() {
    let mut d = DockerSettings::default();
    d.add_unit(
        "docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd -H fd:// --ip-masq=false --bip 172.7.30.1/24 -b docker0\n",
    );
    let c = check(&spec("owner"), &d);
    assert_eq!(c.status, Status::Drift);
    assert_eq!(c.findings.len(), 1, "{:?}", c.findings);
    assert!(c.findings[0].contains("172.7.30.0/24"), "{:?}", c.findings);
}

#[test]
fn ipv6_broad_rule_source_is_fixed_cidr_v6() {
    let raw = RawConfig {
        cluster_cidr_v6: Some("fd00:7::/48".into()),
        pod_subnet_v6: Some("fd00:7:0:21::/64".into()),
        ..RawConfig::default()
    };
    let specs = node_spec("t", &raw, &RawConfig::default())
        .unwrap()
        .specs()
        .to_vec();
    let mut d = DockerSettings::default();
    d.add_daemon_json(
        "daemon.json",
        r#"{"ipv6": true, "fixed-cidr-v6": "fd00:7:0:21::/64"}"#,
    )
    .unwrap();
    assert_eq!(check(&specs, &d).status, Status::Ok);
    let mut d = DockerSettings::default();
    d.add_unit(
        "docker.service",
        "[Service]\nExecStart=/usr/bin/dockerd --ipv6 --fixed-cidr-v6=fd00:7:0:21:8000::/65\n",
    );
    let c = check(&specs, &d);
    assert_eq!(c.status, Status::Drift);
    assert!(
        c.findings[0].contains("fd00:7:0:21:8000::/65"),
        "{:?}",
        c.findings
    );
}

#[test]
fn bad_json_is_an_error() {
    let mut d = DockerSettings::default();
    assert!(d.add_daemon_json("daemon.json", "{").is_err());
    assert!(
        d.add_daemon_json("daemon.json", r#"{"ip-masq": "no"}"#)
            .is_err()
    );
}

/// `"allow-direct-routing"` (or the flag) is read and handed to the
/// forward path's report; a value docker would refuse is an error.
#[test]
fn allow_direct_routing_is_read_from_daemon_json_and_the_unit() {
    let mut d = DockerSettings::default();
    d.add_daemon_json("daemon.json", r#"{"allow-direct-routing": true}"#)
        .unwrap();
    let c = check(&spec("guard"), &d);
    assert_eq!(c.direct_routing.as_deref(), Some("daemon.json"));
    let mut d = DockerSettings::default();
    d.add_unit(
        "docker.service",
        "ExecStart=/usr/bin/dockerd --allow-direct-routing=false\n",
    );
    assert_eq!(check(&spec("guard"), &d).direct_routing, None);
    let e = DockerSettings::default()
        .add_daemon_json("daemon.json", r#"{"allow-direct-routing": "yes"}"#)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"allow-direct-routing\" is not true or false"
    );
}

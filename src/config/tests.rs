//! The config's loading: sources, precedence and conflicts.
use super::*;

fn layer(cluster: &str, pod: &str, origin: &str) -> Layer {
    RawConfig {
        cluster_cidr: Some(cluster.into()),
        pod_subnet: Some(pod.into()),
        ..RawConfig::default()
    }
    .into_layer(origin, origin == FLAGS_ORIGIN)
    .unwrap()
}

#[test]
fn files_must_agree_but_flags_win() {
    let a = layer("172.7.0.0/16", "172.7.21.0/24", "a.env");
    let b = layer("172.8.0.0/16", "172.8.21.0/24", "b.toml");
    let err = Node::from_layers(&[a, b]).unwrap_err().to_string();
    assert!(
        err.contains("a.env says") && err.contains("b.toml says"),
        "{err}"
    );

    let flags = layer("172.9.0.0/16", "172.9.1.0/24", FLAGS_ORIGIN);
    let b = layer("172.8.0.0/16", "172.8.21.0/24", "b.toml");
    let node = Node::from_layers(&[flags, b]).unwrap();
    assert_eq!(node.specs()[0].cluster_cidr().to_string(), "172.9.0.0/16");
}

#[test]
fn exclusions_aggregate() {
    let mut l = layer("172.7.0.0/16", "172.7.21.0/24", "x");
    l.no_masquerade = Some(Given::from(
        "x",
        ["10.0.0.0/16", "10.1.0.0/16", "172.7.5.0/24", "10.0.3.0/24"]
            .iter()
            .map(|s| parse_cidr_any(s).unwrap())
            .collect(),
    ));
    let node = Node::from_layers(&[l]).unwrap();
    let got: Vec<String> = node.specs()[0]
        .exclusions()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(got, ["10.0.0.0/15", "172.7.0.0/16"]);
}

/// Each family aggregates on its own; the other family's entries never
/// reach its table.
#[test]
fn dual_stack_exclusions_aggregate_per_family() {
    let raw = RawConfig {
        cluster_cidr: Some("172.7.0.0/16".into()),
        pod_subnet: Some("172.7.21.0/24".into()),
        cluster_cidr_v6: Some("fd00:7::/48".into()),
        pod_subnet_v6: Some("fd00:7:0:21::/64".into()),
        no_masquerade: Some(
            [
                "fd00:7:1::/48",
                "10.0.0.0/16",
                "fd00:7:0:5::/64",
                "10.1.0.0/16",
            ]
            .map(str::to_owned)
            .to_vec(),
        ),
        ..RawConfig::default()
    };
    let node = node_spec("x", &raw, &RawConfig::default()).unwrap();
    let got: Vec<Vec<String>> = node
        .specs()
        .iter()
        .map(|s| s.exclusions().iter().map(|n| n.to_string()).collect())
        .collect();
    assert_eq!(
        got,
        [vec!["10.0.0.0/15", "172.7.0.0/16"], vec!["fd00:7::/47"]]
    );
}

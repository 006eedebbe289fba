//! Property tests. Random valid configs (random cluster and subnet, 0-200
//! `no_masquerade` CIDRs, every option) render a table the real
//! `iptables-restore --test` accepts on both backends; rendering is
//! deterministic; aggregation never drops or adds coverage. Random IPv6
//! configs do the same with the real `ip6tables-restore --test`. Random
//! bytes fed to the config, subnet.env and rules-file parsers never panic.

use crate::common;
use podsnat::{NodeSpec, RawConfig, Sources};

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use proptest::prelude::*;

/// A network of a given prefix length around a random address.
fn net(addr: u32, prefix: u8) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(addr), prefix).unwrap().trunc()
}

prop_compose! {
    fn spec_input()(
        cluster_addr in any::<u32>(),
        cluster_len in 8u8..=24,
        extra_len in 0u8..=8,
        pod_offset in any::<u32>(),
        extras in prop::collection::vec((any::<u32>(), 4u8..=32), 0..=200),
        bridge in "[a-z][a-z0-9_.-]{0,14}",
        random_fully in any::<bool>(),
        docker in any::<bool>(),
        classic in any::<bool>(),
    ) -> RawConfig {
        let cluster = net(cluster_addr, cluster_len);
        let pod_len = cluster_len + extra_len;
        // A pod subnet inside the cluster.
        let span = 1u64 << (32 - cluster_len);
        let pod_addr = u32::from(cluster.network()) as u64 + (pod_offset as u64 % span);
        let pod = net(pod_addr as u32, pod_len);
        // Classic mode takes one exclusion only, so no extras there.
        let no_masquerade: Vec<String> = if classic {
            Vec::new()
        } else {
            extras.iter().map(|(a, l)| net(*a, *l).to_string()).collect()
        };
        RawConfig {
            cluster_cidr: Some(cluster.to_string()),
            pod_subnet: Some(pod.to_string()),
            cluster_cidr_v6: None,
            pod_subnet_v6: None,
            bridge: Some(bridge),
            no_masquerade: Some(no_masquerade),
            random_fully: Some(random_fully),
            docker: Some(docker),
            mode: Some(if classic { "classic" } else { "guard" }.into()),
            anchor: None,
            masquerade_bit: None,
            egress_owner: None,
            cni_config: None,
        }
    }
}

fn load(raw: RawConfig) -> Result<NodeSpec, String> {
    podsnat::load(Sources {
        flags: raw,
        ..Sources::default()
    })
    .map(|node| node.specs()[0].clone())
    .map_err(|e| e.to_string())
}

/// Sorted, merged half-open intervals of a set of networks.
fn intervals(nets: &[Ipv4Net]) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = nets
        .iter()
        .map(|n| {
            (
                u32::from(n.network()) as u64,
                u32::from(n.broadcast()) as u64 + 1,
            )
        })
        .collect();
    v.sort();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The PODSNAT-POSTROUTING destinations in rendered text.
fn rendered_exclusions(table: &str) -> Vec<Ipv4Net> {
    table
        .lines()
        .filter_map(|l| l.strip_prefix("-A PODSNAT-POSTROUTING -d "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn render_is_deterministic_and_aggregation_keeps_coverage(raw in spec_input()) {
        let inputs: Vec<Ipv4Net> = std::iter::once(raw.cluster_cidr.clone().unwrap())
            .chain(raw.no_masquerade.clone().unwrap_or_default())
            .map(|s| s.parse().unwrap())
            .collect();
        let spec = load(raw).map_err(TestCaseError::fail)?;
        let table = podsnat::nat_table(&spec);
        prop_assert_eq!(&table, &podsnat::nat_table(&spec));
        let parsed = podsnat::parse_rules(&table).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.len(), 1);
        if spec.mode() == podsnat::Mode::Guard {
            let out = rendered_exclusions(&table);
            // Every input address is covered, no other address is.
            prop_assert_eq!(intervals(&out), intervals(&inputs));
            // And aggregation is minimal: no two output networks could merge.
            prop_assert_eq!(Ipv4Net::aggregate(&out), out.clone());
        }
    }

    #[test]
    fn random_bytes_never_panic_the_parsers(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("input");
        std::fs::write(&file, &bytes).unwrap();
        // Errors are fine; a panic fails the test.
        let _ = podsnat::load(Sources { config: Some(&file), ..Sources::default() });
        let _ = podsnat::load(Sources { flannel_env: Some(&file), ..Sources::default() });
        let text = String::from_utf8_lossy(&bytes);
        let _ = podsnat::parse_rules(&text);
        let _ = podsnat::splice(&text, "*nat\nCOMMIT\n");
    }

    #[test]
    fn near_valid_configs_never_panic(
        key in prop::sample::select(vec!["cluster_cidr", "pod_subnet", "bridge", "mode", "no_masquerade"]),
        value in "[ -~\\n\\t\\u{0}-\\u{1f}\\u{430}-\\u{44f}]{0,40}",
    ) {
        // Mutations of a real config: any printable or control text in one key.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let escaped: String = value.chars().flat_map(|c| c.escape_unicode()).collect();
        let body = if key == "no_masquerade" {
            format!("cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\nno_masquerade = [\"{escaped}\"]\n")
        } else {
            format!("cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\n{key} = \"{escaped}\"\n")
        };
        std::fs::write(&file, body).unwrap();
        if let Err(e) = podsnat::load(Sources { config: Some(&file), ..Sources::default() }) {
            let msg = e.to_string();
            prop_assert!(!msg.contains('\n') && !msg.chars().any(|c| c.is_control()), "unescaped: {:?}", msg);
        }
    }
}

/// `restore --test` of `table` in each backend's namespace.
fn restore_test(
    namespaces: &[(common::Backend, common::Netns)],
    table: &str,
) -> Result<(), TestCaseError> {
    for (backend, ns) in namespaces {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns.name, backend.restore, "--test"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        prop_assert!(
            out.status.success(),
            "{} rejected:\n{}\n{}",
            backend.restore,
            String::from_utf8_lossy(&out.stderr),
            table
        );
    }
    Ok(())
}

/// Random valid configs through the real iptables-restore --test, on both
/// backends, each in a namespace of its own.
#[test]
fn random_configs_load_in_real_iptables_restore() {
    common::require_root_or_fail("random_configs_load_in_real_iptables_restore");
    let namespaces: Vec<(common::Backend, common::Netns)> = common::BACKENDS
        .iter()
        .map(|b| (*b, common::Netns::new()))
        .collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&spec_input(), |raw| {
            let spec = load(raw).map_err(TestCaseError::fail)?;
            let table = podsnat::nat_table(&spec);
            restore_test(&namespaces, &table)
        })
        .unwrap();
}

/// A global-unicast-looking IPv6 network: the first byte 0x20-0xfd, so
/// never multicast (ff00::/8), IPv4-mapped or loopback, which podsnat
/// refuses by design.
fn net6(addr: u128, prefix: u8) -> ipnet::Ipv6Net {
    let top = 0x20 + (addr >> 120) % (0xfd - 0x20 + 1);
    let addr = (top << 120) | (addr & ((1u128 << 120) - 1));
    ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(addr), prefix)
        .unwrap()
        .trunc()
}

prop_compose! {
    fn spec6_input()(
        cluster_addr in any::<u128>(),
        cluster_len in 16u8..=96,
        extra_len in 0u8..=32,
        pod_offset in any::<u128>(),
        extras in prop::collection::vec((any::<u128>(), 16u8..=128), 0..=100),
        random_fully in any::<bool>(),
        docker in any::<bool>(),
        mode in prop::sample::select(vec!["guard", "owner", "classic"]),
    ) -> RawConfig {
        let cluster = net6(cluster_addr, cluster_len);
        let pod_len = (cluster_len + extra_len).min(128);
        let span_bits = 128 - u32::from(cluster_len);
        let offset = pod_offset & ((1u128 << span_bits) - 1);
        let pod = ipnet::Ipv6Net::new(
            std::net::Ipv6Addr::from(u128::from(cluster.network()) | offset),
            pod_len,
        )
        .unwrap()
        .trunc();
        RawConfig {
            cluster_cidr_v6: Some(cluster.to_string()),
            pod_subnet_v6: Some(pod.to_string()),
            no_masquerade: Some(if mode == "classic" {
                Vec::new()
            } else {
                extras.iter().map(|(a, l)| net6(*a, *l).to_string()).collect()
            }),
            random_fully: Some(random_fully),
            docker: Some(docker),
            mode: Some(mode.into()),
            ..RawConfig::default()
        }
    }
}

/// Random valid IPv6 configs through the real ip6tables-restore --test, on
/// both backends; the same config renders the same bytes twice.
#[test]
fn random_ipv6_configs_load_in_real_ip6tables_restore() {
    common::require_root_or_fail("random_ipv6_configs_load_in_real_ip6tables_restore");
    let namespaces: Vec<(common::Backend, common::Netns)> = common::BACKENDS6
        .iter()
        .map(|b| (*b, common::Netns::new()))
        .collect();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(&spec6_input(), |raw| {
            let spec = load(raw.clone()).map_err(TestCaseError::fail)?;
            let table = podsnat::nat_table(&spec);
            prop_assert_eq!(
                &table,
                &podsnat::nat_table(&load(raw).map_err(TestCaseError::fail)?)
            );
            restore_test(&namespaces, &table)
        })
        .unwrap();
}

//! Render time for the example node and for 10,000 `no_masquerade` CIDRs.
//! Run: cargo bench --bench render

// Benchmark code may unwrap: a panic is a failed run with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::string_slice,
    clippy::unreachable
)]

use criterion::{Criterion, criterion_group, criterion_main};
use podsnat::{RawConfig, Sources};
use std::hint::black_box;
use std::path::Path;

fn example() -> podsnat::NodeSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flannel-docker.toml");
    podsnat::load(Sources {
        config: Some(&path),
        ..Sources::default()
    })
    .expect("example config loads")
    .specs()[0]
        .clone()
}

/// 10,000 /32s two addresses apart, so none aggregate: 10,000 exclusion
/// rules plus the cluster and the 5 fixed rules.
fn many() -> podsnat::NodeSpec {
    let cidrs = (0..10_000u32)
        .map(|i| {
            let a = 0x0a00_0000 + i * 2;
            format!("{}/32", std::net::Ipv4Addr::from(a))
        })
        .collect();
    podsnat::load(Sources {
        flags: RawConfig {
            cluster_cidr: Some("172.7.0.0/16".into()),
            pod_subnet: Some("172.7.21.0/24".into()),
            no_masquerade: Some(cidrs),
            ..RawConfig::default()
        },
        ..Sources::default()
    })
    .expect("generated config loads")
    .specs()[0]
        .clone()
}

fn bench(c: &mut Criterion) {
    let small = example();
    c.bench_function("render example", |b| {
        b.iter(|| podsnat::nat_table(black_box(&small)))
    });
    let big = many();
    assert_eq!(podsnat::rule_count(&podsnat::nat_table(&big)), 10_007);
    c.bench_function("render 10000 no_masquerade", |b| {
        b.iter(|| podsnat::nat_table(black_box(&big)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `podsnat verify --file` in process at cluster scale, each input beside
//! one ten times its size, so the ratio shows how the cost grows:
//! - kube-proxy's iptables mode as pkg/proxy/iptables/proxier.go writes it
//!   (KUBE-SERVICES, a KUBE-SVC-* chain per service with its masquerade
//!   rule, a KUBE-SEP-* chain per endpoint, KUBE-MARK-MASQ,
//!   KUBE-POSTROUTING), 500 and 5,000 services with 3 endpoints each;
//! - kube-proxy's ipvs mode: KUBE-POSTROUTING's hairpin rule matching
//!   KUBE-LOOP-BACK (`hash:ip,port,ip`, matched `dst,dst,src`) with 4,000
//!   and 40,000 entries, read from `ipset save` text;
//! - 2,000 and 20,000 chains that nothing reaches.
//!
//! Each run parses the table, checks every rule (as `--file` does) and
//! evaluates it. The per-rule cost is printed. The whole-process figure on
//! a live table is benches/verify.sh.
//! Run: cargo bench --bench scale

// Benchmark code may unwrap: a panic is a failed run with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::string_slice,
    clippy::unreachable
)]

use podsnat::{Family, NodeSpec, RawConfig, Sources};
use std::fmt::Write;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

fn spec(cluster: &str, pod: &str) -> NodeSpec {
    podsnat::load(Sources {
        flags: RawConfig {
            cluster_cidr: Some(cluster.into()),
            pod_subnet: Some(pod.into()),
            anchor: Some(false),
            ..RawConfig::default()
        },
        ..Sources::default()
    })
    .unwrap()
    .specs()[0]
        .clone()
}

/// podsnat's own rendered table with `decls` and `rules` added.
fn with_podsnat(spec: &NodeSpec, decls: &str, rules: &str) -> String {
    let mut own_decls = String::new();
    let mut own_rules = String::new();
    for l in podsnat::nat_table(spec).lines() {
        if l.starts_with(':') {
            own_decls += l;
            own_decls.push('\n');
        } else if l.starts_with("-A ") {
            own_rules += l;
            own_rules.push('\n');
        }
    }
    format!("*nat\n{own_decls}{decls}{rules}{own_rules}COMMIT\n")
}

/// kube-proxy's iptables-mode table: `services` ClusterIPs, 3 endpoints each.
fn kube_proxy(spec: &NodeSpec, services: usize) -> String {
    let mut d = String::from(
        ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut r = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    for i in 0..services {
        let svc = format!("KUBE-SVC-{i:016X}");
        let vip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        let name = format!("ns/svc-{i}:http");
        writeln!(d, ":{svc} - [0:0]").unwrap();
        writeln!(r, "-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport 80 -j {svc}").unwrap();
        writeln!(r, "-A {svc} ! -s 172.7.0.0/16 -d {vip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ").unwrap();
        for e in 0..3 {
            let sep = format!("KUBE-SEP-{i:08X}{e:08X}");
            let n = i * 3 + e;
            let ip = format!("172.7.{}.{}", n / 250 % 256, n % 250 + 1);
            writeln!(d, ":{sep} - [0:0]").unwrap();
            let pick = match e {
                0 => "-m statistic --mode random --probability 0.33333333349 ",
                1 => "-m statistic --mode random --probability 0.50000000000 ",
                _ => "",
            };
            writeln!(
                r,
                "-A {svc} -m comment --comment \"{name} -> {ip}:8080\" {pick}-j {sep}"
            )
            .unwrap();
            writeln!(
                r,
                "-A {sep} -s {ip}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
            )
            .unwrap();
            writeln!(r, "-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {ip}:8080").unwrap();
        }
    }
    with_podsnat(spec, &d, &r)
}

/// kube-proxy's ipvs-mode POSTROUTING and its KUBE-LOOP-BACK set.
fn ipvs(spec: &NodeSpec, entries: usize) -> (String, String) {
    let table = with_podsnat(
        spec,
        ":KUBE-POSTROUTING - [0:0]\n",
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-POSTROUTING -m comment --comment \"Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose\" -m set --match-set KUBE-LOOP-BACK dst,dst,src -j MASQUERADE\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    let mut sets = String::from(
        "create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536\n",
    );
    for i in 0..entries {
        let ip = format!("10.0.{}.{}", i / 256 % 256, i % 256);
        // Endpoints on several nodes' subnets: the set spans the cluster.
        let ip = if i < 65_536 {
            ip
        } else {
            format!("10.1.{}.{}", i / 256 % 256, i % 256)
        };
        writeln!(sets, "add KUBE-LOOP-BACK {ip},tcp:80,{ip}").unwrap();
    }
    (table, sets)
}

/// `chains` chains that nothing jumps to, each a single RETURN.
fn unreached(spec: &NodeSpec, chains: usize) -> String {
    let mut d = String::new();
    let mut r = String::new();
    for i in 0..chains {
        writeln!(d, ":UNREACHED-{i} - [0:0]").unwrap();
        writeln!(r, "-A UNREACHED-{i} -j RETURN").unwrap();
    }
    with_podsnat(spec, &d, &r)
}

/// What `verify --file` does in process.
fn verify_file(spec: &NodeSpec, text: &str, sets: &podsnat::Sets) -> podsnat::Status {
    let tables = podsnat::parse_rules(text).unwrap();
    podsnat::check_all(&tables[0], Family::V4).unwrap();
    podsnat::evaluate_with(spec, &tables[0], sets)
        .unwrap()
        .status
}

fn bench(c: &mut Criterion) {
    let flannel = spec("172.7.0.0/16", "172.7.21.0/24");
    let wide = spec("10.0.0.0/8", "10.0.0.0/16");
    let none = podsnat::Sets::default();
    // (name, spec, table, sets, what the cost is counted per, how many)
    let mut cases: Vec<(String, NodeSpec, String, podsnat::Sets, &str, usize)> = Vec::new();
    for n in [500, 5_000] {
        let text = kube_proxy(&flannel, n);
        let rules = podsnat::rule_count(&text);
        let name = format!("kube-proxy {n} services");
        cases.push((name, flannel.clone(), text, none.clone(), "rule", rules));
    }
    for n in [4_000, 40_000] {
        let (table, sets) = ipvs(&wide, n);
        let sets = podsnat::Sets::parse(&sets).unwrap();
        let name = format!("ipvs KUBE-LOOP-BACK {n} entries");
        cases.push((name, wide.clone(), table, sets, "set entry", n));
    }
    for n in [2_000, 20_000] {
        let text = unreached(&flannel, n);
        let rules = podsnat::rule_count(&text);
        let name = format!("{n} unreached chains");
        cases.push((name, flannel.clone(), text, none.clone(), "rule", rules));
    }
    for (name, spec, text, sets, unit, count) in &cases {
        // Every input is decided, and ok: the cost is that of a real answer.
        assert_eq!(verify_file(spec, text, sets), podsnat::Status::Ok, "{name}");
        let t = Instant::now();
        verify_file(spec, text, sets);
        let took = t.elapsed();
        eprintln!(
            "{name}: one run {took:?}, {:.0} ns per {unit} ({count})",
            took.as_nanos() as f64 / *count as f64
        );
        c.bench_function(name, |b| {
            b.iter(|| verify_file(spec, black_box(text), sets))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);

//! The in-process part of `podsnat verify`: parse a saved nat table with
//! 20,000 kube-proxy-style rules and evaluate it, IPv4's and, for the
//! 128-bit atoms, the same table on IPv6 (the dual-stack example). The
//! whole-process figure next to iptables-save is benches/verify.sh.
//! Run: cargo bench --bench evaluate

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
use podsnat::Sources;
use std::hint::black_box;
use std::path::Path;

fn table(spec: &podsnat::NodeSpec, services: usize) -> String {
    let rendered = podsnat::nat_table(spec);
    let mut decls = String::from(
        ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n",
    );
    let mut rules = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n",
    );
    for l in rendered.lines() {
        if l.starts_with(':') {
            decls = format!("{l}\n{decls}");
        } else if l.starts_with("-A ") {
            rules += l;
            rules.push('\n');
        }
    }
    rules += "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
              -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
              -A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n\
              -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n";
    let v6 = spec.family() == podsnat::Family::V6;
    for i in 0..services {
        let dst = if v6 {
            format!("fd00:96::{:x}/128", i + 1)
        } else {
            format!("10.96.{}.{}/32", i / 250, i % 250 + 1)
        };
        rules += &format!(
            "-A KUBE-SERVICES -d {dst} -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
        );
    }
    format!("*nat\n{decls}{rules}COMMIT\n")
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let load = |file: &str| {
        podsnat::load(Sources {
            config: Some(&root.join(file)),
            ..Sources::default()
        })
        .expect("example config loads")
    };
    let v4 = load("examples/flannel-docker.toml").specs()[0].clone();
    let v6 = load("examples/dual-stack.toml").specs()[1].clone();
    for (name, spec) in [
        ("parse + evaluate 20000 rules", v4),
        ("parse + evaluate 20000 IPv6 rules", v6),
    ] {
        let text = table(&spec, 19_993);
        let tables = podsnat::parse_rules(&text).expect("parses");
        assert!(tables[0].rules.len() >= 20_005);
        assert_eq!(
            podsnat::evaluate(&spec, &tables[0]).unwrap().status,
            podsnat::Status::Ok
        );
        c.bench_function(name, |b| {
            b.iter(|| {
                let tables = podsnat::parse_rules(black_box(&text)).expect("parses");
                podsnat::evaluate(&spec, &tables[0]).unwrap().status
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

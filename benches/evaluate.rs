//! The in-process part of `podsnat verify`: parse a saved nat table with
//! 20,000 kube-proxy-style rules and evaluate it. The whole-process figure
//! next to iptables-save is benches/verify.sh.
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
use podsnat::config::{self, Sources};
use podsnat::{render, rules_file, verify};
use std::hint::black_box;
use std::path::Path;

fn table(spec: &config::NodeSpec, services: usize) -> String {
    let rendered = render::nat_table(spec);
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
    for i in 0..services {
        rules += &format!(
            "-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp -m comment --comment \"default/svc-{i}:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n",
            i / 250,
            i % 250 + 1
        );
    }
    format!("*nat\n{decls}{rules}COMMIT\n")
}

fn bench(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flannel-docker.toml");
    let spec = config::load(Sources {
        config: Some(&path),
        ..Sources::default()
    })
    .expect("example config loads")
    .specs()[0]
        .clone();
    let text = table(&spec, 19_993);
    let tables = rules_file::parse(&text).expect("parses");
    assert_eq!(tables[0].rules.len(), 20_005);
    assert_eq!(
        verify::evaluate(&spec, &tables[0]).unwrap().status,
        verify::Status::Ok
    );
    c.bench_function("parse + evaluate 20000 rules", |b| {
        b.iter(|| {
            let tables = rules_file::parse(black_box(&text)).expect("parses");
            verify::evaluate(&spec, &tables[0]).unwrap().status
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

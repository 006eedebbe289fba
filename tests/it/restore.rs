//! Every good golden case, restored with the real iptables-restore in a
//! network namespace of its own, on both backends. iptables-save must show
//! exactly the rendered chains and rules, in order; docker's restart step
//! must not put its broad rule above the exclusion in guard mode.

use crate::common;

use std::fs;
use std::path::Path;

use crate::common::{BACKENDS, Backend, Netns};
use clap::Parser;
use podsnat::cli::{Cli, Command};
use podsnat::config::{Mode, NodeSpec};
use podsnat::{rules_file, verify};

/// Loads a case's NodeSpec through the real CLI parser, with the case's
/// relative file arguments resolved against its folder.
fn case_spec(dir: &Path) -> Option<NodeSpec> {
    let args: Vec<String> = fs::read_to_string(dir.join("args"))
        .ok()?
        .lines()
        .map(str::to_owned)
        .collect();
    if args.first().map(String::as_str) != Some("render") {
        return None;
    }
    let mut resolved = vec!["podsnat".to_owned()];
    let mut prev = "";
    for a in &args {
        resolved.push(if matches!(prev, "--config" | "--flannel-env") {
            dir.join(a).display().to_string()
        } else {
            a.clone()
        });
        prev = a;
    }
    let Command::Render(spec) = Cli::try_parse_from(resolved).unwrap().command else {
        return None;
    };
    Some(podsnat::commands::load_spec(&spec).unwrap())
}

fn good_cases() -> Vec<(String, NodeSpec)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<(String, NodeSpec)> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("bad-"))
        .filter_map(|p| {
            Some((
                p.file_name()?.to_string_lossy().into_owned(),
                case_spec(&p)?,
            ))
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        cases.len() >= 10,
        "expected the golden cases, found {}",
        cases.len()
    );
    cases
}

fn check_case(name: &str, spec: &NodeSpec, backend: &Backend) {
    let ctx = format!("{name} on {}", backend.name);
    let rendered = podsnat::render::nat_table(spec);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("iptables");
    fs::write(&file, &rendered).unwrap();
    let ns = Netns::new();
    // Exactly what the boot unit runs (`-w 5` before the file: see DESIGN.md).
    ns.ok(
        backend.restore,
        &["-w", "5", "-T", "nat", file.to_str().unwrap()],
    );
    let saved = ns.ok(backend.save, &["-t", "nat"]);

    let want = &rules_file::parse(&rendered).unwrap()[0];
    let got = &rules_file::parse(&saved).unwrap()[0];
    // The offline evaluator agrees with every golden table, before and after
    // the real restore.
    for (what, t) in [("rendered", want), ("restored", got)] {
        let report = verify::evaluate(spec, t);
        assert_eq!(
            report.status,
            verify::Status::Ok,
            "{ctx}: verify on the {what} table:\n{}",
            verify::text(&report)
        );
    }
    let (mut want_chains, mut got_chains) = (want.chains.clone(), got.chains.clone());
    want_chains.sort();
    got_chains.sort();
    assert_eq!(got_chains, want_chains, "{ctx}: chains after restore");
    for chain in &want.chains {
        assert_eq!(
            got.chain_rules(chain),
            want.chain_rules(chain),
            "{ctx}: chain {chain} after restore differs from the rendered table"
        );
    }

    // Docker (re)starts: `-C` its broad rule, `-I` it on top when missing.
    let subnet = spec.pod_subnet().to_string();
    let bridge = spec.bridge().as_str();
    if spec.docker() {
        common::docker_restart(&ns.name, backend, &subnet, bridge);
        let after = ns.ok(backend.save, &["-t", "nat"]);
        let after = &rules_file::parse(&after).unwrap()[0];
        let post = after.chain_rules("POSTROUTING");
        let verdict = verify::evaluate(spec, after).status;
        match spec.mode() {
            Mode::Guard => {
                assert_eq!(
                    verdict,
                    verify::Status::Ok,
                    "{ctx}: verify after docker's restart"
                );
                assert_eq!(
                    post,
                    want.chain_rules("POSTROUTING"),
                    "{ctx}: guard mode, docker found its rule and must insert nothing"
                );
                assert_eq!(
                    post[0],
                    format!("-A POSTROUTING -s {subnet} -j PODSNAT-POSTROUTING")
                );
            }
            Mode::Classic => {
                // The weakness classic mode is documented for: docker's broad
                // rule now sits above the fix and masquerades pod-to-cluster.
                assert_eq!(
                    verdict,
                    verify::Status::Drift,
                    "{ctx}: verify must see docker's rule win"
                );
                let broad = format!("-A POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE");
                assert_eq!(post[0], broad, "{ctx}: classic mode, docker inserts on top");
                assert_eq!(&post[1..], want.chain_rules("POSTROUTING"), "{ctx}");
            }
        }
    }

    // `docker run -p` appends a DNAT to the DOCKER chain; that only works if
    // the restored table kept docker's skeleton.
    let port_map = [
        "-w",
        "5",
        "-t",
        "nat",
        "-A",
        "DOCKER",
        "!",
        "-i",
        bridge,
        "-p",
        "tcp",
        "-m",
        "tcp",
        "--dport",
        "8080",
        "-j",
        "DNAT",
        "--to-destination",
        "172.31.0.2:80",
    ];
    let mapped = ns.exec(backend.iptables, &port_map).status.success();
    assert_eq!(
        mapped,
        spec.docker(),
        "{ctx}: port map into DOCKER chain (docker = {})",
        spec.docker()
    );
}

#[test]
fn golden_cases_restore_on_both_backends() {
    if !common::require_root_or_fail("golden_cases_restore_on_both_backends") {
        return;
    }
    for (name, spec) in good_cases() {
        for backend in &BACKENDS {
            check_case(&name, &spec, backend);
        }
    }
}

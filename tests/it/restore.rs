//! Every good golden case, restored with the real iptables-restore in a
//! network namespace of its own, on both backends. iptables-save must show
//! exactly the rendered chains and rules, in order; docker's restart step
//! must not put its broad rule above the exclusion in guard mode.

use crate::common;
use podsnat::{Cli, Command, Family, Mode, Node, NodeSpec};

use std::fs;
use std::path::Path;

use crate::common::{BACKENDS, Backend, Netns};
use clap::Parser;

/// Loads a case's node through the real CLI parser, with the case's
/// relative file arguments resolved against its folder.
fn case_spec(dir: &Path) -> Option<Node> {
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
    let Command::Render(args) = Cli::try_parse_from(resolved).unwrap().command else {
        return None;
    };
    Some(podsnat::load_spec(&args.spec).unwrap())
}

/// Every good case's tables: one entry per family of the node, named
/// `<case>` (IPv4) or `<case> ipv6`.
fn good_cases() -> Vec<(String, NodeSpec)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut cases: Vec<(String, NodeSpec)> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("bad-"))
        .filter_map(|p| {
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some(
                case_spec(&p)?
                    .specs()
                    .iter()
                    .map(|s| match s.family() {
                        Family::V4 => (name.clone(), s.clone()),
                        Family::V6 => (format!("{name} ipv6"), s.clone()),
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
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
    let backend = &backend.of(spec.family());
    let ctx = format!("{name} on {}", backend.iptables);
    let rendered = podsnat::nat_table(spec);
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

    let want = &podsnat::parse_rules(&rendered).unwrap()[0];
    let got = &podsnat::parse_rules(&saved).unwrap()[0];
    // The offline evaluator agrees with every golden table, before and after
    // the real restore.
    for (what, t) in [("rendered", want), ("restored", got)] {
        let report = podsnat::evaluate(spec, t).unwrap();
        assert_eq!(
            report.status,
            podsnat::Status::Ok,
            "{ctx}: verify on the {what} table:\n{}",
            podsnat::report_text(&report)
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

    // docker starts again: its broad rule goes on top (not with "ip-masq":
    // false, which owner mode is for); then the pin puts podsnat's rules back.
    let subnet = spec.pod_subnet().to_string();
    let bridge = spec.bridge().as_str();
    let broad = format!("-A POSTROUTING -s {subnet} ! -o {bridge} -j MASQUERADE");
    if spec.mode() == Mode::Owner {
        // No docker start can delete podsnat's egress rule: it is not docker's.
        let check = [
            "-w",
            "5",
            "-t",
            "nat",
            "-C",
            "POSTROUTING",
            "-s",
            &subnet,
            "!",
            "-o",
            bridge,
            "-j",
            "MASQUERADE",
        ];
        assert!(
            !ns.exec(backend.iptables, &check).status.success(),
            "{ctx}: docker's -C would find a rule"
        );
    }
    if spec.docker() {
        let owner = spec.mode() == Mode::Owner;
        common::docker_standin(&ns.name, backend, "start", &subnet, bridge, !owner);
        let after = ns.ok(backend.save, &["-t", "nat"]);
        let after = &podsnat::parse_rules(&after).unwrap()[0];
        let post = after.chain_rules("POSTROUTING");
        let verdict = podsnat::evaluate(spec, after).unwrap().status;
        if owner {
            assert_eq!(
                verdict,
                podsnat::Status::Ok,
                "{ctx}: owner mode after docker's start"
            );
        } else {
            assert_eq!(
                verdict,
                podsnat::Status::Drift,
                "{ctx}: docker's rule must win before the pin"
            );
            assert_eq!(post[0], broad, "{ctx}: docker inserts on top");
        }
        let pin = common::pin_in(&ns.name, file.to_str().unwrap(), backend);
        assert_eq!(
            pin.status.code(),
            Some(if owner { 0 } else { 2 }),
            "{ctx}: pin: {}",
            String::from_utf8_lossy(&pin.stderr)
        );
        let pinned = ns.ok(backend.save, &["-t", "nat"]);
        let pinned = &podsnat::parse_rules(&pinned).unwrap()[0];
        assert_eq!(
            podsnat::evaluate(spec, pinned).unwrap().status,
            podsnat::Status::Ok,
            "{ctx}: after the pin"
        );
        let ours = want.chain_rules("POSTROUTING");
        let post = pinned.chain_rules("POSTROUTING");
        assert_eq!(
            &post[..ours.len()],
            ours.as_slice(),
            "{ctx}: podsnat's rules on top after the pin"
        );
        if spec.mode() == Mode::Classic {
            assert!(
                !post.contains(&broad.as_str()),
                "{ctx}: classic's pin deletes docker's rule"
            );
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
        "8081",
        "-j",
        "DNAT",
        "--to-destination",
        match spec.family() {
            Family::V4 => "172.31.0.2:80",
            Family::V6 => "[fd00:31::2]:80",
        },
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
    common::require_root_or_fail("golden_cases_restore_on_both_backends");
    for (name, spec) in good_cases() {
        for backend in &BACKENDS {
            check_case(&name, &spec, backend);
        }
    }
}

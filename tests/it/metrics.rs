//! verify's and the pin's Prometheus metrics, checked with the real
//! promtool (Debian's `prometheus` package): every format output passes
//! `promtool check metrics`, the alerting rules in contrib/prometheus pass
//! `promtool check rules` and their unit test `promtool test rules`. In a
//! network namespace, a verify after drift writes
//! `podsnat_exclusion_ok{family="ipv4"} 0`, and after a repair or a pin 1;
//! the counters go on across runs. (The kill -9 test is in crash.rs.)

use crate::common::{self, Netns};

use std::path::Path;
use std::process::Command;

const RULES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/prometheus");

/// `promtool check metrics` on `text`; panics with promtool's words.
fn promtool_accepts(what: &str, text: &str) {
    let out = common::with_stdin(
        Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused {what}:\n{}{}\n--- the metrics:\n{text}",
        common::text(&out.stdout),
        common::text(&out.stderr)
    );
}

/// The value of one series in metrics text.
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_owned)
}

fn podsnat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::podsnat_bin())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        common::text(&out.stdout),
        common::text(&out.stderr),
    )
}

#[test]
fn every_format_output_passes_promtool() {
    common::require("every_format_output_passes_promtool", false, &["promtool"]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let table = podsnat::nat_table(
        &podsnat::load(podsnat::Sources {
            config: Some(Path::new(common::EXAMPLE)),
            ..Default::default()
        })
        .unwrap()
        .specs()[0],
    );
    let ok = t.join("ok.rules");
    std::fs::write(&ok, &table).unwrap();
    // docker's start puts its broad rule on top: drift.
    let drift = t.join("drift.rules");
    let broad = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
    std::fs::write(
        &drift,
        table.replacen("-A POSTROUTING", &format!("{broad}\n-A POSTROUTING"), 1),
    )
    .unwrap();
    // A rule podsnat does not model decides first: cannot decide.
    let undecided = t.join("undecided.rules");
    std::fs::write(
        &undecided,
        table.replacen(
            "-A POSTROUTING",
            "-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE\n-A POSTROUTING",
            1,
        ),
    )
    .unwrap();
    let daemon = t.join("daemon.json");
    std::fs::write(&daemon, "{\"bip\": \"172.7.30.1/24\"}").unwrap();
    let dual = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dual-stack.toml");
    let case = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cases/29-verify-dual-files"
    );
    let s = |p: &Path| p.display().to_string();
    let mut runs: Vec<(String, Vec<String>, &str)> = vec![
        ("ok".into(), vec![s(&ok)], "1"),
        ("drift".into(), vec![s(&drift)], "0"),
        ("cannot decide".into(), vec![s(&undecided)], "NaN"),
    ];
    // docker's settings read too: drift there is its own series.
    runs.push((
        "docker's settings".into(),
        vec![s(&ok), "--docker-config".into(), s(&daemon)],
        "1",
    ));
    for (what, file, exclusion) in &runs {
        let mut args = vec![
            "verify",
            "--config",
            common::EXAMPLE,
            "--no-test",
            "--format",
            "prometheus",
            "--file",
        ];
        args.extend(file.iter().map(String::as_str));
        let (code, out, err) = podsnat(&args);
        assert!(matches!(code, 0..=2), "{what}: exit {code}: {err}");
        promtool_accepts(what, &out);
        assert_eq!(
            value(&out, "podsnat_exclusion_ok{family=\"ipv4\"}").as_deref(),
            Some(*exclusion),
            "{what}:\n{out}"
        );
        let state = match *exclusion {
            "1" => "ok",
            "0" => "drift",
            _ => "cannot_decide",
        };
        if what != "docker's settings" {
            assert_eq!(
                value(
                    &out,
                    &format!("podsnat_status{{family=\"ipv4\",status=\"{state}\"}}")
                )
                .as_deref(),
                Some("1"),
                "{what}:\n{out}"
            );
        } else {
            assert_eq!(
                value(&out, "podsnat_docker_settings_ok").as_deref(),
                Some("0")
            );
        }
    }
    // A dual-stack node: a series per family.
    let (v4, v6) = (format!("{case}/nat.rules"), format!("{case}/nat6.rules"));
    let (code, out, err) = podsnat(&[
        "verify",
        "--config",
        dual,
        "--no-test",
        "--format",
        "prometheus",
        "--file",
        &v4,
        "--file6",
        &v6,
    ]);
    assert!(matches!(code, 0..=2), "dual: exit {code}: {err}");
    promtool_accepts("dual stack", &out);
    for family in ["ipv4", "ipv6"] {
        let series = format!("podsnat_exclusion_ok{{family=\"{family}\"}}");
        assert!(value(&out, &series).is_some(), "{out}");
    }
    // --textfile writes what --format prometheus prints.
    let dir = t.join("textfile");
    let (code, out, err) = podsnat(&[
        "verify",
        "--config",
        common::EXAMPLE,
        "--no-test",
        "--file",
        &s(&ok),
        "--format",
        "prometheus",
        "--textfile",
        &s(&dir),
    ]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(dir.join("podsnat.prom")).unwrap();
    assert_eq!(written, out);
    promtool_accepts("the textfile", &written);
}

#[test]
fn alerting_rules_pass_promtool_and_their_unit_test() {
    common::require(
        "alerting_rules_pass_promtool_and_their_unit_test",
        false,
        &["promtool"],
    );
    for args in [
        &["check", "rules", "podsnat.rules.yml"][..],
        &["test", "rules", "podsnat.test.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(RULES_DIR)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            common::text(&out.stdout),
            common::text(&out.stderr)
        );
    }
}

/// In a namespace: podsnat's table restored, then docker's broad rule on
/// top. verify writes 0; `verify --repair` (which also loads the missing
/// anchor) writes 1 and counts both repairs; docker's rule on top again is
/// no drift with the anchor loaded; the pin moves podsnat's rules back and
/// counts it; the counters go on across runs.
#[test]
fn textfile_follows_drift_repair_and_pin() {
    common::require(
        "textfile_follows_drift_repair_and_pin",
        true,
        &[
            "promtool",
            "iptables",
            "iptables-restore",
            "iptables-save",
            "nft",
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let dir = tmp.path().join("metrics");
    let s = |p: &Path| p.display().to_string();
    let (code, _, err) = podsnat(&["write", "--config", common::EXAMPLE, "--root", &s(&root)]);
    assert_eq!(code, 2, "{err}");
    let rules = root.join("etc/iptables/rules.v4");
    let anchor = root.join("etc/podsnat/podsnat.nft");
    let daemon = tmp.path().join("daemon.json");
    std::fs::write(&daemon, "{}").unwrap();

    let ns = Netns::new();
    ns.ok("iptables-restore", &["-w", "5", "-T", "nat", &s(&rules)]);
    let broad = common::example_broad(&["-I", "POSTROUTING", "1"]);
    ns.ok("iptables", &broad);
    let verify = |extra: &[&str]| -> String {
        let mut args = vec![
            "verify".to_owned(),
            "--config".into(),
            common::EXAMPLE.into(),
            "--docker-config".into(),
            s(&daemon),
            "--anchor-file".into(),
            s(&anchor),
            "--textfile".into(),
            s(&dir),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out) = common::podsnat_in(&ns.name, &args);
        assert!(
            matches!(code, 0 | 2),
            "verify {extra:?}: exit {code}\n{out}"
        );
        let text = std::fs::read_to_string(dir.join("podsnat.prom")).unwrap();
        promtool_accepts("the textfile", &text);
        text
    };
    let exclusion = "podsnat_exclusion_ok{family=\"ipv4\"}";
    let repairs =
        |layer: &str| format!("podsnat_repairs_total{{family=\"ipv4\",layer=\"{layer}\"}}");

    let drift = verify(&[]);
    assert_eq!(value(&drift, exclusion).as_deref(), Some("0"), "{drift}");
    assert_eq!(
        value(&drift, "podsnat_anchor_loaded{family=\"ipv4\"}").as_deref(),
        Some("0")
    );
    assert_eq!(value(&drift, &repairs("iptables")).as_deref(), Some("0"));

    let repaired = verify(&["--repair"]);
    assert_eq!(
        value(&repaired, exclusion).as_deref(),
        Some("1"),
        "{repaired}"
    );
    assert_eq!(
        value(&repaired, &repairs("iptables")).as_deref(),
        Some("1"),
        "{repaired}"
    );
    assert_eq!(
        value(&repaired, &repairs("nftables")).as_deref(),
        Some("1"),
        "{repaired}"
    );
    assert_eq!(
        value(&repaired, "podsnat_anchor_loaded{family=\"ipv4\"}").as_deref(),
        Some("1")
    );

    // docker starts again: its rule on top, but the anchor decides first.
    ns.ok("iptables", &broad);
    let anchored = verify(&[]);
    assert_eq!(
        value(&anchored, exclusion).as_deref(),
        Some("1"),
        "{anchored}"
    );
    // The counter is kept from the file, not reset by a run without repair.
    assert_eq!(
        value(&anchored, &repairs("iptables")).as_deref(),
        Some("1"),
        "{anchored}"
    );

    // The pin moves podsnat's rules back above docker's, and counts it.
    let pin = |expect: i32| {
        let (code, out) = common::podsnat_in(
            &ns.name,
            &["pin", "--file", &s(&rules), "--textfile", &s(&dir)],
        );
        assert_eq!(code, expect, "{out}");
        let text = std::fs::read_to_string(dir.join("podsnat-pin.prom")).unwrap();
        promtool_accepts("the pin's textfile", &text);
        text
    };
    let pinned = pin(2);
    assert_eq!(
        value(&pinned, "podsnat_pins_total{family=\"ipv4\"}").as_deref(),
        Some("1")
    );
    let again = pin(0);
    assert_eq!(
        value(&again, "podsnat_pins_total{family=\"ipv4\"}").as_deref(),
        Some("1")
    );
    ns.ok("iptables", &broad);
    let twice = pin(2);
    assert_eq!(
        value(&twice, "podsnat_pins_total{family=\"ipv4\"}").as_deref(),
        Some("2")
    );
    // The two files share no series: node_exporter refuses duplicates.
    let names = |t: &str| -> Vec<String> {
        t.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
            .collect()
    };
    let verify_names = names(&anchored);
    assert!(
        names(&twice).iter().all(|n| !verify_names.contains(n)),
        "{twice}\n{anchored}"
    );
    // The kill-9 test is crash::metrics_textfile_is_old_or_new_after_sigkill.
}

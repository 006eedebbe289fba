//! podsnat's nftables anchor with the real nft and real traffic, on both
//! iptables backends: it loads as rendered, a reload replaces only its own
//! table, it keeps pod A's IP with docker's broad rule on top of iptables'
//! nat table (no pin) and against the nftables shapes of docker 29,
//! flannel, kube-proxy and firewalld, and `verify` reads both layers.

use crate::common;

use std::fs;
use std::path::Path;

use crate::common::lab::Lab;
use crate::common::{BACKENDS, Netns};

const NODE_A: &str = "10.4.7.21";
const OUTSIDE_SEEN: &str = "10.9.0.1";
const EXAMPLE: &str = common::EXAMPLE;

/// Native nftables tables in the shapes other daemons write: the table
/// and chain names and priorities of DESIGN.md, each reduced to the rules
/// that decide a pod packet here.
struct Shape {
    name: &'static str,
    table: &'static str,
    /// Without the anchor, pod A → pod B leaves with the node's address.
    masquerades_pods: bool,
    /// With the anchor, pod B still sees the node's address: kube-proxy
    /// marked the connection for masquerading, and the anchor leaves it.
    /// kube-proxy masquerades no egress: docker's broad rule stays in
    /// iptables' nat table for that.
    marked: bool,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "docker 29 (ip docker-bridges, srcnat)",
        table: r#"table ip docker-bridges {
  chain nat-POSTROUTING {
    type nat hook postrouting priority srcnat; policy accept;
    oifname != "docker0" ip saddr 172.7.21.0/24 counter masquerade
  }
}"#,
        masquerades_pods: true,
        marked: false,
    },
    Shape {
        name: "flannel EnableNFTables (ip flannel-ipv4, srcnat)",
        table: r#"table ip flannel-ipv4 {
  chain postrtg {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 172.7.0.0/16 ip daddr 172.7.0.0/16 return
    ip saddr 172.7.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
  }
}"#,
        masquerades_pods: false,
        marked: false,
    },
    Shape {
        name: "kube-proxy nftables mode, a service connection marked for masquerade",
        table: r#"table ip kube-proxy {
  chain mark-for-masquerade {
    meta mark set meta mark | 0x4000
  }
  chain masquerading {
    meta mark & 0x4000 == 0 return
    meta mark set meta mark ^ 0x4000
    masquerade fully-random
  }
  chain nat-prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip saddr 172.7.21.0/24 ip daddr 172.7.22.2 jump mark-for-masquerade
  }
  chain nat-postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    jump masquerading
  }
}"#,
        masquerades_pods: true,
        marked: true,
    },
    Shape {
        name: "firewalld masquerade (inet firewalld, srcnat + 10)",
        table: r#"table inet firewalld {
  chain nat_POST_public {
    masquerade
  }
  chain nat_POSTROUTING {
    type nat hook postrouting priority srcnat + 10; policy accept;
    oifname != "docker0" jump nat_POST_public
  }
}"#,
        masquerades_pods: true,
        marked: false,
    },
];

/// The anchor file of the example (with `extra` flags), written to `dir`.
fn anchor_file(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--anchor"];
    args.extend_from_slice(extra);
    let path = dir.join("podsnat.nft");
    fs::write(&path, common::render_example(&args)).unwrap();
    path.display().to_string()
}

/// The rendered file, as `nft list ruleset` prints it back: every line but
/// comments, blank lines and the create and delete lines.
fn as_listed(rendered: &str) -> String {
    rendered
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.is_empty())
        .filter(|l| l.ends_with('{') || l.starts_with('\t') || *l == "}")
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn anchor_loads_as_rendered_and_replaces_only_its_own_tables() {
    common::require("anchor_loads_as_rendered", true, &["nft", "ip"]);
    let tmp = tempfile::tempdir().unwrap();
    for (name, extra) in [
        ("example", vec![]),
        (
            "no_masquerade",
            vec![
                "--no-masquerade",
                "10.0.0.0/16",
                "--no-masquerade",
                "10.1.0.0/16",
            ],
        ),
        (
            "dual stack, bit 5",
            vec![
                "--cluster-cidr-v6",
                "fd00:7::/48",
                "--pod-subnet-v6",
                "fd00:7:0:21::/64",
                "--masquerade-bit",
                "5",
                "--bridge",
                "cni0",
            ],
        ),
    ] {
        let ns = Netns::new();
        let file = anchor_file(tmp.path(), &extra);
        let rendered = fs::read_to_string(&file).unwrap();
        // Another daemon's table, which no load of the anchor may touch.
        ns.ok("nft", &["-c", "-f", &file]);
        ns.ok("nft", &["add table ip other; add chain ip other c"]);
        // The first load creates the tables; the second replaces them.
        ns.ok("nft", &["-f", &file]);
        ns.ok("nft", &["-f", &file]);
        let listed = ns.ok("nft", &["list", "ruleset"]);
        let ours: String = listed
            .split("table ")
            .filter(|t| t.starts_with("ip podsnat") || t.starts_with("ip6 podsnat"))
            .map(|t| format!("table {t}"))
            .collect();
        assert_eq!(
            ours,
            as_listed(&rendered),
            "{name}: nft lists what was rendered"
        );
        assert!(
            listed.contains("table ip other"),
            "{name}: the other table is gone:\n{listed}"
        );
        assert_eq!(
            listed.matches("table ip podsnat").count(),
            1,
            "{name}: {listed}"
        );
    }
}

/// Real TCP between two hosts: with the anchor loaded and docker's broad
/// rule on top of iptables' nat table (where docker puts it at every
/// start), pod B sees pod A's IP and the outside host the node's address,
/// with no pin; the same against each native nftables shape.
#[test]
fn anchor_keeps_the_pod_ip_whatever_masquerades_after_it() {
    let tools = ["socat", "ss", "timeout", "bash", "nft"];
    common::require_root_or_fail("anchor_keeps_the_pod_ip");
    common::require("anchor_keeps_the_pod_ip", true, &tools);
    let tmp = tempfile::tempdir().unwrap();
    let file = anchor_file(tmp.path(), &[]);
    for (j, backend) in BACKENDS.iter().enumerate() {
        let lab = Lab::up(
            "docker0",
            "172.7.21.0/24",
            "172.7.22.0/24",
            None,
            &format!("an{j}"),
        );
        let a = lab.ns("a");
        let ctx = backend.name;
        common::ok_in(
            &a,
            backend.iptables,
            &common::example_broad(&["-I", "POSTROUTING", "1"]),
        );
        assert_eq!(
            lab.seen("pa", "pb", "172.7.22.2"),
            NODE_A,
            "{ctx}: the lab shows the problem"
        );
        common::ok_in(&a, "nft", &["-f", &file]);
        assert_eq!(
            lab.seen("pa", "pb", "172.7.22.2"),
            "172.7.21.2",
            "{ctx}: anchor on top"
        );
        assert_eq!(
            lab.seen("pa", "out", "10.9.0.2"),
            OUTSIDE_SEEN,
            "{ctx}: egress"
        );
        let save = format!("--iptables-save={}", backend.save);
        let (code, text) = common::podsnat_in(&a, &["verify", "--config", EXAMPLE, &save]);
        assert_eq!(code, 0, "{ctx}: verify with the anchor:\n{text}");
        assert!(
            text.contains("decided by table ip podsnat chain postrouting"),
            "{text}"
        );

        // Each native shape on its own, without the anchor and with it.
        let broad = common::example_broad(&["-A", "POSTROUTING"]);
        for shape in &SHAPES {
            let ctx = format!("{ctx}, {}", shape.name);
            common::ok_in(
                &a,
                backend.iptables,
                &["-w", "5", "-t", "nat", "-F", "POSTROUTING"],
            );
            if shape.marked {
                common::ok_in(&a, backend.iptables, &broad);
            }
            common::ok_in(&a, "nft", &["delete table ip podsnat"]);
            common::ok_in(&a, "nft", &[shape.table]);
            let want = if shape.masquerades_pods {
                NODE_A
            } else {
                "172.7.21.2"
            };
            assert_eq!(
                lab.seen("pa", "pb", "172.7.22.2"),
                want,
                "{ctx}: without the anchor"
            );
            let (code, text) = common::podsnat_in(&a, &["verify", "--config", EXAMPLE, &save]);
            assert_eq!(
                code, 2,
                "{ctx}: verify without the anchor says drift:\n{text}"
            );
            assert!(
                text.contains("drift: podsnat's nftables anchor table ip podsnat is not loaded"),
                "{ctx}: {text}"
            );
            // verify's pod packets carry no mark: kube-proxy's service
            // marking happens at prerouting, for service traffic only.
            if shape.masquerades_pods {
                assert!(
                    text.contains("drift: pod→cluster traffic is masqueraded by "),
                    "{ctx}: {text}"
                );
            }
            if !shape.marked {
                // Only the shape could have masqueraded: iptables' table is empty.
                assert!(!text.contains("by POSTROUTING rule"), "{ctx}: {text}");
            }
            common::ok_in(&a, "nft", &["-f", &file]);
            let want = if shape.marked { NODE_A } else { "172.7.21.2" };
            assert_eq!(
                lab.seen("pa", "pb", "172.7.22.2"),
                want,
                "{ctx}: with the anchor"
            );
            let (code, text) = common::podsnat_in(&a, &["verify", "--config", EXAMPLE, &save]);
            assert_eq!(code, 0, "{ctx}: verify with the anchor:\n{text}");
            let name = shape.table.split(" {").next().unwrap();
            common::ok_in(&a, "nft", &[&format!("delete {name}")]);
        }
    }
}

/// Offline: a saved `nft -j list ruleset` with `--nft-file`, beside the
/// rules file. An unmodeled statement on the pod packet's path is
/// "cannot decide", never ok; `--repair` loads a missing anchor.
#[test]
fn verify_reads_a_saved_ruleset_and_repairs_a_missing_anchor() {
    common::require(
        "verify_reads_a_saved_ruleset",
        true,
        &["nft", "ip", "iptables-legacy-save"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = anchor_file(tmp.path(), &[]);
    let rules = tmp.path().join("rules.v4");
    fs::write(&rules, common::render_example(&[])).unwrap();
    let ns = Netns::new();
    let json = tmp.path().join("ruleset.json");
    let save = |ns: &Netns| fs::write(&json, ns.ok("nft", &["-j", "list", "ruleset"])).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--config",
            EXAMPLE,
            "--file",
            rules.to_str().unwrap(),
            "--no-test",
            "--nft-file",
            json.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        common::podsnat_in(&ns.name, &args)
    };
    // An unmodeled match (fib) in a chain that could masquerade.
    ns.ok(
        "nft",
        &[r#"table ip odd { chain p { type nat hook postrouting priority srcnat + 5; fib daddr type unicast masquerade; }; }"#],
    );
    save(&ns);
    let (code, text) = verify(&[]);
    // Drift (the missing anchor) outranks "cannot decide"; neither is ok.
    assert_eq!(code, 2, "drift and cannot decide:\n{text}");
    assert!(
        text.contains("warning: cannot decide pod→cluster traffic: table ip odd chain p rule 1"),
        "{text}"
    );
    assert!(
        text.contains("podsnat's nftables anchor table ip podsnat is not loaded"),
        "{text}"
    );
    ns.ok("nft", &["-f", &file]);
    save(&ns);
    let (code, text) = verify(&[]);
    assert_eq!(code, 0, "the anchor decides first:\n{text}");

    // Live repair: the anchor is gone (an nftables flush), --repair loads it.
    ns.ok("nft", &["flush ruleset"]);
    let (code, text) = common::podsnat_in(
        &ns.name,
        &[
            "verify",
            "--config",
            EXAMPLE,
            "--iptables-save",
            "iptables-legacy-save",
            "--repair",
            "--anchor-file",
            &file,
        ],
    );
    assert_eq!(code, 2, "repaired:\n{text}");
    assert!(
        text.starts_with("loaded the anchor with `nft -f "),
        "{text}"
    );
    assert!(
        ns.ok("nft", &["list", "ruleset"])
            .contains("table ip podsnat")
    );
}

/// Offline, no root: chains of one priority run in the order they were
/// registered, which no listing shows. Where one keeps the source and
/// another translates it, verify cannot decide; a match on the other
/// family's addresses in an `inet` table never holds.
#[test]
fn equal_priority_chains_that_disagree_cannot_be_decided() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.v4");
    fs::write(&rules, "*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n").unwrap();
    let chain = |table: &str, prio: i64| {
        format!(
            r#"{{"chain": {{"family": "ip", "table": "{table}", "name": "p", "handle": 1, "type": "nat", "hook": "postrouting", "prio": {prio}, "policy": "accept"}}}}"#
        )
    };
    let rule = |family: &str, table: &str, expr: &str| {
        format!(
            r#"{{"rule": {{"family": "{family}", "table": "{table}", "chain": "p", "handle": 2, "expr": [{expr}]}}}}"#
        )
    };
    let keep = r#"{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.7.21.0", "len": 24}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "172.7.0.0", "len": 16}}}}, {"snat": {"addr": {"payload": {"protocol": "ip", "field": "saddr"}}}}"#;
    let six = r#"{"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00::1"}}, {"masquerade": null}"#;
    let run = |items: Vec<String>| {
        let json = tmp.path().join("ruleset.json");
        fs::write(&json, format!(r#"{{"nftables": [{}]}}"#, items.join(", "))).unwrap();
        let out = std::process::Command::new(common::podsnat_bin())
            .args(["verify", "--config", EXAMPLE, "--no-anchor", "--no-test"])
            .args([
                "--file",
                rules.to_str().unwrap(),
                "--nft-file",
                json.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        (out.status.code(), common::text(&out.stdout))
    };
    let (code, text) = run(vec![
        chain("a", 100),
        rule("ip", "a", keep),
        chain("b", 100),
        rule("ip", "b", r#"{"masquerade": null}"#),
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("run at the same priority 100 in an order no listing shows"),
        "{text}"
    );
    // One priority apart, the order is known: the identity snat decides.
    let (code, text) = run(vec![
        chain("a", 99),
        rule("ip", "a", keep),
        chain("b", 100),
        rule("ip", "b", r#"{"masquerade": null}"#),
    ]);
    assert_eq!(code, Some(0), "{text}");
    // An IPv6 match in an inet table never holds for an IPv4 packet, not
    // even negated: nothing masquerades egress, which is drift.
    let inet = r#"{"chain": {"family": "inet", "table": "c", "name": "p", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 110, "policy": "accept"}}"#;
    let (code, text) = run(vec![inet.to_owned(), rule("inet", "c", six)]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("drift: pod→outside traffic is not masqueraded"),
        "{text}"
    );

    // A verdict map, anonymous and named: traffic leaving through eth7
    // goes to a chain that masquerades; through any other interface the
    // rule does nothing. Pod→cluster through eth7 is then drift, named by
    // the masquerading rule.
    let regular = |name: &str, expr: &str| {
        format!(
            r#"{{"chain": {{"family": "ip", "table": "v", "name": "{name}", "handle": 3}}}}, {{"rule": {{"family": "ip", "table": "v", "chain": "{name}", "handle": 4, "expr": [{expr}]}}}}"#
        )
    };
    for data in [
        r#"{"set": [["lo", {"accept": null}], ["eth7", {"jump": {"target": "masq"}}]]}"#,
        r#""@out""#,
    ] {
        let vmap =
            format!(r#"{{"vmap": {{"key": {{"meta": {{"key": "oifname"}}}}, "data": {data}}}}}"#);
        let (code, text) = run(vec![
            chain("v", 100),
            rule("ip", "v", &vmap),
            regular("masq", r#"{"masquerade": null}"#),
            r#"{"map": {"family": "ip", "name": "out", "table": "v", "type": "ifname", "handle": 5, "map": "verdict", "elem": [["eth7", {"goto": {"target": "masq"}}]]}}"#.to_owned(),
        ]);
        assert_eq!(code, Some(2), "{data}: {text}");
        assert!(
            text.contains("drift: pod→cluster traffic is masqueraded by table ip v chain masq rule 1: masquerade (table ip v runs at priority 100, at the same priority as iptables' nat table (100)); packet 172.7.21.1 -> 172.7.0.0 from docker0 via eth7"),
            "{data}: {text}"
        );
    }
}

/// `nft -c` has the last word on the anchor, and the write is all or
/// nothing: an anchor the real nft rejects leaves the rules file as it was
/// and writes no anchor.
#[test]
fn an_anchor_nft_rejects_changes_no_file() {
    common::require_root_or_fail("an_anchor_nft_rejects_changes_no_file");
    common::require("an_anchor_nft_rejects_changes_no_file", true, &["nft"]);
    let tmp = tempfile::tempdir().unwrap();
    let nat = tmp.path().join("n1.iptables.nat");
    fs::write(&nat, common::render_example(&[])).unwrap();
    let bad = tmp.path().join("n1.podsnat.nft");
    fs::write(
        &bad,
        "# podsnat 0.1.0: hand-edited\ntable ip podsnat {\n\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat - 1; policy accept;\n\t\tip saddr 172.7.21.0/24 snat to bogus\n\t}\n}\n",
    )
    .unwrap();
    let rules = tmp.path().join("rules.v4");
    let before = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n";
    fs::write(&rules, before).unwrap();
    let out = tmp.path().join("podsnat.nft");
    let ns = Netns::new();
    let (code, text) = common::podsnat_in(
        &ns.name,
        &[
            "write",
            "--table",
            nat.to_str().unwrap(),
            "--anchor-table",
            bad.to_str().unwrap(),
            "--output",
            rules.to_str().unwrap(),
            "--anchor-file",
            out.to_str().unwrap(),
            "--iptables-restore",
            "iptables-nft-restore",
        ],
    );
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("nft -c -f /dev/stdin rejected the new ruleset, nothing was written"),
        "{text}"
    );
    assert_eq!(
        fs::read_to_string(&rules).unwrap(),
        before,
        "the rules file changed"
    );
    assert!(!out.exists(), "an anchor was written");
}

/// Offline, no root: docker 29's `docker-bridges` masquerades at srcnat,
/// the priority of iptables' nat table, where podsnat's exclusion is. The
/// drift line names that table, its priority and the order, not a position
/// in iptables' POSTROUTING ("inserted above" was said before, though
/// nothing was inserted above anything); a table before srcnat is named so.
#[test]
fn drift_from_another_nft_table_names_its_priority() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.v4");
    fs::write(&rules, common::render_example(&[])).unwrap();
    let run = |prio: i64| {
        let json = tmp.path().join("ruleset.json");
        let items = [
            format!(
                r#"{{"chain": {{"family": "ip", "table": "docker-bridges", "name": "nat-POSTROUTING", "handle": 1, "type": "nat", "hook": "postrouting", "prio": {prio}, "policy": "accept"}}}}"#
            ),
            r#"{"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-POSTROUTING", "handle": 2, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.7.21.0", "len": 24}}}}, {"masquerade": null}]}}"#.to_owned(),
        ];
        fs::write(&json, format!(r#"{{"nftables": [{}]}}"#, items.join(", "))).unwrap();
        let out = std::process::Command::new(common::podsnat_bin())
            .args(["verify", "--config", EXAMPLE, "--no-anchor", "--no-test"])
            .args(["--file", rules.to_str().unwrap()])
            .args(["--nft-file", json.to_str().unwrap()])
            .output()
            .unwrap();
        (out.status.code(), common::text(&out.stdout))
    };
    let (code, text) = run(100);
    assert_eq!(code, Some(2), "{text}");
    let drift = text
        .lines()
        .find(|l| l.starts_with("drift: pod→cluster"))
        .unwrap_or_else(|| panic!("no pod→cluster drift:\n{text}"));
    assert!(
        drift.contains("table ip docker-bridges chain nat-POSTROUTING rule 1"),
        "{drift}"
    );
    assert!(
        drift.contains("(table ip docker-bridges runs at priority 100, at the same priority as iptables' nat table (100), where podsnat's exclusion binds no NAT and so ends only that table's walk)"),
        "{drift}"
    );
    assert!(!text.contains("inserted above"), "{text}");
    let (code, text) = run(50);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("(table ip docker-bridges runs at priority 50, before iptables' nat table (100), so podsnat's exclusion there never sees the packet)"),
        "{text}"
    );
}

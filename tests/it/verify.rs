//! The evaluator on tables shaped like the ones real components write:
//! docker's skeleton and broad rule, flannel's FLANNEL-POSTRTG, kube-proxy's
//! KUBE-POSTROUTING with mark 0x4000, ip-masq-agent's chain, RETURN inside a
//! user chain, gotos and negated matches.

use crate::common;
use podsnat::{CheckName, NodeSpec, RawConfig, Report, Sources, Status};

fn spec_raw(mode: &str) -> RawConfig {
    RawConfig {
        cluster_cidr: Some("172.7.0.0/16".into()),
        pod_subnet: Some("172.7.21.0/24".into()),
        ..settings(mode, &[])
    }
}

fn spec(mode: &str, no_masquerade: &[&str]) -> NodeSpec {
    load(RawConfig {
        cluster_cidr: Some("172.7.0.0/16".into()),
        pod_subnet: Some("172.7.21.0/24".into()),
        ..settings(mode, no_masquerade)
    })
}

/// The settings every spec here shares.
fn settings(mode: &str, no_masquerade: &[&str]) -> RawConfig {
    RawConfig {
        no_masquerade: Some(no_masquerade.iter().map(|s| s.to_string()).collect()),
        mode: Some(mode.into()),
        ..RawConfig::default()
    }
}

/// A single-family node's spec.
fn load(flags: RawConfig) -> NodeSpec {
    podsnat::load(Sources {
        flags,
        ..Sources::default()
    })
    .unwrap()
    .specs()[0]
        .clone()
}

fn eval(spec: &NodeSpec, table: &str) -> Report {
    let tables = podsnat::parse_rules(table).unwrap();
    podsnat::evaluate(spec, &tables[0]).unwrap()
}

/// The `--noflush` repair of `table` (its first table), planned from its
/// report; both judged without ipsets.
fn repair_of(spec: &NodeSpec, table: &str) -> Option<podsnat::Change> {
    repair_with(spec, table, &podsnat::Sets::default())
}

fn repair_with(spec: &NodeSpec, table: &str, sets: &podsnat::Sets) -> Option<podsnat::Change> {
    let tables = podsnat::parse_rules(table).unwrap();
    let layers = podsnat::Layers {
        table: &tables[0],
        sets,
        nft: None,
        forward: None,
        cni_masquerades: None,
    };
    let report = podsnat::evaluate_with(spec, &tables[0], sets).unwrap();
    podsnat::plan_repair(spec, &report, layers).unwrap()
}

/// A nat table from chain declarations and rules.
fn table(chains: &[&str], rules: &[&str]) -> String {
    let mut t = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for c in chains {
        t += &format!(":{c} - [0:0]\n");
    }
    for r in rules {
        t += r;
        t.push('\n');
    }
    t + "COMMIT\n"
}

/// podsnat's rendered rules with `extra` inserted at the top of POSTROUTING.
fn ours_with_top(spec: &NodeSpec, chains: &[&str], extra: &[&str]) -> String {
    let rendered = podsnat::nat_table(spec);
    let mut decls: Vec<String> = chains.iter().map(|c| format!(":{c} - [0:0]")).collect();
    let mut rules: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    for l in rendered.lines() {
        if l.starts_with(':') && !l.contains(" ACCEPT ") {
            decls.push(l.to_owned());
        } else if l.starts_with("-A ") {
            rules.push(l.to_owned());
        }
    }
    let mut t = String::from(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    for d in decls {
        t += &d;
        t.push('\n');
    }
    for r in rules {
        t += &r;
        t.push('\n');
    }
    t + "COMMIT\n"
}

fn status(r: &Report, check: CheckName) -> Status {
    r.check(check).unwrap().status
}

fn rule_text(r: &Report, check: CheckName) -> String {
    r.check(check)
        .unwrap()
        .rule
        .as_ref()
        .map(|x| x.text.clone())
        .unwrap_or_default()
}

const BROAD: &str = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";

#[test]
fn podsnat_tables_are_ok_in_both_modes() {
    for mode in ["guard", "classic"] {
        let s = spec(mode, &[]);
        let r = eval(&s, &podsnat::nat_table(&s));
        assert_eq!(r.status, Status::Ok, "{mode}: {}", podsnat::report_text(&r));
    }
    let s = spec("guard", &["10.96.0.0/12", "192.168.0.0/16"]);
    let r = eval(&s, &podsnat::nat_table(&s));
    assert_eq!(r.status, Status::Ok, "{}", podsnat::report_text(&r));
}

#[test]
fn docker_broad_rule_above_classic_is_drift() {
    let s = spec("classic", &[]);
    let t = ours_with_top(&s, &[], &[BROAD]);
    let r = eval(&s, &t);
    assert_eq!(r.status, Status::Drift);
    let c = r.check(CheckName::PodToCluster).unwrap();
    assert_eq!(c.rule.as_ref().unwrap().position, 1);
    assert_eq!(c.rule.as_ref().unwrap().text, BROAD);
    assert_eq!(
        c.note.as_deref(),
        Some("inserted above podsnat's exclusion")
    );
    let line = podsnat::report_text(&r);
    assert!(
        line.starts_with(&format!("drift: pod→cluster traffic is masqueraded by POSTROUTING rule 1: {BROAD} (inserted above podsnat's exclusion)")),
        "{line}"
    );
    // Guard mode with the same rule on top is drift too: the order decides.
    let g = spec("guard", &[]);
    assert_eq!(
        eval(&g, &ours_with_top(&g, &[], &[BROAD])).status,
        Status::Drift
    );
    // On a node where podsnat never ran, nothing is said of its exclusion.
    let r = eval(&s, &table(&[], &[BROAD]));
    assert_eq!(r.check(CheckName::PodToCluster).unwrap().note, None);
    // Where its chain is there but the jump is gone, the note says so.
    let jumpless =
        ours_with_top(&g, &[], &[]).replace(&format!("{}\n", podsnat::exclusion(&g)), "");
    let r = eval(&g, &jumpless);
    assert_eq!(r.status, Status::Drift, "{}", podsnat::report_text(&r));
    assert_eq!(
        r.check(CheckName::PodToCluster).unwrap().note.as_deref(),
        Some("podsnat's exclusion is missing")
    );
}

#[test]
fn docker_skeleton_is_understood() {
    // addrtype and a DOCKER chain reached only from PREROUTING/OUTPUT.
    let s = spec("guard", &[]);
    let t = ours_with_top(
        &s,
        &[],
        &[
            "-A POSTROUTING -s 172.7.21.3/32 -d 172.7.21.3/32 -p tcp -m tcp --dport 443 -j MASQUERADE",
        ],
    );
    // A docker hairpin rule for one container: its destination is in the
    // node's own subnet (leaves through the bridge), so it decides nothing.
    let r = eval(&s, &t);
    assert_eq!(r.status, Status::Ok, "{}", podsnat::report_text(&r));
}

const FLANNEL: [&str; 6] = [
    "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG",
    "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN",
    "-A FLANNEL-POSTRTG -s 172.7.0.0/16 -d 172.7.0.0/16 -m comment --comment \"flanneld masq\" -j RETURN",
    "-A FLANNEL-POSTRTG -s 172.7.0.0/16 ! -d 224.0.0.0/4 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
    "-A FLANNEL-POSTRTG ! -s 172.7.0.0/16 -d 172.7.21.0/24 -m comment --comment \"flanneld masq\" -j RETURN",
    "-A FLANNEL-POSTRTG ! -s 172.7.0.0/16 -d 172.7.0.0/16 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
];

#[test]
fn flannel_ip_masq_chain() {
    // Alone, flannel's chain keeps pod IPs inside the cluster (a RETURN in
    // a user chain goes back to POSTROUTING, whose policy applies).
    let s = spec("guard", &[]);
    let r = eval(&s, &table(&["FLANNEL-POSTRTG"], &FLANNEL));
    assert_eq!(
        status(&r, CheckName::PodToCluster),
        Status::Ok,
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(status(&r, CheckName::PodToOutside), Status::Ok);
    assert_eq!(rule_text(&r, CheckName::PodToOutside), FLANNEL[3]);
    // But it masquerades a no_masquerade destination, and says which rule.
    let s = spec("guard", &["10.96.0.0/12"]);
    let r = eval(&s, &table(&["FLANNEL-POSTRTG"], &FLANNEL));
    let c = r.check(CheckName::PodToCluster).unwrap();
    assert_eq!(c.status, Status::Drift);
    assert_eq!(c.destination, "10.96.0.0/12");
    let rule = c.rule.as_ref().unwrap();
    assert_eq!((rule.chain.as_str(), rule.position), ("FLANNEL-POSTRTG", 3));
    // Above podsnat's rules flannel's chain still masquerades 10.96.0.0/12
    // before podsnat's exclusion is reached: the order decides.
    let t = ours_with_top(&s, &["FLANNEL-POSTRTG"], &FLANNEL);
    let r = eval(&s, &t);
    assert_eq!(
        r.check(CheckName::PodToCluster).unwrap().destination,
        "10.96.0.0/12"
    );
    assert_eq!(eval(&s, &t).status, Status::Drift);
}

const KUBE: [&str; 5] = [
    "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING",
    "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
    "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully",
];

#[test]
fn kube_proxy_mark_is_modeled() {
    // kube-proxy on top: plain pod packets carry no mark, so it RETURNs.
    let s = spec("guard", &[]);
    let t = ours_with_top(&s, &["KUBE-POSTROUTING", "KUBE-MARK-MASQ"], &KUBE);
    let r = eval(&s, &t);
    assert_eq!(r.status, Status::Ok, "{}", podsnat::report_text(&r));
    // A rule that marks pod traffic makes kube-proxy masquerade it.
    let mut marked = vec!["-A POSTROUTING -s 172.7.21.0/24 -j KUBE-MARK-MASQ"];
    marked.extend(KUBE);
    let t = ours_with_top(&s, &["KUBE-POSTROUTING", "KUBE-MARK-MASQ"], &marked);
    let r = eval(&s, &t);
    let c = r.check(CheckName::PodToCluster).unwrap();
    assert_eq!(c.status, Status::Drift, "{}", podsnat::report_text(&r));
    let rule = c.rule.as_ref().unwrap();
    assert_eq!(
        (rule.chain.as_str(), rule.position),
        ("KUBE-POSTROUTING", 3)
    );
}

/// kube-proxy's rules with the mark's masquerade, its jump on top of
/// POSTROUTING (as after boot) or at the end (as when podsnat's block is
/// moved above it).
fn kube_at(spec: &NodeSpec, top: bool) -> String {
    let chains = ["KUBE-POSTROUTING", "KUBE-MARK-MASQ"];
    if top {
        return ours_with_top(spec, &chains, &KUBE);
    }
    let t = ours_with_top(spec, &chains, &KUBE[1..]);
    t.replace("COMMIT\n", &format!("{}\nCOMMIT\n", KUBE[0]))
}

#[test]
fn marked_traffic_is_masqueraded_wherever_podsnats_rules_stand() {
    for mode in ["guard", "owner", "classic"] {
        let extra: &[&str] = if mode == "classic" {
            &[]
        } else {
            &["10.96.0.0/12"]
        };
        let s = spec(mode, extra);
        for top in [true, false] {
            let r = eval(&s, &kube_at(&s, top));
            let c = r.check(CheckName::MarkedToCluster).unwrap();
            assert_eq!(
                c.status,
                Status::Ok,
                "{mode} kube on top={top}: {}",
                podsnat::report_text(&r)
            );
            assert_eq!(c.expect, podsnat::Expect::NotKept);
            assert!(c.packet.ends_with("mark 0x4000"), "{}", c.packet);
            assert!(
                podsnat::report_text(&r)
                    .contains("traffic with the masquerade mark (kube-proxy's) is masqueraded by"),
                "{mode} {top}: {}",
                podsnat::report_text(&r)
            );
            assert_eq!(
                r.status,
                Status::Ok,
                "{mode} {top}: {}",
                podsnat::report_text(&r)
            );
        }
    }
    // podsnat's chain from before the mark's RETURN keeps marked traffic
    // from kube-proxy's MASQUERADE below it.
    let s = spec("guard", &[]);
    let mark_return = podsnat::own_chain(&s)[0].clone();
    assert!(mark_return.contains("-m mark --mark 0x4000/0x4000 -j RETURN"));
    let t = kube_at(&s, false).replace(&format!("{mark_return}\n"), "");
    let r = eval(&s, &t);
    let c = r.check(CheckName::MarkedToCluster).unwrap();
    assert_eq!(c.status, Status::Drift, "{}", podsnat::report_text(&r));
    assert_eq!(
        rule_text(&r, CheckName::MarkedToCluster),
        "-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT"
    );
    assert!(podsnat::report_text(&r).contains("kube-proxy's MASQUERADE never sees it"));
    // Its repair rewrites the chain with the RETURN first.
    let plan = repair_of(&s, &t).unwrap();
    assert!(
        plan.transaction.contains(&mark_return),
        "{}",
        plan.transaction
    );
    // A configured bit is the one tested.
    let s = load(RawConfig {
        masquerade_bit: Some(5),
        ..spec_raw("guard")
    });
    assert_eq!(
        podsnat::own_chain(&s)[0],
        "-A PODSNAT-POSTROUTING -m mark --mark 0x20/0x20 -j RETURN"
    );
    let r = eval(&s, &kube_at(&s, false));
    let c = r.check(CheckName::MarkedToCluster).unwrap();
    assert!(c.packet.ends_with("mark 0x20"), "{}", c.packet);
    assert_eq!(c.status, Status::Ok, "{}", podsnat::report_text(&r));
}

/// docker's per-port hairpin rule for a container at 172.7.21.128.
const HAIRPIN: &str =
    "-A POSTROUTING -s 172.7.21.128/32 -d 172.7.21.128/32 -p tcp -m tcp --dport 80 -j MASQUERADE";

#[test]
fn bridge_traffic_reaches_dockers_hairpin_rules() {
    for mode in ["guard", "owner", "classic"] {
        let s = spec(mode, &[]);
        let t = ours_with_top(&s, &[], &[]).replace("COMMIT\n", &format!("{HAIRPIN}\nCOMMIT\n"));
        let r = eval(&s, &t);
        let c = r.check(CheckName::PodViaBridge).unwrap();
        assert_eq!(c.status, Status::Ok, "{mode}: {}", podsnat::report_text(&r));
        assert_eq!(rule_text(&r, CheckName::PodViaBridge), HAIRPIN, "{mode}");
        assert_eq!(
            c.packet,
            "172.7.21.128 -> 172.7.21.128 from docker0 via docker0 (tcp port 80)"
        );
    }
    // podsnat's earlier jump (no `! -o docker0`) sends the container's own
    // traffic to the ACCEPT above docker's hairpin rule: drift, naming it.
    let s = spec("guard", &[]);
    let old = "-A POSTROUTING -s 172.7.21.0/24 -j PODSNAT-POSTROUTING";
    let t = ours_with_top(&s, &[], &[])
        .replace(&podsnat::exclusion(&s), old)
        .replace("COMMIT\n", &format!("{HAIRPIN}\nCOMMIT\n"));
    let r = eval(&s, &t);
    assert_eq!(
        status(&r, CheckName::PodViaBridge),
        Status::Drift,
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(status(&r, CheckName::PodToCluster), Status::Ok);
    let text = podsnat::report_text(&r);
    assert!(
        text.contains(&format!("reached through POSTROUTING rule 1: {old}")),
        "{text}"
    );
    // The repair takes it out and puts podsnat's block (the jump with
    // `! -o docker0`, then docker's rule, as the file has them) back where
    // the old jump was; as the pin does, it moves docker's copy too.
    let plan = repair_of(&s, &t).unwrap();
    assert_eq!(plan.removed, [old.to_owned(), BROAD.to_owned()]);
    assert!(plan.transaction.contains(&format!(
        "-I POSTROUTING 1 {}\n-I POSTROUTING 2 {}\n",
        &podsnat::exclusion(&s)[15..],
        &BROAD[15..]
    )));
    // Without podsnat's rules nothing of podsnat's decides bridge traffic.
    let t = table(&[], &[BROAD, HAIRPIN]);
    let r = eval(&s, &t);
    let c = r.check(CheckName::PodViaBridge).unwrap();
    assert_eq!(c.status, Status::Ok);
    assert!(
        c.note
            .as_deref()
            .unwrap()
            .contains("podsnat has no rule here")
    );
}

#[test]
fn ip_masq_agent_chain() {
    let chain = [
        "-A POSTROUTING -m comment --comment \"ip-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain\" -m addrtype ! --dst-type LOCAL -j IP-MASQ-AGENT",
        "-A IP-MASQ-AGENT -d 169.254.0.0/16 -m comment --comment \"ip-masq-agent: local traffic is not subject to MASQUERADE\" -j RETURN",
        "-A IP-MASQ-AGENT -d 10.0.0.0/8 -m comment --comment \"ip-masq-agent: local traffic is not subject to MASQUERADE\" -j RETURN",
        "-A IP-MASQ-AGENT -d 172.16.0.0/12 -m comment --comment \"ip-masq-agent: local traffic is not subject to MASQUERADE\" -j RETURN",
        "-A IP-MASQ-AGENT -d 192.168.0.0/16 -m comment --comment \"ip-masq-agent: local traffic is not subject to MASQUERADE\" -j RETURN",
        "-A IP-MASQ-AGENT -d 172.7.0.0/16 -m comment --comment \"ip-masq-agent: local traffic is not subject to MASQUERADE\" -j RETURN",
        "-A IP-MASQ-AGENT -m comment --comment \"ip-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)\" -j MASQUERADE",
    ];
    let s = spec("guard", &[]);
    let r = eval(&s, &table(&["IP-MASQ-AGENT"], &chain));
    assert_eq!(
        status(&r, CheckName::PodToCluster),
        Status::Ok,
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(
        rule_text(&r, CheckName::PodToCluster),
        chain[5],
        "the RETURN decides"
    );
    // Without the cluster among its nonMasqueradeCIDRs (172.7.0.0/16 is not
    // RFC 1918), ip-masq-agent masquerades pod-to-pod traffic.
    let mut without = chain.to_vec();
    without.remove(5);
    let r = eval(&s, &table(&["IP-MASQ-AGENT"], &without));
    assert_eq!(status(&r, CheckName::PodToCluster), Status::Drift);
    assert_eq!(rule_text(&r, CheckName::PodToCluster), without[5]);
    let r = eval(&s, &table(&["IP-MASQ-AGENT"], &chain));
    // Egress to 10.0.0.0/8 is not masqueraded by ip-masq-agent's defaults:
    // the check finds that atom and names the RETURN that decides it.
    let c = r.check(CheckName::PodToOutside).unwrap();
    assert_eq!(c.status, Status::Drift, "{}", podsnat::report_text(&r));
    assert_eq!(c.rule.as_ref().unwrap().text, chain[2]);
}

#[test]
fn goto_returns_to_the_callers_caller() {
    let s = spec("guard", &[]);
    // With -j, RETURN comes back to POSTROUTING and the MASQUERADE after it
    // applies; with -g, RETURN ends POSTROUTING (policy) for that packet.
    let jump = table(
        &["X"],
        &[
            "-A POSTROUTING -s 172.7.21.0/24 -j X",
            "-A POSTROUTING -s 172.7.21.0/24 -j MASQUERADE",
            "-A X -j RETURN",
        ],
    );
    assert_eq!(
        status(&eval(&s, &jump), CheckName::PodToCluster),
        Status::Drift
    );
    let goto = jump.replace("-j X", "-g X");
    let r = eval(&s, &goto);
    assert_eq!(
        status(&r, CheckName::PodToCluster),
        Status::Ok,
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(status(&r, CheckName::PodToOutside), Status::Drift);
}

#[test]
fn negations_and_interfaces() {
    let s = spec("guard", &[]);
    // Masquerading on the overlay interface only: pod→cluster through
    // flannel.1 is masqueraded, and the report names that interface.
    let t = ours_with_top(&s, &[], &["-A POSTROUTING -o flannel.1 -j MASQUERADE"]);
    let r = eval(&s, &t);
    let c = r.check(CheckName::PodToCluster).unwrap();
    assert_eq!(c.status, Status::Drift);
    assert!(c.packet.contains("via flannel.1"), "{}", c.packet);
    // `! -s` and `! -d` that exclude pod traffic decide nothing.
    let t = ours_with_top(
        &s,
        &[],
        &[
            "-A POSTROUTING ! -s 172.7.0.0/16 -j MASQUERADE",
            "-A POSTROUTING -s 172.7.21.0/24 ! -d 0.0.0.0/1 ! -d 128.0.0.0/1 -j MASQUERADE",
        ],
    );
    assert_eq!(eval(&s, &t).status, Status::Ok);
    // -i is the bridge for pod traffic.
    let t = ours_with_top(&s, &[], &["-A POSTROUTING ! -i docker0 -j MASQUERADE"]);
    assert_eq!(eval(&s, &t).status, Status::Ok);
    let t = ours_with_top(&s, &[], &["-A POSTROUTING -i docker+ -j MASQUERADE"]);
    assert_eq!(eval(&s, &t).status, Status::Drift);
}

#[test]
fn unknown_matches_are_not_guessed() {
    let s = spec("guard", &[]);
    for rule in [
        "-A POSTROUTING -m set --match-set cluster dst -j RETURN",
        "-A POSTROUTING -m physdev --physdev-is-bridged -j MASQUERADE",
        "-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE",
        "-A POSTROUTING -j CONNMARK --restore-mark",
    ] {
        let r = eval(&s, &ours_with_top(&s, &[], &[rule]));
        assert_eq!(
            r.status,
            Status::CannotDecide,
            "{rule}: {}",
            podsnat::report_text(&r)
        );
        let c = r.check(CheckName::PodToCluster).unwrap();
        assert_eq!(c.rule.as_ref().unwrap().text, rule);
        assert!(podsnat::report_text(&r).contains("warning: cannot decide"));
    }
    // A module the evaluator does not model decides nothing when another
    // part of the rule already excludes pod traffic.
    let t = ours_with_top(
        &s,
        &[],
        &["-A POSTROUTING -s 10.0.0.0/8 -m set --match-set x dst -j MASQUERADE"],
    );
    assert_eq!(eval(&s, &t).status, Status::Ok);
}

#[test]
fn repair_plan_moves_the_exclusion_and_drops_duplicates() {
    let s = spec("classic", &[]);
    let classic = podsnat::exclusion(&s);
    let t = ours_with_top(
        &s,
        &[],
        &[
            "-A POSTROUTING -s 10.0.0.0/8 -m comment --comment \"other\" -j RETURN",
            BROAD,
        ],
    );
    let plan = repair_of(&s, &t).unwrap();
    // Classic mode: the hand fix replaces docker's rule, which goes again.
    assert_eq!(plan.removed, [BROAD.to_owned(), classic.clone()]);
    assert_eq!(plan.position, 2);
    assert_eq!(
        plan.transaction,
        format!(
            "*nat\n-D {}\n-D {}\n-I POSTROUTING 2 {}\nCOMMIT\n",
            &BROAD[3..],
            &classic[3..],
            &classic["-A POSTROUTING ".len()..]
        )
    );
    // Guard: every copy of the block goes (the duplicate jump, docker's
    // rule on top), the block goes back once where docker's rule decided,
    // and PODSNAT-POSTROUTING is rewritten.
    let g = spec("guard", &[]);
    let jump = podsnat::exclusion(&g);
    let t = ours_with_top(&g, &[], &[BROAD, &jump]);
    let plan = repair_of(&g, &t).unwrap();
    assert_eq!(
        plan.removed,
        [
            BROAD.to_owned(),
            jump.clone(),
            jump.clone(),
            BROAD.to_owned()
        ]
    );
    assert_eq!(plan.position, 1);
    assert!(
        plan.transaction.ends_with(&format!(
            "-I POSTROUTING 1 {}\n-I POSTROUTING 2 {}\nCOMMIT\n",
            &jump[15..],
            &BROAD[15..]
        )),
        "{}",
        plan.transaction
    );
    assert!(
        plan.transaction.starts_with(
            "*nat\n:PODSNAT-POSTROUTING - [0:0]\n-A PODSNAT-POSTROUTING -m mark --mark 0x4000/0x4000 -j RETURN\n-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT\n"
        ),
        "{}",
        plan.transaction
    );
    // No drift, no plan.
    let ok = podsnat::nat_table(&g);
    assert!(repair_of(&g, &ok).is_none());
}

/// `verify --file` runs the real `iptables-restore --test` on the file: a
/// rule that reads well but that iptables-restore refuses (a match module
/// that does not exist) is an error, not "cannot decide". `--no-test`
/// leaves the judgement to the parser alone. (A jump to a chain that does
/// not exist is refused by the legacy backend only: measured.)
#[test]
fn verify_file_is_tested_by_iptables_restore() {
    common::require_root_or_fail("verify_file_is_tested_by_iptables_restore");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("nat.rules");
    let text = "*nat\n:POSTROUTING ACCEPT [0:0]\n\
        -A POSTROUTING -s 172.7.21.0/24 -m nosuchmatch --foo 1 -j ACCEPT\n\
        -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE\nCOMMIT\n";
    std::fs::write(&file, text).unwrap();
    let ns = common::Netns::new();
    for backend in &common::BACKENDS {
        let run = |extra: &[&str]| {
            let mut args = vec![
                "verify",
                "--config",
                common::EXAMPLE,
                "--file",
                file.to_str().unwrap(),
                "--iptables-restore",
                backend.restore,
            ];
            args.extend(extra);
            common::exec_in(&ns.name, common::podsnat_bin(), &args)
        };
        let out = run(&[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", backend.name);
        assert!(
            err.contains("rejects it, so a boot would restore nothing"),
            "{}: {err}",
            backend.name
        );
        assert!(
            out.stdout.is_empty(),
            "{}: no verdict on a refused file",
            backend.name
        );
        // Without the test the parser reads it as valid: cannot decide.
        let out = run(&["--no-test"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stdout).contains("cannot decide"));
    }
}

fn spec6(mode: &str, no_masquerade: &[&str]) -> NodeSpec {
    load(RawConfig {
        cluster_cidr_v6: Some("fd00:7::/48".into()),
        pod_subnet_v6: Some("fd00:7:0:21::/64".into()),
        ..settings(mode, no_masquerade)
    })
}

/// IPv6: the same exactness over 128-bit atoms. podsnat's own tables are
/// ok; docker's rule on top is drift for every pod source; a rule that
/// covers half the pod /64 leaves exactly the other half drifting, reported
/// as a range; ip6tables' flannel-style chain with a mark RETURN is decided.
#[test]
fn ipv6_tables_are_decided_exactly() {
    for (mode, extra) in [
        ("guard", &["fd00:96::/108"][..]),
        ("classic", &[][..]),
        ("owner", &["fd00:96::/108"][..]),
    ] {
        let spec = spec6(mode, extra);
        let r = eval(&spec, &podsnat::nat_table(&spec));
        assert_eq!(r.status, Status::Ok, "{mode}: {}", podsnat::report_text(&r));
    }
    let spec = spec6("guard", &[]);
    let broad = "-A POSTROUTING -s fd00:7:0:21::/64 ! -o docker0 -j MASQUERADE";
    let r = eval(&spec, &ours_with_top(&spec, &[], &[broad]));
    assert_eq!(status(&r, CheckName::PodToCluster), Status::Drift);
    assert!(rule_text(&r, CheckName::PodToCluster).contains(broad));
    assert!(
        podsnat::report_text(&r).contains("(inserted above podsnat's exclusion)"),
        "{}",
        podsnat::report_text(&r)
    );

    // Half the pod subnet is excluded by a hand rule above docker's.
    let t = table(
        &[],
        &[
            "-A POSTROUTING -s fd00:7:0:21::/65 -d fd00:7::/48 -j RETURN",
            broad,
        ],
    );
    let r = eval(&spec, &t);
    let c = r.check(CheckName::PodToCluster).unwrap();
    assert_eq!(c.status, Status::Drift);
    assert_eq!(
        c.sources,
        ["fd00:7:0:21:8000::/65"],
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(status(&r, CheckName::PodToOutside), Status::Ok);

    // flannel's IPv6 chain (FLANNEL-POSTRTG in ip6tables), with its mark.
    let t = table(
        &["FLANNEL-POSTRTG"],
        &[
            "-A POSTROUTING -m comment --comment \"flanneld masq\" -j FLANNEL-POSTRTG",
            "-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s fd00:7:0:21::/64 -d fd00:7::/48 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s fd00:7::/48 -d fd00:7::/48 -m comment --comment \"flanneld masq\" -j RETURN",
            "-A FLANNEL-POSTRTG -s fd00:7::/48 ! -d ff00::/8 -m comment --comment \"flanneld masq\" -j MASQUERADE --random-fully",
        ],
    );
    let r = eval(&spec, &t);
    assert_eq!(r.status, Status::Ok, "{}", podsnat::report_text(&r));

    // Unmodeled matches are "cannot decide" on IPv6 too; an IPv6 set's
    // contents (`ipset save`, `family inet6`) are modeled like IPv4's.
    let conntrack = "-A POSTROUTING -m conntrack --ctstate DNAT -j MASQUERADE";
    let r = eval(&spec, &ours_with_top(&spec, &[], &[conntrack]));
    assert_eq!(
        r.status,
        Status::CannotDecide,
        "{}",
        podsnat::report_text(&r)
    );
    assert_eq!(rule_text(&r, CheckName::PodToCluster), conntrack);
    let by_set = "-A POSTROUTING -m set --match-set pods6 src -m set ! --match-set cluster6 dst -j MASQUERADE";
    let t = table(&[], &[by_set]);
    let sets = podsnat::Sets::parse(
        "create pods6 hash:net family inet6 hashsize 1024 maxelem 65536
         add pods6 fd00:7::/48
         create cluster6 hash:net family inet6 hashsize 1024 maxelem 65536
         add cluster6 fd00:7::/48
",
    )
    .unwrap();
    let tables = podsnat::parse_rules(&t).unwrap();
    let r = podsnat::evaluate_with(&spec, &tables[0], &sets).unwrap();
    assert_eq!(r.status, Status::Ok, "{}", podsnat::report_text(&r));
    assert_eq!(rule_text(&r, CheckName::PodToOutside), by_set);

    // An IPv4 address in an IPv6 table is malformed, never a verdict.
    let t = table(&[], &["-A POSTROUTING -s 172.7.21.0/24 -j MASQUERADE"]);
    let tables = podsnat::parse_rules(&t).unwrap();
    let err = podsnat::evaluate(&spec, &tables[0]).unwrap_err();
    assert_eq!(
        err.why,
        podsnat::RuleError::NotIpv6("172.7.21.0/24".into()),
        "{err}"
    );
}

/// The repair judges the table with the same ipsets as the report: a
/// masquerade by set above podsnat's exclusion is drift in both, and the
/// plan puts the exclusion above it (before, the plan read the table
/// without the sets, could not decide that rule and planned nothing).
#[test]
fn repair_plan_reads_the_ipsets_the_report_read() {
    let g = spec("guard", &[]);
    let by_set = "-A POSTROUTING -m set --match-set pods src ! -o docker0 -j MASQUERADE";
    let t = ours_with_top(&g, &[], &[by_set]);
    let sets = podsnat::Sets::parse(
        "create pods hash:net family inet hashsize 1024 maxelem 65536
         add pods 172.7.21.0/24
",
    )
    .unwrap();
    let tables = podsnat::parse_rules(&t).unwrap();
    let r = podsnat::evaluate_with(&g, &tables[0], &sets).unwrap();
    assert_eq!(
        r.check(CheckName::PodToCluster).unwrap().status,
        Status::Drift,
        "{}",
        podsnat::report_text(&r)
    );
    let plan = repair_with(&g, &t, &sets).expect("the drift the report names is repaired");
    assert_eq!(plan.position, 1, "{}", plan.transaction);
    let exclusion = podsnat::exclusion(&g);
    assert!(
        plan.transaction.contains(&format!(
            "-I POSTROUTING 1 {}",
            &exclusion["-A POSTROUTING ".len()..]
        )),
        "{}",
        plan.transaction
    );
}

/// The repair judges with the nftables layer the report read: docker 29's
/// `docker-bridges` masquerading at srcnat is drift in the report, and the
/// repair says moving podsnat's rules would not fix it, naming the table
/// (before, it judged iptables' table alone, found no drift and planned
/// nothing, so the command said "not possible at runtime" of a drift it
/// could have named). podsnat's own anchor is not what the iptables table
/// is judged with: with the anchor deciding, the report is ok and nothing
/// is planned; without it, docker's rule on top is planned away.
#[test]
fn repair_plan_reads_the_nft_layer_the_report_read() {
    let g = spec("guard", &[]);
    let chain = |table: &str, prio: i64| {
        format!(
            r#"{{"chain": {{"family": "ip", "table": "{table}", "name": "nat-POSTROUTING", "handle": 1, "type": "nat", "hook": "postrouting", "prio": {prio}, "policy": "accept"}}}}"#
        )
    };
    let masq = r#"{"rule": {"family": "ip", "table": "docker-bridges", "chain": "nat-POSTROUTING", "handle": 2, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.7.21.0", "len": 24}}}}, {"masquerade": null}]}}"#;
    let ruleset = podsnat::Ruleset::parse(&format!(
        r#"{{"nftables": [{}, {masq}]}}"#,
        chain("docker-bridges", 100)
    ))
    .unwrap();
    let text = podsnat::nat_table(&g);
    let tables = podsnat::parse_rules(&text).unwrap();
    let sets = podsnat::Sets::default();
    let layers = podsnat::Layers {
        table: &tables[0],
        sets: &sets,
        nft: Some(podsnat::NftLayer::new(&ruleset, false)),
        forward: None,
        cni_masquerades: None,
    };
    let report = podsnat::evaluate_layers(&g, layers).unwrap();
    assert_eq!(status(&report, CheckName::PodToCluster), Status::Drift);
    let err = podsnat::plan_repair(&g, &report, layers).unwrap_err();
    let err = err.to_string();
    assert!(
        err.starts_with("moving podsnat's exclusion would not fix the drift"),
        "{err}"
    );
    assert!(err.contains("table ip docker-bridges"), "{err}");

    // podsnat's anchor decides first: ok, nothing to plan, even with
    // docker's rule on top of iptables' POSTROUTING.
    let anchor = podsnat::Ruleset::parse(
        r#"{"nftables": [{"chain": {"family": "ip", "table": "podsnat", "name": "postrouting", "handle": 1, "type": "nat", "hook": "postrouting", "prio": 99, "policy": "accept"}}, {"rule": {"family": "ip", "table": "podsnat", "chain": "postrouting", "handle": 2, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16384]}, "right": 16384}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "podsnat", "chain": "postrouting", "handle": 3, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "docker0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "172.7.21.0", "len": 24}}}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "172.7.0.0", "len": 16}}}}, {"snat": {"family": "ip", "addr": {"payload": {"protocol": "ip", "field": "saddr"}}}}]}}]}"#
    )
    .unwrap();
    let text = ours_with_top(&g, &[], &[BROAD]);
    let tables = podsnat::parse_rules(&text).unwrap();
    let layers = podsnat::Layers {
        table: &tables[0],
        sets: &sets,
        nft: Some(podsnat::NftLayer::new(&anchor, false)),
        forward: None,
        cni_masquerades: None,
    };
    let report = podsnat::evaluate_layers(&g, layers).unwrap();
    assert_eq!(
        status(&report, CheckName::PodToCluster),
        Status::Ok,
        "{}",
        podsnat::report_text(&report)
    );
    assert_eq!(
        report.status,
        Status::Ok,
        "{}",
        podsnat::report_text(&report)
    );
    assert!(podsnat::plan_repair(&g, &report, layers).unwrap().is_none());
    // The anchor gone: docker's rule on top is drift, and is planned away
    // with the anchor's absence, as the pin would.
    let empty = podsnat::Ruleset::parse(r#"{"nftables": []}"#).unwrap();
    let layers = podsnat::Layers {
        nft: Some(podsnat::NftLayer::new(&empty, false)),
        forward: None,
        ..layers
    };
    let report = podsnat::evaluate_layers(&g, layers).unwrap();
    let plan = podsnat::plan_repair(&g, &report, layers).unwrap().unwrap();
    assert_eq!(plan.position, 1, "{}", plan.transaction);
}

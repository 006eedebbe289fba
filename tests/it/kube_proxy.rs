//! kube-proxy's masquerade on the same node as podsnat: a pod on host A
//! reaches a ClusterIP whose one endpoint is pod B on host B. With
//! `masquerade-all` kube-proxy marks the connection (KUBE-MARK-MASQ) and
//! KUBE-POSTROUTING masquerades it: pod B sees host A's address, in every
//! mode, on both backends, with kube-proxy's jump above podsnat's rules (as
//! kube-proxy inserts it after boot) or below them (as after a pin or a
//! restore that put podsnat's block on top). Without masquerade-all the
//! connection is not marked and keeps pod A's IP.
//!
//! The stand-in is kube-proxy's iptables mode as it writes the nat table
//! (kubernetes/kubernetes, pkg/proxy/iptables/proxier.go, syncProxyRules),
//! as iptables-save prints it:
//! - the jumps `-A PREROUTING/OUTPUT -m comment --comment "kubernetes
//!   service portals" -j KUBE-SERVICES` and `-A POSTROUTING -m comment
//!   --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING`, which it
//!   inserts at the top (`-I`);
//! - KUBE-POSTROUTING: `-m mark ! --mark 0x4000/0x4000 -j RETURN`, then
//!   `-j MARK --xor-mark 0x4000` (saved as `--set-xmark 0x4000/0x0`), then
//!   `-m comment --comment "kubernetes service traffic requiring SNAT" -j
//!   MASQUERADE --random-fully`;
//! - KUBE-MARK-MASQ: `-j MARK --or-mark 0x4000` (saved as `--set-xmark
//!   0x4000/0x4000`);
//! - per service port: `-A KUBE-SERVICES -d VIP/32 -p tcp -m comment
//!   --comment "NS/SVC:PORT cluster IP" -m tcp --dport P -j KUBE-SVC-…`;
//!   in KUBE-SVC-… the masquerade rule, with masqueradeAll the same match
//!   without a source, otherwise with `! -s CLUSTER_CIDR`; then the jump to
//!   the endpoint's KUBE-SEP-…, which holds the hairpin mark (`-s EP/32 -j
//!   KUBE-MARK-MASQ`) and `-j DNAT --to-destination EP:P`.
//!
//! The chain names' hashes here are made up; kube-proxy derives them from
//! the service's name.

use crate::common::lab::Lab;
use crate::common::{self, BACKENDS, Backend};

const NODE_A: &str = "10.4.7.21";
const POD_A: &str = "172.7.21.2";
const POD_B: &str = "172.7.22.2";
const VIP: &str = "10.96.0.10";

/// kube-proxy's nat rules for one ClusterIP service (port 8080, the lab's
/// probe port) with one endpoint, pod B; its POSTROUTING jump `on_top` or
/// appended below podsnat's rules.
fn kube_rules(masquerade_all: bool, on_top: bool) -> String {
    let svc = "KUBE-SVC-WEBQ7MF2BUOAZTXC";
    let sep = "KUBE-SEP-PODB4NXKWZ3HJ2LE";
    let cluster_ip =
        "-p tcp -m comment --comment \"default/web:http cluster IP\" -m tcp --dport 8080";
    let masq = if masquerade_all {
        format!("-A {svc} -d {VIP}/32 {cluster_ip} -j KUBE-MARK-MASQ")
    } else {
        format!("-A {svc} ! -s 172.7.0.0/16 -d {VIP}/32 {cluster_ip} -j KUBE-MARK-MASQ")
    };
    let post = "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING";
    let post = if on_top {
        format!("-I POSTROUTING 1 {post}")
    } else {
        format!("-A POSTROUTING {post}")
    };
    format!(
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:{svc} - [0:0]\n:{sep} - [0:0]\n\
         -I PREROUTING 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         {post}\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-SERVICES -d {VIP}/32 {cluster_ip} -j {svc}\n\
         {masq}\n\
         -A {svc} -m comment --comment \"default/web:http -> {POD_B}:8080\" -j {sep}\n\
         -A {sep} -s {POD_B}/32 -m comment --comment \"default/web:http\" -j KUBE-MARK-MASQ\n\
         -A {sep} -p tcp -m comment --comment \"default/web:http\" -m tcp -j DNAT --to-destination {POD_B}:8080\n\
         COMMIT\n"
    )
}

/// One node setting: podsnat's table (and anchor) restored, then kube-
/// proxy's rules; the connections and verify.
fn check(lab: &Lab, backend: &Backend, dir: &std::path::Path, mode: &str, anchor: bool) {
    let a = lab.ns("a");
    let mut flags = vec!["--config", common::EXAMPLE, "--mode", mode];
    if !anchor {
        flags.push("--no-anchor");
    }
    let table = common::render_example(&flags[2..]);
    let file = dir.join(format!("nat-{mode}"));
    std::fs::write(&file, &table).unwrap();
    let nft_file = dir.join("anchor.nft");
    if anchor {
        let mut args = vec!["render", "--anchor"];
        args.extend(&flags);
        let (code, text) = common::podsnat_in(&a, &args);
        assert_eq!(code, 0, "render --anchor: {text}");
        std::fs::write(&nft_file, text).unwrap();
    }
    let save = format!("--iptables-save={}", backend.save);
    // docker's settings as the mode needs them (verify reads them).
    let daemon_json = dir.join(format!("daemon-{mode}.json"));
    let ip_masq = mode != "owner";
    std::fs::write(&daemon_json, format!("{{\"ip-masq\": {ip_masq}}}\n")).unwrap();
    for masquerade_all in [true, false] {
        for on_top in [true, false] {
            let ctx = format!(
                "[{} {mode} anchor={anchor} masquerade-all={masquerade_all} kube-proxy on top={on_top}]",
                backend.name
            );
            common::ok_in(
                &a,
                backend.restore,
                &["-w", "5", "-T", "nat", file.to_str().unwrap()],
            );
            let _ = common::exec_in(&a, "nft", &["delete", "table", "ip", "podsnat"]);
            if anchor {
                common::ok_in(&a, "nft", &["-f", nft_file.to_str().unwrap()]);
            }
            let kube = dir.join("kube");
            std::fs::write(&kube, kube_rules(masquerade_all, on_top)).unwrap();
            common::ok_in(
                &a,
                backend.restore,
                &["-w", "5", "--noflush", kube.to_str().unwrap()],
            );
            let want = if masquerade_all { NODE_A } else { POD_A };
            assert_eq!(
                lab.seen_via("pa", "pb", POD_B, VIP),
                want,
                "{ctx}: pod A → ClusterIP → pod B\n{}",
                common::ok_in(&a, backend.save, &["-t", "nat"])
            );
            assert_eq!(
                lab.seen("pa", "pb", POD_B),
                POD_A,
                "{ctx}: pod A → pod B directly keeps pod A's IP"
            );
            let mut args = vec![
                "verify",
                save.as_str(),
                "--docker-config",
                daemon_json.to_str().unwrap(),
            ];
            args.extend(&flags);
            let (code, text) = common::podsnat_in(&a, &args);
            assert_eq!(code, 0, "{ctx}: verify:\n{text}");
            assert!(
                text.contains("ok: pod→cluster traffic with the masquerade mark (kube-proxy's) is masqueraded by "),
                "{ctx}: {text}"
            );
            if mode == "classic" || anchor || on_top || !masquerade_all {
                continue;
            }
            // The RETURN is what makes it work: without it, kube-proxy's
            // jump below podsnat's block never sees the marked connection.
            common::ok_in(
                &a,
                backend.iptables,
                &["-w", "5", "-t", "nat", "-D", "PODSNAT-POSTROUTING", "1"],
            );
            assert_eq!(
                lab.seen_via("pa", "pb", POD_B, VIP),
                POD_A,
                "{ctx}: without podsnat's mark RETURN"
            );
            let (code, text) = common::podsnat_in(&a, &args);
            assert_eq!(code, 2, "{ctx}: verify without the RETURN:\n{text}");
            assert!(
                text.contains("drift: pod→cluster traffic with the masquerade mark (kube-proxy's) keeps the pod source IP"),
                "{ctx}: {text}"
            );
        }
    }
}

#[test]
fn kube_proxy_masquerades_what_it_marked_in_every_mode() {
    let tools = ["socat", "ss", "timeout", "bash", "nft", "ip"];
    common::require_root_or_fail("kube_proxy_masquerades_what_it_marked_in_every_mode");
    common::require(
        "kube_proxy_masquerades_what_it_marked_in_every_mode",
        true,
        &tools,
    );
    let tmp = tempfile::tempdir().unwrap();
    for (j, backend) in BACKENDS.iter().enumerate() {
        let lab = Lab::up(
            "docker0",
            "172.7.21.0/24",
            "172.7.22.0/24",
            None,
            &format!("kp{j}"),
        );
        for mode in ["guard", "owner", "classic"] {
            check(&lab, backend, tmp.path(), mode, false);
        }
        check(&lab, backend, tmp.path(), "guard", true);
    }
}

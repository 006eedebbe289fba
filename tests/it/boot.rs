//! The proof that the default install works on a booting node: a real
//! systemd as PID 1 in a systemd-nspawn container with its own network
//! namespace. podsnat's file and units are installed with the real binary
//! into the container's root (`podsnat write`, `podsnat install-unit` with
//! no flags, podsnat at /usr/sbin/podsnat). A stand-in docker.service runs
//! tests/docker-standin.sh, which does to the nat table what the real
//! dockerd does at every start with a stored network (rebuilt DOCKER chain,
//! its broad rule deleted and inserted on top, a port map); tests/it/docker.rs
//! compares the two. A collector unit records the table and the units at
//! boot, runs `systemctl restart docker.service`, records them again, then
//! powers off. `podsnat verify` inside the container judges the table.
//!
//! The cached Debian rootfs (common::boot::cache_dir) is never written: each boot
//! runs on an overlayfs whose upper layer is a temp dir, mounted inside a
//! private mount (and network) namespace of the test's own.

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

const SUBNET: &str = "172.7.21.0/24";
/// The restart-policy container's address the stand-in maps port 8080 to.
const CONTAINER: &str = "172.7.21.128";
/// A dual-stack node's IPv6 networks and the container's IPv6 address.
const SUBNET6: &str = "fd00:7:0:21::/64";
const CONTAINER6: &str = "fd00:7:0:21::80";
const DUAL: [&str; 4] = [
    "--cluster-cidr-v6",
    "fd00:7::/48",
    "--pod-subnet-v6",
    SUBNET6,
];
use crate::common::EXAMPLE;

/// One boot's setup.
struct Scenario {
    name: &'static str,
    /// Extra args for `podsnat write` (after --config EXAMPLE).
    write: Option<&'static [&'static str]>,
    /// Extra args for `podsnat install-unit`.
    install: &'static [&'static str],
    /// "nft" or "legacy": the stand-in and the collector use this backend.
    backend: &'static str,
    mask: bool,
    /// `--mode classic` etc., for `podsnat verify` in the collector.
    verify: &'static [&'static str],
    /// Dual stack: the stand-in docker does its start on ip6tables too.
    dual: bool,
}

/// What the collector recorded at one moment: at boot, or after
/// `systemctl restart docker.service`.
struct Moment {
    nat: String,
    /// The IPv6 nat table (empty on an IPv4 node).
    nat6: String,
    show: HashMap<String, HashMap<String, String>>,
    /// `podsnat verify`'s exit code and output.
    verify: (String, String),
    /// The textfile directory's podsnat.prom and podsnat-pin.prom
    /// (`install-unit --metrics`), as the units left them.
    metrics: (String, String),
}

/// What the collector brought out of the container.
struct Boot {
    /// Whether nftables.conf flushes the ruleset, and `nft list tables`
    /// after `systemctl restart nftables`, then after `reload`.
    nftables_restart: (String, String),
    boot: Moment,
    restart: Moment,
    journal: String,
    status: String,
}

impl Moment {
    fn prop(&self, unit: &str, key: &str) -> &str {
        self.show
            .get(unit)
            .and_then(|p| p.get(key))
            .map_or("", String::as_str)
    }
    fn mono(&self, unit: &str, key: &str) -> u64 {
        self.prop(unit, key).parse().unwrap_or(0)
    }
}

fn parse_show(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut units = HashMap::new();
    for block in text.split("\n\n") {
        let props: HashMap<String, String> = block
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        if let Some(id) = props.get("Id") {
            units.insert(id.clone(), props);
        }
    }
    units
}

/// Units that must exist for the ordering to mean anything: flanneld
/// (a oneshot; flannel's own rules live in its own chain) and docker (the
/// stand-in, run again by every restart).
fn stand_in_units(ipt: &str, ipt6: Option<&str>) -> [(&'static str, String); 2] {
    // A dual-stack docker does the same to the ip6tables nat table.
    let (start6, stop6) = match ipt6 {
        Some(ipt6) => (
            format!(
                "ExecStart=/bin/sh /usr/local/sbin/docker-standin start {ipt6} {SUBNET6} docker0 {CONTAINER6}\n"
            ),
            format!(
                "ExecStop=/bin/sh /usr/local/sbin/docker-standin stop {ipt6} {SUBNET6} docker0 {CONTAINER6}\n"
            ),
        ),
        None => (String::new(), String::new()),
    };
    [
        (
            "flanneld.service",
            "[Unit]\nDescription=stand-in for flanneld\n\
             [Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\
             [Install]\nWantedBy=multi-user.target\n"
                .to_owned(),
        ),
        (
            "docker.service",
            format!(
                "[Unit]\nDescription=stand-in for dockerd's start (tests/docker-standin.sh)\n\
                 After=network.target\n\
                 [Service]\nType=oneshot\nRemainAfterExit=yes\n\
                 ExecStart=/bin/sh /usr/local/sbin/docker-standin start {ipt} {SUBNET} docker0 {CONTAINER}\n\
                 {start6}\
                 ExecStop=/bin/sh /usr/local/sbin/docker-standin stop {ipt} {SUBNET} docker0 {CONTAINER}\n\
                 {stop6}\
                 [Install]\nWantedBy=multi-user.target\n"
            ),
        ),
    ]
}

/// node_exporter's textfile directory in the booted node (Debian's).
const TEXTFILE: &str = "/var/lib/prometheus/node-exporter";

const UNITS: &str = "podsnat.service podsnat-anchor.service flanneld.service docker.service podsnat-pin.service podsnat-verify.service";

/// The collector's script: record at boot, restart docker, record again.
fn collector_script(save: &str, save6: &str, verify: &str) -> String {
    let props = "Id,ActiveState,SubState,Result,ExecMainStatus,ConditionResult,\
                 ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic";
    format!(
        r#"#!/bin/sh
# Waits until systemd has no jobs left (a docker start pulls in the pin).
settle() {{
  for i in $(seq 100); do [ -z "$(systemctl list-jobs --no-legend)" ] && break; sleep 0.1; done
}}
record() {{
  {save} -t nat > /podsnat-out/$1.nat
  {save6} -t nat > /podsnat-out/$1.nat6
  systemctl show -p {props} {UNITS} > /podsnat-out/$1.show
  /usr/sbin/podsnat verify --config /etc/podsnat/config.toml {verify} --iptables-save {save} --ip6tables-save {save6} > /podsnat-out/$1.verify 2>&1
  echo $? > /podsnat-out/$1.rc
  cat {TEXTFILE}/podsnat.prom > /podsnat-out/$1.prom 2>/dev/null || true
  cat {TEXTFILE}/podsnat-pin.prom > /podsnat-out/$1.pin.prom 2>/dev/null || true
}}
systemctl is-system-running --wait
settle
record boot
systemctl restart docker.service
settle
record restart
# Debian's /etc/nftables.conf starts with `flush ruleset`: a restart of
# nftables.service removes every table, podsnat's anchor too.
grep -q '^flush ruleset' /etc/nftables.conf && echo flushes > /podsnat-out/nftables.conf
systemctl restart nftables.service
settle
nft list tables > /podsnat-out/tables.after-nftables-restart 2>&1
systemctl reload nftables.service
settle
nft list tables > /podsnat-out/tables.after-nftables-reload 2>&1
systemctl status --no-pager podsnat.service > /podsnat-out/status 2>&1
journalctl -b --no-pager -o short-monotonic -u flanneld.service -u docker.service -u podsnat.service -u podsnat-pin.service -u podsnat-verify.service > /podsnat-out/journal
systemctl poweroff
"#
    )
}

const COLLECTOR_UNIT: &str = "[Unit]\nDescription=boot-test collector\nAfter=multi-user.target\n\
    [Service]\nType=exec\nExecStart=/bin/sh /usr/local/sbin/podsnat-collect\n\
    [Install]\nWantedBy=multi-user.target\n";

fn boot(rootfs: &Path, s: &Scenario) -> Boot {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["upper", "work", "merged", "out", "units", "sbin"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    let b = s.backend;
    let (ipt, save) = (
        format!("/usr/sbin/iptables-{b}"),
        format!("/usr/sbin/iptables-{b}-save"),
    );
    let (ipt6, save6) = (
        format!("/usr/sbin/ip6tables-{b}"),
        format!("/usr/sbin/ip6tables-{b}-save"),
    );
    for (name, text) in stand_in_units(&ipt, s.dual.then_some(ipt6.as_str())) {
        fs::write(t.join("units").join(name), text).unwrap();
    }
    fs::write(t.join("units/podsnat-collect.service"), COLLECTOR_UNIT).unwrap();
    fs::write(
        t.join("sbin/podsnat-collect"),
        collector_script(&save, &save6, &s.verify.join(" ")),
    )
    .unwrap();
    fs::copy(common::STANDIN, t.join("sbin/docker-standin")).unwrap();

    let bin = common::podsnat_bin();
    let m = t.join("merged");
    let q = |p: &Path| format!("'{}'", p.display());
    let words = |a: &[&str]| {
        a.iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut script = format!(
        "set -eu\n\
         expect2() {{ rc=0; \"$@\" || rc=$?; [ $rc -eq 2 ] || {{ echo \"exit $rc from $*\" >&2; exit 1; }}; }}\n\
         mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn\n\
         mount -t overlay overlay -o lowerdir={rootfs},upperdir={upper},workdir={work} {m}\n\
         install -D -m 0755 {bin} {m}/usr/sbin/podsnat\n\
         install -D -m 0644 {ex} {m}/etc/podsnat/config.toml\n\
         install -m 0755 {sbin}/* {m}/usr/local/sbin/\n\
         mkdir -p {m}{TEXTFILE}\n",
        rootfs = rootfs.display(),
        upper = t.join("upper").display(),
        work = t.join("work").display(),
        m = q(&m),
        bin = q(&bin),
        ex = q(Path::new(EXAMPLE)),
        sbin = q(&t.join("sbin")),
    );
    if let Some(extra) = s.write {
        // The namespace's own (empty) netfilter answers the --test.
        script += &format!(
            "expect2 {bin} write --config {ex} --root {m} --iptables-restore iptables-{b}-restore --ip6tables-restore ip6tables-{b}-restore {extra}\n",
            bin = q(&bin),
            ex = q(Path::new(EXAMPLE)),
            m = q(&m),
            b = s.backend,
            extra = words(extra),
        );
    }
    script += &format!(
        "expect2 {bin} install-unit --root {m} {extra}\n\
         cp {units}/*.service {m}/etc/systemd/system/\n\
         for u in flanneld docker podsnat-collect; do\n\
           ln -s /etc/systemd/system/$u.service {m}/etc/systemd/system/multi-user.target.wants/\n\
         done\n",
        bin = q(&bin),
        m = q(&m),
        extra = words(s.install),
        units = q(&t.join("units")),
    );
    if s.mask {
        script += &format!(
            "ln -sf /dev/null {}/etc/systemd/system/podsnat.service\n",
            q(&m)
        );
    }
    script += &format!(
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout 90 systemd-nspawn --boot --directory={m} \
         --private-network --register=no --keep-unit --console=read-only --bind={out}:/podsnat-out\n",
        m = q(&m),
        out = q(&t.join("out"))
    );

    let run = common::boot::in_private_namespaces(&script);
    let read = |f: &str| fs::read_to_string(t.join("out").join(f)).unwrap_or_default();
    assert!(
        run.status.success() && !read("restart.nat").is_empty(),
        "{}: the boot did not complete ({}):\n{}\n{}\n--- journal\n{}",
        s.name,
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
        read("journal")
    );
    let moment = |name: &str| Moment {
        nat: read(&format!("{name}.nat")),
        nat6: read(&format!("{name}.nat6")),
        show: parse_show(&read(&format!("{name}.show"))),
        verify: (
            read(&format!("{name}.rc")).trim().to_owned(),
            read(&format!("{name}.verify")),
        ),
        metrics: (
            read(&format!("{name}.prom")),
            read(&format!("{name}.pin.prom")),
        ),
    };
    Boot {
        nftables_restart: (
            read("nftables.conf"),
            read("tables.after-nftables-restart") + &read("tables.after-nftables-reload"),
        ),
        boot: moment("boot"),
        restart: moment("restart"),
        journal: read("journal"),
        status: read("status"),
    }
}

/// The claim under test, at one moment: podsnat.service restored the table
/// before docker started and succeeded; docker's port map is there; the
/// pin ran after docker's (latest) start and succeeded; `podsnat verify`
/// finds pod→cluster traffic keeping its IP and egress masqueraded, which
/// needs podsnat's exclusion above docker's rule.
fn kept(m: &Moment) -> Result<(), String> {
    let state = [
        m.prop("podsnat.service", "ActiveState"),
        m.prop("podsnat.service", "SubState"),
        m.prop("podsnat.service", "Result"),
        m.prop("podsnat.service", "ExecMainStatus"),
    ];
    if state != ["active", "exited", "success", "0"] {
        return Err(format!(
            "podsnat.service is {state:?}, not active (exited) with status 0"
        ));
    }
    let restored = m.mono("podsnat.service", "ExecMainExitTimestampMonotonic");
    let flannel = m.mono("flanneld.service", "ExecMainExitTimestampMonotonic");
    let docker_start = m.mono("docker.service", "ExecMainStartTimestampMonotonic");
    if flannel == 0 || restored < flannel {
        return Err(format!(
            "the restore ended at {restored} µs, before flanneld at {flannel} µs"
        ));
    }
    if m.prop("docker.service", "Result") != "success" {
        return Err("the docker stand-in failed".into());
    }
    let pin = "podsnat-pin.service";
    let pin_start = m.mono(pin, "ExecMainStartTimestampMonotonic");
    let pin_status = m.prop(pin, "ExecMainStatus");
    if m.prop(pin, "Result") != "success" || !["0", "2"].contains(&pin_status) {
        return Err(format!(
            "{pin} did not succeed: {:?} status {pin_status}",
            m.prop(pin, "Result")
        ));
    }
    if pin_start < docker_start {
        return Err(format!(
            "{pin} last ran at {pin_start} µs, before docker's start at {docker_start} µs"
        ));
    }
    if !m.nat.contains(&format!(
        "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination {CONTAINER}:80"
    )) {
        return Err("docker's port map is gone".into());
    }
    if m.nat6.contains("PODSNAT")
        && !m.nat6.contains(&format!(
            "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [{CONTAINER6}]:80"
        ))
    {
        return Err("docker's IPv6 port map is gone".into());
    }
    if m.verify.0 != "0" {
        return Err(format!(
            "podsnat verify exited {}: {}",
            m.verify.0, m.verify.1
        ));
    }
    Ok(())
}

/// µs from the end of docker's start (the stand-in's insert) to the end of
/// the pin: how long docker's rule stood above podsnat's exclusion.
fn window(m: &Moment) -> u64 {
    m.mono("podsnat-pin.service", "ExecMainExitTimestampMonotonic")
        .saturating_sub(m.mono("docker.service", "ExecMainExitTimestampMonotonic"))
}

fn ctx(name: &str, b: &Boot) -> String {
    format!(
        "{name}\n--- nat at boot\n{}{}--- verify at boot\n{}--- nat after restart\n{}{}--- verify after restart\n{}--- journal\n{}--- status\n{}",
        b.boot.nat,
        b.boot.nat6,
        b.boot.verify.1,
        b.restart.nat,
        b.restart.nat6,
        b.restart.verify.1,
        b.journal,
        b.status
    )
}

fn scenario(name: &'static str, backend: &'static str) -> Scenario {
    Scenario {
        name,
        write: Some(&[]),
        install: &[],
        backend,
        mask: false,
        verify: &[],
        dual: false,
    }
}

#[test]
fn default_install_keeps_the_exclusion_at_boot_and_after_a_docker_restart() {
    let tools = [
        "debootstrap",
        "systemd-nspawn",
        "unshare",
        "timeout",
        "mount",
    ];
    let name = "default_install_keeps_the_exclusion_at_boot_and_after_a_docker_restart";
    common::require_root_or_fail(name);
    common::require(name, true, &tools);
    let rootfs = common::boot::rootfs();

    let positive = [
        scenario("default install, guard, nft", "nft"),
        Scenario {
            install: &["--iptables-restore", "/usr/sbin/iptables-legacy-restore"],
            ..scenario("guard, legacy", "legacy")
        },
        Scenario {
            write: Some(&["--mode", "classic"]),
            verify: &["--mode", "classic"],
            ..scenario("classic, nft (the pin deletes docker's rule)", "nft")
        },
        Scenario {
            install: &["--verify-timer", "--metrics", TEXTFILE],
            ..scenario(
                "guard, nft, with podsnat-verify.service writing metrics",
                "nft",
            )
        },
        // Dual stack: podsnat.service restores both files, the pin pins
        // both, and verify judges both tables (exit 0 only if both hold).
        Scenario {
            write: Some(&DUAL),
            install: &[
                "--family",
                "dual",
                "--iptables-restore",
                "/usr/sbin/iptables-legacy-restore",
            ],
            verify: &DUAL,
            dual: true,
            ..scenario("dual stack, guard, legacy", "legacy")
        },
    ];
    for s in &positive {
        let b = boot(&rootfs, s);
        eprintln!("=== {}", ctx(s.name, &b)); // shown with --nocapture or on failure
        for (when, m) in [("at boot", &b.boot), ("after a docker restart", &b.restart)] {
            if let Err(e) = kept(m) {
                panic!("{} {when}: {e}\n{}", s.name, ctx(s.name, &b));
            }
        }
        if !s.install.contains(&"--no-anchor") {
            // podsnat-anchor.service loaded the anchor before docker started.
            let m = &b.boot;
            let a = "podsnat-anchor.service";
            assert_eq!(
                [m.prop(a, "Result"), m.prop(a, "ExecMainStatus")],
                ["success", "0"],
                "{}:\n{}",
                s.name,
                ctx(s.name, &b)
            );
            assert!(
                m.mono(a, "ExecMainExitTimestampMonotonic") > 0
                    && m.mono(a, "ExecMainExitTimestampMonotonic")
                        <= m.mono("docker.service", "ExecMainStartTimestampMonotonic"),
                "{}: the anchor was not loaded before docker started:\n{}",
                s.name,
                ctx(s.name, &b)
            );
            for m in [&b.boot, &b.restart] {
                assert!(
                    m.verify.1.contains("anchor table ip podsnat is loaded"),
                    "{}: {}",
                    s.name,
                    m.verify.1
                );
            }
            // After `systemctl restart nftables` and `reload` (whose config
            // flushes the ruleset), PartOf= and ReloadPropagatedFrom= loaded
            // the anchor again.
            let (conf, tables) = &b.nftables_restart;
            assert_eq!(conf.trim(), "flushes", "{}: the test's premise", s.name);
            assert_eq!(
                tables.matches("table ip podsnat").count(),
                2,
                "{}: the anchor is not back after an nftables restart and a reload: {tables}\n{}",
                s.name,
                ctx(s.name, &b)
            );
        }
        if s.install.contains(&"--verify-timer") {
            // Pulled in by docker's start too, after the pin: nothing left
            // to repair, exit 0, in podsnat.service's sandbox.
            for (when, m) in [("at boot", &b.boot), ("after a docker restart", &b.restart)] {
                let v = "podsnat-verify.service";
                assert_eq!(
                    [m.prop(v, "Result"), m.prop(v, "ExecMainStatus")],
                    ["success", "0"],
                    "{} {when}:\n{}",
                    s.name,
                    ctx(s.name, &b)
                );
                assert!(
                    m.mono(v, "ExecMainStartTimestampMonotonic")
                        >= m.mono("podsnat-pin.service", "ExecMainExitTimestampMonotonic"),
                    "{when}: verify ran before the pin finished"
                );
            }
        }
        if s.install.contains(&"--metrics") {
            // The units wrote node_exporter's files from their sandbox, at
            // boot and again after docker's restart (the run's duration
            // makes every verify's file differ).
            for (when, m) in [("at boot", &b.boot), ("after a docker restart", &b.restart)] {
                let (verify, pin) = &m.metrics;
                assert!(
                    verify.contains("\npodsnat_exclusion_ok{family=\"ipv4\"} 1\n")
                        && verify.contains("\npodsnat_status{family=\"ipv4\",status=\"ok\"} 1\n"),
                    "{} {when}: podsnat.prom:\n{verify}\n{}",
                    s.name,
                    ctx(s.name, &b)
                );
                assert!(
                    pin.contains("\npodsnat_pins_total{family=\"ipv4\"} "),
                    "{} {when}: podsnat-pin.prom:\n{pin}",
                    s.name
                );
            }
            assert_ne!(
                b.boot.metrics.0, b.restart.metrics.0,
                "{}: docker's restart did not rewrite podsnat.prom",
                s.name
            );
        }
        eprintln!(
            "{}: docker's rule stood above the exclusion for {} µs at boot, {} µs after the restart",
            s.name,
            window(&b.boot),
            window(&b.restart)
        );
    }

    // Negative controls: the same check must fail, for the reason named.
    let negative = [
        // The old ordering: a whole-table restore after docker wipes the
        // port map docker made.
        Scenario {
            install: &[
                "--after",
                "flanneld.service",
                "--after",
                "docker.service",
                "--before",
                "kubelet.service",
            ],
            ..scenario("old After=docker ordering", "nft")
        },
        // Without the pin, docker's start leaves its rule on top.
        // The iptables-only path (no anchor): the pin is all that moves
        // podsnat's rules back.
        Scenario {
            install: &["--no-pin", "--no-anchor"],
            write: Some(&["--no-anchor"]),
            verify: &["--no-anchor"],
            ..scenario("no pin", "nft")
        },
        Scenario {
            mask: true,
            ..scenario("masked", "nft")
        },
    ];
    let reasons = [
        "docker's port map is gone",
        "podsnat-pin.service last ran at 0",
        "podsnat.service is",
    ];
    for (s, reason) in negative.iter().zip(reasons) {
        let b = boot(&rootfs, s);
        eprintln!("=== {}", ctx(s.name, &b));
        let failed = kept(&b.boot).err().unwrap_or_default();
        assert!(
            failed.contains(reason),
            "negative control {}: expected «{reason}», got «{failed}»:\n{}",
            s.name,
            ctx(s.name, &b)
        );
        if s.name == "no pin" {
            // Without the pin, docker's start leaves its rule on top.
            assert_eq!(b.boot.verify.0, "2", "{}", ctx(s.name, &b));
            assert!(
                b.boot.verify.1.contains("drift: pod→cluster"),
                "{}",
                b.boot.verify.1
            );
        }
    }

    // Without the rules file the node boots cleanly and the units say why.
    let s = Scenario {
        write: None,
        ..scenario("no rules file", "nft")
    };
    let b = boot(&rootfs, &s);
    for unit in ["podsnat.service", "podsnat-pin.service"] {
        assert_eq!(
            b.boot.prop(unit, "ConditionResult"),
            "no",
            "{unit}: {}",
            ctx(s.name, &b)
        );
    }
    assert_eq!(b.boot.prop("podsnat.service", "ActiveState"), "inactive");
    assert!(
        b.status
            .contains("ConditionPathExists=/etc/iptables/rules.v4 was not met"),
        "{}",
        ctx(s.name, &b)
    );
}

//! The proof that the unit works at boot: a real systemd as PID 1 in a
//! systemd-nspawn container with its own network namespace. A stand-in
//! flanneld.service adds the broad MASQUERADE rule the way docker does;
//! podsnat's file and unit are installed with the real binary into the
//! container's root; a collector unit records the nat table and the unit
//! states, then powers off.
//!
//! The cached Debian rootfs (common::boot::cache_dir) is never written: each boot
//! runs on an overlayfs whose upper layer is a temp dir, mounted inside a
//! private mount (and network) namespace of the test's own.

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

const SUBNET: &str = "172.7.21.0/24";
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
    /// Also install podsnat-verify.service (pulled in by a stand-in
    /// docker.service) with the podsnat under test and the example config.
    verify_timer: bool,
}

/// What the collector brought out of the container.
struct Boot {
    nat: String,
    show: HashMap<String, HashMap<String, String>>,
    journal: String,
    status: String,
}

impl Boot {
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

fn stand_in_flanneld(ipt: &str) -> String {
    let rule = format!("POSTROUTING -s {SUBNET} ! -o docker0 -j MASQUERADE");
    format!(
        "[Unit]\nDescription=stand-in for flanneld/docker: adds the broad MASQUERADE rule\n\
         [Service]\nType=oneshot\nRemainAfterExit=yes\n\
         ExecStart=/bin/sh -c '{ipt} -w 5 -t nat -C {rule} || {ipt} -w 5 -t nat -I {rule}'\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

fn collector(save: &str) -> String {
    let props = "Id,ActiveState,SubState,Result,ExecMainStatus,ConditionResult,\
                 ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic";
    let units = "podsnat.service flanneld.service podsnat-verify.service";
    format!(
        "[Unit]\nDescription=boot-test collector\nAfter=podsnat.service flanneld.service podsnat-verify.service multi-user.target\n\
         [Service]\nType=exec\n\
         ExecStart=/bin/sh -c 'systemctl is-system-running --wait; \
         {save} -t nat > /podsnat-out/nat; \
         systemctl show -p {props} {units} > /podsnat-out/show; \
         systemctl status --no-pager podsnat.service > /podsnat-out/status 2>&1; \
         journalctl -b --no-pager -o short-monotonic -u flanneld.service -u podsnat.service -u podsnat-verify.service > /podsnat-out/journal; \
         systemctl poweroff'\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

fn boot(rootfs: &Path, s: &Scenario) -> Boot {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["upper", "work", "merged", "out", "units"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    let (ipt, save) = match s.backend {
        "legacy" => (
            "/usr/sbin/iptables-legacy",
            "/usr/sbin/iptables-legacy-save",
        ),
        _ => ("/usr/sbin/iptables-nft", "/usr/sbin/iptables-nft-save"),
    };
    fs::write(t.join("units/flanneld.service"), stand_in_flanneld(ipt)).unwrap();
    fs::write(t.join("units/podsnat-collect.service"), collector(save)).unwrap();

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
         mount -t overlay overlay -o lowerdir={rootfs},upperdir={upper},workdir={work} {m}\n",
        rootfs = rootfs.display(),
        upper = t.join("upper").display(),
        work = t.join("work").display(),
        m = q(&m),
    );
    if let Some(extra) = s.write {
        // The namespace's own (empty) netfilter answers the --test.
        script += &format!(
            "expect2 {bin} write --config {ex} --root {m} --iptables-restore iptables-{b}-restore {extra}\n",
            bin = q(&bin),
            ex = q(Path::new(EXAMPLE)),
            m = q(&m),
            b = s.backend,
            extra = words(extra),
        );
    }
    script += &format!(
        "expect2 {bin} install-unit --root {m} {extra}\n",
        bin = q(&bin),
        m = q(&m),
        extra = words(s.install)
    );
    script += &format!(
        "cp {units}/*.service {m}/etc/systemd/system/\n\
         ln -s /etc/systemd/system/flanneld.service {m}/etc/systemd/system/multi-user.target.wants/\n\
         ln -s /etc/systemd/system/podsnat-collect.service {m}/etc/systemd/system/multi-user.target.wants/\n",
        units = q(&t.join("units")),
        m = q(&m)
    );
    if s.verify_timer {
        // podsnat itself, for podsnat-verify.service, and a stand-in
        // docker.service whose start pulls the verify service in.
        fs::write(t.join("units/docker.service"), "[Unit]\nDescription=stand-in for docker\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n").unwrap();
        script += &format!(
            "install -D -m 0755 {bin} {m}/usr/local/sbin/podsnat\n\
             install -D -m 0644 {ex} {m}/etc/podsnat/config.toml\n\
             ln -s /etc/systemd/system/docker.service {m}/etc/systemd/system/multi-user.target.wants/\n",
            bin = q(&bin),
            ex = q(Path::new(EXAMPLE)),
            m = q(&m)
        );
    }
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
        run.status.success() && !read("nat").is_empty(),
        "{}: the boot did not complete ({}):\n{}\n{}",
        s.name,
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    Boot {
        nat: read("nat"),
        show: parse_show(&read("show")),
        journal: read("journal"),
        status: read("status"),
    }
}

/// The claim under test: podsnat.service ran after the stand-in finished,
/// succeeded, and left exactly the rendered table.
fn restored(b: &Boot, rendered: &str) -> Result<(), String> {
    let state = [
        b.prop("podsnat.service", "ActiveState"),
        b.prop("podsnat.service", "SubState"),
        b.prop("podsnat.service", "Result"),
        b.prop("podsnat.service", "ExecMainStatus"),
    ];
    if state != ["active", "exited", "success", "0"] {
        return Err(format!(
            "podsnat.service is {state:?}, not active (exited) with status 0"
        ));
    }
    let flannel_done = b.mono("flanneld.service", "ExecMainExitTimestampMonotonic");
    let podsnat_start = b.mono("podsnat.service", "ExecMainStartTimestampMonotonic");
    if flannel_done == 0 || podsnat_start < flannel_done {
        return Err(format!(
            "podsnat started at {podsnat_start} µs, before the stand-in finished at {flannel_done} µs"
        ));
    }
    let want = &podsnat::rules_file::parse(rendered).map_err(|e| e.to_string())?[0];
    let got = &podsnat::rules_file::parse(&b.nat).map_err(|e| e.to_string())?[0];
    for chain in [
        "PREROUTING",
        "INPUT",
        "OUTPUT",
        "POSTROUTING",
        "DOCKER",
        "PODSNAT-POSTROUTING",
    ] {
        if got.chain_rules(chain) != want.chain_rules(chain) {
            return Err(format!(
                "chain {chain} after boot is {:?}, rendered {:?}",
                got.chain_rules(chain),
                want.chain_rules(chain)
            ));
        }
    }
    Ok(())
}

#[test]
fn unit_restores_the_table_at_boot() {
    let tools = [
        "debootstrap",
        "systemd-nspawn",
        "unshare",
        "timeout",
        "mount",
    ];
    if !common::require("unit_restores_the_table_at_boot", true, &tools) {
        return;
    }
    let rootfs = common::boot::rootfs();
    let guard = common::render_example(&[]);
    let classic = common::render_example(&["--mode", "classic"]);
    let ctx = |name: &str, b: &Boot| {
        format!(
            "{name}\n--- nat\n{}--- journal\n{}--- status\n{}",
            b.nat, b.journal, b.status
        )
    };

    let positive: [(Scenario, &str); 3] = [
        (
            Scenario {
                name: "guard, nft",
                write: Some(&[]),
                install: &[],
                backend: "nft",
                mask: false,
                verify_timer: false,
            },
            &guard,
        ),
        (
            Scenario {
                name: "guard, legacy",
                write: Some(&[]),
                install: &["--iptables-restore", "/usr/sbin/iptables-legacy-restore"],
                backend: "legacy",
                mask: false,
                verify_timer: false,
            },
            &guard,
        ),
        (
            Scenario {
                name: "classic, nft",
                write: Some(&["--mode", "classic"]),
                install: &[],
                backend: "nft",
                mask: false,
                verify_timer: false,
            },
            &classic,
        ),
    ];
    for (s, rendered) in &positive {
        let b = boot(&rootfs, s);
        eprintln!("=== {}", ctx(s.name, &b)); // shown with --nocapture or on failure
        if let Err(e) = restored(&b, rendered) {
            panic!("{e}\n{}", ctx(s.name, &b));
        }
    }

    // Negative controls: the same check must fail when podsnat.service is
    // masked, or ordered before the unit that adds the broad rule (classic
    // mode, whose table docker's -C does not recognise).
    let negative: [(Scenario, &str); 2] = [
        (
            Scenario {
                name: "masked",
                write: Some(&[]),
                install: &[],
                backend: "nft",
                mask: true,
                verify_timer: false,
            },
            &guard,
        ),
        (
            Scenario {
                name: "classic, ordering reversed",
                write: Some(&["--mode", "classic"]),
                install: &["--after", "docker.service", "--before", "flanneld.service"],
                backend: "nft",
                mask: false,
                verify_timer: false,
            },
            &classic,
        ),
    ];
    for (s, rendered) in &negative {
        let b = boot(&rootfs, s);
        eprintln!("=== {}", ctx(s.name, &b));
        assert!(
            restored(&b, rendered).is_err(),
            "negative control passed:\n{}",
            ctx(s.name, &b)
        );
    }

    // Without the rules file the node boots cleanly and the unit says why.
    let s = Scenario {
        name: "no rules file",
        write: None,
        install: &[],
        backend: "nft",
        mask: false,
        verify_timer: false,
    };
    let b = boot(&rootfs, &s);
    assert_eq!(
        b.prop("podsnat.service", "ConditionResult"),
        "no",
        "{}",
        ctx(s.name, &b)
    );
    assert_eq!(b.prop("podsnat.service", "ActiveState"), "inactive");
    assert!(
        b.status
            .contains("ConditionPathExists=/etc/iptables/rules.v4 was not met"),
        "{}",
        ctx(s.name, &b)
    );

    // podsnat-verify.service, sandboxed like podsnat.service, runs podsnat
    // verify on the live table after docker's start: no drift, exit 0.
    let s = Scenario {
        name: "guard, nft, verify service",
        write: Some(&[]),
        install: &["--verify-timer", "--podsnat", "/usr/local/sbin/podsnat"],
        backend: "nft",
        mask: false,
        verify_timer: true,
    };
    let b = boot(&rootfs, &s);
    eprintln!("=== {}", ctx(s.name, &b));
    if let Err(e) = restored(&b, &guard) {
        panic!("{e}\n{}", ctx(s.name, &b));
    }
    let v = "podsnat-verify.service";
    assert_eq!(
        [b.prop(v, "Result"), b.prop(v, "ExecMainStatus")],
        ["success", "0"],
        "{}",
        ctx(s.name, &b)
    );
    assert!(
        b.mono(v, "ExecMainStartTimestampMonotonic")
            >= b.mono("podsnat.service", "ExecMainExitTimestampMonotonic"),
        "verify ran before the restore"
    );
}

//! The packages, tested the way nodes install software: the .deb built by
//! contrib/packaging/build.sh is installed with apt into the debootstrapped
//! rootfs of the boot test; a first boot runs `podsnat write` and
//! `systemctl enable podsnat`; after a reboot the rule is in force; `dpkg -r`
//! leaves the admin's rules file as it was. The .rpm holds the same files.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn build_packages() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("contrib/packaging/build.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = root.join("target/package");
    let find = |ext: &str| {
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
    };
    (find("deb"), find("rpm"))
}

/// Files (not directories) a package installs, with the systemd unit
/// directory and the deb-only copyright file normalized away.
fn normalized(list: &str) -> BTreeSet<String> {
    list.lines()
        .map(|l| l.trim_start_matches('.').to_owned())
        .filter(|l| !l.is_empty() && !l.ends_with('/') && !l.ends_with("/copyright"))
        .map(|l| l.replace("/usr/lib/systemd/system/", "/lib/systemd/system/"))
        .collect()
}

#[test]
fn deb_installs_boots_reboots_and_uninstalls_cleanly() {
    let tools = [
        "cargo-deb",
        "cargo-generate-rpm",
        "rpm",
        "dpkg-deb",
        "readelf",
        "debootstrap",
        "systemd-nspawn",
        "unshare",
        "mount",
    ];
    common::require(
        "deb_installs_boots_reboots_and_uninstalls_cleanly",
        true,
        &tools,
    );
    let (deb, rpm) = build_packages();

    // The .rpm lists the same files as the .deb.
    let deb_files = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .output()
        .unwrap();
    let tar = Command::new("tar")
        .arg("-t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    tar.stdin
        .as_ref()
        .unwrap()
        .write_all(&deb_files.stdout)
        .unwrap();
    let tar = tar.wait_with_output().unwrap();
    let rpm_files = Command::new("rpm")
        .args(["-qlp"])
        .arg(&rpm)
        .output()
        .unwrap();
    assert!(
        rpm_files.status.success(),
        "{}",
        String::from_utf8_lossy(&rpm_files.stderr)
    );
    let (d, r) = (
        normalized(&String::from_utf8_lossy(&tar.stdout)),
        normalized(&String::from_utf8_lossy(&rpm_files.stdout)),
    );
    assert_eq!(d, r, "the .deb and the .rpm install different files");
    // verify reads the live flows with conntrack: both packages recommend it
    // (the boot test below installs without recommends: it has no network).
    let field = |prog: &str, args: &[&str], pkg: &std::path::Path| {
        let out = Command::new(prog).args(args).arg(pkg).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let deb_recommends = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&deb)
        .arg("Recommends")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&deb_recommends.stdout).trim(),
        "conntrack"
    );
    assert!(
        field("rpm", &["-qp", "--recommends"], &rpm).starts_with("conntrack-tools"),
        "{}",
        field("rpm", &["-qp", "--recommends"], &rpm)
    );
    for want in [
        "/usr/sbin/podsnat",
        "/usr/share/man/man8/podsnat.8.gz",
        "/usr/share/bash-completion/completions/podsnat",
        "/lib/systemd/system/podsnat.service",
        "/lib/systemd/system/podsnat-pin.service",
        "/lib/systemd/system/podsnat-pin.timer",
        "/usr/share/doc/podsnat/examples/flannel-docker.toml",
        "/usr/share/doc/podsnat/docs/units.md",
        "/etc/podsnat/config.toml.example",
    ] {
        assert!(d.contains(want), "{want} missing from the package: {d:?}");
    }
    // The packaged binary is static (scripts/release-build): no program
    // interpreter and no shared library, so any glibc on a node will do.
    let bin = tempfile::NamedTempFile::new().unwrap();
    let x = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/sbin/podsnat > '{}' && readelf -ldW '{}'",
            deb.display(),
            bin.path().display(),
            bin.path().display()
        ))
        .output()
        .unwrap();
    let elf = String::from_utf8_lossy(&x.stdout);
    assert!(x.status.success() && elf.contains("DYN"), "readelf: {elf}");
    assert!(
        !elf.contains("INTERP") && !elf.contains("(NEEDED)"),
        "the packaged podsnat is linked dynamically:\n{elf}"
    );

    let rootfs = common::boot::rootfs();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for d in ["upper", "work", "merged", "out"] {
        fs::create_dir(t.join(d)).unwrap();
    }
    let m = t.join("merged");
    let q = |p: &Path| format!("'{}'", p.display());
    // First boot: write the rules (platform default: Debian has no
    // /etc/sysconfig, so /etc/iptables/rules.v4) and enable the unit.
    let setup = "[Unit]\nDescription=first boot: podsnat write and enable\nAfter=multi-user.target\n\
        [Service]\nType=exec\nExecStart=/bin/sh -c 'podsnat write --config /usr/share/doc/podsnat/examples/flannel-docker.toml > /podsnat-out/write.txt 2>&1; echo $? > /podsnat-out/write.rc; \
        podsnat install-unit --no-enable > /podsnat-out/install-unit.txt 2>&1; \
        systemctl enable podsnat.service podsnat-pin.service podsnat-pin.timer > /podsnat-out/enable.txt 2>&1; cp /etc/iptables/rules.v4 /podsnat-out/rules.v4.boot1; \
        systemctl disable podsnat-setup.service; systemctl enable podsnat-collect.service; systemctl poweroff'\n\
        [Install]\nWantedBy=multi-user.target\n";
    let collect = "[Unit]\nDescription=second boot: collect\nAfter=podsnat.service multi-user.target\n\
        [Service]\nType=exec\nExecStart=/bin/sh -c 'systemctl is-system-running --wait; iptables-save -t nat > /podsnat-out/nat; \
        systemctl show -p ActiveState,SubState,Result,ExecMainStatus podsnat.service > /podsnat-out/show; \
        systemctl show -p Result,ExecMainStatus,ConditionResult podsnat-pin.service > /podsnat-out/pin; \
        systemctl is-enabled podsnat-pin.timer > /podsnat-out/timer 2>&1; \
        podsnat --version > /podsnat-out/version; systemctl poweroff'\n\
        [Install]\nWantedBy=multi-user.target\n";
    fs::write(t.join("podsnat-setup.service"), setup).unwrap();
    fs::write(t.join("podsnat-collect.service"), collect).unwrap();
    let nspawn = |extra: &str| {
        format!(
            "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 timeout 120 systemd-nspawn -q --directory={m} --private-network \
             --register=no --keep-unit --bind={out}:/podsnat-out {extra}",
            m = q(&m),
            out = q(&t.join("out"))
        )
    };
    let script = format!(
        "set -eu\n\
         mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn\n\
         mount -t overlay overlay -o lowerdir={rootfs},upperdir={upper},workdir={work} {m}\n\
         cp {deb} {m}/var/tmp/podsnat.deb\n\
         {install} > {out}/install.txt 2>&1\n\
         cp {setup} {collect} {m}/etc/systemd/system/\n\
         ln -s /etc/systemd/system/podsnat-setup.service {m}/etc/systemd/system/multi-user.target.wants/\n\
         {boot} --console=read-only > {out}/boot1.txt 2>&1\n\
         {boot} --console=read-only > {out}/boot2.txt 2>&1\n\
         {remove} > {out}/remove.txt 2>&1\n\
         cp {m}/etc/iptables/rules.v4 {out}/rules.v4.after-remove\n\
         test ! -e {m}/usr/sbin/podsnat && touch {out}/binary-removed\n",
        rootfs = rootfs.display(),
        upper = q(&t.join("upper")),
        work = q(&t.join("work")),
        m = q(&m),
        deb = q(&deb),
        out = q(&t.join("out")),
        // apt resolves the package's dependencies inside the container.
        install = nspawn("apt-get install -y --no-install-recommends /var/tmp/podsnat.deb"),
        setup = q(&t.join("podsnat-setup.service")),
        collect = q(&t.join("podsnat-collect.service")),
        boot = nspawn("--boot"),
        remove = nspawn("dpkg -r podsnat"),
    );
    let run = common::boot::in_private_namespaces(&script);
    let read = |f: &str| fs::read_to_string(t.join("out").join(f)).unwrap_or_default();
    let ctx = || {
        format!(
            "--- install\n{}--- write\n{}--- enable\n{}--- nat\n{}--- show\n{}--- remove\n{}--- stderr\n{}",
            read("install.txt"),
            read("write.txt"),
            read("enable.txt"),
            read("nat"),
            read("show"),
            read("remove.txt"),
            String::from_utf8_lossy(&run.stderr)
        )
    };
    eprintln!("{}", ctx()); // shown with --nocapture
    assert!(run.status.success(), "{}", ctx());
    assert_eq!(
        read("write.rc").trim(),
        "2",
        "podsnat write inside the container: {}",
        ctx()
    );
    assert!(
        read("show").contains("ActiveState=active") && read("show").contains("ExecMainStatus=0"),
        "{}",
        ctx()
    );
    // The pin is enabled; with no docker on this node nothing starts it but
    // its timer (a minute after boot), so it has not failed.
    assert_eq!(read("timer").trim(), "enabled", "{}", ctx());
    assert!(!read("pin").contains("Result=exit-code"), "{}", read("pin"));
    // The rule is in force after the reboot: the table is the rendered one.
    let rendered = common::render_example(&[]);
    let want = podsnat::parse_rules(&rendered).unwrap();
    let nat = read("nat");
    let got = podsnat::parse_rules(&nat).unwrap();
    assert_eq!(
        got[0].chain_rules("POSTROUTING"),
        want[0].chain_rules("POSTROUTING"),
        "{}",
        ctx()
    );
    assert_eq!(
        got[0].chain_rules("PODSNAT-POSTROUTING"),
        want[0].chain_rules("PODSNAT-POSTROUTING")
    );
    assert!(
        read("version").starts_with("podsnat 0.1.0 (commit "),
        "{}",
        read("version")
    );
    // dpkg -r removes podsnat and leaves the admin's rules file untouched.
    assert!(t.join("out/binary-removed").exists(), "{}", ctx());
    assert_eq!(read("rules.v4.after-remove"), read("rules.v4.boot1"));
    assert!(!read("rules.v4.boot1").is_empty());
}

//! The Ansible role, run for real: ansible-playbook against localhost with
//! a local connection, the role pointed at a temp root. First run changed,
//! second run ok (idempotent), --check --diff shows the diff and writes
//! nothing, a bad subnet fails the play with podsnat's message.

use crate::common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn playbook(dir: &Path, extra_vars: &str, flags: &[&str]) -> Output {
    let roles = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/ansible/roles");
    Command::new("ansible-playbook")
        .args(["-i", "localhost,", "-c", "local"])
        .arg(dir.join("site.yml"))
        .args(["-e", extra_vars])
        // The Python that runs ansible-playbook also runs the modules.
        .args([
            "-e",
            "ansible_python_interpreter={{ ansible_playbook_python }}",
        ])
        .args(flags)
        .env("ANSIBLE_ROLES_PATH", roles)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .output()
        .unwrap()
}

/// `changed=N` and `failed=N` from the PLAY RECAP line.
fn recap(out: &Output) -> (u32, u32) {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("localhost") && l.contains("changed="))
        .unwrap_or_else(|| {
            panic!(
                "no recap in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let num = |key: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    (num("changed="), num("failed="))
}

#[test]
fn role_is_idempotent_supports_check_diff_and_fails_on_bad_input() {
    common::require(
        "role_is_idempotent_supports_check_diff_and_fails_on_bad_input",
        false,
        &["ansible-playbook"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    fs::create_dir(&root).unwrap();
    fs::write(
        tmp.path().join("site.yml"),
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - podsnat\n",
    )
    .unwrap();
    let vars = |subnet: &str| {
        format!(
            r#"{{"podsnat_bin": "{}", "podsnat_root": "{}", "podsnat_cluster_cidr": "172.7.0.0/16", "podsnat_pod_subnet": "{subnet}", "podsnat_no_masquerade": ["10.96.0.0/12"], "podsnat_test": false}}"#,
            common::podsnat_bin().display(),
            root.display()
        )
    };
    let rules = root.join("etc/sysconfig/iptables");
    let unit = root.join("etc/systemd/system/podsnat.service");

    let first = playbook(tmp.path(), &vars("172.7.21.0/24"), &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    assert_eq!(recap(&first), (2, 0), "first run: write and unit changed");
    assert!(
        fs::read_to_string(&rules)
            .unwrap()
            .contains("-A PODSNAT-POSTROUTING -d 10.96.0.0/12 -j ACCEPT")
    );
    assert!(unit.is_file());
    assert!(
        root.join("etc/systemd/system/multi-user.target.wants/podsnat.service")
            .is_symlink()
    );

    let second = playbook(tmp.path(), &vars("172.7.21.0/24"), &[]);
    assert!(second.status.success());
    assert_eq!(recap(&second), (0, 0), "second run must be ok, not changed");

    let before = fs::read(&rules).unwrap();
    let check = playbook(tmp.path(), &vars("172.7.22.0/24"), &["--check", "--diff"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(recap(&check).0, 1, "check mode reports the change");
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        out.contains("+-A POSTROUTING -s 172.7.22.0/24 -j PODSNAT-POSTROUTING"),
        "the diff is shown:\n{out}"
    );
    assert!(out.contains("would change: "), "{out}");
    assert_eq!(
        fs::read(&rules).unwrap(),
        before,
        "--check wrote the rules file"
    );

    let bad = playbook(tmp.path(), &vars("172.7.21.1/24"), &[]);
    assert!(!bad.status.success());
    assert_eq!(recap(&bad).1, 1, "the play fails");
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(
        out.contains(
            r#"--pod-subnet \"172.7.21.1/24\" has host bits set; did you mean \"172.7.21.0/24\"?"#
        ),
        "podsnat's message is shown:\n{out}"
    );
    assert_eq!(
        fs::read(&rules).unwrap(),
        before,
        "a failed run changed the file"
    );
}

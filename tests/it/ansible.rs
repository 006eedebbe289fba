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

/// A temp dir with site.yml (the role on localhost) and an empty node root.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("node");
    // A RHEL-like node: the role leaves the rules file to podsnat, which
    // picks /etc/sysconfig/iptables where /etc/sysconfig exists.
    fs::create_dir_all(root.join("etc/sysconfig")).unwrap();
    fs::write(
        tmp.path().join("site.yml"),
        "- hosts: localhost\n  gather_facts: false\n  roles:\n    - podsnat\n",
    )
    .unwrap();
    (tmp, root)
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
    let (tmp, root) = setup();
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
        out.contains("+-A POSTROUTING -s 172.7.22.0/24 ! -o docker0 -j PODSNAT-POSTROUTING"),
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

/// The example inventory, changed by `edit`, rendered with `podsnat fleet
/// render` (exit 2: written) into `dir/golden`, which it returns.
fn golden_fleet(dir: &Path, edit: impl FnOnce(String) -> String) -> std::path::PathBuf {
    let example = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/inventory.toml"
    ))
    .unwrap();
    let inventory = dir.join("inventory.toml");
    fs::write(&inventory, edit(example)).unwrap();
    let golden = dir.join("golden");
    let render = Command::new(common::podsnat_bin())
        .args(["fleet", "render", "--inventory"])
        .arg(&inventory)
        .arg("--out-dir")
        .arg(&golden)
        .output()
        .unwrap();
    assert_eq!(
        render.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&render.stderr)
    );
    golden
}

/// The role's variables for `node` of the fleet in `golden`, into `root`.
fn golden_vars(root: &Path, golden: &Path, node: &str) -> String {
    format!(
        r#"{{"podsnat_bin": "{}", "podsnat_root": "{}", "podsnat_golden_dir": "{}", "podsnat_node": "{node}", "podsnat_test": false}}"#,
        common::podsnat_bin().display(),
        root.display(),
        golden.display()
    )
}

/// A fleet node picks up its golden files with the role: its nat table
/// into the rules file (`podsnat write --table`), the shared units (and its
/// own where the inventory made one) into /etc/systemd/system, enabled.
/// A second run changes nothing.
#[test]
fn role_installs_a_nodes_golden_files() {
    common::require(
        "role_installs_a_nodes_golden_files",
        false,
        &["ansible-playbook"],
    );
    let (tmp, root) = setup();
    // The last node gets a unit of its own.
    let golden = golden_fleet(tmp.path(), |inventory| {
        inventory + "[nodes.unit]\nafter = [\"flannel.service\"]\n"
    });
    assert!(
        golden.join("hdss7-22.podsnat.service").is_file(),
        "the last node has its own unit"
    );

    for (node, own_unit) in [("hdss7-21", false), ("hdss7-22", true)] {
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc/sysconfig")).unwrap();
        let vars = golden_vars(&root, &golden, node);
        let first = playbook(tmp.path(), &vars, &[]);
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stdout)
        );
        assert!(
            recap(&first).0 >= 4,
            "{node}: the first run changes the files"
        );
        let rules = fs::read_to_string(root.join("etc/sysconfig/iptables")).unwrap();
        assert_eq!(
            rules,
            fs::read_to_string(golden.join(format!("{node}.iptables.nat"))).unwrap()
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/podsnat/podsnat.nft")).unwrap(),
            fs::read_to_string(golden.join(format!("{node}.podsnat.nft"))).unwrap(),
            "{node}: the anchor"
        );
        let units = root.join("etc/systemd/system");
        let want_unit = if own_unit {
            golden.join(format!("{node}.podsnat.service"))
        } else {
            golden.join("podsnat.service")
        };
        assert_eq!(
            fs::read_to_string(units.join("podsnat.service")).unwrap(),
            fs::read_to_string(want_unit).unwrap(),
            "{node}"
        );
        for (unit, wants) in [
            ("podsnat.service", "multi-user.target.wants"),
            ("podsnat-anchor.service", "multi-user.target.wants"),
            ("podsnat-pin.service", "docker.service.wants"),
            ("podsnat-pin.timer", "timers.target.wants"),
        ] {
            assert_eq!(
                fs::read_to_string(units.join(unit)).unwrap(),
                fs::read_to_string(if own_unit && unit == "podsnat.service" {
                    golden.join(format!("{node}.{unit}"))
                } else {
                    golden.join(unit)
                })
                .unwrap()
            );
            assert_eq!(
                fs::read_link(units.join(wants).join(unit)).unwrap(),
                Path::new("/etc/systemd/system").join(unit)
            );
        }
        let second = playbook(tmp.path(), &vars, &[]);
        assert!(second.status.success());
        assert_eq!(
            recap(&second),
            (0, 0),
            "{node}: a second run changes nothing"
        );
    }
}

/// A dual-stack node with the role: both rules files, the units restore and
/// pin both (`podsnat_family` follows the settings), idempotent.
#[test]
fn role_writes_both_families_on_a_dual_stack_node() {
    common::require(
        "role_writes_both_families_on_a_dual_stack_node",
        false,
        &["ansible-playbook"],
    );
    let (tmp, root) = setup();
    let vars = format!(
        r#"{{"podsnat_bin": "{}", "podsnat_root": "{}", "podsnat_cluster_cidr": "172.7.0.0/16", "podsnat_pod_subnet": "172.7.21.0/24", "podsnat_cluster_cidr_v6": "fd00:7::/48", "podsnat_pod_subnet_v6": "fd00:7:0:21::/64", "podsnat_no_masquerade": ["10.96.0.0/12", "fd00:96::/108"], "podsnat_test": false}}"#,
        common::podsnat_bin().display(),
        root.display()
    );
    let first = playbook(tmp.path(), &vars, &[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stdout)
    );
    assert_eq!(recap(&first), (2, 0), "first run: write and unit changed");
    let six = fs::read_to_string(root.join("etc/sysconfig/ip6tables")).unwrap();
    assert!(
        six.contains("-A PODSNAT-POSTROUTING -d fd00:96::/108 -j ACCEPT"),
        "{six}"
    );
    let four = fs::read_to_string(root.join("etc/sysconfig/iptables")).unwrap();
    assert!(!four.contains("fd00"), "{four}");
    let unit = fs::read_to_string(root.join("etc/systemd/system/podsnat.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/sbin/ip6tables-restore -w 5 -T nat /etc/sysconfig/ip6tables"),
        "{unit}"
    );
    let second = playbook(tmp.path(), &vars, &[]);
    assert!(second.status.success());
    assert_eq!(recap(&second), (0, 0), "second run must be ok, not changed");
}

/// The role's list of golden units is the fleet's: the same names, each
/// wanted by the target the rendered unit's `[Install] WantedBy=` names,
/// and every one a unit of podsnat's one table (`podsnat::UNITS`).
#[test]
fn role_units_agree_with_the_unit_table() {
    let defaults = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/ansible/roles/podsnat/defaults/main.yml"
    ))
    .unwrap();
    let mut listed: Vec<(String, String)> = defaults
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- {name: "))
        .filter_map(|l| l.strip_suffix('}')?.split_once(", wanted_by: "))
        .map(|(n, w)| (n.to_owned(), w.to_owned()))
        .collect();
    listed.sort();
    for (name, wanted_by) in &listed {
        assert!(
            podsnat::UNITS
                .iter()
                .any(|u| u.name == name && u.wanted_by == wanted_by),
            "{name} wanted by {wanted_by}: not in podsnat's unit table"
        );
    }
    // Everything the fleet renders with the pin and the anchor on.
    let tmp = tempfile::tempdir().unwrap();
    let golden = golden_fleet(tmp.path(), |inventory| inventory);
    let mut rendered: Vec<(String, String)> = fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("podsnat") && !n.ends_with(".nft"))
        .map(|name| {
            let text = fs::read_to_string(golden.join(&name)).unwrap();
            let wanted_by = text
                .lines()
                .find_map(|l| l.strip_prefix("WantedBy="))
                .unwrap_or_else(|| panic!("{name} has no WantedBy=:\n{text}"))
                .to_owned();
            (name, wanted_by)
        })
        .collect();
    rendered.sort();
    assert_eq!(
        listed, rendered,
        "the role's podsnat_golden_units and the fleet's units"
    );
}

/// An inventory with `pin = false` renders no pin units, and the role
/// installs the units the golden directory has for the node (it listed the
/// pin units always, and failed on their missing files).
#[test]
fn role_installs_only_the_golden_units_the_fleet_rendered() {
    common::require(
        "role_installs_only_the_golden_units_the_fleet_rendered",
        false,
        &["ansible-playbook"],
    );
    let (tmp, root) = setup();
    let golden = golden_fleet(tmp.path(), |inventory| {
        inventory.replace("[unit]\n", "[unit]\npin = false\n")
    });
    assert!(!golden.join("podsnat-pin.service").exists());
    let vars = golden_vars(&root, &golden, "hdss7-21");
    let first = playbook(tmp.path(), &vars, &[]);
    assert!(
        first.status.success(),
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    let units = root.join("etc/systemd/system");
    for unit in ["podsnat.service", "podsnat-anchor.service"] {
        assert_eq!(
            fs::read_to_string(units.join(unit)).unwrap(),
            fs::read_to_string(golden.join(unit)).unwrap(),
            "{unit}"
        );
        assert!(
            units
                .join("multi-user.target.wants")
                .join(unit)
                .is_symlink()
        );
    }
    for unit in ["podsnat-pin.service", "podsnat-pin.timer"] {
        assert!(!units.join(unit).exists(), "{unit} was installed");
    }
    let second = playbook(tmp.path(), &vars, &[]);
    assert_eq!(recap(&second), (0, 0), "a second run changes nothing");
}

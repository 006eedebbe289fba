//! The README's quick start, run as written: every `podsnat` command of its
//! code blocks, in order, inside a network namespace whose nat table starts
//! as a node's does after docker's first start (docker's broad rule alone).
//! Only the paths move: the config is the shipped example, `write` and
//! `install-unit` get `--root` in a temp dir, and verify reads the anchor
//! from there and an empty daemon.json instead of the machine's. The exit
//! codes must be the ones a first run gives, and the final verify must print
//! the `ok:` lines the README shows.

use crate::common::{self, Netns};

const README: &str = include_str!("../../README.md");

/// The quick start's code blocks: its command lines and its output lines.
fn quick_start() -> (Vec<String>, Vec<String>) {
    let start = README
        .find("## Quick start")
        .expect("README has a Quick start section");
    let rest = &README[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let (mut commands, mut shown) = (Vec::new(), Vec::new());
    let mut in_block = false;
    for line in section.lines().map(str::trim) {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block && line.starts_with("podsnat ") {
            commands.push(line.split(" #").next().unwrap().trim().to_owned());
        } else if in_block && line.starts_with("ok: ") {
            shown.push(line.to_owned());
        }
    }
    (commands, shown)
}

#[test]
fn readme_quick_start_reaches_a_verified_node() {
    common::require(
        "readme_quick_start_reaches_a_verified_node",
        true,
        &["ip", "iptables", "iptables-restore", "iptables-save", "nft"],
    );
    let (commands, shown) = quick_start();
    let subcommands: Vec<&str> = commands
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(
        subcommands,
        ["render", "write", "install-unit", "verify", "verify"],
        "the quick start's commands changed; this test runs them in order: {commands:?}"
    );
    assert!(!shown.is_empty(), "the quick start shows no ok: line");

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let config = tmp.path().join("config.toml");
    std::fs::copy(common::EXAMPLE, &config).unwrap();
    let daemon_json = tmp.path().join("daemon.json");
    std::fs::write(&daemon_json, "{}\n").unwrap();
    let anchor = root.join("etc/podsnat/podsnat.nft");

    let ns = Netns::new();
    ns.ok("iptables", &common::example_broad(&["-A", "POSTROUTING"]));
    let mut transcript = String::new();
    let mut last = String::new();
    let mut codes = Vec::new();
    for command in &commands {
        let mut words: Vec<String> = shlex::split(command).unwrap()[1..]
            .iter()
            .map(|w| {
                if w == "/etc/podsnat/config.toml" {
                    config.display().to_string()
                } else {
                    w.clone()
                }
            })
            .collect();
        match words[0].as_str() {
            "write" | "install-unit" => {
                words.extend(["--root".into(), root.display().to_string()]);
            }
            "verify" => words.extend([
                "--anchor-file".into(),
                anchor.display().to_string(),
                "--docker-config".into(),
                daemon_json.display().to_string(),
            ]),
            _ => {}
        }
        let args: Vec<&str> = words.iter().map(String::as_str).collect();
        let (code, out) = common::podsnat_in(&ns.name, &args);
        transcript.push_str(&format!(
            "$ podsnat {}\n(exit {code})\n{out}\n",
            args.join(" ")
        ));
        codes.push(code);
        last = out;
    }
    eprintln!("{transcript}"); // shown with --nocapture
    // render 0; write, install-unit and the repair each change something (2);
    // the last verify finds nothing to report (0).
    assert_eq!(codes, [0, 2, 2, 2, 0], "{transcript}");
    for line in &shown {
        assert!(
            last.lines().any(|l| l == line),
            "the README shows `{line}`, the final verify printed:\n{last}"
        );
    }
    assert!(
        !last.lines().any(|l| !l.starts_with("ok: ")),
        "the final verify printed more than ok lines:\n{last}"
    );
    // What the steps left: the rules file, the anchor, the units, enabled.
    for file in [
        "etc/iptables/rules.v4",
        "etc/podsnat/podsnat.nft",
        "etc/systemd/system/podsnat.service",
        "etc/systemd/system/multi-user.target.wants/podsnat.service",
        "etc/systemd/system/podsnat-anchor.service",
        "etc/systemd/system/podsnat-pin.service",
    ] {
        // The wants links point at /etc/..., as systemctl enable makes them.
        assert!(
            root.join(file).symlink_metadata().is_ok(),
            "{file} missing:\n{transcript}"
        );
    }
}

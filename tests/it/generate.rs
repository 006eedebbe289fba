//! The man page, completions and --version come from the clap definitions.

use crate::common;
use podsnat::Cli;

use std::process::Command;

use clap::CommandFactory;

fn podsnat(args: &[&str]) -> String {
    let out = Command::new(common::podsnat_bin())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every visible command, as "podsnat fleet check".
fn commands() -> Vec<String> {
    command_defs().into_iter().map(|(name, _)| name).collect()
}

/// Every visible command with its clap definition.
fn command_defs() -> Vec<(String, clap::Command)> {
    // Arguments are deferred until a command runs: build them all.
    let mut cli = Cli::command();
    cli.build();
    let mut out = Vec::new();
    for sub in cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let nested: Vec<_> = sub
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        if nested.is_empty() {
            out.push((format!("podsnat {}", sub.get_name()), sub.clone()));
        }
        for inner in nested {
            let name = format!("podsnat {} {}", sub.get_name(), inner.get_name());
            out.push((name, inner.clone()));
        }
    }
    out
}

#[test]
fn man_page_covers_every_command_and_renders_cleanly() {
    let man = podsnat(&["generate", "man"]);
    let cmds = commands();
    assert!(cmds.len() >= 6, "{cmds:?}");
    for c in &cmds {
        assert!(
            man.contains(&format!(".SH \"{}\"", c.to_uppercase())),
            "no section for {c}"
        );
    }
    for section in ["CONFIGURATION", "\"EXIT STATUS\"", "FILES", "UNITS"] {
        assert!(
            man.contains(&format!(".SH {section}")),
            "no {section} section"
        );
    }
    // Every visible option of every command is in that command's section.
    let mut flags = 0;
    for (name, cmd) in command_defs() {
        let head = format!(".SH \"{}\"", name.to_uppercase());
        let start = man.find(&head).unwrap() + head.len();
        let end = man[start..].find("\n.SH ").map_or(man.len(), |i| start + i);
        let section = &man[start..end];
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" {
                continue;
            }
            flags += 1;
            assert!(
                section.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                "{name}: --{long} is not in its man section"
            );
        }
    }
    assert!(flags >= 40, "only {flags} options found");
    common::require(
        "man_page_covers_every_command_and_renders_cleanly",
        false,
        &["groff"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("podsnat.8");
    std::fs::write(&file, &man).unwrap();
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "groff: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn completions_know_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = podsnat(&["generate", "completion", shell]);
        for c in commands() {
            let last = c.rsplit(' ').next().unwrap();
            assert!(script.contains(last), "{shell} completion lacks {c}");
        }
        assert!(script.contains("flannel-env"), "{shell}");
    }
}

#[test]
fn version_names_the_commit() {
    let v = podsnat(&["--version"]);
    assert!(
        v.starts_with(&format!("podsnat {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    common::require("version_names_the_commit", false, &["git"]);
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the tests run in a git checkout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        v.contains(&format!("(commit {commit})")),
        "{v} vs HEAD {commit}"
    );
}

/// clap's own consistency checks on the whole command line (conflicting
/// flags, duplicate names, bad defaults), which it otherwise runs only
/// when a command is parsed in a debug build.
#[test]
fn cli_definitions_are_consistent() {
    Cli::command().debug_assert();
}

/// Every command line in README.md, CONTRIBUTING.md and docs/ (a line of a
/// code block that starts with `podsnat COMMAND`, `$ podsnat` or `sudo
/// podsnat`) parses with the real clap definitions: an example that drifted
/// from the options fails here. A name in backticks in the text (`podsnat
/// pin --file6`) is a mention, not a command line.
#[test]
fn doc_command_lines_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("CONTRIBUTING.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 5, "docs/ has {} pages", docs.len());
    files.extend(docs);
    let mut total = 0;
    for file in &files {
        let checked = command_lines_parse(file);
        if file.ends_with("README.md") {
            // The quick start alone has 6; a reader that finds none would prove nothing.
            assert!(checked >= 6, "only {checked} command lines in README.md");
        }
        total += checked;
    }
    assert!(total >= 15, "only {total} command lines in {files:?}");
}

fn command_lines_parse(file: &std::path::Path) -> usize {
    use clap::Parser;
    let text = std::fs::read_to_string(file).unwrap();
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut lines: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            lines.push(line.trim().to_owned());
        }
    }
    let mut checked = 0;
    for line in lines {
        let line = line.trim_start_matches("$ ").trim_start_matches("sudo ");
        let Some(rest) = line.strip_prefix("podsnat ") else {
            continue;
        };
        // Only a command podsnat has: prose like "podsnat writes ..." is not one.
        if !names
            .iter()
            .any(|n| rest.split(' ').next() == Some(n.as_str()))
        {
            continue;
        }
        let command = line.split(" #").next().unwrap_or(line).trim();
        let words = shlex::split(command).unwrap_or_else(|| panic!("unbalanced quotes: {line}"));
        // podsnat's own words, up to a shell operator (`&& ...`, `| ...`, `> f`).
        let ops = ["&&", "||", "|", ";", ">", ">>", "2>", "<"];
        let words: Vec<&String> = words
            .iter()
            .take_while(|w| !ops.contains(&w.as_str()))
            .collect();
        if let Err(e) = Cli::try_parse_from(&words) {
            panic!("{}: `{command}` does not parse: {e}", file.display());
        }
        checked += 1;
    }
    checked
}

/// A golden table (`write --table`, `--table6`, `--anchor-table`) is the
/// node's settings already rendered: every settings flag conflicts with it.
#[test]
fn golden_tables_conflict_with_every_setting() {
    use clap::Parser;
    let mut cmd = Cli::command();
    cmd.build(); // the commands' arguments are deferred until built
    let write = cmd.find_subcommand("write").unwrap();
    let group = write
        .get_groups()
        .find(|g| g.get_id() == "settings")
        .expect("the settings group");
    let settings: Vec<&clap::Arg> = group
        .get_args()
        .map(|id| write.get_arguments().find(|a| a.get_id() == id).unwrap())
        .collect();
    assert!(settings.len() >= 14, "{} settings", settings.len());
    for table in ["--table", "--table6", "--anchor-table"] {
        for arg in &settings {
            let flag = format!("--{}", arg.get_long().unwrap());
            let mut words = vec!["podsnat", "write", table, "t", flag.as_str()];
            if arg.get_action().takes_values() {
                // A valid value, so the conflict is what fails.
                let value = arg
                    .get_possible_values()
                    .first()
                    .map(|v| v.get_name().to_owned());
                words.push(match value.as_deref() {
                    Some("guard") => "guard",
                    Some("detect") => "detect",
                    _ if flag == "--masquerade-bit" => "14",
                    _ => "10.0.0.0/8",
                });
            }
            let err = Cli::try_parse_from(&words).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{words:?}: {err}"
            );
        }
    }
}

/// The man page's list of settings flags is the clap group `settings`,
/// less the two files it names in their own paragraphs: no flag is listed
/// that is not a setting (`--anchor` was, which is render's, not a setting),
/// and none is missing.
#[test]
fn man_settings_flags_are_the_settings_group() {
    let man = podsnat(&["generate", "man"]);
    let start = man.find(".TP\nFlags\n").expect("a Flags paragraph") + ".TP\nFlags\n".len();
    let end = start + man[start..].find(".PP").unwrap();
    let mut listed: Vec<String> = man[start..end]
        .split("\\fB\\-\\-")
        .skip(1)
        .map(|s| s.split("\\fR").next().unwrap().replace("\\-", "-"))
        .collect();
    listed.sort();
    let (_, render) = command_defs()
        .into_iter()
        .find(|(n, _)| n == "podsnat render")
        .unwrap();
    let group = render
        .get_groups()
        .find(|g| g.get_id() == "settings")
        .unwrap();
    let mut settings: Vec<String> = group
        .get_args()
        .filter_map(|id| render.get_arguments().find(|a| a.get_id() == id))
        .filter_map(|a| a.get_long().map(str::to_owned))
        .filter(|l| l != "config" && l != "flannel-env")
        .collect();
    settings.sort();
    assert_eq!(listed, settings);
}

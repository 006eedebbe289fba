//! Every output is safe to print: a hostile corpus goes to each parser
//! (rules files, ipset save, subnet.env, daemon.json, the TOML config, file
//! names) and no byte of stdout or stderr, text or JSON, is a raw control
//! character (a tab aside), and no line is longer than podsnat's bound (a longer line or
//! token is cut, with a mark). The bound is `podsnat::LINE_MAX`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common;

/// The bound plus the cut mark (`...(cut, N bytes)`).
const BOUND: usize = podsnat::LINE_MAX + 40;

const ESC: &str = "\x1b]0;pwned\x07\x1b[2J\x01";

fn long(n: usize) -> String {
    "x".repeat(n)
}

/// Checks one text (a stream, or one JSON string): no control character
/// but the line ends, no line over the bound.
fn assert_safe(ctx: &str, what: &str, text: &str) {
    for (i, line) in text.lines().enumerate() {
        assert!(
            !line.chars().any(|c| c.is_control() && c != '\t'),
            "{ctx}: {what} line {} has a raw control character: {:?}",
            i + 1,
            line.chars().take(200).collect::<String>()
        );
        assert!(
            line.chars().count() <= BOUND,
            "{ctx}: {what} line {} has {} characters",
            i + 1,
            line.chars().count()
        );
    }
}

/// Every string inside a JSON value.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Runs podsnat with `args` in `dir`; text and, where it takes `--format`,
/// JSON output must both be safe.
fn run(ctx: &str, dir: &Path, args: &[&str], json: bool) {
    let formats: &[&[&str]] = if json {
        &[&[], &["--format", "json"]]
    } else {
        &[&[]]
    };
    for extra in formats {
        let out = Command::new(common::podsnat_bin())
            .current_dir(dir)
            .args(args)
            .args(*extra)
            .output()
            .unwrap();
        let ctx = format!("{ctx} {extra:?} (exit {:?})", out.status.code());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stdout.is_empty() || !stderr.is_empty(),
            "{ctx}: says nothing"
        );
        assert_safe(&ctx, "stderr", &stderr);
        if extra.is_empty() {
            assert_safe(&ctx, "stdout", &stdout);
            continue;
        }
        for line in stdout.lines() {
            assert!(
                !line.chars().any(char::is_control),
                "{ctx}: raw control character in JSON"
            );
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{ctx}: not JSON ({e}): {line}"));
            let mut all = Vec::new();
            strings(&v, &mut all);
            for s in all {
                assert_safe(&ctx, "a JSON string", &s);
            }
        }
    }
}

const SPEC: [&str; 5] = [
    "--cluster-cidr",
    "172.7.0.0/16",
    "--pod-subnet",
    "172.7.21.0/24",
    "--no-anchor",
];

fn table(rules: &[String]) -> String {
    let mut t =
        String::from("*nat\n:POSTROUTING ACCEPT [0:0]\n:PODSNAT-POSTROUTING - [0:0]\n:S - [0:0]\n");
    for r in rules {
        t += r;
        t.push('\n');
    }
    t + "COMMIT\n"
}

#[test]
fn hostile_input_never_reaches_the_terminal_raw_or_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let verify = |ctx: &str, name: &str, text: &str, extra: &[&str]| {
        fs::write(dir.join(name), text).unwrap();
        let mut args = vec!["verify", "--file", name, "--no-test"];
        args.extend(SPEC);
        args.extend(extra);
        run(ctx, dir, &args, true);
    };

    // Rule text in the report: a comment with escape sequences, BEL and
    // \x01, and one of 100,000 characters, on the rule that decides.
    let ours = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING".to_owned();
    for comment in [
        ESC.to_owned(),
        format!("{ESC} {}", long(100_000)),
        long(100_000),
    ] {
        let masq = format!(
            "-A POSTROUTING -s 172.7.21.0/24 -m comment --comment \"{comment}\" -j MASQUERADE"
        );
        verify(
            "a comment",
            "comment.rules",
            &table(&[masq, ours.clone()]),
            &[],
        );
    }
    // A target name and an ipset's type reach "cannot decide".
    let target = format!("-A POSTROUTING -s 172.7.21.0/24 -j X{ESC}Y{}", long(5_000));
    verify("a target", "target.rules", &table(&[target]), &[]);
    fs::write(
        dir.join("sets"),
        format!("create S hash:{ESC}{} family inet\n", long(5_000)),
    )
    .unwrap();
    let set = "-A POSTROUTING -m set --match-set S dst -j MASQUERADE".to_owned();
    verify(
        "a set type",
        "set.rules",
        &table(std::slice::from_ref(&set)),
        &["--ipsets", "sets"],
    );
    // Lines a parser refuses, quoted in the error: a 200 KB prefix, an
    // ipset line, a subnet.env line, daemon.json's bip, a TOML key.
    let prefix = format!(
        "-A POSTROUTING -s 10.0.0.0/{} -j MASQUERADE",
        "9".repeat(200_000)
    );
    verify("a long prefix", "prefix.rules", &table(&[prefix]), &[]);
    fs::write(dir.join("junk-sets"), format!("{ESC}{}\n", long(200_000))).unwrap();
    verify(
        "an ipset line",
        "set.rules",
        &table(&[set]),
        &["--ipsets", "junk-sets"],
    );
    fs::write(
        dir.join("subnet.env"),
        format!("FLANNEL_NETWORK=172.7.0.0/16\n{ESC}{}\n", long(200_000)),
    )
    .unwrap();
    run(
        "subnet.env",
        dir,
        &["render", "--flannel-env", "subnet.env"],
        false,
    );
    fs::write(
        dir.join("daemon.json"),
        format!(
            "{{\"bip\": \"{}{}\"}}\n",
            ESC.escape_unicode(),
            long(200_000)
        ),
    )
    .unwrap();
    fs::write(
        dir.join("ok.rules"),
        common::render_example(&["--no-anchor"]),
    )
    .unwrap();
    let mut args = vec![
        "verify",
        "--file",
        "ok.rules",
        "--no-test",
        "--config",
        common::EXAMPLE,
    ];
    args.extend(["--no-anchor", "--docker-config", "daemon.json"]);
    run("daemon.json's bip", dir, &args, true);
    fs::write(
        dir.join("node.toml"),
        format!("\"{}{}\" = 1\n", ESC.escape_unicode(), long(200_000)),
    )
    .unwrap();
    run(
        "a TOML key",
        dir,
        &["render", "--config", "node.toml"],
        false,
    );
    // A file name: a path with control characters that does not exist.
    let name = format!("no-such-{ESC}{}", long(300));
    let mut args = vec!["verify", "--file", name.as_str(), "--no-test"];
    args.extend(SPEC);
    run("a file name", dir, &args, true);
    // And a usage error quoting the argument.
    run(
        "a flag's value",
        dir,
        &["render", "--mode", &format!("x{ESC}")],
        false,
    );
}

/// Rendering is deterministic: the same input twice gives the same bytes.
#[test]
fn render_is_deterministic() {
    let run = || {
        Command::new(common::podsnat_bin())
            .args(["render", "--config", "examples/flannel-docker.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
            .stdout
    };
    let first = run();
    assert!(!first.is_empty());
    assert_eq!(first, run());
}

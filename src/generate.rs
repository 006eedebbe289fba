//! The man page and shell completions, generated from the same clap
//! definitions as `--help`, so they never drift from it.

use askama::Template;
use clap::CommandFactory;

use crate::cli::Cli;

#[derive(Template)]
#[template(path = "podsnat.8.in", escape = "none")]
struct ManSections;

/// podsnat(8): clap's name, synopsis, description and options, a section
/// per command (and per `fleet` command), then the hand-written sections.
pub fn man_page() -> std::io::Result<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .section("8")
        .manual("System Administration")
        .source(format!("podsnat {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    // One page for all commands: the list points at their sections below,
    // not at podsnat-render(8) pages that do not exist.
    {
        use std::io::Write;
        writeln!(out, ".SH COMMANDS")?;
        for sub in visible(&cmd) {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            writeln!(
                out,
                ".TP
\\fBpodsnat {}\\fR
{}",
                sub.get_name(),
                roff_escape(&about)
            )?;
        }
    }
    for sub in visible(&cmd) {
        let nested: Vec<&clap::Command> = visible(sub).collect();
        if nested.is_empty() {
            section(&mut out, &format!("podsnat {}", sub.get_name()), sub)?;
        }
        for inner in nested {
            section(
                &mut out,
                &format!("podsnat {} {}", sub.get_name(), inner.get_name()),
                inner,
            )?;
        }
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push_str(&ManSections.to_string());
    text.push('\n');
    Ok(text)
}

fn visible(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// `.SH "PODSNAT RENDER"`, the command's usage and about, and its options.
fn section(out: &mut Vec<u8>, title: &str, cmd: &clap::Command) -> std::io::Result<()> {
    use std::io::Write;
    writeln!(out, ".SH \"{}\"", title.to_uppercase())?;
    let usage = cmd.clone().bin_name(title).render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    writeln!(out, ".B {}", roff_escape(usage))?;
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        writeln!(out, ".PP\n{}", roff_escape(&about.to_string()))?;
    }
    // clap_mangen titles its options section ".SH OPTIONS"; here it is a
    // subsection of the command's own section.
    let mut opts = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render_options_section(&mut opts)?;
    let opts = String::from_utf8_lossy(&opts).replacen(".SH OPTIONS", ".SS Options", 1);
    out.extend_from_slice(opts.as_bytes());
    if let Some(after) = cmd.get_after_help() {
        writeln!(
            out,
            ".SS Notes\n.nf\n{}\n.fi",
            roff_escape(&after.to_string())
        )?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes, leading dots and quotes, hyphens.
fn roff_escape(s: &str) -> String {
    s.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A completion script for `shell`.
pub fn completion(shell: clap_complete::Shell) -> std::io::Result<String> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "podsnat", &mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

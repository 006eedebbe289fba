//! `podsnat generate man|completion` (hidden, for packaging): the man page
//! and shell completions. The completions and the man page's command and
//! option sections come from the same clap definitions as `--help`, so
//! they never drift from it; the configuration, exit status, files and
//! units sections are written in `templates/podsnat.8.in`. Text goes
//! through the `roff` crate, which escapes it.

use askama::Template;
use clap::CommandFactory;
use roff::{Roff, bold, roman};

use super::ExitStatus;
use crate::cli::{Cli, GenerateCommand};
use crate::error::{Error, Result};
use crate::printer::{Own, Printer};

pub fn run(what: GenerateCommand, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let text = match what {
        GenerateCommand::Man => man_page(),
        GenerateCommand::Completion { shell } => completion(shell),
    }
    .map_err(|e| Error::output("render the man page or completions", e))?;
    p.own(&Own::checked("print the man page or completions", text)?)?;
    Ok(ExitStatus::Unchanged)
}

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
    let mut list = Roff::new();
    list.control("SH", ["COMMANDS"]);
    for sub in visible(&cmd) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        list.control("TP", [])
            .text([bold(format!("podsnat {}", sub.get_name()))])
            .text([roman(about)]);
    }
    out.extend_from_slice(list.to_roff().as_bytes());
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
    let mut head = Roff::new();
    head.control("SH", [title.to_uppercase().as_str()]);
    let usage = cmd.clone().bin_name(title).render_usage().to_string();
    head.text([bold(usage.trim_start_matches("Usage: "))]);
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        head.control("PP", []).text([roman(about.to_string())]);
    }
    out.extend_from_slice(head.to_roff().as_bytes());
    // clap_mangen titles its options section ".SH OPTIONS"; here it is a
    // subsection of the command's own section.
    let mut opts = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render_options_section(&mut opts)?;
    let opts = String::from_utf8_lossy(&opts).replacen(".SH OPTIONS", ".SS Options", 1);
    out.extend_from_slice(opts.as_bytes());
    if let Some(after) = cmd.get_after_help() {
        let mut notes = Roff::new();
        notes
            .control("SS", ["Notes"])
            .control("nf", [])
            .text([roman(after.to_string())])
            .control("fi", []);
        out.extend_from_slice(notes.to_roff().as_bytes());
    }
    Ok(())
}

/// A completion script for `shell`.
pub fn completion(shell: clap_complete::Shell) -> std::io::Result<String> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "podsnat", &mut out);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

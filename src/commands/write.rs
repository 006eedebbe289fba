//! `podsnat write`: splice the nat table into the rules file, test it with
//! `iptables-restore --test`, and write it atomically if it changed.

use std::io::Write;
use std::path::PathBuf;

use super::{ExitStatus, changed_status, emit, json, load_spec, verb};
use crate::cli::Format;
use crate::cli::WriteArgs;
use crate::error::Result;
use crate::{paths, render, write};

pub fn run(args: &WriteArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let table = render::nat_table(&load_spec(&args.spec)?);
    let opts = write::Options {
        check: args.change.check,
        diff: args.change.diff,
        ..write::Options::default()
    };
    let test_with = (!args.no_test).then_some(args.iptables_restore.as_str());
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(paths::default_rules_file(&args.root)));
    let path = paths::under_root(&args.root, &output);
    let outcome = write::write_nat(&table, &path, opts, test_with)?;
    let text = match args.change.format {
        Format::Json => json(&outcome)?,
        Format::Text => {
            let f = &outcome.file;
            format!(
                "{}{}: {} ({} rules, sha256 {})\n",
                f.diff.as_deref().unwrap_or(""),
                verb(f.changed, args.change.check),
                f.path.display(),
                outcome.rules,
                f.sha256
            )
        }
    };
    emit(out, &text)?;
    Ok(changed_status(outcome.file.changed))
}

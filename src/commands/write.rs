//! `podsnat write`: splice the nat table (rendered from the settings, or a
//! fleet's golden file with `--table`) into the rules file, test it with
//! `iptables-restore --test`, and write it atomically if it changed.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ExitStatus, changed_status, emit, json, load_spec, verb};
use crate::cli::Format;
use crate::cli::WriteArgs;
use crate::error::{Error, Result};
use crate::{config, paths, render, rules_file, write};

pub fn run(args: &WriteArgs, out: &mut impl Write) -> Result<ExitStatus> {
    let table = match &args.table {
        Some(path) => golden_table(path)?,
        None => render::nat_table(&load_spec(&args.spec)?),
    };
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

/// A fleet's golden nat file: exactly one `*nat` table, written by podsnat.
fn golden_table(path: &Path) -> Result<String> {
    let origin = path.display().to_string();
    let text = config::read_text(path)?;
    let invalid = |message: &str| Error::Invalid {
        origin: origin.clone(),
        message: message.to_owned(),
    };
    let tables = rules_file::parse(&text).map_err(|e| Error::Syntax {
        path: origin.clone(),
        message: e.to_string(),
    })?;
    match tables.as_slice() {
        [t] if t.name == "nat" && t.is_podsnats(&text) => {
            Ok(text.get(t.span.clone()).unwrap_or_default().to_owned())
        }
        [t] if t.name == "nat" => Err(invalid(
            "is not a nat table podsnat rendered (no \"# podsnat\" header above *nat)",
        )),
        _ => Err(invalid(
            "must hold exactly one table, *nat, as `podsnat render` and `fleet render` write it",
        )),
    }
}

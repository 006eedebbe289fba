//! `podsnat write`: splice the nat table (rendered from the settings, or a
//! fleet's golden file with `--table`) into the rules file, test it with
//! `iptables-restore --test`, and write it atomically if it changed. A
//! dual-stack node's two files (IPv4's and IPv6's) change all or nothing.

use std::path::{Path, PathBuf};

use serde_json::json as object;

use super::{ExitStatus, changed_status, load_spec, program, verb};
use crate::cli::Format;
use crate::cli::WriteArgs;
use crate::error::{Error, Result, unreadable};
use crate::family::Family;
use crate::printer::{Json, Printer, Shown};
use crate::{config, paths, render, rules_file, write};

pub fn run(args: &WriteArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
    // One nat table per family and the anchor: from the golden files, or rendered.
    let golden = args.table.is_some() || args.table6.is_some() || args.anchor_table.is_some();
    let (tables, anchor): (Vec<(Family, String)>, Option<String>) = if golden {
        (
            [(Family::V4, &args.table), (Family::V6, &args.table6)]
                .into_iter()
                .filter_map(|(f, p)| p.as_ref().map(|p| golden_table(p).map(|t| (f, t))))
                .collect::<Result<_>>()?,
            args.anchor_table
                .as_deref()
                .map(golden_anchor)
                .transpose()?,
        )
    } else {
        let node = load_spec(&args.spec)?;
        (
            node.specs()
                .iter()
                .map(|s| (s.family(), render::nat_table(s)))
                .collect(),
            node.anchor().then(|| render::anchor(&node)),
        )
    };
    let opts = write::Options {
        check: args.change.check,
        diff: args.change.diff,
        ..write::Options::default()
    };
    let paths: Vec<PathBuf> = tables
        .iter()
        .map(|(family, _)| {
            let given = match family {
                Family::V4 => &args.output,
                Family::V6 => &args.output6,
            };
            let output = given
                .clone()
                .unwrap_or_else(|| PathBuf::from(paths::default_rules_file(&args.root, *family)));
            paths::under_root(&args.root, &output)
        })
        .collect();
    let anchor_path = paths::under_root(
        &args.root,
        args.anchor_file
            .as_deref()
            .unwrap_or(Path::new(paths::ANCHOR_FILE)),
    );
    let mut files: Vec<write::NodeFile<'_>> = tables
        .iter()
        .zip(&paths)
        .map(|((family, nat), path)| write::NodeFile {
            content: write::Content::Nat(nat),
            path,
            test_with: (!args.no_test).then(|| {
                program(
                    *family,
                    &args.restore.iptables_restore,
                    &args.restore.ip6tables_restore,
                )
            }),
        })
        .collect();
    if let Some(text) = &anchor {
        files.push(write::NodeFile {
            content: write::Content::Anchor(text),
            path: &anchor_path,
            test_with: (!args.no_test).then_some(args.nft.as_str()),
        });
    }
    let outcomes = write::write_node_files(&files, opts)?;
    let changed = outcomes.iter().any(|o| o.file.changed);
    let text = match (args.change.format, outcomes.as_slice()) {
        (Format::Json, [one]) => Shown::Json(Json::of(one)?),
        (Format::Json, all) => Shown::Json(Json::of(&object!({"changed": changed, "files": all}))?),
        (Format::Text, all) => Shown::Text(
            all.iter()
                .map(|o| {
                    let f = &o.file;
                    format!(
                        "{}{}: {} ({} rules, sha256 {})\n",
                        f.diff.as_deref().unwrap_or(""),
                        verb(f.changed, args.change.check),
                        f.path.display(),
                        o.rules,
                        f.sha256
                    )
                })
                .collect(),
        ),
    };
    p.show(&text)?;
    Ok(changed_status(changed))
}

/// A fleet's golden anchor: a file `podsnat render --anchor` or `fleet
/// render` wrote (its `# podsnat` header says so); `nft -c` checks the rest.
fn golden_anchor(path: &Path) -> Result<String> {
    let text = config::read_text(path)?;
    if !text.starts_with("# podsnat ") || !text.contains(" podsnat {") {
        return Err(Error::Invalid {
            origin: path.display().to_string(),
            message:
                "is not an anchor podsnat rendered (no \"# podsnat\" header and podsnat table)"
                    .into(),
        });
    }
    Ok(text)
}

/// A fleet's golden nat file: exactly one `*nat` table, written by podsnat.
fn golden_table(path: &Path) -> Result<String> {
    let origin = path.display().to_string();
    let text = config::read_text(path)?;
    let invalid = |message: &str| Error::Invalid {
        origin: origin.clone(),
        message: message.to_owned(),
    };
    let tables = rules_file::parse(&text).map_err(unreadable(origin.clone()))?;
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

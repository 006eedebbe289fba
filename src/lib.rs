//! podsnat: keeps pod source IPs on Flannel nodes by rendering, checking and
//! atomically writing the node's iptables nat table.
//!
//! The layers, each importing only from those below it:
//!
//! ```text
//! main ─> commands/        one file per command: arguments in, report text out
//!           │  cli          clap definitions only
//!           ├─> fleet       an inventory -> every node's golden files
//!           ├─> unit/       podsnat's systemd units: render (pure), install
//!           ├─> live/       the --noflush planner of pin and --repair (pure)
//!           ├─> verify/     parse/ -> engine/ (one walk over every layer) -> policy -> report (pure)
//!           ├─> docker      docker's settings, and whether they fit the node
//!           ├─> write       compare, diff, test, then write a file
//!           ├─> render      NodeSpec -> one family's nat table text, podsnat's own rules (pure)
//!           ├─> config/     files and flags -> a checked Node: a NodeSpec per family
//!           └─> rules_file  the one iptables-save format parser (pure)
//! edges:   system (runs programs), atomic (writes files), paths (every path from a root),
//!          printer (owns stdout and stderr)
//! family:  IPv4 or IPv6, the lowest layer (which table, file and programs)
//! error:   one error type, messages that quote the input
//! verdict: the Status verify and docker give
//! ```
//!
//! Data flow of `write`: `config::load` -> `NodeSpec` -> `render::nat_table`
//! -> `rules_file::splice` into the existing file -> `system::restore_test`
//! -> `atomic::write`. `verify` reads `iptables-save` text through
//! `rules_file::parse` and walks it with `verify::evaluate`.

// Tests may unwrap and index; the lints in Cargo.toml hold for the rest.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::string_slice
    )
)]

mod atomic;
mod cli;
mod cni;
mod commands;
mod config;
mod conntrack;
mod docker;
mod error;
mod family;
mod fleet;
mod live;
mod metrics;
mod paths;
mod printer;
mod render;
mod rules_file;
mod system;
mod unit;
mod verdict;
mod verify;
mod write;

// The library's surface: what `main`, the integration tests and the
// benches use. Everything else stays inside the crate.

/// The command line, and running it (what `main` does).
pub use cli::{Cli, Command};
pub use commands::{ExitStatus, load_spec, run};
/// Printing: every line podsnat prints goes through [`safe`], cut at
/// [`LINE_MAX`] bytes.
pub use error::{Error, LINE_MAX, safe};
/// The one owner of stdout and stderr.
pub use printer::Printer;

/// A node's settings: the sources, and the checked node with a
/// [`NodeSpec`] per family.
pub use config::{Mode, Node, NodeSpec, RawConfig, Sources, load};
pub use family::Family;

/// The nat table podsnat renders for one family, and podsnat's own rules
/// in it.
pub use render::{exclusion, nat_table, own_chain, rule_count};
/// The iptables-save format: read a file's tables, splice a nat table in.
pub use rules_file::{Table, parse as parse_rules, splice};
/// The systemd units: `install-unit`'s spec and the boot unit's text.
pub use unit::{
    ALL as UNITS, Files as UnitFiles, Kind as UnitKind, UnitSpec, render as render_unit,
};
/// The digest `write` reports for a file.
pub use write::sha256_hex;

/// live: the `--noflush` change `verify --repair` (and `pin`) plans.
pub use live::{Change, repair::plan_repair};
/// verify: judge a nat table (with its ipsets) against a node's spec,
/// and the report.
pub use verify::{
    CheckName, Expect, Forward, Layers, Malformed, NftLayer, Report, RuleError, Ruleset, Sets,
    Status, check_all, evaluate, evaluate_layers, evaluate_with, text as report_text,
};

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
//!           ├─> verify/     rule parser, atoms, kernel walk, repair (pure)
//!           ├─> write       compare, diff, test, then write a file
//!           ├─> render      NodeSpec -> one family's nat table text, podsnat's own rules (pure)
//!           ├─> config/     files and flags -> a checked Node: a NodeSpec per family
//!           └─> rules_file  the one iptables-save format parser (pure)
//! edges:   system (runs programs), atomic (writes files), paths (every path from a root)
//! family:  IPv4 or IPv6, the lowest layer (which table, file and programs)
//! error:   one error type, messages that quote the input
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

pub mod atomic;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod family;
pub mod fleet;
pub mod paths;
pub mod pin;
pub mod render;
pub mod rules_file;
pub mod system;
pub mod unit;
pub mod verify;
pub mod write;

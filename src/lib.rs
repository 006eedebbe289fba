//! podsnat: keeps pod source IPs on Flannel nodes by rendering, checking and
//! atomically writing the node's iptables nat table.
//!
//! Data flow: `config::load` -> `NodeSpec` -> `render::nat_table` (pure) ->
//! `rules_file::splice` into the existing file (pure) -> `system::restore_test`
//! -> `atomic::write`. `write` ties those steps together for the CLI.
//! `unit` renders and installs the systemd unit that restores the table at boot.
//! `verify` checks a live table in rule order; `fleet` renders many nodes.

// Input never panics podsnat: every failure is an error with a message and
// exit 1. Tests may unwrap.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::string_slice
    )
)]

pub mod atomic;
pub mod cli;
pub mod config;
pub mod error;
pub mod fleet;
pub mod generate;
pub mod render;
pub mod rules_file;
pub mod system;
pub mod unit;
pub mod verify;
pub mod write;

//! podsnat's integration tests, one binary (one link, one run). Each module
//! is one concern; `common` holds the helpers they share: network
//! namespaces that clean up after themselves, the two iptables backends,
//! requirement checks that fail (never skip), and the nspawn boot helpers.
//! Golden cases live in `tests/cases/<case>/` with their snapshot beside them.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::string_slice,
    clippy::unreachable
)]

mod common;

mod anchor;
mod anchor_docker;
mod ansible;
mod boot;
mod cni;
mod corpus;
mod crash;
mod crosshost;
mod docker;
mod docker_forward;
mod dualstack;
mod fleet;
mod flows;
mod generate;
mod hostile;
mod kube_proxy;
mod metrics;
mod output;
mod package;
mod props;
mod quickstart;
mod restore;
mod unit;
mod verify;
mod write;

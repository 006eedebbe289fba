//! One file per command. Each reads its arguments, calls the pure core and
//! the edges (`write`, `unit`, `fleet`, `system`), and owns its report text.
//! Exit statuses: 0 nothing changed, 2 changed (or would change), 1 error.

mod fleet;
mod generate;
mod install_unit;
mod pin;
mod render;
mod textfile;
mod verify;
mod write;

use std::process::ExitCode;

use crate::cli::{Cli, Command, SpecArgs};
use crate::config::{self, Node, RawConfig, Sources};
use crate::error::{Error, Result, unreadable};
use crate::family::Family;
use crate::printer::Printer;
use crate::rules_file::{self, Table};

/// What a command did, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Unchanged,
    Changed,
    /// Exit 1 after a report that already says why (e.g. cannot decide).
    Failed,
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        match status {
            ExitStatus::Unchanged => ExitCode::SUCCESS,
            ExitStatus::Changed => ExitCode::from(2),
            ExitStatus::Failed => ExitCode::from(1),
        }
    }
}

/// Runs one command; everything it prints goes through `p`.
pub fn run(cli: Cli, p: &mut Printer<'_>) -> Result<ExitStatus> {
    match cli.command {
        Command::Render(args) => render::run(&args, p),
        Command::Write(args) => write::run(&args, p),
        Command::InstallUnit(args) => install_unit::run(&args, p),
        Command::Verify(args) => verify::run(&args, p),
        Command::Pin(args) => pin::run(&args, p),
        Command::Fleet(cmd) => fleet::run(&cmd, p),
        Command::Generate { what } => generate::run(what, p),
    }
}

/// Where the node's settings come from. Flags override subnet.env, which
/// must agree with the config file where both set a value.
pub fn load_spec(args: &SpecArgs) -> Result<Node> {
    let docker = match (args.docker, args.no_docker) {
        (_, true) => Some(false),
        (true, false) => Some(true),
        (false, false) => None,
    };
    let flags = RawConfig {
        cluster_cidr: args.cluster_cidr.clone(),
        pod_subnet: args.pod_subnet.clone(),
        cluster_cidr_v6: args.cluster_cidr_v6.clone(),
        pod_subnet_v6: args.pod_subnet_v6.clone(),
        bridge: args.bridge.clone(),
        no_masquerade: (!args.no_masquerade.is_empty()).then(|| args.no_masquerade.clone()),
        random_fully: args.random_fully.then_some(true),
        docker,
        mode: args.mode.map(|m| m.to_string()),
        anchor: args.no_anchor.then_some(false),
        masquerade_bit: args.masquerade_bit,
        egress_owner: args.egress_owner.map(|o| o.to_string()),
        cni_config: args.cni_config.clone(),
    };
    config::load(Sources {
        config: args.config.as_deref(),
        flannel_env: args.flannel_env.as_deref(),
        flags,
    })
}

/// The program of `family`: the IPv4 one as given, or the IPv6 one.
fn program<'a>(family: Family, v4: &'a str, v6: &'a str) -> &'a str {
    match family {
        Family::V4 => v4,
        Family::V6 => v6,
    }
}

/// How a file's state reads in a report.
fn verb(changed: bool, check: bool) -> &'static str {
    match (changed, check) {
        (false, _) => "unchanged",
        (true, true) => "would change",
        (true, false) => "changed",
    }
}

fn changed_status(changed: bool) -> ExitStatus {
    if changed {
        ExitStatus::Changed
    } else {
        ExitStatus::Unchanged
    }
}

/// The nat table of `text`, read from `source` (a file, or iptables-save).
fn nat_table<'a>(source: &str, text: &'a str) -> Result<Table<'a>> {
    rules_file::parse(text)
        .map_err(unreadable(source.to_owned()))?
        .into_iter()
        .find(|t| t.name == "nat")
        .ok_or_else(|| Error::Invalid {
            origin: source.to_owned(),
            message: "has no *nat table".into(),
        })
}

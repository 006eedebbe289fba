//! Options several commands share: report formats, the families the units
//! serve, the iptables programs podsnat runs, and how a writing command
//! reports.

use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// verify's reports: text, JSON, or the Prometheus text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    Text,
    Json,
    /// The metrics `--textfile` writes, for node_exporter's textfile collector.
    Prometheus,
}

/// Which nat tables the units restore and pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Families {
    Ipv4,
    Ipv6,
    Dual,
}

/// The restore programs podsnat runs, one per family: they test a new file
/// (`--test`) and apply a runtime change (`--noflush`).
#[derive(Debug, Args)]
pub struct RestorePrograms {
    /// The iptables-restore podsnat runs, e.g. iptables-legacy-restore for the legacy backend.
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-restore")]
    pub iptables_restore: String,
    /// The ip6tables-restore podsnat runs for IPv6 tables.
    #[arg(long, value_name = "PROGRAM", default_value = "ip6tables-restore")]
    pub ip6tables_restore: String,
}

/// The save programs that read the live tables, one per family.
#[derive(Debug, Args)]
pub struct SavePrograms {
    /// The iptables-save that reads the live table, e.g. iptables-legacy-save.
    #[arg(long, value_name = "PROGRAM", default_value = "iptables-save")]
    pub iptables_save: String,
    /// The ip6tables-save that reads the live IPv6 table.
    #[arg(long, value_name = "PROGRAM", default_value = "ip6tables-save")]
    pub ip6tables_save: String,
}

/// How a command that writes files reports: what config management needs.
#[derive(Debug, Args)]
pub struct ChangeArgs {
    /// Change nothing; exit 2 if a file would change.
    #[arg(long)]
    pub check: bool,
    /// Print a unified diff of each file.
    #[arg(long)]
    pub diff: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

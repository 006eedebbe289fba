//! What `podsnat verify` reads besides the nat table: `iptables-restore
//! --test` on a `--file`, the ipsets `-m set` rules match, and docker's own
//! settings (daemon.json, docker.service's flags).

use std::path::{Path, PathBuf};

use crate::cli::VerifyArgs;
use crate::cni::{self, CniError};
use crate::config::{EgressOwner, Node, NodeSpec};
use crate::conntrack;
use crate::docker::DockerSettings;
use crate::error::{Error, Result, unreadable};
use crate::verify::flows::{FlowJudge, FlowsCheck};
use crate::verify::{self, Sets};
use crate::{config, paths, system};

/// `iptables-restore --test` on the whole file; a rejection is an error.
/// Where it cannot run (not root, not installed) the note to print says so.
pub(super) fn test_file(restore: &str, source: &str, text: &str) -> Result<Option<String>> {
    if !system::is_root() {
        return Ok(Some(format!(
            "{restore} --test was not run on {source}: it needs root (--no-test skips it)"
        )));
    }
    match system::restore_test(restore, text) {
        Ok(Ok(())) => Ok(None),
        Ok(Err(rejected)) => Err(Error::Invalid {
            origin: source.to_owned(),
            message: format!(
                "{} rejects it, so a boot would restore nothing: {}{}",
                rejected.command,
                rejected.stderr.lines().collect::<Vec<_>>().join(" | "),
                if text.contains('\r') {
                    " (the file has CRLF line ends, which iptables-restore refuses)"
                } else {
                    ""
                }
            ),
        }),
        Err(e) if e.not_installed() => Ok(Some(format!(
            "{restore} --test was not run on {source}: {restore} is not installed (--no-test skips it)"
        ))),
        Err(e) => Err(e),
    }
}

/// The sets `-m set` rules match: `--ipsets FILE`, or on the live table
/// the kernel's (`ipset save`, where the table uses sets and ipset is
/// installed). None known otherwise.
pub(super) fn ipsets(args: &VerifyArgs, table_text: &str, live: bool) -> Result<Sets> {
    let (origin, text) = match &args.ipsets {
        Some(path) => (path.display().to_string(), config::read_any(path)?),
        None if live && table_text.contains("--match-set") => match system::ipset_save()? {
            Some(text) => ("ipset save".to_owned(), text),
            None => return Ok(Sets::default()),
        },
        _ => return Ok(Sets::default()),
    };
    Sets::parse(&text).map_err(unreadable(origin))
}

/// docker's settings: the files given, or in live mode the usual places
/// that exist. `None` when there is nothing to read (docker not installed,
/// or a `--file` review without `--docker-config`).
pub(super) fn docker_settings(args: &VerifyArgs, live: bool) -> Result<Option<DockerSettings>> {
    let json = args
        .docker_config
        .clone()
        .or_else(|| live.then(|| PathBuf::from(paths::DOCKER_DAEMON_JSON)));
    let mut units = args.docker_unit.clone();
    if live && units.is_empty() {
        let mut dropins: Vec<PathBuf> = std::fs::read_dir(paths::DOCKER_UNIT_DROPINS)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dropins.sort();
        units.extend(
            dropins
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "conf")),
        );
        units.extend(paths::DOCKER_UNITS.iter().map(PathBuf::from));
    }
    let mut settings = DockerSettings::default();
    let given = |p: &Path| {
        args.docker_config.as_deref() == Some(p) || args.docker_unit.iter().any(|u| u == p)
    };
    if let Some(path) = json
        && (given(&path) || path.exists())
    {
        let origin = path.display().to_string();
        let text = config::read_text(&path)?;
        settings
            .add_daemon_json(&origin, &text)
            .map_err(unreadable(origin))?;
    }
    for path in units {
        if given(&path) || path.exists() {
            settings.add_unit(&path.display().to_string(), &config::read_text(&path)?);
        }
    }
    Ok((!settings.read.is_empty()).then_some(settings))
}

/// The nftables ruleset: the live one, or `--nft-file` with `--file`;
/// `None` when a file is judged alone.
///
/// Live, it lists the chains first, then each table that has a nat chain
/// at postrouting (a jump never leaves its table), and with `forward` each
/// that has a filter chain at prerouting or forward. iptables-nft's own
/// tables are left to iptables-save: on a node with kube-proxy's 20,000 rules
/// `nft -j list ruleset` takes seconds, most of them for that table.
pub(super) fn nft_ruleset(
    args: &VerifyArgs,
    live: bool,
    forward: bool,
) -> Result<Option<verify::Ruleset>> {
    let parse =
        |origin: String, text: &str| verify::Ruleset::parse(text).map_err(unreadable(origin));
    if let Some(path) = &args.nft_file {
        let text = config::read_any(path)?;
        return parse(path.display().to_string(), &text).map(Some);
    }
    if !live {
        return Ok(None);
    }
    let list = |what: &[&str]| {
        system::nft_list(&args.nft, what).map_err(|e| match e {
            Error::Spawn { command, source, .. } => Error::Spawn {
                command,
                why: "; verify reads every nftables nat chain too, since any of them can masquerade pod traffic (the nftables package has nft)",
                source,
            },
            e => e,
        })
    };
    let origin = |what: &str| format!("{} -j list {what}", args.nft);
    let chains = parse(origin("chains"), &list(&["chains"])?)?;
    let (mut tables, iptables) = chains.tables_to_read(forward);
    for (family, table) in iptables {
        // Legacy iptables makes no nftables table: one of that name is
        // someone else's and is read as any other.
        let save = if family == "ip6" {
            &args.save.ip6tables_save
        } else {
            &args.save.iptables_save
        };
        if !system::iptables_is_nft(save)? {
            tables.push((family, table));
        }
    }
    let mut ruleset = verify::Ruleset::default();
    for (family, table) in tables {
        let text = list(&["table", &family, &table])?;
        ruleset.merge(parse(origin(&format!("table {family} {table}")), &text)?);
    }
    Ok(Some(ruleset))
}

/// Why the CNI is known to masquerade each pod, where the tables alone
/// cannot tell: `egress_owner = "cni"`, or the `cni_config` file's bridge
/// plugin with `"ipMasq": true`. A `cni_config` that cannot be read, is not
/// a CNI config, sets up another bridge than the config's, or says the
/// plugin does not masquerade where `egress_owner = "cni"` says it does, is
/// an error naming the setting and the file: read before anything is
/// judged or repaired.
pub(super) fn cni_masquerades(node: &Node) -> Result<Option<String>> {
    let Some(spec) = node.specs().first() else {
        return Ok(None);
    };
    let net = match node.cni_config() {
        None => None,
        Some((path, origin)) => {
            let value = path.display().to_string();
            let bad = |e: CniError| Error::FieldFile {
                origin: origin.to_owned(),
                field: "cni_config",
                value: value.clone(),
                source: Box::new(e),
            };
            let text =
                config::read_text(path).map_err(|e| bad(CniError::Unreadable(Box::new(e))))?;
            let net = cni::parse(&text).map_err(bad)?;
            if net.bridge != spec.bridge().as_str() {
                return Err(Error::field(
                    origin,
                    "cni_config",
                    value,
                    format!(
                        "sets up bridge {:?} (its {} plugin), but bridge is {:?}",
                        net.bridge,
                        net.plugin,
                        spec.bridge().as_str()
                    ),
                ));
            }
            Some((value, origin, net))
        }
    };
    match (spec.egress_owner(), net) {
        (EgressOwner::Cni, Some((value, origin, net))) if net.ip_masq == Some(false) => {
            Err(Error::field(
                origin,
                "cni_config",
                value,
                "sets no \"ipMasq\": true, but egress_owner = \"cni\" says the CNI masquerades each pod",
            ))
        }
        (EgressOwner::Cni, _) => Ok(Some("egress_owner = \"cni\"".to_owned())),
        (EgressOwner::Detect, Some((value, _, net))) if net.ip_masq == Some(true) => {
            Ok(Some(format!("{value} sets \"ipMasq\": true")))
        }
        (EgressOwner::Detect, _) => Ok(None),
    }
}

/// The family's live flows from the pod subnet that were source-NATed
/// (the kernel filters: `-s` with the mask, `--src-nat`), judged as they
/// stream in. A conntrack that is not installed, or that fails, leaves them
/// not checked, and the report says so; a line podsnat cannot read is an
/// error naming it. `keep_connections`: for a repair that resets them.
pub(super) fn flows(
    conntrack_prog: &str,
    spec: &NodeSpec,
    keep_connections: bool,
) -> Result<FlowsCheck> {
    let subnet = spec.pod_subnet().to_string();
    let args = [
        "-L",
        "-f",
        spec.family().key(),
        "-s",
        subnet.as_str(),
        "--src-nat",
    ];
    let command = format!("{conntrack_prog} {}", args.join(" "));
    let mut judge = FlowJudge::new(spec, keep_connections);
    let read = system::each_line(conntrack_prog, &args, conntrack::MAX_LINE, |n, line| {
        let flow =
            conntrack::parse_bytes(line).map_err(unreadable(format!("{command}: line {n}")))?;
        judge.add(flow);
        Ok(())
    });
    match read {
        Ok(()) => Ok(judge.done()),
        Err(e) if e.not_installed() => {
            Ok(FlowsCheck::not_checked(conntrack::missing(conntrack_prog)))
        }
        Err(Error::Failed { command, stderr }) => Ok(FlowsCheck::not_checked(format!(
            "{command} failed: {stderr}"
        ))),
        Err(e) => Err(e),
    }
}

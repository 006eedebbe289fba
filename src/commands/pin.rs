//! `podsnat pin`: podsnat's rules back above docker's broad MASQUERADE rule,
//! in one `iptables-restore --noflush` transaction (see `crate::live::pin`), for
//! each family's rules file given. podsnat-pin.service runs it after every
//! docker start.

use std::path::{Path, PathBuf};

use serde_json::json as object;

use super::{ExitStatus, nat_table, program, textfile};
use crate::cli::{Format, PinArgs};
use crate::error::{Error, Result, unreadable};
use crate::family::Family;
use crate::live::pin;
use crate::printer::{Json, Printer, Shown};
use crate::{config, metrics, paths, system};

/// A rules file holds every table of the node; podsnat's own is small, but
/// the file may carry a large filter table beside it.
const MAX_RULES_FILE: u64 = 256 * 1024 * 1024;

/// The live table can change between `iptables-save` and the restore
/// (docker still adding port maps); a `-D` of a moved rule then fails the
/// whole transaction, which is planned and tried again.
const ATTEMPTS: usize = 3;

pub fn run(args: &PinArgs, p: &mut Printer<'_>) -> Result<ExitStatus> {
    let clock = textfile::Stopwatch::start();
    // The files given; without any, the IPv4 rules file at its default place.
    let mut files: Vec<(Family, PathBuf)> = [(Family::V4, &args.file), (Family::V6, &args.file6)]
        .into_iter()
        .filter_map(|(f, p)| p.clone().map(|p| (f, p)))
        .collect();
    if files.is_empty() {
        files.push((
            Family::V4,
            PathBuf::from(paths::default_rules_file(Path::new("/"), Family::V4)),
        ));
    }
    let titled = files.len() > 1;
    let mut shown = Vec::new();
    let mut status = ExitStatus::Unchanged;
    let mut runs = Vec::new();
    for (family, path) in &files {
        let (changed, value, text) = pin_one(args, *family, path)?;
        if changed {
            status = ExitStatus::Changed;
        }
        runs.push(metrics::PinRun {
            family: *family,
            pinned: changed && !args.check,
        });
        shown.push((family, value, text));
    }
    if let Some(dir) = &args.textfile {
        textfile::write(dir, metrics::PIN_FILE, |previous| {
            metrics::pin(&runs, clock.read(), previous)
        })?;
    }
    let text = match (args.format, shown.as_slice()) {
        (Format::Json, [(_, value, _)]) => Shown::Json(Json::of(value)?),
        (Format::Json, all) => {
            let map: serde_json::Map<String, serde_json::Value> = all
                .iter()
                .map(|(f, v, _)| (f.key().to_owned(), v.clone()))
                .collect();
            Shown::Json(Json::of(&map)?)
        }
        (Format::Text, all) => Shown::Text(
            all.iter()
                .map(|(f, _, t)| {
                    if titled {
                        format!("{}: {t}", f.iptables())
                    } else {
                        t.clone()
                    }
                })
                .collect(),
        ),
    };
    p.show(&text)?;
    Ok(status)
}

/// Pins one family's rules; returns whether it pinned (or would), and the
/// report as JSON and as text.
fn pin_one(
    args: &PinArgs,
    family: Family,
    path: &Path,
) -> Result<(bool, serde_json::Value, String)> {
    let save = program(family, &args.save.iptables_save, &args.save.ip6tables_save);
    let restore = program(
        family,
        &args.restore.iptables_restore,
        &args.restore.ip6tables_restore,
    );
    let origin = path.display().to_string();
    let text = config::read_limited(path, MAX_RULES_FILE)?;
    let file_nat = nat_table(&origin, &text)?;
    let ours = pin::ours(&text, &file_nat, family).map_err(unreadable(origin.clone()))?;
    let live_source = format!("{save} -t nat");
    let mut attempt = 1;
    loop {
        let live_text = system::save_nat(save)?;
        let Some(plan) = pin::plan(&ours, &nat_table(&live_source, &live_text)?) else {
            return Ok((
                false,
                object!({"pin": null, "applied": false}),
                "pin: podsnat's rules already stand above docker's; nothing to do\n".to_owned(),
            ));
        };
        if args.check {
            let text = format!(
                "would pin podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}",
                plan.position, plan.transaction
            );
            return Ok((true, object!({"pin": plan, "applied": false}), text));
        }
        match system::restore_noflush(restore, &plan.transaction) {
            Ok(()) => {
                let (deleted, flows) = clear_datagrams(args, family, &file_nat)?;
                let text = format!(
                    "pinned podsnat's rules at POSTROUTING rule {} with `{restore} --noflush`:\n{}{flows}",
                    plan.position, plan.transaction
                );
                let value = object!({"pin": plan, "applied": true, "attempts": attempt, "flows_deleted": deleted});
                return Ok((true, value, text));
            }
            Err(Error::Failed { .. }) if attempt < ATTEMPTS => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

/// After a pin, the datagram flows (udp, icmp) set up while docker's rule
/// stood above podsnat's: the kernel keeps their NAT, so they go (their
/// next packet takes the fixed path), found by the kernel from the pod
/// subnet and the exclusions podsnat's rules file names. Connections are
/// left (`verify --repair --reset-connections` resets them). Returns the
/// count and the report's line; without conntrack, a line that says so.
fn clear_datagrams(
    args: &PinArgs,
    family: Family,
    nat: &crate::rules_file::Table<'_>,
) -> Result<(usize, String)> {
    let pods = nat
        .rules
        .iter()
        .find(|r| r.chain == "POSTROUTING")
        .and_then(|r| crate::verify::subnet_and_bridge(r.text, family))
        .map(|(net, _)| net);
    let Some(pods) = pods else {
        return Ok((0, String::new()));
    };
    let mut deleted = 0;
    let mut commands = Vec::new();
    for net in exclusions(nat) {
        for proto in crate::conntrack::datagram_protos(&pods) {
            let a = crate::conntrack::delete_args(proto, &pods, &net);
            commands.push(format!("{} -D {}", args.conntrack, a.join(" ")));
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            match system::conntrack_delete(&args.conntrack, &a) {
                Ok(n) => deleted += n,
                Err(e) if e.not_installed() => {
                    return Ok((
                        0,
                        format!(
                            "flows not cleared: {}\n",
                            crate::conntrack::missing(&args.conntrack)
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
    let line = match deleted {
        0 => String::new(),
        n => format!(
            "deleted {} that carried the node's address, with `{}`\n",
            crate::verify::flows::count(n, "datagram flow", "datagram flows"),
            commands.join("`, `")
        ),
    };
    Ok((deleted, line))
}

/// The destinations podsnat's rules file keeps the pod source for: its
/// own chain's `-d NET -j ACCEPT` rules, or classic mode's `! -d NET`.
fn exclusions(nat: &crate::rules_file::Table<'_>) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for r in &nat.rules {
        let words: Vec<&str> = r.text.split_whitespace().collect();
        let net = match words.as_slice() {
            ["-A", chain, "-d", net, "-j", "ACCEPT"] if *chain == crate::render::OWN_CHAIN => {
                Some(*net)
            }
            ["-A", "POSTROUTING", ..] if words.contains(&"MASQUERADE") => {
                words.windows(3).find_map(|w| match w {
                    ["!", "-d", net] => Some(*net),
                    _ => None,
                })
            }
            _ => None,
        };
        out.extend(net.and_then(|n| n.parse::<ipnet::IpNet>().ok()));
    }
    out
}

//! The only module that runs other programs.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Why `iptables-restore --test` said no.
#[derive(Debug)]
pub struct Rejected {
    pub command: String,
    pub stderr: String,
}

/// Runs `<restore> --test` on `content` via stdin. `--test` parses and checks
/// the whole ruleset against the kernel's modules but changes nothing.
pub fn restore_test(restore: &str, content: &str) -> Result<std::result::Result<(), Rejected>> {
    let args = ["--test", "-w", "5"];
    let command = format!("{restore} {}", args.join(" "));
    let spawn_err = |source| Error::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(restore)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means the child exited early; its status says why.
        let _ = stdin.write_all(content.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        return Ok(Ok(()));
    }
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    if stderr.is_empty() {
        stderr = format!("(no message; {})", out.status);
    }
    Ok(Err(Rejected { command, stderr }))
}

/// True when systemd is PID 1 on this machine (the test `sd_booted()` uses).
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// `systemctl daemon-reload`, so a changed unit file takes effect.
pub fn daemon_reload() -> Result<()> {
    let command = "systemctl daemon-reload".to_owned();
    let out = Command::new("systemctl")
        .arg("daemon-reload")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Spawn {
        command,
        source: std::io::Error::other(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )),
    })
}

/// `<save> -t nat`: the live nat table as text.
pub fn save_nat(save: &str) -> Result<String> {
    let command = format!("{save} -t nat");
    let out = Command::new(save)
        .args(["-t", "nat"])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Spawn {
            command,
            source: std::io::Error::other(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            )),
        });
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Spawn {
        command,
        source: std::io::Error::other(format!("output is not UTF-8: {e}")),
    })
}

/// `<restore> --noflush -w 5` with `content` on stdin: one transaction that
/// changes only what it names.
pub fn restore_noflush(restore: &str, content: &str) -> Result<()> {
    let args = ["--noflush", "-w", "5"];
    let command = format!("{restore} {}", args.join(" "));
    let spawn_err = |source| Error::Spawn {
        command: command.clone(),
        source,
    };
    let mut child = Command::new(restore)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(content.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Spawn {
        command: command.clone(),
        source: std::io::Error::other(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        )),
    })
}

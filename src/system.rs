//! The only module that runs other programs.

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};

use crate::error::{Error, Result, unreadable};

/// Why `iptables-restore --test` said no.
#[derive(Debug)]
pub struct Rejected {
    pub command: String,
    pub stderr: String,
}

/// What a finished program left: its exit, its stdout, its stderr.
struct Finished {
    command: String,
    ok: bool,
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Finished {
    /// What the program said on stderr, or its exit status if nothing.
    fn message(&self) -> String {
        match self.stderr.trim_end() {
            "" => format!("(no message; {})", self.status),
            text => text.to_owned(),
        }
    }

    /// The error for a program that did not succeed, with its message.
    fn failure(self) -> Error {
        Error::Failed {
            stderr: self.message(),
            command: self.command,
        }
    }

    /// The stdout of a program that succeeded, as UTF-8 text.
    fn text(self) -> Result<String> {
        if !self.ok {
            return Err(self.failure());
        }
        String::from_utf8(self.stdout).map_err(unreadable(format!("{}'s output", self.command)))
    }

    /// A check's verdict (`--test`, `-c`): accepted, or why not.
    fn verdict(self) -> std::result::Result<(), Rejected> {
        if self.ok {
            return Ok(());
        }
        Err(Rejected {
            stderr: self.message(),
            command: self.command,
        })
    }
}

/// Runs `prog args`, feeding `stdin` if given, and waits for it.
fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<Finished> {
    let command = format!("{prog} {}", args.join(" "));
    let spawn_err = |source| Error::spawn(command.clone(), source);
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means the child exited early; its status says why.
        let _ = pipe.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    Ok(Finished {
        ok: out.status.success(),
        status: out.status,
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command,
    })
}

/// Runs `<restore> --test` on `content` via stdin. `--test` parses and checks
/// the whole ruleset against the kernel's modules but changes nothing.
pub fn restore_test(restore: &str, content: &str) -> Result<std::result::Result<(), Rejected>> {
    Ok(run(restore, &["--test", "-w", "5"], Some(content))?.verdict())
}

/// `<nft> -c -f /dev/stdin` on `content`: nft parses the file and the
/// kernel checks the whole transaction, which is then discarded.
pub fn nft_check(nft: &str, content: &str) -> Result<std::result::Result<(), Rejected>> {
    Ok(run(nft, &["-c", "-f", "/dev/stdin"], Some(content))?.verdict())
}

/// `<nft> -f FILE`: loads a file in one transaction.
pub fn nft_load(nft: &str, file: &std::path::Path) -> Result<()> {
    let path = file.display().to_string();
    let done = run(nft, &["-f", &path], None)?;
    if done.ok { Ok(()) } else { Err(done.failure()) }
}

/// `<nft> -j list ARGS` (`ruleset`, `chains`, `table ip podsnat`): as JSON.
pub fn nft_list(nft: &str, what: &[&str]) -> Result<String> {
    let mut args = vec!["-j", "list"];
    args.extend_from_slice(what);
    run(nft, &args, None)?.text()
}

/// Whether `<save> --version` names the nf_tables backend (iptables-nft),
/// whose nat table nftables lists too.
pub fn iptables_is_nft(save: &str) -> Result<bool> {
    Ok(run(save, &["--version"], None)?
        .text()?
        .contains("nf_tables"))
}

/// True when this process runs as root (effective uid 0), which
/// `iptables-restore --test` needs.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// True when systemd is PID 1 on this machine (the test `sd_booted()` uses).
pub fn systemd_booted() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}

/// `systemctl daemon-reload`, so a changed unit file takes effect.
pub fn daemon_reload() -> Result<()> {
    let done = run("systemctl", &["daemon-reload"], None)?;
    if done.ok { Ok(()) } else { Err(done.failure()) }
}

/// `<save> -t nat`: the live nat table as text.
///
/// Its stdout is an in-memory file (memfd), not a pipe: for a 20,000-rule
/// table iptables-save writes 2.5 MB, and through a 64 KiB pipe it stops
/// at every full pipe until podsnat reads (measured with legacy: `| cat`
/// costs about 10% of iptables-save's own run). Where memfd_create is not
/// available it falls back to the pipe.
pub fn save_nat(save: &str) -> Result<String> {
    save_table(save, "nat")
}

/// `iptables-save -t TABLE` (filter, raw), read the same way.
pub fn save_table(save: &str, table: &str) -> Result<String> {
    let done = match memfd() {
        Some(file) => run_into(save, &["-t", table], file)?,
        None => run(save, &["-t", table], None)?,
    };
    done.text()
}

/// The memory file as /proc/PID/fd names it.
const MEMFD_NAME: &str = "memfd:podsnat-save";

/// An anonymous in-memory file, or `None` where the kernel has none.
fn memfd() -> Option<std::fs::File> {
    rustix::fs::memfd_create(
        MEMFD_NAME.trim_start_matches("memfd:"),
        rustix::fs::MemfdFlags::CLOEXEC,
    )
    .ok()
    .map(std::fs::File::from)
}

/// Runs `prog args` with stdout into `file`, then reads it back.
fn run_into(prog: &str, args: &[&str], mut file: std::fs::File) -> Result<Finished> {
    use std::io::{Read, Seek};
    let command = format!("{prog} {}", args.join(" "));
    let io_err = |source| Error::spawn(command.clone(), source);
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone().map_err(io_err)?))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err)?;
    let out = child.wait_with_output().map_err(io_err)?;
    // Sized from the file: one read, no regrowing copies of 2.5 MB.
    let len = file.metadata().map_or(0, |m| m.len());
    let mut stdout = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The program ran; a failure now is reading its output back from the
    // memory file, not running it.
    file.rewind()
        .and_then(|()| file.read_to_end(&mut stdout))
        .map_err(|e| Error::io(MEMFD_NAME, "cannot read back the saved table from", e))?;
    Ok(Finished {
        ok: out.status.success(),
        status: out.status,
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        command,
    })
}

/// `<restore> --noflush -w 5` with `content` on stdin: one transaction that
/// changes only what it names.
pub fn restore_noflush(restore: &str, content: &str) -> Result<()> {
    let done = run(restore, &["--noflush", "-w", "5"], Some(content))?;
    if done.ok { Ok(()) } else { Err(done.failure()) }
}

/// `ipset save`: the kernel's ipsets as text. `Ok(None)` when ipset is not
/// installed (then no set's contents are known).
pub fn ipset_save() -> Result<Option<String>> {
    let done = match run("ipset", &["save"], None) {
        Ok(d) => d,
        Err(e) if e.not_installed() => return Ok(None),
        Err(e) => return Err(e),
    };
    done.text().map(Some)
}

/// Runs `prog args` and hands each line of its stdout (without the
/// newline, numbered from 1) to `each` as it is read, holding one line of
/// at most `max` bytes (and the byte that shows it is longer) at a time:
/// conntrack's table on a busy node holds 262,144 flows. The first error
/// of `each` stops the program and is returned.
pub fn each_line(
    prog: &str,
    args: &[&str],
    max: usize,
    mut each: impl FnMut(usize, &[u8]) -> Result<()>,
) -> Result<()> {
    let command = format!("{prog} {}", args.join(" "));
    let spawn_err = |source| Error::spawn(command.clone(), source);
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(Error::Failed {
            command,
            stderr: "no pipe to read its output from".into(),
        });
    };
    let mut reader = std::io::BufReader::new(stdout);
    let mut buf = Vec::with_capacity(512);
    let mut number = 0;
    loop {
        buf.clear();
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        let read = match (&mut reader).take(limit).read_until(b'\n', &mut buf) {
            Ok(n) => n,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e));
            }
        };
        if read == 0 {
            break;
        }
        number += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Err(e) = each(number, line) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    }
    let mut message = String::new();
    let _ = stderr.read_to_string(&mut message);
    let status = child.wait().map_err(spawn_err)?;
    if status.success() {
        return Ok(());
    }
    Err(Finished {
        command,
        ok: false,
        status,
        stdout: Vec::new(),
        stderr: message,
    }
    .failure())
}

/// Runs conntrack's `-D` with `args` and returns how many flows it deleted
/// (its stderr says `N flow entries have been deleted`).
pub fn conntrack_delete(prog: &str, args: &[&str]) -> Result<usize> {
    let mut all = vec!["-D"];
    all.extend_from_slice(args);
    let done = run(prog, &all, None)?;
    // conntrack exits 1 when nothing matched: no error, nothing deleted.
    let deleted = done
        .stderr
        .split_whitespace()
        .zip(done.stderr.split_whitespace().skip(1))
        .find_map(|(n, next)| (next == "flow").then(|| n.parse::<usize>().ok()).flatten());
    match deleted {
        Some(n) => Ok(n),
        None if done.ok => Ok(0),
        None => Err(done.failure()),
    }
}

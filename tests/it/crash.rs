//! Crash consistency under SIGKILL. `podsnat write` (and `install-unit`)
//! runs over and over against one target, alternating two configs, and is
//! killed at a random moment of each run. After every kill the target must
//! be byte for byte the old or the new content, keep its mode, and (for the
//! rules file) load with the real `iptables-restore --test`; temp files of
//! killed runs must never pile up.
//!
//! PODSNAT_CRASH_RUNS sets the number of runs (default 1000),
//! PODSNAT_CRASH_SEED replays a run order, PODSNAT_CRASH_DEBUG prints the
//! first runs' timings. The counts are printed.

use crate::common;
use podsnat::{RawConfig, Sources};

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXISTING: &str = "\
# hand-written filter rules that must survive
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
*mangle
:PREROUTING ACCEPT [0:0]
COMMIT
";

fn runs() -> usize {
    std::env::var("PODSNAT_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// xorshift64*: enough randomness for kill timing, no extra crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("PODSNAT_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        (Rng(seed), seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Written past libtest's output capture, so CI logs show the counts.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".podsnat.") && n.ends_with(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Default, Debug)]
struct Counts {
    runs: usize,
    killed: usize,
    mid_write: usize,
    old: usize,
    new: usize,
}

/// Runs `args` once, killed after `delay` if it is still running. Returns
/// whether the kill landed (the process had not exited by then).
fn run_and_kill(args: &[String], delay: Duration) -> bool {
    let mut child = Command::new(common::podsnat_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None)) && child.kill().is_ok();
    let status = child.wait().unwrap();
    if !killed {
        assert!(
            matches!(status.code(), Some(0 | 2)),
            "an unkilled run failed: {status}"
        );
    }
    killed
}

/// The duration of one unkilled run, so kill times spread over all of it.
fn measure(args: &[String]) -> Duration {
    let start = Instant::now();
    for _ in 0..5 {
        let out = Command::new(common::podsnat_bin())
            .args(args)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 2)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    start.elapsed() / 5
}

/// The core loop: `make_args(i)` is the i-th run; `contents()` reads the
/// target(s); `valid` are the acceptable contents; `dirs` must not collect
/// temp files.
fn torture(
    name: &str,
    mut make_args: impl FnMut(usize) -> Vec<String>,
    read: impl Fn() -> Vec<u8>,
    check_mode: impl Fn(),
    dirs: &[PathBuf],
) -> Counts {
    let (mut rng, seed) = Rng::seeded();
    // Each of the two alternating runs has its own duration.
    let spans =
        [measure(&make_args(0)), measure(&make_args(1))].map(|d| d.max(Duration::from_micros(200)));
    let mut counts = Counts::default();
    let mut previous = read();
    for i in 0..runs() {
        let args = make_args(i);
        // Half the kills anywhere in up to twice the run time (many come
        // after a clean exit), half in its second half, where the write is.
        // Run times vary; the measured one is only a guide.
        let n = spans[i % 2].as_nanos() as u64;
        let delay = Duration::from_nanos(if (i / 2) % 2 == 0 {
            rng.below(n * 2)
        } else {
            n / 2 + rng.below(n)
        });
        let t0 = Instant::now();
        let killed = run_and_kill(&args, delay);
        if std::env::var_os("PODSNAT_CRASH_DEBUG").is_some() && i < 12 {
            report(&format!(
                "{name} run {i}: delay {delay:?} killed {killed} took {:?}",
                t0.elapsed()
            ));
        }
        counts.runs += 1;
        let now = read();
        let stray: Vec<String> = dirs.iter().flat_map(|d| temp_files(d)).collect();
        if killed {
            counts.killed += 1;
            if !stray.is_empty() {
                counts.mid_write += 1;
            }
        } else {
            assert!(
                stray.is_empty(),
                "{name} run {i} (seed {seed}): a successful run left {stray:?}"
            );
        }
        // A stale temp file is removed by the next run before it makes its
        // own, so there is never more than one per directory.
        for d in dirs {
            assert!(
                temp_files(d).len() <= 1,
                "{name} run {i} (seed {seed}): temp files pile up in {}",
                d.display()
            );
        }
        check_mode();
        if now == previous {
            counts.old += 1;
        } else {
            counts.new += 1;
        }
        previous = now;
    }
    // One clean run at the end removes whatever the last kill left.
    let out = Command::new(common::podsnat_bin())
        .args(make_args(runs()))
        .output()
        .unwrap();
    assert!(matches!(out.status.code(), Some(0 | 2)));
    for d in dirs {
        assert!(
            temp_files(d).is_empty(),
            "{name}: the final run left temp files in {}",
            d.display()
        );
    }
    report(&format!(
        "crash test {name}: {} runs, {} killed, {} kills landed mid-write (temp file left), outcome old {} / new {}, \
         run times {:?}, seed {seed}",
        counts.runs, counts.killed, counts.mid_write, counts.old, counts.new, spans
    ));
    counts
}

/// `count` /32s two addresses apart from `base` (none aggregate).
fn cidrs(base: u32, count: u32) -> Vec<String> {
    (0..count)
        .map(|i| format!("{}/32", std::net::Ipv4Addr::from(base + i * 2)))
        .collect()
}

/// Two configs of the same size and different content.
const BASES: [u32; 2] = [0x0a00_0000, 0x0b00_0000];
const COUNT: u32 = 2000;

fn spec(base: u32) -> podsnat::NodeSpec {
    // Many /32s make the file large (hundreds of KiB), so the write itself
    // takes long enough for kills to land inside it.
    podsnat::load(Sources {
        flags: RawConfig {
            cluster_cidr: Some("172.7.0.0/16".into()),
            pod_subnet: Some("172.7.21.0/24".into()),
            no_masquerade: Some(cidrs(base, COUNT)),
            // The write runs with --no-anchor: its table's comments say so.
            anchor: Some(false),
            ..RawConfig::default()
        },
        ..Sources::default()
    })
    .unwrap()
    .specs()[0]
        .clone()
}

#[test]
fn write_is_old_or_new_after_sigkill() {
    common::require_root_or_fail("write_is_old_or_new_after_sigkill");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let target = dir.join("iptables");
    fs::write(&target, EXISTING).unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o640)).unwrap();

    // Two configs as files, and the two files podsnat may leave.
    let (a, b) = (spec(BASES[0]), spec(BASES[1]));
    let configs = [dir.join("a.toml"), dir.join("b.toml")];
    for (path, base) in configs.iter().zip(BASES) {
        let cidrs: Vec<String> = cidrs(base, COUNT)
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        fs::write(
            path,
            format!(
                "cluster_cidr = \"172.7.0.0/16\"\npod_subnet = \"172.7.21.0/24\"\nno_masquerade = [{}]\n",
                cidrs.join(",")
            ),
        )
        .unwrap();
    }
    let contents: Vec<Vec<u8>> = [&a, &b]
        .iter()
        .map(|s| {
            podsnat::splice(EXISTING, &podsnat::nat_table(s))
                .unwrap()
                .into_bytes()
        })
        .collect();
    // Both possible results load with the real iptables-restore; any other
    // content fails the byte comparison below.
    for backend in &common::BACKENDS {
        let ns = common::Netns::new();
        for (i, c) in contents.iter().enumerate() {
            let f = dir.join(format!("check-{i}"));
            fs::write(&f, c).unwrap();
            ns.ok(backend.restore, &["--test", f.to_str().unwrap()]);
            fs::remove_file(&f).unwrap();
        }
    }

    let valid: HashSet<Vec<u8>> = contents
        .iter()
        .cloned()
        .chain([EXISTING.as_bytes().to_vec()])
        .collect();
    let t = target.clone();
    let counts = torture(
        "write",
        |i| {
            vec![
                "write".into(),
                "--config".into(),
                configs[i % 2].display().to_string(),
                "--no-anchor".into(),
                "--output".into(),
                t.display().to_string(),
                "--no-test".into(),
            ]
        },
        || {
            let now = fs::read(&target).unwrap();
            assert!(
                valid.contains(&now),
                "torn or foreign content in the target ({} bytes)",
                now.len()
            );
            now
        },
        || {
            assert_eq!(
                fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
                0o640
            )
        },
        std::slice::from_ref(&dir),
    );
    assert_eq!(counts.runs, runs());
    assert!(
        counts.killed > 0 && counts.new > 0,
        "the test exercised nothing: {counts:?}"
    );
}

#[test]
fn install_unit_is_old_or_new_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let units = root.join("etc/systemd/system");
    let wants = units.join("multi-user.target.wants");
    let unit = units.join("podsnat.service");
    let afters = ["flanneld.service", "flannel.service"];
    let render = |after: &str| {
        let spec = podsnat::UnitSpec::parse(
            &[after.to_owned(), "docker.service".to_owned()],
            &["kubelet.service".to_owned()],
            podsnat::UnitFiles {
                families: &[podsnat::Family::V4],
                file: "/etc/sysconfig/iptables",
                file6: "/etc/sysconfig/ip6tables",
                restore: "/usr/sbin/iptables-restore",
            },
        )
        .unwrap();
        podsnat::render_unit(&spec).into_bytes()
    };
    let valid: HashSet<Vec<u8>> = afters.iter().map(|a| render(a)).collect();
    let r = root.clone();
    let args = move |i: usize| {
        vec![
            "install-unit".into(),
            "--root".into(),
            r.display().to_string(),
            "--after".into(),
            afters[i % 2].into(),
            "--after".into(),
            "docker.service".into(),
            "--before".into(),
            "kubelet.service".into(),
            "--file".into(),
            "/etc/sysconfig/iptables".into(),
        ]
    };
    // The first run is not killed: from then on the unit always exists.
    let out = Command::new(common::podsnat_bin())
        .args(args(1))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let counts = torture(
        "install-unit",
        args,
        || {
            let now = fs::read(&unit).unwrap();
            assert!(valid.contains(&now), "torn unit file ({} bytes)", now.len());
            assert_eq!(
                fs::read_link(wants.join("podsnat.service")).unwrap(),
                Path::new("/etc/systemd/system/podsnat.service")
            );
            now
        },
        || {
            assert_eq!(
                fs::metadata(&unit).unwrap().permissions().mode() & 0o7777,
                0o644
            )
        },
        &[units.clone(), wants.clone()],
    );
    assert!(
        counts.killed > 0 && counts.new > 0,
        "the test exercised nothing: {counts:?}"
    );
}

/// `verify --textfile`: node_exporter must never read half a metrics file.
/// Runs alternate a table that holds and one that drifts; after every kill
/// the file is one of the two runs' whole output (its clock readings aside).
#[test]
fn metrics_textfile_is_old_or_new_after_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("textfile");
    // The example node: a run is quick, so kills spread over all of it.
    let config = Path::new(common::EXAMPLE).to_owned();
    let table = podsnat::nat_table(
        &podsnat::load(Sources {
            config: Some(&config),
            ..Sources::default()
        })
        .unwrap()
        .specs()[0],
    );
    let tables = [tmp.path().join("ok.rules"), tmp.path().join("drift.rules")];
    fs::write(&tables[0], &table).unwrap();
    let broad = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
    fs::write(
        &tables[1],
        table.replacen("-A POSTROUTING", &format!("{broad}\n-A POSTROUTING"), 1),
    )
    .unwrap();
    let (d, c) = (dir.display().to_string(), config.display().to_string());
    let args = move |i: usize| -> Vec<String> {
        [
            "verify",
            "--config",
            &c,
            "--no-test",
            "--format",
            "prometheus",
            "--textfile",
            &d,
            "--file",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([tables[i % 2].display().to_string()])
        .collect()
    };
    // The clock's readings differ from run to run; the rest may not.
    let normal = |text: &[u8]| -> String {
        String::from_utf8_lossy(text)
            .lines()
            .map(|l| match l.split_once(' ') {
                Some((name, _)) if name.starts_with("podsnat_last_run_") => format!("{name} X"),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let valid: HashSet<String> = (0..2)
        .map(|i| {
            let out = Command::new(common::podsnat_bin())
                .args(args(i))
                .output()
                .unwrap();
            assert!(matches!(out.status.code(), Some(0 | 2)), "{out:?}");
            normal(&out.stdout)
        })
        .collect();
    assert_eq!(valid.len(), 2, "the two runs must write different metrics");
    let file = dir.join("podsnat.prom");
    let counts = torture(
        "metrics textfile",
        args,
        || {
            let now = fs::read(&file).unwrap();
            assert!(
                valid.contains(&normal(&now)),
                "torn metrics file ({} bytes):\n{}",
                now.len(),
                String::from_utf8_lossy(&now)
            );
            normal(&now).into_bytes()
        },
        || {
            assert_eq!(
                fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
                0o644
            )
        },
        std::slice::from_ref(&dir),
    );
    assert!(
        counts.killed > 0 && counts.new > 0,
        "the test exercised nothing: {counts:?}"
    );
}

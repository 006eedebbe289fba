//! Metrics files for node_exporter's textfile collector: written whole,
//! atomically (a temp file in the same directory, then a rename), so the
//! collector never reads half a file. It reads only `*.prom`; the temp
//! file is `.podsnat.*.tmp`.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::atomic;
use crate::error::{Error, Result};
use crate::metrics::{Clock, MetricsError};

/// When a run started, to say so and how long it took. The clock is read
/// here, at the edge; the metrics themselves are made from plain numbers.
pub struct Stopwatch {
    started: f64,
    at: Instant,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        Stopwatch {
            started: started.round(),
            at: Instant::now(),
        }
    }

    pub fn read(&self) -> Clock {
        Clock {
            started: self.started,
            duration: self.at.elapsed().as_secs_f64(),
        }
    }
}

/// The metrics' error, as podsnat reports it.
pub fn unmade(e: MetricsError) -> Error {
    Error::output("write the metrics", e)
}

/// Writes `dir/name` with what `make` returns for the file's previous
/// text ("" when there is none), under the directory's lock, so two runs
/// cannot lose each other's counts. Returns what it wrote.
pub fn write(
    dir: &Path,
    name: &str,
    make: impl FnOnce(&str) -> std::result::Result<String, MetricsError>,
) -> Result<String> {
    let _lock = atomic::lock_and_clean(dir)?;
    let path = dir.join(name);
    let previous = atomic::read(&path)?;
    let old = previous
        .as_ref()
        .map(|p| String::from_utf8_lossy(&p.bytes).into_owned())
        .unwrap_or_default();
    let text = make(&old).map_err(unmade)?;
    // Readable by node_exporter, which runs as its own user.
    atomic::write(&path, text.as_bytes(), previous.as_ref(), 0o644, true)?;
    Ok(text)
}

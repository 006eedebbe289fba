//! The only module that writes files. A write goes to a temp file in the
//! target's directory, is fsynced, renamed over the target and the directory
//! is fsynced, so a crash leaves either the old or the new file, never a mix.

use std::fs::{self, File, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Mode for a rules file podsnat creates: the nat table may reveal the
/// network layout, and only root restores it.
pub const NEW_FILE_MODE: u32 = 0o600;

/// Mode for a unit file podsnat creates, as systemd's own units have.
pub const UNIT_FILE_MODE: u32 = 0o644;

/// Temp files are named `.podsnat.XXXXXX.tmp` next to the target.
pub const TEMP_PREFIX: &str = ".podsnat.";
pub const TEMP_SUFFIX: &str = ".tmp";

/// An exclusive lock on a directory podsnat writes into, held while it
/// changes files there. Two podsnat runs on one directory take turns, so a
/// run can safely remove temp files that killed runs left behind.
#[derive(Debug)]
pub struct DirLock {
    _dir: File,
}

/// Locks `dir` (created if missing) and removes stale podsnat temp files in
/// it: those of runs that were killed between creating and renaming them.
pub fn lock_and_clean(dir: &Path) -> Result<DirLock> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create directory", e))?;
    }
    let handle = File::open(dir).map_err(|e| Error::io(dir, "cannot open directory", e))?;
    handle
        .lock()
        .map_err(|e| Error::io(dir, "cannot lock directory", e))?;
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "cannot list directory", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX) {
            remove_if_present(&entry.path(), "cannot remove stale temp file")?;
        }
    }
    Ok(DirLock { _dir: handle })
}

/// A result where "not found" is an answer, not an error: `Ok(None)`.
pub fn present<T>(result: std::io::Result<T>) -> std::io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `path`; one that is already gone is fine.
pub fn remove_if_present(path: &Path, op: &'static str) -> Result<()> {
    present(fs::remove_file(path))
        .map(drop)
        .map_err(|e| Error::io(path, op, e))
}

/// The directory a file lives in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The current target file: its bytes and what a rewrite must keep.
#[derive(Debug)]
pub struct Existing {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Reads the target if it exists. A symlink or anything but a regular file
/// is refused: replacing a link with a file would silently detach it.
pub fn read(path: &Path) -> Result<Option<Existing>> {
    let Some(meta) =
        present(fs::symlink_metadata(path)).map_err(|e| Error::io(path, "cannot inspect", e))?
    else {
        return Ok(None);
    };
    if meta.file_type().is_symlink() {
        return Err(Error::refused(
            path,
            "refusing to write",
            "it is a symlink; point --output at the real file",
        ));
    }
    if !meta.is_file() {
        return Err(Error::refused(
            path,
            "refusing to write",
            "it is not a regular file",
        ));
    }
    let bytes = fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    Ok(Some(Existing {
        bytes,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// Atomically replaces `path` with `bytes`. A new file gets `new_mode`; a
/// replaced one keeps the mode and owner in `previous`. On any error the
/// temp file is removed and the target is untouched.
///
/// `fsync` false skips the two fsyncs: the rename stays atomic for anyone
/// reading the file, but a power loss may lose the write. Only for files
/// that can be rendered again (fleet golden files), never for the boot file.
pub fn write(
    path: &Path,
    bytes: &[u8],
    previous: Option<&Existing>,
    new_mode: u32,
    fsync: bool,
) -> Result<()> {
    let dir = parent(path);
    // Usually `lock_and_clean` made it already; a stat is cheaper than mkdir.
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create directory", e))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "cannot create a temp file in", plain(e)))?;
    let io = |e| Error::io(path, "cannot write temp file for", e);
    let mode = previous.map_or(new_mode, |p| p.mode);
    // Set mode (and owner) before the content lands, so the data is never
    // readable with looser permissions than the final file.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(io)?;
    // Only where the owner differs: a sandbox without chown (systemd's
    // `~@privileged` filter, which podsnat's units use) can still replace
    // a file it owns.
    if let Some(p) = previous {
        let own = tmp.as_file().metadata().map_err(io)?;
        if (own.uid(), own.gid()) != (p.uid, p.gid) {
            std::os::unix::fs::fchown(tmp.as_file(), Some(p.uid), Some(p.gid)).map_err(io)?;
        }
    }
    tmp.write_all(bytes).map_err(io)?;
    if fsync {
        tmp.as_file().sync_all().map_err(io)?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io(path, "cannot rename temp file over", e.error))?;
    if fsync { sync_dir(dir) } else { Ok(()) }
}

/// Creates `path` with `bytes` if it does not exist yet (`O_EXCL`), the
/// way `tar -x` does: one open, one write, no temp file, no rename.
/// `Ok(false)` when it exists already (and is left as it is). Only for
/// files that can be rendered again (fleet golden files): a crash can
/// leave a new file short, which the next render or check finds and
/// rewrites atomically. A failed write removes what it created.
pub fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(Error::io(path, "cannot create", e)),
    };
    // The umask may have narrowed the mode; the file gets exactly `mode`.
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes));
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(Error::io(path, "cannot write", e));
    }
    Ok(true)
}

/// tempfile's errors name the random temp file; the OS error alone reads
/// better and keeps messages the same from run to run.
fn plain(e: std::io::Error) -> std::io::Error {
    if let Some(code) = e.raw_os_error() {
        return std::io::Error::from_raw_os_error(code);
    }
    // tempfile's own error reads `<os error> at path "<temp file>"`.
    let text = e.to_string();
    let os_part = text
        .split(" at path ")
        .next()
        .unwrap_or_default()
        .to_owned();
    std::io::Error::new(e.kind(), os_part)
}

/// A rename is durable only once the directory entry is on disk.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, "cannot fsync directory", e))
}

/// Whether `link` already is a symlink to `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Correct,
    Missing,
    /// A symlink pointing elsewhere; replacing it is what `systemctl enable` does too.
    Elsewhere,
}

pub fn link_state(link: &Path, target: &Path) -> Result<LinkState> {
    match present(fs::symlink_metadata(link)).map_err(|e| Error::io(link, "cannot inspect", e))? {
        None => Ok(LinkState::Missing),
        Some(m) if m.file_type().is_symlink() => {
            let points_to =
                fs::read_link(link).map_err(|e| Error::io(link, "cannot read link", e))?;
            Ok(if points_to == target {
                LinkState::Correct
            } else {
                LinkState::Elsewhere
            })
        }
        Some(_) => Err(Error::refused(
            link,
            "refusing to replace",
            "it is not a symlink; remove it by hand if it is stale",
        )),
    }
}

/// Atomically makes `link` a symlink to `target`: a new link under a temp
/// name, renamed into place, so there is never a moment without one.
pub fn symlink(link: &Path, target: &Path) -> Result<()> {
    let dir = parent(link);
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, "cannot create directory", e))?;
    // tempfile picks a free name; the placeholder file is swapped for a link.
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, "cannot create a temp file in", plain(e)))?
        .into_temp_path();
    fs::remove_file(&tmp).map_err(|e| Error::io(&*tmp, "cannot replace temp file", e))?;
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| Error::io(&*tmp, "cannot create symlink", e))?;
    // From here on `tmp` (a TempPath) removes the link again if the rename fails.
    fs::rename(&tmp, link).map_err(|e| Error::io(link, "cannot rename symlink over", e))?;
    // Renamed away: nothing is left to remove.
    let _ = tmp.keep();
    sync_dir(dir)
}

//! One error type for the whole tool. Every message names where the bad
//! value came from (a file, or "command line"), the field and the value, so
//! an operator reading a failed playbook knows what to fix without a debugger.
//! Values are quoted with `{:?}` so a control character in the input cannot
//! forge extra output lines.
//!
//! One convention for causes, as netavark's and anyhow's: an error's
//! Display says its own layer's message and never its cause's; the cause
//! is kept as `source()`, and the printer prints the chain once, a
//! `caused by:` line per cause ([`chain`]). No cause is turned into text
//! to be stored.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that parsed but is not acceptable, e.g. host bits set.
    #[error("{}: {field} {} {problem}", shown(origin), quoted(value))]
    Field {
        origin: String,
        field: String,
        value: String,
        problem: String,
    },

    /// A file a setting names that cannot be used: the setting, the file
    /// as given, and why, as the cause.
    #[error("{}: {field} {} cannot be used", shown(origin), quoted(value))]
    FieldFile {
        origin: String,
        field: &'static str,
        value: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A setting that no source provided.
    #[error("{field} is not set by {}; {hint}", shown(read))]
    Missing {
        field: &'static str,
        /// The sources that were read, or "any source".
        read: String,
        hint: String,
    },

    /// Two sources disagree about the same setting.
    #[error(
        "{field} disagrees: {} says {}, {} says {}; remove one",
        shown(a_origin),
        quoted(a),
        shown(b_origin),
        quoted(b)
    )]
    Conflict {
        field: &'static str,
        a_origin: String,
        a: String,
        b_origin: String,
        b: String,
    },

    /// A file that could not be parsed at all (TOML syntax, a subnet.env
    /// line), with the line podsnat quotes.
    #[error("{}: {}", shown(path), shown(message))]
    Syntax { path: String, message: String },

    /// Input podsnat could not read, naming where it came from; the typed
    /// error is the cause (a malformed rule, nft JSON, an ipset line, a
    /// rules file podsnat did not write, output that is not text).
    #[error("{}: podsnat cannot read it", shown(origin))]
    Unreadable {
        origin: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The rules file `write` is to splice its table into is not
    /// iptables-restore input; where, is the cause.
    #[error(
        "{}: it is not iptables-restore input; fix or remove the file, nothing was changed",
        shown_path(path)
    )]
    NotRulesFile {
        path: PathBuf,
        #[source]
        source: crate::rules_file::ParseError,
    },

    /// Input that parsed but, taken as a whole, cannot be used: two fleet
    /// nodes whose pod subnets overlap, a rules file without a nat table.
    #[error("{}: {}", shown(origin), shown(message))]
    Invalid { origin: String, message: String },

    #[error("{}: {op}", shown_path(path))]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// podsnat will not touch `path` as it is: a symlink, a file that is
    /// too large, a directory holding files podsnat did not write.
    #[error("{}: {op}: {why}", shown_path(path))]
    Refused {
        path: PathBuf,
        op: &'static str,
        why: String,
    },

    #[error(
        "{}: not valid UTF-8 (first bad byte at offset {offset})",
        shown_path(path)
    )]
    NotUtf8 { path: PathBuf, offset: usize },

    /// `iptables-restore --test` refused the new file; nothing was written.
    #[error(
        "{}: {command} rejected the new ruleset, nothing was written:\n{stderr}",
        shown_path(path)
    )]
    Rejected {
        path: PathBuf,
        command: String,
        stderr: String,
    },

    /// A write failed after earlier files of the same update had landed,
    /// and putting some of those back failed too: both are named, since
    /// the node now holds a mix of old and new files. The failed write is
    /// the cause; the failed undos are listed here.
    #[error(
        "an update stopped part way, and putting back the files written before it failed: {}; the node now holds old and new files",
        undo.iter().map(|e| one_line(e)).collect::<Vec<_>>().join("; ")
    )]
    RolledBack {
        #[source]
        first: Box<Error>,
        undo: Vec<Error>,
    },

    /// A program could not be started at all; `why` says what podsnat
    /// needed it for, where that helps (`; verify reads ...`).
    #[error("cannot run {}{why}", shown(command))]
    Spawn {
        command: String,
        why: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A program ran and failed; its own message.
    #[error("{} failed: {stderr}", shown(command))]
    Failed { command: String, stderr: String },

    /// podsnat's own output could not be produced or delivered: the JSON
    /// encoding of a report, the man page, a closed stdout.
    #[error("cannot {what}")]
    Output {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// `verify --repair` found drift that moving podsnat's exclusion cannot fix.
    #[error("cannot repair")]
    CannotRepair(#[source] crate::live::repair::RepairError),

    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn field(
        origin: impl Into<String>,
        field: impl Into<String>,
        value: impl Into<String>,
        problem: impl std::fmt::Display,
    ) -> Self {
        Error::Field {
            origin: origin.into(),
            field: field.into(),
            value: value.into(),
            problem: problem.to_string(),
        }
    }

    pub fn refused(path: impl Into<PathBuf>, op: &'static str, why: impl Into<String>) -> Self {
        Error::Refused {
            path: path.into(),
            op,
            why: why.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// A program that could not be started.
    pub fn spawn(command: impl Into<String>, source: std::io::Error) -> Self {
        Error::Spawn {
            command: command.into(),
            why: "",
            source,
        }
    }

    /// The error for output podsnat could not make or deliver.
    pub fn output(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Output {
            what,
            source: source.into(),
        }
    }

    /// The program was not found: it is not installed (or not on the
    /// PATH). The one test every caller that can do without it asks.
    pub fn not_installed(&self) -> bool {
        matches!(self, Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// `map_err(unreadable(origin))`: input from `origin` that podsnat could
/// not read, the parser's error kept as the cause.
pub fn unreadable<E>(origin: impl std::fmt::Display) -> impl FnOnce(E) -> Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| Error::Unreadable {
        origin: origin.to_string(),
        source: e.into(),
    }
}

/// An error's message and then each cause's, outermost first: the chain
/// [`crate::printer::Printer::error`] prints, one line each.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        out.push(cause.to_string());
        next = cause.source();
    }
    out
}

/// The chain on one line (`message: cause: cause`), for an error named
/// inside another's message (the undos of [`Error::RolledBack`]).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).join(": ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The longest run of non-space characters printed whole.
pub const TOKEN_MAX: usize = 200;
/// The longest line printed whole.
pub const LINE_MAX: usize = 2000;

/// The one function every line podsnat prints goes through (stdout and
/// stderr, text, and every string inside its JSON): control characters but
/// the tab are escaped (`\u{1b}`), so no input byte can clear the screen, set the
/// title or forge a line; a run of non-space characters longer than
/// `TOKEN_MAX` (200), and a line longer than [`LINE_MAX`], is cut, with a mark
/// that says how long it was. Text without either is returned unchanged.
pub fn safe(text: &str) -> String {
    text.split('\n')
        .map(safe_line)
        .collect::<Vec<_>>()
        .join("\n")
}

fn safe_line(line: &str) -> String {
    let words: Vec<String> = line
        .split(' ')
        .map(|w| {
            let w = shown_chars(w);
            cut(&w, TOKEN_MAX)
        })
        .collect();
    cut(&words.join(" "), LINE_MAX)
}

/// `s` cut to `max` characters, with a mark naming its length.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}...(cut, {} bytes)", s.len())
}

/// Every string inside a JSON value through [`safe`].
pub fn safe_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = safe(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(safe_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(safe_json),
        _ => {}
    }
}

/// Control characters escaped, nothing cut. A tab stays: it moves the
/// cursor only to the next tab stop (the anchor file's diff is indented
/// with tabs).
fn shown_chars(s: &str) -> String {
    escape(s, |c| c.is_control() && c != '\t')
}

/// `s` with every character `bad` says escaped (`\u{1b}`, `\n`).
fn escape(s: &str, bad: impl Fn(char) -> bool) -> String {
    if !s.chars().any(&bad) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if bad(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Text from the input as it may appear in a message: control characters
/// are escaped (`\n`, `\u{1b}`), so a file name or a parser's message can
/// never forge a second line of output or move the terminal's cursor.
pub fn shown(s: &str) -> String {
    escape(s, char::is_control)
}

/// A value from the input, quoted and escaped, and cut short when it is
/// long: an overlong value is named by its start and its size.
pub fn quoted(v: &str) -> String {
    const MAX: usize = 80;
    if v.chars().count() <= MAX {
        return format!("{v:?}");
    }
    let head: String = v.chars().take(64).collect();
    format!("{head:?}... ({} bytes)", v.len())
}

pub fn shown_path(p: &std::path::Path) -> String {
    shown(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reading error names its origin and keeps the typed error as its
    /// source, for a caller that walks the chain.
    #[test]
    fn an_unreadable_input_keeps_its_cause() {
        let cause = crate::verify::Sets::parse("bogus line\n").unwrap_err();
        let e = Error::Unreadable {
            origin: "ipset save".into(),
            source: cause.clone().into(),
        };
        assert_eq!(e.to_string(), "ipset save: podsnat cannot read it");
        let kept = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(kept, Some(cause.to_string()));
    }
}

//! One error type for the whole tool. Every message names where the bad
//! value came from (a file, or "command line"), the field and the value, so
//! an operator reading a failed playbook knows what to fix without a debugger.
//! Values are quoted with `{:?}` so a control character in the input cannot
//! forge extra output lines.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value that parsed but is not acceptable, e.g. host bits set.
    #[error("{origin}: {field} {value:?} {problem}")]
    Field {
        origin: String,
        field: String,
        value: String,
        problem: String,
    },

    /// A setting that no source provided.
    /// A setting that no source provided.
    #[error("{field} is not set by {read}; {hint}")]
    Missing {
        field: &'static str,
        /// The sources that were read, or "any source".
        read: String,
        hint: &'static str,
    },

    /// Two sources disagree about the same setting.
    #[error("{field} disagrees: {a_origin} says {a:?}, {b_origin} says {b:?}; remove one")]
    Conflict {
        field: &'static str,
        a_origin: String,
        a: String,
        b_origin: String,
        b: String,
    },

    /// A file that could not be parsed at all (TOML syntax, subnet.env line, rules file).
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },

    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not valid UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },

    /// `iptables-restore --test` refused the new file; nothing was written.
    #[error("{path}: {command} rejected the new ruleset, nothing was written:\n{stderr}")]
    Rejected {
        path: PathBuf,
        command: String,
        stderr: String,
    },

    #[error("cannot run {command:?}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn field(
        origin: impl Into<String>,
        field: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        Error::Field {
            origin: origin.into(),
            field: field.into(),
            value: value.into(),
            problem: problem.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

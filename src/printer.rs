//! The one owner of podsnat's stdout and stderr (as uv's `printer.rs` is):
//! every byte podsnat prints leaves through a door here, and each door is
//! safe by construction, not by each caller remembering [`safe`].
//!
//! - [`Printer::text`]: a report that quotes input, through [`safe`]
//!   (control characters escaped, overlong lines and tokens cut).
//! - [`Printer::json`]: a [`Json`], which only [`Json::of`] makes, with
//!   every string inside it through [`safe`] (cutting a line of JSON would
//!   break it; its strings are cut instead).
//! - [`Printer::own`]: podsnat's own rendered artifacts (a nat table, the
//!   anchor, the man page, completions), byte for byte, since a cut would
//!   break them. An [`Own`] refuses any control character but newline and
//!   tab, so no input byte reaches the terminal raw even through them.
//! - [`Printer::note`] and [`Printer::error`] on stderr, through [`safe`];
//!   an error with its chain of causes, each printed once.

use std::io::Write;

use crate::error::{Error, Result, chain, safe, safe_json};

/// A report as one line of JSON, every string in it through [`safe`].
#[derive(Debug, Clone)]
pub struct Json(String);

impl Json {
    pub fn of(value: &impl serde::Serialize) -> Result<Json> {
        let encode = |e: serde_json::Error| Error::output("encode the result as JSON", e);
        let mut v = serde_json::to_value(value).map_err(encode)?;
        safe_json(&mut v);
        let mut s = serde_json::to_string(&v).map_err(encode)?;
        s.push('\n');
        Ok(Json(s))
    }
}

/// A report in the format asked for.
#[derive(Debug, Clone)]
pub enum Shown {
    Text(String),
    Json(Json),
}

/// Text podsnat rendered itself, checked to hold no control character but
/// newline and tab.
#[derive(Debug, Clone)]
pub struct Own(String);

impl Own {
    /// `what` names the artifact in the error, should a control character
    /// have slipped into it (a bug: the renderers only print checked values).
    pub fn checked(what: &'static str, text: String) -> Result<Own> {
        match text
            .char_indices()
            .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            None => Ok(Own(text)),
            Some((at, c)) => Err(Error::output(
                what,
                format!("it holds the control character {c:?} at byte {at}; nothing was printed"),
            )),
        }
    }
}

/// stdout and stderr, owned.
pub struct Printer<'a> {
    out: Box<dyn Write + 'a>,
    err: Box<dyn Write + 'a>,
}

impl Printer<'static> {
    /// The process's stdout (locked once) and stderr.
    pub fn stdio() -> Printer<'static> {
        Printer::new(std::io::stdout().lock(), std::io::stderr())
    }
}

impl<'a> Printer<'a> {
    pub fn new(out: impl Write + 'a, err: impl Write + 'a) -> Printer<'a> {
        Printer {
            out: Box::new(out),
            err: Box::new(err),
        }
    }

    /// A report that may quote input.
    pub fn text(&mut self, text: &str) -> Result<()> {
        self.stdout(&safe(text))
    }

    pub fn json(&mut self, json: &Json) -> Result<()> {
        let Json(text) = json;
        self.stdout(text)
    }

    pub fn show(&mut self, shown: &Shown) -> Result<()> {
        match shown {
            Shown::Text(t) => self.text(t),
            Shown::Json(j) => self.json(j),
        }
    }

    /// podsnat's own rendered text, unchanged.
    pub fn own(&mut self, own: &Own) -> Result<()> {
        let Own(text) = own;
        self.stdout(text)
    }

    /// `podsnat: note: ...` on stderr. A stderr that cannot be written
    /// has nowhere to report to, so that is ignored.
    pub fn note(&mut self, note: &str) {
        let _ = writeln!(self.err, "{}", safe(&format!("podsnat: note: {note}")));
    }

    /// `podsnat: <error>` on stderr, then its causes, each once, on a
    /// `  caused by: ` line of its own.
    pub fn error(&mut self, e: &Error) {
        let mut lines = chain(e).into_iter();
        let first = lines.next().unwrap_or_default();
        let mut text = format!("podsnat: {first}");
        for cause in lines {
            text += &format!("\n  caused by: {cause}");
        }
        let _ = writeln!(self.err, "{}", safe(&text));
    }

    /// clap's verdict on the command line: `--help` and `--version` (its
    /// own text, on stdout) or a usage error that quotes the argument it
    /// refuses (stderr, escaped and cut). clap's styles are dropped: their
    /// escape sequences are control characters too.
    pub fn clap(&mut self, e: &clap::Error) -> Result<()> {
        let text = e.render().to_string();
        if e.use_stderr() {
            let _ = write!(self.err, "{}", safe(&text));
            Ok(())
        } else {
            self.own(&Own::checked("print the help", text)?)
        }
    }

    fn stdout(&mut self, text: &str) -> Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::output("write to stdout", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(f: impl FnOnce(&mut Printer<'_>)) -> (String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        f(&mut Printer::new(&mut out, &mut err));
        (
            String::from_utf8(out).unwrap_or_default(),
            String::from_utf8(err).unwrap_or_default(),
        )
    }

    /// Each door escapes what came from input: text, JSON strings, notes
    /// and errors; podsnat's own text with a control character is refused.
    #[test]
    fn no_door_prints_a_control_character() {
        let esc = "a\u{1b}]0;x\u{7}b";
        let (out, err) = printed(|p| {
            p.text(esc).unwrap_or_default();
            p.json(&Json::of(&[esc]).unwrap_or_else(|_| Json(String::new())))
                .unwrap_or_default();
            p.note(esc);
            p.error(&Error::Usage(esc.into()));
        });
        for text in [&out, &err] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{text:?}"
            );
        }
        assert_eq!(err.lines().count(), 2, "{err:?}");
        assert!(Own::checked("test", esc.into()).is_err());
        assert!(Own::checked("test", "*nat\n\t-A X\n".into()).is_ok());
    }

    /// A cause three deep (a setting's file, its reading, the OS's error)
    /// is printed once, each on its own `caused by:` line, and no message
    /// repeats its cause's.
    #[test]
    fn the_cause_chain_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let read = Error::io("10-net.conflist", "cannot read", io);
        let e = Error::FieldFile {
            origin: "config.toml".into(),
            field: "cni_config",
            value: "10-net.conflist".into(),
            source: Box::new(crate::cni::CniError::Unreadable(Box::new(read))),
        };
        let (_, err) = printed(|p| p.error(&e));
        assert_eq!(
            err,
            "podsnat: config.toml: cni_config \"10-net.conflist\" cannot be used\n  \
             caused by: 10-net.conflist: cannot read\n  \
             caused by: No such file or directory (os error 2)\n"
        );
        for cause in ["cannot read", "No such file"] {
            assert_eq!(err.matches(cause).count(), 1, "{err}");
        }
    }
}

//! The one reader of the iptables-save / iptables-restore text format.
//! It serves splicing (replace only `*nat ... COMMIT`, keep every other byte)
//! and the tests, which compare `iptables-save` output with rendered text.

use std::ops::Range;

/// A structural problem at a line (1-based) of a rules file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: Structure,
}

/// What is structurally wrong: the file is not iptables-restore input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Structure {
    #[error("table *{open} (line {open_line}) has no COMMIT before *{next}")]
    NoCommitBefore {
        open: String,
        open_line: usize,
        next: String,
    },
    #[error("table *{0} has no COMMIT")]
    NoCommit(String),
    #[error("{0:?} is not a table name")]
    BadTableName(String),
    #[error("table *{name} appears twice (lines {first} and {second})")]
    Twice {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("{0:?} is outside a table (no *table line above it)")]
    OutsideTable(String),
}

/// A `-A CHAIN ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule<'a> {
    pub chain: &'a str,
    /// The whole line, `-A` included, as written.
    pub text: &'a str,
    pub line: usize,
}

/// One `*name ... COMMIT` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table<'a> {
    pub name: &'a str,
    /// Line of the `*name` header.
    pub line: usize,
    /// Bytes from podsnat's own header comment (if any, directly above
    /// `*name`) through the newline after COMMIT: what a splice replaces.
    pub span: Range<usize>,
    /// Chain names from `:NAME POLICY [p:b]` lines, in file order.
    pub chains: Vec<&'a str>,
    /// The `:NAME POLICY [p:b]` lines themselves.
    pub chain_decls: Vec<&'a str>,
    pub rules: Vec<Rule<'a>>,
}

impl<'a> Table<'a> {
    /// Whether podsnat wrote this table: its header comment is part of the span.
    pub fn is_podsnats(&self, text: &str) -> bool {
        text.get(self.span.clone())
            .is_some_and(|t| t.starts_with(OUR_HEADER))
    }

    /// The rules of one chain, in order, as text.
    pub fn chain_rules(&self, chain: &str) -> Vec<&'a str> {
        self.rules
            .iter()
            .filter(|r| r.chain == chain)
            .map(|r| r.text)
            .collect()
    }
}

/// Comment lines podsnat writes above its table start like this; they are
/// part of what a splice replaces, so a rewrite does not stack headers.
const OUR_HEADER: &str = "# podsnat";

/// Parses a whole file. Refuses what iptables-restore would misread:
/// a table without COMMIT, a rule outside any table, a table given twice.
pub fn parse(text: &str) -> Result<Vec<Table<'_>>, ParseError> {
    let mut tables: Vec<Table<'_>> = Vec::new();
    let mut open: Option<Table<'_>> = None;
    // Start of the run of podsnat header comments just above the current line.
    let mut header_start: Option<usize> = None;
    let mut offset = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let start = offset;
        offset += raw.len();
        // CRLF files (edited on Windows) and trailing blanks read as the
        // same lines: iptables-restore ignores both.
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line).trim_end();
        if line.starts_with('#') || line.trim().is_empty() {
            if open.is_none() && line.starts_with(OUR_HEADER) {
                header_start.get_or_insert(start);
            } else {
                header_start = None;
            }
            continue;
        }
        let err = |problem: Structure| ParseError { line: n, problem };
        if let Some(name) = line.strip_prefix('*') {
            if let Some(t) = &open {
                return Err(err(Structure::NoCommitBefore {
                    open: t.name.to_owned(),
                    open_line: t.line,
                    next: name.to_owned(),
                }));
            }
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err(Structure::BadTableName(line.to_owned())));
            }
            if let Some(t) = tables.iter().find(|t| t.name == name) {
                return Err(err(Structure::Twice {
                    name: name.to_owned(),
                    first: t.line,
                    second: n,
                }));
            }
            open = Some(Table {
                name,
                line: n,
                span: header_start.unwrap_or(start)..start,
                chains: Vec::new(),
                chain_decls: Vec::new(),
                rules: Vec::new(),
            });
            header_start = None;
            continue;
        }
        header_start = None;
        let Some(table) = open.as_mut() else {
            return Err(err(Structure::OutsideTable(line.to_owned())));
        };
        if line == "COMMIT" {
            table.span.end = offset;
            tables.extend(open.take());
        } else if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            table.chains.push(name);
            table.chain_decls.push(line);
        } else if let Some(rest) = line.strip_prefix("-A ") {
            let chain = rest.split_whitespace().next().unwrap_or("");
            table.rules.push(Rule {
                chain,
                text: line,
                line: n,
            });
        }
        // Other commands (-I, -N, -P, ...) are valid restore input; the
        // splice keeps them as they are.
    }
    if let Some(t) = open {
        return Err(ParseError {
            line: t.line,
            problem: Structure::NoCommit(t.name.to_owned()),
        });
    }
    Ok(tables)
}

/// One `iptables-restore --noflush` transaction on the nat table that
/// touches only what it names: `chain` is declared and refilled (declaring
/// a user chain under --noflush empties it, on both backends, so its rules
/// are exactly these afterwards), each of `delete` is removed (`-A CHAIN
/// ...` lines; `-D` takes the first match), and `insert` goes into
/// POSTROUTING as one block from the 1-based position `at`.
pub fn noflush_transaction(
    chain: Option<(&str, &[&str])>,
    delete: &[String],
    at: usize,
    insert: &[&str],
) -> String {
    let mut tx = String::from("*nat\n");
    if let Some((name, rules)) = chain {
        tx += &format!(":{name} - [0:0]\n");
        for r in rules {
            tx += r;
            tx.push('\n');
        }
    }
    for r in delete {
        tx += &format!("-D {}\n", r.trim_start_matches("-A "));
    }
    for (i, r) in insert.iter().enumerate() {
        tx += &format!(
            "-I POSTROUTING {} {}\n",
            at + i,
            r.trim_start_matches("-A POSTROUTING ")
        );
    }
    tx + "COMMIT\n"
}

/// `iptables -t nat -S` output (`-P CHAIN POLICY`, `-N CHAIN`, `-A ...`),
/// which people paste, as the iptables-save text of a nat table: one line
/// for each line, between `*nat` and `COMMIT`, so a line number in it is
/// the pasted line's plus one. `None` when the text is not `-S` output.
pub fn from_dash_s(text: &str) -> Option<String> {
    let mut lines = text.lines().map(|l| l.trim_end()).filter(|l| !l.is_empty());
    if !lines.clone().any(|l| l.starts_with("-P ")) || lines.any(|l| l.starts_with('*')) {
        return None;
    }
    let mut out = String::from("*nat\n");
    for line in text.lines() {
        let line = line.trim_end();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", chain, policy] => out += &format!(":{chain} {policy} [0:0]"),
            ["-N", chain] => out += &format!(":{chain} - [0:0]"),
            _ => out += line,
        }
        out.push('\n');
    }
    out += "COMMIT\n";
    Some(out)
}

/// Puts `nat` (a complete `*nat ... COMMIT` section) into `existing`:
/// replaces the nat section if there is one, appends it otherwise. Every
/// byte outside the replaced section stays as it was.
pub fn splice(existing: &str, nat: &str) -> Result<String, ParseError> {
    let tables = parse(existing)?;
    let mut out = String::with_capacity(existing.len() + nat.len() + 1);
    match tables.iter().find(|t| t.name == "nat") {
        Some(t) => {
            // Spans start and end at line boundaries, so these always exist.
            out.push_str(existing.get(..t.span.start).unwrap_or_default());
            out.push_str(nat);
            out.push_str(existing.get(t.span.end..).unwrap_or_default());
        }
        None => {
            out.push_str(existing);
            if !existing.is_empty() && !existing.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(nat);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAT: &str =
        "# podsnat x\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n";

    #[test]
    fn replaces_only_nat() {
        let old = "# hand-written\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n# Generated by iptables-save\n*nat\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n# Completed\n*mangle\nCOMMIT";
        let new = splice(old, NAT).unwrap();
        assert_eq!(
            new,
            "# hand-written\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n# Generated by iptables-save\n# podsnat x\n*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n# Completed\n*mangle\nCOMMIT"
        );
        // A second splice replaces our header with the table: no stacking.
        assert_eq!(splice(&new, NAT).unwrap(), new);
    }

    #[test]
    fn appends_when_missing() {
        assert_eq!(splice("", NAT).unwrap(), NAT);
        let out = splice("*filter\nCOMMIT", NAT).unwrap();
        assert_eq!(out, format!("*filter\nCOMMIT\n{NAT}"));
    }

    #[test]
    fn reads_crlf_and_dash_s() {
        let crlf =
            "*nat\r\n:POSTROUTING ACCEPT [0:0]\r\n-A POSTROUTING -j MASQUERADE  \r\nCOMMIT\r\n";
        let t = parse(crlf).unwrap();
        assert_eq!(
            t[0].chain_rules("POSTROUTING"),
            ["-A POSTROUTING -j MASQUERADE"]
        );
        let dash_s = "-P PREROUTING ACCEPT\n-P POSTROUTING ACCEPT\n-N X\n-A POSTROUTING -j X\n";
        let text = from_dash_s(dash_s).unwrap();
        let t = parse(&text).unwrap();
        assert_eq!(t[0].chains, ["PREROUTING", "POSTROUTING", "X"]);
        assert_eq!(t[0].rules[0].line, 5, "the pasted line 4, plus one");
        assert!(from_dash_s("*nat\nCOMMIT\n").is_none());
    }

    #[test]
    fn refuses_malformed() {
        let e = parse("*filter\n-A INPUT -j ACCEPT\n*nat\nCOMMIT\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            matches!(&e.problem, Structure::NoCommitBefore { open, open_line: 1, next } if open == "filter" && next == "nat"),
            "{e}"
        );
        let e = parse("-A INPUT -j ACCEPT\n").unwrap_err();
        assert_eq!(
            e.problem,
            Structure::OutsideTable("-A INPUT -j ACCEPT".into())
        );
        let e = parse("*nat\n:A - [0:0]\n").unwrap_err();
        assert_eq!(e.to_string(), "line 1: table *nat has no COMMIT");
        assert!(parse("*nat\nCOMMIT\n*nat\nCOMMIT\n").is_err());
    }

    #[test]
    fn reads_chains_and_rules() {
        let t = parse(NAT).unwrap();
        assert_eq!(t[0].chains, ["POSTROUTING"]);
        assert_eq!(
            t[0].chain_rules("POSTROUTING"),
            ["-A POSTROUTING -j MASQUERADE"]
        );
        assert_eq!(t[0].span, 0..NAT.len());
    }
}

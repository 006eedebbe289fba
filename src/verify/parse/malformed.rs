//! A rule line that iptables-restore would refuse, and what is wrong with
//! it. The rule parser (`rule.rs`, `fields.rs`) returns these; `verify`,
//! `--repair` and `pin` pass them on unchanged, so a malformed rule is the
//! same error wherever it is found.

/// What is wrong with one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a quote is not closed")]
    OpenQuote,
    #[error("`!` is given twice")]
    NegatedTwice,
    #[error("`!` ends the rule; it must stand before an option")]
    NegationAtEnd,
    #[error("`!` is given twice; one negates, two are refused")]
    DoubleNegation,
    #[error("`!` stands before {0:?}, which cannot be negated")]
    NotNegatable(String),
    #[error("{option} has no value")]
    NoValue { option: String },
    #[error("{option} has no value (found {found:?})")]
    OptionForValue { option: String, found: String },
    #[error("has a second target; a rule has one target at most")]
    SecondTarget,
    #[error("--match-set {set} has the flag {flag:?}; flags are src or dst")]
    SetFlag { set: String, flag: String },
    #[error("{0:?} is not an option")]
    NotAnOption(String),
    #[error("{0} is not an option of iptables itself (no -m before it)")]
    NoModule(String),
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    #[error("{0:?} is not an IPv6 address")]
    NotIpv6(String),
    #[error("{addr:?} has the octet {octet:?} with a leading zero, which some tools read as octal")]
    LeadingZero { addr: String, octet: String },
    #[error("{0:?}: bad prefix length")]
    BadPrefix(String),
    /// A numeric prefix length beyond the family's width.
    #[error("{addr:?} has the prefix length {len}; it must be 0 to {max}")]
    PrefixTooLong { addr: String, len: u8, max: u8 },
    /// Text in the place of a prefix length that is neither one nor a mask.
    #[error("{addr:?} has the prefix length {text:?}; it must be 0 to {max}")]
    PrefixText { addr: String, text: String, max: u8 },
    #[error("{addr:?} has the mask {mask:?}, which is not contiguous")]
    MaskGap { addr: String, mask: String },
    #[error("{0:?} is not an interface name")]
    NotInterface(String),
    #[error("{0:?} is not a mark (a number, or number/mask)")]
    NotMark(String),
}

/// A rule line that iptables-restore would refuse: podsnat never gives a
/// verdict on it, and names the line, the text and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}: {}", crate::error::quoted(text))]
pub struct Malformed {
    /// 1-based line in the file (or in iptables-save's output).
    pub line: usize,
    pub text: String,
    pub why: RuleError,
}

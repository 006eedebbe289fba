//! The parsers: text podsnat reads into the models the engine walks.
//! iptables' rule lines (`rule.rs`, their values in `fields.rs`, what
//! iptables-restore refuses in `malformed.rs`), `ipset save` (`sets.rs`),
//! and nft's JSON listing (`nft/`). They judge nothing.

pub(in crate::verify) mod fields;
pub(in crate::verify) mod malformed;
pub(in crate::verify) mod nft;
pub(in crate::verify) mod rule;
pub(in crate::verify) mod sets;

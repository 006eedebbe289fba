//! The engine: packet classes cut into atoms (`atoms.rs`), and the walk of
//! one packet through each layer the kernel runs at postrouting: iptables'
//! nat table (`iptables.rs`) and nftables' base chains (`nft.rs`), each
//! through the one `Layer` face, scheduled by priority in `hook.rs`.

pub(in crate::verify) mod atoms;
pub(in crate::verify) mod hook;
pub(in crate::verify) mod iptables;

use super::{RuleRef, nft, rule, sets};

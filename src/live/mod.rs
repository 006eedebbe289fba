//! Changes to the live nat table. `pin` after a docker start and
//! `verify --repair` after a drift put podsnat's POSTROUTING block and its
//! chain back with one `iptables-restore --noflush` transaction that
//! deletes and inserts only rules the ownership predicate
//! ([`render::Owner`]) calls podsnat's or docker's broad rule; everything
//! else in the table stays as it is. Pure: both plan from tables already
//! read, and differ only in where the block goes. This room acts on a
//! verdict; `verify` gives it.

pub mod pin;
pub mod repair;

use serde::Serialize;

use crate::render::{OWN_CHAIN, Owner};
use crate::rules_file::{self, Table};

/// One `iptables-restore --noflush` transaction and what it moves.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The restore input, `*nat` ... `COMMIT`.
    pub transaction: String,
    /// Where podsnat's POSTROUTING block goes (1-based).
    pub position: usize,
    /// Live rules it deletes: podsnat's copies, wherever they stand, and
    /// docker's broad rule.
    pub removed: Vec<String>,
}

/// Live POSTROUTING without the rules a change moves.
struct Taken<'t> {
    /// The rules that stay, in order.
    kept: Vec<&'t str>,
    /// The rules that go, in order: `-D` removes the first match, so the
    /// first copies go.
    removed: Vec<String>,
    /// Where the exclusion was, and where the first moved rule was, as an
    /// index into `kept`.
    at_exclusion: Option<usize>,
    at_first: Option<usize>,
    /// POSTROUTING as it is live, listed once.
    live: Vec<&'t str>,
}

impl Taken<'_> {
    /// Where the block goes when nothing else says: where the exclusion
    /// was (kube-proxy's jump, which kube-proxy inserts on top after boot,
    /// stays above it), else where the first moved rule was, else at the
    /// end of POSTROUTING.
    fn home(&self) -> usize {
        self.at_exclusion
            .or(self.at_first)
            .unwrap_or(self.kept.len())
    }
}

fn take<'t>(owner: &Owner, live: &Table<'t>) -> Taken<'t> {
    let rules = live.chain_rules("POSTROUTING");
    let mut taken = Taken {
        kept: Vec::new(),
        removed: Vec::new(),
        at_exclusion: None,
        at_first: None,
        live: Vec::new(),
    };
    for &r in &rules {
        if owner.moves(r) {
            if r == owner.exclusion() {
                taken.at_exclusion.get_or_insert(taken.kept.len());
            }
            taken.at_first.get_or_insert(taken.kept.len());
            taken.removed.push(r.to_owned());
        } else {
            taken.kept.push(r);
        }
    }
    taken.live = rules;
    taken
}

/// The change that puts the block at `at` (an index into the kept rules)
/// and podsnat's chain back as the owner has it. `None` when the live
/// table already is what it would make, so a second run changes nothing.
fn put_back(owner: &Owner, live: &Table<'_>, taken: Taken<'_>, at: usize) -> Option<Change> {
    let at = at.min(taken.kept.len());
    let block: Vec<&str> = owner.block().iter().map(String::as_str).collect();
    let mut want = taken.kept.clone();
    want.splice(at..at, block.iter().copied());
    let own: Option<Vec<&str>> = owner
        .own_chain()
        .map(|rules| rules.iter().map(String::as_str).collect());
    let chain_ok = match &own {
        None => true,
        Some(rules) => live.chains.contains(&OWN_CHAIN) && live.chain_rules(OWN_CHAIN) == *rules,
    };
    if want == taken.live && chain_ok {
        return None;
    }
    let transaction = rules_file::noflush_transaction(
        own.as_ref().map(|r| (OWN_CHAIN, r.as_slice())),
        &taken.removed,
        at + 1,
        &block,
    );
    Some(Change {
        transaction,
        position: at + 1,
        removed: taken.removed,
    })
}

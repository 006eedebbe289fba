//! The pin: after every docker start, podsnat's rules go back above docker's
//! broad MASQUERADE rule, in one `iptables-restore --noflush` transaction
//! that touches nothing but podsnat's rules and docker's broad one. Pure: it plans
//! from two tables, the one in the rules file and the live one.
//!
//! Why it is needed (measured with the real dockerd): every docker start
//! with a stored bridge network deletes docker's broad rule (the first copy,
//! which in guard mode is podsnat's) and inserts it again at position 1,
//! above podsnat's exclusion. Only the first start ever leaves it alone.
//!
//! It reads podsnat's rules from the rules file, not from a config, so a
//! node needs nothing that `write` (or a fleet's golden file) did not put
//! there: the file's POSTROUTING rules are podsnat's, as is its chain
//! PODSNAT-POSTROUTING. In guard mode docker's rule is part of podsnat's
//! block. In classic mode (one `! -d` rule) and owner mode (an egress rule
//! of podsnat's own) docker's broad rule only shadows podsnat's, so the pin
//! deletes it: the hand fix, and in owner mode a docker that masquerades
//! after all. Every live jump to PODSNAT-POSTROUTING is podsnat's: one the
//! file does not hold (the earlier jump without `! -o BRIDGE`, which caught
//! docker's hairpin traffic) goes too.

use super::{Change, put_back, take};
use crate::config::Family;
use crate::render::{self, OWN_CHAIN, Owner};
use crate::rules_file::Table;
use crate::verify;

/// Why a rules file gives the pin nothing to pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotOurs {
    #[error(
        "its nat table was not written by podsnat (no \"# podsnat\" header above *nat); run `podsnat write` first"
    )]
    NoHeader,
    #[error("its nat table has no POSTROUTING rule")]
    NoPostrouting,
}

/// Reads podsnat's rules from the nat table of the rules file `text`, of
/// `family`. docker's broad rule is the one for the pod subnet (`-s`) and
/// bridge (`! -o`) the exclusion names, read by verify's parser.
pub fn ours(text: &str, nat: &Table<'_>, family: Family) -> Result<Owner, NotOurs> {
    if !nat.is_podsnats(text) {
        return Err(NotOurs::NoHeader);
    }
    let chain = |name: &str| -> Vec<String> {
        nat.rules
            .iter()
            .filter(|r| r.chain == name)
            .map(|r| r.text.to_owned())
            .collect()
    };
    let block = chain("POSTROUTING");
    let Some(exclusion) = block.first() else {
        return Err(NotOurs::NoPostrouting);
    };
    let docker_broad = verify::subnet_and_bridge(exclusion, family)
        .map(|(subnet, bridge)| render::docker_broad(&subnet.to_string(), &bridge));
    let own_chain = nat.chains.contains(&OWN_CHAIN).then(|| chain(OWN_CHAIN));
    Ok(Owner::new(block, own_chain, docker_broad, family))
}

/// Plans the pin against the live nat table: podsnat's block goes back
/// where its exclusion was (see [`super::Taken`]). `None` when podsnat's
/// rules already stand where they belong, so a second run changes nothing.
pub fn plan(owner: &Owner, live: &Table<'_>) -> Option<Change> {
    let taken = take(owner, live);
    let at = taken.home();
    put_back(owner, live, taken, at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules_file::parse;

    const GUARD: &str = "# podsnat x\n*nat\n:POSTROUTING ACCEPT [0:0]\n:PODSNAT-POSTROUTING - [0:0]\n\
        -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING\n\
        -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE\n\
        -A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT\nCOMMIT\n";
    const CLASSIC: &str = "# podsnat x\n*nat\n:POSTROUTING ACCEPT [0:0]\n\
        -A POSTROUTING -s 172.7.21.0/24 ! -d 172.7.0.0/16 ! -o docker0 -j MASQUERADE --random-fully\nCOMMIT\n";
    const JUMP: &str = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING";
    const BROAD: &str = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
    const KUBE: &str =
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING";

    fn live(post: &[&str], own: bool) -> String {
        let mut t = String::from("*nat\n:POSTROUTING ACCEPT [0:0]\n:KUBE-POSTROUTING - [0:0]\n");
        if own {
            t += ":PODSNAT-POSTROUTING - [0:0]\n";
        }
        for r in post {
            t += r;
            t.push('\n');
        }
        if own {
            t += "-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT\n";
        }
        t + "COMMIT\n"
    }

    fn pin(file: &str, live_text: &str) -> Option<Change> {
        let f = parse(file).unwrap();
        let ours = ours(file, &f[0], Family::V4).unwrap();
        plan(&ours, &parse(live_text).unwrap()[0])
    }

    #[test]
    fn after_a_docker_start_the_block_goes_back_where_the_exclusion_was() {
        // docker deleted its rule (podsnat's copy) and inserted it on top,
        // above kube-proxy's jump.
        let p = pin(GUARD, &live(&[BROAD, KUBE, JUMP], true)).unwrap();
        assert_eq!(p.position, 2);
        assert_eq!(p.removed, [BROAD, JUMP]);
        assert!(
            p.transaction
                .contains(&format!("-I POSTROUTING 2 {}", &JUMP[15..]))
        );
        assert!(
            p.transaction
                .contains(&format!("-I POSTROUTING 3 {}", &BROAD[15..]))
        );
        // Already in place: nothing to do.
        assert!(pin(GUARD, &live(&[KUBE, JUMP, BROAD], true)).is_none());
    }

    #[test]
    fn an_earlier_jump_without_the_bridge_test_goes() {
        let old = "-A POSTROUTING -s 172.7.21.0/24 -j PODSNAT-POSTROUTING";
        let p = pin(GUARD, &live(&[KUBE, old, BROAD], true)).unwrap();
        assert_eq!(p.removed, [old, BROAD]);
        assert_eq!(p.position, 2);
        assert!(p.transaction.contains(&format!("-D {}", &old[3..])));
    }

    #[test]
    fn a_missing_chain_or_exclusion_is_put_back() {
        let p = pin(GUARD, &live(&[BROAD], false)).unwrap();
        assert!(
            p.transaction
                .starts_with("*nat\n:PODSNAT-POSTROUTING - [0:0]\n-A PODSNAT-POSTROUTING")
        );
        assert_eq!(p.position, 1);
        let p = pin(GUARD, &live(&[KUBE], true)).unwrap();
        assert_eq!(p.position, 2, "{}", p.transaction);
    }

    #[test]
    fn classic_pin_deletes_dockers_rule() {
        let classic = "-A POSTROUTING -s 172.7.21.0/24 ! -d 172.7.0.0/16 ! -o docker0 -j MASQUERADE --random-fully";
        let p = pin(CLASSIC, &live(&[BROAD, classic], false)).unwrap();
        assert_eq!(p.removed, [BROAD, classic]);
        assert_eq!(p.position, 1);
        assert!(pin(CLASSIC, &live(&[classic], false)).is_none());
    }

    #[test]
    fn owner_pin_is_a_no_op_unless_docker_masquerades_after_all() {
        let owner = "# podsnat x\n*nat\n:POSTROUTING ACCEPT [0:0]\n:PODSNAT-POSTROUTING - [0:0]\n\
            -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING\n\
            -A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -m comment --comment \"podsnat egress\" -j MASQUERADE\n\
            -A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT\nCOMMIT\n";
        let egress = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -m comment --comment \"podsnat egress\" -j MASQUERADE";
        assert!(pin(owner, &live(&[JUMP, egress], true)).is_none());
        let p = pin(owner, &live(&[BROAD, JUMP, egress], true)).unwrap();
        assert_eq!(p.removed, [BROAD, JUMP, egress]);
        assert_eq!(p.position, 1);
    }

    #[test]
    fn guard_keeps_dockers_rule_in_its_block() {
        let f = parse(GUARD).unwrap();
        let owner = ours(GUARD, &f[0], Family::V4).unwrap();
        assert_eq!(owner.block().last().map(String::as_str), Some(BROAD));
    }

    #[test]
    fn a_file_podsnat_did_not_write_is_refused() {
        let text = "*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -j MASQUERADE\nCOMMIT\n";
        let t = parse(text).unwrap();
        assert_eq!(
            ours(text, &t[0], Family::V4).unwrap_err(),
            NotOurs::NoHeader
        );
    }
}

//! The one answer to "is this rule podsnat's?". `verify` asks it of the
//! rule that decides a packet, the planner of `pin` and `verify --repair`
//! of every live POSTROUTING rule it might move. Both take podsnat's rules
//! from here, and here from [`super::rules`], so they cannot disagree.

use crate::config::{Family, Mode, NodeSpec};

use super::{ANCHOR_TABLE, OWN_CHAIN, broad, nft_family, own_chain, postrouting};

/// podsnat's rules in one family's nat table.
#[derive(Debug, Clone)]
pub struct Owner {
    /// podsnat's POSTROUTING rules, in order; the first is the exclusion.
    block: Vec<String>,
    /// PODSNAT-POSTROUTING's rules, where podsnat has that chain.
    own_chain: Option<Vec<String>>,
    /// docker's broad rule for the pod subnet and bridge. Guard mode's
    /// block holds a copy, which is still docker's rule: docker deletes and
    /// inserts it. Elsewhere it only shadows podsnat's rules.
    docker_broad: Option<String>,
    /// `table ip podsnat `: the chain names of podsnat's nftables anchor,
    /// as a walk names them, begin with it.
    anchor: String,
}

impl Owner {
    /// podsnat's rules as it renders them for `spec`.
    pub fn of(spec: &NodeSpec) -> Owner {
        Owner::new(
            postrouting(spec),
            (spec.mode() != Mode::Classic).then(|| own_chain(spec)),
            Some(broad(spec)),
            spec.family(),
        )
    }

    /// podsnat's rules as a rules file holds them; `docker_broad` is
    /// docker's rule for the subnet and bridge the exclusion names.
    pub fn new(
        block: Vec<String>,
        own_chain: Option<Vec<String>>,
        docker_broad: Option<String>,
        family: Family,
    ) -> Owner {
        Owner {
            block,
            own_chain,
            docker_broad,
            anchor: format!("table {} {ANCHOR_TABLE} ", nft_family(family)),
        }
    }

    /// The exclusion: the first POSTROUTING rule.
    pub fn exclusion(&self) -> &str {
        self.block.first().map_or("", String::as_str)
    }

    /// podsnat's POSTROUTING rules, in order.
    pub fn block(&self) -> &[String] {
        &self.block
    }

    /// PODSNAT-POSTROUTING's rules, where podsnat has that chain.
    pub fn own_chain(&self) -> Option<&[String]> {
        self.own_chain.as_deref()
    }

    /// A jump (or goto) to PODSNAT-POSTROUTING, from any chain. Every one
    /// is podsnat's, also in an earlier form than the block's (the jump
    /// without `! -o BRIDGE`, which caught docker's hairpin traffic).
    /// iptables-save prints a target without options last.
    pub fn is_jump(text: &str) -> bool {
        let mut words = text.rsplit(' ');
        words.next() == Some(OWN_CHAIN) && matches!(words.next(), Some("-j" | "-g"))
    }

    /// Whether podsnat wrote the rule `text` of `chain`: a rule of its own
    /// chain or of its anchor table, a jump to its chain, or one of its
    /// POSTROUTING rules, but not docker's broad rule, which guard mode's
    /// block holds a copy of.
    pub fn wrote(&self, chain: &str, text: &str) -> bool {
        chain == OWN_CHAIN
            || chain.starts_with(&self.anchor)
            || Owner::is_jump(text)
            || (chain == "POSTROUTING"
                && self.block.iter().any(|r| r == text)
                && self.docker_broad.as_deref() != Some(text))
    }

    /// Whether a live POSTROUTING rule goes when podsnat's block is put
    /// back: a rule podsnat wrote, or docker's broad rule, which is either
    /// in the block (guard mode) or shadows it (classic mode, and owner
    /// mode's docker that masquerades after all).
    pub fn moves(&self, text: &str) -> bool {
        self.wrote("POSTROUTING", text)
            || self.block.iter().any(|r| r == text)
            || self.docker_broad.as_deref() == Some(text)
    }

    /// Whether a rule of podsnat's decides a packet it reached: a rule
    /// podsnat wrote that is not a RETURN (podsnat's mark RETURNs hand the
    /// packet on; the walk names them when the policy then decides).
    pub fn decides(&self, chain: &str, text: &str) -> bool {
        !(text.ends_with("-j RETURN") || text.ends_with(" return")) && self.wrote(chain, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        let jump = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j PODSNAT-POSTROUTING";
        let broad = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
        Owner::new(
            vec![jump.into(), broad.into()],
            Some(vec![
                "-A PODSNAT-POSTROUTING -d 172.7.0.0/16 -j ACCEPT".into(),
            ]),
            Some(broad.into()),
            Family::V4,
        )
    }

    #[test]
    fn dockers_rule_is_moved_but_not_podsnats() {
        let o = owner();
        let broad = "-A POSTROUTING -s 172.7.21.0/24 ! -o docker0 -j MASQUERADE";
        assert!(!o.wrote("POSTROUTING", broad));
        assert!(o.moves(broad));
        assert!(o.wrote("POSTROUTING", o.exclusion()));
    }

    #[test]
    fn every_jump_to_podsnats_chain_is_podsnats() {
        let o = owner();
        let old = "-A POSTROUTING -s 172.7.21.0/24 -j PODSNAT-POSTROUTING";
        assert!(o.moves(old) && o.wrote("KUBE-X", "-A KUBE-X -g PODSNAT-POSTROUTING"));
        // A comment that names the chain is no jump.
        let named = "-A POSTROUTING -m comment --comment PODSNAT-POSTROUTING -j MASQUERADE";
        assert!(!o.moves(named));
    }

    #[test]
    fn a_return_decides_nothing() {
        let o = owner();
        let ret = "-A PODSNAT-POSTROUTING -m mark --mark 0x4000/0x4000 -j RETURN";
        assert!(o.wrote(OWN_CHAIN, ret) && !o.decides(OWN_CHAIN, ret));
        assert!(o.decides("table ip podsnat chain postrouting", "snat ip to ip saddr"));
        assert!(!o.decides(
            "table ip6 podsnat chain postrouting",
            "snat ip6 to ip6 saddr"
        ));
    }
}

//! Who masquerades pod egress, where the table shows it: the CNI `bridge`
//! plugin with `"ipMasq": true`, as containerd's default conflist and
//! flannel's CNI plugin (when flanneld does not masquerade) call it.
//! containernetworking/plugins `pkg/ip/ipmasq_iptables_linux.go`
//! (`SetupIPMasq`) gives each pod address a chain `CNI-<hash>` (`-d POD_NET
//! -j ACCEPT`, then `! -d 224.0.0.0/4 -j MASQUERADE`; `ff00::/8` for IPv6)
//! and one rule `-A POSTROUTING -s POD_IP -m comment --comment "name:
//! \"NET\" id: \"ID\"" -j CNI-<hash>`; `TeardownIPMasq` deletes both when
//! the pod goes (CNI `DEL`).
//!
//! Where iptables is missing, the plugin (since 1.5,
//! `pkg/ip/ipmasq_nftables_linux.go`) writes one nftables table instead,
//! `inet cni_plugins_masquerade`: its `postrouting` base chain (at srcnat)
//! returns multicast and goes to `masq_checks`, which holds one rule per pod,
//! `ip saddr POD_IP ip daddr != POD_NET masquerade`.
//!
//! On such a node an address of the pod subnet where no pod lives has no
//! chain, and nothing masquerades it: that is no drift, since no packet
//! comes from there. So pod→outside traffic is judged for the pods the
//! CNI's rules name.

use ipnet::IpNet;

use super::NftLayer;
use super::nft::{Elem, Field, Stmt};
use super::rule::{Rule, Target};
use crate::config::NodeSpec;

/// The plugin's nftables table and the chain of its per-pod rules.
const NFT_TABLE: (&str, &str) = ("inet", "cni_plugins_masquerade");
const NFT_CHAIN: &str = "masq_checks";

/// The pod addresses (or, from older plugins, networks) the CNI's
/// per-pod rules name inside the node's pod subnet, in table order.
pub(super) fn cni_pods(
    spec: &NodeSpec,
    rules: &[Rule<'_>],
    nft: Option<NftLayer<'_>>,
) -> Vec<IpNet> {
    let subnet = spec.pod_subnet();
    let mut pods: Vec<IpNet> = rules
        .iter()
        .filter(|r| r.chain == "POSTROUTING" && is_cni_jump(r))
        .filter_map(|r| match r.src {
            Some((false, net)) if subnet.contains(&net.network()) => Some(net),
            _ => None,
        })
        .collect();
    let (family, table) = NFT_TABLE;
    let nft_rules = nft
        .and_then(|n| n.ruleset.chain(family, table, NFT_CHAIN))
        .map(|c| c.rules.as_slice())
        .unwrap_or_default();
    for r in nft_rules {
        if !r.stmts.iter().any(|s| matches!(s, Stmt::Translate)) {
            continue;
        }
        let pod = r.stmts.iter().find_map(|s| match s {
            Stmt::Match {
                neg: false,
                field: Field::Addr { src: true, .. },
                any_of,
            } => match any_of.as_slice() {
                [Elem::Addrs(lo, hi)] if lo == hi => Some(IpNet::from(*lo)),
                _ => None,
            },
            _ => None,
        });
        pods.extend(pod.filter(|p| subnet.contains(&p.network())));
    }
    pods.dedup();
    pods
}

/// `-j CNI-...` with the plugin's `name: "NET" id: "ID"` comment.
fn is_cni_jump(r: &Rule<'_>) -> bool {
    matches!(&r.target, Target::Jump(c) if c.starts_with("CNI-"))
        && r.text.contains("--comment \"name: \\\"")
}

/// Whether `chain` (as a report names it) is one of the CNI's per-pod
/// chains, or its nftables chain of per-pod rules.
pub(super) fn in_cni_chain(chain: &str) -> bool {
    let (family, table) = NFT_TABLE;
    chain.starts_with("CNI-") || chain == format!("table {family} {table} chain {NFT_CHAIN}")
}

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
//! On such a node an address of the pod subnet where no pod lives has no
//! chain, and nothing masquerades it: that is no drift, since no packet
//! comes from there. So pod→outside traffic is judged for the pods the
//! CNI's rules name.

use ipnet::IpNet;

use super::rule::{Rule, Target};
use crate::config::NodeSpec;

/// The pod addresses (or, from older plugins, networks) the CNI's
/// per-pod rules name inside the node's pod subnet, in table order.
pub(super) fn cni_pods(spec: &NodeSpec, rules: &[Rule<'_>]) -> Vec<IpNet> {
    let subnet = spec.pod_subnet();
    let mut pods: Vec<IpNet> = rules
        .iter()
        .filter(|r| r.chain == "POSTROUTING" && is_cni_jump(r))
        .filter_map(|r| match r.src {
            Some((false, net)) if subnet.contains(&net.network()) => Some(net),
            _ => None,
        })
        .collect();
    pods.dedup();
    pods
}

/// `-j CNI-...` with the plugin's `name: "NET" id: "ID"` comment.
fn is_cni_jump(r: &Rule<'_>) -> bool {
    matches!(&r.target, Target::Jump(c) if c.starts_with("CNI-"))
        && r.text.contains("--comment \"name: \\\"")
}

/// Whether `r` is a rule of one of the CNI's per-pod chains.
pub(super) fn in_cni_chain(chain: &str) -> bool {
    chain.starts_with("CNI-")
}

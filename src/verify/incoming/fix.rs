//! What lifts each of docker's drops of cluster→pod traffic, as the
//! report's note. Upstream's words (moby daemon/libnetwork/drivers/bridge/
//! internal/iptabler and nftabler):
//!
//! - iptables, the filter table: `setDefaultForwardRule` appends `! -i BR
//!   -o BR -j DROP` to DOCKER whatever daemon.json says (an ACCEPT only for
//!   a user-defined network in gateway mode "nat-unprotected"); FORWARD
//!   jumps to DOCKER-USER before docker's chains, so an ACCEPT there lets
//!   the cluster's traffic through.
//! - nftables (docker 29), `filter-forward-in__BR`: its last rule drops
//!   (`UNPUBLISHED PORT DROP`); an accept in another table ends only that
//!   table's chain, but with `"bridge-accept-fwmark"` docker accepts packets
//!   carrying that mark before the drop (`ALLOW FW MARK`).
//! - the raw table's drop for a container with published ports
//!   (`filterDirectAccess`, both backends: `DROP DIRECT ACCESS`) goes with
//!   `"allow-direct-routing": true` (removed at docker's next start) and
//!   spares the network's trusted host interfaces.

use super::{Forward, RuleRef};
use crate::config::NodeSpec;

/// The note for a drop by `r`, where the rule is docker's and names the
/// bridge; `forward` says what docker's files set.
pub(super) fn docker_fix(r: &RuleRef, spec: &NodeSpec, forward: Forward<'_>) -> Option<String> {
    let bridge = spec.bridge().as_str();
    let family = spec.family();
    let nft_table = format!(
        "table {} docker-bridges chain ",
        crate::render::nft_family(family)
    );
    let nft_chain = r.chain.strip_prefix(&nft_table);
    let raw_drop = (r.chain == "raw PREROUTING" && r.text.contains(&format!("! -i {bridge} ")))
        || (nft_chain == Some("raw-PREROUTING") && r.text.contains("DROP DIRECT ACCESS"));
    let filter_drop =
        r.chain.starts_with("DOCKER") && r.text.contains(&format!("! -i {bridge} -o {bridge} "));
    let nft_drop = nft_chain == Some(&format!("filter-forward-in__{bridge}"))
        && r.text.contains("UNPUBLISHED PORT DROP");
    if raw_drop {
        let fix = match forward.direct_routing {
            Some(origin) => format!(
                "{origin} sets \"allow-direct-routing\": true, and docker removes these drops when it next starts"
            ),
            None => "\"allow-direct-routing\": true in daemon.json (docker 28.2 and later) ends them, or the network option com.docker.network.bridge.trusted_host_interfaces naming the interface the cluster's traffic arrives on".to_owned(),
        };
        Some(format!(
            "docker 28 and later drop packets for a container with published ports that arrive on another interface; {fix}"
        ))
    } else if filter_drop {
        Some(format!(
            "docker 28 and later drop traffic routed into the bridge from other interfaces, whatever daemon.json says; FORWARD runs DOCKER-USER first, and an ACCEPT there lets the cluster's traffic through: {} -I DOCKER-USER -s {} -o {bridge} -j ACCEPT",
            family.iptables(),
            spec.cluster_cidr()
        ))
    } else if nft_drop {
        let fix = match forward.accept_fwmark {
            Some((mark, origin)) => format!(
                "{origin} sets \"bridge-accept-fwmark\": {mark:?}, and docker accepts packets carrying it, which a rule of yours must set on the cluster's traffic before docker's forward chain runs"
            ),
            None => "with \"bridge-accept-fwmark\" in daemon.json docker accepts packets carrying that mark, which a rule of yours must set on the cluster's traffic before docker's forward chain runs".to_owned(),
        };
        Some(format!(
            "docker 29's nftables backend drops traffic routed into the bridge from other interfaces, and an accept in another table ends only that table's chain; {fix}"
        ))
    } else {
        None
    }
}

//! The checked result: a [`Node`] with one [`NodeSpec`] per address
//! family, built from the typed layers by precedence. Every check that
//! spans settings (a pod subnet inside its cluster network, a
//! `no_masquerade` entry of a family the node has, classic mode's single
//! exclusion) happens here, once.

use ipnet::IpNet;

use super::{EgressOwner, Iface, MasqueradeMark, Mode};
use super::{Given, Layer, key_name, pick};
use crate::error::{Error, Result};
use crate::family::Family;

/// One node, checked: a [`NodeSpec`] for each address family it has, IPv4
/// first. At least one; both on a dual-stack node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    specs: Vec<NodeSpec>,
    /// `cni_config` and the file (or the command line) that named it.
    cni_config: Option<(std::path::PathBuf, String)>,
}

impl Node {
    /// Every family's spec, IPv4 first.
    pub fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// The node's CNI network config, and where it was named.
    pub fn cni_config(&self) -> Option<(&std::path::Path, &str)> {
        self.cni_config
            .as_ref()
            .map(|(p, origin)| (p.as_path(), origin.as_str()))
    }

    pub fn family(&self, family: Family) -> Option<&NodeSpec> {
        self.specs.iter().find(|s| s.family == family)
    }

    /// Whether the node gets podsnat's nftables anchor: a node setting,
    /// the same in every family's spec.
    pub fn anchor(&self) -> bool {
        self.specs.iter().any(|s| s.anchor)
    }
}

/// Everything podsnat needs to know to render one family's nat table for
/// one node, checked: every network is of `family`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    family: Family,
    cluster_cidr: IpNet,
    pod_subnet: IpNet,
    bridge: Iface,
    no_masquerade: Vec<IpNet>,
    /// cluster_cidr and no_masquerade aggregated, computed once.
    exclusions: Vec<IpNet>,
    random_fully: bool,
    docker: bool,
    mode: Mode,
    anchor: bool,
    masquerade_mark: MasqueradeMark,
    egress_owner: EgressOwner,
}

impl NodeSpec {
    pub fn family(&self) -> Family {
        self.family
    }
    pub fn cluster_cidr(&self) -> IpNet {
        self.cluster_cidr
    }
    pub fn pod_subnet(&self) -> IpNet {
        self.pod_subnet
    }
    pub fn bridge(&self) -> &Iface {
        &self.bridge
    }
    pub fn no_masquerade(&self) -> &[IpNet] {
        &self.no_masquerade
    }
    pub fn random_fully(&self) -> bool {
        self.random_fully
    }
    pub fn docker(&self) -> bool {
        self.docker
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// Whether podsnat's nftables anchor is rendered, written and checked.
    pub fn anchor(&self) -> bool {
        self.anchor
    }
    pub fn masquerade_mark(&self) -> MasqueradeMark {
        self.masquerade_mark
    }
    /// Who masquerades pod egress, as the config says (`egress_owner`).
    pub fn egress_owner(&self) -> EgressOwner {
        self.egress_owner
    }

    /// The destinations whose traffic keeps the pod source IP: the cluster
    /// plus every `no_masquerade` CIDR, aggregated so that overlapping and
    /// adjacent networks become as few rules as possible. Sorted.
    pub fn exclusions(&self) -> &[IpNet] {
        &self.exclusions
    }
}

/// The settings both families share, picked once.
struct Shared {
    bridge: Iface,
    random_fully: bool,
    docker: bool,
    mode: Option<Given<Mode>>,
    no_masquerade: Option<Given<Vec<IpNet>>>,
    anchor: bool,
    masquerade_mark: MasqueradeMark,
    egress_owner: EgressOwner,
}

/// A family's two networks, picked by precedence, with their key names.
struct Networks {
    family: Family,
    cluster: Option<Given<IpNet>>,
    pod: Option<Given<IpNet>>,
    keys: (&'static str, &'static str),
}

fn as_ip<T: Clone + Into<IpNet>>(g: Option<Given<T>>) -> Option<Given<IpNet>> {
    g.map(|g| Given {
        value: g.value.into(),
        origin: g.origin,
    })
}

impl Node {
    pub(super) fn from_layers(layers: &[Layer]) -> Result<Self> {
        let files: Vec<&str> = layers.iter().filter_map(|l| l.origin.as_deref()).collect();
        let missing = |field: &'static str, hint: String| Error::Missing {
            field,
            read: match files.as_slice() {
                [] => "the command line (no --config or --flannel-env given)".to_owned(),
                f => format!("the command line or {}", f.join(", ")),
            },
            hint,
        };
        let hint = |field: &str| {
            format!(
                "set it in --config, pass {}, or use --flannel-env",
                key_name(true, "", field)
            )
        };
        let families = [
            Networks {
                family: Family::V4,
                cluster: as_ip(pick("cluster_cidr", layers, |l| l.cluster_cidr.as_ref())?),
                pod: as_ip(pick("pod_subnet", layers, |l| l.pod_subnet.as_ref())?),
                keys: ("cluster_cidr", "pod_subnet"),
            },
            Networks {
                family: Family::V6,
                cluster: as_ip(pick("cluster_cidr_v6", layers, |l| {
                    l.cluster_cidr_v6.as_ref()
                })?),
                pod: as_ip(pick("pod_subnet_v6", layers, |l| l.pod_subnet_v6.as_ref())?),
                keys: ("cluster_cidr_v6", "pod_subnet_v6"),
            },
        ];
        if families
            .iter()
            .all(|f| f.cluster.is_none() && f.pod.is_none())
        {
            return Err(missing(
                "cluster_cidr",
                "set it (or cluster_cidr_v6 for IPv6) in --config, pass --cluster-cidr, or use --flannel-env"
                    .into(),
            ));
        }
        let shared = Shared {
            bridge: pick("bridge", layers, |l| l.bridge.as_ref())?
                .map(|g| g.value)
                .unwrap_or_else(Iface::docker0),
            random_fully: pick("random_fully", layers, |l| l.random_fully.as_ref())?
                .is_some_and(|g| g.value),
            docker: pick("docker", layers, |l| l.docker.as_ref())?.is_none_or(|g| g.value),
            mode: pick("mode", layers, |l| l.mode.as_ref())?,
            no_masquerade: pick("no_masquerade", layers, |l| l.no_masquerade.as_ref())?,
            anchor: pick("anchor", layers, |l| l.anchor.as_ref())?.is_none_or(|g| g.value),
            masquerade_mark: pick("masquerade_bit", layers, |l| l.masquerade_bit.as_ref())?
                .map(|g| g.value)
                .unwrap_or_default(),
            egress_owner: pick("egress_owner", layers, |l| l.egress_owner.as_ref())?
                .map(|g| g.value)
                .unwrap_or_default(),
        };
        let cni_config =
            pick("cni_config", layers, |l| l.cni_config.as_ref())?.map(|g| (g.value, g.origin));
        let mut specs = Vec::new();
        for f in families {
            let (cluster_key, pod_key) = f.keys;
            let (cluster, pod) = match (f.cluster, f.pod) {
                (None, None) => continue,
                (Some(c), Some(p)) => (c, p),
                (None, Some(_)) => return Err(missing(cluster_key, hint(cluster_key))),
                (Some(_), None) => return Err(missing(pod_key, hint(pod_key))),
            };
            specs.push(family_spec(
                f.family,
                (cluster_key, cluster),
                (pod_key, pod),
                &shared,
            )?);
        }
        // A no_masquerade network of a family the node does not have would
        // silently do nothing: say so instead.
        if let Some(extra) = &shared.no_masquerade
            && let Some(net) = extra
                .value
                .iter()
                .find(|n| !specs.iter().any(|s| s.family == Family::of(n)))
        {
            let family = Family::of(net);
            return Err(Error::field(
                &extra.origin,
                "no_masquerade",
                net.to_string(),
                format!(
                    "is {}, but this node has no {} pod network ({})",
                    family.name(),
                    family.name(),
                    if family == Family::V6 {
                        "cluster_cidr_v6 and pod_subnet_v6"
                    } else {
                        "cluster_cidr and pod_subnet"
                    }
                ),
            ));
        }
        Ok(Node { specs, cni_config })
    }
}

/// One family's spec from its networks and the shared settings.
fn family_spec(
    family: Family,
    (cluster_key, cluster): (&str, Given<IpNet>),
    (pod_key, pod): (&str, Given<IpNet>),
    shared: &Shared,
) -> Result<NodeSpec> {
    if !cluster.value.contains(&pod.value) {
        return Err(Error::field(
            &pod.origin,
            pod_key,
            pod.value.to_string(),
            if cluster.origin == pod.origin {
                format!("is not inside {cluster_key} \"{}\"", cluster.value)
            } else {
                format!(
                    "is not inside {cluster_key} \"{}\" (from {})",
                    cluster.value, cluster.origin
                )
            },
        ));
    }
    let no_masquerade: Vec<IpNet> = shared
        .no_masquerade
        .as_ref()
        .map(|g| {
            g.value
                .iter()
                .filter(|n| Family::of(n) == family)
                .copied()
                .collect()
        })
        .unwrap_or_default();
    let mut all = Vec::with_capacity(no_masquerade.len() + 1);
    all.push(cluster.value);
    all.extend_from_slice(&no_masquerade);
    let spec = NodeSpec {
        family,
        cluster_cidr: cluster.value,
        pod_subnet: pod.value,
        bridge: shared.bridge.clone(),
        no_masquerade,
        exclusions: IpNet::aggregate(&all),
        random_fully: shared.random_fully,
        docker: shared.docker,
        mode: shared.mode.as_ref().map(|g| g.value).unwrap_or_default(),
        anchor: shared.anchor,
        masquerade_mark: shared.masquerade_mark,
        egress_owner: shared.egress_owner,
    };
    refuse_aggregates(&spec, cluster_key, shared)?;
    // Classic mode is one rule with one `! -d`; it can only express a
    // single destination network.
    if let (Some(mode), Some(extra)) = (&shared.mode, &shared.no_masquerade) {
        let excl = spec.exclusions();
        if mode.value == Mode::Classic && excl.len() > 1 {
            let list: Vec<String> = excl.iter().map(|n| n.to_string()).collect();
            return Err(Error::field(
                &mode.origin,
                "mode",
                "classic",
                format!(
                    "writes a single `! -d` rule, but {cluster_key} and no_masquerade \
                     (from {}) need {} exclusions ({}); use mode = \"guard\"",
                    extra.origin,
                    excl.len(),
                    list.join(", ")
                ),
            ));
        }
    }
    Ok(spec)
}

/// An exclusion refused on its own stays refused when several entries add
/// up to it: `0.0.0.0/1` and `128.0.0.0/1` aggregate to `0.0.0.0/0`, which
/// would turn masquerading off for all egress. Each aggregate goes through
/// the same check an entry gets; the error names the entries.
fn refuse_aggregates(spec: &NodeSpec, cluster_key: &str, shared: &Shared) -> Result<()> {
    let Some(extra) = &shared.no_masquerade else {
        return Ok(());
    };
    for &net in spec.exclusions() {
        let Some(problem) = super::values::network_problem(net) else {
            continue;
        };
        let mut entries: Vec<&IpNet> = spec
            .no_masquerade
            .iter()
            .filter(|n| net.contains(*n))
            .collect();
        entries.sort();
        const SHOWN: usize = 8;
        let mut list: Vec<String> = entries.iter().take(SHOWN).map(|n| n.to_string()).collect();
        if entries.len() > SHOWN {
            list.push(format!("and {} more", entries.len() - SHOWN));
        }
        let with = if net.contains(&spec.cluster_cidr) {
            format!(" (with {cluster_key} {})", spec.cluster_cidr)
        } else {
            String::new()
        };
        let key = key_name(extra.origin == super::FLAGS_ORIGIN, "", "no_masquerade");
        return Err(Error::field(
            &extra.origin,
            key,
            net.to_string(),
            format!(
                "is what {}{with} add up to, and it {problem}",
                list.join(", ")
            ),
        ));
    }
    Ok(())
}

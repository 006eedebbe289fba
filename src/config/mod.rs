//! The edge where text becomes types. A config file, flannel's subnet.env and
//! command-line flags are each parsed into a typed [`Layer`]; the layers are
//! merged and checked once into a [`Node`]: one [`NodeSpec`] per address
//! family the node has (IPv4, IPv6 or both). Nothing downstream re-checks.

mod egress;
mod files;
mod node;
mod values;

use std::fmt;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;

pub use crate::family::Family;
pub use egress::EgressOwner;
pub use files::{UnitSettings, unit_settings};
use files::{load_config_file, load_flannel_env};
pub use files::{read_any, read_limited, read_text, toml_message};
pub use node::{Node, NodeSpec};
pub use values::{
    Iface, MasqueradeMark, Mode, ValueError, parse_cidr, parse_cidr_any, parse_cidr6,
};

use crate::error::{Error, Result};

/// A value together with where it came from, for error messages.
#[derive(Debug, Clone)]
struct Given<T> {
    value: T,
    origin: String,
}

/// One source of settings, already typed. Every field is optional because a
/// source may hold only part of the settings (subnet.env has two).
#[derive(Debug, Default)]
struct Layer {
    /// The file this layer was read from; `None` for flags, which are
    /// explicit intent and override the files without a conflict check.
    origin: Option<String>,
    cluster_cidr: Option<Given<Ipv4Net>>,
    pod_subnet: Option<Given<Ipv4Net>>,
    cluster_cidr_v6: Option<Given<Ipv6Net>>,
    pod_subnet_v6: Option<Given<Ipv6Net>>,
    bridge: Option<Given<Iface>>,
    no_masquerade: Option<Given<Vec<IpNet>>>,
    random_fully: Option<Given<bool>>,
    docker: Option<Given<bool>>,
    mode: Option<Given<Mode>>,
    anchor: Option<Given<bool>>,
    masquerade_bit: Option<Given<MasqueradeMark>>,
    egress_owner: Option<Given<EgressOwner>>,
    cni_config: Option<Given<std::path::PathBuf>>,
}

/// Declares a raw (serde) struct that holds the settings every source of
/// a node can give (`bridge` to `masquerade_bit`) between fields of its own,
/// and `settings_onto`, which copies them into a [`RawConfig`]. The config
/// file, the fleet inventory and each of its nodes are declared with it, so
/// those three raw sources share one list of the keys. The merge still names
/// each key again (`Layer`, `node_spec`, `Shared`, `load_spec`): a new key
/// is added there too. (serde's `flatten` would share the declaration as
/// well, but it loses the line and the list of expected keys in TOML errors.)
macro_rules! raw_with_settings {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$hm:meta])* $head:ident: $hty:ty,)*
        } then {
            $($(#[$tm:meta])* $tail:ident: $tty:ty,)*
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$hm])* pub $head: $hty,)*
            pub bridge: Option<String>,
            pub no_masquerade: Option<Vec<String>>,
            pub random_fully: Option<bool>,
            pub docker: Option<bool>,
            pub mode: Option<String>,
            /// Load podsnat's nftables anchor (default true).
            pub anchor: Option<bool>,
            /// kube-proxy's `--iptables-masquerade-bit` (default 14, mark 0x4000).
            pub masquerade_bit: Option<i64>,
            /// Who masquerades pod egress (default "detect").
            pub egress_owner: Option<String>,
            /// The CNI network config the node's pods are set up with.
            pub cni_config: Option<String>,
            $($(#[$tm])* pub $tail: $tty,)*
        }

        impl $name {
            /// `config` with this struct's shared settings.
            pub fn settings_onto(&self, config: $crate::config::RawConfig) -> $crate::config::RawConfig {
                $crate::config::RawConfig {
                    bridge: self.bridge.clone(),
                    no_masquerade: self.no_masquerade.clone(),
                    random_fully: self.random_fully,
                    docker: self.docker,
                    mode: self.mode.clone(),
                    anchor: self.anchor,
                    masquerade_bit: self.masquerade_bit,
                    egress_owner: self.egress_owner.clone(),
                    cni_config: self.cni_config.clone(),
                    ..config
                }
            }
        }
    };
}
pub(crate) use raw_with_settings;

raw_with_settings! {
    /// The config file as written, and the same shape for command-line flags.
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawConfig {
        cluster_cidr: Option<String>,
        pod_subnet: Option<String>,
        cluster_cidr_v6: Option<String>,
        pod_subnet_v6: Option<String>,
    } then {}
}

/// A setting's name as the user wrote it, for error messages: the flag
/// (`--pod-subnet`) on the command line, `prefix` + key (`pod_subnet`,
/// `unit.after`) in a file.
pub fn key_name(from_flags: bool, prefix: &str, key: &str) -> String {
    if from_flags {
        format!("--{}", key.replace('_', "-"))
    } else {
        format!("{prefix}{key}")
    }
}

impl RawConfig {
    fn into_layer(self, origin: &str, from_flags: bool) -> Result<Layer> {
        let key = |field: &str| key_name(from_flags, "", field);
        let no_masquerade = match self.no_masquerade {
            None => None,
            Some(list) => Some(Given::from(
                origin,
                list.iter()
                    .enumerate()
                    .map(|(i, s)| {
                        parse_cidr_any(s).map_err(|p| {
                            let field = if from_flags {
                                key("no_masquerade")
                            } else {
                                format!("no_masquerade[{i}]")
                            };
                            Error::field(origin, field, s.as_str(), p)
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            )),
        };
        Ok(Layer {
            origin: (!from_flags).then(|| origin.to_owned()),
            cluster_cidr: typed(origin, &key("cluster_cidr"), self.cluster_cidr, parse_cidr)?,
            pod_subnet: typed(origin, &key("pod_subnet"), self.pod_subnet, parse_cidr)?,
            cluster_cidr_v6: typed(
                origin,
                &key("cluster_cidr_v6"),
                self.cluster_cidr_v6,
                parse_cidr6,
            )?,
            pod_subnet_v6: typed(
                origin,
                &key("pod_subnet_v6"),
                self.pod_subnet_v6,
                parse_cidr6,
            )?,
            bridge: typed(origin, &key("bridge"), self.bridge, Iface::parse)?,
            no_masquerade,
            random_fully: self.random_fully.map(|v| Given::from(origin, v)),
            docker: self.docker.map(|v| Given::from(origin, v)),
            mode: typed(origin, &key("mode"), self.mode, Mode::parse)?,
            egress_owner: typed(
                origin,
                &key("egress_owner"),
                self.egress_owner,
                EgressOwner::parse,
            )?,
            cni_config: self
                .cni_config
                .map(|p| Given::from(origin, std::path::PathBuf::from(p))),
            anchor: self.anchor.map(|v| Given::from(origin, v)),
            masquerade_bit: match self.masquerade_bit {
                None => None,
                Some(bit) => Some(Given::from(
                    origin,
                    MasqueradeMark::from_bit(bit).map_err(|p| {
                        Error::field(origin, key("masquerade_bit"), bit.to_string(), p)
                    })?,
                )),
            },
        })
    }
}

impl<T> Given<T> {
    fn from(origin: &str, value: T) -> Self {
        Given {
            value,
            origin: origin.to_owned(),
        }
    }
}

/// Parses an optional raw string into a typed value that remembers its origin.
fn typed<T>(
    origin: &str,
    field: &str,
    raw: Option<String>,
    parse: fn(&str) -> std::result::Result<T, ValueError>,
) -> Result<Option<Given<T>>> {
    raw.map(|s| {
        parse(&s)
            .map(|v| Given::from(origin, v))
            .map_err(|problem| Error::field(origin, field, s.as_str(), problem))
    })
    .transpose()
}

/// How command-line flags are named in error messages.
pub const FLAGS_ORIGIN: &str = "command line";

/// Where settings come from. Precedence: flags, then subnet.env, then the
/// config file. subnet.env and the config file must agree where both speak:
/// a silent winner would hide a node whose config no longer matches flannel.
#[derive(Debug, Default)]
pub struct Sources<'a> {
    pub config: Option<&'a Path>,
    pub flannel_env: Option<&'a Path>,
    pub flags: RawConfig,
}

/// Picks a setting by precedence (layers are ordered flags, subnet.env,
/// config). The two files must agree when both set it.
fn pick<T, F>(field: &'static str, layers: &[Layer], get: F) -> Result<Option<Given<T>>>
where
    T: Clone + PartialEq + fmt::Debug,
    F: Fn(&Layer) -> Option<&Given<T>>,
{
    let found: Vec<(bool, &Given<T>)> = layers
        .iter()
        .filter_map(|l| get(l).map(|g| (l.origin.is_none(), g)))
        .collect();
    if let [(false, a), (_, b), ..] = found[..]
        && a.value != b.value
    {
        return Err(Error::Conflict {
            field,
            a_origin: a.origin.clone(),
            a: debug_value(&a.value),
            b_origin: b.origin.clone(),
            b: debug_value(&b.value),
        });
    }
    Ok(found.first().map(|(_, g)| (*g).clone()))
}

fn debug_value<T: fmt::Debug>(v: &T) -> String {
    format!("{v:?}")
}

/// One node of an inventory: the node's own values override the
/// cluster-wide ones. `origin` names the node in messages.
pub fn node_spec(origin: &str, cluster: &RawConfig, node: &RawConfig) -> Result<Node> {
    let merged = RawConfig {
        cluster_cidr: node
            .cluster_cidr
            .clone()
            .or_else(|| cluster.cluster_cidr.clone()),
        pod_subnet: node
            .pod_subnet
            .clone()
            .or_else(|| cluster.pod_subnet.clone()),
        cluster_cidr_v6: node
            .cluster_cidr_v6
            .clone()
            .or_else(|| cluster.cluster_cidr_v6.clone()),
        pod_subnet_v6: node
            .pod_subnet_v6
            .clone()
            .or_else(|| cluster.pod_subnet_v6.clone()),
        bridge: node.bridge.clone().or_else(|| cluster.bridge.clone()),
        no_masquerade: node
            .no_masquerade
            .clone()
            .or_else(|| cluster.no_masquerade.clone()),
        random_fully: node.random_fully.or(cluster.random_fully),
        docker: node.docker.or(cluster.docker),
        mode: node.mode.clone().or_else(|| cluster.mode.clone()),
        anchor: node.anchor.or(cluster.anchor),
        masquerade_bit: node.masquerade_bit.or(cluster.masquerade_bit),
        egress_owner: node
            .egress_owner
            .clone()
            .or_else(|| cluster.egress_owner.clone()),
        cni_config: node
            .cni_config
            .clone()
            .or_else(|| cluster.cni_config.clone()),
    };
    Node::from_layers(&[merged.into_layer(origin, false)?])
}

/// Reads and merges every source into a checked [`Node`].
pub fn load(sources: Sources<'_>) -> Result<Node> {
    let mut layers = vec![sources.flags.into_layer(FLAGS_ORIGIN, true)?];
    if let Some(p) = sources.flannel_env {
        layers.push(load_flannel_env(p)?);
    }
    if let Some(p) = sources.config {
        layers.push(load_config_file(p)?);
    }
    Node::from_layers(&layers)
}

#[cfg(test)]
mod tests;

//! The edge where text becomes types. A config file, flannel's subnet.env and
//! command-line flags are each parsed into a typed [`Layer`]; the layers are
//! merged and checked once into a [`NodeSpec`]. Nothing downstream re-checks.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A network interface name that is safe to put on an iptables line.
/// Linux allows 1-15 bytes; we also restrict the alphabet so that nothing
/// (spaces, quotes, `!`, a leading `-`) can be read by iptables as an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface(String);

impl Iface {
    pub const MAX_LEN: usize = 15;

    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        if s.is_empty() {
            return Err("is empty; an interface name has 1 to 15 characters".into());
        }
        if s.len() > Self::MAX_LEN {
            return Err(format!(
                "is {} bytes long; Linux interface names have at most {} bytes",
                s.len(),
                Self::MAX_LEN
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!(
                "has the character {c:?} (U+{:04X}); interface names may only use A-Z a-z 0-9 _ . -",
                c as u32
            ));
        }
        if s.starts_with('-') {
            return Err("starts with '-', which iptables would read as an option".into());
        }
        if s == "." || s == ".." {
            return Err("is not a valid Linux interface name".into());
        }
        Ok(Iface(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How the exclusion is written; see the README for the trade-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Exclusions first, then docker's exact broad rule, so a docker restart
    /// finds its rule with `iptables -C` and inserts nothing above ours.
    #[default]
    Guard,
    /// The hand-made fix, one rule with `! -d cluster`. Undone by a docker restart.
    Classic,
}

impl Mode {
    fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "guard" => Ok(Mode::Guard),
            "classic" => Ok(Mode::Classic),
            _ => Err("is not a mode; use \"guard\" or \"classic\"".into()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Guard => "guard",
            Mode::Classic => "classic",
        })
    }
}

/// Parses an IPv4 CIDR that must be a network address (no host bits).
pub fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    let net = parse_cidr_loose(s)?;
    if net.trunc() != net {
        return Err(format!(
            "has host bits set; did you mean \"{}\"?",
            net.trunc()
        ));
    }
    if net.prefix_len() == 0 {
        return Err("covers every address; it would turn masquerading off entirely".into());
    }
    Ok(net)
}

/// Parses an IPv4 CIDR and allows host bits, as in FLANNEL_SUBNET=172.7.21.1/24.
fn parse_cidr_loose(s: &str) -> std::result::Result<Ipv4Net, String> {
    let addr_part = s.split('/').next().unwrap_or(s);
    if let Ok(net) = s.parse::<Ipv4Net>() {
        // ipnet reads "010" as ten, but inet_aton (and so some tools) as
        // eight: refuse the ambiguity instead of guessing.
        if let Some(octet) = addr_part
            .split('.')
            .find(|o| o.len() > 1 && o.starts_with('0'))
        {
            return Err(format!(
                "has the octet {octet:?} with a leading zero, which some tools read as octal; write it without"
            ));
        }
        return Ok(net);
    }
    if s.parse::<ipnet::Ipv6Net>().is_ok() || addr_part.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err("is IPv6; podsnat handles IPv4 only for now (IPv6 is planned)".into());
    }
    if let Ok(IpAddr::V4(a)) = s.parse::<IpAddr>() {
        return Err(format!("has no prefix length; did you mean \"{a}/32\"?"));
    }
    Err("is not an IPv4 CIDR like \"172.7.0.0/16\"".into())
}

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
    bridge: Option<Given<Iface>>,
    no_masquerade: Option<Given<Vec<Ipv4Net>>>,
    random_fully: Option<Given<bool>>,
    docker: Option<Given<bool>>,
    mode: Option<Given<Mode>>,
}

/// The config file as written, and the same shape for command-line flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cluster_cidr: Option<String>,
    pub pod_subnet: Option<String>,
    pub bridge: Option<String>,
    pub no_masquerade: Option<Vec<String>>,
    pub random_fully: Option<bool>,
    pub docker: Option<bool>,
    pub mode: Option<String>,
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
                        parse_cidr(s).map_err(|p| {
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
            bridge: typed(origin, &key("bridge"), self.bridge, Iface::parse)?,
            no_masquerade,
            random_fully: self.random_fully.map(|v| Given::from(origin, v)),
            docker: self.docker.map(|v| Given::from(origin, v)),
            mode: typed(origin, &key("mode"), self.mode, Mode::parse)?,
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
    parse: fn(&str) -> std::result::Result<T, String>,
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

/// Everything podsnat needs to know about one node, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    cluster_cidr: Ipv4Net,
    pod_subnet: Ipv4Net,
    bridge: Iface,
    no_masquerade: Vec<Ipv4Net>,
    random_fully: bool,
    docker: bool,
    mode: Mode,
}

impl NodeSpec {
    pub fn cluster_cidr(&self) -> Ipv4Net {
        self.cluster_cidr
    }
    pub fn pod_subnet(&self) -> Ipv4Net {
        self.pod_subnet
    }
    pub fn bridge(&self) -> &Iface {
        &self.bridge
    }
    pub fn no_masquerade(&self) -> &[Ipv4Net] {
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

    /// The destinations whose traffic keeps the pod source IP: the cluster
    /// plus every `no_masquerade` CIDR, aggregated so that overlapping and
    /// adjacent networks become as few rules as possible. Sorted.
    pub fn exclusions(&self) -> Vec<Ipv4Net> {
        let mut all = Vec::with_capacity(self.no_masquerade.len() + 1);
        all.push(self.cluster_cidr);
        all.extend_from_slice(&self.no_masquerade);
        Ipv4Net::aggregate(&all)
    }

    fn from_layers(layers: &[Layer]) -> Result<Self> {
        let files: Vec<&str> = layers.iter().filter_map(|l| l.origin.as_deref()).collect();
        let missing = |field, hint| Error::Missing {
            field,
            read: match files.as_slice() {
                [] => "the command line (no --config or --flannel-env given)".to_owned(),
                f => format!("the command line or {}", f.join(", ")),
            },
            hint,
        };
        let cluster =
            pick("cluster_cidr", layers, |l| l.cluster_cidr.as_ref())?.ok_or_else(|| {
                missing(
                    "cluster_cidr",
                    "set it in --config, pass --cluster-cidr, or use --flannel-env",
                )
            })?;
        let pod = pick("pod_subnet", layers, |l| l.pod_subnet.as_ref())?.ok_or_else(|| {
            missing(
                "pod_subnet",
                "set it in --config, pass --pod-subnet, or use --flannel-env",
            )
        })?;
        if !cluster.value.contains(&pod.value) {
            return Err(Error::field(
                &pod.origin,
                "pod_subnet",
                pod.value.to_string(),
                if cluster.origin == pod.origin {
                    format!("is not inside cluster_cidr \"{}\"", cluster.value)
                } else {
                    format!(
                        "is not inside cluster_cidr \"{}\" (from {})",
                        cluster.value, cluster.origin
                    )
                },
            ));
        }
        let mode = pick("mode", layers, |l| l.mode.as_ref())?;
        let no_masquerade = pick("no_masquerade", layers, |l| l.no_masquerade.as_ref())?;
        let spec = NodeSpec {
            cluster_cidr: cluster.value,
            pod_subnet: pod.value,
            bridge: pick("bridge", layers, |l| l.bridge.as_ref())?
                .map(|g| g.value)
                .unwrap_or_else(|| Iface("docker0".into())),
            no_masquerade: no_masquerade
                .as_ref()
                .map(|g| g.value.clone())
                .unwrap_or_default(),
            random_fully: pick("random_fully", layers, |l| l.random_fully.as_ref())?
                .is_some_and(|g| g.value),
            docker: pick("docker", layers, |l| l.docker.as_ref())?.is_none_or(|g| g.value),
            mode: mode.as_ref().map(|g| g.value).unwrap_or_default(),
        };
        // Classic mode is one rule with one `! -d`; it can only express a
        // single destination network.
        if let (Some(mode), Some(extra)) = (&mode, &no_masquerade) {
            let excl = spec.exclusions();
            if mode.value == Mode::Classic && excl.len() > 1 {
                let list: Vec<String> = excl.iter().map(|n| n.to_string()).collect();
                return Err(Error::field(
                    &mode.origin,
                    "mode",
                    "classic",
                    format!(
                        "writes a single `! -d` rule, but cluster_cidr and no_masquerade \
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

/// The largest config or subnet.env podsnat reads. Real ones are a few
/// hundred bytes; 10,000 `no_masquerade` CIDRs are about 200 KiB.
pub const MAX_INPUT: u64 = 1024 * 1024;

/// Reads a whole file of at most [`MAX_INPUT`] bytes as UTF-8, with errors
/// that name it.
pub fn read_text(path: &Path) -> Result<String> {
    read_limited(path, MAX_INPUT)
}

/// Reads a whole file of at most `max` bytes as UTF-8.
pub fn read_limited(path: &Path, max: u64) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, "cannot read", e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, "cannot read", e))?;
    if bytes.len() as u64 > max {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(max + 1);
        return Err(Error::io(
            path,
            "refusing to read",
            std::io::Error::other(format!("it has {size} bytes; podsnat reads at most {max}")),
        ));
    }
    String::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

fn load_config_file(path: &Path) -> Result<Layer> {
    let text = read_text(path)?;
    let origin = path.display().to_string();
    let raw: RawConfig = toml::from_str(&text).map_err(|e| Error::Syntax {
        path: origin.clone(),
        message: toml_message(&text, &e),
    })?;
    raw.into_layer(&origin, false)
}

/// toml's own Display draws a multi-line caret picture; a one-line
/// "line N: message" reads better in a playbook's failure output.
pub fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let start = before.rfind('\n').map_or(0, |i| i + 1);
            let source = text.get(start..).unwrap_or("").lines().next().unwrap_or("");
            format!("line {line}: {msg}: {}", crate::error::quoted(source))
        }
        None => msg.to_owned(),
    }
}

/// flannel's /run/flannel/subnet.env: `KEY=VALUE` lines. Only
/// FLANNEL_NETWORK and FLANNEL_SUBNET are used; other keys are ignored.
/// Lines that are not plain `KEY=VALUE` (an `export` prefix, say) are an
/// error rather than silently skipped, since flannel never writes them.
fn load_flannel_env(path: &Path) -> Result<Layer> {
    let text = read_text(path)?;
    let origin = path.display().to_string();
    let mut network = None;
    let mut subnet = None;
    for (i, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad_line = || Error::Syntax {
            path: origin.clone(),
            message: format!("line {}: expected KEY=VALUE, found {:?}", i + 1, line),
        };
        let (key, value) = line.split_once('=').ok_or_else(bad_line)?;
        let key_ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !key_ok {
            return Err(bad_line());
        }
        match key {
            "FLANNEL_NETWORK" => network = Some(value),
            "FLANNEL_SUBNET" => subnet = Some(value),
            _ => {}
        }
    }
    let missing = |key: &str| Error::Syntax {
        path: origin.clone(),
        message: format!("{key} is missing; is this flannel's subnet.env?"),
    };
    let network = network.ok_or_else(|| missing("FLANNEL_NETWORK"))?;
    let subnet = subnet.ok_or_else(|| missing("FLANNEL_SUBNET"))?;
    let cluster =
        parse_cidr(network).map_err(|p| Error::field(&origin, "FLANNEL_NETWORK", network, p))?;
    // flannel writes the node's gateway address (172.7.21.1/24); the pod
    // subnet is its network.
    let pod = parse_cidr_loose(subnet)
        .map_err(|p| Error::field(&origin, "FLANNEL_SUBNET", subnet, p))?
        .trunc();
    Ok(Layer {
        cluster_cidr: Some(Given::from(&origin, cluster)),
        origin: Some(origin.clone()),
        pod_subnet: Some(Given::from(&origin, pod)),
        ..Layer::default()
    })
}

/// One node of an inventory: the node's own values override the
/// cluster-wide ones. `origin` names the node in messages.
pub fn node_spec(origin: &str, cluster: &RawConfig, node: &RawConfig) -> Result<NodeSpec> {
    let merged = RawConfig {
        cluster_cidr: node
            .cluster_cidr
            .clone()
            .or_else(|| cluster.cluster_cidr.clone()),
        pod_subnet: node
            .pod_subnet
            .clone()
            .or_else(|| cluster.pod_subnet.clone()),
        bridge: node.bridge.clone().or_else(|| cluster.bridge.clone()),
        no_masquerade: node
            .no_masquerade
            .clone()
            .or_else(|| cluster.no_masquerade.clone()),
        random_fully: node.random_fully.or(cluster.random_fully),
        docker: node.docker.or(cluster.docker),
        mode: node.mode.clone().or_else(|| cluster.mode.clone()),
    };
    NodeSpec::from_layers(&[merged.into_layer(origin, false)?])
}

/// Reads and merges every source into a checked [`NodeSpec`].
pub fn load(sources: Sources<'_>) -> Result<NodeSpec> {
    let mut layers = vec![sources.flags.into_layer(FLAGS_ORIGIN, true)?];
    if let Some(p) = sources.flannel_env {
        layers.push(load_flannel_env(p)?);
    }
    if let Some(p) = sources.config {
        layers.push(load_config_file(p)?);
    }
    NodeSpec::from_layers(&layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_rules() {
        assert!(Iface::parse("docker0").is_ok());
        assert!(Iface::parse("cni0.100").is_ok());
        assert!(Iface::parse("a23456789012345").is_ok());
        for bad in [
            "",
            "a234567890123456",
            "dock er",
            "-j",
            "a!",
            "x\"y",
            ".",
            "..",
            "dоcker",
        ] {
            assert!(Iface::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cidr_hints() {
        assert_eq!(
            parse_cidr("172.7.21.1/24").unwrap_err(),
            "has host bits set; did you mean \"172.7.21.0/24\"?"
        );
        assert!(parse_cidr("fd00::/64").unwrap_err().contains("IPv6"));
        assert!(parse_cidr("fd00::1").unwrap_err().contains("IPv6"));
        assert!(parse_cidr("10.0.0.1").unwrap_err().contains("10.0.0.1/32"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr(" 10.0.0.0/8").is_err());
        assert!(parse_cidr("010.1.2.0/24").is_err());
        assert!(
            parse_cidr("0.0.0.0/0")
                .unwrap_err()
                .contains("every address")
        );
    }

    fn layer(cluster: &str, pod: &str, origin: &str) -> Layer {
        RawConfig {
            cluster_cidr: Some(cluster.into()),
            pod_subnet: Some(pod.into()),
            ..RawConfig::default()
        }
        .into_layer(origin, origin == FLAGS_ORIGIN)
        .unwrap()
    }

    #[test]
    fn files_must_agree_but_flags_win() {
        let a = layer("172.7.0.0/16", "172.7.21.0/24", "a.env");
        let b = layer("172.8.0.0/16", "172.8.21.0/24", "b.toml");
        let err = NodeSpec::from_layers(&[a, b]).unwrap_err().to_string();
        assert!(
            err.contains("a.env says") && err.contains("b.toml says"),
            "{err}"
        );

        let flags = layer("172.9.0.0/16", "172.9.1.0/24", FLAGS_ORIGIN);
        let b = layer("172.8.0.0/16", "172.8.21.0/24", "b.toml");
        let spec = NodeSpec::from_layers(&[flags, b]).unwrap();
        assert_eq!(spec.cluster_cidr().to_string(), "172.9.0.0/16");
    }

    #[test]
    fn exclusions_aggregate() {
        let mut l = layer("172.7.0.0/16", "172.7.21.0/24", "x");
        l.no_masquerade = Some(Given::from(
            "x",
            ["10.0.0.0/16", "10.1.0.0/16", "172.7.5.0/24", "10.0.3.0/24"]
                .iter()
                .map(|s| parse_cidr(s).unwrap())
                .collect(),
        ));
        let spec = NodeSpec::from_layers(&[l]).unwrap();
        let got: Vec<String> = spec.exclusions().iter().map(|n| n.to_string()).collect();
        assert_eq!(got, ["10.0.0.0/15", "172.7.0.0/16"]);
    }
}

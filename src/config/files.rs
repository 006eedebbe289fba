//! Reading the node's files: the TOML config and flannel's subnet.env, each
//! into a typed [`Layer`], with messages that quote the file and the line.

use std::path::Path;

use super::values::{parse_cidr, parse_cidr_loose, parse_cidr6, parse_cidr6_loose};
use super::{Given, Layer, RawConfig};
use crate::error::{Error, Result};
use crate::family::Family;

/// The largest config or subnet.env podsnat reads. Real ones are a few
/// hundred bytes; 10,000 `no_masquerade` CIDRs are about 200 KiB.
pub const MAX_INPUT: u64 = 1024 * 1024;

/// Reads a whole file of at most [`MAX_INPUT`] bytes as UTF-8, with errors
/// that name it.
pub fn read_text(path: &Path) -> Result<String> {
    read_limited(path, MAX_INPUT)
}

/// Reads a whole file of any size the machine can hold as UTF-8 (a rules
/// file with 5,000 kube-proxy services is several MB).
pub fn read_any(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read", e))?;
    String::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
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
        return Err(Error::refused(
            path,
            "refusing to read",
            format!("it has {size} bytes; podsnat reads at most {max}"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}

pub(super) fn load_config_file(path: &Path) -> Result<Layer> {
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

/// flannel's /run/flannel/subnet.env: `KEY=VALUE` lines. FLANNEL_NETWORK
/// and FLANNEL_SUBNET give the IPv4 networks, FLANNEL_IPV6_NETWORK and
/// FLANNEL_IPV6_SUBNET the IPv6 ones (flannel writes a pair per family it
/// runs); other keys are ignored. Lines that are not plain `KEY=VALUE` (an
/// `export` prefix, say) are an error rather than silently skipped, since
/// flannel never writes them.
pub(super) fn load_flannel_env(path: &Path) -> Result<Layer> {
    let text = read_text(path)?;
    let origin = path.display().to_string();
    let mut keys: [Option<&str>; 4] = [None; 4];
    const NAMES: [&str; 4] = [
        "FLANNEL_NETWORK",
        "FLANNEL_SUBNET",
        "FLANNEL_IPV6_NETWORK",
        "FLANNEL_IPV6_SUBNET",
    ];
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
        if let Some(slot) = NAMES
            .iter()
            .position(|n| *n == key)
            .and_then(|k| keys.get_mut(k))
        {
            *slot = Some(value);
        }
    }
    let [network, subnet, network6, subnet6] = keys;
    let present = |net, sub, keys: (&str, &str)| -> Result<Option<(&str, &str)>> {
        match (net, sub) {
            (Some(n), Some(s)) => Ok(Some((n, s))),
            (None, None) => Ok(None),
            (None, Some(_)) | (Some(_), None) => Err(Error::Syntax {
                path: origin.clone(),
                message: format!(
                    "{} is missing ({} is there); is this flannel's subnet.env?",
                    if net.is_none() { keys.0 } else { keys.1 },
                    if net.is_none() { keys.1 } else { keys.0 },
                ),
            }),
        }
    };
    let v4 = present(network, subnet, ("FLANNEL_NETWORK", "FLANNEL_SUBNET"))?;
    let v6 = present(
        network6,
        subnet6,
        ("FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET"),
    )?;
    if v4.is_none() && v6.is_none() {
        return Err(Error::Syntax {
            path: origin.clone(),
            message: "FLANNEL_NETWORK is missing (and so is FLANNEL_IPV6_NETWORK); is this flannel's subnet.env?"
                .into(),
        });
    }
    let field = |key: &'static str, value: &str| {
        let origin = origin.clone();
        let value = value.to_owned();
        move |p| Error::field(&origin, key, value, p)
    };
    let mut layer = Layer {
        origin: Some(origin.clone()),
        ..Layer::default()
    };
    if let Some((network, subnet)) = v4 {
        let cluster = parse_cidr(network).map_err(field("FLANNEL_NETWORK", network))?;
        // flannel writes the node's gateway address (172.7.21.1/24); the
        // pod subnet is its network.
        let pod = parse_cidr_loose(subnet)
            .map_err(field("FLANNEL_SUBNET", subnet))?
            .trunc();
        layer.cluster_cidr = Some(Given::from(&origin, cluster));
        layer.pod_subnet = Some(Given::from(&origin, pod));
    }
    if let Some((network, subnet)) = v6 {
        let cluster = parse_cidr6(network).map_err(field("FLANNEL_IPV6_NETWORK", network))?;
        let pod = parse_cidr6_loose(subnet)
            .map_err(field("FLANNEL_IPV6_SUBNET", subnet))?
            .trunc();
        layer.cluster_cidr_v6 = Some(Given::from(&origin, cluster));
        layer.pod_subnet_v6 = Some(Given::from(&origin, pod));
    }
    Ok(layer)
}

/// What a node's config file says about its units: the families whose
/// cluster network (or pod subnet) it names, and whether podsnat's anchor
/// is loaded (`anchor`, default true). `install-unit --config` reads it,
/// before flannel may have written subnet.env, so no other source is
/// needed; every value is checked as `write` checks it.
#[derive(Debug)]
pub struct UnitSettings {
    pub families: Vec<Family>,
    pub anchor: bool,
}

/// Reads [`UnitSettings`] from the config file at `path`.
pub fn unit_settings(path: &Path) -> Result<UnitSettings> {
    let layer = load_config_file(path)?;
    let families: Vec<Family> = [
        (
            Family::V4,
            layer.cluster_cidr.is_some() || layer.pod_subnet.is_some(),
        ),
        (
            Family::V6,
            layer.cluster_cidr_v6.is_some() || layer.pod_subnet_v6.is_some(),
        ),
    ]
    .into_iter()
    .filter_map(|(f, named)| named.then_some(f))
    .collect();
    if families.is_empty() {
        return Err(Error::Missing {
            field: "cluster_cidr",
            read: path.display().to_string(),
            hint: "the units restore the families whose cluster network the config names; \
                   set cluster_cidr and/or cluster_cidr_v6 there, or give install-unit --family"
                .into(),
        });
    }
    Ok(UnitSettings {
        families,
        anchor: layer.anchor.is_none_or(|g| g.value),
    })
}

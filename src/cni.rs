//! The node's CNI network config (`cni_config`, a `.conflist` or a single
//! `.conf`), as containerd and CRI-O hand it to the plugins: whether the
//! CNI masquerades pod egress, and on which bridge. Only two plugins set
//! that up: the `bridge` plugin itself (`"bridge"`, default `cni0`, and
//! `"ipMasq"`, default false: containernetworking/plugins
//! plugins/main/bridge/bridge.go) and `flannel`, which delegates to the
//! bridge plugin (plugins/meta/flannel) with its `"delegate"` settings and,
//! where the delegate names no `"ipMasq"`, the opposite of flanneld's
//! `--ip-masq`, which the CNI config does not show. Pure: the caller reads
//! the file.

use serde_json::Value;

/// What the CNI config says about the pods' bridge and masquerade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNet {
    /// The plugin that sets up the bridge: "bridge" or "flannel".
    pub plugin: &'static str,
    pub bridge: String,
    /// `Some(true)` where the plugin masquerades each pod, `None` where the
    /// config cannot tell (flannel's plugin without a delegate `"ipMasq"`).
    pub ip_masq: Option<bool>,
}

/// A CNI config podsnat cannot use.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The file as podsnat failed to read it.
    #[error(transparent)]
    Unreadable(Box<crate::error::Error>),
    #[error("it is not JSON")]
    Json(#[from] serde_json::Error),
    #[error("it is not a CNI network config: {0}")]
    Shape(&'static str),
    #[error("it sets {0:?} to something other than true or false")]
    NotBool(&'static str),
    #[error("it sets {0:?} to something other than a string")]
    NotString(&'static str),
    #[error(
        "it has no \"bridge\" or \"flannel\" plugin; podsnat knows the CNI bridge plugin's masquerade only"
    )]
    NoBridge,
}

/// The bridge plugin's default bridge.
const DEFAULT_BRIDGE: &str = "cni0";

/// Reads a `.conflist` (`"plugins": [...]`) or a single `.conf`: the first
/// `bridge` or `flannel` plugin.
pub fn parse(text: &str) -> Result<CniNet, CniError> {
    let json: Value = serde_json::from_str(text)?;
    let obj = json
        .as_object()
        .ok_or(CniError::Shape("not a JSON object"))?;
    let plugins: Vec<&Value> = match obj.get("plugins") {
        Some(list) => list
            .as_array()
            .ok_or(CniError::Shape("\"plugins\" is not a list"))?
            .iter()
            .collect(),
        None if obj.contains_key("type") => vec![&json],
        None => return Err(CniError::Shape("no \"plugins\" list and no \"type\"")),
    };
    for p in plugins {
        match p.get("type").and_then(Value::as_str) {
            Some("bridge") => {
                return Ok(CniNet {
                    plugin: "bridge",
                    bridge: string(p, "bridge")?.unwrap_or_else(|| DEFAULT_BRIDGE.into()),
                    ip_masq: Some(boolean(p, "ipMasq")?.unwrap_or(false)),
                });
            }
            Some("flannel") => {
                let delegate = p.get("delegate").unwrap_or(&Value::Null);
                return Ok(CniNet {
                    plugin: "flannel",
                    bridge: string(delegate, "bridge")?.unwrap_or_else(|| DEFAULT_BRIDGE.into()),
                    ip_masq: boolean(delegate, "ipMasq")?,
                });
            }
            _ => {}
        }
    }
    Err(CniError::NoBridge)
}

fn string(v: &Value, key: &'static str) -> Result<Option<String>, CniError> {
    v.get(key)
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .ok_or(CniError::NotString(key))
        })
        .transpose()
}

fn boolean(v: &Value, key: &'static str) -> Result<Option<bool>, CniError> {
    v.get(key)
        .map(|b| b.as_bool().ok_or(CniError::NotBool(key)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd's default conflist (its cri plugin's docs, 10-containerd-net).
    #[test]
    fn containerd_conflist_masquerades_on_its_bridge() {
        let text = r#"{"cniVersion": "1.0.0", "name": "containerd-net", "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;
        let net = parse(text).unwrap();
        assert_eq!(net.bridge, "cni0");
        assert_eq!(net.ip_masq, Some(true));
    }

    /// flannel's kube-flannel.yml cni-conf.json: the delegate names no
    /// ipMasq, so the config cannot tell.
    #[test]
    fn flannel_without_delegate_ip_masq_cannot_tell() {
        let text = r#"{"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
            {"type": "flannel", "delegate": {"hairpinMode": true, "isDefaultGateway": true}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;
        let net = parse(text).unwrap();
        assert_eq!(
            (net.plugin, net.bridge.as_str(), net.ip_masq),
            ("flannel", "cni0", None)
        );
    }

    #[test]
    fn a_single_conf_and_bad_input() {
        let net = parse(r#"{"type": "bridge", "bridge": "br-pods"}"#).unwrap();
        assert_eq!((net.bridge.as_str(), net.ip_masq), ("br-pods", Some(false)));
        for (text, want) in [
            ("{", "is not JSON"),
            ("[]", "is not a CNI network config: not a JSON object"),
            (r#"{"plugins": 3}"#, "\"plugins\" is not a list"),
            (
                r#"{"type": "bridge", "ipMasq": "yes"}"#,
                "sets \"ipMasq\" to something other than true or false",
            ),
            (
                r#"{"type": "bridge", "bridge": 7}"#,
                "sets \"bridge\" to something other than a string",
            ),
            (
                r#"{"plugins": [{"type": "macvlan"}]}"#,
                "has no \"bridge\" or \"flannel\" plugin",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}

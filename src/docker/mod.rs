//! docker's own settings against the node's config: whether docker
//! masquerades (`"ip-masq"` in daemon.json, `--ip-masq` in its unit) and
//! which bridge and subnets it uses (`"bip"`, `"bridge"`, `"fixed-cidr-v6"`).
//! Owner mode needs docker not to masquerade; every mode needs docker's
//! bridge subnet to be the pod subnet, and on IPv6 docker's broad rule names
//! fixed-cidr-v6 (measured, dockerd 20.10 --ip6tables), so that must be
//! pod_subnet_v6. Pure: the caller reads the files.

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use crate::config::{Family, Mode, NodeSpec};
use crate::verdict::Status;

/// One docker setting and the file that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: String,
}

/// What docker's files say; `None` where they say nothing.
#[derive(Debug, Clone, Default)]
pub struct DockerSettings {
    pub ip_masq: Option<Setting<bool>>,
    pub bip: Option<Setting<String>>,
    pub bridge: Option<Setting<String>>,
    pub fixed_cidr_v6: Option<Setting<String>>,
    /// `"allow-direct-routing"` (docker 28.2 and later): docker then adds
    /// no raw-table drop for packets to a container's address that arrive
    /// on another interface.
    pub allow_direct_routing: Option<Setting<bool>>,
    /// `"bridge-accept-fwmark"` (mark or mark/mask): docker accepts
    /// routed packets carrying it before its drop.
    pub accept_fwmark: Option<Setting<String>>,
    /// Every file that was read, for the report.
    pub read: Vec<String>,
}

/// A daemon.json docker itself would refuse.
#[derive(Debug, thiserror::Error)]
pub enum DaemonJsonError {
    #[error("it is not valid JSON")]
    Json(#[from] serde_json::Error),
    #[error("{0:?} is not true or false")]
    NotBool(&'static str),
    #[error("{0:?} is not a string")]
    NotString(&'static str),
}

impl DockerSettings {
    /// Adds /etc/docker/daemon.json's settings. A file docker itself would
    /// refuse is an error that names the file.
    pub fn add_daemon_json(&mut self, origin: &str, text: &str) -> Result<(), DaemonJsonError> {
        let json: serde_json::Value = serde_json::from_str(text)?;
        let at = |key: &str| json.get(key);
        let setting = |v: String| Setting {
            value: v,
            origin: origin.to_owned(),
        };
        for (key, slot) in [
            ("ip-masq", &mut self.ip_masq),
            ("allow-direct-routing", &mut self.allow_direct_routing),
        ] {
            if let Some(v) = at(key) {
                let b = v.as_bool().ok_or(DaemonJsonError::NotBool(key))?;
                slot.get_or_insert(Setting {
                    value: b,
                    origin: origin.to_owned(),
                });
            }
        }
        for (key, slot) in [
            ("bip", &mut self.bip),
            ("bridge", &mut self.bridge),
            ("fixed-cidr-v6", &mut self.fixed_cidr_v6),
            ("bridge-accept-fwmark", &mut self.accept_fwmark),
        ] {
            if let Some(v) = at(key) {
                let s = v.as_str().ok_or(DaemonJsonError::NotString(key))?;
                slot.get_or_insert(setting(s.to_owned()));
            }
        }
        self.read.push(origin.to_owned());
        Ok(())
    }

    /// Adds the flags on docker.service's `ExecStart=` lines (`--ip-masq=false`,
    /// `--allow-direct-routing`,
    /// `--bip=CIDR` or `--bip CIDR`, `--bridge=NAME` or `-b NAME`).
    pub fn add_unit(&mut self, origin: &str, text: &str) {
        let setting = |v: &str| Setting {
            value: v.to_owned(),
            origin: origin.to_owned(),
        };
        for line in text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let next = words.get(i + 1).copied();
                let (flag, value) = match w.split_once('=') {
                    Some((f, v)) => (f, Some(v)),
                    None => (*w, None),
                };
                match flag {
                    "--ip-masq" | "--allow-direct-routing" => {
                        let on = value.is_none_or(|v| v != "false");
                        let slot = match flag {
                            "--ip-masq" => &mut self.ip_masq,
                            _ => &mut self.allow_direct_routing,
                        };
                        slot.get_or_insert(Setting {
                            value: on,
                            origin: origin.to_owned(),
                        });
                    }
                    "--bip" => {
                        if let Some(v) = value.or(next) {
                            self.bip.get_or_insert(setting(v));
                        }
                    }
                    "--bridge" | "-b" => {
                        if let Some(v) = value.or(next) {
                            self.bridge.get_or_insert(setting(v));
                        }
                    }
                    "--fixed-cidr-v6" => {
                        if let Some(v) = value.or(next) {
                            self.fixed_cidr_v6.get_or_insert(setting(v));
                        }
                    }
                    _ => {}
                }
            }
        }
        self.read.push(origin.to_owned());
    }
}

/// The verdict on docker's settings.
#[derive(Debug, Clone, Serialize)]
pub struct DockerCheck {
    pub status: Status,
    /// The files that were read.
    pub read: Vec<String>,
    /// What disagrees with the config.
    pub findings: Vec<String>,
    /// What is worth knowing but agrees.
    pub notes: Vec<String>,
    /// The file that sets `"allow-direct-routing": true`, for the
    /// forward path's report.
    #[serde(skip)]
    pub direct_routing: Option<String>,
    /// `"bridge-accept-fwmark"` and the file that sets it, likewise.
    #[serde(skip)]
    pub accept_fwmark: Option<(String, String)>,
}

/// Whether docker runs this node's pods, so that its settings are the
/// pod network's: its bridge is the config's. A docker that names no
/// bridge keeps its own docker0; on a node whose pods are on another
/// bridge (containerd or CRI-O with the CNI bridge plugin's cni0, docker
/// installed beside them), docker is not their runtime and its settings are
/// not checked.
pub fn runs_the_pods(specs: &[NodeSpec], docker: &DockerSettings) -> bool {
    let bridge = docker
        .bridge
        .as_ref()
        .map_or(DEFAULT_BRIDGE, |b| b.value.as_str());
    docker.bridge.is_some() || specs.iter().any(|s| s.bridge().as_str() == bridge)
}

/// The bridge docker makes when its settings name none.
const DEFAULT_BRIDGE: &str = "docker0";

/// Compares docker's settings with the node's config: `specs` are the
/// node's families (IPv4 first); the mode and bridge are the node's.
pub fn check(specs: &[NodeSpec], docker: &DockerSettings) -> DockerCheck {
    let Some(spec) = specs.first() else {
        return DockerCheck {
            status: Status::Ok,
            read: docker.read.clone(),
            findings: Vec::new(),
            notes: Vec::new(),
            direct_routing: None,
            accept_fwmark: None,
        };
    };
    let v4 = specs.iter().find(|s| s.family() == Family::V4);
    let v6 = specs.iter().find(|s| s.family() == Family::V6);
    let mut drift = Vec::new();
    let mut notes = Vec::new();
    let masq = docker.ip_masq.as_ref();
    match (spec.mode(), masq) {
        (Mode::Owner, Some(s)) if !s.value => {}
        (Mode::Owner, Some(s)) => drift.push(format!(
            "docker masquerades (\"ip-masq\" is true in {}), but mode = \"owner\" needs \"ip-masq\": false: every docker start puts its broad rule above podsnat's exclusion",
            s.origin
        )),
        (Mode::Owner, None) => drift.push(format!(
            "docker masquerades (its default; {} set no \"ip-masq\": false), but mode = \"owner\" needs \"ip-masq\": false",
            docker.read.join(", ")
        )),
        (_, Some(s)) if !s.value => notes.push(format!(
            "docker does not masquerade (\"ip-masq\": false in {}); mode = \"owner\" fits this node and needs no pin",
            s.origin
        )),
        _ => {}
    }
    if let (Some(b), Some(v4)) = (&docker.bip, v4) {
        match b.value.parse::<Ipv4Net>() {
            Ok(net) if IpNet::V4(net.trunc()) == v4.pod_subnet() => {}
            Ok(net) => drift.push(format!(
                "docker's bridge subnet is {} (\"bip\" {:?} in {}), not pod_subnet {}",
                net.trunc(),
                b.value,
                b.origin,
                v4.pod_subnet()
            )),
            Err(_) => drift.push(format!(
                "docker's \"bip\" {:?} in {} is not a CIDR",
                b.value, b.origin
            )),
        }
    }
    if let (Some(f), Some(v6)) = (&docker.fixed_cidr_v6, v6) {
        match f.value.parse::<ipnet::Ipv6Net>() {
            Ok(net) if IpNet::V6(net) == v6.pod_subnet() => {}
            Ok(net) => drift.push(format!(
                "docker masquerades IPv6 from {net} (\"fixed-cidr-v6\" in {}), not pod_subnet_v6 {}: its broad rule never matches podsnat's",
                f.origin,
                v6.pod_subnet()
            )),
            Err(_) => drift.push(format!(
                "docker's \"fixed-cidr-v6\" {:?} in {} is not an IPv6 CIDR",
                f.value, f.origin
            )),
        }
    }
    if let Some(b) = &docker.bridge
        && b.value != spec.bridge().as_str()
        && b.value != "none"
    {
        drift.push(format!(
            "docker's bridge is {:?} (in {}), not bridge {:?}",
            b.value,
            b.origin,
            spec.bridge().as_str()
        ));
    }
    let direct_routing = docker
        .allow_direct_routing
        .as_ref()
        .filter(|s| s.value)
        .map(|s| s.origin.clone());
    let status = if drift.is_empty() {
        Status::Ok
    } else {
        Status::Drift
    };
    DockerCheck {
        status,
        read: docker.read.clone(),
        findings: drift,
        notes,
        direct_routing,
        accept_fwmark: docker
            .accept_fwmark
            .as_ref()
            .map(|s| (s.value.clone(), s.origin.clone())),
    }
}

#[cfg(test)]
mod tests;

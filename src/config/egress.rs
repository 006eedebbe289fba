//! Who masquerades pod egress, where the config says so: `egress_owner`.
//! verify finds it out from the tables (docs/shapes.md): docker's broad
//! rule, flannel's chain and podsnat's own rules are there for every pod
//! address, the CNI's per-pod rules only for the pods that exist. The
//! setting is for what the tables cannot tell: a CNI node before its first
//! pod has no per-pod rule yet.

use std::fmt;

use super::ValueError;

/// The masquerader of pod→outside traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EgressOwner {
    /// Found out from the tables (and cni_config): the CNI's per-pod rules where there are any, else every pod address
    #[default]
    Detect,
    /// The CNI bridge plugin ("ipMasq": true), per pod: egress judged for the pods its rules name, none before the first pod
    Cni,
}

impl EgressOwner {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        use clap::ValueEnum;
        EgressOwner::from_str(s, false).map_err(|_| {
            let names: Vec<String> = EgressOwner::value_variants()
                .iter()
                .filter_map(|m| m.to_possible_value())
                .map(|v| format!("{:?}", v.get_name()))
                .collect();
            let (last, rest) = names.split_last().unzip();
            ValueError::NotEgressOwner(format!(
                "{} or {}",
                rest.unwrap_or_default().join(", "),
                last.cloned().unwrap_or_default()
            ))
        })
    }
}

impl fmt::Display for EgressOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => Ok(()),
        }
    }
}

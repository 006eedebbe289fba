//! A fleet's unit settings: the inventory's `[unit]` and a node's
//! `[nodes.unit]` on top, rendered into unit files as `install-unit` would.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::family::Family;
use crate::paths;
use crate::unit::{self, Extras, RuntimeSpec, UnitSpec};

impl RawUnit {
    /// `self` with `over`'s keys on top (a node's `[nodes.unit]`).
    pub(super) fn with(&self, over: &RawUnit) -> RawUnit {
        RawUnit {
            after: over.after.clone().or_else(|| self.after.clone()),
            before: over.before.clone().or_else(|| self.before.clone()),
            file: over.file.clone().or_else(|| self.file.clone()),
            file6: over.file6.clone().or_else(|| self.file6.clone()),
            platform: over.platform.or(self.platform),
            iptables_restore: over
                .iptables_restore
                .clone()
                .or_else(|| self.iptables_restore.clone()),
            podsnat: over.podsnat.clone().or_else(|| self.podsnat.clone()),
            pin: over.pin.or(self.pin),
            anchor_file: over
                .anchor_file
                .clone()
                .or_else(|| self.anchor_file.clone()),
            nft: over.nft.clone().or_else(|| self.nft.clone()),
        }
    }

    /// The units for a node of `families`, checked like `install-unit`'s
    /// flags; errors name `origin` and the key under `prefix` (`unit.after`,
    /// `nodes.unit.after`).
    pub(super) fn units(
        &self,
        origin: &str,
        prefix: &str,
        families: &[Family],
        anchor: bool,
    ) -> Result<Units> {
        let strings = |v: &Option<Vec<String>>, default: &[&str]| {
            v.clone()
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
        };
        let spec = UnitSpec::parse_from(
            origin,
            false,
            prefix,
            &strings(&self.after, &unit::DEFAULT_AFTER),
            &strings(&self.before, &unit::DEFAULT_BEFORE),
            unit::Files {
                families,
                file: self.rules_file(origin, prefix, families, Family::V4)?,
                file6: self.rules_file(origin, prefix, families, Family::V6)?,
                restore: self
                    .iptables_restore
                    .as_deref()
                    .unwrap_or(paths::IPTABLES_RESTORE),
            },
        )?;
        let spec = if anchor {
            spec.with_anchor(
                origin,
                prefix,
                self.anchor_file.as_deref().unwrap_or(paths::ANCHOR_FILE),
                self.nft.as_deref().unwrap_or(paths::NFT),
            )?
        } else {
            spec
        };
        let pin = self.pin.unwrap_or(true);
        let extras = if pin {
            let podsnat = self.podsnat.as_deref().unwrap_or(paths::PODSNAT_BIN);
            let runtime = RuntimeSpec::parse_from(origin, prefix, podsnat, &spec.tables)?;
            Some(Extras {
                runtime,
                pin,
                verify_config: None,
                metrics: None,
            })
        } else {
            None
        };
        Ok(unit::unit_files(&spec, extras.as_ref()))
    }
}

impl RawUnit {
    /// The rules file of `family`: `file`/`file6` as given, else the
    /// platform's (the same default `write` and `install-unit` pick). A
    /// fleet is rendered away from its nodes, so unlike them it cannot look
    /// at the machine: a node that runs the family and names neither is an
    /// error, not a guess.
    fn rules_file(
        &self,
        origin: &str,
        prefix: &str,
        families: &[Family],
        family: Family,
    ) -> Result<&str> {
        let given = match family {
            Family::V4 => self.file.as_deref(),
            Family::V6 => self.file6.as_deref(),
        };
        match (given, self.platform) {
            (Some(file), _) => Ok(file),
            (None, Some(platform)) => Ok(platform.rules_file(family)),
            // Not rendered into any unit.
            (None, None) if !families.contains(&family) => Ok(""),
            (None, None) => Err(Error::Missing {
                field: if prefix == "unit." {
                    "unit.platform"
                } else {
                    "nodes.unit.platform"
                },
                read: origin.to_owned(),
                hint: format!(
                    "set platform = \"rhel\" ({}) or \"debian\" ({}) in [unit] or the node's [nodes.unit], or set {} to its path",
                    paths::Platform::Rhel.rules_file(family),
                    paths::Platform::Debian.rules_file(family),
                    if family == Family::V4 {
                        "file"
                    } else {
                        "file6"
                    },
                ),
            }),
        }
    }
}

/// A rendered set of units: podsnat.service and, with the pin, its units.
pub type Units = Vec<unit::UnitFile>;

/// The boot unit's settings, as `install-unit` takes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnit {
    after: Option<Vec<String>>,
    before: Option<Vec<String>>,
    file: Option<String>,
    /// The IPv6 rules file, for nodes with an IPv6 pod network.
    file6: Option<String>,
    /// Where the node's distribution keeps its rules files, for those
    /// `file` and `file6` do not name.
    platform: Option<paths::Platform>,
    iptables_restore: Option<String>,
    /// The podsnat binary the pin runs.
    podsnat: Option<String>,
    /// podsnat-pin.service and its timer (default true).
    pub(super) pin: Option<bool>,
    /// The anchor file podsnat-anchor.service loads.
    anchor_file: Option<String>,
    /// The nft it runs.
    nft: Option<String>,
}

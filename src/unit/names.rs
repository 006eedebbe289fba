//! The two kinds of value a unit file quotes: unit names (`After=`,
//! `Before=`) and absolute paths (`ExecStart=`, `ConditionPathExists=`),
//! each checked so that nothing read can change what the unit means.

use std::fmt;

/// What is wrong with a unit name or a unit path; the text follows the
/// field and the quoted value in the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is longer than 255 bytes")]
    TooLong,
    #[error("has the character {0:?}, which unit names cannot hold")]
    UnitCharacter(char),
    #[error("is not a valid template or instance name")]
    Instance,
    #[error("is not a unit name; it needs a type suffix such as .service or .target ({types})", types = UNIT_TYPES.join(", "))]
    NoType,
    #[error("is not an absolute path; the unit runs at boot with no working directory")]
    Relative,
    #[error("has the character {0:?}; unit paths may only use A-Z a-z 0-9 / . _ - + , @ :")]
    PathCharacter(char),
    #[error("contains \"..\"; give the real path")]
    DotDot,
}

/// A systemd unit name such as `flanneld.service` or `kube-proxy@x.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName(String);

const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "slice",
    "scope",
];

impl UnitName {
    /// Follows systemd's rules: at most 255 bytes, `[A-Za-z0-9:_.\-@]`, a
    /// known type suffix, a non-empty name, and at most one `@`.
    pub fn parse(s: &str) -> std::result::Result<Self, NameError> {
        let problem = if s.len() > 255 {
            Some(NameError::TooLong)
        } else if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-' | '@' | '\\'))
        }) {
            Some(NameError::UnitCharacter(c))
        } else {
            match s.rsplit_once('.') {
                Some((name, ty)) if !name.is_empty() && UNIT_TYPES.contains(&ty) => {
                    (name.matches('@').count() > 1 || name.starts_with('@'))
                        .then_some(NameError::Instance)
                }
                _ => Some(NameError::NoType),
            }
        };
        match problem {
            Some(p) => Err(p),
            None => Ok(UnitName(s.to_owned())),
        }
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute path that can stand in a unit file as it is: no whitespace
/// (it would split ExecStart=), no `%` (a systemd specifier), no quotes,
/// backslashes or control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitPath(String);

impl UnitPath {
    pub fn parse(s: &str) -> std::result::Result<Self, NameError> {
        if !s.starts_with('/') {
            return Err(NameError::Relative);
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | ',' | '@' | ':'))
        }) {
            return Err(NameError::PathCharacter(c));
        }
        if s.split('/').any(|part| part == "..") {
            return Err(NameError::DotDot);
        }
        Ok(UnitPath(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        for ok in [
            "flanneld.service",
            "docker.service",
            "kube-proxy.service",
            "getty@tty1.service",
            "x.target",
            "a\\x2db.mount",
        ] {
            assert!(UnitName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "flanneld",
            "",
            ".service",
            "a b.service",
            "a;b.service",
            "x.servic",
            "a@b@c.service",
            "@.service",
            "x.service\n",
        ] {
            assert!(UnitName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unit_paths() {
        assert!(UnitPath::parse("/etc/sysconfig/iptables").is_ok());
        for bad in [
            "etc/sysconfig/iptables",
            "/etc/a b",
            "/etc/%n",
            "/etc/../x",
            "/x\"y",
            "",
        ] {
            assert!(UnitPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}

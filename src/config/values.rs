//! The typed values of a config: an interface name that is safe on an
//! iptables line, the exclusion mode, and IPv4 CIDRs with the checks and
//! hints every source shares.

use std::fmt;
use std::net::IpAddr;

use ipnet::Ipv4Net;

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

    /// docker's default bridge, the bridge when none is configured.
    pub fn docker0() -> Self {
        Iface("docker0".to_owned())
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
    /// For nodes whose docker does not masquerade (`"ip-masq": false`):
    /// exclusions first, then podsnat's own egress rule, which is not
    /// byte-identical to docker's broad rule, so no docker start deletes it.
    Owner,
}

impl Mode {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "guard" => Ok(Mode::Guard),
            "classic" => Ok(Mode::Classic),
            "owner" => Ok(Mode::Owner),
            _ => Err("is not a mode; use \"guard\", \"classic\" or \"owner\"".into()),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Guard => "guard",
            Mode::Classic => "classic",
            Mode::Owner => "owner",
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
pub(super) fn parse_cidr_loose(s: &str) -> std::result::Result<Ipv4Net, String> {
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
}

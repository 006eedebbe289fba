//! The typed values of a config: an interface name that is safe on an
//! iptables line, the exclusion mode, the address family, and IPv4 and IPv6
//! CIDRs with the checks and hints every source shares.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

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

/// How the exclusion is written; docs/modes.md has the trade-off. The
/// values and their help text are `--mode`'s (clap) and the config's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// The exclusions in a chain of their own, then docker's broad rule
    #[default]
    Guard,
    /// The one-rule hand fix: masquerade only traffic that leaves the cluster network
    Classic,
    /// For docker with "ip-masq": false: the exclusions, then podsnat's own egress rule
    Owner,
}

impl Mode {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        use clap::ValueEnum;
        Mode::from_str(s, false).map_err(|_| {
            let names: Vec<String> = Mode::value_variants()
                .iter()
                .filter_map(|m| m.to_possible_value())
                .map(|v| format!("{:?}", v.get_name()))
                .collect();
            let (last, rest) = names.split_last().unzip();
            format!(
                "is not a mode; use {} or {}",
                rest.unwrap_or_default().join(", "),
                last.cloned().unwrap_or_default()
            )
        })
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => Ok(()),
        }
    }
}

/// kube-proxy's masquerade mark: one bit of the packet mark, set by
/// `KUBE-MARK-MASQ` (iptables mode) or its nftables twin on traffic that
/// kube-proxy must masquerade. podsnat's rules leave such traffic to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasqueradeMark(u8);

impl MasqueradeMark {
    /// kube-proxy's default `--iptables-masquerade-bit`.
    pub const DEFAULT_BIT: u8 = 14;

    pub fn from_bit(bit: i64) -> std::result::Result<Self, String> {
        u8::try_from(bit)
            .ok()
            .filter(|b| *b <= 31)
            .map(MasqueradeMark)
            .ok_or_else(|| {
                "is not a bit of the 32-bit packet mark; kube-proxy's --iptables-masquerade-bit is 0 to 31 (default 14)".into()
            })
    }

    pub fn bit(self) -> u8 {
        self.0
    }

    /// The mark's value, which is also its mask: `1 << bit`.
    pub fn value(self) -> u32 {
        1u32 << self.0
    }
}

impl Default for MasqueradeMark {
    fn default() -> Self {
        MasqueradeMark(Self::DEFAULT_BIT)
    }
}

/// Parses an IPv4 CIDR that must be a network address (no host bits).
pub fn parse_cidr(s: &str) -> std::result::Result<Ipv4Net, String> {
    network(parse_cidr_loose(s)?)
}

/// Parses an IPv6 CIDR that must be a network address (no host bits).
pub fn parse_cidr6(s: &str) -> std::result::Result<Ipv6Net, String> {
    network(parse_cidr6_loose(s)?)
}

/// Either family, for lists that hold both (`no_masquerade`).
pub fn parse_cidr_any(s: &str) -> std::result::Result<IpNet, String> {
    if s.contains(':') {
        parse_cidr6(s).map(IpNet::V6)
    } else {
        parse_cidr(s).map(IpNet::V4)
    }
}

/// The checks every network value shares, whatever its family.
fn network<N>(net: N) -> std::result::Result<N, String>
where
    N: Copy + PartialEq + fmt::Display + Into<IpNet>,
{
    let ip: IpNet = net.into();
    if ip.trunc() != ip {
        return Err(format!(
            "has host bits set; did you mean \"{}\"?",
            ip.trunc()
        ));
    }
    match network_problem(ip) {
        Some(problem) => Err(problem),
        None => Ok(net),
    }
}

/// What makes a network (with no host bits) unacceptable as a setting,
/// whatever way it was written: every value check the parsers make, in one
/// place, so an aggregate of several entries gets them too.
pub(super) fn network_problem(net: IpNet) -> Option<String> {
    if net.prefix_len() == 0 {
        return Some("covers every address; it would turn masquerading off entirely".into());
    }
    match net {
        IpNet::V4(_) => None,
        IpNet::V6(n) => v6_problem(n),
    }
}

/// IPv6 networks that are no pod destination.
fn v6_problem(net: Ipv6Net) -> Option<String> {
    mapped_problem(net).or_else(|| multicast_problem(net))
}

fn mapped_problem(net: Ipv6Net) -> Option<String> {
    (net.addr().to_ipv4_mapped().is_some() || net.network().to_ipv4_mapped().is_some()).then(|| {
        "is an IPv4-mapped address (::ffff:a.b.c.d); ip6tables never sees them, write the IPv4 network in cluster_cidr or pod_subnet"
            .into()
    })
}

/// The last address (ffff:...:ffff) is multicast; the evaluator's
/// half-open ranges end just before it, which only multicast touches.
fn multicast_problem(net: Ipv6Net) -> Option<String> {
    net.network()
        .is_multicast()
        .then(|| "is multicast (ff00::/8); pods do not send from or to it as unicast".into())
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
    if s.contains(':') {
        return Err(
            "is IPv6; this field takes IPv4 (IPv6 networks go in cluster_cidr_v6 and pod_subnet_v6, or FLANNEL_IPV6_* in subnet.env)"
                .into(),
        );
    }
    if let Ok(IpAddr::V4(a)) = s.parse::<IpAddr>() {
        return Err(format!("has no prefix length; did you mean \"{a}/32\"?"));
    }
    Err("is not an IPv4 CIDR like \"172.7.0.0/16\"".into())
}

/// Parses an IPv6 CIDR and allows host bits, as in
/// FLANNEL_IPV6_SUBNET=fd00:10:0:21::1/64. The text must be canonical
/// (RFC 5952, as iptables-save prints it): golden files and `verify`
/// compare rules byte for byte, so `FD00:0:0::/48` would never match.
pub(super) fn parse_cidr6_loose(s: &str) -> std::result::Result<Ipv6Net, String> {
    if s.contains('%') {
        return Err(
            "has a zone id ('%'); zones name one link's scope and cannot be a route or an iptables match"
                .into(),
        );
    }
    if !s.contains(':') {
        return Err(
            if s.parse::<Ipv4Net>().is_ok() || s.parse::<std::net::Ipv4Addr>().is_ok() {
                "is IPv4; this field takes IPv6 (IPv4 networks go in cluster_cidr and pod_subnet)"
                    .into()
            } else {
                "is not an IPv6 CIDR like \"fd00:10::/48\"".into()
            },
        );
    }
    let (addr_part, len_part) = match s.split_once('/') {
        Some(parts) => parts,
        None => {
            return Err(match s.parse::<Ipv6Addr>() {
                Ok(a) => format!("has no prefix length; did you mean \"{a}/128\"?"),
                Err(_) => "is not an IPv6 CIDR like \"fd00:10::/48\"".into(),
            });
        }
    };
    let net = s
        .parse::<Ipv6Net>()
        .map_err(|_| "is not an IPv6 CIDR like \"fd00:10::/48\"".to_string())?;
    let addr = net.addr();
    if let Some(problem) = mapped_problem(net) {
        return Err(problem);
    }
    let canonical = format!("{addr}/{}", net.prefix_len());
    if addr_part != addr.to_string() || len_part != net.prefix_len().to_string() {
        return Err(format!(
            "is not written the way ip6tables prints it; write \"{canonical}\" (lower case, zeros compressed)"
        ));
    }
    match multicast_problem(net) {
        Some(problem) => Err(problem),
        None => Ok(net),
    }
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
        assert_eq!(
            parse_cidr6("fd00:10::/48").unwrap().to_string(),
            "fd00:10::/48"
        );
        for (bad, says) in [
            ("fe80::1%eth0/64", "zone id"),
            ("::ffff:10.0.0.0/104", "IPv4-mapped"),
            ("::/0", "every address"),
            ("fd00:10::1/48", "did you mean \"fd00:10::/48\""),
            ("FD00:10::/48", "write \"fd00:10::/48\""),
            ("fd00:0010::/48", "write \"fd00:10::/48\""),
            ("fd00:10:0:0::/64", "write \"fd00:10::/64\""),
            ("fd00::/129", "not an IPv6 CIDR"),
            ("fd00::1", "fd00::1/128"),
            ("10.0.0.0/8", "is IPv4"),
            ("ff02::/16", "multicast"),
        ] {
            let err = parse_cidr6(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
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

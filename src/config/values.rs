//! The typed values of a config: an interface name that is safe on an
//! iptables line, the exclusion mode, the address family, and IPv4 and IPv6
//! CIDRs with the checks and hints every source shares.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What is wrong with one value, whichever source it came from. The text
/// follows the field and the quoted value in the message:
/// `pod_subnet "172.7.21.1/24" has host bits set; did you mean ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("is empty; an interface name has 1 to 15 characters")]
    IfaceEmpty,
    #[error("is {0} bytes long; Linux interface names have at most {max} bytes", max = Iface::MAX_LEN)]
    IfaceTooLong(usize),
    #[error("has the character {0:?} (U+{code:04X}); interface names may only use A-Z a-z 0-9 _ . -", code = u32::from(*.0))]
    IfaceCharacter(char),
    #[error("starts with '-', which iptables would read as an option")]
    IfaceDash,
    #[error("is not a valid Linux interface name")]
    IfaceDots,
    /// The valid modes, quoted and joined ("guard", "classic" or "owner").
    #[error("is not a mode; use {0}")]
    NotMode(String),
    #[error("is not an egress owner; use {0}")]
    NotEgressOwner(String),
    #[error(
        "is not a bit of the 32-bit packet mark; kube-proxy's --iptables-masquerade-bit is 0 to 31 (default 14)"
    )]
    NotMarkBit,
    #[error("has host bits set; did you mean \"{0}\"?")]
    HostBits(IpNet),
    #[error("covers every address; it would turn masquerading off entirely")]
    EveryAddress,
    #[error(
        "is an IPv4-mapped address (::ffff:a.b.c.d); ip6tables never sees them, write the IPv4 network in cluster_cidr or pod_subnet"
    )]
    Ipv4Mapped,
    #[error("is multicast (ff00::/8); pods do not send from or to it as unicast")]
    Multicast,
    #[error(
        "has the octet {0:?} with a leading zero, which some tools read as octal; write it without"
    )]
    LeadingZero(String),
    #[error(
        "is IPv6; this field takes IPv4 (IPv6 networks go in cluster_cidr_v6 and pod_subnet_v6, or FLANNEL_IPV6_* in subnet.env)"
    )]
    Ipv6NotIpv4,
    #[error("is IPv4; this field takes IPv6 (IPv4 networks go in cluster_cidr and pod_subnet)")]
    Ipv4NotIpv6,
    /// The address alone; the hint is it as a host network.
    #[error("has no prefix length; did you mean \"{0}\"?")]
    NoPrefix(IpNet),
    #[error("is not an IPv4 CIDR like \"172.7.0.0/16\"")]
    NotIpv4Cidr,
    #[error("is not an IPv6 CIDR like \"fd00:10::/48\"")]
    NotIpv6Cidr,
    #[error(
        "has a zone id ('%'); zones name one link's scope and cannot be a route or an iptables match"
    )]
    ZoneId,
    /// The canonical text, as ip6tables prints it.
    #[error(
        "is not written the way ip6tables prints it; write \"{0}\" (lower case, zeros compressed)"
    )]
    NotCanonical(String),
}

type Checked<T> = std::result::Result<T, ValueError>;

/// A network interface name that is safe to put on an iptables line.
/// Linux allows 1-15 bytes; we also restrict the alphabet so that nothing
/// (spaces, quotes, `!`, a leading `-`) can be read by iptables as an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface(String);

impl Iface {
    pub const MAX_LEN: usize = 15;

    pub fn parse(s: &str) -> Checked<Self> {
        if s.is_empty() {
            return Err(ValueError::IfaceEmpty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(ValueError::IfaceTooLong(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(ValueError::IfaceCharacter(c));
        }
        if s.starts_with('-') {
            return Err(ValueError::IfaceDash);
        }
        if s == "." || s == ".." {
            return Err(ValueError::IfaceDots);
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
    pub fn parse(s: &str) -> Checked<Self> {
        use clap::ValueEnum;
        Mode::from_str(s, false).map_err(|_| {
            let names: Vec<String> = Mode::value_variants()
                .iter()
                .filter_map(|m| m.to_possible_value())
                .map(|v| format!("{:?}", v.get_name()))
                .collect();
            let (last, rest) = names.split_last().unzip();
            ValueError::NotMode(format!(
                "{} or {}",
                rest.unwrap_or_default().join(", "),
                last.cloned().unwrap_or_default()
            ))
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

    pub fn from_bit(bit: i64) -> Checked<Self> {
        u8::try_from(bit)
            .ok()
            .filter(|b| *b <= 31)
            .map(MasqueradeMark)
            .ok_or(ValueError::NotMarkBit)
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
pub fn parse_cidr(s: &str) -> Checked<Ipv4Net> {
    network(parse_cidr_loose(s)?)
}

/// Parses an IPv6 CIDR that must be a network address (no host bits).
pub fn parse_cidr6(s: &str) -> Checked<Ipv6Net> {
    network(parse_cidr6_loose(s)?)
}

/// Either family, for lists that hold both (`no_masquerade`).
pub fn parse_cidr_any(s: &str) -> Checked<IpNet> {
    if s.contains(':') {
        parse_cidr6(s).map(IpNet::V6)
    } else {
        parse_cidr(s).map(IpNet::V4)
    }
}

/// The checks every network value shares, whatever its family.
fn network<N>(net: N) -> Checked<N>
where
    N: Copy + PartialEq + fmt::Display + Into<IpNet>,
{
    let ip: IpNet = net.into();
    if ip.trunc() != ip {
        return Err(ValueError::HostBits(ip.trunc()));
    }
    match network_problem(ip) {
        Some(problem) => Err(problem),
        None => Ok(net),
    }
}

/// What makes a network (with no host bits) unacceptable as a setting,
/// whatever way it was written: every value check the parsers make, in one
/// place, so an aggregate of several entries gets them too.
pub(super) fn network_problem(net: IpNet) -> Option<ValueError> {
    if net.prefix_len() == 0 {
        return Some(ValueError::EveryAddress);
    }
    match net {
        IpNet::V4(_) => None,
        IpNet::V6(n) => v6_problem(n),
    }
}

/// IPv6 networks that are no pod destination.
fn v6_problem(net: Ipv6Net) -> Option<ValueError> {
    mapped_problem(net).or_else(|| multicast_problem(net))
}

fn mapped_problem(net: Ipv6Net) -> Option<ValueError> {
    (net.addr().to_ipv4_mapped().is_some() || net.network().to_ipv4_mapped().is_some())
        .then_some(ValueError::Ipv4Mapped)
}

/// The last address (ffff:...:ffff) is multicast; the evaluator's
/// half-open ranges end just before it, which only multicast touches.
fn multicast_problem(net: Ipv6Net) -> Option<ValueError> {
    net.network()
        .is_multicast()
        .then_some(ValueError::Multicast)
}

/// Parses an IPv4 CIDR and allows host bits, as in FLANNEL_SUBNET=172.7.21.1/24.
pub(super) fn parse_cidr_loose(s: &str) -> Checked<Ipv4Net> {
    let addr_part = s.split('/').next().unwrap_or(s);
    if let Ok(net) = s.parse::<Ipv4Net>() {
        // ipnet reads "010" as ten, but inet_aton (and so some tools) as
        // eight: refuse the ambiguity instead of guessing.
        if let Some(octet) = addr_part
            .split('.')
            .find(|o| o.len() > 1 && o.starts_with('0'))
        {
            return Err(ValueError::LeadingZero(octet.to_owned()));
        }
        return Ok(net);
    }
    if s.contains(':') {
        return Err(ValueError::Ipv6NotIpv4);
    }
    if let Ok(IpAddr::V4(a)) = s.parse::<IpAddr>() {
        return Err(ValueError::NoPrefix(IpNet::V4(Ipv4Net::from(a))));
    }
    Err(ValueError::NotIpv4Cidr)
}

/// Parses an IPv6 CIDR and allows host bits, as in
/// FLANNEL_IPV6_SUBNET=fd00:10:0:21::1/64. The text must be canonical
/// (RFC 5952, as iptables-save prints it): golden files and `verify`
/// compare rules byte for byte, so `FD00:0:0::/48` would never match.
pub(super) fn parse_cidr6_loose(s: &str) -> Checked<Ipv6Net> {
    if s.contains('%') {
        return Err(ValueError::ZoneId);
    }
    if !s.contains(':') {
        return Err(
            if s.parse::<Ipv4Net>().is_ok() || s.parse::<std::net::Ipv4Addr>().is_ok() {
                ValueError::Ipv4NotIpv6
            } else {
                ValueError::NotIpv6Cidr
            },
        );
    }
    let (addr_part, len_part) = match s.split_once('/') {
        Some(parts) => parts,
        None => {
            return Err(match s.parse::<Ipv6Addr>() {
                Ok(a) => ValueError::NoPrefix(IpNet::V6(Ipv6Net::from(a))),
                Err(_) => ValueError::NotIpv6Cidr,
            });
        }
    };
    let net = s.parse::<Ipv6Net>().map_err(|_| ValueError::NotIpv6Cidr)?;
    let addr = net.addr();
    if let Some(problem) = mapped_problem(net) {
        return Err(problem);
    }
    let canonical = format!("{addr}/{}", net.prefix_len());
    if addr_part != addr.to_string() || len_part != net.prefix_len().to_string() {
        return Err(ValueError::NotCanonical(canonical));
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
        use ValueError as E;
        assert_eq!(
            parse_cidr("172.7.21.1/24"),
            Err(E::HostBits("172.7.21.0/24".parse().unwrap()))
        );
        assert_eq!(
            parse_cidr("172.7.21.1/24").unwrap_err().to_string(),
            "has host bits set; did you mean \"172.7.21.0/24\"?"
        );
        assert_eq!(parse_cidr("fd00::/64"), Err(E::Ipv6NotIpv4));
        assert_eq!(parse_cidr("fd00::1"), Err(E::Ipv6NotIpv4));
        assert_eq!(
            parse_cidr6("fd00:10::/48").unwrap().to_string(),
            "fd00:10::/48"
        );
        let canonical = |s: &str| E::NotCanonical(s.to_owned());
        for (bad, want) in [
            ("fe80::1%eth0/64", E::ZoneId),
            ("::ffff:10.0.0.0/104", E::Ipv4Mapped),
            ("::/0", E::EveryAddress),
            (
                "fd00:10::1/48",
                E::HostBits("fd00:10::/48".parse().unwrap()),
            ),
            ("FD00:10::/48", canonical("fd00:10::/48")),
            ("fd00:0010::/48", canonical("fd00:10::/48")),
            ("fd00:10:0:0::/64", canonical("fd00:10::/64")),
            ("fd00::/129", E::NotIpv6Cidr),
            ("fd00::1", E::NoPrefix("fd00::1/128".parse().unwrap())),
            ("10.0.0.0/8", E::Ipv4NotIpv6),
            ("ff02::/16", E::Multicast),
        ] {
            assert_eq!(parse_cidr6(bad), Err(want), "{bad}");
        }
        assert_eq!(
            parse_cidr("10.0.0.1"),
            Err(E::NoPrefix("10.0.0.1/32".parse().unwrap()))
        );
        assert_eq!(parse_cidr("10.0.0.0/33"), Err(E::NotIpv4Cidr));
        assert_eq!(parse_cidr(" 10.0.0.0/8"), Err(E::NotIpv4Cidr));
        assert_eq!(
            parse_cidr("010.1.2.0/24"),
            Err(E::LeadingZero("010".into()))
        );
        assert_eq!(parse_cidr("0.0.0.0/0"), Err(E::EveryAddress));
    }
}

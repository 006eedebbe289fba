//! The values of a rule's fields, read strictly: an address with its
//! prefix or mask, an interface name, a mark. A value iptables-restore would
//! refuse is an error that says why; a valid one podsnat does not model (an
//! address list, a host name) is `None` with the reason.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::malformed::RuleError;
use crate::config::Family;

/// `-s`/`-d`: an address of the table's family, with a prefix length (0 to
/// 32, or 0 to 128) or, for IPv4, a contiguous dotted mask. A list or a host
/// name is valid for iptables but not modeled: `None`, with the reason in
/// `unknown`.
pub(in crate::verify) fn addr(
    s: &str,
    family: Family,
    unknown: &mut Option<String>,
) -> Result<Option<IpNet>, RuleError> {
    if s.contains(',') {
        unknown.get_or_insert(format!("the address list {s:?} is not modeled"));
        return Ok(None);
    }
    let (host, prefix) = match s.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if !host.contains(':') && host.chars().any(|c| c.is_ascii_alphabetic()) && prefix.is_none() {
        unknown.get_or_insert(format!("the host name {s:?} is not modeled"));
        return Ok(None);
    }
    let net = match family {
        Family::V4 => IpNet::V4(addr4(s, host, prefix)?),
        Family::V6 => IpNet::V6(addr6(s, host, prefix)?),
    };
    Ok(Some(net.trunc()))
}

fn addr4(s: &str, host: &str, prefix: Option<&str>) -> Result<Ipv4Net, RuleError> {
    if !host.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(RuleError::NotIpv4(s.to_owned()));
    }
    if let Some(octet) = host.split('.').find(|o| o.len() > 1 && o.starts_with('0')) {
        return Err(RuleError::LeadingZero {
            addr: s.to_owned(),
            octet: octet.to_owned(),
        });
    }
    let ip: Ipv4Addr = host.parse().map_err(|_| RuleError::NotIpv4(s.to_owned()))?;
    match prefix {
        None => Ok(Ipv4Net::from(ip)),
        Some(p) if is_len(p) => {
            let len = prefix_len(s, p)?;
            Ipv4Net::new(ip, len).map_err(|_| too_long(s, len, 32))
        }
        Some(p) => match p.parse::<Ipv4Addr>() {
            Ok(mask) if p.split('.').count() == 4 => {
                Ipv4Net::with_netmask(ip, mask).map_err(|_| mask_gap(s, p))
            }
            _ => Err(prefix_text(s, p, 32)),
        },
    }
}

fn addr6(s: &str, host: &str, prefix: Option<&str>) -> Result<Ipv6Net, RuleError> {
    let ip: Ipv6Addr = host.parse().map_err(|_| RuleError::NotIpv6(s.to_owned()))?;
    match prefix {
        None => Ok(Ipv6Net::from(ip)),
        Some(p) if is_len(p) => {
            let len = prefix_len(s, p)?;
            Ipv6Net::new(ip, len).map_err(|_| too_long(s, len, 128))
        }
        Some(p) => match p.parse::<Ipv6Addr>() {
            Ok(mask) => Ipv6Net::with_netmask(ip, mask).map_err(|_| mask_gap(s, p)),
            _ => Err(prefix_text(s, p, 128)),
        },
    }
}

fn prefix_len(addr: &str, p: &str) -> Result<u8, RuleError> {
    p.parse().map_err(|_| RuleError::BadPrefix(addr.to_owned()))
}

fn too_long(addr: &str, len: u8, max: u8) -> RuleError {
    RuleError::PrefixTooLong {
        addr: addr.to_owned(),
        len,
        max,
    }
}

fn prefix_text(addr: &str, text: &str, max: u8) -> RuleError {
    RuleError::PrefixText {
        addr: addr.to_owned(),
        text: text.to_owned(),
        max,
    }
}

fn mask_gap(addr: &str, mask: &str) -> RuleError {
    RuleError::MaskGap {
        addr: addr.to_owned(),
        mask: mask.to_owned(),
    }
}

/// A prefix length as digits: 1 to 3 of them.
fn is_len(p: &str) -> bool {
    !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit())
}

/// `-i`/`-o`: 1 to 15 bytes (a trailing `+` is a wildcard).
pub(in crate::verify) fn iface(s: &str) -> Result<String, RuleError> {
    let name = s.strip_suffix('+').unwrap_or(s);
    if s.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
        return Err(RuleError::NotInterface(s.to_owned()));
    }
    Ok(s.to_owned())
}

/// `0x4000/0x4000` or `0x4000` (mask all ones), hex or decimal.
pub(in crate::verify) fn mark_value(s: &str) -> Result<(u32, u32), RuleError> {
    let num = |x: &str| {
        let parsed = match x.strip_prefix("0x") {
            Some(h) => u32::from_str_radix(h, 16),
            None => x.parse(),
        };
        parsed.map_err(|_| RuleError::NotMark(s.to_owned()))
    };
    match s.split_once('/') {
        Some((v, m)) => Ok((num(v)?, num(m)?)),
        None => Ok((num(s)?, u32::MAX)),
    }
}

/// Options a `!` may stand before, outside unmodeled modules.
pub(in crate::verify) fn negatable(opt: &str, module: &str) -> bool {
    matches!(
        opt,
        "-s" | "--source"
            | "-d"
            | "--destination"
            | "-i"
            | "--in-interface"
            | "-o"
            | "--out-interface"
            | "-p"
            | "--protocol"
            | "-f"
            | "--fragment"
    ) || match module {
        "mark" => opt == "--mark",
        "conntrack" => opt == "--ctstate",
        "state" => opt == "--state",
        "addrtype" => matches!(opt, "--src-type" | "--dst-type"),
        "tcp" | "udp" => opt.starts_with("--"),
        "comment" | "" => false,
        // An unmodeled module's option: iptables-restore --test decides.
        _ => opt.starts_with("--"),
    }
}

pub(in crate::verify) const MODELED: [&str; 8] = [
    "comment",
    "addrtype",
    "mark",
    "tcp",
    "udp",
    "set",
    "conntrack",
    "state",
];

/// A port or a range of ports as iptables-save prints them: `80`, `80:90`.
pub(in crate::verify) fn ports(v: &str) -> Option<(u16, u16)> {
    let (lo, hi) = v.split_once(':').unwrap_or((v, v));
    let (lo, hi) = (lo.parse().ok()?, hi.parse().ok()?);
    (lo <= hi).then_some((lo, hi))
}

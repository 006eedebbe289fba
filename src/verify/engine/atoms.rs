//! Exactness: destinations, sources, interfaces and protocols are split
//! into "atoms" at every boundary that the reachable rules mention, and one
//! packet per atom is walked. Within an atom every rule matches all packets
//! or none, so a verdict holds for the whole class, not a sample.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::model::Mentions;
use super::rule::Rule;
use super::sets::Sets;
use crate::config::{Family, NodeSpec};

/// One concrete packet of a class.
#[derive(Debug, Clone)]
pub(in crate::verify) struct Packet {
    pub(in crate::verify) src: IpAddr,
    /// The source atom this packet stands for: first and last address.
    pub(in crate::verify) src_range: (IpAddr, IpAddr),
    pub(in crate::verify) dst: IpAddr,
    /// The exclusion (or egress range) this destination stands for.
    pub(in crate::verify) dst_class: IpNet,
    pub(in crate::verify) in_if: String,
    pub(in crate::verify) out_if: String,
    pub(in crate::verify) proto: String,
    /// The destination port of a tcp or udp packet, where a rule names one.
    pub(in crate::verify) dport: Option<u16>,
    pub(in crate::verify) mark: u32,
    /// The question is only whether a rule of podsnat's decides: a rule of
    /// someone else's with an unmodeled match that would end the walk (a
    /// translation, an accept) is taken as not matching: the walk goes on
    /// to ask what podsnat's own rules do.
    pub(in crate::verify) lenient: bool,
}

pub(in crate::verify) struct Atoms {
    /// One source per atom of the pod subnet, with the atom's range.
    pub(in crate::verify) srcs: Vec<(IpAddr, (IpAddr, IpAddr))>,
    pub(in crate::verify) cluster_dsts: Vec<(IpAddr, IpNet)>,
    pub(in crate::verify) outside_dsts: Vec<(IpAddr, IpNet)>,
    /// This node's own pod subnet, split: traffic to it leaves through the
    /// bridge (to the node's pods, and docker's hairpin NAT).
    pub(in crate::verify) bridge_dsts: Vec<(IpAddr, IpNet)>,
    /// Every interface but the bridge that the rules tell apart.
    pub(in crate::verify) out_ifs: Vec<String>,
    /// The bridge alone.
    pub(in crate::verify) bridge: Vec<String>,
    pub(in crate::verify) protos: Vec<String>,
    /// One destination port per range of ports the rules tell apart; empty
    /// when no rule names a port.
    pub(in crate::verify) ports: Vec<u16>,
}

/// Half-open intervals of addresses, as numbers. An IPv6 interval that
/// would end past the last address ends at it instead: `ffff:...:ffff` is
/// multicast, never a checked source or destination, and a rule that names
/// it names all of ff00::/8, whose start is a cut of its own.
pub(in crate::verify) type Span = (u128, u128);

pub(in crate::verify) fn span(n: &IpNet) -> Span {
    match n {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128 + 1,
        ),
        IpNet::V6(n) => (
            u128::from(n.network()),
            u128::from(n.broadcast()).saturating_add(1),
        ),
    }
}

/// The whole address space of `family`, as a span.
fn everything(family: Family) -> Span {
    match family {
        Family::V4 => (0, 1 << 32),
        Family::V6 => (0, u128::MAX),
    }
}

/// Splits `spans` at every boundary in `cuts`; returns each piece's start.
pub(in crate::verify) fn split(spans: &[Span], cuts: &BTreeSet<u128>) -> Vec<u128> {
    let mut out = Vec::new();
    for &(lo, hi) in spans {
        out.push(lo);
        out.extend(cuts.range(lo + 1..hi).copied());
    }
    out
}

/// `spans` minus `holes`, both lists of half-open intervals.
pub(in crate::verify) fn subtract(spans: &[Span], holes: &[Span]) -> Vec<Span> {
    let mut out = Vec::new();
    for &(lo, hi) in spans {
        let mut pieces = vec![(lo, hi)];
        for &(hlo, hhi) in holes {
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    let mut v = Vec::new();
                    if hlo > a {
                        v.push((a, b.min(hlo)));
                    }
                    if hhi < b {
                        v.push((a.max(hhi), b));
                    }
                    v.into_iter().filter(|(x, y)| x < y).collect::<Vec<_>>()
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// An address as a number, either family.
pub(in crate::verify) fn num(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(in crate::verify) fn addr(family: Family, x: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(x as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(x)),
    }
}

/// Destinations that are not ordinary unicast: "this network", loopback,
/// multicast and the reserved range (IPv4); the unspecified address,
/// loopback, IPv4-mapped, link-local and multicast (IPv6, where link-local
/// never leaves the link). Pod egress to them is not checked.
fn not_egress(family: Family) -> &'static [&'static str] {
    match family {
        Family::V4 => &["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"],
        Family::V6 => &["::/127", "::ffff:0:0/96", "fe80::/10", "ff00::/8"],
    }
}

impl Atoms {
    /// `extra` holds what the nftables layer's rules name: address
    /// ranges (first, last) and interface names (`eth*` a wildcard).
    pub(in crate::verify) fn collect(
        spec: &NodeSpec,
        rules: &[Rule<'_>],
        sets: &Sets,
        extra: &Mentions,
    ) -> Atoms {
        let family = spec.family();
        let mut src_cuts = BTreeSet::new();
        let mut dst_cuts = BTreeSet::new();
        for &(a, b) in &extra.addrs {
            if a.is_ipv4() == (family == Family::V4) {
                let (lo, hi) = (num(a), num(b).saturating_add(1));
                src_cuts.extend([lo, hi]);
                dst_cuts.extend([lo, hi]);
            }
        }
        sets.cuts(
            spec.family(),
            rules
                .iter()
                .flat_map(|r| r.sets.iter().map(|(_, n, f)| (n.as_str(), f.as_slice()))),
            |is_src, net| {
                let (a, b) = span(&net);
                if is_src { &mut src_cuts } else { &mut dst_cuts }.extend([a, b]);
            },
        );
        let mut patterns: BTreeSet<String> = extra
            .names
            .iter()
            .map(|n| match n.strip_suffix('*') {
                Some(prefix) => format!("{prefix}+"),
                None => n.clone(),
            })
            .collect();
        let mut named_protos = BTreeSet::new();
        let mut port_cuts = BTreeSet::new();
        // nftables' `tcp dport 80`: the protocol and the port count.
        for (proto, port) in &extra.ports {
            named_protos.insert(proto.clone());
            port_cuts.extend([u128::from(*port), u128::from(*port) + 1]);
        }
        for r in rules {
            if let Some((_, lo, hi)) = r.dport {
                port_cuts.extend([u128::from(lo), u128::from(hi) + 1]);
            }
            if let Some((_, n)) = &r.src {
                let (a, b) = span(n);
                src_cuts.extend([a, b]);
            }
            if let Some((_, n)) = &r.dst {
                let (a, b) = span(n);
                dst_cuts.extend([a, b]);
            }
            if let Some((_, name)) = &r.out_if {
                patterns.insert(name.clone());
            }
            if let Some((_, p)) = &r.proto {
                named_protos.insert(proto_name(p));
            }
        }
        let pod = span(&spec.pod_subnet());
        let exclusions = spec.exclusions();
        // Traffic to the node's own pod subnet leaves through the bridge, so
        // it is not part of the "leaves through another interface" class.
        let mut cluster_dsts = Vec::new();
        for e in exclusions {
            for start in split(&subtract(&[span(e)], &[pod]), &dst_cuts) {
                cluster_dsts.push((addr(family, start), *e));
            }
        }
        let mut holes: Vec<Span> = exclusions.iter().map(span).collect();
        holes.extend(
            not_egress(family)
                .iter()
                .filter_map(|s| s.parse::<IpNet>().ok())
                .map(|n| span(&n)),
        );
        let outside_dsts = split(&subtract(&[everything(family)], &holes), &dst_cuts)
            .into_iter()
            .map(|start| (addr(family, start), IpNet::from(addr(family, start))))
            .collect();

        let bridge = spec.bridge().as_str();
        let mut out_ifs: Vec<String> = patterns
            .iter()
            .map(|p| match p.strip_suffix('+') {
                Some(prefix) => {
                    let mut name = format!("{prefix}p0");
                    if name == bridge {
                        name = format!("{prefix}p1");
                    }
                    name
                }
                None => p.clone(),
            })
            .filter(|n| n != bridge)
            .collect();
        // And one interface that no rule names.
        let fresh = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| n != bridge && !patterns.iter().any(|p| iface_matches(p, n)))
            .unwrap_or_else(|| "eth0".into());
        out_ifs.push(fresh);
        out_ifs.sort();
        out_ifs.dedup();

        // Without `-p` in any reachable rule the protocol cannot matter.
        let mut protos: Vec<String> = named_protos
            .iter()
            .filter(|p| *p != "all")
            .cloned()
            .collect();
        let other = if named_protos.is_empty() {
            "any"
        } else {
            ["tcp", "udp", "icmp", "sctp", "gre", "esp"]
                .into_iter()
                .find(|p| !named_protos.contains(*p))
                .unwrap_or("ospf")
        };
        protos.push(other.to_owned());

        let bridge_dsts = split(&[pod], &dst_cuts)
            .into_iter()
            .map(|start| (addr(family, start), spec.pod_subnet()))
            .collect();
        let ports = if port_cuts.is_empty() {
            Vec::new()
        } else {
            // Port 0 is never a connection's destination.
            split(&[(1, 1 << 16)], &port_cuts)
                .into_iter()
                .map(|p| p as u16)
                .collect()
        };

        Atoms {
            srcs: representatives(family, pod, split(&[pod], &src_cuts)),
            cluster_dsts,
            outside_dsts,
            bridge_dsts,
            out_ifs,
            bridge: vec![bridge.to_owned()],
            protos,
            ports,
        }
    }

    /// A container's traffic to itself through the bridge (what docker's
    /// hairpin NAT is for): per source atom, packets to its own address.
    pub(in crate::verify) fn hairpin_packets(&self, spec: &NodeSpec) -> Vec<Packet> {
        self.srcs
            .iter()
            .flat_map(|src| {
                let own = [(src.0, spec.pod_subnet())];
                self.packets_from(spec, std::slice::from_ref(src), &own, &self.bridge, 0, true)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// One packet per atom: every pod source, each of `dsts`, each of
    /// `out_ifs`, every protocol (and port), carrying `mark`.
    pub(in crate::verify) fn packets<'s>(
        &'s self,
        spec: &'s NodeSpec,
        dsts: &'s [(IpAddr, IpNet)],
        out_ifs: &'s [String],
        mark: u32,
        lenient: bool,
    ) -> impl Iterator<Item = Packet> + 's {
        self.packets_from(spec, &self.srcs, dsts, out_ifs, mark, lenient)
    }

    /// [`Atoms::packets`] from the sources `srcs`.
    fn packets_from<'a>(
        &'a self,
        spec: &'a NodeSpec,
        srcs: &'a [(IpAddr, (IpAddr, IpAddr))],
        dsts: &'a [(IpAddr, IpNet)],
        out_ifs: &'a [String],
        mark: u32,
        lenient: bool,
    ) -> impl Iterator<Item = Packet> + 'a {
        let no_port = [None];
        srcs.iter().flat_map(move |&(src, src_range)| {
            dsts.iter().flat_map(move |&(dst, class)| {
                out_ifs.iter().flat_map(move |out_if| {
                    self.protos.iter().flat_map(move |proto| {
                        let ports: Vec<Option<u16>> =
                            if self.ports.is_empty() || !matches!(proto.as_str(), "tcp" | "udp") {
                                no_port.to_vec()
                            } else {
                                self.ports.iter().copied().map(Some).collect()
                            };
                        ports.into_iter().map(move |dport| Packet {
                            src,
                            src_range,
                            dst,
                            dst_class: class,
                            in_if: spec.bridge().as_str().to_owned(),
                            out_if: out_if.clone(),
                            proto: proto.clone(),
                            dport,
                            mark,
                            lenient,
                        })
                    })
                })
            })
        })
    }
}

/// One source address per atom of the pod subnet: the atom's second
/// address where it has more than one, so that a report shows a host
/// address (`10.244.1.1`), not the network's. Every address of an atom
/// meets the same rules, so any of them stands for it.
fn representatives(
    family: Family,
    (_, end): Span,
    starts: Vec<u128>,
) -> Vec<(IpAddr, (IpAddr, IpAddr))> {
    let ends: Vec<u128> = starts.iter().skip(1).copied().chain([end]).collect();
    starts
        .iter()
        .zip(ends)
        .map(|(&a, b)| {
            let pick = if b - a >= 2 { a + 1 } else { a };
            (addr(family, pick), (addr(family, a), addr(family, b - 1)))
        })
        .collect()
}

pub(in crate::verify) fn proto_name(p: &str) -> String {
    match p {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "132" => "sctp".into(),
        "47" => "gre".into(),
        "0" => "all".into(),
        other => other.to_owned(),
    }
}

/// iptables interface patterns: a trailing `+` matches any suffix.
pub(in crate::verify) fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

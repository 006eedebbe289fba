//! Exactness: destinations, sources, interfaces and protocols are split
//! into "atoms" at every boundary that the reachable rules mention, and one
//! packet per atom is walked. Within an atom every rule matches all packets
//! or none, so a verdict holds for the whole class, not a sample.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::rule::Rule;
use super::sets::Sets;
use crate::config::NodeSpec;

/// One concrete packet of a class.
#[derive(Debug, Clone)]
pub(super) struct Packet {
    pub(super) src: Ipv4Addr,
    /// The source atom this packet stands for: first and last address.
    pub(super) src_range: (Ipv4Addr, Ipv4Addr),
    pub(super) dst: Ipv4Addr,
    /// The exclusion (or egress range) this destination stands for.
    pub(super) dst_class: Ipv4Net,
    pub(super) in_if: String,
    pub(super) out_if: String,
    pub(super) proto: String,
    pub(super) mark: u32,
}

pub(super) struct Atoms {
    /// One source per atom of the pod subnet, with the atom's range.
    pub(super) srcs: Vec<(Ipv4Addr, (Ipv4Addr, Ipv4Addr))>,
    pub(super) cluster_dsts: Vec<(Ipv4Addr, Ipv4Net)>,
    pub(super) outside_dsts: Vec<(Ipv4Addr, Ipv4Net)>,
    pub(super) out_ifs: Vec<String>,
    pub(super) protos: Vec<String>,
}

/// Half-open u64 intervals of addresses.
type Span = (u64, u64);

pub(super) fn span(n: &Ipv4Net) -> Span {
    (
        u32::from(n.network()) as u64,
        u32::from(n.broadcast()) as u64 + 1,
    )
}

/// Splits `spans` at every boundary in `cuts`; returns each piece's start.
fn split(spans: &[Span], cuts: &BTreeSet<u64>) -> Vec<u64> {
    let mut out = Vec::new();
    for &(lo, hi) in spans {
        out.push(lo);
        out.extend(cuts.range(lo + 1..hi).copied());
    }
    out
}

/// `spans` minus `holes`, both lists of half-open intervals.
fn subtract(spans: &[Span], holes: &[Span]) -> Vec<Span> {
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

fn addr(x: u64) -> Ipv4Addr {
    Ipv4Addr::from(x as u32)
}

/// Destinations that are not ordinary unicast: "this network", loopback,
/// multicast and the reserved range. Pod egress to them is not checked.
const NOT_EGRESS: [&str; 3] = ["0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"];

impl Atoms {
    pub(super) fn collect(spec: &NodeSpec, rules: &[Rule<'_>], sets: &Sets) -> Atoms {
        let mut src_cuts = BTreeSet::new();
        let mut dst_cuts = BTreeSet::new();
        sets.cuts(
            rules
                .iter()
                .flat_map(|r| r.sets.iter().map(|(_, n, f)| (n.as_str(), f.as_slice()))),
            &mut src_cuts,
            &mut dst_cuts,
        );
        let mut patterns = BTreeSet::new();
        let mut named_protos = BTreeSet::new();
        for r in rules {
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
        let exclusions: Vec<Ipv4Net> = spec.exclusions();
        // Traffic to the node's own pod subnet leaves through the bridge, so
        // it is not part of the "leaves through another interface" class.
        let mut cluster_dsts = Vec::new();
        for e in &exclusions {
            for start in split(&subtract(&[span(e)], &[pod]), &dst_cuts) {
                cluster_dsts.push((addr(start), *e));
            }
        }
        let mut holes: Vec<Span> = exclusions.iter().map(span).collect();
        holes.extend(
            NOT_EGRESS
                .iter()
                .filter_map(|s| s.parse::<Ipv4Net>().ok())
                .map(|n| span(&n)),
        );
        let everything = [(0u64, 1u64 << 32)];
        let outside_dsts = split(&subtract(&everything, &holes), &dst_cuts)
            .into_iter()
            .map(|start| (addr(start), Ipv4Net::from(addr(start))))
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

        Atoms {
            srcs: representatives(pod, split(&[pod], &src_cuts)),
            cluster_dsts,
            outside_dsts,
            out_ifs,
            protos,
        }
    }

    pub(super) fn packets<'s>(
        &'s self,
        spec: &'s NodeSpec,
        dsts: &'s [(Ipv4Addr, Ipv4Net)],
    ) -> impl Iterator<Item = Packet> + 's {
        self.srcs.iter().flat_map(move |&(src, src_range)| {
            dsts.iter().flat_map(move |&(dst, class)| {
                self.out_ifs.iter().flat_map(move |out_if| {
                    self.protos.iter().map(move |proto| Packet {
                        src,
                        src_range,
                        dst,
                        dst_class: class,
                        in_if: spec.bridge().as_str().to_owned(),
                        out_if: out_if.clone(),
                        proto: proto.clone(),
                        mark: 0,
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
fn representatives((_, end): Span, starts: Vec<u64>) -> Vec<(Ipv4Addr, (Ipv4Addr, Ipv4Addr))> {
    let ends: Vec<u64> = starts.iter().skip(1).copied().chain([end]).collect();
    starts
        .iter()
        .zip(ends)
        .map(|(&a, b)| {
            let pick = if b - a >= 2 { a + 1 } else { a };
            (addr(pick), (addr(a), addr(b - 1)))
        })
        .collect()
}

pub(super) fn proto_name(p: &str) -> String {
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
pub(super) fn iface_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('+') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

//! ipsets for `-m set --match-set NAME FLAGS`: their contents, read from
//! `ipset save` (the kernel's in live mode, `--ipsets FILE` for a file),
//! and whether a checked packet is a member. Modeled types: hash:ip and
//! hash:net (one flag: src or dst) and hash:ip,port,ip (three flags).
//! Anything else stays "cannot decide".
//!
//! One assumption, stated here and in docs/verify.md: a set named
//! KUBE-LOOP-BACK whose contents are not known is kube-proxy's (ipvs mode,
//! `pkg/proxy/ipvs/proxier.go`), which holds only `endpointIP,proto:port,
//! endpointIP` entries and is matched `dst,dst,src`. A match needs the
//! destination to equal the source, which no packet of the classes that
//! leave through a non-bridge interface has (a pod packet to another host's
//! address). Bridge traffic can have it; for it the port decides, which the
//! set's unknown contents do not give: "cannot decide", unless the rule only
//! ends the walk (see `Packet::lenient`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Family;

/// kube-proxy's hairpin set; see the module comment.
const KUBE_LOOP_BACK: &str = "KUBE-LOOP-BACK";

#[derive(Debug, Clone)]
enum Kind {
    /// hash:ip and hash:net: the member networks.
    Nets(Nets),
    /// hash:ip,port,ip: the first and the last address of each entry,
    /// hashed as the kernel hashes them, so a lookup costs the same with
    /// 40 entries or 40,000.
    IpPortIp(HashSet<(IpAddr, IpAddr)>),
    Other(String),
}

/// A hash:net set as the kernel looks it up: one hash of networks per
/// prefix length in use, each probed with the address cut to that length.
#[derive(Debug, Clone, Default)]
struct Nets {
    by_len: BTreeMap<u8, HashSet<IpNet>>,
}

impl Nets {
    fn insert(&mut self, n: IpNet) {
        let n = n.trunc();
        self.by_len.entry(n.prefix_len()).or_default().insert(n);
    }

    fn contains(&self, a: IpAddr) -> bool {
        self.by_len.iter().any(|(&len, nets)| {
            IpNet::new(a, len)
                .map(|n| nets.contains(&n.trunc()))
                .unwrap_or(false)
        })
    }

    fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.by_len.values().flatten()
    }
}

/// Every set `ipset save` printed, of both families (`family inet6` sets
/// hold IPv6 entries; the kernel lets ip6tables match only those).
#[derive(Debug, Clone, Default)]
pub struct Sets {
    sets: HashMap<String, Kind>,
}

/// A set match's answer for one packet.
pub(in crate::verify) enum Member {
    Yes,
    No,
    Unknown(String),
}

/// A line of `ipset save` output that podsnat cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}: {text:?}")]
pub struct SetsError {
    pub line: usize,
    pub why: SetLine,
    pub text: String,
}

/// What is wrong with the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SetLine {
    #[error("a create line needs a name and a type")]
    CreateShort,
    #[error("an add line needs a set and an entry")]
    AddShort,
    #[error("not an IP address or network")]
    NotNet,
    #[error("not an ip,port,ip entry")]
    NotIpPortIp,
    #[error("not a line of `ipset save`")]
    Unknown,
}

impl Sets {
    /// Reads `ipset save` output; a line it cannot read is an error naming it.
    pub fn parse(text: &str) -> Result<Sets, SetsError> {
        let mut sets = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            let bad = |why: SetLine| SetsError {
                line: i + 1,
                why,
                text: line.to_owned(),
            };
            let mut words = line.split_whitespace();
            match words.next() {
                Some("create") => {
                    let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                        return Err(bad(SetLine::CreateShort));
                    };
                    let kind = match kind {
                        "hash:ip" | "hash:net" => Kind::Nets(Nets::default()),
                        "hash:ip,port,ip" => Kind::IpPortIp(HashSet::new()),
                        other => Kind::Other(other.to_owned()),
                    };
                    sets.insert(name.to_owned(), kind);
                }
                Some("add") => {
                    let (Some(name), Some(entry)) = (words.next(), words.next()) else {
                        return Err(bad(SetLine::AddShort));
                    };
                    match sets.get_mut(name) {
                        Some(Kind::Nets(nets)) => nets.insert(
                            entry
                                .parse::<IpNet>()
                                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                                .map_err(|_| bad(SetLine::NotNet))?,
                        ),
                        Some(Kind::IpPortIp(pairs)) => {
                            let parts: Vec<&str> = entry.split(',').collect();
                            let (Some(a), Some(c)) = (parts.first(), parts.get(2)) else {
                                return Err(bad(SetLine::NotIpPortIp));
                            };
                            let ip = |s: &str| {
                                s.parse::<IpAddr>().map_err(|_| bad(SetLine::NotIpPortIp))
                            };
                            pairs.insert((ip(a)?, ip(c)?));
                        }
                        // An unmodeled type's member.
                        Some(Kind::Other(_)) | None => {}
                    }
                }
                Some(_) => return Err(bad(SetLine::Unknown)),
                None => {}
            }
        }
        Ok(Sets { sets })
    }

    /// Whether a packet from `src` to `dst` is in set `name` as `flags`
    /// (src/dst per dimension) look.
    pub(in crate::verify) fn member(
        &self,
        name: &str,
        flags: &[String],
        src: IpAddr,
        dst: IpAddr,
    ) -> Member {
        let pick = |flag: &str| if flag == "src" { src } else { dst };
        match (self.sets.get(name), flags) {
            (Some(Kind::Nets(nets)), [f]) => {
                let a = pick(f);
                if nets.contains(a) {
                    Member::Yes
                } else {
                    Member::No
                }
            }
            (Some(Kind::IpPortIp(pairs)), [f1, _, f3]) => {
                let (a, c) = (pick(f1), pick(f3));
                if pairs.contains(&(a, c)) {
                    Member::Unknown(format!(
                        "set {name} has an entry for this packet's addresses; its port is not modeled"
                    ))
                } else {
                    Member::No
                }
            }
            (Some(Kind::Other(kind)), _) => Member::Unknown(format!(
                "set {name} has the type {kind}, which is not modeled"
            )),
            (Some(_), _) => Member::Unknown(format!(
                "set {name} is matched with {} flags, which its type does not take",
                flags.len()
            )),
            (None, [a, b, c]) if name == KUBE_LOOP_BACK && [a, b, c] == ["dst", "dst", "src"] => {
                // kube-proxy's hairpin set: a match needs dst == src.
                if dst == src {
                    Member::Unknown(format!("set {name}'s contents are not known"))
                } else {
                    Member::No
                }
            }
            (None, _) => Member::Unknown(format!(
                "the contents of set {name} are not known (verify reads them with `ipset save`; with --file pass --ipsets FILE)"
            )),
        }
    }

    /// The networks of the sets matched by `uses`, each with whether the
    /// match looks at the source: the engine cuts its atoms at their edges,
    /// so a verdict still holds for every packet of a class.
    pub(in crate::verify) fn cuts<'s>(
        &self,
        family: Family,
        uses: impl Iterator<Item = (&'s str, &'s [String])>,
        mut cut: impl FnMut(bool, IpNet),
    ) {
        let mut side = |flag: &String, net: IpNet| {
            if Family::of(&net) == family {
                cut(flag == "src", net.trunc());
            }
        };
        for (name, flags) in uses {
            match (self.sets.get(name), flags) {
                (Some(Kind::Nets(nets)), [f]) => {
                    for n in nets.iter() {
                        side(f, *n);
                    }
                }
                (Some(Kind::IpPortIp(pairs)), [f1, _, f3]) => {
                    for &(x, z) in pairs {
                        side(f1, IpNet::from(x));
                        side(f3, IpNet::from(z));
                    }
                }
                _ => {}
            }
        }
    }
}

//! One line of `conntrack -L` (conntrack-tools), as the kernel's
//! connection tracking holds a flow: its protocol, the original tuple (what
//! the pod sent) and the reply tuple (what the other end answers to, after
//! NAT). A line podsnat cannot read is refused, naming its number and why,
//! never guessed: a flow read wrong would be deleted wrong.
//!
//!     udp      17 29 src=172.7.21.2 dst=172.7.22.2 sport=5140 dport=5140 [UNREPLIED] src=172.7.22.2 dst=10.4.7.21 sport=5140 dport=5140 mark=0 use=1
//!     tcp      6 431999 ESTABLISHED src=... dst=... sport=... dport=... src=... [ASSURED] mark=0 use=1
//!
//! Keys podsnat does not judge (`mark`, `use`, `zone`, `secctx`, `labels`,
//! `id`) and flags in brackets are passed over. Pure: the caller runs
//! conntrack and hands the lines over one by one.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::family::Family;

/// The longest line podsnat reads: a flow with every optional field is
/// under 400 bytes.
pub const MAX_LINE: usize = 1024;

/// One direction of a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Ports (tcp, udp, sctp...), or ICMP's type, code and id.
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp: Option<(u8, u8, u16)>,
}

/// A tracked flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The protocol's name as conntrack prints it: tcp, udp, icmp, icmpv6, sctp...
    pub proto: String,
    /// The connection's state for tcp, sctp and dccp (`ESTABLISHED`).
    pub state: Option<String>,
    pub orig: Tuple,
    pub reply: Tuple,
}

impl Flow {
    /// Whether the flow can still carry traffic: every datagram flow, and a
    /// connection not yet closed on both ends (not in TIME_WAIT, CLOSE or
    /// LAST_ACK; for sctp not CLOSED or SHUTDOWN_ACK_SENT). A closed
    /// connection's entry only waits out its timer.
    pub fn live(&self) -> bool {
        !matches!(
            self.state.as_deref(),
            Some("TIME_WAIT" | "CLOSE" | "LAST_ACK" | "CLOSED" | "SHUTDOWN_ACK_SENT")
        )
    }

    /// Whether deleting the flow resets a connection: tcp, sctp and dccp
    /// keep state on both ends; a datagram protocol's next packet simply
    /// starts a new flow.
    pub fn connection_oriented(&self) -> bool {
        connection_oriented(&self.proto)
    }
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("is {0} bytes long, longer than any flow ({max})", max = MAX_LINE)]
    TooLong(usize),
    #[error("has the byte 0x{0:02x} at offset {1}, which conntrack never prints")]
    Byte(u8, usize),
    #[error("does not start with a protocol, its number and a timeout")]
    Head,
    #[error("has {0:?}, which is no address")]
    Address(String),
    #[error("has {0:?}, which is no number of that size")]
    Number(String),
    #[error("has a third tuple")]
    ThirdTuple,
    #[error("has {0:?} before any tuple")]
    Stray(String),
    #[error("lacks the {0} tuple's addresses")]
    Missing(&'static str),
    #[error("mixes IPv4 and IPv6 addresses")]
    Families,
}

/// A tuple being read.
#[derive(Default)]
struct Partial {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    sport: Option<u16>,
    dport: Option<u16>,
    icmp: (Option<u8>, Option<u8>, Option<u16>),
}

impl Partial {
    fn done(self, which: &'static str) -> Result<Tuple, LineError> {
        let (Some(src), Some(dst)) = (self.src, self.dst) else {
            return Err(LineError::Missing(which));
        };
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(LineError::Families);
        }
        let icmp = match self.icmp {
            (Some(t), Some(c), Some(id)) => Some((t, c, id)),
            _ => None,
        };
        Ok(Tuple {
            src,
            dst,
            sport: self.sport,
            dport: self.dport,
            icmp,
        })
    }
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, LineError> {
    // Digits only: `+1` and `0x10` parse in places conntrack never prints them.
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LineError::Number(v.to_owned()));
    }
    v.parse().map_err(|_| LineError::Number(v.to_owned()))
}

/// [`parse`] on a line as read, before it is known to be text.
pub fn parse_bytes(line: &[u8]) -> Result<Flow, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong(line.len()));
    }
    match std::str::from_utf8(line) {
        Ok(text) => parse(text),
        Err(e) => Err(LineError::Byte(
            line.get(e.valid_up_to()).copied().unwrap_or(0),
            e.valid_up_to(),
        )),
    }
}

/// Reads one line of `conntrack -L` (without `-o` options but `id`).
pub fn parse(line: &str) -> Result<Flow, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong(line.len()));
    }
    if let Some((i, b)) = line
        .bytes()
        .enumerate()
        .find(|(_, b)| !(b.is_ascii_graphic() || *b == b' '))
    {
        return Err(LineError::Byte(b, i));
    }
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let (Some(proto), Some(num), Some(timeout)) = (words.next(), words.next(), words.next()) else {
        return Err(LineError::Head);
    };
    let lower = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !lower(proto) || number::<u8>(num).is_err() || number::<u64>(timeout).is_err() {
        return Err(LineError::Head);
    }
    let mut state = None;
    let mut tuples: Vec<Partial> = Vec::new();
    for w in words {
        if w.starts_with('[') && w.ends_with(']') {
            continue;
        }
        let Some((key, value)) = w.split_once('=') else {
            // The state word of tcp, sctp and dccp, before the tuples.
            if tuples.is_empty()
                && state.is_none()
                && w.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            {
                state = Some(w.to_owned());
                continue;
            }
            return Err(LineError::Stray(w.to_owned()));
        };
        if key == "src" {
            if tuples.len() == 2 {
                return Err(LineError::ThirdTuple);
            }
            tuples.push(Partial::default());
        }
        let Some(t) = tuples.last_mut() else {
            return Err(LineError::Stray(w.to_owned()));
        };
        match key {
            "src" | "dst" => {
                let a: IpAddr = value
                    .parse()
                    .map_err(|_| LineError::Address(value.to_owned()))?;
                if key == "src" {
                    t.src = Some(a);
                } else {
                    t.dst = Some(a);
                }
            }
            "sport" => t.sport = Some(number(value)?),
            "dport" => t.dport = Some(number(value)?),
            "type" => t.icmp.0 = Some(number(value)?),
            "code" => t.icmp.1 = Some(number(value)?),
            // ICMP's id, after its type; a later `id=` is the flow's.
            "id" if t.icmp.0.is_some() && t.icmp.2.is_none() => t.icmp.2 = Some(number(value)?),
            // mark, use, zone, secctx, labels, the flow's id: not judged.
            _ => {}
        }
    }
    let mut it = tuples.into_iter();
    let orig = it
        .next()
        .ok_or(LineError::Missing("original"))?
        .done("original")?;
    let reply = it
        .next()
        .ok_or(LineError::Missing("reply"))?
        .done("reply")?;
    if orig.src.is_ipv4() != reply.src.is_ipv4() {
        return Err(LineError::Families);
    }
    Ok(Flow {
        proto: proto.to_owned(),
        state,
        orig,
        reply,
    })
}

/// What to say where the conntrack program `prog` is not installed.
pub fn missing(prog: &str) -> String {
    format!("{prog} is not installed (Debian's conntrack, RHEL's conntrack-tools)")
}

/// Whether flows of `proto` (as conntrack names it) are connections: tcp,
/// sctp and dccp keep state on both ends, so deleting one resets it.
pub fn connection_oriented(proto: &str) -> bool {
    matches!(proto, "tcp" | "sctp" | "dccp")
}

/// The datagram protocols whose flows a repair deletes outright: their
/// next packet starts a new flow on the fixed path.
pub fn datagram_protos(net: &IpNet) -> [&'static str; 2] {
    match Family::of(net) {
        Family::V4 => ["udp", "icmp"],
        Family::V6 => ["udp", "icmpv6"],
    }
}

/// The `conntrack -D` arguments for the flows of `proto` from the pod
/// subnet `pods` to `net` that were source-NATed, the kernel matching.
pub fn delete_args(proto: &str, pods: &IpNet, net: &IpNet) -> Vec<String> {
    [
        "-f",
        Family::of(pods).key(),
        "-p",
        proto,
        "-s",
        &pods.to_string(),
        "-d",
        &net.to_string(),
        "--src-nat",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[cfg(test)]
mod tests;

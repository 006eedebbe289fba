//! podsnat's rules in a node's nat table, in file order, each with the
//! comment that says why it is there. Every choice the modes make is made
//! here, once: the template prints this list, and `verify`, `pin` and
//! `--repair` take podsnat's rules from it.

use crate::config::{Family, Mode, NodeSpec};

use super::{OWN_CHAIN, broad, classic_dest, egress, exclusion, mark_return};

/// One rule of the table and the comment above it (`# ` lines).
pub(super) struct Commented {
    pub(super) chain: &'static str,
    pub(super) why: String,
    pub(super) rule: String,
}

/// docker's broad rule for a pod subnet and its bridge, byte for byte as
/// `iptables-save` prints it. The one place that spells it: `render` for
/// the table, `pin` for the copy docker puts back on top.
pub fn docker_broad(pod_subnet: &str, bridge: &str) -> String {
    format!("-A POSTROUTING -s {pod_subnet} ! -o {bridge} -j MASQUERADE")
}

/// The chains the table declares, as `iptables-save` prints them.
pub(super) fn chains(spec: &NodeSpec) -> Vec<String> {
    let mut chains: Vec<String> = ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
        .iter()
        .map(|c| format!("{c} ACCEPT [0:0]"))
        .collect();
    if spec.docker() {
        chains.push("DOCKER - [0:0]".to_owned());
    }
    if spec.mode() != Mode::Classic {
        chains.push(format!("{OWN_CHAIN} - [0:0]"));
    }
    chains
}

/// Every rule before PODSNAT-POSTROUTING's exclusions, in file order.
pub(super) fn rules(spec: &NodeSpec) -> Vec<Commented> {
    let bridge = spec.bridge().as_str();
    let mut out = Vec::new();
    let mut add = |chain: &'static str, why: &[&str], rule: String| {
        let why = why
            .iter()
            .map(|l| format!("# {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        out.push(Commented { chain, why, rule });
    };
    if spec.docker() {
        let loopback = match spec.family() {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        };
        add(
            "PREROUTING",
            &[
                "docker's skeleton: `docker run -p` adds its port maps to the DOCKER chain,",
                "which a whole-table restore would otherwise remove.",
            ],
            "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER".to_owned(),
        );
        add(
            "OUTPUT",
            &["docker's skeleton: port maps also apply to connections from the host itself."],
            format!("-A OUTPUT ! -d {loopback} -m addrtype --dst-type LOCAL -j DOCKER"),
        );
    }
    let broad = broad(spec);
    match spec.mode() {
        Mode::Guard | Mode::Owner => {
            add(
                "POSTROUTING",
                &[
                    &format!(
                        "Pod traffic that leaves through another interface than {bridge} visits"
                    ),
                    "PODSNAT-POSTROUTING first; the destinations listed there keep the pod source",
                    &format!("IP. Traffic through {bridge} (docker's hairpin NAT) stays docker's."),
                ],
                exclusion(spec),
            );
        }
        Mode::Classic => {
            let dest = classic_dest(spec);
            let mut why = vec![
                format!("The classic fix: pod traffic is masqueraded only when it leaves {dest}"),
                format!(
                    "through another interface than {bridge} (docker's hairpin NAT stays docker's)."
                ),
                "A docker start inserts docker's broad rule above this one and undoes it,"
                    .to_owned(),
            ];
            if spec.anchor() {
                why.push(
                    "in this table: podsnat's nftables anchor decides before it, and".to_owned(),
                );
                why.push("podsnat-pin.service deletes docker's rule again.".to_owned());
            } else {
                why.push("until podsnat-pin.service deletes docker's rule again.".to_owned());
            }
            let why: Vec<&str> = why.iter().map(String::as_str).collect();
            add("POSTROUTING", &why, exclusion(spec));
        }
    }
    match spec.mode() {
        Mode::Owner => {
            let masqueraded = if spec.random_fully() {
                format!("pod traffic leaving through any interface but {bridge} is masqueraded,")
            } else {
                format!(
                    "pod traffic leaving through any interface but {bridge} is masqueraded. Its comment makes it differ from docker's"
                )
            };
            let mut why = vec![
                "Egress: podsnat owns masquerading here (docker runs with \"ip-masq\": false):"
                    .to_owned(),
                masqueraded,
            ];
            if spec.random_fully() {
                why.push(
                    "with fully random source ports. Its comment makes it differ from docker's"
                        .to_owned(),
                );
            }
            why.push("broad rule, so no docker start can delete it.".to_owned());
            let why: Vec<&str> = why.iter().map(String::as_str).collect();
            add("POSTROUTING", &why, egress(spec));
        }
        Mode::Guard => {
            if spec.random_fully() {
                add(
                    "POSTROUTING",
                    &[
                        &format!(
                            "Egress: pod traffic leaving through any interface but {bridge} is"
                        ),
                        "masqueraded, with fully random source ports.",
                    ],
                    format!("{broad} --random-fully"),
                );
            }
            if spec.docker() {
                let mut why = vec![
                    "docker's own rule, byte for byte. At every start with a stored network docker"
                        .to_owned(),
                    "deletes it and inserts it again on top of POSTROUTING, above the exclusions:"
                        .to_owned(),
                ];
                if spec.anchor() {
                    why.push("podsnat's nftables anchor decides before this table, and podsnat-pin.service".to_owned());
                    why.push("moves podsnat's rules back above it.".to_owned());
                } else {
                    why.push("podsnat-pin.service moves podsnat's rules back above it.".to_owned());
                }
                why.push(if spec.random_fully() {
                    "In this order it is never reached: the rule above already masquerades egress."
                        .to_owned()
                } else {
                    format!("It also masquerades egress: pod traffic leaving through any interface but {bridge}.")
                });
                let why: Vec<&str> = why.iter().map(String::as_str).collect();
                add("POSTROUTING", &why, broad.clone());
            } else if !spec.random_fully() {
                add(
                    "POSTROUTING",
                    &[&format!(
                        "Egress: pod traffic leaving through any interface but {bridge} is masqueraded."
                    )],
                    broad.clone(),
                );
            }
        }
        Mode::Classic => {}
    }
    if spec.docker() {
        add(
            "DOCKER",
            &[
                "docker's skeleton (its default userland proxy): traffic that comes from the",
                "bridge itself is not port-mapped. Every docker start makes this chain again.",
            ],
            format!("-A DOCKER -i {bridge} -j RETURN"),
        );
    }
    if spec.mode() != Mode::Classic {
        let mark = spec.masquerade_mark();
        add(
            OWN_CHAIN,
            &[
                &format!(
                    "kube-proxy's masquerade mark (bit {}): kube-proxy asked for this traffic to be",
                    mark.bit()
                ),
                "masqueraded, so it goes back to POSTROUTING before any exclusion below, and",
                "the rules there masquerade it.",
            ],
            mark_return(spec),
        );
    }
    out
}

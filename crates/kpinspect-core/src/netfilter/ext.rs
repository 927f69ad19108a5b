//! What each match and target extension means to the kernel, in one
//! place: the defaults it fills in, the aliases it folds, the order its
//! printer uses. [`kernel_form`] turns a rule as written into the rule as
//! the kernel stores it and `iptables-save` prints it; [`Rule::canonical`]
//! and the restore simulation both use it, so "the same rule" means one
//! thing everywhere. Extensions not listed here are kept as written.

use super::rule::{Match, Opt, Rule, Target, mark_pair, parse_u32, quantize_probability};
use crate::net::{IpNet, parse_cidr_sloppy, parse_ip_sloppy};

/// `rule` as the kernel stores it and `iptables-save` prints it.
pub(super) fn kernel_form(mut rule: Rule) -> Rule {
    rule.counters = None;
    let v6 = rule
        .base
        .iter()
        .any(|o| (o.name == "-s" || o.name == "-d") && o.values.iter().any(|v| v.contains(':')));
    rule.base.retain_mut(|o| match o.name.as_str() {
        "-s" | "-d" => {
            let Some(net) = o.values.first().and_then(|v| parse_net(v)) else {
                return true;
            };
            // iptables-save leaves out a match-everything address.
            if net.prefix_len() == 0 && !o.negated {
                return false;
            }
            o.values = vec![net.trunc().to_string()];
            true
        }
        "-p" => {
            for v in &mut o.values {
                *v = v.to_lowercase();
            }
            true
        }
        _ => true,
    });
    for m in &mut rule.matches {
        kernel_match(m, v6);
    }
    if let Some(t) = &mut rule.target {
        kernel_target(t, v6);
    }
    rule
}

fn parse_net(v: &str) -> Option<IpNet> {
    if v.contains('/') {
        parse_cidr_sloppy(v)
    } else {
        parse_ip_sloppy(v).map(IpNet::from)
    }
}

fn opt(name: &str, values: &[&str]) -> Opt {
    Opt {
        negated: false,
        name: name.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// The order in which a module's printer emits options (unknown options
/// keep their place after the known ones).
fn reorder(options: &mut [Opt], order: &[&str]) {
    options.sort_by_key(|o| {
        order
            .iter()
            .position(|n| *n == o.name)
            .unwrap_or(order.len())
    });
}

fn kernel_match(m: &mut Match, v6: bool) {
    match m.module.as_str() {
        "tcp" | "udp" | "sctp" => {
            for o in &mut m.options {
                match o.name.as_str() {
                    "--destination-port" => o.name = "--dport".into(),
                    "--source-port" => o.name = "--sport".into(),
                    _ => {}
                }
            }
            reorder(&mut m.options, &["--sport", "--dport"]);
        }
        "mark" => {
            for o in m.options.iter_mut().filter(|o| o.name == "--mark") {
                if let Some((v, mask)) = o.values.first().and_then(|v| mark_pair(v)) {
                    o.values = vec![if mask == u32::MAX {
                        format!("{v:#x}")
                    } else {
                        format!("{v:#x}/{mask:#x}")
                    }];
                }
            }
        }
        "statistic" => {
            for o in m.options.iter_mut().filter(|o| o.name == "--probability") {
                if let Some(p) = o.values.first().and_then(|v| v.parse::<f64>().ok()) {
                    let q = quantize_probability(p) as f64 / 2f64.powi(31);
                    o.values = vec![format!("{q:.11}")];
                }
            }
        }
        "conntrack" | "state" => {
            const ORDER: [&str; 7] = [
                "INVALID",
                "NEW",
                "RELATED",
                "ESTABLISHED",
                "UNTRACKED",
                "SNAT",
                "DNAT",
            ];
            for o in m
                .options
                .iter_mut()
                .filter(|o| o.name == "--ctstate" || o.name == "--state")
            {
                let mut states: Vec<String> = o
                    .values
                    .iter()
                    .flat_map(|v| v.split(','))
                    .map(str::to_string)
                    .collect();
                states.sort_by_key(|s| ORDER.iter().position(|o| o == s).unwrap_or(ORDER.len()));
                o.values = vec![states.join(",")];
            }
        }
        "ipvs" => {
            // libxt_ipvs prints the protocol as a number.
            for o in m.options.iter_mut().filter(|o| o.name == "--vproto") {
                for v in &mut o.values {
                    let number = match v.to_ascii_lowercase().as_str() {
                        "tcp" => "6",
                        "udp" => "17",
                        "sctp" => "132",
                        _ => continue,
                    };
                    *v = number.to_string();
                }
            }
            reorder(
                &mut m.options,
                &[
                    "--ipvs",
                    "--vproto",
                    "--vaddr",
                    "--vport",
                    "--vdir",
                    "--vmethod",
                    "--vportctl",
                ],
            );
        }
        "recent" => {
            if !m.has("--name") {
                m.options.push(opt("--name", &["DEFAULT"]));
            }
            if !m.has("--mask") {
                let all = if v6 {
                    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
                } else {
                    "255.255.255.255"
                };
                m.options.push(opt("--mask", &[all]));
            }
            if !m.has("--rsource") && !m.has("--rdest") {
                m.options.push(opt("--rsource", &[]));
            }
            reorder(
                &mut m.options,
                &[
                    "--set",
                    "--rcheck",
                    "--update",
                    "--remove",
                    "--seconds",
                    "--reap",
                    "--hitcount",
                    "--rttl",
                    "--name",
                    "--mask",
                    "--rsource",
                    "--rdest",
                ],
            );
        }
        _ => {}
    }
}

fn kernel_target(t: &mut Target, v6: bool) {
    match t.name.as_str() {
        "MARK" => {
            for o in &mut t.options {
                let v = o.values.first().map(String::as_str).unwrap_or("");
                let xmark = match o.name.as_str() {
                    "--or-mark" => parse_u32(v).map(|x| (x, x)),
                    "--xor-mark" => parse_u32(v).map(|x| (x, 0)),
                    "--and-mark" => parse_u32(v).map(|x| (0, !x)),
                    "--set-mark" | "--set-xmark" => mark_pair(v),
                    _ => None,
                };
                if let Some((value, mask)) = xmark {
                    *o = opt("--set-xmark", &[&format!("{value:#x}/{mask:#x}")]);
                }
            }
        }
        "REJECT" if !t.options.iter().any(|o| o.name == "--reject-with") => {
            let with = if v6 {
                "icmp6-port-unreachable"
            } else {
                "icmp-port-unreachable"
            };
            t.options.push(opt("--reject-with", &[with]));
        }
        _ => {}
    }
}

/// Match modules whose `iptables-save` spelling, given to `-D`, names the
/// rule as kube-proxy wrote it, on both backends (tested on a real kernel
/// in kpinspect's `tests/integration/deletes.rs`). Not `recent`: iptables-save prints
/// `--mask 255.255.255.255 --rsource`, and a `-D` with `--mask` does not
/// match a rule written without it (nor the reverse), on either backend.
/// The kernel compares a rule's binary form, so a match not listed here
/// may have the same problem.
const DELETABLE_MATCHES: [&str; 10] = [
    "addrtype",
    "comment",
    "conntrack",
    "mark",
    "nfacct",
    "sctp",
    "set",
    "statistic",
    "tcp",
    "udp",
];

/// Targets with options whose saved spelling deletes them (tested like
/// [`DELETABLE_MATCHES`]); a target without options (a verdict, a jump to
/// a chain) always does.
const DELETABLE_TARGETS: [&str; 4] = ["DNAT", "MARK", "MASQUERADE", "REJECT"];

/// Whether `-D CHAIN` with `rule`'s saved spelling is known to delete it.
pub fn deletable_by_spec(rule: &Rule) -> bool {
    rule.matches
        .iter()
        .all(|m| DELETABLE_MATCHES.contains(&m.module.as_str()))
        && rule
            .target
            .as_ref()
            .is_none_or(|t| t.options.is_empty() || DELETABLE_TARGETS.contains(&t.name.as_str()))
}

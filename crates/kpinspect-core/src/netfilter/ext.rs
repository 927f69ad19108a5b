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

/// `rule`'s kernel form as `iptables-save` prints it (what
/// `render(&kernel_form(rule), quirks)` gives), appended to `out` without
/// building the kernel form when the rule holds only what kube-proxy
/// writes in most rules: IPv4 addresses already in their printed form,
/// the protocol matches, `statistic`, and extensions the kernel keeps as
/// written. Any other rule goes through [`kernel_form`]. An apply compares
/// every desired rule this way (a clone, a rewrite and a drop of each of
/// 100,000 rules were most of a small change's plan).
pub(super) fn render_kernel_into(rule: &Rule, quirks: bool, out: &mut String) {
    if !renders_directly(rule) {
        super::ruleset::render_into(&kernel_form(rule.clone()), quirks, out);
        return;
    }
    out.push_str("-A ");
    out.push_str(&rule.chain);
    for name in ["-s", "-d", "-i", "-o", "-p", "-f"] {
        for o in rule.base.iter().filter(|o| o.name == name) {
            let Some(v) = o.values.first().filter(|_| name == "-s" || name == "-d") else {
                super::ruleset::push_opts(out, [o], quirks);
                continue;
            };
            if o.negated {
                out.push_str(" !");
            }
            out.push(' ');
            out.push_str(name);
            out.push(' ');
            out.push_str(v);
            if !v.contains('/') {
                out.push_str("/32");
            }
        }
    }
    for m in &rule.matches {
        out.push_str(" -m ");
        out.push_str(&m.module);
        match m.module.as_str() {
            "tcp" | "udp" | "sctp" => {
                // The printer's order: --sport, --dport, then the rest.
                let port = |o: &Opt, long: &str, short: &str| o.name == long || o.name == short;
                for (long, short) in [
                    ("--source-port", "--sport"),
                    ("--destination-port", "--dport"),
                ] {
                    for o in m.options.iter().filter(|o| port(o, long, short)) {
                        if o.negated {
                            out.push_str(" !");
                        }
                        out.push(' ');
                        out.push_str(short);
                        push_values(out, o);
                    }
                }
                let rest = m.options.iter().filter(|o| {
                    !port(o, "--source-port", "--sport")
                        && !port(o, "--destination-port", "--dport")
                });
                super::ruleset::push_opts(out, rest, quirks);
            }
            "statistic" => {
                for o in &m.options {
                    match o.values.first().and_then(|v| v.parse::<f64>().ok()) {
                        Some(p) if o.name == "--probability" => {
                            if o.negated {
                                out.push_str(" !");
                            }
                            let q = quantize_probability(p) as f64 / 2f64.powi(31);
                            use std::fmt::Write as _;
                            let _ = write!(out, " --probability {q:.11}");
                        }
                        _ => super::ruleset::push_opts(out, [o], quirks),
                    }
                }
            }
            _ => super::ruleset::push_opts(out, &m.options, quirks),
        }
    }
    if let Some(t) = &rule.target {
        out.push_str(if t.goto { " -g " } else { " -j " });
        out.push_str(&t.name);
        super::ruleset::push_opts(out, &t.options, quirks);
    }
}

/// Appends `o`'s values as `push_opts` writes them (after its name).
fn push_values(out: &mut String, o: &Opt) {
    for v in &o.values {
        out.push(' ');
        super::ruleset::push_quoted(out, v, false);
    }
}

/// Whether [`render_kernel_into`] can write `rule` without its kernel
/// form: its addresses are single IPv4 addresses or networks, each
/// printed as the kernel prints it (`10.0.0.1`, `10.0.0.0/8`; not
/// `010.0.0.1`, `10.0.0.1/8`, `0.0.0.0/0`), its protocol is lower case,
/// every option has the values the kernel form keeps (one probability, one
/// value per address), and no match or target is one the kernel form
/// rewrites other than the protocol matches and `statistic`.
fn renders_directly(rule: &Rule) -> bool {
    rule.base.iter().all(|o| match o.name.as_str() {
        "-s" | "-d" => match o.values.as_slice() {
            [v] => printed_ipv4(v),
            _ => false,
        },
        "-p" => o
            .values
            .iter()
            .all(|v| !v.bytes().any(|b| b.is_ascii_uppercase())),
        _ => true,
    }) && rule.matches.iter().all(|m| match m.module.as_str() {
        "mark" | "conntrack" | "state" | "ipvs" | "recent" => false,
        "statistic" => m
            .options
            .iter()
            .all(|o| o.name != "--probability" || o.values.len() == 1),
        _ => true,
    }) && rule
        .target
        .as_ref()
        .is_none_or(|t| t.name != "MARK" && t.name != "REJECT")
}

/// Whether `v` is an IPv4 address or network as the kernel prints it
/// (without host bits, not `/0`, which `iptables-save` leaves out).
fn printed_ipv4(v: &str) -> bool {
    match v.split_once('/') {
        None => v.parse::<std::net::Ipv4Addr>().is_ok(),
        Some((addr, len_text)) => {
            let (Ok(addr), Ok(len)) = (addr.parse::<std::net::Ipv4Addr>(), len_text.parse::<u32>())
            else {
                return false;
            };
            let host_bits = u32::MAX.checked_shr(len).unwrap_or(0);
            (1..=32).contains(&len)
                && !len_text.starts_with(['0', '+'])
                && u32::from(addr) & host_bits == 0
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Ruleset;

    /// What `render_kernel_into` writes, and what it must equal.
    fn both(rule: &Rule) -> (String, String) {
        let mut direct = String::new();
        render_kernel_into(rule, true, &mut direct);
        let mut slow = String::new();
        super::super::ruleset::render_into(&kernel_form(rule.clone()), true, &mut slow);
        (direct, slow)
    }

    /// Every rule of the project's saves and of every golden's expected
    /// restore text (kube-proxy's own rules, written as kube-proxy and as
    /// both iptables print them), and rules the direct path must leave to
    /// the kernel form, render as their kernel form does.
    #[test]
    fn direct_rendering_is_the_kernel_forms() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
        let mut texts = Vec::new();
        for dir in ["iptables-save", "iptables"] {
            let mut stack = vec![std::path::PathBuf::from(root).join(dir)];
            while let Some(p) = stack.pop() {
                if p.is_dir() {
                    stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
                } else if let Ok(text) = std::fs::read_to_string(&p)
                    && text.contains("\n-A ")
                {
                    texts.push((p, text));
                }
            }
        }
        assert!(texts.len() > 20, "fixtures found: {}", texts.len());
        let mut direct_rules = 0;
        for (path, text) in &texts {
            let Ok(rs) = Ruleset::parse(text) else {
                continue; // the malformed ones
            };
            for (_, rule) in rs.rules() {
                let (direct, slow) = both(rule);
                assert_eq!(direct, slow, "{}", path.display());
                direct_rules += usize::from(renders_directly(rule));
            }
        }
        assert!(direct_rules > 500, "{direct_rules}");
        for text in [
            "-A X -s 10.0.0.1 -d 10.0.0.0/8 -p tcp -m tcp --destination-port 80 ! --source-port 9 -j ACCEPT",
            "-A X -m udp --dport 53 -p udp ! -d 10.1.0.0/16 -j RETURN",
            "-A X -s 010.0.0.1 -j ACCEPT",
            "-A X -s 10.0.0.1/8 -j ACCEPT",
            "-A X ! -s 0.0.0.0/0 -j ACCEPT",
            "-A X -s 0.0.0.0/0 -j ACCEPT",
            "-A X -s 10.0.0.0/08 -j ACCEPT",
            "-A X -s 10.0.0.0/33 -j ACCEPT",
            "-A X -d fd00::1 -j ACCEPT",
            "-A X -p TCP -m tcp --dport 80 -j ACCEPT",
            "-A X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y",
            "-A X -m statistic --mode random --probability 0.5 -j KUBE-SEP-Y",
            "-A X -m mark --mark 0x4000/0x4000 -j RETURN",
            "-A X -m recent --name Y --rcheck --seconds 10800 -j KUBE-SEP-Y",
            "-A X -j MARK --or-mark 0x4000",
            "-A X -p tcp -j REJECT",
            "-A X -m nfacct --nfacct-name  localhost_nps_accepted_pkts -j ACCEPT",
            "-A X -m comment --comment \"a \\\"b\\\"\" -j ACCEPT",
        ] {
            let rule = Rule::parse(text).unwrap();
            let (direct, slow) = both(&rule);
            assert_eq!(direct, slow, "{text}");
        }
    }

    #[test]
    fn printed_ipv4_is_the_kernels_spelling() {
        for v in ["10.0.0.1", "10.0.0.0/8", "10.0.0.1/32", "0.0.0.0/1"] {
            assert!(printed_ipv4(v), "{v}");
        }
        for v in [
            "010.0.0.1",
            "10.0.0.1/8",
            "0.0.0.0/0",
            "10.0.0.0/08",
            "10.0.0.0/+8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "fd00::1",
            "10.0.0",
        ] {
            assert!(!printed_ipv4(v), "{v}");
        }
    }
}

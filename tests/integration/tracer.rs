//! kube-proxy's test packet tracer (`pkg/proxy/iptables/proxier_test.go`,
//! `tracePacket`), re-implemented from its description: it walks a new
//! connection through the nat rules, then the filter service chains, and
//! reports every DNAT target (all endpoints of a load-balanced service),
//! the verdicts, and whether the packet was marked for masquerade. The
//! packet-flow tests of kube-proxy compare exactly these results.

use std::collections::HashMap;
use std::net::IpAddr;

use kpinspect_core::iptables::dump::{parse_dump, split_args};
use kpinspect_core::net::{IpNet, parse_cidr_sloppy, parse_ip_sloppy};

/// What the tracer found.
#[derive(Debug, PartialEq, Eq)]
pub struct Trace {
    /// Comma-space-joined outputs: DNAT targets, or ACCEPT / DROP / REJECT.
    pub output: String,
    /// Whether KUBE-MARK-MASQ was reached.
    pub masq: bool,
    /// The rules that matched, for failure messages.
    pub matched: Vec<String>,
}

struct Tracer<'a> {
    chains: HashMap<String, Vec<Vec<String>>>,
    local: &'a [IpAddr],
    src: IpAddr,
    dst: IpAddr,
    proto: String,
    dport: String,
    outputs: Vec<String>,
    masq: bool,
    matched: Vec<String>,
}

/// Traces `src` → `dst:dport/proto` through `dump` (restore text).
pub fn trace(dump: &str, local: &[IpAddr], src: &str, proto: &str, dst: &str, dport: u16) -> Trace {
    let tables = parse_dump(dump).expect("dump parses");
    let table = |name: &str| -> HashMap<String, Vec<Vec<String>>> {
        tables
            .iter()
            .filter(|t| t.name == name)
            .flat_map(|t| t.chains.iter())
            .map(|c| {
                (
                    c.name.clone(),
                    c.rules.iter().map(|r| split_args(r)).collect(),
                )
            })
            .collect()
    };
    let mut t = Tracer {
        chains: table("nat"),
        local,
        src: parse_ip_sloppy(src).expect("source IP"),
        dst: parse_ip_sloppy(dst).expect("destination IP"),
        proto: proto.to_lowercase(),
        dport: dport.to_string(),
        outputs: Vec::new(),
        masq: false,
        matched: Vec::new(),
    };
    // nat PREROUTING holds only the jump to KUBE-SERVICES.
    t.run("KUBE-SERVICES");
    if let Some(first) = t.outputs.first() {
        if let Some(ip) = dnat_ip(first) {
            t.dst = ip;
        }
    }
    t.chains = table("filter");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        t.run(chain);
    }
    Trace {
        output: t.outputs.join(", "),
        masq: t.masq,
        matched: t.matched,
    }
}

fn dnat_ip(target: &str) -> Option<IpAddr> {
    let host = match target.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => target.rsplit_once(':')?.0,
    };
    parse_ip_sloppy(host)
}

impl Tracer<'_> {
    /// Runs `chain`; true when it ended in a verdict or DNAT.
    fn run(&mut self, chain: &str) -> bool {
        let Some(rules) = self.chains.get(chain).cloned() else {
            return false;
        };
        for args in rules {
            if !self.matches(&args) {
                continue;
            }
            self.matched.push(args.join(" "));
            let Some(target) = value(&args, "-j") else {
                continue;
            };
            match target {
                "KUBE-MARK-MASQ" => self.masq = true,
                "ACCEPT" | "REJECT" | "DROP" => {
                    self.outputs.push(target.to_string());
                    return true;
                }
                "DNAT" => {
                    self.outputs.push(
                        value(&args, "--to-destination")
                            .unwrap_or_default()
                            .to_string(),
                    );
                    return true;
                }
                "RETURN" => return false,
                sub => {
                    let sub = sub.to_string();
                    let probabilistic = args.iter().any(|a| a == "--probability");
                    if self.run(&sub) && !probabilistic {
                        return true;
                    }
                }
            }
        }
        false
    }

    fn matches(&self, args: &[String]) -> bool {
        let mut negate = false;
        let mut i = 0;
        while i < args.len() {
            let a = args[i].as_str();
            let v = args.get(i + 1).map(String::as_str).unwrap_or("");
            let ok = match a {
                "!" => {
                    negate = true;
                    i += 1;
                    continue;
                }
                // History and state are unknown for a new packet: no match.
                "--rcheck" | "--mark" | "--ctstate" => return false,
                "-s" => Some(in_net(&self.src, v)),
                "-d" => Some(in_net(&self.dst, v)),
                "--src-type" => Some(v == "LOCAL" && self.local.contains(&self.src)),
                "--dst-type" => Some(v == "LOCAL" && self.local.contains(&self.dst)),
                "-p" => Some(v == self.proto),
                "--dport" => Some(v == self.dport),
                _ => None,
            };
            if let Some(ok) = ok {
                if ok == negate {
                    return false;
                }
                i += 2;
            } else {
                i += 1;
            }
            negate = false;
        }
        true
    }
}

fn in_net(ip: &IpAddr, spec: &str) -> bool {
    let net: Option<IpNet> = if spec.contains('/') {
        parse_cidr_sloppy(spec)
    } else {
        parse_ip_sloppy(spec).map(IpNet::from)
    };
    net.is_some_and(|n| n.contains(ip))
}

fn value<'a>(args: &'a [String], opt: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == opt)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

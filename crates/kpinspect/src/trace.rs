//! `kpinspect trace`: formats [`kpinspect_core::trace`].

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::mode::ProxyMode;
use kpinspect_core::mode::ipvs::IpvsState;
use kpinspect_core::mode::nftables::{self, read_listing};
use kpinspect_core::model::Protocol;
use kpinspect_core::net::{IpFamily, parse_ip_sloppy, split_host_port};
use kpinspect_core::nft::{Fake, Family};
use kpinspect_core::proxy::ProxyState;
use kpinspect_core::trace::{
    Action, Hook, Outcome, Packet, Step, Trace, TraceOptions, trace, trace_nftables,
};
use kpinspect_node::{Nftables, SystemNftables};

use crate::UsageError;
use crate::args::{ModeArg, TraceArgs, TraceFormat};
use crate::fmt::fraction;

/// A trace request, validated: what `TraceArgs` says once every address,
/// port and protocol parsed.
#[derive(Debug)]
struct TraceRequest {
    packet: Packet,
    family: IpFamily,
    /// Given with `--local-ip` (empty: read from the live node).
    local_ips: Vec<IpAddr>,
}

impl TraceRequest {
    fn from_args(args: &TraceArgs) -> Result<TraceRequest> {
        let src = parse_ip_sloppy(args.src.trim())
            .ok_or_else(|| UsageError::msg(format!("--src: invalid IP address {:?}", args.src)))?;
        let (dst, protocol) = parse_destination(&args.dst)?;
        if src.is_ipv4() != dst.is_ipv4() {
            anyhow::bail!(UsageError::msg(format!(
                "--src {src} and --dst {dst} are of different IP families"
            )));
        }
        let local_ips = args
            .local_ips
            .iter()
            .map(|ip| {
                parse_ip_sloppy(ip.trim()).ok_or_else(|| {
                    UsageError::msg(format!("--local-ip: invalid IP address {ip:?}"))
                })
            })
            .collect::<Result<Vec<IpAddr>, UsageError>>()?;
        Ok(TraceRequest {
            packet: Packet::new(src, dst.ip(), dst.port(), protocol),
            family: IpFamily::of(&dst.ip()),
            local_ips,
        })
    }
}

pub fn run(args: TraceArgs) -> Result<ExitCode> {
    let TraceRequest {
        packet,
        family,
        mut local_ips,
    } = TraceRequest::from_args(&args)?;
    if args.mode == Some(ModeArg::Nftables) || !args.cluster.is_empty() || args.nft.is_some() {
        return run_nftables(&args, packet, family, local_ips);
    }
    let ipvs_mode = match args.mode {
        Some(ModeArg::Ipvs) => true,
        Some(ModeArg::Iptables) if args.ipvsadm.is_some() => {
            anyhow::bail!(UsageError::msg(
                "--ipvsadm is for --mode ipvs, not --mode iptables"
            ))
        }
        Some(ModeArg::Iptables) => false,
        // (nftables mode returned above.)
        Some(ModeArg::Nftables) | None => args.ipvsadm.is_some(),
    };
    let (source, rules, ipvs) = if args.saves.is_empty() {
        if args.ipvsadm.is_some() {
            anyhow::bail!(UsageError::msg(
                "--ipvsadm needs the iptables rules too: give --iptables-save FILE \
                 (or neither, to read the live node)"
            ));
        }
        let node = crate::live::node()?;
        let s = crate::rules::read_live(&node, Some(family))?.remove(0);
        let ipvs = if ipvs_mode {
            Some(crate::dump::read_live_ipvs(&node).unwrap_or_else(|| {
                note!(
                    "kpinspect: warning: no IPVS virtual server read from this node \
                     (none, or IPVS not loaded): no packet is taken by IPVS"
                );
                (IpvsState::default(), vec![])
            }))
        } else {
            None
        };
        (s.name, s.rules, ipvs)
    } else {
        let (source, rules) = crate::rules::ruleset_for(&args.saves, family)?;
        let ipvs = match (&args.ipvsadm, ipvs_mode) {
            (Some(path), _) => Some(crate::dump::read_ipvs_files(path, args.ipset.as_deref())?),
            (None, true) => anyhow::bail!(UsageError::msg(
                "--mode ipvs with --iptables-save needs --ipvsadm FILE \
                 (the virtual servers, as `ipvsadm -Sn` or `ipvsadm -Ln` print them)"
            )),
            (None, false) => None,
        };
        (source, rules, ipvs)
    };
    if args.saves.is_empty() && local_ips.is_empty() {
        local_ips = crate::live::local_ips()?;
    }
    let mut header = source.clone();
    let (mode, ipsets, virtual_servers) = match ipvs {
        Some((state, sources)) => {
            for s in &sources {
                header.push_str(", ");
                header.push_str(&s.name);
            }
            // Virtual servers of the packet's family.
            let servers = state
                .servers
                .into_iter()
                .filter(|v| v.family() == family)
                .collect();
            (ProxyMode::Ipvs, state.sets, Some(servers))
        }
        // Saves without built-in chains hold iptables mode's restore input.
        None => (ProxyMode::Iptables, None, None),
    };
    let mut opts = TraceOptions::new()
        .with_local_ips(local_ips)
        .with_mode(mode)
        .with_source(source);
    opts.in_interface = args.in_interface.clone();
    opts.ipsets = ipsets;
    opts.virtual_servers = virtual_servers;
    let t = trace(&rules, &packet, &opts);
    let out = match args.format {
        TraceFormat::Json => serde_json::to_string_pretty(&t)? + "\n",
        TraceFormat::Text => text(&t, &packet, &header, false),
        TraceFormat::Dot => crate::dot::trace(&t, &dot_title(&packet, &header)),
        TraceFormat::Svg => crate::svg(&crate::dot::trace(&t, &dot_title(&packet, &header)))?,
    };
    crate::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `trace --mode nftables`: through the `kube-proxy` table of the packet's
/// family, as listed by nft (`--nft`, or the live node's), or as kube-proxy
/// would program it for `--cluster` (compiled).
fn run_nftables(
    args: &TraceArgs,
    packet: Packet,
    family: IpFamily,
    mut local_ips: Vec<IpAddr>,
) -> Result<ExitCode> {
    if args.mode.is_some_and(|m| m != ModeArg::Nftables) {
        anyhow::bail!(UsageError::msg(
            "--cluster and --nft are for --mode nftables"
        ));
    }
    if !args.saves.is_empty() || args.ipvsadm.is_some() {
        anyhow::bail!(UsageError::msg(
            "--mode nftables reads no iptables-save or ipvsadm text: give --nft FILE or --cluster FILE"
        ));
    }
    let nft_family = match family {
        IpFamily::V4 => Family::Ip,
        IpFamily::V6 => Family::Ip6,
    };
    let mut notes = Vec::new();
    let (table, header) = if args.nft.is_some() || args.cluster.is_empty() {
        // A listing, or the live node's table.
        let (text, name) = match &args.nft {
            Some(path) => (Some(crate::read_input(path)?), path.display().to_string()),
            None => {
                let listed = SystemNftables::new()
                    .list_table(nft_family, nftables::TABLE)
                    .map_err(|e| UsageError::msg(e.to_string()))?;
                if local_ips.is_empty() {
                    local_ips = crate::live::local_ips()?;
                }
                (
                    listed,
                    format!("nft list table {nft_family} {}", nftables::TABLE),
                )
            }
        };
        let node = match &text {
            Some(text) => {
                Some(read_listing(text).map_err(|e| UsageError::msg(format!("{name}: {e}")))?)
            }
            None => None,
        };
        if let Some(n) = node.as_ref().filter(|n| !n.foreign.is_empty()) {
            notes.push(format!(
                "{name} also holds {}, whose chains this trace does not walk (they see the packet too)",
                n.foreign
                    .iter()
                    .map(|t| format!("table {t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        match node.as_ref().and_then(|n| n.table(nft_family)) {
            Some(t) => {
                notes.extend(t.notes.iter().cloned());
                let tx = t.transaction();
                let mut fake = Fake::new(tx.family, &tx.table, tx.object_comments);
                fake.apply(&tx)
                    .map_err(|e| UsageError::msg(format!("{name}: {e}")))?;
                (fake, format!("{nft_family} {} in {name}", nftables::TABLE))
            }
            None => {
                // No table: nothing of kube-proxy's is met (the trace says so).
                (
                    Fake::new(nft_family, nftables::TABLE, true),
                    format!("{name} (no {nft_family} {} table)", nftables::TABLE),
                )
            }
        }
    } else {
        let node = args.node_args().resolve()?;
        let cluster = crate::load_cluster(&args.cluster)?;
        let state = ProxyState::build(&cluster, &node.config, family);
        let compiled = nftables::compile(&state, &node.config);
        for n in &compiled.notices {
            note!("kpinspect: warning: {}: {}", n.object, n.message);
        }
        let table = compiled
            .state()
            .map_err(|e| anyhow::anyhow!("the compiled transaction does not apply: {e}"))?;
        for ip in &node.config.node.ips {
            if !local_ips.contains(ip) {
                local_ips.push(*ip);
            }
        }
        let header = format!(
            "{} {} (compiled from {})",
            table.family(),
            table.table_name(),
            args.cluster
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        (table, header)
    };
    let mut opts = TraceOptions::new()
        .with_local_ips(local_ips)
        .with_mode(ProxyMode::Nftables)
        .with_source(header.clone());
    opts.in_interface = args.in_interface.clone();
    let mut t = trace_nftables(&table, &packet, &opts);
    t.notes.extend(notes);
    let out = match args.format {
        TraceFormat::Json => serde_json::to_string_pretty(&t)? + "\n",
        TraceFormat::Text => text(&t, &packet, &header, true),
        TraceFormat::Dot => crate::dot::trace(&t, &dot_title(&packet, &header)),
        TraceFormat::Svg => crate::svg(&crate::dot::trace(&t, &dot_title(&packet, &header)))?,
    };
    crate::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `IP:PORT[/PROTO]` or `[IPv6]:PORT[/PROTO]`.
fn parse_destination(s: &str) -> Result<(SocketAddr, Protocol)> {
    let bad = |why: &str| UsageError::msg(format!("--dst {s:?}: {why} (expected IP:PORT/PROTO)"));
    let (addr, proto) = match s.trim().rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (s.trim(), "tcp"),
    };
    let protocol = Protocol::from_k8s(&proto.to_ascii_uppercase())
        .ok_or_else(|| bad("protocol must be tcp, udp or sctp"))?;
    let (host, port) = split_host_port(addr).ok_or_else(|| bad("no port or an invalid one"))?;
    let ip: IpAddr = parse_ip_sloppy(host).ok_or_else(|| bad("invalid IP address"))?;
    if port == 0 {
        return Err(bad("invalid port").into());
    }
    Ok((SocketAddr::new(ip, port), protocol))
}

/// One line per outcome first (verdict, probability, masquerade,
/// conditions), then each outcome's path (each of its ways, lettered, when
/// several branches joined into it), then the assumptions.
/// The trace graph's title: the packet and where its rules come from.
fn dot_title(p: &Packet, source: &str) -> String {
    let dst = SocketAddr::new(p.dst, p.dport);
    format!("{} -> {dst}/{} in {source}", p.src, p.protocol)
}

fn text(t: &Trace, p: &Packet, source: &str, nft: bool) -> String {
    let mut out = String::new();
    let hook = match (t.hook, nft) {
        (Hook::Prerouting, false) => {
            "nat PREROUTING (the source is not one of the node's addresses)"
        }
        (Hook::Output, false) => "nat OUTPUT (the source is one of the node's addresses)",
        (Hook::Prerouting, true) => {
            "the prerouting hook (the source is not one of the node's addresses)"
        }
        (Hook::Output, true) => "the output hook (the source is one of the node's addresses)",
    };
    let dst = SocketAddr::new(p.dst, p.dport);
    let _ = writeln!(out, "{} -> {dst}/{} in {source}", p.src, p.protocol);
    for n in &t.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let _ = writeln!(out, "enters at {hook}");
    if t.outcomes.is_empty() {
        let _ = writeln!(out, "\nno outcome");
    } else {
        let _ = writeln!(out, "\noutcomes:");
    }
    for (i, o) in t.outcomes.iter().enumerate() {
        let _ = write!(
            out,
            "{:>3}. {}  ({})",
            i + 1,
            verdict(o),
            facts(o).join(", ")
        );
        if !o.conditions.is_empty() {
            let _ = write!(out, "  if {}", o.conditions.join(", and "));
        }
        out.push('\n');
    }
    for (i, o) in t.outcomes.iter().enumerate() {
        let _ = writeln!(out, "\n{}. {}", i + 1, verdict(o));
        if o.ways.is_empty() {
            path(&mut out, &o.path);
            continue;
        }
        for (k, w) in o.ways.iter().enumerate() {
            let mut about = vec![format!("probability {}", fraction(w.probability))];
            if !w.conditions.is_empty() {
                about.push(format!("if {}", w.conditions.join(", and ")));
            }
            if w.unlisted > 0 {
                about.push(format!(
                    "with {} more paths under the same conditions, not shown",
                    w.unlisted
                ));
            }
            let _ = writeln!(out, "   {}) {}", way_label(k), about.join(", "));
            path(&mut out, &w.path);
        }
    }
    if !t.assumptions.is_empty() {
        let _ = writeln!(out, "\nassumptions:");
        for a in &t.assumptions {
            let _ = writeln!(out, "  - {a}");
        }
    }
    out
}

/// The rules of one path, one a line.
fn path(out: &mut String, steps: &[Step]) {
    if steps.is_empty() {
        let _ = writeln!(out, "     no rule matched (the chains' policies accept)");
    }
    for s in steps {
        let place = match s.rule {
            Some(n) => format!("{} {} #{n}", s.table, s.chain),
            None => format!("{} {}", s.table, s.chain),
        };
        let _ = writeln!(out, "     {place:<34} {}", s.text);
    }
}

/// `a`, `b`, ..., `z`, `aa`, `ab`, ...
fn way_label(k: usize) -> String {
    let letter = |i: usize| char::from(b'a' + (i % 26) as u8);
    if k < 26 {
        letter(k).to_string()
    } else {
        format!("{}{}", letter(k / 26 - 1), letter(k))
    }
}

/// `DNAT to 10.0.0.1:80`, `ACCEPT (delivered to the node)`, `DROP`, ...
fn verdict(o: &Outcome) -> String {
    if let Some(c) = &o.ipvs {
        return match c.real_server {
            Some(to) => format!("IPVS {} -> {to}", c.virtual_server),
            None => format!(
                "REJECT by IPVS {} (no real server of weight > 0)",
                c.virtual_server
            ),
        };
    }
    match (o.action, o.to) {
        (Action::Dnat, Some(to)) => format!("DNAT to {to}"),
        (Action::Accept, _) if o.local => "ACCEPT (delivered to the node)".into(),
        (Action::Accept, _) => "ACCEPT (forwarded unchanged)".into(),
        (Action::Drop, _) => "DROP".into(),
        (Action::Reject, _) => "REJECT".into(),
        (Action::Dnat, None) => "DNAT".into(),
    }
}

/// Probability, and for a packet that passes whether it is masqueraded.
fn facts(o: &Outcome) -> Vec<String> {
    let mut facts = vec![format!("probability {}", fraction(o.probability))];
    if let Some(c) = &o.ipvs {
        facts.push(c.scheduler.clone());
        if let Some(w) = c.weight {
            facts.push(format!("weight {w}"));
        }
    }
    if matches!(o.action, Action::Dnat | Action::Accept) {
        facts.push(
            if o.masquerade {
                "masqueraded"
            } else {
                "not masqueraded"
            }
            .into(),
        );
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let (a, p) = parse_destination("172.30.0.41:80/udp").unwrap();
        assert_eq!(
            (a.to_string().as_str(), p),
            ("172.30.0.41:80", Protocol::Udp)
        );
        let (a, p) = parse_destination("[fd00::1]:443").unwrap();
        assert_eq!(
            (a.to_string().as_str(), p),
            ("[fd00::1]:443", Protocol::Tcp)
        );
        for bad in [
            "172.30.0.41",
            "172.30.0.41:0/tcp",
            "x:80/tcp",
            "1.2.3.4:80/icmp",
        ] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
    }
}

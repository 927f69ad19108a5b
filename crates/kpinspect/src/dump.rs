//! `kpinspect dump`: formats [`kpinspect_core::mode::iptables::dump()`]
//! and, for an IPVS node, [`kpinspect_core::mode::ipvs::dump()`].

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::mode::iptables::{
    Anomaly, AnomalyKind, EndpointDump, Generation, NodeDump, RulesMode, ServiceDump, SourceDump,
};
use kpinspect_core::mode::ipvs::{IpvsState, VirtualServer};
use kpinspect_core::net::IpFamily;
use kpinspect_core::proxy::ProxyState;

use kpinspect_node::{IpSets as _, IpvsError, LiveNode, SystemIpvs};

use crate::UsageError;
use crate::args::{DumpArgs, DumpFormat, ModeArg};
use crate::fmt::fraction;

/// Dumps the saves (or the live node); exit status 1 when `--service`
/// names a Service no rule names (after saying so on stderr, one line).
pub fn run(args: DumpArgs) -> Result<ExitCode> {
    if !args.nft.is_empty() || args.node.mode == Some(ModeArg::Nftables) {
        return run_nftables(args);
    }
    let cluster_objects = if args.clusters.is_empty() {
        None
    } else {
        let node = args.node.resolve()?;
        let cluster = crate::load_cluster(&args.clusters)?;
        Some((cluster, node))
    };
    let cluster = cluster_objects
        .as_ref()
        .map(|(objects, node)| ProxyState::build(objects, &node.config, node.family));
    let service = match &args.service {
        Some(filter) => Some(filter.split_once('/').ok_or_else(|| {
            UsageError::msg(format!(
                "--service: expected NAMESPACE/NAME, got {filter:?}"
            ))
        })?),
        None => None,
    };
    let mut result = NodeDump {
        services: vec![],
        anomalies: vec![],
        sources: vec![],
    };
    let mut ipvs = read_ipvs(&args)?;
    let sources = if args.saves.is_empty() && ipvs.is_some() {
        vec![]
    } else if args.saves.is_empty() {
        let node = crate::live::node()?;
        ipvs = read_live_ipvs(&node);
        if node.both_backends() {
            result.anomalies.push(Anomaly {
                kind: AnomalyKind::BothBackends,
                chain: String::new(),
                message:
                    "kube-proxy chains exist in both the legacy and the nft iptables backend; \
                          the other backend's stale rules still filter and NAT traffic"
                        .into(),
            });
        }
        crate::rules::read_live(&node, None)?
    } else {
        crate::rules::read_saves(&args.saves)?
    };
    // Per source without Service rules: why (table format only).
    let mut notes = Vec::new();
    for source in &sources {
        let mut d = kpinspect_core::mode::iptables::dump(&source.rules, cluster.as_ref());
        for s in &mut d.sources {
            s.name.clone_from(&source.name);
            if d.services.is_empty()
                && service.is_none()
                && !(ipvs.is_some() && s.generation.mode == RulesMode::Ipvs)
            {
                notes.push(empty_note(s));
            }
        }
        result.services.extend(d.services);
        result.anomalies.extend(d.anomalies);
        result.sources.extend(d.sources);
    }
    if let Some((state, ipvs_sources)) = &ipvs {
        let iptables = (!sources.is_empty()).then_some(&result);
        // Each virtual server against the cluster as its family's proxier
        // sees it.
        let clusters = match &cluster_objects {
            Some((objects, node)) => {
                let mut families: Vec<IpFamily> =
                    state.servers.iter().map(VirtualServer::family).collect();
                families.sort();
                families.dedup();
                if families.is_empty() {
                    families.push(node.family);
                }
                families
                    .into_iter()
                    .map(|f| ProxyState::build(objects, &node.config, f))
                    .collect()
            }
            None => vec![],
        };
        let d = kpinspect_core::mode::ipvs::dump(state, &clusters, iptables);
        result.services.extend(d.services);
        result.anomalies.extend(d.anomalies);
        result.sources.extend(ipvs_sources.iter().cloned());
    }
    // Virtual servers were read (from `--ipvsadm` or the live node).
    let ipvs_read = ipvs.is_some();
    // The parsed saves are not needed any more, and the process ends after
    // printing: freeing them rule by rule (hundreds of thousands of small
    // allocations on a large node) would only delay the exit.
    std::mem::forget(sources);
    finish(&args, service, result, &notes, ipvs_read)
}

/// `--service`, the output, and the exit status.
fn finish(
    args: &DumpArgs,
    service: Option<(&str, &str)>,
    mut result: NodeDump,
    notes: &[String],
    ipvs_read: bool,
) -> Result<ExitCode> {
    let mut found = true;
    if let Some((ns, name)) = service {
        result
            .services
            .retain(|s| s.namespace == ns && s.name == name);
        found = !result.services.is_empty();
        let chains: BTreeSet<&str> = result
            .services
            .iter()
            .flat_map(|s| s.chains.iter().map(String::as_str))
            .collect();
        let service = format!("{ns}/{name}");
        result.anomalies.retain(|a| {
            a.kind.is_node_wide()
                || chains.contains(a.chain.as_str())
                || names_service(&a.message, &service)
        });
    }
    let out = match args.format {
        DumpFormat::Json => serde_json::to_string_pretty(&result)? + "\n",
        DumpFormat::Table => table(&result, notes, colour()),
        DumpFormat::Dot => crate::dot::dump(&result),
        DumpFormat::Svg => crate::svg(&crate::dot::dump(&result))?,
    };
    crate::write_stdout(&out)?;
    if !found {
        let read: Vec<&str> = result.sources.iter().map(|s| s.name.as_str()).collect();
        let ipvs = result
            .sources
            .iter()
            .any(|s| s.generation.mode == RulesMode::Ipvs);
        note!(
            "kpinspect: dump: service {} not found: no kube-proxy rule of {} names it{}",
            args.service.clone().unwrap_or_default(),
            read.join(", "),
            match (ipvs, ipvs_read, args.clusters.is_empty()) {
                (_, true, true) => {
                    " (virtual servers carry no Service names: give --cluster to name them)"
                }
                (_, true, false) => "",
                (true, false, _) => {
                    " (in IPVS mode, Services are IPVS virtual servers, not iptables rules: \
                     give --ipvsadm)"
                }
                (false, false, _) => "",
            }
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `dump --mode nftables`: the `--nft` listings (or the live node's
/// tables) through `mode::nftables::dump`, with the iptables rules of
/// `--iptables-save` (or, live, the node's) for another mode's leftovers.
fn run_nftables(args: DumpArgs) -> Result<ExitCode> {
    use kpinspect_core::mode::nftables::{NftNode, TABLE, read_listing};
    use kpinspect_core::nft::Family;
    use kpinspect_node::{Nftables as _, SystemNftables};
    if args.ipvsadm.is_some() {
        anyhow::bail!(UsageError::msg(
            "--ipvsadm is for --mode ipvs, not --mode nftables"
        ));
    }
    let service = match &args.service {
        Some(filter) => Some(filter.split_once('/').ok_or_else(|| {
            UsageError::msg(format!(
                "--service: expected NAMESPACE/NAME, got {filter:?}"
            ))
        })?),
        None => None,
    };
    // Each listing with the name of where it came from.
    let mut listings: Vec<(String, NftNode)> = Vec::new();
    let live = args.nft.is_empty();
    if live {
        let nft = SystemNftables::new();
        match nft.list_ruleset() {
            Ok(text) => {
                let node = read_listing(&text)
                    .map_err(|e| UsageError::msg(format!("nft -j list ruleset: {e}")))?;
                listings.push(("the live node (nft -j list ruleset)".into(), node));
            }
            // nft cannot list some other program's table: kube-proxy's own
            // tables, one by one (as knftables does since v0.0.20).
            Err(e @ kpinspect_node::NftError::Other(_)) => {
                note!("kpinspect: warning: {e}; listing the kube-proxy tables only");
                for family in [Family::Ip, Family::Ip6] {
                    let Some(text) = nft
                        .list_table(family, TABLE)
                        .map_err(|e| UsageError::msg(e.to_string()))?
                    else {
                        continue;
                    };
                    let node = read_listing(&text).map_err(|e| {
                        UsageError::msg(format!("nft list table {family} {TABLE}: {e}"))
                    })?;
                    listings.push((
                        format!("the live node (nft list table {family} {TABLE})"),
                        node,
                    ));
                }
            }
            Err(e) => return Err(UsageError::msg(e.to_string()).into()),
        }
    } else {
        for path in &args.nft {
            let text = crate::read_input(path)?;
            let node = read_listing(&text)
                .map_err(|e| UsageError::msg(format!("{}: {e}", path.display())))?;
            listings.push((path.display().to_string(), node));
        }
    }
    // iptables rules and IPVS virtual servers: another mode's leftovers.
    let mut ipvs_servers = 0;
    let iptables_sources = if !args.saves.is_empty() {
        crate::rules::read_saves(&args.saves)?
    } else if live {
        let read = crate::live::node().and_then(|n| {
            if let Some((state, _)) = read_live_ipvs(&n) {
                ipvs_servers = state.servers.len();
            }
            crate::rules::read_live(&n, None)
        });
        match read {
            Ok(s) => s,
            Err(e) => {
                note!("kpinspect: warning: iptables rules not read ({e:#})");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let mut iptables = NodeDump {
        services: vec![],
        anomalies: vec![],
        sources: vec![],
    };
    for source in &iptables_sources {
        let mut d = kpinspect_core::mode::iptables::dump(&source.rules, None);
        for s in &mut d.sources {
            s.name.clone_from(&source.name);
        }
        iptables.sources.extend(d.sources);
    }
    let clusters: Vec<ProxyState> = if args.clusters.is_empty() {
        Vec::new()
    } else {
        let node = args.node.resolve()?;
        let cluster = crate::load_cluster(&args.clusters)?;
        [IpFamily::V4, IpFamily::V6]
            .into_iter()
            .map(|f| ProxyState::build(&cluster, &node.config, f))
            .collect()
    };
    let mut result = NodeDump {
        services: vec![],
        anomalies: vec![],
        sources: vec![],
    };
    let mut notes = Vec::new();
    for (i, (name, node)) in listings.iter().enumerate() {
        // The iptables leftovers are judged once.
        let ipt = (i == 0 && !iptables.sources.is_empty()).then_some(&iptables);
        let mut d = kpinspect_core::mode::nftables::dump(node, &clusters, ipt);
        for s in &mut d.sources {
            s.name.clone_from(name);
        }
        if node.tables.is_empty() && service.is_none() {
            notes.push(format!("no kube-proxy nftables table in {name}"));
        }
        result.services.extend(d.services);
        result.anomalies.extend(d.anomalies);
        result.sources.extend(d.sources);
    }
    result.sources.extend(iptables.sources);
    if ipvs_servers > 0 {
        result.anomalies.push(Anomaly {
            kind: AnomalyKind::OtherMode,
            chain: String::new(),
            message: format!(
                "{} next to the nftables tables: IPVS mode's leftovers, unless another program \
                 uses IPVS (kube-proxy in nftables mode clears IPVS when it starts; kpinspect \
                 cleanup --mode ipvs)",
                count(ipvs_servers, "IPVS virtual server")
            ),
        });
    }
    finish(&args, service, result, &notes, false)
}

/// The IPVS state of `--ipvsadm` and `--ipset`, with a source entry for
/// each file.
fn read_ipvs(args: &DumpArgs) -> Result<Option<(IpvsState, Vec<SourceDump>)>> {
    let Some(path) = &args.ipvsadm else {
        return Ok(None);
    };
    read_ipvs_files(path, args.ipset.as_deref()).map(Some)
}

/// The IPVS state of an `ipvsadm -Ln`/`-Sn` file and an optional `ipset
/// save`/`ipset list` file, with a source entry for each (`dump` and
/// `trace --mode ipvs`).
pub(crate) fn read_ipvs_files(
    path: &std::path::Path,
    ipset: Option<&std::path::Path>,
) -> Result<(IpvsState, Vec<SourceDump>)> {
    let text = crate::read_input(path)?;
    let servers = kpinspect_core::mode::ipvs::parse_ipvsadm(&text)
        .map_err(|e| UsageError::msg(format!("{}: {e}", path.display())))?;
    let reals: usize = servers.iter().map(|v| v.real_servers.len()).sum();
    let mut sources = vec![ipvs_source(
        path.display().to_string(),
        &servers,
        "ipvs",
        format!(
            "IPVS mode ({}, {})",
            count(servers.len(), "virtual server"),
            count(reals, "real server")
        ),
    )];
    let sets = match ipset {
        Some(path) => {
            let text = crate::read_input(path)?;
            let sets = kpinspect_core::ipset::parse(&text)
                .map_err(|e| UsageError::msg(format!("{}: {e}", path.display())))?;
            let members: usize = sets.iter().map(|s| s.members.len()).sum();
            sources.push(ipvs_source(
                path.display().to_string(),
                &[],
                "ipsets",
                format!(
                    "IPVS mode ({}, {})",
                    count(sets.len(), "ipset"),
                    count(members, "member")
                ),
            ));
            Some(sets)
        }
        None => None,
    };
    Ok((IpvsState { servers, sets }, sources))
}

/// The live node's IPVS state: its virtual servers over generic netlink
/// and its ipsets (`ipset save`), with a source entry for each; `None`
/// where IPVS holds no service of kube-proxy's kind, or is not there at
/// all. Without `/proc/net/ip_vs` (IPVS neither built in nor loaded) the
/// kernel is not asked, so that reading does not load `ip_vs`; a failure
/// to read is a warning, and the dump goes on without IPVS (or without
/// the ipsets).
pub(crate) fn read_live_ipvs(node: &LiveNode) -> Option<(IpvsState, Vec<SourceDump>)> {
    if !std::path::Path::new("/proc/net/ip_vs").exists() {
        return None;
    }
    let servers = match kpinspect_node::read_virtual_servers(&SystemIpvs) {
        Ok(servers) => servers,
        Err(IpvsError::NotAvailable) => return None,
        Err(e) => {
            note!("kpinspect: warning: {e}; IPVS virtual servers not read");
            return None;
        }
    };
    if servers.is_empty() {
        return None;
    }
    let reals: usize = servers.iter().map(|v| v.real_servers.len()).sum();
    let mut sources = vec![ipvs_source(
        LIVE_IPVS.to_string(),
        &servers,
        "ipvs",
        format!(
            "IPVS mode ({}, {})",
            count(servers.len(), "virtual server"),
            count(reals, "real server")
        ),
    )];
    let sets = match node
        .save()
        .map_err(|e| e.to_string())
        .and_then(|text| kpinspect_core::ipset::parse(&text).map_err(|e| e.to_string()))
    {
        Ok(sets) => {
            let members: usize = sets.iter().map(|s| s.members.len()).sum();
            sources.push(ipvs_source(
                LIVE_IPSETS.to_string(),
                &[],
                "ipsets",
                format!(
                    "IPVS mode ({}, {})",
                    count(sets.len(), "ipset"),
                    count(members, "member")
                ),
            ));
            Some(sets)
        }
        Err(e) => {
            note!("kpinspect: warning: ipset save: {e}; ipsets not read");
            None
        }
    };
    Some((IpvsState { servers, sets }, sources))
}

/// The source names of the live node's IPVS table and ipsets.
const LIVE_IPVS: &str = "IPVS (netlink)";
const LIVE_IPSETS: &str = "ipset save";

/// `1 thing`, `2 things`.
fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// A source entry for an IPVS-mode text.
fn ipvs_source(name: String, servers: &[VirtualServer], what: &str, summary: String) -> SourceDump {
    SourceDump {
        name,
        family: servers.first().map(VirtualServer::family),
        tables: vec![what.to_string()],
        generation: Generation {
            mode: RulesMode::Ipvs,
            since: None,
            before: None,
            evidence: vec![],
            leftovers: vec![],
            summary,
        },
    }
}

/// Whether `message` names Service `ns/name` (not `ns/name2`).
fn names_service(message: &str, service: &str) -> bool {
    message.match_indices(service).any(|(i, _)| {
        let before = message[..i].chars().next_back();
        let after = message[i + service.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '/')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '.')
    })
}

/// Why a save gave no Service.
fn empty_note(s: &SourceDump) -> String {
    match s.generation.mode {
        RulesMode::None => format!("no kube-proxy rules in {}", source_text(s)),
        RulesMode::Ipvs => format!(
            "no Service in {}: in IPVS mode Services are IPVS virtual servers and ipsets \
             (ipvsadm -Ln, ipset list), not iptables rules; only kube-proxy's iptables chains were checked (give --ipvsadm and --ipset for them)",
            s.name
        ),
        RulesMode::Nftables => format!("no Service in {}", source_text(s)),
        RulesMode::Iptables | RulesMode::Unknown => {
            format!("no Service rules in {}", source_text(s))
        }
    }
}

/// `NAME (IPv4; tables nat, filter)`.
fn source_text(s: &SourceDump) -> String {
    let family = match s.family {
        Some(IpFamily::V4) => "IPv4; ",
        Some(IpFamily::V6) => "IPv6; ",
        None => "",
    };
    let tables = match s.tables.as_slice() {
        [] => "no tables".to_string(),
        [t] => format!("table {t}"),
        ts => format!("tables {}", ts.join(", ")),
    };
    format!("{} ({family}{tables})", s.name)
}

fn service_block(s: &ServiceDump, out: &mut String) {
    let port = if s.port_name.is_empty() {
        String::new()
    } else {
        format!(":{}", s.port_name)
    };
    let family = match s.family {
        IpFamily::V4 => "",
        IpFamily::V6 => ", IPv6",
    };
    if s.name.is_empty() {
        // IPVS mode without the cluster: a Service known by its virtual
        // servers only.
        let _ = writeln!(out, "(unknown Service) ({}{family})", s.protocol);
    } else {
        let _ = writeln!(
            out,
            "{}/{}{} ({}{family})",
            s.namespace, s.name, port, s.protocol
        );
    }
    let mut row = |k: &str, v: String| {
        if !v.is_empty() {
            let _ = writeln!(out, "  {k:<22} {v}");
        }
    };
    let cip = match (&s.cluster_ip, s.port) {
        (Some(ip), Some(p)) => host_port(ip, p),
        (Some(ip), None) => ip.clone(),
        _ => String::new(),
    };
    row("cluster IP", cip);
    if let Some(scheduler) = &s.scheduler {
        row("virtual servers", s.chains.join(", "));
        row("scheduler", scheduler.clone());
    }
    row(
        "node port",
        s.node_port.map(|p| p.to_string()).unwrap_or_default(),
    );
    row("external IPs", s.external_ips.join(", "));
    row("load-balancer IPs", s.load_balancer_ips.join(", "));
    row("source ranges", s.load_balancer_source_ranges.join(", "));
    row(
        "traffic policy",
        format!(
            "external {}, internal {}",
            s.external_traffic_policy, s.internal_traffic_policy
        ),
    );
    row(
        "session affinity",
        s.affinity_timeout
            .map(|t| format!("ClientIP, {t}s"))
            .unwrap_or_default(),
    );
    row(
        "health check port",
        s.health_check_node_port
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    row(
        "without endpoints",
        s.no_endpoints.clone().unwrap_or_default(),
    );
    let no_endpoints = s.endpoints.is_empty() && s.no_endpoints.is_none();
    row(
        "endpoints",
        if no_endpoints {
            "(none)".into()
        } else {
            String::new()
        },
    );
    // `ip:port` padded as `ip:` + a 6-wide port, IPv6 in brackets; every
    // endpoint of the service, both views, in one column.
    let width = s
        .endpoints
        .iter()
        .chain(s.external_endpoints.iter().flatten())
        .map(|e| endpoint_text(&e.ip, 0).len() - 1 + 6)
        .max()
        .unwrap_or(0);
    endpoint_rows(out, "endpoints", &s.endpoints, width);
    match &s.external_endpoints {
        Some(ext) if ext.is_empty() => {
            let verdict = s.external_no_endpoints.as_deref().unwrap_or("DROP");
            let _ = writeln!(out, "  {:<22} (none: {verdict})", "external endpoints");
        }
        Some(ext) => endpoint_rows(out, "external endpoints", ext, width),
        None => {}
    }
    out.push('\n');
}

/// One row per endpoint, `label` on the first.
fn endpoint_rows(out: &mut String, label: &str, endpoints: &[EndpointDump], width: usize) {
    for (i, e) in endpoints.iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        let place = match e.local {
            Some(true) => "  local",
            Some(false) => "  remote",
            None => "",
        };
        // IPVS mode: the real server's weight and connections where the
        // chain would be; no share for schedulers without a static one.
        let about = match e.weight {
            Some(w) => {
                let mut t = format!("weight {w}");
                if let (Some(a), Some(i)) = (e.active_connections, e.inactive_connections) {
                    let _ = write!(t, ", {a} active, {i} inactive");
                }
                t
            }
            None => e.chain.clone(),
        };
        let _ = writeln!(
            out,
            "  {label:<22} {:<width$} {:>8}  {about}{place}",
            endpoint_text(&e.ip, e.port),
            match e.probability {
                None => "-".to_string(),
                Some(0.0) => "0".to_string(),
                Some(p) => fraction(p),
            },
        );
    }
}

/// An endpoint's `ip:port`; `?` for what no readable rule names.
fn endpoint_text(ip: &str, port: u16) -> String {
    match (ip.is_empty(), port) {
        (true, _) => "?:?".to_string(),
        (false, 0) if ip.contains(':') => format!("[{ip}]:?"),
        (false, 0) => format!("{ip}:?"),
        (false, p) => host_port(ip, p),
    }
}

/// `ip:port`, `[ip]:port` for IPv6.
fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Colour only on a terminal, and not with `NO_COLOR` set.
fn colour() -> bool {
    crate::fmt::stdout_colour()
}

/// `text` in SGR style `code` when `on`.
fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn table(d: &NodeDump, notes: &[String], colour: bool) -> String {
    let mut out = String::new();
    // What was read and what generation the anomalies were judged against.
    for s in &d.sources {
        let _ = writeln!(out, "{:<11} {}", "source", source_text(s));
        let _ = writeln!(out, "{:<11} {}", "generation", s.generation.summary);
    }
    for n in notes {
        let _ = writeln!(out, "{n}");
    }
    if !d.sources.is_empty() {
        out.push('\n');
    }
    for s in &d.services {
        let mut block = String::new();
        service_block(s, &mut block);
        // The service's name line in bold.
        let (head, rest) = block.split_once('\n').unwrap_or((&block, ""));
        out.push_str(&paint(head, "1", colour));
        out.push('\n');
        out.push_str(rest);
    }
    if !d.anomalies.is_empty() {
        let _ = writeln!(out, "{}", paint("anomalies:", "1", colour));
        let width = d
            .anomalies
            .iter()
            .map(|a| a.kind.as_str().len())
            .max()
            .unwrap_or(0)
            .max(15);
        for a in &d.anomalies {
            let kind = paint(&format!("{:<width$}", a.kind), "33", colour);
            let _ = writeln!(out, "  {kind} {:<30} {}", a.chain, a.message);
        }
    }
    out
}

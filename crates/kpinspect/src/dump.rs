//! `kpinspect dump`: formats [`kpinspect_core::mode::iptables::dump()`].

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use kpinspect_core::mode::iptables::{Anomaly, AnomalyKind, NodeDump, ServiceDump};
use kpinspect_core::net::IpFamily;
use kpinspect_core::proxy::ProxyState;

use crate::UsageError;
use crate::args::{DumpArgs, DumpFormat};
use crate::fmt::fraction;

pub fn run(args: DumpArgs) -> Result<ExitCode> {
    let cluster = if args.clusters.is_empty() {
        None
    } else {
        let node = args.node.resolve()?;
        let cluster = crate::load_cluster(&args.clusters)?;
        Some(ProxyState::build(&cluster, &node.config, node.family))
    };
    let mut result = NodeDump {
        services: vec![],
        anomalies: vec![],
        sources: vec![],
    };
    let sources = if args.saves.is_empty() {
        let node = crate::live::node()?;
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
    for source in &sources {
        let mut d = kpinspect_core::mode::iptables::dump(&source.rules, cluster.as_ref());
        for s in &mut d.sources {
            s.name.clone_from(&source.name);
        }
        result.services.extend(d.services);
        result.anomalies.extend(d.anomalies);
        result.sources.extend(d.sources);
    }
    if let Some(filter) = &args.service {
        let (ns, name) = filter.split_once('/').ok_or_else(|| {
            UsageError::msg(format!(
                "--service: expected NAMESPACE/NAME, got {filter:?}"
            ))
        })?;
        result
            .services
            .retain(|s| s.namespace == ns && s.name == name);
    }
    let out = match args.format {
        DumpFormat::Json => serde_json::to_string_pretty(&result)? + "\n",
        DumpFormat::Table => table(&result, colour()),
    };
    crate::write_stdout(&out)?;
    Ok(ExitCode::SUCCESS)
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
    let _ = writeln!(
        out,
        "{}/{}{} ({}{family})",
        s.namespace, s.name, port, s.protocol
    );
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
    // endpoint of the service in one column.
    let width = s
        .endpoints
        .iter()
        .map(|e| host_port(&e.ip, 0).len() - 1 + 6)
        .max()
        .unwrap_or(0);
    for (i, e) in s.endpoints.iter().enumerate() {
        let label = if i == 0 { "endpoints" } else { "" };
        let place = match e.local {
            Some(true) => "  local",
            Some(false) => "  remote",
            None => "",
        };
        let _ = writeln!(
            out,
            "  {label:<22} {:<width$} {:>8}  {}{place}",
            host_port(&e.ip, e.port),
            fraction(e.probability),
            e.chain
        );
    }
    out.push('\n');
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
    use std::io::IsTerminal as _;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in SGR style `code` when `on`.
fn paint(text: &str, code: &str, on: bool) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn table(d: &NodeDump, colour: bool) -> String {
    let mut out = String::new();
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
        for a in &d.anomalies {
            let kind = paint(&format!("{:<15}", a.kind), "33", colour);
            let _ = writeln!(out, "  {kind} {:<30} {}", a.chain, a.message);
        }
    }
    out
}

//! Graphviz DOT pictures of a service's traffic path (`dump -o dot`,
//! `trace -o dot`): pure text from the values the commands already have,
//! the same for every proxy mode.
//!
//! * A dump (any mode's `NodeDump`): per service port, the entry points →
//!   the dispatch (iptables: `KUBE-SERVICES`, `KUBE-NODEPORTS`; nftables:
//!   the `service-ips` and `service-nodeports` maps; IPVS: the ipset
//!   matches) → the service's chains (SVC / EXT / FW / SVL; nftables'
//!   `service-`, `external-`, `firewall-`, `local-`; IPVS: its virtual
//!   servers) → endpoint chains → endpoints. Edges carry the match and the
//!   probability; local endpoints are filled green, masquerading edges say
//!   so, chains with anomalies (stale, dangling, missing jumps) are red and
//!   name the anomaly.
//! * A trace: every outcome's path, chain to chain, each edge the rule that
//!   jumped, ending in the verdict with its probability and masquerade.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use kpinspect_core::mode::iptables::{AnomalyKind, EndpointDump, NodeDump, RulesMode, ServiceDump};
use kpinspect_core::trace::{Action, Hook, Trace};

use crate::fmt::fraction;

/// A graph under construction: nodes and edges each once, in the order
/// first added.
#[derive(Default)]
struct Graph {
    nodes: Vec<(String, String)>,
    node_ids: BTreeSet<String>,
    edges: Vec<String>,
    edge_set: BTreeSet<String>,
    /// Service port clusters: (label, node ids).
    clusters: Vec<(String, Vec<String>)>,
}

impl Graph {
    /// Adds node `id` with `attrs` (the first time only); in the current
    /// cluster when `clustered`.
    fn node(&mut self, id: &str, attrs: &str, clustered: bool) {
        if self.node_ids.insert(id.to_string()) {
            self.nodes.push((id.to_string(), attrs.to_string()));
            if clustered && let Some((_, ids)) = self.clusters.last_mut() {
                ids.push(id.to_string());
            }
        }
    }

    /// Marks the node named `id` red with `kind` (an anomaly of its
    /// chain); whether there was one.
    fn mark(&mut self, id: &str, kind: &str) -> bool {
        match self.nodes.iter_mut().find(|(n, _)| n == id) {
            Some((_, attrs)) => {
                *attrs = label(&format!("{id}\n({kind})"), "color=red, fontcolor=red");
                true
            }
            None => false,
        }
    }

    fn edge(&mut self, from: &str, to: &str, label: &str, extra: &str) {
        let mut attrs = format!("label={}", quote(label));
        if !extra.is_empty() {
            attrs.push_str(", ");
            attrs.push_str(extra);
        }
        let line = format!("  {} -> {} [{attrs}];", quote(from), quote(to));
        if self.edge_set.insert(line.clone()) {
            self.edges.push(line);
        }
    }

    fn render(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "digraph kpinspect {{");
        let _ = writeln!(out, "  label={};", quote(title));
        let _ = writeln!(out, "  labelloc=t;");
        let _ = writeln!(out, "  rankdir=LR;");
        let _ = writeln!(
            out,
            "  node [shape=box, fontname=\"monospace\", fontsize=10];"
        );
        let _ = writeln!(out, "  edge [fontname=\"monospace\", fontsize=9];");
        let clustered: BTreeSet<&str> = self
            .clusters
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(String::as_str))
            .collect();
        let attrs_of = |id: &str| {
            self.nodes
                .iter()
                .find(|(n, _)| n == id)
                .map(|(_, a)| a.as_str())
                .unwrap_or("")
        };
        for (id, attrs) in &self.nodes {
            if !clustered.contains(id.as_str()) {
                let _ = writeln!(out, "  {} [{attrs}];", quote(id));
            }
        }
        for (i, (label, ids)) in self.clusters.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{i} {{");
            let _ = writeln!(out, "    label={};", quote(label));
            let _ = writeln!(out, "    style=rounded;");
            for id in ids {
                let _ = writeln!(out, "    {} [{}];", quote(id), attrs_of(id));
            }
            let _ = writeln!(out, "  }}");
        }
        for e in &self.edges {
            let _ = writeln!(out, "{e}");
        }
        out.push_str("}\n");
        out
    }
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `label=...` plus `more`.
fn label(text: &str, more: &str) -> String {
    if more.is_empty() {
        format!("label={}", quote(text))
    } else {
        format!("label={}, {more}", quote(text))
    }
}

/// The names a mode gives a service port's objects.
struct Names {
    /// The dispatch on the service address.
    services: &'static str,
    /// The dispatch on node ports.
    node_ports: &'static str,
    /// Where packets enter (before `services`).
    entry: &'static str,
    svc: &'static str,
    ext: &'static [&'static str],
    fw: &'static str,
    svl: &'static str,
}

const IPTABLES: Names = Names {
    services: "nat KUBE-SERVICES",
    node_ports: "nat KUBE-NODEPORTS",
    entry: "nat PREROUTING / OUTPUT",
    svc: "KUBE-SVC-",
    ext: &["KUBE-EXT-", "KUBE-XLB-"],
    fw: "KUBE-FW-",
    svl: "KUBE-SVL-",
};

const NFTABLES: Names = Names {
    services: "map service-ips",
    node_ports: "map service-nodeports",
    entry: "chain nat-prerouting / nat-output (jump services)",
    svc: "service-",
    ext: &["external-"],
    fw: "firewall-",
    svl: "local-",
};

/// A `dump`'s service ports as one graph.
pub fn dump(d: &NodeDump) -> String {
    let mut g = Graph::default();
    let anomalous: Vec<(&str, String)> = d
        .anomalies
        .iter()
        .filter(|a| !a.chain.is_empty())
        .map(|a| (a.chain.as_str(), kind_name(&a.kind)))
        .collect();
    let mut drawn: BTreeSet<String> = BTreeSet::new();
    let nft_read = d
        .sources
        .iter()
        .any(|src| src.generation.mode == RulesMode::Nftables);
    for (i, s) in d.services.iter().enumerate() {
        g.clusters.push((service_title(s), Vec::new()));
        if s.scheduler.is_some() {
            ipvs_service(&mut g, i, s);
        } else {
            // A service port's chains say its mode; one without chains
            // (no endpoints) is the nftables listing's when one was read.
            let iptables = s.chains.iter().any(|c| c.starts_with("KUBE-"));
            let names = if !iptables && (nft_read || !s.chains.is_empty()) {
                &NFTABLES
            } else {
                &IPTABLES
            };
            chain_service(&mut g, i, s, names, &anomalous);
        }
        drawn.extend(s.chains.iter().cloned());
    }
    // Anomalies of chains no service port draws: stale or dangling chains,
    // missing jumps, other modes' leftovers.
    for a in &d.anomalies {
        if a.chain.is_empty() || drawn.contains(&a.chain) {
            continue;
        }
        // A dispatch chain every service port goes through.
        if g.mark(&format!("nat {}", a.chain), &kind_name(&a.kind)) {
            continue;
        }
        let id = format!("anomaly {}", a.chain);
        g.node(
            &id,
            &label(
                &format!("{}\n({})", a.chain, kind_name(&a.kind)),
                "color=red, fontcolor=red, style=dashed",
            ),
            false,
        );
    }
    let title = match d.sources.as_slice() {
        [] => "kpinspect dump".to_string(),
        sources => {
            let mut names: Vec<&str> = Vec::new();
            for src in sources {
                if !names.contains(&src.name.as_str()) {
                    names.push(&src.name);
                }
            }
            format!("kpinspect dump: {}", names.join(", "))
        }
    };
    g.render(&title)
}

fn kind_name(kind: &AnomalyKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn service_title(s: &ServiceDump) -> String {
    let port = if s.port_name.is_empty() {
        String::new()
    } else {
        format!(":{}", s.port_name)
    };
    let ns = if s.namespace.is_empty() && s.name.is_empty() {
        "(unnamed)".to_string()
    } else {
        format!("{}/{}", s.namespace, s.name)
    };
    format!("{ns}{port} ({})", s.protocol)
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// An endpoint's node: its address, filled green when local.
fn endpoint_node(g: &mut Graph, svc: usize, e: &EndpointDump) -> String {
    let id = format!("svc{svc} endpoint {}", host_port(&e.ip, e.port));
    let (text, more) = match e.local {
        Some(true) => (
            format!("{}\n(local)", host_port(&e.ip, e.port)),
            "shape=ellipse, style=filled, fillcolor=palegreen",
        ),
        _ => (host_port(&e.ip, e.port), "shape=ellipse"),
    };
    g.node(&id, &label(&text, more), true);
    id
}

fn probability(p: Option<f64>) -> String {
    match p {
        Some(p) => format!("p={}", fraction(p)),
        None => "p=?".into(),
    }
}

/// A chain's node, red with the anomaly's kind when it has one.
fn chain_node(g: &mut Graph, chain: &str, anomalous: &[(&str, String)]) -> String {
    let kinds: Vec<&str> = anomalous
        .iter()
        .filter(|(c, _)| *c == chain)
        .map(|(_, k)| k.as_str())
        .collect();
    if kinds.is_empty() {
        g.node(chain, &label(chain, ""), true);
    } else {
        g.node(
            chain,
            &label(
                &format!("{chain}\n({})", kinds.join(", ")),
                "color=red, fontcolor=red",
            ),
            true,
        );
    }
    chain.to_string()
}

/// iptables and nftables mode: the dispatch, the service's chains, the
/// endpoint chains, the endpoints.
fn chain_service(
    g: &mut Graph,
    i: usize,
    s: &ServiceDump,
    n: &Names,
    anomalous: &[(&str, String)],
) {
    let find = |prefixes: &[&str]| {
        s.chains
            .iter()
            .find(|c| prefixes.iter().any(|p| c.starts_with(p)))
            .cloned()
    };
    let svc = find(&[n.svc]);
    let ext = find(n.ext);
    let fw = find(&[n.fw]);
    let svl = find(&[n.svl]);
    g.node(n.entry, &label(n.entry, "shape=oval"), false);
    g.node(n.services, &label(n.services, ""), false);
    g.edge(n.entry, n.services, "", "");
    let proto = &s.protocol;
    let port = s.port.unwrap_or(0);
    // The internal path.
    let internal = match &svc {
        Some(c) => Some(chain_node(g, c, anomalous)),
        None => s.no_endpoints.as_ref().map(|what| {
            let id = format!("svc{i} no endpoints");
            g.node(
                &id,
                &label(&format!("no endpoints: {what}"), "shape=octagon, color=red"),
                true,
            );
            id
        }),
    };
    if let (Some(ip), Some(to)) = (&s.cluster_ip, &internal) {
        g.edge(
            n.services,
            to,
            &format!("dst {}/{proto}", host_port(ip, port)),
            "",
        );
    }
    // The external path: firewall, then the external chain.
    let external = ext.as_ref().map(|c| chain_node(g, c, anomalous));
    let front = fw.as_ref().map(|c| chain_node(g, c, anomalous));
    if let (Some(fw), Some(ext)) = (&front, &external) {
        let why = if s.load_balancer_source_ranges.is_empty() {
            "allowed".to_string()
        } else {
            format!("src in {}", s.load_balancer_source_ranges.join(", "))
        };
        g.edge(fw, ext, &why, "");
    }
    let to_external = external.clone().or_else(|| internal.clone());
    for ip in &s.external_ips {
        if let Some(to) = &to_external {
            g.edge(
                n.services,
                to,
                &format!("external IP {}/{proto}", host_port(ip, port)),
                "",
            );
        }
    }
    for ip in &s.load_balancer_ips {
        if let Some(to) = front.as_ref().or(to_external.as_ref()) {
            g.edge(
                n.services,
                to,
                &format!("load balancer {}/{proto}", host_port(ip, port)),
                "",
            );
        }
    }
    if let (Some(np), Some(to)) = (s.node_port, &to_external) {
        g.node(n.node_ports, &label(n.node_ports, ""), false);
        g.edge(n.services, n.node_ports, "dst-type LOCAL", "style=dashed");
        g.edge(n.node_ports, to, &format!("dport {np}/{proto}"), "");
    }
    if let Some(ext) = &external {
        let local = s.external_traffic_policy == "Local";
        match (&svl, &internal, local) {
            (Some(l), _, true) => {
                let l = chain_node(g, l, anomalous);
                g.edge(ext, &l, "externalTrafficPolicy Local", "");
            }
            (_, Some(int), false) => {
                g.edge(ext, int, "mark for masquerade", "color=orange");
            }
            _ => {}
        }
        if local && let Some(int) = &internal {
            g.edge(ext, int, "from a pod (clusterCIDR)", "style=dashed");
        }
    }
    // Endpoints.
    if let Some(int) = &internal {
        for e in &s.endpoints {
            let ep = endpoint_node(g, i, e);
            if e.chain.is_empty() {
                g.edge(int, &ep, &probability(e.probability), "");
            } else {
                let c = chain_node(g, &e.chain, anomalous);
                g.edge(int, &c, &probability(e.probability), "");
                g.edge(&c, &ep, "DNAT", "");
            }
        }
    }
    if let (Some(l), Some(eps)) = (&svl, &s.external_endpoints) {
        for e in eps {
            let ep = endpoint_node(g, i, e);
            if e.chain.is_empty() {
                g.edge(l, &ep, &probability(e.probability), "");
            } else {
                let c = chain_node(g, &e.chain, anomalous);
                g.edge(l, &c, &probability(e.probability), "");
                g.edge(&c, &ep, "DNAT", "");
            }
        }
        if eps.is_empty()
            && let Some(what) = &s.external_no_endpoints
        {
            let id = format!("svc{i} no local endpoints");
            g.node(
                &id,
                &label(
                    &format!("no local endpoints: {what}"),
                    "shape=octagon, color=red",
                ),
                true,
            );
            g.edge(l, &id, "", "");
        }
    }
}

/// IPVS mode: ipset matches → virtual servers → real servers.
fn ipvs_service(g: &mut Graph, i: usize, s: &ServiceDump) {
    let entry = "nat KUBE-SERVICES (ipset matches)";
    g.node(entry, &label(entry, ""), false);
    let proto = &s.protocol;
    let port = s.port.unwrap_or(0);
    let scheduler = s.scheduler.clone().unwrap_or_default();
    let mut servers = Vec::new();
    let mut vs = |g: &mut Graph, addr: String, set: &str| {
        let id = format!("svc{i} virtual server {addr}");
        g.node(
            &id,
            &label(
                &format!("virtual server {addr}/{proto}\n{scheduler}"),
                "shape=box3d",
            ),
            true,
        );
        g.edge(entry, &id, &format!("match-set {set}"), "");
        servers.push(id);
    };
    if let Some(ip) = &s.cluster_ip {
        vs(g, host_port(ip, port), "KUBE-CLUSTER-IP dst,dst");
    }
    for ip in &s.external_ips {
        vs(g, host_port(ip, port), "KUBE-EXTERNAL-IP dst,dst");
    }
    for ip in &s.load_balancer_ips {
        vs(g, host_port(ip, port), "KUBE-LOAD-BALANCER dst,dst");
    }
    if let Some(np) = s.node_port {
        let set = format!("KUBE-NODE-PORT-{} dst", proto.to_uppercase());
        vs(g, format!("NODE-IP:{np}"), &set);
    }
    // Without the ipsets (and --cluster) the dump does not know which kind
    // of address a virtual server is on: its name is all there is.
    if servers.is_empty() {
        for name in &s.chains {
            let id = format!("svc{i} virtual server {name}");
            g.node(
                &id,
                &label(
                    &format!("virtual server {name}\n{scheduler}"),
                    "shape=box3d",
                ),
                true,
            );
            g.edge(entry, &id, "(no ipset given)", "style=dashed");
            servers.push(id);
        }
    }
    for v in &servers {
        for e in &s.endpoints {
            let ep = endpoint_node(g, i, e);
            let w = e
                .weight
                .map(|w| format!("weight {w}, "))
                .unwrap_or_default();
            g.edge(v, &ep, &format!("{w}{}", probability(e.probability)), "");
        }
        if s.endpoints.is_empty() {
            let id = format!("svc{i} no real servers");
            g.node(
                &id,
                &label("no real servers", "shape=octagon, color=red"),
                true,
            );
            g.edge(v, &id, "", "");
        }
    }
}

/// A trace's outcomes as one graph: the packet, the chains it goes
/// through (each edge the rule that sent it on), the verdicts.
pub fn trace(t: &Trace, header: &str) -> String {
    let mut g = Graph::default();
    let packet = "packet";
    g.node(packet, &label(header, "shape=oval"), false);
    let hook = match t.hook {
        Hook::Prerouting => "PREROUTING",
        Hook::Output => "OUTPUT",
    };
    for (i, o) in t.outcomes.iter().enumerate() {
        let mut verdict = match o.action {
            Action::Dnat => "DNAT".to_string(),
            Action::Accept => "ACCEPT".to_string(),
            Action::Drop => "DROP".to_string(),
            Action::Reject => "REJECT".to_string(),
        };
        if let Some(to) = o.to {
            let _ = write!(verdict, " to {to}");
        }
        let mut facts = vec![format!("p={}", fraction(o.probability))];
        if o.masquerade {
            facts.push("masqueraded".into());
        }
        if matches!(o.action, Action::Dnat | Action::Accept) {
            facts.push(if o.local { "local" } else { "forwarded" }.into());
        }
        let text = format!("{}. {verdict}\n{}", i + 1, facts.join(", "));
        let colour = match o.action {
            Action::Drop | Action::Reject => "color=red",
            _ if o.masquerade => "color=orange",
            _ => "color=darkgreen",
        };
        let end = format!("outcome {}", i + 1);
        g.node(
            &end,
            &label(&text, &format!("shape=ellipse, {colour}")),
            false,
        );
        let mut prev = packet.to_string();
        let mut why = hook.to_string();
        // Consecutive rules of one chain make one edge out of it.
        let mut k = 0;
        while k < o.path.len() {
            let step = &o.path[k];
            let id = format!("{} {}", step.table, step.chain);
            g.node(&id, &label(&id, ""), false);
            g.edge(&prev, &id, &why, "");
            let mut rules = Vec::new();
            while k < o.path.len() && o.path[k].table == step.table && o.path[k].chain == step.chain
            {
                let s = &o.path[k];
                rules.push(match s.rule {
                    Some(n) => format!("#{n}: {}", short_rule(&s.text)),
                    None => s.text.clone(),
                });
                k += 1;
            }
            prev = id;
            why = rules.join("\n");
        }
        g.edge(&prev, &end, &why, "");
    }
    g.render(header)
}

/// A rule as an edge label: without its `-A CHAIN` and comment.
fn short_rule(text: &str) -> String {
    let mut words = text.split_whitespace().peekable();
    let mut out: Vec<String> = Vec::new();
    while let Some(w) = words.next() {
        match w {
            "-A" | "-I" => {
                words.next();
            }
            "-m" if words.peek() == Some(&"comment") => {
                words.next();
                // --comment "…" (quoted, possibly several words).
                if words.next() == Some("--comment")
                    && let Some(first) = words.next()
                    && first.starts_with('"')
                    && !(first.len() > 1 && first.ends_with('"'))
                {
                    for w in words.by_ref() {
                        if w.ends_with('"') {
                            break;
                        }
                    }
                }
            }
            w => out.push(w.to_string()),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_escape_what_dot_needs() {
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn rules_lose_their_chain_and_comment() {
        assert_eq!(
            short_rule(
                "-A KUBE-SVC-X -m comment --comment \"ns/web:http -> 10.0.0.1:80\" -m statistic --mode random --probability 0.5 -j KUBE-SEP-A"
            ),
            "-m statistic --mode random --probability 0.5 -j KUBE-SEP-A"
        );
        assert_eq!(
            short_rule("-A KUBE-SERVICES -m comment --comment x -d 10.0.0.1/32 -j KUBE-SVC-X"),
            "-d 10.0.0.1/32 -j KUBE-SVC-X"
        );
    }

    #[test]
    fn a_dump_draws_the_path_to_every_endpoint() {
        let save = include_str!("../../../fixtures/iptables-save/example.nft.txt");
        let rs = kpinspect_core::netfilter::Ruleset::parse(save).expect("save");
        let d = kpinspect_core::mode::iptables::dump(&rs, None);
        let text = dump(&d);
        assert!(text.starts_with("digraph kpinspect {\n"), "{text}");
        assert!(text.ends_with("}\n"));
        for s in &d.services {
            for e in &s.endpoints {
                assert!(
                    text.contains(&format!("\"{}:{}", e.ip, e.port)),
                    "{}: {text}",
                    e.ip
                );
                assert!(text.contains(&format!("-> \"{}\"", e.chain)), "{text}");
            }
        }
        // web-svc-cip's three endpoints at 1/3 each, from its SVC chain.
        assert_eq!(text.matches("label=\"p=1/3\"").count(), 3, "{text}");
        assert!(text.contains("dst 10.105.121.211:80/tcp"), "{text}");
        // Balanced braces: every cluster closed.
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }
}

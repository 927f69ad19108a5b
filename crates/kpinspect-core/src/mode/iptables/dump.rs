//! What a node's iptables rules do, per Service: `kpinspect dump` as a
//! library function over a parsed [`Ruleset`].
//!
//! Service identity comes from kube-proxy's rule comments (`"ns/name:port
//! cluster IP"` and friends); endpoints and their effective probabilities
//! from the dispatch chain's `statistic` rules (so three endpoints show as
//! 1/3 each, not 0.333, 0.5 and 1). Anomalies — jumps to missing chains,
//! kube-proxy chains nothing reaches, chains of another mode or generation,
//! duplicate rules — are listed with the chain they concern.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::names::{
    endpoint_chain, is_old_service_chain, service_chain_suffix, service_port_suffix,
};
use crate::mode::ipvs;
use crate::model::Protocol;
use crate::net::{IpFamily, split_host_port};
use crate::netfilter::{BUILTIN_CHAINS, Rule, Ruleset, Table, is_target, render_rule};
use crate::proxy::ProxyState;

/// One endpoint of a service port as programmed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDump {
    /// Endpoint IP.
    pub ip: String,
    /// Endpoint port.
    pub port: u16,
    /// Chance that a new connection from a pod picks it (Cluster or Local
    /// set of the cluster IP), rounded to 6 decimals.
    pub probability: f64,
    /// Its `KUBE-SEP-` chain.
    pub chain: String,
    /// Whether it runs on this node, when the cluster is known (`--cluster`).
    pub local: Option<bool>,
}

/// One service port as programmed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceDump {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name ("" for an unnamed port).
    pub port_name: String,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// The IP family of its rules (`ipv4`, `ipv6`).
    pub family: IpFamily,
    /// The cluster IP.
    pub cluster_ip: Option<String>,
    /// The service port.
    pub port: Option<u16>,
    /// The node port.
    pub node_port: Option<u16>,
    /// External IPs.
    pub external_ips: Vec<String>,
    /// Load-balancer IPs.
    pub load_balancer_ips: Vec<String>,
    /// `Local` when external traffic goes to local endpoints only.
    pub external_traffic_policy: String,
    /// `Local` when the cluster IP goes to local endpoints only.
    pub internal_traffic_policy: String,
    /// ClientIP affinity timeout in seconds.
    pub affinity_timeout: Option<u32>,
    /// The health-check node port (externalTrafficPolicy Local).
    pub health_check_node_port: Option<u16>,
    /// Source ranges allowed to the load-balancer IPs.
    pub load_balancer_source_ranges: Vec<String>,
    /// Endpoints of the cluster IP's chain.
    pub endpoints: Vec<EndpointDump>,
    /// What happens to cluster-IP traffic without endpoints: `REJECT`
    /// (none at all) or `DROP` (no local ones).
    pub no_endpoints: Option<String>,
    /// The service port's chains.
    pub chains: Vec<String>,
}

/// What kind of thing is wrong or stale (ordered by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// kube-proxy chains in both iptables backends (live nodes only).
    BothBackends,
    /// A chain holds the same rule twice.
    DuplicateRule,
    /// A rule jumps to a chain that does not exist.
    MissingChain,
    /// A built-in chain does not reach kube-proxy's chain.
    MissingJump,
    /// A chain only older kube-proxy or kubelet versions create.
    OldGeneration,
    /// Chains of another proxy mode next to this mode's.
    OtherMode,
    /// A kube-proxy chain nothing reaches.
    StaleChain,
}

impl AnomalyKind {
    /// The kind as printed and serialised (`missing-chain`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::BothBackends => "both-backends",
            AnomalyKind::DuplicateRule => "duplicate-rule",
            AnomalyKind::MissingChain => "missing-chain",
            AnomalyKind::MissingJump => "missing-jump",
            AnomalyKind::OldGeneration => "old-generation",
            AnomalyKind::OtherMode => "other-mode",
            AnomalyKind::StaleChain => "stale-chain",
        }
    }
}

impl std::fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Something wrong or stale on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Anomaly {
    /// What kind of anomaly.
    pub kind: AnomalyKind,
    /// The chain concerned.
    pub chain: String,
    /// Explanation.
    pub message: String,
}

/// The whole dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDump {
    /// Service ports, sorted by namespace, name, port name, protocol.
    pub services: Vec<ServiceDump>,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
}

/// (table, built-in chain, kube-proxy chain) of the jumps whose absence the
/// dump reports: the ones every kube-proxy generation installs (newer jumps,
/// like those to `KUBE-PROXY-FIREWALL`, are missing on older nodes by
/// design). A subset of [`JUMP_RULES`](super::JUMP_RULES).
const ENTRY_CHAINS: [(&str, &str, &str); 7] = [
    ("nat", "PREROUTING", "KUBE-SERVICES"),
    ("nat", "OUTPUT", "KUBE-SERVICES"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING"),
    ("filter", "FORWARD", "KUBE-FORWARD"),
    ("filter", "INPUT", "KUBE-NODEPORTS"),
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "FORWARD", "KUBE-SERVICES"),
];

/// Dumps `rs` (an `iptables-save` of the nat and filter tables). `cluster`,
/// when given, names chains whose comments are missing by recomputing
/// kube-proxy's hashes.
///
/// ```
/// let save = include_str!("../../../../../fixtures/iptables-save/affinity.nft.txt");
/// let rs = kpinspect_core::netfilter::Ruleset::parse(save).unwrap();
/// let dump = kpinspect_core::mode::iptables::dump(&rs, None);
/// let svc = &dump.services[0];
/// assert_eq!((svc.namespace.as_str(), svc.name.as_str(), svc.port_name.as_str()), ("ns1", "svc1", "p80"));
/// assert_eq!(svc.affinity_timeout, Some(300));
/// assert!(svc.endpoints.iter().all(|e| (e.probability - 1.0 / 3.0).abs() < 1e-6));
/// ```
pub fn dump(rs: &Ruleset, cluster: Option<&ProxyState>) -> NodeDump {
    let empty = Table {
        name: String::new(),
        chains: vec![],
        rules: vec![],
        deleted: vec![],
    };
    let nat = rs.table("nat").unwrap_or(&empty);
    let filter = rs.table("filter").unwrap_or(&empty);
    let nat_chains = chain_rules(nat);
    let names = cluster.map(hash_names).unwrap_or_default();

    let mut services: BTreeMap<(String, String), ServiceDump> = BTreeMap::new();
    let mut internal_chain: HashMap<(String, String), String> = HashMap::new();

    for r in nat_chains.get("KUBE-SERVICES").into_iter().flatten() {
        let (Some(comment), Some(target)) = (r.comment(), r.target_name()) else {
            continue;
        };
        let proto = r
            .base("-p")
            .map(|(_, p)| p.to_lowercase())
            .unwrap_or_default();
        let dst = r.base("-d").map(|(_, d)| strip_host_prefix(d));
        let dport = dport(r);
        if let Some(s) = comment.strip_suffix(" cluster IP") {
            if target == "KUBE-MARK-MASQ" {
                continue; // pre-1.21 masquerade rule
            }
            let key = (s.to_string(), proto.clone());
            let svc = entry(&mut services, s, &proto);
            svc.cluster_ip = dst;
            svc.port = dport;
            svc.internal_traffic_policy = if target.starts_with("KUBE-SVL-") {
                "Local"
            } else {
                "Cluster"
            }
            .into();
            internal_chain.insert(key, target.to_string());
        } else if let Some(s) = comment.strip_suffix(" external IP") {
            let svc = entry(&mut services, s, &proto);
            svc.external_ips.extend(dst);
            svc.port = svc.port.or(dport);
        } else if let Some(s) = comment.strip_suffix(" loadbalancer IP") {
            let svc = entry(&mut services, s, &proto);
            svc.load_balancer_ips.extend(dst);
            svc.port = svc.port.or(dport);
        }
    }
    for r in nat_chains.get("KUBE-NODEPORTS").into_iter().flatten() {
        let (Some(s), Some(np)) = (r.comment(), dport(r)) else {
            continue;
        };
        let proto = r
            .base("-p")
            .map(|(_, p)| p.to_lowercase())
            .unwrap_or_default();
        entry(&mut services, s, &proto).node_port = Some(np);
    }
    let filter_chains = chain_rules(filter);
    for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS"] {
        for r in filter_chains.get(chain).into_iter().flatten() {
            let Some(comment) = r.comment() else { continue };
            let proto = r
                .base("-p")
                .map(|(_, p)| p.to_lowercase())
                .unwrap_or_default();
            if let Some(s) = comment.strip_suffix(" health check node port") {
                // The health check is per Service; attach it to every port of it.
                for svc in services
                    .values_mut()
                    .filter(|v| service_string(v).starts_with(s_service(s)))
                {
                    svc.health_check_node_port = dport(r);
                }
                continue;
            }
            let (s, verdict) = if let Some(s) = comment.strip_suffix(" has no endpoints") {
                (s, "REJECT")
            } else if let Some(s) = comment.strip_suffix(" has no local endpoints") {
                (s, "DROP")
            } else {
                continue;
            };
            let svc = entry(&mut services, s, &proto);
            if chain == "KUBE-SERVICES" {
                svc.no_endpoints = Some(verdict.into());
                svc.cluster_ip = r.base("-d").map(|(_, d)| strip_host_prefix(d));
                svc.port = dport(r);
                if verdict == "DROP" {
                    svc.internal_traffic_policy = "Local".into();
                }
            } else {
                if verdict == "DROP" {
                    svc.external_traffic_policy = "Local".into();
                }
                if r.find_match("addrtype").is_some() {
                    svc.node_port = svc.node_port.or(dport(r));
                } else if let Some(d) = r.base("-d").map(|(_, d)| strip_host_prefix(d)) {
                    let is_lb = svc.load_balancer_ips.contains(&d) || svc.external_ips.contains(&d);
                    if !is_lb {
                        svc.external_ips.push(d);
                    }
                }
            }
        }
    }

    for (key, svc) in services.iter_mut() {
        let suffix = chain_suffix(internal_chain.get(key).map(String::as_str))
            .or_else(|| protocol(&svc.protocol).map(|p| service_port_suffix(&port_name(svc, p))));
        if let Some(suffix) = &suffix {
            for prefix in [
                "KUBE-SVC-",
                "KUBE-SVL-",
                "KUBE-EXT-",
                "KUBE-FW-",
                "KUBE-XLB-",
            ] {
                let c = format!("{prefix}{suffix}");
                if nat_chains.contains_key(c.as_str()) {
                    svc.chains.push(c);
                }
            }
            let ext = format!("KUBE-EXT-{suffix}");
            for r in nat_chains.get(ext.as_str()).into_iter().flatten() {
                let c = r.comment().unwrap_or("");
                if c.starts_with("masquerade LOCAL traffic") {
                    svc.external_traffic_policy = "Local".into();
                }
            }
            let fw = format!("KUBE-FW-{suffix}");
            for r in nat_chains.get(fw.as_str()).into_iter().flatten() {
                if let (Some((false, src)), Some(t)) = (r.base("-s"), r.target_name())
                    && t.starts_with("KUBE-EXT-")
                    && !svc.load_balancer_ips.contains(&strip_host_prefix(src))
                {
                    svc.load_balancer_source_ranges.push(src.to_string());
                }
            }
        }
        let dispatch = internal_chain
            .get(key)
            .cloned()
            .or_else(|| suffix.as_ref().map(|s| format!("KUBE-SVC-{s}")));
        if let Some(chain) = dispatch {
            let (eps, affinity) = endpoints(&nat_chains, &chain);
            svc.endpoints = eps;
            svc.affinity_timeout = affinity;
        }
        for e in &svc.endpoints {
            svc.chains.push(e.chain.clone());
        }
    }

    let mut anomalies = Vec::new();
    for table in [filter, nat] {
        anomalies.extend(table_anomalies(table, &names));
    }
    let mut services: Vec<ServiceDump> = services.into_values().collect();
    let family = rs.family().unwrap_or(IpFamily::V4);
    for s in &mut services {
        s.family = match &s.cluster_ip {
            Some(ip) if ip.contains(':') => IpFamily::V6,
            Some(_) => IpFamily::V4,
            None => family,
        };
    }
    services.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, &a.protocol).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            &b.protocol,
        ))
    });
    if let Some(state) = cluster {
        mark_local_endpoints(&mut services, state);
    }
    NodeDump {
        services,
        anomalies,
    }
}

/// Fills in each endpoint's `local` from the cluster's view.
fn mark_local_endpoints(services: &mut [ServiceDump], state: &ProxyState) {
    for s in services {
        let Some(entry) = state.ports.iter().find(|e| {
            let n = &e.info.name;
            n.namespace == s.namespace
                && n.name == s.name
                && n.port == s.port_name
                && n.protocol.as_str() == s.protocol
        }) else {
            continue;
        };
        for e in &mut s.endpoints {
            e.local = entry
                .endpoints
                .iter()
                .find(|ep| ep.port == e.port && ep.ip.to_string() == e.ip)
                .map(|ep| ep.local);
        }
    }
}

fn entry<'a>(
    services: &'a mut BTreeMap<(String, String), ServiceDump>,
    s: &str,
    proto: &str,
) -> &'a mut ServiceDump {
    services
        .entry((s.to_string(), proto.to_string()))
        .or_insert_with(|| new_service(s, proto))
}

fn chain_rules(table: &Table) -> HashMap<&str, Vec<&Rule>> {
    let mut out: HashMap<&str, Vec<&Rule>> = HashMap::new();
    for c in &table.chains {
        out.entry(c.name.as_str()).or_default();
    }
    for r in &table.rules {
        out.entry(r.chain.as_str()).or_default().push(r);
    }
    out
}

fn new_service(s: &str, proto: &str) -> ServiceDump {
    let (ns_name, port_name) = match s.split_once(':') {
        Some((a, b)) => (a, b),
        None => (s, ""),
    };
    let (namespace, name) = ns_name.split_once('/').unwrap_or(("", ns_name));
    ServiceDump {
        namespace: namespace.into(),
        name: name.into(),
        port_name: port_name.into(),
        protocol: proto.into(),
        family: IpFamily::V4,
        cluster_ip: None,
        port: None,
        node_port: None,
        external_ips: vec![],
        load_balancer_ips: vec![],
        external_traffic_policy: "Cluster".into(),
        internal_traffic_policy: "Cluster".into(),
        affinity_timeout: None,
        health_check_node_port: None,
        load_balancer_source_ranges: vec![],
        endpoints: vec![],
        no_endpoints: None,
        chains: vec![],
    }
}

fn service_string(s: &ServiceDump) -> String {
    format!("{}/{}", s.namespace, s.name)
}

/// `ns/name` of a service-port string.
fn s_service(s: &str) -> &str {
    s.split(':').next().unwrap_or(s)
}

fn protocol(p: &str) -> Option<Protocol> {
    match p {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        "sctp" => Some(Protocol::Sctp),
        _ => None,
    }
}

fn port_name(s: &ServiceDump, protocol: Protocol) -> crate::proxy::ServicePortName {
    crate::proxy::ServicePortName {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        port: s.port_name.clone(),
        protocol,
    }
}

fn chain_suffix(chain: Option<&str>) -> Option<String> {
    service_chain_suffix(chain?).map(String::from)
}

fn strip_host_prefix(addr: &str) -> String {
    addr.strip_suffix("/32")
        .or_else(|| addr.strip_suffix("/128"))
        .unwrap_or(addr)
        .to_string()
}

fn dport(r: &Rule) -> Option<u16> {
    r.matches
        .iter()
        .find_map(|m| m.value("--dport").or_else(|| m.value("--destination-port")))
        .and_then(|p| p.parse().ok())
}

/// Endpoints reached from dispatch chain `chain`, with effective
/// probabilities, and the affinity timeout if `recent` rules are present.
fn endpoints(chains: &HashMap<&str, Vec<&Rule>>, chain: &str) -> (Vec<EndpointDump>, Option<u32>) {
    let mut out = Vec::new();
    let mut affinity = None;
    let mut remaining = 1.0f64;
    for r in chains.get(chain).into_iter().flatten() {
        let Some(target) = r.target_name() else {
            continue;
        };
        if !target.starts_with("KUBE-SEP-") {
            continue;
        }
        if let Some(m) = r.find_match("recent")
            && m.has("--rcheck")
        {
            affinity = m.value("--seconds").and_then(|s| s.parse().ok());
            continue;
        }
        if remaining <= 0.0 {
            break; // after an unconditional jump nothing further is reached
        }
        let p = r.probability().unwrap_or(1.0);
        let effective = remaining * p;
        remaining -= effective;
        let Some((ip, port)) = chains.get(target).into_iter().flatten().find_map(|sep| {
            let dest = sep
                .target
                .as_ref()
                .filter(|t| t.name == "DNAT")?
                .value("--to-destination")?;
            split_host_port(dest).map(|(h, p)| (h.to_string(), p))
        }) else {
            continue;
        };
        out.push(EndpointDump {
            ip,
            port,
            probability: (effective * 1e6).round() / 1e6,
            chain: target.to_string(),
            local: None,
        });
    }
    (out, affinity)
}

/// Chain-name suffix → service-port string, from the cluster.
fn hash_names(state: &ProxyState) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for p in &state.ports {
        let s = p.info.name.to_kube_string();
        out.insert(service_port_suffix(&p.info.name), s.clone());
        for e in &p.endpoints {
            let chain = endpoint_chain(&p.info.name, &e.endpoint);
            out.insert(
                chain.trim_start_matches("KUBE-SEP-").to_string(),
                format!("{s} -> {}", e.endpoint),
            );
        }
    }
    out
}

fn table_anomalies(table: &Table, names: &HashMap<String, String>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let declared: BTreeSet<&str> = table.chains.iter().map(|c| c.name.as_str()).collect();
    let rules = chain_rules(table);
    // Jumps to missing chains.
    for r in &table.rules {
        // Other unknown names may be extension targets (CT, NFLOG, ...);
        // kube-proxy's own chains all start with KUBE-.
        if let Some(t) = r.target_name()
            && !is_target(t)
            && !declared.contains(t)
            && t.starts_with("KUBE-")
        {
            out.push(Anomaly {
                kind: AnomalyKind::MissingChain,
                chain: t.into(),
                message: format!(
                    "{} table: rule in {} jumps to {t}, which does not exist",
                    table.name, r.chain
                ),
            });
        }
    }
    // Reachability from the built-in chains. kube-proxy's top-level chains
    // count as reached even when the jumps into them are missing (reported
    // as `missing-jump` instead).
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut todo: Vec<&str> = BUILTIN_CHAINS
        .iter()
        .copied()
        .chain(ENTRY_CHAINS.iter().map(|(_, _, c)| *c))
        .filter(|c| declared.contains(c))
        .collect();
    while let Some(c) = todo.pop() {
        if !reached.insert(c) {
            continue;
        }
        for r in rules.get(c).into_iter().flatten() {
            if let Some(t) = r.target_name()
                && declared.contains(t)
            {
                todo.push(t);
            }
        }
    }
    let has_builtins = BUILTIN_CHAINS.iter().any(|c| declared.contains(c));
    for (tname, from, to) in ENTRY_CHAINS {
        if table.name != tname || !declared.contains(to) || !declared.contains(from) {
            continue;
        }
        let jumps = rules
            .get(from)
            .into_iter()
            .flatten()
            .any(|r| r.target_name() == Some(to));
        if !jumps {
            out.push(Anomaly {
                kind: AnomalyKind::MissingJump,
                chain: to.to_string(),
                message: format!("{} table: {from} does not jump to {to}, so kube-proxy's rules there are never used", table.name),
            });
        }
    }
    for c in &table.chains {
        let name = c.name.as_str();
        let service_chain = service_chain_suffix(name).is_some();
        if is_old_service_chain(name) || name == "KUBE-MARK-DROP" {
            out.push(Anomaly {
                kind: AnomalyKind::OldGeneration,
                chain: name.into(),
                message: format!(
                    "{} table: {name} is only created by kube-proxy/kubelet older than 1.24/1.28",
                    table.name
                ),
            });
        }
        if has_builtins && service_chain && !reached.contains(name) {
            let who = service_chain_suffix(name)
                .and_then(|s| names.get(s))
                .map(|s| format!(" (was {s})"))
                .unwrap_or_default();
            out.push(Anomaly {
                kind: AnomalyKind::StaleChain,
                chain: name.into(),
                message: format!(
                    "{} table: nothing reaches {name}{who}; kube-proxy left it behind",
                    table.name
                ),
            });
        }
    }
    // Both modes' chains in one table.
    let ipvs: Vec<&str> = ipvs::CHAINS
        .iter()
        .filter(|(t, c)| *t == table.name && !super::PROFILE.owns_chain(t, c))
        .map(|(_, c)| *c)
        .filter(|c| declared.contains(c))
        .collect();
    let iptables_mode = table
        .chains
        .iter()
        .any(|c| c.name.starts_with("KUBE-SVC-") || c.name.starts_with("KUBE-SEP-"));
    if !ipvs.is_empty() && iptables_mode {
        for c in &ipvs {
            out.push(Anomaly {
                kind: AnomalyKind::OtherMode,
                chain: c.to_string(),
                message: format!(
                    "{} table holds both IPVS-mode chains ({}) and iptables-mode service chains: leftovers of a mode switch",
                    table.name,
                    ipvs.join(", ")
                ),
            });
        }
    }
    // Duplicate rules within a chain.
    for (chain, list) in &rules {
        let mut seen = BTreeSet::new();
        for r in list {
            if !seen.insert(r.canonical()) {
                out.push(Anomaly {
                    kind: AnomalyKind::DuplicateRule,
                    chain: chain.to_string(),
                    message: format!(
                        "{} table: {chain} holds the same rule twice: {}",
                        table.name,
                        render_rule(r)
                    ),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.kind, &a.chain).cmp(&(&b.kind, &b.chain)));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_chains_are_jump_rules() {
        for (table, chain, target) in super::ENTRY_CHAINS {
            assert!(
                super::super::JUMP_RULES
                    .iter()
                    .any(|j| (j.table, j.chain, j.target) == (table, chain, target)),
                "{table} {chain} -> {target}"
            );
        }
    }
}

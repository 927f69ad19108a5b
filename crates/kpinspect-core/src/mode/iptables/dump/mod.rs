//! What a node's iptables rules do, per Service: `kpinspect dump` as a
//! library function over a parsed [`Ruleset`].
//!
//! Service identity comes from kube-proxy's rule comments (`"ns/name:port
//! cluster IP"` and friends), in the forms of every generation from 1.10
//! on: the addresses of a Service without endpoints come from the filter
//! table's REJECT rules (kube-proxy 1.10 to 1.19 rejected load-balancer IPs
//! next to the cluster IP in `KUBE-SERVICES`), those of one with endpoints
//! from the nat table. Endpoints and their effective probabilities come
//! from the dispatch chain's `statistic` rules (so three endpoints show as
//! 1/3 each, not 0.333, 0.5 and 1); with a Local traffic policy, external
//! traffic (node port, load-balancer and external IPs) has its own
//! endpoints and shares (`KUBE-EXT-` → `KUBE-SVL-`, `KUBE-XLB-` before
//! 1.24), shown apart.
//!
//! The rules' [`Generation`] — proxy mode and, as far as the rules show it,
//! kube-proxy version — is part of the dump, and the anomalies are judged
//! against it: jumps to missing chains, chains with rules but no
//! declaration, kube-proxy chains nothing reaches, kube-proxy's fixed rules
//! missing, jumps from the built-in chains that generation installs
//! missing, chains of another mode or generation, duplicate rules, targets
//! an iptables of another version printed wrongly — each listed once, with
//! the chain it concerns.

mod anomalies;
mod generation;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

pub use generation::{Generation, RulesMode, Version};

use super::names::{endpoint_chain, hash_suffix, service_chain_suffix, service_port_suffix};
use crate::model::Protocol;
use crate::net::{IpFamily, parse_ip_sloppy, split_host_port};
use crate::netfilter::{ChainIndex, Rule, Ruleset, Table};
use crate::proxy::{ProxyState, ServicePortEntry};

/// One endpoint of a service port as programmed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointDump {
    /// Endpoint IP. When the endpoint chain's DNAT target cannot be read
    /// (see `garbled-rule`), taken from the dispatch rule's comment or the
    /// chain's hairpin rule; empty when nothing names it.
    pub ip: String,
    /// Endpoint port; 0 when no rule that can be read names it.
    pub port: u16,
    /// Chance that a new connection this way picks it (through the chain
    /// the view goes through), rounded to 6 decimals. IPVS mode: the share
    /// of new connections the scheduler gives it (weight over the sum of
    /// weights for `rr`, `wrr`), `null` for schedulers without a static
    /// share (`sh`, `mh`, `lc`, ...).
    pub probability: Option<f64>,
    /// Its `KUBE-SEP-` chain (IPVS mode: empty).
    pub chain: String,
    /// Whether it runs on this node, when the cluster is known (`--cluster`).
    pub local: Option<bool>,
    /// IPVS mode: the real server's weight (absent in iptables mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// IPVS mode, from `ipvsadm -Ln`: active connections, added up over
    /// the service port's virtual servers with the same real servers and
    /// weights (a node port's on every node address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<u64>,
    /// IPVS mode, from `ipvsadm -Ln`: inactive connections, added up the
    /// same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_connections: Option<u64>,
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
    /// External IPs. Without endpoints, kube-proxy 1.20 and newer reject
    /// external and load-balancer IPs with the same rule: those are listed
    /// here unless the cluster (`--cluster`) or another rule says which.
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
    /// Endpoints of the cluster IP's chain (the internal view: local ones
    /// only with internalTrafficPolicy Local).
    pub endpoints: Vec<EndpointDump>,
    /// What happens to cluster-IP traffic without endpoints: `REJECT`
    /// (none at all) or `DROP` (no local ones).
    pub no_endpoints: Option<String>,
    /// The external view, when external traffic (node port, load-balancer
    /// and external IPs) goes to other endpoints than the cluster IP — a
    /// Local traffic policy on either side: its endpoints with their own
    /// shares (empty: none, see `external_no_endpoints`). `null` when
    /// external traffic goes where the cluster IP goes.
    pub external_endpoints: Option<Vec<EndpointDump>>,
    /// What happens to external traffic without endpoints: `REJECT` (none
    /// at all) or `DROP` (no local ones, externalTrafficPolicy Local).
    pub external_no_endpoints: Option<String>,
    /// The service port's chains (IPVS mode: its virtual servers,
    /// `ip:port/PROTO`).
    pub chains: Vec<String>,
    /// IPVS mode: the virtual servers' scheduler (absent in iptables mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
}

/// What kind of thing is wrong or stale (ordered by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum AnomalyKind {
    /// kube-proxy chains in both iptables backends (live nodes only).
    BothBackends,
    /// A chain holds the same rule more than once.
    DuplicateRule,
    /// nftables mode: a rule in kube-proxy's table that kube-proxy does
    /// not write (kept verbatim).
    ForeignRule,
    /// A rule no iptables writes as printed (a DNAT without a readable
    /// address): an iptables-save of another version than the iptables
    /// that wrote the rules.
    GarbledRule,
    /// A rule jumps to a chain that does not exist.
    MissingChain,
    /// A built-in chain does not reach kube-proxy's chain, though the
    /// generation the rules show installs that jump.
    MissingJump,
    /// A fixed chain kube-proxy writes on every sync (for the mode the
    /// rules show) is missing, empty, or lacks its rule.
    MissingRules,
    /// IPVS mode: an address and port in kube-proxy's ipsets (or a Service
    /// port of the cluster) without its virtual server.
    MissingVirtualServer,
    /// IPVS mode: IPVS virtual servers next to iptables-mode Service
    /// rules: a proxy-mode switch that left the old mode's state.
    ModeSwitch,
    /// A chain only older kube-proxy or kubelet versions create.
    OldGeneration,
    /// IPVS mode: an ipset member no Service of the cluster (`--cluster`)
    /// has.
    OrphanSetMember,
    /// Chains of another proxy mode next to this mode's.
    OtherMode,
    /// A kube-proxy chain nothing reaches.
    StaleChain,
    /// nftables mode: map elements or chains of a Service port the
    /// cluster (`--cluster`) does not have.
    StaleService,
    /// IPVS mode: a virtual server no Service of the cluster (`--cluster`)
    /// has.
    StaleVirtualServer,
    /// A chain with rules but no declaration: edited or filtered text.
    UndeclaredChain,
    /// IPVS mode: a real server at weight 0: kube-proxy leaves a removed
    /// TCP endpoint so until its connections end (graceful termination);
    /// one without connections, or of UDP or SCTP, is stuck.
    ZeroWeight,
}

impl AnomalyKind {
    /// The kind as printed and serialised (`missing-chain`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::BothBackends => "both-backends",
            AnomalyKind::DuplicateRule => "duplicate-rule",
            AnomalyKind::GarbledRule => "garbled-rule",
            AnomalyKind::MissingChain => "missing-chain",
            AnomalyKind::MissingJump => "missing-jump",
            AnomalyKind::MissingRules => "missing-rules",
            AnomalyKind::MissingVirtualServer => "missing-virtual-server",
            AnomalyKind::ModeSwitch => "mode-switch",
            AnomalyKind::OldGeneration => "old-generation",
            AnomalyKind::OrphanSetMember => "orphan-set-member",
            AnomalyKind::OtherMode => "other-mode",
            AnomalyKind::StaleChain => "stale-chain",
            AnomalyKind::StaleVirtualServer => "stale-virtual-server",
            AnomalyKind::UndeclaredChain => "undeclared-chain",
            AnomalyKind::ForeignRule => "foreign-rule",
            AnomalyKind::StaleService => "stale-service",
            AnomalyKind::ZeroWeight => "zero-weight",
        }
    }

    /// Whether the kind concerns every Service of the node rather than
    /// the chains of some (what `dump --service` keeps besides the
    /// Service's own).
    pub fn is_node_wide(self) -> bool {
        matches!(
            self,
            AnomalyKind::BothBackends
                | AnomalyKind::MissingJump
                | AnomalyKind::MissingRules
                | AnomalyKind::ModeSwitch
        )
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

/// What one save (one family's tables) was and showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceDump {
    /// Where the rules were read from (a file, `the live node
    /// (iptables-nft-save)`); empty until the caller names it.
    pub name: String,
    /// The family of its rules (`null` when no rule names an address).
    pub family: Option<IpFamily>,
    /// The tables it holds, in order.
    pub tables: Vec<String>,
    /// The kube-proxy mode and generation its rules show: what the
    /// anomalies were judged against.
    pub generation: Generation,
}

/// The whole dump.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeDump {
    /// Service ports, sorted by namespace, name, port name, protocol.
    pub services: Vec<ServiceDump>,
    /// Anomalies.
    pub anomalies: Vec<Anomaly>,
    /// What was read: one entry per save.
    pub sources: Vec<SourceDump>,
}

/// Dumps `rs` (an `iptables-save` of the nat and filter tables). `cluster`,
/// when given, names chains whose comments are missing by recomputing
/// kube-proxy's hashes, and tells external from load-balancer IPs where the
/// rules do not.
///
/// ```
/// let save = include_str!("../../../../../../fixtures/iptables-save/affinity.nft.txt");
/// let rs = kpinspect_core::netfilter::Ruleset::parse(save).unwrap();
/// let dump = kpinspect_core::mode::iptables::dump(&rs, None);
/// let svc = &dump.services[0];
/// assert_eq!((svc.namespace.as_str(), svc.name.as_str(), svc.port_name.as_str()), ("ns1", "svc1", "p80"));
/// assert_eq!(svc.affinity_timeout, Some(300));
/// assert!(svc.endpoints.iter().all(|e| (e.probability.unwrap() - 1.0 / 3.0).abs() < 1e-6));
/// assert_eq!(dump.sources[0].generation.summary,
///            "iptables mode, kube-proxy >= 1.25 (KUBE-PROXY-FIREWALL chain)");
/// ```
pub fn dump(rs: &Ruleset, cluster: Option<&ProxyState>) -> NodeDump {
    let names = cluster.map(hash_names).unwrap_or_default();
    let indexed = Indexed::new(rs);
    let services = services_in(rs, &indexed, cluster, |_| true);
    let generation = generation::detect(&indexed);
    let anomalies = anomalies::anomalies(&indexed, &names, &generation);
    NodeDump {
        services,
        anomalies,
        sources: vec![SourceDump {
            name: String::new(),
            family: rs.family(),
            tables: rs.tables().iter().map(|t| t.name.clone()).collect(),
            generation,
        }],
    }
}

/// The service ports of `rs` as [`dump`] lists them, without the rest of
/// the dump (the anomalies compare every rule in its kernel form: a
/// caller that only needs the services, such as an apply's conntrack
/// cleanup, skips that).
///
/// ```
/// let save = include_str!("../../../../../../fixtures/iptables-save/affinity.nft.txt");
/// let rs = kpinspect_core::netfilter::Ruleset::parse(save).unwrap();
/// let services = kpinspect_core::mode::iptables::dump::services(&rs, None);
/// assert_eq!(services, kpinspect_core::mode::iptables::dump(&rs, None).services);
/// assert_eq!(services[0].name, "svc1");
/// ```
pub fn services(rs: &Ruleset, cluster: Option<&ProxyState>) -> Vec<ServiceDump> {
    services_where(rs, cluster, |_| true)
}

/// [`services`] of one protocol (`tcp`, `udp`, `sctp`, as iptables writes
/// it): the same service ports `services` lists with that protocol, but
/// only theirs are followed to their chains and endpoints (an apply's
/// conntrack cleanup needs only the UDP ones).
///
/// ```
/// let save = include_str!("../../../../../../fixtures/iptables-save/example.legacy.txt");
/// let rs = kpinspect_core::netfilter::Ruleset::parse(save).unwrap();
/// use kpinspect_core::mode::iptables::dump::{services, services_of_protocol};
/// let udp = services_of_protocol(&rs, None, "udp");
/// assert!(!udp.is_empty());
/// let all: Vec<_> = services(&rs, None).into_iter().filter(|s| s.protocol == "udp").collect();
/// assert_eq!(udp, all);
/// ```
pub fn services_of_protocol(
    rs: &Ruleset,
    cluster: Option<&ProxyState>,
    protocol: &str,
) -> Vec<ServiceDump> {
    services_where(rs, cluster, |p| p == protocol)
}

fn services_where(
    rs: &Ruleset,
    cluster: Option<&ProxyState>,
    keep: impl Fn(&str) -> bool,
) -> Vec<ServiceDump> {
    services_in(rs, &Indexed::new(rs), cluster, keep)
}

/// The filter and nat tables of a save (what the dump reads), each with
/// its chains indexed once.
pub(super) struct Indexed<'a> {
    /// (table, its chains), filter first, for each of the two the save holds.
    pub(super) tables: Vec<(&'a Table, ChainIndex<'a>)>,
}

impl<'a> Indexed<'a> {
    fn new(rs: &'a Ruleset) -> Indexed<'a> {
        Indexed {
            tables: ["filter", "nat"]
                .into_iter()
                .filter_map(|name| rs.table(name))
                .map(|t| (t, t.chain_index()))
                .collect(),
        }
    }

    /// The chains of table `name` (empty when the save lacks it).
    fn chains(&self, name: &str) -> Option<&ChainIndex<'a>> {
        self.tables
            .iter()
            .find(|(t, _)| t.name == name)
            .map(|(_, c)| c)
    }
}

fn services_in(
    rs: &Ruleset,
    indexed: &Indexed<'_>,
    cluster: Option<&ProxyState>,
    keep: impl Fn(&str) -> bool,
) -> Vec<ServiceDump> {
    let empty = ChainIndex::empty();
    let nat_chains = indexed.chains("nat").unwrap_or(&empty);

    let mut services: BTreeMap<(String, String), ServiceDump> = BTreeMap::new();
    let mut internal_chain: HashMap<(String, String), String> = HashMap::new();

    for r in nat_chains.get("KUBE-SERVICES").into_iter().flatten() {
        let (Some(comment), Some(target)) = (r.comment(), r.target_name()) else {
            continue;
        };
        let proto = protocol_of(r);
        if !keep(&proto) {
            continue;
        }
        let dst = destination(r);
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
            // Before 1.21, three rules per external IP (masquerade, two
            // jumps): one address.
            let svc = entry(&mut services, s, &proto);
            push_unique(&mut svc.external_ips, dst);
            svc.port = svc.port.or(dport);
        } else if let Some(s) = comment.strip_suffix(" loadbalancer IP") {
            let svc = entry(&mut services, s, &proto);
            push_unique(&mut svc.load_balancer_ips, dst);
            svc.port = svc.port.or(dport);
        }
    }
    for r in nat_chains.get("KUBE-NODEPORTS").into_iter().flatten() {
        let (Some(s), Some(np)) = (r.comment(), dport(r)) else {
            continue;
        };
        let proto = protocol_of(r);
        if keep(&proto) {
            entry(&mut services, s, &proto).node_port = Some(np);
        }
    }
    let filter_chains = indexed.chains("filter").unwrap_or(&empty);
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        for r in filter_chains.get(chain).into_iter().flatten() {
            let Some(comment) = r.comment() else { continue };
            let proto = protocol_of(r);
            let dst = destination(r);
            if let Some(s) = comment.strip_suffix(" health check node port") {
                // The health check is per Service; attach it to every port of it.
                let (ns, name) = s_service(s).split_once('/').unwrap_or((s_service(s), ""));
                for svc in services
                    .values_mut()
                    .filter(|v| v.namespace == ns && v.name == name)
                {
                    svc.health_check_node_port = dport(r);
                }
                continue;
            }
            if !keep(&proto) {
                continue;
            }
            if let Some((s, _)) = comment.split_once(" traffic not accepted by KUBE-FW-") {
                // kube-proxy >= 1.25: a load-balancer IP with source ranges.
                let svc = entry(&mut services, s, &proto);
                push_unique(&mut svc.load_balancer_ips, dst);
                svc.port = svc.port.or(dport(r));
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
                match (&svc.cluster_ip, &dst) {
                    (Some(cip), Some(d)) if cip != d => {
                        // Another address of the same port: kube-proxy 1.10
                        // to 1.19 rejected its load-balancer IPs here, after
                        // the cluster IP.
                        if !svc.external_ips.contains(d) {
                            push_unique(&mut svc.load_balancer_ips, dst.clone());
                        }
                        svc.external_no_endpoints = Some(verdict.into());
                        svc.port = svc.port.or(dport(r));
                    }
                    _ => {
                        svc.no_endpoints = Some(verdict.into());
                        svc.cluster_ip = dst.clone();
                        svc.port = dport(r);
                        if verdict == "DROP" {
                            svc.internal_traffic_policy = "Local".into();
                        }
                    }
                }
            } else {
                if verdict == "DROP" {
                    svc.external_traffic_policy = "Local".into();
                }
                svc.external_no_endpoints = Some(verdict.into());
                if r.find_match("addrtype").is_some() {
                    svc.node_port = svc.node_port.or(dport(r));
                } else if let Some(d) = dst {
                    let known = svc.load_balancer_ips.contains(&d) || svc.external_ips.contains(&d);
                    if !known {
                        svc.external_ips.push(d);
                    }
                    svc.port = svc.port.or(dport(r));
                }
            }
        }
    }

    for (key, svc) in services.iter_mut() {
        let internal = internal_chain.get(key).map(String::as_str);
        let suffix = internal
            .and_then(service_chain_suffix)
            .map(String::from)
            .or_else(|| guess_suffix(svc, nat_chains));
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
            let xlb = format!("KUBE-XLB-{suffix}");
            if nat_chains.contains_key(xlb.as_str()) {
                svc.external_traffic_policy = "Local".into();
            }
            let fw = format!("KUBE-FW-{suffix}");
            for r in nat_chains.get(fw.as_str()).into_iter().flatten() {
                if let (Some((false, src)), Some(t)) = (r.base("-s"), r.target_name())
                    && ["KUBE-EXT-", "KUBE-SVC-", "KUBE-SVL-", "KUBE-XLB-"]
                        .iter()
                        .any(|p| t.starts_with(p))
                    && !svc.load_balancer_ips.contains(&strip_host_prefix(src))
                    && !svc.load_balancer_source_ranges.iter().any(|s| s == src)
                {
                    svc.load_balancer_source_ranges.push(src.to_string());
                }
            }
        }
        // Without its cluster-IP rule, a port whose cluster IP rejects or
        // drops has no internal endpoints; otherwise (no comments) guess.
        let dispatch = internal.map(String::from).or_else(|| {
            suffix
                .as_ref()
                .filter(|_| svc.no_endpoints.is_none())
                .map(|s| format!("KUBE-SVC-{s}"))
        });
        if let Some(chain) = &dispatch {
            let (eps, affinity) = endpoints(nat_chains, chain);
            svc.endpoints = eps;
            svc.affinity_timeout = affinity;
        }
        if let Some(suffix) = &suffix {
            svc.external_endpoints = external_view(nat_chains, suffix, dispatch.as_deref());
            if svc.external_endpoints.as_ref().is_some_and(Vec::is_empty)
                && svc.external_no_endpoints.is_none()
            {
                svc.external_no_endpoints = Some("DROP".into());
            }
        }
        let seps: Vec<String> = svc
            .endpoints
            .iter()
            .chain(svc.external_endpoints.iter().flatten())
            .map(|e| e.chain.clone())
            .collect();
        for c in seps {
            if !svc.chains.contains(&c) {
                svc.chains.push(c);
            }
        }
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
        classify_addresses(&mut services, state);
        mark_local_endpoints(&mut services, state);
    }
    services
}

/// The hash suffix of a service port whose cluster-IP rule is missing (no
/// endpoints): today's hash, or that of kube-proxy before 1.19, whose
/// unnamed ports were `ns/name:` (with the colon).
fn guess_suffix(svc: &ServiceDump, nat_chains: &ChainIndex<'_>) -> Option<String> {
    let p = protocol(&svc.protocol)?;
    let current = service_port_suffix(&port_name(svc, p));
    if !svc.port_name.is_empty() {
        return Some(current);
    }
    let old = hash_suffix(&format!("{}/{}:{}", svc.namespace, svc.name, svc.protocol));
    let exists = |s: &str| {
        ["KUBE-SVC-", "KUBE-XLB-", "KUBE-FW-"]
            .iter()
            .any(|p| nat_chains.contains_key(format!("{p}{s}").as_str()))
    };
    Some(if !exists(&current) && exists(&old) {
        old
    } else {
        current
    })
}

/// Where external traffic goes, when not where the cluster IP goes
/// (`dispatch`): through `KUBE-EXT-` to its last unconditional jump (1.24
/// and newer), or into `KUBE-XLB-` (older, externalTrafficPolicy Local).
fn external_view(
    chains: &ChainIndex<'_>,
    suffix: &str,
    dispatch: Option<&str>,
) -> Option<Vec<EndpointDump>> {
    let ext = format!("KUBE-EXT-{suffix}");
    if let Some(rules) = chains.get(ext.as_str()) {
        // Pod and LOCAL-source traffic short-circuit to KUBE-SVC- with
        // conditions; the rest goes to the external policy's chain.
        let policy = rules.iter().rev().find_map(|r| {
            let t = r.target_name()?;
            let plain = r.base.is_empty() && r.matches.iter().all(|m| m.module == "comment");
            (plain && (t.starts_with("KUBE-SVC-") || t.starts_with("KUBE-SVL-"))).then_some(t)
        });
        return match policy {
            Some(c) if Some(c) == dispatch => None,
            Some(c) => Some(endpoints(chains, c).0),
            // externalTrafficPolicy Local without local endpoints.
            None => Some(vec![]),
        };
    }
    let xlb = format!("KUBE-XLB-{suffix}");
    if chains.contains_key(xlb.as_str()) {
        return Some(endpoints(chains, &xlb).0);
    }
    None
}

/// Moves each address to the list the cluster says it belongs to (the
/// rules of a Service without endpoints do not always tell).
fn classify_addresses(services: &mut [ServiceDump], state: &ProxyState) {
    for s in services {
        let Some(entry) = state_entry(state, s) else {
            continue;
        };
        let info = &entry.info;
        let kind = |a: &str| {
            let ip = parse_ip_sloppy(a)?;
            if ip == info.cluster_ip {
                Some(0)
            } else if info.external_ips.contains(&ip) {
                Some(1)
            } else if info.load_balancer_vips.contains(&ip) {
                Some(2)
            } else {
                None
            }
        };
        let mut addrs: Vec<(String, usize)> = Vec::new();
        for (i, a) in s
            .cluster_ip
            .iter()
            .map(|a| (0, a))
            .chain(s.external_ips.iter().map(|a| (1, a)))
            .chain(s.load_balancer_ips.iter().map(|a| (2, a)))
        {
            let k = kind(a).unwrap_or(i);
            if !addrs.iter().any(|(b, _)| b == a) {
                addrs.push((a.clone(), k));
            }
        }
        let of = |k: usize| -> Vec<String> {
            addrs
                .iter()
                .filter(|(_, kk)| *kk == k)
                .map(|(a, _)| a.clone())
                .collect()
        };
        let cluster: Vec<String> = of(0);
        if let Some(first) = cluster.first() {
            s.cluster_ip = Some(first.clone());
        }
        s.external_ips = of(1);
        s.load_balancer_ips = of(2);
        // A second "cluster IP" the cluster does not know stays visible.
        for extra in cluster.iter().skip(1) {
            s.external_ips.push(extra.clone());
        }
    }
}

fn state_entry<'a>(state: &'a ProxyState, s: &ServiceDump) -> Option<&'a ServicePortEntry> {
    state.ports.iter().find(|e| {
        let n = &e.info.name;
        n.namespace == s.namespace
            && n.name == s.name
            && n.port == s.port_name
            && n.protocol.as_str() == s.protocol
    })
}

/// Fills in each endpoint's `local` from the cluster's view.
fn mark_local_endpoints(services: &mut [ServiceDump], state: &ProxyState) {
    for s in services {
        let Some(entry) = state_entry(state, s) else {
            continue;
        };
        for e in s
            .endpoints
            .iter_mut()
            .chain(s.external_endpoints.iter_mut().flatten())
        {
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

fn push_unique(list: &mut Vec<String>, addr: Option<String>) {
    if let Some(a) = addr
        && !list.contains(&a)
    {
        list.push(a);
    }
}

pub(crate) fn new_service(s: &str, proto: &str) -> ServiceDump {
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
        external_endpoints: None,
        external_no_endpoints: None,
        chains: vec![],
        scheduler: None,
    }
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

fn protocol_of(r: &Rule) -> String {
    r.base("-p")
        .map(|(_, p)| p.to_lowercase())
        .unwrap_or_default()
}

fn port_name(s: &ServiceDump, protocol: Protocol) -> crate::proxy::ServicePortName {
    crate::proxy::ServicePortName {
        namespace: s.namespace.clone(),
        name: s.name.clone(),
        port: s.port_name.clone(),
        protocol,
    }
}

fn strip_host_prefix(addr: &str) -> String {
    addr.strip_suffix("/32")
        .or_else(|| addr.strip_suffix("/128"))
        .unwrap_or(addr)
        .to_string()
}

/// The rule's `-d` address (not negated), without a host prefix length.
fn destination(r: &Rule) -> Option<String> {
    r.base("-d")
        .filter(|(negated, _)| !negated)
        .map(|(_, d)| strip_host_prefix(d))
}

fn dport(r: &Rule) -> Option<u16> {
    r.matches
        .iter()
        .find_map(|m| m.value("--dport").or_else(|| m.value("--destination-port")))
        .and_then(|p| p.parse().ok())
}

/// Endpoints reached from dispatch chain `chain`, with effective
/// probabilities, and the affinity timeout if `recent` rules are present.
fn endpoints(chains: &ChainIndex<'_>, chain: &str) -> (Vec<EndpointDump>, Option<u32>) {
    let mut out = Vec::new();
    let mut affinity = None;
    let mut remaining = 1.0f64;
    // Each rule with the chain it jumps to, resolved by the index.
    let rules = chains
        .id(chain)
        .map(|id| chains.rules(id).iter().zip(chains.targets(id)))
        .into_iter()
        .flatten();
    for (r, &to) in rules {
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
        let sep = (to != ChainIndex::NO_CHAIN).then_some(to as usize);
        let Some((ip, port)) = endpoint_address(chains, sep, r) else {
            continue;
        };
        out.push(EndpointDump {
            ip,
            port,
            probability: Some((effective * 1e6).round() / 1e6),
            chain: target.to_string(),
            local: None,
            weight: None,
            active_connections: None,
            inactive_connections: None,
        });
    }
    (out, affinity)
}

/// The address of endpoint chain `sep` (its number in `chains`), jumped to by `jump`: its DNAT
/// target; when that cannot be read (printed by an iptables of another
/// version), the `ns/svc:port -> ip:port` comment kube-proxy puts on the
/// jump, else the IP of the chain's hairpin rule (`-s IP -j
/// KUBE-MARK-MASQ`) with port 0. `None` when the chain does not exist.
fn endpoint_address(
    chains: &ChainIndex<'_>,
    sep: Option<usize>,
    jump: &Rule,
) -> Option<(String, u16)> {
    let rules = sep.map(|id| chains.rules(id));
    // A rule the index resolved to a chain has no DNAT target (unless a
    // chain is named DNAT): such rules (the hairpin's jump to
    // KUBE-MARK-MASQ) are passed over without reading them.
    let dnat_is_chain = chains.contains_key("DNAT");
    let targets = sep.map(|id| chains.targets(id)).unwrap_or_default();
    for (i, r) in rules.into_iter().flatten().enumerate() {
        if !dnat_is_chain && targets[i] != ChainIndex::NO_CHAIN {
            continue;
        }
        if let Some(t) = r.target.as_ref().filter(|t| t.name == "DNAT")
            && anomalies::garbled_target(r).is_none()
            && let Some((h, p)) = t.value("--to-destination").and_then(split_host_port)
        {
            return Some((h.to_string(), p));
        }
    }
    if let Some((h, p)) = jump
        .comment()
        .and_then(|c| c.rsplit_once(" -> "))
        .and_then(|(_, ep)| split_host_port(ep))
    {
        return Some((h.to_string(), p));
    }
    let rules = rules?;
    let hairpin = rules.iter().find_map(|r| match r.base("-s") {
        Some((false, s)) if r.target_name() == Some("KUBE-MARK-MASQ") => Some(strip_host_prefix(s)),
        _ => None,
    });
    Some((hairpin.unwrap_or_default(), 0))
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

#[cfg(test)]
mod protocol_tests {
    use super::*;

    const SAVES: [(&str, &str); 6] = [
        (
            "example.legacy",
            include_str!("../../../../../../fixtures/iptables-save/example.legacy.txt"),
        ),
        (
            "example.nft",
            include_str!("../../../../../../fixtures/iptables-save/example.nft.txt"),
        ),
        (
            "overall.legacy",
            include_str!("../../../../../../fixtures/iptables-save/overall.legacy.txt"),
        ),
        (
            "kube-proxy-1.11",
            include_str!("../../../../../../fixtures/iptables-save/kube-proxy-1.11.txt"),
        ),
        (
            "weave-1.11",
            include_str!("../../../../../../fixtures/iptables-save/weave-1.11.txt"),
        ),
        (
            "garbled-dnat",
            include_str!("../../../../../../fixtures/iptables-save/garbled-dnat.txt"),
        ),
    ];

    #[test]
    fn services_of_a_protocol_are_the_full_lists_of_that_protocol() {
        let mut compared = [0; 2];
        for (name, text) in SAVES {
            let rs = Ruleset::parse(text).expect(name);
            let all = services(&rs, None);
            for (i, protocol) in ["udp", "tcp"].into_iter().enumerate() {
                let want: Vec<_> = all
                    .iter()
                    .filter(|s| s.protocol == protocol)
                    .cloned()
                    .collect();
                compared[i] += want.len();
                assert_eq!(
                    services_of_protocol(&rs, None, protocol),
                    want,
                    "{name} {protocol}"
                );
            }
        }
        assert!(compared.iter().all(|n| *n > 0), "compared {compared:?}");
    }
}

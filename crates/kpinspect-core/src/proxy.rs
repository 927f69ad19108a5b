//! What one kube-proxy proxier (one IP family) sees: service ports with their
//! endpoints, and the endpoint selection kube-proxy applies (traffic
//! policies, topology hints, the terminating fallback).
//!
//! This is the shared front half of every mode's compiler; it corresponds to
//! kube-proxy's service and endpoints change trackers and
//! `CategorizeEndpoints`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config::ProxyConfig;
use crate::model::{Cluster, IpMode, Protocol, Service};
use crate::net::{IpFamily, IpNet, join_host_port};

/// The identity of a service port: `namespace/name[:port]` plus protocol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServicePortName {
    /// Namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Port name (may be empty).
    pub port: String,
    /// Protocol.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// kube-proxy's string form: `ns/name:port`, or `ns/name` for an unnamed
    /// port. Used in every comment and in chain-name hashes.
    pub fn to_kube_string(&self) -> String {
        if self.port.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port)
        }
    }
}

/// One service port as a proxier of one family sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePortInfo {
    /// Identity.
    pub name: ServicePortName,
    /// The cluster IP of this family.
    pub cluster_ip: IpAddr,
    /// The service port.
    pub port: u16,
    /// The node port, 0 for none.
    pub node_port: u16,
    /// External IPs of this family, in order.
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer ingress IPs of this family with `ipMode: VIP`, in order.
    pub load_balancer_vips: Vec<IpAddr>,
    /// `loadBalancerSourceRanges` of this family, in order.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `externalTrafficPolicy: Local` on an externally accessible service.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// The health-check node port (LoadBalancer with eTP Local), 0 for none.
    pub health_check_node_port: u16,
    /// ClientIP affinity timeout, if affinity is on.
    pub session_affinity_timeout: Option<u32>,
}

impl ServicePortInfo {
    /// Whether traffic can reach this port from outside the cluster network:
    /// a node port, a load-balancer IP or an external IP.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.load_balancer_vips.is_empty() || !self.external_ips.is_empty()
    }

    /// Whether some traffic uses the "Cluster" endpoint set.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether some traffic uses the "Local" endpoint set.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.external_policy_local && self.externally_accessible())
    }
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointInfo {
    /// Endpoint IP.
    pub ip: IpAddr,
    /// Target port.
    pub port: u16,
    /// `ip:port` (`[ip]:port` for IPv6): kube-proxy's sort and hash key.
    pub endpoint: String,
    /// Ready.
    pub ready: bool,
    /// Serving.
    pub serving: bool,
    /// Terminating.
    pub terminating: bool,
    /// On this node.
    pub local: bool,
    /// Zone hints.
    pub zone_hints: Vec<String>,
    /// Node hints.
    pub node_hints: Vec<String>,
}

/// A service port with all of its endpoints (sorted by `ip:port`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePortEntry {
    /// The service port.
    pub info: ServicePortInfo,
    /// Its endpoints, in kube-proxy's order.
    pub endpoints: Vec<EndpointInfo>,
}

/// Something kube-proxy would skip or log, with the object it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    /// `namespace/name` of the object.
    pub object: String,
    /// What happened.
    pub message: String,
}

/// The proxier's complete view for one IP family.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyState {
    /// The IP family.
    pub family: IpFamily,
    /// Service ports, sorted by service-port name then protocol.
    pub ports: Vec<ServicePortEntry>,
    /// Things kube-proxy would log or skip.
    pub notices: Vec<Notice>,
}

impl ProxyState {
    /// Builds the view of `family` from the cluster objects, like kube-proxy's
    /// change trackers do.
    pub fn build(cluster: &Cluster, config: &ProxyConfig, family: IpFamily) -> ProxyState {
        let mut notices = Vec::new();
        let mut endpoints = build_endpoints(cluster, config, family);
        let mut ports = Vec::new();
        for svc in &cluster.services {
            for info in service_port_infos(svc, family, &mut notices) {
                ports.push(ServicePortEntry {
                    info,
                    endpoints: Vec::new(),
                });
            }
        }
        ports.sort_by_cached_key(|p| (p.info.name.to_kube_string(), p.info.name.protocol));
        ports.dedup_by(|a, b| a.info.name == b.info.name);
        // After the dedup each name is left once: its endpoints are moved
        // out of the map, not copied.
        for p in &mut ports {
            if let Some(eps) = endpoints.remove(&p.info.name) {
                p.endpoints = eps;
            }
        }
        ProxyState {
            family,
            ports,
            notices,
        }
    }

    /// The number of endpoints of all service ports (kube-proxy's
    /// large-cluster test counts these).
    pub fn total_endpoints(&self) -> usize {
        self.ports.iter().map(|p| p.endpoints.len()).sum()
    }
}

/// The per-family service ports of one Service (none for headless,
/// ExternalName, or a service without a cluster IP of this family).
pub fn service_port_infos(
    svc: &Service,
    family: IpFamily,
    notices: &mut Vec<Notice>,
) -> Vec<ServicePortInfo> {
    use crate::model::ServiceType;
    if svc.service_type == ServiceType::ExternalName {
        return Vec::new();
    }
    let Some(cluster_ip) = svc.cluster_ip(family) else {
        return Vec::new();
    };
    let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter()
            .copied()
            .filter(|ip| IpFamily::of(ip) == family)
            .collect()
    };
    let external_ips = of_family(&svc.external_ips);
    let mut load_balancer_vips = Vec::new();
    for ing in &svc.load_balancer_ingress {
        if ing.ip_mode == IpMode::Proxy {
            continue;
        }
        if IpFamily::of(&ing.ip) == family {
            load_balancer_vips.push(ing.ip);
        }
    }
    // Every range of this family, `/0` included: kube-proxy writes the
    // firewall for an allow-all range too (only the cloud providers' helper
    // treats `0.0.0.0/0` as "no ranges"; `pkg/proxy/serviceport.go` does not).
    let load_balancer_source_ranges: Vec<IpNet> = svc
        .load_balancer_source_ranges
        .iter()
        .copied()
        .filter(|n| IpFamily::of_net(n) == family)
        .collect();
    let external_policy_local = svc.external_policy_local();
    let health_check_node_port =
        if svc.service_type == crate::model::ServiceType::LoadBalancer && external_policy_local {
            if svc.health_check_node_port == 0 {
                notices.push(Notice {
                    object: svc.key(),
                    message: "service has no healthcheck nodeport".into(),
                });
            }
            svc.health_check_node_port
        } else {
            0
        };
    svc.ports
        .iter()
        .map(|p| ServicePortInfo {
            name: ServicePortName {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                port: p.name.clone(),
                protocol: p.protocol,
            },
            cluster_ip,
            port: p.port,
            node_port: p.node_port,
            external_ips: external_ips.clone(),
            load_balancer_vips: load_balancer_vips.clone(),
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            external_policy_local,
            internal_policy_local: svc.internal_policy_local(),
            health_check_node_port,
            session_affinity_timeout: svc.session_affinity_timeout,
        })
        .collect()
}

/// Endpoints per service port from the EndpointSlices of `family`: the
/// first address of each endpoint, merged over slices (a later copy wins
/// unless it is terminating; slices are visited in name order),
/// sorted by `ip:port` bytewise.
fn build_endpoints(
    cluster: &Cluster,
    config: &ProxyConfig,
    family: IpFamily,
) -> BTreeMap<ServicePortName, Vec<EndpointInfo>> {
    let mut by_port: BTreeMap<ServicePortName, BTreeMap<String, EndpointInfo>> = BTreeMap::new();
    let mut slices: Vec<_> = cluster
        .endpoint_slices
        .iter()
        .filter(|s| s.address_type.family() == Some(family))
        .collect();
    slices.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for slice in slices {
        for port in &slice.ports {
            let (Some(port_name), Some(port_num)) = (&port.name, port.port) else {
                continue;
            };
            let key = ServicePortName {
                namespace: slice.namespace.clone(),
                name: slice.service_name.clone(),
                port: port_name.clone(),
                protocol: port.protocol,
            };
            let set = by_port.entry(key).or_default();
            for ep in &slice.endpoints {
                let Some(ip) = ep.address else { continue };
                if IpFamily::of(&ip) != family {
                    continue;
                }
                let local = ep.node_name.as_deref() == Some(config.node.name.as_str())
                    && !config.node.name.is_empty();
                let info = EndpointInfo {
                    ip,
                    port: port_num,
                    endpoint: join_host_port(&ip, port_num),
                    ready: ep.ready,
                    serving: ep.serving,
                    terminating: ep.terminating,
                    local,
                    zone_hints: ep.zone_hints.clone(),
                    node_hints: ep.node_hints.clone(),
                };
                // A later copy replaces an earlier one unless it is terminating.
                if !set.contains_key(&info.endpoint) || !info.terminating {
                    set.insert(info.endpoint.clone(), info);
                }
            }
        }
    }
    by_port
        .into_iter()
        .map(|(k, set)| (k, set.into_values().collect()))
        .collect()
}

/// The endpoint sets kube-proxy derives for one service port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Indices of endpoints for "Cluster" traffic policy.
    pub cluster: Vec<usize>,
    /// Indices of endpoints for "Local" traffic policy.
    pub local: Vec<usize>,
    /// Indices of every endpoint some traffic can reach (each gets a SEP chain).
    pub all: Vec<usize>,
    /// Whether any traffic has somewhere to go.
    pub has_any: bool,
}

/// kube-proxy's `CategorizeEndpoints` over `eps` (sorted by `ip:port`).
pub fn categorize(
    info: &ServicePortInfo,
    eps: &[EndpointInfo],
    config: &ProxyConfig,
) -> Categorized {
    let mut out = Categorized::default();
    if eps.is_empty() {
        return out;
    }
    let filter = |f: &dyn Fn(&EndpointInfo) -> bool| -> Vec<usize> {
        eps.iter()
            .enumerate()
            .filter(|(_, e)| f(e))
            .map(|(i, _)| i)
            .collect()
    };
    let mut topology = Topology::None;
    if info.uses_cluster_endpoints() {
        topology = topology_mode(eps, config);
        out.cluster = filter(&|e| e.ready && topology.allows(e, config));
        if out.cluster.is_empty() {
            out.cluster = filter(&|e| e.serving && e.terminating);
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !info.uses_local_endpoints() {
        out.all = out.cluster.clone();
        return out;
    }
    let mut local_ready = false;
    let mut local_serving_terminating = false;
    for e in eps {
        if e.ready {
            out.has_any = true;
            local_ready |= e.local;
        } else if e.serving && e.terminating {
            out.has_any = true;
            local_serving_terminating |= e.local;
        }
    }
    let mut fallback = false;
    if local_ready {
        out.local = filter(&|e| e.ready && e.local);
    } else if local_serving_terminating {
        fallback = true;
        out.local = filter(&|e| e.serving && e.terminating && e.local);
    }
    if !info.uses_cluster_endpoints() {
        out.all = out.local.clone();
        return out;
    }
    if topology == Topology::None && !fallback {
        out.all = out.cluster.clone();
        return out;
    }
    // kube-proxy merges the two through a map (random order); kpinspect keeps
    // the `ip:port` order so output is reproducible.
    let mut all: Vec<usize> = out
        .cluster
        .iter()
        .chain(out.local.iter())
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    out.all = all;
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    None,
    SameNode,
    SameZone,
}

impl Topology {
    fn allows(self, e: &EndpointInfo, config: &ProxyConfig) -> bool {
        match self {
            Topology::None => true,
            Topology::SameNode => e.node_hints.contains(&config.node.name),
            Topology::SameZone => match &config.node.zone {
                Some(z) => e.zone_hints.iter().any(|h| h == z),
                None => false,
            },
        }
    }
}

fn topology_mode(eps: &[EndpointInfo], config: &ProxyConfig) -> Topology {
    let mut has_for_node = false;
    let mut all_node_hints = true;
    let mut has_for_zone = false;
    let mut all_zone_hints = true;
    for e in eps.iter().filter(|e| e.ready) {
        if e.node_hints.is_empty() {
            all_node_hints = false;
        } else if e.node_hints.contains(&config.node.name) {
            has_for_node = true;
        }
        if e.zone_hints.is_empty() {
            all_zone_hints = false;
        } else if config
            .node
            .zone
            .as_ref()
            .is_some_and(|z| e.zone_hints.contains(z))
        {
            has_for_zone = true;
        }
    }
    if config.feature_gates.prefer_same_traffic_distribution && all_node_hints && has_for_node {
        return Topology::SameNode;
    }
    if all_zone_hints && has_for_zone {
        return Topology::SameZone;
    }
    Topology::None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FeatureGates, NodeFacts};

    fn ep(ip: &str, ready: bool, serving: bool, terminating: bool, local: bool) -> EndpointInfo {
        let ip: IpAddr = ip.parse().expect("ip");
        EndpointInfo {
            ip,
            port: 80,
            endpoint: join_host_port(&ip, 80),
            ready,
            serving,
            terminating,
            local,
            zone_hints: vec![],
            node_hints: vec![],
        }
    }

    fn info(internal_local: bool, external_local: bool, node_port: u16) -> ServicePortInfo {
        ServicePortInfo {
            name: ServicePortName {
                namespace: "ns".into(),
                name: "svc".into(),
                port: "p".into(),
                protocol: Protocol::Tcp,
            },
            cluster_ip: "172.30.0.1".parse().expect("ip"),
            port: 80,
            node_port,
            external_ips: vec![],
            load_balancer_vips: vec![],
            load_balancer_source_ranges: vec![],
            external_policy_local: external_local,
            internal_policy_local: internal_local,
            health_check_node_port: 0,
            session_affinity_timeout: None,
        }
    }

    fn config() -> ProxyConfig {
        ProxyConfig {
            node: NodeFacts {
                name: "me".into(),
                zone: Some("z1".into()),
                ..NodeFacts::default()
            },
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn terminating_fallback_only_without_ready_endpoints() {
        let eps = [
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", false, true, true, true),
        ];
        let c = categorize(&info(false, false, 0), &eps, &config());
        assert_eq!(
            (c.cluster.clone(), c.all.clone(), c.has_any),
            (vec![0], vec![0], true)
        );
        let eps = [
            ep("10.0.0.1", false, false, true, false),
            ep("10.0.0.2", false, true, true, true),
        ];
        let c = categorize(&info(false, false, 0), &eps, &config());
        assert_eq!(
            c.cluster,
            vec![1],
            "serving+terminating fallback; not-serving never used"
        );
    }

    #[test]
    fn external_local_uses_local_then_terminating_local_and_merges() {
        // A remote ready endpoint and a local terminating one: Local falls back
        // to the terminating local endpoint; both get SEP chains.
        let eps = [
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", false, true, true, true),
        ];
        let c = categorize(&info(false, true, 30000), &eps, &config());
        assert_eq!(c.cluster, vec![0]);
        assert_eq!(c.local, vec![1]);
        assert_eq!(c.all, vec![0, 1]);
    }

    #[test]
    fn internal_local_without_local_endpoints() {
        let eps = [ep("10.0.0.1", true, true, false, false)];
        let c = categorize(&info(true, false, 0), &eps, &config());
        assert!(c.local.is_empty() && c.cluster.is_empty() && c.all.is_empty());
        assert!(
            c.has_any,
            "there are endpoints, just no local ones: DROP, not REJECT"
        );
    }

    #[test]
    fn node_hints_win_over_zone_hints_when_gated_on() {
        let mut eps = vec![
            ep("10.0.0.1", true, true, false, false),
            ep("10.0.0.2", true, true, false, false),
        ];
        eps[0].node_hints = vec!["me".into()];
        eps[0].zone_hints = vec!["z2".into()];
        eps[1].node_hints = vec!["other".into()];
        eps[1].zone_hints = vec!["z1".into()];
        let c = categorize(&info(false, false, 0), &eps, &config());
        assert_eq!(c.cluster, vec![0], "PreferSameNode");
        let off = ProxyConfig {
            feature_gates: FeatureGates {
                prefer_same_traffic_distribution: false,
            },
            ..config()
        };
        let c = categorize(&info(false, false, 0), &eps, &off);
        assert_eq!(
            c.cluster,
            vec![1],
            "PreferSameZone when node hints are gated off"
        );
        eps[1].zone_hints.clear();
        let c = categorize(&info(false, false, 0), &eps, &off);
        assert_eq!(
            c.cluster,
            vec![0, 1],
            "hints ignored unless every ready endpoint has one"
        );
    }

    #[test]
    fn node_cidr_detector_and_primary_node_port_addresses() {
        use crate::config::{DetectLocal, LocalDetector, NodePortAddressesConfig};
        let config = ProxyConfig {
            detect_local: DetectLocal::NodeCidr,
            node: NodeFacts {
                pod_cidrs: vec!["10.244.1.0/24".parse().expect("cidr")],
                ips: vec![
                    "192.168.0.2".parse().expect("ip"),
                    "fd00::2".parse().expect("ip"),
                ],
                ..NodeFacts::default()
            },
            node_port_addresses: Some(NodePortAddressesConfig::Primary),
            ..ProxyConfig::default()
        };
        assert_eq!(
            config.local_detector(IpFamily::V4),
            Some(LocalDetector::Cidr("10.244.1.0/24".parse().expect("cidr")))
        );
        assert_eq!(config.local_detector(IpFamily::V6), None);
        let npa = config.node_port_addresses(IpFamily::V6);
        assert!(!npa.match_all);
        assert_eq!(npa.cidrs[0].to_string(), "fd00::2/128");
        assert!(
            !config
                .node_port_addresses(IpFamily::V4)
                .contains_ipv4_loopback
        );
    }
}

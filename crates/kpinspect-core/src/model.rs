//! The cluster objects kube-proxy reads, validated.
//!
//! These mirror the fields of `v1.Service` and `discovery.k8s.io/v1
//! EndpointSlice` that kube-proxy looks at, with strings already turned into
//! addresses, ports and enums. They are family-neutral: a dual-stack Service
//! carries both cluster IPs, and [`crate::proxy`] derives what one proxier
//! (one IP family) sees. The Kubernetes input edge (`kpinspect-k8s`) builds
//! them; tests and other programs may build them directly.

use std::net::IpAddr;

use crate::net::{IpFamily, IpNet};

/// A transport protocol of a Service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Lower-case name, as kube-proxy uses it in hashes and rules (`tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`).
    pub fn from_k8s(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `spec.type` of a Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
    #[default]
    ClusterIp,
    /// `NodePort`.
    NodePort,
    /// `LoadBalancer`.
    LoadBalancer,
    /// `ExternalName`: kube-proxy ignores it.
    ExternalName,
}

/// `externalTrafficPolicy` / `internalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum TrafficPolicy {
    /// `Cluster` (the default).
    #[default]
    Cluster,
    /// `Local`.
    Local,
}

/// `status.loadBalancer.ingress[].ipMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum IpMode {
    /// `VIP` (also when unset): kube-proxy captures traffic to the IP.
    #[default]
    Vip,
    /// `Proxy`: the load balancer proxies; kube-proxy writes no rule for it.
    Proxy,
}

/// One load-balancer ingress point with an IP.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoadBalancerIngress {
    /// The ingress IP, canonical.
    pub ip: IpAddr,
    /// How the load balancer delivers traffic.
    pub ip_mode: IpMode,
}

/// One entry of `spec.ports`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServicePort {
    /// The port name; empty for a single unnamed port.
    pub name: String,
    /// The protocol.
    pub protocol: Protocol,
    /// The service port.
    pub port: u16,
    /// The node port, 0 for none.
    pub node_port: u16,
}

/// A Service, as far as kube-proxy cares.
///
/// Built by `kpinspect_k8s` from kubectl output, or in code with
/// [`Service::new`] and its `with_` methods (or `Default` and struct
/// update):
///
/// ```
/// use kpinspect_core::config::ProxyConfig;
/// use kpinspect_core::model::{
///     AddressType, Cluster, Endpoint, EndpointPort, EndpointSlice, Protocol, Service,
///     ServicePort, ServiceType,
/// };
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_core::proxy::ProxyState;
///
/// let svc = Service::new("default", "web")
///     .with_type(ServiceType::NodePort)
///     .with_cluster_ip("10.96.0.10".parse().unwrap())
///     .with_port(ServicePort::new("http", Protocol::Tcp, 80).with_node_port(30080));
/// let slice = EndpointSlice::new("default", "web-abc12", "web", AddressType::Ipv4)
///     .with_port(EndpointPort::new("http", Protocol::Tcp, 8080))
///     .with_endpoint(Endpoint::new("10.244.0.5".parse().unwrap()).with_node_name("node-a"))
///     .with_endpoint(Endpoint::new("10.244.0.6".parse().unwrap()).terminating());
/// let cluster = Cluster { services: vec![svc], endpoint_slices: vec![slice] };
///
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&cluster, &config, IpFamily::V4);
/// let rules = kpinspect_core::mode::iptables::compile(&state, &config).render();
/// assert!(rules.contains("--comment \"default/web:http cluster IP\" -m tcp -p tcp -d 10.96.0.10 --dport 80"));
/// assert!(rules.contains("-m tcp -p tcp --dport 30080 -j KUBE-EXT-"));
/// assert!(rules.contains("--to-destination 10.244.0.5:8080"));
/// // The terminating endpoint gets no traffic while a ready one exists.
/// assert!(!rules.contains("--to-destination 10.244.0.6:8080"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.type`.
    pub service_type: ServiceType,
    /// `spec.clusterIPs` (or `spec.clusterIP`), canonical; empty when headless.
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.ports`.
    pub ports: Vec<ServicePort>,
    /// `spec.externalIPs` that parse, canonical, in order.
    pub external_ips: Vec<IpAddr>,
    /// Whether `spec.externalIPs` was non-empty as written (valid or not): the
    /// API's notion of "externally accessible" looks at the raw list.
    pub has_external_ips: bool,
    /// `status.loadBalancer.ingress` entries that have an IP, in order.
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
    /// `spec.loadBalancerSourceRanges` that parse, as networks, in order.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `spec.externalTrafficPolicy`.
    pub external_traffic_policy: TrafficPolicy,
    /// `spec.internalTrafficPolicy`.
    pub internal_traffic_policy: TrafficPolicy,
    /// `spec.healthCheckNodePort`, 0 for none.
    pub health_check_node_port: u16,
    /// `ClientIP` session affinity timeout in seconds, if affinity is on.
    pub session_affinity_timeout: Option<u32>,
}

impl ServicePort {
    /// A port `name` (empty for a single unnamed port) of `protocol` on
    /// `port`, without a node port.
    pub fn new(name: impl Into<String>, protocol: Protocol, port: u16) -> ServicePort {
        ServicePort {
            name: name.into(),
            protocol,
            port,
            node_port: 0,
        }
    }

    /// With `spec.ports[].nodePort`.
    pub fn with_node_port(mut self, node_port: u16) -> ServicePort {
        self.node_port = node_port;
        self
    }
}

impl Service {
    /// A `ClusterIP` Service `namespace/name` with no addresses or ports
    /// yet, both traffic policies `Cluster`, no session affinity.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Service {
        Service {
            namespace: namespace.into(),
            name: name.into(),
            ..Service::default()
        }
    }

    /// With `spec.type`.
    pub fn with_type(mut self, service_type: ServiceType) -> Service {
        self.service_type = service_type;
        self
    }

    /// With one more cluster IP (`spec.clusterIPs`; the first is
    /// `spec.clusterIP`).
    pub fn with_cluster_ip(mut self, ip: IpAddr) -> Service {
        self.cluster_ips.push(ip);
        self
    }

    /// With one more port.
    pub fn with_port(mut self, port: ServicePort) -> Service {
        self.ports.push(port);
        self
    }

    /// With one more external IP (`spec.externalIPs`).
    pub fn with_external_ip(mut self, ip: IpAddr) -> Service {
        self.external_ips.push(ip);
        self.has_external_ips = true;
        self
    }

    /// With one more load-balancer ingress IP (`ipMode: VIP`).
    pub fn with_load_balancer_ip(mut self, ip: IpAddr) -> Service {
        self.load_balancer_ingress.push(LoadBalancerIngress {
            ip,
            ip_mode: IpMode::Vip,
        });
        self
    }

    /// With one more `spec.loadBalancerSourceRanges` entry.
    pub fn with_load_balancer_source_range(mut self, range: IpNet) -> Service {
        self.load_balancer_source_ranges.push(range);
        self
    }

    /// With `spec.externalTrafficPolicy`.
    pub fn with_external_traffic_policy(mut self, policy: TrafficPolicy) -> Service {
        self.external_traffic_policy = policy;
        self
    }

    /// With `spec.internalTrafficPolicy`.
    pub fn with_internal_traffic_policy(mut self, policy: TrafficPolicy) -> Service {
        self.internal_traffic_policy = policy;
        self
    }

    /// With `spec.healthCheckNodePort`.
    pub fn with_health_check_node_port(mut self, port: u16) -> Service {
        self.health_check_node_port = port;
        self
    }

    /// With `sessionAffinity: ClientIP` and its timeout in seconds.
    pub fn with_session_affinity(mut self, timeout_seconds: u32) -> Service {
        self.session_affinity_timeout = Some(timeout_seconds);
        self
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The cluster IP of `family`, if any (the first one of that family).
    pub fn cluster_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.cluster_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }

    /// The API's `ExternallyAccessible`: NodePort and LoadBalancer services,
    /// and ClusterIP services with external IPs.
    pub fn externally_accessible(&self) -> bool {
        match self.service_type {
            ServiceType::LoadBalancer | ServiceType::NodePort => true,
            ServiceType::ClusterIp => self.has_external_ips,
            ServiceType::ExternalName => false,
        }
    }

    /// `externalTrafficPolicy: Local` on an externally accessible service.
    pub fn external_policy_local(&self) -> bool {
        self.externally_accessible() && self.external_traffic_policy == TrafficPolicy::Local
    }

    /// `internalTrafficPolicy: Local`.
    pub fn internal_policy_local(&self) -> bool {
        self.internal_traffic_policy == TrafficPolicy::Local
    }
}

/// `addressType` of an EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AddressType {
    /// `IPv4`.
    Ipv4,
    /// `IPv6`.
    Ipv6,
    /// `FQDN`: kube-proxy ignores such slices.
    Fqdn,
}

impl AddressType {
    /// The IP family, if this is an IP address type.
    pub fn family(self) -> Option<IpFamily> {
        match self {
            AddressType::Ipv4 => Some(IpFamily::V4),
            AddressType::Ipv6 => Some(IpFamily::V6),
            AddressType::Fqdn => None,
        }
    }
}

/// One entry of an EndpointSlice's `ports`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointPort {
    /// The port name; `None` when unset (kube-proxy skips such ports).
    pub name: Option<String>,
    /// The target port number; `None` when unset (skipped too).
    pub port: Option<u16>,
    /// The protocol (TCP when unset).
    pub protocol: Protocol,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    /// The first address of `addresses` (the only one kube-proxy uses),
    /// canonical; `None` when the list is empty or the address does not parse.
    pub address: Option<IpAddr>,
    /// `conditions.ready` (unset means ready).
    pub ready: bool,
    /// `conditions.serving` (unset means serving).
    pub serving: bool,
    /// `conditions.terminating` (unset means not terminating).
    pub terminating: bool,
    /// `nodeName`.
    pub node_name: Option<String>,
    /// `hints.forZones[].name`.
    pub zone_hints: Vec<String>,
    /// `hints.forNodes[].name`.
    pub node_hints: Vec<String>,
}

impl EndpointPort {
    /// A port `name` (empty for an unnamed one) of `protocol` on `port`.
    pub fn new(name: impl Into<String>, protocol: Protocol, port: u16) -> EndpointPort {
        EndpointPort {
            name: Some(name.into()),
            port: Some(port),
            protocol,
        }
    }
}

impl Endpoint {
    /// A ready, serving, not terminating endpoint at `address`, on no
    /// particular node, without topology hints.
    pub fn new(address: IpAddr) -> Endpoint {
        Endpoint {
            address: Some(address),
            ready: true,
            serving: true,
            terminating: false,
            node_name: None,
            zone_hints: Vec::new(),
            node_hints: Vec::new(),
        }
    }

    /// On node `name` (`nodeName`).
    pub fn with_node_name(mut self, name: impl Into<String>) -> Endpoint {
        self.node_name = Some(name.into());
        self
    }

    /// Terminating: not ready, still serving (a pod being deleted).
    pub fn terminating(mut self) -> Endpoint {
        self.ready = false;
        self.terminating = true;
        self
    }

    /// Not ready and not serving.
    pub fn not_ready(mut self) -> Endpoint {
        self.ready = false;
        self.serving = false;
        self
    }

    /// With one more zone hint (`hints.forZones[].name`).
    pub fn with_zone_hint(mut self, zone: impl Into<String>) -> Endpoint {
        self.zone_hints.push(zone.into());
        self
    }

    /// With one more node hint (`hints.forNodes[].name`).
    pub fn with_node_hint(mut self, node: impl Into<String>) -> Endpoint {
        self.node_hints.push(node.into());
        self
    }
}

impl EndpointSlice {
    /// An empty slice `namespace/name` of the Service `service_name` (its
    /// `kubernetes.io/service-name` label).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        service_name: impl Into<String>,
        address_type: AddressType,
    ) -> EndpointSlice {
        EndpointSlice {
            namespace: namespace.into(),
            name: name.into(),
            service_name: service_name.into(),
            address_type,
            ports: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// With one more port.
    pub fn with_port(mut self, port: EndpointPort) -> EndpointSlice {
        self.ports.push(port);
        self
    }

    /// With one more endpoint.
    pub fn with_endpoint(mut self, endpoint: Endpoint) -> EndpointSlice {
        self.endpoints.push(endpoint);
        self
    }
}

/// An EndpointSlice (or a legacy Endpoints object converted to one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointSlice {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The `kubernetes.io/service-name` label: the Service it belongs to.
    pub service_name: String,
    /// `addressType`.
    pub address_type: AddressType,
    /// `ports`.
    pub ports: Vec<EndpointPort>,
    /// `endpoints`.
    pub endpoints: Vec<Endpoint>,
}

/// Every Service and EndpointSlice the node's kube-proxy would see.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Cluster {
    /// Services.
    pub services: Vec<Service>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<EndpointSlice>,
}

impl Cluster {
    /// Adds the objects of `other`.
    pub fn extend(&mut self, other: Cluster) {
        self.services.extend(other.services);
        self.endpoint_slices.extend(other.endpoint_slices);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_fill_what_kubectl_output_would() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let svc = Service::new("ns", "lb")
            .with_type(ServiceType::LoadBalancer)
            .with_cluster_ip(ip("10.0.0.1"))
            .with_cluster_ip(ip("fd00::1"))
            .with_port(ServicePort::new("p", Protocol::Udp, 53).with_node_port(30053))
            .with_external_ip(ip("192.0.2.1"))
            .with_load_balancer_ip(ip("198.51.100.1"))
            .with_external_traffic_policy(TrafficPolicy::Local)
            .with_health_check_node_port(32000)
            .with_session_affinity(300);
        assert_eq!(svc.key(), "ns/lb");
        assert_eq!(svc.cluster_ip(IpFamily::V6), Some(ip("fd00::1")));
        assert!(svc.has_external_ips && svc.external_policy_local());
        assert_eq!(svc.ports[0].node_port, 30053);
        assert_eq!(svc.load_balancer_ingress[0].ip_mode, IpMode::Vip);
        assert_eq!(Service::new("a", "b").service_type, ServiceType::ClusterIp);
        let e = Endpoint::new(ip("10.1.0.1")).terminating();
        assert!(!e.ready && e.serving && e.terminating);
        let e = Endpoint::new(ip("10.1.0.1")).not_ready();
        assert!(!e.ready && !e.serving && !e.terminating);
        let slice = EndpointSlice::new("ns", "lb-1", "lb", AddressType::Ipv4)
            .with_port(EndpointPort::new("p", Protocol::Udp, 5353))
            .with_endpoint(Endpoint::new(ip("10.1.0.2")).with_zone_hint("z"));
        assert_eq!(slice.ports[0].port, Some(5353));
        assert_eq!(slice.endpoints[0].zone_hints, ["z"]);
    }
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ServiceType {
    /// `ClusterIP` (the default).
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
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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

impl Service {
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

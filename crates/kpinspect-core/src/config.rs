//! The node's kube-proxy configuration and the host facts kube-proxy detects
//! at start-up, as plain values.
//!
//! [`ProxyConfig`] follows the layout of `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`): the settings every mode reads
//! (`mode`, `clusterCIDR`, `detectLocalMode`, `nodePortAddresses`,
//! `featureGates`, `conntrack`) at the top, one block per mode
//! ([`iptables`](ProxyConfig::iptables), [`ipvs`](ProxyConfig::ipvs),
//! [`nftables`](ProxyConfig::nftables)), and the [node facts](NodeFacts)
//! kube-proxy learns at start-up from the Node object and the host. Like
//! kube-proxy, the IPVS mode reads the `iptables` block for its masquerade
//! bit and `masqueradeAll`.
//!
//! Results derived from it are typed, never rule text: the
//! [`LocalDetector`] and the [`NodePortAddresses`] of one family are
//! rendered by each mode.

use std::net::IpAddr;
use std::time::Duration;

use crate::net::{IpFamily, IpNet};

/// The proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum ProxyMode {
    /// `iptables` (the Linux default).
    #[default]
    Iptables,
    /// `ipvs`.
    Ipvs,
    /// `nftables`.
    Nftables,
}

/// How kube-proxy tells pod traffic from other traffic (`detectLocalMode`
/// with its `detectLocal` parameters).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub enum DetectLocal {
    /// `ClusterCIDR` (the default): from the `clusterCIDR` of the family.
    #[default]
    ClusterCidr,
    /// `NodeCIDR`: from the node's pod CIDR of the family.
    NodeCidr,
    /// `BridgeInterface`: arriving on `detectLocal.bridgeInterface`.
    BridgeInterface(String),
    /// `InterfaceNamePrefix`: arriving on an interface whose name starts with
    /// `detectLocal.interfaceNamePrefix`.
    InterfaceNamePrefix(String),
}

/// `nodePortAddresses`: which node addresses NodePort services are served
/// on. The keyword `primary` is valid only alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum NodePortAddressesConfig {
    /// Every address of the node (the default in iptables and IPVS mode).
    All,
    /// `primary`: the node's primary IP of each family, unless it is
    /// loopback (the default in nftables mode).
    Primary,
    /// The node's addresses within these CIDRs, per family; a family without
    /// CIDRs, or with a `/0`, serves on every address.
    Cidrs(Vec<IpNet>),
}

/// The feature gates (`featureGates`) that change what kube-proxy programs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FeatureGates {
    /// `PreferSameTrafficDistribution` (node hints; on by default).
    pub prefer_same_traffic_distribution: bool,
}

impl Default for FeatureGates {
    fn default() -> Self {
        FeatureGates {
            prefer_same_traffic_distribution: true,
        }
    }
}

/// `conntrack`: of the conntrack settings kube-proxy applies at start-up,
/// the one that changes its rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConntrackConfig {
    /// `conntrack.tcpBeLiberal`: kube-proxy sets
    /// `net.netfilter.nf_conntrack_tcp_be_liberal` at start-up.
    pub tcp_be_liberal: bool,
}

/// `iptables`, plus the iptables proxier's fixed settings. The IPVS mode
/// reads [`masquerade_bit`](Self::masquerade_bit) and
/// [`masquerade_all`](Self::masquerade_all) from here too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IptablesConfig {
    /// `iptables.masqueradeBit` (default 14).
    pub masquerade_bit: u32,
    /// `iptables.masqueradeAll`.
    pub masquerade_all: bool,
    /// `iptables.localhostNodePorts` (default true).
    pub localhost_node_ports: bool,
    /// Literal mark text to print instead of the one derived from
    /// [`masquerade_bit`](Self::masquerade_bit) (kube-proxy's unit tests use
    /// `0x4000`); not a `KubeProxyConfiguration` field.
    pub masquerade_mark: Option<String>,
    /// Endpoint count above which the iptables proxier drops endpoint
    /// comments (its constant `largeClusterEndpointsThreshold`, 1000).
    pub large_cluster_threshold: usize,
}

impl Default for IptablesConfig {
    fn default() -> Self {
        IptablesConfig {
            masquerade_bit: 14,
            masquerade_all: false,
            localhost_node_ports: true,
            masquerade_mark: None,
            large_cluster_threshold: 1000,
        }
    }
}

/// `ipvs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct IpvsConfig {
    /// `ipvs.scheduler` (empty means `rr`).
    pub scheduler: String,
    /// `ipvs.strictARP`.
    pub strict_arp: bool,
    /// `ipvs.excludeCIDRs`: IPVS services kube-proxy never deletes.
    pub exclude_cidrs: Vec<IpNet>,
    /// `ipvs.tcpTimeout` (zero keeps the system's value).
    pub tcp_timeout: Duration,
    /// `ipvs.tcpFinTimeout` (zero keeps the system's value).
    pub tcp_fin_timeout: Duration,
    /// `ipvs.udpTimeout` (zero keeps the system's value).
    pub udp_timeout: Duration,
}

/// `nftables`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NftablesConfig {
    /// `nftables.masqueradeBit` (default 14).
    pub masquerade_bit: u32,
    /// `nftables.masqueradeAll`.
    pub masquerade_all: bool,
    /// Literal mark text to print instead of the one derived from
    /// [`masquerade_bit`](Self::masquerade_bit) (kube-proxy's unit tests use
    /// `0x4000`); not a `KubeProxyConfiguration` field.
    pub masquerade_mark: Option<String>,
}

impl Default for NftablesConfig {
    fn default() -> Self {
        NftablesConfig {
            masquerade_bit: 14,
            masquerade_all: false,
            masquerade_mark: None,
        }
    }
}

/// What kube-proxy learns about its node at start-up: from the Node object
/// and from the host (kernel, iptables binary, sysctls). Defaults are those
/// of a current node. Built from [`NodeFacts::new`] (or `default()`) with
/// the `with_*` setters; its fields stay readable and assignable, and new
/// ones may come (`#[non_exhaustive]`).
///
/// ```
/// use kpinspect_core::config::NodeFacts;
/// let node = NodeFacts::new("node1").with_ips(["192.168.0.2".parse().unwrap()]);
/// assert_eq!((node.name.as_str(), node.ips.len(), node.nfacct), ("node1", 1, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NodeFacts {
    /// The node name (`hostnameOverride`, else the hostname; trimmed and
    /// lower-cased).
    pub name: String,
    /// The node's `topology.kubernetes.io/zone` label, for topology hints.
    pub zone: Option<String>,
    /// The node's addresses; the first of each family is the primary node IP.
    pub ips: Vec<IpAddr>,
    /// The node's `spec.podCIDRs` (for `detectLocalMode: NodeCIDR`).
    pub pod_cidrs: Vec<IpNet>,
    /// Whether nfacct counters can be created (kernel + iptables support).
    pub nfacct: bool,
    /// Whether iptables supports `MASQUERADE --random-fully` (>= 1.6.2).
    pub random_fully: bool,
    /// Whether `net.netfilter.nf_conntrack_tcp_be_liberal` is already set on
    /// the host (see [`ProxyConfig::tcp_be_liberal`]).
    pub tcp_be_liberal: bool,
    /// Whether nftables accepts comments on tables, chains, sets and maps
    /// (kernel >= 5.10 and nft >= 0.9.7): knftables probes it once and,
    /// without it, drops every object comment (rule and element comments
    /// stay). Only nftables mode reads it.
    pub nft_object_comments: bool,
}

impl Default for NodeFacts {
    fn default() -> Self {
        NodeFacts {
            name: String::new(),
            zone: None,
            ips: Vec::new(),
            pod_cidrs: Vec::new(),
            nfacct: true,
            random_fully: true,
            tcp_be_liberal: false,
            nft_object_comments: true,
        }
    }
}

impl NodeFacts {
    /// A current node named `name` (the defaults otherwise).
    pub fn new(name: impl Into<String>) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            ..NodeFacts::default()
        }
    }

    /// With its zone label ([`NodeFacts::zone`]).
    pub fn with_zone(mut self, zone: impl Into<String>) -> NodeFacts {
        self.zone = Some(zone.into());
        self
    }

    /// With its addresses ([`NodeFacts::ips`]).
    pub fn with_ips(mut self, ips: impl IntoIterator<Item = IpAddr>) -> NodeFacts {
        self.ips = ips.into_iter().collect();
        self
    }

    /// With its `spec.podCIDRs` ([`NodeFacts::pod_cidrs`]).
    pub fn with_pod_cidrs(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> NodeFacts {
        self.pod_cidrs = cidrs.into_iter().collect();
        self
    }

    /// Whether nfacct counters can be created ([`NodeFacts::nfacct`]).
    pub fn with_nfacct(mut self, supported: bool) -> NodeFacts {
        self.nfacct = supported;
        self
    }

    /// Whether iptables supports `--random-fully`
    /// ([`NodeFacts::random_fully`]).
    pub fn with_random_fully(mut self, supported: bool) -> NodeFacts {
        self.random_fully = supported;
        self
    }

    /// Whether the host already sets `nf_conntrack_tcp_be_liberal`
    /// ([`NodeFacts::tcp_be_liberal`]).
    pub fn with_tcp_be_liberal(mut self, set: bool) -> NodeFacts {
        self.tcp_be_liberal = set;
        self
    }

    /// Whether nftables accepts object comments
    /// ([`NodeFacts::nft_object_comments`]).
    pub fn with_nft_object_comments(mut self, supported: bool) -> NodeFacts {
        self.nft_object_comments = supported;
        self
    }

    /// The primary node IP of `family`.
    pub fn primary_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }
}

/// Everything that decides what kube-proxy programs, besides the cluster
/// objects. Defaults are kube-proxy's defaults on a current node. Built
/// from [`ProxyConfig::new`] (or `default()`) with the `with_*` setters;
/// its fields (and theirs) stay readable and assignable, and new ones may
/// come (`#[non_exhaustive]`).
///
/// ```
/// use kpinspect_core::config::{NodeFacts, ProxyConfig, ProxyMode};
/// let config = ProxyConfig::new()
///     .with_mode(ProxyMode::Nftables)
///     .with_node(NodeFacts::new("node1"))
///     .with_cluster_cidrs(["10.244.0.0/16".parse().unwrap()]);
/// assert_eq!((config.mode, config.node.name.as_str()), (ProxyMode::Nftables, "node1"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// `mode`.
    pub mode: ProxyMode,
    /// What kube-proxy learns about the node at start-up.
    pub node: NodeFacts,
    /// `clusterCIDR`, one per family at most.
    pub cluster_cidrs: Vec<IpNet>,
    /// `detectLocalMode` with its `detectLocal` parameters.
    pub detect_local: DetectLocal,
    /// The cluster's service CIDRs (its `ServiceCIDR` objects, both
    /// families), which kube-proxy learns from the API server; nftables mode
    /// drops traffic to their unallocated addresses. Empty when unknown.
    pub service_cidrs: Vec<IpNet>,
    /// `nodePortAddresses`; `None` when unset, which means the mode's
    /// default (see [`ProxyConfig::node_port_addresses_config`]).
    pub node_port_addresses: Option<NodePortAddressesConfig>,
    /// `featureGates`.
    pub feature_gates: FeatureGates,
    /// `conntrack`.
    pub conntrack: ConntrackConfig,
    /// `iptables`.
    pub iptables: IptablesConfig,
    /// `ipvs`.
    pub ipvs: IpvsConfig,
    /// `nftables`.
    pub nftables: NftablesConfig,
}

impl ProxyConfig {
    /// kube-proxy's defaults (iptables mode) on a current node with no name
    /// or addresses.
    pub fn new() -> ProxyConfig {
        ProxyConfig::default()
    }

    /// With `mode` ([`ProxyConfig::mode`]).
    pub fn with_mode(mut self, mode: ProxyMode) -> ProxyConfig {
        self.mode = mode;
        self
    }

    /// With what kube-proxy learns about the node ([`ProxyConfig::node`]).
    pub fn with_node(mut self, node: NodeFacts) -> ProxyConfig {
        self.node = node;
        self
    }

    /// With `clusterCIDR` ([`ProxyConfig::cluster_cidrs`]).
    pub fn with_cluster_cidrs(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> ProxyConfig {
        self.cluster_cidrs = cidrs.into_iter().collect();
        self
    }

    /// With `detectLocalMode` ([`ProxyConfig::detect_local`]).
    pub fn with_detect_local(mut self, detect_local: DetectLocal) -> ProxyConfig {
        self.detect_local = detect_local;
        self
    }

    /// With the cluster's service CIDRs ([`ProxyConfig::service_cidrs`]).
    pub fn with_service_cidrs(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> ProxyConfig {
        self.service_cidrs = cidrs.into_iter().collect();
        self
    }

    /// With `nodePortAddresses` ([`ProxyConfig::node_port_addresses`]).
    pub fn with_node_port_addresses(mut self, addresses: NodePortAddressesConfig) -> ProxyConfig {
        self.node_port_addresses = Some(addresses);
        self
    }

    /// With `featureGates` ([`ProxyConfig::feature_gates`]).
    pub fn with_feature_gates(mut self, gates: FeatureGates) -> ProxyConfig {
        self.feature_gates = gates;
        self
    }

    /// With `conntrack` ([`ProxyConfig::conntrack`]).
    pub fn with_conntrack(mut self, conntrack: ConntrackConfig) -> ProxyConfig {
        self.conntrack = conntrack;
        self
    }

    /// With `iptables` ([`ProxyConfig::iptables`]).
    pub fn with_iptables(mut self, iptables: IptablesConfig) -> ProxyConfig {
        self.iptables = iptables;
        self
    }

    /// With `ipvs` ([`ProxyConfig::ipvs`]).
    pub fn with_ipvs(mut self, ipvs: IpvsConfig) -> ProxyConfig {
        self.ipvs = ipvs;
        self
    }

    /// With `nftables` ([`ProxyConfig::nftables`]).
    pub fn with_nftables(mut self, nftables: NftablesConfig) -> ProxyConfig {
        self.nftables = nftables;
        self
    }

    /// The family a single-stack run should compile for: that of the first
    /// node IP, else of the cluster CIDRs if all are IPv6, else IPv4.
    pub fn default_family(&self) -> IpFamily {
        if let Some(ip) = self.node.ips.first() {
            return IpFamily::of(ip);
        }
        if !self.cluster_cidrs.is_empty()
            && self
                .cluster_cidrs
                .iter()
                .all(|c| IpFamily::of_net(c) == IpFamily::V6)
        {
            return IpFamily::V6;
        }
        IpFamily::V4
    }

    /// Whether conntrack is liberal once kube-proxy runs, so that its rules
    /// need not drop `INVALID` packets: `conntrack.tcpBeLiberal` sets the
    /// sysctl at start-up, and the proxiers read the sysctl.
    pub fn tcp_be_liberal(&self) -> bool {
        self.conntrack.tcp_be_liberal || self.node.tcp_be_liberal
    }

    /// `nodePortAddresses` with the mode's default when unset: `primary` in
    /// nftables mode, every address otherwise.
    ///
    /// ```
    /// use kpinspect_core::config::{NodePortAddressesConfig, ProxyConfig, ProxyMode};
    /// let mut config = ProxyConfig::default();
    /// assert_eq!(config.node_port_addresses_config(), NodePortAddressesConfig::All);
    /// config.mode = ProxyMode::Nftables;
    /// assert_eq!(config.node_port_addresses_config(), NodePortAddressesConfig::Primary);
    /// ```
    pub fn node_port_addresses_config(&self) -> NodePortAddressesConfig {
        match (&self.node_port_addresses, self.mode) {
            (Some(c), _) => c.clone(),
            (None, ProxyMode::Nftables) => NodePortAddressesConfig::Primary,
            (None, _) => NodePortAddressesConfig::All,
        }
    }

    /// The local-traffic detector of `family`: what "from a pod on this
    /// node/cluster" means, or `None` when the configuration gives no way
    /// to tell (no CIDR of the family, an empty interface name).
    pub fn local_detector(&self, family: IpFamily) -> Option<LocalDetector> {
        let first_of = |cidrs: &[IpNet]| {
            cidrs
                .iter()
                .find(|c| IpFamily::of_net(c) == family)
                .map(|c| LocalDetector::Cidr(*c))
        };
        match &self.detect_local {
            DetectLocal::ClusterCidr => first_of(&self.cluster_cidrs),
            DetectLocal::NodeCidr => first_of(&self.node.pod_cidrs),
            DetectLocal::BridgeInterface(i) if !i.is_empty() => {
                Some(LocalDetector::Interface(i.clone()))
            }
            DetectLocal::InterfaceNamePrefix(p) if !p.is_empty() => {
                Some(LocalDetector::InterfacePrefix(p.clone()))
            }
            _ => None,
        }
    }

    /// `nodePortAddresses` of `family`, as kube-proxy's
    /// `NewNodePortAddresses` reads it: the CIDRs of this family (`primary`
    /// standing for the node's non-loopback primary IPs); none for this
    /// family, or a `/0`, means every address.
    pub fn node_port_addresses(&self, family: IpFamily) -> NodePortAddresses {
        let entries: Vec<IpNet> = match self.node_port_addresses_config() {
            NodePortAddressesConfig::All => Vec::new(),
            NodePortAddressesConfig::Primary => [IpFamily::V4, IpFamily::V6]
                .into_iter()
                .filter_map(|f| self.node.primary_ip(f))
                .filter(|ip| !ip.is_loopback())
                .map(|ip| IpNet::from(ip.to_canonical()))
                .collect(),
            NodePortAddressesConfig::Cidrs(cidrs) => cidrs,
        };
        let mut cidrs = Vec::new();
        let mut contains_loopback = false;
        let mut match_all = false;
        for net in entries {
            if IpFamily::of_net(&net) != family {
                continue;
            }
            if family == IpFamily::V4
                && (net.addr().is_loopback()
                    || net.contains(&IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 0))))
            {
                contains_loopback = true;
            }
            if net.prefix_len() == 0 {
                cidrs = vec![net];
                match_all = true;
                break;
            }
            cidrs.push(net);
        }
        if cidrs.is_empty() {
            match_all = true;
            contains_loopback = family == IpFamily::V4;
        }
        NodePortAddresses {
            cidrs,
            match_all,
            contains_ipv4_loopback: contains_loopback,
        }
    }
}

/// The local-traffic detector of one family: how traffic from local pods is
/// recognised. Each mode renders it in its own rule language.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum LocalDetector {
    /// The source address is in this CIDR (`ClusterCIDR`, `NodeCIDR`).
    Cidr(IpNet),
    /// The packet arrives on this interface (`BridgeInterface`).
    Interface(String),
    /// The packet arrives on an interface whose name starts with this
    /// prefix (`InterfaceNamePrefix`).
    InterfacePrefix(String),
}

/// `nodePortAddresses` of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePortAddresses {
    /// The CIDRs of this family.
    pub cidrs: Vec<IpNet>,
    /// Whether every address matches (no CIDRs, or a `/0`).
    pub match_all: bool,
    /// Whether a CIDR is loopback or holds `127.0.0.0` (kube-proxy's
    /// `ContainsIPv4Loopback`); localhost node ports need it.
    pub contains_ipv4_loopback: bool,
}

impl NodePortAddresses {
    /// Whether `ip` is one of the addresses node ports are served on.
    pub fn matches(&self, ip: &IpAddr) -> bool {
        self.match_all || self.cidrs.iter().any(|c| c.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn node(ips: &[&str]) -> NodeFacts {
        NodeFacts {
            ips: ips.iter().map(|ip| ip.parse().expect("ip")).collect(),
            ..NodeFacts::default()
        }
    }

    #[test]
    fn node_port_addresses_per_family() {
        let mut config = ProxyConfig {
            node: node(&["192.168.0.2", "10.0.0.2", "fd00::2"]),
            ..ProxyConfig::default()
        };
        let all = config.node_port_addresses(IpFamily::V4);
        assert!(all.match_all && all.contains_ipv4_loopback && all.cidrs.is_empty());
        let all6 = config.node_port_addresses(IpFamily::V6);
        assert!(all6.match_all && !all6.contains_ipv4_loopback);

        // Unset in nftables mode: the primary IP of each family.
        config.mode = ProxyMode::Nftables;
        let v4 = config.node_port_addresses(IpFamily::V4);
        assert_eq!(v4.cidrs, [net("192.168.0.2/32")]);
        assert!(!v4.match_all && !v4.contains_ipv4_loopback);
        assert!(v4.matches(&"192.168.0.2".parse().expect("ip")));
        assert!(!v4.matches(&"10.0.0.2".parse().expect("ip")));
        assert_eq!(
            config.node_port_addresses(IpFamily::V6).cidrs,
            [net("fd00::2/128")]
        );

        // A loopback primary IP is not served on: that family matches all.
        config.node = node(&["127.0.0.1"]);
        assert!(config.node_port_addresses(IpFamily::V4).match_all);

        // CIDRs: this family's; a /0 means every address.
        config.node_port_addresses = Some(NodePortAddressesConfig::Cidrs(vec![
            net("127.0.0.0/8"),
            net("10.0.0.0/8"),
            net("2001:db8::/64"),
        ]));
        let v4 = config.node_port_addresses(IpFamily::V4);
        assert_eq!(v4.cidrs, [net("127.0.0.0/8"), net("10.0.0.0/8")]);
        assert!(!v4.match_all && v4.contains_ipv4_loopback);
        config.node_port_addresses = Some(NodePortAddressesConfig::Cidrs(vec![
            net("10.0.0.0/8"),
            net("0.0.0.0/0"),
        ]));
        let v4 = config.node_port_addresses(IpFamily::V4);
        assert_eq!((v4.cidrs, v4.match_all), (vec![net("0.0.0.0/0")], true));
        assert!(
            config.node_port_addresses(IpFamily::V6).match_all,
            "no IPv6 CIDR"
        );
        config.node_port_addresses = Some(NodePortAddressesConfig::All);
        assert!(config.node_port_addresses(IpFamily::V4).match_all);
    }

    #[test]
    fn local_detectors_are_per_family() {
        let mut config = ProxyConfig {
            cluster_cidrs: vec![net("10.0.0.0/8"), net("fd00:10::/64")],
            ..ProxyConfig::default()
        };
        assert_eq!(
            config.local_detector(IpFamily::V6),
            Some(LocalDetector::Cidr(net("fd00:10::/64")))
        );
        config.detect_local = DetectLocal::NodeCidr;
        assert_eq!(config.local_detector(IpFamily::V4), None, "no pod CIDR");
        config.detect_local = DetectLocal::InterfaceNamePrefix(String::new());
        assert_eq!(config.local_detector(IpFamily::V4), None, "empty prefix");
        config.detect_local = DetectLocal::InterfaceNamePrefix("veth".into());
        assert_eq!(
            config.local_detector(IpFamily::V6),
            Some(LocalDetector::InterfacePrefix("veth".into()))
        );
    }

    #[test]
    fn tcp_be_liberal_from_the_setting_or_the_host() {
        let mut config = ProxyConfig::default();
        assert!(!config.tcp_be_liberal());
        config.node.tcp_be_liberal = true;
        assert!(config.tcp_be_liberal(), "the sysctl was already set");
        config.node.tcp_be_liberal = false;
        config.conntrack.tcp_be_liberal = true;
        assert!(config.tcp_be_liberal(), "kube-proxy sets it at start-up");
    }
}

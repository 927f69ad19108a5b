//! The node's kube-proxy configuration and the host facts kube-proxy detects
//! at start-up, as plain values.

use std::net::IpAddr;

use crate::net::{IpFamily, IpNet};

/// The proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum ProxyMode {
    /// `iptables` (the Linux default).
    #[default]
    Iptables,
    /// `ipvs`.
    Ipvs,
    /// `nftables`: recognised in configurations, not compiled by kpinspect.
    Nftables,
}

/// How kube-proxy tells pod traffic from other traffic (`detectLocalMode`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub enum DetectLocal {
    /// `ClusterCIDR` (the default): `-s <clusterCIDR>`.
    #[default]
    ClusterCidr,
    /// `NodeCIDR`: `-s <node podCIDR>`.
    NodeCidr,
    /// `BridgeInterface`: `-i <bridge>`.
    BridgeInterface(String),
    /// `InterfaceNamePrefix`: `-i <prefix>+`.
    InterfaceNamePrefix(String),
}

/// Everything that decides what kube-proxy programs, besides the cluster
/// objects. Defaults are kube-proxy's defaults on a current node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyConfig {
    /// `mode`.
    pub mode: ProxyMode,
    /// The node name (`hostnameOverride`, trimmed and lower-cased).
    pub node_name: String,
    /// The node's `topology.kubernetes.io/zone` label, for topology hints.
    pub node_zone: Option<String>,
    /// The node's addresses; the first of each family is the primary node IP.
    pub node_ips: Vec<IpAddr>,
    /// The node's `spec.podCIDRs` (for `detectLocalMode: NodeCIDR`).
    pub node_pod_cidrs: Vec<IpNet>,
    /// `clusterCIDR`, one per family at most.
    pub cluster_cidrs: Vec<IpNet>,
    /// `detectLocalMode` with its `detectLocal` parameters.
    pub detect_local: DetectLocal,
    /// `iptables.masqueradeBit` (default 14).
    pub masquerade_bit: u32,
    /// Overrides the mark text (kube-proxy's unit tests use `0x4000`).
    pub masquerade_mark: Option<String>,
    /// `iptables.masqueradeAll`.
    pub masquerade_all: bool,
    /// `iptables.localhostNodePorts` (default true).
    pub localhost_node_ports: bool,
    /// `nodePortAddresses`: CIDRs, or `primary`; empty means all addresses.
    pub node_port_addresses: Vec<String>,
    /// Whether `net.netfilter.nf_conntrack_tcp_be_liberal` is set
    /// (`conntrack.tcpBeLiberal`): no INVALID drop rule then.
    pub tcp_be_liberal: bool,
    /// Whether nfacct counters can be created (kernel + iptables support).
    pub nfacct: bool,
    /// Whether iptables supports `MASQUERADE --random-fully` (>= 1.6.2).
    pub random_fully: bool,
    /// Feature gate `PreferSameTrafficDistribution` (node hints).
    pub prefer_same_traffic_distribution: bool,
    /// Endpoint count above which kube-proxy drops endpoint comments (1000).
    pub large_cluster_threshold: usize,
    /// `ipvs.scheduler` (empty means `rr`).
    pub ipvs_scheduler: String,
    /// `ipvs.strictARP`.
    pub ipvs_strict_arp: bool,
    /// `ipvs.excludeCIDRs`.
    pub ipvs_exclude_cidrs: Vec<IpNet>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            mode: ProxyMode::Iptables,
            node_name: String::new(),
            node_zone: None,
            node_ips: Vec::new(),
            node_pod_cidrs: Vec::new(),
            cluster_cidrs: Vec::new(),
            detect_local: DetectLocal::ClusterCidr,
            masquerade_bit: 14,
            masquerade_mark: None,
            masquerade_all: false,
            localhost_node_ports: true,
            node_port_addresses: Vec::new(),
            tcp_be_liberal: false,
            nfacct: true,
            random_fully: true,
            prefer_same_traffic_distribution: true,
            large_cluster_threshold: 1000,
            ipvs_scheduler: String::new(),
            ipvs_strict_arp: false,
            ipvs_exclude_cidrs: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// The masquerade mark as kube-proxy prints it: Go's `%#08x` of
    /// `1 << masqueradeBit` (`0x00004000` for bit 14), unless overridden.
    pub fn mark(&self) -> String {
        match &self.masquerade_mark {
            Some(m) => m.clone(),
            None => format!("0x{:08x}", 1u64 << self.masquerade_bit),
        }
    }

    /// The primary node IP of `family`.
    pub fn primary_node_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.node_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }

    /// The family a single-stack run should compile for: that of the first
    /// node IP, else of the cluster CIDRs if all are IPv6, else IPv4.
    pub fn default_family(&self) -> IpFamily {
        if let Some(ip) = self.node_ips.first() {
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

    /// The local-traffic detector of `family`: the match that means "from a
    /// pod on this node/cluster", or `None` when it is not implemented.
    pub fn local_detector(&self, family: IpFamily) -> Option<LocalDetector> {
        let first_of = |cidrs: &[IpNet]| {
            cidrs
                .iter()
                .find(|c| IpFamily::of_net(c) == family)
                .map(|c| LocalDetector::Source(c.to_string()))
        };
        match &self.detect_local {
            DetectLocal::ClusterCidr => first_of(&self.cluster_cidrs),
            DetectLocal::NodeCidr => first_of(&self.node_pod_cidrs),
            DetectLocal::BridgeInterface(i) if !i.is_empty() => {
                Some(LocalDetector::Interface(i.clone()))
            }
            DetectLocal::InterfaceNamePrefix(p) if !p.is_empty() => {
                Some(LocalDetector::Interface(format!("{p}+")))
            }
            _ => None,
        }
    }

    /// Parsed `nodePortAddresses` for `family`, as kube-proxy's
    /// `NewNodePortAddresses` reads it: the CIDRs of this family (`primary`,
    /// alone, standing for the node's non-loopback primary IPs); none for
    /// this family, or a `/0`, means every address.
    pub fn node_port_addresses(&self, family: IpFamily) -> NodePortAddresses {
        let mut entries: Vec<String> = self.node_port_addresses.clone();
        if entries.len() == 1 && entries[0] == "primary" {
            entries = [IpFamily::V4, IpFamily::V6]
                .into_iter()
                .filter_map(|f| self.primary_node_ip(f))
                .filter(|ip| !ip.is_loopback())
                .map(|ip| IpNet::from(ip).to_string())
                .collect();
        }
        let mut cidrs = Vec::new();
        let mut contains_loopback = false;
        let mut match_all = false;
        for entry in &entries {
            let Some(net) = crate::net::parse_cidr_sloppy(entry.trim()) else {
                continue;
            };
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

/// The local-traffic detector's match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDetector {
    /// `-s <cidr>` / `! -s <cidr>`.
    Source(String),
    /// `-i <iface>` / `! -i <iface>` (prefix detectors end in `+`).
    Interface(String),
}

impl LocalDetector {
    /// The tokens matching local (pod) traffic.
    pub fn if_local(&self) -> [&str; 2] {
        match self {
            LocalDetector::Source(c) => ["-s", c],
            LocalDetector::Interface(i) => ["-i", i],
        }
    }

    /// The tokens matching non-local traffic.
    pub fn if_not_local(&self) -> [&str; 3] {
        match self {
            LocalDetector::Source(c) => ["!", "-s", c],
            LocalDetector::Interface(i) => ["!", "-i", i],
        }
    }
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

//! The ipsets of IPVS mode (`pkg/proxy/ipvs/ipset.go`, `ipset/types.go`):
//! their types, options, kube-proxy's comments and the entries it adds.

use std::net::IpAddr;

use crate::model::Protocol;
use crate::net::{IpFamily, IpNet};

use super::ipv6_ipset_name;

/// An ipset type kube-proxy uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpSetType {
    /// `hash:ip` (`KUBE-IPVS-IPS`).
    HashIp,
    /// `hash:ip,port`.
    HashIpPort,
    /// `hash:ip,port,ip`.
    HashIpPortIp,
    /// `hash:ip,port,net`.
    HashIpPortNet,
    /// `bitmap:port`, created with `range 0-65535`.
    BitmapPort,
}

impl IpSetType {
    /// The type as `ipset` names it (`hash:ip,port`).
    pub fn as_str(self) -> &'static str {
        match self {
            IpSetType::HashIp => "hash:ip",
            IpSetType::HashIpPort => "hash:ip,port",
            IpSetType::HashIpPortIp => "hash:ip,port,ip",
            IpSetType::HashIpPortNet => "hash:ip,port,net",
            IpSetType::BitmapPort => "bitmap:port",
        }
    }
}

impl std::fmt::Display for IpSetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for IpSetType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One member of an ipset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpSetEntry {
    /// `hash:ip`: an address.
    Ip(IpAddr),
    /// `hash:ip,port`: `ip,proto:port`.
    IpPort {
        /// Address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
    },
    /// `hash:ip,port,ip`: `ip,proto:port,ip2`.
    IpPortIp {
        /// Address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
        /// Second address.
        ip2: IpAddr,
    },
    /// `hash:ip,port,net`: `ip,proto:port,cidr`.
    IpPortNet {
        /// Address.
        ip: IpAddr,
        /// Protocol.
        protocol: Protocol,
        /// Port.
        port: u16,
        /// Network.
        net: IpNet,
    },
    /// `bitmap:port`: a port.
    Port(u16),
}

impl IpSetEntry {
    /// Reads a member as `ipset` prints it (the inverse of
    /// [`Display`](std::fmt::Display)); its shape says its type (`80`,
    /// `ip`, `ip,proto:port`, `ip,proto:port,ip`, `ip,proto:port,cidr`).
    ///
    /// ```
    /// use kpinspect_core::mode::ipvs::IpSetEntry;
    /// let e = IpSetEntry::parse("fd00::a,udp:53").unwrap();
    /// assert_eq!(e.to_string(), "fd00::a,udp:53");
    /// assert_eq!(IpSetEntry::parse("30080"), Some(IpSetEntry::Port(30080)));
    /// ```
    pub fn parse(member: &str) -> Option<IpSetEntry> {
        if let Ok(port) = member.parse() {
            return Some(IpSetEntry::Port(port));
        }
        let mut parts = member.split(',');
        let ip: IpAddr = parts.next()?.parse().ok()?;
        let Some(pp) = parts.next() else {
            return Some(IpSetEntry::Ip(ip));
        };
        let (proto, port) = pp.split_once(':')?;
        let protocol = Protocol::from_k8s(&proto.to_ascii_uppercase())?;
        let port = port.parse().ok()?;
        let entry = match parts.next() {
            None => IpSetEntry::IpPort { ip, protocol, port },
            Some(last) if last.contains('/') => IpSetEntry::IpPortNet {
                ip,
                protocol,
                port,
                net: last.parse().ok()?,
            },
            Some(last) => IpSetEntry::IpPortIp {
                ip,
                protocol,
                port,
                ip2: last.parse().ok()?,
            },
        };
        parts.next().is_none().then_some(entry)
    }

    /// kube-proxy's `Entry.String()`, which it adds and compares with what
    /// `ipset list` prints. It differs from the [`Display`](std::fmt::Display)
    /// form (what the kernel lists) only for a host network, which
    /// kube-proxy writes with `/32` (`/128`) and the kernel lists without:
    /// kube-proxy then deletes and re-adds that entry on every sync.
    ///
    /// ```
    /// use kpinspect_core::mode::ipvs::IpSetEntry;
    /// use kpinspect_core::model::Protocol;
    /// let e = IpSetEntry::IpPortNet {
    ///     ip: "1.2.3.4".parse().unwrap(),
    ///     protocol: Protocol::Tcp,
    ///     port: 80,
    ///     net: "5.6.7.8/32".parse().unwrap(),
    /// };
    /// assert_eq!(e.to_string(), "1.2.3.4,tcp:80,5.6.7.8");
    /// assert_eq!(e.kube_string(), "1.2.3.4,tcp:80,5.6.7.8/32");
    /// ```
    pub fn kube_string(&self) -> String {
        match self {
            IpSetEntry::IpPortNet {
                ip,
                protocol,
                port,
                net,
            } => format!("{ip},{protocol}:{port},{net}"),
            other => other.to_string(),
        }
    }
}

impl std::fmt::Display for IpSetEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpSetEntry::Ip(ip) => write!(f, "{ip}"),
            IpSetEntry::IpPort { ip, protocol, port } => write!(f, "{ip},{protocol}:{port}"),
            IpSetEntry::IpPortIp {
                ip,
                protocol,
                port,
                ip2,
            } => write!(f, "{ip},{protocol}:{port},{ip2}"),
            IpSetEntry::IpPortNet {
                ip,
                protocol,
                port,
                net,
            } => {
                if net.prefix_len() == net.max_prefix_len() {
                    write!(f, "{ip},{protocol}:{port},{}", net.addr())
                } else {
                    write!(f, "{ip},{protocol}:{port},{net}")
                }
            }
            IpSetEntry::Port(port) => write!(f, "{port}"),
        }
    }
}

impl serde::Serialize for IpSetEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One ipset with the members kube-proxy wants in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpSet {
    /// Its name (`KUBE-6-...` for IPv6, see [`ipv6_ipset_name`]).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub set_type: IpSetType,
    /// Its family: `family inet|inet6` for hash types; `bitmap:port` sets
    /// have none but belong to one proxier.
    pub family: IpFamily,
    /// kube-proxy's comment for it, used in the iptables rules that match
    /// it (the set itself carries no comment).
    pub comment: &'static str,
    /// The members, sorted.
    pub entries: Vec<IpSetEntry>,
}

impl IpSet {
    /// The options `ipset create` gets after the type, as `ipset save`
    /// prints them without the kernel's own additions (`bucketsize`,
    /// `initval`): `family inet hashsize 1024 maxelem 65536`, or
    /// `range 0-65535` for `bitmap:port`.
    pub fn create_options(&self) -> String {
        match self.set_type {
            IpSetType::BitmapPort => "range 0-65535".to_string(),
            _ => format!(
                "family {} hashsize 1024 maxelem 65536",
                match self.family {
                    IpFamily::V4 => "inet",
                    IpFamily::V6 => "inet6",
                }
            ),
        }
    }
}

/// What one of the 17 sets is: base (IPv4) name, type, comment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetInfo {
    pub name: &'static str,
    pub set_type: IpSetType,
    pub comment: &'static str,
}

/// The sets kube-proxy creates (`ipsetInfo`), in its order.
pub(crate) const SET_INFO: [SetInfo; 17] = [
    SetInfo {
        name: LOOP_BACK,
        set_type: IpSetType::HashIpPortIp,
        comment: "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    },
    SetInfo {
        name: CLUSTER_IP,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service cluster ip + port for masquerade purpose",
    },
    SetInfo {
        name: EXTERNAL_IP,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service external ip + port for masquerade and filter purpose",
    },
    SetInfo {
        name: EXTERNAL_IP_LOCAL,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service external ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: LOAD_BALANCER,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service lb portal",
    },
    SetInfo {
        name: LOAD_BALANCER_FW,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    },
    SetInfo {
        name: LOAD_BALANCER_LOCAL,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: LOAD_BALANCER_SOURCE_IP,
        set_type: IpSetType::HashIpPortIp,
        comment: "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    },
    SetInfo {
        name: LOAD_BALANCER_SOURCE_CIDR,
        set_type: IpSetType::HashIpPortNet,
        comment: "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    },
    SetInfo {
        name: NODE_PORT_TCP,
        set_type: IpSetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port for masquerade purpose",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_TCP,
        set_type: IpSetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: NODE_PORT_UDP,
        set_type: IpSetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port for masquerade purpose",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_UDP,
        set_type: IpSetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: NODE_PORT_SCTP,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    },
    SetInfo {
        name: NODE_PORT_LOCAL_SCTP,
        set_type: IpSetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    },
    SetInfo {
        name: HEALTH_CHECK_NODE_PORT,
        set_type: IpSetType::BitmapPort,
        comment: "Kubernetes health check node port",
    },
    SetInfo {
        name: IPVS_IPS,
        set_type: IpSetType::HashIp,
        comment: "Addresses on the ipvs interface",
    },
];

pub(crate) const LOOP_BACK: &str = "KUBE-LOOP-BACK";
pub(crate) const CLUSTER_IP: &str = "KUBE-CLUSTER-IP";
pub(crate) const EXTERNAL_IP: &str = "KUBE-EXTERNAL-IP";
pub(crate) const EXTERNAL_IP_LOCAL: &str = "KUBE-EXTERNAL-IP-LOCAL";
pub(crate) const LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
pub(crate) const LOAD_BALANCER_FW: &str = "KUBE-LOAD-BALANCER-FW";
pub(crate) const LOAD_BALANCER_LOCAL: &str = "KUBE-LOAD-BALANCER-LOCAL";
pub(crate) const LOAD_BALANCER_SOURCE_IP: &str = "KUBE-LOAD-BALANCER-SOURCE-IP";
pub(crate) const LOAD_BALANCER_SOURCE_CIDR: &str = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
pub(crate) const NODE_PORT_TCP: &str = "KUBE-NODE-PORT-TCP";
pub(crate) const NODE_PORT_LOCAL_TCP: &str = "KUBE-NODE-PORT-LOCAL-TCP";
pub(crate) const NODE_PORT_UDP: &str = "KUBE-NODE-PORT-UDP";
pub(crate) const NODE_PORT_LOCAL_UDP: &str = "KUBE-NODE-PORT-LOCAL-UDP";
pub(crate) const NODE_PORT_SCTP: &str = "KUBE-NODE-PORT-SCTP-HASH";
pub(crate) const NODE_PORT_LOCAL_SCTP: &str = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
pub(crate) const HEALTH_CHECK_NODE_PORT: &str = "KUBE-HEALTH-CHECK-NODE-PORT";
pub(crate) const IPVS_IPS: &str = "KUBE-IPVS-IPS";

/// The name of base set `base` for `family`.
pub(crate) fn family_name(base: &str, family: IpFamily) -> String {
    match family {
        IpFamily::V4 => base.to_string(),
        IpFamily::V6 => ipv6_ipset_name(base),
    }
}

/// How kube-proxy matches a set in iptables (`ipsetWithIptablesChain`):
/// the rows it writes for every non-empty set, in this order.
pub(crate) struct SetRule {
    pub set: &'static str,
    pub nat: bool,
    pub from: &'static str,
    pub to: &'static str,
    pub match_type: &'static str,
    pub protocol: Option<&'static str>,
}

pub(crate) const SET_RULES: [SetRule; 12] = [
    SetRule {
        set: LOOP_BACK,
        nat: true,
        from: "KUBE-POSTROUTING",
        to: "MASQUERADE",
        match_type: "dst,dst,src",
        protocol: None,
    },
    SetRule {
        set: LOAD_BALANCER,
        nat: true,
        from: "KUBE-SERVICES",
        to: "KUBE-LOAD-BALANCER",
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: LOAD_BALANCER_LOCAL,
        nat: true,
        from: "KUBE-LOAD-BALANCER",
        to: "RETURN",
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: NODE_PORT_LOCAL_TCP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "RETURN",
        match_type: "dst",
        protocol: Some("tcp"),
    },
    SetRule {
        set: NODE_PORT_TCP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "KUBE-MARK-MASQ",
        match_type: "dst",
        protocol: Some("tcp"),
    },
    SetRule {
        set: NODE_PORT_LOCAL_UDP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "RETURN",
        match_type: "dst",
        protocol: Some("udp"),
    },
    SetRule {
        set: NODE_PORT_UDP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "KUBE-MARK-MASQ",
        match_type: "dst",
        protocol: Some("udp"),
    },
    SetRule {
        set: NODE_PORT_LOCAL_SCTP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "RETURN",
        match_type: "dst,dst",
        protocol: Some("sctp"),
    },
    SetRule {
        set: NODE_PORT_SCTP,
        nat: true,
        from: "KUBE-NODE-PORT",
        to: "KUBE-MARK-MASQ",
        match_type: "dst,dst",
        protocol: Some("sctp"),
    },
    SetRule {
        set: LOAD_BALANCER_FW,
        nat: false,
        from: "KUBE-PROXY-FIREWALL",
        to: "KUBE-SOURCE-RANGES-FIREWALL",
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: LOAD_BALANCER_SOURCE_CIDR,
        nat: false,
        from: "KUBE-SOURCE-RANGES-FIREWALL",
        to: "RETURN",
        match_type: "dst,dst,src",
        protocol: None,
    },
    SetRule {
        set: LOAD_BALANCER_SOURCE_IP,
        nat: false,
        from: "KUBE-SOURCE-RANGES-FIREWALL",
        to: "RETURN",
        match_type: "dst,dst,src",
        protocol: None,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_info_matches_the_profile() {
        let names: Vec<&str> = SET_INFO.iter().map(|s| s.name).collect();
        assert_eq!(names, super::super::IPSETS[..17]);
    }

    #[test]
    fn entries_print_like_ipset() {
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        let e = IpSetEntry::IpPortIp {
            ip: v6,
            protocol: Protocol::Sctp,
            port: 80,
            ip2: v6,
        };
        assert_eq!(e.to_string(), "2001:db8::1,sctp:80,2001:db8::1");
        let n = IpSetEntry::IpPortNet {
            ip: v6,
            protocol: Protocol::Udp,
            port: 53,
            net: "2001:db8::/64".parse().expect("net"),
        };
        assert_eq!(n.to_string(), n.kube_string());
        assert_eq!(IpSetEntry::Port(30000).to_string(), "30000");
    }
}

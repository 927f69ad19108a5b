//! IPVS virtual and real servers as kube-proxy creates them
//! (`pkg/proxy/ipvs/util`: `VirtualServer`, `RealServer`).

use std::cmp::Ordering;
use std::net::IpAddr;

use crate::model::Protocol;
use crate::net::{IpFamily, join_host_port};
use crate::proxy::ServicePortName;

/// An IPVS scheduler (`ipvs.scheduler`). kube-proxy passes any name to the
/// kernel (it checks at start-up that the kernel accepts it); empty means
/// round robin.
///
/// ```
/// use kpinspect_core::mode::ipvs::Scheduler;
/// assert_eq!(Scheduler::from_config("").name(), "rr");
/// assert!(Scheduler::from_config("mh").sets_source_hash());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Scheduler(String);

impl Scheduler {
    /// kube-proxy's default, round robin.
    pub const DEFAULT: &'static str = "rr";

    /// The scheduler of `ipvs.scheduler` (empty: [`Scheduler::DEFAULT`]).
    pub fn from_config(name: &str) -> Scheduler {
        if name.is_empty() {
            Scheduler(Self::DEFAULT.to_string())
        } else {
            Scheduler(name.to_string())
        }
    }

    /// The kernel's name of the scheduler (`rr`, `wrr`, `lc`, `mh`, ...).
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether kube-proxy sets [`ServiceFlags::SOURCE_HASH`] for it (only
    /// for `mh`, Maglev hashing, to hash on the source port too).
    pub fn sets_source_hash(&self) -> bool {
        self.0 == "mh"
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler(Self::DEFAULT.to_string())
    }
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The flags of a virtual server as kube-proxy sets them (the kernel's
/// `IP_VS_SVC_F_*`; the kernel adds `HASHED` 0x2 itself, which kube-proxy
/// strips when it reads a service back).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ServiceFlags(pub u32);

impl ServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT` (kube-proxy's `FlagPersistent`): ClientIP
    /// session affinity.
    pub const PERSISTENT: u32 = 0x1;
    /// `IP_VS_SVC_F_SCHED2` (kube-proxy's `FlagSourceHash`): set with the
    /// `mh` scheduler; `ipvsadm` calls it `mh-port` (`sh-port` for `sh`).
    pub const SOURCE_HASH: u32 = 0x10;

    /// Whether the service is persistent (ClientIP affinity).
    pub fn persistent(self) -> bool {
        self.0 & Self::PERSISTENT != 0
    }

    /// Whether the source-hash (scheduler flag 2) bit is set.
    pub fn source_hash(self) -> bool {
        self.0 & Self::SOURCE_HASH != 0
    }
}

/// What a virtual server stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VirtualServerKind {
    /// The Service's cluster IP and port.
    ClusterIp,
    /// One of its external IPs, with the Service port.
    ExternalIp,
    /// One of its load-balancer ingress IPs, with the Service port.
    LoadBalancer,
    /// One node IP with the node port.
    NodePort,
}

/// How IPVS forwards to a real server. kube-proxy always uses masquerading
/// (NAT; `ipvsadm -m`, connection flags 0); the others appear only in what
/// another program added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardMethod {
    /// Masquerading (NAT; `ipvsadm -m`, listed `Masq`).
    #[default]
    Masquerade,
    /// Direct routing (`-g`, listed `Route`).
    Route,
    /// IP-in-IP tunnelling (`-i`, listed `Tunnel`).
    Tunnel,
    /// Local delivery (listed `Local`).
    Local,
}

impl ForwardMethod {
    /// `ipvsadm -Ln`'s name of the method (`Masq`, `Route`, ...).
    pub fn list_name(self) -> &'static str {
        match self {
            ForwardMethod::Masquerade => "Masq",
            ForwardMethod::Route => "Route",
            ForwardMethod::Tunnel => "Tunnel",
            ForwardMethod::Local => "Local",
        }
    }

    /// `ipvsadm -Sn`'s switch of the method (`-m`, `-g`, `-i`).
    pub fn save_switch(self) -> &'static str {
        match self {
            ForwardMethod::Masquerade => "-m",
            ForwardMethod::Route | ForwardMethod::Local => "-g",
            ForwardMethod::Tunnel => "-i",
        }
    }
}

/// A real server (IPVS destination): one endpoint of the service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RealServer {
    /// The endpoint address.
    pub address: IpAddr,
    /// The endpoint (target) port.
    pub port: u16,
    /// The weight: always 1 from kube-proxy (0 only while a TCP endpoint it
    /// removed drains, which a compile does not show).
    pub weight: u32,
    /// The forwarding method.
    pub forward: ForwardMethod,
    /// Active connections (`ActiveConn` of `ipvsadm -Ln`; TCP connections
    /// established), when read from a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_connections: Option<u64>,
    /// Inactive connections (`InActConn`: closing, or UDP flows), when read
    /// from a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inactive_connections: Option<u64>,
}

impl RealServer {
    /// A real server as kube-proxy adds one: weight 1, masquerading.
    pub fn new(address: IpAddr, port: u16) -> RealServer {
        RealServer {
            address,
            port,
            weight: 1,
            forward: ForwardMethod::Masquerade,
            active_connections: None,
            inactive_connections: None,
        }
    }

    /// kube-proxy's `RealServer.String()`: `ip:port` (`[ip]:port`).
    pub fn endpoint(&self) -> String {
        join_host_port(&self.address, self.port)
    }
}

/// An IPVS virtual server (service) with its real servers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VirtualServer {
    /// The address.
    pub address: IpAddr,
    /// The protocol.
    #[serde(serialize_with = "protocol_upper")]
    pub protocol: Protocol,
    /// The port (the node port for [`VirtualServerKind::NodePort`]).
    pub port: u16,
    /// The scheduler.
    pub scheduler: Scheduler,
    /// The flags.
    pub flags: ServiceFlags,
    /// The persistence timeout in seconds (ClientIP affinity), else 0.
    pub timeout: u32,
    /// What it stands for (`None`: read from a node, not yet matched to a
    /// Service).
    pub kind: Option<VirtualServerKind>,
    /// The service port it belongs to (`None`: read from a node, which does
    /// not say).
    pub service: Option<ServicePortName>,
    /// Whether kube-proxy binds the address on `kube-ipvs0` for it (false
    /// when read from a node, which does not say).
    pub bind: bool,
    /// Its real servers, ordered by address then port.
    pub real_servers: Vec<RealServer>,
}

fn protocol_upper<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(protocol_name(*p))
}

/// The protocol as IPVS and kube-proxy spell it (`TCP`, `UDP`, `SCTP`).
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

/// The IP protocol number (the kernel's and `ipvsadm`'s sort key).
pub(crate) fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

impl VirtualServer {
    /// kube-proxy's `VirtualServer.String()`, its key for the service:
    /// `ip:port/PROTO`.
    ///
    /// ```
    /// use kpinspect_core::mode::ipvs::{VirtualServer, VirtualServerKind, Scheduler, ServiceFlags};
    /// use kpinspect_core::model::Protocol;
    /// use kpinspect_core::proxy::ServicePortName;
    /// let vs = VirtualServer {
    ///     address: "2001:db8::1".parse().unwrap(),
    ///     protocol: Protocol::Tcp,
    ///     port: 80,
    ///     scheduler: Scheduler::default(),
    ///     flags: ServiceFlags::default(),
    ///     timeout: 0,
    ///     kind: Some(VirtualServerKind::ClusterIp),
    ///     service: Some(ServicePortName {
    ///         namespace: "ns".into(), name: "svc".into(), port: "http".into(), protocol: Protocol::Tcp,
    ///     }),
    ///     bind: true,
    ///     real_servers: vec![],
    /// };
    /// assert_eq!(vs.key(), "[2001:db8::1]:80/TCP");
    /// ```
    pub fn key(&self) -> String {
        format!(
            "{}/{}",
            join_host_port(&self.address, self.port),
            protocol_name(self.protocol)
        )
    }

    /// The address family.
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.address)
    }

    /// `ipvsadm`'s listing order: family, protocol number, address, port
    /// (libipvs compares addresses as signed differences, which can wrap
    /// for addresses more than 2^31 apart; kpinspect compares them
    /// numerically).
    pub fn ipvsadm_cmp(&self, other: &VirtualServer) -> Ordering {
        (
            self.family(),
            protocol_number(self.protocol),
            self.address,
            self.port,
        )
            .cmp(&(
                other.family(),
                protocol_number(other.protocol),
                other.address,
                other.port,
            ))
    }
}

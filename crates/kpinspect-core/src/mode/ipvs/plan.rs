//! The IPVS-mode planner: a desired [`Compiled`] against what the node has
//! (its virtual servers with real servers and their connection counts, its
//! ipset members, the addresses of `kube-ipvs0`) → the minimal
//! [`IpvsPlan`], in kube-proxy's order.
//!
//! It follows kube-proxy's `syncService`, `syncEndpoint`,
//! `cleanLegacyService` and graceful termination (`pkg/proxy/ipvs`), with
//! one deliberate difference: kube-proxy deletes every virtual server of
//! its family that is not active in the sync (keepalived's and a user's
//! too, unless `ipvs.excludeCIDRs` covers them); this planner deletes only
//! those it can prove are kube-proxy's ([`Ownership`]) and reports the
//! others as [`Kept`].

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::ops::RangeInclusive;

use super::{Compiled, IpSet, IpSetEntry, RealServer, VirtualServer};
use crate::config::ProxyConfig;
use crate::ipset::{SetText, first_word};
use crate::model::{Cluster, Protocol};
use crate::net::{IpFamily, IpNet};
use crate::plan::Refusal;

/// The Kubernetes API server's default `--service-node-port-range`.
pub const DEFAULT_NODE_PORT_RANGE: RangeInclusive<u16> = 30000..=32767;

/// The node's IPVS-mode state as read, for one proxier's family or more
/// (the planner keeps to its family).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpvsNode {
    /// The virtual servers with their real servers, with
    /// [`RealServer::active_connections`] and
    /// [`RealServer::inactive_connections`] (`None` counts as "may have
    /// connections").
    pub servers: Vec<VirtualServer>,
    /// The ipsets with their members.
    pub sets: Vec<SetText>,
    /// The addresses bound on `kube-ipvs0`.
    pub bound: Vec<IpAddr>,
}

/// What proves a virtual server on the node is kube-proxy's, beyond the
/// desired state itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The node's own addresses (node ports are served on them).
    pub node_ips: Vec<IpAddr>,
    /// The cluster's node-port range (`--service-node-port-range`).
    pub node_port_range: RangeInclusive<u16>,
    /// Addresses of the cluster's Services (cluster, external and
    /// load-balancer IPs), of any Service, compiled or not.
    pub service_addresses: BTreeSet<IpAddr>,
    /// `ipvs.excludeCIDRs`: virtual servers kube-proxy never deletes.
    pub exclude_cidrs: Vec<IpNet>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            node_ips: Vec::new(),
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            service_addresses: BTreeSet::new(),
            exclude_cidrs: Vec::new(),
        }
    }
}

impl Ownership {
    /// The node's IPs and `ipvs.excludeCIDRs` of `config`, the default
    /// node-port range, and the service addresses of `cluster`.
    ///
    /// ```
    /// use kpinspect_core::{config::ProxyConfig, model::Cluster};
    /// use kpinspect_core::mode::ipvs::{DEFAULT_NODE_PORT_RANGE, Ownership};
    /// let o = Ownership::new(&ProxyConfig::default(), &Cluster::default());
    /// assert_eq!(o.node_port_range, DEFAULT_NODE_PORT_RANGE);
    /// ```
    pub fn new(config: &ProxyConfig, cluster: &Cluster) -> Ownership {
        let mut service_addresses = BTreeSet::new();
        for s in &cluster.services {
            service_addresses.extend(s.cluster_ips.iter().copied());
            service_addresses.extend(s.external_ips.iter().copied());
            service_addresses.extend(s.load_balancer_ingress.iter().map(|i| i.ip));
        }
        Ownership {
            node_ips: config.node.ips.clone(),
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            service_addresses,
            exclude_cidrs: config.ipvs.exclude_cidrs.clone(),
        }
    }
}

/// A virtual server's identity: address, protocol, port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct ServiceKey {
    /// The address.
    pub address: IpAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
}

impl ServiceKey {
    /// The key of `vs`.
    pub fn of(vs: &VirtualServer) -> ServiceKey {
        ServiceKey {
            address: vs.address,
            protocol: vs.protocol,
            port: vs.port,
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            crate::net::join_host_port(&self.address, self.port),
            super::protocol_name(self.protocol)
        )
    }
}

/// One write of an [`IpvsPlan`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum IpvsOp {
    /// Create a missing ipset (`ipset create -exist`).
    CreateSet {
        /// Its name.
        name: String,
        /// Its type, e.g. `hash:ip,port`.
        set_type: String,
        /// The options after the type.
        options: String,
    },
    /// Add a member to a set.
    AddMember {
        /// The set.
        set: String,
        /// The member as `ipset save` writes it.
        member: String,
    },
    /// Delete a member from a set.
    DelMember {
        /// The set.
        set: String,
        /// The member as the node listed it.
        member: String,
    },
    /// Bind an address on `kube-ipvs0` (JSON: `{"op": "bind", "address":
    /// ...}`).
    Bind(#[serde(serialize_with = "address_object")] IpAddr),
    /// Add a virtual server (its real servers follow as
    /// [`IpvsOp::AddRealServer`]; `real_servers` is empty).
    AddService(VirtualServer),
    /// Edit a virtual server's scheduler, flags or timeout in place.
    UpdateService(VirtualServer),
    /// Add a real server (weight 1).
    AddRealServer {
        /// The virtual server.
        service: ServiceKey,
        /// The real server.
        server: RealServer,
    },
    /// Set a real server's weight (1 to bring one back, 0 to drain one).
    SetWeight {
        /// The virtual server.
        service: ServiceKey,
        /// The real server, with its new weight.
        server: RealServer,
    },
    /// Delete a real server.
    DelRealServer {
        /// The virtual server.
        service: ServiceKey,
        /// The real server.
        server: RealServer,
    },
    /// Unbind an address from `kube-ipvs0` (JSON: `{"op": "unbind",
    /// "address": ...}`).
    Unbind(#[serde(serialize_with = "address_object")] IpAddr),
    /// Delete a virtual server (and its real servers).
    DelService(VirtualServer),
}

/// An address as `{"address": ...}`: an internally tagged enum's variant
/// serializes only as an object.
fn address_object<S: serde::Serializer>(ip: &IpAddr, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry("address", ip)?;
    map.end()
}

impl IpvsOp {
    /// Whether kube-proxy does this after its iptables restore (stale
    /// addresses and virtual servers go only once the rules no longer
    /// need them).
    pub fn after_restore(&self) -> bool {
        matches!(self, IpvsOp::Unbind(_) | IpvsOp::DelService(_))
    }
}

/// `ipvsadm`'s service switch and address of `key`: `-t 10.96.0.1:443`.
fn service_switch(key: &ServiceKey) -> String {
    let switch = match key.protocol {
        Protocol::Tcp => "-t",
        Protocol::Udp => "-u",
        Protocol::Sctp => "--sctp-service",
    };
    format!(
        "{switch} {}",
        crate::net::join_host_port(&key.address, key.port)
    )
}

/// The op as the command line a person would type: `ipset add ...`,
/// `ip addr add ... dev kube-ipvs0`, `ipvsadm -A ...`.
///
/// ```
/// use kpinspect_core::mode::ipvs::IpvsOp;
/// let op = IpvsOp::Bind("10.96.0.1".parse().unwrap());
/// assert_eq!(op.to_string(), "ip addr add 10.96.0.1/32 dev kube-ipvs0");
/// ```
impl std::fmt::Display for IpvsOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = |ip: &IpAddr| if ip.is_ipv4() { 32 } else { 128 };
        let real = |service: &ServiceKey, server: &RealServer| {
            format!(
                "{} -r {}",
                service_switch(service),
                crate::net::join_host_port(&server.address, server.port)
            )
        };
        match self {
            IpvsOp::CreateSet {
                name,
                set_type,
                options,
            } => write!(f, "ipset create {name} {set_type} {options} -exist"),
            IpvsOp::AddMember { set, member } => write!(f, "ipset add {set} {member}"),
            IpvsOp::DelMember { set, member } => write!(f, "ipset del {set} {member}"),
            IpvsOp::Bind(ip) => write!(f, "ip addr add {ip}/{} dev kube-ipvs0", prefix(ip)),
            IpvsOp::Unbind(ip) => write!(f, "ip addr del {ip}/{} dev kube-ipvs0", prefix(ip)),
            IpvsOp::AddService(vs) | IpvsOp::UpdateService(vs) => {
                let line = super::ipvsadm_save([vs]);
                let line = line.lines().next().unwrap_or_default();
                let edit = if matches!(self, IpvsOp::AddService(_)) {
                    line.to_string()
                } else {
                    line.replacen("-A", "-E", 1)
                };
                write!(f, "ipvsadm {edit}")
            }
            IpvsOp::DelService(vs) => {
                write!(f, "ipvsadm -D {}", service_switch(&ServiceKey::of(vs)))
            }
            IpvsOp::AddRealServer { service, server } => write!(
                f,
                "ipvsadm -a {} {} -w {}",
                real(service, server),
                server.forward.save_switch(),
                server.weight
            ),
            IpvsOp::SetWeight { service, server } => write!(
                f,
                "ipvsadm -e {} {} -w {}",
                real(service, server),
                server.forward.save_switch(),
                server.weight
            ),
            IpvsOp::DelRealServer { service, server } => {
                write!(f, "ipvsadm -d {}", real(service, server))
            }
        }
    }
}

/// Why the planner left a virtual server that the desired state lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptReason {
    /// Its address is in `ipvs.excludeCIDRs`.
    ExcludeCidrs,
    /// Nothing proves it is kube-proxy's (not a service address, not on
    /// `kube-ipvs0`, not a node port): another program's (keepalived, a
    /// user). kube-proxy itself would delete it.
    Foreign,
}

/// A virtual server the planner kept.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Kept {
    /// The virtual server.
    pub service: ServiceKey,
    /// Why.
    pub reason: KeptReason,
}

/// A removed TCP real server that still has connections: at weight 0, it
/// stays until they end (kube-proxy's graceful termination).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Draining {
    /// The virtual server.
    pub service: ServiceKey,
    /// The real server as read.
    pub server: RealServer,
}

/// What it takes to bring one family's IPVS state to the desired one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IpvsPlan {
    /// The family.
    pub family: IpFamily,
    /// The writes, in order: sets created, set members deleted and added,
    /// addresses bound, virtual servers added or edited with their real
    /// servers — then (after the iptables restore, see
    /// [`IpvsOp::after_restore`]) addresses unbound and stale virtual
    /// servers deleted.
    pub ops: Vec<IpvsOp>,
    /// Virtual servers the desired state lacks that were left alone.
    pub kept: Vec<Kept>,
    /// Removed real servers still draining (weight 0, connections left).
    pub draining: Vec<Draining>,
    /// The node's virtual servers of the family that are kube-proxy's
    /// (desired, or provably kube-proxy's), for the guard.
    pub owned: usize,
}

impl IpvsPlan {
    /// Whether the node is in sync (nothing to write; draining real
    /// servers and kept virtual servers do not count).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The virtual servers the plan deletes.
    pub fn deleted_services(&self) -> impl Iterator<Item = &VirtualServer> {
        self.ops.iter().filter_map(|o| match o {
            IpvsOp::DelService(v) => Some(v),
            _ => None,
        })
    }

    /// A refusal if the plan deletes more than half of the node's
    /// kube-proxy virtual servers of its family (a wrong or partial input).
    pub fn check(&self) -> Option<Refusal> {
        let deleted = self.deleted_services().count();
        (deleted * 2 > self.owned).then_some(Refusal::WipesVirtualServers {
            family: self.family,
            deleted,
            total: self.owned,
        })
    }
}

/// Whether kube-proxy reads `ip` back from `kube-ipvs0` (not loopback, not
/// IPv6 link-local).
fn bound_counts(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_loopback(),
        IpAddr::V6(a) => !(a.is_loopback() || (a.segments()[0] & 0xffc0) == 0xfe80),
    }
}

/// Whether a removed real server of a `protocol` virtual server may go at
/// once (kube-proxy: UDP and SCTP always; TCP with no connections).
fn deletable(protocol: Protocol, rs: &RealServer) -> bool {
    protocol != Protocol::Tcp
        || matches!(
            (rs.active_connections, rs.inactive_connections),
            (Some(0), Some(0))
        )
}

/// The flags kube-proxy compares: without the kernel's `HASHED` (0x2).
fn flags(vs: &VirtualServer) -> u32 {
    vs.flags.0 & !0x2
}

fn bare(vs: &VirtualServer) -> VirtualServer {
    VirtualServer {
        real_servers: Vec::new(),
        ..vs.clone()
    }
}

fn set_ops(desired: &[IpSet], actual: &[SetText], ops: &mut Vec<IpvsOp>) {
    let mut dels = Vec::new();
    let mut adds = Vec::new();
    for set in desired {
        let current = actual.iter().find(|s| s.name == set.name);
        if current.is_none() {
            ops.push(IpvsOp::CreateSet {
                name: set.name.clone(),
                set_type: set.set_type.as_str().to_string(),
                options: set.create_options(),
            });
        }
        let members: &[String] = current.map_or(&[], |s| &s.members);
        // A member matches an entry when it parses to it or is spelled as
        // it prints; both sides are indexed both ways (large sets).
        let words: Vec<&str> = members.iter().map(|m| first_word(m).0).collect();
        let parsed: HashSet<IpSetEntry> =
            words.iter().filter_map(|w| IpSetEntry::parse(w)).collect();
        let spelled: HashSet<&str> = words.iter().copied().collect();
        let entries: HashSet<&IpSetEntry> = set.entries.iter().collect();
        let printed: Vec<String> = set.entries.iter().map(IpSetEntry::to_string).collect();
        let printed_set: HashSet<&str> = printed.iter().map(String::as_str).collect();
        for word in &words {
            let matched = IpSetEntry::parse(word).is_some_and(|p| entries.contains(&p))
                || printed_set.contains(word);
            if !matched {
                dels.push(IpvsOp::DelMember {
                    set: set.name.clone(),
                    member: word.to_string(),
                });
            }
        }
        for (e, text) in set.entries.iter().zip(&printed) {
            if !(parsed.contains(e) || spelled.contains(text.as_str())) {
                adds.push(IpvsOp::AddMember {
                    set: set.name.clone(),
                    member: e.to_string(),
                });
            }
        }
    }
    ops.extend(dels);
    ops.extend(adds);
}

fn real_server_ops(
    desired: &VirtualServer,
    actual: &VirtualServer,
    ops: &mut Vec<IpvsOp>,
    draining: &mut Vec<Draining>,
) {
    let service = ServiceKey::of(desired);
    let same = |a: &RealServer, b: &RealServer| a.address == b.address && a.port == b.port;
    for want in &desired.real_servers {
        match actual.real_servers.iter().find(|r| same(r, want)) {
            None => ops.push(IpvsOp::AddRealServer {
                service,
                server: want.clone(),
            }),
            // Back from draining, or a weight another program set.
            Some(have) if have.weight != want.weight => ops.push(IpvsOp::SetWeight {
                service,
                server: want.clone(),
            }),
            Some(_) => {}
        }
    }
    for have in &actual.real_servers {
        if desired.real_servers.iter().any(|w| same(w, have)) {
            continue;
        }
        if deletable(actual.protocol, have) {
            ops.push(IpvsOp::DelRealServer {
                service,
                server: have.clone(),
            });
            continue;
        }
        if have.weight != 0 {
            ops.push(IpvsOp::SetWeight {
                service,
                server: RealServer {
                    weight: 0,
                    ..have.clone()
                },
            });
        }
        draining.push(Draining {
            service,
            server: have.clone(),
        });
    }
}

/// Plans `desired` (one proxier's family) against `actual`: the minimal
/// writes, empty when in sync.
///
/// * ipsets: missing sets are created, members the desired set lacks are
///   deleted, then missing ones added (only the desired sets are looked
///   at);
/// * addresses: desired addresses `kube-ipvs0` lacks are bound; its other
///   addresses of the family (loopback and IPv6 link-local aside) are
///   unbound after the restore;
/// * virtual servers: missing ones are added with their real servers;
///   present ones with another scheduler, flags (the kernel's `HASHED`
///   aside) or timeout are edited; real servers are added, brought back to
///   their weight, or removed — a removed TCP real server with
///   connections (or unknown counts) goes to weight 0 and stays until they
///   end, UDP and SCTP ones go at once;
/// * stale virtual servers of the family are deleted only when provably
///   kube-proxy's: the address is bound on `kube-ipvs0`, is a service
///   address (`owner`'s or the desired state's), or is a node IP with a
///   port in the node-port range — and not in `ipvs.excludeCIDRs`. Others
///   are [`Kept`].
///
/// ```
/// use kpinspect_core::{config::ProxyConfig, model::Cluster, net::IpFamily, proxy::ProxyState};
/// use kpinspect_core::mode::ipvs::{IpvsNode, Ownership, compile, plan};
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
/// let desired = compile(&state, &config);
/// let fresh = plan(&desired, &IpvsNode::default(), &Ownership::default());
/// assert_eq!(fresh.ops.len(), 17, "the 17 sets are created");
/// ```
pub fn plan(desired: &Compiled, actual: &IpvsNode, owner: &Ownership) -> IpvsPlan {
    let family = desired.family;
    let mut ops = Vec::new();
    let mut draining = Vec::new();
    let mut kept = Vec::new();

    set_ops(&desired.ipsets, &actual.sets, &mut ops);

    let want_bound: Vec<IpAddr> = desired.addresses.iter().map(IpNet::addr).collect();
    let have_bound: Vec<IpAddr> = actual
        .bound
        .iter()
        .copied()
        .filter(|ip| IpFamily::of(ip) == family && bound_counts(ip))
        .collect();
    // Lookups by address and by key: a large node binds and serves tens
    // of thousands.
    let want_set: HashSet<IpAddr> = want_bound.iter().copied().collect();
    let have_set: HashSet<IpAddr> = have_bound.iter().copied().collect();
    for ip in &want_bound {
        if !have_set.contains(ip) {
            ops.push(IpvsOp::Bind(*ip));
        }
    }

    let mut by_key: std::collections::HashMap<ServiceKey, &VirtualServer> =
        std::collections::HashMap::new();
    for v in &actual.servers {
        // The first of a key, as a scan finds it.
        by_key.entry(ServiceKey::of(v)).or_insert(v);
    }
    let mut owned = 0;
    for want in &desired.virtual_servers {
        let key = ServiceKey::of(want);
        match by_key.get(&key).copied() {
            None => {
                ops.push(IpvsOp::AddService(bare(want)));
                for rs in &want.real_servers {
                    ops.push(IpvsOp::AddRealServer {
                        service: key,
                        server: rs.clone(),
                    });
                }
            }
            Some(have) => {
                owned += 1;
                if have.scheduler != want.scheduler
                    || flags(have) != flags(want)
                    || have.timeout != want.timeout
                {
                    ops.push(IpvsOp::UpdateService(bare(want)));
                }
                real_server_ops(want, have, &mut ops, &mut draining);
            }
        }
    }

    for ip in &have_bound {
        if !want_set.contains(ip) {
            ops.push(IpvsOp::Unbind(*ip));
        }
    }

    let desired_keys: BTreeSet<ServiceKey> =
        desired.virtual_servers.iter().map(ServiceKey::of).collect();
    let service_address = |ip: &IpAddr| {
        owner.service_addresses.contains(ip)
            || want_bound.contains(ip)
            || desired.virtual_servers.iter().any(|v| v.address == *ip)
    };
    for have in &actual.servers {
        let key = ServiceKey::of(have);
        if have.family() != family || desired_keys.contains(&key) {
            continue;
        }
        let reason = if owner
            .exclude_cidrs
            .iter()
            .any(|n| n.contains(&have.address))
        {
            Some(KeptReason::ExcludeCidrs)
        } else if actual.bound.contains(&have.address)
            || service_address(&have.address)
            || ((owner.node_ips.contains(&have.address)
                || desired.node_ips.contains(&have.address))
                && owner.node_port_range.contains(&have.port))
        {
            None
        } else {
            Some(KeptReason::Foreign)
        };
        match reason {
            Some(reason) => kept.push(Kept {
                service: key,
                reason,
            }),
            None => {
                owned += 1;
                ops.push(IpvsOp::DelService(have.clone()));
            }
        }
    }

    IpvsPlan {
        family,
        ops,
        kept,
        draining,
        owned,
    }
}

#[cfg(test)]
mod tests;

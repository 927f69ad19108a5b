//! What an IPVS-mode node does, per Service port: `kpinspect dump` over
//! the node's IPVS table and ipsets, in the same [`NodeDump`] as iptables
//! mode.
//!
//! The virtual servers come from `ipvsadm -Ln`/`-Sn` text
//! ([`parse_ipvsadm`](super::parse_ipvsadm)) or, later, a live read over
//! netlink: [`dump`] takes them as values. With the cluster, each service
//! port gathers the virtual servers of its cluster IP, external IPs,
//! load-balancer IPs and node port (on any node address); without it,
//! kube-proxy's ipsets say what each address is, and a Service is known
//! only by its virtual servers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::ipset::{
    CLUSTER_IP, EXTERNAL_IP, EXTERNAL_IP_LOCAL, LOAD_BALANCER, LOAD_BALANCER_LOCAL,
    NODE_PORT_LOCAL_SCTP, NODE_PORT_LOCAL_TCP, NODE_PORT_LOCAL_UDP, NODE_PORT_SCTP, NODE_PORT_TCP,
    NODE_PORT_UDP, family_name,
};
use super::{IpSetEntry, RealServer, VirtualServer, VirtualServerKind, protocol_name};
use crate::ipset::{SetText, first_word};
use crate::mode::iptables::dump::new_service;
use crate::mode::iptables::{Anomaly, AnomalyKind, EndpointDump, NodeDump, RulesMode, ServiceDump};
use crate::model::Protocol;
use crate::net::{IpFamily, join_host_port};
use crate::proxy::{ProxyState, ServicePortEntry};

/// An IPVS-mode node's state as read: its IPVS table and, when known, its
/// ipsets (`None`: not read).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpvsState {
    /// The virtual servers with their real servers.
    pub servers: Vec<VirtualServer>,
    /// The ipsets (`ipset list`/`ipset save`), when read.
    pub sets: Option<Vec<SetText>>,
}

/// The share of new connections each real server gets from `scheduler`:
/// weight over the sum of weights for `wrr`; for `rr` (which skips weight
/// 0 but otherwise ignores weights) an equal share of the servers with a
/// weight; `None` for schedulers whose choice depends on connections or
/// hashes (`lc`, `sh`, `mh`, ...).
///
/// ```
/// use kpinspect_core::mode::ipvs::{shares, RealServer};
/// let mut rs = vec![RealServer::new("10.0.0.1".parse().unwrap(), 80); 3];
/// rs[1].weight = 3;
/// rs[2].weight = 0;
/// assert_eq!(shares("rr", &rs), vec![Some(0.5), Some(0.5), Some(0.0)]);
/// assert_eq!(shares("wrr", &rs), vec![Some(0.25), Some(0.75), Some(0.0)]);
/// assert_eq!(shares("mh", &rs), vec![None, None, None]);
/// ```
pub fn shares(scheduler: &str, real_servers: &[RealServer]) -> Vec<Option<f64>> {
    let weight = |r: &RealServer| -> f64 {
        match scheduler {
            "rr" if r.weight > 0 => 1.0,
            "wrr" => f64::from(r.weight),
            _ => 0.0,
        }
    };
    let total: f64 = real_servers.iter().map(weight).sum();
    real_servers
        .iter()
        .map(|r| match scheduler {
            "rr" | "wrr" if total > 0.0 => Some((weight(r) / total * 1e6).round() / 1e6),
            "rr" | "wrr" => Some(0.0),
            _ => None,
        })
        .collect()
}

/// An ipset member's address, protocol and port (`ip,proto:port...`).
fn member_address(member: &str) -> Option<(IpAddr, Protocol, u16)> {
    match IpSetEntry::parse(first_word(member).0)? {
        IpSetEntry::IpPort { ip, protocol, port }
        | IpSetEntry::IpPortIp {
            ip, protocol, port, ..
        }
        | IpSetEntry::IpPortNet {
            ip, protocol, port, ..
        } => Some((ip, protocol, port)),
        _ => None,
    }
}

/// What the ipsets say about addresses and node ports.
#[derive(Default)]
struct SetFacts<'a> {
    /// `(set, ip, protocol, port)` of the address sets.
    members: Vec<(&'a str, IpAddr, Protocol, u16)>,
    /// `(set, protocol, port)` of the node-port sets.
    node_ports: BTreeSet<(&'a str, Protocol, u16)>,
}

impl<'a> SetFacts<'a> {
    fn read(sets: &'a [SetText]) -> SetFacts<'a> {
        let mut facts = SetFacts::default();
        for set in sets {
            let base = [
                CLUSTER_IP,
                EXTERNAL_IP,
                EXTERNAL_IP_LOCAL,
                LOAD_BALANCER,
                LOAD_BALANCER_LOCAL,
                NODE_PORT_TCP,
                NODE_PORT_LOCAL_TCP,
                NODE_PORT_UDP,
                NODE_PORT_LOCAL_UDP,
                NODE_PORT_SCTP,
                NODE_PORT_LOCAL_SCTP,
            ]
            .into_iter()
            .find(|b| *b == set.name || family_name(b, IpFamily::V6) == set.name);
            let Some(base) = base else { continue };
            for m in &set.members {
                let word = first_word(m).0;
                let node_port_protocol = match base {
                    NODE_PORT_TCP | NODE_PORT_LOCAL_TCP => Some(Protocol::Tcp),
                    NODE_PORT_UDP | NODE_PORT_LOCAL_UDP => Some(Protocol::Udp),
                    _ => None,
                };
                if let Some(p) = node_port_protocol {
                    if let Ok(port) = word.parse() {
                        facts.node_ports.insert((base, p, port));
                    }
                } else if let Some((ip, p, port)) = member_address(word) {
                    if base == NODE_PORT_SCTP || base == NODE_PORT_LOCAL_SCTP {
                        facts.node_ports.insert((base, p, port));
                    } else {
                        facts.members.push((base, ip, p, port));
                    }
                }
            }
        }
        facts
    }

    fn has(&self, set: &str, vs: &VirtualServer) -> bool {
        self.members.iter().any(|&(s, ip, p, port)| {
            s == set && (ip, p, port) == (vs.address, vs.protocol, vs.port)
        })
    }

    fn node_port(&self, local: bool, protocol: Protocol, port: u16) -> bool {
        let set = match (protocol, local) {
            (Protocol::Tcp, false) => NODE_PORT_TCP,
            (Protocol::Tcp, true) => NODE_PORT_LOCAL_TCP,
            (Protocol::Udp, false) => NODE_PORT_UDP,
            (Protocol::Udp, true) => NODE_PORT_LOCAL_UDP,
            (Protocol::Sctp, false) => NODE_PORT_SCTP,
            (Protocol::Sctp, true) => NODE_PORT_LOCAL_SCTP,
        };
        self.node_ports.contains(&(set, protocol, port))
    }
}

/// The kind of virtual server `vs` is for service port `entry`, if its.
fn kind_for(entry: &ServicePortEntry, vs: &VirtualServer) -> Option<VirtualServerKind> {
    let info = &entry.info;
    if vs.protocol != info.name.protocol || vs.family() != IpFamily::of(&info.cluster_ip) {
        return None;
    }
    if vs.port == info.port {
        if vs.address == info.cluster_ip {
            return Some(VirtualServerKind::ClusterIp);
        }
        if info.external_ips.contains(&vs.address) {
            return Some(VirtualServerKind::ExternalIp);
        }
        if info.load_balancer_vips.contains(&vs.address) {
            return Some(VirtualServerKind::LoadBalancer);
        }
    }
    (info.node_port != 0 && vs.port == info.node_port).then_some(VirtualServerKind::NodePort)
}

/// Dumps an IPVS node: one service port per Service (with the cluster:
/// `clusters`, one [`ProxyState`] per family, empty when unknown) or
/// per cluster IP, external or load-balancer address and node port
/// (without), its endpoints the real servers with their weights,
/// connections and shares of new connections; and the anomalies of the
/// IPVS table and ipsets. `iptables`, the dump of the node's iptables
/// rules when read, tells a mode switch (iptables-mode Service rules next
/// to virtual servers) and rules missing altogether. `sources` of the
/// result is empty: the caller names what it read.
///
/// ```
/// use kpinspect_core::mode::ipvs::{dump, parse_ipvsadm, IpvsState};
/// let text = "TCP  10.96.0.1:443 wrr\n  -> 192.168.0.2:6443 Masq 1 0 0\n  -> 192.168.0.3:6443 Masq 3 0 0\n";
/// let state = IpvsState { servers: parse_ipvsadm(text).unwrap(), sets: None };
/// let d = dump(&state, &[], None);
/// assert_eq!(d.services[0].chains, ["10.96.0.1:443/TCP"]);
/// assert_eq!(d.services[0].endpoints[1].probability, Some(0.75));
/// ```
pub fn dump(state: &IpvsState, clusters: &[ProxyState], iptables: Option<&NodeDump>) -> NodeDump {
    let facts = state.sets.as_deref().map(SetFacts::read);
    let mut services = Vec::new();
    let mut anomalies = Vec::new();
    let mut used = vec![false; state.servers.len()];
    if !clusters.is_empty() {
        for (cluster, entry) in clusters
            .iter()
            .flat_map(|c| c.ports.iter().map(move |e| (c, e)))
        {
            let mine: Vec<(VirtualServerKind, &VirtualServer)> = state
                .servers
                .iter()
                .enumerate()
                .filter_map(|(i, vs)| {
                    let kind = kind_for(entry, vs)?;
                    used[i] = true;
                    Some((kind, vs))
                })
                .collect();
            let info = &entry.info;
            if !mine.iter().any(|(k, _)| *k == VirtualServerKind::ClusterIp)
                && IpFamily::of(&info.cluster_ip) == cluster.family
            {
                anomalies.push(Anomaly {
                    kind: AnomalyKind::MissingVirtualServer,
                    chain: format!(
                        "{}/{}",
                        join_host_port(&info.cluster_ip, info.port),
                        protocol_name(info.name.protocol)
                    ),
                    message: format!(
                        "Service port {} has no virtual server for its cluster IP: connections to it are not balanced",
                        info.name.to_kube_string()
                    ),
                });
            }
            if mine.is_empty() {
                continue;
            }
            let mut s = new_service(&info.name.to_kube_string(), info.name.protocol.as_str());
            s.family = cluster.family;
            s.cluster_ip = Some(info.cluster_ip.to_string());
            s.port = Some(info.port);
            s.node_port = (info.node_port != 0).then_some(info.node_port);
            s.external_ips = info.external_ips.iter().map(IpAddr::to_string).collect();
            s.load_balancer_ips = info
                .load_balancer_vips
                .iter()
                .map(IpAddr::to_string)
                .collect();
            s.external_traffic_policy = policy(info.external_policy_local);
            s.internal_traffic_policy = policy(info.internal_policy_local);
            s.health_check_node_port =
                (info.health_check_node_port != 0).then_some(info.health_check_node_port);
            s.load_balancer_source_ranges = info
                .load_balancer_source_ranges
                .iter()
                .map(ToString::to_string)
                .collect();
            fill(&mut s, &mine, Some(entry));
            services.push(s);
        }
        for (vs, _) in state.servers.iter().zip(&used).filter(|(_, u)| !**u) {
            anomalies.push(Anomaly {
                kind: AnomalyKind::StaleVirtualServer,
                chain: vs.key(),
                message: format!(
                    "virtual server {} is no Service port's of the cluster: left behind, or added by another program",
                    vs.key()
                ),
            });
        }
    } else {
        services = by_address(&state.servers, facts.as_ref());
    }
    if let Some(facts) = &facts {
        set_anomalies(state, facts, clusters, &mut anomalies);
    }
    for vs in &state.servers {
        for r in vs.real_servers.iter().filter(|r| r.weight == 0) {
            anomalies.push(Anomaly {
                kind: AnomalyKind::ZeroWeight,
                chain: vs.key(),
                message: zero_weight(vs, r),
            });
        }
    }
    if let Some(ipt) = iptables
        && !state.servers.is_empty()
    {
        let chains: BTreeSet<&str> = ipt
            .services
            .iter()
            .flat_map(|s| s.chains.iter().map(String::as_str))
            .collect();
        if !chains.is_empty()
            || ipt
                .sources
                .iter()
                .any(|s| s.generation.mode == RulesMode::Iptables)
        {
            anomalies.push(Anomaly {
                kind: AnomalyKind::ModeSwitch,
                chain: String::new(),
                message: format!(
                    "IPVS virtual servers next to iptables-mode Service rules ({} chains): a proxy-mode switch left the old mode's state; both catch Service traffic",
                    chains.len()
                ),
            });
        }
        for s in ipt
            .sources
            .iter()
            .filter(|s| s.generation.mode == RulesMode::None)
        {
            anomalies.push(Anomaly {
                kind: AnomalyKind::MissingRules,
                chain: "KUBE-SERVICES".into(),
                message: format!(
                    "IPVS virtual servers but no kube-proxy chain in {}: nothing masquerades Service traffic or accepts it where filters drop",
                    if s.name.is_empty() { "the rules" } else { &s.name }
                ),
            });
        }
    }
    services.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, &a.protocol, &a.chains).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            &b.protocol,
            &b.chains,
        ))
    });
    anomalies.sort_by(|a, b| (a.kind, &a.chain, &a.message).cmp(&(b.kind, &b.chain, &b.message)));
    anomalies.dedup();
    NodeDump {
        services,
        anomalies,
        sources: vec![],
    }
}

/// Why real server `r` of `vs` at weight 0 is worth a look.
fn zero_weight(vs: &VirtualServer, r: &RealServer) -> String {
    let what = format!("real server {} is at weight 0", r.endpoint());
    if vs.protocol != Protocol::Tcp {
        return format!(
            "{what}: kube-proxy deletes a removed {} endpoint's real server at once (graceful termination is for TCP only), so kube-proxy failed to delete it or another program set the weight",
            protocol_name(vs.protocol)
        );
    }
    match (r.active_connections, r.inactive_connections) {
        (Some(0), Some(0)) => format!(
            "{what} with no connections left: kube-proxy deletes a removed endpoint's real server once its connections end (graceful termination); this one is stuck"
        ),
        (Some(a), Some(i)) => format!(
            "{what} with {a} active and {i} inactive connections: a removed endpoint draining (graceful termination); stuck if it stays after they end"
        ),
        _ => format!(
            "{what}: a removed endpoint draining (graceful termination), or stuck if it stays (ipvsadm -Ln shows its connections)"
        ),
    }
}

/// The real servers as IPVS balances over them (address, port, weight),
/// without the connection counts.
fn balance(vs: &VirtualServer) -> Vec<(IpAddr, u16, u32)> {
    vs.real_servers
        .iter()
        .map(|r| (r.address, r.port, r.weight))
        .collect()
}

fn policy(local: bool) -> String {
    if local { "Local" } else { "Cluster" }.into()
}

/// The endpoints of virtual server `vs` (`entry` says which are local).
fn endpoints(vs: &VirtualServer, entry: Option<&ServicePortEntry>) -> Vec<EndpointDump> {
    let shares = shares(vs.scheduler.name(), &vs.real_servers);
    vs.real_servers
        .iter()
        .zip(shares)
        .map(|(r, probability)| EndpointDump {
            ip: r.address.to_string(),
            port: r.port,
            probability,
            chain: String::new(),
            local: entry.map(|e| {
                e.endpoints
                    .iter()
                    .any(|ep| ep.ip == r.address && ep.port == r.port && ep.local)
            }),
            weight: Some(r.weight),
            active_connections: r.active_connections,
            inactive_connections: r.inactive_connections,
        })
        .collect()
}

/// Fills endpoints, scheduler, affinity and virtual servers of `s` from
/// its virtual servers: the endpoints are the cluster IP's (else the first
/// one's); external ones apart when they differ. Connection counts add up
/// over the virtual servers that balance over the same real servers (a
/// node port's on every node address).
fn fill(
    s: &mut ServiceDump,
    mine: &[(VirtualServerKind, &VirtualServer)],
    entry: Option<&ServicePortEntry>,
) {
    let internal = mine
        .iter()
        .find(|(k, _)| *k == VirtualServerKind::ClusterIp)
        .or(mine.first());
    let Some((_, first)) = internal else { return };
    let with_connections = |vs: &VirtualServer| {
        let mut eps = endpoints(vs, entry);
        for (_, other) in mine {
            if std::ptr::eq(*other, vs) || balance(other) != balance(vs) {
                continue;
            }
            for (e, r) in eps.iter_mut().zip(&other.real_servers) {
                e.active_connections = add(e.active_connections, r.active_connections);
                e.inactive_connections = add(e.inactive_connections, r.inactive_connections);
            }
        }
        eps
    };
    s.family = first.family();
    s.endpoints = with_connections(first);
    s.scheduler = Some(first.scheduler.name().to_string());
    s.affinity_timeout = first.flags.persistent().then_some(first.timeout);
    if let Some((_, ext)) = mine
        .iter()
        .find(|(k, vs)| *k != VirtualServerKind::ClusterIp && balance(vs) != balance(first))
    {
        s.external_endpoints = Some(with_connections(ext));
    }
    s.chains = mine.iter().map(|(_, vs)| vs.key()).collect();
}

fn add(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// Without the cluster: one service port per cluster/external/LB address
/// and port, node-port virtual servers (the ipsets say which) grouped by
/// port; a virtual server the ipsets do not place (or without them) has
/// no address but its virtual server (`chains`).
fn by_address(servers: &[VirtualServer], facts: Option<&SetFacts>) -> Vec<ServiceDump> {
    let mut node_ports: BTreeMap<(u8, u16), Vec<&VirtualServer>> = BTreeMap::new();
    let mut out = Vec::new();
    for vs in servers {
        let in_set = |set| facts.is_some_and(|f| f.has(set, vs));
        let local = |set| facts.is_some_and(|f| f.has(set, vs));
        let address_set = [CLUSTER_IP, EXTERNAL_IP, LOAD_BALANCER]
            .into_iter()
            .find(|s| in_set(s));
        let node_port = address_set.is_none()
            && facts.is_some_and(|f| {
                f.node_port(false, vs.protocol, vs.port) || f.node_port(true, vs.protocol, vs.port)
            });
        if node_port {
            node_ports
                .entry((super::server::protocol_number(vs.protocol), vs.port))
                .or_default()
                .push(vs);
            continue;
        }
        let mut s = new_service("", vs.protocol.as_str());
        let kind = match address_set {
            Some(EXTERNAL_IP) => {
                s.external_ips.push(vs.address.to_string());
                s.port = Some(vs.port);
                if local(EXTERNAL_IP_LOCAL) {
                    s.external_traffic_policy = policy(true);
                }
                VirtualServerKind::ExternalIp
            }
            Some(LOAD_BALANCER) => {
                s.load_balancer_ips.push(vs.address.to_string());
                s.port = Some(vs.port);
                if local(LOAD_BALANCER_LOCAL) {
                    s.external_traffic_policy = policy(true);
                }
                VirtualServerKind::LoadBalancer
            }
            Some(_) => {
                s.cluster_ip = Some(vs.address.to_string());
                s.port = Some(vs.port);
                VirtualServerKind::ClusterIp
            }
            // Not in kube-proxy's sets (or none read): only its virtual
            // server (`chains`) says where it listens.
            None => VirtualServerKind::ClusterIp,
        };
        fill(&mut s, &[(kind, vs)], None);
        out.push(s);
    }
    for ((_, port), group) in node_ports {
        let first = group[0];
        let mut s = new_service("", first.protocol.as_str());
        s.node_port = Some(port);
        if facts.is_some_and(|f| f.node_port(true, first.protocol, port)) {
            s.external_traffic_policy = policy(true);
        }
        let mine: Vec<_> = group
            .iter()
            .map(|vs| (VirtualServerKind::NodePort, *vs))
            .collect();
        fill(&mut s, &mine, None);
        out.push(s);
    }
    out
}

/// Set members without a virtual server (and, with the cluster, without a
/// Service).
fn set_anomalies(
    state: &IpvsState,
    facts: &SetFacts,
    clusters: &[ProxyState],
    anomalies: &mut Vec<Anomaly>,
) {
    for &(set, ip, protocol, port) in &facts.members {
        if ![CLUSTER_IP, EXTERNAL_IP, LOAD_BALANCER].contains(&set) {
            continue;
        }
        let key = format!("{}/{}", join_host_port(&ip, port), protocol_name(protocol));
        let service = clusters.iter().find_map(|c| {
            c.ports.iter().find(|e| {
                let i = &e.info;
                i.name.protocol == protocol
                    && i.port == port
                    && (i.cluster_ip == ip
                        || i.external_ips.contains(&ip)
                        || i.load_balancer_vips.contains(&ip))
            })
        });
        let set_name = state
            .sets
            .iter()
            .flatten()
            .find(|s| s.name == set || s.name == family_name(set, IpFamily::of(&ip)))
            .map_or(set.to_string(), |s| s.name.clone());
        if !clusters.is_empty() && service.is_none() {
            anomalies.push(Anomaly {
                kind: AnomalyKind::OrphanSetMember,
                chain: set_name,
                message: format!(
                    "{key} is in {set} but no Service of the cluster has it: left behind by a sync that failed, or the cluster text is older than the node"
                ),
            });
            continue;
        }
        let has_server = state
            .servers
            .iter()
            .any(|vs| (vs.address, vs.protocol, vs.port) == (ip, protocol, port));
        let reported = anomalies
            .iter()
            .any(|a| a.kind == AnomalyKind::MissingVirtualServer && a.chain == key);
        if !has_server && !reported {
            anomalies.push(Anomaly {
                kind: AnomalyKind::MissingVirtualServer,
                chain: key.clone(),
                message: format!(
                    "{key} is in {set_name}{} but has no virtual server: connections to it reach no endpoint",
                    service
                        .map(|e| format!(" (Service port {})", e.info.name.to_kube_string()))
                        .unwrap_or_default()
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ipvs::parse_ipvsadm;

    #[test]
    fn sets_tell_what_addresses_are_and_what_is_missing() {
        let servers = parse_ipvsadm(
            "TCP  10.96.0.1:443 rr\n  -> 192.168.0.2:6443 Masq 1 0 0\n  -> 192.168.0.3:6443 Masq 0 5 1\n\
             TCP  192.168.0.10:30080 rr\n  -> 10.244.0.5:80 Masq 1 0 0\n\
             TCP  10.0.2.15:30080 rr\n  -> 10.244.0.5:80 Masq 1 0 0\n",
        )
        .expect("ipvsadm");
        let sets = crate::ipset::parse_save(
            "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536\n\
             add KUBE-CLUSTER-IP 10.96.0.1,tcp:443\nadd KUBE-CLUSTER-IP 10.96.0.10,udp:53\n\
             create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 30080\n",
        )
        .expect("sets");
        let d = dump(
            &IpvsState {
                servers,
                sets: Some(sets),
            },
            &[],
            None,
        );
        assert_eq!(d.services.len(), 2);
        assert_eq!(d.services[0].cluster_ip.as_deref(), Some("10.96.0.1"));
        assert_eq!(d.services[0].endpoints[0].probability, Some(1.0));
        assert_eq!(d.services[1].node_port, Some(30080));
        assert_eq!(d.services[1].chains.len(), 2);
        let kinds: Vec<_> = d.anomalies.iter().map(|a| a.kind).collect();
        assert_eq!(
            kinds,
            [AnomalyKind::MissingVirtualServer, AnomalyKind::ZeroWeight]
        );
        assert_eq!(d.anomalies[0].chain, "10.96.0.10:53/UDP");
    }
}

//! The IPVS-mode compiler: a [`ProxyState`] to everything a kube-proxy
//! full sync in IPVS mode programs — virtual and real servers, the 17
//! ipsets, the iptables restore input and the addresses bound on
//! `kube-ipvs0`.
//!
//! It follows kube-proxy's `pkg/proxy/ipvs/proxier.go` (`syncProxyRules`,
//! `syncEndpoint`, `writeIptablesRules`). Service ports are visited in
//! name order where kube-proxy takes a Go map's (random) order; every list
//! of the result is sorted, so the output is deterministic.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::ipset::{
    CLUSTER_IP, EXTERNAL_IP, EXTERNAL_IP_LOCAL, HEALTH_CHECK_NODE_PORT, IPVS_IPS, LOAD_BALANCER,
    LOAD_BALANCER_FW, LOAD_BALANCER_LOCAL, LOAD_BALANCER_SOURCE_CIDR, LOAD_BALANCER_SOURCE_IP,
    LOOP_BACK, NODE_PORT_LOCAL_SCTP, NODE_PORT_LOCAL_TCP, NODE_PORT_LOCAL_UDP, NODE_PORT_SCTP,
    NODE_PORT_TCP, NODE_PORT_UDP, SET_INFO, SET_RULES, family_name,
};
use super::{
    IpSet, IpSetEntry, RealServer, Scheduler, ServiceFlags, VirtualServer, VirtualServerKind,
};
use crate::config::ProxyConfig;
use crate::mode::iptables::{detector_matches, masquerade_mark};
use crate::model::Protocol;
use crate::net::{IpFamily, IpNet};
use crate::netfilter::{Restore, RestoreTable, TableOrder, wln};
use crate::proxy::{EndpointInfo, Notice, ProxyState, ServicePortEntry, categorize};

/// Everything one IPVS-mode proxier (one IP family) programs in a full
/// sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compiled {
    /// The family.
    pub family: IpFamily,
    /// The scheduler of every virtual server.
    pub scheduler: Scheduler,
    /// The node addresses node ports are served on (empty when no service
    /// port has a node port, as kube-proxy then does not look them up).
    pub node_ips: Vec<IpAddr>,
    /// The virtual servers with their real servers, in `ipvsadm`'s order
    /// ([`VirtualServer::ipvsadm_cmp`]).
    pub virtual_servers: Vec<VirtualServer>,
    /// The 17 ipsets with their members, in kube-proxy's order.
    pub ipsets: Vec<IpSet>,
    /// The `iptables-restore` input (nat, then filter).
    #[serde(serialize_with = "restore_text")]
    pub restore: Restore,
    /// The addresses bound on `kube-ipvs0` (`/32`, `/128`), sorted.
    pub addresses: Vec<IpNet>,
    /// What kube-proxy would log, and where its result depends on the
    /// order it visits service ports.
    pub notices: Vec<Notice>,
}

fn restore_text<S: serde::Serializer>(r: &Restore, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.render())
}

impl Compiled {
    /// The set with base (IPv4) name `base`, e.g. `KUBE-CLUSTER-IP` (the
    /// IPv6 proxier's `KUBE-6-CLUSTER-IP`).
    pub fn ipset(&self, base: &str) -> Option<&IpSet> {
        let name = family_name(base, self.family);
        self.ipsets.iter().find(|s| s.name == name)
    }

    /// The virtual server of kube-proxy key `key` (`ip:port/PROTO`).
    pub fn virtual_server(&self, key: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| v.key() == key)
    }
}

/// Compiles a full IPVS-mode sync for `state`.
///
/// ```
/// use kpinspect_core::{config::ProxyConfig, model::Cluster, net::IpFamily, proxy::ProxyState};
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
/// let out = kpinspect_core::mode::ipvs::compile(&state, &config);
/// assert!(out.virtual_servers.is_empty());
/// assert_eq!(out.ipsets.len(), 17);
/// let text = out.restore.render();
/// assert!(text.starts_with("*nat\n:KUBE-SERVICES - [0:0]\n"));
/// assert!(text.ends_with("-m set --match-set KUBE-IPVS-IPS dst -j REJECT\nCOMMIT\n"));
/// ```
pub fn compile(state: &ProxyState, config: &ProxyConfig) -> Compiled {
    let family = state.family;
    let scheduler = Scheduler::from_config(&config.ipvs.scheduler);
    let mut notices = state.notices.clone();

    // Every address of the node except those on kube-ipvs0 (kube-proxy's
    // GetAllLocalAddressesExcept): external and load-balancer IPs among
    // them are not bound.
    let local = local_addresses(config, family);
    // What kube-ipvs0 holds in the steady state: every cluster IP, and the
    // external and load-balancer IPs that are not otherwise local.
    let mut bound: BTreeSet<IpAddr> = BTreeSet::new();
    for p in &state.ports {
        let info = &p.info;
        bound.insert(info.cluster_ip);
        for ip in info.external_ips.iter().chain(&info.load_balancer_vips) {
            if !local.contains(ip) {
                bound.insert(*ip);
            }
        }
    }
    let has_node_port = state.ports.iter().any(|p| p.info.node_port != 0);
    let node_ips = if has_node_port {
        node_port_ips(config, family, &local, &bound, &mut notices)
    } else {
        Vec::new()
    };
    if has_node_port && node_ips.is_empty() {
        notices.push(Notice {
            object: "node".into(),
            message: format!(
                "no {} node IP serves node ports: node ports get no virtual servers and no ipset entries (give the node's addresses)",
                family.as_k8s_str()
            ),
        });
    }

    let mut c = Ctx {
        config,
        family,
        scheduler: scheduler.clone(),
        local: &local,
        node_ips: &node_ips,
        node_ip: config.node.primary_ip(family),
        sets: SET_INFO.iter().map(|s| (s.name, BTreeSet::new())).collect(),
        servers: Vec::new(),
        index: HashMap::new(),
        out_filter: Vec::new(),
        notices,
    };
    for entry in &state.ports {
        c.service_port(entry);
    }
    for ip in &bound {
        c.add(IPVS_IPS, IpSetEntry::Ip(*ip));
    }
    let restore = c.write_rules();

    let mut virtual_servers = std::mem::take(&mut c.servers);
    virtual_servers.sort_by(|a, b| a.ipvsadm_cmp(b));
    let ipsets = SET_INFO
        .iter()
        .map(|info| IpSet {
            name: family_name(info.name, family),
            set_type: info.set_type,
            family,
            comment: info.comment,
            entries: c.sets[info.name].iter().cloned().collect(),
        })
        .collect();
    Compiled {
        family,
        scheduler,
        node_ips: node_ips.clone(),
        virtual_servers,
        ipsets,
        restore,
        addresses: bound.iter().map(|ip| IpNet::from(*ip)).collect(),
        notices: c.notices,
    }
}

/// Whether kube-proxy's netlink handle lists `ip` as an address of this
/// family (`isValidForSet`): not loopback, not IPv6 link-local.
fn usable_local_address(ip: &IpAddr, family: IpFamily) -> bool {
    if IpFamily::of(ip) != family || ip.is_loopback() {
        return false;
    }
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some() || (v6.segments()[0] & 0xffc0) != 0xfe80,
        IpAddr::V4(_) => true,
    }
}

/// The node's addresses of `family` kube-proxy sees outside kube-ipvs0.
fn local_addresses(config: &ProxyConfig, family: IpFamily) -> BTreeSet<IpAddr> {
    config
        .node
        .ips
        .iter()
        .filter(|ip| usable_local_address(ip, family))
        .copied()
        .collect()
}

/// The node IPs of node-port virtual servers. With `nodePortAddresses`
/// matching everything: every local address of the family. Otherwise the
/// addresses of every interface within the CIDRs, minus loopback — and
/// kube-ipvs0 is an interface, so from kube-proxy's second sync on the
/// addresses it bound there count too when a CIDR holds them.
fn node_port_ips(
    config: &ProxyConfig,
    family: IpFamily,
    local: &BTreeSet<IpAddr>,
    bound: &BTreeSet<IpAddr>,
    notices: &mut Vec<Notice>,
) -> Vec<IpAddr> {
    let npa = config.node_port_addresses(family);
    if npa.match_all {
        return local.iter().copied().collect();
    }
    let wanted = |ip: &IpAddr| !ip.is_loopback() && npa.cidrs.iter().any(|c| c.contains(ip));
    let mut ips: BTreeSet<IpAddr> = config
        .node
        .ips
        .iter()
        .filter(|ip| wanted(ip))
        .copied()
        .collect();
    let from_ipvs0: Vec<IpAddr> = bound
        .iter()
        .filter(|ip| wanted(ip) && !ips.contains(ip))
        .copied()
        .collect();
    if !from_ipvs0.is_empty() {
        let list: Vec<String> = from_ipvs0.iter().map(IpAddr::to_string).collect();
        notices.push(Notice {
            object: "nodePortAddresses".into(),
            message: format!(
                "also selects {}, bound on kube-ipvs0: from its second sync on kube-proxy serves node ports there too",
                list.join(", ")
            ),
        });
        ips.extend(from_ipvs0);
    }
    ips.into_iter().collect()
}

struct Ctx<'a> {
    config: &'a ProxyConfig,
    family: IpFamily,
    scheduler: Scheduler,
    local: &'a BTreeSet<IpAddr>,
    node_ips: &'a [IpAddr],
    /// The proxier's node IP (the primary one of the family).
    node_ip: Option<IpAddr>,
    sets: HashMap<&'static str, BTreeSet<IpSetEntry>>,
    servers: Vec<VirtualServer>,
    index: HashMap<(IpAddr, Protocol, u16), usize>,
    /// Load-balancer IP, protocol, port that the node must not reach
    /// (source ranges that do not hold the node IP).
    out_filter: Vec<(IpAddr, Protocol, u16)>,
    notices: Vec<Notice>,
}

impl Ctx<'_> {
    fn add(&mut self, set: &'static str, entry: IpSetEntry) {
        if let Some(s) = self.sets.get_mut(set) {
            s.insert(entry);
        }
    }

    fn has(&self, set: &str) -> bool {
        self.sets.get(set).is_some_and(|s| !s.is_empty())
    }

    fn service_port(&mut self, entry: &ServicePortEntry) {
        let info = &entry.info;
        let eps = &entry.endpoints;
        let proto = info.name.protocol;
        let port = info.port;
        let cat = categorize(info, eps, self.config);
        // kube-proxy's syncEndpoint: "Local" endpoints if asked for and
        // there are any, else the "Cluster" ones (so that pods on a node
        // without local endpoints still reach the service).
        let pick = |only_local: bool| -> Vec<RealServer> {
            let chosen = if only_local && !cat.local.is_empty() {
                &cat.local
            } else {
                &cat.cluster
            };
            real_servers(eps, chosen)
        };

        // Hairpin: every local endpoint, whatever its state.
        for ep in eps.iter().filter(|e| e.local) {
            self.add(
                LOOP_BACK,
                IpSetEntry::IpPortIp {
                    ip: ep.ip,
                    protocol: proto,
                    port: ep.port,
                    ip2: ep.ip,
                },
            );
        }

        let cip = info.cluster_ip;
        self.add(
            CLUSTER_IP,
            IpSetEntry::IpPort {
                ip: cip,
                protocol: proto,
                port,
            },
        );
        self.server(
            entry,
            cip,
            port,
            VirtualServerKind::ClusterIp,
            true,
            pick(info.internal_policy_local),
        );

        for &xip in &info.external_ips {
            let set = if info.external_policy_local {
                EXTERNAL_IP_LOCAL
            } else {
                EXTERNAL_IP
            };
            self.add(
                set,
                IpSetEntry::IpPort {
                    ip: xip,
                    protocol: proto,
                    port,
                },
            );
            let bind = !self.local.contains(&xip);
            self.server(
                entry,
                xip,
                port,
                VirtualServerKind::ExternalIp,
                bind,
                pick(info.external_policy_local),
            );
        }

        for &lb in &info.load_balancer_vips {
            let e = IpSetEntry::IpPort {
                ip: lb,
                protocol: proto,
                port,
            };
            self.add(LOAD_BALANCER, e.clone());
            if info.external_policy_local {
                self.add(LOAD_BALANCER_LOCAL, e.clone());
            }
            if !info.load_balancer_source_ranges.is_empty() {
                self.add(LOAD_BALANCER_FW, e);
                let mut allow_from_node = false;
                for net in &info.load_balancer_source_ranges {
                    self.add(
                        LOAD_BALANCER_SOURCE_CIDR,
                        IpSetEntry::IpPortNet {
                            ip: lb,
                            protocol: proto,
                            port,
                            net: *net,
                        },
                    );
                    if self.node_ip.is_some_and(|n| net.contains(&n)) {
                        allow_from_node = true;
                    }
                }
                if allow_from_node {
                    self.add(
                        LOAD_BALANCER_SOURCE_IP,
                        IpSetEntry::IpPortIp {
                            ip: lb,
                            protocol: proto,
                            port,
                            ip2: lb,
                        },
                    );
                } else {
                    self.out_filter.push((lb, proto, port));
                }
            }
            let bind = !self.local.contains(&lb);
            self.server(
                entry,
                lb,
                port,
                VirtualServerKind::LoadBalancer,
                bind,
                pick(info.external_policy_local),
            );
        }

        let np = info.node_port;
        if np != 0 {
            // Without node IPs kube-proxy skips the rest of the service
            // port, its health-check node port included.
            if self.node_ips.is_empty() {
                return;
            }
            let entries: Vec<IpSetEntry> = match proto {
                Protocol::Tcp | Protocol::Udp => vec![IpSetEntry::Port(np)],
                Protocol::Sctp => self
                    .node_ips
                    .iter()
                    .map(|&ip| IpSetEntry::IpPort {
                        ip,
                        protocol: proto,
                        port: np,
                    })
                    .collect(),
            };
            let (set, local_set) = match proto {
                Protocol::Tcp => (NODE_PORT_TCP, NODE_PORT_LOCAL_TCP),
                Protocol::Udp => (NODE_PORT_UDP, NODE_PORT_LOCAL_UDP),
                Protocol::Sctp => (NODE_PORT_SCTP, NODE_PORT_LOCAL_SCTP),
            };
            for e in &entries {
                self.add(set, e.clone());
                if info.external_policy_local {
                    self.add(local_set, e.clone());
                }
            }
            let rs = pick(info.external_policy_local);
            let node_ips = self.node_ips;
            for &ip in node_ips {
                self.server(
                    entry,
                    ip,
                    np,
                    VirtualServerKind::NodePort,
                    false,
                    rs.clone(),
                );
            }
        }

        if info.health_check_node_port != 0 {
            self.add(
                HEALTH_CHECK_NODE_PORT,
                IpSetEntry::Port(info.health_check_node_port),
            );
        }
    }

    /// Adds a virtual server; a second one with the same address, port and
    /// protocol is the same IPVS service, which kube-proxy syncs twice.
    fn server(
        &mut self,
        entry: &ServicePortEntry,
        address: IpAddr,
        port: u16,
        kind: VirtualServerKind,
        bind: bool,
        real_servers: Vec<RealServer>,
    ) {
        let info = &entry.info;
        let mut flags = 0;
        if info.session_affinity_timeout.is_some() {
            flags |= ServiceFlags::PERSISTENT;
        }
        if self.scheduler.sets_source_hash() {
            flags |= ServiceFlags::SOURCE_HASH;
        }
        let vs = VirtualServer {
            address,
            protocol: info.name.protocol,
            port,
            scheduler: self.scheduler.clone(),
            flags: ServiceFlags(flags),
            timeout: info.session_affinity_timeout.unwrap_or(0),
            kind: Some(kind),
            service: Some(info.name.clone()),
            bind,
            real_servers,
        };
        let key = (address, info.name.protocol, port);
        match self.index.get(&key) {
            None => {
                self.index.insert(key, self.servers.len());
                self.servers.push(vs);
            }
            Some(&i) => {
                let first = &self.servers[i];
                if first.service != vs.service
                    || first.real_servers != vs.real_servers
                    || first.flags != vs.flags
                    || first.timeout != vs.timeout
                {
                    self.notices.push(Notice {
                        object: service_string(&vs),
                        message: format!(
                            "virtual server {} is also that of {}: kube-proxy keeps whichever it syncs last (Go map order); kpinspect shows the first",
                            vs.key(),
                            service_string(first)
                        ),
                    });
                }
            }
        }
    }

    /// The iptables restore input (`writeIptablesRules`).
    fn write_rules(&self) -> Restore {
        let config = self.config;
        let mark = masquerade_mark(config);
        let name = |base: &str| family_name(base, self.family);
        let comment = |base: &str| -> &'static str {
            SET_INFO
                .iter()
                .find(|s| s.name == base)
                .map(|s| s.comment)
                .unwrap_or_default()
        };
        let mut nat = RestoreTable::default();
        let mut filter = RestoreTable::default();
        for c in [
            "KUBE-SERVICES",
            "KUBE-POSTROUTING",
            "KUBE-NODE-PORT",
            "KUBE-LOAD-BALANCER",
            "KUBE-MARK-MASQ",
        ] {
            wln!(nat.chains, ":{c} - [0:0]");
        }
        for c in [
            "KUBE-FORWARD",
            "KUBE-NODE-PORT",
            "KUBE-PROXY-FIREWALL",
            "KUBE-SOURCE-RANGES-FIREWALL",
            "KUBE-IPVS-FILTER",
            "KUBE-IPVS-OUT-FILTER",
        ] {
            wln!(filter.chains, ":{c} - [0:0]");
        }
        let nr = &mut nat.rules;
        let fr = &mut filter.rules;
        let loopback = match self.family {
            IpFamily::V4 => "127.0.0.0/8",
            IpFamily::V6 => "::1/128",
        };
        wln!(nr, "-A KUBE-SERVICES -s {loopback} -j RETURN");
        for r in &SET_RULES {
            if !self.has(r.set) {
                continue;
            }
            let proto = r.protocol.map(|p| format!(" -p {p}")).unwrap_or_default();
            let buf = if r.nat { &mut *nr } else { &mut *fr };
            wln!(
                buf,
                "-A {}{proto} -m comment --comment \"{}\" -m set --match-set {} {} -j {}",
                r.from,
                comment(r.set),
                name(r.set),
                r.match_type,
                r.to
            );
        }
        if self.has(CLUSTER_IP) {
            let prefix = format!(
                "-A KUBE-SERVICES -m comment --comment \"{}\" -m set --match-set {}",
                comment(CLUSTER_IP),
                name(CLUSTER_IP)
            );
            if config.iptables.masquerade_all {
                wln!(nr, "{prefix} dst,dst -j KUBE-MARK-MASQ");
            } else if let Some(detector) = config.local_detector(self.family) {
                let (_, not_local) = detector_matches(&detector);
                wln!(nr, "{prefix} dst,dst {not_local} -j KUBE-MARK-MASQ");
            } else {
                wln!(nr, "{prefix} src,dst -j KUBE-MARK-MASQ");
            }
        }
        for (set, masquerade) in [(EXTERNAL_IP, true), (EXTERNAL_IP_LOCAL, false)] {
            if !self.has(set) {
                continue;
            }
            let prefix = format!(
                "-A KUBE-SERVICES -m comment --comment \"{}\" -m set --match-set {} dst,dst",
                comment(set),
                name(set)
            );
            if masquerade {
                wln!(nr, "{prefix} -j KUBE-MARK-MASQ");
            }
            wln!(
                nr,
                "{prefix} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
            );
            wln!(nr, "{prefix} -m addrtype --dst-type LOCAL -j ACCEPT");
        }
        wln!(
            nr,
            "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT"
        );
        wln!(nr, "-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ");
        wln!(fr, "-A KUBE-SOURCE-RANGES-FIREWALL -j DROP");
        for (ip, proto, port) in &self.out_filter {
            wln!(
                fr,
                "-A KUBE-IPVS-OUT-FILTER -s {ip} -m ipvs --vaddr {ip} --vproto {proto} --vport {port} -j DROP"
            );
        }
        for set in [CLUSTER_IP, LOAD_BALANCER] {
            if self.has(set) {
                wln!(
                    nr,
                    "-A KUBE-SERVICES -m set --match-set {} dst,dst -j ACCEPT",
                    name(set)
                );
            }
        }
        wln!(
            fr,
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        );
        wln!(
            fr,
            "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        wln!(
            fr,
            "-A KUBE-NODE-PORT -m comment --comment \"{}\" -m set --match-set {} dst -j ACCEPT",
            comment(HEALTH_CHECK_NODE_PORT),
            name(HEALTH_CHECK_NODE_PORT)
        );
        for (set, match_type) in [
            (LOAD_BALANCER, "dst,dst"),
            (CLUSTER_IP, "dst,dst"),
            (EXTERNAL_IP, "dst,dst"),
            (EXTERNAL_IP_LOCAL, "dst,dst"),
            (HEALTH_CHECK_NODE_PORT, "dst"),
        ] {
            wln!(
                fr,
                "-A KUBE-IPVS-FILTER -m set --match-set {} {match_type} -j RETURN",
                name(set)
            );
        }
        wln!(
            fr,
            "-A KUBE-IPVS-FILTER -m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
            name(IPVS_IPS)
        );
        crate::mode::write_masquerade_rules(nr, &mark, config.node.random_fully);
        Restore {
            family: self.family,
            order: TableOrder::NatFirst,
            filter,
            nat,
        }
    }
}

/// The real servers of the endpoints at `indices`, deduplicated on
/// `ip:port` and ordered by address, then port.
fn real_servers(eps: &[EndpointInfo], indices: &[usize]) -> Vec<RealServer> {
    let mut rs: Vec<RealServer> = indices
        .iter()
        .map(|&i| RealServer::new(eps[i].ip, eps[i].port))
        .collect();
    rs.sort_by_key(|r| (r.address, r.port));
    rs.dedup();
    rs
}

/// The service port of a compiled virtual server, as kube-proxy names it.
fn service_string(vs: &VirtualServer) -> String {
    vs.service
        .as_ref()
        .map(|s| s.to_kube_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_skip_loopback_and_link_local() {
        // kube-proxy's TestIpIsValidForSet.
        let cases = [
            (IpFamily::V4, "127.0.0.1", false),
            (IpFamily::V4, "127.6.7.8", false),
            (IpFamily::V4, "8.8.8.8", true),
            (IpFamily::V4, "169.254.0.0", true),
            (IpFamily::V4, "1000::", false),
            (IpFamily::V6, "::1", false),
            (IpFamily::V6, "1000::", true),
            (IpFamily::V6, "fe80::200:ff:fe01:1", false),
            (IpFamily::V6, "8.8.8.8", false),
        ];
        for (family, ip, want) in cases {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(usable_local_address(&ip, family), want, "{ip} {family}");
        }
    }

    #[test]
    fn chain_headers_match_kube_proxy() {
        // kube-proxy's TestCreateAndLinkKubeChain.
        let config = ProxyConfig::default();
        let state = ProxyState::build(&Default::default(), &config, IpFamily::V4);
        let r = compile(&state, &config).restore;
        assert_eq!(
            r.nat.chains.as_str(),
            ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
        );
        assert_eq!(
            r.filter.chains.as_str(),
            ":KUBE-FORWARD - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SOURCE-RANGES-FIREWALL - [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n:KUBE-IPVS-OUT-FILTER - [0:0]\n"
        );
    }

    fn node_port_service(external_ips: &[&str]) -> crate::model::Cluster {
        use crate::model::*;
        let ips = |v: &[&str]| v.iter().map(|s| s.parse().expect("ip")).collect();
        Cluster {
            services: vec![Service {
                namespace: "ns".into(),
                name: "svc".into(),
                service_type: ServiceType::LoadBalancer,
                cluster_ips: ips(&["10.96.0.1"]),
                ports: vec![ServicePort {
                    name: "p".into(),
                    protocol: Protocol::Tcp,
                    port: 80,
                    node_port: 30080,
                }],
                external_ips: ips(external_ips),
                has_external_ips: !external_ips.is_empty(),
                load_balancer_ingress: vec![],
                load_balancer_source_ranges: vec![],
                external_traffic_policy: TrafficPolicy::Local,
                internal_traffic_policy: TrafficPolicy::Cluster,
                health_check_node_port: 32000,
                session_affinity_timeout: None,
            }],
            endpoint_slices: vec![],
        }
    }

    fn compile_with(cluster: &crate::model::Cluster, config: &ProxyConfig) -> Compiled {
        compile(&ProxyState::build(cluster, config, IpFamily::V4), config)
    }

    #[test]
    fn node_port_addresses_select_kube_ipvs0_addresses_too() {
        use crate::config::NodePortAddressesConfig;
        let mut config = ProxyConfig::default();
        config.node.ips = vec![
            "10.0.0.5".parse().expect("ip"),
            "192.168.1.1".parse().expect("ip"),
        ];
        config.node_port_addresses = Some(NodePortAddressesConfig::Cidrs(vec![
            "10.0.0.0/8".parse().expect("cidr"),
        ]));
        let out = compile_with(&node_port_service(&[]), &config);
        let ips: Vec<String> = out.node_ips.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            ips,
            ["10.0.0.5", "10.96.0.1"],
            "the cluster IP is on kube-ipvs0"
        );
        assert!(out.virtual_server("10.96.0.1:30080/TCP").is_some());
        assert!(out.notices.iter().any(|n| n.object == "nodePortAddresses"));
    }

    #[test]
    fn external_ips_already_local_are_not_bound() {
        let mut config = ProxyConfig::default();
        config.node.ips = vec!["192.168.1.1".parse().expect("ip")];
        let out = compile_with(&node_port_service(&["192.168.1.1", "203.0.113.9"]), &config);
        let addrs: Vec<String> = out.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(addrs, ["10.96.0.1/32", "203.0.113.9/32"]);
        let vs = out
            .virtual_server("192.168.1.1:80/TCP")
            .expect("external IP VS");
        assert!(!vs.bind);
        assert_eq!(
            out.ipset("KUBE-NODE-PORT-LOCAL-TCP").expect("set").entries,
            [IpSetEntry::Port(30080)]
        );
        assert_eq!(
            out.ipset("KUBE-HEALTH-CHECK-NODE-PORT")
                .expect("set")
                .entries,
            [IpSetEntry::Port(32000)]
        );
    }

    #[test]
    fn without_node_ips_node_ports_and_health_checks_are_skipped() {
        let out = compile_with(&node_port_service(&[]), &ProxyConfig::default());
        assert_eq!(out.virtual_servers.len(), 1);
        assert!(
            out.ipset("KUBE-NODE-PORT-TCP")
                .expect("set")
                .entries
                .is_empty()
        );
        assert!(
            out.ipset("KUBE-HEALTH-CHECK-NODE-PORT")
                .expect("set")
                .entries
                .is_empty(),
            "kube-proxy skips the rest of the service port"
        );
        assert!(out.notices.iter().any(|n| n.object == "node"));
    }
}

//! The compiler: one proxier's first full sync on an empty node, as the
//! `nft -f` transaction kube-proxy's nftables proxier writes (the skeleton
//! of `setupNFTables`, then every service port as `syncProxyRules` writes
//! it).

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use crate::config::{LocalDetector, NodePortAddresses, ProxyConfig, ProxyMode};
use crate::net::IpFamily;
use crate::nft::{Chain, Element, Fake, FakeError, Family, Map, Rule, Set, Table, Transaction};
use crate::proxy::{EndpointInfo, Notice, ProxyState, ServicePortEntry, categorize};

use super::names::{ServiceChains, endpoint_chain_base};
use super::normalize::sort_nftables_transaction;
use super::sync::ElementCaches;

/// The table kube-proxy writes in each family.
pub const TABLE: &str = "kube-proxy";

/// The base chains (`nftablesBaseChains`): name, type, hook, priority, in
/// kube-proxy's order.
pub const BASE_CHAINS: [(&str, &str, &str, i32); 8] = [
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
];

/// The jumps from the base chains (`nftablesJumpChains`): destination,
/// source, extra match, in kube-proxy's order.
pub const JUMP_CHAINS: [(&str, &str, &str); 11] = [
    ("nodeport-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-input", "ct state new"),
    ("service-endpoints-check", "filter-forward", "ct state new"),
    ("service-endpoints-check", "filter-output", "ct state new"),
    (
        "firewall-check",
        "filter-prerouting-pre-dnat",
        "ct state new",
    ),
    ("firewall-check", "filter-output-pre-dnat", "ct state new"),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new"),
    ("cluster-ips-check", "filter-output", "ct state new"),
];

/// The table's comment.
pub(super) const TABLE_COMMENT: &str = "rules for kube-proxy";
const MARK_FOR_MASQUERADE: &str = "mark-for-masquerade";
pub(super) const REJECT_CHAIN: &str = "reject-chain";
/// The reject helper chain's comment.
pub(super) const REJECT_CHAIN_COMMENT: &str =
    "helper for @no-endpoint-services / @no-endpoint-nodeports";
pub(super) const CLUSTER_IPS: &str = "cluster-ips";
const NODEPORT_IPS: &str = "nodeport-ips";
pub(super) const SERVICE_IPS: &str = "service-ips";
pub(super) const SERVICE_NODEPORTS: &str = "service-nodeports";
pub(super) const FIREWALL_IPS: &str = "firewall-ips";
pub(super) const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
pub(super) const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";

/// nft refuses longer comments (and with them kube-proxy's whole
/// transaction, kubernetes issue #139515).
const COMMENT_MAX: usize = 128;

/// One family's compiled first full sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Compiled {
    /// The IP family.
    pub family: IpFamily,
    /// What kube-proxy gives `nft -f`, service ports in name order
    /// (kube-proxy's own order is random; the state is the same).
    pub transaction: Transaction,
    /// What kube-proxy would log or skip.
    pub notices: Vec<Notice>,
}

impl Compiled {
    /// The `nft -f` input.
    pub fn render(&self) -> String {
        self.transaction.render()
    }

    /// The table after the transaction ran on an empty node.
    pub fn state(&self) -> Result<Fake, FakeError> {
        let mut fake = Fake::new(
            self.transaction.family,
            &self.transaction.table,
            self.transaction.object_comments,
        );
        fake.apply(&self.transaction)?;
        Ok(fake)
    }

    /// What kube-proxy's golden tests compare: the state's dump after the
    /// test normaliser ([`sort_nftables_transaction`]), with a final
    /// newline.
    pub fn sorted(&self) -> Result<String, FakeError> {
        let mut out = sort_nftables_transaction(&self.state()?.dump());
        out.push('\n');
        Ok(out)
    }
}

/// The masquerade mark as nftables mode prints it: `nftables.masqueradeBit`
/// as Go's `%#08x` (`0x00004000`), unless a literal is configured.
pub fn masquerade_mark(config: &ProxyConfig) -> String {
    match &config.nftables.masquerade_mark {
        Some(m) => m.clone(),
        None => format!("{:#010x}", 1u64 << config.nftables.masquerade_bit.min(31)),
    }
}

/// `nodePortAddresses` of `family` with nftables mode's default (`primary`).
fn node_port_addresses(config: &ProxyConfig, family: IpFamily) -> NodePortAddresses {
    if config.mode == ProxyMode::Nftables {
        config.node_port_addresses(family)
    } else {
        let mut c = config.clone();
        c.mode = ProxyMode::Nftables;
        c.node_port_addresses(family)
    }
}

/// Compiles `state` to the transaction of kube-proxy's first full sync on an
/// empty node (no table yet).
///
/// ```
/// use kpinspect_core::{config::ProxyConfig, mode::nftables, net::IpFamily, proxy::ProxyState};
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&Default::default(), &config, IpFamily::V6);
/// let compiled = nftables::compile(&state, &config);
/// let text = compiled.render();
/// assert!(text.starts_with("add table ip6 kube-proxy { comment \"rules for kube-proxy\" ; }\n"));
/// assert!(text.contains("add rule ip6 kube-proxy masquerading masquerade fully-random\n"));
/// assert!(compiled.sorted().unwrap().contains("add chain ip6 kube-proxy services\n"));
/// ```
pub fn compile(state: &ProxyState, config: &ProxyConfig) -> Compiled {
    let family = state.family;
    let mut w = Writer::new(family, config);
    w.skeleton(false);
    for entry in &state.ports {
        w.service_port(entry, false);
    }
    let mut notices = state.notices.clone();
    notices.append(&mut w.notices);
    Compiled {
        family,
        transaction: w.tx,
        notices,
    }
}

/// What a sync knows of the node's chains and affinity sets before its
/// main transaction (`epChainSkipUpdate` during a process's first sync).
#[derive(Debug, Clone, Default)]
pub(super) struct Existing {
    /// Every chain of the table.
    pub chains: BTreeSet<String>,
    /// The sets named `affinity-…`.
    pub affinity_sets: BTreeSet<String>,
}

/// One sync's transaction being written (`syncProxyRules`' body).
pub(super) struct Writer<'a> {
    config: &'a ProxyConfig,
    family: IpFamily,
    /// `ip` or `ip6`.
    ip: &'static str,
    addr_type: &'static str,
    mark: String,
    detector: Option<LocalDetector>,
    node_ip: Option<IpAddr>,
    pub(super) tx: Transaction,
    /// The chains ensured in this transaction (`createdChains` and
    /// `activeChains`: kube-proxy's fixed chain names have no `/`).
    pub(super) chains: HashSet<String>,
    /// The affinity sets of the services (`activeAffinitySets`).
    pub(super) affinity_sets: HashSet<String>,
    /// The element caches.
    pub(super) caches: ElementCaches,
    /// The node's chains and affinity sets when endpoint chains may be
    /// skipped (`epChainSkipUpdate`: the process's first sync, listings
    /// succeeded); `None` otherwise.
    pub(super) existing: Option<Existing>,
    pub(super) notices: Vec<Notice>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(family: IpFamily, config: &'a ProxyConfig) -> Writer<'a> {
        let (nft_family, ip, addr_type) = match family {
            IpFamily::V4 => (Family::Ip, "ip", "ipv4_addr"),
            IpFamily::V6 => (Family::Ip6, "ip6", "ipv6_addr"),
        };
        Writer {
            config,
            family,
            ip,
            addr_type,
            mark: masquerade_mark(config),
            detector: config.local_detector(family),
            node_ip: config.node.primary_ip(family),
            tx: Transaction::new(nft_family, TABLE, config.node.nft_object_comments),
            chains: HashSet::new(),
            affinity_sets: HashSet::new(),
            caches: ElementCaches::default(),
            existing: None,
            notices: Vec::new(),
        }
    }

    fn no_localhost(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "ip daddr != 127.0.0.0/8",
            IpFamily::V6 => "ip6 daddr != ::1",
        }
    }

    /// `ensureChain`: add and flush, once per transaction.
    fn ensure_chain(&mut self, name: &str) {
        self.ensure_chain_unless(name, false);
    }

    /// `ensureChain` with `skipCreation`: the chain is noted as used, and
    /// added and flushed (once per transaction) unless `skip`.
    fn ensure_chain_unless(&mut self, name: &str, skip: bool) {
        if self.chains.insert(name.to_string()) && !skip {
            self.tx.add(Chain::regular(name));
            self.tx.flush(Chain::regular(name));
        }
    }

    /// `epChainSkipUpdate`: during a process's first sync, an endpoint
    /// chain the node has is kept as it is when its affinity set exists
    /// exactly when the service wants affinity.
    fn endpoint_chain_current(&self, chain: &str, affinity_set: &str, affine: bool) -> bool {
        self.existing.as_ref().is_some_and(|e| {
            e.chains.contains(chain) && e.affinity_sets.contains(affinity_set) == affine
        })
    }

    fn rule(&mut self, chain: &str, rule: String) {
        self.tx.add(Rule::new(chain, rule));
    }

    fn rule_with_comment(&mut self, chain: &str, rule: String, comment: &str) {
        self.tx.add(Rule::new(chain, rule).with_comment(comment));
    }

    /// `ensureElem` through the element cache: written when absent, replaced
    /// (delete, add) when its value differs; comments are not compared.
    fn ensure_elem(&mut self, container: &'static str, element: Element) {
        self.caches.ensure(&mut self.tx, container, element);
    }

    /// `setupNFTables`; `flushed`: the process already recreated the base
    /// chains once (no add + delete of each).
    pub(super) fn skeleton(&mut self, flushed: bool) {
        let ip = self.ip;
        let addr_type = self.addr_type;
        self.tx.add(Table {
            comment: Some(TABLE_COMMENT.into()),
        });
        if !flushed {
            for (name, ..) in BASE_CHAINS {
                self.tx.add(Chain::regular(name));
                self.tx.delete(Chain::regular(name));
            }
        }
        for (name, chain_type, hook, priority) in BASE_CHAINS {
            self.tx.add(Chain::base(name, chain_type, hook, priority));
            self.tx.flush(Chain::regular(name));
        }
        for (dst, src, extra) in JUMP_CHAINS {
            self.ensure_chain(dst);
            let rule = if extra.is_empty() {
                format!("jump {dst}")
            } else {
                format!("{extra} jump {dst}")
            };
            self.rule(src, rule);
        }
        for chain in [
            "services",
            "cluster-ips-check",
            "masquerading",
            MARK_FOR_MASQUERADE,
        ] {
            self.ensure_chain(chain);
        }
        let mark = self.mark.clone();
        self.rule(MARK_FOR_MASQUERADE, format!("mark set mark or {mark}"));
        self.rule("masquerading", format!("mark and {mark} == 0 return"));
        self.rule("masquerading", format!("mark set mark xor {mark}"));
        self.rule("masquerading", "masquerade fully-random".into());

        self.tx
            .add(Set::new(CLUSTER_IPS, addr_type).with_comment("Active ClusterIPs"));
        self.rule_with_comment(
            "cluster-ips-check",
            format!("{ip} daddr @{CLUSTER_IPS} reject"),
            "Reject traffic to invalid ports of ClusterIPs",
        );
        let service_cidrs: Vec<String> = self
            .config
            .service_cidrs
            .iter()
            .filter(|c| IpFamily::of_net(c) == self.family)
            .map(|c| c.to_string())
            .collect();
        if !service_cidrs.is_empty() {
            self.rule_with_comment(
                "cluster-ips-check",
                format!("{ip} daddr {{ {} }} drop", service_cidrs.join(",")),
                "Drop traffic to unallocated ClusterIPs",
            );
        }

        let npa = node_port_addresses(self.config, self.family);
        let nodeport_ips =
            Set::new(NODEPORT_IPS, addr_type).with_comment("IPs that accept NodePort traffic");
        self.tx.add(nodeport_ips.clone());
        if npa.match_all {
            self.tx.delete(nodeport_ips);
        } else {
            self.tx.flush(nodeport_ips);
            let mut seen = HashSet::new();
            for node_ip in &self.config.node.ips {
                if IpFamily::of(node_ip) != self.family || !npa.matches(node_ip) {
                    continue;
                }
                if node_ip.is_loopback() {
                    self.notices.push(Notice {
                        object: "nodePortAddresses".into(),
                        message: "--nodeport-addresses includes localhost but localhost NodePorts are not supported".into(),
                    });
                    continue;
                }
                if seen.insert(*node_ip) {
                    self.tx
                        .add(Element::set(NODEPORT_IPS, vec![node_ip.to_string()]));
                }
            }
        }

        let key3 = format!("{addr_type} . inet_proto . inet_service");
        self.tx.add(
            Map::new(NO_ENDPOINT_SERVICES, key3.clone(), "verdict")
                .with_comment("vmap to drop or reject packets to services with no endpoints"),
        );
        self.tx.add(
            Map::new(
                NO_ENDPOINT_NODEPORTS,
                "inet_proto . inet_service",
                "verdict",
            )
            .with_comment("vmap to drop or reject packets to service nodeports with no endpoints"),
        );
        self.tx
            .add(Chain::regular(REJECT_CHAIN).with_comment(REJECT_CHAIN_COMMENT));
        self.tx.flush(Chain::regular(REJECT_CHAIN));
        self.chains.insert(REJECT_CHAIN.into());
        self.rule(REJECT_CHAIN, "reject".into());
        self.rule(
            "service-endpoints-check",
            format!("{ip} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
        );
        let np_check = if npa.match_all {
            format!(
                "{} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
                self.no_localhost()
            )
        } else {
            format!(
                "{ip} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
            )
        };
        self.rule("nodeport-endpoints-check", np_check);

        self.tx.add(
            Map::new(FIREWALL_IPS, key3.clone(), "verdict")
                .with_comment("destinations that are subject to LoadBalancerSourceRanges"),
        );
        self.ensure_chain("firewall-check");
        self.rule(
            "firewall-check",
            format!("{ip} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}"),
        );

        self.tx.add(
            Map::new(SERVICE_IPS, key3, "verdict")
                .with_comment("ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        );
        self.tx.add(
            Map::new(SERVICE_NODEPORTS, "inet_proto . inet_service", "verdict")
                .with_comment("NodePort traffic"),
        );
        self.rule(
            "services",
            format!("{ip} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
        );
        let np_dispatch = if npa.match_all {
            format!(
                "fib daddr type local {} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
                self.no_localhost()
            )
        } else {
            format!("{ip} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")
        };
        self.rule("services", np_dispatch);
        // The element caches are read from the node here: empty on a first
        // sync of an empty node, so nothing is written.
    }

    fn if_local(&self, d: &LocalDetector) -> String {
        match d {
            LocalDetector::Cidr(c) => format!("{} saddr {c}", self.ip),
            LocalDetector::Interface(i) => format!("iifname {i}"),
            LocalDetector::InterfacePrefix(p) => format!("iifname {p}*"),
        }
    }

    fn if_not_local(&self, d: &LocalDetector) -> String {
        match d {
            LocalDetector::Cidr(c) => format!("{} saddr != {c}", self.ip),
            LocalDetector::Interface(i) => format!("iifname != {i}"),
            LocalDetector::InterfacePrefix(p) => format!("iifname != {p}*"),
        }
    }

    /// One service port, as `syncProxyRules`' loop body writes it; `skip`
    /// (`skipServiceUpdate`): its chains are only noted as used and only its
    /// elements are ensured.
    pub(super) fn service_port(&mut self, entry: &ServicePortEntry, skip: bool) {
        let info = &entry.info;
        let eps = &entry.endpoints;
        let ip = self.ip;
        let cat = categorize(info, eps, self.config);
        let chains = ServiceChains::of(&info.name);
        let name = info.name.to_kube_string();
        let proto = info.name.protocol.as_str();
        let port = info.port.to_string();
        let cip = info.cluster_ip.to_string();

        let has_endpoints = cat.has_any;
        let uses_cluster = !cat.cluster.is_empty() && info.uses_cluster_endpoints();
        let uses_local = !cat.local.is_empty() && info.uses_local_endpoints();
        let internal_chain = if info.internal_policy_local {
            &chains.local
        } else {
            &chains.cluster
        };
        let has_internal = has_endpoints && (!info.internal_policy_local || !cat.local.is_empty());
        let external_policy_chain = if info.external_policy_local {
            &chains.local
        } else {
            &chains.cluster
        };
        let has_external = has_endpoints && (!info.external_policy_local || !cat.local.is_empty());
        let uses_external = has_endpoints && info.externally_accessible();
        let uses_firewall =
            !info.load_balancer_vips.is_empty() && !info.load_balancer_source_ranges.is_empty();
        let no_endpoint_verdict = if has_endpoints {
            "drop"
        } else {
            "goto reject-chain"
        };
        let external_destinations = !info.external_ips.is_empty()
            || !info.load_balancer_vips.is_empty()
            || info.node_port != 0;
        let writes_comment = !has_internal || (!has_external && external_destinations);
        if writes_comment && name.len() > COMMENT_MAX {
            self.notices.push(Notice {
                object: format!("{}/{}", info.name.namespace, info.name.name),
                message: format!(
                    "element comment {name:?} is longer than {COMMENT_MAX} characters: nft refuses it, and kube-proxy's whole transaction with it"
                ),
            });
        }

        let all: Vec<&EndpointInfo> = cat.all.iter().map(|&i| &eps[i]).collect();
        // Each endpoint's chain and affinity set names, computed once (by
        // endpoint index; the cluster and local sets are subsets of all).
        let mut names: Vec<Option<(String, String)>> = vec![None; eps.len()];
        for &i in cat.all.iter().chain(&cat.cluster).chain(&cat.local) {
            if names[i].is_none() {
                let base = endpoint_chain_base(&info.name, &eps[i].ip, eps[i].port);
                names[i] = Some((format!("endpoint-{base}"), format!("affinity-{base}")));
            }
        }
        let ep_names = |i: usize| -> (&str, &str) {
            names[i]
                .as_ref()
                .map(|(c, a)| (c.as_str(), a.as_str()))
                .unwrap_or_default()
        };
        let ep_chain = |i: usize| ep_names(i).0;
        let ep_affinity = |i: usize| ep_names(i).1;
        let affinity = info.session_affinity_timeout;
        // 1-4: chains.
        for &i in &cat.all {
            let current =
                self.endpoint_chain_current(ep_chain(i), ep_affinity(i), affinity.is_some());
            self.ensure_chain_unless(ep_chain(i), skip || current);
            if affinity.is_some() {
                self.affinity_sets.insert(ep_affinity(i).to_string());
            }
        }
        if uses_cluster {
            self.ensure_chain_unless(&chains.cluster, skip);
        }
        if uses_local {
            self.ensure_chain_unless(&chains.local, skip);
        }
        if uses_external {
            self.ensure_chain_unless(&chains.external, skip);
        }

        // 5: elements.
        let key = |addr: &str| vec![addr.to_string(), proto.to_string(), port.clone()];
        let goto = |chain: &str| vec![format!("goto {chain}")];
        self.ensure_elem(CLUSTER_IPS, Element::set(CLUSTER_IPS, vec![cip.clone()]));
        if has_internal {
            self.ensure_elem(
                SERVICE_IPS,
                Element::map(SERVICE_IPS, key(&cip), goto(internal_chain)),
            );
        } else {
            self.ensure_elem(
                NO_ENDPOINT_SERVICES,
                Element::map(
                    NO_ENDPOINT_SERVICES,
                    key(&cip),
                    vec![no_endpoint_verdict.into()],
                )
                .with_comment(&name),
            );
        }
        for ext in &info.external_ips {
            let ext = ext.to_string();
            if has_endpoints {
                self.ensure_elem(
                    SERVICE_IPS,
                    Element::map(SERVICE_IPS, key(&ext), goto(&chains.external)),
                );
            }
            if !has_external {
                self.ensure_elem(
                    NO_ENDPOINT_SERVICES,
                    Element::map(
                        NO_ENDPOINT_SERVICES,
                        key(&ext),
                        vec![no_endpoint_verdict.into()],
                    )
                    .with_comment(&name),
                );
            }
        }
        if uses_firewall {
            self.ensure_chain_unless(&chains.firewall, skip);
        }
        for lb in &info.load_balancer_vips {
            let lb = lb.to_string();
            if has_endpoints {
                self.ensure_elem(
                    SERVICE_IPS,
                    Element::map(SERVICE_IPS, key(&lb), goto(&chains.external)),
                );
            }
            if uses_firewall {
                self.ensure_elem(
                    FIREWALL_IPS,
                    Element::map(FIREWALL_IPS, key(&lb), goto(&chains.firewall)),
                );
            }
        }
        if !has_external {
            for lb in &info.load_balancer_vips {
                self.ensure_elem(
                    NO_ENDPOINT_SERVICES,
                    Element::map(
                        NO_ENDPOINT_SERVICES,
                        key(&lb.to_string()),
                        vec![no_endpoint_verdict.into()],
                    )
                    .with_comment(&name),
                );
            }
        }
        if info.node_port != 0 {
            let np_key = vec![proto.to_string(), info.node_port.to_string()];
            if has_endpoints {
                self.ensure_elem(
                    SERVICE_NODEPORTS,
                    Element::map(SERVICE_NODEPORTS, np_key.clone(), goto(&chains.external)),
                );
            }
            if !has_external {
                self.ensure_elem(
                    NO_ENDPOINT_NODEPORTS,
                    Element::map(
                        NO_ENDPOINT_NODEPORTS,
                        np_key,
                        vec![no_endpoint_verdict.into()],
                    )
                    .with_comment(&name),
                );
            }
        }

        if skip {
            return;
        }
        // 7: rules. The ClusterIP masquerade rule first.
        if has_internal {
            if self.config.nftables.masquerade_all {
                self.rule(
                    internal_chain,
                    format!("{ip} daddr {cip} jump {MARK_FOR_MASQUERADE}"),
                );
            } else if let Some(d) = &self.detector {
                let not_local = self.if_not_local(d);
                self.rule(
                    internal_chain,
                    format!("{ip} daddr {cip} {not_local} jump {MARK_FOR_MASQUERADE}"),
                );
            }
        }
        if uses_external {
            let ext = &chains.external;
            if info.external_policy_local {
                if let Some(d) = &self.detector {
                    let local = self.if_local(d);
                    self.rule_with_comment(
                        ext,
                        format!("{local} goto {}", chains.cluster),
                        "short-circuit pod traffic",
                    );
                }
                self.rule_with_comment(
                    ext,
                    format!("fib saddr type local jump {MARK_FOR_MASQUERADE}"),
                    "masquerade local traffic",
                );
                self.rule_with_comment(
                    ext,
                    format!("fib saddr type local goto {}", chains.cluster),
                    "short-circuit local traffic",
                );
            } else {
                self.rule(ext, format!("jump {MARK_FOR_MASQUERADE}"));
            }
            if has_external {
                self.rule(ext, format!("goto {external_policy_chain}"));
            }
        }
        if uses_firewall {
            let mut sources: Vec<String> = info
                .load_balancer_source_ranges
                .iter()
                .map(|r| r.to_string())
                .collect();
            let allow_node = self.node_ip.is_some_and(|n| {
                info.load_balancer_source_ranges
                    .iter()
                    .any(|r| r.contains(&n))
            });
            if allow_node {
                sources.extend(info.load_balancer_vips.iter().map(|v| v.to_string()));
            }
            self.rule(
                &chains.firewall,
                format!("{ip} saddr != {{ {} }} drop", sources.join(" , ")),
            );
        }
        if let Some(timeout) = affinity {
            for &i in &cat.all {
                let mut set = Set::new(ep_affinity(i), self.addr_type);
                set.flags = vec!["dynamic".into(), "timeout".into()];
                set.timeout = Some(u64::from(timeout));
                self.tx.add(set);
            }
        }
        let affine = affinity.is_some();
        if uses_cluster {
            let list: Vec<(&str, &str)> = cat.cluster.iter().map(|&i| ep_names(i)).collect();
            self.endpoint_dispatch(&chains.cluster, affine, &list);
        }
        if uses_local {
            let list: Vec<(&str, &str)> = cat.local.iter().map(|&i| ep_names(i)).collect();
            self.endpoint_dispatch(&chains.local, affine, &list);
        }
        for (&i, ep) in cat.all.iter().zip(&all) {
            let chain = ep_chain(i);
            if self.endpoint_chain_current(chain, ep_affinity(i), affine) {
                continue;
            }
            self.rule(
                chain,
                format!("{ip} saddr {} jump {MARK_FOR_MASQUERADE}", ep.ip),
            );
            if affine {
                self.rule(
                    chain,
                    format!("update @{} {{ {ip} saddr }}", ep_affinity(i)),
                );
            }
            self.rule(
                chain,
                format!("meta l4proto {proto} dnat to {}", ep.endpoint),
            );
        }
    }

    /// `writeServiceToEndpointRules`: affinity lookups, then a random pick,
    /// over endpoints given as (chain, affinity set).
    fn endpoint_dispatch(&mut self, chain: &str, affinity: bool, eps: &[(&str, &str)]) {
        if affinity {
            for (ep_chain, ep_set) in eps {
                let rule = format!("{} saddr @{ep_set} goto {ep_chain}", self.ip);
                self.rule(chain, rule);
            }
        }
        let targets: Vec<String> = eps
            .iter()
            .enumerate()
            .map(|(i, (ep_chain, _))| format!("{i} : goto {ep_chain}"))
            .collect();
        self.rule(
            chain,
            format!(
                "numgen random mod {} vmap {{ {} }}",
                eps.len(),
                targets.join(" , ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Cluster;

    fn fixture_config() -> ProxyConfig {
        let mut config = ProxyConfig {
            mode: ProxyMode::Nftables,
            cluster_cidrs: vec!["10.0.0.0/8".parse().expect("cidr")],
            service_cidrs: vec!["172.30.0.0/16".parse().expect("cidr")],
            node_port_addresses: Some(crate::config::NodePortAddressesConfig::Cidrs(vec![
                "192.168.0.2/32".parse().expect("cidr"),
                "2001:db8::1/128".parse().expect("cidr"),
            ])),
            ..ProxyConfig::default()
        };
        config.node.name = "test-node".into();
        config.node.ips = vec!["192.168.0.2".parse().expect("ip")];
        config.nftables.masquerade_mark = Some("0x4000".into());
        config
    }

    fn empty(config: &ProxyConfig, family: IpFamily) -> Compiled {
        compile(
            &ProxyState::build(&Cluster::default(), config, family),
            config,
        )
    }

    #[test]
    fn the_skeleton_is_81_operations_for_kube_proxys_fixture() {
        let c = empty(&fixture_config(), IpFamily::V4);
        assert_eq!(c.transaction.len(), 81, "{}", c.render());
        assert!(c.state().is_ok());
    }

    #[test]
    fn masquerade_mark_is_gos_hash_08x() {
        let mut config = ProxyConfig::default();
        assert_eq!(masquerade_mark(&config), "0x00004000");
        // iptables.masqueradeBit is iptables mode's (and IPVS mode's), not this one's.
        config.iptables.masquerade_bit = 3;
        assert_eq!(masquerade_mark(&config), "0x00004000");
        config.nftables.masquerade_bit = 0;
        assert_eq!(masquerade_mark(&config), "0x00000001");
        config.nftables.masquerade_mark = Some("0x4000".into());
        assert_eq!(masquerade_mark(&config), "0x4000");
    }

    #[test]
    fn match_all_node_ports_use_fib_and_no_set() {
        let mut config = fixture_config();
        config.node_port_addresses = Some(crate::config::NodePortAddressesConfig::All);
        let c = empty(&config, IpFamily::V6);
        let text = c.render();
        assert!(text.contains("add set ip6 kube-proxy nodeport-ips { type ipv6_addr ; comment \"IPs that accept NodePort traffic\" ; }\ndelete set ip6 kube-proxy nodeport-ips\n"));
        assert!(text.contains("add rule ip6 kube-proxy services fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports\n"));
        assert!(text.contains("add rule ip6 kube-proxy nodeport-endpoints-check ip6 daddr != ::1 meta l4proto . th dport vmap @no-endpoint-nodeports\n"));
        assert!(!text.contains("172.30.0.0/16"), "no IPv6 service CIDR");
        let sorted = c.sorted().expect("applies");
        assert!(!sorted.contains("nodeport-ips"));
    }

    #[test]
    fn primary_is_the_default_and_loopback_is_never_a_nodeport_ip() {
        let mut config = fixture_config();
        config.node_port_addresses = None;
        config.node.ips = vec![
            "192.168.0.2".parse().expect("ip"),
            "192.168.1.2".parse().expect("ip"),
        ];
        let text = empty(&config, IpFamily::V4).render();
        assert!(text.contains("add element ip kube-proxy nodeport-ips { 192.168.0.2 }\n"));
        assert!(!text.contains("192.168.1.2"));
        config.node_port_addresses = Some(crate::config::NodePortAddressesConfig::Cidrs(vec![
            "127.0.0.0/8".parse().expect("cidr"),
        ]));
        config.node.ips.push("127.0.0.1".parse().expect("ip"));
        let c = empty(&config, IpFamily::V4);
        assert!(!c.render().contains("nodeport-ips { 127.0.0.1 }"));
        assert_eq!(c.notices.len(), 1);
    }

    fn cluster_ip_service(ns: &str, name: &str, port: &str) -> crate::model::Service {
        use crate::model::*;
        Service {
            namespace: ns.into(),
            name: name.into(),
            service_type: ServiceType::ClusterIp,
            cluster_ips: vec!["172.30.0.41".parse().expect("ip")],
            ports: vec![ServicePort {
                name: port.into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port: 0,
            }],
            external_ips: vec![],
            has_external_ips: false,
            load_balancer_ingress: vec![],
            load_balancer_source_ranges: vec![],
            external_traffic_policy: TrafficPolicy::Cluster,
            internal_traffic_policy: TrafficPolicy::Cluster,
            health_check_node_port: 0,
            session_affinity_timeout: None,
        }
    }

    #[test]
    fn too_long_element_comments_are_reported() {
        let config = fixture_config();
        let long = |s: char| std::iter::repeat_n(s, 63).collect::<String>();
        let cluster = Cluster {
            services: vec![cluster_ip_service(
                &long('a'),
                &long('b'),
                "port-name-15-ch",
            )],
            endpoint_slices: vec![],
        };
        let c = compile(&ProxyState::build(&cluster, &config, IpFamily::V4), &config);
        assert_eq!(c.notices.len(), 1, "{:?}", c.notices);
        assert!(c.notices[0].message.contains("longer than 128"));
        let short = Cluster {
            services: vec![cluster_ip_service("ns", "svc", "p")],
            endpoint_slices: vec![],
        };
        let c = compile(&ProxyState::build(&short, &config, IpFamily::V4), &config);
        assert!(c.notices.is_empty());
        assert!(c.render().contains(
            "add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment \"ns/svc:p\" : goto reject-chain }\n"
        ));
    }

    #[test]
    fn service_cidrs_of_the_family_joined_without_spaces() {
        let mut config = fixture_config();
        config.service_cidrs = [
            "172.30.0.0/16",
            "fd00:10:96::/112",
            "172.50.0.0/16",
            "fd00:172:30::/112",
        ]
        .iter()
        .map(|c| c.parse().expect("cidr"))
        .collect();
        assert!(empty(&config, IpFamily::V4).render().contains(
            "add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16,172.50.0.0/16 } drop comment \"Drop traffic to unallocated ClusterIPs\"\n"
        ));
        assert!(empty(&config, IpFamily::V6).render().contains(
            "add rule ip6 kube-proxy cluster-ips-check ip6 daddr { fd00:10:96::/112,fd00:172:30::/112 } drop"
        ));
        config.service_cidrs.clear();
        assert!(
            !empty(&config, IpFamily::V4)
                .render()
                .contains("unallocated")
        );
    }

    #[test]
    fn without_object_comments() {
        let mut config = fixture_config();
        config.node.nft_object_comments = false;
        let text = empty(&config, IpFamily::V4).render();
        assert!(text.starts_with("add table ip kube-proxy\n"));
        assert!(text.contains("add chain ip kube-proxy reject-chain\n"));
        assert!(text.contains("add set ip kube-proxy cluster-ips { type ipv4_addr ; }\n"));
        assert!(text.contains("comment \"Reject traffic to invalid ports of ClusterIPs\""));
    }
}

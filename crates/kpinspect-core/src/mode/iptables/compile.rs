//! The iptables-mode compiler: a [`ProxyState`] to the exact restore input of
//! a kube-proxy full sync.
//!
//! Layout and wording follow kube-proxy's `pkg/proxy/iptables/proxier.go`
//! (`syncProxyRules`); the only intended difference is the order of service
//! ports, which kube-proxy takes from a Go map (random) and kpinspect sorts
//! by service-port name and protocol.

use std::collections::HashSet;
use std::net::IpAddr;

use super::names::{ServicePortHasher, is_service_chain};
use crate::config::{LocalDetector, NodePortAddresses, ProxyConfig};
use crate::net::IpFamily;
use crate::netfilter::{LineBuffer, Restore, RestoreTable, TableOrder, wln};
use crate::proxy::{EndpointInfo, ProxyState, ServicePortEntry, categorize};

const NODEPORTS_COMMENT: &str =
    "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";

/// Compiles a full sync for `state`.
///
/// ```
/// use kpinspect_core::{config::ProxyConfig, model::Cluster, net::IpFamily, proxy::ProxyState};
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
/// let text = kpinspect_core::mode::iptables::compile(&state, &config).render();
/// assert!(text.starts_with("*filter\n:KUBE-SERVICES - [0:0]\n"));
/// assert!(text.ends_with("-j KUBE-NODEPORTS\nCOMMIT\n"));
/// ```
pub fn compile(state: &ProxyState, config: &ProxyConfig) -> Restore {
    compile_sync(state, config, &[])
}

/// Compiles a full sync for a node whose nat table already holds
/// `existing_nat_chains`: stale service chains among them are declared and
/// deleted (`-X`) in the same restore, as kube-proxy does.
pub fn compile_sync(
    state: &ProxyState,
    config: &ProxyConfig,
    existing_nat_chains: &[String],
) -> Restore {
    let family = state.family;
    let mark = masquerade_mark(config);
    let npa = config.node_port_addresses(family);
    let localhost_node_ports = family == IpFamily::V4
        && config.iptables.localhost_node_ports
        && npa.contains_ipv4_loopback;
    let detector = config.local_detector(family);
    let node_ip = config.node.primary_ip(family);
    let large_cluster = state.total_endpoints() > config.iptables.large_cluster_threshold;

    let mut filter = RestoreTable::default();
    let mut nat = RestoreTable::default();
    // Room for the whole output at once (generous: kube-proxy's lines are
    // at most a few hundred bytes per endpoint and service port), so the
    // tens of megabytes of a large cluster are never copied while growing.
    let (ports, endpoints) = (state.ports.len(), state.total_endpoints());
    nat.rules.reserve(1024 * ports + 768 * endpoints);
    nat.chains.reserve(192 * ports + 48 * endpoints);
    filter.rules.reserve(1024 * ports);
    let fc = &mut filter.chains;
    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        wln!(fc, ":{c} - [0:0]");
    }
    if localhost_node_ports {
        wln!(fc, ":KUBE-FIREWALL - [0:0]");
        filter.rules.write_str_line(
            "-A KUBE-FIREWALL -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        );
    }
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        wln!(nat.chains, ":{c} - [0:0]");
    }
    let nr = &mut nat.rules;
    crate::mode::write_masquerade_rules(nr, &mark, config.node.random_fully);

    let mut active: HashSet<String> = HashSet::new();
    let ctx = Ctx {
        config,
        detector: detector.as_ref().map(detector_matches),
        node_ip,
        localhost_nfacct: localhost_node_ports && config.node.nfacct,
        comments: !large_cluster,
        probabilities: Probabilities::default(),
    };
    let mut ctx = ctx;
    // The chains written are only needed to find stale ones.
    let track = !existing_nat_chains.is_empty();
    for entry in &state.ports {
        let active = if track { Some(&mut active) } else { None };
        ctx.write_service_port(entry, &mut filter.rules, &mut nat, active);
    }

    // Stale service chains: flushed by declaration, then deleted.
    let mut stale: Vec<&String> = existing_nat_chains
        .iter()
        .filter(|c| is_service_chain(c) && !active.contains(c.as_str()))
        .collect();
    stale.sort();
    stale.dedup();
    for c in &stale {
        wln!(nat.chains, ":{c} - [0:0]");
    }
    for c in &stale {
        wln!(nat.rules, "-X {c}");
    }

    // The last rule of KUBE-SERVICES: hand local destinations to KUBE-NODEPORTS.
    if npa.match_all {
        let except = match (family, localhost_node_ports) {
            (IpFamily::V6, _) => " ! -d ::1/128",
            (IpFamily::V4, false) => " ! -d 127.0.0.0/8",
            (IpFamily::V4, true) => "",
        };
        wln!(
            nat.rules,
            "-A KUBE-SERVICES -m comment --comment {NODEPORTS_COMMENT} -m addrtype --dst-type LOCAL{except} -j KUBE-NODEPORTS"
        );
    } else {
        for ip in node_port_ips(config, family, &npa, localhost_node_ports) {
            wln!(
                nat.rules,
                "-A KUBE-SERVICES -m comment --comment {NODEPORTS_COMMENT} -d {ip} -j KUBE-NODEPORTS"
            );
        }
    }

    let fr = &mut filter.rules;
    if !config.tcp_be_liberal() {
        if config.node.nfacct {
            fr.write_str_line("-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP");
        } else {
            fr.write_str_line("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP");
        }
    }
    wln!(
        fr,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    );
    fr.write_str_line("-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT");

    Restore {
        family,
        order: TableOrder::FilterFirst,
        filter,
        nat,
    }
}

/// The masquerade mark as kube-proxy prints it: Go's `%#08x` of
/// `1 << iptables.masqueradeBit` (`0x00004000` for bit 14), unless
/// overridden by [`IptablesConfig::masquerade_mark`].
///
/// [`IptablesConfig::masquerade_mark`]: crate::config::IptablesConfig::masquerade_mark
///
/// ```
/// use kpinspect_core::{config::ProxyConfig, mode::iptables::masquerade_mark};
/// let mut config = ProxyConfig::default();
/// assert_eq!(masquerade_mark(&config), "0x00004000");
/// config.iptables.masquerade_bit = 15;
/// assert_eq!(masquerade_mark(&config), "0x00008000");
/// config.iptables.masquerade_mark = Some("0x4000".into());
/// assert_eq!(masquerade_mark(&config), "0x4000");
/// ```
pub fn masquerade_mark(config: &ProxyConfig) -> String {
    match &config.iptables.masquerade_mark {
        Some(m) => m.clone(),
        None => format!("0x{:08x}", 1u64 << config.iptables.masquerade_bit),
    }
}

/// The local-traffic detector as iptables matches: (if local, if not local),
/// e.g. (`-s 10.0.0.0/8`, `! -s 10.0.0.0/8`) or (`-i veth+`, `! -i veth+`).
pub(crate) fn detector_matches(detector: &LocalDetector) -> (String, String) {
    let (flag, value) = match detector {
        LocalDetector::Cidr(cidr) => ("-s", cidr.to_string()),
        LocalDetector::Interface(name) => ("-i", name.clone()),
        LocalDetector::InterfacePrefix(prefix) => ("-i", format!("{prefix}+")),
    };
    (format!("{flag} {value}"), format!("! {flag} {value}"))
}

/// The node addresses KUBE-NODEPORTS is reached from when `nodePortAddresses`
/// is restricted: the node's addresses (plus loopback, which every node has)
/// within the configured CIDRs; loopback only where localhost node ports work.
fn node_port_ips(
    config: &ProxyConfig,
    family: IpFamily,
    npa: &NodePortAddresses,
    localhost_node_ports: bool,
) -> Vec<IpAddr> {
    let loopback: IpAddr = match family {
        IpFamily::V4 => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpFamily::V6 => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    };
    let mut ips: Vec<IpAddr> = config
        .node
        .ips
        .iter()
        .copied()
        .chain(std::iter::once(loopback))
        .filter(|ip| IpFamily::of(ip) == family && npa.matches(ip))
        .filter(|ip| !ip.is_loopback() || (family == IpFamily::V4 && localhost_node_ports))
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Probability strings (`%0.10f` of 1/n), computed once per n.
#[derive(Default)]
struct Probabilities(Vec<String>);

impl Probabilities {
    fn get(&mut self, n: usize) -> &str {
        while self.0.len() <= n {
            let k = self.0.len();
            self.0.push(if k == 0 {
                String::new()
            } else {
                probability(k)
            });
        }
        &self.0[n]
    }
}

/// kube-proxy's `computeProbability`: 1/n printed with 10 decimals.
///
/// ```
/// use kpinspect_core::mode::iptables::probability;
/// assert_eq!(probability(3), "0.3333333333");
/// assert_eq!(probability(100001), "0.0000099999");
/// ```
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0f64 / n as f64)
}

struct Ctx<'a> {
    config: &'a ProxyConfig,
    /// (if-local, if-not-local) match text of the local-traffic detector.
    detector: Option<(String, String)>,
    node_ip: Option<IpAddr>,
    localhost_nfacct: bool,
    comments: bool,
    probabilities: Probabilities,
}

impl Ctx<'_> {
    fn write_service_port(
        &mut self,
        entry: &ServicePortEntry,
        filter_rules: &mut LineBuffer,
        nat: &mut RestoreTable,
        mut active: Option<&mut HashSet<String>>,
    ) {
        let mut note_active = |chain: &str| {
            if let Some(active) = active.as_mut() {
                active.insert(chain.to_string());
            }
        };
        let info = &entry.info;
        let eps = &entry.endpoints;
        let s = info.name.to_kube_string();
        let p = info.name.protocol.as_str();
        let port = info.port;
        let cat = categorize(info, eps, self.config);
        let hasher = ServicePortHasher::new(&info.name);
        let suffix = hasher.suffix();
        let cluster_chain = format!("KUBE-SVC-{suffix}");
        let local_chain = format!("KUBE-SVL-{suffix}");
        let ext_chain = format!("KUBE-EXT-{suffix}");
        let fw_chain = format!("KUBE-FW-{suffix}");

        let uses_cluster_chain = !cat.cluster.is_empty() && info.uses_cluster_endpoints();
        let uses_local_chain = !cat.local.is_empty() && info.uses_local_endpoints();
        let has_endpoints = cat.has_any;
        let (internal_chain, has_internal) = if info.internal_policy_local {
            (&local_chain, has_endpoints && !cat.local.is_empty())
        } else {
            (&cluster_chain, has_endpoints)
        };
        let (external_policy_chain, has_external) = if info.external_policy_local {
            (&local_chain, has_endpoints && !cat.local.is_empty())
        } else {
            (&cluster_chain, has_endpoints)
        };
        let uses_ext_chain = has_endpoints && info.externally_accessible();
        let uses_fw = has_endpoints
            && !info.load_balancer_vips.is_empty()
            && !info.load_balancer_source_ranges.is_empty();
        let lb_target = if uses_fw { &fw_chain } else { &ext_chain };
        let (internal_verdict, internal_why) = if !has_endpoints {
            ("REJECT", "has no endpoints")
        } else {
            ("DROP", "has no local endpoints")
        };
        let external_verdict = internal_verdict;
        let external_why = internal_why;

        let fr = filter_rules;
        let nr = &mut nat.rules;
        let cip = info.cluster_ip;

        // A1: cluster IP.
        if has_internal {
            wln!(
                nr,
                "-A KUBE-SERVICES -m comment --comment \"{s} cluster IP\" -m {p} -p {p} -d {cip} --dport {port} -j {internal_chain}"
            );
        } else {
            wln!(
                fr,
                "-A KUBE-SERVICES -m comment --comment \"{s} {internal_why}\" -m {p} -p {p} -d {cip} --dport {port} -j {internal_verdict}"
            );
        }
        // A2: external IPs.
        for xip in &info.external_ips {
            if has_endpoints {
                wln!(
                    nr,
                    "-A KUBE-SERVICES -m comment --comment \"{s} external IP\" -m {p} -p {p} -d {xip} --dport {port} -j {ext_chain}"
                );
            }
            if !has_external {
                wln!(
                    fr,
                    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{s} {external_why}\" -m {p} -p {p} -d {xip} --dport {port} -j {external_verdict}"
                );
            }
        }
        // A3: load-balancer IPs.
        for lb in &info.load_balancer_vips {
            if has_endpoints {
                wln!(
                    nr,
                    "-A KUBE-SERVICES -m comment --comment \"{s} loadbalancer IP\" -m {p} -p {p} -d {lb} --dport {port} -j {lb_target}"
                );
            }
            if uses_fw {
                wln!(
                    fr,
                    "-A KUBE-PROXY-FIREWALL -m comment --comment \"{s} traffic not accepted by {fw_chain}\" -m {p} -p {p} -d {lb} --dport {port} -j DROP"
                );
            }
        }
        // A4: no (local) endpoints for load-balancer IPs.
        if !has_external {
            for lb in &info.load_balancer_vips {
                wln!(
                    fr,
                    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{s} {external_why}\" -m {p} -p {p} -d {lb} --dport {port} -j {external_verdict}"
                );
            }
        }
        // A5: node port.
        let np = info.node_port;
        if np != 0 {
            if has_endpoints {
                if self.localhost_nfacct {
                    wln!(
                        nr,
                        "-A KUBE-NODEPORTS -m comment --comment {s} -m {p} -p {p} -d 127.0.0.0/8 --dport {np} -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {ext_chain}"
                    );
                }
                wln!(
                    nr,
                    "-A KUBE-NODEPORTS -m comment --comment {s} -m {p} -p {p} --dport {np} -j {ext_chain}"
                );
            }
            if !has_external {
                wln!(
                    fr,
                    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"{s} {external_why}\" -m addrtype --dst-type LOCAL -m {p} -p {p} --dport {np} -j {external_verdict}"
                );
            }
        }
        // A6: health-check node port.
        let hc = info.health_check_node_port;
        if hc != 0 {
            wln!(
                fr,
                "-A KUBE-NODEPORTS -m comment --comment \"{s} health check node port\" -m tcp -p tcp --dport {hc} -j ACCEPT"
            );
        }

        // B1: masquerade off-cluster traffic to the cluster IP.
        if has_internal {
            if self.config.iptables.masquerade_all {
                wln!(
                    nr,
                    "-A {internal_chain} -m comment --comment \"{s} cluster IP\" -m {p} -p {p} -d {cip} --dport {port} -j KUBE-MARK-MASQ"
                );
            } else if let Some((_, not_local)) = &self.detector {
                wln!(
                    nr,
                    "-A {internal_chain} -m comment --comment \"{s} cluster IP\" -m {p} -p {p} -d {cip} --dport {port} {not_local} -j KUBE-MARK-MASQ"
                );
            }
        }
        // B2: the external-destinations chain.
        if uses_ext_chain {
            wln!(nat.chains, ":{ext_chain} - [0:0]");
            note_active(&ext_chain);
            if !info.external_policy_local {
                wln!(
                    nr,
                    "-A {ext_chain} -m comment --comment \"masquerade traffic for {s} external destinations\" -j KUBE-MARK-MASQ"
                );
            } else {
                if let Some((local, _)) = &self.detector {
                    wln!(
                        nr,
                        "-A {ext_chain} -m comment --comment \"pod traffic for {s} external destinations\" {local} -j {cluster_chain}"
                    );
                }
                wln!(
                    nr,
                    "-A {ext_chain} -m comment --comment \"masquerade LOCAL traffic for {s} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"
                );
                wln!(
                    nr,
                    "-A {ext_chain} -m comment --comment \"route LOCAL traffic for {s} external destinations\" -m addrtype --src-type LOCAL -j {cluster_chain}"
                );
            }
            if has_external {
                wln!(nr, "-A {ext_chain} -j {external_policy_chain}");
            }
        }
        // B3: the load-balancer source-range firewall.
        if uses_fw {
            wln!(nat.chains, ":{fw_chain} - [0:0]");
            note_active(&fw_chain);
            let mut allow_from_node = false;
            for cidr in &info.load_balancer_source_ranges {
                wln!(
                    nr,
                    "-A {fw_chain} -m comment --comment \"{s} loadbalancer IP\" -s {cidr} -j {ext_chain}"
                );
                if self.node_ip.is_some_and(|ip| cidr.contains(&ip)) {
                    allow_from_node = true;
                }
            }
            if allow_from_node {
                for lb in &info.load_balancer_vips {
                    wln!(
                        nr,
                        "-A {fw_chain} -m comment --comment \"{s} loadbalancer IP\" -s {lb} -j {ext_chain}"
                    );
                }
            }
            wln!(
                nr,
                "-A {fw_chain} -m comment --comment \"other traffic to {s} will be dropped by KUBE-PROXY-FIREWALL\""
            );
        }

        // Endpoint chain names, for every endpoint some traffic can reach.
        let mut sep: Vec<Option<String>> = vec![None; eps.len()];
        for &i in &cat.all {
            sep[i] = Some(hasher.endpoint_chain(&eps[i].endpoint));
        }
        let sep_of = |i: usize| -> &str { sep[i].as_deref().unwrap_or_default() };

        // B4/B5: the Cluster and Local dispatch chains.
        if uses_cluster_chain {
            wln!(nat.chains, ":{cluster_chain} - [0:0]");
            note_active(&cluster_chain);
            self.write_dispatch(
                nr,
                &s,
                &cluster_chain,
                eps,
                &cat.cluster,
                info.session_affinity_timeout,
                &sep_of,
            );
        }
        if uses_local_chain {
            wln!(nat.chains, ":{local_chain} - [0:0]");
            note_active(&local_chain);
            self.write_dispatch(
                nr,
                &s,
                &local_chain,
                eps,
                &cat.local,
                info.session_affinity_timeout,
                &sep_of,
            );
        }

        // B6: endpoint chains.
        let comment = if self.comments {
            format!(" -m comment --comment {s}")
        } else {
            String::new()
        };
        for &i in &cat.all {
            let ep: &EndpointInfo = &eps[i];
            let chain = sep_of(i);
            wln!(nat.chains, ":{chain} - [0:0]");
            note_active(chain);
            wln!(nr, "-A {chain}{comment} -s {} -j KUBE-MARK-MASQ", ep.ip);
            if info.session_affinity_timeout.is_some() {
                wln!(
                    nr,
                    "-A {chain}{comment} -m recent --name {chain} --set -m {p} -p {p} -j DNAT --to-destination {}",
                    ep.endpoint
                );
            } else {
                wln!(
                    nr,
                    "-A {chain}{comment} -m {p} -p {p} -j DNAT --to-destination {}",
                    ep.endpoint
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_dispatch<'s>(
        &mut self,
        nr: &mut LineBuffer,
        s: &str,
        chain: &str,
        eps: &[EndpointInfo],
        members: &[usize],
        affinity: Option<u32>,
        sep_of: &dyn Fn(usize) -> &'s str,
    ) {
        let comments = self.comments;
        let comment = |ep: &EndpointInfo| {
            if comments {
                format!(" -m comment --comment \"{s} -> {}\"", ep.endpoint)
            } else {
                String::new()
            }
        };
        if let Some(seconds) = affinity {
            for &i in members {
                let target = sep_of(i);
                wln!(
                    nr,
                    "-A {chain}{} -m recent --name {target} --rcheck --seconds {seconds} --reap -j {target}",
                    comment(&eps[i])
                );
            }
        }
        let n = members.len();
        for (k, &i) in members.iter().enumerate() {
            let target = sep_of(i);
            if k + 1 < n {
                let prob = self.probabilities.get(n - k);
                wln!(
                    nr,
                    "-A {chain}{} -m statistic --mode random --probability {prob} -j {target}",
                    comment(&eps[i])
                );
            } else {
                wln!(nr, "-A {chain}{} -j {target}", comment(&eps[i]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectLocal;
    use crate::model::*;

    #[test]
    fn local_detectors_render_as_iptables_matches() {
        let cases = [
            (
                LocalDetector::Cidr("10.0.0.0/8".parse().expect("cidr")),
                "-s 10.0.0.0/8",
            ),
            (
                LocalDetector::Cidr("fd00:10::/64".parse().expect("cidr")),
                "-s fd00:10::/64",
            ),
            (LocalDetector::Interface("cbr0".into()), "-i cbr0"),
            (LocalDetector::InterfacePrefix("veth".into()), "-i veth+"),
        ];
        for (detector, local) in cases {
            assert_eq!(
                detector_matches(&detector),
                (local.to_string(), format!("! {local}"))
            );
        }
    }

    #[test]
    fn interface_prefix_detector_in_a_compiled_rule() {
        let svc = Service {
            namespace: "ns1".into(),
            name: "svc1".into(),
            service_type: ServiceType::ClusterIp,
            cluster_ips: vec!["172.30.0.41".parse().expect("ip")],
            ports: vec![ServicePort {
                name: "p80".into(),
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
        };
        let cluster = Cluster {
            services: vec![svc],
            endpoint_slices: vec![EndpointSlice {
                namespace: "ns1".into(),
                name: "svc1-abc".into(),
                service_name: "svc1".into(),
                address_type: AddressType::Ipv4,
                ports: vec![EndpointPort {
                    name: Some("p80".into()),
                    port: Some(80),
                    protocol: Protocol::Tcp,
                }],
                endpoints: vec![Endpoint {
                    address: Some("10.180.0.1".parse().expect("ip")),
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: None,
                    zone_hints: vec![],
                    node_hints: vec![],
                }],
            }],
        };
        let config = ProxyConfig {
            detect_local: DetectLocal::InterfaceNamePrefix("veth".into()),
            ..ProxyConfig::default()
        };
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let text = compile(&state, &config).render();
        assert!(
            text.contains(
                "--comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -i veth+ -j KUBE-MARK-MASQ\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn probabilities_match_kube_proxy() {
        let cases = [
            (1, "1.0000000000"),
            (2, "0.5000000000"),
            (10, "0.1000000000"),
            (100, "0.0100000000"),
            (1000, "0.0010000000"),
            (10000, "0.0001000000"),
            (100000, "0.0000100000"),
            (100001, "0.0000099999"),
        ];
        for (n, want) in cases {
            assert_eq!(probability(n), want);
        }
        let mut prev = probability(2);
        for n in 3..=100000 {
            let cur = probability(n);
            assert!(cur < prev, "probability({n}) = {cur} not below {prev}");
            prev = cur;
        }
    }
}

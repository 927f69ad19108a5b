//! What a node's `kube-proxy` nftables tables do, per Service port: the
//! same [`NodeDump`] as iptables and IPVS mode, read from the maps and
//! chains of an [`NftNode`].
//!
//! A service port is known by its chains' names (`service-HASH-ns/svc/
//! proto/port`, `local-`, `external-`, `firewall-`, `endpoint-HASH-...
//! __ip/port`) and its no-endpoint elements' comments (`ns/svc:port`); its
//! addresses come from the `service-ips`, `firewall-ips` and
//! `no-endpoint-*` maps (an address in `cluster-ips` is the cluster IP),
//! its node port from `service-nodeports`/`no-endpoint-nodeports`, its
//! endpoints and their shares from the policy chains' `numgen` vmaps (each
//! arm 1/n), their addresses from the endpoint chains' `dnat` rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::mode::iptables::{
    Anomaly, AnomalyKind, EndpointDump, Generation, NodeDump, RulesMode, ServiceDump, SourceDump,
};
use crate::net::IpFamily;
use crate::nft::{Element, Family, ListedChain};
use crate::proxy::ProxyState;

use super::compile::{BASE_CHAINS, JUMP_CHAINS, REJECT_CHAIN};
use super::read::{KubeProxyTable, NftNode};

const CLUSTER_IPS: &str = "cluster-ips";
const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const FIREWALL_IPS: &str = "firewall-ips";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const CHAIN_PREFIXES: [&str; 5] = ["service-", "local-", "external-", "firewall-", "endpoint-"];

/// (namespace, name, port name, protocol).
type Key = (String, String, String, String);

/// The service port a per-service chain belongs to, and the chain's kind
/// (`service`, `local`, ...).
fn chain_key(chain: &str) -> Option<(&'static str, Key)> {
    let (prefix, rest) = CHAIN_PREFIXES
        .iter()
        .find_map(|p| chain.strip_prefix(p).map(|r| (*p, r)))?;
    // HASH (8 characters) and `-`.
    let base = rest
        .get(9..)
        .filter(|_| rest.as_bytes().get(8) == Some(&b'-'))?;
    let base = base.split_once("__").map_or(base, |(b, _)| b);
    let mut parts = base.splitn(4, '/');
    let (ns, name, proto, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some((
        prefix.trim_end_matches('-'),
        (ns.into(), name.into(), port.into(), proto.to_uppercase()),
    ))
}

/// `ns/svc:port` (or `ns/svc`) and a protocol as a key.
fn comment_key(comment: &str, proto: &str) -> Option<Key> {
    let (ns, rest) = comment.split_once('/')?;
    let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
    Some((ns.into(), name.into(), port.into(), proto.to_uppercase()))
}

/// The chain a verdict (`goto X`, `jump X`) names.
fn verdict_target(value: &[String]) -> Option<&str> {
    let v = value.first()?;
    v.strip_prefix("goto ").or_else(|| v.strip_prefix("jump "))
}

/// `drop` → `DROP`, `goto reject-chain` → `REJECT`.
fn verdict_text(value: &[String]) -> String {
    match value.first().map(String::as_str) {
        Some("drop") => "DROP".into(),
        Some(v) if v == format!("goto {REJECT_CHAIN}") => "REJECT".into(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

#[derive(Default)]
struct Port {
    cluster_ip: Option<String>,
    port: Option<u16>,
    node_port: Option<u16>,
    external: Vec<String>,
    load_balancers: Vec<String>,
    /// Where the cluster IP goes (its policy chain).
    internal_chain: Option<String>,
    no_endpoints: Option<String>,
    external_no_endpoints: Option<String>,
    chains: BTreeSet<String>,
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Every chain a rule or map element names (`jump`/`goto X`, `@map`
/// resolved to its elements' verdicts).
fn references<'a>(text: &'a str, table: &'a KubeProxyTable) -> Vec<String> {
    let mut out = Vec::new();
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        if (*w == "jump" || *w == "goto")
            && let Some(t) = words.get(i + 1)
        {
            out.push(t.to_string());
        }
        if let Some(map) = w.strip_prefix('@') {
            for e in table.content.elements_of(map) {
                if let Some(t) = verdict_target(&e.value) {
                    out.push(t.to_string());
                }
            }
        }
    }
    out
}

/// The chains reachable from the base chains.
fn reachable(table: &KubeProxyTable, chains: &HashMap<&str, &ListedChain>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = table
        .content
        .chains
        .iter()
        .filter(|c| c.chain.base.is_some())
        .map(|c| c.chain.name.clone())
        .collect();
    while let Some(c) = todo.pop() {
        if !seen.insert(c.clone()) {
            continue;
        }
        if let Some(ch) = chains.get(c.as_str()) {
            for r in &ch.rules {
                todo.extend(references(&r.text, table));
            }
        }
    }
    seen
}

/// The endpoints a policy chain's `numgen` vmap picks, with their shares,
/// and the affinity timeout its `@affinity-` rules show.
fn policy_endpoints(
    chain: &ListedChain,
    chains: &HashMap<&str, &ListedChain>,
    table: &KubeProxyTable,
) -> (Vec<EndpointDump>, Option<u32>) {
    let mut affinity = None;
    let mut out: Vec<EndpointDump> = Vec::new();
    for r in &chain.rules {
        let words: Vec<&str> = r.text.split_whitespace().collect();
        if let [_, "saddr", set, "goto", _] = words.as_slice()
            && let Some(set) = set.strip_prefix('@')
        {
            affinity = table
                .content
                .sets
                .iter()
                .find(|s| s.name == set)
                .and_then(|s| s.timeout)
                .and_then(|t| u32::try_from(t).ok())
                .or(affinity);
        }
        let Some(arms) = r.text.strip_prefix("numgen random mod ") else {
            continue;
        };
        let Some((n, arms)) = arms.split_once(" vmap ") else {
            continue;
        };
        let n: f64 = n.trim().parse().unwrap_or(0.0);
        for arm in arms.trim_matches(['{', '}', ' ']).split(',') {
            let Some((_, target)) = arm.split_once(" : goto ") else {
                continue;
            };
            let target = target.trim();
            match out.iter_mut().find(|e| e.chain == target) {
                Some(e) => e.probability = e.probability.map(|p| p + 1.0 / n),
                None => {
                    let (ip, port) = chains
                        .get(target)
                        .and_then(|c| endpoint_address(c))
                        .unwrap_or_default();
                    out.push(EndpointDump {
                        ip,
                        port,
                        probability: (n > 0.0).then(|| 1.0 / n),
                        chain: target.to_string(),
                        local: None,
                        weight: None,
                        active_connections: None,
                        inactive_connections: None,
                    });
                }
            }
        }
    }
    for e in &mut out {
        e.probability = e.probability.map(|p| (p * 1e6).round() / 1e6);
    }
    (out, affinity)
}

/// An endpoint chain's `dnat to IP:PORT` (IPv6: `[IP]:PORT`).
fn endpoint_address(chain: &ListedChain) -> Option<(String, u16)> {
    chain.rules.iter().find_map(|r| {
        let dest = r
            .text
            .split(" dnat to ")
            .nth(1)?
            .split_whitespace()
            .next()?;
        let (ip, port) = match dest.strip_prefix('[') {
            Some(d) => d.split_once("]:")?,
            None => dest.rsplit_once(':')?,
        };
        Some((ip.to_string(), port.parse().ok()?))
    })
}

fn ip_family(f: Family) -> IpFamily {
    match f {
        Family::Ip6 => IpFamily::V6,
        _ => IpFamily::V4,
    }
}

/// Dumps the kube-proxy tables of `node`: one entry per service port, its
/// endpoints with their shares; and the anomalies: map elements pointing
/// at missing chains, per-service chains nothing reaches (stale: kube-proxy
/// flushes them and deletes them at least a second later), rules kube-proxy
/// does not write, missing base chains or jumps, elements and chains of
/// Services `clusters` (one [`ProxyState`] per family, empty when unknown)
/// does not have, and — from `iptables`, the dump of the node's iptables
/// rules when read — iptables- or IPVS-mode chains left next to the
/// nftables tables. Other programs' tables are listed as a source of their
/// own. `sources` names no file: the caller sets `name`.
///
/// ```
/// use kpinspect_core::mode::nftables::{dump, read_listing};
/// let listing = include_str!("../../../../../fixtures/nftables-save/overall.nft");
/// let d = dump(&read_listing(listing).unwrap(), &[], None);
/// let svc4 = d.services.iter().find(|s| s.name == "svc4").unwrap();
/// assert_eq!(svc4.cluster_ip.as_deref(), Some("172.30.0.44"));
/// assert_eq!(svc4.endpoints.len(), 2);
/// assert_eq!(svc4.endpoints[0].probability, Some(0.5));
/// assert_eq!(d.sources[1].tables, ["inet host-firewall"]);
/// ```
pub fn dump(node: &NftNode, clusters: &[ProxyState], iptables: Option<&NodeDump>) -> NodeDump {
    let mut out = NodeDump {
        services: Vec::new(),
        anomalies: Vec::new(),
        sources: Vec::new(),
    };
    for table in &node.tables {
        let family = ip_family(table.family);
        let cluster = clusters.iter().find(|c| c.family == family);
        dump_table(table, cluster, &mut out);
        out.sources.push(SourceDump {
            name: String::new(),
            family: Some(family),
            tables: vec![format!("{} kube-proxy", table.family)],
            generation: Generation {
                mode: RulesMode::Nftables,
                since: None,
                before: None,
                evidence: table.notes.clone(),
                leftovers: Vec::new(),
                summary: format!("nftables mode (table {} kube-proxy)", table.family),
            },
        });
    }
    if !node.foreign.is_empty() {
        out.sources.push(SourceDump {
            name: String::new(),
            family: None,
            tables: node.foreign.clone(),
            generation: Generation {
                mode: RulesMode::None,
                since: None,
                before: None,
                evidence: Vec::new(),
                leftovers: Vec::new(),
                summary: "other programs' tables (named, not read)".into(),
            },
        });
    }
    if let Some(ipt) = iptables {
        for s in &ipt.sources {
            let mode = s.generation.mode;
            if matches!(
                mode,
                RulesMode::Iptables | RulesMode::Ipvs | RulesMode::Unknown
            ) {
                out.anomalies.push(Anomaly {
                    kind: AnomalyKind::OtherMode,
                    chain: String::new(),
                    message: format!(
                        "{}: kube-proxy's {} chains next to its nftables tables: left by a \
                         proxy-mode switch (kube-proxy in nftables mode removes them when it \
                         starts; kpinspect cleanup --mode {} removes them)",
                        if s.name.is_empty() {
                            "iptables"
                        } else {
                            &s.name
                        },
                        s.generation.summary,
                        if mode == RulesMode::Ipvs {
                            "ipvs"
                        } else {
                            "iptables"
                        },
                    ),
                });
            }
        }
    }
    out.services.sort_by(|a, b| {
        (&a.namespace, &a.name, &a.port_name, &a.protocol, a.family).cmp(&(
            &b.namespace,
            &b.name,
            &b.port_name,
            &b.protocol,
            b.family,
        ))
    });
    out.anomalies
        .sort_by(|a, b| (a.kind, &a.chain, &a.message).cmp(&(b.kind, &b.chain, &b.message)));
    out.anomalies.dedup();
    out
}

fn dump_table(table: &KubeProxyTable, cluster: Option<&ProxyState>, out: &mut NodeDump) {
    let family = ip_family(table.family);
    let c = &table.content;
    let chains: HashMap<&str, &ListedChain> = c
        .chains
        .iter()
        .map(|ch| (ch.chain.name.as_str(), ch))
        .collect();
    let cluster_ips: BTreeSet<&str> = c
        .elements_of(CLUSTER_IPS)
        .filter_map(|e| e.key.first().map(String::as_str))
        .collect();
    let mut ports: BTreeMap<Key, Port> = BTreeMap::new();
    let anomalies = &mut out.anomalies;
    let mut missing = |map: &str, e: &Element, target: &str| {
        anomalies.push(Anomaly {
            kind: AnomalyKind::MissingChain,
            chain: target.to_string(),
            message: format!(
                "{} element {{ {} }} of table {} kube-proxy goes to chain {target}, which does not exist",
                map,
                e.key_text(),
                table.family
            ),
        });
    };
    for map in [SERVICE_IPS, SERVICE_NODEPORTS, FIREWALL_IPS] {
        for e in c.elements_of(map) {
            let Some(target) = verdict_target(&e.value) else {
                continue;
            };
            if !chains.contains_key(target) {
                missing(map, e, target);
            }
            let Some((kind, key)) = chain_key(target) else {
                continue;
            };
            let p = ports.entry(key).or_default();
            match (map, e.key.as_slice()) {
                (SERVICE_NODEPORTS, [_, np]) => p.node_port = np.parse().ok(),
                (FIREWALL_IPS, [ip, _, port]) => {
                    push_unique(&mut p.load_balancers, ip);
                    p.port = port.parse().ok().or(p.port);
                }
                (_, [ip, _, port]) if kind == "service" || kind == "local" => {
                    p.cluster_ip = Some(ip.clone());
                    p.port = port.parse().ok();
                    p.internal_chain = Some(target.to_string());
                }
                (_, [ip, _, port]) => {
                    push_unique(&mut p.external, ip);
                    p.port = port.parse().ok().or(p.port);
                }
                _ => {}
            }
        }
    }
    for map in [NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS] {
        for e in c.elements_of(map) {
            if let Some(target) = verdict_target(&e.value)
                && !chains.contains_key(target)
            {
                missing(map, e, target);
            }
            let proto = match e.key.as_slice() {
                [_, proto, _] | [proto, _] => proto.as_str(),
                _ => continue,
            };
            let Some(key) = e.comment.as_deref().and_then(|cm| comment_key(cm, proto)) else {
                continue;
            };
            let p = ports.entry(key).or_default();
            let verdict = verdict_text(&e.value);
            match e.key.as_slice() {
                [_, np] => {
                    p.node_port = np.parse().ok();
                    p.external_no_endpoints = Some(verdict);
                }
                [ip, _, port] if cluster_ips.contains(ip.as_str()) => {
                    p.cluster_ip = Some(ip.clone());
                    p.port = port.parse().ok();
                    p.no_endpoints = Some(verdict);
                }
                [ip, _, port] => {
                    push_unique(&mut p.external, ip);
                    p.port = port.parse().ok().or(p.port);
                    p.external_no_endpoints = Some(verdict);
                }
                _ => {}
            }
        }
    }
    for ch in &c.chains {
        if let Some((_, key)) = chain_key(&ch.chain.name) {
            ports
                .entry(key)
                .or_default()
                .chains
                .insert(ch.chain.name.clone());
        }
    }
    // Stale chains: per-service chains nothing reaches from a base chain.
    let reached = reachable(table, &chains);
    for ch in &c.chains {
        if ch.chain.name.contains('/') && !reached.contains(&ch.chain.name) {
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::StaleChain,
                chain: ch.chain.name.clone(),
                message: if ch.rules.is_empty() {
                    format!(
                        "{} kube-proxy: empty and unreachable: kube-proxy flushed it and deletes it at least 1 s later (stale)",
                        table.family
                    )
                } else {
                    format!("{} kube-proxy: nothing reaches it (stale)", table.family)
                },
            });
        }
    }
    for u in &table.unrecognised {
        out.anomalies.push(Anomaly {
            kind: AnomalyKind::ForeignRule,
            chain: u.chain.clone(),
            message: format!(
                "{} kube-proxy: a rule kube-proxy does not write: {}",
                table.family, u.rule
            ),
        });
    }
    // The skeleton: base chains and their jumps.
    for (name, chain_type, hook, priority) in BASE_CHAINS {
        let ok = chains
            .get(name)
            .and_then(|c| c.chain.base.as_ref())
            .is_some_and(|b| {
                b.chain_type == chain_type && b.hook == hook && b.priority == priority
            });
        if !ok {
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::MissingRules,
                chain: name.to_string(),
                message: format!(
                    "{} kube-proxy: base chain {name} (type {chain_type} hook {hook} priority {priority}) is missing or differs",
                    table.family
                ),
            });
        }
    }
    for (dst, src, extra) in JUMP_CHAINS {
        let want = format!("{extra} jump {dst}").trim().to_string();
        let has = chains
            .get(src)
            .is_some_and(|c| c.rules.iter().any(|r| r.text == want));
        if chains.contains_key(src) && !has {
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::MissingJump,
                chain: src.to_string(),
                message: format!("{} kube-proxy: {src} lacks `{want}`", table.family),
            });
        }
    }
    for (key, p) in ports {
        let (ns, name, port_name, proto) = key;
        let svc = cluster.and_then(|cl| {
            cl.ports.iter().find(|e| {
                let n = &e.info.name;
                n.namespace == ns
                    && n.name == name
                    && n.port == port_name
                    && n.protocol.to_string().eq_ignore_ascii_case(&proto)
            })
        });
        if cluster.is_some() && svc.is_none() {
            out.anomalies.push(Anomaly {
                kind: AnomalyKind::StaleService,
                chain: p.chains.iter().next().cloned().unwrap_or_default(),
                message: format!(
                    "{} kube-proxy holds {ns}/{name}{} ({proto}), which the cluster does not have",
                    table.family,
                    if port_name.is_empty() {
                        String::new()
                    } else {
                        format!(":{port_name}")
                    }
                ),
            });
        }
        out.services.push(service_dump(
            table,
            &chains,
            family,
            (ns, name, port_name, proto),
            p,
            svc,
        ));
    }
}

fn service_dump(
    table: &KubeProxyTable,
    chains: &HashMap<&str, &ListedChain>,
    family: IpFamily,
    (namespace, name, port_name, protocol): Key,
    p: Port,
    svc: Option<&crate::proxy::ServicePortEntry>,
) -> ServiceDump {
    let of_kind = |kind: &str| {
        p.chains
            .iter()
            .find(|c| chain_key(c).is_some_and(|(k, _)| k == kind))
            .and_then(|c| chains.get(c.as_str()).copied())
    };
    let local_chain = of_kind("local");
    let internal = p
        .internal_chain
        .as_deref()
        .and_then(|c| chains.get(c).copied())
        .or_else(|| of_kind("service"));
    let (mut endpoints, affinity) = internal
        .map(|c| policy_endpoints(c, chains, table))
        .unwrap_or_default();
    let locals: Option<(Vec<EndpointDump>, Option<u32>)> =
        local_chain.map(|c| policy_endpoints(c, chains, table));
    let local_set: Option<BTreeSet<String>> = locals
        .as_ref()
        .map(|(eps, _)| eps.iter().map(|e| e.chain.clone()).collect());
    let mark_local = |eps: &mut Vec<EndpointDump>| {
        for e in eps {
            e.local = match (&local_set, svc) {
                (_, Some(s)) => Some(
                    s.endpoints
                        .iter()
                        .any(|x| x.local && x.ip.to_string() == e.ip && x.port == e.port),
                ),
                (Some(set), None) => Some(set.contains(&e.chain)),
                (None, None) => None,
            };
        }
    };
    mark_local(&mut endpoints);
    let external_chain = of_kind("external");
    let ext_rules: Vec<&str> = external_chain
        .map(|c| c.rules.iter().map(|r| r.text.as_str()).collect())
        .unwrap_or_default();
    let etp_local = ext_rules
        .iter()
        .any(|r| r.starts_with("fib saddr type local goto "));
    let final_goto = ext_rules
        .last()
        .and_then(|r| r.strip_prefix("goto "))
        .map(str::to_string);
    let mut external_endpoints = match (&final_goto, etp_local) {
        (Some(t), _) if Some(t.as_str()) != internal.map(|c| c.chain.name.as_str()) => chains
            .get(t.as_str())
            .map(|c| policy_endpoints(c, chains, table).0),
        (None, true) => Some(Vec::new()),
        _ => None,
    };
    if let Some(eps) = &mut external_endpoints {
        mark_local(eps);
    }
    let internal_local = internal.is_some_and(|c| c.chain.name.starts_with("local-"))
        || p.no_endpoints.as_deref() == Some("DROP");
    // Firewall: `saddr != { ranges [, LB IPs] } drop`.
    let mut ranges: Vec<String> = of_kind("firewall")
        .and_then(|c| {
            c.rules.iter().find_map(|r| {
                let inner = r.text.split_once("saddr != {")?.1.split_once('}')?.0;
                Some(
                    inner
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>(),
                )
            })
        })
        .unwrap_or_default();
    let (mut external_ips, mut lbs) = (Vec::new(), p.load_balancers.clone());
    for ip in &p.external {
        let is_lb = match svc {
            Some(s) => s
                .info
                .load_balancer_vips
                .iter()
                .any(|v| v.to_string() == *ip),
            None => false,
        };
        if is_lb || lbs.contains(ip) {
            push_unique(&mut lbs, ip);
        } else {
            external_ips.push(ip.clone());
        }
    }
    ranges.retain(|r| !lbs.contains(r));
    let _ = table;
    ServiceDump {
        namespace,
        name,
        port_name,
        protocol,
        family,
        cluster_ip: p.cluster_ip,
        port: p.port,
        node_port: p.node_port,
        external_ips,
        load_balancer_ips: lbs,
        external_traffic_policy: if etp_local { "Local" } else { "Cluster" }.into(),
        internal_traffic_policy: if internal_local { "Local" } else { "Cluster" }.into(),
        affinity_timeout: affinity.or(locals.and_then(|(_, a)| a)),
        health_check_node_port: None,
        load_balancer_source_ranges: ranges,
        endpoints,
        no_endpoints: p.no_endpoints,
        external_endpoints,
        external_no_endpoints: p.external_no_endpoints,
        chains: p.chains.into_iter().collect(),
        scheduler: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::nftables::read_listing;

    const OVERALL: &str = include_str!("../../../../../fixtures/nftables-save/overall.nft");

    fn svc<'a>(d: &'a NodeDump, name: &str) -> &'a ServiceDump {
        d.services.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn overall_capture_per_service() {
        let d = dump(&read_listing(OVERALL).expect("reads"), &[], None);
        assert_eq!(d.services.len(), 6, "{:#?}", d.services);
        assert!(d.anomalies.is_empty(), "{:#?}", d.anomalies);
        let s2 = svc(&d, "svc2");
        assert_eq!(s2.external_traffic_policy, "Local");
        assert_eq!(s2.external_endpoints, Some(vec![]));
        assert_eq!(s2.external_no_endpoints.as_deref(), Some("DROP"));
        assert_eq!(s2.node_port, Some(3001));
        assert_eq!(s2.endpoints.len(), 1);
        let s5 = svc(&d, "svc5");
        assert_eq!(s5.affinity_timeout, Some(10800));
        assert_eq!(s5.load_balancer_ips, ["5.6.7.8"]);
        assert_eq!(s5.load_balancer_source_ranges, ["203.0.113.0/25"]);
        let s6 = svc(&d, "svc6");
        assert_eq!(s6.no_endpoints.as_deref(), Some("REJECT"));
        assert!(s6.endpoints.is_empty() && s6.chains.is_empty());
        assert_eq!(s6.cluster_ip.as_deref(), Some("172.30.0.46"));
        let s4 = svc(&d, "svc4");
        assert_eq!(s4.external_ips, ["192.168.99.33"]);
        assert_eq!(s4.endpoints[1].ip, "10.180.0.5");
        assert_eq!(s4.endpoints[1].port, 80);
    }

    #[test]
    fn missing_and_stale_chains_and_foreign_rules() {
        // A map element to a chain the listing lacks, a flushed endpoint
        // chain, a hand-written rule, a base chain gone.
        let text = OVERALL
            .replace(
                "tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80",
                "tcp . 3003 : goto external-GONE0000-ns3/svc3/tcp/p80",
            )
            .replace(
                "\tchain masquerading {\n",
                "\tchain endpoint-AAAAAAAA-ns9/old/tcp/p__10.0.0.9/80 {\n\t}\n\n\tchain masquerading {\n\t\tcounter packets 0 bytes 0\n",
            )
            .replace("\t\tct state new jump nodeport-endpoints-check\n", "");
        let d = dump(&read_listing(&text).expect("reads"), &[], None);
        let kinds: Vec<(AnomalyKind, &str)> = d
            .anomalies
            .iter()
            .map(|a| (a.kind, a.chain.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (AnomalyKind::ForeignRule, "masquerading"),
                (
                    AnomalyKind::MissingChain,
                    "external-GONE0000-ns3/svc3/tcp/p80"
                ),
                (AnomalyKind::MissingJump, "filter-input"),
                (
                    AnomalyKind::StaleChain,
                    "endpoint-AAAAAAAA-ns9/old/tcp/p__10.0.0.9/80"
                ),
                // No element goes to it any more.
                (
                    AnomalyKind::StaleChain,
                    "external-4AT6LBPK-ns3/svc3/tcp/p80"
                ),
            ],
            "{:#?}",
            d.anomalies
        );
        assert!(d.anomalies[3].message.contains("flushed"));
        assert!(d.anomalies[4].message.contains("nothing reaches it"));
        assert!(d.anomalies[4].message.contains("nothing reaches it"));
    }

    #[test]
    fn chain_names_give_service_ports() {
        assert_eq!(
            chain_key("endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
            Some((
                "endpoint",
                ("ns1".into(), "svc1".into(), "p80".into(), "TCP".into())
            ))
        );
        assert_eq!(
            chain_key("local-5AS4EMTQ-ns1/itp/udp/"),
            Some((
                "local",
                ("ns1".into(), "itp".into(), String::new(), "UDP".into())
            ))
        );
        assert_eq!(chain_key("services"), None);
        assert_eq!(chain_key("service-endpoints-check"), None);
        assert_eq!(
            comment_key("ns1/itp", "udp"),
            Some(("ns1".into(), "itp".into(), String::new(), "UDP".into()))
        );
    }
}

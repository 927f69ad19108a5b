//! Desired against actual in nftables mode: the minimal `nft -f`
//! transaction that brings a node's `kube-proxy` table to what one full
//! sync would leave (like kube-proxy's partial sync: only chains whose
//! rules differ are rewritten, elements are added and deleted one by one),
//! and the differences per service port, chain and element.
//!
//! Both sides are [`Fake`]s: the desired one is [`Compiled::state`], the
//! actual one the node's table as read (`None` when the node has no
//! table).
//!
//! ```
//! use kpinspect_core::{config::ProxyConfig, mode::nftables, net::IpFamily, proxy::ProxyState};
//! let config = ProxyConfig::default();
//! let state = ProxyState::build(&Default::default(), &config, IpFamily::V4);
//! let desired = nftables::compile(&state, &config).state().unwrap();
//! let first = nftables::plan(&desired, None);
//! assert!(first.transaction.render().starts_with("add table ip kube-proxy"));
//! // Applied, the table equals the desired one and the next plan is empty.
//! let mut node = kpinspect_core::nft::Fake::new(desired.family(), "kube-proxy", true);
//! node.apply(&first.transaction).unwrap();
//! let second = nftables::plan(&desired, Some(&node));
//! assert!(second.is_empty() && second.in_sync());
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use serde::Serialize;

use crate::diff::{ServiceState, ServiceStatus};
use crate::net::IpFamily;
use crate::nft::{Chain, Element, Fake, Family, Map, Rule, Set, Table, Transaction};
use crate::plan::{ChainChange, ChainDiff, Refusal};

use super::compile::TABLE;
use super::names::is_service_chain;

/// What happens to one element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ElementChange {
    /// Desired, absent on the node: added.
    Missing,
    /// On the node with another value: deleted and added.
    Changed,
    /// On the node, not desired: deleted.
    Stale,
}

/// One element that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElementDiff {
    /// Its set or map.
    pub container: String,
    /// Its key (`a . b . c`).
    pub key: String,
    /// How it differs.
    pub change: ElementChange,
    /// The desired value (maps; empty for sets and stale elements).
    pub want: String,
    /// The node's value (maps; empty for sets and missing elements).
    pub have: String,
}

/// A set or map that differs as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContainerDiff {
    /// Its name.
    pub name: String,
    /// `missing` (created), `changed` (its type or timeout differ: deleted
    /// and created again, elements and the rules naming it rewritten) or
    /// `stale` (deleted).
    pub change: ChainChange,
}

/// The plan for one family's table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NftPlan {
    /// The IP family.
    pub family: IpFamily,
    /// The `nft -f` input, atomic; empty when in sync.
    pub transaction: Transaction,
    /// Chains (re)written: `add chain` + `flush chain` + their rules.
    pub chains_written: Vec<String>,
    /// Chains deleted (flushed first), stale service chains among them.
    pub chains_deleted: Vec<String>,
    /// Sets and maps created, re-created or deleted.
    pub containers: Vec<ContainerDiff>,
    /// Elements added, replaced or deleted.
    pub elements: Vec<ElementDiff>,
    /// Chains whose rules differ (the same as `chains_written` plus the
    /// stale ones), with the rules missing and extra, as `add rule` text.
    pub chains: Vec<ChainDiff>,
    /// Per service port, sorted.
    pub services: Vec<ServiceStatus>,
    /// Service ports on the node (each with a `service-` chain or in a
    /// map), for the guard.
    pub node_service_ports: usize,
    /// Those the plan deletes.
    pub service_ports_deleted: usize,
}

impl NftPlan {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.transaction.is_empty()
    }

    /// Whether the node is exactly as desired (nothing to write, every
    /// service port in sync).
    pub fn in_sync(&self) -> bool {
        self.is_empty()
            && self
                .services
                .iter()
                .all(|s| s.state == ServiceState::InSync)
    }

    /// Why writing this plan would do harm, if it would: it deletes more
    /// than half of the node's service ports.
    pub fn refusal(&self) -> Option<Refusal> {
        (self.service_ports_deleted * 2 > self.node_service_ports).then_some(
            Refusal::WipesServiceChains {
                family: self.family,
                deleted: self.service_ports_deleted,
                total: self.node_service_ports,
            },
        )
    }

    /// The service chain (`name`) a 1-based transaction line writes, and
    /// the Service port it belongs to (`namespace/name:port`), if any.
    pub fn line_owner(&self, line: usize) -> Option<(String, Option<String>)> {
        let op = self.transaction.ops.get(line.checked_sub(1)?)?;
        let name = match &op.object {
            crate::nft::Object::Chain(c) => c.name.clone(),
            crate::nft::Object::Rule(r) => r.chain.clone(),
            crate::nft::Object::Set(s) => s.name.clone(),
            crate::nft::Object::Map(m) => m.name.clone(),
            crate::nft::Object::Element(e) => {
                let value = e.value_text();
                match target_of(&value).filter(|t| is_service_chain(t)) {
                    Some(t) => t.to_string(),
                    // A no-endpoint element names its Service in its comment.
                    None => return Some((e.container.clone(), e.comment.clone())),
                }
            }
            crate::nft::Object::Table(_) => return None,
        };
        let service = ServicePortKey::of_chain(&name).map(|k| k.service());
        Some((name, service))
    }
}

/// A service port as its chain names spell it: `ns/svc/proto/port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ServicePortKey {
    namespace: String,
    name: String,
    protocol: String,
    port: String,
}

impl ServicePortKey {
    /// The service port of a per-service chain or affinity set
    /// (`service-HASH-ns/svc/tcp/p80`, `endpoint-HASH-ns/svc/tcp/p80__ip/port`).
    fn of_chain(chain: &str) -> Option<ServicePortKey> {
        if !is_service_chain(chain) {
            return None;
        }
        // prefix-HASH-rest
        let mut parts = chain.splitn(3, '-');
        let (_prefix, _hash, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let base = rest.split("__").next()?;
        let mut f = base.splitn(4, '/');
        Some(ServicePortKey {
            namespace: f.next()?.to_string(),
            name: f.next()?.to_string(),
            protocol: f.next()?.to_string(),
            port: f.next()?.to_string(),
        })
    }

    /// A no-endpoint element's comment (`ns/svc:port`) with its protocol.
    fn of_comment(comment: &str, protocol: &str) -> Option<ServicePortKey> {
        let (ns, rest) = comment.split_once('/')?;
        let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
        Some(ServicePortKey {
            namespace: ns.into(),
            name: name.into(),
            protocol: protocol.into(),
            port: port.into(),
        })
    }

    /// `namespace/name:port`, or `namespace/name` for an unnamed port.
    fn service(&self) -> String {
        if self.port.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port)
        }
    }
}

/// The endpoint (`ip:port`) an endpoint chain names.
fn endpoint_of(chain: &str) -> Option<String> {
    if !chain.starts_with("endpoint-") {
        return None;
    }
    let (_, ep) = chain.rsplit_once("__")?;
    let (ip, port) = ep.rsplit_once('/')?;
    let port: u16 = port.parse().ok()?;
    let ip: IpAddr = ip
        .parse()
        .ok()
        .or_else(|| ip.replace('.', ":").parse().ok())?;
    Some(crate::net::join_host_port(&ip, port))
}

/// The chain a verdict (`goto X`, `jump X`) names.
fn target_of(value: &str) -> Option<&str> {
    let mut w = value.split_whitespace();
    match (w.next(), w.next()) {
        (Some("goto" | "jump"), Some(t)) => Some(t),
        _ => None,
    }
}

/// The sets and maps a rule names (`@X`).
fn containers_named(rule: &str) -> impl Iterator<Item = &str> {
    rule.split_whitespace().filter_map(|w| w.strip_prefix('@'))
}

fn rule_text(r: &Rule) -> String {
    match &r.comment {
        Some(c) => format!("{} comment {}", r.rule, crate::nft::quote(c)),
        None => r.rule.clone(),
    }
}

fn same_rules(a: &[Rule], b: &[Rule]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.comment == y.comment
                && (x.rule == y.rule || comparable_rule(&x.rule) == comparable_rule(&y.rule))
        })
}

/// A rule's text in a form where what kube-proxy writes and what `nft
/// list` prints of it are equal: `meta mark` is `mark`, `|`/`&`/`^` are
/// `or`/`and`/`xor`, hexadecimal constants are decimal, quotes are
/// dropped, a one-element anonymous set is its element and the elements
/// of others (`{ a , b }`, `{ a, b }`, `{ 0 : goto x , 1 : goto y }`) are
/// sorted, and `reject with icmp[v6] [type] port-unreachable` is `reject`.
///
/// ```
/// use kpinspect_core::mode::nftables::comparable_rule;
/// assert_eq!(
///     comparable_rule("mark and 0x4000 == 0 return"),
///     comparable_rule("meta mark & 0x00004000 == 0x00000000 return")
/// );
/// assert_eq!(comparable_rule("ip daddr { 172.30.0.0/16 } drop"), "ip daddr 172.30.0.0/16 drop");
/// assert_eq!(
///     comparable_rule("ip saddr != { 5.6.7.8 , 1.2.3.4 } drop"),
///     comparable_rule("ip saddr != { 1.2.3.4, 5.6.7.8 } drop")
/// );
/// assert_eq!(comparable_rule("iifname != veth* jump x"), comparable_rule("iifname != \"veth*\" jump x"));
/// assert_ne!(comparable_rule("ip daddr 10.0.0.1 drop"), comparable_rule("ip daddr 10.0.0.2 drop"));
/// ```
pub fn comparable_rule(text: &str) -> String {
    let spaced = text
        .replace('{', " { ")
        .replace('}', " } ")
        .replace(',', " , ");
    let mut tokens: Vec<String> = Vec::new();
    let mut words = spaced.split_whitespace().peekable();
    while let Some(w) = words.next() {
        let w = w.trim_matches('"');
        match w {
            "meta" if words.peek() == Some(&"mark") => continue,
            "|" => tokens.push("or".into()),
            "&" => tokens.push("and".into()),
            "^" => tokens.push("xor".into()),
            _ => match w
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                Some(n) => tokens.push(n.to_string()),
                None => tokens.push(w.to_string()),
            },
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        // reject with icmp [type] port-unreachable: nft's spelling of `reject`.
        if tokens[i] == "reject" && tokens.get(i + 1).map(String::as_str) == Some("with") {
            let end = tokens[i..]
                .iter()
                .take(5)
                .position(|t| t == "port-unreachable");
            if let Some(end) = end {
                out.push("reject".into());
                i += end + 1;
                continue;
            }
        }
        if tokens[i] == "{"
            && let Some(end) = tokens[i..].iter().position(|t| t == "}")
        {
            let inner = &tokens[i + 1..i + end];
            let mut items: Vec<String> = inner
                .split(|t| t == ",")
                .map(|item| item.join(" "))
                .filter(|item| !item.is_empty())
                .collect();
            items.sort();
            if items.len() == 1 && !items[0].contains(" : ") {
                out.push(items.remove(0));
            } else {
                out.push(format!("{{ {} }}", items.join(", ")));
            }
            i += end + 1;
            continue;
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out.join(" ")
}

fn same_base(want: &Chain, have: Option<&Chain>) -> bool {
    have.is_some_and(|h| h.base == want.base)
}

/// What a set or map is, as compared: its key and value types and
/// timeout (comments and flags nft may print otherwise are not compared).
fn container_shape(fake: &Fake, name: &str) -> Option<(String, String, Option<u64>)> {
    let key = |k: &crate::nft::KeyType| format!("{k:?}");
    if let Some(s) = fake.set(name) {
        return Some((key(&s.key), String::new(), s.timeout));
    }
    fake.map(name)
        .map(|m| (key(&m.key), m.value.clone(), m.timeout))
}

fn add_container(tx: &mut Transaction, fake: &Fake, name: &str) {
    if let Some(s) = fake.set(name) {
        tx.add(s.clone());
    } else if let Some(m) = fake.map(name) {
        tx.add(m.clone());
    }
}

fn delete_container(tx: &mut Transaction, actual: &Fake, name: &str) {
    if actual.map(name).is_some() {
        tx.delete(Map::new(name, "", ""));
    } else {
        tx.delete(Set::new(name, ""));
    }
}

/// Plans the transaction that brings `actual` (the node's `kube-proxy`
/// table of `desired`'s family, `None` when absent) to `desired`.
///
/// Order (every reference is created before it is used and released before
/// what it names is deleted): the table; base chains whose type, hook or
/// priority differ deleted; missing sets and maps; chains to write added
/// and flushed; stale chains flushed; changed sets and maps re-created; the
/// rules of the chains written; element deletions, then additions; stale
/// sets and maps deleted; stale chains deleted. A stale chain is flushed
/// and deleted in the same transaction (kernels before 6.2 may still see it
/// referenced by a map element deleted in it; kube-proxy waits a second).
pub fn plan(desired: &Fake, actual: Option<&Fake>) -> NftPlan {
    let family = match desired.family() {
        Family::Ip6 => IpFamily::V6,
        _ => IpFamily::V4,
    };
    let empty = Fake::new(desired.family(), TABLE, desired.object_comments());
    let node = actual.filter(|a| a.table().is_some()).unwrap_or(&empty);
    let mut tx = Transaction::new(desired.family(), TABLE, desired.object_comments());
    let mut out = NftPlan {
        family,
        transaction: Transaction::new(desired.family(), TABLE, desired.object_comments()),
        chains_written: Vec::new(),
        chains_deleted: Vec::new(),
        containers: Vec::new(),
        elements: Vec::new(),
        chains: Vec::new(),
        services: Vec::new(),
        node_service_ports: 0,
        service_ports_deleted: 0,
    };

    if node.table().is_none() {
        tx.add(desired.table().cloned().unwrap_or(Table::default()));
    }

    // Sets and maps: missing, changed, stale.
    let want_containers: BTreeSet<&str> = desired.container_names().into_iter().collect();
    let have_containers: BTreeSet<&str> = node.container_names().into_iter().collect();
    let mut recreated: HashSet<&str> = HashSet::new();
    for name in &want_containers {
        match container_shape(node, name) {
            None => out.containers.push(ContainerDiff {
                name: name.to_string(),
                change: ChainChange::Missing,
            }),
            Some(shape) if Some(&shape) != container_shape(desired, name).as_ref() => {
                recreated.insert(name);
                out.containers.push(ContainerDiff {
                    name: name.to_string(),
                    change: ChainChange::Changed,
                });
            }
            Some(_) => {}
        }
    }
    let stale_containers: Vec<&str> = have_containers
        .difference(&want_containers)
        .copied()
        .collect();
    for name in &stale_containers {
        out.containers.push(ContainerDiff {
            name: name.to_string(),
            change: ChainChange::Stale,
        });
    }

    // Chains: which to write, which are stale.
    let want_chains = desired.chain_names();
    let have_chains: BTreeSet<&str> = node.chain_names().into_iter().collect();
    let mut write: Vec<&str> = Vec::new();
    let mut rebase: Vec<&str> = Vec::new();
    for name in &want_chains {
        let (Some(want), w_rules) = (desired.chain(name), desired.rules(name).unwrap_or(&[]))
        else {
            continue;
        };
        let have = node.chain(name);
        let h_rules = node.rules(name).unwrap_or(&[]);
        let base_differs = have.is_some() && !same_base(want, have);
        let names_recreated = !recreated.is_empty()
            && w_rules
                .iter()
                .any(|r| containers_named(&r.rule).any(|c| recreated.contains(c)));
        if have.is_none() || base_differs || !same_rules(w_rules, h_rules) || names_recreated {
            write.push(name);
            if base_differs {
                rebase.push(name);
            }
            let change = if have.is_none() {
                ChainChange::Missing
            } else {
                ChainChange::Changed
            };
            let canon = |r: &Rule| (comparable_rule(&r.rule), r.comment.clone());
            let w: Vec<_> = w_rules.iter().map(canon).collect();
            let h: Vec<_> = h_rules.iter().map(canon).collect();
            out.chains.push(ChainDiff {
                table: format!("{} {TABLE}", desired.family()),
                chain: name.to_string(),
                change,
                missing: w_rules
                    .iter()
                    .filter(|r| !h.contains(&canon(r)))
                    .map(rule_text)
                    .collect(),
                extra: h_rules
                    .iter()
                    .filter(|r| !w.contains(&canon(r)))
                    .map(rule_text)
                    .collect(),
            });
        }
    }
    let stale_chains: Vec<&str> = have_chains
        .iter()
        .copied()
        .filter(|c| desired.chain(c).is_none())
        .collect();
    for name in &stale_chains {
        out.chains.push(ChainDiff {
            table: format!("{} {TABLE}", desired.family()),
            chain: name.to_string(),
            change: ChainChange::Stale,
            missing: Vec::new(),
            extra: node
                .rules(name)
                .unwrap_or(&[])
                .iter()
                .map(rule_text)
                .collect(),
        });
    }

    // Elements.
    let mut deletes: Vec<Element> = Vec::new();
    let mut adds: Vec<Element> = Vec::new();
    for name in &want_containers {
        let want = desired.elements(name).unwrap_or(&[]);
        let have: &[Element] = if recreated.contains(name) {
            &[]
        } else {
            node.elements(name).unwrap_or(&[])
        };
        let have_by_key: BTreeMap<&[String], &Element> =
            have.iter().map(|e| (e.key.as_slice(), e)).collect();
        let want_keys: HashSet<&[String]> = want.iter().map(|e| e.key.as_slice()).collect();
        for e in want {
            match have_by_key.get(e.key.as_slice()) {
                Some(h) if h.value == e.value => {}
                Some(h) => {
                    deletes.push(Element::set(*name, e.key.clone()));
                    adds.push(e.clone());
                    out.elements.push(ElementDiff {
                        container: name.to_string(),
                        key: e.key_text(),
                        change: ElementChange::Changed,
                        want: e.value_text(),
                        have: h.value_text(),
                    });
                }
                None => {
                    adds.push(e.clone());
                    out.elements.push(ElementDiff {
                        container: name.to_string(),
                        key: e.key_text(),
                        change: ElementChange::Missing,
                        want: e.value_text(),
                        have: String::new(),
                    });
                }
            }
        }
        for h in have {
            if !want_keys.contains(h.key.as_slice()) {
                deletes.push(Element::set(*name, h.key.clone()));
                out.elements.push(ElementDiff {
                    container: name.to_string(),
                    key: h.key_text(),
                    change: ElementChange::Stale,
                    want: String::new(),
                    have: h.value_text(),
                });
            }
        }
    }

    // The transaction, in an order where every reference resolves.
    for name in &rebase {
        tx.delete(Chain::regular(*name));
    }
    for c in &out.containers {
        if c.change == ChainChange::Missing {
            add_container(&mut tx, desired, &c.name);
        }
    }
    for name in &write {
        if let Some(c) = desired.chain(name) {
            tx.add(c.clone());
            tx.flush(Chain::regular(*name));
        }
    }
    for name in &stale_chains {
        tx.flush(Chain::regular(*name));
    }
    for name in &recreated {
        delete_container(&mut tx, node, name);
        add_container(&mut tx, desired, name);
    }
    for name in &write {
        for r in desired.rules(name).unwrap_or(&[]) {
            tx.add(r.clone());
        }
    }
    for e in deletes {
        tx.delete(e);
    }
    for e in adds {
        tx.add(e);
    }
    for name in &stale_containers {
        delete_container(&mut tx, node, name);
    }
    for name in &stale_chains {
        tx.delete(Chain::regular(*name));
    }
    out.chains_written = write.iter().map(|c| c.to_string()).collect();
    out.chains_deleted = stale_chains.iter().map(|c| c.to_string()).collect();
    out.transaction = tx;

    let (services, on_node, deleted) = service_states(desired, node, &out);
    out.services = services;
    out.node_service_ports = on_node;
    out.service_ports_deleted = deleted;
    out
}

/// What one side holds of each service port: its chains and its endpoints.
#[derive(Default)]
struct Holding {
    chains: BTreeSet<String>,
    endpoints: BTreeSet<String>,
    present: bool,
}

fn holdings(fake: &Fake) -> BTreeMap<ServicePortKey, Holding> {
    let mut out: BTreeMap<ServicePortKey, Holding> = BTreeMap::new();
    for chain in fake.chain_names() {
        if let Some(k) = ServicePortKey::of_chain(chain) {
            let h = out.entry(k).or_default();
            h.present = true;
            h.chains.insert(chain.to_string());
            if let Some(ep) = endpoint_of(chain) {
                h.endpoints.insert(ep);
            }
        }
    }
    for name in fake.container_names() {
        for e in fake.elements(name).unwrap_or(&[]) {
            let key = match target_of(&e.value_text()).and_then(ServicePortKey::of_chain) {
                Some(k) => Some(k),
                // no-endpoint-services: ip . proto . port; -nodeports: proto . port.
                None => e.comment.as_deref().and_then(|c| {
                    let proto = e
                        .key
                        .iter()
                        .find(|p| matches!(p.as_str(), "tcp" | "udp" | "sctp"))?;
                    ServicePortKey::of_comment(c, proto)
                }),
            };
            if let Some(k) = key {
                out.entry(k).or_default().present = true;
            }
        }
    }
    out
}

/// The state of every service port on either side, the number on the
/// node, and the number the plan deletes.
fn service_states(
    desired: &Fake,
    node: &Fake,
    plan: &NftPlan,
) -> (Vec<ServiceStatus>, usize, usize) {
    let want = holdings(desired);
    let have = holdings(node);
    let touched: HashSet<String> = plan
        .chains
        .iter()
        .filter_map(|c| ServicePortKey::of_chain(&c.chain))
        .chain(plan.elements.iter().filter_map(|e| {
            target_of(&e.want)
                .or(target_of(&e.have))
                .and_then(ServicePortKey::of_chain)
        }))
        .map(|k| k.service() + "/" + &k.protocol)
        .collect();
    let mut out = Vec::new();
    let mut deleted = 0;
    for (k, w) in &want {
        let (state, added, removed) = match have.get(k) {
            None => (
                ServiceState::Missing,
                w.endpoints.iter().cloned().collect(),
                Vec::new(),
            ),
            Some(h) => {
                let added: Vec<String> = w.endpoints.difference(&h.endpoints).cloned().collect();
                let removed: Vec<String> = h.endpoints.difference(&w.endpoints).cloned().collect();
                let state = if !added.is_empty() || !removed.is_empty() {
                    ServiceState::EndpointsDiffer
                } else if touched.contains(&(k.service() + "/" + &k.protocol)) {
                    ServiceState::RulesDiffer
                } else {
                    ServiceState::InSync
                };
                (state, added, removed)
            }
        };
        out.push(ServiceStatus {
            service: k.service(),
            protocol: k.protocol.clone(),
            state,
            endpoints_added: added,
            endpoints_removed: removed,
        });
    }
    for (k, h) in &have {
        if want.contains_key(k) || !h.present {
            continue;
        }
        deleted += 1;
        out.push(ServiceStatus {
            service: k.service(),
            protocol: k.protocol.clone(),
            state: ServiceState::Stale,
            endpoints_added: Vec::new(),
            endpoints_removed: h.endpoints.iter().cloned().collect(),
        });
    }
    out.sort_by(|a, b| (&a.service, &a.protocol).cmp(&(&b.service, &b.protocol)));
    (out, have.len(), deleted)
}

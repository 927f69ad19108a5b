//! kube-proxy's nftables syncs one after another (`syncProxyRules` with the
//! state its `Proxier` carries between them): full and partial syncs, the
//! element caches, stale chains deleted in a separate transaction at least
//! a second after they were flushed, stale affinity sets, and the restart
//! optimisation that keeps existing endpoint chains.
//!
//! The model is pure: the node is an [`nft::Fake`](crate::nft::Fake) the
//! caller owns (the kernel's table read back, or kube-proxy's test fake),
//! and time is a [`Duration`] since an instant the caller picks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::config::ProxyConfig;
use crate::net::IpFamily;
use crate::nft::{Chain, Element, Fake, FakeError, Set, Transaction};
use crate::proxy::{Notice, ProxyState};

use super::compile::{
    CLUSTER_IPS, Existing, FIREWALL_IPS, NO_ENDPOINT_NODEPORTS, NO_ENDPOINT_SERVICES, SERVICE_IPS,
    SERVICE_NODEPORTS, Writer,
};

/// How long a flushed stale chain waits before it is deleted: kube-proxy
/// deletes it in the first sync that starts more than this after the flush
/// (kernels before 6.2 notice late that a chain lost its last reference).
pub const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);

/// A sync more than this after the last successful full sync is full
/// (`proxyutil.FullSyncPeriod`).
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// The cached containers, in the order kube-proxy deletes their leftover
/// elements.
const CACHED: [&str; 6] = [
    CLUSTER_IPS,
    SERVICE_IPS,
    FIREWALL_IPS,
    NO_ENDPOINT_SERVICES,
    NO_ENDPOINT_NODEPORTS,
    SERVICE_NODEPORTS,
];

/// One container's element cache (`nftElementStorage`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ElementCache {
    /// Key text → (key parts, value text).
    elements: BTreeMap<String, (Vec<String>, String)>,
    /// The keys not ensured yet in this sync.
    leftover: BTreeSet<String>,
}

impl ElementCache {
    fn reset_leftover(&mut self) {
        self.leftover = self.elements.keys().cloned().collect();
    }
}

/// kube-proxy's element caches of `cluster-ips`, `service-ips`,
/// `firewall-ips`, `no-endpoint-services`, `no-endpoint-nodeports` and
/// `service-nodeports`: what the proxier believes the node holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ElementCaches {
    caches: BTreeMap<&'static str, ElementCache>,
}

impl ElementCaches {
    /// `ensureElem`: absent → `add`; another value → `delete`, `add`; the
    /// same value (comments are not compared) → nothing.
    pub(super) fn ensure(&mut self, tx: &mut Transaction, container: &'static str, e: Element) {
        let cache = self.caches.entry(container).or_default();
        let (key, value) = (e.key_text(), e.value_text());
        match cache.elements.get(&key) {
            Some((_, v)) if *v == value => {}
            Some(_) => {
                tx.delete(Element::set(container, e.key.clone()));
                cache.elements.insert(key.clone(), (e.key.clone(), value));
                tx.add(e);
            }
            None => {
                cache.elements.insert(key.clone(), (e.key.clone(), value));
                tx.add(e);
            }
        }
        cache.leftover.remove(&key);
    }

    /// `readOrReset` on a full sync: the node's elements (none when the
    /// table or the container does not exist), all of them leftovers.
    fn read(&mut self, node: &Fake) {
        for name in CACHED {
            let cache = self.caches.entry(name).or_default();
            cache.elements = node
                .elements(name)
                .unwrap_or_default()
                .iter()
                .map(|e| (e.key_text(), (e.key.clone(), e.value_text())))
                .collect();
            cache.reset_leftover();
        }
    }

    /// `cleanupLeftoverKeys`: deletes the elements no service ensured.
    fn cleanup(&mut self, tx: &mut Transaction) {
        for name in CACHED {
            let cache = self.caches.entry(name).or_default();
            for key in std::mem::take(&mut cache.leftover) {
                if let Some((parts, _)) = cache.elements.remove(&key) {
                    tx.delete(Element::set(name, parts));
                }
            }
            cache.reset_leftover();
        }
    }
}

/// The Services (namespace, name) whose service or endpoint changes a sync
/// handles: what kube-proxy's change trackers report
/// (`UpdatedServices` of both). In a partial sync only their chains are
/// rewritten.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedServices {
    names: BTreeSet<(String, String)>,
}

impl ChangedServices {
    /// No change.
    pub fn new() -> ChangedServices {
        ChangedServices::default()
    }

    /// Marks Service `namespace`/`name` as changed.
    pub fn insert(&mut self, namespace: impl Into<String>, name: impl Into<String>) {
        self.names.insert((namespace.into(), name.into()));
    }

    /// Whether Service `namespace`/`name` changed.
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        // A lookup, not a scan: a sync asks once per service port.
        self.names
            .contains(&(namespace.to_string(), name.to_string()))
    }

    /// The number of changed Services.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The Services whose service ports or endpoints differ between two
    /// states of one proxier (added, removed or changed), as kube-proxy's
    /// trackers see them: a change that is undone before the sync is none.
    ///
    /// ```
    /// use kpinspect_core::{config::ProxyConfig, mode::nftables::ChangedServices,
    ///     net::IpFamily, proxy::ProxyState};
    /// let config = ProxyConfig::default();
    /// let s = ProxyState::build(&Default::default(), &config, IpFamily::V4);
    /// assert!(ChangedServices::between(&s, &s).is_empty());
    /// ```
    pub fn between(old: &ProxyState, new: &ProxyState) -> ChangedServices {
        type ByService<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a crate::proxy::ServicePortEntry>>;
        fn group(state: &ProxyState) -> ByService<'_> {
            let mut out: ByService<'_> = BTreeMap::new();
            for e in &state.ports {
                out.entry((&e.info.name.namespace, &e.info.name.name))
                    .or_default()
                    .push(e);
            }
            out
        }
        let (a, b) = (group(old), group(new));
        let mut out = ChangedServices::new();
        for key in a.keys().chain(b.keys()) {
            if a.get(key) != b.get(key) {
                out.insert(key.0, key.1);
            }
        }
        out
    }
}

/// What one sync wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// Whether it was a full sync (skeleton, every service port, caches
    /// re-read from the node).
    pub full: bool,
    /// The separate transaction deleting aged stale chains, run first
    /// (none when no stale chain was old enough).
    pub stale_deletion: Option<Transaction>,
    /// Why the node refused `stale_deletion` (the sync then went on as a
    /// full sync, as kube-proxy's does).
    pub stale_deletion_error: Option<FakeError>,
    /// The main transaction, applied.
    pub transaction: Transaction,
    /// What kube-proxy would log or skip.
    pub notices: Vec<Notice>,
}

impl Synced {
    /// The main transaction's operation count (knftables'
    /// `NumOperations`, what kube-proxy's tests assert).
    pub fn operations(&self) -> usize {
        self.transaction.len()
    }
}

/// Why a sync's main transaction did not apply: nothing of it did; the
/// proxier forgot its stale chains and does a full sync next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nftables sync failed: {source}")]
pub struct SyncError {
    /// The refused transaction.
    pub transaction: Box<Transaction>,
    /// The node's refusal.
    #[source]
    pub source: FakeError,
}

/// One family's kube-proxy nftables proxier between syncs: its element
/// caches, its stale chains with the time each was flushed, whether the
/// process has synced once (endpoint chains the node has are kept in the
/// first sync only), whether the base chains were recreated once, and
/// whether the next sync must be full.
///
/// ```
/// use std::time::Duration;
/// use kpinspect_core::{config::ProxyConfig, mode::nftables::{ChangedServices, Proxier},
///     net::IpFamily, nft::{Fake, Family}, proxy::ProxyState};
/// let config = ProxyConfig::default();
/// let state = ProxyState::build(&Default::default(), &config, IpFamily::V4);
/// let mut node = Fake::new(Family::Ip, "kube-proxy", true);
/// let mut proxier = Proxier::new();
/// let first = proxier.sync(&mut node, &state, &config, &ChangedServices::new(), Duration::ZERO).unwrap();
/// assert!(first.full && first.operations() > 0);
/// let again = proxier.sync(&mut node, &state, &config, &ChangedServices::new(), Duration::from_secs(5)).unwrap();
/// assert!(!again.full && again.operations() == 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxier {
    caches: ElementCaches,
    stale_chains: BTreeMap<String, Duration>,
    synced_once: bool,
    need_full_sync: bool,
    flushed: bool,
    last_full_sync: Option<Duration>,
}

impl Default for Proxier {
    fn default() -> Proxier {
        Proxier::new()
    }
}

impl Proxier {
    /// A freshly started proxier: its first sync is full.
    pub fn new() -> Proxier {
        Proxier {
            caches: ElementCaches::default(),
            stale_chains: BTreeMap::new(),
            synced_once: false,
            need_full_sync: true,
            flushed: false,
            last_full_sync: None,
        }
    }

    /// The flushed chains waiting for deletion, with the time each was
    /// (last) flushed.
    pub fn stale_chains(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.stale_chains.iter().map(|(c, t)| (c.as_str(), *t))
    }

    /// Whether the next sync is full regardless of time.
    pub fn needs_full_sync(&self) -> bool {
        self.need_full_sync
    }

    /// Forces the next sync to be full (`OnTopologyChange`).
    pub fn request_full_sync(&mut self) {
        self.need_full_sync = true;
    }

    /// One `syncProxyRules` at `now` against `node`: first the separate
    /// transaction deleting stale chains flushed more than
    /// [`STALE_CHAIN_DELAY`] before `now`, then the main transaction —
    /// the skeleton on a full sync; every service port, those of Services
    /// not in `changed` (partial sync) only noted and their elements
    /// ensured through the caches; flushes of chains with `/` that no
    /// service port uses (now stale); deletions of unused affinity sets;
    /// then the elements no service port ensured. Service ports in
    /// `state`'s order (kube-proxy's is random). Both are applied to
    /// `node`.
    pub fn sync(
        &mut self,
        node: &mut Fake,
        state: &ProxyState,
        config: &ProxyConfig,
        changed: &ChangedServices,
        now: Duration,
    ) -> Result<Synced, SyncError> {
        let mut full = self.need_full_sync
            || self
                .last_full_sync
                .is_none_or(|t| now.saturating_sub(t) > FULL_SYNC_PERIOD);

        let mut w = Writer::new(state.family, config);
        let (mut stale_deletion, mut stale_deletion_error) = (None, None);
        let aged: Vec<String> = self
            .stale_chains
            .iter()
            .filter(|&(_, &t)| t + STALE_CHAIN_DELAY < now)
            .map(|(c, _)| c.clone())
            .collect();
        if !aged.is_empty() {
            let mut tx = Transaction::new(w.tx.family, &w.tx.table, w.tx.object_comments);
            for chain in aged {
                self.stale_chains.remove(&chain);
                tx.delete(Chain::regular(chain));
            }
            if let Err(e) = node.apply(&tx) {
                stale_deletion_error = Some(e);
                full = true;
            }
            stale_deletion = Some(tx);
        }

        w.caches = std::mem::take(&mut self.caches);
        if full {
            w.skeleton(self.flushed);
            self.flushed = true;
            w.caches.read(node);
        }
        let existing = node.has_table().then(|| Existing {
            chains: node.chain_names().into_iter().map(String::from).collect(),
            affinity_sets: node
                .container_names()
                .into_iter()
                .filter(|n| n.starts_with("affinity-") && node.set(n).is_some())
                .map(String::from)
                .collect(),
        });
        if !self.synced_once {
            w.existing = existing.clone();
        }
        for entry in &state.ports {
            let name = &entry.info.name;
            let skip = !full && !changed.contains(&name.namespace, &name.name);
            w.service_port(entry, skip);
        }

        let mut stale = self.stale_chains.clone();
        if let Some(existing) = &existing {
            for chain in existing.chains.iter().filter(|c| c.contains('/')) {
                if w.chains.contains(chain) {
                    stale.remove(chain);
                } else {
                    w.tx.flush(Chain::regular(chain.as_str()));
                    stale.insert(chain.clone(), now);
                }
            }
            let addr_type = match state.family {
                IpFamily::V4 => "ipv4_addr",
                IpFamily::V6 => "ipv6_addr",
            };
            for set in &existing.affinity_sets {
                if !w.affinity_sets.contains(set) {
                    w.tx.delete(Set::new(set.as_str(), addr_type));
                }
            }
        }
        w.caches.cleanup(&mut w.tx);
        self.caches = std::mem::take(&mut w.caches);
        self.synced_once = true;

        let mut notices = state.notices.clone();
        notices.append(&mut w.notices);
        match node.apply(&w.tx) {
            Ok(()) => {
                self.stale_chains = stale;
                self.need_full_sync = false;
                if full {
                    self.last_full_sync = Some(now);
                }
                Ok(Synced {
                    full,
                    stale_deletion,
                    stale_deletion_error,
                    transaction: w.tx,
                    notices,
                })
            }
            Err(source) => {
                self.stale_chains.clear();
                self.need_full_sync = true;
                Err(SyncError {
                    transaction: Box::new(w.tx),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProxyMode;
    use crate::mode::nftables::compile;
    use crate::model::*;
    use crate::nft::Family;

    fn config() -> ProxyConfig {
        let mut config = ProxyConfig {
            mode: ProxyMode::Nftables,
            cluster_cidrs: vec!["10.0.0.0/8".parse().expect("cidr")],
            ..ProxyConfig::default()
        };
        config.node.name = "test-node".into();
        config.node.ips = vec!["192.168.0.2".parse().expect("ip")];
        config
    }

    /// `ns1/svc1` 172.30.0.41:80 with `endpoints`, ClientIP affinity when
    /// `affinity`.
    fn cluster(endpoints: &[&str], affinity: bool) -> Cluster {
        Cluster {
            services: vec![Service {
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
                session_affinity_timeout: affinity.then_some(10800),
            }],
            endpoint_slices: vec![EndpointSlice {
                namespace: "ns1".into(),
                name: "svc1-1".into(),
                service_name: "svc1".into(),
                address_type: AddressType::Ipv4,
                ports: vec![EndpointPort {
                    name: Some("p80".into()),
                    port: Some(80),
                    protocol: Protocol::Tcp,
                }],
                endpoints: endpoints
                    .iter()
                    .map(|a| Endpoint {
                        address: Some(a.parse().expect("ip")),
                        ready: true,
                        serving: true,
                        terminating: false,
                        node_name: None,
                        zone_hints: vec![],
                        node_hints: vec![],
                    })
                    .collect(),
            }],
        }
    }

    fn state(c: &Cluster, config: &ProxyConfig) -> ProxyState {
        ProxyState::build(c, config, IpFamily::V4)
    }

    fn node() -> Fake {
        Fake::new(Family::Ip, "kube-proxy", true)
    }

    fn changed_svc1() -> ChangedServices {
        let mut c = ChangedServices::new();
        c.insert("ns1", "svc1");
        c
    }

    #[test]
    fn the_first_sync_on_an_empty_node_is_compile() {
        let config = config();
        let s = state(&cluster(&["10.0.1.1", "10.0.1.2"], true), &config);
        let mut node = node();
        let synced = Proxier::new()
            .sync(
                &mut node,
                &s,
                &config,
                &ChangedServices::new(),
                Duration::ZERO,
            )
            .expect("applies");
        assert!(synced.full && synced.stale_deletion.is_none());
        assert_eq!(synced.transaction, compile(&s, &config).transaction);
    }

    #[test]
    fn between_names_added_removed_and_changed_services_only() {
        let config = config();
        let a = state(&cluster(&["10.0.1.1"], false), &config);
        let b = state(&cluster(&["10.0.1.2"], false), &config);
        let none = state(&Cluster::default(), &config);
        assert!(ChangedServices::between(&a, &a).is_empty());
        for (x, y) in [(&a, &b), (&a, &none), (&none, &a)] {
            let c = ChangedServices::between(x, y);
            assert_eq!(c.len(), 1);
            assert!(c.contains("ns1", "svc1") && !c.contains("ns1", "svc2"));
        }
    }

    #[test]
    fn affinity_sets_go_at_once_and_chains_a_second_later() {
        let config = config();
        let mut node = node();
        let mut p = Proxier::new();
        let s = |eps: &[&str], aff| state(&cluster(eps, aff), &config);
        let at = Duration::from_secs;
        p.sync(
            &mut node,
            &s(&["10.0.1.1"], true),
            &config,
            &changed_svc1(),
            at(1),
        )
        .expect("applies");
        assert_eq!(
            node.container_names()
                .iter()
                .filter(|n| n.starts_with("affinity-"))
                .count(),
            1
        );
        // Affinity off: the set is deleted in the main transaction, the
        // endpoint chain (same name) is rewritten without its update rule.
        let off = p
            .sync(
                &mut node,
                &s(&["10.0.1.1"], false),
                &config,
                &changed_svc1(),
                at(2),
            )
            .expect("applies");
        assert!(
            off.transaction
                .render()
                .contains("delete set ip kube-proxy affinity-")
        );
        assert!(
            !node
                .container_names()
                .iter()
                .any(|n| n.starts_with("affinity-"))
        );
        assert_eq!(p.stale_chains().count(), 0);
        // The endpoint moves: its old chain is flushed, then deleted only
        // by a sync more than a second later.
        p.sync(
            &mut node,
            &s(&["10.0.1.9"], false),
            &config,
            &changed_svc1(),
            at(3),
        )
        .expect("applies");
        let stale: Vec<(String, Duration)> =
            p.stale_chains().map(|(c, t)| (c.to_string(), t)).collect();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].1, at(3));
        let exactly_one_second = p
            .sync(
                &mut node,
                &s(&["10.0.1.9"], false),
                &config,
                &ChangedServices::new(),
                at(4),
            )
            .expect("applies");
        assert!(exactly_one_second.stale_deletion.is_none());
        let later = p
            .sync(
                &mut node,
                &s(&["10.0.1.9"], false),
                &config,
                &ChangedServices::new(),
                at(6),
            )
            .expect("applies");
        let deletion = later.stale_deletion.expect("deleted").render();
        assert_eq!(
            deletion,
            format!("delete chain ip kube-proxy {}\n", stale[0].0)
        );
        assert!(node.chain(&stale[0].0).is_none());
    }

    #[test]
    fn a_restart_keeps_endpoint_chains_only_when_affinity_agrees() {
        let config = config();
        let with = state(&cluster(&["10.0.1.1"], true), &config);
        let without = state(&cluster(&["10.0.1.1"], false), &config);
        let mut node = compile(&without, &config).state().expect("applies");
        let kept = Proxier::new()
            .sync(
                &mut node,
                &without,
                &config,
                &ChangedServices::new(),
                Duration::ZERO,
            )
            .expect("applies");
        let text = kept.transaction.render();
        assert!(
            !text.contains("add chain ip kube-proxy endpoint-"),
            "{text}"
        );
        // The service now wants affinity: no affinity set on the node, so
        // the endpoint chain is rewritten.
        let rewritten = Proxier::new()
            .sync(
                &mut node,
                &with,
                &config,
                &ChangedServices::new(),
                Duration::ZERO,
            )
            .expect("applies");
        let text = rewritten.transaction.render();
        assert!(text.contains("add chain ip kube-proxy endpoint-"), "{text}");
        assert!(text.contains("update @affinity-"), "{text}");
    }

    #[test]
    fn a_refused_sync_forgets_stale_chains_and_forces_a_full_sync() {
        let config = config();
        let mut node = node();
        let mut p = Proxier::new();
        let s = |eps: &[&str]| state(&cluster(eps, false), &config);
        let at = Duration::from_secs;
        p.sync(
            &mut node,
            &s(&["10.0.1.1"]),
            &config,
            &changed_svc1(),
            at(1),
        )
        .expect("applies");
        p.sync(
            &mut node,
            &s(&["10.0.1.2"]),
            &config,
            &changed_svc1(),
            at(2),
        )
        .expect("applies");
        assert!(!p.needs_full_sync() && p.stale_chains().count() == 1);
        // Someone deletes the table: the cached elements' partial sync fails.
        node = Fake::new(Family::Ip, "kube-proxy", true);
        let err = p
            .sync(
                &mut node,
                &s(&["10.0.1.3"]),
                &config,
                &changed_svc1(),
                at(2),
            )
            .expect_err("no table");
        assert!(matches!(err.source, FakeError::NotFound { .. }));
        assert!(p.needs_full_sync() && p.stale_chains().count() == 0);
        let full = p
            .sync(
                &mut node,
                &s(&["10.0.1.3"]),
                &config,
                &ChangedServices::new(),
                at(3),
            )
            .expect("applies");
        assert!(full.full);
        let fresh = compile(&s(&["10.0.1.3"]), &config)
            .state()
            .expect("applies");
        assert_eq!(node.dump(), fresh.dump());
    }

    #[test]
    fn an_hour_after_the_last_full_sync_or_on_request_the_sync_is_full_again() {
        let config = config();
        let s = state(&cluster(&["10.0.1.1"], false), &config);
        let mut node = node();
        let mut p = Proxier::new();
        let none = ChangedServices::new();
        let at = Duration::from_secs;
        let first = p
            .sync(&mut node, &s, &config, &none, at(0))
            .expect("applies");
        let before = node.dump();
        let text = first.transaction.render();
        assert!(
            text.contains("delete chain ip kube-proxy nat-prerouting\n"),
            "{text}"
        );
        let partial = p
            .sync(&mut node, &s, &config, &none, at(3600))
            .expect("applies");
        assert!(!partial.full && partial.transaction.is_empty());
        let hourly = p
            .sync(&mut node, &s, &config, &none, at(3601))
            .expect("applies");
        assert!(hourly.full);
        // The base chains were recreated once already (`flushed`); every
        // chain is rewritten, no cached element changes (`nodeport-ips`
        // is flushed and refilled on every full sync).
        let text = hourly.transaction.render();
        assert!(!text.contains("delete chain"), "{text}");
        assert!(
            text.contains("flush chain ip kube-proxy service-"),
            "{text}"
        );
        assert_eq!(text.matches(" element ").count(), 1, "{text}");
        assert!(
            text.contains("add element ip kube-proxy nodeport-ips"),
            "{text}"
        );
        assert_eq!(node.dump(), before);
        p.request_full_sync();
        assert!(p.needs_full_sync());
        let requested = p
            .sync(&mut node, &s, &config, &none, at(3602))
            .expect("applies");
        assert!(requested.full && !p.needs_full_sync());
        assert_eq!(requested.transaction, hourly.transaction);
    }

    #[test]
    fn between_full_syncs_the_caches_are_trusted_blindly() {
        let config = config();
        let s = state(&cluster(&["10.0.1.1"], false), &config);
        let mut node = node();
        let mut p = Proxier::new();
        let none = ChangedServices::new();
        let at = Duration::from_secs;
        p.sync(&mut node, &s, &config, &none, at(0))
            .expect("applies");
        let mut gone = Transaction::new(Family::Ip, "kube-proxy", true);
        gone.delete(Element::set(
            SERVICE_IPS,
            vec!["172.30.0.41".into(), "tcp".into(), "80".into()],
        ));
        node.apply(&gone).expect("someone deletes the element");
        // Even a rewrite of the service leaves the element to the cache.
        let partial = p
            .sync(&mut node, &s, &config, &changed_svc1(), at(1))
            .expect("applies");
        assert!(!partial.transaction.render().contains("element"));
        assert_eq!(node.elements(SERVICE_IPS).map(<[_]>::len), Some(0));
        p.request_full_sync();
        let full = p
            .sync(&mut node, &s, &config, &none, at(2))
            .expect("applies");
        assert!(full.transaction.render().contains(
            "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-"
        ));
        assert_eq!(node.elements(SERVICE_IPS).map(<[_]>::len), Some(1));
    }
}

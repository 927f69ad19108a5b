use std::collections::BTreeSet;
use std::net::IpAddr;

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::ipvs::{IpSetEntry, KeptReason, VirtualServerKind, compile};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::{IpFamily, IpNet};
use kpinspect_core::proxy::ProxyState;

use super::*;
use crate::MemoryNode;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn vs(addr: &str, protocol: Protocol, port: u16, reals: &[(&str, u16)]) -> VirtualServer {
    VirtualServer {
        address: ip(addr),
        protocol,
        port,
        scheduler: Scheduler::default(),
        flags: ServiceFlags::default(),
        timeout: 0,
        kind: Some(VirtualServerKind::ClusterIp),
        service: None,
        bind: true,
        real_servers: reals
            .iter()
            .map(|(a, p)| RealServer::new(ip(a), *p))
            .collect(),
    }
}

fn desired(servers: Vec<VirtualServer>) -> Compiled {
    let config = ProxyConfig::default();
    let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
    let mut c = compile(&state, &config);
    c.addresses = servers.iter().map(|v| IpNet::from(v.address)).collect();
    c.addresses.sort();
    c.addresses.dedup();
    c.ipsets
        .iter_mut()
        .find(|s| s.name == "KUBE-CLUSTER-IP")
        .expect("set")
        .entries = servers
        .iter()
        .map(|v| IpSetEntry::IpPort {
            ip: v.address,
            protocol: v.protocol,
            port: v.port,
        })
        .collect();
    c.virtual_servers = servers;
    c
}

fn web(reals: &[(&str, u16)]) -> VirtualServer {
    vs("10.96.0.10", Protocol::Tcp, 80, reals)
}

fn reals(node: &MemoryNode, v: &VirtualServer) -> Vec<(String, u32)> {
    node.destinations(&kernel_service(v).key())
        .expect("destinations")
        .iter()
        .map(|d| (crate::destination_name(d), d.weight.unwrap_or(0)))
        .collect()
}

#[test]
fn apply_twice_writes_nothing_the_second_time() {
    let c = desired(vec![
        web(&[("10.244.1.2", 8080), ("10.244.2.2", 8080)]),
        vs("10.96.0.53", Protocol::Udp, 53, &[("10.244.1.3", 53)]),
    ]);
    let node = MemoryNode::new();
    let first = apply_ipvs(&node, &c, &Ownership::default()).expect("apply");
    assert!(!first.in_sync());
    assert!(
        first
            .to_string()
            .starts_with("IPv4: IPVS mode applied: 2 virtual servers added, 0 updated, 0 deleted; 3 real servers added"),
        "{first}"
    );
    assert_eq!(node.services().expect("services").len(), 2);
    assert_eq!(
        node.addresses(KUBE_IPVS0).expect("addresses"),
        [ip("10.96.0.10"), ip("10.96.0.53")]
    );
    assert!(node.ipsets().set("KUBE-CLUSTER-IP").is_some());
    assert!(
        node.ruleset(IpFamily::V4)
            .render()
            .contains("KUBE-IPVS-FILTER")
    );
    let writes = node.writes().len();

    let second = apply_ipvs(&node, &c, &Ownership::default()).expect("apply");
    assert!(second.in_sync(), "{:#?}", second.ipvs.ops);
    assert!(
        second
            .to_string()
            .ends_with("IPVS mode in sync, nothing written")
    );
    assert_eq!(node.writes().len(), writes, "no restore the second time");
}

#[test]
fn foreign_virtual_servers_are_untouched() {
    let node = MemoryNode::new();
    let keepalived = kernel_service(&vs("192.168.1.100", Protocol::Tcp, 443, &[]));
    node.new_service(&keepalived).expect("service");
    let fwmark = kpinspect_ipvs::Service::fwmark(kpinspect_ipvs::AF_INET, 7).scheduler("rr");
    node.new_service(&fwmark).expect("fwmark");
    let c = desired(vec![web(&[("10.244.1.2", 8080)])]);
    let report = apply_ipvs(&node, &c, &Ownership::default()).expect("apply");
    assert_eq!(node.services().expect("services").len(), 3);
    assert_eq!(
        report
            .ipvs
            .kept
            .iter()
            .map(|k| k.reason)
            .collect::<Vec<_>>(),
        [KeptReason::Foreign]
    );
    assert_eq!(
        report.warnings(),
        [
            "virtual server 192.168.1.100:443/TCP kept: not provably kube-proxy's (kube-proxy itself would delete it)"
        ]
    );
    assert!(
        apply_ipvs(&node, &c, &Ownership::default())
            .expect("apply")
            .in_sync()
    );
}

#[test]
fn removed_endpoint_with_connections_drains_then_goes() {
    let node = MemoryNode::new();
    let both = web(&[("10.244.1.2", 8080), ("10.244.2.2", 8080)]);
    apply_ipvs(&node, &desired(vec![both.clone()]), &Ownership::default()).expect("apply");
    let gone = kernel_destination(&RealServer::new(ip("10.244.2.2"), 8080));
    let svc = kernel_service(&both).key();
    node.set_ipvs_connections(&svc, &gone, 2, 1).expect("conns");

    let one = desired(vec![web(&[("10.244.1.2", 8080)])]);
    let report = apply_ipvs(&node, &one, &Ownership::default()).expect("apply");
    assert_eq!(
        reals(&node, &both),
        [("10.244.1.2:8080".into(), 1), ("10.244.2.2:8080".into(), 0)]
    );
    assert_eq!(
        report.warnings(),
        [
            "real server 10.244.2.2:8080 of 10.96.0.10:80/TCP draining at weight 0 (2 active, 1 inactive connections)"
        ]
    );
    // Connections still there: nothing written.
    assert!(
        apply_ipvs(&node, &one, &Ownership::default())
            .expect("apply")
            .in_sync()
    );
    // They end: deleted.
    node.set_ipvs_connections(&svc, &gone, 0, 0).expect("conns");
    let report = apply_ipvs(&node, &one, &Ownership::default()).expect("apply");
    assert!(!report.in_sync());
    assert_eq!(reals(&node, &both), [("10.244.1.2:8080".into(), 1)]);
}

#[test]
fn stale_services_and_addresses_go_after_the_rules() {
    let node = MemoryNode::new();
    let old = vs("10.96.0.20", Protocol::Tcp, 80, &[("10.244.1.9", 80)]);
    let keep = web(&[("10.244.1.2", 8080)]);
    let both = desired(vec![keep.clone(), old.clone()]);
    apply_ipvs(&node, &both, &Ownership::default()).expect("apply");
    let mut three = desired(vec![
        keep.clone(),
        old,
        vs("10.96.0.30", Protocol::Tcp, 80, &[]),
    ]);
    apply_ipvs(&node, &three, &Ownership::default()).expect("apply");
    three.virtual_servers.remove(1);
    let three = desired(three.virtual_servers);
    let planned = plan_ipvs_apply(&node, &three, &Ownership::default()).expect("plan");
    assert_eq!(planned.refusal(), None, "1 of 3 deleted");
    let report = planned.write(&node).expect("write");
    assert_eq!(report.ipvs.deleted_services().count(), 1);
    assert!(
        !node
            .addresses(KUBE_IPVS0)
            .expect("a")
            .contains(&ip("10.96.0.20"))
    );
    assert_eq!(node.services().expect("services").len(), 2);

    // Deleting both remaining ones is refused by the guard.
    let planned = plan_ipvs_apply(&node, &desired(vec![]), &Ownership::default()).expect("plan");
    assert!(matches!(
        planned.refusal(),
        Some(Refusal::WipesVirtualServers {
            deleted: 2,
            total: 2,
            ..
        })
    ));
}

#[test]
fn kernel_values_round_trip() {
    let mut v = web(&[("10.244.1.2", 8080)]);
    v.flags = ServiceFlags(ServiceFlags::PERSISTENT | ServiceFlags::SOURCE_HASH);
    v.timeout = 10800;
    v.scheduler = Scheduler::from_config("mh");
    let node = MemoryNode::new();
    node.new_service(&kernel_service(&v)).expect("service");
    node.new_destination(&kernel_service(&v), &kernel_destination(&v.real_servers[0]))
        .expect("dest");
    let s = &node.services().expect("services")[0];
    let back = virtual_server(s, &node.destinations(s).expect("dests")).expect("vs");
    assert_eq!(back.key(), v.key());
    assert_eq!(back.scheduler, v.scheduler);
    assert_eq!(back.flags.0 & !0x2, v.flags.0);
    assert_eq!(back.timeout, 10800);
    assert_eq!(back.real_servers[0].endpoint(), "10.244.1.2:8080");
    assert_eq!(back.real_servers[0].active_connections, Some(0));
    let fw = kpinspect_ipvs::Service::fwmark(kpinspect_ipvs::AF_INET, 1);
    assert_eq!(virtual_server(&fw, &[]), None);
}

#[test]
fn node_parts_delegate() {
    let node = MemoryNode::new();
    let parts = NodeParts {
        rules: &node,
        ipvs: &node,
        links: &node,
    };
    let c = desired(vec![web(&[("10.244.1.2", 8080)])]);
    assert!(
        !apply_ipvs(&parts, &c, &Ownership::default())
            .expect("apply")
            .in_sync()
    );
    assert!(
        apply_ipvs(&node, &c, &Ownership::default())
            .expect("apply")
            .in_sync()
    );
}

/// A UDP virtual server the plan deletes counts as a frontend with no
/// serving endpoint: every conntrack entry to it is stale.
#[test]
fn deleted_udp_virtual_servers_have_no_serving_endpoint() {
    let node = MemoryNode::new();
    let dns = vs("10.96.0.10", Protocol::Udp, 53, &[("10.244.0.11", 53)]);
    apply_ipvs(&node, &desired(vec![dns]), &Ownership::default()).expect("apply");
    let config = ProxyConfig::default();
    let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
    let planned = plan_ipvs_apply(&node, &desired(vec![]), &Ownership::default()).expect("plan");
    assert_eq!(planned.ipvs.deleted_services().count(), 1);
    let serving = planned.serving_endpoints(&state);
    assert_eq!(
        serving.frontends.get(&(ip("10.96.0.10"), 53)),
        Some(&Default::default())
    );
}

/// IPVS and links over a [`MemoryNode`], counting the batches the writer
/// hands over and the single calls it makes.
#[derive(Default)]
struct Counting {
    node: MemoryNode,
    batches: std::cell::RefCell<Vec<String>>,
    single: std::cell::Cell<usize>,
}

impl Counting {
    fn single(&self) {
        self.single.set(self.single.get() + 1);
    }
}

impl Ipvs for Counting {
    fn services(&self) -> Result<Vec<Service>, IpvsError> {
        self.node.services()
    }
    fn destinations(&self, s: &Service) -> Result<Vec<Destination>, IpvsError> {
        self.node.destinations(s)
    }
    fn new_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.single();
        self.node.new_service(s)
    }
    fn set_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.single();
        self.node.set_service(s)
    }
    fn del_service(&self, s: &Service) -> Result<(), IpvsError> {
        self.single();
        self.node.del_service(s)
    }
    fn new_destination(&self, s: &Service, d: &Destination) -> Result<(), IpvsError> {
        self.single();
        self.node.new_destination(s, d)
    }
    fn set_destination(&self, s: &Service, d: &Destination) -> Result<(), IpvsError> {
        self.single();
        self.node.set_destination(s, d)
    }
    fn del_destination(&self, s: &Service, d: &Destination) -> Result<(), IpvsError> {
        self.single();
        self.node.del_destination(s, d)
    }
    fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        self.node.timeouts()
    }
    fn set_timeouts(&self, t: Timeouts) -> Result<(), IpvsError> {
        self.node.set_timeouts(t)
    }
    fn write_all(&self, writes: &[IpvsWrite]) -> Result<(), IpvsError> {
        self.batches
            .borrow_mut()
            .push(format!("ipvs {}", writes.len()));
        self.node.write_all(writes)
    }
}

impl DummyLink for Counting {
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        self.node.link(name)
    }
    fn ensure_dummy(&self, name: &str) -> Result<LinkEnsured, LinkError> {
        self.node.ensure_dummy(name)
    }
    fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        self.node.delete_link(name)
    }
    fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LinkError> {
        self.node.addresses(name)
    }
    fn add_address(&self, name: &str, a: IpAddr) -> Result<AddressAdded, LinkError> {
        self.single();
        self.node.add_address(name, a)
    }
    fn del_address(&self, name: &str, a: IpAddr) -> Result<bool, LinkError> {
        self.single();
        self.node.del_address(name, a)
    }
    fn add_addresses(&self, name: &str, a: &[IpAddr]) -> Result<Vec<AddressAdded>, LinkError> {
        self.batches.borrow_mut().push(format!("bind {}", a.len()));
        self.node.add_addresses(name, a)
    }
    fn del_addresses(&self, name: &str, a: &[IpAddr]) -> Result<Vec<bool>, LinkError> {
        self.batches
            .borrow_mut()
            .push(format!("unbind {}", a.len()));
        self.node.del_addresses(name, a)
    }
}

/// The writer hands every run of address or IPVS writes over as one
/// batch (SystemIpvs and SystemLinks send a batch over one socket, many
/// messages a datagram), in the plan's order; one endpoint changed is two
/// IPVS messages on that virtual server only.
#[test]
fn writes_go_to_the_node_in_batches() {
    let counting = Counting::default();
    let parts = NodeParts {
        rules: &counting.node,
        ipvs: &counting,
        links: &counting,
    };
    let servers: Vec<VirtualServer> = (1..=5)
        .map(|i| {
            vs(
                &format!("10.96.0.{i}"),
                Protocol::Tcp,
                80,
                &[("10.244.1.2", 8080), ("10.244.2.2", 8080)],
            )
        })
        .collect();
    apply_ipvs(&parts, &desired(servers.clone()), &Ownership::default()).expect("apply");
    // 5 virtual servers and 10 real servers; 5 addresses.
    assert_eq!(*counting.batches.borrow(), ["bind 5", "ipvs 15"]);
    assert_eq!(counting.single.get(), 0, "no single calls");
    assert_eq!(counting.node.services().expect("services").len(), 5);

    // One endpoint of the third changes: its new real server added, the
    // old one (no connections) deleted; a stale virtual server and its
    // address go.
    counting.batches.borrow_mut().clear();
    let mut changed = servers.clone();
    changed[2].real_servers[1] = RealServer::new(ip("10.244.3.3"), 8080);
    changed.pop();
    let report =
        apply_ipvs(&parts, &desired(changed.clone()), &Ownership::default()).expect("apply");
    assert_eq!(*counting.batches.borrow(), ["ipvs 2", "unbind 1", "ipvs 1"]);
    let touched: BTreeSet<String> = report
        .ipvs
        .ops
        .iter()
        .filter_map(|o| match o {
            IpvsOp::AddRealServer { service, .. }
            | IpvsOp::SetWeight { service, .. }
            | IpvsOp::DelRealServer { service, .. } => Some(service.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(touched, BTreeSet::from(["10.96.0.3:80/TCP".to_string()]));
    assert_eq!(
        reals(&counting.node, &changed[2]),
        [("10.244.1.2:8080".into(), 1), ("10.244.3.3:8080".into(), 1)]
    );
}

/// A [`MemoryNode`]'s rules and sets whose sets' restore, once started,
/// runs until IPVS holds a virtual server (at most 5 s), as an `ipset
/// restore` process overlapping the IPVS writes does; `fail` makes it fail.
struct SlowSets {
    node: std::sync::Arc<MemoryNode>,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    fail: bool,
}

impl Iptables for SlowSets {
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        Iptables::save(&*self.node, family)
    }
    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        self.log.lock().expect("log").push("iptables".into());
        Iptables::restore(&*self.node, family, payload)
    }
}

impl IpSets for SlowSets {
    fn save(&self) -> Result<String, NodeError> {
        IpSets::save(&*self.node)
    }
    fn restore(&self, payload: &str) -> Result<(), NodeError> {
        IpSets::restore(&*self.node, payload)
    }
    fn start_restore(&self, payload: &str) -> crate::PendingRestore {
        let result = if self.fail {
            Err(NodeError::Restore {
                line: Some(1),
                message: "ipset: no".into(),
            })
        } else {
            IpSets::restore(&*self.node, payload)
        };
        let (node, log) = (self.node.clone(), self.log.clone());
        crate::PendingRestore::spawn(move || {
            let start = std::time::Instant::now();
            let written = || node.services().is_ok_and(|s| !s.is_empty());
            while !written() && start.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            log.lock().expect("log").push(if written() {
                "sets ended after the IPVS writes".into()
            } else {
                "sets ended before any IPVS write".into()
            });
            result
        })
    }
}

/// The sets' restore overlaps the IPVS writes, and ends before the
/// iptables restore (whose rules use the sets); a failing one fails the
/// write before the iptables restore.
#[test]
fn the_sets_restore_overlaps_the_ipvs_writes_and_ends_before_the_rules() {
    for fail in [false, true] {
        let node = std::sync::Arc::new(MemoryNode::new());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sets = SlowSets {
            node: node.clone(),
            log: log.clone(),
            fail,
        };
        let parts = NodeParts {
            rules: &sets,
            ipvs: &*node,
            links: &*node,
        };
        let c = desired(vec![web(&[("10.244.1.2", 8080)])]);
        let result = apply_ipvs(&parts, &c, &Ownership::default());
        let log = log.lock().expect("log").clone();
        if fail {
            let e = result.expect_err("the sets failed");
            assert!(e.to_string().contains("ipset: no"), "{e}");
            assert_eq!(log, ["sets ended after the IPVS writes"]);
        } else {
            result.expect("apply");
            assert_eq!(log, ["sets ended after the IPVS writes", "iptables"]);
        }
    }
}

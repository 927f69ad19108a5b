use super::*;
use crate::mode::ipvs::{Scheduler, ServiceFlags, VirtualServerKind, compile};
use crate::proxy::ProxyState;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn rs(addr: &str, port: u16, active: u64, inactive: u64) -> RealServer {
    RealServer {
        active_connections: Some(active),
        inactive_connections: Some(inactive),
        ..RealServer::new(ip(addr), port)
    }
}

fn vs(addr: &str, protocol: Protocol, port: u16, real: Vec<RealServer>) -> VirtualServer {
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
        real_servers: real,
    }
}

/// As read from a node: no kind, no bind, the kernel's HASHED flag.
fn read(v: &VirtualServer) -> VirtualServer {
    VirtualServer {
        kind: None,
        bind: false,
        flags: ServiceFlags(v.flags.0 | 0x2),
        real_servers: v
            .real_servers
            .iter()
            .map(|r| RealServer {
                active_connections: Some(r.active_connections.unwrap_or(0)),
                inactive_connections: Some(r.inactive_connections.unwrap_or(0)),
                ..r.clone()
            })
            .collect(),
        ..v.clone()
    }
}

/// An empty compile with `servers` and their addresses bound.
fn desired(servers: Vec<VirtualServer>) -> Compiled {
    let config = ProxyConfig::default();
    let state = ProxyState::build(&Cluster::default(), &config, IpFamily::V4);
    let mut c = compile(&state, &config);
    c.addresses = servers
        .iter()
        .filter(|v| v.bind)
        .map(|v| IpNet::from(v.address))
        .collect();
    c.addresses.sort();
    c.addresses.dedup();
    c.virtual_servers = servers;
    c.ipsets
        .iter_mut()
        .find(|s| s.name == "KUBE-CLUSTER-IP")
        .expect("set")
        .entries = c
        .virtual_servers
        .iter()
        .map(|v| IpSetEntry::IpPort {
            ip: v.address,
            protocol: v.protocol,
            port: v.port,
        })
        .collect();
    c
}

/// The node exactly as `c` wants it.
fn node_of(c: &Compiled) -> IpvsNode {
    IpvsNode {
        servers: c.virtual_servers.iter().map(read).collect(),
        sets: c
            .ipsets
            .iter()
            .map(|s| SetText {
                name: s.name.clone(),
                set_type: s.set_type.as_str().into(),
                options: s.create_options(),
                members: s.entries.iter().map(|e| e.to_string()).collect(),
            })
            .collect(),
        bound: c.addresses.iter().map(IpNet::addr).collect(),
    }
}

/// Carries out `p` on `node` as the kernel would.
fn apply(node: &mut IpvsNode, p: &IpvsPlan) {
    for op in &p.ops {
        let find = |node: &mut IpvsNode, k: &ServiceKey| -> usize {
            node.servers
                .iter()
                .position(|v| ServiceKey::of(v) == *k)
                .expect("service")
        };
        match op {
            IpvsOp::CreateSet {
                name,
                set_type,
                options,
            } => node.sets.push(SetText {
                name: name.clone(),
                set_type: set_type.clone(),
                options: options.clone(),
                members: vec![],
            }),
            IpvsOp::AddMember { set, member } => {
                let s = node.sets.iter_mut().find(|s| s.name == *set).expect("set");
                s.members.push(member.clone());
            }
            IpvsOp::DelMember { set, member } => {
                let s = node.sets.iter_mut().find(|s| s.name == *set).expect("set");
                s.members.retain(|m| m != member);
            }
            IpvsOp::Bind(a) => node.bound.push(*a),
            IpvsOp::Unbind(a) => node.bound.retain(|b| b != a),
            IpvsOp::AddService(v) => node.servers.push(read(v)),
            IpvsOp::UpdateService(v) => {
                let i = find(node, &ServiceKey::of(v));
                let n = &mut node.servers[i];
                n.scheduler = v.scheduler.clone();
                n.flags = ServiceFlags(v.flags.0 | 0x2);
                n.timeout = v.timeout;
            }
            IpvsOp::DelService(v) => {
                let i = find(node, &ServiceKey::of(v));
                node.servers.remove(i);
            }
            IpvsOp::AddRealServer { service, server } => {
                let i = find(node, service);
                node.servers[i].real_servers.push(rs(
                    &server.address.to_string(),
                    server.port,
                    0,
                    0,
                ));
            }
            IpvsOp::SetWeight { service, server } => {
                let i = find(node, service);
                let r = node.servers[i]
                    .real_servers
                    .iter_mut()
                    .find(|r| r.address == server.address && r.port == server.port)
                    .expect("real server");
                r.weight = server.weight;
            }
            IpvsOp::DelRealServer { service, server } => {
                let i = find(node, service);
                node.servers[i]
                    .real_servers
                    .retain(|r| !(r.address == server.address && r.port == server.port));
            }
        }
    }
}

fn web() -> VirtualServer {
    vs(
        "10.96.0.10",
        Protocol::Tcp,
        80,
        vec![
            RealServer::new(ip("10.244.1.2"), 8080),
            RealServer::new(ip("10.244.2.2"), 8080),
        ],
    )
}

fn dns() -> VirtualServer {
    vs(
        "10.96.0.53",
        Protocol::Udp,
        53,
        vec![RealServer::new(ip("10.244.1.3"), 53)],
    )
}

#[test]
fn in_sync_is_empty() {
    let c = desired(vec![web(), dns()]);
    let p = plan(&c, &node_of(&c), &Ownership::default());
    assert!(p.is_empty(), "{:#?}", p.ops);
    assert_eq!(p.owned, 2);
    assert_eq!(p.check(), None);
}

#[test]
fn fresh_node_in_kube_proxys_order_then_idempotent() {
    let c = desired(vec![web(), dns()]);
    let mut node = IpvsNode::default();
    let p = plan(&c, &node, &Ownership::default());
    let kinds: Vec<&str> = p
        .ops
        .iter()
        .map(|o| match o {
            IpvsOp::CreateSet { .. } => "create",
            IpvsOp::AddMember { .. } => "member",
            IpvsOp::Bind(_) => "bind",
            IpvsOp::AddService(_) => "service",
            IpvsOp::AddRealServer { .. } => "real",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let mut expected = vec!["create"; 17];
    expected.extend(["member", "member", "bind", "bind"]);
    expected.extend(["service", "real", "real", "service", "real"]);
    assert_eq!(kinds, expected);
    assert!(p.ops.iter().all(|o| !o.after_restore()));
    assert_eq!(p.check(), None, "a fresh node has nothing to lose");
    apply(&mut node, &p);
    let again = plan(&c, &node, &Ownership::default());
    assert!(again.is_empty(), "{:#?}", again.ops);
}

#[test]
fn changed_scheduler_flags_timeout_edit_in_place() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers[0].scheduler = Scheduler::from_config("wrr");
    let p = plan(&c, &node, &Ownership::default());
    assert_eq!(p.ops, vec![IpvsOp::UpdateService(bare(&web()))]);

    let mut sticky = web();
    sticky.flags = ServiceFlags(ServiceFlags::PERSISTENT);
    sticky.timeout = 10800;
    let c2 = desired(vec![sticky.clone()]);
    let p = plan(&c2, &node_of(&c), &Ownership::default());
    assert_eq!(p.ops, vec![IpvsOp::UpdateService(bare(&sticky))]);
    let mut node = node_of(&c);
    apply(&mut node, &p);
    assert!(plan(&c2, &node, &Ownership::default()).is_empty());
}

#[test]
fn removed_tcp_real_server_drains_then_goes() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    let mut fewer = web();
    fewer.real_servers.truncate(1);
    let c2 = desired(vec![fewer]);
    let key = ServiceKey::of(&web());

    // With connections: weight 0, kept.
    node.servers[0].real_servers[1].active_connections = Some(3);
    node.servers[0].real_servers[1].inactive_connections = Some(1);
    let p = plan(&c2, &node, &Ownership::default());
    assert_eq!(
        p.ops,
        vec![IpvsOp::SetWeight {
            service: key,
            server: RealServer {
                weight: 0,
                ..node.servers[0].real_servers[1].clone()
            },
        }]
    );
    assert_eq!(p.draining.len(), 1);
    apply(&mut node, &p);

    // Still connections: nothing to write, still draining.
    node.servers[0].real_servers[1].active_connections = Some(0);
    let p = plan(&c2, &node, &Ownership::default());
    assert!(p.is_empty());
    assert_eq!(p.draining[0].server.weight, 0);

    // None left: deleted.
    node.servers[0].real_servers[1].inactive_connections = Some(0);
    let p = plan(&c2, &node, &Ownership::default());
    assert!(
        matches!(&p.ops[..], [IpvsOp::DelRealServer { server, .. }] if server.address == ip("10.244.2.2"))
    );
    assert!(p.draining.is_empty());
    apply(&mut node, &p);
    assert!(plan(&c2, &node, &Ownership::default()).is_empty());
}

#[test]
fn unknown_connection_counts_drain() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers[0].real_servers[1].active_connections = None;
    let mut fewer = web();
    fewer.real_servers.truncate(1);
    let p = plan(&desired(vec![fewer]), &node, &Ownership::default());
    assert!(matches!(&p.ops[..], [IpvsOp::SetWeight { server, .. }] if server.weight == 0));
}

#[test]
fn removed_udp_and_sctp_real_servers_go_at_once() {
    for protocol in [Protocol::Udp, Protocol::Sctp] {
        let mut v = dns();
        v.protocol = protocol;
        let c = desired(vec![v.clone()]);
        let mut node = node_of(&c);
        node.servers[0].real_servers[0].active_connections = Some(5);
        node.servers[0].real_servers[0].inactive_connections = Some(5);
        v.real_servers.clear();
        let p = plan(&desired(vec![v]), &node, &Ownership::default());
        assert!(
            matches!(&p.ops[..], [IpvsOp::DelRealServer { .. }]),
            "{protocol:?}: {:?}",
            p.ops
        );
        assert!(p.draining.is_empty());
    }
}

#[test]
fn returning_endpoint_gets_weight_back() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers[0].real_servers[1].weight = 0;
    node.servers[0].real_servers[1].active_connections = Some(2);
    let p = plan(&c, &node, &Ownership::default());
    assert!(matches!(&p.ops[..], [IpvsOp::SetWeight { server, .. }] if server.weight == 1));
}

#[test]
fn foreign_virtual_servers_are_kept() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    // keepalived's VIP, a user's on a node IP outside the node-port range.
    node.servers
        .push(read(&vs("192.168.1.100", Protocol::Tcp, 443, vec![])));
    node.servers
        .push(read(&vs("192.168.1.5", Protocol::Tcp, 8443, vec![])));
    // Another family's: not this proxier's business at all.
    node.servers
        .push(read(&vs("fd00::1", Protocol::Tcp, 80, vec![])));
    let owner = Ownership {
        node_ips: vec![ip("192.168.1.5")],
        ..Ownership::default()
    };
    let p = plan(&c, &node, &owner);
    assert!(p.is_empty(), "{:?}", p.ops);
    assert_eq!(
        p.kept
            .iter()
            .map(|k| (k.service.to_string(), k.reason))
            .collect::<Vec<_>>(),
        [
            ("192.168.1.100:443/TCP".to_string(), KeptReason::Foreign),
            ("192.168.1.5:8443/TCP".to_string(), KeptReason::Foreign),
        ]
    );
}

#[test]
fn stale_kube_proxy_virtual_servers_are_deleted() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    // Bound on kube-ipvs0 (a deleted Service's cluster IP).
    node.servers
        .push(read(&vs("10.96.0.20", Protocol::Tcp, 80, vec![])));
    node.bound.push(ip("10.96.0.20"));
    // A service address of the cluster, no longer bound.
    node.servers
        .push(read(&vs("10.96.0.30", Protocol::Tcp, 80, vec![])));
    // A node port on a node IP, with a draining real server: no grace.
    node.servers.push(read(&vs(
        "192.168.1.5",
        Protocol::Tcp,
        30080,
        vec![rs("10.244.1.2", 8080, 4, 0)],
    )));
    let owner = Ownership {
        node_ips: vec![ip("192.168.1.5")],
        service_addresses: [ip("10.96.0.30")].into(),
        ..Ownership::default()
    };
    let p = plan(&c, &node, &owner);
    let deleted: Vec<String> = p.deleted_services().map(|v| v.key()).collect();
    assert_eq!(
        deleted,
        [
            "10.96.0.20:80/TCP",
            "10.96.0.30:80/TCP",
            "192.168.1.5:30080/TCP"
        ]
    );
    assert_eq!(p.ops[0], IpvsOp::Unbind(ip("10.96.0.20")));
    assert!(p.ops.iter().all(|o| o.after_restore()));
    assert!(p.kept.is_empty());
    assert_eq!(p.owned, 4);
    assert_eq!(
        p.check(),
        Some(Refusal::WipesVirtualServers {
            family: IpFamily::V4,
            deleted: 3,
            total: 4
        })
    );
    apply(&mut node, &p);
    assert!(plan(&c, &node, &owner).is_empty());
}

#[test]
fn exclude_cidrs_protect_even_kube_proxys_addresses() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers
        .push(read(&vs("10.96.0.20", Protocol::Tcp, 80, vec![])));
    node.servers
        .push(read(&vs("10.96.1.20", Protocol::Tcp, 80, vec![])));
    let owner = Ownership {
        service_addresses: [ip("10.96.0.20"), ip("10.96.1.20")].into(),
        exclude_cidrs: vec!["10.96.1.0/24".parse().expect("cidr")],
        ..Ownership::default()
    };
    let p = plan(&c, &node, &owner);
    assert_eq!(
        p.deleted_services().map(|v| v.key()).collect::<Vec<_>>(),
        ["10.96.0.20:80/TCP"]
    );
    assert_eq!(
        p.kept,
        [Kept {
            service: ServiceKey::of(&node.servers[2]),
            reason: KeptReason::ExcludeCidrs
        }]
    );
}

#[test]
fn guard_counts_only_kube_proxys_servers() {
    // One desired, one stale of kube-proxy's, many foreign: deleting the
    // stale one is half, not more.
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers
        .push(read(&vs("10.96.0.20", Protocol::Tcp, 80, vec![])));
    node.bound.push(ip("10.96.0.20"));
    for i in 0..5 {
        node.servers.push(read(&vs(
            &format!("172.16.0.{i}"),
            Protocol::Tcp,
            80,
            vec![],
        )));
    }
    let p = plan(&c, &node, &Ownership::default());
    assert_eq!(p.owned, 2);
    assert_eq!(p.deleted_services().count(), 1);
    assert_eq!(p.check(), None);
    assert_eq!(p.kept.len(), 5);
    assert_eq!(
        Refusal::WipesVirtualServers {
            family: IpFamily::V4,
            deleted: 2,
            total: 2
        }
        .to_string(),
        "the plan deletes 2 of the node's 2 IPv4 kube-proxy virtual servers (more than half); --dry-run shows them"
    );
}

#[test]
fn set_members_and_addresses_converge() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    let set = node
        .sets
        .iter_mut()
        .find(|s| s.name == "KUBE-CLUSTER-IP")
        .expect("set");
    set.members.push("10.96.0.99,tcp:80".into());
    // A bound loopback address is not kube-proxy's to unbind.
    node.bound.extend([ip("10.96.0.99"), ip("127.0.0.1")]);
    let p = plan(&c, &node, &Ownership::default());
    assert_eq!(
        p.ops,
        [
            IpvsOp::DelMember {
                set: "KUBE-CLUSTER-IP".into(),
                member: "10.96.0.99,tcp:80".into()
            },
            IpvsOp::Unbind(ip("10.96.0.99")),
        ]
    );
    // Members with options (timeouts, comments) compare by their first word.
    let mut node = node_of(&c);
    for s in &mut node.sets {
        for m in &mut s.members {
            m.push_str(" timeout 0");
        }
    }
    assert!(plan(&c, &node, &Ownership::default()).is_empty());
}

#[test]
fn ops_print_as_commands() {
    let c = desired(vec![web()]);
    let mut node = node_of(&c);
    node.servers[0].real_servers[1].active_connections = Some(1);
    node.servers[0].scheduler = Scheduler::from_config("wrr");
    node.servers
        .push(read(&vs("10.96.0.20", Protocol::Udp, 53, vec![])));
    let mut fewer = web();
    fewer.real_servers.truncate(1);
    let p = plan(&desired(vec![fewer]), &node, &Ownership::default());
    let lines: Vec<String> = p.ops.iter().map(|o| o.to_string()).collect();
    assert_eq!(
        lines,
        [
            "ipvsadm -E -t 10.96.0.10:80 -s rr",
            "ipvsadm -e -t 10.96.0.10:80 -r 10.244.2.2:8080 -m -w 0",
        ],
        "10.96.0.20 is foreign here: {:?}",
        p.kept
    );
    let more = [
        IpvsOp::DelService(vs("10.96.0.20", Protocol::Udp, 53, vec![])),
        IpvsOp::DelRealServer {
            service: ServiceKey::of(&web()),
            server: RealServer::new(ip("fd00::2"), 80),
        },
        IpvsOp::Unbind(ip("fd00::10")),
        IpvsOp::AddMember {
            set: "KUBE-CLUSTER-IP".into(),
            member: "10.96.0.10,tcp:80".into(),
        },
    ];
    assert_eq!(
        more.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        [
            "ipvsadm -D -u 10.96.0.20:53",
            "ipvsadm -d -t 10.96.0.10:80 -r [fd00::2]:80",
            "ip addr del fd00::10/128 dev kube-ipvs0",
            "ipset add KUBE-CLUSTER-IP 10.96.0.10,tcp:80",
        ]
    );
}

/// Every op serializes as an object tagged with `op` (`diff --mode ipvs
/// --format json` prints plans; binds and unbinds once failed to).
#[test]
fn every_op_serializes_as_a_tagged_object() {
    let key = ServiceKey {
        address: ip("10.96.0.10"),
        protocol: Protocol::Tcp,
        port: 80,
    };
    let ops = [
        IpvsOp::Bind(ip("10.96.0.10")),
        IpvsOp::Unbind(ip("fd00::10")),
        IpvsOp::AddService(vs("10.96.0.10", Protocol::Tcp, 80, vec![])),
        IpvsOp::DelRealServer {
            service: key,
            server: rs("10.244.1.2", 8080, 0, 0),
        },
    ];
    let json: Vec<serde_json::Value> = ops
        .iter()
        .map(|o| serde_json::to_value(o).expect("serializes"))
        .collect();
    assert_eq!(
        json[0],
        serde_json::json!({"op": "bind", "address": "10.96.0.10"})
    );
    assert_eq!(
        json[1],
        serde_json::json!({"op": "unbind", "address": "fd00::10"})
    );
    assert_eq!(json[2]["op"], "add_service");
    assert_eq!(json[2]["address"], "10.96.0.10");
    assert_eq!(json[3]["op"], "del_real_server");
    assert_eq!(json[3]["server"]["port"], 8080);
}

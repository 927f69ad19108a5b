//! The random clusters of the property tests (proptest strategies), shared
//! by `kpinspect-core`'s `tests/properties.rs` and `kpinspect-node`'s
//! `tests/properties.rs` (included with `#[path]`): up to five Services
//! (ClusterIP, NodePort or LoadBalancer; one or two TCP or UDP ports;
//! traffic policies, affinity) with up to three endpoints each (ready,
//! local or not, terminating) — Service `i` is `ns{i%2}/svc{i}` on
//! 10.96.0.(i+1), its endpoints 10.244.i.(e+1) on node1 or node2 — and the
//! configuration of node1 (192.168.0.2, cluster CIDR 10.244.0.0/16).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use kpinspect_core::config::{NodeFacts, ProxyConfig};
use kpinspect_core::model::*;
use proptest::prelude::*;

/// An IPv4 address.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// One Service of a random cluster, before it is laid out.
#[derive(Debug, Clone)]
pub struct SvcSpec {
    pub kind: u8,
    pub ports: u8,
    pub udp: bool,
    pub endpoints: Vec<(bool, bool, bool)>,
    pub etp_local: bool,
    pub itp_local: bool,
    pub affinity: bool,
}

/// A random [`SvcSpec`].
pub fn svc_spec() -> impl Strategy<Value = SvcSpec> {
    (
        0u8..3,
        1u8..3,
        any::<bool>(),
        prop::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 0..4),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(kind, ports, udp, endpoints, etp_local, itp_local, affinity)| SvcSpec {
                kind,
                ports,
                udp,
                endpoints,
                etp_local,
                itp_local,
                affinity,
            },
        )
}

/// A cluster from specs: Service `i` is `ns{i%2}/svc{i}` on 10.96.0.(i+1),
/// its endpoints 10.244.i.(e+1) on node1 or node2.
pub fn cluster(specs: &[Option<SvcSpec>]) -> Cluster {
    let mut c = Cluster::default();
    for (i, spec) in specs.iter().enumerate() {
        let Some(s) = spec else { continue };
        let i8 = i as u8;
        let service_type = match s.kind {
            0 => ServiceType::ClusterIp,
            1 => ServiceType::NodePort,
            _ => ServiceType::LoadBalancer,
        };
        let protocol = if s.udp { Protocol::Udp } else { Protocol::Tcp };
        let ports: Vec<ServicePort> = (0..s.ports)
            .map(|p| ServicePort {
                name: format!("p{p}"),
                protocol,
                port: 80 + u16::from(p),
                node_port: if service_type == ServiceType::ClusterIp {
                    0
                } else {
                    30000 + 10 * i as u16 + u16::from(p)
                },
            })
            .collect();
        let namespace = format!("ns{}", i % 2);
        let external = service_type != ServiceType::ClusterIp;
        c.services.push(Service {
            namespace: namespace.clone(),
            name: format!("svc{i}"),
            service_type,
            cluster_ips: vec![v4(10, 96, 0, i8 + 1)],
            ports: ports.clone(),
            external_ips: vec![],
            has_external_ips: false,
            load_balancer_ingress: if service_type == ServiceType::LoadBalancer {
                vec![LoadBalancerIngress {
                    ip: v4(172, 17, 0, i8 + 1),
                    ip_mode: IpMode::Vip,
                }]
            } else {
                vec![]
            },
            load_balancer_source_ranges: vec![],
            external_traffic_policy: if external && s.etp_local {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            internal_traffic_policy: if s.itp_local {
                TrafficPolicy::Local
            } else {
                TrafficPolicy::Cluster
            },
            health_check_node_port: if external && s.etp_local {
                32000 + i as u16
            } else {
                0
            },
            session_affinity_timeout: s.affinity.then_some(10800),
        });
        c.endpoint_slices.push(EndpointSlice {
            namespace,
            name: format!("svc{i}-abcde"),
            service_name: format!("svc{i}"),
            address_type: AddressType::Ipv4,
            ports: ports
                .iter()
                .map(|p| EndpointPort {
                    name: Some(p.name.clone()),
                    port: Some(8000 + p.port),
                    protocol: p.protocol,
                })
                .collect(),
            endpoints: s
                .endpoints
                .iter()
                .enumerate()
                .map(|(e, &(ready, local, terminating))| Endpoint {
                    address: Some(v4(10, 244, i8, e as u8 + 1)),
                    ready: ready && !terminating,
                    serving: ready,
                    terminating,
                    node_name: Some(if local { "node1" } else { "node2" }.into()),
                    zone_hints: vec![],
                    node_hints: vec![],
                })
                .collect(),
        });
    }
    c
}

/// Random clusters of up to five Services (some left out).
pub fn clusters() -> impl Strategy<Value = Cluster> {
    prop::collection::vec(prop::option::weighted(0.8, svc_spec()), 0..6).prop_map(|s| cluster(&s))
}

/// node1's configuration (192.168.0.2, cluster CIDR 10.244.0.0/16).
pub fn config() -> ProxyConfig {
    ProxyConfig::new()
        .with_node(NodeFacts::new("node1").with_ips([v4(192, 168, 0, 2)]))
        .with_cluster_cidrs(["10.244.0.0/16".parse().expect("cidr")])
}

/// Other programs' rules on the node: `n` rules of a user's, a docker-like
/// chain with its jump, each marked `foreign-N`.
pub fn foreign_rules(n: u8) -> String {
    let mut s =
        String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for i in 0..n {
        s.push_str(&format!(
            "-A INPUT -s 1.2.3.{i}/32 -m comment --comment \"foreign-{i}\" -j DROP\n"
        ));
    }
    s.push_str("COMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:DOCKER - [0:0]\n");
    s.push_str("-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment \"foreign-docker\" -j DOCKER\n");
    s.push_str("-A DOCKER -i docker0 -m comment --comment \"foreign-return\" -j RETURN\nCOMMIT\n");
    s
}

//! A synthetic large cluster, shared by the benchmarks and the size tests:
//! `services` services with `endpoints` endpoints each (every fourth a
//! NodePort, every tenth a LoadBalancer); and [`kubectl_cluster`], the
//! objects `kpinspect-gen`'s kubectl JSON reads into (kpinspect-k8s's
//! `tests/gen_model.rs` holds the two to the same model).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use kpinspect_core::config::{NodeFacts, ProxyConfig};
use kpinspect_core::model::*;

pub fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// Service `s`'s type in both clusters: every tenth a LoadBalancer, every
/// other fourth a NodePort.
fn service_type(s: u32) -> ServiceType {
    if s.is_multiple_of(10) {
        ServiceType::LoadBalancer
    } else if s.is_multiple_of(4) {
        ServiceType::NodePort
    } else {
        ServiceType::ClusterIp
    }
}

/// What differs between the two clusters' service `s`.
struct Shape<'a> {
    /// `(name, port, target port)` of each port.
    ports: &'a [(&'a str, u16, u16)],
    /// The `i`th port's node port (when the type has node ports).
    node_port: &'a dyn Fn(usize) -> u16,
    /// The LoadBalancer ingress IP.
    ingress: u32,
    /// The first endpoint's address.
    first_endpoint: u32,
}

/// Pushes service `s` (namespace `ns{s % 100}`, cluster IP 10.96.x.y) and
/// its one EndpointSlice of `endpoints` ready endpoints on nodes
/// `node{e % 50}`.
fn push(c: &mut Cluster, s: u32, endpoints: u32, shape: Shape<'_>) {
    let service_type = service_type(s);
    c.services.push(Service {
        namespace: format!("ns{}", s % 100),
        name: format!("svc{s}"),
        service_type,
        cluster_ips: vec![ip(0x0a60_0000 + s)],
        ports: shape
            .ports
            .iter()
            .enumerate()
            .map(|(i, (name, port, _))| ServicePort {
                name: (*name).into(),
                protocol: Protocol::Tcp,
                port: *port,
                node_port: if service_type == ServiceType::ClusterIp {
                    0
                } else {
                    (shape.node_port)(i)
                },
            })
            .collect(),
        external_ips: vec![],
        has_external_ips: false,
        load_balancer_ingress: if service_type == ServiceType::LoadBalancer {
            vec![LoadBalancerIngress {
                ip: ip(shape.ingress),
                ip_mode: IpMode::Vip,
            }]
        } else {
            vec![]
        },
        load_balancer_source_ranges: vec![],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: 0,
        session_affinity_timeout: None,
    });
    c.endpoint_slices.push(EndpointSlice {
        namespace: format!("ns{}", s % 100),
        name: format!("svc{s}-abcde"),
        service_name: format!("svc{s}"),
        address_type: AddressType::Ipv4,
        ports: shape
            .ports
            .iter()
            .map(|(name, _, target)| EndpointPort {
                name: Some((*name).into()),
                port: Some(*target),
                protocol: Protocol::Tcp,
            })
            .collect(),
        endpoints: (0..endpoints)
            .map(|e| Endpoint {
                address: Some(ip(shape.first_endpoint + e)),
                ready: true,
                serving: true,
                terminating: false,
                node_name: Some(format!("node{}", e % 50)),
                zone_hints: vec![],
                node_hints: vec![],
            })
            .collect(),
    });
}

/// A synthetic cluster of `services` services with `endpoints` endpoints each.
pub fn cluster(services: u32, endpoints: u32) -> Cluster {
    let mut c = Cluster::default();
    for s in 0..services {
        let shape = Shape {
            ports: &[("http", 80, 8080)],
            node_port: &|_| 30000 + (s % 2700) as u16,
            ingress: 0xac11_0000 + s,
            first_endpoint: 0x0af4_0000 + s * endpoints,
        };
        push(&mut c, s, endpoints, shape);
    }
    c
}

/// The model objects of `kpinspect-gen services endpoints`: what
/// `kpinspect compile` reads from the generator's JSON (every tenth
/// service a LoadBalancer with an ingress IP, every other fourth a
/// NodePort; even services one unnamed port 80 → 8080, odd ones `http`
/// 80 → 8080 and `metrics` 9090 → 9090).
pub fn kubectl_cluster(services: u32, endpoints: u32) -> Cluster {
    let mut c = Cluster::default();
    for s in 0..services {
        let ports: &[(&str, u16, u16)] = if s % 2 == 1 {
            &[("http", 80, 8080), ("metrics", 9090, 9090)]
        } else {
            &[("", 80, 8080)]
        };
        let shape = Shape {
            ports,
            node_port: &|i| (30000 + (s * 2) % 2768) as u16 + i as u16,
            ingress: 0xac10_0000 + s,
            first_endpoint: 0x0a80_0000 + s * endpoints,
        };
        push(&mut c, s, endpoints, shape);
    }
    c
}

/// The node of the README's `kpinspect compile` figure: `--hostname n1
/// --node-ip 192.168.0.2 --cluster-cidr 10.128.0.0/9`.
pub fn cli_config() -> ProxyConfig {
    ProxyConfig::new()
        .with_node(NodeFacts::new("n1").with_ips([ip(0xc0a8_0002)]))
        .with_cluster_cidrs(["10.128.0.0/9".parse().expect("cidr")])
}

pub fn config() -> ProxyConfig {
    ProxyConfig::new()
        .with_node(NodeFacts::new("node1").with_ips([ip(0xc0a8_0002)]))
        .with_cluster_cidrs(["10.244.0.0/16".parse().expect("cidr")])
}

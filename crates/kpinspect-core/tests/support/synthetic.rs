//! A synthetic large cluster, shared by the benchmarks and the size tests:
//! `services` services with `endpoints` endpoints each (every fourth a
//! NodePort, every tenth a LoadBalancer).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use kpinspect_core::config::{NodeFacts, ProxyConfig};
use kpinspect_core::model::*;

pub fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

/// A synthetic cluster of `services` services with `endpoints` endpoints each.
pub fn cluster(services: u32, endpoints: u32) -> Cluster {
    let mut c = Cluster::default();
    for s in 0..services {
        let service_type = if s % 10 == 0 {
            ServiceType::LoadBalancer
        } else if s % 4 == 0 {
            ServiceType::NodePort
        } else {
            ServiceType::ClusterIp
        };
        let node_port = if service_type == ServiceType::ClusterIp {
            0
        } else {
            30000 + (s % 2700) as u16
        };
        c.services.push(Service {
            namespace: format!("ns{}", s % 100),
            name: format!("svc{s}"),
            service_type,
            cluster_ips: vec![ip(0x0a60_0000 + s)],
            ports: vec![ServicePort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
                node_port,
            }],
            external_ips: vec![],
            has_external_ips: false,
            load_balancer_ingress: if service_type == ServiceType::LoadBalancer {
                vec![LoadBalancerIngress {
                    ip: ip(0xac11_0000 + s),
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
            ports: vec![EndpointPort {
                name: Some("http".into()),
                port: Some(8080),
                protocol: Protocol::Tcp,
            }],
            endpoints: (0..endpoints)
                .map(|e| Endpoint {
                    address: Some(ip(0x0af4_0000 + s * endpoints + e)),
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
    c
}

pub fn config() -> ProxyConfig {
    ProxyConfig::new()
        .with_node(NodeFacts::new("node1").with_ips([ip(0xc0a8_0002)]))
        .with_cluster_cidrs(["10.244.0.0/16".parse().expect("cidr")])
}

//! # kpinspect-core
//!
//! The pure core of kpinspect: what kube-proxy programs on a Linux node,
//! computed from values, with no I/O. It holds
//!
//! * [`model`]: validated Services and EndpointSlices;
//! * [`config`]: the node's kube-proxy configuration and host facts;
//! * [`proxy`]: what one proxier (one IP family) sees — service ports,
//!   endpoints and kube-proxy's endpoint selection;
//! * [`netfilter`]: the iptables text format and the kernel's semantics of
//!   it, for any program's rules (it knows no `KUBE-` name): rules with
//!   their canonical form, `iptables-save` parsing and rendering, and
//!   `iptables-restore` simulated on a value;
//! * [`nft`]: the nftables text format for any program's table (it knows
//!   no kube-proxy name): objects, a transaction rendered as knftables
//!   renders `nft -f` input, and knftables' in-memory table with its dump;
//! * [`mode`]: kube-proxy's proxy modes, one module each with the same face
//!   (compile, view, what it owns, its jump rules):
//!   [`mode::iptables`] (compiler, chain names, kube-proxy's test normaliser
//!   and jump checker, the per-Service [`dump`](mode::iptables::dump())),
//!   [`mode::ipvs`], [`mode::nftables`] (its first full sync as an
//!   [`nft::Transaction`], kube-proxy's nftables test normaliser);
//! * [`plan`]: desired against actual netfilter state, the minimal restore
//!   payload that converges a node, and selective cleanup — for any mode's
//!   [`Profile`](mode::Profile);
//! * [`trace`]: every way a new connection can go through a node's rules;
//! * [`diff`]: desired against actual, per Service and per chain;
//! * [`golden`]: golden files — a compiled output against a pinned one,
//!   after kube-proxy's normaliser, with a unified diff.
//!
//! Runnable programs (`crates/kpinspect-core/examples/`):
//!
//! * `cargo run -p kpinspect-core --example services -- SAVE`: parse an
//!   `iptables-save` and list its Services with each endpoint's share of
//!   new connections ([`mode::iptables::dump()`]);
//! * `cargo run -p kpinspect-core --example trace -- SAVE SRC DST PORT`:
//!   walk a new connection through it ([`trace::trace()`]).
//!
//! Compiling a cluster file is `kpinspect-k8s`'s `compile` example;
//! planning an apply against an in-memory node and reading the live node
//! are `kpinspect-node`'s `plan_apply` and `live` examples.
//!
//! ```
//! use std::net::IpAddr;
//! use kpinspect_core::model::*;
//! use kpinspect_core::{config::ProxyConfig, mode::iptables, net::IpFamily, proxy::ProxyState};
//!
//! let svc = Service {
//!     namespace: "ns1".into(),
//!     name: "svc1".into(),
//!     service_type: ServiceType::ClusterIp,
//!     cluster_ips: vec!["172.30.0.41".parse().unwrap()],
//!     ports: vec![ServicePort { name: "p80".into(), protocol: Protocol::Tcp, port: 80, node_port: 0 }],
//!     external_ips: vec![],
//!     has_external_ips: false,
//!     load_balancer_ingress: vec![],
//!     load_balancer_source_ranges: vec![],
//!     external_traffic_policy: TrafficPolicy::Cluster,
//!     internal_traffic_policy: TrafficPolicy::Cluster,
//!     health_check_node_port: 0,
//!     session_affinity_timeout: None,
//! };
//! let slice = EndpointSlice {
//!     namespace: "ns1".into(),
//!     name: "svc1-abc".into(),
//!     service_name: "svc1".into(),
//!     address_type: AddressType::Ipv4,
//!     ports: vec![EndpointPort { name: Some("p80".into()), port: Some(80), protocol: Protocol::Tcp }],
//!     endpoints: vec![Endpoint {
//!         address: Some("10.180.0.1".parse::<IpAddr>().unwrap()),
//!         ready: true, serving: true, terminating: false,
//!         node_name: None, zone_hints: vec![], node_hints: vec![],
//!     }],
//! };
//! let cluster = Cluster { services: vec![svc], endpoint_slices: vec![slice] };
//! let config = ProxyConfig::new().with_cluster_cidrs(["10.0.0.0/8".parse().unwrap()]);
//! let state = ProxyState::build(&cluster, &config, IpFamily::V4);
//! let text = iptables::compile(&state, &config).render();
//! assert!(text.contains(
//!     "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80\n"
//! ));
//! assert!(iptables::check_rule_jumps(&text).is_empty());
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod diff;
pub mod excerpt;
mod fasthash;
pub mod golden;
pub mod ipset;
pub mod mode;
pub mod model;
pub mod net;
pub mod netfilter;
pub mod nft;
pub mod plan;
pub mod proxy;
pub mod trace;

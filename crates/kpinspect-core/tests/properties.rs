//! Properties of the core over random clusters (proptest, modest case
//! counts so `cargo test` stays fast):
//!
//! * `diff(x, x)` is empty, and so is the diff of a node a plan brought to x;
//! * `plan(a → b)` applied to a node holding `a` (and other programs'
//!   rules, which must survive untouched) gives a node that diffs clean
//!   against `b` — iptables mode, on the in-memory `Ruleset::restore`;
//! * compile is deterministic and independent of the order of the input's
//!   Services and EndpointSlices (iptables, IPVS and nftables modes);
//! * the probabilities of a traced connection to a service add up to 1;
//! * parse → render → parse is stable for iptables-save, ipset save and
//!   nft -f scripts.

use std::net::{IpAddr, Ipv4Addr};

use kpinspect_core::config::{NodeFacts, ProxyConfig};
use kpinspect_core::ipset;
use kpinspect_core::mode::{ProxyMode, iptables, ipvs, nftables};
use kpinspect_core::model::*;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
use kpinspect_core::nft::parse_script;
use kpinspect_core::plan::{diff, plan};
use kpinspect_core::proxy::ProxyState;
use kpinspect_core::trace::{Packet, TraceOptions, trace};
use proptest::prelude::*;

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// One Service of a random cluster, before it is laid out.
#[derive(Debug, Clone)]
struct SvcSpec {
    kind: u8,
    ports: u8,
    udp: bool,
    endpoints: Vec<(bool, bool, bool)>,
    etp_local: bool,
    itp_local: bool,
    affinity: bool,
}

fn svc_spec() -> impl Strategy<Value = SvcSpec> {
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
fn cluster(specs: &[Option<SvcSpec>]) -> Cluster {
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

fn clusters() -> impl Strategy<Value = Cluster> {
    prop::collection::vec(prop::option::weighted(0.8, svc_spec()), 0..6).prop_map(|s| cluster(&s))
}

fn config() -> ProxyConfig {
    ProxyConfig {
        node: NodeFacts {
            name: "node1".into(),
            ips: vec![v4(192, 168, 0, 2)],
            ..NodeFacts::default()
        },
        cluster_cidrs: vec!["10.244.0.0/16".parse().expect("cidr")],
        ..ProxyConfig::default()
    }
}

fn compile_iptables(c: &Cluster) -> String {
    let config = config();
    iptables::compile(&ProxyState::build(c, &config, IpFamily::V4), &config).render()
}

/// Other programs' rules on the node: `n` rules of a user's, a docker-like
/// chain with its jump, each marked `foreign-N`.
fn foreign(n: u8) -> String {
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

/// The node's `foreign-` rules, in order.
fn foreign_lines(node: &Ruleset) -> Vec<String> {
    node.render()
        .lines()
        .filter(|l| l.contains("foreign-"))
        .map(String::from)
        .collect()
}

/// Brings `node` to `desired` as apply does: the plan, restored with
/// `--noflush`.
fn apply(desired: &Ruleset, node: &mut Ruleset) {
    let p = plan(desired, node, ProxyMode::Iptables.profile());
    node.restore(&p.payload, RestoreFlush::NoFlush)
        .unwrap_or_else(|e| panic!("the plan does not restore: {e}\n{}", p.payload));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn diff_of_a_ruleset_with_itself_is_empty(c in clusters(), n in 0u8..3) {
        // x: a node with kube-proxy's rules of `c` (jump rules included)
        // and other programs' rules.
        let profile = ProxyMode::Iptables.profile();
        let compiled = Ruleset::parse(&compile_iptables(&c)).expect("compiled text parses");
        let mut x = Ruleset::parse(&foreign(n)).expect("foreign parses");
        apply(&compiled, &mut x);
        prop_assert!(diff(&x, &x, profile).is_empty(), "{:?}", diff(&x, &x, profile));
        prop_assert!(diff(&compiled, &x, profile).is_empty());
    }

    #[test]
    fn plan_a_to_b_converges_and_keeps_foreign_rules(
        a in clusters(),
        b in clusters(),
        n in 0u8..4,
    ) {
        let profile = ProxyMode::Iptables.profile();
        let (da, db) = (
            Ruleset::parse(&compile_iptables(&a)).expect("a parses"),
            Ruleset::parse(&compile_iptables(&b)).expect("b parses"),
        );
        let mut node = Ruleset::parse(&foreign(n)).expect("foreign parses");
        let before = foreign_lines(&node);
        apply(&da, &mut node);
        prop_assert!(diff(&da, &node, profile).is_empty(), "a: {:?}", diff(&da, &node, profile));
        prop_assert_eq!(&foreign_lines(&node), &before);
        apply(&db, &mut node);
        prop_assert!(diff(&db, &node, profile).is_empty(), "b: {:?}", diff(&db, &node, profile));
        prop_assert_eq!(&foreign_lines(&node), &before);
        // Nothing left to do.
        prop_assert!(plan(&db, &node, profile).is_empty());
    }

    #[test]
    fn compile_is_deterministic_and_independent_of_input_order(
        c in clusters(),
        seed in any::<u64>(),
    ) {
        let mut shuffled = c.clone();
        shuffle(&mut shuffled.services, seed);
        shuffle(&mut shuffled.endpoint_slices, seed.rotate_left(17));
        let config = config();
        let all = |c: &Cluster| -> Vec<String> {
            let state = ProxyState::build(c, &config, IpFamily::V4);
            let v = ipvs::compile(&state, &config);
            let n = nftables::compile(&state, &config);
            vec![
                iptables::compile(&state, &config).render(),
                v.restore.render(),
                ipvs::ipvsadm_save(&v.virtual_servers),
                ipvs::ipset_save(&v.ipsets),
                ipvs::address_lines(&v.addresses),
                n.render(),
            ]
        };
        let first = all(&c);
        prop_assert_eq!(&first, &all(&c), "compile is not deterministic");
        prop_assert_eq!(&first, &all(&shuffled), "compile depends on input order");
    }

    #[test]
    fn trace_probabilities_of_a_service_add_up_to_one(c in clusters()) {
        let mut c = c;
        for s in &mut c.services {
            // Affinity makes the client's history a condition.
            s.session_affinity_timeout = None;
        }
        let rules = Ruleset::parse(&compile_iptables(&c)).expect("parses");
        for s in &c.services {
            for p in &s.ports {
                let packet = Packet::new(v4(10, 244, 9, 9), s.cluster_ips[0], p.port, p.protocol);
                let t = trace(&rules, &packet, &TraceOptions::default());
                prop_assert!(!t.outcomes.is_empty());
                // Without affinity nothing about this packet is unknown.
                prop_assert!(
                    t.outcomes.iter().all(|o| o.conditions.is_empty()),
                    "{}: {:?}", s.key(), t.outcomes
                );
                let sum: f64 = t.outcomes.iter().map(|o| o.probability).sum();
                prop_assert!((sum - 1.0).abs() < 1e-6, "{}: {sum}: {:?}", s.key(), t.outcomes);
            }
        }
    }

    #[test]
    fn parse_render_parse_is_stable(c in clusters(), n in 0u8..3) {
        // iptables-save: lossless, and stable through restore's re-layout.
        let text = compile_iptables(&c);
        let parsed = Ruleset::parse(&text).expect("parses");
        prop_assert_eq!(&parsed.render(), &text);
        let mut node = Ruleset::parse(&foreign(n)).expect("foreign");
        apply(&parsed, &mut node);
        let saved = node.render();
        let again = Ruleset::parse(&saved).expect("saved layout parses");
        prop_assert_eq!(again.tables(), node.tables());
        prop_assert_eq!(&again.render(), &saved);
        // ipset save.
        let config = config();
        let state = ProxyState::build(&c, &config, IpFamily::V4);
        let v = ipvs::compile(&state, &config);
        let sets_text = ipvs::ipset_save(&v.ipsets);
        let sets = ipset::parse(&sets_text).expect("ipset save parses");
        let rendered = ipset::render_save(&sets);
        prop_assert_eq!(&ipset::parse(&rendered).expect("re-parses"), &sets);
        // nft -f scripts.
        let script = nftables::compile(&state, &config).render();
        let txs = parse_script(&script).expect("the script parses");
        let rendered: String = txs.iter().map(|t| t.render()).collect();
        prop_assert_eq!(&parse_script(&rendered).expect("re-parses"), &txs);
    }
}

/// A seeded Fisher–Yates shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = (seed % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

//! The planner against in-memory tables: every plan, applied to the node's
//! table, must give exactly the desired state, with the fewest operations.

use crate::config::{ProxyConfig, ProxyMode};
use crate::diff::ServiceState;
use crate::model::*;
use crate::net::IpFamily;
use crate::nft::{Chain, Fake, Rule, Transaction};
use crate::plan::{ChainChange, Refusal};
use crate::proxy::ProxyState;

use super::{ElementChange, compile, plan};

fn config() -> ProxyConfig {
    let mut config = ProxyConfig {
        mode: ProxyMode::Nftables,
        cluster_cidrs: vec!["10.0.0.0/8".parse().expect("cidr")],
        service_cidrs: vec!["172.30.0.0/16".parse().expect("cidr")],
        ..ProxyConfig::default()
    };
    config.node.name = "test-node".into();
    config.node.ips = vec!["192.168.0.2".parse().expect("ip")];
    config
}

fn service(name: &str, ip: &str, affinity: Option<u32>) -> Service {
    Service {
        namespace: "ns".into(),
        name: name.into(),
        service_type: ServiceType::NodePort,
        cluster_ips: vec![ip.parse().expect("ip")],
        ports: vec![ServicePort {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: 30000
                + ip.rsplit('.')
                    .next()
                    .and_then(|o| o.parse::<u16>().ok())
                    .unwrap_or(0),
        }],
        external_ips: vec![],
        has_external_ips: false,
        load_balancer_ingress: vec![],
        load_balancer_source_ranges: vec![],
        external_traffic_policy: TrafficPolicy::Cluster,
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: 0,
        session_affinity_timeout: affinity,
    }
}

fn slice(service: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        namespace: "ns".into(),
        name: format!("{service}-abc"),
        service_name: service.into(),
        address_type: AddressType::Ipv4,
        ports: vec![EndpointPort {
            name: Some("p80".into()),
            port: Some(8080),
            protocol: Protocol::Tcp,
        }],
        endpoints: ips
            .iter()
            .map(|ip| Endpoint {
                address: Some(ip.parse().expect("ip")),
                ready: true,
                serving: true,
                terminating: false,
                node_name: None,
                zone_hints: vec![],
                node_hints: vec![],
            })
            .collect(),
    }
}

/// (service, cluster IP, endpoints, affinity timeout)
type Spec<'a> = (&'a str, &'a str, &'a [&'a str], Option<u32>);

fn desired(specs: &[Spec]) -> Fake {
    let cluster = Cluster {
        services: specs
            .iter()
            .map(|(n, ip, _, a)| service(n, ip, *a))
            .collect(),
        endpoint_slices: specs
            .iter()
            .filter(|(_, _, eps, _)| !eps.is_empty())
            .map(|(n, _, eps, _)| slice(n, eps))
            .collect(),
    };
    let config = config();
    compile(&ProxyState::build(&cluster, &config, IpFamily::V4), &config)
        .state()
        .expect("compiled state applies")
}

/// `specs` applied to an empty node with the planner.
fn node(specs: &[Spec]) -> Fake {
    let want = desired(specs);
    let p = plan(&want, None);
    let mut node = Fake::new(want.family(), "kube-proxy", true);
    node.apply(&p.transaction).expect("applies");
    node
}

/// Plans `want` against `node`, applies it and checks the result is
/// `want` and a second plan is empty; returns the plan.
fn converge(want: &Fake, node: &mut Fake) -> super::NftPlan {
    let p = plan(want, Some(node));
    node.apply(&p.transaction)
        .unwrap_or_else(|e| panic!("{e}\n{}", p.transaction.render()));
    assert_eq!(node.dump(), want.dump(), "{}", p.transaction.render());
    let again = plan(want, Some(node));
    assert!(again.is_empty(), "{}", again.transaction.render());
    assert!(again.in_sync());
    p
}

fn lines(tx: &Transaction) -> Vec<String> {
    tx.render().lines().map(String::from).collect()
}

const TWO: Spec = ("a", "172.30.0.41", &["10.180.0.1", "10.180.0.2"], None);
const B: Spec = ("b", "172.30.0.42", &["10.180.0.3"], None);
const C: Spec = ("c", "172.30.0.43", &["10.180.0.4"], Some(10800));

#[test]
fn a_fresh_node_gets_the_whole_state_and_then_nothing() {
    let want = desired(&[TWO, B, C]);
    let mut n = Fake::new(want.family(), "kube-proxy", true);
    let p = converge(&want, &mut n);
    assert!(
        p.services.iter().all(|s| s.state == ServiceState::Missing),
        "{:?}",
        p.services
    );
    assert_eq!(p.services.len(), 3);
    assert!(p.refusal().is_none());
}

#[test]
fn an_endpoint_removed_rewrites_one_chain_and_drops_its_endpoint_chain() {
    let mut n = node(&[TWO, B]);
    let want = desired(&[("a", "172.30.0.41", &["10.180.0.1"], None), B]);
    let p = converge(&want, &mut n);
    let l = lines(&p.transaction);
    // add + flush + 2 rules (masquerade, numgen) of the service chain,
    // flush + delete of the endpoint chain; no element changes.
    assert_eq!(l.len(), 6, "{l:#?}");
    assert_eq!(p.chains_written.len(), 1);
    assert!(p.chains_written[0].starts_with("service-"), "{p:?}");
    assert_eq!(p.chains_deleted.len(), 1);
    assert!(p.chains_deleted[0].ends_with("__10.180.0.2/8080"));
    assert!(l[0].starts_with("add chain ip kube-proxy service-"));
    assert!(
        l[2].starts_with("flush chain ip kube-proxy endpoint-"),
        "stale chains are flushed before the rules"
    );
    assert!(l[5].starts_with("delete chain ip kube-proxy endpoint-"));
    assert!(p.elements.is_empty());
    let a = p
        .services
        .iter()
        .find(|s| s.service == "ns/a:p80")
        .expect("a");
    assert_eq!(a.state, ServiceState::EndpointsDiffer);
    assert_eq!(a.endpoints_removed, ["10.180.0.2:8080"]);
    let b = p
        .services
        .iter()
        .find(|s| s.service == "ns/b:p80")
        .expect("b");
    assert_eq!(b.state, ServiceState::InSync);
}

#[test]
fn a_service_removed_loses_its_chains_elements_and_affinity_sets() {
    let mut n = node(&[TWO, B, C]);
    let want = desired(&[TWO, B]);
    let p = converge(&want, &mut n);
    let c = p
        .services
        .iter()
        .find(|s| s.service == "ns/c:p80")
        .expect("c");
    assert_eq!(c.state, ServiceState::Stale);
    assert!(!n.chain_names().iter().any(|ch| ch.contains("ns/c/")));
    assert!(
        !n.container_names()
            .iter()
            .any(|s| s.starts_with("affinity-"))
    );
    assert!(
        p.transaction
            .render()
            .contains("delete element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 }\n")
    );
    assert!(p.elements.iter().all(|e| e.change == ElementChange::Stale));
    // One of three service ports deleted: allowed; two of three are not.
    assert!(p.refusal().is_none());
    let mut n = node(&[TWO, B, C]);
    let p = plan(&desired(&[B]), Some(&n));
    assert!(
        matches!(
            p.refusal(),
            Some(Refusal::WipesServiceChains {
                deleted: 2,
                total: 3,
                ..
            })
        ),
        "{:?}",
        p.refusal()
    );
    n.apply(&p.transaction).expect("the kernel's order");
}

#[test]
fn losing_all_endpoints_moves_the_elements_to_the_no_endpoint_maps() {
    let mut n = node(&[TWO, B]);
    let want = desired(&[TWO, ("b", "172.30.0.42", &[], None)]);
    let p = converge(&want, &mut n);
    let text = p.transaction.render();
    assert!(text.contains("delete element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 }\n"));
    assert!(text.contains(
        "add element ip kube-proxy no-endpoint-services { 172.30.0.42 . tcp . 80 comment \"ns/b:p80\" : goto reject-chain }\n"
    ));
    let b = p
        .services
        .iter()
        .find(|s| s.service == "ns/b:p80")
        .expect("b");
    assert_eq!(b.state, ServiceState::EndpointsDiffer);
    assert_eq!(b.endpoints_removed, ["10.180.0.3:8080"]);
}

#[test]
fn a_changed_value_is_deleted_then_added() {
    let mut n = node(&[TWO]);
    // Someone pointed the cluster IP elsewhere.
    let mut tx = Transaction::new(n.family(), "kube-proxy", true);
    let e = n.elements("service-ips").expect("map")[0].clone();
    let mut wrong = e.clone();
    wrong.value = vec!["goto reject-chain".into()];
    tx.add(wrong);
    n.apply(&tx).expect("applies");
    let p = converge(&desired(&[TWO]), &mut n);
    assert_eq!(p.transaction.len(), 2, "{}", p.transaction.render());
    assert_eq!(p.elements.len(), 1);
    assert_eq!(p.elements[0].change, ElementChange::Changed);
    assert_eq!(p.elements[0].have, "goto reject-chain");
    let a = &p.services[0];
    assert_eq!(a.state, ServiceState::RulesDiffer, "{a:?}");
}

#[test]
fn skeleton_fixed_only_where_it_differs() {
    let mut n = node(&[TWO]);
    // An older kube-proxy's base chain at another priority, a foreign rule in
    // `services`, and an obsolete base chain.
    let mut tx = Transaction::new(n.family(), "kube-proxy", true);
    tx.delete(Chain::regular("nat-output"));
    tx.add(Chain::base("nat-output", "nat", "output", -90));
    tx.add(Rule::new("nat-output", "jump services"));
    tx.add(Rule::new("services", "counter"));
    tx.add(Chain::base(
        "filter-output-post-dnat",
        "filter",
        "output",
        -90,
    ));
    n.apply(&tx).expect("applies");
    let p = converge(&desired(&[TWO]), &mut n);
    let l = lines(&p.transaction);
    assert_eq!(l[0], "delete chain ip kube-proxy nat-output");
    assert!(l.contains(
        &"add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }".to_string()
    ));
    assert_eq!(p.chains_written, ["nat-output", "services"]);
    assert_eq!(p.chains_deleted, ["filter-output-post-dnat"]);
    let services = p
        .chains
        .iter()
        .find(|c| c.chain == "services")
        .expect("services");
    assert_eq!(services.change, ChainChange::Changed);
    assert_eq!(services.extra, ["counter"]);
    assert!(p.services.iter().all(|s| s.state == ServiceState::InSync));
    assert!(!p.in_sync());
}

#[test]
fn a_set_of_another_type_is_recreated_with_its_elements_and_users() {
    let mut n = node(&[TWO]);
    let mut tx = Transaction::new(n.family(), "kube-proxy", true);
    tx.flush(Chain::regular("cluster-ips-check"));
    tx.delete(crate::nft::Set::new("cluster-ips", ""));
    tx.add(crate::nft::Set::new("cluster-ips", "ipv6_addr"));
    n.apply(&tx).expect("applies");
    let p = converge(&desired(&[TWO]), &mut n);
    assert!(p.chains_written.contains(&"cluster-ips-check".to_string()));
    assert!(p.transaction.render().contains(
        "delete set ip kube-proxy cluster-ips\nadd set ip kube-proxy cluster-ips { type ipv4_addr ;"
    ));
}

#[test]
fn affinity_and_endpoint_changes_together() {
    let mut n = node(&[TWO, C]);
    let want = desired(&[
        ("a", "172.30.0.41", &["10.180.0.2", "10.180.0.9"], Some(60)),
        ("c", "172.30.0.43", &["10.180.0.5"], Some(10800)),
    ]);
    let p = converge(&want, &mut n);
    let a = p
        .services
        .iter()
        .find(|s| s.service == "ns/a:p80")
        .expect("a");
    assert_eq!(a.endpoints_added, ["10.180.0.9:8080"]);
    assert_eq!(a.endpoints_removed, ["10.180.0.1:8080"]);
    assert!(
        n.container_names()
            .iter()
            .filter(|s| s.starts_with("affinity-"))
            .count()
            == 3
    );
    // The line owner names the chain and the Service of a line.
    let (i, _) = p
        .transaction
        .render()
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("add rule") && l.contains("ns/c/"))
        .expect("a rule of c");
    let (chain, svc) = p.line_owner(i + 1).expect("owner");
    assert!(chain.contains("ns/c/tcp/p80"));
    assert_eq!(svc.as_deref(), Some("ns/c:p80"));
}

#[test]
fn a_no_endpoint_elements_line_names_its_service_by_comment() {
    let n = node(&[TWO]);
    let p = plan(&desired(&[TWO, ("b", "172.30.0.42", &[], None)]), Some(&n));
    let (i, _) = p
        .transaction
        .render()
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("add element ip kube-proxy no-endpoint-services"))
        .expect("b has no endpoints");
    assert_eq!(
        p.line_owner(i + 1),
        Some((
            "no-endpoint-services".to_string(),
            Some("ns/b:p80".to_string())
        ))
    );
}

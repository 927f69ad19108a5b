//! nftables mode's read → plan → write cycles against a [`MemoryNode`]:
//! repeated applies, a scale-down and a deleted Service, a refused
//! transaction, the wipe guard, and the cleanup of the `kube-proxy` tables
//! next to another program's table.

use std::path::PathBuf;

use kpinspect_core::config::{ProxyConfig, ProxyMode};
use kpinspect_core::diff::ServiceState;
use kpinspect_core::mode::nftables::{self, Compiled};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::IpFamily;
use kpinspect_core::nft::Family;
use kpinspect_core::plan::Refusal;
use kpinspect_core::proxy::ProxyState;

use kpinspect_node::{
    MemoryNode, NftError, NftSyncError, Nftables, apply_nft, kube_proxy_state, plan_nft_apply,
    plan_nft_cleanup, read_kube_proxy_table,
};

const ROUTED: &str = "fixtures/routed/cluster.yaml";
/// routed/web scaled from three endpoints to two, routed/np deleted.
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";

fn read(rel: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn config() -> ProxyConfig {
    let mut config = ProxyConfig::default();
    let name = "fixtures/routed/config.yaml";
    kpinspect_k8s::parse_kube_proxy_config(&read(name), name)
        .expect("config")
        .apply_to(&mut config)
        .expect("config applies");
    config.mode = ProxyMode::Nftables;
    config.node.ips.push("192.168.0.2".parse().expect("ip"));
    config
}

fn cluster(rel: &str) -> Cluster {
    kpinspect_k8s::load_objects(&read(rel), rel)
        .expect("cluster")
        .finish()
        .0
}

fn desired(rel: &str) -> Compiled {
    let config = config();
    nftables::compile(
        &ProxyState::build(&cluster(rel), &config, IpFamily::V4),
        &config,
    )
}

fn nft_writes(node: &MemoryNode) -> usize {
    node.nft_scripts().len()
}

/// Another program's table with a rule; its listing.
fn foreign(node: &MemoryNode) -> String {
    node.apply(
        "add table inet filter
         add chain inet filter input { type filter hook input priority 0 ; }
         add rule inet filter input tcp dport 22 accept
",
    )
    .expect("foreign table");
    node.list_table(Family::Inet, "filter")
        .expect("lists")
        .expect("exists")
}

fn kube_proxy_table(node: &MemoryNode) -> Option<String> {
    read_kube_proxy_table(node, Family::Ip)
        .expect("reads")
        .map(|f| f.dump())
}

#[test]
fn apply_converges_and_a_second_apply_writes_nothing() {
    let node = MemoryNode::new();
    let other = foreign(&node);
    let want = desired(ROUTED);
    let report = apply_nft(&node, &want).expect("applies");
    assert!(!report.in_sync());
    assert_eq!(
        kube_proxy_table(&node),
        Some(want.state().expect("state").dump())
    );
    let before = nft_writes(&node);
    let report = apply_nft(&node, &want).expect("applies");
    assert!(report.in_sync(), "{report}");
    assert_eq!(nft_writes(&node), before, "nothing written");

    // Scale web down and delete np: only their chains and elements change.
    let scaled = desired(SCALED);
    let planned = plan_nft_apply(&node, &scaled).expect("plans");
    let states: Vec<(String, ServiceState)> = planned
        .plan
        .services
        .iter()
        .map(|s| (s.service.clone(), s.state))
        .collect();
    assert!(
        states
            .iter()
            .any(|(_, s)| *s == ServiceState::EndpointsDiffer),
        "{states:?}"
    );
    assert!(
        states.iter().any(|(_, s)| *s == ServiceState::Stale),
        "{states:?}"
    );
    assert!(planned.refusal().is_none());
    let text = planned.text();
    assert!(!text.contains("add table"), "{text}");
    assert!(
        text.lines()
            .all(|l| !l.starts_with("add chain ip kube-proxy services")),
        "{text}"
    );
    let report = planned.write(&node).expect("applies");
    assert!(report.to_string().starts_with("IPv4: applied "), "{report}");
    assert!(apply_nft(&node, &scaled).expect("applies").in_sync());
    assert_eq!(
        node.list_table(Family::Inet, "filter").expect("lists"),
        Some(other)
    );
}

#[test]
fn a_refused_line_names_its_chain_and_service_and_changes_nothing() {
    let node = MemoryNode::new();
    apply_nft(&node, &desired(SCALED)).expect("applies");
    let before = kube_proxy_table(&node);
    let want = desired(ROUTED);
    let text = plan_nft_apply(&node, &want).expect("plans").text();
    let (n, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("add rule ip kube-proxy endpoint-") && l.contains("dnat to"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .expect("an endpoint rule");
    node.fail_next_nft(NftError::Refused {
        line: Some(n),
        message: format!(
            "/dev/stdin:{n}:1-4: Error: Could not process rule: Operation not supported"
        ),
    });
    let err = apply_nft(&node, &want).expect_err("refused");
    let NftSyncError::Refused(r) = &err else {
        panic!("{err}")
    };
    assert_eq!(r.text.as_deref(), Some(line.as_str()));
    assert!(
        r.object
            .as_deref()
            .is_some_and(|o| o.starts_with("endpoint-")),
        "{err}"
    );
    assert!(
        r.service.as_deref().is_some_and(|s| s.contains('/')),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert_eq!(msg.lines().count(), 1);
    assert_eq!(kube_proxy_table(&node), before);
    // The next apply converges.
    apply_nft(&node, &want).expect("applies");
    assert!(apply_nft(&node, &want).expect("applies").in_sync());
}

#[test]
fn a_plan_deleting_most_services_is_refused() {
    let node = MemoryNode::new();
    apply_nft(&node, &desired(ROUTED)).expect("applies");
    let config = config();
    let empty = nftables::compile(
        &ProxyState::build(&Cluster::default(), &config, IpFamily::V4),
        &config,
    );
    let planned = plan_nft_apply(&node, &empty).expect("plans");
    assert!(
        matches!(planned.refusal(), Some(Refusal::WipesServiceChains { .. })),
        "{:?}",
        planned.refusal()
    );
}

#[test]
fn cleanup_deletes_only_the_kube_proxy_tables() {
    let node = MemoryNode::new();
    let other = foreign(&node);
    let planned = plan_nft_cleanup(&node, None).expect("plans");
    assert!(planned.is_empty());
    apply_nft(&node, &desired(ROUTED)).expect("applies");
    let planned = plan_nft_cleanup(&node, None).expect("plans");
    assert_eq!(planned.tables, [Family::Ip]);
    assert_eq!(
        planned.commands(),
        "# nft -f -\ndelete table ip kube-proxy\n"
    );
    assert_eq!(
        planned.to_string(),
        "would remove nftables table ip kube-proxy\n"
    );
    let done = planned.write(&node).expect("removes");
    assert_eq!(done.to_string(), "removed nftables table ip kube-proxy\n");
    assert_eq!(
        node.list_table(Family::Ip, "kube-proxy").expect("lists"),
        None
    );
    assert_eq!(
        node.list_table(Family::Inet, "filter").expect("lists"),
        Some(other)
    );
    assert!(plan_nft_cleanup(&node, None).expect("plans").is_empty());
}

/// kube-proxy's TestOverallNFTablesRules state as nft 1.0.6 lists it
/// (fixtures/nftables-save/overall.json, loaded from the compiled
/// transaction) reads back equal to the compiled state: the planner
/// sees nothing to write, and a changed listing is seen.
#[test]
fn the_overall_fixture_as_nft_lists_it_is_in_sync() {
    let mut config = ProxyConfig::default();
    let name = "fixtures/nftables/overall/config.yaml";
    kpinspect_k8s::parse_kube_proxy_config(&read(name), name)
        .expect("config")
        .apply_to(&mut config)
        .expect("config applies");
    config.mode = ProxyMode::Nftables;
    config.node.ips = vec!["192.168.0.2".parse().expect("ip")];
    config.nftables.masquerade_mark = Some("0x4000".into());
    config.service_cidrs = vec!["172.30.0.0/16".parse().expect("cidr")];
    let want = nftables::compile(
        &ProxyState::build(
            &cluster("fixtures/nftables/overall/cluster.yaml"),
            &config,
            IpFamily::V4,
        ),
        &config,
    )
    .state()
    .expect("state");
    let json = read("fixtures/nftables-save/overall.json");
    let actual = kube_proxy_state(&json, Family::Ip)
        .expect("reads")
        .expect("kube-proxy table");
    let p = nftables::plan(&want, Some(&actual));
    assert!(p.is_empty(), "{}\n{:#?}", p.transaction.render(), p.chains);
    assert!(p.in_sync(), "{:?}", p.services);
    assert_eq!(p.services.len(), 6, "{:?}", p.services);

    // One endpoint chain changed on the node: seen and rewritten alone.
    let edited = json.replacen(
        "\"dnat\": {\"addr\": \"10.180.0.1\", \"port\": 80}",
        "\"dnat\": {\"addr\": \"10.180.0.9\", \"port\": 80}",
        1,
    );
    assert_ne!(edited, json, "the fixture has svc1's endpoint");
    let actual = kube_proxy_state(&edited, Family::Ip)
        .expect("reads")
        .expect("kube-proxy table");
    let p = nftables::plan(&want, Some(&actual));
    assert_eq!(p.transaction.len(), 4, "{}", p.transaction.render());
    assert_eq!(p.chains_written.len(), 1);
    assert!(p.chains_written[0].ends_with("__10.180.0.1/80"));
    assert_eq!(
        p.chains[0].extra,
        ["meta l4proto tcp dnat to 10.180.0.9:80"]
    );
    let svc1 = p
        .services
        .iter()
        .find(|s| s.service == "ns1/svc1:p80")
        .expect("svc1");
    assert_eq!(svc1.state, ServiceState::RulesDiffer);
}

/// kube-proxy's conntrack reconciler after an nftables sync: a UDP
/// Service deleted from the cluster is still in the node's maps before the
/// write, so its frontend and node port are listed with no endpoint.
#[test]
fn a_deleted_udp_service_leaves_stale_conntrack_frontends() {
    let udp = |rel: &str| {
        let text = read(rel).replace("protocol: TCP", "protocol: UDP");
        kpinspect_k8s::load_objects(&text, rel)
            .expect("cluster")
            .finish()
            .0
    };
    let config = config();
    let compile = |c: &Cluster| {
        let state = ProxyState::build(c, &config, IpFamily::V4);
        (nftables::compile(&state, &config), state)
    };
    let node = MemoryNode::new();
    apply_nft(&node, &compile(&udp(ROUTED)).0).expect("applies");
    let (want, state) = compile(&udp(SCALED));
    let planned = plan_nft_apply(&node, &want).expect("plans");
    let serving = planned.serving_endpoints(&state);
    let np: std::net::IpAddr = "172.30.0.20".parse().expect("ip");
    assert_eq!(serving.frontends.get(&(np, 81)).map(|s| s.len()), Some(0));
    assert_eq!(serving.node_ports.get(&30080).map(|s| s.len()), Some(0));
    let web: std::net::IpAddr = "172.30.0.10".parse().expect("ip");
    assert_eq!(serving.frontends.get(&(web, 80)).map(|s| s.len()), Some(2));
}

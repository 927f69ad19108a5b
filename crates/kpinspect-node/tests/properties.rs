//! Plan properties of the three modes over random clusters (proptest; the
//! strategy is the core's, `kpinspect-core/tests/support/clusters.rs`), on
//! [`MemoryNode`] with other programs' state mixed in:
//!
//! * iptables mode: [`apply`] of `a`, then of `b` (whole, or in pieces of
//!   1–8 lines), to a node holding other programs' rules gives a node that
//!   diffs clean against `b` and whose next apply writes nothing; the
//!   other rules are byte-identical throughout (the core's
//!   `tests/properties.rs` holds the same for the plan alone, on
//!   `Ruleset::restore`);
//! * IPVS mode: `plan(a → b)` written to a node holding `a` (applied
//!   before) gives a node equal to one that only ever applied `b` — its
//!   virtual and real servers, kube-proxy's ipsets, `kube-ipvs0`'s
//!   addresses and IPVS mode's rules — and plans nothing more; a
//!   keepalived-style virtual server with its real server, a fwmark
//!   service, another program's ipset and iptables rules are
//!   byte-identical throughout;
//! * nftables mode: the same for the `ip kube-proxy` table (equal to a
//!   fresh compile of `b`), with another program's `inet` table and chains
//!   in an `ip` table of its own listed byte-identical throughout.

#[path = "../../kpinspect-core/tests/support/clusters.rs"]
mod clusters;

use clusters::{clusters, config};
use kpinspect_core::config::ProxyMode;
use kpinspect_core::ipset;
use kpinspect_core::mode::foreign_state;
use kpinspect_core::mode::ipvs::{
    self, Ownership, RealServer, Scheduler, ServiceFlags, VirtualServer,
};
use kpinspect_core::mode::nftables;
use kpinspect_core::model::{Cluster, Protocol};
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::nft::Family;
use kpinspect_core::plan::diff;
use kpinspect_core::proxy::ProxyState;
use kpinspect_node::kpinspect_ipvs::{AF_INET, Destination, Service};
use kpinspect_node::{
    Desired, DummyLink, IpSets, Iptables, Ipvs, KUBE_IPVS0, MemoryNode, Nftables, apply,
    apply_ipvs, apply_nft, destination_name, kernel_destination, kernel_service, plan_ipvs_apply,
    plan_nft_apply, read_kube_proxy_table, read_rules, service_name,
};
use proptest::prelude::*;

const V4: IpFamily = IpFamily::V4;

/// A node holding other programs' IPVS-related state: a keepalived-style
/// virtual server with a real server, a fwmark service, an ipset with `n`
/// members, and [`clusters::foreign_rules`].
fn ipvs_node(n: u8) -> MemoryNode {
    let node = MemoryNode::new()
        .with_iptables(V4, &clusters::foreign_rules(n))
        .expect("foreign rules");
    let keepalived = kernel_service(&VirtualServer {
        address: "192.168.1.100".parse().expect("ip"),
        protocol: Protocol::Tcp,
        port: 443,
        scheduler: Scheduler::default(),
        flags: ServiceFlags::default(),
        timeout: 0,
        kind: None,
        service: None,
        bind: false,
        real_servers: Vec::new(),
    });
    node.new_service(&keepalived).expect("foreign service");
    let real = RealServer::new("10.0.0.5".parse().expect("ip"), 443);
    node.new_destination(&keepalived, &kernel_destination(&real))
        .expect("foreign real server");
    node.new_service(&Service::fwmark(AF_INET, 7).scheduler("rr"))
        .expect("fwmark service");
    let mut sets =
        String::from("create FOREIGN-ALLOW hash:ip family inet hashsize 1024 maxelem 65536\n");
    for i in 0..n {
        sets.push_str(&format!("add FOREIGN-ALLOW 1.2.3.{i}\n"));
    }
    IpSets::restore(&node, &sets).expect("foreign set");
    node
}

/// A virtual server by name, as the kernel holds it, with its real servers
/// by name.
type VirtualServerState = (String, Service, Vec<(String, Destination)>);

/// The node's virtual servers with their real servers, sorted by name
/// (the kernel lists them in the order they were added).
fn ipvs_state(node: &MemoryNode) -> Vec<VirtualServerState> {
    let mut out: Vec<_> = node
        .services()
        .expect("services")
        .into_iter()
        .map(|s| {
            let mut dests: Vec<_> = node
                .destinations(&s)
                .expect("destinations")
                .into_iter()
                .map(|d| (destination_name(&d), d))
                .collect();
            dests.sort_by(|a, b| a.0.cmp(&b.0));
            (service_name(&s), s, dests)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Other programs' virtual servers, as the node holds them.
fn foreign_ipvs(node: &MemoryNode) -> Vec<VirtualServerState> {
    ipvs_state(node)
        .into_iter()
        .filter(|(name, ..)| name == "TCP 192.168.1.100:443" || name.starts_with("FWM "))
        .collect()
}

/// The sets as `ipset save` text, each set's members sorted (the order
/// they were added in is the plan's, not the state's).
fn sets(node: &MemoryNode) -> Vec<(String, String, String, Vec<String>)> {
    let mut sets: Vec<_> = ipset::parse_save(&IpSets::save(node).expect("ipset save"))
        .expect("parses")
        .into_iter()
        .map(|mut s| {
            s.members.sort();
            (s.name, s.set_type, s.options, s.members)
        })
        .collect();
    sets.sort();
    sets
}

/// Another program's sets' lines, byte for byte.
fn foreign_sets(node: &MemoryNode) -> Vec<String> {
    IpSets::save(node)
        .expect("ipset save")
        .lines()
        .filter(|l| l.contains("FOREIGN-"))
        .map(String::from)
        .collect()
}

fn bound(node: &MemoryNode) -> Vec<std::net::IpAddr> {
    let mut a = node.addresses(KUBE_IPVS0).unwrap_or_default();
    a.sort();
    a
}

fn compile_ipvs(c: &Cluster) -> ipvs::Compiled {
    let mut config = config();
    config.mode = ProxyMode::Ipvs;
    ipvs::compile(&ProxyState::build(c, &config, V4), &config)
}

fn compile_nft(c: &Cluster) -> nftables::Compiled {
    let mut config = config();
    config.mode = ProxyMode::Nftables;
    nftables::compile(&ProxyState::build(c, &config, V4), &config)
}

/// Another program's nftables state: an `inet filter` table with a base
/// chain and `n` rules, and chains of its own in an `ip fw` table (the
/// family of kube-proxy's table).
const FOREIGN_TABLES: [(Family, &str); 2] = [(Family::Inet, "filter"), (Family::Ip, "fw")];

fn nft_node(n: u8) -> MemoryNode {
    let node = MemoryNode::new();
    let mut script = String::from(
        "add table inet filter\n\
         add chain inet filter input { type filter hook input priority 0 ; }\n\
         add table ip fw { comment \"another program\" ; }\n\
         add chain ip fw pre { type nat hook prerouting priority -110 ; }\n\
         add chain ip fw allow\n\
         add set ip fw blocked { type ipv4_addr ; }\n\
         add rule ip fw pre ip saddr @blocked drop\n\
         add rule ip fw pre jump allow\n",
    );
    for i in 0..n {
        script.push_str(&format!(
            "add rule inet filter input tcp dport {} accept\nadd element ip fw blocked {{ 1.2.3.{i} }}\nadd rule ip fw allow ip saddr 5.6.7.{i} accept\n",
            22 + u16::from(i)
        ));
    }
    node.apply(&script).expect("foreign tables");
    node
}

fn foreign_tables(node: &MemoryNode) -> Vec<Option<String>> {
    FOREIGN_TABLES
        .iter()
        .map(|(family, table)| node.list_table(*family, table).expect("lists"))
        .collect()
}

/// A table's dump with its elements sorted (a set's or map's elements
/// are dumped in the order they were added, which is the plan's); the
/// rest, rules in their order included, as dumped.
fn elements_sorted(dump: &str) -> Vec<String> {
    let (mut elements, mut rest): (Vec<String>, Vec<String>) = dump
        .lines()
        .map(String::from)
        .partition(|l| l.starts_with("add element "));
    elements.sort();
    rest.extend(elements);
    rest
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn iptables_apply_a_then_b_diffs_clean_and_keeps_foreign_rules(
        a in clusters(),
        b in clusters(),
        n in 0u8..4,
        pieces in proptest::option::of(1usize..9),
    ) {
        let config = config();
        let desired = |c: &Cluster| {
            Desired::compile(ProxyState::build(c, &config, V4), &config).expect("compiles")
        };
        let (da, db) = (desired(&a), desired(&b));
        // Written whole, or in pieces of 1 to 8 lines (new chains built,
        // linked, stale chains deleted: `Plan::pieces`).
        let mut node = MemoryNode::new()
            .with_iptables(V4, &clusters::foreign_rules(n))
            .expect("foreign rules");
        if let Some(lines) = pieces {
            node = node.with_restore_batch_lines(lines);
        }
        // Other programs' state, but for kubelet's KUBE-FIREWALL, which
        // kube-proxy writes too (localhostNodePorts): apply adds it.
        let others = |node: &MemoryNode| {
            let save = Iptables::save(node, V4).expect("saves");
            let mut lines = foreign_state(&Ruleset::parse(&save).expect("parses"));
            lines.retain(|l| !l.contains("KUBE-FIREWALL"));
            lines
        };
        let before = others(&node);
        let profile = ProxyMode::Iptables.profile();
        for want in [&da, &db] {
            apply(&node, want).expect("applies");
            let have = read_rules(&node, V4).expect("reads").rules;
            let d = diff(&want.rules, &have, profile);
            prop_assert!(d.is_empty(), "{:?}", d);
            prop_assert_eq!(&others(&node), &before);
        }
        prop_assert!(apply(&node, &db).expect("applies again").in_sync());
    }

    #[test]
    fn ipvs_plan_a_to_b_equals_a_fresh_b_and_keeps_foreign_state(
        a in clusters(),
        b in clusters(),
        n in 0u8..3,
    ) {
        let (ca, cb) = (compile_ipvs(&a), compile_ipvs(&b));
        let config = config();
        let node = ipvs_node(n);
        let (vs, sets_before, rules) = (
            foreign_ipvs(&node),
            foreign_sets(&node),
            foreign_state(&node.ruleset(V4)),
        );
        prop_assert_eq!(vs.len(), 2);
        apply_ipvs(&node, &ca, &Ownership::new(&config, &a)).expect("applies a");
        apply_ipvs(&node, &cb, &Ownership::new(&config, &b)).expect("applies b");

        let fresh = ipvs_node(n);
        apply_ipvs(&fresh, &cb, &Ownership::new(&config, &b)).expect("applies b fresh");
        prop_assert_eq!(ipvs_state(&node), ipvs_state(&fresh));
        prop_assert_eq!(sets(&node), sets(&fresh));
        prop_assert_eq!(bound(&node), bound(&fresh));
        let profile = ProxyMode::Ipvs.profile();
        let (have, want) = (node.ruleset(V4), fresh.ruleset(V4));
        prop_assert!(diff(&want, &have, profile).is_empty(), "{:?}", diff(&want, &have, profile));
        prop_assert_eq!(have.tables().len(), want.tables().len());
        let again = plan_ipvs_apply(&node, &cb, &Ownership::new(&config, &b)).expect("plans");
        prop_assert!(again.is_empty(), "{:?} {}", again.ipvs.ops, again.rules.payload);

        prop_assert_eq!(foreign_ipvs(&node), vs);
        prop_assert_eq!(foreign_sets(&node), sets_before);
        prop_assert_eq!(foreign_state(&node.ruleset(V4)), rules);
    }

    #[test]
    fn nftables_plan_a_to_b_equals_a_fresh_compile_and_keeps_foreign_tables(
        a in clusters(),
        b in clusters(),
        n in 0u8..3,
    ) {
        let (ca, cb) = (compile_nft(&a), compile_nft(&b));
        let node = nft_node(n);
        let others = foreign_tables(&node);
        prop_assert!(others.iter().all(Option::is_some));
        apply_nft(&node, &ca).expect("applies a");
        apply_nft(&node, &cb).expect("applies b");
        let table = read_kube_proxy_table(&node, Family::Ip)
            .expect("reads")
            .map(|f| elements_sorted(&f.dump()));
        prop_assert_eq!(table, Some(elements_sorted(&cb.state().expect("b's state").dump())));
        let again = plan_nft_apply(&node, &cb).expect("plans");
        prop_assert!(again.is_empty(), "{}", again.text());
        prop_assert_eq!(foreign_tables(&node), others);
    }
}

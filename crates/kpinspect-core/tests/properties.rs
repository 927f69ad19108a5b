//! Properties of the core over random clusters (proptest, modest case
//! counts so `cargo test` stays fast):
//!
//! * `diff(x, x)` is empty, and so is the diff of a node a plan brought to x;
//! * `plan(a → b)` applied to a node holding `a` (and other programs'
//!   rules, which must survive untouched) gives a node that diffs clean
//!   against `b` — iptables mode, on the in-memory `Ruleset::restore`
//!   (IPVS and nftables modes: `kpinspect-node`'s `tests/properties.rs`,
//!   on `MemoryNode`; the random clusters of both are
//!   `tests/support/clusters.rs`);
//! * compile is deterministic and independent of the order of the input's
//!   Services and EndpointSlices (iptables, IPVS and nftables modes);
//! * the probabilities of a traced connection to a service add up to 1;
//! * parse → render → parse is stable for iptables-save, ipset save and
//!   nft -f scripts.

#[path = "support/clusters.rs"]
mod clusters;

use clusters::{clusters, config, v4};
use kpinspect_core::ipset;
use kpinspect_core::mode::{ProxyMode, iptables, ipvs, nftables};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
use kpinspect_core::nft::parse_script;
use kpinspect_core::plan::{diff, plan};
use kpinspect_core::proxy::ProxyState;
use kpinspect_core::trace::{Packet, TraceOptions, trace};
use proptest::prelude::*;

fn compile_iptables(c: &Cluster) -> String {
    let config = config();
    iptables::compile(&ProxyState::build(c, &config, IpFamily::V4), &config).render()
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
        let mut x = Ruleset::parse(&clusters::foreign_rules(n)).expect("foreign parses");
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
        let mut node = Ruleset::parse(&clusters::foreign_rules(n)).expect("foreign parses");
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
        let mut node = Ruleset::parse(&clusters::foreign_rules(n)).expect("foreign");
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

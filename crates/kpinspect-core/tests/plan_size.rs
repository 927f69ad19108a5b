//! The size of what `apply` writes: kube-proxy rewrites every chain on a
//! sync (34 MB for 10,000 services × 10 endpoints, 6.8 MB for the 2,000 here);
//! kpinspect's plan for one changed endpoint is about 1.5 KB, whatever the
//! cluster's size (the bench `plan_one_endpoint_change_10k_services` times
//! it on 10,000 services).

mod support;

use kpinspect_core::mode::{ProxyMode, iptables};
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
use kpinspect_core::plan::plan;
use kpinspect_core::proxy::ProxyState;
use support::synthetic::{cluster, config, ip};

#[test]
fn one_endpoint_change_is_a_small_payload() {
    let config = config();
    let before = cluster(2_000, 10);
    let mut after = before.clone();
    after.endpoint_slices[1234].endpoints[3].address = Some(ip(0x0b00_0001));
    let text =
        |c| iptables::compile(&ProxyState::build(c, &config, IpFamily::V4), &config).render();
    let (old, new) = (text(&before), text(&after));
    // The node as kube-proxy left it: the old rules and its jump rules.
    let mut node = Ruleset::parse(&old).expect("parse");
    let jumps = plan(&node.clone(), &node, ProxyMode::Iptables.profile()).payload;
    node.restore(&jumps, RestoreFlush::NoFlush).expect("jumps");
    let plan = plan(
        &Ruleset::parse(&new).expect("parse"),
        &node,
        ProxyMode::Iptables.profile(),
    );
    eprintln!(
        "full restore {} bytes; plan {} bytes:\n{}",
        new.len(),
        plan.payload.len(),
        plan.payload
    );
    assert!(
        new.len() > 6_000_000,
        "the full restore is {} bytes",
        new.len()
    );
    // The service's SVC chain is rewritten (new probabilities), the old SEP
    // chain is deleted and a new one written: nothing else.
    assert!(
        plan.payload.len() < 2_000,
        "{} bytes:\n{}",
        plan.payload.len(),
        plan.payload
    );
    assert_eq!(plan.chains_deleted.len(), 1);
    assert!(!plan.payload.contains("KUBE-SERVICES"));
}

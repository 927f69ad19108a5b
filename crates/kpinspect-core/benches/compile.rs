//! Compile speed on a large cluster: 10,000 services × 10 endpoints (every
//! fourth a NodePort, every tenth a LoadBalancer), about 400k rules in
//! iptables mode; in IPVS mode a virtual server per cluster IP, ingress IP
//! and node port, each with its real servers, and the ipset members
//! (about 250 ms on the 2-core development machine); in nftables mode the
//! `nft -f` transaction and its normalised state.
//!
//! Run with `cargo bench -p kpinspect-core`.

use kpinspect_core::mode::{ProxyMode, iptables, ipvs, nftables};
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::plan::plan;
use kpinspect_core::proxy::ProxyState;

#[path = "../tests/support/synthetic.rs"]
mod synthetic;
use synthetic::{cluster, config};

fn main() {
    divan::main();
}

/// Objects → proxier view → restore text, the whole pipeline.
#[divan::bench(sample_count = 10)]
fn compile_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    let cluster = cluster(10_000, 10);
    let config = config();
    bencher.bench(|| {
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let restore = iptables::compile(&state, &config);
        divan::black_box(restore.render())
    });
}

/// The compiler alone, from a built proxier view.
#[divan::bench(sample_count = 10)]
fn compile_only_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    let cluster = cluster(10_000, 10);
    let config = config();
    let state = ProxyState::build(&cluster, &config, IpFamily::V4);
    bencher.bench(|| divan::black_box(iptables::compile(&state, &config)));
}

/// IPVS mode, the whole pipeline: objects → proxier view → virtual
/// servers, ipsets and restore input, rendered as `ipvsadm -Sn`,
/// `ipset save` and restore text.
#[divan::bench(sample_count = 10)]
fn compile_ipvs_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    let cluster = cluster(10_000, 10);
    let mut config = config();
    config.mode = ProxyMode::Ipvs;
    bencher.bench(|| {
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let c = ipvs::compile(&state, &config);
        divan::black_box((
            ipvs::ipvsadm_save(&c.virtual_servers),
            ipvs::ipset_save(&c.ipsets),
            c.restore.render(),
        ))
    });
}

/// nftables mode, the whole pipeline: objects → proxier view → transaction,
/// rendered, then applied to an in-memory table and normalised as
/// kube-proxy's tests do.
#[divan::bench(sample_count = 10)]
fn compile_nftables_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    let cluster = cluster(10_000, 10);
    let mut config = config();
    config.mode = ProxyMode::Nftables;
    bencher.bench(|| {
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let c = nftables::compile(&state, &config);
        divan::black_box((c.render(), c.sorted().expect("applies")))
    });
}

/// nftables mode, reading a node back: the 10k-service table listed (as
/// `nft list table` lays it out), parsed, its rules recognised, normalised
/// and dumped per service port.
#[divan::bench(sample_count = 5)]
fn read_and_dump_nftables_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    let cluster = cluster(10_000, 10);
    let mut config = config();
    config.mode = ProxyMode::Nftables;
    let state = ProxyState::build(&cluster, &config, IpFamily::V4);
    let listing = nftables::compile(&state, &config)
        .state()
        .expect("applies")
        .listing()
        .expect("a table");
    bencher.bench(|| {
        let node = nftables::read_listing(&listing).expect("reads");
        let sorted = node.tables[0].sorted();
        let dump = nftables::dump(&node, &[], None);
        assert_eq!(dump.services.len(), 10_000);
        divan::black_box((sorted, dump))
    });
}

/// Planning an apply after one endpoint changed on a 10k-service node:
/// semantic diff of ~400k rules and the minimal payload.
#[divan::bench(sample_count = 10)]
fn plan_one_endpoint_change_10k_services(bencher: divan::Bencher) {
    let config = config();
    let before = cluster(10_000, 10);
    let mut after = before.clone();
    after.endpoint_slices[4242].endpoints[3].address = Some(synthetic::ip(0x0b00_0001));
    let text =
        |c| iptables::compile(&ProxyState::build(c, &config, IpFamily::V4), &config).render();
    let actual = Ruleset::parse(&text(&before)).expect("parse");
    let desired = Ruleset::parse(&text(&after)).expect("parse");
    bencher.bench(|| divan::black_box(plan(&desired, &actual, ProxyMode::Iptables.profile())));
}

/// nftables mode's trace: one new connection from a pod to a ClusterIP of
/// the compiled 10k-service table (parsing every rule of the table, the
/// verdict-map lookups, ten endpoints by numgen).
#[divan::bench(sample_count = 10)]
fn trace_nftables_10k_services_x_10_endpoints(bencher: divan::Bencher) {
    use kpinspect_core::model::Protocol;
    use kpinspect_core::trace::{Packet, TraceOptions, trace_nftables};
    let cluster = cluster(10_000, 10);
    let mut config = config();
    config.mode = ProxyMode::Nftables;
    let state = ProxyState::build(&cluster, &config, IpFamily::V4);
    let table = nftables::compile(&state, &config).state().expect("applies");
    let packet = Packet::new(
        synthetic::ip(0x0af4_0001),
        synthetic::ip(0x0a60_0000 + 4242),
        80,
        Protocol::Tcp,
    );
    let opts = TraceOptions::new().with_local_ips([synthetic::ip(0xc0a8_0002)]);
    bencher.bench(|| divan::black_box(trace_nftables(&table, &packet, &opts)));
}

/// nftables mode: planning an apply after one endpoint changed on a
/// 10k-service node (both tables in memory, the node's as read back): the
/// transaction rewrites one service chain, adds one endpoint chain and
/// flushes and deletes one: 10 operations, 1.6 KB, about 1 s on the 2-core
/// development machine.
#[divan::bench(sample_count = 10)]
fn plan_nftables_one_endpoint_change_10k_services(bencher: divan::Bencher) {
    let mut config = config();
    config.mode = ProxyMode::Nftables;
    let before = cluster(10_000, 10);
    let mut after = before.clone();
    after.endpoint_slices[4242].endpoints[3].address = Some(synthetic::ip(0x0b00_0001));
    let state = |c| {
        nftables::compile(&ProxyState::build(c, &config, IpFamily::V4), &config)
            .state()
            .expect("applies")
    };
    let (actual, desired) = (state(&before), state(&after));
    let p = nftables::plan(&desired, Some(&actual));
    eprintln!(
        "nftables plan: {} operations, {} bytes",
        p.transaction.len(),
        p.transaction.render().len()
    );
    bencher.bench(|| divan::black_box(nftables::plan(&desired, Some(&actual))));
}

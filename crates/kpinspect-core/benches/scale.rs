//! The core at 1,000, 10,000 and 50,000 services × 10 endpoints (the mix of
//! `tests/support/synthetic.rs`: every fourth a NodePort, every tenth a
//! LoadBalancer): the core alone as `kpinspect compile` runs it
//! (`core_iptables`), each mode's compiler, the parsers of what the tools
//! print (`iptables-save`, `ipset save`, `ipvsadm -Sn`, `nft list`), the
//! semantic diff (after one endpoint changed, and with everything stale)
//! and the apply plans after one endpoint changed.
//!
//! Run with `cargo bench -p kpinspect-core --bench scale` (a filter such as
//! `-- parse` runs some). The k8s input edge is benchmarked in
//! `kpinspect-k8s` (`cargo bench -p kpinspect-k8s`), on the generator's
//! kubectl JSON and YAML.

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::{ProxyMode, iptables, ipvs, nftables};
use kpinspect_core::model::Cluster;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::proxy::ProxyState;
use kpinspect_core::{diff, ipset, plan};

#[path = "../tests/support/synthetic.rs"]
mod synthetic;

const SIZES: [u32; 3] = [1_000, 10_000, 50_000];

fn main() {
    divan::main();
}

fn config_for(mode: ProxyMode) -> ProxyConfig {
    let mut config = synthetic::config();
    config.mode = mode;
    config
}

fn state(n: u32, config: &ProxyConfig) -> ProxyState {
    ProxyState::build(&synthetic::cluster(n, 10), config, IpFamily::V4)
}

/// The cluster after one endpoint of one service moved.
fn one_endpoint_changed(n: u32) -> Cluster {
    let mut c = synthetic::cluster(n, 10);
    let i = (n / 2) as usize;
    c.endpoint_slices[i].endpoints[3].address = Some(synthetic::ip(0x0b00_0001));
    c
}

fn save_text(cluster: &Cluster, config: &ProxyConfig) -> String {
    iptables::compile(&ProxyState::build(cluster, config, IpFamily::V4), config).render()
}

/// The core alone, as `kpinspect compile` runs it after reading its input:
/// the model objects of `kpinspect-gen N 10` (`Cluster`, built before
/// timing) → `ProxyState::build` → `iptables::compile` → the restore text
/// written out from its buffers (`Restore::parts`, as the CLI writes it to
/// stdout; here into `io::sink`, as to `/dev/null`), everything dropped.
/// The node is the README's compile figure's (`--hostname n1 --node-ip
/// 192.168.0.2 --cluster-cidr 10.128.0.0/9`), so `kpinspect compile` of
/// the generator's JSON minus this is the cost of the input edge.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn core_iptables(bencher: divan::Bencher, n: u32) {
    use std::io::Write as _;
    let config = synthetic::cli_config();
    let cluster = synthetic::kubectl_cluster(n, 10);
    bencher.bench(|| {
        let state = ProxyState::build(&cluster, &config, IpFamily::V4);
        let restore = iptables::compile(&state, &config);
        let mut out = std::io::sink();
        let mut written = 0;
        for part in restore.parts() {
            out.write_all(part.as_bytes())
                .expect("a sink takes anything");
            written += part.len();
        }
        divan::black_box(written)
    });
}

/// iptables mode: proxier view → restore text.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn compile_iptables(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let state = state(n, &config);
    bencher.bench(|| divan::black_box(iptables::compile(&state, &config)));
}

/// IPVS mode: proxier view → virtual servers, ipsets, restore text.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn compile_ipvs(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Ipvs);
    let state = state(n, &config);
    bencher.bench(|| divan::black_box(ipvs::compile(&state, &config)));
}

/// nftables mode: proxier view → the `nft -f` transaction, rendered.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn compile_nftables(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Nftables);
    let state = state(n, &config);
    bencher.bench(|| divan::black_box(nftables::compile(&state, &config).render()));
}

/// `iptables-save` text (as kube-proxy writes it) → `Ruleset`.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn parse_iptables_save(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let text = save_text(&synthetic::cluster(n, 10), &config);
    bencher.bench(|| divan::black_box(Ruleset::parse(&text).expect("parses")));
}

/// `iptables-save` text → the per-Service dump (what `kpinspect dump` does
/// after reading).
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn parse_and_dump_iptables(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let text = save_text(&synthetic::cluster(n, 10), &config);
    bencher.bench(|| {
        let rs = Ruleset::parse(&text).expect("parses");
        divan::black_box(iptables::dump(&rs, None))
    });
}

/// `ipset save` of IPVS mode's 17 sets → `SetText`s.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn parse_ipset_save(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Ipvs);
    let text = ipvs::ipset_save(&ipvs::compile(&state(n, &config), &config).ipsets);
    bencher.bench(|| divan::black_box(ipset::parse(&text).expect("parses")));
}

/// `ipvsadm -Sn` of IPVS mode's virtual servers → `VirtualServer`s.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn parse_ipvsadm_save(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Ipvs);
    let text = ipvs::ipvsadm_save(&ipvs::compile(&state(n, &config), &config).virtual_servers);
    bencher.bench(|| divan::black_box(ipvs::parse_ipvsadm(&text).expect("parses")));
}

/// `nft list table ip kube-proxy` → the node's kube-proxy table, read back
/// into knftables' form.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn parse_nft_listing(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Nftables);
    let listing = nftables::compile(&state(n, &config), &config)
        .state()
        .expect("applies")
        .listing()
        .expect("a table");
    bencher.bench(|| divan::black_box(nftables::read_listing(&listing).expect("reads")));
}

/// Desired vs node after one endpoint changed: the per-Service diff
/// (`kpinspect diff`) and the semantic rule diff.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn diff_one_endpoint_change(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let actual = Ruleset::parse(&save_text(&synthetic::cluster(n, 10), &config)).expect("parse");
    let desired = Ruleset::parse(&save_text(&one_endpoint_changed(n), &config)).expect("parse");
    bencher.bench(|| {
        divan::black_box((
            diff::node_diff(&desired, &actual, None),
            plan::diff(&desired, &actual, ProxyMode::Iptables.profile()),
        ))
    });
}

/// The semantic rule diff when every service chain of the node is stale
/// (the cluster went down to one Service, or the node ran another mode):
/// each stale chain's rules are listed (a scan of the table per chain
/// made this 28 s at 2,000 services, now 0.3 s for the whole command).
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn diff_everything_stale(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let actual = Ruleset::parse(&save_text(&synthetic::cluster(n, 10), &config)).expect("parse");
    let desired = Ruleset::parse(&save_text(&synthetic::cluster(1, 1), &config)).expect("parse");
    bencher
        .bench(|| divan::black_box(plan::diff(&desired, &actual, ProxyMode::Iptables.profile())));
}

/// iptables mode's apply plan after one endpoint changed: the minimal
/// `--noflush` payload.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn plan_iptables_one_endpoint_change(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let actual = Ruleset::parse(&save_text(&synthetic::cluster(n, 10), &config)).expect("parse");
    let desired = Ruleset::parse(&save_text(&one_endpoint_changed(n), &config)).expect("parse");
    bencher
        .bench(|| divan::black_box(plan::plan(&desired, &actual, ProxyMode::Iptables.profile())));
}

/// The same plan against the node as `iptables-save` prints it (the
/// rules in their kernel form, what `apply` reads): unchanged chains are
/// found equal from the printed text, without canonical forms.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn plan_iptables_one_endpoint_change_saved(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Iptables);
    let mut actual = Ruleset::default();
    actual
        .restore(
            &save_text(&synthetic::cluster(n, 10), &config),
            kpinspect_core::netfilter::RestoreFlush::NoFlush,
        )
        .expect("restores");
    let desired = Ruleset::parse(&save_text(&one_endpoint_changed(n), &config)).expect("parse");
    bencher
        .bench(|| divan::black_box(plan::plan(&desired, &actual, ProxyMode::Iptables.profile())));
}

/// IPVS mode's apply plan after one endpoint changed (the node read back
/// from `ipvsadm -Sn` and `ipset save`).
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn plan_ipvs_one_endpoint_change(bencher: divan::Bencher, n: u32) {
    let config = config_for(ProxyMode::Ipvs);
    let before = ipvs::compile(&state(n, &config), &config);
    let after_cluster = one_endpoint_changed(n);
    let desired = ipvs::compile(
        &ProxyState::build(&after_cluster, &config, IpFamily::V4),
        &config,
    );
    let node = ipvs::IpvsNode {
        servers: ipvs::parse_ipvsadm(&ipvs::ipvsadm_save(&before.virtual_servers)).expect("parses"),
        sets: ipset::parse(&ipvs::ipset_save(&before.ipsets)).expect("parses"),
        bound: before.addresses.iter().map(|a| a.addr()).collect(),
    };
    let owner = ipvs::Ownership::new(&config, &after_cluster);
    bencher.bench(|| divan::black_box(ipvs::plan(&desired, &node, &owner)));
}

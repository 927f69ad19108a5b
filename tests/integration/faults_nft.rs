//! Faults on a live node in nftables mode (network namespaces, as root),
//! with `faults.rs`'s helpers and `nft_apply.rs`'s foreign nftables state:
//! `kill -9` at seeded random points of `apply --mode nftables`, other
//! writers (`nft -f -` into their own table, `iptables-restore --noflush
//! -w`) during apply and cleanup, and read-only commands that must not
//! write. (`apply` of malformed input in nftables mode is in `faults.rs`.)
//!
//! `KPINSPECT_FAULT_SEED` and `KPINSPECT_FAULT_RUNS` as in `faults.rs`.

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::faults::{
    Rng, assert_iptables_rounds, assert_same, iptables_writer, kill_after, node_state,
    other_writer, runs, settle, strip_nft_counters,
};
use crate::nft_apply::{NFT_CONFIG, add_foreign_nft, foreign_nft, nft_list, tables};
use crate::node::{
    Backend, Layout, NODE_IP, NODE_IP6, TestNode, add_foreign_state, available, foreign, kp,
};
use crate::util::{ok, root, stderr, stdout};

const CLUSTER: &str = "fixtures/routed/cluster.yaml";
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";
/// Both families' clusterCIDR, `nodePortAddresses: [primary]`.
const DUAL_CONFIG: &str = "fixtures/apply/config-dual.yaml";
const DUAL: &str = "fixtures/apply/cluster-dual.yaml";

/// The kill test's clusters. The old is IPv4 only; the new scales
/// routed/web down, deletes routed/np and adds dual/web and dual/np in both
/// families: an apply between them writes both tables (one `nft -f` each).
const OLD: &[&str] = &[CLUSTER];
const NEW: &[&str] = &[SCALED, DUAL];

/// kube-proxy's tables, as `nft list table` names them.
const KUBE_PROXY_TABLES: [&str; 2] = ["ip kube-proxy", "ip6 kube-proxy"];

/// A node of `backend` (dual-stack with `ipv6`) holding other programs'
/// iptables rules and nftables tables ([`foreign_nft`]).
fn node_with_neighbours(backend: Backend, ipv6: bool) -> TestNode {
    let node = TestNode::new(Layout {
        pods: 0,
        backend,
        ipv6,
    });
    add_foreign_state(&node);
    add_foreign_nft(&node, foreign_nft(backend));
    node
}

/// `verb --mode nftables --config CONFIG --node-ip …` (both families'
/// with `dual`), `extra`, then the cluster files (paths from the root).
fn nft_args(verb: &str, dual: bool, extra: &[&str], files: &[&str]) -> Vec<String> {
    let config = if dual { DUAL_CONFIG } else { NFT_CONFIG };
    let mut v: Vec<String> = [verb, "--mode", "nftables", "--config"]
        .into_iter()
        .map(String::from)
        .collect();
    v.push(root().join(config).display().to_string());
    v.extend(["--node-ip".into(), NODE_IP.to_string()]);
    if dual {
        v.extend(["--node-ip".into(), NODE_IP6.to_string()]);
    }
    v.extend(extra.iter().map(|e| (*e).to_string()));
    v.extend(files.iter().map(|f| root().join(f).display().to_string()));
    v
}

fn run(node: &TestNode, verb: &str, dual: bool, extra: &[&str], files: &[&str]) -> Output {
    let argv = nft_args(verb, dual, extra, files);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    kp(node, &refs)
}

/// kube-proxy's tables (`nft list table`, counters stripped; empty when
/// missing), in [`KUBE_PROXY_TABLES`] order.
fn kube_proxy_tables(node: &TestNode) -> Vec<String> {
    KUBE_PROXY_TABLES
        .iter()
        .map(|t| {
            let (family, name) = t.split_once(' ').expect("family and name");
            strip_nft_counters(&nft_list(node, family, name))
        })
        .collect()
}

/// Other programs' state: each nftables table [`foreign_nft`] adds for
/// `backend` as `nft list table` prints it (byte for byte: they hold no
/// counters) and the iptables rules [`foreign`] keeps, without the lines
/// naming `skip` (another writer's chain).
fn neighbours(node: &TestNode, backend: Backend, skip: &str) -> (Vec<String>, Vec<String>) {
    let nft = foreign_nft(backend)
        .lines()
        .filter_map(|l| l.strip_prefix("table "))
        .map(|t| {
            let mut words = t.split_whitespace();
            let (family, name) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let listing = nft_list(node, family, name);
            assert!(!listing.is_empty(), "table {family} {name} is gone");
            listing
        })
        .collect();
    let ipt = foreign(&node.save())
        .into_iter()
        .filter(|l| skip.is_empty() || !l.contains(skip))
        .collect();
    (nft, ipt)
}

/// `kill -9` at seeded random points of `apply --mode nftables` from the
/// old cluster to the new (dual-stack: two transactions): right after the
/// kill, and again once no process of it is left in the namespace (an
/// `nft -f` child may outlive kpinspect and commit), each kube-proxy table
/// is the old or the new, never half; other programs' nftables tables and
/// iptables rules are byte-identical; the next apply converges.
#[test]
fn nftables_kill_during_apply_leaves_each_table_old_or_new() {
    if !available() {
        return;
    }
    let mut rng = Rng::from_env();
    for backend in Backend::ALL {
        let started = Instant::now();
        let node = node_with_neighbours(backend, true);
        // The old → new deletions are not more than half of a family's
        // service ports; new → old (routed/np back, dual's two gone) are.
        let apply = |files: &[&str], what: &str| {
            ok(&run(&node, "apply", true, &["--force"], files), what);
        };
        // The two states as the runs reach them, and how long an apply
        // between them takes. nft lists chains in the order they were
        // added: a chain deleted and added again moves to the end, so the
        // states are taken after a first round trip.
        apply(NEW, "apply new");
        apply(OLD, "apply old");
        let start = Instant::now();
        ok(&run(&node, "apply", true, &[], NEW), "timed apply");
        let span = start.elapsed().as_micros().max(1000) as u64;
        let new = kube_proxy_tables(&node);
        apply(OLD, "back to old");
        let old = kube_proxy_tables(&node);
        for (t, (o, n)) in KUBE_PROXY_TABLES.iter().zip(old.iter().zip(&new)) {
            assert_ne!(o, n, "{t}: the two clusters must differ");
            assert!(o.contains("chain services"), "{t}: {o}");
        }
        let neighbours_before = neighbours(&node, backend, "");
        let (mut killed_midway, mut outlived) = (0, 0);
        // How often each (ip, ip6) pair of states was left.
        let mut left: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for i in 0..runs() {
            let delay = Duration::from_micros(rng.below(span));
            let a = nft_args("apply", true, &[], NEW);
            // `kill_after` runs `apply`: the arguments after it.
            let (midway, outlasted) = kill_after(&node, &[], &a[1..], delay);
            killed_midway += usize::from(midway);
            outlived += usize::from(outlasted);
            let mut states = Vec::new();
            for settled in [false, true] {
                let when = settle(&node, settled);
                let now = kube_proxy_tables(&node);
                states.clear();
                for (k, table) in KUBE_PROXY_TABLES.iter().enumerate() {
                    let state = if now[k] == old[k] {
                        "old"
                    } else if now[k] == new[k] {
                        "new"
                    } else {
                        panic!(
                            "{backend:?} run {i} (kill after {delay:?}), {when}: table {table} is neither old nor new:\n{}\n--- old:\n{}",
                            now[k], old[k]
                        );
                    };
                    states.push(state);
                }
                assert_eq!(
                    neighbours(&node, backend, ""),
                    neighbours_before,
                    "{backend:?} run {i}, {when}: other programs' state changed"
                );
            }
            *left.entry((states[0], states[1])).or_default() += 1;
            ok(&run(&node, "apply", true, &[], NEW), "apply after the kill");
            assert_eq!(
                kube_proxy_tables(&node),
                new,
                "{backend:?} run {i}: no convergence"
            );
            let d = run(&node, "diff", true, &[], NEW);
            assert_eq!(
                d.status.code(),
                Some(0),
                "{backend:?} run {i}: diff after convergence: {}",
                stdout(&d)
            );
            apply(OLD, "back to old");
        }
        let left: Vec<String> = left
            .iter()
            .map(|((v4, v6), n)| format!("ip {v4} + ip6 {v6}: {n}"))
            .collect();
        eprintln!(
            "faults (nftables): {backend:?}: {} runs, {killed_midway} killed before they ended, {outlived} left a process running after it; left {} (apply takes about {span} µs; {:.1} s)",
            runs(),
            left.join(", "),
            started.elapsed().as_secs_f64()
        );
    }
}

/// Other writers during `apply --mode nftables` (old ↔ scaled, three
/// times) and `cleanup --mode nftables`: one loops `nft -f -`, each round
/// adding a rule commented `round N` to its own `inet other-writer` table,
/// the other `iptables-restore --noflush -w` as in `faults.rs`. Every round
/// of both is there at the end, kube-proxy's tables are gone, other
/// programs' state is intact, and a fresh apply converges.
#[test]
fn nftables_other_writers_during_apply_and_cleanup_lose_nothing() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        let started = Instant::now();
        let node = node_with_neighbours(backend, false);
        add_foreign_nft(&node, "table inet other-writer {\n\tchain c {\n\t}\n}\n");
        let before = neighbours(&node, backend, "OTHER-WRITER");
        let stop = Arc::new(AtomicBool::new(false));
        let nft_writer = other_writer(
            &node.node,
            &["nft", "-f", "-"],
            |i| {
                format!("add rule inet other-writer c meta mark 0x1 return comment \"round {i}\"\n")
            },
            40,
            &stop,
        );
        let ipt_writer = iptables_writer(&node, 40, &stop);
        for _ in 0..3 {
            ok(&run(&node, "apply", false, &[], &[CLUSTER]), "apply");
            ok(&run(&node, "apply", false, &[], &[SCALED]), "apply scaled");
        }
        ok(&kp(&node, &["cleanup", "--mode", "nftables"]), "cleanup");
        stop.store(true, Ordering::SeqCst);
        let nft_rounds = nft_writer.join().expect("the nft writer");
        let ipt_rounds = ipt_writer.join().expect("the iptables writer");
        let theirs = nft_list(&node, "inet", "other-writer");
        for i in 0..nft_rounds {
            assert!(
                theirs.contains(&format!("comment \"round {i}\"")),
                "{backend:?}: the nft writer's round {i} is lost:\n{theirs}"
            );
        }
        assert_iptables_rounds(&node.save(), ipt_rounds, &format!("{backend:?}"));
        let left: Vec<String> = tables(&node)
            .into_iter()
            .filter(|t| t.ends_with(" kube-proxy"))
            .collect();
        assert!(left.is_empty(), "{backend:?}: left after cleanup: {left:?}");
        assert_eq!(
            neighbours(&node, backend, "OTHER-WRITER"),
            before,
            "{backend:?}: other programs' state changed"
        );
        ok(
            &run(&node, "apply", false, &[], &[SCALED]),
            "apply after cleanup",
        );
        let d = run(&node, "diff", false, &[], &[SCALED]);
        assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));
        assert!(nft_list(&node, "ip", "kube-proxy").contains("routed/web/tcp/http"));
        eprintln!(
            "faults (nftables): {backend:?}: other writers wrote {nft_rounds} nft and {ipt_rounds} iptables rounds during 6 applies and a cleanup ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
}

/// On a node in nftables mode, `dump`, `diff`, `trace` and `compile` (and
/// `apply`/`cleanup --dry-run`) read the node and never write it: the
/// node's iptables rules of both families, ipsets and nftables ruleset are
/// the same after each.
#[test]
fn nftables_read_only_commands_never_write() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        let started = Instant::now();
        let node = node_with_neighbours(backend, false);
        ok(&run(&node, "apply", false, &[], &[CLUSTER]), "apply");
        let before = node_state(&node);
        assert!(before.contains("table ip kube-proxy {"), "{before}");
        let argv = |parts: &[&[&str]]| -> Vec<String> {
            parts.concat().iter().map(|s| (*s).to_string()).collect()
        };
        let (cluster, scaled) = (
            root().join(CLUSTER).display().to_string(),
            root().join(SCALED).display().to_string(),
        );
        let config = root().join(NFT_CONFIG).display().to_string();
        let ip = NODE_IP.to_string();
        let trace: &[&str] = &["trace", "--mode", "nftables", "--src", "192.168.0.9"];
        let web: &[&str] = &["--dst", "172.30.0.10:80/tcp"];
        // (arguments, exit status, what stdout must say)
        let commands: Vec<(Vec<String>, i32, &str)> = vec![
            (argv(&[&["dump", "--mode", "nftables"]]), 0, "routed/web"),
            (
                argv(&[&["dump", "--mode", "nftables", "-o", "json"]]),
                0,
                "\"services\"",
            ),
            (
                argv(&[&["dump", "--mode", "nftables", "--cluster", &cluster]]),
                0,
                "routed/web",
            ),
            (nft_args("diff", false, &[], &[CLUSTER]), 0, "in sync"),
            (
                nft_args("diff", false, &[], &[SCALED]),
                1,
                "endpoints differ",
            ),
            (
                nft_args("diff", false, &["-o", "json"], &[SCALED]),
                1,
                "\"in_sync\": false",
            ),
            (argv(&[trace, web]), 0, "DNAT to 10.244.0.13:8080"),
            (
                argv(&[trace, &["--dst", "192.168.0.2:30080/tcp"]]),
                0,
                "DNAT to 10.244.0.13:8081",
            ),
            (argv(&[trace, web, &["-o", "json"]]), 0, "\"outcomes\""),
            // Through the table the scaled cluster compiles to.
            (
                argv(&[
                    trace,
                    web,
                    &["--cluster", &scaled, "--config", &config, "--node-ip", &ip],
                ]),
                0,
                "DNAT to 10.244.0.12:8080",
            ),
            (
                nft_args("compile", false, &[], &[CLUSTER]),
                0,
                "add table ip kube-proxy",
            ),
            (
                nft_args("compile", false, &["-o", "sorted"], &[SCALED]),
                0,
                "add table ip kube-proxy",
            ),
            (
                nft_args("apply", false, &["--dry-run"], &[SCALED]),
                0,
                "delete chain ip kube-proxy",
            ),
            (
                argv(&[&["cleanup", "--mode", "nftables", "--dry-run"]]),
                0,
                "delete table ip kube-proxy",
            ),
        ];
        for (argv, status, says) in &commands {
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = kp(&node, &refs);
            assert_eq!(
                out.status.code(),
                Some(*status),
                "{backend:?} {argv:?}: {}{}",
                stdout(&out),
                stderr(&out)
            );
            assert!(
                stdout(&out).contains(says),
                "{backend:?} {argv:?}: {}",
                stdout(&out)
            );
            assert_same(
                &node_state(&node),
                &before,
                &format!("{backend:?}: {argv:?}"),
            );
        }
        eprintln!(
            "faults (nftables): {backend:?}: {} read-only commands wrote nothing ({:.1} s)",
            commands.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

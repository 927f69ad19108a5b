//! Faults on a live node (network namespaces, as root): `kill -9` at
//! seeded random points during apply, another writer looping
//! `iptables-restore --noflush -w` during apply and cleanup, read-only
//! commands that must not write, and `apply` of malformed input (in
//! iptables and nftables mode; the nftables mode's other faults are in
//! `faults_nft.rs`, with the helpers here).
//!
//! `KPINSPECT_FAULT_SEED` picks the kill points (default fixed);
//! `KPINSPECT_FAULT_RUNS` how many kills per backend (default 20).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::nft_apply::{NFT_CONFIG, add_foreign_nft, foreign_nft};
use crate::node::{
    Backend, Layout, NODE_IP, TestNode, add_foreign_state, available, foreign, kp, kube_proxy_state,
};
use crate::util::{ok, root, stderr, stdout};
use kpinspect_core::netfilter::Ruleset;

const CONFIG: &str = "fixtures/routed/config.yaml";
const CLUSTER: &str = "fixtures/routed/cluster.yaml";
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";

/// `apply`/`diff` arguments for `cluster` (paths from the root).
fn args(cluster: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--config".to_string(),
        root().join(CONFIG).display().to_string(),
        "--node-ip".to_string(),
        NODE_IP.to_string(),
    ];
    v.extend(cluster.iter().map(|c| root().join(c).display().to_string()));
    v
}

/// `kpinspect CMD FLAGS... <apply arguments for cluster>` in `node`.
fn kp_args(node: &TestNode, cmd: &str, flags: &[&str], cluster: &[&str]) -> std::process::Output {
    let a = args(cluster);
    let mut argv = vec![cmd];
    argv.extend_from_slice(flags);
    argv.extend(a.iter().map(String::as_str));
    kp(node, &argv)
}

fn run(node: &TestNode, cmd: &str, cluster: &[&str]) -> std::process::Output {
    let a = args(cluster);
    let mut argv = vec![cmd];
    argv.extend(a.iter().map(String::as_str));
    kp(node, &argv)
}

/// `KPINSPECT_FAULT_SEED`, or the fixed default (also the IPVS-mode VM
/// check's, `vm/faults_ipvs.rs`).
pub(crate) fn fault_seed() -> u64 {
    std::env::var("KPINSPECT_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64)
}

/// A small seeded generator (xorshift64*): the same seed, the same runs.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn from_env() -> Rng {
        let seed = fault_seed();
        eprintln!("faults: KPINSPECT_FAULT_SEED={seed}");
        Rng::new(seed)
    }

    /// The generator of `seed` (0 is taken as 1: xorshift stays at 0).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// Uniform enough in `0..n` (0 for `n` 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// How many kills per backend (`KPINSPECT_FAULT_RUNS`, default 20).
pub(crate) fn runs() -> usize {
    std::env::var("KPINSPECT_FAULT_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// kube-proxy's rules per table: `table` → its `table chain` entries.
pub(crate) type Tables = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// kube-proxy's rules per table (`table` → its `table chain` entries).
pub(crate) fn per_table(save: &str) -> Tables {
    let mut out: Tables = BTreeMap::new();
    for (key, rules) in kube_proxy_state(save) {
        let table = key.split(' ').next().unwrap_or_default().to_string();
        out.entry(table).or_default().insert(key, rules);
    }
    out
}

/// `nft list` text without the counters' values, one line per line with
/// single spaces: nft lists counters inside rules, and traffic of the
/// namespace's own (IPv6 neighbour discovery) moves them.
pub(crate) fn strip_nft_counters(nft: &str) -> String {
    let mut out = String::new();
    for line in nft.lines() {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        while let Some(i) = words.iter().position(|w| *w == "packets") {
            words.drain(i..(i + 4).min(words.len()));
        }
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

/// Everything of the node a command could write: both families' rules
/// (without counters), the ipsets, the nftables ruleset.
pub(crate) fn node_state(node: &TestNode) -> String {
    let strip = |save: String| -> String {
        save.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| match l.find(" [") {
                Some(i) if l.starts_with(':') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = strip(node.save());
    let six = node.backend.save().replacen("iptables", "ip6tables", 1);
    out.push_str("\n--- ip6\n");
    out.push_str(&strip(
        String::from_utf8_lossy(&node.node_exec(&[&six]).stdout).into_owned(),
    ));
    out.push_str("\n--- ipset\n");
    out.push_str(&String::from_utf8_lossy(
        &node.node_exec(&["ipset", "save"]).stdout,
    ));
    out.push_str("\n--- nft\n");
    out.push_str(&strip_nft_counters(&String::from_utf8_lossy(
        &node.node_exec(&["nft", "list", "ruleset"]).stdout,
    )));
    out
}

/// Panics with the lines that differ between two node states.
pub(crate) fn assert_same(now: &str, before: &str, what: &str) {
    if now == before {
        return;
    }
    let was: std::collections::HashSet<&str> = before.lines().collect();
    let is: std::collections::HashSet<&str> = now.lines().collect();
    let gone: Vec<&str> = before.lines().filter(|l| !is.contains(l)).collect();
    let new: Vec<&str> = now.lines().filter(|l| !was.contains(l)).collect();
    panic!("{what} changed the node:\n  gone: {gone:#?}\n  new: {new:#?}");
}

/// The processes in the node's namespace (`ip netns pids`).
pub(crate) fn namespace_pids(node: &TestNode) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "pids", &node.node])
        .output()
        .expect("ip netns pids");
    assert!(out.status.success(), "ip netns pids: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Waits until no process is left in the node's namespace, at most 10 s: a
/// killed apply's restore child (`iptables-restore`, `nft -f`) may outlive
/// it and finish its transaction, which would race the next command.
pub(crate) fn wait_for_no_processes(node: &TestNode) {
    let start = Instant::now();
    loop {
        let pids = namespace_pids(node);
        if pids.is_empty() {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let ps = Command::new("ps")
                .args(["-o", "pid,args", "-p", &pids.join(",")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "{}: processes still running 10 s after the kill:\n{ps}",
                node.node
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Another program writing the node while kpinspect works: a thread runs
/// `argv` in namespace `netns` with `round(i)` on its stdin, round after
/// round, until `stop` is set and at least `min` rounds ran; every round
/// must succeed. The thread returns how many rounds ran.
pub(crate) fn other_writer(
    netns: &str,
    argv: &[&str],
    round: impl Fn(usize) -> String + Send + 'static,
    min: usize,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<usize> {
    let netns = netns.to_string();
    let argv: Vec<String> = argv.iter().map(|a| (*a).to_string()).collect();
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let mut i = 0;
        while i < min || !stop.load(Ordering::SeqCst) {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &netns])
                .args(&argv)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("other writer");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(round(i).as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("wait");
            assert!(
                out.status.success(),
                "other writer {argv:?} round {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            i += 1;
        }
        i
    })
}

/// The iptables writer of [`another_writer_during_apply_and_cleanup_loses_nothing`]:
/// each round appends a rule commented `round N` to its own filter chain
/// `OTHER-WRITER` (created here) with `iptables-restore --noflush -w`.
pub(crate) fn iptables_writer(
    node: &TestNode,
    min: usize,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<usize> {
    node.restore("*filter\n:OTHER-WRITER - [0:0]\nCOMMIT\n")
        .expect("the other writer's chain");
    let restore = node.backend.restore();
    other_writer(
        &node.node,
        &[&restore, "--noflush", "-w"],
        |i| {
            format!(
                "*filter\n-A OTHER-WRITER -m comment --comment \"round {i}\" -j RETURN\nCOMMIT\n"
            )
        },
        min,
        stop,
    )
}

/// Panics unless the iptables writer's rounds `0..rounds` are all in `save`.
pub(crate) fn assert_iptables_rounds(save: &str, rounds: usize, what: &str) {
    for i in 0..rounds {
        assert!(
            save.contains(&format!("--comment \"round {i}\"")),
            "{what}: the other writer's round {i} is lost:\n{save}"
        );
    }
}

/// When a check after a kill runs: right after it, or (`settled`) once no
/// process of the killed apply is left in `node` (waited for here).
pub(crate) fn settle(node: &TestNode, settled: bool) -> &'static str {
    if settled {
        wait_for_no_processes(node);
        "once its processes ended"
    } else {
        "right after the kill"
    }
}

/// Starts `kpinspect apply ARGS` in `node` (through `env` with the
/// assignments `env`), kills it (`kill -9`) after `delay`; whether it was
/// still running then, and whether a process of it outlived it (a restore
/// child finishing its transaction).
pub(crate) fn kill_after(
    node: &TestNode,
    env: &[String],
    args: &[String],
    delay: Duration,
) -> (bool, bool) {
    // `ip netns exec` and `env` exec the program: the pid is kpinspect's.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.node, "env"])
        .args(env)
        .args([env!("CARGO_BIN_EXE_kpinspect"), "apply"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn apply");
    std::thread::sleep(delay);
    let midway = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    (midway, !namespace_pids(node).is_empty())
}

/// `kill -9` at seeded random points of an apply from the old cluster to
/// the scaled one: every table is the old or the new, never half; other
/// programs' rules stay byte-identical; the next apply converges.
#[test]
fn kill_during_apply_leaves_each_table_old_or_new() {
    kill_during_apply(None, per_table, CLUSTER, SCALED);
}

/// The same with the apply written in pieces of 3 lines (what the nft
/// backend does with 10,000 for a large apply, see
/// `Iptables::restore_batch_lines`): new chains are built apart and linked
/// last, so a kill can leave chains nothing jumps to — what packets meet
/// (the chains reachable from the built-in ones) is the old or the new,
/// and the next apply converges.
#[test]
fn kill_during_an_apply_in_pieces_leaves_traffic_old_or_new() {
    // Scaled up: the apply builds new chains, then links them.
    kill_during_apply(Some(3), reachable_per_table, SCALED, CLUSTER);
    // Scaled down: it unlinks the stale chains, then deletes them.
    kill_during_apply(Some(3), reachable_per_table, CLUSTER, SCALED);
}

/// [`per_table`], of the chains reachable from the built-in chains only.
fn reachable_per_table(save: &str) -> Tables {
    let rs = Ruleset::parse(save).expect("save parses");
    let mut out = per_table(save);
    for (table, chains) in &mut out {
        let Some(t) = rs.table(table) else { continue };
        let mut seen: BTreeSet<&str> = BUILTIN_HOOKS
            .iter()
            .copied()
            .filter(|c| t.chain(c).is_some())
            .collect();
        let mut queue: Vec<&str> = seen.iter().copied().collect();
        while let Some(c) = queue.pop() {
            for r in t.rules_of(c) {
                if let Some(target) = r.target_name()
                    && t.chain(target).is_some()
                    && seen.insert(target)
                {
                    queue.push(target);
                }
            }
        }
        chains.retain(|key, _| {
            key.split(' ')
                .nth(1)
                .is_some_and(|chain| seen.contains(chain))
        });
    }
    out
}

const BUILTIN_HOOKS: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// The kill loop: `pieces` sets KPINSPECT_RESTORE_BATCH_LINES for the
/// killed applies; `view` is what must be old or new after a kill.
fn kill_during_apply(pieces: Option<usize>, view: fn(&str) -> Tables, from: &str, to: &str) {
    if !available() {
        return;
    }
    let mut rng = Rng::from_env();
    let batch: Vec<String> = pieces
        .map(|n| format!("{}={n}", kpinspect_node::RESTORE_BATCH_LINES))
        .into_iter()
        .collect();
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&node);
        // The two states, and how long a full apply between them takes
        // (in one piece: the split only adds restores).
        ok(&run(&node, "apply", &[to]), "apply the new cluster");
        let (new, new_view) = (per_table(&node.save()), view(&node.save()));
        ok(&run(&node, "apply", &[from]), "apply the old cluster");
        let (old, old_view) = (per_table(&node.save()), view(&node.save()));
        let foreign_before = foreign(&node.save());
        assert_ne!(old, new, "the two clusters must differ");
        // Timed as the killed applies run (in pieces: more restores).
        let start = Instant::now();
        let mut argv: Vec<&str> = vec!["env"];
        argv.extend(batch.iter().map(String::as_str));
        argv.extend([env!("CARGO_BIN_EXE_kpinspect"), "apply"]);
        let to_args = args(&[to]);
        argv.extend(to_args.iter().map(String::as_str));
        ok(&node.node_exec(&argv), "timed apply");
        let span = start.elapsed().as_micros().max(1000) as u64;
        ok(&run(&node, "apply", &[from]), "back to old");
        if let Some(lines) = pieces {
            // The apply is written in pieces: more new or stale chains
            // than one piece holds lines.
            let payload = stdout(&kp_args(&node, "apply", &["--dry-run"], &[to]));
            let have: BTreeSet<String> = node
                .save()
                .lines()
                .filter_map(|l| l.strip_prefix(':'))
                .filter_map(|l| l.split(' ').next())
                .map(String::from)
                .collect();
            let new_chains = payload
                .lines()
                .filter_map(|l| l.strip_prefix(':'))
                .filter_map(|l| l.split(' ').next())
                .filter(|c| !have.contains(*c))
                .count();
            let stale_chains = payload.lines().filter(|l| l.starts_with("-X ")).count();
            assert!(new_chains + stale_chains > lines, "{payload}");
        }
        let (mut killed_midway, mut outlived) = (0, 0);
        for i in 0..runs() {
            let delay = Duration::from_micros(rng.below(span));
            let (midway, outlasted) = kill_after(&node, &batch, &args(&[to]), delay);
            killed_midway += usize::from(midway);
            outlived += usize::from(outlasted);
            // Right after the kill, and again once the killed apply's
            // restore child, if any, has ended (it reads its whole input
            // from a file, so it commits all of it).
            for settled in [false, true] {
                let when = settle(&node, settled);
                let save = node.save();
                let now = view(&save);
                for (table, state) in &now {
                    let was = old_view.get(table);
                    let will = new_view.get(table);
                    assert!(
                        Some(state) == was || Some(state) == will,
                        "{backend:?} run {i} (kill after {delay:?}), {when}: table {table} is neither old nor new:\n{save}"
                    );
                }
                assert_eq!(
                    foreign(&save),
                    foreign_before,
                    "{backend:?} run {i}, {when}: other programs' rules changed"
                );
            }
            ok(&run(&node, "apply", &[to]), "apply after the kill");
            assert_eq!(
                per_table(&node.save()),
                new,
                "{backend:?} run {i}: no convergence"
            );
            assert_eq!(
                run(&node, "diff", &[to]).status.code(),
                Some(0),
                "{backend:?} run {i}: diff after convergence"
            );
            ok(&run(&node, "apply", &[from]), "back to old");
        }
        eprintln!(
            "faults ({batch:?}): {backend:?}: {} runs, {killed_midway} killed before they ended, {outlived} left a process running after it (apply takes about {span} µs)",
            runs()
        );
    }
}

/// Another writer (as kube-proxy's neighbours do) loops
/// `iptables-restore --noflush -w`, each round appending one rule to its
/// own chain, while kpinspect applies and cleans up (and 40 rounds at
/// least): every one of its rules is there at the end, and kpinspect's end
/// state is right.
#[test]
fn another_writer_during_apply_and_cleanup_loses_nothing() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&node);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = iptables_writer(&node, 40, &stop);
        for _ in 0..3 {
            ok(&run(&node, "apply", &[CLUSTER]), "apply");
            ok(&run(&node, "apply", &[SCALED]), "apply scaled");
        }
        let cleanup = kp(&node, &["cleanup", "--mode", "iptables"]);
        ok(&cleanup, "cleanup");
        stop.store(true, Ordering::SeqCst);
        let rounds = writer.join().expect("the other writer");
        let save = node.save();
        assert_iptables_rounds(&save, rounds, &format!("{backend:?}"));
        assert!(
            kube_proxy_state(&save).is_empty(),
            "{backend:?}: kube-proxy rules left after cleanup:\n{save}"
        );
        ok(&run(&node, "apply", &[SCALED]), "apply after cleanup");
        assert_eq!(run(&node, "diff", &[SCALED]).status.code(), Some(0));
    }
}

/// `dump`, `diff`, `trace` and `compile` read the node and never write it.
#[test]
fn read_only_commands_never_write() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&node);
        ok(&run(&node, "apply", &[CLUSTER]), "apply");
        let before = node_state(&node);
        let cluster = root().join(CLUSTER).display().to_string();
        let config = root().join(CONFIG).display().to_string();
        let commands: Vec<Vec<String>> = vec![
            vec!["dump".into()],
            vec!["dump".into(), "--format".into(), "json".into()],
            vec!["dump".into(), "--cluster".into(), cluster.clone()],
            args(&[SCALED])
                .into_iter()
                .fold(vec!["diff".into()], |mut v, a| {
                    v.push(a);
                    v
                }),
            vec![
                "trace".into(),
                "--src".into(),
                "192.168.0.9".into(),
                "--dst".into(),
                "172.30.0.10:80/tcp".into(),
            ],
            vec![
                "compile".into(),
                "--config".into(),
                config.clone(),
                cluster.clone(),
            ],
            vec!["dump".into(), "--mode".into(), "nftables".into()],
        ];
        for argv in &commands {
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = kp(&node, &refs);
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "{backend:?} {argv:?}: {}",
                stderr(&out)
            );
            assert_same(
                &node_state(&node),
                &before,
                &format!("{backend:?}: {argv:?}"),
            );
        }
    }
}

/// The malformed inputs of `fixtures/bad/CASES` that `apply` must refuse:
/// (`Some(configuration)` with a good cluster, `CLUSTER`, or `None` for
/// the mode's good configuration; the cluster files), paths from the root.
/// Skipped objects and addresses, empty and comment-only files are not
/// errors. The IPVS-mode VM check (`vm/faults_ipvs.rs`) applies some too.
pub(crate) fn bad_inputs() -> Vec<(Option<String>, Vec<String>)> {
    let cases = std::fs::read_to_string(root().join("fixtures/bad/CASES")).expect("CASES");
    // (the configuration, or None for the mode's good one; the cluster files)
    let mut bad: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for line in cases.lines().filter(|l| !l.starts_with('#')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(1) != Some(&"compile") {
            continue;
        }
        if words[0].starts_with("config-") {
            let config = words
                .windows(2)
                .find(|w| w[0] == "--config")
                .map(|w| w[1].to_string())
                .expect("a config case names its --config");
            bad.push((Some(config), vec![CLUSTER.to_string()]));
        } else if words[0].starts_with("k8s-")
            // Skipped objects and empty files are not errors.
            && !words[0].starts_with("k8s-skipped")
            && !words[0].starts_with("k8s-slice-bad-address")
            && !words[0].starts_with("k8s-slice-mixed")
            && !words[0].starts_with("k8s-empty")
            && !words[0].starts_with("k8s-comments")
        {
            // Their last words are the input files.
            let files = words
                .iter()
                .skip(2)
                .filter(|w| w.starts_with("fixtures/bad/"))
                .map(|w| (*w).to_string())
                .collect();
            bad.push((None, files));
        }
    }
    bad
}

/// `apply` of every malformed cluster in `fixtures/bad/` (with a good
/// configuration) and of every malformed configuration (with a good
/// cluster) fails (exit 2, one line on stderr) and leaves the node as it
/// was: in iptables mode on a node holding iptables-mode state, in
/// nftables mode on one holding nftables-mode state.
#[test]
fn apply_of_bad_input_changes_nothing() {
    if !available() {
        return;
    }
    let bad = bad_inputs();
    let configs = bad.iter().filter(|(c, _)| c.is_some()).count();
    assert!(
        bad.len() - configs >= 30,
        "{} bad clusters",
        bad.len() - configs
    );
    assert!(configs >= 4, "{configs} bad configurations");
    for (mode, good) in [("iptables", CONFIG), ("nftables", NFT_CONFIG)] {
        let node = TestNode::new(Layout {
            pods: 0,
            backend: Backend::Nft,
            ipv6: false,
        });
        add_foreign_state(&node);
        add_foreign_nft(&node, foreign_nft(Backend::Nft));
        let apply = |config: &str, files: &[String]| {
            let (config, ip) = (
                root().join(config).display().to_string(),
                NODE_IP.to_string(),
            );
            let mut argv = vec!["apply".to_string(), "--mode".into(), mode.into()];
            argv.extend(["--config".into(), config, "--node-ip".into(), ip]);
            argv.extend(files.iter().map(|f| root().join(f).display().to_string()));
            let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
            kp(&node, &refs)
        };
        ok(&apply(good, &[CLUSTER.to_string()]), "apply");
        let before = node_state(&node);
        // The node holds the mode's state: kube-proxy's nftables table, or
        // its iptables rules.
        assert!(
            before.contains("table ip kube-proxy {") == (mode == "nftables")
                && kube_proxy_state(&node.save()).is_empty() == (mode == "nftables"),
            "{mode}: {before}"
        );
        for (config, files) in &bad {
            let out = apply(config.as_deref().unwrap_or(good), files);
            let err = stderr(&out);
            let what = format!("{mode}: {config:?} {files:?}");
            assert_eq!(out.status.code(), Some(2), "{what}: {err}");
            assert_eq!(err.lines().count(), 1, "{what}: {err}");
            assert_same(&node_state(&node), &before, &format!("{what}: apply"));
        }
    }
}

/// No shell anywhere in the programs: every tool runs from an argv vector
/// with its input on stdin. (Tests may use `sh` for their own plumbing.)
#[test]
fn no_shell_in_the_programs() {
    let mut found = Vec::new();
    let mut dirs = vec![root().join("crates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                // Only sources of the programs: not tests, examples, benches.
                if !matches!(name, "tests" | "examples" | "benches" | "testdata") {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                let text = std::fs::read_to_string(&path).expect("read");
                // Code before the unit tests of the file.
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for needle in [
                    "Command::new(\"sh\")",
                    "Command::new(\"bash\")",
                    "Command::new(\"/bin/sh\")",
                    "\"sh\", &[\"-c\"",
                    "\"-c\"",
                ] {
                    if code.contains(needle) {
                        found.push(format!("{}: {needle}", path.display()));
                    }
                }
            }
        }
    }
    assert!(found.is_empty(), "a shell in the programs: {found:#?}");
}

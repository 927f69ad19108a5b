//! Faults on a live IPVS-mode node, in the VM: what `faults.rs` shows for
//! iptables mode in network namespaces on the host, for `--mode ipvs`
//! (ipsets, kube-ipvs0's addresses, IPVS virtual and real servers over
//! generic netlink, the mode's iptables rules), which needs the VM's kernel.
//!
//! The node is a named network namespace ([`NETNS`], entered with `nsenter
//! --net` per command) holding [`converge_ipvs::FOREIGN_SETUP`]'s foreign
//! state: an IPVS virtual server with a real server, an ipset and iptables
//! rules. The two clusters are the routed fixture ([`OLD`], a ClusterIP and
//! a NodePort Service) and the scaled one ([`NEW`], the NodePort Service
//! gone, the other's endpoints changed), with the routed configuration.
//! Three parts, each reported on its own:
//!
//! 1. `kill -9` of `apply --mode ipvs` at seeded random points of its
//!    writes, old to new and back in turn: the apply runs with its phase
//!    times on, and is killed a random time after it says its writes
//!    begin, uniform over an apply's write time (measured once) and a
//!    quarter more (under TCG the time before the writes varies by
//!    seconds, so a time from the start mostly kills before or after
//!    them). Right after
//!    the kill, and again once no process is left in the namespace (`ip
//!    netns pids`: the killed apply's `ipset restore` or `iptables-restore`
//!    may outlive it), the foreign virtual server, set and rules are
//!    byte-identical and each iptables table's kube-proxy part is the old
//!    or the new one (iptables-restore commits a table at once; IPVS, the
//!    sets and the addresses are written piecewise, as kube-proxy writes
//!    them, so they may be partial). Then the next apply converges: `diff
//!    --mode ipvs` exits 0 and kube-proxy's IPVS, ipset, kube-ipvs0 and
//!    iptables state equals a fresh apply of the same cluster in an empty
//!    namespace (`converge_ipvs::spawn_fresh`).
//! 2. Read-only commands never write: `dump --mode ipvs` (table; JSON with
//!    `--cluster`), `diff --mode ipvs` against the other cluster, `trace
//!    --mode ipvs` of the live node and `compile --mode ipvs` of the other
//!    cluster each leave [`Node::state`] (`ipvsadm -Sn`, `ipset save`,
//!    kube-ipvs0, both families' rules in both backends without counters,
//!    the sysctls IPVS mode sets) byte-identical.
//! 3. `apply --mode ipvs` of malformed input (a few of `fixtures/bad/`'s
//!    Kubernetes cases, and each malformed `--config` with a valid cluster)
//!    exits 2 with one line on stderr; [`Node::state`] is as it was after
//!    them all.
//!
//! On the host, `KPINSPECT_FAULT_SEED` (shared with `faults.rs`) picks the
//! kill points and `KPINSPECT_IPVS_FAULT_RUNS` how many kills (default
//! [`RUNS`]: every process costs under TCG); [`prepare`] passes both to the
//! VM.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead as _, BufReader, Lines};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::converge_ipvs::{
    CONFIG, FOREIGN_SETUP, NODE_IP, bash_in, foreign_part, fresh_sections, kp_args_config,
    kube_proxy_differences, spawn_fresh,
};
use crate::faults::{Rng, assert_same, bad_inputs, fault_seed, per_table};
use crate::node::kube_proxy_state;
use crate::util::{root, stderr, stdout};

/// The cluster the node starts with.
const OLD: &str = "fixtures/routed/cluster.yaml";
/// The cluster the killed applies go to (and back from).
const NEW: &str = "fixtures/apply/cluster-scaled.yaml";
/// The node's network namespace.
const NETNS: &str = "kpi-faults-ipvs";
/// Kills by default: a run is three kpinspect processes and two or three
/// reads of the node, about 14 s under TCG on a busy host (the check is
/// about 90 s with 3).
const RUNS: u64 = 3;
/// How many of the malformed clusters of `faults::bad_inputs()` part 3
/// applies (spread over the list; every malformed configuration too).
const BAD_CLUSTERS: usize = 4;
/// How long a killed apply's children may take to go.
const LEFTOVER_LIMIT: Duration = Duration::from_secs(30);

/// The foreign virtual server's address ([`FOREIGN_SETUP`]'s).
const FOREIGN_VS: &str = "198.51.100.7";
/// The foreign set ([`FOREIGN_SETUP`]'s).
const FOREIGN_SET: &str = "FOREIGN-SET";

/// The sysctls IPVS mode sets (`kpinspect_node::ipvs_sysctls`), for
/// [`Node::state`]; `sysctl -e` skips the ones the kernel lacks.
const SYSCTLS: [&str; 7] = [
    "net.ipv4.vs.conntrack",
    "net.ipv4.vs.conn_reuse_mode",
    "net.ipv4.vs.expire_nodest_conn",
    "net.ipv4.vs.expire_quiescent_template",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
];

/// Writes the seed (`seed`) and the number of kills (`runs`) into the
/// check's directory.
pub fn prepare(dir: &Path) {
    let runs: u64 = std::env::var("KPINSPECT_IPVS_FAULT_RUNS")
        .map(|s| s.parse().expect("KPINSPECT_IPVS_FAULT_RUNS is a number"))
        .unwrap_or(RUNS);
    fs::write(dir.join("seed"), fault_seed().to_string()).expect("write seed");
    fs::write(dir.join("runs"), runs.to_string()).expect("write runs");
}

fn read_number(dir: &Path, file: &str) -> u64 {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file} (written by prepare): {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// `line` without its set's ` initval 0x...` (random per set).
fn without_initval(line: &str) -> String {
    match line.find(" initval 0x") {
        Some(i) => {
            let rest = &line[i + " initval 0x".len()..];
            let hex = rest.len()
                - rest
                    .trim_start_matches(|c: char| c.is_ascii_hexdigit())
                    .len();
            format!("{}{}", &line[..i], &rest[hex..])
        }
        None => line.to_string(),
    }
}

/// The node: a named network namespace, deleted when dropped.
struct Node {
    /// `/run/netns/NAME`.
    path: PathBuf,
}

impl Node {
    fn new() -> Node {
        // Left by an earlier run, if any.
        let _ = Command::new("ip")
            .args(["netns", "del", NETNS])
            .stderr(Stdio::null())
            .status();
        let out = Command::new("ip")
            .args(["netns", "add", NETNS])
            .output()
            .expect("ip netns add");
        assert!(out.status.success(), "ip netns add: {}", stderr(&out));
        let node = Node {
            path: Path::new("/run/netns").join(NETNS),
        };
        bash_in(
            Some(&node.path),
            &format!("ip link set lo up\n{FOREIGN_SETUP}"),
        );
        node
    }

    /// `program` in the node's namespace.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path.display()))
            .arg(program)
            .current_dir(root());
        cmd
    }

    /// Runs each command (`program args...`) in the node at once (under
    /// TCG a process costs: the VM's two CPUs share them); their outputs.
    fn tools(&self, argvs: &[&[&str]]) -> Vec<Output> {
        std::thread::scope(|scope| {
            let running: Vec<_> = argvs
                .iter()
                .map(|argv| {
                    let child = self
                        .command(argv[0])
                        .args(&argv[1..])
                        .stdin(Stdio::null())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
                    scope.spawn(move || child.wait_with_output().expect("wait"))
                })
                .collect();
            running
                .into_iter()
                .map(|t| t.join().expect("tool thread"))
                .collect()
        })
    }

    /// [`DUMP`](super::converge_ipvs::DUMP)'s sections (what converge_ipvs.rs compares with a fresh
    /// apply's), from the same tools run side by side and filtered here.
    fn dump(&self) -> BTreeMap<String, String> {
        let t = Instant::now();
        let out = self.tools(&[
            &["ipvsadm", "-Sn"],
            &["ipset", "save"],
            &["ip", "-o", "addr", "show", "dev", "kube-ipvs0"],
            &["iptables-save"],
        ]);
        for (i, o) in out.iter().enumerate() {
            // kube-ipvs0 may not be there.
            assert!(i == 2 || o.status.success(), "tool {i}: {}", stderr(o));
        }
        let [ipvs, sets, addresses, save] = [0, 1, 2, 3].map(|i| stdout(&out[i]));
        let text =
            |lines: Vec<String>| -> String { lines.iter().map(|l| l.clone() + "\n").collect() };
        let sorted = |mut lines: Vec<String>| {
            lines.sort();
            text(lines)
        };
        let kube_sets = sets
            .lines()
            .filter(|l| l.starts_with("create KUBE-") || l.starts_with("add KUBE-"))
            .map(without_initval)
            .collect();
        let mut dump = BTreeMap::new();
        dump.insert(
            "ipvsadm".to_string(),
            sorted(
                ipvs.lines()
                    .filter(|l| !l.contains(FOREIGN_VS))
                    .map(String::from)
                    .collect(),
            ),
        );
        dump.insert("ipset".to_string(), sorted(kube_sets));
        dump.insert(
            "kube-ipvs0".to_string(),
            sorted(
                addresses
                    .lines()
                    .map(|l| l.split_whitespace().nth(3).unwrap_or_default().to_string())
                    .collect(),
            ),
        );
        dump.insert(
            "foreign-ipvs".to_string(),
            text(
                ipvs.lines()
                    .filter(|l| l.contains(FOREIGN_VS))
                    .map(String::from)
                    .collect(),
            ),
        );
        dump.insert(
            "foreign-ipset".to_string(),
            text(
                sets.lines()
                    .filter(|l| l.split_whitespace().nth(1) == Some(FOREIGN_SET))
                    .map(String::from)
                    .collect(),
            ),
        );
        dump.insert("iptables".to_string(), save);
        eprintln!("  dump: {:.1?}", t.elapsed());
        dump
    }

    /// Everything of the node a command could write, for parts 2 and 3:
    /// `ipvsadm -Sn`, `ipset save`, kube-ipvs0 and its addresses, both
    /// families' rules in both backends (without counters), the sysctls
    /// IPVS mode sets; each tool's exit status, stdout and stderr.
    fn state(&self) -> String {
        let t = Instant::now();
        let mut sysctl = vec!["sysctl", "-e"];
        sysctl.extend(SYSCTLS);
        let argvs: [&[&str]; 8] = [
            &["ipvsadm", "-Sn"],
            &["ipset", "save"],
            &["ip", "addr", "show", "dev", "kube-ipvs0"],
            &["iptables-nft-save"],
            &["ip6tables-nft-save"],
            &["iptables-legacy-save"],
            &["ip6tables-legacy-save"],
            &sysctl,
        ];
        let mut state = String::new();
        for (argv, out) in argvs.iter().zip(self.tools(&argvs)) {
            let _ = writeln!(state, "=== {argv:?}: {}", out.status);
            for line in stdout(&out).lines() {
                // Comments carry the time; counters move with traffic.
                if line.starts_with('#') {
                    continue;
                }
                let line = match line.find(" [") {
                    Some(i) if line.starts_with(':') => &line[..i],
                    _ => line,
                };
                state.push_str(line);
                state.push('\n');
            }
            let _ = writeln!(state, "--- stderr\n{}", stderr(&out));
        }
        eprintln!("  state: {:.1?}", t.elapsed());
        state
    }

    /// `kpinspect ARGV` in the node.
    fn kp(&self, argv: &[String]) -> Output {
        let t = Instant::now();
        let out = self
            .command(&std::env::var("KPINSPECT").expect("KPINSPECT"))
            .args(argv)
            .output()
            .expect("run kpinspect");
        eprintln!(
            "  kpinspect {} ({}): {:.1?}",
            argv[0],
            out.status,
            t.elapsed()
        );
        out
    }

    /// `apply --mode ipvs --force` of `cluster`, which must succeed.
    fn apply(&self, cluster: &Path) -> String {
        let out = self.kp(&kp_args_config(CONFIG, "apply", &["--force"], &[cluster]));
        assert!(
            out.status.success(),
            "apply {} failed: {}",
            cluster.display(),
            stderr(&out)
        );
        stderr(&out)
    }

    /// Starts `apply --force` of `cluster` with its phase times on
    /// (`KPINSPECT_TRACE_TIMES`): its stderr's lines, as they come.
    fn spawn_traced_apply(&self, cluster: &Path) -> (Child, Lines<BufReader<ChildStderr>>) {
        let mut child = self
            .command(&std::env::var("KPINSPECT").expect("KPINSPECT"))
            .args(kp_args_config(CONFIG, "apply", &["--force"], &[cluster]))
            .env(kpinspect_node::TRACE_TIMES, "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn apply");
        let lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        (child, lines)
    }

    /// How long `apply --force` of `cluster` writes: from [`WRITES_BEGIN`]
    /// to its last `write:` phase time, each line timed as it comes.
    fn write_time(&self, cluster: &Path) -> Duration {
        let start = Instant::now();
        let (mut child, lines) = self.spawn_traced_apply(cluster);
        let lines: Vec<(Duration, String)> = lines
            .map(|l| (start.elapsed(), l.expect("stderr line")))
            .collect();
        let status = child.wait().expect("wait");
        let all = start.elapsed();
        let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert!(status.success(), "apply failed:\n{}", text.join("\n"));
        let began = lines
            .iter()
            .find(|(_, l)| l.contains(WRITES_BEGIN))
            .map(|(t, _)| *t);
        let ended = lines
            .iter()
            .rev()
            .find(|(_, l)| l.contains("time: ") && l.contains("write: "))
            .map(|(t, _)| *t);
        let (Some(began), Some(ended)) = (began, ended) else {
            panic!("no phase times in:\n{}", text.join("\n"));
        };
        eprintln!(
            "  apply of {}: writes from {began:.1?} to {ended:.1?} of {all:.1?}",
            cluster.display()
        );
        ended - began
    }

    /// The processes in the namespace (`ip netns pids`), each with its
    /// command line.
    fn processes(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "pids", NETNS])
            .output()
            .expect("ip netns pids");
        assert!(out.status.success(), "ip netns pids: {}", stderr(&out));
        stdout(&out)
            .split_whitespace()
            .map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                format!("{pid} {}", cmdline.trim())
            })
            .collect()
    }

    /// Waits until no process is left in the namespace (at most
    /// [`LEFTOVER_LIMIT`]); the ones seen.
    fn wait_empty(&self) -> BTreeSet<String> {
        let start = Instant::now();
        let mut seen = BTreeSet::new();
        loop {
            let now = self.processes();
            if now.is_empty() {
                return seen;
            }
            assert!(
                start.elapsed() < LEFTOVER_LIMIT,
                "processes left in the node {LEFTOVER_LIMIT:?} after the kill: {now:#?}"
            );
            seen.extend(now);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
    }
}

/// The phase time kpinspect prints (with `KPINSPECT_TRACE_TIMES`) right
/// before an IPVS apply's writes to IPVS, the sets, kube-ipvs0 and
/// iptables (the sysctls, written before, are not compared here).
const WRITES_BEGIN: &str = "time: sysctls written";

/// A kill point, after [`WRITES_BEGIN`]: uniform over an apply's write
/// time `writes` and a quarter more (at least 20 ms more).
fn kill_point(writes: Duration, rng: &mut Rng) -> Duration {
    let span = writes + (writes / 4).max(Duration::from_millis(20));
    Duration::from_micros(rng.below(span.as_micros() as u64))
}

/// One cluster: its file and what a fresh apply of it gives.
struct Target {
    name: &'static str,
    file: PathBuf,
    fresh: BTreeMap<String, String>,
}

impl Target {
    /// kube-proxy's iptables rules per table.
    fn tables(&self) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        per_table(&self.fresh["iptables"])
    }
}

/// What the node's kube-proxy state is: `from`'s, `to`'s, or partial.
fn classify(dump: &BTreeMap<String, String>, from: &Target, to: &Target) -> &'static str {
    if kube_proxy_differences(dump, &from.fresh).is_empty() {
        "old"
    } else if kube_proxy_differences(dump, &to.fresh).is_empty() {
        "new"
    } else {
        "partial"
    }
}

/// After a kill of an apply from `from` to `to`: foreign state untouched,
/// every table's kube-proxy rules `from`'s or `to`'s.
fn assert_whole_tables(
    dump: &BTreeMap<String, String>,
    foreign: &[String],
    from: &Target,
    to: &Target,
    when: &str,
) {
    assert_eq!(
        foreign_part(dump),
        foreign,
        "{when}: the foreign virtual server, set or rules changed"
    );
    let now = per_table(&dump["iptables"]);
    let (was, will) = (from.tables(), to.tables());
    let tables: BTreeSet<&String> = now.keys().chain(was.keys()).chain(will.keys()).collect();
    for table in tables {
        let state = now.get(table);
        assert!(
            state == was.get(table) || state == will.get(table),
            "{when}: table {table}'s kube-proxy rules are neither {}'s nor {}'s:\n{state:#?}\n{}'s:\n{:#?}\n{}'s:\n{:#?}",
            from.name,
            to.name,
            from.name,
            was.get(table),
            to.name,
            will.get(table)
        );
    }
}

/// Part 1: `kill -9` during apply, then convergence; the node has the old
/// cluster, and an apply writes for about `writes`.
fn kills(
    node: &Node,
    (old, new): (&Target, &Target),
    foreign: &[String],
    writes: Duration,
    dir: &Path,
) {
    let seed = read_number(dir, "seed");
    let runs = read_number(dir, "runs");
    let mut rng = Rng::new(seed);
    let mut killed_midway = 0;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for run in 0..runs {
        let (from, to) = if run.is_multiple_of(2) {
            (old, new)
        } else {
            (new, old)
        };
        let delay = kill_point(writes, &mut rng);
        let when = format!(
            "run {run} ({} -> {}, killed {delay:.1?} into the writes; replay: KPINSPECT_FAULT_SEED={seed} KPINSPECT_IPVS_FAULT_RUNS={})",
            from.name,
            to.name,
            run + 1
        );
        let t = Instant::now();
        // nsenter execs kpinspect: the pid is kpinspect's.
        let (mut child, mut lines) = node.spawn_traced_apply(&to.file);
        // Under TCG the time before the writes varies by seconds; their
        // own time much less.
        let writing = lines.any(|l| l.is_ok_and(|l| l.contains(WRITES_BEGIN)));
        if !writing {
            panic!("{when}: the apply did not write: {:?}", child.wait());
        }
        std::thread::sleep(delay);
        let midway = child.try_wait().expect("try_wait").is_none();
        killed_midway += usize::from(midway);
        let _ = child.kill();
        let _ = child.wait();
        drop(lines);
        // The killed apply's children (ipset restore, iptables-restore)
        // may still run, and write.
        let alive = node.processes();
        let killed = node.dump();
        assert_whole_tables(&killed, foreign, from, to, &format!("{when}, right after"));
        let right_after = classify(&killed, from, to);
        let (leftovers, settled) = if alive.is_empty() {
            // Nothing could write after the dump above.
            (BTreeSet::new(), killed)
        } else {
            let mut leftovers = node.wait_empty();
            leftovers.extend(alive);
            let settled = node.dump();
            assert_whole_tables(
                &settled,
                foreign,
                from,
                to,
                &format!("{when}, no process left"),
            );
            (leftovers, settled)
        };
        let state = classify(&settled, from, to);
        *seen.entry(state).or_default() += 1;
        let applied = node.apply(&to.file);
        // Both only read: side by side.
        let (diff, converged) = std::thread::scope(|scope| {
            let diff = scope.spawn(|| node.kp(&kp_args_config(CONFIG, "diff", &[], &[&to.file])));
            let converged = node.dump();
            (diff.join().expect("diff"), converged)
        });
        assert_eq!(
            diff.status.code(),
            Some(0),
            "{when}: not in sync after the next apply:\n{}{}\napply said:\n{applied}",
            stdout(&diff),
            stderr(&diff)
        );
        assert_eq!(foreign_part(&converged), foreign, "{when}: foreign state");
        let differs = kube_proxy_differences(&converged, &to.fresh);
        assert!(
            differs.is_empty(),
            "{when}: the next apply differs from a fresh one:\n{differs}apply said:\n{applied}"
        );
        eprintln!(
            "{when}: {} when killed, {right_after} right after, {state} once {} leftover process(es) went {leftovers:?}; converged ({:.1?})",
            if midway { "running" } else { "done" },
            leftovers.len(),
            t.elapsed()
        );
    }
    eprintln!(
        "faults (IPVS): {runs} kills (seed {seed}), {killed_midway} before the apply ended; \
         states once settled: {seen:?}"
    );
}

/// Part 2: read-only commands leave the node as it is; the node's state
/// ([`Node::state`]) at the end.
fn read_only(node: &Node, current: &Target, other: &Target) -> String {
    let path = |t: &Target| t.file.display().to_string();
    let config = root().join(CONFIG).display().to_string();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // Each command, its exit status and a text its output must hold (it
    // read the live node).
    let commands: Vec<(Vec<String>, i32, &str)> = vec![
        (s(&["dump", "--mode", "ipvs"]), 0, "172.30.0.10"),
        (
            s(&[
                "dump",
                "--mode",
                "ipvs",
                "-o",
                "json",
                "--cluster",
                &path(current),
                "--config",
                &config,
                "--node-ip",
                NODE_IP,
            ]),
            0,
            "\"services\"",
        ),
        (kp_args_config(CONFIG, "diff", &[], &[&other.file]), 1, ""),
        (
            s(&[
                "trace",
                "--mode",
                "ipvs",
                "--src",
                "10.0.0.5",
                "--dst",
                "172.30.0.10:80/tcp",
            ]),
            0,
            "IPVS 172.30.0.10:80/TCP",
        ),
        (
            kp_args_config(CONFIG, "compile", &["--format", "ipvsadm"], &[&other.file]),
            0,
            "172.30.0.10",
        ),
    ];
    let before = node.state();
    for (argv, status, shows) in &commands {
        let out = node.kp(argv);
        assert_eq!(
            out.status.code(),
            Some(*status),
            "{argv:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stdout(&out).contains(shows) && !stdout(&out).is_empty(),
            "{argv:?}: no {shows:?} in its output:\n{}",
            stdout(&out)
        );
        assert_same(&node.state(), &before, &format!("{argv:?}"));
    }
    before
}

/// Part 3: apply of malformed input changes nothing.
fn bad_input(node: &Node, other: &Target, state: Option<String>) {
    let (configs, clusters): (Vec<_>, Vec<_>) = bad_inputs()
        .into_iter()
        .partition(|(config, _)| config.is_some());
    assert!(
        clusters.len() >= BAD_CLUSTERS,
        "{} bad clusters",
        clusters.len()
    );
    assert!(!configs.is_empty(), "no bad configuration");
    let picked = (0..BAD_CLUSTERS).map(|i| &clusters[i * clusters.len() / BAD_CLUSTERS]);
    let cases: Vec<Vec<String>> = picked
        .chain(&configs)
        .map(|(config, files)| {
            let files: Vec<PathBuf> = files.iter().map(|f| root().join(f)).collect();
            let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
            match config {
                // With the other cluster: were the configuration taken,
                // the apply would change the node.
                Some(config) => kp_args_config(config, "apply", &["--force"], &[&other.file]),
                None => kp_args_config(CONFIG, "apply", &["--force"], &files),
            }
        })
        .collect();
    // The read-only commands' last state, if they got that far.
    let before = state.unwrap_or_else(|| node.state());
    for argv in &cases {
        let out = node.kp(argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
    }
    // Once for all (a read of the node costs seconds under TCG).
    assert_same(
        &node.state(),
        &before,
        &format!("one of the applies of malformed input {cases:#?}"),
    );
}

/// The VM check (see the module documentation).
pub fn faults_ipvs(dir: &Path) {
    // No backtrace: reading the debug info over 9p takes seconds.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let start = Instant::now();
    let _ = Command::new("modprobe").arg("ip_vs").status();
    // What a fresh apply of each cluster gives, meanwhile.
    let fresh = [OLD, NEW].map(|c| (c, spawn_fresh(&root().join(c))));
    let node = Node::new();
    let empty = node.dump();
    let foreign = foreign_part(&empty);
    assert!(
        kube_proxy_state(&empty["iptables"]).is_empty(),
        "the new namespace has kube-proxy rules"
    );
    node.apply(&root().join(NEW));
    let t = Instant::now();
    let [old, new] = fresh.map(|(c, child)| Target {
        name: if c == OLD { "old" } else { "new" },
        file: root().join(c),
        fresh: fresh_sections(child),
    });
    assert!(
        !kube_proxy_differences(&old.fresh, &new.fresh).is_empty(),
        "the two clusters must differ"
    );
    eprintln!("  fresh namespaces (waited): {:.1?}", t.elapsed());
    // The kill points fall in an apply's writes: how long they take (new
    // to old; the other way writes about as much), measured with nothing
    // else running.
    let writes = node.write_time(&root().join(OLD));
    let differs = kube_proxy_differences(&node.dump(), &old.fresh);
    assert!(differs.is_empty(), "old cluster applied:\n{differs}");
    eprintln!("set-up: {:.1?}", start.elapsed());

    let mut failed = Vec::new();
    let mut part = |name: &str, f: &mut dyn FnMut()| {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(f));
        eprintln!("{name}: {:.1?}", t.elapsed());
        if result.is_err() {
            failed.push(name.to_string());
        }
    };
    part("kill -9 during apply", &mut || {
        kills(&node, (&old, &new), &foreign, writes, dir)
    });
    // The kills end on the old cluster after an even number of runs.
    let current = if read_number(dir, "runs").is_multiple_of(2) {
        (&old, &new)
    } else {
        (&new, &old)
    };
    let mut state = None;
    part("read-only commands", &mut || {
        state = Some(read_only(&node, current.0, current.1));
    });
    part("apply of malformed input", &mut || {
        bad_input(&node, current.1, state.take())
    });
    eprintln!("faults (IPVS): {:.1?} in all", start.elapsed());
    assert!(failed.is_empty(), "failed (above): {failed:?}");
}

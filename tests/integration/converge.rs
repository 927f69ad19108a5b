//! Randomized convergence of `kpinspect apply` on a real kernel, both
//! backends: seeded sequences of small random clusters, each step one or two
//! mutations (endpoints added, removed, moved between nodes, not ready or
//! terminating; services added and deleted; ports, protocols and types
//! changed; session affinity on, off or retimed; externalTrafficPolicy
//! switched), applied with the real binary to one node namespace that also
//! holds other programs' rules. After every step:
//!
//! - `kpinspect diff` reports the node in sync and a second
//!   `apply --dry-run` prints nothing;
//! - the foreign rules are byte-identical to what they were;
//! - kube-proxy's part of `iptables-save` equals that of a fresh apply of
//!   the same cluster to a second namespace (with the same foreign rules).
//!
//! A failing sequence names its seed; `KPINSPECT_SEED=N` replays only that
//! sequence (on both backends; filter the test name for one).

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::node::{
    Backend, Layout, NODE_IP, TestNode, add_foreign_state, available, foreign, kp, kube_proxy_state,
};
use crate::random_cluster::{Cluster, Rng};
use crate::util::{ok, stderr, stdout};

/// Sequences per backend, and steps per sequence (the first applies the
/// sequence's initial cluster over whatever the previous one left).
const SEQUENCES: u64 = 10;
const STEPS: usize = 10;

/// `apply`/`diff` with the routed fixture's configuration and `cluster`.
fn run(node: &TestNode, command: &[&str], cluster: &Path) -> std::process::Output {
    let config = crate::util::root().join("fixtures/routed/config.yaml");
    let node_ip = NODE_IP.to_string();
    let mut argv: Vec<&str> = command.to_vec();
    argv.extend([
        "--config",
        config.to_str().expect("utf-8 path"),
        "--node-ip",
        &node_ip,
        cluster.to_str().expect("utf-8 path"),
    ]);
    kp(node, &argv)
}

/// The two namespaces of one backend and what they start with.
struct Nodes {
    /// Where every step is applied.
    main: TestNode,
    /// Reset to `baseline` and applied fresh on every step.
    fresh: TestNode,
    /// The foreign state of both (`iptables-save` of `fresh` before any
    /// apply, with every table kube-proxy writes).
    baseline: String,
    /// [`foreign`] of `main` before any apply.
    foreign: Vec<String>,
    /// The cluster file.
    file: PathBuf,
}

impl Nodes {
    fn new(backend: Backend) -> Nodes {
        let main = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        let fresh = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&main);
        add_foreign_state(&fresh);
        let mut baseline = fresh.save();
        for table in ["nat", "filter", "mangle"] {
            if !baseline.contains(&format!("*{table}\n")) {
                baseline.push_str(&format!("*{table}\nCOMMIT\n"));
            }
        }
        let foreign = foreign(&main.save());
        let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "converge-{}-{}.yaml",
            backend.name(),
            std::process::id()
        ));
        Nodes {
            main,
            fresh,
            baseline,
            foreign,
            file,
        }
    }

    /// Applies `cluster` to `main` and checks everything the module
    /// documentation lists.
    fn step(&self, cluster: &Cluster) {
        std::fs::write(&self.file, cluster.yaml()).expect("write cluster");
        let plan = ok(
            &run(&self.main, &["apply", "--dry-run"], &self.file),
            "apply --dry-run",
        );
        // A random step may delete most services at once, which apply
        // refuses without --force (that guard has its own tests).
        let out = run(&self.main, &["apply", "--force"], &self.file);
        assert!(
            out.status.success(),
            "apply failed: {}\npayload:\n{plan}",
            stderr(&out)
        );
        let diff = run(&self.main, &["diff"], &self.file);
        assert_eq!(
            diff.status.code(),
            Some(0),
            "not in sync after apply:\n{}\npayload:\n{plan}",
            stdout(&diff)
        );
        let again = ok(
            &run(&self.main, &["apply", "--dry-run"], &self.file),
            "second apply --dry-run",
        );
        assert_eq!(
            again, "",
            "a second apply would write; the first wrote:\n{plan}"
        );
        let save = self.main.save();
        assert_eq!(foreign(&save), self.foreign, "foreign rules changed");

        self.fresh
            .restore_tables(&self.baseline)
            .expect("reset the fresh node");
        ok(
            &run(&self.fresh, &["apply", "--force"], &self.file),
            "fresh apply",
        );
        let (got, want) = (
            kube_proxy_state(&save),
            kube_proxy_state(&self.fresh.save()),
        );
        if got != want {
            let mut report = String::new();
            for key in got
                .keys()
                .chain(want.keys().filter(|k| !got.contains_key(*k)))
            {
                if got.get(key) != want.get(key) {
                    let _ = writeln!(
                        report,
                        "{key}:\n  applied: {:#?}\n  fresh:   {:#?}",
                        got.get(key),
                        want.get(key)
                    );
                }
            }
            panic!("kube-proxy state differs from a fresh apply:\n{report}payload:\n{plan}");
        }
    }
}

/// Runs the sequence of `seed` on `nodes`; on failure, panics naming the
/// seed, the step, the mutations so far and the cluster.
fn sequence(nodes: &Nodes, backend: Backend, seed: u64) {
    let mut rng = Rng(seed);
    let mut cluster = Cluster::random(&mut rng);
    let mut log = vec!["initial cluster".to_string()];
    for step in 0..STEPS {
        if step > 0 {
            let n = 1 + rng.below(2);
            log.push(
                (0..n)
                    .map(|_| cluster.mutate(&mut rng))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
        }
        let result = catch_unwind(AssertUnwindSafe(|| nodes.step(&cluster)));
        if let Err(e) = result {
            eprintln!(
                "{backend:?}: sequence with seed {seed} failed at step {step} \
                 (replay: KPINSPECT_SEED={seed}); steps:\n  {}\ncluster:\n{}",
                log.join("\n  "),
                cluster.yaml()
            );
            resume_unwind(e);
        }
    }
}

fn converge(backend: Backend, first_seed: u64) {
    let seeds: Vec<u64> = match std::env::var("KPINSPECT_SEED") {
        Ok(s) => vec![s.parse().expect("KPINSPECT_SEED is a number")],
        Err(_) => (first_seed..first_seed + SEQUENCES).collect(),
    };
    let nodes = Nodes::new(backend);
    let start = Instant::now();
    for &seed in &seeds {
        sequence(&nodes, backend, seed);
    }
    eprintln!(
        "{backend:?}: {} sequences of {STEPS} steps converged in {:.1?}",
        seeds.len(),
        start.elapsed()
    );
    let _ = std::fs::remove_file(&nodes.file);
}

#[test]
fn random_changes_converge_legacy() {
    if available() {
        converge(Backend::Legacy, 1);
    }
}

#[test]
fn random_changes_converge_nft() {
    if available() {
        converge(Backend::Nft, 1001);
    }
}

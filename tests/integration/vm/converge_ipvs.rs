//! Randomized convergence of `kpinspect apply --mode ipvs` on the VM's
//! kernel: seeded sequences of random clusters (`random_cluster.rs`, the
//! generator of the iptables-mode test in `converge.rs`), each step one or
//! two mutations, applied to the check's namespace, which also holds a
//! foreign IPVS virtual server, a foreign ipset and foreign iptables rules.
//! After every step:
//!
//! - `kpinspect diff --mode ipvs` exits 0 and `apply --mode ipvs --dry-run`
//!   prints nothing;
//! - the foreign virtual server, set and rules are byte-identical;
//! - `ipvsadm -Sn` (the foreign virtual server aside), the `KUBE-*` lines
//!   of `ipset save` (without the sets' random `initval`), the addresses of
//!   kube-ipvs0 and kube-proxy's part of `iptables-save` equal those of a
//!   fresh apply of the same cluster into a second namespace (new and
//!   empty for each step).
//!
//! Graceful termination leaves a removed TCP real server at weight 0 only
//! while it has connections; nothing connects here, so none may linger.
//!
//! A failing sequence names its seed. `KPINSPECT_SEED=N` on the host
//! replays only that sequence, `KPINSPECT_IPVS_CONVERGE=SEQUENCESxSTEPS`
//! (e.g. `4x6`) runs more than the default: [`prepare`] writes both into
//! the check's directory, which the VM shares.
//!
//! Under TCG every process costs, and a step runs kpinspect four times
//! (one in the new namespace, meanwhile): about 20 s a step on a busy
//! 2-core host, so the default is 2 sequences of 2 steps (the second
//! sequence's first step replaces the whole cluster), about 80 s there.
//! The check's own limit leaves room for `KPINSPECT_IPVS_CONVERGE=4x6`
//! (with `KPINSPECT_VM_TIMEOUT=900` for the boot).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use crate::node::{foreign, kube_proxy_state};
use crate::random_cluster::{Cluster, Rng};
use crate::util::{root, stderr, stdout};

/// Sequences, and steps per sequence (the first applies the sequence's
/// initial cluster over whatever the previous one left).
const SEQUENCES: u64 = 2;
const STEPS: usize = 2;
/// The first seed (the iptables-mode test uses 1.. and 1001..).
const FIRST_SEED: u64 = 2001;
/// The node's address (node ports are served on it).
pub(super) const NODE_IP: &str = "192.168.0.10";

/// What the applied namespace holds besides kube-proxy's state (also
/// `faults_ipvs.rs`'s node).
pub(super) const FOREIGN_SETUP: &str = r#"
ipvsadm -A -t 198.51.100.7:443 -s wrr
ipvsadm -a -t 198.51.100.7:443 -r 10.9.9.9:443 -m -w 3
ipset create FOREIGN-SET hash:ip
ipset add FOREIGN-SET 10.9.9.9
iptables -N FOREIGN-CHAIN
iptables -A FOREIGN-CHAIN -m set --match-set FOREIGN-SET src -j ACCEPT
iptables -I INPUT -j FOREIGN-CHAIN
iptables -t nat -A POSTROUTING -s 10.9.9.0/24 -j MASQUERADE
"#;

/// Prints what the steps compare, in `=== name` sections ([`sections`]).
pub(super) const DUMP: &str = r#"
echo '=== ipvsadm'
ipvsadm -Sn | grep -vF 198.51.100.7 | sort || true
echo '=== ipset'
# A hash set's initval is random.
ipset save | grep -E '^(create|add) KUBE-' | sed 's/ initval 0x[0-9a-f]*//' | sort || true
echo '=== kube-ipvs0'
{ ip -o addr show dev kube-ipvs0 2>/dev/null || true; } | awk '{print $4}' | sort
echo '=== foreign-ipvs'
ipvsadm -Sn | grep -F 198.51.100.7 || true
echo '=== foreign-ipset'
ipset save FOREIGN-SET 2>/dev/null || true
echo '=== iptables'
iptables-save
"#;

/// Writes what the check runs into its directory: the seeds (`seeds`:
/// `KPINSPECT_SEED`'s alone when set, else as many as
/// `KPINSPECT_IPVS_CONVERGE` or the default asks) and the steps per
/// sequence (`steps`).
pub fn prepare(dir: &Path) {
    let (sequences, steps) = match std::env::var("KPINSPECT_IPVS_CONVERGE") {
        Ok(s) => {
            let (n, k) = s
                .split_once('x')
                .expect("KPINSPECT_IPVS_CONVERGE is SEQUENCESxSTEPS");
            (
                n.parse().expect("a number of sequences"),
                k.parse().expect("a number of steps"),
            )
        }
        Err(_) => (SEQUENCES, STEPS),
    };
    let seeds: Vec<u64> = match std::env::var("KPINSPECT_SEED") {
        Ok(s) => vec![s.parse().expect("KPINSPECT_SEED is a number")],
        Err(_) => (FIRST_SEED..FIRST_SEED + sequences).collect(),
    };
    let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
    fs::write(dir.join("seeds"), text).expect("write seeds");
    fs::write(dir.join("steps"), steps.to_string()).expect("write steps");
}

fn bash(script: &str) -> String {
    bash_in(None, script)
}

/// Runs `script` with `bash -euo pipefail`, in network namespace `netns`
/// (a path, e.g. `/run/netns/NAME`; else this one): it must succeed; its
/// stdout.
pub(super) fn bash_in(netns: Option<&Path>, script: &str) -> String {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("bash");
            c
        }
        None => Command::new("bash"),
    };
    let out = cmd
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "script failed: {}\n{script}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// `kpinspect COMMAND --mode ipvs` with the routed fixture's configuration
/// for IPv4, then `extra`, on `cluster`.
fn kp_args(command: &str, extra: &[&str], cluster: &Path) -> Vec<String> {
    kp_args_config(CONFIG, command, extra, &[cluster])
}

/// The configuration the steps apply with (a path from the root).
pub(super) const CONFIG: &str = "fixtures/routed/config.yaml";

/// `kpinspect COMMAND --mode ipvs` with configuration `config` (a path from
/// the root) for IPv4 on [`NODE_IP`], then `extra`, on the cluster files
/// `clusters`.
pub(super) fn kp_args_config(
    config: &str,
    command: &str,
    extra: &[&str],
    clusters: &[&Path],
) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        command.into(),
        "--mode".into(),
        "ipvs".into(),
        "--config".into(),
        root().join(config).display().to_string(),
        "--node-ip".into(),
        NODE_IP.into(),
        "--family".into(),
        "ipv4".into(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    argv.extend(clusters.iter().map(|c| c.display().to_string()));
    argv
}

fn kp(command: &str, extra: &[&str], cluster: &Path) -> Output {
    let t = Instant::now();
    let out = Command::new(std::env::var("KPINSPECT").expect("KPINSPECT"))
        .args(kp_args(command, extra, cluster))
        .current_dir(root())
        .output()
        .expect("run kpinspect");
    eprintln!("  kpinspect {command} {extra:?}: {:.1?}", t.elapsed());
    out
}

/// A shell word.
pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// [`DUMP`]'s sections.
pub(super) fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut name = String::new();
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("=== ") {
            name = n.to_string();
            out.insert(name.clone(), String::new());
        } else if let Some(s) = out.get_mut(&name) {
            s.push_str(line);
            s.push('\n');
        }
    }
    out
}

/// What the fresh namespace and the applied one must agree on.
fn kube_proxy_part(dump: &BTreeMap<String, String>) -> Vec<String> {
    let rules = kube_proxy_state(&dump["iptables"]);
    vec![
        dump["ipvsadm"].clone(),
        dump["ipset"].clone(),
        dump["kube-ipvs0"].clone(),
        format!("{rules:#?}"),
    ]
}

/// The foreign state, which no step may change.
pub(super) fn foreign_part(dump: &BTreeMap<String, String>) -> Vec<String> {
    let mut v = vec![dump["foreign-ipvs"].clone(), dump["foreign-ipset"].clone()];
    v.extend(foreign(&dump["iptables"]));
    v
}

struct Run {
    /// The cluster file.
    file: std::path::PathBuf,
    /// [`foreign_part`] before the first apply.
    foreign: Vec<String>,
}

/// Starts a fresh apply of `cluster` (a file) into a new, empty network
/// namespace, which then prints its [`DUMP`]; [`fresh_sections`] waits for
/// it.
pub(super) fn spawn_fresh(cluster: &Path) -> Child {
    let apply = kp_args("apply", &["--force"], cluster)
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let fresh_script = format!(
        "cd {}\n\"$KPINSPECT\" {apply} >/dev/null\n{DUMP}",
        quote(&root().display().to_string())
    );
    Command::new("unshare")
        .args(["--net", "bash", "-euo", "pipefail", "-c", &fresh_script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare")
}

/// The sections of a [`spawn_fresh`]'s dump, once it is done.
pub(super) fn fresh_sections(fresh: Child) -> BTreeMap<String, String> {
    let fresh = fresh.wait_with_output().expect("fresh namespace");
    assert!(
        fresh.status.success(),
        "fresh apply failed: {}",
        stderr(&fresh)
    );
    sections(&stdout(&fresh))
}

/// How kube-proxy's part of two [`DUMP`]s differs, per tool (empty if it
/// does not): `got` is the node's, `want` a fresh apply's.
pub(super) fn kube_proxy_differences(
    got: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> String {
    let (got, want) = (kube_proxy_part(got), kube_proxy_part(want));
    let names = [
        "ipvsadm -Sn",
        "ipset save (KUBE-*)",
        "kube-ipvs0",
        "iptables",
    ];
    let mut report = String::new();
    for ((name, g), w) in names.iter().zip(&got).zip(&want) {
        if g != w {
            let _ = writeln!(report, "{name}:\n  applied:\n{g}\n  fresh:\n{w}");
        }
    }
    report
}

impl Run {
    fn step(&self, cluster: &Cluster) {
        fs::write(&self.file, cluster.yaml()).expect("write cluster");
        // The fresh apply, in a new namespace, runs meanwhile (the VM has
        // two CPUs).
        let fresh = spawn_fresh(&self.file);
        let out = kp("apply", &["--force"], &self.file);
        assert!(out.status.success(), "apply failed: {}", stderr(&out));
        let applied = stderr(&out);
        let diff = kp("diff", &[], &self.file);
        assert_eq!(
            diff.status.code(),
            Some(0),
            "not in sync after apply:\n{}{}\napply said:\n{applied}",
            stdout(&diff),
            stderr(&diff)
        );
        let again = kp("apply", &["--dry-run", "--force"], &self.file);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(
            stdout(&again),
            "",
            "a second apply would write; the first said:\n{applied}"
        );
        let t = Instant::now();
        let main = sections(&bash(DUMP));
        eprintln!("  dump: {:.1?}", t.elapsed());
        assert!(
            !main["ipvsadm"].contains(" -w 0"),
            "a real server lingers at weight 0 without connections:\n{}",
            main["ipvsadm"]
        );
        assert_eq!(foreign_part(&main), self.foreign, "foreign state changed");

        let t = Instant::now();
        let fresh = fresh_sections(fresh);
        eprintln!("  fresh namespace (waited): {:.1?}", t.elapsed());
        let report = kube_proxy_differences(&main, &fresh);
        assert!(
            report.is_empty(),
            "differs from a fresh apply:\n{report}apply said:\n{applied}"
        );
    }
}

/// The VM check: every seed's sequence (see the module documentation).
pub fn converge_ipvs(dir: &Path) {
    // No backtrace: reading the debug info over 9p takes seconds.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let _ = Command::new("modprobe").arg("ip_vs").status();
    bash(FOREIGN_SETUP);
    let run = Run {
        file: std::env::temp_dir().join("converge-ipvs.yaml"),
        foreign: foreign_part(&sections(&bash(DUMP))),
    };
    let seeds: Vec<u64> = fs::read_to_string(dir.join("seeds"))
        .expect("seeds (written by prepare)")
        .lines()
        .map(|l| l.parse().expect("a seed"))
        .collect();
    let steps: usize = fs::read_to_string(dir.join("steps"))
        .expect("steps (written by prepare)")
        .trim()
        .parse()
        .expect("a number of steps");
    let start = Instant::now();
    for &seed in &seeds {
        let mut rng = Rng(seed);
        let mut cluster = Cluster::random(&mut rng);
        let mut log = vec!["initial cluster".to_string()];
        for step in 0..steps {
            if step > 0 {
                let n = 1 + rng.below(2);
                log.push(
                    (0..n)
                        .map(|_| cluster.mutate(&mut rng))
                        .collect::<Vec<_>>()
                        .join("; "),
                );
            }
            let t = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| run.step(&cluster)));
            eprintln!("seed {seed} step {step}: {:.1?}", t.elapsed());
            if let Err(e) = result {
                eprintln!(
                    "IPVS mode: sequence with seed {seed} failed at step {step} \
                     (replay: KPINSPECT_SEED={seed} KPINSPECT_VM_CHECKS=converge); steps:\n  {}\ncluster:\n{}",
                    log.join("\n  "),
                    cluster.yaml()
                );
                resume_unwind(e);
            }
        }
    }
    eprintln!(
        "IPVS mode: {} sequences of {steps} steps converged in {:.1?}",
        seeds.len(),
        start.elapsed()
    );
}

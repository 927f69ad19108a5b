//! `kpinspect apply`, `diff` and `cleanup` on a real kernel: a routed test
//! node made of network namespaces (see `node.rs`), both iptables backends.
//! Every command runs inside the test's node namespace (`ip netns exec`),
//! never in the machine's own.

use std::net::IpAddr;
use std::process::{Command, Output};

use kpinspect_core::mode::{Owner, chain_owner, ipvs, jump_owner};
use kpinspect_core::netfilter::Rule;

use crate::node::{
    Backend, CLIENT_IP, Layout, NODE_IP, TestNode, add_foreign_state, available, foreign, kp,
    pod_ip,
};
use crate::util::{ok, stderr, stdout};

const CONFIG: &str = "fixtures/routed/config.yaml";
const CLUSTER: &str = "fixtures/routed/cluster.yaml";
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";
const WEB: (&str, u16) = ("172.30.0.10", 80);

/// `rel` under the repository root, as an argument.
fn root(rel: &str) -> String {
    crate::util::root().join(rel).display().to_string()
}

/// `apply`/`diff` arguments for cluster file `cluster`.
fn node_args(cluster: &str) -> Vec<String> {
    vec![
        "--config".into(),
        root(CONFIG),
        "--node-ip".into(),
        NODE_IP.to_string(),
        root(cluster),
    ]
}

fn apply(node: &TestNode, cluster: &str, extra: &[&str]) -> Output {
    let args = node_args(cluster);
    let mut argv: Vec<&str> = vec!["apply"];
    argv.extend(extra);
    argv.extend(args.iter().map(String::as_str));
    kp(node, &argv)
}

fn diff_status(node: &TestNode, cluster: &str) -> (Option<i32>, String) {
    let args = node_args(cluster);
    let mut argv: Vec<&str> = vec!["diff"];
    argv.extend(args.iter().map(String::as_str));
    let out = kp(node, &argv);
    (out.status.code(), stdout(&out) + &stderr(&out))
}

/// Which pods `n` connections from `from` to `ip:port` reached.
fn reached(node: &TestNode, from: &str, ip: &str, port: u16, n: usize) -> Vec<IpAddr> {
    let ip: IpAddr = ip.parse().expect("ip");
    let mut hit: Vec<IpAddr> = node
        .connect_many(from, ip, port, n)
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("connection to {ip}:{port} failed: {e}"))
                .server
                .ip()
        })
        .collect();
    hit.sort();
    hit.dedup();
    hit
}

fn pods(ids: &[usize]) -> Vec<IpAddr> {
    ids.iter().map(|i| IpAddr::V4(pod_ip(*i))).collect()
}

/// Apply, idempotence, an endpoint change, stale chains, foreign rules.
fn apply_converges(backend: Backend) {
    let mut node = TestNode::new(Layout {
        pods: 3,
        backend,
        ipv6: false,
    });
    add_foreign_state(&node);
    let before = foreign(&node.save());
    node.start_servers(&[8080, 8081]);
    let pod0 = node.pods[0].ns.clone();

    assert_eq!(
        diff_status(&node, CLUSTER).0,
        Some(1),
        "an empty node differs"
    );
    let out = apply(&node, CLUSTER, &[]);
    ok(&out, "apply");
    let (code, report) = diff_status(&node, CLUSTER);
    assert_eq!(code, Some(0), "not in sync after apply:\n{report}");
    // Idempotent: nothing to write, and --dry-run prints nothing.
    assert_eq!(ok(&apply(&node, CLUSTER, &["--dry-run"]), "dry run"), "");
    assert!(stderr(&apply(&node, CLUSTER, &[])).contains("nothing written"));

    // Real connections: ClusterIP from a pod, NodePort from the client.
    // (30 connections over 3 equiprobable endpoints miss one with
    // probability 3·(2/3)^30 ≈ 1.6e-5.)
    assert_eq!(reached(&node, &pod0, WEB.0, WEB.1, 30), pods(&[0, 1, 2]));
    let client = node.client.clone();
    assert_eq!(
        reached(&node, &client, &NODE_IP.to_string(), 30080, 30),
        pods(&[1, 2])
    );

    // Scale web down and delete the NodePort service: a small payload,
    // KUBE-SERVICES edited rule by rule, np's chains deleted.
    let payload = ok(&apply(&node, SCALED, &["--dry-run"]), "dry run");
    assert!(
        !payload.contains(":KUBE-SERVICES "),
        "KUBE-SERVICES rewritten:\n{payload}"
    );
    assert!(payload.contains("-D KUBE-SERVICES "), "{payload}");
    assert!(payload.matches("-X KUBE-").count() >= 3, "{payload}");
    assert!(!payload.contains("-X KUBE-SERVICES"));
    ok(&apply(&node, SCALED, &[]), "apply scaled");
    let (code, report) = diff_status(&node, SCALED);
    assert_eq!(code, Some(0), "not in sync after the change:\n{report}");
    assert_eq!(reached(&node, &pod0, WEB.0, WEB.1, 30), pods(&[0, 1]));
    assert!(
        node.connect(&client, IpAddr::V4(NODE_IP), 30080).is_err(),
        "the deleted NodePort still answers"
    );
    let save = node.save();
    assert!(!save.contains("routed/np"), "np's rules are left:\n{save}");
    assert_eq!(foreign(&save), before, "apply touched foreign rules");

    // Cleanup of iptables mode leaves exactly the foreign state.
    let report = ok(
        &kp(
            &node,
            &[
                "cleanup",
                "--mode",
                "iptables",
                "--family",
                "ipv4",
                "--verbose",
            ],
        ),
        "cleanup",
    );
    assert!(
        report.contains("removed chain nat KUBE-SERVICES"),
        "{report}"
    );
    let save = node.save();
    assert_eq!(foreign(&save), before, "cleanup touched foreign rules");
    for line in save
        .lines()
        .filter(|l| l.starts_with(':') || l.starts_with("-A"))
    {
        let name = line[1..].split_whitespace().next().unwrap_or_default();
        assert!(
            !name.starts_with("KUBE-") || chain_owner("filter", name) == Owner::Kubelet,
            "left after cleanup: {line}"
        );
        if let Ok(r) = Rule::parse(line) {
            assert!(jump_owner(&r).is_none(), "jump left after cleanup: {line}");
        }
    }
    assert!(CLIENT_IP.is_private());
}

#[test]
fn apply_converges_nft() {
    if available() {
        apply_converges(Backend::Nft);
    }
}

#[test]
fn apply_converges_legacy() {
    if available() {
        apply_converges(Backend::Legacy);
    }
}

/// A restore the kernel refuses (the nfacct counters kube-proxy's rules
/// name do not exist) changes nothing, names the line and chain, and the
/// next apply converges.
#[test]
fn a_failed_apply_changes_nothing_and_the_next_converges() {
    if !available() {
        return;
    }
    let shims = std::env::temp_dir().join(format!("kpinspect-shim-{}", std::process::id()));
    std::fs::create_dir_all(&shims).expect("shim dir");
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&node);
        let before = node.save();
        // Another program removes an nfacct counter after apply ensured it
        // and before the rules that use it are written: the real restore
        // refuses the rule and leaves its table as it was.
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {}", backend.restore())])
                .output()
                .expect("sh")
                .stdout,
        )
        .expect("utf-8");
        let shim = shims.join(backend.restore());
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\nnfacct del ct_state_invalid_dropped_pkts >/dev/null 2>&1\nexec {} \"$@\"\n",
                real.trim()
            ),
        )
        .expect("shim");
        Command::new("chmod")
            .args(["+x"])
            .arg(&shim)
            .status()
            .expect("chmod");
        let path = format!(
            "PATH={}:{}",
            shims.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let args = node_args(CLUSTER);
        let mut argv = vec![
            "env",
            path.as_str(),
            env!("CARGO_BIN_EXE_kpinspect"),
            "apply",
        ];
        argv.extend(args.iter().map(String::as_str));
        let out = node.node_exec(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{backend:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("apply failed at payload line "), "{err}");
        // nft names the rule; legacy the table's COMMIT.
        assert!(
            err.contains(": KUBE-FORWARD") || err.contains(": table filter"),
            "{backend:?}: {err}"
        );
        assert_eq!(
            strip_counters(&node.save()),
            strip_counters(&before),
            "{backend:?}: a failed apply changed the node"
        );
        // The next apply ensures the counter again and converges.
        ok(&apply(&node, CLUSTER, &[]), "second apply");
        assert_eq!(diff_status(&node, CLUSTER).0, Some(0));
    }
    let _ = std::fs::remove_dir_all(&shims);
}

/// A save without counters, and with each built-in chain's rules sorted:
/// kube-proxy (and kpinspect) leave a jump rule where it is when it is
/// already there, so after a mode switch their order can differ.
pub(crate) fn same_state(save: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut group: Vec<String> = Vec::new();
    for line in strip_counters(save).lines() {
        let builtin = line
            .strip_prefix("-A ")
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|c| c.chars().all(|ch| ch.is_ascii_uppercase()));
        if builtin
            && group
                .first()
                .is_none_or(|g| g.split(' ').nth(1) == line.split(' ').nth(1))
        {
            group.push(line.to_string());
            continue;
        }
        group.sort();
        out.append(&mut group);
        if builtin {
            group.push(line.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    group.sort();
    out.append(&mut group);
    out.join("\n")
}

fn strip_counters(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Two applies at once: the lock serialises them, nothing is written twice.
#[test]
fn racing_applies_end_right() {
    if !available() {
        return;
    }
    let node = TestNode::new(Layout {
        pods: 0,
        backend: Backend::Nft,
        ipv6: false,
    });
    let spawn = || {
        let args = node_args(CLUSTER);
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.node,
                env!("CARGO_BIN_EXE_kpinspect"),
                "apply",
            ])
            .args(&args)
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().expect("a"), b.join().expect("b"))
    });
    for out in [a.expect("run"), b.expect("run")] {
        ok(&out, "racing apply");
    }
    assert_eq!(diff_status(&node, CLUSTER).0, Some(0));
    let save = node.save();
    let jumps = save
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING") && l.contains("KUBE-SERVICES"))
        .count();
    assert_eq!(jumps, 1, "duplicate jump rules:\n{save}");
}

/// IPVS mode's rules, jumps and ipsets, as kube-proxy programs them.
pub(crate) fn program_ipvs_mode(node: &TestNode) {
    let sets = std::fs::read_to_string(root("fixtures/ipvs-mode/ipsets.txt")).expect("ipsets");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.node, "ipset", "restore", "-exist"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ipset");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sets.as_bytes())
        .expect("write");
    assert!(child.wait().expect("ipset").success());
    let rules = std::fs::read_to_string(root("fixtures/ipvs-mode/restore.txt")).expect("restore");
    node.restore(&rules).expect("IPVS-mode restore");
    // kube-proxy's "ensure": -C, and -I at the top when absent.
    let ipt = node.backend.iptables();
    for j in ipvs::JUMP_RULES {
        let args = j.args();
        let mut check = vec![ipt.as_str(), "-t", j.table, "-C", j.chain];
        check.extend(args.iter().map(String::as_str));
        if !node.node_exec(&check).status.success() {
            let mut insert = vec![ipt.as_str(), "-t", j.table, "-I", j.chain];
            insert.extend(args.iter().map(String::as_str));
            node.node_exec_ok(&insert);
        }
    }
}

/// A node with other programs' state on it.
fn fresh(backend: Backend) -> TestNode {
    let node = TestNode::new(Layout {
        pods: 0,
        backend,
        ipv6: false,
    });
    add_foreign_state(&node);
    node
}

/// `cleanup --stale-only` with `config`, IPv4.
fn cleanup_stale(node: &TestNode, config: &str, dry_run: bool) -> String {
    let config = root(config);
    let mut argv = vec![
        "cleanup",
        "--stale-only",
        "--config",
        &config,
        "--family",
        "ipv4",
    ];
    if dry_run {
        argv.push("--dry-run");
    }
    ok(&kp(node, &argv), "cleanup")
}

pub(crate) fn ipsets(node: &TestNode) -> Vec<String> {
    let mut v: Vec<String> = node
        .node_exec_ok(&["ipset", "list", "-n"])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

/// After switching modes, `cleanup --stale-only` removes exactly the old
/// mode's leftovers: the node ends as one that only ever ran the new mode.
#[test]
fn stale_only_cleanup_after_a_mode_switch() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        // iptables → IPVS.
        let (pure, switched) = (fresh(backend), fresh(backend));
        program_ipvs_mode(&pure);
        ok(&apply(&switched, CLUSTER, &[]), "apply");
        program_ipvs_mode(&switched);
        let dry = cleanup_stale(&switched, "fixtures/ipvs-mode/config.yaml", true);
        assert!(dry.contains("-X KUBE-SVC-"), "{dry}");
        let program = format!("# iptables-{}-restore --noflush\n", backend.name());
        assert!(dry.starts_with(&program), "{dry}");
        cleanup_stale(&switched, "fixtures/ipvs-mode/config.yaml", false);
        let to_ipvs = (same_state(&switched.save()), same_state(&pure.save()));
        assert_eq!(to_ipvs.0, to_ipvs.1, "{backend:?}: iptables → IPVS");
        assert_eq!(ipsets(&switched), ipsets(&pure));
        assert_eq!(ipsets(&pure).len(), 17);

        // IPVS → iptables.
        let (pure, switched) = (fresh(backend), fresh(backend));
        ok(&apply(&pure, CLUSTER, &[]), "apply");
        program_ipvs_mode(&switched);
        ok(&apply(&switched, CLUSTER, &[]), "apply over IPVS state");
        cleanup_stale(&switched, CONFIG, false);
        let to_iptables = (same_state(&switched.save()), same_state(&pure.save()));
        assert_eq!(to_iptables.0, to_iptables.1, "{backend:?}: IPVS → iptables");
        let left = ipsets(&switched);
        assert!(left.is_empty(), "IPVS ipsets left: {left:?}");
        assert_eq!(diff_status(&switched, CLUSTER).0, Some(0));
    }
}

/// IPv6 (ip6tables): apply converges, then cleanup leaves only kubelet's.
/// kube-proxy compiles no KUBE-FIREWALL for IPv6 but jumps to it, so the
/// plan must create it.
#[test]
fn ipv6_apply_and_cleanup() {
    if !available() {
        return;
    }
    let fx = root("fixtures/iptables/edge_ipv6");
    let args = std::fs::read_to_string(format!("{fx}/args")).expect("args");
    let config = format!("{fx}/config.yaml");
    let cluster = format!("{fx}/cluster.yaml");
    for backend in Backend::ALL {
        let node = fresh(backend);
        let mut argv: Vec<&str> = vec!["apply", "--config", &config];
        argv.extend(args.split_whitespace());
        argv.push(&cluster);
        ok(&kp(&node, &argv), "apply");
        argv[0] = "diff";
        let out = kp(&node, &argv);
        assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
        let save6 = format!("ip6tables-{}-save", backend.name());
        assert!(node.node_exec_ok(&[&save6]).contains("-A KUBE-SERVICES"));
        ok(
            &kp(&node, &["cleanup", "--mode", "all", "--family", "ipv6"]),
            "cleanup",
        );
        let left: Vec<String> = node
            .node_exec_ok(&[&save6])
            .lines()
            .filter(|l| l.contains("KUBE-") && !l.contains("KUBE-FIREWALL"))
            .map(String::from)
            .collect();
        assert!(left.is_empty(), "{backend:?}: left after cleanup: {left:?}");
    }
}

/// `dump` of a live node whose two iptables backends both hold kube-proxy
/// chains reports it as an anomaly (and prints no colour into a pipe).
#[test]
fn dump_live_reports_rules_in_both_backends() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Nft);
    ok(&apply(&node, CLUSTER, &[]), "apply");
    node.node_exec_ok(&["iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES"]);
    let out = kp(&node, &["dump", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&ok(&out, "dump")).expect("json");
    let kinds: Vec<&str> = json["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"both-backends"), "{kinds:?}");
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("kpinspect cleanup --backend legacy --mode all"),
        "{}",
        stderr(&out)
    );
    let table = ok(&kp(&node, &["dump"]), "dump");
    assert!(table.contains("routed/web:http (tcp)"), "{table}");
    assert!(!table.contains('\x1b'), "colour in a pipe");
    // The stale backend is cleaned on its own; the one in use is untouched.
    let before = node.save();
    let removed = ok(
        &kp(
            &node,
            &[
                "cleanup",
                "--backend",
                "legacy",
                "--mode",
                "all",
                "--verbose",
            ],
        ),
        "cleanup --backend legacy",
    );
    assert!(
        removed.contains("removed chain nat KUBE-SERVICES"),
        "{removed}"
    );
    // Without the saves' timestamped comments (the second may tick over).
    assert_eq!(
        strip_counters(&node.save()),
        strip_counters(&before),
        "the nft backend changed"
    );
    let legacy = node.node_exec_ok(&["iptables-legacy-save"]);
    assert!(!legacy.contains("KUBE-"), "{legacy}");
    let out = kp(&node, &["dump", "--format", "json"]);
    assert!(!ok(&out, "dump").contains("both-backends"));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// `CLUSTER`'s documents.
fn cluster_docs() -> Vec<String> {
    std::fs::read_to_string(root(CLUSTER))
        .expect("cluster")
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| format!("---\n{d}"))
        .collect()
}

/// Inputs and plans that would wipe a node are refused without `--force`
/// (one line, exit 2, node unchanged); `--dry-run` warns and shows the
/// payload; `--force` applies.
#[test]
fn guards_refuse_what_would_wipe_the_node() {
    if !available() {
        return;
    }
    let docs = cluster_docs();
    let services: String = docs
        .iter()
        .filter(|d| d.contains("kind: Service\n"))
        .cloned()
        .collect();
    // Only a new service: every service port of the node would go.
    let other: String = docs
        .iter()
        .filter(|d| d.contains("name: web\n") || d.contains("service-name: web\n"))
        .map(|d| {
            d.replace("web", "other")
                .replace("172.30.0.10", "172.30.0.30")
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("kpinspect-guards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let empty = file("empty.yaml", "");
    let services_only = file("services.yaml", &services);
    let other = file("other.yaml", &other);
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        add_foreign_state(&node);
        ok(&apply(&node, CLUSTER, &[]), "apply");
        let before = strip_counters(&node.save());
        for (input, why) in [
            (&empty, "the input has no Services"),
            (
                &services_only,
                "2 Services but no EndpointSlices or Endpoints",
            ),
            (
                &other,
                "the plan deletes 2 of the node's 2 IPv4 service ports",
            ),
        ] {
            let mut args: Vec<String> = node_args(CLUSTER);
            *args.last_mut().expect("cluster") = input.clone();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut apply_argv = vec!["apply"];
            apply_argv.extend(&refs);
            let out = kp(&node, &apply_argv);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{backend:?} {input}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(
                err.contains("refusing to apply") && err.contains(why),
                "{err}"
            );
            assert!(err.contains("--force"), "{err}");
            assert_eq!(
                strip_counters(&node.save()),
                before,
                "{backend:?}: {input} changed the node"
            );
            // A dry run says so and shows what would be written.
            let mut dry = vec!["apply", "--dry-run"];
            dry.extend(&refs);
            let out = kp(&node, &dry);
            assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
            assert!(
                stderr(&out).contains("apply refuses this without --force"),
                "{}",
                stderr(&out)
            );
            assert!(stdout(&out).contains("COMMIT"), "{}", stdout(&out));
            assert_eq!(strip_counters(&node.save()), before);
        }
        // Forced: applied, with a warning; then back to the cluster.
        let mut args: Vec<String> = node_args(CLUSTER);
        *args.last_mut().expect("cluster") = other.clone();
        let mut argv = vec!["apply", "--force"];
        argv.extend(args.iter().map(String::as_str));
        let out = kp(&node, &argv);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("(applied: --force)"),
            "{}",
            stderr(&out)
        );
        assert_eq!(diff_status(&node, &other).0, Some(0));
        ok(&apply(&node, CLUSTER, &["--force"]), "apply back");
        assert_eq!(diff_status(&node, CLUSTER).0, Some(0));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

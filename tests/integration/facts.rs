//! `apply` on a live node learns what kube-proxy would: the nfacct counters
//! it creates, the `nf_conntrack_tcp_be_liberal` sysctl, the node IPs, the
//! node name; and it refuses to run without privileges or with a
//! `nodePortAddresses` that would disable every NodePort. Real kernel,
//! network namespaces the tests create, both backends.

use std::process::{Command, Output};

use crate::node::{Backend, Layout, NODE_IP, TestNode, add_foreign_state, available, kp};
use crate::util::{ok, root, stderr, stdout};

const KPINSPECT: &str = env!("CARGO_BIN_EXE_kpinspect");
const CONFIG: &str = "fixtures/routed/config.yaml";
const CLUSTER: &str = "fixtures/routed/cluster.yaml";

fn path(rel: &str) -> String {
    root().join(rel).display().to_string()
}

/// `kpinspect <command> [extra...] --config CONFIG CLUSTER` in the node.
fn run_in(node: &TestNode, command: &str, extra: &[&str]) -> Output {
    let (config, cluster) = (path(CONFIG), path(CLUSTER));
    let mut argv = vec![command];
    argv.extend(extra);
    argv.extend(["--config", &config, &cluster]);
    kp(node, &argv)
}

fn counters(node: &TestNode) -> String {
    node.node_exec_ok(&["nfacct", "list"])
}

/// On a node where kube-proxy never ran (no nfacct counters), the first
/// apply creates kube-proxy's counters, loads the rules that use them, and
/// converges; detected node IPs are used and said.
#[test]
fn the_first_apply_creates_the_nfacct_counters() {
    if !available() {
        return;
    }
    for backend in Backend::ALL {
        let node = TestNode::new(Layout {
            pods: 0,
            backend,
            ipv6: false,
        });
        // kubelet's hint tells which backend the node uses.
        add_foreign_state(&node);
        for c in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            node.node_exec_ok(&["nfacct", "del", c]);
        }
        assert!(!counters(&node).contains("ct_state_invalid"));
        // A dry run says what it detected and creates nothing.
        let dry = run_in(&node, "apply", &["--dry-run"]);
        let err = stderr(&dry);
        assert_eq!(dry.status.code(), Some(0), "{err}");
        assert!(
            err.contains(&format!("node IPs: {NODE_IP} (detected")),
            "{backend:?}: {err}"
        );
        assert!(
            err.contains("node name: test-node (hostnameOverride)"),
            "{err}"
        );
        assert!(err.contains("nfacct counters: supported"), "{err}");
        assert!(stdout(&dry).contains("--nfacct-name"), "{}", stdout(&dry));
        assert!(
            !counters(&node).contains("ct_state_invalid"),
            "a dry run created counters"
        );

        let out = run_in(&node, "apply", &[]);
        assert_eq!(out.status.code(), Some(0), "{backend:?}: {}", stderr(&out));
        let list = counters(&node);
        for c in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            assert!(list.contains(c), "{backend:?}: {c} missing from\n{list}");
        }
        assert!(node.save().contains("--nfacct-name"), "{backend:?}");
        let diff = run_in(&node, "diff", &[]);
        assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
        let again = run_in(&node, "apply", &[]);
        let err = stderr(&again);
        assert_eq!(err.matches("in sync, nothing written").count(), 2, "{err}");
        // The counters go with iptables mode's rules.
        let out = kp(&node, &["cleanup", "--mode", "iptables", "--verbose"]);
        let report = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        for c in [
            "ct_state_invalid_dropped_pkts",
            "localhost_nps_accepted_pkts",
        ] {
            assert!(
                report.contains(&format!("removed nfacct counter {c}")),
                "{report}"
            );
            assert!(!counters(&node).contains(c), "{backend:?}: {c} left");
        }
    }
}

/// With `net.netfilter.nf_conntrack_tcp_be_liberal=1` kube-proxy writes no
/// INVALID drop rule; apply detects it and diff agrees.
#[test]
fn tcp_be_liberal_means_no_invalid_drop_rule() {
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
        let ip = NODE_IP.to_string();
        // Without the sysctl the rule is there.
        let dry = run_in(&node, "apply", &["--dry-run", "--node-ip", &ip]);
        assert!(
            stdout(&dry).contains("--ctstate INVALID"),
            "{}",
            stdout(&dry)
        );
        node.node_exec_ok(&[
            "sysctl",
            "-q",
            "-w",
            "net.netfilter.nf_conntrack_tcp_be_liberal=1",
        ]);
        let out = run_in(&node, "apply", &["--node-ip", &NODE_IP.to_string()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let save = node.save();
        assert!(!save.contains("--ctstate INVALID"), "{backend:?}:\n{save}");
        let diff = run_in(&node, "diff", &["--node-ip", &NODE_IP.to_string()]);
        assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
        assert!(
            stdout(&diff).contains("nf_conntrack_tcp_be_liberal: 1 (detected)"),
            "{}",
            stdout(&diff)
        );
    }
}

/// A node name no endpoint has, while endpoints name their nodes, is warned
/// about.
#[test]
fn a_wrong_node_name_is_warned_about() {
    if !available() {
        return;
    }
    let node = TestNode::new(Layout {
        pods: 0,
        backend: Backend::Nft,
        ipv6: false,
    });
    let out = run_in(&node, "apply", &["--dry-run", "--hostname", "node-b"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: no endpoint runs on node \"node-b\"; is --hostname"),
        "{err}"
    );
    let out = run_in(&node, "apply", &["--dry-run"]);
    assert!(
        !stderr(&out).contains("no endpoint runs on node"),
        "{}",
        stderr(&out)
    );
}

/// Runs kpinspect in a fresh, bare network namespace (`unshare -n`: only
/// a loopback device, no address, no route), first dropping every
/// privilege when `unprivileged`.
fn in_bare_namespace(args: &[&str], unprivileged: bool) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.arg("-n");
    if unprivileged {
        cmd.args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
    }
    cmd.arg(KPINSPECT).args(args).output().expect("unshare")
}

/// `nodePortAddresses: [primary]` on a node with no address to select:
/// every NodePort would be disabled, so apply refuses (diff warns).
#[test]
fn node_port_addresses_without_node_ips_are_refused() {
    if !available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kpinspect-facts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.yaml");
    let text =
        std::fs::read_to_string(path(CONFIG)).expect("config") + "nodePortAddresses: [primary]\n";
    std::fs::write(&config, text).expect("write");
    let config = config.display().to_string();
    let cluster = path(CLUSTER);
    let out = in_bare_namespace(&["apply", "--config", &config, &cluster], false);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("refusing to apply: nodePortAddresses selects node IPs")
            && err.contains("every NodePort would be disabled"),
        "{err}"
    );
    let out = in_bare_namespace(&["diff", "--config", &config, &cluster], false);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: nodePortAddresses selects node IPs"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without CAP_NET_ADMIN, apply and cleanup (dry runs too) say how to run
/// them, naming the tool, in one line with exit status 2 — not a lock-file
/// error.
#[test]
fn without_privileges_the_message_says_so() {
    if !available() {
        return;
    }
    let (config, cluster) = (path(CONFIG), path(CLUSTER));
    for args in [
        vec!["apply", "--config", &config, &cluster],
        vec!["apply", "--dry-run", "--config", &config, &cluster],
        vec!["cleanup", "--mode", "all"],
        vec!["cleanup", "--mode", "all", "--dry-run"],
    ] {
        let out = in_bare_namespace(&args, true);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("run as root or with CAP_NET_ADMIN") && err.contains("iptables"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("lock"), "{args:?}: {err}");
    }
}

/// The first apply from [`the_first_apply_creates_the_nfacct_counters`]
/// needs nothing but the tools: this is what a user's own test namespace
/// looks like.
#[test]
fn apply_into_a_bare_namespace_with_node_ips_given() {
    if !available() {
        return;
    }
    let (config, cluster) = (path(CONFIG), path(CLUSTER));
    let out = in_bare_namespace(
        &[
            "apply",
            "--config",
            &config,
            "--node-ip",
            "192.168.50.10",
            &cluster,
        ],
        false,
    );
    ok(&out, "apply in a bare namespace");
    assert_eq!(
        stderr(&out).matches(": applied ").count(),
        2,
        "{}",
        stderr(&out)
    );
}

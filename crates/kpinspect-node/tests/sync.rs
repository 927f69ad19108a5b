//! The read → plan → write cycles of `apply` and `cleanup`, run against a
//! [`MemoryNode`] in plain `cargo test` (no root): repeated applies,
//! refused restores, other programs' chains, racing writers, cleanups of
//! every scope. The namespace tests (tests/integration/apply.rs) remain the
//! ground truth on a real kernel; the in-memory node restores as the kernel
//! does, and fails where it is told to.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::{ProxyMode, foreign_state, ipvs};
use kpinspect_core::model::{Cluster, Protocol};
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::{Ruleset, render_rule};
use kpinspect_core::plan::{CleanupScope, Phase, cleanup_plan, diff};
use kpinspect_core::proxy::ProxyState;

use kpinspect_node::{
    Conntrack, ConntrackEntry, ConntrackTuple, Desired, IpSetState, IpSets, Iptables, MemoryNode,
    NodeError, RefusedLine, SyncError, WriteTarget, apply, cleanup, clear_stale_conntrack,
    committed_before, lock_rules_at, plan_apply, plan_cleanup, read_rules, serving_endpoints,
};

const V4: IpFamily = IpFamily::V4;
const V6: IpFamily = IpFamily::V6;

const ROUTED: &str = "fixtures/routed/cluster.yaml";
/// routed/web scaled from three endpoints to two, routed/np deleted.
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";

fn read(rel: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The routed test node's kube-proxy configuration (fixtures/routed).
fn config() -> ProxyConfig {
    let mut config = ProxyConfig::default();
    let name = "fixtures/routed/config.yaml";
    kpinspect_k8s::parse_kube_proxy_config(&read(name), name)
        .expect("config")
        .apply_to(&mut config)
        .expect("config applies");
    config.node.ips.push("192.168.0.2".parse().expect("ip"));
    config
}

fn cluster(rel: &str) -> Cluster {
    kpinspect_k8s::load_objects(&read(rel), rel)
        .expect("cluster")
        .finish()
        .0
}

fn desired(cluster: &Cluster) -> Desired {
    let config = config();
    Desired::compile(ProxyState::build(cluster, &config, V4), &config).expect("compiles")
}

/// Other programs' state, as `iptables-save` prints it: a docker-style NAT
/// chain and MASQUERADE, a user's INPUT rule, kubelet's hint, canaries and
/// KUBE-FIREWALL with its jumps.
const FOREIGN: &str = "*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A INPUT -s 1.2.3.4/32 -m comment --comment \"someone else's input rule\" -j DROP
-A INPUT -j KUBE-FIREWALL
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment \"block incoming localnet connections\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
COMMIT
";

/// A node with only other programs' state on it.
fn node() -> MemoryNode {
    MemoryNode::new()
        .with_iptables(V4, FOREIGN)
        .expect("foreign state")
}

fn save(node: &MemoryNode) -> String {
    Iptables::save(node, V4).expect("save")
}

/// What other programs own in a save (see [`foreign_state`]): byte-identical
/// before and after any cycle.
fn foreign(save: &str) -> Vec<String> {
    foreign_state(&Ruleset::parse(save).expect("save parses"))
}

/// A save's state regardless of the order chains were created in and of
/// the order of the rules in built-in chains (kube-proxy leaves a jump rule
/// where it is): tables and declarations sorted, each chain's rules in
/// order (sorted for built-in chains).
fn canonical(save: &str) -> Vec<String> {
    let rs = Ruleset::parse(save).expect("save parses");
    let mut tables: Vec<_> = rs.tables().iter().collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for t in tables {
        let mut chains: Vec<&str> = t.chains.iter().map(|c| c.name.as_str()).collect();
        chains.sort_unstable();
        for c in chains {
            out.push(format!("*{} :{c}", t.name));
            let mut rules: Vec<String> = t.rules_of(c).map(render_rule).collect();
            if c.chars().all(|ch| ch.is_ascii_uppercase()) {
                rules.sort();
            }
            out.extend(rules.into_iter().map(|r| format!("*{} {r}", t.name)));
        }
    }
    out
}

/// Whether `node`'s rules are exactly `desired` (no chain or jump differs,
/// no stale service chain).
fn in_sync(node: &MemoryNode, desired: &Desired) -> bool {
    let actual = read_rules(node, desired.family).expect("read").rules;
    diff(&desired.rules, &actual, ProxyMode::Iptables.profile()).is_empty()
}

/// The node's state after applying `desired` to a node with only other
/// programs' state.
fn fresh(desired: &Desired) -> Vec<String> {
    let node = node();
    apply(&node, desired).expect("fresh apply");
    canonical(&save(&node))
}

/// The chains of `desired`'s nat table that hold `service`'s rules and
/// start with `prefix`.
fn chains_of(desired: &Desired, service: &str, prefix: &str) -> Vec<String> {
    desired
        .rules
        .table("nat")
        .expect("nat")
        .chains
        .iter()
        .map(|c| c.name.clone())
        .filter(|c| c.starts_with(prefix) && desired.service_of(c).as_deref() == Some(service))
        .collect()
}

/// Apply to a node that has only others' state, then again: the second
/// cycle plans against what the first wrote and writes nothing. A dry run
/// (plan, no write) changes nothing.
#[test]
fn a_second_apply_writes_nothing() {
    let node = node();
    let want = desired(&cluster(ROUTED));

    let planned = plan_apply(&node, &want).expect("plan");
    assert!(!planned.is_empty());
    assert!(planned.warnings().is_empty());
    assert_eq!(planned.from, "the live node (iptables-save)");
    drop(planned);
    assert!(node.writes().is_empty(), "a plan wrote");

    let first = apply(&node, &want).expect("apply");
    let p = &first.plan;
    assert!(!first.in_sync());
    assert_eq!(
        first.to_string(),
        format!(
            "IPv4: applied {} bytes: {} chains written, {} rules added, 0 rules deleted, 0 stale chains deleted",
            p.payload.len(),
            p.chains_written,
            p.rules_added
        )
    );
    assert!(in_sync(&node, &want));

    let second = apply(&node, &want).expect("second apply");
    assert!(second.in_sync());
    assert_eq!(
        second.to_string(),
        "IPv4 (the live node (iptables-save)): in sync, nothing written"
    );
    let writes = node.writes();
    assert_eq!(writes.len(), 1, "the second apply wrote");
    assert_eq!(writes[0].target, WriteTarget::Iptables(V4));
    assert_eq!(writes[0].payload, first.plan.payload);
    assert_eq!(foreign(&save(&node)), foreign(FOREIGN));
    assert_eq!(Iptables::save(&node, V6).expect("save"), "");
}

/// One endpoint of routed/web goes: only web's service chain is rewritten
/// and the endpoint's chain deleted; KUBE-SERVICES and the rest stay.
#[test]
fn an_endpoint_change_writes_a_small_payload() {
    let node = node();
    let mut c = cluster(ROUTED);
    let before = desired(&c);
    let first = apply(&node, &before).expect("apply");
    let slice = c
        .endpoint_slices
        .iter_mut()
        .find(|s| s.service_name == "web")
        .expect("web's slice");
    let gone = slice
        .endpoints
        .pop()
        .expect("an endpoint")
        .address
        .expect("ip");
    let after = desired(&c);

    let report = apply(&node, &after).expect("apply the change");
    let p = &report.plan;
    assert!(
        p.payload.len() * 4 < first.plan.payload.len(),
        "{} bytes against {} for the whole:\n{}",
        p.payload.len(),
        first.plan.payload.len(),
        p.payload
    );
    assert!(!p.payload.contains(":KUBE-SERVICES "), "{}", p.payload);
    assert!(!p.payload.contains(&gone.to_string()), "{}", p.payload);
    assert_eq!(p.chains_deleted.len(), 1, "{}", p.payload);
    assert!(p.chains_deleted[0].starts_with("KUBE-SEP-"));
    assert_eq!(
        before.service_of(&p.chains_deleted[0]).as_deref(),
        Some("routed/web:http")
    );
    // Rewritten: web's service chain only.
    let written: Vec<&str> = p
        .payload
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|d| d.split_whitespace().next())
        .filter(|c| !p.chains_deleted.iter().any(|d| d == c))
        .collect();
    assert_eq!(
        written,
        chains_of(&after, "routed/web:http", "KUBE-SVC-"),
        "{}",
        p.payload
    );
    assert!(in_sync(&node, &after));
    assert!(apply(&node, &after).expect("again").in_sync());
    assert_eq!(foreign(&save(&node)), foreign(FOREIGN));
}

/// The kernel refuses a rule of one of routed/web's endpoint chains (as
/// it refuses one naming a missing nfacct object): the error names the
/// line, the chain and the Service, and that the filter table before it
/// was applied; the nat table is as it was; the next apply converges.
#[test]
fn a_refused_line_names_its_chain_and_service_and_the_next_apply_converges() {
    let node = node();
    let want = desired(&cluster(ROUTED));
    let before = save(&node);
    let planned = plan_apply(&node, &want).expect("plan");
    let (line, chain, text) = planned
        .payload()
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let chain = l.strip_prefix("-A ")?.split_whitespace().next()?;
            (chain.starts_with("KUBE-SEP-")
                && want.service_of(chain).as_deref() == Some("routed/web:http"))
            .then(|| (i + 1, chain.to_string(), l.to_string()))
        })
        .expect("a rule of web's endpoints");
    let committed = committed_before(&planned.plan, line);
    assert_eq!(committed, ["filter"], "{}", planned.payload());

    node.refuse_next_line_matching(text);
    let err = planned.write(&node).unwrap_err();
    let failure = format!("iptables-restore: line {line} failed");
    assert_eq!(
        err,
        SyncError::ApplyRefused(Box::new(RefusedLine {
            line,
            chain: Some(chain.clone()),
            service: Some("routed/web:http".into()),
            committed,
            error: NodeError::Restore {
                line: Some(line),
                message: failure.clone()
            },
        }))
    );
    assert_eq!(
        err.to_string(),
        format!(
            "apply failed at payload line {line}: {chain} for routed/web:http; that table was left as it was (the filter table before it was applied): restore failed at line {line}: {failure}"
        )
    );
    let table = |save: &str, name: &str| -> Vec<String> {
        canonical(save)
            .into_iter()
            .filter(|l| l.starts_with(&format!("*{name} ")))
            .collect()
    };
    assert_eq!(table(&save(&node), "nat"), table(&before, "nat"));
    assert_ne!(table(&save(&node), "filter"), table(&before, "filter"));
    assert_eq!(foreign(&save(&node)), foreign(FOREIGN));

    let report = apply(&node, &want).expect("the next apply");
    assert!(!report.plan.payload.contains("*filter"), "filter rewritten");
    assert!(in_sync(&node, &want));
    assert_eq!(canonical(&save(&node)), fresh(&want));
}

/// Failures the node reports for the whole payload change nothing: one
/// without a line (privileges), one blaming the first table's `COMMIT`
/// (as the legacy backend does). The next apply converges.
#[test]
fn an_injected_failure_changes_nothing_and_the_next_apply_converges() {
    let node = node();
    let want = desired(&cluster(ROUTED));
    let before = save(&node);

    let denied = NodeError::Permission {
        program: "iptables-restore".into(),
        message: "Permission denied (you must be root)".into(),
    };
    node.fail_next_restore(denied.clone());
    let err = apply(&node, &want).unwrap_err();
    assert_eq!(err, SyncError::ApplyFailed(denied));
    assert_eq!(
        err.to_string(),
        "apply failed (each table of the payload is committed whole or not at all; run diff to see what stands): iptables-restore: permission denied (run as root or with CAP_NET_ADMIN): Permission denied (you must be root)"
    );
    assert_eq!(save(&node), before);

    let planned = plan_apply(&node, &want).expect("plan");
    let commit = planned
        .payload()
        .lines()
        .position(|l| l == "COMMIT")
        .expect("a table")
        + 1;
    node.fail_next_restore(NodeError::Restore {
        line: Some(commit),
        message: format!("iptables-restore: line {commit} failed"),
    });
    let err = planned.write(&node).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "apply failed at payload line {commit}: table filter; that table was left as it was: restore failed at line {commit}: iptables-restore: line {commit} failed"
        )
    );
    assert_eq!(save(&node), before);

    apply(&node, &want).expect("the next apply");
    assert!(in_sync(&node, &want));
    let results: Vec<bool> = node.writes().iter().map(|w| w.result.is_ok()).collect();
    assert_eq!(results, [false, false, true]);
}

/// Other programs' chains and rules, and kubelet's, are byte-identical
/// after applies, an update, and a cleanup of iptables mode, which leaves
/// exactly them.
#[test]
fn foreign_and_kubelet_state_is_kept_byte_for_byte() {
    let node = node();
    let kept = foreign(FOREIGN);
    assert!(kept.iter().any(|l| l.contains("KUBE-KUBELET-CANARY")));
    assert!(kept.iter().any(|l| l.contains("-j KUBE-FIREWALL")));
    apply(&node, &desired(&cluster(ROUTED))).expect("apply");
    assert_eq!(foreign(&save(&node)), kept);
    let scaled = desired(&cluster(SCALED));
    let report = apply(&node, &scaled).expect("apply the change");
    assert!(report.plan.payload.contains("-D KUBE-SERVICES "));
    assert_eq!(foreign(&save(&node)), kept);
    assert!(in_sync(&node, &scaled));

    let report =
        cleanup(&node, &node, CleanupScope::Mode(ProxyMode::Iptables), None).expect("cleanup");
    assert!(
        report
            .to_string()
            .contains("removed chain nat KUBE-SERVICES\n"),
        "{report}"
    );
    assert_eq!(foreign(&save(&node)), kept);
    assert_eq!(canonical(&save(&node)), canonical(FOREIGN));
}

/// routed/np goes, but another program's rule still jumps to its service
/// chain: that chain (and the endpoint chains it jumps to) stays, with a
/// warning naming the rule, and the next apply has nothing to write.
#[test]
fn a_stale_chain_a_foreign_rule_jumps_to_is_kept_and_reported() {
    let node = node();
    let routed = desired(&cluster(ROUTED));
    apply(&node, &routed).expect("apply");
    let np = chains_of(&routed, "routed/np:http", "KUBE-SVC-").remove(0);
    let rule = format!("-A DOCKER -d 10.1.2.3/32 -j {np}");
    Iptables::restore(&node, V4, &format!("*nat\n{rule}\nCOMMIT\n")).expect("foreign rule");
    let others = foreign(&save(&node));
    let np_rules = |save: &str| -> Vec<String> {
        canonical(save)
            .into_iter()
            .filter(|l| l.contains(&format!(" :{np}")) || l.starts_with(&format!("*nat -A {np} ")))
            .collect()
    };
    let np_before = np_rules(&save(&node));

    let scaled = desired(&cluster(SCALED));
    let planned = plan_apply(&node, &scaled).expect("plan");
    let warning = format!("stale chain {np} kept: still jumped to by `{rule}`");
    assert_eq!(planned.warnings(), std::slice::from_ref(&warning));
    let report = planned.write(&node).expect("apply the change");
    assert_eq!(report.plan.chains_kept, [(np.clone(), rule.clone())]);
    assert!(!report.plan.chains_deleted.contains(&np));
    assert!(!report.plan.chains_deleted.is_empty(), "np's other chains");

    let after = read_rules(&node, V4).expect("read").rules;
    let nat = after.table("nat").expect("nat");
    let seps: Vec<&str> = nat
        .rules_of(&np)
        .filter_map(|r| r.target_name())
        .filter(|t| t.starts_with("KUBE-SEP-"))
        .collect();
    assert!(!seps.is_empty());
    for sep in seps {
        assert!(nat.chain(sep).is_some(), "{sep} deleted under {np}");
    }
    assert_eq!(np_rules(&save(&node)), np_before);
    assert_eq!(foreign(&save(&node)), others);

    let again = apply(&node, &scaled).expect("again");
    assert!(again.in_sync(), "{}", again.plan.payload);
    assert_eq!(again.warnings(), [warning]);
}

/// A node that ran iptables mode, then IPVS mode, with other programs'
/// rules around (shared with kpinspect-core's cleanup tests).
const MIXED: &str = include_str!("../../../fixtures/cleanup/mixed-node.save");

/// IPVS mode's sets (one of them IPv6), matched by MIXED's rules, and
/// another program's set.
const SETS: &str = "create KUBE-CLUSTER-IP hash:ip,port family inet hashsize 1024 maxelem 65536
add KUBE-CLUSTER-IP 172.30.0.41,tcp:80
create KUBE-LOAD-BALANCER hash:ip,port family inet hashsize 1024 maxelem 65536
create DOCKER-SET hash:ip family inet hashsize 1024 maxelem 65536
create KUBE-6-CLUSTER-IP hash:ip,port family inet6 hashsize 1024 maxelem 65536
";

fn mixed() -> MemoryNode {
    MemoryNode::new()
        .with_iptables(V4, MIXED)
        .expect("MIXED")
        .with_ipsets(SETS)
        .expect("SETS")
}

fn set_names(node: &MemoryNode) -> Vec<String> {
    node.ipsets().sets.into_iter().map(|s| s.name).collect()
}

/// Each cleanup scope on the mixed node: the plan is kpinspect-core's for
/// what the node holds (both families, every set); writing it removes
/// exactly what it lists (the rules before the ipsets they match, which
/// the node would otherwise refuse to destroy), leaves others' and
/// kubelet's state byte-identical, and a second cleanup finds nothing.
#[test]
fn cleanup_of_each_scope_on_a_mixed_node() {
    let all_sets = ["KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER", "KUBE-6-CLUSTER-IP"];
    let cases: [(CleanupScope, &[&str]); 5] = [
        (CleanupScope::Mode(ProxyMode::Iptables), &[]),
        (CleanupScope::Mode(ProxyMode::Ipvs), &all_sets),
        (CleanupScope::All, &all_sets),
        (CleanupScope::StaleFor(ProxyMode::Iptables), &all_sets),
        (CleanupScope::StaleFor(ProxyMode::Ipvs), &[]),
    ];
    let read_sets: Vec<String> = IpSetState::parse(SETS)
        .expect("sets")
        .sets
        .into_iter()
        .map(|s| s.name)
        .collect();
    for (scope, sets_removed) in cases {
        let node = mixed();
        let planned = plan_cleanup(&node, &node, scope, None).expect("plan");
        let mixed_rules = Ruleset::parse(MIXED).expect("MIXED");
        assert_eq!(
            planned.plan,
            cleanup_plan(&[&mixed_rules, &Ruleset::default()], &read_sets, scope),
            "{scope:?}"
        );
        assert_eq!(
            planned.families,
            [
                (V4, "iptables-restore".to_string()),
                (V6, "ip6tables-restore".to_string())
            ]
        );
        let mut removed_sets = planned.plan.removed_ipsets.clone();
        removed_sets.sort();
        let mut expected: Vec<String> = sets_removed.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(removed_sets, expected, "{scope:?}");
        let listing = planned.to_string();
        assert!(
            listing
                .lines()
                .all(|l| l.starts_with("would remove ") || l.starts_with("kept ")),
            "{scope:?}: {listing}"
        );
        let input = planned.restore_input();
        assert!(
            input.starts_with("# iptables-restore --noflush\n*"),
            "{input}"
        );
        assert_eq!(
            input.contains("# ipset restore\ndestroy "),
            !sets_removed.is_empty()
        );
        assert!(node.writes().is_empty(), "a plan wrote");

        let report = planned.write(&node, &node).expect("cleanup");
        assert_eq!(
            report.to_string(),
            listing.replace("would remove ", "removed ")
        );
        let after = read_rules(&node, V4).expect("read").rules;
        for (t, c) in &report.plan.removed_chains {
            let table = after.table(t).expect("table");
            assert!(table.chain(c).is_none(), "{scope:?}: {t} {c} left");
        }
        for (t, r) in &report.plan.removed_rules {
            assert!(
                !after
                    .rules()
                    .any(|(table, rule)| table.name == *t && render_rule(rule) == *r),
                "{scope:?}: {r} left"
            );
        }
        assert_eq!(foreign(&save(&node)), foreign(MIXED), "{scope:?}");
        let left = set_names(&node);
        assert!(left.contains(&"DOCKER-SET".to_string()));
        assert!(sets_removed.iter().all(|s| !left.iter().any(|l| l == s)));
        assert_eq!(left.len(), 4 - sets_removed.len(), "{scope:?}: {left:?}");

        let writes = node.writes().len();
        let again = cleanup(&node, &node, scope, None).expect("again");
        assert!(again.is_empty(), "{scope:?}: {again}");
        assert_eq!(node.writes().len(), writes, "{scope:?}");
    }
}

/// Everything kube-proxy owns goes, both modes; the report lists it.
#[test]
fn cleanup_reports_what_it_removed_and_then_nothing() {
    let node = mixed();
    let report = cleanup(&node, &node, CleanupScope::All, None).expect("cleanup");
    let text = report.to_string();
    for line in [
        "removed chain nat KUBE-SERVICES\n",
        "removed chain filter KUBE-IPVS-FILTER\n",
        "removed rule nat -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
        "removed ipset KUBE-CLUSTER-IP\n",
        "removed ipset KUBE-6-CLUSTER-IP\n",
    ] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    assert!(!text.contains("DOCKER"), "{text}");
    let again = cleanup(&node, &node, CleanupScope::All, None).expect("again");
    assert_eq!(again.to_string(), "nothing to remove\n");
    assert_eq!(
        plan_cleanup(&node, &node, CleanupScope::All, None)
            .expect("plan")
            .restore_input(),
        ""
    );
}

/// A node without ip6tables.
struct NoIp6tables<'a>(&'a MemoryNode);

impl Iptables for NoIp6tables<'_> {
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        match family {
            IpFamily::V4 => Iptables::save(self.0, family),
            IpFamily::V6 => Err(NodeError::Missing {
                program: "ip6tables-save".into(),
            }),
        }
    }

    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        Iptables::restore(self.0, family, payload)
    }
}

/// A node without the ipset tool.
struct NoIpset;

impl IpSets for NoIpset {
    fn save(&self) -> Result<String, NodeError> {
        Err(NodeError::Missing {
            program: "ipset".into(),
        })
    }

    fn restore(&self, _: &str) -> Result<(), NodeError> {
        Err(NodeError::Missing {
            program: "ipset".into(),
        })
    }
}

/// Without a family, cleanup reads those whose tools are installed; the
/// ipsets of a family not read are left alone (rules it did not see may
/// match them); without the ipset tool there are no sets to clean.
#[test]
fn cleanup_reads_the_families_it_can_and_only_their_ipsets() {
    let node = mixed();
    let no6 = NoIp6tables(&node);
    let planned = plan_cleanup(&no6, &node, CleanupScope::All, None).expect("plan");
    assert_eq!(planned.families, [(V4, "iptables-restore".to_string())]);
    assert_eq!(
        planned.plan.removed_ipsets,
        ["KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER"]
    );
    let err = plan_cleanup(&no6, &node, CleanupScope::All, Some(V6)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ip6tables-save not found (is the iptables/ipset package installed?)"
    );
    let planned = plan_cleanup(&node, &node, CleanupScope::All, Some(V6)).expect("plan");
    assert_eq!(planned.plan.removed_ipsets, ["KUBE-6-CLUSTER-IP"]);
    assert!(planned.plan.removed_chains.is_empty());

    let report = cleanup(&node, &NoIpset, CleanupScope::All, None).expect("cleanup");
    assert!(report.plan.removed_ipsets.is_empty());
    assert!(!report.plan.removed_chains.is_empty());
    assert_eq!(set_names(&node).len(), 4);
}

/// An ipset tool whose restores fail as the kernel fails a set in use.
struct BusyIpsets<'a>(&'a MemoryNode);

impl IpSets for BusyIpsets<'_> {
    fn save(&self) -> Result<String, NodeError> {
        IpSets::save(self.0)
    }

    fn restore(&self, _: &str) -> Result<(), NodeError> {
        Err(NodeError::Restore {
            line: Some(1),
            message: "ipset v7.17: Error in line 1: Set cannot be destroyed: it is in use by a kernel component".into(),
        })
    }
}

/// A refused cleanup names the restore program; nothing after it is
/// written (the ipsets are not destroyed under rules that still match
/// them). A refused ipset restore comes after the rules went.
#[test]
fn a_refused_cleanup_names_what_failed() {
    let node = mixed();
    node.fail_next_restore(NodeError::Restore {
        line: Some(3),
        message: "iptables-restore: line 3 failed".into(),
    });
    let err = cleanup(&node, &node, CleanupScope::All, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cleanup failed for iptables-restore, the failing table was left as it was (tables before it in the payload were applied): restore failed at line 3: iptables-restore: line 3 failed"
    );
    assert_eq!(save(&node), MIXED);
    assert_eq!(node.ipsets(), IpSetState::parse(SETS).expect("sets"));
    assert_eq!(node.writes().len(), 1);

    let err = cleanup(&node, &BusyIpsets(&node), CleanupScope::All, None).unwrap_err();
    assert!(matches!(err, SyncError::IpSetCleanupFailed(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cleanup of ipsets failed: restore failed at line 1: ipset v7.17: Error in line 1: Set cannot be destroyed: it is in use by a kernel component"
    );
    assert!(!save(&node).contains("KUBE-SERVICES"));
    assert_eq!(set_names(&node).len(), 4);
    // The next cleanup removes what is left: the sets.
    let report = cleanup(&node, &node, CleanupScope::All, None).expect("again");
    assert!(report.plan.removed_chains.is_empty());
    assert_eq!(set_names(&node), ["DOCKER-SET"]);
}

/// IPVS mode's rules, jumps and ipsets as kube-proxy programs them (its
/// "ensure" inserts a jump at the top when it is missing).
fn program_ipvs_mode(node: &MemoryNode) {
    IpSets::restore(node, &read("fixtures/ipvs-mode/ipsets.txt")).expect("IPVS sets");
    Iptables::restore(node, V4, &read("fixtures/ipvs-mode/restore.txt")).expect("IPVS rules");
    for j in ipvs::JUMP_RULES {
        let rule = j.rule();
        let rules = read_rules(node, V4).expect("read").rules;
        if rules
            .rules()
            .any(|(t, r)| t.name == j.table && r.same_as(&rule))
        {
            continue;
        }
        let text = render_rule(&rule);
        let rest = text
            .strip_prefix(&format!("-A {} ", j.chain))
            .expect("a rule of its chain");
        Iptables::restore(
            node,
            V4,
            &format!("*{}\n-I {} 1 {rest}\nCOMMIT\n", j.table, j.chain),
        )
        .expect("IPVS jump");
    }
}

/// After a mode switch, `cleanup --stale-only` leaves the node as one that
/// only ever ran the new mode (the namespace test
/// `stale_only_cleanup_after_a_mode_switch`, in memory).
#[test]
fn stale_only_cleanup_after_a_mode_switch() {
    let routed = desired(&cluster(ROUTED));

    // iptables → IPVS.
    let (pure, switched) = (node(), node());
    program_ipvs_mode(&pure);
    apply(&switched, &routed).expect("apply");
    program_ipvs_mode(&switched);
    let planned = plan_cleanup(
        &switched,
        &switched,
        CleanupScope::StaleFor(ProxyMode::Ipvs),
        Some(V4),
    )
    .expect("plan");
    assert!(planned.restore_input().contains("-X KUBE-SVC-"));
    planned.write(&switched, &switched).expect("cleanup");
    assert_eq!(canonical(&save(&switched)), canonical(&save(&pure)));
    assert_eq!(switched.ipsets(), pure.ipsets());
    assert_eq!(pure.ipsets().sets.len(), 17);

    // IPVS → iptables.
    let switched = node();
    program_ipvs_mode(&switched);
    apply(&switched, &routed).expect("apply over IPVS state");
    cleanup(
        &switched,
        &switched,
        CleanupScope::StaleFor(ProxyMode::Iptables),
        Some(V4),
    )
    .expect("cleanup");
    assert_eq!(canonical(&save(&switched)), fresh(&routed));
    assert_eq!(set_names(&switched), Vec::<String>::new());
    assert!(in_sync(&switched, &routed));
}

/// A node that reads slowly: two cycles that were not serialised would
/// both read before either writes.
struct SlowReads<'a>(&'a MemoryNode);

impl Iptables for SlowReads<'_> {
    fn save(&self, family: IpFamily) -> Result<String, NodeError> {
        let text = Iptables::save(self.0, family);
        std::thread::sleep(Duration::from_millis(30));
        text
    }

    fn restore(&self, family: IpFamily, payload: &str) -> Result<(), NodeError> {
        Iptables::restore(self.0, family, payload)
    }
}

/// Two threads apply different clusters to one node at once, each under
/// the rules lock: the second plans against what the first wrote, nothing
/// is written twice, and the node ends as the last one applied to a fresh
/// node.
#[test]
fn racing_applies_under_the_lock_end_as_one_applied_fresh() {
    let lock = std::env::temp_dir().join(format!(
        "kpinspect-node-sync-test-{}.lock",
        std::process::id()
    ));
    let (a, b) = (desired(&cluster(ROUTED)), desired(&cluster(SCALED)));
    let (fresh_a, fresh_b) = (fresh(&a), fresh(&b));
    for _ in 0..3 {
        let node = node();
        let slow = SlowReads(&node);
        let order = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for (name, want) in [("a", &a), ("b", &b)] {
                let (slow, lock, order) = (&slow, &lock, &order);
                s.spawn(move || {
                    let _held = lock_rules_at(lock).expect("lock");
                    apply(slow, want).expect("apply");
                    order.lock().expect("order").push(name);
                });
            }
        });
        let order = order.into_inner().expect("order");
        let end = canonical(&save(&node));
        let last = if order[1] == "a" { &fresh_a } else { &fresh_b };
        assert!(&end == last, "{order:?}: the node is not the last apply's");
        let writes = node.writes();
        assert_eq!(writes.len(), 2);
        assert!(writes.iter().all(|w| w.result.is_ok()));
        // The second planned against the first: no jump is inserted twice.
        assert!(
            !writes[1].payload.contains("kubernetes service portals"),
            "{}",
            writes[1].payload
        );
        assert_eq!(foreign(&save(&node)), foreign(FOREIGN));
    }
    let _ = std::fs::remove_file(&lock);
}

/// Why cycles take the lock: two cycles that read the same state (as
/// unserialised ones can) both insert kube-proxy's jump rules from the
/// built-in chains, which then stand twice.
#[test]
fn without_the_lock_two_cycles_planned_on_one_state_insert_jumps_twice() {
    let node = node();
    let (a, b) = (desired(&cluster(ROUTED)), desired(&cluster(SCALED)));
    let (first, second) = (
        plan_apply(&node, &a).expect("plan a"),
        plan_apply(&node, &b).expect("plan b"),
    );
    first.write(&node).expect("write a");
    second.write(&node).expect("write b");
    let portals = save(&node)
        .lines()
        .filter(|l| l.starts_with("-A PREROUTING ") && l.contains("kubernetes service portals"))
        .count();
    assert_eq!(portals, 2);
    assert_ne!(canonical(&save(&node)), fresh(&b));
}

/// Why cycles take the lock: a plan written over a state that changed
/// since it was read. Another writer deletes a rule this plan deletes by
/// its spec: the node refuses the line (rather than deleting another
/// rule), the table stays as it was, and the next cycle converges.
#[test]
fn a_write_between_read_and_restore_is_refused_and_the_next_apply_converges() {
    let node = node();
    apply(&node, &desired(&cluster(ROUTED))).expect("apply");
    let scaled = desired(&cluster(SCALED));
    let planned = plan_apply(&node, &scaled).expect("plan");
    let (line, deleted) = planned
        .payload()
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            let spec = l.strip_prefix("-D KUBE-SERVICES ")?;
            Some((i + 1, format!("-A KUBE-SERVICES {spec}")))
        })
        .expect("a rule deleted from KUBE-SERVICES");
    let committed = committed_before(&planned.plan, line);

    // The other writer.
    Iptables::restore(
        &node,
        V4,
        &format!(
            "*nat\n{}\nCOMMIT\n",
            deleted.replacen("-A KUBE-SERVICES ", "-D KUBE-SERVICES ", 1)
        ),
    )
    .expect("the other write");
    let between = save(&node);

    let err = planned.write(&node).unwrap_err();
    let SyncError::ApplyRefused(refused) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(refused.line, line);
    assert!(
        matches!(refused.error, NodeError::Restore { line: Some(l), .. } if l == line),
        "{err:?}"
    );
    assert_eq!(refused.chain.as_deref(), Some("KUBE-SERVICES"));
    assert_eq!(refused.service, None);
    assert_eq!(refused.committed, committed);
    assert_eq!(err.to_string().lines().count(), 1);
    // The change is the nat table's alone, which stays as the other
    // writer left it.
    assert!(committed.is_empty(), "{committed:?}");
    assert_eq!(save(&node), between);

    apply(&node, &scaled).expect("the next apply");
    assert!(in_sync(&node, &scaled));
    assert_eq!(canonical(&save(&node)), fresh(&scaled));
}

/// A UDP cluster in the routed fixture's namespace: `dns` with two
/// endpoints, and `gone` (deleted by the next cluster).
fn udp_cluster(dns_endpoints: &[&str], with_gone: bool) -> Cluster {
    let mut text = String::from(
        "apiVersion: v1\nkind: Service\nmetadata: {name: dns, namespace: routed}\n\
         spec: {clusterIP: 172.30.0.53, clusterIPs: [172.30.0.53], type: NodePort,\n\
         ports: [{name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}]}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\n\
         metadata: {name: dns-1, namespace: routed, labels: {kubernetes.io/service-name: dns}}\n\
         ports: [{name: dns, port: 5353, protocol: UDP}]\nendpoints:\n",
    );
    for ip in dns_endpoints {
        text += &format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n");
    }
    if with_gone {
        text += "---\napiVersion: v1\nkind: Service\nmetadata: {name: gone, namespace: routed}\n\
                 spec: {clusterIP: 172.30.0.54, clusterIPs: [172.30.0.54],\n\
                 ports: [{name: u, port: 54, protocol: UDP, targetPort: 54}]}\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\naddressType: IPv4\n\
                 metadata: {name: gone-1, namespace: routed, labels: {kubernetes.io/service-name: gone}}\n\
                 ports: [{name: u, port: 54, protocol: UDP}]\n\
                 endpoints:\n- addresses: [\"10.244.0.21\"]\n  conditions: {ready: true}\n";
    }
    kpinspect_k8s::load_objects(&text, "udp.yaml")
        .expect("udp cluster")
        .finish()
        .0
}

fn flow(proto: Protocol, dst: &str, answered_by: &str) -> ConntrackEntry {
    let client: std::net::SocketAddr = "192.168.0.9:40000".parse().expect("client");
    ConntrackEntry::new(
        proto,
        ConntrackTuple::new(client, dst.parse().expect("dst")),
        ConntrackTuple::new(answered_by.parse().expect("endpoint"), client),
    )
}

/// After an apply, the UDP flows to a removed endpoint (by cluster IP and
/// by node port) and to a deleted Service are stale; flows answered by an
/// endpoint that stays, and TCP flows, are not. A dry run only lists them.
#[test]
fn stale_udp_conntrack_entries_follow_kube_proxys_reconciler() {
    let node = node();
    let before = desired(&udp_cluster(&["10.244.0.11", "10.244.0.12"], true));
    apply(&node, &before).expect("first apply");
    let to_removed = flow(Protocol::Udp, "172.30.0.53:53", "10.244.0.11:5353");
    let via_node_port = flow(Protocol::Udp, "192.168.0.2:30053", "10.244.0.11:5353");
    let to_kept = flow(Protocol::Udp, "172.30.0.53:53", "10.244.0.12:5353");
    let to_gone = flow(Protocol::Udp, "172.30.0.54:54", "10.244.0.21:54");
    let tcp = flow(Protocol::Tcp, "172.30.0.53:53", "10.244.0.11:5353");
    for e in [&to_removed, &via_node_port, &to_kept, &to_gone, &tcp] {
        node.add_conntrack_entry(e.clone());
    }

    let after = desired(&udp_cluster(&["10.244.0.12"], false));
    let planned = plan_apply(&node, &after).expect("plan");
    let serving = serving_endpoints(after.state.as_ref().expect("state"), &planned.actual);
    let dry = clear_stale_conntrack(&node, V4, &serving, true).expect("dry run");
    assert_eq!(
        dry.stale,
        [to_removed.clone(), via_node_port.clone(), to_gone.clone()]
    );
    assert!(
        dry.to_string()
            .starts_with("IPv4: would delete 3 stale UDP conntrack entries"),
        "{dry}"
    );
    assert_eq!(
        Conntrack::list(&node, V4).expect("list").len(),
        5,
        "a dry run deleted"
    );

    planned.write(&node).expect("write");
    let done = clear_stale_conntrack(&node, V4, &serving, false).expect("clear");
    assert_eq!(done.stale.len(), 3, "{done}");
    assert_eq!(Conntrack::list(&node, V4).expect("list"), [to_kept, tcp]);
    // Nothing left to clear.
    assert!(
        clear_stale_conntrack(&node, V4, &serving, false)
            .expect("again")
            .stale
            .is_empty()
    );
}

/// A node whose restore tool wants small transactions (the nft backend):
/// the new chains are built in pieces and linked by a last restore; the
/// end state is the one-restore apply's. A piece refused midway leaves
/// the old rules in force (nothing jumps to what was built) and the next
/// apply converges.
#[test]
fn new_chains_are_built_in_pieces_and_linked_last() {
    let want = desired(&cluster(ROUTED));
    let whole = fresh(&want);
    let node = node().with_restore_batch_lines(5);
    let report = apply(&node, &want).expect("apply in pieces");
    assert!(!report.in_sync());
    let writes = node.take_writes();
    assert!(writes.len() > 3, "{} restores", writes.len());
    assert_eq!(canonical(&save(&node)), whole);
    assert!(in_sync(&node, &want));

    // Refused in the last piece that builds (a rule of a new chain): the
    // node keeps the old rules; the error names the line of the whole
    // payload and says what stands.
    let node = node_with_batch(5);
    let before = save(&node);
    let planned = plan_apply(&node, &want).expect("plan");
    let pieces = planned.plan.pieces(5).expect("pieces");
    let n = pieces
        .iter()
        .position(|p| p.phase == Phase::Link)
        .expect("a link");
    let (piece, line) = (
        n,
        pieces[n - 1].plan.payload.lines().nth(1).expect("a line"),
    );
    assert!(line.starts_with("-A "), "{line}");
    let payload_line = planned
        .plan
        .payload
        .lines()
        .position(|l| l == line)
        .expect("in the payload")
        + 1;
    node.refuse_next_line_matching(line);
    let err = apply(&node, &want).unwrap_err();
    let SyncError::ApplyFailedInPiece {
        piece: p,
        phase: Phase::Build,
        error,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(*p, piece, "{err}");
    assert!(
        matches!(&**error, SyncError::ApplyRefused(r) if r.line == payload_line),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("traffic still meets the old rules"),
        "{err}"
    );
    // Built chains exist, but every chain the node had is as it was.
    let (was, now) = (
        Ruleset::parse(&before).expect("before"),
        Ruleset::parse(&save(&node)).expect("now"),
    );
    for t in was.tables() {
        for c in &t.chains {
            let old: Vec<String> = t.rules_of(&c.name).map(render_rule).collect();
            let new: Vec<String> = now
                .table(&t.name)
                .expect("table")
                .rules_of(&c.name)
                .map(render_rule)
                .collect();
            assert_eq!(old, new, "{} {}", t.name, c.name);
        }
    }
    apply(&node, &want).expect("the next apply");
    assert_eq!(canonical(&save(&node)), whole);

    // Scaled down in pieces: the stale chains unlinked, then deleted.
    let scaled = desired(&cluster(SCALED));
    node.take_writes();
    let report = apply(&node, &scaled).expect("scale down in pieces");
    assert!(!report.plan.chains_deleted.is_empty());
    assert!(node.take_writes().len() > 2, "not in pieces");
    assert_eq!(canonical(&save(&node)), fresh(&scaled));
    assert!(in_sync(&node, &scaled));

    // A deletion refused after the link: the new rules are in force, the
    // stale chain is left unlinked, and the next apply deletes it.
    apply(&node, &want).expect("back up");
    let planned = plan_apply(&node, &scaled).expect("plan");
    let pieces = planned.plan.pieces(5).expect("pieces");
    let last = pieces.last().expect("a piece");
    assert_eq!(last.phase, Phase::Demolish);
    let delete = last
        .plan
        .payload
        .lines()
        .find(|l| l.starts_with("-X "))
        .expect("a deletion")
        .to_string();
    node.refuse_next_line_matching(delete.clone());
    let err = apply(&node, &scaled).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::ApplyFailedInPiece {
                phase: Phase::Demolish,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("the new rules are in force"),
        "{err}"
    );
    // What is left to do is only deleting the stale chains.
    let left = plan_apply(&node, &scaled).expect("plan").plan;
    assert_eq!(
        (left.chains_written, left.rules_added, left.rules_deleted),
        (0, 0, 0)
    );
    assert!(!left.chains_deleted.is_empty());
    let again = apply(&node, &scaled).expect("the next apply");
    assert!(
        again
            .plan
            .chains_deleted
            .iter()
            .any(|c| delete.ends_with(c.as_str())),
        "{:?}",
        again.plan.chains_deleted
    );
    assert_eq!(canonical(&save(&node)), fresh(&scaled));
}

fn node_with_batch(lines: usize) -> MemoryNode {
    node().with_restore_batch_lines(lines)
}

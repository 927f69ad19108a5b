//! Every match and target kube-proxy writes, on a real kernel and both
//! iptables backends: a rule written in kube-proxy's spelling is read back
//! with `iptables-save`, and what the planner ([`plan`]) and the cleanup
//! planner ([`cleanup_plan`]) emit to remove it must be accepted by the
//! kernel and leave the chain as wanted.
//!
//! The planner deletes a rule by its saved spelling (`-D CHAIN spec`) only
//! when the kernel is known to match that spelling to the rule as written;
//! for anything else (`-m recent`: iptables-save adds `--mask`, and a rule
//! written without it is not the rule `-D ... --mask ...` names) it rewrites
//! the chain. The cases below pin which one it does, so that a delete the
//! kernel refuses shows up here rather than on a node.

use kpinspect_core::mode::ProxyMode;
use kpinspect_core::netfilter::{Rule, Ruleset};
use kpinspect_core::plan::{CleanupScope, cleanup_plan, plan};

use crate::node::{Backend, Layout, TestNode, available};

/// The chain the rules under test are written to.
const CHAIN: &str = "KPI-TEST";
/// A chain for the rules' jumps.
const TARGET: &str = "KPI-TARGET";
/// The rules kept around the one removed (so that the planner may edit).
const KEEP: [&str; 2] = [
    "-m comment --comment \"kept before\" -j RETURN",
    "-m comment --comment \"kept after\" -j RETURN",
];

/// How the planner removes a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    /// `-D CHAIN spec` in the saved spelling.
    Delete,
    /// The chain declared (flushed) and written whole.
    Rewrite,
}

/// One case a line: table, expected removal (`delete` or `rewrite`), the
/// rule after `-A CHAIN` in kube-proxy's spelling. Spellings are compile.rs's
/// and the fixtures' (older kube-proxy versions for `--set-xmark` and `DNAT
/// --random`; IPVS mode for `-m set`).
const CASES: &str = r#"
# Endpoint chains.
nat    delete  -m comment --comment ns/svc:p -s 10.244.0.2 -j KPI-TARGET
nat    delete  -m comment --comment ns/svc:p -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:8000
nat    delete  -m comment --comment ns/svc:p -m udp -p udp -j DNAT --to-destination 10.244.0.2:53
nat    delete  -m comment --comment ns/svc:p -m sctp -p sctp -j DNAT --to-destination 10.244.0.2:7777
nat    delete  -m comment --comment ns/svc:p -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:8000 --random
nat    rewrite -m comment --comment ns/svc:p -m recent --name KPI-TARGET --set -m tcp -p tcp -j DNAT --to-destination 10.244.0.2:8000
# Service chains.
nat    rewrite -m comment --comment "ns/svc:p -> 10.244.0.2:8000" -m recent --name KPI-TARGET --rcheck --seconds 10800 --reap -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p -> 10.244.0.2:8000" -m statistic --mode random --probability 0.3333333333 -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p -> 10.244.0.2:8000" -m statistic --mode random --probability 0.0001000000 -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p -> 10.244.0.2:8000" -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.244.0.0/16 -j KPI-TARGET
nat    delete  -m comment --comment "masquerade traffic for ns/svc:p external destinations" -j KPI-TARGET
nat    delete  -m comment --comment "route LOCAL traffic for ns/svc:p external destinations" -m addrtype --src-type LOCAL -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p loadbalancer IP" -s 192.0.2.0/24 -j KPI-TARGET
nat    delete  -m comment --comment "other traffic to ns/svc:p will be dropped by KUBE-PROXY-FIREWALL"
# KUBE-SERVICES and KUBE-NODEPORTS.
nat    delete  -m comment --comment "ns/svc:p cluster IP" -m udp -p udp -d 172.30.0.41 --dport 53 -j KPI-TARGET
nat    delete  -m comment --comment "ns/svc:p cluster IP" -m sctp -p sctp -d 172.30.0.41 --dport 7777 -j KPI-TARGET
nat    delete  -m comment --comment ns/svc:p -m tcp -p tcp --dport 30080 -j KPI-TARGET
nat    delete  -m comment --comment ns/svc:p -m tcp -p tcp -d 127.0.0.0/8 --dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KPI-TARGET
nat    delete  -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KPI-TARGET
# KUBE-POSTROUTING and KUBE-MARK-MASQ.
nat    delete  -m mark ! --mark 0x00004000/0x00004000 -j RETURN
nat    delete  -j MARK --xor-mark 0x00004000
nat    delete  -j MARK --or-mark 0x00004000
nat    delete  -j MARK --set-xmark 0x4000/0x4000
nat    delete  -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
nat    delete  -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
# IPVS mode.
nat    delete  -m comment --comment "Kubernetes service cluster ip + port for masquerade purpose" -m set --match-set KUBE-CLUSTER-IP dst,dst ! -s 10.244.0.0/16 -j KPI-TARGET
# Not kube-proxy's: a match the planner knows nothing about is rewritten.
nat    rewrite -p tcp -m multiport --dports 80,443 -j KPI-TARGET
# The filter table.
filter delete  -m comment --comment "ns/svc:p has no endpoints" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT
filter delete  -m comment --comment "ns/svc:p has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP
filter delete  -m comment --comment "ns/svc:p health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
filter delete  -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
filter delete  -m conntrack --ctstate INVALID -j DROP
filter delete  -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
filter delete  -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
filter delete  -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
filter delete  -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KPI-TARGET
filter delete  -m conntrack --ctstate NEW -m set --match-set KUBE-IPVS-IPS dst -j REJECT
"#;

/// [`CASES`], parsed.
fn cases() -> Vec<(&'static str, &'static str, Removal)> {
    CASES
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (table, rest) = l.split_once(' ').expect("a table");
            let (removal, rule) = rest.trim_start().split_once(' ').expect("a removal");
            let removal = match removal {
                "delete" => Removal::Delete,
                "rewrite" => Removal::Rewrite,
                other => panic!("bad removal {other:?} in {l:?}"),
            };
            (table, rule.trim_start(), removal)
        })
        .collect()
}

/// A node with the ipsets and nfacct counters the cases name, and
/// kube-proxy's jump rules already in place (so that plans touch only the
/// test chain).
fn prepared(backend: Backend) -> TestNode {
    let node = TestNode::new(Layout {
        pods: 0,
        backend,
        ipv6: false,
    });
    node.node_exec_ok(&["ipset", "create", "KUBE-CLUSTER-IP", "hash:ip,port"]);
    node.node_exec_ok(&["ipset", "create", "KUBE-IPVS-IPS", "hash:ip"]);
    let tables = Ruleset::parse("*nat\nCOMMIT\n*filter\nCOMMIT\n").expect("parses");
    let jumps = plan(&tables, &Ruleset::default(), ProxyMode::Iptables.profile());
    node.restore(&jumps.payload).expect("jump rules");
    node
}

/// `*TABLE`, the test chains declared, `rules` appended to [`CHAIN`].
fn chain_text(table: &str, rules: &[&str]) -> String {
    let mut text = format!("*{table}\n:{CHAIN} - [0:0]\n:{TARGET} - [0:0]\n");
    for r in rules {
        text.push_str(&format!("-A {CHAIN} {r}\n"));
    }
    text + "COMMIT\n"
}

/// The canonical form of `rule` (after `-A CHAIN`).
fn canonical(rule: &str) -> String {
    Rule::parse(&format!("-A {CHAIN} {rule}"))
        .expect("case parses")
        .canonical()
}

/// The canonical rules of [`CHAIN`] in `rs`.
fn chain_rules(rs: &Ruleset, table: &str) -> Vec<String> {
    rs.table(table)
        .map(|t| t.rules_of(CHAIN).map(|r| r.canonical()).collect())
        .unwrap_or_default()
}

fn removal_by_the_planner(backend: Backend) {
    let node = prepared(backend);
    for (table, rule, expected) in cases() {
        let what = format!("{backend:?} {table} `{rule}`");
        node.restore(&chain_text(table, &[KEEP[0], rule, KEEP[1]]))
            .unwrap_or_else(|e| panic!("{what}: not written: {e}"));
        let saved = node.save();
        let actual = Ruleset::parse(&saved).expect("save parses");
        assert_eq!(
            chain_rules(&actual, table),
            [KEEP[0], rule, KEEP[1]].map(canonical),
            "{what}: saved differently:\n{saved}"
        );
        let desired = Ruleset::parse(&chain_text(table, &KEEP)).expect("desired parses");
        let p = plan(&desired, &actual, ProxyMode::Iptables.profile());
        let removal = match (p.rules_deleted, p.chains_written) {
            (1, 0) => Removal::Delete,
            (0, 1) => Removal::Rewrite,
            _ => panic!("{what}: unexpected plan:\n{}", p.payload),
        };
        assert_eq!(removal, expected, "{what}: plan:\n{}", p.payload);
        for (i, _) in p.payload.lines().enumerate() {
            let chain = p.chain_at(i + 1).unwrap_or_default();
            assert!(
                chain == CHAIN || chain == format!("table {table}"),
                "{what}: line {} touches {chain}:\n{}",
                i + 1,
                p.payload
            );
        }
        node.restore(&p.payload)
            .unwrap_or_else(|e| panic!("{what}: the kernel refused the plan: {e}\n{}", p.payload));
        let after = Ruleset::parse(&node.save()).expect("save parses");
        assert_eq!(
            chain_rules(&after, table),
            chain_rules(&desired, table),
            "{what}: wrong chain after\n{}",
            p.payload
        );
        assert!(
            plan(&desired, &after, ProxyMode::Iptables.profile()).is_empty(),
            "{what}: not converged"
        );
    }
}

#[test]
fn planner_removes_every_kube_proxy_rule_legacy() {
    if available() {
        removal_by_the_planner(Backend::Legacy);
    }
}

#[test]
fn planner_removes_every_kube_proxy_rule_nft() {
    if available() {
        removal_by_the_planner(Backend::Nft);
    }
}

/// `cleanup --stale-only` in IPVS mode removes iptables mode's service
/// chains and deletes the rules of the shared `KUBE-SERVICES` that jump to
/// them, whatever their matches; the rest of `KUBE-SERVICES` stays.
#[test]
fn cleanup_removes_references_whatever_their_matches() {
    if !available() {
        return;
    }
    let references = [
        "-m comment --comment \"ns/svc:p cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-KPITEST",
        "-m comment --comment x -m recent --name KUBE-SVC-KPITEST --rcheck --seconds 10800 --reap -j KUBE-SVC-KPITEST",
    ];
    for backend in Backend::ALL {
        for reference in references {
            let what = format!("{backend:?} `{reference}`");
            let node = TestNode::new(Layout {
                pods: 0,
                backend,
                ipv6: false,
            });
            let text = format!(
                "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-KPITEST - [0:0]\n\
                 -A KUBE-SERVICES {}\n-A KUBE-SERVICES {reference}\n-A KUBE-SERVICES {}\n\
                 -A KUBE-SVC-KPITEST -m recent --name KUBE-SVC-KPITEST --set -j RETURN\nCOMMIT\n",
                KEEP[0], KEEP[1]
            );
            node.restore(&text).expect("written");
            let actual = Ruleset::parse(&node.save()).expect("save parses");
            let p = cleanup_plan(&[&actual], &[], CleanupScope::StaleFor(ProxyMode::Ipvs));
            node.restore(&p.payloads[0])
                .unwrap_or_else(|e| panic!("{what}: refused: {e}\n{}", p.payloads[0]));
            let after = Ruleset::parse(&node.save()).expect("save parses");
            let nat = after.table("nat").expect("nat");
            assert!(nat.chain("KUBE-SVC-KPITEST").is_none(), "{what}");
            let left: Vec<String> = nat
                .rules_of("KUBE-SERVICES")
                .map(|r| r.canonical())
                .collect();
            let want: Vec<String> = KEEP
                .iter()
                .map(|k| {
                    Rule::parse(&format!("-A KUBE-SERVICES {k}"))
                        .expect("parses")
                        .canonical()
                })
                .collect();
            assert_eq!(left, want, "{what}:\n{}", p.payloads[0]);
        }
    }
}

//! kube-proxy's iptables golden tests, ported as data (`fixtures/iptables`):
//! every fixture is compiled by the `kpinspect` binary and checked against
//! what kube-proxy's own tests assert.

use std::collections::BTreeMap;

use kpinspect_core::mode::iptables::{check_rule_jumps, sort_iptables_rules};
use kpinspect_core::netfilter::Ruleset;
use serde::Deserialize;

use crate::util::{compile_fixtures, fixture, yaml};

/// Every compiled fixture passes the jump check, and its raw (deterministic)
/// output matches the committed snapshot.
#[test]
fn every_fixture_is_consistent_and_snapshotted() {
    for fx in compile_fixtures() {
        let out = fx.compile();
        let errors = check_rule_jumps(&out);
        assert!(errors.is_empty(), "{}: {errors:#?}", fx.name);
        insta::assert_snapshot!(fx.name.as_str(), out);
    }
}

/// Fixtures with kube-proxy's full expected dump match it byte for byte
/// after kube-proxy's normaliser.
#[test]
fn golden_dumps_match_after_normalising() {
    let mut checked = 0;
    for fx in compile_fixtures() {
        if !fx.has("expected.txt") || fx.has("existing_nat_chains") {
            continue;
        }
        let got = sort_iptables_rules(&fx.compile()).expect("normalise");
        assert_eq!(
            got,
            fx.read("expected.txt"),
            "{}: output differs from kube-proxy's golden dump",
            fx.name
        );
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} golden dumps checked");
}

/// TestSyncProxyRulesRepeated's final full resync deletes the stale chains
/// left on the node: compile against the node's existing nat chains.
#[test]
fn full_resync_deletes_stale_chains() {
    let fx = fixture("repeated_full_resync");
    let existing: Vec<String> = fx
        .read("existing_nat_chains")
        .lines()
        .map(String::from)
        .collect();
    let (cluster, config) = (fx.cluster(), fx.proxy_config());
    let state =
        kpinspect_core::proxy::ProxyState::build(&cluster, &config, config.default_family());
    let out = kpinspect_core::mode::iptables::compile_sync(&state, &config, &existing).render();
    assert_eq!(
        sort_iptables_rules(&out).expect("normalise"),
        fx.read("expected.txt")
    );
    assert!(check_rule_jumps(&out).is_empty());
}

#[derive(Debug, Deserialize)]
struct ChainRules {
    table: String,
    chain: String,
    rules: Vec<String>,
}

/// Single-chain assertions (TestNodePorts, TestDropInvalidRule, TestMasqueradeRule).
#[test]
fn chain_assertions() {
    let mut checked = 0;
    for fx in compile_fixtures() {
        if !fx.has("chains.yaml") {
            continue;
        }
        let out = fx.compile();
        let rules = Ruleset::parse(&out).expect("parse");
        for want in yaml::<Vec<ChainRules>>(&fx.read("chains.yaml")) {
            let got = chain_rules(&rules, &want.table, &want.chain);
            assert_eq!(
                got, want.rules,
                "{}: {} {}",
                fx.name, want.table, want.chain
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} chains checked");
}

/// The rules of `table` `chain`, as written.
fn chain_rules(rules: &Ruleset, table: &str, chain: &str) -> Vec<String> {
    assert!(rules.table(table).is_some(), "no {table} table");
    rules
        .rules_with_text()
        .filter(|(t, r, _)| t.name == table && r.chain == chain)
        .map(|(_, _, text)| text.to_string())
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Assertions {
    Lines {
        #[serde(rename = "dnatRuleCount")]
        dnat_rule_count: usize,
        #[serde(rename = "dnatRulesWithComment")]
        dnat_rules_with_comment: usize,
        #[serde(rename = "containsLines")]
        contains_lines: Vec<String>,
    },
    Destinations(Vec<Destination>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Destination {
    table: String,
    chain: String,
    has_rule_with_destination: String,
    expected: bool,
}

/// TestSyncProxyRulesLargeClusterMode and TestLoadBalancerIngressRouteTypeProxy.
#[test]
fn line_assertions() {
    let mut checked = 0;
    for fx in compile_fixtures() {
        if !fx.has("assertions.yaml") {
            continue;
        }
        let out = fx.compile();
        match yaml::<Assertions>(&fx.read("assertions.yaml")) {
            Assertions::Lines {
                dnat_rule_count,
                dnat_rules_with_comment,
                contains_lines,
            } => {
                let dnat: Vec<&str> = out
                    .lines()
                    .filter(|l| l.starts_with("-A KUBE-SEP-") && l.contains("-j DNAT"))
                    .collect();
                assert_eq!(dnat.len(), dnat_rule_count, "{}", fx.name);
                assert_eq!(
                    dnat.iter().filter(|l| l.contains("--comment")).count(),
                    dnat_rules_with_comment,
                    "{}",
                    fx.name
                );
                for line in contains_lines {
                    assert!(
                        out.lines().any(|l| l == line),
                        "{}: missing line {line}",
                        fx.name
                    );
                }
            }
            Assertions::Destinations(list) => {
                let parsed = Ruleset::parse(&out).expect("parse");
                for d in list {
                    let rules = chain_rules(&parsed, &d.table, &d.chain);
                    let needle = format!(" -d {} ", d.has_rule_with_destination);
                    assert_eq!(
                        rules.iter().any(|r| r.contains(&needle)),
                        d.expected,
                        "{}: {:?}",
                        fx.name,
                        d
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} assertion files checked");
}

/// Rule counts from kube-proxy's metrics tests (rule_counts.yaml).
#[test]
fn rule_counts() {
    let text = std::fs::read_to_string(crate::util::iptables_fixtures().join("rule_counts.yaml"))
        .expect("rule_counts.yaml");
    let doc: Vec<BTreeMap<String, serde_json::Value>> = yaml(&text);
    let mut checked = 0;
    let mut check = |entry: &BTreeMap<String, serde_json::Value>| {
        let Some(name) = entry.get("fixture").and_then(|f| f.as_str()) else {
            return;
        };
        let fx = fixture(name);
        // Stale-chain deletions (`-X`) are not rules, so a plain compile counts.
        let out = fx.compile();
        let count = |table: &str| -> usize {
            let mut in_table = false;
            out.lines()
                .filter(|l| {
                    if let Some(t) = l.strip_prefix('*') {
                        in_table = t == table;
                    }
                    in_table && l.starts_with("-A ")
                })
                .count()
        };
        for table in ["nat", "filter"] {
            if let Some(total) = entry
                .get(table)
                .and_then(|t| t.get("total"))
                .and_then(|t| t.as_u64())
            {
                assert_eq!(count(table) as u64, total, "{name}: {table} rules");
                checked += 1;
            }
        }
    };
    for test in &doc {
        check(test);
        if let Some(steps) = test.get("steps").and_then(|s| s.as_array()) {
            for step in steps {
                let step: BTreeMap<String, serde_json::Value> =
                    serde_json::from_value(step.clone()).expect("step");
                check(&step);
            }
        }
    }
    assert!(checked >= 10, "only {checked} counts checked");
}

/// kpinspect's own edge cases (no upstream dump): lines that must appear
/// (`contains.txt`, exact lines) and text that must not (`absent.txt`).
#[test]
fn edge_case_lines() {
    let mut checked = 0;
    for fx in compile_fixtures() {
        if !fx.has("contains.txt") && !fx.has("absent.txt") {
            continue;
        }
        let out = fx.compile();
        if fx.has("contains.txt") {
            for line in fx.read("contains.txt").lines().filter(|l| !l.is_empty()) {
                assert!(
                    out.lines().any(|l| l == line),
                    "{}: missing line\n{line}\nin\n{out}",
                    fx.name
                );
                checked += 1;
            }
        }
        if fx.has("absent.txt") {
            for text in fx.read("absent.txt").lines().filter(|l| !l.is_empty()) {
                assert!(
                    !out.contains(text),
                    "{}: {text:?} should not appear in\n{out}",
                    fx.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 25, "only {checked} edge-case lines checked");
}

/// kube-proxy writes service ports in random (Go map) order. Whatever the
/// order, the golden dump matches after kube-proxy's normaliser, and the
/// per-port normaliser makes any two orders identical.
#[test]
fn service_port_order_does_not_matter_after_normalising() {
    use kpinspect_core::mode::iptables::{compile, sort_iptables_rules_by_service};
    for name in ["overall", "bad_ips", "repeated_step1"] {
        let fx = fixture(name);
        let (cluster, config) = (fx.cluster(), fx.proxy_config());
        let state =
            kpinspect_core::proxy::ProxyState::build(&cluster, &config, config.default_family());
        let sorted = compile(&state, &config).render();
        let n = state.ports.len();
        for shift in 0..n {
            let mut permuted = state.clone();
            permuted.ports.rotate_left(shift);
            if shift % 2 == 1 {
                permuted.ports.reverse();
            }
            let text = compile(&permuted, &config).render();
            assert_eq!(
                sort_iptables_rules(&text).expect("normalise"),
                fx.read("expected.txt"),
                "{name} shift {shift}"
            );
            assert_eq!(
                sort_iptables_rules_by_service(&text).expect("normalise"),
                sort_iptables_rules_by_service(&sorted).expect("normalise"),
                "{name} shift {shift}"
            );
        }
    }
}

/// Real `iptables-save` captures (nft and legacy) of compiled rules:
/// parsing and rendering gives the same text, and every saved rule equals
/// the compiled rule semantically.
#[test]
fn real_saves_round_trip_and_match_compiled_rules() {
    let dir = crate::util::root().join("fixtures/iptables-save");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/iptables-save") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("restore") {
            continue;
        }
        let restore = std::fs::read_to_string(&path).expect("read");
        for backend in ["nft", "legacy"] {
            let save_path = path.with_extension(format!("{backend}.txt"));
            let text = std::fs::read_to_string(&save_path).expect("save capture");
            checked += crate::util::assert_saved_matches(
                &save_path.display().to_string(),
                &restore,
                &text,
            );
        }
    }
    assert!(checked > 200, "only {checked} rules compared");
}

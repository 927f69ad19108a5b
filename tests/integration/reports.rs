//! `apply --format json` and `cleanup --format json` on a real kernel (a
//! test node in network namespaces, see `node.rs`): the JSON says what the
//! text says. IPVS mode's live apply needs IPVS (the VM checks); its
//! cleanup runs here (this kernel's lack of IPVS counts as no virtual
//! server), over the IPVS-mode rules and sets kube-proxy programs.

use serde_json::Value;

use crate::apply::program_ipvs_mode;
use crate::node::{Backend, Layout, NODE_IP, TestNode, available, kp};
use crate::util::{ok, stderr};

fn root(rel: &str) -> String {
    crate::util::root().join(rel).display().to_string()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {e}\n{text}"))
}

fn node() -> TestNode {
    TestNode::new(Layout {
        pods: 0,
        backend: Backend::ALL[0],
        ipv6: false,
    })
}

/// The `(table, chain)`s, rules and ipsets a cleanup report lists.
fn listed(v: &Value) -> (Vec<String>, Vec<String>, Vec<String>) {
    let it = &v["iptables"];
    let strings = |key: &str, f: &dyn Fn(&Value) -> String| -> Vec<String> {
        it[key].as_array().expect(key).iter().map(f).collect()
    };
    (
        strings("chains", &|c| {
            format!(
                "{} {}",
                c["table"].as_str().unwrap(),
                c["chain"].as_str().unwrap()
            )
        }),
        strings("rules", &|r| {
            format!(
                "{} {}",
                r["table"].as_str().unwrap(),
                r["rule"].as_str().unwrap()
            )
        }),
        strings("ipsets", &|s| s.as_str().unwrap().to_string()),
    )
}

#[test]
fn cleanup_json_says_what_the_text_says() {
    if !available() {
        return;
    }
    let node = node();
    program_ipvs_mode(&node);
    let argv = ["cleanup", "--mode", "ipvs", "--family", "ipv4", "--verbose"];
    let with = |extra: &[&str]| {
        let mut a = argv.to_vec();
        a.extend(extra);
        kp(&node, &a)
    };
    let text_out = with(&["--dry-run"]);
    ok(&text_out, "cleanup --dry-run");
    let text = stderr(&text_out);
    let dry = json(&ok(
        &with(&["--dry-run", "--format", "json"]),
        "json dry run",
    ));
    assert_eq!(dry["dry_run"], Value::Bool(true));
    assert_eq!(dry["iptables"]["removed"], Value::Bool(false));
    let (chains, rules, sets) = listed(&dry);
    assert!(chains.contains(&"nat KUBE-SERVICES".to_string()), "{dry:#}");
    assert!(sets.iter().any(|s| s == "KUBE-CLUSTER-IP"), "{dry:#}");
    for c in &chains {
        assert!(
            text.contains(&format!("would remove chain {c}\n")),
            "{c}: {text}"
        );
    }
    for r in &rules {
        assert!(
            text.contains(&format!("would remove rule {r}\n")),
            "{r}: {text}"
        );
    }
    for s in &sets {
        assert!(
            text.contains(&format!("would remove ipset {s}\n")),
            "{s}: {text}"
        );
    }
    let lines = text
        .lines()
        .filter(|l| l.starts_with("would remove "))
        .count();
    assert_eq!(lines, chains.len() + rules.len() + sets.len(), "{text}");
    // No IPVS here, no kube-ipvs0: nothing of IPVS itself to remove.
    assert_eq!(dry["ipvs"]["virtual_servers"], Value::Array(vec![]));
    assert_eq!(dry["ipvs"]["link"], Value::Null);
    let payload = dry["iptables"]["payloads"][0]["payload"]
        .as_str()
        .expect("payload");
    assert!(payload.contains("-X KUBE-SERVICES"), "{payload}");

    let done = json(&ok(&with(&["--format", "json", "--force"]), "json cleanup"));
    assert_eq!(done["dry_run"], Value::Bool(false));
    assert_eq!(done["iptables"]["removed"], Value::Bool(true));
    assert_eq!(listed(&done), (chains, rules, sets));
    let left = node.node_exec_ok(&["ipset", "list", "-n"]);
    assert!(!left.contains("KUBE-"), "{left}");
    let again = json(&ok(&with(&["--format", "json", "--force"]), "again"));
    assert_eq!(listed(&again), (vec![], vec![], vec![]));
}

#[test]
fn apply_json_reports_each_family_and_its_conntrack_clearing() {
    if !available() {
        return;
    }
    let node = node();
    let (config, cluster, node_ip) = (
        root("fixtures/routed/config.yaml"),
        root("fixtures/routed/cluster.yaml"),
        NODE_IP.to_string(),
    );
    let apply = |extra: &[&str]| {
        let mut a = vec![
            "apply",
            "--config",
            &config,
            "--node-ip",
            &node_ip,
            "--family",
            "ipv4",
        ];
        a.extend(extra);
        a.push(&cluster);
        kp(&node, &a)
    };
    let dry = json(&ok(&apply(&["--dry-run", "--format", "json"]), "dry run"));
    let text_dry = ok(&apply(&["--dry-run"]), "text dry run");
    assert_eq!(dry["dry_run"], Value::Bool(true));
    assert_eq!(
        dry["families"][0]["iptables"]["payload"],
        Value::String(text_dry)
    );
    assert_eq!(
        dry["families"][0]["conntrack"]["deleted"],
        Value::Bool(false)
    );

    let out = apply(&["--format", "json"]);
    let first = json(&ok(&out, "apply"));
    assert!(
        !stderr(&out).contains("applied"),
        "report only in JSON: {}",
        stderr(&out)
    );
    let family = &first["families"][0];
    assert_eq!(family["family"], "ipv4");
    assert_eq!(family["in_sync"], Value::Bool(false), "{first:#}");
    assert!(family["iptables"]["chains_written"].as_u64().unwrap() > 0);
    assert_eq!(
        family["conntrack"]["deleted"],
        Value::Bool(true),
        "{first:#}"
    );
    assert_eq!(family["conntrack"]["error"], Value::Null, "{first:#}");
    assert_eq!(first["drain"], Value::Null);
    let second = json(&ok(&apply(&["--format", "json"]), "second apply"));
    assert_eq!(
        second["families"][0]["in_sync"],
        Value::Bool(true),
        "{second:#}"
    );
    assert_eq!(second["families"][0]["iptables"]["payload"], "");
    let skipped = json(&ok(
        &apply(&["--format", "json", "--no-conntrack-cleanup"]),
        "no conntrack cleanup",
    ));
    assert_eq!(skipped["families"][0]["conntrack"], Value::Null);
}

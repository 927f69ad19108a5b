//! `kpinspect dump --mode nftables`: the checked-in captures
//! (`fixtures/nftables-save`, no root needed), and — as root — every
//! compiled fixture loaded with `nft -f` into a fresh network namespace and
//! dumped from the live node, a stale chain, another program's table and
//! iptables-mode leftovers next to the table.

use std::io::Write as _;
use std::process::Command;

use serde_json::Value;

use crate::nftables::{compile_production_mark, nft_fixtures, nft_netns_available};
use crate::util::{kpinspect, ok, root, stderr};

fn capture(name: &str) -> String {
    root()
        .join("fixtures/nftables-save")
        .join(name)
        .display()
        .to_string()
}

fn dump(args: &[&str]) -> String {
    let out = kpinspect()
        .args(["dump", "--mode", "nftables"])
        .args(args)
        .output()
        .expect("run kpinspect");
    ok(&out, &format!("dump {args:?}"))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("dump --format json")
}

/// The text and JSON captures of one node dump the same Services and
/// anomalies; the table and JSON outputs are snapshotted.
#[test]
fn captures_dump_alike_in_both_forms() {
    let (text, json_capture) = (capture("overall.nft"), capture("overall.json"));
    let a = json(&dump(&["--nft", &text, "--format", "json"]));
    let b = json(&dump(&["--nft", &json_capture, "--format", "json"]));
    assert_eq!(a["services"], b["services"]);
    assert_eq!(a["anomalies"], b["anomalies"]);
    assert_eq!(a["services"].as_array().map(Vec::len), Some(6));
    assert_eq!(
        a["sources"][1]["tables"],
        serde_json::json!(["inet host-firewall"]),
        "the foreign table is listed as such"
    );
    // With the cluster: load-balancer IPs told from external IPs, local
    // endpoints known.
    let fx = root().join("fixtures/nftables/overall");
    let cluster = fx.join("cluster.yaml").display().to_string();
    let config = fx.join("config.yaml").display().to_string();
    let with = dump(&["--nft", &text, "--cluster", &cluster, "--config", &config]);
    let base = root().display().to_string() + "/";
    insta::assert_snapshot!(
        "nft_dump_overall_capture",
        format!(
            "{}\n# json\n{}\n# with --cluster\n{}",
            dump(&["--nft", &text]),
            dump(&["--nft", &json_capture, "--format", "json"]),
            with
        )
        .replace(&base, "")
    );
}

/// `--service` keeps one Service; an unknown one exits 1 and says so; the
/// cluster not having a Service of the table is a `stale-service`.
#[test]
fn service_filter_and_stale_services() {
    let text = capture("overall.nft");
    let one = json(&dump(&[
        "--nft",
        &text,
        "--service",
        "ns4/svc4",
        "--format",
        "json",
    ]));
    assert_eq!(one["services"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["services"][0]["endpoints"][0]["probability"], 0.5);
    let out = kpinspect()
        .args([
            "dump",
            "--mode",
            "nftables",
            "--nft",
            &text,
            "--service",
            "ns9/none",
        ])
        .output()
        .expect("run kpinspect");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("service ns9/none not found"),
        "{}",
        stderr(&out)
    );
    // A cluster with only ns1/svc1: every other service port is stale.
    let other = root().join("fixtures/nftables/repeated_step1/cluster.yaml");
    let d = json(&dump(&[
        "--nft",
        &text,
        "--cluster",
        &other.display().to_string(),
        "--format",
        "json",
    ]));
    let stale: Vec<&str> = d["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter(|a| a["kind"] == "stale-service")
        .filter_map(|a| a["message"].as_str())
        .collect();
    assert!(!stale.is_empty(), "{d}");
    assert!(stale.iter().all(|m| !m.contains("ns1/svc1:")), "{stale:?}");
}

/// `--nft -` reads stdin; a file that is not a listing is one line and exit
/// status 2.
#[test]
fn stdin_and_bad_input() {
    let mut child = kpinspect()
        .args(["dump", "--nft", "-", "--format", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let text = std::fs::read_to_string(capture("overall.json")).expect("capture");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let d = json(&ok(&out, "dump --nft -"));
    assert_eq!(d["services"].as_array().map(Vec::len), Some(6));
    let bad = root().join("fixtures/nftables/overall/cluster.yaml");
    let out = kpinspect()
        .args(["dump", "--nft", &bad.display().to_string()])
        .output()
        .expect("run kpinspect");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cluster.yaml: nft listing, line 1"),
        "{}",
        stderr(&out)
    );
}

/// iptables-mode rules next to the nftables table (`--iptables-save`) are
/// another mode's leftovers.
#[test]
fn iptables_leftovers_beside_the_table() {
    let save = root().join("fixtures/iptables-save/example.nft.txt");
    let d = json(&dump(&[
        "--nft",
        &capture("overall.nft"),
        "--iptables-save",
        &save.display().to_string(),
        "--format",
        "json",
    ]));
    let other: Vec<&Value> = d["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .filter(|a| a["kind"] == "other-mode")
        .collect();
    assert_eq!(other.len(), 1, "{d}");
    assert!(
        other[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("iptables mode") && m.contains("cleanup --mode iptables")),
        "{other:?}"
    );
    // Services come from the nftables table only.
    assert_eq!(d["services"].as_array().map(Vec::len), Some(6));
}

/// Runs `script` then `kpinspect dump --mode nftables ARGS` (the live
/// node) in a fresh network namespace; returns the dump's stdout.
fn dump_in_netns(script: &str, args: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_kpinspect");
    let full = format!("set -e; {script}\n\"$0\" dump --mode nftables \"$@\"",);
    let out = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", &full, bin])
        .args(args)
        .current_dir(root())
        .output()
        .expect("unshare");
    ok(&out, &format!("dump in a namespace after {script}"))
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kpinspect-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write temp file");
    path
}

/// Every compiled fixture, loaded with `nft -f` and dumped from the live
/// node: one entry per service port of the cluster, shares that add up to
/// 1, no anomaly; the table dumps are snapshotted.
#[test]
fn compiled_fixtures_dump_from_the_kernel() {
    if !nft_netns_available() {
        return;
    }
    for fx in nft_fixtures() {
        let nft = compile_production_mark(&fx, "nft");
        let path = write_temp(&format!("{}.nft", fx.name), &nft);
        let load = format!("nft -f {}", path.display());
        let d = json(&dump_in_netns(&load, &["--format", "json"]));
        let table = dump_in_netns(&load, &[]);
        let _ = std::fs::remove_file(&path);
        assert!(
            d["anomalies"].as_array().is_some_and(Vec::is_empty),
            "{}: {}",
            fx.name,
            d["anomalies"]
        );
        for s in d["services"].as_array().expect("services") {
            for view in ["endpoints", "external_endpoints"] {
                let Some(eps) = s[view].as_array().filter(|e| !e.is_empty()) else {
                    continue;
                };
                let sum: f64 = eps.iter().filter_map(|e| e["probability"].as_f64()).sum();
                assert!((sum - 1.0).abs() < 1e-4, "{}: {s}", fx.name);
            }
        }
        assert!(
            d["sources"][0]["name"]
                .as_str()
                .is_some_and(|n| n.contains("live node")),
            "{}",
            d["sources"]
        );
        insta::assert_snapshot!(format!("nft_dump_live_{}", fx.name), table);
    }
}

/// A live table with a flushed service chain (its element gone, as after a
/// sync that dropped the Service), another program's table and an
/// iptables-mode chain: the dump shows the stale chains, names the foreign
/// table, and reports the leftover.
#[test]
fn stale_chains_foreign_tables_and_leftovers_live() {
    if !nft_netns_available() {
        return;
    }
    let fx = nft_fixtures()
        .into_iter()
        .find(|f| f.name == "overall")
        .expect("overall");
    let nft = write_temp("overall-stale.nft", &compile_production_mark(&fx, "nft"));
    let listed = write_temp("overall-stale.listed", "");
    let script = format!(
        "nft -f {}\n\
         nft delete element ip kube-proxy service-ips '{{ 172.30.0.41 . tcp . 80 }}'\n\
         nft flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n\
         nft add table inet host-firewall\n\
         iptables-nft -t nat -N KUBE-SERVICES\n\
         iptables-nft -t nat -N KUBE-SVC-NOTHING12345678\n\
         iptables-nft -t nat -A KUBE-SERVICES -j KUBE-SVC-NOTHING12345678\n\
         iptables-nft -t nat -A POSTROUTING -s 10.0.0.0/8 -m comment --comment '{{ x }}' -j MASQUERADE\n\
         nft list ruleset > {listed}",
        nft.display(),
        listed = listed.display()
    );
    let d = json(&dump_in_netns(&script, &["--format", "json"]));
    let _ = std::fs::remove_file(&nft);
    // The same node listed as text, iptables-nft's tables in it: the same
    // Services and kube-proxy anomalies; the other tables named.
    let text = json(&dump(&[
        "--nft",
        &listed.display().to_string(),
        "--format",
        "json",
    ]));
    let _ = std::fs::remove_file(&listed);
    assert_eq!(text["services"], d["services"]);
    let tables = text["sources"].to_string();
    for t in ["ip nat", "inet host-firewall"] {
        assert!(tables.contains(t), "{t}: {tables}");
    }
    let kube_proxy_kinds = |v: &Value| -> Vec<Value> {
        v["anomalies"]
            .as_array()
            .expect("anomalies")
            .iter()
            .filter(|a| a["kind"] != "other-mode")
            .cloned()
            .collect()
    };
    assert_eq!(kube_proxy_kinds(&text), kube_proxy_kinds(&d));
    let kinds: Vec<(String, String)> = d["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap_or_default().to_string(),
                a["chain"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&(
            "stale-chain".into(),
            "service-ULMVA6XW-ns1/svc1/tcp/p80".into()
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(
            "stale-chain".into(),
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80".into()
        )),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|(k, _)| k == "other-mode"), "{kinds:?}");
    let sources = d["sources"].to_string();
    assert!(sources.contains("inet host-firewall"), "{sources}");
}

/// A dual-stack node: both families' tables (one `nft -f` of what
/// `compile` prints for both) dump from the live node, each service port
/// once per family.
#[test]
fn both_families_live() {
    if !nft_netns_available() {
        return;
    }
    let out = kpinspect()
        .args(["compile", "--mode", "nftables", "--hostname", "n1"])
        .args(["--node-ip", "10.0.0.2", "--node-ip", "fd00::2"])
        .arg(root().join("fixtures/apply/cluster-dual.yaml"))
        .output()
        .expect("run kpinspect");
    let path = write_temp("dual.nft", &ok(&out, "compile dual stack"));
    let d = json(&dump_in_netns(
        &format!("nft -f {}", path.display()),
        &["--format", "json"],
    ));
    let _ = std::fs::remove_file(&path);
    let families: std::collections::BTreeSet<&str> = d["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s["family"].as_str())
        .collect();
    assert_eq!(
        families.into_iter().collect::<Vec<_>>(),
        ["ipv4", "ipv6"],
        "{d}"
    );
    let tables: Vec<&Value> = d["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter(|s| s["generation"]["mode"] == "nftables")
        .collect();
    assert_eq!(tables.len(), 2, "{}", d["sources"]);
    assert!(
        d["anomalies"].as_array().is_some_and(Vec::is_empty),
        "{}",
        d["anomalies"]
    );
}

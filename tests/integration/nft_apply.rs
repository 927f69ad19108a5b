//! `kpinspect apply|diff|cleanup` in nftables mode on a real kernel, in the
//! routed test node's namespace (see `node.rs`): apply, diff clean, a
//! second apply writes nothing, a scale-down and a deleted Service written
//! minimally, cleanup; other programs' nftables tables (an `inet filter`
//! table with a rule, a docker-style `ip nat` table) and iptables rules
//! byte-identical throughout; and mode switches iptables ↔ nftables ending
//! as a node that only ever ran the new mode.

use std::process::Output;

use crate::apply::same_state;
use crate::node::{
    Backend, Layout, NODE_IP, TestNode, add_foreign_state, available, foreign, kp, kube_proxy_state,
};
use crate::util::{ok, stderr, stdout};

pub(crate) const NFT_CONFIG: &str = "fixtures/nftables-mode/config.yaml";
const IPT_CONFIG: &str = "fixtures/routed/config.yaml";
const CLUSTER: &str = "fixtures/routed/cluster.yaml";
/// routed/web scaled from three endpoints to two, routed/np deleted.
const SCALED: &str = "fixtures/apply/cluster-scaled.yaml";

fn root(rel: &str) -> String {
    crate::util::root().join(rel).display().to_string()
}

fn run(node: &TestNode, verb: &str, config: &str, cluster: &str, extra: &[&str]) -> Output {
    let (config, cluster, ip) = (root(config), root(cluster), NODE_IP.to_string());
    let mut argv = vec![verb, "--config", &config, "--node-ip", &ip];
    argv.extend(extra);
    argv.push(&cluster);
    kp(node, &argv)
}

/// Other programs' nftables tables.
pub(crate) const FOREIGN_NFT: &str = "table inet filter {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept comment \"ssh\"
	}
}
table ip nat {
	chain DOCKER {
	}
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump DOCKER
	}
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 172.17.0.0/16 oifname != \"docker0\" masquerade
	}
}
";

/// The foreign nftables tables a node of `backend` can hold beside its
/// iptables: all of [`FOREIGN_NFT`] with the legacy backend; with
/// iptables-nft, whose own `ip nat` table holds other programs' iptables
/// rules, only the `inet filter` table.
pub(crate) fn foreign_nft(backend: Backend) -> &'static str {
    match backend {
        Backend::Legacy => FOREIGN_NFT,
        Backend::Nft => FOREIGN_NFT.split("table ip nat").next().unwrap_or_default(),
    }
}

pub(crate) fn add_foreign_nft(node: &TestNode, tables: &str) {
    let path = std::env::temp_dir().join(format!(
        "kpinspect-nft-foreign-{}-{}.nft",
        std::process::id(),
        node.node
    ));
    std::fs::write(&path, tables).expect("write");
    let p = path.display().to_string();
    node.node_exec_ok(&["nft", "-f", &p]);
    let _ = std::fs::remove_file(&path);
}

pub(crate) fn nft_list(node: &TestNode, family: &str, table: &str) -> String {
    let out = node.node_exec(&["nft", "list", "table", family, table]);
    if out.status.success() {
        stdout(&out)
    } else {
        String::new()
    }
}

pub(crate) fn tables(node: &TestNode) -> Vec<String> {
    node.node_exec_ok(&["nft", "list", "tables"])
        .lines()
        .map(String::from)
        .collect()
}

fn kube_proxy_tables(node: &TestNode) -> (String, String) {
    (
        nft_list(node, "ip", "kube-proxy"),
        nft_list(node, "ip6", "kube-proxy"),
    )
}

/// A node with other programs' iptables state (and, with `nft_tables`,
/// their nftables tables).
fn fresh(backend: Backend, nft_tables: Option<&str>) -> TestNode {
    let node = TestNode::new(Layout {
        pods: 0,
        backend,
        ipv6: false,
    });
    add_foreign_state(&node);
    if let Some(t) = nft_tables {
        add_foreign_nft(&node, t);
    }
    node
}

#[test]
fn nftables_apply_diff_and_cleanup() {
    if !available() {
        return;
    }
    // The legacy backend keeps iptables out of nftables: the ip nat table
    // here is another program's, not iptables-nft's.
    let node = fresh(Backend::Legacy, Some(FOREIGN_NFT));
    let before_inet = nft_list(&node, "inet", "filter");
    let before_nat = nft_list(&node, "ip", "nat");
    assert!(before_nat.contains("masquerade"), "{before_nat}");
    let before_ipt = foreign(&node.save());

    ok(&run(&node, "apply", NFT_CONFIG, CLUSTER, &[]), "apply");
    let table = nft_list(&node, "ip", "kube-proxy");
    assert!(table.contains("routed/np/tcp/http"), "{table}");
    let d = run(&node, "diff", NFT_CONFIG, CLUSTER, &[]);
    assert_eq!(d.status.code(), Some(0), "{}{}", stdout(&d), stderr(&d));
    assert!(stdout(&d).contains("IPv4: in sync"), "{}", stdout(&d));
    assert!(
        stdout(&d).contains("nft object comments: supported (detected)"),
        "{}",
        stdout(&d)
    );
    let again = run(&node, "apply", NFT_CONFIG, CLUSTER, &[]);
    ok(&again, "second apply");
    assert!(
        stderr(&again).contains("IPv4 (nft list table ip kube-proxy): in sync, nothing written"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        nft_list(&node, "ip", "kube-proxy"),
        table,
        "nothing written"
    );

    // Against the scaled cluster: diff says how, the dry run shows the
    // minimal transaction, the apply writes it.
    let d = run(&node, "diff", NFT_CONFIG, SCALED, &[]);
    assert_eq!(d.status.code(), Some(1));
    let text = stdout(&d);
    assert!(
        text.contains("endpoints differ (-10.244.0.13:8080)"),
        "{text}"
    );
    assert!(text.contains("stale (not in the cluster files)"), "{text}");
    let json = run(&node, "diff", NFT_CONFIG, SCALED, &["--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    assert_eq!(v["in_sync"], false);
    let ipv4 = &v["families"][0];
    assert_eq!(ipv4["family"], "ipv4");
    let states: Vec<(&str, &str)> = ipv4["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap_or(""),
                s["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("routed/np:http", "stale"),
            ("routed/web:http", "endpoints-differ")
        ]
    );
    assert_eq!(ipv4["elements"].as_array().map(Vec::len), Some(3));
    assert_eq!(v["families"][1]["family"], "ipv6");
    let dry = ok(
        &run(&node, "apply", NFT_CONFIG, SCALED, &["--dry-run"]),
        "dry run",
    );
    let lines: Vec<&str> = dry.lines().collect();
    // web's service chain rewritten (add, flush, 2 rules); the removed
    // endpoint's and np's 4 chains flushed and deleted; np's 3 elements.
    assert_eq!(lines.len(), 17, "{dry}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("add chain")).count(),
        1,
        "{dry}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("delete chain"))
            .count(),
        5,
        "{dry}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("delete element"))
            .count(),
        3,
        "{dry}"
    );
    assert_eq!(
        nft_list(&node, "ip", "kube-proxy"),
        table,
        "a dry run writes nothing"
    );
    let applied = run(&node, "apply", NFT_CONFIG, SCALED, &[]);
    ok(&applied, "apply scaled");
    assert!(
        stderr(&applied).contains("IPv4: applied 17 operations"),
        "{}",
        stderr(&applied)
    );
    let scaled = nft_list(&node, "ip", "kube-proxy");
    assert!(
        !scaled.contains("routed/np/"),
        "np's chains are gone:\n{scaled}"
    );
    assert!(!scaled.contains("10.244.0.13/8080"), "{scaled}");
    let d = run(&node, "diff", NFT_CONFIG, SCALED, &[]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));

    // Cleanup removes the two kube-proxy tables and nothing else.
    let dry = ok(
        &kp(&node, &["cleanup", "--mode", "nftables", "--dry-run"]),
        "dry",
    );
    assert_eq!(
        dry,
        "# nft -f -\ndelete table ip kube-proxy\ndelete table ip6 kube-proxy\n"
    );
    ok(&kp(&node, &["cleanup", "--mode", "nftables"]), "cleanup");
    assert!(!tables(&node).iter().any(|t| t.ends_with(" kube-proxy")));
    assert_eq!(nft_list(&node, "inet", "filter"), before_inet);
    assert_eq!(nft_list(&node, "ip", "nat"), before_nat);
    assert_eq!(foreign(&node.save()), before_ipt);
}

/// A plan deleting most of the node's service ports is refused without
/// `--force` (exit 2, nothing written); the dry run warns and shows it.
#[test]
fn nftables_apply_refuses_wiping_most_services() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Nft, None);
    ok(&run(&node, "apply", NFT_CONFIG, CLUSTER, &[]), "apply");
    let table = nft_list(&node, "ip", "kube-proxy");
    // Both Services renamed: both of the node's service ports would go.
    let renamed = std::fs::read_to_string(root(CLUSTER))
        .expect("read")
        .replace("  name: web\n", "  name: web2\n")
        .replace("  name: np\n", "  name: np2\n")
        .replace("service-name: web\n", "service-name: web2\n")
        .replace("service-name: np\n", "service-name: np2\n");
    let path =
        std::env::temp_dir().join(format!("kpinspect-nft-renamed-{}.yaml", std::process::id()));
    std::fs::write(&path, renamed).expect("write");
    let p = path.display().to_string();
    let out = run(&node, "apply", NFT_CONFIG, &p, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the plan deletes 2 of the node's 2 IPv4 service ports"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        nft_list(&node, "ip", "kube-proxy"),
        table,
        "nothing written"
    );
    let dry = run(&node, "apply", NFT_CONFIG, &p, &["--dry-run"]);
    assert!(
        stdout(&dry).contains("delete chain ip kube-proxy service-"),
        "{}",
        stdout(&dry)
    );
    assert!(stderr(&dry).contains("apply refuses this without --force"));
    ok(&run(&node, "apply", NFT_CONFIG, &p, &["--force"]), "forced");
    let d = run(&node, "diff", NFT_CONFIG, &p, &[]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));
}

/// A transaction nft refuses (an element comment longer than 128
/// characters: a Service without endpoints whose namespace, name and port
/// name are as long as Kubernetes allows, kubernetes issue #139515) fails
/// with its line, object and Service named, and changes nothing.
#[test]
fn a_refused_transaction_names_its_line_and_service_and_changes_nothing() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Nft, None);
    ok(&run(&node, "apply", NFT_CONFIG, CLUSTER, &[]), "apply");
    let table = nft_list(&node, "ip", "kube-proxy");
    let (ns, name) = ("a".repeat(63), "b".repeat(63));
    let extra = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  clusterIP: \"172.30.0.30\"\n  clusterIPs:\n  - \"172.30.0.30\"\n  ports:\n  - name: port-name-15-ch\n    port: 80\n    protocol: TCP\n  type: ClusterIP\n"
    );
    let text = std::fs::read_to_string(root(CLUSTER)).expect("read") + &extra;
    let path = std::env::temp_dir().join(format!("kpinspect-nft-long-{}.yaml", std::process::id()));
    std::fs::write(&path, text).expect("write");
    let p = path.display().to_string();
    let out = run(&node, "apply", NFT_CONFIG, &p, &[]);
    let _ = std::fs::remove_file(&path);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("longer than 128"), "the compiler warns: {err}");
    let service = format!("for {ns}/{name}:port-name-15-ch");
    assert!(
        err.contains("apply failed at transaction line ")
            && err.contains(&format!("(no-endpoint-services {service})")),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(err.contains("comment too long"), "nft's own error: {err}");
    assert_eq!(
        nft_list(&node, "ip", "kube-proxy"),
        table,
        "nothing written"
    );
}

/// iptables → nftables: apply iptables mode, then nftables mode, then
/// `cleanup --stale-only` with the nftables configuration: the node equals
/// one that only ever ran nftables mode (its kube-proxy tables, and no
/// kube-proxy iptables state). Then back: nftables → iptables, `cleanup
/// --stale-only` with the iptables configuration removes the tables.
#[test]
fn stale_only_cleanup_after_switching_iptables_and_nftables() {
    if !available() {
        return;
    }
    let foreign_inet = foreign_nft(Backend::Nft);
    // iptables → nftables.
    let pure = fresh(Backend::Nft, Some(foreign_inet));
    ok(
        &run(&pure, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    let switched = fresh(Backend::Nft, Some(foreign_inet));
    ok(
        &run(&switched, "apply", IPT_CONFIG, CLUSTER, &[]),
        "apply iptables",
    );
    assert!(!kube_proxy_state(&switched.save()).is_empty());
    ok(
        &run(&switched, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    let config = root(NFT_CONFIG);
    let dry = ok(
        &kp(
            &switched,
            &["cleanup", "--stale-only", "--config", &config, "--dry-run"],
        ),
        "dry run",
    );
    assert!(dry.contains("-X KUBE-SVC-"), "{dry}");
    assert!(
        !dry.contains("delete table"),
        "nftables mode keeps its tables: {dry}"
    );
    ok(
        &kp(&switched, &["cleanup", "--stale-only", "--config", &config]),
        "cleanup",
    );
    assert_eq!(kube_proxy_tables(&switched), kube_proxy_tables(&pure));
    assert!(kube_proxy_tables(&pure).0.contains("routed/web/tcp/http"));
    let (s, p) = (switched.save(), pure.save());
    assert!(kube_proxy_state(&s).is_empty(), "{s}");
    assert_eq!(same_state(&s), same_state(&p));
    assert_eq!(
        nft_list(&switched, "inet", "filter"),
        nft_list(&pure, "inet", "filter")
    );
    let d = run(&switched, "diff", NFT_CONFIG, CLUSTER, &[]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));

    // nftables → iptables.
    let pure = fresh(Backend::Nft, Some(foreign_inet));
    ok(
        &run(&pure, "apply", IPT_CONFIG, CLUSTER, &[]),
        "apply iptables",
    );
    let switched = fresh(Backend::Nft, Some(foreign_inet));
    ok(
        &run(&switched, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    ok(
        &run(&switched, "apply", IPT_CONFIG, CLUSTER, &[]),
        "apply iptables",
    );
    let config = root(IPT_CONFIG);
    let dry = ok(
        &kp(
            &switched,
            &["cleanup", "--stale-only", "--config", &config, "--dry-run"],
        ),
        "dry run",
    );
    assert!(
        dry.contains("delete table ip kube-proxy\ndelete table ip6 kube-proxy\n"),
        "{dry}"
    );
    ok(
        &kp(&switched, &["cleanup", "--stale-only", "--config", &config]),
        "cleanup",
    );
    assert_eq!(kube_proxy_tables(&switched), (String::new(), String::new()));
    assert_eq!(same_state(&switched.save()), same_state(&pure.save()));
    assert_eq!(
        nft_list(&switched, "inet", "filter"),
        nft_list(&pure, "inet", "filter")
    );
    assert!(nft_list(&switched, "inet", "filter").contains("ssh"));
    let d = run(&switched, "diff", IPT_CONFIG, CLUSTER, &[]);
    assert_eq!(d.status.code(), Some(0), "{}", stdout(&d));
}

/// `cleanup --mode all` removes the nftables tables too.
#[test]
fn cleanup_all_includes_the_nftables_tables() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Nft, None);
    ok(
        &run(&node, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    ok(
        &run(&node, "apply", IPT_CONFIG, CLUSTER, &[]),
        "apply iptables",
    );
    let out = ok(
        &kp(&node, &["cleanup", "--mode", "all", "--verbose"]),
        "cleanup",
    );
    assert!(
        out.contains("removed nftables table ip kube-proxy"),
        "{out}"
    );
    assert!(kube_proxy_state(&node.save()).is_empty());
    assert!(!tables(&node).iter().any(|t| t.ends_with(" kube-proxy")));
}

/// IPVS → nftables on this kernel (IPVS mode's rules, jumps and ipsets;
/// its virtual servers need the VM): `cleanup --stale-only` with the
/// nftables configuration removes them all, keeps the kube-proxy tables.
#[test]
fn stale_only_cleanup_after_switching_ipvs_to_nftables() {
    if !available() {
        return;
    }
    let pure = fresh(Backend::Nft, None);
    ok(
        &run(&pure, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    let switched = fresh(Backend::Nft, None);
    crate::apply::program_ipvs_mode(&switched);
    assert_eq!(crate::apply::ipsets(&switched).len(), 17);
    ok(
        &run(&switched, "apply", NFT_CONFIG, CLUSTER, &[]),
        "apply nftables",
    );
    let config = root(NFT_CONFIG);
    let out = ok(
        &kp(
            &switched,
            &["cleanup", "--stale-only", "--config", &config, "--verbose"],
        ),
        "cleanup",
    );
    assert!(out.contains("removed ipset KUBE-CLUSTER-IP"), "{out}");
    assert!(crate::apply::ipsets(&switched).is_empty());
    let (s, p) = (switched.save(), pure.save());
    assert!(kube_proxy_state(&s).is_empty(), "{s}");
    assert_eq!(same_state(&s), same_state(&p));
    assert_eq!(kube_proxy_tables(&switched), kube_proxy_tables(&pure));
}

/// Session affinity: the kernel fills the affinity sets with client
/// addresses; those entries are not kube-proxy's, so an apply over them
/// writes nothing and keeps them.
#[test]
fn affinity_entries_the_kernel_added_are_left_alone() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Nft, None);
    let fx = crate::util::fixture_at("fixtures/nftables/edge_affinity");
    let (config, cluster) = (
        fx.path("config.yaml").display().to_string(),
        fx.path("cluster.yaml").display().to_string(),
    );
    let args = fx.args();
    let apply = |extra: &[&str]| {
        let mut argv = vec!["apply", "--mode", "nftables", "--config", &config];
        argv.extend(args.iter().map(String::as_str));
        argv.extend(extra);
        argv.push(&cluster);
        kp(&node, &argv)
    };
    ok(&apply(&[]), "apply");
    let table = nft_list(&node, "ip", "kube-proxy");
    let set = table
        .lines()
        .find_map(|l| l.trim().strip_prefix("set affinity-"))
        .and_then(|l| l.split_whitespace().next())
        .map(|s| format!("affinity-{s}"))
        .expect("an affinity set");
    node.node_exec_ok(&[
        "nft",
        "add",
        "element",
        "ip",
        "kube-proxy",
        &set,
        "{ 10.0.0.7 }",
    ]);
    let filled = nft_list(&node, "ip", "kube-proxy");
    assert!(filled.contains("10.0.0.7"), "{filled}");
    let again = apply(&[]);
    ok(&again, "second apply");
    assert!(
        stderr(&again).contains("IPv4 (nft list table ip kube-proxy): in sync, nothing written"),
        "{}",
        stderr(&again)
    );
    assert!(nft_list(&node, "ip", "kube-proxy").contains("10.0.0.7"));
}

/// `apply` and `cleanup` in nftables mode report in JSON like the other
/// modes (`families[].nftables` for the transaction, `nftables` for the
/// tables a cleanup deletes); a cleanup of a node with more than a screen
/// of state prints its summary, and the list only with `--verbose`.
#[test]
fn nftables_reports_in_json_and_cleanup_summarises() {
    if !available() {
        return;
    }
    let node = fresh(Backend::Legacy, None);
    let json = |out: &Output, what: &str| -> serde_json::Value {
        serde_json::from_str(&ok(out, what)).expect("JSON")
    };
    let dry = json(
        &run(
            &node,
            "apply",
            NFT_CONFIG,
            CLUSTER,
            &["--dry-run", "-o", "json"],
        ),
        "dry run",
    );
    assert_eq!(dry["dry_run"], true);
    let v4 = &dry["families"][0];
    assert_eq!(v4["family"], "ipv4", "{dry:#}");
    assert_eq!(v4["in_sync"], false, "{dry:#}");
    let tx = v4["nftables"]["transaction"].as_str().expect("transaction");
    assert!(tx.contains("add table ip kube-proxy"), "{tx}");
    assert_eq!(
        v4["nftables"]["operations"].as_u64(),
        Some(tx.lines().count() as u64),
        "{dry:#}"
    );
    assert!(tables(&node).iter().all(|t| !t.ends_with(" kube-proxy")));
    let done = json(
        &run(&node, "apply", NFT_CONFIG, CLUSTER, &["-o", "json"]),
        "apply",
    );
    assert_eq!(done["dry_run"], false);
    assert_eq!(done["families"][0]["nftables"]["transaction"], tx);
    assert!(nft_list(&node, "ip", "kube-proxy").contains("routed/web/tcp/http"));
    let again = json(
        &run(&node, "apply", NFT_CONFIG, CLUSTER, &["-o", "json"]),
        "again",
    );
    assert_eq!(again["families"][0]["in_sync"], true, "{again:#}");
    assert_eq!(again["families"][0]["nftables"]["operations"], 0);

    let dry = json(
        &kp(
            &node,
            &["cleanup", "--mode", "nftables", "--dry-run", "-o", "json"],
        ),
        "cleanup dry run",
    );
    assert_eq!(dry["nftables"]["removed"], false, "{dry:#}");
    let tables_of = |v: &serde_json::Value| -> Vec<String> {
        v["nftables"]["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .map(|t| {
                format!(
                    "{} {}",
                    t["family"].as_str().unwrap_or(""),
                    t["table"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(tables_of(&dry), ["ip kube-proxy", "ip6 kube-proxy"]);

    // An iptables-mode node too, for the summary of a cleanup of all.
    ok(
        &run(&node, "apply", IPT_CONFIG, CLUSTER, &[]),
        "apply iptables",
    );
    let summary = kp(&node, &["cleanup", "--mode", "all", "--dry-run"]);
    let err = stderr(&summary);
    assert!(err.starts_with("summary: would remove "), "{err}");
    assert!(err.contains("nftables tables"), "{err}");
    assert!(err.contains("--verbose prints them"), "{err}");
    assert!(!err.contains("would remove chain "), "{err}");
    let verbose = kp(
        &node,
        &["cleanup", "--mode", "all", "--dry-run", "--verbose"],
    );
    let long = stderr(&verbose);
    assert!(long.starts_with("summary: would remove "), "{long}");
    assert!(
        long.contains("would remove chain nat KUBE-SERVICES\n"),
        "{long}"
    );
    assert!(
        long.contains("would remove nftables table ip kube-proxy\n"),
        "{long}"
    );

    let done = json(
        &kp(&node, &["cleanup", "--mode", "nftables", "-o", "json"]),
        "cleanup",
    );
    assert_eq!(done["nftables"]["removed"], true, "{done:#}");
    assert_eq!(tables_of(&done), ["ip kube-proxy", "ip6 kube-proxy"]);
    assert!(!tables(&node).iter().any(|t| t.ends_with(" kube-proxy")));
}

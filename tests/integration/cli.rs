//! The command line: errors, exit statuses, formats.

use crate::util::{run, stderr, stdout};

#[test]
fn compiles_the_shipped_example() {
    let out = run(&[
        "compile",
        "--config",
        "examples/kube-proxy-config.yaml",
        "examples/cluster.yaml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("*filter\n"));
    assert!(
        text.contains("-A KUBE-SERVICES -m comment --comment \"default/web-svc-cip cluster IP\"")
    );
    assert!(kpinspect_core::mode::iptables::check_rule_jumps(&text).is_empty());
}

/// Writes `text` to a temporary file named `name` and returns its path.
fn temp_input(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kpinspect-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write input");
    path
}

const SVC_HEAD: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n";

/// Runs `compile` on `text` and asserts a one-line error containing all of
/// `needles`, exit status 2 and nothing on stdout.
fn assert_bad_input(name: &str, text: &str, needles: &[&str]) {
    let path = temp_input(name, text);
    let out = run(&["compile", path.to_str().expect("path")]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit status; stderr: {err}"
    );
    assert!(
        stdout(&out).is_empty(),
        "{name}: printed rules despite the error"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "{name}: error is not one line: {err}"
    );
    assert!(err.starts_with("kpinspect: error: "), "{name}: {err}");
    assert!(
        err.contains(path.to_str().expect("path")),
        "{name}: error does not name the file: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{name}: error lacks {n:?}: {err}");
    }
}

#[test]
fn bad_input_is_one_line_exit_2() {
    assert_bad_input(
        "broken.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: [unclosed\n",
        &["invalid YAML"],
    );
    assert_bad_input(
        "broken.json",
        "{\"apiVersion\": \"v1\", \"kind\": ",
        &["invalid JSON"],
    );
    assert_bad_input(
        "kind.yaml",
        "apiVersion: v1\nmetadata: {name: x, namespace: other}\n",
        &["kind", "missing"],
    );
    assert_bad_input(
        "cip.yaml",
        &format!("{SVC_HEAD}spec: {{clusterIP: 10.0.0.300, ports: [{{port: 80}}]}}\n"),
        &["Service default/web", "spec.clusterIP", "10.0.0.300"],
    );
    assert_bad_input(
        "port.yaml",
        &format!("{SVC_HEAD}spec: {{clusterIP: 10.0.0.1, ports: [{{port: 70000}}]}}\n"),
        &["Service default/web", "spec.ports[0].port", "out of range"],
    );
    assert_bad_input(
        "porttype.yaml",
        &format!("{SVC_HEAD}spec: {{clusterIP: 10.0.0.1, ports: [{{port: eighty}}]}}\n"),
        &["Service default/web", "spec.ports[0].port"],
    );
    assert_bad_input(
        "proto.yaml",
        &format!(
            "{SVC_HEAD}spec: {{clusterIP: 10.0.0.1, ports: [{{port: 80, protocol: ICMP}}]}}\n"
        ),
        &["spec.ports[0].protocol", "ICMP"],
    );
    assert_bad_input(
        "noname.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {namespace: default}\nspec: {clusterIP: 10.0.0.1}\n",
        &["metadata.name", "missing"],
    );
    assert_bad_input(
        "nolabel.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: default}\naddressType: IPv4\nendpoints: []\n",
        &["EndpointSlice default/web-1", "kubernetes.io/service-name"],
    );
    assert_bad_input(
        "policy.yaml",
        &format!(
            "{SVC_HEAD}spec: {{clusterIP: 10.0.0.1, externalTrafficPolicy: Nearby, ports: [{{port: 80}}]}}\n"
        ),
        &["spec.externalTrafficPolicy", "Nearby"],
    );
    assert_bad_input(
        "list.yaml",
        &format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}",
            "{apiVersion: v1, kind: Service, metadata: {name: a, namespace: b}, spec: {clusterIP: 10.0.0.1, ports: [{port: 0}]}}\n"
        ),
        &["Service b/a", "spec.ports[0].port"],
    );
}

#[test]
fn bad_config_and_flags_are_one_line_exit_2() {
    let svc = temp_input(
        "ok.yaml",
        &format!("{SVC_HEAD}spec: {{clusterIP: 10.0.0.1, ports: [{{port: 80}}]}}\n"),
    );
    let svc = svc.to_str().expect("path");
    let cfg = temp_input(
        "cfg.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: userspace\n",
    );
    let out = run(&["compile", "--config", cfg.to_str().expect("path"), svc]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("cfg.yaml: KubeProxyConfiguration: mode: unknown mode \"userspace\""),
        "{err}"
    );
    let cfg = temp_input(
        "cfg2.yaml",
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nclusterCIDR: 10.0.0.0/33\n",
    );
    let out = run(&["compile", "--config", cfg.to_str().expect("path"), svc]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("clusterCIDR[0]: invalid CIDR"),
        "{}",
        stderr(&out)
    );
    let out = run(&["compile", "--node-ip", "300.1.1.1", svc]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--node-ip: invalid IP address"),
        "{}",
        stderr(&out)
    );
    let out = run(&["compile", "/nonexistent/cluster.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/cluster.yaml: cannot read"),
        "{}",
        stderr(&out)
    );
}

/// What kube-proxy skips is skipped, and said on stderr; the rest compiles.
#[test]
fn skipped_input_is_reported() {
    let svc = temp_input(
        "skip.yaml",
        &format!(
            "{SVC_HEAD}spec: {{type: NodePort, clusterIP: 10.0.0.1, externalIPs: [\"1.2.3.x\", 192.168.0.010], ports: [{{port: 80, nodePort: 30080}}]}}\n"
        ),
    );
    let out = run(&["compile", "--hostname", "n1", svc.to_str().expect("path")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("Service default/web: spec.externalIPs[0]: invalid IP address \"1.2.3.x\""),
        "{err}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("-d 192.168.0.10 --dport 80 -j REJECT"),
        "{text}"
    );
    assert!(!text.contains("1.2.3"), "{text}");
}

/// `kubectl get all -A -o yaml` mixes Pods, Deployments and ReplicaSets
/// with Services: they are skipped, with one warning counting them per
/// kind; the Services compile as if given alone.
#[test]
fn objects_kube_proxy_does_not_read_are_skipped_and_counted() {
    let alone = run(&["compile", "--hostname", "minikube", "examples/cluster.yaml"]);
    let mut text = std::fs::read_to_string(crate::util::root().join("examples/cluster.yaml"))
        .expect("example");
    for (kind, n) in [("Pod", 3), ("Deployment", 1), ("ReplicaSet", 2)] {
        for i in 0..n {
            text += &format!(
                "\n---\napiVersion: v1\nkind: {kind}\nmetadata: {{name: x{i}, namespace: default}}\nspec: {{}}\n"
            );
        }
    }
    let path = temp_input("all.yaml", &text);
    let out = run(&[
        "compile",
        "--hostname",
        "minikube",
        path.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), stdout(&alone));
    let err = stderr(&out);
    assert_eq!(
        err.matches("kube-proxy does not read").count(),
        1,
        "one warning: {err}"
    );
    assert!(
        err.contains(
            "skipped 6 objects kube-proxy does not read: 1 Deployment, 3 Pod, 2 ReplicaSet"
        ),
        "{err}"
    );
}

/// `kubectl get -o json` output reads the same as YAML.
#[test]
fn json_input_matches_yaml_input() {
    let yaml = run(&["compile", "--hostname", "minikube", "examples/cluster.yaml"]);
    let json = run(&["compile", "--hostname", "minikube", "examples/cluster.json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    assert_eq!(stdout(&yaml), stdout(&json));
}

/// `--format sorted` is kube-proxy's normaliser applied to `--format restore`.
#[test]
fn sorted_format_is_the_normalised_restore() {
    let raw = run(&["compile", "--hostname", "minikube", "examples/cluster.yaml"]);
    let sorted = run(&[
        "compile",
        "--hostname",
        "minikube",
        "--format",
        "sorted",
        "examples/cluster.yaml",
    ]);
    let want =
        kpinspect_core::mode::iptables::sort_iptables_rules(&stdout(&raw)).expect("normalise");
    assert_eq!(stdout(&sorted), want);
    assert_ne!(stdout(&sorted), stdout(&raw));
}

/// `trace` over kube-proxy's restore text (no built-in chains: kube-proxy's
/// jumps are assumed, and said so): JSON with the documented keys, one DNAT
/// outcome per endpoint with probabilities adding up to 1.
#[test]
fn trace_json_over_restore_text() {
    let out = run(&[
        "trace",
        "--iptables-save",
        "fixtures/iptables-save/example.restore",
        "--src",
        "10.244.0.9",
        "--dst",
        "10.105.121.211:80/tcp",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let outcomes = v["outcomes"].as_array().expect("outcomes");
    assert!(outcomes.len() >= 2, "{v:#}");
    let mut sum = 0.0;
    for o in outcomes {
        for key in ["action", "to", "probability", "masquerade", "path"] {
            assert!(o.get(key).is_some(), "no {key} in {o}");
        }
        assert_eq!(o["action"], "DNAT");
        sum += o["probability"].as_f64().expect("probability");
        assert!(o["path"][0]["chain"].is_string());
    }
    assert!((sum - 1.0).abs() < 1e-6, "probabilities add up to {sum}");
    assert!(
        v["assumptions"][0]
            .as_str()
            .expect("assumption")
            .contains("jump rules")
    );
}

/// `trace` text leads with one line per outcome (verdict, probability,
/// masquerade, conditions), then the paths, each way of a joined outcome
/// lettered.
#[test]
fn trace_text_leads_with_one_line_per_outcome() {
    let out = run(&[
        "trace",
        "--iptables-save",
        "fixtures/iptables-save/weave-1.11.txt",
        "--local-ip",
        "192.168.56.11",
        "--src",
        "10.32.0.5",
        "--dst",
        "10.96.0.10:53/udp",
        "--in-interface",
        "weave",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| *l == "outcomes:").expect(&text);
    let summary: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .copied()
        .collect();
    assert_eq!(summary.len(), 4, "{text}");
    assert!(
        summary[0].starts_with(
            "  1. DNAT to 10.32.0.2:53  (probability 1/2, not masqueraded)  if either "
        ),
        "{text}"
    );
    assert!(
        summary[1].starts_with(
            "  2. DROP  (probability 1/2)  if the packet leaves on interface weave, and "
        ),
        "{text}"
    );
    // Then the paths: outcome 1 was reached seven ways.
    let paths = &lines[start + 1 + summary.len()..];
    assert_eq!(paths[1], "1. DNAT to 10.32.0.2:53", "{text}");
    assert!(
        paths[2].starts_with("   a) probability 1/2, if the packet leaves on interface weave"),
        "{text}"
    );
    assert!(
        paths
            .iter()
            .any(|l| l.starts_with("   g) probability 1/2, if the packet does not leave on weave")),
        "{text}"
    );
}

/// A family whose rules hold no kube-proxy chain: said plainly, in text and
/// JSON, and no jump rule is invented for the missing built-in chains.
#[test]
fn trace_says_when_a_family_has_no_kube_proxy_rules() {
    let base = [
        "trace",
        "--iptables-save",
        "fixtures/iptables-save/weave-1.11.txt",
        "--iptables-save",
        "fixtures/iptables-save/weave-1.11.ip6.txt",
        "--src",
        "fd00::5",
        "--dst",
        "[fd00::10]:80/tcp",
    ];
    let out = run(&base);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.lines().nth(1),
        Some(
            "note: no kube-proxy rules for IPv6 in fixtures/iptables-save/weave-1.11.ip6.txt: \
             no kube-proxy chain to jump to, so none is assumed"
        ),
        "{text}"
    );
    assert!(!text.contains("KUBE-"), "{text}");
    assert!(!text.contains("assumptions:"), "{text}");
    let mut json = base.to_vec();
    json.extend(["--format", "json"]);
    let out = run(&json);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert!(
        v["notes"][0].as_str().expect("a note").starts_with(
            "no kube-proxy rules for IPv6 in fixtures/iptables-save/weave-1.11.ip6.txt"
        ),
        "{v:#}"
    );
    assert_eq!(v["assumptions"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["outcomes"].as_array().map(Vec::len), Some(1), "{v:#}");
    assert_eq!(v["outcomes"][0]["action"], "ACCEPT");
    // Only the IPv4 capture: its rules are never met by an IPv6 packet.
    let out = run(&base[..3]
        .iter()
        .chain(&base[5..])
        .copied()
        .collect::<Vec<_>>());
    let text = stdout(&out);
    assert!(
        text.contains("note: no kube-proxy rules for IPv6 in fixtures/iptables-save/weave-1.11.txt: it holds IPv4 rules"),
        "{text}"
    );
    assert!(!text.contains("KUBE-"), "{text}");
}

/// `diff` against a capture: the same services, so only kube-proxy's jump
/// rules are missing (the capture was taken without them): exit status 1;
/// bad arguments: exit status 2 and one line.
#[test]
fn diff_exit_statuses() {
    let args = [
        "diff",
        "--config",
        "examples/kube-proxy-config.yaml",
        "--iptables-save",
        "fixtures/iptables-save/example.nft.txt",
        "examples/cluster.yaml",
    ];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("default/web-svc-cip (tcp)"), "{text}");
    assert!(!text.contains("endpoints differ"), "{text}");
    assert!(text.contains("missing jump rules"), "{text}");
    for bad in [
        vec![
            "trace",
            "--src",
            "10.0.0.1",
            "--dst",
            "10.0.0.2",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
        ],
        vec![
            "trace",
            "--src",
            "nope",
            "--dst",
            "10.0.0.2:80",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
        ],
        vec![
            "diff",
            "--iptables-save",
            "fixtures/iptables-save/example.nft.txt",
            "Cargo.toml",
        ],
        vec!["cleanup", "--dry-run"],
    ] {
        let out = run(&bad);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
    }
}

/// A dual-stack cluster compiles for both families, each under a line
/// naming the tool that loads it; each part is byte-identical to compiling
/// that family alone.
#[test]
fn dual_stack_clusters_compile_for_both_families() {
    let dir = "fixtures/iptables/edge_node_port_addresses";
    let compile = |family: Option<&str>| {
        let mut argv = vec![
            "compile".to_string(),
            "--config".into(),
            format!("{dir}/config.yaml"),
            "--node-ip".into(),
            "192.168.0.2".into(),
        ];
        if let Some(f) = family {
            argv.extend(["--family".into(), f.into()]);
        }
        argv.push(format!("{dir}/cluster.yaml"));
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = run(&refs);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let both = compile(None);
    let (v4, v6) = (compile(Some("ipv4")), compile(Some("ipv6")));
    assert_eq!(
        both,
        format!("# iptables-restore\n{v4}# ip6tables-restore\n{v6}")
    );
    assert!(v6.contains("fd00:"), "{v6}");
    assert!(!v4.contains("fd00:"), "{v4}");
}

#[test]
fn diff_in_ipvs_mode_reads_only_the_live_node() {
    let out = run(&[
        "diff",
        "--mode",
        "ipvs",
        "--iptables-save",
        "/dev/null",
        "examples/cluster.yaml",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err,
        "kpinspect: error: diff --mode ipvs compares with the live node only (drop --iptables-save)\n"
    );
}

/// A bad `--node-port-range` is one line and exit status 2, before the
/// node is looked at (so this runs unprivileged, in any mode).
#[test]
fn bad_node_port_range_is_one_line_exit_2() {
    for argv in [
        vec![
            "cleanup",
            "--mode",
            "ipvs",
            "--dry-run",
            "--node-port-range",
            "32767-30000",
        ],
        vec![
            "diff",
            "--mode",
            "ipvs",
            "--node-port-range",
            "30000",
            "examples/cluster.yaml",
        ],
        vec![
            "apply",
            "--mode",
            "ipvs",
            "--dry-run",
            "--node-port-range",
            "1-70000",
            "examples/cluster.yaml",
        ],
    ] {
        let out = run(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(
            err.starts_with("kpinspect: error: --node-port-range: "),
            "{argv:?}: {err}"
        );
    }
    let help = stdout(&run(&["cleanup", "--help"]));
    assert!(help.contains("--node-port-range <LOW-HIGH>"), "{help}");
    assert!(help.contains("30000-32767"), "{help}");
}

/// `--drain-timeout` takes Go durations; a bad one, or one in iptables
/// mode (nothing drains there), is one line and exit status 2 before the
/// node is looked at.
#[test]
fn bad_drain_timeout_is_one_line_exit_2() {
    for (argv, needle) in [
        (
            vec![
                "apply",
                "--mode",
                "ipvs",
                "--drain-timeout",
                "30",
                "examples/cluster.yaml",
            ],
            "--drain-timeout: invalid duration \"30\"",
        ),
        (
            vec![
                "apply",
                "--mode",
                "iptables",
                "--drain-timeout",
                "1m",
                "examples/cluster.yaml",
            ],
            "--drain-timeout: only IPVS mode drains real servers",
        ),
    ] {
        let out = run(&argv);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{argv:?}: {err}");
        assert!(err.contains(needle), "{argv:?}: {err}");
    }
    let help = stdout(&run(&["apply", "--help"]));
    assert!(help.contains("--drain-timeout <DURATION>"), "{help}");
}

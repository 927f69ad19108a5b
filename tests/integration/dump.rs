//! `dump` over compiled fixtures, real captures, and older kube-proxy styles.

use kpinspect_core::mode::iptables::{AnomalyKind, dump};
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::proxy::{ProxyState, categorize};

use crate::util::{compile_fixtures, root, run, stderr, stdout};

/// For every fixture: what dump reads back from the compiled rules is the
/// cluster model's view (addresses, ports, endpoints, 1/n probabilities).
#[test]
fn dump_reads_back_what_was_compiled() {
    let mut ports = 0;
    for fx in compile_fixtures() {
        let text = fx.compile();
        let rs = Ruleset::parse(&text).expect("compiled text parses");
        let d = dump(&rs, None);
        let (cluster, config) = (fx.cluster(), fx.proxy_config());
        let family = fx.family();
        let state = ProxyState::build(&cluster, &config, family);
        for p in &state.ports {
            let name = &p.info.name;
            let Some(svc) = d.services.iter().find(|s| {
                s.namespace == name.namespace
                    && s.name == name.name
                    && s.port_name == name.port
                    && s.protocol == name.protocol.as_str()
            }) else {
                panic!("{}: {} missing from dump", fx.name, name.to_kube_string());
            };
            let ctx = format!("{}: {}", fx.name, name.to_kube_string());
            assert_eq!(
                svc.cluster_ip.as_deref(),
                Some(p.info.cluster_ip.to_string().as_str()),
                "{ctx}"
            );
            assert_eq!(svc.port, Some(p.info.port), "{ctx}");
            let lbs: Vec<String> = p
                .info
                .load_balancer_vips
                .iter()
                .map(|i| i.to_string())
                .collect();
            let cat = categorize(&p.info, &p.endpoints, &config);
            if cat.has_any {
                assert_eq!(svc.load_balancer_ips, lbs, "{ctx}");
                let xips: Vec<String> = p.info.external_ips.iter().map(|i| i.to_string()).collect();
                assert_eq!(svc.external_ips, xips, "{ctx}");
                if p.info.node_port != 0 {
                    assert_eq!(svc.node_port, Some(p.info.node_port), "{ctx}");
                }
            }
            let set = if p.info.internal_policy_local {
                &cat.local
            } else {
                &cat.cluster
            };
            let want: Vec<String> = set
                .iter()
                .map(|&i| p.endpoints[i].endpoint.clone())
                .collect();
            let got: Vec<String> = svc
                .endpoints
                .iter()
                .map(|e| kpinspect_core::net::join_host_port(&e.ip.parse().expect("ip"), e.port))
                .collect();
            assert_eq!(got, want, "{ctx}");
            for e in &svc.endpoints {
                assert!(
                    (e.probability - 1.0 / want.len() as f64).abs() < 1e-6,
                    "{ctx}: {e:?}"
                );
            }
            assert_eq!(
                svc.affinity_timeout,
                p.info.session_affinity_timeout.filter(|_| !want.is_empty()),
                "{ctx}"
            );
            ports += 1;
        }
        assert!(
            !d.anomalies.iter().any(|a| matches!(
                a.kind,
                AnomalyKind::StaleChain | AnomalyKind::MissingChain | AnomalyKind::DuplicateRule
            )),
            "{}: {:#?}",
            fx.name,
            d.anomalies
        );
    }
    assert!(ports > 100, "only {ports} service ports compared");
}

/// The JSON format of the README, from a real nft capture of the example.
#[test]
fn dump_json_of_the_example() {
    let out = run(&[
        "dump",
        "--format",
        "json",
        "--iptables-save",
        "fixtures/iptables-save/example.nft.txt",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("dump_example_json", stdout(&out));
    let table = run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/example.legacy.txt",
    ]);
    insta::assert_snapshot!("dump_example_table", stdout(&table));
}

/// A node as older kube-proxies left it (1.19-style rules as iptables-save
/// prints them: masquerade in KUBE-SERVICES, KUBE-XLB, KUBE-MARK-DROP,
/// 11-decimal probabilities), plus leftovers of a mode switch.
#[test]
fn dump_understands_old_styles_and_reports_anomalies() {
    let text = std::fs::read_to_string(root().join("fixtures/iptables-save/old-style.txt"))
        .expect("fixture");
    let rs = Ruleset::parse(&text).expect("parses");
    assert_eq!(rs.render(), text);
    let d = dump(&rs, None);
    let web = d
        .services
        .iter()
        .find(|s| s.name == "web")
        .expect("default/web");
    assert_eq!(web.cluster_ip.as_deref(), Some("10.96.12.7"));
    assert_eq!(web.port, Some(80));
    assert_eq!(web.endpoints.len(), 3);
    for e in &web.endpoints {
        assert!((e.probability - 1.0 / 3.0).abs() < 1e-4, "{e:?}");
    }
    let kinds: Vec<(&str, &str)> = d
        .anomalies
        .iter()
        .map(|a| (a.kind.as_str(), a.chain.as_str()))
        .collect();
    for want in [
        ("old-generation", "KUBE-MARK-DROP"),
        ("old-generation", "KUBE-XLB-ABCDEFGHIJKLMNOP"),
        ("stale-chain", "KUBE-SVC-STALESTALESTALE1"),
        ("stale-chain", "KUBE-SEP-STALESTALESTALE2"),
        ("other-mode", "KUBE-NODE-PORT"),
        ("missing-chain", "KUBE-SEP-GONEGONEGONEGONE"),
        ("duplicate-rule", "KUBE-SVC-WEBWEBWEBWEBWEB1"),
    ] {
        assert!(
            kinds.contains(&want),
            "missing anomaly {want:?} in {kinds:#?}"
        );
    }
}

/// With the cluster known, every programmed endpoint says whether it runs on
/// this node, as the model has it (and both kinds occur).
#[test]
fn dump_with_the_cluster_marks_local_endpoints() {
    let (mut local, mut remote) = (0, 0);
    for fx in compile_fixtures() {
        let rs = Ruleset::parse(&fx.compile()).expect("compiled text parses");
        let (cluster, config) = (fx.cluster(), fx.proxy_config());
        let state = ProxyState::build(&cluster, &config, fx.family());
        for svc in dump(&rs, Some(&state)).services {
            let entry = state
                .ports
                .iter()
                .find(|p| {
                    p.info.name.namespace == svc.namespace
                        && p.info.name.name == svc.name
                        && p.info.name.port == svc.port_name
                })
                .expect("service in the model");
            for e in &svc.endpoints {
                let model = entry
                    .endpoints
                    .iter()
                    .find(|m| m.ip.to_string() == e.ip && m.port == e.port)
                    .expect("endpoint in the model");
                assert_eq!(
                    e.local,
                    Some(model.local),
                    "{}: {}/{} {}",
                    fx.name,
                    svc.namespace,
                    svc.name,
                    e.ip
                );
                if model.local {
                    local += 1;
                } else {
                    remote += 1;
                }
            }
        }
    }
    assert!(local > 10 && remote > 10, "local {local}, remote {remote}");
}

/// IPv6 service ports: `[addr]:port`, aligned, the family in the heading
/// and in JSON.
#[test]
fn dump_of_ipv6_rules() {
    let dir = crate::util::iptables_fixtures().join("edge_ipv6");
    let mut args: Vec<String> = vec![
        "compile".into(),
        "--config".into(),
        dir.join("config.yaml").display().to_string(),
    ];
    args.extend(
        std::fs::read_to_string(dir.join("args"))
            .expect("args")
            .lines()
            .map(String::from),
    );
    args.push(dir.join("cluster.yaml").display().to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let compiled = run(&argv);
    assert!(compiled.status.success(), "{}", stderr(&compiled));
    let save = std::env::temp_dir().join(format!("kpinspect-v6-{}.restore", std::process::id()));
    std::fs::write(&save, stdout(&compiled)).expect("write");
    let save_arg = save.display().to_string();
    let table = stdout(&run(&["dump", "--iptables-save", &save_arg]));
    let json = stdout(&run(&[
        "dump",
        "--format",
        "json",
        "--iptables-save",
        &save_arg,
    ]));
    let _ = std::fs::remove_file(&save);
    let heading = table
        .lines()
        .find(|l| l.ends_with("(tcp, IPv6)"))
        .unwrap_or_else(|| panic!("no IPv6 heading in\n{table}"));
    assert!(!heading.starts_with(' '), "{heading}");
    let endpoints: Vec<&str> = table.lines().filter(|l| l.contains("KUBE-SEP-")).collect();
    assert!(!endpoints.is_empty(), "{table}");
    for l in &endpoints {
        assert!(l.contains("]:"), "not bracketed: {l}");
    }
    // One column: within a service, every endpoint's chain starts at the same place.
    for block in table.split("\n\n") {
        let cols: Vec<usize> = block.lines().filter_map(|l| l.find("KUBE-SEP-")).collect();
        assert!(
            cols.windows(2).all(|w| w[0] == w[1]),
            "not aligned:\n{block}"
        );
    }
    let d: serde_json::Value = serde_json::from_str(&json).expect("json");
    for s in d["services"].as_array().expect("services") {
        assert_eq!(s["family"], "ipv6", "{s}");
    }
    let cluster_ip_row = table
        .lines()
        .find(|l| l.trim_start().starts_with("cluster IP"))
        .expect("cluster IP row");
    assert!(cluster_ip_row.contains("]:"), "{cluster_ip_row}");
}

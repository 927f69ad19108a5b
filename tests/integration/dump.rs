//! `dump` over compiled fixtures, real captures, and older kube-proxy styles.

use kpinspect_core::mode::iptables::{AnomalyKind, NodeDump, RulesMode, dump};
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
                    (e.probability.expect("probability") - 1.0 / want.len() as f64).abs() < 1e-6,
                    "{ctx}: {e:?}"
                );
            }
            assert_eq!(
                svc.affinity_timeout,
                p.info.session_affinity_timeout.filter(|_| !want.is_empty()),
                "{ctx}"
            );
            // The external view: where node port, load-balancer and external
            // IPs go, when not where the cluster IP goes.
            let chain_of = |local: bool| {
                if local {
                    (!cat.local.is_empty()).then_some(&cat.local)
                } else {
                    Some(&cat.cluster)
                }
            };
            let internal = chain_of(p.info.internal_policy_local);
            let external = chain_of(p.info.external_policy_local);
            let want_external: Option<Vec<String>> = (cat.has_any
                && p.info.externally_accessible()
                && (internal.is_none()
                    || p.info.internal_policy_local != p.info.external_policy_local))
                .then(|| {
                    external
                        .map(|set| {
                            set.iter()
                                .map(|&i| p.endpoints[i].endpoint.clone())
                                .collect()
                        })
                        .unwrap_or_default()
                });
            let got_external: Option<Vec<String>> = svc.external_endpoints.as_ref().map(|eps| {
                eps.iter()
                    .map(|e| {
                        kpinspect_core::net::join_host_port(&e.ip.parse().expect("ip"), e.port)
                    })
                    .collect()
            });
            assert_eq!(got_external, want_external, "{ctx}: external view");
            for e in svc.external_endpoints.iter().flatten() {
                let n = want_external.as_ref().map_or(0, Vec::len);
                assert!(
                    (e.probability.expect("probability") - 1.0 / n as f64).abs() < 1e-6,
                    "{ctx}: {e:?}"
                );
            }
            if want_external.as_ref().is_some_and(Vec::is_empty) {
                assert_eq!(svc.external_no_endpoints.as_deref(), Some("DROP"), "{ctx}");
            }
            ports += 1;
        }
        // Compiled by the current generation: nothing to report.
        assert!(d.anomalies.is_empty(), "{}: {:#?}", fx.name, d.anomalies);
        let generation = &d.sources[0].generation;
        assert_eq!(generation.mode, RulesMode::Iptables, "{}", fx.name);
        assert!(
            generation.at_least(kpinspect_core::mode::iptables::Version::v1(25)),
            "{}: {generation:?}",
            fx.name
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
/// 11-decimal probabilities), plus leftovers of a mode switch. The rules
/// show a kube-proxy older than 1.17, so its KUBE-XLB chain and
/// KUBE-MARK-DROP are its own, not an older generation's (the XLB chain is
/// stale: nothing reaches it).
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
        assert!(
            (e.probability.expect("probability") - 1.0 / 3.0).abs() < 1e-4,
            "{e:?}"
        );
    }
    let kinds: Vec<(&str, &str)> = d
        .anomalies
        .iter()
        .map(|a| (a.kind.as_str(), a.chain.as_str()))
        .collect();
    for want in [
        ("stale-chain", "KUBE-SVC-STALESTALESTALE1"),
        ("stale-chain", "KUBE-SEP-STALESTALESTALE2"),
        ("stale-chain", "KUBE-XLB-ABCDEFGHIJKLMNOP"),
        ("other-mode", "KUBE-NODE-PORT"),
        ("missing-chain", "KUBE-SEP-GONEGONEGONEGONE"),
        ("duplicate-rule", "KUBE-SVC-WEBWEBWEBWEBWEB1"),
    ] {
        assert!(
            kinds.contains(&want),
            "missing anomaly {want:?} in {kinds:#?}"
        );
    }
    assert!(
        !kinds.iter().any(|(k, _)| *k == "old-generation"),
        "{kinds:#?}"
    );
    let generation = &d.sources[0].generation;
    assert_eq!(generation.mode, RulesMode::Iptables);
    assert_eq!(generation.since, None);
    assert!(
        generation
            .evidence
            .iter()
            .any(|e| e == "KUBE-XLB chains (kube-proxy < 1.24)"),
        "{generation:#?}"
    );
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

/// With the cluster known, every address lands in the list the cluster
/// says, also for Services without endpoints, whose external and
/// load-balancer IPs kube-proxy rejects with the same rule.
#[test]
fn dump_with_the_cluster_classifies_addresses() {
    let mut without_endpoints = 0;
    for fx in compile_fixtures() {
        let rs = Ruleset::parse(&fx.compile()).expect("compiled text parses");
        let (cluster, config) = (fx.cluster(), fx.proxy_config());
        let state = ProxyState::build(&cluster, &config, fx.family());
        let d = dump(&rs, Some(&state));
        for p in &state.ports {
            let name = &p.info.name;
            let svc = d
                .services
                .iter()
                .find(|s| {
                    s.namespace == name.namespace
                        && s.name == name.name
                        && s.port_name == name.port
                        && s.protocol == name.protocol.as_str()
                })
                .unwrap_or_else(|| panic!("{}: {}", fx.name, name.to_kube_string()));
            let ctx = format!("{}: {}", fx.name, name.to_kube_string());
            let strings = |v: &[std::net::IpAddr]| -> Vec<String> {
                v.iter().map(|i| i.to_string()).collect()
            };
            assert_eq!(svc.cluster_ip, Some(p.info.cluster_ip.to_string()), "{ctx}");
            assert_eq!(svc.external_ips, strings(&p.info.external_ips), "{ctx}");
            assert_eq!(
                svc.load_balancer_ips,
                strings(&p.info.load_balancer_vips),
                "{ctx}"
            );
            // Without the cluster, a load-balancer IP of a Service without
            // endpoints reads as an external IP (kube-proxy >= 1.20 rejects
            // both with the same rule).
            let alone = dump(&rs, None);
            let guessed = alone
                .services
                .iter()
                .find(|s| {
                    s.chains == svc.chains && s.name == svc.name && s.port_name == svc.port_name
                })
                .expect("same service without the cluster");
            if guessed.load_balancer_ips != svc.load_balancer_ips {
                assert!(!categorize(&p.info, &p.endpoints, &config).has_any, "{ctx}");
                without_endpoints += 1;
            }
        }
    }
    assert!(
        without_endpoints > 0,
        "no Service without endpoints checked"
    );
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

fn dump_file(name: &str) -> NodeDump {
    let text =
        std::fs::read_to_string(root().join("fixtures/iptables-save").join(name)).expect("fixture");
    let rs = Ruleset::parse(&text).expect("parses");
    assert_eq!(rs.render(), text, "{name} round-trips");
    dump(&rs, None)
}

fn service<'a>(d: &'a NodeDump, ns_name: &str) -> &'a kpinspect_core::mode::iptables::ServiceDump {
    let s = ns_name.to_string();
    d.services
        .iter()
        .find(|x| {
            let full = if x.port_name.is_empty() {
                format!("{}/{}", x.namespace, x.name)
            } else {
                format!("{}/{}:{}", x.namespace, x.name, x.port_name)
            };
            full == s
        })
        .unwrap_or_else(|| panic!("{ns_name} not in {:#?}", d.services))
}

fn endpoints(eps: &[kpinspect_core::mode::iptables::EndpointDump]) -> Vec<(String, u16, f64)> {
    eps.iter()
        .map(|e| (e.ip.clone(), e.port, e.probability.expect("probability")))
        .collect()
}

/// Every address a kube-proxy rule names (`-d` of a rule commented with a
/// Service, the port of an `addrtype LOCAL` rule) reaches the dump, on every
/// capture in `fixtures/iptables-save/`, from kube-proxy 1.11 to current.
#[test]
fn every_address_a_rule_names_reaches_the_dump() {
    let dir = root().join("fixtures/iptables-save");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt" || x == "restore"))
        .collect();
    files.sort();
    let mut checked = 0;
    for path in files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let d = dump_file(&name);
        let rs = Ruleset::parse(&std::fs::read_to_string(&path).expect("read")).expect("parses");
        let addresses: Vec<&str> = d
            .services
            .iter()
            .flat_map(|s| {
                s.cluster_ip
                    .iter()
                    .chain(&s.external_ips)
                    .chain(&s.load_balancer_ips)
                    .map(String::as_str)
            })
            .collect();
        let node_ports: Vec<u16> = d.services.iter().filter_map(|s| s.node_port).collect();
        for (table, rule) in rs.rules() {
            let chain = rule.chain.as_str();
            let fixed = [
                "KUBE-SERVICES",
                "KUBE-EXTERNAL-SERVICES",
                "KUBE-NODEPORTS",
                "KUBE-PROXY-FIREWALL",
            ];
            let Some(comment) = rule.comment() else {
                continue;
            };
            let names_service = comment
                .split(' ')
                .next()
                .is_some_and(|w| w.contains('/') && !w.contains("->"));
            if !fixed.contains(&chain)
                || !names_service
                || comment.ends_with("health check node port")
            {
                continue;
            }
            if let Some((false, dst)) = rule.base("-d") {
                if dst.starts_with("127.") {
                    continue; // localhost node ports
                }
                let ip = dst.trim_end_matches("/32").trim_end_matches("/128");
                assert!(
                    addresses.contains(&ip),
                    "{name}: {} {chain}: {ip} ({comment}) not in the dump",
                    table.name
                );
                checked += 1;
            } else if rule.find_match("addrtype").is_some() {
                let port = rule
                    .matches
                    .iter()
                    .find_map(|m| m.value("--dport"))
                    .and_then(|p| p.parse::<u16>().ok())
                    .expect("node port");
                assert!(
                    node_ports.contains(&port),
                    "{name}: node port {port} not in the dump"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} addresses checked");
}

/// A kube-proxy 1.11 node (kubernetes/kubernetes issue shapes): a Service
/// without endpoints whose cluster IP and load-balancer IP are both
/// rejected in filter KUBE-SERVICES shows both; an external IP written as
/// three rules shows once; the eTP=Local load balancer's external traffic
/// goes 100% to the local endpoint through KUBE-XLB; and nothing that
/// generation never installed (FORWARD → KUBE-SERVICES), nor its own
/// KUBE-XLB/KUBE-MARK-DROP chains, is an anomaly.
#[test]
fn dump_of_a_kube_proxy_1_11_node() {
    let d = dump_file("kube-proxy-1.11.txt");
    let demo = service(&d, "default/nginx-demo");
    assert_eq!(demo.cluster_ip.as_deref(), Some("10.105.31.14"));
    assert_eq!(demo.port, Some(80));
    assert_eq!(demo.load_balancer_ips, ["192.168.26.241"]);
    assert_eq!(demo.node_port, Some(30999));
    assert_eq!(demo.no_endpoints.as_deref(), Some("REJECT"));
    assert_eq!(demo.external_no_endpoints.as_deref(), Some("REJECT"));
    let legacy = service(&d, "default/legacy-api");
    assert_eq!(legacy.cluster_ip.as_deref(), Some("10.99.120.3"));
    assert_eq!(legacy.external_ips, ["192.168.26.101"]);
    let web = service(&d, "default/web");
    assert_eq!(web.external_ips, ["192.168.26.100"]);
    assert_eq!(web.node_port, Some(31080));
    // kube-proxy 1.11 wrote 5-decimal probabilities: 0.33333, then 1/2 of the rest.
    assert_eq!(
        endpoints(&web.endpoints),
        [
            ("10.244.1.5".into(), 8080, 0.33333),
            ("10.244.2.7".into(), 8080, 0.333335),
            ("10.244.1.9".into(), 8080, 0.333335),
        ]
    );
    assert_eq!(web.external_endpoints, None);
    let ingress = service(&d, "ingress-nginx/ingress-nginx:http");
    assert_eq!(ingress.external_traffic_policy, "Local");
    assert_eq!(ingress.load_balancer_ips, ["192.168.26.240"]);
    assert_eq!(
        endpoints(&ingress.endpoints),
        [
            ("10.244.1.12".into(), 80, 0.5),
            ("10.244.2.15".into(), 80, 0.5)
        ]
    );
    assert_eq!(
        endpoints(
            ingress
                .external_endpoints
                .as_deref()
                .expect("external view")
        ),
        [("10.244.1.12".into(), 80, 1.0)]
    );
    assert!(d.anomalies.is_empty(), "{:#?}", d.anomalies);
    let generation = &d.sources[0].generation;
    assert_eq!(generation.mode, RulesMode::Iptables);
    assert_eq!(generation.since, None);
    assert_eq!(
        generation.before.map(|v| v.to_string()).as_deref(),
        Some("1.17")
    );
    for clue in [
        "KUBE-XLB chains (kube-proxy < 1.24)",
        "masquerade rules in nat KUBE-SERVICES (kube-proxy < 1.21)",
        "unnamed ports commented `ns/name:` (kube-proxy < 1.19)",
        "KUBE-POSTROUTING masquerades by a mark match (kube-proxy < 1.19)",
    ] {
        assert!(
            generation.evidence.iter().any(|e| e == clue),
            "{clue}: {generation:#?}"
        );
    }
    let table = stdout(&run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/kube-proxy-1.11.txt",
    ]));
    insta::assert_snapshot!("dump_kube_proxy_1_11_table", table);
}

/// The same node with the FORWARD → KUBE-SERVICES jump judged against a
/// newer generation: once the rules show kube-proxy >= 1.15 (its canary),
/// the missing jump is reported.
#[test]
fn missing_jumps_follow_the_generation() {
    let text = std::fs::read_to_string(root().join("fixtures/iptables-save/kube-proxy-1.11.txt"))
        .expect("fixture");
    let newer = text.replacen(
        ":KUBE-SERVICES - [0:0]\nCOMMIT",
        ":KUBE-SERVICES - [0:0]\n:KUBE-PROXY-CANARY - [0:0]\nCOMMIT",
        1,
    );
    let newer = newer.replacen(
        ":KUBE-SERVICES - [0:0]\n",
        ":KUBE-PROXY-CANARY - [0:0]\n:KUBE-SERVICES - [0:0]\n",
        1,
    );
    let d = dump(&Ruleset::parse(&newer).expect("parses"), None);
    let jumps: Vec<&str> = d
        .anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::MissingJump)
        .map(|a| a.message.as_str())
        .collect();
    assert_eq!(
        jumps,
        [
            "filter table: FORWARD does not jump to KUBE-SERVICES, so kube-proxy's rules there are never used"
        ],
        "{:#?}",
        d.sources
    );
}

/// An IPVS node whose kube-proxy chains exist but are empty
/// (kubernetes/kubernetes#105208): no Service in iptables, and every fixed
/// chain kube-proxy fills on each sync reported once as `missing-rules`.
#[test]
fn dump_flags_an_ipvs_node_with_empty_fixed_chains() {
    let d = dump_file("ipvs-empty-chains.txt");
    assert!(d.services.is_empty());
    assert_eq!(d.sources[0].generation.mode, RulesMode::Ipvs);
    let got: Vec<(&str, &str)> = d
        .anomalies
        .iter()
        .map(|a| (a.kind.as_str(), a.chain.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("missing-rules", "KUBE-FORWARD"),
            ("missing-rules", "KUBE-LOAD-BALANCER"),
            ("missing-rules", "KUBE-MARK-MASQ"),
            ("missing-rules", "KUBE-POSTROUTING"),
            ("missing-rules", "KUBE-SERVICES"),
        ]
    );
    let out = run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/ipvs-empty-chains.txt",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("generation  IPVS mode"), "{text}");
    assert!(
        text.contains("in IPVS mode Services are IPVS virtual servers"),
        "{text}"
    );
    assert!(text.contains("KUBE-POSTROUTING is empty"), "{text}");
}

/// A save edited by hand (`grep -v '^:KUBE-SEP-'`, one endpoint chain's
/// rules deleted): chains with rules but no declaration are said to be
/// undeclared, not missing, and every anomaly is listed once per chain
/// with the number of rules concerned.
#[test]
fn dump_of_a_hand_grepped_save() {
    let d = dump_file("hand-grepped.txt");
    let mut seen = std::collections::BTreeSet::new();
    for a in &d.anomalies {
        assert!(seen.insert((a.kind, a.chain.clone())), "repeated: {a:?}");
    }
    let got: Vec<(&str, &str)> = d
        .anomalies
        .iter()
        .map(|a| (a.kind.as_str(), a.chain.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("missing-chain", "KUBE-SEP-23JWSVTE6QRDTCPC"),
            ("undeclared-chain", "KUBE-SEP-7HRCVYPFWPEXM2FG"),
            ("undeclared-chain", "KUBE-SEP-ECSK5HI6XGATTI4S"),
            ("undeclared-chain", "KUBE-SEP-RLR6ZXJXMQP3D2RN"),
        ]
    );
    let message = |chain: &str| {
        d.anomalies
            .iter()
            .find(|a| a.chain == chain)
            .map(|a| a.message.as_str())
            .unwrap_or_default()
    };
    assert!(message("KUBE-SEP-23JWSVTE6QRDTCPC").starts_with("nat table: 2 rules (in KUBE-SVC-FAXFPGMJVQWLKPGL) jump to KUBE-SEP-23JWSVTE6QRDTCPC, which does not exist"));
    assert!(message("KUBE-SEP-7HRCVYPFWPEXM2FG").starts_with(
        "nat table: KUBE-SEP-7HRCVYPFWPEXM2FG has 2 rules (2 rules jump to it) but no declaration"
    ));
    assert!(!message("KUBE-SEP-7HRCVYPFWPEXM2FG").contains("does not exist"));
    // The endpoints are all there: the chain without rules by its comment.
    let checkout = service(&d, "shop/checkout:http");
    assert_eq!(checkout.affinity_timeout, Some(10800));
    let ips: Vec<(String, u16)> = checkout
        .endpoints
        .iter()
        .map(|e| (e.ip.clone(), e.port))
        .collect();
    assert_eq!(
        ips,
        [
            ("10.244.1.21".into(), 8080),
            ("10.244.2.22".into(), 8080),
            ("10.244.3.23".into(), 8080)
        ]
    );
}

/// DNAT targets an older iptables-save printed wrongly (`--to-destination
/// --random ... 0.0.0.0:0`): one `garbled-rule` per chain naming the
/// version mismatch, and the endpoints still listed by the IP of their
/// hairpin rule (port unknown). Also the lost address: both
/// addresses of `default/nginx-demo` rejected in filter KUBE-SERVICES.
#[test]
fn dump_flags_garbled_dnat_targets() {
    let d = dump_file("garbled-dnat.txt");
    let garbled: Vec<&str> = d
        .anomalies
        .iter()
        .filter(|a| a.kind == AnomalyKind::GarbledRule)
        .map(|a| a.chain.as_str())
        .collect();
    assert_eq!(garbled.len(), 9, "{:#?}", d.anomalies);
    assert!(
        d.anomalies
            .iter()
            .all(|a| a.kind == AnomalyKind::GarbledRule),
        "{:#?}",
        d.anomalies
    );
    let kubernetes = d
        .anomalies
        .iter()
        .find(|a| a.chain == "KUBE-SEP-XDAKEI2XLX7RCSFE")
        .expect("kubernetes endpoint chain");
    assert!(
        kubernetes
            .message
            .contains("--to-destination :0 --persistent"),
        "{}",
        kubernetes.message
    );
    assert!(
        kubernetes
            .message
            .contains("version or legacy/nft mismatch"),
        "{}",
        kubernetes.message
    );
    let web = service(&d, "default/web:http");
    let eps: Vec<(String, u16)> = web
        .endpoints
        .iter()
        .map(|e| (e.ip.clone(), e.port))
        .collect();
    assert_eq!(eps, [("10.42.1.15".into(), 0), ("10.42.2.9".into(), 0)]);
    let demo = service(&d, "default/nginx-demo");
    assert_eq!(demo.cluster_ip.as_deref(), Some("192.168.26.207"));
    assert_eq!(demo.load_balancer_ips, ["100.20.30.43"]);
    assert_eq!(demo.node_port, Some(31880));
    let generation = &d.sources[0].generation;
    assert_eq!(
        generation.summary,
        "iptables mode, kube-proxy >= 1.17, < 1.21 (KUBE-PROXY-CANARY chain; masquerade rules in nat KUBE-SERVICES)"
    );
    let table = stdout(&run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/garbled-dnat.txt",
    ]));
    assert!(
        table.contains("  endpoints              10.42.1.15:?"),
        "{table}"
    );
}

/// externalTrafficPolicy Local: external traffic has its own view (100% to
/// the local endpoint through KUBE-SVL; none, DROP, without a local one),
/// and internalTrafficPolicy Local the other way round; in the table and
/// in JSON, with `--cluster` saying which endpoints are local.
#[test]
fn dump_shows_the_external_view() {
    let d = dump_file("etp-local-lb.txt");
    assert!(d.anomalies.is_empty(), "{:#?}", d.anomalies);
    let store = service(&d, "shop/storefront:http");
    assert_eq!(
        endpoints(&store.endpoints),
        [
            ("10.244.1.7".into(), 8080, 0.5),
            ("10.244.2.5".into(), 8080, 0.5)
        ]
    );
    assert_eq!(
        endpoints(store.external_endpoints.as_deref().expect("external view")),
        [("10.244.1.7".into(), 8080, 1.0)]
    );
    let search = service(&d, "shop/search:http");
    assert_eq!(search.external_endpoints, Some(vec![]));
    assert_eq!(search.external_no_endpoints.as_deref(), Some("DROP"));
    let cart = service(&d, "shop/cart:http");
    assert_eq!(cart.internal_traffic_policy, "Local");
    assert_eq!(
        endpoints(&cart.endpoints),
        [("10.244.1.8".into(), 9000, 1.0)]
    );
    assert_eq!(cart.external_endpoints.as_deref().map(<[_]>::len), Some(3));
    assert_eq!(
        service(&d, "default/kubernetes:https").external_endpoints,
        None
    );

    let args = [
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/etp-local-lb.txt",
        "--cluster",
        "fixtures/iptables-save/etp-local-lb.cluster.yaml",
        "--hostname",
        "worker-1",
    ];
    let out = run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    insta::assert_snapshot!("dump_etp_local_table", stdout(&out));
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&run(&json_args))).expect("json");
    let store = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["name"] == "storefront")
        .expect("storefront");
    assert_eq!(store["external_endpoints"][0]["ip"], "10.244.1.7");
    assert_eq!(store["external_endpoints"][0]["probability"], 1.0);
    assert_eq!(store["external_endpoints"][0]["local"], true);
    assert_eq!(store["endpoints"][1]["local"], false);
    assert_eq!(v["sources"][0]["generation"]["mode"], "iptables");
    assert_eq!(v["sources"][0]["generation"]["since"], "1.25");
}

/// Nothing to show is said: a node without kube-proxy rules names what was
/// read; `--service` for a Service no rule names says so on stderr (one
/// line, exit status 1) and keeps only anomalies of that Service's chains
/// (and those concerning every Service).
#[test]
fn dump_says_when_there_is_nothing_to_show() {
    let save = std::env::temp_dir().join(format!("kpinspect-empty-{}.txt", std::process::id()));
    std::fs::write(
        &save,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE\nCOMMIT\n",
    )
    .expect("write");
    let save_arg = save.display().to_string();
    let out = run(&["dump", "--iptables-save", &save_arg]);
    let _ = std::fs::remove_file(&save);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "no kube-proxy rules in {save_arg} (IPv4; tables filter, nat)"
        )),
        "{text}"
    );

    let out = run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/old-style.txt",
        "--service",
        "default/nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("service default/nope not found"), "{err}");
    assert!(!stdout(&out).contains("anomalies:"), "{}", stdout(&out));

    let out = run(&[
        "dump",
        "--iptables-save",
        "fixtures/iptables-save/old-style.txt",
        "--service",
        "default/web",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let chains: Vec<&str> = v["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|a| a["chain"].as_str().expect("chain"))
        .collect();
    assert_eq!(chains, ["KUBE-SVC-WEBWEBWEBWEBWEB1"]);
}

//! `dump` of an IPVS node from saved text: `--ipvsadm` (`ipvsadm -Ln` or
//! `-Sn`) and `--ipset` (`ipset list` or `ipset save`), over the compiled
//! IPVS fixtures (every service port comes back with its shares) and the
//! captures of `fixtures/ipvs-save`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kpinspect_core::mode::ipvs::{ipvsadm_save, parse_ipvsadm};
use serde_json::Value;

use crate::ipvs::{compile, ipvs_fixtures};
use crate::util::{Fixture, kpinspect, root, stderr, stdout};

/// `text` in a file of the temporary directory (removed by the caller's
/// [`Scratch`]).
struct Scratch(Vec<PathBuf>);

impl Scratch {
    fn file(&mut self, name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("kpinspect-ipvs-dump-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write scratch file");
        self.0.push(path.clone());
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `kpinspect dump --format json` of saved `ipvsadm` and `ipset` text,
/// named with fixture `fx`'s cluster and configuration.
fn dump_saved(fx: &Fixture, ipvsadm: &PathBuf, ipset: &PathBuf) -> std::process::Output {
    kpinspect()
        .arg("dump")
        .arg("--ipvsadm")
        .arg(ipvsadm)
        .arg("--ipset")
        .arg(ipset)
        .arg("--cluster")
        .arg(fx.path("cluster.yaml"))
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--format", "json"])
        .output()
        .expect("run kpinspect dump")
}

/// The dump's entry for the service port compiled virtual server `vs`
/// (compile's JSON) belongs to, in `family`.
pub(crate) fn service_port_of<'a>(
    services: &'a [Value],
    vs: &Value,
    family: &Value,
) -> Option<&'a Value> {
    let svc = &vs["service"];
    let protocol = vs["protocol"].as_str()?.to_lowercase();
    services.iter().find(|s| {
        s["namespace"] == svc["namespace"]
            && s["name"] == svc["name"]
            && s["port_name"] == svc["port"]
            && s["protocol"] == protocol.as_str()
            && &s["family"] == family
    })
}

fn capture(name: &str) -> String {
    root()
        .join("fixtures/ipvs-save")
        .join(name)
        .display()
        .to_string()
}

/// `kpinspect dump ARGS`, which must succeed.
fn dump(args: &[&str]) -> String {
    let out = kpinspect().arg("dump").args(args).output().expect("run");
    assert!(
        out.status.success(),
        "dump {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The compile's texts read back to themselves: `ipvsadm_save(parse(x))
/// == x` and the same for `ipset save`, for every fixture.
#[test]
fn compiled_texts_read_back_to_themselves() {
    for fx in ipvs_fixtures() {
        let text = compile(&fx, "ipvsadm");
        let servers = parse_ipvsadm(&text).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        assert_eq!(ipvsadm_save(&servers), text, "{}", fx.name);
        let sets_text = compile(&fx, "ipset");
        let sets =
            kpinspect_core::ipset::parse(&sets_text).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        assert_eq!(
            kpinspect_core::ipset::render_save(&sets),
            sets_text,
            "{}",
            fx.name
        );
    }
}

/// compile --mode ipvs --format ipvsadm/ipset → dump --ipvsadm --ipset
/// --cluster: every virtual server of every service port lands in that
/// port's entry, the cluster IP's real servers are its endpoints with
/// their round-robin shares (none for `mh`), and nothing is anomalous.
#[test]
fn compiled_fixtures_dump_back_every_service_port_with_its_shares() {
    let mut ports = 0;
    for fx in ipvs_fixtures() {
        let mut scratch = Scratch(vec![]);
        let ipvsadm = scratch.file(&format!("{}.ipvsadm", fx.name), &compile(&fx, "ipvsadm"));
        let ipset = scratch.file(&format!("{}.ipset", fx.name), &compile(&fx, "ipset"));
        let compiled: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
        let out = dump_saved(&fx, &ipvsadm, &ipset);
        assert!(out.status.success(), "{}: {}", fx.name, stderr(&out));
        let d: Value = serde_json::from_str(&stdout(&out)).expect("dump json");
        let services = d["services"].as_array().expect("services");
        assert_eq!(d["anomalies"], Value::Array(vec![]), "{}", fx.name);
        let mut want = BTreeSet::new();
        for family in compiled.as_array().expect("families") {
            for vs in family["virtual_servers"].as_array().expect("servers") {
                let svc = &vs["service"];
                let key = format!(
                    "{}/{}",
                    kpinspect_core::net::join_host_port(
                        &vs["address"]
                            .as_str()
                            .expect("address")
                            .parse()
                            .expect("ip"),
                        vs["port"].as_u64().expect("port") as u16
                    ),
                    vs["protocol"].as_str().expect("protocol")
                );
                let ctx = format!("{}: {key}", fx.name);
                let protocol = vs["protocol"].as_str().expect("protocol").to_lowercase();
                let found = service_port_of(services, vs, &family["family"])
                    .unwrap_or_else(|| panic!("{ctx}: no service port in {services:#?}"));
                want.insert((
                    svc["namespace"].to_string(),
                    svc["name"].to_string(),
                    svc["port"].to_string(),
                    protocol.clone(),
                    family["family"].to_string(),
                ));
                assert!(
                    found["chains"]
                        .as_array()
                        .expect("chains")
                        .iter()
                        .any(|c| c == key.as_str()),
                    "{ctx}: {found:#}"
                );
                assert_eq!(found["scheduler"], vs["scheduler"], "{ctx}");
                if vs["kind"] != "cluster_ip" {
                    continue;
                }
                let reals = vs["real_servers"].as_array().expect("real servers");
                let endpoints = found["endpoints"].as_array().expect("endpoints");
                let got: Vec<(String, u64)> = endpoints
                    .iter()
                    .map(|e| {
                        (
                            e["ip"].as_str().expect("ip").to_string(),
                            e["port"].as_u64().expect("port"),
                        )
                    })
                    .collect();
                let wanted: Vec<(String, u64)> = reals
                    .iter()
                    .map(|r| {
                        (
                            r["address"].as_str().expect("ip").to_string(),
                            r["port"].as_u64().expect("port"),
                        )
                    })
                    .collect();
                assert_eq!(got, wanted, "{ctx}");
                for e in endpoints {
                    assert_eq!(e["weight"], 1, "{ctx}");
                    if vs["scheduler"] == "rr" {
                        let p = e["probability"].as_f64().expect("rr has shares");
                        assert!((p - 1.0 / reals.len() as f64).abs() < 1e-6, "{ctx}: {e}");
                    } else {
                        assert_eq!(e["probability"], Value::Null, "{ctx}");
                    }
                }
            }
        }
        let got: BTreeSet<_> = services
            .iter()
            .map(|s| {
                (
                    s["namespace"].to_string(),
                    s["name"].to_string(),
                    s["port_name"].to_string(),
                    s["protocol"].as_str().expect("protocol").to_string(),
                    s["family"].to_string(),
                )
            })
            .collect();
        // Service ports sharing an address and port (the fixture of
        // TestHealthCheckNodePort) share its virtual server: each lists it.
        assert!(
            got.is_superset(&want),
            "{}: {got:?} lacks some of {want:?}",
            fx.name
        );
        if got != want {
            assert!(fx.name == "health_check_node_port", "{}: {got:?}", fx.name);
        }
        ports += want.len();
    }
    assert!(ports >= 40, "only {ports} service ports checked");
}

/// The captures, as people see them (table) and as programs do (JSON).
#[test]
fn captures_are_snapshotted() {
    let node = capture("node.ipvsadm-ln.txt");
    let sets = capture("node.ipset-list.txt");
    let graceful = capture("graceful-termination.ipvsadm-ln.txt");
    let v6 = capture("ipv6.ipvsadm-ln.txt");
    let v6_rules = capture("ipv6.ipvsadm-sn.txt");
    for (name, args) in [
        ("node", vec!["--ipvsadm", &node, "--ipset", &sets]),
        ("node-without-sets", vec!["--ipvsadm", &node]),
        ("graceful-termination", vec!["--ipvsadm", &graceful]),
        ("ipv6", vec!["--ipvsadm", &v6]),
    ] {
        let table = dump(&args);
        let json = dump(&[args.as_slice(), &["--format", "json"]].concat());
        // The table shows the capture's own path: keep it relative.
        let base = root().display().to_string() + "/";
        insta::assert_snapshot!(
            format!("ipvs_dump_{name}"),
            format!("{}\n# json\n{}", table, json).replace(&base, "")
        );
    }
    // `ipvsadm -Sn` of the same IPv6 node is the same node, less the
    // connection counts.
    let listed: Value =
        serde_json::from_str(&dump(&["--ipvsadm", &v6, "--format", "json"])).expect("json");
    let saved: Value =
        serde_json::from_str(&dump(&["--ipvsadm", &v6_rules, "--format", "json"])).expect("json");
    let strip = |v: &Value| {
        let mut v = v["services"].clone();
        for s in v.as_array_mut().expect("services") {
            for e in s["endpoints"].as_array_mut().expect("endpoints") {
                let e = e.as_object_mut().expect("endpoint");
                e.remove("active_connections");
                e.remove("inactive_connections");
            }
        }
        v
    };
    assert_eq!(strip(&listed), strip(&saved));
}

/// The anomalies each capture shows, by kind and virtual server or set.
#[test]
fn captures_show_their_anomalies() {
    let kinds = |args: &[&str]| -> Vec<(String, String)> {
        let d: Value =
            serde_json::from_str(&dump(&[args, &["--format", "json"]].concat())).expect("json");
        d["anomalies"]
            .as_array()
            .expect("anomalies")
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().expect("kind").to_string(),
                    a["chain"].as_str().expect("chain").to_string(),
                )
            })
            .collect()
    };
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    // A cluster IP in KUBE-CLUSTER-IP without its virtual server.
    assert_eq!(
        kinds(&[
            "--ipvsadm",
            &capture("node.ipvsadm-ln.txt"),
            "--ipset",
            &capture("node.ipset-list.txt"),
        ]),
        [s("missing-virtual-server", "10.111.5.5:80/TCP")]
    );
    // Real servers left at weight 0: draining, stuck, and UDP.
    assert_eq!(
        kinds(&["--ipvsadm", &capture("graceful-termination.ipvsadm-ln.txt")]),
        [
            s("zero-weight", "10.106.128.44:80/TCP"),
            s("zero-weight", "10.106.128.44:80/TCP"),
            s("zero-weight", "10.96.0.10:53/UDP"),
        ]
    );
    // IPVS virtual servers next to iptables-mode Service chains.
    let iptables_mode = root().join("fixtures/iptables-save/affinity.nft.txt");
    let got = kinds(&[
        "--ipvsadm",
        &capture("node.ipvsadm-ln.txt"),
        "--iptables-save",
        &iptables_mode.display().to_string(),
    ]);
    assert!(got.contains(&s("mode-switch", "")), "{got:?}");
    // IPVS mode's own iptables rules: no mode switch, no note that the
    // Services are elsewhere.
    let ipvs_rules = root().join("fixtures/ipvs-mode/restore.txt");
    let args = [
        "--ipvsadm",
        &capture("node.ipvsadm-ln.txt"),
        "--iptables-save",
        &ipvs_rules.display().to_string(),
    ];
    assert!(!kinds(&args).iter().any(|(k, _)| k == "mode-switch"));
    assert!(!dump(&args).contains("no Service in"));
}

/// With the cluster, virtual servers and set members no Service has are
/// stale; a Service port without its virtual server is missing.
#[test]
fn the_cluster_names_virtual_servers_and_finds_stale_ones() {
    let fx = crate::ipvs::ipvs_fixtures()
        .into_iter()
        .find(|f| f.name == "edge_mode_switch_node")
        .expect("fixture");
    let mut scratch = Scratch(vec![]);
    // Drop the first service port's virtual servers; add one nobody has,
    // and a set member nobody has.
    let ipvsadm = compile(&fx, "ipvsadm")
        .lines()
        .filter(|l| !l.contains("10.96.5.5:80"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        + "-A -t 10.96.99.99:80 -s rr\n";
    let ipset = compile(&fx, "ipset") + "add KUBE-CLUSTER-IP 10.96.77.77,tcp:80\n";
    let a = scratch.file("stale.ipvsadm", &ipvsadm);
    let s = scratch.file("stale.ipset", &ipset);
    let out = dump_saved(&fx, &a, &s);
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let got: Vec<(&str, &str)> = d["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().expect("kind"),
                a["chain"].as_str().expect("chain"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("missing-virtual-server", "10.96.5.5:80/TCP"),
            ("orphan-set-member", "KUBE-CLUSTER-IP"),
            ("stale-virtual-server", "10.96.99.99:80/TCP"),
        ]
    );
}

/// Unreadable text names its file and line.
#[test]
fn errors_name_the_file_and_line() {
    let mut scratch = Scratch(vec![]);
    let bad = scratch.file(
        "bad.ipvsadm",
        "TCP  10.0.0.1:80 rr\n  -> 10.0.0.2:80 Masq one 0 0\n",
    );
    let out = kpinspect()
        .arg("dump")
        .arg("--ipvsadm")
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("line 2"),
        "{err}"
    );
    let out = kpinspect()
        .args(["dump", "--ipset", "x"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "--ipset needs --ipvsadm");
}

/// `--service` keeps a Service's virtual servers (with the cluster, which
/// names them); without it, the miss says why.
#[test]
fn service_filter_needs_the_cluster_to_name_virtual_servers() {
    let node = capture("node.ipvsadm-ln.txt");
    let out = kpinspect()
        .args(["dump", "--ipvsadm", &node, "--service", "default/web"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("give --cluster"), "{}", stderr(&out));

    let fx = crate::ipvs::ipvs_fixtures()
        .into_iter()
        .find(|f| f.name == "edge_mode_switch_node")
        .expect("fixture");
    let mut scratch = Scratch(vec![]);
    let a = scratch.file("filter.ipvsadm", &compile(&fx, "ipvsadm"));
    let out = kpinspect()
        .arg("dump")
        .arg("--ipvsadm")
        .arg(&a)
        .arg("--cluster")
        .arg(fx.path("cluster.yaml"))
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--service", "default/web", "--format", "json"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let d: Value = serde_json::from_str(&stdout(&out)).expect("json");
    let names: Vec<&str> = d["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["web"]);
    let web = &d["services"][0];
    assert_eq!(web["node_port"], 30080);
    assert_eq!(web["external_traffic_policy"], "Local");
    // External traffic goes to the local endpoint only.
    assert_eq!(web["external_endpoints"][0]["ip"], "10.244.1.5");
    assert_eq!(web["external_endpoints"][0]["local"], true);
}

/// The captures a VM check took from Linux (`fixtures/ipvs-save/e2e.*`,
/// proven there against the live kernel by `vm::ipvs_e2e`): `kpinspect
/// apply --mode ipvs` of NodePorts (one eTP Local) and a UDP Service
/// after real traffic, one real server draining with a live connection. Dumped as
/// people and programs see it; `ipvsadm -Sn` tells the same less the counts.
#[test]
fn live_kernel_captures_are_snapshotted() {
    let listed = capture("e2e.ipvsadm-ln.txt");
    let saved = capture("e2e.ipvsadm-sn.txt");
    let sets = capture("e2e.ipset-list.txt");
    let args = ["--ipvsadm", listed.as_str(), "--ipset", sets.as_str()];
    let table = dump(&args);
    let json = dump(&[&args[..], &["--format", "json"]].concat());
    let base = root().display().to_string() + "/";
    insta::assert_snapshot!(
        "ipvs_dump_e2e",
        format!("{table}\n# json\n{json}").replace(&base, "")
    );
    let d: Value = serde_json::from_str(&json).expect("json");
    // The draining real server: weight 0, its live connection, no share.
    let anomalies: Vec<(&Value, &Value)> = d["anomalies"]
        .as_array()
        .expect("anomalies")
        .iter()
        .map(|a| (&a["kind"], &a["chain"]))
        .collect();
    assert_eq!(
        anomalies,
        [(
            &Value::from("zero-weight"),
            &Value::from("10.96.0.90:90/TCP")
        )]
    );
    let drain = d["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["cluster_ip"] == "10.96.0.90")
        .expect("the drain service port");
    let draining = drain["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["ip"] == "10.244.0.13")
        .expect("the draining real server");
    assert_eq!(
        (
            &draining["weight"],
            &draining["active_connections"],
            &draining["probability"]
        ),
        (&Value::from(0), &Value::from(1), &Value::from(0.0))
    );
    // Without the cluster, the ipsets say which node port is eTP Local.
    let local = d["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["node_port"] == 30081)
        .expect("the eTP Local node port");
    assert_eq!(local["external_traffic_policy"], "Local");
    let strip = |v: &Value| {
        let mut v = v["services"].clone();
        for s in v.as_array_mut().expect("services") {
            for e in s["endpoints"].as_array_mut().expect("endpoints") {
                let e = e.as_object_mut().expect("endpoint");
                e.remove("active_connections");
                e.remove("inactive_connections");
            }
        }
        v
    };
    let from_rules: Value = serde_json::from_str(&dump(&[
        "--ipvsadm",
        saved.as_str(),
        "--ipset",
        sets.as_str(),
        "--format",
        "json",
    ]))
    .expect("json");
    assert_eq!(strip(&d), strip(&from_rules));
}

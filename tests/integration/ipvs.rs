//! kube-proxy's IPVS-mode tests, ported as data (`fixtures/ipvs`): every
//! fixture is compiled by the `kpinspect` binary in each output format,
//! checked against what the upstream test asserts (`expected.yaml`), and
//! its raw outputs are snapshotted.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kpinspect_core::mode::ipvs::ipv6_ipset_name;
use kpinspect_core::net::join_host_port;
use kpinspect_core::netfilter::split_args;
use serde::Deserialize;
use serde_json::Value;

use crate::util::{Fixture, kpinspect, ok, root, run, stderr, yaml};

/// Every fixture directory of `fixtures/ipvs`.
pub(crate) fn ipvs_fixtures() -> Vec<Fixture> {
    let base = root().join("fixtures/ipvs");
    let mut out: Vec<Fixture> = std::fs::read_dir(&base)
        .expect("fixtures/ipvs")
        .map(|e| e.expect("dir entry").path())
        .filter(|dir| dir.join("cluster.yaml").exists())
        .map(|dir| Fixture {
            name: dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            dir,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 40,
        "expected the ported kube-proxy IPVS fixtures, found {}",
        out.len()
    );
    out
}

/// `kpinspect compile` of fixture `fx` with `--format format`.
pub(crate) fn compile(fx: &Fixture, format: &str) -> String {
    let out = kpinspect()
        .arg("compile")
        .arg("--config")
        .arg(fx.path("config.yaml"))
        .args(fx.args())
        .args(["--format", format])
        .arg(fx.path("cluster.yaml"))
        .output()
        .expect("run kpinspect");
    assert!(
        out.status.success(),
        "{}: kpinspect compile --format {format} failed: {}",
        fx.name,
        stderr(&out)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn ipv6(fx: &Fixture) -> bool {
    fx.args()
        .windows(2)
        .any(|w| w[0] == "--family" && w[1] == "ipv6")
}

/// Every fixture's raw outputs match the committed snapshot (review each
/// change: a mismatch fails, nothing is accepted automatically in CI).
#[test]
fn every_fixture_is_snapshotted() {
    for fx in ipvs_fixtures() {
        let mut text = String::new();
        for (title, format) in [
            ("ipvsadm -Sn", "ipvsadm"),
            ("ipset save", "ipset"),
            ("kube-ipvs0", "addresses"),
            ("iptables-restore", "restore"),
        ] {
            text.push_str(&format!("# {title}\n"));
            text.push_str(&compile(&fx, format));
        }
        insta::assert_snapshot!(fx.name.as_str(), text);
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Expected {
    virtual_servers: Option<ExpectedServers>,
    ipsets: Option<BTreeMap<String, Vec<String>>>,
    chains: Option<BTreeMap<String, Vec<ExpectedRule>>>,
    addresses: Option<Vec<String>>,
    contains_lines: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectedServers {
    count: Option<usize>,
    exact: Option<bool>,
    servers: Option<Vec<ExpectedServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExpectedServer {
    key: String,
    real_servers: Option<Vec<String>>,
    timeout: Option<u64>,
    scheduler: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedRule {
    jump: String,
    set: Option<String>,
    source: Option<String>,
}

fn vs_key(vs: &Value) -> String {
    let ip = vs["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("ip");
    let port = vs["port"].as_u64().expect("port") as u16;
    format!(
        "{}/{}",
        join_host_port(&ip, port),
        vs["protocol"].as_str().expect("protocol")
    )
}

fn rs_list(vs: &Value) -> Vec<String> {
    vs["real_servers"]
        .as_array()
        .expect("real_servers")
        .iter()
        .map(|r| {
            assert_eq!(r["weight"], 1, "kube-proxy adds real servers with weight 1");
            assert_eq!(r["forward"], "masquerade");
            let ip = r["address"].as_str().expect("address").parse().expect("ip");
            join_host_port(&ip, r["port"].as_u64().expect("port") as u16)
        })
        .collect()
}

/// The rules of `chain` (nat's, then filter's: kube-proxy's tests look a
/// chain up in both saves, in that order) as (jump, match-set, source).
fn chain_rules(restore: &str, chain: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let after =
        |args: &[String], flag: &str| args.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
    restore
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(|l| split_args(l).expect("rule parses"))
        .filter(|args| args[1] == chain)
        .map(|args| {
            (
                after(&args, "-j").unwrap_or_default(),
                after(&args, "--match-set"),
                after(&args, "-s"),
            )
        })
        .collect()
}

/// What each upstream test asserts: virtual servers (count, keys,
/// scheduler, persistence, real servers), ipset members, the jump and
/// match-set of each rule of a chain, bound addresses, exact lines.
#[test]
fn upstream_expectations_hold() {
    let mut checked = 0;
    for fx in ipvs_fixtures() {
        let want: Expected = yaml(&fx.read("expected.yaml"));
        let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
        // The fixture's family (the IPv4 part of a dual-stack compile).
        let family = if ipv6(&fx) { "ipv6" } else { "ipv4" };
        let got = json
            .as_array()
            .expect("one object per family")
            .iter()
            .find(|f| f["family"] == family)
            .unwrap_or_else(|| panic!("{}: no {family} compile", fx.name));
        let set_name = |base: &str| {
            if ipv6(&fx) {
                ipv6_ipset_name(base)
            } else {
                base.to_string()
            }
        };
        let servers = got["virtual_servers"].as_array().expect("virtual_servers");
        if let Some(vs) = &want.virtual_servers {
            if let Some(n) = vs.count {
                assert_eq!(servers.len(), n, "{}: virtual server count", fx.name);
            }
            let wanted = vs.servers.as_deref().unwrap_or_default();
            if vs.exact == Some(true) {
                let mut got_keys: Vec<String> = servers.iter().map(vs_key).collect();
                let mut want_keys: Vec<String> = wanted.iter().map(|w| w.key.clone()).collect();
                got_keys.sort();
                want_keys.sort();
                assert_eq!(got_keys, want_keys, "{}: the IPVS table", fx.name);
            }
            for w in wanted {
                let s = servers
                    .iter()
                    .find(|s| vs_key(s) == w.key)
                    .unwrap_or_else(|| panic!("{}: no virtual server {}", fx.name, w.key));
                if let Some(rs) = &w.real_servers {
                    assert_eq!(&rs_list(s), rs, "{}: real servers of {}", fx.name, w.key);
                }
                if let Some(t) = w.timeout {
                    assert_eq!(s["timeout"], t, "{}: timeout of {}", fx.name, w.key);
                    let persistent = s["flags"].as_u64().expect("flags") & 1 == 1;
                    assert_eq!(persistent, t != 0, "{}: persistence of {}", fx.name, w.key);
                }
                if let Some(sched) = &w.scheduler {
                    assert_eq!(&s["scheduler"], sched, "{}: {}", fx.name, w.key);
                }
                checked += 1;
            }
        }
        for (base, members) in want.ipsets.iter().flatten() {
            let name = set_name(base);
            let set = got["ipsets"]
                .as_array()
                .expect("ipsets")
                .iter()
                .find(|s| s["name"] == name.as_str())
                .unwrap_or_else(|| panic!("{}: no set {name}", fx.name));
            let mut have: Vec<String> = set["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| e.as_str().expect("entry").to_string())
                .collect();
            let mut want_members = members.clone();
            have.sort();
            want_members.sort();
            assert_eq!(have, want_members, "{}: members of {name}", fx.name);
            checked += 1;
        }
        let restore = got["restore"].as_str().expect("restore");
        for (chain, rules) in want.chains.iter().flatten() {
            let have = chain_rules(restore, chain);
            assert_eq!(
                have.len(),
                rules.len(),
                "{}: rules of {chain}: {have:?}",
                fx.name
            );
            for (i, (w, h)) in rules.iter().zip(&have).enumerate() {
                assert_eq!(w.jump, h.0, "{}: {chain} rule {i} jump", fx.name);
                assert_eq!(
                    w.set.as_deref().map(set_name),
                    h.1,
                    "{}: {chain} rule {i} match-set",
                    fx.name
                );
                if let Some(src) = &w.source {
                    assert_eq!(Some(src), h.2.as_ref(), "{}: {chain} rule {i}", fx.name);
                }
            }
            checked += 1;
        }
        if let Some(addrs) = &want.addresses {
            let have: Vec<&str> = got["addresses"]
                .as_array()
                .expect("addresses")
                .iter()
                .map(|a| a.as_str().expect("cidr"))
                .collect();
            assert_eq!(have, *addrs, "{}: kube-ipvs0 addresses", fx.name);
            checked += 1;
        }
        for line in want.contains_lines.iter().flatten() {
            assert!(
                restore.lines().any(|l| l == line),
                "{}: missing line {line}",
                fx.name
            );
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} expectations checked");
}

/// The formats agree with each other: the `ipvsadm`, `ipset`, `addresses`
/// and `restore` texts are the JSON's, rendered; every set the restore
/// input names exists; the bound addresses are `KUBE-IPVS-IPS`.
#[test]
fn formats_agree() {
    for fx in ipvs_fixtures() {
        let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
        if json.as_array().expect("families").len() != 1 {
            continue; // dual stack: see dual_stack_compiles_both_families
        }
        let got = &json[0];
        assert_eq!(
            got["restore"].as_str().expect("restore"),
            compile(&fx, "restore"),
            "{}",
            fx.name
        );
        let ipvsadm = compile(&fx, "ipvsadm");
        let servers = got["virtual_servers"].as_array().expect("servers");
        assert_eq!(
            ipvsadm.lines().filter(|l| l.starts_with("-A ")).count(),
            servers.len(),
            "{}",
            fx.name
        );
        let ipset = compile(&fx, "ipset");
        let created: Vec<&str> = ipset
            .lines()
            .filter_map(|l| l.strip_prefix("create "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert_eq!(created.len(), 17, "{}: the 17 sets", fx.name);
        for l in got["restore"].as_str().expect("restore").lines() {
            if let Ok(args) = split_args(l)
                && let Some(w) = args.windows(2).find(|w| w[0] == "--match-set")
            {
                assert!(created.contains(&w[1].as_str()), "{}: {l}", fx.name);
            }
        }
        let ipvs_ips = if ipv6(&fx) {
            "KUBE-6-IPVS-IPS"
        } else {
            "KUBE-IPVS-IPS"
        };
        let bound: Vec<String> = compile(&fx, "addresses")
            .lines()
            .map(|l| l.split('/').next().unwrap_or_default().to_string())
            .collect();
        let members: Vec<String> = ipset
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("add {ipvs_ips} ")))
            .map(String::from)
            .collect();
        assert_eq!(bound, members, "{}: kube-ipvs0 and {ipvs_ips}", fx.name);
    }
}

/// `fixtures/ipvs-mode` (an IPVS node's rules and sets for the mode-switch
/// tests, from the reference's full payload) is what the compiler writes
/// for the cluster of `fixtures/ipvs/edge_mode_switch_node` — less the two rules
/// that fixture leaves out for test kernels (`-m physdev`, `-m ipvs`).
#[test]
fn mode_switch_fixture_is_a_compile() {
    let fx = Fixture {
        name: "mode_switch_node".into(),
        dir: root().join("fixtures/ipvs/edge_mode_switch_node"),
    };
    let restore = compile(&fx, "restore");
    let kept: String = restore
        .lines()
        .filter(|l| !l.contains("-m physdev") && !l.contains("-m ipvs"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        kept,
        std::fs::read_to_string(root().join("fixtures/ipvs-mode/restore.txt")).expect("restore")
    );
    assert_eq!(restore.lines().count(), kept.lines().count() + 2);
    let sets = std::fs::read_to_string(root().join("fixtures/ipvs-mode/ipsets.txt")).expect("sets");
    let creates = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("create "))
            .map(String::from)
            .collect()
    };
    assert_eq!(creates(&compile(&fx, "ipset")), creates(&sets));
}

/// The IPVS formats are refused in iptables mode and `sorted` in IPVS
/// mode, each with one line and exit status 2.
#[test]
fn formats_are_per_mode() {
    let cluster = root().join("examples/cluster.yaml");
    let cluster = cluster.to_str().expect("path");
    for (mode, format) in [
        ("iptables", "ipvsadm"),
        ("iptables", "json"),
        ("ipvs", "sorted"),
    ] {
        let out = run(&[
            "compile",
            "--mode",
            mode,
            "--format",
            format,
            "--hostname",
            "n",
            cluster,
        ]);
        assert_eq!(out.status.code(), Some(2), "{mode} {format}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&format!("-o {format}: ")), "{err}");
    }
}

/// A dual-stack cluster: one `ipvsadm` listing of both families (IPv4
/// first), both families' sets and addresses, a restore per family under
/// a line naming its tool, JSON with one object per family.
#[test]
fn dual_stack_compiles_both_families() {
    let dir: PathBuf = root().join("fixtures/ipvs/edge_dual_stack");
    let fx = Fixture {
        name: "dual_stack".into(),
        dir,
    };
    let ipvsadm = compile(&fx, "ipvsadm");
    let heads: Vec<&str> = ipvsadm.lines().filter(|l| l.starts_with("-A ")).collect();
    assert_eq!(
        heads,
        [
            "-A -t 10.96.0.10:53 -s rr",
            "-A -t 192.168.0.2:30053 -s rr",
            "-A -t [2001:db8::2]:30053 -s rr",
            "-A -t [fd00:10:96::a]:53 -s rr",
        ]
    );
    let addresses = compile(&fx, "addresses");
    assert_eq!(addresses, "10.96.0.10/32\nfd00:10:96::a/128\n");
    let ipset = compile(&fx, "ipset");
    assert!(ipset.contains("add KUBE-6-CLUSTER-IP fd00:10:96::a,tcp:53\n"));
    assert!(ipset.contains("create KUBE-6-LOAD-BALANCER-SOURCE-CID hash:ip,port,net family inet6"));
    let restore = compile(&fx, "restore");
    assert!(restore.starts_with("# iptables-restore\n*nat\n"));
    assert!(restore.contains("COMMIT\n# ip6tables-restore\n*nat\n"));
    assert!(restore.contains("-A KUBE-SERVICES -s ::1/128 -j RETURN\n"));
    let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
    assert_eq!(json[0]["family"], "ipv4");
    assert_eq!(json[1]["family"], "ipv6");
    let one = ok(
        &run(&[
            "compile",
            "--config",
            fx.path("config.yaml").to_str().expect("path"),
            "--node-ip",
            "192.168.0.2",
            "--node-ip",
            "2001:db8::2",
            "--family",
            "ipv6",
            "--format",
            "addresses",
            fx.path("cluster.yaml").to_str().expect("path"),
        ]),
        "ipv6 only",
    );
    assert_eq!(one, "fd00:10:96::a/128\n");
}

/// The scheduler, its `mh` flag and ClientIP persistence as `ipvsadm -Sn`
/// prints them; `ipvsadm -R` syntax for SCTP.
#[test]
fn scheduler_flags_and_persistence_in_ipvsadm_form() {
    let fx = Fixture {
        name: "scheduler_mh".into(),
        dir: root().join("fixtures/ipvs/edge_scheduler_mh"),
    };
    let text = compile(&fx, "ipvsadm");
    assert_eq!(
        text,
        "-A -t 10.20.30.41:80 -s mh -p 600 -b mh-port\n\
         -a -t 10.20.30.41:80 -r 10.180.0.1:8080 -m -w 1\n\
         -A --sctp-service 10.20.30.42:9 -s mh -b mh-port\n"
    );
    let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
    assert_eq!(json[0]["virtual_servers"][0]["flags"], 0x11);
    assert_eq!(json[0]["virtual_servers"][1]["flags"], 0x10);
}

/// Every fixture has its README, args and expectations, and every
/// upstream test a fixture ports is listed in `fixtures/ipvs/README`.
#[test]
fn readme_lists_every_fixture() {
    let readme = std::fs::read_to_string(root().join("fixtures/ipvs/README")).expect("README");
    for fx in ipvs_fixtures() {
        assert!(
            fx.has("README") && fx.has("expected.yaml") && fx.has("args"),
            "{}: README, expected.yaml and args",
            fx.name
        );
        let first = fx.read("README");
        if fx.name.starts_with("edge_") {
            assert!(first.starts_with("kpinspect edge case"), "{}", fx.name);
            continue;
        }
        assert!(first.starts_with("Upstream: "), "{}", fx.name);
        let test = first["Upstream: ".len()..]
            .split([' ', '/'])
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(readme.contains(&test), "fixtures/ipvs/README lacks {test}");
    }
}

/// The `ipset` text loads with `ipset restore` and the restore input with
/// `iptables-restore --noflush` (both backends; `ip6tables` for IPv6) in a
/// fresh network namespace, and `iptables-save` then shows every compiled
/// rule. The `-m ipvs` rule (KUBE-IPVS-OUT-FILTER) is left out: it needs
/// the `xt_ipvs` module, which test kernels without IPVS lack.
#[test]
fn outputs_load_into_a_kernel() {
    if !crate::node::available() {
        return;
    }
    let mut loaded = 0;
    for fx in ipvs_fixtures() {
        let json: Value = serde_json::from_str(&compile(&fx, "json")).expect("json");
        if json.as_array().expect("families").len() != 1 {
            continue;
        }
        let sets = compile(&fx, "ipset");
        let restore: String = compile(&fx, "restore")
            .lines()
            .filter(|l| !l.contains("-m ipvs "))
            .map(|l| format!("{l}\n"))
            .collect();
        let bin = if ipv6(&fx) { "ip6tables" } else { "iptables" };
        for backend in ["nft", "legacy"] {
            let dir = std::env::temp_dir();
            let tag = format!(
                "kpinspect-ipvs-{}-{}-{backend}",
                std::process::id(),
                fx.name
            );
            let sets_path = dir.join(format!("{tag}.ipset"));
            let rules_path = dir.join(format!("{tag}.restore"));
            std::fs::write(&sets_path, &sets).expect("write sets");
            std::fs::write(&rules_path, &restore).expect("write rules");
            let script = format!(
                "set -e; ipset restore < {sets}; {bin}-{backend}-restore --noflush < {rules}; {bin}-{backend}-save",
                sets = sets_path.display(),
                rules = rules_path.display()
            );
            let out = std::process::Command::new("unshare")
                .args(["-n", "--", "sh", "-c", &script])
                .output()
                .expect("unshare");
            let _ = std::fs::remove_file(&sets_path);
            let _ = std::fs::remove_file(&rules_path);
            let saved = ok(&out, &format!("{}: load with {backend}", fx.name));
            loaded += crate::util::assert_saved_matches(
                &format!("{} ({backend})", fx.name),
                &restore,
                &saved,
            );
        }
    }
    assert!(loaded > 1000, "only {loaded} rules compared");
}

/// IPVS mode's iptables rules converge: for every fixture, the planner's
/// payload against an empty node, restored into an in-memory kernel,
/// leaves nothing to plan (no empty `*table`/`COMMIT` either).
#[test]
fn ipvs_mode_rules_plan_to_nothing_once_applied() {
    use kpinspect_core::mode::ProxyMode;
    use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
    use kpinspect_core::plan::plan;
    let profile = ProxyMode::Ipvs.profile();
    for fx in ipvs_fixtures() {
        if fx.args().iter().any(|a| a == "ipv6") {
            continue;
        }
        let text = compile(&fx, "restore");
        // Dual-stack output holds one block per family; take IPv4's.
        let v4 = text
            .split("# ip6tables-restore\n")
            .next()
            .unwrap_or_default()
            .replace("# iptables-restore\n", "");
        let desired = Ruleset::parse(&v4).unwrap_or_else(|e| panic!("{}: {e}", fx.name));
        let mut node = Ruleset::default();
        let first = plan(&desired, &node, profile);
        node.restore(&first.payload, RestoreFlush::NoFlush)
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", fx.name, first.payload));
        let again = plan(&desired, &node, profile);
        assert!(
            again.is_empty(),
            "{}: a second plan is not empty:\n{}",
            fx.name,
            again.payload
        );
    }
}

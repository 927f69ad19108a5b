//! One endpoint of one Service changes on an IPVS node: `kpinspect apply
//! --mode ipvs` touches only that Service's real servers.
//!
//! A cluster of [`SERVICES`] NodePort Services × [`ENDPOINTS`] endpoints is
//! applied to the check's namespace; then one endpoint of Service
//! [`CHANGED`] moves to a new address and the cluster is applied again
//! with `--format json`. The report's IPVS writes (each one netlink
//! message) must be exactly: the new real server added and the old one
//! deleted (it has no connections, so graceful termination does not keep
//! it), on each of that Service's virtual servers (its cluster IP and its
//! node port on the node's address), and nothing else — no set member,
//! address or iptables byte. The kernel agrees: `ipvsadm -Sn` before and
//! after differs in exactly those real servers.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{kpinspect, ok};

/// The cluster's size.
const SERVICES: u32 = 40;
const ENDPOINTS: u32 = 4;
/// The Service one of whose endpoints moves.
const CHANGED: u32 = 17;
/// The node's address (node ports are served on it).
const NODE_IP: &str = "192.168.0.10";

/// The cluster as kubectl YAML; with `changed`, Service [`CHANGED`]'s
/// last endpoint has another address.
fn cluster(changed: bool) -> String {
    let mut out = String::new();
    for s in 1..=SERVICES {
        let endpoints: Vec<String> = (1..=ENDPOINTS)
            .map(|e| {
                let host = if changed && s == CHANGED && e == ENDPOINTS {
                    200
                } else {
                    e
                };
                format!("{{addresses: [10.244.{s}.{host}]}}")
            })
            .collect();
        let _ = write!(
            out,
            "---
apiVersion: v1
kind: Service
metadata: {{name: s{s}, namespace: ns}}
spec:
  type: NodePort
  clusterIP: 10.96.1.{s}
  clusterIPs: [10.96.1.{s}]
  ports: [{{name: http, port: 80, protocol: TCP, targetPort: 8080, nodePort: {}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: s{s}-1
  namespace: ns
  labels: {{kubernetes.io/service-name: s{s}}}
addressType: IPv4
endpoints: [{}]
ports: [{{name: http, port: 8080, protocol: TCP}}]
",
            30000 + s,
            endpoints.join(", ")
        );
    }
    out
}

fn apply(file: &Path, json: bool) -> String {
    let mut cmd = kpinspect();
    cmd.args([
        "apply",
        "--mode",
        "ipvs",
        "--hostname",
        "test-node",
        "--node-ip",
        NODE_IP,
        "--family",
        "ipv4",
        "--force",
    ]);
    if json {
        cmd.args(["--format", "json"]);
    }
    ok(&cmd.arg(file).output().expect("run kpinspect"), "apply")
}

/// `ipvsadm -Sn`'s lines.
fn ipvsadm() -> BTreeSet<String> {
    let out = Command::new("ipvsadm")
        .arg("-Sn")
        .output()
        .expect("run ipvsadm");
    ok(&out, "ipvsadm -Sn").lines().map(String::from).collect()
}

/// The virtual server (`10.96.1.17:80`) a `-a`/`-e`/`-d` line of
/// `ipvsadm` names.
fn virtual_server(line: &str) -> Option<&str> {
    let mut words = line
        .split_whitespace()
        .skip_while(|w| w.starts_with("ipvsadm"));
    matches!(words.next()?, "-a" | "-e" | "-d").then_some(())?;
    matches!(words.next()?, "-t" | "-u" | "--sctp-service").then_some(())?;
    words.next()
}

pub fn one_endpoint_change(dir: &Path) {
    let (base, changed) = (dir.join("base.yaml"), dir.join("changed.yaml"));
    fs::write(&base, cluster(false)).expect("write");
    fs::write(&changed, cluster(true)).expect("write");
    apply(&base, false);
    let before = ipvsadm();
    let report: serde_json::Value =
        serde_json::from_str(&apply(&changed, true)).expect("JSON report");
    let after = ipvsadm();
    let family = &report["families"][0];
    let commands: Vec<&str> = family["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    println!("{}", commands.join("\n"));
    println!("counts: {}", family["counts"]);

    let vip = format!("10.96.1.{CHANGED}:80");
    let node_port = format!("{NODE_IP}:{}", 30000 + CHANGED);
    let old = format!("10.244.{CHANGED}.{ENDPOINTS}:8080");
    let new = format!("10.244.{CHANGED}.200:8080");
    let mut want = Vec::new();
    for vs in [&vip, &node_port] {
        want.push(format!("ipvsadm -a -t {vs} -r {new} -m -w 1"));
        want.push(format!("ipvsadm -d -t {vs} -r {old}"));
    }
    let mut got = commands.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "the change's writes (one netlink message each) are not exactly service s{CHANGED}'s"
    );
    let counts = &family["counts"];
    assert_eq!(counts["real_servers_added"], 2, "{counts}");
    assert_eq!(counts["real_servers_deleted"], 2, "{counts}");
    for zero in [
        "virtual_servers_added",
        "virtual_servers_updated",
        "virtual_servers_deleted",
        "real_servers_reweighted",
        "set_members_changed",
        "addresses_bound",
        "addresses_unbound",
    ] {
        assert_eq!(counts[zero], 0, "{zero}: {counts}");
    }
    assert_eq!(family["iptables"]["payload"], "", "{}", family["iptables"]);

    // The kernel's view: only those real servers differ.
    let changed_lines: BTreeSet<&String> = before.symmetric_difference(&after).collect();
    println!("ipvsadm -Sn changed: {changed_lines:?}");
    let touched: BTreeSet<&str> = changed_lines
        .iter()
        .map(|l| virtual_server(l).unwrap_or_else(|| panic!("not a real server line: {l}")))
        .collect();
    assert_eq!(
        touched,
        BTreeSet::from([vip.as_str(), node_port.as_str()]),
        "{changed_lines:?}"
    );
    assert_eq!(
        changed_lines.len(),
        4,
        "one real server added, one deleted per virtual server: {changed_lines:?}"
    );
    assert_eq!(before.len(), after.len(), "nothing else came or went");
}

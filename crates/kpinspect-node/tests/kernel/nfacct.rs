//! nfacct counters over nfnetlink, in a fresh network namespace.

use std::net::UdpSocket;

use kpinspect_node::{
    Ensured, KUBE_PROXY_NFACCT_COUNTERS, NfAcct, NfAcctCounter, NfAcctError, SystemNfAcct,
    ensure_kube_proxy_counters,
};

use crate::{available, has_tool, in_child, rerun_in, run, run_ok};

const TEST: &str = "nfacct::counters_are_ensured_listed_and_deleted_like_kube_proxy_needs";

#[test]
fn counters_are_ensured_listed_and_deleted_like_kube_proxy_needs() {
    if in_child(TEST) {
        return in_namespace();
    }
    if available() {
        rerun_in(&["unshare", "-n", "--"], TEST);
    }
}

fn names(counters: &[NfAcctCounter]) -> Vec<&str> {
    counters.iter().map(|c| c.name.as_str()).collect()
}

/// `nfacct list`'s counter names, when the tool is installed.
fn tool_names() -> Option<Vec<String>> {
    if !has_tool("nfacct") {
        eprintln!("nfacct is not installed: no cross-check with `nfacct list`");
        return None;
    }
    Some(
        run_ok(&["nfacct", "list"])
            .lines()
            .filter_map(|l| l.trim().strip_prefix("{ "))
            .filter_map(|l| l.rsplit_once("} = "))
            .map(|(_, name)| name.trim_end_matches(';').to_string())
            .collect(),
    )
}

fn in_namespace() {
    let acct = SystemNfAcct;
    let [invalid, localhost] = KUBE_PROXY_NFACCT_COUNTERS;
    assert_eq!(acct.list(), Ok(vec![]), "a fresh namespace has no counters");
    assert_eq!(acct.get(invalid), Ok(None));

    // Before the counter exists, a rule that uses it does not load: this is
    // why kube-proxy ensures the counters first.
    for iptables in ["iptables-nft", "iptables-legacy"] {
        let out = run(&[
            iptables,
            "-w",
            "5",
            "-A",
            "OUTPUT",
            "-m",
            "nfacct",
            "--nfacct-name",
            invalid,
        ]);
        assert!(
            !out.status.success(),
            "{iptables} accepted a missing counter"
        );
    }

    assert_eq!(
        ensure_kube_proxy_counters(&acct),
        [
            (invalid, Ok(Ensured::Created)),
            (localhost, Ok(Ensured::Created))
        ]
    );
    let listed = acct.list().expect("list");
    assert_eq!(names(&listed), KUBE_PROXY_NFACCT_COUNTERS);
    assert_eq!(listed[0], NfAcctCounter::new(invalid));
    if let Some(tool) = tool_names() {
        assert_eq!(tool, KUBE_PROXY_NFACCT_COUNTERS);
    }
    // Ensuring again is no error and changes nothing.
    for name in KUBE_PROXY_NFACCT_COUNTERS {
        assert_eq!(acct.ensure(name), Ok(Ensured::Existed), "{name}");
    }
    assert_eq!(acct.list().expect("list"), listed);

    // A rule counts packets into the counter, and the counter reads back.
    run_ok(&["ip", "link", "set", "lo", "up"]);
    run_ok(&[
        "iptables-nft",
        "-w",
        "5",
        "-A",
        "OUTPUT",
        "-o",
        "lo",
        "-p",
        "udp",
        "-m",
        "nfacct",
        "--nfacct-name",
        localhost,
    ]);
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.send_to(b"hello", "127.0.0.1:9").expect("send");
    let counted = acct.get(localhost).expect("get").expect("counter");
    assert_eq!((counted.packets, counted.bytes), (1, 20 + 8 + 5));
    assert_eq!(counted.in_use(), Some(true));
    run_ok(&[
        "iptables-nft",
        "-w",
        "5",
        "-D",
        "OUTPUT",
        "-o",
        "lo",
        "-p",
        "udp",
        "-m",
        "nfacct",
        "--nfacct-name",
        localhost,
    ]);

    for iptables in ["iptables-nft", "iptables-legacy"] {
        let rule = ["-m", "nfacct", "--nfacct-name", invalid, "-j", "ACCEPT"];
        let add: Vec<&str> = [iptables, "-w", "5", "-A", "FORWARD"]
            .into_iter()
            .chain(rule)
            .collect();
        run_ok(&add);
        let used = acct.get(invalid).expect("get").expect("counter");
        assert_eq!(used.references, Some(2), "{iptables}");
        // In use: the kernel's EBUSY is reported as such, and nothing changes.
        assert_eq!(
            acct.delete(invalid),
            Err(NfAcctError::InUse {
                name: invalid.into()
            }),
            "{iptables}"
        );
        assert!(names(&acct.list().expect("list")).contains(&invalid));
        // Once the rule is gone, the counter can go.
        let del: Vec<&str> = [iptables, "-w", "5", "-D", "FORWARD"]
            .into_iter()
            .chain(rule)
            .collect();
        run_ok(&del);
        assert_eq!(acct.delete(invalid), Ok(()), "{iptables}");
        assert_eq!(acct.get(invalid), Ok(None));
        assert_eq!(names(&acct.list().expect("list")), [localhost]);
        if let Some(tool) = tool_names() {
            assert_eq!(tool, [localhost]);
        }
        assert_eq!(
            acct.delete(invalid),
            Err(NfAcctError::NotFound {
                name: invalid.into()
            })
        );
        assert_eq!(acct.ensure(invalid), Ok(Ensured::Created));
    }
}

//! kube-ipvs0's rtnetlink client and the IPVS sysctls on this machine's
//! kernel, in a fresh network namespace. This kernel may lack dummy links
//! and IPVS (the VM checks of tests/integration/vm cover them): addresses
//! are then exercised on a veth link, and the missing pieces must fail
//! with their typed errors.

use kpinspect_core::config::IpvsConfig;
use kpinspect_node::{
    AddressAdded, DummyLink, KUBE_IPVS0, KernelVersion, LinkEnsured, LinkError, SysctlError,
    Sysctls, SystemLinks, SystemSysctls, ensure_sysctls, ipvs_sysctls,
};

use crate::{available, in_child, rerun_in, run_ok};

const TEST: &str = "link::links_addresses_and_sysctls_in_a_namespace";

#[test]
fn links_addresses_and_sysctls_in_a_namespace() {
    if in_child(TEST) {
        return in_namespace();
    }
    if available() {
        rerun_in(&["unshare", "-n", "--"], TEST);
    }
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().expect("ip")
}

fn in_namespace() {
    let links = SystemLinks;
    match links.ensure_dummy(KUBE_IPVS0) {
        Ok(LinkEnsured::Created) => {
            assert_eq!(links.ensure_dummy(KUBE_IPVS0), Ok(LinkEnsured::Existed));
            assert_eq!(
                links.link(KUBE_IPVS0).expect("link").and_then(|l| l.kind),
                Some("dummy".into())
            );
        }
        Err(e) => {
            assert_eq!(e, LinkError::DummyUnavailable);
            assert_eq!(
                e.to_string(),
                "dummy links are not available (modprobe dummy)"
            );
        }
        other => panic!("a fresh namespace has no {KUBE_IPVS0}: {other:?}"),
    }

    // Addresses work the same on any link: a veth here.
    run_ok(&[
        "ip", "link", "add", "kpn-v0", "type", "veth", "peer", "name", "kpn-v1",
    ]);
    assert_eq!(
        links.ensure_dummy("kpn-v0"),
        Err(LinkError::NotDummy {
            name: "kpn-v0".into(),
            kind: Some("veth".into())
        })
    );
    for a in ["10.96.0.10", "fd00:96::10"] {
        assert_eq!(links.add_address("kpn-v0", ip(a)), Ok(AddressAdded::Added));
        assert_eq!(
            links.add_address("kpn-v0", ip(a)),
            Ok(AddressAdded::AlreadyBound)
        );
    }
    assert_eq!(
        links.addresses("kpn-v0"),
        Ok(vec![ip("10.96.0.10"), ip("fd00:96::10")])
    );
    let shown = run_ok(&["ip", "-o", "addr", "show", "dev", "kpn-v0"]);
    assert!(shown.contains(" inet 10.96.0.10/32 "), "{shown}");
    assert!(shown.contains(" inet6 fd00:96::10/128 "), "{shown}");
    assert_eq!(links.del_address("kpn-v0", ip("10.96.0.10")), Ok(true));
    assert_eq!(links.del_address("kpn-v0", ip("10.96.0.10")), Ok(false));
    assert_eq!(links.addresses("kpn-v0"), Ok(vec![ip("fd00:96::10")]));
    assert_eq!(
        links.add_address("kpn-nope", ip("10.0.0.1")),
        Err(LinkError::NoSuchLink {
            name: "kpn-nope".into()
        })
    );
    assert_eq!(links.delete_link("kpn-v0"), Ok(()));
    assert_eq!(links.link("kpn-v1"), Ok(None), "the peer goes with it");

    // Sysctls of this namespace: ip_forward is per namespace.
    let sysctls = SystemSysctls::new();
    sysctls
        .write_sysctl("net/ipv4/ip_forward", "1")
        .expect("write");
    assert_eq!(
        sysctls.read_sysctl("net/ipv4/ip_forward"),
        Ok(Some("1".into()))
    );
    let want = ipvs_sysctls(&IpvsConfig::default(), KernelVersion::new(6, 1, 0));
    match sysctls.read_sysctl("net/ipv4/vs/conntrack").expect("read") {
        // Without IPVS, ensuring fails on its first sysctl, typed.
        None => assert_eq!(
            ensure_sysctls(&sysctls, &want),
            Err(SysctlError::Missing {
                name: "net/ipv4/vs/conntrack".into()
            })
        ),
        Some(_) => {
            ensure_sysctls(&sysctls, &want).expect("ensure");
        }
    }
}

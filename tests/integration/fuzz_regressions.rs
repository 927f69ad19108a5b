//! Replays the fuzzers' regression inputs (`fuzz/regressions/<target>/*`,
//! crashes found by `cargo fuzz` and fixed since) and every malformed input
//! of `fixtures/bad/` through the parsers the fuzz targets drive, with the
//! same checks: no panic, round trips stable. Plain `cargo test`, no nightly.

use kpinspect_core::ipset;
use kpinspect_core::mode::ipvs::{ipvsadm_save, parse_ipvsadm};
use kpinspect_core::netfilter::{RestoreFlush, Ruleset};
use kpinspect_core::nft::parse_script;

use crate::util::root;

/// What each fuzz target checks, on one input.
fn check(target: &str, data: &[u8]) {
    if target == "ipvs_netlink" {
        if let Some((&id, payload)) = data.split_first() {
            let _ = kpinspect_ipvs::IpvsMessage::parse(u16::from(id) + 16, payload);
            let _ = kpinspect_ipvs::service::Service::parse(payload);
            let _ = kpinspect_ipvs::Destination::parse(payload);
            let _ = kpinspect_ipvs::stats::Stats::parse(payload);
            let _ = kpinspect_ipvs::ctrl::CtrlMessage::parse(payload);
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match target {
        "k8s_objects" => {
            if let Ok(l) = kpinspect_k8s::load_objects(text, "fuzz.yaml") {
                let _ = l.finish();
            }
        }
        "k8s_config" => {
            if let Ok(c) = kpinspect_k8s::parse_kube_proxy_config(text, "config.yaml") {
                let _ = c.apply_to(&mut kpinspect_core::config::ProxyConfig::default());
            }
        }
        "iptables_save" => {
            if let Ok(rs) = Ruleset::parse(text) {
                let _ = rs.check_chains_declared();
                assert_eq!(rs.render(), text);
                assert_eq!(Ruleset::parse(&rs.render()).expect("re-parses"), rs);
            }
        }
        "restore" => {
            let base = Ruleset::parse("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n")
                .expect("base");
            for flush in [RestoreFlush::NoFlush, RestoreFlush::Flush] {
                let mut node = base.clone();
                match node.restore(text, flush) {
                    // Tables committed before the failing one stay, as
                    // with iptables-restore (legacy).
                    Err(_) => {}
                    Ok(()) => {
                        let saved = node.render();
                        let again = Ruleset::parse(&saved).expect("re-parses");
                        assert_eq!(again.render(), saved);
                        assert_eq!(again.tables().len(), node.tables().len());
                    }
                }
            }
        }
        "ipset" => {
            if let Ok(sets) = ipset::parse(text) {
                let r = ipset::render_save(&sets);
                let again = ipset::parse(&r).expect("re-parses");
                assert_eq!(ipset::render_save(&again), r);
            }
        }
        "ipvsadm" => {
            if let Ok(vs) = parse_ipvsadm(text) {
                let s = ipvsadm_save(&vs);
                assert_eq!(ipvsadm_save(&parse_ipvsadm(&s).expect("re-parses")), s);
            }
        }
        "nft_listing" => {
            let _ = kpinspect_core::nft::Ruleset::parse(text, |_, _| true);
            let _ = kpinspect_core::mode::nftables::read_listing(text);
        }
        "nft_script" => {
            if let Ok(txs) = parse_script(text) {
                let r: String = txs.iter().map(|t| t.render()).collect();
                let again = parse_script(&r).expect("re-parses");
                assert_eq!(again.iter().map(|t| t.render()).collect::<String>(), r);
            }
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

const TARGETS: [&str; 9] = [
    "k8s_objects",
    "k8s_config",
    "iptables_save",
    "restore",
    "ipset",
    "ipvsadm",
    "nft_listing",
    "nft_script",
    "ipvs_netlink",
];

#[test]
fn fuzz_regression_inputs_replay_clean() {
    let dir = root().join("fuzz/regressions");
    let mut n = 0;
    for target in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            let data = std::fs::read(&path).expect("read");
            eprintln!("{}", path.display());
            check(target, &data);
            n += 1;
        }
    }
    eprintln!("{n} fuzz regression inputs replayed");
}

#[test]
fn bad_inputs_through_every_parser() {
    let dir = root().join("fixtures/bad");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("fixtures/bad") {
        let path = e.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).expect("read");
        for target in TARGETS {
            check(target, &data);
        }
        n += 1;
    }
    assert!(n >= 40, "{n} bad inputs");
}

//! Read the live node (as root, or with CAP_NET_ADMIN): detect the iptables
//! backend kube-proxy uses, save both families' rules and list the Services
//! they program with each endpoint's share — the library calls behind
//! `kpinspect dump` without `--iptables-save`. Not run in CI (needs root).
//!
//! ```sh
//! sudo cargo run --locked -p kpinspect-node --example live
//! ```

use kpinspect_core::mode::iptables;
use kpinspect_core::net::IpFamily;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_node::{Iptables, LiveNode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Which of iptables-legacy and iptables-nft holds kube-proxy's rules,
    // decided as Kubernetes' iptables wrapper decides it.
    let node = LiveNode::detect()?;
    println!("backend: {} ({})", node.backend(), node.detection.reason);
    if let Some(w) = node.detection.warning() {
        println!("warning: {w}");
    }
    for family in [IpFamily::V4, IpFamily::V6] {
        let text = node.save(family)?;
        let dump = iptables::dump(&Ruleset::parse(&text)?, None);
        println!(
            "{} ({family:?}): {} service ports",
            node.save_program(family),
            dump.services.len()
        );
        for svc in &dump.services {
            let shares: Vec<String> = svc
                .endpoints
                .iter()
                .map(|e| match e.probability {
                    Some(p) => format!("{}:{} {:.1}%", e.ip, e.port, p * 100.0),
                    None => format!("{}:{}", e.ip, e.port),
                })
                .collect();
            println!(
                "  {}/{}:{} -> {}",
                svc.namespace,
                svc.name,
                svc.port_name,
                shares.join(", ")
            );
        }
        for a in &dump.anomalies {
            println!("  anomaly {}: {} {}", a.kind.as_str(), a.chain, a.message);
        }
    }
    Ok(())
}

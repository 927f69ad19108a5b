//! Parse an `iptables-save` and list its Services with the share of new
//! connections each endpoint gets: the library calls behind `kpinspect
//! dump`. The library is pure; this program reads the file.
//!
//! ```sh
//! cargo run --locked -p kpinspect-core --example services -- fixtures/iptables-save/example.nft.txt
//! ```
//!
//! Without an argument it reads the repository's
//! `fixtures/iptables-save/example.nft.txt`.

use kpinspect_core::mode::iptables;
use kpinspect_core::netfilter::Ruleset;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/iptables-save/example.nft.txt"
        )
        .into()
    });
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let rules = Ruleset::parse(&text)?;
    // No cluster objects: names come from kube-proxy's rule comments.
    let dump = iptables::dump(&rules, None);
    for source in &dump.sources {
        println!("# {}", source.generation.summary);
    }
    for svc in &dump.services {
        let addr = match (&svc.cluster_ip, svc.port) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            _ => "-".into(),
        };
        println!(
            "{}/{}:{} {} {addr}",
            svc.namespace, svc.name, svc.port_name, svc.protocol
        );
        for ep in &svc.endpoints {
            let share = ep
                .probability
                .map_or("?".to_string(), |p| format!("{:.1}%", p * 100.0));
            println!("  -> {}:{}  {share}", ep.ip, ep.port);
        }
        if let Some(why) = &svc.no_endpoints {
            println!("  no endpoints: {why}");
        }
    }
    for a in &dump.anomalies {
        println!("anomaly {}: {} {}", a.kind.as_str(), a.chain, a.message);
    }
    Ok(())
}

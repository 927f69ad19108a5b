//! Walk a new connection through an `iptables-save` the way the kernel's
//! hooks would and print every outcome with its probability: the library
//! call behind `kpinspect trace`. The library is pure; this program reads
//! the file.
//!
//! ```sh
//! cargo run --locked -p kpinspect-core --example trace -- fixtures/iptables-save/etp-local-lb.txt 10.0.0.5 10.96.41.9 80
//! ```
//!
//! Arguments: SAVE SRC DST PORT (TCP). Without them it traces
//! 10.0.0.5 → 10.96.41.9:80 (shop/search) through the repository's
//! `fixtures/iptables-save/etp-local-lb.txt`.

use std::net::IpAddr;

use kpinspect_core::model::Protocol;
use kpinspect_core::netfilter::Ruleset;
use kpinspect_core::trace::{Packet, TraceOptions, trace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_save = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/iptables-save/etp-local-lb.txt"
    );
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let path = arg(0, default_save);
    let src: IpAddr = arg(1, "10.0.0.5").parse()?;
    let dst: IpAddr = arg(2, "10.96.41.9").parse()?;
    let port: u16 = arg(3, "80").parse()?;

    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let rules = Ruleset::parse(&text)?;
    let packet = Packet::new(src, dst, port, Protocol::Tcp);
    // The node's own addresses decide where the walk starts; none here: the
    // packet arrives from outside (nat PREROUTING).
    let result = trace(&rules, &packet, &TraceOptions::default());
    println!("{src} -> {dst}:{port}/tcp enters at {:?}", result.hook);
    for o in &result.outcomes {
        let to = o.to.map_or("-".to_string(), |a| a.to_string());
        println!(
            "{:>6.2}%  {:?} to {to}{}{}",
            o.probability * 100.0,
            o.action,
            if o.masquerade { " (masqueraded)" } else { "" },
            if o.conditions.is_empty() {
                String::new()
            } else {
                format!(" if {}", o.conditions.join(" and "))
            }
        );
    }
    Ok(())
}

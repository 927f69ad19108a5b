//! Compile the shipped example cluster and apply it to an in-memory node:
//! the library calls behind `kpinspect apply`, without root.
//!
//! ```sh
//! cargo run --locked -p kpinspect-node --example plan_apply
//! ```

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::iptables;
use kpinspect_core::proxy::ProxyState;
use kpinspect_node::{Desired, MemoryNode, apply};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    let path = format!("{root}examples/cluster.yaml");
    let text = std::fs::read_to_string(&path)?;
    let (cluster, warnings) = kpinspect_k8s::load_objects(&text, &path)?.finish();
    for w in warnings {
        eprintln!("warning: {w}");
    }

    let mut config = ProxyConfig::default();
    let cfg = format!("{root}examples/kube-proxy-config.yaml");
    kpinspect_k8s::parse_kube_proxy_config(&std::fs::read_to_string(&cfg)?, &cfg)?
        .apply_to(&mut config)?;

    let state = ProxyState::build(&cluster, &config, config.default_family());
    let restore = iptables::compile(&state, &config);
    assert!(iptables::check_rule_jumps(&restore.render()).is_empty());

    // Plan and write against an in-memory node (a fresh network namespace).
    let node = MemoryNode::new();
    let desired = Desired::compile(state, &config)?;
    println!("{}", apply(&node, &desired)?);
    // A second apply plans against what the first wrote: nothing to do.
    println!("{}", apply(&node, &desired)?);
    Ok(())
}

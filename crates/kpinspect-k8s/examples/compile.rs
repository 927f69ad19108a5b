//! Compile a cluster file (kubectl output) and a kube-proxy configuration
//! to the `iptables-restore` input kube-proxy writes in a full sync: the
//! library calls behind `kpinspect compile`.
//!
//! ```sh
//! cargo run --locked -p kpinspect-k8s --example compile -- examples/cluster.yaml examples/kube-proxy-config.yaml
//! ```
//!
//! Without arguments it compiles the repository's `examples/cluster.yaml`
//! with `examples/kube-proxy-config.yaml` (a minikube node).

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::iptables;
use kpinspect_core::proxy::ProxyState;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../");
    let mut args = std::env::args().skip(1);
    let cluster_path = args
        .next()
        .unwrap_or_else(|| format!("{root}examples/cluster.yaml"));
    let config_path = args
        .next()
        .unwrap_or_else(|| format!("{root}examples/kube-proxy-config.yaml"));

    // kubectl get svc,endpointslices -A -o yaml (or json), validated.
    let text =
        std::fs::read_to_string(&cluster_path).map_err(|e| format!("{cluster_path}: {e}"))?;
    let (cluster, warnings) = kpinspect_k8s::load_objects(&text, &cluster_path)?.finish();
    for w in warnings {
        eprintln!("warning: {w}");
    }

    // The node's KubeProxyConfiguration (or the kube-proxy ConfigMap).
    let mut config = ProxyConfig::default();
    let text = std::fs::read_to_string(&config_path).map_err(|e| format!("{config_path}: {e}"))?;
    kpinspect_k8s::parse_kube_proxy_config(&text, &config_path)?.apply_to(&mut config)?;

    // What one proxier (one IP family) sees, then iptables mode's full sync.
    let state = ProxyState::build(&cluster, &config, config.default_family());
    for n in &state.notices {
        eprintln!("notice: {}: {}", n.object, n.message);
    }
    let restore = iptables::compile(&state, &config).render();
    assert!(iptables::check_rule_jumps(&restore).is_empty());
    print!("{restore}");
    Ok(())
}

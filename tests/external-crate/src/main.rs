//! Compiles one Service with one endpoint the way a user's program would,
//! through the published API of kpinspect-k8s and kpinspect-core, and
//! checks the restore text names its endpoint.

use kpinspect_core::config::ProxyConfig;
use kpinspect_core::mode::iptables;
use kpinspect_core::net::IpFamily;
use kpinspect_core::proxy::ProxyState;

const OBJECTS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.1.7], conditions: {ready: true}}]
ports: [{name: http, port: 8080, protocol: TCP}]
";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (cluster, warnings) = kpinspect_k8s::load_objects(OBJECTS, "objects.yaml")?.finish();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let config = ProxyConfig::default();
    let state = ProxyState::build(&cluster, &config, IpFamily::V4);
    let text = iptables::compile(&state, &config).render();
    let dnat = text
        .lines()
        .find(|l| l.contains("-j DNAT"))
        .ok_or("no DNAT rule compiled")?;
    if !dnat.contains("--to-destination 10.244.1.7:8080") {
        return Err(format!("unexpected DNAT rule: {dnat}").into());
    }
    println!("{dnat}");
    Ok(())
}

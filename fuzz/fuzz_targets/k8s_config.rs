//! A KubeProxyConfiguration (or its ConfigMap): errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = kpinspect_k8s::parse_kube_proxy_config(text, "config.yaml")
    {
        let mut config = kpinspect_core::config::ProxyConfig::default();
        let _ = c.apply_to(&mut config);
    }
});

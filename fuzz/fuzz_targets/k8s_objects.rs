//! kubectl output (YAML or JSON) into a cluster: errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(loaded) = kpinspect_k8s::load_objects(text, "fuzz.yaml")
    {
        let _ = loaded.finish();
    }
});

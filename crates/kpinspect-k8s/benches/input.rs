//! The Kubernetes input edge at 1,000, 10,000 and 50,000 services × 10
//! endpoints: kubectl JSON and YAML (made by `kpinspect-gen`) → validated
//! objects (`load_objects` + `finish`), the part of `kpinspect compile`
//! before the compiler.
//!
//! Run with `cargo bench -p kpinspect-k8s`.

use kpinspect_gen::{Format, Spec, generate};

const SIZES: [u32; 3] = [1_000, 10_000, 50_000];

fn main() {
    divan::main();
}

fn text(services: u32, format: Format) -> String {
    let spec = Spec {
        services,
        endpoints: 10,
        changed: None,
    };
    generate(&spec, format)
}

fn load(text: &str) -> usize {
    let (cluster, _) = kpinspect_k8s::load_objects(text, "bench")
        .expect("loads")
        .finish();
    cluster.services.len()
}

/// `kubectl get svc,endpointslices -A -o json` → the cluster.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn load_json(bencher: divan::Bencher, n: u32) {
    let text = text(n, Format::Json);
    bencher
        .counter(divan::counter::BytesCount::new(text.len()))
        .bench(|| assert_eq!(divan::black_box(load(&text)), n as usize));
}

/// `kubectl get svc,endpointslices -A -o yaml` → the cluster.
#[divan::bench(args = SIZES, sample_count = 3, sample_size = 1)]
fn load_yaml(bencher: divan::Bencher, n: u32) {
    let text = text(n, Format::Yaml);
    bencher
        .counter(divan::counter::BytesCount::new(text.len()))
        .bench(|| assert_eq!(divan::black_box(load(&text)), n as usize));
}

//! `kpinspect-gen`'s kubectl JSON and YAML read into exactly the model
//! objects the core's benchmarks start from (`synthetic::kubectl_cluster`),
//! so that `kpinspect compile` of the generator's output and the core's
//! `core_iptables` benchmark compile the same cluster.

use kpinspect_gen::{Format, Spec, generate};

#[path = "../../kpinspect-core/tests/support/synthetic.rs"]
mod synthetic;

#[test]
fn generator_output_reads_into_the_benchmarks_cluster() {
    for (services, endpoints) in [(1, 1), (41, 3), (120, 10)] {
        let spec = Spec {
            services,
            endpoints,
            changed: None,
        };
        let want = synthetic::kubectl_cluster(services, endpoints);
        for format in [Format::Json, Format::Yaml] {
            let text = generate(&spec, format);
            let (got, warnings) = kpinspect_k8s::load_objects(&text, "gen")
                .expect("loads")
                .finish();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(got, want, "{services} x {endpoints}, {format:?}");
        }
    }
}

//! # kpinspect-k8s
//!
//! The Kubernetes input edge of kpinspect: reads what users already have —
//! `kubectl get svc,endpointslices -A -o yaml|json` output and the node's
//! `KubeProxyConfiguration` — into the validated values of
//! [`kpinspect_core`]. It takes text, not files: reading is the caller's job
//! — except in [`golden`], whose cases are directories (golden files for
//! users' CI and Rust tests: [`golden::assert_golden`]).
//!
//! Bad input is an error naming the file, the object and the field; input
//! that kube-proxy itself would skip (an external IP that does not parse,
//! say) is skipped and reported as a [`Warning`].
//!
//! ```
//! let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
//!             spec: {clusterIP: 10.96.0.10, ports: [{port: 80, protocol: HTTP}]}\n";
//! let err = kpinspect_k8s::load_objects(yaml, "svc.yaml").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "svc.yaml: Service default/web: spec.ports[0].protocol: unknown protocol \"HTTP\" (expected TCP, UDP or SCTP)"
//! );
//! ```
//!
//! `cargo run -p kpinspect-k8s --example compile -- CLUSTER CONFIG`
//! (`crates/kpinspect-k8s/examples/compile.rs`) compiles a cluster file
//! and a kube-proxy configuration to the restore input kube-proxy writes.
//!
//! # The Kubernetes API version
//!
//! The Kubernetes types come from `k8s-openapi`, which is built for exactly
//! one Kubernetes version. This crate picks it with a Cargo feature:
//! `k8s-v1_33` (the default, the oldest API kpinspect supports; the fields
//! it reads exist in every later one), `k8s-v1_34` … `k8s-v1_37`. To pick
//! another, turn the default off:
//!
//! ```toml
//! [dependencies]
//! kpinspect-k8s = { version = "0.1", default-features = false, features = ["k8s-v1_35"] }
//! ```
//!
//! With none of these features, the version is whatever your own
//! `k8s-openapi` dependency enables (or its `K8S_OPENAPI_ENABLED_VERSION`
//! environment variable) — the way to go when your program uses
//! `k8s-openapi` itself, since two versions cannot be enabled at once.
//!
//! # Golden files
//!
//! [`golden`] reads golden case directories (cluster objects, configuration,
//! node flags, expected outputs per proxy mode) and checks or blesses them;
//! [`golden::assert_golden`] does it from a Rust test.

#![deny(missing_docs)]

mod config;
mod error;
pub mod golden;
mod objects;

pub use config::{
    ConntrackConfiguration, DetectLocalConfiguration, IptablesConfiguration, IpvsConfiguration,
    KubeProxyConfiguration, NftablesConfiguration, parse_kube_proxy_config,
};
pub use error::{LoadError, Warning};
pub use objects::{
    HEADLESS_LABEL, Loaded, SERVICE_NAME_LABEL, SERVICE_PROXY_NAME_LABEL, SKIP_MIRROR_LABEL,
    load_objects,
};

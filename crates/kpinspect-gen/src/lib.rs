//! # kpinspect-gen
//!
//! A deterministic generator of large clusters as `kubectl get
//! svc,endpointslices -A -o json|yaml` prints them: `services` Services with
//! `endpoints` ready endpoints each, in one `List`. The same arguments give
//! the same bytes, so benchmarks and the end-to-end performance script
//! (`scripts/perf.sh`) measure the same input on every run.
//!
//! The mix, by service number `s`: every tenth a LoadBalancer (with an
//! ingress IP), every other fourth a NodePort, the rest ClusterIP; even
//! services have one unnamed port (80 → 8080), odd ones two named ports
//! (`http` 80 → 8080, `metrics` 9090 → 9090). Cluster IPs count up from
//! 10.96.0.0, endpoints from 10.128.0.0 (`s × endpoints + e`), ingress IPs
//! from 172.16.0.0; node ports cycle through 30000–32767.
//!
//! ```
//! use kpinspect_gen::{Format, Spec, generate};
//! let spec = Spec { services: 2, endpoints: 3, ..Spec::default() };
//! let json = generate(&spec, Format::Json);
//! assert!(json.starts_with("{\"apiVersion\":\"v1\",\"kind\":\"List\""));
//! assert_eq!(json.matches("\"kind\":\"Service\"").count(), 2);
//! assert_eq!(json, generate(&spec, Format::Json));
//! ```

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `kubectl get -o json`: one `List` object.
    Json,
    /// `kubectl get -o yaml`: one `List` document.
    Yaml,
}

impl std::str::FromStr for Format {
    type Err = GenError;

    fn from_str(s: &str) -> Result<Self, GenError> {
        match s {
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            other => Err(GenError::Format(other.to_string())),
        }
    }
}

/// Bad generator arguments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenError {
    /// A format other than `json` or `yaml`.
    #[error("unknown format {0:?} (expected json or yaml)")]
    Format(String),
    /// A count that does not fit the address plan.
    #[error("{0}")]
    TooLarge(String),
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Number of Services.
    pub services: u32,
    /// Ready endpoints per Service.
    pub endpoints: u32,
    /// Moves the first endpoint of this Service to another address
    /// (10.127.x.y): the "one endpoint changed" state of an incremental apply.
    pub changed: Option<u32>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            services: 1_000,
            endpoints: 10,
            changed: None,
        }
    }
}

impl Spec {
    /// Checks that the addresses fit their ranges (10.96.0.0/11 for
    /// cluster IPs, 10.128.0.0/9 for endpoints).
    pub fn check(&self) -> Result<(), GenError> {
        if self.services > 1 << 21 {
            return Err(GenError::TooLarge(format!(
                "{} services: at most {} fit 10.96.0.0/11",
                self.services,
                1u32 << 21
            )));
        }
        if u64::from(self.services) * u64::from(self.endpoints) > 1 << 23 {
            return Err(GenError::TooLarge(format!(
                "{} x {} endpoints: at most {} fit 10.128.0.0/9",
                self.services,
                self.endpoints,
                1u32 << 23
            )));
        }
        Ok(())
    }
}

fn ip(base: u32, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(base.wrapping_add(n))
}

/// Service `s`'s shape.
struct Svc {
    kind: &'static str,
    node_port: Option<u32>,
    lb: bool,
    named: bool,
}

fn shape(s: u32) -> Svc {
    let (kind, lb) = if s.is_multiple_of(10) {
        ("LoadBalancer", true)
    } else if s.is_multiple_of(4) {
        ("NodePort", false)
    } else {
        ("ClusterIP", false)
    };
    Svc {
        kind,
        node_port: (kind != "ClusterIP").then_some(30000 + (s * 2) % 2768),
        lb,
        named: s % 2 == 1,
    }
}

/// Ports of a service: (name, port, targetPort).
fn ports(svc: &Svc) -> Vec<(Option<&'static str>, u32, u32)> {
    if svc.named {
        vec![(Some("http"), 80, 8080), (Some("metrics"), 9090, 9090)]
    } else {
        vec![(None, 80, 8080)]
    }
}

fn endpoint_ip(spec: &Spec, s: u32, e: u32) -> Ipv4Addr {
    if spec.changed == Some(s) && e == 0 {
        ip(0x0a7f_0000, s)
    } else {
        ip(0x0a80_0000, s * spec.endpoints + e)
    }
}

/// Generates the cluster as one `List` in `format`.
pub fn generate(spec: &Spec, format: Format) -> String {
    let per_service = 700 + 200 * spec.endpoints as usize;
    let mut out = String::with_capacity(spec.services as usize * per_service + 64);
    match format {
        Format::Json => json(spec, &mut out),
        Format::Yaml => yaml(spec, &mut out),
    }
    out
}

// Writing to a String cannot fail: the `fmt::Result`s are ignored.
fn json(spec: &Spec, out: &mut String) {
    out.push_str("{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[");
    for s in 0..spec.services {
        let svc = shape(s);
        let ports = ports(&svc);
        if s > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{{\"name\":\"svc{s}\",\"namespace\":\"ns{ns}\"}},\"spec\":{{\"type\":\"{kind}\",\"clusterIP\":\"{cip}\",\"clusterIPs\":[\"{cip}\"],\"ports\":[",
            ns = s % 100,
            kind = svc.kind,
            cip = ip(0x0a60_0000, s),
        );
        for (i, (name, port, target)) in ports.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            if let Some(name) = name {
                let _ = write!(out, "\"name\":\"{name}\",");
            }
            let _ = write!(
                out,
                "\"port\":{port},\"targetPort\":{target},\"protocol\":\"TCP\""
            );
            if let Some(np) = svc.node_port {
                let _ = write!(out, ",\"nodePort\":{}", np + i as u32);
            }
            out.push('}');
        }
        out.push_str("]}");
        if svc.lb {
            let _ = write!(
                out,
                ",\"status\":{{\"loadBalancer\":{{\"ingress\":[{{\"ip\":\"{}\"}}]}}}}",
                ip(0xac10_0000, s)
            );
        }
        out.push('}');
        let _ = write!(
            out,
            ",{{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{{\"name\":\"svc{s}-abcde\",\"namespace\":\"ns{ns}\",\"labels\":{{\"kubernetes.io/service-name\":\"svc{s}\"}}}},\"addressType\":\"IPv4\",\"endpoints\":[",
            ns = s % 100
        );
        for e in 0..spec.endpoints {
            if e > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"addresses\":[\"{}\"],\"conditions\":{{\"ready\":true,\"serving\":true,\"terminating\":false}},\"nodeName\":\"node{}\"}}",
                endpoint_ip(spec, s, e),
                e % 50
            );
        }
        out.push_str("],\"ports\":[");
        for (i, (name, _, target)) in ports.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            if let Some(name) = name {
                let _ = write!(out, "\"name\":\"{name}\",");
            } else {
                out.push_str("\"name\":\"\",");
            }
            let _ = write!(out, "\"port\":{target},\"protocol\":\"TCP\"}}");
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
}

fn yaml(spec: &Spec, out: &mut String) {
    out.push_str("apiVersion: v1\nkind: List\nitems:\n");
    for s in 0..spec.services {
        let svc = shape(s);
        let ports = ports(&svc);
        let _ = write!(
            out,
            "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: svc{s}\n    namespace: ns{ns}\n  spec:\n    type: {kind}\n    clusterIP: {cip}\n    clusterIPs:\n    - {cip}\n    ports:\n",
            ns = s % 100,
            kind = svc.kind,
            cip = ip(0x0a60_0000, s),
        );
        for (i, (name, port, target)) in ports.iter().enumerate() {
            let mut lead = "    - ";
            if let Some(name) = name {
                let _ = writeln!(out, "{lead}name: {name}");
                lead = "      ";
            }
            let _ = write!(
                out,
                "{lead}port: {port}\n      targetPort: {target}\n      protocol: TCP\n"
            );
            if let Some(np) = svc.node_port {
                let _ = writeln!(out, "      nodePort: {}", np + i as u32);
            }
        }
        if svc.lb {
            let _ = writeln!(
                out,
                "  status:\n    loadBalancer:\n      ingress:\n      - ip: {}",
                ip(0xac10_0000, s)
            );
        }
        let _ = write!(
            out,
            "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata:\n    name: svc{s}-abcde\n    namespace: ns{ns}\n    labels:\n      kubernetes.io/service-name: svc{s}\n  addressType: IPv4\n  endpoints:\n",
            ns = s % 100
        );
        for e in 0..spec.endpoints {
            let _ = write!(
                out,
                "  - addresses:\n    - {}\n    conditions:\n      ready: true\n      serving: true\n      terminating: false\n    nodeName: node{}\n",
                endpoint_ip(spec, s, e),
                e % 50
            );
        }
        out.push_str("  ports:\n");
        for (name, _, target) in &ports {
            let _ = write!(
                out,
                "  - name: \"{}\"\n    port: {target}\n    protocol: TCP\n",
                name.unwrap_or("")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_count_what_was_asked() {
        let spec = Spec {
            services: 20,
            endpoints: 4,
            changed: None,
        };
        for format in [Format::Json, Format::Yaml] {
            let text = generate(&spec, format);
            let kinds = match format {
                Format::Json => ("\"kind\":\"Service\"", "\"kind\":\"EndpointSlice\""),
                Format::Yaml => ("kind: Service\n", "kind: EndpointSlice\n"),
            };
            assert_eq!(text.matches(kinds.0).count(), 20, "{format:?}");
            assert_eq!(text.matches(kinds.1).count(), 20, "{format:?}");
            assert_eq!(text.matches("10.128.").count(), 80, "{format:?}");
        }
    }

    #[test]
    fn a_changed_endpoint_moves_exactly_one_address() {
        let base = Spec {
            services: 10,
            endpoints: 3,
            changed: None,
        };
        let changed = Spec {
            changed: Some(7),
            ..base.clone()
        };
        let a = generate(&base, Format::Json);
        let b = generate(&changed, Format::Json);
        assert_ne!(a, b);
        assert!(!a.contains("10.127.0.7"));
        assert_eq!(b.matches("10.127.0.7").count(), 1);
        assert!(!b.contains(&format!("\"{}\"", ip(0x0a80_0000, 21))));
    }

    #[test]
    fn too_many_endpoints_are_refused() {
        let spec = Spec {
            services: 1 << 20,
            endpoints: 100,
            changed: None,
        };
        assert!(matches!(spec.check(), Err(GenError::TooLarge(_))));
        assert_eq!(
            "toml".parse::<Format>(),
            Err(GenError::Format("toml".into()))
        );
    }
}

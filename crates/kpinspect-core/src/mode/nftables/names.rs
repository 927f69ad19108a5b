//! nftables mode's names: per-service-port chains (`service-`, `local-`,
//! `external-`, `firewall-`) and per-endpoint chains and affinity sets
//! (`endpoint-`, `affinity-`), each followed by kube-proxy's
//! `hashAndTruncate` of a readable base string.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::proxy::{EndpointInfo, ServicePortName};

/// The longest name kube-proxy writes (knftables' `NameLengthMax` 256 less
/// room for a prefix).
const MAX_NAME: usize = 240;

/// kube-proxy's `hashAndTruncate`: 8 characters of base32(sha256(`s`)), `-`,
/// then `s`, cut to 237 characters plus `...` when longer than 240.
///
/// ```
/// use kpinspect_core::mode::nftables::names::hash_and_truncate;
/// assert_eq!(hash_and_truncate("testing/service/tcp/http"), "P4ZYZVCF-testing/service/tcp/http");
/// ```
pub fn hash_and_truncate(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = BASE32.encode(&digest);
    out.truncate(8);
    out.push('-');
    out.push_str(s);
    if out.len() > MAX_NAME {
        let mut cut = MAX_NAME - 3;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

/// `ns/svc/proto/port` (the port name may be empty).
pub fn service_port_base(name: &ServicePortName) -> String {
    format!(
        "{}/{}/{}/{}",
        name.namespace,
        name.name,
        name.protocol.as_str(),
        name.port
    )
}

/// The hashed base shared by a service port's four chains
/// (`servicePortChainNameBase`).
pub fn service_port_chain_base(name: &ServicePortName) -> String {
    hash_and_truncate(&service_port_base(name))
}

/// The hashed base of an endpoint's chain and affinity set
/// (`servicePortEndpointChainNameBase`): `ns/svc/proto/port__ip/port`, an
/// IPv6 address with `.` for `:`.
///
/// ```
/// use kpinspect_core::mode::nftables::names::endpoint_chain_base;
/// use kpinspect_core::model::Protocol;
/// use kpinspect_core::proxy::ServicePortName;
/// let name = ServicePortName {
///     namespace: "testing".into(), name: "service".into(), port: "http".into(), protocol: Protocol::Tcp,
/// };
/// assert_eq!(
///     endpoint_chain_base(&name, &"10.180.0.1".parse().unwrap(), 80),
///     "JO2XBXZR-testing/service/tcp/http__10.180.0.1/80"
/// );
/// assert!(endpoint_chain_base(&name, &"fd00:10::1".parse().unwrap(), 80).ends_with("__fd00.10..1/80"));
/// ```
pub fn endpoint_chain_base(name: &ServicePortName, ip: &std::net::IpAddr, port: u16) -> String {
    hash_and_truncate(&format!(
        "{}__{}/{}",
        service_port_base(name),
        ip.to_string().replace(':', "."),
        port
    ))
}

/// The chain names of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `service-…`: the Cluster traffic policy chain.
    pub cluster: String,
    /// `local-…`: the Local traffic policy chain.
    pub local: String,
    /// `external-…`: node ports, external and load-balancer IPs.
    pub external: String,
    /// `firewall-…`: loadBalancerSourceRanges.
    pub firewall: String,
}

impl ServiceChains {
    /// The chains of `name`.
    pub fn of(name: &ServicePortName) -> ServiceChains {
        let base = service_port_chain_base(name);
        ServiceChains {
            cluster: format!("service-{base}"),
            local: format!("local-{base}"),
            external: format!("external-{base}"),
            firewall: format!("firewall-{base}"),
        }
    }
}

/// `endpoint-…` of an endpoint of `name`.
pub fn endpoint_chain(name: &ServicePortName, ep: &EndpointInfo) -> String {
    format!("endpoint-{}", endpoint_chain_base(name, &ep.ip, ep.port))
}

/// `affinity-…` of an endpoint of `name` (the same hash as its chain).
pub fn affinity_set(name: &ServicePortName, ep: &EndpointInfo) -> String {
    format!("affinity-{}", endpoint_chain_base(name, &ep.ip, ep.port))
}

/// Whether `chain` is one of nftables mode's per-service chains (kube-proxy's
/// `isServiceChainName`: it contains `/`).
pub fn is_service_chain(chain: &str) -> bool {
    chain.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn name(ns: &str, svc: &str, port: &str, protocol: Protocol) -> ServicePortName {
        ServicePortName {
            namespace: ns.into(),
            name: svc.into(),
            port: port.into(),
            protocol,
        }
    }

    #[test]
    fn service_port_chain_names() {
        let n = name("testing", "service", "https", Protocol::Tcp);
        assert_eq!(
            service_port_chain_base(&n),
            "LZBRENCP-testing/service/tcp/https"
        );
        let long = name(
            "very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx",
            "very-long-service-name-why-would-you-even-do-this-i-mean-really",
            "port-443-providing-the-hypertext-transmission-protocol-with-tls",
            Protocol::Sctp,
        );
        assert_eq!(
            service_port_chain_base(&long),
            format!("KR6NACJP-{}", service_port_base(&long))
        );
        let chains = ServiceChains::of(&name("ns1", "svc1", "p80", Protocol::Tcp));
        assert_eq!(chains.cluster, "service-ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(chains.external, "external-ULMVA6XW-ns1/svc1/tcp/p80");
        assert_eq!(
            ServiceChains::of(&name("ns1", "itp", "", Protocol::Udp)).local,
            "local-5AS4EMTQ-ns1/itp/udp/"
        );
    }

    #[test]
    fn endpoint_chain_names_truncate_at_240() {
        let n = name("testing", "service", "http", Protocol::Tcp);
        let ip = |s: &str| s.parse().expect("ip");
        assert_eq!(
            endpoint_chain_base(&n, &ip("10.180.0.1"), 80),
            "JO2XBXZR-testing/service/tcp/http__10.180.0.1/80"
        );
        assert_eq!(
            endpoint_chain_base(&n, &ip("10.180.0.2"), 80),
            "5S6H3H22-testing/service/tcp/http__10.180.0.2/80"
        );
        let long = name(
            "very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx",
            "very-long-service-name-why-would-you-even-do-this-i-mean-really",
            "port-443-providing-the-hypertext-transmission-protocol-with-tls",
            Protocol::Sctp,
        );
        let exact = endpoint_chain_base(&long, &ip("1234:5678:9abc:def0::abc:1234"), 443);
        assert_eq!(exact.len(), 240);
        assert!(
            exact.starts_with("5YS7AFEA-")
                && exact.ends_with("__1234.5678.9abc.def0..abc.1234/443")
        );
        // Upstream's test passes these endpoint strings as written (Go would
        // print `def0:0:abcd` for a canonical address).
        let base = service_port_base(&long);
        let a = hash_and_truncate(&format!("{base}__1234.5678.9abc.def0..abcd.1234.5678/443"));
        let b = hash_and_truncate(&format!("{base}__1234.5678.9abc.def0..abcd.1234.8765/443"));
        assert_eq!(a.len(), 240);
        assert!(a.starts_with("CI6C53Q3-") && a.ends_with("__1234.5678.9abc.def0..abcd.1234..."));
        assert!(b.starts_with("2FLXFK6X-") && b.ends_with("__1234.5678.9abc.def0..abcd.1234..."));
    }

    #[test]
    fn service_chains_have_a_slash() {
        assert!(is_service_chain(
            "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
        ));
        assert!(!is_service_chain("nat-prerouting"));
    }
}

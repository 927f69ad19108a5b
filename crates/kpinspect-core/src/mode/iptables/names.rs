//! kube-proxy's chain names: `KUBE-SVC-`, `KUBE-SVL-`, `KUBE-EXT-`, `KUBE-FW-`
//! and `KUBE-SEP-` followed by 16 characters of base32(sha256(...)).

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::proxy::ServicePortName;

/// The 16-character hash suffix of `input`.
///
/// ```
/// use kpinspect_core::mode::iptables::names::hash_suffix;
/// assert_eq!(hash_suffix("default/kubernetes:httpstcp"), "NPX46M4PTMTKRN6Y");
/// ```
pub fn hash_suffix(input: &str) -> String {
    let mut out = String::with_capacity(16);
    push_suffix(&mut out, Sha256::new_with_prefix(input.as_bytes()));
    out
}

/// Appends the 16 base32 characters of `hasher`'s digest to `out`: they
/// are the encoding of the digest's first 10 bytes (80 bits), so only
/// those are encoded.
fn push_suffix(out: &mut String, hasher: Sha256) {
    let digest = hasher.finalize();
    let mut buf = [0u8; 16];
    BASE32.encode_mut(&digest[..10], &mut buf);
    // Base32 output is ASCII.
    out.extend(buf.iter().map(|&b| char::from(b)));
}

/// The hashes of one service port's chains, its `ns/name:port` + protocol
/// hashed once: [`endpoint_chain`] and [`service_port_suffix`] without
/// formatting the service port's name again for each endpoint.
///
/// ```
/// use kpinspect_core::mode::iptables::names::{ServicePortHasher, endpoint_chain};
/// use kpinspect_core::proxy::ServicePortName;
/// let name = ServicePortName {
///     namespace: "ns1".into(), name: "svc1".into(), port: "p80".into(),
///     protocol: kpinspect_core::model::Protocol::Tcp,
/// };
/// let h = ServicePortHasher::new(&name);
/// assert_eq!(h.endpoint_chain("10.180.0.1:80"), endpoint_chain(&name, "10.180.0.1:80"));
/// assert_eq!(h.suffix(), "XPGD46QRK7WJZT7O");
/// ```
#[derive(Clone)]
pub struct ServicePortHasher {
    prefix: Sha256,
}

impl ServicePortHasher {
    /// The hasher of `name`'s chains.
    pub fn new(name: &ServicePortName) -> ServicePortHasher {
        let mut prefix = Sha256::new();
        prefix.update(name.namespace.as_bytes());
        prefix.update(b"/");
        prefix.update(name.name.as_bytes());
        if !name.port.is_empty() {
            prefix.update(b":");
            prefix.update(name.port.as_bytes());
        }
        prefix.update(name.protocol.as_str().as_bytes());
        ServicePortHasher { prefix }
    }

    /// [`service_port_suffix`].
    pub fn suffix(&self) -> String {
        let mut out = String::with_capacity(16);
        push_suffix(&mut out, self.prefix.clone());
        out
    }

    /// [`endpoint_chain`] of `endpoint` (`ip:port`).
    pub fn endpoint_chain(&self, endpoint: &str) -> String {
        let mut hasher = self.prefix.clone();
        hasher.update(endpoint.as_bytes());
        let mut out = String::with_capacity(25);
        out.push_str("KUBE-SEP-");
        push_suffix(&mut out, hasher);
        out
    }
}

/// The suffix shared by a service port's SVC, SVL, EXT and FW chains:
/// hash of `ns/name:port` + lower-case protocol.
pub fn service_port_suffix(name: &ServicePortName) -> String {
    hash_suffix(&format!(
        "{}{}",
        name.to_kube_string(),
        name.protocol.as_str()
    ))
}

/// `KUBE-SEP-` chain of an endpoint (`ip:port`) of a service port.
pub fn endpoint_chain(name: &ServicePortName, endpoint: &str) -> String {
    format!(
        "KUBE-SEP-{}",
        hash_suffix(&format!(
            "{}{}{}",
            name.to_kube_string(),
            name.protocol.as_str(),
            endpoint
        ))
    )
}

/// Prefixes of the per-service chains kube-proxy's iptables mode creates and
/// deletes when stale.
pub const SERVICE_CHAIN_PREFIXES: [&str; 5] = [
    "KUBE-SVC-",
    "KUBE-SVL-",
    "KUBE-EXT-",
    "KUBE-FW-",
    "KUBE-SEP-",
];

/// Whether `chain` is a per-service chain of the current iptables mode.
pub fn is_service_chain(chain: &str) -> bool {
    SERVICE_CHAIN_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// The per-service chain prefix only kube-proxy older than 1.24 created
/// (`KUBE-XLB-`, replaced by `KUBE-SVL-` and `KUBE-EXT-`).
pub const OLD_SERVICE_CHAIN_PREFIX: &str = "KUBE-XLB-";

/// The hash suffix of a per-service chain of any generation
/// (`KUBE-SEP-ABC` → `ABC`).
///
/// ```
/// use kpinspect_core::mode::iptables::names::service_chain_suffix;
/// assert_eq!(service_chain_suffix("KUBE-XLB-ABC"), Some("ABC"));
/// assert_eq!(service_chain_suffix("KUBE-SERVICES"), None);
/// ```
pub fn service_chain_suffix(chain: &str) -> Option<&str> {
    SERVICE_CHAIN_PREFIXES
        .iter()
        .chain(std::iter::once(&OLD_SERVICE_CHAIN_PREFIX))
        .find_map(|p| chain.strip_prefix(p))
}

/// Whether `chain` is a per-service chain of an older iptables mode.
pub fn is_old_service_chain(chain: &str) -> bool {
    chain.starts_with(OLD_SERVICE_CHAIN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of verified hashes in the iptables-mode reference (§1.5).
    #[test]
    fn known_hashes() {
        let cases = [
            ("ns1/svc1:p80tcp", "XPGD46QRK7WJZT7O"),
            ("ns2/svc2:p80tcp", "GNZBNJ2PO5MGZ6GT"),
            ("ns2/svc2:p8080tcp", "2VJB64SDSIJUP5T6"),
            ("ns5/svc5:p80tcp", "NUKIZ6OKUXPJNT4C"),
            ("ns4/svc4:p8082tcp", "EBDQOQU5SJFXRIL3"),
            ("ns1/svc1tcp", "AQI2S6QIMU7PVVRP"),
            ("ns1/svc1:p80udp", "OJWW7NSBVZTDHXNW"),
            ("ns1/svc1:p80sctp", "GFCIFIA5VTFSTMSM"),
            ("kube-system/kube-dns:dnsudp", "TCOU7JCQXEZGVUNU"),
            ("kube-system/kube-dns:dns-tcptcp", "ERIFXISQEP7F7OF4"),
            ("ns1/svc1:p80tcp10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
            ("ns5/svc5:p80tcp10.180.0.3:80", "I77PXRDZVX7PMWMN"),
            ("ns1/svc1:p80tcp10.0.0.0:80", "DKGQUZGBKLTPAR56"),
            ("ns3/svc3:p8081tcp203.0.113.4:8081", "RUVVH7YV3PHQBDOS"),
            ("ns1/svc1:p80tcp[fd00:10:180::1]:80", "OGYCNMB4EMRUSJ6N"),
        ];
        for (input, want) in cases {
            assert_eq!(hash_suffix(input), want, "{input}");
        }
    }

    #[test]
    fn sep_chain() {
        let name = ServicePortName {
            namespace: "ns1".into(),
            name: "svc1".into(),
            port: "p80".into(),
            protocol: crate::model::Protocol::Tcp,
        };
        assert_eq!(
            endpoint_chain(&name, "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
        assert_eq!(service_port_suffix(&name), "XPGD46QRK7WJZT7O");
    }
}

//! The node's `KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1),
//! as found in the `kube-proxy` ConfigMap.

use std::collections::BTreeMap;
use std::time::Duration;

use kpinspect_core::config::{DetectLocal, NodePortAddressesConfig, ProxyConfig, ProxyMode};
use kpinspect_core::net::parse_cidr_sloppy;
use serde::Deserialize;

use crate::error::{Ctx, LoadError};
use crate::objects::parse_documents;

/// The fields of `KubeProxyConfiguration` kpinspect honours. Unknown fields
/// are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct KubeProxyConfiguration {
    /// Where it was read from (the file, and the ConfigMap key if any): errors
    /// from [`KubeProxyConfiguration::apply_to`] name it.
    #[serde(skip)]
    pub source: String,
    /// `mode`.
    pub mode: Option<String>,
    /// `clusterCIDR` (comma-separated, one per family).
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    /// `detectLocalMode`.
    pub detect_local_mode: Option<String>,
    /// `detectLocal`.
    pub detect_local: Option<DetectLocalConfiguration>,
    /// `hostnameOverride`.
    pub hostname_override: Option<String>,
    /// `iptables`.
    pub iptables: Option<IptablesConfiguration>,
    /// `ipvs`.
    pub ipvs: Option<IpvsConfiguration>,
    /// `nftables`.
    pub nftables: Option<NftablesConfiguration>,
    /// `nodePortAddresses`: CIDRs, or `primary` alone.
    pub node_port_addresses: Option<Vec<String>>,
    /// `conntrack`.
    pub conntrack: Option<ConntrackConfiguration>,
    /// `featureGates`.
    pub feature_gates: Option<BTreeMap<String, bool>>,
}

/// `detectLocal`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DetectLocalConfiguration {
    /// `bridgeInterface`.
    pub bridge_interface: Option<String>,
    /// `interfaceNamePrefix`.
    pub interface_name_prefix: Option<String>,
}

/// `iptables`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IptablesConfiguration {
    /// `masqueradeBit` (default 14).
    pub masquerade_bit: Option<i64>,
    /// `masqueradeAll`.
    pub masquerade_all: Option<bool>,
    /// `localhostNodePorts` (default true).
    pub localhost_node_ports: Option<bool>,
}

/// `ipvs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpvsConfiguration {
    /// `scheduler`.
    pub scheduler: Option<String>,
    /// `strictARP`.
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    /// `excludeCIDRs`.
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    /// `tcpTimeout` (a Go duration, e.g. `900s`).
    pub tcp_timeout: Option<String>,
    /// `tcpFinTimeout` (a Go duration).
    pub tcp_fin_timeout: Option<String>,
    /// `udpTimeout` (a Go duration).
    pub udp_timeout: Option<String>,
}

/// `nftables`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NftablesConfiguration {
    /// `masqueradeBit` (default 14).
    pub masquerade_bit: Option<i64>,
    /// `masqueradeAll`.
    pub masquerade_all: Option<bool>,
}

/// `conntrack`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConntrackConfiguration {
    /// `tcpBeLiberal`.
    pub tcp_be_liberal: Option<bool>,
}

/// Reads a `KubeProxyConfiguration`, or the `kube-proxy` ConfigMap holding
/// one under `data["config.conf"]`.
///
/// ```
/// let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: 10.244.0.0/16\n";
/// let kpc = kpinspect_k8s::parse_kube_proxy_config(text, "kube-proxy.yaml").unwrap();
/// let mut config = kpinspect_core::config::ProxyConfig::default();
/// kpc.apply_to(&mut config).unwrap();
/// assert_eq!(config.mode, kpinspect_core::config::ProxyMode::Ipvs);
/// assert_eq!(config.cluster_cidrs[0].to_string(), "10.244.0.0/16");
/// ```
///
/// A value kube-proxy would reject is a one-line error naming the file and
/// the field:
///
/// ```
/// let text = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnodePortAddresses: [10.0.0.0/8, 10.1.0.0/33]\n";
/// let kpc = kpinspect_k8s::parse_kube_proxy_config(text, "kube-proxy.yaml").unwrap();
/// let err = kpc.apply_to(&mut Default::default()).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "kube-proxy.yaml: KubeProxyConfiguration: nodePortAddresses[1]: invalid CIDR \"10.1.0.0/33\""
/// );
/// ```
pub fn parse_kube_proxy_config(
    text: &str,
    file: &str,
) -> Result<KubeProxyConfiguration, LoadError> {
    let docs = parse_documents(text, file)?;
    let mut docs = docs.into_iter().filter(|d| !d.is_null());
    let doc = docs.next().ok_or_else(|| LoadError {
        file: file.into(),
        object: None,
        field: None,
        message: "empty: expected a KubeProxyConfiguration".into(),
    })?;
    let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    match kind {
        "ConfigMap" => {
            let name = doc
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("?");
            let ctx = Ctx {
                file,
                object: format!("ConfigMap {name}"),
            };
            let conf = doc
                .pointer("/data/config.conf")
                .and_then(|c| c.as_str())
                .ok_or_else(|| {
                    ctx.error("data[config.conf]", "missing: not a kube-proxy ConfigMap")
                })?;
            let inner = format!("{file} (ConfigMap {name} data[config.conf])");
            parse_kube_proxy_config(conf, &inner)
        }
        "KubeProxyConfiguration" => {
            let ctx = Ctx {
                file,
                object: "KubeProxyConfiguration".into(),
            };
            let api = doc.get("apiVersion").and_then(|a| a.as_str()).unwrap_or("");
            if !api.starts_with("kubeproxy.config.k8s.io/") {
                return Err(ctx.error(
                    "apiVersion",
                    format!("{api:?} is not kubeproxy.config.k8s.io/v1alpha1"),
                ));
            }
            let mut kpc: KubeProxyConfiguration =
                serde_path_to_error::deserialize(doc).map_err(|e| {
                    let path = e.path().to_string();
                    ctx.error(
                        if path == "." { String::new() } else { path },
                        e.into_inner().to_string(),
                    )
                })?;
            kpc.source = file.to_string();
            Ok(kpc)
        }
        other => Err(LoadError {
            file: file.into(),
            object: None,
            field: Some("kind".into()),
            message: format!("{other:?} is not a KubeProxyConfiguration or kube-proxy ConfigMap"),
        }),
    }
}

impl KubeProxyConfiguration {
    /// Writes the configuration into `config`, validating values the way
    /// kube-proxy's own validation would reject them (every block, whatever
    /// the mode). Of the node facts, only the name (`hostnameOverride`) is
    /// the file's to say.
    pub fn apply_to(&self, config: &mut ProxyConfig) -> Result<(), LoadError> {
        let ctx = Ctx {
            file: &self.source,
            object: "KubeProxyConfiguration".into(),
        };
        if let Some(mode) = &self.mode {
            config.mode = match mode.as_str() {
                "" | "iptables" => ProxyMode::Iptables,
                "ipvs" => ProxyMode::Ipvs,
                "nftables" => ProxyMode::Nftables,
                other => {
                    return Err(ctx.error(
                        "mode",
                        format!("unknown mode {other:?} (expected iptables, ipvs or nftables)"),
                    ));
                }
            };
        }
        if let Some(cidrs) = self
            .cluster_cidr
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            config.cluster_cidrs = parse_cidr_list(cidrs.split(','), &ctx, "clusterCIDR")?;
        }
        let detect = self.detect_local.clone().unwrap_or_default();
        config.detect_local = match self.detect_local_mode.as_deref().unwrap_or("") {
            "" | "ClusterCIDR" => DetectLocal::ClusterCidr,
            "NodeCIDR" => DetectLocal::NodeCidr,
            "BridgeInterface" => DetectLocal::BridgeInterface(detect.bridge_interface.clone().filter(|s| !s.is_empty()).ok_or_else(|| ctx.error("detectLocal.bridgeInterface", "required by detectLocalMode BridgeInterface"))?),
            "InterfaceNamePrefix" => DetectLocal::InterfaceNamePrefix(detect.interface_name_prefix.clone().filter(|s| !s.is_empty()).ok_or_else(|| ctx.error("detectLocal.interfaceNamePrefix", "required by detectLocalMode InterfaceNamePrefix"))?),
            other => return Err(ctx.error("detectLocalMode", format!("unknown mode {other:?} (expected ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix)"))),
        };
        if let Some(host) = self
            .hostname_override
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        {
            config.node.name = host.to_lowercase();
        }
        if let Some(ipt) = &self.iptables {
            if let Some(bit) = ipt.masquerade_bit {
                config.iptables.masquerade_bit = masquerade_bit(bit, &ctx, "iptables")?;
            }
            if let Some(all) = ipt.masquerade_all {
                config.iptables.masquerade_all = all;
            }
            if let Some(l) = ipt.localhost_node_ports {
                config.iptables.localhost_node_ports = l;
            }
        }
        if let Some(addrs) = &self.node_port_addresses {
            config.node_port_addresses = parse_node_port_addresses(addrs, &ctx)?;
        }
        if let Some(ct) = &self.conntrack {
            config.conntrack.tcp_be_liberal = ct.tcp_be_liberal.unwrap_or(false);
        }
        if let Some(ipvs) = &self.ipvs {
            config.ipvs.scheduler = ipvs.scheduler.clone().unwrap_or_default();
            config.ipvs.strict_arp = ipvs.strict_arp.unwrap_or(false);
            if let Some(ex) = &ipvs.exclude_cidrs {
                config.ipvs.exclude_cidrs =
                    parse_cidr_list(ex.iter().map(String::as_str), &ctx, "ipvs.excludeCIDRs")?;
            }
            let timeouts = [
                (
                    &ipvs.tcp_timeout,
                    "ipvs.tcpTimeout",
                    &mut config.ipvs.tcp_timeout,
                ),
                (
                    &ipvs.tcp_fin_timeout,
                    "ipvs.tcpFinTimeout",
                    &mut config.ipvs.tcp_fin_timeout,
                ),
                (
                    &ipvs.udp_timeout,
                    "ipvs.udpTimeout",
                    &mut config.ipvs.udp_timeout,
                ),
            ];
            for (text, field, slot) in timeouts {
                if let Some(text) = text {
                    *slot = parse_timeout(text, &ctx, field)?;
                }
            }
        }
        if let Some(nft) = &self.nftables {
            if let Some(bit) = nft.masquerade_bit {
                config.nftables.masquerade_bit = masquerade_bit(bit, &ctx, "nftables")?;
            }
            if let Some(all) = nft.masquerade_all {
                config.nftables.masquerade_all = all;
            }
        }
        if let Some(gates) = &self.feature_gates
            && let Some(on) = gates.get("PreferSameTrafficDistribution")
        {
            config.feature_gates.prefer_same_traffic_distribution = *on;
        }
        Ok(())
    }
}

/// `nodePortAddresses` as kube-proxy validates it: `primary` alone, or
/// CIDRs; an empty list is unset (the mode's default).
fn parse_node_port_addresses(
    addrs: &[String],
    ctx: &Ctx<'_>,
) -> Result<Option<NodePortAddressesConfig>, LoadError> {
    const FIELD: &str = "nodePortAddresses";
    if let Some(i) = addrs.iter().position(|a| a == "primary") {
        if addrs.len() != 1 {
            return Err(ctx.error(
                format!("{FIELD}[{i}]"),
                "\"primary\" must be the only entry (kube-proxy: can't use both 'primary' and CIDRs)",
            ));
        }
        return Ok(Some(NodePortAddressesConfig::Primary));
    }
    if addrs.is_empty() {
        return Ok(None);
    }
    let cidrs = parse_cidr_list(addrs.iter().map(String::as_str), ctx, FIELD)?;
    Ok(Some(NodePortAddressesConfig::Cidrs(cidrs)))
}

fn parse_cidr_list<'a>(
    items: impl Iterator<Item = &'a str>,
    ctx: &Ctx<'_>,
    field: &str,
) -> Result<Vec<kpinspect_core::net::IpNet>, LoadError> {
    let mut out = Vec::new();
    for (i, item) in items.enumerate() {
        let net = parse_cidr_sloppy(item.trim())
            .ok_or_else(|| ctx.error(format!("{field}[{i}]"), format!("invalid CIDR {item:?}")))?;
        out.push(net);
    }
    Ok(out)
}

/// `<block>.masqueradeBit`, within kube-proxy's range.
fn masquerade_bit(bit: i64, ctx: &Ctx<'_>, block: &str) -> Result<u32, LoadError> {
    u32::try_from(bit).ok().filter(|b| *b <= 31).ok_or_else(|| {
        ctx.error(
            format!("{block}.masqueradeBit"),
            format!("{bit} is out of range (0-31)"),
        )
    })
}

/// An IPVS timeout: a Go duration (`metav1.Duration`), not negative.
fn parse_timeout(text: &str, ctx: &Ctx<'_>, field: &str) -> Result<Duration, LoadError> {
    match parse_go_duration(text) {
        Some((false, d)) => Ok(d),
        Some((true, d)) if d.is_zero() => Ok(d),
        Some((true, _)) => Err(ctx.error(field, format!("{text:?} is negative"))),
        None => Err(ctx.error(
            field,
            format!("invalid duration {text:?} (expected e.g. 900s, 1m30s or 0)"),
        )),
    }
}

/// Go's `time.ParseDuration`: an optional sign, then `0` or a sequence of
/// decimal numbers with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), as
/// (negative, magnitude). `None` when it is not a duration or overflows.
fn parse_go_duration(text: &str) -> Option<(bool, Duration)> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Some((negative, Duration::ZERO));
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, after) = rest.split_at(int_len);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => a.split_at(a.bytes().take_while(u8::is_ascii_digit).count()),
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        total = total.checked_add(int.checked_mul(nanos)?)?;
        // Like Go, digits beyond what can matter are dropped.
        let frac = &frac[..frac.len().min(20)];
        if !frac.is_empty() {
            let scale = 10u128.pow(frac.len() as u32);
            total = total.checked_add(frac.parse::<u128>().ok()? * nanos / scale)?;
        }
        rest = after;
    }
    // Go's Duration is an int64 of nanoseconds.
    if total > i64::MAX as u128 + u128::from(negative) {
        return None;
    }
    Some((negative, Duration::from_nanos(total as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpinspect_core::config::LocalDetector;
    use kpinspect_core::mode::iptables::masquerade_mark;
    use kpinspect_core::net::IpFamily;

    fn apply(text: &str) -> Result<ProxyConfig, LoadError> {
        let kpc = parse_kube_proxy_config(text, "c.yaml")?;
        let mut config = ProxyConfig::default();
        kpc.apply_to(&mut config)?;
        Ok(config)
    }

    const HEAD: &str =
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";

    fn cidrs(list: &[&str]) -> Option<NodePortAddressesConfig> {
        Some(NodePortAddressesConfig::Cidrs(
            list.iter().map(|c| c.parse().expect("cidr")).collect(),
        ))
    }

    #[test]
    fn reads_the_honoured_fields() {
        let c = apply(&format!(
            "{HEAD}mode: ipvs\nclusterCIDR: 10.244.0.0/16,fd00:10::/64\nhostnameOverride: ' Node-1 '\niptables: {{masqueradeBit: 15, masqueradeAll: true, localhostNodePorts: false}}\nnodePortAddresses: [192.168.0.0/24]\nconntrack: {{tcpBeLiberal: true}}\nipvs: {{scheduler: wrr, strictARP: true, excludeCIDRs: [10.1.0.0/16], tcpTimeout: 15m, tcpFinTimeout: 1m30s, udpTimeout: 300ms}}\nfeatureGates: {{PreferSameTrafficDistribution: false}}\n"
        ))
        .expect("valid");
        assert_eq!(c.mode, ProxyMode::Ipvs);
        assert_eq!(c.node.name, "node-1");
        assert_eq!(c.iptables.masquerade_bit, 15);
        assert_eq!(masquerade_mark(&c), "0x00008000");
        assert!(c.iptables.masquerade_all && !c.iptables.localhost_node_ports);
        assert!(c.conntrack.tcp_be_liberal && c.tcp_be_liberal());
        assert_eq!(
            c.local_detector(IpFamily::V6),
            Some(LocalDetector::Cidr("fd00:10::/64".parse().expect("cidr")))
        );
        assert_eq!(c.node_port_addresses, cidrs(&["192.168.0.0/24"]));
        assert_eq!(c.ipvs.scheduler, "wrr");
        assert!(c.ipvs.strict_arp);
        assert_eq!(c.ipvs.exclude_cidrs[0].to_string(), "10.1.0.0/16");
        assert_eq!(c.ipvs.tcp_timeout, Duration::from_secs(900));
        assert_eq!(c.ipvs.tcp_fin_timeout, Duration::from_secs(90));
        assert_eq!(c.ipvs.udp_timeout, Duration::from_millis(300));
        assert!(!c.feature_gates.prefer_same_traffic_distribution);
        assert_eq!(c.nftables, Default::default(), "no nftables block");
    }

    #[test]
    fn reads_the_nftables_block() {
        let c = apply(&format!(
            "{HEAD}mode: nftables\niptables: {{masqueradeBit: 15}}\nnftables: {{masqueradeBit: 13, masqueradeAll: true, syncPeriod: 30s}}\n"
        ))
        .expect("valid");
        assert_eq!(c.mode, ProxyMode::Nftables);
        assert_eq!(
            (c.nftables.masquerade_bit, c.nftables.masquerade_all),
            (13, true)
        );
        assert_eq!(
            (c.iptables.masquerade_bit, c.iptables.masquerade_all),
            (15, false),
            "the blocks are separate"
        );
        let c = apply(&format!("{HEAD}nftables: {{}}\n")).expect("valid");
        assert_eq!(
            (c.nftables.masquerade_bit, c.nftables.masquerade_all),
            (14, false)
        );
        let err = apply(&format!("{HEAD}nftables: {{masqueradeBit: -1}}\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.yaml: KubeProxyConfiguration: nftables.masqueradeBit: -1 is out of range (0-31)"
        );
        let err = apply(&format!("{HEAD}nftables: {{masqueradeAll: maybe}}\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("nftables.masqueradeAll"));
    }

    #[test]
    fn node_port_addresses() {
        let unset = apply(HEAD).expect("valid");
        assert_eq!(unset.node_port_addresses, None);
        assert_eq!(
            unset.node_port_addresses_config(),
            NodePortAddressesConfig::All
        );
        let c = apply(&format!("{HEAD}nodePortAddresses: []\n")).expect("valid");
        assert_eq!(
            c.node_port_addresses, None,
            "empty is unset, as in kube-proxy"
        );
        let c = apply(&format!("{HEAD}nodePortAddresses: null\n")).expect("valid");
        assert_eq!(c.node_port_addresses, None);
        let c = apply(&format!("{HEAD}mode: nftables\n")).expect("valid");
        assert_eq!(
            c.node_port_addresses_config(),
            NodePortAddressesConfig::Primary,
            "nftables mode defaults to primary"
        );
        let c = apply(&format!(
            "{HEAD}mode: nftables\nnodePortAddresses: [0.0.0.0/0]\n"
        ))
        .expect("valid");
        assert_eq!(
            c.node_port_addresses_config(),
            cidrs(&["0.0.0.0/0"]).unwrap()
        );
        let c = apply(&format!("{HEAD}nodePortAddresses: [primary]\n")).expect("primary is valid");
        assert_eq!(
            c.node_port_addresses,
            Some(NodePortAddressesConfig::Primary)
        );
        // Sloppy CIDRs and surrounding blanks are read as kube-proxy reads them.
        let c = apply(&format!(
            "{HEAD}nodePortAddresses: [' 192.168.000.1/24 ', '2001:db8::/64', 127.0.0.1/32]\n"
        ))
        .expect("valid");
        assert_eq!(
            c.node_port_addresses,
            cidrs(&["192.168.0.0/24", "2001:db8::/64", "127.0.0.1/32"])
        );
    }

    #[test]
    fn node_port_address_errors() {
        let one_line = |yaml: &str| apply(&format!("{HEAD}{yaml}\n")).unwrap_err().to_string();
        assert_eq!(
            one_line("nodePortAddresses: [10.0.0.0/8, not-a-cidr]"),
            "c.yaml: KubeProxyConfiguration: nodePortAddresses[1]: invalid CIDR \"not-a-cidr\""
        );
        assert_eq!(
            one_line("nodePortAddresses: [10.0.0.1]"),
            "c.yaml: KubeProxyConfiguration: nodePortAddresses[0]: invalid CIDR \"10.0.0.1\""
        );
        assert_eq!(
            one_line("nodePortAddresses: [10.0.0.0/8, primary]"),
            "c.yaml: KubeProxyConfiguration: nodePortAddresses[1]: \"primary\" must be the only entry (kube-proxy: can't use both 'primary' and CIDRs)"
        );
        assert!(one_line("nodePortAddresses: [primary, primary]").contains("nodePortAddresses[0]"));
        assert!(one_line("nodePortAddresses: [Primary]").contains("invalid CIDR \"Primary\""));
        assert!(one_line("nodePortAddresses: 10.0.0.0/8").contains("nodePortAddresses"));
    }

    #[test]
    fn ipvs_timeouts() {
        let timeout = |v: &str| {
            apply(&format!("{HEAD}ipvs: {{tcpTimeout: '{v}'}}\n")).map(|c| c.ipvs.tcp_timeout)
        };
        assert_eq!(timeout("0"), Ok(Duration::ZERO));
        assert_eq!(timeout("0s"), Ok(Duration::ZERO));
        assert_eq!(timeout("-0s"), Ok(Duration::ZERO));
        assert_eq!(timeout("1h2m3.5s"), Ok(Duration::from_millis(3_723_500)));
        assert_eq!(timeout(".5us"), Ok(Duration::from_nanos(500)));
        assert_eq!(timeout("1\u{b5}s"), Ok(Duration::from_micros(1)));
        let c = apply(HEAD).expect("valid");
        assert_eq!(
            c.ipvs.tcp_timeout,
            Duration::ZERO,
            "unset keeps the system's"
        );
        for bad in ["", "5", "5 s", "1d", ".s", "s", "--1s", "9999999999h"] {
            let err = timeout(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("ipvs.tcpTimeout"), "{bad:?}");
            assert!(err.message.contains("invalid duration"), "{bad:?}: {err}");
        }
        assert_eq!(
            timeout("-1s").unwrap_err().to_string(),
            "c.yaml: KubeProxyConfiguration: ipvs.tcpTimeout: \"-1s\" is negative"
        );
    }

    #[test]
    fn detectors() {
        let c = apply(&format!("{HEAD}detectLocalMode: InterfaceNamePrefix\ndetectLocal: {{interfaceNamePrefix: veth}}\n")).expect("valid");
        assert_eq!(
            c.local_detector(IpFamily::V4),
            Some(LocalDetector::InterfacePrefix("veth".into()))
        );
        let c = apply(&format!(
            "{HEAD}detectLocalMode: BridgeInterface\ndetectLocal: {{bridgeInterface: cbr0}}\n"
        ))
        .expect("valid");
        assert_eq!(
            c.local_detector(IpFamily::V6),
            Some(LocalDetector::Interface("cbr0".into()))
        );
        let err = apply(&format!("{HEAD}detectLocalMode: BridgeInterface\n")).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("detectLocal.bridgeInterface"));
        let c = apply(HEAD).expect("valid");
        assert_eq!(
            c.local_detector(IpFamily::V4),
            None,
            "no clusterCIDR: no detector"
        );
    }

    #[test]
    fn reads_the_configmap() {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-proxy, namespace: kube-system}\ndata:\n  config.conf: |\n    apiVersion: kubeproxy.config.k8s.io/v1alpha1\n    kind: KubeProxyConfiguration\n    mode: bogus\n";
        let err = apply(cm).unwrap_err();
        assert_eq!(err.file, "c.yaml (ConfigMap kube-proxy data[config.conf])");
        assert_eq!(err.field.as_deref(), Some("mode"));
    }

    #[test]
    fn rejects_invalid_values() {
        assert!(apply(&format!("{HEAD}iptables: {{masqueradeBit: 32}}\n")).is_err());
        assert!(apply(&format!("{HEAD}nodePortAddresses: [not-a-cidr]\n")).is_err());
        assert!(apply(&format!("{HEAD}iptables: {{masqueradeAll: maybe}}\n")).is_err());
        assert!(apply("apiVersion: v1\nkind: Pod\n").is_err());
        let c = apply(&format!("{HEAD}nodePortAddresses: [primary]\n")).expect("primary is valid");
        assert_eq!(
            c.node_port_addresses,
            Some(NodePortAddressesConfig::Primary)
        );
    }
}

//! What kube-proxy would learn about the live node at start-up, filled into
//! the configuration where the flags left it open (`apply`, `diff` and
//! `dump --cluster` on a live node; `compile` stays a function of its
//! inputs and flags). Every fact is reported in one line, so a dry run and
//! a diff say what they assumed.

use std::net::IpAddr;

use anyhow::Result;
use kpinspect_core::config::{NodePortAddressesConfig, ProxyConfig};
use kpinspect_core::model::Cluster;
use kpinspect_node::{
    GivenFacts, HostProbe, LiveNode, NfAcct, NodeIps, SystemHost, SystemNfAcct, detect_host_facts,
};

use crate::UsageError;
use crate::args::NodeArgs;

/// One line per fact: `node IPs: 192.168.50.10 (detected)`.
pub type FactLines = Vec<String>;

/// Fills `config` with the live node's facts the flags did not give, and
/// says what it found.
pub fn detect(args: &NodeArgs, config: &mut ProxyConfig, node: &LiveNode) -> Result<FactLines> {
    let host = SystemHost {
        iptables: format!("iptables-{}", node.backend()),
        ..SystemHost::default()
    };
    detect_with(args, config, &host, &SystemNfAcct)
}

fn given(flag: &str) -> String {
    format!("(given: {flag})")
}

fn detect_with(
    args: &NodeArgs,
    config: &mut ProxyConfig,
    host: &impl HostProbe,
    acct: &impl NfAcct,
) -> Result<FactLines> {
    // With `--node-ip`, the node IPs are not detected: no `ip` run.
    let node_ips = (!args.node_ips.is_empty()).then(|| NodeIps {
        v4: config.node.ips.iter().copied().find(IpAddr::is_ipv4),
        v6: config.node.ips.iter().copied().find(IpAddr::is_ipv6),
    });
    let facts = detect_host_facts(
        host,
        GivenFacts {
            node_ips,
            ..GivenFacts::default()
        },
    )
    .map_err(|e| UsageError::msg(e.to_string()))?;
    let mut lines = Vec::new();
    let name_source = if args.hostname.is_some() {
        given("--hostname")
    } else if config.node.name != facts.node_name {
        "(hostnameOverride)".to_string()
    } else {
        "(detected: the hostname)".to_string()
    };
    lines.push(format!("node name: {} {name_source}", config.node.name));

    if args.node_ips.is_empty() {
        // kubelet's node IPs first (the primary of each family), then the
        // node's other addresses, which nodePortAddresses CIDRs match.
        let mut ips: Vec<IpAddr> = [facts.node_ips.v4, facts.node_ips.v6]
            .into_iter()
            .flatten()
            .collect();
        let primaries = ips.clone();
        if let Ok(local) = kpinspect_node::local_addresses() {
            for ip in local {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        config.node.ips = ips;
        let shown: Vec<String> = primaries.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "node IPs: {} (detected: kubelet's rule, the address of the default route's interface)",
            if shown.is_empty() {
                "none".into()
            } else {
                shown.join(", ")
            }
        ));
    } else {
        let shown: Vec<String> = config.node.ips.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "node IPs: {} {}",
            shown.join(", "),
            given("--node-ip")
        ));
    }

    if let Some(liberal) = facts.tcp_be_liberal {
        config.node.tcp_be_liberal = liberal;
    }
    lines.push(format!(
        "nf_conntrack_tcp_be_liberal: {} (detected{})",
        u8::from(config.node.tcp_be_liberal),
        if facts.tcp_be_liberal.is_none() {
            ": not present, taken as 0"
        } else {
            ""
        }
    ));

    if args.no_random_fully {
        lines.push(format!(
            "MASQUERADE --random-fully: no {}",
            given("--no-random-fully")
        ));
    } else {
        config.node.random_fully = facts.random_fully();
        let version = facts
            .iptables
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "unknown".into());
        lines.push(format!(
            "MASQUERADE --random-fully: {} (detected: iptables {version})",
            if config.node.random_fully {
                "yes"
            } else {
                "no"
            }
        ));
    }

    if args.no_nfacct {
        lines.push(format!(
            "nfacct counters: not used {}",
            given("--no-nfacct")
        ));
    } else {
        match acct.list() {
            Ok(_) => {
                config.node.nfacct = true;
                lines.push("nfacct counters: supported (detected)".into());
            }
            Err(e) => {
                config.node.nfacct = false;
                lines.push(format!(
                    "nfacct counters: unsupported (detected: {e}); rules without -m nfacct"
                ));
            }
        }
    }
    Ok(lines)
}

/// What is wrong when `nodePortAddresses` selects node IPs and none of the
/// node's (non-loopback) addresses is selected: every NodePort would be
/// disabled. `apply` refuses it without `--force`; `diff` warns.
pub fn node_port_addresses_problem(config: &ProxyConfig) -> Option<String> {
    let selected = |ip: &IpAddr| {
        !ip.is_loopback()
            && match config.node_port_addresses_config() {
                NodePortAddressesConfig::All | NodePortAddressesConfig::Primary => true,
                NodePortAddressesConfig::Cidrs(c) => c.iter().any(|c| c.contains(ip)),
            }
    };
    let needs = match config.node_port_addresses_config() {
        NodePortAddressesConfig::All => false,
        NodePortAddressesConfig::Primary => true,
        NodePortAddressesConfig::Cidrs(c) => c.iter().all(|c| c.prefix_len() != 0),
    };
    (needs && !config.node.ips.iter().any(selected)).then(|| {
        "nodePortAddresses selects node IPs, but none of the node's addresses is selected (none given with --node-ip or found on this node): every NodePort would be disabled".to_string()
    })
}

/// A warning when no endpoint of the input runs on the node while others
/// name their node: the node name is probably wrong (every
/// externalTrafficPolicy Local service would drop its traffic).
pub fn node_name_warning(cluster: &Cluster, node_name: &str) -> Option<String> {
    let named: Vec<&str> = cluster
        .endpoint_slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter_map(|e| e.node_name.as_deref())
        .collect();
    (!named.is_empty() && !named.contains(&node_name)).then(|| {
        format!(
            "no endpoint runs on node {node_name:?}; is --hostname (or hostnameOverride) right?"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpinspect_core::model::{AddressType, Endpoint, EndpointSlice};

    fn slice(nodes: &[Option<&str>]) -> EndpointSlice {
        EndpointSlice {
            namespace: "ns".into(),
            name: "s-1".into(),
            service_name: "s".into(),
            address_type: AddressType::Ipv4,
            ports: vec![],
            endpoints: nodes
                .iter()
                .map(|n| Endpoint {
                    address: Some("10.0.0.1".parse().unwrap()),
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: n.map(String::from),
                    zone_hints: vec![],
                    node_hints: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_name_no_endpoint_has_is_warned_about() {
        let mut c = Cluster::default();
        assert_eq!(node_name_warning(&c, "a"), None, "no endpoints");
        c.endpoint_slices.push(slice(&[None]));
        assert_eq!(node_name_warning(&c, "a"), None, "no node names at all");
        c.endpoint_slices.push(slice(&[Some("b"), Some("c")]));
        assert!(
            node_name_warning(&c, "a").is_some_and(|w| w.contains("node \"a\"")),
            "a is nowhere"
        );
        assert_eq!(node_name_warning(&c, "c"), None);
    }

    #[test]
    fn node_port_addresses_need_node_ips() {
        let mut config = ProxyConfig::default();
        assert_eq!(node_port_addresses_problem(&config), None);
        config.node_port_addresses = Some(NodePortAddressesConfig::Primary);
        let e = node_port_addresses_problem(&config).expect("no node IPs");
        assert!(e.contains("every NodePort would be disabled"), "{e}");
        config.node.ips.push("127.0.0.1".parse().unwrap());
        assert!(
            node_port_addresses_problem(&config).is_some(),
            "loopback is not a node IP"
        );
        config.node_port_addresses = Some(NodePortAddressesConfig::Cidrs(vec![
            "0.0.0.0/0".parse().unwrap(),
        ]));
        assert_eq!(
            node_port_addresses_problem(&config),
            None,
            "/0 is every address"
        );
        config.node_port_addresses = Some(NodePortAddressesConfig::Cidrs(vec![
            "192.168.50.0/24".parse().unwrap(),
        ]));
        assert!(node_port_addresses_problem(&config).is_some());
        config.node.ips.push("10.0.0.1".parse().unwrap());
        assert!(
            node_port_addresses_problem(&config).is_some(),
            "not in the CIDR"
        );
        config.node.ips.push("192.168.50.10".parse().unwrap());
        assert_eq!(node_port_addresses_problem(&config), None);
    }
}

//! Removing IPVS mode's state besides its iptables rules and ipsets: the
//! virtual servers provably kube-proxy's, the addresses of `kube-ipvs0`
//! and the link itself (only if it is a dummy link).
//!
//! A virtual server is kube-proxy's when its address is bound on
//! `kube-ipvs0`, or it is one of the node's addresses with a port in the
//! node-port range; any other (keepalived's, ...) is kept and reported.
//! [`plan_ipvs_cleanup`] reads and plans, [`IpvsCleanup::write`] removes;
//! virtual servers go before the iptables rules, the ipsets last (the
//! iptables cleanup's order).
//!
//! ```
//! use kpinspect_core::mode::ipvs::DEFAULT_NODE_PORT_RANGE;
//! use kpinspect_node::{MemoryNode, plan_ipvs_cleanup};
//!
//! let node = MemoryNode::new();
//! let planned = plan_ipvs_cleanup(&node, &[], DEFAULT_NODE_PORT_RANGE, None).unwrap();
//! assert!(planned.is_empty());
//! assert_eq!(planned.to_string(), "");
//! ```

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;

use kpinspect_core::mode::ipvs::ServiceKey;
use kpinspect_core::net::IpFamily;

use crate::ipvs_sync::{IpvsSyncError, service_of_key, virtual_server};
use crate::{DummyLink, Ipvs, IpvsError, KUBE_IPVS0};

/// What an IPVS cleanup removes and keeps. Its `Display` lists it, one line
/// each (`would remove virtual server TCP 10.96.0.10:53`, `kept virtual
/// server …: why`); empty when there is no IPVS state at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpvsCleanup {
    /// Virtual servers to delete (kube-proxy's).
    pub services: Vec<ServiceKey>,
    /// Virtual servers left alone (not provably kube-proxy's).
    pub kept_services: Vec<ServiceKey>,
    /// Addresses of `kube-ipvs0` to unbind (or that go with the link).
    pub addresses: Vec<IpAddr>,
    /// Whether `kube-ipvs0` is deleted.
    pub delete_link: bool,
    /// Why `kube-ipvs0` is kept, when it exists and is not deleted.
    pub kept_link: Option<String>,
    /// Whether the plan has been written (its `Display` says `removed`).
    pub written: bool,
}

impl IpvsCleanup {
    /// Whether nothing would be removed.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.addresses.is_empty() && !self.delete_link
    }

    /// The commands a dry run shows (`ipvsadm -D -t …`, `ip addr del …`,
    /// `ip link del kube-ipvs0`), one a line; empty when nothing goes.
    pub fn commands(&self) -> String {
        let mut out = String::new();
        if self.is_empty() {
            return out;
        }
        out.push_str("# ipvsadm / ip\n");
        for k in &self.services {
            let switch = match k.protocol {
                kpinspect_core::model::Protocol::Tcp => "-t",
                kpinspect_core::model::Protocol::Udp => "-u",
                kpinspect_core::model::Protocol::Sctp => "--sctp-service",
            };
            let addr = std::net::SocketAddr::new(k.address, k.port);
            out.push_str(&format!("ipvsadm -D {switch} {addr}\n"));
        }
        if self.delete_link {
            out.push_str(&format!("ip link del {KUBE_IPVS0}\n"));
        } else {
            for a in &self.addresses {
                out.push_str(&format!("ip addr del {a} dev {KUBE_IPVS0}\n"));
            }
        }
        out
    }

    /// Deletes the virtual servers, then unbinds the addresses or deletes
    /// `kube-ipvs0`. A virtual server or link gone meanwhile is no error.
    pub fn write<N: Ipvs + DummyLink + ?Sized>(
        mut self,
        node: &N,
    ) -> Result<IpvsCleanup, IpvsSyncError> {
        for k in &self.services {
            match node.del_service(&service_of_key(k)) {
                Ok(()) | Err(IpvsError::NoService { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.delete_link {
            match node.delete_link(KUBE_IPVS0) {
                Ok(()) | Err(crate::LinkError::NoSuchLink { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            for a in &self.addresses {
                node.del_address(KUBE_IPVS0, *a)?;
            }
        }
        self.written = true;
        Ok(self)
    }
}

/// Reads IPVS and `kube-ipvs0` and plans their cleanup: of `family`'s
/// state, or with `None` of both. `node_ips` are the node's addresses and
/// `node_port_range` the cluster's node-port range (what proves a virtual
/// server on a node address kube-proxy's). No IPVS in the kernel counts as
/// no virtual server.
pub fn plan_ipvs_cleanup<N: Ipvs + DummyLink + ?Sized>(
    node: &N,
    node_ips: &[IpAddr],
    node_port_range: RangeInclusive<u16>,
    family: Option<IpFamily>,
) -> Result<IpvsCleanup, IpvsSyncError> {
    let of_family = |ip: &IpAddr| family.is_none_or(|f| IpFamily::of(ip) == f);
    let link = node.link(KUBE_IPVS0)?;
    let bound = match &link {
        Some(_) => node.addresses(KUBE_IPVS0)?,
        None => Vec::new(),
    };
    let services = match node.services() {
        Ok(s) => s,
        Err(IpvsError::NotAvailable) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut out = IpvsCleanup::default();
    for s in &services {
        let Some(vs) = virtual_server(s, &[]) else {
            continue;
        };
        if !of_family(&vs.address) {
            continue;
        }
        let key = ServiceKey::of(&vs);
        let owned = bound.contains(&vs.address)
            || (node_ips.contains(&vs.address) && node_port_range.contains(&vs.port));
        if owned {
            out.services.push(key);
        } else {
            out.kept_services.push(key);
        }
    }
    out.services.sort();
    out.kept_services.sort();
    if let Some(link) = link {
        let is_dummy = link.kind.as_deref() == Some("dummy");
        if !is_dummy {
            out.kept_link = Some(format!(
                "it is not a dummy link (kind {})",
                link.kind.as_deref().unwrap_or("none")
            ));
        } else {
            out.addresses = bound.iter().copied().filter(|a| of_family(a)).collect();
            // The link goes when nothing of another family stays on it.
            if bound.iter().all(of_family) {
                out.delete_link = true;
            } else {
                out.kept_link = Some("it holds addresses of the other family".into());
            }
        }
    }
    Ok(out)
}

impl fmt::Display for IpvsCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.written {
            "removed"
        } else {
            "would remove"
        };
        for k in &self.services {
            writeln!(f, "{verb} virtual server {k}")?;
        }
        for a in &self.addresses {
            writeln!(f, "{verb} address {a} of {KUBE_IPVS0}")?;
        }
        if self.delete_link {
            writeln!(f, "{verb} link {KUBE_IPVS0}")?;
        }
        for k in &self.kept_services {
            writeln!(
                f,
                "kept virtual server {k}: not provably kube-proxy's (its address is not on {KUBE_IPVS0}, nor a node address with a node port)"
            )?;
        }
        if let Some(why) = &self.kept_link {
            writeln!(f, "kept link {KUBE_IPVS0}: {why}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use kpinspect_core::mode::ipvs::{DEFAULT_NODE_PORT_RANGE, Ownership, compile};
    use kpinspect_core::model::Protocol;
    use kpinspect_ipvs::{IPPROTO_TCP, Service};

    use super::*;
    use crate::{MemoryNode, apply_ipvs};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn add(node: &MemoryNode, addr: &str, port: u16) {
        node.new_service(
            &Service::new(IPPROTO_TCP, SocketAddr::new(ip(addr), port)).scheduler("rr"),
        )
        .expect("service");
    }

    fn key(addr: &str, port: u16) -> ServiceKey {
        ServiceKey {
            address: ip(addr),
            protocol: Protocol::Tcp,
            port,
        }
    }

    /// kube-proxy's servers (bound address, node IP + node port) go with
    /// kube-ipvs0; a keepalived-style server stays and is reported.
    #[test]
    fn removes_only_kube_proxys_servers_and_the_link() {
        let config = kpinspect_core::config::ProxyConfig::default();
        let state = kpinspect_core::proxy::ProxyState::build(
            &kpinspect_core::model::Cluster::default(),
            &config,
            IpFamily::V4,
        );
        let mut desired = compile(&state, &config);
        desired.addresses = vec![ip("10.96.0.10").into()];
        let node = MemoryNode::new();
        apply_ipvs(&node, &desired, &Ownership::default()).expect("apply");
        add(&node, "10.96.0.10", 80);
        add(&node, "192.0.2.2", 30080);
        add(&node, "192.0.2.2", 80);
        add(&node, "198.51.100.7", 443);
        let node_ips = [ip("192.0.2.2")];
        let planned =
            plan_ipvs_cleanup(&node, &node_ips, DEFAULT_NODE_PORT_RANGE, None).expect("plan");
        assert_eq!(
            planned.services,
            [key("10.96.0.10", 80), key("192.0.2.2", 30080)]
        );
        assert_eq!(
            planned.kept_services,
            [key("192.0.2.2", 80), key("198.51.100.7", 443)]
        );
        assert_eq!(planned.addresses, [ip("10.96.0.10")]);
        assert!(planned.delete_link);
        assert!(planned.commands().contains("ipvsadm -D -t 10.96.0.10:80\n"));
        assert!(
            planned
                .to_string()
                .starts_with("would remove virtual server")
        );
        let done = planned.write(&node).expect("write");
        assert!(
            done.to_string()
                .contains(&format!("removed link {KUBE_IPVS0}\n"))
        );
        assert!(
            done.to_string()
                .contains("kept virtual server 198.51.100.7:443/TCP: not provably")
        );
        assert_eq!(node.link(KUBE_IPVS0).expect("link"), None);
        let left: Vec<_> = node
            .services()
            .expect("services")
            .iter()
            .filter_map(|s| virtual_server(s, &[]))
            .map(|v| ServiceKey::of(&v))
            .collect();
        assert_eq!(left, [key("192.0.2.2", 80), key("198.51.100.7", 443)]);
        // A second cleanup finds nothing of kube-proxy's.
        let again =
            plan_ipvs_cleanup(&node, &node_ips, DEFAULT_NODE_PORT_RANGE, None).expect("plan");
        assert!(again.is_empty());
        assert_eq!(again.commands(), "");
    }

    /// One family's cleanup leaves the link while the other's addresses
    /// are on it.
    #[test]
    fn one_family_unbinds_its_addresses_only() {
        let node = MemoryNode::new();
        node.ensure_dummy(KUBE_IPVS0).expect("link");
        node.add_address(KUBE_IPVS0, ip("10.96.0.10"))
            .expect("bind");
        node.add_address(KUBE_IPVS0, ip("fd00::10")).expect("bind");
        let planned = plan_ipvs_cleanup(&node, &[], DEFAULT_NODE_PORT_RANGE, Some(IpFamily::V4))
            .expect("plan");
        assert_eq!(planned.addresses, [ip("10.96.0.10")]);
        assert!(!planned.delete_link);
        planned.write(&node).expect("write");
        assert_eq!(node.addresses(KUBE_IPVS0).expect("addrs"), [ip("fd00::10")]);
    }
}

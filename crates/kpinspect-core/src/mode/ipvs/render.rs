//! IPVS-mode state as the tools print it: `ipvsadm -Sn` (loadable with
//! `ipvsadm -R`), `ipset save` (loadable with `ipset restore`), and the
//! addresses of `kube-ipvs0`.

use std::fmt::Write as _;

use super::{IpSet, ServiceFlags, VirtualServer};
use crate::model::Protocol;
use crate::net::{IpNet, join_host_port};

/// `ipvsadm -Sn` of `servers`, in `ipvsadm`'s order: one `-A` line per
/// virtual server, then one `-a` line per real server.
///
/// ```
/// use kpinspect_core::mode::ipvs::{ipvsadm_save, RealServer, Scheduler, ServiceFlags, VirtualServer, VirtualServerKind};
/// use kpinspect_core::model::Protocol;
/// use kpinspect_core::proxy::ServicePortName;
/// let vs = VirtualServer {
///     address: "10.96.0.1".parse().unwrap(),
///     protocol: Protocol::Tcp,
///     port: 443,
///     scheduler: Scheduler::default(),
///     flags: ServiceFlags(ServiceFlags::PERSISTENT),
///     timeout: 10800,
///     kind: Some(VirtualServerKind::ClusterIp),
///     service: Some(ServicePortName {
///         namespace: "default".into(), name: "kubernetes".into(), port: "https".into(), protocol: Protocol::Tcp,
///     }),
///     bind: true,
///     real_servers: vec![RealServer::new("192.168.0.2".parse().unwrap(), 6443)],
/// };
/// assert_eq!(
///     ipvsadm_save([&vs]),
///     "-A -t 10.96.0.1:443 -s rr -p 10800\n-a -t 10.96.0.1:443 -r 192.168.0.2:6443 -m -w 1\n"
/// );
/// ```
pub fn ipvsadm_save<'a>(servers: impl IntoIterator<Item = &'a VirtualServer>) -> String {
    let mut servers: Vec<&VirtualServer> = servers.into_iter().collect();
    servers.sort_by(|a, b| a.ipvsadm_cmp(b));
    let mut out = String::new();
    for vs in servers {
        let switch = match vs.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
            Protocol::Sctp => "--sctp-service",
        };
        let svc = format!("{switch} {}", join_host_port(&vs.address, vs.port));
        let _ = write!(out, "-A {svc} -s {}", vs.scheduler);
        if vs.flags.persistent() {
            let _ = write!(out, " -p {}", vs.timeout);
        }
        let sched_flags = sched_flag_names(vs);
        if !sched_flags.is_empty() {
            let _ = write!(out, " -b {}", sched_flags.join(","));
        }
        out.push('\n');
        let mut rs: Vec<_> = vs.real_servers.iter().collect();
        rs.sort_by_key(|r| (r.address, r.port));
        for r in rs {
            let _ = writeln!(
                out,
                "-a {svc} -r {} {} -w {}",
                join_host_port(&r.address, r.port),
                r.forward.save_switch(),
                r.weight
            );
        }
    }
    out
}

/// `ipvsadm`'s names of the scheduler flags kube-proxy may set
/// (`-b mh-port` for the `mh` scheduler's source-port hashing).
fn sched_flag_names(vs: &VirtualServer) -> Vec<String> {
    let mut names = Vec::new();
    if vs.flags.0 & ServiceFlags::SOURCE_HASH != 0 {
        names.push(match vs.scheduler.name() {
            "sh" => "sh-port".to_string(),
            "mh" => "mh-port".to_string(),
            _ => "flag-2".to_string(),
        });
    }
    names
}

/// `ipset save` of `sets` without the kernel's own options (`bucketsize`,
/// `initval`): for each set its `create` line, then an `add` line per
/// member. `ipset restore` loads it.
///
/// ```
/// use kpinspect_core::mode::ipvs::{ipset_save, IpSet, IpSetEntry, IpSetType};
/// use kpinspect_core::net::IpFamily;
/// let set = IpSet {
///     name: "KUBE-NODE-PORT-TCP".into(),
///     set_type: IpSetType::BitmapPort,
///     family: IpFamily::V4,
///     comment: "Kubernetes nodeport TCP port for masquerade purpose",
///     entries: vec![IpSetEntry::Port(30080)],
/// };
/// assert_eq!(
///     ipset_save([&set]),
///     "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\nadd KUBE-NODE-PORT-TCP 30080\n"
/// );
/// ```
pub fn ipset_save<'a>(sets: impl IntoIterator<Item = &'a IpSet>) -> String {
    let mut out = String::new();
    for set in sets {
        let _ = writeln!(
            out,
            "create {} {} {}",
            set.name,
            set.set_type,
            set.create_options()
        );
        for e in &set.entries {
            let _ = writeln!(out, "add {} {e}", set.name);
        }
    }
    out
}

/// The addresses of `kube-ipvs0`, one CIDR per line.
///
/// ```
/// let addrs = ["10.96.0.1/32".parse().unwrap(), "fd00::1/128".parse().unwrap()];
/// assert_eq!(kpinspect_core::mode::ipvs::address_lines(&addrs), "10.96.0.1/32\nfd00::1/128\n");
/// ```
pub fn address_lines(addresses: &[IpNet]) -> String {
    let mut out = String::new();
    for a in addresses {
        let _ = writeln!(out, "{a}");
    }
    out
}

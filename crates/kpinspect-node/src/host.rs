//! The facts about the host that kube-proxy detects rather than reads from
//! its configuration: the node name, the node IPs, whether conntrack is
//! liberal about TCP windows, and whether iptables can `--random-fully`.
//!
//! * **Node name**: `hostnameOverride`, else the kernel hostname
//!   (`/proc/sys/kernel/hostname`), trimmed and lower-cased; empty is an
//!   error (kube-proxy's `GetHostname`).
//! * **Node IPs**: kube-proxy takes them from its Node object, where
//!   kubelet put them; kubelet without `--node-ip` (and without a cloud
//!   provider or an IP-looking hostname) picks, per IP family, the first
//!   global unicast address of an up interface that holds a default route
//!   of that family (`/proc/net/route`, `/proc/net/ipv6_route`), else a
//!   global address on an up loopback interface; IPv4 first
//!   (apimachinery's `ChooseHostInterface`). [`choose_node_ips`] is that
//!   rule; kube-proxy falls back to `127.0.0.1` / `::1` when it has none.
//! * **`nf_conntrack_tcp_be_liberal`**: when set, kube-proxy installs no
//!   rule dropping `INVALID` packets.
//! * **`--random-fully`**: iptables 1.6.2 or later (from `iptables
//!   --version`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use kpinspect_core::net::IpFamily;
use thiserror::Error;

use crate::error::{NodeError, classify_failure};
use crate::system::find_program;

/// The sysctl kube-proxy reads before installing its `INVALID` drop rule
/// (as a path under `/proc/sys`).
pub const TCP_BE_LIBERAL_SYSCTL: &str = "net/netfilter/nf_conntrack_tcp_be_liberal";

/// The first iptables release with `MASQUERADE --random-fully`.
pub const RANDOM_FULLY_MIN_VERSION: (u32, u32, u32) = (1, 6, 2);

/// A failure to detect a host fact.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HostFactsError {
    /// The node name (override or kernel hostname) is empty once trimmed.
    #[error("empty hostname is invalid")]
    EmptyHostname,
    /// A file could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        message: String,
    },
    /// A line of a kernel table or tool output is not what it should be.
    #[error("{source_name}: unexpected line {line:?}")]
    Parse {
        /// Where the line comes from (`/proc/net/route`, `ip -o link show`).
        source_name: String,
        /// The line.
        line: String,
    },
    /// A boolean sysctl holds something else than 0 or 1.
    #[error("sysctl {name}: unexpected value {value:?}")]
    Sysctl {
        /// The sysctl (path under `/proc/sys`).
        name: String,
        /// Its value.
        value: String,
    },
    /// `iptables --version` printed no version.
    #[error("no iptables version in {output:?}")]
    IptablesVersion {
        /// What it printed.
        output: String,
    },
    /// A tool (`ip`, `iptables`) failed.
    #[error(transparent)]
    Command(#[from] NodeError),
}

/// An iptables release, as `iptables --version` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IptablesVersion {
    /// `1` of `v1.8.9`.
    pub major: u32,
    /// `8` of `v1.8.9`.
    pub minor: u32,
    /// `9` of `v1.8.9` (0 when absent).
    pub patch: u32,
    /// The variant in parentheses (`nf_tables`, `legacy`), if printed.
    pub variant: Option<String>,
}

impl std::fmt::Display for IptablesVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(v) = &self.variant {
            write!(f, " ({v})")?;
        }
        Ok(())
    }
}

impl IptablesVersion {
    /// Reads `iptables --version` output (`iptables v1.8.9 (nf_tables)`,
    /// `ip6tables v1.6.1`), as kube-proxy does: the first `v` followed by
    /// dotted numbers.
    ///
    /// ```
    /// use kpinspect_node::IptablesVersion;
    ///
    /// let v = IptablesVersion::parse("iptables v1.8.9 (nf_tables)\n").unwrap();
    /// assert_eq!((v.major, v.minor, v.patch), (1, 8, 9));
    /// assert_eq!(v.variant.as_deref(), Some("nf_tables"));
    /// assert!(v.supports_random_fully());
    /// assert!(!IptablesVersion::parse("iptables v1.6.1").unwrap().supports_random_fully());
    /// ```
    pub fn parse(output: &str) -> Result<IptablesVersion, HostFactsError> {
        let bad = || HostFactsError::IptablesVersion {
            output: output.trim().to_string(),
        };
        let words: Vec<&str> = output.split_whitespace().collect();
        let (at, numbers) = words
            .iter()
            .enumerate()
            .find_map(|(i, w)| {
                let n = w.strip_prefix('v')?;
                let parts: Vec<u32> = n
                    .split('.')
                    .map(|p| p.parse().ok())
                    .collect::<Option<_>>()?;
                (parts.len() >= 2).then_some((i, parts))
            })
            .ok_or_else(bad)?;
        let variant = words
            .get(at + 1)
            .and_then(|w| w.strip_prefix('('))
            .and_then(|w| w.split(')').next())
            .map(String::from);
        Ok(IptablesVersion {
            major: numbers[0],
            minor: numbers[1],
            patch: numbers.get(2).copied().unwrap_or(0),
            variant,
        })
    }

    /// Whether this iptables has `MASQUERADE --random-fully` (1.6.2 on).
    pub fn supports_random_fully(&self) -> bool {
        (self.major, self.minor, self.patch) >= RANDOM_FULLY_MIN_VERSION
    }
}

/// A network interface as the node-IP choice sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// A loopback interface (`IFF_LOOPBACK`).
    pub loopback: bool,
    /// Its addresses, in the kernel's order.
    pub addresses: Vec<IpAddr>,
}

/// A default route (destination `0.0.0.0/0` or `::/0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// Its family.
    pub family: IpFamily,
    /// The interface it leaves through.
    pub interface: String,
    /// Its gateway.
    pub gateway: IpAddr,
}

/// The node's IPs per family, as kubelet reports them without `--node-ip`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeIps {
    /// The IPv4 node IP.
    pub v4: Option<IpAddr>,
    /// The IPv6 node IP.
    pub v6: Option<IpAddr>,
}

impl NodeIps {
    /// The node IP of `family`.
    pub fn get(&self, family: IpFamily) -> Option<IpAddr> {
        match family {
            IpFamily::V4 => self.v4,
            IpFamily::V6 => self.v6,
        }
    }

    /// The primary node IP: IPv4 when there is one, else IPv6.
    pub fn primary(&self) -> Option<IpAddr> {
        self.v4.or(self.v6)
    }
}

/// Go's `net.IP.IsGlobalUnicast`: not unspecified, loopback, multicast,
/// link-local or the IPv4 broadcast address (private ranges are global).
pub fn is_global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || *v4 == Ipv4Addr::BROADCAST)
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unicast_link_local())
        }
    }
}

/// kubelet's node IP per family (apimachinery's `chooseHostInterfaceFromRoute`
/// restricted to one family): for each default route of the family in
/// order, the first global unicast address of that family on its
/// interface if the interface is up, else the first such address on an up
/// loopback interface.
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::{DefaultRoute, Interface, choose_node_ips};
///
/// let eth0 = Interface {
///     name: "eth0".into(),
///     up: true,
///     loopback: false,
///     addresses: vec!["fe80::1".parse().unwrap(), "192.168.0.2".parse().unwrap()],
/// };
/// let route = DefaultRoute {
///     family: IpFamily::V4,
///     interface: "eth0".into(),
///     gateway: "192.168.0.1".parse().unwrap(),
/// };
/// let ips = choose_node_ips(&[route], &[eth0]);
/// assert_eq!(ips.primary(), Some("192.168.0.2".parse().unwrap()));
/// assert_eq!(ips.v6, None);
/// ```
pub fn choose_node_ips(routes: &[DefaultRoute], interfaces: &[Interface]) -> NodeIps {
    let pick = |family: IpFamily| -> Option<IpAddr> {
        let global = |i: &Interface| {
            i.addresses
                .iter()
                .find(|a| IpFamily::of(a) == family && is_global_unicast(a))
                .copied()
        };
        routes.iter().filter(|r| r.family == family).find_map(|r| {
            interfaces
                .iter()
                .find(|i| i.name == r.interface && i.up)
                .and_then(global)
                .or_else(|| {
                    interfaces
                        .iter()
                        .filter(|i| i.up && i.loopback)
                        .find_map(global)
                })
        })
    };
    NodeIps {
        v4: pick(IpFamily::V4),
        v6: pick(IpFamily::V6),
    }
}

/// The node name kube-proxy derives: `hostname_override` when given, else
/// `kernel_hostname`; trimmed and lower-cased, never empty.
///
/// ```
/// use kpinspect_node::node_name;
///
/// assert_eq!(node_name(None, "Worker-1\n").unwrap(), "worker-1");
/// assert_eq!(node_name(Some(" Node-A "), "ignored").unwrap(), "node-a");
/// assert!(node_name(Some("  "), "worker-1").is_err());
/// ```
pub fn node_name(
    hostname_override: Option<&str>,
    kernel_hostname: &str,
) -> Result<String, HostFactsError> {
    let name = match hostname_override {
        Some(o) if !o.is_empty() => o,
        _ => kernel_hostname,
    }
    .trim();
    if name.is_empty() {
        return Err(HostFactsError::EmptyHostname);
    }
    Ok(name.to_lowercase())
}

/// A `0`/`1` sysctl value (a trailing newline allowed).
pub fn parse_sysctl_bool(name: &str, value: &str) -> Result<bool, HostFactsError> {
    match value.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        other => Err(HostFactsError::Sysctl {
            name: name.into(),
            value: other.into(),
        }),
    }
}

fn parse_error(source_name: &str, line: &str) -> HostFactsError {
    HostFactsError::Parse {
        source_name: source_name.into(),
        line: line.into(),
    }
}

/// The default routes of `/proc/net/route` (IPv4; destination and gateway
/// in little-endian hex), in file order.
pub fn parse_proc_net_route(text: &str) -> Result<Vec<DefaultRoute>, HostFactsError> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Iface"))
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex4 = |s: &str| -> Option<Ipv4Addr> {
            let n = u32::from_str_radix(s, 16).ok().filter(|_| s.len() == 8)?;
            Some(Ipv4Addr::from(n.swap_bytes()))
        };
        let (Some(name), Some(dst), Some(gw)) = (
            fields.first(),
            fields.get(1).and_then(|s| hex4(s)),
            fields.get(2).and_then(|s| hex4(s)),
        ) else {
            return Err(parse_error("/proc/net/route", line));
        };
        if dst.is_unspecified() {
            out.push(DefaultRoute {
                family: IpFamily::V4,
                interface: (*name).into(),
                gateway: gw.into(),
            });
        }
    }
    Ok(out)
}

/// The default routes of `/proc/net/ipv6_route` (destination `::/0` with a
/// gateway; the gateway-less `::/0` routes are the kernel's unreachable
/// placeholders), in file order.
pub fn parse_proc_net_ipv6_route(text: &str) -> Result<Vec<DefaultRoute>, HostFactsError> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let hex16 = |s: &str| -> Option<Ipv6Addr> {
            let n = u128::from_str_radix(s, 16).ok().filter(|_| s.len() == 32)?;
            Some(Ipv6Addr::from(n))
        };
        let (Some(dst), Some(gw), Some(name)) = (
            fields.first().and_then(|s| hex16(s)),
            fields.get(4).and_then(|s| hex16(s)),
            fields.get(9),
        ) else {
            return Err(parse_error("/proc/net/ipv6_route", line));
        };
        if dst.is_unspecified() && !gw.is_unspecified() {
            out.push(DefaultRoute {
                family: IpFamily::V6,
                interface: (*name).into(),
                gateway: gw.into(),
            });
        }
    }
    Ok(out)
}

/// The interfaces of `ip -o link show` (`2: eth0@if5: <BROADCAST,UP,...>`)
/// with the addresses of `ip -o addr show` (`2: eth0    inet 10.0.0.1/24
/// ...`), in the kernel's order.
pub fn parse_ip_link_and_addr(link: &str, addr: &str) -> Result<Vec<Interface>, HostFactsError> {
    let mut out: Vec<Interface> = Vec::new();
    for line in link.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(_index), Some(name), Some(flags)) = (words.next(), words.next(), words.next())
        else {
            return Err(parse_error("ip -o link show", line));
        };
        let name = name.trim_end_matches(':');
        let name = name.split('@').next().unwrap_or(name);
        let Some(flags) = flags.strip_prefix('<').and_then(|f| f.strip_suffix('>')) else {
            return Err(parse_error("ip -o link show", line));
        };
        let flags: Vec<&str> = flags.split(',').collect();
        out.push(Interface {
            name: name.into(),
            up: flags.contains(&"UP"),
            loopback: flags.contains(&"LOOPBACK"),
            addresses: Vec::new(),
        });
    }
    for line in addr.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(kind), Some(cidr)) = (words.get(1), words.get(2), words.get(3))
        else {
            return Err(parse_error("ip -o addr show", line));
        };
        if *kind != "inet" && *kind != "inet6" {
            continue;
        }
        let ip: IpAddr = cidr
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| parse_error("ip -o addr show", line))?;
        if let Some(i) = out.iter_mut().find(|i| i.name == *name) {
            i.addresses.push(ip);
        }
    }
    Ok(out)
}

/// Where [`detect_host_facts`] reads the host: the raw inputs, each from
/// the kernel or a tool.
pub trait HostProbe {
    /// The kernel hostname (`/proc/sys/kernel/hostname`), as read.
    fn kernel_hostname(&self) -> Result<String, HostFactsError>;

    /// The network interfaces with their addresses.
    fn interfaces(&self) -> Result<Vec<Interface>, HostFactsError>;

    /// The default routes of both families, IPv4 first, each in the
    /// kernel's order.
    fn default_routes(&self) -> Result<Vec<DefaultRoute>, HostFactsError>;

    /// A sysctl of this network namespace by its path under `/proc/sys`
    /// (`net/netfilter/nf_conntrack_tcp_be_liberal`); `None` when it does
    /// not exist (e.g. nf_conntrack not loaded).
    fn sysctl(&self, name: &str) -> Result<Option<String>, HostFactsError>;

    /// What `iptables --version` prints; `None` when iptables is not
    /// installed.
    fn iptables_version(&self) -> Result<Option<String>, HostFactsError>;
}

/// What kube-proxy would detect about this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The node name.
    pub node_name: String,
    /// The node IPs.
    pub node_ips: NodeIps,
    /// `net.netfilter.nf_conntrack_tcp_be_liberal`, `None` when the sysctl
    /// does not exist.
    pub tcp_be_liberal: Option<bool>,
    /// The iptables release, `None` when iptables is not installed.
    pub iptables: Option<IptablesVersion>,
}

impl HostFacts {
    /// Whether kube-proxy would add `--random-fully` to its MASQUERADE rule.
    pub fn random_fully(&self) -> bool {
        self.iptables
            .as_ref()
            .is_some_and(IptablesVersion::supports_random_fully)
    }
}

/// Facts given instead of detected, as kube-proxy's flags give them: what
/// is given here is not read from the host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GivenFacts<'a> {
    /// kube-proxy's `hostnameOverride`: the node name, not the kernel's
    /// hostname.
    pub hostname_override: Option<&'a str>,
    /// The node IPs (kpinspect's `--node-ip`): no interface or default
    /// route is read.
    pub node_ips: Option<NodeIps>,
}

/// Detects the host facts from `probe` (see the module documentation for
/// each rule), but for those `given`.
///
/// ```
/// use kpinspect_node::{GivenFacts, HostInputs, MemoryNode, detect_host_facts};
///
/// let node = MemoryNode::new().with_host(HostInputs {
///     hostname: "Worker-1\n".into(),
///     iptables_version: Some("iptables v1.8.9 (legacy)\n".into()),
///     ..HostInputs::default()
/// });
/// let facts = detect_host_facts(&node, GivenFacts::default()).unwrap();
/// assert_eq!(facts.node_name, "worker-1");
/// assert_eq!(facts.node_ips.primary(), None);
/// assert_eq!(facts.tcp_be_liberal, None);
/// assert!(facts.random_fully());
/// ```
pub fn detect_host_facts(
    probe: &impl HostProbe,
    given: GivenFacts<'_>,
) -> Result<HostFacts, HostFactsError> {
    let node_name = match given.hostname_override {
        Some(o) if !o.is_empty() => node_name(Some(o), "")?,
        _ => node_name(None, &probe.kernel_hostname()?)?,
    };
    let node_ips = match given.node_ips {
        Some(ips) => ips,
        None => choose_node_ips(&probe.default_routes()?, &probe.interfaces()?),
    };
    let tcp_be_liberal = probe
        .sysctl(TCP_BE_LIBERAL_SYSCTL)?
        .map(|v| parse_sysctl_bool(TCP_BE_LIBERAL_SYSCTL, &v))
        .transpose()?;
    let iptables = probe
        .iptables_version()?
        .map(|v| IptablesVersion::parse(&v))
        .transpose()?;
    Ok(HostFacts {
        node_name,
        node_ips,
        tcp_be_liberal,
        iptables,
    })
}

/// The real host: `/proc` of this process (so the network namespace it
/// runs in), `ip` and `iptables` run by argument vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemHost {
    /// The proc file system (`/proc`).
    pub proc_root: PathBuf,
    /// The iptables program asked for its version (`iptables`, or a
    /// backend's `iptables-nft` / `iptables-legacy`).
    pub iptables: String,
}

impl Default for SystemHost {
    fn default() -> SystemHost {
        SystemHost {
            proc_root: PathBuf::from("/proc"),
            iptables: "iptables".into(),
        }
    }
}

impl SystemHost {
    /// The file at `relative` under the proc root; `None` when absent.
    fn read(&self, relative: &str) -> Result<Option<String>, HostFactsError> {
        let path = self.proc_root.join(relative);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(HostFactsError::Read {
                path,
                message: e.to_string(),
            }),
        }
    }

    fn read_required(&self, relative: &str) -> Result<String, HostFactsError> {
        self.read(relative)?.ok_or_else(|| HostFactsError::Read {
            path: self.proc_root.join(relative),
            message: "no such file".into(),
        })
    }
}

impl HostProbe for SystemHost {
    fn kernel_hostname(&self) -> Result<String, HostFactsError> {
        self.read_required("sys/kernel/hostname")
    }

    /// `ip -o link show` and `ip -o addr show`.
    fn interfaces(&self) -> Result<Vec<Interface>, HostFactsError> {
        let link = tool("ip", &["-o", "link", "show"])?;
        let addr = tool("ip", &["-o", "addr", "show"])?;
        match (link, addr) {
            (Some(link), Some(addr)) => parse_ip_link_and_addr(&link, &addr),
            _ => Err(NodeError::Missing {
                program: "ip".into(),
            }
            .into()),
        }
    }

    /// `net/route` and `net/ipv6_route` (the latter optional, as for
    /// kubelet).
    fn default_routes(&self) -> Result<Vec<DefaultRoute>, HostFactsError> {
        let mut routes = parse_proc_net_route(&self.read_required("net/route")?)?;
        if let Some(v6) = self.read("net/ipv6_route")? {
            routes.extend(parse_proc_net_ipv6_route(&v6)?);
        }
        Ok(routes)
    }

    fn sysctl(&self, name: &str) -> Result<Option<String>, HostFactsError> {
        self.read(&format!("sys/{}", name.trim_start_matches('/')))
    }

    fn iptables_version(&self) -> Result<Option<String>, HostFactsError> {
        tool(&self.iptables, &["--version"])
    }
}

/// Runs `program args...` (no shell, `LC_ALL=C`); its stdout, `None` when
/// the program is not installed.
fn tool(program: &str, args: &[&str]) -> Result<Option<String>, HostFactsError> {
    let Some(path) = find_program(program) else {
        return Ok(None);
    };
    let out = Command::new(path)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NodeError::Io {
            program: program.into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(classify_failure(program, out.status.code(), &stderr, false).into());
    }
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The raw host inputs a [`crate::MemoryNode`] answers [`HostProbe`] with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInputs {
    /// The kernel hostname, as read (newline included or not).
    pub hostname: String,
    /// The interfaces.
    pub interfaces: Vec<Interface>,
    /// The default routes.
    pub default_routes: Vec<DefaultRoute>,
    /// Sysctls by path under `/proc/sys`.
    pub sysctls: BTreeMap<String, String>,
    /// `iptables --version` output; `None`: not installed.
    pub iptables_version: Option<String>,
}

impl HostProbe for HostInputs {
    fn kernel_hostname(&self) -> Result<String, HostFactsError> {
        Ok(self.hostname.clone())
    }

    fn interfaces(&self) -> Result<Vec<Interface>, HostFactsError> {
        Ok(self.interfaces.clone())
    }

    fn default_routes(&self) -> Result<Vec<DefaultRoute>, HostFactsError> {
        Ok(self.default_routes.clone())
    }

    fn sysctl(&self, name: &str) -> Result<Option<String>, HostFactsError> {
        Ok(self.sysctls.get(name).cloned())
    }

    fn iptables_version(&self) -> Result<Option<String>, HostFactsError> {
        Ok(self.iptables_version.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    // Real files and tool output (a Debian 12 VM, kernel 6.18, iproute2
    // 6.1), with a veth line from a test namespace.
    const PROC_NET_ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT                                                       \n\
        eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0                                                                               \n\
        eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0                                                                               \n";
    const PROC_NET_IPV6_ROUTE: &str = "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n\
        00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n\
        00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n";
    const IP_LINK: &str = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
        2: ifb0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 32\\    link/ether ce:4e:60:4e:44:53 brd ff:ff:ff:ff:ff:ff\n\
        4: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc pfifo_fast state UP mode DEFAULT group default qlen 1000\\    link/ether 02:fc:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n\
        5: veth0@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 2a:1b:3c:4d:5e:6f brd ff:ff:ff:ff:ff:ff link-netns kpn-b\n";
    const IP_ADDR: &str = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
        1: lo    inet6 ::1/128 scope host \\       valid_lft forever preferred_lft forever\n\
        2: ifb0    inet 198.51.100.7/24 scope global ifb0\\       valid_lft forever preferred_lft forever\n\
        4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever\n\
        4: eth0    inet6 fd00::2/64 scope global nodad \\       valid_lft forever preferred_lft forever\n\
        4: eth0    inet6 fe80::fc:ff:fe00:1/64 scope link \\       valid_lft forever preferred_lft forever\n\
        5: veth0    inet 10.0.0.1/24 scope global veth0\\       valid_lft forever preferred_lft forever\n";

    #[test]
    fn default_routes_from_proc() {
        assert_eq!(
            parse_proc_net_route(PROC_NET_ROUTE).expect("route"),
            [DefaultRoute {
                family: IpFamily::V4,
                interface: "eth0".into(),
                gateway: ip("192.0.2.1"),
            }]
        );
        // The gateway-less ::/0 on lo is the kernel's unreachable route.
        assert_eq!(
            parse_proc_net_ipv6_route(PROC_NET_IPV6_ROUTE).expect("route"),
            [DefaultRoute {
                family: IpFamily::V6,
                interface: "eth0".into(),
                gateway: ip("fd00::1"),
            }]
        );
        assert!(parse_proc_net_route("eth0\tXYZ\n").is_err());
        assert!(parse_proc_net_ipv6_route("00 00\n").is_err());
        assert_eq!(parse_proc_net_route(""), Ok(vec![]));
    }

    #[test]
    fn interfaces_from_ip() {
        let ifs = parse_ip_link_and_addr(IP_LINK, IP_ADDR).expect("interfaces");
        let names: Vec<&str> = ifs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "ifb0", "eth0", "veth0"]);
        assert!(ifs[0].up && ifs[0].loopback);
        assert!(!ifs[1].up && !ifs[1].loopback);
        assert_eq!(
            ifs[2].addresses,
            [ip("192.0.2.2"), ip("fd00::2"), ip("fe80::fc:ff:fe00:1")]
        );
        assert_eq!(ifs[3].addresses, [ip("10.0.0.1")]);
        assert!(parse_ip_link_and_addr("1: lo\n", "").is_err());
        assert!(parse_ip_link_and_addr("", "1: lo inet nope/8\n").is_err());
    }

    #[test]
    fn node_ips_follow_kubelets_choice() {
        let ifs = parse_ip_link_and_addr(IP_LINK, IP_ADDR).expect("interfaces");
        let mut routes = parse_proc_net_route(PROC_NET_ROUTE).expect("route");
        routes.extend(parse_proc_net_ipv6_route(PROC_NET_IPV6_ROUTE).expect("route"));
        let ips = choose_node_ips(&routes, &ifs);
        assert_eq!(ips.v4, Some(ip("192.0.2.2")));
        assert_eq!(ips.v6, Some(ip("fd00::2")));
        assert_eq!(ips.primary(), ips.v4);
        assert_eq!(ips.get(IpFamily::V6), ips.v6);

        let iface = |name: &str, up: bool, loopback: bool, addrs: &[&str]| Interface {
            name: name.into(),
            up,
            loopback,
            addresses: addrs.iter().map(|a| ip(a)).collect(),
        };
        let route = |family, interface: &str, gw: &str| DefaultRoute {
            family,
            interface: interface.into(),
            gateway: ip(gw),
        };
        // A down interface is passed over for the next default route; IPv6
        // only: the primary is IPv6.
        let ifs = [
            iface("eth0", false, false, &["fd00::2"]),
            iface("eth1", true, false, &["fe80::1", "fd01::2"]),
        ];
        let routes = [
            route(IpFamily::V6, "eth0", "fd00::1"),
            route(IpFamily::V6, "eth1", "fd01::1"),
        ];
        let ips = choose_node_ips(&routes, &ifs);
        assert_eq!(
            ips,
            NodeIps {
                v4: None,
                v6: Some(ip("fd01::2"))
            }
        );
        assert_eq!(ips.primary(), Some(ip("fd01::2")));
        // Unnumbered links (RFC 5549): the global address is on lo.
        let ifs = [
            iface("lo", true, true, &["127.0.0.1", "203.0.113.9", "::1"]),
            iface("eth0", true, false, &["169.254.0.1"]),
        ];
        let ips = choose_node_ips(&[route(IpFamily::V4, "eth0", "169.254.0.2")], &ifs);
        assert_eq!(ips.v4, Some(ip("203.0.113.9")));
        // No default route, no node IP (kube-proxy assumes loopback then).
        assert_eq!(choose_node_ips(&[], &ifs), NodeIps::default());
        assert!(is_global_unicast(&ip("10.1.2.3")) && is_global_unicast(&ip("fd00::1")));
        for not in [
            "0.0.0.0",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "fe80::1",
            "ff02::1",
            "::",
        ] {
            assert!(!is_global_unicast(&ip(not)), "{not}");
        }
    }

    #[test]
    fn iptables_versions_of_both_variants() {
        let cases = [
            (
                "iptables v1.8.9 (nf_tables)\n",
                (1, 8, 9),
                Some("nf_tables"),
                true,
            ),
            (
                "iptables v1.8.9 (legacy)\n",
                (1, 8, 9),
                Some("legacy"),
                true,
            ),
            (
                "iptables v1.8.7 (nf_tables)\n",
                (1, 8, 7),
                Some("nf_tables"),
                true,
            ),
            (
                "ip6tables v1.8.10 (nf_tables)\n",
                (1, 8, 10),
                Some("nf_tables"),
                true,
            ),
            (
                "iptables v1.8.4 (legacy)\n",
                (1, 8, 4),
                Some("legacy"),
                true,
            ),
            ("iptables v1.6.2\n", (1, 6, 2), None, true),
            ("iptables v1.6.1\n", (1, 6, 1), None, false),
            ("iptables v1.4.21\n", (1, 4, 21), None, false),
            ("iptables v1.8\n", (1, 8, 0), None, true),
        ];
        for (text, (major, minor, patch), variant, random_fully) in cases {
            let v = IptablesVersion::parse(text).expect(text);
            assert_eq!((v.major, v.minor, v.patch), (major, minor, patch), "{text}");
            assert_eq!(v.variant.as_deref(), variant, "{text}");
            assert_eq!(v.supports_random_fully(), random_fully, "{text}");
        }
        for bad in [
            "",
            "iptables: command not found",
            "iptables vX.Y",
            "iptables v1",
        ] {
            assert!(IptablesVersion::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names_like_kube_proxys_get_hostname() {
        assert_eq!(
            node_name(None, "Worker-1.Example.COM\n"),
            Ok("worker-1.example.com".into())
        );
        assert_eq!(node_name(Some(""), "host"), Ok("host".into()));
        assert_eq!(node_name(Some(" NODE "), "host"), Ok("node".into()));
        assert_eq!(
            node_name(Some(" \t"), "host"),
            Err(HostFactsError::EmptyHostname)
        );
        assert_eq!(node_name(None, "\n"), Err(HostFactsError::EmptyHostname));
    }

    #[test]
    fn detection_over_inputs_and_a_proc_tree() {
        let mut inputs = HostInputs {
            hostname: "Node-7\n".into(),
            interfaces: parse_ip_link_and_addr(IP_LINK, IP_ADDR).expect("interfaces"),
            default_routes: parse_proc_net_route(PROC_NET_ROUTE).expect("route"),
            sysctls: BTreeMap::from([(TCP_BE_LIBERAL_SYSCTL.to_string(), "1\n".to_string())]),
            iptables_version: Some("iptables v1.6.1\n".into()),
        };
        let facts = detect_host_facts(&inputs, GivenFacts::default()).expect("facts");
        assert_eq!(facts.node_name, "node-7");
        assert_eq!(facts.node_ips.primary(), Some(ip("192.0.2.2")));
        assert_eq!(facts.node_ips.v6, None, "no IPv6 default route");
        assert_eq!(facts.tcp_be_liberal, Some(true));
        assert!(!facts.random_fully());
        assert_eq!(
            detect_host_facts(
                &inputs,
                GivenFacts {
                    hostname_override: Some("Other"),
                    ..GivenFacts::default()
                }
            )
            .expect("facts")
            .node_name,
            "other"
        );
        // Given node IPs are the facts' (the default route's are not).
        let given = NodeIps {
            v4: Some(ip("198.51.100.1")),
            v6: None,
        };
        let facts = detect_host_facts(
            &inputs,
            GivenFacts {
                node_ips: Some(given),
                ..GivenFacts::default()
            },
        )
        .expect("facts");
        assert_eq!(facts.node_ips, given);
        inputs
            .sysctls
            .insert(TCP_BE_LIBERAL_SYSCTL.into(), "2".into());
        assert!(matches!(
            detect_host_facts(&inputs, GivenFacts::default()),
            Err(HostFactsError::Sysctl { .. })
        ));
        inputs.sysctls.clear();
        inputs.iptables_version = Some("garbage".into());
        assert!(matches!(
            detect_host_facts(&inputs, GivenFacts::default()),
            Err(HostFactsError::IptablesVersion { .. })
        ));
        inputs.iptables_version = None;
        let facts = detect_host_facts(&inputs, GivenFacts::default()).expect("facts");
        assert_eq!((facts.tcp_be_liberal, facts.iptables.clone()), (None, None));
        assert!(!facts.random_fully());

        // A proc tree without the sysctl (nf_conntrack not loaded) and
        // without IPv6 routes.
        let root = std::env::temp_dir().join(format!("kpinspect-host-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sys/kernel")).expect("mkdir");
        std::fs::create_dir_all(root.join("net")).expect("mkdir");
        std::fs::write(root.join("sys/kernel/hostname"), "Proc-Host\n").expect("write");
        std::fs::write(root.join("net/route"), PROC_NET_ROUTE).expect("write");
        let host = SystemHost {
            proc_root: root.clone(),
            iptables: "kpinspect-no-such-iptables".into(),
        };
        assert_eq!(host.kernel_hostname(), Ok("Proc-Host\n".into()));
        assert_eq!(host.sysctl(TCP_BE_LIBERAL_SYSCTL), Ok(None));
        assert_eq!(host.default_routes().expect("routes").len(), 1);
        assert_eq!(host.iptables_version(), Ok(None));
        std::fs::write(root.join("net/ipv6_route"), PROC_NET_IPV6_ROUTE).expect("write");
        assert_eq!(host.default_routes().expect("routes").len(), 2);
        std::fs::remove_file(root.join("net/route")).expect("rm");
        assert!(matches!(
            host.default_routes(),
            Err(HostFactsError::Read { .. })
        ));
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}

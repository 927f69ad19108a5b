//! The sysctls kube-proxy's IPVS mode sets at start-up, read and written
//! under `/proc/sys` of the current network namespace.
//!
//! kube-proxy's `NewProxier` (IPVS mode) ensures, reading first and writing
//! only a different value (`proxyutil.EnsureSysctl`):
//!
//! * `net/ipv4/vs/conntrack` = 1 (IPVS keeps conntrack entries, which its
//!   iptables rules match on);
//! * `net/ipv4/vs/conn_reuse_mode` = 0 only on kernels from 4.1 (where it
//!   appeared) to before 5.9 (which fixed the 1 s delay of reused
//!   connections, kubernetes issue 93297); left alone otherwise;
//! * `net/ipv4/vs/expire_nodest_conn` = 1 and
//!   `net/ipv4/vs/expire_quiescent_template` = 1 (connections to removed
//!   real servers end instead of hanging);
//! * `net/ipv4/ip_forward` = 1;
//! * with `ipvs.strictARP`: `net/ipv4/conf/all/arp_ignore` = 1 and
//!   `net/ipv4/conf/all/arp_announce` = 2 (the node does not answer ARP
//!   for the service addresses on kube-ipvs0); never reset without it.
//!
//! It only *checks* `net/bridge/bridge-nf-call-iptables` (present once
//! `br_netfilter` is loaded) and logs when it is not 1.

use std::path::PathBuf;

use kpinspect_core::config::IpvsConfig;
use thiserror::Error;

/// A kernel's version, as far as kube-proxy compares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// `6` of `6.1.0-28-amd64`.
    pub major: u32,
    /// `1` of `6.1.0-28-amd64`.
    pub minor: u32,
    /// `0` of `6.1.0-28-amd64` (0 when absent).
    pub patch: u32,
}

impl KernelVersion {
    /// A version.
    pub const fn new(major: u32, minor: u32, patch: u32) -> KernelVersion {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    /// Parses a release as `uname -r` and `/proc/sys/kernel/osrelease`
    /// give it: the leading `MAJOR.MINOR[.PATCH]` (kube-proxy's
    /// `version.ParseGeneric` of the part before the first `-`/`+`).
    ///
    /// ```
    /// use kpinspect_node::KernelVersion;
    ///
    /// assert_eq!(KernelVersion::parse("6.1.0-28-amd64"), Some(KernelVersion::new(6, 1, 0)));
    /// assert_eq!(KernelVersion::parse("5.4\n"), Some(KernelVersion::new(5, 4, 0)));
    /// assert_eq!(KernelVersion::parse("linux"), None);
    /// ```
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let core = release
            .trim()
            .split(['-', '+', ' '])
            .next()
            .unwrap_or_default();
        let mut parts = core.split('.');
        let num = |p: Option<&str>| p.and_then(|s| s.parse::<u32>().ok());
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = match parts.next() {
            None => 0,
            some => num(some)?,
        };
        Some(KernelVersion::new(major, minor, patch))
    }
}

/// The first kernel with `net/ipv4/vs/conn_reuse_mode`.
pub const CONN_REUSE_MIN_KERNEL: KernelVersion = KernelVersion::new(4, 1, 0);
/// The first kernel kube-proxy leaves `conn_reuse_mode` alone on.
pub const CONN_REUSE_FIXED_KERNEL: KernelVersion = KernelVersion::new(5, 9, 0);

/// What kube-proxy does with a sysctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SysctlPolicy {
    /// Writes the value when it differs (start-up fails if it cannot).
    Ensure,
    /// Only reads it and warns when it differs; absent is no problem.
    CheckIfPresent,
}

/// One sysctl kube-proxy wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DesiredSysctl {
    /// Its path under `/proc/sys` (`net/ipv4/ip_forward`).
    pub name: &'static str,
    /// The value wanted.
    pub value: i64,
    /// Written or only checked.
    pub policy: SysctlPolicy,
}

impl DesiredSysctl {
    const fn ensure(name: &'static str, value: i64) -> DesiredSysctl {
        DesiredSysctl {
            name,
            value,
            policy: SysctlPolicy::Ensure,
        }
    }
}

/// The sysctls kube-proxy's IPVS mode wants on a node running `kernel`,
/// in the order it sets them.
///
/// ```
/// use kpinspect_core::config::IpvsConfig;
/// use kpinspect_node::{KernelVersion, ipvs_sysctls};
///
/// let names = |v: &[kpinspect_node::DesiredSysctl]| v.iter().map(|s| s.name).collect::<Vec<_>>();
/// let ipvs = IpvsConfig { strict_arp: true, ..IpvsConfig::default() };
/// let on_5_4 = ipvs_sysctls(&ipvs, KernelVersion::new(5, 4, 0));
/// assert!(names(&on_5_4).contains(&"net/ipv4/vs/conn_reuse_mode"));
/// assert!(names(&on_5_4).contains(&"net/ipv4/conf/all/arp_announce"));
/// let on_6_1 = ipvs_sysctls(&IpvsConfig::default(), KernelVersion::new(6, 1, 0));
/// assert!(!names(&on_6_1).contains(&"net/ipv4/vs/conn_reuse_mode"));
/// assert!(!names(&on_6_1).contains(&"net/ipv4/conf/all/arp_ignore"));
/// ```
pub fn ipvs_sysctls(ipvs: &IpvsConfig, kernel: KernelVersion) -> Vec<DesiredSysctl> {
    let mut out = vec![
        DesiredSysctl {
            name: "net/bridge/bridge-nf-call-iptables",
            value: 1,
            policy: SysctlPolicy::CheckIfPresent,
        },
        DesiredSysctl::ensure("net/ipv4/vs/conntrack", 1),
    ];
    if (CONN_REUSE_MIN_KERNEL..CONN_REUSE_FIXED_KERNEL).contains(&kernel) {
        out.push(DesiredSysctl::ensure("net/ipv4/vs/conn_reuse_mode", 0));
    }
    out.extend([
        DesiredSysctl::ensure("net/ipv4/vs/expire_nodest_conn", 1),
        DesiredSysctl::ensure("net/ipv4/vs/expire_quiescent_template", 1),
        DesiredSysctl::ensure("net/ipv4/ip_forward", 1),
    ]);
    if ipvs.strict_arp {
        out.extend([
            DesiredSysctl::ensure("net/ipv4/conf/all/arp_ignore", 1),
            DesiredSysctl::ensure("net/ipv4/conf/all/arp_announce", 2),
        ]);
    }
    out
}

/// A failure to read or write a sysctl.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SysctlError {
    /// The name is empty, absolute or climbs out of `/proc/sys`.
    #[error("invalid sysctl name {name:?}")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// The sysctl does not exist (e.g. `net/ipv4/vs/*` before `ip_vs` is
    /// loaded in this network namespace).
    #[error("sysctl {name} does not exist")]
    Missing {
        /// The sysctl.
        name: String,
    },
    /// Writing needs privileges this process lacks.
    #[error("sysctl {name}: permission denied (run as root)")]
    Permission {
        /// The sysctl.
        name: String,
    },
    /// Another I/O failure.
    #[error("sysctl {name}: {message}")]
    Io {
        /// The sysctl.
        name: String,
        /// The operating system's error.
        message: String,
    },
}

/// Sysctls of one network namespace, by path under `/proc/sys`.
pub trait Sysctls {
    /// The value of `name`, trimmed; `None` if it does not exist.
    fn read_sysctl(&self, name: &str) -> Result<Option<String>, SysctlError>;

    /// Writes `value` to `name`.
    fn write_sysctl(&self, name: &str, value: &str) -> Result<(), SysctlError>;
}

fn validate_sysctl_name(name: &str) -> Result<(), SysctlError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    if bad {
        Err(SysctlError::InvalidName { name: name.into() })
    } else {
        Ok(())
    }
}

/// `/proc/sys` of this process: its `net/` entries are those of the
/// network namespace the process is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSysctls {
    root: PathBuf,
}

impl Default for SystemSysctls {
    fn default() -> Self {
        SystemSysctls {
            root: PathBuf::from("/proc/sys"),
        }
    }
}

impl SystemSysctls {
    /// `/proc/sys`.
    pub fn new() -> SystemSysctls {
        SystemSysctls::default()
    }

    /// Sysctls under another root (a copy of `/proc/sys`, for tests).
    pub fn at(root: impl Into<PathBuf>) -> SystemSysctls {
        SystemSysctls { root: root.into() }
    }
}

fn io_error(name: &str, e: &std::io::Error) -> SysctlError {
    match e.kind() {
        std::io::ErrorKind::NotFound => SysctlError::Missing { name: name.into() },
        std::io::ErrorKind::PermissionDenied => SysctlError::Permission { name: name.into() },
        _ => SysctlError::Io {
            name: name.into(),
            message: e.to_string(),
        },
    }
}

impl Sysctls for SystemSysctls {
    fn read_sysctl(&self, name: &str) -> Result<Option<String>, SysctlError> {
        validate_sysctl_name(name)?;
        match std::fs::read_to_string(self.root.join(name)) {
            Ok(v) => Ok(Some(v.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(name, &e)),
        }
    }

    fn write_sysctl(&self, name: &str, value: &str) -> Result<(), SysctlError> {
        validate_sysctl_name(name)?;
        let path = self.root.join(name);
        // /proc/sys entries are never created: a missing one is an error.
        if !path.exists() {
            return Err(SysctlError::Missing { name: name.into() });
        }
        std::fs::write(path, value).map_err(|e| io_error(name, &e))
    }
}

/// A wanted sysctl whose value differs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SysctlDiff {
    /// The sysctl.
    pub name: &'static str,
    /// The value wanted.
    pub want: i64,
    /// The value read; `None` if the sysctl does not exist.
    pub have: Option<String>,
    /// Written or only checked.
    pub policy: SysctlPolicy,
}

impl std::fmt::Display for SysctlDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.have {
            Some(have) => write!(f, "{}: want {}, have {have}", self.name, self.want),
            None => write!(f, "{}: want {}, missing", self.name, self.want),
        }
    }
}

/// Whether `have` (as read) is the integer `want`.
fn same_value(have: &str, want: i64) -> bool {
    have.trim().parse::<i64>() == Ok(want)
}

/// The wanted sysctls whose value differs from the node's (a
/// [`SysctlPolicy::CheckIfPresent`] one only when present).
///
/// ```
/// use kpinspect_core::config::IpvsConfig;
/// use kpinspect_node::{KernelVersion, MemoryNode, Sysctls, diff_sysctls, ipvs_sysctls};
///
/// let node = MemoryNode::new();
/// node.write_sysctl("net/ipv4/ip_forward", "1").unwrap();
/// let want = ipvs_sysctls(&IpvsConfig::default(), KernelVersion::new(6, 1, 0));
/// let diff = diff_sysctls(&node, &want).unwrap();
/// assert_eq!(diff[0].to_string(), "net/ipv4/vs/conntrack: want 1, missing");
/// assert!(diff.iter().all(|d| d.name != "net/ipv4/ip_forward"));
/// ```
pub fn diff_sysctls(
    node: &impl Sysctls,
    want: &[DesiredSysctl],
) -> Result<Vec<SysctlDiff>, SysctlError> {
    let mut out = Vec::new();
    for w in want {
        let have = node.read_sysctl(w.name)?;
        let differs = match (&have, w.policy) {
            (None, SysctlPolicy::CheckIfPresent) => false,
            (None, SysctlPolicy::Ensure) => true,
            (Some(v), _) => !same_value(v, w.value),
        };
        if differs {
            out.push(SysctlDiff {
                name: w.name,
                want: w.value,
                have,
                policy: w.policy,
            });
        }
    }
    Ok(out)
}

/// What kube-proxy's start-up does: writes each [`SysctlPolicy::Ensure`]
/// sysctl whose value differs, in order, stopping at the first failure.
/// Returns what differed before (the written ones and the checked ones
/// kube-proxy would warn about).
///
/// ```
/// use kpinspect_core::config::IpvsConfig;
/// use kpinspect_node::{KernelVersion, MemoryNode, diff_sysctls, ensure_sysctls, ipvs_sysctls};
///
/// let node = MemoryNode::new();
/// let want = ipvs_sysctls(&IpvsConfig::default(), KernelVersion::new(6, 1, 0));
/// assert_eq!(ensure_sysctls(&node, &want).unwrap().len(), 4);
/// assert!(diff_sysctls(&node, &want).unwrap().is_empty());
/// ```
pub fn ensure_sysctls(
    node: &impl Sysctls,
    want: &[DesiredSysctl],
) -> Result<Vec<SysctlDiff>, SysctlError> {
    let diff = diff_sysctls(node, want)?;
    for d in &diff {
        if d.policy == SysctlPolicy::Ensure {
            node.write_sysctl(d.name, &d.want.to_string())?;
        }
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_reuse_mode_follows_the_kernel() {
        let has = |k: KernelVersion| {
            ipvs_sysctls(&IpvsConfig::default(), k)
                .iter()
                .any(|s| s.name == "net/ipv4/vs/conn_reuse_mode" && s.value == 0)
        };
        assert!(!has(KernelVersion::new(4, 0, 9)));
        assert!(has(KernelVersion::new(4, 1, 0)));
        assert!(has(KernelVersion::new(5, 8, 18)));
        assert!(!has(KernelVersion::new(5, 9, 0)));
        assert!(!has(KernelVersion::new(6, 18, 0)));
    }

    #[test]
    fn strict_arp_adds_the_arp_sysctls() {
        let ipvs = IpvsConfig {
            strict_arp: true,
            ..IpvsConfig::default()
        };
        let want = ipvs_sysctls(&ipvs, KernelVersion::new(6, 1, 0));
        let pairs: Vec<(&str, i64)> = want.iter().map(|s| (s.name, s.value)).collect();
        assert_eq!(
            pairs,
            [
                ("net/bridge/bridge-nf-call-iptables", 1),
                ("net/ipv4/vs/conntrack", 1),
                ("net/ipv4/vs/expire_nodest_conn", 1),
                ("net/ipv4/vs/expire_quiescent_template", 1),
                ("net/ipv4/ip_forward", 1),
                ("net/ipv4/conf/all/arp_ignore", 1),
                ("net/ipv4/conf/all/arp_announce", 2),
            ]
        );
    }

    #[test]
    fn kernel_versions_parse_like_kube_proxy() {
        assert_eq!(
            KernelVersion::parse("4.18.0-553.el8_10.x86_64"),
            Some(KernelVersion::new(4, 18, 0))
        );
        assert_eq!(
            KernelVersion::parse("6.18.1+deb13-amd64"),
            Some(KernelVersion::new(6, 18, 1))
        );
        assert_eq!(KernelVersion::parse("6"), None);
        assert_eq!(KernelVersion::parse(""), None);
    }

    #[test]
    fn system_sysctls_read_and_write_files() {
        let dir = std::env::temp_dir().join(format!("kpinspect-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4")).expect("mkdir");
        std::fs::write(dir.join("net/ipv4/ip_forward"), "0\n").expect("write");
        let s = SystemSysctls::at(&dir);
        assert_eq!(s.read_sysctl("net/ipv4/ip_forward"), Ok(Some("0".into())));
        assert_eq!(s.read_sysctl("net/ipv4/vs/conntrack"), Ok(None));
        s.write_sysctl("net/ipv4/ip_forward", "1").expect("write");
        assert_eq!(s.read_sysctl("net/ipv4/ip_forward"), Ok(Some("1".into())));
        assert_eq!(
            s.write_sysctl("net/ipv4/vs/conntrack", "1"),
            Err(SysctlError::Missing {
                name: "net/ipv4/vs/conntrack".into()
            })
        );
        assert!(matches!(
            s.read_sysctl("../etc/passwd"),
            Err(SysctlError::InvalidName { .. })
        ));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn checked_sysctls_differ_only_when_present() {
        struct One(Option<&'static str>);
        impl Sysctls for One {
            fn read_sysctl(&self, _: &str) -> Result<Option<String>, SysctlError> {
                Ok(self.0.map(String::from))
            }
            fn write_sysctl(&self, name: &str, _: &str) -> Result<(), SysctlError> {
                Err(SysctlError::Permission { name: name.into() })
            }
        }
        let bridge = [DesiredSysctl {
            name: "net/bridge/bridge-nf-call-iptables",
            value: 1,
            policy: SysctlPolicy::CheckIfPresent,
        }];
        assert_eq!(diff_sysctls(&One(None), &bridge), Ok(vec![]));
        assert_eq!(diff_sysctls(&One(Some("1")), &bridge), Ok(vec![]));
        let diff = ensure_sysctls(&One(Some("0")), &bridge).expect("not written");
        assert_eq!(
            diff[0].to_string(),
            "net/bridge/bridge-nf-call-iptables: want 1, have 0"
        );
        let forward = [DesiredSysctl::ensure("net/ipv4/ip_forward", 1)];
        assert_eq!(
            ensure_sysctls(&One(Some("0")), &forward),
            Err(SysctlError::Permission {
                name: "net/ipv4/ip_forward".into()
            })
        );
    }
}

//! Address parsing the way kube-proxy does it.
//!
//! Kubernetes parses addresses "sloppily" (`netutils.ParseIPSloppy`): IPv4
//! octets may carry leading zeros, which are read as decimal (`10.180.00.001`
//! is `10.180.0.1`). Everything kube-proxy writes is then re-printed in
//! canonical form, so the same must happen here before hashing or printing.

use std::net::{IpAddr, Ipv4Addr};

pub use ipnet::IpNet;

/// The IP family of an address, a CIDR, or a proxier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum IpFamily {
    /// IPv4 (`iptables`).
    #[serde(rename = "ipv4")]
    V4,
    /// IPv6 (`ip6tables`).
    #[serde(rename = "ipv6")]
    V6,
}

impl IpFamily {
    /// The family of `ip`. IPv4-mapped IPv6 addresses count as IPv4, as in Go.
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The family of a CIDR.
    pub fn of_net(net: &IpNet) -> IpFamily {
        IpFamily::of(&net.addr())
    }

    /// `IPv4` or `IPv6`, as Kubernetes spells it.
    pub fn as_k8s_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        })
    }
}

/// Parses an IP address like Kubernetes' `ParseIPSloppy`: IPv4 octets may
/// have leading zeros (read as decimal). No surrounding whitespace is allowed.
///
/// ```
/// use kpinspect_core::net::parse_ip_sloppy;
/// assert_eq!(parse_ip_sloppy("10.180.00.001").unwrap().to_string(), "10.180.0.1");
/// assert_eq!(parse_ip_sloppy("fd00:10::0001").unwrap().to_string(), "fd00:10::1");
/// assert!(parse_ip_sloppy("10.0.0.256").is_none());
/// ```
pub fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        // IPv6, possibly with an embedded (sloppy) IPv4 tail.
        if let Ok(ip) = s.parse::<std::net::Ipv6Addr>() {
            return Some(normalize_mapped(IpAddr::V6(ip)));
        }
        let (head, tail) = s.rsplit_once(':')?;
        if tail.contains('.') {
            let v4 = parse_ipv4_sloppy(tail)?;
            let rebuilt = format!("{head}:{v4}");
            return rebuilt
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(|ip| normalize_mapped(IpAddr::V6(ip)));
        }
        return None;
    }
    parse_ipv4_sloppy(s).map(IpAddr::V4)
}

/// Go prints IPv4-mapped IPv6 addresses as dotted quads.
fn normalize_mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn parse_ipv4_sloppy(s: &str) -> Option<Ipv4Addr> {
    // Four parts of one to three ASCII digits, each at most 255, in one
    // pass over the bytes (endpoint addresses are read by the hundred
    // thousand).
    let mut octets = [0u8; 4];
    let mut done = 0;
    let (mut value, mut digits) = (0u16, 0);
    for b in s.bytes() {
        match b {
            b'0'..=b'9' if digits < 3 => {
                value = value * 10 + u16::from(b - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && done < 3 && value <= 255 => {
                octets[done] = value as u8;
                done += 1;
                (value, digits) = (0, 0);
            }
            _ => return None,
        }
    }
    if done != 3 || digits == 0 || value > 255 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

/// Parses a CIDR like Kubernetes' `ParseCIDRSloppy` and returns the network
/// (host bits cleared), which is how Go's `IPNet.String()` prints it.
///
/// ```
/// use kpinspect_core::net::parse_cidr_sloppy;
/// assert_eq!(parse_cidr_sloppy("203.0.113.000/025").unwrap().to_string(), "203.0.113.0/25");
/// assert_eq!(parse_cidr_sloppy("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
/// ```
pub fn parse_cidr_sloppy(s: &str) -> Option<IpNet> {
    let (addr, prefix) = s.split_once('/')?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let ip = parse_ip_sloppy(addr)?;
    // A mapped address with an IPv6 prefix length: Go keeps the IPv4 view
    // only when the prefix is >= 96. Keep it simple and faithful for IPv4.
    IpNet::new(ip, prefix).ok().map(|n| n.trunc())
}

/// Formats `ip:port`, with brackets for IPv6 (Go's `net.JoinHostPort`).
pub fn join_host_port(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Splits `host:port` or `[host]:port` (the inverse of [`join_host_port`]);
/// the host is returned as written, without brackets.
///
/// ```
/// use kpinspect_core::net::split_host_port;
/// assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", 80)));
/// assert_eq!(split_host_port("[fd00::1]:443"), Some(("fd00::1", 443)));
/// assert_eq!(split_host_port("10.0.0.1"), None);
/// ```
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sloppy_ipv4() {
        assert_eq!(
            parse_ip_sloppy("172.30.0.041").unwrap().to_string(),
            "172.30.0.41"
        );
        assert_eq!(parse_ip_sloppy("1.2.3.004").unwrap().to_string(), "1.2.3.4");
        assert_eq!(
            parse_ip_sloppy("192.168.099.022").unwrap().to_string(),
            "192.168.99.22"
        );
        assert!(parse_ip_sloppy("1.2.3").is_none());
        assert!(parse_ip_sloppy("1.2.3.4.5").is_none());
        assert!(parse_ip_sloppy(" 1.2.3.4").is_none());
        assert!(parse_ip_sloppy("1.2.3.0004").is_none());
        assert!(parse_ip_sloppy("").is_none());
        for bad in [
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.256",
            "256.1.2.3",
            "1.2.3.4 ",
            "1.2.3.+4",
            "1.2.3.٤",
            "999.1.1.1",
            "1.2.3.4.",
        ] {
            assert!(parse_ip_sloppy(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_ip_sloppy("255.000.0.255").unwrap().to_string(),
            "255.0.0.255"
        );
        // Every dotted quad std reads, sloppy reads the same.
        for n in (0..=u32::MAX).step_by(9_999_991) {
            let ip = Ipv4Addr::from(n);
            assert_eq!(parse_ip_sloppy(&ip.to_string()), Some(IpAddr::V4(ip)));
        }
    }

    #[test]
    fn sloppy_ipv6() {
        assert_eq!(
            parse_ip_sloppy("FD00:10::1").unwrap().to_string(),
            "fd00:10::1"
        );
        assert_eq!(
            parse_ip_sloppy("::ffff:1.2.3.4").unwrap().to_string(),
            "1.2.3.4"
        );
        assert_eq!(
            parse_ip_sloppy("::1.2.3.04").unwrap().to_string(),
            "::102:304"
        );
        assert!(parse_ip_sloppy("fd00::g").is_none());
    }

    #[test]
    fn sloppy_cidr() {
        assert_eq!(
            parse_cidr_sloppy("fd00:10::/64").unwrap().to_string(),
            "fd00:10::/64"
        );
        assert_eq!(
            parse_cidr_sloppy("10.0.0.1/32").unwrap().to_string(),
            "10.0.0.1/32"
        );
        assert!(parse_cidr_sloppy("10.0.0.0/33").is_none());
        assert!(parse_cidr_sloppy("10.0.0.0").is_none());
        assert!(parse_cidr_sloppy("10.0.0.0/").is_none());
    }

    #[test]
    fn host_port() {
        assert_eq!(
            join_host_port(&"10.0.0.1".parse().unwrap(), 80),
            "10.0.0.1:80"
        );
        assert_eq!(
            join_host_port(&"fd00::1".parse().unwrap(), 80),
            "[fd00::1]:80"
        );
    }
}

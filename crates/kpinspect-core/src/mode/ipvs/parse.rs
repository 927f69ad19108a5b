//! `ipvsadm`'s texts read back into [`VirtualServer`]s: `ipvsadm -Ln` (the
//! listing people paste into bug reports) and `ipvsadm -Sn` (the rules
//! form), IPv4 and IPv6.

use std::net::IpAddr;

use super::{ForwardMethod, RealServer, Scheduler, ServiceFlags, VirtualServer};
use crate::model::Protocol;
use crate::net::parse_ip_sloppy;

/// A line of `ipvsadm` text kpinspect cannot read, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}: {}", crate::excerpt::excerpt(.text))]
pub struct IpvsadmError {
    /// The 1-based line.
    pub line: usize,
    /// The line itself.
    pub text: String,
    /// What is wrong.
    pub message: String,
}

/// Reads `ipvsadm -Ln` or `ipvsadm -Sn` output (detected per line: `-A`/`-a`
/// lines are the rules form, everything else the listing). Virtual servers
/// come back in the text's order, with `kind` and `service` unknown; from
/// the listing, real servers carry their active and inactive connection
/// counts (also from `ipvsadm -Ln --persistent-conn`). Fwmark services
/// (`FWM`, `-f`; not kube-proxy's, e.g. keepalived's) are skipped with
/// their real servers. `--stats`/`--rate` listings, which carry no
/// scheduler or weights, are refused.
///
/// ```
/// use kpinspect_core::mode::ipvs::parse_ipvsadm;
/// let text = "IP Virtual Server version 1.2.1 (size=4096)\n\
///     Prot LocalAddress:Port Scheduler Flags\n\
///       -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
///     TCP  10.96.0.1:443 rr persistent 10800\n\
///       -> 192.168.0.2:6443             Masq    1      4          1\n\
///     UDP  [fd00::a]:53 rr\n";
/// let servers = parse_ipvsadm(text).unwrap();
/// assert_eq!(servers[0].key(), "10.96.0.1:443/TCP");
/// assert_eq!(servers[0].timeout, 10800);
/// assert_eq!(servers[0].real_servers[0].active_connections, Some(4));
/// assert_eq!(servers[1].key(), "[fd00::a]:53/UDP");
/// ```
pub fn parse_ipvsadm(text: &str) -> Result<Vec<VirtualServer>, IpvsadmError> {
    let mut servers: Vec<VirtualServer> = Vec::new();
    // Inside a fwmark service's block (its real servers are skipped).
    let mut fwmark = false;
    // `--persistent-conn` columns: Weight PersistConn ActiveConn InActConn.
    let mut persist_conn = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: &str| IpvsadmError {
            line: i + 1,
            text: raw.to_string(),
            message: message.to_string(),
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "IP" if line.starts_with("IP Virtual Server") => {}
            "Prot" => {
                persist_conn = words.contains(&"PersistConn");
                if words.iter().any(|w| *w == "Conns" || *w == "CPS") {
                    return Err(err(
                        "a --stats or --rate listing carries no scheduler or weights; give `ipvsadm -Ln` or `ipvsadm -Sn`",
                    ));
                }
            }
            "->" if words.get(1) == Some(&"RemoteAddress:Port") => {
                persist_conn |= words.contains(&"PersistConn");
            }
            "->" if fwmark => {}
            "->" => {
                let vs = servers
                    .last_mut()
                    .ok_or_else(|| err("a real server before any virtual server"))?;
                vs.real_servers
                    .push(list_real_server(&words, persist_conn).map_err(|m| err(&m))?);
            }
            "TCP" | "UDP" | "SCTP" => {
                fwmark = false;
                servers.push(list_service(&words).map_err(|m| err(&m))?);
            }
            "FWM" => fwmark = true,
            "-A" | "--add-service" | "-a" | "--add-server"
                if matches!(words.get(1), Some(&("-f" | "--fwmark-service"))) => {}
            "-A" | "--add-service" => servers.push(save_service(&words).map_err(|m| err(&m))?),
            "-a" | "--add-server" => {
                let (vs, rs) = save_real_server(&words).map_err(|m| err(&m))?;
                let owner = servers
                    .iter_mut()
                    .rev()
                    .find(|s| (s.address, s.port, s.protocol) == vs)
                    .ok_or_else(|| err("a real server of a virtual server not added before"))?;
                owner.real_servers.push(rs);
            }
            _ => return Err(err("not a line of ipvsadm -Ln or -Sn")),
        }
    }
    Ok(servers)
}

/// A virtual server with what its text does not say left empty.
fn server(address: IpAddr, protocol: Protocol, port: u16) -> VirtualServer {
    VirtualServer {
        address,
        protocol,
        port,
        scheduler: Scheduler::default(),
        flags: ServiceFlags::default(),
        timeout: 0,
        kind: None,
        service: None,
        bind: false,
        real_servers: Vec::new(),
    }
}

/// `ip:port` or `[ip6]:port`.
fn address(s: &str) -> Result<(IpAddr, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{} is not ADDRESS:PORT", crate::excerpt::excerpt(s)))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip = parse_ip_sloppy(host)
        .ok_or_else(|| format!("{} is not an address", crate::excerpt::excerpt(host)))?;
    let port = port
        .parse()
        .map_err(|_| format!("{} is not a port", crate::excerpt::excerpt(port)))?;
    Ok((ip, port))
}

fn number<T: std::str::FromStr>(s: Option<&&str>, what: &str) -> Result<T, String> {
    let s = s.ok_or_else(|| format!("{what} missing"))?;
    s.parse()
        .map_err(|_| format!("{what} {} is not a number", crate::excerpt::excerpt(s)))
}

/// Sets the scheduler flags `ipvsadm` names (`mh-port`, `sh-port`, ...).
fn sched_flags(vs: &mut VirtualServer, names: &str) {
    for name in names.split(',') {
        match name.trim() {
            "sh-port" | "mh-port" | "flag-2" => vs.flags.0 |= ServiceFlags::SOURCE_HASH,
            "sh-fallback" | "mh-fallback" | "flag-1" => vs.flags.0 |= 0x8,
            "flag-3" => vs.flags.0 |= 0x20,
            _ => {}
        }
    }
}

/// `TCP  10.96.0.1:443 rr (mh-port) persistent 10800 mask ... ops`.
fn list_service(words: &[&str]) -> Result<VirtualServer, String> {
    let protocol = Protocol::from_k8s(words[0]).ok_or("unknown protocol")?;
    let (ip, port) = address(words.get(1).ok_or("address missing")?)?;
    let mut vs = server(ip, protocol, port);
    vs.scheduler = Scheduler::from_config(words.get(2).ok_or("scheduler missing")?);
    let mut rest = words[3..].iter();
    while let Some(w) = rest.next() {
        if let Some(flags) = w.strip_prefix('(') {
            sched_flags(&mut vs, flags.trim_end_matches(')'));
        } else if *w == "persistent" {
            vs.flags.0 |= ServiceFlags::PERSISTENT;
            vs.timeout = number(rest.next(), "persistence timeout")?;
        } else if *w == "mask" {
            rest.next();
        } else if *w != "ops" {
            return Err(format!(
                "unknown service option {}",
                crate::excerpt::excerpt(w)
            ));
        }
    }
    Ok(vs)
}

/// `-> 10.244.1.5:8080  Masq  1  0  0`; with `--persistent-conn`,
/// `-> 10.244.1.5:8080  1  0  0  0` (weight, persistent, active, inactive).
fn list_real_server(words: &[&str], persist_conn: bool) -> Result<RealServer, String> {
    let (ip, port) = address(words.get(1).ok_or("address missing")?)?;
    if persist_conn {
        let mut rs = RealServer::new(ip, port);
        rs.weight = number(words.get(2), "weight")?;
        number::<u64>(words.get(3), "PersistConn")?;
        rs.active_connections = Some(number(words.get(4), "ActiveConn")?);
        rs.inactive_connections = Some(number(words.get(5), "InActConn")?);
        return Ok(rs);
    }
    let forward = match words.get(2).copied() {
        Some("Masq") => ForwardMethod::Masquerade,
        Some("Route") => ForwardMethod::Route,
        Some("Tunnel") => ForwardMethod::Tunnel,
        Some("Local") => ForwardMethod::Local,
        Some(other) => {
            return Err(format!(
                "unknown forwarding method {}",
                crate::excerpt::excerpt(other)
            ));
        }
        None => return Err("forwarding method missing".into()),
    };
    let mut rs = RealServer::new(ip, port);
    rs.forward = forward;
    rs.weight = number(words.get(3), "weight")?;
    rs.active_connections = Some(number(words.get(4), "ActiveConn")?);
    rs.inactive_connections = Some(number(words.get(5), "InActConn")?);
    Ok(rs)
}

/// The `-t|-u|--sctp-service ADDRESS` of a rules line, and where the rest
/// starts.
fn save_address(words: &[&str]) -> Result<((IpAddr, u16, Protocol), usize), String> {
    let protocol = match words.get(1).copied() {
        Some("-t" | "--tcp-service") => Protocol::Tcp,
        Some("-u" | "--udp-service") => Protocol::Udp,
        Some("--sctp-service") => Protocol::Sctp,
        Some("-f" | "--fwmark-service") => {
            return Err("fwmark services are not kube-proxy's".into());
        }
        _ => return Err("service address missing".into()),
    };
    let (ip, port) = address(words.get(2).ok_or("service address missing")?)?;
    Ok(((ip, port, protocol), 3))
}

/// `-A -t 10.96.0.1:443 -s rr -p 10800 -b mh-port`.
fn save_service(words: &[&str]) -> Result<VirtualServer, String> {
    let ((ip, port, protocol), at) = save_address(words)?;
    let mut vs = server(ip, protocol, port);
    let mut rest = words[at..].iter();
    while let Some(w) = rest.next() {
        match *w {
            "-s" | "--scheduler" => {
                vs.scheduler = Scheduler::from_config(rest.next().ok_or("scheduler missing")?);
            }
            "-p" | "--persistent" => {
                vs.flags.0 |= ServiceFlags::PERSISTENT;
                vs.timeout = number(rest.next(), "persistence timeout")?;
            }
            "-b" | "--sched-flags" => sched_flags(&mut vs, rest.next().ok_or("flags missing")?),
            "-M" | "--netmask" | "--pe" => {
                rest.next();
            }
            "-o" | "--ops" => {}
            other => {
                return Err(format!(
                    "unknown service option {}",
                    crate::excerpt::excerpt(other)
                ));
            }
        }
    }
    Ok(vs)
}

/// `-a -t 10.96.0.1:443 -r 192.168.0.2:6443 -m -w 1`.
fn save_real_server(words: &[&str]) -> Result<((IpAddr, u16, Protocol), RealServer), String> {
    let (vs, at) = save_address(words)?;
    let mut real = None;
    let mut forward = ForwardMethod::Route;
    let mut weight = 1;
    let mut rest = words[at..].iter();
    while let Some(w) = rest.next() {
        match *w {
            "-r" | "--real-server" => {
                real = Some(address(rest.next().ok_or("real server missing")?)?);
            }
            "-m" | "--masquerading" => forward = ForwardMethod::Masquerade,
            "-g" | "--gatewaying" => forward = ForwardMethod::Route,
            "-i" | "--ipip" => forward = ForwardMethod::Tunnel,
            "-w" | "--weight" => weight = number(rest.next(), "weight")?,
            "-x" | "--u-threshold" | "-y" | "--l-threshold" | "--tun-type" => {
                rest.next();
            }
            other => {
                return Err(format!(
                    "unknown real server option {}",
                    crate::excerpt::excerpt(other)
                ));
            }
        }
    }
    let (ip, port) = real.ok_or("real server (-r) missing")?;
    let mut rs = RealServer::new(ip, port);
    rs.forward = forward;
    rs.weight = weight;
    Ok((vs, rs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::ipvs::ipvsadm_save;

    const LIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr
  -> 192.168.0.2:6443             Masq    1      3          0
TCP  10.96.0.10:53 rr persistent 10800
  -> 10.244.0.2:53                Masq    1      0          0
  -> 10.244.0.3:53                Masq    0      2          7
UDP  10.96.0.10:53 mh (mh-port)
SCTP  [fd00::1]:7777 wrr
  -> [fd00:10:244::5]:7777        Masq    2      0          0
";

    #[test]
    fn reads_the_listing() {
        let s = parse_ipvsadm(LIST).expect("parse");
        assert_eq!(s.len(), 4);
        assert_eq!(s[1].real_servers[1].weight, 0);
        assert_eq!(s[1].real_servers[1].inactive_connections, Some(7));
        assert!(s[1].flags.persistent());
        assert!(s[2].flags.source_hash());
        assert_eq!(s[3].key(), "[fd00::1]:7777/SCTP");
        assert_eq!(s[3].scheduler.name(), "wrr");
    }

    #[test]
    fn the_rules_form_reads_back_to_itself() {
        let save = ipvsadm_save(&parse_ipvsadm(LIST).expect("parse"));
        let again = ipvsadm_save(&parse_ipvsadm(&save).expect("reparse"));
        assert_eq!(save, again);
        assert!(save.contains("-A -u 10.96.0.10:53 -s mh -b mh-port\n"));
        assert!(save.contains("-a -t 10.96.0.10:53 -r 10.244.0.3:53 -m -w 0\n"));
        assert!(save.contains("-A --sctp-service [fd00::1]:7777 -s wrr\n"));
    }

    #[test]
    fn fwmark_services_are_skipped_and_persistent_conn_read() {
        let text = "FWM  7 wlc\n  -> 10.0.0.9:0 Route 1 0 0\nTCP  10.96.0.1:443 rr\n  -> 10.0.0.2:6443 Masq 1 0 0\n\
                    -A -f 7 -s wlc\n-a -f 7 -r 10.0.0.9:0 -g -w 1\n";
        let s = parse_ipvsadm(text).expect("parse");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].real_servers.len(), 1);
        let persist = "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn\n\
                         -> RemoteAddress:Port\n\
                       TCP  10.11.12.13:6379 wlc persistent 60\n\
                         -> 10.192.0.1:32768             1         1           1          0\n";
        let s = parse_ipvsadm(persist).expect("persistent-conn");
        assert_eq!(s[0].real_servers[0].active_connections, Some(1));
        assert_eq!(s[0].timeout, 60);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("TCP 10.0.0.1:80 rr\n  -> 10.0.0.2:80 Masq x 0 0\n", 2),
            ("\n\nbogus\n", 3),
            ("  -> 10.0.0.2:80 Masq 1 0 0\n", 1),
            ("-a -t 10.0.0.1:80 -r 10.0.0.2:80 -m -w 1\n", 1),
            (
                "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
                1,
            ),
            ("TCP 10.0.0.1 rr\n", 1),
        ] {
            let e = parse_ipvsadm(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}

//! `-m set --match-set NAME FLAGS` decided from a set's members, when the
//! trace knows them ([`super::TraceOptions::ipsets`]).
//!
//! The set types of kube-proxy's IPVS mode and their neighbours are
//! modelled: `hash:ip`, `hash:net`, `hash:ip,port`, `hash:ip,port,ip`,
//! `hash:ip,port,net`, `hash:net,port`, ... (any `hash:` type made of `ip`,
//! `net` and `port` dimensions) and `bitmap:port`. A port member carries
//! its protocol (`tcp:80`, `udp:53`, `sctp:30001`; a bare `80` is TCP, as
//! `ipset` reads it) and matches only a packet of that protocol;
//! `bitmap:port` members match any protocol. Each dimension takes the
//! packet's source or destination as the flags say (`dst,dst,src`); more
//! flags than dimensions are ignored, fewer leave the match unknown, as do
//! a source port the trace does not know and members it cannot read.
//! Members marked `nomatch` are left out (they only carve exceptions out of
//! wider `hash:net` members, which kube-proxy never writes).

use std::net::IpAddr;

use crate::ipset::{SetText, first_word};
use crate::model::Protocol;
use crate::net::IpNet;

/// One dimension of a set type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dim {
    /// An address or a network (`ip`, `net`).
    Addr,
    /// A port, with its protocol in hash types.
    Port,
}

/// One dimension of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    /// An address (a host network) or a network.
    Net(IpNet),
    /// A port range, of one protocol (`None`: any, `bitmap:port`).
    Port(Option<Protocol>, u16, u16),
}

/// A set whose members the trace can match packets against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KnownSet {
    dims: Vec<Dim>,
    members: Vec<Vec<Elem>>,
}

/// What a lookup takes from the packet.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lookup {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: u16,
    pub protocol: Protocol,
}

impl KnownSet {
    /// The set's members as values; `None` for a type (or a member) the
    /// trace does not model, so that its matches stay conditions.
    pub fn new(set: &SetText) -> Option<KnownSet> {
        let (kind, dims) = set.set_type.split_once(':')?;
        let dims: Vec<Dim> = dims
            .split(',')
            .map(|d| match d {
                "ip" | "net" => Some(Dim::Addr),
                "port" => Some(Dim::Port),
                _ => None,
            })
            .collect::<Option<_>>()?;
        let bitmap = match kind {
            "hash" => false,
            "bitmap" if dims == [Dim::Port] => true,
            _ => return None,
        };
        let mut members = Vec::new();
        for m in &set.members {
            let (entry, options) = first_word(m);
            if options.split_whitespace().any(|w| w == "nomatch") {
                continue;
            }
            let parts: Vec<&str> = entry.split(',').collect();
            if parts.len() != dims.len() {
                return None;
            }
            let mut elems = Vec::with_capacity(dims.len());
            let mut never = false;
            for (d, p) in dims.iter().zip(parts) {
                match (d, bitmap) {
                    (Dim::Addr, _) => elems.push(Elem::Net(parse_net(p)?)),
                    (Dim::Port, true) => {
                        let (lo, hi) = parse_port_range(p)?;
                        elems.push(Elem::Port(None, lo, hi));
                    }
                    (Dim::Port, false) => {
                        let (proto, port) = match p.split_once(':') {
                            Some((proto, port)) => (proto.to_ascii_lowercase(), port),
                            None => ("tcp".to_string(), p),
                        };
                        let (lo, hi) = parse_port_range(port)?;
                        match proto.as_str() {
                            "tcp" => elems.push(Elem::Port(Some(Protocol::Tcp), lo, hi)),
                            "udp" => elems.push(Elem::Port(Some(Protocol::Udp), lo, hi)),
                            "sctp" => elems.push(Elem::Port(Some(Protocol::Sctp), lo, hi)),
                            // icmp, udplite, ...: never a TCP/UDP/SCTP packet.
                            _ => never = true,
                        }
                    }
                }
            }
            if !never {
                members.push(elems);
            }
        }
        Some(KnownSet { dims, members })
    }

    /// Whether the set holds the packet's element the flags select;
    /// `None` when that cannot be known.
    pub fn lookup(&self, flags: &str, p: &Lookup) -> Option<bool> {
        let flags: Vec<&str> = flags.split(',').collect();
        if flags.len() < self.dims.len() {
            return None;
        }
        let mut key = Vec::with_capacity(self.dims.len());
        for (d, f) in self.dims.iter().zip(&flags) {
            let src = *f == "src";
            key.push(match d {
                Dim::Addr => Key::Addr(if src { p.src } else { p.dst }),
                Dim::Port if src => Key::Port(p.sport?),
                Dim::Port => Key::Port(p.dport),
            });
        }
        Some(self.members.iter().any(|m| {
            m.iter().zip(&key).all(|(e, k)| match (e, k) {
                (Elem::Net(n), Key::Addr(a)) => n.contains(a),
                (Elem::Port(proto, lo, hi), Key::Port(port)) => {
                    proto.is_none_or(|x| x == p.protocol) && (*lo..=*hi).contains(port)
                }
                _ => false,
            })
        }))
    }
}

/// A packet's value for one dimension.
enum Key {
    Addr(IpAddr),
    Port(u16),
}

/// `10.0.0.1` (a host network) or `10.0.0.0/8`.
fn parse_net(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        return s.parse().ok();
    }
    let ip: IpAddr = s.parse().ok()?;
    Some(IpNet::from(ip))
}

/// `80` or `80-90`.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((lo, hi)) => Some((lo.parse().ok()?, hi.parse().ok()?)),
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(set_type: &str, members: &[&str]) -> KnownSet {
        KnownSet::new(&SetText {
            name: "S".into(),
            set_type: set_type.into(),
            options: String::new(),
            members: members.iter().map(|m| m.to_string()).collect(),
        })
        .expect("modelled set")
    }

    fn pkt(src: &str, dst: &str, dport: u16, protocol: Protocol) -> Lookup {
        Lookup {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport: None,
            dport,
            protocol,
        }
    }

    #[test]
    fn hash_ip_port_matches_address_protocol_and_port() {
        let s = set("hash:ip,port", &["10.96.0.10,udp:53", "10.96.0.1,tcp:443"]);
        let dns = pkt("10.0.0.5", "10.96.0.10", 53, Protocol::Udp);
        assert_eq!(s.lookup("dst,dst", &dns), Some(true));
        // Same address and port, other protocol.
        let tcp = pkt("10.0.0.5", "10.96.0.10", 53, Protocol::Tcp);
        assert_eq!(s.lookup("dst,dst", &tcp), Some(false));
        assert_eq!(
            s.lookup("dst,dst", &pkt("10.0.0.5", "10.96.0.1", 443, Protocol::Tcp)),
            Some(true)
        );
        assert_eq!(
            s.lookup("dst,dst", &pkt("10.0.0.5", "10.96.0.1", 80, Protocol::Tcp)),
            Some(false)
        );
        // The source address against the first dimension.
        assert_eq!(
            s.lookup("src,dst", &pkt("10.96.0.1", "1.2.3.4", 443, Protocol::Tcp)),
            Some(true)
        );
        // Fewer flags than dimensions, or an unknown source port: unknown.
        assert_eq!(s.lookup("dst", &dns), None);
        assert_eq!(s.lookup("dst,src", &dns), None);
        // A bare port is TCP.
        let bare = set("hash:ip,port", &["10.0.0.1,80"]);
        assert_eq!(
            bare.lookup("dst,dst", &pkt("1.1.1.1", "10.0.0.1", 80, Protocol::Tcp)),
            Some(true)
        );
        assert_eq!(
            bare.lookup("dst,dst", &pkt("1.1.1.1", "10.0.0.1", 80, Protocol::Udp)),
            Some(false)
        );
    }

    #[test]
    fn three_dimensions_take_the_source_where_the_flags_say() {
        // KUBE-LOOP-BACK: a pod reaching itself through its service.
        let s = set("hash:ip,port,ip", &["10.180.0.1,tcp:80,10.180.0.1"]);
        let hairpin = pkt("10.180.0.1", "10.180.0.1", 80, Protocol::Tcp);
        assert_eq!(s.lookup("dst,dst,src", &hairpin), Some(true));
        let other = pkt("10.180.0.2", "10.180.0.1", 80, Protocol::Tcp);
        assert_eq!(s.lookup("dst,dst,src", &other), Some(false));
        // KUBE-LOAD-BALANCER-SOURCE-CIDR: a network as the last dimension.
        let s = set(
            "hash:ip,port,net",
            &["1.2.3.4,tcp:80,192.168.0.0/16", "1.2.3.4,tcp:80,10.0.0.9"],
        );
        let inside = pkt("192.168.7.7", "1.2.3.4", 80, Protocol::Tcp);
        let host = pkt("10.0.0.9", "1.2.3.4", 80, Protocol::Tcp);
        let outside = pkt("172.16.0.1", "1.2.3.4", 80, Protocol::Tcp);
        assert_eq!(s.lookup("dst,dst,src", &inside), Some(true));
        assert_eq!(s.lookup("dst,dst,src", &host), Some(true));
        assert_eq!(s.lookup("dst,dst,src", &outside), Some(false));
    }

    #[test]
    fn nets_ports_and_unmodelled_types() {
        let s = set(
            "hash:net",
            &["10.0.0.0/8", "192.168.1.1", "10.9.0.0/16 nomatch"],
        );
        assert_eq!(
            s.lookup("src", &pkt("10.1.2.3", "8.8.8.8", 53, Protocol::Udp)),
            Some(true)
        );
        assert_eq!(
            s.lookup("dst", &pkt("10.1.2.3", "192.168.1.1", 53, Protocol::Udp)),
            Some(true)
        );
        assert_eq!(
            s.lookup("dst", &pkt("10.1.2.3", "192.168.1.2", 53, Protocol::Udp)),
            Some(false)
        );
        // bitmap:port: any protocol.
        let s = set("bitmap:port", &["30080", "31000-31002"]);
        for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            assert_eq!(
                s.lookup("dst", &pkt("1.1.1.1", "2.2.2.2", 30080, proto)),
                Some(true)
            );
        }
        assert_eq!(
            s.lookup("dst", &pkt("1.1.1.1", "2.2.2.2", 31001, Protocol::Tcp)),
            Some(true)
        );
        assert_eq!(
            s.lookup("dst", &pkt("1.1.1.1", "2.2.2.2", 30081, Protocol::Tcp)),
            Some(false)
        );
        // IPv6 members never hold an IPv4 packet's address.
        let s = set("hash:ip,port", &["fd00::a,sctp:7777"]);
        assert_eq!(
            s.lookup("dst,dst", &pkt("fd00::1", "fd00::a", 7777, Protocol::Sctp)),
            Some(true)
        );
        assert_eq!(
            s.lookup("dst,dst", &pkt("1.1.1.1", "10.0.0.1", 7777, Protocol::Sctp)),
            Some(false)
        );
        let unmodelled = SetText {
            name: "L".into(),
            set_type: "list:set".into(),
            options: String::new(),
            members: vec!["S".into()],
        };
        assert!(KnownSet::new(&unmodelled).is_none());
    }
}

//! Connection tracking entries and their cleanup, as kube-proxy does it
//! (`pkg/proxy/conntrack`): list the table of one IP family over ctnetlink
//! (`NFNL_SUBSYS_CTNETLINK`), match each entry against filters in user
//! space, delete the matches one by one.
//!
//! A stale UDP entry keeps sending a client's packets to an endpoint that
//! is gone (conntrack DNATs them before any rule is looked at), so
//! kube-proxy deletes them. Its filters ([`ConntrackFilter`]) name the
//! protocol, the original destination (a Service IP and port, or a node
//! port) and the reply source (the endpoint the entry was DNATed to);
//! [`stale_entry_filters`] is its reconciler's choice of filters for a
//! table.
//!
//! Filters are values: a planner builds them, [`Conntrack::delete`]
//! applies them. A filter that names nothing but a protocol matches
//! nothing, so no bug can flush a whole protocol.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kpinspect_core::model::Protocol;
use kpinspect_core::net::IpFamily;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP};
use thiserror::Error;

use crate::netlink::{
    AF_INET, AF_INET6, Attr, ENOENT, NFNL_SUBSYS_CTNETLINK, NetlinkError, NfnlMessage, NfnlSocket,
    parse_attrs, parse_be,
};

const IPCTNL_MSG_CT_NEW: u8 = 0;
const IPCTNL_MSG_CT_GET: u8 = 1;
const IPCTNL_MSG_CT_DELETE: u8 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_TIMEOUT: u16 = 7;
const CTA_MARK: u16 = 8;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;

const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// The IP protocol number of `protocol` (TCP 6, UDP 17, SCTP 132).
pub fn protocol_number(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

/// One direction of a connection: addresses and, for protocols with
/// ports, ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConntrackTuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (`None` for protocols without ports, e.g. ICMP).
    pub src_port: Option<u16>,
    /// Destination port.
    pub dst_port: Option<u16>,
}

impl ConntrackTuple {
    /// The tuple from `src` to `dst`, ports included.
    pub fn new(src: SocketAddr, dst: SocketAddr) -> ConntrackTuple {
        ConntrackTuple {
            src: src.ip(),
            dst: dst.ip(),
            src_port: Some(src.port()),
            dst_port: Some(dst.port()),
        }
    }
}

/// One connection tracking entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConntrackEntry {
    /// The IP protocol number (6 TCP, 17 UDP, 132 SCTP, ...).
    pub protocol: u8,
    /// The connection as the first packet saw it (`--orig-*`).
    pub original: ConntrackTuple,
    /// The expected answer (`--reply-*`): after a DNAT its source is the
    /// endpoint.
    pub reply: ConntrackTuple,
    /// The conntrack zone (0 is the default).
    pub zone: u16,
    /// The kernel's id of the entry (`CTA_ID`), when known; a delete by id
    /// never removes a newer entry that reuses the tuple.
    pub id: Option<u32>,
    /// The connection mark.
    pub mark: Option<u32>,
    /// The `IPS_*` status bits.
    pub status: Option<u32>,
    /// Seconds until the entry expires.
    pub timeout: Option<u32>,
}

impl ConntrackEntry {
    /// An entry of `protocol` in zone 0, with nothing else known.
    pub fn new(protocol: Protocol, original: ConntrackTuple, reply: ConntrackTuple) -> Self {
        ConntrackEntry {
            protocol: protocol_number(protocol),
            original,
            reply,
            zone: 0,
            id: None,
            mark: None,
            status: None,
            timeout: None,
        }
    }

    /// The entry's IP family (of its original source).
    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.original.src)
    }
}

/// What a [`ConntrackFilter`] requires of one direction of an entry; `None`
/// fields match anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TupleMatch {
    /// Source address (`--orig-src` / `--reply-src`).
    pub src: Option<IpAddr>,
    /// Destination address (`--orig-dst` / `--reply-dst`).
    pub dst: Option<IpAddr>,
    /// Source port (`--orig-port-src` / `--reply-port-src`).
    pub src_port: Option<u16>,
    /// Destination port (`--orig-port-dst` / `--reply-port-dst`).
    pub dst_port: Option<u16>,
}

impl TupleMatch {
    fn is_empty(&self) -> bool {
        *self == TupleMatch::default()
    }

    fn matches(&self, t: &ConntrackTuple) -> bool {
        self.src.is_none_or(|ip| ip == t.src)
            && self.dst.is_none_or(|ip| ip == t.dst)
            && self.src_port.is_none_or(|p| Some(p) == t.src_port)
            && self.dst_port.is_none_or(|p| Some(p) == t.dst_port)
    }
}

/// Which entries to delete: kube-proxy's `conntrackFilter` (the `conntrack
/// -D` options it replaced). An entry matches when its protocol is
/// `protocol` and both directions match; a filter whose directions are
/// both empty matches nothing.
///
/// ```
/// use std::net::IpAddr;
/// use kpinspect_core::model::Protocol;
/// use kpinspect_node::{ConntrackEntry, ConntrackFilter, ConntrackTuple};
///
/// let client = "10.0.0.1:40000".parse().unwrap();
/// let entry = ConntrackEntry::new(
///     Protocol::Udp,
///     ConntrackTuple::new(client, "10.96.0.10:53".parse().unwrap()),
///     ConntrackTuple::new("10.244.0.5:5353".parse().unwrap(), client),
/// );
/// let service: IpAddr = "10.96.0.10".parse().unwrap();
/// let gone: IpAddr = "10.244.0.5".parse().unwrap();
/// assert!(ConntrackFilter::frontend(Protocol::Udp, service, 53).matches(&entry));
/// assert!(!ConntrackFilter::frontend(Protocol::Udp, service, 54).matches(&entry));
/// assert!(ConntrackFilter::frontend_endpoint(Protocol::Udp, service, 53, gone, None).matches(&entry));
/// assert!(!ConntrackFilter::node_port(Protocol::Sctp, 53).matches(&entry));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConntrackFilter {
    /// The protocol (`-p`).
    pub protocol: Protocol,
    /// What the original direction must be.
    pub original: TupleMatch,
    /// What the reply direction must be.
    pub reply: TupleMatch,
}

impl ConntrackFilter {
    /// Every entry to a Service frontend `ip:port` (a ClusterIP, external
    /// IP or load-balancer IP): `-p PROTO --orig-dst IP --orig-port-dst PORT`.
    pub fn frontend(protocol: Protocol, ip: IpAddr, port: u16) -> ConntrackFilter {
        ConntrackFilter {
            protocol,
            original: TupleMatch {
                dst: Some(ip),
                dst_port: Some(port),
                ..TupleMatch::default()
            },
            reply: TupleMatch::default(),
        }
    }

    /// Every entry to node port `port` (on any node address):
    /// `-p PROTO --orig-port-dst PORT`.
    pub fn node_port(protocol: Protocol, port: u16) -> ConntrackFilter {
        ConntrackFilter {
            protocol,
            original: TupleMatch {
                dst_port: Some(port),
                ..TupleMatch::default()
            },
            reply: TupleMatch::default(),
        }
    }

    /// The entries to frontend `ip:port` that were DNATed to `endpoint`
    /// (and `endpoint_port`, if given): kube-proxy's `filterForIPPortNAT`,
    /// `--orig-dst IP --orig-port-dst PORT --reply-src ENDPOINT
    /// [--reply-port-src EPORT]`.
    pub fn frontend_endpoint(
        protocol: Protocol,
        ip: IpAddr,
        port: u16,
        endpoint: IpAddr,
        endpoint_port: Option<u16>,
    ) -> ConntrackFilter {
        let mut f = ConntrackFilter::frontend(protocol, ip, port);
        f.reply = TupleMatch {
            src: Some(endpoint),
            src_port: endpoint_port,
            ..TupleMatch::default()
        };
        f
    }

    /// The entries to node port `port` that were DNATed to `endpoint` (and
    /// `endpoint_port`, if given): kube-proxy's `filterForPortNAT`,
    /// `--orig-port-dst PORT --reply-src ENDPOINT [--reply-port-src EPORT]`.
    pub fn node_port_endpoint(
        protocol: Protocol,
        port: u16,
        endpoint: IpAddr,
        endpoint_port: Option<u16>,
    ) -> ConntrackFilter {
        let mut f = ConntrackFilter::node_port(protocol, port);
        f.reply = TupleMatch {
            src: Some(endpoint),
            src_port: endpoint_port,
            ..TupleMatch::default()
        };
        f
    }

    /// Whether `entry` is one to delete.
    pub fn matches(&self, entry: &ConntrackEntry) -> bool {
        !(self.original.is_empty() && self.reply.is_empty())
            && entry.protocol == protocol_number(self.protocol)
            && self.original.matches(&entry.original)
            && self.reply.matches(&entry.reply)
    }
}

/// What kube-proxy's conntrack reconciler knows about the UDP Services of
/// one IP family: for each frontend (ClusterIP, load-balancer IPs and
/// external IPs, with the service port) and each node port, the serving
/// endpoints (address and target port). A frontend or node port with no
/// serving endpoint, or of a Service just deleted, is listed with an empty
/// set: every entry to it is stale.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingEndpoints {
    /// `(frontend IP, service port)` → serving endpoints.
    pub frontends: BTreeMap<(IpAddr, u16), BTreeSet<SocketAddr>>,
    /// Node port → serving endpoints.
    pub node_ports: BTreeMap<u16, BTreeSet<SocketAddr>>,
}

/// The filters kube-proxy's reconciler (`CleanStaleEntries`) builds from a
/// table listing: for each UDP entry to a known frontend `ip:port` whose
/// reply source `ip:port` is not a serving endpoint,
/// [`ConntrackFilter::frontend_endpoint`]; for each UDP entry to a known
/// node port whose reply source is not a serving endpoint,
/// [`ConntrackFilter::node_port_endpoint`]. Each filter once, in entry
/// order. Other protocols are never cleaned (kube-proxy stopped cleaning
/// SCTP with the reconciler; TCP never was).
///
/// ```
/// use std::collections::BTreeSet;
/// use kpinspect_core::model::Protocol;
/// use kpinspect_node::{ConntrackEntry, ConntrackTuple, ServingEndpoints, stale_entry_filters};
///
/// let client = "10.0.0.1:40000".parse().unwrap();
/// let to_old = ConntrackEntry::new(
///     Protocol::Udp,
///     ConntrackTuple::new(client, "10.96.0.10:53".parse().unwrap()),
///     ConntrackTuple::new("10.244.0.5:5353".parse().unwrap(), client),
/// );
/// let mut serving = ServingEndpoints::default();
/// serving.frontends.insert(
///     ("10.96.0.10".parse().unwrap(), 53),
///     BTreeSet::from(["10.244.0.6:5353".parse().unwrap()]),
/// );
/// let filters = stale_entry_filters(&[to_old.clone()], &serving);
/// assert_eq!(filters.len(), 1);
/// assert!(filters[0].matches(&to_old));
/// ```
pub fn stale_entry_filters(
    entries: &[ConntrackEntry],
    serving: &ServingEndpoints,
) -> Vec<ConntrackFilter> {
    let udp = protocol_number(Protocol::Udp);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for e in entries.iter().filter(|e| e.protocol == udp) {
        let (Some(dst_port), Some(reply_port)) = (e.original.dst_port, e.reply.src_port) else {
            continue;
        };
        let endpoint = SocketAddr::new(e.reply.src, reply_port);
        if let Some(eps) = serving.frontends.get(&(e.original.dst, dst_port))
            && !eps.contains(&endpoint)
        {
            let f = ConntrackFilter::frontend_endpoint(
                Protocol::Udp,
                e.original.dst,
                dst_port,
                e.reply.src,
                Some(reply_port),
            );
            if seen.insert(f) {
                out.push(f);
            }
        }
        if let Some(eps) = serving.node_ports.get(&dst_port)
            && !eps.contains(&endpoint)
        {
            let f = ConntrackFilter::node_port_endpoint(
                Protocol::Udp,
                dst_port,
                e.reply.src,
                Some(reply_port),
            );
            if seen.insert(f) {
                out.push(f);
            }
        }
    }
    out
}

/// A failure to read or clean the conntrack table.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConntrackError {
    /// Talking to the kernel failed (listing, or opening the socket).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// Some matching entries could not be deleted; the others were.
    #[error("deleted {deleted} conntrack entries, {failed} more could not be: {first}")]
    Partial {
        /// Entries deleted.
        deleted: usize,
        /// Matching entries that could not be deleted.
        failed: usize,
        /// The first failure.
        #[source]
        first: NetlinkError,
    },
}

/// A node's connection tracking table (of one network namespace).
pub trait Conntrack {
    /// The entries of `family`, in the kernel's order.
    fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError>;

    /// Deletes the entries of `family` that match any of `filters` and
    /// returns how many were deleted. Entries that expire meanwhile are not
    /// counted and are no error. No filters, nothing deleted.
    fn delete(
        &self,
        family: IpFamily,
        filters: &[ConntrackFilter],
    ) -> Result<usize, ConntrackError>;
}

/// The kernel's conntrack table of this process's network namespace, over
/// ctnetlink. Needs `CAP_NET_ADMIN`.
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::{Conntrack, SystemConntrack};
///
/// // Without filters nothing is read or deleted.
/// assert_eq!(SystemConntrack.delete(IpFamily::V4, &[]), Ok(0));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemConntrack;

impl Conntrack for SystemConntrack {
    fn list(&self, family: IpFamily) -> Result<Vec<ConntrackEntry>, ConntrackError> {
        let op = format!("conntrack list {}", family_name(family));
        let answer = NfnlSocket::open(&op)?.request(dump_request(family), NLM_F_DUMP, &op)?;
        answer
            .iter()
            .map(|m| {
                decode_entry(m).map_err(|message| {
                    ConntrackError::Netlink(NetlinkError::Decode {
                        operation: op.clone(),
                        message,
                    })
                })
            })
            .collect()
    }

    fn delete(
        &self,
        family: IpFamily,
        filters: &[ConntrackFilter],
    ) -> Result<usize, ConntrackError> {
        if filters.is_empty() {
            return Ok(0);
        }
        let doomed: Vec<ConntrackEntry> = self
            .list(family)?
            .into_iter()
            .filter(|e| filters.iter().any(|f| f.matches(e)))
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let op = format!("conntrack delete {}", family_name(family));
        let mut socket = NfnlSocket::open(&op)?;
        let (mut deleted, mut failed, mut first) = (0, 0, None);
        for entry in &doomed {
            match socket.request(delete_request(entry), NLM_F_ACK, &op) {
                Ok(_) => deleted += 1,
                Err(e) if e.errno() == Some(ENOENT) => {}
                Err(e) => {
                    failed += 1;
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            None => Ok(deleted),
            Some(first) => Err(ConntrackError::Partial {
                deleted,
                failed,
                first,
            }),
        }
    }
}

fn family_name(family: IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "ipv4",
        IpFamily::V6 => "ipv6",
    }
}

fn af(family: IpFamily) -> u8 {
    match family {
        IpFamily::V4 => AF_INET,
        IpFamily::V6 => AF_INET6,
    }
}

/// `IPCTNL_MSG_CT_GET` for a dump of `family`'s table (the request of
/// `conntrack -L -f ipv4`).
fn dump_request(family: IpFamily) -> NfnlMessage {
    NfnlMessage::new(NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_GET, af(family), &[])
}

/// `IPCTNL_MSG_CT_DELETE` of exactly `entry`: its original tuple, its zone
/// (when not 0) and its id (when known). A delete always names a tuple: a
/// delete without one flushes the whole table.
fn delete_request(entry: &ConntrackEntry) -> NfnlMessage {
    let mut attrs = vec![tuple_attr(CTA_TUPLE_ORIG, entry.protocol, &entry.original)];
    if entry.zone != 0 {
        attrs.push(Attr::Bytes(CTA_ZONE, entry.zone.to_be_bytes().to_vec()));
    }
    if let Some(id) = entry.id {
        attrs.push(Attr::Bytes(CTA_ID, id.to_be_bytes().to_vec()));
    }
    NfnlMessage::new(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_DELETE,
        af(entry.family()),
        &attrs,
    )
}

fn tuple_attr(kind: u16, protocol: u8, t: &ConntrackTuple) -> Attr {
    let ip = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let (src_kind, dst_kind) = match t.src {
        IpAddr::V4(_) => (CTA_IP_V4_SRC, CTA_IP_V4_DST),
        IpAddr::V6(_) => (CTA_IP_V6_SRC, CTA_IP_V6_DST),
    };
    let mut proto = vec![Attr::Bytes(CTA_PROTO_NUM, vec![protocol])];
    if let Some(p) = t.src_port {
        proto.push(Attr::Bytes(CTA_PROTO_SRC_PORT, p.to_be_bytes().to_vec()));
    }
    if let Some(p) = t.dst_port {
        proto.push(Attr::Bytes(CTA_PROTO_DST_PORT, p.to_be_bytes().to_vec()));
    }
    Attr::Nested(
        kind,
        vec![
            Attr::Nested(
                CTA_TUPLE_IP,
                vec![
                    Attr::Bytes(src_kind, ip(t.src)),
                    Attr::Bytes(dst_kind, ip(t.dst)),
                ],
            ),
            Attr::Nested(CTA_TUPLE_PROTO, proto),
        ],
    )
}

/// An entry from the kernel's `IPCTNL_MSG_CT_NEW` message (the type of its
/// dump answers).
fn decode_entry(message: &NfnlMessage) -> Result<ConntrackEntry, String> {
    if message.subsystem != NFNL_SUBSYS_CTNETLINK || message.kind != IPCTNL_MSG_CT_NEW {
        return Err(format!(
            "unexpected message {}:{} for a conntrack entry",
            message.subsystem, message.kind
        ));
    }
    let (mut original, mut reply) = (None, None);
    let mut entry = ConntrackEntry {
        protocol: 0,
        original: ConntrackTuple {
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            src_port: None,
            dst_port: None,
        },
        reply: ConntrackTuple {
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            src_port: None,
            dst_port: None,
        },
        zone: 0,
        id: None,
        mark: None,
        status: None,
        timeout: None,
    };
    let be32 = |v: &[u8], what| parse_be::<4>(v, what).map(u32::from_be_bytes);
    for (kind, value) in parse_attrs(&message.attributes)? {
        match kind {
            CTA_TUPLE_ORIG => original = Some(decode_tuple(value)?),
            CTA_TUPLE_REPLY => reply = Some(decode_tuple(value)?),
            CTA_STATUS => entry.status = Some(be32(value, "CTA_STATUS")?),
            CTA_TIMEOUT => entry.timeout = Some(be32(value, "CTA_TIMEOUT")?),
            CTA_MARK => entry.mark = Some(be32(value, "CTA_MARK")?),
            CTA_ID => entry.id = Some(be32(value, "CTA_ID")?),
            CTA_ZONE => entry.zone = u16::from_be_bytes(parse_be(value, "CTA_ZONE")?),
            _ => {}
        }
    }
    let (Some((proto, original)), Some((_, reply))) = (original, reply) else {
        return Err("conntrack entry without both tuples".into());
    };
    entry.protocol = proto;
    entry.original = original;
    entry.reply = reply;
    Ok(entry)
}

/// A `CTA_TUPLE_*` value: its protocol number and tuple.
fn decode_tuple(value: &[u8]) -> Result<(u8, ConntrackTuple), String> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port) = (None, None);
    for (kind, value) in parse_attrs(value)? {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, v) in parse_attrs(value)? {
                    match kind {
                        CTA_IP_V4_SRC => {
                            src = Some(IpAddr::from(parse_be::<4>(v, "CTA_IP_V4_SRC")?))
                        }
                        CTA_IP_V4_DST => {
                            dst = Some(IpAddr::from(parse_be::<4>(v, "CTA_IP_V4_DST")?))
                        }
                        CTA_IP_V6_SRC => {
                            src = Some(Ipv6Addr::from(parse_be::<16>(v, "CTA_IP_V6_SRC")?).into());
                        }
                        CTA_IP_V6_DST => {
                            dst = Some(Ipv6Addr::from(parse_be::<16>(v, "CTA_IP_V6_DST")?).into());
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, v) in parse_attrs(value)? {
                    match kind {
                        CTA_PROTO_NUM => proto = Some(parse_be::<1>(v, "CTA_PROTO_NUM")?[0]),
                        CTA_PROTO_SRC_PORT => {
                            src_port = Some(u16::from_be_bytes(parse_be(v, "CTA_PROTO_SRC_PORT")?));
                        }
                        CTA_PROTO_DST_PORT => {
                            dst_port = Some(u16::from_be_bytes(parse_be(v, "CTA_PROTO_DST_PORT")?));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (src, dst, proto) {
        (Some(src), Some(dst), Some(proto)) => Ok((
            proto,
            ConntrackTuple {
                src,
                dst,
                src_port,
                dst_port,
            },
        )),
        _ => Err("conntrack tuple without addresses or protocol".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::{Answer, emit_attrs, encode_request};

    // `conntrack -L` / `conntrack -D` (conntrack-tools 1.4.7) under strace
    // in a namespace, and this module's own listing and delete of the
    // kernel-test flows (see testdata/netlink/): requests and the kernel's
    // answers.
    include!("../testdata/netlink/conntrack_golden.rs");

    fn entries(seq: u32, datagrams: &[&[u8]]) -> Vec<ConntrackEntry> {
        let mut answer = Answer::<NfnlMessage>::new(seq);
        for (i, d) in datagrams.iter().enumerate() {
            assert_eq!(answer.feed(d), Ok(i + 1 == datagrams.len()), "datagram {i}");
        }
        answer
            .into_messages()
            .iter()
            .map(|m| decode_entry(m).expect("entry"))
            .collect()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn dump_requests_are_the_conntrack_tools_bytes() {
        assert_eq!(
            encode_request(dump_request(IpFamily::V4), NLM_F_DUMP, 0x6b0e_dc4b),
            DUMP_REQUEST_V4
        );
        assert_eq!(
            encode_request(dump_request(IpFamily::V6), NLM_F_DUMP, 0x6b0e_dc4b),
            DUMP_REQUEST_V6
        );
    }

    #[test]
    fn an_ipv4_dump_decodes_every_flow_as_natted() {
        let got = entries(1, &[&DUMP_ANSWER_V4, &DUMP_DONE_V4]);
        let mut ports: Vec<u16> = got.iter().filter_map(|e| e.original.src_port).collect();
        ports.sort();
        assert_eq!(ports, [40001, 40002, 40003, 40004, 40005, 40006]);
        let by_port = |p: u16| {
            got.iter()
                .find(|e| e.original.src_port == Some(p))
                .expect("flow")
        };
        let e = by_port(40002);
        assert_eq!(e.protocol, 17);
        assert_eq!(
            e.original,
            ConntrackTuple::new(sa("10.0.0.1:40002"), sa("10.96.0.10:53"))
        );
        assert_eq!(
            e.reply,
            ConntrackTuple::new(sa("10.0.0.3:5353"), sa("10.0.0.1:40002"))
        );
        assert_eq!((e.zone, e.mark, e.timeout), (0, Some(0), Some(29)));
        assert_eq!(e.id, Some(0x5564_83ec));
        // IPS_CONFIRMED | IPS_DST_NAT | IPS_SRC_NAT_DONE | IPS_DST_NAT_DONE
        assert_eq!(e.status, Some(0x1a8));
        assert_eq!(
            by_port(40003).original,
            ConntrackTuple::new(sa("10.0.0.1:40003"), sa("10.0.0.1:30053"))
        );
        let plain = by_port(40005);
        assert_eq!(
            plain.reply,
            ConntrackTuple::new(sa("10.0.0.2:9999"), sa("10.0.0.1:40005"))
        );
        assert_eq!(plain.family(), IpFamily::V4);
    }

    #[test]
    fn an_ipv6_dump_decodes() {
        let got = entries(0x6b0e_dc4b, &[&DUMP_ANSWER_V6, &DUMP_DONE_V6]);
        assert_eq!(got.len(), 1);
        let e = &got[0];
        assert_eq!(
            e.original,
            ConntrackTuple::new(sa("[fd00::1]:40001"), sa("[fd00:96::10]:53"))
        );
        assert_eq!(
            e.reply,
            ConntrackTuple::new(sa("[fd00::2]:5353"), sa("[fd00::1]:40001"))
        );
        assert_eq!(e.family(), IpFamily::V6);
    }

    #[test]
    fn a_delete_names_the_entrys_tuple_and_id() {
        let got = entries(1, &[&DUMP_ANSWER_V4, &DUMP_DONE_V4]);
        let e = got
            .iter()
            .find(|e| e.original.src_port == Some(40002))
            .expect("flow");
        // The kernel acknowledged exactly these bytes.
        assert_eq!(
            encode_request(delete_request(e), NLM_F_ACK, 1),
            DELETE_REQUEST
        );
        assert_eq!(Answer::<NfnlMessage>::new(1).feed(&DELETE_ACK), Ok(true));
        // The original tuple is byte for byte the one `conntrack -D` sends.
        let tool_entry = ConntrackEntry::new(
            Protocol::Udp,
            ConntrackTuple::new(sa("10.0.0.1:40000"), sa("10.96.0.10:53")),
            ConntrackTuple::new(sa("10.0.0.2:5353"), sa("10.0.0.1:40000")),
        );
        let tuple = emit_attrs(&[tuple_attr(CTA_TUPLE_ORIG, 17, &tool_entry.original)]);
        assert_eq!(tuple, TOOL_DELETE_REQUEST[20..20 + tuple.len()]);
        // A zone is named when it is not the default.
        let mut zoned = tool_entry.clone();
        zoned.zone = 5;
        let attrs = delete_request(&zoned).attributes;
        let parsed = parse_attrs(&attrs).expect("attrs");
        assert_eq!(
            parsed.iter().map(|a| a.0).collect::<Vec<_>>(),
            [CTA_TUPLE_ORIG, CTA_ZONE]
        );
        assert_eq!(parsed[1].1, [0, 5]);
        assert_eq!(delete_request(&zoned).family, AF_INET);
    }

    #[test]
    fn malformed_entries_are_refused() {
        let mut m = dump_request(IpFamily::V4);
        assert!(decode_entry(&m).is_err(), "a GET is not an entry");
        m.kind = IPCTNL_MSG_CT_NEW;
        assert_eq!(
            decode_entry(&m),
            Err("conntrack entry without both tuples".into())
        );
        m.attributes = emit_attrs(&[
            Attr::Nested(CTA_TUPLE_ORIG, vec![Attr::Nested(CTA_TUPLE_IP, vec![])]),
            Attr::Nested(CTA_TUPLE_REPLY, vec![]),
        ]);
        assert!(decode_entry(&m).is_err());
        m.attributes = emit_attrs(&[Attr::Bytes(CTA_ID, vec![1])]);
        assert!(decode_entry(&m).unwrap_err().contains("CTA_ID"));
    }

    fn udp(orig: (&str, &str), reply: (&str, &str)) -> ConntrackEntry {
        ConntrackEntry::new(
            Protocol::Udp,
            ConntrackTuple::new(sa(orig.0), sa(orig.1)),
            ConntrackTuple::new(sa(reply.0), sa(reply.1)),
        )
    }

    #[test]
    fn filters_match_like_kube_proxys() {
        let svc = "10.96.0.10".parse().unwrap();
        let ep: IpAddr = "10.244.0.5".parse().unwrap();
        let to_svc = udp(
            ("10.0.0.1:40000", "10.96.0.10:53"),
            ("10.244.0.5:5353", "10.0.0.1:40000"),
        );
        let to_np = udp(
            ("10.0.0.9:40000", "192.168.0.2:30053"),
            ("10.244.0.5:5353", "10.0.0.9:40000"),
        );
        let cases = [
            (
                ConntrackFilter::frontend(Protocol::Udp, svc, 53),
                [true, false],
            ),
            (
                ConntrackFilter::frontend(Protocol::Udp, svc, 54),
                [false, false],
            ),
            (
                ConntrackFilter::frontend(Protocol::Sctp, svc, 53),
                [false, false],
            ),
            (
                ConntrackFilter::node_port(Protocol::Udp, 30053),
                [false, true],
            ),
            (ConntrackFilter::node_port(Protocol::Udp, 53), [true, false]),
            (
                ConntrackFilter::frontend_endpoint(Protocol::Udp, svc, 53, ep, None),
                [true, false],
            ),
            (
                ConntrackFilter::frontend_endpoint(Protocol::Udp, svc, 53, ep, Some(5353)),
                [true, false],
            ),
            (
                ConntrackFilter::frontend_endpoint(Protocol::Udp, svc, 53, ep, Some(80)),
                [false, false],
            ),
            (
                ConntrackFilter::frontend_endpoint(Protocol::Udp, svc, 53, svc, None),
                [false, false],
            ),
            (
                ConntrackFilter::node_port_endpoint(Protocol::Udp, 30053, ep, None),
                [false, true],
            ),
            (
                ConntrackFilter::node_port_endpoint(Protocol::Udp, 30053, svc, None),
                [false, false],
            ),
        ];
        for (filter, [svc_hit, np_hit]) in cases {
            assert_eq!(filter.matches(&to_svc), svc_hit, "{filter:?}");
            assert_eq!(filter.matches(&to_np), np_hit, "{filter:?}");
        }
        // A filter that only names a protocol matches nothing.
        let bare = ConntrackFilter {
            protocol: Protocol::Udp,
            original: TupleMatch::default(),
            reply: TupleMatch::default(),
        };
        assert!(!bare.matches(&to_svc));
        assert_eq!(protocol_number(Protocol::Tcp), 6);
        assert_eq!(protocol_number(Protocol::Sctp), 132);
    }

    #[test]
    fn stale_filters_follow_kube_proxys_reconciler() {
        let entries = [
            // To a frontend, DNATed to a serving endpoint: kept.
            udp(
                ("10.0.0.1:1", "10.96.0.10:53"),
                ("10.244.0.5:5353", "10.0.0.1:1"),
            ),
            // Same frontend, to an endpoint that is gone: stale (twice, one filter).
            udp(
                ("10.0.0.1:2", "10.96.0.10:53"),
                ("10.244.0.6:5353", "10.0.0.1:2"),
            ),
            udp(
                ("10.0.0.1:3", "10.96.0.10:53"),
                ("10.244.0.6:5353", "10.0.0.1:3"),
            ),
            // The right endpoint IP on a stale target port: stale.
            udp(
                ("10.0.0.1:4", "10.96.0.10:53"),
                ("10.244.0.5:53", "10.0.0.1:4"),
            ),
            // A frontend without serving endpoints: stale.
            udp(
                ("10.0.0.1:5", "203.0.113.7:53"),
                ("10.244.0.5:5353", "10.0.0.1:5"),
            ),
            // A node port to a gone endpoint: stale.
            udp(
                ("10.0.0.9:6", "192.168.0.2:30053"),
                ("10.244.0.6:5353", "10.0.0.9:6"),
            ),
            // Unknown destinations: never touched.
            udp(
                ("10.0.0.1:7", "10.96.0.11:53"),
                ("10.244.0.6:5353", "10.0.0.1:7"),
            ),
        ];
        let mut tcp = entries[1].clone();
        tcp.protocol = 6;
        let ep = |s: &str| BTreeSet::from([sa(s)]);
        let serving = ServingEndpoints {
            frontends: BTreeMap::from([
                (("10.96.0.10".parse().unwrap(), 53), ep("10.244.0.5:5353")),
                (("203.0.113.7".parse().unwrap(), 53), BTreeSet::new()),
            ]),
            node_ports: BTreeMap::from([(30053, ep("10.244.0.5:5353"))]),
        };
        let mut all = entries.to_vec();
        all.push(tcp.clone());
        let filters = stale_entry_filters(&all, &serving);
        assert_eq!(filters.len(), 4, "{filters:#?}");
        let hit: Vec<bool> = all
            .iter()
            .map(|e| filters.iter().any(|f| f.matches(e)))
            .collect();
        assert_eq!(hit, [false, true, true, true, true, true, false, false]);
        assert!(stale_entry_filters(&all, &ServingEndpoints::default()).is_empty());
    }
}

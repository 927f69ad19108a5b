//! kube-ipvs0: the dummy link IPVS mode binds its service addresses to,
//! over rtnetlink (`NETLINK_ROUTE`).
//!
//! kube-proxy's IPVS mode makes every ClusterIP (and the external and
//! load-balancer IPs no other interface holds) a local address of the
//! dummy link `kube-ipvs0`, so that packets to them reach the IPVS hook.
//! It creates the link when `LinkByName` fails (`RTM_NEWLINK` with kind
//! `dummy`) and **never sets it up**; it binds each address with
//! `RTM_NEWADDR` (`/32` or `/128`, create|excl, `EEXIST` meaning "already
//! bound") and, after each successful sync, unbinds with `RTM_DELADDR`
//! every address of its family the link holds and the sync no longer
//! needs ([`plan_addresses`]).
//!
//! The messages are netlink-packet-route's; the socket is a blocking
//! netlink-sys socket, one request at a time, like the crate's nfnetlink
//! socket: every caller of this crate is synchronous and a sync sends a
//! handful of requests, so the `rtnetlink` crate's async runtime would buy
//! nothing. Encoding and decoding are pure and tested against bytes
//! `ip(8)` and the kernel exchanged (`testdata/netlink/`).

use std::net::IpAddr;

use kpinspect_core::net::IpFamily;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use thiserror::Error;

use crate::netlink::{Answer, AnswerError, EEXIST, EPERM, NetlinkError};

/// The link IPVS mode binds its addresses to.
pub const KUBE_IPVS0: &str = "kube-ipvs0";

/// The longest link name, in bytes (`IFNAMSIZ` less the NUL).
pub const LINK_NAME_MAX_LEN: usize = 15;

/// `ENXIO`, `ENODEV`, `EOPNOTSUPP`, `EADDRNOTAVAIL` (Linux numbering).
const ENXIO: i32 = 6;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;
const EADDRNOTAVAIL: i32 = 99;

/// A link as rtnetlink describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Link {
    /// Its name.
    pub name: String,
    /// Its index.
    pub index: u32,
    /// Its kind (`IFLA_INFO_KIND`: `dummy`, `veth`, ...); `None` for
    /// links without one (loopback, physical NICs).
    pub kind: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// What [`DummyLink::ensure_dummy`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkEnsured {
    /// The link was created (down, as kube-proxy leaves it).
    Created,
    /// A dummy link of that name existed; it was left as it was.
    Existed,
}

/// What [`DummyLink::add_address`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressAdded {
    /// The address was bound.
    Added,
    /// The link held it already (`EEXIST`; kube-proxy's "exist").
    AlreadyBound,
}

/// A failure to read or change a link or its addresses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The name is empty, longer than [`LINK_NAME_MAX_LEN`] bytes or holds
    /// `/`, `:`, whitespace or a NUL (the kernel's `dev_valid_name`).
    #[error(
        "invalid link name {name:?}: 1 to {LINK_NAME_MAX_LEN} bytes, no '/', ':' or whitespace"
    )]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No link has that name (`ENODEV`).
    #[error("link {name} does not exist")]
    NoSuchLink {
        /// The link.
        name: String,
    },
    /// A link of that name exists but is not a dummy link.
    #[error("link {name} exists but is not a dummy link (kind {})", kind.as_deref().unwrap_or("none"))]
    NotDummy {
        /// The link.
        name: String,
        /// Its kind.
        kind: Option<String>,
    },
    /// The kernel has no dummy links (`EOPNOTSUPP`: module `dummy`
    /// missing).
    #[error("dummy links are not available (modprobe dummy)")]
    DummyUnavailable,
    /// The kernel refused for lack of privileges (`EPERM`).
    #[error("{operation}: permission denied (run as root or with CAP_NET_ADMIN)")]
    Permission {
        /// What was being done.
        operation: String,
    },
    /// Another failure talking to the kernel.
    #[error(transparent)]
    Netlink(NetlinkError),
}

impl From<NetlinkError> for LinkError {
    fn from(e: NetlinkError) -> LinkError {
        match e {
            NetlinkError::Permission { operation } => LinkError::Permission { operation },
            e => LinkError::Netlink(e),
        }
    }
}

/// Checks `name` as the kernel's `dev_valid_name` does.
///
/// ```
/// use kpinspect_node::validate_link_name;
///
/// assert!(validate_link_name("kube-ipvs0").is_ok());
/// assert!(validate_link_name("").is_err());
/// assert!(validate_link_name("a-name-of-16-byt").is_err());
/// assert!(validate_link_name("eth0:1").is_err());
/// ```
pub fn validate_link_name(name: &str) -> Result<(), LinkError> {
    let bad = name.is_empty()
        || name.len() > LINK_NAME_MAX_LEN
        || name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if bad {
        Err(LinkError::InvalidName { name: name.into() })
    } else {
        Ok(())
    }
}

/// A node's links, as IPVS mode uses them (of one network namespace).
pub trait DummyLink {
    /// The link called `name`, `None` if there is none.
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError>;

    /// Creates dummy link `name`, down, unless a dummy link of that name
    /// exists ([`LinkError::NotDummy`] if a link of another kind does).
    fn ensure_dummy(&self, name: &str) -> Result<LinkEnsured, LinkError>;

    /// Deletes link `name` (kube-proxy's `--cleanup` deletes kube-ipvs0).
    fn delete_link(&self, name: &str) -> Result<(), LinkError>;

    /// The addresses of link `name`, in the kernel's order, IPv4 first.
    fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LinkError>;

    /// Binds `address` (`/32` or `/128`) to link `name`.
    fn add_address(&self, name: &str, address: IpAddr) -> Result<AddressAdded, LinkError>;

    /// Unbinds `address` from link `name`: `Ok(true)` if it was bound,
    /// `Ok(false)` if it was not (`EADDRNOTAVAIL`/`ENXIO`, which
    /// kube-proxy ignores too).
    fn del_address(&self, name: &str, address: IpAddr) -> Result<bool, LinkError>;

    /// Binds each of `addresses` to link `name`, in order: what
    /// [`DummyLink::add_address`] found for each. By default one call
    /// each; [`SystemLinks`] sends them over one socket, many a datagram
    /// (a failure there does not stop the rest of its datagram).
    fn add_addresses(
        &self,
        name: &str,
        addresses: &[IpAddr],
    ) -> Result<Vec<AddressAdded>, LinkError> {
        addresses
            .iter()
            .map(|a| self.add_address(name, *a))
            .collect()
    }

    /// Unbinds each of `addresses` from link `name`, in order: what
    /// [`DummyLink::del_address`] found for each (batched like
    /// [`DummyLink::add_addresses`]).
    fn del_addresses(&self, name: &str, addresses: &[IpAddr]) -> Result<Vec<bool>, LinkError> {
        addresses
            .iter()
            .map(|a| self.del_address(name, *a))
            .collect()
    }
}

/// Which addresses to bind to and unbind from kube-ipvs0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AddressPlan {
    /// Wanted and not bound, in the order wanted.
    pub add: Vec<IpAddr>,
    /// Bound, of a planned family, not wanted, in the link's order.
    pub delete: Vec<IpAddr>,
}

impl AddressPlan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }
}

/// Whether kube-proxy's address reading skips `ip` (loopback, IPv6
/// link-local): it neither counts as bound nor is ever unbound.
fn ignored_by_kube_proxy(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// kube-proxy's address step for the proxiers of `families`: bind each
/// `desired` address of those families the link lacks, unbind each bound
/// address of those families (loopback and IPv6 link-local aside) that is
/// not desired. Addresses of other families, desired or bound, are left
/// alone (another proxier owns them).
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::plan_addresses;
///
/// let ip = |s: &str| s.parse().unwrap();
/// let plan = plan_addresses(
///     &[ip("10.96.0.1"), ip("10.96.0.10")],
///     &[ip("10.96.0.10"), ip("10.96.0.99"), ip("fd00::1")],
///     &[IpFamily::V4],
/// );
/// assert_eq!(plan.add, [ip("10.96.0.1")]);
/// assert_eq!(plan.delete, [ip("10.96.0.99")]);
/// ```
pub fn plan_addresses(
    desired: &[IpAddr],
    current: &[IpAddr],
    families: &[IpFamily],
) -> AddressPlan {
    let mut plan = AddressPlan::default();
    for ip in desired {
        if families.contains(&IpFamily::of(ip)) && !current.contains(ip) && !plan.add.contains(ip) {
            plan.add.push(*ip);
        }
    }
    for ip in current {
        if families.contains(&IpFamily::of(ip))
            && !ignored_by_kube_proxy(ip)
            && !desired.contains(ip)
            && !plan.delete.contains(ip)
        {
            plan.delete.push(*ip);
        }
    }
    plan
}

/// Ensures dummy link `name`, then binds and unbinds addresses so that its
/// addresses of `families` are `desired` (kube-proxy's order: bind first,
/// unbind after). Returns the plan it carried out.
///
/// ```
/// use kpinspect_core::net::IpFamily;
/// use kpinspect_node::{DummyLink, KUBE_IPVS0, MemoryNode, sync_addresses};
///
/// let node = MemoryNode::new();
/// let ip = |s: &str| s.parse().unwrap();
/// let done = sync_addresses(&node, KUBE_IPVS0, &[ip("10.96.0.1")], &[IpFamily::V4]).unwrap();
/// assert_eq!(done.add, [ip("10.96.0.1")]);
/// assert_eq!(node.addresses(KUBE_IPVS0).unwrap(), [ip("10.96.0.1")]);
/// assert!(!node.link(KUBE_IPVS0).unwrap().unwrap().up);
/// // A second sync has nothing to do.
/// assert!(sync_addresses(&node, KUBE_IPVS0, &[ip("10.96.0.1")], &[IpFamily::V4]).unwrap().is_empty());
/// ```
pub fn sync_addresses(
    links: &impl DummyLink,
    name: &str,
    desired: &[IpAddr],
    families: &[IpFamily],
) -> Result<AddressPlan, LinkError> {
    links.ensure_dummy(name)?;
    let plan = plan_addresses(desired, &links.addresses(name)?, families);
    for ip in &plan.add {
        links.add_address(name, *ip)?;
    }
    for ip in &plan.delete {
        links.del_address(name, *ip)?;
    }
    Ok(plan)
}

// ---------------------------------------------------------------- encoding

/// The bytes of an rtnetlink request (`NLM_F_REQUEST` always set).
pub(crate) fn encode(message: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags | NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Flags of a request that creates something new.
const NEW_FLAGS: u16 = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;

/// `RTM_GETLINK` for `name`.
pub(crate) fn get_link_request(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    RouteNetlinkMessage::GetLink(m)
}

/// `RTM_NEWLINK` of a dummy link `name` (down: no `IFF_UP`).
pub(crate) fn new_dummy_request(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m.attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
            InfoKind::Dummy,
        )]));
    RouteNetlinkMessage::NewLink(m)
}

/// `RTM_DELLINK` of `name`.
pub(crate) fn del_link_request(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.into()));
    RouteNetlinkMessage::DelLink(m)
}

/// `RTM_GETADDR` dump naming link `index`, as `ip addr show dev X` sends
/// it: the kernel filters by it only on sockets with
/// `NETLINK_GET_STRICT_CHK`, so the answer is filtered again.
pub(crate) fn dump_addresses_request(index: u32) -> RouteNetlinkMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    RouteNetlinkMessage::GetAddress(m)
}

/// The address message of `address` as a host address (`/32`, `/128`) of
/// link `index`: `IFA_LOCAL` and `IFA_ADDRESS`, as `ip addr` sends them.
fn address_message(index: u32, address: IpAddr) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.prefix_len = match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(address));
    m.attributes.push(AddressAttribute::Address(address));
    m
}

/// `RTM_NEWADDR` of `address` on link `index`.
pub(crate) fn new_address_request(index: u32, address: IpAddr) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewAddress(address_message(index, address))
}

/// `RTM_DELADDR` of `address` on link `index`.
pub(crate) fn del_address_request(index: u32, address: IpAddr) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelAddress(address_message(index, address))
}

/// The link an `RTM_NEWLINK` answer describes.
pub(crate) fn decode_link(message: &RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(m) = message else {
        return None;
    };
    let mut link = Link {
        name: String::new(),
        index: m.header.index,
        kind: None,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name = n.clone(),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

/// The link index and address of an `RTM_NEWADDR` answer: `IFA_LOCAL`,
/// else `IFA_ADDRESS` (IPv6 sends only the latter).
pub(crate) fn decode_address(message: &RouteNetlinkMessage) -> Option<(u32, IpAddr)> {
    let RouteNetlinkMessage::NewAddress(m) = message else {
        return None;
    };
    let local = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => Some(*ip),
        _ => None,
    });
    local.or(address).map(|ip| (m.header.index, ip))
}

// ------------------------------------------------------------------ system

/// A blocking `NETLINK_ROUTE` socket, one request at a time.
struct RtnlSocket {
    socket: netlink_sys::Socket,
    seq: u32,
}

impl RtnlSocket {
    fn open(operation: &str) -> Result<RtnlSocket, NetlinkError> {
        Ok(RtnlSocket {
            socket: crate::netlink::open_socket(netlink_sys::protocols::NETLINK_ROUTE, operation)?,
            seq: 0,
        })
    }

    /// Sends `message` with `flags` (`NLM_F_ACK` or `NLM_F_DUMP` needed)
    /// and returns the answer's messages, or the kernel's errno.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        operation: &str,
    ) -> Result<Result<Vec<RouteNetlinkMessage>, i32>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let io = |e: std::io::Error| NetlinkError::Socket {
            operation: operation.into(),
            message: e.to_string(),
        };
        self.socket
            .send(&encode(message, flags, self.seq), 0)
            .map_err(io)?;
        let mut answer = Answer::<RouteNetlinkMessage>::new(self.seq);
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io)?;
            match answer.feed(&datagram) {
                Ok(true) => return Ok(Ok(answer.into_messages())),
                Ok(false) => {}
                Err(AnswerError::Errno(errno)) => return Ok(Err(errno)),
                Err(AnswerError::Decode(message)) => {
                    return Err(NetlinkError::Decode {
                        operation: operation.into(),
                        message,
                    });
                }
            }
        }
    }
}

/// The kernel's error `errno` for `operation`, typed.
fn kernel_error(operation: &str, errno: i32) -> LinkError {
    if errno == EPERM {
        return LinkError::Permission {
            operation: operation.into(),
        };
    }
    NetlinkError::from_errno(operation, errno).into()
}

/// This process's network namespace's links, over rtnetlink. Changes need
/// `CAP_NET_ADMIN`; reading does not.
///
/// ```
/// use kpinspect_node::{DummyLink, LinkError, SystemLinks};
///
/// // Invalid names are refused before the kernel is asked.
/// assert!(matches!(SystemLinks.ensure_dummy("bad/name"), Err(LinkError::InvalidName { .. })));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemLinks;

impl SystemLinks {
    /// The index of link `name`, or [`LinkError::NoSuchLink`].
    /// Binds (`add`) or unbinds `addresses` on link `name` in batches:
    /// `outcome` maps each request's errno (none: it succeeded) to its
    /// result, or to `None` for a failure, the first of which is returned.
    fn batch<T>(
        &self,
        name: &str,
        addresses: &[IpAddr],
        add: bool,
        outcome: impl Fn(Option<i32>) -> Option<T>,
    ) -> Result<Vec<T>, LinkError> {
        validate_link_name(name)?;
        if addresses.is_empty() {
            return Ok(Vec::new());
        }
        let verb = if add { "add" } else { "del" };
        let op = format!("ip addr {verb} ({} addresses) dev {name}", addresses.len());
        let mut sock = RtnlSocket::open(&op)?;
        let index = self.index(&mut sock, name, &op)?;
        let mut out = Vec::with_capacity(addresses.len());
        for chunk in addresses.chunks(crate::netlink::BATCH_MESSAGES) {
            let mut batch = crate::netlink::Batch::default();
            for (i, address) in chunk.iter().enumerate() {
                let (request, flags) = if add {
                    (new_address_request(index, *address), NEW_FLAGS & !NLM_F_ACK)
                } else {
                    (del_address_request(index, *address), 0)
                };
                let flags = if i + 1 == chunk.len() {
                    flags | NLM_F_ACK
                } else {
                    flags
                };
                sock.seq = sock.seq.wrapping_add(1);
                batch.push(&encode(request, flags, sock.seq), sock.seq);
            }
            let errors = crate::netlink::send_batch(&sock.socket, &batch, &op)?;
            let first = batch.first.unwrap_or(0);
            let mut errors = errors.into_iter().peekable();
            for (i, address) in chunk.iter().enumerate() {
                let errno = errors
                    .next_if(|(seq, _)| seq.wrapping_sub(first) as usize == i)
                    .map(|(_, errno)| errno);
                match outcome(errno) {
                    Some(found) => out.push(found),
                    None => {
                        let what = format!(
                            "ip addr {verb} {address}/{} dev {name}",
                            host_prefix(*address)
                        );
                        return Err(kernel_error(&what, errno.unwrap_or(0)));
                    }
                }
            }
        }
        Ok(out)
    }

    fn index(&self, sock: &mut RtnlSocket, name: &str, op: &str) -> Result<u32, LinkError> {
        match get_link(sock, name, op)? {
            Some(link) => Ok(link.index),
            None => Err(LinkError::NoSuchLink { name: name.into() }),
        }
    }
}

fn get_link(sock: &mut RtnlSocket, name: &str, op: &str) -> Result<Option<Link>, LinkError> {
    match sock.request(get_link_request(name), NLM_F_ACK, op)? {
        Ok(messages) => Ok(messages.iter().find_map(decode_link)),
        Err(ENODEV) => Ok(None),
        Err(errno) => Err(kernel_error(op, errno)),
    }
}

impl DummyLink for SystemLinks {
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        validate_link_name(name)?;
        let op = format!("ip link show {name}");
        get_link(&mut RtnlSocket::open(&op)?, name, &op)
    }

    fn ensure_dummy(&self, name: &str) -> Result<LinkEnsured, LinkError> {
        validate_link_name(name)?;
        let op = format!("ip link add {name} type dummy");
        let mut sock = RtnlSocket::open(&op)?;
        let existing = |sock: &mut RtnlSocket| -> Result<Option<LinkEnsured>, LinkError> {
            match get_link(sock, name, &op)? {
                Some(l) if l.kind.as_deref() == Some("dummy") => Ok(Some(LinkEnsured::Existed)),
                Some(l) => Err(LinkError::NotDummy {
                    name: name.into(),
                    kind: l.kind,
                }),
                None => Ok(None),
            }
        };
        if let Some(found) = existing(&mut sock)? {
            return Ok(found);
        }
        match sock.request(new_dummy_request(name), NEW_FLAGS, &op)? {
            Ok(_) => Ok(LinkEnsured::Created),
            // Created meanwhile by someone else.
            Err(EEXIST) => existing(&mut sock)?.ok_or_else(|| kernel_error(&op, EEXIST)),
            Err(EOPNOTSUPP) => Err(LinkError::DummyUnavailable),
            Err(errno) => Err(kernel_error(&op, errno)),
        }
    }

    fn delete_link(&self, name: &str) -> Result<(), LinkError> {
        validate_link_name(name)?;
        let op = format!("ip link del {name}");
        match RtnlSocket::open(&op)?.request(del_link_request(name), NLM_F_ACK, &op)? {
            Ok(_) => Ok(()),
            Err(ENODEV) => Err(LinkError::NoSuchLink { name: name.into() }),
            Err(errno) => Err(kernel_error(&op, errno)),
        }
    }

    fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, LinkError> {
        validate_link_name(name)?;
        let op = format!("ip addr show dev {name}");
        let mut sock = RtnlSocket::open(&op)?;
        let index = self.index(&mut sock, name, &op)?;
        match sock.request(dump_addresses_request(index), NLM_F_DUMP, &op)? {
            Ok(messages) => Ok(messages
                .iter()
                .filter_map(decode_address)
                .filter(|(i, _)| *i == index)
                .map(|(_, ip)| ip)
                .collect()),
            Err(errno) => Err(kernel_error(&op, errno)),
        }
    }

    fn add_address(&self, name: &str, address: IpAddr) -> Result<AddressAdded, LinkError> {
        validate_link_name(name)?;
        let op = format!("ip addr add {address}/{} dev {name}", host_prefix(address));
        let mut sock = RtnlSocket::open(&op)?;
        let index = self.index(&mut sock, name, &op)?;
        match sock.request(new_address_request(index, address), NEW_FLAGS, &op)? {
            Ok(_) => Ok(AddressAdded::Added),
            Err(EEXIST) => Ok(AddressAdded::AlreadyBound),
            Err(errno) => Err(kernel_error(&op, errno)),
        }
    }

    /// One socket and one link lookup; up to 128 requests a datagram.
    fn add_addresses(
        &self,
        name: &str,
        addresses: &[IpAddr],
    ) -> Result<Vec<AddressAdded>, LinkError> {
        self.batch(name, addresses, true, |errno| match errno {
            None => Some(AddressAdded::Added),
            Some(EEXIST) => Some(AddressAdded::AlreadyBound),
            Some(_) => None,
        })
    }

    /// One socket and one link lookup, as [`SystemLinks::add_addresses`].
    fn del_addresses(&self, name: &str, addresses: &[IpAddr]) -> Result<Vec<bool>, LinkError> {
        self.batch(name, addresses, false, |errno| match errno {
            None => Some(true),
            Some(EADDRNOTAVAIL | ENXIO) => Some(false),
            Some(_) => None,
        })
    }

    fn del_address(&self, name: &str, address: IpAddr) -> Result<bool, LinkError> {
        validate_link_name(name)?;
        let op = format!("ip addr del {address}/{} dev {name}", host_prefix(address));
        let mut sock = RtnlSocket::open(&op)?;
        let index = self.index(&mut sock, name, &op)?;
        match sock.request(del_address_request(index, address), NLM_F_ACK, &op)? {
            Ok(_) => Ok(true),
            Err(EADDRNOTAVAIL | ENXIO) => Ok(false),
            Err(errno) => Err(kernel_error(&op, errno)),
        }
    }
}

/// 32 or 128.
fn host_prefix(address: IpAddr) -> u8 {
    match address {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpinspect_core::net::IpFamily;

    /// Bytes `ip(8)` (iproute2 6.1) and the kernel (Debian's 6.1) exchanged;
    /// see `testdata/netlink/README.md`.
    #[allow(dead_code)]
    mod golden {
        include!("../testdata/netlink/link_golden.rs");
    }
    use golden::*;

    /// What kpinspect itself sent and the kernel answered (the VM check
    /// `kube-ipvs0 over rtnetlink` under strace); see the README there.
    #[allow(dead_code)]
    mod kp {
        include!("../testdata/netlink/kpinspect_link_golden.rs");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// `encode` with the sequence number of `golden`, whose bytes 8..12 it
    /// is.
    fn encode_like(message: RouteNetlinkMessage, flags: u16, golden: &[u8]) -> Vec<u8> {
        let seq = u32::from_le_bytes(golden[8..12].try_into().expect("seq"));
        encode(message, flags, seq)
    }

    #[test]
    fn new_dummy_link_is_ip_link_adds_request() {
        // iproute2 sends IFLA_INFO_KIND "dummy" without its NUL (length
        // 9), netlink-packet-route with it (length 10, as the kernel's own
        // answers carry it); the padded sizes and every other byte agree.
        let ours = encode_like(new_dummy_request(KUBE_IPVS0), NEW_FLAGS, &LINK_ADD_SEND0);
        let mut theirs = LINK_ADD_SEND0.to_vec();
        assert_eq!(theirs[0x34], 9);
        theirs[0x34] = 10;
        assert_eq!(ours, theirs);
    }

    #[test]
    fn link_answers_decode() {
        let mut ack = Answer::<RouteNetlinkMessage>::new(seq_of(&LINK_ADD_SEND0));
        assert_eq!(ack.feed(&LINK_ADD_RECV1), Ok(true));
        let mut exists = Answer::<RouteNetlinkMessage>::new(seq_of(&LINK_ADD_AGAIN_SEND0));
        assert_eq!(
            exists.feed(&LINK_ADD_AGAIN_RECV1),
            Err(AnswerError::Errno(EEXIST))
        );

        // `ip -d link show kube-ipvs0`: a GET answered with one message.
        let mut show = Answer::<RouteNetlinkMessage>::new(seq_of(&LINK_SHOW_SEND0));
        assert_eq!(show.feed(&LINK_SHOW_RECV1), Ok(false), "no ACK asked");
        let messages = show.into_messages();
        assert_eq!(
            messages.iter().find_map(decode_link),
            Some(Link {
                name: KUBE_IPVS0.into(),
                index: 2,
                kind: Some("dummy".into()),
                up: false,
            })
        );
        // Our GET asks for an ACK; the kernel then ends the answer with one.
        let mut get = Answer::<RouteNetlinkMessage>::new(seq_of(&LINK_SHOW_SEND0));
        let ack = ack_for(&LINK_SHOW_SEND0);
        assert_eq!(get.feed(&LINK_SHOW_RECV1), Ok(false));
        assert_eq!(get.feed(&ack), Ok(true));
        assert_eq!(get.into_messages().len(), 1);
    }

    /// The sequence number of a request.
    fn seq_of(request: &[u8]) -> u32 {
        u32::from_le_bytes(request[8..12].try_into().expect("seq"))
    }

    /// The kernel's ACK of `request` (NLMSG_ERROR 0, request header
    /// echoed, NLM_F_CAPPED), as in `ADDR_ADD4_RECV0`.
    fn ack_for(request: &[u8]) -> Vec<u8> {
        let mut ack = ADDR_ADD4_RECV0.to_vec();
        ack[8..12].copy_from_slice(&request[8..12]);
        ack[0x14..0x24].copy_from_slice(&request[..16]);
        ack
    }

    #[test]
    fn address_requests_are_ip_addrs() {
        // The link's index (2) is in bytes 20..24 of each.
        let add4 = encode_like(
            new_address_request(2, ip("10.96.0.10")),
            NEW_FLAGS,
            &ADDR_ADD4_SEND0,
        );
        assert_eq!(add4, ADDR_ADD4_SEND0);
        let add6 = encode_like(
            new_address_request(2, ip("fd00:96::10")),
            NEW_FLAGS,
            &ADDR_ADD6_SEND0,
        );
        assert_eq!(add6, ADDR_ADD6_SEND0);
        let del4 = encode_like(
            del_address_request(2, ip("10.96.0.10")),
            NLM_F_ACK,
            &ADDR_DEL4_SEND0,
        );
        assert_eq!(del4, ADDR_DEL4_SEND0);
        let del6 = encode_like(
            del_address_request(2, ip("fd00:96::10")),
            NLM_F_ACK,
            &ADDR_DEL6_SEND0,
        );
        assert_eq!(del6, ADDR_DEL6_SEND0);
        // The dump: iproute2's 24-byte header (in a 152-byte buffer).
        let dump = encode_like(dump_addresses_request(2), NLM_F_DUMP, &ADDR_SHOW_SEND1);
        assert_eq!(dump, ADDR_SHOW_SEND1[..24]);
    }

    #[test]
    fn address_answers_decode() {
        let mut add = Answer::<RouteNetlinkMessage>::new(seq_of(&ADDR_ADD4_SEND0));
        assert_eq!(add.feed(&ADDR_ADD4_RECV0), Ok(true));
        let mut again = Answer::<RouteNetlinkMessage>::new(seq_of(&ADDR_ADD4_AGAIN_SEND0));
        assert_eq!(
            again.feed(&ADDR_ADD4_AGAIN_RECV0),
            Err(AnswerError::Errno(EEXIST))
        );
        let mut gone = Answer::<RouteNetlinkMessage>::new(seq_of(&ADDR_DEL4_AGAIN_SEND0));
        assert_eq!(
            gone.feed(&ADDR_DEL4_AGAIN_RECV0),
            Err(AnswerError::Errno(EADDRNOTAVAIL))
        );

        let mut dump = Answer::<RouteNetlinkMessage>::new(seq_of(&ADDR_SHOW_SEND1));
        assert_eq!(dump.feed(&ADDR_SHOW_RECV1), Ok(false));
        assert_eq!(dump.feed(&ADDR_SHOW_RECV2), Ok(false));
        assert_eq!(dump.feed(&ADDR_SHOW_RECV3), Ok(true));
        let addresses: Vec<_> = dump
            .into_messages()
            .iter()
            .filter_map(decode_address)
            .collect();
        assert_eq!(addresses, [(2, ip("10.96.0.10")), (2, ip("fd00:96::10"))]);
        assert!(matches!(
            Answer::<RouteNetlinkMessage>::new(1).feed(&ADDR_SHOW_RECV3[..10]),
            Err(AnswerError::Decode(_))
        ));
    }

    #[test]
    fn kpinspects_own_exchanges_with_the_kernel() {
        use kp::*;
        // Each operation opens a socket; its requests count from 1.
        assert_eq!(encode(get_link_request(KUBE_IPVS0), NLM_F_ACK, 1), KP0_SEND);
        assert_eq!(
            Answer::<RouteNetlinkMessage>::new(1).feed(&KP0_RECV0),
            Err(AnswerError::Errno(ENODEV))
        );
        assert_eq!(
            encode(new_dummy_request(KUBE_IPVS0), NEW_FLAGS, 2),
            KP3_SEND
        );
        assert_eq!(
            Answer::<RouteNetlinkMessage>::new(2).feed(&KP3_RECV0),
            Ok(true)
        );

        // A GET with NLM_F_ACK: the link, then the ACK in another datagram.
        assert_eq!(encode(get_link_request(KUBE_IPVS0), NLM_F_ACK, 1), KP4_SEND);
        let mut get = Answer::<RouteNetlinkMessage>::new(1);
        assert_eq!(get.feed(&KP4_RECV0), Ok(false));
        assert_eq!(get.feed(&KP4_RECV1), Ok(true));
        let link = get.into_messages().iter().find_map(decode_link);
        assert_eq!(
            link.map(|l| (l.index, l.kind, l.up)),
            Some((2, Some("dummy".into()), false))
        );

        assert_eq!(
            encode(new_address_request(2, ip("10.96.0.10")), NEW_FLAGS, 2),
            KP13_SEND
        );
        assert_eq!(
            Answer::<RouteNetlinkMessage>::new(2).feed(&KP13_RECV0),
            Err(AnswerError::Errno(EEXIST))
        );

        assert_eq!(encode(dump_addresses_request(2), NLM_F_DUMP, 2), KP15_SEND);
        let mut dump = Answer::<RouteNetlinkMessage>::new(2);
        assert_eq!(dump.feed(&KP15_RECV0), Ok(false));
        assert_eq!(dump.feed(&KP15_RECV1), Ok(false));
        assert_eq!(dump.feed(&KP15_RECV2), Ok(true));
        // The socket has no NETLINK_GET_STRICT_CHK: the kernel ignores the
        // index and dumps the loopback's addresses too.
        let addresses: Vec<_> = dump
            .into_messages()
            .iter()
            .filter_map(decode_address)
            .collect();
        assert_eq!(
            addresses,
            [
                (1, ip("127.0.0.1")),
                (2, ip("10.96.0.10")),
                (2, ip("10.96.0.11")),
                (1, ip("::1")),
                (2, ip("fd00:96::10")),
            ]
        );

        assert_eq!(
            encode(del_address_request(2, ip("10.96.0.10")), NLM_F_ACK, 2),
            KP19_SEND
        );
        assert_eq!(
            Answer::<RouteNetlinkMessage>::new(2).feed(&KP19_RECV0),
            Err(AnswerError::Errno(EADDRNOTAVAIL))
        );
        assert_eq!(
            encode(del_link_request(KUBE_IPVS0), NLM_F_ACK, 1),
            KP27_SEND
        );
        assert_eq!(
            Answer::<RouteNetlinkMessage>::new(1).feed(&KP27_RECV0),
            Ok(true)
        );
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(
            kernel_error("x", EPERM),
            LinkError::Permission { .. }
        ));
        assert_eq!(
            kernel_error("ip link add kube-ipvs0 type dummy", EEXIST).to_string(),
            "ip link add kube-ipvs0 type dummy: File exists (errno 17)"
        );
        assert_eq!(
            LinkError::DummyUnavailable.to_string(),
            "dummy links are not available (modprobe dummy)"
        );
        assert_eq!(
            LinkError::NoSuchLink {
                name: KUBE_IPVS0.into()
            }
            .to_string(),
            "link kube-ipvs0 does not exist"
        );
    }

    #[test]
    fn the_planner_unbinds_only_its_families_and_converges() {
        let current = [
            ip("10.96.0.10"),
            ip("10.96.0.99"),
            ip("127.0.0.2"),
            ip("fd00::99"),
            ip("fe80::1"),
        ];
        let desired = [
            ip("10.96.0.10"),
            ip("10.96.0.1"),
            ip("10.96.0.1"),
            ip("fd00::1"),
        ];
        let v4 = plan_addresses(&desired, &current, &[IpFamily::V4]);
        assert_eq!(v4.add, [ip("10.96.0.1")]);
        assert_eq!(v4.delete, [ip("10.96.0.99")]);
        let both = plan_addresses(&desired, &current, &[IpFamily::V4, IpFamily::V6]);
        assert_eq!(both.add, [ip("10.96.0.1"), ip("fd00::1")]);
        assert_eq!(both.delete, [ip("10.96.0.99"), ip("fd00::99")]);
        // Applied, a second plan is empty.
        let after: Vec<IpAddr> = current
            .iter()
            .filter(|a| !both.delete.contains(a))
            .chain(&both.add)
            .copied()
            .collect();
        assert!(plan_addresses(&desired, &after, &[IpFamily::V4, IpFamily::V6]).is_empty());
    }

    #[test]
    fn memory_node_links() {
        let node = crate::MemoryNode::new();
        assert_eq!(node.link(KUBE_IPVS0), Ok(None));
        assert_eq!(
            node.addresses(KUBE_IPVS0),
            Err(LinkError::NoSuchLink {
                name: KUBE_IPVS0.into()
            })
        );
        assert_eq!(node.ensure_dummy(KUBE_IPVS0), Ok(LinkEnsured::Created));
        assert_eq!(node.ensure_dummy(KUBE_IPVS0), Ok(LinkEnsured::Existed));
        assert_eq!(
            node.add_address(KUBE_IPVS0, ip("fd00::1")),
            Ok(AddressAdded::Added)
        );
        assert_eq!(
            node.add_address(KUBE_IPVS0, ip("10.0.0.1")),
            Ok(AddressAdded::Added)
        );
        assert_eq!(
            node.add_address(KUBE_IPVS0, ip("10.0.0.1")),
            Ok(AddressAdded::AlreadyBound)
        );
        assert_eq!(
            node.addresses(KUBE_IPVS0),
            Ok(vec![ip("10.0.0.1"), ip("fd00::1")])
        );
        assert_eq!(node.del_address(KUBE_IPVS0, ip("10.0.0.1")), Ok(true));
        assert_eq!(node.del_address(KUBE_IPVS0, ip("10.0.0.1")), Ok(false));
        assert_eq!(node.delete_link(KUBE_IPVS0), Ok(()));
        assert!(node.delete_link(KUBE_IPVS0).is_err());
        let lo = crate::MemoryNode::new().with_host(crate::HostInputs {
            interfaces: vec![crate::Interface {
                name: "lo".into(),
                up: true,
                loopback: true,
                addresses: vec![],
            }],
            ..Default::default()
        });
        assert!(matches!(
            lo.ensure_dummy("lo"),
            Err(LinkError::NotDummy { .. })
        ));
    }
}

//! The IPVS generic netlink protocol — what `ipvsadm` (libipvs) and
//! kube-proxy's IPVS mode send to the kernel and what it answers — as
//! values, encoded and decoded byte for byte. Pure: no sockets (the client
//! is `kpinspect_node::ipvs`).
//!
//! A generic netlink message is a netlink header whose type is the
//! family's id (assigned when `ip_vs` loads; [`ctrl`] looks it up by the
//! name [`IPVS_GENL_NAME`]), a 4-byte `genlmsghdr` (command, version,
//! reserved) and attributes. The genl header is written here by hand
//! (netlink-packet-generic is not in the workspace's lock; four bytes do
//! not need it); attributes use netlink-packet-core's [`Nla`] and
//! [`Emitable`].
//!
//! One module per kernel object: [`service`] (`IPVS_SVC_ATTR_*`),
//! [`destination`] (`IPVS_DEST_ATTR_*`), [`stats`] (`IPVS_STATS_ATTR_*`),
//! [`config`] (timeouts, info), [`message`] (`IPVS_CMD_*`,
//! `IPVS_CMD_ATTR_*`); each value is [`Emitable`] and
//! [`Parseable`](netlink_packet_core::Parseable) (`Service`, `Destination`
//! and `Stats` as the attributes inside their nested attribute;
//! `IpvsMessage` as a generic netlink payload, also a
//! `NetlinkSerializable`/`NetlinkDeserializable`). Byte orders are the kernel's: ports and IPv4
//! netmasks big-endian, everything else in host order; addresses are 16
//! bytes (IPv4 zero-padded). Attributes this crate does not know are kept
//! ([`DefaultNla`], flags included) and encoded again after the known ones.
//!
//! The unit tests decode answers the kernel (Linux 6.1) sent to ipvsadm
//! 1.31 and encode ipvsadm's requests (`testdata/`).
//!
//! ```
//! use kpinspect_ipvs::{Destination, ForwardingMethod, IpvsCommand, IpvsMessage, Service};
//! use netlink_packet_core::Emitable;
//!
//! // ipvsadm -a -t 10.96.0.10:80 -r 10.244.0.11:8080 -m, for a family id 0x20.
//! let svc = Service::tcp("10.96.0.10:80".parse().unwrap());
//! let dest = Destination::new("10.244.0.11:8080".parse().unwrap(), ForwardingMethod::Masquerade, 1);
//! let msg = IpvsMessage::new(0x20, IpvsCommand::NewDest)
//!     .with_service(svc.key())
//!     .with_destination(dest);
//! let mut bytes = vec![0; msg.buffer_len()];
//! msg.emit(&mut bytes);
//! assert_eq!(&bytes[..4], &[5, 1, 0, 0]); // IPVS_CMD_NEW_DEST, version 1
//! let back = IpvsMessage::parse(0x20, &bytes).unwrap();
//! assert_eq!(back, msg);
//! let port = back.destination.unwrap().port;
//! assert_eq!(port, Some(8080));
//! ```
//!
//! [`Nla`]: netlink_packet_core::Nla
//! [`Emitable`]: netlink_packet_core::Emitable
//! [`DefaultNla`]: netlink_packet_core::DefaultNla

#![deny(missing_docs)]

mod attr;
pub mod config;
pub mod ctrl;
pub mod destination;
mod error;
pub mod message;
pub mod service;
pub mod stats;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use config::{Info, Timeouts};
pub use destination::{Destination, ForwardingMethod};
pub use error::IpvsDecodeError;
pub use message::{IpvsCommand, IpvsMessage};
pub use service::{IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Service, ServiceFlags};
pub use stats::Stats;

/// The generic netlink family's name.
pub const IPVS_GENL_NAME: &str = "IPVS";
/// The family's version (`genlmsghdr.version`).
pub const IPVS_GENL_VERSION: u8 = 1;
/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;
/// `GENL_HDRLEN`: cmd, version, reserved.
pub const GENL_HDRLEN: usize = 4;

/// An address as the kernel sends it: `union nf_inet_addr`, 16 bytes.
pub(crate) fn encode_address(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => {
            let mut v = v4.octets().to_vec();
            v.resize(16, 0);
            v
        }
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Reads an address of `family` (4 or 16 bytes). Without a family, 16
/// bytes with 12 zeros at the end are IPv4.
pub(crate) fn decode_address(
    bytes: &[u8],
    family: Option<u16>,
    what: &'static str,
) -> Result<IpAddr, IpvsDecodeError> {
    let bad = || IpvsDecodeError::BadLength {
        what,
        len: bytes.len(),
        expected: "4 or 16",
    };
    if bytes.len() != 4 && bytes.len() != 16 {
        return Err(bad());
    }
    let v4 = || IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]));
    match family {
        Some(AF_INET) => Ok(v4()),
        Some(AF_INET6) => {
            let b: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        Some(family) => Err(IpvsDecodeError::UnknownFamily { what, family }),
        None if bytes.len() == 4 || bytes[4..].iter().all(|&b| b == 0) => Ok(v4()),
        None => {
            let b: [u8; 16] = bytes.try_into().map_err(|_| bad())?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

#[cfg(test)]
mod tests;

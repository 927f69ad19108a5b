//! `IPVS_CMD_ATTR_SERVICE`: a virtual service, keyed by protocol, address
//! and port, or by firewall mark.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::DefaultNla;

use crate::IpvsDecodeError;
use crate::attr::{Attr, attrs, fixed, string, u16_be, u16_ne, u32_ne};
use crate::stats::Stats;
use crate::{AF_INET, AF_INET6, decode_address, encode_address};

const IPVS_SVC_ATTR_AF: u16 = 1;
const IPVS_SVC_ATTR_PROTOCOL: u16 = 2;
const IPVS_SVC_ATTR_ADDR: u16 = 3;
const IPVS_SVC_ATTR_PORT: u16 = 4;
const IPVS_SVC_ATTR_FWMARK: u16 = 5;
const IPVS_SVC_ATTR_SCHED_NAME: u16 = 6;
const IPVS_SVC_ATTR_FLAGS: u16 = 7;
const IPVS_SVC_ATTR_TIMEOUT: u16 = 8;
const IPVS_SVC_ATTR_NETMASK: u16 = 9;
const IPVS_SVC_ATTR_STATS: u16 = 10;
const IPVS_SVC_ATTR_PE_NAME: u16 = 11;
const IPVS_SVC_ATTR_STATS64: u16 = 12;

/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u16 = 132;

/// `struct ip_vs_flags`: the service's flags, and which of them a request
/// sets (the kernel answers with `mask` all ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ServiceFlags {
    /// `IP_VS_SVC_F_*` bits.
    pub flags: u32,
    /// The bits of `flags` that count.
    pub mask: u32,
}

impl ServiceFlags {
    /// `IP_VS_SVC_F_PERSISTENT`: a client sticks to its destination.
    pub const PERSISTENT: u32 = 0x0001;
    /// `IP_VS_SVC_F_HASHED`: the kernel's own (the service is in its table).
    pub const HASHED: u32 = 0x0002;
    /// `IP_VS_SVC_F_ONEPACKET`: schedule every UDP packet on its own.
    pub const ONEPACKET: u32 = 0x0004;
    /// `IP_VS_SVC_F_SCHED1` (`sh-fallback` for `sh`, `mh-fallback` for `mh`).
    pub const SCHED1: u32 = 0x0008;
    /// `IP_VS_SVC_F_SCHED2` (`sh-port`, `mh-port`).
    pub const SCHED2: u32 = 0x0010;
    /// `IP_VS_SVC_F_SCHED3`.
    pub const SCHED3: u32 = 0x0020;

    /// Whether `bit` is set.
    pub fn has(&self, bit: u32) -> bool {
        self.flags & bit != 0
    }
}

/// One virtual service. Every field is optional because requests carry
/// only some (a deletion only the key); the kernel's answers carry all
/// that apply.
///
/// ```
/// use kpinspect_ipvs::{Service, ServiceFlags};
///
/// let svc = Service::tcp("10.96.0.10:80".parse().unwrap()).scheduler("rr");
/// assert_eq!(svc.family, Some(kpinspect_ipvs::AF_INET));
/// assert_eq!(svc.flags, Some(ServiceFlags { flags: 0, mask: !0 }));
/// assert_eq!(Service::parse(&svc.to_bytes()).unwrap(), svc);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Service {
    /// `AF_INET` or `AF_INET6`.
    pub family: Option<u16>,
    /// `IPPROTO_*` (absent for a firewall-mark service).
    pub protocol: Option<u16>,
    /// The virtual address (16 bytes on the wire, IPv4 zero-padded).
    pub address: Option<IpAddr>,
    /// The virtual port (big-endian on the wire).
    pub port: Option<u16>,
    /// The firewall mark of a firewall-mark service.
    pub fwmark: Option<u32>,
    /// The scheduler (`rr`, `wrr`, `lc`, `sh`, ...).
    pub scheduler: Option<String>,
    /// The persistence engine (`sip`).
    pub pe_name: Option<String>,
    /// Flags (`struct ip_vs_flags`).
    pub flags: Option<ServiceFlags>,
    /// The persistence timeout, seconds.
    pub timeout: Option<u32>,
    /// The persistence netmask: for IPv4 the mask as a number
    /// (`0xffff_ff00`, big-endian on the wire); for IPv6 the prefix length
    /// (host order on the wire, as the kernel reads it).
    pub netmask: Option<u32>,
    /// Counters (`IPVS_SVC_ATTR_STATS`).
    pub stats: Option<Stats>,
    /// Counters, all 64-bit (`IPVS_SVC_ATTR_STATS64`).
    pub stats64: Option<Stats>,
    /// Attributes this crate does not know, kept and encoded again after
    /// the known ones.
    pub unknown: Vec<DefaultNla>,
}

impl Service {
    /// The key of a `protocol` service at `addr`: family, protocol,
    /// address and port, no flags set (mask all ones), no persistence
    /// (timeout 0, netmask all ones / 128) — what ipvsadm sends.
    pub fn new(protocol: u16, addr: SocketAddr) -> Service {
        let family = family_of(addr.ip());
        Service {
            family: Some(family),
            protocol: Some(protocol),
            address: Some(addr.ip()),
            port: Some(addr.port()),
            flags: Some(ServiceFlags { flags: 0, mask: !0 }),
            timeout: Some(0),
            netmask: Some(full_netmask(family)),
            ..Service::default()
        }
    }

    /// A TCP service; see [`Service::new`].
    pub fn tcp(addr: SocketAddr) -> Service {
        Service::new(IPPROTO_TCP, addr)
    }

    /// A UDP service; see [`Service::new`].
    pub fn udp(addr: SocketAddr) -> Service {
        Service::new(IPPROTO_UDP, addr)
    }

    /// A firewall-mark service of `family`.
    pub fn fwmark(family: u16, mark: u32) -> Service {
        Service {
            family: Some(family),
            fwmark: Some(mark),
            flags: Some(ServiceFlags { flags: 0, mask: !0 }),
            timeout: Some(0),
            netmask: Some(full_netmask(family)),
            ..Service::default()
        }
    }

    /// With scheduler `name`.
    pub fn scheduler(mut self, name: &str) -> Service {
        self.scheduler = Some(name.into());
        self
    }

    /// Only the key: family, then firewall mark or protocol, address and
    /// port — what identifies the service in a request about it or its
    /// destinations.
    pub fn key(&self) -> Service {
        Service {
            family: self.family,
            protocol: if self.fwmark.is_some() {
                None
            } else {
                self.protocol
            },
            address: if self.fwmark.is_some() {
                None
            } else {
                self.address
            },
            port: if self.fwmark.is_some() {
                None
            } else {
                self.port
            },
            fwmark: self.fwmark,
            ..Service::default()
        }
    }

    /// Decodes the attributes inside `IPVS_CMD_ATTR_SERVICE`.
    pub fn parse(bytes: &[u8]) -> Result<Service, IpvsDecodeError> {
        let mut s = Service::default();
        let mut address = None;
        let mut netmask = None;
        for a in attrs(bytes, "IPVS service")? {
            let v = a.value;
            match a.id() {
                IPVS_SVC_ATTR_AF => s.family = Some(u16_ne(v, "IPVS_SVC_ATTR_AF")?),
                IPVS_SVC_ATTR_PROTOCOL => s.protocol = Some(u16_ne(v, "IPVS_SVC_ATTR_PROTOCOL")?),
                IPVS_SVC_ATTR_ADDR => address = Some(v),
                IPVS_SVC_ATTR_PORT => s.port = Some(u16_be(v, "IPVS_SVC_ATTR_PORT")?),
                IPVS_SVC_ATTR_FWMARK => s.fwmark = Some(u32_ne(v, "IPVS_SVC_ATTR_FWMARK")?),
                IPVS_SVC_ATTR_SCHED_NAME => {
                    s.scheduler = Some(string(v, "IPVS_SVC_ATTR_SCHED_NAME")?);
                }
                IPVS_SVC_ATTR_PE_NAME => s.pe_name = Some(string(v, "IPVS_SVC_ATTR_PE_NAME")?),
                IPVS_SVC_ATTR_FLAGS => {
                    let b: [u8; 8] = fixed(v, "IPVS_SVC_ATTR_FLAGS", "8")?;
                    s.flags = Some(ServiceFlags {
                        flags: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                        mask: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                    });
                }
                IPVS_SVC_ATTR_TIMEOUT => s.timeout = Some(u32_ne(v, "IPVS_SVC_ATTR_TIMEOUT")?),
                IPVS_SVC_ATTR_NETMASK => {
                    netmask = Some(fixed::<4>(v, "IPVS_SVC_ATTR_NETMASK", "4")?);
                }
                IPVS_SVC_ATTR_STATS => s.stats = Some(Stats::parse(v)?),
                IPVS_SVC_ATTR_STATS64 => s.stats64 = Some(Stats::parse(v)?),
                _ => s.unknown.push(a.unknown()),
            }
        }
        if let Some(bytes) = address {
            s.address = Some(decode_address(bytes, s.family, "IPVS_SVC_ATTR_ADDR")?);
        }
        s.netmask = netmask.map(|b| match s.family {
            Some(AF_INET6) => u32::from_ne_bytes(b),
            _ => u32::from_be_bytes(b),
        });
        Ok(s)
    }

    /// The attributes inside `IPVS_CMD_ATTR_SERVICE`, in the order the
    /// kernel and ipvsadm use.
    pub(crate) fn attrs(&self, nested_flag: bool) -> Vec<Attr> {
        let mut out = Vec::new();
        if let Some(af) = self.family {
            out.push(Attr::Bytes(IPVS_SVC_ATTR_AF, af.to_ne_bytes().to_vec()));
        }
        if let Some(mark) = self.fwmark {
            out.push(Attr::Bytes(
                IPVS_SVC_ATTR_FWMARK,
                mark.to_ne_bytes().to_vec(),
            ));
        }
        if let Some(p) = self.protocol {
            out.push(Attr::Bytes(
                IPVS_SVC_ATTR_PROTOCOL,
                p.to_ne_bytes().to_vec(),
            ));
        }
        if let Some(addr) = self.address {
            out.push(Attr::Bytes(IPVS_SVC_ATTR_ADDR, encode_address(addr)));
        }
        if let Some(port) = self.port {
            out.push(Attr::Bytes(IPVS_SVC_ATTR_PORT, port.to_be_bytes().to_vec()));
        }
        if let Some(name) = &self.scheduler {
            out.push(Attr::string(IPVS_SVC_ATTR_SCHED_NAME, name));
        }
        if let Some(name) = &self.pe_name {
            out.push(Attr::string(IPVS_SVC_ATTR_PE_NAME, name));
        }
        if let Some(f) = self.flags {
            let mut v = f.flags.to_ne_bytes().to_vec();
            v.extend(f.mask.to_ne_bytes());
            out.push(Attr::Bytes(IPVS_SVC_ATTR_FLAGS, v));
        }
        if let Some(t) = self.timeout {
            out.push(Attr::Bytes(IPVS_SVC_ATTR_TIMEOUT, t.to_ne_bytes().to_vec()));
        }
        if let Some(m) = self.netmask {
            let v = match self.family {
                Some(AF_INET6) => m.to_ne_bytes(),
                _ => m.to_be_bytes(),
            };
            out.push(Attr::Bytes(IPVS_SVC_ATTR_NETMASK, v.to_vec()));
        }
        out.extend(crate::stats::stats_attrs(
            self.stats.as_ref(),
            self.stats64.as_ref(),
            (IPVS_SVC_ATTR_STATS, IPVS_SVC_ATTR_STATS64),
            nested_flag,
        ));
        out.extend(self.unknown.iter().cloned().map(Attr::Unknown));
        out
    }

    /// The attributes inside `IPVS_CMD_ATTR_SERVICE`, as on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::attr::emit_all(&self.attrs(false))
    }
}

/// `AF_INET` or `AF_INET6`.
pub(crate) fn family_of(ip: IpAddr) -> u16 {
    match ip {
        IpAddr::V4(_) => AF_INET,
        IpAddr::V6(_) => AF_INET6,
    }
}

/// No persistence granularity: 255.255.255.255, or /128.
fn full_netmask(family: u16) -> u32 {
    if family == AF_INET6 { 128 } else { !0 }
}

impl netlink_packet_core::Emitable for Service {
    fn buffer_len(&self) -> usize {
        self.attrs(false).as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs(false).as_slice().emit(buffer)
    }
}

impl netlink_packet_core::Parseable<[u8]> for Service {
    fn parse(buf: &[u8]) -> Result<Self, netlink_packet_core::DecodeError> {
        Service::parse(buf).map_err(|e| e.to_string().into())
    }
}

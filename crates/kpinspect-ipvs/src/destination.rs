//! `IPVS_CMD_ATTR_DEST`: a destination (real server) of a service.

use std::net::{IpAddr, SocketAddr};

use netlink_packet_core::DefaultNla;

use crate::IpvsDecodeError;
use crate::attr::{Attr, attrs, u8_of, u16_be, u16_ne, u32_ne};
use crate::service::family_of;
use crate::stats::Stats;
use crate::{decode_address, encode_address};

const IPVS_DEST_ATTR_ADDR: u16 = 1;
const IPVS_DEST_ATTR_PORT: u16 = 2;
const IPVS_DEST_ATTR_FWD_METHOD: u16 = 3;
const IPVS_DEST_ATTR_WEIGHT: u16 = 4;
const IPVS_DEST_ATTR_U_THRESH: u16 = 5;
const IPVS_DEST_ATTR_L_THRESH: u16 = 6;
const IPVS_DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const IPVS_DEST_ATTR_INACT_CONNS: u16 = 8;
const IPVS_DEST_ATTR_PERSIST_CONNS: u16 = 9;
const IPVS_DEST_ATTR_STATS: u16 = 10;
const IPVS_DEST_ATTR_ADDR_FAMILY: u16 = 11;
const IPVS_DEST_ATTR_STATS64: u16 = 12;
const IPVS_DEST_ATTR_TUN_TYPE: u16 = 13;
const IPVS_DEST_ATTR_TUN_PORT: u16 = 14;
const IPVS_DEST_ATTR_TUN_FLAGS: u16 = 15;

/// How packets reach a destination (`IP_VS_CONN_F_FWD_MASK` of the
/// connection flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ForwardingMethod {
    /// `IP_VS_CONN_F_MASQ` (0): NAT, ipvsadm's `-m`; what kube-proxy uses.
    Masquerade,
    /// `IP_VS_CONN_F_LOCALNODE` (1): the kernel's own, for a local address.
    Local,
    /// `IP_VS_CONN_F_TUNNEL` (2): IP-in-IP, `-i`.
    Tunnel,
    /// `IP_VS_CONN_F_DROUTE` (3): direct routing, `-g`.
    Route,
    /// `IP_VS_CONN_F_BYPASS` (4).
    Bypass,
    /// Another value.
    Other(u32),
}

impl From<u32> for ForwardingMethod {
    fn from(v: u32) -> Self {
        match v {
            0 => ForwardingMethod::Masquerade,
            1 => ForwardingMethod::Local,
            2 => ForwardingMethod::Tunnel,
            3 => ForwardingMethod::Route,
            4 => ForwardingMethod::Bypass,
            v => ForwardingMethod::Other(v),
        }
    }
}

impl From<ForwardingMethod> for u32 {
    fn from(m: ForwardingMethod) -> u32 {
        match m {
            ForwardingMethod::Masquerade => 0,
            ForwardingMethod::Local => 1,
            ForwardingMethod::Tunnel => 2,
            ForwardingMethod::Route => 3,
            ForwardingMethod::Bypass => 4,
            ForwardingMethod::Other(v) => v,
        }
    }
}

/// One destination. Every field is optional because requests carry only
/// some (a deletion only the address and port).
///
/// Encoded in ipvsadm's order (address family first) when it has no
/// connection counters or stats (a request), in the kernel's order
/// (address family after the counters) when it has (an answer).
///
/// ```
/// use kpinspect_ipvs::{Destination, ForwardingMethod};
///
/// let dest = Destination::new("10.244.0.11:8080".parse().unwrap(), ForwardingMethod::Masquerade, 1);
/// assert_eq!(Destination::parse(&dest.to_bytes()).unwrap(), dest);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    /// The destination's address (16 bytes on the wire, IPv4 zero-padded).
    pub address: Option<IpAddr>,
    /// Its port (big-endian on the wire).
    pub port: Option<u16>,
    /// How packets reach it.
    pub forwarding: Option<ForwardingMethod>,
    /// Its weight (0: no new connections).
    pub weight: Option<u32>,
    /// Tunnel type (`IP_VS_CONN_F_TUNNEL_TYPE_*`) of a tunnel destination.
    pub tunnel_type: Option<u8>,
    /// Tunnel port (big-endian on the wire).
    pub tunnel_port: Option<u16>,
    /// Tunnel flags.
    pub tunnel_flags: Option<u16>,
    /// Upper connection threshold (0: none).
    pub upper_threshold: Option<u32>,
    /// Lower connection threshold.
    pub lower_threshold: Option<u32>,
    /// Active connections.
    pub active_conns: Option<u32>,
    /// Inactive connections.
    pub inactive_conns: Option<u32>,
    /// Persistence templates.
    pub persistent_conns: Option<u32>,
    /// The address's family (`IPVS_DEST_ATTR_ADDR_FAMILY`; the service's
    /// when absent).
    pub family: Option<u16>,
    /// Counters.
    pub stats: Option<Stats>,
    /// Counters, all 64-bit.
    pub stats64: Option<Stats>,
    /// Attributes this crate does not know, kept and encoded again after
    /// the known ones.
    pub unknown: Vec<DefaultNla>,
}

impl Destination {
    /// A destination at `addr` as ipvsadm 1.31 adds it: family, address,
    /// port, forwarding method, weight, tunnel type, port and flags 0,
    /// thresholds 0.
    pub fn new(addr: SocketAddr, forwarding: ForwardingMethod, weight: u32) -> Destination {
        Destination {
            family: Some(family_of(addr.ip())),
            address: Some(addr.ip()),
            port: Some(addr.port()),
            forwarding: Some(forwarding),
            weight: Some(weight),
            tunnel_type: Some(0),
            tunnel_port: Some(0),
            tunnel_flags: Some(0),
            upper_threshold: Some(0),
            lower_threshold: Some(0),
            ..Destination::default()
        }
    }

    /// Only the key (family, address, port).
    pub fn key(&self) -> Destination {
        Destination {
            family: self.family,
            address: self.address,
            port: self.port,
            ..Destination::default()
        }
    }

    /// Decodes the attributes inside `IPVS_CMD_ATTR_DEST`. Without
    /// `IPVS_DEST_ATTR_ADDR_FAMILY` the address is IPv4 if it is padded
    /// with zeros.
    pub fn parse(bytes: &[u8]) -> Result<Destination, IpvsDecodeError> {
        let mut d = Destination::default();
        let mut address = None;
        for a in attrs(bytes, "IPVS destination")? {
            let v = a.value;
            match a.id() {
                IPVS_DEST_ATTR_ADDR => address = Some(v),
                IPVS_DEST_ATTR_PORT => d.port = Some(u16_be(v, "IPVS_DEST_ATTR_PORT")?),
                IPVS_DEST_ATTR_FWD_METHOD => {
                    d.forwarding = Some(u32_ne(v, "IPVS_DEST_ATTR_FWD_METHOD")?.into());
                }
                IPVS_DEST_ATTR_WEIGHT => d.weight = Some(u32_ne(v, "IPVS_DEST_ATTR_WEIGHT")?),
                IPVS_DEST_ATTR_TUN_TYPE => {
                    d.tunnel_type = Some(u8_of(v, "IPVS_DEST_ATTR_TUN_TYPE")?);
                }
                IPVS_DEST_ATTR_TUN_PORT => {
                    d.tunnel_port = Some(u16_be(v, "IPVS_DEST_ATTR_TUN_PORT")?);
                }
                IPVS_DEST_ATTR_TUN_FLAGS => {
                    d.tunnel_flags = Some(u16_ne(v, "IPVS_DEST_ATTR_TUN_FLAGS")?);
                }
                IPVS_DEST_ATTR_U_THRESH => {
                    d.upper_threshold = Some(u32_ne(v, "IPVS_DEST_ATTR_U_THRESH")?);
                }
                IPVS_DEST_ATTR_L_THRESH => {
                    d.lower_threshold = Some(u32_ne(v, "IPVS_DEST_ATTR_L_THRESH")?);
                }
                IPVS_DEST_ATTR_ACTIVE_CONNS => {
                    d.active_conns = Some(u32_ne(v, "IPVS_DEST_ATTR_ACTIVE_CONNS")?);
                }
                IPVS_DEST_ATTR_INACT_CONNS => {
                    d.inactive_conns = Some(u32_ne(v, "IPVS_DEST_ATTR_INACT_CONNS")?);
                }
                IPVS_DEST_ATTR_PERSIST_CONNS => {
                    d.persistent_conns = Some(u32_ne(v, "IPVS_DEST_ATTR_PERSIST_CONNS")?);
                }
                IPVS_DEST_ATTR_ADDR_FAMILY => {
                    d.family = Some(u16_ne(v, "IPVS_DEST_ATTR_ADDR_FAMILY")?);
                }
                IPVS_DEST_ATTR_STATS => d.stats = Some(Stats::parse(v)?),
                IPVS_DEST_ATTR_STATS64 => d.stats64 = Some(Stats::parse(v)?),
                _ => d.unknown.push(a.unknown()),
            }
        }
        if let Some(bytes) = address {
            d.address = Some(decode_address(bytes, d.family, "IPVS_DEST_ATTR_ADDR")?);
        }
        Ok(d)
    }

    /// Whether this looks like the kernel's answer (it has counters).
    fn is_answer(&self) -> bool {
        self.active_conns.is_some()
            || self.inactive_conns.is_some()
            || self.persistent_conns.is_some()
            || self.stats.is_some()
            || self.stats64.is_some()
    }

    /// The attributes inside `IPVS_CMD_ATTR_DEST`.
    pub(crate) fn attrs(&self, nested_flag: bool) -> Vec<Attr> {
        let u32_attr =
            |kind: u16, v: Option<u32>| v.map(|v| Attr::Bytes(kind, v.to_ne_bytes().to_vec()));
        let family = self
            .family
            .map(|f| Attr::Bytes(IPVS_DEST_ATTR_ADDR_FAMILY, f.to_ne_bytes().to_vec()));
        let answer = self.is_answer();
        let mut out = Vec::new();
        if !answer {
            out.extend(family.clone());
        }
        if let Some(addr) = self.address {
            out.push(Attr::Bytes(IPVS_DEST_ATTR_ADDR, encode_address(addr)));
        }
        if let Some(port) = self.port {
            out.push(Attr::Bytes(
                IPVS_DEST_ATTR_PORT,
                port.to_be_bytes().to_vec(),
            ));
        }
        out.extend(u32_attr(
            IPVS_DEST_ATTR_FWD_METHOD,
            self.forwarding.map(u32::from),
        ));
        out.extend(u32_attr(IPVS_DEST_ATTR_WEIGHT, self.weight));
        if let Some(t) = self.tunnel_type {
            out.push(Attr::Bytes(IPVS_DEST_ATTR_TUN_TYPE, vec![t]));
        }
        if let Some(p) = self.tunnel_port {
            out.push(Attr::Bytes(
                IPVS_DEST_ATTR_TUN_PORT,
                p.to_be_bytes().to_vec(),
            ));
        }
        if let Some(f) = self.tunnel_flags {
            out.push(Attr::Bytes(
                IPVS_DEST_ATTR_TUN_FLAGS,
                f.to_ne_bytes().to_vec(),
            ));
        }
        out.extend(u32_attr(IPVS_DEST_ATTR_U_THRESH, self.upper_threshold));
        out.extend(u32_attr(IPVS_DEST_ATTR_L_THRESH, self.lower_threshold));
        out.extend(u32_attr(IPVS_DEST_ATTR_ACTIVE_CONNS, self.active_conns));
        out.extend(u32_attr(IPVS_DEST_ATTR_INACT_CONNS, self.inactive_conns));
        out.extend(u32_attr(
            IPVS_DEST_ATTR_PERSIST_CONNS,
            self.persistent_conns,
        ));
        if answer {
            out.extend(family);
        }
        out.extend(crate::stats::stats_attrs(
            self.stats.as_ref(),
            self.stats64.as_ref(),
            (IPVS_DEST_ATTR_STATS, IPVS_DEST_ATTR_STATS64),
            nested_flag,
        ));
        out.extend(self.unknown.iter().cloned().map(Attr::Unknown));
        out
    }

    /// The attributes inside `IPVS_CMD_ATTR_DEST`, as on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::attr::emit_all(&self.attrs(false))
    }
}

impl netlink_packet_core::Emitable for Destination {
    fn buffer_len(&self) -> usize {
        self.attrs(false).as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs(false).as_slice().emit(buffer)
    }
}

impl netlink_packet_core::Parseable<[u8]> for Destination {
    fn parse(buf: &[u8]) -> Result<Self, netlink_packet_core::DecodeError> {
        Destination::parse(buf).map_err(|e| e.to_string().into())
    }
}

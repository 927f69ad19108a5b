//! `IPVS_SVC_ATTR_STATS` / `IPVS_DEST_ATTR_STATS` (and their `STATS64`
//! twins): a service's or destination's counters and rates.

use netlink_packet_core::DefaultNla;

use crate::IpvsDecodeError;
use crate::attr::{Attr, attrs, counter};

const IPVS_STATS_ATTR_CONNS: u16 = 1;
const IPVS_STATS_ATTR_INPKTS: u16 = 2;
const IPVS_STATS_ATTR_OUTPKTS: u16 = 3;
const IPVS_STATS_ATTR_INBYTES: u16 = 4;
const IPVS_STATS_ATTR_OUTBYTES: u16 = 5;
const IPVS_STATS_ATTR_CPS: u16 = 6;
const IPVS_STATS_ATTR_INPPS: u16 = 7;
const IPVS_STATS_ATTR_OUTPPS: u16 = 8;
const IPVS_STATS_ATTR_INBPS: u16 = 9;
const IPVS_STATS_ATTR_OUTBPS: u16 = 10;

/// Counters since the service or destination was created, and rates
/// (per second, estimated by the kernel every two seconds).
///
/// The kernel sends them twice: `stats` with 32-bit connection, packet and
/// rate counters (64-bit bytes), and `stats64` with every value 64-bit.
/// Both decode to this type; the width is chosen when encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Incoming packets.
    pub inpkts: u64,
    /// Outgoing packets.
    pub outpkts: u64,
    /// Incoming bytes.
    pub inbytes: u64,
    /// Outgoing bytes.
    pub outbytes: u64,
    /// Connection rate.
    pub cps: u64,
    /// Incoming packet rate.
    pub inpps: u64,
    /// Outgoing packet rate.
    pub outpps: u64,
    /// Incoming byte rate.
    pub inbps: u64,
    /// Outgoing byte rate.
    pub outbps: u64,
    /// Attributes this crate does not know (e.g. `IPVS_STATS_ATTR_PAD`),
    /// kept and encoded again after the known ones.
    pub unknown: Vec<DefaultNla>,
}

impl Stats {
    /// Decodes the attributes inside a stats attribute.
    pub fn parse(bytes: &[u8]) -> Result<Stats, IpvsDecodeError> {
        let mut s = Stats::default();
        for a in attrs(bytes, "IPVS stats")? {
            let v = a.value;
            match a.id() {
                IPVS_STATS_ATTR_CONNS => s.conns = counter(v, "IPVS_STATS_ATTR_CONNS")?,
                IPVS_STATS_ATTR_INPKTS => s.inpkts = counter(v, "IPVS_STATS_ATTR_INPKTS")?,
                IPVS_STATS_ATTR_OUTPKTS => s.outpkts = counter(v, "IPVS_STATS_ATTR_OUTPKTS")?,
                IPVS_STATS_ATTR_INBYTES => s.inbytes = counter(v, "IPVS_STATS_ATTR_INBYTES")?,
                IPVS_STATS_ATTR_OUTBYTES => s.outbytes = counter(v, "IPVS_STATS_ATTR_OUTBYTES")?,
                IPVS_STATS_ATTR_CPS => s.cps = counter(v, "IPVS_STATS_ATTR_CPS")?,
                IPVS_STATS_ATTR_INPPS => s.inpps = counter(v, "IPVS_STATS_ATTR_INPPS")?,
                IPVS_STATS_ATTR_OUTPPS => s.outpps = counter(v, "IPVS_STATS_ATTR_OUTPPS")?,
                IPVS_STATS_ATTR_INBPS => s.inbps = counter(v, "IPVS_STATS_ATTR_INBPS")?,
                IPVS_STATS_ATTR_OUTBPS => s.outbps = counter(v, "IPVS_STATS_ATTR_OUTBPS")?,
                _ => s.unknown.push(a.unknown()),
            }
        }
        Ok(s)
    }

    /// The attributes inside, as the kernel sends them: with `wide`, every
    /// value as `u64`; otherwise bytes as `u64` and the rest as `u32`
    /// (truncated).
    pub(crate) fn attrs(&self, wide: bool) -> Vec<Attr> {
        let narrow = |kind: u16, v: u64| {
            if wide {
                Attr::Bytes(kind, v.to_ne_bytes().to_vec())
            } else {
                Attr::Bytes(kind, (v as u32).to_ne_bytes().to_vec())
            }
        };
        let long = |kind: u16, v: u64| Attr::Bytes(kind, v.to_ne_bytes().to_vec());
        let mut out = vec![
            narrow(IPVS_STATS_ATTR_CONNS, self.conns),
            narrow(IPVS_STATS_ATTR_INPKTS, self.inpkts),
            narrow(IPVS_STATS_ATTR_OUTPKTS, self.outpkts),
            long(IPVS_STATS_ATTR_INBYTES, self.inbytes),
            long(IPVS_STATS_ATTR_OUTBYTES, self.outbytes),
            narrow(IPVS_STATS_ATTR_CPS, self.cps),
            narrow(IPVS_STATS_ATTR_INPPS, self.inpps),
            narrow(IPVS_STATS_ATTR_OUTPPS, self.outpps),
            narrow(IPVS_STATS_ATTR_INBPS, self.inbps),
            narrow(IPVS_STATS_ATTR_OUTBPS, self.outbps),
        ];
        out.extend(self.unknown.iter().cloned().map(Attr::Unknown));
        out
    }
}

/// The nested `stats` (32-bit counters, attribute `narrow`) and `stats64`
/// (attribute `wide`) attributes of a service or destination, each when
/// present.
pub(crate) fn stats_attrs(
    stats: Option<&Stats>,
    stats64: Option<&Stats>,
    (narrow, wide): (u16, u16),
    nested_flag: bool,
) -> impl Iterator<Item = Attr> {
    let narrow = stats.map(|s| Attr::Nested(narrow, nested_flag, s.attrs(false)));
    let wide = stats64.map(|s| Attr::Nested(wide, nested_flag, s.attrs(true)));
    narrow.into_iter().chain(wide)
}

/// Encodes the `STATS64` form (every value 64-bit).
impl netlink_packet_core::Emitable for Stats {
    fn buffer_len(&self) -> usize {
        self.attrs(true).as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs(true).as_slice().emit(buffer)
    }
}

impl netlink_packet_core::Parseable<[u8]> for Stats {
    fn parse(buf: &[u8]) -> Result<Self, netlink_packet_core::DecodeError> {
        Stats::parse(buf).map_err(|e| e.to_string().into())
    }
}

//! The generic netlink controller (`nlctrl`, message type `GENL_ID_CTRL`):
//! `CTRL_CMD_GETFAMILY` turns the family name `IPVS` into the message type
//! of its messages, which the kernel assigns when `ip_vs` loads.

use netlink_packet_core::{
    DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkPayload, NetlinkSerializable,
};

use crate::attr::{Attr, attrs, emit_all, string, u16_ne, u32_ne};
use crate::{GENL_HDRLEN, IpvsDecodeError};

/// `GENL_ID_CTRL`: the controller's message type.
pub const GENL_ID_CTRL: u16 = 0x10;
/// `CTRL_CMD_NEWFAMILY`: the controller's answer.
pub const CTRL_CMD_NEWFAMILY: u8 = 1;
/// `CTRL_CMD_GETFAMILY`: look a family up.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_VERSION: u16 = 3;
const CTRL_ATTR_HDRSIZE: u16 = 4;
const CTRL_ATTR_MAXATTR: u16 = 5;

/// A controller message: `CTRL_CMD_GETFAMILY` with the family's name, or
/// the `CTRL_CMD_NEWFAMILY` answer. The answer's operations and multicast
/// groups are kept undecoded in `unknown`.
///
/// ```
/// use kpinspect_ipvs::ctrl::CtrlMessage;
///
/// let request = CtrlMessage::get_family("IPVS");
/// let mut bytes = vec![0; netlink_packet_core::Emitable::buffer_len(&request)];
/// netlink_packet_core::Emitable::emit(&request, &mut bytes);
/// assert_eq!(CtrlMessage::parse(&bytes).unwrap(), request);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtrlMessage {
    /// `CTRL_CMD_*`.
    pub command: u8,
    /// `genlmsghdr.version`.
    pub version: u8,
    /// `CTRL_ATTR_FAMILY_ID`: the family's message type.
    pub family_id: Option<u16>,
    /// `CTRL_ATTR_FAMILY_NAME`.
    pub family_name: Option<String>,
    /// `CTRL_ATTR_VERSION`: the family's version.
    pub family_version: Option<u32>,
    /// `CTRL_ATTR_HDRSIZE`: the family's own header after `genlmsghdr`.
    pub hdrsize: Option<u32>,
    /// `CTRL_ATTR_MAXATTR`.
    pub maxattr: Option<u32>,
    /// Other attributes (operations, multicast groups, policies).
    pub unknown: Vec<DefaultNla>,
}

impl CtrlMessage {
    /// `CTRL_CMD_GETFAMILY` for `name`, version 1 as libnl sends it.
    pub fn get_family(name: &str) -> CtrlMessage {
        CtrlMessage {
            command: CTRL_CMD_GETFAMILY,
            version: 1,
            family_name: Some(name.into()),
            ..CtrlMessage::default()
        }
    }

    fn attrs(&self) -> Vec<Attr> {
        let mut out = Vec::new();
        if let Some(name) = &self.family_name {
            out.push(Attr::string(CTRL_ATTR_FAMILY_NAME, name));
        }
        if let Some(id) = self.family_id {
            out.push(Attr::Bytes(CTRL_ATTR_FAMILY_ID, id.to_ne_bytes().to_vec()));
        }
        for (kind, v) in [
            (CTRL_ATTR_VERSION, self.family_version),
            (CTRL_ATTR_HDRSIZE, self.hdrsize),
            (CTRL_ATTR_MAXATTR, self.maxattr),
        ] {
            if let Some(v) = v {
                out.push(Attr::Bytes(kind, v.to_ne_bytes().to_vec()));
            }
        }
        out.extend(self.unknown.iter().cloned().map(Attr::Unknown));
        out
    }

    /// Decodes the genl header and attributes.
    pub fn parse(payload: &[u8]) -> Result<CtrlMessage, IpvsDecodeError> {
        if payload.len() < GENL_HDRLEN {
            return Err(IpvsDecodeError::Truncated {
                what: "genlmsghdr",
                len: payload.len(),
                need: GENL_HDRLEN,
            });
        }
        let mut m = CtrlMessage {
            command: payload[0],
            version: payload[1],
            ..CtrlMessage::default()
        };
        for a in attrs(&payload[GENL_HDRLEN..], "nlctrl message")? {
            let v = a.value;
            match a.id() {
                CTRL_ATTR_FAMILY_ID => m.family_id = Some(u16_ne(v, "CTRL_ATTR_FAMILY_ID")?),
                CTRL_ATTR_FAMILY_NAME => {
                    m.family_name = Some(string(v, "CTRL_ATTR_FAMILY_NAME")?);
                }
                CTRL_ATTR_VERSION => m.family_version = Some(u32_ne(v, "CTRL_ATTR_VERSION")?),
                CTRL_ATTR_HDRSIZE => m.hdrsize = Some(u32_ne(v, "CTRL_ATTR_HDRSIZE")?),
                CTRL_ATTR_MAXATTR => m.maxattr = Some(u32_ne(v, "CTRL_ATTR_MAXATTR")?),
                _ => m.unknown.push(a.unknown()),
            }
        }
        Ok(m)
    }
}

impl Emitable for CtrlMessage {
    fn buffer_len(&self) -> usize {
        GENL_HDRLEN + self.attrs().as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[0] = self.command;
        buffer[1] = self.version;
        buffer[2..4].fill(0);
        let attrs = emit_all(&self.attrs());
        buffer[GENL_HDRLEN..GENL_HDRLEN + attrs.len()].copy_from_slice(&attrs);
    }
}

impl NetlinkSerializable for CtrlMessage {
    fn message_type(&self) -> u16 {
        GENL_ID_CTRL
    }

    fn buffer_len(&self) -> usize {
        Emitable::buffer_len(self)
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.emit(buffer)
    }
}

impl NetlinkDeserializable for CtrlMessage {
    type Error = IpvsDecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, IpvsDecodeError> {
        if header.message_type != GENL_ID_CTRL {
            return Err(IpvsDecodeError::WrongFamily {
                found: header.message_type,
                expected: GENL_ID_CTRL,
            });
        }
        CtrlMessage::parse(payload)
    }
}

impl From<CtrlMessage> for NetlinkPayload<CtrlMessage> {
    fn from(message: CtrlMessage) -> Self {
        NetlinkPayload::InnerMessage(message)
    }
}

impl netlink_packet_core::Parseable<[u8]> for CtrlMessage {
    fn parse(buf: &[u8]) -> Result<Self, netlink_packet_core::DecodeError> {
        CtrlMessage::parse(buf).map_err(|e| e.to_string().into())
    }
}

//! One IPVS generic netlink message: the 4-byte `genlmsghdr` (command,
//! version, reserved) and the command's attributes.

use netlink_packet_core::{
    DefaultNla, Emitable, NetlinkDeserializable, NetlinkHeader, NetlinkPayload, NetlinkSerializable,
};

use crate::attr::{Attr, attrs, emit_all, u32_ne};
use crate::config::{Info, Timeouts};
use crate::destination::Destination;
use crate::service::Service;
use crate::{GENL_HDRLEN, IPVS_GENL_VERSION, IpvsDecodeError};

const IPVS_CMD_ATTR_SERVICE: u16 = 1;
const IPVS_CMD_ATTR_DEST: u16 = 2;
const IPVS_CMD_ATTR_TIMEOUT_TCP: u16 = 4;
const IPVS_CMD_ATTR_TIMEOUT_TCP_FIN: u16 = 5;
const IPVS_CMD_ATTR_TIMEOUT_UDP: u16 = 6;
const IPVS_INFO_ATTR_VERSION: u16 = 1;
const IPVS_INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

/// `IPVS_CMD_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpvsCommand {
    /// Add a service; also the kernel's answer to [`IpvsCommand::GetService`].
    NewService,
    /// Change a service.
    SetService,
    /// Delete a service and its destinations.
    DelService,
    /// One service (by key) or, with `NLM_F_DUMP`, all.
    GetService,
    /// Add a destination; also the answer to [`IpvsCommand::GetDest`].
    NewDest,
    /// Change a destination.
    SetDest,
    /// Delete a destination.
    DelDest,
    /// The destinations of a service (`NLM_F_DUMP`).
    GetDest,
    /// Start a sync daemon.
    NewDaemon,
    /// Stop a sync daemon.
    DelDaemon,
    /// The sync daemons.
    GetDaemon,
    /// Set the timeouts; also the answer to [`IpvsCommand::GetConfig`].
    SetConfig,
    /// The timeouts.
    GetConfig,
    /// The answer to [`IpvsCommand::GetInfo`].
    SetInfo,
    /// Version and connection table size.
    GetInfo,
    /// Zero the counters.
    Zero,
    /// Delete every service.
    Flush,
    /// Another command.
    Other(u8),
}

const COMMANDS: [IpvsCommand; 17] = [
    IpvsCommand::NewService,
    IpvsCommand::SetService,
    IpvsCommand::DelService,
    IpvsCommand::GetService,
    IpvsCommand::NewDest,
    IpvsCommand::SetDest,
    IpvsCommand::DelDest,
    IpvsCommand::GetDest,
    IpvsCommand::NewDaemon,
    IpvsCommand::DelDaemon,
    IpvsCommand::GetDaemon,
    IpvsCommand::SetConfig,
    IpvsCommand::GetConfig,
    IpvsCommand::SetInfo,
    IpvsCommand::GetInfo,
    IpvsCommand::Zero,
    IpvsCommand::Flush,
];

impl From<u8> for IpvsCommand {
    fn from(v: u8) -> Self {
        match v {
            1..=17 => COMMANDS[usize::from(v) - 1],
            v => IpvsCommand::Other(v),
        }
    }
}

impl From<IpvsCommand> for u8 {
    fn from(c: IpvsCommand) -> u8 {
        match c {
            IpvsCommand::Other(v) => v,
            c => COMMANDS
                .iter()
                .position(|&k| k == c)
                .map_or(0, |i| i as u8 + 1),
        }
    }
}

/// One IPVS message. `family_id` is the `nlmsg_type`, which the generic
/// netlink controller assigns to the `IPVS` family at module load (see
/// [`crate::ctrl`]).
///
/// Which attributes mean what depends on the command: `SET_INFO`/`GET_INFO`
/// carry [`Info`], the others a service, a destination and timeouts.
/// Unknown attributes are kept and encoded again after the known ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsMessage {
    /// The family's id (`nlmsg_type`).
    pub family_id: u16,
    /// `genlmsghdr.cmd`.
    pub command: IpvsCommand,
    /// `genlmsghdr.version` ([`IPVS_GENL_VERSION`]).
    pub version: u8,
    /// `IPVS_CMD_ATTR_SERVICE`.
    pub service: Option<Service>,
    /// `IPVS_CMD_ATTR_DEST`.
    pub destination: Option<Destination>,
    /// `IPVS_CMD_ATTR_TIMEOUT_*`.
    pub timeouts: Timeouts,
    /// `IPVS_INFO_ATTR_*` (only with `SET_INFO`/`GET_INFO`).
    pub info: Info,
    /// Whether nested attributes are sent with `NLA_F_NESTED` (libnl, so
    /// ipvsadm, sets it; the kernel's answers do not). Decoding sets it
    /// unless a service or destination comes without the flag.
    pub nested_flag: bool,
    /// Top-level attributes this crate does not know.
    pub unknown: Vec<DefaultNla>,
}

impl IpvsMessage {
    /// A request `command` with no attributes, as ipvsadm sends it
    /// (`NLA_F_NESTED` on nested attributes).
    pub fn new(family_id: u16, command: IpvsCommand) -> IpvsMessage {
        IpvsMessage {
            family_id,
            command,
            version: IPVS_GENL_VERSION,
            service: None,
            destination: None,
            timeouts: Timeouts::default(),
            info: Info::default(),
            nested_flag: true,
            unknown: Vec::new(),
        }
    }

    /// With the service `service`.
    pub fn with_service(mut self, service: Service) -> IpvsMessage {
        self.service = Some(service);
        self
    }

    /// With the destination `destination`.
    pub fn with_destination(mut self, destination: Destination) -> IpvsMessage {
        self.destination = Some(destination);
        self
    }

    /// With the timeouts `timeouts`.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> IpvsMessage {
        self.timeouts = timeouts;
        self
    }

    fn is_info(&self) -> bool {
        matches!(self.command, IpvsCommand::SetInfo | IpvsCommand::GetInfo)
    }

    fn attrs(&self) -> Vec<Attr> {
        let u32_attr =
            |kind: u16, v: Option<u32>| v.map(|v| Attr::Bytes(kind, v.to_ne_bytes().to_vec()));
        let mut out = Vec::new();
        if let Some(s) = &self.service {
            out.push(Attr::Nested(
                IPVS_CMD_ATTR_SERVICE,
                self.nested_flag,
                s.attrs(self.nested_flag),
            ));
        }
        if let Some(d) = &self.destination {
            out.push(Attr::Nested(
                IPVS_CMD_ATTR_DEST,
                self.nested_flag,
                d.attrs(self.nested_flag),
            ));
        }
        out.extend(u32_attr(IPVS_CMD_ATTR_TIMEOUT_TCP, self.timeouts.tcp));
        out.extend(u32_attr(
            IPVS_CMD_ATTR_TIMEOUT_TCP_FIN,
            self.timeouts.tcp_fin,
        ));
        out.extend(u32_attr(IPVS_CMD_ATTR_TIMEOUT_UDP, self.timeouts.udp));
        if self.is_info() {
            out.extend(u32_attr(IPVS_INFO_ATTR_VERSION, self.info.version));
            out.extend(u32_attr(
                IPVS_INFO_ATTR_CONN_TAB_SIZE,
                self.info.conn_tab_size,
            ));
        }
        out.extend(self.unknown.iter().cloned().map(Attr::Unknown));
        out
    }

    /// Decodes the genl header and attributes (the netlink payload) of a
    /// message of family `family_id`.
    pub fn parse(family_id: u16, payload: &[u8]) -> Result<IpvsMessage, IpvsDecodeError> {
        if payload.len() < GENL_HDRLEN {
            return Err(IpvsDecodeError::Truncated {
                what: "genlmsghdr",
                len: payload.len(),
                need: GENL_HDRLEN,
            });
        }
        let mut m = IpvsMessage::new(family_id, payload[0].into());
        m.version = payload[1];
        let info = m.is_info();
        for a in attrs(&payload[GENL_HDRLEN..], "IPVS message")? {
            let v = a.value;
            let nested = matches!(a.id(), IPVS_CMD_ATTR_SERVICE | IPVS_CMD_ATTR_DEST);
            if !info && nested && a.kind & netlink_packet_core::NLA_F_NESTED == 0 {
                m.nested_flag = false;
            }
            match (info, a.id()) {
                (true, IPVS_INFO_ATTR_VERSION) => {
                    m.info.version = Some(u32_ne(v, "IPVS_INFO_ATTR_VERSION")?);
                }
                (true, IPVS_INFO_ATTR_CONN_TAB_SIZE) => {
                    m.info.conn_tab_size = Some(u32_ne(v, "IPVS_INFO_ATTR_CONN_TAB_SIZE")?);
                }
                (false, IPVS_CMD_ATTR_SERVICE) => m.service = Some(Service::parse(v)?),
                (false, IPVS_CMD_ATTR_DEST) => m.destination = Some(Destination::parse(v)?),
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP) => {
                    m.timeouts.tcp = Some(u32_ne(v, "IPVS_CMD_ATTR_TIMEOUT_TCP")?);
                }
                (false, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN) => {
                    m.timeouts.tcp_fin = Some(u32_ne(v, "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN")?);
                }
                (false, IPVS_CMD_ATTR_TIMEOUT_UDP) => {
                    m.timeouts.udp = Some(u32_ne(v, "IPVS_CMD_ATTR_TIMEOUT_UDP")?);
                }
                _ => m.unknown.push(a.unknown()),
            }
        }
        Ok(m)
    }
}

impl Emitable for IpvsMessage {
    fn buffer_len(&self) -> usize {
        GENL_HDRLEN + self.attrs().as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        buffer[0] = self.command.into();
        buffer[1] = self.version;
        buffer[2..4].fill(0);
        let attrs = emit_all(&self.attrs());
        buffer[GENL_HDRLEN..GENL_HDRLEN + attrs.len()].copy_from_slice(&attrs);
    }
}

impl NetlinkSerializable for IpvsMessage {
    fn message_type(&self) -> u16 {
        self.family_id
    }

    fn buffer_len(&self) -> usize {
        Emitable::buffer_len(self)
    }

    fn serialize(&self, buffer: &mut [u8]) {
        self.emit(buffer)
    }
}

impl NetlinkDeserializable for IpvsMessage {
    type Error = IpvsDecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, IpvsDecodeError> {
        IpvsMessage::parse(header.message_type, payload)
    }
}

impl From<IpvsMessage> for NetlinkPayload<IpvsMessage> {
    fn from(message: IpvsMessage) -> Self {
        NetlinkPayload::InnerMessage(message)
    }
}

impl netlink_packet_core::ParseableParametrized<[u8], u16> for IpvsMessage {
    /// [`IpvsMessage::parse`] with the family id as parameter.
    fn parse_with_param(
        buf: &[u8],
        family_id: u16,
    ) -> Result<Self, netlink_packet_core::DecodeError> {
        IpvsMessage::parse(family_id, buf).map_err(|e| e.to_string().into())
    }
}

//! IPVS: the kernel's virtual servers (what kube-proxy's IPVS mode
//! programs), read and changed over generic netlink with the
//! [`kpinspect_ipvs`] codec.
//!
//! [`Ipvs`] is the small face the rest of kpinspect uses; [`SystemIpvs`]
//! talks to this process's network namespace (it resolves the `IPVS`
//! family's id with the generic netlink controller on every call, so a
//! module loaded meanwhile is found), [`crate::MemoryNode`] keeps services
//! in memory with the kernel's rules for what exists and what does not.

use std::fmt;
use std::net::IpAddr;

use kpinspect_core::mode::ipvs::{
    ForwardMethod, RealServer, Scheduler, ServiceFlags, VirtualServer,
};
use kpinspect_core::model::Protocol;
use kpinspect_ipvs::ctrl::CtrlMessage;
use kpinspect_ipvs::{
    AF_INET6, Destination, ForwardingMethod, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
    IPVS_GENL_NAME, IpvsCommand, IpvsMessage, Service, Timeouts,
};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader,
    NetlinkMessage, NetlinkPayload, NetlinkSerializable,
};
use thiserror::Error;

use crate::netlink::{EEXIST, ENOENT, NetlinkError};

/// `ESRCH`: the kernel's answer for a service that does not exist.
const ESRCH: i32 = 3;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

/// A failure to read or change IPVS. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IpvsError {
    /// The kernel has no `IPVS` generic netlink family: IPVS is not built,
    /// or its module could not be loaded (the family lookup loads it on
    /// demand).
    #[error("IPVS is not available in this kernel (modprobe ip_vs)")]
    NotAvailable,
    /// No such service (`ESRCH`).
    #[error("IPVS service {service} does not exist")]
    NoService {
        /// The service, as ipvsadm names it (`TCP 10.96.0.10:80`).
        service: String,
    },
    /// No such destination (`ENOENT`).
    #[error("IPVS destination {destination} of {service} does not exist")]
    NoDestination {
        /// The service.
        service: String,
        /// The destination (`10.244.0.11:8080`).
        destination: String,
    },
    /// The service or destination exists already (`EEXIST`).
    #[error("IPVS {what} exists already")]
    Exists {
        /// What (`service TCP 10.96.0.10:80`, `destination ... of ...`).
        what: String,
    },
    /// Talking to the kernel failed otherwise (including `EPERM`:
    /// [`NetlinkError::Permission`]).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// A node's IPVS services and their destinations (of one network
/// namespace). Services and destinations are the codec's values: a request
/// uses their key (family, protocol, address, port or firewall mark) to
/// find them.
pub trait Ipvs {
    /// Every service, with its counters.
    fn services(&self) -> Result<Vec<Service>, IpvsError>;
    /// The destinations of `service`; none if there is no such service
    /// (the kernel's dump does not tell it from a service without any).
    fn destinations(&self, service: &Service) -> Result<Vec<Destination>, IpvsError>;
    /// Adds `service` (scheduler, flags, timeout and netmask given):
    /// [`IpvsError::Exists`] if it exists.
    fn new_service(&self, service: &Service) -> Result<(), IpvsError>;
    /// Changes `service`'s scheduler, flags, timeout and netmask.
    fn set_service(&self, service: &Service) -> Result<(), IpvsError>;
    /// Deletes `service` and its destinations.
    fn del_service(&self, service: &Service) -> Result<(), IpvsError>;
    /// Adds `dest` to `service`.
    fn new_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError>;
    /// Changes `dest` (forwarding, weight, thresholds) of `service`.
    fn set_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError>;
    /// Deletes `dest` from `service`.
    fn del_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError>;
    /// The connection timeouts.
    fn timeouts(&self) -> Result<Timeouts, IpvsError>;
    /// Sets the timeouts given (the others stay).
    fn set_timeouts(&self, timeouts: Timeouts) -> Result<(), IpvsError>;

    /// Every service with its destinations, in the kernel's order. By
    /// default [`Ipvs::services`], then [`Ipvs::destinations`] of each;
    /// [`SystemIpvs`] reads them all over one socket.
    fn services_with_destinations(&self) -> Result<Vec<(Service, Vec<Destination>)>, IpvsError> {
        self.services()?
            .into_iter()
            .map(|s| {
                let dests = self.destinations(&s)?;
                Ok((s, dests))
            })
            .collect()
    }

    /// Makes `writes` in order; the first failure is returned. By default
    /// one call each, stopping at the first failure; [`SystemIpvs`] sends
    /// them over one socket, up to 128 messages a datagram, and a failure
    /// there does not stop the rest of its datagram (the kernel handles
    /// them all).
    fn write_all(&self, writes: &[IpvsWrite]) -> Result<(), IpvsError> {
        for w in writes {
            match w {
                IpvsWrite::NewService(s) => self.new_service(s)?,
                IpvsWrite::SetService(s) => self.set_service(s)?,
                IpvsWrite::DelService(s) => self.del_service(s)?,
                IpvsWrite::NewDestination(s, d) => self.new_destination(s, d)?,
                IpvsWrite::SetDestination(s, d) => self.set_destination(s, d)?,
                IpvsWrite::DelDestination(s, d) => self.del_destination(s, d)?,
            }
        }
        Ok(())
    }
}

/// One change [`Ipvs::write_all`] makes: each is one netlink message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpvsWrite {
    /// [`Ipvs::new_service`].
    NewService(Service),
    /// [`Ipvs::set_service`].
    SetService(Service),
    /// [`Ipvs::del_service`].
    DelService(Service),
    /// [`Ipvs::new_destination`] of the service.
    NewDestination(Service, Destination),
    /// [`Ipvs::set_destination`] of the service.
    SetDestination(Service, Destination),
    /// [`Ipvs::del_destination`] of the service.
    DelDestination(Service, Destination),
}

impl IpvsWrite {
    /// The request (without its family id) and its flags, without
    /// `NLM_F_ACK`.
    fn request(&self) -> (IpvsMessage, u16) {
        match self {
            IpvsWrite::NewService(s) => (
                msg(IpvsCommand::NewService).with_service(s.clone()),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            IpvsWrite::SetService(s) => (msg(IpvsCommand::SetService).with_service(s.clone()), 0),
            IpvsWrite::DelService(s) => (msg(IpvsCommand::DelService).with_service(s.key()), 0),
            IpvsWrite::NewDestination(s, d) => (
                msg(IpvsCommand::NewDest)
                    .with_service(s.key())
                    .with_destination(d.clone()),
                NLM_F_CREATE | NLM_F_EXCL,
            ),
            IpvsWrite::SetDestination(s, d) => (
                msg(IpvsCommand::SetDest)
                    .with_service(s.key())
                    .with_destination(d.clone()),
                0,
            ),
            IpvsWrite::DelDestination(s, d) => (
                msg(IpvsCommand::DelDest)
                    .with_service(s.key())
                    .with_destination(d.key()),
                0,
            ),
        }
    }

    fn subject(&self) -> Subject<'_> {
        match self {
            IpvsWrite::NewService(s) | IpvsWrite::SetService(s) | IpvsWrite::DelService(s) => {
                Subject::Service(s)
            }
            IpvsWrite::NewDestination(s, d)
            | IpvsWrite::SetDestination(s, d)
            | IpvsWrite::DelDestination(s, d) => Subject::Destination(s, d),
        }
    }
}

/// A service as ipvsadm lists it: `TCP 10.96.0.10:80`,
/// `UDP [fd00::10]:53`, `FWM 42`.
///
/// ```
/// use kpinspect_node::{kpinspect_ipvs::Service, service_name};
/// let svc = Service::udp("[fd00::10]:53".parse().unwrap());
/// assert_eq!(service_name(&svc), "UDP [fd00::10]:53");
/// ```
pub fn service_name(service: &Service) -> String {
    if let Some(mark) = service.fwmark {
        let v6 = if service.family == Some(AF_INET6) {
            " IPv6"
        } else {
            ""
        };
        return format!("FWM {mark}{v6}");
    }
    let proto = match service.protocol {
        Some(IPPROTO_TCP) => "TCP".to_string(),
        Some(IPPROTO_UDP) => "UDP".to_string(),
        Some(IPPROTO_SCTP) => "SCTP".to_string(),
        Some(p) => format!("protocol {p}"),
        None => "?".to_string(),
    };
    format!("{proto} {}", endpoint(service.address, service.port))
}

/// `10.244.0.11:8080`, `[fd00::11]:8080`.
pub fn destination_name(dest: &Destination) -> String {
    endpoint(dest.address, dest.port)
}

fn endpoint(address: Option<IpAddr>, port: Option<u16>) -> String {
    let port = port.unwrap_or(0);
    match address {
        Some(IpAddr::V6(a)) => format!("[{a}]:{port}"),
        Some(a) => format!("{a}:{port}"),
        None => format!("?:{port}"),
    }
}

/// What a request was about, to name it in errors.
enum Subject<'a> {
    None,
    Service(&'a Service),
    Destination(&'a Service, &'a Destination),
}

impl Subject<'_> {
    fn error(&self, e: NetlinkError) -> IpvsError {
        match (e.errno(), self) {
            (Some(ESRCH), Subject::Service(s) | Subject::Destination(s, _)) => {
                IpvsError::NoService {
                    service: service_name(s),
                }
            }
            (Some(ENOENT), Subject::Destination(s, d)) => IpvsError::NoDestination {
                service: service_name(s),
                destination: destination_name(d),
            },
            (Some(EEXIST), Subject::Service(s)) => IpvsError::Exists {
                what: format!("service {}", service_name(s)),
            },
            (Some(EEXIST), Subject::Destination(s, d)) => IpvsError::Exists {
                what: format!("destination {} of {}", destination_name(d), service_name(s)),
            },
            _ => IpvsError::Netlink(e),
        }
    }
}

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::None => Ok(()),
            Subject::Service(s) => write!(f, " {}", service_name(s)),
            Subject::Destination(s, d) => {
                write!(f, " {} -> {}", service_name(s), destination_name(d))
            }
        }
    }
}

/// The kernel's IPVS in this process's network namespace, over generic
/// netlink. Needs `CAP_NET_ADMIN` for every call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemIpvs;

impl SystemIpvs {
    fn call(
        &self,
        request: IpvsMessage,
        flags: u16,
        subject: Subject<'_>,
    ) -> Result<Vec<IpvsMessage>, IpvsError> {
        let op = format!("ipvs {:?}{subject}", request.command);
        let mut socket = GenlSocket::open(&op)?;
        let family = socket.resolve_family(&op)?;
        let request = IpvsMessage {
            family_id: family,
            ..request
        };
        let answer = socket
            .request(request, flags, &op)
            .map_err(|e| subject.error(e))?;
        answer
            .into_iter()
            .filter(|(kind, _)| *kind == family)
            .map(|(_, payload)| {
                IpvsMessage::parse(family, &payload).map_err(|e| {
                    IpvsError::Netlink(NetlinkError::Decode {
                        operation: op.clone(),
                        message: e.to_string(),
                    })
                })
            })
            .collect()
    }
}

fn msg(command: IpvsCommand) -> IpvsMessage {
    IpvsMessage::new(0, command)
}

impl Ipvs for SystemIpvs {
    fn services(&self) -> Result<Vec<Service>, IpvsError> {
        let answer = self.call(msg(IpvsCommand::GetService), NLM_F_DUMP, Subject::None)?;
        Ok(answer.into_iter().filter_map(|m| m.service).collect())
    }

    fn destinations(&self, service: &Service) -> Result<Vec<Destination>, IpvsError> {
        let request = msg(IpvsCommand::GetDest).with_service(service.key());
        let answer = self.call(request, NLM_F_DUMP, Subject::Service(service))?;
        Ok(answer.into_iter().filter_map(|m| m.destination).collect())
    }

    fn new_service(&self, service: &Service) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::NewService).with_service(service.clone());
        self.call(
            request,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            Subject::Service(service),
        )
        .map(drop)
    }

    fn set_service(&self, service: &Service) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::SetService).with_service(service.clone());
        self.call(request, NLM_F_ACK, Subject::Service(service))
            .map(drop)
    }

    fn del_service(&self, service: &Service) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::DelService).with_service(service.key());
        self.call(request, NLM_F_ACK, Subject::Service(service))
            .map(drop)
    }

    fn new_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::NewDest)
            .with_service(service.key())
            .with_destination(dest.clone());
        let subject = Subject::Destination(service, dest);
        self.call(request, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, subject)
            .map(drop)
    }

    fn set_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::SetDest)
            .with_service(service.key())
            .with_destination(dest.clone());
        self.call(request, NLM_F_ACK, Subject::Destination(service, dest))
            .map(drop)
    }

    fn del_destination(&self, service: &Service, dest: &Destination) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::DelDest)
            .with_service(service.key())
            .with_destination(dest.key());
        self.call(request, NLM_F_ACK, Subject::Destination(service, dest))
            .map(drop)
    }

    fn timeouts(&self) -> Result<Timeouts, IpvsError> {
        let answer = self.call(msg(IpvsCommand::GetConfig), NLM_F_ACK, Subject::None)?;
        Ok(answer.first().map(|m| m.timeouts).unwrap_or_default())
    }

    fn set_timeouts(&self, timeouts: Timeouts) -> Result<(), IpvsError> {
        let request = msg(IpvsCommand::SetConfig).with_timeouts(timeouts);
        self.call(request, NLM_F_ACK, Subject::None).map(drop)
    }

    /// One socket and one family lookup for the whole read: the service
    /// dump, then each service's destination dump.
    fn services_with_destinations(&self) -> Result<Vec<(Service, Vec<Destination>)>, IpvsError> {
        let op = "ipvs GetService, GetDest of each";
        let mut socket = GenlSocket::open(op)?;
        let family = socket.resolve_family(op)?;
        let services: Vec<Service> = socket
            .ipvs(family, msg(IpvsCommand::GetService), NLM_F_DUMP, op)
            .map_err(|e| Subject::None.error(e))?
            .into_iter()
            .filter_map(|m| m.service)
            .collect();
        let mut out = Vec::with_capacity(services.len());
        for s in services {
            let request = msg(IpvsCommand::GetDest).with_service(s.key());
            let dests = socket
                .ipvs(family, request, NLM_F_DUMP, op)
                .map_err(|e| Subject::Service(&s).error(e))?
                .into_iter()
                .filter_map(|m| m.destination)
                .collect();
            out.push((s, dests));
        }
        Ok(out)
    }

    /// One socket and one family lookup; up to 128 requests a datagram,
    /// only the last asking for an acknowledgement (a failure is answered
    /// regardless). The first failure is returned after its
    /// datagram: the requests after it in that datagram were handled too.
    fn write_all(&self, writes: &[IpvsWrite]) -> Result<(), IpvsError> {
        if writes.is_empty() {
            return Ok(());
        }
        let op = format!("ipvs: {} writes", writes.len());
        let mut socket = GenlSocket::open(&op)?;
        let family = socket.resolve_family(&op)?;
        for chunk in writes.chunks(crate::netlink::BATCH_MESSAGES) {
            let mut batch = crate::netlink::Batch::default();
            for (i, w) in chunk.iter().enumerate() {
                let (request, flags) = w.request();
                let request = IpvsMessage {
                    family_id: family,
                    ..request
                };
                let flags = if i + 1 == chunk.len() {
                    flags | NLM_F_ACK
                } else {
                    flags
                };
                socket.seq = socket.seq.wrapping_add(1);
                batch.push(&encode(request, flags, socket.seq), socket.seq);
            }
            let errors = crate::netlink::send_batch(&socket.socket, &batch, &op)?;
            if let Some(&(seq, errno)) = errors.first() {
                // A number of this batch (the answer takes no other).
                let at = batch
                    .first
                    .map_or(0, |first| seq.wrapping_sub(first) as usize);
                let Some(w) = chunk.get(at).or(chunk.last()) else {
                    continue;
                };
                let (request, _) = w.request();
                let subject = w.subject();
                let what = format!("ipvs {:?}{subject}", request.command);
                return Err(subject.error(NetlinkError::from_errno(&what, errno)));
            }
        }
        Ok(())
    }
}

/// The node's IPVS table as kpinspect's core reads `ipvsadm` text: every
/// service with its scheduler, persistence (flags and timeout) and real
/// servers (weight, forwarding method, active and inactive connections),
/// in `ipvsadm`'s order (services by family, protocol, address and port;
/// real servers by address and port). As [`kpinspect_core::mode::ipvs::parse_ipvsadm`]
/// does, fwmark services (not kube-proxy's) are skipped, as are services
/// of a protocol other than TCP, UDP and SCTP; the kernel's own `HASHED`
/// and one-packet flags are dropped, and the timeout is kept only for a
/// persistent service.
///
/// ```
/// use kpinspect_node::kpinspect_ipvs::{Destination, ForwardingMethod, Service};
/// use kpinspect_node::{Ipvs, MemoryNode, read_virtual_servers};
/// let node = MemoryNode::default();
/// let svc = Service::tcp("10.96.0.10:80".parse().unwrap()).scheduler("rr");
/// node.new_service(&svc).unwrap();
/// let dest = Destination::new("10.244.0.11:8080".parse().unwrap(), ForwardingMethod::Masquerade, 1);
/// node.new_destination(&svc, &dest).unwrap();
/// let servers = read_virtual_servers(&node).unwrap();
/// assert_eq!(servers[0].key(), "10.96.0.10:80/TCP");
/// assert_eq!(servers[0].real_servers[0].endpoint(), "10.244.0.11:8080");
/// ```
pub fn read_virtual_servers(ipvs: &impl Ipvs) -> Result<Vec<VirtualServer>, IpvsError> {
    let mut servers = Vec::new();
    for (service, dests) in ipvs.services_with_destinations()? {
        let Some(mut vs) = virtual_server(&service) else {
            continue;
        };
        vs.real_servers = dests.iter().filter_map(real_server).collect();
        vs.real_servers.sort_by_key(|a| (a.address, a.port));
        servers.push(vs);
    }
    servers.sort_by(VirtualServer::ipvsadm_cmp);
    Ok(servers)
}

/// A service as the core's virtual server, without its real servers;
/// `None` for a fwmark service or another protocol.
fn virtual_server(service: &Service) -> Option<VirtualServer> {
    if service.fwmark.is_some() {
        return None;
    }
    let protocol = match service.protocol? {
        IPPROTO_TCP => Protocol::Tcp,
        IPPROTO_UDP => Protocol::Udp,
        IPPROTO_SCTP => Protocol::Sctp,
        _ => return None,
    };
    use kpinspect_ipvs::ServiceFlags as Kernel;
    let kept = Kernel::PERSISTENT | Kernel::SCHED1 | Kernel::SCHED2 | Kernel::SCHED3;
    let flags = ServiceFlags(service.flags.map_or(0, |f| f.flags) & kept);
    let timeout = if flags.persistent() {
        service.timeout.unwrap_or(0)
    } else {
        0
    };
    Some(VirtualServer {
        address: service.address?,
        protocol,
        port: service.port.unwrap_or(0),
        scheduler: Scheduler::from_config(service.scheduler.as_deref().unwrap_or("")),
        flags,
        timeout,
        kind: None,
        service: None,
        bind: false,
        real_servers: Vec::new(),
    })
}

/// A destination as the core's real server (`None` without an address).
/// The kernel's bypass and unknown forwarding methods, which `ipvsadm -Sn`
/// saves as `-g`, read as direct routing.
fn real_server(dest: &Destination) -> Option<RealServer> {
    let forward = match dest.forwarding {
        Some(ForwardingMethod::Masquerade) | None => ForwardMethod::Masquerade,
        Some(ForwardingMethod::Local) => ForwardMethod::Local,
        Some(ForwardingMethod::Tunnel) => ForwardMethod::Tunnel,
        Some(ForwardingMethod::Route | ForwardingMethod::Bypass | ForwardingMethod::Other(_)) => {
            ForwardMethod::Route
        }
    };
    Some(RealServer {
        address: dest.address?,
        port: dest.port.unwrap_or(0),
        weight: dest.weight.unwrap_or(0),
        forward,
        active_connections: dest.active_conns.map(u64::from),
        inactive_connections: dest.inactive_conns.map(u64::from),
    })
}

/// The bytes of a request: `message` with `flags` (`NLM_F_REQUEST` always
/// set) and sequence number `seq`.
pub(crate) fn encode<M>(message: M, flags: u16, seq: u32) -> Vec<u8>
where
    M: NetlinkSerializable + fmt::Debug + PartialEq + Eq + Clone,
{
    let mut header = NetlinkHeader::default();
    header.flags = flags | NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

/// The answer to request `seq`, collected datagram by datagram: the
/// messages (type and payload) until `NLMSG_DONE` or the acknowledgement.
/// Pure: fed with received bytes.
#[derive(Debug)]
pub(crate) struct GenlAnswer {
    seq: u32,
    messages: Vec<(u16, Vec<u8>)>,
    finished: bool,
}

impl GenlAnswer {
    pub fn new(seq: u32) -> GenlAnswer {
        GenlAnswer {
            seq,
            messages: Vec::new(),
            finished: false,
        }
    }

    /// Takes one datagram: `Ok(true)` once the answer is complete;
    /// messages of other requests are ignored.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<bool, AnswerFault> {
        let mut pos = 0;
        while pos < datagram.len() {
            let buf = NetlinkBuffer::new_checked(&datagram[pos..])
                .map_err(|e| AnswerFault::Decode(e.to_string()))?;
            let len = buf.length() as usize;
            let kind = buf.message_type();
            let seq = buf.sequence_number();
            let payload = buf.payload();
            pos += len.next_multiple_of(4);
            if seq != self.seq || self.finished {
                continue;
            }
            match kind {
                NLMSG_ERROR | NLMSG_DONE => {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| AnswerFault::Decode("short error message".into()))?;
                    if code < 0 {
                        return Err(AnswerFault::Errno(-code));
                    }
                    self.finished = true;
                }
                _ => self.messages.push((kind, payload.to_vec())),
            }
        }
        Ok(self.finished)
    }

    pub fn into_messages(self) -> Vec<(u16, Vec<u8>)> {
        self.messages
    }
}

/// How a request failed, as seen in its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnswerFault {
    /// The kernel answered `-errno`.
    Errno(i32),
    /// The answer was malformed.
    Decode(String),
}

/// A blocking `NETLINK_GENERIC` socket: one request at a time.
struct GenlSocket {
    socket: netlink_sys::Socket,
    seq: u32,
}

impl GenlSocket {
    fn open(operation: &str) -> Result<GenlSocket, NetlinkError> {
        Ok(GenlSocket {
            socket: crate::netlink::open_socket(
                netlink_sys::protocols::NETLINK_GENERIC,
                operation,
            )?,
            seq: 0,
        })
    }

    /// Sends an IPVS `request` of family `family` and decodes its answer.
    fn ipvs(
        &mut self,
        family: u16,
        request: IpvsMessage,
        flags: u16,
        operation: &str,
    ) -> Result<Vec<IpvsMessage>, NetlinkError> {
        let request = IpvsMessage {
            family_id: family,
            ..request
        };
        self.request(request, flags, operation)?
            .into_iter()
            .filter(|(kind, _)| *kind == family)
            .map(|(_, payload)| {
                IpvsMessage::parse(family, &payload).map_err(|e| NetlinkError::Decode {
                    operation: operation.into(),
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// The `IPVS` family's id: [`IpvsError::NotAvailable`] without it. The
    /// kernel loads `ip_vs` for the lookup if it can (the module declares
    /// the family's alias), so this fails only where IPVS is not built.
    fn resolve_family(&mut self, operation: &str) -> Result<u16, IpvsError> {
        let request = CtrlMessage::get_family(IPVS_GENL_NAME);
        let answer = self
            .request(request, NLM_F_ACK, operation)
            .map_err(family_lookup_error)?;
        family_id(&answer).ok_or(IpvsError::NotAvailable)
    }

    fn request<M>(
        &mut self,
        message: M,
        flags: u16,
        operation: &str,
    ) -> Result<Vec<(u16, Vec<u8>)>, NetlinkError>
    where
        M: NetlinkSerializable + fmt::Debug + PartialEq + Eq + Clone,
    {
        self.seq = self.seq.wrapping_add(1);
        let io = |e: std::io::Error| NetlinkError::Socket {
            operation: operation.into(),
            message: e.to_string(),
        };
        self.socket
            .send(&encode(message, flags, self.seq), 0)
            .map_err(io)?;
        let mut answer = GenlAnswer::new(self.seq);
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io)?;
            match answer.feed(&datagram) {
                Ok(true) => return Ok(answer.into_messages()),
                Ok(false) => {}
                Err(AnswerFault::Errno(errno)) => {
                    return Err(NetlinkError::from_errno(operation, errno));
                }
                Err(AnswerFault::Decode(message)) => {
                    return Err(NetlinkError::Decode {
                        operation: operation.into(),
                        message,
                    });
                }
            }
        }
    }
}

/// The controller's `ENOENT`: no family of that name.
fn family_lookup_error(e: NetlinkError) -> IpvsError {
    if e.errno() == Some(ENOENT) {
        IpvsError::NotAvailable
    } else {
        e.into()
    }
}

/// The family id in the controller's answer.
fn family_id(answer: &[(u16, Vec<u8>)]) -> Option<u16> {
    answer
        .iter()
        .filter(|(kind, _)| *kind == kpinspect_ipvs::ctrl::GENL_ID_CTRL)
        .find_map(|(_, payload)| CtrlMessage::parse(payload).ok()?.family_id)
}

/// IPVS in memory, as the kernel keeps it: [`crate::MemoryNode`]'s.
#[derive(Debug)]
pub(crate) struct MemoryIpvs {
    services: Vec<(Service, Vec<Destination>)>,
    timeouts: Timeouts,
}

impl Default for MemoryIpvs {
    /// No services; the kernel's default timeouts (900 120 300).
    fn default() -> Self {
        MemoryIpvs {
            services: Vec::new(),
            timeouts: Timeouts {
                tcp: Some(900),
                tcp_fin: Some(120),
                udp: Some(300),
            },
        }
    }
}

/// `EINVAL`: a request without what it needs.
const EINVAL: i32 = 22;

fn same_dest(a: &Destination, b: &Destination) -> bool {
    a.address == b.address && a.port == b.port
}

impl MemoryIpvs {
    fn find(&self, service: &Service) -> Result<usize, IpvsError> {
        let key = service.key();
        self.services
            .iter()
            .position(|(s, _)| s.key() == key)
            .ok_or_else(|| IpvsError::NoService {
                service: service_name(service),
            })
    }

    fn invalid(what: &str) -> IpvsError {
        IpvsError::Netlink(NetlinkError::from_errno(what, EINVAL))
    }

    pub fn services(&self) -> Vec<Service> {
        self.services.iter().map(|(s, _)| s.clone()).collect()
    }

    pub fn destinations(&self, service: &Service) -> Vec<Destination> {
        self.find(service)
            .map(|i| self.services[i].1.clone())
            .unwrap_or_default()
    }

    pub fn new_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        if self.find(service).is_ok() {
            return Err(Subject::Service(service).error(NetlinkError::from_errno("", EEXIST)));
        }
        if service.scheduler.is_none()
            || service.flags.is_none()
            || service.timeout.is_none()
            || service.netmask.is_none()
            || service.family.is_none()
        {
            return Err(Self::invalid("ipvs NewService"));
        }
        let mut stored = service.key();
        apply_service(&mut stored, service);
        stored.stats = Some(Default::default());
        stored.stats64 = Some(Default::default());
        self.services.push((stored, Vec::new()));
        Ok(())
    }

    pub fn set_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        let i = self.find(service)?;
        apply_service(&mut self.services[i].0, service);
        Ok(())
    }

    pub fn del_service(&mut self, service: &Service) -> Result<(), IpvsError> {
        let i = self.find(service)?;
        self.services.remove(i);
        Ok(())
    }

    pub fn new_destination(
        &mut self,
        service: &Service,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        let i = self.find(service)?;
        let (svc, dests) = &mut self.services[i];
        if dests.iter().any(|d| same_dest(d, dest)) {
            return Err(
                Subject::Destination(service, dest).error(NetlinkError::from_errno("", EEXIST))
            );
        }
        if dest.address.is_none() || dest.port.is_none() {
            return Err(Self::invalid("ipvs NewDest"));
        }
        let mut stored = Destination {
            family: dest.family.or(svc.family),
            address: dest.address,
            port: dest.port,
            forwarding: Some(kpinspect_ipvs::ForwardingMethod::Masquerade),
            weight: Some(1),
            tunnel_type: Some(0),
            tunnel_port: Some(0),
            tunnel_flags: Some(0),
            upper_threshold: Some(0),
            lower_threshold: Some(0),
            active_conns: Some(0),
            inactive_conns: Some(0),
            persistent_conns: Some(0),
            stats: Some(Default::default()),
            stats64: Some(Default::default()),
            ..Destination::default()
        };
        apply_destination(&mut stored, dest);
        dests.push(stored);
        Ok(())
    }

    fn find_dest(
        &self,
        service: &Service,
        dest: &Destination,
    ) -> Result<(usize, usize), IpvsError> {
        let i = self.find(service)?;
        let j = self.services[i]
            .1
            .iter()
            .position(|d| same_dest(d, dest))
            .ok_or_else(|| IpvsError::NoDestination {
                service: service_name(service),
                destination: destination_name(dest),
            })?;
        Ok((i, j))
    }

    pub fn set_destination(
        &mut self,
        service: &Service,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        let (i, j) = self.find_dest(service, dest)?;
        apply_destination(&mut self.services[i].1[j], dest);
        Ok(())
    }

    pub fn set_connections(
        &mut self,
        service: &Service,
        dest: &Destination,
        active: u32,
        inactive: u32,
    ) -> Result<(), IpvsError> {
        let (i, j) = self.find_dest(service, dest)?;
        let d = &mut self.services[i].1[j];
        d.active_conns = Some(active);
        d.inactive_conns = Some(inactive);
        Ok(())
    }

    pub fn del_destination(
        &mut self,
        service: &Service,
        dest: &Destination,
    ) -> Result<(), IpvsError> {
        let (i, j) = self.find_dest(service, dest)?;
        self.services[i].1.remove(j);
        Ok(())
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub fn set_timeouts(&mut self, t: Timeouts) {
        let set = |old: &mut Option<u32>, new: Option<u32>| {
            if let Some(v) = new.filter(|&v| v != 0) {
                *old = Some(v);
            }
        };
        set(&mut self.timeouts.tcp, t.tcp);
        set(&mut self.timeouts.tcp_fin, t.tcp_fin);
        set(&mut self.timeouts.udp, t.udp);
    }
}

/// What a new or changed service sets, as the kernel stores it (flags
/// under their mask, plus `HASHED`).
fn apply_service(stored: &mut Service, given: &Service) {
    use kpinspect_ipvs::ServiceFlags;
    if let Some(name) = &given.scheduler {
        stored.scheduler = Some(name.clone());
    }
    if given.pe_name.is_some() {
        stored.pe_name.clone_from(&given.pe_name);
    }
    if let Some(f) = given.flags {
        let old = stored.flags.map_or(0, |o| o.flags);
        stored.flags = Some(ServiceFlags {
            flags: (old & !f.mask) | (f.flags & f.mask) | ServiceFlags::HASHED,
            mask: !0,
        });
    }
    if given.timeout.is_some() {
        stored.timeout = given.timeout;
    }
    if given.netmask.is_some() {
        stored.netmask = given.netmask;
    }
}

fn apply_destination(stored: &mut Destination, given: &Destination) {
    if given.forwarding.is_some() {
        stored.forwarding = given.forwarding;
    }
    if given.weight.is_some() {
        stored.weight = given.weight;
    }
    if given.upper_threshold.is_some() {
        stored.upper_threshold = given.upper_threshold;
    }
    if given.lower_threshold.is_some() {
        stored.lower_threshold = given.lower_threshold;
    }
    for (old, new) in [
        (&mut stored.tunnel_port, given.tunnel_port),
        (&mut stored.tunnel_flags, given.tunnel_flags),
    ] {
        if new.is_some() {
            *old = new;
        }
    }
    if given.tunnel_type.is_some() {
        stored.tunnel_type = given.tunnel_type;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::golden::hex;
    use kpinspect_ipvs::{ForwardingMethod, ServiceFlags};

    /// `ipvsadm -D -t 10.96.0.99:80` (Linux 6.1, ipvsadm 1.31; the
    /// codec's `testdata/ipvsadm.strace`, section `del-service-missing`).
    const DEL_MISSING_REQUEST: &str = "68 00 00 00 20 00 05 00 60 e9 0e 6b d5 00 40 76
        03 01 00 00 54 00 01 80 06 00 01 00 02 00 00 00 06 00 02 00 06 00 00 00 14 00 03 00
        0a 60 00 63 00 00 00 00 00 00 00 00 00 00 00 00 06 00 04 00 00 50 00 00 05 00 06 00
        00 00 00 00 0c 00 07 00 00 00 00 00 ff ff ff ff 08 00 08 00 00 00 00 00 08 00 09 00
        ff ff ff ff";

    #[test]
    fn requests_are_ipvsadms_but_for_the_port_id() {
        let svc = Service {
            scheduler: Some(String::new()),
            ..Service::tcp("10.96.0.99:80".parse().unwrap())
        };
        let ours = encode(
            IpvsMessage::new(0x20, IpvsCommand::DelService).with_service(svc),
            NLM_F_ACK,
            0x6b0e_e960,
        );
        let mut theirs = hex(DEL_MISSING_REQUEST);
        // libnl fills in its socket's port id; the kernel does for us.
        theirs[12..16].fill(0);
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_kernels_esrch_names_the_service() {
        let mut answer = hex("7c 00 00 00 02 00 00 00 60 e9 0e 6b d5 00 40 76 fd ff ff ff");
        answer.extend(hex(DEL_MISSING_REQUEST));
        assert_eq!(
            GenlAnswer::new(0x6b0e_e960).feed(&answer),
            Err(AnswerFault::Errno(ESRCH))
        );
        assert_eq!(
            GenlAnswer::new(7).feed(&answer),
            Ok(false),
            "another request's"
        );
        let svc = Service::tcp("10.96.0.99:80".parse().unwrap());
        let e = Subject::Service(&svc).error(NetlinkError::from_errno("x", ESRCH));
        assert_eq!(
            e.to_string(),
            "IPVS service TCP 10.96.0.99:80 does not exist"
        );
        let dest = Destination::new(
            "[fd00::11]:8080".parse().unwrap(),
            ForwardingMethod::Masquerade,
            1,
        );
        let e = Subject::Destination(&svc, &dest).error(NetlinkError::from_errno("x", ENOENT));
        assert_eq!(
            e.to_string(),
            "IPVS destination [fd00::11]:8080 of TCP 10.96.0.99:80 does not exist"
        );
        let e = Subject::Service(&svc).error(NetlinkError::from_errno("x", EEXIST));
        assert_eq!(
            e.to_string(),
            "IPVS service TCP 10.96.0.99:80 exists already"
        );
        let e = Subject::Service(&svc).error(NetlinkError::from_errno("x", 1));
        assert!(matches!(
            e,
            IpvsError::Netlink(NetlinkError::Permission { .. })
        ));
        let missing = family_lookup_error(NetlinkError::from_errno("x", ENOENT));
        assert_eq!(missing, IpvsError::NotAvailable);
        assert_eq!(
            missing.to_string(),
            "IPVS is not available in this kernel (modprobe ip_vs)"
        );
    }

    #[test]
    fn acks_dumps_and_the_controllers_answer() {
        // An ACK, then a dump's NLMSG_DONE.
        let ack = hex("24 00 00 00 02 00 00 01 05 00 00 00 00 00 00 00 00 00 00 00
                       20 00 00 00 20 00 05 00 05 00 00 00 00 00 00 00");
        let mut a = GenlAnswer::new(5);
        assert_eq!(a.feed(&ack), Ok(true));
        assert!(a.into_messages().is_empty());
        let ctrl = CtrlMessage {
            command: kpinspect_ipvs::ctrl::CTRL_CMD_NEWFAMILY,
            family_id: Some(0x20),
            ..CtrlMessage::get_family("IPVS")
        };
        let mut dump = encode(ctrl, 0, 9);
        dump.extend(hex(
            "14 00 00 00 03 00 02 00 09 00 00 00 00 00 00 00 00 00 00 00",
        ));
        let mut a = GenlAnswer::new(9);
        assert_eq!(a.feed(&dump), Ok(true));
        let messages = a.into_messages();
        assert_eq!(family_id(&messages), Some(0x20));
        assert!(matches!(
            GenlAnswer::new(1).feed(&[9, 0, 0]),
            Err(AnswerFault::Decode(_))
        ));
    }

    #[test]
    fn names_are_ipvsadms() {
        assert_eq!(service_name(&Service::fwmark(AF_INET6, 7)), "FWM 7 IPv6");
        assert_eq!(
            service_name(&Service::new(132, "10.0.0.1:9".parse().unwrap())),
            "SCTP 10.0.0.1:9"
        );
    }

    #[test]
    fn memory_ipvs_follows_the_kernel() {
        let mut m = MemoryIpvs::default();
        let svc = Service::udp("10.96.0.10:53".parse().unwrap()).scheduler("rr");
        assert!(matches!(
            m.new_service(&Service::udp("10.96.0.10:53".parse().unwrap())),
            Err(IpvsError::Netlink(NetlinkError::Kernel {
                errno: EINVAL,
                ..
            }))
        ));
        m.new_service(&svc).unwrap();
        let listed = &m.services()[0];
        assert_eq!(listed.flags.unwrap().flags, ServiceFlags::HASHED);
        assert!(listed.stats.is_some());
        m.set_service(&Service {
            flags: Some(ServiceFlags {
                flags: ServiceFlags::PERSISTENT,
                mask: ServiceFlags::PERSISTENT,
            }),
            timeout: Some(300),
            ..svc.clone().scheduler("wrr")
        })
        .unwrap();
        let listed = &m.services()[0];
        assert_eq!(listed.scheduler.as_deref(), Some("wrr"));
        assert_eq!(
            listed.flags.unwrap().flags,
            ServiceFlags::PERSISTENT | ServiceFlags::HASHED
        );
        let d = Destination::new(
            "10.244.0.11:53".parse().unwrap(),
            ForwardingMethod::Masquerade,
            1,
        );
        m.new_destination(&svc, &d).unwrap();
        assert!(matches!(
            m.new_destination(&svc, &d),
            Err(IpvsError::Exists { .. })
        ));
        m.set_destination(
            &svc,
            &Destination {
                weight: Some(0),
                ..d.key()
            },
        )
        .unwrap();
        let dests = m.destinations(&svc);
        assert_eq!((dests[0].weight, dests[0].active_conns), (Some(0), Some(0)));
        m.del_destination(&svc, &d.key()).unwrap();
        assert!(matches!(
            m.del_destination(&svc, &d),
            Err(IpvsError::NoDestination { .. })
        ));
        m.set_timeouts(Timeouts {
            tcp: Some(60),
            tcp_fin: Some(0),
            udp: None,
        });
        assert_eq!(
            m.timeouts(),
            Timeouts {
                tcp: Some(60),
                tcp_fin: Some(120),
                udp: Some(300)
            }
        );
        m.del_service(&svc).unwrap();
        assert_eq!(m.destinations(&svc), []);
        assert!(matches!(
            m.set_service(&svc),
            Err(IpvsError::NoService { .. })
        ));
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use crate::MemoryNode;
    use kpinspect_core::mode::ipvs::parse_ipvsadm;

    /// What `ipvsadm -Ln` lists for the services [`node`] creates.
    const LISTED: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr persistent 10800
  -> 192.168.0.2:6443             Masq    1      0          0
TCP  10.96.0.10:53 rr
  -> 10.244.0.2:53                Masq    1      0          0
  -> 10.244.0.3:53                Masq    0      0          0
UDP  10.96.0.10:53 mh (mh-port)
  -> 10.244.0.2:53                Masq    1      0          0
FWM  7 wlc
  -> 10.0.0.9:0                   Route   1      0          0
TCP  [fd00::1]:80 wrr
  -> [fd00:10:244::5]:8080        Route   2      0          0
  -> [fd00:10:244::6]:8080        Tunnel  1      0          0
";

    /// The same as `ipvsadm -Sn` saves it.
    const SAVED: &str = "-A -t 10.96.0.1:443 -s rr -p 10800
-a -t 10.96.0.1:443 -r 192.168.0.2:6443 -m -w 1
-A -t 10.96.0.10:53 -s rr
-a -t 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-a -t 10.96.0.10:53 -r 10.244.0.3:53 -m -w 0
-A -u 10.96.0.10:53 -s mh -b mh-port
-a -u 10.96.0.10:53 -r 10.244.0.2:53 -m -w 1
-A -f 7 -s wlc
-a -f 7 -r 10.0.0.9:0 -g -w 1
-A -t [fd00::1]:80 -s wrr
-a -t [fd00::1]:80 -r [fd00:10:244::5]:8080 -g -w 2
-a -t [fd00::1]:80 -r [fd00:10:244::6]:8080 -i -w 1
";

    fn sa(s: &str) -> std::net::SocketAddr {
        s.parse().expect("socket address")
    }

    /// The services of [`LISTED`], added out of order (the kernel dumps in
    /// hash order), destinations too.
    fn node() -> MemoryNode {
        use kpinspect_ipvs::ServiceFlags as Flags;
        let node = MemoryNode::default();
        let v6 = Service::tcp(sa("[fd00::1]:80")).scheduler("wrr");
        node.new_service(&v6).expect("v6");
        for (d, fwd, w) in [
            ("[fd00:10:244::6]:8080", ForwardingMethod::Tunnel, 1),
            ("[fd00:10:244::5]:8080", ForwardingMethod::Route, 2),
        ] {
            node.new_destination(&v6, &Destination::new(sa(d), fwd, w))
                .expect("v6 dest");
        }
        let mark = Service::fwmark(kpinspect_ipvs::AF_INET, 7).scheduler("wlc");
        node.new_service(&mark).expect("fwmark");
        node.new_destination(
            &mark,
            &Destination::new(sa("10.0.0.9:0"), ForwardingMethod::Route, 1),
        )
        .expect("fwmark dest");
        let mut udp = Service::udp(sa("10.96.0.10:53")).scheduler("mh");
        udp.flags = Some(Flags {
            flags: Flags::SCHED2,
            mask: !0,
        });
        node.new_service(&udp).expect("udp");
        let dns = Service::tcp(sa("10.96.0.10:53")).scheduler("rr");
        node.new_service(&dns).expect("dns");
        let mut api = Service::tcp(sa("10.96.0.1:443")).scheduler("rr");
        api.flags = Some(Flags {
            flags: Flags::PERSISTENT,
            mask: !0,
        });
        api.timeout = Some(10800);
        node.new_service(&api).expect("api");
        let masq = |s: &str, w| Destination::new(sa(s), ForwardingMethod::Masquerade, w);
        node.new_destination(&dns, &masq("10.244.0.3:53", 0))
            .expect("dns .3");
        node.new_destination(&dns, &masq("10.244.0.2:53", 1))
            .expect("dns .2");
        node.new_destination(&udp, &masq("10.244.0.2:53", 1))
            .expect("udp .2");
        node.new_destination(&api, &masq("192.168.0.2:6443", 1))
            .expect("api");
        node
    }

    #[test]
    fn reads_back_what_ipvsadm_lists_and_saves() {
        let node = node();
        let read = read_virtual_servers(&node).expect("read");
        assert_eq!(read, parse_ipvsadm(LISTED).expect("listed"));
        // The rules form carries no connection counts.
        let mut uncounted = read.clone();
        for rs in uncounted.iter_mut().flat_map(|v| v.real_servers.iter_mut()) {
            rs.active_connections = None;
            rs.inactive_connections = None;
        }
        assert_eq!(uncounted, parse_ipvsadm(SAVED).expect("saved"));
        assert_eq!(
            kpinspect_core::mode::ipvs::ipvsadm_save(&read),
            SAVED
                .lines()
                .filter(|l| !l.contains(" -f "))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        );
    }

    #[test]
    fn an_empty_table_reads_empty_and_only_persistence_keeps_its_timeout() {
        let node = MemoryNode::default();
        assert_eq!(read_virtual_servers(&node).expect("read"), []);
        let mut svc = Service::udp(sa("10.96.0.10:53")).scheduler("rr");
        svc.timeout = Some(60);
        node.new_service(&svc).expect("add");
        let read = read_virtual_servers(&node).expect("read");
        assert_eq!(read[0].timeout, 0);
        assert_eq!(read[0].flags, ServiceFlags(0), "HASHED is the kernel's");
        assert!(read[0].real_servers.is_empty());
    }
}

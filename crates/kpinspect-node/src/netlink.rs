//! nfnetlink (`NETLINK_NETFILTER`): the message layout shared by the
//! nfacct and conntrack subsystems, a pure request encoder and answer
//! collector, and a blocking request/answer socket.
//!
//! Every nfnetlink message is a netlink header whose type is
//! `subsystem << 8 | message`, a 4-byte `nfgenmsg` (address family,
//! version 0, resource id) and netlink attributes. The encoding and
//! decoding here are pure (bytes in, values out) and tested against bytes
//! the kernel produced; only [`NfnlSocket`] talks to the kernel.

use netlink_packet_core::{
    DecodeError, Emitable, NLA_HEADER_SIZE, NLM_F_REQUEST, NetlinkBuffer, NetlinkDeserializable,
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable, Nla, NlaBuffer,
};
use thiserror::Error;

/// `NFNL_SUBSYS_CTNETLINK`: connection tracking.
pub(crate) const NFNL_SUBSYS_CTNETLINK: u8 = 1;
/// `NFNL_SUBSYS_ACCT`: nfacct counters.
pub(crate) const NFNL_SUBSYS_ACCT: u8 = 7;
/// `AF_UNSPEC`, `AF_INET`, `AF_INET6`.
pub(crate) const AF_UNSPEC: u8 = 0;
pub(crate) const AF_INET: u8 = 2;
pub(crate) const AF_INET6: u8 = 10;

/// The errno values the callers tell apart (Linux numbering).
pub(crate) const EPERM: i32 = 1;
pub(crate) const ENOENT: i32 = 2;
pub(crate) const EBUSY: i32 = 16;
pub(crate) const EEXIST: i32 = 17;

/// A failure talking nfnetlink to the kernel. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// The netlink socket could not be opened or used (e.g. a kernel
    /// without nfnetlink).
    #[error("{operation}: netlink socket: {message}")]
    Socket {
        /// What was being done.
        operation: String,
        /// The operating system's error.
        message: String,
    },
    /// The kernel refused the request for lack of privileges.
    #[error("{operation}: permission denied (run as root or with CAP_NET_ADMIN)")]
    Permission {
        /// What was being done.
        operation: String,
    },
    /// The kernel answered the request with an error.
    #[error("{operation}: {message} (errno {errno})")]
    Kernel {
        /// What was being done.
        operation: String,
        /// The positive errno the kernel returned.
        errno: i32,
        /// The errno's text.
        message: String,
    },
    /// The kernel's answer could not be decoded.
    #[error("{operation}: cannot decode the kernel's answer: {message}")]
    Decode {
        /// What was being done.
        operation: String,
        /// What was wrong with it.
        message: String,
    },
}

impl NetlinkError {
    /// The errno of a [`NetlinkError::Kernel`] answer.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Permission { .. } => Some(EPERM),
            _ => None,
        }
    }

    /// The error for a kernel answer of `-errno` to `operation`.
    pub(crate) fn from_errno(operation: &str, errno: i32) -> NetlinkError {
        if errno == EPERM {
            return NetlinkError::Permission {
                operation: operation.into(),
            };
        }
        NetlinkError::Kernel {
            operation: operation.into(),
            errno,
            message: errno_text(errno),
        }
    }
}

/// `strerror(errno)`, without Rust's " (os error N)" suffix.
fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// One nfnetlink message: subsystem and message type (the two bytes of
/// `nlmsg_type`), the `nfgenmsg` header and the attributes, undecoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NfnlMessage {
    /// `NFNL_SUBSYS_*`.
    pub subsystem: u8,
    /// The subsystem's message type (`NFNL_MSG_ACCT_NEW`, `IPCTNL_MSG_CT_GET`, ...).
    pub kind: u8,
    /// `nfgen_family`.
    pub family: u8,
    /// `res_id` (host order; big-endian on the wire).
    pub res_id: u16,
    /// The attributes, as on the wire.
    pub attributes: Vec<u8>,
}

const NFGENMSG_LEN: usize = 4;
const NFNETLINK_V0: u8 = 0;

impl NfnlMessage {
    /// A message with attributes `attrs`.
    pub fn new(subsystem: u8, kind: u8, family: u8, attrs: &[Attr]) -> NfnlMessage {
        NfnlMessage {
            subsystem,
            kind,
            family,
            res_id: 0,
            attributes: emit_attrs(attrs),
        }
    }
}

impl NetlinkSerializable for NfnlMessage {
    fn message_type(&self) -> u16 {
        u16::from(self.subsystem) << 8 | u16::from(self.kind)
    }

    fn buffer_len(&self) -> usize {
        NFGENMSG_LEN + self.attributes.len()
    }

    fn serialize(&self, buffer: &mut [u8]) {
        buffer[0] = self.family;
        buffer[1] = NFNETLINK_V0;
        buffer[2..4].copy_from_slice(&self.res_id.to_be_bytes());
        buffer[NFGENMSG_LEN..NFGENMSG_LEN + self.attributes.len()]
            .copy_from_slice(&self.attributes);
    }
}

impl NetlinkDeserializable for NfnlMessage {
    type Error = DecodeError;

    fn deserialize(header: &NetlinkHeader, payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.len() < NFGENMSG_LEN {
            return Err(DecodeError::buffer_too_small(payload.len(), NFGENMSG_LEN));
        }
        let [subsystem, kind] = header.message_type.to_be_bytes();
        Ok(NfnlMessage {
            subsystem,
            kind,
            family: payload[0],
            res_id: u16::from_be_bytes([payload[2], payload[3]]),
            attributes: payload[NFGENMSG_LEN..].to_vec(),
        })
    }
}

impl From<NfnlMessage> for NetlinkPayload<NfnlMessage> {
    fn from(message: NfnlMessage) -> Self {
        NetlinkPayload::InnerMessage(message)
    }
}

/// A netlink attribute to send: bytes, or nested attributes (sent with
/// `NLA_F_NESTED`, as libnetfilter_conntrack does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    /// Type and value.
    Bytes(u16, Vec<u8>),
    /// Type and the attributes inside.
    Nested(u16, Vec<Attr>),
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Bytes(_, value) => value.len(),
            Attr::Nested(_, attrs) => attrs.as_slice().buffer_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Bytes(kind, _) | Attr::Nested(kind, _) => *kind,
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Bytes(_, value) => buffer.copy_from_slice(value),
            Attr::Nested(_, attrs) => attrs.as_slice().emit(buffer),
        }
    }

    fn is_nested(&self) -> bool {
        matches!(self, Attr::Nested(..))
    }
}

/// `attrs` as on the wire, each padded to 4 bytes.
pub(crate) fn emit_attrs(attrs: &[Attr]) -> Vec<u8> {
    let mut buf = vec![0; attrs.buffer_len()];
    attrs.emit(&mut buf);
    buf
}

/// The attributes in `bytes` as `(type, value)`, the type without its
/// `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` flags.
pub(crate) fn parse_attrs(bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let nla = NlaBuffer::new_checked(&bytes[pos..]).map_err(|e| e.to_string())?;
        let len = usize::from(nla.length());
        if len < NLA_HEADER_SIZE {
            return Err(format!("attribute of length {len}"));
        }
        out.push((nla.kind(), &bytes[pos + NLA_HEADER_SIZE..pos + len]));
        pos += len.next_multiple_of(4);
    }
    Ok(out)
}

/// A NUL-terminated string attribute's value.
pub(crate) fn attr_string(value: &str) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    v.push(0);
    v
}

/// Reads a NUL-terminated (or unterminated) string value.
pub(crate) fn parse_string(value: &[u8]) -> Result<String, String> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8(value[..end].to_vec()).map_err(|_| "name is not UTF-8".to_string())
}

/// A big-endian unsigned value of exactly `N` bytes.
pub(crate) fn parse_be<const N: usize>(value: &[u8], what: &str) -> Result<[u8; N], String> {
    value
        .try_into()
        .map_err(|_| format!("{what}: {} bytes, expected {N}", value.len()))
}

/// The bytes of a netlink request: `message` with header `flags`
/// (`NLM_F_REQUEST` is always set) and sequence number `seq`, port 0.
pub(crate) fn encode_request(message: NfnlMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags | NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// The netlink messages of one received datagram, in order (any netlink
/// protocol's messages: nfnetlink's, rtnetlink's).
pub(crate) fn split_datagram<M: NetlinkDeserializable>(
    datagram: &[u8],
) -> Result<Vec<NetlinkMessage<M>>, String> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(|e| e.to_string())?
            .length() as usize;
        let message = NetlinkMessage::<M>::deserialize(&rest[..len]).map_err(|e| e.to_string())?;
        out.push(message);
        offset += len.next_multiple_of(4);
    }
    Ok(out)
}

/// How a request failed, as seen in the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnswerError {
    /// The kernel answered `-errno`.
    Errno(i32),
    /// The answer was malformed.
    Decode(String),
}

/// The kernel's answer to one request, collected datagram by datagram:
/// the messages until `NLMSG_DONE` (a dump) or the acknowledgement
/// (a request sent with `NLM_F_ACK`). Pure: fed with received bytes.
#[derive(Debug)]
pub(crate) struct Answer<M = NfnlMessage> {
    seq: u32,
    messages: Vec<M>,
    finished: bool,
}

impl<M: NetlinkDeserializable> Answer<M> {
    /// Waits for the answer to the request numbered `seq`.
    pub fn new(seq: u32) -> Answer<M> {
        Answer {
            seq,
            messages: Vec::new(),
            finished: false,
        }
    }

    /// Takes one received datagram. `Ok(true)` once the answer is complete;
    /// messages of other requests are ignored.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<bool, AnswerError> {
        for message in split_datagram(datagram).map_err(AnswerError::Decode)? {
            if message.header.sequence_number != self.seq || self.finished {
                continue;
            }
            match message.payload {
                NetlinkPayload::Error(e) => match e.code {
                    None => self.finished = true,
                    Some(code) => return Err(AnswerError::Errno(-code.get())),
                },
                NetlinkPayload::Done(done) => {
                    if done.code < 0 {
                        return Err(AnswerError::Errno(-done.code));
                    }
                    self.finished = true;
                }
                NetlinkPayload::InnerMessage(m) => self.messages.push(m),
                _ => {}
            }
        }
        Ok(self.finished)
    }

    /// The messages received before the end of the answer.
    pub fn into_messages(self) -> Vec<M> {
        self.messages
    }
}

/// A netlink socket of `protocol` (`NETLINK_NETFILTER`, `NETLINK_ROUTE`,
/// `NETLINK_GENERIC`), bound and connected to the kernel in this process's
/// network namespace; failures name `operation`.
pub(crate) fn open_socket(
    protocol: isize,
    operation: &str,
) -> Result<netlink_sys::Socket, NetlinkError> {
    let io = |e: std::io::Error| NetlinkError::Socket {
        operation: operation.into(),
        message: e.to_string(),
    };
    let mut socket = netlink_sys::Socket::new(protocol).map_err(io)?;
    socket.bind_auto().map_err(io)?;
    socket
        .connect(&netlink_sys::SocketAddr::new(0, 0))
        .map_err(io)?;
    Ok(socket)
}

/// The most requests [`send_batch`] puts in one datagram. Each request
/// may fail, and every failure is an error message queued on the socket
/// until the batch is read back: 128 of them stay well inside the default
/// receive buffer (212,992 bytes), so none is dropped.
pub(crate) const BATCH_MESSAGES: usize = 128;

/// `NLMSG_ERROR`: an error or, with code 0, an acknowledgement.
const NLMSG_ERROR: u16 = 2;

/// The answer to a batch: requests numbered `first..=last` in one datagram,
/// only the last sent with `NLM_F_ACK`. The kernel handles the requests
/// of a datagram in order, answers each failure with an error message
/// (whatever its flags) and the last request with its acknowledgement or
/// error: once that is in, every failure before it is too. Pure: fed with
/// received bytes.
#[derive(Debug)]
pub(crate) struct BatchAnswer {
    first: u32,
    last: u32,
    /// The failed requests' numbers and errnos, in order.
    errors: Vec<(u32, i32)>,
    finished: bool,
}

impl BatchAnswer {
    /// Waits for the answers to requests `first..=last`.
    pub fn new(first: u32, last: u32) -> BatchAnswer {
        BatchAnswer {
            first,
            last,
            errors: Vec::new(),
            finished: false,
        }
    }

    fn in_batch(&self, seq: u32) -> bool {
        seq.wrapping_sub(self.first) <= self.last.wrapping_sub(self.first)
    }

    /// Takes one received datagram: `Ok(true)` once the last request is
    /// answered; messages of other requests are ignored.
    pub fn feed(&mut self, datagram: &[u8]) -> Result<bool, String> {
        let mut pos = 0;
        while pos < datagram.len() {
            let buf = NetlinkBuffer::new_checked(&datagram[pos..]).map_err(|e| e.to_string())?;
            let len = buf.length() as usize;
            let (kind, seq) = (buf.message_type(), buf.sequence_number());
            let code = buf
                .payload()
                .get(..4)
                .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            pos += len.next_multiple_of(4).max(4);
            if kind != NLMSG_ERROR || self.finished || !self.in_batch(seq) {
                continue;
            }
            let code = code.ok_or("short error message")?;
            if code < 0 {
                self.errors.push((seq, -code));
            }
            if seq == self.last {
                self.finished = true;
            }
        }
        Ok(self.finished)
    }

    /// The failed requests' numbers and errnos, in order.
    pub fn into_errors(self) -> Vec<(u32, i32)> {
        self.errors
    }
}

/// A batch of requests being encoded for [`send_batch`]: each is padded to
/// netlink's 4-byte alignment and numbered in turn.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    /// The first request's number, once there is one.
    pub first: Option<u32>,
    /// The last request's number.
    pub last: u32,
}

impl Batch {
    /// Adds one encoded request numbered `seq`.
    pub fn push(&mut self, request: &[u8], seq: u32) {
        self.bytes.extend_from_slice(request);
        self.bytes.resize(self.bytes.len().next_multiple_of(4), 0);
        self.first.get_or_insert(seq);
        self.last = seq;
    }
}

/// Sends `batch` (its last request asks for an acknowledgement) in one
/// datagram on `socket` and returns the failed requests (number, errno),
/// in order. A failure does not stop the requests after it in the batch:
/// the kernel handles them all.
pub(crate) fn send_batch(
    socket: &netlink_sys::Socket,
    batch: &Batch,
    operation: &str,
) -> Result<Vec<(u32, i32)>, NetlinkError> {
    let Some(first) = batch.first else {
        return Ok(Vec::new());
    };
    let io = |e: std::io::Error| NetlinkError::Socket {
        operation: operation.into(),
        message: e.to_string(),
    };
    socket.send(&batch.bytes, 0).map_err(io)?;
    let mut answer = BatchAnswer::new(first, batch.last);
    loop {
        let (datagram, _) = socket.recv_from_full().map_err(io)?;
        match answer.feed(&datagram) {
            Ok(true) => return Ok(answer.into_errors()),
            Ok(false) => {}
            Err(message) => {
                return Err(NetlinkError::Decode {
                    operation: operation.into(),
                    message,
                });
            }
        }
    }
}

/// A blocking `NETLINK_NETFILTER` socket that sends one request at a time
/// and collects its answer.
pub(crate) struct NfnlSocket {
    socket: netlink_sys::Socket,
    seq: u32,
}

impl NfnlSocket {
    /// Opens and binds a socket in this process's network namespace.
    pub fn open(operation: &str) -> Result<NfnlSocket, NetlinkError> {
        Ok(NfnlSocket {
            socket: open_socket(netlink_sys::protocols::NETLINK_NETFILTER, operation)?,
            seq: 0,
        })
    }

    /// Sends `message` with `flags` and returns the messages of the answer.
    /// A request that expects no data must carry `NLM_F_ACK`, a listing
    /// `NLM_F_DUMP`, or this waits for an answer that never ends.
    pub fn request(
        &mut self,
        message: NfnlMessage,
        flags: u16,
        operation: &str,
    ) -> Result<Vec<NfnlMessage>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let io = |e: std::io::Error| NetlinkError::Socket {
            operation: operation.into(),
            message: e.to_string(),
        };
        let bytes = encode_request(message, flags, self.seq);
        self.socket.send(&bytes, 0).map_err(io)?;
        let mut answer = Answer::<NfnlMessage>::new(self.seq);
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io)?;
            match answer.feed(&datagram) {
                Ok(true) => return Ok(answer.into_messages()),
                Ok(false) => {}
                Err(AnswerError::Errno(errno)) => {
                    return Err(NetlinkError::from_errno(operation, errno));
                }
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

/// Golden bytes: netlink traffic captured with `strace -e write=3 -e read=3`
/// in a fresh network namespace (kernel 6.18), shared by the unit tests of
/// the subsystems.
#[cfg(test)]
pub(crate) mod golden {
    /// Bytes from whitespace-separated hex pairs.
    pub fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).expect("hex byte"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::golden::hex;
    use super::*;
    use netlink_packet_core::NLM_F_DUMP;

    #[test]
    fn nested_attributes_are_flagged_and_padded() {
        let bytes = emit_attrs(&[
            Attr::Nested(1, vec![Attr::Bytes(1, vec![10, 0, 0, 1])]),
            Attr::Bytes(2, vec![0x11]),
        ]);
        assert_eq!(
            bytes,
            hex("0c 00 01 80  08 00 01 00 0a 00 00 01  05 00 02 00 11 00 00 00")
        );
        let attrs = parse_attrs(&bytes).expect("parse");
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[0].0, 1, "the nested flag is masked");
        assert_eq!(attrs[1], (2, &[0x11][..]));
        assert!(parse_attrs(&[1, 0]).is_err());
    }

    /// An `NLMSG_ERROR` message answering request `seq` with `code`.
    fn error_message(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(36u32.to_ne_bytes());
        m.extend(NLMSG_ERROR.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(code.to_ne_bytes());
        m.extend([0; 16]);
        m
    }

    #[test]
    fn a_batch_answer_collects_failures_until_the_last_is_acknowledged() {
        let mut answer = BatchAnswer::new(10, 14);
        // Request 11 failed (EEXIST), 13 too (ENOENT), in one datagram,
        // with another request's answer in between.
        let mut datagram = error_message(11, -17);
        datagram.extend(error_message(99, -1));
        datagram.extend(error_message(13, -2));
        assert_eq!(answer.feed(&datagram), Ok(false));
        // The last request's acknowledgement ends it.
        assert_eq!(answer.feed(&error_message(14, 0)), Ok(true));
        assert_eq!(answer.into_errors(), vec![(11, 17), (13, 2)]);

        // The last request's own failure ends it too; numbers may wrap.
        let mut answer = BatchAnswer::new(u32::MAX, 1);
        assert_eq!(answer.feed(&error_message(0, -3)), Ok(false));
        assert_eq!(answer.feed(&error_message(1, -22)), Ok(true));
        assert_eq!(answer.into_errors(), vec![(0, 3), (1, 22)]);

        let mut answer = BatchAnswer::new(1, 2);
        assert!(answer.feed(&[1, 2, 3]).is_err());
    }

    #[test]
    fn a_batch_pads_and_numbers_its_requests() {
        let mut batch = Batch::default();
        batch.push(&[1, 2, 3, 4, 5], 7);
        batch.push(&[6, 7, 8, 9], 8);
        assert_eq!(batch.bytes, [1, 2, 3, 4, 5, 0, 0, 0, 6, 7, 8, 9]);
        assert_eq!((batch.first, batch.last), (Some(7), 8));
    }

    #[test]
    fn errors_and_acks_end_an_answer() {
        // An ACK (NLM_F_CAPPED) to request 0x6b0edc42 from the kernel.
        let ack = hex("24 00 00 00 02 00 00 01 42 dc 0e 6b 18 07 00 00
                       00 00 00 00 50 00 00 00 00 07 05 04 42 dc 0e 6b 00 00 00 00");
        let mut answer = Answer::<NfnlMessage>::new(0x6b0e_dc42);
        assert_eq!(answer.feed(&ack), Ok(true));
        assert!(answer.into_messages().is_empty());
        // Another request's answer is ignored.
        let mut other = Answer::<NfnlMessage>::new(7);
        assert_eq!(other.feed(&ack), Ok(false));
        // -EBUSY (0xfffffff0) with the request echoed.
        let busy = hex("24 00 00 00 02 00 00 00 42 dc 0e 6b 20 07 00 00
                        f0 ff ff ff 50 00 00 00 00 07 05 04 42 dc 0e 6b 00 00 00 00");
        assert_eq!(
            Answer::<NfnlMessage>::new(0x6b0e_dc42).feed(&busy),
            Err(AnswerError::Errno(EBUSY))
        );
        assert!(matches!(
            Answer::<NfnlMessage>::new(1).feed(&[0x30, 0, 0, 0, 1]),
            Err(AnswerError::Decode(_))
        ));
        assert!(matches!(
            Answer::<NfnlMessage>::new(1)
                .feed(&hex("14 00 00 00 00 07 02 00 01 00 00 00 00 00 00 00 00")),
            Err(AnswerError::Decode(_))
        ));
    }

    #[test]
    fn requests_carry_the_request_flag_and_their_length() {
        let bytes = encode_request(
            NfnlMessage::new(NFNL_SUBSYS_ACCT, 1, AF_UNSPEC, &[]),
            NLM_F_DUMP,
            0x6b0e_dc3c,
        );
        // `nfacct list`'s request, byte for byte.
        assert_eq!(
            bytes,
            hex("14 00 00 00 01 07 01 03 3c dc 0e 6b 00 00 00 00 00 00 00 00")
        );
        let back = split_datagram::<NfnlMessage>(&bytes).expect("split");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].header.flags, NLM_F_DUMP | NLM_F_REQUEST);
    }

    #[test]
    fn kernel_errors_read_as_one_line() {
        let e = NetlinkError::from_errno("nfacct delete x", EBUSY);
        assert_eq!(
            e.to_string(),
            "nfacct delete x: Device or resource busy (errno 16)"
        );
        assert_eq!(e.errno(), Some(EBUSY));
        let e = NetlinkError::from_errno("conntrack dump ipv4", EPERM);
        assert!(matches!(e, NetlinkError::Permission { .. }));
        assert_eq!(e.errno(), Some(EPERM));
    }
}

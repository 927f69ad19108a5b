//! nfacct: the kernel's named packet/byte counters (`nfnetlink_acct`),
//! which iptables rules update with `-m nfacct --nfacct-name NAME`.
//!
//! kube-proxy's iptables mode ensures the counters
//! [`KUBE_PROXY_NFACCT_COUNTERS`] exist before it writes its rules (on every
//! full sync) and adds the `-m nfacct` match only for the counters it could
//! ensure. A counter belongs to one network namespace; a rule that uses it
//! holds a reference, so the kernel refuses to delete it (`EBUSY`) until the
//! rule is gone.
//!
//! The requests are those of the `nfacct` tool (libnetfilter_acct), byte
//! for byte; see the unit tests' golden bytes.

use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP};
use thiserror::Error;

use crate::netlink::{
    AF_UNSPEC, Attr, EBUSY, EEXIST, ENOENT, NFNL_SUBSYS_ACCT, NetlinkError, NfnlMessage,
    NfnlSocket, attr_string, parse_attrs, parse_be, parse_string,
};

/// The counters kube-proxy's iptables mode creates (its metrics
/// `iptables_ct_state_invalid_dropped_packets_total` and
/// `iptables_localhost_nodeports_accepted_packets_total`).
pub const KUBE_PROXY_NFACCT_COUNTERS: [&str; 2] = [
    "ct_state_invalid_dropped_pkts",
    "localhost_nps_accepted_pkts",
];

/// The longest counter name, in bytes (`NFACCT_NAME_MAX` less the NUL).
pub const NFACCT_NAME_MAX_LEN: usize = 31;

const NFNL_MSG_ACCT_NEW: u8 = 0;
const NFNL_MSG_ACCT_GET: u8 = 1;
const NFNL_MSG_ACCT_DEL: u8 = 3;

const NFACCT_NAME: u16 = 1;
const NFACCT_PKTS: u16 = 2;
const NFACCT_BYTES: u16 = 3;
const NFACCT_USE: u16 = 4;

/// One nfacct counter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NfAcctCounter {
    /// Its name.
    pub name: String,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
    /// The kernel's reference count (`NFACCT_USE`): 1 for the counter
    /// itself plus one per rule using it. `None` when not reported.
    pub references: Option<u32>,
}

impl NfAcctCounter {
    /// A counter at zero that no rule uses.
    pub fn new(name: &str) -> NfAcctCounter {
        NfAcctCounter {
            name: name.into(),
            packets: 0,
            bytes: 0,
            references: Some(1),
        }
    }

    /// Whether a rule uses the counter (it cannot be deleted then), when
    /// the kernel said.
    pub fn in_use(&self) -> Option<bool> {
        self.references.map(|r| r > 1)
    }
}

/// What [`NfAcct::ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ensured {
    /// The counter was created.
    Created,
    /// The counter existed already (it was left as it was).
    Existed,
}

/// A failure to read or change nfacct counters.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NfAcctError {
    /// The name is empty.
    #[error("nfacct counter name is empty")]
    EmptyName,
    /// The name is longer than [`NFACCT_NAME_MAX_LEN`] bytes or holds a NUL.
    #[error("invalid nfacct counter name {name:?}: at most {NFACCT_NAME_MAX_LEN} bytes, no NUL")]
    InvalidName {
        /// The name given.
        name: String,
    },
    /// No counter has that name.
    #[error("nfacct counter {name} does not exist")]
    NotFound {
        /// The counter.
        name: String,
    },
    /// A rule uses the counter, so it cannot be deleted (`EBUSY`).
    #[error("nfacct counter {name} is in use by a rule")]
    InUse {
        /// The counter.
        name: String,
    },
    /// Talking to the kernel failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Checks `name` as the kernel would store it: 1 to
/// [`NFACCT_NAME_MAX_LEN`] bytes, no NUL.
///
/// ```
/// use kpinspect_node::{NfAcctError, validate_nfacct_name};
///
/// assert!(validate_nfacct_name("localhost_nps_accepted_pkts").is_ok());
/// assert_eq!(validate_nfacct_name(""), Err(NfAcctError::EmptyName));
/// assert!(validate_nfacct_name(&"x".repeat(32)).is_err());
/// ```
pub fn validate_nfacct_name(name: &str) -> Result<(), NfAcctError> {
    if name.is_empty() {
        Err(NfAcctError::EmptyName)
    } else if name.len() > NFACCT_NAME_MAX_LEN || name.contains('\0') {
        Err(NfAcctError::InvalidName { name: name.into() })
    } else {
        Ok(())
    }
}

/// A node's nfacct counters (of one network namespace).
pub trait NfAcct {
    /// Every counter, in creation order.
    fn list(&self) -> Result<Vec<NfAcctCounter>, NfAcctError>;

    /// The counter called `name`, `None` if there is none.
    fn get(&self, name: &str) -> Result<Option<NfAcctCounter>, NfAcctError>;

    /// Creates the counter unless it exists; an existing counter is left
    /// as it is (its values are not reset) and is not an error.
    fn ensure(&self, name: &str) -> Result<Ensured, NfAcctError>;

    /// Deletes the counter: [`NfAcctError::InUse`] while a rule uses it,
    /// [`NfAcctError::NotFound`] when there is none.
    fn delete(&self, name: &str) -> Result<(), NfAcctError>;
}

/// What kube-proxy's iptables mode does before writing its rules: ensure
/// each of [`KUBE_PROXY_NFACCT_COUNTERS`], in order. Its rules use `-m
/// nfacct` only for the counters whose result is `Ok`; a failure is
/// reported, not fatal.
///
/// ```
/// use kpinspect_node::{Ensured, MemoryNode, NfAcct, ensure_kube_proxy_counters};
///
/// let node = MemoryNode::new();
/// node.ensure("localhost_nps_accepted_pkts").unwrap();
/// let results = ensure_kube_proxy_counters(&node);
/// assert_eq!(
///     results,
///     [
///         ("ct_state_invalid_dropped_pkts", Ok(Ensured::Created)),
///         ("localhost_nps_accepted_pkts", Ok(Ensured::Existed)),
///     ]
/// );
/// ```
pub fn ensure_kube_proxy_counters(
    acct: &impl NfAcct,
) -> Vec<(&'static str, Result<Ensured, NfAcctError>)> {
    KUBE_PROXY_NFACCT_COUNTERS
        .iter()
        .map(|name| (*name, acct.ensure(name)))
        .collect()
}

/// Ensures kube-proxy's counters before rules that use them are written;
/// `Err` says, in one line, which could not be created (the rules must
/// then do without `-m nfacct`, as kube-proxy's do).
///
/// ```
/// use kpinspect_node::{MemoryNode, NfAcct, ensure_counters_for_rules};
/// let node = MemoryNode::new();
/// assert_eq!(ensure_counters_for_rules(&node), Ok(()));
/// assert!(node.get("localhost_nps_accepted_pkts").unwrap().is_some());
/// ```
pub fn ensure_counters_for_rules(acct: &impl NfAcct) -> Result<(), String> {
    let failed: Vec<String> = ensure_kube_proxy_counters(acct)
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "nfacct counters could not be created ({})",
            failed.join("; ")
        ))
    }
}

/// What a cleanup did (or, in a dry run, would do) with one of
/// kube-proxy's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CounterCleanup {
    /// Removed (or would be).
    Removed(&'static str),
    /// Kept: a rule still uses it.
    InUse(&'static str),
}

impl std::fmt::Display for CounterCleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CounterCleanup::Removed(n) => write!(f, "removed nfacct counter {n}"),
            CounterCleanup::InUse(n) => {
                write!(f, "kept nfacct counter {n}: a rule still uses it")
            }
        }
    }
}

/// Removes kube-proxy's nfacct counters that no rule uses (after a cleanup
/// removed iptables mode's rules); a counter a rule still uses is kept, a
/// missing one is not mentioned. With `dry_run`, says what it would do.
///
/// ```
/// use kpinspect_node::{CounterCleanup, MemoryNode, NfAcct, cleanup_kube_proxy_counters};
///
/// let node = MemoryNode::new();
/// node.ensure("ct_state_invalid_dropped_pkts").unwrap();
/// assert_eq!(
///     cleanup_kube_proxy_counters(&node, false).unwrap(),
///     [CounterCleanup::Removed("ct_state_invalid_dropped_pkts")]
/// );
/// assert!(node.get("ct_state_invalid_dropped_pkts").unwrap().is_none());
/// ```
pub fn cleanup_kube_proxy_counters(
    acct: &impl NfAcct,
    dry_run: bool,
) -> Result<Vec<CounterCleanup>, NfAcctError> {
    let mut out = Vec::new();
    for name in KUBE_PROXY_NFACCT_COUNTERS {
        let Some(counter) = acct.get(name)? else {
            continue;
        };
        if dry_run {
            out.push(if counter.in_use() == Some(true) {
                CounterCleanup::InUse(name)
            } else {
                CounterCleanup::Removed(name)
            });
            continue;
        }
        match acct.delete(name) {
            Ok(()) => out.push(CounterCleanup::Removed(name)),
            Err(NfAcctError::InUse { .. }) => out.push(CounterCleanup::InUse(name)),
            Err(NfAcctError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The kernel's nfacct counters of this process's network namespace, over
/// nfnetlink (`NFNL_SUBSYS_ACCT`). Needs `CAP_NET_ADMIN` for every call.
///
/// ```
/// use kpinspect_node::{NfAcct, NfAcctError, SystemNfAcct};
///
/// // Invalid names are refused before the kernel is asked.
/// assert_eq!(SystemNfAcct.ensure(""), Err(NfAcctError::EmptyName));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemNfAcct;

impl NfAcct for SystemNfAcct {
    fn list(&self) -> Result<Vec<NfAcctCounter>, NfAcctError> {
        let op = "nfacct list";
        let answer = NfnlSocket::open(op)?.request(list_request(), NLM_F_DUMP, op)?;
        answer
            .iter()
            .map(|m| decode_counter(m).map_err(|e| decode_error(op, e)))
            .collect()
    }

    fn get(&self, name: &str) -> Result<Option<NfAcctCounter>, NfAcctError> {
        validate_nfacct_name(name)?;
        let op = format!("nfacct get {name}");
        match NfnlSocket::open(&op)?.request(get_request(name), NLM_F_ACK, &op) {
            Ok(answer) => match answer.first() {
                Some(m) => decode_counter(m)
                    .map(Some)
                    .map_err(|e| decode_error(&op, e)),
                None => Ok(None),
            },
            Err(e) if e.errno() == Some(ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn ensure(&self, name: &str) -> Result<Ensured, NfAcctError> {
        validate_nfacct_name(name)?;
        let op = format!("nfacct add {name}");
        match NfnlSocket::open(&op)?.request(new_request(name), NEW_FLAGS, &op) {
            Ok(_) => Ok(Ensured::Created),
            // An existing counter: EBUSY (no NLM_F_EXCL), as kube-proxy and
            // the nfacct tool see it.
            Err(e) if matches!(e.errno(), Some(EBUSY | EEXIST)) => Ok(Ensured::Existed),
            Err(e) => Err(e.into()),
        }
    }

    fn delete(&self, name: &str) -> Result<(), NfAcctError> {
        validate_nfacct_name(name)?;
        let op = format!("nfacct delete {name}");
        match NfnlSocket::open(&op)?.request(del_request(name), NLM_F_ACK, &op) {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.errno() {
                Some(EBUSY) => NfAcctError::InUse { name: name.into() },
                Some(ENOENT) => NfAcctError::NotFound { name: name.into() },
                _ => e.into(),
            }),
        }
    }
}

fn decode_error(operation: &str, message: String) -> NfAcctError {
    NfAcctError::Netlink(NetlinkError::Decode {
        operation: operation.into(),
        message,
    })
}

/// `NLM_F_ACK | NLM_F_CREATE`: create, answer `EBUSY` if it exists.
const NEW_FLAGS: u16 = NLM_F_ACK | NLM_F_CREATE;

/// `NFNL_MSG_ACCT_NEW` for `name`, with zero packets and bytes (as
/// libnetfilter_acct sends it).
fn new_request(name: &str) -> NfnlMessage {
    NfnlMessage::new(
        NFNL_SUBSYS_ACCT,
        NFNL_MSG_ACCT_NEW,
        AF_UNSPEC,
        &[
            Attr::Bytes(NFACCT_NAME, attr_string(name)),
            Attr::Bytes(NFACCT_PKTS, 0u64.to_be_bytes().to_vec()),
            Attr::Bytes(NFACCT_BYTES, 0u64.to_be_bytes().to_vec()),
        ],
    )
}

/// `NFNL_MSG_ACCT_GET` for one counter.
fn get_request(name: &str) -> NfnlMessage {
    NfnlMessage::new(
        NFNL_SUBSYS_ACCT,
        NFNL_MSG_ACCT_GET,
        AF_UNSPEC,
        &[Attr::Bytes(NFACCT_NAME, attr_string(name))],
    )
}

/// `NFNL_MSG_ACCT_GET` without a name: with `NLM_F_DUMP`, every counter.
fn list_request() -> NfnlMessage {
    NfnlMessage::new(NFNL_SUBSYS_ACCT, NFNL_MSG_ACCT_GET, AF_UNSPEC, &[])
}

/// `NFNL_MSG_ACCT_DEL` for one counter (without a name the kernel deletes
/// every unused counter, so a name is always sent).
fn del_request(name: &str) -> NfnlMessage {
    NfnlMessage::new(
        NFNL_SUBSYS_ACCT,
        NFNL_MSG_ACCT_DEL,
        AF_UNSPEC,
        &[Attr::Bytes(NFACCT_NAME, attr_string(name))],
    )
}

/// A counter from the kernel's `NFNL_MSG_ACCT_NEW` message (the type of
/// its answers to GET and dumps).
fn decode_counter(message: &NfnlMessage) -> Result<NfAcctCounter, String> {
    if message.subsystem != NFNL_SUBSYS_ACCT || message.kind != NFNL_MSG_ACCT_NEW {
        return Err(format!(
            "unexpected message {}:{} for an nfacct counter",
            message.subsystem, message.kind
        ));
    }
    let mut name = None;
    let mut counter = NfAcctCounter {
        name: String::new(),
        packets: 0,
        bytes: 0,
        references: None,
    };
    for (kind, value) in parse_attrs(&message.attributes)? {
        match kind {
            NFACCT_NAME => name = Some(parse_string(value)?),
            NFACCT_PKTS => counter.packets = u64::from_be_bytes(parse_be(value, "NFACCT_PKTS")?),
            NFACCT_BYTES => counter.bytes = u64::from_be_bytes(parse_be(value, "NFACCT_BYTES")?),
            NFACCT_USE => {
                counter.references = Some(u32::from_be_bytes(parse_be(value, "NFACCT_USE")?));
            }
            _ => {}
        }
    }
    counter.name = name.ok_or("nfacct counter without NFACCT_NAME")?;
    Ok(counter)
}

#[cfg(test)]
mod tests {
    /// A kernel that cannot create counters (no `nfnetlink_acct`).
    struct NoAccounting;

    impl super::NfAcct for NoAccounting {
        fn list(&self) -> Result<Vec<super::NfAcctCounter>, super::NfAcctError> {
            Ok(vec![])
        }
        fn get(&self, _: &str) -> Result<Option<super::NfAcctCounter>, super::NfAcctError> {
            Ok(None)
        }
        fn ensure(&self, name: &str) -> Result<super::Ensured, super::NfAcctError> {
            Err(super::NfAcctError::InvalidName { name: name.into() })
        }
        fn delete(&self, name: &str) -> Result<(), super::NfAcctError> {
            Err(super::NfAcctError::NotFound { name: name.into() })
        }
    }

    #[test]
    fn counters_that_cannot_be_created_are_named_in_one_line() {
        let why = super::ensure_counters_for_rules(&NoAccounting).unwrap_err();
        assert!(
            why.starts_with("nfacct counters could not be created ("),
            "{why}"
        );
        assert!(why.contains("ct_state_invalid_dropped_pkts: "), "{why}");
        assert!(why.contains("localhost_nps_accepted_pkts: "), "{why}");
        assert_eq!(why.lines().count(), 1);
        assert_eq!(
            super::cleanup_kube_proxy_counters(&NoAccounting, false),
            Ok(vec![])
        );
    }

    use super::*;
    use crate::netlink::{Answer, AnswerError, encode_request, split_datagram};

    // Captured with `strace -e write=3 -e read=3` around the nfacct tool in
    // a fresh network namespace (see testdata/netlink/): its requests and
    // the kernel's answers. Sequence numbers 0x6b0edc43 and 0x6b0edc44.
    include!("../testdata/netlink/nfacct_golden.rs");

    const SEQ_ADD: u32 = 0x6b0e_dc43;
    const SEQ: u32 = 0x6b0e_dc44;

    fn answer(seq: u32, datagrams: &[&[u8]]) -> Result<Vec<NfnlMessage>, AnswerError> {
        let mut answer = Answer::<NfnlMessage>::new(seq);
        for (i, d) in datagrams.iter().enumerate() {
            let done = answer.feed(d)?;
            assert_eq!(done, i + 1 == datagrams.len(), "datagram {i}");
        }
        Ok(answer.into_messages())
    }

    #[test]
    fn requests_are_the_nfacct_tools_bytes() {
        let name = "ct_state_invalid_dropped_pkts";
        assert_eq!(
            encode_request(new_request(name), NEW_FLAGS, SEQ_ADD),
            NEW_REQUEST
        );
        assert_eq!(
            encode_request(list_request(), NLM_F_DUMP, SEQ),
            LIST_REQUEST
        );
        let name = "localhost_nps_accepted_pkts";
        assert_eq!(
            encode_request(get_request(name), NLM_F_ACK, SEQ),
            GET_REQUEST
        );
        assert_eq!(
            encode_request(del_request(name), NLM_F_ACK, SEQ),
            DEL_REQUEST
        );
        // And back: the tool's request decodes to the message we build.
        let back = split_datagram::<NfnlMessage>(&DEL_REQUEST).expect("split");
        assert_eq!(
            back[0].payload,
            netlink_packet_core::NetlinkPayload::InnerMessage(del_request(name))
        );
    }

    #[test]
    fn a_dump_decodes_to_counters_in_creation_order() {
        let messages = answer(SEQ, &[&LIST_ANSWER, &LIST_DONE]).expect("answer");
        let counters: Vec<NfAcctCounter> = messages
            .iter()
            .map(|m| decode_counter(m).expect("counter"))
            .collect();
        assert_eq!(
            counters,
            [
                NfAcctCounter::new("ct_state_invalid_dropped_pkts"),
                NfAcctCounter {
                    name: "localhost_nps_accepted_pkts".into(),
                    packets: 4,
                    bytes: 188,
                    references: Some(2),
                },
            ]
        );
        assert_eq!(counters[0].in_use(), Some(false));
        assert_eq!(counters[1].in_use(), Some(true));
    }

    #[test]
    fn answers_to_get_new_and_delete() {
        let got = answer(SEQ, &[&GET_ANSWER, &GET_ACK]).expect("get");
        assert_eq!(got.len(), 1);
        assert_eq!(
            decode_counter(&got[0]).expect("counter").packets,
            4,
            "{got:?}"
        );
        assert_eq!(answer(SEQ_ADD, &[&NEW_ACK]), Ok(vec![]));
        assert_eq!(answer(SEQ, &[&DEL_ACK]), Ok(vec![]));
        for (seq, bytes, errno) in [
            (SEQ_ADD, &NEW_EXISTS[..], EBUSY),
            (SEQ, &GET_MISSING[..], ENOENT),
            (SEQ, &DEL_BUSY[..], EBUSY),
            (SEQ, &DEL_MISSING[..], ENOENT),
        ] {
            assert_eq!(
                Answer::<NfnlMessage>::new(seq).feed(bytes),
                Err(AnswerError::Errno(errno))
            );
        }
    }

    #[test]
    fn malformed_counters_are_refused() {
        let mut m = list_request();
        assert!(decode_counter(&m).is_err(), "GET is not a counter");
        m.kind = NFNL_MSG_ACCT_NEW;
        assert_eq!(
            decode_counter(&m),
            Err("nfacct counter without NFACCT_NAME".into())
        );
        m.attributes = crate::netlink::emit_attrs(&[
            Attr::Bytes(NFACCT_NAME, attr_string("x")),
            Attr::Bytes(NFACCT_PKTS, vec![1, 2, 3]),
        ]);
        assert!(decode_counter(&m).unwrap_err().contains("NFACCT_PKTS"));
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(validate_nfacct_name(""), Err(NfAcctError::EmptyName));
        assert!(validate_nfacct_name(&"a".repeat(NFACCT_NAME_MAX_LEN)).is_ok());
        for bad in ["a".repeat(NFACCT_NAME_MAX_LEN + 1), "a\0b".into()] {
            assert_eq!(
                validate_nfacct_name(&bad),
                Err(NfAcctError::InvalidName { name: bad.clone() })
            );
        }
        for name in KUBE_PROXY_NFACCT_COUNTERS {
            assert!(validate_nfacct_name(name).is_ok());
        }
        assert_eq!(
            SystemNfAcct.delete(&"x".repeat(40)),
            Err(NfAcctError::InvalidName {
                name: "x".repeat(40)
            })
        );
    }
}

//! Why bytes could not be decoded.

use thiserror::Error;

/// A message or attribute that does not decode. Every message is one line
/// and names what was being read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IpvsDecodeError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: {len} bytes, need at least {need}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// The bytes there were.
        len: usize,
        /// The bytes needed.
        need: usize,
    },
    /// An attribute header whose length is impossible.
    #[error("{what}: attribute at byte {offset} has length {length}")]
    BadAttribute {
        /// The attribute list being read.
        what: &'static str,
        /// Where the attribute starts in the list.
        offset: usize,
        /// Its `nla_len`.
        length: usize,
    },
    /// A fixed-size attribute of another size.
    #[error("{what}: {len} bytes, expected {expected}")]
    BadLength {
        /// The attribute.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The sizes it may have.
        expected: &'static str,
    },
    /// A string attribute that is not UTF-8.
    #[error("{what}: not UTF-8")]
    NotUtf8 {
        /// The attribute.
        what: &'static str,
    },
    /// An address family other than `AF_INET` (2) and `AF_INET6` (10)
    /// where an address must be read.
    #[error("{what}: address family {family} is neither AF_INET nor AF_INET6")]
    UnknownFamily {
        /// The address attribute.
        what: &'static str,
        /// The family.
        family: u16,
    },
    /// A netlink message type that is not the expected family.
    #[error("netlink message type {found}, expected the family id {expected}")]
    WrongFamily {
        /// The message's `nlmsg_type`.
        found: u16,
        /// The family id expected.
        expected: u16,
    },
}

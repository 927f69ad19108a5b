//! Attribute helpers shared by the modules: walking an attribute list
//! without losing the flags, and fixed-size values in host or network order.

use netlink_packet_core::{DefaultNla, Emitable, NLA_F_NESTED, NLA_HEADER_SIZE, Nla};

use crate::IpvsDecodeError;

/// One attribute as on the wire: its type *with* the `NLA_F_NESTED` /
/// `NLA_F_NET_BYTEORDER` flags, and its value.
pub(crate) struct RawAttr<'a> {
    pub kind: u16,
    pub value: &'a [u8],
}

impl RawAttr<'_> {
    /// The type without flags.
    pub fn id(&self) -> u16 {
        self.kind & netlink_packet_core::NLA_TYPE_MASK
    }

    /// Kept as it is, to be emitted again unchanged.
    pub fn unknown(&self) -> DefaultNla {
        DefaultNla::new(self.kind, self.value.to_vec())
    }
}

/// The attributes of `bytes`, in order.
pub(crate) fn attrs<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<Vec<RawAttr<'a>>, IpvsDecodeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < NLA_HEADER_SIZE {
            return Err(IpvsDecodeError::Truncated {
                what,
                len: rest.len(),
                need: NLA_HEADER_SIZE,
            });
        }
        let length = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        if length < NLA_HEADER_SIZE || length > rest.len() {
            return Err(IpvsDecodeError::BadAttribute {
                what,
                offset: pos,
                length,
            });
        }
        out.push(RawAttr {
            kind: u16::from_ne_bytes([rest[2], rest[3]]),
            value: &rest[NLA_HEADER_SIZE..length],
        });
        pos += length.next_multiple_of(4);
    }
    Ok(out)
}

/// A value of exactly `N` bytes.
pub(crate) fn fixed<const N: usize>(
    value: &[u8],
    what: &'static str,
    expected: &'static str,
) -> Result<[u8; N], IpvsDecodeError> {
    value.try_into().map_err(|_| IpvsDecodeError::BadLength {
        what,
        len: value.len(),
        expected,
    })
}

pub(crate) fn u8_of(value: &[u8], what: &'static str) -> Result<u8, IpvsDecodeError> {
    Ok(fixed::<1>(value, what, "1")?[0])
}

pub(crate) fn u16_ne(value: &[u8], what: &'static str) -> Result<u16, IpvsDecodeError> {
    Ok(u16::from_ne_bytes(fixed(value, what, "2")?))
}

pub(crate) fn u16_be(value: &[u8], what: &'static str) -> Result<u16, IpvsDecodeError> {
    Ok(u16::from_be_bytes(fixed(value, what, "2")?))
}

pub(crate) fn u32_ne(value: &[u8], what: &'static str) -> Result<u32, IpvsDecodeError> {
    Ok(u32::from_ne_bytes(fixed(value, what, "4")?))
}

/// A counter the kernel sends as `u32` or `u64` (host order).
pub(crate) fn counter(value: &[u8], what: &'static str) -> Result<u64, IpvsDecodeError> {
    match value.len() {
        4 => Ok(u64::from(u32::from_ne_bytes(fixed(value, what, "4 or 8")?))),
        _ => Ok(u64::from_ne_bytes(fixed(value, what, "4 or 8")?)),
    }
}

/// A NUL-terminated (or unterminated) string.
pub(crate) fn string(value: &[u8], what: &'static str) -> Result<String, IpvsDecodeError> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8(value[..end].to_vec()).map_err(|_| IpvsDecodeError::NotUtf8 { what })
}

/// An attribute to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attr {
    /// Type (possibly with flags) and value.
    Bytes(u16, Vec<u8>),
    /// Type and the attributes inside; `flag` sets `NLA_F_NESTED`.
    Nested(u16, bool, Vec<Attr>),
    /// Kept from a decoded message.
    Unknown(DefaultNla),
}

impl Attr {
    pub fn string(kind: u16, value: &str) -> Attr {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        Attr::Bytes(kind, v)
    }
}

impl Nla for Attr {
    fn value_len(&self) -> usize {
        match self {
            Attr::Bytes(_, value) => value.len(),
            Attr::Nested(_, _, attrs) => attrs.as_slice().buffer_len(),
            Attr::Unknown(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            Attr::Bytes(kind, _) => *kind,
            Attr::Nested(kind, flag, _) => *kind | if *flag { NLA_F_NESTED } else { 0 },
            Attr::Unknown(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            Attr::Bytes(_, value) => buffer.copy_from_slice(value),
            Attr::Nested(_, _, attrs) => attrs.as_slice().emit(buffer),
            Attr::Unknown(nla) => nla.emit_value(buffer),
        }
    }
}

/// `attrs` as on the wire.
pub(crate) fn emit_all(attrs: &[Attr]) -> Vec<u8> {
    let mut buf = vec![0; attrs.buffer_len()];
    attrs.emit(&mut buf);
    buf
}

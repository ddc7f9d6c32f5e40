//! ICMPv4, ICMPv6, IPv6 neighbour discovery (with options), IGMP and MLD.

use crate::{byte, check_len, get16, get32, put16, MacAddr, WireError};
use core::ops::Range;

/// A view of the common ICMP/ICMPv6 header: type, code, checksum and the 4-byte rest.
#[derive(Clone, Copy, Debug)]
pub struct Icmp<T> {
    buf: T,
}

/// ICMP field ranges (shared by ICMPv4 and ICMPv6).
pub mod icmp_field {
    use core::ops::Range;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo identifier.
    pub const ECHO_ID: Range<usize> = 4..6;
    /// Echo sequence number.
    pub const ECHO_SEQ: Range<usize> = 6..8;
    /// Header length.
    pub const LEN: usize = 8;
}

impl<T: AsRef<[u8]>> Icmp<T> {
    /// Wraps `buf` after checking it holds the 8-byte header.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Icmp<T>, WireError> {
        check_len(buf.as_ref(), icmp_field::LEN)?;
        Ok(Icmp { buf })
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        byte(self.buf.as_ref(), icmp_field::TYPE)
    }
    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        byte(self.buf.as_ref(), icmp_field::CODE)
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), icmp_field::CHECKSUM)
    }
    /// Echo identifier (meaningful for echo messages).
    #[inline]
    pub fn echo_id(&self) -> u16 {
        get16(self.buf.as_ref(), icmp_field::ECHO_ID)
    }
    /// Echo sequence number.
    #[inline]
    pub fn echo_seq(&self) -> u16 {
        get16(self.buf.as_ref(), icmp_field::ECHO_SEQ)
    }
    /// Bytes after the 8-byte header (the quoted packet of an error message).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(icmp_field::LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmp<T> {
    /// Sets type and code.
    #[inline]
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        let b = self.buf.as_mut();
        b[icmp_field::TYPE] = t;
        b[icmp_field::CODE] = c;
    }
    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), icmp_field::CHECKSUM, v);
    }
    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_id(&mut self, v: u16) {
        put16(self.buf.as_mut(), icmp_field::ECHO_ID, v);
    }
}

/// A view of an NDP neighbour solicitation (type 135) or advertisement (136): the 24-byte
/// fixed part and its options.
#[derive(Clone, Copy, Debug)]
pub struct Ndp<T> {
    buf: T,
}

/// NDP NS/NA field ranges.
pub mod nd_field {
    use core::ops::Range;
    /// NA flags (router, solicited, override).
    pub const FLAGS: usize = 4;
    /// Target address.
    pub const TARGET: Range<usize> = 8..24;
    /// Fixed part length; options follow.
    pub const LEN: usize = 24;
    /// Neighbour solicitation type.
    pub const NS: u8 = 135;
    /// Neighbour advertisement type.
    pub const NA: u8 = 136;
    /// Source link-layer address option.
    pub const OPT_SLLA: u8 = 1;
    /// Target link-layer address option.
    pub const OPT_TLLA: u8 = 2;
}

impl<T: AsRef<[u8]>> Ndp<T> {
    /// Wraps an ICMPv6 message after checking it is an NS or NA holding its fixed part.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Ndp<T>, WireError> {
        check_len(buf.as_ref(), nd_field::LEN)?;
        if !matches!(byte(buf.as_ref(), 0), nd_field::NS | nd_field::NA) {
            return Err(WireError::Malformed);
        }
        Ok(Ndp { buf })
    }
    /// Whether this is an advertisement (else a solicitation).
    #[inline]
    pub fn is_advert(&self) -> bool {
        byte(self.buf.as_ref(), 0) == nd_field::NA
    }
    /// NA flags byte (R = 0x80, S = 0x40, O = 0x20).
    #[inline]
    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), nd_field::FLAGS)
    }
    /// Target address.
    #[inline]
    pub fn target(&self) -> u128 {
        crate::be128(self.buf.as_ref(), nd_field::TARGET.start).unwrap_or(0)
    }
    /// The options.
    #[inline]
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions { b: self.buf.as_ref().get(nd_field::LEN..).unwrap_or(&[]) }
    }
    /// The link-layer address option (source for NS, target for NA), if any is well formed.
    #[inline]
    pub fn lladdr(&self) -> Option<MacAddr> {
        let want = if self.is_advert() { nd_field::OPT_TLLA } else { nd_field::OPT_SLLA };
        self.options().flatten().find(|o| o.kind == want).and_then(|o| MacAddr::from_bytes(o.data))
    }
}

/// One NDP option: its kind and its data (the bytes after kind and length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdOption<'a> {
    /// Option type.
    pub kind: u8,
    /// Option data.
    pub data: &'a [u8],
}

/// Iterator over NDP options; yields one `Err` and stops on a zero or overlong length.
#[derive(Clone, Debug)]
pub struct NdOptions<'a> {
    b: &'a [u8],
}

impl<'a> NdOptions<'a> {
    /// The options in `b` (the bytes after an NDP message's fixed part).
    #[inline]
    pub fn new(b: &'a [u8]) -> NdOptions<'a> {
        NdOptions { b }
    }
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = Result<NdOption<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.b.is_empty() {
            return None;
        }
        let len = usize::from(byte(self.b, 1)) * 8;
        let Some(opt) = self.b.get(..len).filter(|_| len >= 8) else {
            self.b = &[];
            return Some(Err(WireError::Malformed));
        };
        self.b = &self.b[len..];
        Some(Ok(NdOption { kind: opt[0], data: &opt[2..] }))
    }
}

/// A view of an IGMP (v1/v2, or the common part of v3) message.
#[derive(Clone, Copy, Debug)]
pub struct Igmp<T> {
    buf: T,
}

/// IGMP field ranges.
pub mod igmp_field {
    use core::ops::Range;
    /// Message type.
    pub const TYPE: usize = 0;
    /// Max response time.
    pub const MAX_RESP: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Group address.
    pub const GROUP: Range<usize> = 4..8;
    /// Length of the v1/v2 message.
    pub const LEN: usize = 8;
}

impl<T: AsRef<[u8]>> Igmp<T> {
    /// Wraps `buf` after checking it holds 8 bytes.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Igmp<T>, WireError> {
        check_len(buf.as_ref(), igmp_field::LEN)?;
        Ok(Igmp { buf })
    }
    /// Message type (0x11 query, 0x16 v2 report, 0x17 leave, 0x22 v3 report).
    #[inline]
    pub fn msg_type(&self) -> u8 {
        byte(self.buf.as_ref(), igmp_field::TYPE)
    }
    /// Max response time.
    #[inline]
    pub fn max_resp(&self) -> u8 {
        byte(self.buf.as_ref(), igmp_field::MAX_RESP)
    }
    /// Group address (zero in general queries and v3 reports).
    #[inline]
    pub fn group(&self) -> u32 {
        get32(self.buf.as_ref(), igmp_field::GROUP)
    }
}

/// A view of an MLDv1 message (query 130, report 131, done 132) or the common part of MLDv2.
#[derive(Clone, Copy, Debug)]
pub struct Mld<T> {
    buf: T,
}

/// MLD field ranges.
pub mod mld_field {
    use core::ops::Range;
    /// Maximum response delay.
    pub const MAX_DELAY: Range<usize> = 4..6;
    /// Multicast address.
    pub const GROUP: Range<usize> = 8..24;
    /// MLDv1 message length.
    pub const LEN: usize = 24;
}

impl<T: AsRef<[u8]>> Mld<T> {
    /// Wraps an ICMPv6 message after checking its type is an MLD one and it holds 24 bytes.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Mld<T>, WireError> {
        check_len(buf.as_ref(), mld_field::LEN)?;
        if !matches!(byte(buf.as_ref(), 0), 130..=132 | 143) {
            return Err(WireError::Malformed);
        }
        Ok(Mld { buf })
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        byte(self.buf.as_ref(), 0)
    }
    /// Maximum response delay.
    #[inline]
    pub fn max_delay(&self) -> u16 {
        get16(self.buf.as_ref(), mld_field::MAX_DELAY)
    }
    /// Multicast address (MLDv1).
    #[inline]
    pub fn group(&self) -> u128 {
        let r: Range<usize> = mld_field::GROUP;
        crate::be128(self.buf.as_ref(), r.start).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icmp_echo() {
        let mut b = [0u8; 8];
        let mut i = Icmp::new_checked(&mut b[..]).unwrap();
        i.set_type_code(8, 0);
        i.set_echo_id(42);
        assert_eq!((i.msg_type(), i.code(), i.echo_id()), (8, 0, 42));
        assert!(Icmp::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn ndp_options() {
        let mut b = [0u8; 32];
        b[0] = 136;
        b[4] = 0x60;
        b[23] = 1;
        b[24..32].copy_from_slice(&[2, 1, 2, 0, 0, 0, 0, 9]);
        let n = Ndp::new_checked(&b[..]).unwrap();
        assert!(n.is_advert());
        assert_eq!((n.target(), n.flags()), (1, 0x60));
        assert_eq!(n.lladdr(), Some(MacAddr([2, 0, 0, 0, 0, 9])));
        b[25] = 0;
        let n = Ndp::new_checked(&b[..]).unwrap();
        assert_eq!(n.options().next(), Some(Err(WireError::Malformed)));
        assert_eq!(n.lladdr(), None);
        b[0] = 128;
        assert!(Ndp::new_checked(&b[..]).is_err());
    }

    #[test]
    fn nd_options_from_bytes() {
        let opts = [1, 1, 1, 2, 3, 4, 5, 6, 2, 1, 9, 9, 9, 9, 9, 9, 1, 0];
        let got: std::vec::Vec<_> = NdOptions::new(&opts).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], Ok(NdOption { kind: 2, data: &[9; 6] }));
        assert_eq!(got[2], Err(WireError::Malformed), "a zero length ends the walk");
        assert_eq!(NdOptions::new(&[]).next(), None);
    }

    #[test]
    fn igmp_and_mld() {
        let g = Igmp::new_checked(&[0x16, 0, 0, 0, 239, 1, 2, 3][..]).unwrap();
        assert_eq!((g.msg_type(), g.group()), (0x16, 0xef01_0203));
        let mut m = [0u8; 24];
        m[0] = 131;
        m[8] = 0xff;
        assert_eq!(Mld::new_checked(&m[..]).unwrap().group() >> 120, 0xff);
        m[0] = 1;
        assert!(Mld::new_checked(&m[..]).is_err());
    }
}

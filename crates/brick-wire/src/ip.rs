//! IPv4, IPv6 and IPv6 extension headers.

use crate::{be128, byte, check_len, get16, get32, put16, put32, WireError};

/// An IP protocol number (IPv4 protocol, IPv6 next header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpProto(pub u8);

impl IpProto {
    /// IPv6 hop-by-hop options.
    pub const HOPOPT: IpProto = IpProto(0);
    /// ICMP.
    pub const ICMP: IpProto = IpProto(1);
    /// IGMP.
    pub const IGMP: IpProto = IpProto(2);
    /// TCP.
    pub const TCP: IpProto = IpProto(6);
    /// UDP.
    pub const UDP: IpProto = IpProto(17);
    /// DCCP.
    pub const DCCP: IpProto = IpProto(33);
    /// IPv6 routing header.
    pub const ROUTING: IpProto = IpProto(43);
    /// IPv6 fragment header.
    pub const FRAGMENT: IpProto = IpProto(44);
    /// Authentication header.
    pub const AH: IpProto = IpProto(51);
    /// ICMPv6.
    pub const ICMPV6: IpProto = IpProto(58);
    /// IPv6 no next header.
    pub const NONE: IpProto = IpProto(59);
    /// IPv6 destination options.
    pub const DSTOPTS: IpProto = IpProto(60);
    /// SCTP.
    pub const SCTP: IpProto = IpProto(132);
    /// UDP-Lite.
    pub const UDPLITE: IpProto = IpProto(136);
}

/// A view of an IPv4 header. `new_checked` verifies version 4, an IHL of at least 20 bytes
/// within the buffer, and a total length between IHL and the buffer's length.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4<T> {
    buf: T,
}

/// IPv4 field ranges.
pub mod v4_field {
    use core::ops::Range;
    /// Version (high nibble) and IHL (low nibble).
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN.
    pub const TOS: usize = 1;
    /// Total length.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags and fragment offset.
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTO: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC: Range<usize> = 12..16;
    /// Destination address.
    pub const DST: Range<usize> = 16..20;
    /// Length without options.
    pub const LEN: usize = 20;
}

impl<T: AsRef<[u8]>> Ipv4<T> {
    /// Wraps `buf`, checked as described on the type.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Ipv4<T>, WireError> {
        let p = Ipv4 { buf };
        p.check(false)?;
        Ok(p)
    }

    /// Like [`new_checked`](Self::new_checked) but lets the total length exceed the buffer:
    /// for the truncated packet an ICMP error quotes.
    #[inline]
    pub fn new_quoted(buf: T) -> Result<Ipv4<T>, WireError> {
        let p = Ipv4 { buf };
        p.check(true)?;
        Ok(p)
    }

    /// Checks the version and that the IHL-long header is present, not the total length:
    /// for GSO super-frames, whose total length is stale or zero (BIG TCP).
    #[inline]
    pub fn new_header(buf: T) -> Result<Ipv4<T>, WireError> {
        check_len(buf.as_ref(), v4_field::LEN)?;
        let p = Ipv4 { buf };
        if p.version() != 4 || p.header_len() < v4_field::LEN {
            return Err(WireError::Malformed);
        }
        check_len(p.buf.as_ref(), p.header_len())?;
        Ok(p)
    }

    #[inline]
    fn check(&self, quoted: bool) -> Result<(), WireError> {
        let b = self.buf.as_ref();
        check_len(b, v4_field::LEN)?;
        if self.version() != 4 || self.header_len() < v4_field::LEN {
            return Err(WireError::Malformed);
        }
        check_len(b, self.header_len())?;
        if self.total_len() < self.header_len() {
            return Err(WireError::Malformed);
        }
        if !quoted {
            check_len(b, self.total_len())?;
        }
        Ok(())
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), v4_field::VER_IHL) >> 4
    }
    /// Header length in bytes (IHL × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), v4_field::VER_IHL) & 0x0f) * 4
    }
    /// Type of service byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        byte(self.buf.as_ref(), v4_field::TOS)
    }
    /// Total length field.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::from(get16(self.buf.as_ref(), v4_field::LENGTH))
    }
    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        get16(self.buf.as_ref(), v4_field::IDENT)
    }
    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        get16(self.buf.as_ref(), v4_field::FLAGS_FRAG) & 0x2000 != 0
    }
    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        get16(self.buf.as_ref(), v4_field::FLAGS_FRAG) & 0x4000 != 0
    }
    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        get16(self.buf.as_ref(), v4_field::FLAGS_FRAG) & 0x1fff
    }
    /// Whether this is a fragment (first or later).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        get16(self.buf.as_ref(), v4_field::FLAGS_FRAG) & 0x3fff != 0
    }
    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        byte(self.buf.as_ref(), v4_field::TTL)
    }
    /// Protocol.
    #[inline]
    pub fn proto(&self) -> IpProto {
        IpProto(byte(self.buf.as_ref(), v4_field::PROTO))
    }
    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), v4_field::CHECKSUM)
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> u32 {
        get32(self.buf.as_ref(), v4_field::SRC)
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> u32 {
        get32(self.buf.as_ref(), v4_field::DST)
    }
    /// Source and destination addresses as bytes (the pseudo-header's address part).
    #[inline]
    pub fn addrs(&self) -> &[u8] {
        self.buf.as_ref().get(v4_field::SRC.start..v4_field::DST.end).unwrap_or(&[])
    }
    /// The header bytes, options included (what the header checksum covers).
    #[inline]
    pub fn header(&self) -> &[u8] {
        self.buf.as_ref().get(..self.header_len()).unwrap_or(&[])
    }
    /// Bytes after the header, up to the total length (or the buffer's end when quoted).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buf.as_ref();
        b.get(self.header_len()..self.total_len().min(b.len())).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4<T> {
    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), v4_field::LENGTH, v);
    }
    /// Sets the identification.
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buf.as_mut(), v4_field::IDENT, v);
    }
    /// Sets the TTL.
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buf.as_mut()[v4_field::TTL] = v;
    }
    /// Sets the header checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), v4_field::CHECKSUM, v);
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: u32) {
        put32(self.buf.as_mut(), v4_field::SRC, v);
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: u32) {
        put32(self.buf.as_mut(), v4_field::DST, v);
    }
}

/// A view of an IPv6 fixed header. `new_checked` verifies version 6 and that the payload
/// length fits in the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Ipv6<T> {
    buf: T,
}

/// IPv6 field ranges.
pub mod v6_field {
    use core::ops::Range;
    /// Version, traffic class, flow label.
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length.
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: Range<usize> = 8..24;
    /// Destination address.
    pub const DST: Range<usize> = 24..40;
    /// Fixed header length.
    pub const LEN: usize = 40;
}

impl<T: AsRef<[u8]>> Ipv6<T> {
    /// Wraps `buf`, checked as described on the type.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Ipv6<T>, WireError> {
        let p = Ipv6::new_quoted(buf)?;
        check_len(p.buf.as_ref(), v6_field::LEN + p.payload_len())?;
        Ok(p)
    }

    /// Checks the version and the fixed header only: for quoted packets.
    #[inline]
    pub fn new_quoted(buf: T) -> Result<Ipv6<T>, WireError> {
        check_len(buf.as_ref(), v6_field::LEN)?;
        let p = Ipv6 { buf };
        if p.version() != 6 {
            return Err(WireError::Malformed);
        }
        Ok(p)
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        byte(self.buf.as_ref(), 0) >> 4
    }
    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (get16(self.buf.as_ref(), 0..2) >> 4) as u8
    }
    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        get32(self.buf.as_ref(), v6_field::VER_TC_FLOW) & 0x000f_ffff
    }
    /// Payload length field.
    #[inline]
    pub fn payload_len(&self) -> usize {
        usize::from(get16(self.buf.as_ref(), v6_field::PAYLOAD_LEN))
    }
    /// Next header of the fixed header.
    #[inline]
    pub fn next_header(&self) -> IpProto {
        IpProto(byte(self.buf.as_ref(), v6_field::NEXT_HEADER))
    }
    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        byte(self.buf.as_ref(), v6_field::HOP_LIMIT)
    }
    /// Source address.
    #[inline]
    pub fn src(&self) -> u128 {
        be128(self.buf.as_ref(), v6_field::SRC.start).unwrap_or(0)
    }
    /// Destination address.
    #[inline]
    pub fn dst(&self) -> u128 {
        be128(self.buf.as_ref(), v6_field::DST.start).unwrap_or(0)
    }
    /// Source address as bytes (no byte swap on the way to an `Ipv6Addr`).
    #[inline]
    pub fn src_octets(&self) -> [u8; 16] {
        octets16(self.buf.as_ref(), v6_field::SRC.start)
    }
    /// Destination address as bytes.
    #[inline]
    pub fn dst_octets(&self) -> [u8; 16] {
        octets16(self.buf.as_ref(), v6_field::DST.start)
    }
    /// Source and destination addresses as bytes (the pseudo-header's address part).
    #[inline]
    pub fn addrs(&self) -> &[u8] {
        self.buf.as_ref().get(v6_field::SRC.start..v6_field::DST.end).unwrap_or(&[])
    }
    /// Walks the extension headers after the fixed header; see [`Ipv6Walk`].
    #[inline]
    pub fn walk(&self) -> Result<Ipv6Walk, WireError> {
        let b = self.buf.as_ref();
        let end = (v6_field::LEN + self.payload_len()).min(b.len());
        Ipv6Walk::walk(b.get(..end).unwrap_or(&[]), v6_field::LEN, self.next_header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6<T> {
    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), v6_field::PAYLOAD_LEN, v);
    }
    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, p: IpProto) {
        self.buf.as_mut()[v6_field::NEXT_HEADER] = p.0;
    }
    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buf.as_mut()[v6_field::HOP_LIMIT] = v;
    }
    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, v: u128) {
        self.buf.as_mut()[v6_field::SRC].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, v: u128) {
        self.buf.as_mut()[v6_field::DST].copy_from_slice(&v.to_be_bytes());
    }
}

/// Most IPv6 extension headers walked: a chain longer than this is refused, which bounds the
/// work an attacker can cause.
pub const MAX_IPV6_EXT: usize = 8;

/// Which IPv6 extension headers [`Ipv6Walk::walk`] skips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-hop, routing, destination options, mobility, HIP, shim6: length in 8-byte units
    /// past the first eight.
    Generic,
    /// Authentication header: length in 4-byte units minus 2.
    Auth,
    /// Fragment header: 8 bytes.
    Fragment,
}

impl Ipv6Ext {
    /// The kind of extension header `p` is, `None` for an upper layer (or unknown) header.
    #[inline]
    pub const fn of(p: IpProto) -> Option<Ipv6Ext> {
        match p.0 {
            0 | 43 | 60 | 135 | 139 | 140 => Some(Ipv6Ext::Generic),
            51 => Some(Ipv6Ext::Auth),
            44 => Some(Ipv6Ext::Fragment),
            _ => None,
        }
    }

    /// Length of an extension header of this kind whose length byte (the second) is `len`.
    #[inline]
    pub const fn header_len(self, len: u8) -> usize {
        match self {
            Ipv6Ext::Generic => (len as usize + 1) * 8,
            Ipv6Ext::Auth => (len as usize + 2) * 4,
            Ipv6Ext::Fragment => 8,
        }
    }

    /// Skips the one extension header `next` at the start of `b`: its own next header and
    /// its length, `None` when `next` is not an extension header. For callers that accept
    /// one given extension header and nothing else (the hop-by-hop header in front of MLD).
    #[inline]
    pub fn skip(b: &[u8], next: IpProto) -> Result<Option<(IpProto, usize)>, WireError> {
        let Some(kind) = Ipv6Ext::of(next) else { return Ok(None) };
        let e = b.get(..2).ok_or(WireError::Truncated)?;
        let len = kind.header_len(e[1]);
        check_len(b, len)?;
        Ok(Some((IpProto(e[0]), len)))
    }
}

/// Outcome of walking an IPv6 extension-header chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ipv6Walk {
    /// The upper-layer protocol (the next header after the last extension header).
    pub proto: u8,
    /// Offset of the upper-layer header in the buffer walked.
    pub offset: usize,
    /// Fragment header met: (identification, offset in 8-byte units, more fragments). The
    /// walk stops after a fragment header with a nonzero offset: what follows is not a header.
    pub frag: Option<(u32, u16, bool)>,
    /// Extension headers walked.
    pub count: usize,
    /// An authentication header was walked (rewriting the packet would break it).
    pub auth: bool,
}

impl Ipv6Walk {
    /// Walks from `at` in `b`, starting with next header `next`, over at most
    /// [`MAX_IPV6_EXT`] extension headers. Truncated headers are [`WireError::Truncated`].
    #[inline]
    pub fn walk(b: &[u8], mut at: usize, next: IpProto) -> Result<Ipv6Walk, WireError> {
        let mut w = Ipv6Walk { proto: next.0, offset: at, frag: None, count: 0, auth: false };
        while let Some(kind) = Ipv6Ext::of(IpProto(w.proto)) {
            if w.count == MAX_IPV6_EXT {
                return Err(WireError::TooManyExtensions);
            }
            let e = b.get(at..at.saturating_add(2)).ok_or(WireError::Truncated)?;
            let len = kind.header_len(e[1]);
            let h = b.get(at..at + len).ok_or(WireError::Truncated)?;
            w.proto = h[0];
            w.count += 1;
            w.auth |= kind == Ipv6Ext::Auth;
            at += len;
            w.offset = at;
            if kind == Ipv6Ext::Fragment {
                let off = u16::from_be_bytes([h[2], h[3]]) >> 3;
                let id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                w.frag = Some((id, off, h[3] & 1 != 0));
                if off != 0 {
                    break;
                }
            }
        }
        Ok(w)
    }
}

/// 16 bytes at `at` (zeros if out of range, which checked views rule out).
#[inline(always)]
fn octets16(b: &[u8], at: usize) -> [u8; 16] {
    b.get(at..at + 16).and_then(|s| <[u8; 16]>::try_from(s).ok()).unwrap_or([0; 16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> [u8; 28] {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[9] = 17;
        p
    }

    #[test]
    fn ipv4_checks_and_fields() {
        let mut p = v4();
        let mut h = Ipv4::new_checked(&mut p[..]).unwrap();
        h.set_src(0x0a00_0001);
        h.set_dst(0x0a00_0002);
        h.set_ttl(64);
        h.set_ident(7);
        assert_eq!((h.src(), h.dst(), h.ttl(), h.ident()), (0x0a00_0001, 0x0a00_0002, 64, 7));
        assert_eq!((h.header_len(), h.proto(), h.payload().len()), (20, IpProto::UDP, 8));
        assert!(!h.is_fragment());
        assert_eq!(h.header().len(), 20);
        assert_eq!(Ipv4::new_checked(&p[..27]).err(), Some(WireError::Truncated));
        assert!(Ipv4::new_quoted(&p[..27]).is_ok());
        let mut big = v4();
        big[2..4].copy_from_slice(&[0, 0]); // BIG TCP: total length zero
        assert!(Ipv4::new_header(&big[..]).is_ok() && Ipv4::new_quoted(&big[..]).is_err());
        let mut bad = v4();
        bad[0] = 0x44;
        assert_eq!(Ipv4::new_checked(&bad[..]).err(), Some(WireError::Malformed));
        bad[0] = 0x65;
        assert_eq!(Ipv4::new_checked(&bad[..]).err(), Some(WireError::Malformed));
    }

    #[test]
    fn ipv6_walks_extensions() {
        let mut p = [0u8; 40 + 8 + 8 + 8];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&24u16.to_be_bytes());
        p[6] = 0; // hop-by-hop
        p[40] = 44; // -> fragment
        p[48] = 6; // -> tcp
        p[50..52].copy_from_slice(&1u16.to_be_bytes()); // offset 0, more
        p[52..56].copy_from_slice(&9u32.to_be_bytes());
        let h = Ipv6::new_checked(&p[..]).unwrap();
        let w = h.walk().unwrap();
        assert_eq!((w.proto, w.offset, w.frag, w.count), (6, 56, Some((9, 0, true)), 2));
        assert_eq!(Ipv6::new_checked(&p[..63]).err(), Some(WireError::Truncated));
        for (i, b) in p[8..40].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        let h = Ipv6::new_checked(&p[..]).unwrap();
        assert_eq!(h.src_octets(), <[u8; 16]>::try_from(&p[8..24]).unwrap());
        assert_eq!(h.dst_octets(), <[u8; 16]>::try_from(&p[24..40]).unwrap());
        assert_eq!(u128::from_be_bytes(h.src_octets()), h.src());
        assert_eq!(u128::from_be_bytes(h.dst_octets()), h.dst());
        let mut chain = [0u8; 40 + 8 * 10];
        chain[0] = 0x60;
        chain[4..6].copy_from_slice(&80u16.to_be_bytes());
        chain[6] = 60; // ten destination-options headers
        for i in 0..10 {
            chain[40 + 8 * i] = 60;
        }
        let e = Ipv6::new_checked(&chain[..]).unwrap().walk();
        assert_eq!(e, Err(WireError::TooManyExtensions));
    }

    #[test]
    fn skips_one_extension_header() {
        let mut hbh = [0u8; 16];
        hbh[0] = 58;
        assert_eq!(Ipv6Ext::skip(&hbh, IpProto::HOPOPT), Ok(Some((IpProto::ICMPV6, 8))));
        hbh[1] = 1;
        assert_eq!(Ipv6Ext::skip(&hbh, IpProto::HOPOPT), Ok(Some((IpProto::ICMPV6, 16))));
        assert_eq!(Ipv6Ext::skip(&hbh[..15], IpProto::HOPOPT), Err(WireError::Truncated));
        assert_eq!(Ipv6Ext::skip(&hbh[..1], IpProto::HOPOPT), Err(WireError::Truncated));
        assert_eq!(Ipv6Ext::skip(&hbh, IpProto::UDP), Ok(None));
        assert_eq!(
            Ipv6Ext::skip(&[6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], IpProto::AH),
            Ok(Some((IpProto::TCP, 12)))
        );
    }
}

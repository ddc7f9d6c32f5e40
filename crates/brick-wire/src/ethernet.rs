//! Ethernet II and 802.1Q/802.1ad VLAN tags.

use crate::{check_len, get16, put16, MacAddr, WireError};

/// An ethertype (the 16-bit protocol field of Ethernet and of VLAN tags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtherType(pub u16);

impl EtherType {
    /// IPv4.
    pub const IPV4: EtherType = EtherType(0x0800);
    /// ARP.
    pub const ARP: EtherType = EtherType(0x0806);
    /// RARP.
    pub const RARP: EtherType = EtherType(0x8035);
    /// 802.1Q customer VLAN tag.
    pub const VLAN: EtherType = EtherType(0x8100);
    /// 802.1ad service VLAN tag (QinQ).
    pub const QINQ: EtherType = EtherType(0x88a8);
    /// IPv6.
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// LLDP.
    pub const LLDP: EtherType = EtherType(0x88cc);

    /// Whether this ethertype announces a VLAN tag (802.1Q or 802.1ad).
    #[inline]
    pub const fn is_vlan(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

impl From<u16> for EtherType {
    #[inline]
    fn from(v: u16) -> EtherType {
        EtherType(v)
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(v: EtherType) -> u16 {
        v.0
    }
}

/// A view of an Ethernet II header (without tags) and what follows it.
#[derive(Clone, Copy, Debug)]
pub struct Ethernet<T> {
    buf: T,
}

/// Ethernet field ranges.
pub mod field {
    use core::ops::Range;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// Ethertype (or the first VLAN tag's TPID).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Header length.
    pub const LEN: usize = 14;
}

impl<T: AsRef<[u8]>> Ethernet<T> {
    /// Wraps `buf` after checking it holds a whole header.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Ethernet<T>, WireError> {
        check_len(buf.as_ref(), field::LEN)?;
        Ok(Ethernet { buf })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buf
    }

    /// Destination address.
    #[inline]
    pub fn dst(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::DST]).unwrap_or_default()
    }

    /// Source address.
    #[inline]
    pub fn src(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::SRC]).unwrap_or_default()
    }

    /// Ethertype field (a TPID when the frame is tagged).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(get16(self.buf.as_ref(), field::ETHERTYPE))
    }

    /// Bytes after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(field::LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ethernet<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::DST].copy_from_slice(&m.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src(&mut self, m: MacAddr) {
        self.buf.as_mut()[field::SRC].copy_from_slice(&m.0);
    }

    /// Sets the ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, e: EtherType) {
        put16(self.buf.as_mut(), field::ETHERTYPE, e.0);
    }
}

/// A view of one VLAN tag's last four bytes: TCI and the inner ethertype (the TPID is the
/// ethertype field in front of it).
#[derive(Clone, Copy, Debug)]
pub struct Vlan<T> {
    buf: T,
}

/// VLAN tag field ranges, relative to the TCI.
pub mod vlan_field {
    use core::ops::Range;
    /// Tag control information: PCP (3 bits), DEI (1), VID (12).
    pub const TCI: Range<usize> = 0..2;
    /// Ethertype of what follows the tag.
    pub const ETHERTYPE: Range<usize> = 2..4;
    /// Length of the part viewed.
    pub const LEN: usize = 4;
}

impl<T: AsRef<[u8]>> Vlan<T> {
    /// Wraps `buf` (starting at the TCI) after checking it holds four bytes.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Vlan<T>, WireError> {
        check_len(buf.as_ref(), vlan_field::LEN)?;
        Ok(Vlan { buf })
    }

    /// Tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        get16(self.buf.as_ref(), vlan_field::TCI)
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Priority code point.
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Ethertype of the payload (or of the next tag).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType(get16(self.buf.as_ref(), vlan_field::ETHERTYPE))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Vlan<T> {
    /// Sets the TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buf.as_mut(), vlan_field::TCI, tci);
    }

    /// Sets the inner ethertype.
    #[inline]
    pub fn set_ethertype(&mut self, e: EtherType) {
        put16(self.buf.as_mut(), vlan_field::ETHERTYPE, e.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_fields() {
        let mut f = [0u8; 20];
        let mut e = Ethernet::new_checked(&mut f[..]).unwrap();
        e.set_dst(MacAddr::BROADCAST);
        e.set_src(MacAddr([2, 0, 0, 0, 0, 1]));
        e.set_ethertype(EtherType::IPV6);
        assert_eq!(e.dst(), MacAddr::BROADCAST);
        assert_eq!(e.src(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(e.ethertype(), EtherType::IPV6);
        assert_eq!(e.payload().len(), 6);
        assert_eq!(Ethernet::new_checked(&f[..13]).err(), Some(WireError::Truncated));
    }

    #[test]
    fn vlan_fields() {
        let mut t = [0u8; 4];
        let mut v = Vlan::new_checked(&mut t[..]).unwrap();
        v.set_tci(0xa000 | 100);
        v.set_ethertype(EtherType::IPV4);
        assert_eq!((v.vid(), v.pcp(), v.ethertype()), (100, 5, EtherType::IPV4));
        assert!(EtherType::QINQ.is_vlan() && !EtherType::IPV4.is_vlan());
        assert!(Vlan::new_checked(&t[..3]).is_err());
    }
}

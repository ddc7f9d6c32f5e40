//! ARP for IPv4 over Ethernet.

use crate::{check_len, get16, get32, put16, put32, MacAddr, WireError};

/// A view of an Ethernet/IPv4 ARP packet. `new_checked` verifies the length and that the
/// hardware and protocol sizes are 6 and 4 (the only form the fields below describe).
#[derive(Clone, Copy, Debug)]
pub struct Arp<T> {
    buf: T,
}

/// ARP field ranges.
pub mod field {
    use core::ops::Range;
    /// Hardware type.
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type.
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware and protocol address sizes.
    pub const SIZES: Range<usize> = 4..6;
    /// Operation.
    pub const OPER: Range<usize> = 6..8;
    /// Sender hardware address.
    pub const SHA: Range<usize> = 8..14;
    /// Sender protocol address.
    pub const SPA: Range<usize> = 14..18;
    /// Target hardware address.
    pub const THA: Range<usize> = 18..24;
    /// Target protocol address.
    pub const TPA: Range<usize> = 24..28;
    /// Packet length.
    pub const LEN: usize = 28;
    /// Hardware type of Ethernet.
    pub const HTYPE_ETHERNET: u16 = 1;
    /// Request.
    pub const REQUEST: u16 = 1;
    /// Reply.
    pub const REPLY: u16 = 2;
}

impl<T: AsRef<[u8]>> Arp<T> {
    /// Wraps `buf`, checked as described on the type.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Arp<T>, WireError> {
        check_len(buf.as_ref(), field::LEN)?;
        if get16(buf.as_ref(), field::SIZES) != 0x0604 {
            return Err(WireError::Malformed);
        }
        Ok(Arp { buf })
    }
    /// Hardware type (1 for Ethernet).
    #[inline]
    pub fn htype(&self) -> u16 {
        get16(self.buf.as_ref(), field::HTYPE)
    }
    /// Whether this is the Ethernet/IPv4 form: hardware type Ethernet, protocol IPv4 (the
    /// sizes were checked by `new_checked`).
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.htype() == field::HTYPE_ETHERNET && self.ptype() == crate::EtherType::IPV4.0
    }
    /// Operation (1 request, 2 reply).
    #[inline]
    pub fn oper(&self) -> u16 {
        get16(self.buf.as_ref(), field::OPER)
    }
    /// Protocol type (0x0800 for IPv4).
    #[inline]
    pub fn ptype(&self) -> u16 {
        get16(self.buf.as_ref(), field::PTYPE)
    }
    /// Sender hardware address.
    #[inline]
    pub fn sha(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::SHA]).unwrap_or_default()
    }
    /// Sender protocol address.
    #[inline]
    pub fn spa(&self) -> u32 {
        get32(self.buf.as_ref(), field::SPA)
    }
    /// Target hardware address.
    #[inline]
    pub fn tha(&self) -> MacAddr {
        MacAddr::from_bytes(&self.buf.as_ref()[field::THA]).unwrap_or_default()
    }
    /// Target protocol address.
    #[inline]
    pub fn tpa(&self) -> u32 {
        get32(self.buf.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Arp<T> {
    /// Sets the operation.
    #[inline]
    pub fn set_oper(&mut self, v: u16) {
        put16(self.buf.as_mut(), field::OPER, v);
    }
    /// Sets the sender addresses.
    #[inline]
    pub fn set_sender(&mut self, mac: MacAddr, ip: u32) {
        self.buf.as_mut()[field::SHA].copy_from_slice(&mac.0);
        put32(self.buf.as_mut(), field::SPA, ip);
    }
    /// Sets the target addresses.
    #[inline]
    pub fn set_target(&mut self, mac: MacAddr, ip: u32) {
        self.buf.as_mut()[field::THA].copy_from_slice(&mac.0);
        put32(self.buf.as_mut(), field::TPA, ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arp_fields() {
        let mut b = [0u8; 28];
        b[4] = 6;
        b[5] = 4;
        let mut a = Arp::new_checked(&mut b[..]).unwrap();
        a.set_oper(field::REPLY);
        a.set_sender(MacAddr([2, 0, 0, 0, 0, 1]), 0x0a00_0001);
        a.set_target(MacAddr::BROADCAST, 0x0a00_0002);
        assert_eq!((a.oper(), a.spa(), a.tpa()), (2, 0x0a00_0001, 0x0a00_0002));
        assert_eq!((a.sha(), a.tha()), (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr::BROADCAST));
        assert!(!a.is_ethernet_ipv4());
        b[0..4].copy_from_slice(&[0, 1, 8, 0]);
        let a = Arp::new_checked(&b[..]).unwrap();
        assert!(a.is_ethernet_ipv4() && a.htype() == field::HTYPE_ETHERNET);
        b[5] = 16;
        assert_eq!(Arp::new_checked(&b[..]).err(), Some(WireError::Malformed));
        assert_eq!(Arp::new_checked(&b[..27]).err(), Some(WireError::Truncated));
    }
}

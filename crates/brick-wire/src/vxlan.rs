//! VXLAN (RFC 7348).

use crate::{byte, check_len, get32, put32, WireError};

/// A view of a VXLAN header; `new_checked` verifies its 8 bytes and the I flag (a VNI is
/// present), as receivers must.
#[derive(Clone, Copy, Debug)]
pub struct Vxlan<T> {
    buf: T,
}

/// VXLAN field ranges.
pub mod field {
    use core::ops::Range;
    /// Flags (0x08: VNI valid).
    pub const FLAGS: usize = 0;
    /// VNI (high 24 bits) and a reserved byte.
    pub const VNI: Range<usize> = 4..8;
    /// Header length.
    pub const LEN: usize = 8;
    /// The I flag.
    pub const FLAG_I: u8 = 0x08;
    /// IANA UDP port.
    pub const PORT: u16 = 4789;
}

impl<T: AsRef<[u8]>> Vxlan<T> {
    /// Wraps `buf`, checked as described on the type.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Vxlan<T>, WireError> {
        check_len(buf.as_ref(), field::LEN)?;
        if byte(buf.as_ref(), field::FLAGS) & field::FLAG_I == 0 {
            return Err(WireError::Malformed);
        }
        Ok(Vxlan { buf })
    }
    /// VXLAN network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        get32(self.buf.as_ref(), field::VNI) >> 8
    }
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(field::LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Vxlan<T> {
    /// Writes a fresh header into the first 8 bytes of `buf` (I flag, `vni`, every reserved
    /// bit zero) and wraps it.
    #[inline]
    pub fn init(mut buf: T, vni: u32) -> Result<Vxlan<T>, WireError> {
        let h = buf.as_mut().get_mut(..field::LEN).ok_or(WireError::Truncated)?;
        h.copy_from_slice(&[field::FLAG_I, 0, 0, 0, 0, 0, 0, 0]);
        let mut v = Vxlan { buf };
        v.set_vni(vni);
        Ok(v)
    }

    /// Sets the VNI (low 24 bits of `vni`), keeping the reserved byte zero.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        put32(self.buf.as_mut(), field::VNI, (vni & 0x00ff_ffff) << 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_round_trip() {
        let mut b = [0x08, 0, 0, 0, 0, 0, 0, 0, 0xaa];
        let mut v = Vxlan::new_checked(&mut b[..]).unwrap();
        v.set_vni(0x12_3456);
        assert_eq!((v.vni(), v.payload()), (0x12_3456, &[0xaa][..]));
        b[0] = 0;
        assert!(Vxlan::new_checked(&b[..]).is_err());
    }

    #[test]
    fn init_writes_a_clean_header() {
        let mut b = [0xffu8; 9];
        let v = Vxlan::init(&mut b[..], 0xabcdef).unwrap();
        assert_eq!(v.vni(), 0xabcdef);
        assert_eq!(b, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0, 0xff]);
        assert_eq!(Vxlan::init(&mut b[..7], 1).err(), Some(WireError::Truncated));
    }
}

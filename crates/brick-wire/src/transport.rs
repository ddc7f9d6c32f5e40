//! UDP and TCP headers.

use crate::{byte, check_len, get16, get32, put16, put32, WireError};

/// A view of a UDP header. `new_checked` verifies the 8-byte header only: the length field
/// is reported, not enforced (GSO super-frames carry a stale one).
#[derive(Clone, Copy, Debug)]
pub struct Udp<T> {
    buf: T,
}

/// UDP field ranges.
pub mod udp_field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length.
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
    /// Header length.
    pub const LEN: usize = 8;
}

impl<T: AsRef<[u8]>> Udp<T> {
    /// Wraps `buf` after checking it holds the header.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Udp<T>, WireError> {
        check_len(buf.as_ref(), udp_field::LEN)?;
        Ok(Udp { buf })
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buf.as_ref(), udp_field::SRC_PORT)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buf.as_ref(), udp_field::DST_PORT)
    }
    /// Length field.
    #[inline]
    pub fn len(&self) -> u16 {
        get16(self.buf.as_ref(), udp_field::LENGTH)
    }
    /// Whether the length field is zero.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), udp_field::CHECKSUM)
    }
    /// Bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(udp_field::LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Udp<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), udp_field::SRC_PORT, v);
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), udp_field::DST_PORT, v);
    }
    /// Sets the length.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        put16(self.buf.as_mut(), udp_field::LENGTH, v);
    }
    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), udp_field::CHECKSUM, v);
    }
}

/// A view of a TCP header. `new_checked` verifies a data offset of at least 20 bytes that
/// fits in the buffer.
#[derive(Clone, Copy, Debug)]
pub struct Tcp<T> {
    buf: T,
}

/// TCP field ranges and flags.
pub mod tcp_field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number.
    pub const SEQ: Range<usize> = 4..8;
    /// Acknowledgement number.
    pub const ACK: Range<usize> = 8..12;
    /// Data offset (high nibble).
    pub const DATA_OFF: usize = 12;
    /// Flags.
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: Range<usize> = 14..16;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer.
    pub const URGENT: Range<usize> = 18..20;
    /// Header length without options.
    pub const LEN: usize = 20;
    /// FIN flag.
    pub const FIN: u8 = 0x01;
    /// SYN flag.
    pub const SYN: u8 = 0x02;
    /// RST flag.
    pub const RST: u8 = 0x04;
    /// PSH flag.
    pub const PSH: u8 = 0x08;
    /// ACK flag.
    pub const ACK_FLAG: u8 = 0x10;
    /// URG flag.
    pub const URG: u8 = 0x20;
    /// Window-scale option kind.
    pub const OPT_WSCALE: u8 = 3;
}

impl<T: AsRef<[u8]>> Tcp<T> {
    /// Wraps `buf`, checked as described on the type.
    #[inline]
    pub fn new_checked(buf: T) -> Result<Tcp<T>, WireError> {
        check_len(buf.as_ref(), tcp_field::LEN)?;
        let t = Tcp { buf };
        if t.header_len() < tcp_field::LEN {
            return Err(WireError::Malformed);
        }
        check_len(t.buf.as_ref(), t.header_len())?;
        Ok(t)
    }
    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        get16(self.buf.as_ref(), tcp_field::SRC_PORT)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        get16(self.buf.as_ref(), tcp_field::DST_PORT)
    }
    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> u32 {
        get32(self.buf.as_ref(), tcp_field::SEQ)
    }
    /// Acknowledgement number.
    #[inline]
    pub fn ack(&self) -> u32 {
        get32(self.buf.as_ref(), tcp_field::ACK)
    }
    /// Header length in bytes (data offset × 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(byte(self.buf.as_ref(), tcp_field::DATA_OFF) >> 4) * 4
    }
    /// Flags byte.
    #[inline]
    pub fn flags(&self) -> u8 {
        byte(self.buf.as_ref(), tcp_field::FLAGS)
    }
    /// Window (unscaled).
    #[inline]
    pub fn window(&self) -> u16 {
        get16(self.buf.as_ref(), tcp_field::WINDOW)
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        get16(self.buf.as_ref(), tcp_field::CHECKSUM)
    }
    /// Option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buf.as_ref().get(tcp_field::LEN..self.header_len()).unwrap_or(&[])
    }
    /// The window-scale option's shift, if present.
    #[inline]
    pub fn wscale(&self) -> Option<u8> {
        let o = self.options();
        let mut i = 0;
        while let Some(&kind) = o.get(i) {
            match kind {
                0 => return None,
                1 => i += 1,
                _ => {
                    let len = usize::from(*o.get(i + 1)?);
                    if kind == tcp_field::OPT_WSCALE && len == 3 {
                        return o.get(i + 2).copied();
                    }
                    if len < 2 {
                        return None;
                    }
                    i += len;
                }
            }
        }
        None
    }
    /// Bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buf.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tcp<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), tcp_field::SRC_PORT, v);
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buf.as_mut(), tcp_field::DST_PORT, v);
    }
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, v: u32) {
        put32(self.buf.as_mut(), tcp_field::SEQ, v);
    }
    /// Sets the acknowledgement number.
    #[inline]
    pub fn set_ack(&mut self, v: u32) {
        put32(self.buf.as_mut(), tcp_field::ACK, v);
    }
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buf.as_mut()[tcp_field::FLAGS] = v;
    }
    /// Sets the window.
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        put16(self.buf.as_mut(), tcp_field::WINDOW, v);
    }
    /// Sets the checksum.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buf.as_mut(), tcp_field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_fields() {
        let mut b = [0u8; 12];
        let mut u = Udp::new_checked(&mut b[..]).unwrap();
        u.set_src_port(53);
        u.set_dst_port(4789);
        u.set_len(12);
        u.set_checksum(0xbeef);
        assert_eq!((u.src_port(), u.dst_port(), u.len(), u.checksum()), (53, 4789, 12, 0xbeef));
        assert_eq!(u.payload().len(), 4);
        assert!(Udp::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn tcp_fields_and_wscale() {
        let mut b = [0u8; 28];
        b[12] = 7 << 4;
        b[20..24].copy_from_slice(&[1, 3, 3, 7]);
        let mut t = Tcp::new_checked(&mut b[..]).unwrap();
        t.set_flags(tcp_field::SYN);
        t.set_seq(1);
        t.set_ack(2);
        t.set_window(100);
        assert_eq!((t.seq(), t.ack(), t.window(), t.flags()), (1, 2, 100, tcp_field::SYN));
        assert_eq!((t.header_len(), t.wscale(), t.payload().len()), (28, Some(7), 0));
        assert_eq!(Tcp::new_checked(&b[..27]).err(), Some(WireError::Truncated));
        b[12] = 4 << 4;
        assert_eq!(Tcp::new_checked(&b[..]).err(), Some(WireError::Malformed));
    }
}

//! The virtio-net header (`struct virtio_net_hdr`, VIRTIO 1.2 §5.1.6): checksum and
//! segmentation offload state carried in front of a frame, by TAP devices with
//! `IFF_VNET_HDR` and by virtio queues (vhost-user). This module is the wire format only,
//! little-endian as on every host this runs on; each device maps it onto
//! [`Meta`](crate::Meta) with its own rules (negotiated features, tunnel extensions).

/// Length of the header without `num_buffers` (legacy, and TAP's default).
pub const LEN: usize = 10;
/// Length with `num_buffers` (VIRTIO 1.x, or MRG_RXBUF).
pub const LEN_MRG: usize = 12;

/// `flags`: the checksum from `csum_start` on is partial and must be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums were verified.
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: not a super-frame.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: TCP over IPv4.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: UDP fragmentation offload (UFO).
pub const GSO_UDP: u8 = 3;
/// `gso_type`: TCP over IPv6.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: UDP segmentation offload (USO).
pub const GSO_UDP_L4: u8 = 5;
/// ECN bit, or-ed into `gso_type`.
pub const GSO_ECN: u8 = 0x80;

/// The fields of a virtio-net header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    /// `F_*` flags.
    pub flags: u8,
    /// `GSO_*` type, possibly or-ed with [`GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers to copy in front of each segment (a hint).
    pub hdr_len: u16,
    /// Segment payload size.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
    /// Number of merged receive buffers (MRG_RXBUF); 0 when the header is [`LEN`] bytes.
    pub num_buffers: u16,
}

impl VirtioNetHdr {
    /// Reads a header from the start of `b`: [`LEN`] bytes at least; `num_buffers` comes
    /// from bytes 10–11 when `b` has [`LEN_MRG`] or more. `None` when `b` is too short.
    #[inline]
    pub fn parse(b: &[u8]) -> Option<VirtioNetHdr> {
        if b.len() < LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: if b.len() >= LEN_MRG { u16_at(10) } else { 0 },
        })
    }

    /// Writes the header into the start of `out`: [`LEN_MRG`] bytes, or as many as `out`
    /// holds (pass `&mut buf[..LEN]` for a header without `num_buffers`).
    #[inline]
    pub fn write(&self, out: &mut [u8]) {
        let b = self.to_bytes();
        let n = out.len().min(LEN_MRG);
        out[..n].copy_from_slice(&b[..n]);
    }

    /// The header's [`LEN_MRG`] bytes (the first [`LEN`] without `num_buffers`): a value of
    /// fixed size, which the caller stores with fixed-size moves rather than a call to
    /// `memcpy` with a length known only at run time.
    #[inline]
    pub fn to_bytes(&self) -> [u8; LEN_MRG] {
        let (lo, hi) = self.to_words();
        let mut b = [0u8; LEN_MRG];
        b[..8].copy_from_slice(&lo.to_le_bytes());
        b[8..].copy_from_slice(&hi.to_le_bytes());
        b
    }

    /// The header as two integers: bytes 0–7 and bytes 8–11, each to be stored little-endian.
    /// Composed in registers, so a caller stores the header with two moves and never reads
    /// back bytes it has just written one field at a time: such a wide load cannot be
    /// forwarded from the narrow stores, and waits until every older store has left the store
    /// buffer, including a previous frame's stores into guest memory that are still waiting
    /// for their cache lines.
    #[inline]
    pub fn to_words(&self) -> (u64, u32) {
        let lo = u64::from(self.flags)
            | u64::from(self.gso_type) << 8
            | u64::from(self.hdr_len) << 16
            | u64::from(self.gso_size) << 32
            | u64::from(self.csum_start) << 48;
        let hi = u32::from(self.csum_offset) | u32::from(self.num_buffers) << 16;
        (lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_writes_the_documented_layout() {
        let raw = [1u8, 4, 54, 0, 0xa8, 0x05, 34, 0, 16, 0, 3, 0];
        let h = VirtioNetHdr::parse(&raw).unwrap();
        assert_eq!(
            h,
            VirtioNetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV6,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
                num_buffers: 3
            }
        );
        assert_eq!(VirtioNetHdr::parse(&raw[..LEN]).unwrap().num_buffers, 0);
        assert!(VirtioNetHdr::parse(&raw[..9]).is_none());
        let mut out = [0xffu8; 14];
        h.write(&mut out[..LEN]);
        assert_eq!(&out[..LEN], &raw[..LEN]);
        assert_eq!(&out[LEN..], &[0xff; 4], "a 10-byte write leaves what follows alone");
        h.write(&mut out);
        assert_eq!(&out[..LEN_MRG], &raw);
    }

    proptest! {
        #[test]
        fn round_trips(b in proptest::collection::vec(any::<u8>(), 12)) {
            let h = VirtioNetHdr::parse(&b).unwrap();
            let mut out = [0u8; LEN_MRG];
            h.write(&mut out);
            prop_assert_eq!(&out[..], &b[..]);
        }

        #[test]
        fn words_are_the_bytes_in_order(b in proptest::collection::vec(any::<u8>(), 12)) {
            let (lo, hi) = VirtioNetHdr::parse(&b).unwrap().to_words();
            prop_assert_eq!(&lo.to_le_bytes()[..], &b[..8]);
            prop_assert_eq!(&hi.to_le_bytes()[..], &b[8..]);
        }
    }
}

//! Wire formats: virtio-net feature bits and the `virtio_net_hdr` that prefixes every frame
//! on a virtio-net queue, as a checked view over bytes (no logic about queues here).

use brick_core::{GsoType, Meta, OffloadFlags};

/// virtio-net and virtio ring feature bits (bit numbers from the virtio 1.2 specification).
pub mod feature {
    /// Device handles packets with partial checksum (guest TX checksum offload).
    pub const CSUM: u64 = 1 << 0;
    /// Driver handles packets with partial checksum (guest RX checksum offload).
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device reports the MTU it wants the driver to use in its config space.
    pub const MTU: u64 = 1 << 3;
    /// Device has a MAC address in its config space.
    pub const MAC: u64 = 1 << 5;
    /// Driver can receive TSOv4 super-frames.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// Driver can receive TSOv6 super-frames.
    pub const GUEST_TSO6: u64 = 1 << 8;
    /// Device can receive TSOv4 super-frames from the driver.
    pub const HOST_TSO4: u64 = 1 << 11;
    /// Device can receive TSOv6 super-frames from the driver.
    pub const HOST_TSO6: u64 = 1 << 12;
    /// Driver can merge receive buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// Config space has a link status field.
    pub const STATUS: u64 = 1 << 16;
    /// Device supports several queue pairs.
    pub const MQ: u64 = 1 << 22;
    /// Indirect descriptor tables.
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// Used/avail event indexes (notification suppression).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// vhost-user: protocol features may be negotiated.
    pub const VHOST_USER_PROTOCOL_FEATURES: u64 = 1 << 30;
    /// Virtio 1.0 device (little-endian, 12-byte header).
    pub const VERSION_1: u64 = 1 << 32;
}

/// The virtio-net header's wire format is brick-core's, shared with the TAP brick.
pub use brick_core::virtio_net::VirtioNetHdr as NetHdr;
/// Size of the legacy `virtio_net_hdr` without `num_buffers`.
pub use brick_core::virtio_net::LEN as HDR_LEN_LEGACY;
/// Size of `virtio_net_hdr_mrg_rxbuf` (with `num_buffers`), used with VERSION_1 or MRG_RXBUF.
pub use brick_core::virtio_net::LEN_MRG as HDR_LEN_MRG;
/// `flags` and `gso_type` values.
pub use brick_core::virtio_net::{
    F_DATA_VALID as HDR_F_DATA_VALID, F_NEEDS_CSUM as HDR_F_NEEDS_CSUM, GSO_ECN, GSO_NONE, GSO_TCPV4,
    GSO_TCPV6, GSO_UDP, GSO_UDP_L4,
};

/// Why a guest's `virtio_net_hdr` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Unknown `gso_type`.
    #[error("unknown gso type {0}")]
    UnknownGso(u8),
    /// A GSO type that was not negotiated (HOST_TSO4/6).
    #[error("gso type {0} not negotiated")]
    GsoNotNegotiated(u8),
    /// GSO with a zero segment size.
    #[error("gso with zero segment size")]
    ZeroGsoSize,
    /// NEEDS_CSUM pointing outside the frame, or not negotiated.
    #[error("checksum offsets out of the frame")]
    BadCsumOffsets,
}

/// Checks a header `h` sent by the guest (TX) for a frame of `frame_len` bytes against the
/// features the device offered and the driver acked, and maps it onto packet metadata.
pub fn tx_meta(h: &NetHdr, frame_len: usize, acked: u64, meta: &mut Meta) -> Result<(), HeaderError> {
    if h.flags & HDR_F_NEEDS_CSUM != 0 {
        let end = h.csum_start as usize + h.csum_offset as usize + 2;
        if acked & feature::CSUM == 0 || end > frame_len {
            return Err(HeaderError::BadCsumOffsets);
        }
        meta.offload.insert(OffloadFlags::CSUM_NEEDED);
        meta.csum_start = h.csum_start;
        meta.csum_offset = h.csum_offset;
    }
    if h.flags & HDR_F_DATA_VALID != 0 {
        meta.offload.insert(OffloadFlags::CSUM_VERIFIED);
    }
    let gso = h.gso_type & !GSO_ECN;
    let (ty, needed) = match gso {
        GSO_NONE => (GsoType::None, 0),
        GSO_TCPV4 => (GsoType::TcpV4, feature::HOST_TSO4),
        GSO_TCPV6 => (GsoType::TcpV6, feature::HOST_TSO6),
        GSO_UDP | GSO_UDP_L4 => return Err(HeaderError::GsoNotNegotiated(gso)),
        other => return Err(HeaderError::UnknownGso(other)),
    };
    if ty != GsoType::None {
        if acked & needed == 0 {
            return Err(HeaderError::GsoNotNegotiated(gso));
        }
        if h.gso_size == 0 {
            return Err(HeaderError::ZeroGsoSize);
        }
        meta.gso_type = ty;
        meta.gso_size = h.gso_size;
    }
    Ok(())
}

/// Why a packet cannot be given to a guest as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RxHeaderError {
    /// A super-frame for a guest that did not ack the matching GUEST_TSO/UFO feature (the
    /// graph has no software segmentation).
    #[error("super-frame needs segmentation")]
    NeedsSegmentation,
    /// CSUM_NEEDED offsets point outside the packet.
    #[error("checksum offsets out of the packet")]
    BadCsumOffsets,
}

/// Builds the header given to a guest (RX) for `frame`, completing the checksum in software
/// when the packet needs one and the guest did not ack GUEST_CSUM.
pub fn rx_header(frame: &mut [u8], meta: &Meta, acked: u64) -> Result<NetHdr, RxHeaderError> {
    let mut h = NetHdr::default();
    if meta.offload.contains(OffloadFlags::CSUM_NEEDED) {
        let start = meta.csum_start as usize;
        let field = start + meta.csum_offset as usize;
        if field + 2 > frame.len() {
            return Err(RxHeaderError::BadCsumOffsets);
        }
        if acked & feature::GUEST_CSUM != 0 {
            h.flags |= HDR_F_NEEDS_CSUM;
            h.csum_start = meta.csum_start;
            h.csum_offset = meta.csum_offset;
        } else if meta.gso_type == GsoType::None {
            complete_checksum(frame, start, field);
        }
    } else if meta.offload.contains(OffloadFlags::CSUM_VERIFIED) && acked & feature::GUEST_CSUM != 0 {
        h.flags |= HDR_F_DATA_VALID;
    }
    let (gso, needed) = match meta.gso_type {
        GsoType::None => (GSO_NONE, 0),
        GsoType::TcpV4 => (GSO_TCPV4, feature::GUEST_TSO4),
        GsoType::TcpV6 => (GSO_TCPV6, feature::GUEST_TSO6),
        GsoType::Udp => return Err(RxHeaderError::NeedsSegmentation),
    };
    if gso != GSO_NONE {
        if acked & needed == 0 || acked & feature::GUEST_CSUM == 0 || meta.gso_size == 0 {
            return Err(RxHeaderError::NeedsSegmentation);
        }
        h.gso_type = gso;
        h.gso_size = meta.gso_size;
        h.hdr_len = tcp_headers_end(frame, meta.csum_start as usize);
    }
    Ok(h)
}

/// End of the TCP header starting at `l4` (the `hdr_len` hint), or 0 if it cannot be read.
fn tcp_headers_end(frame: &[u8], l4: usize) -> u16 {
    match frame.get(l4 + 12) {
        Some(b) => {
            let end = l4 + ((b >> 4) as usize) * 4;
            if end <= frame.len() {
                end as u16
            } else {
                0
            }
        }
        None => 0,
    }
}

/// Completes a partial (CHECKSUM_PARTIAL) checksum: the one's complement sum of
/// `frame[start..]`, whose 16-bit field at `field` holds the pseudo-header sum, is folded and
/// stored at `field` (a zero result as 0xffff; see [`brick_core::checksum::complete_partial`]).
/// Offsets out of bounds leave the frame unchanged.
pub fn complete_checksum(frame: &mut [u8], start: usize, field: usize) {
    let _ = brick_core::checksum::complete_partial(frame, start, field.saturating_sub(start));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trip() {
        let h = NetHdr {
            flags: 1,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 3,
        };
        let mut b = [0u8; 12];
        h.write(&mut b);
        assert_eq!(NetHdr::parse(&b).unwrap(), h);
        let mut legacy = [0u8; 10];
        h.write(&mut legacy);
        assert_eq!(NetHdr::parse(&legacy).unwrap().num_buffers, 0);
        assert_eq!(NetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn tx_header_maps_onto_meta_and_refuses_bad_input() {
        let all = feature::CSUM | feature::HOST_TSO4 | feature::HOST_TSO6;
        let mut m = Meta::default();
        let h = NetHdr {
            flags: 1,
            gso_type: GSO_TCPV6,
            gso_size: 1400,
            csum_start: 54,
            csum_offset: 16,
            ..Default::default()
        };
        tx_meta(&h, 2000, all, &mut m).unwrap();
        assert!(m.offload.contains(OffloadFlags::CSUM_NEEDED));
        assert_eq!((m.csum_start, m.csum_offset, m.gso_size, m.gso_type), (54, 16, 1400, GsoType::TcpV6));
        let mut m = Meta::default();
        assert_eq!(tx_meta(&h, 60, all, &mut m), Err(HeaderError::BadCsumOffsets));
        assert_eq!(tx_meta(&h, 2000, feature::CSUM, &mut m), Err(HeaderError::GsoNotNegotiated(GSO_TCPV6)));
        let h0 = NetHdr { gso_type: GSO_TCPV4, ..Default::default() };
        assert_eq!(tx_meta(&h0, 2000, all, &mut m), Err(HeaderError::ZeroGsoSize));
        let hx = NetHdr { gso_type: 9, ..Default::default() };
        assert_eq!(tx_meta(&hx, 2000, all, &mut m), Err(HeaderError::UnknownGso(9)));
        let hc = NetHdr { flags: 1, csum_start: 14, csum_offset: 6, ..Default::default() };
        assert_eq!(tx_meta(&hc, 100, 0, &mut m), Err(HeaderError::BadCsumOffsets));
    }

    #[test]
    fn software_checksum_matches_reference() {
        // UDP over IPv4 built with etherparse, checksum left partial like a guest would.
        let b = etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000);
        let payload = b"hello checksum!";
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        let good = frame.clone();
        // pseudo-header sum (not complemented) in the field, as CHECKSUM_PARTIAL leaves it
        let mut pseudo: u32 = 0;
        for w in [0x0a00u32, 0x0001, 0x0a00, 0x0002, 17, (8 + payload.len()) as u32] {
            pseudo += w;
        }
        while pseudo > 0xffff {
            pseudo = (pseudo & 0xffff) + (pseudo >> 16);
        }
        frame[40..42].copy_from_slice(&(pseudo as u16).to_be_bytes());
        let mut meta = Meta::default();
        meta.offload.insert(OffloadFlags::CSUM_NEEDED);
        meta.csum_start = 34;
        meta.csum_offset = 6;
        let h = rx_header(&mut frame, &meta, 0).unwrap();
        assert_eq!(h.flags, 0);
        assert_eq!(frame, good);
        // with GUEST_CSUM the guest gets the offsets instead
        let mut f2 = frame.clone();
        let h = rx_header(&mut f2, &meta, feature::GUEST_CSUM).unwrap();
        assert_eq!((h.flags, h.csum_start, h.csum_offset), (HDR_F_NEEDS_CSUM, 34, 6));
    }

    #[test]
    fn rx_gso_needs_guest_tso() {
        let mut frame = vec![0u8; 200];
        frame[34 + 12] = 5 << 4;
        let mut meta = Meta {
            gso_type: GsoType::TcpV4,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        meta.offload.insert(OffloadFlags::CSUM_NEEDED);
        assert_eq!(rx_header(&mut frame, &meta, feature::GUEST_CSUM), Err(RxHeaderError::NeedsSegmentation));
        let h = rx_header(&mut frame, &meta, feature::GUEST_CSUM | feature::GUEST_TSO4).unwrap();
        assert_eq!((h.gso_type, h.gso_size, h.hdr_len), (GSO_TCPV4, 1448, 54));
    }

    proptest! {
        #[test]
        fn random_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16), len in 0usize..70000, acked in any::<u64>()) {
            if let Some(h) = NetHdr::parse(&bytes) {
                let mut m = Meta::default();
                if tx_meta(&h, len, acked, &mut m).is_ok() && m.offload.contains(OffloadFlags::CSUM_NEEDED) {
                    prop_assert!(m.csum_start as usize + m.csum_offset as usize + 2 <= len);
                }
            }
        }

        #[test]
        fn random_rx_meta_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..200), start in any::<u16>(), off in any::<u16>(), gso in 0u8..4, acked in any::<u64>()) {
            let mut frame = frame;
            let mut meta = Meta { csum_start: start, csum_offset: off, gso_size: 1, ..Default::default() };
            meta.gso_type = [GsoType::None, GsoType::TcpV4, GsoType::TcpV6, GsoType::Udp][gso as usize];
            meta.offload.insert(OffloadFlags::CSUM_NEEDED);
            let _ = rx_header(&mut frame, &meta, acked);
        }
    }
}

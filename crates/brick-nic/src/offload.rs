//! Offload metadata on the wire: the virtio-net header that TAP (`IFF_VNET_HDR`) puts in
//! front of each frame, its mapping to and from [`brick_core::Meta`], a locator for the L4
//! checksum field of a frame, and software checksum completion.
//!
//! Everything here reads untrusted bytes (frames from the kernel, a VM or a capture) and
//! never panics: malformed input gives `None` or an [`OffloadError`].

use brick_core::{GsoType, Meta, OffloadFlags};
use brick_wire::{EtherType, IpProto};

/// The virtio-net header's wire format is brick-core's, shared with brick-vhost; this module
/// adds TAP's mapping onto [`Meta`] ([`VnetMeta`]) and the UDP-tunnel extension.
pub use brick_core::virtio_net::VirtioNetHdr as VnetHdr;
/// Size of `struct virtio_net_hdr` (the legacy header without `num_buffers`).
pub use brick_core::virtio_net::LEN as VNET_HDR_LEN;
/// `VIRTIO_NET_HDR_F_*` flags and `VIRTIO_NET_HDR_GSO_*` types.
pub use brick_core::virtio_net::{
    F_DATA_VALID as VNET_F_DATA_VALID, F_NEEDS_CSUM as VNET_F_NEEDS_CSUM, GSO_ECN as VNET_GSO_ECN,
    GSO_NONE as VNET_GSO_NONE, GSO_TCPV4 as VNET_GSO_TCPV4, GSO_TCPV6 as VNET_GSO_TCPV6,
    GSO_UDP as VNET_GSO_UDP, GSO_UDP_L4 as VNET_GSO_UDP_L4,
};
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4` bit of `gso_type`: the super-frame is inside a UDP
/// tunnel (VXLAN) over IPv4 (Linux ≥ 6.17, TAP with `TUN_F_UDP_TUNNEL_GSO`).
pub const VNET_GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
/// `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV6` bit of `gso_type`: the same over IPv6.
pub const VNET_GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
/// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`: the outer UDP checksum is partial too (not negotiated
/// by this crate: such frames are refused).
pub const VNET_F_UDP_TUNNEL_CSUM: u8 = 8;
/// Size of `struct virtio_net_hdr_v1_hash_tunnel`: the header plus `num_buffers`, the hash
/// report fields and the two tunnel offsets. TAP uses it when UDP-tunnel GSO is negotiated.
pub const VNET_HDR_TNL_LEN: usize = 24;

/// The tunnel part of a UDP-tunnel super-frame's virtio-net header: where the outer UDP
/// header and the inner network header start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetTunnel {
    /// `VNET_GSO_UDP_TUNNEL_IPV4` or `_IPV6`.
    pub kind: u8,
    /// Offset of the outer UDP header (`outer_th_offset`).
    pub outer_th: u16,
    /// Offset of the inner IP header (`inner_nh_offset`).
    pub inner_nh: u16,
}

impl VnetTunnel {
    /// Reads the tunnel fields of a [`VNET_HDR_TNL_LEN`]-byte header `b`; `None` when its
    /// `gso_type` carries no tunnel bit. Offsets are checked the way the kernel does (outer
    /// UDP after an Ethernet + IP header, inner IP after the outer UDP header, the inner L4
    /// header — `csum_start` — after a minimal inner IP header).
    pub fn parse(b: &[u8]) -> Result<Option<VnetTunnel>, OffloadError> {
        if b.len() < VNET_HDR_TNL_LEN {
            return Err(OffloadError::ShortHeader(b.len()));
        }
        let kind = b[1] & (VNET_GSO_UDP_TUNNEL_IPV4 | VNET_GSO_UDP_TUNNEL_IPV6);
        if kind == 0 {
            return Ok(None);
        }
        let inner_type = b[1] & !(kind | VNET_GSO_ECN);
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let t = VnetTunnel { kind, outer_th: u16_at(20), inner_nh: u16_at(22) };
        let outer_l3 = if kind == VNET_GSO_UDP_TUNNEL_IPV6 { 40 } else { 20 };
        let inner_l3 = if inner_type == VNET_GSO_TCPV6 { 40 } else { 20 };
        let csum_start = u16_at(6);
        let ok = kind != (VNET_GSO_UDP_TUNNEL_IPV4 | VNET_GSO_UDP_TUNNEL_IPV6)
            && matches!(inner_type, VNET_GSO_TCPV4 | VNET_GSO_TCPV6)
            && b[0] & VNET_F_NEEDS_CSUM != 0
            && b[0] & VNET_F_UDP_TUNNEL_CSUM == 0
            && usize::from(t.outer_th) >= 14 + outer_l3
            && usize::from(t.inner_nh) >= usize::from(t.outer_th) + 8
            && usize::from(csum_start) >= usize::from(t.inner_nh) + inner_l3;
        if ok {
            Ok(Some(t))
        } else {
            Err(OffloadError::BadTunnel)
        }
    }

    /// The tunnel fields for a TCP super-frame `data` that is VXLAN-encapsulated (its outer
    /// IP protocol is UDP and its `csum_start` lies beyond the outer UDP and VXLAN headers);
    /// `None` for anything else.
    pub fn for_frame(meta: &Meta, data: &[u8]) -> Option<VnetTunnel> {
        if !matches!(meta.gso_type, GsoType::TcpV4 | GsoType::TcpV6) {
            return None;
        }
        let (l3, et) = l3_offset(data)?;
        let (kind, l4) = match et {
            ETH_P_IPV4 => {
                let vihl = *data.get(l3)?;
                if vihl >> 4 != 4 || *data.get(l3 + 9)? != IPPROTO_UDP {
                    return None;
                }
                (VNET_GSO_UDP_TUNNEL_IPV4, l3 + usize::from(vihl & 0x0f) * 4)
            }
            ETH_P_IPV6 => {
                if *data.get(l3 + 6)? != IPPROTO_UDP {
                    return None;
                }
                (VNET_GSO_UDP_TUNNEL_IPV6, l3 + 40)
            }
            _ => return None,
        };
        // Outer UDP (8) + VXLAN (8), then the inner Ethernet frame.
        let inner = l4 + 16;
        let (inner_l3, _) = l3_offset(data.get(inner..)?)?;
        let inner_nh = inner + inner_l3;
        if usize::from(meta.csum_start) < inner_nh + 20 || inner_nh > usize::from(u16::MAX) {
            return None;
        }
        Some(VnetTunnel { kind, outer_th: l4 as u16, inner_nh: inner_nh as u16 })
    }

    /// Writes the tunnel fields into a [`VNET_HDR_TNL_LEN`]-byte header whose first ten bytes
    /// already describe the inner super-frame (its `gso_type` gets the tunnel bit).
    pub fn write(&self, out: &mut [u8; VNET_HDR_TNL_LEN]) {
        out[1] |= self.kind;
        out[10..20].fill(0);
        out[20..22].copy_from_slice(&self.outer_th.to_le_bytes());
        out[22..24].copy_from_slice(&self.inner_nh.to_le_bytes());
    }
}

/// Why offload metadata was refused. The frame carrying it is dropped as "bad offload".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// Fewer than [`VNET_HDR_LEN`] bytes.
    #[error("virtio-net header needs {VNET_HDR_LEN} bytes, got {0}")]
    ShortHeader(usize),
    /// The checksum field lies outside the frame.
    #[error("checksum at {start}+{offset} is outside a {len}-byte frame")]
    ChecksumOutOfFrame {
        /// `csum_start`.
        start: u16,
        /// `csum_offset`.
        offset: u16,
        /// Frame length.
        len: usize,
    },
    /// A `gso_type` this crate does not know.
    #[error("unknown GSO type {0:#x}")]
    UnknownGso(u8),
    /// Segmentation asked with a zero segment size, or without a partial checksum.
    #[error("GSO frame with segment size {0} or without a partial checksum")]
    BadGso(u16),
    /// UDP-tunnel GSO fields inconsistent (offsets, inner type, outer checksum offload).
    #[error("bad UDP-tunnel GSO fields")]
    BadTunnel,
}

/// Reads a virtio-net header from the start of `b` (`TUNSETVNETLE` is not needed on the
/// little-endian hosts this runs on).
pub fn parse_vnet(b: &[u8]) -> Result<VnetHdr, OffloadError> {
    VnetHdr::parse(b).ok_or(OffloadError::ShortHeader(b.len()))
}

/// How TAP's virtio-net header maps onto packet metadata, both ways.
pub trait VnetMeta: Sized {
    /// Copies this header's offload state into `meta`, checking it against a frame of
    /// `frame_len` bytes. `meta` is untouched on error.
    fn apply_to(&self, meta: &mut Meta, frame_len: usize) -> Result<(), OffloadError>;
    /// The header describing `meta` for the frame `data`. Fails when the metadata does not
    /// fit the frame (a checksum outside it, segmentation without a partial checksum).
    fn from_meta(meta: &Meta, data: &[u8]) -> Result<Self, OffloadError>;
}

impl VnetMeta for VnetHdr {
    fn apply_to(&self, meta: &mut Meta, frame_len: usize) -> Result<(), OffloadError> {
        let mut offload = OffloadFlags::NONE;
        if self.flags & VNET_F_NEEDS_CSUM != 0 {
            let end = self.csum_start as usize + self.csum_offset as usize + 2;
            if end > frame_len {
                return Err(OffloadError::ChecksumOutOfFrame {
                    start: self.csum_start,
                    offset: self.csum_offset,
                    len: frame_len,
                });
            }
            offload.insert(OffloadFlags::CSUM_NEEDED);
        }
        if self.flags & VNET_F_DATA_VALID != 0 {
            offload.insert(OffloadFlags::CSUM_VERIFIED);
        }
        let gso_type = match self.gso_type & !VNET_GSO_ECN {
            VNET_GSO_NONE => GsoType::None,
            VNET_GSO_TCPV4 => GsoType::TcpV4,
            VNET_GSO_TCPV6 => GsoType::TcpV6,
            VNET_GSO_UDP | VNET_GSO_UDP_L4 => GsoType::Udp,
            other => return Err(OffloadError::UnknownGso(other)),
        };
        if gso_type != GsoType::None && (self.gso_size == 0 || !offload.contains(OffloadFlags::CSUM_NEEDED)) {
            return Err(OffloadError::BadGso(self.gso_size));
        }
        meta.offload = offload;
        if offload.contains(OffloadFlags::CSUM_NEEDED) {
            meta.csum_start = self.csum_start;
            meta.csum_offset = self.csum_offset;
        } else {
            meta.csum_start = 0;
            meta.csum_offset = 0;
        }
        meta.gso_type = gso_type;
        meta.gso_size = if gso_type == GsoType::None { 0 } else { self.gso_size };
        Ok(())
    }

    fn from_meta(meta: &Meta, data: &[u8]) -> Result<VnetHdr, OffloadError> {
        let mut h = VnetHdr::default();
        if meta.offload.contains(OffloadFlags::CSUM_NEEDED) {
            let end = meta.csum_start as usize + meta.csum_offset as usize + 2;
            if end > data.len() {
                return Err(OffloadError::ChecksumOutOfFrame {
                    start: meta.csum_start,
                    offset: meta.csum_offset,
                    len: data.len(),
                });
            }
            h.flags |= VNET_F_NEEDS_CSUM;
            h.csum_start = meta.csum_start;
            h.csum_offset = meta.csum_offset;
        } else if meta.offload.contains(OffloadFlags::CSUM_VERIFIED) {
            h.flags |= VNET_F_DATA_VALID;
        }
        if meta.gso_type != GsoType::None {
            if meta.gso_size == 0 || h.flags & VNET_F_NEEDS_CSUM == 0 {
                return Err(OffloadError::BadGso(meta.gso_size));
            }
            h.gso_type = match meta.gso_type {
                GsoType::TcpV4 => VNET_GSO_TCPV4,
                GsoType::TcpV6 => VNET_GSO_TCPV6,
                GsoType::Udp => VNET_GSO_UDP_L4,
                GsoType::None => VNET_GSO_NONE,
            };
            h.gso_size = meta.gso_size;
            h.hdr_len = header_len(data, meta.csum_start as usize, meta.gso_type);
        }
        Ok(h)
    }
}

/// Length of every header up to the end of the L4 header, when segmenting at `l4` (the
/// checksum start). Used as the `hdr_len` hint; the kernel recomputes it anyway.
fn header_len(data: &[u8], l4: usize, gso: GsoType) -> u16 {
    let l4_len = match gso {
        GsoType::TcpV4 | GsoType::TcpV6 => {
            data.get(l4 + 12).map(|b| ((b >> 4) as usize * 4).max(20)).unwrap_or(20)
        }
        _ => 8,
    };
    (l4 + l4_len).min(data.len()).min(u16::MAX as usize) as u16
}

const ETH_P_IPV4: u16 = EtherType::IPV4.0;
const ETH_P_IPV6: u16 = EtherType::IPV6.0;
const IPPROTO_TCP: u8 = IpProto::TCP.0;
const IPPROTO_UDP: u8 = IpProto::UDP.0;

/// Where the network layer and the transport layer of an Ethernet frame start, and which
/// transport it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L4Location {
    /// Offset of the IP header.
    pub l3_offset: u16,
    /// Offset of the TCP/UDP header.
    pub l4_offset: u16,
    /// `6` (TCP) or `17` (UDP).
    pub protocol: u8,
}

impl L4Location {
    /// Offset of the checksum field from the start of the L4 header.
    pub fn csum_offset(&self) -> u16 {
        if self.protocol == IPPROTO_TCP {
            16
        } else {
            6
        }
    }
}

/// Offset of the network header of an Ethernet frame (after up to two VLAN tags, brick-wire's
/// policy), with its EtherType; `None` when the frame is too short or has more tags.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let l = brick_wire::locate_l2(frame).ok()?;
    Some((l.l3, l.ethertype))
}

/// Most IPv6 extension headers this locator looks past: the kernel's checksum offload never
/// needs more, and the bound is older than brick-wire's.
const MAX_V6_EXT: u8 = 4;

/// Finds the TCP or UDP header of an Ethernet/IPv4 or Ethernet/IPv6 frame (IPv6 extension
/// headers hop-by-hop, routing and destination options are skipped). `None` for anything else,
/// for IP fragments other than the first, IPv6 fragments, and truncated headers.
pub fn locate_l4(frame: &[u8]) -> Option<L4Location> {
    let l = brick_wire::locate(frame).ok()?;
    let l4 = l.l4?;
    // brick-wire also walks AH and fragment headers; this locator never did for IPv6.
    if l.is_ipv6() && (l.frag.is_some() || l.ipv6_auth || l.ext_count > MAX_V6_EXT) {
        return None;
    }
    let proto = l.proto;
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return None;
    }
    let min = if proto == IPPROTO_TCP { 20 } else { 8 };
    if frame.len() < l4 + min || l4 > u16::MAX as usize {
        return None;
    }
    Some(L4Location { l3_offset: l.l3 as u16, l4_offset: l4 as u16, protocol: proto })
}

/// Completes a partial checksum the way a NIC would for `CSUM_NEEDED` (see
/// [`brick_core::checksum::complete_partial`]). Returns `false`, leaving `frame` unchanged,
/// when the field lies outside the frame.
pub fn complete_checksum(frame: &mut [u8], csum_start: u16, csum_offset: u16) -> bool {
    brick_core::checksum::complete_partial(frame, csum_start as usize, csum_offset as usize)
}

/// Fills `meta`'s L2/L3 offsets for an Ethernet frame, the cheap guess every ingress brick
/// makes (L4 is left to the bricks that parse it).
#[inline]
pub fn guess_l2_l3(frame: &[u8], meta: &mut Meta) {
    meta.l2_offset = 0;
    if let Some((l3, _)) = l3_offset(frame) {
        meta.l3_offset = l3 as u16;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp4_frame(payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 7, 1000);
        let mut v = Vec::new();
        builder.write(&mut v, payload).unwrap();
        v
    }

    fn udp6_frame(payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1234, 53);
        let mut v = Vec::new();
        builder.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn vnet_hdr_round_trips() {
        let h = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(parse_vnet(&b).unwrap(), h);
        assert_eq!(parse_vnet(&b[..9]), Err(OffloadError::ShortHeader(9)));
    }

    #[test]
    fn vnet_hdr_maps_to_meta_and_back() {
        let frame = tcp4_frame(&[7u8; 3000]);
        let h = VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4 | VNET_GSO_ECN,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: 0,
        };
        let mut m = Meta::default();
        h.apply_to(&mut m, frame.len()).unwrap();
        assert!(m.offload.contains(OffloadFlags::CSUM_NEEDED));
        assert_eq!((m.csum_start, m.csum_offset, m.gso_size, m.gso_type), (34, 16, 1448, GsoType::TcpV4));
        let back = VnetHdr::from_meta(&m, &frame).unwrap();
        assert_eq!(back.gso_type, VNET_GSO_TCPV4);
        assert_eq!(back.hdr_len, 54);
        assert_eq!((back.csum_start, back.csum_offset, back.gso_size), (34, 16, 1448));
    }

    #[test]
    fn inconsistent_vnet_hdrs_are_refused() {
        let mut m = Meta::default();
        let bad_csum =
            VnetHdr { flags: VNET_F_NEEDS_CSUM, csum_start: 50, csum_offset: 16, ..Default::default() };
        assert!(matches!(bad_csum.apply_to(&mut m, 60), Err(OffloadError::ChecksumOutOfFrame { .. })));
        let bad_gso = VnetHdr { gso_type: 9, ..Default::default() };
        assert_eq!(bad_gso.apply_to(&mut m, 60), Err(OffloadError::UnknownGso(9)));
        let no_csum = VnetHdr { gso_type: VNET_GSO_TCPV4, gso_size: 1000, ..Default::default() };
        assert_eq!(no_csum.apply_to(&mut m, 60), Err(OffloadError::BadGso(1000)));
        assert_eq!(m, Meta::default());
        let verified = VnetHdr { flags: VNET_F_DATA_VALID, ..Default::default() };
        verified.apply_to(&mut m, 60).unwrap();
        assert!(m.offload.contains(OffloadFlags::CSUM_VERIFIED));
        let mut gso_meta = Meta { gso_type: GsoType::TcpV6, gso_size: 1000, ..Default::default() };
        assert_eq!(VnetHdr::from_meta(&gso_meta, &[0; 100]), Err(OffloadError::BadGso(1000)));
        gso_meta.offload = OffloadFlags::CSUM_NEEDED;
        gso_meta.csum_start = 90;
        gso_meta.csum_offset = 16;
        assert!(VnetHdr::from_meta(&gso_meta, &[0; 100]).is_err());
    }

    #[test]
    fn locates_tcp_and_udp() {
        let t = tcp4_frame(b"hello");
        let loc = locate_l4(&t).unwrap();
        assert_eq!((loc.l3_offset, loc.l4_offset, loc.protocol, loc.csum_offset()), (14, 34, 6, 16));
        let u = udp6_frame(b"hello");
        let loc = locate_l4(&u).unwrap();
        assert_eq!((loc.l3_offset, loc.l4_offset, loc.protocol, loc.csum_offset()), (14, 54, 17, 6));
        let mut vlan = t.clone();
        vlan.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        assert_eq!(locate_l4(&vlan).unwrap().l4_offset, 38);
        assert_eq!(locate_l4(&t[..40]), None);
        let mut arp = t.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(locate_l4(&arp), None);
    }

    #[test]
    fn completes_a_partial_checksum() {
        use brick_core::checksum::{csum_add, csum_add_value, csum_fold};
        for frame in [tcp4_frame(b"some payload!"), udp6_frame(b"odd")] {
            let loc = locate_l4(&frame).unwrap();
            let at = (loc.l4_offset + loc.csum_offset()) as usize;
            let good = [frame[at], frame[at + 1]];
            // Replace the checksum by the pseudo-header sum, as a sender using offload does.
            let mut partial = frame.clone();
            let ip = &frame[loc.l3_offset as usize..];
            let l4_len = (frame.len() - loc.l4_offset as usize) as u64;
            let mut pseudo = loc.protocol as u64 + l4_len;
            pseudo = csum_add_value(
                pseudo,
                if ip[0] >> 4 == 4 { csum_add(0, &ip[12..20]) } else { csum_add(0, &ip[8..40]) },
            );
            // The field holds the pseudo-header sum, not complemented.
            partial[at..at + 2].copy_from_slice(&(!csum_fold(pseudo)).to_be_bytes());
            assert!(complete_checksum(&mut partial, loc.l4_offset, loc.csum_offset()));
            assert_eq!([partial[at], partial[at + 1]], good);
            assert_eq!(partial, frame);
        }
        let mut short = [0u8; 10];
        assert!(!complete_checksum(&mut short, 8, 2));
        assert_eq!(short, [0u8; 10]);
    }

    fn tunnel_hdr(
        flags: u8,
        gso_type: u8,
        csum_start: u16,
        outer_th: u16,
        inner_nh: u16,
    ) -> [u8; VNET_HDR_TNL_LEN] {
        let mut b = [0u8; VNET_HDR_TNL_LEN];
        let h = VnetHdr {
            flags,
            gso_type,
            hdr_len: 0,
            gso_size: 1398,
            csum_start,
            csum_offset: 16,
            num_buffers: 0,
        };
        h.write(&mut b);
        b[20..22].copy_from_slice(&outer_th.to_le_bytes());
        b[22..24].copy_from_slice(&inner_nh.to_le_bytes());
        b
    }

    #[test]
    fn tunnel_headers_are_checked_like_the_kernel_does() {
        let t4 = VNET_GSO_UDP_TUNNEL_IPV4 | VNET_GSO_TCPV4;
        let ok = tunnel_hdr(VNET_F_NEEDS_CSUM, t4, 84, 34, 64);
        assert_eq!(
            VnetTunnel::parse(&ok),
            Ok(Some(VnetTunnel { kind: VNET_GSO_UDP_TUNNEL_IPV4, outer_th: 34, inner_nh: 64 }))
        );
        assert_eq!(VnetTunnel::parse(&tunnel_hdr(VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, 34, 0, 0)), Ok(None));
        assert_eq!(VnetTunnel::parse(&ok[..20]), Err(OffloadError::ShortHeader(20)));
        let both = VNET_GSO_UDP_TUNNEL_IPV4 | VNET_GSO_UDP_TUNNEL_IPV6 | VNET_GSO_TCPV4;
        let bad = [
            tunnel_hdr(VNET_F_NEEDS_CSUM, both, 84, 34, 64),
            tunnel_hdr(VNET_F_NEEDS_CSUM, VNET_GSO_UDP_TUNNEL_IPV4 | VNET_GSO_UDP, 84, 34, 64),
            tunnel_hdr(0, t4, 84, 34, 64),
            tunnel_hdr(VNET_F_NEEDS_CSUM | VNET_F_UDP_TUNNEL_CSUM, t4, 84, 34, 64),
            tunnel_hdr(VNET_F_NEEDS_CSUM, t4, 84, 20, 64),
            tunnel_hdr(VNET_F_NEEDS_CSUM, t4, 84, 34, 40),
            tunnel_hdr(VNET_F_NEEDS_CSUM, t4, 70, 34, 64),
            tunnel_hdr(VNET_F_NEEDS_CSUM, VNET_GSO_UDP_TUNNEL_IPV6 | VNET_GSO_TCPV4, 104, 34, 84),
        ];
        for b in bad {
            assert_eq!(VnetTunnel::parse(&b), Err(OffloadError::BadTunnel), "{b:?}");
        }
    }

    #[test]
    fn tunnel_fields_are_found_in_a_vxlan_super_frame() {
        let inner = tcp4_frame(&[1u8; 3000]);
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&inner);
        let mut outer = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 18, 0, 1], [198, 18, 0, 2], 64)
            .udp(50000, 4789)
            .write(&mut outer, &vx)
            .unwrap();
        let m = Meta {
            offload: OffloadFlags::CSUM_NEEDED,
            csum_start: 84,
            csum_offset: 16,
            gso_size: 1398,
            gso_type: GsoType::TcpV4,
            ..Meta::default()
        };
        let t = VnetTunnel::for_frame(&m, &outer).unwrap();
        assert_eq!(t, VnetTunnel { kind: VNET_GSO_UDP_TUNNEL_IPV4, outer_th: 34, inner_nh: 64 });
        let mut hdr = [0u8; VNET_HDR_TNL_LEN];
        VnetHdr::from_meta(&m, &outer).unwrap().write(&mut hdr);
        t.write(&mut hdr);
        assert_eq!(VnetTunnel::parse(&hdr), Ok(Some(t)), "what we write we read back");
        // Not a tunnel: a plain TCP super-frame, a non-GSO frame, csum_start in the outer headers.
        let plain = Meta { csum_start: 34, ..m };
        assert_eq!(VnetTunnel::for_frame(&plain, &inner), None);
        assert_eq!(VnetTunnel::for_frame(&Meta { gso_type: GsoType::None, ..m }, &outer), None);
        assert_eq!(VnetTunnel::for_frame(&plain, &outer), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), len in 0usize..70000) {
            let _ = locate_l4(&bytes);
            let _ = l3_offset(&bytes);
            if let Ok(h) = parse_vnet(&bytes) {
                let mut m = Meta::default();
                if h.apply_to(&mut m, len).is_ok() && len >= bytes.len() {
                    // Whatever was accepted maps back without panicking.
                    let _ = VnetHdr::from_meta(&m, &bytes);
                }
            }
            let mut b = bytes.clone();
            let start = u16::from_le_bytes([*bytes.first().unwrap_or(&0), 0]);
            let _ = complete_checksum(&mut b, start, 6);
            let mut m = Meta::default();
            guess_l2_l3(&bytes, &mut m);
        }

        #[test]
        fn random_tunnel_headers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), start: u16, gso in 0u8..3) {
            let _ = VnetTunnel::parse(&bytes);
            let m = Meta {
                csum_start: start,
                gso_type: [GsoType::None, GsoType::TcpV4, GsoType::TcpV6][gso as usize],
                ..Meta::default()
            };
            if let Some(t) = VnetTunnel::for_frame(&m, &bytes) {
                prop_assert!(usize::from(t.inner_nh) + 20 <= usize::from(start));
            }
        }

        #[test]
        fn arbitrary_meta_never_panics(start in any::<u16>(), off in any::<u16>(), size in any::<u16>(), flags in 0u8..8, gso in 0u8..4, len in 0usize..300) {
            let mut m = Meta::default();
            if flags & 1 != 0 { m.offload.insert(OffloadFlags::CSUM_NEEDED); }
            if flags & 2 != 0 { m.offload.insert(OffloadFlags::CSUM_VERIFIED); }
            m.csum_start = start;
            m.csum_offset = off;
            m.gso_size = size;
            m.gso_type = [GsoType::None, GsoType::TcpV4, GsoType::TcpV6, GsoType::Udp][gso as usize];
            let data = vec![0x45u8; len];
            if let Ok(h) = VnetHdr::from_meta(&m, &data) {
                let mut back = Meta::default();
                prop_assert!(h.apply_to(&mut back, len).is_ok());
                prop_assert_eq!(back.gso_type, m.gso_type);
            }
        }
    }
}

//! Software segmentation of TCP super-frames (GSO/TSO done by the CPU).
//!
//! A VM with TSO hands over Ethernet/IP/TCP frames of up to 64 KiB with `Meta::gso_type`
//! and `Meta::gso_size` (the MSS) set. Whoever must pass such a frame to something that
//! cannot take it whole (an underlay without tunnel offload, a VM without TSO, a DPDK port
//! without TSO) cuts it into MSS-sized segments with [`TcpSegmenter`]:
//!
//! - every segment carries a copy of the headers (Ethernet, VLAN tags, IPv4 or IPv6, TCP with
//!   its options) and the next `gso_size` bytes of payload;
//! - IPv4 total length, identification (+1 per segment) and header checksum, IPv6 payload
//!   length, TCP sequence number and checksum are rewritten; FIN and PSH stay on the last
//!   segment only, CWR on the first only;
//! - checksums are complete: segments carry no offload flags.
//!
//! Nothing is allocated: [`TcpSegmenter::write_segment`] writes into a buffer the caller
//! owns (a pool packet, a TX ring slot), and [`segment_into_pool`] takes one packet per
//! segment from a [`PacketPool`]. Malformed metadata or headers give a [`GsoError`], never a
//! panic, so the caller can drop and count the frame.

use crate::checksum::{csum_add, csum_add_value, csum_fold};
use crate::{GsoType, Meta, OffloadFlags, Packet, PacketPool};
use brick_wire::{be16, locate_l2, EtherType, IpProto, Ipv4, Ipv6, Tcp};

/// Most segments one super-frame may be cut into (64 KiB at Linux's smallest MSS, 88 bytes,
/// is 745 segments). Anything above is refused as malformed.
pub const MAX_SEGMENTS: usize = 1024;

const ETH_P_IPV4: u16 = EtherType::IPV4.0;
const ETH_P_IPV6: u16 = EtherType::IPV6.0;
const IPPROTO_TCP: u8 = IpProto::TCP.0;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a super-frame cannot be segmented. The frame should be dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// `gso_type` is not TCP (None or UDP).
    #[error("not a TCP super-frame")]
    NotTcp,
    /// `gso_size` is zero or the frame would make more than [`MAX_SEGMENTS`] segments.
    #[error("bad segment size {0}")]
    BadSegmentSize(u16),
    /// Headers missing, truncated or inconsistent with `gso_type` / `csum_start`.
    #[error("malformed super-frame headers")]
    Malformed,
    /// IPv6 extension headers, IPv4 fragments: not segmented here.
    #[error("unsupported super-frame headers")]
    Unsupported,
    /// The output buffer (or the pool's data room) is smaller than a segment.
    #[error("segment of {0} bytes does not fit the buffer")]
    NoRoom(usize),
    /// The pool ran out of packets half-way; the segments made so far were emitted.
    #[error("pool empty")]
    PoolEmpty,
}

/// A checked plan for cutting one TCP super-frame into segments. Build it with
/// [`TcpSegmenter::new`], then write segment `i` (for `i` in `0..segment_count()`) with
/// [`write_segment`](Self::write_segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegmenter {
    l3: usize,
    l4: usize,
    hdr_len: usize,
    mss: usize,
    payload: usize,
    v4: bool,
    seq: u32,
    ip_id: u16,
    flags: u8,
    pseudo: u64,
}

impl TcpSegmenter {
    /// Checks `frame` (an Ethernet frame, up to two VLAN tags) against its `meta` and plans
    /// its segmentation. `meta.gso_type` must be `TcpV4` or `TcpV6` and match the IP version,
    /// `meta.gso_size` is the MSS, and when `CSUM_NEEDED` is set `csum_start` must be the TCP
    /// header.
    pub fn new(frame: &[u8], meta: &Meta) -> Result<TcpSegmenter, GsoError> {
        let want_v4 = match meta.gso_type {
            GsoType::TcpV4 => true,
            GsoType::TcpV6 => false,
            _ => return Err(GsoError::NotTcp),
        };
        if meta.gso_size == 0 {
            return Err(GsoError::BadSegmentSize(0));
        }
        // brick-wire's VLAN policy (two tags at most) was already this segmenter's.
        let l2 = locate_l2(frame).map_err(|_| GsoError::Malformed)?;
        let (l3, ip) = (l2.l3, &frame[l2.l3..]);
        let (v4, l4, pseudo) = match l2.ethertype {
            ETH_P_IPV4 => {
                // The total length of a super-frame may be stale or zero: check the header only.
                let h = Ipv4::new_header(ip).map_err(|_| GsoError::Malformed)?;
                if h.proto() != IpProto::TCP {
                    return Err(GsoError::Malformed);
                }
                if h.is_fragment() {
                    return Err(GsoError::Unsupported);
                }
                (true, l3 + h.header_len(), csum_add(u64::from(IPPROTO_TCP), h.addrs()))
            }
            ETH_P_IPV6 => {
                let h = Ipv6::new_quoted(ip).map_err(|_| GsoError::Malformed)?;
                if h.next_header() != IpProto::TCP {
                    return Err(GsoError::Unsupported);
                }
                (false, l3 + 40, csum_add(u64::from(IPPROTO_TCP), h.addrs()))
            }
            _ => return Err(GsoError::Malformed),
        };
        if v4 != want_v4 {
            return Err(GsoError::Malformed);
        }
        if meta.offload.contains(OffloadFlags::CSUM_NEEDED) && usize::from(meta.csum_start) != l4 {
            return Err(GsoError::Malformed);
        }
        let tcp = Tcp::new_checked(&frame[l4..]).map_err(|_| GsoError::Malformed)?;
        let doff = tcp.header_len();
        let hdr_len = l4 + doff;
        let payload = frame.len() - hdr_len;
        let mss = usize::from(meta.gso_size);
        if payload.div_ceil(mss) > MAX_SEGMENTS {
            return Err(GsoError::BadSegmentSize(meta.gso_size));
        }
        let seq = tcp.seq();
        let ip_id = if v4 { be16(frame, l3 + 4).unwrap_or(0) } else { 0 };
        Ok(TcpSegmenter { l3, l4, hdr_len, mss, payload, v4, seq, ip_id, flags: tcp.flags(), pseudo })
    }

    /// Number of segments (at least 1: a super-frame without payload gives one frame).
    pub fn segment_count(&self) -> usize {
        self.payload.div_ceil(self.mss).max(1)
    }

    /// Length of the headers copied in front of every segment.
    pub fn header_len(&self) -> usize {
        self.hdr_len
    }

    /// Length in bytes of segment `i`.
    pub fn segment_len(&self, i: usize) -> usize {
        let start = i.saturating_mul(self.mss).min(self.payload);
        self.hdr_len + (self.payload - start).min(self.mss)
    }

    /// The largest segment (the first one).
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Writes segment `i` of `frame` (the frame this plan was made for) at the start of
    /// `out` and returns its length. Fails with [`GsoError::NoRoom`] when `out` is too small
    /// and [`GsoError::Malformed`] when `i` or `frame` do not match the plan.
    pub fn write_segment(&self, frame: &[u8], i: usize, out: &mut [u8]) -> Result<usize, GsoError> {
        if i >= self.segment_count() || frame.len() != self.hdr_len + self.payload {
            return Err(GsoError::Malformed);
        }
        let len = self.segment_len(i);
        if out.len() < len {
            return Err(GsoError::NoRoom(len));
        }
        let start = self.hdr_len + i * self.mss;
        let out = &mut out[..len];
        out[..self.hdr_len].copy_from_slice(&frame[..self.hdr_len]);
        out[self.hdr_len..].copy_from_slice(&frame[start..start + len - self.hdr_len]);
        let (l3, l4) = (self.l3, self.l4);
        if self.v4 {
            let total = (len - l3) as u16;
            out[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            out[l3 + 4..l3 + 6].copy_from_slice(&self.ip_id.wrapping_add(i as u16).to_be_bytes());
            out[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = csum_fold(csum_add(0, &out[l3..l4]));
            out[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = (len - l3 - 40) as u16;
            out[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let seq = self.seq.wrapping_add((i * self.mss) as u32);
        out[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = self.flags;
        if i + 1 < self.segment_count() {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            flags &= !TCP_CWR;
        }
        out[l4 + 13] = flags;
        out[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        let tcp_len = (len - l4) as u64;
        let c = csum_fold(csum_add(csum_add_value(self.pseudo, tcp_len), &out[l4..]));
        out[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        Ok(len)
    }
}

/// Cuts the super-frame `pkt` into segments taken from `pool` and hands each to `emit`, in
/// order. Segments keep `pkt`'s VNI and ingress port, and have their L2/L3/L4 offsets set and
/// no offload flags. Returns the number of segments emitted; on [`GsoError::PoolEmpty`] the
/// segments made before the pool ran dry were emitted already.
pub fn segment_into_pool(
    pkt: &Packet,
    pool: &PacketPool,
    mut emit: impl FnMut(Packet),
) -> Result<usize, GsoError> {
    let plan = TcpSegmenter::new(pkt.data(), pkt.meta())?;
    if plan.max_segment_len() > pool.data_room() {
        return Err(GsoError::NoRoom(plan.max_segment_len()));
    }
    let n = plan.segment_count();
    let src = pkt.meta();
    for i in 0..n {
        let Some(mut seg) = pool.alloc() else {
            return Err(GsoError::PoolEmpty);
        };
        let len = plan.segment_len(i);
        let buf = seg.append(len).map_err(|_| GsoError::NoRoom(len))?;
        plan.write_segment(pkt.data(), i, buf)?;
        let m = seg.meta_mut();
        *m = Meta {
            l2_offset: 0,
            l3_offset: plan.l3 as u16,
            l4_offset: plan.l4 as u16,
            vni: src.vni,
            ingress_port: src.ingress_port,
            ..Meta::default()
        };
        emit(seg);
    }
    Ok(n)
}

/// Software GRO: consecutive TCP segments of one flow merged back into one super-frame, so a
/// receiver (a VM behind a TAP) handles one 64 KiB frame instead of dozens of 1.5 KB ones.
///
/// [`TcpSegment::parse`] checks one frame (Ethernet without VLAN, IPv4 without options or
/// fragments, or IPv6 without extension headers, TCP with only ACK and maybe PSH set, some
/// payload, and a valid TCP checksum unless the metadata says it was verified or is partial);
/// [`TcpSegment::follows`] says whether a frame continues another's run; [`merge_header`]
/// rewrites the first frame's headers for the merged super-frame. Building the frame (copying
/// or gathering the payloads) is the caller's business; nothing here allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment {
    l3: usize,
    l4: usize,
    /// Length of the headers (Ethernet, IP, TCP with options).
    pub hdr_len: usize,
    /// Payload bytes.
    pub payload: usize,
    seq: u32,
    v4: bool,
    psh: bool,
}

/// Largest merged IP packet (leaves room below 64 KiB for the headers).
pub const MAX_MERGED_IP: usize = 65_000;

impl TcpSegment {
    /// Whether the segment has PSH set (it ends a run).
    pub fn psh(&self) -> bool {
        self.psh
    }

    /// Checks `frame` as a candidate for merging; `None` if it is not one.
    pub fn parse(frame: &[u8], meta: &Meta) -> Option<TcpSegment> {
        if meta.gso_type != GsoType::None || be16(frame, 12)? != ETH_P_IPV4 && be16(frame, 12)? != ETH_P_IPV6
        {
            return None;
        }
        let l3 = 14;
        let v4 = be16(frame, 12)? == ETH_P_IPV4;
        let (l4, ip_end, pseudo) = if v4 {
            if *frame.get(l3)? != 0x45 || frame.len() < l3 + 20 || frame[l3 + 9] != IPPROTO_TCP {
                return None;
            }
            if be16(frame, l3 + 6)? & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(be16(frame, l3 + 2)?);
            (l3 + 20, l3 + total, csum_add(u64::from(IPPROTO_TCP), &frame[l3 + 12..l3 + 20]))
        } else {
            if frame.len() < l3 + 40 || frame[l3] >> 4 != 6 || frame[l3 + 6] != IPPROTO_TCP {
                return None;
            }
            let plen = usize::from(be16(frame, l3 + 4)?);
            (l3 + 40, l3 + 40 + plen, csum_add(u64::from(IPPROTO_TCP), &frame[l3 + 8..l3 + 40]))
        };
        // No Ethernet padding or truncation: the IP length is the frame's.
        if ip_end != frame.len() {
            return None;
        }
        let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
        let flags = *frame.get(l4 + 13)?;
        if doff < 20 || frame.len() <= l4 + doff || flags & !TCP_PSH != 0x10 {
            return None;
        }
        let trusted = meta.offload.contains(OffloadFlags::CSUM_VERIFIED)
            || meta.offload.contains(OffloadFlags::CSUM_NEEDED);
        if !trusted
            && csum_fold(csum_add(csum_add_value(pseudo, (frame.len() - l4) as u64), &frame[l4..])) != 0
        {
            return None;
        }
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        Some(TcpSegment {
            l3,
            l4,
            hdr_len: l4 + doff,
            payload: frame.len() - l4 - doff,
            seq,
            v4,
            psh: flags & TCP_PSH != 0,
        })
    }

    /// Whether `next` (parsed from `next_frame`) continues the run that starts with `self`
    /// (parsed from `first_frame`) and whose last segment so far is `prev`, `merged` payload
    /// bytes long: same flow and headers (lengths, ids, checksums, sequence number and PSH
    /// aside), the next sequence number, every segment but the last as long as the first, no
    /// PSH but on the last, and the merged IP packet within [`MAX_MERGED_IP`].
    pub fn follows(
        &self,
        first_frame: &[u8],
        prev: &TcpSegment,
        merged: usize,
        next: &TcpSegment,
        next_frame: &[u8],
    ) -> bool {
        if next.v4 != self.v4 || next.hdr_len != self.hdr_len || prev.psh || prev.payload != self.payload {
            return false;
        }
        if next.payload > self.payload || next.seq != prev.seq.wrapping_add(prev.payload as u32) {
            return false;
        }
        if self.hdr_len - self.l3 + merged + next.payload > MAX_MERGED_IP {
            return false;
        }
        let (a, b) = (first_frame, next_frame);
        let (l3, l4, h) = (self.l3, self.l4, self.hdr_len);
        let ip_same = if self.v4 {
            a[..l3 + 2] == b[..l3 + 2]
                && a[l3 + 6..l3 + 10] == b[l3 + 6..l3 + 10]
                && a[l3 + 12..l4] == b[l3 + 12..l4]
        } else {
            a[..l3 + 4] == b[..l3 + 4] && a[l3 + 6..l4] == b[l3 + 6..l4]
        };
        ip_same
            && a[l4..l4 + 4] == b[l4..l4 + 4]
            && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13]
            && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16]
            && a[l4 + 18..h] == b[l4 + 18..h]
    }
}

/// Rewrites the headers of `first_frame` (the first segment of a run, parsed as `first`) for
/// the super-frame of `merged` payload bytes it starts: IP length (and IPv4 header checksum),
/// PSH if the run's last segment had it, and the TCP checksum field set to the pseudo-header
/// sum (a partial checksum). Returns the metadata to send it with: `CSUM_NEEDED` at the TCP
/// header, GSO type and size (the first segment's payload).
pub fn merge_header(first_frame: &mut [u8], first: &TcpSegment, merged: usize, psh: bool) -> Meta {
    let (l3, l4) = (first.l3, first.l4);
    let tcp_len = first.hdr_len - l4 + merged;
    let pseudo = if first.v4 {
        let total = (l4 - l3 + tcp_len) as u16;
        first_frame[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        first_frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = csum_fold(csum_add(0, &first_frame[l3..l4]));
        first_frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        csum_add(u64::from(IPPROTO_TCP), &first_frame[l3 + 12..l3 + 20])
    } else {
        first_frame[l3 + 4..l3 + 6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
        csum_add(u64::from(IPPROTO_TCP), &first_frame[l3 + 8..l3 + 40])
    };
    if psh {
        first_frame[l4 + 13] |= TCP_PSH;
    }
    let partial = !csum_fold(csum_add_value(pseudo, tcp_len as u64));
    first_frame[l4 + 16..l4 + 18].copy_from_slice(&partial.to_be_bytes());
    Meta {
        l2_offset: 0,
        l3_offset: l3 as u16,
        l4_offset: l4 as u16,
        offload: OffloadFlags::CSUM_NEEDED,
        csum_start: l4 as u16,
        csum_offset: 16,
        gso_size: first.payload as u16,
        gso_type: if first.v4 { GsoType::TcpV4 } else { GsoType::TcpV6 },
        ..Meta::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;
    use proptest::prelude::*;

    fn payload(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    fn tcp_frame(v6: bool, data: &[u8], flags: u8, vlan: bool) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let mut v = Vec::new();
        if v6 {
            let b = b.ipv6([0xfd; 16], [0xfe; 16], 64).tcp(40000, 5201, 0xffff_fff0, 1000);
            let b = if flags & TCP_FIN != 0 { b.fin() } else { b };
            let b = if flags & TCP_PSH != 0 { b.psh() } else { b };
            b.ack(7).write(&mut v, data).unwrap();
        } else {
            let b = b.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 5201, 0xffff_fff0, 1000);
            let b = if flags & TCP_FIN != 0 { b.fin() } else { b };
            let b = if flags & TCP_PSH != 0 { b.psh() } else { b };
            b.ack(7).write(&mut v, data).unwrap();
        }
        if vlan {
            v.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        }
        v
    }

    fn gso_meta(v6: bool, mss: u16, l4: usize) -> Meta {
        Meta {
            offload: OffloadFlags::CSUM_NEEDED,
            csum_start: l4 as u16,
            csum_offset: 16,
            gso_size: mss,
            gso_type: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
            vni: Some(9),
            ..Meta::default()
        }
    }

    /// Segments `frame` and checks every segment with etherparse (lengths, checksums,
    /// sequence numbers, flags); returns the reassembled payload.
    fn check_segments(frame: &[u8], meta: &Meta) -> Vec<u8> {
        let plan = TcpSegmenter::new(frame, meta).unwrap();
        let mut out = vec![0u8; 70_000];
        let mut joined = Vec::new();
        let orig = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::TransportSlice::Tcp(otcp)) = orig.transport else { panic!() };
        let n = plan.segment_count();
        for i in 0..n {
            let len = plan.write_segment(frame, i, &mut out).unwrap();
            assert!(len <= plan.header_len() + meta.gso_size as usize);
            let seg = etherparse::SlicedPacket::from_ethernet(&out[..len]).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = seg.transport else { panic!("no tcp") };
            let pl = tcp.payload();
            assert_eq!(tcp.sequence_number(), otcp.sequence_number().wrapping_add(joined.len() as u32));
            assert_eq!(tcp.fin(), otcp.fin() && i == n - 1);
            assert_eq!(tcp.psh(), otcp.psh() && i == n - 1);
            match seg.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let h = ip.header();
                    assert_eq!(h.total_len() as usize, len - plan.l3);
                    assert_eq!(checksum_of(h.slice()), 0, "IPv4 header checksum");
                    let hdr = h.to_header();
                    assert_eq!(tcp.to_header().calc_checksum_ipv4(&hdr, pl).unwrap(), tcp.checksum());
                    let oid = u16::from_be_bytes([frame[plan.l3 + 4], frame[plan.l3 + 5]]);
                    assert_eq!(h.identification(), oid.wrapping_add(i as u16));
                }
                etherparse::NetSlice::Ipv6(ip) => {
                    let h = ip.header();
                    assert_eq!(h.payload_length() as usize, len - plan.l3 - 40);
                    let hdr = h.to_header();
                    assert_eq!(tcp.to_header().calc_checksum_ipv6(&hdr, pl).unwrap(), tcp.checksum());
                }
                _ => panic!("no ip"),
            }
            joined.extend_from_slice(pl);
        }
        joined
    }

    fn checksum_of(b: &[u8]) -> u16 {
        crate::checksum::checksum(b)
    }

    #[test]
    fn segments_reassemble_ipv4_and_ipv6() {
        for v6 in [false, true] {
            for vlan in [false, true] {
                let data = payload(10_000, 3);
                let frame = tcp_frame(v6, &data, TCP_PSH | TCP_FIN, vlan);
                let l4 = if v6 { 54 } else { 34 } + if vlan { 4 } else { 0 };
                let meta = gso_meta(v6, 1398, l4);
                let plan = TcpSegmenter::new(&frame, &meta).unwrap();
                assert_eq!(plan.segment_count(), 8);
                assert_eq!(check_segments(&frame, &meta), data);
            }
        }
    }

    #[test]
    fn into_pool_keeps_vni_and_clears_offloads() {
        let pool = PacketPool::new(PoolConfig { count: 64, ..PoolConfig::default() }).unwrap();
        let data = payload(5000, 1);
        let mut pkt = Packet::from_slice(&tcp_frame(false, &data, 0, false));
        *pkt.meta_mut() = gso_meta(false, 1000, 34);
        let mut segs = Vec::new();
        assert_eq!(segment_into_pool(&pkt, &pool, |p| segs.push(p)), Ok(5));
        assert!(segs.iter().all(|s| s.meta().vni == Some(9)
            && s.meta().offload == OffloadFlags::NONE
            && s.meta().gso_type == GsoType::None
            && s.meta().l4_offset == 34
            && s.len() == 54 + 1000));
        let joined: Vec<u8> = segs.iter().flat_map(|s| s.data()[54..].to_vec()).collect();
        assert_eq!(joined, data);
        drop(segs);
        // A pool too small for the segments, then an empty pool.
        let tiny = PacketPool::new(PoolConfig { count: 2, data_room: 512, ..PoolConfig::default() }).unwrap();
        assert_eq!(segment_into_pool(&pkt, &tiny, |_| {}), Err(GsoError::NoRoom(1054)));
        let two = PacketPool::new(PoolConfig { count: 2, ..PoolConfig::default() }).unwrap();
        let mut kept = Vec::new();
        assert_eq!(segment_into_pool(&pkt, &two, |p| kept.push(p)), Err(GsoError::PoolEmpty));
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let frame = tcp_frame(false, &payload(3000, 0), 0, false);
        let good = gso_meta(false, 1000, 34);
        assert!(TcpSegmenter::new(&frame, &good).is_ok());
        let cases = [
            (Meta { gso_type: GsoType::None, ..good }, GsoError::NotTcp),
            (Meta { gso_type: GsoType::Udp, ..good }, GsoError::NotTcp),
            (Meta { gso_size: 0, ..good }, GsoError::BadSegmentSize(0)),
            (Meta { gso_size: 1, ..good }, GsoError::BadSegmentSize(1)),
            (Meta { gso_type: GsoType::TcpV6, ..good }, GsoError::Malformed),
            (Meta { csum_start: 30, ..good }, GsoError::Malformed),
        ];
        for (m, e) in cases {
            assert_eq!(TcpSegmenter::new(&frame, &m), Err(e), "{m:?}");
        }
        assert_eq!(TcpSegmenter::new(&frame[..40], &good), Err(GsoError::Malformed));
        let mut frag = frame.clone();
        frag[20] = 0x20; // more fragments
        assert_eq!(TcpSegmenter::new(&frag, &good), Err(GsoError::Unsupported));
        let plan = TcpSegmenter::new(&frame, &good).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(plan.write_segment(&frame, 0, &mut small), Err(GsoError::NoRoom(1054)));
        assert_eq!(plan.write_segment(&frame, 3, &mut [0u8; 2000]), Err(GsoError::Malformed));
        assert_eq!(plan.write_segment(&frame[..100], 0, &mut [0u8; 2000]), Err(GsoError::Malformed));
    }

    /// Segments `frame`, merges the segments back with `TcpSegment`/`merge_header`, completes
    /// the partial checksum and returns the rebuilt frame and its metadata.
    fn resegment_and_merge(frame: &[u8], meta: &Meta) -> (Vec<u8>, Meta, usize) {
        let plan = TcpSegmenter::new(frame, meta).unwrap();
        let segs: Vec<Vec<u8>> = (0..plan.segment_count())
            .map(|i| {
                let mut b = vec![0u8; plan.segment_len(i)];
                plan.write_segment(frame, i, &mut b).unwrap();
                b
            })
            .collect();
        let parsed: Vec<TcpSegment> =
            segs.iter().map(|s| TcpSegment::parse(s, &Meta::default()).expect("segment accepted")).collect();
        let first = parsed[0];
        let mut merged = first.payload;
        let mut n = 1;
        while n < segs.len() && first.follows(&segs[0], &parsed[n - 1], merged, &parsed[n], &segs[n]) {
            merged += parsed[n].payload;
            n += 1;
        }
        let mut out = segs[0].clone();
        let m = merge_header(&mut out, &first, merged, parsed[n - 1].psh);
        for s in &segs[1..n] {
            out.extend_from_slice(&s[first.hdr_len..]);
        }
        assert!(crate::checksum::complete_partial(&mut out, m.csum_start.into(), m.csum_offset.into()));
        (out, m, n)
    }

    #[test]
    fn merged_segments_give_back_the_super_frame() {
        for v6 in [false, true] {
            let data = payload(9000, 5);
            let frame = tcp_frame(v6, &data, TCP_PSH, false);
            let meta = gso_meta(v6, 1400, if v6 { 54 } else { 34 });
            let (out, m, n) = resegment_and_merge(&frame, &meta);
            assert_eq!(n, 7, "every segment merged");
            assert_eq!(out, frame, "same bytes, checksum included");
            assert_eq!((m.gso_size, m.gso_type), (1400, if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 }));
        }
    }

    #[test]
    fn segments_that_do_not_continue_a_run_are_not_merged() {
        let data = payload(3000, 1);
        let frame = tcp_frame(false, &data, 0, false);
        let plan = TcpSegmenter::new(&frame, &gso_meta(false, 1000, 34)).unwrap();
        let seg = |i: usize| {
            let mut b = vec![0u8; plan.segment_len(i)];
            plan.write_segment(&frame, i, &mut b).unwrap();
            b
        };
        let (a, b, c) = (seg(0), seg(1), seg(2));
        let m = Meta::default();
        let (pa, pb, pc) = (
            TcpSegment::parse(&a, &m).unwrap(),
            TcpSegment::parse(&b, &m).unwrap(),
            TcpSegment::parse(&c, &m).unwrap(),
        );
        assert!(pa.follows(&a, &pa, 1000, &pb, &b));
        assert!(!pa.follows(&a, &pa, 1000, &pc, &c), "sequence gap");
        let mut other = b.clone();
        other[36] ^= 1; // another source port
        let po = TcpSegment::parse(&other, &Meta { offload: OffloadFlags::CSUM_VERIFIED, ..m }).unwrap();
        assert!(!pa.follows(&a, &pa, 1000, &po, &other), "another flow");
        let mut bad = b.clone();
        bad[60] ^= 0xff;
        assert_eq!(TcpSegment::parse(&bad, &m), None, "bad checksum");
        let mut syn = b.clone();
        syn[47] |= 0x02;
        assert_eq!(TcpSegment::parse(&syn, &Meta { offload: OffloadFlags::CSUM_VERIFIED, ..m }), None, "SYN");
        let mut padded = b.clone();
        padded.push(0);
        assert_eq!(TcpSegment::parse(&padded, &m), None, "frame longer than its IP packet");
        assert_eq!(TcpSegment::parse(&b[..60], &m), None);
        assert_eq!(TcpSegment::parse(&frame, &gso_meta(false, 1000, 34)), None, "already a super-frame");
    }

    proptest! {
        #[test]
        fn any_size_and_mss_reassembles(len in 0usize..20_000, mss in 88u16..9000, v6: bool, seed: u8, flags in 0u8..16) {
            let data = payload(len, seed);
            let frame = tcp_frame(v6, &data, flags & (TCP_FIN | TCP_PSH), false);
            let meta = gso_meta(v6, mss, if v6 { 54 } else { 34 });
            prop_assert_eq!(check_segments(&frame, &meta), data);
        }

        #[test]
        fn segment_then_merge_is_identity(len in 1usize..60_000, mss in 536u16..9000, v6: bool, seed: u8, psh: bool) {
            let data = payload(len, seed);
            let frame = tcp_frame(v6, &data, if psh { TCP_PSH } else { 0 }, false);
            let meta = gso_meta(v6, mss, if v6 { 54 } else { 34 });
            let (out, _, n) = resegment_and_merge(&frame, &meta);
            prop_assert_eq!(n, len.div_ceil(mss as usize));
            prop_assert_eq!(out, frame);
        }

        #[test]
        fn random_frames_never_panic_the_merger(a in proptest::collection::vec(any::<u8>(), 0..200), b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let m = Meta { offload: OffloadFlags::CSUM_VERIFIED, ..Meta::default() };
            if let (Some(pa), Some(pb)) = (TcpSegment::parse(&a, &m), TcpSegment::parse(&b, &m)) {
                let _ = pa.follows(&a, &pa, pa.payload, &pb, &b);
                let mut a2 = a.clone();
                let _ = merge_header(&mut a2, &pa, pa.payload, false);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), mss: u16, start: u16, v6: bool) {
            let mut m = gso_meta(v6, mss, start as usize);
            m.csum_start = start;
            if let Ok(plan) = TcpSegmenter::new(&bytes, &m) {
                let mut out = vec![0u8; 400];
                for i in 0..plan.segment_count() {
                    prop_assert!(plan.write_segment(&bytes, i, &mut out).is_ok());
                }
            }
        }
    }
}

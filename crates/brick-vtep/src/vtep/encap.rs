//! Encapsulation: east frames to VXLAN over the underlay (fast path, GSO, slow path).

use super::*;

#[inline(always)]
pub(super) fn rd64(d: &[u8], at: usize) -> u64 {
    match d.get(at..at + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

#[inline(always)]
pub(super) fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(23)
}

/// Offsets in an untagged inner frame that [`flow_hash`] reads, from brick-wire's field
/// ranges: it hashes fixed 8-byte words rather than building views, one frame at a time on
/// the encapsulation fast path.
mod hashed {
    use super::{v4_field, v6_field, ETH_LEN};
    /// IPv4: version/IHL byte, protocol, the two addresses (8 bytes), the header's end.
    pub const V4_VER_IHL: usize = ETH_LEN + v4_field::VER_IHL;
    pub const V4_PROTO: usize = ETH_LEN + v4_field::PROTO;
    pub const V4_ADDRS: usize = ETH_LEN + v4_field::SRC.start;
    pub const V4_END: usize = ETH_LEN + v4_field::LEN;
    /// IPv6: next header, the two addresses (32 bytes), the fixed header's end (ports).
    pub const V6_NEXT: usize = ETH_LEN + v6_field::NEXT_HEADER;
    pub const V6_ADDRS: usize = ETH_LEN + v6_field::SRC.start;
    pub const V6_L4: usize = ETH_LEN + v6_field::LEN;
}

/// The 4 bytes of ports at `at`, with the protocol above them.
#[inline(always)]
fn ports_and_proto(d: &[u8], at: usize, proto: u8) -> Option<u64> {
    let p = d.get(at..at + 4)?;
    Some(u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]])) | u64::from(proto) << 32)
}

/// A hash of the inner flow (MACs, addresses, protocol, ports) for the outer UDP source port
/// and IPv6 flow label (RFC 7348 §5: entropy for ECMP). Frames of one flow always hash alike.
#[inline]
pub fn flow_hash(d: &[u8]) -> u64 {
    use hashed::*;
    let Some(et) = ethertype(d) else { return 0 };
    let mut h = mix(rd64(d, 0), rd64(d, 6));
    let is_l4 = |proto| proto == PROTO_TCP || proto == PROTO_UDP;
    if et == ETH_IPV4 && d.len() >= V4_END {
        h = mix(h, rd64(d, V4_ADDRS));
        let proto = d[V4_PROTO];
        let l4 = ETH_LEN + usize::from(d[V4_VER_IHL] & 0xf) * 4;
        if let Some(p) = ports_and_proto(d, l4, proto).filter(|_| is_l4(proto)) {
            h = mix(h, p);
        }
    } else if et == ETH_IPV6 && d.len() >= V6_L4 {
        let a = V6_ADDRS;
        h = mix(mix(mix(mix(h, rd64(d, a)), rd64(d, a + 8)), rd64(d, a + 16)), rd64(d, a + 24));
        let proto = d[V6_NEXT];
        if let Some(p) = ports_and_proto(d, V6_L4, proto).filter(|_| is_l4(proto)) {
            h = mix(h, p);
        }
    }
    h ^ (h >> 31)
}

/// The UDP source port for a flow hash: 49152–65535 (RFC 7348 §5 recommends the dynamic range).
#[inline]
pub fn source_port(hash: u64) -> u16 {
    0xc000 | (hash >> 50) as u16
}

/// Completes a partial (virtio `NEEDS_CSUM`) L4 checksum in software before encapsulation,
/// so the tunnel carries a valid inner frame.
pub(super) fn complete_inner_csum(pkt: &mut Packet) {
    let m = *pkt.meta();
    let _ = brick_core::checksum::complete_partial(pkt.data_mut(), m.csum_start.into(), m.csum_offset.into());
    pkt.meta_mut().offload.remove(OffloadFlags::CSUM_NEEDED);
}

/// What the encapsulation of one east burst shares: its VNI, port, clock and MTU limit,
/// and the last known-unicast lookup (same time, same table) to skip repeated ones.
pub(super) struct EncapCtx<'a> {
    /// State of the burst's VNI, taken out of the VTEP for the burst.
    pub(super) st: &'a mut VniState,
    /// East port the burst came from (ICMP too-big goes back there).
    pub(super) port: PortId,
    /// Time of the burst.
    pub(super) now: Timestamp,
    /// Largest inner frame that fits the underlay MTU.
    pub(super) max_inner: usize,
    /// Last destination MAC looked up and where it lives.
    pub(super) memo: Option<(u64, Remote)>,
}

impl EncapCtx<'_> {
    /// Where `dst` (a unicast MAC) lives, through the memo.
    #[inline(always)]
    fn lookup(&mut self, dst: u64) -> Option<Remote> {
        let r = match self.memo {
            Some((m, r)) if m == dst => r,
            _ => self.st.fdb.lookup(dst, self.now)?,
        };
        self.memo = Some((dst, r));
        Some(r)
    }
}

/// Prepends room for the outer headers (an IP header of `ip_len`), points the metadata at
/// them and writes the Ethernet header (`macs`: destination, source); returns the outer
/// headers for the caller to fill from byte 14. None without headroom.
#[inline(always)]
fn prepend_outer(
    pkt: &mut Packet,
    ip_len: usize,
    vni: u32,
    macs: [[u8; 6]; 2],
    ethertype: u16,
) -> Option<&mut [u8]> {
    let overhead = ETH_LEN + ip_len + UDP_LEN + VXLAN_LEN;
    pkt.prepend(overhead).ok()?;
    // Metadata first, header bytes after: the packet struct is moved right after the
    // encapsulation, and late narrow stores into it would stall that move (store-forwarding).
    let m = pkt.meta_mut();
    m.l2_offset = 0;
    m.l3_offset = ETH_LEN as u16;
    m.l4_offset = (ETH_LEN + ip_len) as u16;
    m.vni = Some(vni);
    let h = &mut pkt.data_mut()[..overhead];
    h[0..6].copy_from_slice(&macs[0]);
    h[6..12].copy_from_slice(&macs[1]);
    h[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Some(h)
}

impl Vtep {
    /// Prepends the outer headers (dst MAC `dmac`) to `pkt` for `dst_ip`.
    #[inline(always)]
    pub(super) fn encap(
        &mut self,
        pkt: &mut Packet,
        vni: u32,
        dst_ip: IpAddr,
        dmac: [u8; 6],
        hash: u64,
    ) -> bool {
        let inner = pkt.len();
        let sport = source_port(hash);
        let dport = self.cfg.udp_port;
        let smac = self.cfg.local_mac;
        match dst_ip {
            IpAddr::V4(dst) if !self.v6 => {
                self.ip_id = self.ip_id.wrapping_add(1);
                let id = self.ip_id;
                let total = (inner + IPV4_LEN + UDP_LEN + VXLAN_LEN) as u16;
                let d = dst.octets();
                let acc = self.csum_v4_base
                    + u64::from(total)
                    + u64::from(id)
                    + u64::from(u16::from_be_bytes([d[0], d[1]]))
                    + u64::from(u16::from_be_bytes([d[2], d[3]]));
                let csum = csum_fold(acc);
                let src = self.local4.octets();
                let Some(h) = prepend_outer(pkt, IPV4_LEN, vni, [dmac, smac], ETH_IPV4) else {
                    return false;
                };
                let ip = &mut h[14..34];
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[4..6].copy_from_slice(&id.to_be_bytes());
                ip[6] = 0x40;
                ip[7] = 0;
                ip[8] = self.cfg.ttl;
                ip[9] = PROTO_UDP;
                ip[10..12].copy_from_slice(&csum.to_be_bytes());
                ip[12..16].copy_from_slice(&src);
                ip[16..20].copy_from_slice(&d);
                let udp = &mut h[34..42];
                udp[0..2].copy_from_slice(&sport.to_be_bytes());
                udp[2..4].copy_from_slice(&dport.to_be_bytes());
                udp[4..6].copy_from_slice(&(total - IPV4_LEN as u16).to_be_bytes());
                udp[6] = 0;
                udp[7] = 0;
                write_vxlan(&mut h[42..50], vni);
            }
            IpAddr::V6(dst) if self.v6 => {
                let plen = (inner + UDP_LEN + VXLAN_LEN) as u16;
                let src = self.local6.octets();
                let d = dst.octets();
                let flow = (hash as u32) & 0x000f_ffff;
                // The NIC sums the frame when it can (the inner checksum, if it was partial,
                // was completed before: one partial checksum per frame).
                let partial = self.cfg.outer_csum_offload
                    && pkt.meta().gso_type == GsoType::None
                    && !pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED);
                let Some(h) = prepend_outer(pkt, IPV6_LEN, vni, [dmac, smac], ETH_IPV6) else {
                    return false;
                };
                h[14..18].copy_from_slice(&(0x6000_0000 | flow).to_be_bytes());
                h[18..20].copy_from_slice(&plen.to_be_bytes());
                h[20] = PROTO_UDP;
                h[21] = self.cfg.ttl;
                h[22..38].copy_from_slice(&src);
                h[38..54].copy_from_slice(&d);
                h[54..56].copy_from_slice(&sport.to_be_bytes());
                h[56..58].copy_from_slice(&dport.to_be_bytes());
                h[58..60].copy_from_slice(&plen.to_be_bytes());
                h[60] = 0;
                h[61] = 0;
                write_vxlan(&mut h[62..70], vni);
                let acc = csum_add(csum_add_value(self.csum_v6_src, u64::from(plen)), &d);
                if partial {
                    // The pseudo-header sum, not complemented (what a NIC adds the rest to).
                    h[60..62].copy_from_slice(&(!csum_fold(acc)).to_be_bytes());
                    // After the prepend, which moves the offsets the metadata holds.
                    let m = pkt.meta_mut();
                    m.offload.insert(OffloadFlags::CSUM_NEEDED);
                    m.csum_start = (ETH_LEN + IPV6_LEN) as u16;
                    m.csum_offset = 6;
                    return true;
                }
                let data = pkt.data_mut();
                let mut c = csum_fold(csum_add(acc, &data[54..]));
                if c == 0 {
                    c = 0xffff;
                }
                data[60..62].copy_from_slice(&c.to_be_bytes());
            }
            _ => return false,
        }
        true
    }

    /// Encapsulates `pkt` towards `dst_ip` and sends it (resolving the next hop if needed).
    #[inline(always)]
    pub(super) fn send(
        &mut self,
        cx: &EncapCtx<'_>,
        mut pkt: Packet,
        dst_ip: IpAddr,
        mac: Option<[u8; 6]>,
        hash: u64,
        out: &mut Output<'_>,
    ) {
        let vni = cx.st.vni;
        let dmac = match (mac, dst_ip) {
            (Some(m), _) => Some(m),
            (None, IpAddr::V4(g)) if g.is_multicast() => Some(mcast_mac_v4(g)),
            (None, IpAddr::V6(g)) if g.is_multicast() => Some(mcast_mac_v6(g)),
            (None, _) => None,
        };
        if !self.encap(&mut pkt, vni, dst_ip, dmac.unwrap_or([0; 6]), hash) {
            out.drop(pkt, VtepDrop::Headroom.index());
            return;
        }
        if dmac.is_some() {
            self.counters.tx_outer += 1;
            out.emit(Side::West, 0, pkt);
        } else {
            self.send_resolving(pkt, dst_ip, cx.now, out);
        }
    }

    pub(super) fn too_big(&mut self, port: PortId, pkt: Packet, out: &mut Output<'_>) {
        let overhead = if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        let inner_mtu = usize::from(self.cfg.mtu).saturating_sub(overhead);
        let d = pkt.data();
        // A super-frame reaches here only when its segments (gso_size + headers) are too
        // big: the sender's MSS is the problem, so it gets the same answer as a plain frame.
        let dont_frag =
            || d.get(ETH_LEN..).and_then(|ip| Ipv4::new_header(ip).ok()).is_some_and(|ip| ip.dont_frag());
        let built = match ethertype(d) {
            Some(ETH_IPV4) if dont_frag() => {
                build_frag_needed(&mut self.scratch, d, inner_mtu.min(65535) as u16)
            }
            Some(ETH_IPV6) => build_packet_too_big(&mut self.scratch, d, inner_mtu as u32),
            _ => None,
        };
        out.drop(pkt, VtepDrop::TooBig.index());
        if built.is_some() {
            self.counters.icmp_too_big += 1;
            self.emit_scratch(Side::East, port, out);
        }
    }

    /// Encapsulates `pkt` in place if it is known unicast behind a VTEP whose MAC was learnt,
    /// fits the MTU and needs no checksum completion; otherwise leaves it untouched and
    /// returns false.
    #[inline(always)]
    ///
    /// It takes the burst's state as plain arguments, not an [`EncapCtx`]: the context is
    /// lent to the out-of-line slow paths, so the fast loop would keep it in memory and
    /// reload it per frame (a measured ~3 cycles/packet on IPv4).
    pub(super) fn encap_fast(
        &mut self,
        st: &mut VniState,
        pkt: &mut Packet,
        now: Timestamp,
        max_inner: usize,
        memo: &mut Option<(u64, Remote)>,
    ) -> bool {
        let len = pkt.len();
        if !(ETH_LEN..=max_inner).contains(&len) || pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            return false;
        }
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        if is_group(dst) {
            return false;
        }
        let r = match *memo {
            Some((m, r)) if m == dst => r,
            _ => match st.fdb.lookup(dst, now) {
                Some(r) => r,
                None => return false,
            },
        };
        *memo = Some((dst, r));
        let Some(mac) = r.mac else { return false };
        let hash = flow_hash(d);
        if !self.encap(pkt, st.vni, r.ip, mac, hash) {
            return false;
        }
        st.counters.encap_pkts += 1;
        st.counters.encap_bytes += len as u64;
        true
    }

    #[inline]
    pub(super) fn encap_burst(&mut self, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let Some(mut st) = self.vnis.get_mut(port as usize).and_then(Option::take) else {
            for p in pkts.drain() {
                out.drop(p, VtepDrop::NoVni.index());
            }
            return;
        };
        let max_inner = usize::from(self.cfg.mtu) + ETH_LEN - if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        let now = out.now();
        // Last known-unicast lookup of this burst (same time, same table).
        let mut memo: Option<(u64, Remote)> = None;
        // Fast path: leading frames that are known unicast behind a VTEP whose MAC was learnt
        // are encapsulated in place; when the whole burst is like that it moves on at once.
        let mut fast = 0;
        for pkt in pkts.iter_mut() {
            if !self.encap_fast(&mut st, pkt, now, max_inner, &mut memo) {
                break;
            }
            fast += 1;
        }
        self.counters.tx_outer += fast as u64;
        if fast == pkts.len() {
            out.emit_all(Side::West, 0, pkts);
            self.vnis[port as usize] = Some(st);
            return;
        }
        let mut cx = EncapCtx { st: &mut st, port, now, max_inner, memo };
        for (i, pkt) in pkts.drain().enumerate() {
            if i < fast {
                out.emit(Side::West, 0, pkt);
                continue;
            }
            if pkt.meta().gso_type != GsoType::None {
                self.encap_gso(&mut cx, pkt, out);
            } else {
                self.encap_slow(&mut cx, pkt, out);
            }
        }
        self.vnis[port as usize] = Some(st);
    }

    /// A super-frame from a VM. Its MTU check uses the segment size (`gso_size` + headers),
    /// not its length. With `tunnel_gso` (IPv4 underlay) and a known unicast destination it
    /// is encapsulated whole, partial checksum and GSO metadata kept, for the underlay NIC
    /// (or the kernel behind it) to segment at the very end; otherwise it is cut here into
    /// segments from the pool, each encapsulated as an ordinary frame.
    pub(super) fn encap_gso(&mut self, cx: &mut EncapCtx<'_>, pkt: Packet, out: &mut Output<'_>) {
        let plan = match brick_core::gso::TcpSegmenter::new(pkt.data(), pkt.meta()) {
            Ok(p) => p,
            Err(_) => return out.drop(pkt, VtepDrop::BadGso.index()),
        };
        if plan.max_segment_len() > cx.max_inner {
            return self.too_big(cx.port, pkt, out);
        }
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        let whole = self.cfg.tunnel_gso
            && !self.v6
            && plan.segment_count() > 1
            && pkt.len() - ETH_LEN + OVERHEAD_V4 <= usize::from(u16::MAX)
            && !is_group(dst);
        if whole {
            if let Some(r) = cx.lookup(dst) {
                let hash = flow_hash(d);
                cx.st.counters.encap_pkts += 1;
                cx.st.counters.encap_bytes += pkt.len() as u64;
                self.counters.gso_tx += 1;
                self.send(cx, pkt, r.ip, r.mac, hash, out);
                return;
            }
        }
        let mut segs = std::mem::take(&mut self.gso_segs);
        let made = brick_core::gso::segment_into_pool(&pkt, &self.pool, |seg| segs.push(seg));
        match made {
            Ok(n) => {
                self.counters.gso_segmented += 1;
                self.counters.gso_segments += n as u64;
            }
            Err(brick_core::gso::GsoError::PoolEmpty) => out.count_drop(VtepDrop::Pool.index(), 1),
            Err(_) => out.count_drop(VtepDrop::BadGso.index(), 1),
        }
        drop(pkt);
        for seg in segs.drain(..) {
            self.encap_slow(cx, seg, out);
        }
        self.gso_segs = segs;
    }

    /// The full encapsulation path for one ordinary frame: MTU, checksum completion, known
    /// unicast or flooding.
    pub(super) fn encap_slow(&mut self, cx: &mut EncapCtx<'_>, mut pkt: Packet, out: &mut Output<'_>) {
        if pkt.len() < ETH_LEN {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        if pkt.len() > cx.max_inner {
            return self.too_big(cx.port, pkt, out);
        }
        if pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            complete_inner_csum(&mut pkt);
        }
        // ARP/ND suppression: only frames bound to be flooded, only while there are bindings.
        if !cx.st.proxy.is_empty() && pkt.data()[0] & 1 != 0 {
            pkt = match self.suppress(cx, pkt, out) {
                Some(p) => p,
                None => return,
            };
        }
        cx.st.counters.encap_pkts += 1;
        cx.st.counters.encap_bytes += pkt.len() as u64;
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        let hash = flow_hash(d);
        if !is_group(dst) {
            if let Some(r) = cx.lookup(dst) {
                self.send(cx, pkt, r.ip, r.mac, hash, out);
                return;
            }
        }
        // Broadcast, unknown unicast, multicast: the group and the flood list.
        let (group, n) = (cx.st.group, usize::from(cx.st.group.is_some()) + cx.st.flood.len());
        if n == 0 {
            return out.drop(pkt, VtepDrop::NoTarget.index());
        }
        cx.st.counters.flooded += 1;
        for i in 0..n - 1 {
            let target = match group {
                Some(g) if i == 0 => g,
                Some(_) => cx.st.flood[i - 1],
                None => cx.st.flood[i],
            };
            match pkt.copy_into(&self.pool) {
                Some(copy) => {
                    self.counters.replicas += 1;
                    self.send(cx, copy, target, None, hash, out);
                }
                None => out.count_drop(VtepDrop::Pool.index(), 1),
            }
        }
        let last = cx.st.flood.last().copied().or(group).unwrap_or(self.cfg.local_ip);
        self.send(cx, pkt, last, None, hash, out);
    }
}

//! Transmitting: checksum and TSO offload requests, software segmentation where the port
//! cannot, zero-copy sends of packets still in their mbuf.

use super::*;

/// Where the IP header starts (`l3_offset`, or right after an untagged Ethernet header when
/// unset) and its length up to the L4 header at `l4`; `None` if shorter than 20 bytes or
/// beyond what the mbuf's `l2_len` (7 bits) and `l3_len` (9 bits) fields hold.
pub(super) fn l3_span(l3_offset: u16, l4: u16) -> Option<(u16, u16)> {
    let l3 = if l3_offset != 0 { l3_offset } else { 14 };
    let l3_len = l4.checked_sub(l3).filter(|&n| (20..=511).contains(&n))?;
    (l3 <= 127).then_some((l3, l3_len))
}

/// The offload request for a frame whose TCP or UDP checksum is partial (the field at
/// `csum_start + csum_offset` holds the pseudo-header sum): `(ol_flags, l2_len, l3_len)`, or
/// `None` when the frame is not plain IPv4/IPv6 + TCP/UDP as described (then the checksum is
/// completed in software).
pub(super) fn l4_csum_offload(
    frame: &[u8],
    l3_offset: u16,
    csum_start: u16,
    csum_offset: u16,
) -> Option<(u64, u16, u16)> {
    use sys::mbuf_flags::*;
    let (l3, l3_len) = l3_span(l3_offset, csum_start)?;
    if usize::from(csum_start) + usize::from(csum_offset) + 2 > frame.len() {
        return None;
    }
    let ip = match frame.get(usize::from(l3))? >> 4 {
        4 => TX_IPV4,
        6 => TX_IPV6,
        _ => return None,
    };
    let l4 = match csum_offset {
        16 => TX_TCP_CKSUM,
        6 => TX_UDP_CKSUM,
        _ => return None,
    };
    Some((ip | l4, l3, l3_len))
}

impl DpdkNic {
    pub(super) fn process_burst(
        &mut self,
        _side: Side,
        _port: PortId,
        pkts: &mut Burst,
        out: &mut Output<'_>,
    ) {
        if self.register_thread {
            EAL_THREAD.with(|_| {});
        }
        let max_frame = self.max_frame;
        if pkts.iter().any(|p| p.meta().gso_type != GsoType::None && p.len() > max_frame) {
            self.transmit_segmenting(pkts, out);
        } else {
            self.transmit(pkts, out);
        }
    }

    /// Transmits a burst holding TCP super-frames: each goes whole to a port that segments
    /// TCP (TSO, as a chain of mbufs), or is cut into MSS-sized segments here (in pool
    /// packets, checksums completed); everything leaves in order, in bursts of at most 64.
    #[cold]
    pub(super) fn transmit_segmenting(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let mut chunk = std::mem::take(&mut self.segmented);
        let mut segs = std::mem::take(&mut self.gso_segs);
        for pkt in pkts.drain() {
            if pkt.meta().gso_type == GsoType::None || pkt.len() <= self.max_frame {
                segs.push(pkt);
            } else if let Some(req) = self.tx_tso.then(|| tso_request(&pkt)).flatten() {
                // The port segments it: what was queued before it leaves first.
                if !chunk.is_empty() {
                    self.transmit(&mut chunk, out);
                }
                if !self.send_tso(&pkt, req, out) {
                    // No mbufs for the chain: cut it here instead.
                    self.segment_in_software(&pkt, &mut segs, out);
                }
            } else {
                self.segment_in_software(&pkt, &mut segs, out);
            }
            for seg in segs.drain(..) {
                if chunk.room() == 0 {
                    self.transmit(&mut chunk, out);
                }
                let _ = chunk.push(seg);
            }
        }
        if !chunk.is_empty() {
            self.transmit(&mut chunk, out);
        }
        self.segmented = chunk;
        self.gso_segs = segs;
    }

    /// Cuts a TCP super-frame into segments from the brick's pool, appended to `segs`.
    fn segment_in_software(&mut self, pkt: &Packet, segs: &mut Vec<Packet>, out: &mut Output<'_>) {
        match brick_core::gso::segment_into_pool(pkt, &self.pool, |seg| segs.push(seg)) {
            Ok(n) => self.counters.tx_segmented.add(n as u64),
            Err(brick_core::gso::GsoError::PoolEmpty) => {
                count_drop(&self.counters, out, NicDrop::RxPoolEmpty, 1)
            }
            Err(_) => count_drop(&self.counters, out, NicDrop::BadOffload, 1),
        }
    }

    /// Sends a super-frame whole as a chain of mbufs, the port segmenting it (TSO). Returns
    /// false when the mbuf pool is short (nothing sent); a full ring or a refusal is counted.
    fn send_tso(&mut self, pkt: &Packet, req: TsoRequest, out: &mut Output<'_>) -> bool {
        let mut refused = 0u16;
        // SAFETY: `pkt`'s bytes stay alive and unchanged for the call, which copies them into
        // mbufs of the port's pool; the queue is ours.
        let rc = unsafe {
            sys::brick_tx_tso(
                self.port.mempool,
                self.port.id,
                self.queues[0],
                pkt.data().as_ptr().cast(),
                pkt.len() as u32,
                req.ol_flags,
                req.l2_len,
                req.l3_len,
                req.l4_len,
                req.segment,
                &mut refused,
            )
        };
        match rc {
            1 => {
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(pkt.len() as u64);
                self.counters.tx_gso.add(1);
                true
            }
            0 if refused > 0 => {
                count_drop(&self.counters, out, NicDrop::BadOffload, 1);
                true
            }
            0 => {
                count_drop(&self.counters, out, NicDrop::TxRingFull, 1);
                true
            }
            _ => false,
        }
    }
}

/// What a port needs to segment a TCP super-frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct TsoRequest {
    pub(super) ol_flags: u64,
    pub(super) l2_len: u16,
    pub(super) l3_len: u16,
    pub(super) l4_len: u16,
    pub(super) segment: u16,
}

/// The TSO request for a TCP super-frame (IPv4 or IPv6, headers where its metadata says),
/// or `None` when it is something else (then it is segmented in software).
pub(super) fn tso_request(pkt: &Packet) -> Option<TsoRequest> {
    use sys::mbuf_flags::*;
    let m = pkt.meta();
    let d = pkt.data();
    let l4 = m.csum_start;
    let (l3, l3_len) = l3_span(m.l3_offset, l4)?;
    let ip = match (m.gso_type, d.get(usize::from(l3))? >> 4) {
        (GsoType::TcpV4, 4) => TX_IPV4 | TX_IP_CKSUM,
        (GsoType::TcpV6, 6) => TX_IPV6,
        _ => return None,
    };
    let l4_len = u16::from(d.get(usize::from(l4) + 12)? >> 4) * 4;
    if l4_len < 20 || m.gso_size == 0 || usize::from(l4) + usize::from(l4_len) > d.len() {
        return None;
    }
    Some(TsoRequest {
        ol_flags: ip | TX_TCP_SEG | TX_TCP_CKSUM,
        l2_len: l3,
        l3_len,
        l4_len,
        segment: m.gso_size,
    })
}

impl DpdkNic {
    /// Transmits a burst of at most 64 frames, none larger than the port takes.
    pub(super) fn transmit(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        // Packets are looked at in place (moving each 72-byte packet out of the burst cost
        // more than the rest of the work): a packet still in its mbuf hands the mbuf over and
        // stays behind as an empty shell; any other stays whole, its bytes copied from where
        // it lies during the transmit call. `pkts.clear()` then frees shells (nothing), the
        // copied packets and the refused ones.
        let descs = &mut self.scratch.descs;
        let mut n = 0usize;
        let mut ncopy = 0u16;
        let mut noffload = 0u16;
        let mut bytes = 0u64;
        for pkt in pkts.iter_mut() {
            let m = pkt.meta();
            let (gso, csum) = (m.gso_type != GsoType::None, m.offload.contains(OffloadFlags::CSUM_NEEDED));
            let (csum_start, csum_offset) = (m.csum_start, m.csum_offset);
            let tagged = brick_wire::be16(pkt.data(), brick_wire::ethernet::field::ETHERTYPE.start)
                .is_some_and(|e| brick_wire::EtherType(e).is_vlan());
            let limit = (self.max_frame + if tagged { 4 } else { 0 }).min(self.port.data_room);
            if pkt.len() > limit || (gso && pkt.len() > self.max_frame) {
                count_drop(&self.counters, out, NicDrop::TooBig, 1);
                continue;
            }
            let mut offload = None;
            if csum {
                // The port computes the TCP/UDP checksum when it can; the field already holds
                // the pseudo-header sum, as DPDK asks. Otherwise it is completed here.
                offload = self
                    .tx_l4_csum
                    .then(|| l4_csum_offload(pkt.data(), m.l3_offset, csum_start, csum_offset))
                    .flatten();
                if offload.is_none() && !complete_checksum(pkt.data_mut(), csum_start, csum_offset) {
                    count_drop(&self.counters, out, NicDrop::BadOffload, 1);
                    continue;
                }
            }
            let d = &mut descs[n];
            match offload {
                Some((flags, l2, l3)) => {
                    (d.ol_flags, d.l2_len, d.l3_len) = (flags, l2, l3);
                    noffload += 1;
                }
                None => d.ol_flags = 0,
            }
            d.len = pkt.len() as u16;
            bytes += pkt.len() as u64;
            match pkt.take_foreign(&MBUF_OWNER) {
                Some(parts) => {
                    d.m = parts.handle.as_ptr().cast();
                    d.data_off = parts.head as u16;
                }
                None => {
                    d.m = std::ptr::null_mut();
                    d.data = pkt.data().as_ptr().cast();
                    ncopy += 1;
                }
            }
            n += 1;
        }
        if n == 0 {
            pkts.clear();
            return;
        }
        let mut refused = 0u16;
        // SAFETY: descs[..n] describe n frames: owned mbufs (taken from their packets, data
        // inside their buffers) or buffers of packets still in `pkts` until the call returns,
        // each at most the mbuf data room (checked above); the queue is ours; `refused` is a
        // live u16 for the call.
        let sent = unsafe {
            sys::brick_tx_desc_burst(
                self.port.mempool,
                self.port.id,
                self.queues[0],
                descs.as_mut_ptr(),
                n as u16,
                ncopy,
                noffload,
                &mut refused,
            )
        };
        if sent < 0 {
            // No mbuf for the copies: the port is backed up (the shim freed the owned mbufs).
            count_drop(&self.counters, out, NicDrop::TxRingFull, n as u64);
        } else {
            let sent = sent as usize;
            let sent_bytes: u64 =
                if sent == n { bytes } else { descs[..sent].iter().map(|d| d.len as u64).sum() };
            self.counters.tx_packets.add(sent as u64);
            self.counters.tx_bytes.add(sent_bytes);
            self.counters.tx_copied.add(ncopy as u64);
            if noffload > 0 {
                self.counters
                    .tx_csum_offloaded
                    .add(descs[..sent].iter().filter(|d| d.ol_flags != 0).count() as u64);
            }
            let refused = refused as usize;
            if refused > 0 {
                // rte_eth_tx_prepare refused an offload request (a driver limit).
                count_drop(&self.counters, out, NicDrop::BadOffload, refused as u64);
            }
            if sent + refused < n {
                count_drop(&self.counters, out, NicDrop::TxRingFull, (n - sent - refused) as u64);
            }
        }
        pkts.clear();
    }
}

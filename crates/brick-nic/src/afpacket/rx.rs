//! The receive paths: the TPACKET_V3 block ring (zero copy into pool buffers where the
//! ring frame allows), TPACKET_V2 frames, and reading with copies.

use super::*;

impl AfPacketNic {
    /// Receives up to one burst from the ring.
    pub(super) fn rx(&mut self, out: &mut Output<'_>) -> usize {
        let block_size = self.cfg.block_size as usize;
        let mut n = 0;
        while n < BURST_SIZE {
            let cur = match self.cursor {
                Some(c) => c,
                None => {
                    if self.block_status(self.rx_block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                        break;
                    }
                    // SAFETY: the kernel handed the block to us (TP_STATUS_USER, acquired);
                    // the descriptor is at the block start, inside the mapping.
                    let bd = unsafe {
                        self.block_ptr(self.rx_block).cast::<libc::tpacket_block_desc>().read_volatile()
                    };
                    // SAFETY: bh1 is the only member of the union, and V3 fills it.
                    let h1 = unsafe { bd.hdr.bh1 };
                    BlockCursor { remaining: h1.num_pkts, offset: h1.offset_to_first_pkt as usize }
                }
            };
            if cur.remaining == 0 || cur.offset + size_of::<libc::tpacket3_hdr>() > block_size {
                // Block done (or a corrupt offset): give it back to the kernel.
                self.block_status(self.rx_block).store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.rx_block = (self.rx_block + 1) % self.cfg.block_count;
                self.cursor = None;
                continue;
            }
            let base = self.block_ptr(self.rx_block);
            // SAFETY: the header lies within the block (checked above) which we own until we
            // release it.
            let h = unsafe { base.add(cur.offset).cast::<libc::tpacket3_hdr>().read_unaligned() };
            self.cursor = Some(BlockCursor {
                remaining: cur.remaining - 1,
                offset: if h.tp_next_offset == 0 {
                    block_size
                } else {
                    cur.offset + h.tp_next_offset as usize
                },
            });
            let start = cur.offset + h.tp_mac as usize;
            let len = h.tp_snaplen as usize;
            n += 1;
            // The virtio-net header sits just before the frame, after the frame header.
            if start + len > block_size
                || (h.tp_mac as usize) < size_of::<libc::tpacket3_hdr>() + VNET_HDR_LEN
            {
                count_drop(&self.counters, out, NicDrop::RxError, 1);
                continue;
            }
            // SAFETY: [start - VNET_HDR_LEN, start + len) is inside the block (checked just
            // above) and the header is after the frame header.
            let (vnet, frame) = unsafe {
                (
                    std::slice::from_raw_parts(base.add(start - VNET_HDR_LEN), VNET_HDR_LEN),
                    std::slice::from_raw_parts(base.add(start), len),
                )
            };
            if (h.tp_len as usize) > len {
                count_drop(&self.counters, out, NicDrop::RxTruncated, 1);
                continue;
            }
            let vlan = (h.tp_status & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if h.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    h.hv1.tp_vlan_tpid
                } else {
                    EtherType::VLAN.0
                };
                (tpid, h.hv1.tp_vlan_tci as u16)
            });
            self.take_frame(frame, vnet, h.tp_status, vlan, out);
        }
        n
    }

    /// The pool for a received frame of `len` bytes: the brick's pool, or the big pool when
    /// the frame exceeds its data room; `None` when no pool can hold it.
    fn pool_for(&self, len: usize) -> Option<&PacketPool> {
        if len <= self.pool.data_room() {
            return Some(&self.pool);
        }
        self.big_pool.as_ref().filter(|p| len <= p.data_room())
    }

    /// Copies one received frame into a pool packet (restoring a stripped VLAN tag) and
    /// hands it on with the offload state of its virtio-net header `vnet`.
    fn take_frame(
        &mut self,
        frame: &[u8],
        vnet: &[u8],
        tp_status: u32,
        vlan: Option<(u16, u16)>,
        out: &mut Output<'_>,
    ) {
        let len = frame.len();
        let total = len + if vlan.is_some() { 4 } else { 0 };
        if len < ETH_HLEN {
            return count_drop(&self.counters, out, NicDrop::RxError, 1);
        }
        let Some(pool) = self.pool_for(total) else {
            return count_drop(&self.counters, out, NicDrop::TooBig, 1);
        };
        let Some(mut pkt) = pool.alloc() else {
            return count_drop(&self.counters, out, NicDrop::RxPoolEmpty, 1);
        };
        let Ok(buf) = pkt.append(total) else {
            return count_drop(&self.counters, out, NicDrop::TooBig, 1);
        };
        match vlan {
            // The kernel strips the outermost VLAN tag into the header: put it back so
            // the graph sees the frame as it was on the wire.
            Some((tpid, tci)) => {
                buf[..12].copy_from_slice(&frame[..12]);
                buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&tci.to_be_bytes());
                buf[16..].copy_from_slice(&frame[12..]);
            }
            None => buf.copy_from_slice(frame),
        }
        self.deliver(pkt, vnet, tp_status, vlan.is_some(), out);
    }

    /// Reads the frame of a TPACKET_V2 slot marked `TP_STATUS_COPY` (too big for the slot)
    /// whole from the socket's receive queue, where the kernel queued it in ring order, into
    /// a packet of the big pool (or the normal one), and hands it on.
    fn take_copied(&mut self, tp_status: u32, vlan: Option<(u16, u16)>, out: &mut Output<'_>) {
        let tag = if vlan.is_some() { 4 } else { 0 };
        let pool = self.big_pool.as_ref().unwrap_or(&self.pool);
        let Some(mut pkt) = pool.alloc() else {
            // The frame must still leave the queue, or the next copied slot would read it.
            self.discard_copied();
            return count_drop(&self.counters, out, NicDrop::RxPoolEmpty, 1);
        };
        let room = pkt.tailroom();
        let mut vnet = [0u8; VNET_HDR_LEN];
        let received = match pkt.append(room) {
            Ok(buf) if room > tag => {
                let data = &mut buf[tag..];
                let mut iov = [
                    libc::iovec { iov_base: vnet.as_mut_ptr().cast(), iov_len: VNET_HDR_LEN },
                    libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() },
                ];
                self.recv_copied(&mut iov)
            }
            _ => {
                self.discard_copied();
                return count_drop(&self.counters, out, NicDrop::TooBig, 1);
            }
        };
        let len = match received {
            // The kernel had queued nothing: the slot and the queue disagree.
            None => return count_drop(&self.counters, out, NicDrop::RxError, 1),
            Some((len, _)) if len < ETH_HLEN => return count_drop(&self.counters, out, NicDrop::RxError, 1),
            Some((len, truncated)) if truncated || len + tag > room => {
                return count_drop(&self.counters, out, NicDrop::TooBig, 1)
            }
            Some((len, _)) => len,
        };
        pkt.truncate(len + tag);
        if let Some((tpid, tci)) = vlan {
            let d = pkt.data_mut();
            d.copy_within(4..16, 0);
            d[12..14].copy_from_slice(&tpid.to_be_bytes());
            d[14..16].copy_from_slice(&tci.to_be_bytes());
        }
        self.deliver(pkt, &vnet, tp_status, vlan.is_some(), out);
    }

    /// One `recvmsg` of the next queued frame into `iov` (virtio-net header, then data):
    /// the frame's full length and whether it was cut short, or `None` when nothing waits.
    fn recv_copied(&self, iov: &mut [libc::iovec]) -> Option<(usize, bool)> {
        // SAFETY: msghdr is plain data; zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: every iovec points to a live, writable buffer of its length, borrowed for
        // the duration of the call.
        let r = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
        let r = usize::try_from(r).ok()?;
        // With MSG_TRUNC the result is the virtio-net header plus the frame's real length.
        let len = r.checked_sub(VNET_HDR_LEN)?;
        Some((len, msg.msg_flags & libc::MSG_TRUNC != 0))
    }

    /// Takes the next queued frame off the socket and drops it.
    fn discard_copied(&self) {
        let mut vnet = [0u8; VNET_HDR_LEN];
        let mut iov = [libc::iovec { iov_base: vnet.as_mut_ptr().cast(), iov_len: VNET_HDR_LEN }];
        let _ = self.recv_copied(&mut iov);
    }

    /// Sets a received packet's metadata from its virtio-net header and emits it.
    fn deliver(&mut self, mut pkt: Packet, vnet: &[u8], tp_status: u32, tagged: bool, out: &mut Output<'_>) {
        let mut meta = *pkt.meta();
        if rx_offload(vnet, tagged, tp_status, pkt.len(), &mut meta).is_err() {
            return drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload);
        }
        guess_l2_l3(pkt.data(), &mut meta);
        if meta.offload.contains(OffloadFlags::CSUM_NEEDED) || meta.gso_type != GsoType::None {
            self.counters.rx_offloaded.add(1);
            if meta.gso_type != GsoType::None {
                self.counters.rx_gso.add(1);
            }
        }
        *pkt.meta_mut() = meta;
        self.counters.rx_packets.add(1);
        self.counters.rx_bytes.add(pkt.len() as u64);
        out.emit(Side::East, 0, pkt);
    }

    /// Receives up to one burst from the TPACKET_V2 ring (low-latency mode).
    pub(super) fn rx_v2(&mut self, out: &mut Output<'_>) -> usize {
        let slots = self.cfg.block_size / V2_FRAME_SIZE * self.cfg.block_count;
        let mut n = 0;
        while n < BURST_SIZE {
            // SAFETY: rx_block < slots, so the slot lies inside the rx part of the mapping.
            let slot = unsafe { self.ring.ptr().add(self.rx_block as usize * V2_FRAME_SIZE as usize) };
            // SAFETY: tp_status is the first, aligned u32 of the slot, shared with the kernel;
            // every access to it is atomic.
            let status = unsafe { AtomicU32::from_ptr(slot.cast::<u32>()) };
            let st = status.load(Ordering::Acquire);
            if st & libc::TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the kernel handed the slot to us (TP_STATUS_USER, acquired); the header
            // is at its start.
            let h = unsafe { slot.cast::<libc::tpacket2_hdr>().read_unaligned() };
            let (start, len) = (h.tp_mac as usize, h.tp_snaplen as usize);
            n += 1;
            let vlan = (st & libc::TP_STATUS_VLAN_VALID != 0).then(|| {
                let tpid = if st & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                    h.tp_vlan_tpid
                } else {
                    EtherType::VLAN.0
                };
                (tpid, h.tp_vlan_tci)
            });
            if st & libc::TP_STATUS_COPY != 0 {
                // Too big for the slot: the whole frame waits on the socket.
                self.take_copied(st, vlan, out);
            } else if start + len > V2_FRAME_SIZE as usize
                || start < size_of::<libc::tpacket2_hdr>() + VNET_HDR_LEN
            {
                count_drop(&self.counters, out, NicDrop::RxError, 1);
            } else if (h.tp_len as usize) > len {
                // Too big, and the socket buffer had no room for a copy.
                count_drop(&self.counters, out, NicDrop::RxTruncated, 1);
            } else {
                // SAFETY: [start - VNET_HDR_LEN, start + len) is inside the slot (checked
                // above), which we own until we give it back below; the packet copy is made
                // before that.
                let (vnet, frame) = unsafe {
                    (
                        std::slice::from_raw_parts(slot.add(start - VNET_HDR_LEN), VNET_HDR_LEN),
                        std::slice::from_raw_parts(slot.add(start), len),
                    )
                };
                self.take_frame(frame, vnet, st, vlan, out);
            }
            status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
            self.rx_block = (self.rx_block + 1) % slots;
        }
        n
    }
}

/// The offload state of a received frame of `len` bytes from the virtio-net header the
/// kernel wrote in front of it (PACKET_VNET_HDR), into `meta`: a partial checksum at the
/// kernel's exact `csum_start`/`csum_offset` (for a VXLAN frame from a local kernel, the
/// inner TCP/UDP header), TCP super-frame metadata, a checksum the kernel verified.
/// `tagged`: a VLAN tag the kernel had stripped was put back in front of the checksummed
/// part, moving it by 4 bytes. `meta` is untouched on error (an inconsistent header).
pub(super) fn rx_offload(
    vnet: &[u8],
    tagged: bool,
    tp_status: u32,
    len: usize,
    meta: &mut Meta,
) -> Result<(), OffloadError> {
    let mut h: VnetHdr = parse_vnet(vnet)?;
    if tagged && h.flags & VNET_F_NEEDS_CSUM != 0 {
        h.csum_start = h.csum_start.checked_add(4).ok_or(OffloadError::ChecksumOutOfFrame {
            start: h.csum_start,
            offset: h.csum_offset,
            len,
        })?;
    }
    let mut m = *meta;
    h.apply_to(&mut m, len)?;
    if tp_status & libc::TP_STATUS_CSUM_VALID != 0 && !m.offload.contains(OffloadFlags::CSUM_NEEDED) {
        m.offload.insert(OffloadFlags::CSUM_VERIFIED);
    }
    *meta = m;
    Ok(())
}

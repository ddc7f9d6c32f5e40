//! Receiving: a burst of mbufs per FFI call, wrapped zero copy or copied into pool packets.

use super::*;

impl DpdkNic {
    pub(super) fn rx_queue(&mut self, q: u16, out: &mut Output<'_>) -> usize {
        let s = &mut *self.scratch;
        // SAFETY: mbufs/views have room for BURST_SIZE entries; the port and queue are
        // configured and polled by this brick only.
        let n = unsafe {
            sys::brick_rx_burst_views(
                self.port.id,
                q,
                s.mbufs.as_mut_ptr(),
                s.views.as_mut_ptr(),
                BURST_SIZE as u16,
            )
        } as usize;
        let mut to_free = 0usize;
        let mut bytes = 0u64;
        let rx = &mut self.rx_burst;
        for i in 0..n {
            let v = &s.views[i];
            let total = v.pkt_len as usize;
            s.rx_flags[rx.len()] = v.ol_flags;
            if self.zero_copy && v.exclusive != 0 {
                if let (Some(buf), Some(handle)) =
                    (NonNull::new(v.buf.cast::<u8>()), NonNull::new(s.mbufs[i].cast::<()>()))
                {
                    // SAFETY: the shim checked the mbuf is a direct single segment with refcnt
                    // 1, so its `buf_len` bytes at `buf_addr` are ours alone (mbuf buffers are
                    // plain initialised memory) until the packet frees it through MBUF_OWNER or
                    // gives it back to a DpdkNic for transmission; the mempool outlives it
                    // (Port's Drop retires pools with lent mbufs). At most BURST_SIZE frames
                    // go into an empty burst, so only bad bounds could refuse it.
                    let pushed = unsafe {
                        rx.push_foreign(
                            buf,
                            v.buf_len as usize,
                            v.data_off as usize,
                            v.data_len as usize,
                            &MBUF_OWNER,
                            handle,
                        )
                    };
                    if pushed {
                        bytes += total as u64;
                        continue;
                    }
                }
            }
            // Copied (or dropped) below: the mbuf goes back to its pool after the loop.
            s.mbufs[to_free] = s.mbufs[i];
            to_free += 1;
            if total > self.pool.data_room() {
                count_drop(&self.counters, out, NicDrop::TooBig, 1);
                continue;
            }
            let Some(mut pkt) = self.pool.alloc() else {
                count_drop(&self.counters, out, NicDrop::RxPoolEmpty, 1);
                continue;
            };
            let Ok(buf) = pkt.append(total) else {
                count_drop(&self.counters, out, NicDrop::TooBig, 1);
                continue;
            };
            let first = (v.data_len as usize).min(total);
            // SAFETY: the driver gave us this mbuf; its first segment has data_len bytes at
            // `data`, and we copy at most `total` bytes into a buffer of `total` bytes.
            unsafe { std::ptr::copy_nonoverlapping(v.data as *const u8, buf.as_mut_ptr(), first) };
            let mut off = first;
            let mut seg = v.next;
            let mut ok = true;
            while !seg.is_null() && off < total {
                // SAFETY: `seg` is a segment of a received mbuf chain, alive until the bulk
                // free below; the copy is bounded by what is left of `buf`.
                unsafe {
                    let len = (sys::brick_mbuf_data_len(seg) as usize).min(total - off);
                    std::ptr::copy_nonoverlapping(
                        sys::brick_mbuf_data(seg) as *const u8,
                        buf.as_mut_ptr().add(off),
                        len,
                    );
                    off += len;
                    seg = sys::brick_mbuf_next(seg);
                }
            }
            if off != total {
                ok = false;
            }
            if !ok {
                drop_pkt(&self.counters, out, pkt, NicDrop::RxError);
                continue;
            }
            bytes += total as u64;
            let _ = rx.push(pkt);
        }
        // Metadata is filled in place, once the packets sit in the burst: building it before
        // the move made every move wait on the narrow stores just made (store forwarding).
        let got = rx.len();
        for (p, &f) in rx.iter_mut().zip(s.rx_flags[..got].iter()) {
            fill_rx_meta(p, f);
        }
        self.counters.rx_packets.add(rx.len() as u64);
        self.counters.rx_bytes.add(bytes);
        // Moves the whole burst (storage swap) when nothing waits on the port.
        out.emit_all(Side::East, 0, rx);
        if to_free > 0 {
            // SAFETY: these mbufs came from rx_burst, were copied or dropped, and nothing
            // refers to them any more (lent ones were moved out of this prefix).
            unsafe { sys::brick_pktmbuf_free_bulk(s.mbufs.as_mut_ptr(), to_free as u32) };
        }
        n
    }
}

/// Fills a received packet's metadata.
#[inline]
pub(super) fn fill_rx_meta(pkt: &mut Packet, ol_flags: u64) {
    use sys::mbuf_flags::*;
    let mut meta = Meta::default();
    if ol_flags & RX_L4_CKSUM_MASK == RX_L4_CKSUM_GOOD && ol_flags & RX_IP_CKSUM_MASK != 0 {
        meta.offload.insert(OffloadFlags::CSUM_VERIFIED);
    }
    guess_l2_l3(pkt.data(), &mut meta);
    *pkt.meta_mut() = meta;
}

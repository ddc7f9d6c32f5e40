//! The TAP datapath: reading bursts from the queues (RX) and writing packets, coalesced
//! or one by one (TX), with the virtio-net header mapped to and from the packet metadata.

use super::*;

impl TapNic {
    /// Reads up to one burst from queue `qi`; returns the frames consumed.
    pub(super) fn rx_queue(&mut self, qi: usize, out: &mut Output<'_>) -> usize {
        let fd = self.queues[qi].fd.as_raw_fd();
        let vnet = self.cfg.vnet_hdr;
        let hlen = if vnet { self.cfg.offloads.vnet_len() } else { 0 };
        let mut n = 0;
        while n < BURST_SIZE {
            let Some(mut pkt) = self.pool.alloc() else {
                // Leave frames in the kernel queue (it drops when full, counted by the
                // kernel as tx_dropped of the tap); count the stall once.
                self.counters.rx_pool_empty.add(1);
                out.count_drop(NicDrop::RxPoolEmpty.index(), 1);
                break;
            };
            let mut hdr = [0u8; VNET_HDR_TNL_LEN];
            let mut overflow = [0u8; 1];
            let room = pkt.tailroom();
            let buf = match pkt.append(room) {
                Ok(b) => b,
                Err(_) => break,
            };
            let mut iov = [
                libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen },
                libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
                libc::iovec { iov_base: overflow.as_mut_ptr().cast(), iov_len: 1 },
            ];
            let (iov_ptr, iov_cnt) = if vnet { (iov.as_mut_ptr(), 3) } else { (iov[1..].as_mut_ptr(), 2) };
            // SAFETY: every iovec points to a live buffer of the stated length (the header and
            // overflow arrays on the stack, the packet's tailroom) for the duration of the call.
            let r = unsafe { libc::readv(fd, iov_ptr, iov_cnt) };
            if r < 0 {
                let err = io::Error::last_os_error();
                match sys::errno(&err) {
                    libc::EAGAIN => break,
                    libc::EINTR => continue,
                    libc::EFAULT | libc::EMSGSIZE => drop_pkt(&self.counters, out, pkt, NicDrop::TooBig),
                    _ => {
                        drop_pkt(&self.counters, out, pkt, NicDrop::RxError);
                        break;
                    }
                }
                n += 1;
                continue;
            }
            n += 1;
            let r = r as usize;
            if r < hlen + 14 {
                drop_pkt(&self.counters, out, pkt, NicDrop::RxError);
                continue;
            }
            let len = r - hlen;
            if len > room {
                drop_pkt(&self.counters, out, pkt, NicDrop::TooBig);
                continue;
            }
            pkt.truncate(len);
            let mut meta = *pkt.meta();
            if vnet {
                let applied = if hlen == VNET_HDR_TNL_LEN {
                    // A UDP-tunnel super-frame: the inner super-frame's fields (checksum
                    // start at the inner L4 header) map as usual once the tunnel bits and
                    // offsets are checked.
                    VnetTunnel::parse(&hdr).and_then(|t| {
                        let mut h = parse_vnet(&hdr)?;
                        if let Some(t) = t {
                            h.gso_type &= !t.kind;
                        }
                        h.apply_to(&mut meta, len)
                    })
                } else {
                    parse_vnet(&hdr).and_then(|h| h.apply_to(&mut meta, len))
                };
                if applied.is_err() {
                    drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload);
                    continue;
                }
                if meta.offload != OffloadFlags::NONE || meta.gso_type != GsoType::None {
                    self.counters.rx_offloaded.add(1);
                }
                if meta.gso_type != GsoType::None {
                    self.counters.rx_gso.add(1);
                }
            }
            guess_l2_l3(pkt.data(), &mut meta);
            *pkt.meta_mut() = meta;
            self.counters.rx_packets.add(1);
            self.counters.rx_bytes.add(len as u64);
            out.emit(Side::East, 0, pkt);
        }
        n
    }

    /// Picks the transmit queue for a frame: a hash of its addresses, so one flow stays on
    /// one queue.
    pub(super) fn tx_queue_for(&self, data: &[u8]) -> usize {
        if self.queues.len() == 1 {
            return 0;
        }
        let key = data.get(26..38).or_else(|| data.get(0..12)).unwrap_or(&[]);
        let mut h: u32 = 0x811c_9dc5;
        for &b in key {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        h as usize % self.queues.len()
    }

    /// Sends a burst, merging runs of consecutive TCP segments of one flow (`coalesce`).
    pub(super) fn tx_coalescing(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let mut held = std::mem::take(&mut self.held);
        let mut run = std::mem::take(&mut self.run);
        held.extend(pkts.drain());
        let mut it = held.drain(..).peekable();
        while let Some(first) = it.next() {
            let Some(seg) = TcpSegment::parse(first.data(), first.meta()) else {
                self.tx_one(first, out);
                continue;
            };
            let mut prev = seg;
            let mut merged = seg.payload;
            run.push(first);
            while let Some(next) = it.peek() {
                let Some(n) = TcpSegment::parse(next.data(), next.meta()) else { break };
                if !seg.follows(run[0].data(), &prev, merged, &n, next.data()) {
                    break;
                }
                merged += n.payload;
                prev = n;
                run.extend(it.next());
            }
            if run.len() == 1 {
                self.tx_one(run.pop().expect("one packet"), out);
            } else {
                self.tx_merged(&mut run, &seg, merged, prev.psh(), out);
            }
        }
        drop(it);
        self.held = held;
        self.run = run;
    }

    /// Writes `run` (segments checked by [`TcpSegment::follows`]) as one super-frame: the
    /// first segment's headers, rewritten, then every payload, gathered by one `writev`.
    fn tx_merged(
        &mut self,
        run: &mut Vec<Packet>,
        first: &TcpSegment,
        merged: usize,
        psh: bool,
        out: &mut Output<'_>,
    ) {
        let meta = merge_header(run[0].data_mut(), first, merged, psh);
        let mut hdr = [0u8; VNET_HDR_TNL_LEN];
        let hlen = self.cfg.offloads.vnet_len();
        let frame_len = first.hdr_len + merged;
        // The merged metadata describes the first segment's rewritten headers: the same
        // mapping as for any super-frame (it cannot fail for a merge of checked segments).
        match VnetHdr::from_meta(&meta, run[0].data()) {
            Ok(h) => h.write(&mut hdr[..VNET_HDR_LEN]),
            Err(_) => {
                for p in run.drain(..) {
                    drop_pkt(&self.counters, out, p, NicDrop::BadOffload);
                }
                return;
            }
        }
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BURST_SIZE + 1];
        iov[0] = libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen };
        for (i, p) in run.iter().enumerate() {
            let d = if i == 0 { p.data() } else { &p.data()[first.hdr_len..] };
            iov[i + 1] = libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() };
        }
        let q = self.tx_queue_for(run[0].data());
        let fd = self.queues[q].fd.as_raw_fd();
        let n = run.len();
        loop {
            // SAFETY: the first `n + 1` iovecs point to live buffers of the stated lengths (the
            // header on the stack, the packets of `run`, which outlive the call); writev only
            // reads them.
            let r = unsafe { libc::writev(fd, iov.as_ptr(), (n + 1) as libc::c_int) };
            if r >= 0 {
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(frame_len as u64);
                self.counters.tx_gso.add(1);
                self.counters.tx_coalesced.add(n as u64);
                run.clear();
                return;
            }
            let Some(reason) = tx_drop_reason(&io::Error::last_os_error(), true) else { continue };
            for p in run.drain(..) {
                drop_pkt(&self.counters, out, p, reason);
            }
            return;
        }
    }

    pub(super) fn tx_one(&mut self, mut pkt: Packet, out: &mut Output<'_>) {
        let mut hdr = [0u8; VNET_HDR_TNL_LEN];
        let hlen = self.cfg.offloads.vnet_len();
        if self.cfg.vnet_hdr {
            match VnetHdr::from_meta(pkt.meta(), pkt.data()) {
                Ok(h) => h.write(&mut hdr[..VNET_HDR_LEN]),
                Err(_) => return drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload),
            }
            if pkt.meta().gso_type != GsoType::None {
                match VnetTunnel::for_frame(pkt.meta(), pkt.data()) {
                    Some(t) if hlen == VNET_HDR_TNL_LEN => {
                        t.write(&mut hdr);
                    }
                    // An encapsulated super-frame the device cannot take whole.
                    Some(_) => return drop_pkt(&self.counters, out, pkt, NicDrop::TooBig),
                    None => {}
                }
            }
        } else {
            let m = *pkt.meta();
            if m.gso_type != GsoType::None && m.gso_size > 0 {
                return drop_pkt(&self.counters, out, pkt, NicDrop::TooBig);
            }
            if m.offload.contains(OffloadFlags::CSUM_NEEDED)
                && !complete_checksum(pkt.data_mut(), m.csum_start, m.csum_offset)
            {
                return drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload);
            }
        }
        let q = self.tx_queue_for(pkt.data());
        let fd = self.queues[q].fd.as_raw_fd();
        let iov = [
            libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen },
            libc::iovec { iov_base: pkt.data().as_ptr() as *mut libc::c_void, iov_len: pkt.len() },
        ];
        let (iov_ptr, cnt) = if self.cfg.vnet_hdr { (iov.as_ptr(), 2) } else { (iov[1..].as_ptr(), 1) };
        loop {
            // SAFETY: both iovecs point to live buffers of the stated lengths; writev only
            // reads them.
            let r = unsafe { libc::writev(fd, iov_ptr, cnt) };
            if r >= 0 {
                if self.cfg.vnet_hdr && pkt.meta().gso_type != GsoType::None {
                    self.counters.tx_gso.add(1);
                }
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(pkt.len() as u64);
                return;
            }
            let Some(reason) = tx_drop_reason(&io::Error::last_os_error(), self.cfg.vnet_hdr) else {
                continue;
            };
            return drop_pkt(&self.counters, out, pkt, reason);
        }
    }
}

/// Why a write to the TAP failed, as a drop reason; `None` when it was interrupted (retry).
/// EINVAL means a virtio-net header the kernel refused when there is one.
fn tx_drop_reason(err: &io::Error, vnet_hdr: bool) -> Option<NicDrop> {
    Some(match sys::errno(err) {
        libc::EINTR => return None,
        libc::EAGAIN | libc::ENOBUFS => NicDrop::TxRingFull,
        libc::EMSGSIZE => NicDrop::TooBig,
        libc::EINVAL if vnet_hdr => NicDrop::BadOffload,
        _ => NicDrop::TxError,
    })
}

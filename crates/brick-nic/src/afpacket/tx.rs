//! The transmit paths: the TX ring (one kick per burst) or sendmmsg.

use super::*;

impl AfPacketNic {
    /// Checks and prepares one outgoing frame; `Err(reason)` when it must be dropped.
    pub(super) fn prepare_tx(max_frame: usize, pkt: &mut brick_core::Packet) -> Result<(), NicDrop> {
        let tagged = brick_wire::be16(pkt.data(), brick_wire::ethernet::field::ETHERTYPE.start)
            .is_some_and(|e| EtherType(e).is_vlan());
        let limit = max_frame + if tagged { 4 } else { 0 };
        if pkt.len() > limit {
            return Err(NicDrop::TooBig);
        }
        if pkt.len() < ETH_HLEN {
            return Err(NicDrop::TxError);
        }
        let m = *pkt.meta();
        if m.offload.contains(OffloadFlags::CSUM_NEEDED)
            && !complete_checksum(pkt.data_mut(), m.csum_start, m.csum_offset)
        {
            return Err(NicDrop::BadOffload);
        }
        Ok(())
    }

    pub(super) fn tx_ring(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let mut queued = 0;
        for mut pkt in pkts.drain() {
            if let Err(reason) = Self::prepare_tx(self.max_frame, &mut pkt) {
                drop_pkt(&self.counters, out, pkt, reason);
                continue;
            }
            // max_frame is capped to a ring slot, but a tagged frame may exceed it by 4 bytes.
            if pkt.len() > TX_SLOT_DATA {
                drop_pkt(&self.counters, out, pkt, NicDrop::TooBig);
                continue;
            }
            let status = self.tx_frame_status(self.tx_head).load(Ordering::Acquire);
            if status == libc::TP_STATUS_WRONG_FORMAT {
                // The kernel refused the frame that used this slot last time.
                self.counters.tx_errors.add(1);
                out.count_drop(NicDrop::TxError.index(), 1);
            } else if status != libc::TP_STATUS_AVAILABLE {
                drop_pkt(&self.counters, out, pkt, NicDrop::TxRingFull);
                continue;
            }
            let frame = self.tx_frame_ptr(self.tx_head);
            let len = pkt.len();
            // SAFETY: the slot is ours (status AVAILABLE or WRONG_FORMAT, acquired); the
            // virtio-net header and the data fit in the frame (len <= TX_SLOT_DATA, checked
            // above).
            unsafe {
                // A zero virtio-net header: the frame is complete (checksums done above).
                std::ptr::write_bytes(frame.add(TX_DATA_OFFSET), 0, VNET_HDR_LEN);
                std::ptr::copy_nonoverlapping(
                    pkt.data().as_ptr(),
                    frame.add(TX_DATA_OFFSET + VNET_HDR_LEN),
                    len,
                );
                let h = frame.cast::<libc::tpacket3_hdr>();
                let tp_len = (len + VNET_HDR_LEN) as u32;
                std::ptr::addr_of_mut!((*h).tp_len).write_volatile(tp_len);
                std::ptr::addr_of_mut!((*h).tp_snaplen).write_volatile(tp_len);
                std::ptr::addr_of_mut!((*h).tp_next_offset).write_volatile(0);
            }
            self.tx_frame_status(self.tx_head).store(libc::TP_STATUS_SEND_REQUEST, Ordering::Release);
            self.tx_head = (self.tx_head + 1) % self.tx_frames;
            self.counters.tx_packets.add(1);
            self.counters.tx_bytes.add(len as u64);
            queued += 1;
        }
        if queued > 0 {
            self.kick();
        }
    }

    /// Asks the kernel to send the queued ring frames.
    pub(super) fn kick(&mut self) {
        // SAFETY: send(2) with no buffer on a socket we own: the kernel walks the tx ring.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc < 0 {
            // EAGAIN/ENOBUFS: the frames stay queued and go with the next kick. Refused
            // frames are marked WRONG_FORMAT and counted when their slot is reused.
            let _ = io::Error::last_os_error();
        }
    }

    pub(super) fn tx_sendmmsg(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        for mut pkt in pkts.drain() {
            match Self::prepare_tx(self.max_frame, &mut pkt) {
                Ok(()) => {
                    let _ = self.stash.push(pkt);
                }
                Err(reason) => drop_pkt(&self.counters, out, pkt, reason),
            }
        }
        let n = self.stash.len();
        if n == 0 {
            return;
        }
        // A zero virtio-net header in front of every frame: nothing left to offload.
        let mut vnet = [0u8; VNET_HDR_LEN];
        // SAFETY: iovec and mmsghdr are plain data; zero is valid.
        let mut iov: [[libc::iovec; 2]; BURST_SIZE] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BURST_SIZE] = unsafe { std::mem::zeroed() };
        for (i, p) in self.stash.iter().enumerate() {
            iov[i][0].iov_base = vnet.as_mut_ptr().cast();
            iov[i][0].iov_len = VNET_HDR_LEN;
            iov[i][1].iov_base = p.data().as_ptr() as *mut libc::c_void;
            iov[i][1].iov_len = p.len();
            msgs[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
            msgs[i].msg_hdr.msg_iovlen = 2;
        }
        let mut sent = 0usize;
        while sent < n {
            // SAFETY: msgs[sent..n] point to iovecs, the header and packet data that stay
            // alive (the packets are in self.stash) until this call returns; the kernel only
            // reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[sent..].as_mut_ptr(),
                    (n - sent) as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                for p in self.stash.iter().skip(sent).take(rc as usize) {
                    self.counters.tx_bytes.add(p.len() as u64);
                }
                self.counters.tx_packets.add(rc as u64);
                sent += rc as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            match sys::errno(&err) {
                libc::EAGAIN | libc::ENOBUFS => {
                    count_drop(&self.counters, out, NicDrop::TxRingFull, (n - sent) as u64);
                    break;
                }
                libc::EINTR => continue,
                libc::EMSGSIZE => {
                    count_drop(&self.counters, out, NicDrop::TooBig, 1);
                    sent += 1;
                }
                _ => {
                    count_drop(&self.counters, out, NicDrop::TxError, 1);
                    sent += 1;
                }
            }
        }
        self.stash.clear();
    }
}

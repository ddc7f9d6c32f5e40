//! One guest NIC: a virtio-net device driven through vhost-user as a frontend (the role
//! QEMU or DPDK's virtio_user plays), with one queue pair, polled, in a memfd of its own.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr;
use std::time::Duration;

use vhost::vhost_user::message::VhostUserHeaderFlag;
use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::ring::{
    SharedMem, Vring, AVAIL_F_NO_INTERRUPT, AVAIL_OFF, DESC_F_WRITE, QUEUE_SIZE, RING_AREA, USED_OFF,
};
use super::Error;

/// `VIRTIO_F_VERSION_1`: modern virtio, so the net header is 12 bytes (without MRG_RXBUF).
const F_VERSION_1: u64 = 1 << 32;
/// `struct virtio_net_hdr_v1`, all zero on transmit (no offloads).
const NET_HDR: usize = 12;
/// Bytes of each data buffer (a 1514-byte frame and the header fit).
const BUF_SIZE: usize = 2048;
/// Guest memory: two ring areas, then the receive buffers, then the transmit buffers.
const BUF_BASE: usize = 0x10000;
const MEM_SIZE: usize = 8 << 20;
// The rings end before the buffers, and the longest frame fits a buffer.
const _: () = assert!(2 * RING_AREA <= BUF_BASE && super::frame::MAX_LEN + NET_HDR <= BUF_SIZE);
const RX: usize = 0;
const TX: usize = 1;

/// A connected, running device.
pub struct Device {
    /// "vm1" or "vm2", for messages.
    name: String,
    /// Kept open: the backend drops the device when the connection closes.
    frontend: Frontend,
    rx: Vring,
    tx: Vring,
    kick: [EventFd; 2],
    /// Given to the backend (it may insist on one); never read, we poll.
    call: [EventFd; 2],
    /// Transmit descriptors not in flight.
    tx_free: Vec<u16>,
    /// Kicks sent (the device asked for them).
    pub kicks: u64,
    /// Used entries the device returned with a descriptor id we never gave it.
    pub bad_used: u64,
    /// Last, so it is unmapped after everything above that points into it.
    mem: SharedMem,
}

/// A frame the device wrote into receive buffer `id`: hand it back with [`Device::recycle`].
#[derive(Clone, Copy, Debug)]
pub struct Received {
    id: u16,
    len: usize,
}

impl Device {
    /// [`Device::connect`], tried again (up to `tries` times in all, `pause` apart) when the
    /// socket exists but the handshake fails: a switch may refuse a device for a moment.
    /// OVS-DPDK does, while it sizes the mbuf pool for its first device (DPDK then fails an
    /// allocation of the second device's `SET_VRING_NUM` and closes the connection).
    pub fn connect_retrying(path: &Path, name: &str, tries: u32, pause: Duration) -> Result<Device, Error> {
        let mut left = tries.max(1);
        loop {
            match Device::connect(path, name) {
                Ok(d) => return Ok(d),
                Err(e) if left > 1 && path.exists() => {
                    eprintln!("{e}; trying again");
                    std::thread::sleep(pause);
                    left -= 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects to the backend's socket `path` and starts the queue pair.
    pub fn connect(path: &Path, name: &str) -> Result<Device, Error> {
        let ctx = |what: &str| format!("{name} ({}): {what}", path.display());
        if !path.exists() {
            return Err(Error(ctx("no such socket (is the switch running?)")));
        }
        let mut fe = Frontend::connect(path, 2).map_err(|e| Error(ctx(&format!("connect: {e}"))))?;
        let mem = SharedMem::new(MEM_SIZE).map_err(|e| Error(ctx(&format!("memfd: {e}"))))?;
        let features = negotiate(&mut fe).map_err(|e| Error(ctx(&e)))?;
        // SAFETY: two disjoint, page-aligned ring areas at the start of our mapping, which
        // lives as long as the Device (dropped last) and is touched by nothing else here.
        let (rx, tx) = unsafe { (Vring::new(mem.addr()), Vring::new(mem.addr().add(RING_AREA))) };
        let new_fd = || EventFd::new(EFD_NONBLOCK).map_err(|e| Error(ctx(&format!("eventfd: {e}"))));
        let mut dev = Device {
            name: name.to_string(),
            frontend: fe,
            rx,
            tx,
            kick: [new_fd()?, new_fd()?],
            call: [new_fd()?, new_fd()?],
            tx_free: (0..QUEUE_SIZE).rev().collect(),
            kicks: 0,
            bad_used: 0,
            mem,
        };
        dev.post_rx_buffers();
        dev.start_queues(features).map_err(|e| Error(ctx(&e)))?;
        Ok(dev)
    }

    /// Fills the receive ring, each descriptor one writable buffer (posted before the device
    /// starts: it sees them all at its first look).
    fn post_rx_buffers(&mut self) {
        self.rx.set_avail_flags(AVAIL_F_NO_INTERRUPT);
        self.tx.set_avail_flags(AVAIL_F_NO_INTERRUPT);
        for id in 0..QUEUE_SIZE {
            self.rx.write_desc(id, rx_buf(id) as u64, BUF_SIZE as u32, DESC_F_WRITE);
            self.rx.push_avail(id);
        }
        self.rx.publish();
    }

    /// Memory table, then per queue: size, base, addresses, call, kick; then enables them.
    fn start_queues(&mut self, features: u64) -> Result<(), String> {
        let fe = &mut self.frontend;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: self.mem.len() as u64,
            userspace_addr: self.mem.addr() as u64,
            mmap_offset: 0,
            mmap_handle: self.mem.fd().as_raw_fd(),
        };
        fe.set_mem_table(&[region]).map_err(|e| format!("SET_MEM_TABLE: {e}"))?;
        for q in [RX, TX] {
            // vhost-user ring addresses are the frontend's own (virtual) addresses.
            let area = self.mem.addr() as u64 + (q * RING_AREA) as u64;
            let cfg = VringConfigData {
                queue_max_size: QUEUE_SIZE,
                queue_size: QUEUE_SIZE,
                flags: 0,
                desc_table_addr: area,
                avail_ring_addr: area + AVAIL_OFF as u64,
                used_ring_addr: area + USED_OFF as u64,
                log_addr: None,
            };
            let step = |r: vhost::Result<()>, what: &str| r.map_err(|e| format!("queue {q}: {what}: {e}"));
            step(fe.set_vring_num(q, QUEUE_SIZE), "SET_VRING_NUM")?;
            step(fe.set_vring_base(q, 0), "SET_VRING_BASE")?;
            step(fe.set_vring_addr(q, &cfg), "SET_VRING_ADDR")?;
            step(fe.set_vring_call(q, &self.call[q]), "SET_VRING_CALL")?;
            step(fe.set_vring_kick(q, &self.kick[q]), "SET_VRING_KICK")?;
        }
        if features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0 {
            // With protocol features, queues start disabled.
            for q in [RX, TX] {
                fe.set_vring_enable(q, true).map_err(|e| format!("queue {q}: SET_VRING_ENABLE: {e}"))?;
            }
        }
        // A driver kicks after filling its receive ring: a device that sleeps starts on it.
        self.kick(RX);
        Ok(())
    }

    /// The device's name ("vm1", "vm2").
    pub fn name(&self) -> &str {
        &self.name
    }

    fn kick(&mut self, q: usize) {
        // A failed kick (the counter saturated: impossible at our rate) leaves the device to
        // find the entry at its next poll; never worth failing a measurement for.
        let _ = self.kick[q].write(1);
        self.kicks += 1;
    }

    /// Sends `frame` (Ethernet, no FCS). False when every transmit descriptor is in flight
    /// (the device stopped taking them).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let sent = self.queue_tx(frame.len(), |buf| buf.copy_from_slice(&frame[..buf.len()]));
        if sent {
            self.flush_tx();
        }
        sent
    }

    /// Queues a frame of `len` bytes (Ethernet, no FCS, clipped to a buffer) that `fill`
    /// writes into its transmit buffer; the device sees it at the next
    /// [`flush_tx`](Self::flush_tx). False when every transmit descriptor is in flight.
    pub fn queue_tx(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> bool {
        let Some(id) = self.tx_free.pop().or_else(|| {
            self.reclaim_tx();
            self.tx_free.pop()
        }) else {
            return false;
        };
        let off = tx_buf(id);
        let len = (NET_HDR + len).min(BUF_SIZE);
        // SAFETY: buffer `id` (BUF_SIZE bytes inside the mapping) is ours: it is not in the
        // avail ring until `push_avail` below, and no receive buffer overlaps it. Header
        // zeroed, then the frame (clipped to the buffer).
        let buf = unsafe {
            let dst = self.mem.addr().add(off);
            ptr::write_bytes(dst, 0, NET_HDR);
            std::slice::from_raw_parts_mut(dst.add(NET_HDR), len - NET_HDR)
        };
        fill(buf);
        self.tx.write_desc(id, off as u64, len as u32, 0);
        self.tx.push_avail(id);
        true
    }

    /// Queues a copy of received frame `r` for sending, edited by `edit` in its transmit
    /// buffer (one copy, as a guest forwarding in place makes none: the nearest a frontend
    /// with separate buffers gets). False when every transmit descriptor is in flight.
    pub fn queue_reply(&mut self, r: &Received, edit: impl FnOnce(&mut [u8])) -> bool {
        let len = r.len.saturating_sub(NET_HDR);
        let src = rx_buf(r.id) + NET_HDR;
        let base = self.mem.addr();
        self.queue_tx(len, |buf| {
            // SAFETY: the receive buffer lies inside the mapping and is ours until recycled
            // (the caller still holds `r`); it does not overlap the transmit buffer `buf`
            // (rx_buf and tx_buf areas are disjoint), and `buf.len()` is at most `len`.
            unsafe { ptr::copy_nonoverlapping(base.add(src), buf.as_mut_ptr(), buf.len()) };
            edit(buf);
        })
    }

    /// Publishes the frames queued since the last flush, with a kick if the device asks.
    pub fn flush_tx(&mut self) {
        self.tx.publish();
        if self.tx.device_wants_kick() {
            self.kick(TX);
        }
    }

    /// Takes back the transmit descriptors the device has finished with.
    pub fn reclaim_tx(&mut self) {
        while let Some((id, _)) = self.tx.pop_used() {
            if id < QUEUE_SIZE && self.tx_free.len() < QUEUE_SIZE as usize {
                self.tx_free.push(id);
            } else {
                self.bad_used += 1;
            }
        }
    }

    /// The next received frame, if any.
    pub fn poll_rx(&mut self) -> Option<Received> {
        loop {
            let (id, len) = self.rx.pop_used()?;
            if id < QUEUE_SIZE {
                return Some(Received { id, len: (len as usize).min(BUF_SIZE) });
            }
            // A broken used entry: we cannot know which buffer it meant to return.
            self.bad_used += 1;
        }
    }

    /// The frame (without the net header) of a received buffer.
    pub fn frame(&self, r: &Received) -> &[u8] {
        let len = r.len.saturating_sub(NET_HDR);
        // SAFETY: the buffer lies inside the mapping (id < QUEUE_SIZE, len clipped to
        // BUF_SIZE); the device returned it and does not write it again until `recycle`
        // posts it anew (which needs `&mut self`, so this borrow has ended).
        unsafe { std::slice::from_raw_parts(self.mem.addr().add(rx_buf(r.id) + NET_HDR), len) }
    }

    /// Posts a received buffer back to the device.
    pub fn recycle(&mut self, r: Received) {
        self.recycle_later(r);
        self.flush_rx();
    }

    /// Queues a received buffer for the device; it sees it at the next
    /// [`flush_rx`](Self::flush_rx).
    pub fn recycle_later(&mut self, r: Received) {
        self.rx.push_avail(r.id);
    }

    /// Publishes the receive buffers queued since the last flush, with a kick if the device
    /// asks.
    pub fn flush_rx(&mut self) {
        self.rx.publish();
        if self.rx.device_wants_kick() {
            self.kick(RX);
        }
    }
}

fn rx_buf(id: u16) -> usize {
    BUF_BASE + id as usize * BUF_SIZE
}

fn tx_buf(id: u16) -> usize {
    BUF_BASE + (QUEUE_SIZE as usize + id as usize) * BUF_SIZE
}

/// Owner, features (VERSION_1, and vhost-user's protocol features when offered, with
/// REPLY_ACK if the backend has it: each later message is then confirmed, so a refusal is
/// reported where it happens). Returns the features acked.
fn negotiate(fe: &mut Frontend) -> Result<u64, String> {
    fe.set_owner().map_err(|e| format!("SET_OWNER: {e}"))?;
    let offered = fe.get_features().map_err(|e| format!("GET_FEATURES: {e}"))?;
    if offered & F_VERSION_1 == 0 {
        return Err(format!(
            "feature negotiation refused: VIRTIO_F_VERSION_1 not offered (features {offered:#x})"
        ));
    }
    let protocol = VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
    let features = F_VERSION_1 | (offered & protocol);
    let mut reply_ack = false;
    if features & protocol != 0 {
        let p = fe.get_protocol_features().map_err(|e| format!("GET_PROTOCOL_FEATURES: {e}"))?;
        let ack = p & VhostUserProtocolFeatures::REPLY_ACK;
        fe.set_protocol_features(ack).map_err(|e| format!("SET_PROTOCOL_FEATURES: {e}"))?;
        reply_ack = !ack.is_empty();
    }
    fe.set_features(features)
        .map_err(|e| format!("feature negotiation refused: SET_FEATURES {features:#x}: {e}"))?;
    if reply_ack {
        fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_fit_in_memory_after_the_rings() {
        assert!(tx_buf(QUEUE_SIZE - 1) + BUF_SIZE <= MEM_SIZE);
        assert_eq!(rx_buf(QUEUE_SIZE - 1) + BUF_SIZE, tx_buf(0));
    }

    #[test]
    fn a_missing_socket_is_named() {
        let Err(e) = Device::connect(Path::new("/nonexistent/vm1.sock"), "vm1") else { panic!("connected") };
        assert!(e.0.contains("vm1 (/nonexistent/vm1.sock): no such socket"), "{e}");
    }
}

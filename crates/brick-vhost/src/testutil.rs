//! A guest-side split-ring driver over guest memory, for tests and benchmarks: it writes
//! descriptors and the avail ring like a virtio driver would, and reads the used ring.
//! Not meant for production use.

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::wire::NetHdr;

/// `VRING_DESC_F_NEXT`.
pub const F_NEXT: u16 = 1;
/// `VRING_DESC_F_WRITE`.
pub const F_WRITE: u16 = 2;

/// Drives one split virtqueue placed at guest address 0, with data buffers allocated from
/// 0x10000 upward.
pub struct GuestDriver<'a, M: GuestMemory> {
    mem: &'a M,
    size: u16,
    avail: u64,
    used: u64,
    next_desc: u16,
    avail_idx: u16,
    data_next: u64,
}

impl<'a, M: GuestMemory> GuestDriver<'a, M> {
    /// A driver for a queue of `size` entries (a power of two ≤ 32768).
    pub fn new(mem: &'a M, size: u16) -> Self {
        let avail = 16 * size as u64;
        let used = (avail + 6 + 2 * size as u64 + 3) & !3;
        let d = GuestDriver { mem, size, avail, used, next_desc: 0, avail_idx: 0, data_next: 0x1_0000 };
        d.w16(avail, 0);
        d.w16(avail + 2, 0);
        d.w16(used, 0);
        d.w16(used + 2, 0);
        d
    }

    fn w16(&self, addr: u64, v: u16) {
        self.mem.write_obj(v.to_le(), GuestAddress(addr)).expect("ring inside memory");
    }

    fn r16(&self, addr: u64) -> u16 {
        u16::from_le(self.mem.read_obj(GuestAddress(addr)).expect("ring inside memory"))
    }

    /// The device side of this queue, configured and ready.
    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("valid size");
        q.set_size(self.size);
        q.set_desc_table_address(Some(0), Some(0));
        q.set_avail_ring_address(Some(self.avail as u32), Some(0));
        q.set_used_ring_address(Some(self.used as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Where the queue lives, for the device side ([`crate::ring::SplitQueue`]).
    pub fn layout(&self, event_idx: bool) -> crate::ring::QueueLayout {
        crate::ring::QueueLayout { desc: 0, avail: self.avail, used: self.used, size: self.size, event_idx }
    }

    /// The driver's `used_event` field (EVENT_IDX): interrupt me when the used index passes it.
    pub fn set_used_event(&self, v: u16) {
        self.w16(self.avail + 4 + 2 * self.size as u64, v);
    }

    /// The driver's avail flags (bit 0: NO_INTERRUPT).
    pub fn set_avail_flags(&self, v: u16) {
        self.w16(self.avail, v);
    }

    /// The device's `avail_event` field (EVENT_IDX): kick me when the avail index passes it.
    pub fn avail_event(&self) -> u16 {
        self.r16(self.used + 4 + 8 * self.size as u64)
    }

    /// The device's used flags (bit 0: NO_NOTIFY).
    pub fn used_flags(&self) -> u16 {
        self.r16(self.used)
    }

    /// Copies `bytes` into a fresh data area and returns its guest address.
    pub fn put_data(&mut self, bytes: &[u8]) -> u64 {
        let a = self.data_next;
        self.mem.write_slice(bytes, GuestAddress(a)).expect("data inside memory");
        self.data_next = (a + bytes.len() as u64 + 64) & !15;
        a
    }

    /// Writes descriptor `i` of the ring's table.
    pub fn write_desc(&self, i: u16, d: (u64, u32, u16, u16)) {
        self.write_desc_at(0, i, d)
    }

    /// Writes descriptor `i` of a table at `table` (an indirect table, or 0 for the ring's).
    pub fn write_desc_at(&self, table: u64, i: u16, (addr, len, flags, next): (u64, u32, u16, u16)) {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&addr.to_le_bytes());
        b[8..12].copy_from_slice(&len.to_le_bytes());
        b[12..14].copy_from_slice(&flags.to_le_bytes());
        b[14..16].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&b, GuestAddress(table + 16 * i as u64)).expect("table inside memory");
    }

    /// Makes `heads` available, in order.
    pub fn publish_heads(&mut self, heads: &[u16]) {
        for &h in heads {
            let slot = self.avail + 4 + 2 * (self.avail_idx % self.size) as u64;
            self.w16(slot, h);
            self.avail_idx = self.avail_idx.wrapping_add(1);
        }
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        self.w16(self.avail + 2, self.avail_idx);
    }

    /// Writes `heads` into the avail ring's slots from slot 0, without publishing them (a
    /// benchmark then moves the avail index itself, as a polling driver does).
    pub fn fill_avail_slots(&self, heads: &[u16]) {
        for (i, &h) in heads.iter().enumerate().take(self.size as usize) {
            self.w16(self.avail + 4 + 2 * i as u64, h);
        }
    }

    fn alloc(&mut self, n: usize) -> u16 {
        let base = self.next_desc;
        self.next_desc = ((self.next_desc as usize + n) % self.size as usize) as u16;
        base
    }

    /// Adds a chain: each descriptor is chained to the next (NEXT flag and index set), the
    /// last one's NEXT flag cleared.
    pub fn push_chain(&mut self, descs: &[(u64, u32, u16, u16)]) -> u16 {
        let base = self.alloc(descs.len());
        for (k, &(a, l, f, _)) in descs.iter().enumerate() {
            let i = (base as usize + k) % self.size as usize;
            let (f, n) = if k + 1 == descs.len() {
                (f & !F_NEXT, 0)
            } else {
                (f | F_NEXT, ((i + 1) % self.size as usize) as u16)
            };
            self.write_desc(i as u16, (a, l, f, n));
        }
        self.publish_heads(&[base]);
        base
    }

    /// Adds a chain written as given, `next` fields relative to the first descriptor.
    pub fn push_chain_raw(&mut self, descs: &[(u64, u32, u16, u16)]) -> u16 {
        let base = self.alloc(descs.len());
        for (k, &(a, l, f, n)) in descs.iter().enumerate() {
            self.write_desc(base.wrapping_add(k as u16) % self.size, (a, l, f, base.wrapping_add(n)));
        }
        self.publish_heads(&[base]);
        base
    }

    /// Queues a TX frame: header then frame, cut into descriptors of at most `piece` bytes.
    pub fn tx_frame(&mut self, hdr: &NetHdr, frame: &[u8], piece: usize) -> u16 {
        let mut bytes = vec![0u8; 12];
        hdr.write(&mut bytes);
        bytes.extend_from_slice(frame);
        let a = self.put_data(&bytes);
        let descs: Vec<_> = bytes
            .chunks(piece.max(1))
            .scan(a, |pos, c| {
                let d = (*pos, c.len() as u32, 0u16, 0u16);
                *pos += c.len() as u64;
                Some(d)
            })
            .collect();
        self.push_chain(&descs)
    }

    /// Queues one write-only RX buffer of `len` bytes; returns its address.
    pub fn rx_buffer(&mut self, len: u32) -> u64 {
        let a = self.put_data(&vec![0u8; len as usize]);
        self.push_chain(&[(a, len, F_WRITE, 0)]);
        a
    }

    /// Reads `lens[i]` bytes at `addrs[i]`, concatenated.
    pub fn read_rx(&self, addrs: &[u64], lens: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for (&a, &l) in addrs.iter().zip(lens) {
            let mut b = vec![0u8; l];
            self.mem.read_slice(&mut b, GuestAddress(a)).expect("inside memory");
            out.extend_from_slice(&b);
        }
        out
    }

    /// The device's used index.
    pub fn used_idx(&self) -> u16 {
        self.r16(self.used + 2)
    }

    /// Every used element published so far, `(id, len)` (at most one ring's worth).
    pub fn used_elems(&self) -> Vec<(u32, u32)> {
        (0..self.used_idx().min(self.size))
            .map(|i| {
                let at = self.used + 4 + 8 * i as u64;
                let id: u32 = self.mem.read_obj(GuestAddress(at)).expect("inside memory");
                let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).expect("inside memory");
                (u32::from_le(id), u32::from_le(len))
            })
            .collect()
    }
}

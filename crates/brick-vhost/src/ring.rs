//! The device side of a split virtqueue (virtio 1.2 §2.7), over host mappings of guest
//! memory: what the data path runs per burst on the graph thread.
//!
//! virtio-queue's `Queue` stays where the vhost-user control thread records a queue's
//! configuration (ring addresses, size, base index, EVENT_IDX). At each burst the data path
//! takes that queue's lock once, reads the configuration into a [`SplitQueue`] (rebuilt only
//! when the addresses, the size or the memory map change), works on the rings directly and
//! writes the indexes back. Compared with virtio-queue's per-chain API this reads the avail
//! index once per burst, translates guest addresses through a small region table instead of a
//! `GuestMemory` lookup per access, and publishes the used index once per burst.
//!
//! Nothing from the guest is trusted: every guest range is checked against the memory map
//! before it is touched ([`GuestMap::host`]), a descriptor index outside the table, a chain
//! longer than the queue (a loop), a nested or empty indirect table, and an avail index that
//! jumps by more than the queue size are all errors, never panics.
//!
//! Memory model: guest memory is shared with a running guest. It is only ever reached through
//! raw pointers, never through Rust references; ring indexes and flags are read and written
//! with atomic accesses at their natural alignment (checked when the queue is set up), bulk
//! data with `ptr::copy_nonoverlapping`, as vm-memory does for its own bulk copies.

use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;

use brick_core::hint::prefetch;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
pub const DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the device writes this buffer (RX); otherwise it reads it (TX).
pub const DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
pub const DESC_F_INDIRECT: u16 = 4;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device asks the driver not to kick (without EVENT_IDX).
/// Most chains [`SplitQueue::prefetch`] looks ahead at: a burst.
pub const PREFETCH_MAX: usize = brick_core::BURST_SIZE;
const USED_F_NO_NOTIFY: u16 = 1;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`: the driver asks for no interrupt (without EVENT_IDX).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest split queue (virtio 1.2 §2.7: Queue Size is a power of 2 up to 32768).
pub const MAX_SIZE: u16 = 32768;

/// One guest memory region mapped in this process.
#[derive(Clone, Copy, Debug)]
struct Region {
    gpa: u64,
    len: u64,
    host: NonNull<u8>,
}

/// Guest memory as a table of host mappings: a guest-physical range becomes a host pointer
/// after a bounds check against one region. Holds the memory map alive, so every pointer it
/// returns stays valid for as long as the `GuestMap` (or a clone) lives.
#[derive(Clone)]
pub struct GuestMap {
    mem: Arc<GuestMemoryMmap<()>>,
    regions: Arc<[Region]>,
}

// SAFETY: the host pointers point into mappings owned by `mem` (an Arc shared by every clone),
// which are process-wide and stay mapped until the last clone is dropped; `GuestMap` itself
// hands out only raw pointers, whose use is the caller's concern.
unsafe impl Send for GuestMap {}
// SAFETY: as above; nothing in a `GuestMap` is mutated after construction.
unsafe impl Sync for GuestMap {}

impl std::fmt::Debug for GuestMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestMap").field("regions", &self.regions.len()).finish()
    }
}

impl GuestMap {
    /// The region table of `mem`.
    pub fn new(mem: Arc<GuestMemoryMmap<()>>) -> Self {
        let regions: Vec<Region> = mem
            .iter()
            .filter_map(|r| {
                Some(Region { gpa: r.start_addr().0, len: r.len(), host: NonNull::new(r.as_ptr())? })
            })
            .collect();
        GuestMap { mem, regions: regions.into() }
    }

    /// Whether this table was built from `mem` (the same map, not an equal one).
    pub fn is_of(&self, mem: &GuestMemoryMmap<()>) -> bool {
        std::ptr::eq(&*self.mem, mem)
    }

    /// Whether both tables come from the same memory map.
    pub fn same_as(&self, other: &GuestMap) -> bool {
        Arc::ptr_eq(&self.mem, &other.mem)
    }

    /// The host address of `len` bytes at guest address `gpa`, if the whole range lies in one
    /// region. `len` may be 0 (the address must still be inside a region).
    #[inline]
    pub fn host(&self, gpa: u64, len: usize) -> Option<NonNull<u8>> {
        for r in self.regions.iter() {
            let off = gpa.wrapping_sub(r.gpa);
            if off < r.len && (len as u64) <= r.len - off {
                // SAFETY: off < r.len, so the result stays inside the region's mapping.
                return Some(unsafe { r.host.add(off as usize) });
            }
        }
        None
    }
}

/// Where a split queue lives in guest memory, as the driver configured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Descriptor table (guest address).
    pub desc: u64,
    /// Driver area: the avail ring.
    pub avail: u64,
    /// Device area: the used ring.
    pub used: u64,
    /// Number of entries.
    pub size: u16,
    /// Whether VIRTIO_F_EVENT_IDX was negotiated.
    pub event_idx: bool,
}

impl QueueLayout {
    /// The layout recorded in virtio-queue's `Queue` by the vhost-user control thread.
    pub fn of(q: &Queue) -> Self {
        QueueLayout {
            desc: q.desc_table(),
            avail: q.avail_ring(),
            used: q.used_ring(),
            size: q.size(),
            event_idx: q.event_idx_enabled(),
        }
    }
}

/// Why a queue cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// The size is 0, not a power of two, or above 32768.
    #[error("queue size {0} is not a power of two up to 32768")]
    BadSize(u16),
    /// A ring is not aligned as the specification requires (desc 16, avail 2, used 4).
    #[error("ring address {0:#x} is misaligned")]
    Misaligned(u64),
    /// A ring is not inside one guest memory region.
    #[error("ring at {0:#x} is outside guest memory")]
    OutsideMemory(u64),
    /// The driver moved the avail index by more than the queue size.
    #[error("avail index moved by {0}, more than the queue size")]
    AvailJump(u16),
}

/// Why a descriptor chain was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A descriptor index outside its table.
    #[error("descriptor index out of range")]
    BadIndex,
    /// More descriptors than the table holds: the chain loops.
    #[error("descriptor chain loops")]
    Loop,
    /// An indirect table that is empty, not a multiple of 16 bytes, outside guest memory,
    /// nested in another, or combined with NEXT.
    #[error("bad indirect table")]
    BadIndirect,
}

/// One descriptor as read from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    /// Guest address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u32,
    /// `DESC_F_*` flags.
    pub flags: u16,
    /// Next descriptor of the chain, when `flags` has NEXT.
    pub next: u16,
}

impl Desc {
    /// Whether the device writes this buffer.
    #[inline]
    pub fn is_write_only(&self) -> bool {
        self.flags & DESC_F_WRITE != 0
    }
}

/// A split virtqueue seen by the device: host pointers to its three parts, the device's
/// indexes and its notification state.
pub struct SplitQueue {
    map: GuestMap,
    layout: QueueLayout,
    desc: NonNull<u8>,
    avail: NonNull<u8>,
    used: NonNull<u8>,
    /// size - 1. A word of its own: as a u16 beside `next_avail` the compiler read both
    /// with one 4-byte load, which cannot be forwarded from the 2-byte store of
    /// `next_avail` made by the previous `take` (a stall of ~20 cycles per packet).
    mask: usize,
    /// Next avail entry the device takes.
    pub next_avail: u16,
    /// Next used entry the device fills.
    pub next_used: u16,
    /// The avail index as last read: chains up to it are taken without reading it again.
    avail_seen: u16,
    /// Used index at the last interrupt decision (EVENT_IDX), if any since the start.
    signalled: Option<u16>,
    /// The CPU has PREFETCHW ([`has_prefetchw`]), read once here rather than per frame.
    prefetchw: bool,
}

// SAFETY: the pointers point into mappings kept alive by `map`; a SplitQueue is used by one
// thread at a time (it is moved, never shared).
unsafe impl Send for SplitQueue {}

impl std::fmt::Debug for SplitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplitQueue")
            .field("layout", &self.layout)
            .field("next_avail", &self.next_avail)
            .field("next_used", &self.next_used)
            .finish()
    }
}

impl SplitQueue {
    /// Sets up the device side of the queue at `layout` in `map`, starting at the given
    /// indexes. Every ring must be aligned and lie in one region.
    pub fn new(
        map: GuestMap,
        layout: QueueLayout,
        next_avail: u16,
        next_used: u16,
    ) -> Result<Self, RingError> {
        let size = layout.size;
        if size == 0 || !size.is_power_of_two() || size > MAX_SIZE {
            return Err(RingError::BadSize(size));
        }
        let n = size as usize;
        let place = |gpa: u64, align: u64, len: usize| {
            if gpa % align != 0 {
                return Err(RingError::Misaligned(gpa));
            }
            map.host(gpa, len).ok_or(RingError::OutsideMemory(gpa))
        };
        // With or without EVENT_IDX the trailing event field is reserved: require room for it.
        let desc = place(layout.desc, 16, 16 * n)?;
        let avail = place(layout.avail, 2, 6 + 2 * n)?;
        let used = place(layout.used, 4, 6 + 8 * n)?;
        Ok(SplitQueue {
            map,
            layout,
            desc,
            avail,
            used,
            mask: size as usize - 1,
            next_avail,
            next_used,
            avail_seen: next_avail,
            signalled: None,
            prefetchw: has_prefetchw(),
        })
    }

    /// The layout this queue was built for.
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The memory map this queue reads through.
    pub fn map(&self) -> &GuestMap {
        &self.map
    }

    /// Takes the device indexes recorded in `q` (set by the control thread).
    #[inline]
    pub fn load_indexes(&mut self, q: &Queue) {
        self.next_avail = q.next_avail();
        if q.next_used() != self.next_used {
            // Someone else moved the used index (SET_VRING_BASE/ADDR after a reset or a
            // reconnection): the last interrupt decision no longer describes this ring.
            self.next_used = q.next_used();
            self.signalled = None;
        }
        self.avail_seen = self.next_avail;
    }

    /// Records the device indexes in `q`, where GET_VRING_BASE reads them.
    #[inline]
    pub fn store_indexes(&self, q: &mut Queue) {
        q.set_next_avail(self.next_avail);
        q.set_next_used(self.next_used);
    }

    #[inline]
    fn avail_u16(&self, byte_off: usize) -> &AtomicU16 {
        // SAFETY: `byte_off` is at most 4 + 2 * mask (+2 for used_event), inside the
        // 6 + 2 * size bytes checked in `new`; the avail ring is 2-aligned (checked), so
        // every u16 field is; the mapping lives as long as `self.map`. Guest memory is
        // shared with the guest, hence an atomic view.
        unsafe { AtomicU16::from_ptr(self.avail.as_ptr().add(byte_off).cast()) }
    }

    #[inline]
    fn used_u16(&self, byte_off: usize) -> &AtomicU16 {
        // SAFETY: `byte_off` is 0, 2 or 4 + 8 * size (avail_event), inside the 6 + 8 * size
        // bytes checked in `new`; the used ring is 4-aligned (checked); see `avail_u16`.
        unsafe { AtomicU16::from_ptr(self.used.as_ptr().add(byte_off).cast()) }
    }

    /// The driver's avail index (acquire: entries and descriptors it covers are visible).
    #[inline]
    pub fn avail_idx(&self) -> u16 {
        u16::from_le(self.avail_u16(2).load(Ordering::Acquire))
    }

    /// How many chains the driver made available and the device has not taken. The avail
    /// index is read only when the chains seen at the last read are all taken: once per burst
    /// on a busy queue, which keeps its cache line from bouncing between the two sides.
    #[inline]
    pub fn pending(&mut self) -> Result<u16, RingError> {
        let mut n = self.avail_seen.wrapping_sub(self.next_avail);
        if n == 0 {
            self.avail_seen = self.avail_idx();
            n = self.avail_seen.wrapping_sub(self.next_avail);
        }
        if n > self.layout.size {
            return Err(RingError::AvailJump(n));
        }
        Ok(n)
    }

    /// Takes the head of the next available chain. Call only when [`pending`](Self::pending)
    /// said one is there.
    #[inline]
    pub fn take(&mut self) -> u16 {
        let slot = self.next_avail as usize & self.mask;
        self.next_avail = self.next_avail.wrapping_add(1);
        u16::from_le(self.avail_u16(4 + 2 * slot).load(Ordering::Relaxed))
    }

    /// Starts loading the first buffer of each of the next `n` available chains (at most
    /// [`PREFETCH_MAX`]), their descriptors, and the used elements they will fill, into the
    /// cache, so that the copies of a burst overlap the memory latency instead of waiting
    /// for each line in turn: the guest wrote these lines on another core, and what one
    /// line costs from there is set by the host's placement of the two vCPUs (55 to 380 ns
    /// a round trip on the development machine). The descriptors are all requested before
    /// the first is read for its buffer's address, so their misses overlap too. Only hints:
    /// nothing is read or checked here beyond the ring itself, and a bad index or address
    /// is simply not prefetched.
    /// `for_write`: the device will write the buffers (RX): ask for the lines in exclusive
    /// state (PREFETCHW where the CPU has it), saving the second transfer a write to a
    /// shared line costs. The used elements are always asked for that way.
    #[inline]
    pub fn prefetch(&mut self, n: u16, for_write: bool) {
        let n = n.min(self.pending().unwrap_or(0)).min(PREFETCH_MAX as u16) as usize;
        let mut heads = [0u16; PREFETCH_MAX];
        for (k, h) in heads[..n].iter_mut().enumerate() {
            let slot = self.next_avail.wrapping_add(k as u16) as usize & self.mask;
            *h = u16::from_le(self.avail_u16(4 + 2 * slot).load(Ordering::Relaxed));
            if *h < self.layout.size {
                // SAFETY: head < size: the descriptor lies in the table checked in `new`.
                prefetch(unsafe { self.desc.as_ptr().add(16 * *h as usize) });
            }
        }
        for k in 0..n {
            let off = 4 + 8 * (self.next_used.wrapping_add(k as u16) as usize & self.mask);
            if k == 0 || off % 64 < 8 {
                // SAFETY: off < 4 + 8 * size: inside the used ring checked in `new`.
                prefetch_write(unsafe { self.used.as_ptr().add(off) }, self.prefetchw);
            }
        }
        for &head in heads[..n].iter().filter(|&&h| h < self.layout.size) {
            let d = self.chain(head).read(head);
            if let Some(p) = self.map.host(d.addr, (d.len as usize).min(128)) {
                let p = p.as_ptr();
                let hint = |p| if for_write { prefetch_write(p, self.prefetchw) } else { prefetch(p) };
                hint(p);
                if d.len > 64 {
                    // SAFETY: the first min(len, 128) bytes were checked by `host`.
                    hint(unsafe { p.add(64) });
                }
            }
        }
    }

    /// The head of the next available chain, without taking it. Call only when
    /// [`pending`](Self::pending) said one is there.
    #[inline]
    pub fn peek(&self) -> u16 {
        let slot = self.next_avail as usize & self.mask;
        u16::from_le(self.avail_u16(4 + 2 * slot).load(Ordering::Relaxed))
    }

    /// Descriptor `head` of the ring's table, or `None` when `head` is outside the table.
    /// A chain's first descriptor read once: when it has neither NEXT nor INDIRECT it is the
    /// whole chain (the common case for small frames), and the data path copies it without
    /// walking [`chain`](Self::chain).
    #[inline]
    pub fn head_desc(&self, head: u16) -> Option<Desc> {
        // SAFETY: head < size: the descriptor lies in the table checked in `new`.
        (head < self.layout.size).then(|| unsafe { read_desc(self.desc, head) })
    }

    /// Gives back the last `n` chains taken, to be taken again later.
    #[inline]
    pub fn untake(&mut self, n: u16) {
        self.next_avail = self.next_avail.wrapping_sub(n);
    }

    /// The descriptors of the chain starting at `head`.
    #[inline]
    pub fn chain(&self, head: u16) -> Chain<'_> {
        Chain {
            map: &self.map,
            table: self.desc,
            entries: self.layout.size,
            index: head,
            left: self.layout.size,
            indirect: false,
            done: false,
        }
    }

    /// Hands chain `head` back to the driver with `len` bytes written. Visible to the driver
    /// once [`publish_used`](Self::publish_used) runs.
    #[inline]
    pub fn put_used(&mut self, head: u16, len: u32) {
        let slot = self.next_used as usize & self.mask;
        // SAFETY: the element at 4 + 8 * slot (slot < size) is inside the used ring checked in
        // `new`, and 4-aligned (the ring is); see `avail_u16`.
        unsafe {
            let elem = self.used.as_ptr().add(4 + 8 * slot);
            AtomicU32::from_ptr(elem.cast()).store((head as u32).to_le(), Ordering::Relaxed);
            AtomicU32::from_ptr(elem.add(4).cast()).store(len.to_le(), Ordering::Relaxed);
        }
        self.next_used = self.next_used.wrapping_add(1);
    }

    /// Publishes every used element put so far (release: the elements and the buffers'
    /// contents are visible before the index).
    #[inline]
    pub fn publish_used(&mut self) {
        self.used_u16(2).store(self.next_used.to_le(), Ordering::Release);
    }

    /// Whether the driver wants an interrupt for what was published since the last call
    /// (EVENT_IDX: `used_event` crossed; otherwise: NO_INTERRUPT clear).
    pub fn needs_interrupt(&mut self) -> bool {
        // The used index store must be visible before the driver's event field is read.
        fence(Ordering::SeqCst);
        if !self.layout.event_idx {
            return u16::from_le(self.avail_u16(0).load(Ordering::Relaxed)) & AVAIL_F_NO_INTERRUPT == 0;
        }
        let new = self.next_used;
        let Some(old) = self.signalled.replace(new) else { return true };
        let event = u16::from_le(self.avail_u16(4 + 2 * self.layout.size as usize).load(Ordering::Relaxed));
        // virtio 1.2 §2.7.10: interrupt when `event` lies in (old, new].
        new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
    }

    /// Asks the driver to kick for the next chain it makes available, then reports whether
    /// some are already there (they may have come before the request was seen).
    pub fn enable_kicks(&mut self) -> bool {
        if self.layout.event_idx {
            let at = 4 + 8 * self.layout.size as usize;
            self.used_u16(at).store(self.next_avail.to_le(), Ordering::Relaxed);
        } else {
            let flags = self.used_u16(0);
            let f = u16::from_le(flags.load(Ordering::Relaxed)) & !USED_F_NO_NOTIFY;
            flags.store(f.to_le(), Ordering::Relaxed);
        }
        // The request must be visible before the avail index is read again.
        fence(Ordering::SeqCst);
        self.avail_idx() != self.next_avail
    }

    /// Asks the driver not to kick while the device polls. With EVENT_IDX there is nothing to
    /// write: the driver kicks only when its avail index crosses `avail_event`, which stays
    /// behind while the device polls (at most one kick per 65536 chains).
    pub fn disable_kicks(&mut self) {
        if !self.layout.event_idx {
            let flags = self.used_u16(0);
            let f = u16::from_le(flags.load(Ordering::Relaxed)) | USED_F_NO_NOTIFY;
            flags.store(f.to_le(), Ordering::Relaxed);
        }
    }
}

/// A cache hint for the line holding `p`, to be written: PREFETCHW when `prefetchw` (the
/// CPU has it, [`has_prefetchw`]), else a read hint. (The compiler's write hint is a plain
/// PREFETCHT0 unless the whole build targets a CPU with the instruction.)
#[inline(always)]
fn prefetch_write(p: *const u8, prefetchw: bool) {
    #[cfg(target_arch = "x86_64")]
    if prefetchw {
        // SAFETY: PREFETCHW never faults, whatever the address, and changes no register,
        // flag or memory contents; the caller checked that the CPU has it.
        unsafe { std::arch::asm!("prefetchw [{0}]", in(reg) p, options(nostack, preserves_flags, readonly)) };
        return;
    }
    prefetch(p)
}

/// Whether the CPU has PREFETCHW (CPUID 8000_0001h, ECX bit 8: "3dnowprefetch" in
/// /proc/cpuinfo), asked once per process (CPUID traps to the hypervisor in a VM).
pub fn has_prefetchw() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            // SAFETY: CPUID exists on every x86_64 CPU; leaf 8000_0001h is asked only when
            // the highest extended leaf reaches it.
            #[allow(unused_unsafe)]
            unsafe {
                __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).ecx & (1 << 8) != 0
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Iterator over the descriptors of one chain, following an indirect table if the chain
/// has one. Yields an error (and then ends) on a malformed chain. A chain that ends with
/// `None` without an error is complete.
pub struct Chain<'a> {
    map: &'a GuestMap,
    table: NonNull<u8>,
    entries: u16,
    index: u16,
    left: u16,
    indirect: bool,
    done: bool,
}

/// Reads descriptor `i` of the table at `table`.
///
/// # Safety
/// `table` points to at least 16 * (i + 1) bytes of guest memory checked against the map.
#[inline(always)]
unsafe fn read_desc(table: NonNull<u8>, i: u16) -> Desc {
    // SAFETY: the caller's range; an indirect table may be unaligned, hence unaligned
    // volatile reads. Volatile: the guest may write the table concurrently.
    unsafe {
        let p = table.as_ptr().add(16 * i as usize);
        let addr = std::ptr::read_volatile(p.cast::<[u8; 8]>());
        let rest = std::ptr::read_volatile(p.add(8).cast::<[u8; 8]>());
        Desc {
            addr: u64::from_le_bytes(addr),
            len: u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]),
            flags: u16::from_le_bytes([rest[4], rest[5]]),
            next: u16::from_le_bytes([rest[6], rest[7]]),
        }
    }
}

impl Chain<'_> {
    #[inline]
    fn read(&self, i: u16) -> Desc {
        // SAFETY: i < entries, and `table` points to 16 * entries bytes of guest memory
        // checked against the map (the ring's table in `SplitQueue::new`, an indirect table in
        // `next`).
        unsafe { read_desc(self.table, i) }
    }

    #[inline]
    fn fail(&mut self, e: ChainError) -> Option<Result<Desc, ChainError>> {
        self.done = true;
        Some(Err(e))
    }
}

impl Iterator for Chain<'_> {
    type Item = Result<Desc, ChainError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.index >= self.entries {
                return self.fail(ChainError::BadIndex);
            }
            if self.left == 0 {
                return self.fail(ChainError::Loop);
            }
            self.left -= 1;
            let d = self.read(self.index);
            if d.flags & DESC_F_INDIRECT != 0 {
                // virtio 1.2 §2.7.5.3.1: no nested tables, no NEXT with INDIRECT.
                if self.indirect || d.flags & DESC_F_NEXT != 0 || d.len == 0 || d.len % 16 != 0 {
                    return self.fail(ChainError::BadIndirect);
                }
                let n = d.len / 16;
                if n > MAX_SIZE as u32 {
                    return self.fail(ChainError::BadIndirect);
                }
                let Some(t) = self.map.host(d.addr, d.len as usize) else {
                    return self.fail(ChainError::BadIndirect);
                };
                self.table = t;
                self.entries = n as u16;
                self.left = n as u16;
                self.index = 0;
                self.indirect = true;
                continue;
            }
            if d.flags & DESC_F_NEXT != 0 {
                self.index = d.next;
            } else {
                self.done = true;
            }
            return Some(Ok(d));
        }
    }
}

#[cfg(test)]
mod tests;

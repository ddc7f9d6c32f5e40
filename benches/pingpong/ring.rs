//! The driver side of a split virtqueue, in memory shared with a vhost-user backend (another
//! process): descriptors and the avail ring are ours, the used ring is the device's. Every
//! access to ring memory is volatile or atomic, since the device reads and writes it
//! concurrently; indices are free-running `u16`s that wrap, as the virtio spec has them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{fence, AtomicU16, Ordering};

/// Entries per queue (a power of two; its rings fit in [`RING_AREA`]).
pub const QUEUE_SIZE: u16 = 1024;
/// `VRING_DESC_F_WRITE`: the device writes the buffer (receive).
pub const DESC_F_WRITE: u16 = 2;
/// `VRING_AVAIL_F_NO_INTERRUPT`: we poll, the device need not signal its call eventfd.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VRING_USED_F_NO_NOTIFY`: the device polls, we need not kick it.
pub const USED_F_NO_NOTIFY: u16 = 1;

/// Offsets of a queue's parts inside its area: descriptor table (16 bytes an entry), avail
/// ring (6 + 2 per entry), used ring (6 + 8 per entry), each page aligned.
pub const DESC_OFF: usize = 0;
/// See [`DESC_OFF`].
pub const AVAIL_OFF: usize = 0x4000;
/// See [`DESC_OFF`].
pub const USED_OFF: usize = 0x5000;
/// Bytes of one queue's area.
pub const RING_AREA: usize = 0x8000;
// Each part fits before the next, and the used ring inside the area.
const _: () = {
    let n = QUEUE_SIZE as usize;
    assert!(n.is_power_of_two() && DESC_OFF + 16 * n <= AVAIL_OFF);
    assert!(AVAIL_OFF + 6 + 2 * n <= USED_OFF && USED_OFF + 6 + 8 * n <= RING_AREA);
};

/// Anonymous shared memory (a memfd mapped `MAP_SHARED`): the "guest memory" the backend
/// maps from the descriptor we pass it with `SET_MEM_TABLE`.
pub struct SharedMem {
    ptr: *mut u8,
    len: usize,
    fd: OwnedFd,
}

impl SharedMem {
    /// `len` bytes (a multiple of the page size), zeroed.
    pub fn new(len: usize) -> std::io::Result<SharedMem> {
        // SAFETY: a plain memfd_create(2) with a NUL-terminated name; checked below.
        let raw = unsafe { libc::memfd_create(c"vhost-pingpong".as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate(2) on our descriptor.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new shared mapping of the whole file; the result is checked, and the
        // mapping is only unmapped in Drop.
        let ptr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SharedMem { ptr: ptr.cast(), len, fd })
    }

    /// The mapping's address in this process (what vhost-user calls the frontend's address).
    pub fn addr(&self) -> *mut u8 {
        self.ptr
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memfd, for `SET_MEM_TABLE`.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl Drop for SharedMem {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no reference into it outlives
        // `self` (rings and buffers borrow it through the owning `Device`).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One split virtqueue seen from the driver.
pub struct Vring {
    base: *mut u8,
    /// Our next avail index (published with [`Vring::publish`]).
    next_avail: u16,
    /// The used index up to which we have consumed entries.
    last_used: u16,
}

impl Vring {
    /// A queue laid out at `base` ([`RING_AREA`] bytes, page aligned): avail and used
    /// indices start at 0, as `SET_VRING_BASE 0` tells the device.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of [`RING_AREA`] bytes, page aligned, for as
    /// long as the `Vring` is used, and only this `Vring` (and the device) may touch it.
    pub unsafe fn new(base: *mut u8) -> Vring {
        // SAFETY: the caller gives us the area; zero it (flags, indices, entries).
        unsafe { ptr::write_bytes(base, 0, RING_AREA) };
        Vring { base, next_avail: 0, last_used: 0 }
    }

    fn u16_at(&self, off: usize) -> &AtomicU16 {
        debug_assert!(off % 2 == 0 && off + 2 <= RING_AREA);
        // SAFETY: inside the area given to `new` and 2-byte aligned (the base is page
        // aligned, every offset used is even); AtomicU16 has the layout of u16.
        unsafe { &*(self.base.add(off) as *const AtomicU16) }
    }

    fn slot(&self, idx: u16) -> usize {
        (idx & (QUEUE_SIZE - 1)) as usize
    }

    /// Writes descriptor `id`: one buffer at guest address `addr`, no chaining.
    pub fn write_desc(&mut self, id: u16, addr: u64, len: u32, flags: u16) {
        assert!(id < QUEUE_SIZE, "descriptor {id} outside the table");
        let d = DESC_OFF + 16 * id as usize;
        // SAFETY: the 16-byte entry lies inside the area (id < QUEUE_SIZE) and is aligned;
        // the device does not read it until the entry is published in the avail ring.
        unsafe {
            ptr::write_volatile(self.base.add(d) as *mut u64, addr.to_le());
            ptr::write_volatile(self.base.add(d + 8) as *mut u32, len.to_le());
            ptr::write_volatile(self.base.add(d + 12) as *mut u16, flags.to_le());
            ptr::write_volatile(self.base.add(d + 14) as *mut u16, 0);
        }
    }

    /// Sets our avail flags (e.g. [`AVAIL_F_NO_INTERRUPT`]).
    pub fn set_avail_flags(&self, flags: u16) {
        self.u16_at(AVAIL_OFF).store(flags.to_le(), Ordering::Release);
    }

    /// Queues descriptor `id` in the avail ring; the device sees it after [`Vring::publish`].
    pub fn push_avail(&mut self, id: u16) {
        let slot = AVAIL_OFF + 4 + 2 * self.slot(self.next_avail);
        self.u16_at(slot).store(id.to_le(), Ordering::Relaxed);
        self.next_avail = self.next_avail.wrapping_add(1);
    }

    /// Publishes the avail index: the release store orders the descriptors and slots written
    /// before it.
    pub fn publish(&self) {
        self.u16_at(AVAIL_OFF + 2).store(self.next_avail.to_le(), Ordering::Release);
    }

    /// Whether the device wants a kick for what was just published: the full fence keeps the
    /// used flags load from moving above the avail index store, else we could read a stale
    /// NO_NOTIFY while the device goes to sleep without seeing our entry.
    pub fn device_wants_kick(&self) -> bool {
        fence(Ordering::SeqCst);
        u16::from_le(self.u16_at(USED_OFF).load(Ordering::Relaxed)) & USED_F_NO_NOTIFY == 0
    }

    /// The next used entry (descriptor id, bytes written), if the device returned one.
    pub fn pop_used(&mut self) -> Option<(u16, u32)> {
        let idx = u16::from_le(self.u16_at(USED_OFF + 2).load(Ordering::Acquire));
        if idx == self.last_used {
            return None;
        }
        let e = USED_OFF + 4 + 8 * self.slot(self.last_used);
        // SAFETY: the 8-byte entry lies inside the area and is aligned; the acquire load of
        // the used index above orders these reads after the device's writes of the entry.
        let (id, len) = unsafe {
            (
                u32::from_le(ptr::read_volatile(self.base.add(e) as *const u32)),
                u32::from_le(ptr::read_volatile(self.base.add(e + 4) as *const u32)),
            )
        };
        self.last_used = self.last_used.wrapping_add(1);
        // A device returning an id outside the table is broken: report it as such, never
        // index with it.
        Some((u16::try_from(id).ok().filter(|&i| i < QUEUE_SIZE).unwrap_or(u16::MAX), len))
    }

    /// Entries published and not yet returned by the device.
    pub fn in_flight(&self) -> u16 {
        self.next_avail.wrapping_sub(self.last_used)
    }

    /// Starts both indices at `idx` (tests of index wrap-around only).
    #[cfg(test)]
    pub(crate) fn start_at(&mut self, idx: u16) {
        self.next_avail = idx;
        self.last_used = idx;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device side, minimal: takes avail entries in order and returns each as used.
    struct FakeDevice {
        base: *mut u8,
        last_avail: u16,
        used: u16,
    }

    impl FakeDevice {
        fn r16(&self, off: usize) -> u16 {
            // SAFETY: test memory, inside the ring area.
            unsafe { ptr::read_volatile(self.base.add(off) as *const u16) }
        }
        fn w32(&self, off: usize, v: u32) {
            // SAFETY: test memory, inside the ring area.
            unsafe { ptr::write_volatile(self.base.add(off) as *mut u32, v) }
        }
        /// Returns every published entry as used with `len` bytes; how many.
        fn consume(&mut self, len: u32) -> usize {
            let avail = self.r16(AVAIL_OFF + 2);
            let mut n = 0;
            while self.last_avail != avail {
                let id = self.r16(AVAIL_OFF + 4 + 2 * (self.last_avail % QUEUE_SIZE) as usize);
                let e = USED_OFF + 4 + 8 * (self.used % QUEUE_SIZE) as usize;
                self.w32(e, id as u32);
                self.w32(e + 4, len);
                self.used = self.used.wrapping_add(1);
                self.last_avail = self.last_avail.wrapping_add(1);
                n += 1;
            }
            // SAFETY: test memory.
            unsafe { ptr::write_volatile(self.base.add(USED_OFF + 2) as *mut u16, self.used) };
            n
        }
        fn set_used_flags(&self, f: u16) {
            // SAFETY: test memory.
            unsafe { ptr::write_volatile(self.base.add(USED_OFF) as *mut u16, f) };
        }
    }

    #[test]
    fn indices_wrap_past_u16_max() {
        let mem = SharedMem::new(RING_AREA).unwrap();
        // SAFETY: the mapping outlives the ring, nothing else uses it.
        let mut ring = unsafe { Vring::new(mem.addr()) };
        let start = u16::MAX - 5;
        ring.start_at(start);
        let mut dev = FakeDevice { base: mem.addr(), last_avail: start, used: start };
        // SAFETY: test memory: the device's used index starts where ours does.
        unsafe { ptr::write_volatile(mem.addr().add(USED_OFF + 2) as *mut u16, start) };
        for i in 0..20u16 {
            let id = i % QUEUE_SIZE;
            ring.write_desc(id, 0x1000 * i as u64, 64, 0);
            ring.push_avail(id);
            ring.publish();
            assert_eq!(ring.in_flight(), 1);
            assert_eq!(dev.consume(60 + i as u32), 1);
            assert_eq!(ring.pop_used(), Some((id, 60 + i as u32)));
            assert_eq!(ring.pop_used(), None);
            assert_eq!(ring.in_flight(), 0);
        }
        // The index wrapped: 20 entries from 65530.
        assert_eq!(dev.r16(AVAIL_OFF + 2), start.wrapping_add(20));
    }

    #[test]
    fn a_full_ring_drains_in_order() {
        let mem = SharedMem::new(RING_AREA).unwrap();
        // SAFETY: the mapping outlives the ring, nothing else uses it.
        let mut ring = unsafe { Vring::new(mem.addr()) };
        let mut dev = FakeDevice { base: mem.addr(), last_avail: 0, used: 0 };
        for id in 0..QUEUE_SIZE {
            ring.write_desc(id, 0, 2048, DESC_F_WRITE);
            ring.push_avail(id);
        }
        ring.publish();
        assert_eq!(ring.in_flight(), QUEUE_SIZE);
        assert_eq!(dev.consume(100), QUEUE_SIZE as usize);
        for id in 0..QUEUE_SIZE {
            assert_eq!(ring.pop_used(), Some((id, 100)));
        }
        assert_eq!(ring.pop_used(), None);
    }

    #[test]
    fn kicks_only_when_the_device_asks() {
        let mem = SharedMem::new(RING_AREA).unwrap();
        // SAFETY: the mapping outlives the ring, nothing else uses it.
        let ring = unsafe { Vring::new(mem.addr()) };
        let dev = FakeDevice { base: mem.addr(), last_avail: 0, used: 0 };
        assert!(ring.device_wants_kick());
        dev.set_used_flags(USED_F_NO_NOTIFY);
        assert!(!ring.device_wants_kick());
    }

    #[test]
    fn a_bad_used_id_is_flagged_not_used() {
        let mem = SharedMem::new(RING_AREA).unwrap();
        // SAFETY: the mapping outlives the ring, nothing else uses it.
        let mut ring = unsafe { Vring::new(mem.addr()) };
        let dev = FakeDevice { base: mem.addr(), last_avail: 0, used: 0 };
        dev.w32(USED_OFF + 4, 9999);
        // SAFETY: test memory.
        unsafe { ptr::write_volatile(mem.addr().add(USED_OFF + 2) as *mut u16, 1) };
        assert_eq!(ring.pop_used(), Some((u16::MAX, 0)));
    }
}

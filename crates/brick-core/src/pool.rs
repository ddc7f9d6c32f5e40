//! A bounded pool of packet buffers with per-thread caches.
//!
//! Every buffer is allocated when the pool is created. Free buffers live in a global
//! lock-free queue of *batches* and in small per-thread caches, as in DPDK's mempool: taking
//! or giving back a buffer touches only the calling thread's cache, and the shared queue is
//! touched once per batch. A packet holds a plain pointer to its pool (no reference count per
//! packet, so packets crossing cores share no hot cache line).
//!
//! # When the memory goes
//!
//! A pool's shared state is freed when nothing can reach it any more: no [`PacketPool`]
//! handle, no packet holding one of its buffers, no thread cache. It is counted, like an
//! `Arc`, but only where the count already had to move: one atomic word (`refs`) holds
//!
//! - 1 while any handle exists (the handles count themselves apart, in `handles`);
//! - 1 per thread cache of the pool (taken once per thread and pool);
//! - 1 per buffer *outside* the shared queue: in a thread cache or in a packet.
//!
//! Buffers cross between the shared queue and a cache a batch at a time, and that transfer
//! was already an atomic add on a counter of queued buffers: `refs` replaces that counter
//! (the free buffers are `capacity - (refs - 1 - caches)`). Taking a packet from a cache or
//! giving one back to it changes nothing shared, as before. So a packet that outlives every
//! handle keeps the pool, its own buffer included, alive; whoever drops the last reference,
//! on any thread, frees the pool with the buffers still queued.
//!
//! When the last handle goes, the pool *closes*: its queued buffers and the calling
//! thread's cache are freed at once, and each buffer that comes back later is freed (and the
//! cache of the thread giving it back, if it has one). A thread that cached buffers of the
//! pool and never touches it again keeps them (at most [`MAX_CACHED`]) and the pool's
//! bookkeeping until it uses a new pool or exits.
//!
//! # Which buffers a thread reuses
//!
//! A cache is a stack: the buffer given back last is taken first, while its lines are still
//! in this core's cache. The shared queue is first in, first out, so every buffer that goes
//! through it comes back cold, after all the others. A cache therefore holds room for a few
//! bursts both ways ([`MAX_CACHED`] in a large pool) and, when it is full, hands the queue
//! the buffers it was given back *earliest*: a thread that takes and gives back bursts of up
//! to 64 settles on a fixed set of warm buffers and stops touching the queue. (With room for
//! one burst only, as before, every 64-frame burst swapped a batch with the queue, the thread
//! walked through the whole pool, and depending on where in that cycle its bursts fell,
//! copies into the buffers cost twice as much for seconds at a time.)

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam::queue::ArrayQueue;

use crate::packet::Packet;

/// The minimum headroom a pool reserves in front of every packet: room for VXLAN over IPv6
/// (14 + 40 + 8 + 8 = 70 bytes) plus a VLAN tag, with margin.
pub const MIN_HEADROOM: usize = 128;

/// Largest number of buffers moved between a thread cache and the shared queue at once.
const MAX_BATCH: usize = 32;

/// Most free buffers one thread caches of one pool: room for four 64-frame bursts, so that a
/// thread taking a burst from each of a few ports before giving them back keeps reusing the
/// same warm buffers. Small pools cache less (a 32nd of their buffers, at least two batches),
/// so threads cannot hoard them.
pub const MAX_CACHED: usize = 8 * MAX_BATCH;

/// Sizing of a [`PacketPool`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Number of buffers.
    pub count: usize,
    /// Bytes reserved in front of the data of a fresh packet (at least [`MIN_HEADROOM`]).
    pub headroom: usize,
    /// Bytes available for data after the headroom (2048 fits a 1500-byte MTU frame with room
    /// for growth; use 65536 + some for GSO super-frames).
    pub data_room: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { count: 8192, headroom: MIN_HEADROOM, data_room: 2048 }
    }
}

/// Why a pool cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolError {
    /// `count` was zero.
    #[error("a packet pool needs at least one buffer")]
    Empty,
    /// `headroom` below [`MIN_HEADROOM`].
    #[error("headroom {0} is below the minimum of {MIN_HEADROOM} bytes")]
    HeadroomTooSmall(usize),
    /// A buffer would not be addressable with 32-bit offsets.
    #[error("buffer size {0} is too large")]
    BufferTooLarge(usize),
    /// More buffers than the pool's reference count can tell apart.
    #[error("a packet pool holds at most {max} buffers, not {count}")]
    TooMany {
        /// Buffers asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Most buffers in one pool: `refs` must count every buffer, every thread cache and the
/// handles without overflowing (far beyond any memory: a buffer is at least 128 bytes).
const MAX_COUNT: usize = usize::MAX / 4;

type Batch = Vec<Box<[u8]>>;

pub(crate) struct PoolShared {
    batches: ArrayQueue<Batch>,
    empty_batches: ArrayQueue<Batch>,
    /// Handles (as one), thread caches and buffers outside `batches`: see the module
    /// documentation. The pool is freed when it falls to zero.
    refs: AtomicUsize,
    /// Thread caches of this pool (statistics only: `available`).
    caches: AtomicUsize,
    batch: usize,
    /// A thread cache holding this many buffers gives its earliest batch back to the queue.
    cache_max: usize,
    capacity: usize,
    headroom: usize,
    buf_size: usize,
    handles: AtomicUsize,
    closed: AtomicBool,
    exhausted: AtomicU64,
    /// Tests: told when the pool is freed.
    #[cfg(test)]
    freed: Option<std::sync::Arc<AtomicUsize>>,
}

#[cfg(test)]
impl Drop for PoolShared {
    fn drop(&mut self) {
        if let Some(f) = &self.freed {
            f.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A counted pointer to a pool's shared state (see the module documentation): a handle, a
/// thread cache or a buffer outside the queue stands behind every copy in use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolRef(NonNull<PoolShared>);

// SAFETY: `PoolShared` is `Sync` (atomics and lock-free queues), and a `PoolRef` is only used
// while a reference it stands for is held, like an `Arc<PoolShared>`, which is `Send + Sync`.
unsafe impl Send for PoolRef {}
// SAFETY: as above.
unsafe impl Sync for PoolRef {}

impl PoolRef {
    /// The shared state.
    ///
    /// # Safety
    /// The caller holds one of the pool's references (a handle, a thread cache, a buffer
    /// outside the queue) for as long as it uses the result.
    #[inline(always)]
    unsafe fn shared<'a>(self) -> &'a PoolShared {
        // SAFETY: the pool is alive while a reference is held (caller), and it is only ever
        // accessed through shared references.
        unsafe { self.0.as_ref() }
    }

    /// Drops `n` references, and frees the pool if they were the last.
    ///
    /// # Safety
    /// The caller holds `n` references and uses none of them afterwards.
    unsafe fn release(self, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: the caller's `n` references keep the pool alive until this subtraction.
        let prev = unsafe { self.shared() }.refs.fetch_sub(n, Ordering::Release);
        debug_assert!(prev >= n, "pool reference count underflow");
        if prev == n {
            // Every other user released with `Release`: see all they did before freeing.
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference, so nothing can reach the pool any more;
            // it was made by `Box::into_raw` in `PacketPool::new` and is freed once, here.
            drop(unsafe { Box::from_raw(self.0.as_ptr()) });
        }
    }

    /// Gives a buffer back (called by `Packet::drop`, on any thread).
    ///
    /// # Safety
    /// `buf` was taken from this pool and is given back once.
    #[inline]
    pub(crate) unsafe fn give_back(self, buf: Box<[u8]>) {
        // SAFETY: `buf` is outside the queue, so it holds a reference until it goes back.
        let shared = unsafe { self.shared() };
        if shared.closed.load(Ordering::Relaxed) {
            // SAFETY: as above; the buffer's reference is handed over.
            return unsafe { self.give_back_closed(buf) };
        }
        let mut buf = Some(buf);
        let _ = CACHES.try_with(|c| {
            let mut c = c.borrow_mut();
            let e = c.entry(self);
            if let Some(b) = buf.take() {
                e.bufs.push(b);
            }
            if e.bufs.len() >= shared.cache_max {
                shared.push_coldest_batch_from(&mut e.bufs);
                // SAFETY: those buffers' references go with them into the queue; the cache
                // still holds its own, so this is never the last.
                unsafe { self.release(shared.batch) };
            }
        });
        if let Some(b) = buf {
            // The thread is exiting and its cache is gone: straight to the shared queue.
            let mut tmp = vec![b];
            shared.push_batch_from(&mut tmp, 1);
            // SAFETY: the buffer's reference, not used again (`shared` is not touched below).
            unsafe { self.release(1) };
        }
    }

    /// [`give_back`](Self::give_back) once the pool is closed: frees the buffer, and this
    /// thread's cache of the pool if it has one.
    ///
    /// # Safety
    /// As `give_back`.
    #[cold]
    #[inline(never)]
    unsafe fn give_back_closed(self, buf: Box<[u8]>) {
        drop(buf);
        let cache =
            CACHES.try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.remove(self))).ok().flatten();
        // SAFETY: the buffer's reference, plus the cache's and its buffers' if one was
        // removed; none is used again.
        unsafe { self.release(1 + cache.map_or(0, LocalCache::retire_closed)) };
    }
}

/// One thread's cache of one pool; holds a reference on the pool.
struct LocalCache {
    pool: PoolRef,
    bufs: Vec<Box<[u8]>>,
}

impl LocalCache {
    /// Frees the cached buffers of a closed pool; returns the references to release (the
    /// buffers' and the cache's own).
    fn retire_closed(mut self) -> usize {
        // SAFETY: the cache holds a reference until the caller releases it.
        unsafe { self.pool.shared() }.caches.fetch_sub(1, Ordering::Relaxed);
        let n = self.bufs.len();
        self.bufs = Vec::new();
        n + 1
    }

    /// Gives the cached buffers back to the queue (or frees them if the pool closed) and
    /// releases the cache's references.
    fn retire(mut self) {
        let n = self.bufs.len();
        // SAFETY: the cache holds a reference until the release below.
        let shared = unsafe { self.pool.shared() };
        shared.caches.fetch_sub(1, Ordering::Relaxed);
        while !self.bufs.is_empty() {
            let k = self.bufs.len().min(shared.batch);
            shared.push_batch_from(&mut self.bufs, k);
        }
        // SAFETY: the buffers' references went with them; the cache's own goes now. `shared`
        // is not used again.
        unsafe { self.pool.release(n + 1) };
    }
}

#[derive(Default)]
struct LocalCaches {
    entries: Vec<LocalCache>,
}

impl LocalCaches {
    #[inline(always)]
    fn entry(&mut self, pool: PoolRef) -> &mut LocalCache {
        // Few pools per thread: a linear scan beats hashing. Each cache holds a reference,
        // so a pool's address cannot be reused while its cache is here. Inlined: it runs for
        // every packet taken or given back.
        let i = match self.entries.iter().position(|e| e.pool == pool) {
            Some(i) => i,
            None => self.add(pool),
        };
        &mut self.entries[i]
    }

    /// A new cache for `pool`, after dropping the caches of closed pools.
    #[cold]
    #[inline(never)]
    fn add(&mut self, pool: PoolRef) -> usize {
        let mut i = 0;
        while i < self.entries.len() {
            // SAFETY: the cache holds a reference on its pool.
            if unsafe { self.entries[i].pool.shared() }.closed.load(Ordering::Acquire) {
                let e = self.entries.swap_remove(i);
                let p = e.pool;
                let n = e.retire_closed();
                // SAFETY: the cache's references, removed with it and not used again.
                unsafe { p.release(n) };
            } else {
                i += 1;
            }
        }
        // SAFETY: the caller holds a reference (a handle, or the buffer it gives back); the
        // new cache takes its own.
        let shared = unsafe { pool.shared() };
        shared.refs.fetch_add(1, Ordering::Relaxed);
        shared.caches.fetch_add(1, Ordering::Relaxed);
        self.entries.push(LocalCache { pool, bufs: Vec::with_capacity(shared.cache_max) });
        self.entries.len() - 1
    }

    /// Takes this thread's cache of `pool` out, if there is one.
    fn remove(&mut self, pool: PoolRef) -> Option<LocalCache> {
        let i = self.entries.iter().position(|e| e.pool == pool)?;
        Some(self.entries.swap_remove(i))
    }
}

impl Drop for LocalCaches {
    fn drop(&mut self) {
        // Thread exit: give cached buffers back so other threads can use them, and release
        // the caches' references.
        for e in self.entries.drain(..) {
            e.retire();
        }
    }
}
thread_local! {
    static CACHES: RefCell<LocalCaches> = RefCell::new(LocalCaches::default());
}

impl PoolShared {
    /// Moves the last `n` buffers of `from` to the shared queue as one batch, or frees them
    /// if the pool is closed. The caller releases their references.
    fn push_batch_from(&self, from: &mut Vec<Box<[u8]>>, n: usize) {
        if self.closed.load(Ordering::Acquire) {
            from.truncate(from.len() - n);
            return;
        }
        // Batch vectors are made when the pool is built and recycled; a fresh one is only
        // needed if every spare is momentarily in flight.
        let mut batch = self.empty_batches.pop().unwrap_or_else(|| Vec::with_capacity(self.batch));
        batch.extend(from.drain(from.len() - n..));
        // The queue has a slot for every buffer, so it cannot be full. (If the pool closed
        // meanwhile, the batch waits there until the pool is freed.)
        let _ = self.batches.push(batch);
    }

    /// Moves the first (earliest given back, so coldest) `batch` buffers of `from` to the
    /// shared queue, as [`push_batch_from`](Self::push_batch_from) does with the last.
    #[cold]
    #[inline(never)]
    fn push_coldest_batch_from(&self, from: &mut Vec<Box<[u8]>>) {
        let n = self.batch.min(from.len());
        if self.closed.load(Ordering::Acquire) {
            from.drain(..n);
            return;
        }
        let mut batch = self.empty_batches.pop().unwrap_or_else(|| Vec::with_capacity(self.batch));
        batch.extend(from.drain(..n));
        let _ = self.batches.push(batch);
    }

    /// Refills `into` with one batch from the shared queue; false if there is none. The
    /// caller must hold a reference; the buffers taken each hold one.
    fn pop_batch_into(&self, into: &mut Vec<Box<[u8]>>) -> bool {
        match self.batches.pop() {
            Some(mut batch) => {
                self.refs.fetch_add(batch.len(), Ordering::Relaxed);
                into.append(&mut batch);
                let _ = self.empty_batches.push(batch);
                true
            }
            None => false,
        }
    }
}

/// A shareable handle on a bounded set of packet buffers. Cloning the handle is cheap.
///
/// Packets may outlive every handle, on any thread: the pool's memory is freed once the last
/// handle, the last packet and the last per-thread cache of the pool are gone. When the
/// last handle goes, the free buffers are released at once, and each buffer coming back
/// later is freed. A thread that cached buffers of the pool (at most [`MAX_CACHED`])
/// and never touches it again keeps them, and the pool's bookkeeping, until it first uses
/// another pool or exits. Nothing is counted per packet: a packet holds a plain pointer to
/// its pool, and the shared count moves only when a batch of buffers crosses between a
/// thread's cache and the shared queue.
pub struct PacketPool {
    shared: PoolRef,
}

impl Clone for PacketPool {
    fn clone(&self) -> Self {
        self.inner().handles.fetch_add(1, Ordering::Relaxed);
        PacketPool { shared: self.shared }
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        if self.inner().handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last handle: close. Nobody can take a buffer any more (that needs a handle).
        let shared = self.inner();
        shared.closed.store(true, Ordering::Release);
        while shared.batches.pop().is_some() {}
        while shared.empty_batches.pop().is_some() {}
        let cache = CACHES
            .try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.remove(self.shared)))
            .ok()
            .flatten();
        let n = 1 + cache.map_or(0, LocalCache::retire_closed);
        // SAFETY: the handles' reference, plus this thread's cache's (and its buffers') if it
        // had one; `shared` is not used again.
        unsafe { self.shared.release(n) };
    }
}

impl std::fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPool")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("buf_size", &self.inner().buf_size)
            .finish()
    }
}

impl PacketPool {
    /// Allocates every buffer of the pool up front.
    pub fn new(cfg: PoolConfig) -> Result<Self, PoolError> {
        Self::build(
            cfg,
            #[cfg(test)]
            None,
        )
    }

    fn build(
        cfg: PoolConfig,
        #[cfg(test)] freed: Option<std::sync::Arc<AtomicUsize>>,
    ) -> Result<Self, PoolError> {
        if cfg.count == 0 {
            return Err(PoolError::Empty);
        }
        if cfg.count > MAX_COUNT {
            return Err(PoolError::TooMany { count: cfg.count, max: MAX_COUNT });
        }
        if cfg.headroom < MIN_HEADROOM {
            return Err(PoolError::HeadroomTooSmall(cfg.headroom));
        }
        let buf_size = cfg.headroom.saturating_add(cfg.data_room);
        if buf_size > u32::MAX as usize / 2 {
            return Err(PoolError::BufferTooLarge(buf_size));
        }
        // Small pools get small batches, so per-thread caches cannot hoard most of them.
        let batch = (cfg.count / 32).clamp(1, MAX_BATCH);
        let cache_max = (cfg.count / 32).clamp(2 * batch, MAX_CACHED);
        let slots = cfg.count;
        let shared = PoolShared {
            batches: ArrayQueue::new(slots),
            empty_batches: ArrayQueue::new(slots),
            // The handles' reference; every buffer starts in the queue.
            refs: AtomicUsize::new(1),
            caches: AtomicUsize::new(0),
            batch,
            cache_max,
            capacity: cfg.count,
            headroom: cfg.headroom,
            buf_size,
            handles: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            exhausted: AtomicU64::new(0),
            #[cfg(test)]
            freed,
        };
        let mut left = cfg.count;
        while left > 0 {
            let n = left.min(batch);
            let mut b = Vec::with_capacity(batch);
            b.extend((0..n).map(|_| vec![0u8; buf_size].into_boxed_slice()));
            let _ = shared.batches.push(b);
            left -= n;
        }
        // Spare batch vectors for buffers travelling back from thread caches.
        for _ in 0..(cfg.count / batch).min(slots) {
            let _ = shared.empty_batches.push(Vec::with_capacity(batch));
        }
        let ptr = NonNull::from(Box::leak(Box::new(shared)));
        Ok(PacketPool { shared: PoolRef(ptr) })
    }

    /// The shared state, kept alive by this handle.
    #[inline(always)]
    fn inner(&self) -> &PoolShared {
        // SAFETY: a handle holds the handles' reference for as long as it lives.
        unsafe { self.shared.shared() }
    }

    /// A pool of `count` buffers with the default headroom and data room.
    pub fn with_count(count: usize) -> Result<Self, PoolError> {
        Self::new(PoolConfig { count, ..PoolConfig::default() })
    }

    /// Takes an empty packet (length 0, full headroom), or `None` when every buffer is in use.
    #[inline]
    pub fn alloc(&self) -> Option<Packet> {
        match self.take() {
            Some(buf) => Some(Packet::from_pool_buffer(buf, self.inner().headroom, self.shared)),
            None => {
                self.inner().exhausted.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Takes an empty packet as [`alloc`](Self::alloc) does, written straight into `dst`
    /// rather than returned (see [`Burst::push_alloc`](crate::Burst::push_alloc)). Returns
    /// false, writing nothing, when every buffer is in use.
    ///
    /// # Safety
    /// `dst` is valid for writing a `Packet`; on true it holds one, which the caller owns.
    #[inline]
    pub(crate) unsafe fn alloc_into(&self, dst: *mut Packet) -> bool {
        match self.take() {
            // SAFETY: a buffer taken from this pool holds one of its references, and the
            // pool's buffers are sized and given their headroom when it is created; `dst`
            // is the caller's.
            Some(buf) => unsafe {
                Packet::write_pool_buffer(dst, buf, self.inner().headroom, self.shared);
                true
            },
            None => {
                self.inner().exhausted.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A free buffer (which now holds a reference), from this thread's cache if it can.
    #[inline]
    fn take(&self) -> Option<Box<[u8]>> {
        let shared = self.inner();
        let got = CACHES.try_with(|c| {
            let mut c = c.borrow_mut();
            let e = c.entry(self.shared);
            if e.bufs.is_empty() && !shared.pop_batch_into(&mut e.bufs) {
                return None;
            }
            e.bufs.pop()
        });
        match got {
            Ok(b) => b,
            // The thread is exiting and its cache is gone: use the shared queue directly.
            Err(_) => {
                let mut tmp = Vec::new();
                shared.pop_batch_into(&mut tmp);
                let b = tmp.pop();
                let n = tmp.len();
                if n > 0 {
                    shared.push_batch_from(&mut tmp, n);
                    // SAFETY: the references of the buffers put back; this handle keeps the
                    // pool alive.
                    unsafe { self.shared.release(n) };
                }
                b
            }
        }
    }

    /// Takes a packet holding a copy of `data`; `None` if the pool is empty or `data` does not
    /// fit in the data room.
    pub fn alloc_from(&self, data: &[u8]) -> Option<Packet> {
        if data.len() > self.data_room() {
            return None;
        }
        let mut p = self.alloc()?;
        p.extend_from_slice(data).ok()?;
        Some(p)
    }

    /// Free buffers in the shared queue plus the calling thread's cache. Buffers cached by
    /// other live threads (at most [`MAX_CACHED`] each) are not counted. Exact while no other
    /// thread takes or gives back buffers of the pool.
    pub fn available(&self) -> usize {
        let shared = self.inner();
        let local = CACHES
            .try_with(|c| {
                c.try_borrow()
                    .ok()
                    .and_then(|c| c.entries.iter().find(|e| e.pool == self.shared).map(|e| e.bufs.len()))
            })
            .ok()
            .flatten()
            .unwrap_or(0);
        // `refs` = 1 (the handles) + thread caches + buffers outside the queue.
        let caches = shared.caches.load(Ordering::Relaxed);
        let outside = shared.refs.load(Ordering::Relaxed).saturating_sub(1 + caches);
        shared.capacity.saturating_sub(outside) + local
    }

    /// Buffers the pool owns in total.
    pub fn capacity(&self) -> usize {
        self.inner().capacity
    }

    /// Headroom of a fresh packet.
    pub fn headroom(&self) -> usize {
        self.inner().headroom
    }

    /// Bytes of data a fresh packet can hold.
    pub fn data_room(&self) -> usize {
        let shared = self.inner();
        shared.buf_size - shared.headroom
    }

    /// How many times [`alloc`](Self::alloc) found the pool empty.
    pub fn exhausted_count(&self) -> u64 {
        self.inner().exhausted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc, Barrier};

    /// Heavy loops are cut down under Miri, which runs them a thousand times slower.
    const SCALE: usize = if cfg!(miri) { 1 } else { 50 };

    /// A pool that tells when its shared state is freed.
    fn tracked(count: usize) -> (PacketPool, Arc<AtomicUsize>) {
        let freed = Arc::new(AtomicUsize::new(0));
        let cfg = PoolConfig { count, headroom: MIN_HEADROOM, data_room: 64 };
        (PacketPool::build(cfg, Some(Arc::clone(&freed))).unwrap(), freed)
    }

    fn freed(f: &AtomicUsize) -> usize {
        f.load(Ordering::SeqCst)
    }

    #[test]
    fn buffers_come_back_on_drop() {
        let pool = PacketPool::with_count(4).unwrap();
        let a = pool.alloc().unwrap();
        let b = pool.alloc_from(b"hello").unwrap();
        assert_eq!(pool.available(), 2);
        assert_eq!(b.data(), b"hello");
        assert_eq!(a.headroom(), MIN_HEADROOM);
        drop(a);
        drop(b);
        assert_eq!(pool.available(), 4);
    }

    /// Where a packet's buffer is (its data starts at a fixed offset into it).
    fn buffer_of(p: &Packet) -> usize {
        p.data().as_ptr() as usize
    }

    #[test]
    fn a_thread_cycling_bursts_reuses_a_fixed_set_of_buffers() {
        // Bursts of 64 from each of two ports, given back after both: the cache must absorb
        // them, or every round swaps batches with the queue and walks the whole pool cold.
        let pool = PacketPool::new(PoolConfig { count: 8192, ..PoolConfig::default() }).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut held = Vec::with_capacity(128);
        for round in 0..(20 * SCALE) {
            let n = if round % 7 == 3 { 100 } else { 128 };
            held.extend((0..n).map(|_| pool.alloc().unwrap()));
            seen.extend(held.iter().map(buffer_of));
            held.clear();
        }
        assert!(seen.len() <= 128 + MAX_BATCH, "{} distinct buffers used", seen.len());
        // Giving back more than a cache holds still returns buffers to the queue.
        held.extend((0..1000).map(|_| pool.alloc().unwrap()));
        held.clear();
        assert_eq!(pool.available(), 8192);
    }

    #[test]
    fn a_full_cache_gives_back_its_coldest_buffers() {
        let pool = PacketPool::new(PoolConfig { count: 8192, ..PoolConfig::default() }).unwrap();
        let first: Vec<Packet> = (0..MAX_CACHED).map(|_| pool.alloc().unwrap()).collect();
        let first_bufs: Vec<usize> = first.iter().map(buffer_of).collect();
        // Given back in order: the first MAX_BATCH are the coldest once the cache is full.
        drop(first);
        let hot: Vec<Packet> = (0..MAX_CACHED - MAX_BATCH).map(|_| pool.alloc().unwrap()).collect();
        let hot_bufs: std::collections::HashSet<usize> = hot.iter().map(buffer_of).collect();
        assert!(first_bufs[MAX_BATCH..].iter().all(|b| hot_bufs.contains(b)));
        assert!(first_bufs[..MAX_BATCH].iter().all(|b| !hot_bufs.contains(b)));
    }

    #[test]
    fn exhaustion_is_counted_not_fatal() {
        let pool = PacketPool::with_count(1).unwrap();
        let a = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.exhausted_count(), 1);
        drop(a);
        assert!(pool.alloc().is_some());
    }

    #[test]
    fn invalid_configs_are_refused() {
        assert_eq!(PacketPool::with_count(0).unwrap_err(), PoolError::Empty);
        let cfg = PoolConfig { headroom: 64, ..PoolConfig::default() };
        assert_eq!(PacketPool::new(cfg).unwrap_err(), PoolError::HeadroomTooSmall(64));
    }

    #[test]
    fn too_large_data_is_refused() {
        let pool = PacketPool::new(PoolConfig { count: 1, headroom: 128, data_room: 16 }).unwrap();
        assert!(pool.alloc_from(&[0u8; 17]).is_none());
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn packets_return_from_other_threads() {
        let pool = PacketPool::with_count(640).unwrap();
        let pkts: Vec<_> = (0..640).map(|_| pool.alloc().unwrap()).collect();
        assert!(pool.alloc().is_none());
        // The other thread's cache is flushed when it exits.
        std::thread::spawn(move || drop(pkts)).join().unwrap();
        assert_eq!(pool.available(), 640);
        let again: Vec<_> = (0..640).map(|_| pool.alloc().unwrap()).collect();
        assert_eq!(again.len(), 640);
    }

    #[test]
    fn packets_outlive_their_pool_handles() {
        let (pool, f) = tracked(64);
        let mut p = pool.alloc_from(b"late").unwrap();
        let q = pool.alloc_from(b"later").unwrap();
        drop(pool);
        assert_eq!(freed(&f), 0, "two packets still use the pool");
        // The buffers are still ours: read and write them.
        assert_eq!(p.data(), b"late");
        p.data_mut()[0] = b'L';
        assert_eq!(p.data(), b"Late");
        drop(p); // freed, not cached: the pool is closed
        assert_eq!(freed(&f), 0, "one packet still uses the pool");
        assert_eq!(q.data(), b"later");
        drop(q);
        assert_eq!(freed(&f), 1, "the last packet frees the pool");
    }

    #[test]
    fn a_dropped_pool_is_freed_at_once() {
        let (pool, f) = tracked(64);
        let clone = pool.clone();
        // Buffers in this thread's cache and in the queue.
        let pkts: Vec<_> = (0..10).map(|_| pool.alloc().unwrap()).collect();
        drop(pkts);
        drop(pool);
        assert_eq!(freed(&f), 0, "a handle is left");
        assert_eq!(clone.available(), 64);
        drop(clone);
        assert_eq!(freed(&f), 1);
    }

    #[test]
    fn many_pools_made_and_dropped_are_all_freed() {
        let total = Arc::new(AtomicUsize::new(0));
        for i in 0..20 * SCALE {
            let cfg = PoolConfig { count: 1 + i % 70, headroom: MIN_HEADROOM, data_room: 64 };
            let pool = PacketPool::build(cfg, Some(Arc::clone(&total))).unwrap();
            let p = pool.alloc().unwrap();
            if i % 2 == 0 {
                drop(pool);
                drop(p);
            } else {
                drop(p);
                drop(pool);
            }
        }
        assert_eq!(freed(&total), 20 * SCALE);
    }

    #[test]
    fn packets_dropped_on_another_thread_after_close_free_the_pool() {
        let (pool, f) = tracked(128);
        let pkts: Vec<_> = (0..100).map(|i| pool.alloc_from(&[i as u8; 8]).unwrap()).collect();
        drop(pool);
        assert_eq!(freed(&f), 0);
        std::thread::spawn(move || {
            for (i, p) in pkts.into_iter().enumerate() {
                assert_eq!(p.data(), &[i as u8; 8]);
            }
        })
        .join()
        .unwrap();
        assert_eq!(freed(&f), 1);
    }

    /// A thread holding buffers of a pool in its cache when the pool closes drops them (and
    /// its cache's hold on the pool) when it gives back the next buffer of that pool.
    #[test]
    fn another_threads_cache_goes_with_its_next_packet_of_a_closed_pool() {
        let (pool, f) = tracked(256);
        let (to_main, from_worker) = mpsc::channel();
        let (to_worker, from_main) = mpsc::channel::<()>();
        let worker_pool = pool.clone();
        let worker = std::thread::spawn(move || {
            let mut pkts: Vec<_> = (0..40).map(|_| worker_pool.alloc().unwrap()).collect();
            pkts.truncate(20); // 20 buffers now in this thread's cache
            drop(worker_pool);
            to_main.send(()).unwrap();
            from_main.recv().unwrap(); // the pool is closed
            pkts.truncate(19); // gives one back to the closed pool: the cache goes too
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
            drop(pkts);
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
        });
        from_worker.recv().unwrap();
        drop(pool);
        assert_eq!(freed(&f), 0, "the worker holds packets and a cache");
        to_worker.send(()).unwrap();
        from_worker.recv().unwrap();
        assert_eq!(freed(&f), 0, "the worker still holds 19 packets");
        to_worker.send(()).unwrap();
        from_worker.recv().unwrap();
        assert_eq!(freed(&f), 1, "freed by the worker's last packet, while it runs");
        to_worker.send(()).unwrap();
        worker.join().unwrap();
        assert_eq!(freed(&f), 1);
    }

    #[test]
    fn a_thread_cache_is_given_back_when_its_thread_exits() {
        let (pool, f) = tracked(256);
        let p = pool.clone();
        std::thread::spawn(move || {
            let pkts: Vec<_> = (0..30).map(|_| p.alloc().unwrap()).collect();
            drop(pkts); // in this thread's cache until it exits
        })
        .join()
        .unwrap();
        assert_eq!(pool.available(), 256, "the exiting thread gave its cache back");
        drop(pool);
        assert_eq!(freed(&f), 1);
    }

    /// A thread that kept a cache of a pool closed elsewhere lets it go when it starts using
    /// another pool.
    #[test]
    fn a_stale_cache_goes_when_its_thread_uses_a_new_pool() {
        let (pool, f) = tracked(256);
        let (to_main, from_worker) = mpsc::channel();
        let (to_worker, from_main) = mpsc::channel::<()>();
        let p = pool.clone();
        let worker = std::thread::spawn(move || {
            drop((0..30).map(|_| p.alloc().unwrap()).collect::<Vec<_>>());
            drop(p);
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
            let other = PacketPool::with_count(4).unwrap();
            drop(other.alloc());
            to_main.send(()).unwrap();
            from_main.recv().unwrap();
        });
        from_worker.recv().unwrap();
        drop(pool);
        assert_eq!(freed(&f), 0, "the worker's cache holds the pool");
        to_worker.send(()).unwrap();
        from_worker.recv().unwrap();
        assert_eq!(freed(&f), 1, "dropped when the worker took a cache of another pool");
        to_worker.send(()).unwrap();
        worker.join().unwrap();
    }

    /// Packets taken on several threads, passed around and dropped anywhere, while the
    /// handles go one by one: nothing is lost or freed twice (run it under Miri or
    /// AddressSanitizer to see that), and the last one out frees the pool.
    #[test]
    fn the_last_one_out_frees_the_pool_whatever_the_order() {
        for round in 0..(2 * SCALE).min(20) {
            let (pool, f) = tracked(64);
            let start = Arc::new(Barrier::new(4));
            let (tx, rx) = mpsc::channel::<Vec<Packet>>();
            let rx = Arc::new(std::sync::Mutex::new(rx));
            let threads: Vec<_> = (0..3)
                .map(|t| {
                    let pool = pool.clone();
                    let start = Arc::clone(&start);
                    let tx = tx.clone();
                    let rx = Arc::clone(&rx);
                    std::thread::spawn(move || {
                        start.wait();
                        let mut mine = Vec::new();
                        for i in 0..SCALE * 4 {
                            if let Some(p) = pool.alloc_from(&[t as u8; 16]) {
                                mine.push(p);
                            }
                            if i % 3 == t {
                                let _ = tx.send(std::mem::take(&mut mine));
                            }
                            if let Ok(theirs) = rx.lock().unwrap().try_recv() {
                                for p in &theirs {
                                    assert!(p.data().iter().all(|&b| b == p.data()[0]));
                                }
                                if round % 2 == 0 {
                                    mine.extend(theirs);
                                }
                            }
                        }
                        drop(pool);
                        mine
                    })
                })
                .collect();
            drop(tx);
            start.wait();
            drop(pool);
            let left: Vec<Vec<Packet>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let queued: Vec<Vec<Packet>> = rx.lock().unwrap().try_iter().collect();
            assert_eq!(freed(&f), usize::from(left.iter().chain(&queued).all(Vec::is_empty)));
            drop(left);
            drop(queued);
            assert_eq!(freed(&f), 1, "round {round}");
        }
    }

    #[test]
    fn many_threads_many_cycles_lose_nothing() {
        let pool = PacketPool::with_count(1024).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..40 * SCALE {
                        let v: Vec<_> = (0..100).filter_map(|_| pool.alloc()).collect();
                        drop(v);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(pool.available(), 1024);
    }
}

//! A bounded pool of packet buffers with per-thread caches.
//!
//! Every buffer is allocated when the pool is created. Free buffers live in a global
//! lock-free queue of *batches* and in small per-thread caches, as in DPDK's mempool: taking
//! or giving back a buffer touches only the calling thread's cache, and the shared queue is
//! touched once per batch. A packet holds a plain `&'static` reference to its pool (no
//! reference count per packet, so packets crossing cores share no hot cache line).
//!
//! The pool's bookkeeping is deliberately leaked so that a packet can outlive every
//! [`PacketPool`] handle: when the last handle goes, the free buffers are released and buffers
//! coming back later are freed instead of cached, but the control block and its two free-list
//! rings stay (about 64 bytes per buffer of the pool, plus ~1 KiB). Create pools once (per
//! daemon, per graph), not per packet or per short-lived object. LeakSanitizer reports these
//! blocks; they are expected.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam::queue::ArrayQueue;

use crate::packet::Packet;

/// The minimum headroom a pool reserves in front of every packet: room for VXLAN over IPv6
/// (14 + 40 + 8 + 8 = 70 bytes) plus a VLAN tag, with margin.
pub const MIN_HEADROOM: usize = 128;

/// Largest number of buffers moved between a thread cache and the shared queue at once.
const MAX_BATCH: usize = 32;

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
}

type Batch = Vec<Box<[u8]>>;

pub(crate) struct PoolShared {
    id: u64,
    batches: ArrayQueue<Batch>,
    empty_batches: ArrayQueue<Batch>,
    in_batches: AtomicUsize,
    batch: usize,
    capacity: usize,
    headroom: usize,
    buf_size: usize,
    handles: AtomicUsize,
    closed: AtomicBool,
    exhausted: AtomicU64,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

struct LocalCache {
    pool: &'static PoolShared,
    bufs: Vec<Box<[u8]>>,
}

#[derive(Default)]
struct LocalCaches {
    entries: Vec<LocalCache>,
}

impl LocalCaches {
    fn entry(&mut self, pool: &'static PoolShared) -> &mut LocalCache {
        // Few pools per thread: a linear scan beats hashing.
        let i = match self.entries.iter().position(|e| e.pool.id == pool.id) {
            Some(i) => i,
            None => {
                self.entries.retain_mut(|e| {
                    let keep = !e.pool.closed.load(Ordering::Acquire);
                    if !keep {
                        e.bufs.clear();
                    }
                    keep
                });
                self.entries.push(LocalCache { pool, bufs: Vec::with_capacity(2 * pool.batch) });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }
}

impl Drop for LocalCaches {
    fn drop(&mut self) {
        // Thread exit: give cached buffers back so other threads can use them.
        for e in &mut self.entries {
            while !e.bufs.is_empty() {
                let n = e.bufs.len().min(e.pool.batch);
                e.pool.push_batch_from(&mut e.bufs, n);
            }
        }
    }
}

thread_local! {
    static CACHES: RefCell<LocalCaches> = RefCell::new(LocalCaches::default());
}

impl PoolShared {
    /// Moves the last `n` buffers of `from` to the shared queue as one batch.
    fn push_batch_from(&self, from: &mut Vec<Box<[u8]>>, n: usize) {
        if self.closed.load(Ordering::Acquire) {
            from.truncate(from.len() - n);
            return;
        }
        // Batch vectors are made when the pool is built and recycled; a fresh one is only
        // needed if every spare is momentarily in flight.
        let mut batch = self.empty_batches.pop().unwrap_or_else(|| Vec::with_capacity(self.batch));
        batch.extend(from.drain(from.len() - n..));
        self.in_batches.fetch_add(n, Ordering::Relaxed);
        // The queue has a slot for every buffer, so it cannot be full.
        let _ = self.batches.push(batch);
    }

    /// Refills `into` with one batch from the shared queue; false if there is none.
    fn pop_batch_into(&self, into: &mut Vec<Box<[u8]>>) -> bool {
        match self.batches.pop() {
            Some(mut batch) => {
                self.in_batches.fetch_sub(batch.len(), Ordering::Relaxed);
                into.append(&mut batch);
                let _ = self.empty_batches.push(batch);
                true
            }
            None => false,
        }
    }

    #[inline]
    fn take(&'static self) -> Option<Box<[u8]>> {
        let got = CACHES.try_with(|c| {
            let mut c = c.borrow_mut();
            let e = c.entry(self);
            if e.bufs.is_empty() && !self.pop_batch_into(&mut e.bufs) {
                return None;
            }
            e.bufs.pop()
        });
        match got {
            Ok(b) => b,
            // The thread is exiting and its cache is gone: use the shared queue directly.
            Err(_) => {
                let mut tmp = Vec::new();
                self.pop_batch_into(&mut tmp);
                let b = tmp.pop();
                let n = tmp.len();
                if n > 0 {
                    self.push_batch_from(&mut tmp, n);
                }
                b
            }
        }
    }

    /// Gives a buffer back (called by `Packet::drop`, on any thread).
    #[inline]
    pub(crate) fn give_back(&'static self, buf: Box<[u8]>) {
        if self.closed.load(Ordering::Relaxed) {
            return; // the pool is gone: free the buffer
        }
        let mut buf = Some(buf);
        let _ = CACHES.try_with(|c| {
            let mut c = c.borrow_mut();
            let e = c.entry(self);
            e.bufs.push(buf.take().expect("once"));
            if e.bufs.len() >= 2 * self.batch {
                self.push_batch_from(&mut e.bufs, self.batch);
            }
        });
        if let Some(b) = buf {
            let mut tmp = vec![b];
            self.push_batch_from(&mut tmp, 1);
        }
    }
}

/// A shareable handle on a bounded set of packet buffers. Cloning the handle is cheap.
pub struct PacketPool {
    shared: &'static PoolShared,
}

impl Clone for PacketPool {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        PacketPool { shared: self.shared }
    }
}

impl Drop for PacketPool {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.closed.store(true, Ordering::Release);
            while let Some(b) = self.shared.batches.pop() {
                self.shared.in_batches.fetch_sub(b.len(), Ordering::Relaxed);
            }
            while self.shared.empty_batches.pop().is_some() {}
            let _ = CACHES.try_with(|c| {
                if let Some(e) = c.borrow_mut().entries.iter_mut().find(|e| e.pool.id == self.shared.id) {
                    e.bufs = Vec::new();
                }
            });
        }
    }
}

impl std::fmt::Debug for PacketPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketPool")
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .field("buf_size", &self.shared.buf_size)
            .finish()
    }
}

impl PacketPool {
    /// Allocates every buffer of the pool up front.
    pub fn new(cfg: PoolConfig) -> Result<Self, PoolError> {
        if cfg.count == 0 {
            return Err(PoolError::Empty);
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
        let slots = cfg.count;
        let shared = PoolShared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            batches: ArrayQueue::new(slots),
            empty_batches: ArrayQueue::new(slots),
            in_batches: AtomicUsize::new(0),
            batch,
            capacity: cfg.count,
            headroom: cfg.headroom,
            buf_size,
            handles: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            exhausted: AtomicU64::new(0),
        };
        let mut left = cfg.count;
        while left > 0 {
            let n = left.min(batch);
            let mut b = Vec::with_capacity(batch);
            b.extend((0..n).map(|_| vec![0u8; buf_size].into_boxed_slice()));
            let _ = shared.batches.push(b);
            left -= n;
        }
        shared.in_batches.store(cfg.count, Ordering::Relaxed);
        // Spare batch vectors for buffers travelling back from thread caches.
        for _ in 0..(cfg.count / batch).min(slots) {
            let _ = shared.empty_batches.push(Vec::with_capacity(batch));
        }
        Ok(PacketPool { shared: Box::leak(Box::new(shared)) })
    }

    /// A pool of `count` buffers with the default headroom and data room.
    pub fn with_count(count: usize) -> Result<Self, PoolError> {
        Self::new(PoolConfig { count, ..PoolConfig::default() })
    }

    /// Takes an empty packet (length 0, full headroom), or `None` when every buffer is in use.
    #[inline]
    pub fn alloc(&self) -> Option<Packet> {
        match self.shared.take() {
            Some(buf) => Some(Packet::from_pool_buffer(buf, self.shared.headroom, self.shared)),
            None => {
                self.shared.exhausted.fetch_add(1, Ordering::Relaxed);
                None
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
    /// other live threads (at most two batches each) are not counted.
    pub fn available(&self) -> usize {
        let local = CACHES
            .try_with(|c| {
                c.borrow().entries.iter().find(|e| e.pool.id == self.shared.id).map_or(0, |e| e.bufs.len())
            })
            .unwrap_or(0);
        self.shared.in_batches.load(Ordering::Relaxed) + local
    }

    /// Buffers the pool owns in total.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Headroom of a fresh packet.
    pub fn headroom(&self) -> usize {
        self.shared.headroom
    }

    /// Bytes of data a fresh packet can hold.
    pub fn data_room(&self) -> usize {
        self.shared.buf_size - self.shared.headroom
    }

    /// How many times [`alloc`](Self::alloc) found the pool empty.
    pub fn exhausted_count(&self) -> u64 {
        self.shared.exhausted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let pool = PacketPool::with_count(64).unwrap();
        let p = pool.alloc_from(b"late").unwrap();
        drop(pool);
        assert_eq!(p.data(), b"late");
        drop(p); // freed, not cached: the pool is closed
    }

    #[test]
    fn many_threads_many_cycles_lose_nothing() {
        let pool = PacketPool::with_count(1024).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
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

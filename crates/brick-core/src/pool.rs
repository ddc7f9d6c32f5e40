//! A bounded pool of packet buffers.
//!
//! Every buffer is allocated once, when the pool is created; a [`Packet`] taken from the pool
//! gives its buffer back when dropped, on whatever thread that happens. The free list is a
//! lock-free bounded queue, so neither taking nor giving back allocates or locks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::packet::Packet;

/// The minimum headroom a pool reserves in front of every packet: room for VXLAN over IPv6
/// (14 + 40 + 8 + 8 = 70 bytes) plus a VLAN tag, with margin.
pub const MIN_HEADROOM: usize = 128;

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

pub(crate) struct PoolShared {
    free: ArrayQueue<Box<[u8]>>,
    headroom: usize,
    buf_size: usize,
    exhausted: AtomicU64,
}

impl PoolShared {
    /// Gives a buffer back. Only buffers of this pool's size come here (see `Packet::drop`).
    #[inline]
    pub(crate) fn give_back(&self, buf: Box<[u8]>) {
        debug_assert_eq!(buf.len(), self.buf_size);
        // The queue has room for every buffer the pool ever made, so this cannot fail; if it
        // did, the buffer would simply be freed.
        let _ = self.free.push(buf);
    }
}

/// A shareable handle on a bounded set of packet buffers. Cloning the handle is cheap.
#[derive(Clone)]
pub struct PacketPool {
    shared: Arc<PoolShared>,
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
        let buf_size = cfg.headroom.checked_add(cfg.data_room).unwrap_or(usize::MAX);
        if buf_size > u32::MAX as usize / 2 {
            return Err(PoolError::BufferTooLarge(buf_size));
        }
        let free = ArrayQueue::new(cfg.count);
        for _ in 0..cfg.count {
            let _ = free.push(vec![0u8; buf_size].into_boxed_slice());
        }
        Ok(PacketPool {
            shared: Arc::new(PoolShared { free, headroom: cfg.headroom, buf_size, exhausted: AtomicU64::new(0) }),
        })
    }

    /// A pool of `count` buffers with the default headroom and data room.
    pub fn with_count(count: usize) -> Result<Self, PoolError> {
        Self::new(PoolConfig { count, ..PoolConfig::default() })
    }

    /// Takes an empty packet (length 0, full headroom), or `None` when every buffer is in use.
    #[inline]
    pub fn alloc(&self) -> Option<Packet> {
        match self.shared.free.pop() {
            Some(buf) => Some(Packet::from_pool_buffer(buf, self.shared.headroom, Arc::clone(&self.shared))),
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

    /// Buffers currently free.
    pub fn available(&self) -> usize {
        self.shared.free.len()
    }

    /// Buffers the pool owns in total.
    pub fn capacity(&self) -> usize {
        self.shared.free.capacity()
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
        let pool = PacketPool::with_count(64).unwrap();
        let pkts: Vec<_> = (0..64).map(|_| pool.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(pkts)).join().unwrap();
        assert_eq!(pool.available(), 64);
    }
}

//! Where a brick that receives frames (a VM's NIC) gets the empty packets it copies them
//! into: its own [`PacketPool`], or buffers lent by another part of the system, such as the
//! mbufs of the DPDK port a frame will leave by, which that port then sends without copying
//! it again.

use std::sync::Arc;

use crate::burst::Burst;
use crate::packet::Packet;
use crate::pool::PacketPool;

/// A supply of empty packets, used by one brick on one thread.
pub trait PacketSource: Send {
    /// Bytes a packet of this source holds after its headroom.
    fn data_room(&self) -> usize;

    /// The shortest frame worth putting in these buffers: below it, what the source costs
    /// per packet is more than the copy it saves, and a brick should use its own pool.
    fn min_frame(&self) -> usize {
        0
    }

    /// Appends an empty packet (length 0, the source's headroom) to `burst` and returns it to
    /// be filled; `None`, and nothing appended, when the burst is full or no buffer is free.
    fn push_empty<'b>(&mut self, burst: &'b mut Burst) -> Option<&'b mut Packet>;

    /// Up to `n` packets may be wanted now: a source that allocates in bulk can take them at
    /// once when the first is asked for. Every buffer taken and not handed out is given back
    /// by [`unreserve`](Self::unreserve).
    fn reserve(&mut self, _n: usize) {}

    /// Gives back what [`reserve`](Self::reserve) took and was not handed out.
    fn unreserve(&mut self) {}
}

impl PacketSource for PacketPool {
    fn data_room(&self) -> usize {
        PacketPool::data_room(self)
    }

    #[inline]
    fn push_empty<'b>(&mut self, burst: &'b mut Burst) -> Option<&'b mut Packet> {
        burst.push_alloc(self)
    }
}

/// Makes [`PacketSource`]s that lend buffers of one kind: each brick that uses them gets its
/// own (a source is not shared between threads).
#[derive(Clone)]
pub struct LentBuffers {
    name: &'static str,
    make: Arc<dyn Fn() -> Box<dyn PacketSource> + Send + Sync>,
}

impl LentBuffers {
    /// Buffers called `name` (logs, `Debug`), each source made by `make`.
    pub fn new(name: &'static str, make: impl Fn() -> Box<dyn PacketSource> + Send + Sync + 'static) -> Self {
        LentBuffers { name, make: Arc::new(make) }
    }

    /// A new source of these buffers.
    pub fn source(&self) -> Box<dyn PacketSource> {
        (self.make)()
    }

    /// The name given at creation.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for LentBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LentBuffers").field("name", &self.name).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;

    #[test]
    fn a_pool_is_a_source_and_lent_buffers_make_one_per_user() {
        let pool = PacketPool::new(PoolConfig { count: 4, headroom: 128, data_room: 300 }).unwrap();
        let lent = LentBuffers::new("test pool", {
            let pool = pool.clone();
            move || Box::new(pool.clone())
        });
        let mut a = lent.source();
        let mut b = lent.source();
        assert_eq!(a.data_room(), 300);
        let mut burst = Burst::new();
        a.reserve(2);
        a.push_empty(&mut burst).unwrap().extend_from_slice(b"one").unwrap();
        b.push_empty(&mut burst).unwrap().extend_from_slice(b"two").unwrap();
        a.unreserve();
        assert_eq!(pool.available(), 2, "two buffers out");
        assert_eq!(
            burst.iter().map(|p| p.data().to_vec()).collect::<Vec<_>>(),
            [b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(format!("{lent:?}"), "LentBuffers { name: \"test pool\" }");
        burst.clear();
        assert_eq!(pool.available(), 4);
    }
}

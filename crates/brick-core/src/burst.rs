//! Bursts: up to [`BURST_SIZE`] packets handled together.

use crate::packet::Packet;
use crate::pool::PacketPool;

/// Most packets a brick receives in one call.
pub const BURST_SIZE: usize = 64;

/// Up to [`BURST_SIZE`] packets. The vector's storage is reserved once and reused: clearing or
/// draining a burst keeps it, so steady-state traffic does not allocate.
#[derive(Debug, Default)]
pub struct Burst {
    pkts: Vec<Packet>,
}

impl Burst {
    /// An empty burst with room for [`BURST_SIZE`] packets.
    pub fn new() -> Self {
        Burst { pkts: Vec::with_capacity(BURST_SIZE) }
    }

    /// Adds a packet; gives it back if the burst is full.
    #[inline]
    pub fn push(&mut self, pkt: Packet) -> Result<(), Packet> {
        if self.pkts.len() >= BURST_SIZE {
            return Err(pkt);
        }
        self.pkts.push(pkt);
        Ok(())
    }

    /// Appends a [foreign](Packet::from_foreign) packet, built straight in the burst's storage.
    /// Same as `push(Packet::from_foreign(..)?)`, for receive loops: building a packet and
    /// then moving it in made each move read back bytes just stored in narrow pieces, a
    /// store-forwarding stall that cost the DPDK receive path a quarter of its time.
    /// Returns false, and takes nothing, when the burst is full or `head + len` does not fit
    /// the buffer.
    ///
    /// # Safety
    /// As [`Packet::from_foreign`]; when false is returned, nothing was taken.
    #[inline]
    pub unsafe fn push_foreign(
        &mut self,
        buf: std::ptr::NonNull<u8>,
        capacity: usize,
        head: usize,
        len: usize,
        owner: &'static crate::ForeignOwner,
        handle: std::ptr::NonNull<()>,
    ) -> bool {
        let n = self.pkts.len();
        if n >= BURST_SIZE || !crate::packet::foreign_fits(capacity, head, len) {
            return false;
        }
        if self.pkts.capacity() == n {
            self.pkts.reserve(BURST_SIZE - n);
        }
        // SAFETY: slot `n` is within the reserved capacity; `write_foreign` initialises every
        // field, so the packet is whole before `set_len` makes it visible. The bounds were
        // checked above; the rest is the caller's contract.
        unsafe {
            Packet::write_foreign(
                self.pkts.as_mut_ptr().add(n),
                buf,
                capacity as u32,
                head as u32,
                len as u32,
                owner,
                handle,
            );
            self.pkts.set_len(n + 1);
        }
        true
    }

    /// Appends an empty packet from `pool` (as [`PacketPool::alloc`] makes it), built
    /// straight in the burst's storage, and returns it to be filled: a receive loop that
    /// builds a packet and then moves it in reads back bytes just stored in narrow pieces
    /// (see [`push_foreign`](Self::push_foreign)). `None`, and nothing appended, when the
    /// burst is full or the pool has no free buffer.
    #[inline]
    pub fn push_alloc(&mut self, pool: &PacketPool) -> Option<&mut Packet> {
        let n = self.pkts.len();
        if n >= BURST_SIZE {
            return None;
        }
        if self.pkts.capacity() == n {
            self.pkts.reserve(BURST_SIZE - n);
        }
        // SAFETY: slot `n` is within the reserved capacity; `alloc_into` writes a whole
        // packet there when it returns true, before `set_len` makes it visible, and writes
        // nothing otherwise.
        unsafe {
            if !pool.alloc_into(self.pkts.as_mut_ptr().add(n)) {
                return None;
            }
            self.pkts.set_len(n + 1);
        }
        self.pkts.last_mut()
    }

    /// The last packet, the one just appended.
    #[inline]
    pub fn last_mut(&mut self) -> Option<&mut Packet> {
        self.pkts.last_mut()
    }

    /// Number of packets.
    #[inline]
    pub fn len(&self) -> usize {
        self.pkts.len()
    }

    /// Whether there is no packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pkts.is_empty()
    }

    /// Whether no more packet fits.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.pkts.len() >= BURST_SIZE
    }

    /// Free slots.
    #[inline]
    pub fn room(&self) -> usize {
        BURST_SIZE.saturating_sub(self.pkts.len())
    }

    /// Takes every packet out, in order, keeping the storage.
    #[inline]
    pub fn drain(&mut self) -> std::vec::Drain<'_, Packet> {
        self.pkts.drain(..)
    }

    /// Removes and returns the last packet.
    pub fn pop(&mut self) -> Option<Packet> {
        self.pkts.pop()
    }

    /// Drops every packet (their buffers go back to their pools).
    pub fn clear(&mut self) {
        self.pkts.clear()
    }

    /// The packets.
    pub fn iter(&self) -> std::slice::Iter<'_, Packet> {
        self.pkts.iter()
    }

    /// The packets, writable.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Packet> {
        self.pkts.iter_mut()
    }

    /// Keeps the packets for which `keep` is true, dropping the others, in place.
    pub fn retain_mut(&mut self, keep: impl FnMut(&mut Packet) -> bool) {
        self.pkts.retain_mut(keep)
    }

    /// Total bytes of data.
    pub fn bytes(&self) -> u64 {
        self.pkts.iter().map(|p| p.len() as u64).sum()
    }

    // The graph's output slots may hold more than BURST_SIZE (flood replication); it splits
    // them before delivery.
    #[inline]
    pub(crate) fn push_unbounded(&mut self, pkt: Packet) {
        self.pkts.push(pkt);
    }

    pub(crate) fn move_front_into(&mut self, dst: &mut Burst, n: usize) {
        let n = n.min(self.pkts.len());
        dst.pkts.extend(self.pkts.drain(..n));
    }
}

impl<'a> IntoIterator for &'a Burst {
    type Item = &'a Packet;
    type IntoIter = std::slice::Iter<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter()
    }
}

impl<'a> IntoIterator for &'a mut Burst {
    type Item = &'a mut Packet;
    type IntoIter = std::slice::IterMut<'a, Packet>;
    fn into_iter(self) -> Self::IntoIter {
        self.pkts.iter_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PoolConfig;

    #[test]
    fn push_alloc_builds_pool_packets_in_place_and_stops_when_full_or_empty() {
        let pool =
            PacketPool::new(PoolConfig { count: BURST_SIZE + 2, headroom: 128, data_room: 256 }).unwrap();
        let mut b = Burst::new();
        let p = b.push_alloc(&pool).unwrap();
        // The same empty packet `alloc` makes: no data, the pool's headroom, default metadata.
        let a = pool.alloc().unwrap();
        assert_eq!((p.len(), p.headroom(), p.tailroom()), (a.len(), a.headroom(), a.tailroom()));
        assert_eq!(p.meta(), a.meta());
        p.extend_from_slice(b"filled in place").unwrap();
        drop(a);
        while b.push_alloc(&pool).is_some() {}
        assert!(b.is_full(), "stops at the burst size, not the pool's end");
        assert_eq!(b.iter().next().unwrap().data(), b"filled in place");
        let mut other = Burst::new();
        assert!(other.push_alloc(&pool).is_some() && other.push_alloc(&pool).is_some());
        assert!(other.push_alloc(&pool).is_none(), "the pool is empty");
        assert_eq!(other.len(), 2, "nothing appended when the pool is empty");
        b.clear();
        other.clear();
        assert_eq!(pool.available(), BURST_SIZE + 2, "every buffer went back to the pool");
    }

    #[test]
    fn burst_is_bounded() {
        let mut b = Burst::new();
        for i in 0..BURST_SIZE {
            b.push(Packet::from_slice(&[i as u8])).unwrap();
        }
        assert!(b.is_full());
        assert!(b.push(Packet::from_slice(&[0])).is_err());
        let firsts: Vec<u8> = b.drain().map(|p| p.data()[0]).collect();
        assert_eq!(firsts.len(), BURST_SIZE);
        assert_eq!(firsts[63], 63);
        assert!(b.is_empty());
        assert_eq!(b.room(), BURST_SIZE);
    }
}

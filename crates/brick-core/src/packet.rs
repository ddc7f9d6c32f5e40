//! Packets: owned buffers with headroom and tailroom, plus the metadata bricks share.

use crate::pool::{PoolShared, MIN_HEADROOM};

/// Offload state carried with a packet (virtio-net / DPDK style).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OffloadFlags(u8);

impl OffloadFlags {
    /// No flag set.
    pub const NONE: Self = Self(0);
    /// The L4 checksum is partial: it must be completed from `csum_start`/`csum_offset`.
    pub const CSUM_NEEDED: Self = Self(1 << 0);
    /// The receiver (NIC or kernel) already verified the checksums.
    pub const CSUM_VERIFIED: Self = Self(1 << 1);
    /// The outer (tunnel) UDP checksum must be computed by whoever transmits.
    pub const OUTER_CSUM_NEEDED: Self = Self(1 << 2);

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
    /// Clears the flags of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }
    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for OffloadFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// Kind of segmentation offload a super-frame asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GsoType {
    /// Not a super-frame.
    #[default]
    None,
    /// TCP over IPv4 (TSO4).
    TcpV4,
    /// TCP over IPv6 (TSO6).
    TcpV6,
    /// UDP fragmentation / USO.
    Udp,
}

/// Metadata travelling with a packet. Offsets are relative to the start of the data and are
/// set by whichever brick parsed the headers; `prepend`/`pull` keep them pointing at the same
/// bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Offset of the Ethernet header.
    pub l2_offset: u16,
    /// Offset of the network header.
    pub l3_offset: u16,
    /// Offset of the transport header.
    pub l4_offset: u16,
    /// VXLAN network identifier the packet belongs to, if known.
    pub vni: Option<u32>,
    /// Port the packet entered the graph on (set by source bricks; free for bricks to use).
    pub ingress_port: u16,
    /// Checksum offload state.
    pub offload: OffloadFlags,
    /// Where checksumming starts, when `CSUM_NEEDED` (from the data start).
    pub csum_start: u16,
    /// Where the checksum is stored, relative to `csum_start`.
    pub csum_offset: u16,
    /// Segment size for a super-frame; 0 when not one.
    pub gso_size: u16,
    /// Segmentation type for a super-frame.
    pub gso_type: GsoType,
}

impl Meta {
    fn shift_forward(&mut self, n: usize) {
        let n = n.min(u16::MAX as usize) as u16;
        self.l2_offset = self.l2_offset.saturating_add(n);
        self.l3_offset = self.l3_offset.saturating_add(n);
        self.l4_offset = self.l4_offset.saturating_add(n);
        self.csum_start = self.csum_start.saturating_add(n);
    }
    fn shift_back(&mut self, n: usize) {
        let n = n.min(u16::MAX as usize) as u16;
        self.l2_offset = self.l2_offset.saturating_sub(n);
        self.l3_offset = self.l3_offset.saturating_sub(n);
        self.l4_offset = self.l4_offset.saturating_sub(n);
        self.csum_start = self.csum_start.saturating_sub(n);
    }
}

/// Why a packet operation could not be done. The packet is left unchanged.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    /// Not enough headroom to prepend.
    #[error("need {needed} bytes of headroom, have {available}")]
    NoHeadroom {
        /// Bytes asked for.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Not enough tailroom to append.
    #[error("need {needed} bytes of tailroom, have {available}")]
    NoTailroom {
        /// Bytes asked for.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Asked to remove more bytes than the packet holds.
    #[error("packet holds {len} bytes, cannot remove {asked}")]
    TooShort {
        /// Bytes in the packet.
        len: usize,
        /// Bytes asked for.
        asked: usize,
    },
}

/// An owned packet: a buffer with headroom, data and tailroom, plus [`Meta`].
///
/// A packet is not `Clone`: it has exactly one owner at a time, and moving it between bricks
/// or threads moves that ownership. Packets taken from a [`PacketPool`](crate::PacketPool)
/// return their buffer to it when dropped.
pub struct Packet {
    buf: Box<[u8]>,
    head: u32,
    len: u32,
    meta: Meta,
    pool: Option<&'static PoolShared>,
}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("headroom", &self.head)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            // `Box<[u8]>::default()` is an empty slice: no allocation.
            pool.give_back(std::mem::take(&mut self.buf));
        }
    }
}

impl Packet {
    pub(crate) fn from_pool_buffer(buf: Box<[u8]>, headroom: usize, pool: &'static PoolShared) -> Self {
        Packet { buf, head: headroom as u32, len: 0, meta: Meta::default(), pool: Some(pool) }
    }

    /// A heap-backed packet holding a copy of `data`, with the standard headroom and `tailroom`
    /// bytes after it. Meant for tests and control-path packets; the data path uses pools.
    pub fn from_slice_with_tailroom(data: &[u8], tailroom: usize) -> Self {
        let mut buf = vec![0u8; MIN_HEADROOM + data.len() + tailroom].into_boxed_slice();
        buf[MIN_HEADROOM..MIN_HEADROOM + data.len()].copy_from_slice(data);
        Packet { buf, head: MIN_HEADROOM as u32, len: data.len() as u32, meta: Meta::default(), pool: None }
    }

    /// A heap-backed packet holding a copy of `data` (see
    /// [`from_slice_with_tailroom`](Self::from_slice_with_tailroom)).
    pub fn from_slice(data: &[u8]) -> Self {
        Self::from_slice_with_tailroom(data, 0)
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.head as usize;
        &self.buf[h..h + self.len as usize]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.head as usize;
        &mut self.buf[h..h + self.len as usize]
    }

    /// Number of data bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the packet holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Free bytes before the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Free bytes after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.head as usize - self.len as usize
    }

    /// Size of the whole buffer.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Whether the buffer belongs to a pool.
    pub fn is_pooled(&self) -> bool {
        self.pool.is_some()
    }

    /// The metadata.
    #[inline]
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The metadata, writable.
    #[inline]
    pub fn meta_mut(&mut self) -> &mut Meta {
        &mut self.meta
    }

    /// Grows the data by `n` bytes at the front, in the headroom (no copy), and returns the new
    /// front bytes for the caller to fill. Offsets in [`Meta`] move with the old data.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Result<&mut [u8], PacketError> {
        if n > self.head as usize {
            return Err(PacketError::NoHeadroom { needed: n, available: self.head as usize });
        }
        self.head -= n as u32;
        self.len += n as u32;
        self.meta.shift_forward(n);
        let h = self.head as usize;
        Ok(&mut self.buf[h..h + n])
    }

    /// Removes `n` bytes from the front (for example an outer header after decapsulation).
    #[inline]
    pub fn pull(&mut self, n: usize) -> Result<(), PacketError> {
        if n > self.len as usize {
            return Err(PacketError::TooShort { len: self.len as usize, asked: n });
        }
        self.head += n as u32;
        self.len -= n as u32;
        self.meta.shift_back(n);
        Ok(())
    }

    /// Grows the data by `n` bytes at the end and returns them for the caller to fill.
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], PacketError> {
        let available = self.tailroom();
        if n > available {
            return Err(PacketError::NoTailroom { needed: n, available });
        }
        let start = self.head as usize + self.len as usize;
        self.len += n as u32;
        Ok(&mut self.buf[start..start + n])
    }

    /// Appends a copy of `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        self.append(bytes.len())?.copy_from_slice(bytes);
        Ok(())
    }

    /// Shortens the data to `len` bytes; does nothing if it is already shorter.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len as usize {
            self.len = len as u32;
        }
    }

    /// Replaces the data with a copy of `bytes`, keeping the standard headroom when it fits.
    pub fn set_data(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        let head = MIN_HEADROOM.min(self.buf.len());
        let available = self.buf.len() - head;
        if bytes.len() > available {
            return Err(PacketError::NoTailroom { needed: bytes.len(), available });
        }
        self.head = head as u32;
        self.len = bytes.len() as u32;
        self.buf[head..head + bytes.len()].copy_from_slice(bytes);
        self.meta = Meta::default();
        Ok(())
    }

    /// A copy of this packet (data and metadata) in a buffer of `pool`; `None` if the pool is
    /// empty or the data does not fit. Used for flooding, where each copy may be changed.
    pub fn copy_into(&self, pool: &crate::PacketPool) -> Option<Packet> {
        let mut p = pool.alloc_from(self.data())?;
        p.meta = self.meta;
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PacketPool;

    #[test]
    fn prepend_and_pull_move_offsets() {
        let mut p = Packet::from_slice(&[1, 2, 3, 4]);
        p.meta_mut().l3_offset = 2;
        let hdr = p.prepend(8).unwrap();
        hdr.copy_from_slice(&[9; 8]);
        assert_eq!(p.len(), 12);
        assert_eq!(p.meta().l3_offset, 10);
        assert_eq!(&p.data()[..9], &[9, 9, 9, 9, 9, 9, 9, 9, 1]);
        p.pull(8).unwrap();
        assert_eq!(p.data(), &[1, 2, 3, 4]);
        assert_eq!(p.meta().l3_offset, 2);
    }

    #[test]
    fn headroom_fits_vxlan_over_ipv6() {
        let pool = PacketPool::with_count(1).unwrap();
        let mut p = pool.alloc_from(&[0u8; 64]).unwrap();
        assert!(p.prepend(14 + 40 + 8 + 8 + 4).is_ok());
    }

    #[test]
    fn errors_leave_the_packet_unchanged() {
        let mut p = Packet::from_slice(&[1, 2, 3]);
        let room = p.headroom();
        assert_eq!(
            p.prepend(room + 1).unwrap_err(),
            PacketError::NoHeadroom { needed: room + 1, available: room }
        );
        assert_eq!(p.pull(4).unwrap_err(), PacketError::TooShort { len: 3, asked: 4 });
        assert!(matches!(p.append(1), Err(PacketError::NoTailroom { .. })));
        assert_eq!(p.data(), &[1, 2, 3]);
    }

    #[test]
    fn append_truncate_set_data() {
        let mut p = Packet::from_slice_with_tailroom(&[1], 8);
        p.extend_from_slice(&[2, 3]).unwrap();
        assert_eq!(p.data(), &[1, 2, 3]);
        p.truncate(1);
        assert_eq!(p.data(), &[1]);
        p.set_data(&[7, 7]).unwrap();
        assert_eq!(p.data(), &[7, 7]);
        assert_eq!(p.headroom(), MIN_HEADROOM);
    }

    #[test]
    fn copy_into_keeps_meta() {
        let pool = PacketPool::with_count(2).unwrap();
        let mut p = Packet::from_slice(b"abc");
        p.meta_mut().vni = Some(42);
        let c = p.copy_into(&pool).unwrap();
        assert_eq!(c.data(), b"abc");
        assert_eq!(c.meta().vni, Some(42));
        assert!(c.is_pooled());
    }
}

//! Packets: owned buffers with headroom and tailroom, plus the metadata bricks share.

use std::ptr::NonNull;

use crate::pool::{PoolRef, MIN_HEADROOM};

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

/// The owner of memory that backs foreign packets (see [`Packet::from_foreign`]): for example
/// DPDK's mbuf pools, so a frame received by a DPDK port crosses the graph in its own mbuf.
///
/// Owners are compared by address: declare each one as a `static`.
#[derive(Debug)]
pub struct ForeignOwner {
    /// Short name, for debugging.
    pub name: &'static str,
    /// Gives a buffer back to its owner. Called exactly once per foreign packet that is dropped
    /// (never for one taken back with [`Packet::into_foreign`]), on whichever thread drops it,
    /// with the handle given to [`Packet::from_foreign`].
    ///
    /// # Safety
    /// Only [`Packet`]'s `Drop` calls it, once per handle.
    pub release: unsafe fn(handle: NonNull<()>),
}

/// What [`Packet::into_foreign`] gives back: the owner's handle and where the data now lies
/// in the buffer (bricks may have prepended headers or pulled some).
#[derive(Debug)]
pub struct ForeignParts {
    /// The handle given to [`Packet::from_foreign`].
    pub handle: NonNull<()>,
    /// Offset of the first data byte in the buffer.
    pub head: usize,
    /// Number of data bytes.
    pub len: usize,
    /// The packet's metadata.
    pub meta: Meta,
}

/// Who frees a packet's buffer.
enum Owner {
    /// A `Box<[u8]>` of our own (tests, control-path packets).
    Heap,
    /// A buffer of a [`PacketPool`](crate::PacketPool), boxed.
    Pool(PoolRef),
    /// Someone else's memory, released through its owner.
    Foreign(&'static ForeignOwner, NonNull<()>),
}

/// An owned packet: a buffer with headroom, data and tailroom, plus [`Meta`].
///
/// A packet is not `Clone`: it has exactly one owner at a time, and moving it between bricks
/// or threads moves that ownership. Packets taken from a [`PacketPool`](crate::PacketPool)
/// return their buffer to it when dropped; [foreign](Packet::from_foreign) packets return
/// theirs to their [`ForeignOwner`].
pub struct Packet {
    /// Start of the buffer; `cap` bytes, exclusively ours (see `owner`).
    buf: NonNull<u8>,
    cap: u32,
    head: u32,
    len: u32,
    meta: Meta,
    owner: Owner,
}

// SAFETY: a packet exclusively owns its buffer (a box, a pool buffer, or foreign memory whose
// owner promised exclusive use and a `release` callable from any thread), so moving it to
// another thread moves that exclusive access along.
unsafe impl Send for Packet {}
// SAFETY: `&Packet` only hands out `&[u8]` views of the buffer and reads the metadata; every
// mutation needs `&mut Packet`.
unsafe impl Sync for Packet {}

impl std::fmt::Debug for Packet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len)
            .field("headroom", &self.head)
            .field("meta", &self.meta)
            .field(
                "owner",
                &match self.owner {
                    Owner::Heap => "heap",
                    Owner::Pool(_) => "pool",
                    Owner::Foreign(o, _) => o.name,
                },
            )
            .finish()
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        match self.owner {
            Owner::Heap => {
                // SAFETY: `buf`/`cap` come from `Box::into_raw` of a `Box<[u8]>` of `cap` bytes
                // (`from_box`), and are rebuilt exactly once, here.
                drop(unsafe { self.take_box() });
            }
            Owner::Pool(pool) => {
                // SAFETY: as above: pool buffers are boxes handed to `from_pool_buffer`, taken
                // from `pool` and given back once, here.
                unsafe { pool.give_back(self.take_box()) };
            }
            Owner::Foreign(owner, handle) => {
                // SAFETY: the handle came with the buffer through `from_foreign`; this is the
                // only release (`take_foreign` turns the packet into an empty heap shell).
                unsafe { (owner.release)(handle) }
            }
        }
    }
}

/// Whether `len` bytes from `head` fit a foreign buffer of `capacity` bytes that 32-bit
/// offsets can address.
#[inline]
pub(crate) fn foreign_fits(capacity: usize, head: usize, len: usize) -> bool {
    capacity <= u32::MAX as usize && head.checked_add(len).is_some_and(|end| end <= capacity)
}

impl Packet {
    #[inline]
    fn from_box(buf: Box<[u8]>, head: usize, len: usize, owner: Owner) -> Self {
        // `take_box` rebuilds the box from `cap`: a truncated length would free it with the
        // wrong layout.
        let cap = u32::try_from(buf.len()).expect("a packet buffer is smaller than 4 GiB");
        let buf = NonNull::from(Box::leak(buf)).cast::<u8>();
        Packet { buf, cap, head: head as u32, len: len as u32, meta: Meta::default(), owner }
    }

    /// Rebuilds the box this packet's buffer came from.
    ///
    /// # Safety
    /// The owner must be `Heap` or `Pool`, and this must be called once (from `drop`).
    unsafe fn take_box(&mut self) -> Box<[u8]> {
        let slice = std::ptr::slice_from_raw_parts_mut(self.buf.as_ptr(), self.cap as usize);
        // SAFETY: guaranteed by the caller: `buf`/`cap` describe a leaked `Box<[u8]>`.
        unsafe { Box::from_raw(slice) }
    }

    #[inline]
    pub(crate) fn from_pool_buffer(buf: Box<[u8]>, headroom: usize, pool: PoolRef) -> Self {
        Self::from_box(buf, headroom, 0, Owner::Pool(pool))
    }

    /// Writes an empty pool packet field by field at `dst`, as
    /// [`from_pool_buffer`](Self::from_pool_buffer) builds it, without a temporary (see
    /// [`Burst::push_alloc`](crate::Burst::push_alloc)).
    ///
    /// # Safety
    /// `dst` is valid for writing a `Packet`; `buf` holds a reference of `pool` (as a buffer
    /// taken from it does) and is shorter than 4 GiB; `headroom <= buf.len()`.
    #[inline(always)]
    pub(crate) unsafe fn write_pool_buffer(dst: *mut Packet, buf: Box<[u8]>, headroom: usize, pool: PoolRef) {
        let cap = buf.len() as u32;
        let buf = NonNull::from(Box::leak(buf)).cast::<u8>();
        // SAFETY: `dst` is writable (caller); each field is written once, through raw field
        // pointers, before anything reads the packet.
        unsafe {
            std::ptr::addr_of_mut!((*dst).buf).write(buf);
            std::ptr::addr_of_mut!((*dst).cap).write(cap);
            std::ptr::addr_of_mut!((*dst).head).write(headroom as u32);
            std::ptr::addr_of_mut!((*dst).len).write(0);
            std::ptr::addr_of_mut!((*dst).meta).write(Meta::default());
            std::ptr::addr_of_mut!((*dst).owner).write(Owner::Pool(pool));
        }
    }

    /// A heap-backed packet holding a copy of `data`, with the standard headroom and `tailroom`
    /// bytes after it. Meant for tests and control-path packets; the data path uses pools.
    ///
    /// # Panics
    /// When the buffer (headroom + data + tailroom) would reach 4 GiB.
    pub fn from_slice_with_tailroom(data: &[u8], tailroom: usize) -> Self {
        let size = MIN_HEADROOM
            .checked_add(data.len())
            .and_then(|n| n.checked_add(tailroom))
            .filter(|&n| n <= u32::MAX as usize)
            .expect("a packet buffer is smaller than 4 GiB");
        let mut buf = vec![0u8; size].into_boxed_slice();
        buf[MIN_HEADROOM..MIN_HEADROOM + data.len()].copy_from_slice(data);
        Self::from_box(buf, MIN_HEADROOM, data.len(), Owner::Heap)
    }

    /// A heap-backed packet holding a copy of `data` (see
    /// [`from_slice_with_tailroom`](Self::from_slice_with_tailroom)).
    pub fn from_slice(data: &[u8]) -> Self {
        Self::from_slice_with_tailroom(data, 0)
    }

    /// A packet over someone else's buffer: `capacity` bytes at `buf`, whose data are the
    /// `len` bytes from offset `head`. When the packet is dropped, `owner.release(handle)` is
    /// called (on the dropping thread); [`into_foreign`](Self::into_foreign) takes the buffer
    /// back without releasing it. Returns `None` when `head + len > capacity` or the capacity
    /// does not fit 32 bits.
    ///
    /// # Safety
    /// Until `release` is called or the packet is taken back with `into_foreign`, the
    /// `capacity` bytes at `buf` must be initialised, stay valid for reads and writes and be
    /// used by nothing else; `release` must be safe to call from any thread.
    #[inline]
    pub unsafe fn from_foreign(
        buf: NonNull<u8>,
        capacity: usize,
        head: usize,
        len: usize,
        owner: &'static ForeignOwner,
        handle: NonNull<()>,
    ) -> Option<Packet> {
        if !foreign_fits(capacity, head, len) {
            return None;
        }
        Some(Packet {
            buf,
            cap: capacity as u32,
            head: head as u32,
            len: len as u32,
            meta: Meta::default(),
            owner: Owner::Foreign(owner, handle),
        })
    }

    /// Writes a foreign packet field by field at `dst`: no temporary, so nothing reads back
    /// bytes just stored in narrow pieces (see [`Burst::push_foreign`](crate::Burst::push_foreign)).
    ///
    /// # Safety
    /// `dst` is valid for writing a `Packet`, and `from_foreign`'s contract holds, with
    /// `head + len <= capacity <= u32::MAX` checked by the caller.
    #[inline(always)]
    pub(crate) unsafe fn write_foreign(
        dst: *mut Packet,
        buf: NonNull<u8>,
        capacity: u32,
        head: u32,
        len: u32,
        owner: &'static ForeignOwner,
        handle: NonNull<()>,
    ) {
        // SAFETY: `dst` is writable (caller); each field is written once, through raw field
        // pointers, before anything reads the packet.
        unsafe {
            std::ptr::addr_of_mut!((*dst).buf).write(buf);
            std::ptr::addr_of_mut!((*dst).cap).write(capacity);
            std::ptr::addr_of_mut!((*dst).head).write(head);
            std::ptr::addr_of_mut!((*dst).len).write(len);
            std::ptr::addr_of_mut!((*dst).meta).write(Meta::default());
            std::ptr::addr_of_mut!((*dst).owner).write(Owner::Foreign(owner, handle));
        }
    }

    /// The handle of a foreign packet owned by `owner` (compared by address), else `None`.
    #[inline]
    pub fn foreign_handle(&self, owner: &'static ForeignOwner) -> Option<NonNull<()>> {
        match self.owner {
            Owner::Foreign(o, h) if std::ptr::eq(o, owner) => Some(h),
            _ => None,
        }
    }

    /// Takes a foreign packet owned by `owner` apart without releasing its buffer: the caller
    /// gets the handle back (for example to transmit the mbuf itself) and becomes responsible
    /// for it. Any other packet is given back unchanged.
    #[inline]
    pub fn into_foreign(mut self, owner: &'static ForeignOwner) -> Result<ForeignParts, Packet> {
        // What is left of `self` after `take_foreign` is an empty shell: dropping it frees
        // nothing, the buffer and the handle now belong to the caller.
        self.take_foreign(owner).ok_or(self)
    }

    /// The in-place form of [`into_foreign`](Self::into_foreign), for a brick that hands a
    /// whole burst's buffers over without moving the packets out of it: takes the buffer of a
    /// foreign packet owned by `owner` and leaves `self` empty (no data, no room, nothing to
    /// release when dropped). `None`, and nothing changes, for any other packet.
    #[inline]
    pub fn take_foreign(&mut self, owner: &'static ForeignOwner) -> Option<ForeignParts> {
        match self.owner {
            Owner::Foreign(o, handle) if std::ptr::eq(o, owner) => {
                let parts = ForeignParts {
                    handle,
                    head: self.head as usize,
                    len: self.len as usize,
                    meta: self.meta,
                };
                // An empty boxed slice: dangling but valid for 0 bytes, and rebuilding it as
                // a `Box<[u8]>` in `drop` frees nothing.
                self.buf = NonNull::dangling();
                self.cap = 0;
                self.head = 0;
                self.len = 0;
                self.owner = Owner::Heap;
                Some(parts)
            }
            _ => None,
        }
    }

    /// The whole buffer.
    #[inline]
    fn buf(&self) -> &[u8] {
        // SAFETY: `buf` points at `cap` bytes exclusively owned by this packet for its life
        // (box, pool buffer, or foreign memory under `from_foreign`'s contract), and they are
        // initialised (boxes are zeroed; foreign memory is plain bytes by contract).
        unsafe { std::slice::from_raw_parts(self.buf.as_ptr(), self.cap as usize) }
    }

    /// The whole buffer, writable.
    #[inline]
    fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `buf`, and `&mut self` makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.buf.as_ptr(), self.cap as usize) }
    }

    /// The packet's bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.head as usize;
        &self.buf()[h..h + self.len as usize]
    }

    /// The packet's bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (h, l) = (self.head as usize, self.len as usize);
        &mut self.buf_mut()[h..h + l]
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
        self.cap as usize - self.head as usize - self.len as usize
    }

    /// Size of the whole buffer.
    pub fn capacity(&self) -> usize {
        self.cap as usize
    }

    /// Whether the buffer belongs to a [`PacketPool`](crate::PacketPool).
    pub fn is_pooled(&self) -> bool {
        matches!(self.owner, Owner::Pool(_))
    }

    /// Whether the buffer belongs to a [`ForeignOwner`].
    pub fn is_foreign(&self) -> bool {
        matches!(self.owner, Owner::Foreign(..))
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
        Ok(&mut self.buf_mut()[h..h + n])
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
    #[inline]
    pub fn append(&mut self, n: usize) -> Result<&mut [u8], PacketError> {
        let available = self.tailroom();
        if n > available {
            return Err(PacketError::NoTailroom { needed: n, available });
        }
        let start = self.head as usize + self.len as usize;
        self.len += n as u32;
        Ok(&mut self.buf_mut()[start..start + n])
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
        let head = MIN_HEADROOM.min(self.cap as usize);
        let available = self.cap as usize - head;
        if bytes.len() > available {
            return Err(PacketError::NoTailroom { needed: bytes.len(), available });
        }
        self.head = head as u32;
        self.len = bytes.len() as u32;
        self.buf_mut()[head..head + bytes.len()].copy_from_slice(bytes);
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

    /// A 4 GiB tailroom is refused before any allocation: the buffer's length is kept in 32
    /// bits, and freeing a box with a truncated length would be undefined behaviour.
    #[test]
    #[should_panic(expected = "smaller than 4 GiB")]
    fn a_packet_of_4_gib_is_refused() {
        let _ = Packet::from_slice_with_tailroom(&[1, 2, 3], u32::MAX as usize);
    }

    #[test]
    #[should_panic(expected = "smaller than 4 GiB")]
    fn a_tailroom_that_overflows_usize_is_refused() {
        let _ = Packet::from_slice_with_tailroom(&[1], usize::MAX);
    }

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

    /// A foreign buffer for tests: the handle points at this, boxed.
    struct TestForeign {
        mem: Box<[u8]>,
        released: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    unsafe fn release_test(handle: NonNull<()>) {
        // SAFETY: handles of TEST_OWNER are `Box<TestForeign>`s leaked by `foreign`.
        let b = unsafe { Box::from_raw(handle.as_ptr().cast::<TestForeign>()) };
        b.released.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Leaks `tf`: its buffer and the handle that `release_test` frees. The buffer pointer
    /// is taken through the handle, writable (taken from a shared `&[u8]`, writes through it
    /// were undefined behaviour, which Miri reported).
    fn leak_foreign(tf: Box<TestForeign>) -> (NonNull<u8>, NonNull<()>) {
        let handle = NonNull::from(Box::leak(tf));
        // SAFETY: `handle` points at the TestForeign just leaked, alive until `release_test`.
        let buf = NonNull::new(unsafe { (*handle.as_ptr()).mem.as_mut_ptr() }).unwrap();
        (buf, handle.cast::<()>())
    }

    static TEST_OWNER: ForeignOwner = ForeignOwner { name: "test", release: release_test };
    static OTHER_OWNER: ForeignOwner = ForeignOwner { name: "other", release: release_test };

    /// A foreign packet over a 256-byte buffer holding `data` at offset 128.
    fn foreign(data: &[u8]) -> (Packet, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let released = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut mem = vec![0u8; 256].into_boxed_slice();
        mem[128..128 + data.len()].copy_from_slice(data);
        let tf = Box::new(TestForeign { mem, released: std::sync::Arc::clone(&released) });
        let (buf, handle) = leak_foreign(tf);
        // SAFETY: the buffer lives in the leaked TestForeign until release_test frees it, and
        // nothing else touches it.
        let p = unsafe { Packet::from_foreign(buf, 256, 128, data.len(), &TEST_OWNER, handle) }.unwrap();
        (p, released)
    }

    #[test]
    fn foreign_packets_work_like_others_and_are_released_once() {
        let (mut p, released) = foreign(b"frame");
        assert!(p.is_foreign() && !p.is_pooled());
        assert_eq!(p.data(), b"frame");
        assert_eq!((p.headroom(), p.tailroom(), p.capacity()), (128, 256 - 128 - 5, 256));
        p.prepend(4).unwrap().copy_from_slice(b"hdr:");
        p.extend_from_slice(b"!").unwrap();
        assert_eq!(p.data(), b"hdr:frame!");
        assert!(p.foreign_handle(&TEST_OWNER).is_some());
        assert!(p.foreign_handle(&OTHER_OWNER).is_none());
        drop(p);
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn into_foreign_hands_the_buffer_back_without_releasing() {
        let (mut p, released) = foreign(b"abcdef");
        p.pull(2).unwrap();
        p.meta_mut().vni = Some(7);
        // Another owner's packet, or a pooled one, is given back unchanged.
        let p = p.into_foreign(&OTHER_OWNER).unwrap_err();
        assert!(Packet::from_slice(b"x").into_foreign(&TEST_OWNER).is_err());
        let parts = p.into_foreign(&TEST_OWNER).unwrap();
        assert_eq!((parts.head, parts.len, parts.meta.vni), (130, 4, Some(7)));
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The caller owns the handle now: give it back as the owner would.
        // SAFETY: the handle was taken back from its packet and is released once.
        unsafe { release_test(parts.handle) };
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn take_foreign_empties_the_packet_in_place() {
        let (mut p, released) = foreign(b"in place");
        assert!(Packet::from_slice(b"x").take_foreign(&TEST_OWNER).is_none());
        assert!(p.take_foreign(&OTHER_OWNER).is_none());
        let parts = p.take_foreign(&TEST_OWNER).unwrap();
        assert_eq!((parts.head, parts.len), (128, 8));
        assert!(p.is_empty() && !p.is_foreign() && p.capacity() == 0);
        assert!(p.take_foreign(&TEST_OWNER).is_none(), "taken once");
        drop(p);
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 0, "the empty shell frees nothing");
        // SAFETY: the handle was taken from its packet and is released once.
        unsafe { release_test(parts.handle) };
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn foreign_packets_are_released_on_the_thread_that_drops_them() {
        let (p, released) = foreign(b"cross");
        std::thread::spawn(move || assert_eq!(p.data(), b"cross")).join().unwrap();
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn bursts_build_foreign_packets_in_place() {
        use crate::{Burst, BURST_SIZE};
        let released = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut burst = Burst::new();
        let mut handles = Vec::new();
        for i in 0..=BURST_SIZE {
            let mut mem = vec![0u8; 64].into_boxed_slice();
            mem[16] = i as u8;
            let tf = Box::new(TestForeign { mem, released: std::sync::Arc::clone(&released) });
            let (buf, handle) = leak_foreign(tf);
            // SAFETY: the buffer lives in the leaked TestForeign until released; refused
            // pushes are released by hand below.
            let bad_bounds = unsafe { burst.push_foreign(buf, 64, 16, 49, &TEST_OWNER, handle) };
            assert!(!bad_bounds, "head + len beyond the buffer is refused");
            // SAFETY: as above.
            if !unsafe { burst.push_foreign(buf, 64, 16, 8, &TEST_OWNER, handle) } {
                handles.push(handle);
            }
        }
        assert_eq!(burst.len(), BURST_SIZE);
        assert_eq!(handles.len(), 1, "the 65th packet does not fit");
        for (i, p) in burst.iter().enumerate() {
            assert_eq!((p.data()[0], p.len(), p.headroom()), (i as u8, 8, 16));
            assert!(p.foreign_handle(&TEST_OWNER).is_some() && *p.meta() == Meta::default());
        }
        burst.clear();
        assert_eq!(released.load(std::sync::atomic::Ordering::SeqCst), BURST_SIZE);
        // SAFETY: the refused handle was never given to a packet.
        unsafe { release_test(handles[0]) };
    }

    #[test]
    fn from_foreign_refuses_data_outside_the_buffer() {
        let mut mem = [0u8; 16];
        let buf = NonNull::new(mem.as_mut_ptr()).unwrap();
        let h = NonNull::<()>::dangling();
        // SAFETY: refused before the packet exists, so nothing is ever released or read.
        assert!(unsafe { Packet::from_foreign(buf, 16, 10, 7, &TEST_OWNER, h) }.is_none());
        // SAFETY: as above (overflow of head + len).
        assert!(unsafe { Packet::from_foreign(buf, 16, usize::MAX, 2, &TEST_OWNER, h) }.is_none());
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

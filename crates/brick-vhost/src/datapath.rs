//! The data path on one split virtqueue, independent of vhost-user: guest TX chains become pool
//! packets (one copy), packets become guest RX buffers (mergeable or not, one copy).
//!
//! It runs on [`SplitQueue`]: every guest range is checked against the memory map before it
//! is copied, and chains are walked by [`crate::ring::Chain`], which stops on loops, bad
//! indexes and broken indirect tables. Used elements are put per packet and published by the
//! caller once per burst.

use brick_core::{Burst, Packet, PacketPool, PacketSource};

use crate::ring::{Desc, SplitQueue, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE};

use crate::wire::{self, feature, NetHdr, HDR_LEN_LEGACY, HDR_LEN_MRG};

/// Most buffers one received packet may be spread over with MRG_RXBUF.
pub const MAX_RX_BUFFERS: usize = 64;

/// What the features acked by the driver mean for the data path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetFeatures {
    /// The acked feature bits.
    pub acked: u64,
    /// Header length: 12 with VERSION_1 or MRG_RXBUF, else 10.
    pub hdr_len: usize,
    /// Whether RX buffers may be merged.
    pub mrg_rxbuf: bool,
}

impl NetFeatures {
    /// Derives the data-path settings from acked feature bits.
    pub fn from_acked(acked: u64) -> Self {
        let mrg = acked & feature::MRG_RXBUF != 0;
        let hdr_len = if mrg || acked & feature::VERSION_1 != 0 { HDR_LEN_MRG } else { HDR_LEN_LEGACY };
        NetFeatures { acked, hdr_len, mrg_rxbuf: mrg }
    }
}

/// Why a guest TX chain was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxDrop {
    /// A write-only descriptor, an address outside guest memory, a loop or a broken chain.
    #[error("bad descriptor")]
    BadDescriptor,
    /// The frame does not fit in a pool buffer.
    #[error("oversized chain")]
    Oversized,
    /// The virtio-net header is malformed or asks for an offload that was not negotiated.
    #[error("bad virtio-net header")]
    BadHeader,
    /// The frame is shorter than an Ethernet header (14 bytes).
    #[error("runt frame")]
    Runt,
}

/// Outcome of [`tx_pop`] (`P` = [`Packet`]) and of [`tx_pop_into`] (`P` = the frame's length,
/// the packet being in the burst).
#[derive(Debug)]
pub enum TxPop<P = Packet> {
    /// A frame, with its offload metadata.
    Packet(P),
    /// A chain was consumed (returned to the guest) but its frame was dropped.
    Dropped(TxDrop),
    /// No chain available.
    Empty,
    /// No pool buffer (or, for [`tx_pop_into`], no room in the burst): the chain stays in the
    /// ring for later (backpressure, no drop).
    PoolEmpty,
    /// The driver's avail index jumped by more than the queue size: the queue is unusable
    /// until the guest resets it.
    Broken,
}

/// Pops one TX chain from `q` and copies its frame into a packet from `pool`. The chain is
/// always handed back to the guest (used length 0), whether the frame is kept or dropped; the
/// used index is published by the caller, once per burst ([`SplitQueue::publish_used`]).
pub fn tx_pop(q: &mut SplitQueue, pool: &PacketPool, feat: &NetFeatures) -> TxPop {
    if let Some(stop) = tx_ready(q) {
        return stop;
    }
    // Allocated before the chain is taken: an empty pool leaves the chain in the ring.
    let Some(mut pkt) = pool.alloc() else { return TxPop::PoolEmpty };
    let head = q.take();
    let single = single_descriptor(q, head);
    match tx_fill(q, head, single, &mut pkt, feat) {
        Ok(()) => TxPop::Packet(pkt),
        Err(e) => TxPop::Dropped(e),
    }
}

/// [`tx_pop`] appending the packet to `burst`, where it is built and filled in place (a
/// packet built and then moved is read back from narrow stores: a stall per frame). The
/// burst is left as it was when the frame is dropped or nothing is popped.
///
/// Which buffer a frame goes into is chosen from the chain's head descriptor, read once for
/// the choice and the copy. A chain of one descriptor goes, in this order of preference:
/// - into `lent` buffers (a DPDK port's mbufs) when its frame fits them and is long enough
///   to be worth it ([`PacketSource::min_frame`]), so that the port sends it without a
///   second copy;
/// - into `small` buffers when its frame fits them: with TSO, `pool` holds 64 KiB buffers
///   for super-frames, and small frames cycling through a few hundred of those miss the
///   thread's pool cache (and the CPU's) on every burst;
/// - into `pool`, as every longer chain does, and as each does when the one before has
///   nothing free.
#[inline]
pub fn tx_pop_into(
    q: &mut SplitQueue,
    pools: TxPools<'_, '_>,
    feat: &NetFeatures,
    burst: &mut Burst,
) -> TxPop<usize> {
    if let Some(stop) = tx_ready(q) {
        return stop;
    }
    let head = q.take();
    let single = single_descriptor(q, head);
    let frame = single.map(|d| (d.len as usize).saturating_sub(feat.hdr_len));
    let Some(pkt) = pools.buffer(frame, burst) else {
        // No buffer: the chain stays in the ring for later.
        q.untake(1);
        return TxPop::PoolEmpty;
    };
    match tx_fill(q, head, single, pkt, feat) {
        Ok(()) => TxPop::Packet(pkt.len()),
        Err(e) => {
            drop(burst.pop());
            TxPop::Dropped(e)
        }
    }
}

/// Where [`tx_pop_into`] takes its buffers: `pool` for every frame, and, for frames of one
/// descriptor, `lent` and `small` first.
pub struct TxPools<'p, 'l> {
    /// Buffers for any frame the guest may send (with TSO: 64 KiB ones).
    pub pool: &'p PacketPool,
    /// Smaller buffers for the frames that fit them.
    pub small: Option<&'p PacketPool>,
    /// Buffers lent by the next brick.
    pub lent: Option<&'p mut TxLent<'l>>,
}

impl<'p, 'l> TxPools<'p, 'l> {
    /// `pool` alone.
    pub fn new(pool: &'p PacketPool) -> Self {
        TxPools { pool, small: None, lent: None }
    }

    /// An empty packet appended to `burst` for a frame of `frame` bytes (`None`: a chain of
    /// several descriptors, its length unknown until walked).
    #[inline(always)]
    fn buffer(self, frame: Option<usize>, burst: &mut Burst) -> Option<&mut Packet> {
        let Some(len) = frame else { return burst.push_alloc(self.pool) };
        let in_lent = match self.lent {
            Some(l) if (l.min_frame..=l.data_room).contains(&len) => l.src.push_empty(burst).is_some(),
            _ => false,
        };
        if in_lent {
            return burst.last_mut();
        }
        if let Some(small) = self.small.filter(|s| len <= s.data_room()) {
            if burst.push_alloc(small).is_some() {
                return burst.last_mut();
            }
        }
        burst.push_alloc(self.pool)
    }
}

/// Lent buffers for [`tx_pop_into`], with the frame sizes they take read once (not per
/// frame through the trait object).
pub struct TxLent<'a> {
    src: &'a mut (dyn PacketSource + 'static),
    min_frame: usize,
    data_room: usize,
}

impl<'a> TxLent<'a> {
    /// `src`, and the frame lengths it takes.
    pub fn new(src: &'a mut (dyn PacketSource + 'static)) -> Self {
        let (min_frame, data_room) = (src.min_frame(), src.data_room());
        TxLent { src, min_frame, data_room }
    }

    /// The source.
    pub fn source(&mut self) -> &mut (dyn PacketSource + 'static) {
        self.src
    }
}

/// Chain `head`'s descriptor when it is the whole chain: one readable descriptor, neither
/// NEXT nor INDIRECT (the common case for small frames), copied without walking the chain.
#[inline]
fn single_descriptor(q: &SplitQueue, head: u16) -> Option<Desc> {
    q.head_desc(head).filter(|d| d.flags & (DESC_F_NEXT | DESC_F_INDIRECT | DESC_F_WRITE) == 0)
}

/// `None` when a chain waits, else why nothing can be popped.
#[inline(always)]
fn tx_ready<P>(q: &mut SplitQueue) -> Option<TxPop<P>> {
    match q.pending() {
        Ok(0) => Some(TxPop::Empty),
        Ok(_) => None,
        Err(_) => Some(TxPop::Broken),
    }
}

/// Copies the frame of chain `head` (taken; `single`: its one descriptor, see
/// [`single_descriptor`]) into the empty `pkt`, with its offload metadata; the chain goes
/// back to the guest either way.
#[inline(always)]
fn tx_fill(
    q: &mut SplitQueue,
    head: u16,
    single: Option<Desc>,
    pkt: &mut Packet,
    feat: &NetFeatures,
) -> Result<(), TxDrop> {
    let result = match single {
        Some(d) => copy_tx_single(q, d, pkt, feat.hdr_len),
        None => copy_tx_walk(q, head, pkt, feat.hdr_len),
    };
    q.put_used(head, 0);
    let hdr = result?;
    let h = NetHdr::parse(&hdr[..feat.hdr_len]).ok_or(TxDrop::BadHeader)?;
    if pkt.len() < ETH_HLEN {
        return Err(TxDrop::Runt);
    }
    wire::tx_meta(&h, pkt.len(), feat.acked, pkt.meta_mut()).map_err(|_| TxDrop::BadHeader)
}

/// Copies a chain of one readable descriptor `d`: its first `hdr_len` bytes into the
/// returned header, the rest appended to `pkt`; one range check, one header copy, one data
/// copy; the same outcome as walking it.
#[inline]
fn copy_tx_single(
    q: &SplitQueue,
    d: Desc,
    pkt: &mut Packet,
    hdr_len: usize,
) -> Result<[u8; HDR_LEN_MRG], TxDrop> {
    let len = d.len as usize;
    let src = q.map().host(d.addr, len).ok_or(TxDrop::BadDescriptor)?.as_ptr();
    if len < hdr_len {
        return Err(TxDrop::BadHeader);
    }
    let mut hdr = [0u8; HDR_LEN_MRG];
    // SAFETY: `src` has `len >= hdr_len` readable bytes (checked by `host`); `hdr` holds
    // HDR_LEN_MRG >= hdr_len bytes; guest memory never overlaps our stack or heap.
    unsafe { copy_header(src, hdr.as_mut_ptr(), hdr_len) };
    let body = len - hdr_len;
    if body > 0 {
        let dst = pkt.append(body).map_err(|_| TxDrop::Oversized)?;
        // SAFETY: `src + hdr_len` has `body` readable bytes left; `dst` is `body` bytes.
        unsafe { copy_bytes(src.add(hdr_len), dst.as_mut_ptr(), body) };
    }
    Ok(hdr)
}

/// Copies a virtio-net header (`len` is 10 or 12) with fixed-size moves, not a call. (Two
/// branches each calling `copy_nonoverlapping`, one with the constant, were merged by the
/// compiler into one `memcpy(len)` call: 9 % of the switch core's samples in a profile.)
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes, and they do not overlap.
#[inline(always)]
unsafe fn copy_header(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's ranges: each move below stays inside [0, len).
    unsafe {
        match len {
            12 => {
                let (a, b) = (src.cast::<u64>().read_unaligned(), src.add(8).cast::<u32>().read_unaligned());
                dst.cast::<u64>().write_unaligned(a);
                dst.add(8).cast::<u32>().write_unaligned(b);
            }
            10 => {
                let (a, b) = (src.cast::<u64>().read_unaligned(), src.add(8).cast::<u16>().read_unaligned());
                dst.cast::<u64>().write_unaligned(a);
                dst.add(8).cast::<u16>().write_unaligned(b);
            }
            _ => std::ptr::copy_nonoverlapping(src, dst, len),
        }
    }
}

/// Stores `hdr`'s first `len` bytes (10 or 12) at `dst` from registers, two moves (see
/// [`NetHdr::to_words`]: copying it from a byte array built field by field made every RX
/// frame wait for the previous frame's stores into guest memory).
///
/// # Safety
/// `dst` is writable for `len` bytes, `len <= HDR_LEN_MRG`.
#[inline(always)]
unsafe fn write_header(hdr: &NetHdr, dst: *mut u8, len: usize) {
    let (lo, hi) = hdr.to_words();
    // SAFETY: the caller's range: each move below stays inside [0, len).
    unsafe {
        match len {
            12 => {
                dst.cast::<u64>().write_unaligned(lo.to_le());
                dst.add(8).cast::<u32>().write_unaligned(hi.to_le());
            }
            10 => {
                dst.cast::<u64>().write_unaligned(lo.to_le());
                dst.add(8).cast::<u16>().write_unaligned((hi as u16).to_le());
            }
            _ => std::ptr::copy_nonoverlapping(hdr.to_bytes().as_ptr(), dst, len),
        }
    }
}

/// Copies `len` bytes. From 16 to 64 bytes (a minimum-size frame) inline, as two
/// overlapping moves that stay inside both ranges, instead of a call to the C library's
/// `memmove`, which costs more than the copy itself at that size.
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes, and they do not overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: every move below covers [0, 32) or [len - 32, len) (resp. 16) with len >= 32
    // (resp. 16) and len <= 64 (resp. < 32): inside both ranges; unaligned accesses.
    unsafe {
        if (32..=64).contains(&len) {
            let a = src.cast::<[u8; 32]>().read_unaligned();
            let b = src.add(len - 32).cast::<[u8; 32]>().read_unaligned();
            dst.cast::<[u8; 32]>().write_unaligned(a);
            dst.add(len - 32).cast::<[u8; 32]>().write_unaligned(b);
        } else if (16..32).contains(&len) {
            let a = src.cast::<[u8; 16]>().read_unaligned();
            let b = src.add(len - 16).cast::<[u8; 16]>().read_unaligned();
            dst.cast::<[u8; 16]>().write_unaligned(a);
            dst.add(len - 16).cast::<[u8; 16]>().write_unaligned(b);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, len);
        }
    }
}

/// [`copy_tx_single`] for any chain: walks it descriptor by descriptor.
fn copy_tx_walk(
    q: &SplitQueue,
    head: u16,
    pkt: &mut Packet,
    hdr_len: usize,
) -> Result<[u8; HDR_LEN_MRG], TxDrop> {
    let mut hdr = [0u8; HDR_LEN_MRG];
    let mut hdr_got = 0usize;
    for d in q.chain(head) {
        let d = d.map_err(|_| TxDrop::BadDescriptor)?;
        if d.is_write_only() {
            return Err(TxDrop::BadDescriptor);
        }
        let mut len = d.len as usize;
        let src = q.map().host(d.addr, len).ok_or(TxDrop::BadDescriptor)?;
        let mut src = src.as_ptr();
        if hdr_got < hdr_len {
            let take = (hdr_len - hdr_got).min(len);
            // SAFETY: `src` has `len` readable bytes (checked by `host`) and take <= len;
            // `hdr[hdr_got..]` has room for hdr_len - hdr_got >= take bytes; guest memory is
            // never our own heap, so the ranges do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(src, hdr.as_mut_ptr().add(hdr_got), take);
                src = src.add(take);
            }
            hdr_got += take;
            len -= take;
        }
        if len == 0 {
            continue;
        }
        let dst = pkt.append(len).map_err(|_| TxDrop::Oversized)?;
        // SAFETY: `src` has `len` readable bytes left; `dst` is `len` bytes of the packet.
        unsafe { copy_bytes(src, dst.as_mut_ptr(), len) };
    }
    if hdr_got < hdr_len {
        return Err(TxDrop::BadHeader);
    }
    Ok(hdr)
}

/// Why a packet could not be given to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxDrop {
    /// Not enough guest buffers available.
    #[error("ring full")]
    RingFull,
    /// A readable descriptor in an RX chain, an address outside guest memory, a broken chain.
    #[error("bad descriptor")]
    BadDescriptor,
    /// Without MRG_RXBUF, the guest's buffer is smaller than the packet.
    #[error("rx buffer too small")]
    BufferTooSmall,
    /// The packet's offload state cannot be expressed to this guest (see [`wire::rx_header`]).
    #[error("needs segmentation")]
    NeedsSegmentation,
    /// The driver's avail index jumped by more than the queue size.
    #[error("queue broken")]
    Broken,
}

/// Reusable scratch space for [`rx_push`] (allocated once, never grows).
#[derive(Debug)]
pub struct RxScratch {
    used: Vec<(u16, u32)>,
}

impl Default for RxScratch {
    fn default() -> Self {
        RxScratch { used: Vec::with_capacity(MAX_RX_BUFFERS) }
    }
}

/// Length of an Ethernet header: shorter guest frames are runts.
const ETH_HLEN: usize = 14;

/// Where the header bytes of the first buffer live (they are written last, once
/// `num_buffers` is known). A header spread over more than this many descriptors is refused.
const MAX_HDR_SEGS: usize = 4;

/// What [`rx_push_segmenting`] did with one packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxOutcome {
    /// Frames published to the guest (the packet, or its segments).
    pub frames: u64,
    /// Bytes published (without virtio-net headers).
    pub bytes: u64,
    /// Frames lost (the packet, or segments that could not be made or pushed), and why (the
    /// last reason).
    pub dropped: u64,
    /// Reason of the last loss.
    pub reason: Option<RxDrop>,
}

/// [`rx_push`], except that a TCP super-frame the guest cannot take whole (it did not
/// negotiate GUEST_TSO4/6) is cut with [`brick_core::gso`] into segments from `pool`, which
/// are pushed one by one. `segs` is scratch storage kept by the caller (no allocation once
/// it has grown).
pub fn rx_push_segmenting(
    q: &mut SplitQueue,
    pkt: &mut Packet,
    feat: &NetFeatures,
    scratch: &mut RxScratch,
    pool: &PacketPool,
    segs: &mut Vec<Packet>,
) -> RxOutcome {
    let mut o = RxOutcome::default();
    match rx_push(q, pkt, feat, scratch) {
        Ok(()) => {
            o.frames = 1;
            o.bytes = pkt.len() as u64;
            return o;
        }
        Err(RxDrop::NeedsSegmentation) if pkt.meta().gso_type != brick_core::GsoType::None => {}
        Err(e) => {
            o.dropped = 1;
            o.reason = Some(e);
            return o;
        }
    }
    segs.clear();
    if brick_core::gso::segment_into_pool(pkt, pool, |s| segs.push(s)).is_err() {
        // Malformed, or the pool ran dry half-way: the packet counts as lost, whatever
        // segments were made are still delivered.
        o.dropped = 1;
        o.reason = Some(RxDrop::NeedsSegmentation);
    }
    for mut seg in segs.drain(..) {
        match rx_push(q, &mut seg, feat, scratch) {
            Ok(()) => {
                o.frames += 1;
                o.bytes += seg.len() as u64;
            }
            Err(e) => {
                o.dropped += 1;
                o.reason = Some(e);
            }
        }
    }
    o
}

/// [`rx_push`]'s fast path: when the next chain is one writable descriptor that holds the
/// header and the whole frame, fills it and puts it in the used ring (one range check, two
/// copies). Otherwise (nothing available, a longer chain, a small or bad buffer) changes
/// nothing and returns false: the general path then does, and reports, the rest.
#[inline]
fn rx_push_single(q: &mut SplitQueue, hdr: &mut NetHdr, data: &[u8], hdr_len: usize) -> bool {
    if !matches!(q.pending(), Ok(1..)) {
        return false;
    }
    let head = q.peek();
    let Some(d) = q.head_desc(head) else { return false };
    let total = hdr_len + data.len();
    if d.flags & (DESC_F_NEXT | DESC_F_INDIRECT | DESC_F_WRITE) != DESC_F_WRITE || (d.len as usize) < total {
        return false;
    }
    // The whole buffer is checked, as the general path does.
    let Some(dst) = q.map().host(d.addr, d.len as usize) else { return false };
    let dst = dst.as_ptr();
    hdr.num_buffers = 1;
    // SAFETY: `dst` has d.len >= total = hdr_len + data.len() writable bytes (checked by
    // `host`); guest memory never overlaps our heap.
    unsafe {
        write_header(hdr, dst, hdr_len);
        copy_bytes(data.as_ptr(), dst.add(hdr_len), data.len());
    }
    q.take();
    q.put_used(head, total as u32);
    true
}

/// Copies `pkt` (plus its virtio-net header) into guest RX buffers taken from `q`, and puts
/// them in the used ring (published by the caller, once per burst). On failure nothing is put
/// and the buffers taken are given back (except a single unusable chain in first position,
/// handed back with length 0). The packet's checksum may be completed in place (guest without
/// GUEST_CSUM).
pub fn rx_push(
    q: &mut SplitQueue,
    pkt: &mut Packet,
    feat: &NetFeatures,
    scratch: &mut RxScratch,
) -> Result<(), RxDrop> {
    let meta = *pkt.meta();
    let mut hdr = match wire::rx_header(pkt.data_mut(), &meta, feat.acked) {
        Ok(h) => h,
        Err(_) => return Err(RxDrop::NeedsSegmentation),
    };
    let hdr_len = feat.hdr_len;
    let data = pkt.data();
    if rx_push_single(q, &mut hdr, data, hdr_len) {
        return Ok(());
    }
    let total = hdr_len + data.len();
    scratch.used.clear();
    // Where the header goes: written last, once `num_buffers` is known.
    let mut hdr_segs = [(std::ptr::null_mut::<u8>(), 0usize); MAX_HDR_SEGS];
    let mut nsegs = 0usize;
    let mut written = 0usize; // bytes of (header + data) placed so far
    let mut taken = 0u16;
    let fail = |q: &mut SplitQueue, taken: u16, e: RxDrop| {
        q.untake(taken);
        Err(e)
    };
    while written < total {
        if scratch.used.len() >= MAX_RX_BUFFERS || (!feat.mrg_rxbuf && taken == 1) {
            let e = if feat.mrg_rxbuf { RxDrop::RingFull } else { RxDrop::BufferTooSmall };
            return fail(q, taken, e);
        }
        match q.pending() {
            Ok(0) => return fail(q, taken, RxDrop::RingFull),
            Ok(_) => {}
            Err(_) => return fail(q, taken, RxDrop::Broken),
        }
        let head = q.take();
        taken += 1;
        let mut chain_written = 0usize;
        let mut bad = false;
        for d in q.chain(head) {
            let Some(d) = d.ok().filter(|d| d.is_write_only()) else {
                bad = true;
                break;
            };
            let Some(dst) = q.map().host(d.addr, d.len as usize) else {
                bad = true;
                break;
            };
            let (mut dst, mut room) = (dst.as_ptr(), d.len as usize);
            while written < hdr_len && room > 0 {
                if nsegs == MAX_HDR_SEGS {
                    bad = true;
                    break;
                }
                let take = (hdr_len - written).min(room);
                hdr_segs[nsegs] = (dst, take);
                nsegs += 1;
                written += take;
                chain_written += take;
                room -= take;
                // SAFETY: take <= room, so the result stays inside the checked buffer (or one
                // past its end when it is used up).
                dst = unsafe { dst.add(take) };
            }
            if bad {
                break;
            }
            if room > 0 && written < total {
                let from = written - hdr_len;
                let take = (total - written).min(room);
                // SAFETY: `dst` has `room >= take` writable bytes (checked by `host`);
                // `data[from..from + take]` is inside the packet (from + take <= data.len());
                // guest memory never overlaps our heap.
                unsafe { copy_bytes(data.as_ptr().add(from), dst, take) };
                written += take;
                chain_written += take;
            }
            if written >= total {
                // The rest of this chain stays unused (a complete packet need not walk it).
                break;
            }
        }
        if bad {
            if taken == 1 {
                // The first chain is unusable: hand it back empty so the ring moves on.
                q.put_used(head, 0);
                return Err(RxDrop::BadDescriptor);
            }
            return fail(q, taken, RxDrop::BadDescriptor);
        }
        scratch.used.push((head, chain_written as u32));
    }
    hdr.num_buffers = scratch.used.len() as u16;
    let hb = hdr.to_bytes();
    let mut off = 0;
    for &(dst, len) in &hdr_segs[..nsegs] {
        // SAFETY: each segment was checked as `len` writable bytes of guest memory above, and
        // the lengths add up to hdr_len <= hb.len().
        unsafe { std::ptr::copy_nonoverlapping(hb.as_ptr().add(off), dst, len) };
        off += len;
    }
    for &(head, len) in &scratch.used {
        q.put_used(head, len);
    }
    Ok(())
}

#[cfg(test)]
mod tests;

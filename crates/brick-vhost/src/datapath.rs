//! The data path on one split virtqueue, independent of vhost-user: guest TX chains become pool
//! packets (one copy), packets become guest RX buffers (mergeable or not, one copy).
//!
//! Every guest address goes through [`vm_memory::Bytes`] reads and writes, which check the
//! range against the memory map; descriptor chains are walked by `virtio-queue`, whose
//! iterator stops on loops (a TTL of the queue size), bad indexes and unreadable tables. A
//! chain cut short that way still has its last descriptor's NEXT flag set, which is how a
//! broken chain is told from a complete one here.

use brick_core::{Packet, PacketPool};
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

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

/// Outcome of [`tx_pop`].
#[derive(Debug)]
pub enum TxPop {
    /// A frame, with its offload metadata.
    Packet(Packet),
    /// A chain was consumed (returned to the guest) but its frame was dropped.
    Dropped(TxDrop),
    /// No chain available.
    Empty,
    /// No pool buffer: the chain stays in the ring for later (backpressure, no drop).
    PoolEmpty,
    /// The used ring cannot be written: the queue is unusable until the guest resets it.
    Broken,
}

/// Pops one TX chain from `q` and copies its frame into a packet from `pool`. The chain is
/// always returned to the guest (used length 0), whether the frame is kept or dropped.
pub fn tx_pop<M: GuestMemory>(q: &mut Queue, mem: &M, pool: &PacketPool, feat: &NetFeatures) -> TxPop {
    let Some(chain) = q.pop_descriptor_chain(mem) else { return TxPop::Empty };
    let head = chain.head_index();
    let Some(mut pkt) = pool.alloc() else {
        q.go_to_previous_position();
        return TxPop::PoolEmpty;
    };
    let hdr_len = feat.hdr_len;
    let mut hdr = [0u8; HDR_LEN_MRG];
    let mut hdr_got = 0usize;
    let mut last_has_next = true;
    let mut result: Result<(), TxDrop> = Ok(());
    for desc in chain {
        last_has_next = desc.has_next();
        if desc.is_write_only() {
            result = Err(TxDrop::BadDescriptor);
            break;
        }
        let mut addr = desc.addr();
        let mut len = desc.len() as usize;
        if hdr_got < hdr_len {
            let take = (hdr_len - hdr_got).min(len);
            if mem.read_slice(&mut hdr[hdr_got..hdr_got + take], addr).is_err() {
                result = Err(TxDrop::BadDescriptor);
                break;
            }
            hdr_got += take;
            len -= take;
            addr = match addr.checked_add(take as u64) {
                Some(a) => a,
                None => {
                    result = Err(TxDrop::BadDescriptor);
                    break;
                }
            };
        }
        if len == 0 {
            continue;
        }
        if pkt.tailroom() < len {
            result = Err(TxDrop::Oversized);
            break;
        }
        let Ok(dst) = pkt.append(len) else {
            result = Err(TxDrop::Oversized);
            break;
        };
        if mem.read_slice(dst, addr).is_err() {
            result = Err(TxDrop::BadDescriptor);
            break;
        }
    }
    if result.is_ok() && last_has_next {
        // Empty chain, or the walk stopped early: loop, index out of range, bad indirect table.
        result = Err(TxDrop::BadDescriptor);
    }
    if q.add_used(mem, head, 0).is_err() {
        return TxPop::Broken;
    }
    if let Err(e) = result {
        return TxPop::Dropped(e);
    }
    if hdr_got < hdr_len {
        return TxPop::Dropped(TxDrop::BadHeader);
    }
    let Some(h) = NetHdr::parse(&hdr[..hdr_len]) else { return TxPop::Dropped(TxDrop::BadHeader) };
    let frame_len = pkt.len();
    if frame_len < ETH_HLEN {
        return TxPop::Dropped(TxDrop::Runt);
    }
    if wire::tx_meta(&h, frame_len, feat.acked, pkt.meta_mut()).is_err() {
        return TxPop::Dropped(TxDrop::BadHeader);
    }
    TxPop::Packet(pkt)
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
    /// The used ring cannot be written.
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
pub fn rx_push_segmenting<M: GuestMemory>(
    q: &mut Queue,
    mem: &M,
    pkt: &mut Packet,
    feat: &NetFeatures,
    scratch: &mut RxScratch,
    pool: &PacketPool,
    segs: &mut Vec<Packet>,
) -> RxOutcome {
    let mut o = RxOutcome::default();
    match rx_push(q, mem, pkt, feat, scratch) {
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
        match rx_push(q, mem, &mut seg, feat, scratch) {
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

/// Copies `pkt` (plus its virtio-net header) into guest RX buffers popped from `q`, and
/// publishes them in the used ring. On failure nothing is published and the popped buffers
/// are put back (except a single unusable chain in first position, returned with length 0).
/// The packet's checksum may be completed in place (guest without GUEST_CSUM).
pub fn rx_push<M: GuestMemory>(
    q: &mut Queue,
    mem: &M,
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
    let total = hdr_len + data.len();
    scratch.used.clear();
    let mut hdr_segs = [(GuestAddress(0), 0usize); MAX_HDR_SEGS];
    let mut nsegs = 0usize;
    let mut written = 0usize; // bytes of (header + data) placed so far
    let mut popped = 0usize;
    let fail = |q: &mut Queue, popped: usize, e: RxDrop| {
        for _ in 0..popped {
            q.go_to_previous_position();
        }
        Err(e)
    };
    while written < total {
        if scratch.used.len() >= MAX_RX_BUFFERS || (!feat.mrg_rxbuf && popped == 1) {
            let e = if feat.mrg_rxbuf { RxDrop::RingFull } else { RxDrop::BufferTooSmall };
            return fail(q, popped, e);
        }
        let Some(chain) = q.pop_descriptor_chain(mem) else { return fail(q, popped, RxDrop::RingFull) };
        popped += 1;
        let head = chain.head_index();
        let mut chain_written = 0usize;
        let mut last_has_next = true;
        let mut bad = false;
        for desc in chain {
            last_has_next = desc.has_next();
            if !desc.is_write_only() {
                bad = true;
                break;
            }
            let mut addr = desc.addr();
            let mut room = desc.len() as usize;
            // header bytes: remember where they go
            while written < hdr_len && room > 0 {
                if nsegs == MAX_HDR_SEGS {
                    bad = true;
                    break;
                }
                let take = (hdr_len - written).min(room);
                // Placeholder (checks the range); the real header is written last.
                if mem.write_slice(&[0u8; HDR_LEN_MRG][..take], addr).is_err() {
                    bad = true;
                    break;
                }
                hdr_segs[nsegs] = (addr, take);
                nsegs += 1;
                written += take;
                chain_written += take;
                room -= take;
                addr = match addr.checked_add(take as u64) {
                    Some(a) => a,
                    None => {
                        bad = true;
                        break;
                    }
                };
            }
            if bad {
                break;
            }
            if room > 0 && written < total {
                let from = written - hdr_len;
                let take = (total - written).min(room);
                if mem.write_slice(&data[from..from + take], addr).is_err() {
                    bad = true;
                    break;
                }
                written += take;
                chain_written += take;
            }
            if written >= total {
                // Remaining descriptors of this chain are left unused (a complete chain need
                // not be walked to its end).
                last_has_next = false;
                break;
            }
        }
        if bad || (last_has_next && written < total) {
            if popped == 1 {
                // The first chain is unusable: hand it back empty so the ring moves on.
                if q.add_used(mem, head, 0).is_err() {
                    return Err(RxDrop::Broken);
                }
                return Err(RxDrop::BadDescriptor);
            }
            return fail(q, popped, RxDrop::BadDescriptor);
        }
        scratch.used.push((head, chain_written as u32));
    }
    hdr.num_buffers = scratch.used.len() as u16;
    let mut hb = [0u8; HDR_LEN_MRG];
    hdr.write(&mut hb[..hdr_len]);
    let mut off = 0;
    for &(addr, len) in &hdr_segs[..nsegs] {
        if mem.write_slice(&hb[off..off + len], addr).is_err() {
            return fail(q, popped, RxDrop::BadDescriptor);
        }
        off += len;
    }
    for &(head, len) in &scratch.used {
        if q.add_used(mem, head, len).is_err() {
            return Err(RxDrop::Broken);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

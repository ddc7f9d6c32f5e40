//! Descriptor handling against a simulated guest driver (a split ring in anonymous memory).

use std::sync::Arc;

use super::*;
use crate::ring::{GuestMap, SplitQueue};
use crate::testutil::GuestDriver;
use brick_core::{Burst, GsoType, OffloadFlags, PacketSource, PoolConfig};
use proptest::prelude::*;
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;

fn feat() -> NetFeatures {
    NetFeatures::from_acked(
        feature::VERSION_1 | feature::MRG_RXBUF | feature::CSUM | feature::HOST_TSO4 | feature::GUEST_CSUM,
    )
}

fn pool() -> PacketPool {
    PacketPool::new(PoolConfig { count: 64, headroom: 128, data_room: 2048 }).unwrap()
}

/// The device side of `g`'s queue.
fn split(mem: &Arc<GuestMemoryMmap<()>>, g: &GuestDriver<'_, GuestMemoryMmap<()>>) -> SplitQueue {
    SplitQueue::new(GuestMap::new(Arc::clone(mem)), g.layout(false), 0, 0).unwrap()
}

/// `tx_pop_into` with `lent` buffers beside `pool`, the used index published.
fn pop_into_lent(
    q: &mut SplitQueue,
    pool: &PacketPool,
    lent: &mut (dyn PacketSource + 'static),
    burst: &mut Burst,
) -> TxPop<usize> {
    let r =
        tx_pop_into(q, TxPools { lent: Some(&mut TxLent::new(lent)), ..TxPools::new(pool) }, &feat(), burst);
    q.publish_used();
    r
}

/// `tx_pop_into` (what the brick runs), with the used index published as a burst of one;
/// the packet taken back out of the burst, which must hold it alone, or nothing.
fn pop(q: &mut SplitQueue, p: &PacketPool, f: &NetFeatures) -> TxPop {
    let mut burst = Burst::new();
    let r = tx_pop_into(q, TxPools::new(p), f, &mut burst);
    q.publish_used();
    match r {
        TxPop::Packet(len) => {
            assert_eq!(burst.len(), 1);
            let pkt = burst.pop().unwrap();
            assert_eq!(pkt.len(), len);
            TxPop::Packet(pkt)
        }
        TxPop::Dropped(d) => none_in(burst, TxPop::Dropped(d)),
        TxPop::Empty => none_in(burst, TxPop::Empty),
        TxPop::PoolEmpty => none_in(burst, TxPop::PoolEmpty),
        TxPop::Broken => none_in(burst, TxPop::Broken),
    }
}

/// `r`, after checking that a pop that gave no frame left nothing in the burst.
fn none_in(burst: Burst, r: TxPop) -> TxPop {
    assert!(burst.is_empty(), "{r:?} left a packet in the burst");
    r
}

/// `rx_push`, with the used index published as a burst of one.
fn push(q: &mut SplitQueue, pkt: &mut Packet, f: &NetFeatures, s: &mut RxScratch) -> Result<(), RxDrop> {
    let r = rx_push(q, pkt, f, s);
    q.publish_used();
    r
}

/// `rx_push_segmenting`, published.
fn push_seg(
    q: &mut SplitQueue,
    pkt: &mut Packet,
    f: &NetFeatures,
    s: &mut RxScratch,
    pool: &PacketPool,
    segs: &mut Vec<Packet>,
) -> RxOutcome {
    let o = rx_push_segmenting(q, pkt, f, s, pool, segs);
    q.publish_used();
    o
}

fn frame(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[test]
fn tx_single_descriptor_frame_is_copied_with_meta() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    let hdr = NetHdr {
        flags: 1,
        gso_type: 1,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    let f = frame(1000);
    g.tx_frame(&hdr, &f, 4096);
    match pop(&mut q, &pool(), &feat()) {
        TxPop::Packet(p) => {
            assert_eq!(p.data(), &f[..]);
            assert!(p.meta().offload.contains(OffloadFlags::CSUM_NEEDED));
            assert_eq!(p.meta().gso_type, GsoType::TcpV4);
            assert_eq!(p.meta().gso_size, 1448);
        }
        other => panic!("expected a packet, got {other:?}"),
    }
    assert_eq!(g.used_idx(), 1);
    assert!(matches!(pop(&mut q, &pool(), &feat()), TxPop::Empty));
}

#[test]
fn tx_small_one_descriptor_frames_go_to_lent_buffers_the_rest_to_the_pool() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    let main = pool();
    // The lent buffers: 200 bytes of data room, three of them.
    let lent_pool = PacketPool::new(PoolConfig { count: 3, headroom: 128, data_room: 200 }).unwrap();
    let mut lent: Box<dyn PacketSource> = Box::new(lent_pool.clone());
    let mut burst = Burst::new();
    let mut pop_lent = |q: &mut SplitQueue, burst: &mut Burst| pop_into_lent(q, &main, lent.as_mut(), burst);
    let small = frame(200);
    // One descriptor, exactly the lent data room: lent.
    g.tx_frame(&NetHdr::default(), &small, 4096);
    assert!(matches!(pop_lent(&mut q, &mut burst), TxPop::Packet(200)));
    assert_eq!((lent_pool.available(), main.available()), (2, 64));
    // One byte more: the pool.
    g.tx_frame(&NetHdr::default(), &frame(201), 4096);
    assert!(matches!(pop_lent(&mut q, &mut burst), TxPop::Packet(201)));
    assert_eq!((lent_pool.available(), main.available()), (2, 63));
    // Small but over two descriptors: the pool.
    g.tx_frame(&NetHdr::default(), &small, 100);
    assert!(matches!(pop_lent(&mut q, &mut burst), TxPop::Packet(200)));
    assert_eq!((lent_pool.available(), main.available()), (2, 62));
    // A dropped frame gives its lent buffer back, and leaves the burst as it was.
    g.tx_frame(&NetHdr::default(), &frame(5), 4096);
    assert!(matches!(pop_lent(&mut q, &mut burst), TxPop::Dropped(TxDrop::Runt)));
    assert_eq!((lent_pool.available(), main.available(), burst.len()), (2, 62, 3));
    // Lent buffers run out: the pool takes over.
    for _ in 0..3 {
        g.tx_frame(&NetHdr::default(), &small, 4096);
        assert!(matches!(pop_lent(&mut q, &mut burst), TxPop::Packet(200)));
    }
    assert_eq!((lent_pool.available(), main.available()), (0, 61));
    for (p, want) in burst.iter().zip([&small[..], &frame(201), &small, &small, &small, &small]) {
        assert_eq!(p.data(), want);
    }
    burst.clear();
    assert_eq!((lent_pool.available(), main.available()), (3, 64));
}

/// A source whose buffers are only worth using from 100-byte frames on.
struct FromHundred(PacketPool);

impl PacketSource for FromHundred {
    fn data_room(&self) -> usize {
        self.0.data_room()
    }
    fn min_frame(&self) -> usize {
        100
    }
    fn push_empty<'b>(&mut self, burst: &'b mut Burst) -> Option<&'b mut Packet> {
        burst.push_alloc(&self.0)
    }
}

#[test]
fn tx_frames_shorter_than_the_lent_buffers_minimum_go_to_the_pool() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    let main = pool();
    let lent_pool = PacketPool::new(PoolConfig { count: 4, headroom: 128, data_room: 2048 }).unwrap();
    let mut lent: Box<dyn PacketSource> = Box::new(FromHundred(lent_pool.clone()));
    let mut burst = Burst::new();
    for (len, lent_left, main_left) in [(99, 4, 63), (100, 3, 63), (1500, 2, 63)] {
        g.tx_frame(&NetHdr::default(), &frame(len), 4096);
        let r = pop_into_lent(&mut q, &main, lent.as_mut(), &mut burst);
        assert!(matches!(r, TxPop::Packet(n) if n == len), "{r:?}");
        assert_eq!((lent_pool.available(), main.available()), (lent_left, main_left), "{len}-byte frame");
    }
}

#[test]
fn tx_frames_that_fit_the_small_pool_go_there_before_the_big_one() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    // `big` stands for the 64 KiB buffers of TSO; `small` takes frames up to 300 bytes.
    let big = PacketPool::new(PoolConfig { count: 8, headroom: 128, data_room: 4096 }).unwrap();
    let small = PacketPool::new(PoolConfig { count: 2, headroom: 128, data_room: 300 }).unwrap();
    let lent_pool = PacketPool::new(PoolConfig { count: 4, headroom: 128, data_room: 2048 }).unwrap();
    let mut lent: Box<dyn PacketSource> = Box::new(FromHundred(lent_pool.clone()));
    let mut burst = Burst::new();
    let mut pop_with = |q: &mut SplitQueue, burst: &mut Burst, with_lent: bool| {
        let mut l = TxLent::new(lent.as_mut());
        let pools = TxPools { pool: &big, small: Some(&small), lent: with_lent.then_some(&mut l) };
        let r = tx_pop_into(q, pools, &feat(), burst);
        q.publish_used();
        r
    };
    let left = || (lent_pool.available(), small.available(), big.available());
    // (frame length, descriptor size, lent offered, then what each pool has left).
    let steps = [
        (60, 4096, false, (4, 1, 8)),  // one descriptor, fits: small
        (300, 4096, false, (4, 0, 8)), // exactly the small data room: small
        (301, 4096, false, (4, 0, 7)), // one byte more: big
        (200, 100, false, (4, 0, 6)),  // small but over two descriptors: big
        (60, 4096, false, (4, 0, 5)),  // small has nothing free: big
    ];
    for (len, desc, with_lent, want) in steps {
        g.tx_frame(&NetHdr::default(), &frame(len), desc);
        let r = pop_with(&mut q, &mut burst, with_lent);
        assert!(matches!(r, TxPop::Packet(n) if n == len), "{len}: {r:?}");
        assert_eq!(left(), want, "{len}-byte frame over {desc}-byte descriptors");
    }
    for (p, len) in burst.iter().zip([60, 300, 301, 200, 60]) {
        assert_eq!(p.data(), &frame(len)[..]);
    }
    burst.clear();
    assert_eq!(left(), (4, 2, 8));
    // Lent buffers come first for the frames they take; shorter ones go to small.
    for (len, want) in [(150, (3, 2, 8)), (99, (3, 1, 8))] {
        g.tx_frame(&NetHdr::default(), &frame(len), 4096);
        let r = pop_with(&mut q, &mut burst, true);
        assert!(matches!(r, TxPop::Packet(n) if n == len), "{len}: {r:?}");
        assert_eq!(left(), want, "{len}-byte frame with lent buffers");
    }
}

#[test]
fn tx_frame_split_over_many_descriptors_and_header_split() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    let f = frame(1500);
    // 7-byte pieces: the 12-byte header itself spans two descriptors
    g.tx_frame(&NetHdr::default(), &f, 7);
    let TxPop::Packet(p) = pop(&mut q, &pool(), &feat()) else { panic!("no packet") };
    assert_eq!(p.data(), &f[..]);
}

#[test]
fn tx_indirect_chain_works() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 256);
    let mut q = split(&mem, &g);
    let f = frame(300);
    let mut bytes = vec![0u8; 12];
    bytes.extend_from_slice(&f);
    let a = g.put_data(&bytes);
    let b = g.put_data(&[]);
    // indirect table at `b` with two descriptors: header, payload
    g.write_desc_at(b, 0, (a, 12, NEXT, 1));
    g.write_desc_at(b, 1, (a + 12, f.len() as u32, 0, 0));
    g.push_chain(&[(b, 32, VRING_DESC_F_INDIRECT as u16, 0)]);
    let TxPop::Packet(p) = pop(&mut q, &pool(), &feat()) else { panic!("no packet") };
    assert_eq!(p.data(), &f[..]);
}

#[test]
fn tx_bad_input_is_dropped_and_the_chain_returned() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = split(&mem, &g);
    let p = pool();
    let a = g.put_data(&[0u8; 100]);
    // 1. descriptor loop: 0 -> 1 -> 0
    g.push_chain_raw(&[(a, 50, NEXT, 1), (a, 50, NEXT, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadDescriptor)));
    // 2. address outside guest memory
    g.push_chain(&[(0xdead_0000_0000, 100, 0, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadDescriptor)));
    // 3. range crossing the end of memory
    g.push_chain(&[(0x40_0000 - 10, 100, 0, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadDescriptor)));
    // 4. write-only descriptor in a TX chain
    g.push_chain(&[(a, 100, WRITE, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadDescriptor)));
    // 5. oversized: 3000 bytes in a 2048-byte pool buffer
    let big = g.put_data(&vec![0u8; 3100]);
    g.push_chain(&[(big, 3100, 0, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::Oversized)));
    // 6. header shorter than negotiated
    g.push_chain(&[(a, 8, 0, 0)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadHeader)));
    // 7. next index out of the table
    g.push_chain_raw(&[(a, 50, NEXT, 200)]);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadDescriptor)));
    // 8. GSO not negotiated (TSO6)
    g.tx_frame(&NetHdr { gso_type: 4, gso_size: 1000, ..Default::default() }, &frame(100), 200);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::BadHeader)));
    // 9. runts: a header and fewer than 14 bytes of frame (none at all, then 13)
    g.tx_frame(&NetHdr::default(), &[], 200);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::Runt)));
    g.tx_frame(&NetHdr::default(), &frame(13), 200);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Dropped(TxDrop::Runt)));
    g.tx_frame(&NetHdr::default(), &frame(14), 200);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Packet(_)));
    // every chain came back to the guest, no buffer leaked
    assert_eq!(g.used_idx(), 11);
    assert_eq!(p.available(), 64);
    // a good frame after all that still works
    g.tx_frame(&NetHdr::default(), &frame(60), 200);
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::Packet(_)));
}

#[test]
fn tx_pool_empty_leaves_chain_in_ring() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = split(&mem, &g);
    let p = PacketPool::new(PoolConfig { count: 1, headroom: 128, data_room: 2048 }).unwrap();
    g.tx_frame(&NetHdr::default(), &frame(60), 200);
    g.tx_frame(&NetHdr::default(), &frame(61), 200);
    let TxPop::Packet(first) = pop(&mut q, &p, &feat()) else { panic!() };
    assert!(matches!(pop(&mut q, &p, &feat()), TxPop::PoolEmpty));
    assert_eq!(g.used_idx(), 1);
    drop(first);
    let TxPop::Packet(second) = pop(&mut q, &p, &feat()) else { panic!() };
    assert_eq!(second.len(), 61);
}

#[test]
fn rx_mergeable_spreads_over_buffers_and_sets_num_buffers() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    let bufs: Vec<u64> = (0..4).map(|_| g.rx_buffer(500)).collect();
    let f = frame(1200);
    let mut pkt = Packet::from_slice(&f);
    let mut s = RxScratch::default();
    push(&mut q, &mut pkt, &feat(), &mut s).unwrap();
    assert_eq!(g.used_idx(), 3);
    let got = g.read_rx(&bufs[..3], &[500, 500, 212]);
    let h = NetHdr::parse(&got[..12]).unwrap();
    assert_eq!(h.num_buffers, 3);
    assert_eq!(&got[12..], &f[..]);
    assert_eq!(g.used_elems(), vec![(0, 500), (1, 500), (2, 212)]);
}

#[test]
fn rx_ring_full_rewinds_and_nothing_is_published() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    g.rx_buffer(500);
    let mut s = RxScratch::default();
    let mut big = Packet::from_slice(&frame(1200));
    assert_eq!(push(&mut q, &mut big, &feat(), &mut s), Err(RxDrop::RingFull));
    assert_eq!(g.used_idx(), 0);
    assert_eq!(q.next_avail, 0);
    // the buffer is still there for a small packet
    let mut small = Packet::from_slice(&frame(100));
    push(&mut q, &mut small, &feat(), &mut s).unwrap();
    assert_eq!(g.used_idx(), 1);
    assert_eq!(push(&mut q, &mut small, &feat(), &mut s), Err(RxDrop::RingFull));
}

#[test]
fn rx_without_mrg_needs_one_big_enough_buffer() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    let f = NetFeatures::from_acked(feature::VERSION_1);
    g.rx_buffer(500);
    g.rx_buffer(2000);
    let mut s = RxScratch::default();
    let mut pkt = Packet::from_slice(&frame(1000));
    assert_eq!(push(&mut q, &mut pkt, &f, &mut s), Err(RxDrop::BufferTooSmall));
    assert_eq!(q.next_avail, 0);
    // legacy 10-byte header without VERSION_1
    let legacy = NetFeatures::from_acked(0);
    assert_eq!(legacy.hdr_len, 10);
    let mut small = Packet::from_slice(&frame(400));
    push(&mut q, &mut small, &legacy, &mut s).unwrap();
    assert_eq!(g.used_elems(), vec![(0, 410)]);
}

#[test]
fn rx_bad_buffers_are_refused_without_panic() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    let mut s = RxScratch::default();
    let mut pkt = Packet::from_slice(&frame(100));
    // readable (not write-only) buffer first: returned empty, packet dropped
    let a = g.put_data(&[0u8; 600]);
    g.push_chain(&[(a, 600, 0, 0)]);
    assert_eq!(push(&mut q, &mut pkt, &feat(), &mut s), Err(RxDrop::BadDescriptor));
    assert_eq!(g.used_elems(), vec![(0, 0)]);
    // out-of-range buffer
    g.push_chain(&[(0x7fff_0000_0000, 600, WRITE, 0)]);
    assert_eq!(push(&mut q, &mut pkt, &feat(), &mut s), Err(RxDrop::BadDescriptor));
    // looped RX chain
    g.push_chain_raw(&[(a, 1, WRITE | NEXT, 1), (a, 1, WRITE | NEXT, 0)]);
    assert_eq!(push(&mut q, &mut pkt, &feat(), &mut s), Err(RxDrop::BadDescriptor));
    assert_eq!(g.used_idx(), 3);
    // then a good buffer works
    g.rx_buffer(600);
    push(&mut q, &mut pkt, &feat(), &mut s).unwrap();
}

/// An IPv4 TCP frame (10.0.0.1:1 → 10.0.0.2:2, sequence 100) carrying `payload`.
fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1, 2, 100, 1000)
        .write(&mut f, payload)
        .unwrap();
    f
}

/// `frame` as a TCP super-frame: TSO at MSS 1448, partial checksum at the TCP header.
fn tso_packet(frame: &[u8]) -> Packet {
    let mut pkt = Packet::from_slice(frame);
    let m = pkt.meta_mut();
    m.gso_type = GsoType::TcpV4;
    m.gso_size = 1448;
    m.offload = OffloadFlags::CSUM_NEEDED;
    m.csum_start = 34;
    m.csum_offset = 16;
    pkt
}

/// The header of a one-buffer RX frame, stored from registers (`write_header`), carries every
/// field where the driver reads it, for the 12-byte and the legacy 10-byte header, and the
/// frame follows it untouched.
#[test]
fn rx_single_buffer_header_carries_the_offload_fields() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let f = tcp_frame(&frame(3000));
    let tso = feature::VERSION_1 | feature::GUEST_CSUM | feature::GUEST_TSO4;
    for (acked, hdr_len) in [(tso, HDR_LEN_MRG), (tso & !feature::VERSION_1, HDR_LEN_LEGACY)] {
        let mut g = GuestDriver::new(&*mem, 64);
        let mut q = split(&mem, &g);
        let feat = NetFeatures::from_acked(acked);
        assert_eq!(feat.hdr_len, hdr_len);
        let addr = g.rx_buffer(4000);
        let mut pkt = tso_packet(&f);
        push(&mut q, &mut pkt, &feat, &mut RxScratch::default()).unwrap();
        assert_eq!(g.used_elems(), vec![(0, (hdr_len + f.len()) as u32)]);
        let got = g.read_rx(&[addr], &[hdr_len + f.len()]);
        let want = NetHdr {
            flags: wire::HDR_F_NEEDS_CSUM,
            gso_type: wire::GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
            num_buffers: if hdr_len == HDR_LEN_MRG { 1 } else { 0 },
        };
        assert_eq!(NetHdr::parse(&got[..hdr_len]), Some(want), "{hdr_len}-byte header");
        assert_eq!(&got[hdr_len..], &f[..]);
    }
}

#[test]
fn rx_gso_to_guest_without_tso_is_refused() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    g.rx_buffer(4000);
    let mut pkt = Packet::from_slice(&frame(3000));
    pkt.meta_mut().gso_type = GsoType::TcpV4;
    pkt.meta_mut().gso_size = 1448;
    let mut s = RxScratch::default();
    assert_eq!(push(&mut q, &mut pkt, &feat(), &mut s), Err(RxDrop::NeedsSegmentation));
    assert_eq!(q.next_avail, 0);
}

#[test]
fn rx_gso_to_guest_without_tso_is_segmented_in_software() {
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 64);
    let mut q = split(&mem, &g);
    let addrs: Vec<u64> = (0..4).map(|_| g.rx_buffer(2000)).collect();
    let payload = frame(4000);
    let mut pkt = tso_packet(&tcp_frame(&payload));
    let mut s = RxScratch::default();
    let mut segs = Vec::new();
    let o = push_seg(&mut q, &mut pkt, &feat(), &mut s, &pool(), &mut segs);
    assert_eq!((o.frames, o.dropped, o.reason), (3, 0, None), "4000 bytes at MSS 1448: 3 segments");
    assert_eq!(o.bytes, 3 * 54 + 4000);
    let used = g.used_elems();
    assert_eq!(used.len(), 3);
    let hdr = feat().hdr_len;
    let mut joined = Vec::new();
    for (i, (_, len)) in used.iter().enumerate() {
        let seg = g.read_rx(&addrs[i..=i], &[*len as usize]);
        let frame = &seg[hdr..];
        let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else { panic!("tcp") };
        assert_eq!(tcp.sequence_number(), 100 + joined.len() as u32);
        joined.extend_from_slice(tcp.payload());
    }
    assert_eq!(joined, payload);
    // A malformed super-frame is dropped, not pushed.
    let mut bad = Packet::from_slice(&frame(3000));
    bad.meta_mut().gso_type = GsoType::TcpV4;
    bad.meta_mut().gso_size = 1448;
    let o = push_seg(&mut q, &mut bad, &feat(), &mut s, &pool(), &mut segs);
    assert_eq!((o.frames, o.dropped, o.reason), (0, 1, Some(RxDrop::NeedsSegmentation)));
}

proptest! {
    /// A guest writing random descriptors (addresses, lengths, flags, next indexes) into a
    /// small ring never makes the data path panic or read out of bounds.
    #[test]
    fn random_descriptor_tables_never_panic(
        descs in proptest::collection::vec((any::<u64>(), 0u32..5000, any::<u16>(), 0u16..20), 1..16),
        heads in proptest::collection::vec(0u16..20, 1..8),
        rx in any::<bool>(),
        by_value in any::<bool>(),
    ) {
        let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap());
        let mut g = GuestDriver::new(&*mem, 16);
        let mut q = split(&mem, &g);
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            // keep some addresses inside memory so that reads really happen
            let addr = if addr % 3 == 0 { 0x8_0000 + (addr % 0x7_0000) } else { addr };
            g.write_desc(i as u16, (addr, len, flags, next));
        }
        g.publish_heads(&heads);
        let p = pool();
        let mut s = RxScratch::default();
        for _ in 0..heads.len() + 1 {
            if rx {
                let mut pkt = Packet::from_slice(&frame(300));
                let _ = push(&mut q, &mut pkt, &feat(), &mut s);
            } else if by_value {
                // `tx_pop`, which returns the packet (the fuzz target's and tests' form).
                let r = tx_pop(&mut q, &p, &feat());
                q.publish_used();
                if matches!(r, TxPop::Empty | TxPop::Broken) {
                    break;
                }
            } else if matches!(pop(&mut q, &p, &feat()), TxPop::Empty | TxPop::Broken) {
                break;
            }
        }
        prop_assert_eq!(p.available(), 64);
    }
}

proptest! {
    /// The one-descriptor TX fast path gives the same outcome as walking the chain: the same
    /// error, or the same header and frame bytes (every copy size, addresses near the end of
    /// memory and outside it, every flag).
    #[test]
    fn tx_single_descriptor_fast_path_matches_the_walk(
        len in 0u32..2200,
        at_end in any::<bool>(),
        outside in any::<bool>(),
        flags in any::<u16>(),
        legacy in any::<bool>(),
    ) {
        let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap());
        let mut g = GuestDriver::new(&*mem, 16);
        let q = split(&mem, &g);
        let addr = match (outside, at_end) {
            (true, _) => 0x10_0000 - 8,
            (false, true) => 0x10_0000 - len as u64,
            (false, false) => g.put_data(&frame(len as usize)),
        };
        let d = Desc { addr, len, flags: flags & !(NEXT | DESC_F_INDIRECT | WRITE), next: 0 };
        g.write_desc(3, (d.addr, d.len, d.flags, 0));
        let hdr_len = if legacy { HDR_LEN_LEGACY } else { HDR_LEN_MRG };
        let p = pool();
        let (mut fast, mut walk) = (p.alloc().unwrap(), p.alloc().unwrap());
        let a = copy_tx_single(&q, d, &mut fast, hdr_len);
        let b = copy_tx_walk(&q, 3, &mut walk, hdr_len);
        prop_assert_eq!(a, b);
        prop_assert_eq!(fast.data(), walk.data());
    }

    /// The one-buffer RX fast path writes what the general path writes: the header with
    /// `num_buffers` 1 and the frame, for every frame size from empty to past the buffer.
    #[test]
    fn rx_single_buffer_fast_path_matches_the_general_path(n in 0usize..600, buf in 1u32..600) {
        let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap());
        let mut g = GuestDriver::new(&*mem, 16);
        let mut q = split(&mem, &g);
        let addr = g.rx_buffer(buf);
        let f = frame(n);
        let mut s = RxScratch::default();
        let mut pkt = Packet::from_slice(&f);
        // Without MRG_RXBUF only one buffer may be used; the general path decides when the
        // fast path declines.
        let feat = NetFeatures::from_acked(feature::VERSION_1);
        let r = push(&mut q, &mut pkt, &feat, &mut s);
        if n + 12 <= buf as usize {
            prop_assert_eq!(r, Ok(()));
            prop_assert_eq!(g.used_elems(), vec![(0, n as u32 + 12)]);
            let got = g.read_rx(&[addr], &[n + 12]);
            prop_assert_eq!(NetHdr::parse(&got[..12]).unwrap().num_buffers, 1);
            prop_assert_eq!(&got[12..], &f[..]);
        } else {
            prop_assert_eq!(r, Err(RxDrop::BufferTooSmall));
            prop_assert_eq!(g.used_idx(), 0);
        }
    }
}

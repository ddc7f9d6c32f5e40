//! In-process vring throughput: the data-path functions the brick runs on the graph thread,
//! against a split ring in (anonymous) guest memory driven by a simulated guest.
//!
//! TX: the guest publishes 32 prepared chains (64-byte frames after a 12-byte header), the
//! device pops them into pool packets. RX: the guest publishes 32 prepared 2 KiB buffers, the
//! device copies 32 packets into them (mergeable header). Each iteration includes the
//! simulated guest's avail-index store (one; the slots are filled once), not its reclaiming of
//! used entries, and the device's once-per-burst work (used index, interrupt decision with
//! EVENT_IDX).
//! Cycles per packet = ns per packet × TSC GHz (measured with brick_core::cycles()).
use std::time::{Duration, Instant};

use brick_core::{cycles, Burst, Packet, PacketPool, PoolConfig};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use brick_vhost::datapath::{rx_push, tx_pop, tx_pop_into, NetFeatures, RxScratch, TxPools, TxPop};
use brick_vhost::ring::{GuestMap, SplitQueue};
use brick_vhost::testutil::{GuestDriver, F_WRITE};
use brick_vhost::wire::{feature, NetHdr};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const BURST: u16 = 32;
const RING: u16 = 256;

fn tsc_ghz() -> f64 {
    let (c0, t0) = (cycles(), Instant::now());
    std::thread::sleep(Duration::from_millis(100));
    (cycles() - c0) as f64 / t0.elapsed().as_nanos() as f64
}

/// The simulated guest's avail index, stored straight into guest memory: its slots hold
/// heads 0..RING already, so publishing a burst is one store (what a polling driver does),
/// and the measurement is the device's work, not vm-memory's accessors in the test driver.
struct AvailIdx(std::ptr::NonNull<u8>, u16);

impl AvailIdx {
    fn new(map: &GuestMap, avail: u64) -> Self {
        AvailIdx(map.host(avail + 2, 2).expect("avail ring inside memory"), 0)
    }
    fn publish(&mut self, n: u16) {
        self.1 = self.1.wrapping_add(n);
        // SAFETY: the pointer is the 2-aligned avail index of a ring inside a mapping that
        // `map` (held by the queue for the whole benchmark) keeps alive.
        unsafe { AtomicU16::from_ptr(self.0.as_ptr().cast()) }.store(self.1.to_le(), Ordering::Release);
    }
}

/// Cycles per packet of `burst` (one burst of BURST packets): the minimum and the median of
/// 20,000 bursts, printed beside criterion's figures. The minimum is what the code costs
/// when nothing else runs on the core (the machine is shared), the median what it costs
/// among the interruptions.
fn cycles_per_packet(name: &str, mut burst: impl FnMut()) {
    let mut v: Vec<u64> = (0..20_000)
        .map(|_| {
            let c0 = cycles();
            burst();
            cycles() - c0
        })
        .collect();
    v.sort_unstable();
    let per = |c: u64| c as f64 / BURST as f64;
    eprintln!("{name}: min {:.1} median {:.1} cycles/packet", per(v[0]), per(v[v.len() / 2]));
}

fn feat() -> NetFeatures {
    NetFeatures::from_acked(feature::VERSION_1 | feature::MRG_RXBUF | feature::RING_EVENT_IDX | feature::CSUM)
}

fn bench(c: &mut Criterion) {
    eprintln!("TSC: {:.3} GHz (cycles/packet = ns/packet x this)", tsc_ghz());
    let mut g = c.benchmark_group("vring");
    g.throughput(Throughput::Elements(BURST as u64));

    // TX: guest -> pool packets
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
    let mut d = GuestDriver::new(&*mem, RING);
    let map = GuestMap::new(Arc::clone(&mem));
    let mut q = SplitQueue::new(map.clone(), d.layout(true), 0, 0).unwrap();
    let heads: Vec<u16> = (0..RING).collect();
    d.fill_avail_slots(&heads);
    let mut avail = AvailIdx::new(&map, d.layout(true).avail);
    let mut frame = vec![0u8; 12 + 64];
    NetHdr::default().write(&mut frame[..12]);
    for i in 0..RING {
        let a = d.put_data(&frame);
        d.write_desc(i, (a, frame.len() as u32, 0, 0));
    }
    let pool = PacketPool::new(PoolConfig { count: 1024, headroom: 128, data_room: 2048 }).unwrap();
    let f = feat();
    let mut tx_burst = || {
        avail.publish(BURST);
        for _ in 0..BURST {
            match tx_pop(&mut q, &pool, &f) {
                TxPop::Packet(p) => drop(std::hint::black_box(p)),
                other => panic!("unexpected {other:?}"),
            }
        }
        q.publish_used();
        std::hint::black_box(q.needs_interrupt());
    };
    cycles_per_packet("tx_pop_64B", &mut tx_burst);
    g.bench_function("tx_pop_64B", |b| b.iter(&mut tx_burst));
    // What the brick does: the packets are built in a burst for the graph, then freed.
    let mut out = Burst::new();
    let mut tx_collect = || {
        avail.publish(BURST);
        for _ in 0..BURST {
            match tx_pop_into(&mut q, TxPools::new(&pool), &f, &mut out) {
                TxPop::Packet(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        q.publish_used();
        std::hint::black_box(q.needs_interrupt());
        std::hint::black_box(&mut out).clear();
    };
    cycles_per_packet("tx_pop_burst_64B", &mut tx_collect);
    g.bench_function("tx_pop_burst_64B", |b| b.iter(&mut tx_collect));

    // RX: packets -> guest buffers
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
    let mut d = GuestDriver::new(&*mem, RING);
    let map = GuestMap::new(Arc::clone(&mem));
    let mut q = SplitQueue::new(map.clone(), d.layout(true), 0, 0).unwrap();
    d.fill_avail_slots(&heads);
    let mut avail = AvailIdx::new(&map, d.layout(true).avail);
    for i in 0..RING {
        let a = d.put_data(&[0u8; 2048]);
        d.write_desc(i, (a, 2048, F_WRITE, 0));
    }
    let mut pkt = Packet::from_slice(&[0x5a; 64]);
    let mut scratch = RxScratch::default();
    let mut big = Packet::from_slice(&[0x5a; 1500]);
    let mut rx_burst = |pkt: &mut Packet| {
        avail.publish(BURST);
        for _ in 0..BURST {
            rx_push(&mut q, pkt, &f, &mut scratch).unwrap();
        }
        q.publish_used();
        std::hint::black_box(q.needs_interrupt());
    };
    cycles_per_packet("rx_push_64B", || rx_burst(&mut pkt));
    g.bench_function("rx_push_64B", |b| b.iter(|| rx_burst(&mut pkt)));
    cycles_per_packet("rx_push_1500B", || rx_burst(&mut big));
    g.bench_function("rx_push_1500B", |b| b.iter(|| rx_burst(&mut big)));
    g.finish();
    spread_hash(c);
}

/// The spread brick's per-frame work when several threads run an RX queue: the flow hash of
/// 32 UDP frames of different flows.
fn spread_hash(c: &mut Criterion) {
    let frames: Vec<Vec<u8>> = (0..BURST)
        .map(|i| {
            let mut f = vec![0u8; 60];
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x45;
            f[23] = 17;
            f[26..30].copy_from_slice(&[10, 0, 0, 1]);
            f[30..34].copy_from_slice(&[10, 0, 1, i as u8]);
            f[34..36].copy_from_slice(&(1000 + i).to_be_bytes());
            f[36..38].copy_from_slice(&53u16.to_be_bytes());
            f
        })
        .collect();
    let mut hash_burst = || {
        for f in &frames {
            std::hint::black_box(brick_vhost::flow_hash(std::hint::black_box(f)));
        }
    };
    cycles_per_packet("spread_flow_hash_64B", &mut hash_burst);
    let mut g = c.benchmark_group("spread");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("flow_hash_64B", |b| b.iter(&mut hash_burst));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

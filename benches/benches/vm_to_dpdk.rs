//! A VM's frames onto a DPDK port, in one process: a simulated guest's TX ring (brick-vhost's
//! data path) popped into a burst, handed to a DPDK brick on `net_null0` that transmits it.
//! Two ways, interleaved: into pool packets, which the port copies into fresh mbufs (`pool`),
//! or straight into the port's lent mbufs, which it sends as they are (`lent`: one copy per
//! frame). 64- and 1400-byte frames, bursts of 32; least and median cycles per frame over
//! 5,000 bursts. Run: `cargo bench -p butterfly-benches --features dpdk --bench vm_to_dpdk`
//! (EAL without hugepages or PCI; the runtime directory is removed afterwards).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use brick_core::{cycles, Burst, Graph, LentBuffers, PacketPool, PacketSource, PoolConfig, Side};
use brick_nic::{DpdkConfig, DpdkNic, Eal, PortSpec};
use brick_vhost::datapath::{tx_pop_into, NetFeatures, TxLent, TxPools, TxPop};
use brick_vhost::ring::{GuestMap, SplitQueue};
use brick_vhost::testutil::GuestDriver;
use brick_vhost::wire::{feature, NetHdr};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const BURST: u16 = 32;
const RING: u16 = 256;
const ROUNDS: usize = 5_000;

/// A guest TX ring whose RING slots hold prepared one-descriptor chains of `len`-byte
/// frames; publishing a burst is one store of the avail index.
struct GuestTx {
    q: SplitQueue,
    avail: std::ptr::NonNull<u8>,
    idx: u16,
    _mem: Arc<GuestMemoryMmap<()>>,
}

impl GuestTx {
    fn new(len: usize) -> GuestTx {
        let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x100_0000)]).unwrap());
        let mut d = GuestDriver::new(&*mem, RING);
        let map = GuestMap::new(Arc::clone(&mem));
        let q = SplitQueue::new(map.clone(), d.layout(true), 0, 0).unwrap();
        d.fill_avail_slots(&(0..RING).collect::<Vec<_>>());
        let mut frame = vec![0u8; 12 + len];
        NetHdr::default().write(&mut frame[..12]);
        frame[12..24].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        frame[24..26].copy_from_slice(&[0x08, 0x00]);
        for i in 0..RING {
            let a = d.put_data(&frame);
            d.write_desc(i, (a, frame.len() as u32, 0, 0));
        }
        let avail = map.host(d.layout(true).avail + 2, 2).unwrap();
        GuestTx { q, avail, idx: 0, _mem: mem }
    }

    fn publish(&mut self, n: u16) {
        self.idx = self.idx.wrapping_add(n);
        // SAFETY: the 2-aligned avail index of a ring inside `_mem`, which this struct keeps.
        unsafe { AtomicU16::from_ptr(self.avail.as_ptr().cast()) }.store(self.idx.to_le(), Ordering::Release);
    }
}

struct Bed {
    g: Graph,
    port: brick_core::BrickId,
    pool: PacketPool,
    feat: NetFeatures,
    burst: Burst,
}

impl Bed {
    /// One burst: the guest publishes, the device pops into `lent` (or the pool), the port
    /// transmits. Returns cycles per frame.
    fn burst(&mut self, guest: &mut GuestTx, lent: Option<&mut (dyn PacketSource + 'static)>) -> f64 {
        let c0 = cycles();
        guest.publish(BURST);
        let mut lent = lent.map(TxLent::new);
        if let Some(l) = &mut lent {
            l.source().reserve(BURST as usize);
        }
        for _ in 0..BURST {
            let r = tx_pop_into(
                &mut guest.q,
                TxPools { lent: lent.as_mut(), ..TxPools::new(&self.pool) },
                &self.feat,
                &mut self.burst,
            );
            assert!(matches!(r, TxPop::Packet(_)), "{r:?}");
        }
        if let Some(l) = &mut lent {
            l.source().unreserve();
        }
        guest.q.publish_used();
        self.g.inject(self.port, Side::East, 0, &mut self.burst).unwrap();
        (cycles() - c0) as f64 / BURST as f64
    }
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2])
}

fn main() {
    let prefix = format!("bvd{}", std::process::id());
    let args =
        ["--no-huge", "--no-pci", "-m", "256", "--file-prefix", &prefix, "--vdev", "net_null0", "-l", "0"];
    let eal = Eal::init(&args).expect("EAL");
    let pool = PacketPool::new(PoolConfig { count: 1024, headroom: 128, data_room: 2048 }).unwrap();
    let cfg = DpdkConfig { port: PortSpec::Name("net_null0".into()), mbufs: 4095, ..Default::default() };
    let nic = DpdkNic::open(eal, cfg, pool.clone()).expect("net_null0");
    let lent: LentBuffers = nic.lent_buffers();
    let counters = nic.counters();
    let mut g = Graph::new("vm-to-dpdk");
    let port = g.add("port", nic).unwrap();
    let feat = NetFeatures::from_acked(feature::VERSION_1 | feature::MRG_RXBUF | feature::RING_EVENT_IDX);
    let mut bed = Bed { g, port, pool, feat, burst: Burst::new() };
    let mut source = lent.source();
    for len in [64usize, 128, 256, 512, 1400] {
        let mut guest = GuestTx::new(len);
        let (mut by_pool, mut by_lent) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            by_pool.push(bed.burst(&mut guest, None));
            by_lent.push(bed.burst(&mut guest, Some(source.as_mut())));
        }
        let (p, l) = (stats(by_pool), stats(by_lent));
        println!(
            "vm_to_dpdk {len}B: pool (two copies) min {:.1} median {:.1}, lent mbufs (one copy) min {:.1} median {:.1} cycles/frame",
            p.0, p.1, l.0, l.1
        );
    }
    let s = counters.snapshot();
    println!("port: {} frames sent, {} copied into fresh mbufs", s.tx_packets, s.tx_copied);
    drop(bed);
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

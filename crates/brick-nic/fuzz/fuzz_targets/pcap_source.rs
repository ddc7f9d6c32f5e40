//! Arbitrary capture files replayed through a graph: errors are counted, never a panic.
#![no_main]
use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, PacketPool, Side};
use brick_nic::{PcapLoop, PcapSource, PcapSourceConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pool = PacketPool::with_count(64).unwrap();
    let cfg = PcapSourceConfig { loops: PcapLoop::Times(2), ..Default::default() };
    let Ok(src) = PcapSource::from_bytes(data.to_vec(), cfg, pool) else { return };
    let mut g = Graph::new("fuzz");
    let s = g.add("src", src).unwrap();
    let k = g.add("sink", RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    g.link(s, k).unwrap();
    for _ in 0..8 {
        g.poll_all();
    }
});

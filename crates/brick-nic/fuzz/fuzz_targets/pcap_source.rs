//! Arbitrary capture files replayed through a graph: errors are counted, never a panic, and
//! every packet returns to the pool.
#![no_main]
use std::sync::LazyLock;

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, PacketPool, Side};
use brick_nic::{PcapLoop, PcapSource, PcapSourceConfig};
use libfuzzer_sys::fuzz_target;

/// One pool for the whole run (a pool per input made the run's memory grow with every input).
static POOL: LazyLock<PacketPool> = LazyLock::new(|| PacketPool::with_count(64).unwrap());

fuzz_target!(|data: &[u8]| {
    let cfg = PcapSourceConfig { loops: PcapLoop::Times(2), ..Default::default() };
    let Ok(src) = PcapSource::from_bytes(data.to_vec(), cfg, POOL.clone()) else { return };
    let mut g = Graph::new("fuzz");
    let s = g.add("src", src).unwrap();
    let k = g.add("sink", RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    g.link(s, k).unwrap();
    for _ in 0..8 {
        g.poll_all();
    }
    drop(g);
    assert_eq!(POOL.available(), 64, "every packet is back in the pool");
});

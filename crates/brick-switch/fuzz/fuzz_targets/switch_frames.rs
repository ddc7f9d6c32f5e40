//! Feeds arbitrary frames, on arbitrary ports, through a switch with a tiny MAC table; every
//! flooded copy returns to the pool.
#![no_main]

use std::sync::LazyLock;

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Packet, PacketPool, Side};
use brick_switch::{Switch, SwitchConfig};
use libfuzzer_sys::fuzz_target;

/// One pool for the whole run (a pool per input made the run's memory grow with every input).
static POOL: LazyLock<PacketPool> = LazyLock::new(|| PacketPool::with_count(64).unwrap());

fuzz_target!(|data: &[u8]| {
    let mut g = Graph::new("fuzz");
    let cfg = SwitchConfig { mac_capacity: 4, ..SwitchConfig::default() };
    let sw = g.add("sw", Switch::new(cfg, POOL.clone()).unwrap()).unwrap();
    for i in 0..3 {
        let id = g.add(format!("s{i}"), RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
        g.link(sw, id).unwrap();
    }
    // First byte of each chunk picks the ingress port, the rest is the frame.
    for chunk in data.split(|&b| b == 0xa5) {
        let Some((&port, frame)) = chunk.split_first() else { continue };
        let mut b = Burst::new();
        let _ = b.push(Packet::from_slice(frame));
        let _ = g.inject(sw, Side::East, u16::from(port % 4), &mut b);
    }
    drop(g);
    assert_eq!(POOL.available(), 64, "every copy is back in the pool");
});

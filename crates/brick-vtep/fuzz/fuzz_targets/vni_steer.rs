//! Feeds arbitrary underlay frames to a worker's VNI steering brick (worker 1 of 3, queues
//! to both others linked): classification must never panic, every frame ends somewhere
//! (local VTEP, another worker, or a counted drop) and every copy returns to its pool.
#![no_main]

use std::sync::LazyLock;

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Packet, PacketPool, Side};
use brick_vtep::steer::{classify, Steering};
use brick_vtep::VniSteer;
use libfuzzer_sys::fuzz_target;

/// One pool for the whole run (a pool per input made the run's memory grow with every input).
static POOL: LazyLock<PacketPool> = LazyLock::new(|| PacketPool::with_count(8).unwrap());

fuzz_target!(|data: &[u8]| {
    if let Steering::Vxlan(vni) = classify(data, 4789) {
        assert!(vni < 1 << 24);
    }
    let pool = &*POOL;
    let mut g = Graph::new("fuzz");
    let steer = g.add("steer", VniSteer::new(1, 3, 4789, pool.clone()).unwrap()).unwrap();
    let mut ports = Vec::new();
    for name in ["vtep", "w0", "w2"] {
        let sink = g.add(name, RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
        ports.push(g.link(steer, sink).unwrap().0);
    }
    {
        let s = g.brick_mut::<VniSteer>(steer).unwrap();
        s.set_worker_port(0, ports[1]);
        s.set_worker_port(2, ports[2]);
    }
    for chunk in data.split(|&b| b == 0xa5) {
        let mut b = Burst::new();
        let _ = b.push(Packet::from_slice(chunk));
        let _ = g.inject(steer, Side::West, 0, &mut b);
    }
    assert_eq!(pool.available(), 8);
});

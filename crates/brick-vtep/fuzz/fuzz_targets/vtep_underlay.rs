//! Feeds arbitrary frames to a VTEP from the underlay and from a VM port, over an IPv4 or
//! IPv6 underlay (first byte), with a tiny MAC table and neighbour cache; every packet the
//! VTEP makes (encapsulation, ARP/NS answers, held frames) returns to the pool.
#![no_main]

use std::sync::LazyLock;

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Packet, PacketPool, Side};
use brick_vtep::{Vtep, VtepConfig};
use libfuzzer_sys::fuzz_target;

/// One pool for the whole run (a pool per input made the run's memory grow with every input).
static POOL: LazyLock<PacketPool> = LazyLock::new(|| PacketPool::with_count(64).unwrap());

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let local = if mode & 1 == 0 { "10.0.0.1" } else { "fd00::1" };
    let mut cfg = VtepConfig::new(local.parse().unwrap(), [2, 0, 0, 0, 0, 1]);
    cfg.mac_capacity = 2;
    cfg.neigh_capacity = 2;
    let mut g = Graph::new("fuzz");
    let vtep = g.add("vtep", Vtep::new(cfg, POOL.clone()).unwrap()).unwrap();
    let nic = g.add("nic", RxTx::new(Side::East, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    let vm = g.add("vm", RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    g.link(nic, vtep).unwrap();
    let (port, _) = g.link(vtep, vm).unwrap();
    let _ = g.brick_mut::<Vtep>(vtep).unwrap().add_vni(42, port);
    for chunk in rest.split(|&b| b == 0xa5) {
        let Some((&dir, frame)) = chunk.split_first() else { continue };
        let mut b = Burst::new();
        let _ = b.push(Packet::from_slice(frame));
        let (side, p) = if dir & 1 == 0 { (Side::West, 0) } else { (Side::East, port) };
        let _ = g.inject(vtep, side, p, &mut b);
    }
    g.tick_all();
    g.poll_all();
    drop(g);
    assert_eq!(POOL.available(), 64, "every packet is back in the pool");
});

//! Encapsulation and decapsulation of 64-byte inner frames, 64-packet bursts, IPv4 and IPv6
//! underlays.
//!
//! The packets cycle between the bench and a sink brick, so the loop allocates nothing:
//! encap: inject 64 inner frames on the VNI port → the underlay sink gets them → the bench
//! strips the 50/70 outer bytes (`pull`, no copy) and injects them again. decap: inject 64
//! VXLAN frames on the underlay port → the VM sink gets the inner frames → the bench puts
//! the outer header back (`prepend` + copy of 50/70 bytes, outside the VTEP). Criterion
//! measures the whole round; the VTEP's own cost per packet is printed from the graph's TSC
//! counters (cycles spent in `process` / packets).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Packet, PacketPool, Side};
use brick_vtep::{Vtep, VtepConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const LOCAL: [u8; 6] = [2, 0, 0, 0, 0, 1];
const REMOTE: [u8; 6] = [2, 0, 0, 0, 0, 2];
const VM_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const VM_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

fn inner64(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[
        0x08, 0x00, 0x45, 0, 0, 50, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
    ]);
    f.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 30, 0, 0]);
    f.resize(64, 0xab);
    f
}

struct Bed {
    g: Graph,
    vtep: brick_core::BrickId,
    wire: Arc<Mutex<Vec<Packet>>>,
    vm: Arc<Mutex<Vec<Packet>>>,
    port: u16,
    overhead: usize,
}

fn bed(local: IpAddr, remote: IpAddr, outer_csum_offload: bool) -> Bed {
    let pool = PacketPool::with_count(4096).unwrap();
    let mut g = Graph::new("bench");
    let v6 = local.is_ipv6();
    let cfg = VtepConfig { outer_csum_offload, ..VtepConfig::new(local, LOCAL) };
    let vtep = g.add("vtep", Vtep::new(cfg, pool.clone()).unwrap()).unwrap();
    let wire: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let w2 = Arc::clone(&wire);
    let nic = g
        .add(
            "nic",
            RxTx::new(
                Side::East,
                |_: &mut Burst| {},
                move |b: &mut Burst| w2.lock().unwrap().extend(b.drain()),
            ),
        )
        .unwrap();
    g.link(nic, vtep).unwrap();
    let vm: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let v2 = Arc::clone(&vm);
    let vmb = g
        .add(
            "vm",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| v2.lock().unwrap().extend(b.drain()),
            ),
        )
        .unwrap();
    let (port, _) = g.link(vtep, vmb).unwrap();
    g.brick_mut::<Vtep>(vtep).unwrap().add_vni(42, port).unwrap();
    g.poll_all();
    wire.lock().unwrap().clear();
    let overhead = if v6 { 70 } else { 50 };
    let mut b = Bed { g, vtep, wire, vm, port, overhead };
    // Teach the VTEP where VM_B lives: one VXLAN frame from the remote.
    let mut one = Burst::new();
    let mut p = pool.alloc_from(&inner64(VM_A, VM_B)).unwrap();
    let mut outer = encap_template(&mut b, &pool);
    outer[0..6].copy_from_slice(&LOCAL);
    outer[6..12].copy_from_slice(&REMOTE);
    let src_at = if v6 { 22 } else { 26 };
    let dst_at = if v6 { 38 } else { 30 };
    let n = if v6 { 16 } else { 4 };
    let (src, dst) = (ip_bytes(remote), ip_bytes(local));
    outer[src_at..src_at + n].copy_from_slice(&src);
    outer[dst_at..dst_at + n].copy_from_slice(&dst);
    fix(&mut outer, v6);
    p.prepend(overhead).unwrap().copy_from_slice(&outer);
    one.push(p).unwrap();
    b.g.inject(b.vtep, Side::West, 0, &mut one).unwrap();
    b.vm.lock().unwrap().clear();
    b
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An outer header as the VTEP builds it (to the group), captured once.
fn encap_template(b: &mut Bed, pool: &PacketPool) -> Vec<u8> {
    let mut one = Burst::new();
    one.push(pool.alloc_from(&inner64([0xff; 6], VM_A)).unwrap()).unwrap();
    b.g.inject(b.vtep, Side::East, b.port, &mut one).unwrap();
    let p = b.wire.lock().unwrap().pop().unwrap();
    p.data()[..b.overhead].to_vec()
}

/// Recomputes the IPv4 header checksum and zeroes the UDP checksum (accepted by the VTEP).
fn fix(h: &mut [u8], v6: bool) {
    if v6 {
        h[60] = 0;
        h[61] = 0;
    } else {
        h[24] = 0;
        h[25] = 0;
        let c = brick_vtep::wire::checksum(&h[14..34]);
        h[24..26].copy_from_slice(&c.to_be_bytes());
    }
}

fn run(c: &mut Criterion, name: &str, local: &str, remote: &str, outer_csum_offload: bool) {
    let (local, remote): (IpAddr, IpAddr) = (local.parse().unwrap(), remote.parse().unwrap());
    let mut b = bed(local, remote, outer_csum_offload);
    let pool = PacketPool::with_count(128).unwrap();
    let v6 = local.is_ipv6();
    let stats = b.g.stats(b.vtep).unwrap();
    let mut group = c.benchmark_group("vtep");
    group.throughput(Throughput::Elements(64));

    // Encapsulation: known unicast (VM_B learnt).
    let mut burst = Burst::new();
    for _ in 0..64 {
        burst.push(pool.alloc_from(&inner64(VM_B, VM_A)).unwrap()).unwrap();
    }
    let (c0, p0) = (stats.cycles.get(), stats.cycle_pkts.get());
    let overhead = b.overhead;
    group.bench_function(format!("encap_{name}_64x64B"), |bch| {
        bch.iter(|| {
            b.g.inject(b.vtep, Side::East, b.port, &mut burst).unwrap();
            for mut p in b.wire.lock().unwrap().drain(..) {
                p.pull(overhead).unwrap();
                // A partial outer checksum (outer_csum_offload) would read as the inner's.
                p.meta_mut().offload.remove(brick_core::OffloadFlags::CSUM_NEEDED);
                let _ = burst.push(p);
            }
        })
    });
    let encap = (stats.cycles.get() - c0) as f64 / (stats.cycle_pkts.get() - p0).max(1) as f64;
    let encap_q = quantiles(&stats, || {
        b.g.inject(b.vtep, Side::East, b.port, &mut burst).unwrap();
        for mut p in b.wire.lock().unwrap().drain(..) {
            p.pull(overhead).unwrap();
            p.meta_mut().offload.remove(brick_core::OffloadFlags::CSUM_NEEDED);
            let _ = burst.push(p);
        }
    });

    // Decapsulation: the same frames, as the remote sends them to us.
    let mut outer = encap_template(&mut b, &pool);
    outer[0..6].copy_from_slice(&LOCAL);
    outer[6..12].copy_from_slice(&REMOTE);
    let (src_at, dst_at, n) = if v6 { (22, 38, 16) } else { (26, 30, 4) };
    outer[src_at..src_at + n].copy_from_slice(&ip_bytes(remote));
    outer[dst_at..dst_at + n].copy_from_slice(&ip_bytes(local));
    fix(&mut outer, v6);
    let mut burst = Burst::new();
    for _ in 0..64 {
        let mut p = pool.alloc_from(&inner64(VM_A, VM_B)).unwrap();
        p.prepend(overhead).unwrap().copy_from_slice(&outer);
        burst.push(p).unwrap();
    }
    let (c0, p0) = (stats.cycles.get(), stats.cycle_pkts.get());
    group.bench_function(format!("decap_{name}_64x64B"), |bch| {
        bch.iter(|| {
            b.g.inject(b.vtep, Side::West, 0, &mut burst).unwrap();
            for mut p in b.vm.lock().unwrap().drain(..) {
                p.prepend(overhead).unwrap().copy_from_slice(&outer);
                let _ = burst.push(p);
            }
        })
    });
    let decap = (stats.cycles.get() - c0) as f64 / (stats.cycle_pkts.get() - p0).max(1) as f64;
    let decap_q = quantiles(&stats, || {
        b.g.inject(b.vtep, Side::West, 0, &mut burst).unwrap();
        for mut p in b.vm.lock().unwrap().drain(..) {
            p.prepend(overhead).unwrap().copy_from_slice(&outer);
            let _ = burst.push(p);
        }
    });
    group.finish();
    assert_eq!(stats.total_drops(), 0, "the bench must not drop: {:?}", stats.drops().collect::<Vec<_>>());
    println!("vtep {name}: process() TSC cycles/packet, mean over the criterion run: encap {encap:.1} / decap {decap:.1}");
    println!(
        "vtep {name}: per 64-packet burst over 5000 bursts, min / p10 / median: encap {:.1} / {:.1} / {:.1}, decap {:.1} / {:.1} / {:.1}",
        encap_q.0, encap_q.1, encap_q.2, decap_q.0, decap_q.1, decap_q.2
    );
}

/// Runs `round` until the graph has sampled the VTEP's cycles 5000 times (brick-core reads
/// the TSC on one call in `CYCLE_SAMPLING`) and returns the min, 10th percentile and median
/// TSC cycles per packet of the sampled calls (robust to other processes on a shared machine).
fn quantiles(stats: &brick_core::BrickStats, mut round: impl FnMut()) -> (f64, f64, f64) {
    let mut v: Vec<f64> = Vec::with_capacity(5000);
    while v.len() < 5000 {
        let (c0, p0) = (stats.cycles.get(), stats.cycle_pkts.get());
        round();
        let n = stats.cycle_pkts.get() - p0;
        if n > 0 {
            v.push((stats.cycles.get() - c0) as f64 / n as f64);
        }
    }
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 10], v[v.len() / 2])
}

fn benches(c: &mut Criterion) {
    run(c, "ipv4", "10.0.0.1", "10.0.0.2", false);
    run(c, "ipv6", "fd00::1", "fd00::2", false);
    // The outer UDP checksum left to the NIC (`outer_csum_offload`): what the VTEP saves.
    run(c, "ipv6-outer-csum-offload", "fd00::1", "fd00::2", true);
}

criterion_group!(vtep, benches);
criterion_main!(vtep);

//! Known-unicast forwarding through the switch, 64-packet bursts of 64-byte frames.
//!
//! The packets cycle: a sink station hands them back to the bench, which injects them again,
//! so the measured loop allocates nothing. Criterion reports time per burst (throughput in
//! elements = packets); the bench also prints the switch's own cycles per packet as
//! measured by the graph (TSC around `process`).

use std::sync::{Arc, Mutex};

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Packet, PacketPool, Side};
use brick_switch::{Switch, SwitchConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn frame(dst: u8, src: u8) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, dst, 0x02, 0, 0, 0, 0, src, 0x08, 0x00];
    f.resize(64, 0);
    f
}

fn known_unicast(c: &mut Criterion) {
    let pool = PacketPool::with_count(4096).unwrap();
    let mut g = Graph::new("bench");
    let sw = g.add("sw", Switch::new(SwitchConfig::default(), pool.clone()).unwrap()).unwrap();
    let back: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let mut ports = Vec::new();
    for i in 0..4 {
        let b2 = Arc::clone(&back);
        let id = g
            .add(
                format!("vm{i}"),
                RxTx::new(
                    Side::West,
                    |_: &mut Burst| {},
                    move |b: &mut Burst| b2.lock().unwrap().extend(b.drain()),
                ),
            )
            .unwrap();
        ports.push(g.link(sw, id).unwrap().0);
    }
    // Teach the switch where every station is.
    for (i, &p) in ports.iter().enumerate() {
        let mut b = Burst::new();
        b.push(pool.alloc_from(&frame(0xff, i as u8)).unwrap()).unwrap();
        g.inject(sw, Side::East, p, &mut b).unwrap();
    }
    back.lock().unwrap().clear();
    let mut burst = Burst::new();
    // 64 frames from station 0 to station 1 (1..4 round robin keeps several table entries hot).
    for i in 0..64u8 {
        burst.push(pool.alloc_from(&frame(1 + i % 3, 0)).unwrap()).unwrap();
    }
    let stats = g.stats(sw).unwrap();
    let (c0, p0) = (stats.cycles.get(), stats.cycle_pkts.get());
    let mut group = c.benchmark_group("switch");
    group.throughput(Throughput::Elements(64));
    group.bench_function("known_unicast_64x64B", |bch| {
        bch.iter(|| {
            g.inject(sw, Side::East, ports[0], &mut burst).unwrap();
            let mut v = back.lock().unwrap();
            for p in v.drain(..) {
                let _ = burst.push(p);
            }
        })
    });
    group.finish();
    let cyc = (stats.cycles.get() - c0) as f64 / (stats.cycle_pkts.get() - p0).max(1) as f64;
    println!("switch process(): {cyc:.1} TSC cycles per packet, mean over the criterion run");
    // Distribution over 5000 sampled bursts (brick-core reads the TSC on one call in
    // CYCLE_SAMPLING); min / p10 / median are robust to other processes on the machine.
    let mut v: Vec<f64> = Vec::with_capacity(5000);
    while v.len() < 5000 {
        let (c0, p0) = (stats.cycles.get(), stats.cycle_pkts.get());
        g.inject(sw, Side::East, ports[0], &mut burst).unwrap();
        for p in back.lock().unwrap().drain(..) {
            let _ = burst.push(p);
        }
        let n = stats.cycle_pkts.get() - p0;
        if n > 0 {
            v.push((stats.cycles.get() - c0) as f64 / n as f64);
        }
    }
    v.sort_by(f64::total_cmp);
    println!(
        "switch process(): per burst min / p10 / median {:.1} / {:.1} / {:.1} TSC cycles per packet",
        v[0], v[500], v[2500]
    );
}

criterion_group!(benches, known_unicast);
criterion_main!(benches);

//! Graph overhead: cost per hop (chains of nops), hub fan-out, and the cross-thread queue;
//! and the packet pool alone (taking and giving back buffers on one thread).
//!
//! Per-hop cost is the difference between a chain of 11 nops and a chain of 1, divided by 10
//! hops: allocation and freeing of the packets cancel out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::bricks::{Hub, Nop, RxTx};
use brick_core::{queue_pair, BrickId, Burst, Graph, PacketPool, Runner, RunnerConfig, Side, BURST_SIZE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn fill(pool: &PacketPool, b: &mut Burst) {
    while b.room() > 0 {
        let mut p = pool.alloc().expect("pool sized for the bench");
        p.append(60).unwrap();
        let _ = b.push(p);
    }
}

fn chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("chain");
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    for hops in [1usize, 11] {
        let pool = PacketPool::with_count(4 * BURST_SIZE).unwrap();
        let mut g = Graph::new("bench");
        let ids: Vec<BrickId> = (0..hops).map(|i| g.add(format!("nop{i}"), Nop).unwrap()).collect();
        g.chain(&ids).unwrap();
        let mut burst = Burst::new();
        group.bench_with_input(BenchmarkId::new("nops", hops), &hops, |b, _| {
            b.iter(|| {
                fill(&pool, &mut burst);
                g.inject(ids[0], Side::West, 0, &mut burst).unwrap();
            })
        });
    }
    group.finish();
}

fn hub(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub");
    for ports in [2usize, 4] {
        let pool = PacketPool::with_count(16 * BURST_SIZE).unwrap();
        let mut g = Graph::new("bench");
        let h = g.add("hub", Hub::new(pool.clone())).unwrap();
        for i in 0..ports {
            let n = g
                .add(format!("out{i}"), RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear()))
                .unwrap();
            g.link(h, n).unwrap();
        }
        let mut burst = Burst::new();
        // Packets delivered: one per other port.
        group.throughput(Throughput::Elements((BURST_SIZE * (ports - 1)) as u64));
        group.bench_with_input(BenchmarkId::new("fanout", ports), &ports, |b, _| {
            b.iter(|| {
                fill(&pool, &mut burst);
                g.inject(h, Side::East, 0, &mut burst).unwrap();
            })
        });
    }
    group.finish();
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    let pool = PacketPool::with_count(64 * BURST_SIZE).unwrap();
    let (tx, rx) = queue_pair(32).unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let mut consumer = Graph::new("consumer");
    let q = consumer.add("qrx", rx).unwrap();
    let r = Arc::clone(&received);
    let sink = consumer
        .add(
            "sink",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    r.store(r.load(Ordering::Relaxed) + b.len() as u64, Ordering::Release);
                    b.clear();
                },
            ),
        )
        .unwrap();
    consumer.link(q, sink).unwrap();
    let cfg = RunnerConfig { idle_rounds: u32::MAX, ..Default::default() };
    let runner = Runner::spawn(consumer, cfg).unwrap();
    let mut producer = Graph::new("producer");
    let t = producer.add("qtx", tx).unwrap();
    let mut burst = Burst::new();
    let mut sent = 0u64;
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                fill(&pool, &mut burst);
                producer.inject(t, Side::West, 0, &mut burst).unwrap();
                sent += BURST_SIZE as u64;
                // Back-pressure: stay within the ring (dropped packets would flatter the figure).
                while sent - received.load(Ordering::Acquire) > 16 * BURST_SIZE as u64 {
                    std::hint::spin_loop();
                }
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while received.load(Ordering::Acquire) < sent && Instant::now() < deadline {
                std::hint::spin_loop();
            }
            start.elapsed()
        })
    });
    group.finish();
    drop(runner);
}

/// The pool alone: one packet taken and dropped, and a burst of 64 taken then dropped (the
/// pattern of a source followed by a sink), on one thread.
fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool");
    let pool = PacketPool::with_count(4 * BURST_SIZE).unwrap();
    group.throughput(Throughput::Elements(1));
    group.bench_function("alloc_free/1", |b| {
        b.iter(|| drop(std::hint::black_box(pool.alloc().expect("pool sized for the bench"))))
    });
    let mut burst = Burst::new();
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    group.bench_function("alloc_free/64", |b| {
        b.iter(|| {
            fill(&pool, &mut burst);
            burst.clear();
        })
    });
    group.finish();
}

/// One poll round of a graph whose two sources find nothing (a runner between bursts): the
/// fixed cost every round pays before any packet.
fn idle_round(c: &mut Criterion) {
    let mut group = c.benchmark_group("round");
    let mut g = Graph::new("idle");
    for i in 0..2 {
        g.add(format!("src{i}"), RxTx::new(Side::East, |_: &mut Burst| {}, |_: &mut Burst| {})).unwrap();
    }
    group.bench_function("idle_2_sources", |b| b.iter(|| g.poll_ready()));
    group.finish();
}

criterion_group!(benches, chain, hub, queue, pool, idle_round);
criterion_main!(benches);

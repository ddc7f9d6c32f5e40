//! Packets crossing threads through a queue pair: ownership moves, nothing leaks or is freed
//! twice (every buffer is back in its pool at the end, exactly once).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::bricks::{Nop, RxTx};
use brick_core::{queue_pair, Burst, Graph, PacketPool, Runner, RunnerConfig, Side};

fn stress(total: u64, ring_bursts: usize) {
    let pool = PacketPool::with_count(1024).unwrap();
    let (tx, rx) = queue_pair(ring_bursts).unwrap();
    let carried = tx.stats();

    let sent = Arc::new(AtomicU64::new(0));
    let mut producer = Graph::new("producer");
    let (p, s) = (pool.clone(), Arc::clone(&sent));
    let src = producer
        .add(
            "src",
            RxTx::new(
                Side::East,
                move |b: &mut Burst| {
                    let mut seq = s.load(Ordering::Relaxed);
                    while seq < total && b.room() > 0 {
                        let Some(mut pkt) = p.alloc() else { break };
                        pkt.extend_from_slice(&seq.to_be_bytes()).unwrap();
                        let _ = b.push(pkt);
                        seq += 1;
                    }
                    s.store(seq, Ordering::Relaxed);
                },
                |b: &mut Burst| b.clear(),
            ),
        )
        .unwrap();
    let qtx = producer.add("qtx", tx).unwrap();
    producer.link(src, qtx).unwrap();

    let received = Arc::new(AtomicU64::new(0));
    let in_order = Arc::new(AtomicU64::new(1));
    let mut consumer = Graph::new("consumer");
    let qrx = consumer.add("qrx", rx).unwrap();
    let nop = consumer.add("nop", Nop).unwrap();
    let (r, o) = (Arc::clone(&received), Arc::clone(&in_order));
    let mut last: Option<u64> = None;
    let sink = consumer
        .add(
            "sink",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    for pkt in b.drain() {
                        let seq = u64::from_be_bytes(pkt.data()[..8].try_into().unwrap());
                        if last.is_some_and(|l| seq <= l) {
                            o.store(0, Ordering::Relaxed);
                        }
                        last = Some(seq);
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                },
            ),
        )
        .unwrap();
    consumer.chain(&[qrx, nop, sink]).unwrap();

    let a = Runner::spawn(producer, RunnerConfig { name: "prod".into(), ..Default::default() }).unwrap();
    let b = Runner::spawn(consumer, RunnerConfig { name: "cons".into(), ..Default::default() }).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the ring drain.
    std::thread::sleep(Duration::from_millis(50));
    let producer = a.stop().unwrap();
    let consumer = b.stop().unwrap();
    let dropped = carried.dropped_full.load(Ordering::Relaxed);
    let got = received.load(Ordering::Relaxed);
    assert_eq!(sent.load(Ordering::Relaxed), total, "producer finished");
    assert_eq!(got + dropped, total, "every packet either crossed or was counted as dropped");
    assert_eq!(in_order.load(Ordering::Relaxed), 1, "order kept across the queue");
    drop(producer);
    drop(consumer);
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked, none returned twice");
}

#[test]
fn queue_pair_moves_packets_between_threads_without_leaks() {
    stress(2_000_000, 64);
}

#[test]
fn a_tiny_ring_drops_and_counts_but_never_leaks() {
    stress(200_000, 1);
}

#[test]
fn packets_left_in_the_ring_return_to_the_pool_when_the_pair_is_dropped() {
    let pool = PacketPool::with_count(64).unwrap();
    let (tx, rx) = queue_pair(4).unwrap();
    let mut g = Graph::new("g");
    let t = g.add("t", tx).unwrap();
    let mut b = Burst::new();
    for _ in 0..10 {
        b.push(pool.alloc().unwrap()).unwrap();
    }
    g.inject(t, Side::West, 0, &mut b).unwrap();
    assert_eq!(pool.available(), 54);
    drop(g);
    drop(rx);
    assert_eq!(pool.available(), 64);
}

/// A sleeping consumer is woken by the queue's doorbell, not by its sleep timeout, and once
/// the burst is consumed the bell is silent again (the runner goes back to sleep instead of
/// spinning on a readable fd).
#[test]
fn a_burst_wakes_a_sleeping_consumer_and_the_bell_falls_silent() {
    let pool = PacketPool::with_count(256).unwrap();
    let (tx, rx) = queue_pair(8).unwrap();
    let qstats = tx.stats();
    let mut producer = Graph::new("producer");
    let t = producer.add("qtx", tx).unwrap();
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
                    r.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b.clear();
                },
            ),
        )
        .unwrap();
    consumer.link(q, sink).unwrap();
    // A 30 s sleep cap: only the doorbell can deliver within the test's deadline.
    let runner = Runner::spawn(
        consumer,
        RunnerConfig {
            name: "cons".into(),
            max_sleep: Duration::from_secs(30),
            spin: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    let stats = runner.stats();
    std::thread::sleep(Duration::from_millis(100));
    // Idle rounds with no traffic at all (timer ticks): the baseline.
    let before = stats.rounds.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let baseline = stats.rounds.load(Ordering::Relaxed) - before;
    for round in 1..=5u64 {
        let mut b = Burst::new();
        for _ in 0..3 {
            b.push(pool.alloc().unwrap()).unwrap();
        }
        producer.inject(t, Side::West, 0, &mut b).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::Relaxed) < 3 * round && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(received.load(Ordering::Relaxed), 3 * round, "burst {round} not delivered in 5 s");
        // Idle again: a bell left ringing would make the runner spin (tens of thousands of
        // rounds in 200 ms); a silent one leaves only the timer ticks.
        let before = stats.rounds.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        let spun = stats.rounds.load(Ordering::Relaxed) - before;
        assert!(
            spun <= 3 * baseline + 50,
            "{spun} rounds while idle after burst {round} (baseline {baseline}): the doorbell stayed readable"
        );
    }
    assert_eq!(qstats.wakeups.load(Ordering::Relaxed), 5);
    drop(runner.stop().unwrap());
    assert_eq!(pool.available(), 256);
}

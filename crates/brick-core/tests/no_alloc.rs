//! Proof that steady-state traffic does not touch the heap: a counting global allocator
//! watches 1M packets cross a source, a chain of bricks and a sink.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use brick_core::bricks::{Diode, Hub, Nop, RxTx, UserDipole};
use brick_core::{Burst, Graph, PacketPool, Side, BURST_SIZE};

struct Counting;

thread_local! {
    // Only the thread running the graph is watched: the test harness's own threads may
    // allocate meanwhile (seen once on a loaded machine: 4 allocations, none ours).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see alloc).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_million_packets_through_a_chain_allocate_nothing() {
    const TOTAL: u64 = 1_000_000;
    let pool = PacketPool::with_count(4 * BURST_SIZE).unwrap();
    let mut g = Graph::new("no-alloc");
    let p = pool.clone();
    let src = g
        .add(
            "src",
            RxTx::new(
                Side::East,
                move |b: &mut Burst| {
                    while b.room() > 0 {
                        match p.alloc() {
                            Some(mut pkt) => {
                                pkt.append(60).unwrap().fill(0xab);
                                let _ = b.push(pkt);
                            }
                            None => break,
                        }
                    }
                },
                |b: &mut Burst| b.clear(),
            ),
        )
        .unwrap();
    let mut received = 0u64;
    let counter = std::sync::Arc::new(AtomicU64::new(0));
    let c = std::sync::Arc::clone(&counter);
    let n1 = g.add("nop1", Nop).unwrap();
    let d = g.add("diode", Diode::new(Side::West)).unwrap();
    let f = g.add("filter", UserDipole::new(|_, p: &mut brick_core::Packet| p.len() == 60)).unwrap();
    let hub = g.add("hub", Hub::new(pool.clone())).unwrap();
    let n2 = g.add("nop2", Nop).unwrap();
    let sink = g
        .add(
            "sink",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    c.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b.clear();
                },
            ),
        )
        .unwrap();
    g.chain(&[src, n1, d, f, hub, n2, sink]).unwrap();

    // Warm up: every lazily sized buffer reaches its steady size.
    for _ in 0..100 {
        g.poll_all();
    }
    let warm = counter.load(Ordering::Relaxed);
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    while received < TOTAL {
        g.poll_all();
        received = counter.load(Ordering::Relaxed) - warm;
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0, "heap allocations during {received} packets");
    assert!(received >= TOTAL);
    assert_eq!(g.stats(sink).unwrap().side(Side::West).pkts_in.get(), warm + received);
    assert_eq!(pool.available(), pool.capacity());
}

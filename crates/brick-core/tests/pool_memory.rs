//! Proof that packet pools give their memory back: a global allocator counts the bytes in
//! use while pools are made and dropped the way fuzzers and short-lived users do, with
//! packets outliving their pool's handles and freed on other threads. One test function,
//! so that no other test of this binary allocates meanwhile; the test harness's own threads
//! still may (a few hundred bytes were seen under load), so "nothing left" allows
//! [`HARNESS_NOISE`] bytes: a leaking pool leaves tens of kilobytes per pool.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use brick_core::{Burst, PacketPool, PoolConfig, MIN_HEADROOM};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout` (see alloc).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::SeqCst)
}

/// Bytes the test harness may hold at any moment, beside ours.
const HARNESS_NOISE: isize = 4096;

/// Asserts that the bytes in use are back to `base`, give or take the harness's.
#[track_caller]
fn assert_back_to(base: isize, what: &str) {
    let d = live() - base;
    assert!(d.abs() <= HARNESS_NOISE, "{what}: {d} bytes left");
}

const CFG: PoolConfig = PoolConfig { count: 512, headroom: MIN_HEADROOM, data_room: 2048 };
/// The buffers of one pool alone.
const POOL_BYTES: isize = 512 * (128 + 2048);

/// One fuzzer-like round: a pool, a burst of packets, some kept past the pool's handle.
fn round(i: usize) {
    let pool = PacketPool::new(CFG.clone()).unwrap();
    let mut b = Burst::new();
    for _ in 0..32 {
        let _ = b.push(pool.alloc_from(&[i as u8; 60]).unwrap());
    }
    let kept = pool.alloc_from(b"kept").unwrap();
    drop(pool);
    b.clear();
    assert_eq!(kept.data(), b"kept");
}

#[test]
fn pools_give_their_memory_back() {
    // Warm up: the thread-local cache list and the test harness's first allocations.
    round(0);
    let base = live();

    // 1. A pool in use holds its buffers; dropping it gives them back.
    let pool = PacketPool::new(CFG.clone()).unwrap();
    assert!(live() - base >= POOL_BYTES, "the pool's buffers are allocated up front");
    drop(pool);
    assert_back_to(base, "a dropped pool leaves nothing behind");

    // 2. Many pools, one after the other, as a fuzzer makes them: memory stays flat.
    for i in 0..200 {
        round(i);
    }
    assert_back_to(base, "200 pools made and dropped leave nothing behind");

    // 3. A packet outliving every handle keeps only its own buffer (and the bookkeeping)
    //    once the pool closes, and the rest when it goes.
    let pool = PacketPool::new(CFG.clone()).unwrap();
    let p = pool.alloc_from(b"outlives").unwrap();
    drop(pool);
    let held = live() - base;
    assert!(held > 0 && held < POOL_BYTES / 4, "a closed pool frees its free buffers ({held} bytes held)");
    assert_eq!(p.data(), b"outlives");
    drop(p);
    assert_back_to(base, "the last packet frees the rest");

    // 4. Packets freed on another thread after the pool closed; and a thread that cached
    //    buffers of a pool and exited.
    let pool = PacketPool::new(CFG.clone()).unwrap();
    let pkts: Vec<_> = (0..100).map(|_| pool.alloc().unwrap()).collect();
    let p2 = pool.clone();
    std::thread::spawn(move || drop((0..50).map(|_| p2.alloc().unwrap()).collect::<Vec<_>>()))
        .join()
        .unwrap();
    drop(pool);
    std::thread::spawn(move || drop(pkts)).join().unwrap();
    assert_back_to(base, "nothing left after cross-thread frees");
}

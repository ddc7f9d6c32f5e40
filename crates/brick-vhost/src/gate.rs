//! How the graph thread uses a running vring without its lock.
//!
//! rust-vmm keeps each vring's state (virtio-queue's `Queue`, the call fd, enabled) behind a
//! `RwLock` that the control thread takes for every vhost-user message and the graph thread
//! took for every burst. Uncontended, that is two locked instructions per burst; each one
//! waits for the store buffer to drain, and right after a burst the store buffer holds the
//! guest-memory writes whose cache lines the guest's CPU owns. In a ping-pong that was a
//! fifth of the switch thread's time.
//!
//! The [`Gate`] lets the graph thread skip the lock while nothing changes:
//! - The graph thread brackets each poll or burst with [`enter`](Gate::enter) and
//!   [`leave`](Gate::leave) (a sequence counter, odd inside). `enter` returns the vrings'
//!   configuration version. A queue whose ring view was confirmed under the lock at an even
//!   version equal to the current one is used without the lock; anything else takes the
//!   lock, as before.
//! - The control thread makes every change inside [`change`](Gate::change): the version
//!   turns odd (no new lock-free use), a process-wide memory barrier (Linux `membarrier`)
//!   makes the graph thread's bracket visible, the control thread waits for a bracket that
//!   began before that point to end, applies the change under the lock, and turns the version
//!   even again (a new value: every ring view must be confirmed again under the lock).
//! - A device served by several graph threads (`VhostUserConfig::threads`) has one bracket
//!   counter per thread, each on its own cache line; a change waits for every open one.
//!
//! The heavy side (`membarrier`) costs microseconds per vhost-user message; the light side is
//! two plain stores and a load per burst. Without `membarrier` (an old kernel, a seccomp
//! filter) the graph thread issues a full fence in `enter` instead: still one locked-class
//! instruction per poll instead of four.
//!
//! The graph thread's indexes, which GET_VRING_BASE must read from the `Queue`, are left in
//! [`FastIndexes`] after each lock-free burst and written back into the `Queue` by whoever
//! next takes the lock ([`FastIndexes::sync_into`]).

use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueT};

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// How long a change waits for the graph thread to leave a bracket before going on: far
/// beyond any burst; only a graph thread that died inside one (a panic) gets there.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether this process registered for expedited private memory barriers.
fn membarrier_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        // SAFETY: membarrier takes two integers and a flags word; no memory is passed.
        let r =
            unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) };
        if r != 0 {
            tracing::info!(
                "membarrier unavailable ({}): the graph thread fences each poll instead",
                std::io::Error::last_os_error()
            );
        }
        r == 0
    })
}

/// A full memory barrier on every running thread of this process (`membarrier`). `false`
/// when the system call failed: the light side then fences on its own.
fn heavy_fence() -> bool {
    if !membarrier_ready() {
        return false;
    }
    // SAFETY: as in `membarrier_ready`; the process registered for this command.
    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0 }
}

/// The graph threads' brackets and the vrings' configuration version, shared by one NIC's
/// graph threads (its bricks, one per thread: see `VhostUserConfig::threads`) and its
/// control thread (vhost-user messages).
pub(crate) struct Gate {
    /// Even: stable (ring views confirmed at this value may be used without the lock). Odd:
    /// a change is under way.
    version: AtomicU64,
    /// Per graph thread, odd while it is inside a bracket; each on its own cache line, so
    /// that one thread's brackets do not take the line from another.
    busy: Box<[Busy]>,
    /// Whether `heavy_fence` works; otherwise `enter` fences.
    asymmetric: AtomicBool,
    /// One change at a time.
    changing: Mutex<()>,
}

/// One graph thread's bracket counter.
#[repr(align(64))]
#[derive(Default)]
struct Busy(AtomicU64);

impl Gate {
    /// A gate for `threads` graph threads (at least 1).
    pub(crate) fn new(threads: usize) -> Self {
        Gate::with_membarrier(threads, membarrier_ready())
    }

    /// A gate that relies on `membarrier` (only if it is available) or on a fence per bracket.
    fn with_membarrier(threads: usize, asymmetric: bool) -> Self {
        Gate {
            version: AtomicU64::new(0),
            busy: (0..threads.max(1)).map(|_| Busy::default()).collect(),
            asymmetric: AtomicBool::new(asymmetric),
            changing: Mutex::new(()),
        }
    }

    /// Graph thread `thread`: opens a bracket and returns the configuration version. Only
    /// [`stable`](Self::stable) versions allow lock-free use. One caller thread per `thread`.
    #[inline]
    pub(crate) fn enter(&self, thread: usize) -> u64 {
        let busy = &self.busy[thread].0;
        let b = busy.load(Ordering::Relaxed).wrapping_add(1);
        busy.store(b, Ordering::Relaxed);
        // The bracket's store must be visible before the version is read: the control
        // thread's membarrier orders it, or a fence here when there is none.
        if self.asymmetric.load(Ordering::Relaxed) {
            compiler_fence(Ordering::SeqCst);
        } else {
            fence(Ordering::SeqCst);
        }
        self.version.load(Ordering::Acquire)
    }

    /// Graph thread `thread`: closes its bracket; what it wrote (indexes, used entries) is
    /// visible to the control thread once it sees the bracket closed.
    #[inline]
    pub(crate) fn leave(&self, thread: usize) {
        let busy = &self.busy[thread].0;
        let b = busy.load(Ordering::Relaxed).wrapping_add(1);
        busy.store(b, Ordering::Release);
    }

    /// Whether `version` (from [`enter`](Self::enter)) allows lock-free use.
    #[inline]
    pub(crate) fn stable(version: u64) -> bool {
        version % 2 == 0
    }

    /// Control thread: runs `f` (which changes vring state under its lock) with the graph
    /// thread off the lock-free path: from the start of `f` until the next bracket that sees
    /// the new version, it takes the lock for every burst.
    pub(crate) fn change<R>(&self, f: impl FnOnce() -> R) -> R {
        let _one = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        self.version.fetch_add(1, Ordering::SeqCst);
        // Registered once, membarrier does not fail later (it fails only unregistered).
        if !(self.asymmetric.load(Ordering::Relaxed) && heavy_fence()) {
            // The graph thread fences in `enter`; this fence is the other half.
            fence(Ordering::SeqCst);
        }
        self.wait_for_leave();
        let r = f();
        self.version.fetch_add(1, Ordering::SeqCst);
        r
    }

    /// Waits until every bracket open now has closed. A bracket opened after the version
    /// went odd does not matter: it takes the lock.
    fn wait_for_leave(&self) {
        let start = Instant::now();
        for busy in self.busy.iter() {
            Self::wait_for(&busy.0, start);
        }
    }

    /// Waits until the bracket `busy` counts, if open now, has closed.
    fn wait_for(busy: &AtomicU64, start: Instant) {
        let open = busy.load(Ordering::Acquire);
        if open % 2 == 0 {
            return;
        }
        let mut spins = 0u32;
        while busy.load(Ordering::Acquire) == open {
            if start.elapsed() > LEAVE_TIMEOUT {
                tracing::warn!(
                    "the graph thread stayed {LEAVE_TIMEOUT:?} inside a burst; changing the vring anyway"
                );
                return;
            }
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// A queue's device indexes as the graph thread left them after its last lock-free burst,
/// until someone holding the vring's lock writes them back into the `Queue`.
#[derive(Default)]
pub(crate) struct FastIndexes {
    /// `next_avail | next_used << 16`.
    indexes: AtomicU32,
    /// Set by a lock-free burst, cleared by [`sync_into`](Self::sync_into).
    unsynced: AtomicBool,
}

impl FastIndexes {
    /// Graph thread, inside a bracket: records the indexes after a lock-free burst.
    #[inline]
    pub(crate) fn record(&self, next_avail: u16, next_used: u16) {
        self.indexes.store(u32::from(next_avail) | u32::from(next_used) << 16, Ordering::Relaxed);
        self.unsynced.store(true, Ordering::Relaxed);
    }

    /// With the vring's lock held (and the graph thread off the lock-free path, or being it):
    /// writes recorded indexes back into `q`.
    pub(crate) fn sync_into(&self, q: &mut Queue) {
        if self.unsynced.load(Ordering::Relaxed) {
            let v = self.indexes.load(Ordering::Relaxed);
            q.set_next_avail(v as u16);
            q.set_next_used((v >> 16) as u16);
            self.unsynced.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_registered_membarrier_fences_and_the_gate_relies_on_it() {
        // Linux ≥ 4.14 has it; a seccomp filter may refuse it, and then the gate falls back
        // to a fence per bracket (tested below with `with_membarrier(false)`).
        let ready = membarrier_ready();
        assert_eq!(heavy_fence(), ready);
        assert_eq!(Gate::new(1).asymmetric.load(Ordering::Relaxed), ready);
    }

    #[test]
    fn versions_go_odd_during_a_change_and_even_after() {
        let g = Gate::new(2);
        let v0 = g.enter(0);
        g.leave(0);
        assert!(Gate::stable(v0));
        let inside = g.change(|| {
            let v = g.enter(1);
            g.leave(1);
            v
        });
        assert!(!Gate::stable(inside), "a bracket opened during a change must take the lock");
        let v1 = g.enter(0);
        g.leave(0);
        assert!(Gate::stable(v1) && v1 != v0, "after a change, views must be confirmed again");
    }

    #[test]
    fn indexes_recorded_lock_free_are_written_back_once() {
        let f = FastIndexes::default();
        let mut q = Queue::new(256).unwrap();
        f.sync_into(&mut q);
        assert_eq!((q.next_avail(), q.next_used()), (0, 0));
        f.record(7, 65535);
        f.sync_into(&mut q);
        assert_eq!((q.next_avail(), q.next_used()), (7, 65535));
        // Written back once: a later base set under the lock is not overwritten.
        q.set_next_avail(100);
        f.sync_into(&mut q);
        assert_eq!(q.next_avail(), 100);
    }

    /// The property the data path relies on: no change runs while a bracket that saw a stable
    /// version is open. The graph side checks that the state it read at the start of a
    /// lock-free bracket is still there at its end, while another thread changes it as fast
    /// as it can.
    #[test]
    fn no_change_lands_inside_a_lock_free_bracket() {
        no_change_inside_brackets(Gate::new(1), 1);
    }

    #[test]
    fn no_change_lands_inside_a_lock_free_bracket_with_fences_only() {
        no_change_inside_brackets(Gate::with_membarrier(1, false), 1);
    }

    /// Two graph threads (a device's queue pairs served by two bricks): a change waits for
    /// the brackets of both.
    #[test]
    fn no_change_lands_inside_either_of_two_threads_brackets() {
        no_change_inside_brackets(Gate::new(2), 2);
        no_change_inside_brackets(Gate::with_membarrier(2, false), 2);
    }

    fn no_change_inside_brackets(g: Gate, threads: usize) {
        let g = Arc::new(g);
        let state = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let control = {
            let (g, state, stop) = (Arc::clone(&g), Arc::clone(&state), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    g.change(|| state.store(n, Ordering::Relaxed));
                    // Stable stretches between changes, as between vhost-user messages (back
                    // to back, a membarrier's microseconds leave the version odd nearly always).
                    for _ in 0..2000 {
                        std::hint::spin_loop();
                    }
                }
                n
            })
        };
        let graph = |thread: usize| {
            let (g, state) = (Arc::clone(&g), Arc::clone(&state));
            std::thread::spawn(move || {
                let (mut lock_free, mut locked) = (0u64, 0u64);
                // At least 600 ms, and on until both kinds of bracket were seen: on a loaded
                // machine the control thread, preempted inside a change, can keep the
                // version odd for that long (at most 10 s).
                let start = Instant::now();
                let enough = |lf: u64, l: u64| {
                    let t = start.elapsed();
                    t >= Duration::from_secs(10) || (t >= Duration::from_millis(600) && lf > 0 && l > 0)
                };
                while !enough(lock_free, locked) {
                    let v = g.enter(thread);
                    let before = state.load(Ordering::Relaxed);
                    for _ in 0..200 {
                        std::hint::spin_loop();
                    }
                    let after = state.load(Ordering::Relaxed);
                    g.leave(thread);
                    if Gate::stable(v) {
                        assert_eq!(
                            before, after,
                            "a change landed inside thread {thread}'s lock-free bracket"
                        );
                        lock_free += 1;
                    } else {
                        locked += 1;
                    }
                }
                (lock_free, locked)
            })
        };
        let graphs: Vec<_> = (0..threads).map(graph).collect();
        for (t, h) in graphs.into_iter().enumerate() {
            let (lock_free, locked) = h.join().unwrap();
            assert!(lock_free > 0 && locked > 0, "thread {t}: lock-free {lock_free}, locked {locked}");
        }
        stop.store(true, Ordering::Relaxed);
        let changes = control.join().unwrap();
        assert!(changes > 10, "the control thread made only {changes} changes");
    }
}

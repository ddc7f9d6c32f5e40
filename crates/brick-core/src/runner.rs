//! Runs a graph on its own thread, optionally pinned to a core.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::graph::{Graph, GraphHandle};

/// How a [`Runner`] behaves.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Thread name.
    pub name: String,
    /// Core to pin the thread to.
    pub cpu: Option<usize>,
    /// Consecutive empty poll rounds before the thread starts sleeping (whichever of this
    /// and [`spin`](Self::spin) comes first). `u32::MAX`: no limit by count.
    pub idle_rounds: u32,
    /// Longest time the thread keeps polling after the last packet before it sleeps, when
    /// every source has a wake fd (otherwise only `idle_rounds` counts). Default zero: sleep
    /// as soon as a round finds nothing. A spinning thread holds a core that the next hop of
    /// the packets it just sent (a peer daemon, the kernel's stack, a VM) may need; on the
    /// project's 2-vCPU machine any spin made the round trip slower (docs/performance.md).
    /// Raise it when the thread owns its core. `Duration::MAX` with `idle_rounds ==
    /// u32::MAX` never sleeps (busy polling).
    pub spin: Duration,
    /// Between two empty rounds, give the core to any other runnable thread
    /// (`sched_yield`) instead of spinning on it; not inside the [`spin`](Self::spin)
    /// window, where the thread pauses instead.
    pub yield_when_idle: bool,
    /// Longest sleep while sources have wake fds (commands and timers still wake it).
    pub max_sleep: Duration,
    /// Longest sleep while some source can only be found by polling.
    pub poll_sleep: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            name: "graph".into(),
            cpu: None,
            idle_rounds: 256,
            spin: Duration::ZERO,
            yield_when_idle: true,
            max_sleep: Duration::from_millis(100),
            poll_sleep: Duration::from_millis(1),
        }
    }
}

/// Adds one to a counter that only the runner's thread writes: a load and a store, not a
/// locked add, which would wait for every store of the round (guest memory, owned by
/// another core) to land before the next round starts.
#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Counters of a runner's loop (written by its thread only).
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Poll rounds.
    pub rounds: AtomicU64,
    /// Rounds that found packets.
    pub busy_rounds: AtomicU64,
    /// Times the thread went to sleep.
    pub sleeps: AtomicU64,
}

/// A graph running on its own thread: adaptive polling (spins while there is traffic, sleeps
/// on the sources' wake fds when idle), changed through its [`GraphHandle`]. Each round polls
/// only the sources that may have work ([`Graph::poll_ready`]): with many idle TAP NICs, a
/// wake-up costs one `epoll_wait` instead of a `read` per NIC.
pub struct Runner {
    join: Option<JoinHandle<Graph>>,
    stop: Arc<AtomicBool>,
    handle: GraphHandle,
    stats: Arc<RunnerStats>,
}

impl Runner {
    /// Moves `graph` to a new thread and starts polling it. With [`RunnerConfig::cpu`], the
    /// thread is pinned first, and failing to pin it is an error (the thread is gone).
    pub fn spawn(mut graph: Graph, cfg: RunnerConfig) -> io::Result<Runner> {
        let handle = graph.handle();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RunnerStats::default());
        let (stop2, stats2, handle2) = (Arc::clone(&stop), Arc::clone(&stats), handle.clone());
        // The thread reports whether it could pin itself before it starts polling: a runner
        // asked to own a core must not run elsewhere silently.
        let (pinned_tx, pinned_rx) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let (name, cpu) = (cfg.name.clone(), cfg.cpu);
        let join = std::thread::Builder::new().name(cfg.name.clone()).spawn(move || {
            let pinned = cfg.cpu.map_or(Ok(()), pin_to_cpu);
            let failed = pinned.is_err();
            let _ = pinned_tx.send(pinned);
            if failed {
                return graph;
            }
            // Empty rounds since the last packet, and when the first of them ended. Once
            // asleep, a wake-up that finds nothing goes straight back to sleep.
            let mut idle = 0u32;
            let mut idle_since: Option<Instant> = None;
            let mut asleep = false;
            while !stop2.load(Ordering::Relaxed) {
                let n = graph.poll_ready();
                bump(&stats2.rounds);
                if n > 0 {
                    bump(&stats2.busy_rounds);
                    idle = 0;
                    idle_since = None;
                    asleep = false;
                    continue;
                }
                idle = idle.saturating_add(1);
                let since = *idle_since.get_or_insert_with(Instant::now);
                // Time-bounded spinning only when every source can wake the thread: a source
                // that must be polled keeps the round-counted spin (sleeping costs it latency).
                let timed = graph.sources_have_wake_fds();
                // Inside the spin window the core is the thread's: pause, no system call (a
                // `sched_yield` costs one to two microseconds in a VM, which the next frame
                // waits for), and the clock read only every eighth round.
                if timed && !asleep && !cfg.spin.is_zero() && (idle % 8 != 0 || since.elapsed() < cfg.spin) {
                    std::hint::spin_loop();
                    continue;
                }
                let spun = timed && since.elapsed() >= cfg.spin;
                // The counter saturates: u32::MAX must stay "never", even after 2^32 rounds.
                let counted = cfg.idle_rounds != u32::MAX && idle >= cfg.idle_rounds;
                if asleep || counted || spun {
                    asleep = true;
                    bump(&stats2.sleeps);
                    graph.wait_for_work(cfg.max_sleep, cfg.poll_sleep);
                } else if cfg.yield_when_idle {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            drop(handle2);
            graph.apply_commands();
            graph
        })?;
        match pinned_rx.recv() {
            Ok(Ok(())) => Ok(Runner { join: Some(join), stop, handle, stats }),
            Ok(Err(e)) => {
                let _ = join.join();
                Err(io::Error::new(
                    e.kind(),
                    format!("pinning runner {name:?} to CPU {}: {e}", cpu.unwrap_or(0)),
                ))
            }
            Err(_) => Err(io::Error::other("the runner thread ended before starting")),
        }
    }

    /// A handle for commands.
    pub fn handle(&self) -> GraphHandle {
        self.handle.clone()
    }

    /// Loop counters.
    pub fn stats(&self) -> Arc<RunnerStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the thread and gives the graph back. A panicking brick is reported as an error.
    pub fn stop(mut self) -> io::Result<Graph> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.post(|_| {});
        let join = self.join.take().expect("joined once");
        join.join().map_err(|_| io::Error::other("graph thread panicked"))
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if let Some(join) = self.join.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = self.handle.post(|_| {});
            let _ = join.join();
        }
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
    }
    // SAFETY: cpu_set_t is plain data; zeroed is its empty value; CPU_SET stays in bounds
    // (checked above); sched_setaffinity reads exactly size_of::<cpu_set_t>() bytes.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this thread may run on (its affinity mask: a cpuset, `taskset` or a container
/// may allow fewer than the machine has), in increasing order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data (zeroed is empty); sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it; CPU_ISSET reads within it (i < CPU_SETSIZE).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize).filter(|&i| libc::CPU_ISSET(i, &set)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brick::{Brick, Output, PortId, Side};
    use crate::burst::Burst;
    use crate::waker::Waker;
    use std::os::fd::RawFd;
    use std::sync::atomic::AtomicUsize;

    /// A source that finds `work` units when polled, with or without a wake fd.
    struct Src {
        waker: Option<Arc<Waker>>,
        work: Arc<AtomicUsize>,
    }

    impl Brick for Src {
        fn kind(&self) -> &'static str {
            "test-src"
        }
        fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
            pkts.clear();
        }
        fn is_source(&self) -> bool {
            true
        }
        fn poll(&mut self, _: &mut Output<'_>) -> usize {
            if let Some(w) = &self.waker {
                w.drain();
            }
            self.work.swap(0, Ordering::Relaxed)
        }
        fn wake_fd(&self) -> Option<RawFd> {
            self.waker.as_ref().map(|w| w.fd())
        }
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn with_wake_fds_every_empty_round_is_followed_by_a_sleep_and_the_fd_wakes_it() {
        let waker = Arc::new(Waker::new().unwrap());
        let work = Arc::new(AtomicUsize::new(0));
        let mut g = Graph::new("g");
        g.add("src", Src { waker: Some(Arc::clone(&waker)), work: Arc::clone(&work) }).unwrap();
        let r = Runner::spawn(g, RunnerConfig::default()).unwrap();
        let st = r.stats();
        for _ in 0..20 {
            let before = st.busy_rounds.load(Ordering::Relaxed);
            work.store(1, Ordering::Relaxed);
            waker.wake();
            wait_until("the wake fd to wake the runner", || st.busy_rounds.load(Ordering::Relaxed) > before);
        }
        std::thread::sleep(Duration::from_millis(50));
        let (rounds, busy, sleeps) = (
            st.rounds.load(Ordering::Relaxed),
            st.busy_rounds.load(Ordering::Relaxed),
            st.sleeps.load(Ordering::Relaxed),
        );
        r.stop().unwrap();
        assert_eq!(busy, 20);
        // No spinning: each empty round sent the thread to sleep (the last may be in flight).
        assert!(rounds - busy <= sleeps + 1, "rounds {rounds}, busy {busy}, sleeps {sleeps}");
    }

    #[test]
    fn a_source_without_wake_fd_keeps_the_counted_spin_before_sleeping() {
        let work = Arc::new(AtomicUsize::new(1));
        let mut g = Graph::new("g");
        g.add("src", Src { waker: None, work: Arc::clone(&work) }).unwrap();
        let cfg = RunnerConfig { idle_rounds: 100, ..RunnerConfig::default() };
        let r = Runner::spawn(g, cfg).unwrap();
        let st = r.stats();
        wait_until("a first sleep", || st.sleeps.load(Ordering::Relaxed) > 0);
        r.stop().unwrap();
        // One busy round, then at least idle_rounds empty rounds before the first sleep.
        assert!(st.rounds.load(Ordering::Relaxed) >= 101, "{:?}", st);
    }

    #[test]
    fn busy_polling_never_sleeps() {
        let waker = Arc::new(Waker::new().unwrap());
        let mut g = Graph::new("g");
        g.add("src", Src { waker: Some(waker), work: Arc::new(AtomicUsize::new(0)) }).unwrap();
        let cfg = RunnerConfig { idle_rounds: u32::MAX, spin: Duration::MAX, ..RunnerConfig::default() };
        let r = Runner::spawn(g, cfg).unwrap();
        let st = r.stats();
        wait_until("10,000 rounds", || st.rounds.load(Ordering::Relaxed) >= 10_000);
        r.stop().unwrap();
        assert_eq!(st.sleeps.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_runner_that_cannot_pin_itself_is_an_error() {
        let cfg = RunnerConfig { name: "nowhere".into(), cpu: Some(100_000), ..RunnerConfig::default() };
        let e = Runner::spawn(Graph::new("g"), cfg).err().expect("pinning to CPU 100000 must fail");
        assert!(e.to_string().contains("CPU 100000"), "{e}");
        let cfg = RunnerConfig { name: "cpu0".into(), cpu: Some(0), ..RunnerConfig::default() };
        Runner::spawn(Graph::new("g"), cfg).unwrap().stop().unwrap();
    }

    #[test]
    fn allowed_cpus_include_the_current_one() {
        let allowed = allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        // SAFETY: sched_getcpu has no arguments.
        let now = unsafe { libc::sched_getcpu() };
        assert!(now >= 0 && allowed.contains(&(now as usize)), "{now} not in {allowed:?}");
    }

    #[test]
    fn pinning_to_cpu0_works_and_bad_cpu_is_an_error() {
        std::thread::spawn(|| {
            pin_to_cpu(0).unwrap();
            assert!(pin_to_cpu(100_000).is_err());
        })
        .join()
        .unwrap();
    }
}

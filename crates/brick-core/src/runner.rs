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
    /// and [`spin`](Self::spin) comes first).
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
    /// (`sched_yield`) instead of spinning on it.
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

/// Counters of a runner's loop.
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
/// on the sources' wake fds when idle), changed through its [`GraphHandle`].
pub struct Runner {
    join: Option<JoinHandle<Graph>>,
    stop: Arc<AtomicBool>,
    handle: GraphHandle,
    stats: Arc<RunnerStats>,
}

impl Runner {
    /// Moves `graph` to a new thread and starts polling it.
    pub fn spawn(mut graph: Graph, cfg: RunnerConfig) -> io::Result<Runner> {
        let handle = graph.handle();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RunnerStats::default());
        let (stop2, stats2, handle2) = (Arc::clone(&stop), Arc::clone(&stats), handle.clone());
        let join = std::thread::Builder::new().name(cfg.name.clone()).spawn(move || {
            if let Some(cpu) = cfg.cpu {
                let _ = pin_to_cpu(cpu);
            }
            // Empty rounds since the last packet, and when the first of them ended. Once
            // asleep, a wake-up that finds nothing goes straight back to sleep.
            let mut idle = 0u32;
            let mut idle_since: Option<Instant> = None;
            let mut asleep = false;
            while !stop2.load(Ordering::Relaxed) {
                let n = graph.poll_all();
                stats2.rounds.fetch_add(1, Ordering::Relaxed);
                if n > 0 {
                    stats2.busy_rounds.fetch_add(1, Ordering::Relaxed);
                    idle = 0;
                    idle_since = None;
                    asleep = false;
                    continue;
                }
                idle = idle.saturating_add(1);
                let since = *idle_since.get_or_insert_with(Instant::now);
                // Time-bounded spinning only when every source can wake the thread: a source
                // that must be polled keeps the round-counted spin (sleeping costs it latency).
                let spun = graph.sources_have_wake_fds() && since.elapsed() >= cfg.spin;
                if asleep || idle >= cfg.idle_rounds || spun {
                    asleep = true;
                    stats2.sleeps.fetch_add(1, Ordering::Relaxed);
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
        Ok(Runner { join: Some(join), stop, handle, stats })
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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Runs a graph on its own thread, optionally pinned to a core.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::graph::{Graph, GraphHandle};

/// How a [`Runner`] behaves.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Thread name.
    pub name: String,
    /// Core to pin the thread to.
    pub cpu: Option<usize>,
    /// Consecutive empty poll rounds before the thread starts sleeping.
    pub idle_rounds: u32,
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
            let mut idle = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                let n = graph.poll_all();
                stats2.rounds.fetch_add(1, Ordering::Relaxed);
                if n > 0 {
                    stats2.busy_rounds.fetch_add(1, Ordering::Relaxed);
                    idle = 0;
                } else {
                    idle = idle.saturating_add(1);
                    if idle >= cfg.idle_rounds {
                        stats2.sleeps.fetch_add(1, Ordering::Relaxed);
                        graph.wait_for_work(cfg.max_sleep, cfg.poll_sleep);
                    } else {
                        std::hint::spin_loop();
                    }
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

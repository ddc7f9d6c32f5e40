//! The cost of moving one cache line between two CPUs and back: the hidden variable of the
//! vhost-user benchmarks. A guest and its switch exchange ring and buffer lines on every
//! frame, so their rate follows this latency. On a virtual machine the host decides it, by
//! where it runs the two vCPUs, and may change it while a benchmark runs (pvp-compare.sh
//! runs this probe around every measurement window for that reason).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round trips timed between two clock reads.
const ROUND_TRIPS_PER_READ: u64 = 1000;

/// The line the two threads pass between them, alone in its cache line.
#[repr(align(128))]
struct Line(AtomicU64);

/// Pins the calling thread to `cpu`.
fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it (cpu is
    // checked against the set's size first); sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("cannot run on CPU {cpu}: {e}")));
        }
    }
    Ok(())
}

/// Mean time, in nanoseconds, for a cache line to go from a thread on `cpu_a` to one on
/// `cpu_b` and back, measured over `window`: `cpu_a` makes the line's value odd, `cpu_b`
/// sees it and makes it even, and so on. The calling thread is pinned to `cpu_a` meanwhile
/// and its affinity restored after. Both CPUs must be otherwise idle for a true figure.
pub fn round_trip_ns(cpu_a: usize, cpu_b: usize, window: Duration) -> io::Result<f64> {
    if cpu_a == cpu_b {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "the two CPUs must differ"));
    }
    let line = Arc::new(Line(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let peer = {
        let (line, stop) = (Arc::clone(&line), Arc::clone(&stop));
        std::thread::spawn(move || -> io::Result<()> {
            pin(cpu_b)?;
            while !stop.load(Ordering::Relaxed) {
                let v = line.0.load(Ordering::Acquire);
                if v & 1 == 1 {
                    line.0.store(v + 1, Ordering::Release);
                }
            }
            Ok(())
        })
    };
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most its size.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut saved) };
    let result = pin(cpu_a).map(|()| ping(&line.0, &peer, window));
    stop.store(true, Ordering::Relaxed);
    let peer_result = peer.join().unwrap_or_else(|_| Err(io::Error::other("probe thread panicked")));
    if got == 0 {
        // SAFETY: `saved` was filled by sched_getaffinity above.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &saved) };
    }
    peer_result?;
    result?.ok_or_else(|| io::Error::other(format!("CPU {cpu_b} never answered")))
}

/// The timed loop: `None` when the peer thread ended (it could not pin itself) or stayed
/// silent for the whole window.
fn ping<T>(line: &AtomicU64, peer: &std::thread::JoinHandle<T>, window: Duration) -> Option<f64> {
    let start = Instant::now();
    let mut trips = 0u64;
    while start.elapsed() < window {
        for _ in 0..ROUND_TRIPS_PER_READ {
            let v = line.load(Ordering::Relaxed);
            line.store(v + 1, Ordering::Release);
            while line.load(Ordering::Acquire) == v + 1 {
                if peer.is_finished() || start.elapsed() > window * 4 {
                    return None;
                }
                std::hint::spin_loop();
            }
        }
        trips += ROUND_TRIPS_PER_READ;
    }
    Some(start.elapsed().as_nanos() as f64 / trips as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_cpu_twice_is_refused() {
        assert!(round_trip_ns(0, 0, Duration::from_millis(10)).is_err());
    }

    #[test]
    fn a_cpu_outside_the_set_is_an_error_not_a_hang() {
        let err = round_trip_ns(0, 100_000, Duration::from_millis(10)).unwrap_err();
        assert!(err.to_string().contains("100000"), "{err}");
    }

    #[test]
    fn two_cpus_give_a_plausible_round_trip() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            eprintln!("one CPU: nothing to measure");
            return;
        }
        let ns = round_trip_ns(0, 1, Duration::from_millis(50)).unwrap();
        // A line cannot cross and come back in under a nanosecond, and a busy CI machine
        // still answers within a millisecond on average.
        assert!((1.0..1_000_000.0).contains(&ns), "{ns} ns");
    }
}

//! A cheap monotonic timestamp shared by every graph of the process.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since a process-wide monotonic epoch.
///
/// Bricks store these in their tables (MAC aging, conntrack timeouts): 8 bytes instead of an
/// `Instant`'s 16, and plain integer arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let epoch = *EPOCH.get_or_init(Instant::now);
        Timestamp(epoch.elapsed().as_nanos() as u64)
    }

    /// Builds a timestamp from whole seconds since the epoch (handy in tests).
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs * 1_000_000_000)
    }

    /// Builds a timestamp from milliseconds since the epoch (handy in tests).
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms * 1_000_000)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.as_nanos().min(u64::MAX as u128) as u64))
    }
}

/// Reads the CPU's time-stamp counter (cycles), or nanoseconds where there is none.
#[inline]
pub fn cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no memory effects and is available on every x86_64 CPU; the
        // intrinsic is only `unsafe` for historical reasons. Exercised by `cycles_advance`.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Timestamp::now().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_monotonic() {
        let a = Timestamp::now();
        std::thread::sleep(Duration::from_millis(2));
        let b = Timestamp::now();
        assert!(b > a);
        assert!(b.saturating_since(a) >= Duration::from_millis(2));
        assert_eq!(a.saturating_since(b), Duration::ZERO);
    }

    #[test]
    fn cycles_advance() {
        let a = cycles();
        let mut x = 0u64;
        for i in 0..10_000 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(cycles() > a);
    }
}

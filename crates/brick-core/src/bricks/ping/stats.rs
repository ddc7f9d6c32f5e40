//! Round-trip figures of a ping brick: counters and per-window min/mean/max, kept in
//! atomics so that any thread (the API, metrics) reads them without stopping the graph.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Means of the last windows kept for reports.
pub const KEPT_WINDOWS: usize = 16;

/// Counters and round trips of a [`PingSender`](super::PingSender) or a
/// [`PingResponder`](super::PingResponder). Written by the graph thread only; readers may
/// see one update half applied (figures of a reply being recorded), never a torn number.
#[derive(Debug, Default)]
pub struct PingStats {
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    no_buffer: AtomicU64,
    timed: AtomicU64,
    rtt_min: AtomicU64,
    rtt_max: AtomicU64,
    rtt_sum: AtomicU64,
    windows: AtomicU64,
    window_mean_sum: AtomicU64,
    window_best: AtomicU64,
    window_worst: AtomicU64,
    last_min: AtomicU64,
    last_mean: AtomicU64,
    last_max: AtomicU64,
    recent: [AtomicU64; KEPT_WINDOWS],
}

/// Min, mean and max of a set of round trips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttFigures {
    /// Shortest.
    pub min: Duration,
    /// Mean.
    pub mean: Duration,
    /// Longest.
    pub max: Duration,
}

/// A copy of [`PingStats`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingSnapshot {
    /// Sender: echo requests sent. Responder: replies sent.
    pub sent: u64,
    /// Sender: replies matched to a request. Responder: requests for its addresses.
    pub received: u64,
    /// Sender: requests without a reply within the timeout.
    pub lost: u64,
    /// Sends skipped because the packet pool was empty.
    pub no_buffer: u64,
    /// Every round trip measured so far (sender).
    pub rtt: Option<RttFigures>,
    /// Complete windows so far.
    pub windows: u64,
    /// Mean of the windows' means.
    pub mean_of_window_means: Option<Duration>,
    /// Lowest window mean.
    pub best_window_mean: Option<Duration>,
    /// Highest window mean.
    pub worst_window_mean: Option<Duration>,
    /// Min/mean/max of the last complete window.
    pub last_window: Option<RttFigures>,
    /// Means of the last complete windows (at most [`KEPT_WINDOWS`]), oldest first.
    pub recent_window_means: Vec<Duration>,
}

fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

impl PingStats {
    pub(crate) fn count_sent(&self) {
        self.sent.fetch_add(1, Relaxed);
    }
    pub(crate) fn count_received(&self) {
        self.received.fetch_add(1, Relaxed);
    }
    pub(crate) fn count_lost(&self) {
        self.lost.fetch_add(1, Relaxed);
    }
    pub(crate) fn count_no_buffer(&self) {
        self.no_buffer.fetch_add(1, Relaxed);
    }

    /// Records a reply and its round trip of `rtt` nanoseconds.
    pub(crate) fn record_reply(&self, rtt: u64) {
        self.received.fetch_add(1, Relaxed);
        let first = self.timed.fetch_add(1, Relaxed) == 0;
        if first || rtt < self.rtt_min.load(Relaxed) {
            self.rtt_min.store(rtt, Relaxed);
        }
        self.rtt_max.fetch_max(rtt, Relaxed);
        self.rtt_sum.fetch_add(rtt, Relaxed);
    }

    /// Records a complete window.
    pub(crate) fn record_window(&self, w: &Window) {
        let Some(mean) = w.sum.checked_div(u64::from(w.count)) else { return };
        let n = self.windows.load(Relaxed);
        if n == 0 || mean < self.window_best.load(Relaxed) {
            self.window_best.store(mean, Relaxed);
        }
        self.window_worst.fetch_max(mean, Relaxed);
        self.window_mean_sum.fetch_add(mean, Relaxed);
        self.last_min.store(w.min, Relaxed);
        self.last_mean.store(mean, Relaxed);
        self.last_max.store(w.max, Relaxed);
        self.recent[n as usize % KEPT_WINDOWS].store(mean, Relaxed);
        self.windows.store(n + 1, Relaxed);
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> PingSnapshot {
        let timed = self.timed.load(Relaxed);
        let sum = self.rtt_sum.load(Relaxed);
        let windows = self.windows.load(Relaxed);
        let kept = windows.min(KEPT_WINDOWS as u64);
        let recent_window_means = (windows - kept..windows)
            .map(|i| ns(self.recent[i as usize % KEPT_WINDOWS].load(Relaxed)))
            .collect();
        let has_windows = windows > 0;
        PingSnapshot {
            sent: self.sent.load(Relaxed),
            received: self.received.load(Relaxed),
            lost: self.lost.load(Relaxed),
            no_buffer: self.no_buffer.load(Relaxed),
            rtt: (timed > 0).then(|| RttFigures {
                min: ns(self.rtt_min.load(Relaxed)),
                mean: ns(sum / timed),
                max: ns(self.rtt_max.load(Relaxed)),
            }),
            windows,
            mean_of_window_means: has_windows.then(|| ns(self.window_mean_sum.load(Relaxed) / windows)),
            best_window_mean: has_windows.then(|| ns(self.window_best.load(Relaxed))),
            worst_window_mean: has_windows.then(|| ns(self.window_worst.load(Relaxed))),
            last_window: has_windows.then(|| RttFigures {
                min: ns(self.last_min.load(Relaxed)),
                mean: ns(self.last_mean.load(Relaxed)),
                max: ns(self.last_max.load(Relaxed)),
            }),
            recent_window_means,
        }
    }
}

/// The window being filled (graph thread only).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    pub(crate) count: u32,
    pub(crate) sum: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

impl Window {
    /// Adds a round trip; returns whether the window now holds `size` of them.
    pub(crate) fn add(&mut self, rtt: u64, size: u32) -> bool {
        if self.count == 0 || rtt < self.min {
            self.min = rtt;
        }
        self.max = self.max.max(rtt);
        self.sum = self.sum.saturating_add(rtt);
        self.count += 1;
        self.count >= size
    }
}

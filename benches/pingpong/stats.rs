//! Latency summaries from sorted samples.

use std::fmt;

/// A summary of one series of latencies, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Frames lost (timed out) on the way this series measures.
    pub lost: u64,
    /// Smallest sample.
    pub min: u64,
    /// Median (nearest rank).
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// The `p`-th percentile (0 < p <= 100) of `sorted` by nearest rank: the smallest sample
/// with at least p % of the samples at or below it. 0 for no samples.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Sorts `samples` (in place) and summarises them.
    pub fn of(samples: &mut [u64], lost: u64) -> Summary {
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Summary {
            count: samples.len(),
            lost,
            min: samples.first().copied().unwrap_or(0),
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            p999: percentile(samples, 99.9),
            max: samples.last().copied().unwrap_or(0),
            mean: if samples.is_empty() { 0.0 } else { sum as f64 / samples.len() as f64 },
        }
    }
}

/// `count=.. lost=.. min=.. p50=.. p90=.. p99=.. p999=.. max=.. mean=..`, times in µs.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = |ns: u64| ns as f64 / 1000.0;
        write!(
            f,
            "count={} lost={} min={:.2} p50={:.2} p90={:.2} p99={:.2} p999={:.2} max={:.2} mean={:.2}",
            self.count,
            self.lost,
            us(self.min),
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.p999),
            us(self.max),
            self.mean / 1000.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&s, 50.0), 50);
        assert_eq!(percentile(&s, 90.0), 90);
        assert_eq!(percentile(&s, 99.0), 99);
        assert_eq!(percentile(&s, 99.9), 100);
        assert_eq!(percentile(&s, 100.0), 100);
        assert_eq!(percentile(&s, 0.001), 1);
        assert_eq!(percentile(&[7], 99.0), 7);
        assert_eq!(percentile(&[], 50.0), 0);
    }

    #[test]
    fn summary_sorts_and_formats() {
        let mut s = vec![3000, 1000, 2000, 4000];
        let sum = Summary::of(&mut s, 2);
        assert_eq!(s, vec![1000, 2000, 3000, 4000]);
        assert_eq!((sum.min, sum.p50, sum.p99, sum.max), (1000, 2000, 4000, 4000));
        assert_eq!(
            sum.to_string(),
            "count=4 lost=2 min=1.00 p50=2.00 p90=4.00 p99=4.00 p999=4.00 max=4.00 mean=2.50"
        );
    }

    #[test]
    fn an_empty_series_is_all_zero() {
        let sum = Summary::of(&mut [], 5);
        assert_eq!(sum.count, 0);
        assert_eq!(sum.lost, 5);
        assert_eq!(sum.mean, 0.0);
    }
}

//! Per-brick counters, written by the graph's thread and readable from any thread.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::brick::Side;

/// A counter with a single writer (the thread that runs the graph) and any number of readers.
///
/// Increments are a plain load and store rather than an atomic read-modify-write: no locked
/// instruction on the hot path. That is correct only because one thread writes; readers may
/// see a value a few increments old, never a torn one.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n` (single writer only).
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }
    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Traffic counters of one side of a brick.
#[derive(Debug, Default)]
pub struct SideCounters {
    /// Packets received on this side.
    pub pkts_in: Counter,
    /// Bytes received on this side.
    pub bytes_in: Counter,
    /// Packets sent out of this side.
    pub pkts_out: Counter,
    /// Bytes sent out of this side.
    pub bytes_out: Counter,
}

crate::drop_reasons! {
    /// Drops the graph itself makes, counted after the brick's own reasons; `NAMES` is
    /// [`GRAPH_DROP_REASONS`].
    pub enum GraphDrop {
        /// Emitted to a port that is not linked.
        Unlinked => "unlinked port",
        /// Too many hops in one run (a loop in the graph).
        Loop => "graph loop",
        /// Left in the burst by a brick that should have consumed it.
        Unconsumed => "not consumed",
    }
}

/// Drops the graph itself makes, counted after the brick's own reasons.
pub const GRAPH_DROP_REASONS: &[&str] = GraphDrop::NAMES;

/// Every counter of one brick.
#[derive(Debug)]
pub struct BrickStats {
    sides: [SideCounters; 2],
    drops: Box<[Counter]>,
    names: Box<[&'static str]>,
    brick_reasons: usize,
    /// TSC cycles spent inside the brick's `process`/`poll`.
    pub cycles: Counter,
    /// Packets handled during the measured calls (for cycles per packet).
    pub cycle_pkts: Counter,
    /// Calls of `process`/`poll`.
    pub calls: Counter,
}

impl BrickStats {
    pub(crate) fn new(reasons: &'static [&'static str]) -> Self {
        let names: Vec<&'static str> = reasons.iter().chain(GRAPH_DROP_REASONS).copied().collect();
        BrickStats {
            sides: Default::default(),
            drops: names.iter().map(|_| Counter::default()).collect(),
            names: names.into_boxed_slice(),
            brick_reasons: reasons.len(),
            cycles: Counter::default(),
            cycle_pkts: Counter::default(),
            calls: Counter::default(),
        }
    }

    /// Counters of one side.
    #[inline]
    pub fn side(&self, side: Side) -> &SideCounters {
        &self.sides[side as usize]
    }

    #[inline]
    pub(crate) fn drop_counter(&self, reason: usize) -> &Counter {
        // An out-of-range reason from a buggy brick is counted as "not consumed", not a panic.
        self.drops.get(reason).unwrap_or(&self.drops[self.brick_reasons + GraphDrop::Unconsumed.index()])
    }

    #[inline]
    pub(crate) fn graph_drop(&self, reason: GraphDrop, n: u64) {
        self.drops[self.brick_reasons + reason.index()].add(n)
    }

    /// Drops by reason name, brick reasons first, then the graph's.
    pub fn drops(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.names.iter().copied().zip(self.drops.iter().map(Counter::get))
    }

    /// The drop count of the reason called `name`, if the brick has one.
    pub fn drops_of(&self, name: &str) -> Option<u64> {
        self.drops().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(Counter::get).sum()
    }

    /// Average cycles per packet over the brick's life, if it handled any packet.
    pub fn cycles_per_packet(&self) -> Option<f64> {
        let p = self.cycle_pkts.get();
        (p > 0).then(|| self.cycles.get() as f64 / p as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_named_and_bounded() {
        let s = BrickStats::new(&["bad header", "too short"]);
        s.drop_counter(1).add(3);
        s.drop_counter(99).add(1); // out of range: counted, never a panic
        s.graph_drop(GraphDrop::Unlinked, 2);
        assert_eq!(s.drops_of("too short"), Some(3));
        assert_eq!(s.drops_of("not consumed"), Some(1));
        assert_eq!(s.drops_of("unlinked port"), Some(2));
        assert_eq!(s.total_drops(), 6);
        assert_eq!(s.cycles_per_packet(), None);
    }
}

//! The [`Brick`] trait and the [`Output`] a brick emits into.

use std::any::Any;
use std::os::fd::RawFd;

use crate::burst::{Burst, BURST_SIZE};
use crate::packet::Packet;
use crate::stats::{BrickStats, GraphDrop};
use crate::time::Timestamp;

/// One of the two sides of a brick. By convention west faces the physical network and east
/// faces the VMs; a link always joins one brick's east side to another's west side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// Towards the physical network.
    West = 0,
    /// Towards the virtual machines.
    East = 1,
}

impl Side {
    /// The other side.
    #[inline]
    pub const fn opposite(self) -> Side {
        match self {
            Side::West => Side::East,
            Side::East => Side::West,
        }
    }

    /// Both sides, west first.
    pub const BOTH: [Side; 2] = [Side::West, Side::East];

    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            Side::West => "west",
            Side::East => "east",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Index of a port (an edge end) on one side of a brick. Ports keep their index for as long
/// as they are linked; unlinking one leaves a hole that the next link may reuse.
pub type PortId = u16;

/// A processing node of the graph.
///
/// The graph owns its bricks and calls them on its own thread: a brick receives a [`Burst`]
/// with [`process`](Brick::process) and emits packets through an [`Output`]; the graph then
/// delivers what was emitted to the linked bricks. Source bricks (NICs, vhost, taps) are also
/// [`poll`](Brick::poll)ed. A brick never holds a reference to another brick.
pub trait Brick: Any + Send {
    /// Short type name (`"switch"`, `"vtep"`…), shown in DOT and metrics.
    fn kind(&self) -> &'static str;

    /// Names of the reasons this brick drops packets for; [`Output::drop`] takes an index into
    /// this list. The graph appends its own reasons after them.
    fn drop_reasons(&self) -> &'static [&'static str] {
        &[]
    }

    /// Most ports the brick accepts on `side` (linking beyond is refused).
    fn max_ports(&self, _side: Side) -> usize {
        PortId::MAX as usize
    }

    /// Handles packets that arrived on `port` of `side`. The brick must take every packet out
    /// of `pkts` (emit it, keep it, or [`Output::drop`] it); any left behind is dropped and
    /// counted as "not consumed".
    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>);

    /// Whether the graph must [`poll`](Brick::poll) this brick.
    fn is_source(&self) -> bool {
        false
    }

    /// Lets a source bring packets into the graph. Returns how much work it found (frames
    /// taken from its device, including those it dropped): any non-zero value keeps the
    /// runner polling instead of going to sleep.
    fn poll(&mut self, _out: &mut Output<'_>) -> usize {
        0
    }

    /// A file descriptor that becomes readable when this source has work, so an idle runner
    /// can sleep instead of spinning. Sources without one cap the runner's sleep time. The
    /// graph reads it once when the brick is added: it must not change afterwards.
    fn wake_fd(&self) -> Option<RawFd> {
        None
    }

    /// Called when the graph is about to stop polling this source until its wake fd fires:
    /// before the runner sleeps, and (with many sources) when a round found it idle. A source
    /// whose device signals only when asked (a vhost-user guest kicks only while its
    /// notifications are enabled) asks for the signal here, then checks its device once more
    /// and returns `true` when work arrived in between: the graph then polls it again instead
    /// of waiting. Between two calls the graph keeps polling the source, so such a source
    /// keeps its device quiet while it is being polled (no signal, no wake-up per burst).
    /// Default: nothing to arm, `false`.
    fn arm_wake(&mut self) -> bool {
        false
    }

    /// Called periodically (every [`Graph::tick_interval`](crate::Graph::tick_interval)) for
    /// timers: aging, retransmissions, flushing files. It cannot emit: a brick that must send
    /// on a timer (protocol reports, retries) queues the packets and emits them from `poll`
    /// (declare itself a source).
    fn tick(&mut self, _now: Timestamp) {}

    /// A port of `side` was linked.
    fn on_link(&mut self, _side: Side, _port: PortId) {}

    /// A port of `side` was unlinked (a switch flushes the MACs it learnt there).
    fn on_unlink(&mut self, _side: Side, _port: PortId) {}

    /// Extra lines for the DOT label and status output (brick-specific counters).
    fn describe(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where a brick puts the packets it emits, and how it counts those it drops.
///
/// Emitted packets wait in per-port slots until the brick returns; then the graph delivers
/// each slot, in bursts of at most [`BURST_SIZE`](crate::BURST_SIZE), to the linked brick.
pub struct Output<'a> {
    pub(crate) slots: &'a mut [Vec<Burst>; 2],
    pub(crate) linked: &'a [Vec<bool>; 2],
    pub(crate) dirty: &'a mut Vec<(Side, PortId)>,
    pub(crate) stats: &'a BrickStats,
    pub(crate) now: Timestamp,
    pub(crate) emitted: usize,
    /// Set while a [`Flipped`](crate::bricks::Flipped) brick runs: its sides are swapped.
    pub(crate) flipped: bool,
    /// Set by a source that left work behind which its wake fd will not signal again.
    pub(crate) retry: bool,
}

impl<'a> Output<'a> {
    /// Sends `pkt` out of `port` on `side`. A packet sent to a port with no link is dropped
    /// and counted ("unlinked port").
    #[inline]
    pub fn emit(&mut self, side: Side, port: PortId, pkt: Packet) {
        let side = self.map(side);
        let s = side as usize;
        let p = port as usize;
        if !self.linked[s].get(p).copied().unwrap_or(false) {
            self.stats.graph_drop(GraphDrop::Unlinked, 1);
            return;
        }
        let slot = &mut self.slots[s][p];
        if slot.is_empty() {
            self.dirty.push((side, port));
        }
        slot.push_unbounded(pkt);
        self.emitted += 1;
    }

    /// Sends every packet of `pkts` out of `port` on `side`. When nothing waits on that port
    /// yet, the whole burst moves at once (its storage is swapped, no packet is touched): a
    /// brick that passes bursts across costs nearly nothing per packet.
    #[inline]
    pub fn emit_all(&mut self, side: Side, port: PortId, pkts: &mut Burst) {
        let side = self.map(side);
        let (s, p) = (side as usize, port as usize);
        if pkts.is_empty() {
            return;
        }
        if !self.linked[s].get(p).copied().unwrap_or(false) {
            self.stats.graph_drop(GraphDrop::Unlinked, pkts.len() as u64);
            pkts.clear();
            return;
        }
        let slot = &mut self.slots[s][p];
        self.emitted += pkts.len();
        if slot.is_empty() {
            self.dirty.push((side, port));
            std::mem::swap(slot, pkts);
        } else {
            for pkt in pkts.drain() {
                slot.push_unbounded(pkt);
            }
        }
    }

    /// Sends the packets of `pkts` that `verdict` passes (`None`) out of `port` on `side`,
    /// and drops the others under the reason it gives (`Some(reason)`, as in [`drop`]).
    /// Every packet is judged before any moves, in order, so that a burst with nothing to
    /// drop moves whole as in [`emit_all`]: a filter brick costs its judgement per packet
    /// and nearly nothing to pass the burst on (VPP's vector at a time).
    ///
    /// [`drop`]: Output::drop
    /// [`emit_all`]: Output::emit_all
    #[inline]
    pub fn emit_passed(
        &mut self,
        side: Side,
        port: PortId,
        pkts: &mut Burst,
        mut verdict: impl FnMut(&Packet) -> Option<usize>,
    ) {
        const PASS: u16 = u16::MAX;
        let mut verdicts = [PASS; BURST_SIZE];
        let mut dropped = false;
        for (v, pkt) in verdicts.iter_mut().zip(pkts.iter()) {
            if let Some(reason) = verdict(pkt) {
                // A reason past u16 is out of range anyway: counted as "not consumed".
                *v = u16::try_from(reason).unwrap_or(PASS - 1);
                dropped = true;
            }
        }
        // Only the graph's own slots hold more than a burst, and it splits them before
        // delivery; should a longer burst come, the packets past the first burst are judged
        // while it drains.
        if !dropped && pkts.len() <= BURST_SIZE {
            self.emit_all(side, port, pkts);
            return;
        }
        for (i, pkt) in pkts.drain().enumerate() {
            let v = match verdicts.get(i) {
                Some(&v) => (v != PASS).then_some(v as usize),
                None => verdict(&pkt),
            };
            match v {
                None => self.emit(side, port, pkt),
                Some(reason) => self.drop(pkt, reason),
            }
        }
    }

    /// Drops `pkt`, counting it under `reason`, an index into the brick's
    /// [`drop_reasons`](Brick::drop_reasons).
    #[inline]
    pub fn drop(&mut self, pkt: Packet, reason: usize) {
        self.stats.drop_counter(reason).add(1);
        drop(pkt);
    }

    /// Tells the graph that this source stopped with work still waiting in its device, work
    /// its wake fd has already signalled and will not signal again (typically: it ran out of
    /// packet buffers, and a vhost-user guest does not kick twice for the same frames). The
    /// runner then polls it again within its poll-sleep cap ([`RunnerConfig::poll_sleep`],
    /// 1 ms by default) instead of sleeping until the fd fires. Only meaningful in
    /// [`Brick::poll`].
    ///
    /// [`RunnerConfig::poll_sleep`]: crate::RunnerConfig::poll_sleep
    #[inline]
    pub fn retry_soon(&mut self) {
        self.retry = true;
    }

    /// Counts `n` drops under `reason` for packets the brick no longer holds (for example a
    /// flood copy that could not be made).
    #[inline]
    pub fn count_drop(&mut self, reason: usize, n: u64) {
        self.stats.drop_counter(reason).add(n);
    }

    /// Number of port slots on `side` (linked or not).
    #[inline]
    pub fn port_count(&self, side: Side) -> usize {
        self.linked[self.map(side) as usize].len()
    }

    /// Whether `port` of `side` is linked.
    #[inline]
    pub fn is_linked(&self, side: Side, port: PortId) -> bool {
        self.linked[self.map(side) as usize].get(port as usize).copied().unwrap_or(false)
    }

    /// The linked ports of `side`, in order. Holes left by unlinking are skipped, so flooding
    /// reaches every remaining port.
    pub fn linked_ports(&self, side: Side) -> impl Iterator<Item = PortId> + '_ {
        self.linked[self.map(side) as usize].iter().enumerate().filter(|(_, l)| **l).map(|(i, _)| i as PortId)
    }

    #[inline]
    fn map(&self, side: Side) -> Side {
        if self.flipped {
            side.opposite()
        } else {
            side
        }
    }

    pub(crate) fn flip(&mut self) {
        self.flipped = !self.flipped;
    }

    /// The time of the current poll round.
    #[inline]
    pub fn now(&self) -> Timestamp {
        self.now
    }
}

/// Downcasting support, so a control closure can reach a concrete brick inside the graph.
pub(crate) fn as_any_mut(b: &mut dyn Brick) -> &mut dyn Any {
    b
}

pub(crate) fn as_any(b: &dyn Brick) -> &dyn Any {
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PacketPool;

    /// `emit_passed` on a burst longer than BURST_SIZE (which only the graph's own slots can
    /// hold): the packets past the first burst are judged too, in order, none passed unjudged.
    #[test]
    fn emit_passed_judges_every_packet_of_a_burst_longer_than_a_burst() {
        let pool = PacketPool::with_count(256).unwrap();
        let mut pkts = Burst::new();
        for tag in 0..150u8 {
            pkts.push_unbounded(pool.alloc_from(&[tag; 60]).unwrap());
        }
        let mut slots: [Vec<Burst>; 2] = [vec![Burst::new()], vec![Burst::new()]];
        let linked = [vec![true], vec![true]];
        let mut dirty = Vec::new();
        let stats = BrickStats::new(&["odd"]);
        let mut out = Output {
            slots: &mut slots,
            linked: &linked,
            dirty: &mut dirty,
            stats: &stats,
            now: Timestamp::now(),
            emitted: 0,
            flipped: false,
            retry: false,
        };
        let mut judged = Vec::new();
        out.emit_passed(Side::East, 0, &mut pkts, |p| {
            judged.push(p.data()[0]);
            (p.data()[0] % 2 == 1).then_some(0)
        });
        assert_eq!(judged, (0..150).collect::<Vec<u8>>(), "each packet judged once, in order");
        assert!(pkts.is_empty());
        let passed: Vec<u8> = slots[Side::East as usize][0].iter().map(|p| p.data()[0]).collect();
        assert_eq!(passed, (0..150).filter(|t| t % 2 == 0).collect::<Vec<u8>>());
        assert_eq!(stats.drops().find(|(n, _)| *n == "odd").map(|(_, c)| c), Some(75));
        assert_eq!(dirty, vec![(Side::East, 0)]);
    }
}

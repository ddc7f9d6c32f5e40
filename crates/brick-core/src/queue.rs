//! A brick pair that carries packets from a graph on one thread to a graph on another.
//!
//! [`QueueTx`] sits in the producing graph and [`QueueRx`] (a source) in the consuming one.
//! Bursts travel through a bounded lock-free ring; the packets move, their ownership with
//! them, and nothing is shared or aliased. Empty bursts travel back through a second ring so
//! their storage is reused: no allocation in steady state. For two-way traffic use two pairs.
//!
//! The receiving end has a wake fd (an eventfd), so a runner whose graph holds a [`QueueRx`]
//! can sleep and still be woken as soon as a burst arrives: the sender rings it only when
//! its burst is the first in an empty ring, so a busy consumer costs no system call.
//!
//! [`queue_link`] makes the two-way version: a [`QueueLink`] in each graph, linked on one
//! side, that stands in that graph for whatever the other end is linked to.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam::queue::ArrayQueue;

use crate::brick::{Brick, Output, PortId, Side};
use crate::burst::Burst;
use crate::waker::Waker;

struct Rings {
    full: ArrayQueue<Burst>,
    empty: ArrayQueue<Burst>,
    /// Rung by the sender when a burst lands in an empty ring.
    doorbell: Waker,
    /// Set (after ringing) until the receiver has silenced the bell.
    rung: AtomicBool,
}

/// Counters shared by both ends.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Packets that crossed.
    pub carried: AtomicU64,
    /// Packets dropped because the ring was full.
    pub dropped_full: AtomicU64,
    /// Times the sender rang the receiver's doorbell.
    pub wakeups: AtomicU64,
}

/// The producing end: every packet it receives, on any port, goes to the ring.
pub struct QueueTx {
    rings: Arc<Rings>,
    stats: Arc<QueueStats>,
}

/// The consuming end: a source that emits what crossed, on port 0 of its `side`.
pub struct QueueRx {
    rings: Arc<Rings>,
    stats: Arc<QueueStats>,
    side: Side,
}

/// Makes a queue pair holding at most `bursts` bursts in flight (at least 1). The receiving
/// end emits on its east side; see [`QueueRx::emit_on`]. Fails only when no eventfd can be
/// made for the receiver's doorbell (out of file descriptors).
pub fn queue_pair(bursts: usize) -> io::Result<(QueueTx, QueueRx)> {
    let bursts = bursts.max(1);
    let rings = Arc::new(Rings {
        full: ArrayQueue::new(bursts),
        empty: ArrayQueue::new(bursts),
        doorbell: Waker::new()?,
        rung: AtomicBool::new(false),
    });
    for _ in 0..bursts {
        let _ = rings.empty.push(Burst::new());
    }
    let stats = Arc::new(QueueStats::default());
    Ok((
        QueueTx { rings: Arc::clone(&rings), stats: Arc::clone(&stats) },
        QueueRx { rings, stats, side: Side::East },
    ))
}

crate::drop_reasons! {
    /// Why a [`QueueTx`] drops packets; `NAMES` is its `Brick::drop_reasons`.
    pub enum QueueTxDrop {
        /// No empty burst came back from the receiver: the ring is full.
        Full => "queue full",
    }
}

crate::drop_reasons! {
    /// Why a [`QueueRx`] drops packets; `NAMES` is its `Brick::drop_reasons`.
    pub enum QueueRxDrop {
        /// Something was sent into the receiving end: nothing goes backwards.
        OneWay => "queue is one-way",
    }
}

impl QueueTx {
    /// Shared counters.
    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

impl Brick for QueueTx {
    fn kind(&self) -> &'static str {
        "queue-tx"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        QueueTxDrop::NAMES
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        match self.rings.empty.pop() {
            Some(mut b) => {
                let n = pkts.len();
                for p in pkts.drain() {
                    // `b` came back empty with room for a burst, so this cannot fail.
                    let _ = b.push(p);
                }
                if let Err(mut b) = self.rings.full.push(b) {
                    // Cannot happen (as many slots as bursts), but never lose the storage.
                    self.stats.dropped_full.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b.clear();
                    let _ = self.rings.empty.push(b);
                    return;
                }
                self.stats.carried.fetch_add(n as u64, Ordering::Relaxed);
                // One producer: a ring holding only our burst was empty before it, so the
                // receiver may have gone to sleep after finding it empty. Otherwise it has
                // not yet seen an earlier burst, and will poll again before sleeping.
                if self.rings.full.len() == 1 {
                    self.rings.doorbell.wake();
                    self.rings.rung.store(true, Ordering::Release);
                    self.stats.wakeups.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.stats.dropped_full.fetch_add(pkts.len() as u64, Ordering::Relaxed);
                for p in pkts.drain() {
                    out.drop(p, QueueTxDrop::Full.index());
                }
            }
        }
    }
}

impl QueueRx {
    /// Emits on port 0 of `side` instead of the east side.
    pub fn emit_on(mut self, side: Side) -> Self {
        self.side = side;
        self
    }

    /// Shared counters.
    pub fn stats(&self) -> Arc<QueueStats> {
        Arc::clone(&self.stats)
    }
}

impl Brick for QueueRx {
    fn kind(&self) -> &'static str {
        "queue-rx"
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == self.side)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        // Nothing goes backwards through a queue.
        for p in pkts.drain() {
            out.drop(p, QueueRxDrop::OneWay.index());
        }
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        QueueRxDrop::NAMES
    }

    fn is_source(&self) -> bool {
        true
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.rings.doorbell.fd())
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        // Silence the bell (read the eventfd) only when it was rung: every ring is followed
        // by `rung`, so the fd never stays readable, and a busy queue costs no system call.
        // A burst sent after the ring is found empty below rings the bell again.
        if self.rings.rung.load(Ordering::Relaxed) && self.rings.rung.swap(false, Ordering::Acquire) {
            self.rings.doorbell.drain();
        }
        let mut n = 0;
        // Bounded work per round so other sources get their turn.
        for _ in 0..4 {
            let Some(mut b) = self.rings.full.pop() else { break };
            n += b.len();
            out.emit_all(self.side, 0, &mut b);
            let _ = self.rings.empty.push(b);
        }
        n
    }
}

/// One end of a two-way queue between two graphs ([`queue_link`]). Linked on its one side,
/// it sends what it receives there to the other end's graph, and emits there what the other
/// end was sent: in each graph it stands for the brick the other end is linked to.
pub struct QueueLink {
    tx: QueueTx,
    rx: QueueRx,
}

/// Makes a two-way queue: two [`QueueLink`] ends, each with a [`queue_pair`] of `bursts`
/// bursts towards the other. The first end is linked on its `first` side, the second on the
/// opposite one (a brick's east side faces another's west side in each graph). Fails only
/// when no eventfd can be made.
pub fn queue_link(bursts: usize, first: Side) -> io::Result<(QueueLink, QueueLink)> {
    let (a_tx, b_rx) = queue_pair(bursts)?;
    let (b_tx, a_rx) = queue_pair(bursts)?;
    Ok((
        QueueLink { tx: a_tx, rx: a_rx.emit_on(first) },
        QueueLink { tx: b_tx, rx: b_rx.emit_on(first.opposite()) },
    ))
}

impl QueueLink {
    /// The side this end is linked on.
    pub fn side(&self) -> Side {
        self.rx.side
    }

    /// Counters of what this end sends to the other.
    pub fn sent_stats(&self) -> Arc<QueueStats> {
        self.tx.stats()
    }

    /// Counters of what this end receives from the other.
    pub fn received_stats(&self) -> Arc<QueueStats> {
        self.rx.stats()
    }
}

impl Brick for QueueLink {
    fn kind(&self) -> &'static str {
        "queue-link"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        QueueTxDrop::NAMES
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == self.rx.side)
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        self.tx.process(side, port, pkts, out);
    }

    fn is_source(&self) -> bool {
        true
    }

    fn wake_fd(&self) -> Option<RawFd> {
        self.rx.wake_fd()
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        self.rx.poll(out)
    }

    fn describe(&self) -> Vec<String> {
        let (sent, got) = (&self.tx.stats, &self.rx.stats);
        vec![format!(
            "sent={} received={} full={}",
            sent.carried.load(Ordering::Relaxed),
            got.carried.load(Ordering::Relaxed),
            sent.dropped_full.load(Ordering::Relaxed)
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Graph, Packet};

    fn burst(n: usize) -> Burst {
        let mut b = Burst::new();
        for _ in 0..n {
            b.push(Packet::from_slice(&[0u8; 60])).unwrap();
        }
        b
    }

    /// Each drop counts under its enum's name, in the queue's own counters too.
    #[test]
    fn drops_count_under_their_reasons() {
        let (tx, rx) = queue_pair(1).unwrap();
        let stats = tx.stats();
        let mut g = Graph::new("q");
        let t = g.add("tx", tx).unwrap();
        let r = g.add("rx", rx).unwrap();
        assert_eq!(g.brick::<QueueTx>(t).unwrap().drop_reasons(), QueueTxDrop::NAMES);
        g.inject(t, Side::West, 0, &mut burst(2)).unwrap();
        // The only burst is in flight and nobody drains it: the ring is full.
        g.inject(t, Side::West, 0, &mut burst(3)).unwrap();
        assert_eq!(g.stats(t).unwrap().drops_of(QueueTxDrop::Full.text()), Some(3));
        assert_eq!(stats.dropped_full.load(Ordering::Relaxed), 3);
        assert_eq!(stats.carried.load(Ordering::Relaxed), 2);
        g.inject(r, Side::East, 0, &mut burst(1)).unwrap();
        assert_eq!(g.stats(r).unwrap().drops_of(QueueRxDrop::OneWay.text()), Some(1));
    }

    /// A two-way queue carries each graph's packets to the other, on the side each end is
    /// linked on, and refuses a link on its other side.
    #[test]
    fn a_link_carries_both_ways_on_its_linked_side() {
        use crate::bricks::Nop;
        let (west_end, east_end) = queue_link(4, Side::West).unwrap();
        assert_eq!((west_end.side(), east_end.side()), (Side::West, Side::East));
        let (sent_a, got_a) = (west_end.sent_stats(), west_end.received_stats());
        let mut ga = Graph::new("a");
        let mut gb = Graph::new("b");
        let counter = |side: Side| {
            let seen = Arc::new(AtomicU64::new(0));
            let s = Arc::clone(&seen);
            let b = crate::bricks::RxTx::new(
                side,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    s.fetch_add(b.len() as u64, Ordering::Relaxed);
                    b.clear();
                },
            );
            (b, seen)
        };
        let (peer, a_seen) = counter(Side::East);
        let a_peer = ga.add("peer-a", peer).unwrap();
        let a = ga.add("link", west_end).unwrap();
        ga.link(a_peer, a).unwrap();
        let b = gb.add("link", east_end).unwrap();
        let (peer, b_seen) = counter(Side::West);
        let b_peer = gb.add("peer-b", peer).unwrap();
        gb.link(b, b_peer).unwrap();
        // Nothing may join a link end on its other side.
        let extra = ga.add("nop", Nop).unwrap();
        assert!(ga.link(a, extra).is_err());
        // a → b: what graph a sends into its end comes out of b's end, east.
        ga.inject(a, Side::West, 0, &mut burst(3)).unwrap();
        assert_eq!(gb.poll_all(), 3);
        assert_eq!(b_seen.load(Ordering::Relaxed), 3);
        // b → a: the reverse, out of a's end, west.
        gb.inject(b, Side::East, 0, &mut burst(5)).unwrap();
        assert_eq!(ga.poll_all(), 5);
        assert_eq!(a_seen.load(Ordering::Relaxed), 5);
        assert_eq!(sent_a.carried.load(Ordering::Relaxed), 3);
        assert_eq!(got_a.carried.load(Ordering::Relaxed), 5);
        assert_eq!(ga.brick_dyn(a).unwrap().describe(), ["sent=3 received=5 full=0"]);
    }
}

//! The NIC on the graph thread: its [`Brick`] impl, picking up connections published by the
//! control thread, popping guest TX bursts and pushing RX bursts into guest buffers.

use super::*;
use crate::backend::Mem;
use crate::ring::SplitQueue;
use vhost_user_backend::VringState;

impl VhostUserNic {
    /// Picks up a new connection (or its loss) published by the control thread, a changed
    /// memory map, and new kick fds. Returns the current connection, taken out of `self`
    /// (moved, not counted: put it back with `self.conn = Some(..)`), if its vrings exist.
    /// Without a change, this reads a few atomics and nothing else.
    #[inline]
    fn refresh(&mut self) -> Option<Arc<Conn>> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen_generation {
            self.seen_generation = g;
            self.conn = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            self.map = None;
            self.seen_mem = u64::MAX;
            for q in &mut self.queues {
                q.reset();
                q.drop_kick(&self.wake_set);
            }
        }
        let conn = self.conn.take()?;
        let acked = conn.acked.load(Ordering::Acquire);
        if acked != self.feat.acked {
            self.feat = NetFeatures::from_acked(acked);
        }
        let mem_version = conn.mem_version.load(Ordering::Acquire);
        if mem_version != self.seen_mem {
            self.seen_mem = mem_version;
            let mem = conn.mem.memory();
            if !self.map.as_ref().is_some_and(|m| m.is_of(&mem)) {
                self.map = Some(GuestMap::new(mem.into_inner()));
                // Ring views in the old map are rebuilt under the lock.
                self.queues.iter_mut().for_each(DeviceQueue::unconfirm);
            }
        }
        let Some(vrings) = conn.vrings.get() else {
            self.conn = Some(conn);
            return None;
        };
        let (thread, threads) = (self.thread, self.cfg.threads as usize);
        for (i, (q, v)) in self.queues.iter_mut().zip(vrings).enumerate() {
            if i % 2 == 1 && (i / 2) % threads == thread {
                q.sync_kick(v, &self.wake_set, i);
            }
        }
        Some(conn)
    }

    /// Whether every TX queue is seen empty from the ring views this thread keeps, without
    /// the connection's locks and reference counts that a full poll takes (an empty poll of a
    /// polling guest used to cost more than the frame after it waited for). Only a hint from
    /// cached views, for running queues: a queue without a view, a new connection (the
    /// generation), the control thread's doorbell and every [`QUIET_RECHECK`]th poll take
    /// the full path, which checks and rebuilds the views and watches new kick fds, so a
    /// queue the guest restarts elsewhere is found within that many polls.
    #[inline]
    fn tx_quiet(&mut self) -> bool {
        if self.quiet_polls >= QUIET_RECHECK
            || self.shared.generation.load(Ordering::Acquire) != self.seen_generation
        {
            self.quiet_polls = 0;
            return false;
        }
        let (thread, threads) = (self.thread, self.cfg.threads as usize);
        let quiet = self
            .queues
            .iter_mut()
            .skip(1)
            .step_by(2)
            .enumerate()
            .all(|(pair, q)| pair % threads != thread || q.looks_empty());
        self.quiet_polls = if quiet { self.quiet_polls + 1 } else { 0 };
        quiet
    }

    fn count_drop(&self, out: &mut Output<'_>, r: DropReason, n: u64) {
        out.count_drop(r as usize, n);
        self.stats.drops[r as usize].add(n);
    }

    /// Drains one TX queue into the graph: at most `budget` chains, dropped ones included
    /// (a guest that keeps posting bad chains must not hold the thread). Without the vring's
    /// lock when its view is confirmed at gate `version`; otherwise under it, confirming the
    /// view for the next bursts. Returns the chains consumed: work, even when every one was
    /// dropped.
    fn poll_tx(
        &mut self,
        q: usize,
        vring: &Vring,
        version: u64,
        budget: usize,
        out: &mut Output<'_>,
    ) -> usize {
        if self.queues[q].lock_free(version).is_some() {
            return self.drain_tx(q, vring, None, budget, out);
        }
        let mut st = vring.locked();
        if !(st.get_queue().ready() && st.is_enabled()) {
            self.queues[q].reset();
            return 0;
        }
        let Some(map) = &self.map else { return 0 };
        if self.queues[q].ring(map, st.get_queue()).is_none() {
            return 0;
        }
        self.queues[q].confirm(version);
        self.stats.locked_bursts.add(1);
        self.drain_tx(q, vring, Some(&mut st), budget, out)
    }

    /// The burst of [`poll_tx`](Self::poll_tx), on a current ring view; `st`: the vring's
    /// state when locked (its `Queue` gets the indexes), `None` on the lock-free path (they
    /// go to the vring's [`FastIndexes`](crate::gate::FastIndexes)).
    fn drain_tx(
        &mut self,
        q: usize,
        vring: &Vring,
        mut st: Option<&mut VringState<Mem>>,
        budget: usize,
        out: &mut Output<'_>,
    ) -> usize {
        let Some(ring) = self.queues[q].view() else { return 0 };
        let stats = &self.stats;
        let mut consumed = 0usize;
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut drops = [0u64; DROP_REASONS.len()];
        ring.prefetch(budget.min(u16::MAX as usize) as u16, false);
        // Packets are built in place in a burst of ours, handed over whole (a swap).
        let burst = &mut self.tx_burst;
        let mut lent = self.tx_lent.as_deref_mut().map(TxLent::new);
        if let Some(l) = &mut lent {
            l.source().reserve(budget.min(ring.pending().unwrap_or(0) as usize).min(BURST_SIZE));
        }
        while consumed < budget {
            let pools =
                TxPools { pool: &self.cfg.pool, small: self.cfg.small_pool.as_ref(), lent: lent.as_mut() };
            match tx_pop_into(ring, pools, &self.feat, burst) {
                TxPop::Packet(len) => {
                    packets += 1;
                    bytes += len as u64;
                    consumed += 1;
                    if burst.is_full() {
                        out.emit_all(Side::West, 0, burst);
                    }
                }
                TxPop::Dropped(d) => {
                    drops[DropReason::from(d) as usize] += 1;
                    consumed += 1;
                }
                TxPop::PoolEmpty => {
                    // The guest kicked once for these frames and will not kick again: come
                    // back when buffers may have been freed, not at the next kick.
                    stats.pool_empty.add(1);
                    out.retry_soon();
                    break;
                }
                TxPop::Broken => {
                    drops[DropReason::QueueBroken as usize] += 1;
                    break;
                }
                TxPop::Empty => break,
            }
        }
        out.emit_all(Side::West, 0, burst);
        if let Some(l) = &mut lent {
            l.source().unreserve();
        }
        if consumed > 0 {
            // Counted once per burst: the counters are shared with readers on other threads.
            stats.tx_packets.add(packets);
            stats.tx_bytes.add(bytes);
            stats.queue_tx_packets[q / 2].add(packets);
            ring.publish_used();
            keep_indexes(ring, vring, st.as_deref_mut());
            let interrupt = ring.needs_interrupt();
            self.queues[q].polling();
            if interrupt {
                signal_guest(vring, st.as_deref());
                stats.guest_notifications.add(1);
            }
        }
        for (r, &n) in drops.iter().enumerate().filter(|(_, &n)| n > 0) {
            out.count_drop(r, n);
            stats.drops[r].add(n);
        }
        consumed
    }

    /// Re-enables kicks on TX queue `q` (the graph is about to stop polling it). Returns
    /// whether chains are already waiting.
    fn arm_tx(&mut self, q: usize, vring: &Vring) -> bool {
        let st = vring.locked();
        let running = st.get_queue().ready() && st.is_enabled();
        let map = self.map.as_ref().filter(|_| running);
        let armed = map.and_then(|m| self.queues[q].arm(m, st.get_queue()));
        drop(st);
        let stats = &self.stats;
        if armed.is_some_and(|a| a.newly) {
            stats.kicks_armed.add(1);
        }
        // Drained after arming, every time: a kick for chains published before the arming is
        // consumed here (the arming's second look saw those chains), and so is a kick with
        // nothing new behind it (a driver may kick when it starts a queue), which would
        // otherwise keep the fd readable and the graph from ever sleeping. A queue that is not
        // running is drained for the same reason.
        stats.guest_kicks.add(self.queues[q].drain_kick());
        armed.is_some_and(|a| a.work)
    }
}

impl Brick for VhostUserNic {
    fn kind(&self) -> &'static str {
        "vhost-user"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        match side {
            Side::West => 1,
            Side::East => 0,
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.wake_set.fd())
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        // The control thread's doorbell (a connection, a kick fd, a queue started) always
        // takes the full path.
        let bell = &self.shared.doorbells[self.thread];
        let woken = bell.pending.load(Ordering::Relaxed);
        if woken {
            bell.pending.store(false, Ordering::Release);
            bell.waker.drain();
            self.stats.wakeups.add(1);
        }
        if !woken && self.tx_quiet() {
            return 0;
        }
        let version = self.shared.gate.enter(self.thread);
        let mut total = 0;
        if let Some(conn) = self.refresh() {
            if let Some(vrings) = conn.vrings.get() {
                for q in self.own_tx_queues(vrings.len()) {
                    total += self.poll_tx(q, &vrings[q], version, brick_core::BURST_SIZE, out);
                }
            }
            self.conn = Some(conn);
        }
        self.shared.gate.leave(self.thread);
        total
    }

    fn arm_wake(&mut self) -> bool {
        let Some(conn) = self.conn.clone() else { return false };
        let Some(vrings) = conn.vrings.get() else { return false };
        let mut work = false;
        for q in self.own_tx_queues(vrings.len()) {
            work |= self.arm_tx(q, &vrings[q]);
        }
        work
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let version = self.shared.gate.enter(self.thread);
        let conn = self.refresh();
        let vrings = conn.as_ref().and_then(|c| c.vrings.get());
        // Several of this thread's RX queues run: each flow keeps to one of them.
        let running = self.shared.rx_running.load(Ordering::Acquire) & self.own_pairs;
        match vrings {
            Some(v) if running.count_ones() > 1 => self.push_steered(v, running, version, pkts, out),
            _ => match vrings.and_then(|v| self.pick_rx(v, version).map(|q| (q, &v[q]))) {
                Some((q, vring)) => self.push_rx(q, vring, version, pkts, out),
                None => self.drop_not_ready(pkts, out),
            },
        }
        if conn.is_some() {
            self.conn = conn;
        }
        self.shared.gate.leave(self.thread);
    }

    fn describe(&self) -> Vec<String> {
        let s = &self.stats;
        let pairs = self.cfg.queue_pairs as usize;
        let mut lines = vec![
            format!("{} {}", if self.server { "server" } else { "client" }, self.path.display()),
            format!(
                "connected={} connections={}",
                s.connected.load(Ordering::Relaxed),
                s.connections.load(Ordering::Relaxed)
            ),
            format!("acked=0x{:x}", s.acked_features.load(Ordering::Relaxed)),
        ];
        if pairs > 1 {
            let list = |c: &[brick_core::Counter]| {
                c[..pairs].iter().map(|c| c.get().to_string()).collect::<Vec<_>>().join(",")
            };
            lines.push(format!(
                "queue pairs={pairs} rx={} tx={}",
                list(&s.queue_rx_packets),
                list(&s.queue_tx_packets)
            ));
        }
        lines
    }
}

impl VhostUserNic {
    /// The TX queues of this brick's queue pairs (`thread`, `thread + threads`, …) among
    /// `queues` virtqueues.
    #[inline]
    fn own_tx_queues(&self, queues: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
        (2 * self.thread + 1..queues).step_by(2 * self.cfg.threads as usize)
    }

    /// A started RX queue of this brick's queue pairs, round robin per burst: one confirmed
    /// at gate `version` is known started without the lock.
    fn pick_rx(&mut self, vrings: &[Vring], version: u64) -> Option<usize> {
        // This thread's pairs are thread, thread + threads, …: `own` of them.
        let threads = self.cfg.threads as usize;
        let own = (vrings.len() / 2).saturating_sub(self.thread).div_ceil(threads);
        if own == 0 {
            return None;
        }
        let start = self.rx_next;
        self.rx_next = self.rx_next.wrapping_add(1);
        (0..own).map(|k| 2 * (self.thread + threads * ((start + k) % own))).find(|&q| {
            self.queues[q].lock_free(version).is_some() || {
                let st = vrings[q].get_ref();
                st.get_queue().ready() && st.is_enabled()
            }
        })
    }

    /// Writes `pkts` into the guest buffers of the running RX queues `running` (bit `p` for
    /// pair `p`, more than one), each frame into the one its flow hash picks, so that a
    /// flow's frames arrive in order on one queue (one vCPU of the guest).
    fn push_steered(
        &mut self,
        vrings: &[Vring],
        running: u64,
        version: u64,
        pkts: &mut Burst,
        out: &mut Output<'_>,
    ) {
        let mut steered = std::mem::take(&mut self.steered);
        let n = running.count_ones() as usize;
        if steered.len() < n {
            steered.resize_with(n, Burst::new);
        }
        let flush = |nic: &mut Self, k: usize, b: &mut Burst, out: &mut Output<'_>| {
            let q = 2 * nth_bit(running, k);
            match vrings.get(q) {
                Some(vring) => nic.push_rx(q, vring, version, b, out),
                None => nic.drop_not_ready(b, out),
            }
        };
        for p in pkts.drain() {
            let k = steer_pair(crate::flow_hash(p.data()), n);
            if let Err(p) = steered[k].push(p) {
                // (A burst bigger than BURST_SIZE.)
                flush(self, k, &mut steered[k], out);
                let _ = steered[k].push(p);
            }
        }
        for (k, b) in steered.iter_mut().enumerate().take(n) {
            if !b.is_empty() {
                flush(self, k, b, out);
            }
        }
        self.steered = steered;
    }

    /// Drops `pkts`, counted as not ready (no running RX queue to take them).
    fn drop_not_ready(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let n = pkts.len() as u64;
        pkts.clear();
        self.count_drop(out, DropReason::NotReady, n);
    }

    /// Writes `pkts` into the guest buffers of RX queue `q`: without the vring's lock when
    /// its view is confirmed at gate `version`, otherwise under it (confirming the view).
    fn push_rx(&mut self, q: usize, vring: &Vring, version: u64, pkts: &mut Burst, out: &mut Output<'_>) {
        if self.queues[q].lock_free(version).is_some() {
            return self.fill_rx(q, vring, None, pkts, out);
        }
        let mut st = vring.locked();
        let running = st.get_queue().ready() && st.is_enabled();
        let viewed = match &self.map {
            Some(map) if running => self.queues[q].ring(map, st.get_queue()).is_some(),
            _ => false,
        };
        if !viewed {
            drop(st);
            let n = pkts.len() as u64;
            pkts.clear();
            let reason = if running { DropReason::QueueBroken } else { DropReason::NotReady };
            self.count_drop(out, reason, n);
            return;
        }
        self.queues[q].confirm(version);
        self.stats.locked_bursts.add(1);
        self.fill_rx(q, vring, Some(&mut st), pkts, out);
    }

    /// The burst of [`push_rx`](Self::push_rx) on a current ring view (`st` as in
    /// [`drain_tx`](Self::drain_tx)).
    fn fill_rx(
        &mut self,
        q: usize,
        vring: &Vring,
        mut st: Option<&mut VringState<Mem>>,
        pkts: &mut Burst,
        out: &mut Output<'_>,
    ) {
        let Some(ring) = self.queues[q].view() else { return };
        ring.prefetch(pkts.len() as u16, true);
        let stats = &self.stats;
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let mut drops = [0u64; DROP_REASONS.len()];
        for mut pkt in pkts.drain() {
            let o = rx_push_segmenting(
                ring,
                &mut pkt,
                &self.feat,
                &mut self.scratch,
                &self.cfg.pool,
                &mut self.gso_segs,
            );
            delivered += o.frames;
            bytes += o.bytes;
            if let Some(e) = o.reason {
                // The packet itself is freed at the end of this iteration either way.
                drops[DropReason::from(e) as usize] += o.dropped;
            }
        }
        // Chains may have been handed back (a bad first chain) even with nothing delivered.
        ring.publish_used();
        keep_indexes(ring, vring, st.as_deref_mut());
        if delivered > 0 {
            stats.rx_packets.add(delivered);
            stats.rx_bytes.add(bytes);
            stats.queue_rx_packets[q / 2].add(delivered);
            if ring.needs_interrupt() {
                signal_guest(vring, st.as_deref());
                stats.guest_notifications.add(1);
            }
        }
        for (r, &n) in drops.iter().enumerate().filter(|(_, &n)| n > 0) {
            out.count_drop(r, n);
            stats.drops[r].add(n);
        }
    }
}

/// Leaves the device indexes where GET_VRING_BASE finds them: in the `Queue` when locked,
/// else for the next holder of the lock to write back.
#[inline]
fn keep_indexes(ring: &SplitQueue, vring: &Vring, st: Option<&mut VringState<Mem>>) {
    match st {
        Some(st) => ring.store_indexes(st.get_queue_mut()),
        None => vring.fast().record(ring.next_avail, ring.next_used),
    }
}

/// Interrupts the guest (writes its call fd), with the state already locked or under the
/// read lock: the call fd lives in it.
fn signal_guest(vring: &Vring, st: Option<&VringState<Mem>>) {
    let _ = match st {
        Some(st) => st.signal_used_queue(),
        None => vring.get_ref().signal_used_queue(),
    };
}

/// Which of `n` running queues a frame of flow hash `hash` goes to. The hash's low half: the
/// spread brick picks the thread from its high half, so the two choices do not correlate.
#[inline]
pub(crate) fn steer_pair(hash: u32, n: usize) -> usize {
    ((u64::from(hash & 0xffff) * n as u64) >> 16) as usize
}

/// The index of the `k`th set bit of `mask` (64 when there is none).
#[inline]
fn nth_bit(mut mask: u64, k: usize) -> usize {
    for _ in 0..k {
        mask &= mask.wrapping_sub(1);
    }
    mask.trailing_zeros() as usize
}

#[cfg(test)]
mod tests {
    use super::{nth_bit, steer_pair};

    /// Flows spread over the running queues near evenly, each flow to one, and the choice
    /// does not follow the spread brick's (the hash's high half).
    #[test]
    fn flows_spread_over_the_running_queues() {
        assert_eq!(nth_bit(0b1010_0100, 0), 2);
        assert_eq!(nth_bit(0b1010_0100, 2), 7);
        assert_eq!(nth_bit(0, 0), 64);
        for n in 2..=4 {
            let mut per = [0u32; 4];
            // Hashes of thread 0's half of a two-thread spread: high bit clear.
            for i in 0..4096u32 {
                let h = crate::flow_hash(&i.to_be_bytes().repeat(16)) & 0x7fff_ffff;
                per[steer_pair(h, n)] += 1;
            }
            for (k, &c) in per.iter().enumerate().take(n) {
                assert!(c > 4096 / n as u32 * 3 / 4, "{n} queues: queue {k} got {c} of 4096");
            }
        }
    }
}

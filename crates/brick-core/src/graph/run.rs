//! Running the graph: polling its sources, carrying bursts from brick to brick, firing
//! timers and waiting for work.

use super::*;

impl Graph {
    /// Runs queued control commands; returns how many ran.
    #[inline]
    pub fn apply_commands(&mut self) -> usize {
        let posted = self.cmd_posted.load(Ordering::Acquire);
        if posted == self.cmd_seen {
            return 0;
        }
        // Commands posted after this load are found now or at the next round's look.
        self.cmd_seen = posted;
        let mut n = 0;
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            cmd(self);
            n += 1;
        }
        n
    }

    /// One round: runs pending commands, fires timers when due, then polls every source and
    /// carries what they emit through the graph. Returns the number of packets polled.
    pub fn poll_all(&mut self) -> usize {
        self.begin_round();
        self.poll_every_source()
    }

    /// One round like [`poll_all`](Self::poll_all), but polling only the sources that may
    /// have work: those whose wake fd the last [`wait_for_work`](Self::wait_for_work) found
    /// readable, those that found work the last time they were polled, and those without a
    /// wake fd. Between waits, with `SCAN_MIN_FD_SOURCES` or more fd sources, one
    /// zero-timeout `epoll_wait` tells which are ready: cheaper than a `read` per idle TAP. Every
    /// source is still polled whenever the timers fire (each tick interval), so a brick
    /// whose fd does not tell the whole story is never stranded for long.
    pub fn poll_ready(&mut self) -> usize {
        let ticked = self.begin_round();
        self.refresh_wait_set();
        if ticked || self.fd_sources < SCAN_MIN_FD_SOURCES || self.wait_set.is_none() {
            self.readiness_fresh = false;
            return self.poll_every_source();
        }
        if !self.readiness_fresh {
            self.wait_on_set(Duration::ZERO);
        }
        self.readiness_fresh = false;
        let mut total = 0;
        for i in 0..self.sources.len() {
            if !self.watched[i] || self.hot[i] || self.ready[i] || self.retry[i] {
                self.ready[i] = false;
                let (n, retry) = self.poll_source(self.sources[i]);
                // An idle source is skipped from now until its fd fires: let it arm the fd.
                self.hot[i] = n > 0 || (!retry && self.arm_source(self.sources[i]));
                self.retry[i] = retry;
                total += n;
            }
        }
        total
    }

    /// Asks source `index` to arm its wake fd ([`Brick::arm_wake`]); `true`: it has work.
    fn arm_source(&mut self, index: u32) -> bool {
        self.nodes[index as usize].as_mut().is_some_and(|node| node.brick.arm_wake())
    }

    /// Arms every source's wake fd before a sleep. Returns whether one of them found work
    /// meanwhile (it is marked ready, and the graph must not sleep).
    fn arm_sources(&mut self) -> bool {
        let mut any = false;
        for pos in 0..self.sources.len() {
            if self.arm_source(self.sources[pos]) {
                any = true;
                if let Some(r) = self.ready.get_mut(pos) {
                    *r = true;
                }
            }
        }
        any
    }

    /// Runs pending commands and, when due, the timers. Returns whether the timers fired.
    fn begin_round(&mut self) -> bool {
        self.apply_commands();
        self.now = Timestamp::now();
        if self.now.saturating_since(self.last_tick) < self.tick_interval {
            return false;
        }
        self.last_tick = self.now;
        let now = self.now;
        for node in self.nodes.iter_mut().flatten() {
            node.brick.tick(now);
        }
        true
    }

    fn poll_every_source(&mut self) -> usize {
        let mut total = 0;
        for i in 0..self.sources.len() {
            let (n, retry) = self.poll_source(self.sources[i]);
            if let Some(h) = self.hot.get_mut(i) {
                *h = n > 0;
            }
            if let Some(r) = self.retry.get_mut(i) {
                *r = retry;
            }
            total += n;
        }
        total
    }

    /// Polls one source and carries its packets through the graph. Returns the work it found
    /// and whether it asked to be polled again soon.
    fn poll_source(&mut self, index: u32) -> (usize, bool) {
        let now = self.now;
        let Some(node) = self.nodes[index as usize].as_mut() else { return (0, false) };
        let Node { brick, linked, slots, dirty, stats, .. } = node;
        let mut out = Output { slots, linked, dirty, stats, now, emitted: 0, flipped: false, retry: false };
        let t0 = cycles();
        let n = brick.poll(&mut out);
        if out.emitted > 0 {
            stats.cycles.add(cycles().wrapping_sub(t0));
            stats.cycle_pkts.add(out.emitted as u64);
            stats.calls.add(1);
        }
        let retry = out.retry;
        self.flush(index, 0);
        (n, retry)
    }

    /// Hands `pkts` to brick `id` as if they had arrived on `port` of `side`, and carries
    /// what it emits through the graph (for tests, benchmarks and control-path packets).
    pub fn inject(
        &mut self,
        id: BrickId,
        side: Side,
        port: PortId,
        pkts: &mut Burst,
    ) -> Result<(), GraphError> {
        self.node(id)?;
        self.now = Timestamp::now();
        let bytes = pkts.bytes();
        self.process(id.index, side, port, pkts, bytes, 0);
        Ok(())
    }

    fn process(&mut self, index: u32, side: Side, port: PortId, pkts: &mut Burst, bytes: u64, depth: usize) {
        let now = self.now;
        let Some(node) = self.nodes[index as usize].as_mut() else {
            pkts.clear();
            return;
        };
        let Node { brick, linked, slots, dirty, stats, .. } = node;
        let n = pkts.len() as u64;
        if depth >= MAX_DEPTH {
            stats.graph_drop(GraphDrop::Loop, n);
            pkts.clear();
            return;
        }
        let sc = stats.side(side);
        sc.pkts_in.add(n);
        sc.bytes_in.add(bytes);
        let mut out = Output { slots, linked, dirty, stats, now, emitted: 0, flipped: false, retry: false };
        let calls = stats.calls.get();
        stats.calls.add(1);
        // Cycles are sampled on one call in CYCLE_SAMPLING: reading the TSC costs more than a
        // cheap brick's whole burst.
        if calls % CYCLE_SAMPLING == 0 {
            let t0 = cycles();
            brick.process(side, port, pkts, &mut out);
            stats.cycles.add(cycles().wrapping_sub(t0));
            stats.cycle_pkts.add(n);
        } else {
            brick.process(side, port, pkts, &mut out);
        }
        if !pkts.is_empty() {
            stats.graph_drop(GraphDrop::Unconsumed, pkts.len() as u64);
            pkts.clear();
        }
        self.flush(index, depth);
    }

    /// Delivers everything brick `index` emitted.
    fn flush(&mut self, index: u32, depth: usize) {
        loop {
            let Some(node) = self.nodes[index as usize].as_mut() else { return };
            if node.dirty.is_empty() {
                return;
            }
            let mut dirty = std::mem::take(&mut node.dirty);
            for &(side, port) in &dirty {
                let Some(node) = self.nodes[index as usize].as_mut() else { return };
                let (s, p) = (side as usize, port as usize);
                let mut slot = std::mem::take(&mut node.slots[s][p]);
                let Some(link) = node.links[s][p] else {
                    node.stats.graph_drop(GraphDrop::Unlinked, slot.len() as u64);
                    slot.clear();
                    node.slots[s][p] = slot;
                    continue;
                };
                let bytes = slot.bytes();
                let sc = node.stats.side(side);
                sc.pkts_out.add(slot.len() as u64);
                sc.bytes_out.add(bytes);
                if slot.len() <= BURST_SIZE {
                    self.process(link.peer, side.opposite(), link.peer_port, &mut slot, bytes, depth + 1);
                } else {
                    // Replication emitted more than a burst: hand it on in bursts of 64.
                    if self.spares.len() <= depth {
                        self.spares.resize_with(depth + 1, Burst::new);
                    }
                    let mut spare = std::mem::take(&mut self.spares[depth]);
                    while !slot.is_empty() {
                        slot.move_front_into(&mut spare, BURST_SIZE);
                        let b = spare.bytes();
                        self.process(link.peer, side.opposite(), link.peer_port, &mut spare, b, depth + 1);
                    }
                    self.spares[depth] = spare;
                }
                slot.clear();
                if let Some(node) = self.nodes[index as usize].as_mut() {
                    if let Some(place) = node.slots[s].get_mut(p) {
                        *place = slot;
                    }
                }
            }
            dirty.clear();
            if let Some(node) = self.nodes[index as usize].as_mut() {
                // A loop back into this brick may have refilled its dirty list meanwhile.
                let refilled = std::mem::replace(&mut node.dirty, dirty);
                if refilled.is_empty() {
                    return;
                }
                node.dirty.extend(refilled);
            } else {
                return;
            }
        }
    }

    /// Calls every brick's [`tick`](Brick::tick) now.
    pub fn tick_all(&mut self) {
        let now = Timestamp::now();
        self.last_tick = now;
        for node in self.nodes.iter_mut().flatten() {
            node.brick.tick(now);
        }
    }

    /// Sleeps until a source's wake fd or a command is ready, or `max` elapses. Sources with
    /// no wake fd cap the sleep at `busy_cap`, since only polling finds their packets; so does
    /// a source whose last poll called [`Output::retry_soon`]. Every source is first asked to
    /// arm its wake fd ([`Brick::arm_wake`]); if one finds work then, it returns at once.
    pub fn wait_for_work(&mut self, max: Duration, busy_cap: Duration) {
        self.refresh_wait_set();
        if self.arm_sources() {
            return;
        }
        // A source without a wake fd, or one that left signalled work behind
        // (`Output::retry_soon`), is polled again after at most `busy_cap`.
        let retry = self.retry.iter().any(|&r| r);
        let timeout = if self.no_fd_sources > 0 || retry { max.min(busy_cap) } else { max };
        let until_tick = self.tick_interval.saturating_sub(Timestamp::now().saturating_since(self.last_tick));
        let timeout = timeout.min(until_tick);
        if self.wait_set.is_some() {
            self.wait_on_set(timeout);
        } else {
            // No epoll set (the kernel refused one): nap briefly; every source is polled.
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
        }
    }

    /// Waits on the wait set for up to `timeout`, marking the ready sources. Only a posted
    /// command makes the graph's own doorbell readable: it is drained then, and a read(2)
    /// saved on every other wake-up.
    fn wait_on_set(&mut self, timeout: Duration) {
        let Some(set) = &self.wait_set else { return };
        // Room for every source and the doorbell (grows only when sources were added).
        let want = self.sources.len() + 1;
        if self.events.capacity() < want {
            self.events.reserve(want - self.events.len());
        }
        set.wait(&mut self.events, timeout);
        for ev in &self.events {
            let data = ev.u64;
            if data == DOORBELL {
                self.waker.drain();
            } else if let Some(&pos) = self.pos_of.get(data as usize).filter(|&&p| p != NOT_SOURCE) {
                self.ready[pos as usize] = true;
            }
        }
        self.readiness_fresh = true;
    }

    /// Whether every source has a wake fd, so that a runner may sleep as soon as a round is
    /// empty: nothing can arrive unnoticed. Otherwise sleeping costs up to the busy cap of
    /// [`wait_for_work`](Self::wait_for_work) in latency.
    pub fn sources_have_wake_fds(&mut self) -> bool {
        self.refresh_wait_set();
        self.no_fd_sources == 0
    }

    /// Builds the wait set the first time it is needed: the doorbell and every source's
    /// wake fd. Afterwards sources join and leave it one at a time.
    fn refresh_wait_set(&mut self) {
        if self.wait_set_built {
            return;
        }
        self.wait_set_built = true;
        self.wait_set = EpollSet::new().ok();
        if let Some(set) = &self.wait_set {
            if set.add(self.waker.fd(), DOORBELL).is_err() {
                self.wait_set = None;
            }
        }
        for pos in 0..self.sources.len() {
            if let Some(fd) = self.nodes[self.sources[pos] as usize].as_ref().and_then(|n| n.brick.wake_fd())
            {
                self.watch(pos, fd);
            }
        }
        self.readiness_fresh = false;
    }

    /// Wake fds of the sources (for an external event loop).
    pub fn wake_fds(&self) -> Vec<RawFd> {
        self.sources.iter().filter_map(|&i| self.nodes[i as usize].as_ref()?.brick.wake_fd()).collect()
    }
}

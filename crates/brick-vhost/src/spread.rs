//! [`VhostSpread`]: the front, in thread 0's graph, of a device whose queue pairs several
//! graph threads serve ([`VhostUserConfig::threads`](crate::VhostUserConfig)).
//!
//! ```text
//!                 west 0            east 0
//! firewall … ──── spread ─────────────────── vhost brick of thread 0 (pairs 0, T, 2T …)
//!                    │ east 1 ── queue link ══ its other end ── sibling of thread 1 (pairs 1, T+1 …)
//!                    │ east 2 ── …
//! ```
//!
//! Frames for the guest arrive on the west side and leave on the east port of one of the
//! threads whose RX queues the driver runs, chosen by a hash of the frame's flow (its high
//! half), so that a flow's frames stay on one thread; a thread running several RX queues
//! picks one per flow from the hash's low half. Frames from the guest, arriving on any east
//! port, all leave on west port 0. A guest that runs fewer queue pairs than there are threads
//! (a one-vCPU Linux guest runs one) gets everything through the threads it runs; with none
//! running, frames go to thread 0, which counts them as not ready.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use brick_core::{Brick, Burst, Output, PortId, Side};
use brick_wire::{IpProto, Layers};

use crate::backend::{Shared, MAX_QUEUE_PAIRS};

brick_core::drop_reasons! {
    /// Why the spread brick drops a frame; `NAMES` is its `Brick::drop_reasons`.
    pub enum SpreadDrop {
        /// Thread 0's brick is not linked (and no other thread runs an RX queue).
        NoThread => "no thread linked",
    }
}

/// Which graph threads of a device can take frames for its guest now: those with a running
/// RX queue (started and enabled by the driver) on the current connection. Readable from
/// any thread, one atomic load.
#[derive(Clone)]
pub struct RxThreads {
    shared: Arc<Shared>,
    threads: usize,
}

impl RxThreads {
    pub(crate) fn new(shared: Arc<Shared>, threads: usize) -> Self {
        RxThreads { shared, threads: threads.clamp(1, MAX_QUEUE_PAIRS) }
    }

    /// The device's graph threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The queue pairs whose RX queue runs now: bit `p` for pair `p`.
    #[inline]
    pub fn running_pairs(&self) -> u64 {
        self.shared.rx_running.load(Ordering::Acquire)
    }

    /// The graph threads with a running RX queue now: bit `t` for thread `t`.
    pub fn running(&self) -> u64 {
        threads_of(self.running_pairs(), self.threads)
    }
}

/// The threads (bit `t`) serving the pairs in `pairs` (bit `p`) among `threads`: thread `t`
/// serves the pairs `p % threads == t`.
fn threads_of(pairs: u64, threads: usize) -> u64 {
    (0..MAX_QUEUE_PAIRS).filter(|p| pairs >> p & 1 == 1).fold(0, |m, p| m | 1 << (p % threads))
}

/// A hash of a frame's flow: its IP addresses and, for TCP, UDP and SCTP outside fragments,
/// its ports; for anything else (ARP, a malformed frame) its two MAC addresses. Every frame
/// of one flow (and every fragment of one datagram) gets the same value; the top bits are
/// the well-mixed ones.
#[inline]
pub fn flow_hash(frame: &[u8]) -> u32 {
    ipv4_flow_hash(frame).unwrap_or_else(|| located_flow_hash(frame))
}

/// [`flow_hash`] of an untagged IPv4 frame whose header is whole, read in place (the common
/// case, without the general locator): the same value as [`located_flow_hash`] gives.
#[inline]
fn ipv4_flow_hash(frame: &[u8]) -> Option<u32> {
    let ip = frame.get(14..34).filter(|_| frame[12..14] == [0x08, 0x00])?;
    let header = usize::from(ip[0] & 0x0f) * 4;
    if ip[0] >> 4 != 4 || header < 20 || frame.len() < 14 + header {
        return None;
    }
    let proto = ip[9];
    let h = mix(u64::from(proto), &ip[12..20]);
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let ports = match proto {
        6 | 17 | 132 if !fragment => frame.get(14 + header..18 + header),
        _ => None,
    };
    Some(fold(ports.map_or(h, |p| mix(h, p))))
}

/// [`flow_hash`] through [`brick_wire::locate`]: VLAN tags, IPv6 and its extension headers.
fn located_flow_hash(frame: &[u8]) -> u32 {
    let macs = || frame.get(..12).map_or(0, |m| mix(0, &m[..8]) ^ mix(1, &m[8..]));
    let Ok(l) = brick_wire::locate(frame) else { return fold(macs()) };
    let addrs = match (l.is_ipv4(), l.is_ipv6()) {
        (true, _) => frame.get(l.l3 + 12..l.l3 + 20),
        (_, true) => frame.get(l.l3 + 8..l.l3 + 40),
        _ => None,
    };
    let Some(addrs) = addrs else { return fold(macs()) };
    let h = addrs.chunks(8).fold(u64::from(l.proto), mix);
    fold(match ports(frame, &l) {
        Some(p) => mix(h, p),
        None => h,
    })
}

/// The four port bytes of a TCP, UDP or SCTP header outside a fragment.
fn ports<'a>(frame: &'a [u8], l: &Layers) -> Option<&'a [u8]> {
    if l.frag.is_some() || !matches!(l.ip_proto(), IpProto::TCP | IpProto::UDP | IpProto::SCTP) {
        return None;
    }
    frame.get(l.l4?..l.l4? + 4)
}

/// Mixes up to 8 bytes into `h`.
#[inline]
fn mix(h: u64, bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
    (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The top half of a last multiply: each of its bits depends on every input bit.
#[inline]
fn fold(h: u64) -> u32 {
    ((h ^ h >> 29).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 32) as u32
}

/// Spreads a device's frames for the guest over its graph threads, in thread 0's graph: its
/// west port faces the NIC's other bricks, its east ports thread 0's brick and a queue link
/// to each other thread's graph ([`set_thread_port`](Self::set_thread_port)). Each flow goes
/// to a thread with a running RX queue; frames from the guest, from any thread, go west.
pub struct VhostSpread {
    rx: RxThreads,
    /// The east port of each thread's brick (or of the queue link to it).
    ports: [Option<PortId>; MAX_QUEUE_PAIRS],
    /// The running pairs `order` was computed for (`u64::MAX`: not yet).
    seen: u64,
    /// The threads that run an RX queue and are linked, with their east port, in thread
    /// order.
    order: [(usize, PortId); MAX_QUEUE_PAIRS],
    count: usize,
    /// Frames sent towards each thread.
    sent: [u64; MAX_QUEUE_PAIRS],
}

impl VhostSpread {
    /// A spread brick over the threads of `rx` ([`VhostUserNic::rx_threads`](crate::VhostUserNic::rx_threads)),
    /// none linked yet: see [`set_thread_port`](Self::set_thread_port).
    pub fn new(rx: RxThreads) -> Self {
        VhostSpread {
            rx,
            ports: [None; MAX_QUEUE_PAIRS],
            seen: u64::MAX,
            order: [(0, 0); MAX_QUEUE_PAIRS],
            count: 0,
            sent: [0; MAX_QUEUE_PAIRS],
        }
    }

    /// Says that thread `thread`'s brick, or the queue link to it, is on east port `port`.
    /// Threads beyond the device's are ignored.
    pub fn set_thread_port(&mut self, thread: usize, port: PortId) {
        if let Some(p) = self.ports.get_mut(thread).filter(|_| thread < self.rx.threads) {
            *p = Some(port);
            self.seen = u64::MAX;
        }
    }

    /// Frames sent towards each thread so far.
    pub fn sent(&self) -> &[u64] {
        &self.sent[..self.rx.threads]
    }

    /// Recomputes `order` for the running pairs `pairs`.
    fn update(&mut self, pairs: u64) {
        let running = threads_of(pairs, self.rx.threads);
        self.count = 0;
        for t in (0..self.rx.threads).filter(|t| running >> t & 1 == 1) {
            if let Some(p) = self.ports[t] {
                self.order[self.count] = (t, p);
                self.count += 1;
            }
        }
        self.seen = pairs;
    }

    /// Sends the whole burst to thread `thread`, on east port `port`.
    fn send_all(&mut self, (thread, port): (usize, PortId), pkts: &mut Burst, out: &mut Output<'_>) {
        self.sent[thread] += pkts.len() as u64;
        out.emit_all(Side::East, port, pkts);
    }
}

impl Brick for VhostSpread {
    fn kind(&self) -> &'static str {
        "vhost-spread"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        SpreadDrop::NAMES
    }

    fn max_ports(&self, side: Side) -> usize {
        match side {
            Side::West => 1,
            Side::East => self.rx.threads,
        }
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if side == Side::East {
            // From the guest, whichever thread took it.
            return out.emit_all(Side::West, 0, pkts);
        }
        let pairs = self.rx.running_pairs();
        if pairs != self.seen {
            self.update(pairs);
        }
        match self.count {
            0 => match self.ports[0] {
                // Thread 0 counts them as not ready.
                Some(p) => self.send_all((0, p), pkts, out),
                None => {
                    for p in pkts.drain() {
                        out.drop(p, SpreadDrop::NoThread.index());
                    }
                }
            },
            1 => self.send_all(self.order[0], pkts, out),
            n => {
                for p in pkts.drain() {
                    let i = ((u64::from(flow_hash(p.data())) * n as u64) >> 32) as usize;
                    let (thread, port) = self.order[i];
                    self.sent[thread] += 1;
                    out.emit(Side::East, port, p);
                }
            }
        }
    }

    fn describe(&self) -> Vec<String> {
        let sent: Vec<String> = self.sent().iter().map(u64::to_string).collect();
        vec![format!(
            "threads={} running=0x{:x} to threads={}",
            self.rx.threads,
            self.rx.running(),
            sent.join(",")
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::{Graph, Packet};
    use std::sync::atomic::AtomicU64;

    fn udp(src_port: u16, dst_port: u16) -> Packet {
        let mut f = vec![0u8; 60];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&46u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&dst_port.to_be_bytes());
        Packet::from_slice(&f)
    }

    /// A brick counting what reaches it, linked on its west side.
    fn counter(g: &mut Graph, name: &str) -> (brick_core::BrickId, Arc<AtomicU64>) {
        let seen = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&seen);
        let b = brick_core::bricks::RxTx::new(
            Side::West,
            |_: &mut Burst| {},
            move |b: &mut Burst| {
                s.fetch_add(b.len() as u64, Ordering::Relaxed);
                b.clear();
            },
        );
        (g.add(name, b).unwrap(), seen)
    }

    /// A spread over `threads` threads, each with a counting brick on its east port.
    fn spread(threads: usize) -> (Graph, brick_core::BrickId, Arc<Shared>, Vec<Arc<AtomicU64>>) {
        let shared = Arc::new(Shared::new(threads).unwrap());
        let mut g = Graph::new("spread");
        let s = g.add("spread", VhostSpread::new(RxThreads::new(Arc::clone(&shared), threads))).unwrap();
        let mut seen = Vec::new();
        for t in 0..threads {
            let (c, n) = counter(&mut g, &format!("t{t}"));
            let (port, _) = g.link(s, c).unwrap();
            g.brick_mut::<VhostSpread>(s).unwrap().set_thread_port(t, port);
            seen.push(n);
        }
        (g, s, shared, seen)
    }

    fn send(g: &mut Graph, s: brick_core::BrickId, flows: impl Iterator<Item = u16>) {
        let mut b = Burst::new();
        for f in flows {
            if b.is_full() {
                g.inject(s, Side::West, 0, &mut b).unwrap();
            }
            b.push(udp(f, 53)).unwrap();
        }
        g.inject(s, Side::West, 0, &mut b).unwrap();
    }

    fn counts(seen: &[Arc<AtomicU64>]) -> Vec<u64> {
        seen.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Frames go only to threads whose RX queues run, spread over them by flow, and follow
    /// the driver's changes.
    #[test]
    fn spreads_over_the_threads_that_run_an_rx_queue() {
        let (mut g, s, shared, seen) = spread(2);
        // None running: thread 0 takes everything (and would count it as not ready).
        send(&mut g, s, 0..100);
        assert_eq!(counts(&seen), [100, 0]);
        // Pair 1 only (thread 1's): all of it there.
        shared.rx_running.store(0b10, Ordering::Release);
        send(&mut g, s, 0..100);
        assert_eq!(counts(&seen), [100, 100]);
        // Both: 1,000 flows spread over both, near half each.
        shared.rx_running.store(0b11, Ordering::Release);
        send(&mut g, s, 1000..2000);
        let c = counts(&seen);
        let (t0, t1) = (c[0] - 100, c[1] - 100);
        assert_eq!(t0 + t1, 1000);
        assert!((400..=600).contains(&t0), "thread 0 got {t0} of 1000 flows");
        assert_eq!(g.brick::<VhostSpread>(s).unwrap().sent(), c.as_slice());
        // Pairs 2 and 3 of 4 over 2 threads: thread 0 serves pair 2, thread 1 pair 3.
        assert_eq!(threads_of(0b0100, 2), 0b01);
        assert_eq!(threads_of(0b1100, 2), 0b11);
        assert_eq!(threads_of(0b1000_0000, 3), 0b10);
    }

    /// One flow's frames all take one thread, whatever else crosses.
    #[test]
    fn a_flow_stays_on_one_thread() {
        let (mut g, s, shared, seen) = spread(4);
        shared.rx_running.store(0b1111, Ordering::Release);
        send(&mut g, s, std::iter::repeat_n(4242, 200));
        let c = counts(&seen);
        assert_eq!(c.iter().filter(|&&n| n > 0).count(), 1, "one flow reached {c:?}");
        assert_eq!(c.iter().sum::<u64>(), 200);
    }

    /// Frames from any thread go west; with no thread linked, frames for the guest are
    /// dropped under their reason.
    #[test]
    fn guest_frames_go_west_and_unlinked_threads_drop() {
        let shared = Arc::new(Shared::new(2).unwrap());
        let mut g = Graph::new("spread");
        let s = g.add("spread", VhostSpread::new(RxThreads::new(shared, 2))).unwrap();
        let mut b = Burst::new();
        b.push(udp(1, 2)).unwrap();
        g.inject(s, Side::West, 0, &mut b).unwrap();
        assert_eq!(g.stats(s).unwrap().drops_of(SpreadDrop::NoThread.text()), Some(1));
        let west = g.add("west", brick_core::bricks::Nop).unwrap();
        g.link(west, s).unwrap();
        b.push(udp(1, 2)).unwrap();
        g.inject(s, Side::East, 1, &mut b).unwrap();
        assert_eq!(g.stats(s).unwrap().side(Side::West).pkts_out.get(), 1);
    }

    proptest::proptest! {
        /// Any bytes hash without a panic; in a UDP frame, the fields outside the flow (TTL,
        /// identification, checksum, payload) leave the hash as it is, and the ports count.
        #[test]
        fn the_hash_is_the_flows(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
                                 sp in 1u16.., dp in 1u16.., ttl: u8, id: u16, byte: u8) {
            let _ = flow_hash(&data);
            let a = udp(sp, dp);
            let mut b = a.data().to_vec();
            b[22] = ttl;
            b[18..20].copy_from_slice(&id.to_be_bytes());
            b[24] ^= byte;
            b[50] = byte;
            proptest::prop_assert_eq!(flow_hash(a.data()), flow_hash(&b));
            let other = udp(sp ^ 1, dp);
            proptest::prop_assert_ne!(flow_hash(a.data()), flow_hash(other.data()));
        }

        /// The IPv4 fast path gives what the general locator gives, for any IPv4 frame:
        /// any header length, version, fragment bits, protocol, and frames cut anywhere.
        #[test]
        fn the_ipv4_fast_path_agrees_with_the_locator(
            head in proptest::collection::vec(proptest::prelude::any::<u8>(), 40..80),
            len in 0usize..80, first: u8, proto in proptest::sample::select(vec![6u8, 17, 132, 1, 47]),
            flags: u16,
        ) {
            let mut f = head;
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            // Mostly valid headers (version 4, 5 to 15 words), sometimes not.
            f[14] = if first % 4 == 0 { first } else { 0x40 | (first % 11 + 5) };
            f[23] = proto;
            f[20..22].copy_from_slice(&(flags & 0xe000 | if flags & 1 == 0 { 0 } else { flags >> 3 }).to_be_bytes());
            f.truncate(len.max(14));
            proptest::prop_assert_eq!(flow_hash(&f), located_flow_hash(&f));
        }
    }
}

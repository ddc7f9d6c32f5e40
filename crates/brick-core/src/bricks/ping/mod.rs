//! Ping bricks: an in-graph ICMP echo sender that measures round trips, and a responder.
//!
//! They stand where a VM would (one port on their west side), so what they measure is the
//! path between two VM NICs: firewalls, anti-spoofing, switch, VTEP and the wire. This is
//! Butterfly's BENCH NIC (its `rxtx` brick in `ICMP_SND_LIKE` / `ICMP_RCV_LIKE` mode).
//!
//! ```
//! use brick_core::bricks::{PingConfig, PingResponder, PingSender};
//! use brick_core::{Graph, PacketPool};
//! use std::time::Duration;
//!
//! let pool = PacketPool::with_count(64).unwrap();
//! let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
//! let cfg = PingConfig::new(a, "42.0.0.1".parse().unwrap(), b, "42.0.0.2".parse().unwrap());
//! let sender = PingSender::new(PingConfig { interval: Duration::from_micros(100), ..cfg }, pool).unwrap();
//! let stats = sender.stats();
//! let mut g = Graph::new("ping");
//! let s = g.add("snd", sender).unwrap();
//! let r = g.add("rcv", brick_core::bricks::Flipped::new(
//!     PingResponder::new(b, vec!["42.0.0.2".parse().unwrap()]))).unwrap();
//! g.link(r, s).unwrap();
//! while stats.snapshot().received < 3 {
//!     g.poll_all();
//! }
//! assert!(stats.snapshot().rtt.unwrap().max < Duration::from_secs(1));
//! ```

pub mod frame;
mod stats;
mod ticker;

use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

pub use stats::{PingSnapshot, PingStats, RttFigures, KEPT_WINDOWS};

use crate::{Brick, Burst, Output, PacketPool, PortId, Side, Timestamp};
use frame::Echo;
use stats::Window;
use ticker::Ticker;

/// Echo identifier of the sender's requests (Butterfly's).
pub const ECHO_ID: u16 = 0x0bb0;
/// Replies per window, as Butterfly printed its figures.
pub const DEFAULT_WINDOW: u32 = 1024;

crate::drop_reasons! {
    /// Why a ping brick drops a frame that reached it.
    pub enum PingDrop {
        /// Not an ICMP/ICMPv6 echo message of the kind the brick handles.
        NotEcho => "not an echo message for this brick",
        /// An echo message for another MAC, address or sender.
        NotOurs => "echo for another address or sender",
        /// The ICMP checksum is wrong.
        BadChecksum => "bad ICMP checksum",
        /// A reply to no request in flight (late, after its timeout, or duplicated).
        Unexpected => "unexpected reply",
    }
}

/// What a [`PingSender`] sends and how often.
#[derive(Clone, Debug)]
pub struct PingConfig {
    /// The sender's MAC.
    pub mac: [u8; 6],
    /// The sender's IP.
    pub ip: IpAddr,
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Destination IP (same family as `ip`).
    pub dst_ip: IpAddr,
    /// Shortest time between two requests. One request is in flight at a time: the next
    /// leaves at the first tick after the reply (or after `timeout`).
    pub interval: Duration,
    /// How long a request waits for its reply before it counts as lost.
    pub timeout: Duration,
    /// Replies per window of min/mean/max figures.
    pub window: u32,
}

impl PingConfig {
    /// One request per millisecond at most, 200 ms timeout, windows of 1024 replies.
    pub fn new(mac: [u8; 6], ip: IpAddr, dst_mac: [u8; 6], dst_ip: IpAddr) -> PingConfig {
        PingConfig {
            mac,
            ip,
            dst_mac,
            dst_ip,
            interval: Duration::from_millis(1),
            timeout: Duration::from_millis(200),
            window: DEFAULT_WINDOW,
        }
    }
}

/// Why a ping brick cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The source and destination addresses are not of one family.
    #[error("source {src} and destination {dst} are not of the same IP family")]
    Family {
        /// Source IP.
        src: IpAddr,
        /// Destination IP.
        dst: IpAddr,
    },
    /// A zero interval or window.
    #[error("interval and window must not be zero")]
    Zero,
    /// The pacing timer could not be created.
    #[error("pacing timer: {0}")]
    Timer(#[source] std::io::Error),
}

/// A request in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    seq: u16,
    stamp: u64,
}

/// Sends ICMP echo requests from its west port 0, one in flight at a time and at most one
/// per [`PingConfig::interval`], and measures the round trip of each reply from the send
/// time it carries. A source whose wake fd is a periodic timer: an idle graph sleeps
/// between two requests.
pub struct PingSender {
    echo: Echo,
    len: usize,
    cfg: PingConfig,
    pool: PacketPool,
    ticker: Ticker,
    next_tick: Timestamp,
    in_flight: Option<InFlight>,
    window: Window,
    stats: Arc<PingStats>,
}

impl PingSender {
    /// A sender of `cfg`'s requests, in buffers of `pool`.
    pub fn new(cfg: PingConfig, pool: PacketPool) -> Result<PingSender, PingError> {
        if cfg.ip.is_ipv4() != cfg.dst_ip.is_ipv4() {
            return Err(PingError::Family { src: cfg.ip, dst: cfg.dst_ip });
        }
        if cfg.interval.is_zero() || cfg.window == 0 {
            return Err(PingError::Zero);
        }
        let ticker = Ticker::new(cfg.interval).map_err(PingError::Timer)?;
        Ok(PingSender {
            echo: Echo {
                src_mac: cfg.mac,
                dst_mac: cfg.dst_mac,
                src_ip: cfg.ip,
                dst_ip: cfg.dst_ip,
                id: ECHO_ID,
                seq: 0,
            },
            len: frame::request_len(cfg.ip.is_ipv6()),
            cfg,
            pool,
            ticker,
            next_tick: Timestamp::now(),
            in_flight: None,
            window: Window::default(),
            stats: Arc::new(PingStats::default()),
        })
    }

    /// Its figures, shared (readable from any thread).
    pub fn stats(&self) -> Arc<PingStats> {
        Arc::clone(&self.stats)
    }

    /// What it sends.
    pub fn config(&self) -> &PingConfig {
        &self.cfg
    }

    /// One request, or `false` when the pool is empty.
    fn send(&mut self, out: &mut Output<'_>) -> bool {
        let Some(mut pkt) = self.pool.alloc() else { return false };
        self.echo.seq = self.echo.seq.wrapping_add(1);
        let stamp = Timestamp::now().as_nanos();
        let built = pkt.append(self.len).ok().and_then(|b| frame::write_request(b, &self.echo, stamp));
        if built.is_none() {
            // The pool's buffers are smaller than 94 bytes: nothing can be sent.
            return false;
        }
        self.in_flight = Some(InFlight { seq: self.echo.seq, stamp });
        out.emit(Side::West, 0, pkt);
        self.stats.count_sent();
        true
    }

    /// Checks one frame; `Ok(rtt)` for the reply to the request in flight.
    fn take_reply(&mut self, data: &[u8], now: u64) -> Result<u64, PingDrop> {
        let at = frame::locate(data).filter(|a| !a.request).ok_or(PingDrop::NotEcho)?;
        let e = &at.echo;
        if e.id != ECHO_ID
            || e.dst_mac != self.echo.src_mac
            || e.dst_ip != self.echo.src_ip
            || e.src_ip != self.echo.dst_ip
        {
            return Err(PingDrop::NotOurs);
        }
        if !frame::checksum_ok(data, &at) {
            return Err(PingDrop::BadChecksum);
        }
        // The send time is only trusted when it is the one of the request in flight.
        let f = self.in_flight.filter(|f| f.seq == e.seq).ok_or(PingDrop::Unexpected)?;
        if frame::stamp(data, &at) != Some(f.stamp) {
            return Err(PingDrop::Unexpected);
        }
        self.in_flight = None;
        Ok(now.saturating_sub(f.stamp))
    }
}

impl Brick for PingSender {
    fn kind(&self) -> &'static str {
        "ping-sender"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        PingDrop::NAMES
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::West)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let now = Timestamp::now().as_nanos();
        for pkt in pkts.drain() {
            match self.take_reply(pkt.data(), now) {
                Ok(rtt) => {
                    self.stats.record_reply(rtt);
                    if self.window.add(rtt, self.cfg.window) {
                        self.stats.record_window(&self.window);
                        self.window = Window::default();
                    }
                }
                Err(why) => out.drop(pkt, why.index()),
            }
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    /// Acts on timer ticks only, known from its own clock: the timer fd is read once per
    /// tick (one syscall per interval, whatever else wakes the graph).
    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        let now = out.now();
        if now < self.next_tick {
            return 0;
        }
        if !self.ticker.expired() {
            // Just before the timer fires: look again a little later.
            self.next_tick = now.saturating_add(self.cfg.interval / 8);
            return 0;
        }
        // Half a period: the timer's own schedule is a little ahead of the time it was read.
        self.next_tick = now.saturating_add(self.cfg.interval / 2);
        if let Some(f) = self.in_flight {
            if now.as_nanos().saturating_sub(f.stamp) < self.cfg.timeout.as_nanos() as u64 {
                return 0;
            }
            self.in_flight = None;
            self.stats.count_lost();
        }
        if self.send(out) {
            1
        } else {
            self.stats.count_no_buffer();
            0
        }
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.ticker.fd())
    }

    fn describe(&self) -> Vec<String> {
        let s = self.stats.snapshot();
        let mut v = vec![
            format!("ping {} -> {}", self.cfg.ip, self.cfg.dst_ip),
            format!("sent {} replies {} lost {}", s.sent, s.received, s.lost),
        ];
        if let Some(r) = s.rtt {
            v.push(format!("rtt min/mean/max {:?}/{:?}/{:?}", r.min, r.mean, r.max));
        }
        if let (Some(m), Some(w)) = (s.mean_of_window_means, s.worst_window_mean) {
            v.push(format!("{} windows: mean {m:?} worst {w:?}", s.windows));
        }
        v
    }
}

/// Answers ICMP/ICMPv6 echo requests sent to its MAC and one of its addresses, from its
/// west port 0, turning each request into its reply in place (no copy, no allocation).
/// Not a source: it only ever answers.
pub struct PingResponder {
    mac: [u8; 6],
    ips: Vec<IpAddr>,
    stats: Arc<PingStats>,
}

impl PingResponder {
    /// A responder for `mac` and `ips`.
    pub fn new(mac: [u8; 6], ips: Vec<IpAddr>) -> PingResponder {
        PingResponder { mac, ips, stats: Arc::new(PingStats::default()) }
    }

    /// Its figures (requests received, replies sent), shared.
    pub fn stats(&self) -> Arc<PingStats> {
        Arc::clone(&self.stats)
    }

    fn answer(&self, data: &mut [u8]) -> Result<(), PingDrop> {
        let at = frame::locate(data).filter(|a| a.request).ok_or(PingDrop::NotEcho)?;
        if at.echo.dst_mac != self.mac || !self.ips.contains(&at.echo.dst_ip) {
            return Err(PingDrop::NotOurs);
        }
        if !frame::checksum_ok(data, &at) {
            return Err(PingDrop::BadChecksum);
        }
        frame::request_to_reply(data, &at).ok_or(PingDrop::NotEcho)
    }
}

impl Brick for PingResponder {
    fn kind(&self) -> &'static str {
        "ping-responder"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        PingDrop::NAMES
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::West)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for mut pkt in pkts.drain() {
            match self.answer(pkt.data_mut()) {
                Ok(()) => {
                    self.stats.count_received();
                    self.stats.count_sent();
                    out.emit(Side::West, 0, pkt);
                }
                Err(why) => out.drop(pkt, why.index()),
            }
        }
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("answered {}", self.stats.snapshot().sent)]
    }
}

#[cfg(test)]
mod tests;

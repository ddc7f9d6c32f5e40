//! The core of `vhost-flows`: many connections through a vhost-user switch at full rate,
//! for the stateful firewalls' side by side (`FLOWS=N benches/pvp-compare.sh`).
//!
//! Both guests are this one thread (vhost-user frontends, no VM), as `vhost-pingpong`'s.
//! vm1 starts a population of UDP frames to vm2; each guest swaps what it receives back to
//! its sender (MACs, addresses and ports, as testpmd's 5tswap), but vm1 gives each frame it
//! sends the source port of one of `flows` connections, picked at random. So every frame
//! opens or refreshes one of `flows` connections from vm1 (198.18.0.1:1024 + k) to vm2
//! (198.18.0.2:9), and every answer is that connection's reply: a switch with a firewall
//! tracks `flows` connections, each seen both ways, and looks one up for every frame. (In
//! turn rather than at random, the flows would be visited in the order their connections
//! were made, which most tables store side by side: the CPU would fetch them ahead by
//! itself, as no real traffic lets it.)
//! testpmd cannot do this: its forwarding modes keep a frame's flow, and its generators
//! either vary the addresses (which anti-spoofing rightly refuses) or never answer.
//!
//! The guests forward in bursts (up to [`BURST`] frames per poll, published once), copy
//! each frame once (received buffer to transmit buffer), and kick only when the device asks.
//! Frames the switch loses shrink the population: after [`REFILL_AFTER`] with nothing
//! received, vm1 sends a new one (counted in `refills`).

use std::time::{Duration, Instant};

use crate::pingpong::device::Device;
use crate::pingpong::frame::{self, Dir, Station};
use crate::pingpong::Error;

/// Frames a guest takes from its receive ring per poll.
pub const BURST: usize = 32;
/// Quiet time after which vm1 sends a new population (long enough that a switch preempted
/// for a moment does not get a second one on top of its first).
pub const REFILL_AFTER: Duration = Duration::from_millis(50);
/// vm1's first source port (flow `k` uses `FIRST_PORT + k`).
pub const FIRST_PORT: u16 = 1024;
/// The most flows: one source port each above [`FIRST_PORT`].
pub const MAX_FLOWS: u32 = (u16::MAX - FIRST_PORT) as u32 + 1;
/// vm2's port, every flow's destination.
const SERVER_PORT: u16 = 9;

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The guest behind the first socket (the clients' side).
    pub vm1: Station,
    /// The guest behind the second socket (the server).
    pub vm2: Station,
    /// Connections, one picked at random for each frame (1..=[`MAX_FLOWS`]).
    pub flows: u32,
    /// Frames in flight between the two guests.
    pub inflight: usize,
    /// Frame length on the wire, without FCS.
    pub frame_len: usize,
    /// Run first and not counted (the connections are opened then).
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
}

/// What was measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Seconds measured.
    pub seconds: f64,
    /// Frames each guest received while measuring (vm1, vm2).
    pub received: [u64; 2],
    /// New populations sent (while measuring) after the switch lost the last one.
    pub refills: u64,
    /// Frames received that were not ours (floods, ARP…), not answered.
    pub stray: u64,
    /// Answers not sent: every transmit descriptor was in flight.
    pub tx_full: u64,
}

impl Report {
    /// Frames per second per direction: the mean of the two guests' receive rates.
    pub fn per_direction(&self) -> f64 {
        (self.received[0] + self.received[1]) as f64 / 2.0 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

/// Swaps a frame's MACs, IPv4 addresses and UDP ports: the answer to it. The IPv4 checksum
/// stays right (a sum does not depend on the order of its words); the UDP checksum is 0.
pub fn swap5(f: &mut [u8]) {
    if f.len() < 38 {
        return;
    }
    for (a, b, n) in [(0, 6, 6), (26, 30, 4), (34, 36, 2)] {
        let (x, y) = f.split_at_mut(b);
        x[a..a + n].swap_with_slice(&mut y[..n]);
    }
}

/// Whether `f` is one of ours for the guest of MAC `mac`: to it, IPv4 with a 20-byte
/// header, UDP.
pub fn is_ours(f: &[u8], mac: &[u8; 6]) -> bool {
    f.len() >= 42 && f[..6] == mac[..] && f[12..14] == [0x08, 0x00] && f[14] == 0x45 && f[23] == 17
}

/// vm1's source port for flow `k`.
pub fn port_of(k: u32) -> u16 {
    FIRST_PORT.wrapping_add(k as u16)
}

struct Flows<'a> {
    devs: &'a mut [Device; 2],
    cfg: &'a Config,
    macs: [[u8; 6]; 2],
    /// xorshift64 state: the next flow.
    rng: u64,
    report: Report,
}

/// Runs the warm-up, then measures for `cfg.duration`, over two connected devices.
pub fn run(devs: &mut [Device; 2], cfg: &Config) -> Result<Report, Error> {
    if !(1..=MAX_FLOWS).contains(&cfg.flows) {
        return Err(Error(format!("{} flows: outside 1..={MAX_FLOWS}", cfg.flows)));
    }
    let macs = [cfg.vm1.mac, cfg.vm2.mac];
    let mut f = Flows { devs, cfg, macs, rng: 0x9e37_79b9_7f4a_7c15, report: Report::default() };
    f.refill();
    let warm = f.run_for(cfg.warmup)?;
    if warm.received[1] == 0 {
        return Err(Error(format!(
            "nothing reached vm2 in the warm-up ({:?}): is the switch forwarding between the two sockets?",
            cfg.warmup
        )));
    }
    let t0 = Instant::now();
    let mut report = f.run_for(cfg.duration)?;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

impl Flows<'_> {
    /// vm1 sends a new population: `inflight` frames, each of a flow picked at random.
    fn refill(&mut self) {
        let mut template = frame::build(self.cfg.vm1, self.cfg.vm2, Dir::There, self.cfg.frame_len);
        template[36..38].copy_from_slice(&SERVER_PORT.to_be_bytes());
        for _ in 0..self.cfg.inflight {
            let port = self.take_port();
            template[34..36].copy_from_slice(&port.to_be_bytes());
            if !self.devs[0].queue_tx(template.len(), |buf| buf.copy_from_slice(&template[..buf.len()])) {
                self.report.tx_full += 1;
            }
        }
        self.devs[0].flush_tx();
    }

    fn take_port(&mut self) -> u16 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        port_of((self.rng % u64::from(self.cfg.flows)) as u32)
    }

    /// Forwards for `d`; returns what was counted meanwhile.
    fn run_for(&mut self, d: Duration) -> Result<Report, Error> {
        self.report = Report::default();
        let start = Instant::now();
        let mut last_rx = start;
        loop {
            let got = self.forward(0) + self.forward(1);
            let now = Instant::now();
            if got > 0 {
                last_rx = now;
            } else if now - last_rx >= REFILL_AFTER {
                self.report.refills += 1;
                if self.report.refills > 100 && self.report.received == [0, 0] {
                    return Err(Error("the switch forwards nothing (100 populations lost)".into()));
                }
                self.devs[0].reclaim_tx();
                self.devs[1].reclaim_tx();
                self.refill();
                last_rx = now;
            }
            if now - start >= d {
                return Ok(std::mem::take(&mut self.report));
            }
        }
    }

    /// One poll of guest `i`'s receive ring: answers what it got; how many of its frames were
    /// ours (strays do not keep a lost population from being sent anew).
    fn forward(&mut self, i: usize) -> usize {
        let mut n = 0;
        let mut ours = 0;
        let mut queued = 0;
        while n < BURST {
            let Some(r) = self.devs[i].poll_rx() else { break };
            n += 1;
            if is_ours(self.devs[i].frame(&r), &self.macs[i]) {
                self.report.received[i] += 1;
                ours += 1;
                let port = if i == 0 { Some(self.take_port()) } else { None };
                let sent = self.devs[i].queue_reply(&r, |f| {
                    swap5(f);
                    if let Some(p) = port {
                        f[34..36].copy_from_slice(&p.to_be_bytes());
                    }
                });
                match sent {
                    true => queued += 1,
                    false => self.report.tx_full += 1,
                }
            } else {
                self.report.stray += 1;
            }
            self.devs[i].recycle_later(r);
        }
        if n > 0 {
            self.devs[i].flush_rx();
        }
        if queued > 0 {
            self.devs[i].flush_tx();
        }
        ours
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM1: Station = Station { mac: [2, 0, 0, 0, 0, 1], ip: [198, 18, 0, 1] };
    const VM2: Station = Station { mac: [2, 0, 0, 0, 0, 2], ip: [198, 18, 0, 2] };

    #[test]
    fn the_answer_swaps_macs_addresses_and_ports_and_keeps_the_checksum() {
        let mut f = frame::build(VM1, VM2, Dir::There, 60);
        f[34..36].copy_from_slice(&port_of(7).to_be_bytes());
        let mut answer = f.clone();
        swap5(&mut answer);
        assert_eq!(answer, {
            let mut g = frame::build(VM2, VM1, Dir::There, 60);
            g[36..38].copy_from_slice(&port_of(7).to_be_bytes());
            g
        });
        assert_eq!(frame::ipv4_checksum(&answer[14..34]).to_be_bytes(), answer[24..26]);
        swap5(&mut answer);
        assert_eq!(answer, f, "twice is the frame itself");
    }

    #[test]
    fn only_our_udp_frames_to_us_are_answered() {
        let f = frame::build(VM1, VM2, Dir::There, 60);
        assert!(is_ours(&f, &VM2.mac));
        assert!(!is_ours(&f, &VM1.mac), "to the other guest");
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!is_ours(&arp, &VM2.mac));
        let mut tcp = f.clone();
        tcp[23] = 6;
        assert!(!is_ours(&tcp, &VM2.mac));
        assert!(!is_ours(&f[..40], &VM2.mac), "too short to hold the ports");
    }

    #[test]
    fn flows_cover_every_port_from_the_first() {
        assert_eq!(port_of(0), FIRST_PORT);
        assert_eq!(port_of(MAX_FLOWS - 1), u16::MAX);
    }
}

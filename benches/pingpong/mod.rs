//! The core of `vhost-pingpong`: two guests (vhost-user frontends, no VM) on a switch
//! (the vhost-user backend), one frame in flight, every round trip timed.
//!
//! A round trip: t0; vm1 sends a frame to vm2; busy-poll vm2's receive ring until it arrives
//! (t1); vm2 sends the reply (addresses swapped); busy-poll vm1's receive ring until it
//! arrives (t2). Samples: t1 - t0 (vm1 -> vm2), t2 - t1 (vm2 -> vm1), t2 - t0 (the round
//! trip). One thread, no system call in the loop but the kicks a device asks for (it clears
//! `VRING_USED_F_NO_NOTIFY`), as a polling guest driver does. A frame that does not come
//! within the timeout is counted lost and the round trip starts again with a new sequence
//! number (a late copy of the old one is then a stray, ignored).

pub mod args;
pub mod device;
pub mod frame;
pub mod ring;
pub mod stats;

use std::fmt;
use std::time::{Duration, Instant};

use device::{Device, Received};
use frame::{Dir, Station};

/// Tries at the first frame of each direction before giving up (a switch may drop frames
/// until its port is up).
const FIRST_TRIES: u32 = 5;
/// Timeouts in a row (after the first frames) that end the run: the switch stopped.
const MAX_LOST_IN_A_ROW: u32 = 10;
/// Polls between two looks at the clock while waiting.
const POLLS_PER_CLOCK: u32 = 64;

/// What went wrong, said for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// What to measure.
#[derive(Clone, Debug)]
pub struct Config {
    /// The guest behind the first socket (sends first).
    pub vm1: Station,
    /// The guest behind the second socket (replies).
    pub vm2: Station,
    /// Frame length on the wire, without FCS (60 for RFC 2544's 64).
    pub frame_len: usize,
    /// Round trips measured.
    pub count: usize,
    /// Round trips run first and not recorded.
    pub warmup: usize,
    /// How long to wait for each frame before counting it lost.
    pub timeout: Duration,
}

/// The measured samples (nanoseconds, one per completed round trip, in order) and losses.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// vm1 -> vm2.
    pub there: Vec<u64>,
    /// vm2 -> vm1.
    pub back: Vec<u64>,
    /// Round trips.
    pub rtt: Vec<u64>,
    /// Frames lost while measuring, per direction (vm1 -> vm2, vm2 -> vm1).
    pub lost: [u64; 2],
    /// Frames lost during the warm-up.
    pub warmup_lost: u64,
    /// Frames received that were not the one awaited (late copies, floods, ARP...).
    pub stray: u64,
}

enum Outcome {
    /// (t1 - t0, t2 - t1) in nanoseconds.
    Done(u64, u64),
    Lost(Dir),
}

struct PingPong<'a> {
    devs: &'a mut [Device; 2],
    /// The frame each guest sends (vm1's, vm2's), the sequence number patched in.
    frames: [Vec<u8>; 2],
    /// Each guest's MAC (what it accepts).
    macs: [[u8; 6]; 2],
    timeout: Duration,
    seq: u64,
    stray: u64,
}

/// Runs the warm-up then `cfg.count` round trips over two connected devices (vm1, vm2).
pub fn run(devs: &mut [Device; 2], cfg: &Config) -> Result<Samples, Error> {
    let mut pp = PingPong {
        frames: [
            frame::build(cfg.vm1, cfg.vm2, Dir::There, cfg.frame_len),
            frame::build(cfg.vm2, cfg.vm1, Dir::Back, cfg.frame_len),
        ],
        macs: [cfg.vm1.mac, cfg.vm2.mac],
        timeout: cfg.timeout,
        seq: 0,
        stray: 0,
        devs,
    };
    let mut s = Samples {
        there: Vec::with_capacity(cfg.count),
        back: Vec::with_capacity(cfg.count),
        rtt: Vec::with_capacity(cfg.count),
        ..Samples::default()
    };
    let mut guard = LossGuard::default();
    let mut warm = 0;
    while warm < cfg.warmup {
        let out = pp.round_trip()?;
        guard.note(&pp, &out)?;
        match out {
            Outcome::Done(..) => warm += 1,
            Outcome::Lost(_) => s.warmup_lost += 1,
        }
    }
    while s.rtt.len() < cfg.count {
        let out = pp.round_trip()?;
        guard.note(&pp, &out)?;
        match out {
            Outcome::Done(a, b) => {
                s.there.push(a);
                s.back.push(b);
                s.rtt.push(a + b);
            }
            Outcome::Lost(d) => s.lost[d as usize] += 1,
        }
    }
    s.stray = pp.stray;
    Ok(s)
}

impl PingPong<'_> {
    fn round_trip(&mut self) -> Result<Outcome, Error> {
        self.seq += 1;
        let seq = self.seq;
        frame::set_seq(&mut self.frames[0], seq);
        frame::set_seq(&mut self.frames[1], seq);
        let t0 = Instant::now();
        self.send(Dir::There)?;
        let Some((r2, t1)) = self.wait(Dir::There, seq, t0) else {
            return Ok(self.lost(Dir::There));
        };
        self.send(Dir::Back)?;
        // Off the clock's critical path: vm2's buffer goes back while the reply travels.
        self.devs[1].recycle(r2);
        let Some((r1, t2)) = self.wait(Dir::Back, seq, t1) else {
            return Ok(self.lost(Dir::Back));
        };
        self.devs[0].recycle(r1);
        self.reclaim();
        Ok(Outcome::Done(nanos(t1 - t0), nanos(t2 - t1)))
    }

    fn lost(&mut self, d: Dir) -> Outcome {
        self.reclaim();
        Outcome::Lost(d)
    }

    fn reclaim(&mut self) {
        self.devs[0].reclaim_tx();
        self.devs[1].reclaim_tx();
    }

    fn send(&mut self, d: Dir) -> Result<(), Error> {
        let i = d as usize;
        if self.devs[i].send(&self.frames[i]) {
            return Ok(());
        }
        Err(Error(format!(
            "{}: every transmit descriptor is in flight: the switch stopped taking frames",
            self.devs[i].name()
        )))
    }

    /// Polls the receiver of direction `d` until frame `seq` arrives (its buffer and the
    /// time) or the timeout passes; anything else received is counted and given back.
    fn wait(&mut self, d: Dir, seq: u64, since: Instant) -> Option<(Received, Instant)> {
        let to = 1 - d as usize;
        let deadline = since + self.timeout;
        let mut polls = 0u32;
        loop {
            if let Some(r) = self.devs[to].poll_rx() {
                let now = Instant::now();
                if frame::parse(self.devs[to].frame(&r), &self.macs[to]) == Some((d, seq)) {
                    return Some((r, now));
                }
                self.stray += 1;
                self.devs[to].recycle(r);
                continue;
            }
            polls = polls.wrapping_add(1);
            if polls % POLLS_PER_CLOCK == 0 && Instant::now() >= deadline {
                return None;
            }
        }
    }

    fn direction(&self, d: Dir) -> String {
        let (a, b) = match d {
            Dir::There => (0, 1),
            Dir::Back => (1, 0),
        };
        format!("{} -> {}", self.devs[a].name(), self.devs[b].name())
    }
}

/// Ends a run that cannot succeed: the first frame of a direction never arrives, or the
/// switch stops forwarding altogether.
#[derive(Default)]
struct LossGuard {
    /// Whether a frame has made it in each direction.
    seen: [bool; 2],
    first_tries: [u32; 2],
    in_a_row: u32,
}

impl LossGuard {
    fn note(&mut self, pp: &PingPong<'_>, out: &Outcome) -> Result<(), Error> {
        let &Outcome::Lost(d) = out else {
            self.seen = [true, true];
            self.in_a_row = 0;
            return Ok(());
        };
        if d == Dir::Back {
            self.seen[Dir::There as usize] = true;
        }
        let i = d as usize;
        if !self.seen[i] {
            self.first_tries[i] += 1;
            if self.first_tries[i] >= FIRST_TRIES {
                return Err(Error(format!(
                    "timeout waiting for the first frame {} ({} tries of {} ms): is the switch forwarding between the two sockets?",
                    pp.direction(d),
                    FIRST_TRIES,
                    pp.timeout.as_millis()
                )));
            }
            return Ok(());
        }
        self.in_a_row += 1;
        if self.in_a_row >= MAX_LOST_IN_A_ROW {
            return Err(Error(format!(
                "{MAX_LOST_IN_A_ROW} frames in a row lost (the last {}): the switch stopped forwarding",
                pp.direction(d)
            )));
        }
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Pins this (single-threaded) process to one CPU (the tools' `--cpu`).
pub fn pin_to(cpu: usize) -> Result<(), Error> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(Error(format!("--cpu {cpu}: no such CPU")));
    }
    // SAFETY: cpu_set_t is plain data (all zero is the empty set); CPU_SET writes inside it
    // (cpu < CPU_SETSIZE checked); sched_setaffinity(0, ...) only reads the set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(Error(format!("--cpu {cpu}: sched_setaffinity: {}", std::io::Error::last_os_error())));
    }
    Ok(())
}

/// An IPv4 address as its four bytes (the tools' `--ip1`, `--ip2`).
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    s.parse::<std::net::Ipv4Addr>().ok().map(|a| a.octets())
}

/// A tool's `main`: the arguments parsed by `parse` (an error: the message and `usage`, exit
/// status 2), then `run` (an error: the message, status 1); messages start with `tool`.
pub fn tool_main<A>(
    tool: &str,
    usage: &str,
    parse: impl FnOnce(std::iter::Skip<std::env::Args>) -> Result<A, String>,
    run: impl FnOnce(&A) -> Result<(), Error>,
) -> std::process::ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{tool}: {e}\n{usage}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Both guests, on the switch's sockets `socks` (vm1's, vm2's), this thread first pinned to
/// `cpu` if given. Each connection is tried again a few times (see
/// [`Device::connect_retrying`]).
pub fn start_guests(socks: &[std::path::PathBuf; 2], cpu: Option<usize>) -> Result<[Device; 2], Error> {
    if let Some(cpu) = cpu {
        pin_to(cpu)?;
    }
    let connect = |i: usize, name| Device::connect_retrying(&socks[i], name, 5, Duration::from_millis(500));
    Ok([connect(0, "vm1")?, connect(1, "vm2")?])
}

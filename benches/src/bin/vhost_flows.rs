//! vhost-flows: many connections through a vhost-user switch at full rate. It is both guests
//! (vhost-user frontends on the switch's two sockets, no VM): each frame vm1 sends belongs to
//! one of `--flows` connections to vm2, picked at random, and vm2 answers every frame (see
//! `butterfly_benches::flows`).
//!
//! Prints one line: `flows=.. seconds=.. rx_vm1=.. rx_vm2=.. per_direction_pps=.. refills=..
//! stray=.. tx_full=.. kicks_vm1=.. kicks_vm2=.. bad_used=..`.

use std::process::ExitCode;
use std::time::Duration;

use butterfly_benches::flows::{self, Config, MAX_FLOWS};
use butterfly_benches::pingpong::args::{self, Guests};
use butterfly_benches::pingpong::{self, Error};

const USAGE: &str =
    "usage: vhost-flows --sock1 PATH --sock2 PATH [--mac1 MAC] [--mac2 MAC] [--ip1 IP] [--ip2 IP]
       [--flows N] [--inflight N] [--seconds S] [--warmup S] [--frame BYTES] [--cpu N]
  --flows     connections from vm1 to vm2, one picked at random per frame (1..=64512, default 1024)
  --inflight  frames in flight between the guests (1..=768, default 512)
  --seconds   measured (default 5), after --warmup seconds (default 2, at least 0.2) not counted
  --frame     frame size including the 4-byte FCS, as RFC 2544 (64..=1518, default 64)";

/// The most frames in flight: both guests' rings (1024) keep room for a burst.
const MAX_INFLIGHT: usize = 768;
/// Frames in flight by default: as many as pvp-compare's testpmd guests (16 bursts of 32).
const DEFAULT_INFLIGHT: usize = 512;
/// The shortest warm-up: a few times the wait before a lost population is sent anew.
const MIN_WARMUP: Duration = Duration::from_millis(200);

struct Args {
    guests: Guests,
    cfg: Config,
}

fn main() -> ExitCode {
    pingpong::tool_main("vhost-flows", USAGE, parse_args, run)
}

fn run(args: &Args) -> Result<(), Error> {
    let mut devs = pingpong::start_guests(&args.guests.socks, args.guests.cpu)?;
    let r = flows::run(&mut devs, &args.cfg)?;
    println!(
        "flows={} seconds={:.3} rx_vm1={} rx_vm2={} per_direction_pps={:.0} refills={} stray={} tx_full={} kicks_vm1={} kicks_vm2={} bad_used={}",
        args.cfg.flows,
        r.seconds,
        r.received[0],
        r.received[1],
        r.per_direction(),
        r.refills,
        r.stray,
        r.tx_full,
        devs[0].kicks,
        devs[1].kicks,
        devs[0].bad_used + devs[1].bad_used
    );
    Ok(())
}

fn parse_args(it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut flows, mut inflight) = (1024u32, DEFAULT_INFLIGHT);
    let (mut seconds, mut warmup) = (5f64, 2f64);
    let guests = args::parse(it, |flag, val| {
        let bad = |what: &str| args::bad(flag, val, what);
        match flag {
            "--flows" => flows = val.parse().map_err(|_| bad("a count"))?,
            "--inflight" => inflight = val.parse().map_err(|_| bad("a count"))?,
            "--seconds" => seconds = val.parse().map_err(|_| bad("seconds"))?,
            "--warmup" => warmup = val.parse().map_err(|_| bad("seconds"))?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !(1..=MAX_FLOWS).contains(&flows) {
        return Err(format!("--flows {flows}: outside 1..={MAX_FLOWS}"));
    }
    if !(1..=MAX_INFLIGHT).contains(&inflight) {
        return Err(format!("--inflight {inflight}: outside 1..={MAX_INFLIGHT}"));
    }
    let secs = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).map_err(|_| format!("{what} {s}: not a duration"))
    };
    let (duration, warmup) = (secs(seconds, "--seconds")?, secs(warmup, "--warmup")?);
    if duration.is_zero() {
        return Err("--seconds must be above 0".into());
    }
    // The warm-up is where a switch that forwards nothing is told apart from a slow one.
    if warmup < MIN_WARMUP {
        return Err(format!("--warmup {}: at least {} s", warmup.as_secs_f64(), MIN_WARMUP.as_secs_f64()));
    }
    let (vm1, vm2, frame_len) = (guests.vm1, guests.vm2, guests.frame_len);
    let cfg = Config { vm1, vm2, flows, inflight, frame_len, warmup, duration };
    Ok(Args { guests, cfg })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_overrides() {
        let a = args("--sock1 /a --sock2 /b").unwrap();
        assert_eq!((a.cfg.flows, a.cfg.inflight, a.cfg.frame_len), (1024, 512, 60));
        assert_eq!((a.cfg.duration, a.cfg.warmup), (Duration::from_secs(5), Duration::from_secs(2)));
        let a = args("--sock1 /a --sock2 /b --flows 60000 --inflight 64 --seconds 0.5 --cpu 1").unwrap();
        assert_eq!(
            (a.cfg.flows, a.cfg.inflight, a.cfg.duration, a.guests.cpu),
            (60000, 64, Duration::from_millis(500), Some(1))
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            "--sock1 /a",
            "--sock1 /a --sock2 /b --flows 0",
            "--sock1 /a --sock2 /b --flows 64513",
            "--sock1 /a --sock2 /b --inflight 769",
            "--sock1 /a --sock2 /b --seconds 0",
            "--sock1 /a --sock2 /b --seconds -1",
            "--sock1 /a --sock2 /b --seconds 1e30",
            "--sock1 /a --sock2 /b --warmup 0",
            "--sock1 /a --sock2 /b --frame 63",
            "--sock1 /a --sock2 /b --bogus 1",
        ] {
            assert!(args(bad).is_err(), "{bad} accepted");
        }
    }
}

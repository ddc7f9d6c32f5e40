//! vhost-pingpong: guest-to-guest latency through a vhost-user switch, every round trip
//! timed. It is both guests (vhost-user frontends on the switch's two sockets, no VM): vm1
//! sends one frame to vm2, vm2 answers, one frame in flight, busy polling on one CPU.
//!
//! Prints one line per series (vm1 -> vm2, vm2 -> vm1, round trip), times in µs:
//! `rtt_us count=.. lost=.. min=.. p50=.. p90=.. p99=.. p999=.. max=.. mean=..`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use butterfly_benches::pingpong::args::{self, Guests};
use butterfly_benches::pingpong::device::Device;
use butterfly_benches::pingpong::stats::Summary;
use butterfly_benches::pingpong::{self, Config, Error, Samples};

const USAGE: &str =
    "usage: vhost-pingpong --sock1 PATH --sock2 PATH [--mac1 MAC] [--mac2 MAC] [--ip1 IP] [--ip2 IP]
       [--count N] [--warmup N] [--frame BYTES] [--cpu N] [--timeout-ms MS] [--hist FILE]
  --frame   frame size including the 4-byte FCS, as RFC 2544 (64..=1518, default 64)
  --count   round trips measured (default 100000), after --warmup ones (default 1000)
  --timeout-ms  wait for each frame before counting it lost and sending anew (default 1000)
  --hist    write a histogram (100 ns buckets) of the three series to FILE";

struct Args {
    guests: Guests,
    cfg: Config,
    hist: Option<PathBuf>,
}

fn main() -> ExitCode {
    pingpong::tool_main("vhost-pingpong", USAGE, parse_args, run)
}

fn run(args: &Args) -> Result<(), Error> {
    let mut devs = pingpong::start_guests(&args.guests.socks, args.guests.cpu)?;
    let mut s = pingpong::run(&mut devs, &args.cfg)?;
    if let Some(path) = &args.hist {
        write_hist(path, &s).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    }
    report(&mut s, &devs);
    Ok(())
}

fn report(s: &mut Samples, devs: &[Device; 2]) {
    let lost = s.lost;
    println!("vm1_to_vm2_us {}", Summary::of(&mut s.there, lost[0]));
    println!("vm2_to_vm1_us {}", Summary::of(&mut s.back, lost[1]));
    println!("rtt_us {}", Summary::of(&mut s.rtt, lost[0] + lost[1]));
    println!(
        "info warmup_lost={} stray={} kicks_vm1={} kicks_vm2={} bad_used={}",
        s.warmup_lost,
        s.stray,
        devs[0].kicks,
        devs[1].kicks,
        devs[0].bad_used + devs[1].bad_used
    );
}

/// `bucket_us vm1_to_vm2 vm2_to_vm1 rtt`: how many samples fall in each 100 ns bucket (lower
/// bound given), empty buckets left out.
fn write_hist(path: &std::path::Path, s: &Samples) -> std::io::Result<()> {
    const BUCKET_NS: u64 = 100;
    let mut rows = std::collections::BTreeMap::<u64, [u64; 3]>::new();
    for (col, series) in [&s.there, &s.back, &s.rtt].into_iter().enumerate() {
        for &ns in series {
            rows.entry(ns / BUCKET_NS).or_default()[col] += 1;
        }
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(f, "# bucket_us vm1_to_vm2 vm2_to_vm1 rtt")?;
    for (b, c) in rows {
        writeln!(f, "{:.1} {} {} {}", (b * BUCKET_NS) as f64 / 1000.0, c[0], c[1], c[2])?;
    }
    f.flush()
}

fn parse_args(it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut count, mut warmup, mut timeout_ms, mut hist) = (100_000usize, 1000usize, 1000u64, None);
    let guests = args::parse(it, |flag, val| {
        let bad = |what: &str| args::bad(flag, val, what);
        match flag {
            "--count" => count = val.parse().map_err(|_| bad("a count"))?,
            "--warmup" => warmup = val.parse().map_err(|_| bad("a count"))?,
            "--timeout-ms" => timeout_ms = val.parse().map_err(|_| bad("milliseconds"))?,
            "--hist" => hist = Some(PathBuf::from(val)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if count == 0 || timeout_ms == 0 {
        return Err("--count and --timeout-ms must be above 0".into());
    }
    let cfg = Config {
        vm1: guests.vm1,
        vm2: guests.vm2,
        frame_len: guests.frame_len,
        count,
        warmup,
        timeout: Duration::from_millis(timeout_ms),
    };
    Ok(Args { guests, cfg, hist })
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
        assert_eq!((a.cfg.count, a.cfg.warmup, a.cfg.frame_len), (100_000, 1000, 60));
        assert_eq!(a.cfg.vm2.ip, [198, 18, 0, 2]);
        let a = args("--sock1 /a --sock2 /b --frame 1518 --ip1 10.0.0.1 --mac2 02:00:00:00:00:09 --cpu 1")
            .unwrap();
        assert_eq!(
            (a.cfg.frame_len, a.cfg.vm1.ip, a.cfg.vm2.mac[5], a.guests.cpu),
            (1514, [10, 0, 0, 1], 9, Some(1))
        );
    }

    #[test]
    fn the_histogram_counts_each_series_per_bucket() {
        let path = std::env::temp_dir().join(format!("vhost-pingpong-hist-{}", std::process::id()));
        let s = Samples {
            there: vec![450, 520],
            back: vec![480, 530],
            rtt: vec![930, 1050],
            ..Samples::default()
        };
        write_hist(&path, &s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows, ["0.4 1 1 0", "0.5 1 1 0", "0.9 0 0 1", "1.0 0 0 1"]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(args("--sock1 /a").is_err());
        assert!(args("--sock1 /a --sock2 /b --frame 63").is_err());
        assert!(args("--sock1 /a --sock2 /b --frame 1519").is_err());
        assert!(args("--sock1 /a --sock2 /b --ip1 1.2.3").is_err());
        assert!(args("--sock1 /a --sock2 /b --count").is_err());
        assert!(args("--sock1 /a --sock2 /b --bogus 1").is_err());
    }
}

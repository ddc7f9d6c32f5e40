//! cross-core-probe: how long one cache line takes to go from one CPU to another and back
//! (see `butterfly_benches::probe`). Prints `rtt_ns=N`.

use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: cross-core-probe CPU_A CPU_B [MILLISECONDS (default 200)]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [a, b] => a.parse().ok().zip(b.parse().ok()).map(|(a, b)| (a, b, 200)),
        [a, b, ms] => a.parse().ok().zip(b.parse().ok()).zip(ms.parse().ok()).map(|((a, b), ms)| (a, b, ms)),
        _ => None,
    };
    let Some((a, b, ms)) = parsed else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    match butterfly_benches::probe::round_trip_ns(a, b, Duration::from_millis(ms)) {
        Ok(ns) => {
            println!("rtt_ns={ns:.0}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cross-core-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

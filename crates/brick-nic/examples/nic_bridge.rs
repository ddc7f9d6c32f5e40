//! Bridges two endpoints through a graph: `NIC → Patch ← NIC`.
//!
//! ```text
//! cargo run -p brick-nic --example nic_bridge -- afpacket:eth1 tap:br-tap0 [SECONDS]
//! cargo run -p brick-nic --example nic_bridge -- pcap:in.pcap pcap-out:out.pcap
//! ```
//! Endpoints: `afpacket:IFNAME`, `tap:NAME` (created), `tap-attach:NAME`, `pcap:FILE`
//! (replayed once), `pcap-out:FILE` (recorded). Runs for SECONDS (default 5) and prints
//! each endpoint's counters.

use std::time::Duration;

use brick_core::{Brick, Graph, PacketPool, PoolConfig, Runner, RunnerConfig, Side};
use brick_nic::*;

fn endpoint(
    spec: &str,
    pool: &PacketPool,
) -> Result<(Box<dyn Brick>, std::sync::Arc<NicCounters>), NicError> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    Ok(match kind {
        "afpacket" => {
            let b = AfPacketNic::open(arg, AfPacketConfig::default(), pool.clone())?;
            let c = b.counters();
            (Box::new(b), c)
        }
        "tap" | "tap-attach" => {
            let cfg = TapConfig::default();
            let b = if kind == "tap" {
                TapNic::create(arg, cfg, pool.clone())?
            } else {
                TapNic::attach(arg, cfg, pool.clone())?
            };
            let c = b.counters();
            (Box::new(b), c)
        }
        "pcap" => {
            let b = PcapSource::open(arg, PcapSourceConfig::default(), pool.clone())?;
            let c = b.counters();
            (Box::new(b), c)
        }
        "pcap-out" => {
            // A sink whose port faces east, like a NIC, so it can sit on the patch.
            let b = PcapSink::create_on(arg, Side::East)?;
            let c = b.counters();
            (Box::new(b), c)
        }
        _ => return Err(NicError::Config(format!("unknown endpoint {spec:?}"))),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: nic_bridge ENDPOINT ENDPOINT [SECONDS]".into());
    }
    let secs: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let pool = PacketPool::new(PoolConfig { count: 4096, ..PoolConfig::default() })?;
    let mut g = Graph::new("bridge");
    let patch = g.add("patch", Patch)?;
    let mut counters = Vec::new();
    for (i, spec) in args[..2].iter().enumerate() {
        let (brick, c) = endpoint(spec, &pool)?;
        let id = g.add_boxed(format!("end{i}"), brick)?;
        g.link(id, patch)?;
        counters.push((spec.clone(), c));
    }
    let runner = Runner::spawn(g, RunnerConfig::default())?;
    std::thread::sleep(Duration::from_secs(secs));
    let g = runner.stop()?;
    for (spec, c) in &counters {
        println!("{spec}: {:?}", c.snapshot());
    }
    print!("{}", g.to_dot());
    Ok(())
}

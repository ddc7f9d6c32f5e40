//! testpmd-style io forwarding between DPDK ports 0 and 1 through a brick graph
//! (DpdkNic → Patch ← DpdkNic), on the EAL main lcore. Prints the received packet rate.
//!
//! ```text
//! cargo run --release -p brick-nic --features dpdk --example dpdk_fwd -- 5 \
//!     -l 0 --no-huge --no-pci -m 256 --file-prefix fwd --vdev net_null0 --vdev net_null1
//! ```
//! First argument: seconds to run; the rest: EAL arguments. `BRICK_ZERO_COPY=0` in the
//! environment copies every frame into the packet pool and back (the zero-copy path is the
//! default). `BRICK_THREAD=1` runs the graph on a thread of ours (as a daemon's `Runner`
//! does) instead of the EAL main lcore, pinned to the same CPU; `BRICK_REGISTER=0` keeps that
//! thread unknown to the EAL (no mempool cache).

use std::time::{Duration, Instant};

use brick_core::{Graph, PacketPool, PoolConfig};
use brick_nic::{DpdkConfig, DpdkNic, Eal, Patch, PortSpec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().ok_or("usage: dpdk_fwd SECONDS EAL-ARGS...")?.parse()?;
    let eal_args: Vec<String> = args.collect();
    let eal = Eal::init(&eal_args)?;
    let pool = PacketPool::new(PoolConfig { count: 4096, ..PoolConfig::default() })?;
    let mut g = Graph::new("fwd");
    let flag = |name: &str, default: bool| std::env::var(name).map_or(default, |v| v != "0");
    let zero_copy = flag("BRICK_ZERO_COPY", true);
    let register_thread = flag("BRICK_REGISTER", true);
    let mut counters = Vec::new();
    let mut ids = Vec::new();
    for port in 0..2u16 {
        let cfg = DpdkConfig {
            port: PortSpec::Id(port),
            mbufs: 8191,
            zero_copy,
            register_thread,
            ..DpdkConfig::default()
        };
        let nic = DpdkNic::open(eal, cfg, pool.clone())?;
        counters.push(nic.counters());
        ids.push(g.add(format!("port{port}"), nic)?);
    }
    let patch = g.add("patch", Patch)?;
    g.link(ids[0], patch)?;
    g.link(ids[1], patch)?;
    if flag("BRICK_THREAD", false) {
        // The EAL pinned this thread; the worker takes over its CPU and this one waits.
        let cpus = first_allowed_cpu();
        return std::thread::spawn(move || {
            if let Some(cpu) = cpus {
                let _ = brick_core::pin_to_cpu(cpu);
            }
            run(g, counters, secs).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "worker panicked")?
        .map_err(Into::into);
    }
    run(g, counters, secs)
}

/// The first CPU this thread may run on.
fn first_allowed_cpu() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data filled by the call for the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer and size.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET reads the set filled above.
    (0..libc::CPU_SETSIZE as usize).find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
}

fn run(
    mut g: Graph,
    counters: Vec<std::sync::Arc<brick_nic::NicCounters>>,
    secs: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    // Warm up, then measure.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        g.poll_all();
    }
    let rx0: u64 = counters.iter().map(|c| c.rx_packets.get()).sum();
    let tx0: u64 = counters.iter().map(|c| c.tx_packets.get()).sum();
    let t0 = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut rounds = 0u64;
    while t0.elapsed() < limit {
        for _ in 0..256 {
            g.poll_all();
        }
        rounds += 256;
    }
    let dt = t0.elapsed().as_secs_f64();
    let rx = counters.iter().map(|c| c.rx_packets.get()).sum::<u64>() - rx0;
    let tx = counters.iter().map(|c| c.tx_packets.get()).sum::<u64>() - tx0;
    let drops: u64 = counters.iter().map(|c| c.snapshot().brick_drops()).sum();
    println!(
        "brick-nic fwd: rx {:.2} Mpps, tx {:.2} Mpps, {:.1} ns/pkt, drops {drops}, rounds {rounds}",
        rx as f64 / dt / 1e6,
        tx as f64 / dt / 1e6,
        dt * 1e9 / rx.max(1) as f64
    );
    println!("RX_PPS={:.0}", rx as f64 / dt);
    Ok(())
}

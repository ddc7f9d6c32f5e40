//! A vhost-user NIC whose graph sends every frame back to the guest (MAC addresses swapped).
//! With `threads` > 1, the NIC offers that many queue pairs and each is served by its own
//! graph thread (`VhostUserConfig::threads`, `VhostUserNic::take_siblings`).
//!
//! ```text
//! cargo run -p brick-vhost --example vhost_echo -- /tmp/echo.sock [seconds] [server|client] [threads]
//! dpdk-testpmd -l 0,1 --no-pci --no-huge -m 256 --file-prefix echo \
//!     --vdev virtio_user0,path=/tmp/echo.sock -- --forward-mode=io --tx-first --stats-period 1
//! (with threads = 2: --vdev virtio_user0,path=/tmp/echo.sock,queues=2 and --rxq=2 --txq=2)
//! ```
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use brick_core::{Brick, Burst, Graph, Output, PacketPool, PortId, Runner, RunnerConfig, Side};
use brick_vhost::{VhostUserConfig, VhostUserNic};

/// Sends every packet back where it came from, swapping the Ethernet addresses.
struct Echo;

impl Brick for Echo {
    fn kind(&self) -> &'static str {
        "echo"
    }
    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for mut p in pkts.drain() {
            if p.len() >= 12 {
                let d = p.data_mut();
                for i in 0..6 {
                    d.swap(i, i + 6);
                }
            }
            out.emit(side, port, p);
        }
    }
}

fn echo_graph(nic: VhostUserNic, name: &str) -> Result<Runner, Box<dyn std::error::Error>> {
    let mut g = Graph::new(name);
    let echo = g.add("echo", Echo)?;
    let vm = g.add("vm", nic)?;
    g.link(echo, vm)?;
    Ok(Runner::spawn(g, RunnerConfig::default())?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/echo.sock".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let client = args.next().as_deref() == Some("client");
    let threads: u16 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let pool = PacketPool::with_count(8192)?;
    let mut cfg = VhostUserConfig::new("echo0", [0x52, 0x54, 0, 0, 0, 1], pool);
    cfg.queue_pairs = threads;
    cfg.threads = threads;
    let mut nic = if client { VhostUserNic::client(&path, cfg)? } else { VhostUserNic::server(&path, cfg)? };
    let siblings = nic.take_siblings()?;
    let stats = nic.stats();
    let mut all_stats = vec![Arc::clone(&stats)];
    all_stats.extend(siblings.iter().map(VhostUserNic::stats));
    // Thread 0's brick last: dropping it ends the connection for its siblings.
    let mut runners = Vec::new();
    for (t, sibling) in siblings.into_iter().enumerate() {
        runners.push(echo_graph(sibling, &format!("echo{}", t + 1))?);
    }
    runners.push(echo_graph(nic, "echo0")?);
    println!("listening on {path} for {secs} s, {threads} graph thread(s)");
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        let per_thread: Vec<String> =
            all_stats.iter().map(|s| format!("{}/{}", s.tx_packets.get(), s.rx_packets.get())).collect();
        println!(
            "connected={} guest-tx/rx per thread={} drops(ring full)={} notifications={} wakeups={}",
            stats.connected.load(Ordering::Relaxed),
            per_thread.join(" "),
            stats.drop_count(0),
            stats.guest_notifications.get(),
            stats.wakeups.get(),
        );
    }
    for r in runners {
        r.stop()?;
    }
    Ok(())
}

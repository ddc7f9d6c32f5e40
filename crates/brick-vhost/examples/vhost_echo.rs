//! A vhost-user NIC whose graph sends every frame back to the guest (MAC addresses swapped).
//!
//! ```text
//! cargo run -p brick-vhost --example vhost_echo -- /tmp/echo.sock [seconds] [client]
//! dpdk-testpmd -l 0,1 --no-pci --no-huge -m 256 --file-prefix echo \
//!     --vdev virtio_user0,path=/tmp/echo.sock -- --forward-mode=io --tx-first --stats-period 1
//! ```
use std::sync::atomic::Ordering;
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "/tmp/echo.sock".into());
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let client = args.next().as_deref() == Some("client");
    let pool = PacketPool::with_count(8192)?;
    let cfg = VhostUserConfig::new("echo0", [0x52, 0x54, 0, 0, 0, 1], pool);
    let nic = if client { VhostUserNic::client(&path, cfg)? } else { VhostUserNic::server(&path, cfg)? };
    let stats = nic.stats();
    let mut g = Graph::new("echo");
    let echo = g.add("echo", Echo)?;
    let vm = g.add("vm0", nic)?;
    g.link(echo, vm)?;
    let runner = Runner::spawn(g, RunnerConfig::default())?;
    println!("listening on {path} for {secs} s");
    for _ in 0..secs {
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "connected={} guest-tx={} guest-rx={} drops(ring full)={} notifications={} wakeups={}",
            stats.connected.load(Ordering::Relaxed),
            stats.tx_packets.get(),
            stats.rx_packets.get(),
            stats.drop_count(0),
            stats.guest_notifications.get(),
            stats.wakeups.get(),
        );
    }
    runner.stop()?;
    Ok(())
}

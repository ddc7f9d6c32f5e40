//! Two vhost-user NICs (server sockets) joined by a hub: the smallest guest-to-guest graph.
//!
//! ```text
//! cargo run --release -p brick-vhost --example vhost_hub -- /tmp/vm1.sock /tmp/vm2.sock [tso] [seconds]
//! ```
//! Then start two QEMU guests with `-chardev socket,id=c0,path=/tmp/vmN.sock,reconnect=1
//! -netdev vhost-user,id=n0,chardev=c0 -device virtio-net-pci,netdev=n0,vectors=0` and
//! shared memory (`-object memory-backend-memfd,...,share=on -numa node,memdev=mem`).
use std::time::Duration;

use brick_core::bricks::Hub;
use brick_core::{Graph, PacketPool, PoolConfig, Runner, RunnerConfig};
use brick_vhost::{VhostUserConfig, VhostUserNic, TSO_DATA_ROOM};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let s1 = args.first().cloned().unwrap_or_else(|| "/tmp/vm1.sock".into());
    let s2 = args.get(1).cloned().unwrap_or_else(|| "/tmp/vm2.sock".into());
    let tso = args.iter().any(|a| a == "tso");
    let secs: u64 = args.iter().filter_map(|a| a.parse().ok()).next().unwrap_or(3600);
    let data_room = if tso { TSO_DATA_ROOM } else { 2048 };
    let pool = PacketPool::new(PoolConfig { count: 4096, headroom: 128, data_room })?;
    let mut g = Graph::new("hub");
    let hub = g.add("hub", Hub::new(pool.clone()))?;
    let mut stats = Vec::new();
    for (i, s) in [s1, s2].iter().enumerate() {
        let mut cfg =
            VhostUserConfig::new(format!("vm{}", i + 1), [0x52, 0x54, 0, 0, 0, i as u8 + 1], pool.clone());
        cfg.offloads.tso = tso;
        let nic = VhostUserNic::server(s, cfg)?;
        stats.push(nic.stats());
        let id = g.add(format!("vm{}", i + 1), nic)?;
        g.link(hub, id)?;
    }
    let runner = Runner::spawn(g, RunnerConfig::default())?;
    println!("hub up (tso={tso}) for {secs} s");
    std::thread::sleep(Duration::from_secs(secs));
    for (i, s) in stats.iter().enumerate() {
        println!(
            "vm{}: guest-tx {} pkts, guest-rx {} pkts, interrupts {}",
            i + 1,
            s.tx_packets.get(),
            s.rx_packets.get(),
            s.guest_notifications.get()
        );
    }
    runner.stop()?;
    Ok(())
}

//! Two real (TCG) guests connected through a graph: vhost — hub — vhost.
//!
//! brick_core's Hub stands in for brick-switch (being written in parallel); a hub floods
//! between its two ports, which is all two guests need. vm1's QEMU connects to our server
//! socket (and reconnects); vm2's QEMU listens and our NIC connects in client mode, so one
//! run covers both modes. Checked: ping, ping6, TCP transfers compared byte for byte (each
//! guest fetches the other's random 256 KiB blob over HTTP; md5 on both sides), a reset of vm1 (device reset, traffic resumes without
//! touching vm2), and a backend restart (graph and NICs dropped and recreated while both
//! guests keep running: traffic resumes with no guest reboot).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::bricks::Hub;
use brick_core::{Graph, PacketPool, Runner, RunnerConfig};
use brick_vhost::{DropReason, NicStats, VhostUserConfig, VhostUserNic};
use common::qemu::{guest_image, vmtest, Chardev, Guest, GuestSpec};
use common::TempDir;

fn backend(sock1: &Path, sock2: &Path) -> (Runner, [Arc<NicStats>; 2]) {
    let pool = PacketPool::with_count(8192).unwrap();
    let mut c1 = VhostUserConfig::new("vm1", [0x52, 0x54, 0, 0, 0, 1], pool.clone());
    c1.reconnect_interval = Duration::from_millis(200);
    let mut c2 = VhostUserConfig::new("vm2", [0x52, 0x54, 0, 0, 0, 2], pool.clone());
    c2.reconnect_interval = Duration::from_millis(200);
    let nic1 = VhostUserNic::server(sock1, c1).unwrap();
    let nic2 = VhostUserNic::client(sock2, c2).unwrap();
    let stats = [nic1.stats(), nic2.stats()];
    let mut g = Graph::new("guests");
    let hub = g.add("hub", Hub::new(pool)).unwrap();
    let v1 = g.add("vm1", nic1).unwrap();
    let v2 = g.add("vm2", nic2).unwrap();
    g.link(hub, v1).unwrap();
    g.link(hub, v2).unwrap();
    (Runner::spawn(g, RunnerConfig::default()).unwrap(), stats)
}

struct Pair {
    vm1: Guest,
    vm2: Guest,
}

impl Pair {
    /// Waits until `cond(vm1 log, vm2 log)` holds; panics with both serial tails otherwise.
    fn wait(&mut self, what: &str, timeout: Duration, cond: impl Fn(&str, &str) -> bool) {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if cond(&self.vm1.serial(), &self.vm2.serial()) {
                eprintln!("[{:>5.1}s] {what}", t.elapsed().as_secs_f32());
                return;
            }
            if !self.vm1.running() || !self.vm2.running() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what}: not reached within {timeout:?}\n{}\n{}", self.vm1.tail(30), self.vm2.tail(30));
    }
}

/// Whether every blob a guest fetched has the md5 and size its peer served.
fn fetched_ok(fetcher: &str, server: &str) -> bool {
    let sig = |l: &String| l.split(" t=").next().unwrap_or("").to_string();
    let served: Vec<String> = vmtest(server, "SRV_MD5").iter().map(sig).collect();
    let got: Vec<String> = vmtest(fetcher, "GOT_MD5").iter().map(sig).collect();
    !got.is_empty() && got.iter().all(|g| served.contains(g))
}

#[test]
fn two_guests_ping_tcp_reset_and_backend_restart() {
    let image = guest_image();
    let dir = TempDir::new("guests");
    let (sock1, sock2) = (dir.path("vm1.sock"), dir.path("vm2.sock"));
    let (runner, stats) = backend(&sock1, &sock2);
    // vm2 (QEMU server, our client) is the TCP server; vm1 sends it 256 KiB of random data.
    let vm2 = Guest::boot(
        &image,
        &dir.0,
        &GuestSpec {
            name: "vm2",
            index: 2,
            peer: 1,
            role: "server",
            extra_cmdline: "",
            netdev_extra: "",
            queues: 1,
        },
        Chardev::Server(&sock2),
    );
    let vm1 = Guest::boot(
        &image,
        &dir.0,
        &GuestSpec {
            name: "vm1",
            index: 1,
            peer: 2,
            role: "client",
            extra_cmdline: "vmtxkb=256",
            netdev_extra: "",
            queues: 1,
        },
        Chardev::Client(&sock1),
    );
    let mut p = Pair { vm1, vm2 };
    let boot = Duration::from_secs(150);
    p.wait("ping both ways", boot, |a, b| {
        !vmtest(a, "PING_OK").is_empty() && !vmtest(b, "PING_OK").is_empty()
    });
    p.wait("ping6 both ways", Duration::from_secs(60), |a, b| {
        !vmtest(a, "PING6_OK").is_empty() && !vmtest(b, "PING6_OK").is_empty()
    });
    p.wait("TCP transfers (HTTP both ways) done", Duration::from_secs(90), |a, b| {
        !vmtest(a, "GOT_MD5").is_empty() && !vmtest(b, "GOT_MD5").is_empty()
    });
    let (l1, l2) = (p.vm1.serial(), p.vm2.serial());
    assert!(
        fetched_ok(&l1, &l2) && fetched_ok(&l2, &l1),
        "TCP transfer corrupted\n{}\n{}",
        p.vm1.tail(20),
        p.vm2.tail(20)
    );
    // Debian 12's QEMU 7.2 sends SET_VRING_ENABLE before SET_FEATURES; the relay held them.
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    if qemu.as_deref().unwrap_or("").contains("version 7.") {
        assert!(stats[0].early_enables_held.load(Ordering::Relaxed) > 0, "QEMU 7 early enables not seen");
    }
    assert_eq!(
        stats[0].drop_count(DropReason::BadDescriptor as usize)
            + stats[1].drop_count(DropReason::BadDescriptor as usize),
        0
    );
    assert!(
        vmtest(&p.vm1.serial(), "PING_FAIL").is_empty() && vmtest(&p.vm2.serial(), "PING_FAIL").is_empty()
    );

    // Guest reset (device reset from the backend's point of view): vm1 reboots, pings and
    // sends a second file; vm2 is left alone.
    p.vm1.monitor("system_reset");
    p.wait("vm1 back after reset (second ping + fetch)", boot, |a, _| {
        vmtest(a, "PING_OK").len() >= 2 && vmtest(a, "GOT_MD5").len() >= 2
    });
    assert!(
        fetched_ok(&p.vm1.serial(), &p.vm2.serial()),
        "fetch after reset corrupted\n{}\n{}",
        p.vm1.tail(20),
        p.vm2.tail(20)
    );

    // Backend restart: the whole graph goes away (both connections drop) and a new one
    // takes over the same sockets. Neither guest reboots.
    p.wait("both guests idle-pinging", Duration::from_secs(30), |a, b| {
        !vmtest(a, "ALIVE_OK").is_empty() && !vmtest(b, "ALIVE_OK").is_empty()
    });
    drop(runner);
    std::thread::sleep(Duration::from_secs(2));
    let (n1, n2) = (vmtest(&p.vm1.serial(), "ALIVE").len(), vmtest(&p.vm2.serial(), "ALIVE").len());
    let (runner, stats) = backend(&sock1, &sock2);
    p.wait("traffic back after backend restart", Duration::from_secs(60), |a, b| {
        vmtest(a, "ALIVE").iter().skip(n1).any(|l| l.starts_with("_OK"))
            && vmtest(b, "ALIVE").iter().skip(n2).any(|l| l.starts_with("_OK"))
    });
    assert_eq!(vmtest(&p.vm1.serial(), "NETUP").len(), 2, "vm1 rebooted more than once");
    assert_eq!(vmtest(&p.vm2.serial(), "NETUP").len(), 1, "vm2 rebooted");
    assert!(stats.iter().all(|s| s.tx_packets.get() > 0 && s.rx_packets.get() > 0));
    drop(runner);
}

//! DPDK's virtio_user as the guest side (no VM): traffic both ways through a graph, a
//! frontend restart in server mode, and client mode against a waiting frontend.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use brick_core::{Graph, PacketPool, Runner, RunnerConfig};
use brick_vhost::{NicStats, VhostUserConfig, VhostUserNic};
use common::{last_rx_packets, wait_until, Echo, TempDir, TestPmd};

fn echo_graph(nic: VhostUserNic) -> Runner {
    let mut g = Graph::new("echo");
    let echo = g.add("echo", Echo).unwrap();
    let vm = g.add("vm", nic).unwrap();
    g.link(echo, vm).unwrap();
    Runner::spawn(g, RunnerConfig::default()).unwrap()
}

fn cfg(name: &str) -> VhostUserConfig {
    let mut c = VhostUserConfig::new(name, [0x52, 0x54, 0, 0, 0, 9], PacketPool::with_count(4096).unwrap());
    c.reconnect_interval = Duration::from_millis(100);
    c
}

/// Waits for traffic both ways and returns (tx, rx) seen by the NIC.
fn expect_traffic(stats: &NicStats, since: (u64, u64), what: &str, pmd: &TestPmd) -> (u64, u64) {
    let ok = wait_until(Duration::from_secs(20), || {
        stats.tx_packets.get() > since.0 + 1000 && stats.rx_packets.get() > since.1 + 1000
    });
    assert!(
        ok,
        "{what}: no traffic through the brick (guest tx {} rx {}, connected {}, drops {:?})\ntestpmd output tail:\n{}",
        stats.tx_packets.get(),
        stats.rx_packets.get(),
        stats.connected.load(Ordering::Relaxed),
        (0..brick_vhost::DROP_REASONS.len()).map(|i| stats.drop_count(i)).collect::<Vec<_>>(),
        tail(&pmd.output(), 25)
    );
    (stats.tx_packets.get(), stats.rx_packets.get())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn server_mode_traffic_and_frontend_restart() {
    let dir = TempDir::new("vu-server");
    let sock = dir.path("vm.sock");
    let nic = VhostUserNic::server(&sock, cfg("vu-server")).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);

    let pmd = TestPmd::start(&sock, false, &dir.path("pmd1.log"), "s1");
    expect_traffic(&stats, (0, 0), "first frontend", &pmd);
    let out = pmd.stop();
    assert!(last_rx_packets(&out) > 1000, "testpmd received too little:\n{}", tail(&out, 25));
    assert!(
        wait_until(Duration::from_secs(5), || !stats.connected.load(Ordering::Relaxed)),
        "disconnect not seen"
    );
    let acked = stats.acked_features.load(Ordering::Relaxed);
    assert_eq!(acked, 0, "features reset on disconnect");
    let seen = (stats.tx_packets.get(), stats.rx_packets.get());

    // The frontend comes back (a QEMU restart): same socket, traffic again.
    let pmd = TestPmd::start(&sock, false, &dir.path("pmd2.log"), "s2");
    expect_traffic(&stats, seen, "second frontend", &pmd);
    drop(pmd);
    assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
    assert_eq!(stats.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);

    // Tearing the graph down removes the socket.
    drop(runner);
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn client_mode_connects_to_a_waiting_frontend() {
    // Backend restarts in client mode are tested with QEMU (tests/guest_pair.rs): DPDK
    // 22.11's virtio_user server mode only re-accepts on a link-status read, which testpmd
    // does not do on its own.
    let dir = TempDir::new("vu-client");
    let sock = dir.path("vm.sock");
    // virtio_user is the server (like QEMU with server=on); it waits for us.
    let pmd = TestPmd::start(&sock, true, &dir.path("pmd.log"), "c");
    assert!(wait_until(Duration::from_secs(10), || sock.exists()), "testpmd did not create its socket");
    let nic = VhostUserNic::client(&sock, cfg("vu-client")).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);
    expect_traffic(&stats, (0, 0), "client mode", &pmd);
    assert_eq!(stats.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);
    drop(runner);
    // our side closed the connection; the frontend's socket is not ours to delete
    assert!(sock.exists());
    let out = pmd.stop();
    assert!(last_rx_packets(&out) > 1000, "testpmd totals:\n{}", tail(&out, 25));
}

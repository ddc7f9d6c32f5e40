//! AF_PACKET packet rates over a veth pair, brick vs a plain kernel raw-socket loop, in the
//! same run. Needs root (netns, veth); prints a note and exits otherwise.
//!
//! `cargo bench -p brick-nic --bench afpacket_pps` (BENCH_SECS=2 by default).
//!
//! - rx: a thread in the peer namespace floods 64-byte frames with sendmmsg (batches of 64,
//!   PACKET_QDISC_BYPASS); the receiver is either the brick (TPACKET_V3 ring, polled in a
//!   graph) or a raw socket doing one recv() per frame.
//! - tx: 64-byte frames sent by the brick (ring or sendmmsg mode, bursts of 64) or by a raw
//!   socket doing one send() per frame; the rate is what the peer veth received.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::{Burst, Graph, Packet, PacketPool, PoolConfig, Side};
use brick_nic::{AfPacketConfig, AfPacketNic, TxMode};
use common::*;

fn secs() -> f64 {
    std::env::var("BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.0)
}

fn peer_rx(ns: &Netns, ifname: &str) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat", &format!("/sys/class/net/{ifname}/statistics/rx_packets")])
        .output()
        .expect("read peer stats");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
}

/// Floods from the peer namespace until `stop`; returns frames sent.
fn flood(ns: &Netns, ifname: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let raw = RawSock::open_in(ns, ifname, TEST_ETHERTYPE);
    std::thread::spawn(move || {
        let frame = test_frame(1, 64);
        let one: libc::c_int = 1;
        let fd = raw_fd(&raw);
        // SAFETY: setsockopt with an int on our socket.
        unsafe {
            libc::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, (&one as *const i32).cast(), 4)
        };
        let mut iov = [libc::iovec { iov_base: frame.as_ptr() as *mut _, iov_len: frame.len() }; 64];
        // SAFETY: mmsghdr is plain data.
        let mut msgs: [libc::mmsghdr; 64] = unsafe { std::mem::zeroed() };
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: msgs point at iov entries and a frame that outlive the call.
            let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), 64, 0) };
            if r > 0 {
                sent += r as u64;
            }
        }
        sent
    })
}

fn raw_fd(r: &RawSock) -> i32 {
    r.fd()
}

fn rx_brick(ns: &Netns, veth: &Veth) -> (f64, f64) {
    let pool = PacketPool::new(PoolConfig { count: 4096, ..PoolConfig::default() }).unwrap();
    let nic = AfPacketNic::open(&veth.root, AfPacketConfig::default(), pool).unwrap();
    let c = nic.counters();
    let mut g = Graph::new("rx");
    let id = g.add("nic", nic).unwrap();
    let sink = g
        .add("sink", brick_core::bricks::RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear()))
        .unwrap();
    g.link(id, sink).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let h = flood(ns, &veth.peer, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(200));
    g.poll_all();
    let r0 = c.rx_packets.get();
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs() {
        g.poll_all();
    }
    let dt = t0.elapsed().as_secs_f64();
    let n = c.rx_packets.get() - r0;
    stop.store(true, Ordering::Relaxed);
    let sent = h.join().unwrap();
    g.tick_all();
    eprintln!("  (kernel ring drops: {})", c.kernel_drops.get());
    (n as f64 / dt, sent as f64 / (dt + 0.2))
}

fn rx_raw(ns: &Netns, veth: &Veth) -> f64 {
    let raw = RawSock::open_here(&veth.root, TEST_ETHERTYPE);
    let fd = raw_fd(&raw);
    let stop = Arc::new(AtomicBool::new(false));
    let h = flood(ns, &veth.peer, Arc::clone(&stop));
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 2048];
    let mut n = 0u64;
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs() {
        for _ in 0..64 {
            // SAFETY: recv into a live buffer.
            if unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) } > 0 {
                n += 1;
            }
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    n as f64 / dt
}

fn tx_brick(ns: &Netns, veth: &Veth, mode: TxMode) -> f64 {
    let pool = PacketPool::new(PoolConfig { count: 4096, ..PoolConfig::default() }).unwrap();
    let cfg = AfPacketConfig { tx_mode: mode, qdisc_bypass: true, ..AfPacketConfig::default() };
    let nic = AfPacketNic::open(&veth.root, cfg, pool.clone()).unwrap();
    let mut g = Graph::new("tx");
    let id = g.add("nic", nic).unwrap();
    let frame = test_frame(2, 64);
    let p0 = peer_rx(ns, &veth.peer);
    let t0 = Instant::now();
    let mut b = Burst::new();
    while t0.elapsed().as_secs_f64() < secs() {
        for _ in 0..64 {
            let _ = b.push(pool.alloc_from(&frame).unwrap_or_else(|| Packet::from_slice(&frame)));
        }
        g.inject(id, Side::East, 0, &mut b).unwrap();
    }
    let dt = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    (peer_rx(ns, &veth.peer) - p0) as f64 / dt
}

fn tx_raw(ns: &Netns, veth: &Veth) -> f64 {
    let raw = RawSock::open_here(&veth.root, TEST_ETHERTYPE);
    let fd = raw_fd(&raw);
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with an int.
    unsafe {
        libc::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, (&one as *const i32).cast(), 4)
    };
    let frame = test_frame(3, 64);
    let p0 = peer_rx(ns, &veth.peer);
    let t0 = Instant::now();
    while t0.elapsed().as_secs_f64() < secs() {
        for _ in 0..64 {
            // SAFETY: send from a live buffer.
            unsafe { libc::send(fd, frame.as_ptr().cast(), frame.len(), 0) };
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(100));
    (peer_rx(ns, &veth.peer) - p0) as f64 / dt
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || std::env::args().any(|a| a == "--list") {
        eprintln!("afpacket_pps: needs root (netns + veth); skipped");
        return;
    }
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let m = |x: f64| x / 1e6;
    let (brx, sent) = rx_brick(&ns, &veth);
    let rrx = rx_raw(&ns, &veth);
    println!(
        "AF_PACKET rx 64B: brick {:.2} Mpps | raw recv() loop {:.2} Mpps | sender {:.2} Mpps",
        m(brx),
        m(rrx),
        m(sent)
    );
    let tring = tx_brick(&ns, &veth, TxMode::Ring { frames: 1024 });
    let tmm = tx_brick(&ns, &veth, TxMode::Sendmmsg);
    let traw = tx_raw(&ns, &veth);
    println!(
        "AF_PACKET tx 64B: brick ring {:.2} Mpps | brick sendmmsg {:.2} Mpps | raw send() loop {:.2} Mpps",
        m(tring),
        m(tmm),
        m(traw)
    );
}

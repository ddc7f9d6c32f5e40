//! TAP brick against the kernel: the device is moved into a test namespace, whose kernel
//! sends and receives through it. Needs root, like CI.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brick_core::{
    Brick, Burst, Graph, GsoType, OffloadFlags, Output, Packet, PacketPool, PoolConfig, PortId, Runner,
    RunnerConfig, Side,
};
use brick_nic::{TapConfig, TapNic, TapOffloads};
use common::*;

fn pool(count: usize, data_room: usize) -> PacketPool {
    PacketPool::new(PoolConfig { count, data_room, ..PoolConfig::default() }).unwrap()
}

/// Moves a tap into `ns`, without IPv6, up, with an optional IPv4 address.
fn into_ns(tap: &str, ns: &Netns, addr: Option<&str>) {
    ip(&["link", "set", tap, "netns", &ns.name]);
    disable_ipv6(Some(&ns.name), tap);
    if let Some(a) = addr {
        ip(&["-n", &ns.name, "addr", "add", a, "dev", tap]);
    }
    ip(&["-n", &ns.name, "link", "set", tap, "up"]);
}

fn round_trip(cfg: TapConfig) {
    let ns = Netns::new();
    let name = unique("bntap");
    let tap = TapNic::create(&name, cfg, pool(1024, 2048)).unwrap();
    let counters = tap.counters();
    let wake = tap.wake_fd().unwrap();
    into_ns(&name, &ns, None);
    let raw = RawSock::open_in(&ns, &name, TEST_ETHERTYPE);
    let mut g = Graph::new("tap");
    let id = g.add("tap", tap).unwrap();
    let got = collect_east_of(&mut g, id, "collect");

    let sent: Vec<Vec<u8>> = (0..200u32).map(|i| test_frame(i, 60 + (i as usize * 89) % 1455)).collect();
    for f in &sent {
        assert!(raw.send(f));
    }
    // The wake fd tells an idle runner that frames wait.
    let mut pfd = libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one pollfd we own.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 2000) }, 1, "wake fd readable");
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= sent.len()));
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), sent.len());
        let mut got_sorted: Vec<&Packet> = got.iter().collect();
        // With several queues, order holds per queue only: compare by sequence number.
        got_sorted.sort_by_key(|p| u32::from_be_bytes(p.data()[14..18].try_into().unwrap()));
        for (p, f) in got_sorted.iter().zip(&sent) {
            assert_eq!(p.data(), &f[..]);
        }
    }
    assert_eq!(counters.rx_packets.get(), 200);

    let out: Vec<Vec<u8>> = (500..650u32).map(|i| test_frame(i, 60 + (i as usize * 13) % 1455)).collect();
    for chunk in out.chunks(64) {
        let mut b = Burst::new();
        for f in chunk {
            b.push(Packet::from_slice(f)).unwrap();
        }
        g.inject(id, Side::East, 0, &mut b).unwrap();
    }
    let mut received = Vec::new();
    while received.len() < out.len() {
        received.push(raw.recv(Duration::from_secs(2)).expect("frame from the tap brick"));
    }
    received.sort_by_key(|f| u32::from_be_bytes(f[14..18].try_into().unwrap()));
    assert_eq!(received, out);
    let s = counters.snapshot();
    assert_eq!(s.tx_packets, 150);
    assert_eq!(s.brick_drops(), 0);
}

#[test]
fn round_trip_with_vnet_hdr() {
    round_trip(TapConfig::default());
}

#[test]
fn round_trip_without_vnet_hdr() {
    round_trip(TapConfig { vnet_hdr: false, ..TapConfig::default() });
}

#[test]
fn round_trip_multiqueue() {
    round_trip(TapConfig { queues: 4, ..TapConfig::default() });
}

#[test]
fn attach_to_a_persistent_tap() {
    let name = unique("bnptap");
    ip(&["tuntap", "add", "dev", &name, "mode", "tap", "vnet_hdr"]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    let _del = Del(name.clone());
    let tap = TapNic::attach(&name, TapConfig::default(), pool(16, 2048)).unwrap();
    assert_eq!(tap.name(), name);
    assert!(matches!(
        TapNic::create(&name, TapConfig::default(), pool(4, 2048)),
        Err(brick_nic::NicError::AlreadyExists(_))
    ));
}

/// Joins two bricks whose only port is east: packets entering west port 0 leave west port 1
/// and back. Counts the super-frames that cross.
struct Cross {
    gso_frames: Arc<AtomicU64>,
    gso_max_len: Arc<AtomicU64>,
    partial_csum: Arc<AtomicU64>,
}

impl Brick for Cross {
    fn kind(&self) -> &'static str {
        "cross"
    }
    fn max_ports(&self, side: Side) -> usize {
        if side == Side::West {
            2
        } else {
            0
        }
    }
    fn process(&mut self, _side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for p in pkts.drain() {
            let m = p.meta();
            if m.gso_type == GsoType::TcpV4 && m.gso_size > 0 {
                self.gso_frames.fetch_add(1, Ordering::Relaxed);
                self.gso_max_len.fetch_max(p.len() as u64, Ordering::Relaxed);
            }
            if m.offload.contains(OffloadFlags::CSUM_NEEDED) {
                self.partial_csum.fetch_add(1, Ordering::Relaxed);
            }
            out.emit(Side::West, 1 - port, p);
        }
    }
}

/// A kernel TCP connection from one namespace to another through two TAP bricks: the
/// sender's TSO super-frames cross the graph whole (GSO metadata in the virtio-net header),
/// and the receiver gets every byte.
#[test]
fn tcp_super_frames_cross_with_gso_metadata() {
    let ns1 = Netns::new();
    let ns2 = Netns::new();
    let (n1, n2) = (unique("bngso"), unique("bngso"));
    let cfg = TapConfig { offloads: TapOffloads::ALL, ..TapConfig::default() };
    let big = pool(256, 65536 + 1024);
    let t1 = TapNic::create(&n1, cfg.clone(), big.clone()).unwrap();
    let t2 = TapNic::create(&n2, cfg, big.clone()).unwrap();
    let (c1, c2) = (t1.counters(), t2.counters());
    into_ns(&n1, &ns1, Some("10.77.0.1/24"));
    into_ns(&n2, &ns2, Some("10.77.0.2/24"));

    let gso_frames = Arc::new(AtomicU64::new(0));
    let gso_max_len = Arc::new(AtomicU64::new(0));
    let partial_csum = Arc::new(AtomicU64::new(0));
    let mut g = Graph::new("gso");
    let a = g.add("tap1", t1).unwrap();
    let b = g.add("tap2", t2).unwrap();
    let x = g
        .add(
            "cross",
            Cross {
                gso_frames: Arc::clone(&gso_frames),
                gso_max_len: Arc::clone(&gso_max_len),
                partial_csum: Arc::clone(&partial_csum),
            },
        )
        .unwrap();
    g.link(a, x).unwrap();
    g.link(b, x).unwrap();
    let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();

    const LEN: usize = 4 << 20;
    let listener = ns2.run(|| TcpListener::bind("10.77.0.2:5201").unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::with_capacity(LEN);
        s.read_to_end(&mut buf).unwrap();
        buf
    });
    let client = ns1.run(|| {
        let addr = "10.77.0.2:5201".parse().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap()
    });
    let payload: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let p2 = payload.clone();
    std::thread::spawn(move || {
        let mut client = client;
        client.write_all(&p2).unwrap();
    })
    .join()
    .unwrap();
    let received = server.join().unwrap();
    let g = runner.stop().unwrap();
    assert_eq!(received.len(), LEN);
    assert!(received == payload, "payload corrupted");
    let frames = gso_frames.load(Ordering::Relaxed);
    let max_len = gso_max_len.load(Ordering::Relaxed);
    assert!(frames > 0, "no GSO super-frame crossed the graph");
    assert!(max_len > 1514, "largest GSO frame only {max_len} bytes");
    assert!(partial_csum.load(Ordering::Relaxed) > 0);
    assert!(c1.rx_offloaded.get() > 0);
    assert_eq!(c2.snapshot().brick_drops(), 0, "{:?}", c2.snapshot());
    assert_eq!(c1.snapshot().brick_drops(), 0, "{:?}", c1.snapshot());
    drop(g);
}

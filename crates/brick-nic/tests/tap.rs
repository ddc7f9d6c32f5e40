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
fn the_device_takes_the_mac_it_is_given() {
    let name = unique("bntap");
    let tap = TapNic::create(&name, TapConfig::default(), pool(8, 2048)).unwrap();
    let read = || std::fs::read_to_string(format!("/sys/class/net/{name}/address")).unwrap();
    tap.set_mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]).unwrap();
    assert_eq!(read().trim(), "52:54:00:ab:cd:ef");
    // Live, while the interface is up, too.
    ip(&["link", "set", &name, "up"]);
    tap.set_mac([0x52, 0x54, 0x00, 0x00, 0x00, 0x02]).unwrap();
    assert_eq!(read().trim(), "52:54:00:00:00:02");
    for bad in [[0x01, 0, 0x5e, 0, 0, 1], [0; 6], [0xff; 6]] {
        let err = tap.set_mac(bad).unwrap_err();
        assert!(err.to_string().contains("not a unicast Ethernet address"), "{err}");
    }
    assert_eq!(read().trim(), "52:54:00:00:00:02", "a refused address changes nothing");
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

/// A persistent TAP moved into another namespace outlives its brick there, with its address;
/// `find_interface` finds that namespace by name and MAC (not one holding an interface of
/// the same name with another MAC), and a brick attached from inside it carries frames both
/// ways. Made non-persistent, the device goes with its last brick.
#[test]
fn a_persistent_tap_moved_away_is_found_and_attached_again() {
    use std::os::fd::AsFd;
    let (ns, decoy) = (Netns::new(), Netns::new());
    let name = unique("bnmtap");
    let mac = [0x52, 0x54, 0x00, 0x17, 0x0b, 0x01];
    let tap = TapNic::create(&name, TapConfig::default(), pool(64, 2048)).unwrap();
    tap.set_mac(mac).unwrap();
    tap.set_persistent(true).unwrap();
    into_ns(&name, &ns, Some("10.77.0.1/24"));
    // The same name with another MAC elsewhere must not be taken for it.
    let peer = format!("{name}p");
    ip(&["-n", &decoy.name, "link", "add", &name, "type", "veth", "peer", "name", &peer]);
    drop(tap);
    let listed = |n: &Netns| {
        let out =
            std::process::Command::new("ip").args(["-n", &n.name, "addr", "show", &name]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(listed(&ns).contains("10.77.0.1/24"), "the device and its address stay: {}", listed(&ns));
    assert!(!brick_nic::sys::interface_exists(&name), "it is not in this namespace");

    let (path, fd) = brick_nic::netns::find_interface(&name, mac).unwrap().expect("found");
    assert!(path.ends_with(&ns.name) || path.starts_with("/proc"), "{}", path.display());
    assert!(brick_nic::netns::find_interface(&name, [0x52, 0, 0, 0, 0, 9]).unwrap().is_none());
    let tap = TapNic::attach_in(fd.as_fd(), &name, TapConfig::default(), pool(1024, 2048)).unwrap();
    let counters = tap.counters();
    let raw = RawSock::open_in(&ns, &name, TEST_ETHERTYPE);
    let mut g = Graph::new("tap");
    let id = g.add("tap", tap).unwrap();
    let got = collect_east_of(&mut g, id, "collect");
    // The kernel gives the device its queue discipline back only once it has seen the carrier
    // come up (linkwatch, asynchronously): frames sent before that are dropped, so resend.
    let arrived = (0..50).any(|_| {
        assert!(raw.send(&test_frame(1, 100)));
        poll_until(&mut g, Duration::from_millis(100), || !got.lock().unwrap().is_empty())
    });
    assert!(arrived, "no frame from the namespace reached the attached brick in 5 s");
    let mut b = Burst::new();
    b.push(Packet::from_slice(&test_frame(2, 100))).unwrap();
    g.inject(id, Side::East, 0, &mut b).unwrap();
    assert_eq!(
        raw.recv(Duration::from_secs(2)).expect("a frame from the attached brick"),
        test_frame(2, 100)
    );
    assert_eq!(counters.rx_packets.get(), got.lock().unwrap().len() as u64);

    g.brick::<TapNic>(id).unwrap().set_persistent(false).unwrap();
    drop(g);
    assert!(!listed(&ns).contains(&name), "gone with its last brick: {}", listed(&ns));
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

/// Collects the VXLAN frames (UDP to 4789) reaching the east of `nic`, with their metadata.
fn collect_vxlan(g: &mut Graph, nic: brick_core::BrickId, name: &str) -> Collected {
    collect_where(g, nic, name, |d| {
        d.len() > 50 && d[12..14] == [8, 0] && d[23] == 17 && d[36..38] == 4789u16.to_be_bytes()
    })
}

/// A VXLAN (IPv4) frame carrying a TCP super-frame of `payload`, inner checksum partial, and
/// its metadata as the VTEP leaves it after encapsulation.
fn tunnel_super_frame(payload: &[u8], mss: u16) -> (Vec<u8>, brick_core::Meta) {
    let mut inner = Vec::new();
    etherparse::PacketBuilder::ethernet2([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2])
        .ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
        .tcp(40000, 5201, 1000, 1000)
        .ack(1)
        .write(&mut inner, payload)
        .unwrap();
    let tcp_len = (inner.len() - 34) as u64;
    let pseudo = brick_core::checksum::csum_add(6 + tcp_len, &inner[26..34]);
    inner[50..52].copy_from_slice(&(!brick_core::checksum::csum_fold(pseudo)).to_be_bytes());
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vx.extend_from_slice(&inner);
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([198, 18, 7, 1], [198, 18, 7, 2], 64)
        .udp(50000, 4789)
        .write(&mut frame, &vx)
        .unwrap();
    frame[40] = 0; // UDP checksum zero, as the VTEP sends over IPv4
    frame[41] = 0;
    let meta = brick_core::Meta {
        l3_offset: 14,
        l4_offset: 34,
        offload: OffloadFlags::CSUM_NEEDED,
        csum_start: 84,
        csum_offset: 16,
        gso_size: mss,
        gso_type: GsoType::TcpV4,
        ..brick_core::Meta::default()
    };
    (frame, meta)
}

/// A VXLAN super-frame written into a TAP with UDP-tunnel offload crosses a Linux bridge
/// whole to a TAP that has it too (same bytes, same GSO metadata), and is segmented by the
/// kernel into valid VXLAN packets for a TAP without it.
#[test]
fn udp_tunnel_super_frames_cross_a_bridge_whole_or_segmented_by_the_kernel() {
    let ns = Netns::new();
    let names = [unique("bntnl"), unique("bntnl"), unique("bntnl")];
    let big = pool(64, 65536 + 1024);
    let tunnel = TapConfig { offloads: TapOffloads::TUNNEL, ..TapConfig::default() };
    let plain = TapConfig { offloads: TapOffloads::ALL, ..TapConfig::default() };
    let t1 = TapNic::create(&names[0], tunnel.clone(), big.clone()).unwrap();
    let t2 = TapNic::create(&names[1], tunnel, big.clone()).unwrap();
    let t3 = TapNic::create(&names[2], plain, big.clone()).unwrap();
    let (c1, c2, c3) = (t1.counters(), t2.counters(), t3.counters());
    bridge_in_ns(&ns, &names);
    let mut g = Graph::new("tnl");
    let a = g.add("t1", t1).unwrap();
    let b = g.add("t2", t2).unwrap();
    let c = g.add("t3", t3).unwrap();
    let _from_a = collect_vxlan(&mut g, a, "ca");
    let got_b = collect_vxlan(&mut g, b, "cb");
    let got_c = collect_vxlan(&mut g, c, "cc");

    let payload: Vec<u8> = (0..20_000usize).map(|i| (i * 13 % 253) as u8).collect();
    let (frame, meta) = tunnel_super_frame(&payload, 1398);
    let mut burst = Burst::new();
    let mut p = Packet::from_slice(&frame);
    *p.meta_mut() = meta;
    burst.push(p).unwrap();
    g.inject(a, Side::East, 0, &mut burst).unwrap();
    assert_eq!(c1.snapshot().tx_gso, 1, "{:?}", c1.snapshot());

    let segments = payload.len().div_ceil(1398);
    assert!(poll_until(&mut g, Duration::from_secs(5), || {
        !got_b.lock().unwrap().is_empty() && got_c.lock().unwrap().len() >= segments
    }));
    let whole = got_b.lock().unwrap();
    assert_eq!(whole.len(), 1, "one super-frame through the bridge");
    assert_eq!(whole[0].data(), &frame[..]);
    let m = whole[0].meta();
    assert_eq!((m.gso_type, m.gso_size, m.csum_start, m.csum_offset), (GsoType::TcpV4, 1398, 84, 16));
    assert_eq!(c2.snapshot().rx_gso, 1);

    let mut segs = got_c.lock().unwrap();
    assert_eq!(segs.len(), segments, "the kernel segmented for the TAP without tunnel offload");
    let mut joined = Vec::new();
    for s in segs.iter_mut() {
        assert!(s.len() <= 1398 + 104);
        assert_eq!(s.meta().gso_type, GsoType::None);
        let m = *s.meta();
        if m.offload.contains(OffloadFlags::CSUM_NEEDED) {
            assert!(brick_core::checksum::complete_partial(s.data_mut(), m.csum_start.into(), 16));
        }
        let d = s.data();
        assert_eq!(brick_core::checksum::checksum(&d[14..34]), 0, "outer IPv4 checksum");
        assert_eq!(u16::from_be_bytes([d[38], d[39]]) as usize, d.len() - 34, "outer UDP length");
        append_tcp4_segment(&d[50..], &mut joined);
    }
    assert_eq!(joined, payload);
    assert_eq!(c3.snapshot().rx_gso, 0);
}

/// Software GRO on transmit: a burst of consecutive TCP segments of one flow leaves a TAP with
/// `coalesce` as one super-frame (one write), which a Linux bridge hands whole to a TAP with
/// TSO; it is the original super-frame again, byte for byte once its checksum is completed.
/// A segment of another flow in the middle of the burst is sent on its own.
#[test]
fn coalescing_tap_merges_a_run_of_segments_into_one_super_frame() {
    let ns = Netns::new();
    let names = [unique("bncoa"), unique("bncoa")];
    let big = pool(128, 65536 + 1024);
    let tx_cfg = TapConfig { offloads: TapOffloads::ALL, coalesce: true, ..TapConfig::default() };
    let rx_cfg = TapConfig { offloads: TapOffloads::ALL, ..TapConfig::default() };
    let t1 = TapNic::create(&names[0], tx_cfg, big.clone()).unwrap();
    let t2 = TapNic::create(&names[1], rx_cfg, big.clone()).unwrap();
    let (c1, c2) = (t1.counters(), t2.counters());
    bridge_in_ns(&ns, &names);
    let mut g = Graph::new("coalesce");
    let a = g.add("t1", t1).unwrap();
    let b = g.add("t2", t2).unwrap();
    let _from_a = collect_tcp(&mut g, a, "ca");
    let got = collect_tcp(&mut g, b, "cb");

    // The super-frame a sender with TSO would make, cut into 1398-byte segments.
    let payload: Vec<u8> = (0..20_000usize).map(|i| (i * 11 % 251) as u8).collect();
    let mut sf = Vec::new();
    etherparse::PacketBuilder::ethernet2([0x52, 0x54, 0, 0, 0, 1], [0x52, 0x54, 0, 0, 0, 2])
        .ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
        .tcp(40000, 5201, 1000, 1000)
        .ack(1)
        .psh()
        .write(&mut sf, &payload)
        .unwrap();
    let meta = brick_core::Meta { gso_size: 1398, gso_type: GsoType::TcpV4, ..brick_core::Meta::default() };
    let plan = brick_core::gso::TcpSegmenter::new(&sf, &meta).unwrap();
    let mut burst = Burst::new();
    for i in 0..plan.segment_count() {
        let mut buf = vec![0u8; plan.segment_len(i)];
        plan.write_segment(&sf, i, &mut buf).unwrap();
        burst.push(Packet::from_slice(&buf)).unwrap();
        if i == 3 {
            // Another flow's segment in the middle: sent alone, and the run goes on after it.
            let mut other = Vec::new();
            etherparse::PacketBuilder::ethernet2([0x52, 0x54, 0, 0, 0, 3], [0x52, 0x54, 0, 0, 0, 2])
                .ipv4([10, 9, 0, 3], [10, 9, 0, 2], 64)
                .tcp(40001, 5201, 1, 1000)
                .ack(1)
                .write(&mut other, &[9u8; 100])
                .unwrap();
            burst.push(Packet::from_slice(&other)).unwrap();
        }
    }
    assert_eq!(plan.segment_count(), 15);
    g.inject(a, Side::East, 0, &mut burst).unwrap();
    let s1 = c1.snapshot();
    assert_eq!((s1.tx_packets, s1.tx_gso, s1.tx_coalesced), (3, 2, 15), "{s1:?}");

    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= 3));
    let mut got = got.lock().unwrap();
    assert_eq!(got.len(), 3);
    let mut rebuilt = Vec::new();
    for p in got.iter_mut() {
        let m = *p.meta();
        if m.offload.contains(OffloadFlags::CSUM_NEEDED) {
            assert!(brick_core::checksum::complete_partial(p.data_mut(), m.csum_start.into(), 16));
        }
        let d = p.data();
        if d[26..30] == [10, 9, 0, 3] {
            continue;
        }
        assert_eq!(m.gso_type, GsoType::TcpV4);
        assert_eq!(m.gso_size, 1398);
        append_tcp4_segment(d, &mut rebuilt);
    }
    assert_eq!(rebuilt, payload);
    assert_eq!(c2.snapshot().rx_gso, 2);
}

/// Collects the IPv4 TCP frames reaching the east of `nic`, with their metadata.
fn collect_tcp(g: &mut Graph, nic: brick_core::BrickId, name: &str) -> Collected {
    collect_where(g, nic, name, |d| d.len() > 34 && d[12..14] == [8, 0] && d[23] == 6)
}

/// Adds a collector on the east of `nic` keeping the frames `keep` accepts.
fn collect_where(g: &mut Graph, nic: brick_core::BrickId, name: &str, keep: fn(&[u8]) -> bool) -> Collected {
    let got: Collected = Arc::default();
    let g2 = Arc::clone(&got);
    let sink = move |b: &mut Burst| {
        let mut v = g2.lock().unwrap();
        v.extend(b.drain().filter(|p| keep(p.data())));
    };
    let c = g.add(name, brick_core::bricks::RxTx::new(Side::West, |_: &mut Burst| {}, sink)).unwrap();
    g.link(nic, c).unwrap();
    got
}

/// Checks an Ethernet/IPv4/TCP segment (valid TCP checksum, sequence number right after what
/// `joined` holds, counted from 1000) and appends its payload to `joined`.
fn append_tcp4_segment(frame: &[u8], joined: &mut Vec<u8>) {
    let s = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip4)) = &s.net else { panic!("IPv4") };
    let Some(etherparse::TransportSlice::Tcp(tcp)) = &s.transport else { panic!("TCP") };
    let h = ip4.header().to_header();
    assert_eq!(tcp.to_header().calc_checksum_ipv4(&h, tcp.payload()).unwrap(), tcp.checksum());
    assert_eq!(tcp.sequence_number(), 1000 + joined.len() as u32);
    joined.extend_from_slice(tcp.payload());
}

/// Moves the TAPs `names` into `ns` (IPv6 off there, so no stray router solicitations) and
/// joins them in a Linux bridge `br0`.
fn bridge_in_ns(ns: &Netns, names: &[String]) {
    ns_exec(&ns.name, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
    ip(&["-n", &ns.name, "link", "add", "br0", "type", "bridge"]);
    for n in names {
        into_ns(n, ns, None);
        ip(&["-n", &ns.name, "link", "set", n, "master", "br0"]);
    }
    ip(&["-n", &ns.name, "link", "set", "br0", "up"]);
}

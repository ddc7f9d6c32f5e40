//! DPDK brick against real DPDK 22.11 vdevs, without hugepages or PCI. The EAL can be
//! initialised once per process, so this binary has a single test running every step in
//! sequence. Its runtime directory (/var/run/dpdk/<prefix>) is removed afterwards.

mod common;

use std::time::Duration;

use brick_core::{Burst, Graph, Packet, PacketPool, PoolConfig, Side};
use brick_nic::{
    current_lcore, retired_mempools, DpdkConfig, DpdkError, DpdkNic, Eal, NicError, PortSpec, MBUF_OWNER,
};
use common::*;

/// Removes the EAL runtime directory even if the test fails.
struct RunDir(String);

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.0));
    }
}

fn pool() -> PacketPool {
    PacketPool::new(PoolConfig { count: 2048, ..PoolConfig::default() }).unwrap()
}

fn frames(base: u32, n: u32) -> Vec<Vec<u8>> {
    (base..base + n).map(|i| test_frame(i, 60 + (i as usize * 53) % 1455)).collect()
}

fn inject(g: &mut Graph, id: brick_core::BrickId, frames: &[Vec<u8>]) {
    for chunk in frames.chunks(64) {
        let mut b = Burst::new();
        for f in chunk {
            b.push(Packet::from_slice(f)).unwrap();
        }
        g.inject(id, Side::East, 0, &mut b).unwrap();
    }
}

/// A 20 KB TCP super-frame from port `sport`, sequence numbers from `seq`, as a VM with TSO
/// hands it over (MSS 1000, a partial checksum: the pseudo-header sum only), and its payload.
fn tcp_super_frame(sport: u16, seq: u32) -> (Packet, Vec<u8>) {
    let payload: Vec<u8> = (0..20_000usize).map(|i| (i * 7 % 251) as u8).collect();
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([0x02, 0xbb, 0, 0, 0, 7], [0x02, 0xbb, 0, 0, 0, 8])
        .ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64)
        .tcp(sport, 5201, seq, 1000)
        .ack(1)
        .write(&mut frame, &payload)
        .unwrap();
    let pseudo = brick_core::checksum::csum_add(6 + (frame.len() - 34) as u64, &frame[26..34]);
    frame[50..52].copy_from_slice(&brick_core::checksum::csum_fold(pseudo).to_be_bytes());
    let mut p = Packet::from_slice(&frame);
    *p.meta_mut() = brick_core::Meta {
        l3_offset: 14,
        l4_offset: 34,
        offload: brick_core::OffloadFlags::CSUM_NEEDED,
        csum_start: 34,
        csum_offset: 16,
        gso_size: 1000,
        gso_type: brick_core::GsoType::TcpV4,
        ..brick_core::Meta::default()
    };
    (p, payload)
}

/// Checks `f` as the next segment of `tcp_super_frame(sport, seq)` (size, order, IPv4 and
/// TCP checksums) and appends its payload to `joined`; false if `f` is another frame.
fn take_segment(f: &[u8], sport: u16, seq: u32, joined: &mut Vec<u8>) -> bool {
    let Ok(parsed) = etherparse::SlicedPacket::from_ethernet(f) else { return false };
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Tcp(t))) =
        (&parsed.net, &parsed.transport)
    else {
        return false;
    };
    if t.source_port() != sport {
        return false;
    }
    assert!(f.len() <= 14 + 20 + 20 + 1000, "a segment of {} bytes", f.len());
    assert_eq!(t.sequence_number(), seq + joined.len() as u32, "in order");
    let h = ip.header().to_header();
    assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
    assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(), "TCP checksum");
    joined.extend_from_slice(t.payload());
    true
}

#[test]
fn dpdk_end_to_end() {
    let prefix = unique("bnic");
    let _rundir = RunDir(prefix.clone());

    // 1. An EAL that cannot start is an error, not a panic (and a retry is allowed).
    let bad = Eal::init(&["--no-such-eal-option"]).unwrap_err();
    assert!(matches!(bad, DpdkError::EalInit { errno, .. } if errno == libc::EINVAL), "{bad}");
    assert!(matches!(Eal::init(&["a\0b"]), Err(DpdkError::BadArgument(_))));

    // 2. The real EAL: no hugepages, no PCI, a loopback ring port and a null port.
    let args = [
        "-l",
        "0",
        "--no-huge",
        "--no-pci",
        "-m",
        "256",
        "--file-prefix",
        &prefix,
        "--log-level",
        "error",
        "--vdev",
        "net_ring0",
        "--vdev",
        "net_null0",
    ];
    let eal = Eal::init(&args).expect("EAL init with --no-huge --no-pci");
    assert!(matches!(Eal::init(&args), Err(DpdkError::AlreadyInitialized)));
    assert_eq!(eal.port_count(), 2);

    // 3. Ports that do not exist.
    let err = DpdkNic::open(eal, DpdkConfig { port: PortSpec::Id(17), ..Default::default() }, pool())
        .err()
        .unwrap();
    assert!(matches!(err, NicError::Dpdk(DpdkError::NoSuchPort(17))), "{err}");
    let err = DpdkNic::open(
        eal,
        DpdkConfig { port: PortSpec::Name("net_nope9".into()), ..Default::default() },
        pool(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, NicError::Dpdk(DpdkError::NoSuchPortName(_))), "{err}");
    let err = DpdkNic::open(
        eal,
        DpdkConfig { port: PortSpec::Devargs("net_bogusdrv0".into()), ..Default::default() },
        pool(),
    )
    .err()
    .unwrap();
    assert!(matches!(err, NicError::Dpdk(DpdkError::Probe { .. })), "{err}");

    // 4. net_ring0 is a loopback: what the brick sends comes back to it, byte for byte.
    let cfg = DpdkConfig { port: PortSpec::Name("net_ring0".into()), mbufs: 2047, ..Default::default() };
    let ring = DpdkNic::open(eal, cfg, pool()).unwrap();
    assert!(ring.link().unwrap().up);
    let caps = ring.offload_caps();
    let _ = (caps.rx_checksum(), caps.tx_checksum(), caps.tso(), caps.outer_checksum());
    let counters = ring.counters();
    // Lent mbufs (what a VM's NIC copies its frames into): the burst's worth announced by a
    // reserve is taken in one bulk when the first is asked for (nothing before), what is not
    // handed out goes back.
    let mut lent = ring.lent_buffers().source();
    assert_eq!((lent.data_room(), lent.min_frame()), (2048, brick_nic::MIN_LENT_FRAME));
    let before = ring.mbufs_available();
    lent.reserve(64);
    assert_eq!(ring.mbufs_available(), before, "nothing taken before a packet is asked for");
    lent.unreserve();
    lent.reserve(64);
    let lent_frames = frames(5000, 40);
    let mut in_mbufs = Burst::new();
    for (i, f) in lent_frames.iter().enumerate() {
        let p = lent.push_empty(&mut in_mbufs).expect("a lent mbuf");
        assert_eq!(p.headroom(), 128, "the mbuf's headroom, room for a VXLAN header");
        p.extend_from_slice(f).unwrap();
        if i == 0 {
            assert_eq!(ring.mbufs_available(), before - 64, "the burst's worth in one bulk");
        }
    }
    lent.unreserve();
    assert_eq!(ring.mbufs_available(), before - 40);
    let mut g = Graph::new("dpdk-ring");
    let id = g.add("ring", ring).unwrap();
    let got = collect_east_of(&mut g, id, "collect");
    let sent = frames(0, 300);
    inject(&mut g, id, &sent);
    g.inject(id, Side::East, 0, &mut in_mbufs).unwrap();
    let all: Vec<Vec<u8>> = sent.iter().chain(&lent_frames).cloned().collect();
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= all.len()));
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), all.len());
        for (p, f) in got.iter().zip(&all) {
            assert_eq!(p.data(), &f[..]);
        }
    }
    let s = counters.snapshot();
    assert_eq!((s.tx_packets, s.rx_packets, s.brick_drops()), (340, 340, 0));
    // The packets built in lent mbufs were sent as they were; the others were copied.
    assert_eq!(s.tx_copied, 300, "{s:?}");

    // A second open of a port in use is refused before it touches the port (it used to
    // reconfigure it, fail, then stop and close it under the first brick), which keeps working.
    let cfg = DpdkConfig { port: PortSpec::Name("net_ring0".into()), mbufs: 2047, ..Default::default() };
    let err = DpdkNic::open(eal, cfg, pool()).err().expect("net_ring0 is in use");
    assert!(matches!(err, NicError::Dpdk(DpdkError::PortInUse(_))), "{err}");
    got.lock().unwrap().clear();
    inject(&mut g, id, &frames(0, 300));
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= 300));

    // 4b. Zero copy: what came back lives in the port's own mbufs. Tag each with a VLAN
    //     header written in the mbuf's headroom and send it again: it leaves in the same
    //     mbuf (no new mbuf is taken) and returns with the tag, byte for byte.
    let mut lent: Vec<Packet> = std::mem::take(&mut *got.lock().unwrap());
    let rest = lent.split_off(64);
    assert!(lent.iter().all(|p| p.foreign_handle(&MBUF_OWNER).is_some()), "received packets are mbufs");
    let avail_before = g.brick_mut::<DpdkNic>(id).unwrap().mbufs_available();
    let mut expect = Vec::new();
    let mut b = Burst::new();
    for mut p in lent {
        let mut hdr = [0u8; 16];
        hdr[..12].copy_from_slice(&p.data()[..12]);
        hdr[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        hdr[14..16].copy_from_slice(&42u16.to_be_bytes());
        p.pull(12).unwrap();
        p.prepend(16).unwrap().copy_from_slice(&hdr);
        expect.push(p.data().to_vec());
        b.push(p).unwrap();
    }
    g.inject(id, Side::East, 0, &mut b).unwrap();
    assert_eq!(
        g.brick_mut::<DpdkNic>(id).unwrap().mbufs_available(),
        avail_before,
        "re-sent packets travel in their own mbufs"
    );
    let before_rest = g.brick_mut::<DpdkNic>(id).unwrap().mbufs_available();
    drop(rest);
    assert_eq!(
        g.brick_mut::<DpdkNic>(id).unwrap().mbufs_available(),
        before_rest + 236,
        "dropped packets give their mbufs back"
    );
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= expect.len()));
    for (p, f) in got.lock().unwrap().iter().zip(&expect) {
        assert_eq!(p.data(), &f[..]);
    }
    got.lock().unwrap().clear();
    assert_eq!(counters.snapshot().brick_drops(), 0);

    // Too big for the MTU: counted, not sent.
    inject(&mut g, id, &[test_frame(1, 1600)]);
    assert_eq!(counters.too_big.get(), 1);
    g.tick_all();

    // A packet that outlives its port keeps the port's mbuf pool alive until it is dropped.
    inject(&mut g, id, &frames(500, 1));
    assert!(poll_until(&mut g, Duration::from_secs(5), || !got.lock().unwrap().is_empty()));
    let survivor = got.lock().unwrap().pop().unwrap();
    drop(g);
    let retired = retired_mempools();
    assert!(retired >= 1, "the closed port's pool is kept for its lent mbuf");
    assert_eq!(survivor.data(), &frames(500, 1)[0][..]);
    drop(survivor);
    assert_eq!(retired_mempools(), retired, "retired pools are never freed (no safe moment)");

    // 4c. A TCP super-frame (GSO metadata, partial checksum) is more than the port takes:
    //     the brick cuts it into MSS-sized segments in software, each with its own valid
    //     checksums, sent in order (another hot-plugged ring, collecting TCP frames).
    let cfg = DpdkConfig { port: PortSpec::Devargs("net_ring8".into()), mbufs: 2047, ..Default::default() };
    let ring = DpdkNic::open(eal, cfg, pool()).unwrap();
    let counters = ring.counters();
    let mut g = Graph::new("dpdk-gso");
    let id = g.add("ring", ring).unwrap();
    let got = collect_east_of_matching(&mut g, id, "tcp", |f| f.get(12..14) == Some(&[8, 0]));
    let (p, payload) = tcp_super_frame(40000, 7000);
    let mut b = Burst::new();
    b.push(Packet::from_slice(&test_frame(9, 100))).unwrap();
    b.push(p).unwrap();
    g.inject(id, Side::East, 0, &mut b).unwrap();
    assert_eq!(counters.snapshot().tx_segmented, 20, "{:?}", counters.snapshot());
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= 20));
    let mut joined = Vec::new();
    for seg in got.lock().unwrap().iter() {
        assert!(take_segment(seg.data(), 40000, 7000, &mut joined), "not a segment: {:02x?}", seg.data());
    }
    assert_eq!(joined, payload, "the segments carry the payload, byte for byte");
    assert_eq!(counters.snapshot().brick_drops(), 0);
    drop(g);

    // 4c'. A port that computes checksums and segments TCP (net_tap: its kernel side is a
    //      TAP interface): frames with a partial TCP/UDP checksum over IPv4 and IPv6 leave
    //      with the request in their mbuf, and the kernel receives them with valid
    //      checksums; then a super-frame, below.
    let tap_if = unique("bntap");
    let cfg = DpdkConfig {
        port: PortSpec::Devargs(format!("net_tap3,iface={tap_if}")),
        mbufs: 2047,
        ..Default::default()
    };
    let tap = DpdkNic::open(eal, cfg, pool()).unwrap();
    assert!(tap.offload_caps().tx_checksum(), "net_tap computes checksums");
    let counters = tap.counters();
    let mut g = Graph::new("dpdk-tap");
    let id = g.add("tap", tap).unwrap();
    let raw = RawSock::open_here(&tap_if, 0x0003);
    let partial = |v6: bool, tcp: bool| -> Packet {
        let b = etherparse::PacketBuilder::ethernet2([0x02, 0xbb, 0, 0, 0, 7], [0x02, 0xbb, 0, 0, 0, 8]);
        let b =
            if v6 { b.ipv6([0xfd; 16], [0xfe; 16], 64) } else { b.ipv4([10, 9, 0, 1], [10, 9, 0, 2], 64) };
        let mut f = Vec::new();
        let payload = [0x5au8; 100];
        if tcp {
            b.tcp(40000, 5201, 1, 1000).write(&mut f, &payload).unwrap();
        } else {
            b.udp(40000, 5201).write(&mut f, &payload).unwrap();
        }
        let (l4, addrs) = if v6 { (54, 22..54) } else { (34, 26..34) };
        let (proto, off) = if tcp { (6u64, 16) } else { (17, 6) };
        let pseudo = brick_core::checksum::csum_add(proto + (f.len() - l4) as u64, &f[addrs]);
        f[l4 + off..l4 + off + 2].copy_from_slice(&brick_core::checksum::csum_fold(pseudo).to_be_bytes());
        let mut p = Packet::from_slice(&f);
        *p.meta_mut() = brick_core::Meta {
            l3_offset: 14,
            l4_offset: l4 as u16,
            offload: brick_core::OffloadFlags::CSUM_NEEDED,
            csum_start: l4 as u16,
            csum_offset: off as u16,
            ..brick_core::Meta::default()
        };
        p
    };
    let mut b = Burst::new();
    for (v6, tcp) in [(false, true), (false, false), (true, true), (true, false)] {
        b.push(partial(v6, tcp)).unwrap();
    }
    g.inject(id, Side::East, 0, &mut b).unwrap();
    assert_eq!(counters.snapshot().tx_csum_offloaded, 4, "{:?}", counters.snapshot());
    let mut checked = 0;
    while checked < 4 {
        let f = raw.recv(Duration::from_secs(5)).expect("a frame through the TAP");
        if f[6..12] != [0x02, 0xbb, 0, 0, 0, 7] {
            continue; // the kernel's own traffic on the new interface
        }
        let parsed = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
        let ok = match (&parsed.net, &parsed.transport) {
            (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Tcp(t))) => {
                t.checksum()
                    == t.to_header().calc_checksum_ipv4(&ip.header().to_header(), t.payload()).unwrap()
            }
            (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(u))) => {
                u.checksum()
                    == u.to_header().calc_checksum_ipv4(&ip.header().to_header(), u.payload()).unwrap()
            }
            (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Tcp(t))) => {
                t.checksum()
                    == t.to_header().calc_checksum_ipv6(&ip.header().to_header(), t.payload()).unwrap()
            }
            (Some(etherparse::NetSlice::Ipv6(ip)), Some(etherparse::TransportSlice::Udp(u))) => {
                u.checksum()
                    == u.to_header().calc_checksum_ipv6(&ip.header().to_header(), u.payload()).unwrap()
            }
            other => panic!("unexpected frame {other:?}"),
        };
        assert!(ok, "frame {checked}: checksum not completed by the port");
        checked += 1;
    }
    assert_eq!(counters.snapshot().brick_drops(), 0);
    // A TCP super-frame goes to the port whole (TSO, as a chain of mbufs); the kernel
    // receives 20 segments, in order, with valid checksums, carrying the payload.
    let (p, payload) = tcp_super_frame(40001, 9000);
    b.push(p).unwrap();
    g.inject(id, Side::East, 0, &mut b).unwrap();
    let s = counters.snapshot();
    assert_eq!((s.tx_gso, s.tx_segmented, s.brick_drops()), (1, 0, 0), "{s:?}");
    let mut joined = Vec::new();
    while joined.len() < payload.len() {
        let f = raw.recv(Duration::from_secs(5)).expect("a segment through the TAP");
        take_segment(&f, 40001, 9000, &mut joined);
    }
    assert_eq!(joined, payload);
    drop(g);

    // A port closed above (net_ring8) cannot be hot-plugged again: a clear error, not a port.
    let err = DpdkNic::open(
        eal,
        DpdkConfig { port: PortSpec::Devargs("net_ring8".into()), ..Default::default() },
        pool(),
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, NicError::Dpdk(DpdkError::Probe { msg, .. }) if msg.contains("cannot be opened again")),
        "{err}"
    );

    // 4d. Without zero copy, received frames are copied into the brick's pool (a second,
    //     hot-plugged ring: a closed vdev port cannot be opened again).
    let cfg = DpdkConfig {
        port: PortSpec::Devargs("net_ring7".into()),
        mbufs: 2047,
        zero_copy: false,
        ..Default::default()
    };
    let mut g = Graph::new("dpdk-ring-copy");
    let id = g.add("ring", DpdkNic::open(eal, cfg, pool()).unwrap()).unwrap();
    let got = collect_east_of(&mut g, id, "collect");
    inject(&mut g, id, &frames(600, 10));
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= 10));
    assert!(got.lock().unwrap().iter().all(|p| p.is_pooled()));
    got.lock().unwrap().clear();

    // 4e. A graph on another thread (a Runner's, in a daemon): that thread registers with
    //     the EAL the first time the brick runs there, and gets an lcore (so a mempool
    //     cache); unless asked not to.
    assert_eq!(current_lcore(), Some(0), "the EAL main thread");
    let (reg, unreg) = std::thread::scope(|sc| {
        let reg = sc
            .spawn(|| {
                assert_eq!(current_lcore(), None);
                g.poll_all();
                current_lcore()
            })
            .join()
            .unwrap();
        let cfg = DpdkConfig {
            port: PortSpec::Devargs("net_ring5".into()),
            mbufs: 511,
            register_thread: false,
            ..Default::default()
        };
        let mut g2 = Graph::new("unregistered");
        g2.add("ring", DpdkNic::open(eal, cfg, pool()).unwrap()).unwrap();
        let unreg = sc
            .spawn(move || {
                g2.poll_all();
                current_lcore()
            })
            .join()
            .unwrap();
        (reg, unreg)
    });
    assert!(matches!(reg, Some(id) if id != 0), "registered lcore {reg:?}");
    assert_eq!(unreg, None);
    drop(g);

    // 5. net_null0 with two queue pairs split into two bricks (one per worker graph).
    let cfg =
        DpdkConfig { port: PortSpec::Name("net_null0".into()), queues: 2, mbufs: 4095, ..Default::default() };
    let null = DpdkNic::open(eal, cfg, pool()).unwrap();
    let mtu = null.mtu().unwrap();
    assert!(mtu >= 1500, "mtu {mtu}");
    let parts = null.into_queues();
    assert_eq!(parts.iter().map(|p| p.queues().to_vec()).collect::<Vec<_>>(), vec![vec![0], vec![1]]);
    for (i, part) in parts.into_iter().enumerate() {
        let c = part.counters();
        let mut g = Graph::new(format!("null{i}"));
        let id = g.add("null", part).unwrap();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n2 = std::sync::Arc::clone(&n);
        let sink = g
            .add(
                "sink",
                brick_core::bricks::RxTx::new(
                    Side::West,
                    |_: &mut Burst| {},
                    move |b: &mut Burst| {
                        n2.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed);
                        b.clear();
                    },
                ),
            )
            .unwrap();
        g.link(id, sink).unwrap();
        for _ in 0..10 {
            g.poll_all();
        }
        assert!(n.load(std::sync::atomic::Ordering::Relaxed) >= 64, "queue {i} received");
        inject(&mut g, id, &frames(100, 64));
        assert_eq!(c.tx_packets.get(), 64);
    }

    // 6. net_af_packet hot-plugged on a veth: the kernel on the other side sends and
    //    receives through the DPDK brick.
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    let devargs = format!("net_af_packet0,iface={}", veth.root);
    let cfg = DpdkConfig { port: PortSpec::Devargs(devargs), mbufs: 2047, ..Default::default() };
    let mut afp = DpdkNic::open(eal, cfg, pool()).unwrap();
    afp.set_mtu(1400).unwrap();
    assert_eq!(afp.mtu().unwrap(), 1400);
    afp.set_mtu(1500).unwrap();
    let mac = afp.mac().unwrap();
    assert_ne!(mac, [0; 6]);
    let c = afp.counters();
    let mut g = Graph::new("dpdk-afp");
    let id = g.add("afp", afp).unwrap();
    let got = collect_east_of(&mut g, id, "collect");
    let from_kernel = frames(2000, 100);
    for f in &from_kernel {
        assert!(raw.send(f));
    }
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= from_kernel.len()));
    for (p, f) in got.lock().unwrap().iter().zip(&from_kernel) {
        assert_eq!(p.data(), &f[..]);
    }
    let to_kernel = frames(3000, 100);
    inject(&mut g, id, &to_kernel);
    for f in &to_kernel {
        assert_eq!(&raw.recv(Duration::from_secs(2)).expect("frame from DPDK"), f);
    }
    assert_eq!(c.tx_packets.get(), 100);
    drop(g);
}

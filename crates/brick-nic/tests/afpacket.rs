//! AF_PACKET brick against the kernel: a veth pair whose peer lives in a test namespace.
//! Needs root (CAP_NET_ADMIN, CAP_NET_RAW), like CI.

mod common;

use std::time::Duration;

use brick_core::{Burst, Graph, Packet, PacketPool, PoolConfig, Side};
use brick_nic::{AfPacketConfig, AfPacketNic, Fanout, FanoutMode, TxMode};
use common::*;

fn pool(count: usize) -> PacketPool {
    PacketPool::new(PoolConfig { count, ..PoolConfig::default() }).unwrap()
}

/// Kernel → brick and brick → kernel, every byte compared, for one transmit mode.
fn round_trip(tx_mode: TxMode) {
    round_trip_with(AfPacketConfig { tx_mode, qdisc_bypass: true, ..AfPacketConfig::default() });
}

fn round_trip_with(cfg: AfPacketConfig) {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    let nic = AfPacketNic::open(&veth.root, cfg, pool(1024)).unwrap();
    let counters = nic.counters();
    let mut g = Graph::new("afp");
    let id = g.add("nic", nic).unwrap();
    let got = collect_east_of(&mut g, id, "collect");

    // Kernel → brick: 300 frames of every size from 60 to 1514 bytes.
    let sent: Vec<Vec<u8>> = (0..300u32).map(|i| test_frame(i, 60 + (i as usize * 97) % 1455)).collect();
    for f in &sent {
        assert!(raw.send(f));
    }
    assert!(poll_until(&mut g, Duration::from_secs(5), || got.lock().unwrap().len() >= sent.len()));
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), sent.len());
        for (p, f) in got.iter().zip(&sent) {
            assert_eq!(p.data(), &f[..]);
            assert_eq!(p.meta().l3_offset, 14);
        }
    }
    assert_eq!(counters.rx_packets.get(), 300);

    // Brick → kernel: 200 frames injected on the brick's east port.
    let out: Vec<Vec<u8>> = (1000..1200u32).map(|i| test_frame(i, 60 + (i as usize * 31) % 1455)).collect();
    for chunk in out.chunks(50) {
        let mut b = Burst::new();
        for f in chunk {
            b.push(Packet::from_slice(f)).unwrap();
        }
        g.inject(id, Side::East, 0, &mut b).unwrap();
    }
    for f in &out {
        let r = raw.recv(Duration::from_secs(2)).expect("frame from the brick");
        assert_eq!(&r, f);
    }
    let s = counters.snapshot();
    assert_eq!(s.tx_packets, 200);
    assert_eq!(s.tx_bytes, out.iter().map(|f| f.len() as u64).sum::<u64>());
    assert_eq!(s.brick_drops(), 0);

    // Too big for the MTU: dropped and counted, never sent.
    let mut b = Burst::new();
    b.push(Packet::from_slice(&test_frame(9999, 1515))).unwrap();
    g.inject(id, Side::East, 0, &mut b).unwrap();
    assert_eq!(counters.too_big.get(), 1);
    assert_eq!(g.stats(id).unwrap().drops_of("too big"), Some(1));
    assert!(raw.recv(Duration::from_millis(100)).is_none());
}

#[test]
fn round_trip_with_tx_ring() {
    round_trip(TxMode::Ring { frames: 256 });
}

#[test]
fn round_trip_with_sendmmsg() {
    round_trip(TxMode::Sendmmsg);
}

#[test]
fn round_trip_in_low_latency_mode() {
    // TPACKET_V2 receive ring, sendmmsg transmit (whatever tx_mode says).
    round_trip_with(AfPacketConfig {
        low_latency: true,
        tx_mode: TxMode::Ring { frames: 64 },
        ..AfPacketConfig::default()
    });
}

#[test]
fn low_latency_mode_hands_over_each_frame_at_once() {
    // TPACKET_V3 keeps a lone frame until its block retires (≥ 1 ms); V2 does not. Time the
    // wake-up of the socket after a single frame, many times, and compare the medians.
    let median = |low_latency: bool| -> Duration {
        let ns = Netns::new();
        let veth = Veth::new(&ns);
        let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
        let cfg = AfPacketConfig { low_latency, ..AfPacketConfig::default() };
        let nic = AfPacketNic::open(&veth.root, cfg, pool(64)).unwrap();
        let fd = brick_core::Brick::wake_fd(&nic).unwrap();
        let mut g = Graph::new("lat");
        let id = g.add("nic", nic).unwrap();
        let got = collect_east_of(&mut g, id, "collect");
        let mut times = Vec::new();
        for i in 0..40u32 {
            std::thread::sleep(Duration::from_millis(3));
            let t = std::time::Instant::now();
            assert!(raw.send(&test_frame(i, 100)));
            let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1000) };
            assert!(poll_until(&mut g, Duration::from_secs(2), || got.lock().unwrap().len() > i as usize));
            times.push(t.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    let (v3, v2) = (median(false), median(true));
    assert!(v2 < v3, "low latency median {v2:?} should beat the block ring's {v3:?}");
}

#[test]
fn vlan_tags_are_restored() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, 0x8100);
    let nic = AfPacketNic::open(&veth.root, AfPacketConfig::default(), pool(64)).unwrap();
    let mut g = Graph::new("vlan");
    let id = g.add("nic", nic).unwrap();
    let got = collect_east_of(&mut g, id, "collect");
    let mut f = test_frame(1, 100);
    f.splice(12..12, [0x81, 0x00, 0x20, 0x2a]); // priority 1, VLAN 42
    assert!(raw.send(&f));
    assert!(poll_until(&mut g, Duration::from_secs(3), || !got.lock().unwrap().is_empty()));
    assert_eq!(got.lock().unwrap()[0].data(), &f[..]);
}

/// A transmit-ring slot holds 2048 bytes with its header: with a jumbo MTU the frame limit
/// is the slot, and a VLAN tag's 4 extra bytes must not write past it (they did: the limit
/// for tagged frames was the slot + 4).
#[test]
fn a_tagged_frame_too_big_for_a_tx_ring_slot_is_dropped() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    ip(&["link", "set", &veth.root, "mtu", "9000"]);
    ip(&["-n", &ns.name, "link", "set", &veth.peer, "mtu", "9000"]);
    // The receiving veth takes the tag off (VLAN offload): the socket sees the inner type.
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    let cfg = AfPacketConfig { tx_mode: TxMode::Ring { frames: 8 }, ..AfPacketConfig::default() };
    let nic = AfPacketNic::open(&veth.root, cfg, pool(64)).unwrap();
    let counters = nic.counters();
    let mut g = Graph::new("ring-slot");
    let id = g.add("nic", nic).unwrap();
    let tagged = |len: usize| {
        let mut f = test_frame(7, len - 4);
        f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
        f
    };
    // Every slot once with the largest tagged frames: the ones that fit go, the others are
    // counted; none may touch the next slot (the last one is the end of the mapping).
    let mut sent = Vec::new();
    for len in [1990, 2000, 2001, 2004, 1990, 2003, 2002, 1990, 2004] {
        let mut b = Burst::new();
        b.push(Packet::from_slice(&tagged(len))).unwrap();
        g.inject(id, Side::East, 0, &mut b).unwrap();
        if len <= 2000 {
            sent.push(len);
        }
    }
    for len in &sent {
        let r = raw.recv(Duration::from_secs(2)).expect("a frame that fits a slot is sent");
        assert_eq!(r.len(), *len - 4, "the frame less its tag");
    }
    assert_eq!(counters.too_big.get(), 5, "frames longer than a slot's 2000 bytes of data");
    assert_eq!(counters.tx_packets.get(), sent.len() as u64);
}

/// Two worker graphs, each with an `AfPacketNic` on `ifname` in one fanout group (`mode`),
/// collecting the frames `keep` accepts; `prepare` sees each brick (with its worker index)
/// after it has joined the group.
fn fanout_workers(
    ifname: &str,
    mode: FanoutMode,
    group_salt: u16,
    keep: fn(&[u8]) -> bool,
    prepare: impl Fn(usize, &AfPacketNic),
) -> (Vec<Graph>, Vec<Collected>) {
    let group = (std::process::id() % 60000) as u16 + group_salt;
    let cfg =
        AfPacketConfig { fanout: Some(Fanout { group, mode, rollover: false }), ..AfPacketConfig::default() };
    let mut graphs = Vec::new();
    let mut gots = Vec::new();
    for i in 0..2 {
        let nic = AfPacketNic::open(ifname, cfg.clone(), pool(512)).unwrap();
        prepare(i, &nic);
        let mut g = Graph::new(format!("worker{i}"));
        let id = g.add("nic", nic).unwrap();
        gots.push(collect_east_of_matching(&mut g, id, "collect", keep));
        graphs.push(g);
    }
    (graphs, gots)
}

/// Polls every graph until their collectors hold `n` frames in all, or 5 s; returns the
/// count per worker.
fn poll_workers(graphs: &mut [Graph], gots: &[Collected], n: usize) -> Vec<usize> {
    let total = || gots.iter().map(|g| g.lock().unwrap().len()).sum::<usize>();
    let t0 = std::time::Instant::now();
    while total() < n && t0.elapsed() < Duration::from_secs(5) {
        for g in graphs.iter_mut() {
            g.poll_all();
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    gots.iter().map(|g| g.lock().unwrap().len()).collect()
}

#[test]
fn fanout_shares_an_interface() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    let (mut graphs, gots) = fanout_workers(&veth.root, FanoutMode::LoadBalance, 1, is_test_frame, |_, _| {});
    for i in 0..200 {
        assert!(raw.send(&test_frame(i, 64)));
    }
    let counts = poll_workers(&mut graphs, &gots, 200);
    assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
    assert!(counts.iter().all(|&c| c >= 50), "round robin splits the load: {counts:?}");
    // Every frame reached exactly one worker.
    let mut seqs: Vec<u32> = gots
        .iter()
        .flat_map(|g| {
            g.lock()
                .unwrap()
                .iter()
                .map(|p| u32::from_be_bytes(p.data()[14..18].try_into().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    seqs.sort();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
}

/// A VXLAN frame to UDP port 4789 carrying VNI `vni` and `tag` in its first inner bytes:
/// over IPv4 with `ip_options` extra 32-bit words of IPv4 options, or over IPv6.
fn vxlan_frame(vni: u32, tag: u32, v6: bool, ip_options: usize) -> Vec<u8> {
    let mut f = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0xbb, 0, 0, 0, 2];
    let mut udp = vec![0xc3, 0x50, 0x12, 0xb5, 0, 0, 0, 0]; // 50000 → 4789
    udp.extend_from_slice(&[0x08, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0]);
    udp.extend_from_slice(&tag.to_be_bytes());
    udp.resize(60, 0x5a);
    let ulen = udp.len() as u16;
    udp[4..6].copy_from_slice(&ulen.to_be_bytes());
    if v6 {
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&ulen.to_be_bytes());
        f.extend_from_slice(&[17, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    } else {
        let ihl = 5 + ip_options;
        let total = (ihl * 4) as u16 + ulen;
        f.extend_from_slice(&[0x08, 0x00, 0x40 | ihl as u8, 0]);
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1]);
        f.extend(std::iter::repeat_n(1u8, ip_options * 4)); // NOP options
    }
    f.extend_from_slice(&udp);
    f
}

/// The VNI fanout program puts each VXLAN frame on socket `VNI % 2` (IPv4 with and without
/// options, IPv6) and everything else on socket 0.
#[test]
fn vni_fanout_program_steers_vxlan_by_vni() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    // The test's frames come from 02:bb:…; the kernel's own (IPv6 router solicitations…)
    // do not.
    let (mut graphs, gots) = fanout_workers(
        &veth.root,
        FanoutMode::Program,
        2,
        |f| f.get(6..8) == Some(&[0x02, 0xbb]),
        |i, nic| {
            if i == 1 {
                nic.set_fanout_program(&brick_nic::bpf::vxlan_vni_fanout(4789)).unwrap();
            }
        },
    );
    // (frame, socket it must reach); the tag is the frame's index.
    let mut cases: Vec<(Vec<u8>, usize)> = Vec::new();
    for vni in [1u32, 2, 3, 0xfffffe, 0xffffff, 4096, 77] {
        for (v6, opts) in [(false, 0), (false, 2), (true, 0)] {
            let tag = cases.len() as u32;
            cases.push((vxlan_frame(vni, tag, v6, opts), (vni % 2) as usize));
        }
    }
    let tag = cases.len() as u32;
    let mut other_port = vxlan_frame(3, tag, false, 0);
    other_port[14 + 20 + 3] = 0x36; // UDP to 4790
    cases.push((other_port, 0));
    let tag = cases.len() as u32;
    cases.push((test_frame(tag, 64), 0));
    for (f, _) in &cases {
        assert!(raw.send(f));
    }
    let counts = poll_workers(&mut graphs, &gots, cases.len());
    assert_eq!(counts.iter().sum::<usize>(), cases.len(), "per worker {counts:?}");
    for (worker, got) in gots.iter().enumerate() {
        for p in got.lock().unwrap().iter() {
            let (i, (f, want)) =
                cases.iter().enumerate().find(|(_, (f, _))| &f[..] == p.data()).expect("sent frame");
            assert_eq!(*want, worker, "case {i} ({} bytes) reached worker {worker}", f.len());
        }
    }
    // A socket that did not join with mode Program cannot set one.
    let plain = AfPacketNic::open(&veth.root, AfPacketConfig::default(), pool(64)).unwrap();
    assert!(plain.set_fanout_program(&brick_nic::bpf::vxlan_vni_fanout(4789)).is_err());
}

#[test]
fn kernel_drops_are_counted_when_the_ring_overflows() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    // One 4 KiB block: room for a couple of full-size frames.
    let cfg = AfPacketConfig {
        block_size: 4096,
        block_count: 1,
        retire_timeout_ms: 1000,
        ..AfPacketConfig::default()
    };
    let nic = AfPacketNic::open(&veth.root, cfg, pool(64)).unwrap();
    let counters = nic.counters();
    let mut g = Graph::new("drops");
    let id = g.add("nic", nic).unwrap();
    let _got = collect_east_of(&mut g, id, "collect");
    for i in 0..50 {
        raw.send(&test_frame(i, 1500));
    }
    std::thread::sleep(Duration::from_millis(50));
    g.tick_all();
    assert!(counters.kernel_drops.get() > 0, "{:?}", counters.snapshot());
}

#[test]
fn pool_exhaustion_is_counted_not_fatal() {
    let ns = Netns::new();
    let veth = Veth::new(&ns);
    let raw = RawSock::open_in(&ns, &veth.peer, TEST_ETHERTYPE);
    let nic = AfPacketNic::open(&veth.root, AfPacketConfig::default(), pool(4)).unwrap();
    let counters = nic.counters();
    let mut g = Graph::new("pool");
    let id = g.add("nic", nic).unwrap();
    let got = collect_east_of(&mut g, id, "collect"); // keeps packets: the pool drains
    for i in 0..10 {
        raw.send(&test_frame(i, 80));
    }
    assert!(poll_until(&mut g, Duration::from_secs(3), || counters.rx_pool_empty.get() >= 6));
    assert_eq!(got.lock().unwrap().len(), 4);
    assert_eq!(g.stats(id).unwrap().drops_of("rx pool empty"), Some(6));
}

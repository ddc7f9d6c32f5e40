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

/// A transmit-ring slot holds 2048 bytes with its header and the virtio-net header (1990 of
/// frame data): with a jumbo MTU the frame limit is the slot, and a VLAN tag's 4 extra bytes
/// must not write past it (they did: the limit for tagged frames was the slot + 4).
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
    for len in [1980, 1990, 1991, 1994, 1980, 1993, 1992, 1980, 1994] {
        let mut b = Burst::new();
        b.push(Packet::from_slice(&tagged(len))).unwrap();
        g.inject(id, Side::East, 0, &mut b).unwrap();
        if len <= 1990 {
            sent.push(len);
        }
    }
    for len in &sent {
        let r = raw.recv(Duration::from_secs(2)).expect("a frame that fits a slot is sent");
        assert_eq!(r.len(), *len - 4, "the frame less its tag");
    }
    assert_eq!(counters.too_big.get(), 5, "frames longer than a slot's 1990 bytes of data");
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

/// What the brick saw of a TCP stream that one kernel sends another over VXLAN.
#[derive(Debug, Default)]
struct Seen {
    /// Inner TCP frames.
    frames: u32,
    /// Of which super-frames (GSO metadata), and the largest frame.
    supers: u32,
    largest: usize,
    /// Frames whose partial checksum the brick put at the inner TCP header.
    inner_partial: u32,
    /// Super-frames whose partial checksum was not said to be at the inner TCP header.
    wrong_offload: Vec<(u16, u16)>,
    /// Frames whose inner TCP or outer UDP checksum was wrong once the partial one was
    /// completed where the brick said, or whose payload was not the sent one.
    bad_csum: u32,
    bad_payload: u32,
    /// Payload bytes seen, and the sender's initial sequence number (from its SYN).
    payload: u64,
    isn: Option<u32>,
}

/// The byte at offset `i` of the test stream.
fn stream_byte(i: u64) -> u8 {
    (i % 251) as u8
}

fn be16(d: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([d[at], d[at + 1]]))
}

/// Checks one frame received from the underlay: VXLAN (port 4789) carrying IPv4/TCP.
fn inspect(p: &Packet, seen: &mut Seen) {
    use brick_core::{GsoType, OffloadFlags};
    let d = p.data();
    let l4 = match be16(d, 12) {
        0x0800 if d[23] == 17 => 14 + usize::from(d[14] & 0xf) * 4,
        0x86dd if d[20] == 17 => 54,
        _ => return,
    };
    if d.len() < l4 + 16 + 54 || be16(d, l4 + 2) != 4789 {
        return;
    }
    let inner = l4 + 16;
    let l3 = inner + 14;
    if be16(d, inner + 12) != 0x0800 || d[l3 + 9] != 6 {
        return;
    }
    let tcp = l3 + usize::from(d[l3] & 0xf) * 4;
    let end = (l3 + be16(d, l3 + 2)).min(d.len());
    let m = p.meta();
    seen.frames += 1;
    seen.largest = seen.largest.max(d.len());
    // The kernel leaves one checksum to "offload" (usually the inner TCP one; the outer UDP
    // one when it completed the inner itself): the brick must say which.
    let partial = m.offload.contains(OffloadFlags::CSUM_NEEDED);
    if partial && usize::from(m.csum_start) == tcp && m.csum_offset == 16 {
        seen.inner_partial += 1;
    }
    if m.gso_type != GsoType::None {
        seen.supers += 1;
        if !partial || usize::from(m.csum_start) != tcp || m.csum_offset != 16 {
            seen.wrong_offload.push((m.csum_start, m.csum_offset));
        }
    } else {
        // Completed where the brick says, both checksums are right.
        use brick_core::checksum::{csum_add, csum_add_value, csum_fold};
        let mut f = d.to_vec();
        if partial {
            assert!(brick_nic::offload::complete_checksum(&mut f, m.csum_start, m.csum_offset));
        }
        let acc = csum_add_value(csum_add(0, &f[l3 + 12..l3 + 20]), 6 + (end - tcp) as u64);
        let inner_ok = csum_fold(csum_add(acc, &f[tcp..end])) == 0;
        let addrs = if l4 == 54 { &f[22..54] } else { &f[26..34] };
        let udp_len = be16(&f, l4 + 4);
        let acc = csum_add_value(csum_add(0, addrs), 17 + udp_len as u64);
        let outer_ok = be16(&f, l4 + 6) == 0 || csum_fold(csum_add(acc, &f[l4..l4 + udp_len])) == 0;
        if !inner_ok || !outer_ok {
            seen.bad_csum += 1;
        }
    }
    let seq = u32::from_be_bytes([d[tcp + 4], d[tcp + 5], d[tcp + 6], d[tcp + 7]]);
    if d[tcp + 13] & 0x12 == 0x02 {
        seen.isn = Some(seq);
    }
    let data = &d[(tcp + usize::from(d[tcp + 12] >> 4) * 4).min(end)..end];
    if let Some(isn) = seen.isn {
        let at = u64::from(seq.wrapping_sub(isn).wrapping_sub(1));
        if data.iter().enumerate().any(|(i, &b)| b != stream_byte(at + i as u64)) {
            seen.bad_payload += 1;
        }
    }
    seen.payload += data.len() as u64;
}

/// Two kernels (namespaces `k1`, `k2`, a veth between them, default offloads) with a VXLAN
/// device each, static flooding to each other, send `bytes` over TCP from k1 to k2. The
/// brick listens on k2's veth; returns what it saw and its counters.
fn kernel_vxlan_tcp(v6: bool, low_latency: bool, bytes: u64) -> (Seen, brick_nic::NicStats) {
    let (k1, k2) = (Netns::new(), Netns::new());
    let (v1, v2) = (unique("bnx"), unique("bnx"));
    ip(&["link", "add", &v1, "netns", &k1.name, "type", "veth", "peer", "name", &v2, "netns", &k2.name]);
    let (u1, u2, plen) = if v6 { ("fd66::1", "fd66::2", 64) } else { ("10.66.0.1", "10.66.0.2", 24) };
    for (ns, dev, me, peer, o) in [(&k1, &v1, u1, u2, "10.67.0.1/24"), (&k2, &v2, u2, u1, "10.67.0.2/24")] {
        let n = ns.name.as_str();
        if v6 {
            ip(&["-n", n, "addr", "add", &format!("{me}/{plen}"), "dev", dev, "nodad"]);
        } else {
            disable_ipv6(Some(n), dev);
            ip(&["-n", n, "addr", "add", &format!("{me}/{plen}"), "dev", dev]);
        }
        ip(&["-n", n, "link", "set", dev, "up"]);
        ip(&[
            "-n", n, "link", "add", "vx", "type", "vxlan", "id", "66", "dstport", "4789", "local", me, "dev",
            dev,
        ]);
        ip(&["-n", n, "link", "set", "vx", "up"]);
        disable_ipv6(Some(n), "vx");
        ip(&["-n", n, "addr", "add", o, "dev", "vx"]);
        let out = std::process::Command::new("bridge")
            .args(["-n", n, "fdb", "append", "00:00:00:00:00:00", "dev", "vx", "dst", peer])
            .output()
            .unwrap();
        assert!(out.status.success(), "bridge fdb: {}", String::from_utf8_lossy(&out.stderr));
    }
    let big =
        PacketPool::new(PoolConfig { count: 256, data_room: 65_536 + 512, ..PoolConfig::default() }).unwrap();
    let cfg = AfPacketConfig { low_latency, ..AfPacketConfig::default() };
    let dev = v2.clone();
    let small = pool(2048);
    let nic = k2.run(move || AfPacketNic::open(&dev, cfg, small).unwrap().with_big_pool(big));
    let counters = nic.counters();
    let mut g = Graph::new("vxlan-tcp");
    let id = g.add("nic", nic).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::default()));
    let s2 = std::sync::Arc::clone(&seen);
    let sink = g
        .add(
            "inspect",
            brick_core::bricks::RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    let mut s = s2.lock().unwrap();
                    for p in b.drain() {
                        inspect(&p, &mut s);
                    }
                },
            ),
        )
        .unwrap();
    g.link(id, sink).unwrap();

    use std::io::{Read, Write};
    let server = k2.spawn(|| {
        let l = std::net::TcpListener::bind("10.67.0.2:9000").unwrap();
        let (mut c, _) = l.accept().unwrap();
        let (mut n, mut bad) = (0u64, 0u64);
        let mut buf = vec![0u8; 65536];
        loop {
            let r = c.read(&mut buf).unwrap();
            if r == 0 {
                break (n, bad);
            }
            bad +=
                buf[..r].iter().enumerate().filter(|&(i, &b)| b != stream_byte(n + i as u64)).count() as u64;
            n += r as u64;
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let client = k1.spawn(move || {
        let data: Vec<u8> = (0..bytes).map(stream_byte).collect();
        let mut c =
            std::net::TcpStream::connect_timeout(&"10.67.0.2:9000".parse().unwrap(), Duration::from_secs(5))
                .expect("connect across the kernels' VXLAN");
        c.write_all(&data).unwrap();
    });
    let done = poll_until(&mut g, Duration::from_secs(30), || client.is_finished() && server.is_finished());
    assert!(done, "the transfer did not end");
    client.join().unwrap();
    let (got, bad) = server.join().unwrap();
    assert_eq!((got, bad), (bytes, 0), "the kernels' own transfer");
    // Whatever is still in the ring.
    poll_until(&mut g, Duration::from_millis(300), || false);
    let s = std::mem::take(&mut *seen.lock().unwrap());
    (s, counters.snapshot())
}

/// The brick receives a local kernel's VXLAN traffic the way the kernel hands it over with
/// default offloads: the inner TCP checksum is partial (CHECKSUM_PARTIAL) and the brick
/// says exactly where (it used to point at the outer UDP header, leaving the inner segment
/// with a bad checksum after decapsulation), and TCP super-frames cross the veth whole
/// (GSO metadata, into the big pool). Every frame's payload is the stream's, at its place.
fn kernel_vxlan_offloads_are_exact(v6: bool, low_latency: bool) {
    let bytes = 3 << 20;
    let (seen, stats) = kernel_vxlan_tcp(v6, low_latency, bytes);
    assert!(seen.isn.is_some(), "the SYN was seen: {seen:?}");
    assert!(seen.wrong_offload.is_empty(), "partial checksum not at the inner TCP header: {seen:?}");
    assert_eq!((seen.bad_csum, seen.bad_payload), (0, 0), "{seen:?}");
    assert!(seen.inner_partial > seen.supers, "segments with a partial inner checksum too: {seen:?}");
    // The brick only watches this stream: frames the kernel drops at a full ring (the test
    // thread starved on a loaded machine) are counted, and TCP never resends them.
    assert!(
        seen.payload >= bytes || (stats.kernel_drops > 0 && seen.payload >= bytes / 2),
        "the whole stream went by, but for frames the kernel counted as dropped: {seen:?} {stats:?}"
    );
    assert!(seen.supers > 0 && seen.largest > 1514, "super-frames arrive whole: {seen:?}");
    assert_eq!(
        (stats.too_big, stats.rx_truncated, stats.rx_errors, stats.bad_offload),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.rx_gso, u64::from(seen.supers), "{stats:?}");
}

#[test]
fn kernel_vxlan_tcp_offloads_are_exact_v3_ring() {
    kernel_vxlan_offloads_are_exact(false, false);
}

#[test]
fn kernel_vxlan_tcp_offloads_are_exact_v2_ring_copy_path() {
    // Super-frames are bigger than a V2 slot: they come through PACKET_COPY_THRESH.
    kernel_vxlan_offloads_are_exact(false, true);
}

#[test]
fn kernel_vxlan_over_ipv6_tcp_offloads_are_exact() {
    kernel_vxlan_offloads_are_exact(true, true);
}

//! TCP super-frames (GSO) through the VTEP: carried whole with their metadata when the
//! underlay takes UDP-tunnel super-frames, cut in software otherwise, judged by their segment
//! size for the MTU, refused when malformed.

mod common;

use std::net::Ipv4Addr;

use brick_core::{Burst, GsoType, Meta, OffloadFlags, Packet, Side};
use brick_vtep::{Vtep, VtepConfig};
use common::{Captured, VM_A, VM_B};
use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

/// The VTEP with one VM, capturing frames with their metadata.
type Host = common::Host<(Vec<u8>, Meta)>;
type Seen = Captured<(Vec<u8>, Meta)>;

const MAC_1: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_2: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

impl Host {
    fn new(ip: [u8; 4], mac: [u8; 6], v6: bool, tunnel_gso: bool) -> Host {
        let local = if v6 { format!("fd00::{}", ip[3]).parse().unwrap() } else { Ipv4Addr::from(ip).into() };
        let cfg = VtepConfig { tunnel_gso, ..VtepConfig::new(local, mac) };
        let mut h = Host::with(cfg, 1024, |p| (p.data().to_vec(), *p.meta()));
        h.g.brick_mut::<Vtep>(h.vtep).unwrap().add_vni(42, h.port).unwrap();
        h.settle();
        h
    }

    fn vtep(&self) -> &Vtep {
        self.g.brick::<Vtep>(self.vtep).unwrap()
    }

    fn inject(&mut self, side: Side, frames: Vec<(Vec<u8>, Meta)>) {
        let mut b = Burst::new();
        for (f, m) in frames {
            let mut p = Packet::from_slice(&f);
            *p.meta_mut() = m;
            b.push(p).unwrap();
        }
        let port = if side == Side::West { 0 } else { self.port };
        self.g.inject(self.vtep, side, port, &mut b).unwrap();
    }

    fn take(s: &Seen) -> Vec<(Vec<u8>, Meta)> {
        std::mem::take(&mut *s.lock().unwrap())
    }

    fn drops(&self, reason: &str) -> u64 {
        self.g.stats(self.vtep).unwrap().drops_of(reason).unwrap()
    }
}

/// Two hosts that learnt each other's VM: A behind host 1, B behind host 2.
fn pair(v6: bool, tunnel_gso: bool) -> (Host, Host) {
    let mut h1 = Host::new([10, 0, 0, 1], MAC_1, v6, tunnel_gso);
    let mut h2 = Host::new([10, 0, 0, 2], MAC_2, v6, tunnel_gso);
    // Each VM says hello once (broadcast): both VTEPs learn the other side's MAC.
    hello(&mut h1, &mut h2, VM_A);
    hello(&mut h2, &mut h1, VM_B);
    (h1, h2)
}

fn hello(from: &mut Host, to: &mut Host, mac: [u8; 6]) {
    let hello = tcp_frame(mac, [0xff; 6], &[], 1);
    from.inject(Side::East, vec![(hello, Meta::default())]);
    let wire = Host::take(&from.wire);
    assert!(!wire.is_empty());
    to.inject(Side::West, wire);
    Host::take(&to.vm);
}

fn tcp_frame(src: [u8; 6], dst: [u8; 6], payload: &[u8], seq: u32) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst)
        .ipv4([192, 168, 42, 1], [192, 168, 42, 2], 64)
        .tcp(40000, 5201, seq, 1000)
        .ack(1)
        .psh()
        .write(&mut v, payload)
        .unwrap();
    v[20] |= 0x40; // DF, as TCP sets it
    v[24] = 0;
    v[25] = 0;
    let c = brick_core::checksum::checksum(&v[14..34]);
    v[24..26].copy_from_slice(&c.to_be_bytes());
    v
}

/// A super-frame as a TAP with TSO hands it over: partial checksum (pseudo-header sum in
/// the field), GSO type and size.
fn super_frame(payload: &[u8], mss: u16) -> (Vec<u8>, Meta) {
    let mut f = tcp_frame(VM_A, VM_B, payload, 1000);
    let tcp_len = (f.len() - 34) as u64;
    let pseudo = brick_core::checksum::csum_add(6 + tcp_len, &f[26..34]);
    let partial = !brick_core::checksum::csum_fold(pseudo);
    f[50..52].copy_from_slice(&partial.to_be_bytes());
    let m = Meta {
        offload: OffloadFlags::CSUM_NEEDED,
        csum_start: 34,
        csum_offset: 16,
        gso_size: mss,
        gso_type: GsoType::TcpV4,
        ..Meta::default()
    };
    (f, m)
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn super_frame_crosses_encap_and_decap_whole_with_its_metadata() {
    let (mut h1, mut h2) = pair(false, true);
    let data = payload(20_000);
    let (frame, meta) = super_frame(&data, 1398);
    h1.inject(Side::East, vec![(frame.clone(), meta)]);
    let wire = Host::take(&h1.wire);
    assert_eq!(wire.len(), 1, "one outer frame");
    let (outer, om) = &wire[0];
    assert_eq!(outer.len(), frame.len() + 50);
    assert_eq!(&outer[50..], &frame[..], "inner bytes untouched (checksum still partial)");
    assert_eq!(u16::from_be_bytes([outer[16], outer[17]]) as usize, outer.len() - 14, "outer IPv4 length");
    assert_eq!(u16::from_be_bytes([outer[38], outer[39]]) as usize, outer.len() - 34, "outer UDP length");
    assert_eq!(brick_core::checksum::checksum(&outer[14..34]), 0, "outer IPv4 header checksum");
    assert_eq!((om.gso_type, om.gso_size), (GsoType::TcpV4, 1398));
    assert!(om.offload.contains(OffloadFlags::CSUM_NEEDED));
    assert_eq!((om.csum_start, om.csum_offset, om.l3_offset, om.l4_offset), (84, 16, 14, 34));
    assert_eq!(h1.vtep().counters().gso_tx, 1);

    h2.inject(Side::West, wire);
    let vm = Host::take(&h2.vm);
    assert_eq!(vm.len(), 1, "one super-frame to the VM");
    let (inner, im) = &vm[0];
    assert_eq!(inner, &frame);
    assert_eq!((im.gso_type, im.gso_size, im.csum_start, im.csum_offset), (GsoType::TcpV4, 1398, 34, 16));
    assert!(im.offload.contains(OffloadFlags::CSUM_NEEDED));
    assert_eq!(im.vni, Some(42));
    assert_eq!(h2.vtep().counters().gso_rx, 1);
}

/// Checks outer IPv4 VXLAN segments and returns the inner TCP payload they carry, in order.
fn reassemble(wire: &[(Vec<u8>, Meta)], mtu: usize, v6: bool) -> Vec<u8> {
    let overhead = if v6 { 70 } else { 50 };
    let mut joined = Vec::new();
    for (f, m) in wire {
        assert!(f.len() <= mtu + 14, "segment of {} bytes within the MTU", f.len());
        assert_eq!(m.gso_type, GsoType::None);
        assert!(!m.offload.contains(OffloadFlags::CSUM_NEEDED));
        let inner = &f[overhead..];
        let s = SlicedPacket::from_ethernet(inner).unwrap();
        let Some(etherparse::NetSlice::Ipv4(ip)) = &s.net else { panic!() };
        let Some(TransportSlice::Tcp(tcp)) = &s.transport else { panic!() };
        let h = ip.header().to_header();
        assert_eq!(tcp.to_header().calc_checksum_ipv4(&h, tcp.payload()).unwrap(), tcp.checksum());
        assert_eq!(tcp.sequence_number(), 1000 + joined.len() as u32);
        joined.extend_from_slice(tcp.payload());
    }
    joined
}

#[test]
fn without_tunnel_gso_the_vtep_segments_in_software() {
    for v6 in [false, true] {
        // IPv6 underlay: tunnel super-frames are not offered even when asked for.
        let (mut h1, mut h2) = pair(v6, v6);
        let data = payload(30_000);
        // 54 + 1380 fits the IPv6 underlay's inner MTU too (1500 - 70 + 14).
        let (frame, meta) = super_frame(&data, 1380);
        h1.inject(Side::East, vec![(frame, meta)]);
        let wire = Host::take(&h1.wire);
        assert_eq!(wire.len(), 22, "30000 / 1380 rounded up");
        assert_eq!(reassemble(&wire, 1500, v6), data);
        let c = h1.vtep().counters();
        assert_eq!((c.gso_tx, c.gso_segmented, c.gso_segments), (0, 1, 22));
        // The far end delivers 22 ordinary frames.
        h2.inject(Side::West, wire);
        let vm = Host::take(&h2.vm);
        assert_eq!(vm.len(), 22);
        assert!(vm.iter().all(|(_, m)| m.gso_type == GsoType::None));
    }
}

#[test]
fn mtu_is_judged_by_segment_size_not_length() {
    let (mut h1, _h2) = pair(false, true);
    // 54 bytes of headers + 1410 = 1464 = 1500 - 36: the largest segment that fits.
    let (ok, m) = super_frame(&payload(5000), 1410);
    h1.inject(Side::East, vec![(ok, m)]);
    assert_eq!(Host::take(&h1.wire).len(), 1);
    let (big, m) = super_frame(&payload(5000), 1411);
    h1.inject(Side::East, vec![(big, m)]);
    assert!(Host::take(&h1.wire).is_empty());
    assert_eq!(h1.drops("too big"), 1);
    let icmp = Host::take(&h1.vm);
    assert_eq!(icmp.len(), 1, "ICMP fragmentation needed back to the VM");
    let f = &icmp[0].0;
    assert_eq!(&f[34..36], &[3, 4]);
    assert_eq!(u16::from_be_bytes([f[40], f[41]]), 1450);
}

#[test]
fn malformed_gso_metadata_is_dropped_and_counted() {
    let (mut h1, mut h2) = pair(false, true);
    let (frame, meta) = super_frame(&payload(5000), 1398);
    let bad = [
        Meta { gso_size: 0, ..meta },
        Meta { gso_type: GsoType::TcpV6, ..meta },
        Meta { csum_start: 20, ..meta },
        Meta { gso_size: 2, ..meta },
    ];
    h1.inject(Side::East, bad.iter().map(|m| (frame.clone(), *m)).collect());
    let mut udp = frame.clone();
    udp[23] = 17;
    h1.inject(Side::East, vec![(udp, meta)]);
    assert!(Host::take(&h1.wire).is_empty());
    assert_eq!(h1.drops("bad gso"), 5);
    // From the underlay: GSO metadata whose checksum start lies in the outer headers.
    h1.inject(Side::East, vec![(frame, meta)]);
    let mut wire = Host::take(&h1.wire);
    wire[0].1.csum_start = 34;
    h2.inject(Side::West, wire);
    assert!(Host::take(&h2.vm).is_empty());
    assert_eq!(h2.drops("bad gso"), 1);
}

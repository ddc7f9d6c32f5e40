//! In-memory behaviour of the VTEP: every frame built with etherparse and checked byte by byte.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use brick_core::Timestamp;
use brick_vtep::wire::{self, checksum, csum_add, csum_fold, pseudo_v6};
use brick_vtep::{VniOptions, Vtep, VtepConfig, VtepError};
use common::*;
use etherparse::{Ipv4HeaderSlice, PacketBuilder, SlicedPacket};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cfg4() -> VtepConfig {
    VtepConfig::new(ip("10.0.0.1"), LOCAL_MAC)
}

fn cfg6() -> VtepConfig {
    VtepConfig::new(ip("fd00::1"), LOCAL_MAC)
}

/// A bed with VNI 42 on VM 0 (and 43 on VM 1 if present), joins flushed.
fn bed4(vms: usize) -> Bed {
    let mut b = Bed::new(cfg4(), vms);
    let p0 = b.vms[0].0;
    b.vtep_mut().add_vni(42, p0).unwrap();
    if vms > 1 {
        let p1 = b.vms[1].0;
        b.vtep_mut().add_vni(43, p1).unwrap();
    }
    b.g.poll_all();
    b.take_wire();
    b
}

/// Checks an outer IPv4 VXLAN frame and returns (outer dst MAC, dst IP, UDP sport, VNI, inner).
fn check_outer4(f: &[u8]) -> ([u8; 6], Ipv4Addr, u16, u32, Vec<u8>) {
    assert_eq!(mac(f, 6), LOCAL_MAC);
    assert_eq!(&f[12..14], &[0x08, 0x00]);
    let iph = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
    assert_eq!(iph.ihl(), 5);
    assert_eq!(iph.total_len() as usize, f.len() - 14);
    assert_eq!(iph.ttl(), 64);
    assert!(iph.dont_fragment());
    assert_eq!(iph.protocol(), etherparse::IpNumber::UDP);
    assert_eq!(iph.header_checksum(), iph.to_header().calc_header_checksum(), "IPv4 header checksum");
    assert_eq!(iph.source_addr(), Ipv4Addr::new(10, 0, 0, 1));
    let udp = &f[34..42];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    assert!(sport >= 49152, "source port {sport} in the dynamic range");
    assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
    assert_eq!(u16::from_be_bytes([udp[4], udp[5]]) as usize, f.len() - 34);
    assert_eq!(&udp[6..8], &[0, 0], "UDP checksum zero over IPv4");
    assert_eq!(&f[42..46], &[0x08, 0, 0, 0], "flags: I only, reserved zero");
    assert_eq!(f[49], 0);
    let vni = u32::from_be_bytes([0, f[46], f[47], f[48]]);
    (mac(f, 0), iph.destination_addr(), sport, vni, f[50..].to_vec())
}

fn check_outer6(f: &[u8]) -> ([u8; 6], Ipv6Addr, u32, Vec<u8>) {
    assert_eq!(&f[12..14], &[0x86, 0xdd]);
    let sliced = SlicedPacket::from_ethernet(f).unwrap();
    assert!(sliced.net.is_some());
    let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
    assert_eq!(plen, f.len() - 54, "payload length is exactly UDP + VXLAN + inner");
    assert_eq!(f[20], 17);
    let src: [u8; 16] = f[22..38].try_into().unwrap();
    let dst: [u8; 16] = f[38..54].try_into().unwrap();
    assert_eq!(Ipv6Addr::from(src), "fd00::1".parse::<Ipv6Addr>().unwrap());
    assert_ne!(&f[60..62], &[0, 0], "UDP checksum computed over IPv6");
    let acc = pseudo_v6(&src, &dst, plen as u32, 17);
    assert_eq!(csum_fold(csum_add(acc, &f[54..])), 0, "UDP checksum valid");
    assert!(u16::from_be_bytes([f[54], f[55]]) >= 49152);
    let vni = u32::from_be_bytes([0, f[66], f[67], f[68]]);
    (mac(f, 0), Ipv6Addr::from(dst), vni, f[70..].to_vec())
}

#[test]
fn add_vni_joins_with_igmpv3_and_broadcast_goes_to_the_group() {
    let mut b = Bed::new(cfg4(), 1);
    let p = b.vms[0].0;
    b.vtep_mut().add_vni(42, p).unwrap();
    b.g.poll_all();
    let w = b.take_wire();
    assert_eq!(w.len(), 1, "one IGMPv3 report");
    let r = &w[0];
    assert_eq!(mac(r, 0), [1, 0, 0x5e, 0, 0, 0x16]);
    let iph = Ipv4HeaderSlice::from_slice(&r[14..]).unwrap();
    assert_eq!((iph.ihl(), iph.ttl(), iph.protocol().0), (6, 1, 2));
    assert_eq!(iph.destination_addr(), Ipv4Addr::new(224, 0, 0, 22));
    assert_eq!(&r[34..38], &[0x94, 4, 0, 0], "router alert");
    let igmp = &r[38..38 + 16];
    assert_eq!(igmp[0], 0x22);
    assert_eq!(checksum(igmp), 0);
    assert_eq!(&igmp[6..8], &[0, 1]);
    assert_eq!(&igmp[8..16], &[4, 0, 0, 0, 230, 0, 0, 42], "CHANGE_TO_EXCLUDE 230.0.0.42");

    let frame = inner64([0xff; 6], VM_A);
    b.rx_vm(0, std::slice::from_ref(&frame));
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let (dmac, dst, _, vni, inner) = check_outer4(&w[0]);
    assert_eq!(dmac, [1, 0, 0x5e, 0, 0, 42]);
    assert_eq!(dst, Ipv4Addr::new(230, 0, 0, 42));
    assert_eq!(vni, 42);
    assert_eq!(inner, frame, "inner frame untouched");
    // The report is repeated once after a second (robustness).
    std::thread::sleep(Duration::from_millis(1100));
    b.g.tick_all();
    b.g.poll_all();
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0][38], 0x22);
}

#[test]
fn decap_delivers_learns_and_unicast_goes_back_to_the_remote() {
    let mut b = bed4(2);
    let inner = inner64(VM_A, VM_B);
    b.rx_wire(&[vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner)]);
    assert_eq!(b.take_vm(0), vec![inner.clone()], "stripped, exact bytes, to VNI 42's port");
    assert!(b.take_vm(1).is_empty(), "VNI 43 sees nothing");
    let fdb = b.vtep().fdb(42, Timestamp::now());
    assert_eq!(fdb.len(), 1);
    assert_eq!(fdb[0].mac, VM_B);
    assert_eq!(fdb[0].value.ip, ip("10.0.0.2"));
    assert_eq!(fdb[0].value.mac, Some(REMOTE_MAC));
    // The VM answers: unicast to the learnt VTEP, no ARP needed (outer MAC learnt).
    let reply = inner64(VM_B, VM_A);
    b.rx_vm(0, std::slice::from_ref(&reply));
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let (dmac, dst, _, vni, inner2) = check_outer4(&w[0]);
    assert_eq!((dmac, dst, vni), (REMOTE_MAC, Ipv4Addr::new(10, 0, 0, 2), 42));
    assert_eq!(inner2, reply);
    // The same inner MAC in VNI 43 is unknown: flooded to 43's group.
    b.rx_vm(1, &[reply]);
    let (_, dst, _, vni, _) = check_outer4(&b.take_wire()[0]);
    assert_eq!((dst, vni), (Ipv4Addr::new(230, 0, 0, 43), 43));
    let info = b.vtep().vni_info(42).unwrap();
    assert_eq!((info.counters.decap_pkts, info.counters.encap_pkts, info.counters.learned), (1, 1, 1));
}

#[test]
fn multicast_vxlan_to_a_joined_group_is_accepted() {
    let mut b = bed4(1);
    let inner = inner64([0xff; 6], VM_B);
    b.rx_wire(&[vxlan4(
        REMOTE_MAC,
        [1, 0, 0x5e, 0, 0, 42],
        [10, 0, 0, 2],
        [230, 0, 0, 42],
        4789,
        0x08,
        42,
        &inner,
    )]);
    assert_eq!(b.take_vm(0).len(), 1);
    // Group not joined, or MAC not matching the group: dropped.
    b.rx_wire(&[
        vxlan4(REMOTE_MAC, [1, 0, 0x5e, 0, 0, 44], [10, 0, 0, 2], [230, 0, 0, 44], 4789, 0x08, 42, &inner),
        vxlan4(REMOTE_MAC, [1, 0, 0x5e, 0, 0, 41], [10, 0, 0, 2], [230, 0, 0, 42], 4789, 0x08, 42, &inner),
    ]);
    assert!(b.take_vm(0).is_empty());
    assert_eq!(b.drops("not for us"), 2);
}

#[test]
fn decap_drops_by_reason() {
    let mut b = bed4(1);
    let inner = inner64(VM_A, VM_B);
    let good = vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner);
    let mut bad_ipsum = good.clone();
    bad_ipsum[24] ^= 0xff;
    let mut frag = good.clone();
    frag[20] = 0x20; // MF
    let sum = checksum(&{
        let mut h = frag[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    frag[24..26].copy_from_slice(&sum.to_be_bytes());
    let mut bad_udp = good.clone();
    bad_udp[40] = 0x12; // a non-zero, wrong UDP checksum
    let frames = vec![
        vxlan4(REMOTE_MAC, [2, 9, 9, 9, 9, 9], [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner), // not our MAC
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 9], 4789, 0x08, 42, &inner), // not our IP
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4790, 0x08, 42, &inner), // other port
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x00, 42, &inner), // no I flag
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 99, &inner), // unknown VNI
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner[..10]), // inner runt
        good[..40].to_vec(), // cut short
        bad_ipsum,
        frag,
        bad_udp,
        vec![1, 2, 3],
    ];
    b.rx_wire(&frames);
    assert!(b.take_vm(0).is_empty());
    assert_eq!(b.drops("not for us"), 2);
    assert_eq!(b.drops("not vxlan"), 1);
    assert_eq!(b.drops("bad vxlan header"), 1);
    assert_eq!(b.drops("unknown vni"), 1);
    assert_eq!(b.drops("truncated"), 3);
    assert_eq!(b.drops("bad checksum"), 2);
    assert_eq!(b.drops("fragment"), 1);
    // Reserved flag bits are ignored on receipt (RFC 7348 §5).
    b.rx_wire(&[vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0xff, 42, &inner)]);
    assert_eq!(b.take_vm(0).len(), 1);
    // Ethernet padding after the IP packet is removed.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 6]);
    b.rx_wire(&[padded]);
    assert_eq!(b.take_vm(0), vec![inner]);
}

#[test]
fn arp_for_our_address_is_answered_in_place() {
    let mut b = bed4(1);
    let mut req = Vec::new();
    PacketBuilder::ethernet2(REMOTE_MAC, [0xff; 6])
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REQUEST,
                &REMOTE_MAC,
                &[10, 0, 0, 2],
                &[0; 6],
                &[10, 0, 0, 1],
            )
            .unwrap(),
        )
        .write(&mut req)
        .unwrap();
    b.rx_wire(&[req.clone()]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let r = &w[0];
    assert_eq!(mac(r, 0), REMOTE_MAC);
    assert_eq!(mac(r, 6), LOCAL_MAC);
    assert_eq!(&r[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    assert_eq!(mac(r, 22), LOCAL_MAC);
    assert_eq!(&r[28..32], &[10, 0, 0, 1]);
    assert_eq!(mac(r, 32), REMOTE_MAC);
    assert_eq!(&r[38..42], &[10, 0, 0, 2]);
    // The requester is now a known neighbour.
    let n = b.vtep().neighbours();
    assert_eq!((n[0].ip, n[0].mac), (ip("10.0.0.2"), REMOTE_MAC));
    // A request for someone else is not answered.
    let mut other = req.clone();
    other[41] = 7;
    b.rx_wire(&[other]);
    assert!(b.take_wire().is_empty());
}

#[test]
fn flood_list_resolves_with_arp_holds_then_releases() {
    let mut cfg = cfg4();
    cfg.multicast = false;
    let mut b = Bed::new(cfg, 1);
    let p = b.vms[0].0;
    b.vtep_mut()
        .add_vni_with(42, p, VniOptions { group: None, flood: vec![ip("10.0.0.2"), ip("10.0.0.3")] })
        .unwrap();
    b.g.poll_all();
    assert!(b.take_wire().is_empty(), "no group, no join");
    let frame = inner64([0xff; 6], VM_A);
    b.rx_vm(0, &[frame.clone(), frame.clone()]);
    let w = b.take_wire();
    assert_eq!(w.len(), 2, "two ARP requests, packets held");
    for (r, t) in w.iter().zip([2u8, 3]) {
        assert_eq!(mac(r, 0), [0xff; 6]);
        assert_eq!(&r[12..14], &[8, 6]);
        assert_eq!(&r[20..22], &[0, 1]);
        assert_eq!(&r[38..42], &[10, 0, 0, t]);
    }
    assert_eq!(b.vtep().counters().held, 4);
    // 10.0.0.2 answers.
    let mut rep = Vec::new();
    PacketBuilder::ethernet2(REMOTE_MAC, LOCAL_MAC)
        .arp(
            etherparse::ArpPacket::new(
                etherparse::ArpHardwareId::ETHERNET,
                etherparse::EtherType::IPV4,
                etherparse::ArpOperation::REPLY,
                &REMOTE_MAC,
                &[10, 0, 0, 2],
                &LOCAL_MAC,
                &[10, 0, 0, 1],
            )
            .unwrap(),
        )
        .write(&mut rep)
        .unwrap();
    b.rx_wire(&[rep]);
    let w = b.take_wire();
    assert_eq!(w.len(), 2, "both held frames released");
    for f in &w {
        let (dmac, dst, _, vni, inner) = check_outer4(f);
        assert_eq!((dmac, dst, vni), (REMOTE_MAC, Ipv4Addr::new(10, 0, 0, 2), 42));
        assert_eq!(inner, frame);
    }
    // 10.0.0.3 never answers: retried, then its held frames are dropped and counted.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1010));
        b.g.tick_all();
        b.g.poll_all();
    }
    let retries = b.take_wire();
    assert_eq!(retries.len(), 2, "two more ARP requests for 10.0.0.3");
    assert_eq!(b.drops("unresolved"), 2);
    assert!(b.vtep().neighbours().iter().all(|n| n.ip != ip("10.0.0.3")));
    // Live removal of the flood target.
    assert!(b.vtep_mut().remove_flood(42, ip("10.0.0.3")).unwrap());
    b.rx_vm(0, &[frame]);
    assert_eq!(b.take_wire().len(), 1);
}

/// A VNI moves from its multicast group to a flood list and back, live: the group is left
/// and joined again, BUM frames follow the current mode, and a bad list changes nothing.
#[test]
fn bum_mode_changes_live_and_bad_flood_lists_change_nothing() {
    let mut b = bed4(1);
    let v = b.vtep_mut();
    v.set_group(42, None).unwrap();
    v.set_flood(42, &[ip("10.0.0.2"), ip("10.0.0.3")]).unwrap();
    b.g.poll_all();
    let w = b.take_wire();
    assert_eq!(w.len(), 1, "one IGMPv3 leave");
    assert_eq!(&w[0][46..54], &[3, 0, 0, 0, 230, 0, 0, 42], "CHANGE_TO_INCLUDE (leave) 230.0.0.42");
    assert!(b.vtep().joined_groups().is_empty());
    let frame = inner64([0xff; 6], VM_A);
    b.rx_vm(0, std::slice::from_ref(&frame));
    let w = b.take_wire();
    assert_eq!(w.len(), 2, "ARP for each flood target, nothing to the group");
    assert!(w.iter().all(|r| r[12..14] == [8, 6]));
    // Bad lists: a group, the other family, ourselves, twice the same, the broadcast address.
    for bad in [
        vec![ip("230.0.0.1")],
        vec![ip("fd00::2")],
        vec![ip("10.0.0.1")],
        vec![ip("10.0.0.4"), ip("10.0.0.4")],
        vec![ip("10.0.0.5"), ip("255.255.255.255")],
        vec![ip("0.0.0.0")],
    ] {
        assert!(matches!(b.vtep_mut().set_flood(42, &bad), Err(VtepError::BadAddress(..))), "{bad:?}");
        assert_eq!(b.vtep().vni_info(42).unwrap().flood, vec![ip("10.0.0.2"), ip("10.0.0.3")]);
    }
    assert!(matches!(b.vtep_mut().set_flood(7, &[]), Err(VtepError::UnknownVni(7))));
    // Back to multicast: joined again, and the list emptied.
    b.vtep_mut().set_flood(42, &[]).unwrap();
    b.vtep_mut().set_group(42, Some(ip("239.1.2.3"))).unwrap();
    b.g.poll_all();
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    assert_eq!(&w[0][46..54], &[4, 0, 0, 0, 239, 1, 2, 3], "join 239.1.2.3");
    b.rx_vm(0, std::slice::from_ref(&frame));
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    assert_eq!(check_outer4(&w[0]).1, Ipv4Addr::new(239, 1, 2, 3));
    // The remote VTEPs known: those behind the VNI's MAC entries.
    assert!(b.vtep().remote_vteps(42, brick_core::Timestamp::now()).is_empty());
    b.vtep_mut().add_static_mac(42, VM_B, ip("10.0.0.7")).unwrap();
    b.vtep_mut().add_static_mac(42, [0x52, 0x54, 0, 0, 0, 0x0c], ip("10.0.0.7")).unwrap();
    assert_eq!(b.vtep().remote_vteps(42, brick_core::Timestamp::now()), vec![ip("10.0.0.7")]);
    assert!(b.vtep().remote_vteps(43, brick_core::Timestamp::now()).is_empty());
}

#[test]
fn address_checks_are_the_vteps() {
    use brick_vtep::{check_group, check_remote};
    let local = ip("10.0.0.1");
    assert!(check_remote(ip("10.0.0.2"), local, "x").is_ok());
    for bad in ["10.0.0.1", "fd00::2", "224.0.0.5", "0.0.0.0", "255.255.255.255"] {
        assert!(check_remote(ip(bad), local, "x").is_err(), "{bad}");
    }
    assert!(check_group(ip("239.0.0.1"), false).is_ok());
    assert!(check_group(ip("ff05::1"), true).is_ok());
    for (bad, v6) in
        [("10.0.0.1", false), ("ff05::1", false), ("239.0.0.1", true), ("ff01::1", true), ("ff0f::1", true)]
    {
        assert!(check_group(ip(bad), v6).is_err(), "{bad}");
    }
}

#[test]
fn static_mac_entries_resolve_their_vtep() {
    let mut b = bed4(1);
    b.vtep_mut().add_static_mac(42, VM_B, ip("10.0.0.7")).unwrap();
    assert!(b.vtep_mut().add_static_mac(42, [0xff; 6], ip("10.0.0.7")).is_err());
    assert!(b.vtep_mut().add_static_mac(42, VM_B, ip("230.0.0.1")).is_err());
    b.rx_vm(0, &[inner64(VM_B, VM_A)]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    assert_eq!(&w[0][12..14], &[8, 6], "ARP for the static VTEP");
    // Learning does not override a static entry.
    let inner = inner64(VM_A, VM_B);
    b.rx_wire(&[vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner)]);
    let fdb = b.vtep().fdb(42, Timestamp::now());
    assert_eq!(fdb[0].value.ip, ip("10.0.0.7"));
    assert!(fdb[0].is_static);
}

#[test]
fn oversize_frames_get_icmp_frag_needed_or_packet_too_big() {
    let mut b = bed4(1);
    // 1500 - 36 = 1464 bytes of inner frame fit; 1465 do not.
    let fits = inner_udp([0xff; 6], VM_A, 1464 - 42);
    b.rx_vm(0, &[fits]);
    assert_eq!(b.take_wire()[0].len(), 1464 + 50);
    let big = inner_udp(VM_B, VM_A, 1465 - 42);
    b.rx_vm(0, std::slice::from_ref(&big));
    assert!(b.take_wire().is_empty());
    assert_eq!(b.drops("too big"), 1);
    let icmp = b.take_vm(0);
    assert_eq!(icmp.len(), 1);
    let f = &icmp[0];
    assert_eq!((mac(f, 0), mac(f, 6)), (VM_A, VM_B));
    let iph = Ipv4HeaderSlice::from_slice(&f[14..]).unwrap();
    assert_eq!(iph.source_addr(), Ipv4Addr::new(192, 168, 42, 2));
    assert_eq!(iph.destination_addr(), Ipv4Addr::new(192, 168, 42, 1));
    assert_eq!(iph.header_checksum(), iph.to_header().calc_header_checksum());
    let m = &f[34..];
    assert_eq!(&m[0..2], &[3, 4]);
    assert_eq!(u16::from_be_bytes([m[6], m[7]]), 1450, "inner MTU = 1500 - 50");
    assert_eq!(checksum(m), 0);
    assert_eq!(&m[8..28], &big[14..34], "quotes the original header");

    // Inner IPv6 → packet too big.
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(VM_A, VM_B)
        .ipv6(
            [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            [0xfd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            64,
        )
        .udp(1, 2)
        .write(&mut v6, &[0u8; 1460])
        .unwrap();
    b.rx_vm(0, &[v6]);
    let icmp = b.take_vm(0);
    assert_eq!(icmp.len(), 1);
    let f = &icmp[0];
    assert_eq!(f[14 + 6], 58);
    let p = &f[54..];
    assert_eq!(p[0], 2);
    assert_eq!(u32::from_be_bytes([p[4], p[5], p[6], p[7]]), 1450);
    let src: [u8; 16] = f[22..38].try_into().unwrap();
    let dst: [u8; 16] = f[38..54].try_into().unwrap();
    assert_eq!(csum_fold(csum_add(pseudo_v6(&src, &dst, p.len() as u32, 58), p)), 0);
    assert!(f.len() <= 1280 + 14);
    // IPv4 without DF: dropped silently.
    let mut nodf = big.clone();
    nodf[20] = 0;
    let s = checksum(&{
        let mut h = nodf[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    nodf[24..26].copy_from_slice(&s.to_be_bytes());
    b.rx_vm(0, &[nodf]);
    assert!(b.take_vm(0).is_empty());
    assert_eq!(b.vtep().counters().icmp_too_big, 2);
}

#[test]
fn igmp_queries_are_answered_in_their_version() {
    let mut b = bed4(2);
    let query = |v3: bool| {
        let mut igmp = vec![0x11, 100, 0, 0, 0, 0, 0, 0];
        if v3 {
            igmp.extend_from_slice(&[0, 0, 0, 0]);
        }
        let c = checksum(&igmp);
        igmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut v = Vec::new();
        PacketBuilder::ethernet2(REMOTE_MAC, [1, 0, 0x5e, 0, 0, 1])
            .ipv4([10, 0, 0, 254], [224, 0, 0, 1], 1)
            .write(&mut v, etherparse::IpNumber::IGMP, &igmp)
            .unwrap();
        v
    };
    b.rx_wire(&[query(true)]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let igmp = &w[0][38..];
    assert_eq!(igmp[0], 0x22);
    assert_eq!(&igmp[6..8], &[0, 2], "both groups in one v3 report");
    assert_eq!(igmp[8], 2, "MODE_IS_EXCLUDE");
    b.rx_wire(&[query(false)]);
    let w = b.take_wire();
    assert_eq!(w.len(), 2, "one v2 report per group");
    assert!(w.iter().all(|f| f[38] == 0x16));
    assert_eq!(b.vtep().counters().queries, 2);
}

#[test]
fn remove_vni_leaves_and_unlink_removes_the_vni() {
    let mut b = bed4(2);
    assert_eq!(b.vtep_mut().remove_vni(42).unwrap(), b.vms[0].0);
    b.g.poll_all();
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    assert_eq!(&w[0][38 + 8..38 + 16], &[3, 0, 0, 0, 230, 0, 0, 42], "CHANGE_TO_INCLUDE (leave)");
    b.rx_vm(0, &[inner64([0xff; 6], VM_A)]);
    assert_eq!(b.drops("port without vni"), 1);
    let p1 = b.vms[1].0;
    b.g.unlink(b.vtep, brick_core::Side::East, p1).unwrap();
    assert!(b.vtep().vnis().is_empty());
    assert!(b.vtep().joined_groups().is_empty());
}

#[test]
fn vni_configuration_is_validated() {
    let mut b = bed4(2);
    let (p0, p1) = (b.vms[0].0, b.vms[1].0);
    let v = b.vtep_mut();
    assert!(matches!(v.add_vni(1 << 24, 9), Err(VtepError::InvalidVni(n)) if n == 1 << 24));
    assert!(matches!(v.add_vni(42, 9), Err(VtepError::VniInUse(42, p)) if p == p0));
    assert!(matches!(v.add_vni(44, p1), Err(VtepError::PortInUse(p, 43)) if p == p1));
    assert!(v.add_vni_with(45, 9, VniOptions { group: Some(ip("10.0.0.9")), flood: vec![] }).is_err());
    assert!(v.add_vni_with(45, 9, VniOptions { group: None, flood: vec![ip("fd00::2")] }).is_err());
    assert!(
        v.add_vni_with(45, 9, VniOptions { group: None, flood: vec![ip("10.0.0.1")] }).is_err(),
        "ourselves"
    );
    assert!(matches!(v.set_group(99, None), Err(VtepError::UnknownVni(99))));
    v.add_vni(0xffffff, 9).unwrap();
    assert_eq!(v.joined_groups().last(), Some(&ip("230.255.255.255")));
    let pool = brick_core::PacketPool::with_count(1).unwrap();
    assert!(Vtep::new(VtepConfig::new(ip("224.0.0.1"), LOCAL_MAC), pool.clone()).is_err());
    assert!(Vtep::new(VtepConfig::new(ip("10.0.0.1"), [1, 0, 0, 0, 0, 0]), pool.clone()).is_err());
    assert!(Vtep::new(VtepConfig { mtu: 1000, ..cfg6() }, pool).is_err());
}

#[test]
fn learnt_macs_age_out_in_time() {
    let cfg = VtepConfig { mac_aging: Duration::from_millis(100), ..cfg4() };
    let mut b = Bed::new(cfg, 1);
    let p = b.vms[0].0;
    b.vtep_mut().add_vni(42, p).unwrap();
    let inner = inner64(VM_A, VM_B);
    b.rx_wire(&[vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner)]);
    assert_eq!(b.vtep().fdb(42, Timestamp::now()).len(), 1);
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        b.vtep().fdb(42, Timestamp::now()).is_empty(),
        "expired after 100 ms, whatever the traffic count"
    );
    b.take_wire();
    b.rx_vm(0, &[inner64(VM_B, VM_A)]);
    let (_, dst, _, _, _) = check_outer4(&b.take_wire()[0]);
    assert_eq!(dst, Ipv4Addr::new(230, 0, 0, 42), "flooded once aged");
}

#[test]
fn mac_table_is_bounded_per_vni() {
    let cfg = VtepConfig { mac_capacity: 4, ..cfg4() };
    let mut b = Bed::new(cfg, 1);
    let p = b.vms[0].0;
    b.vtep_mut().add_vni(42, p).unwrap();
    let frames: Vec<_> = (0..20u8)
        .map(|i| {
            vxlan4(
                REMOTE_MAC,
                LOCAL_MAC,
                [10, 0, 0, 2],
                [10, 0, 0, 1],
                4789,
                0x08,
                42,
                &inner64(VM_A, [2, 0, 0, 0, 1, i]),
            )
        })
        .collect();
    b.rx_wire(&frames);
    assert_eq!(b.take_vm(0).len(), 20, "still delivered");
    let info = b.vtep().vni_info(42).unwrap();
    assert_eq!((info.counters.learned, info.counters.learn_refused), (4, 16));
}

#[test]
fn source_port_hashes_the_inner_flow() {
    let mut b = bed4(1);
    let mut ports = std::collections::HashSet::new();
    for sport in 0..64u16 {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(VM_A, [0xff; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(sport, 53)
            .write(&mut f, &[0; 8])
            .unwrap();
        b.rx_vm(0, &[f.clone(), f]);
        let w = b.take_wire();
        let (_, _, a, _, _) = check_outer4(&w[0]);
        let (_, _, c, _, _) = check_outer4(&w[1]);
        assert_eq!(a, c, "same flow, same port");
        ports.insert(a);
    }
    assert!(ports.len() > 48, "64 flows spread over {} ports", ports.len());
}

// ------------------------------------------------------------------ IPv6 underlay

fn bed6(vms: usize) -> Bed {
    let mut b = Bed::new(cfg6(), vms);
    for i in 0..vms {
        let p = b.vms[i].0;
        b.vtep_mut().add_vni(42 + i as u32, p).unwrap();
    }
    b.g.poll_all();
    b
}

#[test]
fn ipv6_join_is_a_valid_mldv2_report() {
    let b = bed6(1);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let r = &w[0];
    assert_eq!(mac(r, 0), [0x33, 0x33, 0, 0, 0, 0x16]);
    let ip6 = &r[14..54];
    assert_eq!(ip6[6], 0, "hop-by-hop first");
    assert_eq!(ip6[7], 1, "hop limit 1");
    let src: [u8; 16] = ip6[8..24].try_into().unwrap();
    let dst: [u8; 16] = ip6[24..40].try_into().unwrap();
    assert_eq!(&src[..2], &[0xfe, 0x80], "link-local source");
    assert_eq!(Ipv6Addr::from(dst), "ff02::16".parse::<Ipv6Addr>().unwrap());
    let plen = u16::from_be_bytes([ip6[4], ip6[5]]) as usize;
    assert_eq!(plen, r.len() - 54, "payload length exact");
    assert_eq!(&r[54..62], &[58, 0, 5, 2, 0, 0, 1, 0], "router alert option");
    let icmp = &r[62..];
    assert_eq!(icmp.len(), 28);
    assert_eq!(icmp[0], 143);
    assert_eq!(
        csum_fold(csum_add(pseudo_v6(&src, &dst, icmp.len() as u32, 58), icmp)),
        0,
        "MLD checksum valid"
    );
    assert_eq!(icmp[8], 4, "CHANGE_TO_EXCLUDE");
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[12..28]).unwrap()),
        "ff05::2a".parse::<Ipv6Addr>().unwrap()
    );
}

#[test]
fn ipv6_encap_decap_and_checksums() {
    let mut b = bed6(2);
    b.take_wire();
    let frame = inner64([0xff; 6], VM_A);
    b.rx_vm(0, std::slice::from_ref(&frame));
    let w = b.take_wire();
    let (dmac, dst, vni, inner) = check_outer6(&w[0]);
    assert_eq!(dmac, [0x33, 0x33, 0, 0, 0, 42]);
    assert_eq!(dst, "ff05::2a".parse::<Ipv6Addr>().unwrap());
    assert_eq!((vni, inner), (42, frame));
    let inner = inner64(VM_A, VM_B);
    for zero in [true, false] {
        b.rx_wire(&[vxlan6(REMOTE_MAC, LOCAL_MAC, ip("fd00::2"), ip("fd00::1"), 42, &inner, zero)]);
        assert_eq!(b.take_vm(0), vec![inner.clone()], "zero checksum = {zero}");
    }
    let mut bad = vxlan6(REMOTE_MAC, LOCAL_MAC, ip("fd00::2"), ip("fd00::1"), 42, &inner, false);
    bad[14 + 40 + 6] ^= 0x55;
    b.rx_wire(&[bad.clone()]);
    assert_eq!(b.drops("bad checksum"), 1);
    // The same frame marked verified by the NIC, or sent by the local kernel with its
    // checksum still partial (a veth peer), is not checked again.
    for flags in [brick_core::OffloadFlags::CSUM_VERIFIED, brick_core::OffloadFlags::CSUM_NEEDED] {
        b.rx_wire_flagged(std::slice::from_ref(&bad), flags);
        assert_eq!(b.take_vm(0), vec![inner.clone()], "{flags:?}");
    }
    assert_eq!(b.drops("bad checksum"), 1);
    // Multicast to the group of VNI 43 goes to VM 1 only.
    b.rx_wire(&[vxlan6(
        REMOTE_MAC,
        [0x33, 0x33, 0, 0, 0, 43],
        ip("fd00::2"),
        ip("ff05::2b"),
        43,
        &inner,
        false,
    )]);
    assert!(b.take_vm(0).is_empty());
    assert_eq!(b.take_vm(1).len(), 1);
    // Reply is unicast to the learnt VTEP.
    b.rx_vm(0, &[inner64(VM_B, VM_A)]);
    let (dmac, dst, _, _) = check_outer6(&b.take_wire()[0]);
    assert_eq!((dmac, dst), (REMOTE_MAC, "fd00::2".parse().unwrap()));
}

/// With `outer_csum_offload`, the outer UDP checksum of an IPv6 underlay is left partial
/// (the pseudo-header sum): once completed as a NIC would, every frame is byte for byte the
/// one the VTEP makes without it, whatever the inner frame's length and bytes.
#[test]
fn ipv6_outer_checksum_left_partial_completes_to_the_same_frame() {
    let offload = VtepConfig { outer_csum_offload: true, ..cfg6() };
    let mut beds = [Bed::new(cfg6(), 1), Bed::new(offload, 1)];
    for b in &mut beds {
        let p = b.vms[0].0;
        b.vtep_mut().add_vni(42, p).unwrap();
        b.g.poll_all();
        b.take_wire();
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for len in [0usize, 1, 2, 3, 17, 22, 100, 511, 1000, 1399] {
        let mut frame = inner_udp([0xff; 6], VM_A, len);
        for byte in frame.iter_mut().skip(42) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *byte = seed as u8;
        }
        let wires: Vec<Vec<u8>> = beds
            .iter_mut()
            .map(|b| {
                b.rx_vm(0, std::slice::from_ref(&frame));
                let mut w = b.take_wire();
                assert_eq!(w.len(), 1, "one frame out for {len} bytes");
                w.remove(0)
            })
            .collect();
        let (full, mut partial) = (wires[0].clone(), wires[1].clone());
        check_outer6(&full);
        let src: [u8; 16] = partial[22..38].try_into().unwrap();
        let dst: [u8; 16] = partial[38..54].try_into().unwrap();
        let pseudo = !csum_fold(pseudo_v6(&src, &dst, (partial.len() - 54) as u32, 17));
        assert_eq!(
            u16::from_be_bytes([partial[60], partial[61]]),
            pseudo,
            "the pseudo-header sum, {len} bytes"
        );
        assert!(brick_core::checksum::complete_partial(&mut partial, 54, 6));
        assert_eq!(partial, full, "completed = computed, {len} bytes");
    }
}

fn ns_for(target: Ipv6Addr, src: Ipv6Addr) -> Vec<u8> {
    let dst = wire::solicited_node(target);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    if !src.is_unspecified() {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&REMOTE_MAC);
    }
    let c = csum_fold(csum_add(pseudo_v6(&src.octets(), &dst.octets(), icmp.len() as u32, 58), &icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut v = Vec::new();
    PacketBuilder::ethernet2(REMOTE_MAC, wire::mcast_mac_v6(dst))
        .ipv6(src.octets(), dst.octets(), 255)
        .write(&mut v, etherparse::IpNumber::IPV6_ICMP, &icmp)
        .unwrap();
    v
}

#[test]
fn neighbour_solicitation_for_our_address_gets_an_advertisement() {
    let mut b = bed6(1);
    b.take_wire();
    b.rx_wire(&[ns_for("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let na = &w[0];
    assert_eq!((mac(na, 0), mac(na, 6)), (REMOTE_MAC, LOCAL_MAC));
    assert_eq!(na[14 + 7], 255);
    let src: [u8; 16] = na[22..38].try_into().unwrap();
    let dst: [u8; 16] = na[38..54].try_into().unwrap();
    assert_eq!(Ipv6Addr::from(dst), "fd00::2".parse::<Ipv6Addr>().unwrap());
    let icmp = &na[54..];
    assert_eq!(u16::from_be_bytes([na[18], na[19]]) as usize, icmp.len());
    assert_eq!((icmp[0], icmp[4]), (136, 0x60), "solicited + override");
    assert_eq!(
        Ipv6Addr::from(<[u8; 16]>::try_from(&icmp[8..24]).unwrap()),
        "fd00::1".parse::<Ipv6Addr>().unwrap()
    );
    assert_eq!(&icmp[24..26], &[2, 1]);
    assert_eq!(mac(icmp, 26), LOCAL_MAC);
    assert_eq!(csum_fold(csum_add(pseudo_v6(&src, &dst, icmp.len() as u32, 58), icmp)), 0);
    assert_eq!(b.vtep().neighbours()[0].mac, REMOTE_MAC);
    // DAD probe (from ::) is answered to all-nodes; NS for another address is not.
    b.rx_wire(&[ns_for("fd00::1".parse().unwrap(), Ipv6Addr::UNSPECIFIED)]);
    let w = b.take_wire();
    assert_eq!(mac(&w[0], 0), [0x33, 0x33, 0, 0, 0, 1]);
    b.rx_wire(&[ns_for("fd00::5".parse().unwrap(), "fd00::2".parse().unwrap())]);
    assert!(b.take_wire().is_empty());
}

#[test]
fn ipv6_flood_list_resolves_with_ns() {
    let mut cfg = cfg6();
    cfg.multicast = false;
    let mut b = Bed::new(cfg, 1);
    let p = b.vms[0].0;
    b.vtep_mut().add_vni_with(42, p, VniOptions { group: None, flood: vec![ip("fd00::2")] }).unwrap();
    b.rx_vm(0, &[inner64([0xff; 6], VM_A)]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let ns = &w[0];
    assert_eq!(mac(ns, 0), [0x33, 0x33, 0xff, 0, 0, 2]);
    assert_eq!(ns[54], 135);
    // The NA resolves it and releases the held frame.
    let target: Ipv6Addr = "fd00::2".parse().unwrap();
    let mut icmp = vec![136, 0, 0, 0, 0x60, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&REMOTE_MAC);
    let local: Ipv6Addr = "fd00::1".parse().unwrap();
    let c = csum_fold(csum_add(pseudo_v6(&target.octets(), &local.octets(), icmp.len() as u32, 58), &icmp));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut na = Vec::new();
    PacketBuilder::ethernet2(REMOTE_MAC, LOCAL_MAC)
        .ipv6(target.octets(), local.octets(), 255)
        .write(&mut na, etherparse::IpNumber::IPV6_ICMP, &icmp)
        .unwrap();
    b.rx_wire(&[na]);
    let w = b.take_wire();
    assert_eq!(w.len(), 1);
    let (dmac, dst, _, _) = check_outer6(&w[0]);
    assert_eq!((dmac, dst), (REMOTE_MAC, target));
}

proptest! {
    #[test]
    fn random_underlay_bytes_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..32), v6 in any::<bool>()) {
        let mut b = if v6 { bed6(1) } else { bed4(1) };
        b.rx_wire(&frames);
        b.rx_vm(0, &frames);
        b.g.tick_all();
        b.g.poll_all();
    }

    #[test]
    fn mutated_vxlan_never_panics(pos in 0usize..114, val in any::<u8>(), cut in 0usize..114) {
        let mut b = bed4(1);
        let mut f = vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &inner64(VM_A, VM_B));
        f[pos] = val;
        f.truncate(f.len() - cut.min(f.len()));
        b.rx_wire(&[f]);
        let st = b.g.stats(b.vtep).unwrap();
        let delivered = st.side(brick_core::Side::East).pkts_out.get();
        prop_assert_eq!(delivered + st.total_drops(), 1);
    }
}

#[test]
fn mixed_bursts_take_fast_and_full_paths_in_order() {
    let mut b = bed4(2);
    // Teach both VNIs a remote MAC.
    let from_b = inner64(VM_A, VM_B);
    b.rx_wire(&[
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &from_b),
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 3], [10, 0, 0, 1], 4789, 0x08, 43, &from_b),
        vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &from_b),
    ]);
    assert_eq!(b.take_vm(0).len(), 2, "VNI 42 frames before and after a VNI 43 one");
    assert_eq!(b.take_vm(1).len(), 1);
    assert_eq!(b.vtep().fdb(43, Timestamp::now())[0].value.ip, ip("10.0.0.3"));
    // Encap: known, broadcast, known: three outer frames in order, the middle one to the group.
    let known = inner_udp(VM_B, VM_A, 30);
    let bcast = inner_udp([0xff; 6], VM_A, 31);
    b.rx_vm(0, &[known.clone(), bcast.clone(), known.clone()]);
    let w = b.take_wire();
    assert_eq!(w.len(), 3);
    let dsts: Vec<_> = w.iter().map(|f| check_outer4(f)).map(|(_, d, _, _, inner)| (d, inner)).collect();
    assert_eq!(dsts[0], (Ipv4Addr::new(10, 0, 0, 2), known.clone()));
    assert_eq!(dsts[1], (Ipv4Addr::new(230, 0, 0, 42), bcast));
    assert_eq!(dsts[2], (Ipv4Addr::new(10, 0, 0, 2), known));
    // Decap: a valid frame, then an ARP request for us, then a valid frame.
    let mut req = vec![0xff; 6];
    req.extend_from_slice(&REMOTE_MAC);
    req.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, 1]);
    req.extend_from_slice(&REMOTE_MAC);
    req.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    let v = vxlan4(REMOTE_MAC, LOCAL_MAC, [10, 0, 0, 2], [10, 0, 0, 1], 4789, 0x08, 42, &from_b);
    b.rx_wire(&[v.clone(), req, v]);
    assert_eq!(b.take_vm(0).len(), 2);
    assert_eq!(b.take_wire().len(), 1, "ARP reply");
    let info = b.vtep().vni_info(42).unwrap();
    assert_eq!((info.counters.decap_pkts, info.counters.encap_pkts), (4, 3));
}

#[test]
fn wake_fd_is_readable_only_while_control_packets_wait() {
    use brick_core::Brick;
    let readable = |fd: i32| {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: polls one live descriptor with a zero timeout.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    let mut b = Bed::new(cfg4(), 1);
    let fd = b.vtep().wake_fd().unwrap();
    assert!(!readable(fd));
    let p = b.vms[0].0;
    b.vtep_mut().add_vni(42, p).unwrap();
    assert!(readable(fd), "a join is waiting");
    b.g.poll_all();
    assert_eq!(b.take_wire().len(), 1);
    assert!(!readable(fd), "drained once the join left");
}

//! The responder against frames built by etherparse, its replies checked field by field
//! (and the ICMPv6 checksum recomputed by etherparse).

use super::*;
use etherparse::{Icmpv6Type, NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

const VM: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const REMOTE: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const VM4: [u8; 4] = [10, 0, 0, 1];
const REMOTE4: [u8; 4] = [10, 0, 0, 2];

fn vm6() -> Ipv6Addr {
    "fd00::1".parse().unwrap()
}

fn remote6() -> Ipv6Addr {
    "fd00::2".parse().unwrap()
}

fn table() -> ProxyTable {
    let mut t = ProxyTable::new(4);
    t.insert(IpAddr::V4(REMOTE4.into()), REMOTE).unwrap();
    t.insert(IpAddr::V6(remote6()), REMOTE).unwrap();
    t
}

fn run(frame: &[u8]) -> (Verdict, Vec<u8>) {
    let t = table();
    let mut out = [0u8; MAX_REPLY];
    let v = answer(frame, |ip| t.get(ip), &mut out);
    let n = match v {
        Verdict::ArpReply(n) | Verdict::NdAdvert(n) => n,
        _ => 0,
    };
    (v, out[..n].to_vec())
}

/// An ARP request frame: `oper`, sender and target addresses.
fn arp(oper: u16, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&VM);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&oper.to_be_bytes());
    f.extend_from_slice(&VM);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// A neighbour solicitation from `src` for `target` to its solicited-node group, with a
/// source link-layer option unless `src` is unspecified; checksum by etherparse.
fn ns(src: Ipv6Addr, target: Ipv6Addr, hop_limit: u8) -> Vec<u8> {
    let group = solicited_node(target);
    let g = group.octets();
    let dst_mac = [0x33, 0x33, g[12], g[13], g[14], g[15]];
    let mut body = target.octets().to_vec();
    if !src.is_unspecified() {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&VM);
    }
    let b = etherparse::PacketBuilder::ethernet2(VM, dst_mac)
        .ipv6(src.octets(), g, hop_limit)
        .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
    let mut f = Vec::new();
    b.write(&mut f, &body).unwrap();
    f
}

#[test]
fn an_arp_request_for_a_known_address_gets_the_remote_mac() {
    let (v, r) = run(&arp(1, VM4, REMOTE4));
    assert_eq!(v, Verdict::ArpReply(42));
    assert_eq!(&r[0..6], &VM, "to the requester");
    assert_eq!(&r[6..12], &REMOTE, "from the target's MAC");
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    let a = Arp::new_checked(&r[14..]).unwrap();
    assert_eq!((a.oper(), a.ptype()), (2, 0x0800));
    assert_eq!((a.sha(), a.spa()), (MacAddr(REMOTE), u32::from_be_bytes(REMOTE4)));
    assert_eq!((a.tha(), a.tpa()), (MacAddr(VM), u32::from_be_bytes(VM4)));
}

#[test]
fn arp_that_is_not_a_request_for_a_known_address_passes() {
    assert_eq!(run(&arp(1, VM4, [10, 0, 0, 9])).0, Verdict::Pass(Pass::Unknown));
    assert_eq!(run(&arp(1, REMOTE4, REMOTE4)).0, Verdict::Pass(Pass::Announce), "gratuitous");
    assert_eq!(run(&arp(1, [0; 4], REMOTE4)).0, Verdict::Pass(Pass::Announce), "probe");
    assert_eq!(run(&arp(2, VM4, REMOTE4)).0, Verdict::Other, "a reply");
    let mut f = arp(1, VM4, REMOTE4);
    f[19] = 16;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "hardware size 16");
    let mut f = arp(1, VM4, REMOTE4);
    f[16] = 0x86;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "protocol not IPv4");
    let mut f = arp(1, VM4, REMOTE4);
    f[22] = 0xff;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "multicast sender MAC");
    assert_eq!(run(&arp(1, VM4, REMOTE4)[..41]).0, Verdict::Pass(Pass::Malformed), "truncated");
    assert_eq!(run(&[0xff; 13]).0, Verdict::Other);
}

#[test]
fn a_solicitation_for_a_known_address_gets_a_checksummed_advertisement() {
    let (v, r) = run(&ns(vm6(), remote6(), 255));
    assert_eq!(v, Verdict::NdAdvert(86));
    assert_eq!((&r[0..6], &r[6..12]), (&VM[..], &REMOTE[..]));
    // etherparse checks the lengths, and we recompute the checksum over its pseudo-header.
    let p = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(NetSlice::Ipv6(ip)) = p.net else { panic!("IPv6") };
    assert_eq!(ip.header().source_addr(), remote6());
    assert_eq!(ip.header().destination_addr(), vm6());
    assert_eq!(ip.header().hop_limit(), 255);
    let Some(TransportSlice::Icmpv6(icmp)) = p.transport else { panic!("ICMPv6") };
    assert_eq!((icmp.type_u8(), icmp.code_u8()), (136, 0));
    let header = icmp.header();
    let want = header.icmp_type.calc_checksum(remote6().octets(), vm6().octets(), icmp.payload()).unwrap();
    assert_eq!(icmp.checksum(), want, "ICMPv6 checksum");
    let na = Ndp::new_checked(&r[54..]).unwrap();
    assert!(na.is_advert());
    assert_eq!(na.flags(), 0x60, "solicited and override");
    assert_eq!(Ipv6Addr::from(na.target()), remote6());
    assert_eq!(na.lladdr(), Some(MacAddr(REMOTE)), "target link-layer option");
}

#[test]
fn solicitations_left_to_the_network() {
    assert_eq!(run(&ns(vm6(), "fd00::9".parse().unwrap(), 255)).0, Verdict::Pass(Pass::Unknown));
    assert_eq!(run(&ns(Ipv6Addr::UNSPECIFIED, remote6(), 255)).0, Verdict::Pass(Pass::Announce), "DAD");
    assert_eq!(run(&ns(vm6(), remote6(), 64)).0, Verdict::Pass(Pass::Malformed), "hop limit 64");
    let mut f = ns(vm6(), remote6(), 255);
    f[56] ^= 1;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "bad checksum");
    let mut f = ns(vm6(), remote6(), 255);
    let last = f.len() - 7;
    f[last] = 0;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "option of length zero");
    let mut f = ns(vm6(), remote6(), 255);
    f[14 + 24 + 15] ^= 1;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "group changed, checksum not");
    // To all nodes, not the target's solicited-node group (checksum right).
    let b = etherparse::PacketBuilder::ethernet2(VM, [0x33, 0x33, 0, 0, 0, 1])
        .ipv6(vm6().octets(), "ff02::1".parse::<Ipv6Addr>().unwrap().octets(), 255)
        .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
    let mut f = Vec::new();
    b.write(&mut f, &remote6().octets()).unwrap();
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "to all nodes");
    let mut f = ns(vm6(), remote6(), 255);
    f[14 + 40 + 1] = 1;
    assert_eq!(run(&f).0, Verdict::Pass(Pass::Malformed), "code 1");
    let mut f = ns(vm6(), remote6(), 255);
    f[14 + 40] = 136;
    assert_eq!(run(&f).0, Verdict::Other, "an advertisement");
    let f = ns(vm6(), remote6(), 255);
    assert_eq!(run(&f[..f.len() - 1]).0, Verdict::Other, "payload length past the frame");
}

#[test]
fn a_solicitation_without_source_option_is_answered_to_the_frame_source() {
    let target = remote6();
    let group = solicited_node(target).octets();
    let b =
        etherparse::PacketBuilder::ethernet2(VM, [0x33, 0x33, group[12], group[13], group[14], group[15]])
            .ipv6(vm6().octets(), group, 255)
            .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
    let mut f = Vec::new();
    b.write(&mut f, &target.octets()).unwrap();
    let (v, r) = run(&f);
    assert_eq!(v, Verdict::NdAdvert(86));
    assert_eq!(&r[0..6], &VM);
}

#[test]
fn the_table_is_bounded_and_ignores_what_it_cannot_answer_for() {
    let mut t = ProxyTable::new(2);
    let a = |s: &str| -> IpAddr { s.parse().unwrap() };
    t.insert(a("10.0.0.1"), REMOTE).unwrap();
    t.insert(a("10.0.0.2"), REMOTE).unwrap();
    assert_eq!(t.insert(a("10.0.0.3"), REMOTE), Err(TableFull(2)));
    t.insert(a("10.0.0.2"), VM).unwrap();
    assert_eq!(t.get(a("10.0.0.2")), Some(VM), "a MAC replaced in a full table");
    for ip in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"] {
        assert_eq!(t.insert(a(ip), REMOTE), Ok(()), "{ip}: ignored, not refused");
        assert_eq!(t.get(a(ip)), None, "{ip}");
    }
    t.insert(a("10.0.0.9"), [0x33, 0x33, 0, 0, 0, 1]).ok();
    assert_eq!(t.get(a("10.0.0.9")), None, "multicast MAC");
    assert!(t.remove(a("10.0.0.2")));
    assert!(!t.remove(a("10.0.0.2")));
    assert_eq!(t.entries(), vec![(a("10.0.0.1"), REMOTE)]);
}

proptest! {
    /// Any bytes: no panic, and whatever is written is a reply to a request of the table.
    #[test]
    fn never_panics_and_answers_only_known_targets(frame in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (v, r) = run(&frame);
        match v {
            Verdict::ArpReply(_) => prop_assert_eq!(&r[6..12], &REMOTE),
            Verdict::NdAdvert(_) => prop_assert_eq!(&r[6..12], &REMOTE),
            _ => prop_assert!(r.is_empty()),
        }
    }

    /// Valid requests with bytes flipped: never a panic; a reply only when still a request
    /// for a known address (and then from its MAC).
    #[test]
    fn mutated_requests_never_panic(v6 in any::<bool>(), at in 0usize..90, bit in 0u8..8) {
        let mut f = if v6 { ns(vm6(), remote6(), 255) } else { arp(1, VM4, REMOTE4) };
        if at < f.len() {
            f[at] ^= 1 << bit;
        }
        let (v, r) = run(&f);
        if let Verdict::ArpReply(_) | Verdict::NdAdvert(_) = v {
            prop_assert_eq!(&r[6..12], &REMOTE);
        }
    }
}

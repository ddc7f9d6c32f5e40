//! Property tests: no view or locator panics on any input; setters and getters round-trip.

use crate::*;
use proptest::prelude::*;
use std::string::ToString;

fn touch_all(b: &[u8]) {
    let _ = locate(b);
    if let Ok(e) = Ethernet::new_checked(b) {
        let _ = (e.dst(), e.src(), e.ethertype(), e.payload());
    }
    if let Ok(v) = Vlan::new_checked(b) {
        let _ = (v.vid(), v.pcp(), v.ethertype());
    }
    if let Ok(a) = Arp::new_checked(b) {
        let _ = (a.oper(), a.ptype(), a.sha(), a.spa(), a.tha(), a.tpa());
    }
    for v4 in [Ipv4::new_checked(b), Ipv4::new_quoted(b)].into_iter().flatten() {
        let _ = (v4.src(), v4.dst(), v4.proto(), v4.payload(), v4.addrs(), v4.frag_offset());
    }
    for v6 in [Ipv6::new_checked(b), Ipv6::new_quoted(b)].into_iter().flatten() {
        let _ = (v6.src(), v6.dst(), v6.walk(), v6.addrs(), v6.flow_label(), v6.traffic_class());
    }
    if let Ok(t) = Tcp::new_checked(b) {
        let _ = (t.wscale(), t.payload(), t.options(), t.flags(), t.seq());
    }
    if let Ok(u) = Udp::new_checked(b) {
        let _ = (u.payload(), u.len(), u.checksum());
    }
    if let Ok(i) = Icmp::new_checked(b) {
        let _ = (i.payload(), i.echo_id(), i.echo_seq(), i.msg_type(), i.code());
    }
    if let Ok(n) = Ndp::new_checked(b) {
        let _ = (n.lladdr(), n.target(), n.options().count());
    }
    if let Ok(g) = Igmp::new_checked(b) {
        let _ = (g.group(), g.max_resp());
    }
    if let Ok(m) = Mld::new_checked(b) {
        let _ = (m.group(), m.max_delay());
    }
    if let Ok(x) = Vxlan::new_checked(b) {
        let _ = (x.vni(), x.payload());
    }
}

proptest! {
    #[test]
    fn nothing_panics(b in proptest::collection::vec(any::<u8>(), 0..160)) {
        touch_all(&b);
        for i in 0..b.len().min(64) {
            touch_all(&b[i..]);
        }
    }

    #[test]
    fn tagged_frames_never_panic(tags in 0usize..4, tail in proptest::collection::vec(any::<u8>(), 0..90)) {
        let mut f = std::vec![0u8; 12];
        for _ in 0..tags {
            f.extend_from_slice(&[0x81, 0, 0, 1]);
        }
        f.extend_from_slice(&tail);
        let r = locate(&f);
        if tags > MAX_VLAN_TAGS {
            prop_assert_eq!(r, Err(WireError::TooManyVlanTags));
        } else if let Ok(l) = r {
            prop_assert_eq!(usize::from(l.vlan_count), tags.max(l.vlan_count as usize));
            prop_assert!(l.l4.is_none_or(|o| o <= f.len()));
        }
    }

    #[test]
    fn setters_round_trip(mac: [u8; 6], src: u32, dst: u32, s6: u128, port: u16, seq: u32, vni in 0u32..1 << 24) {
        let mut e = [0u8; 14];
        let mut eth = Ethernet::new_checked(&mut e[..]).unwrap();
        eth.set_src(MacAddr(mac));
        eth.set_ethertype(EtherType(port));
        prop_assert_eq!((eth.src(), eth.ethertype()), (MacAddr(mac), EtherType(port)));
        let mut p = [0u8; 20];
        p[0] = 0x45;
        p[3] = 20;
        let mut v4 = Ipv4::new_checked(&mut p[..]).unwrap();
        v4.set_src(src);
        v4.set_dst(dst);
        prop_assert_eq!((v4.src(), v4.dst()), (src, dst));
        let mut q = [0u8; 40];
        q[0] = 0x60;
        let mut v6 = Ipv6::new_checked(&mut q[..]).unwrap();
        v6.set_src(s6);
        v6.set_dst(!s6);
        prop_assert_eq!((v6.src(), v6.dst()), (s6, !s6));
        let mut t = [0u8; 20];
        t[12] = 0x50;
        let mut tcp = Tcp::new_checked(&mut t[..]).unwrap();
        tcp.set_dst_port(port);
        tcp.set_seq(seq);
        prop_assert_eq!((tcp.dst_port(), tcp.seq()), (port, seq));
        let mut x = [0x08u8, 0, 0, 0, 0, 0, 0, 0];
        let mut vx = Vxlan::new_checked(&mut x[..]).unwrap();
        vx.set_vni(vni);
        prop_assert_eq!(vx.vni(), vni);
        let s = MacAddr(mac).to_string();
        prop_assert_eq!(s.parse::<MacAddr>(), Ok(MacAddr(mac)));
    }
}

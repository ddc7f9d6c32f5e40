//! Random frames through the locator and every view never panic, and what `locate` reports
//! stays inside the frame.
#![no_main]
use brick_wire::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = locate(data) {
        assert!(l.l3 <= data.len());
        assert!(usize::from(l.vlan_count) <= MAX_VLAN_TAGS);
        if let Some(l4) = l.l4 {
            assert!(l4 <= data.len());
            let t = &data[l4..];
            match IpProto(l.proto) {
                IpProto::TCP => {
                    if let Ok(tcp) = Tcp::new_checked(t) {
                        let _ = (tcp.wscale(), tcp.payload().len());
                    }
                }
                IpProto::UDP => {
                    if let Ok(u) = Udp::new_checked(t) {
                        if let Ok(v) = Vxlan::new_checked(u.payload()) {
                            let _ = (v.vni(), locate(v.payload()));
                        }
                    }
                }
                IpProto::ICMPV6 => {
                    if let Ok(n) = Ndp::new_checked(t) {
                        let _ = (n.lladdr(), n.options().count());
                    }
                    if let Ok(m) = Mld::new_checked(t) {
                        let _ = m.group();
                    }
                }
                IpProto::IGMP => {
                    if let Ok(g) = Igmp::new_checked(t) {
                        let _ = g.group();
                    }
                }
                _ => {
                    if let Ok(i) = Icmp::new_checked(t) {
                        let _ = (i.msg_type(), i.payload().len());
                    }
                }
            }
        }
        let l3 = &data[l.l3..];
        if let Ok(v6) = Ipv6::new_checked(l3) {
            let _ = v6.walk();
        }
        if let Ok(v4) = Ipv4::new_checked(l3) {
            let _ = v4.payload().len();
        }
        if let Ok(a) = Arp::new_checked(l3) {
            let _ = (a.sha(), a.tpa());
        }
    }
});

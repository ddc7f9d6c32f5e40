//! Feeds arbitrary frames to the ARP/ND suppression responder, with the addresses the frame
//! asks for (where an ARP request and an NS keep their targets) bound in the table, so that
//! fuzzing reaches the reply writers: never a panic, and every reply is one the table's
//! owner would send (from its MAC and address, to the requester, a valid ICMPv6 checksum).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use brick_core::checksum::{csum_add, csum_add_value, csum_fold};
use brick_vtep::neigh_proxy::{answer, ProxyTable, Verdict, MAX_REPLY};
use libfuzzer_sys::fuzz_target;

const OWNER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];

fuzz_target!(|data: &[u8]| {
    let mut t = ProxyTable::new(2);
    if let Some(b) = data.get(38..42) {
        let _ = t.insert(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), OWNER);
    }
    if let Some(b) = data.get(62..78) {
        let a: [u8; 16] = b.try_into().unwrap();
        let _ = t.insert(IpAddr::V6(Ipv6Addr::from(a)), OWNER);
    }
    let mut out = [0u8; MAX_REPLY];
    match answer(data, |ip| t.get(ip), &mut out) {
        Verdict::ArpReply(n) => {
            assert_eq!(n, 42);
            assert_eq!((&out[6..12], &out[22..28]), (&OWNER[..], &OWNER[..]));
            assert_eq!(&out[28..32], &data[38..42], "from the asked address");
            assert_eq!(&out[0..6], &data[6..12], "to the requester");
        }
        Verdict::NdAdvert(n) => {
            assert_eq!(n, MAX_REPLY);
            assert_eq!(&out[6..12], &OWNER);
            assert_eq!(&out[22..38], &data[62..78], "from the asked address");
            let acc = csum_add(csum_add(0, &out[22..38]), &out[38..54]);
            let sum = csum_fold(csum_add(csum_add_value(acc, 32 + 58), &out[54..]));
            assert_eq!(sum, 0, "ICMPv6 checksum");
        }
        Verdict::Pass(_) | Verdict::Other => {}
    }
});

//! rtnetlink datagrams from the mirror namespace (what zebra installs, ultimately what BGP
//! peers advertise): reading them never panics, and every remote change names a mirror VNI.
#![no_main]

use std::collections::HashMap;

use butterfly_evpn::kernel::{changes_from_datagram, Change, Entry, Role, Seen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let links: HashMap<u32, (u32, Role)> =
        HashMap::from([(2, (10, Role::Bridge)), (3, (10, Role::Vxlan)), (4, (10, Role::Port)), (5, (10, Role::Peer))]);
    let mut out = Vec::new();
    changes_from_datagram(data, &links, &mut out);
    for s in out {
        if let Seen::Remote(Change::Add(e) | Change::Del(e)) = s {
            let vni = match e {
                Entry::RemoteMac { vni, .. } | Entry::Flood { vni, .. } | Entry::RemoteIp { vni, .. } => vni,
            };
            assert_eq!(vni, 10);
        }
    }
});

//! # butterfly-evpn
//!
//! BGP EVPN (RFC 7432, RFC 8365) for butterflyd, with FRR as the control plane, through the
//! only interface FRR's zebra reads and writes for EVPN: the Linux kernel's bridges, VXLAN
//! devices, FDB and neighbour tables.
//!
//! butterflyd mirrors each EVPN VNI it serves as a kernel VXLAN device, a bridge and an access
//! port (a veth) in a network namespace of its own, where zebra and bgpd run. These devices
//! carry no traffic (the data plane is butterflyd's); they only tell zebra what to advertise
//! and where zebra installs what it learnt:
//!
//! - each local VM MAC is a static FDB entry on the access port → zebra advertises a type-2
//!   (MAC) route; each of its IPs a neighbour entry on the bridge → a type-2 MAC+IP route;
//! - each mirrored VNI → a type-3 (inclusive multicast) route for this VTEP;
//! - remote type-2 routes come back as `extern_learn` FDB entries on the VXLAN device (with
//!   the remote VTEP as `dst`) and neighbour entries on the bridge, remote type-3 routes as
//!   `00:00:00:00:00:00 dst VTEP` flood entries ([`kernel`] reads them).
//!
//! [`mirror::Mirror`] writes the mirror, [`kernel`] turns rtnetlink messages into
//! [`kernel::Change`]s (it never panics on what it reads: property tests and the fuzz target
//! `kernel_events`), and [`reconcile::Reconciler`] decides what the data plane gets, holding
//! withdrawals while FRR is down or restarting. [`netns`] opens sockets in the namespace.
#![warn(missing_docs)]

pub mod kernel;
pub mod mirror;
pub mod netns;
pub mod reconcile;

/// A MAC address.
pub type Mac = [u8; 6];

/// Formats a MAC address as `52:54:00:00:00:01`.
pub fn mac_str(m: &Mac) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The names of the mirror devices of `vni`: bridge, VXLAN device, access port (bridged) and
/// its veth peer. At most 12 characters for any 24-bit VNI (Linux allows 15).
pub fn device_names(vni: u32) -> [String; 4] {
    [format!("bfbr{vni}"), format!("bfvx{vni}"), format!("bfap{vni}"), format!("bfpp{vni}")]
}

/// The VNI and role of a mirror device, from its name; `None` for any other device.
pub fn parse_device_name(name: &str) -> Option<(u32, kernel::Role)> {
    use kernel::Role;
    let (role, rest) = if let Some(r) = name.strip_prefix("bfbr") {
        (Role::Bridge, r)
    } else if let Some(r) = name.strip_prefix("bfvx") {
        (Role::Vxlan, r)
    } else if let Some(r) = name.strip_prefix("bfap") {
        (Role::Port, r)
    } else if let Some(r) = name.strip_prefix("bfpp") {
        (Role::Peer, r)
    } else {
        return None;
    };
    if rest.is_empty()
        || rest.len() > 8
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || rest.starts_with('0') && rest.len() > 1
    {
        return None;
    }
    let vni: u32 = rest.parse().ok()?;
    (vni < 1 << 24).then_some((vni, role))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip_and_fit() {
        for vni in [0u32, 1, 42, 16_777_215] {
            for (i, n) in device_names(vni).iter().enumerate() {
                assert!(n.len() <= 15, "{n}");
                let (v, role) = parse_device_name(n).unwrap();
                assert_eq!(v, vni);
                assert_eq!(role as usize, i);
            }
        }
        for bad in ["bfbr", "bfvx016", "bfvx16777216", "bfvx1a", "eth0", "bfvx123456789", "bfvx-1"] {
            assert_eq!(parse_device_name(bad), None, "{bad}");
        }
    }
}

//! The underlay device's MTU (`--nic-mtu N|max`), set on a kernel interface (an AF_PACKET
//! underlay's or the underlay TAP) through rtnetlink ([`crate::link`]), and the MTU VMs are given behind
//! the VTEP.
//!
//! `max` is Butterfly's "the highest MTU the port accepts": the kernel reports a device's
//! ceiling (`IFLA_MAX_MTU`), but some devices refuse less than it (a VLAN above its lower
//! device's MTU), so when the ceiling is refused the highest accepted value is found by
//! bisection between the current MTU and the ceiling, as Butterfly did.

use std::io;
use std::net::IpAddr;

use crate::link::{Link, LinkError, Rtnl};

/// What `--nic-mtu` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicMtu {
    /// This MTU.
    Value(u16),
    /// The highest MTU the device accepts.
    Max,
}

impl std::fmt::Display for NicMtu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicMtu::Value(v) => write!(f, "{v}"),
            NicMtu::Max => f.write_str("max"),
        }
    }
}

/// Bytes VXLAN adds to an inner frame on an IPv4 underlay: outer IPv4 (20), UDP (8), VXLAN
/// (8) and the inner Ethernet header (14).
pub const OVERHEAD_V4: u16 = 50;
/// The same on an IPv6 underlay (outer IPv6 is 40 bytes).
pub const OVERHEAD_V6: u16 = 70;

/// The IP MTU VMs get behind a VTEP whose underlay has IP MTU `underlay`.
pub fn vm_mtu(underlay: u16, vtep: IpAddr) -> u16 {
    underlay.saturating_sub(if vtep.is_ipv4() { OVERHEAD_V4 } else { OVERHEAD_V6 })
}

/// The highest MTU the VTEP handles (its MTU is a `u16`; no device goes higher anyway).
const CEILING: u32 = u16::MAX as u32;

/// Why the underlay device's MTU could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum MtuError {
    /// The device could not be read (rtnetlink, or no such device).
    #[error("underlay {0}")]
    Link(#[from] LinkError),
    /// The kernel refused the MTU.
    #[error("underlay {device} refused MTU {mtu} (--nic-mtu){range}: {source}")]
    Refused {
        /// The interface.
        device: String,
        /// The MTU asked.
        mtu: u32,
        /// The device's range as the kernel reports it, as text (may be empty).
        range: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

/// A device's MTU range as text for an error message (empty when the kernel gives none).
fn range(link: &Link) -> String {
    match (link.min_mtu, link.max_mtu) {
        (0, 0) => String::new(),
        (min, 0) => format!(" (its minimum is {min})"),
        (min, max) => format!(" (its range is {min}..={max})"),
    }
}

/// Sets interface `device`'s MTU as `want` says; returns the MTU it has now.
pub fn apply(device: &str, want: NicMtu) -> Result<u16, MtuError> {
    let netlink = |source| LinkError::Netlink { device: device.to_string(), source };
    let mut nl = Rtnl::open().map_err(netlink)?;
    let link = nl.link(device)?;
    let refused = |mtu: u32, source: io::Error| MtuError::Refused {
        device: device.to_string(),
        mtu,
        range: range(&link),
        source,
    };
    let mtu = match want {
        NicMtu::Value(v) => {
            nl.set_mtu(link.index, v.into()).map_err(|e| refused(v.into(), e))?;
            u32::from(v)
        }
        NicMtu::Max => {
            let ceiling = if link.max_mtu == 0 { CEILING } else { link.max_mtu.min(CEILING) };
            highest_accepted(link.mtu.min(ceiling), ceiling, |m| nl.set_mtu(link.index, m))
                .map_err(|e| refused(ceiling, e))?
        }
    };
    // What the kernel has now (a driver may round).
    let now = nl.link(device)?.mtu;
    if now != mtu {
        tracing::info!("underlay {device}: MTU {mtu} asked, the device has {now}");
    }
    Ok(now.min(CEILING) as u16)
}

/// The highest MTU in `current..=ceiling` that `try_set` accepts, leaving the device at it:
/// the ceiling if accepted, else bisection, knowing the `current` MTU is accepted. Fails
/// only when the device refuses even its current MTU.
fn highest_accepted(
    current: u32,
    ceiling: u32,
    mut try_set: impl FnMut(u32) -> io::Result<()>,
) -> io::Result<u32> {
    let first = match try_set(ceiling) {
        Ok(()) => return Ok(ceiling),
        Err(e) => e,
    };
    let (mut ok, mut refused) = (current, ceiling);
    while refused - ok > 1 {
        let mid = ok + (refused - ok) / 2;
        match try_set(mid) {
            Ok(()) => ok = mid,
            Err(_) => refused = mid,
        }
    }
    // The last attempt may have been refused: the device keeps the last accepted value,
    // `ok`, unless nothing was accepted at all.
    if ok == current {
        try_set(current).map_err(|_| first)?;
    }
    Ok(ok)
}

/// The highest MTU a DPDK port accepts, from its `rte_eth_dev_info`: `max_mtu`, and no more
/// than its largest receivable frame less the L2 overhead, as `rte_eth_dev_set_mtu` checks
/// it (the overhead is what `max_rx_pktlen` adds to `max_mtu`, or Ethernet header and CRC
/// when the driver reports no `max_mtu`).
#[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
pub fn dpdk_max_mtu(max_mtu: u16, max_rx_pktlen: u32) -> u16 {
    const ETHER_HDR_AND_CRC: u32 = 14 + 4;
    let overhead = if max_mtu != u16::MAX && max_rx_pktlen > u32::from(max_mtu) {
        max_rx_pktlen - u32::from(max_mtu)
    } else {
        ETHER_HDR_AND_CRC
    };
    let by_frame = max_rx_pktlen.saturating_sub(overhead);
    by_frame.min(u32::from(max_mtu)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_mtu_leaves_room_for_the_encapsulation() {
        assert_eq!(vm_mtu(1500, "198.18.0.1".parse().unwrap()), 1450);
        assert_eq!(vm_mtu(9000, "fd00::1".parse().unwrap()), 8930);
    }

    /// A device that accepts MTUs up to `limit` (below its reported ceiling).
    fn device(limit: u32, set: &mut Vec<u32>) -> impl FnMut(u32) -> io::Result<()> + '_ {
        move |m| {
            if m <= limit {
                set.push(m);
                Ok(())
            } else {
                Err(io::Error::from_raw_os_error(libc::ERANGE))
            }
        }
    }

    #[test]
    fn max_is_the_ceiling_when_accepted() {
        let mut set = Vec::new();
        assert_eq!(highest_accepted(1500, 65535, device(65535, &mut set)).unwrap(), 65535);
        assert_eq!(set, [65535]);
    }

    #[test]
    fn max_below_a_refused_ceiling_is_found_by_bisection() {
        let mut set = Vec::new();
        assert_eq!(highest_accepted(1500, 65535, device(9216, &mut set)).unwrap(), 9216);
        assert_eq!(*set.last().unwrap(), 9216, "the device is left at the highest accepted MTU");
        let mut set = Vec::new();
        assert_eq!(highest_accepted(1500, 65535, device(1500, &mut set)).unwrap(), 1500);
        assert_eq!(set.last(), Some(&1500), "nothing higher accepted: back at the current MTU");
    }

    #[test]
    fn a_device_refusing_everything_is_an_error() {
        let mut set = Vec::new();
        assert!(highest_accepted(1500, 65535, device(0, &mut set)).is_err());
    }

    #[test]
    fn dpdk_max_follows_the_port_limits() {
        // net_tap/net_null style: no max_mtu, the frame limit decides.
        assert_eq!(dpdk_max_mtu(u16::MAX, 65535), 65535 - 18);
        // A NIC reporting both (max_rx_pktlen = max_mtu + header, CRC and 2 VLAN tags).
        assert_eq!(dpdk_max_mtu(9702, 9702 + 26), 9702);
        // virtio-style: max_mtu above what the frame limit allows.
        assert_eq!(dpdk_max_mtu(9000, 1518), 1500);
    }
}

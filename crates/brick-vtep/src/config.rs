//! Configuration, per-VNI options and errors of the VTEP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// IGMP version used for joins and leaves over an IPv4 underlay. Queries are always
/// answered in the version they were asked in (v2 query → v2 reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IgmpVersion {
    /// IGMPv2 (RFC 2236): one report per group, to the group; leave to 224.0.0.2.
    V2,
    /// IGMPv3 (RFC 3376): reports to 224.0.0.22 with group records.
    #[default]
    V3,
}

/// How a [`Vtep`](crate::Vtep) is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VtepConfig {
    /// Our VTEP address. Its family chooses the underlay: IPv4 or IPv6.
    pub local_ip: IpAddr,
    /// Our MAC on the underlay (the physical NIC's).
    pub local_mac: [u8; 6],
    /// UDP destination port of VXLAN (default 4789, RFC 7348).
    pub udp_port: u16,
    /// Underlay IP MTU (default 1500). An inner frame whose encapsulation would exceed it
    /// is dropped and answered with ICMP "fragmentation needed" / ICMPv6 "packet too big".
    pub mtu: u16,
    /// TTL / hop limit of the outer header (default 64).
    pub ttl: u8,
    /// Next hop for remote VTEPs outside `local_ip/prefix_len`; `None`: every remote VTEP
    /// is on-link and resolved directly with ARP/NDP.
    pub gateway: Option<IpAddr>,
    /// Prefix length of the on-link underlay network (used only with `gateway`).
    pub prefix_len: u8,
    /// Whether [`add_vni`](crate::Vtep::add_vni) joins the VNI's default multicast group
    /// and floods BUM traffic to it (default true).
    pub multicast: bool,
    /// Scope nibble of the IPv6 default groups `ff0X::<vni>` (default 5, site-local: valid
    /// beyond one link and routable inside a site; 2 would keep flooding on the link, 8
    /// organisation, e global). Must be 1..=15 except 0 and 15 reserved values are refused.
    pub ipv6_scope: u8,
    /// IGMP version for joins (IPv4 underlay).
    pub igmp_version: IgmpVersion,
    /// Most inner MACs learnt per VNI (default 4096). When full, new MACs are not learnt
    /// (frames to them are flooded) and counted in `learn_refused`, until aging frees room.
    pub mac_capacity: usize,
    /// Learnt inner MACs expire this long after they were last seen (default 300 s).
    pub mac_aging: Duration,
    /// Most underlay neighbours (ARP/NDP entries) at once (default 1024). When full, packets
    /// to a new next hop are dropped ("neighbour table full").
    pub neigh_capacity: usize,
    /// A resolved neighbour is re-probed after this long without confirmation (default 300 s).
    pub neigh_reachable: Duration,
    /// Packets held per unresolved neighbour (default 4); more are dropped ("unresolved").
    pub hold_per_neigh: usize,
    /// Most VNIs (east ports), default 4096.
    pub max_vnis: usize,
    /// The underlay NIC takes UDP-tunnel TCP super-frames (VXLAN with GSO metadata, e.g. a
    /// TAP underlay with `udp_tunnel` offload), IPv4 underlay only. When true, a TCP
    /// super-frame from a VM is encapsulated whole and keeps its GSO metadata; otherwise
    /// (default) the VTEP cuts it into MSS-sized segments before encapsulation.
    pub tunnel_gso: bool,
    /// The underlay NIC completes a partial UDP checksum (`OffloadFlags::CSUM_NEEDED`, the
    /// pseudo-header sum in the field), as a DPDK port with UDP checksum offload or a TAP
    /// with checksum offload does. Used on an IPv6 underlay, where the outer UDP checksum is
    /// due (over IPv4 VXLAN sends 0): the VTEP then writes the pseudo-header sum and leaves
    /// the sum over the frame to the NIC instead of computing it over every byte. Every
    /// butterfly-rs underlay brick completes it in software when its device cannot, so this
    /// only moves the work. Default false.
    pub outer_csum_offload: bool,
}

impl VtepConfig {
    /// A configuration with defaults for everything but the address and MAC.
    pub fn new(local_ip: IpAddr, local_mac: [u8; 6]) -> Self {
        VtepConfig {
            local_ip,
            local_mac,
            udp_port: 4789,
            mtu: 1500,
            ttl: 64,
            gateway: None,
            prefix_len: if local_ip.is_ipv4() { 24 } else { 64 },
            multicast: true,
            ipv6_scope: 5,
            igmp_version: IgmpVersion::V3,
            mac_capacity: 4096,
            mac_aging: Duration::from_secs(300),
            neigh_capacity: 1024,
            neigh_reachable: Duration::from_secs(300),
            hold_per_neigh: 4,
            max_vnis: 4096,
            tunnel_gso: false,
            outer_csum_offload: false,
        }
    }

    /// Whether the underlay is IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.local_ip.is_ipv6()
    }

    /// The default multicast group of `vni` for this underlay (see [`default_group`]).
    pub fn default_group(&self, vni: u32) -> IpAddr {
        default_group(vni, self.is_ipv6(), self.ipv6_scope)
    }
}

/// The multicast group Butterfly uses for a VNI: IPv4 `230.(vni>>16).((vni>>8)&255).(vni&255)`,
/// IPv6 `ff0X::<vni>` with scope `X` (Butterfly used `ff00::`, whose scope 0 is reserved and
/// which Linux refuses; butterfly-rs defaults to 5, site-local).
pub fn default_group(vni: u32, ipv6: bool, scope: u8) -> IpAddr {
    if ipv6 {
        let v = vni & MAX_VNI;
        IpAddr::V6(Ipv6Addr::new(0xff00 | u16::from(scope & 0xf), 0, 0, 0, 0, 0, (v >> 16) as u16, v as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(230, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8))
    }
}

/// Checks that `ip` can be a remote VTEP (a flood-list entry, a static MAC's VTEP) of a
/// VTEP at `local`: unicast, of the underlay's family (`local`'s), not `local` itself, not
/// unspecified nor the IPv4 broadcast address. `what` names the role in the error.
pub fn check_remote(ip: IpAddr, local: IpAddr, what: &'static str) -> Result<(), VtepError> {
    let bad = ip.is_ipv6() != local.is_ipv6()
        || ip.is_multicast()
        || ip.is_unspecified()
        || ip == local
        || matches!(ip, IpAddr::V4(a) if a.is_broadcast());
    if bad {
        return Err(VtepError::BadAddress(ip, what));
    }
    Ok(())
}

/// Checks that `group` can be the multicast group of a VNI on an IPv6 (`ipv6`) or IPv4
/// underlay: multicast, of the underlay's family, and for IPv6 of a scope that leaves the
/// host (not 0 reserved, 1 interface-local or 15 reserved).
pub fn check_group(group: IpAddr, ipv6: bool) -> Result<(), VtepError> {
    if group.is_ipv6() != ipv6 || !group.is_multicast() {
        return Err(VtepError::BadAddress(group, "multicast group"));
    }
    if let IpAddr::V6(a) = group {
        let scope = a.octets()[1] & 0xf;
        if scope <= 1 || scope == 15 {
            return Err(VtepError::BadAddress(group, "multicast group (scope)"));
        }
    }
    Ok(())
}

/// Per-VNI flooding options for [`add_vni_with`](crate::Vtep::add_vni_with).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VniOptions {
    /// Multicast group BUM traffic goes to (and that is joined); `None`: no multicast.
    pub group: Option<IpAddr>,
    /// Remote VTEPs each BUM frame is also sent to (head-end replication), like
    /// `bridge fdb append 00:00:00:00:00:00 dev vxlan0 dst IP`.
    pub flood: Vec<IpAddr>,
}

/// What went wrong configuring a VTEP. The VTEP is left unchanged.
#[derive(Debug, thiserror::Error)]
pub enum VtepError {
    /// VNIs are 24-bit.
    #[error("VNI {0} is out of range (0..=16777215)")]
    InvalidVni(u32),
    /// The VNI is already attached to a port.
    #[error("VNI {0} is already attached to port {1}")]
    VniInUse(u32, u16),
    /// The port already carries a VNI.
    #[error("port {0} already carries VNI {1}")]
    PortInUse(u16, u32),
    /// The VNI is not configured.
    #[error("VNI {0} is not configured")]
    UnknownVni(u32),
    /// Too many VNIs.
    #[error("at most {0} VNIs")]
    TooManyVnis(usize),
    /// An address of the wrong family or kind (unicast/multicast) was given.
    #[error("{0} is not a valid {1} for this VTEP")]
    BadAddress(IpAddr, &'static str),
    /// A MAC that must be unicast is not.
    #[error("{} is not a unicast MAC address", brick_core::MacFmt(*.0))]
    NotUnicast([u8; 6]),
    /// The VNI's MAC table is full.
    #[error("the MAC table of VNI {0} is full")]
    TableFull(u32),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    BadConfig(&'static str),
    /// The wake-up eventfd could not be created.
    #[error("cannot create the wake-up eventfd: {0}")]
    WakeFd(#[source] std::io::Error),
}

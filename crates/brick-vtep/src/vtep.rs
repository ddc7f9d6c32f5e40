//! The VTEP brick: encapsulation, decapsulation, learning, underlay neighbours, multicast
//! membership and path MTU feedback.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;
use std::time::Duration;

use brick_core::{
    Brick, Burst, GsoType, OffloadFlags, Output, Packet, PacketPool, PortId, Side, Timestamp, Waker,
};
use brick_switch::{is_group, mac_to_u64, Learned, MacEntry, MacHasher, MacTable};

use crate::config::{IgmpVersion, VniOptions, VtepConfig, VtepError, MAX_VNI};
use crate::wire::*;

brick_core::drop_reasons! {
    /// Why the VTEP drops a packet; `NAMES` is its [`Brick::drop_reasons`].
    pub enum VtepDrop {
        /// Shorter than its headers say.
        Trunc => "truncated",
        /// Outer dst MAC / IP is neither ours nor a joined group.
        NotUs => "not for us",
        /// Other ethertype, protocol or UDP port.
        NotVxlan => "not vxlan",
        /// Malformed IP / UDP / ARP header.
        BadHdr => "bad header",
        /// IPv4 header, UDP or ICMPv6 checksum wrong.
        BadCsum => "bad checksum",
        /// VXLAN I flag missing.
        BadVxlan => "bad vxlan header",
        /// No port for the VNI.
        UnknownVni => "unknown vni",
        /// Outer IPv4 fragment (VXLAN is never fragmented by us).
        Frag => "fragment",
        /// ARP/NDP/IGMP/MLD consumed by the VTEP itself.
        Control => "control",
        /// Frame from an east port with no VNI.
        NoVni => "port without vni",
        /// BUM with neither group nor flood list.
        NoTarget => "no flood target",
        /// Inner frame + overhead above the underlay MTU.
        TooBig => "too big",
        /// Next hop not resolved (hold queue full or resolution failed).
        Unresolved => "unresolved",
        /// No room to resolve a new next hop.
        NeighFull => "neighbour table full",
        /// No buffer for a replica or a control packet.
        Pool => "pool empty",
        /// Cannot prepend the outer headers.
        Headroom => "no headroom",
        /// Super-frame with malformed GSO metadata or headers.
        BadGso => "bad gso",
    }
}

/// Drop reasons of the VTEP, in [`Brick::drop_reasons`] order.
pub const DROP_REASONS: &[&str] = VtepDrop::NAMES;

/// Control packets waiting for the next poll (joins, probes from `tick`).
const PENDING_MAX: usize = 512;
/// Groups per IGMPv3 / MLDv2 report.
const GROUPS_PER_REPORT: usize = 64;
/// Resolution attempts before giving up on a neighbour.
const MAX_PROBES: u8 = 3;
/// Interval between resolution attempts.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Where a learnt or static inner MAC lives: a remote VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The remote VTEP's underlay address.
    pub ip: IpAddr,
    /// The outer source MAC its frames came with (the VTEP's, or the last router's);
    /// `None` for static entries, resolved through ARP/NDP instead.
    pub mac: Option<[u8; 6]>,
}

/// Counters of one VNI.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniCounters {
    /// Frames encapsulated (one per inner frame, whatever the replication).
    pub encap_pkts: u64,
    /// Inner bytes encapsulated.
    pub encap_bytes: u64,
    /// Frames decapsulated and delivered.
    pub decap_pkts: u64,
    /// Of those, broadcast/multicast inner frames (BUM received from remote VTEPs).
    pub bum_rx: u64,
    /// Inner bytes delivered.
    pub decap_bytes: u64,
    /// BUM frames flooded (group and/or flood list).
    pub flooded: u64,
    /// Inner MACs learnt.
    pub learned: u64,
    /// Inner MACs seen behind another VTEP than before.
    pub moves: u64,
    /// Inner MACs not learnt because the table was full.
    pub learn_refused: u64,
    /// Entries removed by aging.
    pub aged: u64,
}

/// A snapshot of one VNI's configuration and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VniInfo {
    /// The VNI.
    pub vni: u32,
    /// Its east port.
    pub port: PortId,
    /// Multicast group, if any.
    pub group: Option<IpAddr>,
    /// Static flood list.
    pub flood: Vec<IpAddr>,
    /// Counters.
    pub counters: VniCounters,
}

/// VTEP-wide counters (drops by reason live in the graph's `BrickStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepCounters {
    /// Outer packets sent (replicas included, control packets excluded).
    pub tx_outer: u64,
    /// Replicas made for head-end replication / group + list flooding.
    pub replicas: u64,
    /// ARP replies and neighbour advertisements sent for our address.
    pub neigh_answers: u64,
    /// ARP requests and neighbour solicitations sent.
    pub neigh_requests: u64,
    /// Neighbours resolved.
    pub neigh_resolved: u64,
    /// Packets held while a neighbour was being resolved.
    pub held: u64,
    /// IGMP / MLD reports sent (joins, leaves and answers).
    pub reports: u64,
    /// IGMP / MLD queries answered.
    pub queries: u64,
    /// ICMP fragmentation-needed / ICMPv6 packet-too-big sent to VMs.
    pub icmp_too_big: u64,
    /// Control packets lost because the pool was empty or the pending queue full.
    pub control_lost: u64,
    /// TCP super-frames encapsulated whole, GSO metadata kept (`tunnel_gso`).
    pub gso_tx: u64,
    /// TCP super-frames cut in software before encapsulation.
    pub gso_segmented: u64,
    /// Segments made from them.
    pub gso_segments: u64,
    /// Super-frames decapsulated whole (GSO metadata kept for the VM).
    pub gso_rx: u64,
}

/// Resolution state of one underlay neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighState {
    /// Being resolved; packets are held.
    Incomplete,
    /// Resolved.
    Reachable,
}

/// A snapshot of one underlay neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighInfo {
    /// Its address.
    pub ip: IpAddr,
    /// Its MAC (zero while incomplete).
    pub mac: [u8; 6],
    /// State.
    pub state: NeighState,
    /// Packets held for it.
    pub held: usize,
}

struct Neigh {
    mac: [u8; 6],
    state: NeighState,
    confirmed: Timestamp,
    last_probe: Timestamp,
    probes: u8,
    held: Vec<Packet>,
}

struct VniState {
    vni: u32,
    group: Option<IpAddr>,
    flood: Vec<IpAddr>,
    fdb: MacTable<Remote>,
    counters: VniCounters,
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MacHasher>>;

/// A VXLAN tunnel endpoint (RFC 7348).
///
/// West port 0 faces the underlay (the physical NIC); each east port carries one VNI
/// ([`add_vni`](Self::add_vni)). Frames from an east port are encapsulated in place (the
/// outer headers go into the packet's headroom, no copy) towards the remote VTEP learnt for
/// the inner destination, or, for broadcast/unknown/multicast, to the VNI's multicast group
/// and its static flood list. VXLAN from the underlay is checked, learnt from and delivered,
/// stripped, to the VNI's port. The VTEP answers ARP/NDP for its own address, resolves next
/// hops, joins its groups with IGMP/MLDv2 and answers queries.
///
/// Control packets created outside a burst (joins on [`add_vni`](Self::add_vni), probes
/// from [`tick`](Brick::tick)) wait in a bounded queue and leave on the next
/// [`poll`](Brick::poll): the VTEP is a source with a wake fd.
pub struct Vtep {
    cfg: VtepConfig,
    pool: PacketPool,
    v6: bool,
    local4: Ipv4Addr,
    local6: Ipv6Addr,
    solicited: Ipv6Addr,
    csum_v4_base: u64,
    csum_v6_src: u64,
    ip_id: u16,
    vni_ports: FastMap<u32, PortId>,
    vnis: Vec<Option<VniState>>,
    joined: HashMap<IpAddr, u32>,
    neigh: HashMap<IpAddr, Neigh>,
    pending: VecDeque<Packet>,
    pending_drops: u64,
    waker: Waker,
    /// Whether `waker` was rung since the last poll (so poll drains it only then: one
    /// syscall per wake-up, none per round).
    rung: bool,
    scratch: Vec<u8>,
    counters: VtepCounters,
    last_sweep: Timestamp,
    report_again: Option<Timestamp>,
    /// Per-burst memo of the decapsulation path: last VNI → port, last inner source learnt
    /// (a burst usually carries few flows; the time is the same for the whole burst).
    memo_vni: Option<(u32, PortId)>,
    memo_learnt: Option<(u64, PortId, Remote)>,
    /// Segments of the super-frame being cut in software (capacity kept between bursts).
    gso_segs: Vec<Packet>,
}

impl std::fmt::Debug for Vtep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vtep").field("cfg", &self.cfg).field("vnis", &self.vni_ports.len()).finish()
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn mac6(d: &[u8]) -> [u8; 6] {
    [d[0], d[1], d[2], d[3], d[4], d[5]]
}

#[inline(always)]
fn rd64(d: &[u8], at: usize) -> u64 {
    match d.get(at..at + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    }
}

#[inline(always)]
fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(23)
}

/// A hash of the inner flow (MACs, addresses, protocol, ports) for the outer UDP source port
/// and IPv6 flow label (RFC 7348 §5: entropy for ECMP). Frames of one flow always hash alike.
#[inline]
pub fn flow_hash(d: &[u8]) -> u64 {
    if d.len() < 14 {
        return 0;
    }
    let mut h = mix(rd64(d, 0), rd64(d, 6));
    let et = be16(d, 12);
    if et == ETH_IPV4 && d.len() >= 34 {
        h = mix(h, rd64(d, 26));
        let proto = d[23];
        let l4 = 14 + usize::from(d[14] & 0xf) * 4;
        if (proto == PROTO_TCP || proto == PROTO_UDP) && d.len() >= l4 + 4 {
            h = mix(
                h,
                u64::from(u32::from_le_bytes([d[l4], d[l4 + 1], d[l4 + 2], d[l4 + 3]]))
                    | u64::from(proto) << 32,
            );
        }
    } else if et == ETH_IPV6 && d.len() >= 54 {
        h = mix(mix(mix(mix(h, rd64(d, 22)), rd64(d, 30)), rd64(d, 38)), rd64(d, 46));
        let proto = d[20];
        if (proto == PROTO_TCP || proto == PROTO_UDP) && d.len() >= 58 {
            h = mix(h, u64::from(u32::from_le_bytes([d[54], d[55], d[56], d[57]])) | u64::from(proto) << 32);
        }
    }
    h ^ (h >> 31)
}

/// The UDP source port for a flow hash: 49152–65535 (RFC 7348 §5 recommends the dynamic range).
#[inline]
pub fn source_port(hash: u64) -> u16 {
    0xc000 | (hash >> 50) as u16
}

/// Completes a partial (virtio `NEEDS_CSUM`) L4 checksum in software before encapsulation,
/// so the tunnel carries a valid inner frame.
fn complete_inner_csum(pkt: &mut Packet) {
    let m = *pkt.meta();
    let _ = brick_core::checksum::complete_partial(pkt.data_mut(), m.csum_start.into(), m.csum_offset.into());
    pkt.meta_mut().offload.remove(OffloadFlags::CSUM_NEEDED);
}

impl Vtep {
    /// A VTEP with `cfg`, taking replicas and control packets from `pool`.
    pub fn new(cfg: VtepConfig, pool: PacketPool) -> Result<Self, VtepError> {
        if cfg.local_ip.is_unspecified() || cfg.local_ip.is_multicast() {
            return Err(VtepError::BadAddress(cfg.local_ip, "local address"));
        }
        if cfg.local_mac[0] & 1 != 0 || cfg.local_mac == [0; 6] {
            return Err(VtepError::NotUnicast(cfg.local_mac));
        }
        if let Some(gw) = cfg.gateway {
            if gw.is_ipv6() != cfg.is_ipv6() || gw.is_multicast() || gw.is_unspecified() {
                return Err(VtepError::BadAddress(gw, "gateway"));
            }
        }
        let min_mtu = if cfg.is_ipv6() { 1280 } else { 576 };
        if cfg.mtu < min_mtu {
            return Err(VtepError::BadConfig("mtu below the IP minimum (576 / 1280)"));
        }
        if cfg.mac_capacity == 0 || cfg.neigh_capacity == 0 || cfg.max_vnis == 0 || cfg.max_vnis > 65535 {
            return Err(VtepError::BadConfig("capacities must be positive (max_vnis at most 65535)"));
        }
        if cfg.mac_aging.is_zero() || cfg.neigh_reachable.is_zero() {
            return Err(VtepError::BadConfig("aging times must be positive"));
        }
        if cfg.ipv6_scope == 0 || cfg.ipv6_scope > 14 || cfg.ttl == 0 {
            return Err(VtepError::BadConfig("ipv6_scope must be 1..=14 and ttl positive"));
        }
        if cfg.prefix_len > if cfg.is_ipv6() { 128 } else { 32 } {
            return Err(VtepError::BadConfig("prefix_len too long"));
        }
        let waker = Waker::new().map_err(|e| VtepError::Io(e.to_string()))?;
        let (v6, local4, local6) = match cfg.local_ip {
            IpAddr::V4(a) => (false, a, Ipv6Addr::UNSPECIFIED),
            IpAddr::V6(a) => (true, Ipv4Addr::UNSPECIFIED, a),
        };
        // Constant part of the outer IPv4 header sum: version/IHL, DF, TTL/protocol, source.
        let csum_v4_base = csum_add_value(
            csum_add(0, &local4.octets()),
            0x4500 + 0x4000 + (u64::from(cfg.ttl) << 8 | u64::from(PROTO_UDP)),
        );
        let csum_v6_src = csum_add_value(csum_add(0, &local6.octets()), u64::from(PROTO_UDP));
        Ok(Vtep {
            v6,
            local4,
            local6,
            solicited: solicited_node(local6),
            csum_v4_base,
            csum_v6_src,
            ip_id: 0,
            vni_ports: FastMap::default(),
            vnis: Vec::new(),
            joined: HashMap::new(),
            neigh: HashMap::with_capacity(cfg.neigh_capacity.min(4096)),
            pending: VecDeque::with_capacity(64),
            pending_drops: 0,
            waker,
            rung: false,
            scratch: Vec::with_capacity(2048),
            counters: VtepCounters::default(),
            last_sweep: Timestamp(0),
            report_again: None,
            memo_vni: None,
            memo_learnt: None,
            gso_segs: Vec::with_capacity(64),
            pool,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VtepConfig {
        &self.cfg
    }

    /// VTEP-wide counters.
    pub fn counters(&self) -> VtepCounters {
        self.counters
    }

    fn check_vni(vni: u32) -> Result<(), VtepError> {
        if vni > MAX_VNI {
            return Err(VtepError::InvalidVni(vni));
        }
        Ok(())
    }

    fn check_unicast(&self, ip: IpAddr, what: &'static str) -> Result<(), VtepError> {
        crate::config::check_remote(ip, self.cfg.local_ip, what)
    }

    fn check_group(&self, ip: IpAddr) -> Result<(), VtepError> {
        // Scopes 0 (reserved), 1 (interface-local) and 15 (reserved) cannot leave the host.
        crate::config::check_group(ip, self.v6)
    }

    /// Attaches `vni` to east `port`, with the default group when
    /// [`VtepConfig::multicast`] is on (joined at once), and no flood list.
    pub fn add_vni(&mut self, vni: u32, port: PortId) -> Result<(), VtepError> {
        Self::check_vni(vni)?;
        let group = self.cfg.multicast.then(|| self.cfg.default_group(vni));
        self.add_vni_with(vni, port, VniOptions { group, flood: Vec::new() })
    }

    /// Attaches `vni` to east `port` with explicit flooding options.
    pub fn add_vni_with(&mut self, vni: u32, port: PortId, opts: VniOptions) -> Result<(), VtepError> {
        Self::check_vni(vni)?;
        if let Some(&p) = self.vni_ports.get(&vni) {
            return Err(VtepError::VniInUse(vni, p));
        }
        if let Some(Some(st)) = self.vnis.get(port as usize) {
            return Err(VtepError::PortInUse(port, st.vni));
        }
        if self.vni_ports.len() >= self.cfg.max_vnis || port as usize >= self.cfg.max_vnis {
            return Err(VtepError::TooManyVnis(self.cfg.max_vnis));
        }
        if let Some(g) = opts.group {
            self.check_group(g)?;
        }
        for &ip in &opts.flood {
            self.check_unicast(ip, "flood target")?;
        }
        let mut flood = opts.flood;
        flood.dedup();
        if self.vnis.len() <= port as usize {
            self.vnis.resize_with(port as usize + 1, || None);
        }
        self.vnis[port as usize] = Some(VniState {
            vni,
            group: None,
            flood,
            fdb: MacTable::with_reserve(self.cfg.mac_capacity, self.cfg.mac_aging, 64),
            counters: VniCounters::default(),
        });
        self.vni_ports.insert(vni, port);
        if let Some(g) = opts.group {
            self.set_group_of(port, Some(g));
        }
        Ok(())
    }

    /// Detaches `vni` (leaving its group if no other VNI uses it); returns its port.
    pub fn remove_vni(&mut self, vni: u32) -> Result<PortId, VtepError> {
        let port = self.vni_ports.get(&vni).copied().ok_or(VtepError::UnknownVni(vni))?;
        self.set_group_of(port, None);
        self.vni_ports.remove(&vni);
        self.vnis[port as usize] = None;
        Ok(port)
    }

    fn state_mut(&mut self, vni: u32) -> Result<&mut VniState, VtepError> {
        let port = *self.vni_ports.get(&vni).ok_or(VtepError::UnknownVni(vni))?;
        self.vnis[port as usize].as_mut().ok_or(VtepError::UnknownVni(vni))
    }

    /// Changes (or removes, with `None`) the multicast group of `vni`, live: leaves the old
    /// group, joins the new one.
    pub fn set_group(&mut self, vni: u32, group: Option<IpAddr>) -> Result<(), VtepError> {
        if let Some(g) = group {
            self.check_group(g)?;
        }
        let port = *self.vni_ports.get(&vni).ok_or(VtepError::UnknownVni(vni))?;
        self.set_group_of(port, group);
        Ok(())
    }

    fn set_group_of(&mut self, port: PortId, group: Option<IpAddr>) {
        let Some(st) = self.vnis.get_mut(port as usize).and_then(Option::as_mut) else { return };
        let old = std::mem::replace(&mut st.group, group);
        if old == group {
            return;
        }
        if let Some(o) = old {
            if let Some(n) = self.joined.get_mut(&o) {
                *n -= 1;
                if *n == 0 {
                    self.joined.remove(&o);
                    self.queue_reports(&[o], false);
                }
            }
        }
        if let Some(g) = group {
            let n = self.joined.entry(g).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.queue_reports(&[g], true);
                // Unsolicited reports are repeated once (RFC 3376 §5.1 robustness).
                self.report_again = Some(Timestamp::now().saturating_add(Duration::from_secs(1)));
            }
        }
    }

    /// Adds a remote VTEP to the flood list of `vni` (head-end replication), live.
    pub fn add_flood(&mut self, vni: u32, remote: IpAddr) -> Result<(), VtepError> {
        self.check_unicast(remote, "flood target")?;
        let st = self.state_mut(vni)?;
        if !st.flood.contains(&remote) {
            st.flood.push(remote);
        }
        Ok(())
    }

    /// Replaces the flood list of `vni` (head-end replication), live. Every address is
    /// checked first (unicast, the underlay's family, not ours) and a repeated one is an
    /// error: on error nothing changes.
    pub fn set_flood(&mut self, vni: u32, flood: &[IpAddr]) -> Result<(), VtepError> {
        for (i, &ip) in flood.iter().enumerate() {
            self.check_unicast(ip, "flood target")?;
            if flood[..i].contains(&ip) {
                return Err(VtepError::BadAddress(ip, "flood target (listed twice)"));
            }
        }
        let st = self.state_mut(vni)?;
        st.flood.clear();
        st.flood.extend_from_slice(flood);
        Ok(())
    }

    /// The remote VTEPs `vni` knows at `now`: the distinct addresses behind its live MAC
    /// entries (learnt or static), sorted. Empty for an unknown VNI.
    pub fn remote_vteps(&self, vni: u32, now: Timestamp) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.fdb(vni, now).into_iter().map(|e| e.value.ip).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Removes a remote VTEP from the flood list of `vni`; returns whether it was there.
    pub fn remove_flood(&mut self, vni: u32, remote: IpAddr) -> Result<bool, VtepError> {
        let st = self.state_mut(vni)?;
        let before = st.flood.len();
        st.flood.retain(|&r| r != remote);
        Ok(st.flood.len() != before)
    }

    /// Pins inner `mac` of `vni` behind remote VTEP `remote` (never ages, never moves).
    pub fn add_static_mac(&mut self, vni: u32, mac: [u8; 6], remote: IpAddr) -> Result<(), VtepError> {
        self.check_unicast(remote, "remote VTEP")?;
        let m = mac_to_u64(&mac);
        if is_group(m) || m == 0 {
            return Err(VtepError::NotUnicast(mac));
        }
        let st = self.state_mut(vni)?;
        st.fdb.insert_static(m, Remote { ip: remote, mac: None }).map_err(|_| VtepError::TableFull(vni))
    }

    /// Forgets inner `mac` of `vni` (static or learnt); returns where it was.
    pub fn remove_mac(&mut self, vni: u32, mac: [u8; 6]) -> Result<Option<Remote>, VtepError> {
        Ok(self.state_mut(vni)?.fdb.remove(mac_to_u64(&mac)))
    }

    /// Forgets every learnt MAC of `vni` (static entries stay).
    pub fn flush_macs(&mut self, vni: u32) -> Result<(), VtepError> {
        self.state_mut(vni)?.fdb.flush_learnt();
        Ok(())
    }

    /// The VNIs, sorted.
    pub fn vnis(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.vni_ports.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The port of `vni`.
    pub fn port_of(&self, vni: u32) -> Option<PortId> {
        self.vni_ports.get(&vni).copied()
    }

    /// Configuration and counters of `vni`.
    pub fn vni_info(&self, vni: u32) -> Option<VniInfo> {
        let port = *self.vni_ports.get(&vni)?;
        let st = self.vnis.get(port as usize)?.as_ref()?;
        Some(VniInfo { vni, port, group: st.group, flood: st.flood.clone(), counters: st.counters })
    }

    /// The inner MACs of `vni` known at `now` (use `Timestamp::now()`).
    pub fn fdb(&self, vni: u32, now: Timestamp) -> Vec<MacEntry<Remote>> {
        self.vni_ports
            .get(&vni)
            .and_then(|&p| self.vnis.get(p as usize)?.as_ref())
            .map(|st| st.fdb.entries(now))
            .unwrap_or_default()
    }

    /// The underlay neighbour cache, sorted by address.
    pub fn neighbours(&self) -> Vec<NeighInfo> {
        let mut v: Vec<NeighInfo> = self
            .neigh
            .iter()
            .map(|(&ip, n)| NeighInfo { ip, mac: n.mac, state: n.state, held: n.held.len() })
            .collect();
        v.sort_by_key(|n| n.ip);
        v
    }

    /// The multicast groups currently joined.
    pub fn joined_groups(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.joined.keys().copied().collect();
        v.sort();
        v
    }

    // -----------------------------------------------------------------------------------
    // Control packets

    /// Copies `self.scratch` into a pool packet.
    fn scratch_packet(&mut self) -> Option<Packet> {
        let p = self.pool.alloc_from(&self.scratch);
        if p.is_none() {
            self.counters.control_lost += 1;
        }
        p
    }

    fn ring(&mut self) {
        if !self.rung {
            self.rung = true;
            self.waker.wake();
        }
    }

    fn queue_scratch(&mut self) {
        if self.pending.len() >= PENDING_MAX {
            self.counters.control_lost += 1;
            return;
        }
        if let Some(p) = self.scratch_packet() {
            self.pending.push_back(p);
            self.ring();
        }
    }

    /// Builds the reports for `groups` into packets, handing each to `sink`.
    /// `join`: true = join / current state, false = leave. `answer`: a query answer
    /// (IGMPv3/MLDv2 "mode is exclude") rather than a state change. `igmp_v2` forces v2.
    fn build_reports(
        &mut self,
        groups: &[IpAddr],
        join: bool,
        answer: bool,
        igmp_v2: bool,
        mut sink: impl FnMut(&mut Self),
    ) {
        let mac = self.cfg.local_mac;
        if self.v6 {
            let gs: Vec<Ipv6Addr> =
                groups.iter().filter_map(|g| if let IpAddr::V6(a) = g { Some(*a) } else { None }).collect();
            let kind = match (join, answer) {
                (_, true) => mld_record::MODE_IS_EXCLUDE,
                (true, false) => mld_record::CHANGE_TO_EXCLUDE,
                (false, false) => mld_record::CHANGE_TO_INCLUDE,
            };
            for chunk in gs.chunks(GROUPS_PER_REPORT) {
                build_mldv2(&mut self.scratch, mac, kind, chunk);
                self.counters.reports += 1;
                sink(self);
            }
        } else {
            let gs: Vec<Ipv4Addr> =
                groups.iter().filter_map(|g| if let IpAddr::V4(a) = g { Some(*a) } else { None }).collect();
            if igmp_v2 || self.cfg.igmp_version == IgmpVersion::V2 {
                for g in gs {
                    build_igmpv2(&mut self.scratch, mac, self.local4, g, !join);
                    self.counters.reports += 1;
                    sink(self);
                }
            } else {
                let kind = match (join, answer) {
                    (_, true) => igmp_record::MODE_IS_EXCLUDE,
                    (true, false) => igmp_record::CHANGE_TO_EXCLUDE,
                    (false, false) => igmp_record::CHANGE_TO_INCLUDE,
                };
                for chunk in gs.chunks(GROUPS_PER_REPORT) {
                    build_igmpv3(&mut self.scratch, mac, self.local4, kind, chunk);
                    self.counters.reports += 1;
                    sink(self);
                }
            }
        }
    }

    fn queue_reports(&mut self, groups: &[IpAddr], join: bool) {
        self.build_reports(groups, join, false, false, |s| s.queue_scratch());
    }

    /// Builds an ARP request / neighbour solicitation for `ip` into the scratch buffer.
    fn build_request(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => build_arp(&mut self.scratch, 1, self.cfg.local_mac, self.local4, [0; 6], a),
            IpAddr::V6(a) => build_ns(&mut self.scratch, self.cfg.local_mac, self.local6, a),
        }
        self.counters.neigh_requests += 1;
    }

    fn emit_scratch(&mut self, side: Side, port: PortId, out: &mut Output<'_>) {
        match self.scratch_packet() {
            Some(p) => out.emit(side, port, p),
            None => out.count_drop(VtepDrop::Pool.index(), 1),
        }
    }

    // -----------------------------------------------------------------------------------
    // Neighbours

    fn on_link(&self, ip: IpAddr) -> bool {
        let plen = u32::from(self.cfg.prefix_len);
        match (ip, self.cfg.local_ip) {
            (IpAddr::V4(a), IpAddr::V4(l)) => {
                let mask = if plen == 0 { 0 } else { u32::MAX << (32 - plen) };
                u32::from(a) & mask == u32::from(l) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(l)) => {
                let mask = if plen == 0 { 0 } else { u128::MAX << (128 - plen) };
                u128::from(a) & mask == u128::from(l) & mask
            }
            _ => false,
        }
    }

    fn next_hop(&self, ip: IpAddr) -> IpAddr {
        match self.cfg.gateway {
            Some(gw) if !self.on_link(ip) => gw,
            _ => ip,
        }
    }

    /// Records `ip → mac` learnt from ARP/NDP. Existing entries are updated (and their held
    /// packets released); new ones are created only when `create` (the packet was for us).
    fn neigh_learn(&mut self, ip: IpAddr, mac: [u8; 6], create: bool, now: Timestamp, out: &mut Output<'_>) {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return;
        }
        let room = self.neigh.len() < self.cfg.neigh_capacity;
        match self.neigh.get_mut(&ip) {
            Some(n) => {
                if n.state == NeighState::Incomplete {
                    self.counters.neigh_resolved += 1;
                }
                n.mac = mac;
                n.state = NeighState::Reachable;
                n.confirmed = now;
                n.probes = 0;
                for mut p in n.held.drain(..) {
                    p.data_mut()[0..6].copy_from_slice(&mac);
                    self.counters.tx_outer += 1;
                    out.emit(Side::West, 0, p);
                }
            }
            None if create && room => {
                self.neigh.insert(
                    ip,
                    Neigh {
                        mac,
                        state: NeighState::Reachable,
                        confirmed: now,
                        last_probe: now,
                        probes: 0,
                        held: Vec::new(),
                    },
                );
            }
            None => {}
        }
    }

    /// Sends an encapsulated packet whose outer destination MAC is not known yet.
    fn send_resolving(&mut self, mut pkt: Packet, dst: IpAddr, now: Timestamp, out: &mut Output<'_>) {
        let nh = self.next_hop(dst);
        if let Some(n) = self.neigh.get_mut(&nh) {
            if n.state == NeighState::Reachable {
                pkt.data_mut()[0..6].copy_from_slice(&n.mac);
                self.counters.tx_outer += 1;
                out.emit(Side::West, 0, pkt);
            } else if n.held.len() < self.cfg.hold_per_neigh {
                n.held.push(pkt);
                self.counters.held += 1;
            } else {
                out.drop(pkt, VtepDrop::Unresolved.index());
            }
            return;
        }
        if self.neigh.len() >= self.cfg.neigh_capacity {
            out.drop(pkt, VtepDrop::NeighFull.index());
            return;
        }
        let mut held = Vec::with_capacity(self.cfg.hold_per_neigh);
        if self.cfg.hold_per_neigh > 0 {
            held.push(pkt);
            self.counters.held += 1;
        } else {
            out.drop(pkt, VtepDrop::Unresolved.index());
        }
        self.neigh.insert(
            nh,
            Neigh {
                mac: [0; 6],
                state: NeighState::Incomplete,
                confirmed: Timestamp(0),
                last_probe: now,
                probes: 1,
                held,
            },
        );
        self.build_request(nh);
        self.emit_scratch(Side::West, 0, out);
    }

    // -----------------------------------------------------------------------------------
    // Encapsulation

    /// Prepends the outer headers (dst MAC `dmac`) to `pkt` for `dst_ip`.
    #[inline(always)]
    fn encap(&mut self, pkt: &mut Packet, vni: u32, dst_ip: IpAddr, dmac: [u8; 6], hash: u64) -> bool {
        let inner = pkt.len();
        let sport = source_port(hash);
        let dport = self.cfg.udp_port;
        let smac = self.cfg.local_mac;
        match dst_ip {
            IpAddr::V4(dst) if !self.v6 => {
                self.ip_id = self.ip_id.wrapping_add(1);
                let id = self.ip_id;
                let total = (inner + IPV4_LEN + UDP_LEN + VXLAN_LEN) as u16;
                let d = dst.octets();
                let acc = self.csum_v4_base
                    + u64::from(total)
                    + u64::from(id)
                    + u64::from(u16::from_be_bytes([d[0], d[1]]))
                    + u64::from(u16::from_be_bytes([d[2], d[3]]));
                let csum = csum_fold(acc);
                let src = self.local4.octets();
                if pkt.prepend(OVERHEAD_V4).is_err() {
                    return false;
                }
                // Metadata first, header bytes after: the packet struct is moved right after
                // this function, and late narrow stores into it would stall that move
                // (store-forwarding).
                let m = pkt.meta_mut();
                m.l2_offset = 0;
                m.l3_offset = ETH_LEN as u16;
                m.l4_offset = (ETH_LEN + IPV4_LEN) as u16;
                m.vni = Some(vni);
                let h = &mut pkt.data_mut()[..OVERHEAD_V4];
                h[0..6].copy_from_slice(&dmac);
                h[6..12].copy_from_slice(&smac);
                h[12..14].copy_from_slice(&ETH_IPV4.to_be_bytes());
                let ip = &mut h[14..34];
                ip[0] = 0x45;
                ip[1] = 0;
                ip[2..4].copy_from_slice(&total.to_be_bytes());
                ip[4..6].copy_from_slice(&id.to_be_bytes());
                ip[6] = 0x40;
                ip[7] = 0;
                ip[8] = self.cfg.ttl;
                ip[9] = PROTO_UDP;
                ip[10..12].copy_from_slice(&csum.to_be_bytes());
                ip[12..16].copy_from_slice(&src);
                ip[16..20].copy_from_slice(&d);
                let udp = &mut h[34..42];
                udp[0..2].copy_from_slice(&sport.to_be_bytes());
                udp[2..4].copy_from_slice(&dport.to_be_bytes());
                udp[4..6].copy_from_slice(&(total - IPV4_LEN as u16).to_be_bytes());
                udp[6] = 0;
                udp[7] = 0;
                write_vxlan(&mut h[42..50], vni);
            }
            IpAddr::V6(dst) if self.v6 => {
                let plen = (inner + UDP_LEN + VXLAN_LEN) as u16;
                let src = self.local6.octets();
                let d = dst.octets();
                let flow = (hash as u32) & 0x000f_ffff;
                if pkt.prepend(OVERHEAD_V6).is_err() {
                    return false;
                }
                // Metadata first, header bytes after: the packet struct is moved right after
                // this function, and late narrow stores into it would stall that move
                // (store-forwarding).
                let m = pkt.meta_mut();
                m.l2_offset = 0;
                m.l3_offset = ETH_LEN as u16;
                m.l4_offset = (ETH_LEN + IPV6_LEN) as u16;
                m.vni = Some(vni);
                let h = &mut pkt.data_mut()[..OVERHEAD_V6];
                h[0..6].copy_from_slice(&dmac);
                h[6..12].copy_from_slice(&smac);
                h[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
                h[14..18].copy_from_slice(&(0x6000_0000 | flow).to_be_bytes());
                h[18..20].copy_from_slice(&plen.to_be_bytes());
                h[20] = PROTO_UDP;
                h[21] = self.cfg.ttl;
                h[22..38].copy_from_slice(&src);
                h[38..54].copy_from_slice(&d);
                h[54..56].copy_from_slice(&sport.to_be_bytes());
                h[56..58].copy_from_slice(&dport.to_be_bytes());
                h[58..60].copy_from_slice(&plen.to_be_bytes());
                h[60] = 0;
                h[61] = 0;
                write_vxlan(&mut h[62..70], vni);
                let acc = csum_add(csum_add_value(self.csum_v6_src, u64::from(plen)), &d);
                let data = pkt.data_mut();
                let mut c = csum_fold(csum_add(acc, &data[54..]));
                if c == 0 {
                    c = 0xffff;
                }
                data[60..62].copy_from_slice(&c.to_be_bytes());
            }
            _ => return false,
        }
        true
    }

    /// Encapsulates `pkt` towards `dst_ip` and sends it (resolving the next hop if needed).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        mut pkt: Packet,
        vni: u32,
        dst_ip: IpAddr,
        mac: Option<[u8; 6]>,
        hash: u64,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let dmac = match (mac, dst_ip) {
            (Some(m), _) => Some(m),
            (None, IpAddr::V4(g)) if g.is_multicast() => Some(mcast_mac_v4(g)),
            (None, IpAddr::V6(g)) if g.is_multicast() => Some(mcast_mac_v6(g)),
            (None, _) => None,
        };
        if !self.encap(&mut pkt, vni, dst_ip, dmac.unwrap_or([0; 6]), hash) {
            out.drop(pkt, VtepDrop::Headroom.index());
            return;
        }
        if dmac.is_some() {
            self.counters.tx_outer += 1;
            out.emit(Side::West, 0, pkt);
        } else {
            self.send_resolving(pkt, dst_ip, now, out);
        }
    }

    fn too_big(&mut self, port: PortId, pkt: Packet, out: &mut Output<'_>) {
        let overhead = if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        let inner_mtu = usize::from(self.cfg.mtu).saturating_sub(overhead);
        let d = pkt.data();
        // A super-frame reaches here only when its segments (gso_size + headers) are too
        // big: the sender's MSS is the problem, so it gets the same answer as a plain frame.
        let built = match be16(d, 12) {
            ETH_IPV4 if d.len() >= 34 && be16(d, 20) & 0x4000 != 0 => {
                build_frag_needed(&mut self.scratch, d, inner_mtu.min(65535) as u16)
            }
            ETH_IPV6 => build_packet_too_big(&mut self.scratch, d, inner_mtu as u32),
            _ => None,
        };
        out.drop(pkt, VtepDrop::TooBig.index());
        if built.is_some() {
            self.counters.icmp_too_big += 1;
            self.emit_scratch(Side::East, port, out);
        }
    }

    /// Encapsulates `pkt` in place if it is known unicast behind a VTEP whose MAC was learnt,
    /// fits the MTU and needs no checksum completion; otherwise leaves it untouched and
    /// returns false.
    #[inline(always)]
    fn encap_fast(
        &mut self,
        st: &mut VniState,
        pkt: &mut Packet,
        now: Timestamp,
        max_inner: usize,
        memo: &mut Option<(u64, Remote)>,
    ) -> bool {
        let len = pkt.len();
        if !(ETH_LEN..=max_inner).contains(&len) || pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            return false;
        }
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        if is_group(dst) {
            return false;
        }
        let r = match *memo {
            Some((m, r)) if m == dst => r,
            _ => match st.fdb.lookup(dst, now) {
                Some(r) => r,
                None => return false,
            },
        };
        *memo = Some((dst, r));
        let Some(mac) = r.mac else { return false };
        let hash = flow_hash(d);
        if !self.encap(pkt, st.vni, r.ip, mac, hash) {
            return false;
        }
        st.counters.encap_pkts += 1;
        st.counters.encap_bytes += len as u64;
        true
    }

    fn encap_burst(&mut self, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let Some(mut st) = self.vnis.get_mut(port as usize).and_then(Option::take) else {
            for p in pkts.drain() {
                out.drop(p, VtepDrop::NoVni.index());
            }
            return;
        };
        let now = out.now();
        let max_inner = usize::from(self.cfg.mtu) + ETH_LEN - if self.v6 { OVERHEAD_V6 } else { OVERHEAD_V4 };
        // Last known-unicast lookup of this burst (same time, same table).
        let mut memo: Option<(u64, Remote)> = None;
        // Fast path: leading frames that are known unicast behind a VTEP whose MAC was learnt
        // are encapsulated in place; when the whole burst is like that it moves on at once.
        let mut fast = 0;
        for pkt in pkts.iter_mut() {
            if !self.encap_fast(&mut st, pkt, now, max_inner, &mut memo) {
                break;
            }
            fast += 1;
        }
        self.counters.tx_outer += fast as u64;
        if fast == pkts.len() {
            out.emit_all(Side::West, 0, pkts);
            self.vnis[port as usize] = Some(st);
            return;
        }
        for (i, pkt) in pkts.drain().enumerate() {
            if i < fast {
                out.emit(Side::West, 0, pkt);
                continue;
            }
            if pkt.meta().gso_type != GsoType::None {
                self.encap_gso(&mut st, port, pkt, now, max_inner, &mut memo, out);
            } else {
                self.encap_slow(&mut st, port, pkt, now, max_inner, &mut memo, out);
            }
        }
        self.vnis[port as usize] = Some(st);
    }

    /// A super-frame from a VM. Its MTU check uses the segment size (`gso_size` + headers),
    /// not its length. With `tunnel_gso` (IPv4 underlay) and a known unicast destination it
    /// is encapsulated whole, partial checksum and GSO metadata kept, for the underlay NIC
    /// (or the kernel behind it) to segment at the very end; otherwise it is cut here into
    /// segments from the pool, each encapsulated as an ordinary frame.
    #[allow(clippy::too_many_arguments)]
    fn encap_gso(
        &mut self,
        st: &mut VniState,
        port: PortId,
        pkt: Packet,
        now: Timestamp,
        max_inner: usize,
        memo: &mut Option<(u64, Remote)>,
        out: &mut Output<'_>,
    ) {
        let plan = match brick_core::gso::TcpSegmenter::new(pkt.data(), pkt.meta()) {
            Ok(p) => p,
            Err(_) => return out.drop(pkt, VtepDrop::BadGso.index()),
        };
        if plan.max_segment_len() > max_inner {
            return self.too_big(port, pkt, out);
        }
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        let whole = self.cfg.tunnel_gso
            && !self.v6
            && plan.segment_count() > 1
            && pkt.len() - ETH_LEN + OVERHEAD_V4 <= usize::from(u16::MAX)
            && !is_group(dst);
        if whole {
            let r = match *memo {
                Some((m, r)) if m == dst => Some(r),
                _ => st.fdb.lookup(dst, now),
            };
            if let Some(r) = r {
                *memo = Some((dst, r));
                let hash = flow_hash(d);
                st.counters.encap_pkts += 1;
                st.counters.encap_bytes += pkt.len() as u64;
                self.counters.gso_tx += 1;
                self.send(pkt, st.vni, r.ip, r.mac, hash, now, out);
                return;
            }
        }
        let mut segs = std::mem::take(&mut self.gso_segs);
        let made = brick_core::gso::segment_into_pool(&pkt, &self.pool, |seg| segs.push(seg));
        match made {
            Ok(n) => {
                self.counters.gso_segmented += 1;
                self.counters.gso_segments += n as u64;
            }
            Err(brick_core::gso::GsoError::PoolEmpty) => out.count_drop(VtepDrop::Pool.index(), 1),
            Err(_) => out.count_drop(VtepDrop::BadGso.index(), 1),
        }
        drop(pkt);
        for seg in segs.drain(..) {
            self.encap_slow(st, port, seg, now, max_inner, memo, out);
        }
        self.gso_segs = segs;
    }

    /// The full encapsulation path for one ordinary frame: MTU, checksum completion, known
    /// unicast or flooding.
    #[allow(clippy::too_many_arguments)]
    fn encap_slow(
        &mut self,
        st: &mut VniState,
        port: PortId,
        mut pkt: Packet,
        now: Timestamp,
        max_inner: usize,
        memo: &mut Option<(u64, Remote)>,
        out: &mut Output<'_>,
    ) {
        let vni = st.vni;
        if pkt.len() < ETH_LEN {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        if pkt.len() > max_inner {
            return self.too_big(port, pkt, out);
        }
        if pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            complete_inner_csum(&mut pkt);
        }
        st.counters.encap_pkts += 1;
        st.counters.encap_bytes += pkt.len() as u64;
        let d = pkt.data();
        let dst = mac_to_u64(&d[0..6]);
        let hash = flow_hash(d);
        if !is_group(dst) {
            let r = match *memo {
                Some((m, r)) if m == dst => Some(r),
                _ => st.fdb.lookup(dst, now),
            };
            if let Some(r) = r {
                *memo = Some((dst, r));
                self.send(pkt, vni, r.ip, r.mac, hash, now, out);
                return;
            }
        }
        // Broadcast, unknown unicast, multicast: the group and the flood list.
        let n = usize::from(st.group.is_some()) + st.flood.len();
        if n == 0 {
            return out.drop(pkt, VtepDrop::NoTarget.index());
        }
        st.counters.flooded += 1;
        for i in 0..n - 1 {
            let target = if let Some(g) = st.group {
                if i == 0 {
                    g
                } else {
                    st.flood[i - 1]
                }
            } else {
                st.flood[i]
            };
            match pkt.copy_into(&self.pool) {
                Some(copy) => {
                    self.counters.replicas += 1;
                    self.send(copy, vni, target, None, hash, now, out);
                }
                None => out.count_drop(VtepDrop::Pool.index(), 1),
            }
        }
        let last = if st.flood.is_empty() {
            st.group.unwrap_or(self.cfg.local_ip)
        } else {
            st.flood[st.flood.len() - 1]
        };
        self.send(pkt, vni, last, None, hash, now, out);
    }

    // -----------------------------------------------------------------------------------
    // Decapsulation and underlay control

    fn is_our_group(&self, ip: IpAddr) -> bool {
        self.joined.contains_key(&ip)
    }

    #[inline(always)]
    fn rx_underlay(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        if d.len() < ETH_LEN {
            out.drop(pkt, VtepDrop::Trunc.index());
            return;
        }
        let et = be16(d, 12);
        match (et, self.v6) {
            (ETH_IPV4, false) => self.rx_ipv4(pkt, now, out),
            (ETH_IPV6, true) => self.rx_ipv6(pkt, now, out),
            (ETH_ARP, false) => self.rx_arp(pkt, now, out),
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    /// Checks the outer destination MAC against the destination IP: ours for unicast, the
    /// group's for multicast.
    #[inline]
    fn mac_ok(&self, dmac: &[u8], group_mac: Option<[u8; 6]>) -> bool {
        match group_mac {
            None => dmac == self.cfg.local_mac,
            Some(g) => dmac == g,
        }
    }

    #[inline(always)]
    fn rx_ipv4(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let ip = match parse_ipv4(&d[ETH_LEN..]) {
            Ok(ip) => ip,
            Err(IpError::Truncated) => return out.drop(pkt, VtepDrop::Trunc.index()),
            Err(IpError::BadHeader) => return out.drop(pkt, VtepDrop::BadHdr.index()),
            Err(IpError::BadChecksum) => return out.drop(pkt, VtepDrop::BadCsum.index()),
        };
        let dst = ip.dst;
        let ok = if dst == self.local4 {
            self.mac_ok(&d[0..6], None)
        } else if dst.is_multicast() && (self.is_our_group(IpAddr::V4(dst)) || dst == ALL_SYSTEMS) {
            self.mac_ok(&d[0..6], Some(mcast_mac_v4(dst)))
        } else {
            false
        };
        if !ok {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        if ip.fragment {
            return out.drop(pkt, VtepDrop::Frag.index());
        }
        let l4 = ETH_LEN + ip.ihl;
        let end = ETH_LEN + ip.total_len;
        match ip.proto {
            PROTO_UDP => {
                let smac = mac6(&d[6..12]);
                self.rx_vxlan(pkt, l4, end, IpAddr::V4(ip.src), smac, false, now, out)
            }
            PROTO_IGMP => self.rx_igmp(pkt, l4, end, out),
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    fn rx_ipv6(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let ip = match parse_ipv6(&d[ETH_LEN..]) {
            Ok(ip) => ip,
            Err(IpError::Truncated) => return out.drop(pkt, VtepDrop::Trunc.index()),
            Err(_) => return out.drop(pkt, VtepDrop::BadHdr.index()),
        };
        let dst = ip.dst;
        let ok = if dst == self.local6 {
            self.mac_ok(&d[0..6], None)
        } else if dst.is_multicast()
            && (self.is_our_group(IpAddr::V6(dst)) || dst == ALL_NODES || dst == self.solicited)
        {
            self.mac_ok(&d[0..6], Some(mcast_mac_v6(dst)))
        } else {
            false
        };
        if !ok {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        let l4 = ETH_LEN + IPV6_LEN;
        let end = l4 + ip.payload_len;
        match ip.next {
            PROTO_UDP => {
                let smac = mac6(&d[6..12]);
                self.rx_vxlan(pkt, l4, end, IpAddr::V6(ip.src), smac, true, now, out)
            }
            PROTO_ICMPV6 => self.rx_icmpv6(pkt, ip, l4, end, now, out),
            PROTO_HOPOPT => match skip_hbh(&d[l4..end]) {
                Some((PROTO_ICMPV6, len)) => self.rx_icmpv6(pkt, ip, l4 + len, end, now, out),
                Some(_) => out.drop(pkt, VtepDrop::NotVxlan.index()),
                None => out.drop(pkt, VtepDrop::BadHdr.index()),
            },
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn rx_vxlan(
        &mut self,
        mut pkt: Packet,
        l4: usize,
        end: usize,
        src: IpAddr,
        smac: [u8; 6],
        v6: bool,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let d = pkt.data();
        if end < l4 + UDP_LEN {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        if be16(d, l4 + 2) != self.cfg.udp_port {
            return out.drop(pkt, VtepDrop::NotVxlan.index());
        }
        let udp_len = usize::from(be16(d, l4 + 4));
        if udp_len < UDP_LEN || l4 + udp_len > end {
            return out.drop(pkt, VtepDrop::BadHdr.index());
        }
        if udp_len < UDP_LEN + VXLAN_LEN + ETH_LEN {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        // A zero UDP checksum means "none", accepted over IPv6 too (RFC 6935/6936). A frame
        // the NIC verified, or one the local kernel sent with a partial checksum (a veth or
        // TAP peer: offload still pending), is not checked again.
        if be16(d, l4 + 6) != 0 && !csum_trusted(&pkt) {
            // Pseudo-header: the addresses straight from the outer IP header, protocol, length.
            let addrs = if v6 { &d[ETH_LEN + 8..ETH_LEN + 40] } else { &d[ETH_LEN + 12..ETH_LEN + 20] };
            let acc = csum_add_value(csum_add(0, addrs), u64::from(PROTO_UDP) + udp_len as u64);
            if csum_fold(csum_add(acc, &d[l4..l4 + udp_len])) != 0 {
                return out.drop(pkt, VtepDrop::BadCsum.index());
            }
        }
        let Some(vni) = read_vxlan(&d[l4 + UDP_LEN..]) else {
            return out.drop(pkt, VtepDrop::BadVxlan.index());
        };
        let port = match self.memo_vni {
            Some((v, p)) if v == vni => p,
            _ => {
                let Some(&p) = self.vni_ports.get(&vni) else {
                    return out.drop(pkt, VtepDrop::UnknownVni.index());
                };
                self.memo_vni = Some((vni, p));
                p
            }
        };
        let inner = l4 + UDP_LEN + VXLAN_LEN;
        let isrc = mac_to_u64(&d[inner + 6..inner + 12]);
        if self.vnis.get(port as usize).is_none_or(Option::is_none) {
            return out.drop(pkt, VtepDrop::UnknownVni.index());
        }
        // Strip and set the metadata before learning: the packet struct is moved at the end,
        // and narrow stores just before that move would stall it (store-forwarding).
        pkt.truncate(l4 + udp_len);
        let _ = pkt.pull(inner);
        let m = pkt.meta_mut();
        m.l2_offset = 0;
        m.l3_offset = ETH_LEN as u16;
        m.l4_offset = 0;
        m.vni = Some(vni);
        if !inner_offload(m) {
            return out.drop(pkt, VtepDrop::BadGso.index());
        }
        if m.gso_type != GsoType::None {
            self.counters.gso_rx += 1;
        }
        let Some(st) = self.vnis.get_mut(port as usize).and_then(Option::as_mut) else {
            return out.drop(pkt, VtepDrop::UnknownVni.index());
        };
        st.counters.decap_pkts += 1;
        st.counters.decap_bytes += pkt.len() as u64;
        st.counters.bum_rx += u64::from(pkt.data().first().is_some_and(|b| b & 1 == 1));
        let remote = Remote { ip: src, mac: Some(smac) };
        if !is_group(isrc) && isrc != 0 && self.memo_learnt != Some((isrc, port, remote)) {
            match st.fdb.learn(isrc, remote, now) {
                Learned::Refreshed | Learned::Static => {}
                Learned::New => st.counters.learned += 1,
                Learned::Moved => st.counters.moves += 1,
                Learned::Refused => st.counters.learn_refused += 1,
            }
            self.memo_learnt = Some((isrc, port, remote));
        }
        out.emit(Side::East, port, pkt);
    }

    /// Decapsulates `pkt` in place if it is a valid unicast VXLAN frame to our address for
    /// a known VNI (on port `expect`, if given); returns its port. Anything else is left
    /// untouched for the full path, which also counts the drops.
    #[inline(always)]
    fn decap_fast(&mut self, pkt: &mut Packet, now: Timestamp, expect: Option<PortId>) -> Option<PortId> {
        let d = pkt.data();
        if d.len() < OVERHEAD_V4 + ETH_LEN || d[0..6] != self.cfg.local_mac {
            return None;
        }
        let (l4, end, src) = if !self.v6 {
            if be16(d, 12) != ETH_IPV4 {
                return None;
            }
            let ip = parse_ipv4(&d[ETH_LEN..]).ok()?;
            if ip.dst != self.local4 || ip.fragment || ip.proto != PROTO_UDP {
                return None;
            }
            (ETH_LEN + ip.ihl, ETH_LEN + ip.total_len, IpAddr::V4(ip.src))
        } else {
            if be16(d, 12) != ETH_IPV6 {
                return None;
            }
            let ip = parse_ipv6(&d[ETH_LEN..]).ok()?;
            if ip.dst != self.local6 || ip.next != PROTO_UDP {
                return None;
            }
            (ETH_LEN + IPV6_LEN, ETH_LEN + IPV6_LEN + ip.payload_len, IpAddr::V6(ip.src))
        };
        if end < l4 + UDP_LEN + VXLAN_LEN + ETH_LEN || be16(d, l4 + 2) != self.cfg.udp_port {
            return None;
        }
        let udp_len = usize::from(be16(d, l4 + 4));
        if udp_len < UDP_LEN + VXLAN_LEN + ETH_LEN || l4 + udp_len > end {
            return None;
        }
        if be16(d, l4 + 6) != 0 && !csum_trusted(pkt) {
            let addrs = if self.v6 { &d[ETH_LEN + 8..ETH_LEN + 40] } else { &d[ETH_LEN + 12..ETH_LEN + 20] };
            let acc = csum_add_value(csum_add(0, addrs), u64::from(PROTO_UDP) + udp_len as u64);
            if csum_fold(csum_add(acc, &d[l4..l4 + udp_len])) != 0 {
                return None;
            }
        }
        let vni = read_vxlan(&d[l4 + UDP_LEN..])?;
        let port = match self.memo_vni {
            Some((v, p)) if v == vni => p,
            _ => {
                let p = *self.vni_ports.get(&vni)?;
                self.memo_vni = Some((vni, p));
                p
            }
        };
        if expect.is_some_and(|e| e != port) {
            return None;
        }
        let inner = l4 + UDP_LEN + VXLAN_LEN;
        let isrc = mac_to_u64(&d[inner + 6..inner + 12]);
        let smac = mac6(&d[6..12]);
        if pkt.meta().gso_type != GsoType::None || pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            // Offload state to carry to the inner frame: the full path sorts it out.
            return None;
        }
        let st = self.vnis.get_mut(port as usize)?.as_mut()?;
        pkt.truncate(l4 + udp_len);
        let _ = pkt.pull(inner);
        let m = pkt.meta_mut();
        m.l2_offset = 0;
        m.l3_offset = ETH_LEN as u16;
        m.l4_offset = 0;
        m.vni = Some(vni);
        m.offload = OffloadFlags::NONE;
        st.counters.decap_pkts += 1;
        st.counters.decap_bytes += pkt.len() as u64;
        st.counters.bum_rx += u64::from(pkt.data().first().is_some_and(|b| b & 1 == 1));
        let remote = Remote { ip: src, mac: Some(smac) };
        if !is_group(isrc) && isrc != 0 && self.memo_learnt != Some((isrc, port, remote)) {
            match st.fdb.learn(isrc, remote, now) {
                Learned::Refreshed | Learned::Static => {}
                Learned::New => st.counters.learned += 1,
                Learned::Moved => st.counters.moves += 1,
                Learned::Refused => st.counters.learn_refused += 1,
            }
            self.memo_learnt = Some((isrc, port, remote));
        }
        Some(port)
    }

    fn rx_arp(&mut self, mut pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let dmac = &d[0..6];
        if dmac != BROADCAST && dmac != self.cfg.local_mac {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        let Some(arp) = parse_arp(&d[ETH_LEN..]) else {
            let reason =
                if d.len() < ETH_LEN + 28 { VtepDrop::Trunc.index() } else { VtepDrop::BadHdr.index() };
            return out.drop(pkt, reason);
        };
        let for_us = arp.tpa == self.local4;
        if !arp.spa.is_unspecified() {
            self.neigh_learn(IpAddr::V4(arp.spa), arp.sha, for_us, now, out);
        }
        if for_us && arp.op == 1 {
            // Answer in place: the request becomes the reply.
            let mac = self.cfg.local_mac;
            let ip = self.local4.octets();
            let data = pkt.data_mut();
            data[0..6].copy_from_slice(&arp.sha);
            data[6..12].copy_from_slice(&mac);
            let a = &mut data[ETH_LEN..];
            a[6..8].copy_from_slice(&2u16.to_be_bytes());
            a[8..14].copy_from_slice(&mac);
            a[14..18].copy_from_slice(&ip);
            a[18..24].copy_from_slice(&arp.sha);
            a[24..28].copy_from_slice(&arp.spa.octets());
            self.counters.neigh_answers += 1;
            out.emit(Side::West, 0, pkt);
            return;
        }
        out.drop(pkt, if for_us { VtepDrop::Control.index() } else { VtepDrop::NotUs.index() });
    }

    fn rx_igmp(&mut self, pkt: Packet, at: usize, end: usize, out: &mut Output<'_>) {
        let d = pkt.data();
        let igmp = &d[at..end];
        if igmp.len() < 8 {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        if checksum(igmp) != 0 {
            return out.drop(pkt, VtepDrop::BadCsum.index());
        }
        if igmp[0] != 0x11 {
            // Other hosts' reports and leaves: nothing to do for a host.
            return out.drop(pkt, VtepDrop::Control.index());
        }
        let group = Ipv4Addr::new(igmp[4], igmp[5], igmp[6], igmp[7]);
        let v2 = igmp.len() < 12;
        let groups: Vec<IpAddr> = if group.is_unspecified() {
            self.joined_groups()
        } else if self.is_our_group(IpAddr::V4(group)) {
            vec![IpAddr::V4(group)]
        } else {
            Vec::new()
        };
        out.drop(pkt, VtepDrop::Control.index());
        if !groups.is_empty() {
            self.counters.queries += 1;
            self.build_reports(&groups, true, true, v2, |s| s.emit_scratch(Side::West, 0, out));
        }
    }

    fn rx_icmpv6(
        &mut self,
        pkt: Packet,
        ip: Ipv6View,
        at: usize,
        end: usize,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let d = pkt.data();
        let icmp = &d[at..end];
        if icmp.len() < 8 {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        let acc = pseudo_v6(&ip.src.octets(), &ip.dst.octets(), icmp.len() as u32, PROTO_ICMPV6);
        if csum_fold(csum_add(acc, icmp)) != 0 {
            return out.drop(pkt, VtepDrop::BadCsum.index());
        }
        match icmp[0] {
            135 | 136 if icmp.len() >= 24 && ip.hop_limit == 255 && icmp[1] == 0 => {
                let mut t = [0u8; 16];
                t.copy_from_slice(&icmp[8..24]);
                let target = Ipv6Addr::from(t);
                let opts = &icmp[24..];
                if icmp[0] == 135 {
                    let for_us = target == self.local6;
                    let slla = ndp_lladdr(opts, 1);
                    if let (false, Some(mac)) = (ip.src.is_unspecified(), slla) {
                        self.neigh_learn(IpAddr::V6(ip.src), mac, for_us, now, out);
                    }
                    if for_us {
                        let (dst, dmac) = if ip.src.is_unspecified() {
                            (ALL_NODES, mcast_mac_v6(ALL_NODES))
                        } else {
                            (ip.src, slla.unwrap_or_else(|| mac6(&d[6..12])))
                        };
                        build_na(&mut self.scratch, self.cfg.local_mac, self.local6, dmac, dst);
                        self.counters.neigh_answers += 1;
                        out.drop(pkt, VtepDrop::Control.index());
                        self.emit_scratch(Side::West, 0, out);
                        return;
                    }
                } else {
                    let mac = ndp_lladdr(opts, 2).unwrap_or_else(|| mac6(&d[6..12]));
                    self.neigh_learn(IpAddr::V6(target), mac, false, now, out);
                }
                out.drop(pkt, VtepDrop::Control.index());
            }
            130 if icmp.len() >= 24 => {
                let mut g = [0u8; 16];
                g.copy_from_slice(&icmp[8..24]);
                let group = Ipv6Addr::from(g);
                let groups: Vec<IpAddr> = if group.is_unspecified() {
                    self.joined_groups()
                } else if self.is_our_group(IpAddr::V6(group)) {
                    vec![IpAddr::V6(group)]
                } else {
                    Vec::new()
                };
                out.drop(pkt, VtepDrop::Control.index());
                if !groups.is_empty() {
                    self.counters.queries += 1;
                    self.build_reports(&groups, true, true, false, |s| s.emit_scratch(Side::West, 0, out));
                }
            }
            _ => out.drop(pkt, VtepDrop::Control.index()),
        }
    }
}

impl Brick for Vtep {
    fn kind(&self) -> &'static str {
        "vtep"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        match side {
            Side::West => 1,
            Side::East => self.cfg.max_vnis,
        }
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        match side {
            Side::West => {
                let now = out.now();
                self.memo_vni = None;
                self.memo_learnt = None;
                // Fast path: leading frames that are unicast VXLAN to us for one VNI are
                // decapsulated in place; when the whole burst is like that it moves at once.
                let mut fast = 0;
                let mut to = None;
                for pkt in pkts.iter_mut() {
                    match self.decap_fast(pkt, now, to) {
                        Some(p) => to = Some(p),
                        None => break,
                    }
                    fast += 1;
                }
                if let (Some(p), true) = (to, fast == pkts.len()) {
                    out.emit_all(Side::East, p, pkts);
                    return;
                }
                for (i, pkt) in pkts.drain().enumerate() {
                    match to {
                        Some(p) if i < fast => out.emit(Side::East, p, pkt),
                        _ => self.rx_underlay(pkt, now, out),
                    }
                }
            }
            Side::East => self.encap_burst(port, pkts, out),
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        if self.rung {
            self.rung = false;
            self.waker.drain();
        }
        if self.pending_drops > 0 {
            out.count_drop(VtepDrop::Unresolved.index(), self.pending_drops);
            self.pending_drops = 0;
        }
        if self.pending.is_empty() {
            return 0;
        }
        let mut n = 0;
        while let Some(p) = self.pending.pop_front() {
            out.emit(Side::West, 0, p);
            n += 1;
        }
        n
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.waker.fd())
    }

    fn tick(&mut self, now: Timestamp) {
        if now.saturating_since(self.last_sweep) >= Duration::from_secs(1) {
            self.last_sweep = now;
            for st in self.vnis.iter_mut().flatten() {
                st.counters.aged += st.fdb.age(now) as u64;
            }
        }
        if self.report_again.is_some_and(|t| now >= t) {
            self.report_again = None;
            let groups = self.joined_groups();
            self.build_reports(&groups, true, false, false, |s| s.queue_scratch());
        }
        // Neighbours: retry resolutions, re-probe old entries, give up after MAX_PROBES.
        let reachable = self.cfg.neigh_reachable;
        let mut probe = Vec::new();
        let mut lost = 0u64;
        self.neigh.retain(|&ip, n| {
            let due = now.saturating_since(n.last_probe) >= PROBE_INTERVAL;
            match n.state {
                NeighState::Incomplete if due => {
                    if n.probes >= MAX_PROBES {
                        lost += n.held.len() as u64;
                        return false;
                    }
                    n.probes += 1;
                    n.last_probe = now;
                    probe.push(ip);
                }
                NeighState::Reachable
                    if now.saturating_since(n.confirmed) >= reachable && (n.probes == 0 || due) =>
                {
                    if n.probes >= MAX_PROBES {
                        return false;
                    }
                    n.probes += 1;
                    n.last_probe = now;
                    probe.push(ip);
                }
                _ => {}
            }
            true
        });
        self.pending_drops += lost;
        for ip in probe {
            self.build_request(ip);
            self.queue_scratch();
        }
        if self.pending_drops > 0 {
            self.ring();
        }
    }

    fn on_unlink(&mut self, side: Side, port: PortId) {
        if side == Side::East {
            if let Some(vni) = self.vnis.get(port as usize).and_then(|s| s.as_ref().map(|s| s.vni)) {
                let _ = self.remove_vni(vni);
            }
        }
    }

    fn describe(&self) -> Vec<String> {
        let c = &self.counters;
        let mut lines = vec![
            format!("local {} port {} vnis {}", self.cfg.local_ip, self.cfg.udp_port, self.vni_ports.len()),
            format!("neighbours {} groups {}", self.neigh.len(), self.joined.len()),
            format!("tx {} replicas {} too-big {}", c.tx_outer, c.replicas, c.icmp_too_big),
            format!(
                "gso whole-tx {} segmented {} ({} segments) whole-rx {}",
                c.gso_tx, c.gso_segmented, c.gso_segments, c.gso_rx
            ),
        ];
        // Per VNI (the first 64, by VNI): frames in and out, BUM received and flooded.
        let mut vnis: Vec<&VniState> = self.vnis.iter().flatten().collect();
        vnis.sort_by_key(|st| st.vni);
        for st in vnis.iter().take(64) {
            let c = &st.counters;
            lines.push(format!(
                "vni {} decap {} bum-rx {} encap {} flooded {}",
                st.vni, c.decap_pkts, c.bum_rx, c.encap_pkts, c.flooded
            ));
        }
        if vnis.len() > 64 {
            lines.push(format!("… {} more vnis", vnis.len() - 64));
        }
        lines
    }
}

/// Offload state of a frame just decapsulated (`m` already shifted to the inner frame): a
/// partial checksum pointing into the inner frame (an inner TCP/UDP header) and GSO metadata
/// stay for the VM; anything about the outer headers is cleared. Returns false for a
/// super-frame whose metadata does not point into the inner frame (malformed).
fn inner_offload(m: &mut brick_core::Meta) -> bool {
    // The smallest inner L4 offset: Ethernet + IPv4 header.
    const MIN_L4: u16 = (ETH_LEN + IPV4_LEN) as u16;
    if m.offload.contains(OffloadFlags::CSUM_NEEDED) && m.csum_start >= MIN_L4 {
        m.offload = OffloadFlags::CSUM_NEEDED;
        return true;
    }
    m.offload = OffloadFlags::NONE;
    m.csum_start = 0;
    m.csum_offset = 0;
    if m.gso_type != GsoType::None {
        m.gso_type = GsoType::None;
        m.gso_size = 0;
        return false;
    }
    true
}

/// Whether the L4 checksum need not be verified: the NIC did it, or the frame comes from the
/// local kernel with its checksum still to be completed (`CHECKSUM_PARTIAL`).
#[inline]
fn csum_trusted(pkt: &Packet) -> bool {
    let o = pkt.meta().offload;
    o.contains(OffloadFlags::CSUM_VERIFIED) || o.contains(OffloadFlags::CSUM_NEEDED)
}

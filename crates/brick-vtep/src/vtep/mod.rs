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

use brick_wire::arp::field as arp_field;
use brick_wire::ip::{v4_field, v6_field};
use brick_wire::{Arp, Ethernet, Igmp, Ipv4, MacAddr, Mld, Ndp, Udp};

use crate::config::{IgmpVersion, VniOptions, VtepConfig, VtepError, MAX_VNI};
use crate::wire::*;

mod control;
mod decap;
mod drops;
mod encap;
mod membership;
mod neighbours;
mod proxy;

pub use drops::{VtepDrop, DROP_REASONS};
pub use encap::{flow_hash, source_port};
use membership::Membership;
use neighbours::NeighTable;
pub use neighbours::{NeighInfo, NeighState};

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
    /// ARP requests from local VMs answered from the suppression table (not flooded).
    pub arp_suppressed: u64,
    /// Neighbour solicitations from local VMs answered from the table (not flooded).
    pub nd_suppressed: u64,
    /// ARP requests and solicitations flooded: target not in the table (the table is
    /// consulted only while it holds bindings).
    pub suppress_unknown: u64,
    /// ARP requests and solicitations flooded unanswered because malformed or forged.
    pub suppress_malformed: u64,
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

struct VniState {
    vni: u32,
    group: Option<IpAddr>,
    flood: Vec<IpAddr>,
    fdb: MacTable<Remote>,
    counters: VniCounters,
    /// Addresses answered for on the VNI's behalf (ARP/ND suppression).
    proxy: crate::neigh_proxy::ProxyTable,
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
    /// Underlay multicast groups joined for the VNIs.
    groups: Membership,
    neigh: NeighTable,
    pending: VecDeque<Packet>,
    pending_drops: u64,
    waker: Waker,
    /// Whether `waker` was rung since the last poll (so poll drains it only then: one
    /// syscall per wake-up, none per round).
    rung: bool,
    scratch: Vec<u8>,
    counters: VtepCounters,
    last_sweep: Timestamp,
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

fn mac6(d: &[u8]) -> [u8; 6] {
    [d[0], d[1], d[2], d[3], d[4], d[5]]
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
        let waker = Waker::new().map_err(VtepError::WakeFd)?;
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
            groups: Membership::default(),
            neigh: NeighTable::new(cfg.neigh_capacity, cfg.hold_per_neigh, cfg.neigh_reachable),
            pending: VecDeque::with_capacity(64),
            pending_drops: 0,
            waker,
            rung: false,
            scratch: Vec::with_capacity(2048),
            counters: VtepCounters::default(),
            last_sweep: Timestamp(0),
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
            proxy: crate::neigh_proxy::ProxyTable::default(),
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
        if let Some(o) = old.filter(|&o| self.groups.leave(o)) {
            self.queue_reports(&[o], false);
        }
        if let Some(g) = group.filter(|&g| self.groups.join(g, Timestamp::now())) {
            self.queue_reports(&[g], true);
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
        self.neigh.infos()
    }

    /// The multicast groups currently joined.
    pub fn joined_groups(&self) -> Vec<IpAddr> {
        self.groups.groups()
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
        if self.groups.report_due(now) {
            let groups = self.joined_groups();
            self.build_reports(&groups, true, false, false, |s| s.queue_scratch());
        }
        self.neigh_tick(now);
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
            format!("neighbours {} groups {}", self.neigh.len(), self.groups.len()),
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
            if let Some(line) = proxy::describe(st) {
                lines.push(line);
            }
        }
        if vnis.len() > 64 {
            lines.push(format!("… {} more vnis", vnis.len() - 64));
        }
        lines
    }
}

//! Underlay next hops: on-link test, ARP/ND learning and holding packets while resolving.

use super::*;

/// Resolution attempts before giving up on a neighbour.
const MAX_PROBES: u8 = 3;
/// Interval between resolution attempts.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

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

/// One underlay neighbour: its MAC once resolved, and packets held until then.
pub(super) struct Neigh {
    pub(super) mac: [u8; 6],
    pub(super) state: NeighState,
    pub(super) confirmed: Timestamp,
    pub(super) last_probe: Timestamp,
    pub(super) probes: u8,
    pub(super) held: Vec<Packet>,
}

impl Vtep {
    pub(super) fn on_link(&self, ip: IpAddr) -> bool {
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

    pub(super) fn next_hop(&self, ip: IpAddr) -> IpAddr {
        match self.cfg.gateway {
            Some(gw) if !self.on_link(ip) => gw,
            _ => ip,
        }
    }

    /// Records `ip → mac` learnt from ARP/NDP. Existing entries are updated (and their held
    /// packets released); new ones are created only when `create` (the packet was for us).
    pub(super) fn neigh_learn(
        &mut self,
        ip: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
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
    pub(super) fn send_resolving(
        &mut self,
        mut pkt: Packet,
        dst: IpAddr,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
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

    /// Retries resolutions, re-probes entries older than `neigh_reachable`, and gives up
    /// on a neighbour after `MAX_PROBES` (its held packets count as unresolved drops).
    pub(super) fn neigh_tick(&mut self, now: Timestamp) {
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
}

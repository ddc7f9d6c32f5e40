//! Underlay next hops: the on-link test, and [`NeighTable`], the bounded ARP/ND cache that
//! learns MACs and holds packets while a next hop is being resolved. The table decides;
//! the VTEP sends what it asks for (requests, released packets) and counts.

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
struct Neigh {
    mac: [u8; 6],
    state: NeighState,
    confirmed: Timestamp,
    last_probe: Timestamp,
    probes: u8,
    held: Vec<Packet>,
}

/// What [`NeighTable::resolve`] did with an encapsulated packet.
pub(super) enum Resolution {
    /// The next hop is known: the packet, its destination MAC written, goes out.
    Send(Packet),
    /// Held until the next hop answers.
    Held,
    /// Refused: no room to hold it, or no room for a new neighbour.
    Drop(Packet, VtepDrop),
    /// A new neighbour, being resolved: send it a request. The packet is held (`None`), or
    /// handed back to drop as unresolved when nothing may be held.
    Request(Option<Packet>),
}

/// The underlay neighbour cache: at most `capacity` entries, at most `hold` packets held
/// per incomplete entry.
pub(super) struct NeighTable {
    map: HashMap<IpAddr, Neigh>,
    capacity: usize,
    hold: usize,
    reachable: Duration,
}

impl NeighTable {
    /// An empty table; entries are re-probed once `reachable` has passed since they were
    /// last confirmed.
    pub(super) fn new(capacity: usize, hold: usize, reachable: Duration) -> Self {
        NeighTable { map: HashMap::with_capacity(capacity.min(4096)), capacity, hold, reachable }
    }

    /// Entries in the table.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Snapshots of the entries, sorted by address.
    pub(super) fn infos(&self) -> Vec<NeighInfo> {
        let mut v: Vec<NeighInfo> = self
            .map
            .iter()
            .map(|(&ip, n)| NeighInfo { ip, mac: n.mac, state: n.state, held: n.held.len() })
            .collect();
        v.sort_by_key(|n| n.ip);
        v
    }

    /// Records `ip → mac` learnt from ARP/NDP (a group or zero MAC is ignored). An existing
    /// entry is updated and its held packets, their destination MAC written, go to
    /// `release`; a new one is created only when `create` (the packet was for us) and there
    /// is room. Returns whether an incomplete entry was resolved.
    pub(super) fn learn(
        &mut self,
        ip: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Timestamp,
        mut release: impl FnMut(Packet),
    ) -> bool {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return false;
        }
        let room = self.map.len() < self.capacity;
        match self.map.get_mut(&ip) {
            Some(n) => {
                let resolved = n.state == NeighState::Incomplete;
                n.mac = mac;
                n.state = NeighState::Reachable;
                n.confirmed = now;
                n.probes = 0;
                for mut p in n.held.drain(..) {
                    p.data_mut()[0..6].copy_from_slice(&mac);
                    release(p);
                }
                resolved
            }
            None if create && room => {
                let n = Neigh {
                    mac,
                    state: NeighState::Reachable,
                    confirmed: now,
                    last_probe: now,
                    probes: 0,
                    held: Vec::new(),
                };
                self.map.insert(ip, n);
                false
            }
            None => false,
        }
    }

    /// Finds the MAC of next hop `nh` for `pkt` (whose outer destination MAC is not known
    /// yet): see [`Resolution`].
    pub(super) fn resolve(&mut self, nh: IpAddr, mut pkt: Packet, now: Timestamp) -> Resolution {
        if let Some(n) = self.map.get_mut(&nh) {
            if n.state == NeighState::Reachable {
                pkt.data_mut()[0..6].copy_from_slice(&n.mac);
                return Resolution::Send(pkt);
            }
            if n.held.len() < self.hold {
                n.held.push(pkt);
                return Resolution::Held;
            }
            return Resolution::Drop(pkt, VtepDrop::Unresolved);
        }
        if self.map.len() >= self.capacity {
            return Resolution::Drop(pkt, VtepDrop::NeighFull);
        }
        let mut held = Vec::with_capacity(self.hold);
        let unheld = if self.hold > 0 {
            held.push(pkt);
            None
        } else {
            Some(pkt)
        };
        let n = Neigh {
            mac: [0; 6],
            state: NeighState::Incomplete,
            confirmed: Timestamp(0),
            last_probe: now,
            probes: 1,
            held,
        };
        self.map.insert(nh, n);
        Resolution::Request(unheld)
    }

    /// Retries resolutions and re-probes entries older than `reachable` (their addresses go
    /// to `probe`), and gives up on a neighbour after [`MAX_PROBES`]. Returns the packets
    /// lost with the incomplete entries given up.
    pub(super) fn tick(&mut self, now: Timestamp, probe: &mut Vec<IpAddr>) -> u64 {
        let reachable = self.reachable;
        let mut lost = 0u64;
        self.map.retain(|&ip, n| {
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
        lost
    }
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

    /// Records `ip → mac` learnt from ARP/NDP (see [`NeighTable::learn`]); released packets
    /// go out to the underlay.
    pub(super) fn neigh_learn(
        &mut self,
        ip: IpAddr,
        mac: [u8; 6],
        create: bool,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let tx = &mut self.counters.tx_outer;
        let resolved = self.neigh.learn(ip, mac, create, now, |p| {
            *tx += 1;
            out.emit(Side::West, 0, p);
        });
        self.counters.neigh_resolved += u64::from(resolved);
    }

    /// Sends an encapsulated packet whose outer destination MAC is not known yet.
    pub(super) fn send_resolving(&mut self, pkt: Packet, dst: IpAddr, now: Timestamp, out: &mut Output<'_>) {
        let nh = self.next_hop(dst);
        match self.neigh.resolve(nh, pkt, now) {
            Resolution::Send(p) => {
                self.counters.tx_outer += 1;
                out.emit(Side::West, 0, p);
            }
            Resolution::Held => self.counters.held += 1,
            Resolution::Drop(p, why) => out.drop(p, why.index()),
            Resolution::Request(unheld) => {
                match unheld {
                    None => self.counters.held += 1,
                    Some(p) => out.drop(p, VtepDrop::Unresolved.index()),
                }
                self.build_request(nh);
                self.emit_scratch(Side::West, 0, out);
            }
        }
    }

    /// Runs the table's timers: sends the probes it asks for, and counts the packets lost
    /// with the neighbours given up as unresolved drops (at the next poll).
    pub(super) fn neigh_tick(&mut self, now: Timestamp) {
        let mut probe = Vec::new();
        self.pending_drops += self.neigh.tick(now, &mut probe);
        for ip in probe {
            self.build_request(ip);
            self.queue_scratch();
        }
        if self.pending_drops > 0 {
            self.ring();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn pkt(tag: u8) -> Packet {
        Packet::from_slice(&[0, 0, 0, 0, 0, 0, tag, 0, 0, 0, 0, 0, 8, 0])
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from_secs(1 + secs)
    }

    fn released(t: &mut NeighTable, ip: IpAddr, mac: [u8; 6], create: bool, now: Timestamp) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        t.learn(ip, mac, create, now, |p| v.push(p.data().to_vec()));
        v
    }

    #[test]
    fn holds_while_resolving_then_releases_with_the_mac() {
        let mut t = NeighTable::new(8, 2, Duration::from_secs(300));
        assert!(matches!(t.resolve(A, pkt(1), at(0)), Resolution::Request(None)));
        assert!(matches!(t.resolve(A, pkt(2), at(0)), Resolution::Held));
        assert!(matches!(t.resolve(A, pkt(3), at(0)), Resolution::Drop(_, VtepDrop::Unresolved)));
        assert_eq!(t.infos()[0].state, NeighState::Incomplete);
        assert_eq!(t.infos()[0].held, 2);
        let out = released(&mut t, A, MAC, false, at(0));
        assert_eq!(
            out.iter().map(|d| (d[0..6].to_vec(), d[6])).collect::<Vec<_>>(),
            [(MAC.to_vec(), 1), (MAC.to_vec(), 2)]
        );
        match t.resolve(A, pkt(4), at(0)) {
            Resolution::Send(p) => assert_eq!(p.data()[0..6], MAC),
            _ => panic!("a resolved neighbour sends at once"),
        }
        assert_eq!(t.infos(), [NeighInfo { ip: A, mac: MAC, state: NeighState::Reachable, held: 0 }]);
    }

    #[test]
    fn bounded_and_creates_only_when_asked() {
        let mut t = NeighTable::new(1, 0, Duration::from_secs(300));
        // Nothing may be held: the packet comes back to be dropped, the request still goes.
        assert!(matches!(t.resolve(A, pkt(1), at(0)), Resolution::Request(Some(_))));
        assert!(matches!(t.resolve(B, pkt(2), at(0)), Resolution::Drop(_, VtepDrop::NeighFull)));
        assert!(released(&mut t, B, MAC, true, at(0)).is_empty());
        assert_eq!(t.len(), 1, "no room for a second neighbour");
        let mut t = NeighTable::new(4, 1, Duration::from_secs(300));
        released(&mut t, A, MAC, false, at(0));
        assert_eq!(t.len(), 0, "not created unless the packet was for us");
        released(&mut t, A, [1, 0, 0, 0, 0, 1], true, at(0));
        released(&mut t, A, [0; 6], true, at(0));
        assert_eq!(t.len(), 0, "group and zero MACs are ignored");
        released(&mut t, A, MAC, true, at(0));
        assert_eq!(t.infos()[0].state, NeighState::Reachable);
    }

    #[test]
    fn gives_up_after_the_probes_and_reprobes_stale_entries() {
        let mut t = NeighTable::new(4, 4, Duration::from_secs(10));
        let mut probe = Vec::new();
        assert!(matches!(t.resolve(A, pkt(1), at(0)), Resolution::Request(None)));
        assert!(matches!(t.resolve(A, pkt(2), at(0)), Resolution::Held));
        assert_eq!(t.tick(at(0), &mut probe), 0);
        assert!(probe.is_empty(), "not due yet");
        for s in 1..=2 {
            assert_eq!(t.tick(at(s), &mut probe), 0);
        }
        assert_eq!(probe, [A, A], "re-probed once a second");
        assert_eq!(t.tick(at(3), &mut probe), 2, "given up: its held packets are lost");
        assert_eq!(t.len(), 0);

        probe.clear();
        released(&mut t, B, MAC, true, at(0));
        t.tick(at(9), &mut probe);
        assert!(probe.is_empty(), "fresh");
        for s in 10..=12 {
            t.tick(at(s), &mut probe);
        }
        assert_eq!(probe, [B, B, B]);
        released(&mut t, B, MAC, false, at(12));
        t.tick(at(13), &mut probe);
        assert_eq!((t.len(), probe.len()), (1, 3), "an answer confirms it again");
        for s in 22..=25 {
            t.tick(at(s), &mut probe);
        }
        assert_eq!(t.len(), 0, "unanswered probes remove it");
    }
}

//! The learning switch brick.

use std::time::Duration;

use brick_core::{Brick, Burst, Output, Packet, PacketPool, PortId, Side, Timestamp};
use brick_wire::ethernet::field as eth;

use crate::mac_table::{is_group, mac_to_u64, Learned, MacEntry, MacTable};

brick_core::drop_reasons! {
    /// Why the switch drops a frame; `NAMES` is its [`Brick::drop_reasons`].
    pub enum SwitchDrop {
        /// Shorter than an Ethernet header.
        Runt => "runt",
        /// Group or all-zero source address.
        BadSrc => "bad source mac",
        /// 01:80:c2:00:00:0x (STP, LACP, 802.1X...): never forwarded.
        LinkLocal => "link-local dst",
        /// Destination learnt on the ingress port.
        Hairpin => "hairpin",
        /// Flooding with no other linked port.
        NoPort => "no other port",
        /// A flood copy could not be made.
        Pool => "pool empty",
    }
}

/// Drop reasons of the switch, in [`Brick::drop_reasons`] order.
pub const DROP_REASONS: &[&str] = SwitchDrop::NAMES;

/// A port of the switch: a side and a port number on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRef {
    /// Side of the switch.
    pub side: Side,
    /// Port number on that side.
    pub port: PortId,
}

/// Switch configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Most MAC addresses learnt at once. When full, new source addresses are not learnt
    /// (frames towards them keep being flooded) and [`SwitchCounters::learn_refused`] counts
    /// them, until aging frees room. Default 4096.
    pub mac_capacity: usize,
    /// A learnt address is forgotten this long after it was last seen. Default 300 s.
    pub aging: Duration,
    /// Most ports per side. Default 1024.
    pub max_ports: usize,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig { mac_capacity: 4096, aging: Duration::from_secs(300), max_ports: 1024 }
    }
}

/// Invalid switch configuration or request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// `mac_capacity` is zero.
    #[error("the MAC table capacity must be at least 1")]
    ZeroCapacity,
    /// `aging` is zero.
    #[error("the aging time must be positive")]
    ZeroAging,
    /// `max_ports` is zero or above 65535.
    #[error("max_ports must be between 1 and 65535, got {0}")]
    BadMaxPorts(usize),
    /// A static entry needs a unicast MAC.
    #[error("{} is not a unicast MAC address", brick_core::MacFmt(*.0))]
    NotUnicast([u8; 6]),
    /// The MAC table is full.
    #[error("MAC table full ({0} entries)")]
    TableFull(usize),
}

/// Counters of one port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames received on the port.
    pub rx_pkts: u64,
    /// Bytes received on the port.
    pub rx_bytes: u64,
    /// Frames sent on the port (unicast and flooded).
    pub tx_pkts: u64,
    /// Of `tx_pkts`, frames that were flooded (broadcast, multicast, unknown unicast).
    pub tx_flooded: u64,
    /// Frames received on the port and dropped by the switch.
    pub rx_dropped: u64,
}

/// Switch-wide counters (drops by reason are in the graph's `BrickStats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwitchCounters {
    /// Addresses learnt.
    pub learned: u64,
    /// Stations seen moving to another port.
    pub moves: u64,
    /// Addresses not learnt because the table was full.
    pub learn_refused: u64,
    /// Entries removed by aging.
    pub aged: u64,
    /// Entries removed because their port was unlinked.
    pub flushed: u64,
    /// Frames sent to a single learnt port.
    pub forwarded: u64,
    /// Frames flooded (counted once per frame, not per copy).
    pub flooded: u64,
}

/// A layer-2 learning switch.
///
/// Every linked port of both sides is a switch port. Each frame's source MAC is learnt
/// against its ingress port (group and zero source MACs are dropped); known unicast goes to
/// the learnt port (or is dropped if that is the ingress port: no hairpin); broadcast,
/// multicast and unknown unicast are flooded to every other linked port, copies coming from
/// the switch's [`PacketPool`]. IEEE link-local destinations (01:80:c2:00:00:00–0f) are
/// dropped. Unlinking a port forgets the MACs learnt on it.
pub struct Switch {
    cfg: SwitchConfig,
    pool: PacketPool,
    /// For copies of frames larger than `pool`'s buffers (TCP super-frames), if any.
    big_pool: Option<PacketPool>,
    table: MacTable<PortRef>,
    ports: [Vec<PortCounters>; 2],
    counters: SwitchCounters,
    targets: Vec<PortRef>,
    last_sweep: Timestamp,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch").field("cfg", &self.cfg).field("macs", &self.table.len()).finish()
    }
}

impl Switch {
    /// A switch with `cfg`, making flood copies from `pool`.
    pub fn new(cfg: SwitchConfig, pool: PacketPool) -> Result<Self, SwitchError> {
        if cfg.mac_capacity == 0 {
            return Err(SwitchError::ZeroCapacity);
        }
        if cfg.aging.is_zero() {
            return Err(SwitchError::ZeroAging);
        }
        if cfg.max_ports == 0 || cfg.max_ports > PortId::MAX as usize {
            return Err(SwitchError::BadMaxPorts(cfg.max_ports));
        }
        Ok(Switch {
            table: MacTable::new(cfg.mac_capacity, cfg.aging),
            cfg,
            pool,
            big_pool: None,
            ports: Default::default(),
            counters: SwitchCounters::default(),
            targets: Vec::with_capacity(16),
            last_sweep: Timestamp(0),
        })
    }

    /// Flood copies of frames larger than the main pool's buffers (TCP super-frames from VMs
    /// with TSO) come from `big` instead of being dropped as "pool empty".
    pub fn with_big_pool(mut self, big: PacketPool) -> Self {
        self.big_pool = Some(big);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &SwitchConfig {
        &self.cfg
    }

    /// Changes the aging time, live.
    pub fn set_aging(&mut self, aging: Duration) -> Result<(), SwitchError> {
        if aging.is_zero() {
            return Err(SwitchError::ZeroAging);
        }
        self.cfg.aging = aging;
        self.table.set_aging(aging);
        Ok(())
    }

    /// Switch-wide counters.
    pub fn counters(&self) -> SwitchCounters {
        self.counters
    }

    /// Counters of a port (zero for a port never linked).
    pub fn port_counters(&self, side: Side, port: PortId) -> PortCounters {
        self.ports[side as usize].get(port as usize).copied().unwrap_or_default()
    }

    /// The live MAC table at `now` (use `Timestamp::now()`), sorted by MAC.
    pub fn mac_entries(&self, now: Timestamp) -> Vec<MacEntry<PortRef>> {
        self.table.entries(now)
    }

    /// Where `mac` was learnt, if it is known at `now`.
    pub fn lookup(&self, mac: [u8; 6], now: Timestamp) -> Option<PortRef> {
        self.table.lookup(mac_to_u64(&mac), now)
    }

    /// Pins `mac` to a port (a static entry: never ages, never moves).
    pub fn add_static(&mut self, mac: [u8; 6], side: Side, port: PortId) -> Result<(), SwitchError> {
        let m = mac_to_u64(&mac);
        if is_group(m) || m == 0 {
            return Err(SwitchError::NotUnicast(mac));
        }
        self.table.insert_static(m, PortRef { side, port }).map_err(|e| SwitchError::TableFull(e.capacity))
    }

    /// Forgets `mac` (static or learnt); returns where it was.
    pub fn remove_mac(&mut self, mac: [u8; 6]) -> Option<PortRef> {
        self.table.remove(mac_to_u64(&mac))
    }

    /// Forgets every learnt address (static entries stay).
    pub fn flush(&mut self) {
        self.table.flush_learnt();
    }

    /// Forgets every address of one port (static ones included); returns how many.
    pub fn flush_port(&mut self, side: Side, port: PortId) -> usize {
        let target = PortRef { side, port };
        let n = self.table.remove_where(|p| *p == target);
        self.counters.flushed += n as u64;
        n
    }

    #[inline]
    fn port_mut(&mut self, p: PortRef) -> &mut PortCounters {
        let v = &mut self.ports[p.side as usize];
        let i = p.port as usize;
        if v.len() <= i {
            v.resize(i + 1, PortCounters::default());
        }
        &mut v[i]
    }

    fn flood(&mut self, ingress: PortRef, pkt: Packet, out: &mut Output<'_>) {
        if self.targets.is_empty() {
            self.port_mut(ingress).rx_dropped += 1;
            out.drop(pkt, SwitchDrop::NoPort.index());
            return;
        }
        self.counters.flooded += 1;
        let n = self.targets.len();
        let big = self.big_pool.is_some() && pkt.len() > self.pool.data_room();
        for i in 0..n - 1 {
            let t = self.targets[i];
            let copy = match (&self.big_pool, big) {
                (Some(b), true) => pkt.copy_into(b),
                _ => pkt.copy_into(&self.pool),
            };
            match copy {
                Some(copy) => {
                    let c = self.port_mut(t);
                    c.tx_pkts += 1;
                    c.tx_flooded += 1;
                    out.emit(t.side, t.port, copy);
                }
                None => out.count_drop(SwitchDrop::Pool.index(), 1),
            }
        }
        let t = self.targets[n - 1];
        let c = self.port_mut(t);
        c.tx_pkts += 1;
        c.tx_flooded += 1;
        out.emit(t.side, t.port, pkt);
    }
}

/// Whether a packed MAC is an IEEE 802.1D link-local address (01:80:c2:00:00:00–0f).
#[inline]
fn is_link_local(mac: u64) -> bool {
    mac & !0xf == 0x0180_c200_0000
}

impl Brick for Switch {
    fn kind(&self) -> &'static str {
        "switch"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, _side: Side) -> usize {
        self.cfg.max_ports
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let now = out.now();
        let ingress = PortRef { side, port };
        self.port_mut(ingress);
        let mut targets_ready = false;
        let (mut rx, mut rx_bytes, mut dropped) = (0u64, 0u64, 0u64);
        // Bursts usually carry one source and few destinations: remember the last ones for
        // the duration of this call (the time is the same for the whole burst).
        let mut last_src = u64::MAX;
        let mut last_dst = (u64::MAX, ingress);
        for pkt in pkts.drain() {
            rx += 1;
            let d = pkt.data();
            rx_bytes += d.len() as u64;
            // The switch reads the two MACs only: brick-wire's Ethernet field ranges, no view
            // (a view per frame costs cycles the switch's budget does not have).
            if d.len() < eth::LEN {
                dropped += 1;
                out.drop(pkt, SwitchDrop::Runt.index());
                continue;
            }
            let dst = mac_to_u64(&d[eth::DST]);
            let src = mac_to_u64(&d[eth::SRC]);
            if src != last_src {
                if is_group(src) || src == 0 {
                    dropped += 1;
                    out.drop(pkt, SwitchDrop::BadSrc.index());
                    continue;
                }
                match self.table.learn(src, ingress, now) {
                    Learned::Refreshed | Learned::Static => {}
                    Learned::New => self.counters.learned += 1,
                    Learned::Moved => self.counters.moves += 1,
                    Learned::Refused => self.counters.learn_refused += 1,
                }
                last_src = src;
                // A learnt source may be the cached destination: forget the cache.
                last_dst.0 = u64::MAX;
            }
            if is_group(dst) {
                if is_link_local(dst) {
                    dropped += 1;
                    out.drop(pkt, SwitchDrop::LinkLocal.index());
                    continue;
                }
            } else {
                let to = if last_dst.0 == dst { Some(last_dst.1) } else { self.table.lookup(dst, now) };
                if let Some(to) = to {
                    last_dst = (dst, to);
                    if to == ingress {
                        dropped += 1;
                        out.drop(pkt, SwitchDrop::Hairpin.index());
                    } else {
                        self.counters.forwarded += 1;
                        if let Some(c) = self.ports[to.side as usize].get_mut(to.port as usize) {
                            c.tx_pkts += 1;
                        }
                        out.emit(to.side, to.port, pkt);
                    }
                    continue;
                }
            }
            if !targets_ready {
                self.targets.clear();
                for s in Side::BOTH {
                    for p in out.linked_ports(s) {
                        if (s, p) != (side, port) {
                            self.targets.push(PortRef { side: s, port: p });
                        }
                    }
                }
                targets_ready = true;
            }
            self.flood(ingress, pkt, out);
        }
        let c = self.port_mut(ingress);
        c.rx_pkts += rx;
        c.rx_bytes += rx_bytes;
        c.rx_dropped += dropped;
    }

    fn tick(&mut self, now: Timestamp) {
        // Lookups already ignore expired entries; sweeping frees their room at most once a
        // second (or once per aging period if shorter).
        let every = self.cfg.aging.min(Duration::from_secs(1));
        if now.saturating_since(self.last_sweep) >= every {
            self.last_sweep = now;
            self.counters.aged += self.table.age(now) as u64;
        }
    }

    fn on_link(&mut self, side: Side, port: PortId) {
        *self.port_mut(PortRef { side, port }) = PortCounters::default();
    }

    fn on_unlink(&mut self, side: Side, port: PortId) {
        self.flush_port(side, port);
    }

    fn describe(&self) -> Vec<String> {
        let c = &self.counters;
        vec![
            format!("macs {}/{}", self.table.len(), self.table.capacity()),
            format!("learned {} moves {} refused {} aged {}", c.learned, c.moves, c.learn_refused, c.aged),
        ]
    }
}

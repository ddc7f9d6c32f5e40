//! Behaviour of the switch inside a graph: learning, flooding, hairpin, moves, aging, bounds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brick_core::bricks::RxTx;
use brick_core::{BrickId, Burst, Graph, Packet, PacketPool, PortId, Side, Timestamp};
use brick_switch::{PortRef, Switch, SwitchConfig};
use proptest::prelude::*;

type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

struct Bed {
    g: Graph,
    sw: BrickId,
    /// (side of the switch, port, frames received by the station there)
    stations: Vec<(Side, PortId, Seen, BrickId)>,
}

fn station(g: &mut Graph, name: &str, side: Side) -> (BrickId, Seen) {
    let seen: Seen = Arc::default();
    let s2 = Arc::clone(&seen);
    // A station on the switch's west side exposes its east side, and vice versa.
    let id = g
        .add(
            name,
            RxTx::new(
                side.opposite(),
                |_: &mut Burst| {},
                move |b: &mut Burst| s2.lock().unwrap().extend(b.drain().map(|p| p.data().to_vec())),
            ),
        )
        .unwrap();
    (id, seen)
}

fn bed(cfg: SwitchConfig, west: usize, east: usize) -> Bed {
    let pool = PacketPool::with_count(1024).unwrap();
    let mut g = Graph::new("t");
    let sw = g.add("sw", Switch::new(cfg, pool).unwrap()).unwrap();
    let mut stations = Vec::new();
    for i in 0..west {
        let (id, seen) = station(&mut g, &format!("w{i}"), Side::West);
        let (_, p) = g.link(id, sw).unwrap();
        stations.push((Side::West, p, seen, id));
    }
    for i in 0..east {
        let (id, seen) = station(&mut g, &format!("e{i}"), Side::East);
        let (p, _) = g.link(sw, id).unwrap();
        stations.push((Side::East, p, seen, id));
    }
    Bed { g, sw, stations }
}

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn frame(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, tag);
    f
}

impl Bed {
    fn send(&mut self, station: usize, frames: &[Vec<u8>]) {
        let (side, port) = (self.stations[station].0, self.stations[station].1);
        let mut b = Burst::new();
        for f in frames {
            b.push(Packet::from_slice(f)).unwrap();
        }
        self.g.inject(self.sw, side, port, &mut b).unwrap();
    }
    fn take(&self, station: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.stations[station].2.lock().unwrap())
    }
    fn counts(&self) -> Vec<usize> {
        self.stations.iter().map(|s| s.2.lock().unwrap().len()).collect()
    }
    fn clear(&self) {
        for s in &self.stations {
            s.2.lock().unwrap().clear();
        }
    }
    fn drops(&self, reason: &str) -> u64 {
        self.g.stats(self.sw).unwrap().drops_of(reason).unwrap()
    }
    fn switch(&self) -> &Switch {
        self.g.brick::<Switch>(self.sw).unwrap()
    }
}

#[test]
fn unknown_unicast_floods_everywhere_but_ingress_then_learns() {
    let mut b = bed(SwitchConfig::default(), 2, 3);
    b.send(0, &[frame(mac(9), mac(1), 1)]);
    assert_eq!(b.counts(), vec![0, 1, 1, 1, 1], "flooded to both sides, never back");
    b.clear();
    // mac(2) at station 3 answers mac(1): known unicast, one copy only, back to station 0.
    b.send(3, &[frame(mac(1), mac(2), 2)]);
    assert_eq!(b.counts(), vec![1, 0, 0, 0, 0]);
    assert_eq!(b.take(0)[0], frame(mac(1), mac(2), 2));
    b.send(0, &[frame(mac(2), mac(1), 3)]);
    assert_eq!(b.counts(), vec![0, 0, 0, 1, 0]);
    let c = b.switch().counters();
    assert_eq!((c.learned, c.flooded, c.forwarded), (2, 1, 2));
    let pc = b.switch().port_counters(Side::West, b.stations[0].1);
    assert_eq!((pc.rx_pkts, pc.tx_pkts), (2, 1));
    let pc = b.switch().port_counters(Side::East, b.stations[4].1);
    assert_eq!((pc.tx_pkts, pc.tx_flooded), (1, 1));
}

#[test]
fn broadcast_and_multicast_flood_link_local_dropped() {
    let mut b = bed(SwitchConfig::default(), 1, 2);
    b.send(1, &[frame([0xff; 6], mac(1), 0), frame([0x33, 0x33, 0, 0, 0, 1], mac(1), 0)]);
    assert_eq!(b.counts(), vec![2, 0, 2]);
    b.clear();
    b.send(
        1,
        &[frame([0x01, 0x80, 0xc2, 0, 0, 0], mac(1), 0), frame([0x01, 0x80, 0xc2, 0, 0, 0x0e], mac(1), 0)],
    );
    assert_eq!(b.counts(), vec![0, 0, 0]);
    assert_eq!(b.drops("link-local dst"), 2);
    // 01:80:c2:00:00:10 is not in the reserved block: flooded.
    b.send(1, &[frame([0x01, 0x80, 0xc2, 0, 0, 0x10], mac(1), 0)]);
    assert_eq!(b.counts(), vec![1, 0, 1]);
}

#[test]
fn no_hairpin_and_moves_are_followed() {
    let mut b = bed(SwitchConfig::default(), 0, 3);
    b.send(0, &[frame(mac(9), mac(1), 0), frame(mac(9), mac(2), 0)]);
    b.clear();
    // mac(2) sits on port 0 like mac(1): a frame between them is not sent back.
    b.send(0, &[frame(mac(2), mac(1), 0)]);
    assert_eq!(b.counts(), vec![0, 0, 0]);
    assert_eq!(b.drops("hairpin"), 1);
    // mac(2) moves to station 2.
    b.send(2, &[frame(mac(1), mac(2), 0)]);
    assert_eq!(b.counts(), vec![1, 0, 0]);
    b.clear();
    b.send(0, &[frame(mac(2), mac(1), 0)]);
    assert_eq!(b.counts(), vec![0, 0, 1]);
    assert_eq!(b.switch().counters().moves, 1);
    let port2 = b.stations[2].1;
    assert_eq!(b.switch().lookup(mac(2), Timestamp::now()), Some(PortRef { side: Side::East, port: port2 }));
}

#[test]
fn unlinking_a_port_flushes_its_macs_and_flooding_skips_holes() {
    let mut b = bed(SwitchConfig::default(), 0, 4);
    b.send(1, &[frame([0xff; 6], mac(1), 0)]);
    b.clear();
    let (side, port, _, id) = b.stations[1].clone();
    b.g.unlink(b.sw, side, port).unwrap();
    let _ = id;
    assert_eq!(b.switch().lookup(mac(1), Timestamp::now()), None);
    assert_eq!(b.switch().counters().flushed, 1);
    // Unknown again: flooded to the three remaining ports (port 1 is a hole now).
    b.send(0, &[frame(mac(1), mac(5), 0)]);
    assert_eq!(b.counts(), vec![0, 0, 1, 1]);
}

#[test]
fn aging_is_time_based_and_swept_by_tick() {
    let cfg = SwitchConfig { aging: Duration::from_millis(80), ..SwitchConfig::default() };
    let mut b = bed(cfg, 0, 3);
    b.send(1, &[frame([0xff; 6], mac(1), 0)]);
    b.clear();
    b.send(0, &[frame(mac(1), mac(2), 0)]);
    assert_eq!(b.counts(), vec![0, 1, 0], "known while young");
    b.clear();
    std::thread::sleep(Duration::from_millis(100));
    b.send(0, &[frame(mac(1), mac(2), 0)]);
    assert_eq!(b.counts(), vec![0, 1, 1], "flooded once aged, even before the sweep");
    std::thread::sleep(Duration::from_millis(100));
    b.g.tick_all();
    assert!(b.switch().counters().aged >= 1);
    assert!(b.switch().mac_entries(Timestamp::now()).is_empty());
}

#[test]
fn full_table_stops_learning_and_counts() {
    let cfg = SwitchConfig { mac_capacity: 2, ..SwitchConfig::default() };
    let mut b = bed(cfg, 0, 3);
    let frames: Vec<_> = (1..=50).map(|i| frame([0xff; 6], mac(i), 0)).collect();
    b.send(0, &frames);
    let c = b.switch().counters();
    assert_eq!(c.learned, 2);
    assert_eq!(c.learn_refused, 48);
    assert_eq!(b.switch().mac_entries(Timestamp::now()).len(), 2);
    b.clear();
    // mac(3) was refused: frames to it are flooded, not lost.
    b.send(1, &[frame(mac(3), mac(1), 0)]);
    assert_eq!(b.counts(), vec![1, 0, 1]);
}

#[test]
fn static_entries_and_bad_frames() {
    let mut b = bed(SwitchConfig::default(), 0, 3);
    let p2 = b.stations[2].1;
    b.g.brick_mut::<Switch>(b.sw).unwrap().add_static(mac(7), Side::East, p2).unwrap();
    assert!(b.g.brick_mut::<Switch>(b.sw).unwrap().add_static([0xff; 6], Side::East, p2).is_err());
    b.send(0, &[frame(mac(7), mac(1), 0)]);
    assert_eq!(b.counts(), vec![0, 0, 1]);
    // mac(7) shows up elsewhere: a static entry does not move.
    b.send(1, &[frame(mac(1), mac(7), 0)]);
    b.clear();
    b.send(0, &[frame(mac(7), mac(1), 0)]);
    assert_eq!(b.counts(), vec![0, 0, 1]);
    b.clear();
    b.send(0, &[vec![1, 2, 3], frame(mac(1), [0x01, 0, 0, 0, 0, 1], 0), frame(mac(1), [0; 6], 0)]);
    assert_eq!(b.counts(), vec![0, 0, 0]);
    assert_eq!(b.drops("runt"), 1);
    assert_eq!(b.drops("bad source mac"), 2);
    assert_eq!(b.switch().port_counters(Side::East, b.stations[0].1).rx_dropped, 3);
}

#[test]
fn alone_on_the_switch_floods_nowhere() {
    let mut b = bed(SwitchConfig::default(), 0, 1);
    b.send(0, &[frame([0xff; 6], mac(1), 0)]);
    assert_eq!(b.drops("no other port"), 1);
}

#[test]
fn pool_exhaustion_is_counted() {
    let pool = PacketPool::with_count(1).unwrap();
    let _hold = pool.alloc().unwrap();
    let mut g = Graph::new("t");
    let sw = g.add("sw", Switch::new(SwitchConfig::default(), pool).unwrap()).unwrap();
    let mut seen = Vec::new();
    for i in 0..3 {
        let (id, s) = station(&mut g, &format!("e{i}"), Side::East);
        g.link(sw, id).unwrap();
        seen.push(s);
    }
    let mut burst = Burst::new();
    burst.push(Packet::from_slice(&frame([0xff; 6], mac(1), 0))).unwrap();
    g.inject(sw, Side::East, 0, &mut burst).unwrap();
    assert_eq!(g.stats(sw).unwrap().drops_of("pool empty"), Some(1));
    assert_eq!(seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>(), 1);
}

#[test]
fn bad_configs_are_refused() {
    let pool = PacketPool::with_count(1).unwrap();
    assert!(Switch::new(SwitchConfig { mac_capacity: 0, ..Default::default() }, pool.clone()).is_err());
    assert!(Switch::new(SwitchConfig { aging: Duration::ZERO, ..Default::default() }, pool.clone()).is_err());
    assert!(Switch::new(SwitchConfig { max_ports: 70000, ..Default::default() }, pool).is_err());
}

proptest! {
    #[test]
    fn random_frames_never_panic(frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 1..64)) {
        let mut b = bed(SwitchConfig { mac_capacity: 8, ..Default::default() }, 1, 2);
        b.send(1, &frames);
        let st = b.g.stats(b.sw).unwrap();
        // Every frame is accounted for: delivered (possibly several copies) or dropped.
        prop_assert_eq!(st.side(Side::East).pkts_in.get(), frames.len() as u64);
        prop_assert!(b.switch().mac_entries(Timestamp::now()).len() <= 8);
    }
}

/// A flooded frame bigger than the pool's buffers (a TCP super-frame) cannot be copied from
/// it: only the last port gets the original, the copies are counted. With a big pool for
/// such frames, every port gets it.
#[test]
fn flooding_a_super_frame_takes_copies_from_the_big_pool() {
    let mut big_frame = frame(mac(9), mac(1), 7);
    big_frame.resize(20_000, 0x42);
    for with_big in [false, true] {
        let pool = PacketPool::with_count(64).unwrap();
        let mut sw = Switch::new(SwitchConfig::default(), pool).unwrap();
        if with_big {
            let big = PacketPool::new(brick_core::PoolConfig {
                count: 8,
                data_room: 65_536,
                ..brick_core::PoolConfig::default()
            })
            .unwrap();
            sw = sw.with_big_pool(big);
        }
        let mut g = Graph::new("big");
        let id = g.add("sw", sw).unwrap();
        let mut seen = Vec::new();
        let mut ports = Vec::new();
        for i in 0..4 {
            let (st, s) = station(&mut g, &format!("e{i}"), Side::East);
            ports.push(g.link(id, st).unwrap().0);
            seen.push(s);
        }
        let mut b = Burst::new();
        b.push(Packet::from_slice(&big_frame)).unwrap();
        g.inject(id, Side::East, ports[0], &mut b).unwrap();
        let got: Vec<usize> = seen.iter().map(|s| s.lock().unwrap().len()).collect();
        let drops = g.stats(id).unwrap().drops_of("pool empty").unwrap();
        if with_big {
            assert_eq!((got, drops), (vec![0, 1, 1, 1], 0));
            assert!(seen[1..].iter().all(|s| s.lock().unwrap()[0] == big_frame));
        } else {
            assert_eq!((got, drops), (vec![0, 0, 0, 1], 2));
        }
    }
}

/// A full burst all for one port, and a mixed one (unicast to two ports, broadcast, hairpin,
/// runt): each port gets its frames in order, and the counters count every frame.
#[test]
fn full_and_mixed_bursts_keep_order_and_counters() {
    let mut b = bed(SwitchConfig::default(), 0, 3);
    for (station, m) in [(0, 1), (1, 2), (2, 3)] {
        b.send(station, &[frame([0xff; 6], mac(m), 0)]);
    }
    b.clear();
    let tags = |fs: Vec<Vec<u8>>| fs.iter().map(|f| f[59]).collect::<Vec<u8>>();

    b.send(0, &(0..64).map(|t| frame(mac(2), mac(1), t)).collect::<Vec<_>>());
    assert_eq!(tags(b.take(1)), (0..64).collect::<Vec<u8>>());
    assert_eq!(b.counts(), vec![0, 0, 0]);
    let port = |b: &Bed, i: usize| b.switch().port_counters(Side::East, b.stations[i].1);
    // (1 and 2: the learning broadcasts; each station got the other two's.)
    assert_eq!((port(&b, 0).rx_pkts, port(&b, 1).tx_pkts), (1 + 64, 2 + 64));

    // Tag t goes: t % 4 == 0 to mac(2), 1 to mac(3), 2 broadcast, 3 back to mac(1) (hairpin);
    // tag 63 is cut to a runt.
    let mixed: Vec<Vec<u8>> = (0..64)
        .map(|t| match (t % 4, t) {
            (_, 63) => frame(mac(2), mac(1), t)[..13].to_vec(),
            (0, _) => frame(mac(2), mac(1), t),
            (1, _) => frame(mac(3), mac(1), t),
            (2, _) => frame([0xff; 6], mac(1), t),
            _ => frame(mac(1), mac(1), t),
        })
        .collect();
    let forwarded = b.switch().counters().forwarded;
    b.send(0, &mixed);
    let want = |keep: &dyn Fn(u8) -> bool| (0..63).filter(|&t| keep(t)).collect::<Vec<u8>>();
    assert_eq!(tags(b.take(1)), want(&|t| t % 4 == 0 || t % 4 == 2));
    assert_eq!(tags(b.take(2)), want(&|t| t % 4 == 1 || t % 4 == 2));
    assert_eq!(b.take(0), Vec::<Vec<u8>>::new());
    assert_eq!((b.drops("hairpin"), b.drops("runt")), (15, 1));
    assert_eq!(b.switch().counters().forwarded - forwarded, 32);
    assert_eq!(port(&b, 0).rx_pkts, 1 + 64 + 64);
    assert_eq!(port(&b, 0).rx_dropped, 16);
}

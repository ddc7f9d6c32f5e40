//! [`VniSteer`]: hands each VXLAN frame from the underlay to the worker graph that owns its
//! VNI, when several worker graphs (one per core) share one underlay.
//!
//! ```text
//!             west 0                   east 0
//! underlay NIC ────── steer (worker i) ────── vtep (worker i)
//!                         │ east 1..   ──▶ queue-tx to worker j (frames for j's VNIs)
//!                         │ east 1..   ◀── queue-rx from worker j (frames for i's VNIs)
//! ```
//!
//! Worker `i` owns the VNIs `v` with `v % workers == i`: their switches, their VM NICs, their
//! entries in its VTEP. A kernel that can steer by VNI (an AF_PACKET fanout program, see
//! `brick_nic::bpf`) delivers nearly every frame to its owner already; the steer brick
//! carries whatever lands elsewhere (another spreading policy, a single-queue device) to
//! the owner through a queue, so correctness never depends on the kernel. Underlay control
//! traffic (ARP, IGMP, ICMPv6 with its neighbour discovery and MLD) goes to every worker, as
//! each worker's VTEP keeps its own neighbour table and group memberships.

use brick_core::{Brick, Burst, Output, PacketPool, PortId, Side};

use brick_wire::{EtherType, IpProto, Udp, Vxlan};

/// Most worker graphs one steer brick can spread over.
pub const MAX_WORKERS: usize = 64;

/// Drop reasons of [`VniSteer`], in order.
pub const STEER_DROP_REASONS: &[&str] = SteerDrop::NAMES;

brick_core::drop_reasons! {
    /// Why the steering brick drops a frame; `NAMES` is its `Brick::drop_reasons`.
    pub enum SteerDrop {
        /// The owning worker's port is not linked yet.
        NoQueue => "no queue to the owner",
        /// No buffer for a flood copy to another worker.
        NoCopy => "no buffer for a copy",
    }
}

/// What a frame from the underlay is, for steering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steering {
    /// A VXLAN frame with this VNI.
    Vxlan(u32),
    /// Control traffic every worker's VTEP must see (ARP, IGMP, ICMPv6).
    Control,
    /// Anything else (left to the local VTEP, which drops and counts it).
    Other,
}

/// Classifies an underlay frame, located with [`brick_wire::locate()`] (so up to two VLAN
/// tags, 802.1Q or 802.1ad, and IPv6 extension headers are looked past). Never panics: a
/// frame too short for what it claims to be is `Other`, and the VTEP judges it.
pub fn classify(frame: &[u8], udp_port: u16) -> Steering {
    let Ok(l) = brick_wire::locate(frame) else { return Steering::Other };
    match (l.ether_type(), l.ip_proto()) {
        (EtherType::ARP, _) => return Steering::Control,
        (EtherType::IPV4, IpProto::IGMP) | (EtherType::IPV6, IpProto::ICMPV6) => return Steering::Control,
        (EtherType::IPV4 | EtherType::IPV6, IpProto::UDP) => {}
        _ => return Steering::Other,
    }
    // No transport header in a later fragment: the VTEP reassembles nothing; let the local
    // one count it.
    let Some(udp) = l.l4.and_then(|at| Udp::new_checked(frame.get(at..)?).ok()) else {
        return Steering::Other;
    };
    if udp.dst_port() != udp_port {
        return Steering::Other;
    }
    match Vxlan::new_checked(udp.payload()) {
        Ok(v) => Steering::Vxlan(v.vni()),
        Err(_) => Steering::Other,
    }
}

/// The steering brick of worker `index` among `workers`; see the [module](self) docs.
pub struct VniSteer {
    index: usize,
    workers: usize,
    udp_port: u16,
    /// East port of the queue towards each worker (`None` for this one, or not linked yet).
    to_worker: [Option<PortId>; MAX_WORKERS],
    /// For the copies of control frames.
    pool: PacketPool,
    steered_out: u64,
    copies: u64,
}

/// Why a [`VniSteer`] could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SteerError {
    /// `workers` is 0 or above [`MAX_WORKERS`], or `index` is not below it.
    #[error("worker {index} of {workers}: need 1 ≤ workers ≤ {MAX_WORKERS} and index < workers")]
    BadWorker {
        /// Index asked for.
        index: usize,
        /// Worker count asked for.
        workers: usize,
    },
}

impl VniSteer {
    /// Worker `index` of `workers`, for VXLAN on `udp_port`; copies of control frames come
    /// from `pool`.
    pub fn new(index: usize, workers: usize, udp_port: u16, pool: PacketPool) -> Result<Self, SteerError> {
        if workers == 0 || workers > MAX_WORKERS || index >= workers {
            return Err(SteerError::BadWorker { index, workers });
        }
        Ok(VniSteer {
            index,
            workers,
            udp_port,
            to_worker: [None; MAX_WORKERS],
            pool,
            steered_out: 0,
            copies: 0,
        })
    }

    /// The worker that owns `vni`.
    pub fn owner(&self, vni: u32) -> usize {
        owner_of(vni, self.workers)
    }

    /// Records that east port `port` leads to worker `worker`'s queue. Call it after
    /// linking; frames for that worker's VNIs are dropped ("no queue to the owner") until
    /// then.
    pub fn set_worker_port(&mut self, worker: usize, port: PortId) {
        if worker < self.workers && worker != self.index {
            self.to_worker[worker] = Some(port);
        }
    }

    /// Frames sent to other workers so far.
    pub fn steered_out(&self) -> u64 {
        self.steered_out
    }
}

/// The worker among `workers` that owns `vni`: `vni % workers`, which is also what
/// `brick_nic::bpf::vxlan_vni_fanout` makes the kernel compute.
pub fn owner_of(vni: u32, workers: usize) -> usize {
    (vni as usize) % workers.max(1)
}

impl Brick for VniSteer {
    fn kind(&self) -> &'static str {
        "vni-steer"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        STEER_DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        match side {
            Side::West => 1,
            // The VTEP, and a queue each way per other worker.
            Side::East => 1 + 2 * (self.workers - 1),
        }
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        match (side, port) {
            // From the VTEP: out to the underlay.
            (Side::East, 0) => out.emit_all(Side::West, 0, pkts),
            // From another worker's queue: already steered here.
            (Side::East, _) => out.emit_all(Side::East, 0, pkts),
            (Side::West, _) => {
                for pkt in pkts.drain() {
                    match classify(pkt.data(), self.udp_port) {
                        Steering::Vxlan(vni) => {
                            let owner = owner_of(vni, self.workers);
                            if owner == self.index {
                                out.emit(Side::East, 0, pkt);
                            } else if let Some(p) = self.to_worker[owner] {
                                self.steered_out += 1;
                                out.emit(Side::East, p, pkt);
                            } else {
                                out.drop(pkt, SteerDrop::NoQueue.index());
                            }
                        }
                        Steering::Control => {
                            for w in 0..self.workers {
                                let Some(p) = self.to_worker[w] else { continue };
                                match self.pool.alloc_from(pkt.data()) {
                                    Some(copy) => {
                                        self.copies += 1;
                                        out.emit(Side::East, p, copy);
                                    }
                                    None => out.count_drop(SteerDrop::NoCopy.index(), 1),
                                }
                            }
                            out.emit(Side::East, 0, pkt);
                        }
                        Steering::Other => out.emit(Side::East, 0, pkt),
                    }
                }
            }
        }
    }

    fn describe(&self) -> Vec<String> {
        vec![
            format!("worker {} of {}", self.index, self.workers),
            format!("to other workers: {}, control copies: {}", self.steered_out, self.copies),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ETH_ARP, PROTO_ICMPV6, PROTO_IGMP, PROTO_UDP};
    use brick_core::bricks::RxTx;
    use brick_core::{Graph, Packet};
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    fn vxlan(vni: u32, v6: bool, vlan: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&[0x81, 0, 0, 5]);
        }
        let l3;
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd]);
            l3 = f.len();
            f.resize(l3 + 40, 0);
            f[l3] = 0x60;
            f[l3 + 6] = PROTO_UDP;
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            l3 = f.len();
            f.resize(l3 + 24, 0);
            f[l3] = 0x46; // one word of options
            f[l3 + 9] = PROTO_UDP;
        }
        let l4 = f.len();
        f.resize(l4 + 16 + 14, 0);
        f[l4 + 2..l4 + 4].copy_from_slice(&4789u16.to_be_bytes());
        f[l4 + 8] = 0x08;
        f[l4 + 12..l4 + 15].copy_from_slice(&vni.to_be_bytes()[1..]);
        f
    }

    #[test]
    fn classifies_vxlan_control_and_the_rest() {
        for (v6, vlan) in [(false, false), (true, false), (false, true), (true, true)] {
            assert_eq!(classify(&vxlan(0xabcdef, v6, vlan), 4789), Steering::Vxlan(0xabcdef));
            assert_eq!(classify(&vxlan(7, v6, vlan), 4790), Steering::Other);
        }
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETH_ARP.to_be_bytes());
        assert_eq!(classify(&arp, 4789), Steering::Control);
        let mut icmp6 = vxlan(1, true, false);
        icmp6[14 + 6] = PROTO_ICMPV6;
        assert_eq!(classify(&icmp6, 4789), Steering::Control);
        let mut igmp = vxlan(1, false, false);
        igmp[14 + 9] = PROTO_IGMP;
        assert_eq!(classify(&igmp, 4789), Steering::Control);
        let mut frag = vxlan(1, false, false);
        frag[14 + 7] = 1; // fragment offset 8
        assert_eq!(classify(&frag, 4789), Steering::Other);
        // Truncated VXLAN header.
        let short = &vxlan(1, false, false)[..14 + 24 + 10];
        assert_eq!(classify(short, 4789), Steering::Other);
    }

    proptest! {
        /// Any bytes: no panic; and cutting a VXLAN frame anywhere never yields another VNI.
        #[test]
        fn never_panics_and_never_invents_a_vni(data in proptest::collection::vec(any::<u8>(), 0..120),
                                                 vni in 0u32..(1 << 24), cut in 0usize..90) {
            let _ = classify(&data, 4789);
            let f = vxlan(vni, cut % 2 == 0, cut % 3 == 0);
            let c = classify(&f[..cut.min(f.len())], 4789);
            prop_assert!(c == Steering::Vxlan(vni) || c == Steering::Other);
        }
    }

    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    /// A brick that records what reaches it; `facing` is the side it is linked on.
    fn sink_facing(g: &mut Graph, name: &str, facing: Side) -> (brick_core::BrickId, Seen) {
        let seen: Seen = Arc::default();
        let s = Arc::clone(&seen);
        let id = g
            .add(
                name,
                RxTx::new(
                    facing,
                    |_: &mut Burst| {},
                    move |b: &mut Burst| s.lock().unwrap().extend(b.drain().map(|p| p.data().to_vec())),
                ),
            )
            .unwrap();
        (id, seen)
    }

    fn sink(g: &mut Graph, name: &str) -> (brick_core::BrickId, Seen) {
        sink_facing(g, name, Side::West)
    }

    #[test]
    fn steers_by_owner_copies_control_and_passes_the_rest_through() {
        let pool = PacketPool::with_count(64).unwrap();
        let mut g = Graph::new("w1");
        // Worker 1 of 3.
        let steer = g.add("steer", VniSteer::new(1, 3, 4789, pool.clone()).unwrap()).unwrap();
        let (vtep, at_vtep) = sink(&mut g, "vtep");
        let (q0, at_q0) = sink(&mut g, "to-w0");
        let (q2, at_q2) = sink(&mut g, "to-w2");
        g.link(steer, vtep).unwrap();
        let (p0, _) = g.link(steer, q0).unwrap();
        let (p2, _) = g.link(steer, q2).unwrap();
        {
            let s = g.brick_mut::<VniSteer>(steer).unwrap();
            s.set_worker_port(0, p0);
            s.set_worker_port(2, p2);
        }
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ETH_ARP.to_be_bytes());
        let frames =
            [vxlan(3, false, false), vxlan(4, true, false), vxlan(5, false, true), arp.clone(), vec![1, 2]];
        let mut b = Burst::new();
        for f in &frames {
            b.push(Packet::from_slice(f)).unwrap();
        }
        g.inject(steer, Side::West, 0, &mut b).unwrap();
        assert_eq!(*at_q0.lock().unwrap(), vec![frames[0].clone(), arp.clone()]);
        assert_eq!(*at_vtep.lock().unwrap(), vec![frames[1].clone(), arp.clone(), frames[4].clone()]);
        assert_eq!(*at_q2.lock().unwrap(), vec![frames[2].clone(), arp]);
        assert_eq!(g.brick::<VniSteer>(steer).unwrap().steered_out(), 2);
        // Every copy went back to the pool.
        at_q0.lock().unwrap().clear();
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn the_vtep_side_goes_out_and_queue_arrivals_go_to_the_vtep() {
        let pool = PacketPool::with_count(8).unwrap();
        let mut g = Graph::new("w0");
        // The NIC stand-in faces east: its east side links to the steer's west.
        let (wire, at_wire) = sink_facing(&mut g, "wire", Side::East);
        let steer = g.add("steer", VniSteer::new(0, 2, 4789, pool).unwrap()).unwrap();
        let (vtep, at_vtep) = sink(&mut g, "vtep");
        let (q, _) = sink(&mut g, "queue");
        g.link(wire, steer).unwrap();
        g.link(steer, vtep).unwrap();
        let (qp, _) = g.link(steer, q).unwrap();
        let mut b = Burst::new();
        b.push(Packet::from_slice(b"from the vtep")).unwrap();
        g.inject(steer, Side::East, 0, &mut b).unwrap();
        b.push(Packet::from_slice(b"from worker 1")).unwrap();
        g.inject(steer, Side::East, qp, &mut b).unwrap();
        assert_eq!(*at_wire.lock().unwrap(), vec![b"from the vtep".to_vec()]);
        assert_eq!(*at_vtep.lock().unwrap(), vec![b"from worker 1".to_vec()]);
        // Worker 1's port was never set: its VNIs are dropped and counted.
        b.push(Packet::from_slice(&vxlan(1, false, false))).unwrap();
        g.inject(steer, Side::West, 0, &mut b).unwrap();
        assert_eq!(g.stats(steer).unwrap().drops().find(|d| d.0 == STEER_DROP_REASONS[0]).unwrap().1, 1);
    }

    #[test]
    fn refuses_bad_worker_numbers() {
        let pool = PacketPool::with_count(8).unwrap();
        assert!(VniSteer::new(0, 0, 4789, pool.clone()).is_err());
        assert!(VniSteer::new(2, 2, 4789, pool.clone()).is_err());
        assert!(VniSteer::new(0, MAX_WORKERS + 1, 4789, pool.clone()).is_err());
        assert!(VniSteer::new(MAX_WORKERS - 1, MAX_WORKERS, 4789, pool).is_ok());
    }
}

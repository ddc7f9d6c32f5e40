//! Test helpers: a graph with a VTEP, a capturing underlay and capturing VM ports ([`Bed`],
//! or [`Host`] with one VM and what each capture keeps of a packet), and frame builders
//! (etherparse) for both sides.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use brick_core::bricks::RxTx;
use brick_core::{BrickId, Burst, Graph, Packet, PacketPool, PortId, Side};
use brick_vtep::{Vtep, VtepConfig};
use etherparse::PacketBuilder;

pub mod kernel;

/// What a capturing brick kept of each packet it received, in order.
pub type Captured<T> = Arc<Mutex<Vec<T>>>;

/// The bytes of each packet a capturing brick received.
pub type Seen = Captured<Vec<u8>>;

pub const LOCAL_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const REMOTE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const VM_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
pub const VM_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

pub struct Bed {
    pub g: Graph,
    pub vtep: BrickId,
    pub wire: Seen,
    pub vms: Vec<(PortId, Seen)>,
}

/// A brick `name` on `side` of the graph that sends nothing and keeps `record(packet)` of
/// each packet it receives.
pub fn capture_with<T: Send + 'static>(
    g: &mut Graph,
    name: &str,
    side: Side,
    record: fn(&Packet) -> T,
) -> (BrickId, Captured<T>) {
    let seen: Captured<T> = Arc::default();
    let s2 = Arc::clone(&seen);
    let sink = move |b: &mut Burst| s2.lock().unwrap().extend(b.drain().map(|p| record(&p)));
    let id = g.add(name, RxTx::new(side, |_: &mut Burst| {}, sink)).unwrap();
    (id, seen)
}

fn capture(g: &mut Graph, name: &str, side: Side) -> (BrickId, Seen) {
    capture_with(g, name, side, |p| p.data().to_vec())
}

impl Bed {
    pub fn new(cfg: VtepConfig, vms: usize) -> Bed {
        let pool = PacketPool::with_count(512).unwrap();
        let mut g = Graph::new("t");
        let vtep = g.add("vtep", Vtep::new(cfg, pool).unwrap()).unwrap();
        let (nic, wire) = capture(&mut g, "nic", Side::East);
        g.link(nic, vtep).unwrap();
        let mut v = Vec::new();
        for i in 0..vms {
            let (id, seen) = capture(&mut g, &format!("vm{i}"), Side::West);
            let (p, _) = g.link(vtep, id).unwrap();
            v.push((p, seen));
        }
        Bed { g, vtep, wire, vms: v }
    }

    pub fn vtep(&self) -> &Vtep {
        self.g.brick::<Vtep>(self.vtep).unwrap()
    }

    pub fn vtep_mut(&mut self) -> &mut Vtep {
        self.g.brick_mut::<Vtep>(self.vtep).unwrap()
    }

    /// A frame arrives from the physical network.
    pub fn rx_wire(&mut self, frames: &[Vec<u8>]) {
        let mut b = Burst::new();
        for f in frames {
            b.push(Packet::from_slice(f)).unwrap();
        }
        self.g.inject(self.vtep, Side::West, 0, &mut b).unwrap();
    }

    /// Frames arrive from the underlay carrying `flags` (as a NIC brick would set them).
    #[allow(dead_code)]
    pub fn rx_wire_flagged(&mut self, frames: &[Vec<u8>], flags: brick_core::OffloadFlags) {
        let mut b = Burst::new();
        for f in frames {
            let mut p = Packet::from_slice(f);
            p.meta_mut().offload = flags;
            b.push(p).unwrap();
        }
        self.g.inject(self.vtep, Side::West, 0, &mut b).unwrap();
    }

    /// A frame arrives from VM `i`.
    pub fn rx_vm(&mut self, i: usize, frames: &[Vec<u8>]) {
        let mut b = Burst::new();
        for f in frames {
            b.push(Packet::from_slice(f)).unwrap();
        }
        let p = self.vms[i].0;
        self.g.inject(self.vtep, Side::East, p, &mut b).unwrap();
    }

    pub fn take_wire(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.wire.lock().unwrap())
    }

    pub fn take_vm(&self, i: usize) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.vms[i].1.lock().unwrap())
    }

    pub fn drops(&self, reason: &str) -> u64 {
        self.g.stats(self.vtep).unwrap().drops_of(reason).unwrap_or_else(|| panic!("no reason {reason}"))
    }
}

/// A VTEP between a capturing underlay (brick `nic`, on its underlay side) and one capturing
/// VM (brick `vm`, on the VTEP's port `port`), each keeping `record(packet)`.
pub struct Host<T> {
    pub g: Graph,
    pub vtep: BrickId,
    pub port: PortId,
    pub wire: Captured<T>,
    pub vm: Captured<T>,
}

impl<T: Send + 'static> Host<T> {
    /// The VTEP of `cfg`, with a pool of `packets` buffers and no VNI yet.
    pub fn with(cfg: VtepConfig, packets: usize, record: fn(&Packet) -> T) -> Host<T> {
        let mut g = Graph::new("t");
        let vtep = g.add("vtep", Vtep::new(cfg, PacketPool::with_count(packets).unwrap()).unwrap()).unwrap();
        let (nic, wire) = capture_with(&mut g, "nic", Side::East, record);
        g.link(nic, vtep).unwrap();
        let (vm_id, vm) = capture_with(&mut g, "vm", Side::West, record);
        let (port, _) = g.link(vtep, vm_id).unwrap();
        Host { g, vtep, port, wire, vm }
    }

    /// Runs the graph once and forgets what reached the underlay: whatever the VTEP sends by
    /// itself at start (resolving its flood VTEPs) goes before a test's own frames.
    pub fn settle(&mut self) {
        self.g.poll_all();
        self.wire.lock().unwrap().clear();
    }
}

/// An inner Ethernet/IPv4/UDP frame of `payload` bytes.
pub fn inner_udp(dst: [u8; 6], src: [u8; 6], payload: usize) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst).ipv4([192, 168, 42, 1], [192, 168, 42, 2], 64).udp(1000, 2000);
    let body = vec![0xab; payload];
    let mut v = Vec::new();
    b.write(&mut v, &body).unwrap();
    v
}

/// A 64-byte inner frame (Ethernet + IPv4 + UDP + 22 bytes).
pub fn inner64(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    inner_udp(dst, src, 64 - 42)
}

/// A VXLAN frame over IPv4 as a remote VTEP would send it.
#[allow(clippy::too_many_arguments)]
pub fn vxlan4(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vec![flags, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0];
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2(smac, dmac).ipv4(src, dst, 64).udp(50000, dport);
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    // etherparse computes a UDP checksum over IPv4; remote VTEPs (Linux) send zero.
    let l4 = 14 + 20;
    v[l4 + 6] = 0;
    v[l4 + 7] = 0;
    v
}

/// A VXLAN frame over IPv6 (UDP checksum computed unless `zero_csum`).
pub fn vxlan6(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    vni: u32,
    inner: &[u8],
    zero_csum: bool,
) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src, dst) else { panic!("v6 only") };
    let mut payload = vec![0x08, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0];
    payload.extend_from_slice(inner);
    let b = PacketBuilder::ethernet2(smac, dmac).ipv6(s.octets(), d.octets(), 64).udp(50001, 4789);
    let mut v = Vec::new();
    b.write(&mut v, &payload).unwrap();
    if zero_csum {
        v[14 + 40 + 6] = 0;
        v[14 + 40 + 7] = 0;
    }
    v
}

pub fn mac(d: &[u8], at: usize) -> [u8; 6] {
    d[at..at + 6].try_into().unwrap()
}

//! ARP/ND suppression in the VTEP: a local VM's request for a bound address is answered back
//! through the VNI's port and nothing reaches the underlay; other requests are flooded as
//! before, and counted.

mod common;

use std::net::{IpAddr, Ipv6Addr};

use brick_core::{Burst, Packet, Side};
use brick_vtep::neigh_proxy::solicited_node;
use brick_vtep::{VniOptions, Vtep, VtepConfig, VtepError};
use etherparse::{Icmpv6Type, PacketBuilder};

/// The VTEP with one VM, capturing frames' bytes.
type Host = common::Host<Vec<u8>>;

const VM: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const REMOTE: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl Host {
    /// VNI 42 flooding to 10.0.0.2, with 10.1.0.2 and fd01::2 bound to REMOTE.
    fn new() -> Host {
        let cfg = VtepConfig::new(ip("10.0.0.1"), [0x02, 0, 0, 0, 0, 1]);
        let mut h = Host::with(cfg, 256, |p| p.data().to_vec());
        let port = h.port;
        let v = h.vtep();
        v.add_vni_with(42, port, VniOptions { group: None, flood: vec![ip("10.0.0.2")] }).unwrap();
        v.set_neigh_proxy(42, ip("10.1.0.2"), REMOTE).unwrap();
        v.set_neigh_proxy(42, ip("fd01::2"), REMOTE).unwrap();
        // Whatever the VTEP sends by itself at start (resolving its flood VTEP) goes first.
        h.settle();
        h
    }

    fn send(&mut self, frame: Vec<u8>) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut b = Burst::new();
        b.push(Packet::from_slice(&frame)).unwrap();
        self.g.inject(self.vtep, Side::East, self.port, &mut b).unwrap();
        self.g.poll_all();
        (std::mem::take(&mut *self.vm.lock().unwrap()), std::mem::take(&mut *self.wire.lock().unwrap()))
    }

    fn vtep(&mut self) -> &mut Vtep {
        self.g.brick_mut::<Vtep>(self.vtep).unwrap()
    }
}

fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&VM);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&VM);
    f.extend_from_slice(&[10, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&target);
    f
}

/// A solicitation for `target` from fd01::1, with a source link-layer option when `slla`.
fn ns_with(target: &str, slla: bool) -> Vec<u8> {
    let target: Ipv6Addr = target.parse().unwrap();
    let g = solicited_node(target).octets();
    let b = PacketBuilder::ethernet2(VM, [0x33, 0x33, g[12], g[13], g[14], g[15]])
        .ipv6("fd01::1".parse::<Ipv6Addr>().unwrap().octets(), g, 255)
        .icmpv6(Icmpv6Type::Unknown { type_u8: 135, code_u8: 0, bytes5to8: [0; 4] });
    let mut body = target.octets().to_vec();
    if slla {
        body.extend_from_slice(&[1, 1]);
        body.extend_from_slice(&VM);
    }
    let mut f = Vec::new();
    b.write(&mut f, &body).unwrap();
    f
}

fn ns(target: &str) -> Vec<u8> {
    ns_with(target, true)
}

#[test]
fn a_request_for_a_bound_address_is_answered_and_never_reaches_the_underlay() {
    let mut h = Host::new();
    let (vm, wire) = h.send(arp_request([10, 1, 0, 2]));
    assert!(wire.is_empty(), "nothing on the underlay: {wire:?}");
    assert_eq!(vm.len(), 1);
    assert_eq!((&vm[0][0..6], &vm[0][6..12], &vm[0][20..22]), (&VM[..], &REMOTE[..], &[0, 2][..]));
    let (vm, wire) = h.send(ns("fd01::2"));
    assert!(wire.is_empty(), "nothing on the underlay: {wire:?}");
    assert_eq!((vm.len(), vm[0][54]), (1, 136), "a neighbour advertisement");
    // Without options the request's buffer (exactly its size here) is too small for the
    // advertisement: the reply takes a pool buffer.
    let (vm, wire) = h.send(ns_with("fd01::2", false));
    assert!(wire.is_empty());
    assert_eq!((vm.len(), vm[0].len(), &vm[0][0..6]), (1, 86, &VM[..]));
    let c = h.vtep().vni_info(42).unwrap().counters;
    assert_eq!((c.arp_suppressed, c.nd_suppressed, c.flooded, c.encap_pkts), (1, 2, 0, 0));
    let lines = brick_core::Brick::describe(h.vtep());
    assert!(
        lines.contains(&"vni 42 suppression bindings 2 arp 1 nd 2 unknown 0 malformed 0".to_string()),
        "{lines:?}"
    );
}

#[test]
fn other_requests_are_flooded_and_counted() {
    let mut h = Host::new();
    // Unknown target: flooded (the underlay first resolves the flood VTEP's MAC).
    let (vm, wire) = h.send(arp_request([10, 1, 0, 9]));
    assert!(vm.is_empty() && !wire.is_empty());
    // Malformed (hop limit 64): flooded too.
    let mut f = ns("fd01::2");
    f[21] = 64;
    let (vm, _) = h.send(f);
    assert!(vm.is_empty());
    // A binding removed is no longer answered.
    assert!(h.vtep().remove_neigh_proxy(42, ip("10.1.0.2")).unwrap());
    let (vm, _) = h.send(arp_request([10, 1, 0, 2]));
    assert!(vm.is_empty());
    let c = h.vtep().vni_info(42).unwrap().counters;
    assert_eq!((c.arp_suppressed, c.nd_suppressed), (0, 0));
    assert_eq!((c.suppress_unknown, c.suppress_malformed, c.flooded), (2, 1, 3));
    assert_eq!(h.vtep().neigh_proxy(42), vec![(ip("fd01::2"), REMOTE)]);
    assert_eq!((h.vtep().neigh_proxy_len(42), h.vtep().neigh_proxy_len(7)), (1, 0));
    assert!(matches!(h.vtep().set_neigh_proxy(7, ip("10.1.0.3"), REMOTE), Err(VtepError::UnknownVni(7))));
}

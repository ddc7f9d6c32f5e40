//! Brick-level tests: network → firewall → anti-spoof → VM, in a `brick_core::Graph`, both
//! driven inline and running on a `Runner` thread with live reconfiguration.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brick_core::bricks::RxTx;
use brick_core::{BrickId, Burst, Graph, Packet, Runner, RunnerConfig, Side, Timestamp};
use brick_firewall::{
    ruleset_from_security_groups, AntiSpoof, AntiSpoofOptions, Cidr, CompiledRuleset, Firewall,
    FirewallConfig, SecurityGroup, SgDirection, SgOptions, SgRule, SgTarget,
};
use etherparse::PacketBuilder;

const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VM_IP: [u8; 4] = [42, 0, 0, 1];
const PEER: [u8; 4] = [42, 0, 0, 2];

type Queue = Arc<Mutex<VecDeque<Vec<u8>>>>;

fn tcp(from_vm: bool, sp: u16, dp: u16, seq: u32, syn: bool, ack: bool) -> Vec<u8> {
    let (sm, dm, s, d) = if from_vm { (VM_MAC, GW_MAC, VM_IP, PEER) } else { (GW_MAC, VM_MAC, PEER, VM_IP) };
    let mut b = PacketBuilder::ethernet2(sm, dm).ipv4(s, d, 64).tcp(sp, dp, seq, 1000);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).unwrap();
    v
}

fn udp(from_vm: bool, src: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
    let (sm, dm, d) = if from_vm { (VM_MAC, GW_MAC, PEER) } else { (GW_MAC, VM_MAC, VM_IP) };
    let mut v = Vec::new();
    PacketBuilder::ethernet2(sm, dm).ipv4(src, d, 64).udp(sp, dp).write(&mut v, b"data").unwrap();
    v
}

/// An endpoint brick on `side` that sends what is pushed to `tx` and records what it gets.
fn endpoint(side: Side) -> (impl brick_core::Brick, Queue, Queue) {
    let tx: Queue = Default::default();
    let rx: Queue = Default::default();
    let (t, r) = (Arc::clone(&tx), Arc::clone(&rx));
    let brick = RxTx::new(
        side,
        move |b: &mut Burst| {
            let mut q = t.lock().unwrap();
            while !b.is_full() {
                match q.pop_front() {
                    Some(f) => b.push(Packet::from_slice(&f)).unwrap(),
                    None => break,
                }
            }
        },
        move |b: &mut Burst| {
            let mut q = r.lock().unwrap();
            for p in b.drain() {
                q.push_back(p.data().to_vec());
            }
        },
    );
    (brick, tx, rx)
}

struct Setup {
    g: Graph,
    fw: BrickId,
    asp: BrickId,
    net_tx: Queue,
    net_rx: Queue,
    vm_tx: Queue,
    vm_rx: Queue,
}

fn setup(rules: &str) -> Setup {
    let mut g = Graph::new("fw-test");
    let (net, net_tx, net_rx) = endpoint(Side::East);
    let (vm, vm_tx, vm_rx) = endpoint(Side::West);
    let net = g.add("net", net).unwrap();
    let fw = g
        .add(
            "firewall",
            Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::parse(rules).unwrap()),
        )
        .unwrap();
    let asp = g
        .add(
            "antispoof",
            AntiSpoof::new(VM_MAC, &[std::net::IpAddr::from(VM_IP)], AntiSpoofOptions::default()).unwrap(),
        )
        .unwrap();
    let vm = g.add("vm", vm).unwrap();
    g.chain(&[net, fw, asp, vm]).unwrap();
    Setup { g, fw, asp, net_tx, net_rx, vm_tx, vm_rx }
}

fn wait_for(q: &Queue, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if q.lock().unwrap().len() >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn chain_filters_both_ways_and_counts_drops() {
    let mut s = setup("pass out all keep state\npass in proto tcp to any port 22\n");
    // From the VM: an outbound SYN, a spoofed one, one with a foreign MAC.
    s.vm_tx.lock().unwrap().push_back(tcp(true, 5000, 80, 1, true, false));
    let mut spoofed = udp(true, [42, 0, 0, 9], 1, 2);
    s.vm_tx.lock().unwrap().push_back(spoofed.clone());
    spoofed[6] = 0x0e;
    s.vm_tx.lock().unwrap().push_back(spoofed);
    s.g.poll_all();
    assert_eq!(s.net_rx.lock().unwrap().len(), 1);
    // From the network: the reply, an unsolicited UDP, an SSH SYN, an SSH ACK without state.
    for f in [
        tcp(false, 80, 5000, 100, true, true),
        udp(false, PEER, 53, 53),
        tcp(false, 6000, 22, 7, true, false),
        tcp(false, 6001, 22, 7, false, true),
    ] {
        s.net_tx.lock().unwrap().push_back(f);
    }
    s.g.poll_all();
    assert_eq!(s.vm_rx.lock().unwrap().len(), 2);
    let fws = s.g.stats(s.fw).unwrap();
    assert_eq!(fws.drops_of("blocked by default policy"), Some(1));
    assert_eq!(fws.drops_of("tcp without state"), Some(1));
    let asps = s.g.stats(s.asp).unwrap();
    assert_eq!(asps.drops_of("ipv4 source"), Some(1));
    assert_eq!(asps.drops_of("source mac"), Some(1));
    // The SSH connection the VM accepted lets its answer out.
    s.vm_tx.lock().unwrap().push_back(tcp(true, 22, 6000, 50, true, true));
    s.g.poll_all();
    assert_eq!(s.net_rx.lock().unwrap().len(), 2);
    assert_eq!(s.g.brick::<Firewall>(s.fw).unwrap().connections().len(), 2);
}

#[test]
fn live_reconfiguration_on_a_running_graph() {
    let s = setup("pass out all keep state\n");
    let (fw, asp) = (s.fw, s.asp);
    let mut g = s.g;
    g.set_tick_interval(Duration::from_millis(10));
    let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
    let h = runner.handle();

    // A TCP connection and a UDP flow from the VM, answered by the peer.
    s.vm_tx.lock().unwrap().push_back(tcp(true, 5000, 80, 1, true, false));
    s.vm_tx.lock().unwrap().push_back(udp(true, VM_IP, 5353, 53));
    assert!(wait_for(&s.net_rx, 2));
    s.net_tx.lock().unwrap().push_back(tcp(false, 80, 5000, 100, true, true));
    s.net_tx.lock().unwrap().push_back(udp(false, PEER, 53, 5353));
    assert!(wait_for(&s.vm_rx, 2));

    // Security groups: only TCP to port 80 outbound. The UDP flow goes, the TCP one stays.
    let groups = vec![SecurityGroup {
        id: "sg-1".into(),
        members: vec![],
        rules: vec![SgRule {
            direction: SgDirection::Outbound,
            protocol: 6,
            port_start: 80,
            port_end: 80,
            target: SgTarget::Cidr(Cidr::new("0.0.0.0".parse().unwrap(), 0).unwrap()),
        }],
    }];
    let rs =
        ruleset_from_security_groups(&[VM_IP.into()], &["sg-1"], &groups, &SgOptions::default()).unwrap();
    let compiled = CompiledRuleset::new(rs).unwrap();
    let (kept, removed) = h
        .exec(move |g| {
            let r = g.brick_mut::<Firewall>(fw).unwrap().replace_ruleset(compiled);
            (r.kept, r.removed)
        })
        .unwrap();
    assert_eq!((kept, removed), (1, 1));
    s.net_tx.lock().unwrap().push_back(tcp(false, 80, 5000, 101, false, true));
    s.net_tx.lock().unwrap().push_back(udp(false, PEER, 53, 5353));
    assert!(wait_for(&s.vm_rx, 3));
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(s.vm_rx.lock().unwrap().len(), 3, "the UDP reply must now be blocked");

    // Anti-spoof addresses change live.
    s.vm_tx.lock().unwrap().push_back(udp(true, [42, 0, 0, 7], 1, 80));
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.exec(move |g| g.stats(asp).unwrap().drops_of("ipv4 source")).unwrap() != Some(1) {
        assert!(Instant::now() < deadline, "the spoofed packet was never dropped");
        std::thread::sleep(Duration::from_millis(1));
    }
    h.exec(move |g| g.brick_mut::<AntiSpoof>(asp).unwrap().set_ips(&[[42, 0, 0, 7].into()]).unwrap())
        .unwrap();
    s.vm_tx.lock().unwrap().push_back(tcp(true, 5001, 80, 1, true, false));
    s.vm_tx.lock().unwrap().push_back(udp(true, [42, 0, 0, 7], 1, 80));
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.exec(move |g| g.stats(fw).unwrap().drops_of("blocked by default policy")).unwrap() != Some(2) {
        assert!(Instant::now() < deadline, "42.0.0.7 is not the NIC's IP in the firewall: blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Export the connection table for migration, import into a fresh firewall.
    let bytes =
        h.exec(move |g| g.brick::<Firewall>(fw).unwrap().export_connections(Timestamp::now())).unwrap();
    let g = runner.stop().unwrap();
    let asps = g.stats(asp).unwrap();
    assert_eq!(asps.drops_of("ipv4 source"), Some(2), "42.0.0.7 before the update, 42.0.0.1 after");
    let mut other =
        Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::parse("pass out all\n").unwrap());
    assert_eq!(other.import_connections(&bytes, Timestamp::now()), Ok(1));
}

/// A source that emits every frame it holds in one poll, one `emit` each: more than a burst,
/// which the graph splits into bursts for the next brick.
struct Flood(Vec<Vec<u8>>);

impl brick_core::Brick for Flood {
    fn kind(&self) -> &'static str {
        "flood"
    }
    fn process(&mut self, _: Side, _: brick_core::PortId, pkts: &mut Burst, _: &mut brick_core::Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn poll(&mut self, out: &mut brick_core::Output<'_>) -> usize {
        let n = self.0.len();
        for f in self.0.drain(..) {
            out.emit(Side::East, 0, Packet::from_slice(&f));
        }
        n
    }
}

/// The UDP source ports of the frames in `q`, in order.
fn sports(q: &Queue) -> Vec<u16> {
    q.lock().unwrap().drain(..).map(|f| u16::from_be_bytes([f[34], f[35]])).collect()
}

/// The firewall judges a burst, then moves it: a burst that passes whole goes out whole, a
/// burst with drops keeps the order of what passes, and so do the bursts of a longer output
/// that the graph splits (64 + 64 + 22). Every third frame goes to a blocked port.
#[test]
fn whole_bursts_mixed_bursts_and_split_outputs_keep_order_and_count_drops() {
    let rules = "pass in proto udp to any port 53\n";
    let blocked = |i: u16| i % 3 == 2;
    let frame = |i: u16| udp(false, PEER, 1000 + i, if blocked(i) { 54 } else { 53 });

    // A full burst that passes whole, then a full one with drops, through the RxTx endpoint.
    let mut s = setup(rules);
    s.net_tx.lock().unwrap().extend((0..64).map(|i| udp(false, PEER, 1000 + i, 53)));
    s.g.poll_all();
    assert_eq!(sports(&s.vm_rx), (1000..1064).collect::<Vec<_>>());
    s.net_tx.lock().unwrap().extend((0..64).map(frame));
    s.g.poll_all();
    let passed: Vec<u16> = (0..64).filter(|&i| !blocked(i)).map(|i| 1000 + i).collect();
    assert_eq!(sports(&s.vm_rx), passed);
    assert_eq!(s.g.stats(s.fw).unwrap().drops_of("blocked by default policy"), Some(21));

    // 150 frames emitted in one poll.
    let mut g = Graph::new("fw-split-output");
    let flood = g.add("flood", Flood((0..150).map(frame).collect())).unwrap();
    let fw = g
        .add(
            "firewall",
            Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::parse(rules).unwrap()),
        )
        .unwrap();
    let (vm, _, vm_rx) = endpoint(Side::West);
    let vm = g.add("vm", vm).unwrap();
    g.chain(&[flood, fw, vm]).unwrap();
    g.poll_all();
    let passed: Vec<u16> = (0..150).filter(|&i| !blocked(i)).map(|i| 1000 + i).collect();
    assert_eq!(sports(&vm_rx), passed);
    assert_eq!(g.stats(fw).unwrap().drops_of("blocked by default policy"), Some(50));
}

/// With thousands of connections the firewall looks each burst's lookups up ahead: what
/// passes and what is dropped is the same as frame by frame. 5,000 connections opened from
/// the VM, then bursts from the network mixing their replies, frames of no connection, IPv6,
/// ICMP and ARP.
#[test]
fn bursts_with_many_connections_are_judged_as_frame_by_frame() {
    let mut s = setup("pass out all keep state\n");
    s.vm_tx.lock().unwrap().extend((0..5000u16).map(|i| udp(true, VM_IP, 10_000 + i, 53)));
    while s.net_rx.lock().unwrap().len() < 5000 {
        assert!(s.g.poll_all() > 0, "the VM's frames stopped");
    }
    assert_eq!(s.g.brick::<Firewall>(s.fw).unwrap().connections().len(), 5000);
    let reply = |i: u16| udp(false, PEER, 53, 10_000 + i);
    let stranger = |i: u16| udp(false, PEER, 53, 30_000 + i);
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, VM_MAC)
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(53, 10_000)
        .write(&mut v6, b"x")
        .unwrap();
    let mut arp = reply(0);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut expected = Vec::new();
    for i in 0..640u16 {
        let (frame, passes) = match i % 8 {
            0 | 2 | 3 | 5 => (reply(i * 7 % 5000), true),
            1 | 6 => (stranger(i), false),
            4 => (v6.clone(), false),
            _ => (arp.clone(), true),
        };
        if passes {
            expected.push(frame.clone());
        }
        s.net_tx.lock().unwrap().push_back(frame);
    }
    while !s.net_tx.lock().unwrap().is_empty() {
        s.g.poll_all();
    }
    let got: Vec<Vec<u8>> = s.vm_rx.lock().unwrap().drain(..).collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "the frames that passed, in order");
    assert_eq!(s.g.stats(s.fw).unwrap().drops_of("blocked by default policy"), Some(240));
}

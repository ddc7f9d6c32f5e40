//! The full VM → wire chain in memory (anti-spoof, firewall on an established flow, switch,
//! VXLAN encapsulation) and the reverse (decapsulation, switch, firewall, anti-spoof), with
//! 64-byte frames in bursts of 64. Besides criterion's time per burst (which includes making
//! and freeing the test packets), it prints the sum of the bricks' own sampled cycles per
//! packet: the figure to compare with the ≤ 250 cycles target.

use std::net::{IpAddr, Ipv4Addr};

use brick_core::bricks::RxTx;
use brick_core::{BrickId, Burst, Graph, PacketPool, Side, BURST_SIZE};
use brick_firewall::{
    ruleset_from_security_groups, AntiSpoof, AntiSpoofOptions, CompiledRuleset, Firewall, FirewallConfig,
    SgOptions,
};
use brick_switch::{Switch, SwitchConfig};
use brick_vtep::{Vtep, VtepConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
mod common;
use common::{udp_frame, vxlan_from_remote, LOCAL_VTEP_MAC};

const VM: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const PEER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const VNI: u32 = 42;

struct Bed {
    g: Graph,
    pool: PacketPool,
    vtep: BrickId,
    antispoof: BrickId,
    chain: [BrickId; 4],
    out_frame: Vec<u8>,
    in_frame: Vec<u8>,
}

fn bed() -> Bed {
    let pool = PacketPool::with_count(8 * BURST_SIZE).unwrap();
    let mut g = Graph::new("chain");
    let sink_wire =
        g.add("wire", RxTx::new(Side::East, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    let vtep_ip = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let vtep =
        g.add("vtep", Vtep::new(VtepConfig::new(vtep_ip, LOCAL_VTEP_MAC), pool.clone()).unwrap()).unwrap();
    let switch = g.add("switch", Switch::new(SwitchConfig::default(), pool.clone()).unwrap()).unwrap();
    let vm_ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let rules = ruleset_from_security_groups(&[vm_ip], &[], &[], &SgOptions::default()).unwrap();
    let fw = g
        .add(
            "firewall",
            Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::new(rules).unwrap()),
        )
        .unwrap();
    let asp = g.add("antispoof", AntiSpoof::new(VM, &[vm_ip], AntiSpoofOptions::default()).unwrap()).unwrap();
    let sink_vm = g.add("vm", RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    g.link(sink_wire, vtep).unwrap();
    let (port, _) = g.link(vtep, switch).unwrap();
    g.brick_mut::<Vtep>(vtep).unwrap().add_vni(VNI, port).unwrap();
    g.chain(&[switch, fw, asp, sink_vm]).unwrap();
    let out_frame = udp_frame(VM, PEER, [10, 0, 0, 1], [10, 0, 0, 2], 40000, 5001, 64);
    let in_frame =
        vxlan_from_remote(VNI, &udp_frame(PEER, VM, [10, 0, 0, 2], [10, 0, 0, 1], 5001, 40000, 64));
    let mut b = Bed { g, pool, vtep, antispoof: asp, chain: [asp, fw, switch, vtep], out_frame, in_frame };
    // Warm up: the VM's flow opens the connection, the remote's reply teaches the vtep the
    // peer's MAC and VTEP (and the switch both MACs); from then on both ways are fast paths.
    for _ in 0..4 {
        b.push_from_vm();
        b.push_from_wire();
    }
    b
}

impl Bed {
    fn burst(&self, frame: &[u8]) -> Burst {
        let mut burst = Burst::new();
        while burst.room() > 0 {
            burst.push(self.pool.alloc_from(frame).expect("pool sized for the bench")).unwrap();
        }
        burst
    }
    fn push_from_vm(&mut self) {
        let mut b = self.burst(&self.out_frame.clone());
        self.g.inject(self.antispoof, Side::East, 0, &mut b).unwrap();
    }
    fn push_from_wire(&mut self) {
        let mut b = self.burst(&self.in_frame.clone());
        self.g.inject(self.vtep, Side::West, 0, &mut b).unwrap();
    }
    fn reset_cycles(&mut self) -> Vec<(String, f64)> {
        self.chain
            .iter()
            .map(|&id| {
                let st = self.g.stats(id).unwrap();
                (self.g.name_of(id).unwrap().to_string(), st.cycles_per_packet().unwrap_or(0.0))
            })
            .collect()
    }
}

fn full_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("full_chain");
    group.throughput(Throughput::Elements(BURST_SIZE as u64));
    let mut b = bed();
    let wire_before = b.g.stats(b.vtep).unwrap().side(Side::West).pkts_out.get();
    group.bench_function("vm_to_wire", |bench| bench.iter(|| b.push_from_vm()));
    let sent = b.g.stats(b.vtep).unwrap().side(Side::West).pkts_out.get() - wire_before;
    assert!(sent > 0, "encapsulated packets reached the wire");
    let per_brick = b.reset_cycles();
    let mut b2 = bed();
    let vm_before = b2.g.stats(b2.antispoof).unwrap().side(Side::East).pkts_out.get();
    group.bench_function("wire_to_vm", |bench| bench.iter(|| b2.push_from_wire()));
    let delivered = b2.g.stats(b2.antispoof).unwrap().side(Side::East).pkts_out.get() - vm_before;
    assert!(delivered > 0, "decapsulated packets reached the VM");
    group.finish();
    for (name, bed) in
        [("vm_to_wire", &per_brick), ("wire_to_vm (bricks' lifetime average)", &b2.reset_cycles())]
    {
        let total: f64 = bed.iter().map(|(_, c)| c).sum();
        let detail: Vec<String> = bed.iter().map(|(n, c)| format!("{n} {c:.0}")).collect();
        println!("{name}: {total:.0} cycles/packet in the bricks ({})", detail.join(", "));
    }
    for (name, b) in [("vm_to_wire", &b), ("wire_to_vm", &b2)] {
        for &id in &b.chain {
            let st = b.g.stats(id).unwrap();
            let drops: Vec<String> =
                st.drops().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
            if !drops.is_empty() {
                println!("{name}: {} dropped {}", b.g.name_of(id).unwrap(), drops.join(" "));
            }
        }
    }
}

criterion_group!(benches, full_chain);
criterion_main!(benches);

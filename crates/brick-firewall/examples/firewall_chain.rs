//! Builds network → firewall → anti-spoof → VM from security groups, sends a few frames
//! through it, replaces the ruleset live, exports the connection table, and prints the
//! counters.
//!
//! Run: `cargo run -p brick-firewall --example firewall_chain`

use std::net::IpAddr;

use brick_core::{Burst, Graph, Packet, Side};
use brick_firewall::{
    ruleset_from_security_groups, AntiSpoof, AntiSpoofOptions, Cidr, CompiledRuleset, Firewall,
    FirewallConfig, SecurityGroup, SgDirection, SgOptions, SgRule, SgTarget, Timestamp,
};
use etherparse::PacketBuilder;

const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn tcp_syn(src_mac: [u8; 6], src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, ack: bool) -> Packet {
    let mut b = PacketBuilder::ethernet2(src_mac, GW_MAC).ipv4(src, dst, 64).tcp(sp, dp, 1, 1000).syn();
    if ack {
        b = b.ack(2);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[]).expect("write");
    Packet::from_slice(&v)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Security group "web": SSH from the admin network, HTTP from members of "lb".
    let groups = vec![
        SecurityGroup {
            id: "web".into(),
            members: vec![],
            rules: vec![
                SgRule {
                    direction: SgDirection::Inbound,
                    protocol: 6,
                    port_start: 22,
                    port_end: 22,
                    target: SgTarget::Cidr(Cidr::new("192.168.0.0".parse()?, 16).ok_or("prefix")?),
                },
                SgRule {
                    direction: SgDirection::Inbound,
                    protocol: 6,
                    port_start: 80,
                    port_end: 80,
                    target: SgTarget::Group("lb".into()),
                },
            ],
        },
        SecurityGroup { id: "lb".into(), members: vec!["42.0.0.10".parse()?], rules: vec![] },
    ];
    let vm_ips: Vec<IpAddr> = vec!["42.0.0.1".parse()?];
    let ruleset = ruleset_from_security_groups(&vm_ips, &["web"], &groups, &SgOptions::default())?;
    println!("generated ruleset:\n{ruleset}");

    let mut g = Graph::new("example");
    let fw =
        g.add("firewall", Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::new(ruleset)?))?;
    let asp = g.add("antispoof", AntiSpoof::new(VM_MAC, &vm_ips, AntiSpoofOptions::default())?)?;
    g.link(fw, asp)?;

    // From the network: HTTP from the load balancer (allowed), from elsewhere (blocked).
    let mut b = Burst::new();
    let _ = b.push(tcp_syn(GW_MAC, [42, 0, 0, 10], [42, 0, 0, 1], 5555, 80, false));
    let _ = b.push(tcp_syn(GW_MAC, [42, 0, 0, 11], [42, 0, 0, 1], 5555, 80, false));
    g.inject(fw, Side::West, 0, &mut b)?;
    // From the VM: its reply (allowed), and a spoofed source (dropped by anti-spoof).
    let _ = b.push(tcp_syn(VM_MAC, [42, 0, 0, 1], [42, 0, 0, 10], 80, 5555, true));
    let _ = b.push(tcp_syn(VM_MAC, [42, 0, 0, 99], [42, 0, 0, 10], 80, 5555, true));
    g.inject(asp, Side::East, 0, &mut b)?;

    // Live replacement (through GraphHandle::exec on a running graph; directly here).
    let replaced =
        g.brick_mut::<Firewall>(fw)?.replace_ruleset(CompiledRuleset::parse("pass in all\npass out all\n")?);
    println!("replace: kept {} removed {}", replaced.kept, replaced.removed);
    let exported = g.brick::<Firewall>(fw)?.export_connections(Timestamp::now());
    println!("exported connection table: {} bytes", exported.len());

    // Frames leaving the chain count as "unlinked port": no endpoint is linked here.
    for (name, id) in [("firewall", fw), ("antispoof", asp)] {
        let s = g.stats(id)?;
        let drops: Vec<String> = s.drops().filter(|(_, n)| *n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        println!("{name}: drops {}", drops.join(", "));
    }
    Ok(())
}

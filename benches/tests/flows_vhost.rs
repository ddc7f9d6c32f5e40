//! vhost-flows' core against our own backend and firewall: vm1's NIC behind a stateful
//! firewall (egress allowed, ingress only as replies), a hub to vm2's NIC. Every one of the
//! tool's connections must be opened by vm1 and answered by vm2 through it.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use brick_core::bricks::Hub;
use brick_core::{BrickId, Graph, PacketPool, Runner, RunnerConfig};
use brick_firewall::{ruleset_from_security_groups, CompiledRuleset, Firewall, FirewallConfig, SgOptions};
use brick_vhost::{VhostUserConfig, VhostUserNic};
use butterfly_benches::flows::{self, Config};
use common::{connect, TempDir, VM1, VM2};

/// vm1 - firewall - hub - vm2 (the hub linked to nothing when `!forward`): the runner and
/// the firewall's id.
fn switch(dir: &std::path::Path, forward: bool) -> (Runner, BrickId) {
    let pool = PacketPool::with_count(4096).unwrap();
    let nic = |name: &str, mac| {
        VhostUserNic::server(dir.join(format!("{name}.sock")), VhostUserConfig::new(name, mac, pool.clone()))
            .unwrap()
    };
    let vm1_ip = IpAddr::V4(Ipv4Addr::from(VM1.ip));
    let rules = ruleset_from_security_groups(&[vm1_ip], &[], &[], &SgOptions::default()).unwrap();
    let mut g = Graph::new("flows");
    let hub = g.add("hub", Hub::new(pool.clone())).unwrap();
    let fw = g
        .add("fw", Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::new(rules).unwrap()))
        .unwrap();
    let v1 = g.add("vm1", nic("vm1", VM1.mac)).unwrap();
    let v2 = g.add("vm2", nic("vm2", VM2.mac)).unwrap();
    // West faces the network: hub -> firewall -> vm1, hub -> vm2.
    g.link(fw, v1).unwrap();
    if forward {
        g.link(hub, fw).unwrap();
        g.link(hub, v2).unwrap();
    }
    (Runner::spawn(g, RunnerConfig::default()).unwrap(), fw)
}

fn config(flows: u32) -> Config {
    Config {
        vm1: VM1,
        vm2: VM2,
        flows,
        inflight: 64,
        frame_len: 60,
        warmup: Duration::from_millis(300),
        duration: Duration::from_millis(500),
    }
}

#[test]
fn every_flow_is_a_connection_answered_through_a_stateful_firewall() {
    let dir = TempDir::new("vhost-flows", "fw");
    let (runner, fw) = switch(&dir.0, true);
    let mut devs = connect(&dir);
    let r = flows::run(&mut devs, &config(500)).unwrap();
    // Both ways carried frames (the replies are let in only as the connections' own; enough
    // that every one of the 500 flows was picked: 2,982 draws cover them with this seed),
    // and nothing was lost. A population is sent anew only after 50 ms with nothing received
    // (a loaded machine may stall the graph thread that long), and never more than twice.
    assert!(r.received[0] > 5_000 && r.received[1] > 5_000, "{r:?}");
    assert!(r.refills <= 2, "{r:?}");
    let in_flight = 64 * (1 + r.refills);
    assert!(r.received[0].abs_diff(r.received[1]) <= in_flight, "more in flight than sent: {r:?}");
    assert_eq!((r.stray, r.tx_full), (0, 0), "{r:?}");
    assert!(r.per_direction() > 0.0);
    // The firewall holds exactly the tool's connections, every one answered.
    let (open, by_state, dropped) = runner
        .handle()
        .exec(move |g| {
            let f = g.brick::<Firewall>(fw).unwrap();
            let dropped: u64 = g.stats(fw).unwrap().drops().map(|(_, n)| n).sum();
            (f.connections().len(), f.counters().passed_by_state, dropped)
        })
        .unwrap();
    assert_eq!(open, 500, "connections in the firewall");
    assert!(by_state > r.received[0], "the replies passed as their connections': {by_state}");
    assert_eq!(dropped, 0, "frames the firewall dropped");
    assert_eq!(devs[0].bad_used + devs[1].bad_used, 0);
    drop(devs);
    drop(runner);
}

#[test]
fn a_switch_that_forwards_nothing_is_named_not_waited_on() {
    let dir = TempDir::new("vhost-flows", "drop");
    let (runner, _) = switch(&dir.0, false);
    let mut devs = connect(&dir);
    let t = std::time::Instant::now();
    let err = flows::run(&mut devs, &config(10)).unwrap_err();
    assert!(err.0.starts_with("nothing reached vm2 in the warm-up"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after {:?}", t.elapsed());
    drop(devs);
    drop(runner);
}

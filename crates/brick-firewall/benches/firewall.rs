//! Benchmarks: established-flow fast path (32 flows mixed, one flow a burst, many flows at
//! random), new-flow lookup with 1k and 10k rules, anti-spoof.
//! Each iteration handles a batch of 64 frames; criterion reports time per frame
//! (throughput in elements). The TSC frequency is printed so ns can be turned into cycles.

use std::hint::black_box;
use std::time::{Duration, Instant};

use brick_core::Burst;
use brick_firewall::wire::{Flow, PROTO_TCP, PROTO_UDP};
use brick_firewall::{AntiSpoof, AntiSpoofOptions, CompiledRuleset, Direction, Firewall, FirewallConfig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use etherparse::PacketBuilder;

const VM_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const VM: [u8; 4] = [42, 0, 0, 1];

#[allow(clippy::too_many_arguments)] // a test-frame builder: every field is a knob
fn tcp(
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    seq: u32,
    syn: bool,
    ack: bool,
    from_vm: bool,
) -> Vec<u8> {
    let (sm, dm) = if from_vm { (VM_MAC, GW_MAC) } else { (GW_MAC, VM_MAC) };
    let mut b = PacketBuilder::ethernet2(sm, dm).ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
    if syn {
        b = b.syn();
    }
    if ack {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 64]).unwrap();
    v
}

/// A 64-byte UDP frame from the VM (source port `sp`) to 42.0.0.2:9.
fn udp_from_vm(sp: u16) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(VM_MAC, GW_MAC)
        .ipv4(VM, [42, 0, 0, 2], 64)
        .udp(sp, 9)
        .write(&mut v, &[0u8; 18])
        .unwrap();
    v
}

fn tsc_ghz() -> f64 {
    let t0 = Instant::now();
    let c0 = brick_core::cycles();
    std::thread::sleep(Duration::from_millis(200));
    let c1 = brick_core::cycles();
    (c1 - c0) as f64 / t0.elapsed().as_nanos() as f64
}

/// Least TSC cycles per packet over `rounds` runs of `batch` (`n` packets each): the
/// minimum filters out other processes sharing the core.
fn min_cycles(name: &str, n: usize, rounds: usize, mut batch: impl FnMut()) {
    let mut best = u64::MAX;
    for _ in 0..rounds {
        let c0 = brick_core::cycles();
        batch();
        best = best.min(brick_core::cycles() - c0);
    }
    eprintln!("{name}: min {:.1} cycles/packet", best as f64 / n as f64);
}

fn established(c: &mut Criterion) {
    eprintln!("TSC: {:.3} GHz (cycles/packet = ns/packet x this)", tsc_ghz());
    let rules = CompiledRuleset::parse(
        "pass out all keep state\npass in proto tcp to any port 22\nblock in quick from 192.168.0.0/16\n",
    )
    .unwrap();
    let mut fw = Firewall::with_ruleset(FirewallConfig::default(), rules);
    // 32 established connections; the batch carries one packet each way for each.
    let mut batch = Vec::new();
    for i in 0..32u16 {
        let peer = [8, 8, (i >> 8) as u8, i as u8];
        let now = 1_000_000_000;
        fw.filter(&tcp(VM, peer, 10_000 + i, 443, 1, true, false, true), Direction::Out, now).unwrap();
        fw.filter(&tcp(peer, VM, 443, 10_000 + i, 1, true, true, false), Direction::In, now).unwrap();
        fw.filter(&tcp(VM, peer, 10_000 + i, 443, 2, false, true, true), Direction::Out, now).unwrap();
        batch.push((tcp(VM, peer, 10_000 + i, 443, 2, false, true, true), Direction::Out));
        batch.push((tcp(peer, VM, 443, 10_000 + i, 2, false, true, false), Direction::In));
    }
    min_cycles("established_fast_path", batch.len(), 2000, || {
        for (f, d) in &batch {
            black_box(fw.filter(black_box(f), *d, 2_000_000_000)).unwrap();
        }
    });
    let mut g = c.benchmark_group("firewall");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("established_fast_path", |b| {
        b.iter(|| {
            for (f, d) in &batch {
                black_box(fw.filter(black_box(f), *d, 2_000_000_000)).unwrap();
            }
        })
    });
    g.finish();
}

/// One established UDP flow, a whole burst of it in one direction: what a VM sending a stream
/// (or testpmd in the vhost-user comparison) gives each firewall.
fn one_flow_burst(c: &mut Criterion) {
    let rules = CompiledRuleset::parse("pass out all keep state\n").unwrap();
    let mut fw = Firewall::with_ruleset(FirewallConfig::default(), rules);
    fw.filter(&udp_from_vm(1024), Direction::Out, 1_000_000_000).unwrap();
    let batch: Vec<Vec<u8>> = (0..64).map(|_| udp_from_vm(1024)).collect();
    let run = |fw: &mut Firewall| {
        for f in &batch {
            black_box(fw.filter(black_box(f), Direction::Out, 2_000_000_000)).unwrap();
        }
    };
    min_cycles("one_flow_burst", batch.len(), 2000, || run(&mut fw));
    let mut g = c.benchmark_group("firewall");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("one_flow_burst", |b| b.iter(|| run(&mut fw)));
    g.finish();
}

/// Many established UDP flows, a burst of 64 frames of different flows, drawn at random: a
/// busy VM's table (up to the default 65,536 connections per NIC) no longer fits in the
/// cache, and each lookup waits for memory. The 64 frames are rewritten in place (their
/// source port) before each burst, as a vhost brick leaves them hot in the cache.
fn many_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("firewall_many_flows");
    g.throughput(Throughput::Elements(64));
    for flows in [1_024u32, 16_384, 60_000] {
        let rules = CompiledRuleset::parse("pass out all keep state\n").unwrap();
        let mut fw = Firewall::with_ruleset(FirewallConfig::default(), rules);
        let port = |i: u32| 1024 + i as u16;
        for i in 0..flows {
            fw.filter(&udp_from_vm(port(i)), Direction::Out, 1_000_000_000).unwrap();
        }
        let mut burst: Vec<Vec<u8>> = (0..64).map(|_| udp_from_vm(0)).collect();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut run = |fw: &mut Firewall| {
            for f in burst.iter_mut() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                // Ethernet 14 + IPv4 20: the UDP source port.
                f[34..36].copy_from_slice(&port((rng % u64::from(flows)) as u32).to_be_bytes());
            }
            for f in &burst {
                black_box(fw.filter(black_box(f), Direction::Out, 2_000_000_000)).unwrap();
            }
        };
        min_cycles(&format!("many_flows/{flows}"), 64, 2000, || run(&mut fw));
        g.bench_with_input(BenchmarkId::from_parameter(flows), &flows, |b, _| b.iter(|| run(&mut fw)));
    }
    g.finish();
}

/// The same as [`many_flows`], through the brick in a graph, a burst at a time (what the
/// daemon runs): prints the brick's own sampled cycles per frame over criterion's run, for
/// 1 and 4 flows too (a table that stays in the cache).
fn many_flows_burst(c: &mut Criterion) {
    use brick_core::bricks::RxTx;
    use brick_core::{Graph, PacketPool, Side, BURST_SIZE};
    let pool = PacketPool::with_count(4 * BURST_SIZE).unwrap();
    let mut g = c.benchmark_group("firewall_many_flows_burst");
    g.throughput(Throughput::Elements(BURST_SIZE as u64));
    for flows in [1u32, 4, 1_024, 16_384, 60_000] {
        let mut graph = Graph::new("fw");
        let net =
            graph.add("net", RxTx::new(Side::East, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
        let rules = CompiledRuleset::parse("pass out all keep state\n").unwrap();
        let fw = graph.add("fw", Firewall::with_ruleset(FirewallConfig::default(), rules)).unwrap();
        graph.link(net, fw).unwrap();
        let port = |i: u32| 1024 + i as u16;
        let mut frame = udp_from_vm(0);
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut burst = Burst::new();
        let mut run = |graph: &mut Graph, seq: Option<&mut u32>| {
            let mut seq = seq;
            while burst.room() > 0 {
                let i = match seq.as_deref_mut() {
                    Some(s) => {
                        *s += 1;
                        *s - 1
                    }
                    None => {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        (rng % u64::from(flows)) as u32
                    }
                };
                // Ethernet 14 + IPv4 20: the UDP source port.
                frame[34..36].copy_from_slice(&port(i).to_be_bytes());
                burst.push(pool.alloc_from(&frame).unwrap()).unwrap();
            }
            graph.inject(fw, Side::East, 0, &mut burst).unwrap();
        };
        // Every flow opens its connection once.
        let mut opened = 0;
        while opened < flows {
            run(&mut graph, Some(&mut opened));
        }
        let st = graph.stats(fw).unwrap();
        let (c0, p0) = (st.cycles.get(), st.cycle_pkts.get());
        g.bench_with_input(BenchmarkId::from_parameter(flows), &flows, |b, _| {
            b.iter(|| run(&mut graph, None))
        });
        let st = graph.stats(fw).unwrap();
        let passed = st.side(Side::West).pkts_out.get();
        assert!(passed >= u64::from(flows), "every flow opened and passed");
        eprintln!(
            "many_flows_burst/{flows}: {:.1} cycles/packet in the brick",
            (st.cycles.get() - c0) as f64 / (st.cycle_pkts.get() - p0).max(1) as f64
        );
    }
    g.finish();
}

fn rules_text(n: usize) -> String {
    // Security-group-like: half by source host, a quarter by destination port, a quarter by
    // source network with a port; plus a 10k-member table.
    let mut t = String::from("table <members> {");
    for i in 0..10_000u32 {
        t.push_str(&format!(" 172.16.{}.{},", i / 250, i % 250 + 1));
    }
    t.push_str(" }\npass in quick proto tcp from <members> to any port 443\n");
    for i in 0..n as u32 {
        match i % 4 {
            0 | 1 => t.push_str(&format!(
                "pass in proto tcp from 10.{}.{}.{} to any port 80\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )),
            2 => t.push_str(&format!("pass in proto udp to any port {}\n", 20_000 + i)),
            _ => t.push_str(&format!(
                "block in proto tcp from 11.{}.{}.0/24 port 1024:65535\n",
                (i >> 8) & 255,
                i & 255
            )),
        }
    }
    t
}

fn new_flow(c: &mut Criterion) {
    let mut g = c.benchmark_group("new_flow_lookup");
    for n in [1_000usize, 10_000] {
        let rules = CompiledRuleset::parse(&rules_text(n)).unwrap();
        let flows: Vec<Flow> = (0..64u32)
            .map(|i| {
                let x = i * 97 % n as u32;
                let mut f = Flow {
                    proto: PROTO_TCP,
                    src: (10u128 << 24) | x as u128,
                    dst: 0x2a000001,
                    sport: 40_000,
                    dport: 80,
                    tcp_flags: 2,
                    ..Flow::default()
                };
                match i % 4 {
                    1 => (f.proto, f.dport) = (PROTO_UDP, 20_000 + x as u16),
                    2 => (f.src, f.dport) = ((172 << 24 | 16 << 16 | (i as u128 % 40) << 8 | 7), 443),
                    3 => f.src = 0x0909_0909, // matches nothing: default policy
                    _ => {}
                }
                f
            })
            .collect();
        min_cycles(&format!("decide/{n}"), flows.len(), 2000, || {
            for f in &flows {
                black_box(rules.decide(Direction::In, black_box(f)));
            }
        });
        g.throughput(Throughput::Elements(flows.len() as u64));
        g.bench_with_input(BenchmarkId::new("decide", n), &flows, |b, flows| {
            b.iter(|| {
                for f in flows {
                    black_box(rules.decide(Direction::In, black_box(f)));
                }
            })
        });
        // The whole packet path for a new flow: parse, conntrack miss, rules, insert.
        let frames: Vec<Vec<u8>> = (0..64u32)
            .map(|i| tcp([10, 0, (i >> 6) as u8, (i * 4) as u8], VM, 40_000, 80, 1, true, false, false))
            .collect();
        let mut fw = Firewall::with_ruleset(
            FirewallConfig::default(),
            CompiledRuleset::parse(&rules_text(n)).unwrap(),
        );
        let mut now = 1u64;
        g.bench_with_input(BenchmarkId::new("firewall_new_syn", n), &frames, |b, frames| {
            b.iter(|| {
                // Each round starts after the previous connections expired and were collected.
                now += 100_000_000_000;
                fw.gc(brick_core::Timestamp(now));
                for f in frames {
                    black_box(fw.filter(black_box(f), Direction::In, now)).unwrap();
                }
            })
        });
    }
    g.finish();
}

fn antispoof(c: &mut Criterion) {
    let a = AntiSpoof::new(
        VM_MAC,
        &["42.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
        AntiSpoofOptions::default(),
    )
    .unwrap();
    let frames: Vec<Vec<u8>> =
        (0..64u16).map(|i| tcp(VM, [8, 8, 8, 8], 1000 + i, 443, 1, false, true, true)).collect();
    min_cycles("antispoof", frames.len(), 2000, || {
        for f in &frames {
            black_box(a.check(black_box(f))).unwrap();
        }
    });
    let mut g = c.benchmark_group("antispoof");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("ipv4_from_vm", |b| {
        b.iter(|| {
            for f in &frames {
                black_box(a.check(black_box(f))).unwrap();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, established, one_flow_burst, many_flows, many_flows_burst, new_flow, antispoof);
criterion_main!(benches);

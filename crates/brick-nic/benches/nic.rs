//! Per-packet costs of brick-nic's CPU-only paths (criterion): virtio-net header mapping,
//! software checksum completion, pcap replay through a graph.
//!
//! `cargo bench -p brick-nic --bench nic -- --warm-up-time 1 --measurement-time 3`

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, Meta, PacketPool, PoolConfig, Side};
use brick_nic::offload::{complete_checksum, locate_l4, VnetHdr, VnetMeta};
use brick_nic::{PcapLoop, PcapSource, PcapSourceConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn tcp_frame(len: usize) -> Vec<u8> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1234, 80, 7, 1000);
    let mut v = Vec::new();
    builder.write(&mut v, &vec![0x5a; len - 54]).unwrap();
    v
}

fn pcap_image(frame: &[u8], n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..n as u32 {
        v.extend_from_slice(&i.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        v.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        v.extend_from_slice(frame);
    }
    v
}

fn offload(c: &mut Criterion) {
    let frame = tcp_frame(1514);
    let mut g = c.benchmark_group("offload");
    g.throughput(Throughput::Elements(1));
    let hdr = VnetHdr {
        flags: 1,
        gso_type: 1,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
        num_buffers: 0,
    };
    let mut raw = [0u8; 10];
    hdr.write(&mut raw);
    g.bench_function("vnet_hdr_to_meta", |b| {
        b.iter(|| {
            let mut m = Meta::default();
            VnetHdr::parse(black_box(&raw)).unwrap().apply_to(&mut m, 1514).unwrap();
            black_box(m)
        })
    });
    let mut m = Meta::default();
    hdr.apply_to(&mut m, frame.len()).unwrap();
    g.bench_function("meta_to_vnet_hdr", |b| b.iter(|| VnetHdr::from_meta(black_box(&m), black_box(&frame))));
    g.bench_function("locate_l4", |b| b.iter(|| locate_l4(black_box(&frame))));
    let mut f = frame.clone();
    g.bench_function("complete_checksum_1514B", |b| b.iter(|| complete_checksum(black_box(&mut f), 34, 16)));
    g.finish();
}

fn pcap_replay(c: &mut Criterion) {
    let frame = tcp_frame(64);
    let image = pcap_image(&frame, 4096);
    let pool = PacketPool::new(PoolConfig { count: 1024, ..PoolConfig::default() }).unwrap();
    let cfg = PcapSourceConfig { loops: PcapLoop::Forever, ..Default::default() };
    let src = PcapSource::from_bytes(image, cfg, pool).unwrap();
    let mut graph = Graph::new("bench");
    let s = graph.add("src", src).unwrap();
    let k = graph.add("sink", RxTx::new(Side::West, |_: &mut Burst| {}, |b: &mut Burst| b.clear())).unwrap();
    graph.link(s, k).unwrap();
    let mut g = c.benchmark_group("pcap");
    g.throughput(Throughput::Elements(64));
    g.bench_function("replay_64B_burst", |b| b.iter(|| black_box(graph.poll_all())));
    g.finish();
}

criterion_group!(benches, offload, pcap_replay);
criterion_main!(benches);

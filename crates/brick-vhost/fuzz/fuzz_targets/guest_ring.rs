//! Guest-controlled input: the fuzzer's bytes become a descriptor table, avail ring entries
//! and buffer contents (virtio-net headers included); the device pops TX chains and pushes RX
//! packets. Nothing may panic or touch memory outside the guest map.
#![no_main]

use std::sync::{Arc, LazyLock};

use brick_core::{Packet, PacketPool, PoolConfig};

use brick_vhost::datapath::{rx_push, tx_pop, NetFeatures, RxScratch, TxPop};
use brick_vhost::ring::{GuestMap, SplitQueue};
use brick_vhost::testutil::GuestDriver;
use brick_vhost::wire::NetHdr;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// One pool for the whole run (a pool per input made the run's memory grow with every input).
static POOL: LazyLock<PacketPool> =
    LazyLock::new(|| PacketPool::new(PoolConfig { count: 16, headroom: 128, data_room: 2048 }).unwrap());

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let _ = NetHdr::parse(data);
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x2_0000)]).unwrap());
    let mut g = GuestDriver::new(&*mem, 16);
    let event_idx = data[1] & 1 == 1;
    let mut q = SplitQueue::new(GuestMap::new(Arc::clone(&mem)), g.layout(event_idx), 0, 0).unwrap();
    let acked = u64::from_le_bytes(data[..8].try_into().unwrap());
    let feat = NetFeatures::from_acked(acked);
    let rest = &data[8..];
    // 16 descriptors from the input, then its tail as buffer contents at 0x1_0000
    for i in 0..16u16 {
        let off = i as usize * 16;
        if off + 16 > rest.len() {
            break;
        }
        let d = &rest[off..off + 16];
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap()) % 0x3_0000;
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap()) % 0x4000;
        let flags = u16::from_le_bytes([d[12], d[13]]);
        let next = u16::from_le_bytes([d[14], d[15]]);
        g.write_desc(i, (addr, len, flags, next));
    }
    let tail = rest.get(256..).unwrap_or(&[]);
    let _ = mem.write_slice(&tail[..tail.len().min(0x1_0000)], GuestAddress(0x1_0000));
    let heads: Vec<u16> = rest.iter().take(8).map(|b| (*b as u16) % 20).collect();
    g.publish_heads(&heads);
    let pool = &*POOL;
    let mut scratch = RxScratch::default();
    let rx = data[0] & 1 == 1;
    for _ in 0..heads.len() {
        if rx {
            let mut p = Packet::from_slice(tail.get(..300).unwrap_or(tail));
            let _ = rx_push(&mut q, &mut p, &feat, &mut scratch);
        } else if let TxPop::Empty | TxPop::Broken = tx_pop(&mut q, pool, &feat) {
            break;
        }
    }
    q.publish_used();
    let _ = q.needs_interrupt();
    let _ = q.enable_kicks();
    assert_eq!(pool.available(), 16);
});

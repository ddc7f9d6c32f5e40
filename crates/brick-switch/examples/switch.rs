//! Three stations on a switch: the first frame floods, the answer is switched to one port.
//!
//! Run with `cargo run -p brick-switch --example switch`.

use std::sync::{Arc, Mutex};

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, MacFmt, Packet, PacketPool, Side, Timestamp};
use brick_switch::{Switch, SwitchConfig};

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, 0);
    f
}

fn main() {
    let pool = PacketPool::with_count(256).expect("pool");
    let mut g = Graph::new("example");
    let sw = g.add("switch", Switch::new(SwitchConfig::default(), pool).expect("config")).expect("add");
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut ports = Vec::new();
    for i in 0..3 {
        let l = Arc::clone(&log);
        let vm = RxTx::new(
            Side::West,
            |_: &mut Burst| {},
            move |b: &mut Burst| {
                for p in b.drain() {
                    l.lock().unwrap().push(format!("vm{i} got a frame from {}", src_mac(p.data())));
                }
            },
        );
        let id = g.add(format!("vm{i}"), vm).expect("add");
        ports.push(g.link(sw, id).expect("link").0);
    }
    let a = [2, 0, 0, 0, 0, 0xa];
    let b = [2, 0, 0, 0, 0, 0xb];
    let mut burst = Burst::new();
    burst.push(Packet::from_slice(&frame(b, a))).expect("room");
    g.inject(sw, Side::East, ports[0], &mut burst).expect("inject");
    println!("unknown destination:");
    for l in log.lock().unwrap().drain(..) {
        println!("  {l}");
    }
    burst.push(Packet::from_slice(&frame(a, b))).expect("room");
    g.inject(sw, Side::East, ports[1], &mut burst).expect("inject");
    println!("answer to a learnt station:");
    for l in log.lock().unwrap().drain(..) {
        println!("  {l}");
    }
    let s = g.brick::<Switch>(sw).expect("switch");
    for e in s.mac_entries(Timestamp::now()) {
        println!("  table: {} -> {:?} port {}", MacFmt(e.mac), e.value.side, e.value.port);
    }
}

/// The source MAC of an Ethernet frame, as aa:bb:cc:dd:ee:ff.
fn src_mac(frame: &[u8]) -> MacFmt {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[6..12]);
    MacFmt(m)
}

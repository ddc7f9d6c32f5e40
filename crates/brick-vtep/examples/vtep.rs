//! Two VTEPs back to back (IPv4 underlay), each with one VM on VNI 42: the first frame is
//! flooded to the VNI's multicast group, the answer comes back unicast to the learnt VTEP.
//!
//! Run with `cargo run -p brick-vtep --example vtep`.

use std::sync::{Arc, Mutex};

use brick_core::bricks::RxTx;
use brick_core::{Burst, Graph, MacFmt, Packet, PacketPool, Side, Timestamp};
use brick_vtep::{Vtep, VtepConfig};

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.resize(60, 0x42);
    f
}

fn main() {
    let pool = PacketPool::with_count(1024).expect("pool");
    let mut g = Graph::new("example");
    // Host A and host B, joined by a "wire" hub-less direct link through two RxTx taps.
    let vtep_a = g
        .add(
            "vtep-a",
            Vtep::new(VtepConfig::new("192.0.2.1".parse().unwrap(), [2, 0, 0, 0, 0, 0xa]), pool.clone())
                .unwrap(),
        )
        .unwrap();
    let vtep_b = g
        .add(
            "vtep-b",
            Vtep::new(VtepConfig::new("192.0.2.2".parse().unwrap(), [2, 0, 0, 0, 0, 0xb]), pool.clone())
                .unwrap(),
        )
        .unwrap();
    let wire_a: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let wire_b: Arc<Mutex<Vec<Packet>>> = Arc::default();
    let (wa, wb) = (Arc::clone(&wire_a), Arc::clone(&wire_b));
    let nic_a = g
        .add(
            "nic-a",
            RxTx::new(
                Side::East,
                |_: &mut Burst| {},
                move |b: &mut Burst| wa.lock().unwrap().extend(b.drain()),
            ),
        )
        .unwrap();
    let nic_b = g
        .add(
            "nic-b",
            RxTx::new(
                Side::East,
                |_: &mut Burst| {},
                move |b: &mut Burst| wb.lock().unwrap().extend(b.drain()),
            ),
        )
        .unwrap();
    g.link(nic_a, vtep_a).unwrap();
    g.link(nic_b, vtep_b).unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    for (name, vtep) in [("vm-a", vtep_a), ("vm-b", vtep_b)] {
        let l = Arc::clone(&log);
        let vm = g
            .add(
                name,
                RxTx::new(
                    Side::West,
                    |_: &mut Burst| {},
                    move |b: &mut Burst| {
                        for p in b.drain() {
                            l.lock().unwrap().push(format!(
                                "{name} received {} bytes from {}",
                                p.len(),
                                src_mac(p.data())
                            ));
                        }
                    },
                ),
            )
            .unwrap();
        let (port, _) = g.link(vtep, vm).unwrap();
        g.brick_mut::<Vtep>(vtep).unwrap().add_vni(42, port).unwrap();
    }
    g.poll_all(); // sends the IGMP joins
    wire_a.lock().unwrap().clear();
    wire_b.lock().unwrap().clear();

    // A cable: whatever one NIC sends, the other receives (multicast reaches everyone).
    let cable = |g: &mut Graph| {
        for (from, to) in [(&wire_a, vtep_b), (&wire_b, vtep_a)] {
            let mut b = Burst::new();
            for p in from.lock().unwrap().drain(..) {
                let _ = b.push(p);
            }
            if !b.is_empty() {
                g.inject(to, Side::West, 0, &mut b).unwrap();
            }
        }
    };

    let (a, b) = ([0x52, 0x54, 0, 0, 0, 0xa], [0x52, 0x54, 0, 0, 0, 0xb]);
    let mut burst = Burst::new();
    burst.push(Packet::from_slice(&frame([0xff; 6], a))).unwrap();
    let port_a = g.brick::<Vtep>(vtep_a).unwrap().port_of(42).unwrap();
    g.inject(vtep_a, Side::East, port_a, &mut burst).unwrap();
    println!("vm-a broadcasts; vtep-a sends {} frame(s) to 230.0.0.42", wire_a.lock().unwrap().len());
    cable(&mut g);
    burst.push(Packet::from_slice(&frame(a, b))).unwrap();
    let port_b = g.brick::<Vtep>(vtep_b).unwrap().port_of(42).unwrap();
    g.inject(vtep_b, Side::East, port_b, &mut burst).unwrap();
    let outer_dst = wire_b.lock().unwrap().first().map(|p| p.data()[30..34].to_vec());
    println!("vm-b answers; vtep-b sends it unicast to {outer_dst:?}");
    cable(&mut g);
    for l in log.lock().unwrap().iter() {
        println!("  {l}");
    }
    for e in g.brick::<Vtep>(vtep_b).unwrap().fdb(42, Timestamp::now()) {
        println!("  vtep-b FDB: {} behind {}", MacFmt(e.mac), e.value.ip);
    }
}

/// The source MAC of an Ethernet frame, as aa:bb:cc:dd:ee:ff.
fn src_mac(frame: &[u8]) -> MacFmt {
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[6..12]);
    MacFmt(m)
}

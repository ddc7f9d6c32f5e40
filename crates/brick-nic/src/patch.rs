//! [`Patch`]: joins two bricks that both have their port on the east side (two NICs).

use brick_core::{Brick, Burst, Output, PortId, Side};

/// A patch cable between two NIC bricks: both link to its **west** side (ports 0 and 1);
/// what enters one port leaves the other, untouched. Useful to bridge two interfaces, and for
/// forwarding benchmarks (testpmd's io mode). A packet arriving while the other port is not
/// linked is dropped as "unlinked port" by the graph.
#[derive(Debug, Default, Clone, Copy)]
pub struct Patch;

impl Brick for Patch {
    fn kind(&self) -> &'static str {
        "patch"
    }

    fn max_ports(&self, side: Side) -> usize {
        if side == Side::West {
            2
        } else {
            0
        }
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        out.emit_all(side, 1 - port.min(1), pkts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::bricks::RxTx;
    use brick_core::{Graph, Packet};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn forwards_between_its_two_ports() {
        let mut g = Graph::new("patch");
        let seen = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
        let mut ids = Vec::new();
        for (i, s) in seen.iter().enumerate() {
            let s = Arc::clone(s);
            let fill = i as u8;
            let b = RxTx::new(
                Side::East,
                move |b: &mut Burst| {
                    let _ = b.push(Packet::from_slice(&[fill; 60]));
                },
                move |b: &mut Burst| {
                    for p in b.drain() {
                        assert_ne!(p.data()[0], fill, "came back to its sender");
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                },
            );
            ids.push(g.add(format!("nic{i}"), b).unwrap());
        }
        let p = g.add("patch", Patch).unwrap();
        g.link(ids[0], p).unwrap();
        g.link(ids[1], p).unwrap();
        g.poll_all();
        assert_eq!(seen[0].load(Ordering::Relaxed), 1);
        assert_eq!(seen[1].load(Ordering::Relaxed), 1);
    }
}

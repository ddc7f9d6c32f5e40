use crate::{Brick, Burst, Output, PacketPool, PortId, Side};

/// Repeats every packet to every linked port of both sides except the one it came in on.
/// Copies come from the hub's pool; when it runs dry the copy is counted as dropped.
pub struct Hub {
    pool: PacketPool,
    targets: Vec<(Side, PortId)>,
}

impl Hub {
    /// A hub taking its copies from `pool`.
    pub fn new(pool: PacketPool) -> Self {
        Hub { pool, targets: Vec::new() }
    }
}

impl Brick for Hub {
    fn kind(&self) -> &'static str {
        "hub"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        &["pool empty", "no other port"]
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        self.targets.clear();
        for s in Side::BOTH {
            for p in out.linked_ports(s) {
                if (s, p) != (side, port) {
                    self.targets.push((s, p));
                }
            }
        }
        for pkt in pkts.drain() {
            let Some((&last, rest)) = self.targets.split_last() else {
                out.drop(pkt, 1);
                continue;
            };
            for &(s, p) in rest {
                match pkt.copy_into(&self.pool) {
                    Some(copy) => out.emit(s, p, copy),
                    None => out.count_drop(0, 1),
                }
            }
            out.emit(last.0, last.1, pkt);
        }
    }
}

use crate::{Brick, Burst, Output, PortId, Side};

/// Forwards everything from port 0 of one side to port 0 of the other, untouched. The
/// cheapest possible brick: its cost is the graph's per-hop overhead.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nop;

impl Brick for Nop {
    fn kind(&self) -> &'static str {
        "nop"
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    #[inline]
    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        out.emit_all(side.opposite(), 0, pkts);
    }
}

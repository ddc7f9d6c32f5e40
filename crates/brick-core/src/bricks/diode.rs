use crate::{Brick, Burst, Output, PortId, Side};

/// Lets packets through in one direction only; those going the other way are dropped and
/// counted ("wrong direction").
#[derive(Debug, Clone, Copy)]
pub struct Diode {
    pass_from: Side,
}

impl Diode {
    /// A diode passing packets that arrive on `from` towards the opposite side.
    pub fn new(from: Side) -> Self {
        Diode { pass_from: from }
    }
}

impl Brick for Diode {
    fn kind(&self) -> &'static str {
        "diode"
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        &["wrong direction"]
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if side == self.pass_from {
            out.emit_all(side.opposite(), 0, pkts);
        } else {
            for p in pkts.drain() {
                out.drop(p, 0);
            }
        }
    }
}

use crate::{Brick, Burst, Output, Packet, PortId, Side};

/// A two-port brick whose verdict is a user closure: `filter(side, &mut packet)` returns
/// whether the packet (arrived on `side`) goes on to the opposite side. Rejected packets are
/// counted ("filtered").
pub struct UserDipole<F> {
    filter: F,
}

impl<F> UserDipole<F>
where
    F: FnMut(Side, &mut Packet) -> bool + Send + 'static,
{
    /// Wraps `filter`.
    pub fn new(filter: F) -> Self {
        UserDipole { filter }
    }
}

impl<F> Brick for UserDipole<F>
where
    F: FnMut(Side, &mut Packet) -> bool + Send + 'static,
{
    fn kind(&self) -> &'static str {
        "user-dipole"
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        &["filtered"]
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for mut pkt in pkts.drain() {
            if (self.filter)(side, &mut pkt) {
                out.emit(side.opposite(), 0, pkt);
            } else {
                out.drop(pkt, 0);
            }
        }
    }
}

use crate::{Brick, Burst, Output, PortId, Side};

/// A source and sink made of two user closures, on port 0 of one side.
///
/// `rx(&mut Burst)` is called at each poll to fill the burst with packets to inject (it may
/// push up to its room); `tx(&mut Burst)` receives the packets that reach the brick and must
/// take them (anything left is dropped and counted).
pub struct RxTx<R, T> {
    rx: R,
    tx: T,
    side: Side,
    burst: Burst,
}

impl<R, T> RxTx<R, T>
where
    R: FnMut(&mut Burst) + Send + 'static,
    T: FnMut(&mut Burst) + Send + 'static,
{
    /// A brick on port 0 of `side` that injects with `rx` and receives with `tx`.
    pub fn new(side: Side, rx: R, tx: T) -> Self {
        RxTx { rx, tx, side, burst: Burst::new() }
    }
}

impl<R, T> Brick for RxTx<R, T>
where
    R: FnMut(&mut Burst) + Send + 'static,
    T: FnMut(&mut Burst) + Send + 'static,
{
    fn kind(&self) -> &'static str {
        "rxtx"
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == self.side)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, _out: &mut Output<'_>) {
        (self.tx)(pkts);
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        (self.rx)(&mut self.burst);
        let n = self.burst.len();
        out.emit_all(self.side, 0, &mut self.burst);
        n
    }
}

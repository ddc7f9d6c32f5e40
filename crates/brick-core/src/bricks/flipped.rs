use std::os::fd::RawFd;

use crate::{Brick, Burst, Output, PortId, Side, Timestamp};

/// Mounts a brick backwards: its west side becomes east and vice versa.
///
/// NIC-like bricks put their port on the east side (they sit at the west end of a chain, the
/// physical network). The same brick at the *east* end (a TAP that is a VM's NIC) needs its
/// port on the west side: wrap it in `Flipped`. Reach the inner brick with
/// [`inner`](Self::inner) / [`inner_mut`](Self::inner_mut).
pub struct Flipped<B> {
    inner: B,
}

impl<B: Brick> Flipped<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Flipped { inner }
    }

    /// The wrapped brick.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The wrapped brick, writable.
    pub fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// Unwraps.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Brick> Brick for Flipped<B> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        self.inner.drop_reasons()
    }

    fn max_ports(&self, side: Side) -> usize {
        self.inner.max_ports(side.opposite())
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        out.flip();
        self.inner.process(side.opposite(), port, pkts, out);
        out.flip();
    }

    fn is_source(&self) -> bool {
        self.inner.is_source()
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        out.flip();
        let n = self.inner.poll(out);
        out.flip();
        n
    }

    fn wake_fd(&self) -> Option<RawFd> {
        self.inner.wake_fd()
    }

    fn tick(&mut self, now: Timestamp) {
        self.inner.tick(now)
    }

    fn on_link(&mut self, side: Side, port: PortId) {
        self.inner.on_link(side.opposite(), port)
    }

    fn on_unlink(&mut self, side: Side, port: PortId) {
        self.inner.on_unlink(side.opposite(), port)
    }

    fn describe(&self) -> Vec<String> {
        self.inner.describe()
    }
}

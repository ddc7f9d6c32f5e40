//! Counters shared by every NIC brick, and the drop reasons they all use.
//!
//! The graph already counts packets and bytes in and out of each side of every brick
//! ([`brick_core::BrickStats`]). A NIC brick adds what only it can see: what really reached
//! the wire or the kernel, what the kernel or the port dropped before the brick could see it,
//! and why the brick itself dropped packets. Every backend fills the same [`NicCounters`], so
//! the daemon reports them the same way whatever the backend.

use std::sync::Arc;

use brick_core::Counter;

brick_core::drop_reasons! {
    /// Why a NIC brick dropped a frame. `NAMES` ([`DROP_REASONS`]) is every NIC brick's
    /// `Brick::drop_reasons`; each reason is mirrored in one [`NicCounters`] field
    /// ([`NicCounters::counter`]).
    pub enum NicDrop {
        /// A received frame was lost because the packet pool had no free buffer.
        RxPoolEmpty => "rx pool empty",
        /// A received frame was cut short (bigger than the ring frame or the capture's snap
        /// length).
        RxTruncated => "rx truncated",
        /// A read from the device failed, or a capture file is corrupt.
        RxError => "rx error",
        /// A frame is larger than the device (MTU, ring frame) or the pool's buffers accept.
        TooBig => "too big",
        /// The transmit ring, queue or socket buffer was full.
        TxRingFull => "tx ring full",
        /// The device refused the frame or the write failed.
        TxError => "tx error",
        /// Offload metadata (virtio-net header, checksum or GSO fields) is inconsistent with
        /// the frame.
        BadOffload => "bad offload",
    }
}

/// Drop reasons of every NIC brick, in [`NicDrop`] order.
pub const DROP_REASONS: &[&str] = NicDrop::NAMES;

/// Counters of one NIC brick. Written by the thread that runs the brick's graph, readable
/// from any thread through the `Arc` returned by each brick's `counters()` method.
#[derive(Debug, Default)]
pub struct NicCounters {
    /// Frames received from the device and handed to the graph.
    pub rx_packets: Counter,
    /// Bytes of those frames.
    pub rx_bytes: Counter,
    /// Frames handed to the device for transmission.
    pub tx_packets: Counter,
    /// Bytes of those frames.
    pub tx_bytes: Counter,
    /// Frames the kernel (AF_PACKET ring overrun) or the port (DPDK `imissed` + `rx_nombuf`)
    /// dropped before the brick could see them.
    pub kernel_drops: Counter,
    /// Times the AF_PACKET receive queue was frozen because the ring was full.
    pub kernel_freezes: Counter,
    /// Received frames lost because the packet pool was empty.
    pub rx_pool_empty: Counter,
    /// Received frames dropped because they were cut short.
    pub rx_truncated: Counter,
    /// Read errors / corrupt input.
    pub rx_errors: Counter,
    /// Frames dropped because they were too big (either direction).
    pub too_big: Counter,
    /// Frames dropped because the transmit ring/queue was full.
    pub tx_ring_full: Counter,
    /// Frames the device refused.
    pub tx_errors: Counter,
    /// Frames dropped for inconsistent offload metadata (either direction).
    pub bad_offload: Counter,
    /// Received frames that carried checksum or segmentation offload metadata.
    pub rx_offloaded: Counter,
    /// Super-frames (GSO metadata, UDP-tunnel ones included) received whole.
    pub rx_gso: Counter,
    /// Super-frames handed whole to the device (it or the kernel segments them).
    pub tx_gso: Counter,
    /// Segments merged into super-frames on transmit (TAP `coalesce`).
    pub tx_coalesced: Counter,
    /// Segments made in software from super-frames the device cannot take whole (DPDK).
    pub tx_segmented: Counter,
    /// Frames sent with their TCP/UDP checksum left to the device (DPDK).
    pub tx_csum_offloaded: Counter,
    /// Frames copied into a fresh mbuf to be sent, not already in one (DPDK): a VM's frame
    /// copied into a lent mbuf (`DpdkNic::lent_buffers`) is not.
    pub tx_copied: Counter,
}

/// A plain copy of [`NicCounters`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// See [`NicCounters::rx_packets`].
    pub rx_packets: u64,
    /// See [`NicCounters::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`NicCounters::tx_packets`].
    pub tx_packets: u64,
    /// See [`NicCounters::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`NicCounters::kernel_drops`].
    pub kernel_drops: u64,
    /// See [`NicCounters::kernel_freezes`].
    pub kernel_freezes: u64,
    /// See [`NicCounters::rx_pool_empty`].
    pub rx_pool_empty: u64,
    /// See [`NicCounters::rx_truncated`].
    pub rx_truncated: u64,
    /// See [`NicCounters::rx_errors`].
    pub rx_errors: u64,
    /// See [`NicCounters::too_big`].
    pub too_big: u64,
    /// See [`NicCounters::tx_ring_full`].
    pub tx_ring_full: u64,
    /// See [`NicCounters::tx_errors`].
    pub tx_errors: u64,
    /// See [`NicCounters::bad_offload`].
    pub bad_offload: u64,
    /// See [`NicCounters::rx_offloaded`].
    pub rx_offloaded: u64,
    /// See [`NicCounters::rx_gso`].
    pub rx_gso: u64,
    /// See [`NicCounters::tx_gso`].
    pub tx_gso: u64,
    /// See [`NicCounters::tx_coalesced`].
    pub tx_coalesced: u64,
    /// See [`NicCounters::tx_segmented`].
    pub tx_segmented: u64,
    /// See [`NicCounters::tx_csum_offloaded`].
    pub tx_csum_offloaded: u64,
    /// See [`NicCounters::tx_copied`].
    pub tx_copied: u64,
}

impl NicCounters {
    /// A fresh, shareable set of counters.
    pub fn new_shared() -> Arc<NicCounters> {
        Arc::new(NicCounters::default())
    }

    /// The counter that mirrors drops for `reason`.
    pub fn counter(&self, reason: NicDrop) -> &Counter {
        match reason {
            NicDrop::RxPoolEmpty => &self.rx_pool_empty,
            NicDrop::RxTruncated => &self.rx_truncated,
            NicDrop::RxError => &self.rx_errors,
            NicDrop::TooBig => &self.too_big,
            NicDrop::TxRingFull => &self.tx_ring_full,
            NicDrop::TxError => &self.tx_errors,
            NicDrop::BadOffload => &self.bad_offload,
        }
    }

    /// The counter matching a drop reason index of [`DROP_REASONS`], `None` past the end.
    pub fn for_drop(&self, reason: usize) -> Option<&Counter> {
        NicDrop::ALL.get(reason).map(|&r| self.counter(r))
    }

    /// Current values.
    pub fn snapshot(&self) -> NicStats {
        NicStats {
            rx_packets: self.rx_packets.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_packets: self.tx_packets.get(),
            tx_bytes: self.tx_bytes.get(),
            kernel_drops: self.kernel_drops.get(),
            kernel_freezes: self.kernel_freezes.get(),
            rx_pool_empty: self.rx_pool_empty.get(),
            rx_truncated: self.rx_truncated.get(),
            rx_errors: self.rx_errors.get(),
            too_big: self.too_big.get(),
            tx_ring_full: self.tx_ring_full.get(),
            tx_errors: self.tx_errors.get(),
            bad_offload: self.bad_offload.get(),
            rx_offloaded: self.rx_offloaded.get(),
            rx_gso: self.rx_gso.get(),
            tx_gso: self.tx_gso.get(),
            tx_coalesced: self.tx_coalesced.get(),
            tx_segmented: self.tx_segmented.get(),
            tx_csum_offloaded: self.tx_csum_offloaded.get(),
            tx_copied: self.tx_copied.get(),
        }
    }
}

impl NicStats {
    /// Every drop the brick made itself (not the kernel's).
    pub fn brick_drops(&self) -> u64 {
        self.rx_pool_empty
            + self.rx_truncated
            + self.rx_errors
            + self.too_big
            + self.tx_ring_full
            + self.tx_errors
            + self.bad_offload
    }
}

/// Drops `pkt` in the graph under `reason` and mirrors the drop in `counters`.
#[inline]
pub(crate) fn drop_pkt(
    counters: &NicCounters,
    out: &mut brick_core::Output<'_>,
    pkt: brick_core::Packet,
    reason: NicDrop,
) {
    counters.counter(reason).add(1);
    out.drop(pkt, reason.index());
}

/// Counts `n` drops of packets the brick does not hold (for example frames skipped in a ring
/// because the pool was empty).
#[inline]
pub(crate) fn count_drop(counters: &NicCounters, out: &mut brick_core::Output<'_>, reason: NicDrop, n: u64) {
    counters.counter(reason).add(n);
    out.count_drop(reason.index(), n);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_counter() {
        let c = NicCounters::default();
        for (i, _) in DROP_REASONS.iter().enumerate() {
            c.for_drop(i).expect("counter").add(1);
        }
        assert!(c.for_drop(DROP_REASONS.len()).is_none());
        let s = c.snapshot();
        assert_eq!(s.brick_drops(), DROP_REASONS.len() as u64);
        assert_eq!(s.rx_packets, 0);
    }

    /// The counter table matches the enum: each reason has its own counter, named alike.
    #[test]
    fn each_reason_counts_in_its_own_field() {
        assert_eq!(NicDrop::NAMES, DROP_REASONS);
        let field = |s: &NicStats| -> [u64; 7] {
            [
                s.rx_pool_empty,
                s.rx_truncated,
                s.rx_errors,
                s.too_big,
                s.tx_ring_full,
                s.tx_errors,
                s.bad_offload,
            ]
        };
        for (i, &r) in NicDrop::ALL.iter().enumerate() {
            let c = NicCounters::default();
            c.counter(r).add(1);
            let s = c.snapshot();
            assert_eq!(s.brick_drops(), 1, "{}", r.text());
            let mut want = [0; 7];
            want[i] = 1;
            assert_eq!(field(&s), want, "{} counts in its own field", r.text());
        }
    }
}

//! TAP brick: a kernel TAP device created or attached by name, with the virtio-net header
//! (IFF_VNET_HDR) carrying checksum and segmentation offloads, and several queues
//! (IFF_MULTI_QUEUE).
//!
//! This file holds the configuration, the brick and its [`Brick`] impl; opening the device
//! is in `open.rs`, the RX/TX datapath in `datapath.rs`, the offload flags in `offloads.rs`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use brick_core::gso::{merge_header, TcpSegment};
use brick_core::{Brick, Burst, GsoType, OffloadFlags, Output, Packet, PacketPool, PortId, Side, BURST_SIZE};

use crate::counters::*;
use crate::offload::{
    complete_checksum, guess_l2_l3, parse_vnet, VnetHdr, VnetMeta, VnetTunnel, VNET_HDR_LEN, VNET_HDR_TNL_LEN,
};
use crate::sys;
use crate::NicError;

/// Configuration of a [`TapNic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Number of queues (1 = single queue; more uses IFF_MULTI_QUEUE, at most 256).
    pub queues: u16,
    /// Prefix frames with a virtio-net header so offload metadata crosses (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// Offloads the kernel may use towards the brick (needs `vnet_hdr`).
    pub offloads: TapOffloads,
    /// Software GRO on transmit (needs `vnet_hdr`): consecutive TCP segments of one flow in a
    /// burst are written as one super-frame with GSO metadata (one `writev` gathering their
    /// payloads, no copy), so the kernel behind the TAP (a VM) handles one 64 KiB frame
    /// instead of dozens. Segments are checked first (TCP checksum unless already verified).
    pub coalesce: bool,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig { queues: 1, vnet_hdr: true, offloads: TapOffloads::default(), coalesce: false }
    }
}

/// One queue (one file descriptor of the TAP device).
struct TapQueue {
    fd: OwnedFd,
}

/// A brick on a TAP device.
///
/// `poll` reads up to 64 frames per queue (one `readv` each) into pool packets and emits
/// them east; `process` writes each packet with one `writev`. With `vnet_hdr`, the
/// virtio-net header maps to [`Meta`](brick_core::Meta)'s offload fields both ways
/// (see [`crate::offload`]); without it, partial checksums are completed in software before
/// writing and super-frames are dropped as "too big".
pub struct TapNic {
    name: String,
    queues: Vec<TapQueue>,
    cfg: TapConfig,
    pool: PacketPool,
    counters: Arc<NicCounters>,
    epoll: Option<OwnedFd>,
    tx_rr: usize,
    /// Scratch for coalescing: the burst being sent, and one run of segments.
    held: Vec<Packet>,
    run: Vec<Packet>,
}

mod datapath;
mod offloads;
mod open;

pub use offloads::TapOffloads;

impl TapNic {
    /// The device name (the kernel's choice when created with `%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of queues this brick owns.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The configuration in use.
    pub fn config(&self) -> &TapConfig {
        &self.cfg
    }

    /// The brick's counters.
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }
}

impl Brick for TapNic {
    fn kind(&self) -> &'static str {
        "tap"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::East)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if self.cfg.coalesce && self.cfg.vnet_hdr && pkts.len() > 1 {
            return self.tx_coalescing(pkts, out);
        }
        for pkt in pkts.drain() {
            self.tx_one(pkt, out);
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        let nq = self.queues.len();
        let mut n = 0;
        for i in 0..nq {
            // Rotate the starting queue so no queue starves the others.
            let qi = (self.tx_rr + i) % nq;
            n += self.rx_queue(qi, out);
        }
        self.tx_rr = (self.tx_rr + 1) % nq;
        n
    }

    fn wake_fd(&self) -> Option<RawFd> {
        match &self.epoll {
            Some(ep) => Some(ep.as_raw_fd()),
            None => self.queues.first().map(|q| q.fd.as_raw_fd()),
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = self.counters.snapshot();
        vec![format!(
            "tap:{} queues:{} rx:{}p/{}B tx:{}p/{}B gso rx:{} tx:{} coalesced:{}",
            self.name,
            self.queues.len(),
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.rx_gso,
            s.tx_gso,
            s.tx_coalesced
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PacketPool {
        PacketPool::with_count(8).unwrap()
    }

    #[test]
    fn bad_configs_are_refused() {
        let cfg = TapConfig { queues: 0, ..TapConfig::default() };
        assert!(matches!(TapNic::create("bnt-cfg0", cfg, pool()), Err(NicError::Config(_))));
        let cfg = TapConfig { vnet_hdr: false, offloads: TapOffloads::ALL, ..TapConfig::default() };
        assert!(matches!(TapNic::create("bnt-cfg1", cfg, pool()), Err(NicError::Config(_))));
        assert!(matches!(
            TapNic::create("", TapConfig::default(), pool()),
            Err(NicError::InvalidName { .. })
        ));
        assert!(matches!(
            TapNic::attach("bnt-none-x", TapConfig::default(), pool()),
            Err(NicError::NoSuchInterface(_))
        ));
        assert!(matches!(
            TapNic::create("lo", TapConfig::default(), pool()),
            Err(NicError::AlreadyExists(_))
        ));
    }

    #[test]
    fn create_attach_and_split() {
        let cfg = TapConfig { queues: 3, offloads: TapOffloads::ALL, ..TapConfig::default() };
        let tap = TapNic::create("bnt-unit%d", cfg.clone(), pool()).unwrap();
        assert!(tap.name().starts_with("bnt-unit"));
        assert!(sys::interface_exists(tap.name()));
        assert_eq!(tap.queue_count(), 3);
        let wake = tap.wake_fd().unwrap();
        assert!(tap.queues.iter().all(|q| q.fd.as_raw_fd() != wake), "multiqueue wakes through epoll");
        // The same name cannot be created twice.
        assert!(matches!(TapNic::create(tap.name(), cfg.clone(), pool()), Err(NicError::AlreadyExists(_))));
        let name = tap.name().to_string();
        let parts = tap.into_queues();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.queue_count() == 1 && p.name() == name));
        drop(parts);
        assert!(!sys::interface_exists(&name), "non-persistent tap goes away with its queues");
    }

    #[test]
    fn tx_queue_hash_is_stable_and_in_range() {
        let cfg = TapConfig { queues: 4, ..TapConfig::default() };
        let tap = TapNic::create("bnt-hash%d", cfg, pool()).unwrap();
        let frame = [7u8; 64];
        let q = tap.tx_queue_for(&frame);
        assert!(q < 4);
        assert_eq!(q, tap.tx_queue_for(&frame));
        assert!(tap.tx_queue_for(&[1, 2, 3]) < 4);
    }
}

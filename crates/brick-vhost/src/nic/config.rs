//! What a vhost-user NIC is created with: its configuration, the offloads offered to the
//! guest, and the virtio feature bits they become.

use super::*;

/// Offloads offered to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offloads {
    /// CSUM + GUEST_CSUM: partial checksums travel as `OffloadFlags::CSUM_NEEDED` metadata;
    /// a guest without GUEST_CSUM gets them completed in software.
    pub csum: bool,
    /// HOST_TSO4/6 + GUEST_TSO4/6 (needs `csum`): super-frames up to 64 KiB travel with
    /// `gso_size`/`gso_type` metadata. The pool's data room must be at least
    /// [`TSO_DATA_ROOM`].
    pub tso: bool,
}

impl Default for Offloads {
    fn default() -> Self {
        Offloads { csum: true, tso: false }
    }
}

/// Pool data room needed for TSO super-frames (64 KiB plus Ethernet/VLAN headers).
pub const TSO_DATA_ROOM: usize = 65536 + 32;

/// Configuration of a [`VhostUserNic`].
#[derive(Clone, Debug)]
pub struct VhostUserConfig {
    /// Name (thread names, logs).
    pub name: String,
    /// The guest's MAC address (config space and [`VhostUserNic::mac`]); QEMU's own
    /// `-device virtio-net-pci,mac=` is what the guest sees with QEMU.
    pub mac: [u8; 6],
    /// Queue pairs offered (1 = no MQ). At most 8.
    pub queue_pairs: u16,
    /// Graph threads serving the device, 1 to `queue_pairs`: thread `t` polls and fills the
    /// queue pairs `p` with `p % threads == t`. The constructors return thread 0's brick;
    /// [`VhostUserNic::take_siblings`] gives the others, each to be run in its own graph.
    pub threads: u16,
    /// Offloads offered.
    pub offloads: Offloads,
    /// Offer MRG_RXBUF (mergeable RX buffers).
    pub mrg_rxbuf: bool,
    /// Offer EVENT_IDX (notification suppression).
    pub event_idx: bool,
    /// Pool the guest's TX frames are copied into.
    pub pool: PacketPool,
    /// Smaller buffers than `pool`'s, for the guest's TX frames of one descriptor that fit
    /// them: with TSO, `pool` holds 64 KiB buffers for super-frames, and small frames are
    /// better in small buffers (the same few, warm in the thread's pool cache). `None`:
    /// `pool` only.
    pub small_pool: Option<PacketPool>,
    /// Buffers the guest's small TX frames (one descriptor, within their data room) are
    /// copied into instead of `pool`: the mbufs of a DPDK underlay, which then sends them
    /// without copying them again. `None`: `pool` only.
    pub lent: Option<LentBuffers>,
    /// Client mode: delay between reconnection attempts.
    pub reconnect_interval: Duration,
    /// The MTU the guest should use, offered with VIRTIO_NET_F_MTU (`None`: not offered).
    pub mtu: Option<u16>,
}

impl VhostUserConfig {
    /// Defaults: 1 queue pair, checksum offload, MRG_RXBUF, EVENT_IDX, reconnect every 1 s.
    pub fn new(name: impl Into<String>, mac: [u8; 6], pool: PacketPool) -> Self {
        VhostUserConfig {
            name: name.into(),
            mac,
            queue_pairs: 1,
            threads: 1,
            offloads: Offloads::default(),
            mrg_rxbuf: true,
            event_idx: true,
            pool,
            small_pool: None,
            lent: None,
            reconnect_interval: Duration::from_secs(1),
            mtu: None,
        }
    }

    pub(super) fn features(&self) -> u64 {
        let f = device_features(
            self.offloads.csum,
            self.offloads.tso,
            self.mrg_rxbuf,
            self.event_idx,
            self.queue_pairs > 1,
        );
        if self.mtu.is_some() {
            f | crate::wire::feature::MTU
        } else {
            f
        }
    }
}

#[cfg(test)]
mod mtu_tests {
    use super::*;

    #[test]
    fn an_mtu_is_offered_with_virtio_net_f_mtu_only_when_set() {
        let pool = PacketPool::new(brick_core::PoolConfig { count: 8, ..Default::default() }).unwrap();
        let mut cfg = VhostUserConfig::new("t", [2, 0, 0, 0, 0, 1], pool);
        assert_eq!(cfg.features() & crate::wire::feature::MTU, 0);
        cfg.mtu = Some(1450);
        assert_ne!(cfg.features() & crate::wire::feature::MTU, 0);
    }
}

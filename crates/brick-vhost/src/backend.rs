//! The `vhost-user-backend` side: what the rust-vmm daemon threads run (protocol handling,
//! memory table, vring setup). They never touch packets; they publish the vrings of the
//! current connection and ring the brick's doorbell when the guest kicks.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use brick_core::{Counter, Waker};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};

use crate::wire::feature;

/// Guest memory as the daemon maps it.
pub(crate) type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;
/// The vring type shared between the daemon threads and the graph thread.
pub(crate) type Vring = VringRwLock<Mem>;

/// Largest ring the backend accepts (QEMU's rx/tx_queue_size go up to 1024).
pub const MAX_QUEUE_SIZE: usize = 1024;

/// State of one frontend connection, shared with the graph thread.
pub(crate) struct Conn {
    pub(crate) mem: Mem,
    pub(crate) vrings: OnceLock<Vec<Vring>>,
    pub(crate) acked: AtomicU64,
}

/// Counters and state of one NIC, readable from any thread. Packet counters are written by
/// the graph thread only; connection counters by the control thread only.
#[derive(Debug, Default)]
pub struct NicStats {
    /// Packets written into guest RX buffers.
    pub rx_packets: Counter,
    /// Bytes written into guest RX buffers (frames, without the virtio-net header).
    pub rx_bytes: Counter,
    /// Frames taken from guest TX chains and sent into the graph.
    pub tx_packets: Counter,
    /// Bytes of those frames.
    pub tx_bytes: Counter,
    /// Interrupts (call eventfd writes) sent to the guest.
    pub guest_notifications: Counter,
    /// Times the graph thread found its doorbell rung (guest kicks, coalesced).
    pub wakeups: Counter,
    /// Times a TX chain stayed in the ring because the packet pool was empty.
    pub pool_empty: Counter,
    /// Drops, indexed like [`DROP_REASONS`](crate::DROP_REASONS).
    pub drops: [Counter; crate::DROP_REASONS.len()],
    /// Whether a frontend is connected now.
    pub connected: AtomicBool,
    /// Connections accepted (server) or established (client) so far.
    pub connections: AtomicU64,
    /// Connections that ended.
    pub disconnections: AtomicU64,
    /// Early SET_VRING_ENABLE messages held back for QEMU ≤ 7.2 (see the proxy module).
    pub early_enables_held: AtomicU64,
    /// Feature bits the driver acked on the current connection (0 when none).
    pub acked_features: AtomicU64,
}

impl NicStats {
    /// Drops counted under `reason` (an index into [`DROP_REASONS`](crate::DROP_REASONS)).
    pub fn drop_count(&self, reason: usize) -> u64 {
        self.drops.get(reason).map_or(0, Counter::get)
    }
}

/// What a NIC shares between its control thread, the daemon threads and the brick.
pub(crate) struct Shared {
    pub(crate) waker: Waker,
    pub(crate) wake_pending: AtomicBool,
    pub(crate) generation: AtomicU64,
    pub(crate) slot: Mutex<Option<Arc<Conn>>>,
    pub(crate) stats: Arc<NicStats>,
}

impl Shared {
    pub(crate) fn new() -> io::Result<Self> {
        Ok(Shared {
            waker: Waker::new()?,
            wake_pending: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            slot: Mutex::new(None),
            stats: Arc::new(NicStats::default()),
        })
    }

    /// Rings the brick's doorbell (once until the brick answers it).
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Makes `conn` the current connection (or none) for the graph thread.
    pub(crate) fn publish(&self, conn: Option<Arc<Conn>>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = conn;
        self.generation.fetch_add(1, Ordering::Release);
        self.wake();
    }
}

/// Device settings the backend advertises.
#[derive(Clone, Debug)]
pub(crate) struct DeviceSpec {
    pub(crate) queue_pairs: u16,
    pub(crate) features: u64,
    pub(crate) mac: [u8; 6],
}

/// The `VhostUserBackend` of one connection.
#[derive(Clone)]
pub(crate) struct NetBackend {
    pub(crate) spec: DeviceSpec,
    pub(crate) conn: Arc<Conn>,
    pub(crate) shared: Arc<Shared>,
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        2 * self.spec.queue_pairs as usize
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        self.spec.features
    }

    fn acked_features(&self, features: u64) {
        self.conn.acked.store(features, Ordering::Release);
        self.shared.stats.acked_features.store(features, Ordering::Relaxed);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut p = VhostUserProtocolFeatures::REPLY_ACK;
        if self.spec.queue_pairs > 1 {
            p |= VhostUserProtocolFeatures::MQ;
        }
        p
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        // struct virtio_net_config { mac[6], status u16, max_virtqueue_pairs u16, mtu u16 }
        let mut cfg = [0u8; 12];
        cfg[0..6].copy_from_slice(&self.spec.mac);
        cfg[6..8].copy_from_slice(&1u16.to_le_bytes()); // VIRTIO_NET_S_LINK_UP
        cfg[8..10].copy_from_slice(&self.spec.queue_pairs.to_le_bytes());
        let start = (offset as usize).min(cfg.len());
        let end = start.saturating_add(size as usize).min(cfg.len());
        let mut out = cfg[start..end].to_vec();
        out.resize(size.min(256) as usize, 0);
        out
    }

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // The daemon replaced the map inside the GuestMemoryAtomic we share; the graph thread
        // loads it at its next burst.
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        if (device_event as usize) < self.num_queues() {
            if self.conn.vrings.get().is_none() && vrings.len() == self.num_queues() {
                let _ = self.conn.vrings.set(vrings.to_vec());
                self.shared.publish(Some(Arc::clone(&self.conn)));
            }
            self.shared.wake();
        }
        Ok(())
    }
}

/// The features a device offers for a configuration.
pub(crate) fn device_features(csum: bool, tso: bool, mrg_rxbuf: bool, event_idx: bool, mq: bool) -> u64 {
    let mut f = feature::VERSION_1
        | feature::MAC
        | feature::STATUS
        | feature::RING_INDIRECT_DESC
        | feature::VHOST_USER_PROTOCOL_FEATURES;
    if mrg_rxbuf {
        f |= feature::MRG_RXBUF;
    }
    if event_idx {
        f |= feature::RING_EVENT_IDX;
    }
    if csum {
        f |= feature::CSUM | feature::GUEST_CSUM;
    }
    if csum && tso {
        f |= feature::HOST_TSO4 | feature::HOST_TSO6 | feature::GUEST_TSO4 | feature::GUEST_TSO6;
    }
    if mq {
        f |= feature::MQ;
    }
    f
}

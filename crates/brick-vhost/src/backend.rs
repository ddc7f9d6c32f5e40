//! The `vhost-user-backend` side: what the rust-vmm daemon threads run (protocol handling,
//! memory table, vring setup). They never touch packets. Guest kicks do not go through them
//! either: [`NetVring`] keeps each queue's kick fd away from the library's vring worker and
//! hands it to the brick, which watches it on the graph thread itself.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLockReadGuard, RwLockWriteGuard};

use brick_core::{Counter, Waker};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{
    VhostUserBackend, VringRwLock, VringState, VringStateGuard, VringStateMutGuard, VringT,
};
use virtio_queue::{Error as VirtQueError, QueueT};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier};

use crate::gate::{FastIndexes, Gate};
use crate::wire::feature;

/// Guest memory as the daemon maps it.
pub(crate) type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;
/// The vring type shared between the daemon threads and the graph thread.
pub(crate) type Vring = NetVring;

/// A queue's kick fd, handed from the control thread to the graph thread.
#[derive(Default)]
pub(crate) struct KickSlot {
    fd: Mutex<Option<Arc<OwnedFd>>>,
    generation: AtomicU64,
}

impl KickSlot {
    /// Bumped each time the fd changes.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current fd (kept open by the returned handle).
    pub(crate) fn fd(&self) -> Option<Arc<OwnedFd>> {
        self.fd.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// One vring as rust-vmm's handler sees it: virtio-queue's state behind the library's
/// `RwLock` (configuration written by the control thread, indexes by the graph thread),
/// except for the kick fd. The library registers a vring's kick fd with its vring-worker
/// thread, which would then wake on every guest kick only to ring the brick's doorbell, and
/// take the vring's lock against the graph thread. `NetVring` keeps the fd to itself
/// ([`KickSlot`]), starts the queue as the library would have on receiving it, and the brick
/// watches the fd in its own epoll set.
///
/// Every change the library makes goes through the NIC's [`Gate`], so that the graph thread
/// may use a running ring without the lock while nothing changes; its indexes then wait in
/// [`FastIndexes`] until the lock is next taken ([`NetVring::locked`]).
#[derive(Clone)]
pub(crate) struct NetVring {
    inner: VringRwLock<Mem>,
    kick: Arc<KickSlot>,
    fast: Arc<FastIndexes>,
    /// The NIC's doorbell and gate: rung when the graph thread must look at the queue again.
    shared: Option<Arc<Shared>>,
    /// Its place among the connection's vrings (RX even, TX odd).
    index: usize,
}

thread_local! {
    /// Set by [`collect_vrings`] while rust-vmm builds a connection's handler, which creates
    /// its vrings on the calling thread: each new [`NetVring`] joins that connection.
    static BUILDING: RefCell<Option<(Arc<Shared>, Vec<NetVring>)>> = const { RefCell::new(None) };
}

/// Runs `build` (which creates a rust-vmm daemon) and returns the vrings it created, in
/// queue order, tied to `shared`'s doorbell.
pub(crate) fn collect_vrings<R>(shared: &Arc<Shared>, build: impl FnOnce() -> R) -> (R, Vec<NetVring>) {
    // A new connection: none of its RX queues runs yet.
    shared.rx_running.store(0, Ordering::Release);
    BUILDING.with(|b| *b.borrow_mut() = Some((Arc::clone(shared), Vec::new())));
    let r = build();
    let vrings = BUILDING.with(|b| b.borrow_mut().take()).map(|(_, v)| v).unwrap_or_default();
    (r, vrings)
}

impl NetVring {
    /// The kick fd slot the brick watches.
    pub(crate) fn kick(&self) -> &KickSlot {
        &self.kick
    }

    fn ring(&self) {
        if let Some(s) = &self.shared {
            s.wake();
        }
    }

    /// Publishes whether this vring, if an RX queue, is running (started and enabled) in the
    /// NIC's [`Shared::rx_running`] mask. Called after every change of either.
    fn publish_running(&self) {
        let Some(s) = &self.shared else { return };
        if self.index % 2 != 0 || self.index / 2 >= MAX_QUEUE_PAIRS {
            return;
        }
        let running = {
            let st = self.inner.get_ref();
            st.get_queue().ready() && st.is_enabled()
        };
        let bit = 1u64 << (self.index / 2);
        if running {
            s.rx_running.fetch_or(bit, Ordering::Release);
        } else {
            s.rx_running.fetch_and(!bit, Ordering::Release);
        }
    }

    /// The indexes the graph thread left after its last lock-free burst.
    #[inline]
    pub(crate) fn fast(&self) -> &FastIndexes {
        &self.fast
    }

    /// The vring's state, locked, with the graph thread's lock-free indexes written back.
    /// Every locked use of the `Queue` goes through here.
    #[inline]
    pub(crate) fn locked(&self) -> RwLockWriteGuard<'_, VringState<Mem>> {
        let mut st = self.inner.get_mut();
        self.fast.sync_into(st.get_queue_mut());
        st
    }

    /// Runs a change of the library's (`f`, on the inner vring) through the NIC's gate, with
    /// the graph thread's indexes written back first.
    fn change<R>(&self, f: impl FnOnce(&VringRwLock<Mem>) -> R) -> R {
        let apply = || {
            drop(self.locked());
            f(&self.inner)
        };
        match &self.shared {
            Some(s) => s.gate.change(apply),
            None => apply(),
        }
    }
}

impl<'a> VringStateGuard<'a, Mem> for NetVring {
    type G = RwLockReadGuard<'a, VringState<Mem>>;
}

impl<'a> VringStateMutGuard<'a, Mem> for NetVring {
    type G = RwLockWriteGuard<'a, VringState<Mem>>;
}

impl VringT<Mem> for NetVring {
    fn new(mem: Mem, max_queue_size: u16) -> Result<Self, VirtQueError> {
        let inner = VringRwLock::new(mem, max_queue_size)?;
        let (shared, index) = BUILDING.with(|b| match b.borrow().as_ref() {
            Some((s, list)) => (Some(Arc::clone(s)), list.len()),
            None => (None, usize::MAX),
        });
        let v = NetVring { inner, kick: Arc::new(KickSlot::default()), fast: Arc::default(), shared, index };
        BUILDING.with(|b| {
            if let Some((_, list)) = b.borrow_mut().as_mut() {
                list.push(v.clone());
            }
        });
        Ok(v)
    }
    fn get_ref(&self) -> RwLockReadGuard<'_, VringState<Mem>> {
        self.inner.get_ref()
    }
    fn get_mut(&self) -> RwLockWriteGuard<'_, VringState<Mem>> {
        // The library changes vrings through the methods below (each behind the gate); this
        // guard serves its reads.
        self.locked()
    }
    fn add_used(&self, desc_index: u16, len: u32) -> Result<(), VirtQueError> {
        self.change(|v| v.add_used(desc_index, len))
    }
    fn signal_used_queue(&self) -> io::Result<()> {
        self.inner.signal_used_queue()
    }
    fn enable_notification(&self) -> Result<bool, VirtQueError> {
        self.change(|v| v.enable_notification())
    }
    fn disable_notification(&self) -> Result<(), VirtQueError> {
        self.change(|v| v.disable_notification())
    }
    fn needs_notification(&self) -> Result<bool, VirtQueError> {
        self.inner.needs_notification()
    }
    fn set_enabled(&self, enabled: bool) {
        self.change(|v| v.set_enabled(enabled));
        self.publish_running();
        // A queue that starts may hold chains the guest will not kick for again.
        self.ring();
    }
    fn set_queue_info(&self, desc_table: u64, avail_ring: u64, used_ring: u64) -> Result<(), VirtQueError> {
        self.change(|v| v.set_queue_info(desc_table, avail_ring, used_ring))
    }
    fn queue_next_avail(&self) -> u16 {
        // GET_VRING_BASE: the graph thread's last index, and no lock-free burst after it.
        self.change(|v| v.queue_next_avail())
    }
    fn set_queue_next_avail(&self, base: u16) {
        self.change(|v| v.set_queue_next_avail(base))
    }
    fn set_queue_next_used(&self, idx: u16) {
        self.change(|v| v.set_queue_next_used(idx))
    }
    fn queue_used_idx(&self) -> Result<u16, VirtQueError> {
        self.inner.queue_used_idx()
    }
    fn set_queue_size(&self, num: u16) {
        self.change(|v| v.set_queue_size(num))
    }
    fn set_queue_event_idx(&self, enabled: bool) {
        self.change(|v| v.set_queue_event_idx(enabled))
    }
    fn set_queue_ready(&self, ready: bool) {
        self.change(|v| v.set_queue_ready(ready));
        self.publish_running();
        self.ring();
    }
    fn set_kick(&self, file: Option<File>) {
        let start = file.is_some();
        let fd = file.map(|f| {
            // Frontends create kick eventfds non-blocking (QEMU, DPDK); make sure, since the
            // brick drains it with a plain read that must never block the graph thread.
            // SAFETY: F_GETFL/F_SETFL on an fd we own; no pointers.
            unsafe {
                let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
                if fl >= 0 {
                    libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
                }
            }
            Arc::new(OwnedFd::from(f))
        });
        *self.kick.fd.lock().unwrap_or_else(|e| e.into_inner()) = fd;
        self.kick.generation.fetch_add(1, Ordering::AcqRel);
        // What the library does when a kick fd arrives for a queue not started yet (it never
        // sees this fd, so it would never start the queue).
        if start && !self.inner.get_ref().get_queue().ready() {
            self.change(|v| v.set_queue_ready(true));
            self.publish_running();
        }
        self.ring();
    }
    fn read_kick(&self) -> io::Result<bool> {
        // Only the library's vring worker calls this, on a kick fd it watches: none here.
        Ok(self.inner.get_ref().is_enabled())
    }
    fn set_call(&self, file: Option<File>) {
        // The graph thread signals under the read lock, lock-free burst or not.
        self.inner.set_call(file)
    }
    fn set_err(&self, file: Option<File>) {
        self.inner.set_err(file)
    }
}

/// Largest ring the backend accepts (QEMU's rx/tx_queue_size go up to 1024).
pub const MAX_QUEUE_SIZE: usize = 1024;

/// Most queue pairs a NIC offers ([`VhostUserConfig::queue_pairs`](crate::VhostUserConfig)).
pub const MAX_QUEUE_PAIRS: usize = 8;

/// State of one frontend connection, shared with the graph thread.
pub(crate) struct Conn {
    pub(crate) mem: Mem,
    /// Bumped after the library replaced the memory map in `mem` (SET_MEM_TABLE): the graph
    /// thread reloads the map only then.
    pub(crate) mem_version: AtomicU64,
    pub(crate) vrings: OnceLock<Vec<Vring>>,
    pub(crate) acked: AtomicU64,
    /// The exit-event consumers handed to the library (see [`Conn::close_exit_events`]).
    pub(crate) exit_consumers: Mutex<Vec<RawFd>>,
}

impl Conn {
    /// A new connection over guest memory `mem`, vrings not built yet.
    pub(crate) fn new(mem: Mem) -> Conn {
        Conn {
            mem,
            mem_version: AtomicU64::new(0),
            vrings: OnceLock::new(),
            acked: AtomicU64::new(0),
            exit_consumers: Mutex::new(Vec::new()),
        }
    }

    /// Closes the exit-event consumers of this connection's worker threads. vhost-user-backend
    /// (0.24) turns each consumer into a raw fd for its epoll set and never closes it: one
    /// eventfd per connection would stay open for the life of the process (a VM rebooted a
    /// thousand times would cost a thousand fds). Call only once the library's daemon is
    /// dropped, its worker threads joined: nothing uses those fds any more.
    pub(crate) fn close_exit_events(&self) {
        for fd in std::mem::take(&mut *self.exit_consumers.lock().unwrap_or_else(|e| e.into_inner())) {
            // SAFETY: `fd` is the consumer eventfd created by `exit_event` and released by the
            // library with `into_raw_fd` (it owns nothing any more); its worker thread is
            // joined and its epoll set dropped, so no one else uses or closes this number.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
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
    /// Times the graph thread found its control doorbell rung (a connection, queue or kick
    /// fd changed).
    pub wakeups: Counter,
    /// Guest kicks (TX notifications) the graph thread consumed. Zero while it polls a busy
    /// queue: kicks are enabled only before the graph sleeps.
    pub guest_kicks: Counter,
    /// Times guest kicks were re-enabled on a TX queue because the graph was going to stop
    /// polling it.
    pub kicks_armed: Counter,
    /// Times a TX chain stayed in the ring because the packet pool was empty.
    pub pool_empty: Counter,
    /// Bursts that took their vring's lock: the first on each running queue after a
    /// connection or a vhost-user change; the others run lock-free (see the gate module).
    pub locked_bursts: Counter,
    /// Drops, indexed like [`DROP_REASONS`](crate::DROP_REASONS).
    pub drops: [Counter; crate::DROP_REASONS.len()],
    /// Packets written into each queue pair's RX queue (index: the pair), counted per burst.
    pub queue_rx_packets: [Counter; MAX_QUEUE_PAIRS],
    /// Frames taken from each queue pair's TX queue, counted per burst.
    pub queue_tx_packets: [Counter; MAX_QUEUE_PAIRS],
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
    /// One per graph thread serving the device (`VhostUserConfig::threads`).
    pub(crate) doorbells: Box<[Doorbell]>,
    pub(crate) generation: AtomicU64,
    pub(crate) slot: Mutex<Option<Arc<Conn>>>,
    /// The control thread's counters, and graph thread 0's (each other thread counts in its
    /// own brick: a counter has one writer).
    pub(crate) stats: Arc<NicStats>,
    /// Lock-free use of the current connection's running vrings (see the gate module).
    pub(crate) gate: Gate,
    /// Bit `p` set while queue pair `p`'s RX queue runs (started and enabled) on the
    /// current connection: which graph threads can take frames for the guest
    /// ([`RxThreads`](crate::RxThreads)).
    pub(crate) rx_running: AtomicU64,
}

/// A graph thread's doorbell: rung by the control thread when something changed.
pub(crate) struct Doorbell {
    pub(crate) waker: Waker,
    pub(crate) pending: AtomicBool,
}

impl Shared {
    pub(crate) fn new(threads: usize) -> io::Result<Self> {
        let doorbells = (0..threads.max(1))
            .map(|_| Ok(Doorbell { waker: Waker::new()?, pending: AtomicBool::new(false) }))
            .collect::<io::Result<_>>()?;
        Ok(Shared {
            doorbells,
            generation: AtomicU64::new(0),
            slot: Mutex::new(None),
            stats: Arc::new(NicStats::default()),
            gate: Gate::new(threads),
            rx_running: AtomicU64::new(0),
        })
    }

    /// Rings every graph thread's doorbell (once until that thread answers it).
    pub(crate) fn wake(&self) {
        for d in self.doorbells.iter() {
            if !d.pending.swap(true, Ordering::AcqRel) {
                d.waker.wake();
            }
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
    /// The MTU in the config space (with VIRTIO_NET_F_MTU); 0 without.
    pub(crate) mtu: u16,
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
        cfg[10..12].copy_from_slice(&self.spec.mtu.to_le_bytes());
        let start = (offset as usize).min(cfg.len());
        let end = start.saturating_add(size as usize).min(cfg.len());
        let mut out = cfg[start..end].to_vec();
        out.resize(size.min(256) as usize, 0);
        out
    }

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // The daemon replaced the map inside the GuestMemoryAtomic we share; the graph thread
        // loads it at its next burst.
        self.conn.mem_version.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let (consumer, notifier) =
            new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()?;
        // Closed by `Conn::close_exit_events` when the connection is over (the library leaks it).
        self.conn.exit_consumers.lock().unwrap_or_else(|e| e.into_inner()).push(consumer.as_raw_fd());
        Some((consumer, notifier))
    }

    fn handle_event(
        &self,
        _device_event: u16,
        _evset: EventSet,
        _vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        // Kick fds never reach the library's worker (see `NetVring`): the brick watches them.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(mtu: u16, features: u64) -> NetBackend {
        let conn = Conn::new(GuestMemoryAtomic::new(GuestMemoryMmap::new()));
        NetBackend {
            spec: DeviceSpec { queue_pairs: 1, features, mac: [2, 0, 0, 0, 0, 1], mtu },
            conn: Arc::new(conn),
            shared: Arc::new(Shared::new(1).unwrap()),
        }
    }

    #[test]
    fn the_config_space_holds_the_mtu_after_mac_status_and_queue_pairs() {
        let b = backend(8950, feature::MTU);
        assert_ne!(b.features() & feature::MTU, 0);
        let cfg = b.get_config(0, 12);
        assert_eq!(&cfg[0..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(u16::from_le_bytes([cfg[10], cfg[11]]), 8950);
        // The driver reads the field alone (virtio_cread16 at offset 10).
        assert_eq!(b.get_config(10, 2), 8950u16.to_le_bytes());
        assert_eq!(backend(0, 0).get_config(10, 2), [0, 0], "no MTU without the feature");
    }
}

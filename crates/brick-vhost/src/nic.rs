//! [`VhostUserNic`]: the brick (data path on the graph thread) and its control thread
//! (socket, reconnection, one rust-vmm daemon per connection).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use brick_core::{Brick, Burst, EpollSet, Output, PacketPool, PortId, Side};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserDaemon, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::{
    collect_vrings, device_features, Conn, DeviceSpec, NetBackend, NicStats, Shared, Vring,
};
use crate::datapath::{rx_push_segmenting, tx_pop, NetFeatures, RxDrop, RxScratch, TxDrop, TxPop};
use crate::proxy::{relay, EnableFilter, RelayEnd};
use crate::queue::{DeviceQueue, DOORBELL};
use crate::ring::GuestMap;

brick_core::drop_reasons! {
    /// A drop reason of the vhost brick; `NAMES` is its `Brick::drop_reasons`.
    pub enum DropReason {
        /// Guest RX: no (or not enough) guest buffers.
        RingFull => "ring full",
        /// Guest TX or RX: malformed descriptor or chain (loop, out-of-range address, wrong
        /// direction, broken indirect table).
        BadDescriptor => "bad descriptor",
        /// Guest RX: no frontend connected, or the queue is not started/enabled.
        NotReady => "not ready",
        /// Guest TX: frame larger than a pool buffer.
        Oversized => "oversized chain",
        /// Guest TX: malformed virtio-net header or offload not negotiated.
        BadHeader => "bad virtio-net header",
        /// Guest RX: super-frame (GSO) for a guest that did not ack GUEST_TSO4/6.
        NeedsSegmentation => "needs segmentation",
        /// Guest RX without MRG_RXBUF: buffer smaller than the frame.
        BufferTooSmall => "rx buffer too small",
        /// The used ring cannot be written (guest gave an invalid ring address).
        QueueBroken => "queue broken",
        /// Guest TX: a frame shorter than an Ethernet header.
        Runt => "runt frame",
    }
}

/// Drop reasons of the vhost brick, in `Brick::drop_reasons` order (per-brick drop
/// counters).
pub const DROP_REASONS: &[&str] = DropReason::NAMES;

impl From<TxDrop> for DropReason {
    fn from(d: TxDrop) -> Self {
        match d {
            TxDrop::BadDescriptor => DropReason::BadDescriptor,
            TxDrop::Oversized => DropReason::Oversized,
            TxDrop::BadHeader => DropReason::BadHeader,
            TxDrop::Runt => DropReason::Runt,
        }
    }
}

impl From<RxDrop> for DropReason {
    fn from(d: RxDrop) -> Self {
        match d {
            RxDrop::RingFull => DropReason::RingFull,
            RxDrop::BadDescriptor => DropReason::BadDescriptor,
            RxDrop::BufferTooSmall => DropReason::BufferTooSmall,
            RxDrop::NeedsSegmentation => DropReason::NeedsSegmentation,
            RxDrop::Broken => DropReason::QueueBroken,
        }
    }
}

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
    /// Offloads offered.
    pub offloads: Offloads,
    /// Offer MRG_RXBUF (mergeable RX buffers).
    pub mrg_rxbuf: bool,
    /// Offer EVENT_IDX (notification suppression).
    pub event_idx: bool,
    /// Pool the guest's TX frames are copied into.
    pub pool: PacketPool,
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
            offloads: Offloads::default(),
            mrg_rxbuf: true,
            event_idx: true,
            pool,
            reconnect_interval: Duration::from_secs(1),
            mtu: None,
        }
    }

    fn features(&self) -> u64 {
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

/// Why a NIC cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum VhostError {
    /// Socket creation, bind or thread spawn failed.
    #[error("vhost-user socket {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The path exists and is not a socket (never deleted).
    #[error("{0} exists and is not a socket")]
    NotASocket(PathBuf),
    /// `queue_pairs` is 0 or above 8.
    #[error("queue_pairs must be 1..=8, got {0}")]
    BadQueuePairs(u16),
    /// TSO asked with a pool whose buffers cannot hold a 64 KiB super-frame.
    #[error("TSO needs a pool data room of at least {TSO_DATA_ROOM} bytes, got {0}")]
    PoolTooSmallForTso(usize),
}

enum Mode {
    Server(UnixListener),
    Client,
}

struct Control {
    stop: Arc<AtomicBool>,
    /// Rung with `stop` so the control thread notices at once (no polling delay on drop).
    wake: Arc<brick_core::Waker>,
    join: Option<JoinHandle<()>>,
}

/// A vhost-user virtio-net device as a brick.
///
/// Its **west** side (one port) faces the graph: frames the guest transmits are emitted
/// there by [`poll`](Brick::poll), and packets arriving there are written into the guest's
/// RX buffers by [`process`](Brick::process). Both run on the graph's thread; the rust-vmm
/// daemon threads only handle the vhost-user protocol. Dropping the brick closes the
/// connection, stops every thread and (server mode) removes the socket file.
pub struct VhostUserNic {
    shared: Arc<Shared>,
    cfg: VhostUserConfig,
    path: PathBuf,
    server: bool,
    conn: Option<Arc<Conn>>,
    seen_generation: u64,
    feat: NetFeatures,
    /// The current connection's memory map as a region table.
    map: Option<GuestMap>,
    /// Per virtqueue (RX even, TX odd), graph-thread state.
    queues: Vec<DeviceQueue>,
    /// What the graph sleeps on for this NIC: the control doorbell and each TX kick fd.
    wake_set: EpollSet,
    scratch: RxScratch,
    /// Segments of a super-frame cut for a guest without TSO.
    gso_segs: Vec<brick_core::Packet>,
    rx_next: usize,
    control: Control,
}

static CONN_SEQ: AtomicU64 = AtomicU64::new(0);

impl VhostUserNic {
    /// Server mode: creates the socket at `path` (replacing a stale socket file, never any
    /// other file) and serves one frontend at a time; a frontend that leaves (VM shutdown,
    /// QEMU restart) is replaced by the next that connects.
    pub fn server(path: impl AsRef<Path>, cfg: VhostUserConfig) -> Result<Self, VhostError> {
        let path = path.as_ref().to_path_buf();
        Self::check(&cfg)?;
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            if !md.file_type().is_socket() {
                return Err(VhostError::NotASocket(path));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener =
            UnixListener::bind(&path).map_err(|source| VhostError::Io { path: path.clone(), source })?;
        listener.set_nonblocking(true).map_err(|source| VhostError::Io { path: path.clone(), source })?;
        Self::start(path, cfg, Mode::Server(listener))
    }

    /// Client mode: connects to the frontend's socket at `path` (QEMU
    /// `-chardev socket,server=on`), and reconnects every `reconnect_interval` whenever the
    /// connection is lost or not yet possible. A restarted backend process reconnects the
    /// same way, and the running guest keeps its state.
    pub fn client(path: impl AsRef<Path>, cfg: VhostUserConfig) -> Result<Self, VhostError> {
        Self::check(&cfg)?;
        Self::start(path.as_ref().to_path_buf(), cfg, Mode::Client)
    }

    fn check(cfg: &VhostUserConfig) -> Result<(), VhostError> {
        if cfg.queue_pairs == 0 || cfg.queue_pairs > 8 {
            return Err(VhostError::BadQueuePairs(cfg.queue_pairs));
        }
        if cfg.offloads.tso && cfg.pool.data_room() < TSO_DATA_ROOM {
            return Err(VhostError::PoolTooSmallForTso(cfg.pool.data_room()));
        }
        Ok(())
    }

    fn start(path: PathBuf, cfg: VhostUserConfig, mode: Mode) -> Result<Self, VhostError> {
        let io_err = |source| VhostError::Io { path: path.clone(), source };
        let shared = Arc::new(Shared::new().map_err(io_err)?);
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(brick_core::Waker::new().map_err(io_err)?);
        let server = matches!(mode, Mode::Server(_));
        let ctx = ControlCtx {
            wake: Arc::clone(&wake),
            shared: Arc::clone(&shared),
            spec: DeviceSpec {
                queue_pairs: cfg.queue_pairs,
                features: cfg.features(),
                mac: cfg.mac,
                mtu: cfg.mtu.unwrap_or(0),
            },
            name: cfg.name.clone(),
            path: path.clone(),
            stop: Arc::clone(&stop),
            reconnect: cfg.reconnect_interval,
        };
        let wake_set = EpollSet::new().map_err(io_err)?;
        wake_set.add(shared.waker.fd(), DOORBELL).map_err(io_err)?;
        let join = std::thread::Builder::new()
            .name(format!("vhost-{}", cfg.name))
            .spawn(move || ctx.run(mode))
            .map_err(io_err)?;
        let queues = 2 * cfg.queue_pairs as usize;
        Ok(VhostUserNic {
            shared,
            path,
            server,
            conn: None,
            seen_generation: u64::MAX,
            feat: NetFeatures::default(),
            map: None,
            queues: (0..queues).map(|_| DeviceQueue::default()).collect(),
            wake_set,
            scratch: RxScratch::default(),
            gso_segs: Vec::with_capacity(64),
            rx_next: 0,
            control: Control { stop, wake, join: Some(join) },
            cfg,
        })
    }

    /// Counters and connection state, shareable with other threads.
    pub fn stats(&self) -> Arc<NicStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The configured MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.cfg.mac
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a frontend is connected.
    pub fn is_connected(&self) -> bool {
        self.shared.stats.connected.load(Ordering::Relaxed)
    }

    /// Features offered to the driver.
    pub fn offered_features(&self) -> u64 {
        self.cfg.features()
    }

    /// Picks up a new connection (or its loss) published by the control thread, a changed
    /// memory map, and new kick fds. Returns the connection's vrings, if any.
    #[inline]
    fn refresh(&mut self) -> Option<Arc<Conn>> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen_generation {
            self.seen_generation = g;
            self.conn = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
            self.map = None;
            for q in &mut self.queues {
                q.reset();
                q.drop_kick(&self.wake_set);
            }
        }
        let conn = self.conn.clone()?;
        let acked = conn.acked.load(Ordering::Acquire);
        if acked != self.feat.acked {
            self.feat = NetFeatures::from_acked(acked);
        }
        let mem = conn.mem.memory();
        if !self.map.as_ref().is_some_and(|m| m.is_of(&mem)) {
            self.map = Some(GuestMap::new(mem.into_inner()));
        }
        let vrings = conn.vrings.get()?;
        for (i, (q, v)) in self.queues.iter_mut().zip(vrings).enumerate() {
            if i % 2 == 1 {
                q.sync_kick(v, &self.wake_set, i);
            }
        }
        Some(conn)
    }

    fn count_drop(&self, out: &mut Output<'_>, r: DropReason, n: u64) {
        out.count_drop(r as usize, n);
        self.shared.stats.drops[r as usize].add(n);
    }

    /// Drains one TX queue into the graph: at most `budget` chains, dropped ones included
    /// (a guest that keeps posting bad chains must not hold the thread). Returns the chains
    /// consumed: work, even when every one was dropped.
    fn poll_tx(&mut self, q: usize, vring: &Vring, budget: usize, out: &mut Output<'_>) -> usize {
        let mut st = vring.get_mut();
        if !(st.get_queue().ready() && st.is_enabled()) {
            self.queues[q].reset();
            return 0;
        }
        let Some(map) = &self.map else { return 0 };
        let Some(ring) = self.queues[q].ring(map, st.get_queue()) else { return 0 };
        let stats = &self.shared.stats;
        let mut consumed = 0usize;
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut drops = [0u64; DROP_REASONS.len()];
        ring.prefetch(budget.min(u16::MAX as usize) as u16, false);
        while consumed < budget {
            match tx_pop(ring, &self.cfg.pool, &self.feat) {
                TxPop::Packet(p) => {
                    packets += 1;
                    bytes += p.len() as u64;
                    out.emit(Side::West, 0, p);
                    consumed += 1;
                }
                TxPop::Dropped(d) => {
                    drops[DropReason::from(d) as usize] += 1;
                    consumed += 1;
                }
                TxPop::PoolEmpty => {
                    // The guest kicked once for these frames and will not kick again: come
                    // back when buffers may have been freed, not at the next kick.
                    stats.pool_empty.add(1);
                    out.retry_soon();
                    break;
                }
                TxPop::Broken => {
                    drops[DropReason::QueueBroken as usize] += 1;
                    break;
                }
                TxPop::Empty => break,
            }
        }
        if consumed > 0 {
            // Counted once per burst: the counters are shared with readers on other threads.
            stats.tx_packets.add(packets);
            stats.tx_bytes.add(bytes);
            ring.publish_used();
            ring.store_indexes(st.get_queue_mut());
            let interrupt = ring.needs_interrupt();
            self.queues[q].polling();
            if interrupt {
                let _ = st.signal_used_queue();
                stats.guest_notifications.add(1);
            }
        }
        for (r, &n) in drops.iter().enumerate().filter(|(_, &n)| n > 0) {
            out.count_drop(r, n);
            stats.drops[r].add(n);
        }
        consumed
    }

    /// Re-enables kicks on TX queue `q` (the graph is about to stop polling it). Returns
    /// whether chains are already waiting.
    fn arm_tx(&mut self, q: usize, vring: &Vring) -> bool {
        let st = vring.get_mut();
        let running = st.get_queue().ready() && st.is_enabled();
        let map = self.map.as_ref().filter(|_| running);
        let armed = map.and_then(|m| self.queues[q].arm(m, st.get_queue()));
        drop(st);
        let stats = &self.shared.stats;
        if armed.is_some_and(|a| a.newly) {
            stats.kicks_armed.add(1);
        }
        // Drained after arming, every time: a kick for chains published before the arming is
        // consumed here (the arming's second look saw those chains), and so is a kick with
        // nothing new behind it (a driver may kick when it starts a queue), which would
        // otherwise keep the fd readable and the graph from ever sleeping. A queue that is not
        // running is drained for the same reason.
        stats.guest_kicks.add(self.queues[q].drain_kick());
        armed.is_some_and(|a| a.work)
    }
}

impl Brick for VhostUserNic {
    fn kind(&self) -> &'static str {
        "vhost-user"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        match side {
            Side::West => 1,
            Side::East => 0,
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.wake_set.fd())
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        if self.shared.wake_pending.load(Ordering::Relaxed) {
            self.shared.wake_pending.store(false, Ordering::Release);
            self.shared.waker.drain();
            self.shared.stats.wakeups.add(1);
        }
        let Some(conn) = self.refresh() else { return 0 };
        let Some(vrings) = conn.vrings.get() else { return 0 };
        let mut total = 0;
        for q in (1..vrings.len()).step_by(2) {
            total += self.poll_tx(q, &vrings[q], brick_core::BURST_SIZE, out);
        }
        total
    }

    fn arm_wake(&mut self) -> bool {
        let Some(conn) = self.conn.clone() else { return false };
        let Some(vrings) = conn.vrings.get() else { return false };
        let mut work = false;
        for q in (1..vrings.len()).step_by(2) {
            work |= self.arm_tx(q, &vrings[q]);
        }
        work
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let conn = self.refresh();
        let vrings = conn.as_ref().and_then(|c| c.vrings.get());
        // Pick a started RX queue, round robin per burst over the queue pairs.
        let chosen = vrings.and_then(|v| {
            let pairs = v.len() / 2;
            let start = self.rx_next;
            self.rx_next = self.rx_next.wrapping_add(1);
            (0..pairs).map(|k| 2 * ((start + k) % pairs)).find(|&q| {
                let st = v[q].get_ref();
                st.get_queue().ready() && st.is_enabled()
            })
        });
        let (Some(vrings), Some(q), Some(map)) = (vrings, chosen, &self.map) else {
            let n = pkts.len() as u64;
            pkts.clear();
            self.count_drop(out, DropReason::NotReady, n);
            return;
        };
        let mut st = vrings[q].get_mut();
        let Some(ring) = self.queues[q].ring(map, st.get_queue()) else {
            let n = pkts.len() as u64;
            pkts.clear();
            drop(st);
            self.count_drop(out, DropReason::QueueBroken, n);
            return;
        };
        ring.prefetch(pkts.len() as u16, true);
        let stats = &self.shared.stats;
        let (mut delivered, mut bytes) = (0u64, 0u64);
        let mut drops = [0u64; DROP_REASONS.len()];
        for mut pkt in pkts.drain() {
            let o = rx_push_segmenting(
                ring,
                &mut pkt,
                &self.feat,
                &mut self.scratch,
                &self.cfg.pool,
                &mut self.gso_segs,
            );
            delivered += o.frames;
            bytes += o.bytes;
            if let Some(e) = o.reason {
                // The packet itself is freed at the end of this iteration either way.
                drops[DropReason::from(e) as usize] += o.dropped;
            }
        }
        // Chains may have been handed back (a bad first chain) even with nothing delivered.
        ring.publish_used();
        ring.store_indexes(st.get_queue_mut());
        if delivered > 0 {
            stats.rx_packets.add(delivered);
            stats.rx_bytes.add(bytes);
            if ring.needs_interrupt() {
                let _ = st.signal_used_queue();
                stats.guest_notifications.add(1);
            }
        }
        drop(st);
        for (r, &n) in drops.iter().enumerate().filter(|(_, &n)| n > 0) {
            out.count_drop(r, n);
            stats.drops[r].add(n);
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = &self.shared.stats;
        vec![
            format!("{} {}", if self.server { "server" } else { "client" }, self.path.display()),
            format!(
                "connected={} connections={}",
                s.connected.load(Ordering::Relaxed),
                s.connections.load(Ordering::Relaxed)
            ),
            format!("acked=0x{:x}", s.acked_features.load(Ordering::Relaxed)),
        ]
    }
}

impl Drop for VhostUserNic {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::Relaxed);
        self.control.wake.wake();
        if let Some(j) = self.control.join.take() {
            let _ = j.join();
        }
        if self.server {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the control thread needs.
struct ControlCtx {
    wake: Arc<brick_core::Waker>,
    shared: Arc<Shared>,
    spec: DeviceSpec,
    name: String,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    reconnect: Duration,
}

impl ControlCtx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking at once when asked to stop.
    fn nap(&self, d: Duration) {
        let mut pfd = libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd; the waker's fd lives as long as `self`.
        unsafe { libc::poll(&mut pfd, 1, d.as_millis().min(i32::MAX as u128) as i32) };
    }

    fn run(self, mode: Mode) {
        match mode {
            Mode::Server(listener) => {
                while !self.stopped() {
                    let mut pfds = [
                        libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                        libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 },
                    ];
                    // SAFETY: two live pollfd. Waits for a connection or the stop bell; the
                    // 1 s timeout only bounds the damage of a missed wake-up.
                    let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, 1000) };
                    if r <= 0 || pfds[0].revents == 0 {
                        continue;
                    }
                    match listener.accept() {
                        Ok((s, _)) => self.serve(s),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            tracing::warn!(nic = %self.name, "accept failed: {e}");
                            self.nap(Duration::from_millis(100));
                        }
                    }
                }
            }
            Mode::Client => {
                while !self.stopped() {
                    match UnixStream::connect(&self.path) {
                        Ok(s) => self.serve(s),
                        Err(e) => tracing::debug!(nic = %self.name, "connect {}: {e}", self.path.display()),
                    }
                    self.nap(self.reconnect);
                }
            }
        }
    }

    /// Runs one connection to its end: a fresh daemon (handler, vrings, worker thread) fed
    /// through the relay, then torn down.
    fn serve(&self, front: UnixStream) {
        let _ = front.set_nonblocking(false);
        let mem: crate::backend::Mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let conn = Arc::new(Conn::new(mem.clone()));
        self.session(front, &conn, mem);
        // The library's daemon is dropped, its threads joined (on every path out of `session`).
        conn.close_exit_events();
    }

    /// The body of [`serve`](Self::serve): builds, runs and drops the library's daemon.
    fn session(&self, front: UnixStream, conn: &Arc<Conn>, mem: crate::backend::Mem) {
        let backend =
            NetBackend { spec: self.spec.clone(), conn: Arc::clone(conn), shared: Arc::clone(&self.shared) };
        let (daemon, vrings) = collect_vrings(&self.shared, || {
            VhostUserDaemon::new(format!("vhost-{}", self.name), backend, mem)
        });
        let mut daemon = match daemon {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(nic = %self.name, "daemon: {e}");
                return;
            }
        };
        if vrings.len() != 2 * self.spec.queue_pairs as usize {
            tracing::warn!(nic = %self.name, "daemon built {} vrings, expected {}", vrings.len(), 2 * self.spec.queue_pairs);
            return;
        }
        let _ = conn.vrings.set(vrings);
        // The daemon accepts its end of the relay on a private abstract socket.
        let id = CONN_SEQ.fetch_add(1, Ordering::Relaxed);
        let addr_name = format!("brick-vhost-{}-{}", std::process::id(), id);
        let back = (|| {
            let addr = SocketAddr::from_abstract_name(addr_name.as_bytes())?;
            let l = UnixListener::bind_addr(&addr)?;
            let back = UnixStream::connect_addr(&addr)?;
            Ok::<_, io::Error>((l, back))
        })();
        let (l, back) = match back {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(nic = %self.name, "relay socket: {e}");
                return;
            }
        };
        let mut listener = Listener::from(l);
        if let Err(e) = daemon.start(&mut listener) {
            tracing::warn!(nic = %self.name, "daemon start: {e}");
            return;
        }
        drop(listener);
        let stats = &self.shared.stats;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.connected.store(true, Ordering::Relaxed);
        self.shared.publish(Some(Arc::clone(conn)));
        let mut filter = EnableFilter::default();
        let end =
            relay(&front, &back, &self.stop, Some(self.wake.fd()), &mut filter, &stats.early_enables_held);
        match &end {
            RelayEnd::Backend(e) => tracing::info!(nic = %self.name, "backend handler closed: {e}"),
            RelayEnd::Frontend(e) => tracing::info!(nic = %self.name, "frontend left: {e}"),
            RelayEnd::Stopped => {}
        }
        let _ = front.shutdown(std::net::Shutdown::Both);
        let _ = back.shutdown(std::net::Shutdown::Both);
        daemon.request_shutdown();
        let _ = daemon.wait();
        self.shared.publish(None);
        stats.connected.store(false, Ordering::Relaxed);
        stats.acked_features.store(0, Ordering::Relaxed);
        stats.disconnections.fetch_add(1, Ordering::Relaxed);
        // Dropping the daemon stops and joins its vring worker (exit_event is implemented).
        drop(daemon);
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

//! [`VhostUserNic`]: the brick (data path on the graph thread) and its control thread
//! (socket, reconnection, one rust-vmm daemon per connection).
//!
//! This file holds the brick's type, its drop reasons, errors and constructors; its
//! configuration is in `config.rs`, the graph-thread side in `brick.rs`, the control thread
//! in `control.rs`.

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

use brick_core::{
    Brick, Burst, EpollSet, LentBuffers, Output, PacketPool, PacketSource, PortId, Side, BURST_SIZE,
};
use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserDaemon, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

use crate::backend::{
    collect_vrings, device_features, Conn, DeviceSpec, NetBackend, NicStats, Shared, Vring,
};
use crate::datapath::{
    rx_push_segmenting, tx_pop_into, NetFeatures, RxDrop, RxScratch, TxDrop, TxLent, TxPools, TxPop,
};
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
    /// `queue_pairs` is 0 or above [`MAX_QUEUE_PAIRS`](crate::MAX_QUEUE_PAIRS).
    #[error("queue_pairs must be 1..={max}, got {0}", max = crate::MAX_QUEUE_PAIRS)]
    BadQueuePairs(u16),
    /// `threads` is 0 or more than `queue_pairs` (a thread would have no queue pair).
    #[error("threads must be 1..={queue_pairs} (the queue pairs), got {threads}")]
    BadThreads {
        /// Asked for.
        threads: u16,
        /// Queue pairs offered.
        queue_pairs: u16,
    },
    /// TSO asked with a pool whose buffers cannot hold a 64 KiB super-frame.
    #[error("TSO needs a pool data room of at least {TSO_DATA_ROOM} bytes, got {0}")]
    PoolTooSmallForTso(usize),
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
    /// Which of the device's graph threads this brick is (`VhostUserConfig::threads`).
    thread: usize,
    /// Its counters: the shared ones for thread 0, its own for the others.
    stats: Arc<NicStats>,
    cfg: VhostUserConfig,
    path: PathBuf,
    server: bool,
    conn: Option<Arc<Conn>>,
    seen_generation: u64,
    /// The connection's memory-map version the map below was loaded at.
    seen_mem: u64,
    feat: NetFeatures,
    /// The current connection's memory map as a region table.
    map: Option<GuestMap>,
    /// Per virtqueue (RX even, TX odd), graph-thread state.
    queues: Vec<DeviceQueue>,
    /// What the graph sleeps on for this NIC: the control doorbell and each TX kick fd.
    wake_set: EpollSet,
    scratch: RxScratch,
    /// TX frames popped from the guest, built in place, then handed to the graph whole.
    tx_burst: Burst,
    /// Buffers lent for TX frames ([`VhostUserConfig::lent`]).
    tx_lent: Option<Box<dyn PacketSource>>,
    /// Polls answered by [`tx_quiet`](Self::tx_quiet) in a row.
    quiet_polls: u32,
    /// Segments of a super-frame cut for a guest without TSO.
    gso_segs: Vec<brick_core::Packet>,
    rx_next: usize,
    /// This thread's queue pairs (bit `p` for pair `p`), and per running pair a burst for
    /// the frames a flow hash steered to it ([`steer_pair`]).
    own_pairs: u64,
    steered: Vec<Burst>,
    /// Thread 0's brick owns the control thread (and the socket); its siblings do not.
    control: Option<Control>,
}

/// At most this many polls in a row are answered from the cached ring views alone.
const QUIET_RECHECK: u32 = 64;

mod brick;
mod config;
mod control;

pub use config::{Offloads, VhostUserConfig, TSO_DATA_ROOM};
use control::{Control, Mode};

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
        if cfg.queue_pairs == 0 || cfg.queue_pairs as usize > crate::MAX_QUEUE_PAIRS {
            return Err(VhostError::BadQueuePairs(cfg.queue_pairs));
        }
        if cfg.threads == 0 || cfg.threads > cfg.queue_pairs {
            return Err(VhostError::BadThreads { threads: cfg.threads, queue_pairs: cfg.queue_pairs });
        }
        if cfg.offloads.tso && cfg.pool.data_room() < TSO_DATA_ROOM {
            return Err(VhostError::PoolTooSmallForTso(cfg.pool.data_room()));
        }
        Ok(())
    }

    /// Counters and connection state, shareable with other threads. With several
    /// [`threads`](VhostUserConfig::threads), each brick counts the frames of its own queue
    /// pairs; the connection state (connected, connections, acked features) is in thread 0's.
    pub fn stats(&self) -> Arc<NicStats> {
        Arc::clone(&self.stats)
    }

    /// The bricks of graph threads 1 to `threads - 1` (none with one thread, and none after
    /// the first call), each to be added to its own graph: thread `t` polls and fills the queue
    /// pairs `p` with `p % threads == t`. They share this brick's connection; dropping this
    /// brick ends it for all of them (their queues then count frames as not ready).
    pub fn take_siblings(&mut self) -> Result<Vec<VhostUserNic>, VhostError> {
        let io_err = |source| VhostError::Io { path: self.path.clone(), source };
        if self.thread != 0 || self.control.as_ref().is_none_or(|c| c.siblings_taken) {
            return Ok(Vec::new());
        }
        let siblings = (1..self.cfg.threads as usize)
            .map(|t| {
                Self::brick(Arc::clone(&self.shared), t, self.path.clone(), self.server, self.cfg.clone())
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io_err)?;
        if let Some(c) = &mut self.control {
            c.siblings_taken = true;
        }
        Ok(siblings)
    }

    /// Which of the device's graph threads run an RX queue now, for a
    /// [`VhostSpread`](crate::VhostSpread) in thread 0's graph.
    pub fn rx_threads(&self) -> crate::RxThreads {
        crate::RxThreads::new(Arc::clone(&self.shared), self.cfg.threads as usize)
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
}

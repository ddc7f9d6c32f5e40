//! DPDK brick (cargo feature `dpdk`): a DPDK ethdev port, several queues, MTU, link status
//! and offload capabilities, on Debian's DPDK 22.11 through our `dpdk-sys` binding.
//!
//! **Zero copy** by default ([`DpdkConfig::zero_copy`]): a received single-segment mbuf
//! becomes a [`Packet`](brick_core::Packet) over the mbuf's own buffer (a
//! [`ForeignOwner`] whose release frees the mbuf), and a packet that comes back to any
//! `DpdkNic` still in its mbuf is transmitted in that mbuf, with the headers bricks prepended
//! or pulled. Everything else (pool packets, multi-segment mbufs) is copied once. The C shim
//! does a whole burst per FFI call (receive + read every mbuf's fields; fix up or allocate +
//! fill + transmit + free the unsent).

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use brick_core::{
    Brick, Burst, ForeignOwner, GsoType, Meta, OffloadFlags, Output, Packet, PacketPool, PortId, Side,
    Timestamp, BURST_SIZE,
};
use dpdk_sys as sys;

use crate::counters::*;
use crate::offload::{complete_checksum, guess_l2_l3};
use crate::NicError;

/// Why a DPDK operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DpdkError {
    /// `rte_eal_init` may succeed once per process, and already did (or failed past its
    /// argument parsing).
    #[error("the DPDK EAL was already initialised in this process; it can be only once")]
    AlreadyInitialized,
    /// An EAL argument holds a NUL byte.
    #[error("EAL argument {0:?} contains a NUL byte")]
    BadArgument(String),
    /// `rte_eal_init` failed.
    #[error("DPDK EAL initialisation failed: {msg} (rte_errno {errno})")]
    EalInit {
        /// `rte_errno`.
        errno: i32,
        /// `rte_strerror(rte_errno)`.
        msg: String,
    },
    /// No port with this id.
    #[error("no DPDK port {0}")]
    NoSuchPort(u16),
    /// The port is already open (another brick of this process drives it).
    #[error("DPDK port {0} is already open in this process")]
    PortInUse(u16),
    /// No port with this name.
    #[error("no DPDK port named {0:?}")]
    NoSuchPortName(String),
    /// `rte_dev_probe` failed.
    #[error("probing DPDK device {devargs:?} failed: {msg}")]
    Probe {
        /// The devargs string.
        devargs: String,
        /// The error.
        msg: String,
    },
    /// An ethdev call failed.
    #[error("DPDK port {port}: {op} failed: {msg} ({code})")]
    Port {
        /// Port id.
        port: u16,
        /// The call.
        op: &'static str,
        /// Its (negative errno) result.
        code: i32,
        /// `strerror`.
        msg: String,
    },
    /// The mbuf pool could not be created.
    #[error("DPDK mbuf pool {name:?}: {msg}")]
    Mempool {
        /// Pool name.
        name: String,
        /// The error.
        msg: String,
    },
    /// A configuration value the port cannot take.
    #[error("invalid DPDK configuration: {0}")]
    Config(String),
}

fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }.to_string_lossy().into_owned()
}

fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno.
    unsafe { sys::brick_rte_errno() }
}

fn port_err(port: u16, op: &'static str, code: i32) -> DpdkError {
    DpdkError::Port { port, op, code, msg: strerror(code) }
}

/// Frees the mbuf behind a zero-copy packet that was dropped.
///
/// # Safety
/// `handle` is an mbuf lent to exactly one packet by `DpdkNic::rx_queue` (exclusive, direct,
/// single segment); its mempool stays alive while it is out (see `Port`'s `Drop`).
unsafe fn release_mbuf(handle: NonNull<()>) {
    // SAFETY: see above; rte_pktmbuf_free is safe on any thread (non-EAL threads bypass the
    // per-lcore cache).
    unsafe { sys::brick_pktmbuf_free(handle.as_ptr().cast()) }
}

/// This thread's registration with the EAL, made the first time a [`DpdkNic`] runs on it
/// (when [`DpdkConfig::register_thread`] is on) and undone when the thread exits.
struct EalThread {
    registered: bool,
}

impl EalThread {
    fn register() -> EalThread {
        // SAFETY: plain queries/registration of the calling thread, after EAL init (a
        // DpdkNic exists only then).
        let registered = unsafe { sys::brick_lcore_id() == u32::MAX && sys::rte_thread_register() == 0 };
        EalThread { registered }
    }
}

impl Drop for EalThread {
    fn drop(&mut self) {
        if self.registered {
            // SAFETY: this thread registered itself in `register`.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

thread_local! {
    static EAL_THREAD: EalThread = EalThread::register();
}

/// The calling thread's DPDK lcore id: the EAL's main thread and threads that ran a
/// [`DpdkNic`] with [`DpdkConfig::register_thread`] have one; `None` before EAL init or for
/// other threads.
pub fn current_lcore() -> Option<u32> {
    Eal::get()?;
    // SAFETY: reads the calling thread's lcore id after EAL init.
    let id = unsafe { sys::brick_lcore_id() };
    (id != u32::MAX).then_some(id)
}

/// Owner of every packet that lives in an mbuf: packets are recognised by it on transmit
/// (whatever port received them) and their mbufs freed through it when dropped.
pub static MBUF_OWNER: ForeignOwner = ForeignOwner { name: "dpdk mbuf", release: release_mbuf };

/// Mempools of closed ports, kept for the life of the process. Their mbufs may still be lent
/// to packets, sit in another port's rings, or be on their way back through a thread's
/// per-lcore cache; DPDK offers no moment at which freeing the pool is known to be safe
/// (`rte_mempool_full` can read "full" while a put into a cache is still being written), so
/// none is freed. The cost is one pool per closed port; ports are rarely closed.
static RETIRED_POOLS: Mutex<Vec<RetiredPool>> = Mutex::new(Vec::new());

struct RetiredPool(#[allow(dead_code)] *mut sys::rte_mempool);

// SAFETY: the pointer is only stored (never dereferenced or freed) after retirement.
unsafe impl Send for RetiredPool {}

/// Mempools of closed ports kept alive (for tests and monitoring).
pub fn retired_mempools() -> usize {
    RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Ports opened by a [`DpdkNic`] of this process and not yet closed. A second open of one
/// would reconfigure, then (on its failure) stop and close the port under its first brick.
static OPEN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port id claimed in [`OPEN_PORTS`], released on drop.
struct PortClaim(u16);

impl PortClaim {
    fn take(id: u16) -> Result<PortClaim, DpdkError> {
        let mut open = OPEN_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        if open.contains(&id) {
            return Err(DpdkError::PortInUse(id));
        }
        open.push(id);
        Ok(PortClaim(id))
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        OPEN_PORTS.lock().unwrap_or_else(|e| e.into_inner()).retain(|&p| p != self.0);
    }
}

/// The initialised DPDK environment abstraction layer: one per process, for its whole life
/// (DPDK cannot initialise it twice).
#[derive(Debug)]
pub struct Eal {
    args: Vec<String>,
}

static EAL: OnceLock<Eal> = OnceLock::new();
static EAL_LOCK: Mutex<()> = Mutex::new(());
static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

impl Eal {
    /// Runs `rte_eal_init` with `args` (without the program name: `["--no-huge", "--no-pci",
    /// "-m", "256", "--file-prefix", "x", "--vdev", "net_null0"]`, as Butterfly's
    /// `--dpdk-args`). The calling thread becomes DPDK's main lcore (and is pinned to its
    /// CPU). Only one call in a process can succeed; a call refused for bad arguments may be
    /// retried with good ones (DPDK allows that), any other failure is final.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<&'static Eal, DpdkError> {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut cargs = Vec::with_capacity(args.len() + 1);
        cargs.push(CString::new("brick-nic").map_err(|_| DpdkError::BadArgument("brick-nic".into()))?);
        for a in &args {
            cargs.push(CString::new(a.as_str()).map_err(|_| DpdkError::BadArgument(a.clone()))?);
        }
        let _guard = EAL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if EAL.get().is_some() {
            return Err(DpdkError::AlreadyInitialized);
        }
        // The EAL may keep pointers into argv for the life of the process: leak it.
        let argv: &'static mut [*mut c_char] =
            Box::leak(cargs.into_iter().map(|c| c.into_raw()).collect::<Vec<_>>().into_boxed_slice());
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed; calls
        // are serialised by EAL_LOCK, and DPDK itself refuses a second initialisation.
        let rc = unsafe { sys::rte_eal_init(argv.len() as i32, argv.as_mut_ptr()) };
        if rc < 0 {
            let errno = rte_errno();
            if errno == libc::EALREADY {
                return Err(DpdkError::AlreadyInitialized);
            }
            return Err(DpdkError::EalInit { errno, msg: strerror(errno) });
        }
        Ok(EAL.get_or_init(|| Eal { args }))
    }

    /// The EAL, if [`init`](Self::init) succeeded.
    pub fn get() -> Option<&'static Eal> {
        EAL.get()
    }

    /// The arguments it was started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Number of usable ports.
    pub fn port_count(&self) -> u16 {
        // SAFETY: plain query after EAL init.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    /// The id of the port called `name` (a vdev name such as `net_null0`, or a PCI address).
    pub fn port_by_name(&self, name: &str) -> Result<u16, DpdkError> {
        let c = CString::new(name).map_err(|_| DpdkError::BadArgument(name.into()))?;
        let mut id = 0u16;
        // SAFETY: valid C string and out pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::NoSuchPortName(name.into()));
        }
        Ok(id)
    }

    /// Hot-plugs a device from a devargs string (`"net_ring0"`, `"net_af_packet0,iface=eth1"`)
    /// and returns its port id.
    pub fn probe(&self, devargs: &str) -> Result<u16, DpdkError> {
        let c = CString::new(devargs).map_err(|_| DpdkError::BadArgument(devargs.into()))?;
        // SAFETY: valid C string.
        let rc = unsafe { sys::rte_dev_probe(c.as_ptr()) };
        if rc != 0 {
            return Err(DpdkError::Probe { devargs: devargs.into(), msg: strerror(rc) });
        }
        let name = devargs.split(',').next().unwrap_or(devargs);
        // A device probed before whose port was closed stays on its bus: probing it again
        // succeeds but brings no port back.
        self.port_by_name(name).map_err(|_| DpdkError::Probe {
            devargs: devargs.into(),
            msg: format!(
                "the device {name:?} exists but has no port: a port once closed cannot be opened again in this process; hot-plug it under another name"
            ),
        })
    }

    fn check_port(&self, port: u16) -> Result<(), DpdkError> {
        // SAFETY: plain query.
        if unsafe { sys::rte_eth_dev_is_valid_port(port) } == 0 {
            return Err(DpdkError::NoSuchPort(port));
        }
        Ok(())
    }
}

/// Which port a [`DpdkNic`] drives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortSpec {
    /// A port id.
    Id(u16),
    /// A port name (from `--vdev` or `-a` on the EAL command line).
    Name(String),
    /// A device to hot-plug with `rte_dev_probe`.
    Devargs(String),
}

/// Configuration of a [`DpdkNic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpdkConfig {
    /// The port.
    pub port: PortSpec,
    /// Receive/transmit queue pairs (see [`DpdkNic::into_queues`]).
    pub queues: u16,
    /// Receive descriptors per queue (adjusted to the driver's limits).
    pub rx_desc: u16,
    /// Transmit descriptors per queue (adjusted to the driver's limits).
    pub tx_desc: u16,
    /// Mbufs in the port's pool (bounded: it must cover every ring plus bursts in flight).
    pub mbufs: u32,
    /// Per-lcore mbuf cache.
    pub mbuf_cache: u32,
    /// MTU to set, if any.
    pub mtu: Option<u16>,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Received single-segment mbufs cross the graph as they are (see the module docs);
    /// off, every frame is copied into a packet of the brick's pool and the mbuf freed at
    /// once. With zero copy the mbuf pool also backs packets queued inside the graph, so
    /// size `mbufs` for them too.
    pub zero_copy: bool,
    /// A thread that is not an EAL lcore (a `Runner`'s) registers itself with the EAL
    /// (`rte_thread_register`) the first time the brick runs on it, so its mbuf allocations
    /// and frees go through a per-lcore mempool cache instead of the shared ring.
    pub register_thread: bool,
    /// Ask the port to compute TCP/UDP checksums of frames whose checksum is partial
    /// (`CSUM_NEEDED`), when it can (`offload_caps().tx_checksum()`); otherwise, or when
    /// off, they are completed in software.
    pub tx_checksum_offload: bool,
    /// Hand TCP super-frames (GSO metadata) whole to a port that segments TCP
    /// (`offload_caps().tso()`, with multi-segment mbufs); otherwise, or when off, they are
    /// segmented in software.
    pub tx_tso_offload: bool,
}

impl Default for DpdkConfig {
    fn default() -> Self {
        DpdkConfig {
            port: PortSpec::Id(0),
            queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            mbufs: 8191,
            mbuf_cache: 256,
            mtu: None,
            promiscuous: true,
            zero_copy: true,
            register_thread: true,
            tx_checksum_offload: true,
            tx_tso_offload: true,
        }
    }
}

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mb/s (0 unknown).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

/// A port's MTU limits, as its driver reports them (`rte_eth_dev_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtuLimits {
    /// Lowest MTU.
    pub min_mtu: u16,
    /// Highest MTU (`u16::MAX` when the driver sets none).
    pub max_mtu: u16,
    /// Largest frame the port receives (`rte_eth_dev_set_mtu` checks MTU + L2 overhead
    /// against it).
    pub max_rx_pktlen: u32,
}

/// Offload capabilities of a port, as the driver reports them (`rte_eth_dev_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadCaps {
    /// Raw `RTE_ETH_RX_OFFLOAD_*` bits.
    pub rx_raw: u64,
    /// Raw `RTE_ETH_TX_OFFLOAD_*` bits.
    pub tx_raw: u64,
}

impl OffloadCaps {
    /// The port verifies IPv4/TCP/UDP checksums on receive.
    pub fn rx_checksum(&self) -> bool {
        use sys::offload::*;
        self.rx_raw & (RX_IPV4_CKSUM | RX_TCP_CKSUM | RX_UDP_CKSUM) != 0
    }
    /// The port computes TCP/UDP checksums on transmit.
    pub fn tx_checksum(&self) -> bool {
        use sys::offload::*;
        self.tx_raw & (TX_TCP_CKSUM | TX_UDP_CKSUM) == (TX_TCP_CKSUM | TX_UDP_CKSUM)
    }
    /// The port segments TCP (TSO).
    pub fn tso(&self) -> bool {
        self.tx_raw & sys::offload::TX_TCP_TSO != 0
    }
    /// The port computes outer (tunnel) IPv4/UDP checksums.
    pub fn outer_checksum(&self) -> bool {
        use sys::offload::*;
        self.tx_raw & (TX_OUTER_IPV4_CKSUM | TX_OUTER_UDP_CKSUM) != 0
    }
    /// The port segments VXLAN-encapsulated TCP.
    pub fn vxlan_tso(&self) -> bool {
        self.tx_raw & sys::offload::TX_VXLAN_TNL_TSO != 0
    }
}

/// A configured, started port and its mbuf pool; stopped and closed when the last brick
/// using it goes.
struct Port {
    id: u16,
    name: String,
    mempool: *mut sys::rte_mempool,
    caps: OffloadCaps,
    data_room: usize,
    /// Released after `drop` has closed the port (fields drop last).
    _claim: PortClaim,
}

// SAFETY: a DPDK mempool is a thread-safe object (lock-free ring); the port id is a plain
// number. Queues are used by one brick each (never two threads on one queue).
unsafe impl Send for Port {}
// SAFETY: shared access only reads `id`, `caps` and passes `mempool` to thread-safe DPDK calls.
unsafe impl Sync for Port {}

impl Drop for Port {
    fn drop(&mut self) {
        // SAFETY: the port was started by us and no brick uses it any more (last Arc);
        // closing releases its queues, whose mbufs go back to the pool. Mbufs lent to
        // packets (zero copy) or sitting in another port's rings may still be out: then the
        // pool is retired and freed when they are all back.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
        RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner()).push(RetiredPool(self.mempool));
    }
}

/// Scratch mbuf pointers of one burst, valid only during a poll.
struct MbufScratch {
    mbufs: [*mut sys::rte_mbuf; BURST_SIZE],
    views: [sys::brick_mbuf_view; BURST_SIZE],
    descs: [sys::brick_tx_desc; BURST_SIZE],
    /// `ol_flags` of the packets in `rx_burst`, by position.
    rx_flags: [u64; BURST_SIZE],
}

// SAFETY: the pointers are only dereferenced (by DPDK) inside one `poll` call, on the
// thread running it; between calls they are stale values that nothing reads.
unsafe impl Send for MbufScratch {}

/// A brick on a DPDK port (or on some of its queues).
///
/// `poll` receives up to 64 frames from each of its receive queues, copies them into pool
/// packets (multi-segment mbufs are gathered), frees the mbufs in bulk and emits east.
/// `process` copies each burst into fresh mbufs and transmits it in one `rte_eth_tx_burst`
/// on the brick's first queue; what the driver does not take is freed and counted
/// ("tx ring full"). Partial TCP/UDP checksums are left to the port when it computes them
/// ([`DpdkConfig::tx_checksum_offload`]) and completed in software otherwise; TCP
/// super-frames (GSO metadata) larger than the MTU go whole to a port with TSO
/// ([`DpdkConfig::tx_tso_offload`]) and are cut into segments in software otherwise
/// ([`brick_core::gso`], counted in `tx_segmented`).
pub struct DpdkNic {
    port: Arc<Port>,
    queues: Vec<u16>,
    pool: PacketPool,
    counters: Arc<NicCounters>,
    scratch: Box<MbufScratch>,
    /// Received packets on their way east (storage reused).
    rx_burst: Burst,
    /// Software segmentation: segments of one super-frame, and the burst being filled.
    gso_segs: Vec<Packet>,
    segmented: Burst,
    max_frame: usize,
    last_missed: u64,
    zero_copy: bool,
    register_thread: bool,
    /// The port computes TCP/UDP checksums on transmit (enabled at configure time).
    tx_l4_csum: bool,
    /// The port segments TCP super-frames (enabled at configure time).
    tx_tso: bool,
}

impl DpdkNic {
    /// Configures and starts a port with `cfg.queues` queue pairs, all polled by this brick.
    pub fn open(eal: &Eal, cfg: DpdkConfig, pool: PacketPool) -> Result<DpdkNic, NicError> {
        let id = match &cfg.port {
            PortSpec::Id(id) => {
                eal.check_port(*id)?;
                *id
            }
            PortSpec::Name(n) => eal.port_by_name(n)?,
            PortSpec::Devargs(d) => eal.probe(d)?,
        };
        if cfg.queues == 0 {
            return Err(DpdkError::Config("queues must be at least 1".into()).into());
        }
        // Before anything that could touch the port: if another brick drives it, an error
        // here leaves it alone.
        let claim = PortClaim::take(id)?;
        // SAFETY: rte_eth_dev_info is plain data filled by the call.
        let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port (checked), valid out pointer.
        let rc = unsafe { sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_dev_info_get", rc).into());
        }
        if cfg.queues > info.max_rx_queues || cfg.queues > info.max_tx_queues {
            return Err(DpdkError::Config(format!(
                "port {id} supports {} rx / {} tx queues, {} asked",
                info.max_rx_queues, info.max_tx_queues, cfg.queues
            ))
            .into());
        }
        let caps = OffloadCaps { rx_raw: info.rx_offload_capa, tx_raw: info.tx_offload_capa };
        let mut name_buf = [0 as c_char; sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: the buffer has RTE_ETH_NAME_MAX_LEN bytes, as the call requires.
        unsafe { sys::rte_eth_dev_get_name_by_port(id, name_buf.as_mut_ptr()) };
        // SAFETY: NUL-terminated by the call (or zeroed).
        let name = unsafe { CStr::from_ptr(name_buf.as_ptr()) }.to_string_lossy().into_owned();

        let pool_name = format!("brick_mp{}_{}", id, POOL_SEQ.fetch_add(1, Ordering::Relaxed));
        let cpool = CString::new(pool_name.clone()).map_err(|_| DpdkError::BadArgument(pool_name.clone()))?;
        // SAFETY: plain query.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        // SAFETY: valid name; sizes are checked by DPDK, which returns NULL on failure.
        let mempool = unsafe {
            sys::rte_pktmbuf_pool_create(
                cpool.as_ptr(),
                cfg.mbufs,
                cfg.mbuf_cache.min(512),
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        if mempool.is_null() {
            let e = rte_errno();
            return Err(DpdkError::Mempool { name: pool_name, msg: strerror(e) }.into());
        }
        // From here on, Port's Drop stops/closes the port and frees the pool on any error.
        let port = Arc::new(Port {
            id,
            name,
            mempool,
            caps,
            data_room: sys::RTE_MBUF_DEFAULT_DATAROOM as usize,
            _claim: claim,
        });
        // SAFETY: rte_eth_conf is plain data; all-zero is DPDK's "defaults".
        let mut conf: sys::rte_eth_conf = unsafe { std::mem::zeroed() };
        use sys::offload::*;
        conf.rxmode.offloads = caps.rx_raw & (RX_IPV4_CKSUM | RX_TCP_CKSUM | RX_UDP_CKSUM);
        let tx_l4_csum = cfg.tx_checksum_offload
            && caps.tx_raw & (TX_TCP_CKSUM | TX_UDP_CKSUM) == TX_TCP_CKSUM | TX_UDP_CKSUM;
        if tx_l4_csum {
            conf.txmode.offloads = TX_TCP_CKSUM | TX_UDP_CKSUM;
        }
        let tso_caps = TX_TCP_TSO | TX_MULTI_SEGS | TX_IPV4_CKSUM | TX_TCP_CKSUM;
        let tx_tso = cfg.tx_tso_offload && caps.tx_raw & tso_caps == tso_caps;
        if tx_tso {
            conf.txmode.offloads |= tso_caps;
        }
        // SAFETY: valid port and conf.
        let rc = unsafe { sys::rte_eth_dev_configure(id, cfg.queues, cfg.queues, &conf) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_dev_configure", rc).into());
        }
        let (mut nrx, mut ntx) = (cfg.rx_desc, cfg.tx_desc);
        // SAFETY: valid port and out pointers.
        unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        for q in 0..cfg.queues {
            let mut rxconf = info.default_rxconf;
            rxconf.offloads = conf.rxmode.offloads;
            // SAFETY: valid port, queue index < configured queues, pool created above.
            let rc = unsafe { sys::rte_eth_rx_queue_setup(id, q, nrx, socket as u32, &rxconf, mempool) };
            if rc != 0 {
                return Err(port_err(id, "rte_eth_rx_queue_setup", rc).into());
            }
            let mut txconf = info.default_txconf;
            txconf.offloads = conf.txmode.offloads;
            // SAFETY: as above.
            let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, ntx, socket as u32, &txconf) };
            if rc != 0 {
                return Err(port_err(id, "rte_eth_tx_queue_setup", rc).into());
            }
        }
        if let Some(mtu) = cfg.mtu {
            // SAFETY: valid port.
            let rc = unsafe { sys::rte_eth_dev_set_mtu(id, mtu) };
            if rc != 0 {
                return Err(port_err(id, "rte_eth_dev_set_mtu", rc).into());
            }
        }
        // SAFETY: configured port.
        let rc = unsafe { sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(port_err(id, "rte_eth_dev_start", rc).into());
        }
        if cfg.promiscuous {
            // Not every driver has it (ENOTSUP is fine).
            // SAFETY: started port.
            unsafe { sys::rte_eth_promiscuous_enable(id) };
        }
        let mut nic = DpdkNic {
            port,
            queues: (0..cfg.queues).collect(),
            pool,
            counters: NicCounters::new_shared(),
            scratch: Box::new(MbufScratch {
                mbufs: [std::ptr::null_mut(); BURST_SIZE],
                views: [sys::brick_mbuf_view::default(); BURST_SIZE],
                descs: [sys::brick_tx_desc::default(); BURST_SIZE],
                rx_flags: [0; BURST_SIZE],
            }),
            rx_burst: Burst::new(),
            gso_segs: Vec::with_capacity(64),
            segmented: Burst::new(),
            max_frame: 0,
            last_missed: 0,
            zero_copy: cfg.zero_copy,
            register_thread: cfg.register_thread,
            tx_l4_csum,
            tx_tso,
        };
        nic.refresh_max_frame();
        nic.last_missed = nic.port_missed();
        Ok(nic)
    }

    /// Splits the brick into one brick per queue pair (for one worker graph each); the port
    /// stays up until the last of them is dropped. Port-wide drop counters (`imissed`,
    /// `rx_nombuf`) are reported by the brick of queue 0.
    pub fn into_queues(self) -> Vec<DpdkNic> {
        let DpdkNic {
            port,
            queues,
            pool,
            max_frame,
            last_missed,
            zero_copy,
            register_thread,
            tx_l4_csum,
            tx_tso,
            ..
        } = self;
        queues
            .into_iter()
            .map(|q| DpdkNic {
                port: Arc::clone(&port),
                queues: vec![q],
                pool: pool.clone(),
                counters: NicCounters::new_shared(),
                scratch: Box::new(MbufScratch {
                    mbufs: [std::ptr::null_mut(); BURST_SIZE],
                    views: [sys::brick_mbuf_view::default(); BURST_SIZE],
                    descs: [sys::brick_tx_desc::default(); BURST_SIZE],
                    rx_flags: [0; BURST_SIZE],
                }),
                rx_burst: Burst::new(),
                gso_segs: Vec::with_capacity(64),
                segmented: Burst::new(),
                max_frame,
                last_missed,
                zero_copy,
                register_thread,
                tx_l4_csum,
                tx_tso,
            })
            .collect()
    }

    /// The port id.
    pub fn port_id(&self) -> u16 {
        self.port.id
    }

    /// The port's device name.
    pub fn port_name(&self) -> &str {
        &self.port.name
    }

    /// The queues this brick polls (it transmits on the first).
    pub fn queues(&self) -> &[u16] {
        &self.queues
    }

    /// The brick's counters.
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }

    /// What the port can offload.
    pub fn offload_caps(&self) -> OffloadCaps {
        self.port.caps
    }

    /// Current link state (does not wait).
    pub fn link(&self) -> Result<LinkStatus, DpdkError> {
        // SAFETY: rte_eth_link is plain data.
        let mut l: sys::rte_eth_link = unsafe { std::mem::zeroed() };
        // SAFETY: valid port and out pointer.
        let rc = unsafe { sys::rte_eth_link_get_nowait(self.port.id, &mut l) };
        if rc != 0 {
            return Err(port_err(self.port.id, "rte_eth_link_get_nowait", rc));
        }
        Ok(LinkStatus {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
            full_duplex: l.link_duplex() != 0,
        })
    }

    /// The port MTU.
    pub fn mtu(&self) -> Result<u16, DpdkError> {
        let mut mtu = 0u16;
        // SAFETY: valid port and out pointer.
        let rc = unsafe { sys::rte_eth_dev_get_mtu(self.port.id, &mut mtu) };
        if rc != 0 {
            return Err(port_err(self.port.id, "rte_eth_dev_get_mtu", rc));
        }
        Ok(mtu)
    }

    /// The port's MTU limits, as its driver reports them (`rte_eth_dev_info`).
    pub fn mtu_limits(&self) -> Result<MtuLimits, DpdkError> {
        // SAFETY: rte_eth_dev_info is plain data filled by the call.
        let mut info: sys::rte_eth_dev_info = unsafe { std::mem::zeroed() };
        // SAFETY: valid port, valid out pointer.
        let rc = unsafe { sys::rte_eth_dev_info_get(self.port.id, &mut info) };
        if rc != 0 {
            return Err(port_err(self.port.id, "rte_eth_dev_info_get", rc));
        }
        Ok(MtuLimits { min_mtu: info.min_mtu, max_mtu: info.max_mtu, max_rx_pktlen: info.max_rx_pktlen })
    }

    /// Changes the port MTU (frames above MTU + 14 are then dropped as "too big"; the mbufs
    /// hold at most 2048 bytes, so jumbo frames are refused too).
    pub fn set_mtu(&mut self, mtu: u16) -> Result<(), DpdkError> {
        // SAFETY: valid port.
        let rc = unsafe { sys::rte_eth_dev_set_mtu(self.port.id, mtu) };
        if rc != 0 {
            return Err(port_err(self.port.id, "rte_eth_dev_set_mtu", rc));
        }
        self.refresh_max_frame();
        Ok(())
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port and out pointer.
        let rc = unsafe { sys::rte_eth_macaddr_get(self.port.id, &mut a) };
        if rc != 0 {
            return Err(port_err(self.port.id, "rte_eth_macaddr_get", rc));
        }
        Ok(a.addr_bytes)
    }

    /// Free mbufs in the port's pool (for tests and monitoring).
    pub fn mbufs_available(&self) -> u32 {
        // SAFETY: the pool lives as long as the port.
        unsafe { sys::rte_mempool_avail_count(self.port.mempool) }
    }

    fn refresh_max_frame(&mut self) {
        let mtu = self.mtu().unwrap_or(1500) as usize;
        self.max_frame = (mtu + 14).min(self.port.data_room);
    }

    fn port_stats(&self) -> Option<sys::rte_eth_stats> {
        // SAFETY: rte_eth_stats is plain data.
        let mut st: sys::rte_eth_stats = unsafe { std::mem::zeroed() };
        // SAFETY: valid port and out pointer.
        (unsafe { sys::rte_eth_stats_get(self.port.id, &mut st) } == 0).then_some(st)
    }

    fn port_missed(&self) -> u64 {
        self.port_stats().map_or(0, |s| s.imissed + s.rx_nombuf)
    }

    fn rx_queue(&mut self, q: u16, out: &mut Output<'_>) -> usize {
        let s = &mut *self.scratch;
        // SAFETY: mbufs/views have room for BURST_SIZE entries; the port and queue are
        // configured and polled by this brick only.
        let n = unsafe {
            sys::brick_rx_burst_views(
                self.port.id,
                q,
                s.mbufs.as_mut_ptr(),
                s.views.as_mut_ptr(),
                BURST_SIZE as u16,
            )
        } as usize;
        let mut to_free = 0usize;
        let mut bytes = 0u64;
        let rx = &mut self.rx_burst;
        for i in 0..n {
            let v = &s.views[i];
            let total = v.pkt_len as usize;
            s.rx_flags[rx.len()] = v.ol_flags;
            if self.zero_copy && v.exclusive != 0 {
                if let (Some(buf), Some(handle)) =
                    (NonNull::new(v.buf.cast::<u8>()), NonNull::new(s.mbufs[i].cast::<()>()))
                {
                    // SAFETY: the shim checked the mbuf is a direct single segment with refcnt
                    // 1, so its `buf_len` bytes at `buf_addr` are ours alone (mbuf buffers are
                    // plain initialised memory) until the packet frees it through MBUF_OWNER or
                    // gives it back to a DpdkNic for transmission; the mempool outlives it
                    // (Port's Drop retires pools with lent mbufs). At most BURST_SIZE frames
                    // go into an empty burst, so only bad bounds could refuse it.
                    let pushed = unsafe {
                        rx.push_foreign(
                            buf,
                            v.buf_len as usize,
                            v.data_off as usize,
                            v.data_len as usize,
                            &MBUF_OWNER,
                            handle,
                        )
                    };
                    if pushed {
                        bytes += total as u64;
                        continue;
                    }
                }
            }
            // Copied (or dropped) below: the mbuf goes back to its pool after the loop.
            s.mbufs[to_free] = s.mbufs[i];
            to_free += 1;
            if total > self.pool.data_room() {
                count_drop(&self.counters, out, DROP_TOO_BIG, 1);
                continue;
            }
            let Some(mut pkt) = self.pool.alloc() else {
                count_drop(&self.counters, out, DROP_RX_POOL_EMPTY, 1);
                continue;
            };
            let Ok(buf) = pkt.append(total) else {
                count_drop(&self.counters, out, DROP_TOO_BIG, 1);
                continue;
            };
            let first = (v.data_len as usize).min(total);
            // SAFETY: the driver gave us this mbuf; its first segment has data_len bytes at
            // `data`, and we copy at most `total` bytes into a buffer of `total` bytes.
            unsafe { std::ptr::copy_nonoverlapping(v.data as *const u8, buf.as_mut_ptr(), first) };
            let mut off = first;
            let mut seg = v.next;
            let mut ok = true;
            while !seg.is_null() && off < total {
                // SAFETY: `seg` is a segment of a received mbuf chain, alive until the bulk
                // free below; the copy is bounded by what is left of `buf`.
                unsafe {
                    let len = (sys::brick_mbuf_data_len(seg) as usize).min(total - off);
                    std::ptr::copy_nonoverlapping(
                        sys::brick_mbuf_data(seg) as *const u8,
                        buf.as_mut_ptr().add(off),
                        len,
                    );
                    off += len;
                    seg = sys::brick_mbuf_next(seg);
                }
            }
            if off != total {
                ok = false;
            }
            if !ok {
                drop_pkt(&self.counters, out, pkt, DROP_RX_ERROR);
                continue;
            }
            bytes += total as u64;
            let _ = rx.push(pkt);
        }
        // Metadata is filled in place, once the packets sit in the burst: building it before
        // the move made every move wait on the narrow stores just made (store forwarding).
        let got = rx.len();
        for (p, &f) in rx.iter_mut().zip(s.rx_flags[..got].iter()) {
            fill_rx_meta(p, f);
        }
        self.counters.rx_packets.add(rx.len() as u64);
        self.counters.rx_bytes.add(bytes);
        // Moves the whole burst (storage swap) when nothing waits on the port.
        out.emit_all(Side::East, 0, rx);
        if to_free > 0 {
            // SAFETY: these mbufs came from rx_burst, were copied or dropped, and nothing
            // refers to them any more (lent ones were moved out of this prefix).
            unsafe { sys::brick_pktmbuf_free_bulk(s.mbufs.as_mut_ptr(), to_free as u32) };
        }
        n
    }
}

/// Where the IP header starts (`l3_offset`, or right after an untagged Ethernet header when
/// unset) and its length up to the L4 header at `l4`; `None` if shorter than 20 bytes or
/// beyond what the mbuf's `l2_len` (7 bits) and `l3_len` (9 bits) fields hold.
fn l3_span(l3_offset: u16, l4: u16) -> Option<(u16, u16)> {
    let l3 = if l3_offset != 0 { l3_offset } else { 14 };
    let l3_len = l4.checked_sub(l3).filter(|&n| (20..=511).contains(&n))?;
    (l3 <= 127).then_some((l3, l3_len))
}

/// The offload request for a frame whose TCP or UDP checksum is partial (the field at
/// `csum_start + csum_offset` holds the pseudo-header sum): `(ol_flags, l2_len, l3_len)`, or
/// `None` when the frame is not plain IPv4/IPv6 + TCP/UDP as described (then the checksum is
/// completed in software).
fn l4_csum_offload(
    frame: &[u8],
    l3_offset: u16,
    csum_start: u16,
    csum_offset: u16,
) -> Option<(u64, u16, u16)> {
    use sys::mbuf_flags::*;
    let (l3, l3_len) = l3_span(l3_offset, csum_start)?;
    if usize::from(csum_start) + usize::from(csum_offset) + 2 > frame.len() {
        return None;
    }
    let ip = match frame.get(usize::from(l3))? >> 4 {
        4 => TX_IPV4,
        6 => TX_IPV6,
        _ => return None,
    };
    let l4 = match csum_offset {
        16 => TX_TCP_CKSUM,
        6 => TX_UDP_CKSUM,
        _ => return None,
    };
    Some((ip | l4, l3, l3_len))
}

/// Fills a received packet's metadata.
#[inline]
fn fill_rx_meta(pkt: &mut Packet, ol_flags: u64) {
    use sys::mbuf_flags::*;
    let mut meta = Meta::default();
    if ol_flags & RX_L4_CKSUM_MASK == RX_L4_CKSUM_GOOD && ol_flags & RX_IP_CKSUM_MASK != 0 {
        meta.offload.insert(OffloadFlags::CSUM_VERIFIED);
    }
    guess_l2_l3(pkt.data(), &mut meta);
    *pkt.meta_mut() = meta;
}

impl DpdkNic {
    fn process_burst(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if self.register_thread {
            EAL_THREAD.with(|_| {});
        }
        let max_frame = self.max_frame;
        if pkts.iter().any(|p| p.meta().gso_type != GsoType::None && p.len() > max_frame) {
            self.transmit_segmenting(pkts, out);
        } else {
            self.transmit(pkts, out);
        }
    }

    /// Transmits a burst holding TCP super-frames: each goes whole to a port that segments
    /// TCP (TSO, as a chain of mbufs), or is cut into MSS-sized segments here (in pool
    /// packets, checksums completed); everything leaves in order, in bursts of at most 64.
    #[cold]
    fn transmit_segmenting(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let mut chunk = std::mem::take(&mut self.segmented);
        let mut segs = std::mem::take(&mut self.gso_segs);
        for pkt in pkts.drain() {
            if pkt.meta().gso_type == GsoType::None || pkt.len() <= self.max_frame {
                segs.push(pkt);
            } else if let Some(req) = self.tx_tso.then(|| tso_request(&pkt)).flatten() {
                // The port segments it: what was queued before it leaves first.
                if !chunk.is_empty() {
                    self.transmit(&mut chunk, out);
                }
                if !self.send_tso(&pkt, req, out) {
                    // No mbufs for the chain: cut it here instead.
                    self.segment_in_software(&pkt, &mut segs, out);
                }
            } else {
                self.segment_in_software(&pkt, &mut segs, out);
            }
            for seg in segs.drain(..) {
                if chunk.room() == 0 {
                    self.transmit(&mut chunk, out);
                }
                let _ = chunk.push(seg);
            }
        }
        if !chunk.is_empty() {
            self.transmit(&mut chunk, out);
        }
        self.segmented = chunk;
        self.gso_segs = segs;
    }

    /// Cuts a TCP super-frame into segments from the brick's pool, appended to `segs`.
    fn segment_in_software(&mut self, pkt: &Packet, segs: &mut Vec<Packet>, out: &mut Output<'_>) {
        match brick_core::gso::segment_into_pool(pkt, &self.pool, |seg| segs.push(seg)) {
            Ok(n) => self.counters.tx_segmented.add(n as u64),
            Err(brick_core::gso::GsoError::PoolEmpty) => {
                count_drop(&self.counters, out, DROP_RX_POOL_EMPTY, 1)
            }
            Err(_) => count_drop(&self.counters, out, DROP_BAD_OFFLOAD, 1),
        }
    }

    /// Sends a super-frame whole as a chain of mbufs, the port segmenting it (TSO). Returns
    /// false when the mbuf pool is short (nothing sent); a full ring or a refusal is counted.
    fn send_tso(&mut self, pkt: &Packet, req: TsoRequest, out: &mut Output<'_>) -> bool {
        let mut refused = 0u16;
        // SAFETY: `pkt`'s bytes stay alive and unchanged for the call, which copies them into
        // mbufs of the port's pool; the queue is ours.
        let rc = unsafe {
            sys::brick_tx_tso(
                self.port.mempool,
                self.port.id,
                self.queues[0],
                pkt.data().as_ptr().cast(),
                pkt.len() as u32,
                req.ol_flags,
                req.l2_len,
                req.l3_len,
                req.l4_len,
                req.segment,
                &mut refused,
            )
        };
        match rc {
            1 => {
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(pkt.len() as u64);
                self.counters.tx_gso.add(1);
                true
            }
            0 if refused > 0 => {
                count_drop(&self.counters, out, DROP_BAD_OFFLOAD, 1);
                true
            }
            0 => {
                count_drop(&self.counters, out, DROP_TX_RING_FULL, 1);
                true
            }
            _ => false,
        }
    }
}

/// What a port needs to segment a TCP super-frame.
#[derive(Clone, Copy, Debug)]
struct TsoRequest {
    ol_flags: u64,
    l2_len: u16,
    l3_len: u16,
    l4_len: u16,
    segment: u16,
}

/// The TSO request for a TCP super-frame (IPv4 or IPv6, headers where its metadata says),
/// or `None` when it is something else (then it is segmented in software).
fn tso_request(pkt: &Packet) -> Option<TsoRequest> {
    use sys::mbuf_flags::*;
    let m = pkt.meta();
    let d = pkt.data();
    let l4 = m.csum_start;
    let (l3, l3_len) = l3_span(m.l3_offset, l4)?;
    let ip = match (m.gso_type, d.get(usize::from(l3))? >> 4) {
        (GsoType::TcpV4, 4) => TX_IPV4 | TX_IP_CKSUM,
        (GsoType::TcpV6, 6) => TX_IPV6,
        _ => return None,
    };
    let l4_len = u16::from(d.get(usize::from(l4) + 12)? >> 4) * 4;
    if l4_len < 20 || m.gso_size == 0 || usize::from(l4) + usize::from(l4_len) > d.len() {
        return None;
    }
    Some(TsoRequest {
        ol_flags: ip | TX_TCP_SEG | TX_TCP_CKSUM,
        l2_len: l3,
        l3_len,
        l4_len,
        segment: m.gso_size,
    })
}

impl DpdkNic {
    /// Transmits a burst of at most 64 frames, none larger than the port takes.
    fn transmit(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        // Packets are looked at in place (moving each 72-byte packet out of the burst cost
        // more than the rest of the work): a packet still in its mbuf hands the mbuf over and
        // stays behind as an empty shell; any other stays whole, its bytes copied from where
        // it lies during the transmit call. `pkts.clear()` then frees shells (nothing), the
        // copied packets and the refused ones.
        let descs = &mut self.scratch.descs;
        let mut n = 0usize;
        let mut ncopy = 0u16;
        let mut noffload = 0u16;
        let mut bytes = 0u64;
        for pkt in pkts.iter_mut() {
            let m = pkt.meta();
            let (gso, csum) = (m.gso_type != GsoType::None, m.offload.contains(OffloadFlags::CSUM_NEEDED));
            let (csum_start, csum_offset) = (m.csum_start, m.csum_offset);
            let tagged = pkt.data().get(12..14).is_some_and(|t| t == [0x81, 0x00] || t == [0x88, 0xa8]);
            let limit = (self.max_frame + if tagged { 4 } else { 0 }).min(self.port.data_room);
            if pkt.len() > limit || (gso && pkt.len() > self.max_frame) {
                count_drop(&self.counters, out, DROP_TOO_BIG, 1);
                continue;
            }
            let mut offload = None;
            if csum {
                // The port computes the TCP/UDP checksum when it can; the field already holds
                // the pseudo-header sum, as DPDK asks. Otherwise it is completed here.
                offload = self
                    .tx_l4_csum
                    .then(|| l4_csum_offload(pkt.data(), m.l3_offset, csum_start, csum_offset))
                    .flatten();
                if offload.is_none() && !complete_checksum(pkt.data_mut(), csum_start, csum_offset) {
                    count_drop(&self.counters, out, DROP_BAD_OFFLOAD, 1);
                    continue;
                }
            }
            let d = &mut descs[n];
            match offload {
                Some((flags, l2, l3)) => {
                    (d.ol_flags, d.l2_len, d.l3_len) = (flags, l2, l3);
                    noffload += 1;
                }
                None => d.ol_flags = 0,
            }
            d.len = pkt.len() as u16;
            bytes += pkt.len() as u64;
            match pkt.take_foreign(&MBUF_OWNER) {
                Some(parts) => {
                    d.m = parts.handle.as_ptr().cast();
                    d.data_off = parts.head as u16;
                }
                None => {
                    d.m = std::ptr::null_mut();
                    d.data = pkt.data().as_ptr().cast();
                    ncopy += 1;
                }
            }
            n += 1;
        }
        if n == 0 {
            pkts.clear();
            return;
        }
        let mut refused = 0u16;
        // SAFETY: descs[..n] describe n frames: owned mbufs (taken from their packets, data
        // inside their buffers) or buffers of packets still in `pkts` until the call returns,
        // each at most the mbuf data room (checked above); the queue is ours; `refused` is a
        // live u16 for the call.
        let sent = unsafe {
            sys::brick_tx_desc_burst(
                self.port.mempool,
                self.port.id,
                self.queues[0],
                descs.as_mut_ptr(),
                n as u16,
                ncopy,
                noffload,
                &mut refused,
            )
        };
        if sent < 0 {
            // No mbuf for the copies: the port is backed up (the shim freed the owned mbufs).
            count_drop(&self.counters, out, DROP_TX_RING_FULL, n as u64);
        } else {
            let sent = sent as usize;
            let sent_bytes: u64 =
                if sent == n { bytes } else { descs[..sent].iter().map(|d| d.len as u64).sum() };
            self.counters.tx_packets.add(sent as u64);
            self.counters.tx_bytes.add(sent_bytes);
            if noffload > 0 {
                self.counters
                    .tx_csum_offloaded
                    .add(descs[..sent].iter().filter(|d| d.ol_flags != 0).count() as u64);
            }
            let refused = refused as usize;
            if refused > 0 {
                // rte_eth_tx_prepare refused an offload request (a driver limit).
                count_drop(&self.counters, out, DROP_BAD_OFFLOAD, refused as u64);
            }
            if sent + refused < n {
                count_drop(&self.counters, out, DROP_TX_RING_FULL, (n - sent - refused) as u64);
            }
        }
        pkts.clear();
    }
}

impl Brick for DpdkNic {
    fn kind(&self) -> &'static str {
        "dpdk"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::East)
    }

    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        self.process_burst(side, port, pkts, out)
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        if self.register_thread {
            EAL_THREAD.with(|_| {});
        }
        let mut n = 0;
        for i in 0..self.queues.len() {
            n += self.rx_queue(self.queues[i], out);
        }
        n
    }

    fn tick(&mut self, _now: Timestamp) {
        if self.queues.first() == Some(&0) {
            let missed = self.port_missed();
            self.counters.kernel_drops.add(missed.saturating_sub(self.last_missed));
            self.last_missed = missed;
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = self.counters.snapshot();
        vec![format!(
            "dpdk port {} ({}) queues:{:?} rx:{}p tx:{}p missed:{}",
            self.port.id, self.port.name, self.queues, s.rx_packets, s.tx_packets, s.kernel_drops
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sys::mbuf_flags::*;

    fn tcp4(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[34 + 12] = 0x50; // TCP header: 20 bytes
        f
    }

    #[test]
    fn checksum_offload_requests_only_for_frames_that_match_their_metadata() {
        let f = tcp4(100);
        assert_eq!(l4_csum_offload(&f, 14, 34, 16), Some((TX_IPV4 | TX_TCP_CKSUM, 14, 20)));
        assert_eq!(l4_csum_offload(&f, 0, 34, 6), Some((TX_IPV4 | TX_UDP_CKSUM, 14, 20)));
        assert_eq!(l4_csum_offload(&f, 14, 30, 16), None, "l3 shorter than an IP header");
        assert_eq!(l4_csum_offload(&f, 14, 34, 10), None, "neither TCP nor UDP");
        assert_eq!(l4_csum_offload(&f[..40], 14, 34, 16), None, "field beyond the frame");
        assert_eq!(l4_csum_offload(&f, 200, 34, 16), None);
        assert_eq!(l4_csum_offload(&vec![0x45; 2000], 14, 14 + 600, 16), None, "l3_len beyond 9 bits");
        assert_eq!(l4_csum_offload(&vec![0x45; 2000], 200, 240, 16), None, "l2_len beyond 7 bits");
        let mut v6 = f.clone();
        v6[14] = 0x60;
        assert_eq!(l4_csum_offload(&v6, 14, 54, 16).map(|r| r.0), Some(TX_IPV6 | TX_TCP_CKSUM));
        v6[14] = 0x70;
        assert_eq!(l4_csum_offload(&v6, 14, 54, 16), None);
    }

    #[test]
    fn tso_requests_need_a_tcp_super_frame_as_described() {
        let meta = Meta {
            l3_offset: 14,
            csum_start: 34,
            csum_offset: 16,
            gso_size: 1000,
            gso_type: GsoType::TcpV4,
            ..Meta::default()
        };
        let with = |f: &[u8], m: Meta| {
            let mut p = Packet::from_slice(f);
            *p.meta_mut() = m;
            tso_request(&p)
        };
        let r = with(&tcp4(5000), meta).unwrap();
        assert_eq!(
            (r.ol_flags, r.l2_len, r.l3_len, r.l4_len, r.segment),
            (TX_IPV4 | TX_IP_CKSUM | TX_TCP_SEG | TX_TCP_CKSUM, 14, 20, 20, 1000)
        );
        assert!(with(&tcp4(5000), Meta { gso_type: GsoType::TcpV6, ..meta }).is_none(), "v6 type on v4");
        assert!(with(&tcp4(5000), Meta { gso_size: 0, ..meta }).is_none());
        assert!(with(&tcp4(5000)[..40], meta).is_none(), "TCP header cut short");
        let mut bad = tcp4(5000);
        bad[34 + 12] = 0x10; // data offset 4 bytes
        assert!(with(&bad, meta).is_none());
        // A checksum start near the top of u16 (from a VM's header) must neither overflow nor
        // reach the mbuf's narrow length fields.
        let mut huge = vec![0u8; 65_600];
        huge[14] = 0x45;
        huge[65_500 + 12] = 0xf0;
        assert!(with(&huge, Meta { csum_start: 65_500, ..meta }).is_none());
    }
}

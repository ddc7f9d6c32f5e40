//! The EAL (initialised once per process), the threads registered with it, the mbuf owner
//! and the process-wide claims on ports and retired mempools.

use super::*;

pub(super) fn strerror(code: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    unsafe { CStr::from_ptr(sys::rte_strerror(code.abs())) }.to_string_lossy().into_owned()
}

pub(super) fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno.
    unsafe { sys::brick_rte_errno() }
}

pub(super) fn port_err(port: u16, op: &'static str, code: i32) -> DpdkError {
    DpdkError::Port { port, op, code, msg: strerror(code) }
}

/// Frees the mbuf behind a zero-copy packet that was dropped.
///
/// # Safety
/// `handle` is an mbuf lent to exactly one packet by `DpdkNic::rx_queue` (exclusive, direct,
/// single segment); its mempool stays alive while it is out (see `Port`'s `Drop`).
pub(super) unsafe fn release_mbuf(handle: NonNull<()>) {
    // SAFETY: see above; rte_pktmbuf_free is safe on any thread (non-EAL threads bypass the
    // per-lcore cache).
    unsafe { sys::brick_pktmbuf_free(handle.as_ptr().cast()) }
}

/// This thread's registration with the EAL, made the first time a [`DpdkNic`] runs on it
/// (when [`DpdkConfig::register_thread`] is on) and undone when the thread exits.
pub(super) struct EalThread {
    registered: bool,
}

impl EalThread {
    pub(super) fn register() -> EalThread {
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
    pub(super) static EAL_THREAD: EalThread = EalThread::register();
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
pub(super) static RETIRED_POOLS: Mutex<Vec<RetiredPool>> = Mutex::new(Vec::new());

pub(super) struct RetiredPool(#[allow(dead_code)] pub(super) *mut sys::rte_mempool);

// SAFETY: the pointer is only stored (never dereferenced or freed) after retirement.
unsafe impl Send for RetiredPool {}

/// Mempools of closed ports kept alive (for tests and monitoring).
pub fn retired_mempools() -> usize {
    RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// Ports opened by a [`DpdkNic`] of this process and not yet closed. A second open of one
/// would reconfigure, then (on its failure) stop and close the port under its first brick.
pub(super) static OPEN_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// A port id claimed in [`OPEN_PORTS`], released on drop.
pub(super) struct PortClaim(u16);

impl PortClaim {
    pub(super) fn take(id: u16) -> Result<PortClaim, DpdkError> {
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

pub(super) static EAL: OnceLock<Eal> = OnceLock::new();
pub(super) static EAL_LOCK: Mutex<()> = Mutex::new(());
pub(super) static POOL_SEQ: AtomicU32 = AtomicU32::new(0);

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

    pub(super) fn check_port(&self, port: u16) -> Result<(), DpdkError> {
        // SAFETY: plain query.
        if unsafe { sys::rte_eth_dev_is_valid_port(port) } == 0 {
            return Err(DpdkError::NoSuchPort(port));
        }
        Ok(())
    }
}

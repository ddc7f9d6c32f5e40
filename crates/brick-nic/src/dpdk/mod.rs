//! DPDK brick (cargo feature `dpdk`): a DPDK ethdev port, several queues, MTU, link status
//! and offload capabilities, on Debian's DPDK 22.11 through our `dpdk-sys` binding.
//!
//! **Zero copy** by default ([`DpdkConfig::zero_copy`]): a received single-segment mbuf
//! becomes a [`brick_core::Packet`] over the mbuf's own buffer (a
//! [`ForeignOwner`] whose release frees the mbuf), and a packet that comes back to any
//! `DpdkNic` still in its mbuf is transmitted in that mbuf, with the headers bricks prepended
//! or pulled. Everything else (pool packets, multi-segment mbufs) is copied once (counted in
//! `tx_copied`). The other way round, the port **lends** its mbufs
//! ([`DpdkNic::lent_buffers`], module `lend`): a brick that makes frames (a vhost-user VM's
//! NIC) copies them straight into one, which this port then sends as it is. The C shim does
//! a whole burst per FFI call (receive + read every mbuf's fields; fix up or allocate + fill
//! + transmit + free the unsent).

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, OnceLock};

use brick_core::{
    Brick, Burst, ForeignOwner, GsoType, LentBuffers, Meta, OffloadFlags, Output, Packet, PacketPool,
    PacketSource, PortId, Side, Timestamp, BURST_SIZE,
};
use dpdk_sys as sys;

use crate::counters::*;
use crate::offload::{complete_checksum, guess_l2_l3};
use crate::NicError;

mod eal;
mod lend;
mod open;
mod rx;
mod tx;

use eal::*;
pub use eal::{current_lcore, retired_mempools, Eal, MBUF_OWNER};
pub use lend::{MbufSource, MIN_LENT_FRAME};
use open::*;
#[cfg(test)]
use tx::*;

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
        let id = resolve_port(eal, &cfg.port)?;
        if cfg.queues == 0 {
            return Err(DpdkError::Config("queues must be at least 1".into()).into());
        }
        // Before anything that could touch the port: if another brick drives it, an error
        // here leaves it alone.
        let claim = PortClaim::take(id)?;
        let info = device_info(id, cfg.queues)?;
        let caps = OffloadCaps { rx_raw: info.rx_offload_capa, tx_raw: info.tx_offload_capa };
        let (mempool, socket) = create_mempool(id, &cfg)?;
        // From here on, Port's Drop stops/closes the port and frees the pool on any error.
        let port = Arc::new(Port {
            id,
            name: port_name(id),
            mempool,
            caps,
            data_room: sys::RTE_MBUF_DEFAULT_DATAROOM as usize,
            _claim: claim,
        });
        let conf = port_conf(caps, &cfg);
        configure_queues(id, &cfg, &info, &conf.eth, socket, mempool)?;
        start_port(id, &cfg)?;
        let (tx_l4_csum, tx_tso) = (conf.tx_l4_csum, conf.tx_tso);
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
            "dpdk port {} ({}) queues:{:?} rx:{}p tx:{}p tx-copied:{}p tx-csum-offloaded:{}p missed:{}",
            self.port.id,
            self.port.name,
            self.queues,
            s.rx_packets,
            s.tx_packets,
            s.tx_copied,
            s.tx_csum_offloaded,
            s.kernel_drops
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

//! AF_PACKET brick: TPACKET_V3 mmap receive ring, mmap transmit ring or `sendmmsg`,
//! PACKET_FANOUT and PACKET_QDISC_BYPASS.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use brick_core::{
    Brick, Burst, GsoType, Meta, OffloadFlags, Output, Packet, PacketPool, PortId, Side, Timestamp,
    BURST_SIZE,
};

use brick_wire::EtherType;

use crate::bpf::BpfInsn;
use crate::counters::*;
use crate::offload::{
    complete_checksum, guess_l2_l3, parse_vnet, OffloadError, VnetHdr, VnetMeta, VNET_F_NEEDS_CSUM,
    VNET_HDR_LEN,
};
use crate::sys::{self, Mmap};
use crate::NicError;
use open::{bind_to, check_config, join_groups, map_rings, packet_socket, sys_err};

mod open;
mod rx;
mod tx;

#[cfg(test)]
use rx::rx_offload;

/// How packets from several sockets of one fanout group are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanoutMode {
    /// By flow hash (keeps a flow on one socket): the usual choice for worker graphs.
    Hash,
    /// Round robin.
    LoadBalance,
    /// By the CPU that received the packet (on veth, the sender's CPU).
    Cpu,
    /// Fill one socket, then the next.
    Rollover,
    /// Random.
    Random,
    /// By the device's recorded receive queue.
    QueueMapping,
    /// By a classic BPF program set with [`AfPacketNic::set_fanout_program`] (until then,
    /// every frame goes to the first socket); see [`crate::bpf`].
    Program,
}

impl FanoutMode {
    fn raw(self) -> u32 {
        match self {
            FanoutMode::Hash => libc::PACKET_FANOUT_HASH,
            FanoutMode::LoadBalance => libc::PACKET_FANOUT_LB,
            FanoutMode::Cpu => libc::PACKET_FANOUT_CPU,
            FanoutMode::Rollover => libc::PACKET_FANOUT_ROLLOVER,
            FanoutMode::Random => libc::PACKET_FANOUT_RND,
            FanoutMode::QueueMapping => libc::PACKET_FANOUT_QM,
            FanoutMode::Program => libc::PACKET_FANOUT_CBPF,
        }
    }
}

/// Membership of a PACKET_FANOUT group: every [`AfPacketNic`] opened on the same interface
/// with the same `group` shares its received traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    /// Group id (unique per network namespace).
    pub group: u16,
    /// Spreading policy.
    pub mode: FanoutMode,
    /// When a socket's ring is full, try the next one instead of dropping.
    pub rollover: bool,
}

/// How an [`AfPacketNic`] transmits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxMode {
    /// A TPACKET_V3 mmap transmit ring of this many 2 KiB frames (a power of two is not
    /// required); one `send()` kicks a whole burst.
    Ring {
        /// Frames in the ring.
        frames: u32,
    },
    /// One `sendmmsg()` per burst straight from the packet buffers (no copy into a ring).
    Sendmmsg,
}

/// Configuration of an [`AfPacketNic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AfPacketConfig {
    /// Size of one receive block (a multiple of the page size; bounds the largest frame).
    pub block_size: u32,
    /// Number of receive blocks.
    pub block_count: u32,
    /// How long the kernel waits before handing over a partly filled block, in ms: the
    /// worst-case receive latency at low rates.
    pub retire_timeout_ms: u32,
    /// Join a fanout group.
    pub fanout: Option<Fanout>,
    /// Transmit without the qdisc layer (PACKET_QDISC_BYPASS): faster, but no traffic
    /// shaping and a full device queue drops instead of queueing.
    pub qdisc_bypass: bool,
    /// Transmit path.
    pub tx_mode: TxMode,
    /// Put the interface in promiscuous mode while the brick exists.
    pub promiscuous: bool,
    /// Receive with a TPACKET_V2 ring (one slot of `V2_FRAME_SIZE` (4096) bytes per frame, handed
    /// over as soon as it is written) instead of TPACKET_V3 blocks, which are handed over only
    /// when full or after `retire_timeout_ms`: no latency floor at low rates, at the price of
    /// more ring memory per frame and frames limited to one slot. Transmit then uses
    /// `sendmmsg` whatever `tx_mode` says (the rings share the socket's version).
    pub low_latency: bool,
}

impl Default for AfPacketConfig {
    fn default() -> Self {
        AfPacketConfig {
            block_size: 1 << 20,
            block_count: 8,
            retire_timeout_ms: 1,
            fanout: None,
            qdisc_bypass: false,
            tx_mode: TxMode::Ring { frames: 1024 },
            promiscuous: true,
            low_latency: false,
        }
    }
}

/// Size of one receive slot in low-latency (TPACKET_V2) mode: a 64-byte header area and
/// frames up to 4032 bytes (jumbo frames beyond are counted as truncated).
pub const V2_FRAME_SIZE: u32 = 4096;

/// Size of one transmit ring frame.
const TX_FRAME_SIZE: u32 = 2048;
/// Where frame data starts in a transmit ring slot (TPACKET3_HDRLEN − sizeof(sockaddr_ll)).
const TX_DATA_OFFSET: usize = (size_of::<libc::tpacket3_hdr>() + 15) & !15;
/// Offset of `block_status` in a block descriptor.
const BLOCK_STATUS_OFFSET: usize = offset_of!(libc::tpacket_block_desc, hdr);
/// Offset of `tp_status` in a frame header.
const FRAME_STATUS_OFFSET: usize = offset_of!(libc::tpacket3_hdr, tp_status);
/// Ethernet header length.
const ETH_HLEN: usize = brick_wire::ethernet::field::LEN;
/// Largest frame data a transmit ring slot holds: the slot less its header and the
/// virtio-net header written in front of every frame (PACKET_VNET_HDR).
const TX_SLOT_DATA: usize = TX_FRAME_SIZE as usize - TX_DATA_OFFSET - VNET_HDR_LEN;
/// Receive buffer asked for the frames of the copy path (bigger than a V2 slot: TCP
/// super-frames from a local kernel, jumbo frames): room for about a hundred super-frames.
const COPY_RCVBUF: libc::c_int = 8 << 20;

/// Position inside the receive block being consumed.
#[derive(Clone, Copy, Debug)]
struct BlockCursor {
    remaining: u32,
    offset: usize,
}

/// A brick on a kernel network interface through an AF_PACKET socket.
///
/// Receive uses a TPACKET_V3 ring of `block_count` blocks: the kernel fills blocks, the
/// brick copies each frame into a pool packet and hands the block back. Outgoing frames are
/// never seen again (PACKET_IGNORE_OUTGOING). Frames the kernel had to drop because the ring
/// was full are read from PACKET_STATISTICS at each tick into
/// [`NicCounters::kernel_drops`].
///
/// Several bricks (one per worker graph) can share an interface with [`Fanout`]. The socket
/// is the brick's [`wake_fd`](Brick::wake_fd).
///
/// The socket uses PACKET_VNET_HDR: the kernel puts a virtio-net header in front of every
/// received frame, giving the exact position of a partial checksum (`csum_start`,
/// `csum_offset`: for a VXLAN frame from a local kernel, the *inner* TCP or UDP header) and
/// the GSO metadata of a TCP super-frame, which the brick copies into [`Meta`]. Frames larger
/// than the packet pool's data room (super-frames from a local kernel, jumbo frames) go into
/// the pool given with [`with_big_pool`](Self::with_big_pool), or are dropped as "too big".
pub struct AfPacketNic {
    ifname: String,
    ifindex: u32,
    fd: OwnedFd,
    ring: Mmap,
    cfg: AfPacketConfig,
    pool: PacketPool,
    big_pool: Option<PacketPool>,
    counters: Arc<NicCounters>,
    rx_block: u32,
    cursor: Option<BlockCursor>,
    tx_frames: u32,
    tx_head: u32,
    max_frame: usize,
    stash: Burst,
}

impl AfPacketNic {
    /// Sets the program of this socket's fanout group (joined with
    /// [`FanoutMode::Program`]): the kernel delivers each received frame to the socket whose
    /// join order is the program's result modulo the group's size. One member sets it for
    /// the whole group.
    pub fn set_fanout_program(&self, program: &[BpfInsn]) -> Result<(), NicError> {
        if !matches!(self.cfg.fanout, Some(Fanout { mode: FanoutMode::Program, .. })) {
            return Err(NicError::Config("a fanout program needs fanout mode Program".into()));
        }
        if program.is_empty() || program.len() > 4096 {
            return Err(NicError::Config(format!("fanout program of {} instructions", program.len())));
        }
        let mut insns: Vec<libc::sock_filter> = program.iter().map(|i| i.raw()).collect();
        let prog = libc::sock_fprog { len: insns.len() as u16, filter: insns.as_mut_ptr() };
        // The kernel copies the program during the call; `insns` outlives it.
        sys::setsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_FANOUT_DATA, &prog)
            .map_err(|e| NicError::sys("PACKET_FANOUT_DATA", &self.ifname, e))
    }

    /// Opens `ifname` in the current network namespace. Needs CAP_NET_RAW.
    pub fn open(ifname: &str, cfg: AfPacketConfig, pool: PacketPool) -> Result<AfPacketNic, NicError> {
        let ifindex = sys::ifindex(ifname)?;
        let tx_frames = check_config(&cfg)?;
        let fd = packet_socket(&cfg, ifname)?;
        let (ring, tx_frames) = map_rings(&fd, &cfg, tx_frames, ifname)?;
        bind_to(&fd, ifindex, ifname)?;
        join_groups(&fd, &cfg, ifindex, ifname)?;
        sys::set_nonblocking(&fd).map_err(sys_err("O_NONBLOCK", ifname))?;
        let mut nic = AfPacketNic {
            ifname: ifname.to_string(),
            ifindex,
            fd,
            ring,
            cfg,
            pool,
            big_pool: None,
            counters: NicCounters::new_shared(),
            rx_block: 0,
            cursor: None,
            tx_frames,
            tx_head: 0,
            max_frame: 0,
            stash: Burst::new(),
        };
        nic.refresh_mtu();
        Ok(nic)
    }

    /// Gives the brick a second pool for received frames larger than the first pool's data
    /// room: TCP super-frames (up to 64 KiB) that a local kernel (a veth peer, a VXLAN device
    /// on this host) hands over whole with GSO metadata, and jumbo frames. Without it they
    /// are dropped as "too big".
    pub fn with_big_pool(mut self, pool: PacketPool) -> AfPacketNic {
        self.big_pool = Some(pool);
        self
    }

    /// The interface name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The configuration in use.
    pub fn config(&self) -> &AfPacketConfig {
        &self.cfg
    }

    /// The brick's counters (share the `Arc` with a monitoring thread).
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }

    /// Largest frame (Ethernet header included, without VLAN tag) the brick transmits;
    /// larger ones are dropped as "too big". Follows the interface MTU (re-read every tick).
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Re-reads the interface MTU (done at every tick).
    pub fn refresh_mtu(&mut self) {
        if let Ok(mtu) = sys::mtu(&self.ifname) {
            let mut max = mtu as usize + ETH_HLEN;
            if self.tx_frames > 0 {
                max = max.min(TX_SLOT_DATA);
            }
            self.max_frame = max;
        }
    }

    /// Reads (and resets) the kernel's PACKET_STATISTICS into the counters.
    fn collect_kernel_stats(&mut self) {
        let zero = libc::tpacket_stats_v3 { tp_packets: 0, tp_drops: 0, tp_freeze_q_cnt: 0 };
        if let Ok(st) = sys::getsockopt(&self.fd, libc::SOL_PACKET, libc::PACKET_STATISTICS, zero) {
            self.counters.kernel_drops.add(st.tp_drops as u64);
            self.counters.kernel_freezes.add(st.tp_freeze_q_cnt as u64);
        }
    }

    fn block_ptr(&self, block: u32) -> *mut u8 {
        // SAFETY: block < block_count, so the offset stays inside the rx part of the mapping.
        unsafe { self.ring.ptr().add(block as usize * self.cfg.block_size as usize) }
    }

    fn block_status(&self, block: u32) -> &AtomicU32 {
        // SAFETY: block_status is a naturally aligned u32 inside the mapping, shared with the
        // kernel, which lives as long as `self`; all our accesses to it are atomic.
        unsafe { AtomicU32::from_ptr(self.block_ptr(block).add(BLOCK_STATUS_OFFSET).cast::<u32>()) }
    }

    fn tx_frame_ptr(&self, frame: u32) -> *mut u8 {
        let rx_len = self.cfg.block_size as usize * self.cfg.block_count as usize;
        // SAFETY: frame < tx_frames, so the frame lies inside the tx part of the mapping.
        unsafe { self.ring.ptr().add(rx_len + frame as usize * TX_FRAME_SIZE as usize) }
    }

    fn tx_frame_status(&self, frame: u32) -> &AtomicU32 {
        // SAFETY: tp_status is an aligned u32 in a frame of the mapping (see tx_frame_ptr).
        unsafe { AtomicU32::from_ptr(self.tx_frame_ptr(frame).add(FRAME_STATUS_OFFSET).cast::<u32>()) }
    }
}

impl Brick for AfPacketNic {
    fn kind(&self) -> &'static str {
        "af-packet"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::East)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        match self.cfg.tx_mode {
            TxMode::Ring { .. } if self.tx_frames > 0 => self.tx_ring(pkts, out),
            _ => self.tx_sendmmsg(pkts, out),
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        if self.cfg.low_latency {
            self.rx_v2(out)
        } else {
            self.rx(out)
        }
    }

    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn tick(&mut self, _now: Timestamp) {
        self.collect_kernel_stats();
        self.refresh_mtu();
        if self.tx_frames > 0 {
            // Frames left queued by an EAGAIN kick go now (no ring, no kick: the low-latency
            // mode sends with sendmmsg, and a kick there only earned EINVAL every tick).
            self.kick();
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = self.counters.snapshot();
        vec![
            format!(
                "if:{} rx:{}p/{}B tx:{}p/{}B",
                self.ifname, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes
            ),
            format!("kernel drops:{} freezes:{}", s.kernel_drops, s.kernel_freezes),
        ]
    }
}

impl Drop for AfPacketNic {
    fn drop(&mut self) {
        // Hand the frames still queued in the tx ring to the kernel before closing.
        if self.tx_frames > 0 {
            self.kick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants_match_the_kernel() {
        assert_eq!(size_of::<libc::tpacket3_hdr>(), 48);
        assert_eq!(TX_DATA_OFFSET, libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>());
        assert_eq!(BLOCK_STATUS_OFFSET, 8);
        assert_eq!(FRAME_STATUS_OFFSET, 20);
    }

    #[test]
    fn bad_configs_and_names_are_errors() {
        let pool = PacketPool::with_count(4).unwrap();
        let err = AfPacketNic::open("nosuchif-zz9", AfPacketConfig::default(), pool.clone()).err().unwrap();
        assert!(matches!(err, NicError::NoSuchInterface(_)), "{err}");
        let err = AfPacketNic::open("this-name-is-too-long", AfPacketConfig::default(), pool.clone())
            .err()
            .unwrap();
        assert!(matches!(err, NicError::InvalidName { .. }), "{err}");
        let cfg = AfPacketConfig { block_size: 1000, ..AfPacketConfig::default() };
        assert!(matches!(AfPacketNic::open("lo", cfg, pool.clone()), Err(NicError::Config(_))));
        let cfg = AfPacketConfig { tx_mode: TxMode::Ring { frames: 0 }, ..AfPacketConfig::default() };
        assert!(matches!(AfPacketNic::open("lo", cfg, pool), Err(NicError::Config(_))));
    }

    #[test]
    fn the_kernels_virtio_net_header_gives_the_exact_offload_state() {
        use crate::offload::{VNET_F_DATA_VALID, VNET_GSO_TCPV4};
        let hdr = |h: VnetHdr| {
            let mut b = [0u8; VNET_HDR_LEN];
            h.write(&mut b);
            b
        };
        // A VXLAN frame from a local kernel: the partial checksum is the inner TCP one.
        let inner =
            hdr(VnetHdr { flags: VNET_F_NEEDS_CSUM, csum_start: 84, csum_offset: 16, ..Default::default() });
        let mut m = Meta::default();
        rx_offload(&inner, false, libc::TP_STATUS_CSUMNOTREADY, 200, &mut m).unwrap();
        assert_eq!(m.offload, OffloadFlags::CSUM_NEEDED);
        assert_eq!((m.csum_start, m.csum_offset, m.gso_type), (84, 16, GsoType::None));
        // A VLAN tag put back in front moves it by 4 bytes.
        let mut m = Meta::default();
        rx_offload(&inner, true, 0, 204, &mut m).unwrap();
        assert_eq!(m.csum_start, 88);
        // A super-frame keeps its GSO metadata.
        let gso = hdr(VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            gso_type: VNET_GSO_TCPV4,
            gso_size: 1398,
            csum_start: 84,
            csum_offset: 16,
            ..Default::default()
        });
        let mut m = Meta::default();
        rx_offload(&gso, false, 0, 30_000, &mut m).unwrap();
        assert_eq!((m.gso_type, m.gso_size), (GsoType::TcpV4, 1398));
        // Checked by the kernel, by the header or by the ring status.
        for (h, st) in [
            (hdr(VnetHdr { flags: VNET_F_DATA_VALID, ..Default::default() }), 0),
            (hdr(VnetHdr::default()), libc::TP_STATUS_CSUM_VALID),
        ] {
            let mut m = Meta::default();
            rx_offload(&h, false, st, 60, &mut m).unwrap();
            assert_eq!(m.offload, OffloadFlags::CSUM_VERIFIED);
        }
        let mut m = Meta::default();
        rx_offload(&hdr(VnetHdr::default()), false, 0, 60, &mut m).unwrap();
        assert_eq!(m, Meta::default(), "nothing to say: no offload state");
        // Inconsistent headers are refused and change nothing.
        let before = Meta { csum_start: 7, ..Meta::default() };
        for (h, len) in [(&inner[..], 90), (&inner[..9], 200), (&gso[..], 60)] {
            let mut m = before;
            assert!(rx_offload(h, false, 0, len, &mut m).is_err());
            assert_eq!(m, before);
        }
        let edge = hdr(VnetHdr {
            flags: VNET_F_NEEDS_CSUM,
            csum_start: u16::MAX,
            csum_offset: 0,
            ..Default::default()
        });
        assert!(rx_offload(&edge, true, 0, 70_000, &mut m).is_err(), "no overflow");
    }

    #[test]
    fn prepare_tx_checks_size_and_completes_checksums() {
        let mut small = brick_core::Packet::from_slice(&[0u8; 10]);
        assert_eq!(AfPacketNic::prepare_tx(1514, &mut small), Err(NicDrop::TxError));
        let mut big = brick_core::Packet::from_slice(&[0u8; 1515]);
        assert_eq!(AfPacketNic::prepare_tx(1514, &mut big), Err(NicDrop::TooBig));
        let mut tagged = vec![0u8; 1518];
        tagged[12] = 0x81;
        let mut tagged = brick_core::Packet::from_slice(&tagged);
        assert_eq!(AfPacketNic::prepare_tx(1514, &mut tagged), Ok(()));
        let mut bad = brick_core::Packet::from_slice(&[0u8; 60]);
        bad.meta_mut().offload = OffloadFlags::CSUM_NEEDED;
        bad.meta_mut().csum_start = 58;
        bad.meta_mut().csum_offset = 6;
        assert_eq!(AfPacketNic::prepare_tx(1514, &mut bad), Err(NicDrop::BadOffload));
    }
}

//! Opening an AF_PACKET brick, stage by stage: the ring geometry checked, the socket and its
//! options, the rings set up and mapped, the bind, the promiscuous and fanout memberships.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{AfPacketConfig, TxMode, COPY_RCVBUF, TX_FRAME_SIZE, V2_FRAME_SIZE};
use crate::sys::{self, Mmap};
use crate::NicError;

/// Ring blocks are whole pages.
const PAGE: u32 = 4096;

/// `NicError::Sys` of system call or option `op` on `ifname`.
pub(super) fn sys_err<'a>(op: &'static str, ifname: &'a str) -> impl Fn(io::Error) -> NicError + 'a {
    move |err| NicError::sys(op, ifname, err)
}

/// Checks the ring geometry; returns the TX ring's frames asked for (0: `sendmmsg`).
pub(super) fn check_config(cfg: &AfPacketConfig) -> Result<u32, NicError> {
    if cfg.block_size < PAGE || cfg.block_size % PAGE != 0 {
        return Err(NicError::Config(format!("block_size {} is not a multiple of {PAGE}", cfg.block_size)));
    }
    if cfg.block_count == 0 || cfg.block_count > 1024 {
        return Err(NicError::Config(format!("block_count {} not in 1..=1024", cfg.block_count)));
    }
    Ok(match cfg.tx_mode {
        TxMode::Ring { frames } if frames == 0 || frames > 65536 => {
            return Err(NicError::Config(format!("tx ring frames {frames} not in 1..=65536")))
        }
        _ if cfg.low_latency => 0,
        TxMode::Ring { frames } => frames,
        TxMode::Sendmmsg => 0,
    })
}

/// The packet socket with its options, before its rings: protocol 0 (nothing is queued
/// before the ring exists; bind sets ETH_P_ALL), TPACKET_V2 (low latency) or V3, virtio-net
/// headers, our own frames ignored.
pub(super) fn packet_socket(cfg: &AfPacketConfig, ifname: &str) -> Result<OwnedFd, NicError> {
    let e = |op| sys_err(op, ifname);
    // SAFETY: plain socket(2) call.
    let fd = sys::fd_or_err(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })
        .map_err(e("socket(AF_PACKET)"))?;
    let version =
        if cfg.low_latency { libc::tpacket_versions::TPACKET_V2 } else { libc::tpacket_versions::TPACKET_V3 }
            as libc::c_int;
    sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VERSION, &version).map_err(e("PACKET_VERSION"))?;
    let one: libc::c_int = 1;
    // Before the rings (the kernel refuses it after): a virtio-net header with the exact
    // checksum and GSO state of every frame, both ways.
    sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &one).map_err(e("PACKET_VNET_HDR"))?;
    if cfg.low_latency {
        // A frame too big for a V2 slot (a TCP super-frame from a local kernel, a jumbo
        // frame) is also queued whole on the socket, to be read with recvmsg, instead of
        // being truncated. The buffer bounds how many can wait; root may exceed rmem_max.
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_COPY_THRESH, &one)
            .map_err(e("PACKET_COPY_THRESH"))?;
        if sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &COPY_RCVBUF).is_err() {
            let _ = sys::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &COPY_RCVBUF);
        }
    }
    sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &one)
        .map_err(e("PACKET_IGNORE_OUTGOING"))?;
    if cfg.qdisc_bypass {
        sys::setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(e("PACKET_QDISC_BYPASS"))?;
    }
    Ok(fd)
}

/// Sets up the RX ring (and the TX ring for `tx_frames` > 0) and maps them; returns the
/// mapping and the TX ring's frames (rounded up to whole blocks).
pub(super) fn map_rings(
    fd: &OwnedFd,
    cfg: &AfPacketConfig,
    tx_frames: u32,
    ifname: &str,
) -> Result<(Mmap, u32), NicError> {
    let e = |op| sys_err(op, ifname);
    if cfg.low_latency {
        let v2_req = libc::tpacket_req {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: V2_FRAME_SIZE,
            tp_frame_nr: cfg.block_size / V2_FRAME_SIZE * cfg.block_count,
        };
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &v2_req).map_err(e("PACKET_RX_RING"))?;
    } else {
        let rx_req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: TX_FRAME_SIZE,
            tp_frame_nr: cfg.block_size / TX_FRAME_SIZE * cfg.block_count,
            tp_retire_blk_tov: cfg.retire_timeout_ms.max(1),
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_RX_RING, &rx_req).map_err(e("PACKET_RX_RING"))?;
    }
    let rx_len = cfg.block_size as usize * cfg.block_count as usize;
    let mut tx_len = 0usize;
    if tx_frames > 0 {
        let per_block = PAGE / TX_FRAME_SIZE; // 2 frames per 4 KiB block
        let blocks = tx_frames.div_ceil(per_block);
        let tx_req = libc::tpacket_req3 {
            tp_block_size: PAGE,
            tp_block_nr: blocks,
            tp_frame_size: TX_FRAME_SIZE,
            tp_frame_nr: blocks * per_block,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_TX_RING, &tx_req).map_err(e("PACKET_TX_RING"))?;
        tx_len = PAGE as usize * blocks as usize;
    }
    let ring = Mmap::map(fd, rx_len + tx_len).map_err(e("mmap"))?;
    Ok((ring, (tx_len / TX_FRAME_SIZE as usize) as u32))
}

/// Binds the socket to the interface, all protocols.
pub(super) fn bind_to(fd: &OwnedFd, ifindex: u32, ifname: &str) -> Result<(), NicError> {
    // SAFETY: sockaddr_ll is plain data; zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binding our socket to a sockaddr_ll we own, with its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        // The interface may have vanished between the lookup and the bind.
        if sys::errno(&err) == libc::ENODEV {
            return Err(NicError::NoSuchInterface(ifname.to_string()));
        }
        return Err(NicError::sys("bind", ifname, err));
    }
    Ok(())
}

/// Promiscuous mode and the fanout group, as configured.
pub(super) fn join_groups(
    fd: &OwnedFd,
    cfg: &AfPacketConfig,
    ifindex: u32,
    ifname: &str,
) -> Result<(), NicError> {
    if cfg.promiscuous {
        // SAFETY: packet_mreq is plain data; zero is valid.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(sys_err("PACKET_ADD_MEMBERSHIP", ifname))?;
    }
    if let Some(f) = cfg.fanout {
        let mut flags = f.mode.raw();
        if f.rollover {
            flags |= libc::PACKET_FANOUT_FLAG_ROLLOVER;
        }
        let arg: u32 = f.group as u32 | (flags << 16);
        sys::setsockopt(fd, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
            .map_err(sys_err("PACKET_FANOUT", ifname))?;
    }
    Ok(())
}

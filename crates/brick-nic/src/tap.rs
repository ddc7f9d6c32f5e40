//! TAP brick: a kernel TAP device created or attached by name, with the virtio-net header
//! (IFF_VNET_HDR) carrying checksum and segmentation offloads, and several queues
//! (IFF_MULTI_QUEUE).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use brick_core::gso::{merge_header, TcpSegment};
use brick_core::{Brick, Burst, GsoType, OffloadFlags, Output, Packet, PacketPool, PortId, Side, BURST_SIZE};

use crate::counters::*;
use crate::offload::{
    complete_checksum, guess_l2_l3, parse_vnet, VnetHdr, VnetMeta, VnetTunnel, VNET_HDR_LEN, VNET_HDR_TNL_LEN,
};
use crate::sys;
use crate::NicError;

/// Which offloads the kernel may hand the brick (TUNSETOFFLOAD). Only meaningful with the
/// virtio-net header. With `csum`, frames may arrive with a partial checksum
/// (`OffloadFlags::CSUM_NEEDED`); with `tso4`/`tso6` (which need `csum`), TCP super-frames up
/// to 64 KiB arrive whole, so the pool's data room must be about 65 550 bytes or they are
/// dropped as "too big".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TapOffloads {
    /// TUN_F_CSUM: partial checksums.
    pub csum: bool,
    /// TUN_F_TSO4: TCP/IPv4 segmentation offload.
    pub tso4: bool,
    /// TUN_F_TSO6: TCP/IPv6 segmentation offload.
    pub tso6: bool,
    /// TUN_F_UDP_TUNNEL_GSO (Linux ≥ 6.17): TCP super-frames inside a UDP tunnel (VXLAN)
    /// cross whole, both ways, with the 24-byte virtio-net header carrying the outer UDP and
    /// inner IP offsets. Needs `csum` and `tso4`/`tso6`; fixed at creation (it sets the header
    /// size). Meant for an underlay TAP: the kernel segments after routing or bridging, or
    /// hands the super-frame on unsegmented (veth, NICs with VXLAN TSO).
    pub udp_tunnel: bool,
}

impl TapOffloads {
    /// Every offload this brick maps (checksum, TSO4, TSO6).
    pub const ALL: TapOffloads = TapOffloads { csum: true, tso4: true, tso6: true, udp_tunnel: false };
    /// [`ALL`](Self::ALL) plus UDP-tunnel super-frames, for an underlay TAP.
    pub const TUNNEL: TapOffloads = TapOffloads { csum: true, tso4: true, tso6: true, udp_tunnel: true };

    fn raw(self) -> libc::c_uint {
        let mut f = 0;
        if self.csum {
            f |= libc::TUN_F_CSUM;
            if self.tso4 {
                f |= libc::TUN_F_TSO4;
            }
            if self.tso6 {
                f |= libc::TUN_F_TSO6;
            }
            if self.udp_tunnel && (self.tso4 || self.tso6) {
                f |= TUN_F_UDP_TUNNEL_GSO;
            }
        }
        f
    }

    /// Size of the virtio-net header these offloads need.
    fn vnet_len(self) -> usize {
        if self.udp_tunnel {
            VNET_HDR_TNL_LEN
        } else {
            VNET_HDR_LEN
        }
    }
}

/// Configuration of a [`TapNic`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Number of queues (1 = single queue; more uses IFF_MULTI_QUEUE, at most 256).
    pub queues: u16,
    /// Prefix frames with a virtio-net header so offload metadata crosses (IFF_VNET_HDR).
    pub vnet_hdr: bool,
    /// Offloads the kernel may use towards the brick (needs `vnet_hdr`).
    pub offloads: TapOffloads,
    /// Software GRO on transmit (needs `vnet_hdr`): consecutive TCP segments of one flow in a
    /// burst are written as one super-frame with GSO metadata (one `writev` gathering their
    /// payloads, no copy), so the kernel behind the TAP (a VM) handles one 64 KiB frame
    /// instead of dozens. Segments are checked first (TCP checksum unless already verified).
    pub coalesce: bool,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig { queues: 1, vnet_hdr: true, offloads: TapOffloads::default(), coalesce: false }
    }
}

/// One queue (one file descriptor of the TAP device).
struct TapQueue {
    fd: OwnedFd,
}

/// A brick on a TAP device.
///
/// `poll` reads up to 64 frames per queue (one `readv` each) into pool packets and emits
/// them east; `process` writes each packet with one `writev`. With `vnet_hdr`, the
/// virtio-net header maps to [`Meta`](brick_core::Meta)'s offload fields both ways
/// (see [`crate::offload`]); without it, partial checksums are completed in software before
/// writing and super-frames are dropped as "too big".
pub struct TapNic {
    name: String,
    queues: Vec<TapQueue>,
    cfg: TapConfig,
    pool: PacketPool,
    counters: Arc<NicCounters>,
    epoll: Option<OwnedFd>,
    tx_rr: usize,
    /// Scratch for coalescing: the burst being sent, and one run of segments.
    held: Vec<Packet>,
    run: Vec<Packet>,
}

/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17), missing from libc.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;

/// TUNSETIFF flag missing from libc on some versions.
const IFF_TAP: libc::c_short = libc::IFF_TAP as libc::c_short;

impl TapNic {
    /// Creates a new TAP device called `name` (a `%d` in the name lets the kernel pick a
    /// number). Fails with [`NicError::AlreadyExists`] if the name is taken. The device
    /// disappears when the brick is dropped.
    pub fn create(name: &str, cfg: TapConfig, pool: PacketPool) -> Result<TapNic, NicError> {
        sys::check_ifname(name)?;
        if !name.contains('%') && sys::interface_exists(name) {
            return Err(NicError::AlreadyExists(name.to_string()));
        }
        Self::open(name, cfg, pool, true)
    }

    /// Attaches to an existing (persistent) TAP device, for example one made with
    /// `ip tuntap add NAME mode tap [multi_queue] [vnet_hdr]`. Fails with
    /// [`NicError::NoSuchInterface`] if there is none.
    pub fn attach(name: &str, cfg: TapConfig, pool: PacketPool) -> Result<TapNic, NicError> {
        sys::ifindex(name)?;
        Self::open(name, cfg, pool, false)
    }

    /// Attaches to the existing TAP device `name` of the network namespace `netns` (an open
    /// `/run/netns/NAME` or `/proc/PID/ns/net`, see [`crate::netns::find_interface`]): a
    /// persistent device that was moved into a VM's or a container's namespace. The opening
    /// happens on a short-lived thread inside `netns`; the brick's descriptors then work from
    /// any thread. Needs CAP_SYS_ADMIN and CAP_NET_ADMIN.
    pub fn attach_in(
        netns: std::os::fd::BorrowedFd<'_>,
        name: &str,
        cfg: TapConfig,
        pool: PacketPool,
    ) -> Result<TapNic, NicError> {
        crate::netns::in_netns(netns, move || Self::attach(name, cfg, pool))
            .map_err(|e| NicError::sys("setns", name, e))?
    }

    /// Makes the device outlive the brick (TUNSETPERSIST), or not: with `true`, dropping the
    /// brick leaves the interface in place, with its addresses and routes, in whatever
    /// namespace it was moved to, for [`attach`](Self::attach) or
    /// [`attach_in`](Self::attach_in) later (its carrier is down meanwhile); with `false` the
    /// device goes when its last descriptor closes.
    pub fn set_persistent(&self, on: bool) -> Result<(), NicError> {
        let q = self.queues.first().ok_or_else(|| NicError::Config("no queue".into()))?;
        // SAFETY: TUNSETPERSIST takes its flag by value.
        if unsafe { libc::ioctl(q.fd.as_raw_fd(), libc::TUNSETPERSIST, libc::c_ulong::from(on)) } < 0 {
            return Err(NicError::sys("TUNSETPERSIST", &self.name, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn open(name: &str, cfg: TapConfig, pool: PacketPool, exclusive: bool) -> Result<TapNic, NicError> {
        if cfg.queues == 0 || cfg.queues > 256 {
            return Err(NicError::Config(format!("queues {} not in 1..=256", cfg.queues)));
        }
        if cfg.offloads != TapOffloads::default() && !cfg.vnet_hdr {
            return Err(NicError::Config("offloads need the virtio-net header (vnet_hdr)".into()));
        }
        let mut flags = IFF_TAP | libc::IFF_NO_PI as libc::c_short;
        if cfg.vnet_hdr {
            flags |= libc::IFF_VNET_HDR as libc::c_short;
        }
        if cfg.queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE as libc::c_short;
        }
        let mut actual = name.to_string();
        let mut queues = Vec::with_capacity(cfg.queues as usize);
        for q in 0..cfg.queues {
            let path = c"/dev/net/tun";
            // SAFETY: open(2) of a static NUL-terminated path.
            let fd = sys::fd_or_err(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
                .map_err(|e| NicError::sys("open /dev/net/tun", name, e))?;
            let mut ifr = sys::ifreq_for(&actual);
            let excl = if exclusive && q == 0 { libc::IFF_TUN_EXCL as libc::c_short } else { 0 };
            ifr.ifr_ifru.ifru_flags = flags | excl;
            // SAFETY: TUNSETIFF reads and updates the ifreq we own.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
            if rc < 0 {
                let err = io::Error::last_os_error();
                return Err(match sys::errno(&err) {
                    libc::EBUSY if exclusive => NicError::AlreadyExists(actual),
                    _ => NicError::sys("TUNSETIFF", &actual, err),
                });
            }
            if q == 0 {
                let bytes: Vec<u8> = ifr.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
                actual = String::from_utf8_lossy(&bytes).into_owned();
            }
            if cfg.vnet_hdr {
                let sz = cfg.offloads.vnet_len() as libc::c_int;
                // SAFETY: TUNSETVNETHDRSZ reads an int we own.
                if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &sz) } < 0 {
                    return Err(NicError::sys("TUNSETVNETHDRSZ", &actual, io::Error::last_os_error()));
                }
                // SAFETY: TUNSETOFFLOAD takes the flags by value.
                if unsafe {
                    libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, cfg.offloads.raw() as libc::c_ulong)
                } < 0
                {
                    return Err(NicError::sys("TUNSETOFFLOAD", &actual, io::Error::last_os_error()));
                }
            }
            sys::set_nonblocking(&fd).map_err(|e| NicError::sys("O_NONBLOCK", &actual, e))?;
            queues.push(TapQueue { fd });
        }
        let epoll = if queues.len() > 1 { Some(Self::make_epoll(&queues, &actual)?) } else { None };
        Ok(TapNic {
            name: actual,
            queues,
            cfg,
            pool,
            counters: NicCounters::new_shared(),
            epoll,
            tx_rr: 0,
            held: Vec::with_capacity(BURST_SIZE),
            run: Vec::with_capacity(BURST_SIZE),
        })
    }

    fn make_epoll(queues: &[TapQueue], name: &str) -> Result<OwnedFd, NicError> {
        // SAFETY: plain epoll_create1(2).
        let ep = sys::fd_or_err(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })
            .map_err(|e| NicError::sys("epoll_create1", name, e))?;
        for (i, q) in queues.iter().enumerate() {
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
            // SAFETY: registering an fd we own with an event struct we own.
            let rc =
                unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, q.fd.as_raw_fd(), &mut ev) };
            if rc < 0 {
                return Err(NicError::sys("epoll_ctl", name, io::Error::last_os_error()));
            }
        }
        Ok(ep)
    }

    /// Splits a multiqueue brick into one brick per queue (same device), for one worker graph
    /// each. Each new brick has its own counters.
    pub fn into_queues(self) -> Vec<TapNic> {
        let TapNic { name, queues, cfg, pool, .. } = self;
        queues
            .into_iter()
            .map(|q| TapNic {
                name: name.clone(),
                queues: vec![q],
                cfg: TapConfig { queues: 1, ..cfg.clone() },
                pool: pool.clone(),
                counters: NicCounters::new_shared(),
                epoll: None,
                tx_rr: 0,
                held: Vec::with_capacity(BURST_SIZE),
                run: Vec::with_capacity(BURST_SIZE),
            })
            .collect()
    }

    /// The device name (the kernel's choice when created with `%d`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of queues this brick owns.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// The configuration in use.
    pub fn config(&self) -> &TapConfig {
        &self.cfg
    }

    /// The brick's counters.
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }

    /// Gives the device (the kernel's side of the TAP: a VM's or a container's interface)
    /// the Ethernet address `mac`, so that what it sends carries the address the rest of the
    /// graph expects. A group (multicast) or all-zero address is refused with
    /// [`NicError::Config`], leaving the device unchanged. Needs CAP_NET_ADMIN.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), NicError> {
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(NicError::Config(format!(
                "{} is not a unicast Ethernet address",
                mac.map(|b| format!("{b:02x}")).join(":")
            )));
        }
        sys::set_mac(&self.name, mac).map_err(|e| NicError::sys("SIOCSIFHWADDR", &self.name, e))
    }

    /// Changes the offloads the kernel may use towards the brick, live (TUNSETOFFLOAD).
    pub fn set_offloads(&mut self, offloads: TapOffloads) -> Result<(), NicError> {
        if !self.cfg.vnet_hdr {
            return Err(NicError::Config("offloads need the virtio-net header (vnet_hdr)".into()));
        }
        if offloads.udp_tunnel != self.cfg.offloads.udp_tunnel {
            return Err(NicError::Config("udp_tunnel is fixed at creation (header size)".into()));
        }
        for q in &self.queues {
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            if unsafe { libc::ioctl(q.fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads.raw() as libc::c_ulong) }
                < 0
            {
                return Err(NicError::sys("TUNSETOFFLOAD", &self.name, io::Error::last_os_error()));
            }
        }
        self.cfg.offloads = offloads;
        Ok(())
    }

    /// Reads up to one burst from queue `qi`; returns the frames consumed.
    fn rx_queue(&mut self, qi: usize, out: &mut Output<'_>) -> usize {
        let fd = self.queues[qi].fd.as_raw_fd();
        let vnet = self.cfg.vnet_hdr;
        let hlen = if vnet { self.cfg.offloads.vnet_len() } else { 0 };
        let mut n = 0;
        while n < BURST_SIZE {
            let Some(mut pkt) = self.pool.alloc() else {
                // Leave frames in the kernel queue (it drops when full, counted by the
                // kernel as tx_dropped of the tap); count the stall once.
                self.counters.rx_pool_empty.add(1);
                out.count_drop(NicDrop::RxPoolEmpty.index(), 1);
                break;
            };
            let mut hdr = [0u8; VNET_HDR_TNL_LEN];
            let mut overflow = [0u8; 1];
            let room = pkt.tailroom();
            let buf = match pkt.append(room) {
                Ok(b) => b,
                Err(_) => break,
            };
            let mut iov = [
                libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen },
                libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() },
                libc::iovec { iov_base: overflow.as_mut_ptr().cast(), iov_len: 1 },
            ];
            let (iov_ptr, iov_cnt) = if vnet { (iov.as_mut_ptr(), 3) } else { (iov[1..].as_mut_ptr(), 2) };
            // SAFETY: every iovec points to a live buffer of the stated length (the header and
            // overflow arrays on the stack, the packet's tailroom) for the duration of the call.
            let r = unsafe { libc::readv(fd, iov_ptr, iov_cnt) };
            if r < 0 {
                let err = io::Error::last_os_error();
                match sys::errno(&err) {
                    libc::EAGAIN => break,
                    libc::EINTR => continue,
                    libc::EFAULT | libc::EMSGSIZE => drop_pkt(&self.counters, out, pkt, NicDrop::TooBig),
                    _ => {
                        drop_pkt(&self.counters, out, pkt, NicDrop::RxError);
                        break;
                    }
                }
                n += 1;
                continue;
            }
            n += 1;
            let r = r as usize;
            if r < hlen + 14 {
                drop_pkt(&self.counters, out, pkt, NicDrop::RxError);
                continue;
            }
            let len = r - hlen;
            if len > room {
                drop_pkt(&self.counters, out, pkt, NicDrop::TooBig);
                continue;
            }
            pkt.truncate(len);
            let mut meta = *pkt.meta();
            if vnet {
                let applied = if hlen == VNET_HDR_TNL_LEN {
                    // A UDP-tunnel super-frame: the inner super-frame's fields (checksum
                    // start at the inner L4 header) map as usual once the tunnel bits and
                    // offsets are checked.
                    VnetTunnel::parse(&hdr).and_then(|t| {
                        let mut h = parse_vnet(&hdr)?;
                        if let Some(t) = t {
                            h.gso_type &= !t.kind;
                        }
                        h.apply_to(&mut meta, len)
                    })
                } else {
                    parse_vnet(&hdr).and_then(|h| h.apply_to(&mut meta, len))
                };
                if applied.is_err() {
                    drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload);
                    continue;
                }
                if meta.offload != OffloadFlags::NONE || meta.gso_type != GsoType::None {
                    self.counters.rx_offloaded.add(1);
                }
                if meta.gso_type != GsoType::None {
                    self.counters.rx_gso.add(1);
                }
            }
            guess_l2_l3(pkt.data(), &mut meta);
            *pkt.meta_mut() = meta;
            self.counters.rx_packets.add(1);
            self.counters.rx_bytes.add(len as u64);
            out.emit(Side::East, 0, pkt);
        }
        n
    }

    /// Picks the transmit queue for a frame: a hash of its addresses, so one flow stays on
    /// one queue.
    fn tx_queue_for(&self, data: &[u8]) -> usize {
        if self.queues.len() == 1 {
            return 0;
        }
        let key = data.get(26..38).or_else(|| data.get(0..12)).unwrap_or(&[]);
        let mut h: u32 = 0x811c_9dc5;
        for &b in key {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        h as usize % self.queues.len()
    }

    /// Sends a burst, merging runs of consecutive TCP segments of one flow (`coalesce`).
    fn tx_coalescing(&mut self, pkts: &mut Burst, out: &mut Output<'_>) {
        let mut held = std::mem::take(&mut self.held);
        let mut run = std::mem::take(&mut self.run);
        held.extend(pkts.drain());
        let mut it = held.drain(..).peekable();
        while let Some(first) = it.next() {
            let Some(seg) = TcpSegment::parse(first.data(), first.meta()) else {
                self.tx_one(first, out);
                continue;
            };
            let mut prev = seg;
            let mut merged = seg.payload;
            run.push(first);
            while let Some(next) = it.peek() {
                let Some(n) = TcpSegment::parse(next.data(), next.meta()) else { break };
                if !seg.follows(run[0].data(), &prev, merged, &n, next.data()) {
                    break;
                }
                merged += n.payload;
                prev = n;
                run.extend(it.next());
            }
            if run.len() == 1 {
                self.tx_one(run.pop().expect("one packet"), out);
            } else {
                self.tx_merged(&mut run, &seg, merged, prev.psh(), out);
            }
        }
        drop(it);
        self.held = held;
        self.run = run;
    }

    /// Writes `run` (segments checked by [`TcpSegment::follows`]) as one super-frame: the
    /// first segment's headers, rewritten, then every payload, gathered by one `writev`.
    fn tx_merged(
        &mut self,
        run: &mut Vec<Packet>,
        first: &TcpSegment,
        merged: usize,
        psh: bool,
        out: &mut Output<'_>,
    ) {
        let meta = merge_header(run[0].data_mut(), first, merged, psh);
        let mut hdr = [0u8; VNET_HDR_TNL_LEN];
        let hlen = self.cfg.offloads.vnet_len();
        let frame_len = first.hdr_len + merged;
        // The merged metadata describes the first segment's rewritten headers: the same
        // mapping as for any super-frame (it cannot fail for a merge of checked segments).
        match VnetHdr::from_meta(&meta, run[0].data()) {
            Ok(h) => h.write(&mut hdr[..VNET_HDR_LEN]),
            Err(_) => {
                for p in run.drain(..) {
                    drop_pkt(&self.counters, out, p, NicDrop::BadOffload);
                }
                return;
            }
        }
        let mut iov = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BURST_SIZE + 1];
        iov[0] = libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen };
        for (i, p) in run.iter().enumerate() {
            let d = if i == 0 { p.data() } else { &p.data()[first.hdr_len..] };
            iov[i + 1] = libc::iovec { iov_base: d.as_ptr() as *mut libc::c_void, iov_len: d.len() };
        }
        let q = self.tx_queue_for(run[0].data());
        let fd = self.queues[q].fd.as_raw_fd();
        let n = run.len();
        loop {
            // SAFETY: the first `n + 1` iovecs point to live buffers of the stated lengths (the
            // header on the stack, the packets of `run`, which outlive the call); writev only
            // reads them.
            let r = unsafe { libc::writev(fd, iov.as_ptr(), (n + 1) as libc::c_int) };
            if r >= 0 {
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(frame_len as u64);
                self.counters.tx_gso.add(1);
                self.counters.tx_coalesced.add(n as u64);
                run.clear();
                return;
            }
            let Some(reason) = tx_drop_reason(&io::Error::last_os_error(), true) else { continue };
            for p in run.drain(..) {
                drop_pkt(&self.counters, out, p, reason);
            }
            return;
        }
    }

    fn tx_one(&mut self, mut pkt: Packet, out: &mut Output<'_>) {
        let mut hdr = [0u8; VNET_HDR_TNL_LEN];
        let hlen = self.cfg.offloads.vnet_len();
        if self.cfg.vnet_hdr {
            match VnetHdr::from_meta(pkt.meta(), pkt.data()) {
                Ok(h) => h.write(&mut hdr[..VNET_HDR_LEN]),
                Err(_) => return drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload),
            }
            if pkt.meta().gso_type != GsoType::None {
                match VnetTunnel::for_frame(pkt.meta(), pkt.data()) {
                    Some(t) if hlen == VNET_HDR_TNL_LEN => {
                        t.write(&mut hdr);
                    }
                    // An encapsulated super-frame the device cannot take whole.
                    Some(_) => return drop_pkt(&self.counters, out, pkt, NicDrop::TooBig),
                    None => {}
                }
            }
        } else {
            let m = *pkt.meta();
            if m.gso_type != GsoType::None && m.gso_size > 0 {
                return drop_pkt(&self.counters, out, pkt, NicDrop::TooBig);
            }
            if m.offload.contains(OffloadFlags::CSUM_NEEDED)
                && !complete_checksum(pkt.data_mut(), m.csum_start, m.csum_offset)
            {
                return drop_pkt(&self.counters, out, pkt, NicDrop::BadOffload);
            }
        }
        let q = self.tx_queue_for(pkt.data());
        let fd = self.queues[q].fd.as_raw_fd();
        let iov = [
            libc::iovec { iov_base: hdr.as_mut_ptr().cast(), iov_len: hlen },
            libc::iovec { iov_base: pkt.data().as_ptr() as *mut libc::c_void, iov_len: pkt.len() },
        ];
        let (iov_ptr, cnt) = if self.cfg.vnet_hdr { (iov.as_ptr(), 2) } else { (iov[1..].as_ptr(), 1) };
        loop {
            // SAFETY: both iovecs point to live buffers of the stated lengths; writev only
            // reads them.
            let r = unsafe { libc::writev(fd, iov_ptr, cnt) };
            if r >= 0 {
                if self.cfg.vnet_hdr && pkt.meta().gso_type != GsoType::None {
                    self.counters.tx_gso.add(1);
                }
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(pkt.len() as u64);
                return;
            }
            let Some(reason) = tx_drop_reason(&io::Error::last_os_error(), self.cfg.vnet_hdr) else {
                continue;
            };
            return drop_pkt(&self.counters, out, pkt, reason);
        }
    }
}

impl Brick for TapNic {
    fn kind(&self) -> &'static str {
        "tap"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::East)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if self.cfg.coalesce && self.cfg.vnet_hdr && pkts.len() > 1 {
            return self.tx_coalescing(pkts, out);
        }
        for pkt in pkts.drain() {
            self.tx_one(pkt, out);
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        let nq = self.queues.len();
        let mut n = 0;
        for i in 0..nq {
            // Rotate the starting queue so no queue starves the others.
            let qi = (self.tx_rr + i) % nq;
            n += self.rx_queue(qi, out);
        }
        self.tx_rr = (self.tx_rr + 1) % nq;
        n
    }

    fn wake_fd(&self) -> Option<RawFd> {
        match &self.epoll {
            Some(ep) => Some(ep.as_raw_fd()),
            None => self.queues.first().map(|q| q.fd.as_raw_fd()),
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = self.counters.snapshot();
        vec![format!(
            "tap:{} queues:{} rx:{}p/{}B tx:{}p/{}B gso rx:{} tx:{} coalesced:{}",
            self.name,
            self.queues.len(),
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.rx_gso,
            s.tx_gso,
            s.tx_coalesced
        )]
    }
}

/// Why a write to the TAP failed, as a drop reason; `None` when it was interrupted (retry).
/// EINVAL means a virtio-net header the kernel refused when there is one.
fn tx_drop_reason(err: &io::Error, vnet_hdr: bool) -> Option<NicDrop> {
    Some(match sys::errno(err) {
        libc::EINTR => return None,
        libc::EAGAIN | libc::ENOBUFS => NicDrop::TxRingFull,
        libc::EMSGSIZE => NicDrop::TooBig,
        libc::EINVAL if vnet_hdr => NicDrop::BadOffload,
        _ => NicDrop::TxError,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> PacketPool {
        PacketPool::with_count(8).unwrap()
    }

    #[test]
    fn bad_configs_are_refused() {
        let cfg = TapConfig { queues: 0, ..TapConfig::default() };
        assert!(matches!(TapNic::create("bnt-cfg0", cfg, pool()), Err(NicError::Config(_))));
        let cfg = TapConfig { vnet_hdr: false, offloads: TapOffloads::ALL, ..TapConfig::default() };
        assert!(matches!(TapNic::create("bnt-cfg1", cfg, pool()), Err(NicError::Config(_))));
        assert!(matches!(
            TapNic::create("", TapConfig::default(), pool()),
            Err(NicError::InvalidName { .. })
        ));
        assert!(matches!(
            TapNic::attach("bnt-none-x", TapConfig::default(), pool()),
            Err(NicError::NoSuchInterface(_))
        ));
        assert!(matches!(
            TapNic::create("lo", TapConfig::default(), pool()),
            Err(NicError::AlreadyExists(_))
        ));
    }

    #[test]
    fn create_attach_and_split() {
        let cfg = TapConfig { queues: 3, offloads: TapOffloads::ALL, ..TapConfig::default() };
        let tap = TapNic::create("bnt-unit%d", cfg.clone(), pool()).unwrap();
        assert!(tap.name().starts_with("bnt-unit"));
        assert!(sys::interface_exists(tap.name()));
        assert_eq!(tap.queue_count(), 3);
        let wake = tap.wake_fd().unwrap();
        assert!(tap.queues.iter().all(|q| q.fd.as_raw_fd() != wake), "multiqueue wakes through epoll");
        // The same name cannot be created twice.
        assert!(matches!(TapNic::create(tap.name(), cfg.clone(), pool()), Err(NicError::AlreadyExists(_))));
        let name = tap.name().to_string();
        let parts = tap.into_queues();
        assert_eq!(parts.len(), 3);
        assert!(parts.iter().all(|p| p.queue_count() == 1 && p.name() == name));
        drop(parts);
        assert!(!sys::interface_exists(&name), "non-persistent tap goes away with its queues");
    }

    #[test]
    fn tx_queue_hash_is_stable_and_in_range() {
        let cfg = TapConfig { queues: 4, ..TapConfig::default() };
        let tap = TapNic::create("bnt-hash%d", cfg, pool()).unwrap();
        let frame = [7u8; 64];
        let q = tap.tx_queue_for(&frame);
        assert!(q < 4);
        assert_eq!(q, tap.tx_queue_for(&frame));
        assert!(tap.tx_queue_for(&[1, 2, 3]) < 4);
    }
}

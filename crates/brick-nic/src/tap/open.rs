//! Opening the TAP device: creating or attaching it by name (TUNSETIFF), one file
//! descriptor per queue, the epoll set that wakes a multiqueue brick, splitting it into
//! one brick per queue, and setting its Ethernet address.

use super::*;

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
}

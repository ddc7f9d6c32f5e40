//! Kernel network interfaces through rtnetlink: read one (index, MAC, MTU and its range),
//! set its MTU, bring it up. The daemon does this for the underlay device and for the kernel
//! side of the TAP NICs it creates, with no `ip` binary and with the kernel's own error.

use std::io;

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::Socket;

/// Why an interface could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The rtnetlink socket failed, or the kernel refused a request.
    #[error("{device}: rtnetlink: {source}")]
    Netlink {
        /// The interface.
        device: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// No interface has that name.
    #[error("{device}: no such interface")]
    NoDevice {
        /// The interface.
        device: String,
    },
    /// The interface has no 6-byte hardware address (not an Ethernet device).
    #[error("{device}: no Ethernet address (IFLA_ADDRESS {found:?})")]
    NoMac {
        /// The interface.
        device: String,
        /// What the kernel reported instead (empty: no address).
        found: Vec<u8>,
    },
    /// The kernel refused to bring the interface up.
    #[error("{device}: cannot bring it up: {source}")]
    Up {
        /// The interface.
        device: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
}

/// An interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Hardware address (`IFLA_ADDRESS`; empty if none).
    pub address: Vec<u8>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Current MTU.
    pub mtu: u32,
    /// `IFLA_MIN_MTU` (0: not reported).
    pub min_mtu: u32,
    /// `IFLA_MAX_MTU` (0: not reported, no limit).
    pub max_mtu: u32,
}

/// An rtnetlink request socket in the calling thread's network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens the socket; an answer that never comes is an error after 5 s, not a hang.
    pub fn open() -> io::Result<Rtnl> {
        let sock = butterfly_evpn::kernel::request_socket()?;
        Ok(Rtnl { sock, seq: 0, buf: vec![0; 1 << 16] })
    }

    /// Sends `msg` and reads up to the kernel's acknowledgement, handing each answer to `each`.
    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        header.sequence_number = self.seq;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        m.finalize();
        let mut req = vec![0; m.buffer_len()];
        m.serialize(&mut req);
        self.sock.send(&req, 0)?;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?.min(self.buf.len());
            let mut done = false;
            for m in butterfly_evpn::kernel::messages(&self.buf[..n]) {
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(_) => return Err(e.to_io()),
                        None => done = true,
                    },
                    NetlinkPayload::Done(_) => done = true,
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Interface `device`.
    pub fn link(&mut self, device: &str) -> Result<Link, LinkError> {
        let mut q = LinkMessage::default();
        q.attributes.push(LinkAttribute::IfName(device.to_string()));
        let mut found = None;
        let r = self.exchange(RouteNetlinkMessage::GetLink(q), |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                found = Some(link_of(&l));
            }
        });
        let no_device = || LinkError::NoDevice { device: device.to_string() };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(no_device()),
            Err(source) => Err(LinkError::Netlink { device: device.to_string(), source }),
            Ok(()) => found.ok_or_else(no_device),
        }
    }

    /// Sets the MTU of the interface of index `index`.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.exchange(RouteNetlinkMessage::SetLink(m), |_| {})
    }

    /// Sets `IFF_UP` on the interface of index `index`, leaving its other flags alone.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.exchange(RouteNetlinkMessage::SetLink(m), |_| {})
    }
}

fn link_of(l: &LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        address: Vec::new(),
        up: l.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        min_mtu: 0,
        max_mtu: 0,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::Address(mac) => link.address.clone_from(mac),
            LinkAttribute::Mtu(v) => link.mtu = *v,
            LinkAttribute::MinMtu(v) => link.min_mtu = *v,
            LinkAttribute::MaxMtu(v) => link.max_mtu = *v,
            _ => {}
        }
    }
    link
}

/// Brings interface `device` up (the kernel side of a TAP the daemon created, say).
pub fn link_up(device: &str) -> Result<(), LinkError> {
    let netlink = |source| LinkError::Netlink { device: device.to_string(), source };
    let mut nl = Rtnl::open().map_err(netlink)?;
    let link = nl.link(device)?;
    nl.set_up(link.index).map_err(|source| LinkError::Up { device: device.to_string(), source })
}

/// The Ethernet address of interface `device`.
pub fn link_mac(device: &str) -> Result<[u8; 6], LinkError> {
    let netlink = |source| LinkError::Netlink { device: device.to_string(), source };
    let link = Rtnl::open().map_err(netlink)?.link(device)?;
    ethernet_address(device, link.address)
}

fn ethernet_address(device: &str, address: Vec<u8>) -> Result<[u8; 6], LinkError> {
    <[u8; 6]>::try_from(address.as_slice())
        .map_err(|_| LinkError::NoMac { device: device.to_string(), found: address })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own in a new, empty network namespace (needs root, as the
    /// daemon's tests do): only `lo` is there, and it is down.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) with CLONE_NEWNET moves only this thread (it shares no
            // files or memory that the flag changes), which ends after `f`.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    }

    #[test]
    fn link_up_sets_the_flag_the_kernel_reports() {
        let (before, after) = in_new_netns(|| {
            let mut nl = Rtnl::open().unwrap();
            let before = nl.link("lo").unwrap();
            link_up("lo").unwrap();
            (before, nl.link("lo").unwrap())
        });
        assert!(!before.up, "lo starts down in a new namespace");
        assert!(after.up, "and is up after link_up");
        assert_eq!(before.index, after.index);
        assert_eq!(after.mtu, before.mtu, "nothing else changed");
    }

    #[test]
    fn link_mac_reads_the_address_and_refuses_what_has_none() {
        let (lo, missing, missing_up) =
            in_new_netns(|| (link_mac("lo"), link_mac("bf-no-such-dev"), link_up("bf-no-such-dev")));
        // The loopback device has an all-zero 6-byte address.
        assert_eq!(lo.unwrap(), [0; 6]);
        for e in [missing.unwrap_err(), missing_up.unwrap_err()] {
            assert!(matches!(&e, LinkError::NoDevice { device } if device == "bf-no-such-dev"), "{e}");
            assert_eq!(e.to_string(), "bf-no-such-dev: no such interface");
        }
        // An IP tunnel's address is its 4-byte local IPv4 address: not a MAC.
        let e = ethernet_address("sit1", vec![192, 0, 2, 1]).unwrap_err();
        assert!(matches!(&e, LinkError::NoMac { found, .. } if found.len() == 4), "{e}");
        assert_eq!(ethernet_address("x", vec![2, 0, 0, 0, 0, 1]).unwrap(), [2, 0, 0, 0, 0, 1]);
    }
}

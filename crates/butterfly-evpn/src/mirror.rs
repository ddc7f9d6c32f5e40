//! The mirror namespace, written and read over rtnetlink (netlink-packet-route messages on
//! netlink-sys sockets opened inside the namespace).
//!
//! Per mirrored VNI `N` ([`crate::device_names`]): a bridge `bfbrN` (no address, IPv6
//! address generation off, so the kernel never sends anything from it), a VXLAN device
//! `bfvxN` (VNI `N`, `local` = butterflyd's VTEP address, no learning) and a veth
//! `bfapN`–`bfppN` whose first end is the bridge's access port, where the local MACs are.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoBridge, InfoData, InfoKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;

use crate::kernel::{self, Links, Role, Seen};
use crate::{device_names, parse_device_name, Mac};

/// The VXLAN UDP port of the mirror devices (zebra does not advertise it; it only has to be
/// the same on every mirror).
pub const VXLAN_PORT: u16 = 4789;

/// rtnetlink multicast group of neighbour (and FDB) changes.
const RTNLGRP_NEIGH: u32 = 3;

/// A failure talking to the mirror namespace.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The namespace could not be created or entered, or a socket opened.
    #[error("EVPN namespace {netns}: {source}")]
    Netns {
        /// The namespace.
        netns: String,
        /// Why.
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("EVPN namespace {netns}: {what}: {source}")]
    Request {
        /// The namespace.
        netns: String,
        /// What was asked.
        what: String,
        /// The kernel's answer.
        source: io::Error,
    },
}

/// Builds a request message.
fn nl(msg: RouteNetlinkMessage, flags: u16, seq: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut m = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    m.finalize();
    let mut buf = vec![0; m.buffer_len()];
    m.serialize(&mut buf);
    buf
}

fn no_addrgen() -> LinkAttribute {
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
        In6AddrGenMode::None,
    )])])
}

fn link_named(name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    m
}

fn fdb_msg(port: u32, mac: Mac) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = port;
    m.header.state = NeighbourState::Noarp; // "static": never ages, and zebra advertises it
    m.header.flags = NeighbourFlags::Controller; // in the bridge's table ("master")
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    m
}

fn neigh_msg(bridge: u32, ip: IpAddr, mac: Option<Mac>) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    m.header.ifindex = bridge;
    m.header.state = NeighbourState::Noarp;
    m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::from(ip)));
    if let Some(mac) = mac {
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    m
}

/// A request socket in the mirror namespace.
pub struct Mirror {
    netns: String,
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").field("netns", &self.netns).finish()
    }
}

/// A socket that `open` opens in namespace `netns` (created if it does not exist).
fn socket_in(
    netns: &str,
    open: impl FnOnce() -> io::Result<Socket> + Send + 'static,
) -> Result<Socket, MirrorError> {
    let err = |source| MirrorError::Netns { netns: netns.to_string(), source };
    crate::netns::ensure(netns).map_err(err)?;
    let sock = crate::netns::run_in(netns, open).map_err(err)?.map_err(err)?;
    Ok(sock)
}

impl Mirror {
    /// Opens the mirror in namespace `netns`, creating the namespace if it does not exist.
    pub fn open(netns: &str) -> Result<Mirror, MirrorError> {
        // An answer that never comes is an error after 5 s, not a hang.
        let sock = socket_in(netns, kernel::request_socket)?;
        Ok(Mirror { netns: netns.to_string(), sock, seq: 1, buf: vec![0; 1 << 16] })
    }

    /// The namespace.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    fn fail(&self, what: impl Into<String>, source: io::Error) -> MirrorError {
        MirrorError::Request { netns: self.netns.clone(), what: what.into(), source }
    }

    /// Sends `msg` and reads the answers up to the acknowledgement (or the end of a dump),
    /// handing each message to `each`.
    fn exchange(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> Result<(), MirrorError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let req = nl(msg, flags, seq);
        self.sock.send(&req, 0).map_err(|e| self.fail(what, e))?;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0).map_err(|e| self.fail(what, e))?;
            let n = n.min(self.buf.len());
            let mut end = false;
            let mut error = None;
            for m in kernel::messages(&self.buf[..n]) {
                if m.header.sequence_number != seq {
                    continue; // an answer to an earlier request that timed out
                }
                match m.payload {
                    NetlinkPayload::Done(_) => end = true,
                    NetlinkPayload::Error(e) => {
                        end = true;
                        if e.code.is_some() {
                            error = Some(e.to_io());
                        }
                    }
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
            }
            if let Some(e) = error {
                return Err(self.fail(what, e));
            }
            if end {
                return Ok(());
            }
        }
    }

    fn request(&mut self, what: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<(), MirrorError> {
        self.exchange(what, msg, NLM_F_REQUEST | NLM_F_ACK | flags, |_| {})
    }

    /// Every link of the namespace: index → name.
    pub fn all_links(&mut self) -> Result<HashMap<u32, String>, MirrorError> {
        let mut out = HashMap::new();
        self.exchange(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    if let Some(name) = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    }) {
                        out.insert(l.header.index, name);
                    }
                }
            },
        )?;
        Ok(out)
    }

    /// The mirror devices present: index → (VNI, role).
    pub fn links(&mut self) -> Result<Links, MirrorError> {
        Ok(self.all_links()?.into_iter().filter_map(|(i, n)| Some((i, parse_device_name(&n)?))).collect())
    }

    /// The devices of `vni` present, found by name: one request per device, where
    /// [`links`](Self::links) dumps every device of the namespace (with many VNIs mirrored,
    /// much more).
    pub fn vni_links(&mut self, vni: u32) -> Result<Links, MirrorError> {
        let mut out = Links::new();
        let roles = [Role::Bridge, Role::Vxlan, Role::Port, Role::Peer];
        for (role, name) in roles.into_iter().zip(device_names(vni)) {
            match self.index_of(&name) {
                Ok(index) => {
                    out.insert(index, (vni, role));
                }
                Err(MirrorError::Request { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The VNIs mirrored with all their devices, and each one's VXLAN `local` address.
    pub fn vnis(&mut self) -> Result<HashMap<u32, Option<IpAddr>>, MirrorError> {
        let mut out: HashMap<u32, (u8, Option<IpAddr>)> = HashMap::new();
        self.exchange(
            "list links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
            |m| {
                let RouteNetlinkMessage::NewLink(l) = m else { return };
                let Some((vni, role)) = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => parse_device_name(n),
                    _ => None,
                }) else {
                    return;
                };
                let e = out.entry(vni).or_default();
                e.0 |= 1 << role as u8;
                if role == Role::Vxlan {
                    for a in &l.attributes {
                        let LinkAttribute::LinkInfo(infos) = a else { continue };
                        for i in infos {
                            let LinkInfo::Data(InfoData::Vxlan(v)) = i else { continue };
                            for x in v {
                                match x {
                                    InfoVxlan::Local(ip) => e.1 = Some(IpAddr::V4(*ip)),
                                    InfoVxlan::Local6(ip) => e.1 = Some(IpAddr::V6(*ip)),
                                    _ => {}
                                }
                            }
                        }
                    }
                }
            },
        )?;
        Ok(out.into_iter().filter(|(_, (roles, _))| *roles == 0b1111).map(|(v, (_, ip))| (v, ip)).collect())
    }

    fn index_of(&mut self, name: &str) -> Result<u32, MirrorError> {
        let mut idx = None;
        self.exchange(
            &format!("find {name}"),
            RouteNetlinkMessage::GetLink(link_named(name)),
            NLM_F_REQUEST | NLM_F_ACK,
            |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    idx = Some(l.header.index);
                }
            },
        )?;
        idx.ok_or_else(|| self.fail(format!("find {name}"), io::Error::from(io::ErrorKind::NotFound)))
    }

    /// Creates the devices of `vni` with VTEP address `local` (any left over from before are
    /// replaced), bridged and up. On failure, what was created is removed.
    pub fn add_vni(&mut self, vni: u32, local: IpAddr) -> Result<(), MirrorError> {
        self.remove_vni(vni)?;
        let r = self.create_vni(vni, local);
        if r.is_err() {
            let _ = self.remove_vni(vni);
        }
        r
    }

    fn create_vni(&mut self, vni: u32, local: IpAddr) -> Result<(), MirrorError> {
        let [br, vx, ap, pp] = device_names(vni);
        let create = NLM_F_CREATE | NLM_F_EXCL;
        let mut m = link_named(&br);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::MulticastSnooping(false)])),
        ]));
        self.request(&format!("create {br}"), RouteNetlinkMessage::NewLink(m), create)?;
        let mut m = link_named(&vx);
        let local = match local {
            IpAddr::V4(v4) => InfoVxlan::Local(v4),
            IpAddr::V6(v6) => InfoVxlan::Local6(v6),
        };
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(vni),
                local,
                InfoVxlan::Port(VXLAN_PORT),
                InfoVxlan::Learning(false),
            ])),
        ]));
        self.request(&format!("create {vx}"), RouteNetlinkMessage::NewLink(m), create)?;
        let peer = link_named(&pp);
        let mut m = link_named(&ap);
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(&format!("create {ap}"), RouteNetlinkMessage::NewLink(m), create)?;
        let bridge = self.index_of(&br)?;
        for (name, master) in [(&vx, Some(bridge)), (&ap, Some(bridge)), (&pp, None), (&br, None)] {
            let index = self.index_of(name)?;
            // No IPv6 link-local address, so the kernel never sends anything from the mirror
            // (router solicitations, MLD) that the VXLAN device would carry to the peers.
            let mut m = LinkMessage::default();
            m.header.index = index;
            m.attributes.push(no_addrgen());
            self.request(&format!("set {name} addrgenmode none"), RouteNetlinkMessage::SetLink(m), 0)?;
            let mut m = LinkMessage::default();
            m.header.index = index;
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
            if let Some(b) = master {
                m.attributes.push(LinkAttribute::Controller(b));
            }
            self.request(&format!("set {name} up"), RouteNetlinkMessage::SetLink(m), 0)?;
        }
        Ok(())
    }

    /// Removes the devices of `vni` (zebra withdraws its routes); absent ones are fine.
    pub fn remove_vni(&mut self, vni: u32) -> Result<(), MirrorError> {
        let [br, vx, ap, _] = device_names(vni);
        for name in [&ap, &vx, &br] {
            match self.request(&format!("delete {name}"), RouteNetlinkMessage::DelLink(link_named(name)), 0) {
                Err(MirrorError::Request { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Adds local `mac` as a static FDB entry on access port `port` (zebra advertises it).
    pub fn add_mac(&mut self, port: u32, mac: Mac) -> Result<(), MirrorError> {
        let what = format!("add MAC {} on port {port}", crate::mac_str(&mac));
        self.request(
            &what,
            RouteNetlinkMessage::NewNeighbour(fdb_msg(port, mac)),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes local `mac` from access port `port` (zebra withdraws it); absent is fine.
    pub fn del_mac(&mut self, port: u32, mac: Mac) -> Result<(), MirrorError> {
        let what = format!("delete MAC {} on port {port}", crate::mac_str(&mac));
        match self.request(&what, RouteNetlinkMessage::DelNeighbour(fdb_msg(port, mac)), 0) {
            Err(MirrorError::Request { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Adds local `ip` → `mac` as a neighbour on bridge `bridge` (zebra advertises MAC+IP).
    pub fn add_ip(&mut self, bridge: u32, ip: IpAddr, mac: Mac) -> Result<(), MirrorError> {
        let what = format!("add {ip} on bridge {bridge}");
        self.request(
            &what,
            RouteNetlinkMessage::NewNeighbour(neigh_msg(bridge, ip, Some(mac))),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Removes local `ip` from bridge `bridge`; absent is fine.
    pub fn del_ip(&mut self, bridge: u32, ip: IpAddr) -> Result<(), MirrorError> {
        let what = format!("delete {ip} on bridge {bridge}");
        match self.request(&what, RouteNetlinkMessage::DelNeighbour(neigh_msg(bridge, ip, None)), 0) {
            Err(MirrorError::Request { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// Every FDB and neighbour entry of the mirror devices `links`, sorted.
    pub fn dump(&mut self, links: &Links) -> Result<Vec<Seen>, MirrorError> {
        let mut out = Vec::new();
        for family in [AddressFamily::Bridge, AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = NeighbourMessage::default();
            m.header.family = family;
            self.exchange(
                "dump neighbours",
                RouteNetlinkMessage::GetNeighbour(m),
                NLM_F_REQUEST | NLM_F_DUMP,
                |m| {
                    if let RouteNetlinkMessage::NewNeighbour(n) = m {
                        out.extend(kernel::classify(&n, true, links));
                    }
                },
            )?;
        }
        Ok(out)
    }
}

/// A socket subscribed to the namespace's neighbour and FDB changes.
pub struct Events {
    sock: Socket,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("fd", &self.sock.as_raw_fd()).finish()
    }
}

/// What one [`Events::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Nothing waiting.
    Empty,
    /// Messages read (their changes appended).
    Some,
    /// The kernel dropped messages (the socket's buffer overflowed): dump again.
    Overrun,
}

impl Events {
    /// Subscribes to neighbour changes in `netns` (created if missing).
    pub fn open(netns: &str) -> Result<Events, MirrorError> {
        let sock = socket_in(netns, || kernel::route_socket(&[RTNLGRP_NEIGH]))?;
        let _ = sock.set_rx_buf_sz(4 << 20);
        sock.set_non_blocking(true)
            .map_err(|source| MirrorError::Netns { netns: netns.to_string(), source })?;
        Ok(Events { sock, buf: vec![0; 1 << 16] })
    }

    /// The socket, to wait on.
    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Reads one datagram if any is waiting and appends its changes about `links`.
    pub fn read(&mut self, links: &Links, out: &mut Vec<Seen>) -> io::Result<Read> {
        match self.sock.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => {
                kernel::changes_from_datagram(&self.buf[..n.min(self.buf.len())], links, out);
                Ok(Read::Some)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read::Empty),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(Read::Overrun),
            Err(e) => Err(e),
        }
    }
}

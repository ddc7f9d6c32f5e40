//! What zebra installs in the mirror namespace, read from rtnetlink neighbour messages.
//!
//! Everything here reads input from the kernel (and, through zebra, from BGP peers): it never
//! panics, whatever the bytes ([`changes_from_datagram`] is property-tested and fuzzed), and
//! ignores what it does not recognise.
//!
//! What zebra writes (FRR 8.4, seen with `bridge monitor fdb` / `ip monitor neigh`):
//!
//! | route | kernel entry | here |
//! |---|---|---|
//! | type-2 MAC of VTEP X | `MAC dev bfvxN dst X self extern_learn` (+ a `master` twin without `dst`) | [`Entry::RemoteMac`] |
//! | type-2 MAC+IP | `IP dev bfbrN lladdr MAC extern_learn noarp proto zebra` | [`Entry::RemoteIp`] |
//! | type-3 of VTEP X | `00:00:00:00:00:00 dev bfvxN dst X self permanent` | [`Entry::Flood`] |
//!
//! Withdrawals are `RTM_DELNEIGH` of the same entries (a neighbour may first turn `FAILED`).
//!
//! The rtnetlink sockets these messages travel on are opened here too ([`route_socket`],
//! [`request_socket`]), for the mirror and for butterflyd's own interfaces.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::Mac;

/// What a mirror device is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// The VNI's bridge (zebra's SVI for MAC+IP entries).
    Bridge = 0,
    /// The VNI's VXLAN device (zebra installs remote MACs and flood entries on it).
    Vxlan = 1,
    /// The bridged end of the access veth (our local MACs are static FDB entries on it).
    Port = 2,
    /// The other end of the access veth (not bridged).
    Peer = 3,
}

/// Interface index → (VNI, role) of the mirror devices.
pub type Links = HashMap<u32, (u32, Role)>;

/// One entry zebra installed for a remote route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Entry {
    /// A remote MAC (type-2) behind a remote VTEP.
    RemoteMac {
        /// VNI.
        vni: u32,
        /// The MAC.
        mac: Mac,
        /// The VTEP that advertises it.
        vtep: IpAddr,
    },
    /// A remote VTEP that serves the VNI (type-3): a flood-list member.
    Flood {
        /// VNI.
        vni: u32,
        /// The remote VTEP.
        vtep: IpAddr,
    },
    /// A remote IP → MAC binding (type-2 MAC+IP).
    RemoteIp {
        /// VNI.
        vni: u32,
        /// The IP.
        ip: IpAddr,
        /// Its MAC (zero in a withdrawal that did not carry it).
        mac: Mac,
    },
}

/// An entry installed (or replaced) or removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Installed or replaced.
    Add(Entry),
    /// Removed.
    Del(Entry),
}

/// A local entry we wrote ourselves (read back when butterflyd starts, to reconcile).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Local {
    /// A static FDB entry on the access port: a local MAC.
    Mac {
        /// VNI.
        vni: u32,
        /// The MAC.
        mac: Mac,
    },
    /// A neighbour entry on the bridge that zebra did not install: a local IP.
    Ip {
        /// VNI.
        vni: u32,
        /// The IP.
        ip: IpAddr,
        /// Its MAC.
        mac: Mac,
    },
}

/// A neighbour message, sorted: a remote change, a local entry (dumps), or neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Something zebra installed or removed.
    Remote(Change),
    /// One of our own entries (present, or removed when `false`).
    Local(Local, bool),
}

fn mac_of(attrs: &[NeighbourAttribute]) -> Option<Mac> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
        _ => None,
    })
}

fn dst_of(attrs: &[NeighbourAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
        // AF_BRIDGE entries carry the VTEP as raw bytes.
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => match b.len() {
            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(|o| IpAddr::V6(Ipv6Addr::from(o))),
            _ => None,
        },
        _ => None,
    })
}

/// Whether an address can be a VTEP (unicast, specified).
fn unicast_ip(ip: IpAddr) -> bool {
    !ip.is_unspecified()
        && !ip.is_multicast()
        && !ip.is_loopback()
        && !matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
}

fn unicast_mac(m: &Mac) -> bool {
    m[0] & 1 == 0 && *m != [0; 6]
}

/// Sorts one neighbour message (`new`: RTM_NEWNEIGH, else RTM_DELNEIGH) against the mirror
/// devices `links`. Anything not about a mirror device, or malformed, is `None`.
pub fn classify(msg: &NeighbourMessage, new: bool, links: &Links) -> Option<Seen> {
    let h = &msg.header;
    let &(vni, role) = links.get(&h.ifindex)?;
    let attrs = msg.attributes.as_slice();
    match (h.family, role) {
        (AddressFamily::Bridge, Role::Vxlan) => {
            // Only the VXLAN device's own entries carry the remote VTEP.
            if !h.flags.contains(NeighbourFlags::Own) {
                return None;
            }
            let mac = mac_of(attrs)?;
            let vtep = dst_of(attrs).filter(|&ip| unicast_ip(ip))?;
            let entry = if mac == [0; 6] {
                Entry::Flood { vni, vtep }
            } else if unicast_mac(&mac) {
                Entry::RemoteMac { vni, mac, vtep }
            } else {
                return None;
            };
            Some(Seen::Remote(if new { Change::Add(entry) } else { Change::Del(entry) }))
        }
        (AddressFamily::Bridge, Role::Port) => {
            // Our static entries (NUD_NOARP); the port's own address is permanent.
            let mac = mac_of(attrs).filter(unicast_mac)?;
            if h.state != NeighbourState::Noarp {
                return None;
            }
            Some(Seen::Local(Local::Mac { vni, mac }, new))
        }
        (AddressFamily::Inet | AddressFamily::Inet6, Role::Bridge) => {
            let ip = dst_of(attrs).filter(|&ip| !ip.is_unspecified() && !ip.is_multicast())?;
            let mac = mac_of(attrs);
            let valid = !matches!(h.state, NeighbourState::Failed | NeighbourState::Incomplete);
            if h.flags.contains(NeighbourFlags::ExtLearned) {
                let entry = Entry::RemoteIp { vni, ip, mac: mac.unwrap_or([0; 6]) };
                return match (new && valid, mac) {
                    (true, Some(m)) if unicast_mac(&m) => Some(Seen::Remote(Change::Add(entry))),
                    (true, Some(_)) => None,
                    _ => Some(Seen::Remote(Change::Del(entry))),
                };
            }
            let mac = mac.filter(unicast_mac)?;
            (h.state == NeighbourState::Noarp).then_some(Seen::Local(Local::Ip { vni, ip, mac }, new))
        }
        _ => None,
    }
}

/// Reads every netlink message of one datagram (`buf`) and sorts the neighbour messages.
/// Stops at the first malformed message; never panics. Other messages (links, errors,
/// `NLMSG_DONE`) are skipped; `done` is set when `NLMSG_DONE` or an error ends a dump.
pub fn changes_from_datagram(buf: &[u8], links: &Links, out: &mut Vec<Seen>) -> bool {
    let mut done = false;
    for msg in messages(buf) {
        match msg.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(n)) => {
                out.extend(classify(&n, true, links));
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(n)) => {
                out.extend(classify(&n, false, links));
            }
            NetlinkPayload::Done(_) | NetlinkPayload::Error(_) => done = true,
            _ => {}
        }
    }
    done
}

/// The well-formed netlink messages of a datagram, in order, up to the first malformed one.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = NetlinkMessage<RouteNetlinkMessage>> + '_ {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let rest = buf.get(off..)?;
        // The header's length must cover the header and fit in what is left.
        let nb = NetlinkBuffer::new_checked(rest).ok()?;
        let len = nb.length() as usize;
        if len < 16 || len > rest.len() {
            return None;
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]).ok()?;
        off = off.saturating_add(len.checked_add(3)? & !3);
        Some(msg)
    })
}

/// How long a socket of [`request_socket`] waits for an answer: an answer that never comes
/// is an error after 5 s, not a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens an rtnetlink (`NETLINK_ROUTE`) socket in the calling thread's network namespace,
/// bound to a port the kernel picks, connected to the kernel and joined to the multicast
/// `groups` (`RTNLGRP_*`; none for a socket that only asks).
pub fn route_socket(groups: &[u32]) -> io::Result<Socket> {
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.connect(&SocketAddr::new(0, 0))?;
    for &g in groups {
        sock.add_membership(g)?;
    }
    Ok(sock)
}

/// Sets `SO_RCVTIMEO` on socket `sock`: a blocking `recv` that waits longer than `timeout`
/// fails with [`io::ErrorKind::WouldBlock`]. `timeout` is rounded down to microseconds; zero
/// means no timeout (socket(7)).
pub fn set_recv_timeout(sock: &impl AsFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: setsockopt(2) on a file descriptor that `sock` keeps open across the call,
    // with a pointer to a timeval that lives across the call and its exact size; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A socket for rtnetlink requests and their answers in the calling thread's network
/// namespace: [`route_socket`] with no group, whose `recv` gives up after
/// [`REQUEST_TIMEOUT`].
pub fn request_socket() -> io::Result<Socket> {
    let sock = route_socket(&[])?;
    set_recv_timeout(&sock, REQUEST_TIMEOUT)?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use proptest::prelude::*;

    fn links() -> Links {
        HashMap::from([(10, (42, Role::Bridge)), (11, (42, Role::Vxlan)), (12, (42, Role::Port))])
    }

    fn fdb(
        ifindex: u32,
        flags: NeighbourFlags,
        state: NeighbourState,
        mac: Mac,
        dst: Option<&[u8]>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = ifindex;
        m.header.flags = flags;
        m.header.state = state;
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        if let Some(d) = dst {
            m.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Other(d.to_vec())));
        }
        m
    }

    fn neigh(
        ifindex: u32,
        flags: NeighbourFlags,
        state: NeighbourState,
        ip: IpAddr,
        mac: Option<Mac>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        m.header.ifindex = ifindex;
        m.header.flags = flags;
        m.header.state = state;
        m.attributes.push(NeighbourAttribute::Destination(ip.into()));
        if let Some(mac) = mac {
            m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    /// Serializes `msgs` as one datagram, as the kernel sends them.
    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, m) in msgs.into_iter().enumerate() {
            let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
            nl.header.sequence_number = i as u32;
            nl.finalize();
            let mut b = vec![0; nl.buffer_len()];
            nl.serialize(&mut b);
            out.extend_from_slice(&b);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    const MAC: Mac = [0x52, 0x54, 0, 0, 0, 1];

    #[test]
    fn what_zebra_installs_is_sorted_into_remote_changes() {
        let own_ext = NeighbourFlags::Own | NeighbourFlags::ExtLearned;
        let l = links();
        // A remote MAC with its VTEP (the `self` entry); its `master` twin is ignored.
        let m = fdb(11, own_ext, NeighbourState::Reachable, MAC, Some(&[198, 18, 0, 2]));
        let vtep: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(
            classify(&m, true, &l),
            Some(Seen::Remote(Change::Add(Entry::RemoteMac { vni: 42, mac: MAC, vtep })))
        );
        assert_eq!(
            classify(&m, false, &l),
            Some(Seen::Remote(Change::Del(Entry::RemoteMac { vni: 42, mac: MAC, vtep })))
        );
        let twin = fdb(
            11,
            NeighbourFlags::Controller | NeighbourFlags::ExtLearned,
            NeighbourState::Reachable,
            MAC,
            None,
        );
        assert_eq!(classify(&twin, true, &l), None);
        // A flood entry (type-3), IPv6 too.
        let f = fdb(
            11,
            NeighbourFlags::Own,
            NeighbourState::Permanent,
            [0; 6],
            Some(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
        );
        assert_eq!(
            classify(&f, true, &l),
            Some(Seen::Remote(Change::Add(Entry::Flood { vni: 42, vtep: "fd00::2".parse().unwrap() })))
        );
        // A remote MAC+IP; a FAILED update is a withdrawal.
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        let n = neigh(10, NeighbourFlags::ExtLearned, NeighbourState::Noarp, ip, Some(MAC));
        assert_eq!(
            classify(&n, true, &l),
            Some(Seen::Remote(Change::Add(Entry::RemoteIp { vni: 42, ip, mac: MAC })))
        );
        let failed = neigh(10, NeighbourFlags::ExtLearned, NeighbourState::Failed, ip, None);
        assert_eq!(
            classify(&failed, true, &l),
            Some(Seen::Remote(Change::Del(Entry::RemoteIp { vni: 42, ip, mac: [0; 6] })))
        );
        // Our own entries, read back.
        let local = fdb(12, NeighbourFlags::Controller, NeighbourState::Noarp, MAC, None);
        assert_eq!(classify(&local, true, &l), Some(Seen::Local(Local::Mac { vni: 42, mac: MAC }, true)));
        let lip = neigh(10, NeighbourFlags::empty(), NeighbourState::Noarp, ip, Some(MAC));
        assert_eq!(classify(&lip, true, &l), Some(Seen::Local(Local::Ip { vni: 42, ip, mac: MAC }, true)));
    }

    #[test]
    fn anything_else_is_ignored() {
        let l = links();
        let own = NeighbourFlags::Own;
        let cases = [
            // Not a mirror device.
            fdb(99, own, NeighbourState::Reachable, MAC, Some(&[198, 18, 0, 2])),
            // No VTEP, a VTEP of odd length, a multicast or unspecified VTEP.
            fdb(11, own, NeighbourState::Reachable, MAC, None),
            fdb(11, own, NeighbourState::Reachable, MAC, Some(&[1, 2, 3])),
            fdb(11, own, NeighbourState::Reachable, MAC, Some(&[239, 1, 1, 1])),
            fdb(11, own, NeighbourState::Reachable, MAC, Some(&[0, 0, 0, 0])),
            // A group MAC.
            fdb(11, own, NeighbourState::Reachable, [1, 0, 0x5e, 0, 0, 1], Some(&[198, 18, 0, 2])),
            // The port's own permanent address.
            fdb(12, NeighbourFlags::Controller, NeighbourState::Permanent, MAC, None),
        ];
        for c in &cases {
            assert_eq!(classify(c, true, &l), None, "{c:?}");
        }
    }

    #[test]
    fn a_datagram_of_several_messages_is_read_whole() {
        let l = links();
        let own = NeighbourFlags::Own;
        let a = fdb(11, own, NeighbourState::Permanent, [0; 6], Some(&[198, 18, 0, 3]));
        let b =
            fdb(11, own | NeighbourFlags::ExtLearned, NeighbourState::Reachable, MAC, Some(&[198, 18, 0, 3]));
        let buf = datagram(vec![RouteNetlinkMessage::NewNeighbour(a), RouteNetlinkMessage::DelNeighbour(b)]);
        let mut out = Vec::new();
        assert!(!changes_from_datagram(&buf, &l, &mut out));
        assert_eq!(out.len(), 2);
        assert!(matches!(out[1], Seen::Remote(Change::Del(Entry::RemoteMac { .. }))));
        // Cut anywhere: whatever is whole is read, nothing panics.
        for cut in 0..buf.len() {
            let mut o = Vec::new();
            changes_from_datagram(&buf[..cut], &l, &mut o);
            assert!(o.len() <= 2);
        }
    }

    /// `SO_RCVTIMEO` of `sock`, as the kernel reports it.
    fn recv_timeout(sock: &Socket) -> Duration {
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
        let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        // SAFETY: getsockopt(2) on the open socket, into a timeval that lives across the
        // call, with its exact size in `len`.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&mut tv as *mut libc::timeval).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt(SO_RCVTIMEO): {}", io::Error::last_os_error());
        assert_eq!(len as usize, std::mem::size_of::<libc::timeval>());
        Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000)
    }

    #[test]
    fn a_request_socket_gives_up_after_its_timeout() {
        let sock = request_socket().expect("a NETLINK_ROUTE socket");
        assert_eq!(recv_timeout(&sock), REQUEST_TIMEOUT);
        // A plain route socket waits forever until told otherwise.
        let sock = route_socket(&[]).unwrap();
        assert_eq!(recv_timeout(&sock), Duration::ZERO);
        // Whole seconds: the kernel keeps the timeout in jiffies, which a fraction of a
        // second may not fill exactly (HZ=300).
        set_recv_timeout(&sock, Duration::from_secs(2)).unwrap();
        assert_eq!(recv_timeout(&sock), Duration::from_secs(2));
        // Nothing was asked, so nothing comes: recv fails once the timeout has passed.
        set_recv_timeout(&sock, Duration::from_millis(50)).unwrap();
        let t = std::time::Instant::now();
        let mut buf = vec![0u8; 4096];
        let e = sock.recv(&mut &mut buf[..], 0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}");
        assert!(t.elapsed() >= Duration::from_millis(40), "{:?}", t.elapsed());
    }

    fn arb_msg() -> impl Strategy<Value = (NeighbourMessage, bool)> {
        (
            prop_oneof![Just(AddressFamily::Bridge), Just(AddressFamily::Inet), Just(AddressFamily::Inet6)],
            prop_oneof![Just(10u32), Just(11), Just(12), Just(13), any::<u32>()],
            any::<u8>(),
            prop_oneof![
                Just(NeighbourState::Reachable),
                Just(NeighbourState::Noarp),
                Just(NeighbourState::Permanent),
                Just(NeighbourState::Failed)
            ],
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            any::<bool>(),
        )
            .prop_map(|(family, ifindex, flags, state, mac, dst, new)| {
                let mut m = NeighbourMessage::default();
                m.header.family = family;
                m.header.ifindex = ifindex;
                m.header.flags = NeighbourFlags::from_bits_retain(flags);
                m.header.state = state;
                m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac));
                if let Some(d) = dst {
                    let addr = match (family, d.len()) {
                        (AddressFamily::Inet, n) if n >= 4 => {
                            NeighbourAddress::Inet(Ipv4Addr::new(d[0], d[1], d[2], d[3]))
                        }
                        (AddressFamily::Inet6, n) if n >= 16 => {
                            NeighbourAddress::Inet6(Ipv6Addr::from(<[u8; 16]>::try_from(&d[..16]).unwrap()))
                        }
                        (AddressFamily::Inet, _) => NeighbourAddress::Inet(Ipv4Addr::LOCALHOST),
                        (AddressFamily::Inet6, _) => NeighbourAddress::Inet6(Ipv6Addr::LOCALHOST),
                        _ => NeighbourAddress::Other(d),
                    };
                    m.attributes.push(NeighbourAttribute::Destination(addr));
                }
                (m, new)
            })
    }

    proptest! {
        /// Whatever the bytes, reading a datagram never panics and yields at most one change
        /// per message.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut out = Vec::new();
            changes_from_datagram(&bytes, &links(), &mut out);
            prop_assert!(out.len() <= bytes.len() / 16 + 1);
        }

        /// Messages the kernel could send survive serialization: what is read from the bytes
        /// is what the message says, and every remote change names a mirror VNI, a unicast MAC
        /// (or zero for flood entries) and a usable VTEP.
        #[test]
        fn serialized_messages_read_back_alike(msgs in proptest::collection::vec(arb_msg(), 1..6)) {
            let l = links();
            let want: Vec<Seen> = msgs.iter().filter_map(|(m, new)| classify(m, *new, &l)).collect();
            let buf = datagram(msgs.into_iter().map(|(m, new)| if new {
                RouteNetlinkMessage::NewNeighbour(m)
            } else {
                RouteNetlinkMessage::DelNeighbour(m)
            }).collect());
            let mut got = Vec::new();
            changes_from_datagram(&buf, &l, &mut got);
            prop_assert_eq!(&got, &want);
            for s in got {
                if let Seen::Remote(Change::Add(e)) = s {
                    match e {
                        Entry::RemoteMac { vni, mac, vtep } => {
                            prop_assert_eq!(vni, 42);
                            prop_assert!(unicast_mac(&mac) && unicast_ip(vtep));
                        }
                        Entry::Flood { vni, vtep } => prop_assert!(vni == 42 && unicast_ip(vtep)),
                        Entry::RemoteIp { vni, mac, .. } => prop_assert!(vni == 42 && unicast_mac(&mac)),
                    }
                }
            }
        }

        /// Bytes flipped in a valid datagram: never a panic.
        #[test]
        fn mutated_datagrams_never_panic(msgs in proptest::collection::vec(arb_msg(), 1..4), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut buf = datagram(msgs.into_iter().map(|(m, _)| RouteNetlinkMessage::NewNeighbour(m)).collect());
            for (at, v) in flips {
                let n = buf.len();
                buf[at % n] ^= v;
            }
            let mut out = Vec::new();
            changes_from_datagram(&buf, &links(), &mut out);
        }
    }
}

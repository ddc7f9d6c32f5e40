//! ARP and neighbour-discovery suppression (RFC 7432 §10, RFC 9161): the answer a VTEP gives
//! a local VM that asks, by broadcast ARP request or multicast neighbour solicitation, for an
//! address whose MAC it already knows (from an EVPN type-2 MAC+IP route), so that the request
//! never crosses the underlay. VPP's `arp-term` node plays the same part.
//!
//! [`ProxyTable`] holds the bindings (address → MAC, bounded); [`answer`] reads one frame and,
//! when it is a request the table can answer, writes the reply. Everything else — replies,
//! gratuitous ARP, probes and duplicate-address detection, requests for unknown addresses,
//! anything malformed — is left to the network: the caller floods it unchanged.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use brick_core::checksum::{csum_add, csum_add_value, csum_fold};
use brick_wire::icmp::nd_field;
use brick_wire::{arp, Arp, EtherType, Ethernet, IpProto, Ipv6, MacAddr, Ndp};

/// Bindings one table holds by default: as many as the EVPN reconciler gives one VNI.
pub const DEFAULT_CAPACITY: usize = 8192;

/// Room [`answer`] needs for the longest reply: a neighbour advertisement with its target
/// link-layer address option (Ethernet 14 + IPv6 40 + NA 24 + option 8).
pub const MAX_REPLY: usize = 86;

/// Length of an ARP reply as written: the request's own, without padding (a NIC pads what
/// leaves on a wire), so the reply fits in any buffer that held a request.
const ARP_REPLY_LEN: usize = 42;

/// ICMPv6 length of the advertisement: its fixed part and the target link-layer option.
const NA_LEN: usize = nd_field::LEN + 8;

/// Neighbour-discovery messages carry hop limit 255 (RFC 4861 §7.1.1); others are forged.
const ND_HOP_LIMIT: u8 = 255;

/// The table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("neighbour suppression table full ({0} bindings)")]
pub struct TableFull(pub usize);

/// Address → MAC bindings to answer for, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct ProxyTable {
    map: HashMap<IpAddr, [u8; 6]>,
    capacity: usize,
}

impl Default for ProxyTable {
    fn default() -> Self {
        ProxyTable::new(DEFAULT_CAPACITY)
    }
}

impl ProxyTable {
    /// An empty table of at most `capacity` bindings.
    pub fn new(capacity: usize) -> ProxyTable {
        ProxyTable { map: HashMap::new(), capacity }
    }

    /// Binds `ip` to `mac` (replacing its MAC if it had one). A new address in a full table
    /// is refused; a MAC that is not unicast, or an address no host can hold (unspecified,
    /// multicast, broadcast), is ignored: it could never be answered for.
    pub fn insert(&mut self, ip: IpAddr, mac: [u8; 6]) -> Result<(), TableFull> {
        if !MacAddr(mac).is_unicast() || mac == [0; 6] || !answerable(ip) {
            return Ok(());
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&ip) {
            return Err(TableFull(self.capacity));
        }
        self.map.insert(ip, mac);
        Ok(())
    }

    /// Forgets `ip`; returns whether it was bound.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.map.remove(&ip).is_some()
    }

    /// The MAC bound to `ip`.
    #[inline]
    pub fn get(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.map.get(&ip).copied()
    }

    /// How many bindings it holds.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds none.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bindings, sorted by address.
    pub fn entries(&self) -> Vec<(IpAddr, [u8; 6])> {
        let mut v: Vec<(IpAddr, [u8; 6])> = self.map.iter().map(|(&ip, &mac)| (ip, mac)).collect();
        v.sort();
        v
    }
}

/// Whether a host can hold `ip` (so a request for it can be answered).
fn answerable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// Why a request was left to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The target address is not in the table.
    Unknown,
    /// Gratuitous ARP (sender and target addresses equal), an ARP probe (no sender address,
    /// RFC 5227) or duplicate-address detection (NS from the unspecified address): the
    /// sender checks or announces its own address, which only the network can answer.
    Announce,
    /// Malformed or forged: ARP not Ethernet/IPv4, an NS with a wrong checksum, hop limit
    /// or code, a bad option, or sent to another address than the target's solicited-node
    /// group.
    Malformed,
}

/// What [`answer`] made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An ARP reply of this many bytes was written: send it back instead of the request.
    ArpReply(usize),
    /// A neighbour advertisement of this many bytes was written: send it back instead.
    NdAdvert(usize),
    /// A request left to the network (flood it unchanged), and why.
    Pass(Pass),
    /// Neither an ARP request nor a neighbour solicitation.
    Other,
}

/// Reads `frame`, a broadcast or multicast frame from a local VM. An ARP request or a
/// neighbour solicitation for an address `lookup` knows is answered: the reply (from the
/// target's MAC and address, to the requester) is written to `out` and its length returned.
/// Never panics, whatever `frame` holds.
pub fn answer(
    frame: &[u8],
    lookup: impl FnOnce(IpAddr) -> Option<[u8; 6]>,
    out: &mut [u8; MAX_REPLY],
) -> Verdict {
    let Ok(eth) = Ethernet::new_checked(frame) else { return Verdict::Other };
    match eth.ethertype() {
        EtherType::ARP => answer_arp(&eth, lookup, out),
        EtherType::IPV6 => answer_ns(&eth, lookup, out),
        _ => Verdict::Other,
    }
}

fn answer_arp(
    eth: &Ethernet<&[u8]>,
    lookup: impl FnOnce(IpAddr) -> Option<[u8; 6]>,
    out: &mut [u8; MAX_REPLY],
) -> Verdict {
    let payload = eth.payload();
    let Ok(req) = Arp::new_checked(payload) else {
        return Verdict::Pass(Pass::Malformed);
    };
    if req.oper() != arp::field::REQUEST {
        return Verdict::Other;
    }
    // Ethernet hardware, IPv4 protocol: the only ARP there is to answer.
    let htype = u16::from_be_bytes([payload[0], payload[1]]);
    if htype != 1 || req.ptype() != EtherType::IPV4.0 || !req.sha().is_unicast() {
        return Verdict::Pass(Pass::Malformed);
    }
    let (spa, tpa) = (req.spa(), req.tpa());
    if spa == 0 || spa == tpa {
        return Verdict::Pass(Pass::Announce);
    }
    let Some(mac) = lookup(IpAddr::V4(Ipv4Addr::from(tpa))) else {
        return Verdict::Pass(Pass::Unknown);
    };
    let requester = req.sha();
    let Ok(mut e) = Ethernet::new_checked(&mut out[..]) else { return Verdict::Other };
    // To the requester's own MAC (where the switch will find it), from the target's.
    e.set_dst(eth.src());
    e.set_src(MacAddr(mac));
    e.set_ethertype(EtherType::ARP);
    let body = &mut out[brick_wire::ethernet::field::LEN..ARP_REPLY_LEN];
    body[0..2].copy_from_slice(&1u16.to_be_bytes());
    body[2..4].copy_from_slice(&EtherType::IPV4.0.to_be_bytes());
    body[4] = 6;
    body[5] = 4;
    let Ok(mut rep) = Arp::new_checked(body) else { return Verdict::Other };
    rep.set_oper(arp::field::REPLY);
    rep.set_sender(MacAddr(mac), tpa);
    rep.set_target(requester, spa);
    Verdict::ArpReply(ARP_REPLY_LEN)
}

fn answer_ns(
    eth: &Ethernet<&[u8]>,
    lookup: impl FnOnce(IpAddr) -> Option<[u8; 6]>,
    out: &mut [u8; MAX_REPLY],
) -> Verdict {
    let Ok(ip) = Ipv6::new_checked(eth.payload()) else { return Verdict::Other };
    // Extension headers in front of an NS are left alone (none is expected there).
    if ip.next_header() != IpProto::ICMPV6 {
        return Verdict::Other;
    }
    let msg = eth.payload().get(40..40 + ip.payload_len()).unwrap_or(&[]);
    if msg.first() != Some(&nd_field::NS) {
        return Verdict::Other;
    }
    let Ok(ns) = Ndp::new_checked(msg) else { return Verdict::Pass(Pass::Malformed) };
    let (src, dst, target) = (ip.src(), ip.dst(), Ipv6Addr::from(ns.target()));
    let sum = csum_fold(csum_add(pseudo_header(src, dst, msg.len()), msg));
    let solicited = Ipv6Addr::from(dst) == solicited_node(target);
    if ip.hop_limit() != ND_HOP_LIMIT || msg[1] != 0 || sum != 0 || !solicited || target.is_multicast() {
        return Verdict::Pass(Pass::Malformed);
    }
    // Options: each well formed; a source link-layer one, if any, is a unicast MAC.
    let mut slla = None;
    for opt in ns.options() {
        match opt {
            Ok(o) if o.kind == nd_field::OPT_SLLA => slla = MacAddr::from_bytes(o.data),
            Ok(_) => {}
            Err(_) => return Verdict::Pass(Pass::Malformed),
        }
    }
    if src == 0 {
        // Duplicate-address detection: only the address's owner may object.
        return Verdict::Pass(Pass::Announce);
    }
    let requester = slla.unwrap_or_else(|| eth.src());
    if !requester.is_unicast() {
        return Verdict::Pass(Pass::Malformed);
    }
    let Some(mac) = lookup(IpAddr::V6(target)) else {
        return Verdict::Pass(Pass::Unknown);
    };
    write_advert(out, requester, mac, target, src);
    Verdict::NdAdvert(MAX_REPLY)
}

/// Writes a solicited neighbour advertisement from `target` (at `mac`) to `to` (at
/// `requester`), with the override flag and the target link-layer option, as the owner of
/// `target` would send it.
fn write_advert(out: &mut [u8; MAX_REPLY], requester: MacAddr, mac: [u8; 6], target: Ipv6Addr, to: u128) {
    out.fill(0);
    out[0..6].copy_from_slice(&requester.0);
    out[6..12].copy_from_slice(&mac);
    out[12..14].copy_from_slice(&EtherType::IPV6.0.to_be_bytes());
    let ip = &mut out[14..54];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&(NA_LEN as u16).to_be_bytes());
    ip[6] = IpProto::ICMPV6.0;
    ip[7] = ND_HOP_LIMIT;
    ip[8..24].copy_from_slice(&target.octets());
    ip[24..40].copy_from_slice(&to.to_be_bytes());
    let na = &mut out[54..];
    na[0] = nd_field::NA;
    // Solicited and override: the answer of the address's owner (RFC 4861 §7.2.4).
    na[nd_field::FLAGS] = 0x60;
    na[nd_field::TARGET].copy_from_slice(&target.octets());
    na[24] = nd_field::OPT_TLLA;
    na[25] = 1;
    na[26..32].copy_from_slice(&mac);
    let sum = csum_fold(csum_add(pseudo_header(u128::from(target), to, NA_LEN), na));
    na[2..4].copy_from_slice(&sum.to_be_bytes());
}

/// The ICMPv6 pseudo-header sum (RFC 8200 §8.1).
fn pseudo_header(src: u128, dst: u128, len: usize) -> u64 {
    let acc = csum_add(csum_add(0, &src.to_be_bytes()), &dst.to_be_bytes());
    csum_add_value(acc, len as u64 + u64::from(IpProto::ICMPV6.0))
}

/// The solicited-node multicast group of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    let o = a.octets();
    Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(o[13]), u16::from_be_bytes([o[14], o[15]]))
}

#[cfg(test)]
mod tests;

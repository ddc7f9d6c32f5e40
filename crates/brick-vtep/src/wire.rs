//! Wire formats of the frames the VTEP parses or emits (Ethernet, ARP, IPv4, IPv6, UDP,
//! VXLAN, ICMP, ICMPv6/NDP, IGMP, MLDv2): the VTEP's parsed forms of the IP headers on top of
//! brick-wire's checked views, checksums, and builders. Nothing here panics on short or
//! malformed input: readers return `None` or an error.

use std::net::{Ipv4Addr, Ipv6Addr};

use brick_wire::ip::{v4_field, v6_field};
use brick_wire::transport::udp_field;
use brick_wire::{
    ethernet, vxlan, Arp, EtherType, IpProto, Ipv4, Ipv6, Ipv6Ext, NdOptions, Vxlan, WireError,
};

/// Ethernet header length.
pub const ETH_LEN: usize = ethernet::field::LEN;
/// IPv4 header length without options.
pub const IPV4_LEN: usize = v4_field::LEN;
/// IPv6 header length.
pub const IPV6_LEN: usize = v6_field::LEN;
/// UDP header length.
pub const UDP_LEN: usize = udp_field::LEN;
/// VXLAN header length.
pub const VXLAN_LEN: usize = vxlan::field::LEN;
/// Bytes prepended to an inner frame over an IPv4 underlay.
pub const OVERHEAD_V4: usize = ETH_LEN + IPV4_LEN + UDP_LEN + VXLAN_LEN;
/// Bytes prepended to an inner frame over an IPv6 underlay.
pub const OVERHEAD_V6: usize = ETH_LEN + IPV6_LEN + UDP_LEN + VXLAN_LEN;

/// EtherType of IPv4.
pub const ETH_IPV4: u16 = EtherType::IPV4.0;
/// EtherType of ARP.
pub const ETH_ARP: u16 = EtherType::ARP.0;
/// EtherType of IPv6.
pub const ETH_IPV6: u16 = EtherType::IPV6.0;
/// IP protocol numbers.
pub const PROTO_HOPOPT: u8 = IpProto::HOPOPT.0;
/// ICMP.
pub const PROTO_ICMP: u8 = IpProto::ICMP.0;
/// IGMP.
pub const PROTO_IGMP: u8 = IpProto::IGMP.0;
/// TCP.
pub const PROTO_TCP: u8 = IpProto::TCP.0;
/// UDP.
pub const PROTO_UDP: u8 = IpProto::UDP.0;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = IpProto::ICMPV6.0;
/// The VXLAN "I" flag (valid VNI), first byte of the VXLAN header.
pub const VXLAN_FLAG_I: u8 = vxlan::field::FLAG_I;

/// Broadcast MAC.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// 224.0.0.1, all systems.
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// 224.0.0.2, all routers (IGMPv2 leave).
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);
/// 224.0.0.22, IGMPv3 reports.
pub const IGMPV3_REPORTS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 22);
/// ff02::1, all nodes.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::16, MLDv2-capable routers.
pub const MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// The EtherType of a frame, if it has a full Ethernet header.
#[inline]
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    ethernet::Ethernet::new_checked(frame).ok().map(|e| e.ethertype().0)
}

/// Multicast MAC for an IPv4 group (01:00:5e + low 23 bits).
pub fn mcast_mac_v4(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// Multicast MAC for an IPv6 group (33:33 + last 32 bits).
pub fn mcast_mac_v6(ip: Ipv6Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node multicast address of `ip` (ff02::1:ffXX:XXXX).
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// The EUI-64 link-local address derived from a MAC (used as the MLD source, which must be
/// link-local, RFC 3810 §5.2.13).
pub fn link_local_from_mac(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        mac[0] ^ 2,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ])
}

// ---------------------------------------------------------------------------------------
// Checksums

pub use brick_core::checksum::{checksum, csum_add, csum_add_value, csum_fold};

/// Accumulator of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline]
pub fn pseudo_v6(src: &[u8; 16], dst: &[u8; 16], len: u32, proto: u8) -> u64 {
    let acc = csum_add(0, src);
    let acc = csum_add(acc, dst);
    acc + u64::from(len) + u64::from(proto)
}

/// Accumulator of the IPv4 pseudo-header.
#[inline]
pub fn pseudo_v4(src: &[u8; 4], dst: &[u8; 4], len: u16, proto: u8) -> u64 {
    csum_add_value(csum_add(csum_add(0, src), dst), u64::from(len) + u64::from(proto))
}

// ---------------------------------------------------------------------------------------
// Checked views

/// A parsed IPv4 header (checked: version, IHL, total length, header checksum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4View {
    /// Header length in bytes.
    pub ihl: usize,
    /// Total length (header + payload), within the buffer.
    pub total_len: usize,
    /// Protocol.
    pub proto: u8,
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// More-fragments flag or a fragment offset is set.
    pub fragment: bool,
    /// Don't-fragment flag.
    pub df: bool,
}

/// Why an IP header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpError {
    /// Shorter than the header or than the declared length.
    Truncated,
    /// Version or header length wrong.
    BadHeader,
    /// Header checksum wrong.
    BadChecksum,
}

impl From<WireError> for IpError {
    fn from(e: WireError) -> IpError {
        match e {
            WireError::Truncated => IpError::Truncated,
            _ => IpError::BadHeader,
        }
    }
}

/// Parses the IPv4 header at the start of `d` (brick-wire's checks: version, IHL, total
/// length within `d`), verifying its checksum.
#[inline]
pub fn parse_ipv4(d: &[u8]) -> Result<Ipv4View, IpError> {
    let ip = Ipv4::new_checked(d)?;
    let ok = match ip.header().first_chunk::<20>() {
        Some(h) if ip.header_len() == IPV4_LEN => {
            // The common case, unrolled: five 32-bit words.
            let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
            csum_fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0
        }
        _ => checksum(ip.header()) == 0,
    };
    if !ok {
        return Err(IpError::BadChecksum);
    }
    Ok(Ipv4View {
        ihl: ip.header_len(),
        total_len: ip.total_len(),
        proto: ip.proto().0,
        src: Ipv4Addr::from(ip.src()),
        dst: Ipv4Addr::from(ip.dst()),
        fragment: ip.is_fragment(),
        df: ip.dont_frag(),
    })
}

/// A parsed IPv6 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6View {
    /// Payload length (after the 40-byte header), within the buffer.
    pub payload_len: usize,
    /// Next header.
    pub next: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Source.
    pub src: Ipv6Addr,
    /// Destination.
    pub dst: Ipv6Addr,
}

/// Parses the IPv6 header at the start of `d` (brick-wire's checks: version, payload
/// length within `d`).
#[inline]
pub fn parse_ipv6(d: &[u8]) -> Result<Ipv6View, IpError> {
    let ip = Ipv6::new_checked(d)?;
    Ok(Ipv6View {
        payload_len: ip.payload_len(),
        next: ip.next_header().0,
        hop_limit: ip.hop_limit(),
        src: Ipv6Addr::from(ip.src_octets()),
        dst: Ipv6Addr::from(ip.dst_octets()),
    })
}

/// Skips a hop-by-hop options header at the start of `d`; returns (next header, its length).
pub fn skip_hbh(d: &[u8]) -> Option<(u8, usize)> {
    match Ipv6Ext::skip(d, IpProto::HOPOPT) {
        Ok(Some((next, len))) => Some((next.0, len)),
        _ => None,
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpView {
    /// 1 = request, 2 = reply.
    pub op: u16,
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address.
    pub spa: Ipv4Addr,
    /// Target hardware address.
    pub tha: [u8; 6],
    /// Target protocol address.
    pub tpa: Ipv4Addr,
}

/// Parses an ARP payload (after the Ethernet header); `None` unless Ethernet/IPv4 ARP.
pub fn parse_arp(d: &[u8]) -> Option<ArpView> {
    let a = Arp::new_checked(d).ok().filter(Arp::is_ethernet_ipv4)?;
    Some(ArpView {
        op: a.oper(),
        sha: a.sha().0,
        spa: Ipv4Addr::from(a.spa()),
        tha: a.tha().0,
        tpa: Ipv4Addr::from(a.tpa()),
    })
}

/// Finds a source (1) or target (2) link-layer address option in NDP options (those before
/// the first malformed one).
pub fn ndp_lladdr(opts: &[u8], kind: u8) -> Option<[u8; 6]> {
    let o = NdOptions::new(opts).map_while(Result::ok).find(|o| o.kind == kind)?;
    o.data.first_chunk::<6>().copied()
}

// ---------------------------------------------------------------------------------------
// Builders. Each writes a complete frame into `buf` (cleared first) and returns its length.

fn put_eth(buf: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    buf.extend_from_slice(&dst);
    buf.extend_from_slice(&src);
    buf.extend_from_slice(&ethertype.to_be_bytes());
}

/// The fields of an IPv4 header the control frames choose.
struct Ipv4Fields<'a> {
    tos: u8,
    ttl: u8,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// Options, a multiple of 4 bytes.
    opts: &'a [u8],
}

/// Writes an IPv4 header for `payload` bytes and fixes its checksum.
fn put_ipv4(buf: &mut Vec<u8>, h: Ipv4Fields<'_>, payload: usize) {
    let Ipv4Fields { tos, ttl, proto, src, dst, opts } = h;
    let start = buf.len();
    let hlen = IPV4_LEN + opts.len();
    let total = (hlen + payload) as u16;
    buf.push(0x40 | (hlen / 4) as u8);
    buf.push(tos);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0x40, 0]);
    buf.push(ttl);
    buf.push(proto);
    buf.extend_from_slice(&[0, 0]);
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(opts);
    let c = checksum(&buf[start..start + hlen]);
    buf[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

fn put_ipv6(buf: &mut Vec<u8>, payload: usize, next: u8, hop: u8, src: Ipv6Addr, dst: Ipv6Addr) {
    buf.extend_from_slice(&[0x60, 0, 0, 0]);
    buf.extend_from_slice(&(payload as u16).to_be_bytes());
    buf.push(next);
    buf.push(hop);
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
}

/// Pads a frame to the 60-byte Ethernet minimum.
fn pad(buf: &mut Vec<u8>) {
    if buf.len() < 60 {
        buf.resize(60, 0);
    }
}

/// An ARP request (broadcast) or reply (unicast to `tha`).
pub fn build_arp(buf: &mut Vec<u8>, op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) {
    buf.clear();
    let dst = if op == 1 { BROADCAST } else { tha };
    put_eth(buf, dst, sha, ETH_ARP);
    buf.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    buf.extend_from_slice(&op.to_be_bytes());
    buf.extend_from_slice(&sha);
    buf.extend_from_slice(&spa.octets());
    buf.extend_from_slice(&if op == 1 { [0; 6] } else { tha });
    buf.extend_from_slice(&tpa.octets());
    pad(buf);
}

fn icmpv6_finish(buf: &mut [u8], icmp_at: usize, src: &Ipv6Addr, dst: &Ipv6Addr) {
    let len = buf.len() - icmp_at;
    let acc = pseudo_v6(&src.octets(), &dst.octets(), len as u32, PROTO_ICMPV6);
    let c = csum_fold(csum_add(acc, &buf[icmp_at..]));
    buf[icmp_at + 2..icmp_at + 4].copy_from_slice(&c.to_be_bytes());
}

/// A neighbour solicitation for `target`, multicast to its solicited-node group.
pub fn build_ns(buf: &mut Vec<u8>, mac: [u8; 6], src: Ipv6Addr, target: Ipv6Addr) {
    buf.clear();
    let dst = solicited_node(target);
    put_eth(buf, mcast_mac_v6(dst), mac, ETH_IPV6);
    put_ipv6(buf, 32, PROTO_ICMPV6, 255, src, dst);
    let at = buf.len();
    buf.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&target.octets());
    buf.extend_from_slice(&[1, 1]);
    buf.extend_from_slice(&mac);
    icmpv6_finish(buf, at, &src, &dst);
}

/// A neighbour advertisement for `target` (our address) to `dst` (all-nodes when the
/// solicitation came from `::`).
pub fn build_na(buf: &mut Vec<u8>, mac: [u8; 6], target: Ipv6Addr, dst_mac: [u8; 6], dst: Ipv6Addr) {
    buf.clear();
    let solicited = !dst.is_multicast();
    put_eth(buf, dst_mac, mac, ETH_IPV6);
    put_ipv6(buf, 32, PROTO_ICMPV6, 255, target, dst);
    let at = buf.len();
    // Flags: Solicited (when answering a unicast source) and Override.
    buf.extend_from_slice(&[136, 0, 0, 0, if solicited { 0x60 } else { 0x20 }, 0, 0, 0]);
    buf.extend_from_slice(&target.octets());
    buf.extend_from_slice(&[2, 1]);
    buf.extend_from_slice(&mac);
    icmpv6_finish(buf, at, &target, &dst);
}

/// IGMPv3 group record types (RFC 3376 §4.2.12).
pub mod igmp_record {
    /// Current state: exclude nothing (answer to a query).
    pub const MODE_IS_EXCLUDE: u8 = 2;
    /// Leave.
    pub const CHANGE_TO_INCLUDE: u8 = 3;
    /// Join.
    pub const CHANGE_TO_EXCLUDE: u8 = 4;
}

/// Router Alert IPv4 option.
const IPV4_RA: [u8; 4] = [0x94, 0x04, 0, 0];

/// An IGMPv3 membership report (to 224.0.0.22) with one record of `kind` per group.
pub fn build_igmpv3(buf: &mut Vec<u8>, mac: [u8; 6], src: Ipv4Addr, kind: u8, groups: &[Ipv4Addr]) {
    buf.clear();
    let igmp_len = 8 + 8 * groups.len();
    put_eth(buf, mcast_mac_v4(IGMPV3_REPORTS), mac, ETH_IPV4);
    let ip = Ipv4Fields { tos: 0xc0, ttl: 1, proto: PROTO_IGMP, src, dst: IGMPV3_REPORTS, opts: &IPV4_RA };
    put_ipv4(buf, ip, igmp_len);
    let at = buf.len();
    buf.extend_from_slice(&[0x22, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&(groups.len() as u16).to_be_bytes());
    for g in groups {
        buf.extend_from_slice(&[kind, 0, 0, 0]);
        buf.extend_from_slice(&g.octets());
    }
    let c = checksum(&buf[at..]);
    buf[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    pad(buf);
}

/// An IGMPv2 report (`leave == false`, to the group) or leave (to 224.0.0.2).
pub fn build_igmpv2(buf: &mut Vec<u8>, mac: [u8; 6], src: Ipv4Addr, group: Ipv4Addr, leave: bool) {
    buf.clear();
    let dst = if leave { ALL_ROUTERS } else { group };
    put_eth(buf, mcast_mac_v4(dst), mac, ETH_IPV4);
    put_ipv4(buf, Ipv4Fields { tos: 0xc0, ttl: 1, proto: PROTO_IGMP, src, dst, opts: &IPV4_RA }, 8);
    let at = buf.len();
    buf.extend_from_slice(&[if leave { 0x17 } else { 0x16 }, 0, 0, 0]);
    buf.extend_from_slice(&group.octets());
    let c = checksum(&buf[at..]);
    buf[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    pad(buf);
}

/// MLDv2 record types (RFC 3810 §5.2.12), same values as IGMPv3's.
pub use igmp_record as mld_record;

/// An MLDv2 report (to ff02::16, hop limit 1, Router Alert, link-local source) with one
/// record of `kind` per group.
pub fn build_mldv2(buf: &mut Vec<u8>, mac: [u8; 6], kind: u8, groups: &[Ipv6Addr]) {
    buf.clear();
    let src = link_local_from_mac(mac);
    let icmp_len = 8 + 20 * groups.len();
    put_eth(buf, mcast_mac_v6(MLDV2_ROUTERS), mac, ETH_IPV6);
    put_ipv6(buf, 8 + icmp_len, PROTO_HOPOPT, 1, src, MLDV2_ROUTERS);
    // Hop-by-hop: next = ICMPv6, length 0 (8 bytes), Router Alert (MLD), PadN.
    buf.extend_from_slice(&[PROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0]);
    let at = buf.len();
    buf.extend_from_slice(&[143, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&(groups.len() as u16).to_be_bytes());
    for g in groups {
        buf.extend_from_slice(&[kind, 0, 0, 0]);
        buf.extend_from_slice(&g.octets());
    }
    icmpv6_finish(buf, at, &src, &MLDV2_ROUTERS);
}

/// ICMP "fragmentation needed" (type 3 code 4) back to the sender of `orig` (an Ethernet
/// frame carrying IPv4), claiming to come from its destination, quoting up to 548 bytes.
/// `None` if `orig` is not a parseable IPv4 frame.
pub fn build_frag_needed(buf: &mut Vec<u8>, orig: &[u8], mtu: u16) -> Option<()> {
    let eth = ethernet::Ethernet::new_checked(orig).ok()?;
    let ip = eth.payload();
    let hdr = Ipv4::new_header(ip).ok()?;
    let (src, dst) = (Ipv4Addr::from(hdr.src()), Ipv4Addr::from(hdr.dst()));
    let quote = &ip[..ip.len().min(548)];
    buf.clear();
    put_eth(buf, eth.src().0, eth.dst().0, ETH_IPV4);
    // The answer goes back: the offender's destination is our source.
    put_ipv4(
        buf,
        Ipv4Fields { tos: 0, ttl: 64, proto: PROTO_ICMP, src: dst, dst: src, opts: &[] },
        8 + quote.len(),
    );
    let at = buf.len();
    buf.extend_from_slice(&[3, 4, 0, 0, 0, 0]);
    buf.extend_from_slice(&mtu.to_be_bytes());
    buf.extend_from_slice(quote);
    let c = checksum(&buf[at..]);
    buf[at + 2..at + 4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// ICMPv6 "packet too big" back to the sender of `orig` (an Ethernet frame carrying IPv6),
/// claiming to come from its destination, quoting as much as fits in 1280 bytes.
pub fn build_packet_too_big(buf: &mut Vec<u8>, orig: &[u8], mtu: u32) -> Option<()> {
    let eth = ethernet::Ethernet::new_checked(orig).ok()?;
    let ip = eth.payload();
    let hdr = Ipv6::new_quoted(ip).ok()?;
    let (src, dst) = (Ipv6Addr::from(hdr.src()), Ipv6Addr::from(hdr.dst()));
    let quote = &ip[..ip.len().min(1280 - IPV6_LEN - 8)];
    buf.clear();
    put_eth(buf, eth.src().0, eth.dst().0, ETH_IPV6);
    put_ipv6(buf, 8 + quote.len(), PROTO_ICMPV6, 64, dst, src);
    let at = buf.len();
    buf.extend_from_slice(&[2, 0, 0, 0]);
    buf.extend_from_slice(&mtu.to_be_bytes());
    buf.extend_from_slice(quote);
    icmpv6_finish(buf, at, &dst, &src);
    Some(())
}

/// Writes the 8-byte VXLAN header for `vni` (I flag set, reserved bits zero) at the start
/// of `h` (nothing when `h` is shorter).
#[inline]
pub fn write_vxlan(h: &mut [u8], vni: u32) {
    let _ = Vxlan::init(h, vni);
}

/// Reads the VNI of a VXLAN header; `None` without the I flag.
#[inline]
pub fn read_vxlan(h: &[u8]) -> Option<u32> {
    Vxlan::new_checked(h).ok().map(|v| v.vni())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 §3 example bytes: sum 0xddf2, checksum !0xddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&d), !0xddf2);
        // Odd length, split sums.
        let long: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let whole = checksum(&long);
        let split = csum_fold(csum_add(csum_add(0, &long[..600]), &long[600..]));
        assert_eq!(whole, split);
        let mut naive: u32 = 0;
        for c in long.chunks(2) {
            naive += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
        }
        while naive > 0xffff {
            naive = (naive & 0xffff) + (naive >> 16);
        }
        assert_eq!(whole, !(naive as u16));
    }

    #[test]
    fn multicast_macs_and_addresses() {
        assert_eq!(mcast_mac_v4(Ipv4Addr::new(230, 0, 0, 42)), [1, 0, 0x5e, 0, 0, 42]);
        assert_eq!(mcast_mac_v4(Ipv4Addr::new(239, 255, 1, 2)), [1, 0, 0x5e, 0x7f, 1, 2]);
        let g: Ipv6Addr = "ff05::2a".parse().unwrap();
        assert_eq!(mcast_mac_v6(g), [0x33, 0x33, 0, 0, 0, 42]);
        let ip: Ipv6Addr = "fd00::1:2:3".parse().unwrap();
        assert_eq!(solicited_node(ip), "ff02::1:ff02:3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            link_local_from_mac([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn vxlan_header_round_trip() {
        let mut h = [0xffu8; 8];
        write_vxlan(&mut h, 0xabcdef);
        assert_eq!(h, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
        assert_eq!(read_vxlan(&h), Some(0xabcdef));
        h[0] = 0;
        assert_eq!(read_vxlan(&h), None);
    }

    #[test]
    fn built_ipv4_headers_verify() {
        let mut b = Vec::new();
        build_igmpv3(
            &mut b,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 0, 0, 1),
            4,
            &[Ipv4Addr::new(230, 0, 0, 42)],
        );
        let ip = parse_ipv4(&b[14..]).unwrap();
        assert_eq!((ip.ihl, ip.proto, ip.total_len), (24, PROTO_IGMP, 24 + 16));
        assert_eq!(checksum(&b[14 + 24..14 + 40]), 0);
    }

    #[test]
    fn ndp_options() {
        let opts = [1, 1, 1, 2, 3, 4, 5, 6, 2, 1, 9, 9, 9, 9, 9, 9];
        assert_eq!(ndp_lladdr(&opts, 2), Some([9; 6]));
        assert_eq!(ndp_lladdr(&opts, 1), Some([1, 2, 3, 4, 5, 6]));
        assert_eq!(ndp_lladdr(&[2, 0, 0, 0, 0, 0, 0, 0], 2), None, "zero length option stops parsing");
    }
}

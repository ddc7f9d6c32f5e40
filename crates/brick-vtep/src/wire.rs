//! Wire formats: field offsets, checked readers, checksums and builders for the frames the
//! VTEP parses or emits (Ethernet, ARP, IPv4, IPv6, UDP, VXLAN, ICMP, ICMPv6/NDP, IGMP,
//! MLDv2). Nothing here panics on short or malformed input: readers return `None`.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// IPv4 header length without options.
pub const IPV4_LEN: usize = 20;
/// IPv6 header length.
pub const IPV6_LEN: usize = 40;
/// UDP header length.
pub const UDP_LEN: usize = 8;
/// VXLAN header length.
pub const VXLAN_LEN: usize = 8;
/// Bytes prepended to an inner frame over an IPv4 underlay.
pub const OVERHEAD_V4: usize = ETH_LEN + IPV4_LEN + UDP_LEN + VXLAN_LEN;
/// Bytes prepended to an inner frame over an IPv6 underlay.
pub const OVERHEAD_V6: usize = ETH_LEN + IPV6_LEN + UDP_LEN + VXLAN_LEN;

/// EtherType of IPv4.
pub const ETH_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETH_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETH_IPV6: u16 = 0x86dd;
/// IP protocol numbers.
pub const PROTO_HOPOPT: u8 = 0;
/// ICMP.
pub const PROTO_ICMP: u8 = 1;
/// IGMP.
pub const PROTO_IGMP: u8 = 2;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;
/// The VXLAN "I" flag (valid VNI), first byte of the VXLAN header.
pub const VXLAN_FLAG_I: u8 = 0x08;

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

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// The EtherType of a frame, if it has a full Ethernet header.
#[inline]
pub fn ethertype(frame: &[u8]) -> Option<u16> {
    (frame.len() >= ETH_LEN).then(|| be16(frame, 12))
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

/// Parses the IPv4 header at the start of `d`, verifying its checksum.
#[inline]
pub fn parse_ipv4(d: &[u8]) -> Result<Ipv4View, IpError> {
    if d.len() < IPV4_LEN {
        return Err(IpError::Truncated);
    }
    if d[0] >> 4 != 4 {
        return Err(IpError::BadHeader);
    }
    let ihl = usize::from(d[0] & 0xf) * 4;
    let total_len = usize::from(be16(d, 2));
    if ihl < IPV4_LEN || total_len < ihl {
        return Err(IpError::BadHeader);
    }
    if d.len() < total_len {
        return Err(IpError::Truncated);
    }
    let ok = if ihl == IPV4_LEN {
        // The common case, unrolled: five 32-bit words.
        let h: &[u8; 20] = d[..20].try_into().unwrap_or(&[0; 20]);
        let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        csum_fold(w(0) + w(4) + w(8) + w(12) + w(16)) == 0
    } else {
        checksum(&d[..ihl]) == 0
    };
    if !ok {
        return Err(IpError::BadChecksum);
    }
    let frag = be16(d, 6);
    Ok(Ipv4View {
        ihl,
        total_len,
        proto: d[9],
        src: Ipv4Addr::new(d[12], d[13], d[14], d[15]),
        dst: Ipv4Addr::new(d[16], d[17], d[18], d[19]),
        fragment: frag & 0x3fff != 0,
        df: frag & 0x4000 != 0,
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

fn ip6(d: &[u8], at: usize) -> Ipv6Addr {
    let mut o = [0u8; 16];
    o.copy_from_slice(&d[at..at + 16]);
    Ipv6Addr::from(o)
}

/// Parses the IPv6 header at the start of `d`.
pub fn parse_ipv6(d: &[u8]) -> Result<Ipv6View, IpError> {
    if d.len() < IPV6_LEN {
        return Err(IpError::Truncated);
    }
    if d[0] >> 4 != 6 {
        return Err(IpError::BadHeader);
    }
    let payload_len = usize::from(be16(d, 4));
    if d.len() < IPV6_LEN + payload_len {
        return Err(IpError::Truncated);
    }
    Ok(Ipv6View { payload_len, next: d[6], hop_limit: d[7], src: ip6(d, 8), dst: ip6(d, 24) })
}

/// Skips a hop-by-hop options header at the start of `d`; returns (next header, its length).
pub fn skip_hbh(d: &[u8]) -> Option<(u8, usize)> {
    if d.len() < 8 {
        return None;
    }
    let len = (usize::from(d[1]) + 1) * 8;
    (d.len() >= len).then_some((d[0], len))
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
    if d.len() < 28 || be16(d, 0) != 1 || be16(d, 2) != ETH_IPV4 || d[4] != 6 || d[5] != 4 {
        return None;
    }
    let mac = |at: usize| [d[at], d[at + 1], d[at + 2], d[at + 3], d[at + 4], d[at + 5]];
    Some(ArpView {
        op: be16(d, 6),
        sha: mac(8),
        spa: Ipv4Addr::new(d[14], d[15], d[16], d[17]),
        tha: mac(18),
        tpa: Ipv4Addr::new(d[24], d[25], d[26], d[27]),
    })
}

/// Finds a source (1) or target (2) link-layer address option in NDP options.
pub fn ndp_lladdr(mut opts: &[u8], kind: u8) -> Option<[u8; 6]> {
    while opts.len() >= 8 {
        let len = usize::from(opts[1]) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == kind && len >= 8 {
            return Some([opts[2], opts[3], opts[4], opts[5], opts[6], opts[7]]);
        }
        opts = &opts[len..];
    }
    None
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
    let ip = orig.get(ETH_LEN..)?;
    if ip.len() < IPV4_LEN || ip[0] >> 4 != 4 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let quote = &ip[..ip.len().min(548)];
    buf.clear();
    let (omac_dst, omac_src) = (&orig[0..6], &orig[6..12]);
    let mut d = [0u8; 6];
    d.copy_from_slice(omac_src);
    let mut s = [0u8; 6];
    s.copy_from_slice(omac_dst);
    put_eth(buf, d, s, ETH_IPV4);
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
    let ip = orig.get(ETH_LEN..)?;
    if ip.len() < IPV6_LEN || ip[0] >> 4 != 6 {
        return None;
    }
    let src = ip6(ip, 8);
    let dst = ip6(ip, 24);
    let quote = &ip[..ip.len().min(1280 - IPV6_LEN - 8)];
    buf.clear();
    let mut d = [0u8; 6];
    d.copy_from_slice(&orig[6..12]);
    let mut s = [0u8; 6];
    s.copy_from_slice(&orig[0..6]);
    put_eth(buf, d, s, ETH_IPV6);
    put_ipv6(buf, 8 + quote.len(), PROTO_ICMPV6, 64, dst, src);
    let at = buf.len();
    buf.extend_from_slice(&[2, 0, 0, 0]);
    buf.extend_from_slice(&mtu.to_be_bytes());
    buf.extend_from_slice(quote);
    icmpv6_finish(buf, at, &dst, &src);
    Some(())
}

/// Writes the 8-byte VXLAN header for `vni` (I flag set, reserved bits zero).
#[inline]
pub fn write_vxlan(h: &mut [u8], vni: u32) {
    h[0] = VXLAN_FLAG_I;
    h[1] = 0;
    h[2] = 0;
    h[3] = 0;
    h[4] = (vni >> 16) as u8;
    h[5] = (vni >> 8) as u8;
    h[6] = vni as u8;
    h[7] = 0;
}

/// Reads the VNI of a VXLAN header; `None` without the I flag.
#[inline]
pub fn read_vxlan(h: &[u8]) -> Option<u32> {
    if h.len() < VXLAN_LEN || h[0] & VXLAN_FLAG_I == 0 {
        return None;
    }
    Some(u32::from(h[4]) << 16 | u32::from(h[5]) << 8 | u32::from(h[6]))
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

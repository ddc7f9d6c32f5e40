//! ICMP / ICMPv6 echo frames over untagged Ethernet: building a request, reading a reply,
//! turning a request into its reply in place.
//!
//! Plain byte offsets, every access bounds-checked: a frame from the wire or a VM never
//! makes these functions panic.

use std::net::IpAddr;

use crate::checksum::{checksum, csum_add, csum_add_value, csum_fold};

/// Ethernet header length (no VLAN tag: the VM side of a NIC has none).
pub const ETH_LEN: usize = 14;
/// IPv4 header length without options (what requests are built with).
pub const IPV4_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;
/// ICMP echo header length: type, code, checksum, identifier, sequence.
pub const ECHO_HDR_LEN: usize = 8;
/// Echo payload length of the requests built here: an 8-byte send time, then a fixed
/// pattern (so the frame has the 60-byte Ethernet minimum with IPv4).
pub const PAYLOAD_LEN: usize = 32;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;
const TTL: u8 = 64;

/// Addresses and identity of one echo message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Echo {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// Source IP.
    pub src_ip: IpAddr,
    /// Destination IP (same family as `src_ip`).
    pub dst_ip: IpAddr,
    /// Echo identifier.
    pub id: u16,
    /// Echo sequence number.
    pub seq: u16,
}

/// Length of the request [`write_request`] builds for `family_v6`.
pub const fn request_len(v6: bool) -> usize {
    ETH_LEN + if v6 { IPV6_LEN } else { IPV4_LEN } + ECHO_HDR_LEN + PAYLOAD_LEN
}

/// Writes an echo request for `e` carrying `stamp` (the send time, nanoseconds) into `buf`,
/// which must be [`request_len`] bytes. `None` when the addresses are of two families or the
/// buffer has the wrong length.
pub fn write_request(buf: &mut [u8], e: &Echo, stamp: u64) -> Option<()> {
    let v6 = match (e.src_ip, e.dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return None,
    };
    if buf.len() != request_len(v6) {
        return None;
    }
    buf[0..6].copy_from_slice(&e.dst_mac);
    buf[6..12].copy_from_slice(&e.src_mac);
    let l3 = ETH_LEN;
    let icmp_len = ECHO_HDR_LEN + PAYLOAD_LEN;
    let l4 = match (e.src_ip, e.dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
            let ip = &mut buf[l3..l3 + IPV4_LEN];
            ip[0] = 0x45;
            ip[1] = 0;
            ip[2..4].copy_from_slice(&((IPV4_LEN + icmp_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&e.seq.to_be_bytes());
            ip[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
            ip[8] = TTL;
            ip[9] = PROTO_ICMP;
            ip[10..12].fill(0);
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let c = checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            l3 + IPV4_LEN
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
            let ip = &mut buf[l3..l3 + IPV6_LEN];
            ip[0..4].copy_from_slice(&0x6000_0000u32.to_be_bytes());
            ip[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
            ip[6] = PROTO_ICMPV6;
            ip[7] = TTL;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            l3 + IPV6_LEN
        }
        _ => return None,
    };
    let icmp = &mut buf[l4..];
    icmp[0] = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4..6].copy_from_slice(&e.id.to_be_bytes());
    icmp[6..8].copy_from_slice(&e.seq.to_be_bytes());
    icmp[8..16].copy_from_slice(&stamp.to_be_bytes());
    for (i, b) in icmp[16..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = icmp_checksum(&buf[l3..], v6, l4 - l3);
    buf[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

/// The ICMP(v6) checksum of the message at `l4_off` in the IP packet `ip` (with the IPv6
/// pseudo-header for ICMPv6). Zero when the stored checksum is right.
fn icmp_checksum(ip: &[u8], v6: bool, l4_off: usize) -> u16 {
    let msg = ip.get(l4_off..).unwrap_or(&[]);
    if !v6 {
        return checksum(msg);
    }
    let mut acc = csum_add(0, ip.get(8..40).unwrap_or(&[]));
    acc = csum_add_value(acc, msg.len() as u64);
    acc = csum_add_value(acc, u64::from(PROTO_ICMPV6));
    csum_fold(csum_add(acc, msg))
}

/// Where an echo message sits in a frame, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// The frame's addresses and echo identity.
    pub echo: Echo,
    /// Whether it is a request (else a reply).
    pub request: bool,
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the ICMP header.
    pub l4: usize,
    /// End of the IP packet (Ethernet padding excluded).
    pub end: usize,
}

/// Finds an ICMP or ICMPv6 echo request or reply (code 0) in an untagged Ethernet frame.
/// `None` for anything else: other protocols, fragments, IPv6 extension headers, lengths
/// that do not add up. Checksums are not verified here.
pub fn locate(frame: &[u8]) -> Option<Located> {
    let b = |r: std::ops::Range<usize>| frame.get(r);
    let ethertype = u16::from_be_bytes(b(12..14)?.try_into().ok()?);
    let l3 = ETH_LEN;
    let (src_ip, dst_ip, l4, end, v6) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ihl = usize::from(*frame.get(l3)? & 0x0f) * 4;
            if *frame.get(l3)? >> 4 != 4 || ihl < IPV4_LEN || *frame.get(l3 + 9)? != PROTO_ICMP {
                return None;
            }
            // A fragment (more fragments, or an offset) cannot be answered whole.
            if u16::from_be_bytes(b(l3 + 6..l3 + 8)?.try_into().ok()?) & 0x3fff != 0 {
                return None;
            }
            let total = usize::from(u16::from_be_bytes(b(l3 + 2..l3 + 4)?.try_into().ok()?));
            let s: [u8; 4] = b(l3 + 12..l3 + 16)?.try_into().ok()?;
            let d: [u8; 4] = b(l3 + 16..l3 + 20)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), l3 + ihl, l3 + total, false)
        }
        ETHERTYPE_IPV6 => {
            if *frame.get(l3)? >> 4 != 6 || *frame.get(l3 + 6)? != PROTO_ICMPV6 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes(b(l3 + 4..l3 + 6)?.try_into().ok()?));
            let s: [u8; 16] = b(l3 + 8..l3 + 24)?.try_into().ok()?;
            let d: [u8; 16] = b(l3 + 24..l3 + 40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), l3 + IPV6_LEN, l3 + IPV6_LEN + payload, true)
        }
        _ => return None,
    };
    if end > frame.len() || end < l4 + ECHO_HDR_LEN {
        return None;
    }
    let (req, rep) = if v6 { (ECHO_REQUEST_V6, ECHO_REPLY_V6) } else { (ECHO_REQUEST_V4, ECHO_REPLY_V4) };
    let (t, code) = (*frame.get(l4)?, *frame.get(l4 + 1)?);
    if code != 0 || (t != req && t != rep) {
        return None;
    }
    Some(Located {
        echo: Echo {
            dst_mac: b(0..6)?.try_into().ok()?,
            src_mac: b(6..12)?.try_into().ok()?,
            src_ip,
            dst_ip,
            id: u16::from_be_bytes(b(l4 + 4..l4 + 6)?.try_into().ok()?),
            seq: u16::from_be_bytes(b(l4 + 6..l4 + 8)?.try_into().ok()?),
        },
        request: t == req,
        l3,
        l4,
        end,
    })
}

/// Whether the located message's ICMP checksum is right.
pub fn checksum_ok(frame: &[u8], at: &Located) -> bool {
    match frame.get(at.l3..at.end) {
        Some(ip) => icmp_checksum(ip, at.echo.src_ip.is_ipv6(), at.l4 - at.l3) == 0,
        None => false,
    }
}

/// The send time a request built by [`write_request`] carries, read back from its reply.
pub fn stamp(frame: &[u8], at: &Located) -> Option<u64> {
    let s = frame.get(at.l4 + ECHO_HDR_LEN..at.l4 + ECHO_HDR_LEN + 8)?;
    Some(u64::from_be_bytes(s.try_into().ok()?))
}

/// Turns the located echo request into its reply, in place: MACs and IPs swapped, TTL/hop
/// limit reset, type changed, checksums updated incrementally (the payload is not read, so
/// a big request costs what a small one does).
pub fn request_to_reply(frame: &mut [u8], at: &Located) -> Option<()> {
    let v6 = at.echo.src_ip.is_ipv6();
    let ip_len = if v6 { IPV6_LEN } else { IPV4_LEN };
    // `at` comes from `locate` on this frame; checked again so that no index below panics.
    if !at.request || frame.len() < at.end || at.l4 + ECHO_HDR_LEN > at.end || at.l3 + ip_len > at.l4 {
        return None;
    }
    let (dst, src) = (at.echo.dst_mac, at.echo.src_mac);
    frame[0..6].copy_from_slice(&src);
    frame[6..12].copy_from_slice(&dst);
    let l3 = at.l3;
    if v6 {
        let s: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().ok()?;
        let d: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().ok()?;
        frame[l3 + 8..l3 + 24].copy_from_slice(&d);
        frame[l3 + 24..l3 + 40].copy_from_slice(&s);
        frame[l3 + 7] = TTL;
    } else {
        let ihl = at.l4 - l3;
        let s: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().ok()?;
        let d: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().ok()?;
        frame[l3 + 12..l3 + 16].copy_from_slice(&d);
        frame[l3 + 16..l3 + 20].copy_from_slice(&s);
        frame[l3 + 8] = TTL;
        frame[l3 + 10..l3 + 12].fill(0);
        let c = checksum(&frame[l3..l3 + ihl]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    // RFC 1624: HC' = ~(~HC + ~m + m'), m the 16-bit word holding type and code. Swapping
    // the addresses leaves the IPv6 pseudo-header sum as it was.
    let l4 = at.l4;
    let (old_t, new_t) = if v6 { (ECHO_REQUEST_V6, ECHO_REPLY_V6) } else { (ECHO_REQUEST_V4, ECHO_REPLY_V4) };
    let old_word = u16::from_be_bytes([old_t, 0]);
    let new_word = u16::from_be_bytes([new_t, 0]);
    let hc = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
    let acc = csum_add_value(csum_add_value(u64::from(!hc), u64::from(!old_word)), u64::from(new_word));
    let c = csum_fold(acc);
    frame[l4] = new_t;
    frame[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
    Some(())
}

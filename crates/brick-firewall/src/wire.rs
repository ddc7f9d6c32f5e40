//! Checked, allocation-free views of the headers the firewall and the anti-spoof brick read.
//!
//! [`parse_frame`] walks Ethernet (one optional 802.1Q tag), IPv4 or IPv6 (extension headers
//! walked, at most [`MAX_IPV6_EXT`]), and the first bytes of TCP, UDP, SCTP, ICMP and ICMPv6 into a
//! [`Flow`], a small `Copy` struct. Every read is bounds-checked: malformed input yields a
//! [`Malformed`] reason, never a panic.

use brick_wire::ip::Ipv6Walk;
use brick_wire::transport::tcp_field;
use brick_wire::{locate_l2, EtherType, IpProto, Ipv4, Ipv6, Tcp, WireError};

// The protocol numbers come from brick-wire; the names stay for this crate's callers.
/// Ethertype of IPv4.
pub const ETH_IPV4: u16 = EtherType::IPV4.0;
/// Ethertype of IPv6.
pub const ETH_IPV6: u16 = EtherType::IPV6.0;
/// Ethertype of ARP.
pub const ETH_ARP: u16 = EtherType::ARP.0;
/// Ethertype of RARP.
pub const ETH_RARP: u16 = EtherType::RARP.0;
/// Ethertype of an 802.1Q VLAN tag.
pub const ETH_VLAN: u16 = EtherType::VLAN.0;
/// Ethertype of an 802.1ad (QinQ) service tag.
pub const ETH_QINQ: u16 = EtherType::QINQ.0;

/// IP protocol number of ICMP.
pub const PROTO_ICMP: u8 = IpProto::ICMP.0;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = IpProto::TCP.0;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = IpProto::UDP.0;
/// IP protocol number of ICMPv6.
pub const PROTO_ICMP6: u8 = IpProto::ICMPV6.0;
/// IP protocol number of SCTP.
pub const PROTO_SCTP: u8 = IpProto::SCTP.0;
/// IP protocol number of DCCP.
pub const PROTO_DCCP: u8 = IpProto::DCCP.0;
/// IP protocol number of UDP-Lite.
pub const PROTO_UDPLITE: u8 = IpProto::UDPLITE.0;

/// TCP FIN flag.
pub const TCP_FIN: u8 = tcp_field::FIN;
/// TCP SYN flag.
pub const TCP_SYN: u8 = tcp_field::SYN;
/// TCP RST flag.
pub const TCP_RST: u8 = tcp_field::RST;
/// TCP ACK flag.
pub const TCP_ACK: u8 = tcp_field::ACK_FLAG;

/// Most IPv6 extension headers walked before a packet is declared malformed.
pub const MAX_IPV6_EXT: usize = brick_wire::MAX_IPV6_EXT;

/// Why a frame could not be parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Shorter than an Ethernet header (or a VLAN tag).
    #[error("truncated ethernet header")]
    Ethernet,
    /// IPv4 header invalid (version, IHL, total length).
    #[error("invalid IPv4 header")]
    Ipv4,
    /// IPv6 header invalid (version, payload length).
    #[error("invalid IPv6 header")]
    Ipv6,
    /// An IPv6 extension header is truncated, or there are more than [`MAX_IPV6_EXT`].
    #[error("invalid or too many IPv6 extension headers")]
    Ipv6Ext,
    /// The transport header is truncated (in an unfragmented packet or a first fragment).
    #[error("truncated transport header")]
    L4,
    /// Two VLAN tags (802.1Q or 802.1ad) in a row. The firewall looks past one tag only; a
    /// frame with a second one could hide an IP packet, so it is refused rather than passed
    /// as non-IP.
    #[error("stacked VLAN tags")]
    StackedVlan,
}

/// Where a packet stands with respect to IP fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Frag {
    /// Not a fragment.
    #[default]
    None,
    /// First fragment (offset 0, more fragments follow) with this datagram id.
    First(u32),
    /// A later fragment (offset > 0) with this datagram id: it carries no transport header.
    Later(u32),
}

/// What the firewall needs to know about an IP packet. Addresses are `u128`: an IPv4
/// address is stored as its `u32` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Transport protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// TCP/UDP/SCTP source port; ICMP echo identifier; else 0.
    pub sport: u16,
    /// TCP/UDP/SCTP destination port; ICMP echo identifier; else 0.
    pub dport: u16,
    /// ICMP/ICMPv6 type (0 for other protocols).
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code.
    pub icmp_code: u8,
    /// TCP flags.
    pub tcp_flags: u8,
    /// TCP sequence number.
    pub seq: u32,
    /// TCP acknowledgement number.
    pub ack: u32,
    /// TCP window (unscaled).
    pub win: u16,
    /// TCP window scale offered in a SYN's options (`None` if absent or not a SYN).
    pub wscale: Option<u8>,
    /// Sequence space used by a TCP segment: payload length plus one for SYN and for FIN.
    pub seg_len: u32,
    /// Fragmentation state.
    pub frag: Frag,
    /// Offset of the transport header in the frame (0 if absent).
    pub l4_offset: u16,
}

impl Flow {
    /// Whether the packet is an ICMP or ICMPv6 error message (destination unreachable, packet
    /// too big, time exceeded, parameter problem) that quotes another packet.
    #[inline]
    pub fn is_icmp_error(&self) -> bool {
        match (self.v6, self.proto) {
            (false, PROTO_ICMP) => matches!(self.icmp_type, 3 | 11 | 12),
            (true, PROTO_ICMP6) => matches!(self.icmp_type, 1..=4),
            _ => false,
        }
    }

    /// Whether the packet is an ICMP or ICMPv6 echo request.
    #[inline]
    pub fn is_icmp_echo_request(&self) -> bool {
        match (self.v6, self.proto) {
            (false, PROTO_ICMP) => self.icmp_type == 8,
            (true, PROTO_ICMP6) => self.icmp_type == 128,
            _ => false,
        }
    }

    /// Whether the packet is an ICMP echo request or reply.
    #[inline]
    pub fn is_icmp_echo(&self) -> bool {
        match (self.v6, self.proto) {
            (false, PROTO_ICMP) => matches!(self.icmp_type, 0 | 8),
            (true, PROTO_ICMP6) => matches!(self.icmp_type, 128 | 129),
            _ => false,
        }
    }
}

/// The frame's shape: not IP, or IP with its [`Flow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4 or IPv6 (ARP, LLDP…): carries the ethertype.
    NonIp(u16),
    /// An IP packet.
    Ip(Flow),
}

pub(crate) use brick_wire::{be16, be32};

/// Reads the ethertype and the L3 offset, skipping one 802.1Q / 802.1ad tag; a second tag
/// is [`Malformed::StackedVlan`].
#[inline]
pub fn ethertype(frame: &[u8]) -> Result<(u16, usize), Malformed> {
    match locate_l2(frame) {
        Ok(l) if l.vlan_count <= 1 => Ok((l.ethertype, l.l3)),
        Ok(_) | Err(WireError::TooManyVlanTags) => Err(Malformed::StackedVlan),
        // A second TPID is refused as stacked even when the frame ends inside that tag.
        Err(_) if frame.len() >= 18 && is_vlan(frame, 12) && is_vlan(frame, 16) => {
            Err(Malformed::StackedVlan)
        }
        Err(_) => Err(Malformed::Ethernet),
    }
}

fn is_vlan(frame: &[u8], at: usize) -> bool {
    be16(frame, at).is_some_and(|e| EtherType(e).is_vlan())
}

/// Parses an Ethernet frame.
#[inline]
pub fn parse_frame(frame: &[u8]) -> Result<Parsed, Malformed> {
    let (et, l3) = ethertype(frame)?;
    match et {
        ETH_IPV4 => parse_ipv4(frame, l3, false).map(Parsed::Ip),
        ETH_IPV6 => parse_ipv6(frame, l3, false).map(Parsed::Ip),
        other => Ok(Parsed::NonIp(other)),
    }
}

/// Parses the packet quoted by an ICMP error (starting at `at` in `buf`): its IP header and
/// the first 8 bytes of its transport header. Lengths in the quoted header are not checked
/// against the bytes present (quotes are truncated by design).
pub fn parse_quoted(buf: &[u8], at: usize, v6: bool) -> Result<Flow, Malformed> {
    if v6 {
        parse_ipv6(buf, at, true)
    } else {
        parse_ipv4(buf, at, true)
    }
}

#[inline(always)]
fn parse_ipv4(b: &[u8], l3: usize, quoted: bool) -> Result<Flow, Malformed> {
    let at = b.get(l3..).ok_or(Malformed::Ipv4)?;
    let ip = if quoted { Ipv4::new_quoted(at) } else { Ipv4::new_checked(at) };
    let ip = ip.map_err(|_| Malformed::Ipv4)?;
    // A quote is truncated by design: its transport header ends where the buffer does.
    let end = if quoted { b.len() } else { l3 + ip.total_len() };
    let id = u32::from(ip.ident());
    let mut f = Flow {
        v6: false,
        proto: ip.proto().0,
        src: ip.src() as u128,
        dst: ip.dst() as u128,
        ..Flow::default()
    };
    f.frag = if ip.frag_offset() != 0 {
        Frag::Later(id)
    } else if ip.more_frags() {
        Frag::First(id)
    } else {
        Frag::None
    };
    if ip.frag_offset() != 0 {
        return Ok(f);
    }
    parse_l4(&b[..end], l3 + ip.header_len(), &mut f, quoted)?;
    Ok(f)
}

#[inline]
fn parse_ipv6(b: &[u8], l3: usize, quoted: bool) -> Result<Flow, Malformed> {
    let ip = Ipv6::new_quoted(b.get(l3..).ok_or(Malformed::Ipv6)?).map_err(|_| Malformed::Ipv6)?;
    let plen = ip.payload_len();
    let end = if quoted {
        b.len()
    } else {
        // A zero payload length means a jumbogram; not supported on this path.
        if plen == 0 && b.len() > l3 + 40 || l3 + 40 + plen > b.len() {
            return Err(Malformed::Ipv6);
        }
        l3 + 40 + plen
    };
    let b = &b[..end];
    let mut f = Flow { v6: true, src: ip.src(), dst: ip.dst(), ..Flow::default() };
    let w = Ipv6Walk::walk(b, l3 + 40, ip.next_header()).map_err(|_| Malformed::Ipv6Ext)?;
    f.proto = w.proto;
    if let Some((id, off, more)) = w.frag {
        if off != 0 {
            f.frag = Frag::Later(id);
            return Ok(f);
        }
        // An atomic fragment (offset 0, no more) is a whole datagram.
        f.frag = if more { Frag::First(id) } else { Frag::None };
    }
    parse_l4(b, w.offset, &mut f, quoted)?;
    Ok(f)
}

#[inline(always)]
fn parse_l4(b: &[u8], at: usize, f: &mut Flow, quoted: bool) -> Result<(), Malformed> {
    f.l4_offset = at.min(u16::MAX as usize) as u16;
    match f.proto {
        PROTO_TCP => {
            if quoted {
                f.sport = be16(b, at).ok_or(Malformed::L4)?;
                f.dport = be16(b, at + 2).ok_or(Malformed::L4)?;
                f.seq = be32(b, at + 4).ok_or(Malformed::L4)?;
                return Ok(());
            }
            let t = Tcp::new_checked(b.get(at..).ok_or(Malformed::L4)?).map_err(|_| Malformed::L4)?;
            f.sport = t.src_port();
            f.dport = t.dst_port();
            f.seq = t.seq();
            f.ack = t.ack();
            f.tcp_flags = t.flags();
            f.win = t.window();
            let payload = t.payload().len() as u32;
            f.seg_len =
                payload + u32::from(f.tcp_flags & TCP_SYN != 0) + u32::from(f.tcp_flags & TCP_FIN != 0);
            // Shifts above 14 are read as 14 (RFC 7323).
            if f.tcp_flags & TCP_SYN != 0 {
                f.wscale = t.wscale().map(|s| s.min(14));
            }
        }
        PROTO_UDP => {
            let u = b.get(at..at + 8).ok_or(Malformed::L4)?;
            f.sport = u16::from_be_bytes([u[0], u[1]]);
            f.dport = u16::from_be_bytes([u[2], u[3]]);
        }
        // The ports lead the common header, as in UDP: connections are tracked per port pair
        // (not per address pair, which let any SCTP in once the VM had sent some).
        // DCCP and UDP-Lite too: their headers (at least 12 and 8 bytes) start with the ports.
        PROTO_SCTP | PROTO_DCCP | PROTO_UDPLITE => {
            let min = match (quoted, f.proto) {
                (true, _) => 4,
                (false, PROTO_UDPLITE) => 8,
                (false, _) => 12,
            };
            let s = b.get(at..at + min).ok_or(Malformed::L4)?;
            f.sport = u16::from_be_bytes([s[0], s[1]]);
            f.dport = u16::from_be_bytes([s[2], s[3]]);
        }
        PROTO_ICMP | PROTO_ICMP6 => {
            let i = b.get(at..at + 8).ok_or(Malformed::L4)?;
            f.icmp_type = i[0];
            f.icmp_code = i[1];
            if f.is_icmp_echo() {
                let id = u16::from_be_bytes([i[4], i[5]]);
                f.sport = id;
                f.dport = id;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testpkt {
    //! Test packet builders (etherparse).
    use etherparse::PacketBuilder;

    pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    pub fn tcp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).tcp(sp, dp, seq, 65535);
        if flags & super::TCP_SYN != 0 {
            b = b.syn();
        }
        if flags & super::TCP_ACK != 0 {
            b = b.ack(ack);
        }
        if flags & super::TCP_FIN != 0 {
            b = b.fin();
        }
        if flags & super::TCP_RST != 0 {
            b = b.rst();
        }
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    pub fn udp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).udp(sp, dp).write(&mut v, payload).unwrap();
        v
    }

    pub fn udp6(src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, 64).udp(sp, dp).write(&mut v, payload).unwrap();
        v
    }

    pub fn tcp6(src: [u8; 16], dst: [u8; 16], sp: u16, dp: u16, seq: u32, flags: u8) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv6(src, dst, 64).tcp(sp, dp, seq, 65535);
        if flags & super::TCP_SYN != 0 {
            b = b.syn();
        }
        if flags & super::TCP_ACK != 0 {
            b = b.ack(1);
        }
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    pub fn ping4(src: [u8; 4], dst: [u8; 4], id: u16, reply: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64);
        if reply {
            b.icmpv4_echo_reply(id, 1).write(&mut v, b"ping").unwrap();
        } else {
            b.icmpv4_echo_request(id, 1).write(&mut v, b"ping").unwrap();
        }
        v
    }

    /// An IPv4 SCTP packet: common header (zero checksum: the firewall does not verify it)
    /// and one empty chunk of `chunk_type`.
    pub fn sctp4(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, chunk_type: u8) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&sp.to_be_bytes());
        l4.extend_from_slice(&dp.to_be_bytes());
        l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, chunk_type, 0, 0, 4]);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .write(&mut v, etherparse::IpNumber(super::PROTO_SCTP), &l4)
            .unwrap();
        v
    }

    /// An ICMPv4 error of `kind` (type, code) from `src` to `dst` quoting `quoted` (an
    /// Ethernet frame; its IP header and 8 bytes after are quoted).
    pub fn icmp4_error(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, quoted: &[u8]) -> Vec<u8> {
        let ip = &quoted[14..];
        let ihl = ((ip[0] & 0xf) as usize) * 4;
        let q = &ip[..(ihl + 8).min(ip.len())];
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .icmpv4_raw(ty, code, [0; 4])
            .write(&mut v, q)
            .unwrap();
        v
    }

    /// Builds an IPv4 UDP datagram of `payload` split in two fragments at `split` (a
    /// multiple of 8 bytes of the UDP datagram).
    pub fn udp4_fragments(
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        payload: &[u8],
        id: u16,
        split: usize,
    ) -> [Vec<u8>; 2] {
        let whole = udp4(src, dst, sp, dp, payload);
        let l4 = &whole[34..];
        let mk = |part: &[u8], off: usize, more: bool| {
            let mut f = whole[..34].to_vec();
            f.extend_from_slice(part);
            let total = (20 + part.len()) as u16;
            f[16..18].copy_from_slice(&total.to_be_bytes());
            f[18..20].copy_from_slice(&id.to_be_bytes());
            let ff = ((off / 8) as u16) | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&ff.to_be_bytes());
            f
        };
        [mk(&l4[..split], 0, true), mk(&l4[split..], split, false)]
    }
}

#[cfg(test)]
mod tests {
    use super::testpkt::*;
    use super::*;

    #[test]
    fn parses_tcp4() {
        let p = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 100, 0, TCP_SYN);
        let Parsed::Ip(f) = parse_frame(&p).unwrap() else { panic!() };
        assert_eq!((f.v6, f.proto, f.sport, f.dport, f.seq), (false, 6, 1234, 80, 100));
        assert_eq!(f.src, 0x0a000001);
        assert_eq!(f.tcp_flags, TCP_SYN);
        assert_eq!(f.seg_len, 1);
        assert_eq!(f.frag, Frag::None);
    }

    #[test]
    fn parses_udp6_and_nonip() {
        let mut s = [0u8; 16];
        s[15] = 1;
        let p = udp6(s, s, 5, 6, b"x");
        let Parsed::Ip(f) = parse_frame(&p).unwrap() else { panic!() };
        assert!(f.v6);
        assert_eq!((f.proto, f.sport, f.dport, f.src), (17, 5, 6, 1));
        let mut arp = p.clone();
        arp[12..14].copy_from_slice(&ETH_ARP.to_be_bytes());
        assert_eq!(parse_frame(&arp).unwrap(), Parsed::NonIp(ETH_ARP));
    }

    #[test]
    fn one_vlan_tag_is_skipped_two_are_refused() {
        let p = udp4([10, 0, 0, 1], [10, 0, 0, 2], 5, 6, b"x");
        let tag = |frame: &[u8], tpid: u16| {
            let mut t = frame[..12].to_vec();
            t.extend_from_slice(&tpid.to_be_bytes());
            t.extend_from_slice(&[0x00, 0x0a]); // VLAN 10
            t.extend_from_slice(&frame[12..]);
            t
        };
        let one = tag(&p, ETH_VLAN);
        let Parsed::Ip(f) = parse_frame(&one).unwrap() else { panic!("one tag: not IP") };
        assert_eq!((f.sport, f.dport), (5, 6));
        for outer in [ETH_VLAN, ETH_QINQ] {
            for inner in [ETH_VLAN, ETH_QINQ] {
                let two = tag(&tag(&p, inner), outer);
                assert_eq!(parse_frame(&two), Err(Malformed::StackedVlan), "{outer:#x} then {inner:#x}");
            }
        }
    }

    #[test]
    fn walks_ipv6_extension_headers() {
        let s = [0u8; 16];
        let mut p = udp6(s, s, 5, 6, b"abcd");
        // Insert a hop-by-hop header (8 bytes) and a destination options header.
        let udp_start = 14 + 40;
        let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0]; // HBH -> dest opts, PadN
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // dest opts -> UDP
        p.splice(udp_start..udp_start, ext);
        p[14 + 6] = 0; // next header: HBH
        let plen = u16::from_be_bytes([p[18], p[19]]) + 16;
        p[18..20].copy_from_slice(&plen.to_be_bytes());
        let Parsed::Ip(f) = parse_frame(&p).unwrap() else { panic!() };
        assert_eq!((f.proto, f.sport, f.dport), (17, 5, 6));
        assert_eq!(f.l4_offset as usize, udp_start + 16);
        // A truncated extension header chain is malformed.
        let mut t = p.clone();
        t.truncate(udp_start + 9);
        t[18..20].copy_from_slice(&9u16.to_be_bytes());
        assert_eq!(parse_frame(&t), Err(Malformed::Ipv6Ext));
    }

    #[test]
    fn ipv4_fragments() {
        let [a, b] = udp4_fragments([1, 1, 1, 1], [2, 2, 2, 2], 7, 8, &[0u8; 40], 77, 24);
        let Parsed::Ip(fa) = parse_frame(&a).unwrap() else { panic!() };
        let Parsed::Ip(fb) = parse_frame(&b).unwrap() else { panic!() };
        assert_eq!(fa.frag, Frag::First(77));
        assert_eq!(fa.dport, 8);
        assert_eq!(fb.frag, Frag::Later(77));
        assert_eq!(fb.dport, 0);
    }

    #[test]
    fn truncations_are_errors_not_panics() {
        let p = tcp4([10, 0, 0, 1], [10, 0, 0, 2], 1234, 80, 100, 0, TCP_SYN);
        for n in 0..p.len() {
            let _ = parse_frame(&p[..n]);
        }
        assert_eq!(parse_frame(&p[..20]), Err(Malformed::Ipv4));
    }

    #[test]
    fn parses_sctp_ports() {
        let p = sctp4([10, 0, 0, 1], [10, 0, 0, 2], 5000, 6000, 1);
        let Parsed::Ip(f) = parse_frame(&p).unwrap() else { panic!() };
        assert_eq!((f.proto, f.sport, f.dport), (PROTO_SCTP, 5000, 6000));
        // Shorter than the 12-byte common header: truncated.
        let mut t = p[..14 + 20 + 11].to_vec();
        t[14 + 3] = 31; // IPv4 total length
        assert_eq!(parse_frame(&t), Err(Malformed::L4));
        // Quoted by an ICMP error, 8 bytes are enough.
        let e = icmp4_error([9, 9, 9, 9], [10, 0, 0, 1], 3, 3, &p);
        let Parsed::Ip(f) = parse_frame(&e).unwrap() else { panic!() };
        let q = parse_quoted(&e, f.l4_offset as usize + 8, false).unwrap();
        assert_eq!((q.sport, q.dport, q.proto), (5000, 6000, PROTO_SCTP));
    }

    #[test]
    fn parses_dccp_and_udplite_ports() {
        for (proto, min) in [(PROTO_DCCP, 12usize), (PROTO_UDPLITE, 8)] {
            let mut l4 = vec![0u8; 16];
            l4[..4].copy_from_slice(&[0x13, 0x88, 0x17, 0x70]); // 5000 -> 6000
            let mut v = Vec::new();
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .write(&mut v, etherparse::IpNumber(proto), &l4)
                .unwrap();
            let Parsed::Ip(f) = parse_frame(&v).unwrap() else { panic!() };
            assert_eq!((f.proto, f.sport, f.dport), (proto, 5000, 6000));
            // One byte short of the fixed header: truncated.
            let mut t = v[..14 + 20 + min - 1].to_vec();
            t[14 + 3] = (20 + min - 1) as u8; // IPv4 total length
            assert_eq!(parse_frame(&t), Err(Malformed::L4), "proto {proto}");
        }
    }

    #[test]
    fn icmp_error_quote() {
        let inner = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, b"q");
        let e = icmp4_error([9, 9, 9, 9], [10, 0, 0, 1], 3, 3, &inner);
        let Parsed::Ip(f) = parse_frame(&e).unwrap() else { panic!() };
        assert!(f.is_icmp_error());
        let q = parse_quoted(&e, f.l4_offset as usize + 8, false).unwrap();
        assert_eq!((q.sport, q.dport, q.proto), (1000, 53, 17));
    }
}

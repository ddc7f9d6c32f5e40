//! Decapsulation: underlay frames to the east port of their VNI, learning on the way.

use super::*;

impl Vtep {
    pub(super) fn is_our_group(&self, ip: IpAddr) -> bool {
        self.groups.contains(ip)
    }

    #[inline(always)]
    pub(super) fn rx_underlay(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let Some(et) = ethertype(pkt.data()) else {
            out.drop(pkt, VtepDrop::Trunc.index());
            return;
        };
        match (et, self.v6) {
            (ETH_IPV4, false) => self.rx_ipv4(pkt, now, out),
            (ETH_IPV6, true) => self.rx_ipv6(pkt, now, out),
            (ETH_ARP, false) => self.rx_arp(pkt, now, out),
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    /// Checks the outer destination MAC against the destination IP: ours for unicast, the
    /// group's for multicast.
    #[inline]
    pub(super) fn mac_ok(&self, dmac: &[u8], group_mac: Option<[u8; 6]>) -> bool {
        match group_mac {
            None => dmac == self.cfg.local_mac,
            Some(g) => dmac == g,
        }
    }

    #[inline(always)]
    pub(super) fn rx_ipv4(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let ip = match parse_ipv4(&d[ETH_LEN..]) {
            Ok(ip) => ip,
            Err(IpError::Truncated) => return out.drop(pkt, VtepDrop::Trunc.index()),
            Err(IpError::BadHeader) => return out.drop(pkt, VtepDrop::BadHdr.index()),
            Err(IpError::BadChecksum) => return out.drop(pkt, VtepDrop::BadCsum.index()),
        };
        let dst = ip.dst;
        let ok = if dst == self.local4 {
            self.mac_ok(&d[0..6], None)
        } else if dst.is_multicast() && (self.is_our_group(IpAddr::V4(dst)) || dst == ALL_SYSTEMS) {
            self.mac_ok(&d[0..6], Some(mcast_mac_v4(dst)))
        } else {
            false
        };
        if !ok {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        if ip.fragment {
            return out.drop(pkt, VtepDrop::Frag.index());
        }
        let l4 = ETH_LEN + ip.ihl;
        let end = ETH_LEN + ip.total_len;
        match ip.proto {
            PROTO_UDP => self.rx_vxlan(pkt, l4, end, IpAddr::V4(ip.src), now, out),
            PROTO_IGMP => self.rx_igmp(pkt, l4, end, out),
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    pub(super) fn rx_ipv6(&mut self, pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let ip = match parse_ipv6(&d[ETH_LEN..]) {
            Ok(ip) => ip,
            Err(IpError::Truncated) => return out.drop(pkt, VtepDrop::Trunc.index()),
            Err(_) => return out.drop(pkt, VtepDrop::BadHdr.index()),
        };
        let dst = ip.dst;
        let ok = if dst == self.local6 {
            self.mac_ok(&d[0..6], None)
        } else if dst.is_multicast()
            && (self.is_our_group(IpAddr::V6(dst)) || dst == ALL_NODES || dst == self.solicited)
        {
            self.mac_ok(&d[0..6], Some(mcast_mac_v6(dst)))
        } else {
            false
        };
        if !ok {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        let l4 = ETH_LEN + IPV6_LEN;
        let end = l4 + ip.payload_len;
        match ip.next {
            PROTO_UDP => self.rx_vxlan(pkt, l4, end, IpAddr::V6(ip.src), now, out),
            PROTO_ICMPV6 => self.rx_icmpv6(pkt, ip, l4, end, now, out),
            PROTO_HOPOPT => match skip_hbh(&d[l4..end]) {
                Some((PROTO_ICMPV6, len)) => self.rx_icmpv6(pkt, ip, l4 + len, end, now, out),
                Some(_) => out.drop(pkt, VtepDrop::NotVxlan.index()),
                None => out.drop(pkt, VtepDrop::BadHdr.index()),
            },
            _ => out.drop(pkt, VtepDrop::NotVxlan.index()),
        }
    }

    /// Checks the UDP and VXLAN headers of an outer frame (UDP at `l4`, IP payload ending at
    /// `end`) and finds the VNI's port. Both decapsulation paths use it: the fast one
    /// gives up on any error, the full one drops with the reason.
    #[inline(always)]
    fn check_vxlan(&mut self, pkt: &Packet, l4: usize, end: usize, v6: bool) -> Result<Outer, VtepDrop> {
        let d = pkt.data();
        let Ok(udp) = Udp::new_checked(d.get(l4..end).unwrap_or_default()) else {
            return Err(VtepDrop::Trunc);
        };
        if udp.dst_port() != self.cfg.udp_port {
            return Err(VtepDrop::NotVxlan);
        }
        let udp_len = usize::from(udp.len());
        if udp_len < UDP_LEN || l4 + udp_len > end {
            return Err(VtepDrop::BadHdr);
        }
        if udp_len < UDP_LEN + VXLAN_LEN + ETH_LEN {
            return Err(VtepDrop::Trunc);
        }
        // A zero UDP checksum means "none", accepted over IPv6 too (RFC 6935/6936). A frame
        // the NIC verified, or one the local kernel sent with a partial checksum (a veth or
        // TAP peer: offload still pending), is not checked again.
        if udp.checksum() != 0 && !csum_trusted(pkt) {
            // Pseudo-header: the addresses straight from the outer IP header, protocol, length.
            let addrs = if v6 { &d[OUTER_V6_ADDRS] } else { &d[OUTER_V4_ADDRS] };
            let acc = csum_add_value(csum_add(0, addrs), u64::from(PROTO_UDP) + udp_len as u64);
            if csum_fold(csum_add(acc, &d[l4..l4 + udp_len])) != 0 {
                return Err(VtepDrop::BadCsum);
            }
        }
        let vni = read_vxlan(&d[l4 + UDP_LEN..]).ok_or(VtepDrop::BadVxlan)?;
        let port = match self.memo_vni {
            Some((v, p)) if v == vni => p,
            _ => {
                let &p = self.vni_ports.get(&vni).ok_or(VtepDrop::UnknownVni)?;
                self.memo_vni = Some((vni, p));
                p
            }
        };
        let inner = l4 + UDP_LEN + VXLAN_LEN;
        Ok(Outer { vni, port, inner, end: l4 + udp_len, isrc: mac_to_u64(&d[inner + 6..inner + 12]) })
    }

    /// The full decapsulation path of a UDP frame for us (UDP header at `l4`, IP payload
    /// ending at `end`, sent by `src`): every check counted, offload metadata carried over.
    #[inline(always)]
    pub(super) fn rx_vxlan(
        &mut self,
        mut pkt: Packet,
        l4: usize,
        end: usize,
        src: IpAddr,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let o = match self.check_vxlan(&pkt, l4, end, src.is_ipv6()) {
            Ok(o) => o,
            Err(why) => return out.drop(pkt, why.index()),
        };
        if self.vnis.get(o.port as usize).is_none_or(Option::is_none) {
            return out.drop(pkt, VtepDrop::UnknownVni.index());
        }
        let smac = mac6(&pkt.data()[6..12]);
        // Strip and set the metadata before learning: the packet struct is moved at the end,
        // and narrow stores just before that move would stall it (store-forwarding).
        let m = o.strip(&mut pkt);
        if !inner_offload(m) {
            return out.drop(pkt, VtepDrop::BadGso.index());
        }
        if m.gso_type != GsoType::None {
            self.counters.gso_rx += 1;
        }
        let Some(st) = self.vnis.get_mut(o.port as usize).and_then(Option::as_mut) else {
            return out.drop(pkt, VtepDrop::UnknownVni.index());
        };
        let remote = Remote { ip: src, mac: Some(smac) };
        rx_account(st, &mut self.memo_learnt, &o, remote, &pkt, now);
        out.emit(Side::East, o.port, pkt);
    }

    /// The outer IP header of a unicast frame to our address, if it carries UDP: where UDP
    /// starts, where the IP payload ends, the sender.
    #[inline(always)]
    fn fast_outer_ip(&self, d: &[u8]) -> Option<(usize, usize, IpAddr)> {
        if !self.v6 {
            if ethertype(d) != Some(ETH_IPV4) {
                return None;
            }
            let ip = parse_ipv4(&d[ETH_LEN..]).ok()?;
            if ip.dst != self.local4 || ip.fragment || ip.proto != PROTO_UDP {
                return None;
            }
            Some((ETH_LEN + ip.ihl, ETH_LEN + ip.total_len, IpAddr::V4(ip.src)))
        } else {
            if ethertype(d) != Some(ETH_IPV6) {
                return None;
            }
            let ip = parse_ipv6(&d[ETH_LEN..]).ok()?;
            if ip.dst != self.local6 || ip.next != PROTO_UDP {
                return None;
            }
            Some((ETH_LEN + IPV6_LEN, ETH_LEN + IPV6_LEN + ip.payload_len, IpAddr::V6(ip.src)))
        }
    }

    /// Decapsulates `pkt` in place if it is a valid unicast VXLAN frame to our address for
    /// a known VNI (on port `expect`, if given); returns its port. Anything else is left
    /// untouched for the full path, which also counts the drops.
    #[inline(always)]
    pub(super) fn decap_fast(
        &mut self,
        pkt: &mut Packet,
        now: Timestamp,
        expect: Option<PortId>,
    ) -> Option<PortId> {
        let d = pkt.data();
        if d.len() < OVERHEAD_V4 + ETH_LEN || d[0..6] != self.cfg.local_mac {
            return None;
        }
        let (l4, end, src) = self.fast_outer_ip(d)?;
        let o = self.check_vxlan(pkt, l4, end, self.v6).ok()?;
        if expect.is_some_and(|e| e != o.port) {
            return None;
        }
        let smac = mac6(&pkt.data()[6..12]);
        if pkt.meta().gso_type != GsoType::None || pkt.meta().offload.contains(OffloadFlags::CSUM_NEEDED) {
            // Offload state to carry to the inner frame: the full path sorts it out.
            return None;
        }
        let st = self.vnis.get_mut(o.port as usize)?.as_mut()?;
        o.strip(pkt).offload = OffloadFlags::NONE;
        let remote = Remote { ip: src, mac: Some(smac) };
        rx_account(st, &mut self.memo_learnt, &o, remote, pkt, now);
        Some(o.port)
    }
}

/// Where the outer IPv4 / IPv6 addresses (the UDP pseudo-header's) lie in an outer frame.
const OUTER_V4_ADDRS: std::ops::Range<usize> = ETH_LEN + v4_field::SRC.start..ETH_LEN + v4_field::DST.end;
const OUTER_V6_ADDRS: std::ops::Range<usize> = ETH_LEN + v6_field::SRC.start..ETH_LEN + v6_field::DST.end;

/// A checked VXLAN outer header.
struct Outer {
    vni: u32,
    port: PortId,
    /// Offset of the inner frame.
    inner: usize,
    /// End of the UDP datagram (anything after it is link padding).
    end: usize,
    /// Inner source MAC.
    isrc: u64,
}

impl Outer {
    /// Strips the outer headers from `pkt` and points its metadata at the inner frame.
    #[inline(always)]
    fn strip<'p>(&self, pkt: &'p mut Packet) -> &'p mut brick_core::Meta {
        pkt.truncate(self.end);
        let _ = pkt.pull(self.inner);
        let m = pkt.meta_mut();
        m.l2_offset = 0;
        m.l3_offset = ETH_LEN as u16;
        m.l4_offset = 0;
        m.vni = Some(self.vni);
        m
    }
}

/// Counts a decapsulated frame on its VNI and learns its inner source behind `remote`
/// (skipped when it repeats the last learnt triple, `memo`).
#[inline(always)]
fn rx_account(
    st: &mut VniState,
    memo: &mut Option<(u64, PortId, Remote)>,
    o: &Outer,
    remote: Remote,
    pkt: &Packet,
    now: Timestamp,
) {
    st.counters.decap_pkts += 1;
    st.counters.decap_bytes += pkt.len() as u64;
    st.counters.bum_rx += u64::from(pkt.data().first().is_some_and(|b| b & 1 == 1));
    let isrc = o.isrc;
    if !is_group(isrc) && isrc != 0 && *memo != Some((isrc, o.port, remote)) {
        match st.fdb.learn(isrc, remote, now) {
            Learned::Refreshed | Learned::Static => {}
            Learned::New => st.counters.learned += 1,
            Learned::Moved => st.counters.moves += 1,
            Learned::Refused => st.counters.learn_refused += 1,
        }
        *memo = Some((isrc, o.port, remote));
    }
}

/// Offload state of a frame just decapsulated (`m` already shifted to the inner frame): a
/// partial checksum pointing into the inner frame (an inner TCP/UDP header) and GSO metadata
/// stay for the VM; anything about the outer headers is cleared. Returns false for a
/// super-frame whose metadata does not point into the inner frame (malformed).
pub(super) fn inner_offload(m: &mut brick_core::Meta) -> bool {
    // The smallest inner L4 offset: Ethernet + IPv4 header.
    const MIN_L4: u16 = (ETH_LEN + IPV4_LEN) as u16;
    if m.offload.contains(OffloadFlags::CSUM_NEEDED) && m.csum_start >= MIN_L4 {
        m.offload = OffloadFlags::CSUM_NEEDED;
        return true;
    }
    m.offload = OffloadFlags::NONE;
    m.csum_start = 0;
    m.csum_offset = 0;
    if m.gso_type != GsoType::None {
        m.gso_type = GsoType::None;
        m.gso_size = 0;
        return false;
    }
    true
}

/// Whether the L4 checksum need not be verified: the NIC did it, or the frame comes from the
/// local kernel with its checksum still to be completed (`CHECKSUM_PARTIAL`).
#[inline]
pub(super) fn csum_trusted(pkt: &Packet) -> bool {
    let o = pkt.meta().offload;
    o.contains(OffloadFlags::CSUM_VERIFIED) || o.contains(OffloadFlags::CSUM_NEEDED)
}

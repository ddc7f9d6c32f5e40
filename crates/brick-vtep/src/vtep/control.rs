//! Control frames the VTEP sends and consumes: IGMP/MLD reports, ARP/ND requests and
//! answers, and ICMP too-big feedback.

use super::*;

/// Control packets waiting for the next poll (joins, probes from `tick`).
const PENDING_MAX: usize = 512;
/// Groups per IGMPv3 / MLDv2 report.
const GROUPS_PER_REPORT: usize = 64;
/// IGMP membership query type.
const IGMP_QUERY: u8 = 0x11;
/// MLD multicast listener query type.
const MLD_QUERY: u8 = 130;

impl Vtep {
    /// Copies `self.scratch` into a pool packet.
    pub(super) fn scratch_packet(&mut self) -> Option<Packet> {
        let p = self.pool.alloc_from(&self.scratch);
        if p.is_none() {
            self.counters.control_lost += 1;
        }
        p
    }

    pub(super) fn ring(&mut self) {
        if !self.rung {
            self.rung = true;
            self.waker.wake();
        }
    }

    pub(super) fn queue_scratch(&mut self) {
        if self.pending.len() >= PENDING_MAX {
            self.counters.control_lost += 1;
            return;
        }
        if let Some(p) = self.scratch_packet() {
            self.pending.push_back(p);
            self.ring();
        }
    }

    /// Builds the reports for `groups` into packets, handing each to `sink`.
    /// `join`: true = join / current state, false = leave. `answer`: a query answer
    /// (IGMPv3/MLDv2 "mode is exclude") rather than a state change. `igmp_v2` forces v2.
    pub(super) fn build_reports(
        &mut self,
        groups: &[IpAddr],
        join: bool,
        answer: bool,
        igmp_v2: bool,
        mut sink: impl FnMut(&mut Self),
    ) {
        let mac = self.cfg.local_mac;
        if self.v6 {
            let gs: Vec<Ipv6Addr> =
                groups.iter().filter_map(|g| if let IpAddr::V6(a) = g { Some(*a) } else { None }).collect();
            let kind = match (join, answer) {
                (_, true) => mld_record::MODE_IS_EXCLUDE,
                (true, false) => mld_record::CHANGE_TO_EXCLUDE,
                (false, false) => mld_record::CHANGE_TO_INCLUDE,
            };
            for chunk in gs.chunks(GROUPS_PER_REPORT) {
                build_mldv2(&mut self.scratch, mac, kind, chunk);
                self.counters.reports += 1;
                sink(self);
            }
        } else {
            let gs: Vec<Ipv4Addr> =
                groups.iter().filter_map(|g| if let IpAddr::V4(a) = g { Some(*a) } else { None }).collect();
            if igmp_v2 || self.cfg.igmp_version == IgmpVersion::V2 {
                for g in gs {
                    build_igmpv2(&mut self.scratch, mac, self.local4, g, !join);
                    self.counters.reports += 1;
                    sink(self);
                }
            } else {
                let kind = match (join, answer) {
                    (_, true) => igmp_record::MODE_IS_EXCLUDE,
                    (true, false) => igmp_record::CHANGE_TO_EXCLUDE,
                    (false, false) => igmp_record::CHANGE_TO_INCLUDE,
                };
                for chunk in gs.chunks(GROUPS_PER_REPORT) {
                    build_igmpv3(&mut self.scratch, mac, self.local4, kind, chunk);
                    self.counters.reports += 1;
                    sink(self);
                }
            }
        }
    }

    pub(super) fn queue_reports(&mut self, groups: &[IpAddr], join: bool) {
        self.build_reports(groups, join, false, false, |s| s.queue_scratch());
    }

    /// Builds an ARP request / neighbour solicitation for `ip` into the scratch buffer.
    pub(super) fn build_request(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(a) => build_arp(&mut self.scratch, 1, self.cfg.local_mac, self.local4, [0; 6], a),
            IpAddr::V6(a) => build_ns(&mut self.scratch, self.cfg.local_mac, self.local6, a),
        }
        self.counters.neigh_requests += 1;
    }

    pub(super) fn emit_scratch(&mut self, side: Side, port: PortId, out: &mut Output<'_>) {
        match self.scratch_packet() {
            Some(p) => out.emit(side, port, p),
            None => out.count_drop(VtepDrop::Pool.index(), 1),
        }
    }

    pub(super) fn rx_arp(&mut self, mut pkt: Packet, now: Timestamp, out: &mut Output<'_>) {
        let d = pkt.data();
        let dmac = &d[0..6];
        if dmac != BROADCAST && dmac != self.cfg.local_mac {
            return out.drop(pkt, VtepDrop::NotUs.index());
        }
        let Some(arp) = parse_arp(&d[ETH_LEN..]) else {
            let reason =
                if d.len() < ETH_LEN + 28 { VtepDrop::Trunc.index() } else { VtepDrop::BadHdr.index() };
            return out.drop(pkt, reason);
        };
        let for_us = arp.tpa == self.local4;
        if !arp.spa.is_unspecified() {
            self.neigh_learn(IpAddr::V4(arp.spa), arp.sha, for_us, now, out);
        }
        if for_us && arp.op == arp_field::REQUEST {
            // Answer in place: the request becomes the reply (both views were checked above).
            let mac = MacAddr(self.cfg.local_mac);
            if let Ok(mut eth) = Ethernet::new_checked(pkt.data_mut()) {
                eth.set_dst(MacAddr(arp.sha));
                eth.set_src(mac);
            }
            if let Ok(mut a) = Arp::new_checked(&mut pkt.data_mut()[ETH_LEN..]) {
                a.set_oper(arp_field::REPLY);
                a.set_sender(mac, u32::from(self.local4));
                a.set_target(MacAddr(arp.sha), u32::from(arp.spa));
            }
            self.counters.neigh_answers += 1;
            out.emit(Side::West, 0, pkt);
            return;
        }
        out.drop(pkt, if for_us { VtepDrop::Control.index() } else { VtepDrop::NotUs.index() });
    }

    pub(super) fn rx_igmp(&mut self, pkt: Packet, at: usize, end: usize, out: &mut Output<'_>) {
        let bytes = &pkt.data()[at..end];
        let Ok(igmp) = Igmp::new_checked(bytes) else {
            return out.drop(pkt, VtepDrop::Trunc.index());
        };
        if checksum(bytes) != 0 {
            return out.drop(pkt, VtepDrop::BadCsum.index());
        }
        if igmp.msg_type() != IGMP_QUERY {
            // Other hosts' reports and leaves: nothing to do for a host.
            return out.drop(pkt, VtepDrop::Control.index());
        }
        let group = Ipv4Addr::from(igmp.group());
        // An IGMPv3 query is at least 12 bytes long.
        let v2 = bytes.len() < 12;
        let groups: Vec<IpAddr> = if group.is_unspecified() {
            self.joined_groups()
        } else if self.is_our_group(IpAddr::V4(group)) {
            vec![IpAddr::V4(group)]
        } else {
            Vec::new()
        };
        out.drop(pkt, VtepDrop::Control.index());
        if !groups.is_empty() {
            self.counters.queries += 1;
            self.build_reports(&groups, true, true, v2, |s| s.emit_scratch(Side::West, 0, out));
        }
    }

    pub(super) fn rx_icmpv6(
        &mut self,
        pkt: Packet,
        ip: Ipv6View,
        at: usize,
        end: usize,
        now: Timestamp,
        out: &mut Output<'_>,
    ) {
        let d = pkt.data();
        let icmp = &d[at..end];
        if icmp.len() < 8 {
            return out.drop(pkt, VtepDrop::Trunc.index());
        }
        let acc = pseudo_v6(&ip.src.octets(), &ip.dst.octets(), icmp.len() as u32, PROTO_ICMPV6);
        if csum_fold(csum_add(acc, icmp)) != 0 {
            return out.drop(pkt, VtepDrop::BadCsum.index());
        }
        let nd = Ndp::new_checked(icmp).ok().filter(|_| ip.hop_limit == 255 && icmp[1] == 0);
        let mld = Mld::new_checked(icmp).ok().filter(|m| m.msg_type() == MLD_QUERY);
        match (nd, mld) {
            (Some(nd), _) => {
                let target = Ipv6Addr::from(nd.target());
                let lladdr = nd.lladdr().map(|m| m.0);
                if !nd.is_advert() {
                    let for_us = target == self.local6;
                    let slla = lladdr; // a solicitation's source link-layer address
                    if let (false, Some(mac)) = (ip.src.is_unspecified(), slla) {
                        self.neigh_learn(IpAddr::V6(ip.src), mac, for_us, now, out);
                    }
                    if for_us {
                        let (dst, dmac) = if ip.src.is_unspecified() {
                            (ALL_NODES, mcast_mac_v6(ALL_NODES))
                        } else {
                            (ip.src, slla.unwrap_or_else(|| mac6(&d[6..12])))
                        };
                        build_na(&mut self.scratch, self.cfg.local_mac, self.local6, dmac, dst);
                        self.counters.neigh_answers += 1;
                        out.drop(pkt, VtepDrop::Control.index());
                        self.emit_scratch(Side::West, 0, out);
                        return;
                    }
                } else {
                    let mac = lladdr.unwrap_or_else(|| mac6(&d[6..12]));
                    self.neigh_learn(IpAddr::V6(target), mac, false, now, out);
                }
                out.drop(pkt, VtepDrop::Control.index());
            }
            (None, Some(mld)) => {
                let group = Ipv6Addr::from(mld.group());
                let groups: Vec<IpAddr> = if group.is_unspecified() {
                    self.joined_groups()
                } else if self.is_our_group(IpAddr::V6(group)) {
                    vec![IpAddr::V6(group)]
                } else {
                    Vec::new()
                };
                out.drop(pkt, VtepDrop::Control.index());
                if !groups.is_empty() {
                    self.counters.queries += 1;
                    self.build_reports(&groups, true, true, false, |s| s.emit_scratch(Side::West, 0, out));
                }
            }
            _ => out.drop(pkt, VtepDrop::Control.index()),
        }
    }
}

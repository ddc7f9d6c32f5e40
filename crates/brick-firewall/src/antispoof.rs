//! The anti-spoof brick: a VM may only speak with its own MAC and addresses.
//!
//! Packets arriving on the **west** side (from the network) pass untouched. Packets
//! arriving on the **east** side (from the VM) are checked:
//!
//! 1. the Ethernet source must be the VM's MAC; VLAN-tagged frames are dropped;
//! 2. RARP is always dropped;
//! 3. ARP (when `check_arp`): Ethernet/IPv4 ARP only, sender MAC = the VM's MAC, sender IP
//!    one of the VM's IPv4 addresses (or 0.0.0.0 in a request: an RFC 5227 probe);
//! 4. IPv4 (when `check_ip`): source one of the VM's IPv4 addresses, or 0.0.0.0 for a DHCP
//!    client packet (UDP 68 → 67);
//! 5. IPv6 (when `check_ip`): source one of the VM's IPv6 addresses, or one of its allowed
//!    link-local addresses (see below), or `::` for DAD neighbour solicitations, router
//!    solicitations and MLDv2 reports;
//! 6. NDP (when `check_ndp`): router advertisements and redirects are dropped (a VM is not a
//!    router); a neighbour advertisement's target must be one of the VM's IPv6 addresses or
//!    allowed link-local addresses, and its target link-layer option, when present, the
//!    VM's MAC; a neighbour solicitation's source link-layer option, when present, must be
//!    the VM's MAC, and a DAD solicitation (source `::`) must carry none and target one of
//!    the VM's addresses or allowed link-local addresses;
//! 7. other ethertypes are dropped unless `allow_other_ethertypes`.
//!
//! **Link-local addresses** (fe80::/10, used by NDP, DHCPv6, MLD and routing protocols) are
//! tied to the VM like any other: by default it may use only the modified EUI-64 address
//! derived from its MAC ([`eui64_link_local`], what Linux and most guests configure by
//! default), plus those given with [`AntiSpoof::set_link_local`] (a guest using RFC 7217
//! stable-privacy or random link-local addresses, a VRRP/keepalived address). Without this a
//! VM could answer for another host's link-local address, a gateway's for instance, and
//! poison its neighbours' caches. [`AntiSpoofOptions::any_link_local`] restores the old
//! behaviour (any fe80::/10 address).
//! 7. other ethertypes are dropped unless `allow_other_ethertypes`.
//!
//! Each drop is counted under its reason ([`ANTISPOOF_DROP_REASONS`]).

use std::net::{IpAddr, Ipv6Addr};

use brick_core::{Brick, Burst, Output, PortId, Side};

use brick_wire::icmp::nd_field;
use brick_wire::ip::v4_field;
use brick_wire::transport::udp_field;
use brick_wire::{arp, ethernet, Arp, Ethernet, Ndp};

use crate::wire::{
    self, be16, be32, Frag, Parsed, ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_QINQ, ETH_RARP, ETH_VLAN, PROTO_ICMP6,
};

/// Most addresses (IPv4 plus IPv6) an anti-spoof brick accepts.
pub const MAX_ADDRESSES: usize = 256;

brick_core::drop_reasons! {
    /// Why the anti-spoof brick dropped a frame; `as usize` indexes [`ANTISPOOF_DROP_REASONS`].
    pub enum SpoofDrop {
        /// Too short or invalid headers.
        Malformed => "malformed",
        /// Ethernet source is not the VM's MAC.
        SourceMac => "source mac",
        /// 802.1Q / 802.1ad tagged frame.
        VlanTagged => "vlan tagged",
        /// RARP.
        Rarp => "rarp",
        /// ARP that is not Ethernet/IPv4, or truncated.
        ArpMalformed => "arp malformed",
        /// ARP sender hardware address is not the VM's MAC.
        ArpSenderMac => "arp sender mac",
        /// ARP sender IP is not one of the VM's.
        ArpSenderIp => "arp sender ip",
        /// IPv4 source is not one of the VM's.
        Ipv4Source => "ipv4 source",
        /// IPv6 source is not one of the VM's.
        Ipv6Source => "ipv6 source",
        /// Truncated neighbour discovery message.
        NdpMalformed => "ndp malformed",
        /// Neighbour advertisement / DAD solicitation for an address that is not the VM's.
        NdpTarget => "ndp target",
        /// Link-layer address option that is not the VM's MAC (or present in a DAD
        /// solicitation).
        NdpLinkLayer => "ndp link-layer option",
        /// Router advertisement or redirect from a VM.
        NdpRouter => "ndp router message",
        /// Ethertype not allowed.
        Ethertype => "ethertype",
        /// IPv6 link-local source that is not one of the VM's allowed link-local addresses.
        Ipv6LinkLocal => "ipv6 link-local source",
    }
}

/// Drop reason names of the anti-spoof brick, in [`SpoofDrop`] order.
pub const ANTISPOOF_DROP_REASONS: &[&str] = SpoofDrop::NAMES;

/// What the anti-spoof brick checks besides the MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AntiSpoofOptions {
    /// Check IPv4/IPv6 source addresses of IP packets (default true).
    pub check_ip: bool,
    /// Check ARP sender addresses (default true).
    pub check_arp: bool,
    /// Check neighbour discovery (default true).
    pub check_ndp: bool,
    /// Let ethertypes other than IPv4, IPv6 and ARP through (default false).
    pub allow_other_ethertypes: bool,
    /// Accept any IPv6 link-local address (fe80::/10) as the VM's, not only the EUI-64 one
    /// of its MAC and those given with [`AntiSpoof::set_link_local`] (default false).
    pub any_link_local: bool,
}

impl Default for AntiSpoofOptions {
    fn default() -> Self {
        AntiSpoofOptions {
            check_ip: true,
            check_arp: true,
            check_ndp: true,
            allow_other_ethertypes: false,
            any_link_local: false,
        }
    }
}

/// The modified EUI-64 IPv6 link-local address of `mac` (RFC 4291 appendix A): fe80:: with
/// the MAC's universal/local bit flipped and ff:fe in its middle, e.g. 52:54:00:12:34:56 →
/// fe80::5054:ff:fe12:3456.
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    let m = mac;
    Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
}

/// Too many addresses for one brick.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} addresses given, at most {MAX_ADDRESSES} allowed")]
pub struct TooManyAddresses(pub usize);

/// The anti-spoof brick.
#[derive(Clone, Debug)]
pub struct AntiSpoof {
    mac: [u8; 6],
    v4: Vec<u32>,
    v6: Vec<u128>,
    /// Link-local addresses given besides the MAC's EUI-64 one.
    extra_link_local: Vec<u128>,
    /// Every allowed link-local address: the MAC's EUI-64 one, then the extra ones.
    link_local: Vec<u128>,
    opts: AntiSpoofOptions,
}

#[inline]
fn is_link_local(a: u128) -> bool {
    a >> 118 == 0x3fa // fe80::/10
}

impl AntiSpoof {
    /// A brick for the VM with `mac` and addresses `ips`.
    pub fn new(
        mac: [u8; 6],
        ips: &[IpAddr],
        options: AntiSpoofOptions,
    ) -> Result<AntiSpoof, TooManyAddresses> {
        let mut a = AntiSpoof {
            mac,
            v4: Vec::new(),
            v6: Vec::new(),
            extra_link_local: Vec::new(),
            link_local: Vec::new(),
            opts: options,
        };
        a.set_ips(ips)?;
        a.rebuild_link_local();
        Ok(a)
    }

    /// Sets the link-local addresses the VM may use besides the EUI-64 one of its MAC
    /// (live, like [`set_ips`](Self::set_ips)). Addresses outside fe80::/10 are ignored:
    /// they belong in `set_ips`.
    pub fn set_link_local(&mut self, addrs: &[Ipv6Addr]) -> Result<(), TooManyAddresses> {
        if addrs.len() > MAX_ADDRESSES {
            return Err(TooManyAddresses(addrs.len()));
        }
        self.extra_link_local = addrs.iter().map(|a| u128::from(*a)).filter(|&a| is_link_local(a)).collect();
        self.rebuild_link_local();
        Ok(())
    }

    /// The link-local addresses the VM may use: the EUI-64 one of its MAC first.
    pub fn link_local(&self) -> Vec<Ipv6Addr> {
        self.link_local.iter().map(|&a| Ipv6Addr::from(a)).collect()
    }

    fn rebuild_link_local(&mut self) {
        self.link_local = vec![u128::from(eui64_link_local(self.mac))];
        for &a in &self.extra_link_local {
            if !self.link_local.contains(&a) {
                self.link_local.push(a);
            }
        }
    }

    #[inline]
    fn link_local_ok(&self, a: u128) -> bool {
        self.opts.any_link_local || self.link_local.contains(&a)
    }

    /// One of the VM's addresses, or one of its allowed link-local ones.
    #[inline]
    fn own_v6(&self, a: u128) -> bool {
        self.has_v6(a) || (is_link_local(a) && self.link_local_ok(a))
    }

    /// Replaces the VM's addresses (live: through `GraphHandle::exec` + `Graph::brick_mut`).
    pub fn set_ips(&mut self, ips: &[IpAddr]) -> Result<(), TooManyAddresses> {
        if ips.len() > MAX_ADDRESSES {
            return Err(TooManyAddresses(ips.len()));
        }
        self.v4 = ips
            .iter()
            .filter_map(|i| match i {
                IpAddr::V4(a) => Some(u32::from(*a)),
                IpAddr::V6(_) => None,
            })
            .collect();
        self.v6 = ips
            .iter()
            .filter_map(|i| match i {
                IpAddr::V6(a) => Some(u128::from(*a)),
                IpAddr::V4(_) => None,
            })
            .collect();
        self.v4.sort_unstable();
        self.v4.dedup();
        self.v6.sort_unstable();
        self.v6.dedup();
        Ok(())
    }

    /// Replaces the VM's MAC (and with it the EUI-64 link-local address it may use).
    pub fn set_mac(&mut self, mac: [u8; 6]) {
        self.mac = mac;
        self.rebuild_link_local();
    }

    /// Replaces the options.
    pub fn set_options(&mut self, options: AntiSpoofOptions) {
        self.opts = options;
    }

    /// The VM's MAC.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The options.
    pub fn options(&self) -> AntiSpoofOptions {
        self.opts
    }

    #[inline]
    fn has_v4(&self, a: u32) -> bool {
        self.v4.contains(&a)
    }

    #[inline]
    fn has_v6(&self, a: u128) -> bool {
        self.v6.contains(&a)
    }

    /// Checks one frame sent by the VM; `Ok` to forward it.
    #[inline]
    pub fn check(&self, f: &[u8]) -> Result<(), SpoofDrop> {
        let eth = Ethernet::new_checked(f).map_err(|_| SpoofDrop::Malformed)?;
        if eth.src().0 != self.mac {
            return Err(SpoofDrop::SourceMac);
        }
        match eth.ethertype().0 {
            ETH_IPV4 => self.check_ipv4(eth.payload()),
            ETH_ARP => self.check_arp(f),
            ETH_IPV6 => self.check_ipv6(f),
            ETH_RARP => Err(SpoofDrop::Rarp),
            ETH_VLAN | ETH_QINQ => Err(SpoofDrop::VlanTagged),
            _ if self.opts.allow_other_ethertypes => Ok(()),
            _ => Err(SpoofDrop::Ethertype),
        }
    }

    /// The IPv4 source of `ip` (the bytes after the Ethernet header): only the fixed
    /// header's first 20 bytes must be there; a DHCP client (source 0.0.0.0, UDP 68 → 67)
    /// passes.
    fn check_ipv4(&self, ip: &[u8]) -> Result<(), SpoofDrop> {
        if !self.opts.check_ip {
            return Ok(());
        }
        let h = ip.get(..v4_field::LEN).ok_or(SpoofDrop::Malformed)?;
        if h[v4_field::VER_IHL] >> 4 != 4 {
            return Err(SpoofDrop::Malformed);
        }
        let src = be32(h, v4_field::SRC.start).unwrap_or(0);
        if self.has_v4(src) {
            return Ok(());
        }
        if src == 0 && h[v4_field::PROTO] == wire::PROTO_UDP {
            let l4 = usize::from(h[v4_field::VER_IHL] & 0xf) * 4;
            let port = |r: std::ops::Range<usize>| be16(ip, l4 + r.start);
            if port(udp_field::SRC_PORT) == Some(68) && port(udp_field::DST_PORT) == Some(67) {
                return Ok(());
            }
        }
        Err(SpoofDrop::Ipv4Source)
    }

    fn check_arp(&self, f: &[u8]) -> Result<(), SpoofDrop> {
        if !self.opts.check_arp {
            return Ok(());
        }
        // Ethernet/IPv4 only: hardware type 1, protocol IPv4, sizes 6 and 4.
        let a = f
            .get(ethernet::field::LEN..)
            .and_then(|a| Arp::new_checked(a).ok())
            .filter(Arp::is_ethernet_ipv4)
            .ok_or(SpoofDrop::ArpMalformed)?;
        if a.sha().0 != self.mac {
            return Err(SpoofDrop::ArpSenderMac);
        }
        let spa = a.spa();
        if self.has_v4(spa) || (spa == 0 && a.oper() == arp::field::REQUEST) {
            Ok(())
        } else {
            Err(SpoofDrop::ArpSenderIp)
        }
    }

    fn check_ipv6(&self, f: &[u8]) -> Result<(), SpoofDrop> {
        if !self.opts.check_ip && !self.opts.check_ndp {
            return Ok(());
        }
        let flow = match wire::parse_frame(f) {
            Ok(Parsed::Ip(fl)) => fl,
            _ => return Err(SpoofDrop::Malformed),
        };
        let icmp6 = flow.proto == PROTO_ICMP6 && flow.l4_offset != 0;
        let ty = if icmp6 { flow.icmp_type } else { 0 };
        if self.opts.check_ip {
            let ok = self.own_v6(flow.src) || (flow.src == 0 && icmp6 && matches!(ty, 133 | 135 | 143));
            if !ok {
                return Err(if is_link_local(flow.src) {
                    SpoofDrop::Ipv6LinkLocal
                } else {
                    SpoofDrop::Ipv6Source
                });
            }
        }
        // Neighbour Discovery is never fragmented (RFC 6980): the options of a fragmented
        // one could hide in a later fragment, out of reach of the checks below.
        if self.opts.check_ndp && icmp6 && matches!(ty, 133..=137) && flow.frag != Frag::None {
            return Err(SpoofDrop::NdpMalformed);
        }
        if self.opts.check_ndp && icmp6 {
            let at = flow.l4_offset as usize;
            match ty {
                134 | 137 => return Err(SpoofDrop::NdpRouter),
                nd_field::NS | nd_field::NA => {
                    let nd =
                        f.get(at..).and_then(|m| Ndp::new_checked(m).ok()).ok_or(SpoofDrop::NdpMalformed)?;
                    let target_ok = self.own_v6(nd.target());
                    let want_opt = if nd.is_advert() { nd_field::OPT_TLLA } else { nd_field::OPT_SLLA };
                    let mut opt_seen = false;
                    // Every option is checked (not just the first of its kind): a second
                    // link-layer address option could otherwise smuggle another MAC.
                    for o in nd.options() {
                        let o = o.map_err(|_| SpoofDrop::NdpMalformed)?;
                        if o.kind == want_opt {
                            if o.data.get(..6) != Some(&self.mac[..]) {
                                return Err(SpoofDrop::NdpLinkLayer);
                            }
                            opt_seen = true;
                        }
                    }
                    if ty == 136 && !target_ok {
                        return Err(SpoofDrop::NdpTarget);
                    }
                    if ty == 135 && flow.src == 0 {
                        if opt_seen {
                            return Err(SpoofDrop::NdpLinkLayer);
                        }
                        if !target_ok {
                            return Err(SpoofDrop::NdpTarget);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Brick for AntiSpoof {
    fn kind(&self) -> &'static str {
        "antispoof"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        ANTISPOOF_DROP_REASONS
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let to = side.opposite();
        if side == Side::West {
            out.emit_all(to, 0, pkts);
            return;
        }
        out.emit_passed(to, 0, pkts, |pkt| self.check(pkt.data()).err().map(|r| r as usize));
    }

    fn describe(&self) -> Vec<String> {
        let ll = if self.opts.any_link_local {
            "any link-local".to_string()
        } else {
            let first = Ipv6Addr::from(self.link_local[0]);
            match self.link_local.len() - 1 {
                0 => format!("link-local {first}"),
                n => format!("link-local {first} +{n}"),
            }
        };
        vec![format!(
            "mac {}, {} ipv4, {} ipv6, {ll}",
            brick_core::MacFmt(self.mac),
            self.v4.len(),
            self.v6.len()
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const VM: [u8; 6] = [2, 0, 0, 0, 0, 0x42];
    const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0x99];
    const BCAST: [u8; 6] = [0xff; 6];
    /// The EUI-64 link-local address of VM.
    const LL: &str = "fe80::ff:fe00:42";

    fn ip6(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    fn brick() -> AntiSpoof {
        AntiSpoof::new(
            VM,
            &["42.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()],
            AntiSpoofOptions::default(),
        )
        .unwrap()
    }

    fn udp4(mac: [u8; 6], src: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(mac, BCAST).ipv4(src, [255; 4], 64).udp(sp, dp).write(&mut v, b"x").unwrap();
        v
    }

    fn udp6(src: &str) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(VM, BCAST)
            .ipv6(ip6(src), ip6("ff02::1:2"), 64)
            .udp(546, 547)
            .write(&mut v, b"x")
            .unwrap();
        v
    }

    fn arp(op: u16, sha: [u8; 6], spa: [u8; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&BCAST);
        v.extend_from_slice(&VM);
        v.extend_from_slice(&ETH_ARP.to_be_bytes());
        v.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
        v.extend_from_slice(&op.to_be_bytes());
        v.extend_from_slice(&sha);
        v.extend_from_slice(&spa);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&[42, 0, 0, 2]);
        v
    }

    /// An NS (135) or NA (136) with an optional link-layer option.
    fn ndp(ty: u8, src: &str, target: &str, lla: Option<[u8; 6]>) -> Vec<u8> {
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&ip6(target));
        if let Some(m) = lla {
            body.extend_from_slice(&[if ty == 135 { 1 } else { 2 }, 1]);
            body.extend_from_slice(&m);
        }
        let mut v = Vec::new();
        PacketBuilder::ethernet2(VM, BCAST)
            .ipv6(ip6(src), ip6("ff02::1"), 255)
            .icmpv6_raw(ty, 0, [0; 4])
            .write(&mut v, &body[4..])
            .unwrap();
        v
    }

    /// `frame` (Ethernet + IPv6 + payload) as the first fragment of a larger datagram.
    fn fragmented(mut frame: Vec<u8>) -> Vec<u8> {
        let next = frame[14 + 6];
        frame[14 + 6] = 44;
        let plen = u16::from_be_bytes([frame[18], frame[19]]) + 8;
        frame[18..20].copy_from_slice(&plen.to_be_bytes());
        frame.splice(14 + 40..14 + 40, [next, 0, 0, 1, 0, 0, 0, 7]);
        frame
    }

    #[test]
    fn checks_table() {
        let b = brick();
        use SpoofDrop::*;
        let mut rarp = arp(3, VM, [42, 0, 0, 1]);
        rarp[12..14].copy_from_slice(&ETH_RARP.to_be_bytes());
        let mut vlan = udp4(VM, [42, 0, 0, 1], 1, 2);
        vlan[12..14].copy_from_slice(&ETH_VLAN.to_be_bytes());
        let mut lldp = udp4(VM, [42, 0, 0, 1], 1, 2);
        lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, Result<(), SpoofDrop>)> = vec![
            ("own ipv4", udp4(VM, [42, 0, 0, 1], 1, 2), Ok(())),
            ("foreign mac", udp4(OTHER, [42, 0, 0, 1], 1, 2), Err(SourceMac)),
            ("foreign ipv4", udp4(VM, [42, 0, 0, 2], 1, 2), Err(Ipv4Source)),
            ("dhcp discover", udp4(VM, [0, 0, 0, 0], 68, 67), Ok(())),
            ("0.0.0.0 not dhcp", udp4(VM, [0, 0, 0, 0], 68, 68), Err(Ipv4Source)),
            ("arp own", arp(1, VM, [42, 0, 0, 1]), Ok(())),
            ("arp reply own", arp(2, VM, [42, 0, 0, 1]), Ok(())),
            ("arp probe", arp(1, VM, [0, 0, 0, 0]), Ok(())),
            ("arp reply from 0", arp(2, VM, [0, 0, 0, 0]), Err(ArpSenderIp)),
            ("arp foreign ip", arp(2, VM, [42, 0, 0, 9]), Err(ArpSenderIp)),
            ("arp foreign mac", arp(1, OTHER, [42, 0, 0, 1]), Err(ArpSenderMac)),
            ("arp truncated", arp(1, VM, [42, 0, 0, 1])[..30].to_vec(), Err(ArpMalformed)),
            ("rarp", rarp, Err(Rarp)),
            ("vlan", vlan, Err(VlanTagged)),
            ("lldp", lldp, Err(Ethertype)),
            ("short", vec![0; 10], Err(Malformed)),
            ("own ipv6", udp6("fd00::1"), Ok(())),
            ("own eui-64 link-local dhcpv6", udp6(LL), Ok(())),
            ("another link-local", udp6("fe80::1"), Err(Ipv6LinkLocal)),
            ("foreign ipv6", udp6("fd00::2"), Err(Ipv6Source)),
            ("unspecified udp", udp6("::"), Err(Ipv6Source)),
            ("na ok", ndp(136, "fd00::1", "fd00::1", Some(VM)), Ok(())),
            ("na no tll", ndp(136, "fd00::1", "fd00::1", None), Ok(())),
            ("na foreign target", ndp(136, "fd00::1", "fd00::2", Some(VM)), Err(NdpTarget)),
            ("na foreign tll", ndp(136, "fd00::1", "fd00::1", Some(OTHER)), Err(NdpLinkLayer)),
            ("na own link-local", ndp(136, LL, LL, Some(VM)), Ok(())),
            ("na for the gateway's link-local", ndp(136, LL, "fe80::1", Some(VM)), Err(NdpTarget)),
            (
                "na from the gateway's link-local",
                ndp(136, "fe80::1", "fe80::1", Some(VM)),
                Err(Ipv6LinkLocal),
            ),
            ("ns ok", ndp(135, "fd00::1", "fd00::77", Some(VM)), Ok(())),
            ("ns from own link-local", ndp(135, LL, "fe80::1", Some(VM)), Ok(())),
            ("ns foreign sll", ndp(135, LL, "fd00::77", Some(OTHER)), Err(NdpLinkLayer)),
            ("dad own link-local", ndp(135, "::", LL, None), Ok(())),
            ("dad another link-local", ndp(135, "::", "fe80::1", None), Err(NdpTarget)),
            ("dad own", ndp(135, "::", "fd00::1", None), Ok(())),
            ("dad foreign", ndp(135, "::", "fd00::5", None), Err(NdpTarget)),
            ("dad with sll", ndp(135, "::", "fd00::1", Some(VM)), Err(NdpLinkLayer)),
            ("router advert", ndp(134, LL, "::", None), Err(NdpRouter)),
            ("na in a fragment", fragmented(ndp(136, "fd00::1", "fd00::1", Some(VM))), Err(NdpMalformed)),
            ("ping6 in a fragment", fragmented(ndp(128, "fd00::1", "fd00::1", None)), Ok(())),
        ];
        for (name, pkt, want) in cases {
            assert_eq!(b.check(&pkt), want, "{name}");
        }
    }

    #[test]
    fn options_and_live_updates() {
        let mut b = brick();
        let p = udp4(VM, [42, 0, 0, 2], 1, 2);
        assert_eq!(b.check(&p), Err(SpoofDrop::Ipv4Source));
        b.set_ips(&["42.0.0.2".parse().unwrap()]).unwrap();
        assert_eq!(b.check(&p), Ok(()));
        assert_eq!(b.check(&udp6("fd00::1")), Err(SpoofDrop::Ipv6Source));
        b.set_options(AntiSpoofOptions { check_ip: false, check_arp: false, ..AntiSpoofOptions::default() });
        assert_eq!(b.check(&udp4(VM, [9, 9, 9, 9], 1, 2)), Ok(()));
        assert_eq!(b.check(&arp(2, OTHER, [9, 9, 9, 9])), Ok(()));
        // The MAC is always checked, RARP always dropped.
        assert_eq!(b.check(&udp4(OTHER, [9, 9, 9, 9], 1, 2)), Err(SpoofDrop::SourceMac));
        let ips: Vec<IpAddr> = (0..300u32).map(|i| IpAddr::from(i.to_be_bytes())).collect();
        assert_eq!(b.set_ips(&ips), Err(TooManyAddresses(300)));
    }

    #[test]
    fn link_local_addresses_are_the_macs_and_those_given() {
        assert_eq!(
            eui64_link_local([0x52, 0x54, 0, 0x12, 0x34, 0x56]).to_string(),
            "fe80::5054:ff:fe12:3456"
        );
        assert_eq!(eui64_link_local(VM).to_string(), LL);
        let mut b = brick();
        assert_eq!(b.link_local(), vec![LL.parse::<Ipv6Addr>().unwrap()]);
        let gw = "fe80::1";
        assert_eq!(b.check(&udp6(gw)), Err(SpoofDrop::Ipv6LinkLocal));
        assert_eq!(b.check(&ndp(136, LL, gw, Some(VM))), Err(SpoofDrop::NdpTarget));
        // Given through set_link_local (a VRRP address, a stable-privacy guest): allowed.
        b.set_link_local(&[gw.parse().unwrap(), "fd00::9".parse().unwrap()]).unwrap();
        assert_eq!(b.link_local().len(), 2, "addresses outside fe80::/10 are ignored");
        assert_eq!(b.check(&udp6(gw)), Ok(()));
        assert_eq!(b.check(&ndp(136, gw, gw, Some(VM))), Ok(()));
        assert_eq!(b.check(&udp6(LL)), Ok(()), "the EUI-64 one stays");
        assert_eq!(b.check(&udp6("fe80::2")), Err(SpoofDrop::Ipv6LinkLocal));
        // A new MAC brings its own EUI-64 address and takes the old one away.
        b.set_mac(OTHER);
        let mut from_other = udp6("fe80::ff:fe00:99");
        from_other[6..12].copy_from_slice(&OTHER);
        assert_eq!(b.check(&from_other), Ok(()));
        let mut old = udp6(LL);
        old[6..12].copy_from_slice(&OTHER);
        assert_eq!(b.check(&old), Err(SpoofDrop::Ipv6LinkLocal));
        // Any link-local when asked, and none of this without IP checks.
        b.set_options(AntiSpoofOptions { any_link_local: true, ..AntiSpoofOptions::default() });
        let mut any = udp6("fe80::2");
        any[6..12].copy_from_slice(&OTHER);
        assert_eq!(b.check(&any), Ok(()));
        b.set_options(AntiSpoofOptions { check_ip: false, check_ndp: false, ..AntiSpoofOptions::default() });
        assert_eq!(b.check(&any), Ok(()));
        assert_eq!(
            b.describe(),
            vec!["mac 02:00:00:00:00:99, 1 ipv4, 1 ipv6, link-local fe80::ff:fe00:99 +1"]
        );
    }
}

//! The one L2→L4 locator: where each layer of an Ethernet frame starts.

use crate::{be16, EtherType, IpProto, Ipv4, Ipv6, Ipv6Walk, WireError};

/// Most VLAN tags [`locate()`] looks past (the crate's VLAN policy, see the crate docs).
pub const MAX_VLAN_TAGS: usize = 2;

/// Offsets and identities of a frame's layers, as found by [`locate()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Layers {
    /// TCIs of the VLAN tags, outermost first; `vlan_count` of them are valid.
    pub vlan_tci: [u16; MAX_VLAN_TAGS],
    /// How many VLAN tags precede the payload ethertype.
    pub vlan_count: u8,
    /// Payload ethertype (after the tags).
    pub ethertype: u16,
    /// Offset of the L3 header.
    pub l3: usize,
    /// Transport protocol, for IPv4 and IPv6 (after the extension headers); else 0.
    pub proto: u8,
    /// Offset of the transport header; `None` when not IP or in a later fragment.
    pub l4: Option<usize>,
    /// Fragment state: (identification, offset in 8-byte units, more fragments), for an IPv4
    /// fragment or an IPv6 packet with a fragment header.
    pub frag: Option<(u32, u16, bool)>,
    /// IPv6 extension headers walked before the transport header.
    pub ext_count: u8,
    /// An IPv6 authentication header was walked.
    pub ipv6_auth: bool,
}

impl Layers {
    /// Whether the payload is IPv4.
    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.ethertype == EtherType::IPV4.0
    }
    /// Whether the payload is IPv6.
    #[inline]
    pub fn is_ipv6(&self) -> bool {
        self.ethertype == EtherType::IPV6.0
    }
    /// The payload ethertype as an [`EtherType`].
    #[inline]
    pub fn ether_type(&self) -> EtherType {
        EtherType(self.ethertype)
    }
    /// The transport protocol as an [`IpProto`].
    #[inline]
    pub fn ip_proto(&self) -> IpProto {
        IpProto(self.proto)
    }
}

/// Finds the L3 header: skips up to [`MAX_VLAN_TAGS`] tags. Fills `vlan_tci`, `vlan_count`,
/// `ethertype` and `l3`.
#[inline]
pub fn locate_l2(frame: &[u8]) -> Result<Layers, WireError> {
    let mut l = Layers::default();
    let mut at = 12;
    loop {
        let et = be16(frame, at).ok_or(WireError::Truncated)?;
        if !EtherType(et).is_vlan() {
            l.ethertype = et;
            l.l3 = at + 2;
            return Ok(l);
        }
        let Some(slot) = l.vlan_tci.get_mut(usize::from(l.vlan_count)) else {
            return Err(WireError::TooManyVlanTags);
        };
        *slot = be16(frame, at + 2).ok_or(WireError::Truncated)?;
        l.vlan_count += 1;
        at += 4;
    }
}

/// Locates the layers of an Ethernet frame: VLAN tags (see the crate's VLAN policy), the L3
/// header, and for IPv4 and IPv6 the transport header. IPv6 extension headers are walked
/// with [`Ipv6Walk`] (bounded). Only the headers themselves must be present: IP length fields
/// are not checked against the frame (GSO super-frames and truncated captures carry stale
/// ones, even zero), so a caller that needs them valid builds an [`Ipv4`]/[`Ipv6`] view at `l3`.
#[inline]
pub fn locate(frame: &[u8]) -> Result<Layers, WireError> {
    let mut l = locate_l2(frame)?;
    let l3 = frame.get(l.l3..).unwrap_or(&[]);
    match EtherType(l.ethertype) {
        EtherType::IPV4 => {
            let ip = Ipv4::new_header(l3)?;
            l.proto = ip.proto().0;
            if ip.is_fragment() {
                l.frag = Some((u32::from(ip.ident()), ip.frag_offset(), ip.more_frags()));
            }
            if ip.frag_offset() == 0 {
                l.l4 = Some(l.l3 + ip.header_len());
            }
        }
        EtherType::IPV6 => {
            let ip = Ipv6::new_quoted(l3)?;
            let w = Ipv6Walk::walk(l3, 40, ip.next_header())?;
            l.proto = w.proto;
            l.frag = w.frag;
            l.ext_count = w.count as u8;
            l.ipv6_auth = w.auth;
            if !matches!(w.frag, Some((_, off, _)) if off != 0) {
                l.l4 = Some(l.l3 + w.offset);
            }
        }
        _ => {}
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    pub(crate) fn frame(tags: &[u16], et: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = std::vec![0u8; 12];
        for t in tags {
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(proto: u8, frag: u16) -> [u8; 28] {
        let mut p = [0u8; 28];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&28u16.to_be_bytes());
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = proto;
        p
    }

    #[test]
    fn untagged_single_and_double_tags() {
        for tags in [&[][..], &[0x8100], &[0x88a8, 0x8100], &[0x8100, 0x8100]] {
            let l = locate(&frame(tags, 0x0800, &ipv4(17, 0))).unwrap();
            let l3 = 14 + 4 * tags.len();
            assert_eq!((l.vlan_count as usize, l.l3, l.proto, l.l4), (tags.len(), l3, 17, Some(l3 + 20)));
            assert!(l.is_ipv4() && l.frag.is_none());
        }
        let three = frame(&[0x88a8, 0x8100, 0x8100], 0x0800, &ipv4(17, 0));
        assert_eq!(locate(&three), Err(WireError::TooManyVlanTags));
        assert_eq!(locate(&frame(&[0x8100], 0x0800, &[])), Err(WireError::Truncated));
        assert_eq!(locate(&[0u8; 13]), Err(WireError::Truncated));
    }

    #[test]
    fn fragments_and_non_ip() {
        let later = locate(&frame(&[], 0x0800, &ipv4(6, 0x0001))).unwrap();
        assert_eq!((later.l4, later.frag), (None, Some((0, 1, false))));
        let first = locate(&frame(&[], 0x0800, &ipv4(6, 0x2000))).unwrap();
        assert_eq!((first.l4, first.frag), (Some(34), Some((0, 0, true))));
        let arp = locate(&frame(&[0x8100], 0x0806, &[1, 2])).unwrap();
        assert_eq!((arp.ethertype, arp.l3, arp.l4, arp.vlan_tci[0]), (0x0806, 18, None, 7));
    }

    #[test]
    fn ipv6_with_extensions() {
        let mut p = std::vec![0u8; 40 + 8 + 20];
        p[0] = 0x60;
        p[6] = 60;
        p[40] = 6;
        let l = locate(&frame(&[], 0x86dd, &p)).unwrap();
        assert_eq!((l.proto, l.l4, l.ext_count), (6, Some(14 + 48), 1));
        p[41] = 9; // destination options longer than the frame
        assert_eq!(locate(&frame(&[], 0x86dd, &p)), Err(WireError::Truncated));
    }
}

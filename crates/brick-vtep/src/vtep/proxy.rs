//! ARP/ND suppression in the flooding path: a local VM's broadcast ARP request or multicast
//! neighbour solicitation for an address of the VNI's table is answered back through the
//! VNI's port, and not flooded (see [`crate::neigh_proxy`]). Only frames that would be
//! flooded, and only while the table holds bindings, are looked at.

use super::encap::EncapCtx;
use super::*;
use crate::neigh_proxy::{self, Pass, Verdict, MAX_REPLY};

impl Vtep {
    /// Answers ARP/ND for `ip` with `mac` on `vni` (a remote VM's MAC+IP binding, e.g. an
    /// EVPN type-2 route), replacing its MAC if it had one. A new address in a full table
    /// ([`neigh_proxy::DEFAULT_CAPACITY`]) is refused; a binding no host could hold (a group
    /// MAC, a multicast or unspecified address) is ignored.
    pub fn set_neigh_proxy(&mut self, vni: u32, ip: IpAddr, mac: [u8; 6]) -> Result<(), VtepError> {
        self.state_mut(vni)?.proxy.insert(ip, mac).map_err(|_| VtepError::TableFull(vni))
    }

    /// Stops answering for `ip` on `vni`; returns whether it was answered for.
    pub fn remove_neigh_proxy(&mut self, vni: u32, ip: IpAddr) -> Result<bool, VtepError> {
        Ok(self.state_mut(vni)?.proxy.remove(ip))
    }

    /// The addresses answered for on `vni`, with their MACs, sorted (empty for an unknown VNI).
    pub fn neigh_proxy(&self, vni: u32) -> Vec<(IpAddr, [u8; 6])> {
        self.vni_ports
            .get(&vni)
            .and_then(|&p| self.vnis.get(p as usize)?.as_ref())
            .map(|st| st.proxy.entries())
            .unwrap_or_default()
    }

    /// How many addresses are answered for on `vni` (0 for an unknown VNI).
    pub fn neigh_proxy_len(&self, vni: u32) -> usize {
        self.vni_ports
            .get(&vni)
            .and_then(|&p| self.vnis.get(p as usize)?.as_ref())
            .map_or(0, |st| st.proxy.len())
    }

    /// A frame about to be flooded: the reply goes back to the VNI's port and `None` is
    /// returned when the table answers it; otherwise the frame comes back, unchanged, to be
    /// flooded.
    pub(super) fn suppress(
        &mut self,
        cx: &mut EncapCtx<'_>,
        mut pkt: Packet,
        out: &mut Output<'_>,
    ) -> Option<Packet> {
        let mut reply = [0u8; MAX_REPLY];
        let st = &mut *cx.st;
        let proxy = &st.proxy;
        let verdict = neigh_proxy::answer(pkt.data(), |ip| proxy.get(ip), &mut reply);
        let c = &mut st.counters;
        let (len, counter) = match verdict {
            Verdict::ArpReply(n) => (n, &mut c.arp_suppressed),
            Verdict::NdAdvert(n) => (n, &mut c.nd_suppressed),
            Verdict::Pass(Pass::Unknown) => {
                c.suppress_unknown += 1;
                return Some(pkt);
            }
            Verdict::Pass(Pass::Malformed) => {
                c.suppress_malformed += 1;
                return Some(pkt);
            }
            Verdict::Pass(Pass::Announce) | Verdict::Other => return Some(pkt),
        };
        // The request's buffer carries the reply; one too small for an advertisement (an NS
        // without options) is swapped for a pool buffer, and with none the request is flooded.
        let reply = match pkt.set_data(&reply[..len]) {
            Ok(()) => pkt,
            Err(_) => match self.pool.alloc_from(&reply[..len]) {
                Some(p) => p,
                None => return Some(pkt),
            },
        };
        *counter += 1;
        out.emit(Side::East, cx.port, reply);
        None
    }
}

/// The VNI's suppression line for `describe`, when it has a table or has answered.
pub(super) fn describe(st: &VniState) -> Option<String> {
    let c = &st.counters;
    if st.proxy.is_empty() && c.arp_suppressed == 0 && c.nd_suppressed == 0 {
        return None;
    }
    Some(format!(
        "vni {} suppression bindings {} arp {} nd {} unknown {} malformed {}",
        st.vni,
        st.proxy.len(),
        c.arp_suppressed,
        c.nd_suppressed,
        c.suppress_unknown,
        c.suppress_malformed
    ))
}

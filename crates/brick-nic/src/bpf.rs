//! Classic BPF programs for PACKET_FANOUT_CBPF: the kernel runs the group's program on every
//! received frame and delivers the frame to socket `result % members`, in the order the
//! sockets joined. Worker graphs use this to receive exactly the traffic they own.

use brick_wire::ip::{v4_field, v6_field};
use brick_wire::transport::udp_field;
use brick_wire::{vxlan, EtherType, IpProto};

/// One classic BPF instruction (the kernel's `struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    /// Operation (class | size | mode, or class | op | source).
    pub code: u16,
    /// Jump offset when the condition holds.
    pub jt: u8,
    /// Jump offset when it does not.
    pub jf: u8,
    /// Constant operand.
    pub k: u32,
}

impl BpfInsn {
    /// An instruction from its four fields.
    pub const fn new(code: u16, jt: u8, jf: u8, k: u32) -> Self {
        BpfInsn { code, jt, jf, k }
    }

    pub(crate) fn raw(self) -> libc::sock_filter {
        libc::sock_filter { code: self.code, jt: self.jt, jf: self.jf, k: self.k }
    }
}

// Opcodes (linux/bpf_common.h, linux/filter.h), as the kernel spells them.
const LD_H_ABS: u16 = 0x28; // A = u16 at [k]
const LD_B_ABS: u16 = 0x30; // A = u8 at [k]
const LD_W_ABS: u16 = 0x20; // A = u32 at [k]
const LD_H_IND: u16 = 0x48; // A = u16 at [X + k]
const LD_W_IND: u16 = 0x40; // A = u32 at [X + k]
const LDX_B_MSH: u16 = 0xb1; // X = 4 * ([k] & 0xf)
const JA: u16 = 0x05; // jump k forward
const JEQ_K: u16 = 0x15; // if A == k
const JSET_K: u16 = 0x45; // if A & k
const RSH_K: u16 = 0x74; // A >>= k
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;
/// Ancillary load of the frame's protocol (SKF_AD_OFF + SKF_AD_PROTOCOL), host order.
const AD_PROTOCOL: u32 = -0x1000i32 as u32;
/// Base of loads relative to the network header (SKF_NET_OFF).
const NET_OFF: u32 = -0x10_0000i32 as u32;

/// A fanout program that spreads VXLAN traffic by VNI: a frame carrying UDP to `udp_port`
/// over untagged IPv4 (any header length, first fragment) or IPv6 (no extension header)
/// goes to socket `VNI % members`; anything else (ARP, NDP, other traffic, IPv4 fragments
/// after the first) goes to socket 0. Give each worker the VNIs `v` with `v % workers ==
/// index` and open its socket index-th.
pub fn vxlan_vni_fanout(udp_port: u16) -> Vec<BpfInsn> {
    let port = u32::from(udp_port);
    let i = BpfInsn::new;
    // Offsets from the network header (SKF_NET_OFF): the kernel runs fanout programs on
    // received frames whose data already starts there, and a socket filter would see the
    // Ethernet header first; network-relative loads work for both.
    let net = |off: u32| NET_OFF.wrapping_add(off);
    // Protocol numbers and field offsets from brick-wire, as the kernel's `k` operands.
    let (ipv4, ipv6) = (u32::from(EtherType::IPV4.0), u32::from(EtherType::IPV6.0));
    let udp = u32::from(IpProto::UDP.0);
    let f = |off: usize| off as u32;
    let (v4_proto, v4_frag) = (f(v4_field::PROTO), f(v4_field::FLAGS_FRAG.start));
    let (dport, vni) = (f(udp_field::DST_PORT.start), f(udp_field::LEN + vxlan::field::VNI.start));
    let (v6_next, v6_len) = (f(v6_field::NEXT_HEADER), f(v6_field::LEN));
    vec![
        /* 0 */ i(LD_H_ABS, 0, 0, AD_PROTOCOL), // EtherType (skb->protocol)
        /* 1 */ i(JEQ_K, 0, 9, ipv4), // IPv4? else → 11
        /* 2 */ i(LD_B_ABS, 0, 0, net(v4_proto)), // protocol
        /* 3 */ i(JEQ_K, 0, 15, udp), // UDP? else → 19 (ret 0)
        /* 4 */ i(LD_H_ABS, 0, 0, net(v4_frag)), // flags + fragment offset
        /* 5 */ i(JSET_K, 13, 0, 0x1fff), // a later fragment has no UDP header → 19
        /* 6 */ i(LDX_B_MSH, 0, 0, net(0)), // X = IPv4 header length
        /* 7 */ i(LD_H_IND, 0, 0, net(dport)), // UDP destination port
        /* 8 */ i(JEQ_K, 0, 10, port), // VXLAN? else → 19
        /* 9 */ i(LD_W_IND, 0, 0, net(vni)), // VNI (24 bits) + reserved byte
        /* 10 */ i(JA, 0, 0, 6), // → 17
        /* 11 */ i(JEQ_K, 0, 7, ipv6), // IPv6? else → 19
        /* 12 */ i(LD_B_ABS, 0, 0, net(v6_next)), // next header
        /* 13 */ i(JEQ_K, 0, 5, udp), // UDP? else → 19
        /* 14 */ i(LD_H_ABS, 0, 0, net(v6_len + dport)), // UDP destination port
        /* 15 */ i(JEQ_K, 0, 3, port), // VXLAN? else → 19
        /* 16 */ i(LD_W_ABS, 0, 0, net(v6_len + vni)), // VNI + reserved
        /* 17 */ i(RSH_K, 0, 0, 8),
        /* 18 */ i(RET_A, 0, 0, 0),
        /* 19 */ i(RET_K, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump lands inside the program and the program ends with a return: the checks
    /// the kernel's verifier makes first.
    #[test]
    fn jumps_stay_inside_the_program() {
        let p = vxlan_vni_fanout(4789);
        for (n, insn) in p.iter().enumerate() {
            if insn.code == JA {
                assert!(n + 1 + (insn.k as usize) < p.len(), "insn {n} ja");
            } else if insn.code & 0x07 == 0x05 {
                assert!(n + 1 + (insn.jt as usize) < p.len(), "insn {n} jt");
                assert!(n + 1 + (insn.jf as usize) < p.len(), "insn {n} jf");
            }
        }
        assert_eq!(p.last().unwrap().code & 0x07, 0x06);
    }
}

//! The direction-free connection key: one hash probe finds a packet's connection whichever
//! way the packet travels.

use super::*;

/// A direction-free connection key: endpoints ordered so that `(lo, lo_port) <= (hi, hi_port)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Lower address.
    pub lo: u128,
    /// Higher address.
    pub hi: u128,
    /// Port (or ICMP echo id) of `lo`.
    pub lo_port: u16,
    /// Port (or ICMP echo id) of `hi`.
    pub hi_port: u16,
    /// IP protocol.
    pub proto: u8,
    /// IPv6.
    pub v6: bool,
}

impl FlowKey {
    /// The key of `f`, and whether `f`'s source is the `lo` endpoint.
    #[inline]
    pub fn of(f: &Flow) -> (FlowKey, bool) {
        let src_lo = src_is_lo(f);
        let (lo, lo_port, hi, hi_port) =
            if src_lo { (f.src, f.sport, f.dst, f.dport) } else { (f.dst, f.dport, f.src, f.sport) };
        (FlowKey { lo, hi, lo_port, hi_port, proto: f.proto, v6: f.v6 }, src_lo)
    }

    /// The two addresses, `lo` then `hi`.
    pub fn addrs(&self) -> (IpAddr, IpAddr) {
        let ip = |v: u128| {
            if self.v6 {
                IpAddr::V6(Ipv6Addr::from(v))
            } else {
                IpAddr::V4(Ipv4Addr::from(v as u32))
            }
        };
        (ip(self.lo), ip(self.hi))
    }

    /// Whether `addr` is one of the two endpoints' addresses.
    pub fn involves(&self, addr: IpAddr) -> bool {
        let (lo, hi) = self.addrs();
        lo == addr || hi == addr
    }

    #[inline]
    pub(super) fn hash(&self, seed: u64) -> u64 {
        // Two independent multiply chains (latency ~ one multiply each), then a fold.
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
        let a = (self.lo as u64) ^ ((self.lo >> 64) as u64).rotate_left(17) ^ seed;
        let b = (self.hi as u64) ^ ((self.hi >> 64) as u64).rotate_left(41);
        let p = (self.lo_port as u64) << 32
            | (self.hi_port as u64) << 16
            | (self.proto as u64) << 1
            | self.v6 as u64;
        let x = (a ^ p.rotate_left(7)).wrapping_mul(K1) ^ (b ^ p).wrapping_mul(K2).rotate_left(29);
        x ^ (x >> 32)
    }
}

/// `(f.src, f.sport) <= (f.dst, f.dport)`, compared 64 bits at a time. The parser stores
/// each address as two 64-bit halves; comparing the `u128`s whole let the compiler load them
/// with 16-byte loads, which cannot be forwarded from those two stores: a stall of about a
/// dozen cycles on each address, the largest single cost of an established flow's path.
#[inline(always)]
fn src_is_lo(f: &Flow) -> bool {
    let (s_hi, s_lo) = ((f.src >> 64) as u64, f.src as u64);
    let (d_hi, d_lo) = ((f.dst >> 64) as u64, f.dst as u64);
    if s_hi != d_hi {
        return s_hi < d_hi;
    }
    if s_lo != d_lo {
        return s_lo < d_lo;
    }
    f.sport <= f.dport
}

impl fmt::Display for FlowKey {
    /// `proto 6 10.0.0.1:5000 <-> 10.0.0.2:80` (IPv6 addresses in brackets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (lo, hi) = self.addrs();
        let end = |a: IpAddr, p: u16| match a {
            IpAddr::V4(_) => format!("{a}:{p}"),
            IpAddr::V6(_) => format!("[{a}]:{p}"),
        };
        write!(f, "proto {} {} <-> {}", self.proto, end(lo, self.lo_port), end(hi, self.hi_port))
    }
}

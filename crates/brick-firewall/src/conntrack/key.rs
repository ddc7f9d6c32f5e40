//! The direction-free connection key: one hash probe finds a packet's connection whichever
//! way the packet travels.

use super::*;

/// A direction-free connection key: endpoints ordered so that `(lo, lo_port) <= (hi, hi_port)`.
#[derive(Clone, Copy, Debug, Eq, Default)]
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

    /// The key of an untagged TCP or UDP frame over IPv4 (outside fragments) or IPv6 (without
    /// extension headers), read in place: what [`FlowKey::of`] gives for the flow the
    /// firewall parses from it. `None` for any other frame. For looking ahead only: it checks
    /// no more than it reads.
    #[inline]
    pub fn of_frame_in_place(frame: &[u8]) -> Option<FlowKey> {
        let (v6, proto, src, dst, l4) = match frame.get(12..14)? {
            [0x08, 0x00] => {
                let ip = frame.get(14..34)?;
                let header = usize::from(ip[0] & 0x0f) * 4;
                let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
                if ip[0] >> 4 != 4 || header < 20 || fragment {
                    return None;
                }
                let addr = |b: &[u8]| u128::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                (false, ip[9], addr(&ip[12..16]), addr(&ip[16..20]), 14 + header)
            }
            [0x86, 0xdd] => {
                let ip = frame.get(14..54)?;
                if ip[0] >> 4 != 6 {
                    return None;
                }
                let addr = |b: &[u8]| u128::from_be_bytes(b.try_into().unwrap_or([0; 16]));
                (true, ip[6], addr(&ip[8..24]), addr(&ip[24..40]), 54)
            }
            _ => return None,
        };
        if !matches!(proto, PROTO_TCP | PROTO_UDP) {
            return None;
        }
        let ports = frame.get(l4..l4 + 4)?;
        let f = Flow {
            v6,
            proto,
            src,
            dst,
            sport: u16::from_be_bytes([ports[0], ports[1]]),
            dport: u16::from_be_bytes([ports[2], ports[3]]),
            ..Flow::default()
        };
        Some(FlowKey::of(&f).0)
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
        const K3: u64 = 0xff51_afd7_ed55_8ccd;
        let a = (self.lo as u64) ^ ((self.lo >> 64) as u64).rotate_left(17) ^ seed;
        let b = (self.hi as u64) ^ ((self.hi >> 64) as u64).rotate_left(41);
        let p = (self.lo_port as u64) << 32
            | (self.hi_port as u64) << 16
            | (self.proto as u64) << 1
            | self.v6 as u64;
        let x = (a ^ p.rotate_left(7)).wrapping_mul(K1) ^ (b ^ p).wrapping_mul(K2).rotate_left(29);
        // A last fold and multiply, so that every input bit reaches every bit the table uses
        // (its slot comes from bits 32 and up). Without it, bits 32–38 did not depend on the
        // ports at all (a product's bit depends only on the input bits below it): the
        // connections of one client to one server port (one NAT'd address, a proxy, a load
        // generator) shared 1 home slot in 128, and each lookup in a full table walked a
        // run of dozens of slots (many_flows/60000 in the bench: 210 cycles per frame).
        let x = (x ^ (x >> 32)).wrapping_mul(K3);
        x ^ (x >> 32)
    }
}

impl PartialEq for FlowKey {
    /// The addresses 64 bits at a time. The derived comparison let the compiler compare `hi`
    /// with one 16-byte load of a key that [`FlowKey::of`] had just written in 8-byte halves:
    /// such a load cannot be forwarded from those stores and waits for them to reach the
    /// cache (most of `find`'s time in the daemon's profile). The two halves are compared
    /// with different operations (`^`, `-`: zero when equal) so that the vectoriser does not
    /// pair them into that load again.
    #[inline(always)]
    fn eq(&self, o: &FlowKey) -> bool {
        let halves =
            |a: u128, b: u128| ((a as u64) ^ (b as u64)) | ((a >> 64) as u64).wrapping_sub((b >> 64) as u64);
        let ports = |k: &FlowKey| {
            (k.lo_port as u64) << 32 | (k.hi_port as u64) << 16 | (k.proto as u64) << 1 | k.v6 as u64
        };
        (halves(self.lo, o.lo) | halves(self.hi, o.hi) | (ports(self) ^ ports(o))) == 0
    }
}

impl std::hash::Hash for FlowKey {
    /// Every field, as the derived hash would: equal keys hash alike. (The table itself uses
    /// its own seeded `FlowKey::hash`; this is for `std` maps in tests and tools.)
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.lo, self.hi, self.lo_port, self.hi_port, self.proto, self.v6).hash(state);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = FlowKey> {
        (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>(), any::<u8>(), any::<bool>())
            .prop_map(|(lo, hi, lo_port, hi_port, proto, v6)| FlowKey { lo, hi, lo_port, hi_port, proto, v6 })
    }

    /// Keys that differ in one field only (a port, an address's low bits, the protocol)
    /// land on as many home slots as random keys would: 4,096 keys in an 8,192-slot index
    /// fill 8192 × (1 − e^−½) ≈ 3,223 on average; fewer than 2,900 means the hash leaves
    /// index bits unmixed. (Before the last fold, one port varying reached 1,024 at most.)
    #[test]
    fn keys_differing_in_one_field_spread_over_the_index() {
        let base =
            FlowKey { lo: 0x2a00_0001, hi: 0x2a00_0002, lo_port: 40_000, hi_port: 9, proto: 17, v6: false };
        type Vary = fn(FlowKey, u16) -> FlowKey;
        let variants: [(&str, Vary); 5] = [
            ("lo_port", |k, i| FlowKey { lo_port: i, ..k }),
            ("hi_port", |k, i| FlowKey { hi_port: i, ..k }),
            ("lo address", |k, i| FlowKey { lo: k.lo ^ u128::from(i), ..k }),
            ("hi address", |k, i| FlowKey { hi: k.hi ^ u128::from(i) << 8, ..k }),
            ("v6 hi address, top", |k, i| FlowKey { hi: k.hi ^ u128::from(i) << 100, v6: true, ..k }),
        ];
        for seed in [0, 0x5eed_1234_abcd_9876] {
            for (name, vary) in variants {
                let slots: std::collections::HashSet<u64> =
                    (0..4096u16).map(|i| (vary(base, i).hash(seed) >> 32) & 8191).collect();
                assert!(slots.len() > 2900, "{name}, seed {seed:#x}: {} home slots of 8192", slots.len());
            }
        }
    }

    /// Every field, as a tuple: what the derived comparison compared.
    fn fields(k: &FlowKey) -> (u128, u128, u16, u16, u8, bool) {
        (k.lo, k.hi, k.lo_port, k.hi_port, k.proto, k.v6)
    }

    proptest! {
        /// The hand-written comparison is field-by-field equality: keys that differ in one
        /// field (one bit of it) or in many are different, a copy is equal.
        #[test]
        fn key_equality_is_every_field(a in key(), b in key(), field in 0usize..6, bit in 0u32..128) {
            prop_assert_eq!(a == b, fields(&a) == fields(&b));
            let (copy, mut c) = (a, a);
            prop_assert!(a == copy);
            match field {
                0 => c.lo ^= 1 << bit,
                1 => c.hi ^= 1 << bit,
                2 => c.lo_port ^= 1 << (bit % 16),
                3 => c.hi_port ^= 1 << (bit % 16),
                4 => c.proto ^= 1 << (bit % 8),
                _ => c.v6 = !c.v6,
            }
            prop_assert!(a != c, "{a:?} and {c:?} differ in field {field}");
            prop_assert!(c != a);
        }
    }
}

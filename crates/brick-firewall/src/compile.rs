//! The compiled matcher: a [`Ruleset`] turned into indexes so that deciding a new flow costs
//! a few hash probes and binary searches, not one comparison per rule.
//!
//! # Semantics (pf's last-match with `quick`)
//! Rules are read in order. Every rule that matches a packet *could* decide it; the last one
//! that matches does, unless a `quick` rule matches first: the first matching `quick` rule
//! decides at once. When no rule matches, the direction's default policy decides.
//!
//! That is equivalent to giving every rule a priority — quick rule `i` gets `i`, non-quick
//! rule `i` gets `2n - 1 - i` (`n` rules) — and taking the matching rule of lowest priority.
//! Indexes only need to produce a superset of the matching rules (the *candidates*); each
//! candidate is then checked in full.
//!
//! # Indexes (per direction)
//! Each rule is filed in exactly one index, the one where it is most selective:
//! - **destination port**: rules whose TCP/UDP destination ports cover at most
//!   [`MAX_INDEXED_PORTS`] ports, as a sorted `(protocol, port) → rule` array;
//! - **source / destination prefix**: rules with address lists or tables, in one hash map
//!   per prefix length (`masked address → rules`); a 10,000-member table is 10,000 entries of
//!   one map, probed once per packet;
//! - **wildcard**: the rest, checked one by one.
//!
//! A lookup probes the port array (binary search), one hash map per distinct prefix length
//! present in each address index, and the wildcard list.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use crate::rule::*;
use crate::wire::Flow;

/// Rules whose destination ports cover more than this many ports are not port-indexed.
pub const MAX_INDEXED_PORTS: u32 = 1024;

/// The ruleset refers to something it does not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A rule uses a table that is not declared.
    #[error("rule {rule} uses undeclared table <{table}>")]
    UnknownTable {
        /// Index of the rule.
        rule: usize,
        /// Table name.
        table: String,
    },
    /// Two tables share a name.
    #[error("table <{0}> is declared twice")]
    DuplicateTable(String),
    /// `ports` or `icmp-type` used with a protocol that has none.
    #[error("rule {0} matches ports or ICMP types of a protocol that has none")]
    Inconsistent(usize),
}

/// A multiply-rotate hasher for integer keys (indexes hold operator-chosen keys only).
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    #[inline]
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64);
        self.write_u64((i >> 64) as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// A set of addresses compiled to sorted, disjoint ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy>(mut r: Vec<(T, T)>, succ: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    r.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        if let Some(last) = out.last_mut() {
            if succ(last.1).is_none_or(|n| lo <= n) {
                if hi > last.1 {
                    last.1 = hi;
                }
                continue;
            }
        }
        out.push((lo, hi));
    }
    out
}

pub(crate) fn v4_range(a: u32, len: u8) -> (u32, u32) {
    let m = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
    (a & m, (a & m) | !m)
}

pub(crate) fn v6_range(a: u128, len: u8) -> (u128, u128) {
    let m = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
    (a & m, (a & m) | !m)
}

impl AddrSet {
    /// The union of `cidrs`.
    pub fn new(cidrs: &[Cidr]) -> AddrSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for c in cidrs {
            match c.addr {
                IpAddr::V4(a) => v4.push(v4_range(a.into(), c.len)),
                IpAddr::V6(a) => v6.push(v6_range(a.into(), c.len)),
            }
        }
        AddrSet { v4: merge(v4, |x: u32| x.checked_add(1)), v6: merge(v6, |x: u128| x.checked_add(1)) }
    }

    /// Whether the set holds `addr` (`v6` tells the family).
    #[inline]
    pub fn contains(&self, v6: bool, addr: u128) -> bool {
        if v6 {
            let i = self.v6.partition_point(|r| r.1 < addr);
            self.v6.get(i).is_some_and(|r| r.0 <= addr)
        } else {
            let a = addr as u32;
            let i = self.v4.partition_point(|r| r.1 < a);
            self.v4.get(i).is_some_and(|r| r.0 <= a)
        }
    }
}

/// What the ruleset says about a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Pass or block.
    pub action: Action,
    /// Whether a passing packet creates a tracked connection.
    pub keep_state: bool,
    /// Index of the deciding rule in [`Ruleset::rules`]; `None` for the default policy.
    pub rule: Option<u32>,
}

#[derive(Clone, Debug)]
struct CRule {
    prio: u32,
    index: u32,
    action: Action,
    keep_state: bool,
    /// 0 any, 4, 6.
    family: u8,
    /// 0..=255, or `ANY_PROTO`.
    proto: u16,
    src: Option<Arc<AddrSet>>,
    dst: Option<Arc<AddrSet>>,
    sports: Box<[(u16, u16)]>,
    dports: Box<[(u16, u16)]>,
    icmp: Option<(u8, Option<u8>)>,
}

const ANY_PROTO: u16 = 256;

#[inline]
fn in_ports(p: &[(u16, u16)], x: u16) -> bool {
    p.is_empty() || p.iter().any(|&(lo, hi)| lo <= x && x <= hi)
}

impl CRule {
    #[inline]
    fn matches(&self, f: &Flow) -> bool {
        if (self.family == 4 && f.v6) || (self.family == 6 && !f.v6) {
            return false;
        }
        if self.proto != ANY_PROTO && self.proto != f.proto as u16 {
            return false;
        }
        if let Some((ty, code)) = self.icmp {
            if f.icmp_type != ty || code.is_some_and(|c| c != f.icmp_code) {
                return false;
            }
        }
        if !in_ports(&self.sports, f.sport) || !in_ports(&self.dports, f.dport) {
            return false;
        }
        if let Some(s) = &self.src {
            if !s.contains(f.v6, f.src) {
                return false;
            }
        }
        if let Some(d) = &self.dst {
            if !d.contains(f.v6, f.dst) {
                return false;
            }
        }
        true
    }
}

struct LenMap<K> {
    mask: K,
    map: FastMap<K, Vec<u32>>,
}

#[derive(Default)]
struct PrefixIndex {
    v4: Vec<LenMap<u32>>,
    v6: Vec<LenMap<u128>>,
}

impl PrefixIndex {
    fn insert(&mut self, c: &Cidr, rule: u32) {
        match c.addr {
            IpAddr::V4(a) => {
                let mask = if c.len == 0 { 0 } else { u32::MAX << (32 - c.len as u32) };
                let lm = match self.v4.iter().position(|m| m.mask == mask) {
                    Some(p) => &mut self.v4[p],
                    None => {
                        self.v4.push(LenMap { mask, map: FastMap::default() });
                        self.v4.last_mut().expect("just pushed")
                    }
                };
                let v = lm.map.entry(u32::from(a) & mask).or_default();
                if v.last() != Some(&rule) {
                    v.push(rule);
                }
            }
            IpAddr::V6(a) => {
                let mask = if c.len == 0 { 0 } else { u128::MAX << (128 - c.len as u32) };
                let lm = match self.v6.iter().position(|m| m.mask == mask) {
                    Some(p) => &mut self.v6[p],
                    None => {
                        self.v6.push(LenMap { mask, map: FastMap::default() });
                        self.v6.last_mut().expect("just pushed")
                    }
                };
                let v = lm.map.entry(u128::from(a) & mask).or_default();
                if v.last() != Some(&rule) {
                    v.push(rule);
                }
            }
        }
    }

    #[inline]
    fn for_each(&self, v6: bool, addr: u128, mut f: impl FnMut(u32)) {
        if v6 {
            for lm in &self.v6 {
                if let Some(v) = lm.map.get(&(addr & lm.mask)) {
                    v.iter().for_each(|&r| f(r));
                }
            }
        } else {
            let a = addr as u32;
            for lm in &self.v4 {
                if let Some(v) = lm.map.get(&(a & lm.mask)) {
                    v.iter().for_each(|&r| f(r));
                }
            }
        }
    }
}

#[derive(Default)]
struct DirMatcher {
    rules: Vec<CRule>,
    /// Sorted `(proto << 16 | port, rule)`.
    ports: Vec<(u32, u32)>,
    src: PrefixIndex,
    dst: PrefixIndex,
    wild: Vec<u32>,
}

/// Which index a rule went to (exposed for tests and `describe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IndexKind {
    Port,
    Src,
    Dst,
    Wild,
}

fn coverage(cidrs: &[Cidr]) -> f64 {
    cidrs
        .iter()
        .map(|c| {
            let bits = if c.addr.is_ipv4() { 32 } else { 128 };
            (2f64).powi(-(c.len.min(bits) as i32))
        })
        .sum()
}

impl DirMatcher {
    #[inline]
    fn decide(&self, f: &Flow, candidates: &mut usize) -> Option<&CRule> {
        let mut best: Option<&CRule> = None;
        let mut check = |id: u32| {
            let r = &self.rules[id as usize];
            if best.is_none_or(|b| r.prio < b.prio) {
                *candidates += 1;
                if r.matches(f) {
                    best = Some(r);
                }
            }
        };
        if !self.ports.is_empty() && (f.proto == 6 || f.proto == 17) {
            let key = (f.proto as u32) << 16 | f.dport as u32;
            let mut i = self.ports.partition_point(|e| e.0 < key);
            while let Some(&(k, r)) = self.ports.get(i) {
                if k != key {
                    break;
                }
                check(r);
                i += 1;
            }
        }
        self.src.for_each(f.v6, f.src, &mut check);
        self.dst.for_each(f.v6, f.dst, &mut check);
        for &r in &self.wild {
            check(r);
        }
        best
    }
}

/// An address spec resolved to its compiled set and its prefixes.
type Resolved = (Arc<AddrSet>, Vec<Cidr>);

/// A [`Ruleset`] compiled for matching. Build it off the packet path (it allocates), then
/// hand it to [`Firewall::replace_ruleset`](crate::Firewall::replace_ruleset).
pub struct CompiledRuleset {
    source: Ruleset,
    dirs: [DirMatcher; 2],
    index_counts: [usize; 4],
}

impl std::fmt::Debug for CompiledRuleset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRuleset")
            .field("rules", &self.source.rules.len())
            .field("tables", &self.source.tables.len())
            .field("port/src/dst/wild indexed", &self.index_counts)
            .finish()
    }
}

impl CompiledRuleset {
    /// Compiles `rs`.
    pub fn new(rs: Ruleset) -> Result<CompiledRuleset, CompileError> {
        let mut tables: HashMap<&str, (Arc<AddrSet>, &[Cidr])> = HashMap::new();
        for t in &rs.tables {
            if tables.insert(&t.name, (Arc::new(AddrSet::new(&t.entries)), &t.entries)).is_some() {
                return Err(CompileError::DuplicateTable(t.name.clone()));
            }
        }
        let n = rs.rules.len() as u32;
        let mut dirs: [DirMatcher; 2] = Default::default();
        let mut index_counts = [0usize; 4];
        for (i, r) in rs.rules.iter().enumerate() {
            let resolve = |a: &AddrSpec| -> Result<Option<Resolved>, CompileError> {
                Ok(match a {
                    AddrSpec::Any => None,
                    AddrSpec::List(l) => Some((Arc::new(AddrSet::new(l)), l.clone())),
                    AddrSpec::Table(t) => {
                        let (set, cidrs) = tables
                            .get(t.as_str())
                            .ok_or(CompileError::UnknownTable { rule: i, table: t.clone() })?;
                        Some((Arc::clone(set), cidrs.to_vec()))
                    }
                })
            };
            let has_ports = !r.from.ports.is_empty() || !r.to.ports.is_empty();
            if (has_ports && !r.proto.is_some_and(Proto::has_ports))
                || (r.icmp.is_some() && r.proto != Some(Proto::ICMP) && r.proto != Some(Proto::ICMP6))
            {
                return Err(CompileError::Inconsistent(i));
            }
            let src = resolve(&r.from.addr)?;
            let dst = resolve(&r.to.addr)?;
            let i = i as u32;
            let cr = CRule {
                prio: if r.quick { i } else { 2 * n - 1 - i },
                index: i,
                action: r.action,
                keep_state: r.action == Action::Pass && r.keep_state,
                family: match r.family {
                    None => 0,
                    Some(Family::Inet) => 4,
                    Some(Family::Inet6) => 6,
                },
                proto: r.proto.map_or(ANY_PROTO, |p| p.0 as u16),
                src: src.as_ref().map(|s| Arc::clone(&s.0)),
                dst: dst.as_ref().map(|s| Arc::clone(&s.0)),
                sports: r.from.ports.iter().map(|p| (p.lo, p.hi)).collect(),
                dports: r.to.ports.iter().map(|p| (p.lo, p.hi)).collect(),
                icmp: r.icmp.map(|m| (m.ty, m.code)),
            };
            // Pick the most selective index.
            // u64: a list of many full ranges would overflow u32 (and wrap under the limit).
            let port_width: u64 = r.to.ports.iter().map(|p| u64::from(p.hi - p.lo) + 1).sum();
            let mut best = (IndexKind::Wild, 1.0f64 / 16.0);
            if !r.to.ports.is_empty() && port_width <= u64::from(MAX_INDEXED_PORTS) {
                let sel = port_width as f64 / 65536.0;
                if sel < best.1 {
                    best = (IndexKind::Port, sel);
                }
            }
            for (kind, set) in [(IndexKind::Src, &src), (IndexKind::Dst, &dst)] {
                if let Some((_, cidrs)) = set {
                    let sel = coverage(cidrs);
                    if sel < best.1 {
                        best = (kind, sel);
                    }
                }
            }
            let d = &mut dirs[r.direction.index()];
            let id = d.rules.len() as u32;
            match best.0 {
                IndexKind::Port => {
                    let proto = r.proto.map_or(0, |p| p.0) as u32;
                    for p in &r.to.ports {
                        for port in p.lo..=p.hi {
                            d.ports.push((proto << 16 | port as u32, id));
                        }
                    }
                }
                IndexKind::Src => src.iter().flat_map(|s| s.1.iter()).for_each(|c| d.src.insert(c, id)),
                IndexKind::Dst => dst.iter().flat_map(|s| s.1.iter()).for_each(|c| d.dst.insert(c, id)),
                IndexKind::Wild => d.wild.push(id),
            }
            index_counts[best.0 as usize] += 1;
            d.rules.push(cr);
        }
        for d in &mut dirs {
            d.ports.sort_unstable();
        }
        Ok(CompiledRuleset { source: rs, dirs, index_counts })
    }

    /// Parses and compiles rule text.
    pub fn parse(text: &str) -> Result<CompiledRuleset, crate::Error> {
        Ok(CompiledRuleset::new(Ruleset::parse(text)?)?)
    }

    /// The ruleset this was compiled from.
    pub fn ruleset(&self) -> &Ruleset {
        &self.source
    }

    /// How many rules went to the port, source-prefix, destination-prefix and wildcard
    /// indexes.
    pub fn index_counts(&self) -> [usize; 4] {
        self.index_counts
    }

    /// What the ruleset decides for a packet of `flow` travelling in `dir`.
    #[inline]
    pub fn decide(&self, dir: Direction, flow: &Flow) -> Decision {
        self.decide_counting(dir, flow).0
    }

    /// [`decide`](Self::decide), also returning how many candidate rules were checked in
    /// full (the cost of the lookup).
    #[inline]
    pub fn decide_counting(&self, dir: Direction, flow: &Flow) -> (Decision, usize) {
        let mut n = 0;
        let d = match self.dirs[dir.index()].decide(flow, &mut n) {
            Some(r) => Decision { action: r.action, keep_state: r.keep_state, rule: Some(r.index) },
            None => Decision { action: self.source.default_for(dir), keep_state: false, rule: None },
        };
        (d, n)
    }
}

#[cfg(test)]
pub(crate) mod reference {
    //! A naive model of the semantics, for differential tests: read the rules in order.
    use super::*;

    fn addr_ok(rs: &Ruleset, a: &AddrSpec, v6: bool, x: u128) -> bool {
        let ip = if v6 { IpAddr::from(x.to_be_bytes()) } else { IpAddr::from((x as u32).to_be_bytes()) };
        match a {
            AddrSpec::Any => true,
            AddrSpec::List(l) => l.iter().any(|c| c.contains(ip)),
            AddrSpec::Table(t) => rs.table(t).is_some_and(|t| t.entries.iter().any(|c| c.contains(ip))),
        }
    }

    fn ports_ok(p: &[PortRange], x: u16) -> bool {
        p.is_empty() || p.iter().any(|r| r.lo <= x && x <= r.hi)
    }

    pub fn matches(rs: &Ruleset, r: &Rule, dir: Direction, f: &Flow) -> bool {
        r.direction == dir
            && match r.family {
                Some(Family::Inet) => !f.v6,
                Some(Family::Inet6) => f.v6,
                None => true,
            }
            && r.proto.is_none_or(|p| p.0 == f.proto)
            && r.icmp.is_none_or(|m| m.ty == f.icmp_type && m.code.is_none_or(|c| c == f.icmp_code))
            && addr_ok(rs, &r.from.addr, f.v6, f.src)
            && addr_ok(rs, &r.to.addr, f.v6, f.dst)
            && ports_ok(&r.from.ports, f.sport)
            && ports_ok(&r.to.ports, f.dport)
    }

    /// Index of the deciding rule (pf semantics), `None` for the default.
    pub fn decide(rs: &Ruleset, dir: Direction, f: &Flow) -> Option<usize> {
        let mut last = None;
        for (i, r) in rs.rules.iter().enumerate() {
            if matches(rs, r, dir, f) {
                last = Some(i);
                if r.quick {
                    break;
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow4(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Flow {
        Flow {
            proto,
            src: u32::from_be_bytes(src) as u128,
            dst: u32::from_be_bytes(dst) as u128,
            sport,
            dport,
            ..Flow::default()
        }
    }

    #[test]
    fn addr_set_merges_and_contains() {
        let s = AddrSet::new(&[
            Cidr::new("10.0.0.0".parse().unwrap(), 24).unwrap(),
            Cidr::new("10.0.1.0".parse().unwrap(), 24).unwrap(),
            Cidr::host("10.0.0.7".parse().unwrap()),
            Cidr::new("fd00::".parse().unwrap(), 8).unwrap(),
        ]);
        assert_eq!(s.v4, vec![(0x0a000000, 0x0a0001ff)]);
        assert!(s.contains(false, 0x0a0001ff));
        assert!(!s.contains(false, 0x0a000200));
        assert!(s.contains(true, 0xfd00u128 << 112 | 5));
        assert!(!s.contains(true, 0xfe00u128 << 112));
        assert!(!s.contains(false, 0));
    }

    #[test]
    fn semantics_table() {
        let rs = CompiledRuleset::parse(
            "set default in block\nset default out pass\n\
             pass in proto tcp to any port 22\n\
             block in proto tcp from 10.0.0.0/8 to any port 22\n\
             pass in quick proto tcp from 10.0.0.1 to any port 22\n\
             pass in proto udp to any port 53 no state\n\
             block in quick proto udp from 192.168.0.0/16\n\
             pass in proto udp from 192.168.1.1\n",
        )
        .unwrap();
        use Action::*;
        // (flow, dir, action, deciding rule)
        let cases = [
            (flow4(6, [1, 2, 3, 4], [9, 9, 9, 9], 1000, 22), Direction::In, Pass, Some(0)),
            (flow4(6, [10, 2, 3, 4], [9, 9, 9, 9], 1000, 22), Direction::In, Block, Some(1)), // last match wins
            (flow4(6, [10, 0, 0, 1], [9, 9, 9, 9], 1000, 22), Direction::In, Pass, Some(2)),  // quick
            (flow4(6, [1, 2, 3, 4], [9, 9, 9, 9], 1000, 23), Direction::In, Block, None),     // default in
            (flow4(6, [1, 2, 3, 4], [9, 9, 9, 9], 1000, 23), Direction::Out, Pass, None),     // default out
            (flow4(17, [192, 168, 1, 1], [9, 9, 9, 9], 1, 53), Direction::In, Block, Some(4)), // first quick beats later
            (flow4(17, [1, 1, 1, 1], [9, 9, 9, 9], 1, 53), Direction::In, Pass, Some(3)),
        ];
        for (f, dir, action, rule) in cases {
            let d = rs.decide(dir, &f);
            assert_eq!((d.action, d.rule), (action, rule), "{f:?} {dir:?}");
            assert_eq!(rule.map(|r| r as usize), reference::decide(rs.ruleset(), dir, &f));
        }
        assert!(!rs.decide(Direction::In, &cases[6].0).keep_state);
        assert!(rs.decide(Direction::In, &cases[0].0).keep_state);
    }

    #[test]
    fn ten_thousand_rules_cost_few_candidates() {
        let mut text = String::from("table <members> {");
        for i in 0..10_000u32 {
            text.push_str(&format!(" 172.16.{}.{},", i / 250, i % 250 + 1));
        }
        text.push_str(" }\n");
        for i in 0..10_000u32 {
            // Half by source host, half by destination port.
            if i % 2 == 0 {
                text.push_str(&format!(
                    "pass in proto tcp from 10.{}.{}.{} to any port 80\n",
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                ));
            } else {
                text.push_str(&format!("pass in proto udp to any port {}\n", 10_000 + i));
            }
        }
        text.push_str("pass in quick proto tcp from <members> to any port 443\n");
        let rs = CompiledRuleset::parse(&text).unwrap();
        let f = flow4(6, [10, 0, 0, 42], [1, 1, 1, 1], 5, 80);
        let (d, n) = rs.decide_counting(Direction::In, &f);
        assert_eq!(d.rule, Some(42));
        assert!(n <= 4, "{n} candidates");
        let f = flow4(17, [3, 3, 3, 3], [1, 1, 1, 1], 5, 10_000 + 9_999);
        let (d, n) = rs.decide_counting(Direction::In, &f);
        assert_eq!(d.rule, Some(9_999));
        assert!(n <= 4, "{n} candidates");
        let f = flow4(6, [172, 16, 39, 250], [1, 1, 1, 1], 5, 443);
        let (d, n) = rs.decide_counting(Direction::In, &f);
        assert_eq!(d.rule, Some(10_000));
        assert!(n <= 4, "{n} candidates");
        let f = flow4(6, [172, 16, 40, 250], [1, 1, 1, 1], 5, 443);
        let (d, n) = rs.decide_counting(Direction::In, &f);
        assert_eq!(d.rule, None);
        assert!(n <= 4, "{n} candidates");
    }

    /// 65,537 full port ranges add up to more than u32::MAX ports: the width must not wrap
    /// (in release it wrapped to 1, and the rule went to the port index with 4 billion
    /// entries; in debug, an overflow panic).
    #[test]
    fn a_huge_port_list_is_not_indexed_by_port() {
        let mut text = String::from("pass in proto tcp to any port {");
        for _ in 0..65_537 {
            text.push_str("0:65535,");
        }
        text.push_str("80}\n");
        let rs = CompiledRuleset::parse(&text).unwrap();
        assert_eq!(rs.index_counts()[0], 0, "not in the port index: {:?}", rs.index_counts());
        let (d, _) = rs.decide_counting(Direction::In, &flow4(6, [1, 1, 1, 1], [2, 2, 2, 2], 5, 4242));
        assert_eq!(d.rule, Some(0));
    }

    #[test]
    fn compile_errors() {
        let mut rs = Ruleset::default();
        let mut r = Rule::new(Action::Pass, Direction::In);
        r.from.addr = AddrSpec::Table("x".into());
        rs.rules.push(r);
        assert!(matches!(CompiledRuleset::new(rs.clone()), Err(CompileError::UnknownTable { rule: 0, .. })));
        rs.rules[0].from.addr = AddrSpec::Any;
        rs.rules[0].to.ports.push(PortRange { lo: 1, hi: 1 });
        assert_eq!(CompiledRuleset::new(rs).unwrap_err(), CompileError::Inconsistent(0));
    }
}

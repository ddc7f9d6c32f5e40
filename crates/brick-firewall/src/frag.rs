//! The fragment table: remembers the verdict of each fragmented datagram's first fragment so
//! later fragments (which carry no transport header) follow it.
//!
//! Bounded and allocation-free after creation: a 4-way set-associative array. Recording a
//! datagram whose set is full evicts the entry closest to expiry (counted); the evicted
//! datagram's remaining fragments are then dropped as "fragment without first". Fragments
//! arriving before their first fragment are dropped the same way (no reassembly, no
//! buffering). Entries expire after the configured timeout.

use std::hash::Hasher;

use crate::compile::FastHasher;
use crate::wire::Flow;

const WAYS: usize = 4;

/// Identifies a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FragKey {
    src: u128,
    dst: u128,
    id: u32,
    proto: u8,
    v6: bool,
}

impl FragKey {
    /// The datagram of `f`, with datagram id `id`. An IPv6 datagram is (source, destination,
    /// id) alone: its first fragment's `proto` is the transport found past any extension
    /// headers after the Fragment header, a later fragment's is that header's next header.
    pub fn of(f: &Flow, id: u32) -> FragKey {
        let proto = if f.v6 { 0 } else { f.proto };
        FragKey { src: f.src, dst: f.dst, id, proto, v6: f.v6 }
    }

    fn hash(&self) -> u64 {
        let mut h = FastHasher::default();
        h.write_u128(self.src);
        h.write_u128(self.dst);
        h.write_u64((self.id as u64) << 16 | (self.proto as u64) << 1 | self.v6 as u64);
        // A last fold and multiply: the ids sit above bit 16 of the last word, and the
        // multiply alone leaves the low bits (the set) without them.
        let x = h.finish();
        let x = (x ^ (x >> 32)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 32)
    }
}

#[derive(Clone, Copy, Default)]
struct Entry {
    key: FragKey,
    pass: bool,
    expires: u64,
}

/// The bounded fragment verdict table.
pub struct FragTable {
    sets: Vec<[Entry; WAYS]>,
    mask: usize,
    timeout: u64,
    evicted: u64,
}

impl FragTable {
    /// Room for at least `capacity` datagrams; entries live `timeout_ns`.
    pub fn new(capacity: usize, timeout_ns: u64) -> FragTable {
        let sets = capacity.div_ceil(WAYS).next_power_of_two().max(1);
        FragTable {
            sets: vec![[Entry::default(); WAYS]; sets],
            mask: sets - 1,
            timeout: timeout_ns,
            evicted: 0,
        }
    }

    /// Datagrams it can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * WAYS
    }

    /// Entries evicted before expiry because their set was full.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Records the verdict of a first fragment.
    pub fn record(&mut self, key: FragKey, pass: bool, now: u64) {
        let set = &mut self.sets[(key.hash() as usize) & self.mask];
        let expires = now.saturating_add(self.timeout);
        let slot = match set.iter().position(|e| e.expires > now && e.key == key) {
            Some(i) => i,
            None => match set.iter().position(|e| e.expires <= now) {
                Some(i) => i,
                None => {
                    self.evicted += 1;
                    set.iter().enumerate().min_by_key(|(_, e)| e.expires).map_or(0, |(i, _)| i)
                }
            },
        };
        set[slot] = Entry { key, pass, expires };
    }

    /// The verdict of the datagram's first fragment, if known and not expired.
    #[inline]
    pub fn lookup(&self, key: &FragKey, now: u64) -> Option<bool> {
        let set = &self.sets[(key.hash() as usize) & self.mask];
        set.iter().find(|e| e.expires > now && e.key == *key).map(|e| e.pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> FragKey {
        FragKey { src: 1, dst: 2, id: i, proto: 17, v6: false }
    }

    /// Datagrams that differ only in their id, or only in their source, spread over the
    /// table's sets as random keys would (4,096 keys over 8,192 sets: about 3,223 sets; the
    /// conntrack's hash once left index bits without the ports, see `conntrack/key.rs`).
    #[test]
    fn keys_differing_in_one_field_spread_over_the_sets() {
        type Vary = fn(u32) -> FragKey;
        let variants: [(&str, Vary); 3] = [
            ("id", key),
            ("id, high bits", |i| key(i << 16)),
            ("source", |i| FragKey { src: 0x0a00_0000 | u128::from(i), ..key(7) }),
        ];
        for (name, vary) in variants {
            let sets: std::collections::HashSet<u64> = (0..4096).map(|i| vary(i).hash() & 8191).collect();
            assert!(sets.len() > 2900, "{name}: {} sets of 8192", sets.len());
        }
    }

    #[test]
    fn remembers_expires_and_stays_bounded() {
        let mut t = FragTable::new(8, 100);
        t.record(key(1), true, 0);
        t.record(key(2), false, 0);
        assert_eq!(t.lookup(&key(1), 50), Some(true));
        assert_eq!(t.lookup(&key(2), 50), Some(false));
        assert_eq!(t.lookup(&key(3), 50), None);
        assert_eq!(t.lookup(&key(1), 100), None);
        for i in 0..1000 {
            t.record(key(i), true, 10);
        }
        assert_eq!(t.capacity(), 8);
        assert!(t.evicted() > 0);
        assert_eq!((0..1000).filter(|&i| t.lookup(&key(i), 20).is_some()).count(), 8);
    }
}

//! A bounded MAC address table with time-based aging, shared by the switch and the VTEP.
//!
//! Keys are MAC addresses packed in a `u64` ([`mac_to_u64`]). The table never holds more
//! than its capacity: when it is full, [`MacTable::learn`] refuses new addresses (and counts
//! them) instead of evicting, so a flood of random source MACs cannot grow memory nor push
//! out established stations. Entries older than the aging time are invisible to lookups at
//! once and are removed by [`MacTable::age`] (called from the owning brick's `tick`).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use brick_core::Timestamp;

/// Packs a 6-byte MAC address into the low 48 bits of a `u64` (big-endian order, so the
/// multicast bit is bit 40).
#[inline]
pub fn mac_to_u64(mac: &[u8]) -> u64 {
    debug_assert!(mac.len() >= 6);
    (u64::from(mac[0]) << 40)
        | (u64::from(mac[1]) << 32)
        | (u64::from(mac[2]) << 24)
        | (u64::from(mac[3]) << 16)
        | (u64::from(mac[4]) << 8)
        | u64::from(mac[5])
}

/// Unpacks a MAC address packed by [`mac_to_u64`].
pub fn u64_to_mac(v: u64) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Whether a packed MAC is a group (multicast or broadcast) address.
#[inline]
pub fn is_group(mac: u64) -> bool {
    mac & (1 << 40) != 0
}

/// A multiply-shift hasher for packed MACs: one multiplication per key, no SipHash. MACs
/// come from the network, so an attacker could aim at collisions; the table's capacity bound
/// keeps the damage to slower lookups, never to unbounded memory.
#[derive(Default, Clone, Copy)]
pub struct MacHasher(u64);

impl Hasher for MacHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    #[inline]
    fn write_u64(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // The map takes its bucket from the low bits and its tag from the top 7. A product's
        // bit depends only on the input bits below it: the low bits come from the product's
        // upper half (bits 32 and up see the whole MAC), and its top 7 bits stay on top.
        self.0 = x.rotate_left(32) ^ (x & 0xfe00_0000_0000_0000);
    }
}

type Map<V> = HashMap<u64, Slot<V>, BuildHasherDefault<MacHasher>>;

#[derive(Clone, Copy, Debug)]
struct Slot<V> {
    value: V,
    seen: Timestamp,
    is_static: bool,
}

/// What [`MacTable::learn`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// A new entry was created.
    New,
    /// The entry existed with the same value; its age was reset.
    Refreshed,
    /// The entry existed with another value (a station moved); it now has the new one.
    Moved,
    /// The table is full: the address was not learned.
    Refused,
    /// A static entry exists for the address; it was left alone.
    Static,
}

/// The table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("MAC table full ({capacity} entries)")]
pub struct TableFull {
    /// The table's capacity.
    pub capacity: usize,
}

/// One entry, as reported by [`MacTable::entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry<V> {
    /// The MAC address.
    pub mac: [u8; 6],
    /// What it maps to.
    pub value: V,
    /// Time since it was last learned or refreshed (zero for static entries).
    pub age: Duration,
    /// Whether it was configured (never ages, never moves).
    pub is_static: bool,
}

/// A bounded MAC → `V` table with aging. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct MacTable<V> {
    map: Map<V>,
    capacity: usize,
    aging: Duration,
    aging_ns: u64,
}

impl<V: Copy + PartialEq> MacTable<V> {
    /// A table of at most `capacity` entries whose learnt entries expire `aging` after they
    /// were last seen. Memory for `capacity` entries is reserved now, so learning does not
    /// allocate.
    pub fn new(capacity: usize, aging: Duration) -> Self {
        let mut map = Map::default();
        // Twice the room: hashbrown then rehashes tombstones in place instead of growing.
        map.reserve(capacity.saturating_mul(2));
        MacTable { map, capacity, aging, aging_ns: aging.as_nanos().min(u64::MAX as u128) as u64 }
    }

    /// Like [`new`](Self::new) but reserves room for only `reserve` entries now; the table
    /// grows (still never beyond `capacity`) as addresses are learnt. For tables that exist
    /// in large numbers, such as one per VNI.
    pub fn with_reserve(capacity: usize, aging: Duration, reserve: usize) -> Self {
        let mut map = Map::default();
        map.reserve(reserve.min(capacity));
        MacTable { map, capacity, aging, aging_ns: aging.as_nanos().min(u64::MAX as u128) as u64 }
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of entries (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The aging time.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// Changes the aging time (applies to existing entries too).
    pub fn set_aging(&mut self, aging: Duration) {
        self.aging = aging;
        self.aging_ns = aging.as_nanos().min(u64::MAX as u128) as u64;
    }

    #[inline]
    fn expired(&self, slot: &Slot<V>, now: Timestamp) -> bool {
        !slot.is_static && now.0.saturating_sub(slot.seen.0) >= self.aging_ns
    }

    /// Learns (or refreshes) `mac → value` at time `now`.
    #[inline]
    pub fn learn(&mut self, mac: u64, value: V, now: Timestamp) -> Learned {
        if let Some(slot) = self.map.get_mut(&mac) {
            if slot.is_static {
                return Learned::Static;
            }
            slot.seen = now;
            if slot.value == value {
                return Learned::Refreshed;
            }
            slot.value = value;
            return Learned::Moved;
        }
        if self.map.len() >= self.capacity {
            return Learned::Refused;
        }
        self.map.insert(mac, Slot { value, seen: now, is_static: false });
        Learned::New
    }

    /// The value for `mac`, unless absent or expired at `now`.
    #[inline]
    pub fn lookup(&self, mac: u64, now: Timestamp) -> Option<V> {
        match self.map.get(&mac) {
            Some(slot) if !self.expired(slot, now) => Some(slot.value),
            _ => None,
        }
    }

    /// Adds or replaces a static entry (never ages, never moved by learning).
    pub fn insert_static(&mut self, mac: u64, value: V) -> Result<(), TableFull> {
        if !self.map.contains_key(&mac) && self.map.len() >= self.capacity {
            return Err(TableFull { capacity: self.capacity });
        }
        self.map.insert(mac, Slot { value, seen: Timestamp(0), is_static: true });
        Ok(())
    }

    /// Removes the entry of `mac` (static or learnt); returns its value.
    pub fn remove(&mut self, mac: u64) -> Option<V> {
        self.map.remove(&mac).map(|s| s.value)
    }

    /// Removes learnt entries that expired at `now`; returns how many.
    pub fn age(&mut self, now: Timestamp) -> usize {
        let before = self.map.len();
        let aging = self.aging_ns;
        self.map.retain(|_, s| s.is_static || now.0.saturating_sub(s.seen.0) < aging);
        before - self.map.len()
    }

    /// Removes every entry (static ones too) whose value matches `pred`; returns how many.
    pub fn remove_where(&mut self, mut pred: impl FnMut(&V) -> bool) -> usize {
        let before = self.map.len();
        self.map.retain(|_, s| !pred(&s.value));
        before - self.map.len()
    }

    /// Removes every learnt entry (static entries stay).
    pub fn flush_learnt(&mut self) {
        self.map.retain(|_, s| s.is_static);
    }

    /// A snapshot of the live entries (not expired at `now`), sorted by MAC.
    pub fn entries(&self, now: Timestamp) -> Vec<MacEntry<V>> {
        let mut v: Vec<MacEntry<V>> = self
            .map
            .iter()
            .filter(|(_, s)| !self.expired(s, now))
            .map(|(&k, s)| MacEntry {
                mac: u64_to_mac(k),
                value: s.value,
                age: if s.is_static { Duration::ZERO } else { now.saturating_since(s.seen) },
                is_static: s.is_static,
            })
            .collect();
        v.sort_by_key(|e| e.mac);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 0x0200_0000_0001;
    const B: u64 = 0x0200_0000_0002;

    /// MACs that differ only in their last bytes (one vendor's NICs) or only in their
    /// vendor bytes land in as many buckets as random keys would: the map takes the bucket
    /// from the hash's low bits and its tag from the top 7 (4,096 keys over 8,192 buckets:
    /// about 3,223).
    #[test]
    fn macs_differing_in_a_few_bytes_spread_over_the_buckets() {
        use std::hash::BuildHasher;
        let h = BuildHasherDefault::<MacHasher>::default();
        let variants: [(&str, u64, u32); 3] = [
            ("last bytes", 0x5254_0000_0000, 0),
            ("middle bytes", 0x5254_0000_0000, 16),
            ("vendor bytes", 0x00_0000_0001, 32),
        ];
        for (name, base, shift) in variants {
            let buckets: std::collections::HashSet<u64> =
                (0..4096u64).map(|i| h.hash_one(base ^ (i << shift)) & 8191).collect();
            assert!(buckets.len() > 2900, "{name}: {} buckets of 8192", buckets.len());
            let tags: std::collections::HashSet<u64> =
                (0..4096u64).map(|i| h.hash_one(base ^ (i << shift)) >> 57).collect();
            assert!(tags.len() > 100, "{name}: {} tags of 128", tags.len());
        }
    }

    #[test]
    fn pack_unpack() {
        let m = [0x01, 0x80, 0xc2, 0, 0, 0x0e];
        assert_eq!(u64_to_mac(mac_to_u64(&m)), m);
        assert!(is_group(mac_to_u64(&m)));
        assert!(!is_group(A));
    }

    #[test]
    fn learn_refresh_move() {
        let mut t = MacTable::new(4, Duration::from_secs(10));
        assert_eq!(t.learn(A, 1u32, Timestamp::from_secs(1)), Learned::New);
        assert_eq!(t.learn(A, 1, Timestamp::from_secs(2)), Learned::Refreshed);
        assert_eq!(t.learn(A, 2, Timestamp::from_secs(3)), Learned::Moved);
        assert_eq!(t.lookup(A, Timestamp::from_secs(3)), Some(2));
    }

    #[test]
    fn aging_is_time_based() {
        let mut t = MacTable::new(4, Duration::from_secs(10));
        t.learn(A, 1u32, Timestamp::from_secs(100));
        t.learn(B, 1u32, Timestamp::from_secs(105));
        assert_eq!(t.lookup(A, Timestamp::from_millis(109_999)), Some(1));
        assert_eq!(t.lookup(A, Timestamp::from_secs(110)), None, "expired entries are invisible");
        assert_eq!(t.len(), 2);
        assert_eq!(t.age(Timestamp::from_secs(110)), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(B, Timestamp::from_secs(110)), Some(1));
    }

    #[test]
    fn full_table_refuses_and_keeps_old_entries() {
        let mut t = MacTable::new(2, Duration::from_secs(10));
        t.learn(A, 1u32, Timestamp(0));
        t.learn(B, 1u32, Timestamp(0));
        assert_eq!(t.learn(3, 1, Timestamp(0)), Learned::Refused);
        assert_eq!(t.len(), 2);
        assert_eq!(t.insert_static(4, 9), Err(TableFull { capacity: 2 }));
        // Existing entries still refresh when full.
        assert_eq!(t.learn(A, 2, Timestamp(1)), Learned::Moved);
        t.age(Timestamp::from_secs(20));
        assert_eq!(t.learn(3, 1, Timestamp::from_secs(20)), Learned::New);
    }

    #[test]
    fn static_entries_do_not_age_or_move() {
        let mut t = MacTable::new(2, Duration::from_secs(1));
        t.insert_static(A, 7u32).unwrap();
        assert_eq!(t.learn(A, 1, Timestamp::from_secs(5)), Learned::Static);
        assert_eq!(t.age(Timestamp::from_secs(1000)), 0);
        assert_eq!(t.lookup(A, Timestamp::from_secs(1000)), Some(7));
        t.flush_learnt();
        assert_eq!(t.len(), 1);
        let e = t.entries(Timestamp::from_secs(1000));
        assert_eq!(e.len(), 1);
        assert!(e[0].is_static);
        assert_eq!(t.remove(A), Some(7));
    }

    #[test]
    fn remove_where_filters_values() {
        let mut t = MacTable::new(8, Duration::from_secs(1));
        t.learn(A, 1u32, Timestamp(0));
        t.learn(B, 2u32, Timestamp(0));
        t.insert_static(5, 1).unwrap();
        assert_eq!(t.remove_where(|v| *v == 1), 2);
        assert_eq!(t.len(), 1);
    }
}

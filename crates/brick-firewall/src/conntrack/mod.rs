//! The connection table: bounded, one hash probe per packet, expiry by a lazy timer wheel.
//!
//! - **Keys** are direction-free: the two endpoints are ordered (`lo` < `hi`), so a packet and
//!   its reply find the same entry with one probe. The entry remembers which endpoint opened
//!   the connection and on which side of the firewall.
//! - **Storage** is a slab of at most `max` entries plus an open-addressing index (linear
//!   probing, backward-shift deletion) sized once at creation: no allocation per packet, and
//!   none at all once the slab has grown to its peak.
//! - **Full table**: a new connection is refused ([`Full`]) and the firewall drops the packet
//!   and counts it ("conntrack full"). Existing connections are never evicted to make room.
//! - **Expiry**: every entry sits in one slot of a 1-second timer wheel ([`WHEEL_SLOTS`]
//!   slots). Refreshing a connection only moves its deadline forward in the entry; the wheel
//!   is corrected lazily when the slot comes due (the entry is then freed if its deadline has
//!   passed, else moved once to its real slot). A shortened deadline (RST, FIN) relinks the
//!   entry at once. [`ConnTable::gc`] therefore touches only entries whose recorded slot came
//!   due: O(expired + rescheduled), never a scan of the table. Lookups treat an entry whose
//!   deadline has passed as absent even before `gc` frees it.
//!
//! This file holds the table (slab, index, wheel); the key is in `key.rs`, states and
//! timeouts in `state.rs`, a connection's state machine in `conn.rs`, export and import in
//! `export.rs`.

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use brick_core::hint::prefetch;

use crate::rule::Direction;
use crate::wire::{Flow, PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

mod conn;
mod export;
mod key;
mod state;

pub use export::{ImportError, EXPORT_MAGIC, EXPORT_VERSION};
pub use key::FlowKey;
pub use state::{ConnState, Timeouts};

/// Slots of the expiry wheel (one second each).
pub const WHEEL_SLOTS: usize = 1024;
const NONE: u32 = u32::MAX;
const NS: u64 = 1_000_000_000;

/// A tracked connection.
#[derive(Clone, Debug)]
pub struct Conn {
    key: FlowKey,
    origin: Direction,
    origin_lo: bool,
    state: ConnState,
    expires: u64,
    // Per endpoint, [lo, hi]: TCP sequence tracking.
    seq_end: [u32; 2],
    max_win: [u32; 2],
    wscale: [u8; 2],
    seen: [bool; 2],
    fin: [bool; 2],
    live: bool,
    wheel_prev: u32,
    wheel_next: u32,
    wheel_slot: u64,
}

/// Why a packet of a tracked TCP connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpRefusal {
    /// A RST whose sequence number is outside the receiver's window.
    RstOutOfWindow,
}

const WSCALE_NONE: u8 = 0xff;

// `prefetch_entry` hints an entry's first, second and last byte: every line of one no
// longer than 128 bytes.
const _: () = assert!(std::mem::size_of::<Conn>() <= 128);

#[inline]
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The table is full: the new connection was not recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection table full")]
pub struct Full;

/// Counters of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections created.
    pub created: u64,
    /// Connections freed by expiry.
    pub expired: u64,
    /// Connections refused because the table was full.
    pub refused_full: u64,
    /// Connections removed by a ruleset change or explicitly.
    pub removed: u64,
}

/// The connection table. See the module documentation.
pub struct ConnTable {
    slots: Vec<Conn>,
    free: Vec<u32>,
    index: Vec<u64>,
    mask: usize,
    len: usize,
    max: usize,
    seed: u64,
    wheel: Vec<u32>,
    wheel_time: u64,
    started: bool,
    stats: ConnStats,
    /// The entry `find` found last: a stream's packets come in runs, and checking this
    /// entry's key first skips the hash and the index probe, which the key's load otherwise
    /// waits on. Only a hint: it is used when that slot is live and holds the same key.
    last: Cell<u32>,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable")
            .field("len", &self.len)
            .field("max", &self.max)
            .field("stats", &self.stats)
            .finish()
    }
}

impl ConnTable {
    /// A table holding at most `max` connections (at least 1). The index is allocated now.
    pub fn new(max: usize) -> ConnTable {
        let max = max.max(1);
        let cap = (max * 2).next_power_of_two().max(16);
        ConnTable {
            slots: Vec::with_capacity(max.min(1 << 16)),
            free: Vec::new(),
            index: vec![0; cap],
            mask: cap - 1,
            len: 0,
            max,
            seed: std::collections::hash_map::RandomState::new().hash_one(0x5eedu64),
            wheel: vec![NONE; WHEEL_SLOTS],
            wheel_time: 0,
            started: false,
            stats: ConnStats::default(),
            last: Cell::new(0),
        }
    }

    /// Connections held (including expired ones not yet collected).
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Capacity.
    pub fn max(&self) -> usize {
        self.max
    }
    /// Counters.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// The entry `id`.
    #[inline]
    pub fn get(&self, id: u32) -> &Conn {
        &self.slots[id as usize]
    }

    /// The entry `id`, writable. Call [`reschedule`](Self::reschedule) after shortening its
    /// deadline.
    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut Conn {
        &mut self.slots[id as usize]
    }

    /// Finds the entry of `key` (expired or not).
    #[inline]
    pub fn find(&self, key: &FlowKey) -> Option<u32> {
        let last = self.last.get();
        if let Some(c) = self.slots.get(last as usize) {
            if c.live && c.key == *key {
                return Some(last);
            }
        }
        self.probe(key)
    }

    /// `find` past the hint: the hash and the index. Apart, so that the hint's check is small
    /// enough to inline into the caller, where the key is still in registers.
    #[inline(never)]
    fn probe(&self, key: &FlowKey) -> Option<u32> {
        let h = key.hash(self.seed);
        let tag = h >> 32;
        let mut i = (tag as usize) & self.mask;
        loop {
            let e = self.index[i];
            if e == 0 {
                return None;
            }
            if e >> 32 == tag {
                let id = (e as u32).wrapping_sub(1);
                if self.slots[id as usize].key == *key {
                    self.last.set(id);
                    return Some(id);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The hash the table looks `key` up by (for [`prefetch_index`](Self::prefetch_index)
    /// and [`prefetch_entry`](Self::prefetch_entry)).
    #[inline]
    pub fn hash_of(&self, key: &FlowKey) -> u64 {
        key.hash(self.seed)
    }

    /// Starts loading the index slot where the search for hash `h` begins. A hint: it changes
    /// nothing, whatever `h`.
    #[inline]
    pub fn prefetch_index(&self, h: u64) {
        prefetch(self.index.as_ptr().wrapping_add((h >> 32) as usize & self.mask).cast());
    }

    /// Starts loading the entry the index slot of hash `h` names, if its tag is `h`'s (the
    /// slot itself is read: start loading it first, with
    /// [`prefetch_index`](Self::prefetch_index)). A hint: it changes nothing.
    #[inline]
    pub fn prefetch_entry(&self, h: u64) {
        let e = self.index[(h >> 32) as usize & self.mask];
        if e != 0 && e >> 32 == h >> 32 {
            let entry = self.slots.as_ptr().wrapping_add((e as u32).wrapping_sub(1) as usize).cast::<u8>();
            // An entry spans two or three cache lines (it is at most 128 bytes: below).
            for off in [0, 64, std::mem::size_of::<Conn>() - 1] {
                prefetch(entry.wrapping_add(off));
            }
        }
    }

    fn start(&mut self, now: u64) {
        if !self.started {
            self.started = true;
            self.wheel_time = now / NS;
        }
    }

    /// Records a new connection. Its key must not be in the table (remove it first).
    pub fn insert(&mut self, conn: Conn, now: u64) -> Result<u32, Full> {
        if self.len >= self.max {
            self.stats.refused_full += 1;
            return Err(Full);
        }
        self.start(now);
        let h = conn.key.hash(self.seed);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = conn;
                id
            }
            None => {
                self.slots.push(conn);
                (self.slots.len() - 1) as u32
            }
        };
        let tag = h >> 32;
        let mut i = (tag as usize) & self.mask;
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = tag << 32 | (id as u64 + 1);
        self.len += 1;
        self.stats.created += 1;
        self.link(id);
        Ok(id)
    }

    fn slot_for(&self, expires: u64) -> u64 {
        (expires / NS).clamp(self.wheel_time, self.wheel_time + WHEEL_SLOTS as u64 - 1)
    }

    fn link(&mut self, id: u32) {
        let t = self.slot_for(self.slots[id as usize].expires);
        let w = (t % WHEEL_SLOTS as u64) as usize;
        let head = self.wheel[w];
        {
            let c = &mut self.slots[id as usize];
            c.wheel_slot = t;
            c.wheel_prev = NONE;
            c.wheel_next = head;
        }
        if head != NONE {
            self.slots[head as usize].wheel_prev = id;
        }
        self.wheel[w] = id;
    }

    fn unlink(&mut self, id: u32) {
        let (prev, next, t) = {
            let c = &self.slots[id as usize];
            (c.wheel_prev, c.wheel_next, c.wheel_slot)
        };
        if prev != NONE {
            self.slots[prev as usize].wheel_next = next;
        } else {
            self.wheel[(t % WHEEL_SLOTS as u64) as usize] = next;
        }
        if next != NONE {
            self.slots[next as usize].wheel_prev = prev;
        }
    }

    /// Tells the table that the deadline of `id` may have moved earlier than its wheel slot
    /// (cheap when it did not).
    #[inline]
    pub fn reschedule(&mut self, id: u32) {
        let c = &self.slots[id as usize];
        if self.slot_for(c.expires) < c.wheel_slot {
            self.unlink(id);
            self.link(id);
        }
    }

    /// Frees the entry `id`.
    pub fn remove(&mut self, id: u32) {
        if !self.slots[id as usize].live {
            return;
        }
        self.unlink(id);
        let h = self.slots[id as usize].key.hash(self.seed);
        let tag = h >> 32;
        let mut i = (tag as usize) & self.mask;
        let target = tag << 32 | (id as u64 + 1);
        while self.index[i] != target {
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion (Knuth's algorithm R): pull later entries of the cluster
        // into the hole unless their home lies cyclically in (hole, their position].
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let e = self.index[j];
            if e == 0 {
                break;
            }
            let k = ((e >> 32) as usize) & self.mask;
            let stays = if i <= j { i < k && k <= j } else { i < k || k <= j };
            if !stays {
                self.index[i] = e;
                i = j;
            }
        }
        self.index[i] = 0;
        self.slots[id as usize].live = false;
        self.free.push(id);
        self.len -= 1;
    }

    /// Frees connections whose deadline passed, visiting at most `budget` entries; returns
    /// how many were freed. Cost: the entries of the wheel slots that came due.
    pub fn gc(&mut self, now: u64, budget: usize) -> usize {
        self.start(now);
        let mut freed = 0;
        let mut visited = 0;
        while (self.wheel_time + 1) * NS <= now {
            let w = (self.wheel_time % WHEEL_SLOTS as u64) as usize;
            while self.wheel[w] != NONE {
                if visited >= budget {
                    return freed;
                }
                visited += 1;
                let id = self.wheel[w];
                if self.slots[id as usize].expires <= now {
                    self.remove(id);
                    self.stats.expired += 1;
                    freed += 1;
                } else {
                    // Its deadline is after `now`, so its real slot is strictly later.
                    self.unlink(id);
                    self.link(id);
                }
            }
            self.wheel_time += 1;
        }
        freed
    }

    /// Ids of live entries (allocates; control path).
    pub fn ids(&self) -> Vec<u32> {
        (0..self.slots.len() as u32).filter(|&i| self.slots[i as usize].live).collect()
    }

    /// Removes every entry for which `keep` is false; returns how many went.
    pub fn retain(&mut self, mut keep: impl FnMut(&Conn) -> bool) -> usize {
        let mut n = 0;
        for id in self.ids() {
            if !keep(&self.slots[id as usize]) {
                self.remove(id);
                self.stats.removed += 1;
                n += 1;
            }
        }
        n
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let live = self.slots.iter().filter(|c| c.live).count();
        assert_eq!(live, self.len);
        assert!(self.len <= self.max);
        assert_eq!(self.index.iter().filter(|&&e| e != 0).count(), self.len);
        for id in self.ids() {
            assert_eq!(self.find(&self.slots[id as usize].key), Some(id), "every live entry is findable");
        }
        // Every live entry is in exactly one wheel list, the one of its slot.
        let mut in_wheel = 0;
        for (w, &head) in self.wheel.iter().enumerate() {
            let mut id = head;
            let mut prev = NONE;
            while id != NONE {
                let c = &self.slots[id as usize];
                assert!(c.live);
                assert_eq!((c.wheel_slot % WHEEL_SLOTS as u64) as usize, w);
                assert_eq!(c.wheel_prev, prev);
                in_wheel += 1;
                prev = id;
                id = c.wheel_next;
            }
        }
        assert_eq!(in_wheel, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::export::{HEADER, RECORD};
    use super::*;
    use proptest::prelude::*;

    fn udp(src: u32, dst: u32, sp: u16, dp: u16) -> Flow {
        Flow { proto: PROTO_UDP, src: src as u128, dst: dst as u128, sport: sp, dport: dp, ..Flow::default() }
    }

    #[test]
    fn keys_are_direction_free() {
        let a = udp(1, 2, 10, 20);
        let b = udp(2, 1, 20, 10);
        let (ka, la) = FlowKey::of(&a);
        let (kb, lb) = FlowKey::of(&b);
        assert_eq!(ka, kb);
        assert_ne!(la, lb);
    }

    #[test]
    fn full_table_refuses_and_counts() {
        let t = Timeouts::default();
        let mut ct = ConnTable::new(2);
        for i in 0..2 {
            ct.insert(Conn::new(&udp(i, 9, 1, 2), Direction::Out, 0, &t), 0).unwrap();
        }
        assert_eq!(ct.insert(Conn::new(&udp(5, 9, 1, 2), Direction::Out, 0, &t), 0), Err(Full));
        assert_eq!(ct.stats().refused_full, 1);
        ct.check_invariants();
    }

    /// Looking ahead is a hint: any hash, found or not, changes nothing and finds the same.
    #[test]
    fn prefetching_any_hash_changes_nothing() {
        let mut t = ConnTable::new(64);
        let key = FlowKey::of(&udp(1, 2, 3, 4)).0;
        let id = t.insert(Conn::new(&udp(1, 2, 3, 4), Direction::Out, 0, &Timeouts::default()), 0).unwrap();
        for h in [0, u64::MAX, 0x1234_5678_9abc_def0, t.hash_of(&key)] {
            t.prefetch_index(h);
            t.prefetch_entry(h);
        }
        assert_eq!((t.find(&key), t.len()), (Some(id), 1));
        t.check_invariants();
    }

    #[test]
    fn the_last_found_entry_is_only_a_hint() {
        let t = Timeouts::default();
        let mut ct = ConnTable::new(10);
        let (ka, _) = FlowKey::of(&udp(1, 9, 1, 2));
        let (kb, _) = FlowKey::of(&udp(2, 9, 1, 2));
        let a = ct.insert(Conn::new(&udp(1, 9, 1, 2), Direction::Out, 0, &t), 0).unwrap();
        assert_eq!(ct.find(&ka), Some(a));
        assert_eq!(ct.find(&ka), Some(a), "found again through the hint");
        assert_eq!(ct.find(&kb), None, "another key is looked up, not taken from the hint");
        ct.remove(a);
        assert_eq!(ct.find(&ka), None, "a freed entry is not found through the hint");
        // The freed slot is reused for another key: the hint must not hand it out for the old.
        let b = ct.insert(Conn::new(&udp(2, 9, 1, 2), Direction::Out, 0, &t), 0).unwrap();
        assert_eq!(b, a, "the slot is reused");
        assert_eq!(ct.find(&ka), None);
        assert_eq!(ct.find(&kb), Some(b));
        ct.check_invariants();
    }

    #[test]
    fn gc_frees_only_expired() {
        let t = Timeouts::default();
        let mut ct = ConnTable::new(100);
        let now = 1000 * NS;
        for i in 0..10 {
            ct.insert(Conn::new(&udp(i, 9, 1, 2), Direction::Out, now, &t), now).unwrap();
        }
        // Refresh half of them (replies) at +20 s.
        let later = now + 20 * NS;
        for i in 0..5 {
            let (k, lo) = FlowKey::of(&udp(i, 9, 1, 2));
            let id = ct.find(&k).unwrap();
            let fi = ct.get(id).orientation(Direction::Out, lo).unwrap();
            ct.get_mut(id).update(&udp(i, 9, 1, 2), fi, later, &t).unwrap();
        }
        assert_eq!(ct.gc(now + 29 * NS, usize::MAX), 0);
        assert_eq!(ct.gc(now + 31 * NS, usize::MAX), 5);
        ct.check_invariants();
        assert_eq!(ct.len(), 5);
        assert_eq!(ct.gc(now + 51 * NS, usize::MAX), 5);
        assert!(ct.is_empty());
        ct.check_invariants();
    }

    #[test]
    fn export_import_round_trip_and_rejects_garbage() {
        let t = Timeouts::default();
        let mut ct = ConnTable::new(10);
        let now = 5 * NS;
        ct.insert(Conn::new(&udp(1, 2, 3, 4), Direction::In, now, &t), now).unwrap();
        let bytes = ct.export(now);
        assert_eq!(bytes.len(), 12 + 64);
        let conns = ConnTable::decode(&bytes, 100 * NS).unwrap();
        assert_eq!(conns[0].key, *ct.get(0).key());
        assert_eq!(conns[0].expires, 100 * NS + t.udp_first.as_nanos() as u64);
        let mut other = ConnTable::new(10);
        assert_eq!(other.import(conns, 100 * NS, |_| true), Ok(1));
        other.check_invariants();
        assert_eq!(ConnTable::decode(b"nope", 0).unwrap_err(), ImportError::BadMagic);
        assert_eq!(
            ConnTable::decode(&bytes[..70], 0).unwrap_err(),
            ImportError::Truncated { needed: 76, got: 70 }
        );
        let mut bad = bytes.clone();
        bad[12 + 4] = 99;
        assert_eq!(ConnTable::decode(&bad, 0).unwrap_err(), ImportError::Record(0));
        let mut small = ConnTable::new(1);
        small.insert(Conn::new(&udp(7, 7, 7, 7), Direction::In, now, &t), now).unwrap();
        let conns = ConnTable::decode(&bytes, now).unwrap();
        assert!(matches!(small.import(conns, now, |_| true), Err(ImportError::Full { .. })));
    }

    /// Every kind of malformed export gets its own error, and the table is left alone.
    #[test]
    fn import_errors_are_typed_and_change_nothing() {
        let t = Timeouts::default();
        let now = 5 * NS;
        let mut src = ConnTable::new(10);
        for i in 0..3 {
            src.insert(Conn::new(&udp(i, 2, 3, 4), Direction::Out, now, &t), now).unwrap();
        }
        let good = src.export(now);
        let mut dst = ConnTable::new(2);
        dst.insert(Conn::new(&udp(9, 9, 9, 9), Direction::In, now, &t), now).unwrap();
        let before = (dst.export(now), dst.stats());
        let with = |i: usize, v: u8| {
            let mut b = good.clone();
            b[i] = v;
            b
        };
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: Vec<(Vec<u8>, ImportError)> = vec![
            (vec![], ImportError::Truncated { needed: 12, got: 0 }),
            (b"BF".to_vec(), ImportError::Truncated { needed: 12, got: 2 }),
            (good[..11].to_vec(), ImportError::Truncated { needed: 12, got: 11 }),
            (b"BFCX".to_vec(), ImportError::BadMagic),
            (with(0, b'X'), ImportError::BadMagic),
            (with(4, 2), ImportError::Version(2)),
            (with(6, 32), ImportError::RecordSize(32)),
            (
                good[..good.len() - 1].to_vec(),
                ImportError::Truncated { needed: good.len(), got: good.len() - 1 },
            ),
            (with(11, 0x80), ImportError::Truncated { needed: 12 + 64 * 0x8000_0003, got: good.len() }),
            (trailing, ImportError::Length),
            (with(12 + 64 + 4, 99), ImportError::Record(1)),
            (with(12 + 2 * 64 + 7, 1), ImportError::Record(2)),
            (good.clone(), ImportError::Full { needed: 3, free: 1 }),
        ];
        for (bytes, err) in cases {
            assert_eq!(dst.import_bytes(&bytes, now, |_| true), Err(err.clone()), "{bytes:?}");
            assert_eq!((dst.export(now), dst.stats()), before, "{err} changed the table");
            assert!(!err.to_string().is_empty());
        }
        // What the rules keep is what must fit.
        assert_eq!(dst.import_bytes(&good, now, |c| c.key().lo == 0), Ok(1));
        assert_eq!(dst.len(), 2);
        dst.check_invariants();
    }

    /// The import is bounded by the table, not by the input: an export much larger than the
    /// table is refused after one pass, without holding its records.
    #[test]
    fn a_huge_import_is_refused_by_the_table_size() {
        let t = Timeouts::default();
        let mut src = ConnTable::new(5000);
        for i in 0..5000 {
            src.insert(Conn::new(&udp(i, 2, 3, 4), Direction::Out, 0, &t), 0).unwrap();
        }
        let bytes = src.export(0);
        let mut dst = ConnTable::new(100);
        assert_eq!(dst.import_bytes(&bytes, 0, |_| true), Err(ImportError::Full { needed: 5000, free: 100 }));
        assert!(dst.is_empty());
        // Duplicates of a present key are not counted as free room twice.
        let mut one = ConnTable::new(1);
        let c = Conn::new(&udp(1, 2, 3, 4), Direction::Out, 0, &t);
        one.insert(c.clone(), 0).unwrap();
        let mut dup = ConnTable::new(2);
        dup.insert(c.clone(), 0).unwrap();
        dup.insert(Conn::new(&udp(7, 2, 3, 4), Direction::Out, 0, &t), 0).unwrap();
        let mut twice = dup.export(0);
        let rec0 = twice[12..76].to_vec();
        twice[76..140].copy_from_slice(&rec0); // the same key twice
        assert_eq!(one.import_bytes(&twice, 0, |_| true), Ok(2));
        assert_eq!(one.len(), 1);
        one.check_invariants();
    }

    /// A connection to build: its opening packet, direction, and later packets (from the
    /// initiator, TCP flags, sequence number, window).
    type ConnSpec = (Flow, Direction, Vec<(bool, u8, u32, u16)>);

    /// Random connections in every state, as packets leave them.
    fn conn_strategy() -> impl Strategy<Value = ConnSpec> {
        let flow = (
            any::<bool>(),
            prop_oneof![Just(PROTO_TCP), Just(PROTO_UDP), Just(PROTO_ICMP), Just(PROTO_ICMP6), Just(47u8)],
            any::<u128>(),
            any::<u128>(),
            any::<u16>(),
            any::<u16>(),
            proptest::option::of(0u8..15),
        )
            .prop_map(|(v6, proto, src, dst, sport, dport, wscale)| {
                let (src, dst) = if v6 { (src, dst) } else { (src & 0xffff_ffff, dst & 0xffff_ffff) };
                Flow { v6, proto, src, dst, sport, dport, tcp_flags: TCP_SYN, wscale, ..Flow::default() }
            });
        let dir = prop_oneof![Just(Direction::In), Just(Direction::Out)];
        // Later packets: (from the initiator, TCP flags, sequence number, window).
        let pkts = proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u32>(), any::<u16>()), 0..6);
        (flow, dir, pkts)
    }

    fn build_table(conns: &[ConnSpec], max: usize, now: u64) -> ConnTable {
        let t = Timeouts::default();
        let mut ct = ConnTable::new(max);
        for (i, (f, dir, pkts)) in conns.iter().enumerate() {
            let at = now + i as u64 * NS / 10;
            let mut c = Conn::new(f, *dir, at, &t);
            for &(from_init, flags, seq, win) in pkts {
                let mut p = *f;
                if !from_init {
                    std::mem::swap(&mut p.src, &mut p.dst);
                    std::mem::swap(&mut p.sport, &mut p.dport);
                }
                (p.tcp_flags, p.seq, p.win) = (flags, seq, win);
                let _ = c.update(&p, from_init, at, &t);
            }
            if let Some(id) = ct.find(&c.key) {
                ct.remove(id);
            }
            let _ = ct.insert(c, at);
        }
        ct
    }

    /// Bytes near an export: the export itself with some bytes changed, cut or extended.
    fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
        let n = base.len();
        (proptest::collection::vec((0..n.max(1), any::<u8>()), 0..4), 0..n + 8, any::<u8>()).prop_map(
            move |(edits, cut, fill)| {
                let mut b = base.clone();
                for (i, v) in edits {
                    if let Some(x) = b.get_mut(i) {
                        *x = v;
                    }
                }
                b.resize(cut, fill);
                b
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// export → import → export gives back the same bytes (remaining lifetimes are
        /// relative to the moment of each export), and the imported table is sound.
        #[test]
        fn export_import_round_trip(conns in proptest::collection::vec(conn_strategy(), 0..40), later in 0u64..1_000_000) {
            let now = 50 * NS;
            let src = build_table(&conns, 64, now);
            let bytes = src.export(now + 4 * NS);
            let at = now + later * NS;
            let mut dst = ConnTable::new(64);
            let n = dst.import_bytes(&bytes, at, |_| true).unwrap();
            prop_assert_eq!(n, (bytes.len() - HEADER) / RECORD);
            dst.check_invariants();
            prop_assert_eq!(dst.export(at), bytes.clone());
            for id in dst.ids() {
                let c = dst.get(id);
                let o = src.get(src.find(c.key()).unwrap());
                prop_assert_eq!((c.state, c.origin, c.origin_lo, c.seq_end, c.max_win, c.wscale, c.seen, c.fin),
                                (o.state, o.origin, o.origin_lo, o.seq_end, o.max_win, o.wscale, o.seen, o.fin));
            }
            // `decode` + `import` agree with `import_bytes`.
            let mut other = ConnTable::new(64);
            prop_assert_eq!(other.import(ConnTable::decode(&bytes, at).unwrap(), at, |_| true), Ok(n));
            prop_assert_eq!(other.export(at), bytes);
        }

        /// Random bytes, and exports with bytes changed, cut or added: never a panic; on
        /// error nothing changed; on success the table is sound and within its size.
        #[test]
        fn hostile_imports_never_panic_and_fail_cleanly(
            (seed, bytes) in proptest::collection::vec(conn_strategy(), 0..12)
                .prop_flat_map(|c| { let b = build_table(&c, 16, 10 * NS).export(10 * NS); (Just(c), prop_oneof![mutated(b), proptest::collection::vec(any::<u8>(), 0..200)]) }),
            keep_mask in any::<u64>(),
        ) {
            let now = 10 * NS;
            let mut dst = build_table(&seed[..seed.len() / 2], 8, now);
            let before = (dst.export(now), dst.stats(), dst.len());
            // Asked twice per record, the filter answers from the record alone, as a
            // ruleset does.
            let keep_by_key = |c: &Conn| (c.key.lo_port ^ c.key.hi_port) as u64 & 63 != keep_mask & 63;
            match dst.import_bytes(&bytes, now, keep_by_key) {
                Err(_) => prop_assert_eq!((dst.export(now), dst.stats(), dst.len()), before),
                Ok(n) => {
                    dst.check_invariants();
                    prop_assert!(dst.len() <= dst.max());
                    prop_assert!(n <= (bytes.len() - HEADER) / RECORD);
                }
            }
            let _ = ConnTable::decode(&bytes, now);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8),
        Remove(u8),
        Touch(u8, u8),
        Advance(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (any::<u8>(), 0u8..4).prop_map(|(a, p)| Op::Insert(a, p)),
            any::<u8>().prop_map(Op::Remove),
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Op::Touch(a, b)),
            (0u16..3000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random inserts, removals, refreshes and clock jumps keep the table consistent:
        /// bounded, every live entry findable and in exactly one wheel slot, expired entries
        /// collected once their slot is due, live ones never collected.
        #[test]
        fn conntrack_invariants(ops in proptest::collection::vec(op(), 1..200)) {
            let t = Timeouts { udp_first: Duration::from_millis(1500), tcp_syn_sent: Duration::from_secs(700), ..Timeouts::default() };
            let mut ct = ConnTable::new(32);
            let mut now = 10 * NS;
            let mut model: std::collections::HashMap<FlowKey, u64> = Default::default();
            for o in ops {
                match o {
                    Op::Insert(a, p) => {
                        let mut f = udp(a as u32, 1000, 1, 2);
                        f.proto = [PROTO_UDP, PROTO_TCP, 47, PROTO_ICMP][p as usize];
                        let c = Conn::new(&f, Direction::Out, now, &t);
                        let k = c.key;
                        if let Some(id) = ct.find(&k) { ct.remove(id); model.remove(&k); }
                        let exp = c.expires;
                        if ct.insert(c, now).is_ok() { model.insert(k, exp); } else { prop_assert_eq!(model.len(), 32); }
                    }
                    Op::Remove(a) => {
                        let ids = ct.ids();
                        if !ids.is_empty() {
                            let id = ids[a as usize % ids.len()];
                            model.remove(ct.get(id).key());
                            ct.remove(id);
                        }
                    }
                    Op::Touch(a, b) => {
                        let ids = ct.ids();
                        if !ids.is_empty() {
                            let id = ids[a as usize % ids.len()];
                            let e = now + b as u64 * NS / 4;
                            ct.get_mut(id).expires = e;
                            ct.reschedule(id);
                            model.insert(*ct.get(id).key(), e);
                        }
                    }
                    Op::Advance(ms) => {
                        now += ms as u64 * 1_000_000;
                        ct.gc(now, usize::MAX);
                        // Everything whose deadline is more than a slot in the past is gone;
                        // nothing alive was freed.
                        for (k, &e) in &model {
                            let present = ct.find(k).is_some();
                            if e > now { prop_assert!(present, "live entry collected"); }
                            if e + NS <= now { prop_assert!(!present, "expired entry kept"); }
                        }
                        model.retain(|k, _| ct.find(k).is_some());
                    }
                }
                ct.check_invariants();
                prop_assert_eq!(ct.len(), model.len());
            }
        }
    }
}

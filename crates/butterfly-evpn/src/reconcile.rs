//! What the data plane gets from what zebra installed, and when.
//!
//! The [`Reconciler`] keeps two views per VNI: what the mirror holds now (fed with
//! [`Change`]s) and what the data plane was given ([`Op`]s). [`Reconciler::plan`] brings the
//! second towards the first:
//!
//! - a new or moved remote MAC, a new flood VTEP or IP binding is given at once (a MAC that
//!   moves to another VTEP is replaced: zebra installs the route that won, RFC 7432 §15 —
//!   the higher MAC-mobility sequence number);
//! - something that left the mirror is taken away only once it has been gone for
//!   `settle`, **and** FRR has been running for `grace` since it last (re)started. When
//!   bgpd or zebra stops, zebra empties the mirror (or the entries just stop changing): the
//!   data plane keeps what it had, so traffic to known MACs keeps flowing; when FRR is back,
//!   what it re-installs is kept and what it does not is removed after `grace`.
//!
//! Every table is bounded ([`Policy`]): what does not fit is refused and counted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::kernel::{Change, Entry};
use crate::Mac;

/// Timers and bounds.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long an entry must be gone from the mirror before the data plane loses it.
    pub settle: Duration,
    /// How long FRR must have run since it (re)started before anything is removed.
    pub grace: Duration,
    /// VNIs at most.
    pub max_vnis: usize,
    /// Remote MACs per VNI at most (the VTEP's per-VNI table holds 4096 by default).
    pub max_macs: usize,
    /// Flood VTEPs per VNI at most.
    pub max_flood: usize,
    /// Remote IP bindings per VNI at most.
    pub max_ips: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            settle: Duration::from_millis(500),
            grace: Duration::from_secs(30),
            max_vnis: 4096,
            max_macs: 4096,
            max_flood: 1024,
            max_ips: 8192,
        }
    }
}

/// The remote state of one VNI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteVni {
    /// Remote MAC → its VTEP.
    pub macs: BTreeMap<Mac, IpAddr>,
    /// Remote VTEPs serving the VNI.
    pub flood: BTreeSet<IpAddr>,
    /// Remote IP → MAC.
    pub ips: BTreeMap<IpAddr, Mac>,
}

impl RemoteVni {
    fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.flood.is_empty() && self.ips.is_empty()
    }
}

/// A change for the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Pin remote `mac` behind `vtep` (static: never aged, never moved by learning).
    SetMac {
        /// VNI.
        vni: u32,
        /// MAC.
        mac: Mac,
        /// Remote VTEP.
        vtep: IpAddr,
    },
    /// Forget remote `mac`.
    DelMac {
        /// VNI.
        vni: u32,
        /// MAC.
        mac: Mac,
    },
    /// The VNI's flood list becomes `flood`.
    SetFlood {
        /// VNI.
        vni: u32,
        /// Remote VTEPs, sorted.
        flood: Vec<IpAddr>,
    },
    /// Remote `ip` is at `mac` (for ARP/ND suppression).
    SetIp {
        /// VNI.
        vni: u32,
        /// IP.
        ip: IpAddr,
        /// MAC.
        mac: Mac,
    },
    /// Forget remote `ip`.
    DelIp {
        /// VNI.
        vni: u32,
        /// IP.
        ip: IpAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Mac(u32, Mac),
    Flood(u32, IpAddr),
    Ip(u32, IpAddr),
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct Reconciler {
    policy: Policy,
    kernel: BTreeMap<u32, RemoteVni>,
    applied: BTreeMap<u32, RemoteVni>,
    /// Since when each applied entry has been missing from the mirror.
    missing: HashMap<Key, Instant>,
    /// Since when FRR has been running (`None`: down).
    frr_since: Option<Instant>,
    refused: u64,
}

impl Reconciler {
    /// An empty reconciler; FRR is taken as down until [`set_frr`](Self::set_frr).
    pub fn new(policy: Policy) -> Reconciler {
        Reconciler {
            policy,
            kernel: BTreeMap::new(),
            applied: BTreeMap::new(),
            missing: HashMap::new(),
            frr_since: None,
            refused: 0,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// FRR's state: `Some(t)` running since `t` (a restart moves `t`), `None` down.
    pub fn set_frr(&mut self, since: Option<Instant>) {
        self.frr_since = since;
    }

    /// Since when FRR has been running, if it is.
    pub fn frr_since(&self) -> Option<Instant> {
        self.frr_since
    }

    /// Entries refused because a table was full.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// What the mirror holds for `vni`.
    pub fn kernel(&self, vni: u32) -> Option<&RemoteVni> {
        self.kernel.get(&vni)
    }

    /// What the data plane was given for `vni`.
    pub fn applied(&self, vni: u32) -> Option<&RemoteVni> {
        self.applied.get(&vni)
    }

    /// Entries held in the data plane although gone from the mirror.
    pub fn held(&self) -> usize {
        self.missing.len()
    }

    /// Records a change of the mirror (bounded: what does not fit is counted and dropped).
    pub fn change(&mut self, c: Change) {
        let p = &self.policy;
        let vni = match c {
            Change::Add(e) | Change::Del(e) => match e {
                Entry::RemoteMac { vni, .. } | Entry::Flood { vni, .. } | Entry::RemoteIp { vni, .. } => vni,
            },
        };
        if !self.kernel.contains_key(&vni) {
            if matches!(c, Change::Del(_)) {
                return;
            }
            if self.kernel.len() >= p.max_vnis {
                self.refused += 1;
                return;
            }
        }
        let k = self.kernel.entry(vni).or_default();
        match c {
            Change::Add(Entry::RemoteMac { mac, vtep, .. }) => {
                if k.macs.len() >= p.max_macs && !k.macs.contains_key(&mac) {
                    self.refused += 1;
                } else {
                    k.macs.insert(mac, vtep);
                }
            }
            Change::Del(Entry::RemoteMac { mac, vtep, .. }) => {
                // Only the entry it names: a replaced entry's old VTEP must not remove the new.
                if k.macs.get(&mac) == Some(&vtep) {
                    k.macs.remove(&mac);
                }
            }
            Change::Add(Entry::Flood { vtep, .. }) => {
                if k.flood.len() >= p.max_flood && !k.flood.contains(&vtep) {
                    self.refused += 1;
                } else {
                    k.flood.insert(vtep);
                }
            }
            Change::Del(Entry::Flood { vtep, .. }) => {
                k.flood.remove(&vtep);
            }
            Change::Add(Entry::RemoteIp { ip, mac, .. }) => {
                if k.ips.len() >= p.max_ips && !k.ips.contains_key(&ip) {
                    self.refused += 1;
                } else {
                    k.ips.insert(ip, mac);
                }
            }
            Change::Del(Entry::RemoteIp { ip, mac, .. }) => {
                if mac == [0; 6] || k.ips.get(&ip) == Some(&mac) {
                    k.ips.remove(&ip);
                }
            }
        }
        if k.is_empty() {
            self.kernel.remove(&vni);
        }
    }

    /// Replaces the mirror view of `vnis` with `entries` (after a dump: at start, or when
    /// events were lost). Other VNIs are left alone.
    pub fn reset(&mut self, vnis: &BTreeSet<u32>, entries: impl IntoIterator<Item = Entry>) {
        self.kernel.retain(|v, _| !vnis.contains(v));
        for e in entries {
            self.change(Change::Add(e));
        }
    }

    /// The VNI is no longer mirrored: its views are dropped and the data plane loses what it
    /// was given (remote MACs and IPs; the flood list is the caller's, as the VNI changes
    /// mode or goes away).
    pub fn forget(&mut self, vni: u32) -> Vec<Op> {
        self.kernel.remove(&vni);
        self.missing
            .retain(|k, _| !matches!(k, Key::Mac(v, _) | Key::Flood(v, _) | Key::Ip(v, _) if *v == vni));
        let Some(a) = self.applied.remove(&vni) else { return Vec::new() };
        let mut ops: Vec<Op> = a.macs.keys().map(|&mac| Op::DelMac { vni, mac }).collect();
        ops.extend(a.ips.keys().map(|&ip| Op::DelIp { vni, ip }));
        ops
    }

    /// Everything the data plane was given for `vni`, again (its VTEP VNI was recreated).
    pub fn replay(&self, vni: u32) -> Vec<Op> {
        let Some(a) = self.applied.get(&vni) else { return vec![Op::SetFlood { vni, flood: Vec::new() }] };
        let mut ops = vec![Op::SetFlood { vni, flood: a.flood.iter().copied().collect() }];
        ops.extend(a.macs.iter().map(|(&mac, &vtep)| Op::SetMac { vni, mac, vtep }));
        ops.extend(a.ips.iter().map(|(&ip, &mac)| Op::SetIp { vni, ip, mac }));
        ops
    }

    /// When [`plan`](Self::plan) may next have something to remove (None: nothing held).
    pub fn next_due(&self) -> Option<Instant> {
        let first = self.missing.values().min()?;
        let settled = *first + self.policy.settle;
        Some(match self.frr_since {
            Some(t) => settled.max(t + self.policy.grace),
            None => settled.max(Instant::now() + Duration::from_secs(1)),
        })
    }

    /// The operations that bring the data plane to the mirror at `now` (see the module).
    pub fn plan(&mut self, now: Instant) -> Vec<Op> {
        let frr_ok = self.frr_since.is_some_and(|t| now >= t + self.policy.grace);
        let settle = self.policy.settle;
        let mut ops = Vec::new();
        let vnis: BTreeSet<u32> = self.kernel.keys().chain(self.applied.keys()).copied().collect();
        let empty = RemoteVni::default();
        for vni in vnis {
            let k = self.kernel.get(&vni).unwrap_or(&empty);
            let a = self.applied.entry(vni).or_default();
            let missing = &mut self.missing;
            // May an applied entry that the mirror lacks go now?
            let mut may_go = |key: Key| {
                let since = *missing.entry(key).or_insert(now);
                let go = frr_ok && now >= since + settle;
                if go {
                    missing.remove(&key);
                }
                go
            };
            for (&mac, &vtep) in &k.macs {
                if a.macs.get(&mac) != Some(&vtep) {
                    a.macs.insert(mac, vtep);
                    ops.push(Op::SetMac { vni, mac, vtep });
                }
            }
            let gone: Vec<Mac> = a.macs.keys().filter(|m| !k.macs.contains_key(*m)).copied().collect();
            for mac in gone {
                if may_go(Key::Mac(vni, mac)) {
                    a.macs.remove(&mac);
                    ops.push(Op::DelMac { vni, mac });
                }
            }
            let mut flood = k.flood.clone();
            for &vtep in a.flood.difference(&k.flood) {
                if !may_go(Key::Flood(vni, vtep)) {
                    flood.insert(vtep);
                }
            }
            if flood != a.flood {
                a.flood = flood;
                ops.push(Op::SetFlood { vni, flood: a.flood.iter().copied().collect() });
            }
            for (&ip, &mac) in &k.ips {
                if a.ips.get(&ip) != Some(&mac) {
                    a.ips.insert(ip, mac);
                    ops.push(Op::SetIp { vni, ip, mac });
                }
            }
            let gone: Vec<IpAddr> = a.ips.keys().filter(|i| !k.ips.contains_key(*i)).copied().collect();
            for ip in gone {
                if may_go(Key::Ip(vni, ip)) {
                    a.ips.remove(&ip);
                    ops.push(Op::DelIp { vni, ip });
                }
            }
            // Entries back in the mirror are no longer missing.
            let k_macs = &k.macs;
            let k_flood = &k.flood;
            let k_ips = &k.ips;
            self.missing.retain(|key, _| match key {
                Key::Mac(v, m) if *v == vni => !k_macs.contains_key(m),
                Key::Flood(v, f) if *v == vni => !k_flood.contains(f),
                Key::Ip(v, i) if *v == vni => !k_ips.contains_key(i),
                _ => true,
            });
            if a.is_empty() {
                self.applied.remove(&vni);
            }
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: Mac = [0x52, 0x54, 0, 0, 0, 1];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn policy() -> Policy {
        Policy {
            settle: Duration::from_millis(500),
            grace: Duration::from_secs(10),
            max_macs: 2,
            ..Policy::default()
        }
    }

    fn up_long_ago(r: &mut Reconciler, now: Instant) {
        r.set_frr(Some(now - Duration::from_secs(3600)));
    }

    #[test]
    fn additions_go_at_once_and_withdrawals_after_settling() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(policy());
        up_long_ago(&mut r, t0);
        let a = ip("198.18.0.2");
        r.change(Change::Add(Entry::Flood { vni: 7, vtep: a }));
        r.change(Change::Add(Entry::RemoteMac { vni: 7, mac: M1, vtep: a }));
        r.change(Change::Add(Entry::RemoteIp { vni: 7, ip: ip("10.0.0.1"), mac: M1 }));
        let ops = r.plan(t0);
        assert_eq!(
            ops,
            vec![
                Op::SetMac { vni: 7, mac: M1, vtep: a },
                Op::SetFlood { vni: 7, flood: vec![a] },
                Op::SetIp { vni: 7, ip: ip("10.0.0.1"), mac: M1 }
            ]
        );
        assert!(r.plan(t0).is_empty(), "nothing twice");
        r.change(Change::Del(Entry::RemoteMac { vni: 7, mac: M1, vtep: a }));
        assert!(r.plan(t0).is_empty(), "not before settling");
        assert_eq!(r.held(), 1);
        assert_eq!(r.plan(t0 + Duration::from_millis(600)), vec![Op::DelMac { vni: 7, mac: M1 }]);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_move_replaces_and_a_late_withdrawal_of_the_old_vtep_changes_nothing() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(policy());
        up_long_ago(&mut r, t0);
        let (a, b) = (ip("198.18.0.2"), ip("198.18.0.3"));
        r.change(Change::Add(Entry::RemoteMac { vni: 7, mac: M1, vtep: a }));
        r.plan(t0);
        r.change(Change::Add(Entry::RemoteMac { vni: 7, mac: M1, vtep: b }));
        r.change(Change::Del(Entry::RemoteMac { vni: 7, mac: M1, vtep: a }));
        assert_eq!(r.plan(t0), vec![Op::SetMac { vni: 7, mac: M1, vtep: b }]);
        assert!(r.plan(t0 + Duration::from_secs(5)).is_empty());
        // Withdrawn then advertised again before settling: never removed.
        r.change(Change::Del(Entry::RemoteMac { vni: 7, mac: M1, vtep: b }));
        assert!(r.plan(t0).is_empty());
        r.change(Change::Add(Entry::RemoteMac { vni: 7, mac: M1, vtep: b }));
        assert!(r.plan(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn while_frr_is_down_or_restarting_nothing_is_removed() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(policy());
        up_long_ago(&mut r, t0);
        let (a, b) = (ip("198.18.0.2"), ip("198.18.0.3"));
        for vtep in [a, b] {
            r.change(Change::Add(Entry::Flood { vni: 7, vtep }));
        }
        r.change(Change::Add(Entry::RemoteMac { vni: 7, mac: M1, vtep: a }));
        r.plan(t0);
        // bgpd dies: zebra empties the mirror. FRR is seen down.
        r.reset(&BTreeSet::from([7]), []);
        r.set_frr(None);
        for s in [1, 5, 60] {
            assert!(r.plan(t0 + Duration::from_secs(s)).is_empty(), "held at {s} s");
        }
        assert_eq!(r.applied(7).unwrap().macs.len(), 1);
        // FRR is back at t=100 and re-installs only b's flood entry.
        let back = t0 + Duration::from_secs(100);
        r.set_frr(Some(back));
        r.change(Change::Add(Entry::Flood { vni: 7, vtep: b }));
        assert!(r.plan(back + Duration::from_secs(5)).is_empty(), "within the grace");
        assert!(r.next_due().unwrap() >= back + Duration::from_secs(10));
        let ops = r.plan(back + Duration::from_secs(11));
        assert!(ops.contains(&Op::DelMac { vni: 7, mac: M1 }), "{ops:?}");
        assert!(ops.contains(&Op::SetFlood { vni: 7, flood: vec![b] }), "{ops:?}");
        assert_eq!(r.held(), 0);
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn tables_are_bounded_and_forgetting_a_vni_takes_its_entries_away() {
        let t0 = Instant::now();
        let mut r = Reconciler::new(policy());
        up_long_ago(&mut r, t0);
        let a = ip("198.18.0.2");
        for i in 0..5u8 {
            r.change(Change::Add(Entry::RemoteMac { vni: 9, mac: [2, 0, 0, 0, 0, i], vtep: a }));
        }
        assert_eq!(r.refused(), 3);
        assert_eq!(r.plan(t0).len(), 2);
        assert_eq!(r.replay(9).len(), 3, "the flood list and both MACs");
        let ops = r.forget(9);
        assert_eq!(ops.len(), 2);
        assert!(ops.iter().all(|o| matches!(o, Op::DelMac { vni: 9, .. })));
        assert!(r.plan(t0).is_empty());
        assert_eq!(r.kernel(9), None);
        // A withdrawal for an unknown VNI creates nothing.
        r.change(Change::Del(Entry::Flood { vni: 10, vtep: a }));
        assert_eq!(r.kernel(10), None);
    }
}

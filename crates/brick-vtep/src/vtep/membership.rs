//! Underlay multicast membership (IGMP/MLD): the groups the VNIs flood to, joined once
//! however many VNIs share them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use brick_core::Timestamp;

/// How long after a join its unsolicited report is repeated (RFC 3376 §5.1 robustness).
const REPORT_REPEAT: Duration = Duration::from_secs(1);

/// The multicast groups joined on the underlay, each counted by the VNIs using it.
#[derive(Debug, Default)]
pub(super) struct Membership {
    joined: HashMap<IpAddr, u32>,
    /// When the reports of the last join are to be sent again.
    report_again: Option<Timestamp>,
}

impl Membership {
    /// One more VNI uses `group`. True when that joins it: a report is due now, and again
    /// one `REPORT_REPEAT` after `now` (see [`Membership::report_due`]).
    pub(super) fn join(&mut self, group: IpAddr, now: Timestamp) -> bool {
        let n = self.joined.entry(group).or_insert(0);
        *n += 1;
        if *n > 1 {
            return false;
        }
        self.report_again = Some(now.saturating_add(REPORT_REPEAT));
        true
    }

    /// One VNI fewer uses `group`. True when that was the last one: a leave is due.
    pub(super) fn leave(&mut self, group: IpAddr) -> bool {
        let Some(n) = self.joined.get_mut(&group) else { return false };
        *n -= 1;
        if *n > 0 {
            return false;
        }
        self.joined.remove(&group);
        true
    }

    /// Whether `group` is joined.
    #[inline]
    pub(super) fn contains(&self, group: IpAddr) -> bool {
        self.joined.contains_key(&group)
    }

    /// The joined groups, sorted.
    pub(super) fn groups(&self) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self.joined.keys().copied().collect();
        v.sort();
        v
    }

    /// How many groups are joined.
    pub(super) fn len(&self) -> usize {
        self.joined.len()
    }

    /// Whether the repeat of the last join's reports is due at `now`; true once.
    pub(super) fn report_due(&mut self, now: Timestamp) -> bool {
        if self.report_again.is_some_and(|t| now >= t) {
            self.report_again = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_group_is_joined_once_and_left_with_its_last_vni() {
        let mut m = Membership::default();
        let now = Timestamp::now();
        assert!(m.join(ip("239.1.1.1"), now));
        assert!(!m.join(ip("239.1.1.1"), now));
        assert!(m.contains(ip("239.1.1.1")));
        assert!(!m.leave(ip("239.1.1.1")));
        assert!(m.contains(ip("239.1.1.1")));
        assert!(m.leave(ip("239.1.1.1")));
        assert!(!m.contains(ip("239.1.1.1")));
        assert_eq!(m.len(), 0);
        // Leaving a group never joined changes nothing.
        assert!(!m.leave(ip("239.1.1.1")));
    }

    #[test]
    fn groups_are_sorted() {
        let mut m = Membership::default();
        let now = Timestamp::now();
        for g in ["239.9.9.9", "230.0.0.1", "239.1.1.1"] {
            m.join(ip(g), now);
        }
        assert_eq!(m.groups(), vec![ip("230.0.0.1"), ip("239.1.1.1"), ip("239.9.9.9")]);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_join_report_is_repeated_once_after_a_second() {
        let mut m = Membership::default();
        let now = Timestamp::now();
        assert!(!m.report_due(now));
        m.join(ip("ff05::1"), now);
        assert!(!m.report_due(now));
        let later = now.saturating_add(REPORT_REPEAT);
        assert!(m.report_due(later));
        assert!(!m.report_due(later));
        // A second VNI on the same group sends nothing and schedules nothing.
        m.join(ip("ff05::1"), now);
        assert!(!m.report_due(later));
    }
}

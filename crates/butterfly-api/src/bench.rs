//! Figures of a BENCH NIC, as nic_stats reports them (butterfly-rs extension).

use crate::pb::message_v0 as v0;
use serde::{Deserialize, Serialize};

/// What a BENCH NIC sent, received and measured. Durations in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BenchStats {
    /// `ICMP_SND_LIKE` or `ICMP_RCV_LIKE`.
    pub btype: String,
    /// Sender: echo requests sent. Responder: replies sent.
    pub sent: u64,
    /// Sender: replies matched to a request. Responder: requests received.
    pub received: u64,
    /// Sender: requests without a reply within the timeout.
    pub lost: u64,
    /// Sender: requests not sent for want of a packet buffer.
    pub no_buffer: u64,
    /// Sender: min, mean and max round trip of every reply so far.
    pub rtt_ns: Option<[u64; 3]>,
    /// Sender: replies per window.
    pub window_size: u64,
    /// Sender: complete windows so far.
    pub windows: u64,
    /// Sender: mean of the window means, lowest and highest window mean.
    pub window_means_ns: Option<[u64; 3]>,
    /// Sender: min, mean and max of the last complete window.
    pub last_window_ns: Option<[u64; 3]>,
    /// Sender: means of the last complete windows, oldest first.
    pub recent_window_means_ns: Vec<u64>,
}

impl From<&BenchStats> for v0::BenchStats {
    fn from(b: &BenchStats) -> v0::BenchStats {
        let at = |a: Option<[u64; 3]>, i: usize| a.map(|a| a[i]);
        v0::BenchStats {
            btype: Some(b.btype.clone()),
            sent: Some(b.sent),
            received: Some(b.received),
            lost: Some(b.lost),
            rtt_min_ns: at(b.rtt_ns, 0),
            rtt_mean_ns: at(b.rtt_ns, 1),
            rtt_max_ns: at(b.rtt_ns, 2),
            window_size: (b.window_size > 0).then_some(b.window_size),
            windows: Some(b.windows),
            window_mean_ns: at(b.window_means_ns, 0),
            window_best_ns: at(b.window_means_ns, 1),
            window_worst_ns: at(b.window_means_ns, 2),
            last_window_min_ns: at(b.last_window_ns, 0),
            last_window_mean_ns: at(b.last_window_ns, 1),
            last_window_max_ns: at(b.last_window_ns, 2),
            recent_window_mean_ns: b.recent_window_means_ns.clone(),
            no_buffer: Some(b.no_buffer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_figures_stay_absent_on_the_wire() {
        let rcv = BenchStats { btype: "ICMP_RCV_LIKE".into(), sent: 3, received: 3, ..Default::default() };
        let pb = v0::BenchStats::from(&rcv);
        assert_eq!((pb.sent, pb.received), (Some(3), Some(3)));
        assert!(pb.rtt_min_ns.is_none() && pb.window_mean_ns.is_none() && pb.window_size.is_none());
        let snd = BenchStats {
            rtt_ns: Some([1, 2, 3]),
            window_means_ns: Some([4, 5, 6]),
            last_window_ns: Some([7, 8, 9]),
            recent_window_means_ns: vec![5, 6],
            window_size: 1024,
            ..rcv
        };
        let pb = v0::BenchStats::from(&snd);
        assert_eq!((pb.rtt_min_ns, pb.rtt_mean_ns, pb.rtt_max_ns), (Some(1), Some(2), Some(3)));
        assert_eq!((pb.window_mean_ns, pb.window_best_ns, pb.window_worst_ns), (Some(4), Some(5), Some(6)));
        assert_eq!(pb.last_window_max_ns, Some(9));
        assert_eq!(pb.recent_window_mean_ns, vec![5, 6]);
    }
}

//! BENCH NICs: brick-core's ping bricks as a NIC's endpoint, where a VM would be, so that
//! what they measure is the daemon's own path (firewall, anti-spoofing, switch, VTEP).
//!
//! `ICMP_SND_LIKE` sends echo requests from the NIC's MAC and its first IP of `dip`'s
//! family to `dip`/`dmac`, one in flight at a time and at most one per millisecond:
//! Butterfly sent one per poll round, which keeps a core busy for as long as the NIC
//! exists; one in flight also keeps requests from queueing behind each other, so each
//! round trip is the path's and not the sender's backlog. `ICMP_RCV_LIKE` answers echo
//! requests sent to its MAC and any of its IPs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use brick_core::bricks::ping::{PingConfig, PingError, PingResponder, PingSender, PingStats, DEFAULT_WINDOW};
use brick_core::{Brick, PacketPool};
use butterfly_api::{Bench, BenchStats, NicInfo};

/// The API name of the sender role.
pub const SND: &str = "ICMP_SND_LIKE";
/// The API name of the responder role.
pub const RCV: &str = "ICMP_RCV_LIKE";

/// Time between two requests of a sender, at least.
pub const INTERVAL: Duration = Duration::from_millis(1);
/// How long a sender's request waits for its reply before it counts as lost.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// What the daemon keeps of a BENCH NIC's endpoint: its role and its figures.
#[derive(Debug, Clone)]
pub struct BenchHandle {
    btype: &'static str,
    window: u32,
    stats: Arc<PingStats>,
}

impl BenchHandle {
    /// The figures, as nic_stats reports them.
    pub fn report(&self) -> BenchStats {
        let s = self.stats.snapshot();
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let three =
            |a: Option<Duration>, b: Option<Duration>, c: Option<Duration>| Some([ns(a?), ns(b?), ns(c?)]);
        BenchStats {
            btype: self.btype.to_string(),
            sent: s.sent,
            received: s.received,
            lost: s.lost,
            no_buffer: s.no_buffer,
            rtt_ns: s.rtt.map(|r| [ns(r.min), ns(r.mean), ns(r.max)]),
            window_size: u64::from(self.window),
            windows: s.windows,
            window_means_ns: three(s.mean_of_window_means, s.best_window_mean, s.worst_window_mean),
            last_window_ns: s.last_window.map(|r| [ns(r.min), ns(r.mean), ns(r.max)]),
            recent_window_means_ns: s.recent_window_means.iter().map(|&d| ns(d)).collect(),
        }
    }
}

/// Why a BENCH NIC's endpoint cannot be built: what its parameters lack.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The NIC has no IP to answer on or send from.
    #[error("a BENCH NIC needs an IP")]
    NoIp,
    /// The sender has no IP of its destination's family.
    #[error("{SND} to {dip} needs an {} address on the NIC to send from", if dip.is_ipv4() { "IPv4" } else { "IPv6" })]
    NoSourceIp {
        /// The destination.
        dip: IpAddr,
    },
    /// The ping sender refused its configuration.
    #[error("{SND}: {0}")]
    Sender(#[source] PingError),
    /// The NIC has no btype.
    #[error("a BENCH NIC needs btype {SND} or {RCV}")]
    NoBtype,
}

/// The endpoint brick of BENCH NIC `info`, and its handle. The error says what is missing.
pub fn endpoint(info: &NicInfo, pool: &PacketPool) -> Result<(Box<dyn Brick>, BenchHandle), BenchError> {
    let spec = &info.spec;
    let mac = spec.mac.octets();
    // nic_add refuses these already; a nic_update may have taken the IPs away since.
    if spec.ips.is_empty() {
        return Err(BenchError::NoIp);
    }
    match &spec.bench {
        Some(Bench::IcmpSndLike { dip, dmac }) => {
            let ip = source_ip(&spec.ips, *dip).ok_or(BenchError::NoSourceIp { dip: *dip })?;
            let cfg = PingConfig {
                interval: INTERVAL,
                timeout: TIMEOUT,
                ..PingConfig::new(mac, ip, dmac.octets(), *dip)
            };
            let window = cfg.window;
            let sender = PingSender::new(cfg, pool.clone()).map_err(BenchError::Sender)?;
            let handle = BenchHandle { btype: SND, window, stats: sender.stats() };
            Ok((Box::new(sender), handle))
        }
        Some(Bench::IcmpRcvLike) => {
            let responder = PingResponder::new(mac, spec.ips.clone());
            let handle = BenchHandle { btype: RCV, window: DEFAULT_WINDOW, stats: responder.stats() };
            Ok((Box::new(responder), handle))
        }
        None => Err(BenchError::NoBtype),
    }
}

/// The NIC's first IP of `dip`'s family.
fn source_ip(ips: &[IpAddr], dip: IpAddr) -> Option<IpAddr> {
    ips.iter().copied().find(|ip| ip.is_ipv4() == dip.is_ipv4())
}

#[cfg(test)]
mod tests {
    use super::*;
    use butterfly_api::{NicSpec, NicType};

    fn info(ips: &[&str], bench: Option<Bench>) -> NicInfo {
        let spec = NicSpec {
            id: "b".into(),
            mac: "52:54:00:12:34:01".parse().unwrap(),
            vni: 42,
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            security_groups: vec![],
            ip_anti_spoof: false,
            sniff_target_nic_id: None,
            bypass_filtering: false,
            nic_type: NicType::Bench,
            packet_trace: None,
            packet_trace_path: None,
            bench,
            link_local: vec![],
            vhost_user_client: false,
        };
        NicInfo { spec, path: "(nil)".into(), packet_trace: false, packet_trace_path: String::new() }
    }

    fn snd(dip: &str) -> Option<Bench> {
        Some(Bench::IcmpSndLike { dip: dip.parse().unwrap(), dmac: "52:54:00:12:34:02".parse().unwrap() })
    }

    #[test]
    fn endpoints_are_built_or_refused_with_the_reason() {
        let pool = PacketPool::with_count(8).unwrap();
        let err = |i: NicInfo| endpoint(&i, &pool).err().unwrap().to_string();
        assert_eq!(err(info(&[], snd("42.0.0.2"))), "a BENCH NIC needs an IP");
        assert!(err(info(&["fd00::1"], snd("42.0.0.2"))).contains("needs an IPv4 address"));
        assert!(err(info(&["42.0.0.1"], snd("fd00::2"))).contains("needs an IPv6 address"));
        assert!(err(info(&["42.0.0.1"], None)).contains("btype"));
        let (b, h) = endpoint(&info(&["fd00::1", "42.0.0.1"], snd("42.0.0.2")), &pool).unwrap();
        assert_eq!(b.kind(), "ping-sender");
        let r = h.report();
        assert_eq!((r.btype.as_str(), r.sent, r.window_size), (SND, 0, 1024));
        assert!(r.rtt_ns.is_none() && r.window_means_ns.is_none());
        let (b, h) = endpoint(&info(&["42.0.0.2"], Some(Bench::IcmpRcvLike)), &pool).unwrap();
        assert_eq!((b.kind(), h.report().btype.as_str()), ("ping-responder", RCV));
    }
}

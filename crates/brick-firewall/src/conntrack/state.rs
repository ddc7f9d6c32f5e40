//! Connection states and their idle timeouts.

use super::*;

/// Per-state idle timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP: SYN seen, no answer yet.
    pub tcp_syn_sent: Duration,
    /// TCP: SYN-ACK seen, waiting for the final ACK.
    pub tcp_syn_recv: Duration,
    /// TCP: established.
    pub tcp_established: Duration,
    /// TCP: one side sent FIN.
    pub tcp_fin_wait: Duration,
    /// TCP: both sides sent FIN.
    pub tcp_closing: Duration,
    /// TCP: reset.
    pub tcp_closed: Duration,
    /// UDP: one direction seen.
    pub udp_first: Duration,
    /// UDP: both directions seen.
    pub udp_multiple: Duration,
    /// ICMP echo: request seen.
    pub icmp_first: Duration,
    /// ICMP echo: reply seen.
    pub icmp_reply: Duration,
    /// Other protocols: one direction seen.
    pub other_first: Duration,
    /// Other protocols: both directions seen.
    pub other_multiple: Duration,
    /// TCP picked up mid-stream (see `FirewallConfig::tcp_pickup`), until the other side
    /// has been seen: then the connection is established like any other.
    pub tcp_pickup: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(30),
            tcp_syn_recv: s(30),
            tcp_established: s(86_400),
            tcp_fin_wait: s(120),
            tcp_closing: s(30),
            tcp_closed: s(10),
            udp_first: s(30),
            udp_multiple: s(120),
            icmp_first: s(10),
            icmp_reply: s(20),
            other_first: s(60),
            other_multiple: s(120),
            tcp_pickup: s(30),
        }
    }
}

/// State of a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnState {
    /// TCP: SYN seen.
    TcpSynSent = 1,
    /// TCP: SYN-ACK seen.
    TcpSynRecv = 2,
    /// TCP: handshake completed.
    TcpEstablished = 3,
    /// TCP: one FIN seen.
    TcpFinWait = 4,
    /// TCP: both FINs seen.
    TcpClosing = 5,
    /// TCP: reset.
    TcpClosed = 6,
    /// UDP: one direction.
    UdpFirst = 10,
    /// UDP: both directions.
    UdpMultiple = 11,
    /// ICMP echo: request.
    IcmpFirst = 20,
    /// ICMP echo: reply seen.
    IcmpReply = 21,
    /// Other protocol: one direction.
    OtherFirst = 30,
    /// Other protocol: both directions.
    OtherMultiple = 31,
}

impl ConnState {
    pub(super) fn from_u8(v: u8) -> Option<ConnState> {
        use ConnState::*;
        Some(match v {
            1 => TcpSynSent,
            2 => TcpSynRecv,
            3 => TcpEstablished,
            4 => TcpFinWait,
            5 => TcpClosing,
            6 => TcpClosed,
            10 => UdpFirst,
            11 => UdpMultiple,
            20 => IcmpFirst,
            21 => IcmpReply,
            30 => OtherFirst,
            31 => OtherMultiple,
            _ => return None,
        })
    }

    /// The state a new connection of `proto` starts in.
    pub fn initial(proto: u8) -> ConnState {
        match proto {
            PROTO_TCP => ConnState::TcpSynSent,
            PROTO_UDP => ConnState::UdpFirst,
            PROTO_ICMP | PROTO_ICMP6 => ConnState::IcmpFirst,
            _ => ConnState::OtherFirst,
        }
    }

    pub(super) fn fits(self, proto: u8) -> bool {
        ConnState::initial(proto) as u8 / 10 == self as u8 / 10
    }

    /// The idle timeout of this state.
    pub fn timeout(self, t: &Timeouts) -> Duration {
        use ConnState::*;
        match self {
            TcpSynSent => t.tcp_syn_sent,
            TcpSynRecv => t.tcp_syn_recv,
            TcpEstablished => t.tcp_established,
            TcpFinWait => t.tcp_fin_wait,
            TcpClosing => t.tcp_closing,
            TcpClosed => t.tcp_closed,
            UdpFirst => t.udp_first,
            UdpMultiple => t.udp_multiple,
            IcmpFirst => t.icmp_first,
            IcmpReply => t.icmp_reply,
            OtherFirst => t.other_first,
            OtherMultiple => t.other_multiple,
        }
    }
}

//! The stateful firewall brick.
//!
//! One west port (towards the network) and one east port (towards the VM). Packets arriving
//! on the west side travel **in** (to the VM), packets arriving on the east side travel
//! **out** (from the VM). Non-IP frames (ARP…) pass; the anti-spoof brick polices them.

use std::time::Duration;

use brick_core::{Brick, Burst, Output, PortId, Side, Timestamp, BURST_SIZE};

use crate::compile::CompiledRuleset;
use crate::conntrack::{Conn, ConnState, ConnTable, FlowKey, ImportError, TcpRefusal, Timeouts};
use crate::frag::{FragKey, FragTable};
use crate::rule::{Action, Direction};
use crate::wire::{self, Flow, Frag, Malformed, Parsed, PROTO_ICMP, PROTO_ICMP6, PROTO_TCP};
use crate::wire::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};
use std::net::IpAddr;

brick_core::drop_reasons! {
    /// Why the firewall dropped a packet; `as usize` indexes [`FIREWALL_DROP_REASONS`].
    pub enum FwDrop {
        /// Truncated Ethernet header.
        MalformedEthernet => "malformed ethernet",
        /// Invalid IPv4 header.
        MalformedIpv4 => "malformed ipv4",
        /// Invalid IPv6 header.
        MalformedIpv6 => "malformed ipv6",
        /// Invalid or too many IPv6 extension headers.
        MalformedIpv6Ext => "malformed ipv6 extension headers",
        /// Truncated transport header (including tiny first fragments).
        MalformedL4 => "truncated transport header",
        /// A `block` rule decided.
        BlockedByRule => "blocked by rule",
        /// No rule matched and the direction's default is block.
        BlockedByDefault => "blocked by default policy",
        /// A TCP packet that is neither part of a tracked connection nor a SYN, decided by a
        /// `keep state` pass rule.
        TcpWithoutState => "tcp without state",
        /// Impossible TCP flag combinations (SYN+FIN, SYN+RST, none of SYN/ACK/RST).
        TcpBadFlags => "tcp bad flags",
        /// A RST outside the receiver's window.
        TcpRstOutOfWindow => "tcp rst out of window",
        /// A new connection found the connection table full.
        ConntrackFull => "conntrack full",
        /// A later fragment whose first fragment was not seen (or was forgotten).
        FragmentWithoutFirst => "fragment without first",
        /// A later fragment of a datagram whose first fragment was blocked.
        FragmentOfBlocked => "fragment of blocked datagram",
        /// Two VLAN tags in a row: the firewall cannot see what they carry.
        StackedVlan => "stacked vlan tags",
    }
}

/// Drop reason names of the firewall brick, in [`FwDrop`] order.
pub const FIREWALL_DROP_REASONS: &[&str] = FwDrop::NAMES;

/// Connections from which a burst's lookups are started ahead (below, the table's lines in
/// use stay in the cache and looking ahead costs more than it saves).
const LOOKAHEAD_MIN_CONNS: usize = 4096;
/// How many frames ahead a lookup's index slot is loaded (its entry: half as far).
const LOOKAHEAD: usize = 6;

impl From<Malformed> for FwDrop {
    fn from(m: Malformed) -> FwDrop {
        match m {
            Malformed::Ethernet => FwDrop::MalformedEthernet,
            Malformed::Ipv4 => FwDrop::MalformedIpv4,
            Malformed::Ipv6 => FwDrop::MalformedIpv6,
            Malformed::Ipv6Ext => FwDrop::MalformedIpv6Ext,
            Malformed::L4 => FwDrop::MalformedL4,
            Malformed::StackedVlan => FwDrop::StackedVlan,
        }
    }
}

/// Firewall settings.
#[derive(Clone, Debug)]
pub struct FirewallConfig {
    /// Most tracked connections (default 65,536). When full, new stateful flows are dropped
    /// and counted as "conntrack full"; established ones are unaffected.
    pub max_connections: usize,
    /// Most fragmented datagrams remembered at once (default 1,024).
    pub max_fragments: usize,
    /// How long a first fragment's verdict is remembered (default 10 s).
    pub fragment_timeout: Duration,
    /// Connection timeouts per state.
    pub timeouts: Timeouts,
    /// Most connection entries visited by one `tick`'s garbage collection (default 65,536);
    /// the rest is left for the next tick.
    pub gc_budget: usize,
    /// Mid-stream TCP pickup (default off: only a SYN opens a TCP connection, as pf's
    /// `flags S/SA`). On, a TCP segment of no tracked connection that has ACK set and
    /// neither SYN nor RST, and that a `keep state` pass rule allows in its direction,
    /// re-creates its connection as established (see [`Conn::picked_up`]) instead of being
    /// dropped as "tcp without state". Meant for a firewall that lost its table (a crashed
    /// process): established sessions recover by themselves at their next segment in an
    /// allowed direction, and nothing the rules forbid is opened, since the rules judge the
    /// segment exactly as they would judge a SYN in its place. The cost: a peer the rules
    /// let open connections can open one with a bare ACK, and a picked-up connection's
    /// windows are unscaled (conservative for RSTs).
    pub tcp_pickup: bool,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            max_connections: 65_536,
            max_fragments: 1024,
            fragment_timeout: Duration::from_secs(10),
            timeouts: Timeouts::default(),
            gc_budget: 65_536,
            tcp_pickup: false,
        }
    }
}

/// Packet counters of a firewall (besides the graph's per-reason drop counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirewallCounters {
    /// Passed as part of a tracked connection.
    pub passed_by_state: u64,
    /// ICMP errors passed because they quote a tracked connection.
    pub passed_related: u64,
    /// Passed by a rule or the default policy.
    pub passed_by_rule: u64,
    /// Non-IP frames passed.
    pub passed_non_ip: u64,
    /// Later fragments passed after their first fragment.
    pub passed_fragments: u64,
    /// TCP connections picked up mid-stream (`FirewallConfig::tcp_pickup`).
    pub picked_up: u64,
}

/// What an import did ([`Firewall::import_connections_of`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Connections imported.
    pub imported: usize,
    /// Connections the current ruleset does not allow, left out.
    pub skipped: usize,
}

/// What [`Firewall::replace_ruleset`] did.
#[derive(Debug)]
pub struct Replaced {
    /// Connections the new ruleset still allows (kept, with their state).
    pub kept: usize,
    /// Connections it no longer allows (removed: their next packet is judged by the new
    /// rules as a new flow).
    pub removed: usize,
    /// The previous ruleset, so it can be dropped off the packet thread.
    pub previous: CompiledRuleset,
}

/// The firewall brick. See the crate documentation for semantics.
pub struct Firewall {
    cfg: FirewallConfig,
    rules: CompiledRuleset,
    conns: ConnTable,
    frags: FragTable,
    counters: FirewallCounters,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall").field("rules", &self.rules).field("conns", &self.conns).finish()
    }
}

#[inline]
fn tracked(f: &Flow) -> bool {
    !(f.proto == PROTO_ICMP || f.proto == PROTO_ICMP6) || f.is_icmp_echo()
}

impl Firewall {
    /// A firewall with an empty ruleset (default block in both directions: only non-IP
    /// frames pass until [`replace_ruleset`](Self::replace_ruleset)).
    pub fn new(cfg: FirewallConfig) -> Firewall {
        let rules = CompiledRuleset::new(crate::Ruleset::default()).expect("the empty ruleset compiles");
        Self::with_ruleset(cfg, rules)
    }

    /// A firewall starting with `rules`.
    pub fn with_ruleset(cfg: FirewallConfig, rules: CompiledRuleset) -> Firewall {
        Firewall {
            conns: ConnTable::new(cfg.max_connections),
            frags: FragTable::new(cfg.max_fragments, cfg.fragment_timeout.as_nanos() as u64),
            cfg,
            rules,
            counters: FirewallCounters::default(),
        }
    }

    /// The current ruleset.
    pub fn ruleset(&self) -> &CompiledRuleset {
        &self.rules
    }

    /// The connection table (read-only).
    pub fn connections(&self) -> &ConnTable {
        &self.conns
    }

    /// Packet counters.
    pub fn counters(&self) -> FirewallCounters {
        self.counters
    }

    /// Fragment table entries evicted early.
    pub fn fragments_evicted(&self) -> u64 {
        self.frags.evicted()
    }

    fn allows(rules: &CompiledRuleset, c: &Conn) -> bool {
        let d = rules.decide(c.origin(), &c.origin_flow());
        d.action == Action::Pass && d.keep_state
    }

    /// Swaps in a new ruleset at once (between two bursts when called through
    /// `GraphHandle::exec`). Each tracked connection is re-judged by the new rules as its
    /// opening packet (origin direction, addresses, ports, protocol; a SYN for TCP, an echo
    /// request for ICMP): connections still passed by a `keep state` rule are kept with their
    /// state; the others are removed, and their next packets are judged as new flows (so a
    /// TCP connection no longer allowed stops: its non-SYN packets are dropped). Costs one
    /// rule lookup per connection.
    pub fn replace_ruleset(&mut self, rules: CompiledRuleset) -> Replaced {
        let before = self.conns.len();
        let removed = self.conns.retain(|c| Self::allows(&rules, c));
        let previous = std::mem::replace(&mut self.rules, rules);
        Replaced { kept: before - removed, removed, previous }
    }

    /// Exports the unexpired connections as bytes (see [`ConnTable::export`]), for live
    /// migration of the VM. A firewall without an unexpired connection exports **no bytes at
    /// all** (not an empty table's header): Butterfly's `nic_export` answered an empty string,
    /// and its clients compare replies byte for byte. [`import_connections`] reads empty
    /// bytes as "no connections".
    ///
    /// [`import_connections`]: Self::import_connections
    pub fn export_connections(&self, now: Timestamp) -> Vec<u8> {
        let now = now.as_nanos();
        if self.conns.ids().into_iter().all(|id| self.conns.get(id).expires() <= now) {
            return Vec::new();
        }
        self.conns.export(now)
    }

    /// Imports connections exported by [`export_connections`](Self::export_connections)
    /// (possibly by another process, so untrusted: see [`ConnTable::import_bytes`]).
    /// Connections the current ruleset does not allow are skipped; entries with the same key
    /// are replaced. All or nothing: on any error (malformed bytes, more connections than
    /// the table has room for) nothing changes. Returns how many were imported.
    pub fn import_connections(&mut self, bytes: &[u8], now: Timestamp) -> Result<usize, ImportError> {
        // What `export_connections` gives for a table without connections.
        if bytes.is_empty() {
            return Ok(0);
        }
        let rules = &self.rules;
        self.conns.import_bytes(bytes, now.as_nanos(), |c| Self::allows(rules, c))
    }

    /// Imports connections exported by [`export_connections`](Self::export_connections) for
    /// a NIC whose addresses are `addrs` (the live migration of a VM, or a restart): like
    /// [`import_connections`](Self::import_connections), and besides, every connection must
    /// have one of `addrs` as an endpoint, else the import fails with
    /// [`ImportError::Foreign`] and nothing changes (the export of another NIC is refused,
    /// not half-imported). Connections the ruleset does not allow are skipped and counted.
    pub fn import_connections_of(
        &mut self,
        bytes: &[u8],
        now: Timestamp,
        addrs: &[IpAddr],
    ) -> Result<ImportSummary, ImportError> {
        let rules = &self.rules;
        let (imported, total) = self.conns.import_bytes_checked(bytes, now.as_nanos(), |n, c| {
            if !addrs.iter().any(|&a| c.key().involves(a)) {
                return Err(ImportError::Foreign { record: n, endpoints: c.key().to_string() });
            }
            Ok(Self::allows(rules, c))
        })?;
        Ok(ImportSummary { imported, skipped: total - imported })
    }

    /// Frees expired connections (also done by `tick`).
    pub fn gc(&mut self, now: Timestamp) -> usize {
        self.conns.gc(now.as_nanos(), self.cfg.gc_budget)
    }

    /// Judges one frame travelling in `dir` at time `now` (nanoseconds of
    /// [`Timestamp`]); `Ok` to forward it.
    #[inline]
    pub fn filter(&mut self, frame: &[u8], dir: Direction, now: u64) -> Result<(), FwDrop> {
        let flow = match wire::parse_frame(frame) {
            Ok(Parsed::Ip(f)) => f,
            Ok(Parsed::NonIp(_)) => {
                self.counters.passed_non_ip += 1;
                return Ok(());
            }
            Err(m) => return Err(m.into()),
        };
        match flow.frag {
            Frag::None => self.judge(&flow, frame, dir, now),
            Frag::Later(id) => match self.frags.lookup(&FragKey::of(&flow, id), now) {
                Some(true) => {
                    self.counters.passed_fragments += 1;
                    Ok(())
                }
                Some(false) => Err(FwDrop::FragmentOfBlocked),
                None => Err(FwDrop::FragmentWithoutFirst),
            },
            Frag::First(id) => {
                let v = self.judge(&flow, frame, dir, now);
                self.frags.record(FragKey::of(&flow, id), v.is_ok(), now);
                v
            }
        }
    }

    #[inline]
    fn judge(&mut self, f: &Flow, frame: &[u8], dir: Direction, now: u64) -> Result<(), FwDrop> {
        let tcp = f.proto == PROTO_TCP;
        if tcp {
            let fl = f.tcp_flags;
            if fl & (TCP_SYN | TCP_FIN) == TCP_SYN | TCP_FIN
                || fl & (TCP_SYN | TCP_RST) == TCP_SYN | TCP_RST
                || fl & (TCP_SYN | TCP_ACK | TCP_RST) == 0
            {
                return Err(FwDrop::TcpBadFlags);
            }
        }
        if f.is_icmp_error() && self.related(f, frame, dir, now) {
            self.counters.passed_related += 1;
            return Ok(());
        }
        let track = tracked(f);
        let mut conflict = false;
        if track {
            let (key, src_lo) = FlowKey::of(f);
            if let Some(id) = self.conns.find(&key) {
                let (expired, orient, state) = {
                    let c = self.conns.get(id);
                    (c.expires() <= now, c.orientation(dir, src_lo), c.state())
                };
                // An echo conversation is requests one way and replies the other: a request
                // coming back (same id) is the peer's own ping, for the rules to judge.
                let echo_mismatch =
                    f.is_icmp_echo() && orient.is_some_and(|fwd| f.is_icmp_echo_request() != fwd);
                if expired {
                    self.conns.remove(id);
                } else if echo_mismatch {
                    conflict = true;
                } else if let Some(fwd) = orient {
                    let restart = tcp
                        && fwd
                        && f.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
                        && matches!(state, ConnState::TcpClosing | ConnState::TcpClosed);
                    if !restart {
                        let c = self.conns.get_mut(id);
                        let before = c.expires();
                        return match c.update(f, fwd, now, &self.cfg.timeouts) {
                            Ok(()) => {
                                // Only a shortened deadline needs the wheel (lazy otherwise).
                                if c.expires() < before {
                                    self.conns.reschedule(id);
                                }
                                self.counters.passed_by_state += 1;
                                Ok(())
                            }
                            Err(TcpRefusal::RstOutOfWindow) => Err(FwDrop::TcpRstOutOfWindow),
                        };
                    }
                    self.conns.remove(id);
                } else {
                    conflict = true;
                }
            }
        }
        let d = self.rules.decide(dir, f);
        if d.action == Action::Block {
            return Err(if d.rule.is_some() { FwDrop::BlockedByRule } else { FwDrop::BlockedByDefault });
        }
        if d.keep_state && track {
            if tcp && f.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
                // Mid-stream: picked up when allowed (the rules passed it in this direction
                // as they would pass a SYN), never a RST or a SYN-ACK, never over an entry of
                // the same addresses seen from the other side.
                let pickable = self.cfg.tcp_pickup && f.tcp_flags & (TCP_SYN | TCP_RST) == 0 && !conflict;
                if !pickable {
                    return Err(FwDrop::TcpWithoutState);
                }
                if self.conns.insert(Conn::picked_up(f, dir, now, &self.cfg.timeouts), now).is_err() {
                    return Err(FwDrop::ConntrackFull);
                }
                self.counters.picked_up += 1;
                self.counters.passed_by_rule += 1;
                return Ok(());
            }
            if !conflict && self.conns.insert(Conn::new(f, dir, now, &self.cfg.timeouts), now).is_err() {
                return Err(FwDrop::ConntrackFull);
            }
        }
        self.counters.passed_by_rule += 1;
        Ok(())
    }

    /// Whether the ICMP error `f` quotes a packet of a tracked connection that its receiver
    /// sent (so it travelled in the other direction).
    fn related(&self, f: &Flow, frame: &[u8], dir: Direction, now: u64) -> bool {
        let Ok(inner) = wire::parse_quoted(frame, f.l4_offset as usize + 8, f.v6) else { return false };
        if inner.src != f.dst {
            return false;
        }
        let (key, src_lo) = FlowKey::of(&inner);
        match self.conns.find(&key) {
            Some(id) => {
                let c = self.conns.get(id);
                c.expires() > now && c.orientation(dir.opposite(), src_lo).is_some()
            }
            None => false,
        }
    }
}

impl Brick for Firewall {
    fn kind(&self) -> &'static str {
        "firewall"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        FIREWALL_DROP_REASONS
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let dir = match side {
            Side::West => Direction::In,
            Side::East => Direction::Out,
        };
        let now = out.now().as_nanos();
        let to = side.opposite();
        // The whole burst is judged before any frame moves: a burst with nothing dropped (the
        // steady state) is handed on whole.
        if self.conns.len() < LOOKAHEAD_MIN_CONNS {
            out.emit_passed(to, 0, pkts, |pkt| self.filter(pkt.data(), dir, now).err().map(|r| r as usize));
            return;
        }
        // Many connections: a lookup's index slot and entry are out of the cache. Each
        // frame's hash is taken first (TCP and UDP over IPv4 or IPv6, read in place; 0:
        // none), then the slot of the frame LOOKAHEAD ahead and the entry of the one half as
        // far are loaded while this one is judged. (The first frames' entries are not: their
        // slots are only on their way.)
        let mut hashes = [0u64; BURST_SIZE];
        for (h, pkt) in hashes.iter_mut().zip(pkts.iter()) {
            *h = FlowKey::of_frame_in_place(pkt.data()).map_or(0, |k| self.conns.hash_of(&k));
        }
        for &h in hashes.iter().take(LOOKAHEAD).filter(|&&h| h != 0) {
            self.conns.prefetch_index(h);
        }
        let mut i = 0;
        out.emit_passed(to, 0, pkts, |pkt| {
            if let Some(&h) = hashes.get(i + LOOKAHEAD).filter(|&&h| h != 0) {
                self.conns.prefetch_index(h);
            }
            if let Some(&h) = hashes.get(i + LOOKAHEAD / 2).filter(|&&h| h != 0) {
                self.conns.prefetch_entry(h);
            }
            i += 1;
            self.filter(pkt.data(), dir, now).err().map(|r| r as usize)
        });
    }

    fn tick(&mut self, now: Timestamp) {
        self.gc(now);
    }

    fn describe(&self) -> Vec<String> {
        let s = self.conns.stats();
        vec![
            format!("rules: {}", self.rules.ruleset().rules.len()),
            format!("connections: {}/{}", self.conns.len(), self.conns.max()),
            format!(
                "created {} expired {} refused {} picked up {}",
                s.created, s.expired, s.refused_full, self.counters.picked_up
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testpkt::*;

    const S: u64 = 1_000_000_000;
    const VM: [u8; 4] = [42, 0, 0, 1];
    const PEER: [u8; 4] = [8, 8, 8, 8];

    fn fw(text: &str) -> Firewall {
        Firewall::with_ruleset(FirewallConfig::default(), CompiledRuleset::parse(text).unwrap())
    }

    const OUT_ONLY: &str = "pass out all keep state\n";

    #[test]
    fn tcp_handshake_replies_and_close() {
        let mut f = fw(OUT_ONLY);
        let t = 10 * S;
        // A reply before any connection is blocked.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 1, 101, TCP_SYN | TCP_ACK), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        // A non-SYN cannot open a connection.
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_ACK), Direction::Out, t),
            Err(FwDrop::TcpWithoutState)
        );
        assert_eq!(f.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_SYN), Direction::Out, t), Ok(()));
        let id = f.conns.ids()[0];
        assert_eq!(f.conns.get(id).state(), ConnState::TcpSynSent);
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 1000, 101, TCP_SYN | TCP_ACK), Direction::In, t),
            Ok(())
        );
        assert_eq!(f.conns.get(id).state(), ConnState::TcpSynRecv);
        assert_eq!(f.filter(&tcp4(VM, PEER, 5000, 80, 101, 1001, TCP_ACK), Direction::Out, t), Ok(()));
        assert_eq!(f.conns.get(id).state(), ConnState::TcpEstablished);
        // The same addresses seen from the wrong side do not ride on the connection.
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 5000, 80, 101, 1001, TCP_ACK), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        // Established timeout, then FINs.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 1001, 101, TCP_ACK | TCP_FIN), Direction::In, t),
            Ok(())
        );
        assert_eq!(f.conns.get(id).state(), ConnState::TcpFinWait);
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 5000, 80, 101, 1002, TCP_ACK | TCP_FIN), Direction::Out, t),
            Ok(())
        );
        assert_eq!(f.conns.get(id).state(), ConnState::TcpClosing);
        // After the closing timeout the table is empty.
        assert_eq!(f.gc(Timestamp(t + 40 * S)), 1);
        assert!(f.conns.is_empty());
        assert_eq!(f.counters().passed_by_state, 4);
    }

    #[test]
    fn sctp_is_tracked_per_port_pair() {
        let mut f = fw(OUT_ONLY);
        let t = 10 * S;
        // The VM opens an association (INIT, chunk type 1) to PEER port 6000.
        assert_eq!(f.filter(&sctp4(VM, PEER, 5000, 6000, 1), Direction::Out, t), Ok(()));
        // Its answer (INIT ACK) rides on the connection.
        assert_eq!(f.filter(&sctp4(PEER, VM, 6000, 5000, 2), Direction::In, t), Ok(()));
        assert_eq!(f.counters().passed_by_state, 1);
        // An association PEER opens from and to other ports is a new flow: blocked (it
        // passed while SCTP was tracked per address pair only).
        assert_eq!(
            f.filter(&sctp4(PEER, VM, 7000, 8000, 1), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        assert_eq!(
            f.filter(&sctp4(PEER, VM, 6000, 5001, 1), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        assert_eq!(f.conns.len(), 1);
    }

    #[test]
    fn rst_handling() {
        let mut f = fw(OUT_ONLY);
        let t = 10 * S;
        f.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_SYN), Direction::Out, t).unwrap();
        // RST answering the SYN must acknowledge it.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 0, 999, TCP_RST | TCP_ACK), Direction::In, t),
            Err(FwDrop::TcpRstOutOfWindow)
        );
        f.filter(&tcp4(PEER, VM, 80, 5000, 1000, 101, TCP_SYN | TCP_ACK), Direction::In, t).unwrap();
        f.filter(&tcp4(VM, PEER, 5000, 80, 101, 1001, TCP_ACK), Direction::Out, t).unwrap();
        // A blind RST far outside the window is refused.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 1001 + 10_000_000, 0, TCP_RST), Direction::In, t),
            Err(FwDrop::TcpRstOutOfWindow)
        );
        assert_eq!(f.filter(&tcp4(PEER, VM, 80, 5000, 1001, 0, TCP_RST), Direction::In, t), Ok(()));
        let id = f.conns.ids()[0];
        assert_eq!(f.conns.get(id).state(), ConnState::TcpClosed);
        // The deadline moved earlier: collected after the closed timeout.
        assert_eq!(f.gc(Timestamp(t + 12 * S)), 1);
        // A new SYN reopens.
        assert_eq!(f.filter(&tcp4(VM, PEER, 5000, 80, 5000, 0, TCP_SYN), Direction::Out, t + 13 * S), Ok(()));
        assert_eq!(f.conns.len(), 1);
        // Bad flag combinations.
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 1, 2, 0, 0, TCP_SYN | TCP_FIN), Direction::Out, t),
            Err(FwDrop::TcpBadFlags)
        );
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 1, 2, 0, 0, TCP_FIN), Direction::Out, t),
            Err(FwDrop::TcpBadFlags)
        );
    }

    #[test]
    fn udp_icmp_and_related_errors() {
        let mut f = fw(OUT_ONLY);
        let t = 10 * S;
        assert_eq!(f.filter(&udp4(VM, PEER, 5353, 53, b"q"), Direction::Out, t), Ok(()));
        assert_eq!(f.filter(&udp4(PEER, VM, 53, 5353, b"r"), Direction::In, t), Ok(()));
        assert_eq!(
            f.filter(&udp4(PEER, VM, 53, 5354, b"r"), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        let id = f.conns.ids()[0];
        assert_eq!(f.conns.get(id).state(), ConnState::UdpMultiple);
        // ICMP port unreachable about our query passes; about another flow it does not.
        let q = udp4(VM, PEER, 5353, 53, b"q");
        assert_eq!(f.filter(&icmp4_error([1, 1, 1, 1], VM, 3, 3, &q), Direction::In, t), Ok(()));
        let other = udp4(VM, PEER, 7777, 53, b"q");
        assert_eq!(
            f.filter(&icmp4_error([1, 1, 1, 1], VM, 3, 3, &other), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        // An error quoting the peer's packet (wrong direction) is not related either.
        let reply = udp4(PEER, VM, 53, 5353, b"r");
        assert_eq!(
            f.filter(&icmp4_error([1, 1, 1, 1], VM, 3, 3, &reply), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        assert_eq!(f.counters().passed_related, 1);
        // Ping and its reply.
        assert_eq!(f.filter(&ping4(VM, PEER, 7, false), Direction::Out, t), Ok(()));
        assert_eq!(f.filter(&ping4(PEER, VM, 7, true), Direction::In, t), Ok(()));
        assert_eq!(f.filter(&ping4(PEER, VM, 8, true), Direction::In, t), Err(FwDrop::BlockedByDefault));
        // The peer's own echo request with the same id is not a reply: the rules decide.
        assert_eq!(f.filter(&ping4(PEER, VM, 7, false), Direction::In, t), Err(FwDrop::BlockedByDefault));
        assert_eq!(f.filter(&ping4(PEER, VM, 7, true), Direction::In, t), Ok(()), "replies still pass");
        // UDP pseudo-state expires.
        f.gc(Timestamp(t + 200 * S));
        assert!(f.conns.is_empty());
        assert_eq!(
            f.filter(&udp4(PEER, VM, 53, 5353, b"r"), Direction::In, t + 200 * S),
            Err(FwDrop::BlockedByDefault)
        );
    }

    #[test]
    fn ipv6_tcp_passes_with_state() {
        let mut f = fw(OUT_ONLY);
        let mut a = [0u8; 16];
        a[0] = 0xfd;
        a[15] = 1;
        let mut b = a;
        b[15] = 2;
        assert_eq!(f.filter(&tcp6(a, b, 1000, 443, 1, TCP_SYN), Direction::Out, S), Ok(()));
        assert_eq!(f.filter(&tcp6(b, a, 443, 1000, 1, TCP_SYN | TCP_ACK), Direction::In, S), Ok(()));
        assert_eq!(
            f.filter(&tcp6(b, a, 443, 1001, 1, TCP_SYN | TCP_ACK), Direction::In, S),
            Err(FwDrop::BlockedByDefault)
        );
    }

    #[test]
    fn fragments_follow_the_first() {
        let mut f = fw("pass in proto udp to any port 9000 keep state\n");
        let t = S;
        let [a, b] = udp4_fragments(PEER, VM, 1, 9000, &[7u8; 64], 5, 32);
        // Later fragment first: dropped.
        assert_eq!(f.filter(&b, Direction::In, t), Err(FwDrop::FragmentWithoutFirst));
        assert_eq!(f.filter(&a, Direction::In, t), Ok(()));
        assert_eq!(f.filter(&b, Direction::In, t), Ok(()));
        let [a, b] = udp4_fragments(PEER, VM, 1, 9001, &[7u8; 64], 6, 32);
        assert_eq!(f.filter(&a, Direction::In, t), Err(FwDrop::BlockedByDefault));
        assert_eq!(f.filter(&b, Direction::In, t), Err(FwDrop::FragmentOfBlocked));
        // Verdicts are forgotten after the fragment timeout.
        let [_, b] = udp4_fragments(PEER, VM, 1, 9000, &[7u8; 64], 5, 32);
        assert_eq!(f.filter(&b, Direction::In, t + 11 * S), Err(FwDrop::FragmentWithoutFirst));
        // A first fragment too short for the UDP header is malformed.
        let [a, _] = udp4_fragments(PEER, VM, 1, 9000, &[7u8; 64], 9, 8);
        let mut tiny = a[..14 + 20 + 4].to_vec();
        tiny[16..18].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(f.filter(&tiny, Direction::In, t), Err(FwDrop::MalformedL4));
    }

    /// IPv6 fragments whose first part carries a Destination Options header before UDP: the
    /// later fragment names that header as its next header, not UDP, and must still follow
    /// its first fragment (it was dropped as "fragment without first").
    #[test]
    fn ipv6_fragments_follow_the_first_past_extension_headers() {
        let mut f = fw("pass in proto udp to any port 9000 keep state\n");
        let (src, dst) = (
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        );
        let frame = |frag: [u8; 8], rest: &[u8]| {
            let mut v = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x86, 0xdd];
            v.extend_from_slice(&[0x60, 0, 0, 0]);
            v.extend_from_slice(&((8 + rest.len()) as u16).to_be_bytes());
            v.extend_from_slice(&[44, 64]);
            v.extend_from_slice(&src);
            v.extend_from_slice(&dst);
            v.extend_from_slice(&frag);
            v.extend_from_slice(rest);
            v
        };
        // First: Destination Options (8 bytes, next UDP) + UDP header + 16 bytes, more to come.
        let mut first_rest = vec![17, 0, 1, 4, 0, 0, 0, 0];
        first_rest.extend_from_slice(&[0x13, 0x88, 0x23, 0x28, 0, 40, 0, 0]); // 5000 -> 9000
        first_rest.extend_from_slice(&[7; 16]);
        let first = frame([60, 0, 0, 1, 0, 0, 0, 9], &first_rest); // offset 0, M
        let later = frame([60, 0, 0, 32, 0, 0, 0, 9], &[7; 8]); // offset 32 bytes, last
        assert_eq!(f.filter(&first, Direction::In, S), Ok(()));
        assert_eq!(f.filter(&later, Direction::In, S), Ok(()));
    }

    #[test]
    fn full_table_refuses_new_flows_only() {
        let cfg = FirewallConfig { max_connections: 2, ..FirewallConfig::default() };
        let mut f = Firewall::with_ruleset(cfg, CompiledRuleset::parse(OUT_ONLY).unwrap());
        assert_eq!(f.filter(&udp4(VM, PEER, 1, 53, b""), Direction::Out, S), Ok(()));
        assert_eq!(f.filter(&udp4(VM, PEER, 2, 53, b""), Direction::Out, S), Ok(()));
        assert_eq!(f.filter(&udp4(VM, PEER, 3, 53, b""), Direction::Out, S), Err(FwDrop::ConntrackFull));
        assert_eq!(f.filter(&udp4(PEER, VM, 53, 1, b""), Direction::In, S), Ok(()));
        assert_eq!(f.connections().stats().refused_full, 1);
    }

    #[test]
    fn replace_ruleset_keeps_what_is_still_allowed() {
        let mut f = fw("pass out proto tcp all keep state\npass out proto udp all keep state\n");
        f.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_SYN), Direction::Out, S).unwrap();
        f.filter(&udp4(VM, PEER, 5353, 53, b""), Direction::Out, S).unwrap();
        let r = f.replace_ruleset(CompiledRuleset::parse("pass out proto tcp to any port 80\n").unwrap());
        assert_eq!((r.kept, r.removed), (1, 1));
        assert_eq!(r.previous.ruleset().rules.len(), 2);
        // TCP reply still passes, UDP reply no longer.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 1000, 101, TCP_SYN | TCP_ACK), Direction::In, S),
            Ok(())
        );
        assert_eq!(f.filter(&udp4(PEER, VM, 53, 5353, b""), Direction::In, S), Err(FwDrop::BlockedByDefault));
        let r = f
            .replace_ruleset(CompiledRuleset::parse("pass out proto tcp to any port 80 no state\n").unwrap());
        assert_eq!((r.kept, r.removed), (0, 1));
    }

    #[test]
    fn export_import_between_firewalls() {
        let mut a = fw(OUT_ONLY);
        a.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_SYN), Direction::Out, S).unwrap();
        a.filter(&tcp4(PEER, VM, 80, 5000, 1000, 101, TCP_SYN | TCP_ACK), Direction::In, S).unwrap();
        a.filter(&tcp4(VM, PEER, 5000, 80, 101, 1001, TCP_ACK), Direction::Out, S).unwrap();
        a.filter(&udp4(VM, PEER, 5353, 53, b""), Direction::Out, S).unwrap();
        let bytes = a.export_connections(Timestamp(2 * S));
        // A firewall with a ruleset allowing only TCP takes only the TCP connection.
        let mut b = fw("pass out proto tcp all\n");
        assert_eq!(b.import_connections(&bytes, Timestamp(100 * S)), Ok(1));
        assert_eq!(b.filter(&tcp4(PEER, VM, 80, 5000, 1001, 101, TCP_ACK), Direction::In, 100 * S), Ok(()));
        let id = b.conns.ids()[0];
        assert_eq!(b.conns.get(id).state(), ConnState::TcpEstablished);
        // Sequence tracking came along: a blind RST is still refused.
        assert_eq!(
            b.filter(&tcp4(PEER, VM, 80, 5000, 1001 + 50_000_000, 0, TCP_RST), Direction::In, 100 * S),
            Err(FwDrop::TcpRstOutOfWindow)
        );
        assert_eq!(
            b.import_connections(&bytes[..20], Timestamp(0)),
            Err(ImportError::Truncated { needed: bytes.len(), got: 20 })
        );
    }

    fn pickup(text: &str) -> Firewall {
        let cfg = FirewallConfig { tcp_pickup: true, ..FirewallConfig::default() };
        Firewall::with_ruleset(cfg, CompiledRuleset::parse(text).unwrap())
    }

    /// After a crash the table is empty: the next segment of an established session, in a
    /// direction the rules allow, re-creates it; its replies then pass.
    #[test]
    fn pickup_recreates_an_allowed_connection_mid_stream() {
        let mut f = pickup(OUT_ONLY);
        let t = 10 * S;
        assert_eq!(f.filter(&tcp4(VM, PEER, 5000, 80, 5000, 7000, TCP_ACK), Direction::Out, t), Ok(()));
        let id = f.conns.ids()[0];
        let c = f.conns.get(id);
        assert_eq!((c.state(), c.origin()), (ConnState::TcpEstablished, Direction::Out));
        assert!(c.unconfirmed());
        assert_eq!(c.expires(), t + 30 * S, "an unconfirmed pickup lives tcp_pickup, not 24 h");
        assert_eq!(f.counters().picked_up, 1);
        // The peer's data and ACKs now pass as part of the connection, and confirm it.
        assert_eq!(f.filter(&tcp4(PEER, VM, 80, 5000, 7000, 5000, TCP_ACK), Direction::In, t + S), Ok(()));
        let c = f.conns.get(id);
        assert!(!c.unconfirmed());
        assert_eq!(c.expires(), t + S + 86_400 * S, "confirmed: the established timeout");
        assert_eq!(f.counters().passed_by_state, 1);
        // Without pickup (the default), the same segment is dropped.
        let mut strict = fw(OUT_ONLY);
        assert_eq!(
            strict.filter(&tcp4(VM, PEER, 5000, 80, 5000, 7000, TCP_ACK), Direction::Out, t),
            Err(FwDrop::TcpWithoutState)
        );
    }

    /// Pickup opens nothing the rules forbid: a segment from the peer, in the direction the
    /// rules block, is refused (and creates nothing) even when the VM's side of the same
    /// session would be allowed; once the VM speaks, the peer's segments pass.
    #[test]
    fn pickup_never_opens_what_the_rules_forbid() {
        let mut f = pickup("pass out all keep state\npass in proto tcp to any port 22 keep state\n");
        let t = 10 * S;
        // Inbound to a port the rules do not open: blocked, nothing tracked.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 40000, 8080, 1, 1, TCP_ACK), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        // The reply half of a session the VM opened (PEER:80 -> VM): the rules judge it
        // inbound, as a new flow to port 5000: refused.
        assert_eq!(
            f.filter(&tcp4(PEER, VM, 80, 5000, 7000, 5000, TCP_ACK), Direction::In, t),
            Err(FwDrop::BlockedByDefault)
        );
        assert!(f.conns.is_empty());
        // The VM's next segment is allowed outbound: picked up, and the peer's pass.
        assert_eq!(f.filter(&tcp4(VM, PEER, 5000, 80, 5000, 7000, TCP_ACK), Direction::Out, t), Ok(()));
        assert_eq!(f.filter(&tcp4(PEER, VM, 80, 5000, 7000, 5000, TCP_ACK), Direction::In, t), Ok(()));
        // An inbound session to port 22 is picked up from the peer's side.
        assert_eq!(f.filter(&tcp4(PEER, VM, 40001, 22, 9, 9, TCP_ACK), Direction::In, t), Ok(()));
        // A block rule wins over pickup like over a SYN.
        let mut b = pickup("pass out all keep state\nblock out quick proto tcp to any port 25\n");
        assert_eq!(
            b.filter(&tcp4(VM, PEER, 5000, 25, 1, 1, TCP_ACK), Direction::Out, t),
            Err(FwDrop::BlockedByRule)
        );
        // `no state` rules pass without tracking, as before.
        let mut n = pickup("pass out proto tcp all no state\n");
        assert_eq!(n.filter(&tcp4(VM, PEER, 5000, 80, 1, 1, TCP_ACK), Direction::Out, t), Ok(()));
        assert!(n.conns.is_empty());
        assert_eq!(n.counters().picked_up, 0);
        assert_eq!(f.counters().picked_up, 2);
    }

    /// Only plain mid-stream segments are picked up: not a RST, not a SYN-ACK; a FIN is
    /// picked up closing; an entry of the same addresses seen from the other side blocks
    /// it; the table's bound holds; a pickup's window is conservative.
    #[test]
    fn pickup_is_bounded() {
        let t = 10 * S;
        let mut f = pickup(OUT_ONLY);
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 5000, 80, 1, 1, TCP_RST | TCP_ACK), Direction::Out, t),
            Err(FwDrop::TcpWithoutState)
        );
        assert_eq!(
            f.filter(&tcp4(VM, PEER, 5000, 80, 1, 1, TCP_SYN | TCP_ACK), Direction::Out, t),
            Err(FwDrop::TcpWithoutState)
        );
        assert!(f.conns.is_empty());
        assert_eq!(f.filter(&tcp4(VM, PEER, 5001, 80, 1, 1, TCP_FIN | TCP_ACK), Direction::Out, t), Ok(()));
        let id = f.conns.ids()[0];
        assert_eq!(f.conns.get(id).state(), ConnState::TcpFinWait);
        // The same addresses as an inbound entry (from the other side): no pickup over it.
        let mut g = pickup("pass in all keep state\npass out all keep state\n");
        g.filter(&tcp4(PEER, VM, 80, 5000, 1, 0, TCP_SYN), Direction::In, t).unwrap();
        assert_eq!(
            g.filter(&tcp4(PEER, VM, 80, 5000, 2, 1, TCP_ACK), Direction::Out, t),
            Err(FwDrop::TcpWithoutState)
        );
        // Full table: refused and counted like a SYN.
        let cfg = FirewallConfig { tcp_pickup: true, max_connections: 1, ..FirewallConfig::default() };
        let mut h = Firewall::with_ruleset(cfg, CompiledRuleset::parse(OUT_ONLY).unwrap());
        assert_eq!(h.filter(&tcp4(VM, PEER, 1, 80, 1, 1, TCP_ACK), Direction::Out, t), Ok(()));
        assert_eq!(
            h.filter(&tcp4(VM, PEER, 2, 80, 1, 1, TCP_ACK), Direction::Out, t),
            Err(FwDrop::ConntrackFull)
        );
        // Conservative window: the picked-up sender advertised 65535 unscaled; a RST from it
        // 100 000 bytes ahead is outside, one within is accepted.
        let mut w = pickup(OUT_ONLY);
        w.filter(&tcp4(VM, PEER, 5000, 80, 1000, 1, TCP_ACK), Direction::Out, t).unwrap();
        w.filter(&tcp4(PEER, VM, 80, 5000, 1, 1000, TCP_ACK), Direction::In, t).unwrap();
        assert_eq!(
            w.filter(&tcp4(VM, PEER, 5000, 80, 101_000, 0, TCP_RST), Direction::Out, t),
            Err(FwDrop::TcpRstOutOfWindow)
        );
        assert_eq!(w.filter(&tcp4(VM, PEER, 5000, 80, 1000, 0, TCP_RST), Direction::Out, t), Ok(()));
        // An unconfirmed pickup expires after tcp_pickup.
        let mut e = pickup(OUT_ONLY);
        e.filter(&tcp4(VM, PEER, 5000, 80, 1, 1, TCP_ACK), Direction::Out, t).unwrap();
        assert_eq!(e.gc(Timestamp(t + 31 * S)), 1);
    }

    /// An import meant for a NIC refuses the export of another (no connection has one of
    /// its addresses), changing nothing, and counts what its rules skip.
    #[test]
    fn import_for_a_nic_refuses_another_nics_export() {
        let mut a = fw(OUT_ONLY);
        a.filter(&tcp4(VM, PEER, 5000, 80, 100, 0, TCP_SYN), Direction::Out, S).unwrap();
        a.filter(&udp4(VM, PEER, 5353, 53, b""), Direction::Out, S).unwrap();
        let bytes = a.export_connections(Timestamp(S));
        let vm: IpAddr = IpAddr::from(VM);
        let other: IpAddr = "42.0.0.9".parse().unwrap();
        let mut b = fw("pass out proto tcp all\n");
        b.filter(&tcp4(VM, PEER, 6000, 80, 1, 0, TCP_SYN), Direction::Out, S).unwrap();
        let before = b.export_connections(Timestamp(S));
        let e = b.import_connections_of(&bytes, Timestamp(S), &[other]).unwrap_err();
        assert!(matches!(e, ImportError::Foreign { record: 0, .. }), "{e:?}");
        assert!(e.to_string().contains("42.0.0.1") && e.to_string().contains("another NIC"), "{e}");
        assert_eq!(b.export_connections(Timestamp(S)), before, "nothing changed");
        assert_eq!(
            b.import_connections_of(&bytes, Timestamp(S), &[other, vm]),
            Ok(ImportSummary { imported: 1, skipped: 1 })
        );
        assert_eq!(b.connections().len(), 2);
    }

    #[test]
    fn no_connection_exports_no_bytes_and_imports_as_nothing() {
        let mut a = fw(OUT_ONLY);
        assert_eq!(a.export_connections(Timestamp(S)), Vec::<u8>::new(), "an empty table: no bytes");
        a.filter(&udp4(VM, PEER, 5353, 53, b""), Direction::Out, S).unwrap();
        let bytes = a.export_connections(Timestamp(2 * S));
        assert!(bytes.starts_with(crate::conntrack::EXPORT_MAGIC), "a connection: a versioned table");
        // Expired but not collected yet: nothing to export either.
        assert_eq!(a.export_connections(Timestamp(3600 * S)), Vec::<u8>::new());
        let mut b = fw(OUT_ONLY);
        assert_eq!(b.import_connections(&[], Timestamp(S)), Ok(0));
        assert!(b.connections().is_empty());
        assert_eq!(b.import_connections(&bytes, Timestamp(2 * S)), Ok(1));
        assert_eq!(b.import_connections(&[], Timestamp(2 * S)), Ok(0), "nothing changes");
        assert_eq!(b.connections().len(), 1);
    }

    #[test]
    fn non_ip_passes_and_garbage_is_counted() {
        let mut f = fw("");
        let mut arp = udp4(VM, PEER, 1, 2, b"");
        arp[12..14].copy_from_slice(&crate::wire::ETH_ARP.to_be_bytes());
        assert_eq!(f.filter(&arp, Direction::In, S), Ok(()));
        assert_eq!(f.filter(&[0u8; 5], Direction::In, S), Err(FwDrop::MalformedEthernet));
        let mut bad = udp4(VM, PEER, 1, 2, b"");
        bad[14] = 0x46; // IHL 6 but no options: total length still 20+8+...
        bad[16..18].copy_from_slice(&22u16.to_be_bytes());
        assert_eq!(f.filter(&bad, Direction::In, S), Err(FwDrop::MalformedIpv4));
        // A frame with two VLAN tags is refused, not passed as non-IP (it could carry IP).
        let mut stacked = udp4(VM, PEER, 1, 2, b"");
        stacked.splice(12..12, [0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
        assert_eq!(f.filter(&stacked, Direction::In, S), Err(FwDrop::StackedVlan));
        assert_eq!(FIREWALL_DROP_REASONS.len(), FwDrop::StackedVlan as usize + 1);
    }
}

//! A connection's own state machine: how each packet of a flow moves it (TCP states,
//! sequence windows, timeouts).

use super::*;

impl Conn {
    /// A new connection opened by the packet `f` travelling in `dir`.
    pub fn new(f: &Flow, dir: Direction, now: u64, t: &Timeouts) -> Conn {
        let (key, src_lo) = FlowKey::of(f);
        let state = ConnState::initial(f.proto);
        let mut c = Conn {
            key,
            origin: dir,
            origin_lo: src_lo,
            state,
            expires: now,
            seq_end: [0; 2],
            max_win: [0; 2],
            wscale: [WSCALE_NONE; 2],
            seen: [false; 2],
            fin: [false; 2],
            live: true,
            wheel_prev: NONE,
            wheel_next: NONE,
            wheel_slot: 0,
        };
        if f.proto == PROTO_TCP {
            c.track_tcp_seq(f, if src_lo { 0 } else { 1 });
        }
        c.expires = now.saturating_add(state.timeout(t).as_nanos() as u64);
        c
    }

    /// A TCP connection picked up mid-stream: the segment `f` (ACK set, neither SYN nor
    /// RST) travelling in `dir` belongs to no tracked connection, and the rules let its
    /// sender open one in that direction. The sender is taken as the initiator; the
    /// connection is established (closing if `f` carries a FIN), with a conservative window:
    /// the window scales are unknown, so windows count unscaled (a RST must fall within that
    /// smaller window), and until a packet of the other side is seen the connection lives
    /// [`Timeouts::tcp_pickup`], not the established timeout.
    pub fn picked_up(f: &Flow, dir: Direction, now: u64, t: &Timeouts) -> Conn {
        let mut c = Conn::new(f, dir, now, t);
        let s = if c.origin_lo { 0 } else { 1 };
        c.state = if f.tcp_flags & TCP_FIN != 0 {
            c.fin[s] = true;
            ConnState::TcpFinWait
        } else {
            ConnState::TcpEstablished
        };
        c.expires = now.saturating_add(c.timeout(t).as_nanos() as u64);
        c
    }

    /// Whether this is a TCP connection picked up mid-stream whose other side has not been
    /// seen yet.
    pub fn unconfirmed(&self) -> bool {
        self.key.proto == PROTO_TCP
            && self.state == ConnState::TcpEstablished
            && !(self.seen[0] && self.seen[1])
    }

    /// The idle timeout that applies now.
    fn timeout(&self, t: &Timeouts) -> Duration {
        if self.unconfirmed() {
            t.tcp_pickup
        } else {
            self.state.timeout(t)
        }
    }

    /// The key.
    pub fn key(&self) -> &FlowKey {
        &self.key
    }
    /// The state.
    pub fn state(&self) -> ConnState {
        self.state
    }
    /// Direction of the packet that opened the connection.
    pub fn origin(&self) -> Direction {
        self.origin
    }
    /// Deadline (nanoseconds, [`brick_core::Timestamp`] scale).
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// The opening packet's flow (addresses and ports as the initiator sent them).
    pub fn origin_flow(&self) -> Flow {
        let k = &self.key;
        let (src, sport, dst, dport) = if self.origin_lo {
            (k.lo, k.lo_port, k.hi, k.hi_port)
        } else {
            (k.hi, k.hi_port, k.lo, k.lo_port)
        };
        let mut f = Flow { v6: k.v6, proto: k.proto, src, dst, sport, dport, ..Flow::default() };
        if (k.proto == PROTO_ICMP && !k.v6) || (k.proto == PROTO_ICMP6 && k.v6) {
            f.icmp_type = if k.v6 { 128 } else { 8 };
        }
        if k.proto == PROTO_TCP {
            f.tcp_flags = TCP_SYN;
        }
        f
    }

    /// Whether a packet whose source is the `lo` endpoint (`src_lo`) travelling in `dir`
    /// belongs to this connection: `Some(true)` from the initiator, `Some(false)` a reply,
    /// `None` if it does not fit (same addresses seen on the wrong side).
    #[inline]
    pub fn orientation(&self, dir: Direction, src_lo: bool) -> Option<bool> {
        let fwd_dir = dir == self.origin;
        let fwd_src = src_lo == self.origin_lo;
        match (fwd_dir, fwd_src) {
            (true, true) => Some(true),
            (false, false) => Some(false),
            _ => None,
        }
    }

    #[inline]
    fn track_tcp_seq(&mut self, f: &Flow, s: usize) {
        let end = f.seq.wrapping_add(f.seg_len);
        if !self.seen[s] || seq_after(end, self.seq_end[s]) {
            self.seq_end[s] = end;
            self.seen[s] = true;
        }
        if f.tcp_flags & TCP_SYN != 0 {
            self.wscale[s] = f.wscale.unwrap_or(WSCALE_NONE);
        }
        let scale =
            if self.wscale[0] != WSCALE_NONE && self.wscale[1] != WSCALE_NONE && f.tcp_flags & TCP_SYN == 0 {
                self.wscale[s] as u32
            } else {
                0
            };
        let win = (f.win as u32) << scale.min(14);
        if win > self.max_win[s] {
            self.max_win[s] = win;
        }
    }

    /// Updates the connection with a packet `f` (`from_initiator` from
    /// [`orientation`](Self::orientation)): advances its state and deadline, or says why the
    /// packet is refused (the connection is then unchanged).
    #[inline]
    pub fn update(
        &mut self,
        f: &Flow,
        from_initiator: bool,
        now: u64,
        t: &Timeouts,
    ) -> Result<(), TcpRefusal> {
        use ConnState::*;
        match self.state {
            UdpFirst if !from_initiator => self.state = UdpMultiple,
            IcmpFirst if !from_initiator => self.state = IcmpReply,
            OtherFirst if !from_initiator => self.state = OtherMultiple,
            _ => {}
        }
        if self.key.proto == PROTO_TCP {
            let src_lo = from_initiator == self.origin_lo;
            let s = if src_lo { 0 } else { 1 };
            let o = 1 - s;
            let flags = f.tcp_flags;
            if flags & TCP_RST != 0 {
                let ok = if self.seen[s] {
                    let win = if self.max_win[o] == 0 { 65_535 } else { self.max_win[o] };
                    let d = f.seq.wrapping_sub(self.seq_end[s]) as i32;
                    d.unsigned_abs() <= win
                } else {
                    // Answer to a SYN: must acknowledge it.
                    flags & TCP_ACK != 0 && self.seen[o] && f.ack == self.seq_end[o]
                };
                if !ok {
                    return Err(TcpRefusal::RstOutOfWindow);
                }
                self.state = TcpClosed;
            } else {
                self.track_tcp_seq(f, s);
                if flags & TCP_FIN != 0 {
                    self.fin[s] = true;
                }
                self.state = match self.state {
                    TcpSynSent if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && !from_initiator => {
                        TcpSynRecv
                    }
                    TcpSynRecv if flags & (TCP_SYN | TCP_ACK) == TCP_ACK && from_initiator => {
                        if self.fin[s] {
                            TcpFinWait
                        } else {
                            TcpEstablished
                        }
                    }
                    TcpEstablished | TcpFinWait if self.fin[0] && self.fin[1] => TcpClosing,
                    TcpEstablished if self.fin[s] => TcpFinWait,
                    st => st,
                };
            }
        }
        self.expires = now.saturating_add(self.timeout(t).as_nanos() as u64);
        Ok(())
    }
}

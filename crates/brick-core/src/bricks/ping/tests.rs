use super::frame::{self, Echo};
use super::*;
use crate::bricks::{Flipped, RxTx};
use crate::{BrickId, Graph};
use std::sync::Mutex;

const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn echo(src: &str, dst: &str) -> Echo {
    Echo { src_mac: A, dst_mac: B, src_ip: ip(src), dst_ip: ip(dst), id: ECHO_ID, seq: 7 }
}

fn request(e: &Echo, stamp: u64) -> Vec<u8> {
    let mut v = vec![0u8; frame::request_len(e.src_ip.is_ipv6())];
    frame::write_request(&mut v, e, stamp).unwrap();
    v
}

/// What etherparse builds for the same echo message (an independent encoder).
fn etherparse_echo(e: &Echo, reply: bool, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(e.src_mac, e.dst_mac);
    let mut v = Vec::new();
    match (e.src_ip, e.dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let b = b.ipv4(s.octets(), d.octets(), ttl);
            let b = if reply { b.icmpv4_echo_reply(e.id, e.seq) } else { b.icmpv4_echo_request(e.id, e.seq) };
            b.write(&mut v, payload).unwrap();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let b = b.ipv6(s.octets(), d.octets(), ttl);
            let b = if reply { b.icmpv6_echo_reply(e.id, e.seq) } else { b.icmpv6_echo_request(e.id, e.seq) };
            b.write(&mut v, payload).unwrap();
        }
        _ => unreachable!(),
    }
    v
}

fn swapped(e: &Echo) -> Echo {
    Echo { src_mac: e.dst_mac, dst_mac: e.src_mac, src_ip: e.dst_ip, dst_ip: e.src_ip, ..*e }
}

#[test]
fn requests_parse_back_with_valid_checksums_as_etherparse_reads_them() {
    for (s, d) in [("42.0.0.1", "42.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
        let e = echo(s, d);
        let f = request(&e, 0x0123_4567_89ab_cdef);
        let at = frame::locate(&f).unwrap();
        assert!(at.request);
        assert_eq!(at.echo, e);
        assert!(frame::checksum_ok(&f, &at));
        assert_eq!(frame::stamp(&f, &at), Some(0x0123_4567_89ab_cdef));
        // etherparse computes the same ICMP checksum over the same payload.
        let payload = &f[at.l4 + frame::ECHO_HDR_LEN..];
        let mut want = etherparse_echo(&e, false, 64, payload);
        if e.src_ip.is_ipv4() {
            // etherparse sets no DF and identification 0; ours carries DF and the sequence.
            let mut ours = f.clone();
            ours[18..22].copy_from_slice(&want[18..22]);
            ours[24..26].copy_from_slice(&want[24..26]);
            want[24..26].copy_from_slice(&ours[24..26]);
            assert_eq!(ours[34..], want[34..], "ICMP part");
        } else {
            assert_eq!(f, want);
        }
    }
}

#[test]
fn a_request_becomes_the_reply_etherparse_would_build() {
    for (s, d) in [("10.1.2.3", "10.9.8.7"), ("fd00::1:2", "fd00::9:8")] {
        for len in [0usize, 1, 17, 56, 1400] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let e = echo(s, d);
            let mut f = etherparse_echo(&e, false, 5, &payload);
            let at = frame::locate(&f).unwrap();
            frame::request_to_reply(&mut f, &at).unwrap();
            assert_eq!(f, etherparse_echo(&swapped(&e), true, 64, &payload), "{s} payload {len}");
            let back = frame::locate(&f).unwrap();
            assert!(!back.request && frame::checksum_ok(&f, &back));
        }
    }
}

#[test]
fn locate_refuses_truncations_garbage_and_non_echo_without_panicking() {
    let f = request(&echo("42.0.0.1", "42.0.0.2"), 1);
    for cut in 0..f.len() {
        assert!(frame::locate(&f[..cut]).is_none(), "cut at {cut}");
    }
    let mut frag = f.clone();
    frag[20] |= 0x20; // more fragments
    assert!(frame::locate(&frag).is_none());
    let mut other = f.clone();
    other[34] = 3; // destination unreachable
    assert!(frame::locate(&other).is_none());
    let mut lying = f.clone();
    lying[16..18].copy_from_slice(&2000u16.to_be_bytes()); // longer than the frame
    assert!(frame::locate(&lying).is_none());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let mut junk = f.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % junk.len();
            junk[i] = (seed >> 32) as u8;
        }
        junk.truncate((seed >> 40) as usize % (junk.len() + 1));
        if let Some(at) = frame::locate(&junk) {
            let _ = frame::checksum_ok(&junk, &at);
            let _ = frame::stamp(&junk, &at);
            let _ = frame::request_to_reply(&mut junk, &at);
        }
    }
}

/// Sender and responder joined directly (west ports facing each other).
fn pair(
    cfg: PingConfig,
    responder_ips: Vec<IpAddr>,
) -> (Graph, BrickId, BrickId, Arc<PingStats>, Arc<PingStats>) {
    let pool = PacketPool::with_count(64).unwrap();
    let sender = PingSender::new(cfg, pool).unwrap();
    let responder = PingResponder::new(B, responder_ips);
    let (ss, rs) = (sender.stats(), responder.stats());
    let mut g = Graph::new("t");
    let s = g.add("snd", sender).unwrap();
    let r = g.add("rcv", Flipped::new(responder)).unwrap();
    g.link(r, s).unwrap();
    (g, s, r, ss, rs)
}

fn fast(src: &str, dst: &str) -> PingConfig {
    PingConfig {
        interval: Duration::from_micros(200),
        timeout: Duration::from_millis(20),
        window: 4,
        ..PingConfig::new(A, ip(src), B, ip(dst))
    }
}

fn run_until(g: &mut Graph, what: &str, done: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        g.poll_all();
    }
}

#[test]
fn sender_and_responder_measure_round_trips_in_windows_one_request_at_a_time() {
    for (s, d) in [("42.0.0.1", "42.0.0.2"), ("2001:db8::1", "2001:db8::2")] {
        let (mut g, _, _, ss, rs) = pair(fast(s, d), vec![ip("42.0.0.9"), ip(d)]);
        run_until(&mut g, "10 replies", || ss.snapshot().received >= 10);
        let snap = ss.snapshot();
        // One in flight: every request sent so far was answered, but the last may be out.
        assert!(snap.sent - snap.received <= 1, "{snap:?}");
        assert_eq!(snap.lost, 0);
        assert_eq!(rs.snapshot().sent, snap.received, "the responder answered each one");
        let rtt = snap.rtt.unwrap();
        assert!(rtt.min <= rtt.mean && rtt.mean <= rtt.max && rtt.max < Duration::from_secs(1), "{rtt:?}");
        assert_eq!(snap.windows, snap.received / 4);
        assert_eq!(snap.recent_window_means.len() as u64, snap.windows.min(KEPT_WINDOWS as u64));
        let worst = snap.worst_window_mean.unwrap();
        assert!(snap.best_window_mean.unwrap() <= snap.mean_of_window_means.unwrap());
        assert!(snap.mean_of_window_means.unwrap() <= worst && worst <= rtt.max);
        assert_eq!(snap.recent_window_means.iter().max(), Some(&worst));
        let last = snap.last_window.unwrap();
        assert_eq!(Some(&last.mean), snap.recent_window_means.last());
    }
}

#[test]
fn the_sender_paces_itself_and_counts_requests_nobody_answers_as_lost() {
    // The responder has another address: every request is dropped there.
    let cfg = PingConfig { timeout: Duration::from_millis(5), ..fast("42.0.0.1", "42.0.0.2") };
    let (mut g, _, r, ss, rs) = pair(cfg, vec![ip("42.0.0.3")]);
    let t = std::time::Instant::now();
    run_until(&mut g, "3 lost", || ss.snapshot().lost >= 3);
    let snap = ss.snapshot();
    assert_eq!(snap.received, 0);
    assert!(snap.rtt.is_none() && snap.windows == 0);
    // One request per timeout at most: the graph was polled flat out meanwhile.
    assert!(t.elapsed() >= Duration::from_millis(15), "{:?} for {snap:?}", t.elapsed());
    assert!(snap.sent <= snap.lost + 1);
    assert_eq!(rs.snapshot().sent, 0);
    let drops = g.stats(r).unwrap().drops_of(PingDrop::NotOurs.text()).unwrap();
    assert_eq!(drops, snap.sent);
}

#[test]
fn the_sender_rate_is_bounded_by_its_interval() {
    let cfg = PingConfig { interval: Duration::from_millis(2), ..fast("42.0.0.1", "42.0.0.2") };
    let (mut g, _, _, ss, _) = pair(cfg, vec![ip("42.0.0.2")]);
    let t = std::time::Instant::now();
    while t.elapsed() < Duration::from_millis(100) {
        g.poll_all();
    }
    let (sent, elapsed) = (ss.snapshot().sent, t.elapsed());
    // At most one per 2 ms although the graph was polled flat out (fewer when this thread
    // lost its CPU meanwhile: the timer never catches up with a burst).
    let most = elapsed.as_millis() as u64 / 2 + 1;
    assert!((2..=most).contains(&sent), "sent {sent} in {elapsed:?}");
}

/// A sender whose west port is joined to a brick that records what it sends and injects
/// what the test queues.
type Frames = Arc<Mutex<Vec<Vec<u8>>>>;
fn sender_with_wire(cfg: PingConfig) -> (Graph, BrickId, Arc<PingStats>, Frames, Frames) {
    let pool = PacketPool::with_count(64).unwrap();
    let sender = PingSender::new(cfg, pool.clone()).unwrap();
    let stats = sender.stats();
    let (sent, inject): (Frames, Frames) = Default::default();
    let (sent2, inject2) = (Arc::clone(&sent), Arc::clone(&inject));
    let wire = RxTx::new(
        Side::East,
        move |b: &mut Burst| {
            for f in inject2.lock().unwrap().drain(..) {
                let _ = b.push(pool.alloc_from(&f).unwrap());
            }
        },
        move |b: &mut Burst| {
            sent2.lock().unwrap().extend(b.drain().map(|p| p.data().to_vec()));
        },
    );
    let mut g = Graph::new("t");
    let s = g.add("snd", sender).unwrap();
    let w = g.add("wire", wire).unwrap();
    g.link(w, s).unwrap();
    (g, s, stats, sent, inject)
}

#[test]
fn forged_foreign_late_and_corrupt_replies_are_dropped_and_counted() {
    let (mut g, s, stats, sent, inject) = sender_with_wire(fast("42.0.0.1", "42.0.0.2"));
    run_until(&mut g, "a request", || !sent.lock().unwrap().is_empty());
    let req = sent.lock().unwrap()[0].clone();
    let at = frame::locate(&req).unwrap();
    let mut reply = req.clone();
    frame::request_to_reply(&mut reply, &at).unwrap();
    let reply_at = frame::locate(&reply).unwrap();
    let stamp_at = reply_at.l4 + frame::ECHO_HDR_LEN;

    let mut forged = reply.clone(); // another send time, a valid checksum
    forged[stamp_at] ^= 0x80;
    forged[reply_at.l4 + 2..reply_at.l4 + 4].fill(0);
    let c = crate::checksum::checksum(&forged[reply_at.l4..reply_at.end]);
    forged[reply_at.l4 + 2..reply_at.l4 + 4].copy_from_slice(&c.to_be_bytes());
    assert!(frame::checksum_ok(&forged, &reply_at));
    let mut corrupt = reply.clone();
    corrupt[stamp_at + 9] ^= 1;
    let mut foreign = reply.clone();
    foreign[reply_at.l4 + 4] ^= 1; // another echo id
    let not_echo = vec![0xffu8; 60];
    inject.lock().unwrap().extend([forged, corrupt, foreign, not_echo, reply.clone(), reply]);
    run_until(&mut g, "the reply", || stats.snapshot().received == 1);
    g.poll_all();
    let st = g.stats(s).unwrap();
    let n = |d: PingDrop| st.drops_of(d.text()).unwrap();
    assert_eq!(n(PingDrop::Unexpected), 2, "the forged stamp, and the duplicate after the reply");
    assert_eq!(n(PingDrop::BadChecksum), 1);
    assert_eq!(n(PingDrop::NotOurs), 1);
    assert_eq!(n(PingDrop::NotEcho), 1);
    assert_eq!(stats.snapshot().received, 1);
}

#[test]
fn the_responder_answers_only_valid_requests_for_its_mac_and_addresses() {
    let pool = PacketPool::with_count(16).unwrap();
    let responder = PingResponder::new(B, vec![ip("42.0.0.2")]);
    let stats = responder.stats();
    let (got, inject): (Frames, Frames) = Default::default();
    let (got2, inject2) = (Arc::clone(&got), Arc::clone(&inject));
    let wire = RxTx::new(
        Side::East,
        move |b: &mut Burst| {
            for f in inject2.lock().unwrap().drain(..) {
                let _ = b.push(pool.alloc_from(&f).unwrap());
            }
        },
        move |b: &mut Burst| got2.lock().unwrap().extend(b.drain().map(|p| p.data().to_vec())),
    );
    let mut g = Graph::new("t");
    let r = g.add("rcv", responder).unwrap();
    let w = g.add("wire", wire).unwrap();
    g.link(w, r).unwrap();
    let good = request(&echo("42.0.0.1", "42.0.0.2"), 5);
    let other_ip = request(&echo("42.0.0.1", "42.0.0.3"), 5);
    let mut other_mac = good.clone();
    other_mac[5] = 9;
    let mut corrupt = good.clone();
    corrupt[50] ^= 1;
    let mut reply = good.clone();
    let at = frame::locate(&reply).unwrap();
    frame::request_to_reply(&mut reply, &at).unwrap();
    inject.lock().unwrap().extend([good.clone(), other_ip, other_mac, corrupt, reply]);
    g.poll_all();
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1);
    let back = frame::locate(&got[0]).unwrap();
    assert!(!back.request && frame::checksum_ok(&got[0], &back));
    assert_eq!((back.echo.src_ip, back.echo.dst_ip, back.echo.dst_mac), (ip("42.0.0.2"), ip("42.0.0.1"), A));
    let st = g.stats(r).unwrap();
    assert_eq!(st.drops_of(PingDrop::NotOurs.text()), Some(2));
    assert_eq!(st.drops_of(PingDrop::BadChecksum.text()), Some(1));
    assert_eq!(st.drops_of(PingDrop::NotEcho.text()), Some(1), "a reply is not answered");
    assert_eq!(stats.snapshot().sent, 1);
}

#[test]
fn bad_configurations_are_refused() {
    let pool = PacketPool::with_count(4).unwrap();
    let mixed = PingConfig::new(A, ip("42.0.0.1"), B, ip("::2"));
    assert!(matches!(PingSender::new(mixed, pool.clone()), Err(PingError::Family { .. })));
    let zero = PingConfig { interval: Duration::ZERO, ..fast("42.0.0.1", "42.0.0.2") };
    assert!(matches!(PingSender::new(zero, pool), Err(PingError::Zero)));
}

#[test]
fn the_wake_fd_fires_once_per_interval() {
    let t = ticker::Ticker::new(Duration::from_millis(5)).unwrap();
    assert!(!t.expired(), "not before one period");
    let mut pfd = libc::pollfd { fd: t.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: polls one pollfd we own, for at most one second.
    let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
    assert_eq!(n, 1);
    assert!(t.expired());
    assert!(!t.expired(), "read clears it");
}

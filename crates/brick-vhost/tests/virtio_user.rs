//! DPDK's virtio_user as the guest side (no VM): traffic both ways through a graph, a
//! frontend restart in server mode, and client mode against a waiting frontend.

mod common;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brick_core::{Brick, Burst, Graph, Output, PacketPool, PoolConfig, PortId, Runner, RunnerConfig, Side};
use brick_vhost::{NicStats, Offloads, VhostUserConfig, VhostUserNic, TSO_DATA_ROOM};
use common::{last_rx_packets, stream_totals, wait_until, Echo, TempDir, TestPmd};
use vmm_sys_util::eventfd::EventFd;

fn echo_graph(nic: VhostUserNic) -> Runner {
    let mut g = Graph::new("echo");
    let echo = g.add("echo", Echo).unwrap();
    let vm = g.add("vm", nic).unwrap();
    g.link(echo, vm).unwrap();
    Runner::spawn(g, RunnerConfig::default()).unwrap()
}

fn cfg(name: &str) -> VhostUserConfig {
    let mut c = VhostUserConfig::new(name, [0x52, 0x54, 0, 0, 0, 9], PacketPool::with_count(4096).unwrap());
    c.reconnect_interval = Duration::from_millis(100);
    c
}

/// Waits for traffic both ways and returns (tx, rx) seen by the NIC.
fn expect_traffic(stats: &NicStats, since: (u64, u64), what: &str, pmd: &TestPmd) -> (u64, u64) {
    let ok = wait_until(Duration::from_secs(20), || {
        stats.tx_packets.get() > since.0 + 1000 && stats.rx_packets.get() > since.1 + 1000
    });
    assert!(
        ok,
        "{what}: no traffic through the brick (guest tx {} rx {}, connected {}, drops {:?})\ntestpmd output tail:\n{}",
        stats.tx_packets.get(),
        stats.rx_packets.get(),
        stats.connected.load(Ordering::Relaxed),
        (0..brick_vhost::DROP_REASONS.len()).map(|i| stats.drop_count(i)).collect::<Vec<_>>(),
        tail(&pmd.output(), 25)
    );
    (stats.tx_packets.get(), stats.rx_packets.get())
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn server_mode_traffic_and_frontend_restart() {
    let dir = TempDir::new("vu-server");
    let sock = dir.path("vm.sock");
    let nic = VhostUserNic::server(&sock, cfg("vu-server")).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);

    let pmd = TestPmd::start(&sock, false, &dir.path("pmd1.log"), "s1");
    let (tx, rx) = expect_traffic(&stats, (0, 0), "first frontend", &pmd);
    // Running queues are used without their lock: only the first burst of each (and one
    // after each vhost-user change) takes it.
    let locked = stats.locked_bursts.get();
    assert!(locked > 0 && locked < 64, "{locked} locked bursts for {tx} frames out and {rx} in");
    let out = pmd.stop();
    assert!(last_rx_packets(&out) > 1000, "testpmd received too little:\n{}", tail(&out, 25));
    assert!(
        wait_until(Duration::from_secs(5), || !stats.connected.load(Ordering::Relaxed)),
        "disconnect not seen"
    );
    let acked = stats.acked_features.load(Ordering::Relaxed);
    assert_eq!(acked, 0, "features reset on disconnect");
    let seen = (stats.tx_packets.get(), stats.rx_packets.get());

    // The frontend comes back (a QEMU restart): same socket, traffic again.
    let locked = stats.locked_bursts.get();
    let pmd = TestPmd::start(&sock, false, &dir.path("pmd2.log"), "s2");
    expect_traffic(&stats, seen, "second frontend", &pmd);
    // The new connection's queues were confirmed under the lock again before going lock-free.
    assert!(stats.locked_bursts.get() > locked, "the second connection never took the vring lock");
    drop(pmd);
    assert_eq!(stats.connections.load(Ordering::Relaxed), 2);
    assert_eq!(stats.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);

    // Tearing the graph down removes the socket.
    drop(runner);
    assert!(!sock.exists(), "socket file left behind");
}

#[test]
fn two_queue_pairs_each_carry_traffic_both_ways() {
    let dir = TempDir::new("vu-mq");
    let sock = dir.path("vm.sock");
    let mut c = cfg("vu-mq");
    c.queue_pairs = 2;
    let nic = VhostUserNic::server(&sock, c).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);

    // flowgen on both queue pairs: each stream sends on its TX queue and counts what its RX
    // queue receives.
    let pmd = TestPmd::start_queues(&sock, false, &dir.path("pmd.log"), "mq", "flowgen", 2, &[]);
    expect_traffic(&stats, (0, 0), "two queue pairs", &pmd);
    // Long enough for each stream to send and receive well over the threshold below.
    std::thread::sleep(Duration::from_secs(1));
    let out = pmd.stop();
    let streams = stream_totals(&out);
    assert_eq!(
        streams.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1],
        "one stream per queue pair expected:\n{}",
        tail(&out, 30)
    );
    for (q, rx, tx) in streams {
        // What a stream sends leaves by its TX queue: the brick drained it. What it receives
        // came through its RX queue: the brick spreads its bursts over both.
        assert!(
            tx > 1000 && rx > 1000,
            "queue pair {q}: {tx} frames sent, {rx} received\n{}",
            tail(&out, 30)
        );
    }
    // The NIC's own per-queue counters say the same.
    for q in 0..2 {
        let (rx, tx) = (stats.queue_rx_packets[q].get(), stats.queue_tx_packets[q].get());
        assert!(rx > 1000 && tx > 1000, "NIC counters of queue pair {q}: rx {rx} tx {tx}");
    }
    assert_eq!(stats.queue_rx_packets[2].get() + stats.queue_tx_packets[2].get(), 0);
    assert_eq!(stats.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);
    drop(runner);
}

/// One device served by two graph threads (`threads = 2`): each brick polls the TX queue and
/// fills the RX queue of its own queue pair, in its own graph, and the frames of each testpmd
/// stream go through their pair's thread only.
#[test]
fn two_graph_threads_each_serve_their_queue_pair() {
    let dir = TempDir::new("vu-threads");
    let sock = dir.path("vm.sock");
    let mut c = cfg("vu-threads");
    c.queue_pairs = 2;
    c.threads = 3;
    assert!(
        matches!(VhostUserNic::server(&sock, c.clone()), Err(brick_vhost::VhostError::BadThreads { .. })),
        "more threads than queue pairs is refused"
    );
    c.threads = 2;
    let mut nic = VhostUserNic::server(&sock, c).unwrap();
    let mut siblings = nic.take_siblings().unwrap();
    assert_eq!(siblings.len(), 1);
    assert!(nic.take_siblings().unwrap().is_empty(), "the siblings are handed out once");
    let second = siblings.pop().unwrap();
    let stats = [nic.stats(), second.stats()];
    let runners = [echo_graph(nic), echo_graph(second)];

    let pmd = TestPmd::start_queues(&sock, false, &dir.path("pmd.log"), "thr", "flowgen", 2, &[]);
    for (t, s) in stats.iter().enumerate() {
        expect_traffic(s, (0, 0), &format!("graph thread {t}"), &pmd);
    }
    std::thread::sleep(Duration::from_secs(1));
    let out = pmd.stop();
    let streams = stream_totals(&out);
    assert_eq!(streams.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1], "{}", tail(&out, 30));
    for (q, rx, tx) in streams {
        assert!(
            tx > 1000 && rx > 1000,
            "queue pair {q}: {tx} frames sent, {rx} received\n{}",
            tail(&out, 30)
        );
    }
    // Each thread counted its own pair's frames and none of the other's.
    for (t, s) in stats.iter().enumerate() {
        let (rx, tx) = (s.queue_rx_packets[t].get(), s.queue_tx_packets[t].get());
        assert!(rx > 1000 && tx > 1000, "thread {t}, its pair: rx {rx} tx {tx}");
        let o = 1 - t;
        assert_eq!(s.queue_rx_packets[o].get() + s.queue_tx_packets[o].get(), 0, "thread {t} used pair {o}");
        assert_eq!(s.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);
    }
    // Thread 0's brick holds the connection state.
    assert_eq!(stats[0].connections.load(Ordering::Relaxed), 1);
    assert_eq!(stats[1].connections.load(Ordering::Relaxed), 0);
    drop(runners);
    assert!(!sock.exists(), "socket file left behind");
}

/// A device served by two graph threads behind a spread brick in thread 0's graph, as
/// butterflyd runs it: the sibling's frames cross to thread 0 through a queue link, an echo
/// sends every frame back, and the spread brick hands each flow to one of the two threads,
/// so all four queue pairs (two per thread, each flow kept to one) carry frames both ways
/// and the sibling's RX frames crossed back.
#[test]
fn a_spread_brick_hands_flows_to_both_threads() {
    use brick_vhost::VhostSpread;
    let dir = TempDir::new("vu-spread");
    let sock = dir.path("vm.sock");
    let mut c = cfg("vu-spread");
    c.queue_pairs = 4;
    c.threads = 2;
    let mut nic = VhostUserNic::server(&sock, c).unwrap();
    let sibling = nic.take_siblings().unwrap().pop().unwrap();
    let stats = [nic.stats(), sibling.stats()];
    let rx = nic.rx_threads();
    assert_eq!(rx.running(), 0, "nothing runs before a driver connects");
    let (to_sibling, from_owner) = brick_core::queue_link(64, Side::West).unwrap();

    let mut g = Graph::new("owner");
    let echo = g.add("echo", Echo).unwrap();
    let spread = g.add("spread", VhostSpread::new(rx.clone())).unwrap();
    let vm = g.add("vm", nic).unwrap();
    let link = g.add("to-sibling", to_sibling).unwrap();
    g.link(echo, spread).unwrap();
    for (t, b) in [vm, link].into_iter().enumerate() {
        let (port, _) = g.link(spread, b).unwrap();
        g.brick_mut::<VhostSpread>(spread).unwrap().set_thread_port(t, port);
    }
    let mut g1 = Graph::new("sibling");
    let end = g1.add("from-owner", from_owner).unwrap();
    let vm1 = g1.add("vm", sibling).unwrap();
    g1.link(end, vm1).unwrap();
    let owner = Runner::spawn(g, RunnerConfig::default()).unwrap();
    let other = Runner::spawn(g1, RunnerConfig::default()).unwrap();

    let pmd = TestPmd::start_queues(&sock, false, &dir.path("pmd.log"), "spr", "flowgen", 4, &[]);
    for (t, s) in stats.iter().enumerate() {
        expect_traffic(s, (0, 0), &format!("graph thread {t}"), &pmd);
    }
    assert_eq!(rx.running(), 0b11, "both threads run an RX queue");
    std::thread::sleep(Duration::from_secs(1));
    let out = pmd.stop();
    let streams = stream_totals(&out);
    assert_eq!(streams.len(), 4, "one stream per pair\n{}", tail(&out, 30));
    for (q, rx, tx) in streams {
        assert!(tx > 1000 && rx > 1000, "queue pair {q}: {tx} sent, {rx} received\n{}", tail(&out, 30));
    }
    let g = owner.stop().unwrap();
    let sent = g.brick::<VhostSpread>(spread).unwrap().sent().to_vec();
    assert!(sent.iter().all(|&n| n > 1000), "frames towards each thread: {sent:?}");
    // Thread 1 wrote into the guest exactly what the spread brick sent it, less what its
    // ring had no room for.
    let s1 = &stats[1];
    let dropped: u64 = (0..brick_vhost::DROP_REASONS.len()).map(|i| s1.drop_count(i)).sum();
    assert!(s1.rx_packets.get() + dropped <= sent[1] && s1.rx_packets.get() > 1000);
    drop(other);
    drop(g);
    assert_eq!(rx.running(), 0, "nothing runs once the connection is gone");
}

#[test]
fn client_mode_connects_to_a_waiting_frontend() {
    // Backend restarts in client mode are tested with QEMU (tests/guest_pair.rs): DPDK
    // 22.11's virtio_user server mode only re-accepts on a link-status read, which testpmd
    // does not do on its own.
    let dir = TempDir::new("vu-client");
    let sock = dir.path("vm.sock");
    // virtio_user is the server (like QEMU with server=on); it waits for us.
    let pmd = TestPmd::start(&sock, true, &dir.path("pmd.log"), "c");
    assert!(wait_until(Duration::from_secs(10), || sock.exists()), "testpmd did not create its socket");
    let nic = VhostUserNic::client(&sock, cfg("vu-client")).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);
    expect_traffic(&stats, (0, 0), "client mode", &pmd);
    assert_eq!(stats.drop_count(brick_vhost::DropReason::BadDescriptor as usize), 0);
    drop(runner);
    // our side closed the connection; the frontend's socket is not ours to delete
    assert!(sock.exists());
    let out = pmd.stop();
    assert!(last_rx_packets(&out) > 1000, "testpmd totals:\n{}", tail(&out, 25));
}

/// Keeps every packet it receives until its timer (2 ms, armed by the first packet held)
/// fires, then frees them all: a slow consumer that drains the NIC's pool in bursts. The
/// timer is its wake fd, so it is a source like a NIC.
struct Hoard {
    timer: std::os::fd::OwnedFd,
    armed: bool,
    held: Vec<brick_core::Packet>,
    freed: Arc<AtomicU64>,
}

impl Hoard {
    fn new(freed: Arc<AtomicU64>) -> Hoard {
        use std::os::fd::FromRawFd;
        // SAFETY: plain timerfd_create(2); the result is checked before being owned.
        let fd =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        assert!(fd >= 0, "timerfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nothing else owns.
        Hoard {
            timer: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            armed: false,
            held: Vec::new(),
            freed,
        }
    }
}

impl Brick for Hoard {
    fn kind(&self) -> &'static str {
        "hoard"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        self.held.extend(pkts.drain());
        if !self.armed && !self.held.is_empty() {
            let spec = libc::itimerspec {
                it_interval: libc::timespec { tv_sec: 0, tv_nsec: 0 },
                it_value: libc::timespec { tv_sec: 0, tv_nsec: 2_000_000 },
            };
            // SAFETY: arms our own timerfd with a valid, live itimerspec.
            let r = unsafe { libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
            assert_eq!(r, 0, "timerfd_settime: {}", std::io::Error::last_os_error());
            self.armed = true;
        }
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.timer.as_raw_fd())
    }
    fn poll(&mut self, _: &mut Output<'_>) -> usize {
        let mut expirations = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from our non-blocking timerfd.
        let r = unsafe { libc::read(self.timer.as_raw_fd(), (&mut expirations as *mut u64).cast(), 8) };
        if r != 8 {
            return 0;
        }
        self.armed = false;
        let n = self.held.len();
        self.freed.fetch_add(n as u64, Ordering::Relaxed);
        self.held.clear();
        n
    }
}

/// A source that never has work (an idle NIC): with it the graph has enough sources to poll
/// only the ready ones, as butterflyd's graphs do.
struct Idle(EventFd);

impl Brick for Idle {
    fn kind(&self) -> &'static str {
        "idle"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}

/// A guest keeps sending while the NIC's pool is empty: the NIC stops with frames left in the
/// ring and the guest does not kick again for them. The brick must come back on its own once
/// buffers are freed (`Output::retry_soon`); before, in a graph that polls only ready sources,
/// it waited for the next timer round (here an hour away: it stalled for good).
#[test]
fn a_nic_whose_pool_ran_dry_comes_back_without_a_kick() {
    let dir = TempDir::new("vu-dry");
    let sock = dir.path("vm.sock");
    let mut c = VhostUserConfig::new("vu-dry", [0x52, 0x54, 0, 0, 0, 9], PacketPool::with_count(64).unwrap());
    c.reconnect_interval = Duration::from_millis(100);
    let nic = VhostUserNic::server(&sock, c).unwrap();
    let stats = nic.stats();
    let freed = Arc::new(AtomicU64::new(0));
    let mut g = Graph::new("dry");
    g.set_tick_interval(Duration::from_secs(3600));
    let vm = g.add("vm", nic).unwrap();
    let hoard = g.add("hoard", Hoard::new(Arc::clone(&freed))).unwrap();
    g.link(hoard, vm).unwrap();
    for i in 0..3 {
        g.add(format!("idle{i}"), Idle(EventFd::new(libc::EFD_NONBLOCK).unwrap())).unwrap();
    }
    let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
    let pmd = TestPmd::start(&sock, false, &dir.path("pmd.log"), "dry");

    // 200 refills of the 64-buffer pool: each one needs the NIC to be polled again after its
    // pool ran dry. (Typically a refill every 2–4 ms here, so a few seconds at most.)
    let refilled = wait_until(Duration::from_secs(30), || freed.load(Ordering::Relaxed) >= 200 * 64);
    let (tx, dry, got) = (stats.tx_packets.get(), stats.pool_empty.get(), freed.load(Ordering::Relaxed));
    drop(pmd);
    drop(runner);
    assert!(dry > 0, "the pool never ran dry: the test did not test anything (tx {tx})");
    assert!(
        refilled,
        "the NIC stalled once its pool ran dry: {got} frames freed, {tx} taken, pool empty {dry} times"
    );
}

/// A server socket path holding a regular file is refused and the file kept (butterflyd
/// used to delete whatever was there first); a stale socket of an earlier run is replaced.
#[test]
fn server_mode_replaces_a_stale_socket_but_never_a_file() {
    let dir = TempDir::new("vu-path");
    let file = dir.path("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    match VhostUserNic::server(&file, cfg("vu-file")) {
        Err(brick_vhost::VhostError::NotASocket(p)) => assert_eq!(p, file),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a regular file was taken as a socket path"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    let stale = dir.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists(), "the listener left its socket file behind");
    let nic = VhostUserNic::server(&stale, cfg("vu-stale")).expect("a stale socket is replaced");
    drop(nic);
}

/// A connected guest that sends nothing lets the graph sleep: kicks are drained whenever
/// they are armed, including a kick with no new chain behind it (virtio_user kicks its
/// queues when it starts them), which used to keep the kick fd readable and the graph
/// thread spinning on epoll (about 180,000 wake-ups a second).
#[test]
fn an_idle_guest_lets_the_graph_sleep() {
    let dir = TempDir::new("vu-idle");
    let sock = dir.path("vm.sock");
    let nic = VhostUserNic::server(&sock, cfg("vu-idle")).unwrap();
    let stats = nic.stats();
    let runner = echo_graph(nic);
    let rs = runner.stats();
    let pmd = TestPmd::start_mode(&sock, false, &dir.path("pmd.log"), "idle", "rxonly");
    assert!(
        wait_until(Duration::from_secs(20), || stats.connected.load(Ordering::Relaxed)
            && stats.acked_features.load(Ordering::Relaxed) != 0),
        "testpmd did not connect:\n{}",
        tail(&pmd.output(), 25)
    );
    // Let the guest finish starting its queues, then count the graph's rounds.
    std::thread::sleep(Duration::from_secs(2));
    let r0 = rs.rounds.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let rounds = rs.rounds.load(Ordering::Relaxed) - r0;
    // Timer rounds (10 a second) and the odd wake-up: far below a spinning loop.
    assert!(
        rounds < 500,
        "the graph ran {rounds} rounds in 2 s with an idle guest (kicks {})",
        stats.guest_kicks.get()
    );
    assert_eq!(stats.tx_packets.get(), 0, "the guest sent nothing");
    drop(pmd);
    drop(runner);
}

/// Counts the frames it receives by the size of their buffer, and drops them.
struct BufferSizes {
    /// Frames in buffers of more than `small_room` bytes, and in the others.
    counts: Arc<[AtomicU64; 2]>,
    small_room: usize,
}

impl Brick for BufferSizes {
    fn kind(&self) -> &'static str {
        "buffer-sizes"
    }
    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, _out: &mut Output<'_>) {
        for p in pkts.drain() {
            let big = p.len() + p.tailroom() > self.small_room;
            self.counts[usize::from(!big)].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// With TSO the NIC's pool holds 64 KiB buffers; testpmd's 64-byte frames must land in the
/// small pool instead, and do not without one (the check that this test can fail).
#[test]
fn small_frames_from_a_tso_guest_go_to_the_small_pool() {
    let dir = TempDir::new("vu-small");
    let small_room = 2048;
    for with_small in [true, false] {
        let sock = dir.path(&format!("vm-{with_small}.sock"));
        let big =
            PacketPool::new(PoolConfig { count: 512, data_room: TSO_DATA_ROOM, ..PoolConfig::default() })
                .unwrap();
        let mut c = VhostUserConfig::new("vu-small", [0x52, 0x54, 0, 0, 0, 9], big);
        c.offloads = Offloads { csum: true, tso: true };
        c.small_pool = with_small.then(|| {
            PacketPool::new(PoolConfig { count: 4096, data_room: small_room, ..PoolConfig::default() })
                .unwrap()
        });
        let nic = VhostUserNic::server(&sock, c).unwrap();
        let stats = nic.stats();
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let mut g = Graph::new("sizes");
        let vm = g.add("vm", nic).unwrap();
        let sizes = g.add("sizes", BufferSizes { counts: Arc::clone(&counts), small_room }).unwrap();
        g.link(sizes, vm).unwrap();
        let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
        let pmd = TestPmd::start(&sock, false, &dir.path(&format!("pmd-{with_small}.log")), "small");
        let seen = || counts[0].load(Ordering::Relaxed) + counts[1].load(Ordering::Relaxed);
        let ok = wait_until(Duration::from_secs(20), || seen() > 10_000);
        let out = pmd.output();
        drop(pmd);
        drop(runner);
        assert!(ok, "no traffic (guest tx {}):\n{}", stats.tx_packets.get(), tail(&out, 25));
        let (in_big, in_small) = (counts[0].load(Ordering::Relaxed), counts[1].load(Ordering::Relaxed));
        match with_small {
            true => assert_eq!(in_big, 0, "{in_big} small frames in big buffers ({in_small} in small ones)"),
            false => assert_eq!(in_small, 0, "{in_small} frames in small buffers with no small pool"),
        }
    }
}

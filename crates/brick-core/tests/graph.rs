//! Graph behaviour: linking, unlinking in the middle of a side, live changes from another
//! thread, counters, DOT export, loops.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brick_core::bricks::{Diode, Hub, Nop, RxTx, UserDipole};
use brick_core::{Brick, Burst, Graph, GraphError, Output, PacketPool, PortId, Runner, RunnerConfig, Side};

/// A sink that records the first byte of every packet it receives.
fn recorder(side: Side) -> (impl Brick, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    let brick = RxTx::new(
        side,
        |_: &mut Burst| {},
        move |b: &mut Burst| {
            let mut s = s.lock().unwrap();
            for p in b.drain() {
                s.push(p.data()[0]);
            }
        },
    );
    (brick, seen)
}

fn burst_of(pool: &PacketPool, tags: &[u8]) -> Burst {
    let mut b = Burst::new();
    for &t in tags {
        b.push(pool.alloc_from(&[t; 60]).unwrap()).unwrap();
    }
    b
}

#[test]
fn hub_reaches_every_port_after_unlinking_one_in_the_middle() {
    // Packetgraph's flooding stopped at the first hole after a middle port was unlinked.
    let pool = PacketPool::with_count(64).unwrap();
    let mut g = Graph::new("t");
    let hub = g.add("hub", Hub::new(pool.clone())).unwrap();
    let mut sinks = Vec::new();
    for i in 0..4 {
        let (r, seen) = recorder(Side::West);
        let id = g.add(format!("sink{i}"), r).unwrap();
        let (hp, _) = g.link(hub, id).unwrap();
        assert_eq!(hp, i as PortId);
        sinks.push((id, seen));
    }
    g.unlink(hub, Side::East, 1).unwrap();
    g.inject(hub, Side::West, 0, &mut burst_of(&pool, &[7])).unwrap();
    let counts: Vec<usize> = sinks.iter().map(|(_, s)| s.lock().unwrap().len()).collect();
    assert_eq!(counts, vec![1, 0, 1, 1]);
    // The hole is reused by the next link, and the other ports keep their numbers.
    let (r, seen) = recorder(Side::West);
    let late = g.add("late", r).unwrap();
    assert_eq!(g.link(hub, late).unwrap().0, 1);
    g.inject(hub, Side::West, 0, &mut burst_of(&pool, &[8])).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[8]);
    assert_eq!(sinks[3].1.lock().unwrap().as_slice(), &[7, 8]);
    assert_eq!(pool.available(), 64, "every copy went back to the pool");
}

#[test]
fn hub_never_sends_back_to_the_ingress_port() {
    let pool = PacketPool::with_count(16).unwrap();
    let mut g = Graph::new("t");
    let hub = g.add("hub", Hub::new(pool.clone())).unwrap();
    let (r0, s0) = recorder(Side::West);
    let (r1, s1) = recorder(Side::West);
    let a = g.add("a", r0).unwrap();
    let b = g.add("b", r1).unwrap();
    g.link(hub, a).unwrap();
    g.link(hub, b).unwrap();
    g.inject(hub, Side::East, 0, &mut burst_of(&pool, &[1, 2])).unwrap();
    assert!(s0.lock().unwrap().is_empty());
    assert_eq!(s1.lock().unwrap().as_slice(), &[1, 2]);
}

#[test]
fn chain_counts_packets_and_bytes_per_side() {
    let pool = PacketPool::with_count(64).unwrap();
    let mut g = Graph::new("t");
    let a = g.add("a", Nop).unwrap();
    let b = g.add("b", Nop).unwrap();
    let (r, seen) = recorder(Side::West);
    let sink = g.add("sink", r).unwrap();
    g.chain(&[a, b, sink]).unwrap();
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[1, 2, 3])).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[1, 2, 3]);
    let sb = g.stats(b).unwrap();
    assert_eq!(sb.side(Side::West).pkts_in.get(), 3);
    assert_eq!(sb.side(Side::West).bytes_in.get(), 180);
    assert_eq!(sb.side(Side::East).pkts_out.get(), 3);
    assert_eq!(sb.side(Side::East).bytes_out.get(), 180);
    assert!(sb.cycles_per_packet().is_some());
    assert_eq!(g.stats(a).unwrap().total_drops(), 0);
}

#[test]
fn emitting_to_an_unlinked_port_is_a_counted_drop() {
    let pool = PacketPool::with_count(8).unwrap();
    let mut g = Graph::new("t");
    let a = g.add("a", Nop).unwrap();
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[1, 2])).unwrap();
    assert_eq!(g.stats(a).unwrap().drops_of("unlinked port"), Some(2));
    assert_eq!(pool.available(), 8);
}

#[test]
fn diode_blocks_one_direction_and_counts() {
    let pool = PacketPool::with_count(8).unwrap();
    let mut g = Graph::new("t");
    let (rw, sw) = recorder(Side::East);
    let (re, se) = recorder(Side::West);
    let w = g.add("w", rw).unwrap();
    let d = g.add("d", Diode::new(Side::West)).unwrap();
    let e = g.add("e", re).unwrap();
    g.chain(&[w, d, e]).unwrap();
    g.inject(d, Side::West, 0, &mut burst_of(&pool, &[1])).unwrap();
    g.inject(d, Side::East, 0, &mut burst_of(&pool, &[2])).unwrap();
    assert_eq!(se.lock().unwrap().as_slice(), &[1]);
    assert!(sw.lock().unwrap().is_empty());
    assert_eq!(g.stats(d).unwrap().drops_of("wrong direction"), Some(1));
}

#[test]
fn user_dipole_filters_with_a_closure() {
    let pool = PacketPool::with_count(8).unwrap();
    let mut g = Graph::new("t");
    let f = g.add("odd", UserDipole::new(|_, p: &mut brick_core::Packet| p.data()[0] % 2 == 1)).unwrap();
    let (r, seen) = recorder(Side::West);
    let sink = g.add("sink", r).unwrap();
    g.link(f, sink).unwrap();
    g.inject(f, Side::West, 0, &mut burst_of(&pool, &[1, 2, 3, 4])).unwrap();
    assert_eq!(seen.lock().unwrap().as_slice(), &[1, 3]);
    assert_eq!(g.stats(f).unwrap().drops_of("filtered"), Some(2));
}

#[test]
fn errors_name_the_problem_and_change_nothing() {
    let mut g = Graph::new("t");
    let a = g.add("a", Nop).unwrap();
    let b = g.add("b", Nop).unwrap();
    assert_eq!(g.add("a", Nop).unwrap_err(), GraphError::NameTaken("a".into()));
    assert!(matches!(g.link(a, a), Err(GraphError::SelfLink(_))));
    g.link(a, b).unwrap();
    let c = g.add("c", Nop).unwrap();
    assert!(matches!(g.link(a, c), Err(GraphError::PortsExhausted { max: 1, .. })));
    assert!(matches!(g.unlink(c, Side::East, 0), Err(GraphError::NotLinked { .. })));
    g.remove(c).unwrap();
    assert!(matches!(g.link(b, c), Err(GraphError::UnknownBrick(_))));
    assert_eq!(g.peer(a, Side::East, 0).unwrap().map(|(_, p)| p), Some(0));
    assert!(g.brick::<Diode>(a).is_err());
    assert!(g.brick::<Nop>(a).is_ok());
}

#[test]
fn removing_a_brick_unlinks_and_notifies_peers() {
    struct Watch(Arc<AtomicUsize>);
    impl Brick for Watch {
        fn kind(&self) -> &'static str {
            "watch"
        }
        fn process(&mut self, _: Side, _: PortId, p: &mut Burst, _: &mut Output<'_>) {
            p.clear();
        }
        fn on_unlink(&mut self, _: Side, _: PortId) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
    let unlinks = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::new("t");
    let w = g.add("w", Watch(Arc::clone(&unlinks))).unwrap();
    let n = g.add("n", Nop).unwrap();
    g.link(w, n).unwrap();
    g.remove(n).unwrap();
    assert_eq!(unlinks.load(Ordering::Relaxed), 1);
    assert!(g.id_of("n").is_err());
    // The name is free again and the new brick gets a different id.
    let n2 = g.add("n", Nop).unwrap();
    assert_ne!(n, n2);
}

#[test]
fn a_loop_is_cut_and_counted() {
    let pool = PacketPool::with_count(8).unwrap();
    let mut g = Graph::new("t");
    let a = g.add("a", Hub::new(pool.clone())).unwrap();
    let b = g.add("b", Hub::new(pool.clone())).unwrap();
    // Two links between two hubs make a loop: a.east0→b.west0, b.west1→a.east1 …
    g.link(a, b).unwrap();
    g.link(a, b).unwrap();
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[1])).unwrap();
    let looped = g.stats(a).unwrap().drops_of("graph loop").unwrap()
        + g.stats(b).unwrap().drops_of("graph loop").unwrap();
    assert!(looped > 0);
    assert_eq!(pool.available(), 8);
}

#[test]
fn dot_export_names_bricks_ports_and_counters() {
    let pool = PacketPool::with_count(8).unwrap();
    let mut g = Graph::new("dot");
    let a = g.add("nic0", Nop).unwrap();
    let b = g.add("sw|0", Nop).unwrap();
    g.link(a, b).unwrap();
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[1])).unwrap();
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph \"dot\""));
    assert!(dot.contains("nic0"));
    assert!(dot.contains("sw\\|0"), "record separators are escaped: {dot}");
    assert!(dot.contains("(nop)"));
    assert!(dot.contains("n0 -> n1"));
    assert!(dot.contains("drop unlinked port: 1"));
}

/// Two graphs as clusters of one digraph: node ids do not collide, and Graphviz accepts it.
#[test]
fn dot_clusters_of_several_graphs_make_one_valid_digraph() {
    let mut graphs = Vec::new();
    for w in 0..2 {
        let mut g = Graph::new(format!("worker-{w}"));
        let a = g.add("nic", Nop).unwrap();
        let b = g.add("vtep", Nop).unwrap();
        g.link(a, b).unwrap();
        graphs.push(g);
    }
    let mut dot = format!("digraph \"all\" {{\n{}", brick_core::DOT_STYLE);
    for (w, g) in graphs.iter().enumerate() {
        dot.push_str(&g.to_dot_cluster(&format!("w{w}")));
    }
    dot.push_str("}\n");
    assert!(dot.contains("subgraph cluster_w0") && dot.contains("label=\"worker-1\""));
    assert!(dot.contains("w0_n0 -> w0_n1") && dot.contains("w1_n0 -> w1_n1"), "{dot}");
    // Graphviz (installed by scripts/setup.sh) parses it as one graph.
    if let Ok(out) = std::process::Command::new("dot")
        .arg("-Tcanon")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(dot.as_bytes())?;
            c.wait_with_output()
        })
    {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).matches("digraph").count(), 1);
    }
}

#[test]
fn live_changes_from_a_control_thread_do_not_stop_untouched_paths() {
    // A source feeds a sink continuously on one path while another path is rewired 50 times.
    let pool = PacketPool::with_count(1024).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut g = Graph::new("live");
    let (p, s) = (pool.clone(), Arc::clone(&sent));
    let src = g
        .add(
            "src",
            RxTx::new(
                Side::East,
                move |b: &mut Burst| {
                    while let Some(pkt) = p.alloc_from(&[1; 64]) {
                        if b.push(pkt).is_err() || b.len() == 8 {
                            break;
                        }
                    }
                    s.fetch_add(b.len(), Ordering::Relaxed);
                },
                |b: &mut Burst| b.clear(),
            ),
        )
        .unwrap();
    let r = Arc::clone(&received);
    let sink = g
        .add(
            "sink",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    r.fetch_add(b.len(), Ordering::Relaxed);
                    b.clear();
                },
            ),
        )
        .unwrap();
    let nop = g.add("nop", Nop).unwrap();
    g.chain(&[src, nop, sink]).unwrap();
    let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
    let h = runner.handle();
    for i in 0..50 {
        let before = received.load(Ordering::Relaxed);
        h.exec(move |g| {
            let x = g.add(format!("x{i}"), Nop).unwrap();
            let y = g.add(format!("y{i}"), Nop).unwrap();
            g.link(x, y).unwrap();
            g.remove(x).unwrap();
            g.remove(y).unwrap();
        })
        .unwrap();
        // Traffic keeps flowing between changes.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::Relaxed) == before {
            assert!(std::time::Instant::now() < deadline, "traffic stopped after change {i}");
            std::thread::yield_now();
        }
    }
    let g = runner.stop().unwrap();
    let sink_stats = g.stats(g.id_of("sink").unwrap()).unwrap();
    assert_eq!(g.len(), 3);
    // Nothing was lost on the untouched path: everything sent was received.
    assert_eq!(sent.load(Ordering::Relaxed), received.load(Ordering::Relaxed));
    assert_eq!(sink_stats.side(Side::West).pkts_in.get() as usize, received.load(Ordering::Relaxed));
}

#[test]
fn exec_on_a_stopped_graph_reports_disconnected() {
    let g = Graph::new("gone");
    let h = g.handle();
    drop(g);
    assert_eq!(h.exec(|_| ()).unwrap_err(), GraphError::Disconnected);
}

#[test]
fn exec_on_an_unpolled_graph_times_out() {
    let g = Graph::new("idle");
    let h = g.handle();
    let e = h.exec_timeout(Duration::from_millis(50), |_| ()).unwrap_err();
    assert_eq!(e, GraphError::Timeout(Duration::from_millis(50)));
    drop(g);
}

#[test]
fn replication_beyond_a_burst_is_split_into_bursts() {
    // A brick emitting 3 copies of 64 packets on one port: the next brick gets bursts of ≤ 64.
    struct Triple(PacketPool);
    impl Brick for Triple {
        fn kind(&self) -> &'static str {
            "triple"
        }
        fn process(&mut self, side: Side, _: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
            for p in pkts.drain() {
                for _ in 0..2 {
                    out.emit(side.opposite(), 0, p.copy_into(&self.0).unwrap());
                }
                out.emit(side.opposite(), 0, p);
            }
        }
    }
    let pool = PacketPool::with_count(256).unwrap();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&sizes);
    let mut g = Graph::new("t");
    let t = g.add("t", Triple(pool.clone())).unwrap();
    let sink = g
        .add(
            "sink",
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    s.lock().unwrap().push(b.len());
                    b.clear();
                },
            ),
        )
        .unwrap();
    g.link(t, sink).unwrap();
    let tags: Vec<u8> = (0..64).collect();
    g.inject(t, Side::West, 0, &mut burst_of(&pool, &tags)).unwrap();
    assert_eq!(sizes.lock().unwrap().as_slice(), &[64, 64, 64]);
    assert_eq!(pool.available(), 256);
}

#[test]
fn a_flipped_source_emits_on_its_west_side() {
    // An RxTx whose port is on the east side, mounted backwards at the east end of a chain.
    let pool = PacketPool::with_count(8).unwrap();
    let p = pool.clone();
    let mut once = true;
    let got = Arc::new(Mutex::new(Vec::new()));
    let g2 = Arc::clone(&got);
    let vm = brick_core::bricks::Flipped::new(RxTx::new(
        Side::East,
        move |b: &mut Burst| {
            if std::mem::take(&mut once) {
                b.push(p.alloc_from(&[9; 60]).unwrap()).unwrap();
            }
        },
        move |b: &mut Burst| g2.lock().unwrap().extend(b.drain().map(|p| p.data()[0])),
    ));
    let (rec, seen) = recorder(Side::East);
    let mut g = Graph::new("t");
    let west = g.add("west", rec).unwrap();
    let vm = g.add("vm", vm).unwrap();
    g.link(west, vm).unwrap();
    g.poll_all();
    assert_eq!(seen.lock().unwrap().as_slice(), &[9], "the flipped source's packet went west");
    g.inject(vm, Side::West, 0, &mut burst_of(&pool, &[5])).unwrap();
    assert_eq!(got.lock().unwrap().as_slice(), &[5], "packets reaching its west side are received");
}

/// A source with an eventfd as its wake fd: a poll counts itself and reports one unit of
/// work when the fd was readable (and silences it).
struct FdSource {
    fd: std::os::fd::OwnedFd,
    polls: Arc<AtomicUsize>,
}

impl FdSource {
    fn new() -> (FdSource, Arc<AtomicUsize>) {
        use std::os::fd::FromRawFd;
        // SAFETY: plain eventfd(2); the descriptor is checked, then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        let polls = Arc::new(AtomicUsize::new(0));
        // SAFETY: a fresh descriptor nothing else owns.
        (FdSource { fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }, polls: Arc::clone(&polls) }, polls)
    }
}

fn ring(fd: std::os::fd::RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd.
    assert_eq!(unsafe { libc::write(fd, (&one as *const u64).cast(), 8) }, 8);
}

impl Brick for FdSource {
    fn kind(&self) -> &'static str {
        "fd-source"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.fd.as_raw_fd())
    }
    fn poll(&mut self, _: &mut Output<'_>) -> usize {
        use std::os::fd::AsRawFd;
        self.polls.fetch_add(1, Ordering::Relaxed);
        let mut v = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64; non-blocking.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        usize::from(r == 8)
    }
}

/// A source without a wake fd: polled every round.
struct Blind(Arc<AtomicUsize>);

impl Brick for Blind {
    fn kind(&self) -> &'static str {
        "blind"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn poll(&mut self, _: &mut Output<'_>) -> usize {
        self.0.fetch_add(1, Ordering::Relaxed);
        0
    }
}

/// `poll_ready` polls a source only when its fd is readable (seen by a wait or by its own
/// scan), when it found work last time, or when it has no fd; a timer round polls all.
#[test]
fn poll_ready_polls_only_the_sources_that_may_have_work() {
    use std::os::fd::AsRawFd;
    let mut g = Graph::new("ready");
    g.set_tick_interval(Duration::from_secs(3600));
    let mut fds = Vec::new();
    let mut polls = Vec::new();
    for i in 0..6 {
        let (s, p) = FdSource::new();
        fds.push(s.fd.as_raw_fd());
        polls.push(p);
        g.add(format!("s{i}"), s).unwrap();
    }
    let blind = Arc::new(AtomicUsize::new(0));
    g.add("blind", Blind(Arc::clone(&blind))).unwrap();
    let counts =
        |polls: &[Arc<AtomicUsize>]| polls.iter().map(|p| p.load(Ordering::Relaxed)).collect::<Vec<_>>();

    // A new source set: everything is polled once.
    assert_eq!(g.poll_ready(), 0);
    assert_eq!(counts(&polls), vec![1; 6]);
    // Busy round (no wait): the graph's own scan finds source 2 ready.
    ring(fds[2]);
    assert_eq!(g.poll_ready(), 1);
    assert_eq!(counts(&polls), vec![1, 1, 2, 1, 1, 1]);
    // After a wait that saw source 4: it, and source 2 (found work last time), are polled.
    ring(fds[4]);
    g.wait_for_work(Duration::from_secs(5), Duration::from_secs(5));
    assert_eq!(g.poll_ready(), 1);
    assert_eq!(counts(&polls), vec![1, 1, 3, 1, 2, 1]);
    // Nothing ready: source 4 (it found work last time) once more, finding nothing.
    assert_eq!(g.poll_ready(), 0);
    assert_eq!(counts(&polls), vec![1, 1, 3, 1, 3, 1]);
    // Then nobody is hot: only the source without a fd.
    assert_eq!(g.poll_ready(), 0);
    assert_eq!(counts(&polls), vec![1, 1, 3, 1, 3, 1]);
    assert_eq!(blind.load(Ordering::Relaxed), 5, "a source without a fd is polled every round");
    // A timer round polls everyone.
    g.set_tick_interval(Duration::ZERO);
    g.poll_ready();
    assert_eq!(counts(&polls), vec![2, 2, 4, 2, 4, 2]);
}

/// The wait set follows sources as they come and go (each joins and leaves it alone): after
/// sources before and after it are removed, a source's fd still wakes the graph and leads
/// to that source, and a removed source's fd no longer does.
#[test]
fn sources_removed_around_a_source_leave_its_wake_up_working() {
    use std::os::fd::AsRawFd;
    let mut g = Graph::new("churn");
    g.set_tick_interval(Duration::from_secs(3600));
    let mut ids = Vec::new();
    let mut fds = Vec::new();
    let mut polls = Vec::new();
    for i in 0..8 {
        let (s, p) = FdSource::new();
        fds.push(s.fd.as_raw_fd());
        polls.push(p);
        ids.push(g.add(format!("s{i}"), s).unwrap());
    }
    assert_eq!(g.poll_ready(), 0);
    assert_eq!(g.poll_ready(), 0);
    // Remove sources 0, 3 and 7: the others shift position.
    let removed: Vec<_> = [0, 3, 7].iter().map(|&i| g.remove(ids[i]).unwrap()).collect();
    // A new source joins, and is polled once (it may have work already).
    let (late, late_polls) = FdSource::new();
    let late_fd = late.fd.as_raw_fd();
    g.add("late", late).unwrap();
    assert_eq!(g.poll_ready(), 0);
    assert_eq!(late_polls.load(Ordering::Relaxed), 1);
    let before: Vec<usize> = polls.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    // Source 5 (now at another position) rings: the wait reports it and only it is polled.
    ring(fds[5]);
    let t = std::time::Instant::now();
    g.wait_for_work(Duration::from_secs(5), Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(2), "source 5's fd woke the graph");
    assert_eq!(g.poll_ready(), 1);
    let after: Vec<usize> = polls.iter().map(|p| p.load(Ordering::Relaxed)).collect();
    for i in [1, 2, 4, 6] {
        assert_eq!(after[i], before[i], "source {i} was not polled");
    }
    assert_eq!(after[5], before[5] + 1, "source 5 was polled");
    // The late source's fd works too.
    ring(late_fd);
    g.wait_for_work(Duration::from_secs(5), Duration::from_secs(5));
    assert_eq!(g.poll_ready(), 1);
    assert_eq!(late_polls.load(Ordering::Relaxed), 2);
    // A removed source's fd (still open: we hold the brick) no longer wakes the graph.
    ring(fds[3]);
    let t = std::time::Instant::now();
    g.wait_for_work(Duration::from_millis(300), Duration::from_millis(300));
    assert!(t.elapsed() >= Duration::from_millis(250), "a removed source's fd woke the graph");
    drop(removed);
}

/// A source whose device keeps work its wake fd already signalled (a vhost-user guest's ring
/// while the pool is empty): it asks to be polled again soon for its first `starved` polls,
/// never rings its fd, and finds nothing.
struct Starved {
    inner: FdSource,
    starved: usize,
}

impl Brick for Starved {
    fn kind(&self) -> &'static str {
        "starved"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        self.inner.wake_fd()
    }
    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        let n = self.inner.polls.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= self.starved {
            out.retry_soon();
        }
        0
    }
}

/// `Output::retry_soon` brings a source back within the busy cap even though its fd stays
/// silent, and only while it asks: with few sources (every one polled each round) and with
/// many (only the ready, hot or retrying ones).
#[test]
fn a_source_that_asks_to_retry_soon_is_polled_again_without_its_fd() {
    for others in [0usize, 5] {
        let mut g = Graph::new("retry");
        g.set_tick_interval(Duration::from_secs(3600));
        let (inner, polls) = FdSource::new();
        g.add("starved", Starved { inner, starved: 3 }).unwrap();
        for i in 0..others {
            g.add(format!("idle{i}"), FdSource::new().0).unwrap();
        }
        // Round 1 polls every source of a new set; rounds 2 and 3 come from the retries.
        let mut waits = Vec::new();
        for round in 1..=3 {
            assert_eq!(g.poll_ready(), 0);
            assert_eq!(polls.load(Ordering::Relaxed), round, "{others} others: round {round}");
            let t = std::time::Instant::now();
            g.wait_for_work(Duration::from_secs(5), Duration::from_millis(1));
            waits.push(t.elapsed());
        }
        // The source asked three times: each wait was cut to the 1 ms cap, not 5 s.
        assert!(waits.iter().all(|w| *w < Duration::from_secs(2)), "{others} others: waits {waits:?}");
        assert_eq!(g.poll_ready(), 0);
        assert_eq!(polls.load(Ordering::Relaxed), 4, "{others} others: the fourth poll, asked by the third");
        // It stopped asking: with a scan (many sources) it is no longer polled; with few,
        // every round polls it but the wait is no longer cut short.
        g.poll_ready();
        let expected = if others == 0 { 5 } else { 4 };
        assert_eq!(polls.load(Ordering::Relaxed), expected, "{others} others: after it stopped asking");
        let t = std::time::Instant::now();
        g.wait_for_work(Duration::from_millis(300), Duration::from_millis(1));
        assert!(t.elapsed() >= Duration::from_millis(250), "{others} others: the wait is no longer capped");
    }
}

/// A device that signals only when asked (a vhost-user guest kicks only while the backend
/// has notifications enabled): work it produces rings the fd only while `armed`.
struct QuietDevice {
    pending: AtomicUsize,
    armed: std::sync::atomic::AtomicBool,
    fd: std::os::fd::OwnedFd,
    arms: AtomicUsize,
}

impl QuietDevice {
    fn new() -> Arc<QuietDevice> {
        let (src, _) = FdSource::new();
        Arc::new(QuietDevice {
            pending: AtomicUsize::new(0),
            armed: std::sync::atomic::AtomicBool::new(false),
            fd: src.fd,
            arms: AtomicUsize::new(0),
        })
    }

    /// The other side produces one item: it signals only if the source asked for it.
    fn produce(&self) {
        use std::os::fd::AsRawFd;
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst) {
            ring(self.fd.as_raw_fd());
        }
    }
}

/// The source of a [`QuietDevice`]: disarms while it finds work, arms on request.
struct QuietSource(Arc<QuietDevice>, Arc<AtomicUsize>);

impl Brick for QuietSource {
    fn kind(&self) -> &'static str {
        "quiet"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.0.fd.as_raw_fd())
    }
    fn poll(&mut self, _: &mut Output<'_>) -> usize {
        let n = self.0.pending.swap(0, Ordering::SeqCst);
        if n > 0 {
            self.0.armed.store(false, Ordering::SeqCst);
            self.1.fetch_add(n, Ordering::SeqCst);
        }
        n
    }
    fn arm_wake(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        self.0.arms.fetch_add(1, Ordering::SeqCst);
        let mut v = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from a non-blocking eventfd.
        unsafe { libc::read(self.0.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        self.0.armed.store(true, Ordering::SeqCst);
        self.0.pending.load(Ordering::SeqCst) > 0
    }
}

/// A source that always has work: the runner never sleeps while it is there.
struct Busy;

impl Brick for Busy {
    fn kind(&self) -> &'static str {
        "busy"
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
    fn is_source(&self) -> bool {
        true
    }
    fn wake_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn poll(&mut self, _: &mut Output<'_>) -> usize {
        1
    }
}

/// A runner asks each source to arm its wake fd before it sleeps, and a scan round does so
/// for a source it found idle: a device that signals only when asked is never missed, with
/// few sources (every one polled each round), with many (only the ready or hot ones), and
/// with many of which one keeps the runner from ever sleeping. The runner's longest sleep is
/// an hour, so a missed signal would stall the test.
#[test]
fn a_source_that_must_arm_its_fd_is_woken_by_it() {
    for (others, busy) in [(0usize, false), (5, false), (5, true)] {
        let mut g = Graph::new("arm");
        g.set_tick_interval(Duration::from_secs(3600));
        let dev = QuietDevice::new();
        let taken = Arc::new(AtomicUsize::new(0));
        g.add("quiet", QuietSource(Arc::clone(&dev), Arc::clone(&taken))).unwrap();
        for i in 0..others {
            g.add(format!("idle{i}"), FdSource::new().0).unwrap();
        }
        if busy {
            g.add("busy", Busy).unwrap();
        }
        let cfg = RunnerConfig { max_sleep: Duration::from_secs(3600), ..RunnerConfig::default() };
        let runner = Runner::spawn(g, cfg).unwrap();
        for item in 1..=20 {
            std::thread::sleep(Duration::from_millis(5));
            dev.produce();
            let t = std::time::Instant::now();
            while taken.load(Ordering::SeqCst) < item {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "{others} others: item {item} was never taken"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        runner.stop().unwrap();
        assert!(dev.arms.load(Ordering::SeqCst) >= 20, "{others} others: armed each time it went idle");
    }
}

/// A source that finds work while arming keeps the graph from sleeping: the wait returns at
/// once, and the next round polls the source although its fd never rang.
#[test]
fn work_found_while_arming_cancels_the_sleep() {
    let mut g = Graph::new("arm-work");
    g.set_tick_interval(Duration::from_secs(3600));
    let dev = QuietDevice::new();
    let taken = Arc::new(AtomicUsize::new(0));
    g.add("quiet", QuietSource(Arc::clone(&dev), Arc::clone(&taken))).unwrap();
    for i in 0..5 {
        g.add(format!("idle{i}"), FdSource::new().0).unwrap();
    }
    assert_eq!(g.poll_ready(), 0);
    // Produced while the source is not armed: no signal.
    dev.armed.store(false, Ordering::SeqCst);
    dev.pending.fetch_add(3, Ordering::SeqCst);
    let t = std::time::Instant::now();
    g.wait_for_work(Duration::from_secs(5), Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(2), "the graph did not sleep");
    assert_eq!(g.poll_ready(), 3);
    assert_eq!(taken.load(Ordering::SeqCst), 3);
}

/// A command whose caller gave up (timeout) before it started never runs: the caller may
/// undo its own side of the change. One that started in time is waited for.
#[test]
fn a_timed_out_command_never_runs_late() {
    let mut g = Graph::new("late");
    let h = g.handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&ran);
    // Nobody polls the graph: the command is still queued when the caller gives up.
    let e = h.exec_timeout(Duration::from_millis(50), move |_| r.fetch_add(1, Ordering::SeqCst)).unwrap_err();
    assert!(matches!(e, GraphError::Timeout(_)), "{e:?}");
    g.apply_commands();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the abandoned command did not run when the graph got to it");

    // A command already running when the deadline passes: its result still comes back. (A
    // busy machine may not start it within 50 ms: then it is abandoned, never run; retry.)
    let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
    let mut got = None;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        match runner.handle().exec_timeout(Duration::from_millis(50), |_| {
            std::thread::sleep(Duration::from_millis(300));
            42
        }) {
            Ok(v) => {
                assert!(t.elapsed() >= Duration::from_millis(300), "waited for the running command");
                got = Some(v);
                break;
            }
            Err(e) => assert!(matches!(e, GraphError::Timeout(_)), "{e:?}"),
        }
    }
    assert_eq!(got, Some(42));
    runner.stop().unwrap();
}

/// A brick that claims more ports than a PortId can number.
struct Wide;

impl Brick for Wide {
    fn kind(&self) -> &'static str {
        "wide"
    }
    fn max_ports(&self, _: Side) -> usize {
        usize::MAX
    }
    fn process(&mut self, _: Side, _: PortId, pkts: &mut Burst, _: &mut Output<'_>) {
        pkts.clear();
    }
}

/// Port 65535 is refused even when the brick claims more: the port table must stay
/// numberable by PortId, or `remove` could not walk it and would leave dangling links.
#[test]
fn an_explicit_port_stays_within_port_ids_and_remove_unlinks_all() {
    let mut g = Graph::new("wide");
    let w = g.add("w", Wide).unwrap();
    let n = g.add("n", Nop).unwrap();
    let e = g.link_ports(w, Some(PortId::MAX), n, None).unwrap_err();
    assert!(matches!(&e, GraphError::PortsExhausted { brick, .. } if brick == "w"), "{e:?}");
    g.link_ports(w, Some(PortId::MAX - 1), n, None).unwrap();
    g.remove(n).unwrap();
    // The slot is reused by a new brick: w must not still point at it.
    let n2 = g.add("n2", Nop).unwrap();
    g.link(w, n2).unwrap();
    assert_eq!(g.to_dot().matches("->").count(), 1, "only the new link remains:\n{}", g.to_dot());
}

/// Records `out.now()` each time it handles a burst, then passes the burst on.
struct Clocked(Arc<Mutex<Vec<brick_core::Timestamp>>>);

impl Brick for Clocked {
    fn kind(&self) -> &'static str {
        "clocked"
    }
    fn process(&mut self, side: Side, _: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        self.0.lock().unwrap().push(out.now());
        out.emit_all(side.opposite(), 0, pkts);
    }
}

/// The round's time is read from the clock when a brick first asks for it, then the same for
/// every brick of the round; the next round reads it afresh.
#[test]
fn every_brick_of_a_round_sees_the_same_time_and_the_next_round_a_later_one() {
    let pool = PacketPool::with_count(16).unwrap();
    let mut g = Graph::new("clock");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let a = g.add("a", Clocked(Arc::clone(&seen))).unwrap();
    let b = g.add("b", Clocked(Arc::clone(&seen))).unwrap();
    let (sink, _) = recorder(Side::West);
    let sink = g.add("sink", sink).unwrap();
    g.link(a, b).unwrap();
    g.link(b, sink).unwrap();
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[1])).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    g.inject(a, Side::West, 0, &mut burst_of(&pool, &[2])).unwrap();
    let t = seen.lock().unwrap().clone();
    assert_eq!(t.len(), 4);
    assert_eq!(t[0], t[1], "one time per round");
    assert_eq!(t[2], t[3], "one time per round");
    assert!(t[2].saturating_since(t[0]) >= Duration::from_millis(2), "{t:?}");
}

/// The graph looks at its command channel only when the posted count moved: every command
/// posted, from several threads while the graph applies them, runs exactly once, and a round
/// with nothing posted runs none.
#[test]
fn every_posted_command_runs_once_while_rounds_skip_an_idle_channel() {
    let mut g = Graph::new("cmds");
    let ran = Arc::new(AtomicUsize::new(0));
    assert_eq!(g.apply_commands(), 0);
    const THREADS: usize = 4;
    const EACH: usize = 5_000;
    let posters: Vec<_> = (0..THREADS)
        .map(|_| {
            let (h, r) = (g.handle(), Arc::clone(&ran));
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    let r = Arc::clone(&r);
                    h.post(move |_| {
                        r.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let mut applied = 0;
    while posters.iter().any(|p| !p.is_finished()) {
        applied += g.apply_commands();
    }
    for p in posters {
        p.join().unwrap();
    }
    applied += g.apply_commands();
    assert_eq!(applied, THREADS * EACH);
    assert_eq!(ran.load(Ordering::Relaxed), THREADS * EACH);
    assert_eq!(g.apply_commands(), 0, "nothing left, nothing run");
}

/// Passes packets whose tag (first byte) is even; drops odd ones under reason 0, and tag 255
/// under a reason far out of range.
struct EvenOnly;

impl Brick for EvenOnly {
    fn kind(&self) -> &'static str {
        "even-only"
    }
    fn drop_reasons(&self) -> &'static [&'static str] {
        &["odd"]
    }
    fn process(&mut self, side: Side, _: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        out.emit_passed(side.opposite(), 0, pkts, |p| match p.data()[0] {
            255 => Some(1 << 20),
            t if t % 2 == 1 => Some(0),
            _ => None,
        });
    }
}

/// `emit_passed` hands a burst with nothing to drop on whole and in order; with drops it
/// keeps the order of what passes and counts each drop under its reason, an out-of-range
/// reason as "not consumed".
#[test]
fn emit_passed_moves_clean_bursts_whole_and_counts_each_drop() {
    let pool = PacketPool::with_count(256).unwrap();
    let mut g = Graph::new("filter");
    let f = g.add("f", EvenOnly).unwrap();
    let (sink, seen) = recorder(Side::West);
    let sink = g.add("sink", sink).unwrap();
    g.link(f, sink).unwrap();
    let evens: Vec<u8> = (0..64).map(|i| 2 * i).collect();
    g.inject(f, Side::West, 0, &mut burst_of(&pool, &evens)).unwrap();
    assert_eq!(std::mem::take(&mut *seen.lock().unwrap()), evens);
    let mixed: Vec<u8> = (0..64).map(|i| if i == 10 { 255 } else { i }).collect();
    g.inject(f, Side::West, 0, &mut burst_of(&pool, &mixed)).unwrap();
    let passed: Vec<u8> = (0..64).filter(|t| t % 2 == 0 && *t != 10).collect();
    assert_eq!(*seen.lock().unwrap(), passed);
    let stats = g.stats(f).unwrap();
    assert_eq!(stats.drops_of("odd"), Some(32));
    assert_eq!(stats.drops_of("not consumed"), Some(1));
    assert_eq!(pool.available(), 256, "every dropped packet went back to the pool");
}

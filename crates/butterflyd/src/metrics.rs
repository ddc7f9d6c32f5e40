//! A Prometheus text endpoint: per-brick packets, bytes, drops by reason and cycles per
//! packet. Brick names carry the NIC id (`vm-<id>`, `fw-<id>`…), so per-NIC series fall out;
//! the `worker` label tells the worker graphs apart (each has its own `vtep` and `underlay`).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::bricks::ping::{PingResponder, PingSender, PingSnapshot};
use brick_core::{GraphHandle, Side};
use brick_vtep::Vtep;

/// Renders every brick's counters, of every worker graph, in the Prometheus text format.
pub fn render(handles: &[GraphHandle]) -> Result<String, brick_core::GraphError> {
    let mut bricks = Vec::new();
    let mut benches = Vec::new();
    for (worker, handle) in handles.iter().enumerate() {
        let (of_worker, bench) = handle.exec_timeout(Duration::from_secs(5), |g| {
            let bricks = g
                .ids()
                .into_iter()
                .filter_map(|id| {
                    Some((g.name_of(id).ok()?.to_string(), g.brick_dyn(id).ok()?.kind(), g.stats(id).ok()?))
                })
                .collect::<Vec<_>>();
            (bricks, bench_snapshots(g))
        })?;
        bricks.extend(of_worker.into_iter().map(|(name, kind, st)| (name, kind, st, worker)));
        benches.extend(bench.into_iter().map(|(name, role, snap)| (name, role, snap, worker)));
    }
    let mut s = String::new();
    let families = [
        ("butterfly_brick_packets_total", "Packets through a brick, by side and direction."),
        ("butterfly_brick_bytes_total", "Bytes through a brick, by side and direction."),
        ("butterfly_brick_drops_total", "Packets dropped by a brick, by reason."),
        ("butterfly_brick_cycles_per_packet", "Sampled TSC cycles per packet inside the brick."),
        (
            "butterfly_brick_calls_total",
            "Bursts a brick handled: its process calls, and for a source its polls that found packets.",
        ),
        (
            "butterfly_brick_cycles_total",
            "Sampled TSC cycles inside the brick; over butterfly_brick_cycle_packets_total, per packet in any interval.",
        ),
        ("butterfly_brick_cycle_packets_total", "Packets the brick handled in its sampled calls."),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} {}", if i == 3 { "gauge" } else { "counter" });
        for (brick, kind, st, worker) in &bricks {
            let b = escape(brick);
            match i {
                0 | 1 => {
                    for side in Side::BOTH {
                        let c = st.side(side);
                        let (pin, pout) = if i == 0 {
                            (c.pkts_in.get(), c.pkts_out.get())
                        } else {
                            (c.bytes_in.get(), c.bytes_out.get())
                        };
                        let _ = writeln!(
                            s,
                            "{name}{{brick=\"{b}\",kind=\"{kind}\",side=\"{side}\",dir=\"in\",worker=\"{worker}\"}} {pin}"
                        );
                        let _ = writeln!(
                            s,
                            "{name}{{brick=\"{b}\",kind=\"{kind}\",side=\"{side}\",dir=\"out\",worker=\"{worker}\"}} {pout}"
                        );
                    }
                }
                2 => {
                    for (reason, n) in st.drops() {
                        let _ = writeln!(
                            s,
                            "{name}{{brick=\"{b}\",kind=\"{kind}\",reason=\"{}\",worker=\"{worker}\"}} {n}",
                            escape(reason)
                        );
                    }
                }
                4..=6 => {
                    let n = match i {
                        4 => st.calls.get(),
                        5 => st.cycles.get(),
                        _ => st.cycle_pkts.get(),
                    };
                    let _ = writeln!(s, "{name}{{brick=\"{b}\",kind=\"{kind}\",worker=\"{worker}\"}} {n}");
                }
                _ => {
                    if let Some(c) = st.cycles_per_packet() {
                        let _ =
                            writeln!(s, "{name}{{brick=\"{b}\",kind=\"{kind}\",worker=\"{worker}\"}} {c:.1}");
                    }
                }
            }
        }
    }
    render_suppression(handles, &mut s)?;
    render_bench(&mut s, &benches);
    Ok(s)
}

/// The BENCH NICs' endpoints of a graph: brick name, role and figures.
fn bench_snapshots(g: &brick_core::Graph) -> Vec<(String, &'static str, PingSnapshot)> {
    g.ids()
        .into_iter()
        .filter_map(|id| {
            let (role, stats) = match (g.brick::<PingSender>(id), g.brick::<PingResponder>(id)) {
                (Ok(s), _) => (crate::bench::SND, s.stats()),
                (_, Ok(r)) => (crate::bench::RCV, r.stats()),
                _ => return None,
            };
            Some((g.name_of(id).ok()?.to_string(), role, stats.snapshot()))
        })
        .collect()
}

/// BENCH NIC families: packets sent, received and lost, and round trips in seconds.
fn render_bench(s: &mut String, benches: &[(String, &'static str, PingSnapshot, usize)]) {
    if benches.is_empty() {
        return;
    }
    let secs = |d: Duration| d.as_secs_f64();
    type Counter = (&'static str, &'static str, fn(&PingSnapshot) -> u64);
    let counters: [Counter; 4] = [
        (
            "butterfly_bench_sent_total",
            "BENCH NIC: echo requests (sender) or replies (responder) sent.",
            |p| p.sent,
        ),
        (
            "butterfly_bench_received_total",
            "BENCH NIC: replies matched (sender) or requests received (responder).",
            |p| p.received,
        ),
        (
            "butterfly_bench_lost_total",
            "BENCH NIC sender: requests without a reply within the timeout.",
            |p| p.lost,
        ),
        ("butterfly_bench_windows_total", "BENCH NIC sender: complete windows of replies.", |p| p.windows),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
        for (brick, role, p, worker) in benches {
            let _ = writeln!(
                s,
                "{name}{{brick=\"{}\",btype=\"{role}\",worker=\"{worker}\"}} {}",
                escape(brick),
                get(p)
            );
        }
    }
    let name = "butterfly_bench_rtt_seconds";
    let _ = writeln!(s, "# HELP {name} BENCH NIC sender: round trips: min, mean, max of every reply; mean of the window means, best and worst window mean, mean of the last window.\n# TYPE {name} gauge");
    for (brick, role, p, worker) in benches {
        let mut figures = Vec::new();
        if let Some(r) = p.rtt {
            figures.extend([("min", r.min), ("mean", r.mean), ("max", r.max)]);
        }
        for (stat, d) in [
            ("window_mean", p.mean_of_window_means),
            ("window_best", p.best_window_mean),
            ("window_worst", p.worst_window_mean),
            ("window_last", p.last_window.map(|w| w.mean)),
        ] {
            figures.extend(d.map(|d| (stat, d)));
        }
        for (stat, d) in figures {
            let _ = writeln!(
                s,
                "{name}{{brick=\"{}\",btype=\"{role}\",stat=\"{stat}\",worker=\"{worker}\"}} {:.9}",
                escape(brick),
                secs(d)
            );
        }
    }
}

/// ARP/ND suppression per VNI (EVPN): requests answered from the VTEP's MAC+IP bindings, of
/// the VNIs that have bindings or answered some.
fn render_suppression(handles: &[GraphHandle], s: &mut String) -> Result<(), brick_core::GraphError> {
    let name = "butterfly_vni_neigh_suppressed_total";
    let _ = writeln!(
        s,
        "# HELP {name} ARP requests and neighbour solicitations answered by the VTEP (not flooded)."
    );
    let _ = writeln!(s, "# TYPE {name} counter");
    for (worker, handle) in handles.iter().enumerate() {
        let rows = handle.exec_timeout(Duration::from_secs(5), |g| {
            let mut rows = Vec::new();
            for id in g.ids() {
                let Ok(v) = g.brick::<Vtep>(id) else { continue };
                for vni in v.vnis() {
                    let Some(c) = v.vni_info(vni).map(|i| i.counters) else { continue };
                    if c.arp_suppressed + c.nd_suppressed > 0 || v.neigh_proxy_len(vni) > 0 {
                        rows.push((vni, c.arp_suppressed, c.nd_suppressed));
                    }
                }
            }
            rows
        })?;
        for (vni, arp, nd) in rows {
            let _ = writeln!(s, "{name}{{vni=\"{vni}\",proto=\"arp\",worker=\"{worker}\"}} {arp}");
            let _ = writeln!(s, "{name}{{vni=\"{vni}\",proto=\"nd\",worker=\"{worker}\"}} {nd}");
        }
    }
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Largest request the endpoint reads (request line and headers).
const MAX_REQUEST: usize = 8 * 1024;
/// Longest a client may take to send its request, all reads together.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` (bound by the caller, before anything else starts)
/// until `stop` is set. One connection at a time: scrapes are rare and small.
pub fn serve_on(
    listener: TcpListener,
    handles: Vec<GraphHandle>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let (mut conn, _) = match listener.accept() {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let _ = conn.set_nonblocking(false);
            // A client that sends too much, too slowly or nothing gets no answer: the
            // endpoint must not grow without bound nor be held by one connection.
            let Some(first) = read_request_line(&mut conn) else { continue };
            let (status, body) = if first.starts_with("GET /metrics") {
                match render(&handles) {
                    Ok(b) => ("200 OK", b),
                    Err(e) => ("503 Service Unavailable", format!("{e}\n")),
                }
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })
}

/// Reads a request up to the blank line that ends its headers, within [`MAX_REQUEST`] bytes
/// and [`REQUEST_DEADLINE`], and returns its first line; `None` otherwise.
fn read_request_line(conn: &mut TcpStream) -> Option<String> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = header_end(&buf) {
            let head = String::from_utf8_lossy(&buf[..end]);
            return head.lines().next().map(str::to_string);
        }
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        conn.set_read_timeout(Some(left)).ok()?;
        let room = MAX_REQUEST.checked_sub(buf.len()).filter(|&r| r > 0)?;
        let n = conn.read(&mut chunk[..room.min(1024)]).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Where the headers end (the blank line, CRLF or bare LF), if they are all in `buf`.
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    crlf.into_iter().chain(lf).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn server() -> (SocketAddr, Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let join = serve_on(listener, Vec::new(), Arc::clone(&stop)).unwrap();
        (addr, stop, join)
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    /// The VTEP's per-VNI suppression counters are exported for VNIs with bindings only.
    #[test]
    fn suppression_counters_of_vnis_with_bindings() {
        use brick_core::{Graph, PacketPool, Runner, RunnerConfig};
        use brick_vtep::VtepConfig;
        let mut g = Graph::new("t");
        let cfg = VtepConfig::new("10.0.0.1".parse().unwrap(), [2, 0, 0, 0, 0, 1]);
        let vtep = g.add("vtep", Vtep::new(cfg, PacketPool::with_count(64).unwrap()).unwrap()).unwrap();
        let v = g.brick_mut::<Vtep>(vtep).unwrap();
        v.add_vni(42, 1).unwrap();
        v.add_vni(43, 2).unwrap();
        v.set_neigh_proxy(42, "10.1.0.2".parse().unwrap(), [0x52, 0x54, 0, 0, 0, 2]).unwrap();
        let runner = Runner::spawn(g, RunnerConfig::default()).unwrap();
        let text = render(&[runner.handle()]).unwrap();
        runner.stop().unwrap();
        for proto in ["arp", "nd"] {
            let line = format!(
                "butterfly_vni_neigh_suppressed_total{{vni=\"42\",proto=\"{proto}\",worker=\"0\"}} 0"
            );
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("vni=\"43\""), "no bindings, no series:\n{text}");
    }

    #[test]
    fn serves_metrics_and_404() {
        let (addr, stop, join) = server();
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 200 OK"));
        assert!(get(addr, "/other").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        join.join().unwrap();
    }

    /// A request without an end is cut at MAX_REQUEST bytes (it used to be read into memory
    /// for as long as the client sent), and a client dripping bytes is dropped at the
    /// deadline: either way the next scrape is served.
    #[test]
    fn endless_or_slow_requests_are_cut_off() {
        let (addr, stop, join) = server();
        let mut flood = TcpStream::connect(addr).unwrap();
        let junk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        flood.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        while sent < 64 << 20 {
            match flood.write(&junk) {
                Ok(n) => sent += n,
                Err(_) => break, // the server closed it
            }
        }
        assert!(sent < 64 << 20, "the server kept reading an endless request ({sent} bytes)");
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 200 OK"));

        let mut drip = TcpStream::connect(addr).unwrap();
        let t = Instant::now();
        let dripper = std::thread::spawn(move || {
            for _ in 0..40 {
                if drip.write_all(b"G").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(get(addr, "/metrics").starts_with("HTTP/1.1 200 OK"));
        assert!(
            t.elapsed() < Duration::from_secs(4) - Duration::from_millis(100),
            "served only after the dripper gave up"
        );
        dripper.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        join.join().unwrap();
    }
}

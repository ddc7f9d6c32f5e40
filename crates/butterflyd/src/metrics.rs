//! A Prometheus text endpoint: per-brick packets, bytes, drops by reason and cycles per
//! packet. Brick names carry the NIC id (`vm-<id>`, `fw-<id>`…), so per-NIC series fall out;
//! the `worker` label tells the worker graphs apart (each has its own `vtep` and `underlay`).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use brick_core::{GraphHandle, Side};

/// Renders every brick's counters, of every worker graph, in the Prometheus text format.
pub fn render(handles: &[GraphHandle]) -> Result<String, brick_core::GraphError> {
    let mut bricks = Vec::new();
    for (worker, handle) in handles.iter().enumerate() {
        let of_worker = handle.exec_timeout(Duration::from_secs(5), |g| {
            g.ids()
                .into_iter()
                .filter_map(|id| {
                    Some((g.name_of(id).ok()?.to_string(), g.brick_dyn(id).ok()?.kind(), g.stats(id).ok()?))
                })
                .collect::<Vec<_>>()
        })?;
        bricks.extend(of_worker.into_iter().map(|(name, kind, st)| (name, kind, st, worker)));
    }
    let mut s = String::new();
    let families = [
        ("butterfly_brick_packets_total", "Packets through a brick, by side and direction."),
        ("butterfly_brick_bytes_total", "Bytes through a brick, by side and direction."),
        ("butterfly_brick_drops_total", "Packets dropped by a brick, by reason."),
        ("butterfly_brick_cycles_per_packet", "Sampled TSC cycles per packet inside the brick."),
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
                _ => {
                    if let Some(c) = st.cycles_per_packet() {
                        let _ =
                            writeln!(s, "{name}{{brick=\"{b}\",kind=\"{kind}\",worker=\"{worker}\"}} {c:.1}");
                    }
                }
            }
        }
    }
    Ok(s)
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `GET /metrics` on `addr` until `stop` is set. One connection at a time: scrapes
/// are rare and small.
pub fn serve(
    addr: SocketAddr,
    handles: Vec<GraphHandle>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let listener = TcpListener::bind(addr)?;
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
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut first = String::new();
            let mut reader = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
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

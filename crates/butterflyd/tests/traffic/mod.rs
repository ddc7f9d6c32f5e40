//! Traffic helpers shared by the restart and migration tests: threads inside network
//! namespaces, a deterministic byte stream checked byte by byte, and readers of the
//! daemon's `status`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `f` on a thread inside network namespace `ns` (sockets it makes live there).
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f_ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns(2) on this thread only, with a namespace file we keep open.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f_ns), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// The deterministic byte stream the transfers carry (xorshift64*), from `offset`.
pub struct Stream(u64);

impl Stream {
    pub fn new() -> Stream {
        Stream(0x9e37_79b9_7f4a_7c15)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What one side of a transfer saw.
#[derive(Debug, Default)]
pub struct Transfer {
    pub bytes: u64,
    /// The longest time between two reads that brought bytes, and when it ended.
    pub longest_stall: Duration,
    pub stalls: Vec<(Instant, Duration)>,
    pub error: Option<String>,
}

/// Sends `total` bytes of the stream on `s`, at about `rate` bytes per second, then closes.
pub fn send_stream(mut s: TcpStream, total: u64, rate: u64) -> Result<(), String> {
    // A stalled connection fails the test instead of hanging it.
    s.set_write_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    let mut gen = Stream::new();
    let mut buf = vec![0u8; 16 * 1024];
    let (t0, mut sent) = (Instant::now(), 0u64);
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        // 8-byte aligned chunks keep the generator in step with the reader's.
        gen.fill(&mut buf[..n]);
        s.write_all(&buf[..n]).map_err(|e| format!("write at {sent}: {e}"))?;
        sent += n as u64;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())
}

/// Reads the stream until EOF, checking every byte; notes every pause of over 100 ms.
pub fn check_stream(mut s: TcpStream, progress: &AtomicU64) -> Transfer {
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut gen = Stream::new();
    let mut t = Transfer::default();
    // Expected bytes are generated in 8-byte words: keep the tail of a partial word.
    let mut expect = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = Instant::now();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                t.error = Some(format!("read after {} bytes: {e}", t.bytes));
                break;
            }
        };
        let now = Instant::now();
        let pause = now - last;
        if pause > Duration::from_millis(100) {
            t.stalls.push((now, pause));
        }
        t.longest_stall = t.longest_stall.max(pause);
        last = now;
        while expect.len() < n {
            let mut w = [0u8; 16 * 1024];
            gen.fill(&mut w);
            expect.extend_from_slice(&w);
        }
        if buf[..n] != expect[..n] {
            let at = buf[..n].iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(0);
            t.error = Some(format!("byte {} differs from what was sent", t.bytes + at as u64));
            break;
        }
        expect.drain(..n);
        t.bytes += n as u64;
        progress.store(t.bytes, Ordering::Relaxed);
    }
    t
}

/// The DOT label line of brick `brick` in `status` (empty if absent).
pub fn node<'a>(status: &'a str, brick: &str) -> &'a str {
    status.lines().find(|l| l.contains(&format!("{{{brick}|"))).unwrap_or("")
}

/// The counter of drop reason `reason` on brick `brick` in `status` (0 if none).
pub fn drops(status: &str, brick: &str, reason: &str) -> u64 {
    node(status, brick)
        .split(['|', '{', '}'])
        .find_map(|part| part.trim().strip_prefix(&format!("drop {reason}: ")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// How many connections brick `brick`'s firewall picked up mid-stream.
pub fn picked_up(status: &str, brick: &str) -> u64 {
    let line = node(status, brick);
    let at = line.find("picked up ").unwrap_or_else(|| panic!("no firewall {brick} in {status}"));
    line[at + 10..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

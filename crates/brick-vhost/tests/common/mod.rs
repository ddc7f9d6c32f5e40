//! Shared helpers of the integration tests: an echo brick and a dpdk-testpmd process guard.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brick_core::{Brick, Burst, Output, PortId, Side};

pub mod qemu;

/// Sends every packet back where it came from, Ethernet addresses swapped.
pub struct Echo;

impl Brick for Echo {
    fn kind(&self) -> &'static str {
        "echo"
    }
    fn process(&mut self, side: Side, port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for mut p in pkts.drain() {
            if p.len() >= 12 {
                let d = p.data_mut();
                for i in 0..6 {
                    d.swap(i, i + 6);
                }
            }
            out.emit(side, port, p);
        }
    }
}

/// A unique scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("brick-vhost-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Fails with a clear message when a tool is missing.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "{tool} not found: run scripts/setup-brick-vhost.sh (as root) first");
}

/// dpdk-testpmd with a virtio_user port: the guest side with no VM. Killed on drop.
pub struct TestPmd {
    child: Option<Child>,
    prefix: String,
    log: PathBuf,
}

impl TestPmd {
    /// Starts testpmd in flowgen mode (receives and frees, and keeps sending UDP frames), its
    /// virtio_user0 pointed at `sock`; `server` makes virtio_user the socket
    /// server (our NIC then runs in client mode).
    pub fn start(sock: &Path, server: bool, log: &Path, tag: &str) -> TestPmd {
        Self::start_mode(sock, server, log, tag, "flowgen")
    }

    /// Like [`start`](Self::start), with another forwarding mode (`rxonly`: receives and
    /// frees, never sends).
    pub fn start_mode(sock: &Path, server: bool, log: &Path, tag: &str, mode: &str) -> TestPmd {
        Self::start_args(sock, server, log, tag, mode, &[])
    }

    /// Like [`start_mode`](Self::start_mode), with more testpmd arguments (`--txpkts=512`:
    /// frames of 512 bytes).
    pub fn start_args(
        sock: &Path,
        server: bool,
        log: &Path,
        tag: &str,
        mode: &str,
        extra: &[&str],
    ) -> TestPmd {
        Self::start_queues(sock, server, log, tag, mode, 1, extra)
    }

    /// Like [`start_args`](Self::start_args) with `queues` queue pairs on virtio_user0
    /// (more than one: with the control queue, which virtio_user emulates itself, and as
    /// many RX and TX queues in testpmd, forwarded by one core).
    pub fn start_queues(
        sock: &Path,
        server: bool,
        log: &Path,
        tag: &str,
        mode: &str,
        queues: u16,
        extra: &[&str],
    ) -> TestPmd {
        require("dpdk-testpmd");
        let prefix = format!("bvh{}{}", tag, std::process::id());
        let vdev = format!(
            "virtio_user0,path={},queues={queues},queue_size=256{}{}",
            sock.display(),
            if queues > 1 { ",cq=1" } else { "" },
            if server { ",server=1" } else { "" }
        );
        let queue_args = [format!("--rxq={queues}"), format!("--txq={queues}")];
        let out = std::fs::File::create(log).expect("log file");
        // Line-buffered (stdbuf execs testpmd, same pid): tests time events by its log lines.
        let child = Command::new("stdbuf")
            .args(["-oL", "dpdk-testpmd"])
            .args([
                "-l",
                "0,1",
                "--no-pci",
                "--no-huge",
                "-m",
                "256",
                "--file-prefix",
                &prefix,
                "--vdev",
                &vdev,
                "--",
            ])
            .args([&format!("--forward-mode={mode}"), "--stats-period", "1", "--total-num-mbufs=4096"])
            .args(["--txd=256", "--rxd=256"])
            .args(&queue_args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn dpdk-testpmd");
        TestPmd { child: Some(child), prefix, log: log.to_path_buf() }
    }

    /// Stops it with SIGINT (testpmd then prints its totals) and returns its output.
    pub fn stop(mut self) -> String {
        self.interrupt();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn interrupt(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }

    /// The output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestPmd {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// The last "RX-packets: N" figure testpmd printed (its accumulated total at exit).
pub fn last_rx_packets(out: &str) -> u64 {
    out.lines()
        .rev()
        .filter_map(|l| l.trim().strip_prefix("RX-packets:"))
        .find_map(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// testpmd's per-stream totals at exit ("Forward Stats for RX Port= P/Queue= Q -> TX Port=
/// P/Queue= Q", printed when there are more streams than ports): (RX queue, RX-packets,
/// TX-packets) per stream, in order.
pub fn stream_totals(out: &str) -> Vec<(u16, u64, u64)> {
    let mut streams = Vec::new();
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        let Some(rest) = l.split("RX Port=").nth(1) else { continue };
        let Some(q) = rest.split("Queue=").nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok())
        else {
            continue;
        };
        let Some(counts) = lines.next() else { break };
        let field = |name: &str| -> u64 {
            counts.split(name).nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0)
        };
        streams.push((q, field("RX-packets:"), field("TX-packets:")));
    }
    streams
}

/// Polls `f` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

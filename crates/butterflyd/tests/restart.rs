//! Nothing lost across a daemon restart or crash: two "VMs" (TAP NICs moved into their own
//! network namespaces, each with its kernel's TCP stack) exchange traffic through filtered
//! NICs of the real daemon while it is stopped and started again (SIGTERM: the connection
//! tables are handed over) or killed (SIGKILL: TCP sessions are picked up mid-stream where
//! the rules allow). The TAP devices are persistent: each restart re-attaches them in the
//! VMs' namespaces.
//!
//! `BF_TORTURE_SECS` / `BF_TORTURE_INTERVAL` make `restart_torture` long
//! (scripts/restart-torture.sh: every 10 s for 5 minutes).

mod common;
mod traffic;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use traffic::*;

const VM1: &str = "10.61.0.1";
const VM2: &str = "10.61.0.2";
/// vm2 serves TCP here (its security group lets vm1 in)...
const TCP_PORT: u16 = 5001;
/// ... and receives the UDP probes that time each restart's gap here.
const UDP_PORT: u16 = 5002;
/// Another TCP port of vm2's.
const TCP_PORT2: u16 = 5003;

/// The tests of this file run one at a time: each times restarts, which the others' restarts
/// would slow down on a small machine.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Two TAP VMs in namespaces on one daemon: vm1 (no security group: it may open anything,
/// nothing may open to it) and vm2 (group `srv`: vm1's subnet may ping it, open TCP 5001
/// and 5003 and send UDP 5002 to it).
struct Vms {
    ns: Netns,
    nics: [String; 2],
}

impl Vms {
    fn vm1(&self) -> &str {
        &self.ns.0[0]
    }
    fn vm2(&self) -> &str {
        &self.ns.0[1]
    }
}

fn two_vms(d: &Daemon) -> Vms {
    let tag = unique_tag();
    let nics = [format!("bfr1x{tag}"), format!("bfr2x{tag}")];
    let ns = Netns(vec![format!("bfrv1x{tag}"), format!("bfrv2x{tag}")]);
    d.ok(&["sg", "add", "srv"]);
    d.ok(&["sg", "rule", "add", "srv", "--dir", "in", "--ip-proto", "icmp", "--cidr", "10.61.0.0/24"]);
    for (proto, port) in [("tcp", TCP_PORT), ("udp", UDP_PORT), ("tcp", TCP_PORT2)] {
        let port = port.to_string();
        d.ok(&[
            "sg",
            "rule",
            "add",
            "srv",
            "--dir",
            "in",
            "--ip-proto",
            proto,
            "--port",
            &port,
            "--cidr",
            "10.61.0.0/24",
        ]);
    }
    for (i, ip) in [VM1, VM2].into_iter().enumerate() {
        let (nic, vmns) = (&nics[i], &ns.0[i]);
        let mac = format!("52:54:00:61:00:0{}", i + 1);
        let mut args =
            vec!["nic", "add", "--id", nic, "--type", "TAP", "--mac", &mac, "--vni", "61", "--ip", ip];
        if i == 1 {
            args.extend(["--sg", "srv"]);
        }
        d.ok(&args);
        sh(&["ip", "netns", "add", vmns]);
        sh(&["ip", "link", "set", "dev", nic, "netns", vmns]);
        sh(&["ip", "netns", "exec", vmns, "sysctl", "-qw", &format!("net.ipv6.conf.{nic}.disable_ipv6=1")]);
        sh(&["ip", "-n", vmns, "addr", "add", &format!("{ip}/24"), "dev", nic]);
        sh(&["ip", "-n", vmns, "link", "set", "dev", nic, "up"]);
        sh(&["ip", "-n", vmns, "link", "set", "dev", "lo", "up"]);
    }
    let vms = Vms { ns, nics };
    let (ok, out) = ping(vms.vm1(), VM2, "3");
    assert!(ok, "vm1 reaches vm2 before anything else: {out}");
    vms
}

/// UDP probes vm1 → vm2 every 2 ms; the arrival times give each restart's gap.
struct Probes {
    stop: Arc<AtomicBool>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Probes {
    fn start(vms: &Vms) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (s2, a2) = (Arc::clone(&stop), Arc::clone(&arrivals));
        let rx = in_ns(vms.vm2(), move || {
            let sock = UdpSocket::bind((VM2, UDP_PORT)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::Relaxed) {
                if sock.recv(&mut buf).is_ok() {
                    a2.lock().unwrap().push(Instant::now());
                }
            }
        });
        let s1 = Arc::clone(&stop);
        let tx = in_ns(vms.vm1(), move || {
            let sock = UdpSocket::bind((VM1, 0)).unwrap();
            let to: SocketAddr = format!("{VM2}:{UDP_PORT}").parse().unwrap();
            let mut seq = 0u64;
            while !s1.load(Ordering::Relaxed) {
                // While the daemon is down the TAP has no carrier: sends may fail.
                let _ = sock.send_to(&seq.to_le_bytes(), to);
                seq += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Probes { stop, arrivals, threads: vec![rx, tx] }
    }

    /// The longest time without a probe arriving, over arrivals from `from` on, up to the
    /// first arrival after `until` (a gap still open then counts up to now).
    fn gap(&self, from: Instant, until: Instant) -> Duration {
        let a = self.arrivals.lock().unwrap();
        let mut prev = None;
        let mut worst = Duration::ZERO;
        for &t in a.iter().filter(|&&t| t >= from) {
            if let Some(p) = prev {
                worst = worst.max(t - p);
            }
            prev = Some(t);
            if t > until {
                return worst;
            }
        }
        worst.max(prev.map_or(Duration::MAX, |p| p.elapsed()))
    }

    /// Waits until a probe arrives after `since`; how long that took from `since`.
    fn wait_back(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if let Some(&last) = self.arrivals.lock().unwrap().last() {
                if last > since {
                    return Some(last - since);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// SIGKILL: no hand-over. Returns the daemon's directory for the next start.
fn kill9(mut d: Daemon) -> tempfile::TempDir {
    let mut c = d.child.take().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap())
}

/// Open file descriptors and resident memory (KiB) of process `pid`.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

/// Stops the daemon gracefully and starts it again from the same directory; returns the new
/// daemon, when the stop began and when the new one answered its API.
fn restart(d: Daemon) -> (Daemon, Instant, Instant) {
    let t0 = Instant::now();
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "clean exit on SIGTERM: {err}");
    assert!(!err.contains("cannot hand"), "the tables were handed over: {err}");
    let d = Daemon::start_in(dir, &[]);
    (d, t0, Instant::now())
}

/// A long download into vm1 (vm2 sends, vm1 checks every byte) over one TCP connection,
/// while the daemon is restarted three times: the transfer completes intact without the
/// application reconnecting. The data flows in the direction vm1's rules do not open
/// (nothing may open a connection to vm1), so it survives only because each restart hands
/// the connection over: without it, vm2's next segment is refused at vm1's firewall and vm1
/// (which only receives) never speaks again, and the download stalls. The traffic gap of
/// each restart is printed: the UDP probes' longest silence and the download's stall.
#[test]
fn a_long_tcp_download_survives_three_restarts() {
    let _serial = serial();
    let d = Daemon::start(&[]);
    let vms = two_vms(&d);
    let probes = Probes::start(&vms);
    let listener = in_ns(vms.vm2(), || {
        let l = TcpListener::bind((VM2, TCP_PORT)).unwrap();
        let (s, _) = l.accept().unwrap();
        // One connection only: the application never reconnects.
        l.set_nonblocking(true).unwrap();
        let result = send_stream(s, 40 << 20, 3 << 20);
        let again = l.accept().is_ok();
        (result, again)
    });
    std::thread::sleep(Duration::from_millis(200));
    let progress = Arc::new(AtomicU64::new(0));
    let p2 = Arc::clone(&progress);
    let reader = in_ns(vms.vm1(), move || {
        let s = TcpStream::connect((VM2, TCP_PORT)).unwrap();
        check_stream(s, &p2)
    });
    let mut d = d;
    let mut marks = Vec::new();
    for round in 1..=3 {
        std::thread::sleep(Duration::from_millis(2500));
        let before = progress.load(Ordering::Relaxed);
        assert!(before > 0, "the download is under way before restart {round}");
        let (nd, t_stop, t_up) = restart(d);
        d = nd;
        let back = probes.wait_back(t_up, Duration::from_secs(10));
        marks.push((round, t_stop, t_up, back));
    }
    let t = reader.join().unwrap();
    let (sent, reconnected) = listener.join().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for (round, t_stop, t_up, back) in &marks {
        let stall =
            t.stalls.iter().filter(|(end, _)| end > t_stop).map(|&(_, p)| p).next().unwrap_or(Duration::ZERO);
        eprintln!(
            "restart {round}: stop to API up {:.0} ms; UDP probe gap {:.0} ms (first probe {:.0} ms after the API was up); download stall {:.0} ms",
            (*t_up - *t_stop).as_secs_f64() * 1e3,
            probes.gap(*t_stop - Duration::from_millis(100), *t_up).as_secs_f64() * 1e3,
            back.map_or(f64::NAN, |b| b.as_secs_f64() * 1e3),
            stall.as_secs_f64() * 1e3,
        );
    }
    probes.stop();
    assert!(t.error.is_none(), "download: {:?} after {} bytes (stalls {:?})", t.error, t.bytes, t.stalls);
    assert_eq!(sent, Ok(()), "the sender saw no error");
    assert!(!reconnected, "the application did not reconnect");
    assert_eq!(t.bytes, 40 << 20, "every byte arrived, checked one by one");
    // The connection came back from the hand-over, never from a mid-stream pickup.
    let status = d.ok(&["status"]);
    for nic in &vms.nics {
        assert_eq!(picked_up(&status, &format!("fw-{nic}")), 0, "{status}");
    }
    drop(vms);
}

/// After a crash (SIGKILL: nothing handed over) established TCP sessions recover by
/// themselves where the NICs' rules allow the direction of the first segment seen, and
/// nothing the rules forbid is opened:
/// - an upload from vm1 to vm2's port 5001 (vm1 may open anything, vm2 lets vm1 in on
///   5001) resumes at vm1's next segment, picked up at both firewalls, and completes intact;
/// - on a second session vm1 opened to vm2's port 5003, vm2 keeps sending to vm1: after the
///   crash those segments travel in a direction vm1's rules forbid opening, and are refused
///   ("blocked by default policy" at vm1's firewall) however long vm2 retransmits, until
///   vm1 speaks on the session; then vm2's bytes flow again.
#[test]
fn after_a_crash_allowed_sessions_recover_and_forbidden_ones_stay_refused() {
    let _serial = serial();
    let d = Daemon::start(&[]);
    let vms = two_vms(&d);
    let (fw1, fw2) = (format!("fw-{}", vms.nics[0]), format!("fw-{}", vms.nics[1]));
    // Upload: vm2 checks every byte.
    let upload_rx = in_ns(vms.vm2(), || {
        let l = TcpListener::bind((VM2, TCP_PORT)).unwrap();
        let (s, _) = l.accept().unwrap();
        check_stream(s, &AtomicU64::new(0))
    });
    // Second session: vm2 sends a byte every 20 ms to whoever connects, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let pusher = in_ns(vms.vm2(), move || {
        let l = TcpListener::bind((VM2, TCP_PORT2)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut got_from_vm1 = 0usize;
        while !s2.load(Ordering::Relaxed) {
            let _ = s.write(b"x");
            let mut b = [0u8; 16];
            if let Ok(n) = s.read(&mut b) {
                got_from_vm1 += n;
            }
        }
        got_from_vm1
    });
    std::thread::sleep(Duration::from_millis(200));
    let upload_tx = in_ns(vms.vm1(), || {
        let s = TcpStream::connect((VM2, TCP_PORT)).unwrap();
        send_stream(s, 12 << 20, 3 << 20)
    });
    let arrivals = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (a2, s3) = (Arc::clone(&arrivals), Arc::clone(&stop));
    let (speak_tx, speak_rx) = std::sync::mpsc::channel::<()>();
    let listener_vm1 = in_ns(vms.vm1(), move || {
        let mut s = TcpStream::connect((VM2, TCP_PORT2)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut b = [0u8; 4096];
        while !s3.load(Ordering::Relaxed) {
            if speak_rx.try_recv().is_ok() {
                s.write_all(b"hello").unwrap();
            }
            if let Ok(n) = s.read(&mut b) {
                if n > 0 {
                    a2.lock().unwrap().push(Instant::now());
                }
            }
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!arrivals.lock().unwrap().is_empty(), "vm2's pushes reach vm1 before the crash");

    let t_kill = Instant::now();
    let dir = kill9(d);
    assert!(!exists(&dir.path().join("state/butterflyd.handover")), "a crash hands nothing over");
    let d = Daemon::start_in(dir, &[]);
    let t_up = Instant::now();
    eprintln!("crash: SIGKILL to API up {:.0} ms", (t_up - t_kill).as_secs_f64() * 1e3);
    // vm2 keeps pushing, vm1 stays silent: refused at vm1's firewall.
    std::thread::sleep(Duration::from_millis(2000));
    let t_speak = Instant::now();
    let status = d.ok(&["status"]);
    let refused = drops(&status, &fw1, "blocked by default policy");
    let leaked = arrivals.lock().unwrap().iter().filter(|&&t| t > t_up).count();
    assert_eq!(leaked, 0, "vm2's segments reached vm1 before vm1 spoke (refused: {refused})");
    assert!(refused > 0, "vm2's segments were refused at {fw1}: {}", node(&status, &fw1));
    // vm1 speaks: its segment is allowed out, picked up, and vm2's bytes flow again.
    speak_tx.send(()).unwrap();
    let t = Instant::now();
    let back = loop {
        if let Some(&last) = arrivals.lock().unwrap().last() {
            if last > t_speak {
                break last - t_speak;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(15), "vm2's bytes never came back after vm1 spoke");
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("crash: the refused session flows {:.0} ms after vm1 spoke", back.as_secs_f64() * 1e3);
    assert_eq!(upload_tx.join().unwrap(), Ok(()), "the upload's sender saw no error");
    let up = upload_rx.join().unwrap();
    eprintln!("crash: the upload's longest stall {:.0} ms", up.longest_stall.as_secs_f64() * 1e3);
    assert!(up.error.is_none(), "upload: {:?}", up.error);
    assert_eq!(up.bytes, 12 << 20, "the upload arrived whole, checked byte by byte");
    stop.store(true, Ordering::Relaxed);
    listener_vm1.join().unwrap();
    assert!(pusher.join().unwrap() >= 5, "vm1's hello reached vm2");
    let status = d.ok(&["status"]);
    assert!(picked_up(&status, &fw1) >= 2, "both sessions picked up at vm1: {}", node(&status, &fw1));
    assert!(picked_up(&status, &fw2) >= 1, "{}", node(&status, &fw2));
}

/// Restart torture: the daemon is stopped and started again every `BF_TORTURE_INTERVAL`
/// seconds (default 2.5) for `BF_TORTURE_SECS` (default 10; scripts/restart-torture.sh runs
/// 10 s for 5 minutes) while vm2 streams to vm1 over one TCP connection and vm1 sends UDP
/// probes: every restart recovers traffic within 2 s, the VMs never reset anything, the
/// stream arrives intact, and each new daemon's file descriptors and memory stay flat
/// (printed per round).
#[test]
fn restart_torture() {
    let _serial = serial();
    let env = |k: &str, default: f64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (secs, interval) = (env("BF_TORTURE_SECS", 10.0), env("BF_TORTURE_INTERVAL", 2.5));
    let d = Daemon::start(&[]);
    let vms = two_vms(&d);
    let probes = Probes::start(&vms);
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    let sender = in_ns(vms.vm2(), move || {
        let l = TcpListener::bind((VM2, TCP_PORT)).unwrap();
        let (mut s, _) = l.accept().unwrap();
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut gen = Stream::new();
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        while !s2.load(Ordering::Relaxed) {
            gen.fill(&mut buf);
            if let Err(e) = s.write_all(&buf) {
                return Err(format!("write at {sent}: {e}"));
            }
            sent += buf.len() as u64;
            // About 1.6 MB/s: traffic all the time, CPU left for the restarts.
            std::thread::sleep(Duration::from_millis(10));
        }
        s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
        Ok(sent)
    });
    std::thread::sleep(Duration::from_millis(200));
    let progress = Arc::new(AtomicU64::new(0));
    let p2 = Arc::clone(&progress);
    let reader = in_ns(vms.vm1(), move || {
        let s = TcpStream::connect((VM2, TCP_PORT)).unwrap();
        check_stream(s, &p2)
    });
    let t0 = Instant::now();
    let mut d = d;
    let mut rounds: Vec<(usize, u64)> = Vec::new();
    let mut round = 0;
    while t0.elapsed().as_secs_f64() + interval <= secs.max(interval) {
        std::thread::sleep(Duration::from_secs_f64(interval));
        round += 1;
        let before = progress.load(Ordering::Relaxed);
        let (nd, t_stop, t_up) = restart(d);
        d = nd;
        let back = probes.wait_back(t_up, Duration::from_secs(5));
        let gap = probes.gap(t_stop - Duration::from_millis(100), t_up);
        let t = Instant::now();
        while progress.load(Ordering::Relaxed) == before && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let (fds, rss) = fds_and_rss(d.child.as_ref().unwrap().id());
        eprintln!(
            "round {round}: stop to API up {:.0} ms, probe gap {:.0} ms, stream at {} MiB, daemon fds {fds}, RSS {} MiB",
            (t_up - t_stop).as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3,
            progress.load(Ordering::Relaxed) >> 20,
            rss >> 10
        );
        assert!(back.is_some(), "round {round}: no probe came back within 5 s");
        assert!(gap < Duration::from_secs(2), "round {round}: traffic recovered in {gap:?}, over 2 s");
        assert!(progress.load(Ordering::Relaxed) > before, "round {round}: the stream moves again");
        rounds.push((fds, rss));
    }
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().unwrap().expect("the sender saw no error");
    let t = reader.join().unwrap();
    probes.stop();
    assert!(t.error.is_none(), "stream: {:?}", t.error);
    assert_eq!(t.bytes, sent, "every byte arrived, checked one by one");
    assert!(rounds.len() >= 3, "{} rounds", rounds.len());
    // Flat: each new daemon has the same descriptors, and memory does not creep up.
    let (fds0, rss0) = rounds[0];
    for (i, &(fds, rss)) in rounds.iter().enumerate() {
        assert!(fds.abs_diff(fds0) <= 2, "round {}: {fds} fds, round 1 had {fds0}", i + 1);
        assert!(rss <= rss0 + rss0 / 4, "round {}: RSS {rss} KiB, round 1 had {rss0} KiB", i + 1);
    }
}

/// A hand-over file that cannot be used (another format version, truncated, damaged,
/// garbage), or a NIC's table in it that cannot be imported, never stops the daemon: it
/// starts with its configuration, says why in its log, keeps the unusable file aside, and
/// the NICs start with empty tables. A good file is consumed by the start that reads it.
#[test]
fn an_unusable_hand_over_file_gives_a_clean_start_and_a_clear_message() {
    let _serial = serial();
    let d = Daemon::start(&[]);
    d.ok(&["nic", "add", "--id", "h1", "--mac", "52:54:00:61:01:01", "--vni", "9", "--ip", "10.9.0.1"]);
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");
    let file = dir.path().join("state/butterflyd.handover");
    let good = std::fs::read(&file).expect("a graceful stop writes the hand-over file");
    assert_eq!(&good[..4], b"BFHO");
    let crc = |b: &mut Vec<u8>| {
        let n = b.len() - 4;
        let c = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&b[..n]);
        b[n..].copy_from_slice(&c.to_le_bytes());
    };
    let mut version = good.clone();
    version[4] = 7;
    crc(&mut version);
    // A valid file whose table for h1 is not a connection table. Built from the good file's
    // first 16 bytes (magic, version, flags, time of the save): h1 has no connection, so the
    // good file may carry an empty table for it, or none.
    let mut table = good[..16].to_vec();
    table.extend_from_slice(&1u32.to_le_bytes());
    table.extend_from_slice(&2u16.to_le_bytes());
    table.extend_from_slice(b"h1");
    table.extend_from_slice(&4u32.to_le_bytes());
    table.extend_from_slice(b"XXXX");
    table.extend_from_slice(&[0; 4]);
    crc(&mut table);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("another version", version, "format version 7, this butterflyd reads version 1"),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("damaged", good.iter().map(|b| b ^ 0x20).collect(), "bad magic"),
        (
            "a bit flipped",
            good.iter().enumerate().map(|(i, &b)| if i == 10 { b ^ 1 } else { b }).collect(),
            "checksum",
        ),
        (
            "a bad table",
            table,
            "NIC h1: its handed-over connections cannot be imported: not a connection table export",
        ),
    ];
    let mut dir = dir;
    for (what, bytes, says) in cases {
        std::fs::write(&file, &bytes).unwrap();
        let d = Daemon::start_in(dir, &[]);
        assert!(d.ok(&["status"]).contains("fw-h1"), "{what}: the NIC is back");
        assert!(!exists(&file), "{what}: the file was read once");
        let (code, err, back) = d.stop();
        assert_eq!(code, 0, "{what}: {err}");
        assert!(err.contains(says), "{what}: the log says why ({says}): {err}");
        if what != "a bad table" {
            let aside = back.path().join("state/butterflyd.handover.rejected");
            assert_eq!(std::fs::read(&aside).unwrap(), bytes, "{what}: the file is kept aside");
        }
        dir = back;
    }
    // A state file that stops the start leaves the hand-over for the start after the repair.
    let state = dir.path().join("state/butterflyd.json");
    let saved = std::fs::read(&state).unwrap();
    std::fs::write(&state, b"{not json").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args(["--underlay", "none", "--metrics", "off", "-e", &format!("tcp://127.0.0.1:{}", free_port())])
        .arg("-s")
        .arg(dir.path().join("sockets"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(exists(&file), "the hand-over waits for a start that restores the configuration");
    std::fs::write(&state, saved).unwrap();
    let d = Daemon::start_in(dir, &[]);
    assert!(!exists(&file), "consumed by the start that restored the configuration");
    assert!(d.ok(&["status"]).contains("fw-h1"));
}

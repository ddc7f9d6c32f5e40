//! Restart torture from the VM side: the daemon keeps running while the VM end of a
//! vhost-user NIC is stopped and started again, round after round (a guest rebooting, QEMU
//! restarted, a VM migrated away and back). The VM end is dpdk-testpmd with a virtio_user
//! port (a guest with no kernel, as the benches use): it sends UDP frames all the time
//! (flowgen) and counts what it receives, which is a TAP "VM" in a namespace broadcasting
//! UDP probes in the same VNI. Each round prints how long each direction took to flow again
//! once the new VM end had started forwarding, and the daemon's file descriptors, memory
//! mappings and resident memory: a vhost-user session that leaves an eventfd, a guest memory
//! mapping or a buffer behind shows up as a count that creeps up from round to round.
//!
//! `BF_TORTURE_SECS` makes it long (scripts/restart-torture.sh --vm-side: 5 minutes).

mod common;
mod traffic;
#[path = "../../brick-vhost/tests/common/mod.rs"]
mod vhost;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use traffic::*;
use vhost::{last_rx_packets, TestPmd};

const VNI: &str = "62";
const TAP_IP: &str = "10.62.0.2";
const GUEST_IP: &str = "10.62.0.1";

/// Bytes the daemon has received from NIC `id` and written into its guest's buffers
/// (`nic stats`: "in: N", "out: N").
fn nic_bytes(d: &Daemon, id: &str) -> (u64, u64) {
    let out = d.ok(&["nic", "stats", id]);
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)?.trim().parse().ok()).unwrap_or(0);
    (field("in: "), field("out: "))
}

/// What a process holds: open file descriptors, memory mappings, resident memory (KiB).
fn holdings(pid: u32) -> (usize, usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map(|m| m.lines().count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, maps, rss)
}

/// What each open file descriptor of process `pid` is, one per line (for a failure message).
fn fd_list(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return String::new() };
    let mut l: Vec<String> = dir
        .flatten()
        .map(|e| {
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).unwrap_or_default().display()
            )
        })
        .collect();
    l.sort();
    l.join("\n")
}

/// A TAP VM in its own namespace broadcasting a UDP probe every 2 ms into the VNI, until
/// dropped. The switch floods each one to the vhost-user NIC, i.e. to the testpmd guest.
struct Broadcaster {
    _ns: Netns,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Broadcaster {
    fn start(d: &Daemon) -> Broadcaster {
        let tag = unique_tag();
        let (nic, vmns) = (format!("bfw1x{tag}"), format!("bfwv1x{tag}"));
        let ip = TAP_IP;
        d.ok(&[
            "nic",
            "add",
            "--id",
            &nic,
            "--type",
            "TAP",
            "--mac",
            "52:54:00:62:00:02",
            "--vni",
            VNI,
            "--ip",
            ip,
        ]);
        let ns = Netns(vec![vmns.clone()]);
        sh(&["ip", "netns", "add", &vmns]);
        sh(&["ip", "link", "set", "dev", &nic, "netns", &vmns]);
        sh(&["ip", "netns", "exec", &vmns, "sysctl", "-qw", &format!("net.ipv6.conf.{nic}.disable_ipv6=1")]);
        sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/24"), "dev", &nic]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", &nic, "up"]);
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = in_ns(&vmns, move || {
            let sock = UdpSocket::bind((TAP_IP, 0)).unwrap();
            sock.set_broadcast(true).unwrap();
            let to: SocketAddr = "10.62.0.255:9".parse().unwrap();
            while !s2.load(Ordering::Relaxed) {
                let _ = sock.send_to(b"probe", to);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Broadcaster { _ns: ns, stop, thread: Some(thread) }
    }
}

impl Drop for Broadcaster {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How long after the new VM end started forwarding each direction flowed again: frames
/// from the guest into the daemon, and the TAP VM's broadcasts into the guest.
struct Recovery {
    to_daemon: Duration,
    to_guest: Duration,
}

/// Starts a new VM end on `sock` and waits (up to 10 s) until traffic flows both ways.
fn start_vm_end(d: &Daemon, nic: &str, sock: &Path, log: &Path, tag: &str) -> (TestPmd, Recovery) {
    let pmd = TestPmd::start(sock, false, log, tag);
    // Timed from the moment testpmd forwards: its own start-up (EAL, memory) is not ours.
    let forwarding =
        vhost::wait_until(Duration::from_secs(15), || pmd.output().contains("forwards packets on"));
    assert!(forwarding, "testpmd never started forwarding:\n{}", pmd.output());
    let t0 = Instant::now();
    let (in0, out0) = nic_bytes(d, nic);
    let (mut to_daemon, mut to_guest) = (None, None);
    while t0.elapsed() < Duration::from_secs(10) && (to_daemon.is_none() || to_guest.is_none()) {
        let (i, o) = nic_bytes(d, nic);
        if to_daemon.is_none() && i > in0 + 10_000 {
            to_daemon = Some(t0.elapsed());
        }
        // The TAP VM's broadcasts, written into the guest's receive buffers.
        if to_guest.is_none() && o > out0 + 1_000 {
            to_guest = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (Some(to_daemon), Some(to_guest)) = (to_daemon, to_guest) else {
        panic!(
            "traffic did not flow both ways within 10 s (to the daemon: {to_daemon:?}, to the guest: \
             {to_guest:?})\n{}\ntestpmd:\n{}",
            d.ok(&["nic", "stats", nic]),
            pmd.output()
        );
    };
    (pmd, Recovery { to_daemon, to_guest })
}

/// The VM end of a filtered vhost-user NIC is stopped and started again every round
/// (default 4 rounds; `BF_TORTURE_SECS` runs rounds for that long): each time, traffic
/// flows both ways again within 2 s of the guest forwarding (and the guest counts what it
/// received), and the daemon's descriptors, mappings and memory stay flat.
#[test]
fn the_vm_side_restarts_again_and_again_and_nothing_leaks() {
    let d = Daemon::start(&[]);
    let tag = unique_tag();
    let nic = format!("bfwg{tag}");
    d.ok(&["sg", "add", "probes"]);
    d.ok(&[
        "sg",
        "rule",
        "add",
        "probes",
        "--dir",
        "in",
        "--ip-proto",
        "udp",
        "--port",
        "9",
        "--cidr",
        "10.62.0.0/24",
    ]);
    d.ok(&[
        "nic",
        "add",
        "--id",
        &nic,
        "--mac",
        "52:54:00:62:00:01",
        "--vni",
        VNI,
        "--ip",
        GUEST_IP,
        "--sg",
        "probes",
    ]);
    let sock = d.sockets().join(format!("qemu-vhost-{nic}"));
    let _tap = Broadcaster::start(&d);
    let logs = tempfile::tempdir().unwrap();
    let secs: f64 = std::env::var("BF_TORTURE_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let pid = d.child.as_ref().unwrap().id();
    let t0 = Instant::now();
    let mut seen: Vec<(usize, usize, u64)> = Vec::new();
    let mut round = 0;
    while round < 4 || t0.elapsed().as_secs_f64() < secs {
        round += 1;
        let log = logs.path().join(format!("pmd{round}.log"));
        let (pmd, rec) = start_vm_end(&d, &nic, &sock, &log, &format!("w{}", round % 100));
        // Let it run a little, then the VM end goes away (SIGINT: testpmd closes its port).
        std::thread::sleep(Duration::from_millis(300));
        let out = pmd.stop();
        std::thread::sleep(Duration::from_millis(200));
        let (fds, maps, rss) = holdings(pid);
        eprintln!(
            "round {round}: guest → daemon after {:.0} ms, TAP VM → guest after {:.0} ms ({} frames), \
             daemon fds {fds}, mappings {maps}, RSS {} MiB",
            rec.to_daemon.as_secs_f64() * 1e3,
            rec.to_guest.as_secs_f64() * 1e3,
            last_rx_packets(&out),
            rss >> 10
        );
        assert!(
            rec.to_daemon < Duration::from_secs(2),
            "round {round}: guest → daemon took {:?}",
            rec.to_daemon
        );
        assert!(
            rec.to_guest < Duration::from_secs(2),
            "round {round}: TAP VM → guest took {:?}",
            rec.to_guest
        );
        assert!(last_rx_packets(&out) > 0, "round {round}: the guest counted no frame received:\n{out}");
        seen.push((fds, maps, rss));
    }
    // The daemon lives on: its API answers and the NIC is still there, with nothing behind it.
    assert!(d.ok(&["nic", "list"]).contains(&nic));
    // Flat: the first round sets the level (the first session allocates what later ones
    // reuse); later rounds stay there.
    let (fds0, maps0, rss0) = seen[0];
    for (i, &(fds, maps, rss)) in seen.iter().enumerate() {
        assert!(
            fds.abs_diff(fds0) <= 2,
            "round {}: {fds} fds, round 1 left {fds0}; now:\n{}",
            i + 1,
            fd_list(pid)
        );
        assert!(maps.abs_diff(maps0) <= 4, "round {}: {maps} mappings, round 1 left {maps0}", i + 1);
        assert!(rss <= rss0 + rss0 / 4, "round {}: RSS {rss} KiB, round 1 left {rss0} KiB", i + 1);
    }
}

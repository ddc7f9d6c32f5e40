//! Two real QEMU guests (TCG) on vhost-user NICs of the real butterflyd, in one VNI with a
//! security group, one NIC in each vhost-user mode (g1: the daemon serves the socket, g2:
//! QEMU serves it and the daemon connects, `--vhost-client`): ping, ping6 and HTTP
//! transfers checked by md5 both ways (the guests use the TSO the daemon offers, so their
//! super-frames cross whole), then the daemon restarts (configuration restored from its
//! state) while both guests keep running: QEMU reconnects to g1's socket, the daemon to
//! g2's, and traffic resumes without a guest reboot. The guest
//! harness (kernel + busybox initramfs from Debian packages) is brick-vhost's.

mod common;
#[path = "../../brick-vhost/tests/common/qemu.rs"]
#[allow(dead_code)]
mod qemu;

use std::time::{Duration, Instant};

use common::*;
use qemu::{guest_image, vmtest, Chardev, Guest, GuestSpec};

/// Used by the shared QEMU harness: the tests need these tools (scripts/setup.sh installs them).
fn require(tool: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is missing: run scripts/setup.sh");
}

fn wait(vms: &mut [&mut Guest; 2], what: &str, timeout: Duration, cond: impl Fn(&str, &str) -> bool) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if cond(&vms[0].serial(), &vms[1].serial()) {
            eprintln!("[{:>5.1}s] {what}", t.elapsed().as_secs_f32());
            return;
        }
        if !vms[0].running() || !vms[1].running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not reached within {timeout:?}\n{}\n{}", vms[0].tail(30), vms[1].tail(30));
}

fn fetched_ok(fetcher: &str, server: &str) -> bool {
    let sig = |l: &String| l.split(" t=").next().unwrap_or("").to_string();
    let served: Vec<String> = vmtest(server, "SRV_MD5").iter().map(sig).collect();
    let got: Vec<String> = vmtest(fetcher, "GOT_MD5").iter().map(sig).collect();
    !got.is_empty() && got.iter().all(|g| served.contains(g))
}

/// Each guest fetched its peer's blob with the md5 the peer served.
fn assert_transfers_intact(vms: &[&mut Guest; 2]) {
    let (l1, l2) = (vms[0].serial(), vms[1].serial());
    assert!(
        fetched_ok(&l1, &l2) && fetched_ok(&l2, &l1),
        "transfer corrupted\n{}\n{}",
        vms[0].tail(20),
        vms[1].tail(20)
    );
}

#[test]
fn two_qemu_guests_through_the_daemon() {
    let image = guest_image();
    // BF_DAEMON_NO_OFFLOAD=1 runs the daemon with --no-offload (no checksum/TSO offers), to
    // compare guest throughput with BF_GUEST_IPERF_SECS.
    let extra_args: &[&str] =
        if std::env::var_os("BF_DAEMON_NO_OFFLOAD").is_some() { &["--no-offload"] } else { &[] };
    // With state: the restart below must bring the NICs back at the same socket paths.
    let d = Daemon::start(extra_args);
    d.ok(&["sg", "add", "open"]);
    d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
    d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "::/0"]);
    for i in 1..=2 {
        let (mac, ip, ip6) = (format!("52:54:00:00:00:0{i}"), format!("10.0.0.{i}"), format!("fd00::{i}"));
        let id = format!("g{i}");
        let mut args =
            vec!["nic", "add", "--id", &id, "--mac", &mac, "--vni", "1", "--ip", &ip, "--ip", &ip6];
        args.extend(["--sg", "open"]);
        // g2 in vhost-user client mode: its QEMU serves the socket (server=on) and the
        // daemon connects to it, and again after its restart below.
        if i == 2 {
            args.push("--vhost-client");
        }
        d.ok(&args);
    }
    let work = tempfile::tempdir().unwrap();
    let (s1, s2) = (d.sockets().join("qemu-vhost-g1"), d.sockets().join("qemu-vhost-g2"));
    let spec = |name, index, peer, role, extra| GuestSpec {
        name,
        index,
        peer,
        role,
        extra_cmdline: extra,
        netdev_extra: "",
        queues: 1,
    };
    let mut vm2 = Guest::boot(&image, work.path(), &spec("vm2", 2, 1, "server", ""), Chardev::Server(&s2));
    // BF_GUEST_IPERF_SECS=N: the client guest also runs iperf3 TCP then UDP for N s each
    // through the daemon, and the figures are printed (a measurement, not checked here).
    let iperf = std::env::var("BF_GUEST_IPERF_SECS").ok().and_then(|s| s.parse::<u32>().ok());
    let client_cmdline = match iperf {
        Some(secs) => format!("vmtxkb=256 vmiperft={secs}"),
        None => "vmtxkb=256".to_string(),
    };
    let client_cmdline: &'static str = Box::leak(client_cmdline.into_boxed_str());
    let mut vm1 =
        Guest::boot(&image, work.path(), &spec("vm1", 1, 2, "client", client_cmdline), Chardev::Client(&s1));
    let mut vms = [&mut vm1, &mut vm2];
    wait(&mut vms, "ping both ways", Duration::from_secs(150), |a, b| {
        !vmtest(a, "PING_OK").is_empty() && !vmtest(b, "PING_OK").is_empty()
    });
    wait(&mut vms, "ping6 both ways", Duration::from_secs(60), |a, b| {
        !vmtest(a, "PING6_OK").is_empty() && !vmtest(b, "PING6_OK").is_empty()
    });
    wait(&mut vms, "HTTP transfers both ways", Duration::from_secs(90), |a, b| {
        !vmtest(a, "GOT_MD5").is_empty() && !vmtest(b, "GOT_MD5").is_empty()
    });
    if let Some(secs) = iperf {
        wait(
            &mut vms,
            "iperf3 in the client guest",
            Duration::from_secs(60 + 3 * u64::from(secs)),
            |a, _| !vmtest(a, "IPERF_DONE").is_empty(),
        );
        let serial = vms[0].serial();
        for line in serial.lines().filter(|l| l.contains("sender") || l.contains("receiver")) {
            eprintln!("guest iperf3 (offloads {}): {line}", if extra_args.is_empty() { "on" } else { "off" });
        }
        let status = d.ok(&["status"]);
        for drop in status.split(['|', '{', '}']).filter(|r| r.starts_with("drop ")) {
            eprintln!("daemon {drop}");
        }
    }
    assert_transfers_intact(&vms);
    // The NIC's byte counters moved both ways ("in: N" then "out: N").
    let stats = d.ok(&["nic", "stats", "g1"]);
    let counts: Vec<u64> = stats.lines().filter_map(|l| l.split(':').nth(1)?.trim().parse().ok()).collect();
    assert!(counts.len() == 2 && counts.iter().all(|&n| n > 100_000), "nic stats: {stats}");
    let status = d.ok(&["status"]);
    assert!(status.contains("fw-g1") && status.contains("(vhost-user)"), "{status}");
    // Both guests took the offered TSO (HOST_TSO4, bit 11, and GUEST_TSO4, bit 7): the
    // transfers above crossed the daemon as super-frames.
    let acked: Vec<u64> = status
        .match_indices("acked=0x")
        .map(|(at, m)| {
            let hex: String = status[at + m.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
            u64::from_str_radix(&hex, 16).unwrap()
        })
        .collect();
    assert_eq!(acked.len(), 2, "{status}");
    let tso = |f: &u64| f & (1 << 11) != 0 && f & (1 << 7) != 0;
    if extra_args.is_empty() {
        assert!(acked.iter().all(tso), "TSO not negotiated: {acked:x?}");
    } else {
        assert!(!acked.iter().any(tso), "TSO negotiated despite --no-offload: {acked:x?}");
    }

    // VM reconnection: the daemon stops (its sockets go) and starts again from its state;
    // vm1's QEMU (chardev reconnect=1) connects again, the daemon connects to vm2's QEMU
    // again (client mode), and the guests' once-a-second pings resume.
    wait(&mut vms, "both guests idle-pinging", Duration::from_secs(60), |a, b| {
        !vmtest(a, "ALIVE_OK").is_empty() && !vmtest(b, "ALIVE_OK").is_empty()
    });
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_secs(2));
    let n = [vmtest(&vms[0].serial(), "ALIVE").len(), vmtest(&vms[1].serial(), "ALIVE").len()];
    let d = Daemon::start_in(dir, extra_args);
    assert!(d.ok(&["nic", "list"]).contains("g2"), "configuration restored");
    wait(&mut vms, "pings again after the daemon restart", Duration::from_secs(90), |a, b| {
        vmtest(a, "ALIVE").iter().skip(n[0]).any(|l| l.starts_with("_OK"))
            && vmtest(b, "ALIVE").iter().skip(n[1]).any(|l| l.starts_with("_OK"))
    });
    for (i, vm) in vms.iter().enumerate() {
        assert_eq!(vmtest(&vm.serial(), "NETUP").len(), 1, "vm{} rebooted", i + 1);
    }
    let stats = d.ok(&["nic", "stats", "g1"]);
    let counts: Vec<u64> = stats.lines().filter_map(|l| l.split(':').nth(1)?.trim().parse().ok()).collect();
    assert!(counts.len() == 2 && counts.iter().all(|&n| n > 0), "traffic on the new data plane: {stats}");
}

/// Multiqueue with real guests: the daemon offers two queue pairs (`--vhost-queue-pairs 2`),
/// each QEMU guest has two vCPUs and `mq=on`, so its driver uses both pairs (one TX queue
/// per vCPU). Each guest pings from each vCPU and fetches its peer's blob over HTTP; the
/// daemon's per-queue counters show frames on every queue of both NICs.
#[test]
fn two_qemu_guests_with_two_queue_pairs() {
    qemu_guests_on_two_queue_pairs(&[]);
}

/// The same with `--vhost-spread` over two workers: each NIC's second pair is served by the
/// other worker (`vm-g<i>/1` there), the firewall and switch by the NIC's own.
#[test]
fn two_qemu_guests_with_two_queue_pairs_spread_over_two_workers() {
    qemu_guests_on_two_queue_pairs(&["--workers", "2", "--vhost-spread"]);
}

fn qemu_guests_on_two_queue_pairs(daemon_args: &[&str]) {
    let image = guest_image();
    let d = Daemon::start(&[&["--no-state", "--vhost-queue-pairs", "2"], daemon_args].concat());
    d.ok(&["sg", "add", "open"]);
    d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
    for i in 1..=2 {
        let (mac, ip, id) = (format!("52:54:00:00:00:0{i}"), format!("10.0.0.{i}"), format!("g{i}"));
        d.ok(&["nic", "add", "--id", &id, "--mac", &mac, "--vni", "1", "--ip", &ip, "--sg", "open"]);
    }
    let work = tempfile::tempdir().unwrap();
    let boot = |i: u8, role| {
        let spec = GuestSpec {
            name: if i == 1 { "vm1" } else { "vm2" },
            index: i,
            peer: 3 - i,
            role,
            extra_cmdline: "vmmq=1 vmtxkb=64",
            netdev_extra: "",
            queues: 2,
        };
        Guest::boot(
            &image,
            work.path(),
            &spec,
            Chardev::Client(&d.sockets().join(format!("qemu-vhost-g{i}"))),
        )
    };
    let (mut vm1, mut vm2) = (boot(1, "client"), boot(2, "server"));
    let mut vms = [&mut vm1, &mut vm2];
    wait(&mut vms, "pings from every vCPU both ways", Duration::from_secs(180), |a, b| {
        !vmtest(a, "MQPING_").is_empty() && !vmtest(b, "MQPING_").is_empty()
    });
    for vm in vms.iter() {
        let log = vm.serial();
        let queues = vmtest(&log, "QUEUES");
        assert!(
            queues.iter().any(|l| l.starts_with("rx=2 tx=2")),
            "the driver uses {queues:?}
{}",
            vm.tail(20)
        );
        assert!(vmtest(&log, "MQPING_OK").iter().any(|l| l.starts_with("cpus=2")), "{}", vm.tail(20));
    }
    wait(&mut vms, "HTTP transfers both ways", Duration::from_secs(120), |a, b| {
        !vmtest(a, "GOT_MD5").is_empty() && !vmtest(b, "GOT_MD5").is_empty()
    });
    assert_transfers_intact(&vms);
    let status = d.ok(&["status"]);
    // Per NIC, its bricks' per-queue counts added up (one brick, or one per worker spread).
    let lines = queue_pair_counts(&status);
    let bricks_per_nic = if daemon_args.contains(&"--vhost-spread") { 2 } else { 1 };
    assert_eq!(lines.len(), 2 * bricks_per_nic, "queue lines per NIC:\n{status}");
    for i in 1..=2 {
        let name = format!("vm-g{i}");
        let counts = (0..bricks_per_nic)
            .map(|t| match t {
                0 => queue_pair_counts(brick_label(&status, &name)).remove(0),
                t => queue_pair_counts(brick_label(&status, &format!("{name}/{t}"))).remove(0),
            })
            .reduce(|a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
            .unwrap();
        eprintln!("{name} per-queue counts (rx, then tx): {counts:?}");
        assert!(counts.len() == 4 && counts.iter().all(|&n| n > 0), "per-queue counts {counts:?}:\n{status}");
    }
}

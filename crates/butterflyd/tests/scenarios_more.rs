//! More of Butterfly's acceptance scenarios (outscale/butterfly `tests/NN_*/test.sh`) ported
//! to the real butterflyd and the real `butterfly` CLI, as in `scenarios.rs` (same helpers:
//! `nic_add` = MAC 52:54:00:12:34:0i, IP 42.0.0.i, anti-spoofing, then `nic sg add`):
//! 12 (NICs deleted under running guests, the guests being dpdk-testpmd virtio_user
//! frontends), 45 (DHCP between VMs on two daemons), 46 (the API key of `-k`).
//! docs/scenarios.md says how closely each one follows the original.

mod common;
#[path = "../../brick-vhost/tests/common/mod.rs"]
mod vhost;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::scenario::*;
use common::*;

/// `ping -c 1 -w 1` from namespace `ns` to `to`, again until one answers or `window` ends.
fn pings(ns: &str, to: &str, window: Duration) -> bool {
    let deadline = Instant::now() + window;
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-w", "1", to])
            .output()
            .unwrap();
        if out.status.success() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Butterfly's `ssh_ping`: a ping from `ns` to `to` gets an answer.
fn ping_ok(step: &str, ns: &str, to: &str) {
    assert!(pings(ns, to, OK_WITHIN), "{step}: ping {ns} -> {to} should pass");
}

/// Butterfly's `ssh_no_ping`: no ping from `ns` to `to` is answered for a second.
fn ping_ko(step: &str, ns: &str, to: &str) {
    assert!(!pings(ns, to, Duration::from_millis(900)), "{step}: ping {ns} -> {to} should be blocked");
}

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 45: DHCP.

/// 45: VM1 on BT0 serves DHCP (a fixed lease for VM2's MAC), VM2 on BT1 has no address and
/// asks for one; both NICs are in sg-1, which allows only UDP 67 and 68. The lease is
/// obtained across the overlay (and not before the rules: the server's group keeps the
/// requests out), pings are blocked both ways; ICMP allowed on both daemons: pings pass.
#[test]
fn s45_dhcp_lease_in_a_group_of_udp_67_68_then_icmp() {
    let t0 = Instant::now();
    let mut t = two_hosts(true);
    // nic_add 0 1 42 sg-1: the DHCP server's guest holds 42.0.0.1.
    let Vm { ns: vm1, nic: n1, .. } = nic_add(&mut t, 0, 1, 42, Kind::V4, &["sg-1"], &[]);
    // nic_add 1 2 42 sg-1: the NIC has 42.0.0.2, its guest nothing until DHCP gives it.
    let Vm { ns: vm2, nic: n2, .. } = nic_add(&mut t, 1, 2, 42, Kind::NoIp, &["sg-1"], &["--ip", "42.0.0.2"]);
    // The server: fixed lease 42.0.0.2 for VM2's MAC (Butterfly's dhcpd has fixed leases).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("udhcpd.conf");
    let leases = dir.path().join("udhcpd.leases");
    std::fs::write(&leases, b"").unwrap();
    std::fs::write(
        &conf,
        format!(
            "start 42.0.0.2\nend 42.0.0.20\ninterface {n1}\nlease_file {}\noption subnet 255.255.255.0\n\
             static_lease 52:54:00:12:34:02 42.0.0.2\n",
            leases.display()
        ),
    )
    .unwrap();
    let _server = Killed(
        Command::new("ip")
            .args(["netns", "exec", &vm1, "busybox", "udhcpd", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The client configures its interface with what it is given (udhcpc's script).
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in bound|renew) ip addr add \"$ip/24\" dev \"$interface\";; esac\nexit 0\n",
    )
    .unwrap();
    sh(&["chmod", "+x", script.to_str().unwrap()]);
    // -n: give up without a lease; -q: quit once it has one.
    let udhcpc = |tries: &str| {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &vm2, "busybox", "udhcpc", "-i", &n2, "-n", "-q", "-t", tries, "-T", "1",
                "-s",
            ])
            .arg(&script)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success() && text.contains("lease of 42.0.0.2"), text)
    };
    // Before the rules, sg-1 (empty) keeps the requests from the server.
    let (leased, text) = udhcpc("2");
    assert!(!leased, "no lease while sg-1 is empty:\n{text}");
    for d in &t.h {
        // sg_rule_add_dhcp
        port_open(d, "udp", 67, "sg-1");
        port_open(d, "udp", 68, "sg-1");
    }

    let (leased, text) = udhcpc("5");
    assert!(leased, "DHCP lease across the overlay:\n{text}");
    let addrs = sh(&["ip", "-n", &vm2, "-4", "addr", "show", "dev", &n2]);
    assert!(addrs.contains("inet 42.0.0.2/24"), "the client took its lease: {addrs}");

    // sg-1 lets only DHCP in: pings blocked both ways.
    ping_ko("sg-1 udp 67, 68", &vm1, "42.0.0.2");
    ping_ko("sg-1 udp 67, 68", &vm2, "42.0.0.1");
    // sg_rule_add_icmp on both daemons: pings pass.
    for d in &t.h {
        d.ok(&["sg", "rule", "add", "sg-1", "--dir", "in", "--ip-proto", "icmp", "--cidr", "0.0.0.0/0"]);
    }
    ping_ok("icmp allowed", &vm1, "42.0.0.2");
    ping_ok("icmp allowed", &vm2, "42.0.0.1");
    let status = t.h[1].ok(&["status"]);
    assert!(status.contains("drop"), "the blocked pings were counted: {status}");
    eprintln!("s45: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 46: encryption.

/// Writes a key file as Butterfly's test makes one (`dd bs=32 count=1 | base64`): 32 bytes
/// from `seed`, base64.
fn key_file(path: &Path, seed: u8) -> PathBuf {
    let bytes: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(7).wrapping_add(seed)).collect();
    let out = Command::new("sh")
        .args(["-c", "base64 > \"$0\"", path.to_str().unwrap()])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&bytes)?;
            c.wait()
        })
        .unwrap();
    assert!(out.success());
    path.to_path_buf()
}

/// `butterfly ARGS` against daemon `d` with no security of the harness's own: (exit code,
/// stderr).
fn raw_cli(d: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(cli_path()).args(["-e", &d.endpoint, "-t", "5000"]).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// 46: BT0 with a key (`-k`), BT1 without, every call of Butterfly's script with its exit
/// status: on BT0 only keyed calls work, on BT1 only clear ones; a refused call says why and
/// changes nothing (`dump` identical, the daemon still up after a refused `shutdown`). One
/// difference, on purpose: a key file that cannot be read (`-k doesnotexist`) is an error of
/// the CLI (exit 1), where Butterfly's client went on in clear text. The daemon refuses to
/// start with a key that is not 32 bytes of base64.
#[test]
fn s46_keyed_and_clear_daemons() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&dir.path().join("api-key"), 1);
    let bad_key = key_file(&dir.path().join("bad-api-key"), 2);
    // 'static: the calls below are tables of argument lists (a test process, two strings).
    let key: &'static str = Box::leak(key.display().to_string().into_boxed_str());
    let bad: &'static str = Box::leak(bad_key.display().to_string().into_boxed_str());
    let start = |extra: &[&str]| {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let mut args = vec!["--no-state", "-t"];
        args.extend_from_slice(extra);
        let security = Security {
            cli: if extra.is_empty() { vec![] } else { vec!["-k".into(), key.into()] },
            key: (!extra.is_empty()).then(|| butterfly_api::crypto::Key::load(Path::new(key)).unwrap()),
            curve: None,
        };
        Daemon::start_secured(tempfile::tempdir().unwrap(), None, endpoint, &args, security)
    };
    let bt0 = start(&["-k", key]);
    let bt1 = start(&[]);
    let nic_add =
        ["nic", "add", "--ip", "42.0.0.1", "--mac", "42:42:42:42:42:02", "--vni", "1337", "--id", "nic_1"];
    let with = |k: &'static str, args: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["-k", k];
        v.extend_from_slice(args);
        v
    };

    // (daemon, expected exit status, arguments, what stderr must say when refused)
    let bt0_calls: Vec<(i32, Vec<&str>, &str)> = vec![
        (1, with("doesnotexist", &["status"]), "cannot load encryption key"),
        (0, with(key, &nic_add), ""),
        (0, with(key, &["nic", "list"]), ""),
        (1, vec!["nic", "list"], "give its key with -k"),
        (0, with(key, &["nic", "stats", "nic_1"]), ""),
        (1, vec!["nic", "add", "--id", "intruder", "--mac", "52:54:00:00:00:66", "--vni", "7"], "REJECTED"),
        (1, vec!["shutdown"], "give its key with -k"),
        (1, with(bad, &["shutdown"]), "Encrypted message error: REJECTED"),
        (1, with(bad, &["sg", "add", "sg-intruder"]), "-k the daemon's key"),
    ];
    let mut before = String::new();
    for (i, (code, args, says)) in bt0_calls.iter().enumerate() {
        if i == 5 {
            before = bt0.ok(&["dump"]);
        }
        let (got, err) = raw_cli(&bt0, args);
        assert_eq!(got, Some(*code), "BT0 (keyed): butterfly {args:?}: {err}");
        assert!(err.contains(says), "BT0: butterfly {args:?} says why: {err}");
    }
    assert_eq!(bt0.ok(&["dump"]), before, "the refused calls changed nothing");
    assert_eq!(bt0.ok(&["nic", "list"]), "nic_1\n");
    let (got, err) = raw_cli(&bt0, &with(key, &["shutdown"]));
    assert_eq!(got, Some(0), "{err}");
    assert_eq!(bt0.wait_exit(), 0, "BT0 stopped on its keyed shutdown");

    let bt1_calls: Vec<(i32, Vec<&str>, &str)> = vec![
        (1, with("doesnotexist", &["status"]), "cannot load encryption key"),
        (1, with(key, &nic_add), "leave out -k"),
        (1, with(key, &["nic", "list"]), "leave out -k"),
        (0, vec!["nic", "list"], ""),
        (1, with(key, &["nic", "stats", "nic_1"]), "leave out -k"),
        (1, with(key, &["shutdown"]), "leave out -k"),
    ];
    let before = bt1.ok(&["dump"]);
    for (code, args, says) in &bt1_calls {
        let (got, err) = raw_cli(&bt1, args);
        assert_eq!(got, Some(*code), "BT1 (clear): butterfly {args:?}: {err}");
        assert!(err.contains(says), "BT1: butterfly {args:?} says why: {err}");
    }
    assert_eq!(bt1.ok(&["dump"]), before, "the refused calls changed nothing");
    assert_eq!(bt1.ok(&["nic", "list"]), "", "no NIC was added with a key the daemon does not have");
    let (got, err) = raw_cli(&bt1, &["shutdown"]);
    assert_eq!(got, Some(0), "{err}");
    assert_eq!(bt1.wait_exit(), 0, "BT1 stopped on its clear shutdown");

    // A key that is not 32 bytes: the daemon does not start, and says why.
    let short = dir.path().join("short-key");
    std::fs::write(&short, "AAECAwQF\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args(["--no-state", "--underlay", "none", "--metrics", "off", "--no-syslog", "-k"])
        .arg(&short)
        .args(["-e", &format!("ipc://{}/api.sock", dir.path().display()), "-s"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("short-key"), "names the key file: {err}");
    eprintln!("s46: {:.1} s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 12: NICs deleted and added again under running guests.

/// A "guest" with no VM: dpdk-testpmd with a virtio_user port (vhost-user frontend, the
/// client side of the daemon's socket) whose MAC is the NIC's, in flowgen mode: it sends
/// UDP frames to `peer`'s MAC without end and counts what it receives. Killed on drop.
struct Guest {
    pmd: Killed,
    log: PathBuf,
    prefix: String,
}

impl Guest {
    /// Starts it; its forwarding thread runs on CPU `cpu` (0 or 1), so that two guests do not
    /// share one.
    fn start(sock: &Path, mac: &str, peer: &str, cpu: usize, log: PathBuf, tag: &str) -> Guest {
        Self::start_queues(sock, mac, peer, cpu, log, tag, 1)
    }

    /// Like [`start`](Self::start) with `queues` queue pairs (more than one: virtio_user's
    /// own control queue enables them), all forwarded by its one thread.
    fn start_queues(
        sock: &Path,
        mac: &str,
        peer: &str,
        cpu: usize,
        log: PathBuf,
        tag: &str,
        queues: u16,
    ) -> Guest {
        Self::start_mode(sock, mac, peer, cpu, log, tag, queues, &["--forward-mode=flowgen"])
    }

    /// Like [`start_queues`](Self::start_queues) in forwarding mode `mode` (testpmd's
    /// arguments).
    #[allow(clippy::too_many_arguments)]
    fn start_mode(
        sock: &Path,
        mac: &str,
        peer: &str,
        cpu: usize,
        log: PathBuf,
        tag: &str,
        queues: u16,
        mode: &[&str],
    ) -> Guest {
        let prefix = format!("bs12{tag}{}", std::process::id());
        let cq = if queues > 1 { ",cq=1" } else { "" };
        let vdev =
            format!("virtio_user0,path={},queues={queues}{cq},queue_size=256,mac={mac}", sock.display());
        let out = std::fs::File::create(&log).unwrap();
        // stdbuf: testpmd's statistics every second reach the log as they are printed.
        let child = Command::new("stdbuf")
            .args(["-oL", "dpdk-testpmd", "-l", "0,1", "--main-lcore", &(1 - cpu).to_string()])
            .args(["--no-pci", "--no-huge", "-m", "256"])
            .args(["--file-prefix", &prefix, "--vdev", &vdev, "--"])
            .args(mode)
            .args([&format!("--eth-peer=0,{peer}"), "--stats-period", "1"])
            .args(["--total-num-mbufs=4096", "--txd=256", "--rxd=256"])
            .args([format!("--rxq={queues}"), format!("--txq={queues}")])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("dpdk-testpmd (scripts/setup-brick-vhost.sh installs it)");
        Guest { pmd: Killed(child), log, prefix }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Frames received so far: the last "RX-packets: N" testpmd printed.
    fn received(&self) -> u64 {
        self.output()
            .lines()
            .rev()
            .filter_map(|l| l.trim().strip_prefix("RX-packets:"))
            .find_map(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Stops it with SIGINT and returns its output, which then ends with its totals (per
    /// queue pair too, with several).
    fn stop(mut self) -> String {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped yet.
        unsafe { libc::kill(self.pmd.0.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.running() {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.output()
    }

    /// Whether the guest still runs (a lost backend must not kill it).
    fn running(&mut self) -> bool {
        self.pmd.0.try_wait().unwrap().is_none()
    }

    /// Waits until it has received more than `since` + 1,000 frames.
    fn wait_traffic(&mut self, what: &str, since: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.received() <= since + 1_000 {
            assert!(self.running(), "{what}: the guest exited:\n{}", self.output());
            assert!(Instant::now() < deadline, "{what}: no traffic reaches the guest:\n{}", self.output());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Checks that nothing reaches any of `guests` for 2 s, and that they all still run. The
/// count settles first: testpmd prints it every second, and a guest's forwarding thread
/// (sharing a CPU with the other guest and the daemon) may drain what was already in its
/// ring a second or two late.
fn no_traffic(guests: &mut [Guest], what: &str) {
    std::thread::sleep(Duration::from_millis(2_500));
    let before: Vec<u64> = guests.iter().map(Guest::received).collect();
    std::thread::sleep(Duration::from_millis(2_000));
    for (i, (g, n)) in guests.iter_mut().zip(before).enumerate() {
        assert_eq!(g.received(), n, "{what}: traffic still reaches guest {}", i + 1);
        assert!(g.running(), "{what}: guest {} crashed:\n{}", i + 1, g.output());
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.pmd.0.kill();
        let _ = self.pmd.0.wait();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{}", self.prefix));
    }
}

/// 12: two guests on vhost-user NICs of one daemon exchange traffic; both NICs deleted
/// under the running guests: nothing passes, the guests keep running; the same NICs (ids,
/// MACs) added again: still nothing, the guests' frontends do not reconnect by themselves
/// (as Butterfly's QEMU guests); the guests restarted: traffic passes again. Butterfly's
/// guests are QEMU VMs pinging each other; here dpdk-testpmd virtio_user frontends
/// (seconds to start, where a TCG guest boot takes minutes) sending UDP flows to each
/// other's MAC, on `--bypass-filtering` NICs (flowgen's addresses are its own).
#[test]
fn s12_nics_deleted_and_added_again_under_running_guests() {
    let t0 = Instant::now();
    let d = Daemon::start(&["--no-state"]);
    let logs = tempfile::tempdir().unwrap();
    let nic_add = |i: u8| vhost_nic_add(&d, i, "--bypass-filtering");
    let socks = [nic_add(1), nic_add(2)];
    let start = |i: usize, round: &str| {
        let (me, peer) = (mac(i as u8 + 1), mac(2 - i as u8));
        Guest::start(
            &socks[i],
            &me,
            &peer,
            i,
            logs.path().join(format!("g{i}-{round}.log")),
            &format!("{i}{round}"),
        )
    };
    let mut guests = [start(0, "a"), start(1, "a")];
    for (i, g) in guests.iter_mut().enumerate() {
        g.wait_traffic(&format!("guest {} first start", i + 1), 0);
    }
    eprintln!("s12: traffic between the guests after {:.1} s", t0.elapsed().as_secs_f64());

    for i in 1..=2 {
        d.ok(&["nic", "del", &format!("nic-{i}")]);
    }
    assert!(!exists(&socks[0]) && !exists(&socks[1]), "nic del removes the sockets");
    no_traffic(&mut guests, "NICs deleted");

    assert_eq!([nic_add(1), nic_add(2)], socks, "the same NICs, at the same sockets");
    no_traffic(&mut guests, "NICs added again, guests not restarted");

    drop(guests);
    let mut guests = [start(0, "b"), start(1, "b")];
    for (i, g) in guests.iter_mut().enumerate() {
        g.wait_traffic(&format!("guest {} restarted", i + 1), 0);
    }
    let stats = d.ok(&["nic", "stats", "nic-2"]);
    assert!(stats.contains("in: ") && !stats.contains("in: 0\n"), "{stats}");
    eprintln!("s12: {:.1} s", t0.elapsed().as_secs_f64());
}

/// Multiqueue (not a Butterfly scenario: Butterfly offered one queue pair): a daemon started
/// with `--vhost-queue-pairs 2` offers two to every vhost-user NIC, and two guests using both
/// exchange traffic through it on each pair (testpmd's per-queue totals at exit).
#[test]
fn vhost_nics_carry_traffic_on_two_queue_pairs() {
    let d = Daemon::start(&["--no-state", "--vhost-queue-pairs", "2"]);
    let logs = tempfile::tempdir().unwrap();
    let socks = [vhost_nic_add(&d, 1, "--bypass-filtering"), vhost_nic_add(&d, 2, "--bypass-filtering")];
    let mut guests = [0, 1].map(|i| {
        let (me, peer) = (mac(i as u8 + 1), mac(2 - i as u8));
        Guest::start_queues(
            &socks[i],
            &me,
            &peer,
            i,
            logs.path().join(format!("mq{i}.log")),
            &format!("mq{i}"),
            2,
        )
    });
    for (i, g) in guests.iter_mut().enumerate() {
        g.wait_traffic(&format!("guest {} with two queue pairs", i + 1), 0);
    }
    std::thread::sleep(Duration::from_secs(1));
    // The daemon's own view (`status`, one line per NIC): every pair carried frames both ways.
    let status = d.ok(&["status"]);
    let nics = queue_pair_counts(&status);
    assert_eq!(nics.len(), 2, "one queue line per NIC expected:\n{status}");
    for counts in nics {
        assert!(
            counts.len() == 4 && counts.iter().all(|&n| n > 1000),
            "per-queue counts {counts:?}:\n{status}"
        );
    }
    for (i, g) in guests.into_iter().enumerate() {
        let out = g.stop();
        let streams = vhost::stream_totals(&out);
        assert_eq!(streams.len(), 2, "guest {}: one stream per queue pair expected:\n{out}", i + 1);
        for (q, rx, tx) in streams {
            assert!(
                rx > 1000 && tx > 1000,
                "guest {} queue pair {q}: {tx} frames sent, {rx} received\n{out}",
                i + 1
            );
        }
    }
}

/// A daemon with two workers spreading two queue pairs (`--vhost-spread`) and two NICs in
/// one VNI behind a security group allowing everything: nic-1 (198.18.0.1) and nic-2, whose
/// guest sends its first burst from 32 addresses, all its NIC's (testpmd 22.11's multi-flow:
/// frame k from 198.18.k.x, x its forwarding lcore plus the destination's last byte). The
/// daemon and the two NICs' sockets.
fn spread_daemon() -> (Daemon, [PathBuf; 2]) {
    let d = Daemon::start(&["--no-state", "--workers", "2", "--vhost-queue-pairs", "2", "--vhost-spread"]);
    d.ok(&["sg", "add", "sg-all"]);
    d.ok(&["sg", "rule", "add", "sg-all", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
    let socks = [1u8, 2].map(|i| {
        let id = format!("nic-{i}");
        let ips: Vec<String> = match i {
            1 => vec!["198.18.0.1".into()],
            _ => (0..32).map(|k| format!("198.18.{k}.2")).collect(),
        };
        let m = mac(i);
        let mut args = vec!["nic", "add", "--id", &id, "--vni", "42", "--sg", "sg-all", "--mac", &m];
        for ip in &ips {
            args.extend(["--ip", ip]);
        }
        PathBuf::from(d.ok(&args).trim())
    });
    (d, socks)
}

/// `--vhost-spread` (issue #15): with two workers and two queue pairs, each vhost-user NIC's
/// second pair is served by the other worker, which copies frames into and out of the guest
/// and hands them to the NIC's worker (firewall, switch) through a queue. Two guests behind
/// security groups: one running both pairs, whose flows go out through both workers and
/// come back spread over both; one running a single pair (as a one-vCPU guest does), which
/// gets everything on it and loses nothing to the idle pair.
#[test]
fn spread_nics_carry_filtered_traffic_through_both_workers() {
    let (d, socks) = spread_daemon();
    let logs = tempfile::tempdir().unwrap();
    // Each guest swaps what it receives back to its sender (5tswap: MACs, addresses and
    // ports, so the other NIC's firewall sees the answers of its connections); the second
    // guest, started once the first is up, sends the first frames (a burst per queue, one
    // flow per frame), which then go back and forth for ever.
    let mode = ["--forward-mode=5tswap", "--txonly-multi-flow"];
    let start = |i: usize, queues: u16, first: &[&str]| {
        let (me, peer) = (mac(i as u8 + 1), mac(2 - i as u8));
        let log = logs.path().join(format!("spread{i}.log"));
        Guest::start_mode(
            &socks[i],
            &me,
            &peer,
            i,
            log,
            &format!("sp{i}"),
            queues,
            &[&mode[..], first].concat(),
        )
    };
    let first = start(0, 2, &[]);
    assert!(
        vhost::wait_until(Duration::from_secs(20), || d.ok(&["status"]).contains("running=0x3")),
        "the first guest's two RX queues run"
    );
    let mut guests = [first, start(1, 1, &["--tx-first", "--tx-ip=198.18.0.2,198.18.0.1"])];
    for (i, g) in guests.iter_mut().enumerate() {
        g.wait_traffic(&format!("guest {} behind a spread NIC", i + 1), 0);
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = d.ok(&["status"]);
    // Guest 1's frames for it went to both threads; guest 2's only to the thread of its one
    // running pair.
    let to = |nic: &str| label_list(brick_label(&status, &format!("spread-{nic}")), "to threads=");
    let (one, two) = (to("nic-1"), to("nic-2"));
    assert!(one.len() == 2 && one.iter().all(|&n| n > 1000), "spread-nic-1 sent {one:?}\n{status}");
    assert!(two.len() == 2 && two[0] > 1000 && two[1] == 0, "spread-nic-2 sent {two:?}\n{status}");
    // Each thread's brick is in its own worker's graph and carried its own pair's frames.
    let pairs = |name: &str| {
        let l = brick_label(&status, name);
        (label_list(l, " rx="), label_list(l, " tx="))
    };
    for (name, pair) in [("vm-nic-1", 0), ("vm-nic-1/1", 1)] {
        let worker = format!("w{pair}_");
        assert!(
            brick_label(&status, name).trim_start().starts_with(&worker),
            "{name} not on {worker}\n{status}"
        );
        let (rx, tx) = pairs(name);
        assert!(rx[pair] > 1000 && tx[pair] > 1000, "{name}: rx {rx:?} tx {tx:?}\n{status}");
        assert_eq!(rx[1 - pair] + tx[1 - pair], 0, "{name} used the other pair\n{status}");
    }
    for name in ["vm-nic-1", "vm-nic-1/1", "vm-nic-2", "vm-nic-2/1"] {
        assert!(!brick_label(&status, name).contains("drop not ready"), "{name} dropped\n{status}");
    }
    // Both ways, every frame crossed the NIC's firewall, on its worker.
    let fw = brick_label(&status, "fw-nic-1");
    let ins: Vec<u64> = fw.match_indices(" in:").map(|(at, _)| label_list(&fw[at..], " in:")[0]).collect();
    assert!(ins.len() == 2 && ins.iter().all(|&n| n > 1000), "fw-nic-1 took {ins:?}\n{status}");
    // The guests' own counts: guest 1 sent and received on both pairs (testpmd prints
    // per-queue totals only with several), guest 2 on its one.
    let [one, two] = guests;
    assert!(two.received() > 1000, "guest 2 received {}", two.received());
    drop(two);
    let out = one.stop();
    let streams = vhost::stream_totals(&out);
    assert_eq!(streams.len(), 2, "guest 1: one stream per pair\n{out}");
    for (q, rx, tx) in streams {
        assert!(rx > 1000 && tx > 1000, "guest 1 pair {q}: {tx} sent, {rx} received\n{out}");
    }
    // The guests stopped, nothing moves: `nic stats` gives the bytes of both threads'
    // bricks (each counts its own pairs' frames).
    let status = d.ok(&["status"]);
    let from_vm: u64 = ["vm-nic-1", "vm-nic-1/1"]
        .iter()
        .map(|name| {
            let l = brick_label(&status, name);
            let west = &l[l.find("|west ").unwrap()..];
            let out = &west[west.find(" out:").unwrap()..];
            let bytes = label_list(&out[out.find("p/").unwrap()..], "p/")[0];
            assert!(bytes > 0, "{name} carried nothing\n{status}");
            bytes
        })
        .sum();
    let stats = d.ok(&["nic", "stats", "nic-1"]);
    assert!(
        stats.contains(&format!("in: {from_vm}\n")),
        "{stats} against {from_vm} bytes from the VM\n{status}"
    );
    // Deleting a spread NIC takes its bricks out of both workers' graphs.
    d.ok(&["nic", "del", "nic-1"]);
    let status = d.ok(&["status"]);
    assert!(!status.contains("nic-1"), "nic-1's bricks left:\n{status}");
}

/// A spread NIC follows its guest across restarts with another number of queue pairs, as a
/// VM rebooted with fewer or more vCPUs comes back: with one pair running, every flow for it
/// goes to the thread of that pair and nothing to the other; with two again, both threads
/// carry its flows; and with the guest gone, no thread counts as running.
#[test]
fn a_spread_nic_follows_its_guest_across_restarts_with_other_queue_counts() {
    let (d, socks) = spread_daemon();
    let logs = tempfile::tempdir().unwrap();
    let mode = ["--forward-mode=5tswap", "--txonly-multi-flow"];
    let spread = |status: &str| brick_label(status, "spread-nic-1").to_string();
    let mut sent_before = vec![0, 0];
    for (round, queues) in [2u16, 1, 2].into_iter().enumerate() {
        let start = |i: usize, queues: u16, first: &[&str]| {
            let (me, peer) = (mac(i as u8 + 1), mac(2 - i as u8));
            let log = logs.path().join(format!("restart{round}-{i}.log"));
            let tag = format!("rs{round}{i}");
            Guest::start_mode(&socks[i], &me, &peer, i, log, &tag, queues, &[&mode[..], first].concat())
        };
        // The guest of nic-1 comes up first with `queues` pairs; the other guest, one pair,
        // then starts the flows (32, one per frame of its first burst).
        let one = start(0, queues, &[]);
        let running = format!("running=0x{:x}", (1u32 << queues) - 1);
        assert!(
            vhost::wait_until(Duration::from_secs(20), || spread(&d.ok(&["status"])).contains(&running)),
            "round {round}: nic-1's guest runs {queues} RX queues:\n{}",
            d.ok(&["status"])
        );
        let mut guests = [one, start(1, 1, &["--tx-first", "--tx-ip=198.18.0.2,198.18.0.1"])];
        for (i, g) in guests.iter_mut().enumerate() {
            g.wait_traffic(&format!("round {round}, guest {}", i + 1), 0);
        }
        std::thread::sleep(Duration::from_secs(1));
        let status = d.ok(&["status"]);
        let sent = label_list(&spread(&status), "to threads=");
        let new: Vec<u64> = sent.iter().zip(&sent_before).map(|(now, before)| now - before).collect();
        assert!(new[0] > 1000, "round {round}: thread 0 got {new:?}\n{status}");
        match queues {
            1 => assert_eq!(new[1], 0, "round {round}: one pair runs, thread 1 got {new:?}\n{status}"),
            _ => assert!(new[1] > 1000, "round {round}: two pairs run, thread 1 got {new:?}\n{status}"),
        }
        // Both guests go; then no thread of nic-1 counts as running, and the next round
        // counts from there. The first time nic-1's guest dies (SIGKILL, as a crashed VM:
        // its driver stops no queue), then it exits as a shut-down VM does.
        let [one, two] = guests;
        drop(two);
        match round {
            0 => drop(one),
            _ => drop(one.stop()),
        }
        assert!(
            vhost::wait_until(Duration::from_secs(10), || spread(&d.ok(&["status"]))
                .contains("running=0x0 ")),
            "round {round}: nic-1's guest is gone, yet:\n{}",
            d.ok(&["status"])
        );
        sent_before = label_list(&spread(&d.ok(&["status"])), "to threads=");
    }
}

/// A flow keeps to one RX queue of a guest that runs several (as a NIC's RSS would steer it):
/// its frames reach one vCPU, in order. One guest sends a single UDP flow (testpmd txonly)
/// to a guest running two queue pairs (rxonly): one queue receives it all, the other none.
#[test]
fn a_flow_keeps_to_one_rx_queue_of_a_multiqueue_guest() {
    let d = Daemon::start(&["--no-state", "--vhost-queue-pairs", "2"]);
    let logs = tempfile::tempdir().unwrap();
    let socks = [vhost_nic_add(&d, 1, "--bypass-filtering"), vhost_nic_add(&d, 2, "--bypass-filtering")];
    let start = |i: usize, queues: u16, mode: &str| {
        let (me, peer) = (mac(i as u8 + 1), mac(2 - i as u8));
        let log = logs.path().join(format!("flow{i}.log"));
        Guest::start_mode(&socks[i], &me, &peer, i, log, &format!("fl{i}"), queues, &[mode])
    };
    let mut receiver = start(1, 2, "--forward-mode=rxonly");
    let sender = start(0, 1, "--forward-mode=txonly");
    receiver.wait_traffic("the receiving guest", 0);
    std::thread::sleep(Duration::from_secs(1));
    drop(sender);
    let out = receiver.stop();
    // testpmd totals each queue that received something.
    let rx: Vec<(u16, u64)> =
        vhost::stream_totals(&out).iter().map(|s| (s.0, s.1)).filter(|s| s.1 > 0).collect();
    assert!(rx.len() == 1 && rx[0].1 > 1000, "the flow's frames per queue: {rx:?}\n{out}");
}

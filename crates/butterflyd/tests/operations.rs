//! Operations (issue #19): `--nic-mtu` sets the underlay device's MTU (AF_PACKET on a veth
//! or a macvlan, the underlay TAP) and VMs get it less the VXLAN overhead; the underlay trace
//! records VXLAN frames into a pcap file that tshark reads, switched on and off live.
//!
//! Real daemons in network namespaces (root); run under `flock /tmp/nettest.lock`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// An interface's MTU and (from `ip -d link`) its ceiling, inside namespace `ns`.
fn mtu_of(ns: &str, dev: &str) -> (u32, u32) {
    let mtu = sh(&["ip", "netns", "exec", ns, "cat", &format!("/sys/class/net/{dev}/mtu")]);
    let details = sh(&["ip", "-n", ns, "-d", "link", "show", "dev", dev]);
    let max = details
        .split_whitespace()
        .skip_while(|w| *w != "maxmtu")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no maxmtu in {details}"));
    (mtu.trim().parse().unwrap(), max)
}

/// One namespace with a veth `v1`–`v2` (up), and a macvlan `mv1` on `v1` (up, MTU 1500 like
/// its lower device).
fn veth_namespace() -> (String, Netns) {
    let ns = format!("bfmtu{}", unique_tag());
    let guard = Netns(vec![ns.clone()]);
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "-n", &ns, "link", "add", "v1", "type", "veth", "peer", "name", "v2"]);
    sh(&["ip", "-n", &ns, "link", "add", "link", "v1", "name", "mv1", "type", "macvlan"]);
    for d in ["v1", "v2", "mv1"] {
        sh(&["ip", "-n", &ns, "link", "set", d, "up"]);
    }
    (ns, guard)
}

/// Starts a daemon in `ns` with `args` and returns its exit status and stderr: it must
/// refuse to start.
fn refused_start(ns: &str, args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let launch = Launch { netns: Some(ns.to_string()), no_wait: true, ..Launch::default() };
    let mut d = Daemon::launch(dir, endpoint, args, launch);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = d.child.take().unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the daemon started with {args:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().unwrap_or(-1), err)
}

#[test]
fn nic_mtu_sets_the_af_packet_interface_and_vms_get_it_less_vxlan() {
    let mut t = two_hosts_with(false, &["--nic-mtu", "1600"]);
    let hosts = t.ns.0.clone();
    assert_eq!(mtu_of(&hosts[0], "u1").0, 1600, "the underlay interface has the MTU asked");
    assert_eq!(mtu_of(&hosts[1], "u2").0, 1600);
    let a = t.vm(0, "ma", 77, "10.77.0.1", "52:54:00:77:00:01");
    let b = t.vm(1, "mb", 77, "10.77.0.2", "52:54:00:77:00:02");
    let nic = format!("ma{}", t.tag % 10_000);
    assert_eq!(mtu_of(&a, &nic).0, 1550, "a TAP VM gets the underlay MTU less 50 (VXLAN over IPv4)");
    let _ = ping(&a, "10.77.0.2", "1");
    // 1550-byte IP packets, never fragmented, cross whole: the underlay carries 1600.
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        &a,
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "2",
        "-M",
        "do",
        "-s",
        "1522",
        "10.77.0.2",
    ]);
    assert!(
        out.contains("1530 bytes from 10.77.0.2"),
        "a 1550-byte packet crosses the 1600-byte underlay: {out}"
    );
    let (ok, _) = ping(&b, "10.77.0.1", "3");
    assert!(ok);
}

#[test]
fn nic_mtu_max_is_the_highest_the_device_accepts_and_a_refusal_stops_the_start() {
    let (ns, _guard) = veth_namespace();
    // veth: its ceiling (IFLA_MAX_MTU) is accepted.
    let (before, max) = mtu_of(&ns, "v1");
    assert_eq!(before, 1500);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let args = ["--underlay", "af-packet:v1", "-i", "198.18.5.1", "--no-state", "-m", "max", "-l", "info"];
    let d = Daemon::start_full(dir, Some(&ns), endpoint, &args);
    assert_eq!(mtu_of(&ns, "v1").0, max, "max: the veth's ceiling");
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("underlay MTU {max} (--nic-mtu max); VMs get MTU {}", max - 50)), "{err}");

    // A macvlan reports a ceiling of 65535 but refuses more than its lower device's MTU:
    // max finds 1500; an MTU above it stops the start, naming the device and the value.
    let (_, ceiling) = mtu_of(&ns, "mv1");
    assert!(ceiling > 1600, "the macvlan's reported ceiling is above what it accepts");
    sh(&["ip", "-n", &ns, "link", "set", "v1", "mtu", "1500"]);
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let args = ["--underlay", "af-packet:mv1", "-i", "198.18.5.1", "--no-state", "-m", "max"];
    drop(Daemon::start_full(dir, Some(&ns), endpoint, &args));
    assert_eq!(mtu_of(&ns, "mv1").0, 1500, "max: the highest the macvlan accepts");
    let (code, err) = refused_start(
        &ns,
        &["--underlay", "af-packet:mv1", "-i", "198.18.5.1", "--no-state", "--nic-mtu", "1600"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("underlay mv1 refused MTU 1600 (--nic-mtu)"), "{err}");
    assert_eq!(mtu_of(&ns, "mv1").0, 1500, "a refused MTU changes nothing");
}

#[test]
fn nic_mtu_sets_the_underlay_tap() {
    let (ns, _guard) = veth_namespace();
    let tap = format!("bfut{}", unique_tag());
    let underlay = format!("tap:{tap}");
    for (asked, want) in [("1600", None), ("max", Some(()))] {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let args = ["--underlay", &underlay, "-i", "198.18.6.1", "--no-state", "--nic-mtu", asked];
        let d = Daemon::start_full(dir, Some(&ns), endpoint, &args);
        let (mtu, max) = mtu_of(&ns, &tap);
        match want {
            None => assert_eq!(mtu, 1600, "the underlay TAP has the MTU asked"),
            Some(()) => assert_eq!(mtu, max, "max: the TAP's ceiling"),
        }
        drop(d);
    }
}

/// Packets recorded in a pcap file (its size, while frames are being written).
fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The VNIs of the VXLAN frames tshark reads in `p`.
fn vnis_in(p: &Path) -> Vec<String> {
    let out = sh(&["tshark", "-r", p.to_str().unwrap(), "-Y", "vxlan", "-T", "fields", "-e", "vxlan.vni"]);
    out.lines().map(str::to_string).collect()
}

/// Waits until `p` holds more than `than` bytes (the sniffer flushes at each tick).
fn grows(p: &Path, than: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if size(p) > than {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn the_underlay_trace_records_vxlan_and_switches_live() {
    let files = tempfile::tempdir().unwrap();
    let pcap = files.path().join("underlay.pcap");
    let pcap_arg = pcap.to_str().unwrap().to_string();
    let mut t = two_hosts_with(false, &["--underlay-trace-path", &pcap_arg]);
    let a = t.vm(0, "ta", 4242, "10.42.0.1", "52:54:00:42:00:01");
    t.vm(1, "tb", 4242, "10.42.0.2", "52:54:00:42:00:02");
    let d = &t.h[0];
    assert!(d.ok(&["status"]).contains("underlay trace: off"), "off unless asked");
    let (ok, _) = ping(&a, "10.42.0.2", "2");
    assert!(ok);
    assert!(!pcap.exists(), "nothing is written while off");

    let on = d.ok(&["trace", "underlay", "on"]);
    assert_eq!(on.trim(), format!("underlay trace: on ({pcap_arg})"));
    assert!(d.ok(&["status"]).contains(&format!("underlay trace: on ({pcap_arg})")));
    let empty = size(&pcap);
    let (ok, out) = ping(&a, "10.42.0.2", "3");
    assert!(ok, "{out}");
    assert!(grows(&pcap, empty), "the trace grows with traffic");
    let vnis = vnis_in(&pcap);
    assert!(vnis.len() >= 6, "both ways of 3 pings, as VXLAN: {vnis:?}");
    assert!(vnis.iter().all(|v| v == "4242"), "{vnis:?}");

    assert_eq!(d.ok(&["trace", "underlay", "off"]).trim(), "underlay trace: off");
    let stopped = size(&pcap);
    let (ok, _) = ping(&a, "10.42.0.2", "3");
    assert!(ok, "traffic goes on with the trace off");
    assert!(!grows(&pcap, stopped), "off: the file stops growing");
    assert!(d.ok(&["status"]).contains("underlay trace: off"));

    // Live again, into another file; a path with the trace off is a usage error.
    let other = files.path().join("other.pcap");
    let other_arg = other.to_str().unwrap();
    d.ok(&["trace", "underlay", "on", "--path", other_arg]);
    let (ok, _) = ping(&a, "10.42.0.2", "2");
    assert!(ok);
    assert!(grows(&other, 24));
    assert!(!d.cli(&["trace", "underlay", "off", "--path", other_arg]).status.success());
    // A file that cannot be created is refused, and the trace goes on where it was.
    let bad = d.cli(&["trace", "underlay", "on", "--path", "/nonexistent/dir/u.pcap"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/dir/u.pcap"));
    assert!(d.ok(&["status"]).contains(&format!("underlay trace: on ({other_arg})")));
}

#[test]
fn the_underlay_trace_can_be_on_from_the_start() {
    let (ns, _guard) = veth_namespace();
    let files = tempfile::tempdir().unwrap();
    let pcap = files.path().join("start.pcap");
    let pcap_arg = pcap.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let args = [
        "--underlay",
        "af-packet:v1",
        "-i",
        "198.18.7.1",
        "--no-state",
        "--underlay-trace",
        "--underlay-trace-path",
        &pcap_arg,
    ];
    let d = Daemon::start_full(dir, Some(&ns), endpoint, &args);
    assert!(d.ok(&["status"]).contains(&format!("underlay trace: on ({pcap_arg})")));
    // The kernel's ARP requests from the veth's other end reach the underlay.
    sh(&["ip", "-n", &ns, "addr", "add", "198.18.7.2/24", "dev", "v2"]);
    let _ = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", "198.18.7.9"])
        .output();
    assert!(grows(&pcap, 24), "recorded from the start");
    let arp = sh(&["tshark", "-r", &pcap_arg, "-Y", "arp.dst.proto_ipv4 == 198.18.7.9"]);
    assert!(!arp.trim().is_empty(), "tshark reads the ARP requests");
}

/// The DPDK port's MTU, on a `net_tap` port (its kernel interface shows what the PMD set;
/// the PMD receives frames of up to 1522 bytes).
#[cfg(feature = "dpdk")]
#[test]
fn nic_mtu_sets_the_dpdk_port() {
    let (ns, _guard) = veth_namespace();
    let tag = unique_tag();
    let iface = format!("bfdt{tag}");
    let eal = |prefix: &str| {
        format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_tap0,iface={iface} -l 0")
    };
    let mut set = Vec::new();
    for asked in ["1400", "max"] {
        let prefix = format!("bfm{tag}{asked}");
        let eal = eal(&prefix);
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let args = [
            "--underlay",
            "dpdk:0",
            "--dpdk-args",
            &eal,
            "-i",
            "198.18.8.1",
            "--no-state",
            "-m",
            asked,
            "-l",
            "info",
        ];
        let d = Daemon::start_full(dir, Some(&ns), endpoint, &args);
        let (mtu, _) = mtu_of(&ns, &iface);
        let (code, err, _) = d.stop();
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
        assert_eq!(code, 0, "{err}");
        assert!(err.contains(&format!("underlay MTU {mtu} (--nic-mtu {asked})")), "{err}");
        set.push(mtu);
    }
    assert_eq!(set[0], 1400, "the port's MTU, set through rte_eth_dev_set_mtu");
    // net_tap: no max_mtu of its own, frames up to 1522 bytes: 1522 less header and CRC.
    assert_eq!(set[1], 1504, "max: the highest the port accepts");
    let prefix = format!("bfm{tag}refused");
    let (code, err) = refused_start(
        &ns,
        &["--underlay", "dpdk:0", "--dpdk-args", &eal(&prefix), "--no-state", "-m", "1600"],
    );
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert_ne!(code, 0);
    assert!(err.contains("dpdk port 0: refused MTU 1600 (--nic-mtu 1600)"), "{err}");
}

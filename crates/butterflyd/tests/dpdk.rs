//! The DPDK underlay (feature `dpdk`): butterflyd starts on a `net_ring` virtual device with
//! EAL arguments from the command line, shows it in its graph, and stops cleanly; a VM's
//! frames leave through it copied once, straight into the port's mbufs.
#![cfg(feature = "dpdk")]

mod common;
#[path = "../../brick-vhost/tests/common/mod.rs"]
mod vhost;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn dpdk_underlay_on_a_virtual_device() {
    let prefix = format!("bfd{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_ring0 -l 0");
    let d = Daemon::start(&["--no-state", "--underlay", "dpdk:0", "--dpdk-args", &args]);
    d.ok(&["nic", "add", "--id", "d1", "--mac", "52:54:00:00:00:51", "--vni", "5"]);
    let status = d.ok(&["status"]);
    assert!(status.contains("(dpdk)") && status.contains("net_ring0"), "{status}");
    let (code, err, _) = d.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert_eq!(code, 0, "{err}");
}

/// Two workers on a DPDK port: one queue pair each (net_null has several), each worker graph
/// with its own DPDK brick and VTEP; a port with too few queues is refused with a message.
#[test]
fn dpdk_underlay_with_two_workers_gets_a_queue_pair_each() {
    let prefix = format!("bfw{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_null0 -l 0");
    let d = Daemon::start(&["--no-state", "--underlay", "dpdk:0", "--dpdk-args", &args, "--workers", "2"]);
    d.ok(&["nic", "add", "--id", "d1", "--mac", "52:54:00:00:00:61", "--vni", "6"]);
    d.ok(&["nic", "add", "--id", "d2", "--mac", "52:54:00:00:00:62", "--vni", "7"]);
    let status = d.ok(&["status"]);
    assert!(status.contains("queues:[0]") && status.contains("queues:[1]"), "{status}");
    assert_eq!(status.matches("(vni-steer)").count(), 2, "{status}");
    let (code, err, _) = d.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert_eq!(code, 0, "{err}");

    // 17 workers: more queue pairs than a ring port has (16). A clear failure, exit status 1.
    let prefix = format!("bfx{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_ring0 -l 0");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args([
            "--no-state",
            "--metrics",
            "off",
            "--underlay",
            "dpdk:0",
            "--dpdk-args",
            &args,
            "--workers",
            "17",
        ])
        .args(["-e", &format!("ipc://{}/api.sock", dir.path().display()), "-s"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("queues") && err.contains("17 worker(s)"), "{err}");
}

/// The `tx:` and `tx-copied:` figures of the DPDK port in `status`, over its queue pairs
/// (one DPDK brick per worker).
fn port_tx(status: &str) -> (u64, u64) {
    let lines: Vec<&str> = status.lines().filter(|l| l.contains("dpdk port")).collect();
    assert!(!lines.is_empty(), "no DPDK port in {status}");
    let field = |name: &str| -> u64 {
        lines
            .iter()
            .map(|line| {
                let at = line.find(name).unwrap_or_else(|| panic!("{name} in {line}")) + name.len();
                line[at..]
                    .split('p')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("{line}"))
            })
            .sum()
    };
    (field(" tx:"), field(" tx-copied:"))
}

/// A VM on vhost-user (dpdk-testpmd's virtio_user, sending 512-byte UDP frames to an unknown
/// MAC: flooded to the VNI's group) through a DPDK underlay: its frames are copied from guest
/// memory into the port's own mbufs and sent as they are, never copied a second time.
#[test]
fn a_vms_frames_leave_a_dpdk_underlay_copied_once() {
    vm_frames_leave_a_dpdk_underlay_copied_once(&[], 1);
}

/// The same with the NIC's two queue pairs served by two workers (`--vhost-spread`): the
/// other worker's brick copies its pair's frames into mbufs of the port, lent to it, and
/// hands them to the NIC's worker, which sends them as they are.
#[test]
fn a_spread_vms_frames_leave_a_dpdk_underlay_copied_once() {
    vm_frames_leave_a_dpdk_underlay_copied_once(
        &["--workers", "2", "--vhost-queue-pairs", "2", "--vhost-spread"],
        2,
    );
}

fn vm_frames_leave_a_dpdk_underlay_copied_once(daemon_args: &[&str], queues: u16) {
    let prefix = format!("bfl{queues}{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_null0 -l 0");
    let d =
        Daemon::start(&[&["--no-state", "--underlay", "dpdk:0", "--dpdk-args", &args], daemon_args].concat());
    let sock = d.ok(&[
        "nic",
        "add",
        "--id",
        "vm1",
        "--mac",
        "52:54:00:00:00:71",
        "--vni",
        "71",
        "--bypass-filtering",
    ]);
    let logs = tempfile::tempdir().unwrap();
    // 512-byte frames: shorter ones are not worth a lent mbuf (brick_nic::MIN_LENT_FRAME).
    let pmd = vhost::TestPmd::start_queues(
        std::path::Path::new(sock.trim()),
        false,
        &logs.path().join("pmd.log"),
        &format!("bfl{queues}"),
        "flowgen",
        queues,
        &["--txpkts=512"],
    );
    let t = Instant::now();
    let (tx, copied) = loop {
        let (tx, copied) = port_tx(&d.ok(&["status"]));
        if tx >= 10_000 || t.elapsed() > Duration::from_secs(30) {
            break (tx, copied);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Spread: the other worker's brick took its pair's frames.
    let status = d.ok(&["status"]);
    if queues > 1 {
        let sibling = brick_label(&status, "vm-vm1/1");
        let tx = label_list(sibling, " tx=");
        assert!(tx.len() == 2 && tx[1] > 1000, "vm-vm1/1 took {tx:?}\n{status}");
    }
    let output = pmd.stop();
    let (code, err, _) = d.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert!(tx >= 10_000, "the VM's frames reach the port: {tx} sent\ntestpmd:\n{output}");
    // The VTEP's own frames (its IGMP join of the VNI's group) are made in pool packets and
    // copied; the VM's thousands are not.
    assert!(copied <= 4, "every VM frame was sent from the mbuf it was copied into: {copied} of {tx} copied");
    assert_eq!(code, 0, "{err}");
}

/// An IPv6 underlay on a DPDK port that computes checksums (`net_tap`: its kernel interface
/// is the wire): the VTEP leaves the outer UDP checksum to the port, and the Linux kernel's
/// VXLAN on that interface, which checks the checksum over IPv6 before decapsulating,
/// exchanges pings with one of our VMs both ways.
#[test]
fn ipv6_vxlan_on_a_dpdk_port_that_computes_the_outer_checksum() {
    let tag = unique_tag();
    let host = format!("bf6dx{tag}");
    let kvm = format!("bf6kx{tag}");
    let ns = Netns(vec![kvm.clone(), host.clone()]);
    for n in [&host, &kvm] {
        sh(&["ip", "netns", "add", n]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
    }
    let wire = format!("dtap{tag}");
    let prefix = format!("bf6d{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_tap0,iface={wire} -l 0");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let flood = ["--bum-mode", "unicast", "--flood-vteps", "fd78::2"];
    let mut daemon_args = vec!["--underlay", "dpdk:0", "--dpdk-args", &args, "-i", "fd78::1", "--no-state"];
    daemon_args.extend(flood);
    let d = Daemon::start_full(dir, Some(&host), endpoint, &daemon_args);
    // The kernel's VTEP fd78::2 on the port's kernel interface, VNI 30 flooding to us, bridged
    // to a veth into the kernel's VM namespace.
    sh(&["ip", "-n", &host, "addr", "add", "fd78::2/64", "dev", &wire, "nodad"]);
    sh(&["ip", "-n", &host, "link", "set", &wire, "up"]);
    sh(&[
        "ip", "-n", &host, "link", "add", "vx30", "type", "vxlan", "id", "30", "dstport", "4789", "local",
        "fd78::2", "dev", &wire,
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &host,
        "bridge",
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dev",
        "vx30",
        "dst",
        "fd78::1",
    ]);
    sh(&["ip", "-n", &host, "link", "add", "br30", "type", "bridge"]);
    sh(&["ip", "-n", &host, "link", "set", "vx30", "master", "br30", "up"]);
    sh(&["ip", "-n", &host, "link", "set", "br30", "up"]);
    sh(&["ip", "-n", &host, "link", "add", "kv0", "type", "veth", "peer", "name", "eth0", "netns", &kvm]);
    sh(&["ip", "-n", &host, "link", "set", "kv0", "master", "br30", "up"]);
    sh(&["ip", "-n", &kvm, "addr", "add", "10.30.0.2/24", "dev", "eth0"]);
    sh(&["ip", "-n", &kvm, "link", "set", "eth0", "up"]);

    let mut t = Topology { h: [d, Daemon::start(&["--no-state"])], ns, tag };
    let ours = t.vm(0, "da", 30, "10.30.0.1", "52:54:00:30:00:61");
    let (ok, out) = ping(&ours, "10.30.0.2", "5");
    assert!(ok, "our VM pings the kernel's VM:\n{out}\n{}", t.h[0].ok(&["status"]));
    let (ok, out) = ping(&kvm, "10.30.0.1", "3");
    assert!(ok, "the kernel's VM pings ours:\n{out}");
    // The port, not the VTEP, summed the outer UDP checksums.
    let status = t.h[0].ok(&["status"]);
    let offloaded: u64 = status
        .split("tx-csum-offloaded:")
        .nth(1)
        .and_then(|r| r.split('p').next()?.parse().ok())
        .unwrap_or(0);
    assert!(offloaded >= 8, "frames sent with the checksum left to the port: {offloaded}\n{status}");
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
}

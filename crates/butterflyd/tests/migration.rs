//! A VM's live migration with its connections: two hosts (namespaces joined by a veth, a
//! daemon on each), the VM's NIC exported from one daemon (`butterfly nic export`) and
//! imported into the same NIC created on the other (`butterfly nic import`); the VM's
//! kernel (a network namespace) keeps running and gets its NIC from the new host. Its TCP
//! and UDP flows carry on: their next packets pass the new firewall as established. Bad
//! imports are refused with the reason and change nothing.

mod common;
mod traffic;

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use butterfly_api::pb::message_v0 as v0;
use common::*;
use traffic::*;

/// `nic_import` through the API: the reply's status, description and counts.
fn import(d: &Daemon, id: &str, data: &[u8]) -> (bool, String, (u32, u32)) {
    let req = v0::NicImportReq { id: Some(id.into()), data: Some(data.to_vec()) };
    let r = d.client().call(v0::Request { nic_import: Some(req), ..Default::default() }).unwrap();
    let why = r.status.error.and_then(|e| e.description).unwrap_or_default();
    let n = r.nic_import.unwrap_or_default();
    (r.status.status, why, (n.imported(), n.skipped()))
}

fn export(d: &Daemon, id: &str) -> Vec<u8> {
    let r = d.client().call(v0::Request { nic_export: Some(id.into()), ..Default::default() }).unwrap();
    assert!(r.status.status);
    r.nic_export.and_then(|e| e.fw_data).and_then(|f| f.data).unwrap_or_default()
}

/// vm1 (no security group: it may open anything, nothing may open to it) downloads from vm2
/// (which lets vm1's subnet in on TCP 5001 and UDP 5002), both on host 1; vm1 migrates to
/// host 2 in the middle. The download goes on over the same connection and arrives intact,
/// and vm2's UDP reply to vm1's datagram reaches vm1 on its new host. Both flows travel
/// towards vm1, the direction its rules never open: they pass only because its connections
/// came along (no mid-stream pickup: the new firewall picked up nothing).
#[test]
fn a_migrated_vm_keeps_its_tcp_and_udp_flows() {
    let mut t = two_hosts(false);
    let vni = 62;
    let (m1, m2) = ("52:54:00:62:00:01", "52:54:00:62:00:02");
    for h in &t.h {
        h.ok(&["sg", "add", "srv"]);
        for (proto, port) in [("tcp", "5001"), ("udp", "5002")] {
            h.ok(&[
                "sg",
                "rule",
                "add",
                "srv",
                "--dir",
                "in",
                "--ip-proto",
                proto,
                "--port",
                port,
                "--cidr",
                "10.62.0.0/24",
            ]);
        }
    }
    let ns1 = t.vm_with(0, "mv1", vni, Some("10.62.0.1"), m1, &[]);
    let ns2 = t.vm_with(0, "mv2", vni, Some("10.62.0.2"), m2, &["--sg", "srv"]);
    let (ok, out) = ping(&ns2, "10.62.0.1", "1");
    assert!(!ok, "nothing may open to vm1: {out}");
    let nic1 = format!("mv1{}", t.tag % 10_000);
    // The download (vm2 → vm1, 16 MiB at 2 MiB/s) and a UDP exchange vm1 → vm2 → vm1.
    let server = traffic::in_ns(&ns2, || {
        let l = TcpListener::bind(("10.62.0.2", 5001)).unwrap();
        let (s, _) = l.accept().unwrap();
        send_stream(s, 16 << 20, 2 << 20)
    });
    let udp2 = traffic::in_ns(&ns2, || {
        let sock = UdpSocket::bind(("10.62.0.2", 5002)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 64];
        let (_, peer) = sock.recv_from(&mut b).expect("vm1's datagram");
        sock.send_to(b"first reply", peer).unwrap();
        (sock, peer)
    });
    std::thread::sleep(Duration::from_millis(200));
    let progress = Arc::new(AtomicU64::new(0));
    let p2 = Arc::clone(&progress);
    let client = traffic::in_ns(&ns1, move || {
        let s = TcpStream::connect(("10.62.0.2", 5001)).unwrap();
        check_stream(s, &p2)
    });
    let udp1 = traffic::in_ns(&ns1, || {
        let sock = UdpSocket::bind(("10.62.0.1", 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        sock.send_to(b"hello", ("10.62.0.2", 5002)).unwrap();
        let mut b = [0u8; 64];
        let n = sock.recv(&mut b).expect("vm2's first reply");
        assert_eq!(&b[..n], b"first reply");
        sock
    });
    let sock1 = udp1.join().unwrap();
    let (sock2, peer) = udp2.join().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(progress.load(Ordering::Relaxed) > 0, "the download is under way");

    // Migration: the NIC is created on host 2 (its TAP waits there), the connections are
    // exported from host 1 and imported on host 2 with the CLI, host 1 lets the NIC go, and
    // the VM's kernel takes the new device (same MAC and address).
    let (h1, h2) = (&t.h[0], &t.h[1]);
    h2.ok(&["nic", "add", "--id", &nic1, "--type", "TAP", "--mac", m1, "--vni", "62", "--ip", "10.62.0.1"]);
    let file = h1.dir.path().join("mv1.conns");
    let t_switch = Instant::now();
    h1.ok(&["nic", "export", &nic1, file.to_str().unwrap()]);
    let out = h2.ok(&["nic", "import", &nic1, file.to_str().unwrap()]);
    let imported: u32 = out.lines().find_map(|l| l.strip_prefix("imported: ")?.parse().ok()).unwrap();
    assert!(imported >= 2, "the TCP and UDP connections came along: {out}");
    h1.ok(&["nic", "del", &nic1]);
    let host2 = h2.netns.clone().unwrap();
    sh(&["ip", "-n", &host2, "link", "set", "dev", &nic1, "netns", &ns1]);
    sh(&["ip", "-n", &ns1, "addr", "add", "10.62.0.1/24", "dev", &nic1]);
    sh(&["ip", "-n", &ns1, "link", "set", "dev", &nic1, "up"]);
    eprintln!("migration: switched in {:.0} ms", t_switch.elapsed().as_secs_f64() * 1e3);

    // vm2 answers again on the UDP flow: the datagram reaches vm1 on host 2.
    sock2.send_to(b"after the move", peer).unwrap();
    let mut b = [0u8; 64];
    let n = sock1.recv(&mut b).expect("vm2's reply after the migration reaches vm1");
    assert_eq!(&b[..n], b"after the move");
    let got = client.join().unwrap();
    assert_eq!(server.join().unwrap(), Ok(()), "the sender saw no error");
    eprintln!("migration: the download's longest stall {:.0} ms", got.longest_stall.as_secs_f64() * 1e3);
    assert!(got.error.is_none(), "download: {:?} after {} bytes", got.error, got.bytes);
    assert_eq!(got.bytes, 16 << 20, "every byte arrived, checked one by one");
    let status = h2.ok(&["status"]);
    assert_eq!(picked_up(&status, &format!("fw-{nic1}")), 0, "{}", node(&status, &format!("fw-{nic1}")));
    assert!(status.contains(&format!("vm-{nic1}")) && !h1.ok(&["status"]).contains(&format!("vm-{nic1}")));
}

/// Imports that cannot be right are refused with the reason, and the NIC's table is as it
/// was: truncated, another format version, the export of another NIC, garbage, a hostile
/// record count, an unknown NIC, a NIC without firewall. An empty export (a NIC without
/// connections) imports nothing, successfully.
#[test]
fn bad_imports_are_refused_and_change_nothing() {
    let mut t = two_hosts(false);
    for h in &t.h {
        h.ok(&["sg", "add", "open"]);
        h.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
    }
    // Three VMs on host 1: x pings y, y pings z. z's table is about y and z only.
    let mut vms = Vec::new();
    for (i, name) in ["bx", "by", "bz"].into_iter().enumerate() {
        let (ip, mac) = (format!("10.63.0.{}", i + 1), format!("52:54:00:63:00:0{}", i + 1));
        vms.push(t.vm_with(0, name, 63, Some(&ip), &mac, &["--sg", "open"]));
    }
    for (from, to) in [(0, "10.63.0.2"), (1, "10.63.0.3")] {
        let (ok, out) = ping(&vms[from], to, "2");
        assert!(ok, "{out}");
    }
    let (x, z) = (format!("bx{}", t.tag % 10_000), format!("bz{}", t.tag % 10_000));
    let (a, b) = (&t.h[0], &t.h[1]);
    let (ex, ez) = (export(a, &x), export(a, &z));
    assert!(ex.len() > 12 && ez.len() > 12, "both tables hold a ping");
    // The destination: NIC x created on host 2, with an empty table; and a NIC without
    // firewall.
    b.ok(&[
        "nic",
        "add",
        "--id",
        &x,
        "--type",
        "TAP",
        "--mac",
        "52:54:00:63:00:01",
        "--vni",
        "63",
        "--ip",
        "10.63.0.1",
        "--sg",
        "open",
    ]);
    b.ok(&["nic", "add", "--id", "nofw", "--mac", "52:54:00:63:00:09", "--vni", "63", "--bypass-filtering"]);
    let before = export(b, &x);
    let mut version = ex.clone();
    version[4] = 9;
    let garbage: Vec<u8> = (0..ex.len()).map(|i| (i as u8).wrapping_mul(37) ^ 0x5a).collect();
    let mut hostile = ex.clone();
    hostile[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("truncated", &x, ex[..ex.len() - 10].to_vec(), "truncated"),
        ("another version", &x, version, "unsupported export version 9"),
        ("another NIC's", &x, ez.clone(), "another NIC"),
        ("garbage", &x, garbage, "bad magic"),
        ("a count of 4 billion", &x, hostile, "truncated"),
        ("an unknown NIC", "nope", ex.clone(), "NIC: nope not found"),
        ("a NIC without firewall", "nofw", ex.clone(), "no firewall"),
    ];
    for (what, id, data, says) in cases {
        let (ok, why, _) = import(b, id, &data);
        assert!(!ok, "{what}: refused");
        assert!(why.contains(says), "{what}: {why:?} should say {says:?}");
        assert_eq!(export(b, &x), before, "{what}: nothing changed");
    }
    // Through the CLI: exit status 1 and the reason.
    let file = b.dir.path().join("z.conns");
    std::fs::write(&file, &ez).unwrap();
    let out = b.cli(&["nic", "import", &x, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another NIC"), "{out:?}");
    assert_eq!(export(b, &x), before);
    // An empty export imports nothing; x's own imports.
    assert_eq!(import(b, &x, &[]), (true, String::new(), (0, 0)));
    let (ok, why, (n, skipped)) = import(b, &x, &ex);
    assert!(ok && n >= 1 && skipped == 0, "{why} {n} {skipped}");
    assert_ne!(export(b, &x), before);
}

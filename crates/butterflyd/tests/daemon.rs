//! The real daemon, driven through the real `butterfly` CLI and ZeroMQ.

mod common;

use std::process::{Command, Stdio};
use std::time::Instant;

use butterfly_api::pb::message_v0 as v0;
use common::*;

#[test]
fn nics_and_security_groups_through_the_cli() {
    let d = Daemon::start(&[]);
    let out =
        d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7", "--ip", "10.0.0.1"]);
    assert!(out.contains("qemu-vhost-vm1"), "nic add prints the socket path: {out}");
    assert!(exists(&d.sockets().join("qemu-vhost-vm1")), "the vhost-user socket exists");
    d.ok(&["nic", "add", "--id", "vm2", "--mac", "52:54:00:00:00:02", "--vni", "7", "--ip", "10.0.0.2"]);
    let list = d.ok(&["nic", "list"]);
    assert!(list.contains("vm1") && list.contains("vm2"), "{list}");

    d.ok(&["sg", "add", "sg-web"]);
    d.ok(&[
        "sg",
        "rule",
        "add",
        "sg-web",
        "--dir",
        "in",
        "--ip-proto",
        "tcp",
        "--port",
        "80",
        "--cidr",
        "0.0.0.0/0",
    ]);
    d.ok(&["sg", "member", "add", "sg-web", "10.0.0.2"]);
    d.ok(&["nic", "sg", "add", "vm1", "sg-web"]);
    let rules = d.ok(&["sg", "rule", "list", "sg-web"]);
    assert!(rules.contains("80"), "{rules}");

    let status = d.ok(&["status"]);
    for brick in ["vtep", "switch-7", "fw-vm1", "antispoof-vm1", "vm-vm1", "vm-vm2"] {
        assert!(status.contains(brick), "status graph lists {brick}: {status}");
    }
    // Before any traffic, the switch knows both VMs' MACs: pinned to their ports, so a frame
    // from the wire with one of them as source cannot move it and draw the VM's traffic.
    assert!(status.contains("macs 2/"), "the VMs' MACs are static entries: {status}");
    // nic_export returns vm1's connection table; without a connection, no bytes at all, as
    // Butterfly answered (an empty string), not an empty table's header.
    let r = d.client().call(v0::Request { nic_export: Some("vm1".into()), ..Default::default() }).unwrap();
    assert!(r.status.status);
    let data = r.nic_export.and_then(|e| e.fw_data).and_then(|f| f.data);
    assert_eq!(data, Some(Vec::new()), "an empty connection table exports as empty bytes");
    let stats = d.ok(&["nic", "stats", "vm1"]);
    assert!(stats.contains('0'), "{stats}");

    // Deleting a NIC removes its bricks and socket; deleting it again succeeds.
    d.ok(&["nic", "del", "vm1"]);
    d.ok(&["nic", "del", "vm1"]);
    let status = d.ok(&["status"]);
    assert!(!status.contains("fw-vm1") && status.contains("vm-vm2"), "{status}");

    // Bad input: an error, and nothing changes.
    let bad = d.cli(&["nic", "add", "--id", "vm3", "--mac", "zz:00:00:00:00:01", "--vni", "7"]);
    assert!(!bad.status.success());
    let bad = d.cli(&["nic", "add", "--id", "vm3", "--mac", "52:54:00:00:00:03", "--vni", "16777216"]);
    assert!(!bad.status.success());
    assert!(!d.ok(&["nic", "list"]).contains("vm3"));

    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "clean exit on SIGTERM: {err}");
}

/// A second NIC with a MAC already used in its VNI is refused with an API error that names
/// the NIC holding it, and nothing changes; the same MAC in another VNI, or the same NIC
/// added again (replaced), is fine.
#[test]
fn a_mac_already_used_in_the_vni_is_refused() {
    let d = Daemon::start(&["--no-state"]);
    d.ok(&["nic", "add", "--id", "m1", "--mac", "52:54:00:00:00:5a", "--vni", "8", "--ip", "10.8.0.1"]);
    let before = d.ok(&["status"]);
    // Through the API: status false, with the reason.
    let nic = v0::Nic { id: "m2".into(), mac: "52:54:00:00:00:5a".into(), vni: 8, ..Default::default() };
    let r = d.client().call(v0::Request { nic_add: Some(nic), ..Default::default() }).unwrap();
    assert!(!r.status.status, "refused");
    let why = r.status.error.and_then(|e| e.description).unwrap_or_default();
    assert_eq!(why, "NIC m2: MAC 52:54:00:00:00:5a is already used by NIC m1 in VNI 8");
    // Through the CLI, spelled in capitals: the same address.
    let out = d.cli(&["nic", "add", "--id", "m2", "--mac", "52:54:00:00:00:5A", "--vni", "8"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is already used by NIC m1 in VNI 8"), "{err}");
    assert!(!d.ok(&["nic", "list"]).contains("m2"), "nothing added");
    assert!(!exists(&d.sockets().join("qemu-vhost-m2")), "no socket made");
    assert_eq!(before.matches("vm-m").count(), d.ok(&["status"]).matches("vm-m").count(), "no brick added");
    // Another VNI may use it, and m1 may be replaced with it.
    d.ok(&["nic", "add", "--id", "m2", "--mac", "52:54:00:00:00:5a", "--vni", "9"]);
    d.ok(&["nic", "add", "--id", "m1", "--mac", "52:54:00:00:00:5a", "--vni", "8", "--ip", "10.8.0.2"]);
    // But m2 may not move into VNI 8 by being replaced either.
    let out = d.cli(&["nic", "add", "--id", "m2", "--mac", "52:54:00:00:00:5a", "--vni", "8"]);
    assert_eq!(out.status.code(), Some(1));
    let details = d.ok(&["nic", "details", "m2"]);
    assert!(details.contains("vni: 9"), "m2 is as it was: {details}");
}

/// The same IP on two NICs of one VNI is refused (nic_add and nic_update) naming the NIC
/// that has it, and nothing changes; a NIC id added again replaces the NIC, and the CLI and
/// the log say so; a broadcast or multicast MAC is refused as aa:bb:… text.
#[test]
fn duplicate_ips_replaced_nics_and_bad_macs_are_said_clearly() {
    let d = Daemon::start(&["--no-state", "-l", "info"]);
    d.ok(&["nic", "add", "--id", "m1", "--mac", "52:54:00:00:00:51", "--vni", "8", "--ip", "10.8.0.1"]);
    let refused = |args: &[&str], why: &str| {
        let out = d.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    };
    let ip_taken = "NIC m2: IP 10.8.0.1 is already used by NIC m1 in VNI 8";
    let add_m2 = ["nic", "add", "--id", "m2", "--mac", "52:54:00:00:00:52", "--vni", "8", "--ip", "10.8.0.9"];
    let mut args = add_m2.to_vec();
    args.extend(["--ip", "10.8.0.1"]);
    refused(&args, ip_taken);
    assert_eq!(d.ok(&["nic", "list"]), "m1\n", "nothing added");
    assert!(!exists(&d.sockets().join("qemu-vhost-m2")));
    // In another VNI the address is free; in VNI 8, m2 may not take it by an update either.
    d.ok(&["nic", "add", "--id", "m3", "--mac", "52:54:00:00:00:53", "--vni", "9", "--ip", "10.8.0.1"]);
    d.ok(&add_m2);
    refused(&["nic", "update", "--id", "m2", "--ip", "10.8.0.1"], ip_taken);
    assert!(d.ok(&["nic", "details", "m2"]).contains("ip: 10.8.0.9\n"), "m2 is as it was");

    // m1 added again (the same address is its own): replaced, and said.
    let out =
        d.cli(&["nic", "add", "--id", "m1", "--mac", "52:54:00:00:00:51", "--vni", "8", "--ip", "10.8.0.1"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NIC m1 existed and was replaced"), "{err}");

    // Broadcast and multicast MACs: refused, written as MACs.
    for mac in ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"] {
        refused(
            &["nic", "add", "--id", "bad", "--mac", mac, "--vni", "8"],
            &format!("{mac} is not a unicast MAC address"),
        );
    }
    assert!(!d.ok(&["nic", "list"]).contains("bad"));
    let (code, log, _) = d.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("nic_add m1 vni 8 mac 52:54:00:00:00:51: replaces the existing NIC m1"), "{log}");
    assert!(!log.contains("[ff,"), "{log}");
}

#[test]
fn configuration_survives_a_restart() {
    let d = Daemon::start(&[]);
    d.ok(&["sg", "add", "sg-1"]);
    d.ok(&["sg", "member", "add", "sg-1", "10.1.0.9"]);
    d.ok(&[
        "nic",
        "add",
        "--id",
        "keep",
        "--mac",
        "52:54:00:00:00:11",
        "--vni",
        "3",
        "--ip",
        "10.1.0.1",
        "--sg",
        "sg-1",
    ]);
    d.ok(&["nic", "add", "--id", "even", "--mac", "52:54:00:00:00:12", "--vni", "4", "--ip", "10.1.0.2"]);
    let (code, _, dir) = d.stop();
    assert_eq!(code, 0);
    let d = Daemon::start_in(dir, &[]);
    assert!(d.ok(&["nic", "list"]).contains("keep"));
    assert!(d.ok(&["sg", "member", "list", "sg-1"]).contains("10.1.0.9"));
    assert!(d.ok(&["status"]).contains("fw-keep"), "the NIC's bricks were rebuilt");
    assert!(exists(&d.sockets().join("qemu-vhost-keep")), "the socket is back for QEMU to reconnect");

    // The saved configuration does not depend on the worker count: restarted with two
    // workers, each NIC is rebuilt in the worker that owns its VNI (3 → 1, 4 → 0).
    let (code, _, dir) = d.stop();
    assert_eq!(code, 0);
    let d = Daemon::start_in(dir, &["--workers", "2"]);
    let status = d.ok(&["status"]);
    let w1 = status.find("label=\"butterflyd-w1\"").expect("worker 1's cluster");
    let w0 = status.find("label=\"butterflyd-w0\"").expect("worker 0's cluster");
    assert!(w0 < w1, "{status}");
    assert!(status[w1..].contains("fw-keep") && !status[w0..w1].contains("fw-keep"), "{status}");
    assert!(status[w0..w1].contains("vm-even") && !status[w1..].contains("vm-even"), "{status}");
    assert!(d.ok(&["sg", "member", "list", "sg-1"]).contains("10.1.0.9"));
}

/// A request that fails changes nothing, in place: the NIC it touched keeps its vhost-user
/// socket (it used to be torn down and rebuilt by the rollback, cutting the VM off). A
/// change that cannot be saved is undone and reported, not acknowledged and lost at the
/// next restart. A NIC that cannot be restored is left out, and the saved configuration
/// is kept in a copy.
#[test]
fn failed_requests_change_nothing_and_saved_means_on_disk() {
    use std::os::unix::fs::MetadataExt;
    let d = Daemon::start(&[]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:21", "--vni", "5", "--ip", "10.5.0.1"]);
    let sock = d.sockets().join("qemu-vhost-vm1");
    let inode = std::fs::metadata(&sock).unwrap().ino();
    // A connected frontend (QEMU would be one): a rebuilt NIC would close its connection.
    let qemu = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let bad = d.cli(&[
        "nic",
        "update",
        "--id",
        "vm1",
        "--packet-trace",
        "true",
        "--trace-path",
        "/nonexistent/dir/vm1.pcap",
    ]);
    assert!(!bad.status.success(), "a trace file that cannot be created fails the request");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("packet trace"), "refused for its trace file: {err}");
    assert_eq!(std::fs::metadata(&sock).unwrap().ino(), inode, "the socket is still in place");
    qemu.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let still = std::io::Read::read(&mut &qemu, &mut byte);
    assert!(
        matches!(&still, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the frontend's connection was kept: {still:?}"
    );
    assert!(!d.ok(&["nic", "details", "vm1"]).contains("packet trace: true"));

    // The state file cannot be written (its temporary name is taken by a directory).
    let state = d.dir.path().join("state");
    let blocker = state.join("butterflyd.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let bad = d.cli(&["nic", "add", "--id", "vm2", "--mac", "52:54:00:00:00:22", "--vni", "5"]);
    assert!(!bad.status.success(), "an unsaved change is not acknowledged");
    assert!(!d.ok(&["nic", "list"]).contains("vm2"), "and it was undone");
    assert!(!d.ok(&["status"]).contains("vm-vm2"), "in the data plane too");
    std::fs::remove_dir(&blocker).unwrap();

    // A NIC whose trace directory is gone at restart is left out; the file as saved is kept.
    let traces = d.dir.path().join("traces");
    std::fs::create_dir(&traces).unwrap();
    let pcap = traces.join("vm3.pcap");
    d.ok(&[
        "nic",
        "add",
        "--id",
        "vm3",
        "--mac",
        "52:54:00:00:00:23",
        "--vni",
        "5",
        "--packet-trace",
        "true",
        "--trace-path",
        pcap.to_str().unwrap(),
    ]);
    let (code, _, dir) = d.stop();
    assert_eq!(code, 0);
    std::fs::remove_dir_all(&traces).unwrap();
    let d = Daemon::start_in(dir, &[]);
    let list = d.ok(&["nic", "list"]);
    assert!(list.contains("vm1") && !list.contains("vm3"), "{list}");
    let kept = std::fs::read_to_string(state.join("butterflyd.json.before-restore"))
        .expect("a copy of the saved state");
    assert!(kept.contains("vm3"), "the copy still holds the NIC left out");
}

#[test]
fn a_thousand_nics() {
    let d = Daemon::start(&["--no-state"]);
    let c = d.client();
    let t = Instant::now();
    for i in 0..1000u32 {
        let nic = v0::Nic {
            id: format!("n{i}"),
            mac: format!("52:54:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            vni: i % 50,
            ip: vec![format!("10.{}.{}.1", (i >> 8) & 255, i & 255)],
            ..Default::default()
        };
        let r = c.call(v0::Request { nic_add: Some(nic), ..Default::default() }).unwrap();
        assert!(r.status.status, "nic {i}: {r:?}");
    }
    let added = t.elapsed();
    let list = c.call(v0::Request { nic_list: Some(true), ..Default::default() }).unwrap();
    assert_eq!(list.nic_list.len(), 1000);
    eprintln!("1000 NICs added in {added:?}");
    let t = Instant::now();
    for i in 0..20u32 {
        let r = c.call(v0::Request { nic_del: Some(format!("n{i}")), ..Default::default() }).unwrap();
        assert!(r.status.status);
    }
    eprintln!("20 NICs removed in {:?}", t.elapsed());
    let t = Instant::now();
    let (code, err, _) = d.stop();
    eprintln!("stopped in {:?}", t.elapsed());
    assert_eq!(code, 0, "{err}");
}

/// Per-VNI BUM modes through the CLI: set live on a VNI with a NIC (its VTEP leaves the
/// group: "groups 0") and on one without; every bad input refused with its reason and no
/// change; kept across a restart and applied to the VNI's VTEP port again.
#[test]
fn vni_bum_modes_are_checked_applied_and_kept() {
    let d = Daemon::start(&["-i", "198.18.9.1"]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:61", "--vni", "42"]);
    assert!(d.ok(&["status"]).contains("groups 1"), "VNI 42 joined its default group");
    let details = d.ok(&["vni", "details", "42"]);
    assert_eq!(details, "vni: 42\nmode: multicast\nsetting: default\ngroup: 230.0.0.42\nnics: 1\n");
    d.ok(&["vni", "set", "42", "--flood", "198.18.9.2,198.18.9.3"]);
    d.ok(&["vni", "set", "43", "--group", "239.5.5.5"]);
    let status = d.ok(&["status"]);
    assert!(status.contains("groups 0"), "VNI 42's VTEP port left the group: {status}");
    assert!(
        status.contains(
            "vni 42: unicast, flood list 198.18.9.2 198.18.9.3 (own setting), remote vteps: none, nics: 1"
        ),
        "{status}"
    );
    assert!(status.contains("vni 43: multicast, group 239.5.5.5 (own setting)"), "{status}");
    let before = d.ok(&["vni", "details"]);
    for (args, why) in [
        (
            vec!["vni", "set", "42", "--flood", "198.18.9.1"],
            "VNI 42: flood VTEP 198.18.9.1 is this host's own VTEP address",
        ),
        (
            vec!["vni", "set", "42", "--flood", "fd00::2"],
            "VNI 42: flood VTEP fd00::2 is an IPv6 address but the underlay is IPv4 (VTEP 198.18.9.1)",
        ),
        (
            vec!["vni", "set", "42", "--flood", "239.1.1.1"],
            "VNI 42: flood VTEP 239.1.1.1 is a multicast address",
        ),
        (
            vec!["vni", "set", "42", "--flood", "198.18.9.2,198.18.9.2"],
            "VNI 42: flood VTEP 198.18.9.2 is listed twice",
        ),
        (vec!["vni", "set", "16777216", "--multicast"], "a VNI is a number from 0 to 16777215 (2^24 - 1)"),
        (
            vec!["vni", "set", "43", "--group", "ff05::1"],
            "VNI 43: group ff05::1 is an IPv6 address but the underlay is IPv4",
        ),
        (vec!["vni", "flood", "add", "42", "198.18.9.1"], "is this host's own VTEP address"),
    ] {
        let out = d.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    assert_eq!(d.ok(&["vni", "details"]), before, "nothing changed");
    // Kept across a restart, and VNI 42's VTEP port floods by list again from its first NIC.
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");
    let d = Daemon::start_in(dir, &["-i", "198.18.9.1"]);
    assert_eq!(d.ok(&["vni", "details"]), before);
    assert!(d.ok(&["status"]).contains("groups 0"), "restored in unicast mode");
    // Back to the default: the group is joined again.
    d.ok(&["vni", "del", "42"]);
    assert!(d.ok(&["status"]).contains("groups 1"));
    assert!(d.ok(&["vni", "details", "42"]).contains("setting: default\ngroup: 230.0.0.42\n"));
}

/// The daemon's default BUM mode (--bum-mode unicast --flood-vteps) applies to every VNI
/// without a setting of its own.
#[test]
fn the_default_bum_mode_comes_from_the_command_line() {
    let d = Daemon::start(&["--no-state", "--bum-mode", "unicast", "--flood-vteps", "198.18.0.7,198.18.0.8"]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:71", "--vni", "5"]);
    assert_eq!(
        d.ok(&["vni", "details"]),
        "vni: 5\nmode: unicast\nsetting: default\nflood: 198.18.0.7\nflood: 198.18.0.8\nnics: 1\n"
    );
    assert!(d.ok(&["status"]).contains("groups 0"), "no group joined");
    // `vni flood add` starts from the default list.
    d.ok(&["vni", "flood", "add", "5", "198.18.0.9"]);
    assert!(d
        .ok(&["vni", "details", "5"])
        .contains("setting: own\nflood: 198.18.0.7\nflood: 198.18.0.8\nflood: 198.18.0.9\n"));
}

#[test]
fn invalid_configuration_refuses_to_start_and_names_the_problem() {
    for (args, needle) in [
        (vec!["-i", "not-an-ip"], "--ip"),
        (vec!["-l", "chatty"], "--log-level"),
        (vec!["--underlay", "carrier-pigeon"], "--underlay"),
        (vec!["-m", "12"], "--nic-mtu"),
        (vec!["--bum-mode", "flood"], "--bum-mode"),
        (
            vec!["--bum-mode", "unicast", "--flood-vteps", "198.18.0.1"],
            "--flood-vteps: flood VTEP 198.18.0.1 is this host's own VTEP address",
        ),
        (vec!["--flood-vteps", "198.18.0.2"], "--flood-vteps: a flood list needs --bum-mode unicast"),
    ] {
        let out =
            Command::new(env!("CARGO_BIN_EXE_butterflyd")).args(&args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn an_api_endpoint_in_use_is_a_clear_failure() {
    let d = Daemon::start(&["--no-state"]);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args(["--underlay", "none", "--no-state", "--metrics", "off", "-e", &d.endpoint, "-s"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("API endpoint"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two "VMs" (TAP NICs moved into namespaces) ping each other through the daemon's graph
/// while 100 other NICs are added and removed: not one ping is lost.
#[test]
fn adding_and_removing_nics_never_disturbs_other_traffic() {
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("bfa{tag}"), format!("bfb{tag}"));
    let ns = Netns(vec![format!("bfnsa{tag}"), format!("bfnsb{tag}")]);
    let d = Daemon::start(&["--no-state"]);
    d.ok(&["sg", "add", "open"]);
    d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
    for (i, (nic, netns)) in [(&a, &ns.0[0]), (&b, &ns.0[1])].into_iter().enumerate() {
        let mac = format!("52:54:00:ab:00:0{}", i + 1);
        let ip = format!("10.99.0.{}", i + 1);
        d.ok(&[
            "nic", "add", "--id", nic, "--type", "TAP", "--mac", &mac, "--vni", "99", "--ip", &ip, "--sg",
            "open",
        ]);
        sh(&["ip", "netns", "add", netns]);
        // The daemon gave the TAP the NIC's MAC: what the VM sends passes anti-spoof.
        let have = std::fs::read_to_string(format!("/sys/class/net/{nic}/address")).unwrap();
        assert_eq!(have.trim(), mac, "the TAP interface has the NIC's MAC");
        sh(&["ip", "link", "set", "dev", nic, "netns", netns]);
        sh(&["ip", "-n", netns, "addr", "add", &format!("{ip}/24"), "dev", nic]);
        sh(&["ip", "-n", netns, "link", "set", "dev", nic, "up"]);
        sh(&["ip", "-n", netns, "link", "set", "dev", "lo", "up"]);
    }
    // Warm up (ARP) before counting.
    sh(&["ip", "netns", "exec", &ns.0[0], "ping", "-c", "3", "-W", "2", "10.99.0.2"]);

    let ping = Command::new("ip")
        .args(["netns", "exec", &ns.0[0], "ping", "-c", "300", "-i", "0.02", "-W", "2", "10.99.0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let c = d.client();
    for i in 0..100u32 {
        let nic = v0::Nic {
            id: format!("churn{i}"),
            mac: format!("52:54:00:cc:00:{:02x}", i),
            vni: if i % 2 == 0 { 99 } else { 100 },
            ip: vec![format!("10.99.1.{}", i + 1)],
            ..Default::default()
        };
        assert!(c.call(v0::Request { nic_add: Some(nic), ..Default::default() }).unwrap().status.status);
        if i >= 10 {
            let del = format!("churn{}", i - 10);
            assert!(c.call(v0::Request { nic_del: Some(del), ..Default::default() }).unwrap().status.status);
        }
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" 0% packet loss"), "pings were lost while NICs changed:\n{text}");
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn metrics_endpoint_serves_per_brick_counters() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--no-state", "--metrics", &addr]);
    d.ok(&["nic", "add", "--id", "m1", "--mac", "52:54:00:00:00:31", "--vni", "5"]);
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("butterfly_brick_packets_total{brick=\"vm-m1\""), "{body}");
    assert!(body.contains("butterfly_brick_drops_total{brick=\"fw-m1\""), "{body}");
    assert!(body.contains("# TYPE butterfly_brick_calls_total counter"), "{body}");
    assert!(body.contains("butterfly_brick_calls_total{brick=\"vm-m1\",kind=\"vhost-user\""), "{body}");
    // The raw counters behind cycles per packet, for rates over an interval (no traffic yet).
    for family in ["butterfly_brick_cycles_total", "butterfly_brick_cycle_packets_total"] {
        assert!(body.contains(&format!("# TYPE {family} counter")), "{body}");
        assert!(
            body.contains(&format!("{family}{{brick=\"fw-m1\",kind=\"firewall\",worker=\"0\"}} 0")),
            "{body}"
        );
    }
}

#[test]
fn dump_and_replay_rebuild_the_same_configuration() {
    let a = Daemon::start(&["--no-state"]);
    a.ok(&["sg", "add", "sg-d"]);
    a.ok(&[
        "sg",
        "rule",
        "add",
        "sg-d",
        "--dir",
        "in",
        "--ip-proto",
        "udp",
        "--port",
        "53",
        "--cidr",
        "10.0.0.0/8",
    ]);
    a.ok(&["sg", "member", "add", "sg-d", "10.9.9.9"]);
    a.ok(&[
        "nic",
        "add",
        "--id",
        "d1",
        "--mac",
        "52:54:00:00:00:41",
        "--vni",
        "4",
        "--ip",
        "10.4.0.1",
        "--sg",
        "sg-d",
    ]);
    a.ok(&["nic", "add", "--id", "d2", "--mac", "52:54:00:00:00:42", "--vni", "4", "--bypass-filtering"]);
    let dump = a.ok(&["dump"]);
    let file = a.dir.path().join("dump.txt");
    std::fs::write(&file, &dump).unwrap();
    let b = Daemon::start(&["--no-state"]);
    b.ok(&["request", file.to_str().unwrap()]);
    for cmd in [
        &["nic", "list"][..],
        &["sg", "list"],
        &["sg", "rule", "list", "sg-d"],
        &["sg", "member", "list", "sg-d"],
    ] {
        assert_eq!(a.ok(cmd), b.ok(cmd), "{cmd:?} after replay");
    }
    assert_eq!(b.ok(&["dump"]), dump, "dumping the replayed daemon gives the same file");
    assert!(b.ok(&["status"]).contains("fw-d1"), "the replayed NICs have their bricks");
}

/// CPU time (utime + stime, in clock ticks) the process `pid` has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// With 20 TAP NICs and no traffic the data plane sleeps on its wake fds: the daemon uses a
/// small fraction of a core (it measured 0.5 %; a spinning data plane uses a whole core).
#[test]
fn an_idle_daemon_with_twenty_nics_sleeps() {
    let tag = std::process::id() % 100_000;
    idle_share_with_twenty_nics(&format!("bfi{tag}"), &["--no-state"]);
    // Two workers on a TAP underlay: besides the NICs, each worker polls its underlay queue
    // and the queue from the other worker; every one of them must let the thread sleep.
    let underlay = format!("tap:bfiu{tag}");
    idle_share_with_twenty_nics(
        &format!("bfj{tag}"),
        &["--no-state", "--workers", "2", "--underlay", &underlay],
    );
}

/// Starts a daemon with `args`, adds 20 TAP NICs over two VNIs, and asserts it uses under
/// 10 % of a core while nothing flows.
fn idle_share_with_twenty_nics(prefix: &str, args: &[&str]) {
    let d = Daemon::start(args);
    for i in 0..20u32 {
        let (id, mac) = (format!("{prefix}n{i}"), format!("52:54:00:ee:00:{i:02x}"));
        let ip = format!("10.98.0.{}", i + 1);
        let vni = (98 + i % 2).to_string();
        d.ok(&["nic", "add", "--id", &id, "--type", "TAP", "--mac", &mac, "--vni", &vni, "--ip", &ip]);
    }
    let pid = d.child.as_ref().unwrap().id();
    // Let start-up and the NICs' own first frames settle.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (used, secs) = (cpu_ticks(pid) - c0, t0.elapsed().as_secs_f64());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let share = used as f64 / hz / secs;
    eprintln!(
        "idle daemon {args:?}, 20 NICs: {used} ticks in {secs:.1} s = {:.2} % of a core",
        share * 100.0
    );
    assert!(share < 0.10, "an idle daemon {args:?} used {:.1} % of a core", share * 100.0);
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
}

/// A VM (a TAP in a namespace, anti-spoofing on) may use the EUI-64 link-local address of
/// its MAC, but not answer for another one: its neighbour advertisements for fe80::1 (a
/// gateway's usual address) are dropped, and the neighbour never learns its MAC for it.
/// Listed through the API (`--link-local`), the address is the VM's and works.
#[test]
fn link_local_impersonation_is_refused_and_the_eui64_address_works() {
    let tag = std::process::id() % 100_000;
    let (a, b) = (format!("bfla{tag}"), format!("bflb{tag}"));
    let ns = Netns(vec![format!("bflna{tag}"), format!("bflnb{tag}")]);
    let (mac_a, mac_b) = ("52:54:00:ac:00:01", "52:54:00:ac:00:02");
    let ll_a = "fe80::5054:ff:feac:1";
    let d = Daemon::start(&["--no-state"]);
    d.ok(&["sg", "add", "open"]);
    d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "::/0"]);
    // a: filtered and anti-spoofed; b: a plain neighbour (no filtering) whose cache we read.
    let base = ["nic", "add", "--type", "TAP", "--vni", "77"];
    let mut add_a = base.to_vec();
    add_a.extend(["--id", &a, "--mac", mac_a, "--ip", "fd77::1", "--sg", "open", "--enable-antispoof"]);
    d.ok(&add_a);
    let mut add_b = base.to_vec();
    add_b.extend(["--id", &b, "--mac", mac_b, "--ip", "fd77::2", "--bypass-filtering"]);
    d.ok(&add_b);
    let details = d.ok(&["nic", "details", &a]);
    assert!(details.contains(&format!("link-local: {ll_a} (from the mac)")), "{details}");
    for (nic, netns, ip) in [(&a, &ns.0[0], "fd77::1/64"), (&b, &ns.0[1], "fd77::2/64")] {
        sh(&["ip", "netns", "add", netns]);
        sh(&["ip", "link", "set", "dev", nic, "netns", netns]);
        // The kernel's default: the link-local address derived from the MAC (EUI-64).
        sh(&["ip", "-n", netns, "link", "set", "dev", nic, "addrgenmode", "eui64"]);
        sh(&["ip", "netns", "exec", netns, "sysctl", "-qw", &format!("net.ipv6.conf.{nic}.accept_dad=0")]);
        sh(&["ip", "-n", netns, "addr", "add", ip, "dev", nic, "nodad"]);
        sh(&["ip", "-n", netns, "link", "set", "dev", nic, "up"]);
    }
    let ping6 = |netns: &str, dev: &str, to: &str| {
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", "-I", dev, to])
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (na, nb) = (&ns.0[0], &ns.0[1]);
    // a's own addresses work: neighbour discovery from its EUI-64 link-local address.
    let have = sh(&["ip", "-n", na, "-6", "addr", "show", "dev", &a, "scope", "link"]);
    assert!(have.contains(ll_a), "the VM has its EUI-64 link-local address: {have}");
    for to in ["fd77::1", ll_a] {
        let (ok, out) = ping6(nb, &b, to);
        assert!(ok, "{b} -> {to}:\n{out}");
    }
    // a answers for fe80::1 too: refused, and b never learns a's MAC for it.
    sh(&["ip", "-n", na, "addr", "add", "fe80::1/64", "dev", &a, "nodad"]);
    let (ok, out) = ping6(nb, &b, "fe80::1");
    assert!(!ok, "an impersonated link-local address must not answer:\n{out}");
    let neigh = sh(&["ip", "-n", nb, "-6", "neigh", "show", "fe80::1", "dev", &b]);
    assert!(!neigh.contains(mac_a), "b's neighbour cache is not poisoned: {neigh}");
    let status = d.ok(&["status"]);
    let line = status.lines().find(|l| l.contains(&format!("antispoof-{a}"))).unwrap_or_default();
    assert!(
        line.contains("drop ipv6 link-local source:") || line.contains("drop ndp target:"),
        "counted by a's anti-spoof brick: {line}"
    );
    // Listed through the API, fe80::1 is a's: it answers.
    d.ok(&["nic", "update", "--id", &a, "--link-local", "fe80::1"]);
    sh(&["ip", "-n", nb, "-6", "neigh", "flush", "dev", &b]);
    let (ok, out) = ping6(nb, &b, "fe80::1");
    assert!(ok, "a listed link-local address works:\n{out}");
    let neigh = sh(&["ip", "-n", nb, "-6", "neigh", "show", "fe80::1", "dev", &b]);
    assert!(neigh.contains(mac_a), "{neigh}");
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
}

/// A bypass NIC's packet trace sits right behind its VNI's switch: turning it on or off
/// links the NIC to the switch again, and the VM's MAC stays pinned there (the switch's one
/// static entry; no guest is connected, so nothing is learnt).
#[test]
fn tracing_a_bypass_nic_keeps_its_mac_pinned() {
    let d = Daemon::start(&["--no-state"]);
    let dir = tempfile::tempdir().unwrap();
    d.ok(&["nic", "add", "--id", "b1", "--mac", "52:54:00:00:00:b1", "--vni", "7", "--bypass-filtering"]);
    let macs = |when: &str| {
        let status = d.ok(&["status"]);
        assert!(
            brick_label(&status, "switch-7").contains("|macs 1/"),
            "{when}: the VM's MAC is not pinned\n{status}"
        );
        status
    };
    macs("added");
    let trace = dir.path().join("b1.pcap");
    d.ok(&["nic", "update", "--id", "b1", "--packet-trace", "true", "--trace-path", trace.to_str().unwrap()]);
    assert!(macs("trace on").contains("{sniff-b1|"));
    d.ok(&["nic", "update", "--id", "b1", "--packet-trace", "false"]);
    assert!(!macs("trace off").contains("sniff-b1"));
}

//! End to end: two "hosts" (network namespaces joined by a veth underlay), each running the
//! real butterflyd on an AF_PACKET underlay, each with a "VM" (a TAP NIC moved into its own
//! namespace). The VMs reach each other across VXLAN, and only within their VNI.

mod common;

use common::*;

/// Like [`two_hosts`] (IPv4), but each daemon's underlay is a TAP (`bfu`) bridged by the host
/// kernel to the veth, as on a hypervisor whose NIC sits in a Linux bridge. With UDP-tunnel
/// GSO on the TAP, VXLAN super-frames cross the veth whole.
fn two_hosts_tap_underlay() -> Topology {
    two_hosts_tap_underlay_with(&[])
}

/// [`two_hosts_tap_underlay`] with extra daemon options.
fn two_hosts_tap_underlay_with(extra: &[&str]) -> Topology {
    let tag = unique_tag();
    let (hosts, ns) = host_namespaces(tag);
    for h in &hosts {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", h, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .status();
    }
    let ips = ["198.18.78.1", "198.18.78.2"];
    let mut daemons = Vec::new();
    for (i, (h, dev)) in [(&hosts[0], "u1"), (&hosts[1], "u2")].into_iter().enumerate() {
        sh(&["ip", "-n", h, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        sh(&["ip", "-n", h, "link", "set", dev, "master", "br0"]);
        sh(&["ip", "-n", h, "link", "set", dev, "up"]);
        sh(&["ip", "-n", h, "link", "set", "br0", "up"]);
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let mut args = vec!["--underlay", "tap:bfu", "-i", ips[i], "--no-state"];
        args.extend_from_slice(extra);
        let d = Daemon::start_full(dir, Some(h), endpoint, &args);
        sh(&["ip", "-n", h, "link", "set", "bfu", "master", "br0"]);
        daemons.push(d);
    }
    let h: [Daemon; 2] = daemons.try_into().map_err(|_| ()).unwrap();
    Topology { h, ns, tag }
}

/// Sends `mib` MiB of random bytes from a server in `server_ns` (listening on `ip`:9000) to
/// a client in `client_ns`; returns (bytes received + SHA-256 seen by the client, SHA-256
/// sent), to be compared byte for byte. Both sides give up after 30 s without progress, so a
/// transfer that cannot happen fails the test instead of hanging it.
fn tcp_transfer(server_ns: &str, client_ns: &str, ip: &str, mib: usize, tag: u32) -> (String, String) {
    let script = format!(
        "import hashlib,os,socket\ndata=os.urandom({mib}<<20)\nopen('/dev/shm/bf-tx-{tag}','w').write(hashlib.sha256(data).hexdigest())\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen(1)\ns.settimeout(30)\nc,_=s.accept()\nc.settimeout(30)\nc.sendall(data)\nc.close()"
    );
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", server_ns, "python3", "-c", &script])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let client = format!(
        "import hashlib,socket\ns=socket.create_connection(('{ip}',9000),timeout=10)\nh=hashlib.sha256();n=0\nwhile True:\n d=s.recv(65536)\n if not d: break\n h.update(d);n+=len(d)\nprint(n,h.hexdigest())"
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", client_ns, "python3", "-c", &client])
        .output()
        .unwrap();
    let _ = server.wait();
    let sent = std::fs::read_to_string(format!("/dev/shm/bf-tx-{tag}")).unwrap_or_default();
    let _ = std::fs::remove_file(format!("/dev/shm/bf-tx-{tag}"));
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), format!("{} {sent}", mib << 20))
}

/// The number after `key` in a daemon's status (the graph's DOT, with the bricks' counters).
fn status_counter(status: &str, key: &str) -> u64 {
    let at = status.find(key).unwrap_or_else(|| panic!("{key} not in status:\n{status}")) + key.len();
    status[at..].trim_start().chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
}

#[test]
fn vms_on_two_hosts_reach_each_other_over_vxlan_and_vnis_stay_isolated() {
    let mut t = two_hosts(false);
    let a = t.vm(0, "va", 10, "10.10.0.1", "52:54:00:10:00:01");
    let b = t.vm(1, "vb", 10, "10.10.0.2", "52:54:00:10:00:02");
    // Same addresses, other VNI: must never answer VM a.
    let c = t.vm(1, "vc", 11, "10.10.0.3", "52:54:00:10:00:03");
    let (ok, out) = ping(&a, "10.10.0.2", "5");
    assert!(ok && out.contains(" 0% packet loss"), "same VNI across hosts:\n{out}");
    let (ok, out) = ping(&b, "10.10.0.1", "3");
    assert!(ok, "and back:\n{out}");
    let (ok, out) = ping(&a, "10.10.0.3", "2");
    assert!(!ok, "another VNI must be unreachable:\n{out}");
    let (ok, _) = ping(&c, "10.10.0.1", "2");
    assert!(!ok);
    // The DOT graph of host 2 shows traffic through its vtep.
    let status = t.h[1].ok(&["status"]);
    assert!(status.contains("vtep") && status.contains("switch-10"), "{status}");
}

/// All the numbers after `key` in a daemon's status (one per worker graph).
fn status_counters(status: &str, key: &str) -> Vec<u64> {
    status
        .match_indices(key)
        .map(|(at, _)| {
            let rest = &status[at + key.len()..];
            rest.trim_start().chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
        })
        .collect()
}

/// Two worker graphs per daemon: VNI 10 lives on worker 0, VNI 11 on worker 1 (v % 2). Both
/// VNIs work across hosts and stay isolated, a TCP transfer arrives intact, each worker's
/// graph holds only its own VNI's switch, and the kernel's fanout program delivered every
/// VXLAN frame to its owner (the steer bricks forwarded none between workers).
#[test]
fn two_workers_per_host_each_own_their_vnis() {
    let mut t = two_hosts_with(false, &["--workers", "2"]);
    let a10 = t.vm(0, "xa", 10, "10.10.0.1", "52:54:00:10:01:01");
    let _b10 = t.vm(1, "xb", 10, "10.10.0.2", "52:54:00:10:01:02");
    let a11 = t.vm(0, "xc", 11, "10.11.0.1", "52:54:00:11:01:01");
    let b11 = t.vm(1, "xd", 11, "10.11.0.2", "52:54:00:11:01:02");
    // Same addresses as VNI 10's host-2 VM, in VNI 11: must never answer a10.
    let _c11 = t.vm(1, "xe", 11, "10.10.0.3", "52:54:00:11:01:03");
    let (ok, out) = ping(&a10, "10.10.0.2", "4");
    assert!(ok && out.contains(" 0% packet loss"), "VNI 10 (worker 0) across hosts:\n{out}");
    let (ok, out) = ping(&a11, "10.11.0.2", "4");
    assert!(ok && out.contains(" 0% packet loss"), "VNI 11 (worker 1) across hosts:\n{out}");
    let (ok, out) = ping(&a10, "10.10.0.3", "2");
    assert!(!ok, "another VNI must stay unreachable:\n{out}");
    let (got, sent) = tcp_transfer(&b11, &a11, "10.11.0.2", 4, t.tag);
    assert_eq!(got, sent, "TCP over VNI 11 (worker 1), byte for byte");
    for h in &t.h {
        let status = h.ok(&["status"]);
        assert_eq!(status.matches("digraph").count(), 1, "one graph, a cluster per worker: {status}");
        let w0 = status.find("label=\"butterflyd-w0\"").expect("worker 0's cluster");
        let w1 = status.find("label=\"butterflyd-w1\"").expect("worker 1's cluster");
        let (g0, g1) =
            if w0 < w1 { (&status[w0..w1], &status[w1..]) } else { (&status[w0..], &status[w1..w0]) };
        assert!(g0.contains("switch-10") && !g0.contains("switch-11"), "{status}");
        assert!(g1.contains("switch-11") && !g1.contains("switch-10"), "{status}");
        assert_eq!(status_counters(&status, "to other workers:"), vec![0, 0], "{status}");
    }
}

/// The same over an IPv6 underlay: the fanout program reads the VNI behind an IPv6 header,
/// so every frame still reaches its owner directly.
#[test]
fn two_workers_over_an_ipv6_underlay() {
    let mut t = two_hosts_with(true, &["--workers", "2"]);
    let a10 = t.vm(0, "za", 10, "fd10::1", "52:54:00:10:03:01");
    let _b10 = t.vm(1, "zb", 10, "fd10::2", "52:54:00:10:03:02");
    let a11 = t.vm(0, "zc", 11, "fd11::1", "52:54:00:11:03:01");
    let _b11 = t.vm(1, "zd", 11, "fd11::2", "52:54:00:11:03:02");
    for (vm, to) in [(&a10, "fd10::2"), (&a11, "fd11::2")] {
        let (ok, out) = ping(vm, to, "4");
        assert!(ok && out.contains(" 0% packet loss"), "{to}:\n{out}");
    }
    for h in &t.h {
        let status = h.ok(&["status"]);
        assert_eq!(status_counters(&status, "to other workers:"), vec![0, 0], "{status}");
    }
}

/// Two workers on a single TAP underlay split into one queue per worker: the kernel spreads
/// frames over the queues by flow, not by VNI, so some land on the worker that does not own
/// their VNI (how many depends on the flow hashes) and the steer bricks carry them over.
/// Both workers' VNIs work, without loss, whichever queue the kernel picks.
#[test]
fn two_workers_on_a_tap_underlay_steer_strays_to_their_owner() {
    let mut t = two_hosts_tap_underlay_with(&["--workers", "2"]);
    let a10 = t.vm(0, "ya", 10, "10.10.0.1", "52:54:00:10:02:01");
    let _b10 = t.vm(1, "yb", 10, "10.10.0.2", "52:54:00:10:02:02");
    let a11 = t.vm(0, "yc", 11, "10.11.0.1", "52:54:00:11:02:01");
    let _b11 = t.vm(1, "yd", 11, "10.11.0.2", "52:54:00:11:02:02");
    for (vm, to) in [(&a10, "10.10.0.2"), (&a11, "10.11.0.2")] {
        let (ok, out) = ping(vm, to, "6");
        assert!(ok && out.contains(" 0% packet loss"), "{to}:\n{out}");
    }
}

#[test]
fn ipv6_underlay_and_ipv6_in_the_overlay() {
    let mut t = two_hosts(true);
    let a = t.vm(0, "wa", 20, "fd20::1", "52:54:00:20:00:01");
    let _b = t.vm(1, "wb", 20, "fd20::2", "52:54:00:20:00:02");
    let (ok, out) = ping(&a, "fd20::2", "5");
    assert!(ok && out.contains(" 0% packet loss"), "IPv6 over an IPv6 underlay:\n{out}");
}

/// Host 2 is not butterflyd but the Linux kernel: a `vxlan` device (multicast group of the
/// VNI, as butterflyd uses) bridged to a veth into the VM namespace. Ping and TCP both ways,
/// with the kernel's offloads as they come (no `ethtool` workaround).
#[test]
fn the_linux_kernel_as_the_far_end() {
    let tag = unique_tag();
    let hosts = [format!("bfk1x{tag}"), format!("bfk2x{tag}")];
    let mut ns = Netns(hosts.to_vec());
    for h in &hosts {
        sh(&["ip", "netns", "add", h]);
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "-n", &hosts[0], "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &hosts[1],
    ]);
    sh(&["ip", "-n", &hosts[0], "link", "set", "u1", "up"]);
    let _ = std::process::Command::new("ip")
        .args(["netns", "exec", &hosts[0], "sysctl", "-qw", "net.ipv6.conf.u1.disable_ipv6=1"])
        .status();
    // The kernel VTEP: 198.18.78.2 on u2, VNI 30 on group 230.0.0.30 (butterflyd's mapping).
    let k = &hosts[1];
    sh(&["ip", "-n", k, "addr", "add", "198.18.78.2/24", "dev", "u2"]);
    sh(&["ip", "-n", k, "link", "set", "u2", "up"]);
    sh(&[
        "ip",
        "-n",
        k,
        "link",
        "add",
        "vx30",
        "type",
        "vxlan",
        "id",
        "30",
        "group",
        "230.0.0.30",
        "dev",
        "u2",
        "dstport",
        "4789",
        "local",
        "198.18.78.2",
    ]);
    sh(&["ip", "-n", k, "link", "add", "br30", "type", "bridge"]);
    sh(&["ip", "-n", k, "link", "set", "vx30", "master", "br30", "up"]);
    sh(&["ip", "-n", k, "link", "set", "br30", "up"]);
    let kvm = format!("bfkv{tag}");
    sh(&["ip", "netns", "add", &kvm]);
    ns.0.insert(0, kvm.clone());
    sh(&["ip", "-n", k, "link", "add", "kv0", "type", "veth", "peer", "name", "eth0", "netns", &kvm]);
    sh(&["ip", "-n", k, "link", "set", "kv0", "master", "br30", "up"]);
    sh(&["ip", "-n", &kvm, "addr", "add", "10.30.0.2/24", "dev", "eth0"]);
    sh(&["ip", "-n", &kvm, "link", "set", "eth0", "up"]);

    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/api.sock", dir.path().display());
    let d = Daemon::start_full(
        dir,
        Some(&hosts[0]),
        endpoint,
        &["--underlay", "af-packet:u1", "-i", "198.18.78.1", "--no-state"],
    );
    let mut t = Topology { h: [d, Daemon::start(&["--no-state"])], ns, tag };
    let ours = t.vm(0, "ka", 30, "10.30.0.1", "52:54:00:30:00:01");
    let (ok, out) = ping(&ours, "10.30.0.2", "5");
    assert!(ok, "our VM pings the kernel's VM:\n{out}");
    let (ok, out) = ping(&kvm, "10.30.0.1", "3");
    assert!(ok, "the kernel's VM pings ours:\n{out}");
    // The kernel learnt our VM's MAC behind our VTEP.
    let fdb = sh(&["ip", "netns", "exec", k, "bridge", "fdb", "show", "dev", "vx30"]);
    assert!(fdb.contains("52:54:00:30:00:01") && fdb.contains("198.18.78.1"), "{fdb}");
    // TCP both ways, byte for byte, with the kernel's default offloads: its segments cross
    // the veth with the inner TCP checksum partial, and as super-frames.
    let (got, sent) = tcp_transfer(&kvm, &ours, "10.30.0.2", 4, t.tag);
    assert_eq!(got, sent, "kernel's VM → our VM");
    let (got, sent) = tcp_transfer(&ours, &kvm, "10.30.0.1", 4, t.tag);
    assert_eq!(got, sent, "our VM → kernel's VM");
    let status = t.h[0].ok(&["status"]);
    assert!(status_counter(&status, "whole-rx") > 0, "super-frames decapsulated whole:\n{status}");
}

/// Security groups decide what reaches a VM, rules change while traffic flows, and a VM
/// pretending to be another gets nowhere.
#[test]
fn firewall_rules_and_a_hostile_vm() {
    let mut t = two_hosts(false);
    let d = &t.h[0];
    d.ok(&["sg", "add", "web"]);
    d.ok(&[
        "sg",
        "rule",
        "add",
        "web",
        "--dir",
        "in",
        "--ip-proto",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "0.0.0.0/0",
    ]);
    let tag = t.tag % 10_000;
    let srv_ns = t.vm_with(0, "fs", 40, Some("10.40.0.1"), "52:54:00:40:00:01", &["--sg", "web"]);
    // The client is on the other host, with anti-spoofing on.
    let client = t.vm(1, "fc", 40, "10.40.0.2", "52:54:00:40:00:02");
    t.h[1].ok(&["nic", "update", "--id", &format!("fc{tag}"), "--enable-antispoof", "true"]);

    // A TCP server on 8080 answering "pong".
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &srv_ns, "python3", "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',8080))\ns.listen(8)\nwhile True:\n c,_=s.accept()\n c.sendall(b'pong')\n c.close()"])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(server);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let fetch = |ns: &str| -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c",
                "import socket\ns=socket.create_connection(('10.40.0.1',8080),timeout=3)\nprint(s.recv(10).decode())"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(fetch(&client), "pong", "TCP 8080 is allowed");
    let (ok, _) = ping(&client, "10.40.0.1", "2");
    assert!(!ok, "ICMP is not allowed by the group");
    // Rules change while traffic flows: allow ICMP.
    t.h[0].ok(&["sg", "rule", "add", "web", "--dir", "in", "--ip-proto", "icmp", "--cidr", "10.40.0.0/24"]);
    let (ok, out) = ping(&client, "10.40.0.1", "3");
    assert!(ok, "ICMP allowed after the rule was added:\n{out}");
    assert_eq!(fetch(&client), "pong");

    // Hostile: the client claims another address; anti-spoofing drops it at its own host.
    sh(&["ip", "-n", &client, "addr", "add", "10.40.0.66/24", "dev", &format!("fc{tag}")]);
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &client, "ping", "-c", "2", "-W", "1", "-I", "10.40.0.66", "10.40.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "spoofed source must not get through");
    let status = t.h[1].ok(&["status"]);
    assert!(
        status.contains("drop ipv4 source:") || status.contains("drop arp sender ip:"),
        "the anti-spoof brick counted the spoofed packets: {status}"
    );
}

/// A TCP transfer across hosts arrives byte for byte; a packet trace switched on live records
/// the VM's packets in a pcap file that tshark reads; a NIC with bypass_filtering needs no
/// security group.
#[test]
fn tcp_transfer_packet_trace_and_bypass() {
    let mut t = two_hosts(false);
    let a = t.vm(0, "ta", 60, "10.60.0.1", "52:54:00:60:00:01");
    let b = t.vm(1, "tb", 60, "10.60.0.2", "52:54:00:60:00:02");
    // 3 MiB of random bytes served by a, fetched by b, compared by SHA-256.
    let script = "import hashlib,os,socket\ndata=os.urandom(3<<20)\nopen('/dev/shm/bf-tx-{tag}','w').write(hashlib.sha256(data).hexdigest())\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen(1)\ns.settimeout(30)\nc,_=s.accept()\nc.settimeout(30)\nc.sendall(data)\nc.close()";
    let tag = t.tag;
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", &a, "python3", "-c", &script.replace("{tag}", &tag.to_string())])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &b, "python3", "-c",
            "import hashlib,socket\ns=socket.create_connection(('10.60.0.1',9000),timeout=10)\nh=hashlib.sha256();n=0\nwhile True:\n d=s.recv(65536)\n if not d: break\n h.update(d);n+=len(d)\nprint(n,h.hexdigest())"])
        .output()
        .unwrap();
    let mut server = server;
    let _ = server.wait();
    let sent = std::fs::read_to_string(format!("/dev/shm/bf-tx-{tag}")).unwrap_or_default();
    let _ = std::fs::remove_file(format!("/dev/shm/bf-tx-{tag}"));
    let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        got,
        format!("{} {sent}", 3 << 20),
        "TCP transfer intact: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // AF_PACKET cannot send UDP-tunnel super-frames: the VM's TSO frames were cut by the
    // VTEP in software.
    let st = t.h[0].ok(&["status"]);
    assert!(status_counter(&st, "segmented") > 0, "super-frames segmented by the VTEP:\n{st}");

    // Packet trace on a's NIC, live.
    let nic = format!("ta{}", t.tag % 10_000);
    let pcap = std::env::temp_dir().join(format!("bf-trace-{tag}.pcap"));
    let pcap_s = pcap.display().to_string();
    t.h[0].ok(&["nic", "update", "--id", &nic, "--packet-trace", "true", "--trace-path", &pcap_s]);
    let (ok, out) = ping(&b, "10.60.0.1", "4");
    assert!(ok, "{out}");
    t.h[0].ok(&["nic", "update", "--id", &nic, "--packet-trace", "false"]);
    let fields = sh(&["tshark", "-r", &pcap_s, "-Y", "icmp", "-T", "fields", "-e", "icmp.type"]);
    let requests = fields.lines().filter(|l| l.trim() == "8").count();
    let replies = fields.lines().filter(|l| l.trim() == "0").count();
    assert!(requests >= 4 && replies >= 4, "tshark sees the pings in the trace: {fields}");
    let _ = std::fs::remove_file(&pcap);
    let (ok, _) = ping(&b, "10.60.0.1", "1");
    assert!(ok, "traffic goes on after the sniffer is removed");

    // bypass_filtering: a NIC with no security group at all still receives traffic.
    let byp = format!("tc{}", t.tag % 10_000);
    t.vm_with(1, "tc", 60, Some("10.60.0.3"), "52:54:00:60:00:03", &["--bypass-filtering"]);
    let d = &t.h[1];
    let (ok, out) = ping(&a, "10.60.0.3", "3");
    assert!(ok, "bypass_filtering NIC reachable without any group:\n{out}");
    let status = d.ok(&["status"]);
    assert!(!status.contains(&format!("fw-{byp}")), "no firewall brick for a bypass NIC");
}

/// A VM flooding frames from random source MACs (a MAC-table exhaustion attack) and with
/// several addresses: the flood dies at its anti-spoof brick, counted, and the other VMs keep
/// talking; a NIC with two IPs answers on both.
#[test]
fn mac_flood_is_contained_and_several_ips_per_nic() {
    let mut t = two_hosts(false);
    let a = t.vm(0, "ma", 70, "10.70.0.1", "52:54:00:70:00:01");
    let b = t.vm(1, "mb", 70, "10.70.0.2", "52:54:00:70:00:02");
    let nic_a = format!("ma{}", t.tag % 10_000);
    // A second address on b's NIC, declared through the API and configured in the VM.
    let nic_b = format!("mb{}", t.tag % 10_000);
    t.h[1].ok(&["nic", "update", "--id", &nic_b, "--ip", "10.70.0.2", "--ip", "10.70.0.12"]);
    sh(&["ip", "-n", &b, "addr", "add", "10.70.0.12/24", "dev", &nic_b]);
    for to in ["10.70.0.2", "10.70.0.12"] {
        let (ok, out) = ping(&a, to, "2");
        assert!(ok, "{to}:\n{out}");
    }
    // The flood: 20,000 broadcast frames from random source MACs out of VM a.
    let flood = format!(
        "import os,socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('{nic_a}',0))\n\
         for i in range(20000):\n m=bytearray(os.urandom(6)); m[0]&=0xfe\n s.send(b'\\xff'*6+bytes(m)+b'\\x88\\xb5'+b'x'*46)"
    );
    // b pings a for the whole duration of the flood.
    let ping_during = std::process::Command::new("ip")
        .args(["netns", "exec", &b, "ping", "-c", "40", "-i", "0.05", "-W", "1", "10.70.0.1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &a, "python3", "-c", &flood])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ping_during = ping_during.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&ping_during.stdout);
    // The flood costs CPU on a 2-core machine shared with the other tests' daemons, so a
    // ping or two may time out; what must not happen is the other VM losing its path (the
    // switch table stays clean, checked below).
    let received: u32 = text
        .split(" received")
        .next()
        .and_then(|l| l.rsplit(", ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(received >= 36, "the other VM kept talking ({received}/40):\n{text}");
    let status = t.h[0].ok(&["status"]);
    let dropped: u64 = status
        .split("drop source mac: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Frames the sender produced faster than we read are dropped by the kernel's TAP queue
    // (the interface's tx_dropped); every other one must have been counted by anti-spoof.
    let kernel: u64 =
        sh(&["ip", "netns", "exec", &a, "cat", &format!("/sys/class/net/{nic_a}/statistics/tx_dropped")])
            .trim()
            .parse()
            .unwrap_or(0);
    assert!(
        dropped + kernel >= 20_000 && dropped >= 1_000,
        "anti-spoof counted the flood (anti-spoof {dropped}, kernel queue {kernel}): {status}"
    );
    let macs: usize = status
        .split("macs ")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(macs <= 4, "the switch learnt none of the flood's MACs ({macs}): {status}");
    let (ok, _) = ping(&a, "10.70.0.2", "2");
    assert!(ok, "VM a itself still works after its flood");
}

/// Two VMs swap their addresses (anti-spoofing on): the swapped addresses are refused until
/// the API says so, then work; and a VM gets its address by DHCP from a server VM on the
/// other host, across the overlay.
#[test]
fn address_swap_and_dhcp_across_the_overlay() {
    let mut t = two_hosts(false);
    let tag = t.tag % 10_000;
    let a = t.vm(0, "sa", 80, "10.80.0.1", "52:54:00:80:00:01");
    let b = t.vm(1, "sb", 80, "10.80.0.2", "52:54:00:80:00:02");
    let c = t.vm(1, "sc", 80, "10.80.0.3", "52:54:00:80:00:03");
    let (nb, nc) = (format!("sb{tag}"), format!("sc{tag}"));
    for n in [&nb, &nc] {
        t.h[1].ok(&["nic", "update", "--id", n, "--enable-antispoof", "true"]);
    }
    // b and c swap addresses inside the VMs only: anti-spoofing refuses them.
    let swap = |ns: &str, nic: &str, old: &str, new: &str| {
        sh(&["ip", "-n", ns, "addr", "del", &format!("{old}/24"), "dev", nic]);
        sh(&["ip", "-n", ns, "addr", "add", &format!("{new}/24"), "dev", nic]);
        sh(&["ip", "-n", ns, "neigh", "flush", "all"]);
    };
    swap(&b, &nb, "10.80.0.2", "10.80.0.3");
    swap(&c, &nc, "10.80.0.3", "10.80.0.2");
    sh(&["ip", "-n", &a, "neigh", "flush", "all"]);
    let (ok, _) = ping(&b, "10.80.0.1", "2");
    assert!(!ok, "a swapped address not yet declared is refused");
    let status = t.h[1].ok(&["status"]);
    assert!(
        status.contains("drop arp sender ip:") || status.contains("drop ipv4 source:"),
        "refused by anti-spoofing: {status}"
    );
    // The API swaps them too: traffic flows again, each VM under its new address. Not in
    // one step: an address another NIC of the VNI still has is refused, so one is freed first.
    let out = t.h[1].cli(&["nic", "update", "--id", &nb, "--ip", "10.80.0.3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("NIC {nb}: IP 10.80.0.3 is already used by NIC {nc} in VNI 80")), "{err}");
    t.h[1].ok(&["nic", "update", "--id", &nb, "--ip", "-e"]);
    t.h[1].ok(&["nic", "update", "--id", &nc, "--ip", "10.80.0.2"]);
    t.h[1].ok(&["nic", "update", "--id", &nb, "--ip", "10.80.0.3"]);
    // Forget the failed resolutions of the refused attempt.
    for ns in [&a, &b, &c] {
        sh(&["ip", "-n", ns, "neigh", "flush", "all"]);
    }
    for (ns, to) in [(&b, "10.80.0.1"), (&c, "10.80.0.1"), (&a, "10.80.0.2"), (&a, "10.80.0.3")] {
        let (ok, out) = ping(ns, to, "2");
        assert!(ok, "{ns} -> {to} after the swap:\n{out}");
    }

    // DHCP: a serves 10.80.0.100-110; a new VM on host 2 with no address asks for one.
    let conf = std::env::temp_dir().join(format!("bf-udhcpd-{tag}.conf"));
    let leases = std::env::temp_dir().join(format!("bf-udhcpd-{tag}.leases"));
    let na = format!("sa{tag}");
    std::fs::write(
        &conf,
        format!(
            "start 10.80.0.100\nend 10.80.0.110\ninterface {na}\nlease_file {}\noption subnet 255.255.255.0\n",
            leases.display()
        ),
    )
    .unwrap();
    std::fs::write(&leases, b"").unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        std::process::Command::new("ip")
            .args(["netns", "exec", &a, "busybox", "udhcpd", "-f"])
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dns = t.vm_with(1, "sd", 80, None, "52:54:00:80:00:04", &["--sg", "open"]);
    let nd = format!("sd{tag}");
    // -n: exit if no lease; -q: quit once it has one; -s /bin/true: do not configure, print.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &dns,
            "busybox",
            "udhcpc",
            "-i",
            &nd,
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&conf);
    let _ = std::fs::remove_file(&leases);
    assert!(out.status.success() && text.contains("lease of 10.80.0.1"), "DHCP across the overlay:\n{text}");
}

/// Four hosts on one L2 fabric (a Linux bridge with IGMP snooping on, in its own namespace):
/// flooding reaches only the hosts that joined the VNI's group, VMs on all four talk.
#[test]
fn four_hosts_on_a_snooping_fabric() {
    let tag = unique_tag();
    let fabric = format!("bff{tag}");
    let mut ns = Netns(vec![fabric.clone()]);
    sh(&["ip", "netns", "add", &fabric]);
    sh(&[
        "ip",
        "-n",
        &fabric,
        "link",
        "add",
        "fab",
        "type",
        "bridge",
        "mcast_snooping",
        "1",
        "mcast_querier",
        "1",
    ]);
    sh(&["ip", "-n", &fabric, "link", "set", "fab", "up"]);
    let mut daemons = Vec::new();
    for i in 1..=4 {
        let h = format!("bfq{i}x{tag}");
        sh(&["ip", "netns", "add", &h]);
        ns.0.push(h.clone());
        sh(&["ip", "-n", &h, "link", "set", "lo", "up"]);
        sh(&[
            "ip",
            "-n",
            &fabric,
            "link",
            "add",
            &format!("p{i}"),
            "type",
            "veth",
            "peer",
            "name",
            "u",
            "netns",
            &h,
        ]);
        sh(&["ip", "-n", &fabric, "link", "set", &format!("p{i}"), "master", "fab", "up"]);
        sh(&["ip", "-n", &h, "link", "set", "u", "up"]);
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &h, "sysctl", "-qw", "net.ipv6.conf.u.disable_ipv6=1"])
            .status();
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let ip = format!("198.18.88.{i}");
        daemons.push(Daemon::start_full(
            dir,
            Some(&h),
            endpoint,
            &["--underlay", "af-packet:u", "-i", &ip, "--no-state"],
        ));
    }
    // Reuse Topology's VM helper for hosts 1 and 2, then for 3 and 4.
    let mut vms = Vec::new();
    let mut it = daemons.into_iter();
    let mut t1 = Topology { h: [it.next().unwrap(), it.next().unwrap()], ns: Netns(Vec::new()), tag };
    let mut t2 =
        Topology { h: [it.next().unwrap(), it.next().unwrap()], ns: Netns(Vec::new()), tag: tag + 5 };
    vms.push(t1.vm(0, "qa", 90, "10.90.0.1", "52:54:00:90:00:01"));
    vms.push(t1.vm(1, "qb", 90, "10.90.0.2", "52:54:00:90:00:02"));
    vms.push(t2.vm(0, "qc", 90, "10.90.0.3", "52:54:00:90:00:03"));
    vms.push(t2.vm(1, "qd", 90, "10.90.0.4", "52:54:00:90:00:04"));
    for to in ["10.90.0.2", "10.90.0.3", "10.90.0.4"] {
        let (ok, out) = ping(&vms[0], to, "3");
        assert!(ok, "VM 1 -> {to} across the fabric:\n{out}");
    }
    let (ok, out) = ping(&vms[3], "10.90.0.2", "3");
    assert!(ok, "VM 4 -> VM 2:\n{out}");
    // The bridge learnt the VNI's group from our IGMP reports on all four ports.
    let mdb = sh(&["ip", "netns", "exec", &fabric, "bridge", "mdb", "show"]);
    let ports = (1..=4)
        .filter(|i| mdb.lines().any(|l| l.contains(&format!("port p{i} ")) && l.contains("230.0.0.90")))
        .count();
    assert_eq!(ports, 4, "every host joined 230.0.0.90:\n{mdb}");
    drop(t1);
    drop(t2);
    drop(ns);
}

/// TSO super-frames from a TAP VM cross the whole chain on both daemons as one frame: the
/// VTEP encapsulates them whole, the TAP underlay hands them to the host kernel with
/// UDP-tunnel GSO metadata, the bridge and the veth carry them unsegmented (captured on the
/// veth: frames far above the 1500-byte MTU), the far daemon decapsulates them whole and
/// the far VM's kernel gets one super-frame. The transfer is checked byte for byte.
#[test]
fn tcp_super_frames_cross_the_underlay_whole() {
    let mut t = two_hosts_tap_underlay();
    let a = t.vm(0, "ga", 61, "10.61.0.1", "52:54:00:61:00:01");
    let b = t.vm(1, "gb", 61, "10.61.0.2", "52:54:00:61:00:02");
    let (ok, out) = ping(&b, "10.61.0.1", "3");
    assert!(ok, "{out}");
    let host2 = t.h[1].netns.clone().unwrap();
    let pcap = std::env::temp_dir().join(format!("bf-gso-{}.pcap", t.tag));
    let pcap_s = pcap.display().to_string();
    let mut capture = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host2,
            "tshark",
            "-q",
            "-i",
            "u2",
            "-s",
            "128",
            "-w",
            &pcap_s,
            "-f",
            "udp port 4789",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // tshark is capturing once a ping across the overlay shows up in its file.
    let captured = || std::fs::metadata(&pcap).map(|m| m.len()).unwrap_or(0);
    for _ in 0..40 {
        let before = captured();
        let _ = ping(&b, "10.61.0.1", "1");
        std::thread::sleep(std::time::Duration::from_millis(250));
        if before > 0 && captured() > before {
            break;
        }
    }
    let (got, sent) = tcp_transfer(&a, &b, "10.61.0.1", 8, t.tag);
    // Let the capture's ring hand over its last block, then SIGINT so tshark flushes its file.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    sh(&["kill", "-INT", &capture.id().to_string()]);
    let _ = capture.wait();
    assert_eq!(got, sent, "TCP transfer intact");

    let s1 = t.h[0].ok(&["status"]);
    let s2 = t.h[1].ok(&["status"]);
    assert!(status_counter(&s1, "whole-tx") > 0, "host 1 VTEP encapsulated super-frames whole:\n{s1}");
    assert!(status_counter(&s2, "whole-rx") > 0, "host 2 VTEP decapsulated super-frames whole:\n{s2}");
    assert_eq!(status_counter(&s1, "segmented"), 0, "nothing cut in software");
    let lens = sh(&["tshark", "-r", &pcap_s, "-Y", "udp.dstport == 4789", "-T", "fields", "-e", "frame.len"]);
    let _ = std::fs::remove_file(&pcap);
    let lens: Vec<usize> = lens.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let big = lens.iter().filter(|&&l| l > 1514).count();
    assert!(big > 0, "super-frames on the veth: {} frames, largest {:?}", lens.len(), lens.iter().max());
}

/// An underlay without multicast: three hosts on a Linux bridge whose ports flood no
/// multicast (`mcast_flood off`, no snooping, so not even IGMP crosses), two running
/// butterflyd and the third the Linux kernel's vxlan with a static flood list (`bridge fdb
/// append 00:00:00:00:00:00 … dst`). Host 2's daemon floods by list from the start
/// (`--bum-mode unicast --flood-vteps`); host 1 starts with the default multicast mode, so
/// its VM cannot even resolve its neighbours, until `butterfly vni set … --flood` gives its
/// VNI a flood list, live. Then ARP, ping and TCP (both ways, byte for byte) work between
/// the VMs of all three hosts, and `vni details` shows the mode and the remote VTEPs learnt.
#[test]
fn flood_lists_on_an_underlay_without_multicast_with_the_kernel() {
    let tag = unique_tag();
    let fabric = format!("bfm{tag}");
    let hosts = [format!("bfm1x{tag}"), format!("bfm2x{tag}"), format!("bfm3x{tag}")];
    let kvm = format!("bfmk{tag}");
    let mut ns = Netns(vec![kvm.clone(), fabric.clone()]);
    sh(&["ip", "netns", "add", &fabric]);
    sh(&["ip", "-n", &fabric, "link", "add", "fab", "type", "bridge", "mcast_snooping", "0"]);
    sh(&["ip", "-n", &fabric, "link", "set", "fab", "up"]);
    for (i, h) in hosts.iter().enumerate() {
        sh(&["ip", "netns", "add", h]);
        ns.0.push(h.clone());
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
        let port = format!("p{}", i + 1);
        sh(&["ip", "-n", &fabric, "link", "add", &port, "type", "veth", "peer", "name", "u", "netns", h]);
        sh(&["ip", "-n", &fabric, "link", "set", &port, "master", "fab", "up"]);
        // The fabric carries unicast and broadcast (ARP), never multicast.
        sh(&["bridge", "-n", &fabric, "link", "set", "dev", &port, "mcast_flood", "off"]);
        sh(&["ip", "-n", h, "link", "set", "u", "up"]);
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", h, "sysctl", "-qw", "net.ipv6.conf.u.disable_ipv6=1"])
            .status();
    }
    // Host 3: the kernel's VTEP for VNI 50, flooding to both daemons, bridged to a VM.
    let k = &hosts[2];
    sh(&["ip", "-n", k, "addr", "add", "198.18.90.3/24", "dev", "u"]);
    sh(&[
        "ip",
        "-n",
        k,
        "link",
        "add",
        "vx50",
        "type",
        "vxlan",
        "id",
        "50",
        "dstport",
        "4789",
        "local",
        "198.18.90.3",
        "dev",
        "u",
    ]);
    for dst in ["198.18.90.1", "198.18.90.2"] {
        sh(&["bridge", "-n", k, "fdb", "append", "00:00:00:00:00:00", "dev", "vx50", "dst", dst]);
    }
    sh(&["ip", "-n", k, "link", "add", "br50", "type", "bridge"]);
    sh(&["ip", "-n", k, "link", "set", "vx50", "master", "br50", "up"]);
    sh(&["ip", "-n", k, "link", "set", "br50", "up"]);
    sh(&["ip", "netns", "add", &kvm]);
    sh(&["ip", "-n", k, "link", "add", "kv0", "type", "veth", "peer", "name", "eth0", "netns", &kvm]);
    sh(&["ip", "-n", k, "link", "set", "kv0", "master", "br50", "up"]);
    sh(&["ip", "-n", &kvm, "addr", "add", "10.50.0.3/24", "dev", "eth0"]);
    sh(&["ip", "-n", &kvm, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &kvm, "link", "set", "lo", "up"]);
    // Hosts 1 and 2: butterflyd.
    let start = |i: usize, extra: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let ip = format!("198.18.90.{}", i + 1);
        let mut args = vec!["--underlay", "af-packet:u", "-i", &ip, "--no-state"];
        args.extend_from_slice(extra);
        Daemon::start_full(dir, Some(&hosts[i]), endpoint, &args)
    };
    let h1 = start(0, &[]);
    let h2 = start(1, &["--bum-mode", "unicast", "--flood-vteps", "198.18.90.1,198.18.90.3"]);
    let mut t = Topology { h: [h1, h2], ns, tag };
    let a = t.vm(0, "na", 50, "10.50.0.1", "52:54:00:50:00:01");
    let b = t.vm(1, "nb", 50, "10.50.0.2", "52:54:00:50:00:02");

    // Host 1 still floods to VNI 50's multicast group, which the fabric does not carry: its
    // VM's ARP requests reach no one.
    let (ok, out) = ping(&a, "10.50.0.2", "2");
    assert!(!ok, "no multicast on this underlay, yet host 1's VM reached host 2's:\n{out}");
    t.h[0].ok(&["vni", "set", "50", "--flood", "198.18.90.2,198.18.90.3"]);
    sh(&["ip", "-n", &a, "neigh", "flush", "all"]);
    for (from, to) in
        [(&a, "10.50.0.2"), (&a, "10.50.0.3"), (&b, "10.50.0.3"), (&kvm, "10.50.0.1"), (&kvm, "10.50.0.2")]
    {
        let (ok, out) = ping(from, to, "3");
        assert!(ok, "{from} → {to} with flood lists:\n{out}");
    }
    // TCP between our VM and the kernel's, both ways, and between the daemons' VMs.
    for (server, client, ip, what) in [
        (&kvm, &a, "10.50.0.3", "kernel's VM → host 1's"),
        (&a, &kvm, "10.50.0.1", "host 1's VM → kernel's"),
        (&b, &a, "10.50.0.2", "host 2's VM → host 1's"),
    ] {
        let (got, sent) = tcp_transfer(server, client, ip, 2, t.tag);
        assert_eq!(got, sent, "TCP {what}, byte for byte");
    }
    // What the daemons say: modes, lists, and the remote VTEPs they learnt.
    let d1 = t.h[0].ok(&["vni", "details", "50"]);
    assert_eq!(
        d1,
        "vni: 50\nmode: unicast\nsetting: own\nflood: 198.18.90.2\nflood: 198.18.90.3\n\
         remote vtep: 198.18.90.2\nremote vtep: 198.18.90.3\nnics: 1\n"
    );
    let d2 = t.h[1].ok(&["vni", "details", "50"]);
    assert!(
        d2.starts_with("vni: 50\nmode: unicast\nsetting: default\nflood: 198.18.90.1\nflood: 198.18.90.3\n"),
        "{d2}"
    );
    assert!(d2.contains("remote vtep: 198.18.90.1\n") && d2.contains("remote vtep: 198.18.90.3\n"), "{d2}");
    let json = t.h[1].ok(&["status", "--json"]);
    assert!(json.contains("\"remote_vtep\"") && json.contains("198.18.90.3"), "{json}");
    // The kernel learnt host 1's VM behind host 1's VTEP.
    let fdb = sh(&["ip", "netns", "exec", k, "bridge", "fdb", "show", "dev", "vx50"]);
    assert!(fdb.contains("52:54:00:50:00:01 dst 198.18.90.1"), "{fdb}");
}

//! End to end: two "hosts" (network namespaces joined by a veth underlay), each running the
//! real butterflyd on an AF_PACKET underlay, each with a "VM" (a TAP NIC moved into its own
//! namespace). The VMs reach each other across VXLAN, and only within their VNI.

mod common;

use common::*;

// Fields drop in order: daemons stop before their namespaces go.
struct Topology {
    h: [Daemon; 2],
    ns: Netns,
    tag: u32,
}

/// Builds host namespaces h1/h2 joined by a veth (no kernel addresses: the underlay belongs to
/// butterflyd), and starts a daemon in each with VTEP `ips[i]`.
fn two_hosts(v6: bool) -> Topology {
    let tag = std::process::id() % 100_000 + if v6 { 1 } else { 0 } * 7;
    let hosts = [format!("bfh1x{tag}"), format!("bfh2x{tag}")];
    let ns = Netns(hosts.to_vec());
    for h in &hosts {
        sh(&["ip", "netns", "add", h]);
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "-n", &hosts[0], "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &hosts[1],
    ]);
    for (h, dev) in [(&hosts[0], "u1"), (&hosts[1], "u2")] {
        sh(&["ip", "-n", h, "link", "set", dev, "up"]);
        // The kernel must not answer for the VTEP address or send its own IPv6 chatter.
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", h, "sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")])
            .status();
    }
    let ips = if v6 { ["fd77::1", "fd77::2"] } else { ["198.18.77.1", "198.18.77.2"] };
    let mut daemons = Vec::new();
    for (i, (h, dev)) in [(&hosts[0], "u1"), (&hosts[1], "u2")].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let underlay = format!("af-packet:{dev}");
        let d = Daemon::start_full(
            dir,
            Some(h),
            endpoint,
            &["--underlay", &underlay, "-i", ips[i], "--no-state"],
        );
        daemons.push(d);
    }
    let h: [Daemon; 2] = daemons.try_into().map_err(|_| ()).unwrap();
    Topology { h, ns, tag }
}

impl Topology {
    /// Adds a TAP "VM" NIC on host `host`, moves it into its own namespace with `ip/24`.
    fn vm(&mut self, host: usize, name: &str, vni: u32, ip: &str, mac: &str) -> String {
        let d = &self.h[host];
        let nic = format!("{name}{}", self.tag % 10_000);
        d.ok(&["sg", "add", "open"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "::/0"]);
        d.ok(&[
            "nic",
            "add",
            "--id",
            &nic,
            "--type",
            "TAP",
            "--mac",
            mac,
            "--vni",
            &vni.to_string(),
            "--ip",
            ip,
            "--sg",
            "open",
        ]);
        let vmns = format!("bfv{nic}");
        let hostns = d.netns.clone().unwrap();
        sh(&["ip", "netns", "add", &vmns]);
        self.ns.0.insert(0, vmns.clone()); // VM namespaces go first on cleanup
        sh(&["ip", "-n", &hostns, "link", "set", "dev", &nic, "address", mac]);
        sh(&["ip", "-n", &hostns, "link", "set", "dev", &nic, "netns", &vmns]);
        let prefix = if ip.contains(':') { "64" } else { "24" };
        if ip.contains(':') {
            sh(&[
                "ip",
                "netns",
                "exec",
                &vmns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{nic}.accept_dad=0"),
            ]);
        }
        sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/{prefix}"), "dev", &nic]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", &nic, "up"]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", "lo", "up"]);
        vmns
    }
}

fn ping(ns: &str, to: &str, count: &str) -> (bool, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", count, "-i", "0.2", "-W", "2", to])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
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

#[test]
fn ipv6_underlay_and_ipv6_in_the_overlay() {
    let mut t = two_hosts(true);
    let a = t.vm(0, "wa", 20, "fd20::1", "52:54:00:20:00:01");
    let _b = t.vm(1, "wb", 20, "fd20::2", "52:54:00:20:00:02");
    let (ok, out) = ping(&a, "fd20::2", "5");
    assert!(ok && out.contains(" 0% packet loss"), "IPv6 over an IPv6 underlay:\n{out}");
}

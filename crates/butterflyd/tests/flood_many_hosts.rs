//! Static flood lists (BUM mode unicast) on a routed underlay that carries no multicast: three
//! butterflyd hosts and a Linux kernel VTEP host, each in its own subnet behind a router
//! namespace. VNI 60 is on all four hosts (the daemons' host-wide `--flood-vteps`), VNI 70 on
//! host 1, host 3 and the kernel host only (its own list, `vni set 70 --flood`), with addresses
//! of VNI 60's subnet: every pair of VMs of a VNI reaches each other, no VM reaches the other
//! VNI. Needs root; prints "skipped" and passes otherwise.

mod common;

use std::process::Command;
use std::time::Instant;

use common::*;

fn ping1(ns: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A VM behind the kernel VTEP host `k`, in `vni`'s bridge; its namespace is removed on drop.
fn kernel_vm(ns: &mut Netns, k: &str, tag: u32, vni: u32, ip: &str) -> String {
    let vmns = format!("bfflv{vni}x{tag}");
    sh(&["ip", "netns", "add", &vmns]);
    ns.0.insert(0, vmns.clone());
    let port = format!("kv{vni}");
    sh(&["ip", "-n", k, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &vmns]);
    sh(&["ip", "-n", k, "link", "set", &port, "master", &format!("br{vni}"), "up"]);
    sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
    sh(&["ip", "-n", &vmns, "link", "set", "eth0", "up"]);
    sh(&["ip", "-n", &vmns, "link", "set", "lo", "up"]);
    vmns
}

struct World {
    // Fields drop in order: daemons before their namespaces.
    daemons: Vec<Daemon>,
    ns: Netns,
    tag: u32,
}

impl World {
    /// A VM on daemon `host` (a TAP NIC with an open security group, moved into its own
    /// namespace, which is returned).
    fn vm(&mut self, host: usize, name: &str, vni: u32, ip: &str, mac: &str) -> String {
        let d = &self.daemons[host];
        d.ok(&["sg", "add", "open"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
        let nic = format!("{name}{}", self.tag % 10_000);
        let v = vni.to_string();
        d.ok(&[
            "nic", "add", "--id", &nic, "--type", "TAP", "--mac", mac, "--vni", &v, "--ip", ip, "--sg",
            "open",
        ]);
        let vmns = format!("bfflv{nic}");
        sh(&["ip", "netns", "add", &vmns]);
        self.ns.0.insert(0, vmns.clone());
        sh(&["ip", "-n", d.netns.as_ref().unwrap(), "link", "set", "dev", &nic, "netns", &vmns]);
        sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/24"), "dev", &nic]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", &nic, "up"]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", "lo", "up"]);
        vmns
    }
}

#[test]
fn flood_lists_three_daemons_and_a_kernel_vtep_on_a_routed_underlay() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let t0 = Instant::now();
    let tag = unique_tag();
    let r = format!("bfflr{tag}");
    let k = format!("bfflk{tag}");
    let hosts: Vec<String> = (1..=3).map(|i| format!("bffl{i}x{tag}")).collect();
    let mut ns = Netns(Vec::new());
    for name in hosts.iter().chain([&k, &r]) {
        sh(&["ip", "netns", "add", name]);
        ns.0.push(name.clone());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        let _ = Command::new("ip")
            .args(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            .status();
    }
    // The router: 198.19.<n>.1 towards host n (n = 1..3 daemons, 4 the kernel host); it
    // routes unicast only (no multicast routing).
    sh(&["ip", "netns", "exec", &r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    for (i, far) in hosts.iter().chain([&k]).enumerate() {
        let net = i + 1;
        let port = format!("p{net}");
        sh(&["ip", "-n", &r, "link", "add", &port, "type", "veth", "peer", "name", "u", "netns", far]);
        sh(&["ip", "-n", &r, "addr", "add", &format!("198.19.{net}.1/24"), "dev", &port]);
        sh(&["ip", "-n", &r, "link", "set", &port, "up"]);
        sh(&["ip", "-n", far, "link", "set", "u", "up"]);
    }
    sh(&["ip", "-n", &k, "addr", "add", "198.19.4.2/24", "dev", "u"]);
    sh(&["ip", "-n", &k, "route", "add", "default", "via", "198.19.4.1"]);
    let vtep = |n: usize| format!("198.19.{n}.2");
    // The kernel VTEP: VNI 60 floods to the three daemons, VNI 70 to hosts 1 and 3.
    for (vni, to) in [(60, vec![1, 2, 3]), (70, vec![1, 3])] {
        let (vx, br, id) = (format!("vx{vni}"), format!("br{vni}"), vni.to_string());
        sh(&["ip", "-n", &k, "link", "add", &br, "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            &k,
            "link",
            "add",
            &vx,
            "type",
            "vxlan",
            "id",
            &id,
            "local",
            "198.19.4.2",
            "dstport",
            "4789",
            "nolearning",
        ]);
        for n in to {
            sh(&["bridge", "-n", &k, "fdb", "append", "00:00:00:00:00:00", "dev", &vx, "dst", &vtep(n)]);
        }
        sh(&["ip", "-n", &k, "link", "set", &vx, "master", &br, "up"]);
        sh(&["ip", "-n", &k, "link", "set", &br, "up"]);
    }
    // The daemons: every other host (the kernel's too) by default, which serves VNI 60.
    let mut w = World { daemons: Vec::new(), ns, tag };
    for n in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let others: Vec<String> = (1..=4).filter(|&m| m != n).map(vtep).collect();
        let (ip, gw, flood) = (vtep(n), format!("198.19.{n}.1"), others.join(","));
        let args = [
            "--underlay",
            "af-packet:u",
            "-i",
            &ip,
            "--gateway",
            &gw,
            "--underlay-prefix",
            "24",
            "--no-state",
            "--bum-mode",
            "unicast",
            "--flood-vteps",
            &flood,
        ];
        w.daemons.push(Daemon::start_full(dir, Some(&hosts[n - 1]), endpoint, &args));
    }
    // VNI 70 has its own list on hosts 1 and 3, set before its first NIC.
    w.daemons[0].ok(&["vni", "set", "70", "--flood", &format!("{},{}", vtep(3), vtep(4))]);
    w.daemons[2].ok(&["vni", "set", "70", "--flood", &format!("{},{}", vtep(1), vtep(4))]);
    let a60 = w.vm(0, "fa", 60, "10.60.0.1", "52:54:00:f6:00:01");
    let b60 = w.vm(1, "fb", 60, "10.60.0.2", "52:54:00:f6:00:02");
    let c60 = w.vm(2, "fc", 60, "10.60.0.3", "52:54:00:f6:00:03");
    let a70 = w.vm(0, "fd", 70, "10.60.0.21", "52:54:00:f7:00:21");
    let c70 = w.vm(2, "fe", 70, "10.60.0.23", "52:54:00:f7:00:23");
    let k60 = kernel_vm(&mut w.ns, &k, tag, 60, "10.60.0.4");
    let k70 = kernel_vm(&mut w.ns, &k, tag, 70, "10.60.0.24");

    // Every pair of each VNI, in both directions (each ARP request crosses the routed
    // underlay as head-end copies; the replies are unicast).
    let vni60 = [(&a60, "10.60.0.1"), (&b60, "10.60.0.2"), (&c60, "10.60.0.3"), (&k60, "10.60.0.4")];
    let vni70 = [(&a70, "10.60.0.21"), (&c70, "10.60.0.23"), (&k70, "10.60.0.24")];
    let first = Instant::now();
    for group in [&vni60[..], &vni70[..]] {
        for (i, (from, _)) in group.iter().enumerate() {
            for (j, (_, to)) in group.iter().enumerate() {
                if i != j {
                    let tries = (1..=3).find(|_| ping1(from, to));
                    assert!(tries.is_some(), "{from} -> {to} with flood lists");
                    if tries > Some(1) {
                        eprintln!("{from} -> {to}: {tries:?} pings");
                    }
                }
            }
        }
    }
    eprintln!("every pair of both VNIs reached in {:?}", first.elapsed());
    // Nothing crosses VNIs: addresses of the other VNI, same subnet, never answer.
    for (from, to) in [
        (&a60, "10.60.0.21"),
        (&b60, "10.60.0.24"),
        (&k60, "10.60.0.23"),
        (&k70, "10.60.0.1"),
        (&c70, "10.60.0.2"),
    ] {
        assert!(!ping1(from, to), "{from} reached {to} in another VNI");
    }
    // Host 2 does not serve VNI 70 and is on no VNI 70 list: it never received its frames.
    let s2 = w.daemons[1].ok(&["status"]);
    assert!(!s2.contains("vni 70 "), "host 2 has no VNI 70:\n{s2}");
    // (The VTEP's drop counter "unknown vni" is shown only once it is not zero.)
    assert!(s2.contains("vni 60 decap") && !s2.contains("unknown vni"), "host 2 got VNI 70's frames:\n{s2}");
    eprintln!("whole test {:?}", t0.elapsed());
}

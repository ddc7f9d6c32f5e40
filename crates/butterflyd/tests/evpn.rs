//! BGP EVPN with real FRR (bgpd + zebra): three butterflyd hosts and a Linux kernel VTEP host,
//! each in its own subnet behind a router namespace (no multicast anywhere), each with FRR
//! peering iBGP with a route reflector namespace. butterflyd's FRR runs in a namespace of its
//! own, where butterflyd mirrors its EVPN VNIs. Needs root and Debian's `frr`
//! (scripts/setup-frr.sh); prints "skipped" and passes otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const FRR: &str = "/usr/lib/frr";

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let frr = Path::new(FRR).join("bgpd").exists() && Path::new(FRR).join("zebra").exists();
    if !root || !frr {
        eprintln!("skipped: needs root and FRR ({FRR}/bgpd, zebra; scripts/setup-frr.sh)");
    }
    root && frr
}

/// FRR (zebra + bgpd) in a namespace, with its own files in `dir`; killed on drop.
struct Frr {
    ns: String,
    dir: PathBuf,
}

impl Frr {
    fn start(ns: &str, dir: &Path, router_id: &str, bgp: &str) -> Frr {
        std::fs::create_dir_all(dir).unwrap();
        sh(&["chmod", "0777", &dir.display().to_string()]);
        std::fs::write(
            dir.join("zebra.conf"),
            "hostname zebra\nip nht resolve-via-default\nipv6 nht resolve-via-default\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("bgpd.conf"),
            format!(
                "frr defaults datacenter\nhostname bgpd\nrouter bgp 65000\n bgp router-id {router_id}\n \
                 no bgp default ipv4-unicast\n{bgp}"
            ),
        )
        .unwrap();
        let f = Frr { ns: ns.to_string(), dir: dir.to_path_buf() };
        f.launch();
        f
    }

    fn arg(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn launch(&self) {
        for d in ["zebra", "bgpd"] {
            let bin = format!("{FRR}/{d}");
            let (conf, pid, z, vty) = (
                self.arg(&format!("{d}.conf")),
                self.arg(&format!("{d}.pid")),
                self.arg("zserv.api"),
                self.arg(""),
            );
            let mut args = vec!["netns", "exec", &self.ns, &bin, "-d", "-f", &conf, "-i", &pid, "-z", &z];
            args.extend(["--vty_socket", &vty, "-P", "0", "--log", "file:/dev/null"]);
            sh(&["ip"].iter().chain(args.iter()).copied().collect::<Vec<_>>());
            if d == "zebra" {
                // bgpd connects to zebra's socket.
                wait_for(Duration::from_secs(10), || Path::new(&z).exists().then_some(()))
                    .expect("zebra started");
            }
        }
    }

    fn kill(&self, signal: &str) {
        for d in ["bgpd", "zebra"] {
            if let Ok(pid) = std::fs::read_to_string(self.dir.join(format!("{d}.pid"))) {
                let _ = Command::new("kill").args([signal, pid.trim()]).status();
            }
        }
        // Wait until they are gone, so a restart can take the pid files.
        let _ = wait_for(Duration::from_secs(5), || {
            let alive = ["bgpd", "zebra"].iter().any(|d| {
                std::fs::read_to_string(self.dir.join(format!("{d}.pid")))
                    .ok()
                    .and_then(|p| std::fs::read_to_string(format!("/proc/{}/stat", p.trim())).ok())
                    .is_some_and(|st| st.contains(&format!("({d})")) && !st.contains(") Z"))
            });
            (!alive).then_some(())
        });
    }

    fn vtysh(&self, cmd: &str) -> String {
        let out = Command::new("vtysh").args(["--vty_socket", &self.arg(""), "-c", cmd]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        self.kill("-9");
    }
}

/// Polls `f` every 100 ms until it returns something or `limit` passes.
fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ping1(ns: &str, to: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", to])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Sends `mib` MiB from a server in `server_ns` (on `ip`:9000) to a client in `client_ns`;
/// returns (what the client got, what the server sent) as "bytes sha256".
fn tcp_transfer(server_ns: &str, client_ns: &str, ip: &str, mib: usize, tag: u32) -> (String, String) {
    let file = format!("/dev/shm/bf-evpn-tx-{tag}");
    let script = format!(
        "import hashlib,os,socket\ndata=os.urandom({mib}<<20)\nopen('{file}','w').write(hashlib.sha256(data).hexdigest())\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',9000))\ns.listen(1)\ns.settimeout(20)\nc,_=s.accept()\nc.settimeout(20)\nc.sendall(data)\nc.close()"
    );
    let mut server =
        Command::new("ip").args(["netns", "exec", server_ns, "python3", "-c", &script]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let client = format!(
        "import hashlib,socket\ns=socket.create_connection(('{ip}',9000),timeout=10)\nh=hashlib.sha256();n=0\nwhile True:\n d=s.recv(65536)\n if not d: break\n h.update(d);n+=len(d)\nprint(n,h.hexdigest())"
    );
    let out =
        Command::new("ip").args(["netns", "exec", client_ns, "python3", "-c", &client]).output().unwrap();
    let _ = server.wait();
    let sent = std::fs::read_to_string(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    (String::from_utf8_lossy(&out.stdout).trim().to_string(), format!("{} {sent}", mib << 20))
}

/// The number after `key` in `text`, or 0.
fn number_after(text: &str, key: &str) -> u64 {
    text.find(key)
        .map(|at| {
            text[at + key.len()..].trim_start().chars().take_while(char::is_ascii_digit).collect::<String>()
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct World {
    // Fields drop in order: daemons and FRR before the namespaces.
    daemons: Vec<Daemon>,
    frr: Vec<Frr>,
    ns: Netns,
    tag: u32,
    _dir: tempfile::TempDir,
}

impl World {
    /// A VM on butterflyd host `host` (a TAP NIC moved into its own namespace).
    fn vm(&mut self, host: usize, name: &str, vni: u32, ip: &str, mac: &str) -> String {
        self.vm_dual(host, name, vni, ip, None, mac)
    }

    /// A VM on butterflyd host `host`, with an IPv6 address (`ip6`, in a /64) too if given.
    fn vm_dual(
        &mut self,
        host: usize,
        name: &str,
        vni: u32,
        ip: &str,
        ip6: Option<&str>,
        mac: &str,
    ) -> String {
        let d = &self.daemons[host];
        d.ok(&["sg", "add", "open"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "::/0"]);
        let nic = format!("{name}{}", self.tag % 10_000);
        let v = vni.to_string();
        let mut args =
            vec!["nic", "add", "--id", &nic, "--type", "TAP", "--mac", mac, "--vni", &v, "--ip", ip];
        if let Some(ip6) = ip6 {
            args.extend(["--ip", ip6]);
        }
        args.extend(["--sg", "open"]);
        d.ok(&args);
        let vmns = format!("bfev{nic}");
        sh(&["ip", "netns", "add", &vmns]);
        self.ns.0.insert(0, vmns.clone());
        let hostns = d.netns.clone().unwrap();
        sh(&["ip", "-n", &hostns, "link", "set", "dev", &nic, "netns", &vmns]);
        sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/24"), "dev", &nic]);
        if let Some(ip6) = ip6 {
            sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip6}/64"), "dev", &nic, "nodad"]);
        }
        sh(&["ip", "-n", &vmns, "link", "set", "dev", &nic, "mtu", "1400", "up"]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", "lo", "up"]);
        vmns
    }

    /// A VM behind the kernel VTEP host, in `vni`'s bridge.
    fn kernel_vm(&mut self, name: &str, vni: u32, ip: &str) -> String {
        let k = self.ns.0.iter().find(|n| n.starts_with("bfek")).unwrap().clone();
        let vmns = format!("bfev{name}{}", self.tag % 10_000);
        sh(&["ip", "netns", "add", &vmns]);
        self.ns.0.insert(0, vmns.clone());
        let port = format!("kv{vni}{name}");
        sh(&["ip", "-n", &k, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &vmns]);
        sh(&["ip", "-n", &k, "link", "set", &port, "master", &format!("br{vni}"), "up"]);
        sh(&["ip", "-n", &vmns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        sh(&["ip", "-n", &vmns, "link", "set", "eth0", "mtu", "1400", "up"]);
        sh(&["ip", "-n", &vmns, "link", "set", "lo", "up"]);
        vmns
    }
}

/// Counts, on `iface` of namespace `ns`, the VXLAN frames carrying an ARP request or a
/// neighbour solicitation, by target ("arp 10.0.0.1", "ns fd00::1"), from when it prints
/// "ready" until its stdin is closed.
const SNIFF_REQUESTS: &str = r#"
import select, socket, struct, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
n = {}
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 1)
    if sys.stdin in r:
        break
    if s not in r:
        continue
    f = s.recv(65535)
    if f[12:14] != b"\x08\x00" or f[23] != 17:
        continue
    u = 14 + (f[14] & 15) * 4
    if struct.unpack("!H", f[u + 2:u + 4])[0] != 4789:
        continue
    i = f[u + 16:]
    if i[12:14] == b"\x08\x06" and i[20:22] == b"\x00\x01":
        k = "arp " + socket.inet_ntoa(i[38:42])
    elif i[12:14] == b"\x86\xdd" and i[20] == 58 and i[54] == 135:
        k = "ns " + socket.inet_ntop(socket.AF_INET6, i[62:78])
    else:
        continue
    n[k] = n.get(k, 0) + 1
for k, v in n.items():
    print(k, v)
"#;

/// ARP/ND suppression: host 2's FRR advertised b10's MAC+IP routes (IPv4 and IPv6), so host
/// 1 answers a10's ARP request and neighbour solicitation for them itself, with b10's MAC,
/// and neither crosses the underlay; requests for unknown addresses still do (which also
/// shows that the capture sees them).
fn suppression(w: &World, a10: &str) {
    use std::io::{BufRead, BufReader};
    let t = Instant::now();
    let bound = wait_for(Duration::from_secs(20), || {
        let s = w.daemons[0].ok(&["status"]);
        (number_after(&s, "vni 10 suppression bindings") >= 2).then_some(())
    });
    assert!(
        bound.is_some(),
        "host 1 has b10's MAC+IP bindings:\n{}\n{}",
        w.frr[2].vtysh("show evpn arp-cache vni 10"),
        w.daemons[0].ok(&["status"])
    );
    let router = w.ns.0.iter().find(|n| n.starts_with("bferx")).unwrap();
    let mut sniffer = Command::new("ip")
        .args(["netns", "exec", router, "python3", "-c", SNIFF_REQUESTS, "p1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(sniffer.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    sh(&["ip", "-n", a10, "neigh", "flush", "all"]);
    let ping6 = |to: &str| {
        Command::new("ip")
            .args(["netns", "exec", a10, "ping", "-6", "-c", "1", "-W", "1", to])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    assert!(ping1(a10, "10.10.0.2"), "a10 -> b10 over IPv4");
    assert!(ping6("fd10::2"), "a10 -> b10 over IPv6");
    assert!(!ping1(a10, "10.10.0.99") && !ping6("fd10::99"));
    drop(sniffer.stdin.take());
    let mut seen = String::new();
    std::io::Read::read_to_string(&mut out, &mut seen).unwrap();
    let _ = sniffer.wait();
    for k in ["arp 10.10.0.99", "ns fd10::99"] {
        assert!(number_after(&seen, k) > 0, "{k} flooded, and seen by the capture:\n{seen}");
    }
    for k in ["arp 10.10.0.2 ", "ns fd10::2 "] {
        assert!(!seen.contains(k), "{k}crossed the underlay:\n{seen}");
    }
    let neigh = sh(&["ip", "-n", a10, "neigh", "show"]);
    for ip in ["10.10.0.2 ", "fd10::2 "] {
        let entry = neigh.lines().find(|l| l.starts_with(ip)).unwrap_or_default();
        assert!(entry.contains("lladdr 52:54:00:e0:00:02"), "a10's neighbour {ip}: {neigh}");
    }
    let s = w.daemons[0].ok(&["status"]);
    let at = s.find("vni 10 suppression").unwrap();
    assert!(number_after(&s[at..], " arp") >= 1 && number_after(&s[at..], " nd") >= 1, "{}", &s[at..]);
    eprintln!("ARP/ND suppression checked in {:?}", t.elapsed());
}

/// Router `bfer`, route reflector `bferr` (198.19.9.2), butterflyd hosts `bfeh1`/`bfeh2`/`bfeh3`
/// (VTEPs 198.19.1.2, 198.19.2.2 and 198.19.4.2, AF_PACKET underlays, no kernel address) with
/// their FRR namespaces `bfef1`/`bfef2`/`bfef3` (198.19.11.2, .12.2, .13.2), and the kernel VTEP host `bfek`
/// (198.19.3.2, VNIs 10 and 20 as kernel vxlan + bridge devices, FRR in the same namespace).
fn world(grace: &str) -> World {
    let tag = unique_tag();
    let dir = tempfile::tempdir().unwrap();
    // FRR drops its privileges to user frr: it must reach its files.
    sh(&["chmod", "0755", &dir.path().display().to_string()]);
    let n = |s: &str| format!("{s}x{tag}");
    let (r, rr, k) = (n("bfer"), n("bferr"), n("bfek"));
    let (h, f) = ([n("bfeh1"), n("bfeh2"), n("bfeh3")], [n("bfef1"), n("bfef2"), n("bfef3")]);
    let mut ns = Netns(Vec::new());
    for name in [&h[0], &h[1], &h[2], &f[0], &f[1], &f[2], &k, &rr, &r] {
        sh(&["ip", "netns", "add", name]);
        ns.0.push(name.clone());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        if f.contains(name) {
            // FRR's namespaces keep IPv6: their mirror bridges hold the VMs' IPv6 bindings
            // (the mirror devices have no IPv6 address, so they send nothing).
            continue;
        }
        let _ = Command::new("ip")
            .args(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"])
            .status();
    }
    sh(&["ip", "netns", "exec", &r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    // One subnet per attachment: 198.19.<net>.1 on the router, .2 on the far side (`u`).
    let attach = |far: &str, net: u32, kernel_addr: bool| {
        let port = format!("p{net}");
        sh(&["ip", "-n", &r, "link", "add", &port, "type", "veth", "peer", "name", "u", "netns", far]);
        sh(&["ip", "-n", &r, "addr", "add", &format!("198.19.{net}.1/24"), "dev", &port]);
        sh(&["ip", "-n", &r, "link", "set", &port, "up"]);
        sh(&["ip", "-n", far, "link", "set", "u", "up"]);
        if kernel_addr {
            sh(&["ip", "-n", far, "addr", "add", &format!("198.19.{net}.2/24"), "dev", "u"]);
            sh(&["ip", "-n", far, "route", "add", "default", "via", &format!("198.19.{net}.1")]);
        }
    };
    attach(&h[0], 1, false);
    attach(&h[1], 2, false);
    attach(&h[2], 4, false);
    attach(&k, 3, true);
    attach(&rr, 9, true);
    attach(&f[0], 11, true);
    attach(&f[1], 12, true);
    attach(&f[2], 13, true);
    let d = dir.path();
    let mut frr = Vec::new();
    let client = "bgp graceful-restart\n neighbor 198.19.9.2 remote-as 65000\n neighbor 198.19.9.2 timers connect 1\n \
                  address-family l2vpn evpn\n  neighbor 198.19.9.2 activate\n  advertise-all-vni\n exit-address-family\n";
    let mut rr_conf = String::from(" neighbor hosts peer-group\n neighbor hosts remote-as 65000\n");
    for peer in ["198.19.11.2", "198.19.12.2", "198.19.13.2", "198.19.3.2"] {
        rr_conf.push_str(&format!(" neighbor {peer} peer-group hosts\n"));
    }
    rr_conf.push_str(
        " address-family l2vpn evpn\n  neighbor hosts activate\n  neighbor hosts route-reflector-client\n exit-address-family\n",
    );
    frr.push(Frr::start(&rr, &d.join("rr"), "198.19.9.2", &rr_conf));
    // The kernel VTEP: VNIs 10 and 20, no learning (FRR installs the remote MACs).
    for vni in ["10", "20"] {
        let (vx, br) = (format!("vx{vni}"), format!("br{vni}"));
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
            vni,
            "local",
            "198.19.3.2",
            "dstport",
            "4789",
            "nolearning",
        ]);
        sh(&["ip", "-n", &k, "link", "set", &vx, "master", &br, "up"]);
        sh(&["ip", "-n", &k, "link", "set", &br, "up"]);
    }
    frr.push(Frr::start(&k, &d.join("k"), "198.19.3.2", client));
    let mut daemons = Vec::new();
    for i in 0..3 {
        let fd = d.join(format!("f{i}"));
        frr.push(Frr::start(&f[i], &fd, &format!("198.19.{}.2", 11 + i), client));
        let sdir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", sdir.path().display());
        let net = [1, 2, 4][i];
        let (ip, gw) = (format!("198.19.{net}.2"), format!("198.19.{net}.1"));
        let fds = fd.display().to_string();
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
            "evpn",
            "--evpn-netns",
            &f[i],
            "--evpn-frr-dir",
            &fds,
            "--evpn-grace",
            grace,
        ];
        daemons.push(Daemon::start_full(sdir, Some(&h[i]), endpoint, &args));
    }
    World { daemons, frr, ns, tag, _dir: dir }
}

/// The whole story on one topology (one FRR set-up, to fit CI's time): reachability and
/// isolation, TCP both ways with the kernel VTEP, BUM only where a VNI is served, FRR killed
/// and restarted on a butterflyd host, a NIC removed (withdrawn everywhere within 3 s) and a
/// VM moved to another host (reachable again within 3 s).
#[test]
fn evpn_with_frr_three_daemons_and_a_kernel_vtep() {
    if !can_run() {
        return;
    }
    let t0 = Instant::now();
    let mut w = world("3");
    // VNI 10 on hosts 1, 2 and the kernel host; VNI 20 on hosts 1, 3 and the kernel host,
    // with addresses of VNI 10's subnet: it must never answer VNI 10.
    let a10 = w.vm_dual(0, "ea", 10, "10.10.0.1", Some("fd10::1"), "52:54:00:e0:00:01");
    let _a11 = w.vm(0, "eb", 10, "10.10.0.7", "52:54:00:e0:00:07");
    let a20 = w.vm(0, "ec", 20, "10.10.0.4", "52:54:00:e0:00:04");
    let b10 = w.vm_dual(1, "ed", 10, "10.10.0.2", Some("fd10::2"), "52:54:00:e0:00:02");
    let k10 = w.kernel_vm("k", 10, "10.10.0.3");
    let k20 = w.kernel_vm("l", 20, "10.10.0.5");
    let c20 = w.vm(2, "ef", 20, "10.10.0.6", "52:54:00:e0:00:06");
    // BGP sessions come up, routes flow: the VMs of each VNI reach each other.
    let pairs = [
        (&a10, "10.10.0.2"),
        (&a10, "10.10.0.3"),
        (&b10, "10.10.0.3"),
        (&k10, "10.10.0.1"),
        (&a20, "10.10.0.5"),
        (&c20, "10.10.0.4"),
        (&c20, "10.10.0.5"),
    ];
    for (from, to) in pairs {
        let ok = wait_for(Duration::from_secs(40), || ping1(from, to).then_some(()));
        assert!(ok.is_some(), "{from} -> {to} over EVPN\n{}", w.frr[2].vtysh("show evpn mac vni all"));
    }
    eprintln!("converged after {:?}", t0.elapsed());
    for (from, to) in [(&b10, "10.10.0.1"), (&k20, "10.10.0.4"), (&a10, "10.10.0.7")] {
        let (ok, out) = ping(from, to, "3");
        assert!(ok && out.contains(" 0% packet loss"), "{from} -> {to}:\n{out}");
    }
    for (from, to) in [
        (&a10, "10.10.0.4"),
        (&a10, "10.10.0.5"),
        (&k10, "10.10.0.4"),
        (&a20, "10.10.0.1"),
        (&c20, "10.10.0.2"),
    ] {
        let (ok, out) = ping(from, to, "2");
        assert!(!ok, "{from} reached {to} in another VNI:\n{out}");
    }
    suppression(&w, &a10);
    // TCP byte for byte, both ways between the daemons and with the kernel's VM (default
    // offloads).
    for (server, client, ip, what) in [
        (&k10, &a10, "10.10.0.3", "kernel → host 1"),
        (&a10, &k10, "10.10.0.1", "host 1 → kernel"),
        (&a10, &b10, "10.10.0.1", "host 1 → host 2"),
        (&b10, &a10, "10.10.0.2", "host 2 → host 1"),
    ] {
        let (got, sent) = tcp_transfer(server, client, ip, 2, w.tag);
        assert_eq!(got, sent, "TCP {what}, byte for byte");
    }
    // What each side knows: FRR's tables and butterflyd's.
    let d1 = w.daemons[0].ok(&["vni", "details", "10"]);
    assert!(d1.starts_with("vni: 10\nmode: evpn\nsetting: default\n"), "{d1}");
    for vtep in ["198.19.2.2", "198.19.3.2"] {
        assert!(d1.contains(&format!("flood: {vtep}\n")), "type-3 of {vtep}: {d1}");
        assert!(d1.contains(&format!("remote vtep: {vtep}\n")), "type-2 behind {vtep}: {d1}");
    }
    let d20 = w.daemons[0].ok(&["vni", "details", "20"]);
    for vtep in ["198.19.4.2", "198.19.3.2"] {
        assert!(d20.contains(&format!("flood: {vtep}\n")), "VNI 20's type-3 of {vtep}: {d20}");
    }
    assert!(!d20.contains("198.19.2.2"), "host 2 does not serve VNI 20: {d20}");
    let macs = w.frr[2].vtysh("show evpn mac vni 10");
    assert!(macs.contains("52:54:00:e0:00:02") && macs.contains("198.19.2.2"), "host 1's FRR:\n{macs}");
    // BUM: host 2 serves only VNI 10; VNI 20's broadcasts (ARP between a20 and k20) never
    // reached it, while host 1 received BUM in both VNIs.
    let s2 = w.daemons[1].ok(&["status"]);
    assert!(!s2.contains("vni 20 "), "host 2 has no VNI 20:\n{s2}");
    assert_eq!(
        number_after(&s2, "unknown vni:"),
        0,
        "host 2 received frames of a VNI it does not serve:\n{s2}"
    );
    assert!(number_after(&s2, "vni 10 decap") > 0);
    let s1 = w.daemons[0].ok(&["status"]);
    let bum20 = s1.find("vni 20 ").map(|at| number_after(&s1[at..], "bum-rx")).unwrap_or(0);
    assert!(bum20 > 0, "host 1 received VNI 20's BUM:\n{s1}");

    // FRR killed on host 2: its data plane keeps every remote route; b10 keeps talking.
    let t = Instant::now();
    w.frr[3].kill("-9");
    let (ok, out) = ping(&b10, "10.10.0.1", "15");
    assert!(ok && out.contains(" 0% packet loss"), "host 2 → host 1 while host 2's FRR is down:\n{out}");
    // (Host 1 answers through data-plane learning: its FRR withdrew host 2's routes, as the
    // route reflector did. The kernel VTEP, without learning, cannot answer until host 2's
    // FRR is back: graceful restart did not keep EVPN routes on FRR 8.4's reflector.)
    let d2 = w.daemons[1].ok(&["vni", "details", "10"]);
    assert!(d2.contains("flood: 198.19.1.2\n") && d2.contains("flood: 198.19.3.2\n"), "kept: {d2}");
    // Meanwhile host 1 removes a11: host 2 cannot hear of it until FRR is back.
    w.daemons[0].ok(&["nic", "del", &format!("eb{}", w.tag % 10_000)]);
    w.frr[3].launch();
    eprintln!("FRR on host 2 down for {:?}", t.elapsed());
    // Reconciled: host 2's FRR learns again what exists (and not a11), and host 2's data
    // plane still reaches everyone.
    let back = wait_for(Duration::from_secs(30), || {
        let m = w.frr[3].vtysh("show evpn mac vni 10");
        (m.contains("52:54:00:e0:00:01") && m.contains("198.19.3.2") && !m.contains("52:54:00:e0:00:07"))
            .then_some(())
    });
    assert!(back.is_some(), "host 2's FRR after restart:\n{}", w.frr[3].vtysh("show evpn mac vni 10"));
    for to in ["10.10.0.1", "10.10.0.3"] {
        assert!(wait_for(Duration::from_secs(10), || ping1(&b10, to).then_some(())).is_some(), "b10 -> {to}");
    }

    // A NIC removed: its MAC is withdrawn from FRR's tables (host 1, kernel host) and from
    // host 1's data plane (host 2 no longer serves VNI 10: gone from the flood list) in 3 s.
    let t = Instant::now();
    w.daemons[1].ok(&["nic", "del", &format!("ed{}", w.tag % 10_000)]);
    let gone = wait_for(Duration::from_secs(3), || {
        let f1 = w.frr[2].vtysh("show evpn mac vni 10");
        let fk = w.frr[1].vtysh("show evpn mac vni 10");
        let kfdb = sh(&[
            "bridge",
            "-n",
            &w.ns.0.iter().find(|n| n.starts_with("bfek")).unwrap().clone(),
            "fdb",
            "show",
            "dev",
            "vx10",
        ]);
        let d1 = w.daemons[0].ok(&["vni", "details", "10"]);
        let mac = "52:54:00:e0:00:02";
        (!f1.contains(mac) && !fk.contains(mac) && !kfdb.contains(mac) && !d1.contains("198.19.2.2"))
            .then_some(())
    });
    assert!(gone.is_some(), "withdrawn within 3 s:\n{}", w.daemons[0].ok(&["vni", "details", "10"]));
    eprintln!("withdrawn in {:?}", t.elapsed());
    // The VM moves to host 1 (same MAC and address): traffic to it resumes within 3 s.
    let t = Instant::now();
    let moved = w.vm(0, "ee", 10, "10.10.0.2", "52:54:00:e0:00:02");
    let resumed = wait_for(Duration::from_secs(3), || ping1(&k10, "10.10.0.2").then_some(()));
    assert!(resumed.is_some(), "kernel VM -> the moved VM:\n{}", w.frr[1].vtysh("show evpn mac vni 10"));
    eprintln!("moved VM reachable after {:?}", t.elapsed());
    assert!(ping1(&moved, "10.10.0.3"));
    eprintln!("whole test {:?}", t0.elapsed());
}

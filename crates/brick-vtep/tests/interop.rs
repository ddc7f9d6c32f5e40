//! Interoperability with the Linux kernel's `vxlan` device, in network namespaces created and
//! removed by each test (needs root, iproute2, ping and tshark; CI runs it as root).
//!
//! Our VTEP sits on one end of a veth (through a raw AF_PACKET socket, a test-only stand-in
//! for brick-nic), with a tiny ARP/ICMP host on each VNI port; the kernel's vxlan devices sit
//! on the other end, in their own namespace.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brick_core::bricks::Flipped;
use brick_core::{BrickId, Graph, PacketPool, PoolConfig, Timestamp};
use brick_nic::{TapConfig, TapNic, TapOffloads};
use brick_vtep::{VniOptions, Vtep, VtepConfig};
use common::kernel::*;
use common::LOCAL_MAC;

#[derive(Clone, Copy, PartialEq)]
enum Flood {
    Multicast,
    Static,
}

struct Vm {
    id: BrickId,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    replies: Arc<std::sync::atomic::AtomicUsize>,
    answered: Arc<std::sync::atomic::AtomicUsize>,
    mac: [u8; 6],
}

struct Setup {
    g: Graph,
    vtep: BrickId,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    vms: Vec<(u32, Vm)>,
    kernel_ip: IpAddr,
    our_ip: IpAddr,
    ns: Netns,
}

fn vm_mac(vni: u32) -> [u8; 6] {
    [0x52, 0x54, 0, 0, (vni >> 8) as u8, vni as u8]
}

fn kernel_mac(vni: u32) -> [u8; 6] {
    [0x02, 0x4b, 0, 0, (vni >> 8) as u8, vni as u8]
}

fn fmt_mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Our side of the underlay (brick-nic's AF_PACKET brick on the veth in namespace A, a
/// recorder of what the VTEP sends, the VTEP) and the kernel's address on the veth in K.
struct Underlay {
    g: Graph,
    vtep: BrickId,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    cfg: VtepConfig,
    pool: PacketPool,
    kernel_ip: IpAddr,
    our_ip: IpAddr,
    ns: Netns,
}

fn underlay(v6: bool, flood: Flood) -> Option<Underlay> {
    underlay_with(v6, flood, false)
}

/// [`underlay`], the VTEP leaving the outer UDP checksum to the NIC when `outer_csum`
/// (AF_PACKET completes it in software).
fn underlay_with(v6: bool, flood: Flood, outer_csum: bool) -> Option<Underlay> {
    if !is_root() {
        eprintln!("interop tests need root (network namespaces); skipped");
        return None;
    }
    let ns = Netns::new(LOCAL_MAC);
    let (our_ip, kernel_ip, plen): (IpAddr, IpAddr, &str) = if v6 {
        ("fd99::1".parse().unwrap(), "fd99::2".parse().unwrap(), "64")
    } else {
        ("10.99.0.1".parse().unwrap(), "10.99.0.2".parse().unwrap(), "24")
    };
    let kaddr = format!("{kernel_ip}/{plen}");
    if v6 {
        ns.in_k(&["ip", "addr", "add", &kaddr, "dev", &ns.veth_k, "nodad"]);
    } else {
        ns.in_k(&["ip", "addr", "add", &kaddr, "dev", &ns.veth_k]);
    }
    let cfg = VtepConfig {
        multicast: flood == Flood::Multicast,
        outer_csum_offload: outer_csum,
        ..VtepConfig::new(our_ip, LOCAL_MAC)
    };
    let pool = PacketPool::with_count(4096).unwrap();
    let mut g = Graph::new("interop");
    let nic = g.add("nic", afpacket_in(&ns.a, &ns.veth_a, pool.clone())).unwrap();
    let rec = Recorder::new();
    let sent = Arc::clone(&rec.sent);
    let rec = g.add("recorder", rec).unwrap();
    let vtep = g.add("vtep", Vtep::new(cfg.clone(), pool.clone()).unwrap()).unwrap();
    g.chain(&[nic, rec, vtep]).unwrap();
    Some(Underlay { g, vtep, sent, cfg, pool, kernel_ip, our_ip, ns })
}

impl Underlay {
    /// The kernel's VTEP for `vni` in K: device `vx<vni>` with MAC `kernel_mac(vni)` and
    /// address 192.168.<vni>.2/24, flooding to the VNI's group or (static) to our address.
    fn kernel_vni(&self, vni: u32, flood: Flood) {
        let ns = &self.ns;
        let dev = format!("vx{vni}");
        let group = self.cfg.default_group(vni).to_string();
        let mut cmd = vec!["ip", "link", "add", &dev, "type", "vxlan", "id"];
        let vni_s = vni.to_string();
        let kip = self.kernel_ip.to_string();
        cmd.extend_from_slice(&[&vni_s, "dstport", "4789", "local", &kip, "dev", &ns.veth_k]);
        if flood == Flood::Multicast {
            cmd.extend_from_slice(&["group", &group]);
        }
        ns.in_k(&cmd);
        ns.in_k(&["ip", "link", "set", &dev, "address", &fmt_mac(kernel_mac(vni))]);
        ns.in_k(&["sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
        ns.in_k(&["ip", "addr", "add", &format!("192.168.{}.2/24", vni % 256), "dev", &dev]);
        ns.in_k(&["ip", "link", "set", &dev, "up"]);
        if flood == Flood::Static {
            let ours = self.our_ip.to_string();
            ns.in_k(&["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", &dev, "dst", &ours]);
        }
    }

    /// Links `vm` to a new east port of the VTEP and attaches `vni` to it.
    fn attach(&mut self, vni: u32, vm: BrickId, flood: Flood) {
        let (port, _) = self.g.link(self.vtep, vm).unwrap();
        let v = self.g.brick_mut::<Vtep>(self.vtep).unwrap();
        match flood {
            Flood::Multicast => v.add_vni(vni, port).unwrap(),
            Flood::Static => {
                v.add_vni_with(vni, port, VniOptions { group: None, flood: vec![self.kernel_ip] }).unwrap()
            }
        }
    }
}

fn setup(v6: bool, flood: Flood, vnis: &[u32]) -> Option<Setup> {
    setup_with(v6, flood, vnis, false)
}

fn setup_with(v6: bool, flood: Flood, vnis: &[u32], outer_csum: bool) -> Option<Setup> {
    let mut u = underlay_with(v6, flood, outer_csum)?;
    let mut vms = Vec::new();
    for &vni in vnis {
        u.kernel_vni(vni, flood);
        let host = VmHost::new(vm_mac(vni), Ipv4Addr::new(192, 168, (vni % 256) as u8, 1), u.pool.clone());
        let vm = Vm {
            received: Arc::clone(&host.received),
            replies: Arc::clone(&host.echo_replies),
            answered: Arc::clone(&host.echo_answered),
            mac: host.mac,
            id: u.g.add(format!("vm{vni}"), host).unwrap(),
        };
        u.attach(vni, vm.id, flood);
        vms.push((vni, vm));
    }
    let Underlay { g, vtep, sent, kernel_ip, our_ip, ns, .. } = u;
    Some(Setup { g, vtep, sent, vms, kernel_ip, our_ip, ns })
}

impl Setup {
    fn pump_until(&mut self, timeout: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.g.poll_all();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        false
    }

    /// The kernel pings our VM of `vni`; returns ping's success.
    fn kernel_pings(&mut self, vni: u32) -> bool {
        let target = format!("192.168.{}.1", vni % 256);
        let mut child = self
            .ns
            .k_cmd(&["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", &target])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut status = None;
        self.pump_until(Duration::from_secs(10), |_| {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let ok = status.is_some_and(|s| s.success());
        if !ok {
            self.dump();
        }
        ok
    }

    fn dump(&self) {
        eprintln!("{}", self.g.to_dot());
        eprintln!("vtep: {:?}", self.g.brick::<Vtep>(self.vtep).unwrap().counters());
        eprintln!("neighbours: {:?}", self.g.brick::<Vtep>(self.vtep).unwrap().neighbours());
        for f in self.sent.lock().unwrap().iter().take(10) {
            eprintln!("sent {:02x?}", &f[..f.len().min(60)]);
        }
        let _ =
            std::process::Command::new("ip").args(["netns", "exec", &self.ns.k, "ip", "-s", "link"]).status();
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns.k, "ip", "-d", "link", "show", "vx42"])
            .status();
    }

    /// Our VM of `vni` pings the kernel's vxlan address; returns whether replies came back.
    fn vm_pings(&mut self, vni: u32) -> bool {
        let i = self.vms.iter().position(|(v, _)| *v == vni).unwrap();
        let id = self.vms[i].1.id;
        self.g.brick_mut::<VmHost>(id).unwrap().ping(Ipv4Addr::new(192, 168, (vni % 256) as u8, 2));
        let replies = Arc::clone(&self.vms[i].1.replies);
        self.pump_until(Duration::from_secs(8), |_| replies.load(Ordering::Relaxed) >= 2)
    }

    fn kernel_fdb(&self, vni: u32) -> String {
        self.ns.in_k(&["bridge", "fdb", "show", "dev", &format!("vx{vni}")])
    }

    fn check_learning(&self, vni: u32) {
        let vm = &self.vms.iter().find(|(v, _)| *v == vni).unwrap().1;
        let fdb = self.kernel_fdb(vni);
        let want = format!("{} dst {}", fmt_mac(vm.mac), self.our_ip);
        assert!(fdb.contains(&want), "kernel FDB should hold `{want}`:\n{fdb}");
        let ours = self.g.brick::<Vtep>(self.vtep).unwrap().fdb(vni, Timestamp::now());
        assert!(
            ours.iter().any(|e| e.mac == kernel_mac(vni) && e.value.ip == self.kernel_ip),
            "our FDB should hold the kernel's vx{vni} MAC behind {}: {ours:?}",
            self.kernel_ip
        );
    }

    fn tshark_check(&self, vnis: &[u32], v6: bool) {
        let frames = self.sent.lock().unwrap().clone();
        let path = std::env::temp_dir().join(format!("bvtep-{}-{}.pcap", std::process::id(), self.ns.a));
        write_pcap(&path, &frames);
        let p = path.to_str().unwrap();
        let prefs = ["-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"];
        let fields = |filter: &str, field: &str| {
            let mut args = vec!["tshark", "-n", "-r", p];
            args.extend_from_slice(&prefs);
            args.extend_from_slice(&["-Y", filter, "-T", "fields", "-e", field]);
            sh(&args)
        };
        let vxlan = fields("vxlan", "vxlan.vni");
        for vni in vnis {
            assert!(
                vxlan.lines().any(|l| l.trim() == vni.to_string()),
                "tshark sees VXLAN VNI {vni}:\n{vxlan}"
            );
        }
        let bad = fields(
            "_ws.malformed || _ws.expert.severity == error || ip.checksum.status == 0 || udp.checksum.status == 0 \
             || icmpv6.checksum.status == 0 || igmp.checksum.status == 0 || icmp.checksum.status == 0",
            "frame.number",
        );
        if let Some(first) = bad.lines().next() {
            let mut args = vec!["tshark", "-n", "-r", p];
            args.extend_from_slice(&prefs);
            let filter = format!("frame.number == {first}");
            args.extend_from_slice(&["-Y", &filter, "-V"]);
            panic!("frames tshark finds malformed or with bad checksums: {bad}\nthe first:\n{}", sh(&args));
        }
        let ctl = if v6 { "icmpv6.type == 143 || icmpv6.type == 136" } else { "igmp || arp.opcode == 2" };
        let _ = fields(ctl, "frame.number");
        let _ = std::fs::remove_file(&path);
    }
}

fn ping_both_ways(v6: bool, flood: Flood) {
    let Some(mut s) = setup(v6, flood, &[42]) else { return };
    assert!(s.kernel_pings(42), "kernel → our VM ping failed");
    assert!(s.vms[0].1.answered.load(Ordering::Relaxed) >= 1);
    assert!(s.vm_pings(42), "our VM → kernel ping got no reply");
    s.check_learning(42);
    if v6 {
        if flood == Flood::Multicast {
            let sent = s.sent.lock().unwrap();
            assert!(
                sent.iter().any(|f| f.len() > 62 && f[12..14] == [0x86, 0xdd] && f[62] == 143),
                "MLDv2 report sent"
            );
        }
    } else if flood == Flood::Multicast {
        let sent = s.sent.lock().unwrap();
        assert!(sent.iter().any(|f| f.len() > 38 && f[23] == 2 && f[38] == 0x22), "IGMPv3 report sent");
    }
    s.tshark_check(&[42], v6);
}

#[test]
fn kernel_interop_ipv4_multicast() {
    ping_both_ways(false, Flood::Multicast);
}

#[test]
fn kernel_interop_ipv4_static_flood_list() {
    ping_both_ways(false, Flood::Static);
}

#[test]
fn kernel_interop_ipv6_multicast() {
    ping_both_ways(true, Flood::Multicast);
}

#[test]
fn kernel_interop_ipv6_static_flood_list() {
    ping_both_ways(true, Flood::Static);
}

/// The VTEP leaves the outer UDP checksum of an IPv6 underlay to the NIC (`CSUM_NEEDED`,
/// the pseudo-header sum in the field): the frames it hands over are partial, AF_PACKET
/// completes them, and the kernel's VXLAN, which checks the UDP checksum over IPv6 before
/// decapsulating, answers pings both ways.
#[test]
fn kernel_interop_ipv6_outer_checksum_completed_by_the_nic() {
    let Some(mut s) = setup_with(true, Flood::Static, &[42], true) else { return };
    assert!(s.kernel_pings(42), "kernel → our VM ping failed");
    assert!(s.vm_pings(42), "our VM → kernel ping got no reply");
    // What the VTEP handed the NIC: VXLAN over IPv6 whose checksum field is not the final
    // one (completing it changes it), while AF_PACKET sent the completed frames above.
    let sent = s.sent.lock().unwrap();
    let vxlan: Vec<&Vec<u8>> = sent
        .iter()
        .filter(|f| f.len() > 70 && f[12..14] == [0x86, 0xdd] && f[20] == 17 && f[56..58] == [0x12, 0xb5])
        .collect();
    assert!(!vxlan.is_empty(), "no VXLAN frame sent");
    let partial = vxlan
        .iter()
        .filter(|f| {
            let mut done = f.to_vec();
            brick_core::checksum::complete_partial(&mut done, 54, 6) && done[60..62] != f[60..62]
        })
        .count();
    assert_eq!(partial, vxlan.len(), "every outer checksum left partial");
}

#[test]
fn kernel_interop_two_vnis_stay_isolated() {
    let Some(mut s) = setup(false, Flood::Multicast, &[42, 43]) else { return };
    assert!(s.kernel_pings(42), "ping in VNI 42");
    // VNI 43's VM saw none of VNI 42's broadcasts (ARP for 192.168.42.1) nor anything else.
    let got43 = s.vms[1].1.received.lock().unwrap().clone();
    assert!(
        got43.iter().all(|f| !(f.len() >= 42 && f[12..14] == [8, 6] && f[38..41] == [192, 168, 42])),
        "a VNI 42 ARP reached VNI 43"
    );
    assert!(got43.is_empty(), "VNI 43's VM received {} frames", got43.len());
    // Our VM in 42 broadcasts (ARP) and pings: the kernel's vx43 receives nothing.
    assert!(s.vm_pings(42));
    assert_eq!(s.ns.k_stat("vx43", "rx_packets"), 0, "kernel vx43 got VNI 42 traffic");
    assert!(s.ns.k_stat("vx42", "rx_packets") > 0);
    // And the other way round, VNI 43 works on its own.
    assert!(s.kernel_pings(43));
    s.tshark_check(&[42, 43], false);
}

/// A network namespace of its own (the TAP "VM"), deleted on drop.
struct VmNs(String);

impl Drop for VmNs {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "netns", "del", &self.0]);
    }
}

/// The byte at offset `i` of the test stream.
fn stream_byte(i: usize) -> u8 {
    (i % 253) as u8
}

/// A TCP connection between the kernel's VXLAN device and a VM behind our VTEP — a TAP
/// (brick-nic) moved into its own namespace, so a real kernel stack — with default offloads
/// everywhere: the kernel sends its segments with the inner TCP checksum partial and as
/// super-frames over the veth, which the AF_PACKET brick hands over with the exact offsets
/// and GSO metadata, the VTEP decapsulates whole and the TAP gives the VM as they are. The
/// kernel sends `bytes`, the VM echoes them back, and both directions arrive byte for byte.
fn tcp_echo_with_the_kernel(v6: bool) {
    let Some(mut u) = underlay(v6, Flood::Static) else { return };
    u.kernel_vni(42, Flood::Static);
    let vm_ns = VmNs(u.ns.a.replacen("bvA", "bvV", 1));
    let tap_name = u.ns.veth_a.replacen("va", "vt", 1);
    sh(&["ip", "netns", "add", &vm_ns.0]);
    let big =
        PacketPool::new(PoolConfig { count: 512, data_room: 65_536 + 512, ..PoolConfig::default() }).unwrap();
    let name = tap_name.clone();
    let tap = spawn_in(&u.ns.a, move || {
        let tap =
            TapNic::create(&name, TapConfig { offloads: TapOffloads::ALL, ..TapConfig::default() }, big)
                .unwrap();
        tap.set_mac(vm_mac(42)).unwrap();
        tap
    })
    .join()
    .unwrap();
    sh(&["ip", "-n", &u.ns.a, "link", "set", &tap_name, "netns", &vm_ns.0]);
    sh(&["ip", "-n", &vm_ns.0, "addr", "add", "192.168.42.1/24", "dev", &tap_name]);
    sh(&["ip", "-n", &vm_ns.0, "link", "set", &tap_name, "up"]);
    let vm = u.g.add("vm42", Flipped::new(tap)).unwrap();
    u.attach(42, vm, Flood::Static);

    use std::io::{Read, Write};
    // The client connects only once the server listens: a SYN that comes first is refused.
    let (listening_tx, listening) = std::sync::mpsc::channel();
    let server = spawn_in(&vm_ns.0, move || {
        let l = std::net::TcpListener::bind("192.168.42.1:47001").unwrap();
        listening_tx.send(()).unwrap();
        let (mut c, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            c.write_all(&buf[..n]).unwrap();
        }
    });
    let bytes = 4 << 20;
    listening.recv_timeout(Duration::from_secs(10)).expect("the VM's server listens");
    let client = spawn_in(&u.ns.k, move || {
        let c = std::net::TcpStream::connect_timeout(
            &"192.168.42.1:47001".parse().unwrap(),
            Duration::from_secs(10),
        )
        .expect("the kernel connects to our VM");
        let mut w = c.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let data: Vec<u8> = (0..bytes).map(stream_byte).collect();
            w.write_all(&data).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        });
        let mut back = Vec::with_capacity(bytes);
        (&c).read_to_end(&mut back).unwrap();
        writer.join().unwrap();
        back
    });
    let (start, mut last_tick) = (Instant::now(), Instant::now());
    while !client.is_finished() && start.elapsed() < Duration::from_secs(90) {
        u.g.poll_all();
        if last_tick.elapsed() > Duration::from_millis(100) {
            u.g.tick_all();
            last_tick = Instant::now();
        }
    }
    let done = client.is_finished();
    assert!(done, "the transfer did not finish: {:?}", u.g.brick::<Vtep>(u.vtep).unwrap().counters());
    let back = client.join().unwrap();
    server.join().unwrap();
    assert_eq!(back.len(), bytes, "bytes echoed back");
    assert!(back.iter().enumerate().all(|(i, &b)| b == stream_byte(i)), "every byte, in order, both ways");
    let c = u.g.brick::<Vtep>(u.vtep).unwrap().counters();
    assert!(c.gso_rx > 0, "the kernel's super-frames were decapsulated whole: {c:?}");
    let Underlay { g, vtep, sent, kernel_ip, our_ip, ns, .. } = u;
    Setup { g, vtep, sent, vms: Vec::new(), kernel_ip, our_ip, ns }.tshark_check(&[42], v6);
}

#[test]
fn kernel_interop_tcp_both_ways_ipv4() {
    tcp_echo_with_the_kernel(false);
}

#[test]
fn kernel_interop_tcp_both_ways_ipv6() {
    tcp_echo_with_the_kernel(true);
}

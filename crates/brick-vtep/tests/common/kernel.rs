//! Kernel plumbing for the interop tests: network namespaces (removed on drop), brick-nic's
//! AF_PACKET brick bound to a veth inside a namespace, a recorder of what the VTEP sends,
//! and a tiny "VM" brick that answers ARP and ping and can ping a peer.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Output as ProcOutput};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brick_core::{Brick, Burst, Output, PacketPool, PoolConfig, PortId, Side};
use brick_nic::{AfPacketConfig, AfPacketNic};

static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, panicking with its output on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn try_sh(args: &[&str]) -> ProcOutput {
    Command::new(args[0]).args(&args[1..]).output().expect("spawn")
}

/// Two namespaces joined by a veth: ours ("A", where our VTEP's raw socket lives) and the
/// kernel's ("K"). Deleted, with everything inside, on drop.
pub struct Netns {
    pub a: String,
    pub k: String,
    pub veth_a: String,
    pub veth_k: String,
}

impl Netns {
    pub fn new(our_mac: [u8; 6]) -> Netns {
        let id = format!("{}{}", std::process::id() % 100_000, SEQ.fetch_add(1, Ordering::Relaxed));
        let n = Netns {
            a: format!("bvA{id}"),
            k: format!("bvK{id}"),
            veth_a: format!("va{id}"),
            veth_k: format!("vk{id}"),
        };
        sh(&["ip", "netns", "add", &n.a]);
        sh(&["ip", "netns", "add", &n.k]);
        sh(&[
            "ip", "link", "add", &n.veth_a, "netns", &n.a, "type", "veth", "peer", "name", &n.veth_k,
            "netns", &n.k,
        ]);
        let m = our_mac;
        let mac = format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
        n.in_a(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        n.in_a(&["ip", "link", "set", &n.veth_a, "address", &mac, "up"]);
        n.in_k(&["ip", "link", "set", "lo", "up"]);
        n.in_k(&["ip", "link", "set", &n.veth_k, "up"]);
        // The kernel keeps its default offloads: over the veth, its frames come with a
        // checksum left partial (CHECKSUM_PARTIAL: the inner TCP one, or the outer UDP one)
        // and TCP super-frames whole; the AF_PACKET brick reports both exactly.
        n
    }

    pub fn in_a(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.a];
        v.extend_from_slice(args);
        sh(&v)
    }

    pub fn in_k(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.k];
        v.extend_from_slice(args);
        sh(&v)
    }

    pub fn k_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.k]).args(args);
        c
    }

    /// A kernel counter of an interface in K.
    pub fn k_stat(&self, dev: &str, stat: &str) -> u64 {
        self.in_k(&["cat", &format!("/sys/class/net/{dev}/statistics/{stat}")]).trim().parse().unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "netns", "del", &self.a]);
        let _ = try_sh(&["ip", "netns", "del", &self.k]);
    }
}

/// Runs `f` on a new thread that has entered namespace `ns` (sockets and devices it creates
/// stay in that namespace after the thread ends).
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let file = File::open(format!("/var/run/netns/{ns}")).expect("netns file");
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// brick-nic's AF_PACKET brick on `ifname` inside namespace `ns` (the socket stays there),
/// with a big pool for the TCP super-frames a local kernel hands over whole.
pub fn afpacket_in(ns: &str, ifname: &str, pool: PacketPool) -> AfPacketNic {
    let ifname = ifname.to_string();
    let big = PacketPool::new(PoolConfig { count: 256, data_room: 65_536 + 512, ..PoolConfig::default() })
        .expect("big pool");
    spawn_in(ns, move || {
        AfPacketNic::open(&ifname, AfPacketConfig { low_latency: true, ..AfPacketConfig::default() }, pool)
            .expect("AF_PACKET socket")
            .with_big_pool(big)
    })
    .join()
    .expect("socket thread")
}

/// A pass-through brick between the underlay NIC (west) and the VTEP (east) that records
/// every frame the VTEP sends (for tshark).
pub struct Recorder {
    pub sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder { sent: Arc::default() }
    }
}

impl Brick for Recorder {
    fn kind(&self) -> &'static str {
        "test-recorder"
    }
    fn max_ports(&self, _side: Side) -> usize {
        1
    }
    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if side == Side::East {
            let mut sent = self.sent.lock().unwrap();
            sent.extend(pkts.iter().map(|p| p.data().to_vec()));
        }
        out.emit_all(side.opposite(), 0, pkts);
    }
}

/// A minimal IPv4 host on the VTEP's east side: answers ARP and ICMP echo for `ip`, and
/// pings `peer` when set. Everything it receives is recorded.
pub struct VmHost {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    peer: Option<Ipv4Addr>,
    peer_mac: Option<[u8; 6]>,
    pool: PacketPool,
    last: Instant,
    seq: u16,
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
    pub echo_replies: Arc<AtomicUsize>,
    pub echo_answered: Arc<AtomicUsize>,
}

impl VmHost {
    pub fn new(mac: [u8; 6], ip: Ipv4Addr, pool: PacketPool) -> Self {
        VmHost {
            mac,
            ip,
            peer: None,
            peer_mac: None,
            pool,
            last: Instant::now() - Duration::from_secs(10),
            seq: 0,
            received: Arc::default(),
            echo_replies: Arc::default(),
            echo_answered: Arc::default(),
        }
    }
    pub fn ping(&mut self, peer: Ipv4Addr) {
        self.peer = Some(peer);
    }
    fn emit(&self, out: &mut Output<'_>, bytes: &[u8]) {
        if let Some(p) = self.pool.alloc_from(bytes) {
            out.emit(Side::West, 0, p);
        }
    }
}

fn ip4(d: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(d[at], d[at + 1], d[at + 2], d[at + 3])
}

fn csum(d: &[u8]) -> u16 {
    brick_vtep::wire::checksum(d)
}

impl Brick for VmHost {
    fn kind(&self) -> &'static str {
        "test-vm"
    }
    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::West)
    }
    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        for p in pkts.drain() {
            let d = p.data().to_vec();
            self.received.lock().unwrap().push(d.clone());
            if d.len() < 42 {
                continue;
            }
            match u16::from_be_bytes([d[12], d[13]]) {
                0x0806 => {
                    let op = u16::from_be_bytes([d[20], d[21]]);
                    let (spa, tpa) = (ip4(&d, 28), ip4(&d, 38));
                    if op == 1 && tpa == self.ip {
                        let mut r = d.clone();
                        r[0..6].copy_from_slice(&d[22..28]);
                        r[6..12].copy_from_slice(&self.mac);
                        r[21] = 2;
                        r[22..28].copy_from_slice(&self.mac);
                        r[28..32].copy_from_slice(&self.ip.octets());
                        r[32..38].copy_from_slice(&d[22..28]);
                        r[38..42].copy_from_slice(&spa.octets());
                        self.emit(out, &r);
                    } else if op == 2 && Some(spa) == self.peer {
                        self.peer_mac = Some(d[22..28].try_into().unwrap());
                    }
                }
                0x0800 if d[23] == 1 && ip4(&d, 30) == self.ip => {
                    let ihl = usize::from(d[14] & 0xf) * 4;
                    let icmp = 14 + ihl;
                    if d.len() < icmp + 8 {
                        continue;
                    }
                    if d[icmp] == 8 {
                        let mut r = d.clone();
                        r[0..6].copy_from_slice(&d[6..12]);
                        r[6..12].copy_from_slice(&self.mac);
                        r[26..30].copy_from_slice(&d[30..34]);
                        r[30..34].copy_from_slice(&d[26..30]);
                        r[icmp] = 0;
                        r[icmp + 2] = 0;
                        r[icmp + 3] = 0;
                        let end = 14 + usize::from(u16::from_be_bytes([d[16], d[17]]));
                        let c = csum(&r[icmp..end.min(r.len())]);
                        r[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
                        self.echo_answered.fetch_add(1, Ordering::Relaxed);
                        self.emit(out, &r);
                    } else if d[icmp] == 0 {
                        self.echo_replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
    }
    fn is_source(&self) -> bool {
        true
    }
    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        let Some(peer) = self.peer else { return 0 };
        if self.last.elapsed() < Duration::from_millis(200) {
            return 0;
        }
        self.last = Instant::now();
        let mut f = Vec::new();
        match self.peer_mac {
            None => {
                f.extend_from_slice(&[0xff; 6]);
                f.extend_from_slice(&self.mac);
                f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
                f.extend_from_slice(&self.mac);
                f.extend_from_slice(&self.ip.octets());
                f.extend_from_slice(&[0; 6]);
                f.extend_from_slice(&peer.octets());
            }
            Some(pm) => {
                self.seq += 1;
                f.extend_from_slice(&pm);
                f.extend_from_slice(&self.mac);
                f.extend_from_slice(&[0x08, 0x00]);
                let mut ip = vec![0x45, 0, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0];
                ip.extend_from_slice(&self.ip.octets());
                ip.extend_from_slice(&peer.octets());
                let c = csum(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&ip);
                let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
                icmp.extend_from_slice(&self.seq.to_be_bytes());
                icmp.resize(64, 0x5a);
                let c = csum(&icmp);
                icmp[2..4].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&icmp);
            }
        }
        self.emit(out, &f);
        1
    }
}

/// Writes frames to a pcap file (Ethernet link type) for tshark.
pub fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let mut f = File::create(path).unwrap();
    // Classic pcap header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET.
    let mut h = Vec::new();
    h.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    for (i, fr) in frames.iter().enumerate() {
        h.extend_from_slice(&(i as u32).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        h.extend_from_slice(&(fr.len() as u32).to_le_bytes());
        h.extend_from_slice(fr);
    }
    f.write_all(&h).unwrap();
}

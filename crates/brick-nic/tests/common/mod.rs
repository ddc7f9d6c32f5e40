//! Helpers for tests against the kernel: network namespaces, veth pairs, raw sockets. Every
//! object has a unique name and is removed by a Drop guard, even when a test fails.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use brick_core::bricks::RxTx;
use brick_core::{BrickId, Burst, Graph, Side};
use std::sync::{Arc, Mutex};

/// Runs `ip` with `args`; panics with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `ip netns exec NS cmd...`, returns whether it succeeded.
pub fn ns_exec(ns: &str, cmd: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique name of at most 15 bytes: `prefix` + pid + counter.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{}{n}", std::process::id() % 100_000);
    assert!(name.len() <= 15, "{name} too long");
    name
}

/// A network namespace deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = unique("bnns");
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it creates stay in it).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().expect("netns thread")
    }

    /// Starts `f` on a thread that has entered this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let c = CString::new(path).unwrap();
            // SAFETY: open(2) of a NUL-terminated path.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            assert!(fd >= 0, "open netns");
            // SAFETY: the fd is ours.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: setns on this thread only, with a netns fd.
            assert_eq!(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A veth pair: `root` stays in the test's namespace, `peer` goes into `ns`. Both are up,
/// without IPv6 (no neighbour discovery noise). Deleted on drop.
pub struct Veth {
    pub root: String,
    pub peer: String,
}

impl Veth {
    pub fn new(ns: &Netns) -> Veth {
        let root = unique("bnva");
        let peer = unique("bnvb");
        ip(&["link", "add", &root, "type", "veth", "peer", "name", &peer]);
        let v = Veth { root, peer };
        disable_ipv6(None, &v.root);
        ip(&["link", "set", &v.peer, "netns", &ns.name]);
        disable_ipv6(Some(&ns.name), &v.peer);
        ip(&["link", "set", &v.root, "up"]);
        ip(&["-n", &ns.name, "link", "set", &v.peer, "up"]);
        v
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.root]).output();
    }
}

/// Turns IPv6 off on an interface (in `ns`, or here).
pub fn disable_ipv6(ns: Option<&str>, ifname: &str) {
    let key = format!("net.ipv6.conf.{ifname}.disable_ipv6=1");
    match ns {
        Some(ns) => {
            ns_exec(ns, &["sysctl", "-qw", &key]);
        }
        None => {
            let _ = Command::new("sysctl").args(["-qw", &key]).output();
        }
    }
}

/// A test EtherType (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;

/// A raw AF_PACKET socket bound to one interface and EtherType.
pub struct RawSock {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawSock {
    /// Opens a socket on `ifname` inside `ns` that sees only `ethertype` frames.
    pub fn open_in(ns: &Netns, ifname: &str, ethertype: u16) -> RawSock {
        let ifname = ifname.to_string();
        ns.run(move || RawSock::open_here(&ifname, ethertype))
    }

    pub fn open_here(ifname: &str, ethertype: u16) -> RawSock {
        let c = CString::new(ifname).unwrap();
        // SAFETY: NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        assert!(ifindex > 0, "no {ifname}");
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, ethertype.to_be() as i32)
        };
        assert!(fd >= 0);
        // SAFETY: fd is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: bind with a sockaddr_ll we own.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of_val(&sll) as u32,
            )
        };
        assert_eq!(rc, 0, "bind raw socket");
        let rcvbuf: libc::c_int = 8 << 20;
        // SAFETY: setsockopt with an int.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                4,
            )
        };
        RawSock { fd, ifindex }
    }

    /// Sends one frame; returns whether the kernel took it.
    pub fn send(&self, frame: &[u8]) -> bool {
        // SAFETY: send from a live slice.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        r == frame.len() as isize
    }

    /// Receives one frame, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
        if r <= 0 {
            return None;
        }
        let mut buf = vec![0u8; 70000];
        // SAFETY: recv into a live buffer of the stated size.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// A test frame: broadcast, `TEST_ETHERTYPE`, `len` bytes, payload derived from `seq`.
pub fn test_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(60)];
    f[..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&[0x02, 0xbb, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    f
}

/// Whether a frame carries `TEST_ETHERTYPE` (possibly behind one VLAN tag).
pub fn is_test_frame(f: &[u8]) -> bool {
    let et = |o: usize| f.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    et(12) == Some(TEST_ETHERTYPE) || (et(12) == Some(0x8100) && et(16) == Some(TEST_ETHERTYPE))
}

pub type Collected = Arc<Mutex<Vec<brick_core::Packet>>>;

/// Adds a collector on the east of `nic` that keeps test frames (other frames are freed).
pub fn collect_east_of(g: &mut Graph, nic: BrickId, name: &str) -> Collected {
    collect_east_of_matching(g, nic, name, is_test_frame)
}

/// Like [`collect_east_of`], keeping the frames `keep` accepts.
pub fn collect_east_of_matching(
    g: &mut Graph,
    nic: BrickId,
    name: &str,
    keep: fn(&[u8]) -> bool,
) -> Collected {
    let got: Collected = Arc::default();
    let g2 = Arc::clone(&got);
    let c = g
        .add(
            name,
            RxTx::new(
                Side::West,
                |_: &mut Burst| {},
                move |b: &mut Burst| {
                    let mut v = g2.lock().unwrap();
                    for p in b.drain() {
                        if keep(p.data()) {
                            v.push(p);
                        }
                    }
                },
            ),
        )
        .unwrap();
    g.link(nic, c).unwrap();
    got
}

/// Polls `g` until `done()` or `timeout`.
pub fn poll_until(g: &mut Graph, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        g.poll_all();
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    done()
}

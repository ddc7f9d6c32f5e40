//! Butterfly's scenario 27 (`27_reliable_sctp`) on real topology: two hosts in namespaces,
//! each running butterflyd on an AF_PACKET underlay, one TAP "VM" each in VNI 27, both NICs in
//! security group sg-1. SCTP between the VMs is blocked both ways while sg-1 is empty, passes
//! once sg-1 allows every protocol from 0.0.0.0/0, is blocked again once that rule is deleted,
//! and passes with a rule for protocol 132 alone.
//!
//! This kernel has no SCTP module, so the VMs speak SCTP through raw IPv4 sockets of protocol
//! 132 (the kernel writes the IP header): a small Python agent per VM sends the packets this
//! test builds (common header with a CRC32c checksum, INIT, INIT ACK, COOKIE ECHO, COOKIE ACK,
//! DATA and SACK chunks) and captures what arrives; the test compares every byte.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) and SCTP packets (RFC 9260).

fn crc32c(data: &[u8]) -> u32 {
    const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);
    CASTAGNOLI.checksum(data)
}

/// The checksum an SCTP packet must carry: CRC32c over the packet with the checksum field
/// zeroed, stored least significant byte first (RFC 9260, appendix A).
fn sctp_checksum(packet: &[u8]) -> [u8; 4] {
    let mut p = packet.to_vec();
    p[8..12].fill(0);
    crc32c(&p).to_le_bytes()
}

struct Chunk {
    ty: u8,
    flags: u8,
    value: Vec<u8>,
}

/// Common header then the chunks, each padded to 4 bytes, checksum filled in.
fn sctp_packet(sport: u16, dport: u16, vtag: u32, chunks: &[Chunk]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0; 4]);
    for c in chunks {
        p.push(c.ty);
        p.push(c.flags);
        p.extend_from_slice(&(4 + c.value.len() as u16).to_be_bytes());
        p.extend_from_slice(&c.value);
        while p.len() % 4 != 0 {
            p.push(0);
        }
    }
    let sum = sctp_checksum(&p);
    p[8..12].copy_from_slice(&sum);
    p
}

fn be(fields: &[u32]) -> Vec<u8> {
    fields.iter().flat_map(|f| f.to_be_bytes()).collect()
}

/// INIT (type 1) or INIT ACK (type 2): initiate tag, a_rwnd, 10 outbound / 10 inbound streams,
/// initial TSN, then the parameters.
fn init_chunk(ty: u8, tag: u32, tsn: u32, params: &[(u16, Vec<u8>)]) -> Chunk {
    let mut v = be(&[tag, 65_536, 10 << 16 | 10, tsn]);
    for (t, value) in params {
        v.extend_from_slice(&t.to_be_bytes());
        v.extend_from_slice(&(4 + value.len() as u16).to_be_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
    }
    Chunk { ty, flags: 0, value: v }
}

/// An unfragmented DATA chunk (B and E bits set) with payload protocol id 0x42.
fn data_chunk(tsn: u32, stream: u16, ssn: u16, payload: &[u8]) -> Chunk {
    let mut v = be(&[tsn, (stream as u32) << 16 | ssn as u32, 0x42]);
    v.extend_from_slice(payload);
    Chunk { ty: 0, flags: 0x03, value: v }
}

/// SACK: cumulative TSN ack, a_rwnd, no gap blocks, no duplicates.
fn sack_chunk(cum_tsn: u32) -> Chunk {
    Chunk { ty: 3, flags: 0, value: be(&[cum_tsn, 65_536, 0]) }
}

/// Known payload bytes (a linear congruential sequence) of `len` bytes.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as u8
        })
        .collect()
}

/// One SCTP association's packets, in order, each with the VM (0 = A, 1 = B) that sends it:
/// the four-way handshake opened by `opener`, DATA of several sizes (1,400 bytes the largest,
/// two chunks bundled in one packet) each way, and SACKs.
fn association(opener: usize, port: [u16; 2], seed: u32) -> Vec<(usize, Vec<u8>)> {
    let (o, p) = (opener, 1 - opener);
    let tag = [0x1000_0000 ^ seed, 0x2000_0000 ^ seed.rotate_left(8)];
    let tsn = [seed.wrapping_mul(7), seed.wrapping_mul(13)];
    let pkt = |from: usize, chunks: &[Chunk]| {
        let vtag = tag[1 - from];
        (from, sctp_packet(port[from], port[1 - from], vtag, chunks))
    };
    let ipv4_only = (12u16, 5u16.to_be_bytes().to_vec()); // Supported Address Types: IPv4
    let cookie = payload(36, seed ^ 0xc00c1e);
    let mut v = vec![
        // INIT travels with verification tag 0.
        (
            o,
            sctp_packet(
                port[o],
                port[p],
                0,
                &[init_chunk(1, tag[o], tsn[o], std::slice::from_ref(&ipv4_only))],
            ),
        ),
        pkt(p, &[init_chunk(2, tag[p], tsn[p], &[(7, cookie.clone()), ipv4_only])]),
        pkt(o, &[Chunk { ty: 10, flags: 0, value: cookie }]),
        pkt(p, &[Chunk { ty: 11, flags: 0, value: Vec::new() }]),
    ];
    for (side, sizes) in [(o, &[1usize, 200, 1400][..]), (p, &[1400, 33][..])] {
        let mut t = tsn[side];
        for (i, &n) in sizes.iter().enumerate() {
            v.push(pkt(side, &[data_chunk(t, 0, i as u16, &payload(n, seed.wrapping_add(t)))]));
            t = t.wrapping_add(1);
        }
        // Two chunks in one packet (on another stream), lengths that need padding.
        v.push(pkt(
            side,
            &[
                data_chunk(t, 1, 0, &payload(3, seed ^ t)),
                data_chunk(t.wrapping_add(1), 1, 1, &payload(517, t)),
            ],
        ));
        t = t.wrapping_add(2);
        v.push(pkt(1 - side, &[sack_chunk(t.wrapping_sub(1))]));
    }
    v
}

#[test]
fn crc32c_matches_known_values() {
    // RFC 3720 (iSCSI), appendix B.4, and the classic check value.
    assert_eq!(crc32c(&[0; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xff; 32]), 0x62A8_AB43);
    assert_eq!(crc32c(&(0..32).collect::<Vec<u8>>()), 0x46DD_794E);
    assert_eq!(crc32c(&(0..32).rev().collect::<Vec<u8>>()), 0x113F_DB5C);
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

// ---------------------------------------------------------------------------------------------
// The agent in each VM: a raw IPv4 socket of protocol 132.

/// Reads commands on stdin: `send HEX` sends one SCTP packet to the peer (the kernel adds the
/// IP header); `wait N MS` waits until N packets from the peer arrived or MS milliseconds
/// passed, prints `got K` then K lines `IPHEADER_HEX SCTP_HEX` and forgets them; `clear`
/// forgets what arrived so far.
const AGENT: &str = r#"
import socket, sys, threading, time
peer = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
got = []
cv = threading.Condition()
def rx():
    while True:
        d, a = s.recvfrom(65535)
        if a[0] != peer:
            continue
        ihl = (d[0] & 15) * 4
        with cv:
            got.append(d[:ihl].hex() + ' ' + d[ihl:].hex())
            cv.notify_all()
threading.Thread(target=rx, daemon=True).start()
print('ready', flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd:
        continue
    if cmd[0] == 'send':
        s.sendto(bytes.fromhex(cmd[1]), (peer, 0))
        print('sent', flush=True)
    elif cmd[0] == 'clear':
        with cv:
            got.clear()
        print('cleared', flush=True)
    elif cmd[0] == 'wait':
        n, end = int(cmd[1]), time.monotonic() + int(cmd[2]) / 1000
        with cv:
            while len(got) < n and end > time.monotonic():
                cv.wait(end - time.monotonic())
            out = got[:n]
            del got[:n]
        print('got', len(out), flush=True)
        for o in out:
            print(o, flush=True)
"#;

struct Agent {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    addr: [u8; 4],
}

impl Agent {
    fn start(name: &'static str, ns: &str, addr: [u8; 4], peer: [u8; 4]) -> Agent {
        let peer_s = peer.map(|b| b.to_string()).join(".");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-u", "-c", AGENT, &peer_s])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut a = Agent { name, child, stdin, lines, addr };
        assert_eq!(a.line(Duration::from_secs(20)), "ready", "agent {name}");
        a
    }

    fn line(&mut self, within: Duration) -> String {
        match self.lines.recv_timeout(within) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => panic!("agent {} silent for {within:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("agent {} exited: {:?}", self.name, self.child.try_wait())
            }
        }
    }

    fn cmd(&mut self, c: &str, reply: &str) {
        writeln!(self.stdin, "{c}").unwrap();
        let l = self.line(Duration::from_secs(20));
        assert_eq!(l, reply, "agent {} after {}", self.name, &c[..c.len().min(20)]);
    }

    fn send(&mut self, sctp: &[u8]) {
        let mut c = String::from("send ");
        for b in sctp {
            c.push_str(&format!("{b:02x}"));
        }
        self.cmd(&c, "sent");
    }

    /// Up to `n` packets from the peer, waiting at most `within`: (IP header, SCTP packet).
    fn wait(&mut self, n: usize, within: Duration) -> Vec<(Vec<u8>, Vec<u8>)> {
        writeln!(self.stdin, "wait {n} {}", within.as_millis()).unwrap();
        let head = self.line(within + Duration::from_secs(20));
        let k: usize = head.strip_prefix("got ").and_then(|k| k.parse().ok()).expect(&head);
        (0..k)
            .map(|_| {
                let l = self.line(Duration::from_secs(20));
                let (ip, sctp) = l.split_once(' ').expect(&l);
                (unhex(ip), unhex(sctp))
            })
            .collect()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// The checks.

/// How long an expected packet may take (the first one waits for ARP).
const ARRIVES_WITHIN: Duration = Duration::from_secs(10);
/// How long nothing must arrive for a packet to count as blocked.
const BLOCKED_FOR: Duration = Duration::from_millis(1500);

/// Sends `packets` in order, each from its VM, and requires each to reach the other VM byte
/// for byte: same SCTP header and chunks, a valid CRC32c, in an IPv4 packet of protocol 132
/// from the sender's address to the receiver's, of the right length.
fn exchange(vm: &mut [Agent; 2], packets: &[(usize, Vec<u8>)], what: &str) {
    for v in vm.iter_mut() {
        v.cmd("clear", "cleared");
    }
    for (i, (from, pkt)) in packets.iter().enumerate() {
        let to = 1 - from;
        vm[*from].send(pkt);
        let got = vm[to].wait(1, ARRIVES_WITHIN);
        let (fname, tname) = (vm[*from].name, vm[to].name);
        assert_eq!(
            got.len(),
            1,
            "{what}: packet {i} ({} bytes) {fname} -> {tname} did not arrive",
            pkt.len()
        );
        let (ip, sctp) = &got[0];
        assert_eq!(ip[9], 132, "{what}: packet {i}: IP protocol");
        assert_eq!(ip[12..16], vm[*from].addr, "{what}: packet {i}: source address");
        assert_eq!(ip[16..20], vm[to].addr, "{what}: packet {i}: destination address");
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            ip.len() + pkt.len(),
            "{what}: packet {i}: length"
        );
        assert_eq!(sctp, pkt, "{what}: packet {i} {fname} -> {tname} changed on the way");
        assert_eq!(sctp[8..12], sctp_checksum(sctp), "{what}: packet {i}: CRC32c");
    }
}

/// The firewall of NIC `nic` on `d`: packets dropped because no rule let them in.
fn fw_blocked(d: &Daemon, nic: &str) -> u64 {
    let status = d.ok(&["status"]);
    let node = status
        .lines()
        .find(|l| l.contains(&format!("{{fw-{nic}|")))
        .unwrap_or_else(|| panic!("no firewall brick for {nic}: {status}"));
    node.split("drop blocked by default policy: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .map_or(0, |n| n.parse().unwrap())
}

/// The opening INIT of a new association each way (fresh ports, so neither is a reply to
/// anything the firewalls saw) must not arrive, and each receiver's firewall counts its drop.
fn blocked_both_ways(t: &Topology, vm: &mut [Agent; 2], nics: &[String; 2], base: u16, what: &str) {
    for v in vm.iter_mut() {
        v.cmd("clear", "cleared");
    }
    for from in 0..2 {
        let to = 1 - from;
        let before = fw_blocked(&t.h[to], &nics[to]);
        let port = [base + from as u16, base + 100 + from as u16];
        let init = &association(from, port, base as u32 * 31 + from as u32)[0].1;
        vm[from].send(init);
        // The drop is counted once the packet reached the firewall (the first one waits for
        // ARP): poll, bounded.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut after = fw_blocked(&t.h[to], &nics[to]);
        while after <= before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            after = fw_blocked(&t.h[to], &nics[to]);
        }
        assert!(after > before, "{what}: {}'s firewall counted the drop ({before} -> {after})", nics[to]);
        let got = vm[to].wait(1, BLOCKED_FOR);
        assert!(got.is_empty(), "{what}: SCTP INIT {} -> {} must be blocked", vm[from].name, vm[to].name);
    }
}

#[test]
fn scenario_27_reliable_sctp() {
    let t0 = Instant::now();
    let mut t = two_hosts(false);
    let tag = t.tag % 10_000;
    for d in &t.h {
        d.ok(&["sg", "add", "sg-1"]);
    }
    let ns_a = t.vm_with(0, "xa", 27, Some("10.27.0.1"), "52:54:00:27:00:01", &["--sg", "sg-1"]);
    let ns_b = t.vm_with(1, "xb", 27, Some("10.27.0.2"), "52:54:00:27:00:02", &["--sg", "sg-1"]);
    let nics = [format!("xa{tag}"), format!("xb{tag}")];
    let (ip_a, ip_b) = ([10, 27, 0, 1], [10, 27, 0, 2]);
    // Declared after the topology: the agents stop before the namespaces go.
    let mut vm = [Agent::start("A", &ns_a, ip_a, ip_b), Agent::start("B", &ns_b, ip_b, ip_a)];
    let started = Instant::now();
    eprintln!("topology and agents ready after {:?}", t0.elapsed());

    // sg-1 empty: nothing gets in either way.
    blocked_both_ways(&t, &mut vm, &nics, 5000, "sg-1 empty");
    eprintln!("sg-1 empty checked after {:?}", started.elapsed());

    // All open (protocol -1 from 0.0.0.0/0): an association opened by A, then one by B, cross
    // byte for byte; the NIC trace on B's side shows what a real SCTP decoder makes of them.
    let all = ["--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"];
    for d in &t.h {
        d.ok(&[&["sg", "rule", "add", "sg-1"][..], &all[..]].concat());
    }
    let pcap = std::env::temp_dir().join(format!("bf-sctp-{}.pcap", t.tag));
    let pcap_s = pcap.display().to_string();
    t.h[1].ok(&["nic", "update", "--id", &nics[1], "--packet-trace", "true", "--trace-path", &pcap_s]);
    let by_a = association(0, [5010, 5110], 1);
    exchange(&mut vm, &by_a, "all open, association opened by A");
    t.h[1].ok(&["nic", "update", "--id", &nics[1], "--packet-trace", "false"]);
    exchange(&mut vm, &association(1, [5020, 5120], 2), "all open, association opened by B");
    let decoded = sh(&[
        "tshark",
        "-r",
        &pcap_s,
        "-o",
        "sctp.checksum:CRC-32c",
        "-Y",
        "sctp && !icmp",
        "-T",
        "fields",
        "-e",
        "sctp.checksum.status",
        "-e",
        "sctp.chunk_type",
    ]);
    let _ = std::fs::remove_file(&pcap);
    let rows: Vec<&str> = decoded.lines().collect();
    let chunk_types: Vec<String> =
        rows.iter().map(|r| r.split('\t').nth(1).unwrap_or("").to_string()).collect();
    let expected: Vec<String> = by_a
        .iter()
        .map(|(_, p)| {
            let mut types = Vec::new();
            let mut at = 12;
            while at < p.len() {
                types.push(p[at].to_string());
                at += (u16::from_be_bytes([p[at + 2], p[at + 3]]) as usize).div_ceil(4) * 4;
            }
            types.join(",")
        })
        .collect();
    assert_eq!(chunk_types, expected, "tshark decodes the traced association:\n{decoded}");
    assert!(
        rows.iter().all(|r| r.split('\t').next() == Some("1")),
        "tshark finds every CRC32c good:\n{decoded}"
    );

    eprintln!("all open checked after {:?}", started.elapsed());

    // The rule deleted: blocked again.
    for d in &t.h {
        d.ok(&[&["sg", "rule", "del", "sg-1"][..], &all[..]].concat());
    }
    blocked_both_ways(&t, &mut vm, &nics, 5030, "rule deleted");
    eprintln!("rule deleted checked after {:?}", started.elapsed());

    // Protocol 132 alone from 0.0.0.0/0: SCTP crosses both ways, ICMP stays out.
    for d in &t.h {
        d.ok(&["sg", "rule", "add", "sg-1", "--dir", "in", "--ip-proto", "132", "--cidr", "0.0.0.0/0"]);
    }
    exchange(&mut vm, &association(0, [5040, 5140], 3), "protocol 132 allowed, opened by A");
    exchange(&mut vm, &association(1, [5050, 5150], 4), "protocol 132 allowed, opened by B");
    let (ok, out) = ping(&ns_a, "10.27.0.2", "1");
    assert!(!ok, "a rule for protocol 132 does not let ICMP in:\n{out}");
    eprintln!("scenario 27 checks took {:?}", started.elapsed());
}

//! The sniffer's pcap output, read back by the pcap-file crate and, when installed (the
//! project's setup script installs it), by tshark.

use std::fs::File;
use std::process::Command;

use brick_core::bricks::{Nop, Sniffer, SnifferDirection};
use brick_core::{Burst, Graph, PacketPool, Side};
use pcap_file::pcap::PcapReader;

fn frame(i: u8) -> Vec<u8> {
    // A minimal Ethernet + IPv4 + UDP frame, so tshark has something to dissect.
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    let payload_len = 8 + 4;
    let total = 20 + payload_len as u16;
    let mut ip =
        vec![0x45, 0, (total >> 8) as u8, total as u8, 0, i, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    let mut sum: u32 = ip.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]]) as u32).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    ip[10] = (csum >> 8) as u8;
    ip[11] = csum as u8;
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, payload_len, 0, 0]);
    f.extend_from_slice(&[i, i, i, i]);
    f
}

#[test]
fn every_packet_is_recorded_and_readable() {
    let dir = std::env::temp_dir().join(format!("brick-core-sniffer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.pcap");
    let pool = PacketPool::with_count(256).unwrap();
    let mut g = Graph::new("sniff");
    let s = g.add("sniffer", Sniffer::to_file(&path, SnifferDirection::Both).unwrap()).unwrap();
    let n = g.add("nop", Nop).unwrap();
    g.link(s, n).unwrap();
    let frames: Vec<Vec<u8>> = (0..100u8).map(frame).collect();
    for chunk in frames.chunks(32) {
        let mut b = Burst::new();
        for f in chunk {
            b.push(pool.alloc_from(f).unwrap()).unwrap();
        }
        g.inject(s, Side::West, 0, &mut b).unwrap();
    }
    assert_eq!(g.brick::<Sniffer>(s).unwrap().written(), 100);
    g.remove(s).unwrap(); // dropping the sniffer flushes the file

    let mut reader = PcapReader::new(File::open(&path).unwrap()).unwrap();
    let mut read = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        read.push(pkt.unwrap().data.into_owned());
    }
    assert_eq!(read, frames, "every packet, byte for byte, in order");

    let tshark =
        Command::new("tshark").args(["-r"]).arg(&path).args(["-T", "fields", "-e", "udp.dstport"]).output();
    match tshark {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert_eq!(text.lines().filter(|l| l.trim() == "53").count(), 100, "tshark output: {text}");
        }
        Ok(out) => panic!("tshark failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!("tshark is missing ({e}): run scripts/setup.sh"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn direction_filter_records_one_way_only() {
    let pool = PacketPool::with_count(8).unwrap();
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut g = Graph::new("sniff");
    let s = g
        .add("s", Sniffer::new(Shared(std::sync::Arc::clone(&buf)), SnifferDirection::EastToWest).unwrap())
        .unwrap();
    let mut b = Burst::new();
    b.push(pool.alloc_from(&frame(1)).unwrap()).unwrap();
    g.inject(s, Side::West, 0, &mut b).unwrap();
    b.push(pool.alloc_from(&frame(2)).unwrap()).unwrap();
    g.inject(s, Side::East, 0, &mut b).unwrap();
    assert_eq!(g.brick::<Sniffer>(s).unwrap().written(), 1);
    let bytes = buf.lock().unwrap().clone();
    let mut reader = PcapReader::new(&bytes[..]).unwrap();
    let only = reader.next_packet().unwrap().unwrap();
    assert_eq!(only.data.as_ref(), frame(2).as_slice());
    assert!(reader.next_packet().is_none());
}

/// A symbolic link at the trace path is refused and its target left untouched (a root daemon
/// tracing to a predictable name in /tmp must not truncate whatever the link points to).
#[test]
fn a_symlink_at_the_trace_path_is_refused() {
    let dir = std::env::temp_dir().join(format!("brick-core-sniffer-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.join("trace.pcap");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(Sniffer::to_file(&link, SnifferDirection::Both).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // An existing regular file is truncated and reused, as before.
    let plain = dir.join("plain.pcap");
    std::fs::write(&plain, vec![7u8; 100]).unwrap();
    drop(Sniffer::to_file(&plain, SnifferDirection::Both).unwrap());
    assert_eq!(std::fs::metadata(&plain).unwrap().len(), 24, "a fresh pcap header only");
    std::fs::remove_dir_all(&dir).unwrap();
}

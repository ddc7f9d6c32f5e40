use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::{Brick, Burst, Output, PortId, Side, Timestamp};

/// Which packets a [`Sniffer`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SnifferDirection {
    /// Both directions.
    #[default]
    Both,
    /// Only packets arriving on the west side (going east).
    WestToEast,
    /// Only packets arriving on the east side (going west).
    EastToWest,
}

/// A two-port brick that forwards everything and records a copy of each packet in a pcap
/// file that tcpdump, tshark and Wireshark read. Writes are buffered and flushed at each
/// tick; a write error is counted, never fatal to traffic.
pub struct Sniffer {
    out: Box<dyn Write + Send>,
    direction: SnifferDirection,
    written: u64,
    write_errors: u64,
}

/// Largest packet recorded whole (GSO super-frames are up to 64 KiB).
const SNAPLEN: u32 = 262_144;

impl Sniffer {
    /// A sniffer writing pcap to `out`.
    pub fn new(out: impl Write + Send + 'static, direction: SnifferDirection) -> io::Result<Self> {
        let mut out: Box<dyn Write + Send> = Box::new(out);
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        header.write_to(&mut out).map_err(io::Error::other)?;
        Ok(Sniffer { out, direction, written: 0, write_errors: 0 })
    }

    /// A sniffer writing to the file at `path` (created or truncated). A symbolic link at
    /// `path` is refused: a daemon running as root must not be led to truncate the file it
    /// points to (trace paths are often in world-writable directories such as /tmp).
    pub fn to_file(path: impl AsRef<Path>, direction: SnifferDirection) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Self::new(BufWriter::with_capacity(256 * 1024, file), direction)
    }

    /// Packets recorded.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Packets that could not be recorded.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// Flushes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn records(&self, side: Side) -> bool {
        match self.direction {
            SnifferDirection::Both => true,
            SnifferDirection::WestToEast => side == Side::West,
            SnifferDirection::EastToWest => side == Side::East,
        }
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

impl Brick for Sniffer {
    fn kind(&self) -> &'static str {
        "sniffer"
    }

    fn max_ports(&self, _side: Side) -> usize {
        1
    }

    fn process(&mut self, side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        if self.records(side) {
            let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            for p in pkts.iter() {
                match write_record(&mut self.out, ts, p.data()) {
                    Ok(()) => self.written += 1,
                    Err(_) => self.write_errors += 1,
                }
            }
        }
        out.emit_all(side.opposite(), 0, pkts);
    }

    fn tick(&mut self, _now: Timestamp) {
        if self.flush().is_err() {
            self.write_errors += 1;
        }
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("recorded:{} errors:{}", self.written, self.write_errors)]
    }
}

/// One pcap record: the 16-byte little-endian record header, then the (possibly cut) data.
fn write_record(out: &mut dyn Write, ts: std::time::Duration, data: &[u8]) -> io::Result<()> {
    let incl = data.len().min(SNAPLEN as usize);
    let mut hdr = [0u8; 16];
    hdr[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
    hdr[4..8].copy_from_slice(&ts.subsec_nanos().to_le_bytes());
    hdr[8..12].copy_from_slice(&(incl as u32).to_le_bytes());
    hdr[12..16].copy_from_slice(&(data.len() as u32).to_le_bytes());
    out.write_all(&hdr)?;
    out.write_all(&data[..incl])
}

//! pcap bricks: [`PcapSource`] replays a capture file into a graph, [`PcapSink`] records
//! what reaches it. Both use the classic pcap format (libpcap, tcpdump, tshark, Wireshark),
//! Ethernet link type.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use brick_core::{Brick, Burst, Output, PacketPool, PortId, Side, Timestamp, BURST_SIZE};
use pcap_file::pcap::{PcapHeader, PcapParser};
use pcap_file::{DataLink, Endianness, TsResolution};

use crate::counters::*;
use crate::offload::guess_l2_l3;
use crate::NicError;

/// Largest capture file a [`PcapSource`] loads (it keeps the whole file in memory so that
/// replaying, and looping, never allocates or reads the disk).
pub const MAX_CAPTURE_BYTES: u64 = 1 << 30;

/// Snap length written in the header of recorded files (GSO super-frames fit whole).
pub const SINK_SNAPLEN: u32 = 262_144;

/// How many times a [`PcapSource`] plays its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PcapLoop {
    /// Once.
    #[default]
    Once,
    /// This many times in total (0 plays nothing).
    Times(u32),
    /// Until the brick is removed.
    Forever,
}

/// Configuration of a [`PcapSource`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PcapSourceConfig {
    /// Packets per second; `None` replays as fast as the graph polls (64 per poll).
    pub rate_pps: Option<u64>,
    /// How many passes over the file.
    pub loops: PcapLoop,
    /// Record packets transmitted through the brick into this file; `None` discards them
    /// (counted as transmitted, like a null device).
    pub tx_capture: Option<PathBuf>,
}

/// Writes records into a pcap stream; write failures are counted by the caller.
struct Recorder {
    out: BufWriter<File>,
}

impl Recorder {
    fn create(path: &Path) -> Result<Recorder, NicError> {
        let err = |msg: String| NicError::Pcap { path: path.to_path_buf(), msg };
        let file = File::create(path).map_err(|e| err(e.to_string()))?;
        let header = PcapHeader {
            snaplen: SINK_SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        header.write_to(&mut out).map_err(|e| err(e.to_string()))?;
        Ok(Recorder { out })
    }

    /// One record in the header's (native) byte order. Written by hand because
    /// `pcap_file::PcapWriter` cannot flush its inner writer without being consumed.
    fn write(&mut self, ts: Duration, data: &[u8]) -> bool {
        let incl = data.len().min(SINK_SNAPLEN as usize);
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&(ts.as_secs() as u32).to_ne_bytes());
        hdr[4..8].copy_from_slice(&ts.subsec_nanos().to_ne_bytes());
        hdr[8..12].copy_from_slice(&(incl as u32).to_ne_bytes());
        hdr[12..16].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        self.out.write_all(&hdr).is_ok() && self.out.write_all(&data[..incl]).is_ok()
    }

    fn flush(&mut self) -> bool {
        self.out.flush().is_ok()
    }
}

fn wall_clock() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Replays a pcap file into a graph, on port 0 of its east side, like a NIC receiving it.
///
/// The file is read into memory once; replay copies each record into a pool packet. Records
/// longer than the pool's data room are dropped as "too big"; records cut short by the
/// capture's snap length as "rx truncated"; a corrupt record ends the pass ("rx error").
/// With `rate_pps`, a token bucket (at most one burst of credit) paces the replay. Packets
/// that reach the brick are recorded into `tx_capture`, or discarded.
pub struct PcapSource {
    path: PathBuf,
    data: Vec<u8>,
    parser: PcapParser,
    records_start: usize,
    pos: usize,
    cfg: PcapSourceConfig,
    pool: PacketPool,
    counters: Arc<NicCounters>,
    passes_done: u32,
    done: bool,
    credit: f64,
    last: Option<Timestamp>,
    tx: Option<Recorder>,
}

impl PcapSource {
    /// Loads the capture at `path`. Fails on a missing or unreadable file, a file that is not
    /// classic pcap, or a link type other than Ethernet.
    pub fn open(
        path: impl AsRef<Path>,
        cfg: PcapSourceConfig,
        pool: PacketPool,
    ) -> Result<PcapSource, NicError> {
        let path = path.as_ref().to_path_buf();
        let err = |msg: String| NicError::Pcap { path: path.clone(), msg };
        let meta = std::fs::metadata(&path).map_err(|e| err(e.to_string()))?;
        if meta.len() > MAX_CAPTURE_BYTES {
            return Err(err(format!("{} bytes is above the {MAX_CAPTURE_BYTES}-byte limit", meta.len())));
        }
        let data = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
        Self::from_bytes_at(path.clone(), data, cfg, pool)
    }

    /// A source replaying an in-memory capture (the bytes of a pcap file).
    pub fn from_bytes(
        data: Vec<u8>,
        cfg: PcapSourceConfig,
        pool: PacketPool,
    ) -> Result<PcapSource, NicError> {
        Self::from_bytes_at(PathBuf::from("<memory>"), data, cfg, pool)
    }

    fn from_bytes_at(
        path: PathBuf,
        data: Vec<u8>,
        cfg: PcapSourceConfig,
        pool: PacketPool,
    ) -> Result<PcapSource, NicError> {
        let err = |msg: String| NicError::Pcap { path: path.clone(), msg };
        let (rest, parser) = PcapParser::new(&data).map_err(|e| err(format!("not a pcap file: {e}")))?;
        let dl = parser.header().datalink;
        if dl != DataLink::ETHERNET {
            return Err(err(format!("link type {dl:?} is not Ethernet")));
        }
        if cfg.rate_pps == Some(0) {
            return Err(NicError::Config("rate_pps must be above 0".into()));
        }
        let records_start = data.len() - rest.len();
        let tx = match &cfg.tx_capture {
            Some(p) => Some(Recorder::create(p)?),
            None => None,
        };
        let done = cfg.loops == PcapLoop::Times(0);
        Ok(PcapSource {
            path,
            data,
            parser,
            records_start,
            pos: records_start,
            cfg,
            pool,
            counters: NicCounters::new_shared(),
            passes_done: 0,
            done,
            credit: 0.0,
            last: None,
            tx,
        })
    }

    /// The file replayed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The brick's counters.
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether every pass is over.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Completed passes over the file.
    pub fn passes(&self) -> u32 {
        self.passes_done
    }

    /// Changes the replay rate live (`None`: as fast as polled).
    pub fn set_rate(&mut self, rate_pps: Option<u64>) {
        self.cfg.rate_pps = rate_pps.filter(|&r| r > 0);
        self.credit = 0.0;
        self.last = None;
    }

    /// Starts over from the first record, with the pass count reset.
    pub fn rewind(&mut self) {
        self.pos = self.records_start;
        self.passes_done = 0;
        self.done = self.cfg.loops == PcapLoop::Times(0);
    }

    /// How many packets the rate allows now.
    fn budget(&mut self, now: Timestamp) -> usize {
        let Some(rate) = self.cfg.rate_pps else { return BURST_SIZE };
        let last = *self.last.get_or_insert(now);
        let elapsed = now.saturating_since(last).as_secs_f64();
        self.last = Some(now);
        self.credit = (self.credit + elapsed * rate as f64).min(BURST_SIZE as f64);
        self.credit.max(0.0) as usize
    }

    fn end_pass(&mut self) {
        self.passes_done = self.passes_done.saturating_add(1);
        self.pos = self.records_start;
        self.done = match self.cfg.loops {
            PcapLoop::Once => true,
            PcapLoop::Times(n) => self.passes_done >= n,
            PcapLoop::Forever => false,
        };
    }
}

impl Brick for PcapSource {
    fn kind(&self) -> &'static str {
        "pcap-source"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == Side::East)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let ts = if self.tx.is_some() { wall_clock() } else { Duration::ZERO };
        for pkt in pkts.drain() {
            if let Some(rec) = self.tx.as_mut() {
                if !rec.write(ts, pkt.data()) {
                    drop_pkt(&self.counters, out, pkt, NicDrop::TxError);
                    continue;
                }
            }
            self.counters.tx_packets.add(1);
            self.counters.tx_bytes.add(pkt.len() as u64);
        }
    }

    fn is_source(&self) -> bool {
        true
    }

    fn poll(&mut self, out: &mut Output<'_>) -> usize {
        if self.done {
            return 0;
        }
        let budget = self.budget(out.now());
        let mut n = 0;
        let mut empty_pass = true;
        while n < budget && !self.done {
            if self.pos >= self.data.len() {
                if empty_pass && self.pos == self.records_start {
                    // A file without records: nothing to loop over.
                    self.done = true;
                    break;
                }
                self.end_pass();
                empty_pass = true;
                continue;
            }
            let rec = self.parser.next_raw_packet(&self.data[self.pos..]);
            let (rest_len, incl_len, orig_len) = match rec {
                Ok((rest, raw)) => (rest.len(), raw.incl_len as usize, raw.orig_len as usize),
                Err(_) => {
                    // Corrupt or cut record: the rest of the file is unusable for this pass.
                    count_drop(&self.counters, out, NicDrop::RxError, 1);
                    if self.pos == self.records_start {
                        self.done = true;
                        break;
                    }
                    self.pos = self.data.len();
                    continue;
                }
            };
            let start = self.data.len() - rest_len - incl_len;
            self.pos = self.data.len() - rest_len;
            empty_pass = false;
            n += 1;
            if incl_len < orig_len {
                count_drop(&self.counters, out, NicDrop::RxTruncated, 1);
                continue;
            }
            let frame = &self.data[start..start + incl_len];
            if frame.len() > self.pool.data_room() {
                count_drop(&self.counters, out, NicDrop::TooBig, 1);
                continue;
            }
            let Some(mut pkt) = self.pool.alloc_from(frame) else {
                count_drop(&self.counters, out, NicDrop::RxPoolEmpty, 1);
                continue;
            };
            let mut meta = *pkt.meta();
            guess_l2_l3(pkt.data(), &mut meta);
            *pkt.meta_mut() = meta;
            self.counters.rx_packets.add(1);
            self.counters.rx_bytes.add(incl_len as u64);
            out.emit(Side::East, 0, pkt);
        }
        if self.cfg.rate_pps.is_some() {
            self.credit -= n as f64;
        }
        n
    }

    fn tick(&mut self, _now: Timestamp) {
        if let Some(rec) = self.tx.as_mut() {
            if !rec.flush() {
                self.counters.tx_errors.add(1);
            }
        }
    }

    fn describe(&self) -> Vec<String> {
        let s = self.counters.snapshot();
        vec![format!(
            "file:{} passes:{} rx:{}p tx:{}p",
            self.path.display(),
            self.passes_done,
            s.rx_packets,
            s.tx_packets
        )]
    }
}

/// Records every packet that reaches it into a pcap file, then frees it: an endpoint (to
/// observe traffic while forwarding it, use `brick_core::bricks::Sniffer`).
///
/// Its single port is on the side given at creation (west by default: it ends a chain).
/// Writes are buffered and flushed at each tick and when the brick is dropped; a failed
/// write is dropped as "tx error".
pub struct PcapSink {
    path: PathBuf,
    side: Side,
    rec: Recorder,
    counters: Arc<NicCounters>,
}

impl PcapSink {
    /// Creates (or truncates) `path`; the brick's port is on its west side.
    pub fn create(path: impl AsRef<Path>) -> Result<PcapSink, NicError> {
        Self::create_on(path, Side::West)
    }

    /// Creates (or truncates) `path`, with the brick's port on `side`.
    pub fn create_on(path: impl AsRef<Path>, side: Side) -> Result<PcapSink, NicError> {
        let path = path.as_ref().to_path_buf();
        let rec = Recorder::create(&path)?;
        Ok(PcapSink { path, side, rec, counters: NicCounters::new_shared() })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The brick's counters (`tx_packets` = packets recorded).
    pub fn counters(&self) -> Arc<NicCounters> {
        Arc::clone(&self.counters)
    }

    /// Writes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), NicError> {
        if self.rec.flush() {
            Ok(())
        } else {
            Err(NicError::Pcap { path: self.path.clone(), msg: "flush failed".into() })
        }
    }
}

impl Brick for PcapSink {
    fn kind(&self) -> &'static str {
        "pcap-sink"
    }

    fn drop_reasons(&self) -> &'static [&'static str] {
        DROP_REASONS
    }

    fn max_ports(&self, side: Side) -> usize {
        usize::from(side == self.side)
    }

    fn process(&mut self, _side: Side, _port: PortId, pkts: &mut Burst, out: &mut Output<'_>) {
        let ts = wall_clock();
        for pkt in pkts.drain() {
            if self.rec.write(ts, pkt.data()) {
                self.counters.tx_packets.add(1);
                self.counters.tx_bytes.add(pkt.len() as u64);
            } else {
                drop_pkt(&self.counters, out, pkt, NicDrop::TxError);
            }
        }
    }

    fn tick(&mut self, _now: Timestamp) {
        if !self.rec.flush() {
            self.counters.tx_errors.add(1);
        }
    }

    fn describe(&self) -> Vec<String> {
        vec![format!("file:{} recorded:{}", self.path.display(), self.counters.tx_packets.get())]
    }
}

impl Drop for PcapSink {
    fn drop(&mut self) {
        let _ = self.rec.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_core::bricks::RxTx;
    use brick_core::{Graph, Packet};
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("brick-nic-{}-{}", std::process::id(), name))
    }

    /// A pcap file image with the given records (incl_len, orig_len, data).
    fn pcap_bytes(records: &[(&[u8], u32)], snaplen: u32, linktype: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&snaplen.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        for (i, (data, orig)) in records.iter().enumerate() {
            v.extend_from_slice(&(i as u32).to_le_bytes());
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&orig.to_le_bytes());
            v.extend_from_slice(data);
        }
        v
    }

    type Seen = Arc<Mutex<Vec<Vec<u8>>>>;

    fn graph_with(src: PcapSource) -> (Graph, Seen, Arc<NicCounters>) {
        let seen: Seen = Arc::default();
        let s2 = Arc::clone(&seen);
        let counters = src.counters();
        let mut g = Graph::new("pcap-test");
        let a = g.add("src", src).unwrap();
        let b = g
            .add(
                "sink",
                RxTx::new(
                    Side::West,
                    |_: &mut Burst| {},
                    move |b: &mut Burst| {
                        for p in b.drain() {
                            s2.lock().unwrap().push(p.data().to_vec());
                        }
                    },
                ),
            )
            .unwrap();
        g.link(a, b).unwrap();
        (g, seen, counters)
    }

    #[test]
    fn replays_loops_and_counts() {
        let f1 = vec![1u8; 60];
        let f2 = vec![2u8; 100];
        let cut = vec![3u8; 20];
        let bytes = pcap_bytes(&[(&f1, 60), (&cut, 80), (&f2, 100)], 65535, 1);
        let pool = PacketPool::with_count(64).unwrap();
        let cfg = PcapSourceConfig { loops: PcapLoop::Times(3), ..Default::default() };
        let src = PcapSource::from_bytes(bytes, cfg, pool.clone()).unwrap();
        let (mut g, seen, c) = graph_with(src);
        for _ in 0..5 {
            g.poll_all();
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[0], f1);
        assert_eq!(seen[1], f2);
        assert_eq!(seen[5], f2);
        let s = c.snapshot();
        assert_eq!((s.rx_packets, s.rx_truncated, s.rx_bytes), (6, 3, 480));
        let id = g.id_of("src").unwrap();
        assert!(g.brick::<PcapSource>(id).unwrap().is_done());
        assert_eq!(g.brick::<PcapSource>(id).unwrap().passes(), 3);
        assert_eq!(g.stats(id).unwrap().drops_of("rx truncated"), Some(3));
        assert_eq!(pool.available(), 64);
    }

    #[test]
    fn too_big_and_corrupt_records_are_counted() {
        let big = vec![9u8; 3000];
        let mut bytes = pcap_bytes(&[(&[1u8; 64], 64), (&big, 3000)], 65535, 1);
        // A record header announcing more bytes than the file holds.
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 1, 2]);
        let pool = PacketPool::with_count(8).unwrap();
        let src = PcapSource::from_bytes(bytes, PcapSourceConfig::default(), pool).unwrap();
        let (mut g, seen, c) = graph_with(src);
        g.poll_all();
        g.poll_all();
        assert_eq!(seen.lock().unwrap().len(), 1);
        let s = c.snapshot();
        assert_eq!((s.too_big, s.rx_errors), (1, 1));
    }

    #[test]
    fn rate_limits_replay() {
        let f = vec![5u8; 60];
        let recs: Vec<(&[u8], u32)> = (0..1000).map(|_| (f.as_slice(), 60)).collect();
        let pool = PacketPool::with_count(128).unwrap();
        let cfg = PcapSourceConfig { rate_pps: Some(2000), ..Default::default() };
        let src = PcapSource::from_bytes(pcap_bytes(&recs, 65535, 1), cfg, pool).unwrap();
        let (mut g, seen, _) = graph_with(src);
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_millis(100) {
            g.poll_all();
            std::thread::sleep(Duration::from_micros(200));
        }
        let n = seen.lock().unwrap().len();
        // 2000 pps for 0.1 s = 200, plus at most one burst of credit; scheduling jitter only
        // lowers it.
        assert!((100..=200 + BURST_SIZE).contains(&n), "replayed {n}");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let pool = PacketPool::with_count(4).unwrap();
        let e =
            PcapSource::open("/nonexistent/x.pcap", PcapSourceConfig::default(), pool.clone()).err().unwrap();
        assert!(matches!(e, NicError::Pcap { .. }), "{e}");
        let e = PcapSource::from_bytes(b"garbage".to_vec(), PcapSourceConfig::default(), pool.clone())
            .err()
            .unwrap();
        assert!(e.to_string().contains("not a pcap"), "{e}");
        let e =
            PcapSource::from_bytes(pcap_bytes(&[], 65535, 101), PcapSourceConfig::default(), pool.clone())
                .err()
                .unwrap();
        assert!(e.to_string().contains("not Ethernet"), "{e}");
        let cfg = PcapSourceConfig { rate_pps: Some(0), ..Default::default() };
        assert!(matches!(
            PcapSource::from_bytes(pcap_bytes(&[], 65535, 1), cfg, pool.clone()),
            Err(NicError::Config(_))
        ));
        assert!(PcapSink::create("/nonexistent/dir/out.pcap").is_err());
        // An empty capture looped forever finishes instead of spinning.
        let cfg = PcapSourceConfig { loops: PcapLoop::Forever, ..Default::default() };
        let src = PcapSource::from_bytes(pcap_bytes(&[], 65535, 1), cfg, pool).unwrap();
        let (mut g, seen, _) = graph_with(src);
        g.poll_all();
        assert!(seen.lock().unwrap().is_empty());
        assert!(g.brick::<PcapSource>(g.id_of("src").unwrap()).unwrap().is_done());
    }

    #[test]
    fn sink_records_and_source_replays_it() {
        let path = tmp("sink.pcap");
        let frames: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 60 + i as usize]).collect();
        {
            let mut g = Graph::new("rec");
            let sink = PcapSink::create(&path).unwrap();
            let sc = sink.counters();
            let frames2 = frames.clone();
            let sent = Arc::new(AtomicUsize::new(0));
            let s2 = Arc::clone(&sent);
            let src = g
                .add(
                    "gen",
                    RxTx::new(
                        Side::East,
                        move |b: &mut Burst| {
                            while !b.is_full() && s2.load(Ordering::Relaxed) < frames2.len() {
                                let i = s2.fetch_add(1, Ordering::Relaxed);
                                let _ = b.push(Packet::from_slice(&frames2[i]));
                            }
                        },
                        |b: &mut Burst| b.clear(),
                    ),
                )
                .unwrap();
            let k = g.add("sink", sink).unwrap();
            g.link(src, k).unwrap();
            g.poll_all();
            g.poll_all();
            assert_eq!(sc.tx_packets.get(), 100);
        }
        let pool = PacketPool::with_count(128).unwrap();
        let src = PcapSource::open(&path, PcapSourceConfig::default(), pool).unwrap();
        let (mut g, seen, _) = graph_with(src);
        g.poll_all();
        g.poll_all();
        assert_eq!(*seen.lock().unwrap(), frames);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn source_records_what_it_transmits() {
        let path = tmp("tx.pcap");
        let pool = PacketPool::with_count(8).unwrap();
        let cfg = PcapSourceConfig { tx_capture: Some(path.clone()), ..Default::default() };
        let src = PcapSource::from_bytes(pcap_bytes(&[], 65535, 1), cfg, pool).unwrap();
        let c = src.counters();
        let mut g = Graph::new("tx");
        let id = g.add("src", src).unwrap();
        let mut b = Burst::new();
        b.push(Packet::from_slice(&[0xab; 70])).unwrap();
        g.inject(id, Side::East, 0, &mut b).unwrap();
        g.tick_all();
        assert_eq!(c.tx_packets.get(), 1);
        drop(g);
        let back =
            PcapSource::open(&path, PcapSourceConfig::default(), PacketPool::with_count(4).unwrap()).unwrap();
        let (mut g, seen, _) = graph_with(back);
        g.poll_all();
        assert_eq!(*seen.lock().unwrap(), vec![vec![0xab; 70]]);
        let _ = std::fs::remove_file(&path);
    }

    proptest! {
        #[test]
        fn random_files_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = pcap_bytes(&[], 65535, 1);
            bytes.extend_from_slice(&body);
            let pool = PacketPool::with_count(16).unwrap();
            let cfg = PcapSourceConfig { loops: PcapLoop::Times(2), ..Default::default() };
            let src = PcapSource::from_bytes(bytes, cfg, pool.clone()).unwrap();
            let (mut g, _seen, _) = graph_with(src);
            for _ in 0..20 { g.poll_all(); }
            let _ = PcapSource::from_bytes(body, PcapSourceConfig::default(), pool);
        }
    }
}

//! The hand-over file: what a stopping butterflyd leaves to the next one besides its
//! configuration, so that a graceful restart keeps every established connection.
//!
//! On SIGTERM (or `app_quit`) the daemon exports the connection table of every NIC's firewall
//! (brick-firewall's versioned `BFCT` bytes) and writes them here, beside the state file;
//! the next start imports each NIC's table into its new firewall before the NIC joins the
//! data plane, then removes the file. The file is untrusted input for the next process (it
//! may be from another version, truncated by a full disk, or damaged): [`Handover::decode`] checks everything and fails
//! with a typed [`HandoverError`], and the daemon then starts clean, with a log line.
//!
//! Format, version 1, little-endian:
//!
//! ```text
//! "BFHO"  version u16 (1)  flags u16 (0)  saved_at u64 (ms since the Unix epoch, wall clock)
//! count u32, then count × { id_len u16, id (UTF-8, 1..=65535 bytes, no '/' or NUL, each id
//! once), table_len u32, table (a connection-table export, checked when imported) }
//! crc32 u32 (IEEE) of every byte before it
//! ```
//!
//! The wall-clock time of the save lets the next start count the time the daemon was down
//! against each connection's remaining lifetime.

use std::collections::HashSet;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// File magic.
pub const MAGIC: &[u8; 4] = b"BFHO";
/// Format version this daemon writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the sections.
const HEADER: usize = 20;
/// Largest file accepted (and written): 1 GiB, 256 NICs' worth of full 65,536-entry tables.
pub const MAX_BYTES: u64 = 1 << 30;

/// Why a hand-over file cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file (or its temporary name).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// More bytes than [`MAX_BYTES`].
    #[error("{0} bytes, more than the {MAX_BYTES} a hand-over file may hold")]
    TooLarge(u64),
    /// Not a hand-over file.
    #[error("not a hand-over file (bad magic)")]
    BadMagic,
    /// Written by a butterflyd with another format version.
    #[error("format version {0}, this butterflyd reads version {VERSION}")]
    Version(u16),
    /// Flags this version does not know.
    #[error("unknown flags {0:#06x}")]
    Flags(u16),
    /// Shorter than its header and checksum, or than what a section announces.
    #[error("truncated: {got} bytes, at least {needed} expected")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes there.
        got: u64,
    },
    /// The checksum does not match: the file is damaged.
    #[error("checksum mismatch (the file is damaged)")]
    Checksum,
    /// A section's NIC id is empty, not UTF-8, or holds '/' or NUL.
    #[error("section {0}: invalid NIC id")]
    BadId(usize),
    /// Two sections name the same NIC.
    #[error("NIC {0:?} appears twice")]
    DuplicateId(String),
    /// Bytes follow the last section.
    #[error("{0} unexpected bytes after the last section")]
    Trailing(usize),
}

/// What a stopping daemon hands over: each NIC's connection-table export.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handover {
    /// Wall-clock time of the save, milliseconds since the Unix epoch.
    pub saved_at_ms: u64,
    /// (NIC id, connection-table export), each id once.
    pub tables: Vec<(String, Vec<u8>)>,
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`).
pub fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= usize::from(u16::MAX) && !id.contains(['/', '\0'])
}

/// The wall clock, in milliseconds since the Unix epoch (0 if it is before).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

impl Handover {
    /// The bytes of the file. Tables of NICs whose id cannot be written (see the format) are
    /// left out; so is anything past [`MAX_BYTES`] (the next start then picks those NICs'
    /// connections up mid-stream, as after a crash).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER + 4 + self.tables.iter().map(|(i, t)| 6 + i.len() + t.len()).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.saved_at_ms.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut count: u32 = 0;
        let mut seen = HashSet::new();
        for (id, table) in &self.tables {
            let size = (out.len() + 6 + id.len() + table.len() + 4) as u64;
            if !valid_id(id) || table.len() > u32::MAX as usize || size > MAX_BYTES || !seen.insert(id) {
                continue;
            }
            out.extend_from_slice(&(id.len() as u16).to_le_bytes());
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&(table.len() as u32).to_le_bytes());
            out.extend_from_slice(table);
            count += 1;
        }
        out[16..20].copy_from_slice(&count.to_le_bytes());
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a file's bytes: header, version, checksum, every section, each NIC
    /// once, nothing after. The tables themselves are checked when imported.
    pub fn decode(bytes: &[u8]) -> Result<Handover, HandoverError> {
        let got = bytes.len() as u64;
        if got > MAX_BYTES {
            return Err(HandoverError::TooLarge(got));
        }
        let m = bytes.len().min(MAGIC.len());
        if bytes[..m] != MAGIC[..m] {
            return Err(HandoverError::BadMagic);
        }
        if bytes.len() < HEADER + 4 {
            return Err(HandoverError::Truncated { needed: (HEADER + 4) as u64, got });
        }
        let u16at = |a: usize| u16::from_le_bytes([bytes[a], bytes[a + 1]]);
        let u32at = |a: usize| u32::from_le_bytes([bytes[a], bytes[a + 1], bytes[a + 2], bytes[a + 3]]);
        let version = u16at(4);
        if version != VERSION {
            return Err(HandoverError::Version(version));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        if crc32(body) != u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) {
            return Err(HandoverError::Checksum);
        }
        let flags = u16at(6);
        if flags != 0 {
            return Err(HandoverError::Flags(flags));
        }
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&bytes[8..16]);
        let saved_at_ms = u64::from_le_bytes(ms);
        let count = u32at(16) as usize;
        let mut at = HEADER;
        let end = body.len();
        let need = |at: usize, n: usize| -> Result<(), HandoverError> {
            if end - at < n {
                return Err(HandoverError::Truncated { needed: (at + n + 4) as u64, got });
            }
            Ok(())
        };
        // Each section takes at least 7 bytes: a hostile count cannot reserve much.
        let mut tables = Vec::with_capacity(count.min((end - at) / 7));
        let mut seen = HashSet::new();
        for index in 0..count {
            need(at, 2)?;
            let id_len = usize::from(u16at(at));
            at += 2;
            need(at, id_len)?;
            let id = std::str::from_utf8(&bytes[at..at + id_len])
                .ok()
                .filter(|id| valid_id(id))
                .ok_or(HandoverError::BadId(index))?;
            at += id_len;
            need(at, 4)?;
            let len = u32at(at) as usize;
            at += 4;
            need(at, len)?;
            if !seen.insert(id) {
                return Err(HandoverError::DuplicateId(id.to_string()));
            }
            tables.push((id.to_string(), bytes[at..at + len].to_vec()));
            at += len;
        }
        if at != end {
            return Err(HandoverError::Trailing(end - at));
        }
        Ok(Handover { saved_at_ms, tables })
    }

    /// Writes the file at `path`: to a temporary name first, flushed to disk, then renamed,
    /// so a crash leaves the old file or the new one, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), HandoverError> {
        let bytes = self.encode();
        let tmp = path.with_extension("handover.tmp");
        let write = |p: &Path, e: io::Error| HandoverError::Write { path: p.to_path_buf(), source: e };
        let mut f = std::fs::File::create(&tmp).map_err(|e| write(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| write(&tmp, e))?;
        f.sync_all().map_err(|e| write(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| write(path, e))
    }

    /// Reads and decodes the file at `path`; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Handover>, HandoverError> {
        use std::io::Read as _;
        let read = |e: io::Error| HandoverError::Read { path: path.to_path_buf(), source: e };
        let f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read(e)),
        };
        let size = f.metadata().map_err(read)?.len();
        if size > MAX_BYTES {
            return Err(HandoverError::TooLarge(size));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // The size is checked again while reading (the file could grow meanwhile).
        f.take(MAX_BYTES + 1).read_to_end(&mut bytes).map_err(read)?;
        Handover::decode(&bytes).map(Some)
    }

    /// How long before `now_ms` (wall clock) the file was saved; zero if in the future.
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.saved_at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handover {
        Handover {
            saved_at_ms: 1_700_000_000_123,
            tables: vec![("vm1".into(), b"BFCT-ish bytes".to_vec()), ("vm2".into(), Vec::new())],
        }
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trip_and_file() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(Handover::decode(&bytes).unwrap(), h);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("butterflyd.handover");
        assert!(Handover::load(&path).unwrap().is_none());
        h.save(&path).unwrap();
        assert_eq!(Handover::load(&path).unwrap(), Some(h.clone()));
        assert_eq!(h.age_ms(h.saved_at_ms + 1500), 1500);
        assert_eq!(h.age_ms(0), 0);
    }

    /// Every kind of damage is a typed error, never a panic or a wrong result.
    #[test]
    fn damaged_files_are_refused_with_the_reason() {
        let good = sample().encode();
        let with_crc = |mut b: Vec<u8>| {
            let n = b.len() - 4;
            let crc = crc32(&b[..n]);
            b[n..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        // Every truncation.
        for n in 0..good.len() {
            let e = Handover::decode(&good[..n]).unwrap_err();
            assert!(matches!(e, HandoverError::Truncated { .. } | HandoverError::Checksum), "{n} bytes: {e}");
        }
        // Every single-bit flip.
        for i in 0..good.len() * 8 {
            let mut b = good.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(Handover::decode(&b).is_err(), "bit {i} flipped went unnoticed");
        }
        let mut v = good.clone();
        v[4] = 2;
        assert!(matches!(Handover::decode(&v), Err(HandoverError::Version(2))));
        assert!(Handover::decode(&with_crc(v)).unwrap_err().to_string().contains("format version 2"));
        let mut f = good.clone();
        f[6] = 1;
        assert!(matches!(Handover::decode(&with_crc(f)), Err(HandoverError::Flags(1))));
        assert!(matches!(Handover::decode(b"{\"json\": 1}"), Err(HandoverError::BadMagic)));
        // A count larger than the sections, or smaller (trailing bytes).
        let mut c = good.clone();
        c[16] = 3;
        assert!(matches!(Handover::decode(&with_crc(c)), Err(HandoverError::Truncated { .. })));
        let mut c = good.clone();
        c[16] = 1;
        assert!(matches!(Handover::decode(&with_crc(c)), Err(HandoverError::Trailing(_))));
        // A hostile count of 4 billion sections reserves nothing and fails.
        let mut c = good.clone();
        c[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Handover::decode(&with_crc(c)), Err(HandoverError::Truncated { .. })));
        // Bad and duplicate ids.
        let dup = Handover { tables: vec![("a".into(), vec![1]), ("b".into(), vec![2])], ..sample() };
        let mut d = dup.encode();
        let at = d.iter().rposition(|&b| b == b'b').unwrap();
        d[at] = b'a';
        assert!(
            matches!(Handover::decode(&with_crc(d.clone())), Err(HandoverError::DuplicateId(i)) if i == "a")
        );
        d[at] = b'/';
        assert!(matches!(Handover::decode(&with_crc(d)), Err(HandoverError::BadId(1))));
        // Ids that cannot be written are left out on save, not written broken.
        let odd = Handover {
            tables: vec![("".into(), vec![]), ("a/b".into(), vec![]), ("ok".into(), vec![])],
            ..sample()
        };
        assert_eq!(Handover::decode(&odd.encode()).unwrap().tables, vec![("ok".to_string(), Vec::new())]);
    }
}

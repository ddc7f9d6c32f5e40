//! Moving a connection table between processes: the export format, export to bytes,
//! decode, import, and why an import is refused ([`ImportError`]).

use super::*;

/// Export format magic.
pub const EXPORT_MAGIC: &[u8; 4] = b"BFCT";
/// Export format version.
pub const EXPORT_VERSION: u16 = 1;
pub(super) const HEADER: usize = 12;
pub(super) const RECORD: usize = 64;

/// Why an exported table could not be imported. Nothing is imported, and the table is
/// unchanged, on error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The bytes do not start with the export magic.
    #[error("not a connection table export (bad magic)")]
    BadMagic,
    /// Exported by a newer or unknown format version.
    #[error("unsupported export version {0}")]
    Version(u16),
    /// The header announces records of another size than this version's.
    #[error("unsupported record size {0} (version {EXPORT_VERSION} records are {RECORD} bytes)")]
    RecordSize(u16),
    /// Shorter than a header, or than the records its header announces.
    #[error("export truncated: {got} bytes, {needed} expected")]
    Truncated {
        /// Bytes the header (or a header) needs.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// Bytes follow the records the header announces.
    #[error("export has trailing bytes after its records")]
    Length,
    /// A record is invalid.
    #[error("record {0} is invalid")]
    Record(usize),
    /// A record's connection has none of the addresses the import was meant for as an
    /// endpoint: most likely the export of another VM's NIC.
    #[error(
        "record {record} ({endpoints}) has none of the expected addresses as an endpoint \
         (an export of another NIC?)"
    )]
    Foreign {
        /// The record's index.
        record: usize,
        /// Its two endpoints, for the message.
        endpoints: String,
    },
    /// The records do not fit in the table.
    #[error("import needs {needed} free entries, {free} available")]
    Full {
        /// Entries to import.
        needed: usize,
        /// Free entries.
        free: usize,
    },
}

impl ConnTable {
    /// Serialises the live, unexpired connections (deadlines as remaining milliseconds, so
    /// the bytes can move to another process or host). Format: `BFCT`, version `u16`, record
    /// size `u16`, count `u32`, then one 64-byte little-endian record per connection.
    pub fn export(&self, now: u64) -> Vec<u8> {
        let ids: Vec<u32> =
            self.ids().into_iter().filter(|&i| self.slots[i as usize].expires > now).collect();
        let mut out = Vec::with_capacity(HEADER + RECORD * ids.len());
        out.extend_from_slice(EXPORT_MAGIC);
        out.extend_from_slice(&EXPORT_VERSION.to_le_bytes());
        out.extend_from_slice(&(RECORD as u16).to_le_bytes());
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            let c = &self.slots[id as usize];
            let mut r = [0u8; RECORD];
            r[0] = c.key.v6 as u8;
            r[1] = c.key.proto;
            r[2] = c.origin as u8;
            r[3] = c.origin_lo as u8
                | (c.seen[0] as u8) << 1
                | (c.seen[1] as u8) << 2
                | (c.fin[0] as u8) << 3
                | (c.fin[1] as u8) << 4;
            r[4] = c.state as u8;
            r[5] = c.wscale[0];
            r[6] = c.wscale[1];
            r[8..24].copy_from_slice(&c.key.lo.to_le_bytes());
            r[24..40].copy_from_slice(&c.key.hi.to_le_bytes());
            r[40..42].copy_from_slice(&c.key.lo_port.to_le_bytes());
            r[42..44].copy_from_slice(&c.key.hi_port.to_le_bytes());
            let ms = ((c.expires - now) / 1_000_000).min(u32::MAX as u64) as u32;
            r[44..48].copy_from_slice(&ms.to_le_bytes());
            r[48..52].copy_from_slice(&c.seq_end[0].to_le_bytes());
            r[52..56].copy_from_slice(&c.seq_end[1].to_le_bytes());
            r[56..60].copy_from_slice(&c.max_win[0].to_le_bytes());
            r[60..64].copy_from_slice(&c.max_win[1].to_le_bytes());
            out.extend_from_slice(&r);
        }
        out
    }

    /// Checks an export's header and length; returns its records.
    fn records(bytes: &[u8]) -> Result<std::slice::ChunksExact<'_, u8>, ImportError> {
        let m = bytes.len().min(EXPORT_MAGIC.len());
        if bytes[..m] != EXPORT_MAGIC[..m] {
            return Err(ImportError::BadMagic);
        }
        if bytes.len() < HEADER {
            return Err(ImportError::Truncated { needed: HEADER, got: bytes.len() });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != EXPORT_VERSION {
            return Err(ImportError::Version(version));
        }
        let size = u16::from_le_bytes([bytes[6], bytes[7]]);
        if usize::from(size) != RECORD {
            return Err(ImportError::RecordSize(size));
        }
        let count = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let needed = count.checked_mul(RECORD).and_then(|n| n.checked_add(HEADER)).unwrap_or(usize::MAX);
        if bytes.len() < needed {
            return Err(ImportError::Truncated { needed, got: bytes.len() });
        }
        if bytes.len() > needed {
            return Err(ImportError::Length);
        }
        Ok(bytes[HEADER..].chunks_exact(RECORD))
    }

    /// Decodes record `n` (`RECORD` bytes), with its deadline counted from `now`.
    fn decode_record(r: &[u8], n: usize, now: u64) -> Result<Conn, ImportError> {
        let bad = || ImportError::Record(n);
        if r.len() != RECORD {
            return Err(bad());
        }
        let u16at = |a: usize| u16::from_le_bytes([r[a], r[a + 1]]);
        let u32at = |a: usize| u32::from_le_bytes([r[a], r[a + 1], r[a + 2], r[a + 3]]);
        let u128at = |a: usize| {
            let mut b = [0u8; 16];
            b.copy_from_slice(&r[a..a + 16]);
            u128::from_le_bytes(b)
        };
        if r[0] > 1 || r[2] > 1 || r[3] >> 5 != 0 || r[7] != 0 {
            return Err(bad());
        }
        let v6 = r[0] == 1;
        let state = ConnState::from_u8(r[4]).ok_or_else(bad)?;
        if !state.fits(r[1]) {
            return Err(bad());
        }
        for s in [r[5], r[6]] {
            if s > 14 && s != WSCALE_NONE {
                return Err(bad());
            }
        }
        let key = FlowKey {
            lo: u128at(8),
            hi: u128at(24),
            lo_port: u16at(40),
            hi_port: u16at(42),
            proto: r[1],
            v6,
        };
        if (!v6 && (key.lo > u32::MAX as u128 || key.hi > u32::MAX as u128))
            || (key.lo, key.lo_port) > (key.hi, key.hi_port)
        {
            return Err(bad());
        }
        let f = r[3];
        Ok(Conn {
            key,
            origin: if r[2] == 0 { Direction::In } else { Direction::Out },
            origin_lo: f & 1 != 0,
            state,
            expires: now.saturating_add(u32at(44) as u64 * 1_000_000),
            seq_end: [u32at(48), u32at(52)],
            max_win: [u32at(56), u32at(60)],
            wscale: [r[5], r[6]],
            seen: [f & 2 != 0, f & 4 != 0],
            fin: [f & 8 != 0, f & 16 != 0],
            live: true,
            wheel_prev: NONE,
            wheel_next: NONE,
            wheel_slot: 0,
        })
    }

    /// Decodes an [`export`](Self::export) into connections (validating every record), their
    /// deadlines counted from `now`. Memory grows with the input; [`import_bytes`](Self::import_bytes)
    /// (Self::import_bytes) needs none.
    pub fn decode(bytes: &[u8], now: u64) -> Result<Vec<Conn>, ImportError> {
        Self::records(bytes)?.enumerate().map(|(n, r)| Self::decode_record(r, n, now)).collect()
    }

    /// Inserts decoded connections for which `keep` is true, replacing entries with the same
    /// key. All or nothing: fails without change if they do not fit. Returns how many were
    /// imported.
    pub fn import(
        &mut self,
        conns: Vec<Conn>,
        now: u64,
        mut keep: impl FnMut(&Conn) -> bool,
    ) -> Result<usize, ImportError> {
        let conns: Vec<Conn> = conns.into_iter().filter(|c| keep(c)).collect();
        self.check_room(conns.len(), conns.iter().filter(|c| self.find(&c.key).is_some()).count())?;
        let mut imported = 0;
        for c in conns {
            imported += usize::from(self.replace(c, now));
        }
        Ok(imported)
    }

    /// Imports an [`export`](Self::export) straight from its bytes, deadlines counted from
    /// `now`: checks the header and every record, counts the connections `keep` accepts,
    /// and only if they all fit inserts them, replacing entries with the same key. All or
    /// nothing: on error (bad magic, version or record size; truncated; trailing bytes; an
    /// invalid record; too many for the table's free entries) the table is unchanged.
    /// Allocates nothing besides the table's own storage, whatever the size of the input.
    /// `keep` sees each record twice (check, then insert) and must answer alike. Returns how
    /// many were imported.
    pub fn import_bytes(
        &mut self,
        bytes: &[u8],
        now: u64,
        mut keep: impl FnMut(&Conn) -> bool,
    ) -> Result<usize, ImportError> {
        self.import_bytes_checked(bytes, now, |_, c| Ok(keep(c))).map(|(imported, _)| imported)
    }

    /// [`import_bytes`](Self::import_bytes) with a check that may refuse the whole import:
    /// `check(n, conn)` says whether record `n` is to be imported (`Ok(true)`), skipped
    /// (`Ok(false)`), or makes the import fail (`Err`, nothing changes). It sees each record
    /// twice and must answer alike. Returns how many records were imported and how many
    /// there were.
    pub fn import_bytes_checked(
        &mut self,
        bytes: &[u8],
        now: u64,
        mut check: impl FnMut(usize, &Conn) -> Result<bool, ImportError>,
    ) -> Result<(usize, usize), ImportError> {
        let records = Self::records(bytes)?;
        let total = records.len();
        let (mut needed, mut replaced) = (0, 0);
        for (n, r) in records.clone().enumerate() {
            let c = Self::decode_record(r, n, now)?;
            if check(n, &c)? {
                needed += 1;
                replaced += usize::from(self.find(&c.key).is_some());
            }
        }
        self.check_room(needed, replaced)?;
        let mut imported = 0;
        for (n, r) in records.enumerate() {
            // Checked above: every record decodes and passes.
            if let Ok(c) = Self::decode_record(r, n, now) {
                if matches!(check(n, &c), Ok(true)) && self.replace(c, now) {
                    imported += 1;
                }
            }
        }
        Ok((imported, total))
    }

    /// Whether `needed` connections, `replaced` of which have a key already here, fit.
    fn check_room(&self, needed: usize, replaced: usize) -> Result<(), ImportError> {
        // Each replacement frees the entry it replaces first; a key given twice takes one
        // entry but counts twice in `needed`, so this errs on the safe side.
        let free = self.max - self.len + replaced;
        if needed > free {
            return Err(ImportError::Full { needed, free });
        }
        Ok(())
    }

    /// Inserts `c`, replacing the entry with the same key; false if the table is full.
    fn replace(&mut self, c: Conn, now: u64) -> bool {
        if let Some(old) = self.find(&c.key) {
            self.remove(old);
        }
        self.insert(c, now).is_ok()
    }
}

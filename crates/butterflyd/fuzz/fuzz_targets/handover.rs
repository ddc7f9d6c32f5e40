//! The hand-over file a stopping butterflyd leaves to the next start (the connection
//! tables of its NICs): the next process reads it as untrusted input. Decoding arbitrary
//! bytes never panics; what decodes encodes back to the same bytes; and importing each
//! NIC's table, as the daemon does, never panics and keeps the table within its bound.
#![no_main]

// The daemon's own module, compiled here as is (butterflyd is a binary crate).
#[path = "../../src/handover.rs"]
#[allow(dead_code)]
mod handover;

use brick_firewall::{ConnTable, Timestamp};
use handover::Handover;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(h) = Handover::decode(data) else { return };
    assert_eq!(h.encode(), data, "a file that decodes encodes back to the same bytes");
    let _ = h.age_ms(NOW / 1_000_000);
    for (_, table) in &h.tables {
        let mut t = ConnTable::new(64);
        let now = Timestamp(NOW).as_nanos().saturating_sub(h.age_ms(NOW / 1_000_000) * 1_000_000);
        if t.import_bytes(table, now, |_| true).is_ok() {
            assert!(t.len() <= t.max());
        }
    }
});

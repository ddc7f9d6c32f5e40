//! Connection-table imports (the `nic_export` blob of another host or process, so hostile):
//! decoding and importing arbitrary bytes never panics; a refused import changes nothing; an
//! accepted one keeps the table within its size, and what it holds exports to bytes that
//! import again to the same table.
#![no_main]
use brick_firewall::conntrack::Conn;
use brick_firewall::wire::Flow;
use brick_firewall::{ConnTable, Direction, Timeouts};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_000_000_000_000;

fuzz_target!(|data: &[u8]| {
    // First byte: table size (1..=64) and how many entries it already holds; the rest is
    // the blob.
    let Some((&ctl, blob)) = data.split_first() else { return };
    let max = usize::from(ctl % 64) + 1;
    let mut table = ConnTable::new(max);
    let t = Timeouts::default();
    for i in 0..usize::from(ctl >> 6).min(max) {
        let f = Flow { proto: 17, src: 1, dst: 2 + i as u128, sport: 1000, dport: 53, ..Flow::default() };
        table.insert(Conn::new(&f, Direction::Out, NOW, &t), NOW).expect("room for the seed entries");
    }
    let before = table.export(NOW);
    // A ruleset-like filter: answers from the record alone.
    let keep = |c: &Conn| c.key().lo_port % 7 != 3;
    let decoded = ConnTable::decode(blob, NOW);
    match table.import_bytes(blob, NOW, keep) {
        Err(e) => {
            assert_eq!(table.export(NOW), before, "a refused import ({e}) changed the table");
            if let Err(d) = decoded {
                assert_eq!(d, e, "decode and import disagree on a malformed blob");
            }
        }
        Ok(n) => {
            let records = decoded.expect("an imported blob decodes");
            assert!(n <= records.len());
            assert!(table.len() <= table.max());
            let out = table.export(NOW);
            let mut again = ConnTable::new(max);
            let back = again.import_bytes(&out, NOW, |_| true).expect("an export imports");
            assert_eq!(back, (out.len() - 12) / 64);
            assert_eq!(again.export(NOW), out, "export → import → export changed the bytes");
        }
    }
});

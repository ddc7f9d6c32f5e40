//! The packet path: random frames through the firewall (both directions, keeping state
//! between inputs) and the anti-spoof brick never panic; conntrack import of random bytes
//! never panics either; and the key the firewall's burst path reads in place to look ahead
//! is the parsed flow's whenever it gives one.
#![no_main]
use std::cell::RefCell;

use brick_firewall::conntrack::FlowKey;
use brick_firewall::wire::{parse_frame, Frag, Parsed};
use brick_firewall::{AntiSpoof, AntiSpoofOptions, CompiledRuleset, Direction, Firewall, FirewallConfig};
use libfuzzer_sys::fuzz_target;

thread_local! {
    static FW: RefCell<Firewall> = RefCell::new(Firewall::with_ruleset(
        FirewallConfig { max_connections: 64, max_fragments: 16, ..FirewallConfig::default() },
        CompiledRuleset::parse("pass out all keep state\npass in proto tcp to any port 22\npass in proto udp all no state\n")
            .expect("static rules"),
    ));
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, frame)) = data.split_first() else { return };
    let dir = if ctl & 1 == 0 { Direction::In } else { Direction::Out };
    let now = (ctl as u64) * 1_000_000_000;
    FW.with(|fw| {
        let mut fw = fw.borrow_mut();
        let _ = fw.filter(frame, dir, now);
        if ctl == 0xff {
            let bytes = fw.export_connections(brick_core_now(now));
            let _ = fw.import_connections(&bytes, brick_core_now(now));
            let _ = fw.import_connections(frame, brick_core_now(now));
        }
    });
    if let Some(key) = FlowKey::of_frame_in_place(frame) {
        match parse_frame(frame) {
            Ok(Parsed::Ip(f)) if matches!(f.frag, Frag::None) => {
                assert_eq!(key, FlowKey::of(&f).0, "the key read in place is not the parsed flow's")
            }
            // (The parser refuses what reading in place does not check: a bad length.)
            _ => {}
        }
    }
    let mac = [2, 0, 0, 0, 0, ctl];
    let a = AntiSpoof::new(mac, &["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()], AntiSpoofOptions::default())
        .expect("two addresses");
    let _ = a.check(frame);
});

fn brick_core_now(ns: u64) -> brick_firewall::Timestamp {
    brick_firewall::Timestamp(ns)
}

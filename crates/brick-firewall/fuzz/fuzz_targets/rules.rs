//! Rule text: parsing never panics; whatever parses prints back to text that parses to the
//! same ruleset, and compiles.
#![no_main]
use brick_firewall::{CompiledRuleset, Ruleset};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(rs) = Ruleset::parse(text) {
        let printed = rs.to_string();
        let back = Ruleset::parse(&printed).expect("printed ruleset parses");
        assert_eq!(back, rs);
        let _ = CompiledRuleset::new(rs);
    }
});

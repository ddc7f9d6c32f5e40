//! Re-implementation of libstdc++'s `std::hash<std::string>` on 64-bit
//! targets (`_Hash_bytes`, a MurmurHash2-64 variant, seed `0xc70f6907`).
//!
//! Butterfly orders the rules of a security group by this hash of a rule key,
//! and its CLI identifies rules by this hash of their text format. Both are
//! reproduced to stay compatible.

const MUL: u64 = (0xc6a4_a793_u64 << 32) + 0x5bd1_e995;
const SEED: u64 = 0xc70f_6907;

fn shift_mix(v: u64) -> u64 {
    v ^ (v >> 47)
}

/// `std::hash<std::string>{}(s)` as computed by libstdc++ on x86_64.
pub fn std_hash(bytes: &[u8]) -> u64 {
    let len = bytes.len() as u64;
    let mut hash = SEED ^ len.wrapping_mul(MUL);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let data = shift_mix(u64::from_le_bytes(word).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut data = 0u64;
        for &b in rest.iter().rev() {
            data = (data << 8) + u64::from(b);
        }
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_from_butterfly_cli_tests() {
        // Butterfly's CLI test suite deletes rules by these ids; the ids are
        // std::hash of the C++ TextFormat of the rule returned by the server.
        let tcp = "direction: INBOUND\nprotocol: 6\nport_start: 1000\nport_end: 2000\ncidr {\n  address: \"10.0.0.0\"\n  mask_size: 24\n}\n";
        assert_eq!(format!("{:016x}", std_hash(tcp.as_bytes())), "f44fac34f8667927");
        let sg = "direction: INBOUND\nprotocol: 42\nsecurity_group: \"sg-2\"\n";
        assert_eq!(format!("{:016x}", std_hash(sg.as_bytes())), "cfdb94f9418c88f1");
    }

    #[test]
    fn reproduces_butterfly_golden_rule_order() {
        // Butterfly's keys for the rules of its sg_rule golden test; its
        // expected listing order is sg-42, the IPv6 rule, UDP, then some-sg.
        let keys = [
            "0-17-0-65535-1.2.3.0/24-",
            "0-6-0-65535-/0-sg-42",
            "0--1-0-1024-2001:db8:0:85a3::ac1f:8001/8-",
            "0-6-1000-65535-/0-some-sg",
        ];
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_by_key(|k| std_hash(k.as_bytes()));
        assert_eq!(sorted, [keys[1], keys[2], keys[0], keys[3]]);
    }
}

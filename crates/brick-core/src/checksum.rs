//! The Internet checksum (RFC 1071), shared by every brick that writes or checks one: the
//! VTEP's outer headers, completion of partial (offloaded) L4 checksums by NIC and vhost
//! bricks.

/// Adds `data` to a one's-complement accumulator, eight bytes at a time (fold the result with
/// [`csum_fold`]). In a sum made of several slices, every slice but the last must have an even
/// length.
#[inline]
pub fn csum_add(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc = add_end_around(acc, w);
    }
    // The tail too wraps with an end-around carry: the accumulator can be within a few units
    // of 2^64 after the words above (found by fuzzing: a plain `+=` overflowed).
    let r = chunks.remainder();
    let mut i = 0;
    while i + 2 <= r.len() {
        acc = add_end_around(acc, u64::from(u16::from_be_bytes([r[i], r[i + 1]])));
        i += 2;
    }
    if i < r.len() {
        acc = add_end_around(acc, u64::from(r[i]) << 8);
    }
    acc
}

/// Adds a number (a length, a protocol number, another accumulator) to an accumulator. Use it
/// instead of `+`: an accumulator of 8-byte words can be anywhere up to 2^64 − 1, so a plain
/// addition can overflow (found by fuzzing); this one carries end-around, which keeps the sum
/// exact modulo 2^64 − 1 and so the folded 16-bit checksum right.
#[inline(always)]
pub fn csum_add_value(acc: u64, v: u64) -> u64 {
    add_end_around(acc, v)
}

/// One's-complement addition on 64 bits: the carry out of the top goes back in at the bottom.
#[inline(always)]
fn add_end_around(acc: u64, w: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(w);
    s + u64::from(carry)
}

/// Folds an accumulator to 16 bits and complements it: the value to store in a header.
#[inline]
pub fn csum_fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// The Internet checksum of `data` (zero when `data` already holds a valid checksum).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    csum_fold(csum_add(0, data))
}

/// Completes a partial checksum the way a NIC does for `CSUM_NEEDED`: sums `frame` from
/// `start` to its end (the field at `start + offset` already holds the pseudo-header sum) and
/// stores the result there. A computed zero is stored as 0xffff (zero means "no checksum" in
/// UDP; the two are equal for TCP). Returns `false`, leaving `frame` unchanged, when the field
/// lies outside the frame.
pub fn complete_partial(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start.saturating_add(offset);
    if at.saturating_add(2) > frame.len() {
        return false;
    }
    let mut c = checksum(&frame[start..]);
    if c == 0 {
        c = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071, 16 bits at a time: the reference.
    fn naive(data: &[u8]) -> u16 {
        let mut sum = 0u64;
        for c in data.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2, so the checksum is 220d.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d);
    }

    #[test]
    fn partial_outside_the_frame_is_refused() {
        let mut f = [1u8; 10];
        assert!(!complete_partial(&mut f, 8, 1));
        assert!(!complete_partial(&mut f, usize::MAX, 2));
        assert_eq!(f, [1u8; 10]);
    }

    proptest! {
        #[test]
        fn matches_the_reference(data in proptest::collection::vec(any::<u8>(), 0..300), split in 0usize..150) {
            prop_assert_eq!(checksum(&data), naive(&data));
            // Multi-part sums with an even first part give the same result.
            let s = (split.min(data.len())) & !1;
            prop_assert_eq!(csum_fold(csum_add(csum_add(0, &data[..s]), &data[s..])), naive(&data));
        }

        /// Adding a value to any accumulator (what pseudo-header code does with lengths).
        #[test]
        fn adding_a_value_to_any_accumulator(
            acc in prop_oneof![any::<u64>(), (0u64..16).prop_map(|d| u64::MAX - d)],
            v in 0u64..0x1_0000_0000,
        ) {
            let mut sum = u128::from(acc) + u128::from(v);
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let got = csum_fold(csum_add_value(acc, v));
            prop_assert_eq!(u32::from(got) % 0xffff, u32::from(!(sum as u16)) % 0xffff);
        }

        /// Any starting accumulator, even one a few units short of 2^64 (callers start from
        /// pseudo-header sums): the same one's-complement sum as a 128-bit reference.
        #[test]
        fn any_accumulator_wraps_end_around(
            acc in prop_oneof![any::<u64>(), (0u64..16).prop_map(|d| u64::MAX - d)],
            data in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut sum = u128::from(acc);
            for c in data.chunks(2) {
                sum += u128::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            let reference = !(sum as u16);
            let got = csum_fold(csum_add(acc, &data));
            // 0x0000 and 0xffff are the same number in one's complement.
            prop_assert_eq!(u32::from(got) % 0xffff, u32::from(reference) % 0xffff);
        }

        #[test]
        fn a_completed_checksum_verifies(mut data in proptest::collection::vec(any::<u8>(), 4..300), start in 0usize..100) {
            let start = start.min(data.len() - 2) & !1;
            data[start] = 0;
            data[start + 1] = 0;
            prop_assert!(complete_partial(&mut data, start, 0));
            let v = checksum(&data[start..]);
            prop_assert!(v == 0 || v == 0xffff, "verifies: {v:#x}");
        }
    }
}

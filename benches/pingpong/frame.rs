//! The test frames: Ethernet + IPv4 + UDP (port 9 to port 9), a valid IPv4 header checksum
//! and no UDP checksum (0, allowed over IPv4), the payload a magic, a direction and a
//! sequence number. A frame of `n` bytes on the wire is RFC 2544's `n + 4` (FCS).

/// Ethernet + IPv4 + UDP headers.
const HEADERS: usize = 14 + 20 + 8;
/// Payload: magic (4), direction (1), sequence number (8, big endian).
const MAGIC: [u8; 4] = *b"BFPP";
const DIR_OFF: usize = HEADERS + 4;
const SEQ_OFF: usize = HEADERS + 5;
/// The shortest frame that holds the payload; Ethernet's minimum (60) is more anyway.
pub const MIN_LEN: usize = 60;
/// The longest frame (1514 bytes, 1518 with FCS).
pub const MAX_LEN: usize = 1514;

/// One guest: its MAC and IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Station {
    /// Ethernet address.
    pub mac: [u8; 6],
    /// IPv4 address.
    pub ip: [u8; 4],
}

/// Which way a frame goes: vm1 to vm2 (`There`) or the reply (`Back`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// vm1 -> vm2.
    There = 0,
    /// vm2 -> vm1.
    Back = 1,
}

/// A frame of `len` bytes from `src` to `dst` (sequence number 0: see [`set_seq`]).
pub fn build(src: Station, dst: Station, dir: Dir, len: usize) -> Vec<u8> {
    assert!((MIN_LEN..=MAX_LEN).contains(&len), "frame length {len} outside {MIN_LEN}..={MAX_LEN}");
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.mac);
    f[6..12].copy_from_slice(&src.mac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45; // version 4, 20-byte header
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&src.ip);
    ip[16..20].copy_from_slice(&dst.ip);
    let sum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&9u16.to_be_bytes()); // discard
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[HEADERS..HEADERS + 4].copy_from_slice(&MAGIC);
    f[DIR_OFF] = dir as u8;
    f
}

/// Writes the sequence number into a frame made by [`build`] (outside the IPv4 header: its
/// checksum stays right; the UDP checksum is 0).
pub fn set_seq(frame: &mut [u8], seq: u64) {
    frame[SEQ_OFF..SEQ_OFF + 8].copy_from_slice(&seq.to_be_bytes());
}

/// The direction and sequence number of one of our frames addressed to `to`, or `None` for
/// anything else (a flooded copy, an ARP, a frame of some other test).
pub fn parse(frame: &[u8], to: &[u8; 6]) -> Option<(Dir, u64)> {
    if frame.len() < SEQ_OFF + 8 || frame[0..6] != to[..] || frame[12..14] != [0x08, 0x00] || frame[23] != 17
    {
        return None;
    }
    if frame[HEADERS..HEADERS + 4] != MAGIC {
        return None;
    }
    let dir = match frame[DIR_OFF] {
        0 => Dir::There,
        1 => Dir::Back,
        _ => return None,
    };
    let seq = u64::from_be_bytes(frame[SEQ_OFF..SEQ_OFF + 8].try_into().ok()?);
    Some((dir, seq))
}

/// The IPv4 header checksum (RFC 791): one's complement of the one's complement sum of the
/// header's 16-bit words, the checksum field counted as 0.
pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, w) in header.chunks(2).enumerate() {
        if i == 5 {
            continue; // the checksum field itself
        }
        let hi = w[0] as u32;
        let lo = w.get(1).copied().unwrap_or(0) as u32;
        sum += (hi << 8) | lo;
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM1: Station = Station { mac: [2, 0, 0, 0, 0, 1], ip: [198, 18, 0, 1] };
    const VM2: Station = Station { mac: [2, 0, 0, 0, 0, 2], ip: [198, 18, 0, 2] };

    #[test]
    fn checksum_of_a_known_header() {
        // The classic example header (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn a_built_frame_is_valid_ipv4_udp() {
        let mut f = build(VM1, VM2, Dir::There, 60);
        set_seq(&mut f, 0x0102_0304_0506_0708);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &VM2.mac);
        assert_eq!(&f[6..12], &VM1.mac);
        // The whole header, checksum included, sums to 0xffff.
        let mut sum: u32 = f[14..34].chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(w[1])).sum();
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 46, "IPv4 total length");
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 26, "UDP length");
        assert_eq!(parse(&f, &VM2.mac), Some((Dir::There, 0x0102_0304_0506_0708)));
    }

    #[test]
    fn the_reply_swaps_everything() {
        let f = build(VM2, VM1, Dir::Back, 1514);
        assert_eq!(&f[0..6], &VM1.mac);
        assert_eq!(&f[26..30], &VM2.ip);
        assert_eq!(&f[30..34], &VM1.ip);
        assert_eq!(parse(&f, &VM1.mac), Some((Dir::Back, 0)));
    }

    #[test]
    fn strays_are_not_ours() {
        let f = build(VM1, VM2, Dir::There, 60);
        assert_eq!(parse(&f, &VM1.mac), None, "addressed to the other station");
        assert_eq!(parse(&f[..40], &VM2.mac), None, "truncated");
        let mut arp = f.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp, &VM2.mac), None);
        let mut other = f;
        other[HEADERS] = b'X';
        assert_eq!(parse(&other, &VM2.mac), None);
    }

    #[test]
    fn macs_parse() {
        assert_eq!(parse_mac("02:00:00:00:00:0a"), Some([2, 0, 0, 0, 0, 10]));
        assert_eq!(parse_mac("02:00:00:00:00"), None);
        assert_eq!(parse_mac("02:00:00:00:00:00:01"), None);
        assert_eq!(parse_mac("zz:00:00:00:00:00"), None);
    }
}

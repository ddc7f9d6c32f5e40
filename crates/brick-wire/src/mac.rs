//! MAC addresses.

use core::fmt;
use core::str::FromStr;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// `00:00:00:00:00:00`.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address from the first six bytes of `b`, `None` if shorter.
    #[inline]
    pub fn from_bytes(b: &[u8]) -> Option<MacAddr> {
        Some(MacAddr(b.get(..6)?.try_into().ok()?))
    }

    /// The address's bytes.
    #[inline]
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The address in the low 48 bits of a `u64` (the form the switch's tables key on).
    #[inline]
    pub const fn to_u64(&self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    /// The address from the low 48 bits of `v`.
    #[inline]
    pub const fn from_u64(v: u64) -> MacAddr {
        let b = v.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// Group bit set (broadcast included).
    #[inline]
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// All ones.
    #[inline]
    pub const fn is_broadcast(&self) -> bool {
        self.to_u64() == 0xffff_ffff_ffff
    }

    /// Neither multicast nor all zeros: usable as a source.
    #[inline]
    pub const fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.to_u64() != 0
    }
}

impl From<[u8; 6]> for MacAddr {
    #[inline]
    fn from(b: [u8; 6]) -> MacAddr {
        MacAddr(b)
    }
}

impl From<MacAddr> for [u8; 6] {
    #[inline]
    fn from(m: MacAddr) -> [u8; 6] {
        m.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

/// A string that is not six `:`-separated (or `-`-separated) hex bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseMacError;

impl fmt::Display for ParseMacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid MAC address")
    }
}

impl core::error::Error for ParseMacError {}

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<MacAddr, ParseMacError> {
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for o in out.iter_mut() {
            let p = parts.next().ok_or(ParseMacError)?;
            if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(ParseMacError);
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ParseMacError)?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError);
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_and_parse_round_trip() {
        let m: MacAddr = "02:00:5e:0A:ff:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0x5e, 0x0a, 0xff, 1]);
        assert_eq!(m.to_string(), "02:00:5e:0a:ff:01");
        assert_eq!("02-00-5e-0a-ff-01".parse::<MacAddr>(), Ok(m));
        assert!("02:00:5e:0a:ff".parse::<MacAddr>().is_err());
        assert!("02:00:5e:0a:ff:01:02".parse::<MacAddr>().is_err());
        assert!("02:00:5e:0a:ff:g1".parse::<MacAddr>().is_err());
        assert!("02:00:5e:0a:ff:+1".parse::<MacAddr>().is_err());
    }

    #[test]
    fn classes_and_u64() {
        assert!(MacAddr::BROADCAST.is_broadcast() && MacAddr::BROADCAST.is_multicast());
        let m = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
        assert!(m.is_multicast() && !m.is_broadcast() && !m.is_unicast());
        let u = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(u.is_unicast());
        assert_eq!(MacAddr::from_u64(u.to_u64()), u);
        assert_eq!(u.to_u64(), 0x0200_0000_0001);
        assert!(!MacAddr::ZERO.is_unicast());
    }
}

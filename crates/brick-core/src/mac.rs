//! MAC addresses as people write them.

use std::fmt;

/// Displays a MAC address as `aa:bb:cc:dd:ee:ff` (lower case), for messages and status
/// lines: `MacFmt([0xff; 6]).to_string() == "ff:ff:ff:ff:ff:ff"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacFmt(pub [u8; 6]);

impl fmt::Display for MacFmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

#[cfg(test)]
mod tests {
    use super::MacFmt;

    #[test]
    fn macs_read_like_ip_link_prints_them() {
        assert_eq!(MacFmt([0xff; 6]).to_string(), "ff:ff:ff:ff:ff:ff");
        assert_eq!(MacFmt([0x52, 0x54, 0, 0xab, 0x0c, 1]).to_string(), "52:54:00:ab:0c:01");
    }
}

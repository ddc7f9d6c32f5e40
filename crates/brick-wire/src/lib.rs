//! Checked, allocation-free, zero-copy views of packet headers, and one L2→L4 locator.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>` (setters need `T: AsMut<[u8]>` too). Its
//! `new_checked` constructor verifies the buffer holds the whole fixed header (and whatever
//! lengths the header itself declares, where the view relies on them); after that, accessors
//! never panic. Field ranges are declared once, in each view's `field` module.
//!
//! # VLAN policy
//!
//! [`locate()`] accepts **up to two** VLAN tags in front of the payload ethertype, each either
//! 802.1Q (`0x8100`) or 802.1ad (`0x88a8`), in any order (switches in the wild emit both
//! `88a8/8100` and `8100/8100`). A third tag is [`WireError::TooManyVlanTags`]: a frame is
//! never silently classified as non-IP because it hides its IP header behind tags. Callers
//! with a stricter rule (the firewall takes one tag) check [`Layers::vlan_count`].
//!
//! Nothing here allocates, panics on any input, or uses `unsafe`.
#![forbid(unsafe_code)]
#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ip;
pub mod locate;
pub mod mac;
pub mod transport;
pub mod vxlan;

pub use arp::Arp;
pub use ethernet::{EtherType, Ethernet, Vlan};
pub use icmp::{Icmp, Igmp, Mld, NdOption, NdOptions, Ndp};
pub use ip::{IpProto, Ipv4, Ipv6, Ipv6Ext, Ipv6Walk, MAX_IPV6_EXT};
pub use locate::{locate, locate_l2, Layers, MAX_VLAN_TAGS};
pub use mac::{MacAddr, ParseMacError};
pub use transport::{Tcp, Udp};
pub use vxlan::Vxlan;

/// Why a buffer is not a valid header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length the header declares).
    Truncated,
    /// A field holds a value the view cannot work with (version, header length...).
    Malformed,
    /// More VLAN tags than [`MAX_VLAN_TAGS`].
    TooManyVlanTags,
    /// More IPv6 extension headers than [`MAX_IPV6_EXT`].
    TooManyExtensions,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            WireError::Truncated => "truncated header",
            WireError::Malformed => "malformed header",
            WireError::TooManyVlanTags => "too many VLAN tags",
            WireError::TooManyExtensions => "too many IPv6 extension headers",
        })
    }
}

impl core::error::Error for WireError {}

/// Reads a big-endian `u16` at `at`, `None` past the end.
#[inline(always)]
pub fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Reads a big-endian `u32` at `at`, `None` past the end.
#[inline(always)]
pub fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a big-endian `u128` at `at`, `None` past the end.
#[inline(always)]
pub fn be128(b: &[u8], at: usize) -> Option<u128> {
    let s: [u8; 16] = b.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(u128::from_be_bytes(s))
}

/// Field access inside views whose length was checked at construction: the `unwrap_or`
/// fallbacks are never taken, they only keep the accessors free of panics.
#[inline(always)]
pub(crate) fn get16(b: &[u8], r: core::ops::Range<usize>) -> u16 {
    be16(b, r.start).unwrap_or(0)
}

#[inline(always)]
pub(crate) fn get32(b: &[u8], r: core::ops::Range<usize>) -> u32 {
    be32(b, r.start).unwrap_or(0)
}

#[inline(always)]
pub(crate) fn put16(b: &mut [u8], r: core::ops::Range<usize>, v: u16) {
    if let Some(s) = b.get_mut(r) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
pub(crate) fn put32(b: &mut [u8], r: core::ops::Range<usize>, v: u32) {
    if let Some(s) = b.get_mut(r) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

#[inline(always)]
pub(crate) fn byte(b: &[u8], at: usize) -> u8 {
    b.get(at).copied().unwrap_or(0)
}

#[inline(always)]
pub(crate) fn check_len(b: &[u8], len: usize) -> Result<(), WireError> {
    if b.len() < len {
        Err(WireError::Truncated)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod proptests;

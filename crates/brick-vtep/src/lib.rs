//! VXLAN tunnel endpoint brick (RFC 7348) over IPv4 and IPv6 underlays.
//!
//! Not implemented yet: see this crate's README.

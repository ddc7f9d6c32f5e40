//! Stateful firewall brick: pf-style rule language (nom), connection tracking, security groups, anti-spoof.
//!
//! Not implemented yet: see this crate's README.

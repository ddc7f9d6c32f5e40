//! # brick-firewall
//!
//! A stateful firewall brick and an anti-spoof brick for butterfly-rs.
//!
//! - [`Ruleset`]: a pf-style rule language (parsed with nom, printed back canonically).
//! - [`CompiledRuleset`]: the ruleset compiled to indexes (port array, per-prefix-length
//!   hash maps) so that 10,000 rules or table members cost a handful of probes per new flow.
//!   Semantics: pf's last-match with `quick`; a default policy per direction.
//! - [`Firewall`]: the brick (west port = network, east port = VM). Connection tracking with
//!   a TCP state machine, UDP / ICMP echo / other pseudo-states, related ICMP errors,
//!   fragments following their first fragment, a bounded table with O(expired) garbage
//!   collection, export/import for live migration, and atomic ruleset replacement.
//! - [`ruleset_from_security_groups`]: Butterfly security groups → a [`Ruleset`].
//! - [`AntiSpoof`]: the brick that keeps a VM to its own MAC and addresses.
//!
//! ```
//! use brick_firewall::{CompiledRuleset, Firewall, FirewallConfig, Direction};
//!
//! let rules = CompiledRuleset::parse("
//!     set default in block
//!     pass out all keep state
//!     pass in proto tcp to any port 22
//! ").unwrap();
//! let mut fw = Firewall::new(FirewallConfig::default());
//! let replaced = fw.replace_ruleset(rules);
//! assert_eq!(replaced.kept, 0);
//! // ARP and other non-IP frames pass; IP is judged.
//! assert!(fw.filter(&[0u8; 14], Direction::In, 0).is_ok());
//! ```
#![warn(missing_docs)]

pub mod antispoof;
pub mod compile;
pub mod conntrack;
pub mod firewall;
pub mod frag;
pub mod parse;
pub mod rule;
pub mod secgroup;
pub mod wire;

#[cfg(test)]
mod proptests;

pub use antispoof::{
    eui64_link_local, AntiSpoof, AntiSpoofOptions, SpoofDrop, TooManyAddresses, ANTISPOOF_DROP_REASONS,
};
pub use brick_core::Timestamp;
pub use compile::{CompileError, CompiledRuleset, Decision};
pub use conntrack::{ConnState, ConnTable, ImportError, Timeouts};
pub use firewall::{
    Firewall, FirewallConfig, FirewallCounters, FwDrop, ImportSummary, Replaced, FIREWALL_DROP_REASONS,
};
pub use parse::ParseError;
pub use rule::{
    Action, AddrSpec, Cidr, Direction, Endpoint, Family, IcmpMatch, PortRange, Proto, Rule, Ruleset, Table,
};
pub use secgroup::{
    ruleset_from_security_groups, SecurityGroup, SgDirection, SgError, SgOptions, SgRule, SgTarget,
};

/// Any error of building a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The ruleset is inconsistent.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// A security group cannot be expressed.
    #[error(transparent)]
    SecurityGroup(#[from] SgError),
}

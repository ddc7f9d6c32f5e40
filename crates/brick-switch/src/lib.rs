//! # brick-switch
//!
//! A layer-2 learning switch [`Brick`](brick_core::Brick) for butterfly-rs, plus the bounded,
//! aging [`MacTable`] it is built on (also used by `brick-vtep`).
//!
//! ```
//! use brick_core::{Graph, PacketPool};
//! use brick_switch::{Switch, SwitchConfig};
//!
//! let pool = PacketPool::with_count(256).unwrap();
//! let mut g = Graph::new("demo");
//! let sw = g.add("switch", Switch::new(SwitchConfig::default(), pool).unwrap()).unwrap();
//! // link VM branches to the switch's east side, the uplink to its west side...
//! # let _ = sw;
//! ```
#![warn(missing_docs)]

pub mod mac_table;
mod switch;

pub use mac_table::{is_group, mac_to_u64, u64_to_mac, Learned, MacEntry, MacHasher, MacTable, TableFull};
pub use switch::{
    PortCounters, PortRef, Switch, SwitchConfig, SwitchCounters, SwitchDrop, SwitchError, DROP_REASONS,
};

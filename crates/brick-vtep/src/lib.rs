//! # brick-vtep
//!
//! A VXLAN tunnel endpoint [`Brick`](brick_core::Brick) (RFC 7348) over an IPv4 or IPv6
//! underlay, interoperable with the Linux kernel's `vxlan` device.
//!
//! West port 0 faces the physical network; each east port carries one VNI. See [`Vtep`] for
//! the behaviour and the crate README for configuration, drop reasons and numbers.
//!
//! ```
//! use brick_core::{Graph, PacketPool, bricks::Nop};
//! use brick_vtep::{Vtep, VtepConfig};
//!
//! let pool = PacketPool::with_count(1024).unwrap();
//! let cfg = VtepConfig::new("192.0.2.1".parse().unwrap(), [0x02, 0, 0, 0, 0, 1]);
//! let mut g = Graph::new("host");
//! let vtep = g.add("vtep", Vtep::new(cfg, pool).unwrap()).unwrap();
//! let vm = g.add("vm42", Nop).unwrap();
//! let (port, _) = g.link(vtep, vm).unwrap();
//! g.brick_mut::<Vtep>(vtep).unwrap().add_vni(42, port).unwrap();
//! assert_eq!(g.brick::<Vtep>(vtep).unwrap().joined_groups(), vec!["230.0.0.42".parse::<std::net::IpAddr>().unwrap()]);
//! ```
#![warn(missing_docs)]

mod config;
pub mod neigh_proxy;
pub mod steer;
mod vtep;
pub mod wire;

pub use config::{
    check_group, check_remote, default_group, IgmpVersion, VniOptions, VtepConfig, VtepError, MAX_VNI,
};
pub use steer::{SteerDrop, VniSteer, MAX_WORKERS};
pub use vtep::{
    flow_hash, source_port, NeighInfo, NeighState, Remote, VniCounters, VniInfo, Vtep, VtepCounters,
    VtepDrop, DROP_REASONS,
};

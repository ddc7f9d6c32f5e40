//! # brick-vhost
//!
//! A vhost-user virtio-net backend as a [`brick_core::Brick`]: QEMU guests (or DPDK's
//! `virtio_user`) plug into a butterfly-rs graph through a unix socket.
//!
//! - [`VhostUserNic::server`] creates the socket and QEMU connects; [`VhostUserNic::client`]
//!   connects to QEMU's socket and reconnects forever. Each connection gets a fresh
//!   rust-vmm `VhostUserDaemon` (protocol, memory table, vring setup on its threads).
//! - The data path runs on the graph's thread: [`Brick::poll`](brick_core::Brick::poll) pops
//!   guest TX chains into pool packets (one copy), [`Brick::process`](brick_core::Brick::process)
//!   copies packets into guest RX buffers (mergeable). Guest kicks ring the brick's wake fd;
//!   EVENT_IDX suppresses kicks while the graph is busy and interrupts are sent only when the
//!   guest asked for them.
//! - Several queue pairs can be served by several graph threads, one brick each
//!   ([`VhostUserConfig::threads`], [`VhostUserNic::take_siblings`]); in thread 0's graph a
//!   [`VhostSpread`] brick spreads the guest's frames over the threads that run an RX queue.
//! - virtio-net header offloads map onto [`brick_core::Meta`] (CSUM, TSO4/6).
//! - QEMU 7.2 (Debian 12) interop: see [`proxy`].
//!
//! See the README for the whole story, tests and measured numbers.
#![warn(missing_docs)]

mod backend;
pub mod datapath;
mod gate;
mod nic;
pub mod proxy;
mod queue;
pub mod ring;
mod spread;
#[doc(hidden)]
pub mod testutil;
pub mod wire;

pub use backend::{NicStats, MAX_QUEUE_PAIRS, MAX_QUEUE_SIZE};
pub use nic::{DropReason, Offloads, VhostError, VhostUserConfig, VhostUserNic, DROP_REASONS, TSO_DATA_ROOM};
pub use spread::{flow_hash, RxThreads, SpreadDrop, VhostSpread};

//! # brick-core
//!
//! The packet graph engine of butterfly-rs: [`Packet`]s from bounded [`PacketPool`]s,
//! [`Burst`]s of up to [`BURST_SIZE`] packets, the [`Brick`] trait, the [`Graph`] that owns
//! bricks and moves bursts between their ports, per-brick counters ([`BrickStats`]), a
//! thread [`Runner`], a cross-thread [queue pair](queue_pair), and small bricks
//! ([`bricks`]).
//!
//! ```
//! use brick_core::{bricks::{Nop, RxTx}, Burst, Graph, PacketPool, Side};
//! use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
//!
//! let pool = PacketPool::with_count(256).unwrap();
//! let received = Arc::new(AtomicUsize::new(0));
//! let mut g = Graph::new("demo");
//! let src_pool = pool.clone();
//! let src = g.add("src", RxTx::new(Side::East, move |b: &mut Burst| {
//!     let _ = b.push(src_pool.alloc_from(&[0u8; 60]).unwrap());
//! }, |b: &mut Burst| b.clear())).unwrap();
//! let nop = g.add("nop", Nop).unwrap();
//! let r = Arc::clone(&received);
//! let sink = g.add("sink", RxTx::new(Side::West, |_: &mut Burst| {}, move |b: &mut Burst| {
//!     r.fetch_add(b.len(), Ordering::Relaxed);
//!     b.clear();
//! })).unwrap();
//! g.chain(&[src, nop, sink]).unwrap();
//! g.poll_all();
//! assert_eq!(received.load(Ordering::Relaxed), 1);
//! ```
#![warn(missing_docs)]

mod brick;
pub mod bricks;
mod burst;
pub mod checksum;
mod drops;
mod graph;
pub mod gso;
pub mod hint;
mod mac;
mod packet;
mod pool;
pub mod queue;
mod runner;
mod source;
mod stats;
mod time;
pub mod virtio_net;
mod waker;

pub use brick::{Brick, Output, PortId, Side};
pub use burst::{Burst, BURST_SIZE};
pub use graph::{BrickId, Command, Graph, GraphError, GraphHandle, CYCLE_SAMPLING, DOT_STYLE, MAX_DEPTH};
pub use mac::MacFmt;
pub use packet::{ForeignOwner, ForeignParts, GsoType, Meta, OffloadFlags, Packet, PacketError};
pub use pool::{PacketPool, PoolConfig, PoolError, MAX_CACHED, MIN_HEADROOM};
pub use queue::{queue_link, queue_pair, QueueLink, QueueRx, QueueRxDrop, QueueTx, QueueTxDrop};
pub use runner::{allowed_cpus, pin_to_cpu, Runner, RunnerConfig, RunnerStats};
pub use source::{LentBuffers, PacketSource};
pub use stats::{BrickStats, Counter, GraphDrop, SideCounters, GRAPH_DROP_REASONS};
pub use time::{cycles, Timestamp};
pub use waker::{EpollSet, Waker};

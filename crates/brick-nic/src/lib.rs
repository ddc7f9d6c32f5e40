//! # brick-nic
//!
//! The bricks that connect a graph to the outside world, one per backend, all with the same
//! shape and the same counters:
//!
//! | brick | backend |
//! |---|---|
//! | [`AfPacketNic`] | a kernel interface through AF_PACKET, TPACKET_V3 mmap rings, PACKET_FANOUT |
//! | [`TapNic`] | a TAP device (created or attached), virtio-net header offloads, multiqueue |
//! | [`PcapSource`] / [`PcapSink`] | replay a capture into a graph / record what reaches the brick |
//! | `DpdkNic` | a DPDK port (cargo feature `dpdk`) |
//! | [`Patch`] | joins two NIC bricks (both face east): a two-port bridge |
//!
//! Conventions: a NIC brick is a source ([`Brick::is_source`](brick_core::Brick::is_source))
//! with one port, on its **east** side (it faces the vtep or switch to its east). Each
//! [`poll`](brick_core::Brick::poll) receives at most [`BURST_SIZE`](brick_core::BURST_SIZE)
//! frames per queue into buffers of the [`PacketPool`](brick_core::PacketPool) given at
//! construction and emits them east; packets that reach the brick through `process` are
//! transmitted. No allocation per packet. Drops are counted under the shared
//! [`DROP_REASONS`] and mirrored in [`NicCounters`], readable from any thread.
#![warn(missing_docs)]

mod afpacket;
pub mod bpf;
pub mod counters;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod netns;
pub mod offload;
mod patch;
mod pcap;
pub mod sys;
mod tap;

use std::io;
use std::path::PathBuf;

pub use afpacket::{AfPacketConfig, AfPacketNic, Fanout, FanoutMode, TxMode};
pub use counters::{NicCounters, NicDrop, NicStats, DROP_REASONS};
#[cfg(feature = "dpdk")]
pub use dpdk::{
    current_lcore, retired_mempools, DpdkConfig, DpdkError, DpdkNic, Eal, LinkStatus, MbufSource, MtuLimits,
    OffloadCaps, PortSpec, MBUF_OWNER, MIN_LENT_FRAME,
};
pub use patch::Patch;
pub use pcap::{PcapLoop, PcapSink, PcapSource, PcapSourceConfig};
pub use tap::{TapConfig, TapNic, TapOffloads};

/// Why a NIC brick could not be created or reconfigured.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The interface name cannot be valid on Linux.
    #[error("invalid interface name {name:?}: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No interface with this name in the current network namespace.
    #[error("no interface named {0:?}")]
    NoSuchInterface(String),
    /// Creating an interface whose name is taken.
    #[error("an interface named {0:?} already exists")]
    AlreadyExists(String),
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system call failed.
    #[error("{op} on {ifname:?} failed: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The interface (or file) concerned.
        ifname: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A capture file could not be opened, read or written.
    #[error("capture file {path:?}: {msg}")]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// A DPDK failure (EAL, port, queue).
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
}

impl NicError {
    pub(crate) fn sys(op: &'static str, ifname: &str, source: io::Error) -> NicError {
        NicError::Sys { op, ifname: ifname.to_string(), source }
    }
}

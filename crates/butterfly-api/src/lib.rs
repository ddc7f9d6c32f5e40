//! Butterfly's control API for butterfly-rs: protobuf schema (wire-compatible
//! with Butterfly's protocol revision 6), validation, a [`Handler`] trait for
//! the daemon with an in-memory reference implementation ([`MemoryHandler`]
//! over [`Model`]), the ZeroMQ [`Server`] and [`Client`], Butterfly's
//! pre-shared-key encryption ([`crypto`]). The `butterfly` CLI is in the
//! butterfly-cli crate.
//!
//! See the crate README for the semantics and every deliberate difference
//! from Butterfly.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod crypto;
pub mod dispatch;
pub mod handler;
pub mod model;
pub mod pb;
pub mod stdhash;
pub mod text;
pub mod transport;
pub mod types;

pub use bench::BenchStats;
pub use dispatch::{DispatchConfig, Dispatcher, Reply};
pub use handler::{Handler, HandlerError, HandlerResult};
pub use model::{MemoryHandler, Model, ModelError, SgChange};
pub use transport::{
    Client, ClientConfig, CurveClient, CurveServer, RunningServer, ServeExit, Server, ServerConfig,
    StopHandle, TransportError, DEFAULT_ENDPOINT,
};
pub use types::*;

/// Protocol revision implemented (sent in every reply). See CHANGELOG.md.
pub const PROTO_REVISION: u32 = 6;
/// Butterfly version this API corresponds to.
pub const BUTTERFLY_VERSION: &str = "0.13";

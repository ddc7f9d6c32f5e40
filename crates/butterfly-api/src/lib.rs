//! Butterfly's protobuf API (MessageV0, wire-compatible), ZeroMQ transport and the `butterfly` CLI.
//!
//! Not implemented yet: see this crate's README.

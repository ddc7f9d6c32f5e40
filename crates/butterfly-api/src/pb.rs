//! Protobuf types generated at build time from `proto/*.proto` (prost + protox),
//! and helpers built on the embedded descriptor set.
//!
//! The layout mirrors Butterfly's packages: `MessageV0` and `Encrypted` live in
//! the root package (this module), `Messages`, `Message` and `Error` in
//! package `proto` ([`proto`]).

#![allow(missing_docs)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/_.rs"));

/// Package `proto` of the schema: the envelope.
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/proto.rs"));
}

/// The serialized `FileDescriptorSet` of the schema (used for text format,
/// JSON and required-field checks).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

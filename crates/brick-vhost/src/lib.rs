//! vhost-user backend brick for QEMU guests (rust-vmm vhost-user-backend).
//!
//! Not implemented yet: see this crate's README.

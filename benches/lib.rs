//! Holder package for butterfly-rs's whole-chain benchmarks (`benches/full_chain.rs`) and
//! comparison scripts (`kernel-compare.sh`, `pvp-compare.sh`), and the core of the
//! `vhost-pingpong` tool ([`pingpong`]): guest-to-guest latency through a vhost-user switch,
//! and of the `cross-core-probe` tool ([`probe`]): what one cache line costs between two CPUs.

pub mod pingpong;
pub mod probe;

//! Holder package for butterfly-rs's whole-chain benchmarks (`benches/full_chain.rs`) and
//! comparison scripts (`kernel-compare.sh`, `pvp-compare.sh`), and the core of their tools:
//! - `vhost-pingpong` ([`pingpong`]): guest-to-guest latency through a vhost-user switch;
//! - `vhost-flows` ([`flows`]): many connections through a vhost-user switch at full rate;
//! - `cross-core-probe` ([`probe`]): what one cache line costs between two CPUs.

pub mod flows;
pub mod pingpong;
pub mod probe;

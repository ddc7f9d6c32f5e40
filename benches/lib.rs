//! Holder package for butterfly-rs's whole-chain benchmarks (`benches/full_chain.rs`) and
//! comparison scripts (`kernel-compare.sh`). Nothing to link against.

//! DPDK backend (in progress).

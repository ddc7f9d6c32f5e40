//! DPDK tests (filled later)

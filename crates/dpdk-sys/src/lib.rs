//! Raw bindings to DPDK 22.11 as packaged by Debian (`libdpdk-dev`), generated at build time
//! with bindgen from the headers `pkg-config libdpdk` points at, plus `brick_*` C shims for
//! the `static inline` fast path (`rte_eth_rx_burst`, `rte_eth_tx_burst`, mbuf alloc/free and
//! field access) and for `rte_errno`, a thread-local.
//!
//! `rte_mbuf` and `rte_mempool` are opaque here: only the shims touch their fields. Safe
//! wrappers live in `brick-nic` (feature `dpdk`).
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case, missing_docs)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `RTE_ETH_RX_OFFLOAD_*` and `RTE_ETH_TX_OFFLOAD_*` bits (function-like macros in the C
/// headers, so bindgen cannot see them). Values from rte_ethdev.h of DPDK 22.11.
pub mod offload {
    pub const RX_VLAN_STRIP: u64 = 1 << 0;
    pub const RX_IPV4_CKSUM: u64 = 1 << 1;
    pub const RX_UDP_CKSUM: u64 = 1 << 2;
    pub const RX_TCP_CKSUM: u64 = 1 << 3;
    pub const RX_TCP_LRO: u64 = 1 << 4;
    pub const RX_OUTER_IPV4_CKSUM: u64 = 1 << 6;
    pub const RX_SCATTER: u64 = 1 << 13;
    pub const RX_OUTER_UDP_CKSUM: u64 = 1 << 18;
    pub const RX_RSS_HASH: u64 = 1 << 19;
    pub const TX_VLAN_INSERT: u64 = 1 << 0;
    pub const TX_IPV4_CKSUM: u64 = 1 << 1;
    pub const TX_UDP_CKSUM: u64 = 1 << 2;
    pub const TX_TCP_CKSUM: u64 = 1 << 3;
    pub const TX_TCP_TSO: u64 = 1 << 5;
    pub const TX_UDP_TSO: u64 = 1 << 6;
    pub const TX_OUTER_IPV4_CKSUM: u64 = 1 << 7;
    pub const TX_VXLAN_TNL_TSO: u64 = 1 << 9;
    pub const TX_MULTI_SEGS: u64 = 1 << 15;
    pub const TX_MBUF_FAST_FREE: u64 = 1 << 16;
    pub const TX_OUTER_UDP_CKSUM: u64 = 1 << 20;
}

/// `RTE_MBUF_F_RX_*` checksum status bits and `RTE_MBUF_F_TX_*` offload requests
/// (rte_mbuf_core.h).
pub mod mbuf_flags {
    pub const TX_TCP_SEG: u64 = 1 << 50;
    pub const TX_TCP_CKSUM: u64 = 1 << 52;
    pub const TX_IP_CKSUM: u64 = 1 << 54;
    pub const TX_UDP_CKSUM: u64 = 3 << 52;
    pub const TX_IPV4: u64 = 1 << 55;
    pub const TX_IPV6: u64 = 1 << 56;
    pub const RX_IP_CKSUM_MASK: u64 = (1 << 4) | (1 << 7);
    pub const RX_IP_CKSUM_GOOD: u64 = 1 << 7;
    pub const RX_L4_CKSUM_MASK: u64 = (1 << 3) | (1 << 8);
    pub const RX_L4_CKSUM_GOOD: u64 = 1 << 8;
}

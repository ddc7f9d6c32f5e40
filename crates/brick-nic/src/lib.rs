//! Physical and kernel I/O bricks: DPDK (cargo feature `dpdk`), AF_PACKET (TPACKET_V3), TAP and pcap.
//!
//! Not implemented yet: see this crate's README.

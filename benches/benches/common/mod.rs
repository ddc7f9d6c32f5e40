//! Frames shared by the whole-chain benchmarks (`full_chain`, `workers`).

use etherparse::PacketBuilder;

/// The local VTEP's MAC.
pub const LOCAL_VTEP_MAC: [u8; 6] = [0x02, 0xbf, 198, 18, 0, 1];
/// The remote VTEP's MAC.
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x02, 0xbf, 198, 18, 0, 2];
/// The local VTEP's address.
pub const LOCAL_VTEP_IP: [u8; 4] = [198, 18, 0, 1];
/// The remote VTEP's address.
pub const REMOTE_VTEP_IP: [u8; 4] = [198, 18, 0, 2];

/// A UDP-over-IPv4 frame of `len` bytes (at least its headers).
pub fn udp_frame(
    src: [u8; 6],
    dst: [u8; 6],
    sip: [u8; 4],
    dip: [u8; 4],
    sport: u16,
    dport: u16,
    len: usize,
) -> Vec<u8> {
    let payload = vec![0x5a; len.saturating_sub(14 + 20 + 8)];
    let mut v = Vec::new();
    PacketBuilder::ethernet2(src, dst).ipv4(sip, dip, 64).udp(sport, dport).write(&mut v, &payload).unwrap();
    v
}

/// `inner` in VXLAN (VNI `vni`) from the remote VTEP to the local one.
pub fn vxlan_from_remote(vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vec![0x08, 0, 0, 0, (vni >> 16) as u8, (vni >> 8) as u8, vni as u8, 0];
    payload.extend_from_slice(inner);
    let mut v = Vec::new();
    PacketBuilder::ethernet2(REMOTE_VTEP_MAC, LOCAL_VTEP_MAC)
        .ipv4(REMOTE_VTEP_IP, LOCAL_VTEP_IP, 64)
        .udp(50000, 4789)
        .write(&mut v, &payload)
        .unwrap();
    v
}

//! Offloads the kernel may hand the TAP brick (TUNSETOFFLOAD), and the size of the
//! virtio-net header they imply.

use super::*;

/// Which offloads the kernel may hand the brick (TUNSETOFFLOAD). Only meaningful with the
/// virtio-net header. With `csum`, frames may arrive with a partial checksum
/// (`OffloadFlags::CSUM_NEEDED`); with `tso4`/`tso6` (which need `csum`), TCP super-frames up
/// to 64 KiB arrive whole, so the pool's data room must be about 65 550 bytes or they are
/// dropped as "too big".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TapOffloads {
    /// TUN_F_CSUM: partial checksums.
    pub csum: bool,
    /// TUN_F_TSO4: TCP/IPv4 segmentation offload.
    pub tso4: bool,
    /// TUN_F_TSO6: TCP/IPv6 segmentation offload.
    pub tso6: bool,
    /// TUN_F_UDP_TUNNEL_GSO (Linux ≥ 6.17): TCP super-frames inside a UDP tunnel (VXLAN)
    /// cross whole, both ways, with the 24-byte virtio-net header carrying the outer UDP and
    /// inner IP offsets. Needs `csum` and `tso4`/`tso6`; fixed at creation (it sets the header
    /// size). Meant for an underlay TAP: the kernel segments after routing or bridging, or
    /// hands the super-frame on unsegmented (veth, NICs with VXLAN TSO).
    pub udp_tunnel: bool,
}

impl TapOffloads {
    /// Every offload this brick maps (checksum, TSO4, TSO6).
    pub const ALL: TapOffloads = TapOffloads { csum: true, tso4: true, tso6: true, udp_tunnel: false };
    /// [`ALL`](Self::ALL) plus UDP-tunnel super-frames, for an underlay TAP.
    pub const TUNNEL: TapOffloads = TapOffloads { csum: true, tso4: true, tso6: true, udp_tunnel: true };

    pub(super) fn raw(self) -> libc::c_uint {
        let mut f = 0;
        if self.csum {
            f |= libc::TUN_F_CSUM;
            if self.tso4 {
                f |= libc::TUN_F_TSO4;
            }
            if self.tso6 {
                f |= libc::TUN_F_TSO6;
            }
            if self.udp_tunnel && (self.tso4 || self.tso6) {
                f |= TUN_F_UDP_TUNNEL_GSO;
            }
        }
        f
    }

    /// Size of the virtio-net header these offloads need.
    pub(super) fn vnet_len(self) -> usize {
        if self.udp_tunnel {
            VNET_HDR_TNL_LEN
        } else {
            VNET_HDR_LEN
        }
    }
}

/// `TUN_F_UDP_TUNNEL_GSO` (Linux 6.17), missing from libc.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;

impl TapNic {
    /// Changes the offloads the kernel may use towards the brick, live (TUNSETOFFLOAD).
    pub fn set_offloads(&mut self, offloads: TapOffloads) -> Result<(), NicError> {
        if !self.cfg.vnet_hdr {
            return Err(NicError::Config("offloads need the virtio-net header (vnet_hdr)".into()));
        }
        if offloads.udp_tunnel != self.cfg.offloads.udp_tunnel {
            return Err(NicError::Config("udp_tunnel is fixed at creation (header size)".into()));
        }
        for q in &self.queues {
            // SAFETY: TUNSETOFFLOAD takes the flags by value.
            if unsafe { libc::ioctl(q.fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads.raw() as libc::c_ulong) }
                < 0
            {
                return Err(NicError::sys("TUNSETOFFLOAD", &self.name, io::Error::last_os_error()));
            }
        }
        self.cfg.offloads = offloads;
        Ok(())
    }
}

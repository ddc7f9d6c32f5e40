//! How VNIs flood broadcast, unknown-unicast and multicast (BUM) frames: the daemon's
//! default (`--bum-mode`, `--flood-vteps`) and each VNI's own setting (API `vni_set`), checked
//! against the underlay the same way wherever they come from.

use std::net::IpAddr;

use butterfly_api::BumMode;

/// Why a BUM mode cannot be used on this host's underlay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BumError {
    /// A flood VTEP of the other address family than the underlay.
    #[error("flood VTEP {ip} is an {} address but the underlay is {} (VTEP {local})", family(*.ip), family(*.local))]
    FloodFamily {
        /// The listed address.
        ip: IpAddr,
        /// This host's VTEP address.
        local: IpAddr,
    },
    /// This host's own VTEP address in its flood list.
    #[error("flood VTEP {0} is this host's own VTEP address")]
    FloodSelf(IpAddr),
    /// A multicast address in a flood list.
    #[error("flood VTEP {0} is a multicast address (a flood list holds unicast VTEP addresses)")]
    FloodMulticast(IpAddr),
    /// An address listed twice.
    #[error("flood VTEP {0} is listed twice")]
    FloodDuplicate(IpAddr),
    /// A broadcast, unspecified or otherwise unusable address.
    #[error("flood VTEP {0} is not a unicast address")]
    FloodNotUnicast(IpAddr),
    /// A group of the other address family than the underlay.
    #[error("group {group} is an {} address but the underlay is {} (VTEP {local})", family(*.group), family(*.local))]
    GroupFamily {
        /// The group.
        group: IpAddr,
        /// This host's VTEP address.
        local: IpAddr,
    },
    /// A group that is a unicast address.
    #[error("group {0} is not a multicast address")]
    GroupNotMulticast(IpAddr),
    /// A group whose scope never leaves the host.
    #[error("group {0} has a scope that does not leave the host (interface-local or reserved)")]
    GroupScope(IpAddr),
    /// A flood list given for EVPN.
    #[error("EVPN takes no flood list (it comes from type-3 routes)")]
    EvpnFloodList,
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// Checks a BUM mode for a daemon whose VTEP address is `local`: a flood list of unicast
/// addresses of the underlay's family, never `local`, each once; a group that is multicast,
/// of the underlay's family and (IPv6) of a scope that leaves the host. The error names the
/// first problem.
pub fn check(mode: &BumMode, local: IpAddr) -> Result<(), BumError> {
    match mode {
        BumMode::Unicast { flood } => {
            for (i, &ip) in flood.iter().enumerate() {
                if ip.is_ipv4() != local.is_ipv4() {
                    return Err(BumError::FloodFamily { ip, local });
                }
                if ip == local {
                    return Err(BumError::FloodSelf(ip));
                }
                if ip.is_multicast() {
                    return Err(BumError::FloodMulticast(ip));
                }
                if flood[..i].contains(&ip) {
                    return Err(BumError::FloodDuplicate(ip));
                }
                brick_vtep::check_remote(ip, local, "flood VTEP")
                    .map_err(|_| BumError::FloodNotUnicast(ip))?;
            }
        }
        BumMode::Multicast { group: Some(g) } => {
            let group = *g;
            if group.is_ipv4() != local.is_ipv4() {
                return Err(BumError::GroupFamily { group, local });
            }
            if !group.is_multicast() {
                return Err(BumError::GroupNotMulticast(group));
            }
            brick_vtep::check_group(group, local.is_ipv6()).map_err(|_| BumError::GroupScope(group))?;
        }
        BumMode::Multicast { group: None } => {}
        BumMode::Evpn { flood } => {
            if !flood.is_empty() {
                return Err(BumError::EvpnFloodList);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn flood(list: &[&str]) -> BumMode {
        BumMode::Unicast { flood: list.iter().map(|s| ip(s)).collect() }
    }

    #[test]
    fn flood_lists_and_groups_are_checked_against_the_underlay() {
        let v4 = ip("198.18.0.1");
        assert_eq!(check(&flood(&["198.18.0.2", "10.0.0.3"]), v4), Ok(()));
        assert_eq!(check(&flood(&[]), v4), Ok(()));
        assert_eq!(check(&BumMode::Multicast { group: None }, v4), Ok(()));
        assert_eq!(check(&BumMode::Multicast { group: Some(ip("239.1.2.3")) }, v4), Ok(()));
        assert_eq!(check(&BumMode::Multicast { group: Some(ip("ff05::7")) }, ip("fd00::1")), Ok(()));
        let cases = [
            (
                flood(&["fd00::2"]),
                v4,
                "flood VTEP fd00::2 is an IPv6 address but the underlay is IPv4 (VTEP 198.18.0.1)",
            ),
            (flood(&["10.0.0.2"]), ip("fd00::1"), "is an IPv4 address but the underlay is IPv6"),
            (
                flood(&["198.18.0.2", "198.18.0.1"]),
                v4,
                "flood VTEP 198.18.0.1 is this host's own VTEP address",
            ),
            (flood(&["224.0.0.9"]), v4, "flood VTEP 224.0.0.9 is a multicast address"),
            (flood(&["10.0.0.2", "10.0.0.2"]), v4, "flood VTEP 10.0.0.2 is listed twice"),
            (flood(&["255.255.255.255"]), v4, "flood VTEP 255.255.255.255 is not a unicast address"),
            (BumMode::Multicast { group: Some(ip("ff05::1")) }, v4, "group ff05::1 is an IPv6 address"),
            (
                BumMode::Multicast { group: Some(ip("10.0.0.1")) },
                v4,
                "group 10.0.0.1 is not a multicast address",
            ),
            (
                BumMode::Multicast { group: Some(ip("ff01::1")) },
                ip("fd00::1"),
                "scope that does not leave the host",
            ),
        ];
        for (mode, local, want) in cases {
            let e = check(&mode, local).unwrap_err().to_string();
            assert!(e.contains(want), "{mode:?}: {e}");
        }
    }
}

//! Drop reasons of the VTEP.

brick_core::drop_reasons! {
    /// Why the VTEP drops a packet; `NAMES` is its `Brick::drop_reasons`.
    pub enum VtepDrop {
        /// Shorter than its headers say.
        Trunc => "truncated",
        /// Outer dst MAC / IP is neither ours nor a joined group.
        NotUs => "not for us",
        /// Other ethertype, protocol or UDP port.
        NotVxlan => "not vxlan",
        /// Malformed IP / UDP / ARP header.
        BadHdr => "bad header",
        /// IPv4 header, UDP or ICMPv6 checksum wrong.
        BadCsum => "bad checksum",
        /// VXLAN I flag missing.
        BadVxlan => "bad vxlan header",
        /// No port for the VNI.
        UnknownVni => "unknown vni",
        /// Outer IPv4 fragment (VXLAN is never fragmented by us).
        Frag => "fragment",
        /// ARP/NDP/IGMP/MLD consumed by the VTEP itself.
        Control => "control",
        /// Frame from an east port with no VNI.
        NoVni => "port without vni",
        /// BUM with neither group nor flood list.
        NoTarget => "no flood target",
        /// Inner frame + overhead above the underlay MTU.
        TooBig => "too big",
        /// Next hop not resolved (hold queue full or resolution failed).
        Unresolved => "unresolved",
        /// No room to resolve a new next hop.
        NeighFull => "neighbour table full",
        /// No buffer for a replica or a control packet.
        Pool => "pool empty",
        /// Cannot prepend the outer headers.
        Headroom => "no headroom",
        /// Super-frame with malformed GSO metadata or headers.
        BadGso => "bad gso",
    }
}

/// Drop reasons of the VTEP, in `Brick::drop_reasons` order.
pub const DROP_REASONS: &[&str] = VtepDrop::NAMES;

//! Butterfly-style security groups turned into a [`Ruleset`].
//!
//! A NIC has IP addresses and a list of security group ids; a group has members (IP
//! addresses) and rules. [`ruleset_from_security_groups`] builds the NIC's ruleset:
//!
//! ```text
//! set default in block
//! set default out block
//! table <nic> { NIC IPs }                      # the NIC's own addresses
//! table <G> { members of G }                   # one per group referenced by a rule
//! # bootstrap (SgOptions::allow_dhcp / allow_ndp), all `quick`:
//! pass out quick inet proto udp from 0.0.0.0 port 68 to 255.255.255.255 port 67 keep state
//! pass in quick inet proto udp from any port 67 to any port 68 no state
//! pass out quick inet6 proto udp from fe80::/10 port 546 to ff02::1:2 port 547 keep state
//! pass in quick inet6 proto udp from fe80::/10 port 547 to fe80::/10 port 546 no state
//! pass out|in quick inet6 proto icmp6 all icmp6-type T no state   # NDP/MLD types
//! # outbound: without any OUTBOUND rule in the NIC's groups, everything from its own IPs
//! pass out from <nic> keep state
//! # ... else one rule per OUTBOUND rule, restricted to the NIC's own IPs:
//! pass out [inet|inet6] [proto P] from <nic> to CIDR|<G> [port A:B] keep state
//! # inbound: one rule per INBOUND rule
//! pass in [inet|inet6] [proto P] from CIDR|<G> [port A:B → destination port] keep state
//! ```
//!
//! Differences from Butterfly (on purpose): outbound rules are always restricted to the
//! NIC's own IPs and never land in the inbound set (Butterfly's full rebuild put them there
//! as `dst net` filters); inbound rules keep state, so their replies pass without an
//! outbound rule and a non-SYN TCP packet cannot open a connection; DHCP replies, DHCPv6
//! and the NDP/MLD messages IPv6 needs are let through explicitly (Butterfly relied on NPF
//! passing them). As in Butterfly, a rule naming a group that does not exist is skipped, a
//! group with no member matches nothing, protocol -1 means every protocol, and ports apply
//! to protocols 6 and 17 only (as the destination port range).

use std::net::IpAddr;

use crate::rule::*;

/// Direction of a security group rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SgDirection {
    /// Traffic towards the VM.
    Inbound,
    /// Traffic from the VM.
    Outbound,
}

/// Whom a security group rule is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SgTarget {
    /// A network (`/0` means every address of its family).
    Cidr(Cidr),
    /// The members of another (or the same) security group, by id.
    Group(String),
}

/// One security group rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SgRule {
    /// Direction.
    pub direction: SgDirection,
    /// IP protocol number, or -1 for all.
    pub protocol: i32,
    /// First destination port (TCP/UDP only).
    pub port_start: u16,
    /// Last destination port (TCP/UDP only).
    pub port_end: u16,
    /// Peer addresses (source for inbound, destination for outbound).
    pub target: SgTarget,
}

/// A security group.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SecurityGroup {
    /// Id (`sg-1`).
    pub id: String,
    /// Member addresses (used by rules of any group that reference this one).
    pub members: Vec<IpAddr>,
    /// Rules.
    pub rules: Vec<SgRule>,
}

/// Extra traffic the generated ruleset lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgOptions {
    /// DHCP (client 68 → server 67 broadcast, and replies) and DHCPv6 (546 ↔ 547 over
    /// link-local). Default true.
    pub allow_dhcp: bool,
    /// IPv6 neighbour discovery and MLD: out RS, NS, NA, MLD reports; in RA, NS, NA,
    /// MLD queries. Default true.
    pub allow_ndp: bool,
}

impl Default for SgOptions {
    fn default() -> Self {
        SgOptions { allow_dhcp: true, allow_ndp: true }
    }
}

/// A security group rule cannot be expressed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SgError {
    /// Protocol outside -1..=255.
    #[error("security group {group}: protocol {protocol} is not in -1..=255")]
    Protocol {
        /// Group id.
        group: String,
        /// Protocol given.
        protocol: i32,
    },
    /// Port range with start after end.
    #[error("security group {group}: port range {start}-{end} is empty")]
    PortRange {
        /// Group id.
        group: String,
        /// Start.
        start: u16,
        /// End.
        end: u16,
    },
}

/// Name of the table holding the NIC's own addresses.
pub const NIC_TABLE: &str = "nic";

fn table_name(id: &str, n: usize) -> String {
    let ok = !id.is_empty()
        && id.len() <= crate::parse::MAX_NAME
        && id != NIC_TABLE
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        id.to_string()
    } else {
        format!("sg_{n}")
    }
}

fn net(s: &str, len: u8) -> Cidr {
    Cidr::new(s.parse().expect("constant address"), len).expect("constant prefix")
}

fn list(c: Cidr) -> AddrSpec {
    AddrSpec::List(vec![c])
}

fn ports(lo: u16, hi: u16) -> Vec<PortRange> {
    vec![PortRange { lo, hi }]
}

/// Builds the ruleset of a NIC with addresses `nic_ips` in the groups `nic_groups` (ids, in
/// order; unknown ids are skipped), looking groups up in `groups`. See the module
/// documentation for the generated rules.
pub fn ruleset_from_security_groups(
    nic_ips: &[IpAddr],
    nic_groups: &[&str],
    groups: &[SecurityGroup],
    opts: &SgOptions,
) -> Result<Ruleset, SgError> {
    let find = |id: &str| groups.iter().find(|g| g.id == id);
    let mut rs = Ruleset::default();
    let mut own: Vec<Cidr> = nic_ips.iter().map(|ip| Cidr::host(*ip)).collect();
    own.dedup();
    rs.tables.push(Table { name: NIC_TABLE.into(), entries: own });
    if opts.allow_dhcp {
        rs.rules.extend(dhcp_rules());
    }
    if opts.allow_ndp {
        rs.rules.extend(ndp_rules());
    }
    // Rules of the NIC's groups, in order (each group once).
    let mut sg_rules: Vec<(&SecurityGroup, &SgRule)> = Vec::new();
    let mut seen_groups: Vec<&str> = Vec::new();
    for id in nic_groups {
        if seen_groups.contains(id) {
            continue;
        }
        seen_groups.push(id);
        if let Some(g) = find(id) {
            sg_rules.extend(g.rules.iter().map(|r| (g, r)));
        }
    }
    let has_outbound = sg_rules.iter().any(|(_, r)| r.direction == SgDirection::Outbound);
    if !has_outbound {
        let mut r = Rule::new(Action::Pass, Direction::Out);
        r.from.addr = AddrSpec::Table(NIC_TABLE.into());
        rs.rules.push(r);
    }
    // Group tables are created on first reference: (group id, table name).
    let mut group_tables: Vec<(String, String)> = Vec::new();
    for (g, sr) in sg_rules {
        let (proto, port_list) = proto_and_ports(g, sr)?;
        let (peer, family) = match &sr.target {
            SgTarget::Cidr(c) => {
                let fam = if c.addr.is_ipv4() { Family::Inet } else { Family::Inet6 };
                (if c.len == 0 { AddrSpec::Any } else { list(*c) }, Some(fam))
            }
            SgTarget::Group(id) => {
                let Some(target) = find(id) else { continue };
                (AddrSpec::Table(group_table(&mut rs, &mut group_tables, target)), None)
            }
        };
        let mut r = match sr.direction {
            SgDirection::Inbound => {
                let mut r = Rule::new(Action::Pass, Direction::In);
                r.from.addr = peer;
                r.to.ports = port_list;
                r
            }
            SgDirection::Outbound => {
                let mut r = Rule::new(Action::Pass, Direction::Out);
                r.from.addr = AddrSpec::Table(NIC_TABLE.into());
                r.to = Endpoint { addr: peer, ports: port_list };
                r
            }
        };
        r.family = family;
        r.proto = proto;
        rs.rules.push(r);
    }
    Ok(rs)
}

/// DHCP (v4 client ↔ server, v6 client ↔ relay/server), both ways, stateless replies.
fn dhcp_rules() -> Vec<Rule> {
    let rule = |dir, family, from: Endpoint, to: Endpoint, keep_state| {
        let mut r = Rule::new(Action::Pass, dir);
        r.quick = true;
        r.family = Some(family);
        r.proto = Some(Proto::UDP);
        r.from = from;
        r.to = to;
        r.keep_state = keep_state;
        r
    };
    let at = |addr, ports| Endpoint { addr, ports };
    vec![
        rule(
            Direction::Out,
            Family::Inet,
            at(list(net("0.0.0.0", 32)), ports(68, 68)),
            at(list(net("255.255.255.255", 32)), ports(67, 67)),
            true,
        ),
        rule(
            Direction::In,
            Family::Inet,
            at(AddrSpec::Any, ports(67, 67)),
            at(AddrSpec::Any, ports(68, 68)),
            false,
        ),
        rule(
            Direction::Out,
            Family::Inet6,
            at(list(net("fe80::", 10)), ports(546, 546)),
            at(list(net("ff02::1:2", 128)), ports(547, 547)),
            true,
        ),
        rule(
            Direction::In,
            Family::Inet6,
            at(list(net("fe80::", 10)), ports(547, 547)),
            at(list(net("fe80::", 10)), ports(546, 546)),
            false,
        ),
    ]
}

/// Neighbour discovery and MLD, stateless. Out: RS, NS, NA, MLDv1 report/done, MLDv2
/// report. In: RA, NS, NA, MLD query.
fn ndp_rules() -> Vec<Rule> {
    let mut rules = Vec::new();
    for (dir, types) in [
        (Direction::Out, &[133u8, 135, 136, 131, 132, 143][..]),
        (Direction::In, &[134u8, 135, 136, 130][..]),
    ] {
        for &ty in types {
            let mut r = Rule::new(Action::Pass, dir);
            r.quick = true;
            r.family = Some(Family::Inet6);
            r.proto = Some(Proto::ICMP6);
            r.icmp = Some(IcmpMatch { ty, code: None });
            r.keep_state = false;
            rules.push(r);
        }
    }
    rules
}

/// The protocol of group rule `sr` (`None`: any) and its ports (only for protocols with
/// ports), checked.
fn proto_and_ports(g: &SecurityGroup, sr: &SgRule) -> Result<(Option<Proto>, Vec<PortRange>), SgError> {
    if !(-1..=255).contains(&sr.protocol) {
        return Err(SgError::Protocol { group: g.id.clone(), protocol: sr.protocol });
    }
    let proto = (sr.protocol >= 0).then_some(Proto(sr.protocol as u8));
    if !proto.is_some_and(Proto::has_ports) {
        return Ok((proto, Vec::new()));
    }
    if sr.port_start > sr.port_end {
        return Err(SgError::PortRange { group: g.id.clone(), start: sr.port_start, end: sr.port_end });
    }
    Ok((proto, ports(sr.port_start, sr.port_end)))
}

/// The name of group `target`'s member table, created in `rs` on its first reference.
fn group_table(rs: &mut Ruleset, group_tables: &mut Vec<(String, String)>, target: &SecurityGroup) -> String {
    if let Some((_, n)) = group_tables.iter().find(|(g, _)| *g == target.id) {
        return n.clone();
    }
    let n = table_name(&target.id, group_tables.len());
    let mut entries: Vec<Cidr> = target.members.iter().map(|ip| Cidr::host(*ip)).collect();
    entries.dedup();
    rs.tables.push(Table { name: n.clone(), entries });
    group_tables.push((target.id.clone(), n.clone()));
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::CompiledRuleset;
    use crate::wire::Flow;

    fn v4(s: &str) -> u128 {
        u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
    }

    fn sg(id: &str, members: &[&str], rules: Vec<SgRule>) -> SecurityGroup {
        SecurityGroup { id: id.into(), members: members.iter().map(|m| m.parse().unwrap()).collect(), rules }
    }

    fn rule(dir: SgDirection, proto: i32, ports: (u16, u16), target: SgTarget) -> SgRule {
        SgRule { direction: dir, protocol: proto, port_start: ports.0, port_end: ports.1, target }
    }

    fn cidr(s: &str) -> SgTarget {
        let (a, l) = s.split_once('/').unwrap();
        SgTarget::Cidr(Cidr::new(a.parse().unwrap(), l.parse().unwrap()).unwrap())
    }

    fn tcp(src: &str, dst: &str, dport: u16) -> Flow {
        Flow { proto: 6, src: v4(src), dst: v4(dst), sport: 40000, dport, tcp_flags: 2, ..Flow::default() }
    }

    #[test]
    fn butterfly_groups_to_rules() {
        let groups = vec![
            sg(
                "sg-1",
                &[],
                vec![
                    rule(SgDirection::Inbound, 6, (4454, 4454), cidr("0.0.0.0/0")),
                    rule(SgDirection::Inbound, -1, (0, 0), SgTarget::Group("sg-2".into())),
                    rule(SgDirection::Inbound, 17, (5000, 5010), cidr("10.0.0.0/8")),
                    rule(SgDirection::Inbound, 6, (22, 22), SgTarget::Group("missing".into())),
                ],
            ),
            sg("sg-2", &["42.0.0.7", "42.0.0.8"], vec![]),
        ];
        let nic: Vec<IpAddr> = vec!["42.0.0.1".parse().unwrap()];
        let rs =
            ruleset_from_security_groups(&nic, &["sg-1", "nope"], &groups, &SgOptions::default()).unwrap();
        // The text round-trips through the parser.
        assert_eq!(Ruleset::parse(&rs.to_string()).unwrap(), rs);
        let c = CompiledRuleset::new(rs).unwrap();
        use Action::*;
        let cases = [
            (Direction::In, tcp("1.2.3.4", "42.0.0.1", 4454), Pass),
            (Direction::In, tcp("1.2.3.4", "42.0.0.1", 4453), Block),
            (Direction::In, tcp("42.0.0.7", "42.0.0.1", 1), Pass), // member of sg-2, any proto
            (Direction::In, tcp("42.0.0.9", "42.0.0.1", 1), Block),
            (Direction::In, tcp("1.2.3.4", "42.0.0.1", 22), Block), // rule on a missing group skipped
            (Direction::Out, tcp("42.0.0.1", "8.8.8.8", 443), Pass), // no outbound rule: own IPs pass
            (Direction::Out, tcp("42.0.0.2", "8.8.8.8", 443), Block), // not its IP
        ];
        for (d, f, a) in cases {
            assert_eq!(c.decide(d, &f).action, a, "{d:?} {f:?}");
        }
        let mut udp = tcp("10.1.1.1", "42.0.0.1", 5005);
        udp.proto = 17;
        assert_eq!(c.decide(Direction::In, &udp).action, Pass);
        udp.src = v4("11.1.1.1");
        assert_eq!(c.decide(Direction::In, &udp).action, Block);
        // DHCP discover from 0.0.0.0 passes, with state.
        let mut dhcp = udp;
        (dhcp.src, dhcp.dst, dhcp.sport, dhcp.dport) = (0, v4("255.255.255.255"), 68, 67);
        let d = c.decide(Direction::Out, &dhcp);
        assert_eq!((d.action, d.keep_state), (Pass, true));
    }

    #[test]
    fn outbound_rules_restrict_destinations() {
        let groups =
            vec![sg("web", &[], vec![rule(SgDirection::Outbound, 6, (443, 443), cidr("8.8.8.0/24"))])];
        let nic: Vec<IpAddr> = vec!["42.0.0.1".parse().unwrap()];
        let rs = ruleset_from_security_groups(&nic, &["web"], &groups, &SgOptions::default()).unwrap();
        let c = CompiledRuleset::new(rs).unwrap();
        assert_eq!(c.decide(Direction::Out, &tcp("42.0.0.1", "8.8.8.8", 443)).action, Action::Pass);
        assert_eq!(c.decide(Direction::Out, &tcp("42.0.0.1", "8.8.8.8", 80)).action, Action::Block);
        assert_eq!(c.decide(Direction::Out, &tcp("42.0.0.1", "9.9.9.9", 443)).action, Action::Block);
        assert_eq!(c.decide(Direction::Out, &tcp("42.0.0.2", "8.8.8.8", 443)).action, Action::Block);
    }

    #[test]
    fn invalid_rules_are_errors() {
        let g = vec![sg("a", &[], vec![rule(SgDirection::Inbound, 300, (0, 0), cidr("0.0.0.0/0"))])];
        assert!(matches!(
            ruleset_from_security_groups(&[], &["a"], &g, &SgOptions::default()),
            Err(SgError::Protocol { .. })
        ));
        let g = vec![sg("a", &[], vec![rule(SgDirection::Inbound, 6, (9, 8), cidr("0.0.0.0/0"))])];
        assert!(matches!(
            ruleset_from_security_groups(&[], &["a"], &g, &SgOptions::default()),
            Err(SgError::PortRange { .. })
        ));
        // Odd group ids get safe table names.
        let g = vec![
            sg("a", &[], vec![rule(SgDirection::Inbound, -1, (0, 0), SgTarget::Group("we ird".into()))]),
            sg("we ird", &["1.1.1.1"], vec![]),
        ];
        let rs = ruleset_from_security_groups(&[], &["a"], &g, &SgOptions::default()).unwrap();
        assert!(rs.table("sg_0").is_some());
        assert_eq!(Ruleset::parse(&rs.to_string()).unwrap(), rs);
    }
}

//! The rule language's syntax tree and its canonical printing.
//!
//! Every type prints ([`std::fmt::Display`]) to the canonical text the parser reads back:
//! `parse(print(r)) == r` for every well-formed value (proved by a property test).

use std::fmt;
use std::net::IpAddr;

/// What a rule does with the packets it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let the packet through.
    Pass,
    /// Drop it.
    Block,
}

/// Which traffic a rule applies to, seen from the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards the VM (packets arriving on the firewall's west side).
    In,
    /// From the VM (packets arriving on the firewall's east side).
    Out,
}

impl Direction {
    /// The other direction.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::In => Direction::Out,
            Direction::Out => Direction::In,
        }
    }
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Address family restriction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// IPv4 (`inet`).
    Inet,
    /// IPv6 (`inet6`).
    Inet6,
}

/// An IP protocol number; prints as `tcp`, `udp`, `icmp`, `icmp6` or the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Proto(pub u8);

impl Proto {
    /// TCP.
    pub const TCP: Proto = Proto(6);
    /// UDP.
    pub const UDP: Proto = Proto(17);
    /// ICMP.
    pub const ICMP: Proto = Proto(1);
    /// ICMPv6.
    pub const ICMP6: Proto = Proto(58);

    /// Whether the protocol has ports the rule language can match (TCP, UDP).
    pub fn has_ports(self) -> bool {
        self == Proto::TCP || self == Proto::UDP
    }
}

/// An address or a network: `10.0.0.0/8`, `fd00::1`. The address is kept as written (host
/// bits are not cleared; they are ignored when matching).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Address.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub len: u8,
}

impl Cidr {
    /// A single host.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr { addr, len: if addr.is_ipv4() { 32 } else { 128 } }
    }

    /// A network; `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (len <= max).then_some(Cidr { addr, len })
    }

    /// Whether `self` contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len as u32) };
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len as u32) };
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let full = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == full {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// The address part of `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AddrSpec {
    /// `any`.
    Any,
    /// One address/network, or a list `{ a, b/24 }` (never empty).
    List(Vec<Cidr>),
    /// A table declared in the ruleset: `<name>`.
    Table(String),
}

/// An inclusive port range; `lo == hi` is a single port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (≥ `lo`).
    pub hi: u16,
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

/// `from …` or `to …`: addresses and, for TCP/UDP, ports (empty = any port).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Addresses.
    pub addr: AddrSpec,
    /// Ports; empty means any.
    pub ports: Vec<PortRange>,
}

impl Endpoint {
    /// `any`, any port.
    pub fn any() -> Endpoint {
        Endpoint { addr: AddrSpec::Any, ports: Vec::new() }
    }

    fn is_any(&self) -> bool {
        self.addr == AddrSpec::Any && self.ports.is_empty()
    }
}

/// `icmp-type T [code C]` (or `icmp6-type`, following the rule's protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    /// ICMP type.
    pub ty: u8,
    /// ICMP code; `None` matches every code.
    pub code: Option<u8>,
}

/// One filtering rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Pass or block.
    pub action: Action,
    /// In (towards the VM) or out (from the VM).
    pub direction: Direction,
    /// `quick`: the first matching quick rule decides at once.
    pub quick: bool,
    /// `inet` / `inet6`; `None` matches both.
    pub family: Option<Family>,
    /// `proto …`; `None` matches every protocol.
    pub proto: Option<Proto>,
    /// Source.
    pub from: Endpoint,
    /// Destination.
    pub to: Endpoint,
    /// ICMP type/code, only with `proto icmp` or `proto icmp6`.
    pub icmp: Option<IcmpMatch>,
    /// `keep state` (only on pass rules; the default for them) or `no state`.
    pub keep_state: bool,
}

impl Rule {
    /// `pass|block DIR all` with defaults (`keep state` for pass).
    pub fn new(action: Action, direction: Direction) -> Rule {
        Rule {
            action,
            direction,
            quick: false,
            family: None,
            proto: None,
            from: Endpoint::any(),
            to: Endpoint::any(),
            icmp: None,
            keep_state: action == Action::Pass,
        }
    }
}

fn write_addrs(f: &mut fmt::Formatter<'_>, a: &AddrSpec) -> fmt::Result {
    match a {
        AddrSpec::Any => f.write_str("any"),
        AddrSpec::Table(t) => write!(f, "<{t}>"),
        AddrSpec::List(l) if l.len() == 1 => write!(f, "{}", l[0]),
        AddrSpec::List(l) => {
            f.write_str("{ ")?;
            for (i, c) in l.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str(" }")
        }
    }
}

fn write_ports(f: &mut fmt::Formatter<'_>, p: &[PortRange]) -> fmt::Result {
    if p.is_empty() {
        return Ok(());
    }
    f.write_str(" port ")?;
    if p.len() == 1 {
        return write!(f, "{}", p[0]);
    }
    f.write_str("{ ")?;
    for (i, r) in p.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{r}")?;
    }
    f.write_str(" }")
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Proto::TCP => f.write_str("tcp"),
            Proto::UDP => f.write_str("udp"),
            Proto::ICMP => f.write_str("icmp"),
            Proto::ICMP6 => f.write_str("icmp6"),
            Proto(n) => write!(f, "{n}"),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.action {
            Action::Pass => "pass",
            Action::Block => "block",
        })?;
        f.write_str(match self.direction {
            Direction::In => " in",
            Direction::Out => " out",
        })?;
        if self.quick {
            f.write_str(" quick")?;
        }
        match self.family {
            Some(Family::Inet) => f.write_str(" inet")?,
            Some(Family::Inet6) => f.write_str(" inet6")?,
            None => {}
        }
        if let Some(p) = self.proto {
            write!(f, " proto {p}")?;
        }
        if self.from.is_any() && self.to.is_any() {
            f.write_str(" all")?;
        } else {
            if !self.from.is_any() {
                f.write_str(" from ")?;
                write_addrs(f, &self.from.addr)?;
                write_ports(f, &self.from.ports)?;
            }
            if !self.to.is_any() {
                f.write_str(" to ")?;
                write_addrs(f, &self.to.addr)?;
                write_ports(f, &self.to.ports)?;
            }
        }
        if let Some(i) = self.icmp {
            let kw = if self.proto == Some(Proto::ICMP6) { "icmp6-type" } else { "icmp-type" };
            write!(f, " {kw} {}", i.ty)?;
            if let Some(c) = i.code {
                write!(f, " code {c}")?;
            }
        }
        if self.action == Action::Pass {
            f.write_str(if self.keep_state { " keep state" } else { " no state" })?;
        }
        Ok(())
    }
}

/// A named set of addresses (for example a security group's members): `table <name> { … }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    /// Name, referenced as `<name>`.
    pub name: String,
    /// Members (may be empty: then the table matches nothing).
    pub entries: Vec<Cidr>,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "table <{}> {{", self.name)?;
        for (i, c) in self.entries.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            write!(f, "{c}")?;
        }
        f.write_str(if self.entries.is_empty() { "}" } else { " }" })
    }
}

/// A whole ruleset: default policies, tables and rules, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ruleset {
    /// What happens to inbound IP packets no rule matches (`set default in …`).
    pub default_in: Action,
    /// What happens to outbound IP packets no rule matches (`set default out …`).
    pub default_out: Action,
    /// Tables, referenced by rules as `<name>`.
    pub tables: Vec<Table>,
    /// Rules, in evaluation order.
    pub rules: Vec<Rule>,
}

impl Default for Ruleset {
    fn default() -> Self {
        Ruleset {
            default_in: Action::Block,
            default_out: Action::Block,
            tables: Vec::new(),
            rules: Vec::new(),
        }
    }
}

impl Ruleset {
    /// The default policy of a direction.
    pub fn default_for(&self, d: Direction) -> Action {
        match d {
            Direction::In => self.default_in,
            Direction::Out => self.default_out,
        }
    }

    /// The table called `name`.
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = |a: Action| if a == Action::Pass { "pass" } else { "block" };
        writeln!(f, "set default in {}", a(self.default_in))?;
        writeln!(f, "set default out {}", a(self.default_out))?;
        for t in &self.tables {
            writeln!(f, "{t}")?;
        }
        for r in &self.rules {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

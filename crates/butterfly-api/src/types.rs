//! Validated, typed values of the API: what a [`Handler`](crate::Handler)
//! receives and returns. Conversion from the protobuf messages applies
//! Butterfly's validation rules and canonicalisation; conversion back
//! produces Butterfly's reply layout.

use crate::pb::message_v0 as v0;
use crate::stdhash::std_hash;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Largest valid VNI (24 bits).
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// A request failed validation. `Display` gives the description sent in
/// `Status.error.description`: Butterfly's text, followed by `": "` and a
/// detail, except for IP conversion errors which use Butterfly's exact
/// `can't convert "X" to IP`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A NIC (nic_add) is malformed.
    #[error("Bad NIC format: {0}")]
    Nic(String),
    /// A nic_update request is malformed.
    #[error("Bad Nic update format: {0}")]
    NicUpdate(String),
    /// A security group is malformed.
    #[error("Bad Security Group format: {0}")]
    Sg(String),
    /// A rule is malformed.
    #[error("Bad Security Group rule format: {0}")]
    Rule(String),
    /// An IP address does not parse.
    #[error("can't convert \"{0}\" to IP")]
    Ip(String),
    /// An app_config request is invalid.
    #[error("Application configuration failed: {0}")]
    AppConfig(String),
    /// An underlay_trace request is malformed (butterfly-rs extension).
    #[error("Bad underlay trace request: {0}")]
    UnderlayTrace(String),
    /// A vni_set or vni_details request is malformed (butterfly-rs extension).
    #[error("Bad VNI format: {0}")]
    Vni(String),
}

/// Parses an IPv4 or IPv6 address the way `inet_pton` does (no leading
/// zeros in IPv4 octets, IPv6 with optional embedded IPv4).
pub fn parse_ip(text: &str) -> Result<IpAddr, ValidationError> {
    IpAddr::from_str(text).map_err(|_| ValidationError::Ip(text.to_string()))
}

/// A MAC address as given by the client (validated: six hex pairs separated
/// by `:`). The client's spelling is kept and echoed back, like Butterfly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr {
    octets: [u8; 6],
    text: String,
}

/// A MAC address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex pairs separated by ':' (17 characters)")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// The six bytes, in transmission order.
    pub fn octets(&self) -> [u8; 6] {
        self.octets
    }
    /// The text as given by the client.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let bytes = s.as_bytes();
        // ASCII only: the slicing below is by byte, and must not split a character.
        if bytes.len() != 17 || !s.is_ascii() {
            return Err(err());
        }
        let mut octets = [0u8; 6];
        for (i, octet) in octets.iter_mut().enumerate() {
            let part = &s[i * 3..i * 3 + 2];
            if !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
            if i < 5 && bytes[i * 3 + 2] != b':' {
                return Err(err());
            }
        }
        Ok(MacAddr { octets, text: s.to_string() })
    }
}

impl MacAddr {
    /// The modified EUI-64 IPv6 link-local address of this MAC (RFC 4291 appendix A), the
    /// one guests configure by default: 52:54:00:12:34:56 → fe80::5054:ff:fe12:3456.
    pub fn eui64_link_local(&self) -> Ipv6Addr {
        let m = self.octets;
        Ipv6Addr::from([0xfe, 0x80, 0, 0, 0, 0, 0, 0, m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]])
    }
}

impl TryFrom<String> for MacAddr {
    type Error = MacParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.text
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Kind of NIC endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum NicType {
    /// vhost-user socket served by the daemon.
    #[default]
    VhostUserServer,
    /// Kernel TAP interface named after the NIC id.
    Tap,
    /// Built-in benchmark endpoint.
    Bench,
}

impl NicType {
    fn to_pb(self) -> v0::nic::Type {
        match self {
            NicType::VhostUserServer => v0::nic::Type::VhostUserServer,
            NicType::Tap => v0::nic::Type::Tap,
            NicType::Bench => v0::nic::Type::Bench,
        }
    }
}

/// Role of a BENCH NIC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Bench {
    /// Sends ICMP echo requests to `dip` / `dmac` and measures replies.
    IcmpSndLike {
        /// Destination IP.
        dip: IpAddr,
        /// Destination MAC.
        dmac: MacAddr,
    },
    /// Answers ICMP echo requests sent to the NIC's first IP.
    IcmpRcvLike,
}

/// A validated NIC creation request (nic_add).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    /// NIC id (not validated, may be empty, like Butterfly).
    pub id: String,
    /// MAC address.
    pub mac: MacAddr,
    /// VNI, at most [`VNI_MAX`].
    pub vni: u32,
    /// IPs, canonical and without duplicates (first occurrence order).
    pub ips: Vec<IpAddr>,
    /// Security group ids, without duplicates (first occurrence order).
    pub security_groups: Vec<String>,
    /// ARP anti-spoofing.
    pub ip_anti_spoof: bool,
    /// Mirrored NIC id (stored and echoed only).
    pub sniff_target_nic_id: Option<String>,
    /// No firewall, no anti-spoofing.
    pub bypass_filtering: bool,
    /// Endpoint kind.
    pub nic_type: NicType,
    /// Requested packet trace (None: the daemon's default).
    pub packet_trace: Option<bool>,
    /// Requested pcap path (None: the daemon's default).
    pub packet_trace_path: Option<String>,
    /// BENCH parameters (Some exactly when `nic_type` is BENCH).
    pub bench: Option<Bench>,
    /// butterfly-rs extension: IPv6 link-local addresses the NIC may use besides the EUI-64
    /// one of its MAC ([`MacAddr::eui64_link_local`]), when anti-spoofing is on. All in
    /// fe80::/10, canonical, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local: Vec<Ipv6Addr>,
    /// butterfly-rs: the daemon is the vhost-user client of the socket (QEMU serves it),
    /// and reconnects by itself; only for [`NicType::VhostUserServer`] NICs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vhost_user_client: bool,
}

/// A validated nic_import (butterfly-rs extension): connections for a NIC's firewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicImport {
    /// The NIC.
    pub id: String,
    /// What nic_export returned (empty: no connections).
    pub data: Vec<u8>,
}

/// What a nic_import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NicImported {
    /// Connections imported.
    pub imported: u32,
    /// Connections the NIC's rules do not allow, left out.
    pub skipped: u32,
}

/// A NIC as stored by the daemon: the spec plus what the daemon decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicInfo {
    /// The validated request that created (or last updated) the NIC.
    pub spec: NicSpec,
    /// Endpoint path: vhost-user socket, TAP name or `(nil)`.
    pub path: String,
    /// Effective packet trace state.
    pub packet_trace: bool,
    /// Effective pcap path.
    pub packet_trace_path: String,
}

/// A validated nic_update: `None` = leave unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicUpdate {
    /// NIC id.
    pub id: String,
    /// New anti-spoofing setting.
    pub ip_anti_spoof: Option<bool>,
    /// Replacement IP list (`Some(vec![])` clears).
    pub ips: Option<Vec<IpAddr>>,
    /// Replacement security groups (`Some(vec![])` clears).
    pub security_groups: Option<Vec<String>>,
    /// Start/stop tracing.
    pub packet_trace: Option<bool>,
    /// New pcap path.
    pub packet_trace_path: Option<String>,
    /// Replacement extra link-local addresses (`Some(vec![])` clears).
    #[serde(default)]
    pub link_local: Option<Vec<Ipv6Addr>>,
}

/// Byte counters of a NIC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NicStats {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// butterfly-rs: a BENCH NIC's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<crate::BenchStats>,
}

/// Rule direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Direction {
    /// Towards the NIC (into the VM).
    Inbound,
    /// From the NIC (out of the VM).
    Outbound,
}

/// An IP block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    /// Address (canonical, NOT masked: echoed as given, like Butterfly).
    pub address: IpAddr,
    /// Prefix length (<= 32 for IPv4, <= 128 for IPv6).
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// Who a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RulePeer {
    /// Peers in an address block.
    Cidr(Cidr),
    /// Peers that are members of a security group.
    SecurityGroup(String),
}

/// A validated firewall rule. Ports are kept only for TCP (6) and UDP (17),
/// where they are mandatory; for other protocols they are dropped (Butterfly
/// never shows them either).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Direction.
    pub direction: Direction,
    /// IP protocol number, -1 = all.
    pub protocol: i16,
    /// Port range (inclusive) for TCP/UDP.
    pub ports: Option<(u16, u16)>,
    /// Peers.
    pub peer: RulePeer,
}

impl Rule {
    /// Butterfly's rule key: `direction-protocol-port_start-port_end-cidr-sg`.
    pub fn key(&self) -> String {
        let (ps, pe) = self.ports.unwrap_or((0, 0));
        let (cidr, sg) = match &self.peer {
            RulePeer::Cidr(c) => (c.to_string(), ""),
            RulePeer::SecurityGroup(s) => ("/0".to_string(), s.as_str()),
        };
        let dir = match self.direction {
            Direction::Inbound => 0,
            Direction::Outbound => 1,
        };
        format!("{dir}-{}-{ps}-{pe}-{cidr}-{sg}", self.protocol)
    }

    /// Position key used to order rules in lists: libstdc++ `std::hash` of
    /// [`Rule::key`] (Butterfly's order), then the key itself.
    pub fn order_key(&self) -> (u64, String) {
        let k = self.key();
        (std_hash(k.as_bytes()), k)
    }

    /// The rule in C++ protobuf TextFormat, as Butterfly's CLI prints it
    /// before hashing it into a rule id.
    pub fn cpp_text_format(&self) -> String {
        let mut s = String::new();
        let dir = match self.direction {
            Direction::Inbound => "INBOUND",
            Direction::Outbound => "OUTBOUND",
        };
        s.push_str(&format!("direction: {dir}\nprotocol: {}\n", self.protocol));
        if let Some((a, b)) = self.ports {
            s.push_str(&format!("port_start: {a}\nport_end: {b}\n"));
        }
        match &self.peer {
            RulePeer::Cidr(c) => {
                s.push_str(&format!("cidr {{\n  address: \"{}\"\n  mask_size: {}\n}}\n", c.address, c.prefix))
            }
            RulePeer::SecurityGroup(sg) => s.push_str(&format!("security_group: \"{}\"\n", escape_c(sg))),
        }
        s
    }

    /// Butterfly CLI's rule id: 16 hex digits of `std::hash` of
    /// [`Rule::cpp_text_format`].
    pub fn cli_id(&self) -> String {
        format!("{:016x}", std_hash(self.cpp_text_format().as_bytes()))
    }
}

fn escape_c(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03o}")),
        }
    }
    out
}

/// A validated security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// Id.
    pub id: String,
    /// Member IPs, canonical, without duplicates, insertion order.
    pub members: Vec<IpAddr>,
    /// Rules without duplicates, in [`Rule::order_key`] order.
    pub rules: Vec<Rule>,
}

impl SecurityGroup {
    /// An empty group.
    pub fn new(id: impl Into<String>) -> Self {
        SecurityGroup { id: id.into(), members: Vec::new(), rules: Vec::new() }
    }

    /// Adds a member; false if already present.
    pub fn add_member(&mut self, ip: IpAddr) -> bool {
        if self.members.contains(&ip) {
            return false;
        }
        self.members.push(ip);
        true
    }

    /// Adds a rule at its ordered position; false if already present.
    pub fn add_rule(&mut self, rule: Rule) -> bool {
        if self.rules.contains(&rule) {
            return false;
        }
        let key = rule.order_key();
        let pos = self.rules.partition_point(|r| r.order_key() < key);
        self.rules.insert(pos, rule);
        true
    }
}

/// Log level of app_config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// No logs.
    None,
    /// Errors.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational.
    Info,
    /// Everything.
    Debug,
}

impl FromStr for LogLevel {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => LogLevel::None,
            "error" => LogLevel::Error,
            "warning" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return Err(ValidationError::AppConfig("log level: failed ".into())),
        })
    }
}

/// A validated app_config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppConfig {
    /// New log level.
    pub log_level: Option<LogLevel>,
}

/// app_status reply values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppStatus {
    /// Start time, seconds since the epoch.
    pub start_date: u64,
    /// Current time, seconds since the epoch.
    pub current_date: u64,
    /// Requests received so far.
    pub request_counter: u64,
    /// DOT graph of the data plane.
    pub graph_dot: String,
}

/// The underlay trace (butterfly-rs extension): as asked by `underlay_trace` (on into
/// `path`, or the daemon's default file when `None`; or off), or as it is (`path` only
/// while on).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnderlayTrace {
    /// Recording.
    pub enabled: bool,
    /// The pcap file.
    pub path: Option<String>,
}

impl UnderlayTrace {
    /// A validated underlay_trace request: the change asked, or `None` (`enabled` absent)
    /// to only ask how the trace is. A path goes only with `enabled: true`, not empty,
    /// without NUL.
    pub fn request(t: &v0::UnderlayTrace) -> Result<Option<Self>, ValidationError> {
        let bad = |m: &str| ValidationError::UnderlayTrace(m.to_string());
        let Some(enabled) = t.enabled else {
            return match t.path {
                Some(_) => Err(bad("a path needs enabled: true")),
                None => Ok(None),
            };
        };
        if let Some(p) = &t.path {
            if !enabled {
                return Err(bad("a path is for switching the trace on"));
            }
            if p.is_empty() || p.contains('\0') {
                return Err(bad("the path is empty or has a NUL byte"));
            }
        }
        Ok(Some(UnderlayTrace { enabled, path: t.path.clone() }))
    }
}

impl From<&UnderlayTrace> for v0::UnderlayTrace {
    fn from(t: &UnderlayTrace) -> Self {
        v0::UnderlayTrace { enabled: Some(t.enabled), path: t.path.clone() }
    }
}

/// How a VNI floods broadcast, unknown-unicast and multicast (BUM) frames (a butterfly-rs
/// extension of the API: `vni_set`, `vni_details`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BumMode {
    /// To a multicast group, joined with IGMP/MLD; `None`: the VNI's default group.
    Multicast {
        /// The group.
        group: Option<IpAddr>,
    },
    /// A copy to every remote VTEP of the list (head-end replication), for underlays
    /// without multicast.
    Unicast {
        /// Remote VTEP addresses: unicast, one family, each once (checked).
        flood: Vec<IpAddr>,
    },
    /// BGP EVPN (through FRR): the VNI's local MACs and IPs are advertised as type-2 routes,
    /// the VNI as a type-3 route, and the flood list is the remote VTEPs that advertise the
    /// VNI. `flood` is empty in a setting (`vni_set`); `vni_details` fills it with the
    /// remote VTEPs of the type-3 routes known.
    Evpn {
        /// Remote VTEPs of the VNI's type-3 routes (reported, never set).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        flood: Vec<IpAddr>,
    },
}

impl fmt::Display for BumMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BumMode::Multicast { group: Some(g) } => write!(f, "multicast group {g}"),
            BumMode::Multicast { group: None } => f.write_str("multicast (default group)"),
            BumMode::Unicast { flood } if flood.is_empty() => f.write_str("unicast flood list (empty)"),
            BumMode::Unicast { flood } => {
                let list: Vec<String> = flood.iter().map(IpAddr::to_string).collect();
                write!(f, "unicast flood list {}", list.join(", "))
            }
            BumMode::Evpn { flood } if flood.is_empty() => f.write_str("evpn"),
            BumMode::Evpn { flood } => {
                let list: Vec<String> = flood.iter().map(IpAddr::to_string).collect();
                write!(f, "evpn, flood list {} (type-3 routes)", list.join(", "))
            }
        }
    }
}

/// A validated vni_set: `mode` `None` forgets the VNI's own setting (it follows the
/// daemon's default again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniSet {
    /// The VNI (≤ [`VNI_MAX`]).
    pub vni: u32,
    /// The VNI's own mode, or `None`.
    pub mode: Option<BumMode>,
}

/// One VNI as vni_details reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VniState {
    /// The VNI.
    pub vni: u32,
    /// The mode in effect (the VNI's own, or the daemon's default).
    pub mode: BumMode,
    /// Whether the VNI has a setting of its own.
    pub own: bool,
    /// Remote VTEPs known in the VNI (behind its learnt MAC entries).
    pub remote_vteps: Vec<IpAddr>,
    /// Local NICs in the VNI.
    pub nics: u32,
}

// ---------------------------------------------------------------------------
// protobuf -> typed (validation)

/// The items without repeats, first occurrences in order. Hashed, not compared pairwise: a
/// request near the size limit can carry hundreds of thousands of items.
fn dedup<T: std::hash::Hash + Eq + Clone>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

fn parse_ips<'a>(ips: impl IntoIterator<Item = &'a String>) -> Result<Vec<IpAddr>, ValidationError> {
    let mut v = Vec::new();
    for ip in ips {
        v.push(parse_ip(ip)?);
    }
    Ok(dedup(v))
}

/// Link-local addresses (fe80::/10) of a NIC, canonical and without duplicates; `bad` makes
/// the error of the request kind (nic_add or nic_update).
fn parse_link_local<'a>(
    addrs: impl IntoIterator<Item = &'a String>,
    bad: fn(String) -> ValidationError,
) -> Result<Vec<Ipv6Addr>, ValidationError> {
    let mut v = Vec::new();
    for text in addrs {
        match parse_ip(text)? {
            IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => v.push(a),
            _ => return Err(bad(format!("link-local address {text} is not in fe80::/10"))),
        }
    }
    Ok(dedup(v))
}

impl TryFrom<&v0::Nic> for NicSpec {
    type Error = ValidationError;
    fn try_from(n: &v0::Nic) -> Result<Self, ValidationError> {
        // The id names files (the vhost-user socket, the default trace): it must stay one
        // path component.
        if n.id.is_empty() || n.id == "." || n.id == ".." || n.id.contains(['/', '\0']) {
            return Err(ValidationError::Nic(format!("NIC id {:?} must be a name without '/' or NUL", n.id)));
        }
        let mac: MacAddr = n.mac.parse().map_err(|e: MacParseError| ValidationError::Nic(e.to_string()))?;
        if n.vni > VNI_MAX {
            return Err(ValidationError::Nic(format!("VNI {} is not below 2^24", n.vni)));
        }
        let ips = parse_ips(&n.ip)?;
        let nic_type = match n.r#type {
            None => NicType::VhostUserServer,
            Some(t) => match v0::nic::Type::try_from(t) {
                Ok(v0::nic::Type::VhostUserServer) => NicType::VhostUserServer,
                Ok(v0::nic::Type::Tap) => NicType::Tap,
                Ok(v0::nic::Type::Bench) => NicType::Bench,
                Err(_) => return Err(ValidationError::Nic(format!("unknown NIC type {t}"))),
            },
        };
        let bench = if nic_type == NicType::Bench {
            if ips.is_empty() {
                return Err(ValidationError::Nic("a BENCH NIC needs an IP".into()));
            }
            match n.btype.as_deref() {
                Some("ICMP_SND_LIKE") => {
                    let (Some(dip), Some(dmac)) = (&n.dip, &n.dmac) else {
                        return Err(ValidationError::Nic("ICMP_SND_LIKE needs dip and dmac".into()));
                    };
                    let dip = parse_ip(dip)?;
                    let dmac =
                        dmac.parse().map_err(|e: MacParseError| ValidationError::Nic(e.to_string()))?;
                    // The requests leave from the NIC's first IP of dip's family.
                    if !ips.iter().any(|ip| ip.is_ipv4() == dip.is_ipv4()) {
                        let family = if dip.is_ipv4() { "IPv4" } else { "IPv6" };
                        return Err(ValidationError::Nic(format!(
                            "ICMP_SND_LIKE to {dip} needs an {family} address on the NIC to send from"
                        )));
                    }
                    Some(Bench::IcmpSndLike { dip, dmac })
                }
                Some("ICMP_RCV_LIKE") => Some(Bench::IcmpRcvLike),
                other => {
                    return Err(ValidationError::Nic(format!(
                        "BENCH btype must be ICMP_SND_LIKE or ICMP_RCV_LIKE, got {other:?}"
                    )))
                }
            }
        } else {
            None
        };
        let vhost_user_client = n.vhost_user_client.unwrap_or(false);
        if vhost_user_client && nic_type != NicType::VhostUserServer {
            return Err(ValidationError::Nic(
                "vhost_user_client is for vhost-user NICs (type VHOST_USER_SERVER) only".into(),
            ));
        }
        Ok(NicSpec {
            id: n.id.clone(),
            mac,
            vni: n.vni,
            ips,
            security_groups: dedup(n.security_group.iter().filter(|s| !s.is_empty()).cloned()),
            ip_anti_spoof: n.ip_anti_spoof.unwrap_or(false),
            sniff_target_nic_id: n.sniff_target_nic_id.clone(),
            bypass_filtering: n.bypass_filtering.unwrap_or(false),
            nic_type,
            packet_trace: n.packet_trace,
            packet_trace_path: n.packet_trace_path.clone(),
            bench,
            link_local: parse_link_local(&n.link_local, ValidationError::Nic)?,
            vhost_user_client,
        })
    }
}

impl TryFrom<&v0::NicImportReq> for NicImport {
    type Error = ValidationError;
    fn try_from(r: &v0::NicImportReq) -> Result<Self, ValidationError> {
        let id = r.id.clone().unwrap_or_default();
        if id.is_empty() {
            return Err(ValidationError::Nic("nic_import needs the id of a NIC".into()));
        }
        Ok(NicImport { id, data: r.data.clone().unwrap_or_default() })
    }
}

impl TryFrom<&v0::NicUpdateReq> for NicUpdate {
    type Error = ValidationError;
    fn try_from(u: &v0::NicUpdateReq) -> Result<Self, ValidationError> {
        // Empty strings are skipped, so a lone "" clears the list.
        let ips =
            if u.ip.is_empty() { None } else { Some(parse_ips(u.ip.iter().filter(|s| !s.is_empty()))?) };
        let security_groups = if u.security_group.is_empty() {
            None
        } else {
            Some(dedup(u.security_group.iter().filter(|s| !s.is_empty()).cloned()))
        };
        let link_local = if u.link_local.is_empty() {
            None
        } else {
            Some(parse_link_local(u.link_local.iter().filter(|s| !s.is_empty()), ValidationError::NicUpdate)?)
        };
        Ok(NicUpdate {
            id: u.id.clone(),
            ip_anti_spoof: u.ip_anti_spoof,
            ips,
            security_groups,
            packet_trace: u.packet_trace,
            packet_trace_path: u.packet_trace_path.clone(),
            link_local,
        })
    }
}

impl TryFrom<&v0::Rule> for Rule {
    type Error = ValidationError;
    fn try_from(r: &v0::Rule) -> Result<Self, ValidationError> {
        let bad = |s: &str| ValidationError::Rule(s.to_string());
        let direction = match v0::rule::Direction::try_from(r.direction) {
            Ok(v0::rule::Direction::Inbound) => Direction::Inbound,
            Ok(v0::rule::Direction::Outbound) => Direction::Outbound,
            Err(_) => return Err(bad("unknown direction")),
        };
        if !(-1..=255).contains(&r.protocol) {
            return Err(bad("protocol must be -1 (all) or 0..255"));
        }
        let protocol = r.protocol as i16;
        let ports = if protocol == 6 || protocol == 17 {
            let (Some(a), Some(b)) = (r.port_start, r.port_end) else {
                return Err(bad("TCP and UDP rules need port_start and port_end"));
            };
            if a > 65535 || b > 65535 {
                return Err(bad("ports must be at most 65535"));
            }
            if a > b {
                return Err(bad("port_start is greater than port_end"));
            }
            Some((a as u16, b as u16))
        } else {
            None
        };
        let peer = match (&r.cidr, &r.security_group) {
            (Some(_), Some(_)) => return Err(bad("cidr and security_group are exclusive")),
            (None, None) => return Err(bad("one of cidr or security_group is required")),
            (None, Some(sg)) if sg.is_empty() => return Err(bad("empty security_group")),
            (None, Some(sg)) => RulePeer::SecurityGroup(sg.clone()),
            (Some(c), None) => {
                let address = parse_ip(&c.address)?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                if c.mask_size > max {
                    return Err(bad(&format!("mask size {} is above {max}", c.mask_size)));
                }
                RulePeer::Cidr(Cidr { address, prefix: c.mask_size as u8 })
            }
        };
        Ok(Rule { direction, protocol, ports, peer })
    }
}

impl TryFrom<&v0::Sg> for SecurityGroup {
    type Error = ValidationError;
    fn try_from(s: &v0::Sg) -> Result<Self, ValidationError> {
        // The same result as add_member / add_rule one by one, without their linear search
        // per item (quadratic over a large request).
        let mut sg = SecurityGroup::new(s.id.clone());
        sg.members = dedup(s.member.iter().map(|m| parse_ip(m)).collect::<Result<Vec<_>, _>>()?);
        let rules = s
            .rule
            .iter()
            .map(|r| {
                Rule::try_from(r).map_err(|e| match e {
                    ValidationError::Rule(d) => ValidationError::Sg(d),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        sg.rules = dedup(rules);
        sg.rules.sort_by_cached_key(Rule::order_key);
        Ok(sg)
    }
}

impl TryFrom<&v0::AppConfigReq> for AppConfig {
    type Error = ValidationError;
    fn try_from(c: &v0::AppConfigReq) -> Result<Self, ValidationError> {
        Ok(AppConfig { log_level: c.log_level.as_deref().map(str::parse).transpose()? })
    }
}

impl TryFrom<&v0::VniBum> for VniSet {
    type Error = ValidationError;
    /// Checks what can be checked without the daemon: the VNI, the mode, the fields the
    /// mode takes, addresses that parse and are of the right kind, no repeats, one family.
    /// The underlay's family and the daemon's own address are the daemon's to check.
    fn try_from(b: &v0::VniBum) -> Result<Self, ValidationError> {
        use v0::vni_bum::Mode;
        let bad = |m: String| ValidationError::Vni(m);
        let vni = b.vni.ok_or_else(|| bad("vni is missing".into()))?;
        if vni > VNI_MAX {
            return Err(bad(format!("VNI {vni} is out of range (0..={VNI_MAX})")));
        }
        let raw = b.mode.unwrap_or(Mode::Default as i32);
        let mode = Mode::try_from(raw).map_err(|_| bad(format!("VNI {vni}: unknown mode {raw}")))?;
        let mode = match mode {
            Mode::Default => {
                if b.group.is_some() || !b.flood.is_empty() {
                    return Err(bad(format!("VNI {vni}: DEFAULT takes neither a group nor a flood list")));
                }
                None
            }
            Mode::Multicast => {
                if !b.flood.is_empty() {
                    return Err(bad(format!("VNI {vni}: MULTICAST takes no flood list")));
                }
                let group = match b.group.as_deref() {
                    None => None,
                    Some(g) => {
                        let ip = IpAddr::from_str(g)
                            .map_err(|_| bad(format!("VNI {vni}: group {g:?} is not an IP address")))?;
                        if !ip.is_multicast() {
                            return Err(bad(format!("VNI {vni}: group {ip} is not a multicast address")));
                        }
                        Some(ip)
                    }
                };
                Some(BumMode::Multicast { group })
            }
            Mode::Unicast => {
                if b.group.is_some() {
                    return Err(bad(format!("VNI {vni}: UNICAST takes no group")));
                }
                let mut flood: Vec<IpAddr> = Vec::with_capacity(b.flood.len());
                let mut seen = std::collections::HashSet::new();
                for t in &b.flood {
                    let ip = IpAddr::from_str(t)
                        .map_err(|_| bad(format!("VNI {vni}: flood VTEP {t:?} is not an IP address")))?;
                    if ip.is_multicast() {
                        return Err(bad(format!(
                            "VNI {vni}: flood VTEP {ip} is a multicast address (a flood list holds unicast VTEP addresses)"
                        )));
                    }
                    if ip.is_unspecified() || matches!(ip, IpAddr::V4(a) if a.is_broadcast()) {
                        return Err(bad(format!("VNI {vni}: flood VTEP {ip} is not a unicast address")));
                    }
                    if !seen.insert(ip) {
                        return Err(bad(format!("VNI {vni}: flood VTEP {ip} is listed twice")));
                    }
                    if flood.first().is_some_and(|f| f.is_ipv4() != ip.is_ipv4()) {
                        return Err(bad(format!("VNI {vni}: the flood list mixes IPv4 and IPv6 addresses")));
                    }
                    flood.push(ip);
                }
                Some(BumMode::Unicast { flood })
            }
            Mode::Evpn => {
                if b.group.is_some() || !b.flood.is_empty() {
                    return Err(bad(format!(
                        "VNI {vni}: EVPN takes neither a group nor a flood list (its flood list comes from type-3 routes)"
                    )));
                }
                Some(BumMode::Evpn { flood: Vec::new() })
            }
        };
        Ok(VniSet { vni, mode })
    }
}

// ---------------------------------------------------------------------------
// typed -> protobuf (replies)

impl From<&VniSet> for v0::VniBum {
    fn from(s: &VniSet) -> v0::VniBum {
        use v0::vni_bum::Mode;
        let (mode, group, flood) = match &s.mode {
            None => (Mode::Default, None, Vec::new()),
            Some(BumMode::Multicast { group }) => (Mode::Multicast, group.map(|g| g.to_string()), Vec::new()),
            Some(BumMode::Unicast { flood }) => {
                (Mode::Unicast, None, flood.iter().map(IpAddr::to_string).collect())
            }
            Some(BumMode::Evpn { .. }) => (Mode::Evpn, None, Vec::new()),
        };
        v0::VniBum { vni: Some(s.vni), mode: Some(mode as i32), group, flood }
    }
}

impl From<&VniState> for v0::VniState {
    fn from(s: &VniState) -> v0::VniState {
        use v0::vni_bum::Mode;
        let (mode, group, flood) = match &s.mode {
            BumMode::Multicast { group } => (Mode::Multicast, group.map(|g| g.to_string()), Vec::new()),
            BumMode::Unicast { flood } => {
                (Mode::Unicast, None, flood.iter().map(IpAddr::to_string).collect())
            }
            BumMode::Evpn { flood } => (Mode::Evpn, None, flood.iter().map(IpAddr::to_string).collect()),
        };
        v0::VniState {
            vni: Some(s.vni),
            mode: Some(mode as i32),
            own: Some(s.own),
            group,
            flood,
            remote_vtep: s.remote_vteps.iter().map(IpAddr::to_string).collect(),
            nics: Some(s.nics),
        }
    }
}

impl From<&Rule> for v0::Rule {
    fn from(r: &Rule) -> v0::Rule {
        let (cidr, security_group) = match &r.peer {
            RulePeer::Cidr(c) => {
                (Some(v0::Cidr { address: c.address.to_string(), mask_size: u32::from(c.prefix) }), None)
            }
            RulePeer::SecurityGroup(s) => (None, Some(s.clone())),
        };
        v0::Rule {
            direction: match r.direction {
                Direction::Inbound => v0::rule::Direction::Inbound as i32,
                Direction::Outbound => v0::rule::Direction::Outbound as i32,
            },
            protocol: i32::from(r.protocol),
            port_start: r.ports.map(|p| u32::from(p.0)),
            port_end: r.ports.map(|p| u32::from(p.1)),
            cidr,
            security_group,
        }
    }
}

impl From<&SecurityGroup> for v0::Sg {
    fn from(s: &SecurityGroup) -> v0::Sg {
        v0::Sg {
            id: s.id.clone(),
            member: s.members.iter().map(IpAddr::to_string).collect(),
            rule: s.rules.iter().map(v0::Rule::from).collect(),
        }
    }
}

impl From<&NicSpec> for v0::Nic {
    fn from(n: &NicSpec) -> v0::Nic {
        let (btype, dip, dmac) = match &n.bench {
            Some(Bench::IcmpSndLike { dip, dmac }) => {
                (Some("ICMP_SND_LIKE".to_string()), Some(dip.to_string()), Some(dmac.to_string()))
            }
            Some(Bench::IcmpRcvLike) => (Some("ICMP_RCV_LIKE".to_string()), None, None),
            None => (None, None, None),
        };
        v0::Nic {
            id: n.id.clone(),
            mac: n.mac.to_string(),
            vni: n.vni,
            ip: n.ips.iter().map(IpAddr::to_string).collect(),
            security_group: n.security_groups.clone(),
            ip_anti_spoof: Some(n.ip_anti_spoof),
            sniff_target_nic_id: n.sniff_target_nic_id.clone(),
            bypass_filtering: Some(n.bypass_filtering),
            r#type: Some(n.nic_type.to_pb() as i32),
            path: None,
            packet_trace: n.packet_trace,
            packet_trace_path: n.packet_trace_path.clone(),
            btype,
            dip,
            dmac,
            link_local: n.link_local.iter().map(Ipv6Addr::to_string).collect(),
            // Absent unless set: Butterfly's replies stay the same bytes.
            vhost_user_client: n.vhost_user_client.then_some(true),
        }
    }
}

impl From<&NicInfo> for v0::Nic {
    /// Details layout: always ip_anti_spoof, bypass_filtering, packet_trace,
    /// packet_trace_path, type and path; BENCH parameters included (Butterfly
    /// dropped them, and the real type, from details).
    fn from(n: &NicInfo) -> v0::Nic {
        let mut nic = v0::Nic::from(&n.spec);
        nic.path = Some(n.path.clone());
        nic.packet_trace = Some(n.packet_trace);
        nic.packet_trace_path = Some(n.packet_trace_path.clone());
        nic
    }
}

impl NicInfo {
    /// Applies a validated update to this NIC (the reference semantics:
    /// replace lists that are present, set flags that are present; a new
    /// pcap path is taken when given).
    pub fn apply(&mut self, u: &NicUpdate) {
        if let Some(v) = u.ip_anti_spoof {
            self.spec.ip_anti_spoof = v;
        }
        if let Some(ips) = &u.ips {
            self.spec.ips = ips.clone();
        }
        if let Some(sgs) = &u.security_groups {
            self.spec.security_groups = sgs.clone();
        }
        if let Some(ll) = &u.link_local {
            self.spec.link_local = ll.clone();
        }
        if let Some(t) = u.packet_trace {
            self.packet_trace = t;
            self.spec.packet_trace = Some(t);
        }
        if let Some(p) = &u.packet_trace_path {
            self.packet_trace_path = p.clone();
            self.spec.packet_trace_path = Some(p.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pb_rule(port: u32, cidr: &str) -> v0::Rule {
        v0::Rule {
            direction: 0,
            protocol: 6,
            port_start: Some(port),
            port_end: Some(port),
            cidr: Some(v0::Cidr { address: cidr.into(), mask_size: 32 }),
            security_group: None,
        }
    }

    /// A group from a request equals the group built by adding its members and rules one
    /// by one (same dedup, same rule order), duplicates included.
    #[test]
    fn a_group_from_a_request_matches_one_by_one_adds() {
        let mut req = v0::Sg { id: "sg".into(), ..Default::default() };
        for i in 0..12_000u32 {
            req.member.push(std::net::Ipv4Addr::from(0x0a00_0000 + i % 10_000).to_string());
        }
        req.member.push("fd00::1".into());
        for i in 0..300u32 {
            // Requests 250..300 repeat 0..50.
            req.rule.push(pb_rule(1000 + i % 250, &format!("10.1.0.{}", i % 250 % 7)));
        }
        let sg = SecurityGroup::try_from(&req).unwrap();
        assert_eq!(sg.members.len(), 10_001);

        let mut one_by_one = SecurityGroup::new("sg");
        for m in &req.member {
            one_by_one.add_member(m.parse().unwrap());
        }
        for r in &req.rule {
            one_by_one.add_rule(Rule::try_from(r).unwrap());
        }
        assert_eq!(sg.members, one_by_one.members);
        assert_eq!(sg.rules, one_by_one.rules);
        assert_eq!(sg.rules.len(), 250);
    }

    fn vni_bum(vni: u32, mode: v0::vni_bum::Mode, group: Option<&str>, flood: &[&str]) -> v0::VniBum {
        v0::VniBum {
            vni: Some(vni),
            mode: Some(mode as i32),
            group: group.map(str::to_string),
            flood: flood.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn vni_settings_are_validated_with_clear_errors() {
        use v0::vni_bum::Mode;
        let ok = VniSet::try_from(&vni_bum(42, Mode::Unicast, None, &["10.0.0.2", "10.0.0.3"])).unwrap();
        assert_eq!(
            ok.mode,
            Some(BumMode::Unicast { flood: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()] })
        );
        assert_eq!(v0::VniBum::from(&ok), vni_bum(42, Mode::Unicast, None, &["10.0.0.2", "10.0.0.3"]));
        let m = VniSet::try_from(&vni_bum(7, Mode::Multicast, Some("239.1.1.1"), &[])).unwrap();
        assert_eq!(m.mode, Some(BumMode::Multicast { group: Some("239.1.1.1".parse().unwrap()) }));
        assert_eq!(VniSet::try_from(&vni_bum(7, Mode::Default, None, &[])).unwrap().mode, None);
        let e = VniSet::try_from(&vni_bum(8, Mode::Evpn, None, &[])).unwrap();
        assert_eq!(e.mode, Some(BumMode::Evpn { flood: Vec::new() }));
        assert_eq!(v0::VniBum::from(&e), vni_bum(8, Mode::Evpn, None, &[]));
        assert_eq!(BumMode::Evpn { flood: Vec::new() }.to_string(), "evpn");
        let cases: &[(v0::VniBum, &str)] = &[
            (v0::VniBum { vni: None, ..Default::default() }, "Bad VNI format: vni is missing"),
            (
                vni_bum(1 << 24, Mode::Default, None, &[]),
                "Bad VNI format: VNI 16777216 is out of range (0..=16777215)",
            ),
            (
                v0::VniBum { mode: Some(9), ..vni_bum(5, Mode::Default, None, &[]) },
                "Bad VNI format: VNI 5: unknown mode 9",
            ),
            (
                vni_bum(5, Mode::Default, Some("239.0.0.1"), &[]),
                "DEFAULT takes neither a group nor a flood list",
            ),
            (vni_bum(5, Mode::Multicast, None, &["10.0.0.2"]), "MULTICAST takes no flood list"),
            (vni_bum(5, Mode::Multicast, Some("10.0.0.2"), &[]), "group 10.0.0.2 is not a multicast address"),
            (vni_bum(5, Mode::Multicast, Some("nope"), &[]), "group \"nope\" is not an IP address"),
            (vni_bum(5, Mode::Unicast, Some("239.0.0.1"), &[]), "UNICAST takes no group"),
            (vni_bum(5, Mode::Evpn, None, &["10.0.0.2"]), "EVPN takes neither a group nor a flood list"),
            (vni_bum(5, Mode::Evpn, Some("239.0.0.1"), &[]), "EVPN takes neither a group nor a flood list"),
            (vni_bum(5, Mode::Unicast, None, &["239.0.0.1"]), "flood VTEP 239.0.0.1 is a multicast address"),
            (vni_bum(5, Mode::Unicast, None, &["ff02::1"]), "flood VTEP ff02::1 is a multicast address"),
            (
                vni_bum(5, Mode::Unicast, None, &["10.0.0.2", "10.0.0.2"]),
                "flood VTEP 10.0.0.2 is listed twice",
            ),
            (vni_bum(5, Mode::Unicast, None, &["10.0.0.2", "fd00::2"]), "mixes IPv4 and IPv6"),
            (vni_bum(5, Mode::Unicast, None, &["255.255.255.255"]), "is not a unicast address"),
            (vni_bum(5, Mode::Unicast, None, &["::"]), "is not a unicast address"),
            (
                vni_bum(5, Mode::Unicast, None, &["10.0.0.300"]),
                "flood VTEP \"10.0.0.300\" is not an IP address",
            ),
        ];
        for (req, want) in cases {
            let e = VniSet::try_from(req).unwrap_err().to_string();
            assert!(e.starts_with("Bad VNI format: ") && e.contains(want), "{req:?}: {e}");
        }
    }

    #[test]
    fn underlay_trace_requests_are_validated() {
        let req = |enabled: Option<bool>, path: Option<&str>| {
            UnderlayTrace::request(&v0::UnderlayTrace { enabled, path: path.map(str::to_string) })
        };
        assert_eq!(req(None, None).unwrap(), None, "enabled absent: only asking");
        assert_eq!(req(Some(false), None).unwrap(), Some(UnderlayTrace { enabled: false, path: None }));
        assert_eq!(
            req(Some(true), Some("/tmp/u.pcap")).unwrap(),
            Some(UnderlayTrace { enabled: true, path: Some("/tmp/u.pcap".into()) })
        );
        for (e, p) in [
            (None, Some("/tmp/u")),
            (Some(false), Some("/tmp/u")),
            (Some(true), Some("")),
            (Some(true), Some("a\0b")),
        ] {
            assert!(matches!(req(e, p), Err(ValidationError::UnderlayTrace(_))), "{e:?} {p:?}");
        }
        let t = UnderlayTrace { enabled: true, path: Some("/x".into()) };
        assert_eq!(
            v0::UnderlayTrace::from(&t),
            v0::UnderlayTrace { enabled: Some(true), path: Some("/x".into()) }
        );
    }

    /// vhost_user_client (butterfly-rs, field 110) only on vhost-user NICs, absent from
    /// replies unless set (Butterfly's bytes unchanged); nic_import needs an id.
    #[test]
    fn vhost_user_client_and_nic_import_are_validated() {
        let nic = |t: Option<v0::nic::Type>, client: Option<bool>| v0::Nic {
            id: "n".into(),
            mac: "52:54:00:00:00:01".into(),
            vni: 1,
            r#type: t.map(|t| t as i32),
            vhost_user_client: client,
            ..Default::default()
        };
        let spec = NicSpec::try_from(&nic(None, Some(true))).unwrap();
        assert!(spec.vhost_user_client);
        assert_eq!(v0::Nic::from(&spec).vhost_user_client, Some(true));
        let plain = NicSpec::try_from(&nic(None, Some(false))).unwrap();
        assert_eq!(v0::Nic::from(&plain).vhost_user_client, None, "absent unless set");
        let e = NicSpec::try_from(&nic(Some(v0::nic::Type::Tap), Some(true))).unwrap_err().to_string();
        assert!(e.starts_with("Bad NIC format: vhost_user_client is for vhost-user NICs"), "{e}");
        // Old state files (no field) read as server mode.
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("vhost_user_client"));
        assert_eq!(serde_json::from_str::<NicSpec>(&json).unwrap(), plain);
        let ok = NicImport::try_from(&v0::NicImportReq { id: Some("n".into()), data: None }).unwrap();
        assert_eq!(ok, NicImport { id: "n".into(), data: Vec::new() });
        let e = NicImport::try_from(&v0::NicImportReq { id: None, data: Some(vec![1]) }).unwrap_err();
        assert_eq!(e.to_string(), "Bad NIC format: nic_import needs the id of a NIC");
    }

    #[test]
    fn a_bad_member_or_rule_fails_the_whole_group() {
        let mut req = v0::Sg {
            id: "sg".into(),
            member: vec!["10.0.0.1".into(), "10.0.0".into()],
            ..Default::default()
        };
        assert!(SecurityGroup::try_from(&req).is_err());
        req.member.pop();
        req.rule.push(pb_rule(1, "10.0.0.1"));
        req.rule.push(v0::Rule { protocol: 256, ..pb_rule(1, "10.0.0.1") });
        assert!(matches!(SecurityGroup::try_from(&req), Err(ValidationError::Sg(_))));
    }

    #[test]
    fn bench_nics_are_validated_with_clear_errors() {
        let nic = |ip: &[&str], btype: Option<&str>, dip: Option<&str>, dmac: Option<&str>| v0::Nic {
            id: "b".into(),
            mac: "52:54:00:12:34:01".into(),
            vni: 42,
            ip: ip.iter().map(|s| s.to_string()).collect(),
            r#type: Some(v0::nic::Type::Bench as i32),
            btype: btype.map(str::to_string),
            dip: dip.map(str::to_string),
            dmac: dmac.map(str::to_string),
            ..Default::default()
        };
        let err = |n: v0::Nic| match NicSpec::try_from(&n) {
            Err(ValidationError::Nic(e)) => e,
            other => panic!("{other:?}"),
        };
        let snd = Some("ICMP_SND_LIKE");
        let (dip, dmac) = (Some("42.0.0.2"), Some("52:54:00:12:34:02"));
        assert!(err(nic(&[], Some("ICMP_RCV_LIKE"), None, None)).contains("needs an IP"));
        assert!(err(nic(&["42.0.0.1"], None, None, None)).contains("ICMP_SND_LIKE or ICMP_RCV_LIKE"));
        assert!(err(nic(&["42.0.0.1"], Some("PING"), None, None)).contains("\"PING\""));
        assert!(err(nic(&["42.0.0.1"], snd, None, dmac)).contains("needs dip and dmac"));
        assert!(err(nic(&["42.0.0.1"], snd, dip, None)).contains("needs dip and dmac"));
        assert!(err(nic(&["42.0.0.1"], snd, dip, Some("52:54:00"))).contains("MAC"));
        assert!(matches!(
            NicSpec::try_from(&nic(&["42.0.0.1"], snd, Some("42.0.0"), dmac)),
            Err(ValidationError::Ip(_))
        ));
        assert!(err(nic(&["fd00::1"], snd, dip, dmac)).contains("needs an IPv4 address"));
        let ok = NicSpec::try_from(&nic(&["fd00::1", "42.0.0.1"], snd, dip, dmac)).unwrap();
        assert_eq!(
            ok.bench,
            Some(Bench::IcmpSndLike {
                dip: "42.0.0.2".parse().unwrap(),
                dmac: "52:54:00:12:34:02".parse().unwrap()
            })
        );
        let back = v0::Nic::from(&ok);
        assert_eq!((back.btype.as_deref(), back.dip.as_deref()), (snd, dip));
    }
}

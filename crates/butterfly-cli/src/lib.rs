//! The `butterfly` command line client (see the crate README for usage and
//! exit codes). [`run`] is the whole program; the binary only calls it.

use butterfly_api::crypto::Key;
use butterfly_api::pb::{message_v0 as v0, proto, MessageV0};
use butterfly_api::text;
use butterfly_api::transport::{curve_key, Client, ClientConfig, CurveClient, TransportError};
use butterfly_api::types::Rule;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the daemon refused the request, or the command line is invalid
/// (Butterfly's single failure code).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the daemon could not be reached, timed out, or sent an
/// undecodable reply.
pub const EXIT_TRANSPORT: i32 = 2;

/// The largest VNI (24 bits).
const MAX_VNI: u32 = (1 << 24) - 1;

/// A VNI on the command line: 0 to 2^24 - 1. Negative numbers are taken as values (not as
/// options), so that `--vni -1` says what a VNI may be.
fn parse_vni(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(v) if (0..=i64::from(MAX_VNI)).contains(&v) => Ok(v as u32),
        _ => Err(format!("a VNI is a number from 0 to {MAX_VNI} (2^24 - 1)")),
    }
}

#[derive(Parser, Debug)]
#[command(name = "butterfly", version = concat!(env!("CARGO_PKG_VERSION"), " (proto revision 6)"),
    about = "Control a butterfly daemon. Chain commands with '+': butterfly sg add sg-1 + sg list",
    disable_help_subcommand = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug, Default, Clone)]
struct Global {
    /// Daemon endpoint [default: tcp://127.0.0.1:9999]
    #[arg(short = 'e', long, global = true)]
    endpoint: Option<String>,
    /// Reply timeout in milliseconds, 0 = wait forever [default: 5000]
    #[arg(short = 't', long, global = true)]
    timeout: Option<u64>,
    /// Key file (base64 of 32 bytes) for Butterfly's encryption
    #[arg(short = 'k', long, global = true)]
    key: Option<String>,
    /// Print requests and replies (protobuf text format) on stderr
    #[arg(short = 'v', long, global = true)]
    verbose: bool,
    /// Print replies as JSON
    #[arg(long, global = true)]
    json: bool,
    /// CURVE: server public key (Z85) or file containing it
    #[arg(long, global = true)]
    curve_server_key: Option<String>,
    /// CURVE: file with the client key pair (two Z85 lines: public, secret); a
    /// fresh pair is generated when omitted
    #[arg(long, global = true)]
    curve_client_keys: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// NIC commands
    Nic {
        #[command(subcommand)]
        cmd: NicCmd,
    },
    /// Security group commands
    Sg {
        #[command(subcommand)]
        cmd: SgCmd,
    },
    /// VNI commands (butterfly-rs): how each VNI floods broadcast, unknown-unicast and
    /// multicast frames
    Vni {
        #[command(subcommand)]
        cmd: VniCmd,
    },
    /// Daemon status
    Status,
    /// Ask the daemon to exit
    Shutdown,
    /// Send a request file (protobuf text format of proto.Messages, or JSON)
    Request {
        /// Request file
        file: String,
        /// Print the reply (text format; JSON with --json)
        #[arg(long)]
        stdout: bool,
    },
    /// Print the daemon's configuration as a replayable request file
    Dump,
    /// Make a CURVE key pair (no daemon needed): writes FILE (public then secret key, Z85,
    /// one per line, mode 0600; for --curve-client-keys or butterflyd --curve-keys) and
    /// prints the public key (for --curve-server-key or butterflyd --curve-clients)
    CurveKeygen {
        /// File to create (never overwritten)
        file: String,
    },
}

#[derive(Subcommand, Debug)]
enum NicCmd {
    /// Create (or replace) a NIC; prints its path
    Add(NicAdd),
    /// Update a NIC
    Update(NicUpdateArgs),
    /// Delete NICs
    Del {
        /// NIC ids
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List NIC ids
    List,
    /// Details of a NIC (all NICs without an id)
    Details {
        /// NIC id
        id: Option<String>,
    },
    /// Byte counters of a NIC
    Stats {
        /// NIC id
        id: String,
    },
    /// Write a NIC's connection table (nic_export: versioned bytes) to FILE ("-": stdout)
    Export {
        /// NIC id
        id: String,
        /// Output file
        file: String,
    },
    /// Import a connection table that `nic export` wrote (here or on another host: a VM's
    /// migration) into a NIC's firewall, from FILE ("-": stdin); prints imported and skipped
    Import {
        /// NIC id
        id: String,
        /// Input file
        file: String,
    },
    /// Security groups of a NIC
    Sg {
        #[command(subcommand)]
        cmd: NicSgCmd,
    },
}

#[derive(Args, Debug)]
struct NicAdd {
    /// NIC id
    #[arg(long)]
    id: String,
    /// MAC address
    #[arg(long)]
    mac: String,
    /// VNI (0 to 2^24 - 1)
    #[arg(long, allow_negative_numbers = true, value_parser = parse_vni)]
    vni: u32,
    /// IP address (repeatable)
    #[arg(long)]
    ip: Vec<String>,
    /// Security group (repeatable)
    #[arg(long)]
    sg: Vec<String>,
    /// Enable ARP anti-spoofing
    #[arg(long)]
    enable_antispoof: bool,
    /// No firewall nor anti-spoofing
    #[arg(long)]
    bypass_filtering: bool,
    /// VHOST_USER_SERVER, TAP or BENCH
    #[arg(long = "type", value_parser = ["VHOST_USER_SERVER", "TAP", "BENCH"])]
    nic_type: Option<String>,
    /// BENCH role: ICMP_SND_LIKE or ICMP_RCV_LIKE
    #[arg(long)]
    btype: Option<String>,
    /// BENCH sender: destination IP
    #[arg(long)]
    dip: Option<String>,
    /// BENCH sender: destination MAC
    #[arg(long)]
    dmac: Option<String>,
    /// Record traffic in a pcap file (true|false)
    #[arg(long)]
    packet_trace: Option<bool>,
    /// pcap path (needs --packet-trace true)
    #[arg(long)]
    trace_path: Option<String>,
    /// IPv6 link-local address the NIC may use besides the EUI-64 one of its MAC, with
    /// anti-spoofing (repeatable; butterfly-rs daemons)
    #[arg(long)]
    link_local: Vec<String>,
    /// vhost-user client mode (butterfly-rs): the VM (QEMU, server=on) serves the socket, the
    /// daemon connects to it and reconnects by itself
    #[arg(long)]
    vhost_client: bool,
}

#[derive(Args, Debug)]
struct NicUpdateArgs {
    /// NIC id
    #[arg(long)]
    id: String,
    /// Replacement IP list (repeatable; `--ip -e` clears)
    #[arg(long, allow_hyphen_values = true)]
    ip: Vec<String>,
    /// Replacement security groups (repeatable; `--sg -e` clears)
    #[arg(long, allow_hyphen_values = true)]
    sg: Vec<String>,
    /// ARP anti-spoofing (true|false)
    #[arg(long)]
    enable_antispoof: Option<bool>,
    /// Packet trace (true|false)
    #[arg(long)]
    packet_trace: Option<bool>,
    /// pcap path
    #[arg(long)]
    trace_path: Option<String>,
    /// Replacement extra link-local addresses (repeatable; `--link-local -e` clears;
    /// butterfly-rs daemons)
    #[arg(long, allow_hyphen_values = true)]
    link_local: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum NicSgCmd {
    /// List the NIC's security groups
    List {
        /// NIC id
        nic: String,
    },
    /// Add security groups to the NIC
    Add {
        /// NIC id
        nic: String,
        /// Security groups
        #[arg(required = true)]
        sgs: Vec<String>,
    },
    /// Remove security groups from the NIC
    Del {
        /// NIC id
        nic: String,
        /// Security groups
        #[arg(required = true)]
        sgs: Vec<String>,
    },
    /// Replace the NIC's security groups (none: clear)
    Set {
        /// NIC id
        nic: String,
        /// Security groups
        sgs: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum VniCmd {
    /// Set a VNI's BUM mode: --multicast [--group ADDR], --flood IP… (or --unicast), --evpn, or --default
    Set(VniSetArgs),
    /// Forget VNIs' own settings: they follow the daemon's default (--bum-mode) again
    Del {
        /// VNIs
        #[arg(required = true, allow_negative_numbers = true, value_parser = parse_vni)]
        vnis: Vec<u32>,
    },
    /// Add or remove remote VTEPs of a VNI's unicast flood list
    Flood {
        #[command(subcommand)]
        cmd: VniFloodCmd,
    },
    /// Mode in effect, group or flood list, remote VTEPs known, NICs (every VNI without one)
    Details {
        /// VNI
        #[arg(allow_negative_numbers = true, value_parser = parse_vni)]
        vni: Option<u32>,
    },
}

#[derive(Args, Debug)]
struct VniSetArgs {
    /// VNI (0 to 2^24 - 1)
    #[arg(allow_negative_numbers = true, value_parser = parse_vni)]
    vni: u32,
    /// Flood to a multicast group (the VNI's default group unless --group)
    #[arg(long)]
    multicast: bool,
    /// The multicast group (implies --multicast)
    #[arg(long)]
    group: Option<String>,
    /// Flood to a list of remote VTEPs (head-end replication), possibly empty
    #[arg(long)]
    unicast: bool,
    /// A remote VTEP of the flood list (repeatable, or comma-separated; implies --unicast)
    #[arg(long, value_delimiter = ',')]
    flood: Vec<String>,
    /// BGP EVPN through FRR: advertise the VNI's MACs and IPs, flood to the VTEPs of its
    /// type-3 routes
    #[arg(long)]
    evpn: bool,
    /// Follow the daemon's default again (same as `vni del`)
    #[arg(long = "default")]
    default_mode: bool,
}

#[derive(Subcommand, Debug)]
enum VniFloodCmd {
    /// Add remote VTEPs to the VNI's flood list (the VNI must flood by list)
    Add {
        /// VNI
        #[arg(allow_negative_numbers = true, value_parser = parse_vni)]
        vni: u32,
        /// Remote VTEP addresses
        #[arg(required = true, value_delimiter = ',')]
        vteps: Vec<String>,
    },
    /// Remove remote VTEPs from the VNI's flood list
    Del {
        /// VNI
        #[arg(allow_negative_numbers = true, value_parser = parse_vni)]
        vni: u32,
        /// Remote VTEP addresses
        #[arg(required = true, value_delimiter = ',')]
        vteps: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
enum SgCmd {
    /// Create (or reset to empty) security groups
    Add {
        /// Ids
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete security groups
    Del {
        /// Ids
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List security group ids
    List,
    /// Rules of a security group
    Rule {
        #[command(subcommand)]
        cmd: RuleCmd,
    },
    /// Members of a security group
    Member {
        #[command(subcommand)]
        cmd: MemberCmd,
    },
}

#[derive(Args, Debug, Clone)]
struct RuleArgs {
    /// tcp, udp, icmp, icmp6, all, or a protocol number (-1 is Butterfly's "all")
    #[arg(long, allow_hyphen_values = true)]
    ip_proto: Option<String>,
    /// in or out
    #[arg(long, default_value = "in", value_parser = ["in", "out"])]
    dir: String,
    /// Single port (tcp/udp)
    #[arg(long, conflicts_with_all = ["port_start", "port_end"])]
    port: Option<u32>,
    /// First port (tcp/udp)
    #[arg(long)]
    port_start: Option<u32>,
    /// Last port (tcp/udp)
    #[arg(long)]
    port_end: Option<u32>,
    /// Peer block ADDRESS/MASK
    #[arg(long, conflicts_with = "sg_members")]
    cidr: Option<String>,
    /// Peers = members of this security group
    #[arg(long)]
    sg_members: Option<String>,
}

#[derive(Subcommand, Debug)]
enum RuleCmd {
    /// Add a rule
    Add {
        /// Security group
        sg: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Delete a rule, by id (from `sg rule list`) or by its options
    Del {
        /// Security group
        sg: String,
        /// Rule id (16 hex digits)
        id: Option<String>,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// List rules with their ids
    List {
        /// Security group
        sg: String,
    },
}

#[derive(Subcommand, Debug)]
enum MemberCmd {
    /// Add a member IP
    Add {
        /// Security group
        sg: String,
        /// IP
        ip: String,
    },
    /// Remove a member IP
    Del {
        /// Security group
        sg: String,
        /// IP
        ip: String,
    },
    /// List member IPs
    List {
        /// Security group
        sg: String,
    },
}

/// A failed command: message and exit code.
#[derive(Debug)]
struct Failure {
    code: i32,
    msg: String,
}

fn usage(msg: impl Into<String>) -> Failure {
    Failure { code: EXIT_FAILED, msg: msg.into() }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        let code = match e {
            TransportError::Envelope(_)
            | TransportError::Encrypted(_)
            | TransportError::Crypto(_)
            | TransportError::CurveRefused { .. }
            | TransportError::SecurityMismatch { .. }
            | TransportError::Handshake { .. }
            | TransportError::BadEndpoint(_) => EXIT_FAILED,
            _ => EXIT_TRANSPORT,
        };
        Failure { code, msg: e.to_string() }
    }
}

struct Ctx {
    client: Client,
    global: Global,
}

impl Ctx {
    fn verbose(&self, what: &str, m: &proto::Messages) {
        if self.global.verbose {
            eprintln!("################ {what} ################");
            eprint!("{}", text::to_text(m).unwrap_or_default());
            eprintln!("################################################");
        }
    }

    fn send(&self, msgs: &proto::Messages) -> Result<proto::Messages, Failure> {
        self.verbose("request", msgs);
        let reply = match self.client.request(msgs) {
            Ok(r) => r,
            Err(e @ TransportError::Encrypted(_)) => {
                let mut f = Failure::from(e);
                f.msg.push_str(" (the daemon could not decrypt the request: is -k the daemon's key?)");
                return Err(f);
            }
            Err(e) => return Err(e.into()),
        };
        self.verbose("reply", &reply);
        Ok(reply)
    }

    /// What a REJECTED envelope most likely means, given whether this client encrypts.
    fn rejected_hint(&self) -> &'static str {
        if self.global.key.is_some() {
            " (a daemon without an encryption key rejects encrypted requests: leave out -k?)"
        } else {
            " (a daemon started with -k rejects clear requests: give its key with -k FILE)"
        }
    }

    /// Sends requests, checks every reply, prints JSON when asked.
    fn call_many(&self, reqs: Vec<v0::Request>) -> Result<Vec<v0::Response>, Failure> {
        self.call_many_opt(reqs, self.global.json)
    }

    fn call_many_opt(&self, reqs: Vec<v0::Request>, print_json: bool) -> Result<Vec<v0::Response>, Failure> {
        let n = reqs.len();
        let msgs = wrap(reqs);
        let reply = self.send(&msgs)?;
        // An envelope error first: a request refused whole (REJECTED) gets one message back,
        // however many it carried.
        if let Some(c) = reply.messages.iter().find_map(|m| m.error.as_ref().and_then(|e| e.code)) {
            let name =
                proto::error::Code::try_from(c).map(|c| c.as_str_name().to_string()).unwrap_or(c.to_string());
            let hint = if c == proto::error::Code::Rejected as i32 { self.rejected_hint() } else { "" };
            return Err(usage(format!("error in response: {name}{hint}")));
        }
        if reply.messages.len() != n {
            return Err(Failure { code: EXIT_TRANSPORT, msg: "no message in response".into() });
        }
        let mut out = Vec::new();
        for m in reply.messages {
            let Some(r) = m.message_0.and_then(|m| m.response) else {
                return Err(Failure { code: EXIT_TRANSPORT, msg: "no response in reply".into() });
            };
            if print_json {
                if let Ok(v) = text::message_to_json("MessageV0.Response", &r) {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                }
            }
            if !r.status.status {
                let d = r.status.error.as_ref().and_then(|e| e.description.clone()).unwrap_or_default();
                return Err(usage(format!("error in response\ndescription: {d}")));
            }
            out.push(r);
        }
        Ok(out)
    }

    fn call(&self, req: v0::Request) -> Result<v0::Response, Failure> {
        self.call_many(vec![req])?.pop().ok_or_else(|| usage("no message in response"))
    }

    /// Like [`call`](Self::call) for a request an older daemon may not know (butterfly-rs
    /// extensions): a refusal gives `None` (and prints nothing), transport errors stay errors.
    fn try_call(&self, req: v0::Request, print_json: bool) -> Result<Option<v0::Response>, Failure> {
        match self.call_many_opt(vec![req], false) {
            Ok(mut r) => {
                let r = r.pop();
                if let (Some(r), true) = (&r, print_json) {
                    if let Ok(v) = text::message_to_json("MessageV0.Response", r) {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    }
                }
                Ok(r)
            }
            Err(f) if f.code == EXIT_FAILED => Ok(None),
            Err(f) => Err(f),
        }
    }

    fn human(&self) -> bool {
        !self.global.json
    }
}

fn wrap(reqs: Vec<v0::Request>) -> proto::Messages {
    proto::Messages {
        messages: reqs
            .into_iter()
            .map(|r| proto::Message {
                revision: butterfly_api::PROTO_REVISION,
                error: None,
                message_0: Some(MessageV0 { request: Some(r), response: None, message_id: None }),
            })
            .collect(),
        encrypted: None,
    }
}

fn req() -> v0::Request {
    v0::Request::default()
}

fn proto_number(p: &str) -> Result<i32, Failure> {
    Ok(match p.to_ascii_lowercase().as_str() {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmp6" | "icmpv6" => 58,
        "all" => -1,
        n => n.parse().map_err(|_| usage(format!("invalid --ip-proto {p:?}")))?,
    })
}

fn build_rule(a: &RuleArgs) -> Result<v0::Rule, Failure> {
    let proto = proto_number(a.ip_proto.as_deref().ok_or_else(|| usage("--ip-proto is required"))?)?;
    let (ps, pe) = match (a.port, a.port_start, a.port_end) {
        (Some(p), _, _) => (Some(p), Some(p)),
        (None, s, e) => (s, e),
    };
    if (proto == 6 || proto == 17) && (ps.is_none() || pe.is_none()) {
        return Err(usage("tcp and udp rules need --port or --port-start and --port-end"));
    }
    let cidr = match &a.cidr {
        Some(c) => {
            let (addr, mask) =
                c.split_once('/').ok_or_else(|| usage(format!("invalid --cidr {c:?}, want ADDRESS/MASK")))?;
            let mask = mask.parse().map_err(|_| usage(format!("invalid mask in --cidr {c:?}")))?;
            Some(v0::Cidr { address: addr.to_string(), mask_size: mask })
        }
        None => None,
    };
    if cidr.is_none() && a.sg_members.is_none() {
        return Err(usage("one of --cidr or --sg-members is required"));
    }
    Ok(v0::Rule {
        direction: if a.dir == "out" { 1 } else { 0 },
        protocol: proto,
        port_start: ps,
        port_end: pe,
        cidr,
        security_group: a.sg_members.clone(),
    })
}

/// Seconds since the epoch (the API's dates) as RFC 3339 UTC, e.g. 2026-12-04T18:00:00Z.
fn date(epoch: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(epoch);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn or_empty(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("Ø")
}

fn rule_line(r: &v0::Rule) -> String {
    let id = Rule::try_from(r).map(|x| x.cli_id()).unwrap_or_else(|_| "????????????????".into());
    let dir = if r.direction == 1 { "OUTBOUND" } else { "INBOUND" };
    let port = |p: Option<u32>| p.map(|p| p.to_string());
    let cidr = r.cidr.as_ref().map(|c| format!("{}/{}", c.address, c.mask_size));
    format!(
        "{id} | direction: {dir} - IP protocol: {} - port start: {} - port end: {} - cidr: {} - members of sg: {}",
        r.protocol,
        or_empty(&port(r.port_start)),
        or_empty(&port(r.port_end)),
        or_empty(&cidr),
        or_empty(&r.security_group)
    )
}

fn print_nic(n: &v0::Nic) {
    println!("id: {}", n.id);
    println!("mac: {}", n.mac);
    println!("vni: {}", n.vni);
    for ip in &n.ip {
        println!("ip: {ip}");
    }
    for sg in &n.security_group {
        println!("sg: {sg}");
    }
    println!("antispoof: {}", n.ip_anti_spoof.unwrap_or(false));
    if let Some(t) = &n.sniff_target_nic_id {
        println!("sniff target: {t}");
    }
    println!("bypass filtering: {}", n.bypass_filtering.unwrap_or(false));
    println!("packet trace: {}", n.packet_trace.unwrap_or(false));
    if let Some(p) = &n.packet_trace_path {
        println!("trace path: {p}");
    }
    // The link-local addresses anti-spoofing lets the NIC use: its MAC's EUI-64 one, then
    // those the daemon was given (butterfly-rs).
    if let Ok(mac) = n.mac.parse::<butterfly_api::types::MacAddr>() {
        println!("link-local: {} (from the mac)", mac.eui64_link_local());
    }
    for ll in &n.link_local {
        println!("link-local: {ll}");
    }
    let t = v0::nic::Type::try_from(n.r#type.unwrap_or(0)).map(|t| t.as_str_name()).unwrap_or("?");
    println!("type: {t}");
    if n.vhost_user_client == Some(true) {
        println!("vhost-user: client");
    }
    if let Some(p) = &n.path {
        println!("path: {p}");
    }
}

fn nic_sgs(ctx: &Ctx, nic: &str) -> Result<Vec<String>, Failure> {
    let r = ctx.call(v0::Request { nic_details: Some(nic.to_string()), ..req() })?;
    Ok(r.nic_details.first().map(|n| n.security_group.clone()).unwrap_or_default())
}

fn set_nic_sgs(ctx: &Ctx, nic: &str, sgs: Vec<String>) -> Result<(), Failure> {
    let sgs = if sgs.is_empty() { vec![String::new()] } else { sgs };
    ctx.call(v0::Request {
        nic_update: Some(v0::NicUpdateReq { id: nic.to_string(), security_group: sgs, ..Default::default() }),
        ..req()
    })?;
    Ok(())
}

fn mode_name(mode: Option<i32>) -> &'static str {
    v0::vni_bum::Mode::try_from(mode.unwrap_or(0)).map(|m| m.as_str_name()).unwrap_or("?")
}

fn print_vni(v: &v0::VniState) {
    println!("vni: {}", v.vni.unwrap_or(0));
    println!("mode: {}", mode_name(v.mode).to_ascii_lowercase());
    println!("setting: {}", if v.own.unwrap_or(false) { "own" } else { "default" });
    if let Some(g) = &v.group {
        println!("group: {g}");
    }
    for f in &v.flood {
        println!("flood: {f}");
    }
    for r in &v.remote_vtep {
        println!("remote vtep: {r}");
    }
    println!("nics: {}", v.nics.unwrap_or(0));
}

/// One line per VNI for `status`.
fn vni_line(v: &v0::VniState) -> String {
    let how = match (&v.group, v.flood.as_slice()) {
        (Some(g), _) => format!("group {g}"),
        (None, []) if v.mode == Some(v0::vni_bum::Mode::Unicast as i32) => "flood list empty".to_string(),
        (None, []) if v.mode == Some(v0::vni_bum::Mode::Evpn as i32) => "no type-3 route yet".to_string(),
        (None, f) if v.mode == Some(v0::vni_bum::Mode::Evpn as i32) => {
            format!("flood list {} (type-3 routes)", f.join(" "))
        }
        (None, []) => "default group".to_string(),
        (None, f) => format!("flood list {}", f.join(" ")),
    };
    let remotes = if v.remote_vtep.is_empty() { "none".to_string() } else { v.remote_vtep.join(" ") };
    format!(
        "vni {}: {}, {how} ({}), remote vteps: {remotes}, nics: {}",
        v.vni.unwrap_or(0),
        mode_name(v.mode).to_ascii_lowercase(),
        if v.own.unwrap_or(false) { "own setting" } else { "daemon default" },
        v.nics.unwrap_or(0)
    )
}

fn vni_set_req(vni: u32, mode: v0::vni_bum::Mode, group: Option<String>, flood: Vec<String>) -> v0::Request {
    v0::Request {
        vni_set: Some(v0::VniBum { vni: Some(vni), mode: Some(mode as i32), group, flood }),
        ..req()
    }
}

/// The flood list of a VNI that floods by list (for `vni flood add|del`).
fn vni_flood(ctx: &Ctx, vni: u32) -> Result<Vec<String>, Failure> {
    let r = ctx.call_many_opt(
        vec![v0::Request { vni_details: Some(v0::VniDetailsReq { vni: Some(vni) }), ..req() }],
        false,
    )?;
    let st = r.first().and_then(|r| r.vni_details.first()).cloned().unwrap_or_default();
    if st.mode == Some(v0::vni_bum::Mode::Evpn as i32) {
        return Err(usage(format!(
            "VNI {vni} is in EVPN mode: its flood list comes from type-3 routes; `butterfly vni set {vni} --flood IP…` switches it to a list of its own"
        )));
    }
    if st.mode != Some(v0::vni_bum::Mode::Unicast as i32) {
        let group = st.group.map(|g| format!(" {g}")).unwrap_or_default();
        return Err(usage(format!(
            "VNI {vni} floods to its multicast group{group}; `butterfly vni set {vni} --flood IP…` switches it to a flood list"
        )));
    }
    Ok(st.flood)
}

fn clear_marker(v: &[String]) -> Vec<String> {
    if v.len() == 1 && v[0] == "-e" {
        vec![String::new()]
    } else {
        v.to_vec()
    }
}

fn exec(ctx: &Ctx, cmd: &Cmd) -> Result<(), Failure> {
    match cmd {
        Cmd::Nic { cmd } => match cmd {
            NicCmd::Add(a) => {
                if a.trace_path.is_some() && a.packet_trace != Some(true) {
                    return Err(usage("--trace-path needs --packet-trace true"));
                }
                let nic_type = a.nic_type.as_deref().and_then(v0::nic::Type::from_str_name).map(|t| t as i32);
                let nic = v0::Nic {
                    id: a.id.clone(),
                    mac: a.mac.clone(),
                    vni: a.vni,
                    ip: a.ip.clone(),
                    security_group: a.sg.clone(),
                    ip_anti_spoof: Some(a.enable_antispoof),
                    bypass_filtering: Some(a.bypass_filtering),
                    r#type: nic_type,
                    packet_trace: a.packet_trace,
                    packet_trace_path: a.trace_path.clone(),
                    btype: a.btype.clone(),
                    dip: a.dip.clone(),
                    dmac: a.dmac.clone(),
                    link_local: a.link_local.clone(),
                    vhost_user_client: a.vhost_client.then_some(true),
                    ..Default::default()
                };
                // Butterfly's nic_add replaces a NIC with the same id, and its reply does
                // not say so: ask for the list in the same request (served in order, with
                // nothing in between) to tell the user.
                let r = ctx.call_many_opt(
                    vec![
                        v0::Request { nic_list: Some(true), ..req() },
                        v0::Request { nic_add: Some(nic), ..req() },
                    ],
                    false,
                )?;
                let replaced = r[0].nic_list.contains(&a.id);
                if ctx.global.json {
                    if let Ok(v) = text::message_to_json("MessageV0.Response", &r[1]) {
                        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                    }
                } else {
                    println!("{}", r[1].nic_add.as_ref().and_then(|n| n.path.clone()).unwrap_or_default());
                }
                if replaced {
                    eprintln!(
                        "NIC {} existed and was replaced: created again, with new counters and no connections",
                        a.id
                    );
                }
            }
            NicCmd::Update(u) => {
                ctx.call(v0::Request {
                    nic_update: Some(v0::NicUpdateReq {
                        id: u.id.clone(),
                        ip_anti_spoof: u.enable_antispoof,
                        ip: clear_marker(&u.ip),
                        security_group: clear_marker(&u.sg),
                        packet_trace: u.packet_trace,
                        packet_trace_path: u.trace_path.clone(),
                        link_local: clear_marker(&u.link_local),
                    }),
                    ..req()
                })?;
            }
            NicCmd::Del { ids } => {
                ctx.call_many(
                    ids.iter().map(|i| v0::Request { nic_del: Some(i.clone()), ..req() }).collect(),
                )?;
            }
            NicCmd::List => {
                let r = ctx.call(v0::Request { nic_list: Some(true), ..req() })?;
                if ctx.human() {
                    r.nic_list.iter().for_each(|n| println!("{n}"));
                }
            }
            NicCmd::Details { id } => {
                let r =
                    ctx.call(v0::Request { nic_details: Some(id.clone().unwrap_or_default()), ..req() })?;
                if ctx.human() {
                    for (i, n) in r.nic_details.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        print_nic(n);
                    }
                }
            }
            NicCmd::Stats { id } => {
                let r = ctx.call(v0::Request { nic_stats: Some(id.clone()), ..req() })?;
                if ctx.human() {
                    let s = r.nic_stats.unwrap_or_default();
                    println!("in: {}\nout: {}", s.r#in, s.out);
                }
            }
            NicCmd::Export { id, file } => {
                let r = ctx.call(v0::Request { nic_export: Some(id.clone()), ..req() })?;
                let data = r.nic_export.and_then(|e| e.fw_data).and_then(|f| f.data).unwrap_or_default();
                let written = if file == "-" {
                    std::io::Write::write_all(&mut std::io::stdout().lock(), &data)
                } else {
                    std::fs::write(file, &data)
                };
                written.map_err(|e| usage(format!("cannot write {file}: {e}")))?;
            }
            NicCmd::Import { id, file } => {
                let data = if file == "-" {
                    let mut v = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v).map(|_| v)
                } else {
                    std::fs::read(file)
                }
                .map_err(|e| usage(format!("cannot read {file}: {e}")))?;
                let import = v0::NicImportReq { id: Some(id.clone()), data: Some(data) };
                let r = ctx.call(v0::Request { nic_import: Some(import), ..req() })?;
                if ctx.human() {
                    let done = r.nic_import.unwrap_or_default();
                    println!("imported: {}\nskipped: {}", done.imported(), done.skipped());
                }
            }
            NicCmd::Sg { cmd } => match cmd {
                NicSgCmd::List { nic } => {
                    let sgs = nic_sgs(ctx, nic)?;
                    if ctx.human() {
                        sgs.iter().for_each(|s| println!("{s}"));
                    }
                }
                NicSgCmd::Add { nic, sgs } => {
                    let mut cur = nic_sgs(ctx, nic)?;
                    let before = cur.clone();
                    cur.extend(sgs.iter().cloned());
                    cur.sort();
                    cur.dedup();
                    if cur != before {
                        set_nic_sgs(ctx, nic, cur)?;
                    }
                }
                NicSgCmd::Del { nic, sgs } => {
                    let cur = nic_sgs(ctx, nic)?;
                    let new: Vec<String> = cur.iter().filter(|s| !sgs.contains(s)).cloned().collect();
                    if new != cur {
                        set_nic_sgs(ctx, nic, new)?;
                    }
                }
                NicSgCmd::Set { nic, sgs } => set_nic_sgs(ctx, nic, sgs.clone())?,
            },
        },
        Cmd::Sg { cmd } => match cmd {
            SgCmd::Add { ids } => {
                let reqs = ids
                    .iter()
                    .map(|i| v0::Request {
                        sg_add: Some(v0::Sg { id: i.clone(), ..Default::default() }),
                        ..req()
                    })
                    .collect();
                ctx.call_many(reqs)?;
            }
            SgCmd::Del { ids } => {
                ctx.call_many(
                    ids.iter().map(|i| v0::Request { sg_del: Some(i.clone()), ..req() }).collect(),
                )?;
            }
            SgCmd::List => {
                let r = ctx.call(v0::Request { sg_list: Some(true), ..req() })?;
                if ctx.human() {
                    r.sg_list.iter().for_each(|s| println!("{s}"));
                }
            }
            SgCmd::Rule { cmd } => match cmd {
                RuleCmd::Add { sg, rule } => {
                    let rule = build_rule(rule)?;
                    ctx.call(v0::Request {
                        sg_rule_add: Some(v0::SgRuleAddReq { sg_id: sg.clone(), rule }),
                        ..req()
                    })?;
                }
                RuleCmd::Del { sg, id, rule } => {
                    let rule = match id {
                        Some(id) => {
                            let r = ctx.call(v0::Request { sg_rule_list: Some(sg.clone()), ..req() })?;
                            r.sg_rule_list
                                .into_iter()
                                .find(|r| {
                                    Rule::try_from(r).is_ok_and(|x| x.cli_id() == id.to_ascii_lowercase())
                                })
                                .ok_or_else(|| usage(format!("no rule found with hash {id}")))?
                        }
                        None => build_rule(rule)?,
                    };
                    ctx.call(v0::Request {
                        sg_rule_del: Some(v0::SgRuleDelReq { sg_id: sg.clone(), rule }),
                        ..req()
                    })?;
                }
                RuleCmd::List { sg } => {
                    let r = ctx.call(v0::Request { sg_rule_list: Some(sg.clone()), ..req() })?;
                    if ctx.human() {
                        r.sg_rule_list.iter().for_each(|r| println!("{}", rule_line(r)));
                    }
                }
            },
            SgCmd::Member { cmd } => match cmd {
                MemberCmd::Add { sg, ip } => {
                    ctx.call(v0::Request {
                        sg_member_add: Some(v0::SgMemberAddReq { sg_id: sg.clone(), member: ip.clone() }),
                        ..req()
                    })?;
                }
                MemberCmd::Del { sg, ip } => {
                    ctx.call(v0::Request {
                        sg_member_del: Some(v0::SgMemberDelReq { sg_id: sg.clone(), member: ip.clone() }),
                        ..req()
                    })?;
                }
                MemberCmd::List { sg } => {
                    let r = ctx.call(v0::Request { sg_member_list: Some(sg.clone()), ..req() })?;
                    if ctx.human() {
                        r.sg_member_list.iter().for_each(|m| println!("{m}"));
                    }
                }
            },
        },
        Cmd::Vni { cmd } => match cmd {
            VniCmd::Set(a) => {
                use v0::vni_bum::Mode;
                let multicast = a.multicast || a.group.is_some();
                let unicast = a.unicast || !a.flood.is_empty();
                let r = match (multicast, unicast, a.evpn, a.default_mode) {
                    (true, false, false, false) => {
                        vni_set_req(a.vni, Mode::Multicast, a.group.clone(), Vec::new())
                    }
                    (false, true, false, false) => vni_set_req(a.vni, Mode::Unicast, None, a.flood.clone()),
                    (false, false, true, false) => vni_set_req(a.vni, Mode::Evpn, None, Vec::new()),
                    (false, false, false, true) => vni_set_req(a.vni, Mode::Default, None, Vec::new()),
                    _ => {
                        return Err(usage(
                            "vni set needs exactly one mode: --multicast [--group ADDR], --flood IP… (or --unicast), --evpn, or --default",
                        ))
                    }
                };
                ctx.call(r)?;
            }
            VniCmd::Del { vnis } => {
                ctx.call_many(
                    vnis.iter()
                        .map(|&v| vni_set_req(v, v0::vni_bum::Mode::Default, None, Vec::new()))
                        .collect(),
                )?;
            }
            VniCmd::Flood { cmd } => match cmd {
                VniFloodCmd::Add { vni, vteps } => {
                    let mut flood = vni_flood(ctx, *vni)?;
                    let before = flood.len();
                    for t in vteps {
                        if !flood.contains(t) {
                            flood.push(t.clone());
                        }
                    }
                    if flood.len() != before {
                        ctx.call(vni_set_req(*vni, v0::vni_bum::Mode::Unicast, None, flood))?;
                    }
                }
                VniFloodCmd::Del { vni, vteps } => {
                    let flood = vni_flood(ctx, *vni)?;
                    let new: Vec<String> = flood.iter().filter(|f| !vteps.contains(f)).cloned().collect();
                    if new != flood {
                        ctx.call(vni_set_req(*vni, v0::vni_bum::Mode::Unicast, None, new))?;
                    }
                }
            },
            VniCmd::Details { vni } => {
                let r =
                    ctx.call(v0::Request { vni_details: Some(v0::VniDetailsReq { vni: *vni }), ..req() })?;
                if ctx.human() {
                    for (i, v) in r.vni_details.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        print_vni(v);
                    }
                }
            }
        },
        Cmd::Status => {
            let r = ctx.call(v0::Request { app_status: Some(true), ..req() })?;
            // butterfly-rs daemons also say how each VNI floods; Butterfly's does not know.
            let vnis = ctx.try_call(
                v0::Request { vni_details: Some(v0::VniDetailsReq { vni: None }), ..req() },
                ctx.global.json,
            )?;
            if ctx.human() {
                let s = r.app_status.unwrap_or_default();
                let (start, now) = (s.start_date.unwrap_or(0), s.current_date.unwrap_or(0));
                println!(
                    "start date: {} (up {})",
                    date(start),
                    humantime::format_duration(Duration::from_secs(now.saturating_sub(start)))
                );
                println!("current date: {}", date(now));
                println!("request counter: {}", s.request_counter.unwrap_or(0));
                for v in vnis.iter().flat_map(|r| &r.vni_details) {
                    println!("{}", vni_line(v));
                }
                println!("dot graph: \n{}", s.graph_dot.unwrap_or_default());
            }
        }
        Cmd::Shutdown => {
            ctx.call(v0::Request { app_quit: Some(true), ..req() })?;
        }
        Cmd::Request { file, stdout } => {
            let content =
                std::fs::read_to_string(file).map_err(|e| usage(format!("cannot read {file}: {e}")))?;
            let msgs = text::parse_request(&content).map_err(|e| usage(format!("{file}: {e}")))?;
            let reply = ctx.send(&msgs)?;
            if *stdout || ctx.global.json {
                let out = if ctx.global.json { text::to_json(&reply) } else { text::to_text(&reply) };
                print!("{}", out.map_err(|e| usage(e.to_string()))?);
                if ctx.global.json {
                    println!();
                }
            }
            for m in &reply.messages {
                if m.error.is_some() {
                    return Err(usage("error in response"));
                }
                if m.message_0.as_ref().and_then(|m| m.response.as_ref()).is_some_and(|r| !r.status.status) {
                    return Err(usage("error in response (status false)"));
                }
            }
        }
        Cmd::CurveKeygen { file } => {
            let (public, secret) = butterfly_api::transport::curve_keypair()?;
            write_new_secret(file, &format!("{public}\n{secret}\n"))
                .map_err(|e| usage(format!("cannot create {file}: {e}")))?;
            println!("{public}");
        }
        Cmd::Dump => {
            let r = ctx.call_many_opt(
                vec![
                    v0::Request { nic_details: Some(String::new()), ..req() },
                    v0::Request { sg_details: Some(String::new()), ..req() },
                ],
                false,
            )?;
            let mut reqs = Vec::new();
            for mut n in r[0].nic_details.clone() {
                n.path = None;
                reqs.push(v0::Request { nic_add: Some(n), ..req() });
            }
            for sg in r[1].sg_details.clone() {
                reqs.push(v0::Request { sg_add: Some(sg), ..req() });
            }
            // VNIs with a BUM mode of their own (butterfly-rs daemons only).
            let vnis = ctx.try_call(
                v0::Request { vni_details: Some(v0::VniDetailsReq { vni: None }), ..req() },
                false,
            )?;
            for v in vnis.iter().flat_map(|r| &r.vni_details).filter(|v| v.own == Some(true)) {
                let mode =
                    v0::vni_bum::Mode::try_from(v.mode.unwrap_or(0)).unwrap_or(v0::vni_bum::Mode::Default);
                reqs.push(vni_set_req(v.vni.unwrap_or(0), mode, v.group.clone(), v.flood.clone()));
            }
            let msgs = wrap(reqs);
            let out =
                if ctx.global.json { text::to_json(&msgs).map(|s| s + "\n") } else { text::to_text(&msgs) };
            print!("{}", out.map_err(|e| usage(e.to_string()))?);
        }
    }
    Ok(())
}

/// Creates `path` (never replacing a file) readable by its owner only, with `text`.
fn write_new_secret(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

fn read_arg_or_file(v: &str) -> String {
    match std::fs::read_to_string(v) {
        Ok(s) => s,
        Err(_) => v.to_string(),
    }
}

fn make_client(g: &Global) -> Result<Client, Failure> {
    let key = match &g.key {
        Some(path) => Some(Key::load(path).map_err(|e| usage(format!("cannot load encryption key: {e}")))?),
        None => None,
    };
    let curve = match &g.curve_server_key {
        Some(sk) => {
            let server_key = curve_key(read_arg_or_file(sk).trim()).map_err(|e| usage(e.to_string()))?;
            let (public, secret) = match &g.curve_client_keys {
                Some(f) => {
                    let t = std::fs::read_to_string(f).map_err(|e| usage(format!("cannot read {f}: {e}")))?;
                    let mut lines = t.lines().map(str::trim).filter(|l| !l.is_empty());
                    match (lines.next(), lines.next()) {
                        (Some(p), Some(s)) => (p.to_string(), s.to_string()),
                        _ => return Err(usage(format!("{f}: want two lines, public then secret key"))),
                    }
                }
                None => butterfly_api::transport::curve_keypair()?,
            };
            Some(CurveClient {
                server_key,
                public_key: curve_key(&public).map_err(|e| usage(e.to_string()))?,
                secret_key: curve_key(&secret).map_err(|e| usage(e.to_string()))?,
            })
        }
        None => None,
    };
    let timeout = match g.timeout.unwrap_or(5000) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    Ok(Client::new(ClientConfig {
        endpoint: g.endpoint.clone().unwrap_or_else(|| butterfly_api::DEFAULT_ENDPOINT.to_string()),
        timeout,
        key,
        curve,
    })?)
}

fn merge(into: &mut Global, g: &Global) {
    if g.endpoint.is_some() {
        into.endpoint.clone_from(&g.endpoint);
    }
    if g.timeout.is_some() {
        into.timeout = g.timeout;
    }
    if g.key.is_some() {
        into.key.clone_from(&g.key);
    }
    if g.curve_server_key.is_some() {
        into.curve_server_key.clone_from(&g.curve_server_key);
    }
    if g.curve_client_keys.is_some() {
        into.curve_client_keys.clone_from(&g.curve_client_keys);
    }
    into.verbose |= g.verbose;
    into.json |= g.json;
}

/// A command line ending in the word `help` (`butterfly nic add help`) asks for that
/// command's help, as Butterfly's CLI did: it becomes `--help`. Alone, `help` stays clap's
/// own sub-command.
fn help_word(seg: &[String]) -> Vec<String> {
    let mut v = seg.to_vec();
    if v.len() >= 2 && v.last().is_some_and(|a| a == "help") {
        if let Some(last) = v.last_mut() {
            *last = "--help".into();
        }
    }
    v
}

/// Runs the CLI with `args` (including the program name) and returns the
/// process exit code.
pub fn run(args: Vec<String>) -> i32 {
    let rest: Vec<String> = args.into_iter().skip(1).collect();
    let segments: Vec<Vec<String>> = rest.split(|a| a == "+").map(|s| s.to_vec()).collect();
    let mut parsed = Vec::new();
    let mut global = Global::default();
    for seg in &segments {
        let argv = std::iter::once("butterfly".to_string()).chain(help_word(seg));
        match Cli::try_parse_from(argv) {
            Ok(cli) => {
                merge(&mut global, &cli.global);
                parsed.push((seg.join(" "), cli.cmd));
            }
            Err(e) => {
                use clap::error::ErrorKind;
                let code = match e.kind() {
                    ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => EXIT_OK,
                    _ => EXIT_FAILED,
                };
                let _ = e.print();
                return code;
            }
        }
    }
    let client = match make_client(&global) {
        Ok(c) => c,
        Err(f) => {
            eprintln!("{}", f.msg);
            return f.code;
        }
    };
    let ctx = Ctx { client, global };
    for (text, cmd) in &parsed {
        if let Err(f) = exec(&ctx, cmd) {
            eprintln!("{}", f.msg);
            if parsed.len() > 1 {
                eprintln!("error in command: {text}");
            }
            return f.code;
        }
    }
    EXIT_OK
}

#[cfg(test)]
mod help_word_tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_trailing_help_word_asks_for_the_commands_help() {
        assert_eq!(help_word(&words("nic add help")), words("nic add --help"));
        assert_eq!(help_word(&words("nic details help")), words("nic details --help"));
        assert_eq!(help_word(&words("help")), words("help"), "alone, clap's own help sub-command");
        assert_eq!(help_word(&words("nic add --id help --mac x")), words("nic add --id help --mac x"));
        for line in ["nic add help", "sg rule add help", "status help", "dump help"] {
            let argv = std::iter::once("butterfly".to_string()).chain(help_word(&words(line)));
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
        }
        let argv = ["butterfly", "sg", "rule", "add", "sg-1", "--ip-proto", "-1", "--cidr", "0.0.0.0/0"];
        assert!(Cli::try_parse_from(argv).is_ok(), "Butterfly's --ip-proto -1");
    }
}

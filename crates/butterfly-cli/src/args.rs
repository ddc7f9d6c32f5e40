//! The command line as clap parses it: global options and one enum per command family.

use clap::{Args, Parser, Subcommand};

/// The largest VNI (24 bits).
pub(crate) const MAX_VNI: u32 = (1 << 24) - 1;

/// A VNI on the command line: 0 to 2^24 - 1. Negative numbers are taken as values (not as
/// options), so that `--vni -1` says what a VNI may be.
pub(crate) fn parse_vni(s: &str) -> Result<u32, String> {
    match s.trim().parse::<i64>() {
        Ok(v) if (0..=i64::from(MAX_VNI)).contains(&v) => Ok(v as u32),
        _ => Err(format!("a VNI is a number from 0 to {MAX_VNI} (2^24 - 1)")),
    }
}

#[derive(Parser, Debug)]
#[command(name = "butterfly", version = concat!(env!("CARGO_PKG_VERSION"), " (proto revision 6)"),
    about = "Control a butterfly daemon. Chain commands with '+': butterfly sg add sg-1 + sg list",
    disable_help_subcommand = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) cmd: Cmd,
}

#[derive(Args, Debug, Default, Clone)]
pub(crate) struct Global {
    /// Daemon endpoint [default: tcp://127.0.0.1:9999]
    #[arg(short = 'e', long, global = true)]
    pub(crate) endpoint: Option<String>,
    /// Reply timeout in milliseconds, 0 = wait forever [default: 5000]
    #[arg(short = 't', long, global = true)]
    pub(crate) timeout: Option<u64>,
    /// Key file (base64 of 32 bytes) for Butterfly's encryption
    #[arg(short = 'k', long, global = true)]
    pub(crate) key: Option<String>,
    /// Print requests and replies (protobuf text format) on stderr
    #[arg(short = 'v', long, global = true)]
    pub(crate) verbose: bool,
    /// Print replies as JSON
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// CURVE: server public key (Z85) or file containing it
    // Z85's alphabet has `-`: one key in 85 starts with it, and is still a value.
    #[arg(long, global = true, allow_hyphen_values = true)]
    pub(crate) curve_server_key: Option<String>,
    /// CURVE: file with the client key pair (two Z85 lines: public, secret); a
    /// fresh pair is generated when omitted
    #[arg(long, global = true)]
    pub(crate) curve_client_keys: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Cmd {
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
    /// Packet traces (butterfly-rs): the underlay's, into a pcap file
    Trace {
        #[command(subcommand)]
        cmd: TraceCmd,
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
pub(crate) enum NicCmd {
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
pub(crate) struct NicAdd {
    /// NIC id
    #[arg(long)]
    pub(crate) id: String,
    /// MAC address
    #[arg(long)]
    pub(crate) mac: String,
    /// VNI (0 to 2^24 - 1)
    #[arg(long, allow_negative_numbers = true, value_parser = parse_vni)]
    pub(crate) vni: u32,
    /// IP address (repeatable)
    #[arg(long)]
    pub(crate) ip: Vec<String>,
    /// Security group (repeatable)
    #[arg(long)]
    pub(crate) sg: Vec<String>,
    /// Enable ARP anti-spoofing
    #[arg(long)]
    pub(crate) enable_antispoof: bool,
    /// No firewall nor anti-spoofing
    #[arg(long)]
    pub(crate) bypass_filtering: bool,
    /// VHOST_USER_SERVER, TAP or BENCH
    #[arg(long = "type", value_parser = ["VHOST_USER_SERVER", "TAP", "BENCH"])]
    pub(crate) nic_type: Option<String>,
    /// BENCH role: ICMP_SND_LIKE or ICMP_RCV_LIKE
    #[arg(long)]
    pub(crate) btype: Option<String>,
    /// BENCH sender: destination IP
    #[arg(long)]
    pub(crate) dip: Option<String>,
    /// BENCH sender: destination MAC
    #[arg(long)]
    pub(crate) dmac: Option<String>,
    /// Record traffic in a pcap file (true|false)
    #[arg(long)]
    pub(crate) packet_trace: Option<bool>,
    /// pcap path (needs --packet-trace true)
    #[arg(long)]
    pub(crate) trace_path: Option<String>,
    /// IPv6 link-local address the NIC may use besides the EUI-64 one of its MAC, with
    /// anti-spoofing (repeatable; butterfly-rs daemons)
    #[arg(long)]
    pub(crate) link_local: Vec<String>,
    /// vhost-user client mode (butterfly-rs): the VM (QEMU, server=on) serves the socket, the
    /// daemon connects to it and reconnects by itself
    #[arg(long)]
    pub(crate) vhost_client: bool,
}

#[derive(Args, Debug)]
pub(crate) struct NicUpdateArgs {
    /// NIC id
    #[arg(long)]
    pub(crate) id: String,
    /// Replacement IP list (repeatable; `--ip -e` clears)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) ip: Vec<String>,
    /// Replacement security groups (repeatable; `--sg -e` clears)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) sg: Vec<String>,
    /// ARP anti-spoofing (true|false)
    #[arg(long)]
    pub(crate) enable_antispoof: Option<bool>,
    /// Packet trace (true|false)
    #[arg(long)]
    pub(crate) packet_trace: Option<bool>,
    /// pcap path
    #[arg(long)]
    pub(crate) trace_path: Option<String>,
    /// Replacement extra link-local addresses (repeatable; `--link-local -e` clears;
    /// butterfly-rs daemons)
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) link_local: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum NicSgCmd {
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
pub(crate) enum TraceCmd {
    /// Record every frame of the underlay NIC, both ways, into a pcap file (on), or stop (off)
    Underlay {
        /// on or off
        #[arg(value_enum)]
        state: OnOff,
        /// The pcap file (created or truncated; default: the daemon's --underlay-trace-path)
        #[arg(long)]
        path: Option<String>,
    },
}

/// A switch's position.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnOff {
    /// Switched on
    On,
    /// Switched off
    Off,
}

#[derive(Subcommand, Debug)]
pub(crate) enum VniCmd {
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
pub(crate) struct VniSetArgs {
    /// VNI (0 to 2^24 - 1)
    #[arg(allow_negative_numbers = true, value_parser = parse_vni)]
    pub(crate) vni: u32,
    /// Flood to a multicast group (the VNI's default group unless --group)
    #[arg(long)]
    pub(crate) multicast: bool,
    /// The multicast group (implies --multicast)
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Flood to a list of remote VTEPs (head-end replication), possibly empty
    #[arg(long)]
    pub(crate) unicast: bool,
    /// A remote VTEP of the flood list (repeatable, or comma-separated; implies --unicast)
    #[arg(long, value_delimiter = ',')]
    pub(crate) flood: Vec<String>,
    /// BGP EVPN through FRR: advertise the VNI's MACs and IPs, flood to the VTEPs of its
    /// type-3 routes
    #[arg(long)]
    pub(crate) evpn: bool,
    /// Follow the daemon's default again (same as `vni del`)
    #[arg(long = "default")]
    pub(crate) default_mode: bool,
}

#[derive(Subcommand, Debug)]
pub(crate) enum VniFloodCmd {
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
pub(crate) enum SgCmd {
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
pub(crate) struct RuleArgs {
    /// tcp, udp, icmp, icmp6, all, or a protocol number (-1 is Butterfly's "all")
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) ip_proto: Option<String>,
    /// in or out
    #[arg(long, default_value = "in", value_parser = ["in", "out"])]
    pub(crate) dir: String,
    /// Single port (tcp/udp)
    #[arg(long, conflicts_with_all = ["port_start", "port_end"])]
    pub(crate) port: Option<u32>,
    /// First port (tcp/udp)
    #[arg(long)]
    pub(crate) port_start: Option<u32>,
    /// Last port (tcp/udp)
    #[arg(long)]
    pub(crate) port_end: Option<u32>,
    /// Peer block ADDRESS/MASK
    #[arg(long, conflicts_with = "sg_members")]
    pub(crate) cidr: Option<String>,
    /// Peers = members of this security group
    #[arg(long)]
    pub(crate) sg_members: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RuleCmd {
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
pub(crate) enum MemberCmd {
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

//! Command line and configuration file.
//!
//! Butterfly's options keep their names and meanings; an INI file (`-c`) accepts Butterfly's
//! keys. Unlike Butterfly, command-line options override the file (what operators expect),
//! every problem is reported with the option's name, and the exit status is non-zero.
//!
//! The options' doc comments are clap's `--help` text, written for a terminal: their
//! `[:NAME]` and `<vni>` are not links or HTML tags.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use butterfly_api::BumMode;
use clap::Parser;

pub use crate::mtu::NicMtu;

/// Which device carries the underlay (the "physical" side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Underlay {
    /// A TAP interface created (or attached) by name; the kernel routes to it.
    Tap(String),
    /// An existing interface, through AF_PACKET.
    AfPacket(String),
    /// A DPDK port (feature `dpdk`).
    Dpdk(u16),
    /// No physical side: VNIs are local to this host.
    None,
}

impl std::str::FromStr for Underlay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "tap" if !arg.is_empty() => Ok(Underlay::Tap(arg.to_string())),
            "tap" => Ok(Underlay::Tap("bf-underlay".into())),
            "af-packet" | "af_packet" if !arg.is_empty() => Ok(Underlay::AfPacket(arg.to_string())),
            "dpdk" => arg
                .parse()
                .map(Underlay::Dpdk)
                .or(if arg.is_empty() { Ok(Underlay::Dpdk(0)) } else { Err(()) })
                .map_err(|_| format!("bad DPDK port {arg:?}")),
            "none" => Ok(Underlay::None),
            _ => Err(format!("unknown underlay {s:?}: use tap[:NAME], af-packet:IFACE, dpdk[:PORT] or none")),
        }
    }
}

/// butterflyd's command line (Butterfly's options plus ours).
#[derive(Debug, Parser, Default)]
#[command(
    name = "butterflyd",
    version,
    about = "butterfly-rs data-plane daemon: VMs over VXLAN with security groups"
)]
pub struct Cli {
    /// INI configuration file (Butterfly's keys); command-line options override it.
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    /// VTEP IP address (IPv4 or IPv6; chooses the underlay family). Default 198.18.0.1.
    #[arg(short = 'i', long = "ip")]
    pub ip: Option<String>,
    /// ZeroMQ endpoint of the API. Default tcp://127.0.0.1:9999.
    #[arg(short = 'e', long = "endpoint")]
    pub endpoint: Option<String>,
    /// Directory of vhost-user sockets (created if missing).
    #[arg(short = 's', long = "socket-dir")]
    pub socket_dir: Option<PathBuf>,
    /// none, error, warning, info or debug.
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
    /// Trace every new NIC to pcap by default.
    #[arg(short = 't', long = "packet-trace")]
    pub packet_trace: bool,
    /// File holding the base64 API encryption key (Butterfly's AES scheme).
    #[arg(short = 'k', long = "key")]
    pub key: Option<PathBuf>,
    /// CURVE for the API: file with the daemon's key pair (public then secret key, Z85, one
    /// per line; `butterfly curve-keygen FILE` makes one). Needs --curve-clients.
    #[arg(long = "curve-keys")]
    pub curve_keys: Option<PathBuf>,
    /// CURVE: file of the client public keys allowed to use the API (Z85, one per line, `#`
    /// comments), or "any" to serve every client that knows the daemon's public key.
    #[arg(long = "curve-clients")]
    pub curve_clients: Option<String>,
    /// DPDK EAL arguments (with the `dpdk` underlay).
    #[arg(long = "dpdk-args", allow_hyphen_values = true)]
    pub dpdk_args: Option<String>,
    /// DPDK port (with the `dpdk` underlay).
    #[arg(long = "dpdk-port")]
    pub dpdk_port: Option<u16>,
    /// MTU set on the underlay device at start (the AF_PACKET interface, the underlay TAP
    /// or the DPDK port): a number (576 or more, 1280 or more with an IPv6 VTEP), or "max"
    /// for the highest the device accepts. A value the device refuses stops the start.
    /// VMs get this MTU less the VXLAN overhead (50, or 70 with IPv6). Default: the
    /// device's MTU is left as it is.
    #[arg(short = 'm', long = "nic-mtu")]
    pub nic_mtu: Option<String>,
    /// Record the underlay's traffic (VXLAN frames, both ways) into a pcap file from the
    /// start; `butterfly trace underlay on|off` switches it live.
    #[arg(long = "underlay-trace")]
    pub underlay_trace: bool,
    /// The pcap file of the underlay trace (with --workers N > 1, worker i > 0 writes
    /// PATH.w<i>). Default /tmp/butterfly-underlay.pcap.
    #[arg(long = "underlay-trace-path")]
    pub underlay_trace_path: Option<PathBuf>,
    /// Do not offer checksum/TSO offloads to VMs.
    #[arg(long = "no-offload")]
    pub no_offload: bool,
    /// Core the dataplane thread is pinned to.
    #[arg(short = 'u', long = "graph-cpu-core")]
    pub graph_cpu_core: Option<usize>,
    /// Log to stderr only. Default: to journald when it listens, else to syslog (ident
    /// "butterfly", facility local0), and to stderr unless stderr is the journal already.
    #[arg(long = "no-syslog")]
    pub no_syslog: bool,
    /// Physical side: tap[:NAME] (default tap:bf-underlay), af-packet:IFACE, dpdk[:PORT], none.
    #[arg(long = "underlay")]
    pub underlay: Option<String>,
    /// Prefix length of the underlay network of the VTEP address (default 24 / 64).
    #[arg(long = "underlay-prefix")]
    pub underlay_prefix: Option<u8>,
    /// Next hop for remote VTEPs outside the underlay prefix.
    #[arg(long = "gateway")]
    pub gateway: Option<String>,
    /// Number of data-plane worker threads, one graph each (default 1). Worker i owns the
    /// VNIs v with v % workers == i; each worker has its own share of the underlay (an
    /// AF_PACKET socket, a TAP queue or a DPDK queue pair).
    #[arg(long = "workers")]
    pub workers: Option<usize>,
    /// Directory where the configuration is persisted and restored from.
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Do not restore nor persist the configuration.
    #[arg(long = "no-state")]
    pub no_state: bool,
    /// Never let the data-plane thread sleep: lowest latency at the cost of a full core even
    /// when idle (the default sleeps on eventfds when there is no traffic).
    #[arg(long = "busy-poll")]
    pub busy_poll: bool,
    /// Microseconds the data-plane thread keeps polling after the last packet before it
    /// sleeps (0 to 1000000). Default: 200 when pinned with -u (the thread owns its core, and
    /// a guest's next frame usually comes sooner than a wake-up takes), else 0.
    #[arg(long = "poll-spin")]
    pub poll_spin: Option<u64>,
    /// Queue pairs offered to each vhost-user VM (1 to 8, default 1). A guest with several
    /// vCPUs and multiqueue on spreads its flows over them; the NIC's worker polls them all
    /// (with --vhost-spread, several workers share them).
    #[arg(long = "vhost-queue-pairs")]
    pub vhost_queue_pairs: Option<u16>,
    /// Serve each vhost-user NIC's queue pairs from several workers (as many as there are
    /// pairs, at most --workers): the other workers copy frames into and out of the guest,
    /// the NIC's own worker keeps its firewall and its VNI's switch. Needs --workers and
    /// --vhost-queue-pairs of 2 or more.
    #[arg(long = "vhost-spread")]
    pub vhost_spread: bool,
    /// Address of the Prometheus metrics endpoint ("off" to disable). Default 127.0.0.1:9991.
    #[arg(long = "metrics")]
    pub metrics: Option<String>,
    /// How VNIs without a setting of their own (API vni_set) flood broadcast, unknown-unicast
    /// and multicast frames: "multicast" (default: to the VNI's group, 230.x.y.z or
    /// ff05::<vni>), "unicast" (a copy to each VTEP of --flood-vteps; for underlays
    /// without multicast) or "evpn" (BGP EVPN through FRR: see --evpn-netns).
    #[arg(long = "bum-mode")]
    pub bum_mode: Option<String>,
    /// The flood list of --bum-mode unicast: remote VTEP addresses (comma-separated or
    /// repeated), of the underlay's family, not our own --ip.
    #[arg(long = "flood-vteps", value_delimiter = ',')]
    pub flood_vteps: Vec<String>,
    /// EVPN: the network namespace where the VNIs are mirrored for FRR (created if missing;
    /// FRR's zebra and bgpd run in it). Default butterfly-evpn.
    #[arg(long = "evpn-netns")]
    pub evpn_netns: Option<String>,
    /// EVPN: FRR's run directory, where zebra.pid and bgpd.pid tell whether FRR runs.
    /// Default /run/frr.
    #[arg(long = "evpn-frr-dir")]
    pub evpn_frr_dir: Option<PathBuf>,
    /// EVPN: seconds FRR must run after a (re)start before routes it no longer has are
    /// removed from the data plane (1 to 3600). Default 30.
    #[arg(long = "evpn-grace")]
    pub evpn_grace: Option<u64>,
}

/// A configuration problem: names the option and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{option}: {problem}")]
pub struct ConfigError {
    /// The option or INI key.
    pub option: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(option: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { option: option.to_string(), problem: problem.into() }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Nothing.
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

impl LogLevel {
    /// Parses Butterfly's level names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "none" => LogLevel::None,
            "error" => LogLevel::Error,
            "warning" | "warn" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            _ => return None,
        })
    }

    /// The tracing filter directive.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::None => "off",
            LogLevel::Error => "error",
            LogLevel::Warning => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// CURVE security of the API endpoint.
#[derive(Clone)]
pub struct Curve {
    /// The daemon's public key (Z85), for the operator to hand to clients.
    pub public_key: String,
    /// The daemon's secret key.
    pub secret_key: [u8; 32],
    /// Client public keys allowed in; `None` serves every client that knows the public key.
    pub clients: Option<Vec<[u8; 32]>>,
}

impl std::fmt::Debug for Curve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret key.
        f.debug_struct("Curve")
            .field("public_key", &self.public_key)
            .field("clients", &self.clients.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// VTEP address.
    pub ip: IpAddr,
    /// Underlay prefix length.
    pub underlay_prefix: u8,
    /// Gateway for remote VTEPs.
    pub gateway: Option<IpAddr>,
    /// API endpoint.
    pub endpoint: String,
    /// vhost-user socket directory.
    pub socket_dir: PathBuf,
    /// Log level.
    pub log_level: LogLevel,
    /// Trace new NICs by default.
    pub packet_trace: bool,
    /// Log to stderr only (no journald, no syslog).
    pub no_syslog: bool,
    /// Where the lock files of API endpoints live (one daemon per endpoint on the host).
    pub run_dir: PathBuf,
    /// API key file.
    pub key: Option<PathBuf>,
    /// CURVE on the API endpoint.
    pub curve: Option<Curve>,
    /// DPDK EAL arguments.
    pub dpdk_args: String,
    /// MTU to set on the underlay device (None: left as it is).
    pub nic_mtu: Option<NicMtu>,
    /// Underlay trace: on at start, and where it writes.
    pub underlay_trace: UnderlayTrace,
    /// Offloads towards VMs.
    pub offload: bool,
    /// Core to pin the dataplane to.
    pub graph_cpu_core: Option<usize>,
    /// Physical side.
    pub underlay: Underlay,
    /// Where state is persisted (None: not persisted).
    pub state_dir: Option<PathBuf>,
    /// Metrics endpoint.
    pub metrics: Option<SocketAddr>,
    /// Never sleep in the data-plane thread.
    pub busy_poll: bool,
    /// How long the data-plane thread polls after the last packet before sleeping.
    pub poll_spin: std::time::Duration,
    /// Queue pairs offered to each vhost-user VM (1 to [`MAX_VHOST_QUEUE_PAIRS`]).
    pub vhost_queue_pairs: u16,
    /// Each vhost-user NIC's queue pairs served by min(pairs, workers) workers.
    pub vhost_spread: bool,
    /// Data-plane worker threads (graphs), at least 1.
    pub workers: usize,
    /// BUM mode of the VNIs without a setting of their own.
    pub bum: BumMode,
    /// EVPN settings (used by VNIs in EVPN mode).
    pub evpn: EvpnConfig,
}

/// The underlay trace's start state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderlayTrace {
    /// Recording from the start.
    pub on: bool,
    /// The pcap file.
    pub path: PathBuf,
}

/// Where the underlay trace writes unless told otherwise.
pub const DEFAULT_UNDERLAY_TRACE_PATH: &str = "/tmp/butterfly-underlay.pcap";

/// The underlay trace from `--underlay-trace[-path]` or the INI's `underlay-trace` (a
/// boolean) and `underlay-trace-path`.
fn underlay_trace_config(
    cli_on: bool,
    cli_path: Option<PathBuf>,
    get: &dyn Fn(&str, &[&str]) -> Option<String>,
) -> Result<UnderlayTrace, ConfigError> {
    let on = cli_on || ini_bool(get, "underlay-trace")?;
    let path = cli_path
        .or_else(|| get("general", &["underlay-trace-path"]).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_UNDERLAY_TRACE_PATH));
    if path.as_os_str().is_empty() {
        return Err(bad("--underlay-trace-path", "empty path"));
    }
    Ok(UnderlayTrace { on, path })
}

/// The INI's boolean `key` in `[general]`: false when absent.
fn ini_bool(get: &dyn Fn(&str, &[&str]) -> Option<String>, key: &str) -> Result<bool, ConfigError> {
    match get("general", &[key]) {
        None => Ok(false),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(bad(key, format!("{v:?}: use true or false"))),
        },
    }
}

/// Where and how EVPN meets FRR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvpnConfig {
    /// The mirror's network namespace (FRR runs in it).
    pub netns: String,
    /// FRR's run directory (zebra.pid, bgpd.pid).
    pub frr_dir: PathBuf,
    /// Grace time after FRR (re)starts before withdrawals reach the data plane.
    pub grace: std::time::Duration,
}

/// How long a pinned data-plane thread polls after its last packet before sleeping.
pub const DEFAULT_PINNED_SPIN: std::time::Duration = std::time::Duration::from_micros(200);

/// The embedded default VTEP address (RFC 2544 benchmarking range: never routed).
pub const DEFAULT_IP: &str = "198.18.0.1";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn default_dir(root: &str, leaf: &str) -> PathBuf {
    if is_root() {
        PathBuf::from(root)
    } else {
        // SAFETY: as above.
        let uid = unsafe { libc::geteuid() };
        std::env::temp_dir().join(format!("butterfly-{uid}")).join(leaf)
    }
}

/// Reads a key of the INI file: the first of `keys` present in `section`.
type IniGet<'a> = dyn Fn(&str, &[&str]) -> Option<String> + 'a;

impl Config {
    /// Builds the configuration from the command line and, if given, the INI file (the
    /// command line wins, option by option). The error names the first bad option.
    pub fn from_cli(cli: Cli) -> Result<Config, ConfigError> {
        let ini = match &cli.config {
            Some(path) => Some(load_ini(path)?),
            None => None,
        };
        let get = |section: &str, keys: &[&str]| -> Option<String> {
            let ini = ini.as_ref()?;
            keys.iter().find_map(|k| ini.get_from(Some(section), k).map(str::to_string))
        };
        let (ip, underlay_prefix, gateway) = vtep_address(&cli, &get)?;
        let api = api_config(&cli, &get)?;
        let (graph_cpu_core, poll_spin) = cpu_config(&cli, &get)?;
        let underside = underlay_config(&cli, &get, ip)?;
        let state_dir = if cli.no_state {
            None
        } else {
            Some(cli.state_dir.clone().unwrap_or_else(|| default_dir("/var/lib/butterfly", "state")))
        };
        let metrics = match cli.metrics.as_deref() {
            Some("off") => None,
            Some(a) => {
                Some(a.parse().map_err(|_| bad("--metrics", format!("{a:?} is not ADDRESS:PORT or off")))?)
            }
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9991))),
        };
        let bum = bum_default(&cli.bum_mode, &cli.flood_vteps, &get, ip)?;
        let evpn = evpn_config(&cli, &get)?;
        let vhost_queue_pairs = vhost_queue_pairs(&cli, &get)?;
        let vhost_spread = cli.vhost_spread || ini_bool(&get, "vhost-spread")?;
        if vhost_spread && (underside.workers < 2 || vhost_queue_pairs < 2) {
            return Err(bad(
                "--vhost-spread",
                format!(
                    "needs --workers and --vhost-queue-pairs of 2 or more (got {} and {vhost_queue_pairs})",
                    underside.workers
                ),
            ));
        }
        Ok(Config {
            ip,
            underlay_prefix,
            gateway,
            endpoint: api.endpoint,
            socket_dir: api.socket_dir,
            log_level: api.log_level,
            packet_trace: cli.packet_trace,
            no_syslog: cli.no_syslog,
            run_dir: default_dir("/run/butterfly", "run"),
            key: api.key,
            curve: api.curve,
            dpdk_args: underside.dpdk_args,
            nic_mtu: underside.nic_mtu,
            underlay_trace: underlay_trace_config(cli.underlay_trace, cli.underlay_trace_path, &get)?,
            offload: !cli.no_offload,
            graph_cpu_core,
            underlay: underside.underlay,
            state_dir,
            metrics,
            busy_poll: cli.busy_poll,
            poll_spin,
            vhost_queue_pairs,
            vhost_spread,
            workers: underside.workers,
            bum,
            evpn,
        })
    }
}

/// The VTEP's address (`--ip`), its underlay prefix length and gateway.
fn vtep_address(cli: &Cli, get: &IniGet) -> Result<(IpAddr, u8, Option<IpAddr>), ConfigError> {
    let ip_text = cli.ip.clone().or_else(|| get("general", &["ip"])).unwrap_or_else(|| DEFAULT_IP.into());
    let ip: IpAddr =
        ip_text.trim().parse().map_err(|_| bad("--ip", format!("{ip_text:?} is not an IP address")))?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(bad("--ip", format!("{ip} cannot be a VTEP address")));
    }
    let max_prefix = if ip.is_ipv4() { 32 } else { 128 };
    let underlay_prefix = cli.underlay_prefix.unwrap_or(if ip.is_ipv4() { 24 } else { 64 });
    if underlay_prefix > max_prefix {
        return Err(bad("--underlay-prefix", format!("{underlay_prefix} is longer than {max_prefix}")));
    }
    let gateway = match &cli.gateway {
        Some(g) => {
            let gw: IpAddr =
                g.parse().map_err(|_| bad("--gateway", format!("{g:?} is not an IP address")))?;
            if gw.is_ipv4() != ip.is_ipv4() {
                return Err(bad("--gateway", "must be of the same family as --ip"));
            }
            Some(gw)
        }
        None => None,
    };
    Ok((ip, underlay_prefix, gateway))
}

/// The API's endpoint and security, the vhost-user socket directory and the log level.
struct ApiConfig {
    endpoint: String,
    socket_dir: PathBuf,
    log_level: LogLevel,
    key: Option<PathBuf>,
    curve: Option<Curve>,
}

fn api_config(cli: &Cli, get: &IniGet) -> Result<ApiConfig, ConfigError> {
    let endpoint = cli
        .endpoint
        .clone()
        .or_else(|| get("general", &["endpoint"]))
        .unwrap_or_else(|| butterfly_api::DEFAULT_ENDPOINT.to_string());
    butterfly_api::transport::check_endpoint(&endpoint).map_err(|e| bad("--endpoint", e.to_string()))?;
    let socket_dir = cli
        .socket_dir
        .clone()
        .or_else(|| get("general", &["socket-dir"]).map(PathBuf::from))
        .unwrap_or_else(|| default_dir("/run/butterfly", "sockets"));
    let level_text =
        cli.log_level.clone().or_else(|| get("general", &["log-level"])).unwrap_or_else(|| "info".into());
    let log_level = LogLevel::parse(&level_text).ok_or_else(|| {
        bad("--log-level", format!("{level_text:?}: use none, error, warning, info or debug"))
    })?;
    let key = cli.key.clone().or_else(|| get("security", &["encryption_key_path"]).map(PathBuf::from));
    if let Some(k) = &key {
        if !k.is_file() {
            return Err(bad("--key", format!("{} is not a readable file", k.display())));
        }
    }
    let curve = curve_config(
        cli.curve_keys
            .clone()
            .map(|p| ("--curve-keys", p))
            .or_else(|| get("security", &["curve_keys_path"]).map(|p| ("curve_keys_path", PathBuf::from(p)))),
        cli.curve_clients
            .clone()
            .map(|c| ("--curve-clients", c))
            .or_else(|| get("security", &["curve_clients_path"]).map(|c| ("curve_clients_path", c))),
    )?;
    Ok(ApiConfig { endpoint, socket_dir, log_level, key, curve })
}

/// The data-plane core (`--graph-cpu-core`, checked against the CPUs this process may use)
/// and how long an idle worker spins before it sleeps.
fn cpu_config(cli: &Cli, get: &IniGet) -> Result<(Option<usize>, std::time::Duration), ConfigError> {
    let graph_cpu_core = match cli.graph_cpu_core {
        Some(c) => Some(c),
        None => match get("general", &["graph-core-id", "graph-cpu-core"]) {
            Some(c) => {
                Some(c.parse().map_err(|_| bad("graph-core-id", format!("{c:?} is not a core number")))?)
            }
            None => None,
        },
    };
    if let Some(c) = graph_cpu_core {
        // The CPUs this process may use (a cpuset or `taskset` may allow fewer, or others,
        // than 0..count).
        let allowed = brick_core::allowed_cpus().map_err(|e| bad("--graph-cpu-core", e.to_string()))?;
        if !allowed.contains(&c) {
            return Err(bad(
                "--graph-cpu-core",
                format!("core {c} is not among the CPUs this process may use ({})", cpu_list(&allowed)),
            ));
        }
    }
    let poll_spin = match cli.poll_spin {
        Some(us) if us > 1_000_000 => {
            return Err(bad("--poll-spin", format!("{us} µs is more than a second (0 to 1000000)")))
        }
        Some(us) => std::time::Duration::from_micros(us),
        None if graph_cpu_core.is_some() => DEFAULT_PINNED_SPIN,
        None => std::time::Duration::ZERO,
    };
    Ok((graph_cpu_core, poll_spin))
}

/// Most queue pairs a vhost-user VM is offered (brick-vhost's limit).
pub const MAX_VHOST_QUEUE_PAIRS: u16 = brick_vhost::MAX_QUEUE_PAIRS as u16;

/// `--vhost-queue-pairs` (INI `vhost-queue-pairs`): 1 unless set, at most
/// [`MAX_VHOST_QUEUE_PAIRS`].
fn vhost_queue_pairs(cli: &Cli, get: &IniGet) -> Result<u16, ConfigError> {
    let text = match (cli.vhost_queue_pairs, get("general", &["vhost-queue-pairs"])) {
        (Some(n), _) => n.to_string(),
        (None, Some(t)) => t,
        (None, None) => return Ok(1),
    };
    match text.trim().parse::<u16>() {
        Ok(n) if (1..=MAX_VHOST_QUEUE_PAIRS).contains(&n) => Ok(n),
        _ => Err(bad(
            "--vhost-queue-pairs",
            format!("{text:?} is not a number of queue pairs (1 to {MAX_VHOST_QUEUE_PAIRS})"),
        )),
    }
}

/// The underlay device, its MTU, DPDK's arguments and the number of workers.
struct UnderlayConfig {
    underlay: Underlay,
    dpdk_args: String,
    nic_mtu: Option<NicMtu>,
    workers: usize,
}

fn underlay_config(cli: &Cli, get: &IniGet, ip: IpAddr) -> Result<UnderlayConfig, ConfigError> {
    let dpdk_args = cli
        .dpdk_args
        .clone()
        .or_else(|| get("general", &["dpdk-args"]))
        .unwrap_or_else(|| "-c1 -n1 --no-huge --no-pci -m 256".into());
    let nic_mtu = nic_mtu_config(cli.nic_mtu.clone().or_else(|| get("general", &["nic-mtu"])), ip)?;
    let dpdk_port = match cli.dpdk_port {
        Some(p) => Some(p),
        None => match get("general", &["dpdk-port"]) {
            Some(p) => Some(p.parse().map_err(|_| bad("dpdk-port", format!("{p:?} is not a port number")))?),
            None => None,
        },
    };
    let underlay = underlay_device(cli.underlay.as_deref(), dpdk_port)?;
    let workers = match cli.workers {
        Some(w) => w,
        None => match get("general", &["workers"]) {
            Some(w) => {
                w.parse().map_err(|_| bad("--workers", format!("{w:?} is not a number of workers")))?
            }
            None => 1,
        },
    };
    if workers == 0 || workers > brick_vtep::MAX_WORKERS {
        return Err(bad("--workers", format!("{workers} is not in 1..={}", brick_vtep::MAX_WORKERS)));
    }
    Ok(UnderlayConfig { underlay, dpdk_args, nic_mtu, workers })
}

/// `--nic-mtu N|max` (or the INI's `nic-mtu`): at least the minimum IP MTU of the VTEP's
/// family.
fn nic_mtu_config(text: Option<String>, ip: IpAddr) -> Result<Option<NicMtu>, ConfigError> {
    match text {
        None => Ok(None),
        Some(m) if m.trim() == "max" => Ok(Some(NicMtu::Max)),
        Some(m) => {
            let v: u16 = m.parse().map_err(|_| bad("--nic-mtu", format!("{m:?}: a number or \"max\"")))?;
            let min = if ip.is_ipv4() { 576 } else { 1280 };
            if v < min {
                return Err(bad("--nic-mtu", format!("{v} is below the minimum of {min} for this underlay")));
            }
            Ok(Some(NicMtu::Value(v)))
        }
    }
}

/// The underlay from `--underlay` and `--dpdk-port` (or the INI's `dpdk-port`).
fn underlay_device(named: Option<&str>, dpdk_port: Option<u16>) -> Result<Underlay, ConfigError> {
    let underlay = match (named, dpdk_port) {
        // `dpdk` names no port: --dpdk-port (or the INI's dpdk-port) does, else port 0;
        // a DPDK port alone chooses the DPDK underlay.
        (Some("dpdk"), p) | (None, p @ Some(_)) => Underlay::Dpdk(p.unwrap_or(0)),
        (Some(u), _) => u.parse::<Underlay>().map_err(|e| bad("--underlay", e))?,
        (None, None) => Underlay::Tap("bf-underlay".into()),
    };
    // A port given twice must agree, and a port for another underlay is a mistake, not
    // something to ignore silently.
    match (&underlay, dpdk_port) {
        (Underlay::Dpdk(u), Some(p)) if *u != p => {
            return Err(bad("--dpdk-port", format!("port {p} conflicts with --underlay dpdk:{u}")));
        }
        (Underlay::Dpdk(_), _) | (_, None) => {}
        (_, Some(p)) => {
            return Err(bad("--dpdk-port", format!("port {p} given, but the underlay is not DPDK")));
        }
    }
    if let Underlay::Dpdk(_) = underlay {
        if !cfg!(feature = "dpdk") {
            return Err(bad("--underlay", "this butterflyd was built without DPDK (cargo feature `dpdk`)"));
        }
    }
    Ok(underlay)
}

/// Where EVPN meets FRR: the mirror namespace, FRR's run directory and the grace period.
fn evpn_config(cli: &Cli, get: &IniGet) -> Result<EvpnConfig, ConfigError> {
    let netns = match &cli.evpn_netns {
        Some(n) => n.clone(),
        None => get("general", &["evpn-netns"]).unwrap_or_else(|| "butterfly-evpn".into()),
    };
    butterfly_evpn::netns::check_name(&netns).map_err(|e| bad("--evpn-netns", e.to_string()))?;
    let frr_dir = cli
        .evpn_frr_dir
        .clone()
        .or_else(|| get("general", &["evpn-frr-dir"]).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/run/frr"));
    let grace = match cli.evpn_grace {
        Some(g) => g,
        None => match get("general", &["evpn-grace"]) {
            Some(g) => {
                g.parse().map_err(|_| bad("--evpn-grace", format!("{g:?} is not a number of seconds")))?
            }
            None => 30,
        },
    };
    if !(1..=3600).contains(&grace) {
        return Err(bad("--evpn-grace", format!("{grace} is not in 1..=3600 seconds")));
    }
    Ok(EvpnConfig { netns, frr_dir, grace: std::time::Duration::from_secs(grace) })
}

/// The daemon's default BUM mode from `--bum-mode` / `--flood-vteps` or the INI's
/// `bum-mode` / `flood-vteps` (the command line wins, each option on its own), checked
/// against the VTEP address `ip`. A flood list with the multicast mode is an error, not
/// something to ignore.
fn bum_default(
    mode: &Option<String>,
    cli_list: &[String],
    get: &dyn Fn(&str, &[&str]) -> Option<String>,
    ip: IpAddr,
) -> Result<BumMode, ConfigError> {
    let (mode_opt, mode_text) = match mode {
        Some(m) => ("--bum-mode", m.clone()),
        None => ("bum-mode", get("general", &["bum-mode"]).unwrap_or_else(|| "multicast".into())),
    };
    let (list_opt, list): (&str, Vec<String>) = if cli_list.is_empty() {
        let ini = get("general", &["flood-vteps"]).unwrap_or_default();
        ("flood-vteps", ini.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
    } else {
        ("--flood-vteps", cli_list.iter().map(|s| s.trim().to_string()).collect())
    };
    let unicast = match mode_text.trim().to_ascii_lowercase().as_str() {
        "multicast" => false,
        "unicast" => true,
        "evpn" => {
            if !list.is_empty() {
                return Err(bad(list_opt, "a flood list needs --bum-mode unicast (the mode is evpn)"));
            }
            return Ok(BumMode::Evpn { flood: Vec::new() });
        }
        other => return Err(bad(mode_opt, format!("{other:?}: use multicast, unicast or evpn"))),
    };
    if !unicast {
        if !list.is_empty() {
            return Err(bad(list_opt, "a flood list needs --bum-mode unicast (the mode is multicast)"));
        }
        return Ok(BumMode::Multicast { group: None });
    }
    let mut flood = Vec::with_capacity(list.len());
    for t in &list {
        flood.push(t.parse::<IpAddr>().map_err(|_| bad(list_opt, format!("{t:?} is not an IP address")))?);
    }
    let mode = BumMode::Unicast { flood };
    crate::bum::check(&mode, ip).map_err(|e| bad(list_opt, e.to_string()))?;
    Ok(mode)
}

/// The API's CURVE settings from the daemon's key pair file and the authorised clients
/// (a file, or "any"), each with the option or INI key it came from. Both or neither.
fn curve_config(
    keys: Option<(&str, PathBuf)>,
    clients: Option<(&str, String)>,
) -> Result<Option<Curve>, ConfigError> {
    let (keys_opt, keys_path) = match (keys, &clients) {
        (None, None) => return Ok(None),
        (None, Some((opt, _))) => {
            return Err(bad(opt, "needs --curve-keys (or curve_keys_path): the daemon's own key pair"))
        }
        (Some(k), _) => k,
    };
    let Some((clients_opt, clients)) = clients else {
        return Err(bad(
            "--curve-clients",
            format!(
                "missing: with {keys_opt}, give the file of the client public keys allowed to use the \
                 API, or \"any\" to serve every client that knows the daemon's public key"
            ),
        ));
    };
    if !butterfly_api::transport::curve_available() {
        return Err(bad(keys_opt, "this build's libzmq has no CURVE (see .cargo/config.toml)"));
    }
    let lines = key_lines(keys_opt, &keys_path)?;
    let [(_, public), (n, secret)] = lines.as_slice() else {
        return Err(bad(
            keys_opt,
            format!(
                "{}: want two keys, public then secret (Z85, one per line; `butterfly curve-keygen FILE` \
                 makes such a file), found {}",
                keys_path.display(),
                lines.len()
            ),
        ));
    };
    let key = |n: usize, text: &str| {
        butterfly_api::transport::curve_key(text)
            .map_err(|e| bad(keys_opt, format!("{} line {n}: {e}", keys_path.display())))
    };
    key(lines[0].0, public)?;
    let secret_key = key(*n, secret)?;
    let clients = if clients.trim() == "any" {
        None
    } else {
        let path = PathBuf::from(clients.trim());
        let mut keys = Vec::new();
        for (n, text) in key_lines(clients_opt, &path)? {
            let k = butterfly_api::transport::curve_key(&text)
                .map_err(|e| bad(clients_opt, format!("{} line {n}: {e}", path.display())))?;
            keys.push(k);
        }
        if keys.is_empty() {
            return Err(bad(
                clients_opt,
                format!("{} lists no key: no client could use the API", path.display()),
            ));
        }
        Some(keys)
    };
    Ok(Some(Curve { public_key: public.clone(), secret_key, clients }))
}

/// The non-empty, non-comment lines of a key file, with their line numbers.
fn key_lines(option: &str, path: &Path) -> Result<Vec<(usize, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(option, format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i, l.to_string()))
        .collect())
}

fn load_ini(path: &Path) -> Result<ini::Ini, ConfigError> {
    ini::Ini::load_from_file(path).map_err(|e| bad("--config", format!("{}: {e}", path.display())))
}

/// `0-3,6` style list of CPU numbers (as in /proc and `taskset -c`).
fn cpu_list(cpus: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if i == j { cpus[i].to_string() } else { format!("{}-{}", cpus[i], cpus[j]) });
        i = j + 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["butterflyd"];
        v.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(v).expect("clap accepts"))
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = parse(&["--no-state"]).unwrap();
        assert_eq!(c.ip.to_string(), DEFAULT_IP);
        assert_eq!(c.endpoint, "tcp://127.0.0.1:9999");
        assert_eq!(c.underlay, Underlay::Tap("bf-underlay".into()));
        assert!(c.state_dir.is_none());
        assert!(!c.busy_poll, "idle data planes sleep by default");
        assert!(parse(&["--no-state", "--busy-poll"]).unwrap().busy_poll);
        assert_eq!(c.poll_spin, std::time::Duration::ZERO, "an unpinned data plane sleeps at once");
        assert_eq!(parse(&["--no-state", "--poll-spin", "50"]).unwrap().poll_spin.as_micros(), 50);
        assert_eq!(c.vhost_queue_pairs, 1, "one queue pair unless asked");
        assert_eq!(parse(&["--no-state", "--vhost-queue-pairs", "4"]).unwrap().vhost_queue_pairs, 4);
        for bad in ["0", "9"] {
            let e = parse(&["--no-state", "--vhost-queue-pairs", bad]).unwrap_err().to_string();
            assert!(e.contains("--vhost-queue-pairs") && e.contains("1 to 8"), "{bad}: {e}");
        }
        let e = parse(&["--no-state", "--poll-spin", "2000000"]).unwrap_err();
        assert_eq!(e.option, "--poll-spin", "{e}");
        assert_eq!(c.workers, 1);
        assert_eq!(parse(&["--no-state", "--workers", "2"]).unwrap().workers, 2);
        assert!(!c.vhost_spread);
        let spread = ["--no-state", "--vhost-spread", "--workers", "2", "--vhost-queue-pairs", "2"];
        assert!(parse(&spread).unwrap().vhost_spread);
        // Nothing to spread over: refused, naming the option and what it lacks.
        for lacking in [&spread[..4], &[spread[0], spread[1], spread[4], spread[5]][..]] {
            let e = parse(lacking).unwrap_err();
            assert_eq!(e.option, "--vhost-spread", "{lacking:?}: {e}");
            assert!(e.to_string().contains("2 or more"), "{e}");
        }
    }

    #[test]
    fn bad_values_name_the_option() {
        assert_eq!(parse(&["-i", "nope"]).unwrap_err().option, "--ip");
        assert_eq!(parse(&["-i", "0.0.0.0"]).unwrap_err().option, "--ip");
        assert_eq!(parse(&["-l", "loud"]).unwrap_err().option, "--log-level");
        assert_eq!(parse(&["-m", "100"]).unwrap_err().option, "--nic-mtu");
        assert_eq!(parse(&["-e", "localhost"]).unwrap_err().option, "--endpoint");
        assert_eq!(parse(&["--underlay", "wifi"]).unwrap_err().option, "--underlay");
        assert_eq!(parse(&["--workers", "0"]).unwrap_err().option, "--workers");
        assert_eq!(parse(&["--workers", "65"]).unwrap_err().option, "--workers");
        assert_eq!(parse(&["-u", "4096"]).unwrap_err().option, "--graph-cpu-core");
        assert_eq!(parse(&["-k", "/nonexistent/key"]).unwrap_err().option, "--key");
        assert_eq!(parse(&["-c", "/nonexistent.ini"]).unwrap_err().option, "--config");
        assert_eq!(parse(&["-i", "10.0.0.1", "--gateway", "fe80::1"]).unwrap_err().option, "--gateway");
    }

    #[test]
    fn ini_keys_are_read_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.ini");
        std::fs::write(
            &f,
            "[general]\nip = 2001:db8::1\nendpoint = tcp://127.0.0.1:7777\nlog-level = debug\ngraph-core-id = 0\nworkers = 3\nvhost-queue-pairs = 2\n",
        )
        .unwrap();
        let c = parse(&["-c", f.to_str().unwrap(), "-e", "tcp://127.0.0.1:8888", "--no-state"]).unwrap();
        assert_eq!(c.ip.to_string(), "2001:db8::1");
        assert_eq!(c.endpoint, "tcp://127.0.0.1:8888");
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.graph_cpu_core, Some(0));
        assert_eq!(c.underlay_prefix, 64);
        assert_eq!(c.workers, 3);
        assert_eq!(c.vhost_queue_pairs, 2);
        assert!(!c.vhost_spread);
        let c = parse(&["-c", f.to_str().unwrap(), "--workers", "2", "--no-state"]).unwrap();
        assert_eq!(c.workers, 2, "the command line wins");
        std::fs::write(&f, "[general]\nworkers = 2\nvhost-queue-pairs = 2\nvhost-spread = yes\n").unwrap();
        assert!(parse(&["-c", f.to_str().unwrap(), "--no-state"]).unwrap().vhost_spread);
        std::fs::write(&f, "[general]\nvhost-spread = maybe\n").unwrap();
        assert_eq!(parse(&["-c", f.to_str().unwrap(), "--no-state"]).unwrap_err().option, "vhost-spread");
        std::fs::write(&f, "[general]\nworkers = many\n").unwrap();
        assert_eq!(parse(&["-c", f.to_str().unwrap(), "--no-state"]).unwrap_err().option, "--workers");
    }

    #[test]
    fn nic_mtu_and_the_underlay_trace_come_from_flags_or_the_ini() {
        let c = parse(&["--no-state"]).unwrap();
        assert_eq!(c.nic_mtu, None, "the device's MTU is left alone by default");
        assert!(!c.underlay_trace.on);
        assert_eq!(c.underlay_trace.path, PathBuf::from(DEFAULT_UNDERLAY_TRACE_PATH));
        assert_eq!(parse(&["--no-state", "-m", "max"]).unwrap().nic_mtu, Some(NicMtu::Max));
        assert_eq!(parse(&["--no-state", "-m", "9000"]).unwrap().nic_mtu, Some(NicMtu::Value(9000)));
        assert_eq!(parse(&["-m", "70000"]).unwrap_err().option, "--nic-mtu");
        assert_eq!(parse(&["-i", "fd00::1", "-m", "1279"]).unwrap_err().option, "--nic-mtu");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.ini");
        std::fs::write(
            &f,
            "[general]\nnic-mtu = max\nunderlay-trace = true\nunderlay-trace-path = /tmp/u.pcap\n",
        )
        .unwrap();
        let c = parse(&["-c", f.to_str().unwrap(), "--no-state"]).unwrap();
        assert_eq!(c.nic_mtu, Some(NicMtu::Max));
        assert_eq!(c.underlay_trace, UnderlayTrace { on: true, path: PathBuf::from("/tmp/u.pcap") });
        let c = parse(&[
            "-c",
            f.to_str().unwrap(),
            "--no-state",
            "-m",
            "1600",
            "--underlay-trace-path",
            "/tmp/v",
        ])
        .unwrap();
        assert_eq!(c.nic_mtu, Some(NicMtu::Value(1600)), "the command line wins");
        assert_eq!(c.underlay_trace.path, PathBuf::from("/tmp/v"));
        std::fs::write(&f, "[general]\nunderlay-trace = maybe\n").unwrap();
        assert_eq!(parse(&["-c", f.to_str().unwrap(), "--no-state"]).unwrap_err().option, "underlay-trace");
    }

    #[test]
    fn the_default_bum_mode_comes_from_flags_or_the_ini() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(parse(&["--no-state"]).unwrap().bum, BumMode::Multicast { group: None });
        let c = parse(&["--no-state", "--bum-mode", "unicast", "--flood-vteps", "198.18.0.2,198.18.0.3"])
            .unwrap();
        assert_eq!(c.bum, BumMode::Unicast { flood: vec![ip("198.18.0.2"), ip("198.18.0.3")] });
        let c = parse(&[
            "--no-state",
            "--bum-mode",
            "UNICAST",
            "--flood-vteps",
            "198.18.0.2",
            "--flood-vteps",
            "198.18.0.4",
        ])
        .unwrap();
        assert_eq!(c.bum, BumMode::Unicast { flood: vec![ip("198.18.0.2"), ip("198.18.0.4")] });
        assert_eq!(
            parse(&["--no-state", "--bum-mode", "unicast"]).unwrap().bum,
            BumMode::Unicast { flood: vec![] }
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.ini");
        std::fs::write(&f, "[general]\nbum-mode = unicast\nflood-vteps = 198.18.0.7 , 198.18.0.8\n").unwrap();
        let fs = f.to_str().unwrap();
        let c = parse(&["--no-state", "-c", fs]).unwrap();
        assert_eq!(c.bum, BumMode::Unicast { flood: vec![ip("198.18.0.7"), ip("198.18.0.8")] });
        let c = parse(&["--no-state", "-c", fs, "--flood-vteps", "198.18.0.9"]).unwrap();
        assert_eq!(c.bum, BumMode::Unicast { flood: vec![ip("198.18.0.9")] }, "the command line wins");
        let c =
            parse(&["--no-state", "--bum-mode", "evpn", "--evpn-netns", "h1e", "--evpn-grace", "5"]).unwrap();
        assert_eq!(c.bum, BumMode::Evpn { flood: vec![] });
        assert_eq!((c.evpn.netns.as_str(), c.evpn.grace.as_secs()), ("h1e", 5));
        assert_eq!(parse(&["--no-state"]).unwrap().evpn.netns, "butterfly-evpn");
        assert_eq!(parse(&["--no-state", "--evpn-netns", "../x"]).unwrap_err().option, "--evpn-netns");
        assert_eq!(parse(&["--no-state", "--evpn-grace", "0"]).unwrap_err().option, "--evpn-grace");
        let e = parse(&["--no-state", "--bum-mode", "evpn", "--flood-vteps", "198.18.0.2"]).unwrap_err();
        assert_eq!(e.option, "--flood-vteps");
        let e = parse(&["--no-state", "-c", fs, "--bum-mode", "multicast"]).unwrap_err();
        assert_eq!(e.option, "flood-vteps", "the INI's list with the multicast mode: {e}");
        // Bad input names the option and the address.
        for (args, opt, why) in [
            (vec!["--bum-mode", "broadcast"], "--bum-mode", "use multicast, unicast or evpn"),
            (vec!["--flood-vteps", "198.18.0.2"], "--flood-vteps", "needs --bum-mode unicast"),
            (
                vec!["--bum-mode", "unicast", "--flood-vteps", "239.0.0.1"],
                "--flood-vteps",
                "is a multicast address",
            ),
            (
                vec!["--bum-mode", "unicast", "--flood-vteps", "fd00::2"],
                "--flood-vteps",
                "the underlay is IPv4",
            ),
            (
                vec!["--bum-mode", "unicast", "--flood-vteps", "198.18.0.1"],
                "--flood-vteps",
                "own VTEP address",
            ),
            (
                vec!["--bum-mode", "unicast", "--flood-vteps", "198.18.0.2,198.18.0.2"],
                "--flood-vteps",
                "listed twice",
            ),
            (
                vec!["--bum-mode", "unicast", "--flood-vteps", "198.18.0.x"],
                "--flood-vteps",
                "not an IP address",
            ),
        ] {
            let mut a = vec!["--no-state"];
            a.extend(args.iter());
            let e = parse(&a).unwrap_err();
            assert_eq!(e.option, opt, "{args:?}: {e}");
            assert!(e.problem.contains(why), "{args:?}: {e}");
        }
    }

    #[test]
    fn curve_keys_and_clients_come_together_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (spub, ssec) = butterfly_api::transport::curve_keypair().unwrap();
        let (cpub, _) = butterfly_api::transport::curve_keypair().unwrap();
        let keys = dir.path().join("server.keys");
        std::fs::write(&keys, format!("{spub}\n{ssec}\n")).unwrap();
        let clients = dir.path().join("clients");
        std::fs::write(&clients, format!("# ops laptop\n{cpub}\n\n")).unwrap();
        let (k, c) = (keys.to_str().unwrap(), clients.to_str().unwrap());
        let cfg = parse(&["--no-state", "--curve-keys", k, "--curve-clients", c]).unwrap();
        let curve = cfg.curve.expect("CURVE on");
        assert_eq!(curve.public_key, spub);
        assert_eq!(curve.secret_key, butterfly_api::transport::curve_key(&ssec).unwrap());
        assert_eq!(curve.clients, Some(vec![butterfly_api::transport::curve_key(&cpub).unwrap()]));
        assert!(!format!("{curve:?}").contains(&ssec), "Debug never shows the secret key");
        let any = parse(&["--no-state", "--curve-keys", k, "--curve-clients", "any"]).unwrap();
        assert_eq!(any.curve.unwrap().clients, None);
        // From the INI file.
        let ini = dir.path().join("b.ini");
        std::fs::write(&ini, format!("[security]\ncurve_keys_path = {k}\ncurve_clients_path = {c}\n"))
            .unwrap();
        assert!(parse(&["--no-state", "-c", ini.to_str().unwrap()]).unwrap().curve.is_some());
        // Every problem names the option and what is wrong.
        let bad_key = dir.path().join("bad.keys");
        std::fs::write(&bad_key, format!("{spub}\nnot-a-key\n")).unwrap();
        let one_key = dir.path().join("one.keys");
        std::fs::write(&one_key, format!("{ssec}\n")).unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "# nobody\n").unwrap();
        let bad_client = dir.path().join("bad-clients");
        std::fs::write(&bad_client, format!("{cpub}\n{cpub}x\n")).unwrap();
        let (bk, ok, e, bc) = (
            bad_key.to_str().unwrap(),
            one_key.to_str().unwrap(),
            empty.to_str().unwrap(),
            bad_client.to_str().unwrap(),
        );
        for (args, opt, why) in [
            (vec!["--curve-keys", k], "--curve-clients", "missing"),
            (vec!["--curve-clients", c], "--curve-clients", "needs --curve-keys"),
            (vec!["--curve-keys", bk, "--curve-clients", c], "--curve-keys", "line 2"),
            (vec!["--curve-keys", ok, "--curve-clients", c], "--curve-keys", "want two keys"),
            (vec!["--curve-keys", "/nonexistent", "--curve-clients", c], "--curve-keys", "/nonexistent"),
            (vec!["--curve-keys", k, "--curve-clients", e], "--curve-clients", "lists no key"),
            (vec!["--curve-keys", k, "--curve-clients", bc], "--curve-clients", "line 2"),
        ] {
            let mut a = vec!["--no-state"];
            a.extend(args.iter());
            let err = parse(&a).unwrap_err();
            assert_eq!(err.option, opt, "{args:?}: {err}");
            assert!(err.problem.contains(why), "{args:?}: {err}");
        }
    }

    #[test]
    fn cpu_lists_read_like_taskset() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(cpu_list(&[4, 5]), "4-5");
        assert_eq!(cpu_list(&[1]), "1");
        assert_eq!(cpu_list(&[0, 2, 4]), "0,2,4");
    }

    #[test]
    fn the_graph_core_must_be_one_this_process_may_use() {
        let allowed = brick_core::allowed_cpus().unwrap();
        let first = allowed[0].to_string();
        let pinned = parse(&["--no-state", "-u", &first]).unwrap();
        assert_eq!(pinned.graph_cpu_core, Some(allowed[0]));
        assert_eq!(pinned.poll_spin, DEFAULT_PINNED_SPIN, "a pinned data plane spins a little by default");
        // The first CPU past the allowed ones is refused, and the message says which are allowed.
        let outside = (allowed[allowed.len() - 1] + 1).to_string();
        let e = parse(&["--no-state", "-u", &outside]).unwrap_err();
        assert_eq!(e.option, "--graph-cpu-core");
        assert!(e.to_string().contains(&cpu_list(&allowed)), "{e}");
    }

    #[test]
    fn underlays_parse() {
        assert_eq!("none".parse::<Underlay>().unwrap(), Underlay::None);
        assert_eq!("af-packet:eth0".parse::<Underlay>().unwrap(), Underlay::AfPacket("eth0".into()));
        assert_eq!("tap:x".parse::<Underlay>().unwrap(), Underlay::Tap("x".into()));
        assert_eq!("dpdk:3".parse::<Underlay>().unwrap(), Underlay::Dpdk(3));
        assert!("dpdk:x".parse::<Underlay>().is_err());
    }

    #[test]
    fn a_dpdk_port_for_another_underlay_is_refused() {
        let e = parse(&["--no-state", "--underlay", "tap", "--dpdk-port", "3"]).unwrap_err();
        assert_eq!(e.option, "--dpdk-port");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.ini");
        std::fs::write(&f, "[general]\ndpdk-port = 2\n").unwrap();
        let e = parse(&["--no-state", "-c", f.to_str().unwrap(), "--underlay", "none"]).unwrap_err();
        assert_eq!(e.option, "--dpdk-port");
    }

    #[cfg(feature = "dpdk")]
    #[test]
    fn the_dpdk_port_comes_from_either_option_and_must_agree() {
        let c = parse(&["--no-state", "--underlay", "dpdk", "--dpdk-port", "3"]).unwrap();
        assert_eq!(c.underlay, Underlay::Dpdk(3), "plain `dpdk` takes --dpdk-port");
        assert_eq!(parse(&["--no-state", "--underlay", "dpdk"]).unwrap().underlay, Underlay::Dpdk(0));
        assert_eq!(parse(&["--no-state", "--dpdk-port", "2"]).unwrap().underlay, Underlay::Dpdk(2));
        let c = parse(&["--no-state", "--underlay", "dpdk:3", "--dpdk-port", "3"]).unwrap();
        assert_eq!(c.underlay, Underlay::Dpdk(3));
        let e = parse(&["--no-state", "--underlay", "dpdk:1", "--dpdk-port", "3"]).unwrap_err();
        assert_eq!(e.option, "--dpdk-port");
    }
}

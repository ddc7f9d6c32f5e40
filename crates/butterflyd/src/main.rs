//! butterflyd: the butterfly-rs daemon. It builds the data-plane graph (underlay NIC, VTEP,
//! per-VNI switches, per-VM firewall, anti-spoof, optional sniffer, vhost-user/TAP endpoint),
//! serves Butterfly's protobuf API over ZeroMQ, persists its configuration, and exports
//! Prometheus metrics. See docs/operator-guide.md.

mod bench;
mod bum;
mod config;
mod daemon;
mod dataplane;
mod evpn;
mod handover;
mod link;
mod lock;
mod logging;
mod metrics;
mod mtu;
mod state;
mod underlay_trace;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::GraphHandle;
use butterfly_api::transport::TransportError;
use butterfly_api::{crypto, CurveServer, DispatchConfig, MemoryHandler, Server, ServerConfig};
use clap::Parser;
use sd_notify::NotifyState;
use tracing::{error, info, warn};

use crate::config::{Cli, Config};
use crate::daemon::Daemon;
use crate::dataplane::{Dataplane, DataplaneError};
use crate::state::StateStore;

fn main() -> ExitCode {
    let cfg = match Config::from_cli(Cli::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("butterflyd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("butterflyd: {e}");
            ExitCode::from(1)
        }
    }
}

/// Why the daemon could not start, or stopped serving: one variant per failing step.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// Another daemon holds the endpoint or the state directory.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The vhost-user socket directory cannot be created.
    #[error("socket directory {}: {source}", path.display())]
    SocketDir { path: PathBuf, source: io::Error },
    /// The encryption key file cannot be read.
    #[error("key {}: {source}", path.display())]
    KeyRead { path: PathBuf, source: io::Error },
    /// The encryption key file holds no usable key.
    #[error("key {}: {source}", path.display())]
    KeyParse { path: PathBuf, source: crypto::CryptoError },
    /// The state directory cannot be created.
    #[error("state directory {}: {source}", path.display())]
    StateDir { path: PathBuf, source: io::Error },
    /// The API endpoint cannot be bound.
    #[error("API endpoint {endpoint}: {source}")]
    ApiBind { endpoint: String, source: TransportError },
    /// The data plane (underlay, workers) cannot start.
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    /// The saved configuration cannot be read.
    #[error("cannot restore the saved configuration: {0} (move it away to start empty)")]
    Restore(#[source] io::Error),
    /// The metrics endpoint cannot be bound.
    #[error("metrics endpoint {addr}: {source} (choose another with --metrics ADDR:PORT or off)")]
    Metrics { addr: SocketAddr, source: io::Error },
    /// SIGINT/SIGTERM handling cannot be set up.
    #[error("signal handling: {0}")]
    Signals(#[source] io::Error),
    /// The API server failed while serving.
    #[error("API server: {0}")]
    Api(#[source] TransportError),
}

fn run(cfg: Config) -> Result<(), RunError> {
    let (sinks, log) = logging::init(cfg.log_level, cfg.no_syslog);
    announce_logging(&sinks, cfg.no_syslog);
    // One daemon per API endpoint and per state directory, checked before anything is
    // touched: a second one must not fight the first over its underlay or its state.
    let _locks = take_locks(&cfg)?;
    std::fs::create_dir_all(&cfg.socket_dir)
        .map_err(|source| RunError::SocketDir { path: cfg.socket_dir.clone(), source })?;
    let key = load_key(&cfg)?;
    let state = match &cfg.state_dir {
        Some(dir) => {
            Some(StateStore::open(dir).map_err(|source| RunError::StateDir { path: dir.clone(), source })?)
        }
        None => None,
    };
    // The API is bound before the data plane starts: an endpoint in use is reported as such,
    // not as whatever the underlay says when a second daemon reaches for it. Requests wait
    // in ZeroMQ's queue until the state is restored and serving begins.
    let mut server = bind_api(&cfg, key)?;
    let endpoint = server.endpoint().to_string();
    // The metrics port too: a port in use stops the start before the underlay is touched.
    let metrics_listener = match cfg.metrics {
        Some(addr) => {
            Some(std::net::TcpListener::bind(addr).map_err(|source| RunError::Metrics { addr, source })?)
        }
        None => None,
    };

    let dp = Dataplane::start(&cfg)?;
    let graphs = dp.handles();
    let mut mem = MemoryHandler::new();
    mem.socket_dir = cfg.socket_dir.clone();
    mem.default_packet_trace = cfg.packet_trace;
    let mut daemon = Daemon::new(mem, dp, state, log);
    match daemon.restore().map_err(RunError::Restore)? {
        0 => {}
        n => info!("restored {n} NIC(s) from the saved configuration"),
    }

    let stop = Arc::new(AtomicBool::new(false));
    let metrics = match (metrics_listener, cfg.metrics) {
        (Some(listener), Some(addr)) => Some(
            metrics::serve_on(listener, graphs.clone(), Arc::clone(&stop))
                .map_err(|source| RunError::Metrics { addr, source })?,
        ),
        _ => None,
    };
    stop_on_signals(&server, &stop)?;
    announce_ready(&cfg, &endpoint, daemon.nic_count());

    let mut watchdog = Watchdog::new(graphs);
    let exit = loop {
        if server.stop_handle().is_stopped() {
            break Ok(butterfly_api::ServeExit::Stopped);
        }
        match server.serve_once(&mut daemon) {
            Ok(Some(true)) => break Ok(butterfly_api::ServeExit::Quit),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        watchdog.tick();
    };
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    info!("shutting down ({exit:?})");
    daemon.shutdown();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    exit.map(|_| ()).map_err(RunError::Api)
}

/// Says where the logs go.
fn announce_logging(sinks: &logging::Sinks, no_syslog: bool) {
    let and_stderr = if sinks.stderr { " and stderr" } else { "" };
    match sinks.system {
        logging::SystemLog::Journald => {
            info!("logging to journald (identifier {}){and_stderr}", logging::IDENT)
        }
        logging::SystemLog::Syslog => {
            info!("logging to syslog ({}, facility local0){and_stderr}", logging::IDENT)
        }
        logging::SystemLog::None if !no_syslog => {
            info!("neither journald nor syslog listens: logging to stderr only")
        }
        logging::SystemLog::None => {}
    }
}

/// The endpoint's lock (when the endpoint is a fixed address) and the state directory's:
/// held until the daemon exits.
fn take_locks(cfg: &Config) -> Result<(Option<lock::Lock>, Option<lock::Lock>), RunError> {
    let about = format!(
        "pid={}\nendpoint={}\nstate={}\n",
        std::process::id(),
        cfg.endpoint,
        cfg.state_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "none".into())
    );
    let endpoint = if lock::endpoint_is_fixed(&cfg.endpoint) {
        let path = lock::endpoint_lock_path(&cfg.run_dir, &cfg.endpoint);
        Some(lock::Lock::acquire(&path, &format!("the API endpoint {}", cfg.endpoint), &about, true)?)
    } else {
        None
    };
    let state = match &cfg.state_dir {
        Some(dir) => Some(lock::Lock::acquire(
            &dir.join("butterflyd.lock"),
            &format!("the state directory {}", dir.display()),
            &about,
            false,
        )?),
        None => None,
    };
    Ok((endpoint, state))
}

/// Butterfly's API encryption key (`-k`), if configured.
fn load_key(cfg: &Config) -> Result<Option<crypto::Key>, RunError> {
    let Some(path) = &cfg.key else {
        eprintln!("No encryption configured");
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(path).map_err(|source| RunError::KeyRead { path: path.clone(), source })?;
    let key = crypto::Key::from_base64(text.trim())
        .map_err(|source| RunError::KeyParse { path: path.clone(), source })?;
    eprintln!("Encryption key loaded");
    Ok(Some(key))
}

/// Binds the API endpoint, with the key and CURVE settings, and says how it is secured.
fn bind_api(cfg: &Config, key: Option<crypto::Key>) -> Result<Server, RunError> {
    let server = Server::bind(ServerConfig {
        endpoint: cfg.endpoint.clone(),
        // 8 MiB: a nic_import of a full connection table (65,536 × 64 bytes) fits.
        dispatch: DispatchConfig { key, max_request_bytes: 8 << 20, ..DispatchConfig::default() },
        poll_interval: Duration::from_millis(50),
        curve: cfg
            .curve
            .as_ref()
            .map(|c| CurveServer { secret_key: c.secret_key, authorized_clients: c.clients.clone() }),
        ..ServerConfig::default()
    })
    .map_err(|source| RunError::ApiBind { endpoint: cfg.endpoint.clone(), source })?;
    let endpoint = server.endpoint();
    match &cfg.curve {
        Some(c) => match &c.clients {
            Some(keys) => {
                info!("API: CURVE, public key {}, {} authorised client key(s)", c.public_key, keys.len())
            }
            None => warn!(
                "API: CURVE, public key {}, any client that knows it is served (--curve-clients any)",
                c.public_key
            ),
        },
        None if !endpoint.starts_with("ipc://") && !endpoint.starts_with("tcp://127.") => warn!(
            "API on {endpoint} without CURVE: anyone who reaches it can change the network (see --curve-keys)"
        ),
        None => {}
    }
    Ok(server)
}

/// SIGINT / SIGTERM (or `stop`, set on the way out) stop the API server; the main loop
/// then shuts the daemon down cleanly.
fn stop_on_signals(server: &Server, stop: &Arc<AtomicBool>) -> Result<(), RunError> {
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&signalled)).map_err(RunError::Signals)?;
    }
    let server_stop = server.stop_handle();
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while !signalled.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            server_stop.stop();
        })
        .map_err(RunError::Signals)?;
    Ok(())
}

/// Tells the operator (stderr, log) and systemd (Type=notify) that the daemon serves: the
/// API is bound and the saved state restored.
fn announce_ready(cfg: &Config, endpoint: &str, nics: usize) {
    info!(
        "butterflyd ready: VTEP {} on {:?}, {} worker(s), API on {endpoint}",
        cfg.ip, cfg.underlay, cfg.workers
    );
    eprintln!(
        "butterflyd ready: VTEP {} ({:?} underlay), API on {endpoint}{}\n\
         Add a first VM NIC with the CLI (`cargo run -p butterfly-cli --` or an installed `butterfly`):\n  \
         butterfly nic add -e {endpoint}{security} --id vm1 --mac 52:54:00:00:00:01 --vni 1 --ip 10.0.0.1\n\
         then start QEMU with -chardev socket,id=c0,path={}/qemu-vhost-vm1 -netdev vhost-user,id=n0,chardev=c0 ...",
        cfg.ip,
        cfg.underlay,
        cfg.metrics.map(|m| format!(", metrics on http://{m}/metrics")).unwrap_or_default(),
        cfg.socket_dir.display(),
        security = cli_security(cfg),
    );
    let status = format!("serving the API on {endpoint}, {nics} NIC(s)");
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!("cannot tell systemd the daemon is ready: {e}");
    }
}

/// The CLI options a client of this daemon needs for its security settings.
fn cli_security(cfg: &Config) -> String {
    let mut out = String::new();
    if let Some(k) = &cfg.key {
        out.push_str(&format!(" -k {}", k.display()));
    }
    if let Some(c) = &cfg.curve {
        // Z85 has shell characters (`&`, `$`, `<`…) but no `'`: quoted, the line can be pasted.
        out.push_str(&format!(" --curve-server-key '{}' --curve-client-keys CLIENT_KEYS_FILE", c.public_key));
    }
    out
}

/// systemd's watchdog (`WatchdogSec=` in the unit): `WATCHDOG=1` every half period, sent
/// from the API thread between two requests, and only when every data-plane worker has run
/// an empty command within a quarter of the period, so that a hung API loop or a hung
/// worker thread gets the daemon restarted.
struct Watchdog {
    period: Option<Duration>,
    graphs: Vec<GraphHandle>,
    next: Instant,
}

impl Watchdog {
    fn new(graphs: Vec<GraphHandle>) -> Watchdog {
        let period = sd_notify::watchdog_enabled();
        if let Some(p) = period {
            info!("systemd watchdog every {p:?}");
        }
        Watchdog { period, graphs, next: Instant::now() }
    }

    fn tick(&mut self) {
        let Some(period) = self.period else { return };
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + period / 2;
        for (i, g) in self.graphs.iter().enumerate() {
            if let Err(e) = g.exec_timeout(period / 4, |_| ()) {
                error!("data-plane worker {i} did not answer: {e}; the watchdog is not fed");
                return;
            }
        }
        if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
            warn!("watchdog notification: {e}");
        }
    }
}

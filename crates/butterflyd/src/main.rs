//! butterflyd: the butterfly-rs daemon. It builds the data-plane graph (underlay NIC, VTEP,
//! per-VNI switches, per-VM firewall, anti-spoof, optional sniffer, vhost-user/TAP endpoint),
//! serves Butterfly's protobuf API over ZeroMQ, persists its configuration, and exports
//! Prometheus metrics. See docs/operator-guide.md.

mod bum;
mod config;
mod daemon;
mod dataplane;
mod evpn;
mod handover;
mod lock;
mod logging;
mod metrics;
mod mtu;
mod state;
mod underlay_trace;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brick_core::GraphHandle;
use butterfly_api::{crypto, CurveServer, DispatchConfig, MemoryHandler, Server, ServerConfig};
use clap::Parser;
use sd_notify::NotifyState;
use tracing::{error, info, warn};

use crate::config::{Cli, Config};
use crate::daemon::Daemon;
use crate::dataplane::Dataplane;
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

fn run(cfg: Config) -> Result<(), String> {
    let (sinks, log) = logging::init(cfg.log_level, cfg.no_syslog);
    let and_stderr = if sinks.stderr { " and stderr" } else { "" };
    match sinks.system {
        logging::SystemLog::Journald => {
            info!("logging to journald (identifier {}){and_stderr}", logging::IDENT)
        }
        logging::SystemLog::Syslog => {
            info!("logging to syslog ({}, facility local0){and_stderr}", logging::IDENT)
        }
        logging::SystemLog::None if !cfg.no_syslog => {
            info!("neither journald nor syslog listens: logging to stderr only")
        }
        logging::SystemLog::None => {}
    }

    // One daemon per API endpoint and per state directory, checked before anything is
    // touched: a second one must not fight the first over its underlay or its state.
    let about = format!(
        "pid={}\nendpoint={}\nstate={}\n",
        std::process::id(),
        cfg.endpoint,
        cfg.state_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "none".into())
    );
    let _endpoint_lock = if lock::endpoint_is_fixed(&cfg.endpoint) {
        let path = lock::endpoint_lock_path(&cfg.run_dir, &cfg.endpoint);
        Some(
            lock::Lock::acquire(&path, &format!("the API endpoint {}", cfg.endpoint), &about, true)
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let _state_lock = match &cfg.state_dir {
        Some(dir) => Some(
            lock::Lock::acquire(
                &dir.join("butterflyd.lock"),
                &format!("the state directory {}", dir.display()),
                &about,
                false,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };

    std::fs::create_dir_all(&cfg.socket_dir)
        .map_err(|e| format!("socket directory {}: {e}", cfg.socket_dir.display()))?;
    let key = match &cfg.key {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("key {}: {e}", path.display()))?;
            let k =
                crypto::Key::from_base64(text.trim()).map_err(|e| format!("key {}: {e}", path.display()))?;
            eprintln!("Encryption key loaded");
            Some(k)
        }
        None => {
            eprintln!("No encryption configured");
            None
        }
    };
    let state = match &cfg.state_dir {
        Some(dir) => {
            Some(StateStore::open(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?)
        }
        None => None,
    };

    // The API is bound before the data plane starts: an endpoint in use is reported as such,
    // not as whatever the underlay says when a second daemon reaches for it. Requests wait
    // in ZeroMQ's queue until the state is restored and serving begins.
    let mut server = Server::bind(ServerConfig {
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
    .map_err(|e| format!("API endpoint {}: {e}", cfg.endpoint))?;
    let endpoint = server.endpoint().to_string();
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

    let dp = Dataplane::start(&cfg).map_err(|e| e.to_string())?;
    let graphs = dp.handles();
    let mut mem = MemoryHandler::new();
    mem.socket_dir = cfg.socket_dir.clone();
    mem.default_packet_trace = cfg.packet_trace;
    let mut daemon = Daemon::new(mem, dp, state, log);
    match daemon.restore() {
        Ok(0) => {}
        Ok(n) => info!("restored {n} NIC(s) from the saved configuration"),
        Err(e) => {
            return Err(format!("cannot restore the saved configuration: {e} (move it away to start empty)"))
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let metrics = match cfg.metrics {
        Some(addr) => Some(metrics::serve(addr, graphs.clone(), Arc::clone(&stop)).map_err(|e| {
            format!("metrics endpoint {addr}: {e} (choose another with --metrics ADDR:PORT or off)")
        })?),
        None => None,
    };

    // SIGINT / SIGTERM: stop serving, then shut down cleanly.
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&signalled))
            .map_err(|e| format!("signal handler: {e}"))?;
    }
    let server_stop = server.stop_handle();
    let (sig2, stop2) = (Arc::clone(&signalled), Arc::clone(&stop));
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while !sig2.load(Ordering::Relaxed) && !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            server_stop.stop();
        })
        .map_err(|e| e.to_string())?;

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
        security = cli_security(&cfg),
    );
    // Ready: the API is bound and the saved state restored (systemd's Type=notify).
    let nics = daemon.nic_count();
    let status = format!("serving the API on {endpoint}, {nics} NIC(s)");
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(&status)]) {
        warn!("cannot tell systemd the daemon is ready: {e}");
    }
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
    exit.map(|_| ()).map_err(|e| format!("API server: {e}"))
}

/// The CLI options a client of this daemon needs for its security settings.
fn cli_security(cfg: &Config) -> String {
    let mut out = String::new();
    if let Some(k) = &cfg.key {
        out.push_str(&format!(" -k {}", k.display()));
    }
    if let Some(c) = &cfg.curve {
        out.push_str(&format!(" --curve-server-key {} --curve-client-keys CLIENT_KEYS_FILE", c.public_key));
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

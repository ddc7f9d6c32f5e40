//! butterflyd: the butterfly-rs daemon. It builds the data-plane graph (underlay NIC, VTEP,
//! per-VNI switches, per-VM firewall, anti-spoof, optional sniffer, vhost-user/TAP endpoint),
//! serves Butterfly's protobuf API over ZeroMQ, persists its configuration, and exports
//! Prometheus metrics. See docs/operator-guide.md.

mod bum;
mod config;
mod daemon;
mod dataplane;
mod evpn;
mod metrics;
mod state;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use butterfly_api::{crypto, DispatchConfig, MemoryHandler, Server, ServerConfig};
use clap::Parser;
use tracing::{error, info};
use tracing_subscriber::{reload, EnvFilter};

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
    let (filter, reload) = reload::Layer::new(EnvFilter::new(cfg.log_level.directive()));
    use tracing_subscriber::prelude::*;
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
        .init();
    let log: daemon::LogControl = Box::new(move |level| {
        reload.modify(|f| *f = EnvFilter::new(level.directive())).map_err(|e| e.to_string())
    });

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

    let mut server = Server::bind(ServerConfig {
        endpoint: cfg.endpoint.clone(),
        dispatch: DispatchConfig { key, ..DispatchConfig::default() },
        poll_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .map_err(|e| format!("API endpoint {}: {e}", cfg.endpoint))?;
    let endpoint = server.endpoint().to_string();

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
         Add a first VM NIC with the CLI (`cargo run -p butterfly-api --bin butterfly --` or an installed `butterfly`):\n  \
         butterfly nic add -e {endpoint} --id vm1 --mac 52:54:00:00:00:01 --vni 1 --ip 10.0.0.1\n\
         then start QEMU with -chardev socket,id=c0,path={}/qemu-vhost-vm1 -netdev vhost-user,id=n0,chardev=c0 ...",
        cfg.ip,
        cfg.underlay,
        cfg.metrics.map(|m| format!(", metrics on http://{m}/metrics")).unwrap_or_default(),
        cfg.socket_dir.display()
    );
    let exit = server.serve(&mut daemon);
    stop.store(true, Ordering::Relaxed);
    info!("shutting down ({exit:?})");
    daemon.shutdown();
    if let Some(m) = metrics {
        let _ = m.join();
    }
    exit.map(|_| ()).map_err(|e| format!("API server: {e}"))
}

//! The NIC's control thread: listening or connecting on the vhost-user socket,
//! reconnecting, running one rust-vmm daemon per connection and publishing it to the graph
//! thread; starting it with a new NIC and stopping it when the NIC is dropped.

use super::*;

pub(super) enum Mode {
    Server(UnixListener),
    Client,
}

pub(super) struct Control {
    stop: Arc<AtomicBool>,
    /// Rung with `stop` so the control thread notices at once (no polling delay on drop).
    wake: Arc<brick_core::Waker>,
    join: Option<JoinHandle<()>>,
    /// The other graph threads' bricks were handed out (`take_siblings`).
    pub(super) siblings_taken: bool,
}

static CONN_SEQ: AtomicU64 = AtomicU64::new(0);

impl VhostUserNic {
    pub(super) fn start(path: PathBuf, cfg: VhostUserConfig, mode: Mode) -> Result<Self, VhostError> {
        let io_err = |source| VhostError::Io { path: path.clone(), source };
        let shared = Arc::new(Shared::new(cfg.threads as usize).map_err(io_err)?);
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(brick_core::Waker::new().map_err(io_err)?);
        let server = matches!(mode, Mode::Server(_));
        let ctx = ControlCtx {
            wake: Arc::clone(&wake),
            shared: Arc::clone(&shared),
            spec: DeviceSpec {
                queue_pairs: cfg.queue_pairs,
                features: cfg.features(),
                mac: cfg.mac,
                mtu: cfg.mtu.unwrap_or(0),
            },
            name: cfg.name.clone(),
            path: path.clone(),
            stop: Arc::clone(&stop),
            reconnect: cfg.reconnect_interval,
        };
        let mut nic =
            Self::brick(Arc::clone(&shared), 0, path.clone(), server, cfg.clone()).map_err(io_err)?;
        let join = std::thread::Builder::new()
            .name(format!("vhost-{}", cfg.name))
            .spawn(move || ctx.run(mode))
            .map_err(io_err)?;
        nic.control = Some(Control { stop, wake, join: Some(join), siblings_taken: false });
        Ok(nic)
    }

    /// The brick of graph thread `thread` of the device behind `shared`, without the control
    /// thread (which `start` gives thread 0's).
    pub(super) fn brick(
        shared: Arc<Shared>,
        thread: usize,
        path: PathBuf,
        server: bool,
        cfg: VhostUserConfig,
    ) -> io::Result<Self> {
        let wake_set = EpollSet::new()?;
        wake_set.add(shared.doorbells[thread].waker.fd(), DOORBELL)?;
        let stats = if thread == 0 { Arc::clone(&shared.stats) } else { Arc::new(NicStats::default()) };
        let queues = 2 * cfg.queue_pairs as usize;
        Ok(VhostUserNic {
            shared,
            thread,
            stats,
            path,
            server,
            conn: None,
            seen_generation: u64::MAX,
            seen_mem: u64::MAX,
            feat: NetFeatures::default(),
            map: None,
            queues: (0..queues).map(|_| DeviceQueue::default()).collect(),
            wake_set,
            scratch: RxScratch::default(),
            tx_burst: Burst::new(),
            tx_lent: cfg.lent.as_ref().map(|l| l.source()),
            quiet_polls: 0,
            gso_segs: Vec::with_capacity(64),
            rx_next: 0,
            own_pairs: (thread..cfg.queue_pairs as usize)
                .step_by(cfg.threads.max(1) as usize)
                .fold(0, |m, p| m | 1 << p),
            steered: Vec::new(),
            control: None,
            cfg,
        })
    }
}

impl Drop for VhostUserNic {
    fn drop(&mut self) {
        let Some(control) = &mut self.control else { return };
        control.stop.store(true, Ordering::Relaxed);
        control.wake.wake();
        if let Some(j) = control.join.take() {
            let _ = j.join();
        }
        if self.server {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What the control thread needs.
struct ControlCtx {
    wake: Arc<brick_core::Waker>,
    shared: Arc<Shared>,
    spec: DeviceSpec,
    name: String,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    reconnect: Duration,
}

impl ControlCtx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking at once when asked to stop.
    fn nap(&self, d: Duration) {
        let mut pfd = libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd; the waker's fd lives as long as `self`.
        unsafe { libc::poll(&mut pfd, 1, d.as_millis().min(i32::MAX as u128) as i32) };
    }

    fn run(self, mode: Mode) {
        match mode {
            Mode::Server(listener) => {
                while !self.stopped() {
                    let mut pfds = [
                        libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
                        libc::pollfd { fd: self.wake.fd(), events: libc::POLLIN, revents: 0 },
                    ];
                    // SAFETY: two live pollfd. Waits for a connection or the stop bell; the
                    // 1 s timeout only bounds the damage of a missed wake-up.
                    let r = unsafe { libc::poll(pfds.as_mut_ptr(), 2, 1000) };
                    if r <= 0 || pfds[0].revents == 0 {
                        continue;
                    }
                    match listener.accept() {
                        Ok((s, _)) => self.serve(s),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            tracing::warn!(nic = %self.name, "accept failed: {e}");
                            self.nap(Duration::from_millis(100));
                        }
                    }
                }
            }
            Mode::Client => {
                while !self.stopped() {
                    match UnixStream::connect(&self.path) {
                        Ok(s) => self.serve(s),
                        Err(e) => tracing::debug!(nic = %self.name, "connect {}: {e}", self.path.display()),
                    }
                    self.nap(self.reconnect);
                }
            }
        }
    }

    /// Runs one connection to its end: a fresh daemon (handler, vrings, worker thread) fed
    /// through the relay, then torn down.
    fn serve(&self, front: UnixStream) {
        let _ = front.set_nonblocking(false);
        let mem: crate::backend::Mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let conn = Arc::new(Conn::new(mem.clone()));
        self.session(front, &conn, mem);
        // The library's daemon is dropped, its threads joined (on every path out of `session`).
        conn.close_exit_events();
    }

    /// The body of [`serve`](Self::serve): builds, runs and drops the library's daemon.
    fn session(&self, front: UnixStream, conn: &Arc<Conn>, mem: crate::backend::Mem) {
        let backend =
            NetBackend { spec: self.spec.clone(), conn: Arc::clone(conn), shared: Arc::clone(&self.shared) };
        let (daemon, vrings) = collect_vrings(&self.shared, || {
            VhostUserDaemon::new(format!("vhost-{}", self.name), backend, mem)
        });
        let mut daemon = match daemon {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(nic = %self.name, "daemon: {e}");
                return;
            }
        };
        if vrings.len() != 2 * self.spec.queue_pairs as usize {
            tracing::warn!(nic = %self.name, "daemon built {} vrings, expected {}", vrings.len(), 2 * self.spec.queue_pairs);
            return;
        }
        let _ = conn.vrings.set(vrings);
        // The daemon accepts its end of the relay on a private abstract socket.
        let id = CONN_SEQ.fetch_add(1, Ordering::Relaxed);
        let addr_name = format!("brick-vhost-{}-{}", std::process::id(), id);
        let back = (|| {
            let addr = SocketAddr::from_abstract_name(addr_name.as_bytes())?;
            let l = UnixListener::bind_addr(&addr)?;
            let back = UnixStream::connect_addr(&addr)?;
            Ok::<_, io::Error>((l, back))
        })();
        let (l, back) = match back {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(nic = %self.name, "relay socket: {e}");
                return;
            }
        };
        let mut listener = Listener::from(l);
        if let Err(e) = daemon.start(&mut listener) {
            tracing::warn!(nic = %self.name, "daemon start: {e}");
            return;
        }
        drop(listener);
        let stats = &self.shared.stats;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.connected.store(true, Ordering::Relaxed);
        self.shared.publish(Some(Arc::clone(conn)));
        let mut filter = EnableFilter::default();
        let end =
            relay(&front, &back, &self.stop, Some(self.wake.fd()), &mut filter, &stats.early_enables_held);
        match &end {
            RelayEnd::Backend(e) => tracing::info!(nic = %self.name, "backend handler closed: {e}"),
            RelayEnd::Frontend(e) => tracing::info!(nic = %self.name, "frontend left: {e}"),
            RelayEnd::Stopped => {}
        }
        let _ = front.shutdown(std::net::Shutdown::Both);
        let _ = back.shutdown(std::net::Shutdown::Both);
        daemon.request_shutdown();
        let _ = daemon.wait();
        self.shared.publish(None);
        self.shared.rx_running.store(0, Ordering::Release);
        stats.connected.store(false, Ordering::Relaxed);
        stats.acked_features.store(0, Ordering::Relaxed);
        stats.disconnections.fetch_add(1, Ordering::Relaxed);
        // Dropping the daemon stops and joins its vring worker (exit_event is implemented).
        drop(daemon);
    }
}

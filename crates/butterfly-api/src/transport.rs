//! ZeroMQ transport: the REP [`Server`] and the REQ [`Client`], with
//! optional CURVE security.

use crate::crypto::{self, Key};
use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::handler::Handler;
use crate::pb::{self, message_v0 as v0, proto};
use prost::Message as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Default server endpoint (loopback only; use `tcp://0.0.0.0:9999` to
/// listen on every interface like Butterfly, preferably with CURVE).
pub const DEFAULT_ENDPOINT: &str = "tcp://127.0.0.1:9999";

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A ZeroMQ call failed.
    #[error("zeromq {what}: {source}")]
    Zmq {
        /// Operation.
        what: String,
        /// Cause.
        source: zmq::Error,
    },
    /// CURVE asked for, but libzmq was built without it.
    #[error("this build's libzmq has no CURVE support (see the butterfly-api README, \"CURVE\")")]
    CurveUnavailable,
    /// A CURVE key is not 32 bytes / valid Z85.
    #[error("invalid CURVE key: {0}")]
    BadCurveKey(String),
    /// The daemon's CURVE authentication (ZAP) refused this client's public key.
    #[error(
        "the daemon at {endpoint} refused this client's CURVE key (status {status}): its public key is \
         not among the daemon's authorised clients (butterflyd --curve-clients)"
    )]
    CurveRefused {
        /// Endpoint.
        endpoint: String,
        /// The ZAP status code (400: not authorised).
        status: u32,
    },
    /// One side uses CURVE and the other does not.
    #[error("{}", mismatch_text(endpoint, *client_curve))]
    SecurityMismatch {
        /// Endpoint.
        endpoint: String,
        /// Whether this client used CURVE.
        client_curve: bool,
    },
    /// The daemon closed every connection during the security handshake.
    #[error(
        "the daemon at {endpoint} closed the connection {failures} times during the security \
         handshake: {}",
        if *client_curve {
            "is --curve-server-key the daemon's public key?"
        } else {
            "does it require CURVE (--curve-server-key)?"
        }
    )]
    Handshake {
        /// Endpoint.
        endpoint: String,
        /// Failed handshakes seen.
        failures: u32,
        /// Whether this client used CURVE.
        client_curve: bool,
    },
    /// No reply within the timeout.
    #[error("no reply from {endpoint} within {ms} ms (is the daemon running and reachable?)")]
    Timeout {
        /// Endpoint.
        endpoint: String,
        /// Timeout in ms.
        ms: u64,
    },
    /// The reply is not a `Messages`.
    #[error("cannot decode the reply: {0}")]
    Decode(String),
    /// Encryption/decryption failure.
    #[error("encryption: {0}")]
    Crypto(#[from] crypto::CryptoError),
    /// The server answered with an envelope error.
    #[error("error in response: {0}")]
    Envelope(String),
    /// The server answered with an `Encrypted` error.
    #[error("Encrypted message error: {0}")]
    Encrypted(String),
    /// Not a ZeroMQ endpoint (see [`check_endpoint`]).
    #[error(
        "{0:?} is not a ZeroMQ endpoint: use tcp://HOST:PORT (e.g. tcp://127.0.0.1:9999), \
         ipc:///PATH or inproc://NAME"
    )]
    BadEndpoint(String),
    /// Spawning the server thread failed.
    #[error("cannot start server thread: {0}")]
    Thread(String),
}

fn mismatch_text(endpoint: &str, client_curve: bool) -> String {
    if client_curve {
        format!("the daemon at {endpoint} does not use CURVE: leave out --curve-server-key")
    } else {
        format!(
            "the daemon at {endpoint} requires CURVE: give its public key with --curve-server-key \
             and this client's key pair with --curve-client-keys"
        )
    }
}

/// Checks that `endpoint` is a ZeroMQ endpoint this crate can use: `tcp://HOST:PORT` (the
/// port a number, or `*` to bind any), `ipc://PATH` or `inproc://NAME`, so that a mistake
/// such as `127.0.0.1:9999` gets a message saying what a valid endpoint looks like, rather
/// than libzmq's "Invalid argument".
pub fn check_endpoint(endpoint: &str) -> Result<(), TransportError> {
    let ok = match endpoint.split_once("://") {
        Some(("tcp", address)) => match address.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty() && (port == "*" || (!port.is_empty() && port.parse::<u16>().is_ok()))
            }
            None => false,
        },
        Some(("ipc" | "inproc", path)) => !path.is_empty(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(TransportError::BadEndpoint(endpoint.to_string()))
    }
}

fn zerr(what: &str) -> impl FnOnce(zmq::Error) -> TransportError + '_ {
    move |source| TransportError::Zmq { what: what.to_string(), source }
}

/// A CURVE key pair or public key, from Z85 text (40 chars) or raw bytes.
pub fn curve_key(text: &str) -> Result<[u8; 32], TransportError> {
    let raw = zmq::z85_decode(text.trim()).map_err(|e| TransportError::BadCurveKey(format!("{e:?}")))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| TransportError::BadCurveKey(format!("{} bytes, expected 32", raw.len())))
}

/// True when the linked libzmq supports CURVE.
pub fn curve_available() -> bool {
    zmq::has("curve") == Some(true)
}

/// Generates a CURVE key pair as (public, secret) Z85 strings.
pub fn curve_keypair() -> Result<(String, String), TransportError> {
    if !curve_available() {
        return Err(TransportError::CurveUnavailable);
    }
    let kp = zmq::CurveKeyPair::new().map_err(zerr("curve keypair"))?;
    let enc = |k: &[u8]| zmq::z85_encode(k).map_err(|e| TransportError::BadCurveKey(format!("{e:?}")));
    Ok((enc(&kp.public_key)?, enc(&kp.secret_key)?))
}

/// The Z85 text of a 32-byte CURVE key.
pub fn curve_z85(key: &[u8; 32]) -> String {
    // 32 bytes is a multiple of 4: encoding cannot fail.
    zmq::z85_encode(key).unwrap_or_default()
}

/// Server-side CURVE settings.
#[derive(Debug, Clone)]
pub struct CurveServer {
    /// Server secret key.
    pub secret_key: [u8; 32],
    /// Client public keys allowed to connect; `None` = any client that
    /// knows the server public key (encryption without client auth).
    pub authorized_clients: Option<Vec<[u8; 32]>>,
}

/// Client-side CURVE settings.
#[derive(Debug, Clone)]
pub struct CurveClient {
    /// Server public key.
    pub server_key: [u8; 32],
    /// Client public key.
    pub public_key: [u8; 32],
    /// Client secret key.
    pub secret_key: [u8; 32],
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Endpoint to bind.
    pub endpoint: String,
    /// Envelope settings (size limits, key).
    pub dispatch: DispatchConfig,
    /// How often the stop flag is checked while idle.
    pub poll_interval: Duration,
    /// CURVE security.
    pub curve: Option<CurveServer>,
    /// Stop serving after a successful app_quit (after replying).
    pub stop_on_quit: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            dispatch: DispatchConfig::default(),
            poll_interval: Duration::from_millis(50),
            curve: None,
            stop_on_quit: true,
        }
    }
}

/// Why [`Server::serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeExit {
    /// The stop flag was raised.
    Stopped,
    /// A client sent app_quit.
    Quit,
}

/// Raises the stop flag of a server from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    /// Asks the server loop to return (within one poll interval).
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// True once stop was asked.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct Zap {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Zap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_zap(ctx: &zmq::Context, allowed: Vec<[u8; 32]>) -> Result<Zap, TransportError> {
    let sock = ctx.socket(zmq::REP).map_err(zerr("zap socket"))?;
    sock.set_linger(0).map_err(zerr("zap linger"))?;
    sock.bind("inproc://zeromq.zap.01").map_err(zerr("zap bind"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("butterfly-zap".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match sock.poll(zmq::POLLIN, 100) {
                    Ok(n) if n > 0 => {}
                    _ => continue,
                }
                let Ok(frames) = sock.recv_multipart(0) else { continue };
                // version, request id, domain, address, identity, mechanism, credentials...
                let request_id = frames.get(1).cloned().unwrap_or_default();
                let ok = frames.len() >= 7
                    && frames[5] == b"CURVE"
                    && allowed.iter().any(|k| k.as_slice() == frames[6].as_slice());
                if !ok {
                    let address = frames.get(3).map(|a| String::from_utf8_lossy(a).into_owned());
                    let key = frames.get(6).and_then(|k| <[u8; 32]>::try_from(k.as_slice()).ok());
                    tracing::warn!(
                        "API: refused a client from {} whose CURVE key {} is not authorised",
                        address.as_deref().unwrap_or("?"),
                        key.map(|k| curve_z85(&k)).unwrap_or_else(|| "?".into())
                    );
                }
                let (code, text): (&[u8], &[u8]) =
                    if ok { (b"200", b"OK") } else { (b"400", b"client key not authorized") };
                let reply: Vec<Vec<u8>> =
                    vec![b"1.0".to_vec(), request_id, code.to_vec(), text.to_vec(), Vec::new(), Vec::new()];
                let _ = sock.send_multipart(reply, 0);
            }
        })
        .map_err(|e| TransportError::Thread(e.to_string()))?;
    Ok(Zap { stop, thread: Some(thread) })
}

/// ZeroMQ REP server: receives one request at a time, dispatches it and
/// replies, as soon as it arrives.
pub struct Server {
    socket: zmq::Socket,
    dispatcher: Dispatcher,
    stop: StopHandle,
    poll_ms: i64,
    stop_on_quit: bool,
    endpoint: String,
    _zap: Option<Zap>,
    _ctx: zmq::Context,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("endpoint", &self.endpoint).finish()
    }
}

impl Server {
    /// Creates the socket and binds it.
    pub fn bind(config: ServerConfig) -> Result<Server, TransportError> {
        check_endpoint(&config.endpoint)?;
        let ctx = zmq::Context::new();
        let mut zap = None;
        let socket = ctx.socket(zmq::REP).map_err(zerr("socket"))?;
        socket.set_linger(0).map_err(zerr("linger"))?;
        // Transport hard limit: libzmq drops the connection above it (no
        // reply possible), so it is 4x the application limit, under which
        // oversized requests get a REJECTED reply.
        let hard = config.dispatch.max_request_bytes.saturating_mul(4).min(i64::MAX as usize) as i64;
        socket.set_maxmsgsize(hard).map_err(zerr("maxmsgsize"))?;
        if let Some(curve) = &config.curve {
            if !curve_available() {
                return Err(TransportError::CurveUnavailable);
            }
            if let Some(allowed) = &curve.authorized_clients {
                zap = Some(start_zap(&ctx, allowed.clone())?);
            }
            socket.set_curve_server(true).map_err(zerr("curve server"))?;
            socket.set_curve_secretkey(&curve.secret_key).map_err(zerr("curve secret key"))?;
        }
        socket.bind(&config.endpoint).map_err(zerr("bind"))?;
        let endpoint = socket
            .get_last_endpoint()
            .map_err(zerr("last endpoint"))?
            .unwrap_or_else(|_| config.endpoint.clone());
        Ok(Server {
            socket,
            dispatcher: Dispatcher::new(config.dispatch),
            stop: StopHandle(Arc::new(AtomicBool::new(false))),
            poll_ms: config.poll_interval.as_millis().clamp(1, 1000) as i64,
            stop_on_quit: config.stop_on_quit,
            endpoint,
            _zap: zap,
            _ctx: ctx,
        })
    }

    /// The bound endpoint (with the real port when bound to port 0).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle to stop [`Server::serve`] from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Requests served so far.
    pub fn request_counter(&self) -> u64 {
        self.dispatcher.request_counter()
    }

    /// Serves at most one request, waiting up to one poll interval.
    /// Returns `Ok(Some(quit))` when a request was served.
    pub fn serve_once<H: Handler>(&mut self, handler: &mut H) -> Result<Option<bool>, TransportError> {
        match self.socket.poll(zmq::POLLIN, self.poll_ms) {
            Ok(0) | Err(zmq::Error::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(TransportError::Zmq { what: "poll".into(), source: e }),
        }
        // Part by part into one reused message: only the first is kept, so a request of a
        // million parts (each under the size limit) is not copied out whole to be refused.
        let mut first = zmq::Message::new();
        match self.socket.recv(&mut first, zmq::DONTWAIT) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) | Err(zmq::Error::EINTR) => return Ok(None),
            Err(e) => return Err(TransportError::Zmq { what: "recv".into(), source: e }),
        }
        let mut parts = 1usize;
        let mut more = first.get_more();
        let mut scratch = zmq::Message::new();
        while more {
            // The rest of a multipart message is already here (delivered whole).
            if let Err(e) = self.socket.recv(&mut scratch, 0) {
                return Err(TransportError::Zmq { what: "recv".into(), source: e });
            }
            parts += 1;
            more = scratch.get_more();
        }
        let reply = if parts == 1 {
            self.dispatcher.handle_bytes(handler, &first)
        } else {
            // Multipart requests are not part of the protocol.
            let msgs = proto::Messages {
                messages: vec![proto::Message {
                    revision: crate::PROTO_REVISION,
                    error: Some(proto::Error { code: Some(proto::error::Code::Rejected as i32) }),
                    message_0: None,
                }],
                encrypted: None,
            };
            crate::dispatch::Reply { bytes: msgs.encode_to_vec(), quit: false }
        };
        match self.socket.send(reply.bytes, 0) {
            Ok(()) | Err(zmq::Error::EHOSTUNREACH) => {}
            Err(e) => return Err(TransportError::Zmq { what: "send".into(), source: e }),
        }
        Ok(Some(reply.quit))
    }

    /// Serves requests until the stop flag is raised or (when configured) a
    /// client sends app_quit.
    pub fn serve<H: Handler>(&mut self, handler: &mut H) -> Result<ServeExit, TransportError> {
        loop {
            if self.stop.is_stopped() {
                return Ok(ServeExit::Stopped);
            }
            if let Some(true) = self.serve_once(handler)? {
                if self.stop_on_quit {
                    return Ok(ServeExit::Quit);
                }
            }
        }
    }

    /// Runs [`Server::serve`] on a new thread with an owned handler.
    pub fn spawn<H: Handler + Send + 'static>(
        config: ServerConfig,
        mut handler: H,
    ) -> Result<RunningServer<H>, TransportError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("butterfly-api".into())
            .spawn(move || {
                let mut server = match Server::bind(config) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return (handler, Ok(ServeExit::Stopped));
                    }
                };
                let _ = tx.send(Ok((server.endpoint().to_string(), server.stop_handle())));
                let r = server.serve(&mut handler);
                (handler, r)
            })
            .map_err(|e| TransportError::Thread(e.to_string()))?;
        match rx.recv() {
            Ok(Ok((endpoint, stop))) => Ok(RunningServer { endpoint, stop, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(TransportError::Thread("server thread died".into())),
        }
    }
}

/// A server running on its own thread (see [`Server::spawn`]).
pub struct RunningServer<H> {
    endpoint: String,
    stop: StopHandle,
    thread: Option<JoinHandle<(H, Result<ServeExit, TransportError>)>>,
}

impl<H> RunningServer<H> {
    /// The bound endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
    /// Stop handle.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }
    /// Stops the server and returns the handler and how serving ended.
    pub fn stop(self) -> Result<(H, ServeExit), TransportError> {
        self.stop.stop();
        self.join()
    }
    /// Waits for the server to end by itself (app_quit or stop handle).
    pub fn join(mut self) -> Result<(H, ServeExit), TransportError> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok((h, r))) => r.map(|e| (h, e)),
            _ => Err(TransportError::Thread("server thread panicked".into())),
        }
    }
}

impl<H> Drop for RunningServer<H> {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Endpoint to connect to.
    pub endpoint: String,
    /// Reply timeout; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Pre-shared key (Butterfly encryption).
    pub key: Option<Key>,
    /// CURVE security.
    pub curve: Option<CurveClient>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: DEFAULT_ENDPOINT.to_string(),
            timeout: Some(Duration::from_secs(5)),
            key: None,
            curve: None,
        }
    }
}

/// Failed security handshakes in a row after which a request gives up
/// ([`TransportError::Handshake`]); libzmq retries every 100 ms.
pub const HANDSHAKE_ATTEMPTS: u32 = 3;

/// What a socket monitor said about a security handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeEvent {
    Succeeded,
    /// ZAP refused the client (its status code, 400 for "not authorised").
    Refused(u32),
    /// One side uses CURVE, the other NULL.
    MechanismMismatch,
    /// Any other failure (the peer closed the connection, a decryption error…).
    Failed,
}

/// Decodes a monitor event (frame 1: event `u16` and value `u32`, little endian; frame 2:
/// the endpoint). Unknown or malformed events are ignored.
fn handshake_event(frames: &[Vec<u8>]) -> Option<HandshakeEvent> {
    /// libzmq's ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH.
    const MECHANISM_MISMATCH: u32 = 0x1100_0002;
    let head = frames.first()?;
    if head.len() < 6 {
        return None;
    }
    let event = u16::from_le_bytes([head[0], head[1]]) as i32;
    let value = u32::from_le_bytes([head[2], head[3], head[4], head[5]]);
    use zmq::SocketEvent as E;
    Some(match event {
        e if e == E::HANDSHAKE_SUCCEEDED as i32 => HandshakeEvent::Succeeded,
        e if e == E::HANDSHAKE_FAILED_AUTH as i32 => HandshakeEvent::Refused(value),
        e if e == E::HANDSHAKE_FAILED_PROTOCOL as i32 && value == MECHANISM_MISMATCH => {
            HandshakeEvent::MechanismMismatch
        }
        e if e == E::HANDSHAKE_FAILED_PROTOCOL as i32 || e == E::HANDSHAKE_FAILED_NO_DETAIL as i32 => {
            HandshakeEvent::Failed
        }
        _ => return None,
    })
}

/// ZeroMQ REQ client. Each request uses a fresh socket with linger 0, so an
/// unreachable daemon yields [`TransportError::Timeout`], never a hang.
pub struct Client {
    ctx: zmq::Context,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.config.endpoint).finish()
    }
}

impl Client {
    /// A client (no connection is made until a request).
    pub fn new(config: ClientConfig) -> Result<Client, TransportError> {
        check_endpoint(&config.endpoint)?;
        if config.curve.is_some() && !curve_available() {
            return Err(TransportError::CurveUnavailable);
        }
        Ok(Client { ctx: zmq::Context::new(), config })
    }

    /// Settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sends raw bytes and returns the raw reply.
    ///
    /// The socket's security handshake is watched (a ZeroMQ socket monitor), so that a
    /// daemon refusing this client's CURVE key ([`TransportError::CurveRefused`]), CURVE on
    /// one side only ([`TransportError::SecurityMismatch`]) or a daemon closing every
    /// handshake ([`TransportError::Handshake`], after [`HANDSHAKE_ATTEMPTS`]) is reported
    /// at once, instead of as a timeout.
    pub fn request_raw(&self, bytes: &[u8]) -> Result<Vec<u8>, TransportError> {
        let s = self.ctx.socket(zmq::REQ).map_err(zerr("socket"))?;
        s.set_linger(0).map_err(zerr("linger"))?;
        let ms = self.config.timeout.map(|d| d.as_millis().min(i32::MAX as u128) as i32).unwrap_or(-1);
        s.set_sndtimeo(ms).map_err(zerr("sndtimeo"))?;
        if let Some(c) = &self.config.curve {
            s.set_curve_serverkey(&c.server_key).map_err(zerr("curve server key"))?;
            s.set_curve_publickey(&c.public_key).map_err(zerr("curve public key"))?;
            s.set_curve_secretkey(&c.secret_key).map_err(zerr("curve secret key"))?;
        }
        static MONITORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let monitor_ep = format!(
            "inproc://butterfly-client-monitor-{}-{}",
            std::process::id(),
            MONITORS.fetch_add(1, Ordering::Relaxed)
        );
        let watched = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
        s.monitor(&monitor_ep, watched).map_err(zerr("monitor"))?;
        let monitor = self.ctx.socket(zmq::PAIR).map_err(zerr("monitor socket"))?;
        monitor.set_linger(0).map_err(zerr("monitor linger"))?;
        monitor.connect(&monitor_ep).map_err(zerr("monitor connect"))?;
        s.connect(&self.config.endpoint).map_err(zerr("connect"))?;
        let endpoint = || self.config.endpoint.clone();
        let timeout = || TransportError::Timeout { endpoint: endpoint(), ms: ms.max(0) as u64 };
        match s.send(bytes, 0) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) => return Err(timeout()),
            Err(e) => return Err(TransportError::Zmq { what: "send".into(), source: e }),
        }
        let deadline = self.config.timeout.map(|t| std::time::Instant::now() + t);
        let client_curve = self.config.curve.is_some();
        let mut failures = 0u32;
        loop {
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Err(timeout());
                    }
                    left.as_millis().clamp(1, i64::MAX as u128) as i64
                }
                None => -1,
            };
            let mut items = [s.as_poll_item(zmq::POLLIN), monitor.as_poll_item(zmq::POLLIN)];
            match zmq::poll(&mut items, wait) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => return Err(TransportError::Zmq { what: "poll".into(), source: e }),
            }
            if items[0].is_readable() {
                return match s.recv_bytes(zmq::DONTWAIT) {
                    Ok(b) => Ok(b),
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => Err(TransportError::Zmq { what: "recv".into(), source: e }),
                };
            }
            if !items[1].is_readable() {
                continue;
            }
            let Ok(frames) = monitor.recv_multipart(zmq::DONTWAIT) else { continue };
            match handshake_event(&frames) {
                Some(HandshakeEvent::Succeeded) => failures = 0,
                Some(HandshakeEvent::Refused(status)) => {
                    return Err(TransportError::CurveRefused { endpoint: endpoint(), status })
                }
                Some(HandshakeEvent::MechanismMismatch) => {
                    return Err(TransportError::SecurityMismatch { endpoint: endpoint(), client_curve })
                }
                Some(HandshakeEvent::Failed) => {
                    failures += 1;
                    if failures >= HANDSHAKE_ATTEMPTS {
                        return Err(TransportError::Handshake {
                            endpoint: endpoint(),
                            failures,
                            client_curve,
                        });
                    }
                }
                None => {}
            }
        }
    }

    /// Sends a `Messages` (encrypting it when a key is set) and returns the
    /// decoded (decrypted) reply. Envelope-level `Encrypted` errors become
    /// [`TransportError::Encrypted`].
    pub fn request(&self, msgs: &proto::Messages) -> Result<proto::Messages, TransportError> {
        let payload = msgs.encode_to_vec();
        let wire = match &self.config.key {
            Some(k) => proto::Messages {
                messages: Vec::new(),
                encrypted: Some(pb::Encrypted {
                    error: None,
                    aes256cbc_sha512: Some(crypto::encrypt(k, &payload)?),
                }),
            }
            .encode_to_vec(),
            None => payload,
        };
        let raw = self.request_raw(&wire)?;
        let reply =
            proto::Messages::decode(raw.as_slice()).map_err(|e| TransportError::Decode(e.to_string()))?;
        match (&reply.encrypted, &self.config.key) {
            (Some(enc), key) => {
                if let Some(code) = enc.error.as_ref().and_then(|e| e.code) {
                    let name = pb::encrypted::error::Code::try_from(code)
                        .map(|c| c.as_str_name().to_string())
                        .unwrap_or_else(|_| code.to_string());
                    return Err(TransportError::Encrypted(name));
                }
                let (Some(blob), Some(key)) = (&enc.aes256cbc_sha512, key) else {
                    return Err(TransportError::Decode("encrypted reply but no key".into()));
                };
                let inner = crypto::decrypt(key, blob)?;
                proto::Messages::decode(inner.as_slice()).map_err(|e| TransportError::Decode(e.to_string()))
            }
            (None, _) => Ok(reply),
        }
    }

    /// Sends requests in one `Messages` and returns one response per
    /// request (envelope errors become [`TransportError::Envelope`]).
    pub fn call_many(&self, requests: Vec<v0::Request>) -> Result<Vec<v0::Response>, TransportError> {
        let n = requests.len();
        let msgs = proto::Messages {
            messages: requests
                .into_iter()
                .map(|r| proto::Message {
                    revision: crate::PROTO_REVISION,
                    error: None,
                    message_0: Some(pb::MessageV0 { request: Some(r), response: None, message_id: None }),
                })
                .collect(),
            encrypted: None,
        };
        let reply = self.request(&msgs)?;
        if reply.messages.len() != n {
            return Err(TransportError::Decode(format!("{} replies for {n} requests", reply.messages.len())));
        }
        let mut out = Vec::with_capacity(n);
        for m in reply.messages {
            if let Some(code) = m.error.and_then(|e| e.code) {
                let name = proto::error::Code::try_from(code)
                    .map(|c| c.as_str_name().to_string())
                    .unwrap_or_else(|_| code.to_string());
                return Err(TransportError::Envelope(name));
            }
            match m.message_0.and_then(|m0| m0.response) {
                Some(r) => out.push(r),
                None => return Err(TransportError::Decode("no response in reply message".into())),
            }
        }
        Ok(out)
    }

    /// Sends one request and returns its response.
    pub fn call(&self, request: v0::Request) -> Result<v0::Response, TransportError> {
        self.call_many(vec![request])?
            .pop()
            .ok_or_else(|| TransportError::Decode("no message in response".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_before_libzmq_sees_them() {
        for good in [
            "tcp://127.0.0.1:9999",
            "tcp://*:9999",
            "tcp://127.0.0.1:*",
            "tcp://[::1]:9",
            "ipc:///run/b.sock",
            "inproc://x",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:9999",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:",
            "tcp://:9999",
            "tcp://h:99999",
            "ipc://",
            "udp://x:1",
            "",
        ] {
            let e = check_endpoint(bad).unwrap_err();
            assert!(e.to_string().contains("use tcp://HOST:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn handshake_events_are_decoded_and_garbage_ignored() {
        let ev = |event: i32, value: u32| {
            let mut head = (event as u16).to_le_bytes().to_vec();
            head.extend_from_slice(&value.to_le_bytes());
            vec![head, b"tcp://127.0.0.1:1".to_vec()]
        };
        use zmq::SocketEvent as E;
        assert_eq!(
            handshake_event(&ev(E::HANDSHAKE_FAILED_AUTH as i32, 400)),
            Some(HandshakeEvent::Refused(400))
        );
        assert_eq!(
            handshake_event(&ev(E::HANDSHAKE_FAILED_PROTOCOL as i32, 0x1100_0002)),
            Some(HandshakeEvent::MechanismMismatch)
        );
        assert_eq!(
            handshake_event(&ev(E::HANDSHAKE_FAILED_PROTOCOL as i32, 0x1100_0001)),
            Some(HandshakeEvent::Failed)
        );
        assert_eq!(
            handshake_event(&ev(E::HANDSHAKE_FAILED_NO_DETAIL as i32, 32)),
            Some(HandshakeEvent::Failed)
        );
        assert_eq!(handshake_event(&ev(E::HANDSHAKE_SUCCEEDED as i32, 0)), Some(HandshakeEvent::Succeeded));
        assert_eq!(handshake_event(&ev(0x7777, 0)), None, "unknown events are ignored");
        assert_eq!(handshake_event(&[vec![1, 2, 3]]), None, "short frames are ignored");
        assert_eq!(handshake_event(&[]), None);
    }
}

//! butterflyd as a Linux service: logs to journald or syslog (Butterfly's ident and
//! facility) and `--no-syslog` meaning stderr, systemd readiness (`READY=1` once the API is
//! bound and the state restored) and watchdog, and one daemon per API endpoint and state
//! directory.
//!
//! journald and syslog are played by datagram sockets of the test, bind-mounted over
//! `/run/systemd/journal/socket` and `/dev/log` in a private mount namespace (`unshare -m`)
//! that only the daemon sees, so the machine's own logs are never touched.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Every datagram `sock` receives within `d`.
fn raw_datagrams(sock: &UnixDatagram, d: Duration) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let end = Instant::now() + d;
    let mut buf = vec![0u8; 65536];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    out
}

/// [`raw_datagrams`] as text.
fn datagrams(sock: &UnixDatagram, d: Duration) -> Vec<String> {
    raw_datagrams(sock, d).iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
}

/// The fields of a datagram in journald's native protocol: `NAME=value\n`, or `NAME\n`, a
/// 64-bit little-endian length and the value, then `\n`.
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(nl) = d.iter().position(|&b| b == b'\n') {
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[nl + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            out.push((name, String::from_utf8_lossy(&rest[8..8 + len]).into_owned()));
            d = &rest[8 + len + 1..];
        }
    }
    out
}

/// Runs the daemon in a private mount namespace with a fresh /run (no journald there), after
/// `script` (shell, run in that namespace).
fn in_mount_namespace(script: &str) -> Vec<String> {
    let full = format!("set -e; mount -t tmpfs tmpfs /run; {script}; exec \"$0\" \"$@\"");
    vec![
        "unshare".into(),
        "-m".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        full,
    ]
}

fn start_logging(script: &str, env: Vec<(String, String)>, extra: &[&str]) -> Daemon {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let launch = Launch { wrapper: in_mount_namespace(script), env, system_log: true, ..Launch::default() };
    let mut args = vec!["--no-state", "-l", "info"];
    args.extend_from_slice(extra);
    Daemon::launch(tempfile::tempdir().unwrap(), endpoint, &args, launch)
}

#[test]
fn logs_go_to_journald_with_butterflys_identifier_and_no_syslog_means_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("journal.sock");
    let journal = UnixDatagram::bind(&sock_path).unwrap();
    let script = "mkdir -p /run/systemd/journal; touch /run/systemd/journal/socket; \
                  mount --bind \"$BF_JOURNAL\" /run/systemd/journal/socket";
    let env = vec![("BF_JOURNAL".to_string(), sock_path.display().to_string())];
    let d = start_logging(script, env.clone(), &[]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7"]);
    let got: Vec<Vec<(String, String)>> =
        raw_datagrams(&journal, Duration::from_millis(500)).iter().map(|d| journal_fields(d)).collect();
    let field = |e: &[(String, String)], name: &str| {
        e.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    let entry = |text: &str| {
        got.iter()
            .find(|e| field(e, "MESSAGE").contains(text))
            .unwrap_or_else(|| panic!("no journal entry {text:?} in {got:?}"))
    };
    for text in ["logging to journald (identifier butterfly) and stderr", "butterflyd ready", "nic_add vm1"] {
        let e = entry(text);
        assert_eq!(field(e, "SYSLOG_IDENTIFIER"), "butterfly", "Butterfly's identifier: {e:?}");
        assert_eq!(field(e, "SYSLOG_FACILITY"), "16", "facility local0: {e:?}");
        assert_eq!(field(e, "PRIORITY"), "5", "info is notice, as tracing-journald maps it: {e:?}");
    }
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nic_add vm1"), "stderr (not the journal's stream here) too: {err}");
    datagrams(&journal, Duration::from_millis(100)); // what it said while stopping

    // --no-syslog: nothing for journald, everything on stderr.
    let d = start_logging(script, env, &["--no-syslog"]);
    d.ok(&["nic", "add", "--id", "vm2", "--mac", "52:54:00:00:00:02", "--vni", "7"]);
    let got = datagrams(&journal, Duration::from_millis(300));
    assert!(got.iter().all(|g| g.is_empty()), "journald got nothing with --no-syslog: {got:?}");
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nic_add vm2") && err.contains("butterflyd ready"), "{err}");
}

#[test]
fn without_journald_logs_go_to_syslog_as_butterfly_did() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&sock_path).unwrap();
    let null = dir.path().join("null");
    // A fresh /dev with only null and log (the daemon needs nothing else without underlay).
    let script = format!(
        "touch {null}; mount --bind /dev/null {null}; mount -t tmpfs tmpfs /dev; \
         touch /dev/null /dev/log; mount --bind {null} /dev/null; mount --bind \"$BF_SYSLOG\" /dev/log",
        null = null.display()
    );
    let env = vec![("BF_SYSLOG".to_string(), sock_path.display().to_string())];
    let d = start_logging(&script, env, &[]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7"]);
    let pid = d.child.as_ref().unwrap().id();
    let got = datagrams(&syslog, Duration::from_millis(500));
    let joined = got.join("\n");
    // <local0 * 8 + info> then the time stamp, then ident[pid].
    let ident = format!("butterfly[{pid}]: ");
    let line = got.iter().find(|l| l.contains("nic_add vm1")).unwrap_or_else(|| panic!("{joined}"));
    // syslog-tracing maps tracing's info to notice (and debug to info), losslessly.
    assert!(line.starts_with("<133>"), "facility local0 (16 * 8), severity notice (5): {line}");
    assert!(line.contains(&ident), "Butterfly's ident and the pid: {line}");
    assert!(joined.contains("logging to syslog (butterfly, facility local0) and stderr"), "{joined}");
    let (code, err, _) = d.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn readiness_comes_once_the_api_is_bound_and_the_state_restored_and_the_watchdog_is_fed() {
    // A saved configuration with one vhost-user NIC.
    let d = Daemon::start(&[]);
    d.ok(&["nic", "add", "--id", "vm1", "--mac", "52:54:00:00:00:01", "--vni", "7"]);
    let endpoint = d.endpoint.clone();
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");

    let notify_dir = tempfile::tempdir().unwrap();
    let sock_path = notify_dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&sock_path).unwrap();
    let socket = dir.path().join("sockets").join("qemu-vhost-vm1");
    assert!(!socket.exists(), "the NIC's socket went with the first daemon");
    let env = vec![
        ("NOTIFY_SOCKET".to_string(), sock_path.display().to_string()),
        ("WATCHDOG_USEC".to_string(), "1000000".to_string()),
    ];
    let launch = Launch { env, no_wait: true, ..Launch::default() };
    let d = Daemon::launch(dir, endpoint.clone(), &[], launch);
    notify.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = notify.recv(&mut buf).expect("READY within 30 s");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    // At that moment the state is restored and the API is bound.
    let restored = socket.exists();
    let port = endpoint.rsplit(':').next().unwrap();
    let bound = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
    assert!(first.contains("READY=1\n"), "{first}");
    assert!(first.contains(&format!("STATUS=serving the API on {endpoint}, 1 NIC(s)")), "{first}");
    assert!(restored, "the saved NIC was restored before READY");
    assert!(bound, "the API was bound before READY");
    // WATCHDOG=1 every half second (WATCHDOG_USEC is 1 s).
    let got = datagrams(&notify, Duration::from_millis(2300));
    let pings = got.iter().filter(|g| g.contains("WATCHDOG=1")).count();
    assert!(pings >= 3, "the watchdog is fed: {got:?}");
    let mut d = d;
    let child = d.child.take().unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = datagrams(&notify, Duration::from_millis(200));
    assert!(got.iter().any(|g| g.contains("STOPPING=1")), "{got:?}");
}

#[test]
fn a_second_daemon_on_the_same_endpoint_or_state_is_refused_naming_the_first() {
    let tap = format!("tap:bflk{}", std::process::id() % 100_000);
    let a = Daemon::start(&["--underlay", &tap]);
    let pid = a.child.as_ref().unwrap().id();
    let state = a.dir.path().join("state");
    let state = state.to_str().unwrap();
    let other = tempfile::tempdir().unwrap();
    let second = |endpoint: &str, state: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_butterflyd"))
            .args([
                "--no-syslog",
                "--metrics",
                "off",
                "--underlay",
                &tap,
                "-e",
                endpoint,
                "--state-dir",
                state,
            ])
            .arg("-s")
            .arg(other.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The same defaults: the same endpoint, state and TAP underlay.
    let (code, err) = second(&a.endpoint, state);
    assert_eq!(code, Some(1), "{err}");
    let who = format!("another butterflyd (pid={pid}, endpoint={}, state={state})", a.endpoint);
    assert!(err.contains(&format!("{who} is running on the API endpoint {}", a.endpoint)), "{err}");
    assert!(!err.contains("busy") && !err.contains("TAP"), "the underlay was not touched: {err}");
    // Another endpoint, the same state directory.
    let elsewhere = format!("tcp://127.0.0.1:{}", free_port());
    let (code, err) = second(&elsewhere, state);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("{who} is running on the state directory {state}")), "{err}");
    // The same port spelled otherwise: the API endpoint is bound before the underlay.
    let port = a.endpoint.rsplit(':').next().unwrap();
    let other_state = other.path().join("state");
    let (code, err) = second(&format!("tcp://0.0.0.0:{port}"), other_state.to_str().unwrap());
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("API endpoint tcp://0.0.0.0") && err.contains("Address already in use"), "{err}");
    // A metrics port in use is reported as such, before the underlay is touched too.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = held.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args(["--no-syslog", "--metrics", &metrics, "--underlay", &tap, "--no-state"])
        .args(["-e", &format!("tcp://127.0.0.1:{}", free_port())])
        .arg("-s")
        .arg(other.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("metrics endpoint {metrics}")), "{err}");
    assert!(!err.contains("busy") && !err.contains("TAP"), "the underlay was not touched: {err}");
    // The first daemon is untouched, and once it is gone the second one starts.
    assert_eq!(a.ok(&["nic", "list"]), "");
    let endpoint = a.endpoint.clone();
    let (code, err, dir) = a.stop();
    assert_eq!(code, 0, "{err}");
    let b = Daemon::start_full(dir, None, endpoint, &["--underlay", &tap]);
    assert_eq!(b.ok(&["nic", "list"]), "");
}

//! Helpers shared by the daemon integration tests: start the real butterflyd, drive it with
//! the real `butterfly` CLI, create network namespaces that disappear on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use butterfly_api::pb::message_v0 as v0;
use butterfly_api::{Client, ClientConfig};

pub mod scenario;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `butterfly` CLI (it lives in the butterfly-cli crate), built once per test process
/// so that `cargo test -p butterflyd` never runs a stale CLI (cargo builds it only for
/// `cargo test --workspace`; a build with nothing to do takes a fraction of a second).
pub fn cli_path() -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_butterflyd"));
    let cli = exe.with_file_name("butterfly");
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut args = vec!["build", "-q", "-p", "butterfly-cli", "--bin", "butterfly"];
        if exe.parent().and_then(Path::file_name).is_some_and(|d| d == "release") {
            args.push("--release");
        }
        let st = Command::new(cargo).args(&args).status().unwrap();
        assert!(st.success(), "building the butterfly CLI failed");
    });
    assert!(cli.exists(), "no CLI at {}", cli.display());
    cli
}

pub struct Daemon {
    pub child: Option<Child>,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    pub netns: Option<String>,
    /// How the tests' clients (ZeroMQ and CLI) talk to this daemon.
    pub security: Security,
}

/// The client side of a daemon's API security: Butterfly's key (`-k`) and/or CURVE.
#[derive(Clone, Default)]
pub struct Security {
    /// Global options for the `butterfly` CLI (`-k FILE`, `--curve-server-key …`).
    pub cli: Vec<String>,
    /// Butterfly's pre-shared key.
    pub key: Option<butterfly_api::crypto::Key>,
    /// CURVE keys.
    pub curve: Option<butterfly_api::CurveClient>,
}

/// How [`Daemon::launch`] starts a daemon.
#[derive(Clone, Default)]
pub struct Launch {
    /// The network namespace to run it in.
    pub netns: Option<String>,
    /// A command that runs the daemon: the daemon's path and arguments are appended (e.g.
    /// `unshare -m sh -c 'mount …; exec "$0" "$@"'`).
    pub wrapper: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// What its API clients need.
    pub security: Security,
    /// Let it log to journald or syslog if it finds them (else `--no-syslog`).
    pub system_log: bool,
    /// Return at once instead of waiting for the API to answer.
    pub no_wait: bool,
}

impl Daemon {
    pub fn start(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        Self::start_full(dir, None, endpoint, extra)
    }

    /// Starts butterflyd (inside network namespace `netns` when given) with its API on
    /// `endpoint`; `--underlay none` unless `extra` names an underlay.
    pub fn start_full(
        dir: tempfile::TempDir,
        netns: Option<&str>,
        endpoint: String,
        extra: &[&str],
    ) -> Daemon {
        Self::start_secured(dir, netns, endpoint, extra, Security::default())
    }

    /// [`Daemon::start_full`] for a daemon whose API needs `security` from its clients (the
    /// daemon's own options are in `extra`).
    pub fn start_secured(
        dir: tempfile::TempDir,
        netns: Option<&str>,
        endpoint: String,
        extra: &[&str],
        security: Security,
    ) -> Daemon {
        let launch = Launch { netns: netns.map(str::to_string), security, ..Launch::default() };
        Self::launch(dir, endpoint, extra, launch)
    }

    /// Starts butterflyd as `launch` says, with its API on `endpoint`, its sockets and state
    /// in `dir`, `--underlay none` and `--metrics off` unless `extra` names them.
    pub fn launch(dir: tempfile::TempDir, endpoint: String, extra: &[&str], launch: Launch) -> Daemon {
        let sockets = dir.path().join("sockets");
        let state = dir.path().join("state");
        let mut args: Vec<String> = vec![
            "-e".into(),
            endpoint.clone(),
            "-s".into(),
            sockets.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
        ];
        if !extra.contains(&"-l") && !extra.contains(&"--log-level") {
            args.extend(["-l".to_string(), "warning".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--metrics") {
            args.extend(["--metrics".to_string(), "off".to_string()]);
        }
        if !extra.contains(&"--underlay") {
            args.extend(["--underlay".to_string(), "none".to_string()]);
        }
        if !launch.system_log {
            // Test daemons do not write into the machine's journal or syslog.
            args.push("--no-syslog".into());
        }
        let bin = env!("CARGO_BIN_EXE_butterflyd");
        let mut prefix: Vec<String> = Vec::new();
        if let Some(ns) = &launch.netns {
            prefix.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        prefix.extend(launch.wrapper.iter().cloned());
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(&args)
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            endpoint,
            dir,
            netns: launch.netns.clone(),
            security: launch.security,
        };
        if !launch.no_wait {
            d.wait_ready();
        }
        d
    }

    pub fn client(&self) -> Client {
        self.client_with_timeout(Duration::from_secs(10))
    }

    fn client_with_timeout(&self, timeout: Duration) -> Client {
        Client::new(ClientConfig {
            endpoint: self.endpoint.clone(),
            timeout: Some(timeout),
            key: self.security.key.clone(),
            curve: self.security.curve.clone(),
        })
        .unwrap()
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                self.child.as_mut().unwrap().stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("daemon exited early ({status}): {err}");
            }
            let req = v0::Request { nic_list: Some(true), ..Default::default() };
            if self.client_with_timeout(Duration::from_millis(500)).call(req).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not answer on {}", self.endpoint);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(cli_path())
            .args(["-e", &self.endpoint, "-t", "10000"])
            .args(&self.security.cli)
            .args(args)
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "butterfly {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sockets(&self) -> PathBuf {
        self.dir.path().join("sockets")
    }

    /// SIGTERM, then the exit status and stderr.
    pub fn stop(mut self) -> (i32, String, tempfile::TempDir) {
        let mut child = self.child.take().unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        // A daemon with 1,000 vhost-user NICs takes about 18 s to remove them on a 2-core
        // machine (measured; as much before this harness changed), more under load.
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (status.code().unwrap_or(-1), err, dir)
    }

    /// Waits up to 10 s for the daemon to exit by itself (after `shutdown`): its exit code.
    /// If it does not, the panic drops it, which stops it.
    pub fn wait_exit(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None; // reaped: nothing left for drop to signal
                return s.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the daemon did not stop after `shutdown`");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    /// SIGTERM, so the daemon removes its NICs and its lock files; SIGKILL if it has not
    /// exited within 5 s.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Network namespaces removed on drop, even when the test fails.
pub struct Netns(pub Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

// Two hosts joined by a veth underlay, each running butterflyd, with TAP "VMs" in their own
// namespaces (used by two_hosts.rs and sctp.rs).

/// A number unique to this test process and call (100 calls per process), for interface
/// and namespace names: at most 5 digits, so that names stay within IFNAMSIZ. (Test
/// binaries run one at a time; only their own calls must not collide.)
pub fn unique_tag() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    (std::process::id() % 1_000) * 100 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 100
}

// Fields drop in order: daemons stop before their namespaces go.
pub struct Topology {
    pub h: [Daemon; 2],
    pub ns: Netns,
    pub tag: u32,
}

/// Two host namespaces (`bfh1x<tag>`, `bfh2x<tag>`, loopback up) joined by a veth `u1`–`u2`
/// (down, no address); removed when the returned guard drops.
pub fn host_namespaces(tag: u32) -> ([String; 2], Netns) {
    let hosts = [format!("bfh1x{tag}"), format!("bfh2x{tag}")];
    let ns = Netns(hosts.to_vec());
    for h in &hosts {
        sh(&["ip", "netns", "add", h]);
        sh(&["ip", "-n", h, "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "-n", &hosts[0], "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &hosts[1],
    ]);
    (hosts, ns)
}

/// Builds host namespaces h1/h2 joined by a veth (no kernel addresses: the underlay belongs to
/// butterflyd), and starts a daemon in each with VTEP `ips[i]`.
pub fn two_hosts(v6: bool) -> Topology {
    two_hosts_with(v6, &[])
}

/// [`two_hosts`] with extra daemon options (`--workers 2`…).
pub fn two_hosts_with(v6: bool, extra: &[&str]) -> Topology {
    let tag = unique_tag();
    let (hosts, ns) = host_namespaces(tag);
    for (h, dev) in [(&hosts[0], "u1"), (&hosts[1], "u2")] {
        sh(&["ip", "-n", h, "link", "set", dev, "up"]);
        // The kernel must not answer for the VTEP address or send its own IPv6 chatter.
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", h, "sysctl", "-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")])
            .status();
    }
    let ips = if v6 { ["fd77::1", "fd77::2"] } else { ["198.18.77.1", "198.18.77.2"] };
    let mut daemons = Vec::new();
    for (i, (h, dev)) in [(&hosts[0], "u1"), (&hosts[1], "u2")].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = format!("ipc://{}/api.sock", dir.path().display());
        let underlay = format!("af-packet:{dev}");
        let mut args = vec!["--underlay", &underlay, "-i", ips[i], "--no-state"];
        args.extend_from_slice(extra);
        let d = Daemon::start_full(dir, Some(h), endpoint, &args);
        daemons.push(d);
    }
    let h: [Daemon; 2] = daemons.try_into().map_err(|_| ()).unwrap();
    Topology { h, ns, tag }
}

impl Topology {
    /// Adds a TAP "VM" NIC on host `host` (with the security group "open", which lets
    /// everything in), moves it into its own namespace with `ip`.
    pub fn vm(&mut self, host: usize, name: &str, vni: u32, ip: &str, mac: &str) -> String {
        let d = &self.h[host];
        d.ok(&["sg", "add", "open"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "0.0.0.0/0"]);
        d.ok(&["sg", "rule", "add", "open", "--dir", "in", "--ip-proto", "all", "--cidr", "::/0"]);
        self.vm_with(host, name, vni, Some(ip), mac, &["--sg", "open"])
    }

    /// Adds a TAP "VM" NIC on host `host` with extra API options (`--sg …`,
    /// `--bypass-filtering`…), moves it into its own namespace (returned) and gives it `ip`
    /// (/24 or /64) when there is one.
    pub fn vm_with(
        &mut self,
        host: usize,
        name: &str,
        vni: u32,
        ip: Option<&str>,
        mac: &str,
        api: &[&str],
    ) -> String {
        let d = &self.h[host];
        let nic = format!("{name}{}", self.tag % 10_000);
        let vni = vni.to_string();
        let mut args = vec!["nic", "add", "--id", &nic, "--type", "TAP", "--mac", mac, "--vni", &vni];
        if let Some(ip) = ip {
            args.extend(["--ip", ip]);
        }
        args.extend_from_slice(api);
        d.ok(&args);
        let vmns = format!("bfv{nic}");
        let hostns = d.netns.clone().unwrap();
        sh(&["ip", "netns", "add", &vmns]);
        self.ns.0.insert(0, vmns.clone()); // VM namespaces go first on cleanup
                                           // The daemon gave the TAP the NIC's MAC (anti-spoof drops anything else it sends).
        let have = sh(&["ip", "netns", "exec", &hostns, "cat", &format!("/sys/class/net/{nic}/address")]);
        assert_eq!(have.trim(), mac.to_lowercase(), "the TAP interface of {nic} has the NIC's MAC");
        sh(&["ip", "-n", &hostns, "link", "set", "dev", &nic, "netns", &vmns]);
        if let Some(ip) = ip {
            let v6 = ip.contains(':');
            if v6 {
                let dad = format!("net.ipv6.conf.{nic}.accept_dad=0");
                sh(&["ip", "netns", "exec", &vmns, "sysctl", "-qw", &dad]);
            }
            let addr = format!("{ip}/{}", if v6 { 64 } else { 24 });
            sh(&["ip", "-n", &vmns, "addr", "add", &addr, "dev", &nic]);
        }
        sh(&["ip", "-n", &vmns, "link", "set", "dev", &nic, "up"]);
        sh(&["ip", "-n", &vmns, "link", "set", "dev", "lo", "up"]);
        vmns
    }
}

pub fn ping(ns: &str, to: &str, count: &str) -> (bool, String) {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", count, "-i", "0.2", "-W", "2", to])
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The per-queue-pair packet counts of every vhost-user NIC with several pairs in `status`
/// ("queue pairs=N rx=A,B tx=C,D"): per NIC, the RX counts then the TX counts.
pub fn queue_pair_counts(status: &str) -> Vec<Vec<u64>> {
    status
        .match_indices("queue pairs=")
        .map(|(at, _)| {
            status[at..]
                .split_whitespace()
                .skip(2)
                .take(2)
                .flat_map(|kv| {
                    let list = kv.split('=').nth(1).unwrap_or("");
                    list.split(',')
                        .map(|n| n.trim_end_matches(|c: char| !c.is_ascii_digit()).parse().unwrap_or(0))
                })
                .collect()
        })
        .collect()
}

/// The DOT label of brick `name` in `status` (one line per brick).
pub fn brick_label<'a>(status: &'a str, name: &str) -> &'a str {
    let key = format!("label=\"{{{name}|");
    status.lines().find(|l| l.contains(&key)).unwrap_or_else(|| panic!("no brick {name} in:\n{status}"))
}

/// The numbers after `key` (`key=1,2`) in a brick's label.
pub fn label_list(label: &str, key: &str) -> Vec<u64> {
    let at = label.find(key).unwrap_or_else(|| panic!("no {key} in {label}")) + key.len();
    label[at..]
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .next()
        .unwrap_or("")
        .split(',')
        .map(|n| n.parse().unwrap_or(0))
        .collect()
}

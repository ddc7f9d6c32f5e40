//! Helpers shared by the daemon integration tests: start the real butterflyd, drive it with
//! the real `butterfly` CLI, create network namespaces that disappear on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use butterfly_api::pb::message_v0 as v0;
use butterfly_api::{Client, ClientConfig};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `butterfly` CLI, built on demand (it lives in the butterfly-api crate).
pub fn cli_path() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_butterflyd"));
    let cli = exe.with_file_name("butterfly");
    if !cli.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-q", "-p", "butterfly-api", "--bin", "butterfly"])
            .status()
            .unwrap();
        assert!(st.success(), "building the butterfly CLI failed");
    }
    assert!(cli.exists(), "no CLI at {}", cli.display());
    cli
}

pub struct Daemon {
    pub child: Option<Child>,
    pub endpoint: String,
    pub dir: tempfile::TempDir,
    pub netns: Option<String>,
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
        let sockets = dir.path().join("sockets");
        let state = dir.path().join("state");
        let mut args: Vec<String> = vec![
            "-e".into(),
            endpoint.clone(),
            "-s".into(),
            sockets.display().to_string(),
            "--state-dir".into(),
            state.display().to_string(),
            "-l".into(),
            "warning".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if !extra.contains(&"--metrics") {
            args.extend(["--metrics".to_string(), "off".to_string()]);
        }
        if !extra.contains(&"--underlay") {
            args.extend(["--underlay".to_string(), "none".to_string()]);
        }
        let bin = env!("CARGO_BIN_EXE_butterflyd");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut d = Daemon { child: Some(child), endpoint, dir, netns: netns.map(str::to_string) };
        d.wait_ready();
        d
    }

    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            endpoint: self.endpoint.clone(),
            timeout: Some(Duration::from_secs(10)),
            ..ClientConfig::default()
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
            let c = Client::new(ClientConfig {
                endpoint: self.endpoint.clone(),
                timeout: Some(Duration::from_millis(500)),
                ..ClientConfig::default()
            })
            .unwrap();
            if c.call(req).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not answer on {}", self.endpoint);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(cli_path()).args(["-e", &self.endpoint, "-t", "10000"]).args(args).output().unwrap()
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
        let deadline = Instant::now() + Duration::from_secs(20);
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
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

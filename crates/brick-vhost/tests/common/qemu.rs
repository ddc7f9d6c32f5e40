//! TCG guests for the vhost-user tests: the Debian kernel + busybox initramfs built by
//! tests/guest/build-guest.sh, one virtio-net NIC on a vhost-user socket.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::require;

/// Builds (or reuses) the guest image; returns its directory.
pub fn guest_image() -> PathBuf {
    require("qemu-system-x86_64");
    require("busybox");
    require("cpio");
    let dir = std::env::var_os("BRICK_VHOST_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/butterfly-rs/guest"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest/build-guest.sh");
    let out = Command::new("sh").arg(&script).arg(&dir).output().expect("run build-guest.sh");
    assert!(
        out.status.success(),
        "build-guest.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// How QEMU reaches the backend.
pub enum Chardev<'a> {
    /// QEMU connects to our server socket and reconnects every second if it goes away.
    Client(&'a Path),
    /// QEMU listens (server=on) and our NIC connects in client mode.
    Server(&'a Path),
}

/// A running guest; killed on drop.
pub struct Guest {
    child: Option<Child>,
    pub log: PathBuf,
    pub monitor: PathBuf,
    pub name: String,
}

/// Guest parameters.
pub struct GuestSpec<'a> {
    pub name: &'a str,
    pub index: u8,
    pub peer: u8,
    pub role: &'a str,
    pub extra_cmdline: &'a str,
    pub netdev_extra: &'a str,
    /// Queue pairs of the NIC (`mq=on` above one), and as many vCPUs, so that the guest's
    /// driver uses them all.
    pub queues: u8,
}

impl Guest {
    /// Boots a guest whose NIC is a vhost-user device on `chardev`.
    pub fn boot(image: &Path, work: &Path, spec: &GuestSpec<'_>, chardev: Chardev<'_>) -> Guest {
        let log = work.join(format!("{}.log", spec.name));
        let monitor = work.join(format!("{}.mon", spec.name));
        let _ = std::fs::remove_file(&log);
        let chardev = match chardev {
            Chardev::Client(p) => format!("socket,id=c0,path={},reconnect=1", p.display()),
            Chardev::Server(p) => format!("socket,id=c0,path={},server=on,wait=off", p.display()),
        };
        let (i, p) = (spec.index, spec.peer);
        let append = format!(
            "console=ttyS0 quiet panic=-1 vmip=10.0.0.{i}/24 vmpeer=10.0.0.{p} vmip6=fd00::{i}/64 vmpeer6=fd00::{p} vmrole={} {}",
            spec.role, spec.extra_cmdline
        );
        let queues = spec.queues.max(1);
        let (smp, netdev, mq) = if queues > 1 {
            (queues.to_string(), format!("vhost-user,id=n0,chardev=c0,queues={queues}"), ",mq=on")
        } else {
            ("1".to_string(), "vhost-user,id=n0,chardev=c0".to_string(), "")
        };
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-m",
                "256M",
                "-smp",
                &smp,
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initrd.gz"))
            .args(["-append", &append])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()))
            .args(["-chardev", &chardev])
            .args(["-netdev", &netdev])
            .args([
                "-device",
                &format!(
                    "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:{i:02x},vectors=0{mq}{}",
                    spec.netdev_extra
                ),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(work.join(format!("{}.qemu.err", spec.name)))
                    .expect("qemu stderr file"),
            )
            .spawn()
            .expect("spawn qemu-system-x86_64");
        Guest { child: Some(child), log, monitor, name: spec.name.to_string() }
    }

    /// The serial log so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last `n` lines of the serial log and of QEMU's stderr (for failure messages).
    pub fn tail(&self, n: usize) -> String {
        let s = self.serial();
        // the once-a-second ALIVE_OK lines would hide everything else
        let alive = s.lines().filter(|l| l.contains("VMTEST ALIVE_OK")).count();
        let lines: Vec<&str> = s.lines().filter(|l| !l.contains("VMTEST ALIVE_OK")).collect();
        let err = std::fs::read_to_string(self.log.with_extension("qemu.err")).unwrap_or_default();
        format!(
            "--- {} serial (last {n} lines, {alive} ALIVE_OK lines omitted) ---\n{}\n--- {} qemu stderr ---\n{}",
            self.name,
            lines[lines.len().saturating_sub(n)..].join("\n"),
            self.name,
            err.trim()
        )
    }

    /// Whether QEMU is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends a monitor command (e.g. `system_reset`).
    pub fn monitor(&self, cmd: &str) {
        let mut s = UnixStream::connect(&self.monitor).expect("connect QEMU monitor");
        s.write_all(format!("{cmd}\n").as_bytes()).expect("monitor write");
        std::thread::sleep(Duration::from_millis(300));
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.monitor);
    }
}

/// VMTEST lines of a serial log with a given word, in order (the text after the word).
pub fn vmtest(log: &str, word: &str) -> Vec<String> {
    let key = format!("VMTEST {word}");
    log.lines().filter_map(|l| l.find(&key).map(|i| l[i + key.len()..].trim().to_string())).collect()
}

//! What the tools' tests against our own vhost-user backend share: the two guests' stations,
//! a scratch directory for the sockets, and connecting the two guests.

use std::path::PathBuf;

use butterfly_benches::pingpong::device::Device;
use butterfly_benches::pingpong::frame::Station;

/// The first guest.
pub const VM1: Station = Station { mac: [2, 0, 0, 0, 0, 1], ip: [198, 18, 0, 1] };
/// The second guest.
pub const VM2: Station = Station { mac: [2, 0, 0, 0, 0, 2], ip: [198, 18, 0, 2] };

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory named after `tool`, `tag` and this process.
    pub fn new(tool: &str, tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("{tool}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two guests, connected to the sockets `vm1.sock` and `vm2.sock` in `dir`.
pub fn connect(dir: &TempDir) -> [Device; 2] {
    [
        Device::connect(&dir.0.join("vm1.sock"), "vm1").unwrap(),
        Device::connect(&dir.0.join("vm2.sock"), "vm2").unwrap(),
    ]
}

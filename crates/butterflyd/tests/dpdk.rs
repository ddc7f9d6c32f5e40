//! The DPDK underlay (feature `dpdk`): butterflyd starts on a `net_ring` virtual device with
//! EAL arguments from the command line, shows it in its graph, and stops cleanly.
#![cfg(feature = "dpdk")]

mod common;

use common::*;

#[test]
fn dpdk_underlay_on_a_virtual_device() {
    let prefix = format!("bfd{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_ring0 -l 0");
    let d = Daemon::start(&["--no-state", "--underlay", "dpdk:0", "--dpdk-args", &args]);
    d.ok(&["nic", "add", "--id", "d1", "--mac", "52:54:00:00:00:51", "--vni", "5"]);
    let status = d.ok(&["status"]);
    assert!(status.contains("(dpdk)") && status.contains("net_ring0"), "{status}");
    let (code, err, _) = d.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert_eq!(code, 0, "{err}");
}

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

/// Two workers on a DPDK port: one queue pair each (net_null has several), each worker graph
/// with its own DPDK brick and VTEP; a port with too few queues is refused with a message.
#[test]
fn dpdk_underlay_with_two_workers_gets_a_queue_pair_each() {
    let prefix = format!("bfw{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_null0 -l 0");
    let d = Daemon::start(&["--no-state", "--underlay", "dpdk:0", "--dpdk-args", &args, "--workers", "2"]);
    d.ok(&["nic", "add", "--id", "d1", "--mac", "52:54:00:00:00:61", "--vni", "6"]);
    d.ok(&["nic", "add", "--id", "d2", "--mac", "52:54:00:00:00:62", "--vni", "7"]);
    let status = d.ok(&["status"]);
    assert!(status.contains("queues:[0]") && status.contains("queues:[1]"), "{status}");
    assert_eq!(status.matches("(vni-steer)").count(), 2, "{status}");
    let (code, err, _) = d.stop();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    assert_eq!(code, 0, "{err}");

    // 17 workers: more queue pairs than a ring port has (16). A clear failure, exit status 1.
    let prefix = format!("bfx{}", std::process::id());
    let args = format!("--no-huge --no-pci -m 256 --file-prefix {prefix} --vdev net_ring0 -l 0");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_butterflyd"))
        .args([
            "--no-state",
            "--metrics",
            "off",
            "--underlay",
            "dpdk:0",
            "--dpdk-args",
            &args,
            "--workers",
            "17",
        ])
        .args(["-e", &format!("ipc://{}/api.sock", dir.path().display()), "-s"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("queues") && err.contains("17 worker(s)"), "{err}");
}

//! vhost-user client mode (`butterfly nic add --vhost-client`): the VM side serves the
//! socket (QEMU `server=on`; here DPDK's virtio_user with `server=1`, in dpdk-testpmd) and
//! the daemon connects to it, and reconnects by itself when the VM side goes away and comes
//! back. The mode is kept across a daemon restart. (A daemon restart with the same VM side
//! is tested with a QEMU guest in tests/qemu_guests.rs: DPDK 22.11's virtio_user only
//! accepts a new backend connection when something reads its link status.)

mod common;
#[path = "../../brick-vhost/tests/common/mod.rs"]
mod vhost;

use std::time::{Duration, Instant};

use common::*;
use vhost::TestPmd;

/// Bytes the daemon has received from NIC `id` (`nic stats`: "in: N").
fn from_vm(d: &Daemon, id: &str) -> u64 {
    let out = d.ok(&["nic", "stats", id]);
    out.lines().find_map(|l| l.strip_prefix("in: ")?.trim().parse().ok()).unwrap_or(0)
}

/// Waits until the daemon receives from `id`: more than `since` bytes.
fn wait_traffic(d: &Daemon, id: &str, since: u64, what: &str, pmd: &TestPmd) -> u64 {
    let t = Instant::now();
    loop {
        let n = from_vm(d, id);
        if n > since + 100_000 {
            eprintln!("{what}: traffic after {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
            return n;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{what}: no traffic from the VM ({n} bytes)\n{}\ntestpmd:\n{}",
            d.ok(&["status"]),
            pmd.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_connects_as_vhost_user_client_and_reconnects() {
    let d = Daemon::start(&[]);
    // Only vhost-user NICs can be clients: refused with the reason, nothing added.
    let bad = d.cli(&[
        "nic",
        "add",
        "--id",
        "vct",
        "--mac",
        "52:54:00:64:00:09",
        "--vni",
        "64",
        "--type",
        "TAP",
        "--vhost-client",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("vhost_user_client is for vhost-user NICs"), "{err}");
    assert!(!d.ok(&["nic", "list"]).contains("vct"));

    let path =
        d.ok(&["nic", "add", "--id", "vc1", "--mac", "52:54:00:64:00:01", "--vni", "64", "--vhost-client"]);
    let sock = d.sockets().join("qemu-vhost-vc1");
    assert_eq!(path.trim(), sock.display().to_string(), "nic add prints the socket the VM serves");
    assert!(!exists(&sock), "in client mode the daemon makes no socket");
    let details = d.ok(&["nic", "details", "vc1"]);
    assert!(details.contains("vhost-user: client"), "{details}");
    // The VM side comes after the NIC: the daemon connects once it is there.
    let logs = tempfile::tempdir().unwrap();
    let pmd = TestPmd::start(&sock, true, &logs.path().join("pmd1.log"), "bfc1");
    wait_traffic(&d, "vc1", 0, "first VM side", &pmd);
    // The VM side goes away (its socket with it) and comes back: the daemon reconnects.
    drop(pmd);
    std::thread::sleep(Duration::from_millis(500));
    let n = from_vm(&d, "vc1");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(from_vm(&d, "vc1"), n, "nothing comes from a VM side that is gone");
    let pmd = TestPmd::start(&sock, true, &logs.path().join("pmd2.log"), "bfc2");
    wait_traffic(&d, "vc1", n, "the VM side restarted", &pmd);
    drop(pmd);
    // The mode is saved: after a restart the NIC is still a client (and makes no socket).
    let (code, err, dir) = d.stop();
    assert_eq!(code, 0, "{err}");
    let d = Daemon::start_in(dir, &[]);
    assert!(d.ok(&["nic", "details", "vc1"]).contains("vhost-user: client"));
    assert!(d.ok(&["dump"]).contains("vhost_user_client: true"), "dump replays the mode");
    let pmd = TestPmd::start(&sock, true, &logs.path().join("pmd3.log"), "bfc3");
    wait_traffic(&d, "vc1", 0, "after a daemon restart, a new VM side", &pmd);
    // Deleting the NIC leaves the VM's socket alone.
    d.ok(&["nic", "del", "vc1"]);
    assert!(exists(&sock), "the socket is the VM's");
}

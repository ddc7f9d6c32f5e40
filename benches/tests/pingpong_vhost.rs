//! vhost-pingpong's core against our own backend: two `VhostUserNic` servers joined by a
//! hub in one graph (a switch without learning), the tool's two guests on their sockets.
//! The runner sleeps when idle (its default), so the devices clear NO_NOTIFY and the tool's
//! kicks are exercised too.

mod common;

use std::time::Duration;

use brick_core::bricks::Hub;
use brick_core::{Graph, PacketPool, Runner, RunnerConfig};
use brick_vhost::{VhostUserConfig, VhostUserNic};
use butterfly_benches::pingpong::{self, Config};
use common::{connect, TempDir, VM1, VM2};

/// Two NICs in a graph; joined by a hub when `forward`, else each on its own (frames dropped).
fn switch(dir: &std::path::Path, forward: bool) -> Runner {
    let pool = PacketPool::with_count(4096).unwrap();
    let nic = |name: &str, mac| {
        VhostUserNic::server(dir.join(format!("{name}.sock")), VhostUserConfig::new(name, mac, pool.clone()))
            .unwrap()
    };
    let mut g = Graph::new("pingpong");
    let hub = g.add("hub", Hub::new(pool.clone())).unwrap();
    let v1 = g.add("vm1", nic("vm1", VM1.mac)).unwrap();
    let v2 = g.add("vm2", nic("vm2", VM2.mac)).unwrap();
    if forward {
        g.link(hub, v1).unwrap();
        g.link(hub, v2).unwrap();
    }
    Runner::spawn(g, RunnerConfig::default()).unwrap()
}

fn config(count: usize, timeout: Duration) -> Config {
    Config { vm1: VM1, vm2: VM2, frame_len: 60, count, warmup: 50, timeout }
}

#[test]
fn round_trips_through_our_vhost_backend() {
    let dir = TempDir::new("vhost-pingpong", "fwd");
    let runner = switch(&dir.0, true);
    let mut devs = connect(&dir);
    let s = pingpong::run(&mut devs, &config(1000, Duration::from_millis(500))).unwrap();
    assert_eq!((s.rtt.len(), s.there.len(), s.back.len()), (1000, 1000, 1000));
    assert_eq!(s.lost, [0, 0], "frames lost through a hub");
    assert!(s.rtt.iter().zip(&s.there).all(|(r, t)| r > t && *t > 0));
    assert_eq!(devs[0].bad_used + devs[1].bad_used, 0);
    drop(devs);
    drop(runner);
}

#[test]
fn a_switch_that_forwards_nothing_is_named_not_waited_on() {
    let dir = TempDir::new("vhost-pingpong", "drop");
    let runner = switch(&dir.0, false);
    let mut devs = connect(&dir);
    let t = std::time::Instant::now();
    let err = pingpong::run(&mut devs, &config(10, Duration::from_millis(40))).unwrap_err();
    assert!(err.0.starts_with("timeout waiting for the first frame vm1 -> vm2"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "gave up after {:?}", t.elapsed());
    drop(devs);
    drop(runner);
}

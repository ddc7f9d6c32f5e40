//! The mirror against the real kernel, in a namespace the test creates and deletes (root
//! only; skipped otherwise).

use std::collections::BTreeSet;
use std::net::IpAddr;

use butterfly_evpn::kernel::{Local, Role, Seen};
use butterfly_evpn::mirror::{Events, Mirror, Read};

struct Ns(String);

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn sockets_made_in_a_namespace_stay_there() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns(format!("bfevm{}", std::process::id()));
    let mut m = Mirror::open(&ns.0).unwrap();
    // A fresh namespace has only its loopback; the test's own namespace is untouched.
    let links = m.all_links().unwrap();
    assert_eq!(links.values().collect::<Vec<_>>(), vec!["lo"], "{links:?}");
    assert!(std::path::Path::new("/sys/class/net/lo").exists());
}

#[test]
fn a_vni_mirror_with_local_entries_read_back() {
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns(format!("bfevn{}", std::process::id()));
    let mut m = Mirror::open(&ns.0).unwrap();
    let mut ev = Events::open(&ns.0).unwrap();
    let local: IpAddr = "198.18.0.1".parse().unwrap();
    m.add_vni(42, local).unwrap();
    m.add_vni(43, local).unwrap();
    // Again: replaced, not an error.
    m.add_vni(43, local).unwrap();
    let vnis = m.vnis().unwrap();
    assert_eq!(vnis.get(&42), Some(&Some(local)));
    assert_eq!(vnis.len(), 2);
    let links = m.links().unwrap();
    let idx = |role| links.iter().find(|(_, &(v, r))| v == 42 && r == role).map(|(&i, _)| i).unwrap();
    let mac = [0x52, 0x54, 0, 0, 0, 1];
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    m.add_mac(idx(Role::Port), mac).unwrap();
    m.add_mac(idx(Role::Port), mac).unwrap();
    m.add_ip(idx(Role::Bridge), ip, mac).unwrap();
    let seen: BTreeSet<String> = m.dump(&links).unwrap().iter().map(|s| format!("{s:?}")).collect();
    let want: BTreeSet<String> =
        [Seen::Local(Local::Mac { vni: 42, mac }, true), Seen::Local(Local::Ip { vni: 42, ip, mac }, true)]
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
    assert_eq!(seen, want);
    // The subscription saw them too.
    let mut got = Vec::new();
    for _ in 0..100 {
        if ev.read(&links, &mut got).unwrap() == Read::Empty {
            break;
        }
    }
    assert!(got.contains(&Seen::Local(Local::Mac { vni: 42, mac }, true)), "{got:?}");
    m.del_ip(idx(Role::Bridge), ip).unwrap();
    m.del_mac(idx(Role::Port), mac).unwrap();
    m.del_mac(idx(Role::Port), mac).unwrap();
    assert!(m.dump(&links).unwrap().is_empty());
    m.remove_vni(42).unwrap();
    m.remove_vni(42).unwrap();
    assert_eq!(m.vnis().unwrap().keys().collect::<Vec<_>>(), vec![&43]);
    // A bad request gets the kernel's error, named.
    let e = m.add_mac(999_999, mac).unwrap_err().to_string();
    assert!(e.contains(&ns.0) && e.contains("add MAC 52:54:00:00:00:01"), "{e}");
}

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
    // The one VNI's devices, looked up by name, are those of the full list.
    let of42: butterfly_evpn::kernel::Links =
        links.iter().filter(|(_, (v, _))| *v == 42).map(|(&i, &vr)| (i, vr)).collect();
    assert_eq!(of42.len(), 4);
    assert_eq!(m.vni_links(42).unwrap(), of42);
    assert!(m.vni_links(44).unwrap().is_empty());
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

/// An IPv6 underlay: the mirror's VXLAN device takes the IPv6 VTEP address, and what zebra
/// would install for IPv6 VTEPs (remote MACs, flood entries; the commands FRR's zebra runs
/// through netlink, written here with `bridge` and `ip`) is read back as IPv6 remote entries,
/// from a dump and from the subscription. (FRR 8.4 itself does not take IPv6 VTEPs: see
/// docs/architecture.md, "EVPN".)
#[test]
fn an_ipv6_vtep_mirror_reads_back_ipv6_remote_entries() {
    use butterfly_evpn::kernel::{Change, Entry};
    if !root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns(format!("bfevs{}", std::process::id()));
    let mut m = Mirror::open(&ns.0).unwrap();
    let mut ev = Events::open(&ns.0).unwrap();
    let local: IpAddr = "fd00:198:18::1".parse().unwrap();
    m.add_vni(46, local).unwrap();
    assert_eq!(m.vnis().unwrap().get(&46), Some(&Some(local)));
    let links = m.links().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let mac = [0x52, 0x54, 0, 0, 0, 0x46];
    let (vtep2, vtep3): (IpAddr, IpAddr) =
        ("fd00:198:18::2".parse().unwrap(), "fd00:198:18::3".parse().unwrap());
    let n = ns.0.as_str();
    run(&[
        "bridge",
        "-n",
        n,
        "fdb",
        "add",
        "52:54:00:00:00:46",
        "dev",
        "bfvx46",
        "dst",
        "fd00:198:18::2",
        "self",
        "extern_learn",
    ]);
    for dst in ["fd00:198:18::2", "fd00:198:18::3"] {
        run(&[
            "bridge",
            "-n",
            n,
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dev",
            "bfvx46",
            "dst",
            dst,
            "self",
            "permanent",
        ]);
    }
    let want = [
        Entry::RemoteMac { vni: 46, mac, vtep: vtep2 },
        Entry::Flood { vni: 46, vtep: vtep2 },
        Entry::Flood { vni: 46, vtep: vtep3 },
    ];
    let dumped: Vec<Seen> = m.dump(&links).unwrap();
    for e in want {
        assert!(dumped.contains(&Seen::Remote(Change::Add(e))), "{e:?} in the dump: {dumped:?}");
    }
    let mut got = Vec::new();
    for _ in 0..100 {
        if ev.read(&links, &mut got).unwrap() == Read::Empty {
            break;
        }
    }
    for e in want {
        assert!(got.contains(&Seen::Remote(Change::Add(e))), "{e:?} from the subscription: {got:?}");
    }
    // A withdrawal (zebra deletes the flood entry of a VTEP that left the VNI).
    run(&[
        "bridge",
        "-n",
        n,
        "fdb",
        "del",
        "00:00:00:00:00:00",
        "dev",
        "bfvx46",
        "dst",
        "fd00:198:18::3",
        "self",
    ]);
    got.clear();
    for _ in 0..100 {
        if ev.read(&links, &mut got).unwrap() == Read::Empty {
            break;
        }
    }
    assert!(got.contains(&Seen::Remote(Change::Del(Entry::Flood { vni: 46, vtep: vtep3 }))), "{got:?}");
    m.remove_vni(46).unwrap();
}

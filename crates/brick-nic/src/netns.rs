//! Network namespaces: running a few calls inside another one, and finding the namespace an
//! interface was moved to.
//!
//! A TAP device that a daemon created and made persistent may be moved into a VM's or a
//! container's namespace; after a restart the daemon finds it there ([`find_interface`]) and
//! attaches to it from inside ([`TapNic::attach_in`](crate::TapNic::attach_in)). The
//! descriptors it gets work from any namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys;

/// Runs `f` on a new thread that has entered the network namespace `netns` (an open
/// `/run/netns/NAME`, `/proc/PID/ns/net`…); the caller's threads stay where they are.
/// Sockets and devices opened by `f` belong to `netns`, and keep working from any thread
/// afterwards. Needs CAP_SYS_ADMIN.
pub fn in_netns<T: Send>(netns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let raw = netns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(move || {
            // SAFETY: setns(2) with a descriptor borrowed for the whole scope; it moves only
            // this short-lived thread, which ends when `f` returns.
            if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a thread in another network namespace panicked")))
    })
}

/// Identity of a namespace file: (device, inode).
fn identity(f: &File) -> io::Result<(u64, u64)> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

/// The network namespaces other than this thread's that can be named: those pinned under
/// `/run/netns` (`ip netns add`) and those of running processes (`/proc/PID/ns/net`), each
/// once, with the path each was opened from. Entries that cannot be opened (a process that
/// just ended, no permission) are skipped.
pub fn other_namespaces() -> Vec<(PathBuf, File)> {
    let own = File::open("/proc/thread-self/ns/net").and_then(|f| identity(&f)).ok();
    let mut seen: std::collections::HashSet<(u64, u64)> = own.into_iter().collect();
    let mut out = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    for dir in ["/run/netns", "/var/run/netns"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            names.sort();
            candidates.extend(names);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/proc") {
        let mut pids: Vec<u32> =
            entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
        pids.sort_unstable();
        candidates.extend(pids.into_iter().map(|p| Path::new("/proc").join(p.to_string()).join("ns/net")));
    }
    for path in candidates {
        let Ok(f) = File::open(&path) else { continue };
        let Ok(id) = identity(&f) else { continue };
        if seen.insert(id) {
            out.push((path, f));
        }
    }
    out
}

/// The Ethernet address of interface `name` in the calling thread's namespace, if it exists.
pub fn interface_mac(name: &str) -> Option<[u8; 6]> {
    sys::check_ifname(name).ok()?;
    // SAFETY: plain socket(2) call.
    let sock =
        sys::fd_or_err(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })
            .ok()?;
    let mut ifr = sys::ifreq_for(name);
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) } < 0 {
        return None;
    }
    let mut mac = [0u8; 6];
    // SAFETY: the kernel filled the hwaddr member of the union.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    Some(mac)
}

/// Finds, among [`other_namespaces`], the one holding an interface called `name` with the
/// Ethernet address `mac`: its path and an open descriptor. `None` when no namespace has
/// one. Needs CAP_SYS_ADMIN; costs one `setns` per namespace until found (on one helper
/// thread).
pub fn find_interface(name: &str, mac: [u8; 6]) -> io::Result<Option<(PathBuf, OwnedFd)>> {
    sys::check_ifname(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let spaces = other_namespaces();
    let found = std::thread::scope(|s| {
        s.spawn(|| {
            for (i, (_, f)) in spaces.iter().enumerate() {
                // SAFETY: setns(2) with a descriptor `spaces` keeps open; it moves only this
                // helper thread, which ends with the loop.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    continue;
                }
                if interface_mac(name) == Some(mac) {
                    return Some(i);
                }
            }
            None
        })
        .join()
        .map_err(|_| io::Error::other("the namespace search thread panicked"))
    })?;
    match found {
        Some(i) => {
            let (path, f) = spaces.into_iter().nth(i).expect("index from the same list");
            Ok(Some((path, f.as_fd().try_clone_to_owned()?)))
        }
        None => Ok(None),
    }
}

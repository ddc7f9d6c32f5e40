//! Small safe wrappers over the Linux calls the kernel backends share.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use crate::NicError;

/// Longest interface name Linux accepts (IFNAMSIZ − 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Checks an interface name: 1 to 15 bytes, no NUL, slash or whitespace.
pub fn check_ifname(name: &str) -> Result<(), NicError> {
    let bad = |why: &'static str| NicError::InvalidName { name: name.to_string(), why };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > IFNAME_MAX {
        return Err(bad("longer than 15 bytes"));
    }
    if name.bytes().any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace()) {
        return Err(bad("contains NUL, '/' or whitespace"));
    }
    Ok(())
}

/// The index of interface `name` in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32, NicError> {
    check_ifname(name)?;
    let c =
        CString::new(name).map_err(|_| NicError::InvalidName { name: name.into(), why: "contains NUL" })?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(NicError::NoSuchInterface(name.to_string()));
    }
    Ok(idx)
}

/// Whether an interface called `name` exists.
pub fn interface_exists(name: &str) -> bool {
    ifindex(name).is_ok()
}

/// An `ifreq` with `ifr_name` set to `name` (already checked by [`check_ifname`]).
pub fn ifreq_for(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes().take(IFNAME_MAX)) {
        *dst = src as libc::c_char;
    }
    ifr
}

/// Wraps a returned fd, or the current errno.
pub fn fd_or_err(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `setsockopt` of a plain value.
pub fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live `T` of exactly the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt` of a plain-old-data value.
pub fn getsockopt<T: Copy>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, init: T) -> io::Result<T> {
    let mut val = init;
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `val` is a live `T` and `len` its size; the kernel writes at most `len` bytes.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, (&mut val as *mut T).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(val)
}

/// The MTU of interface `name`.
pub fn mtu(name: &str) -> io::Result<u32> {
    // SAFETY: plain socket(2) call.
    let sock = fd_or_err(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut ifr = ifreq_for(name);
    // SAFETY: SIOCGIFMTU reads ifr_name and writes ifr_ifru.ifru_mtu of the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU, &mut ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel filled the mtu member of the union.
    Ok(unsafe { ifr.ifr_ifru.ifru_mtu } as u32)
}

/// Sets the Ethernet address of interface `name` (SIOCSIFHWADDR; needs CAP_NET_ADMIN).
pub fn set_mac(name: &str, mac: [u8; 6]) -> io::Result<()> {
    // SAFETY: plain socket(2) call.
    let sock = fd_or_err(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut ifr = ifreq_for(name);
    // SAFETY: writing the plain-data sockaddr member of the union of an ifreq we own.
    unsafe {
        ifr.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (dst, src) in ifr.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac) {
            *dst = src as libc::c_char;
        }
    }
    // SAFETY: SIOCSIFHWADDR reads ifr_name and ifr_hwaddr of the ifreq we own.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFHWADDR, &ifr) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A shared memory mapping of a file descriptor (the AF_PACKET rings), unmapped on drop.
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by exactly one `Mmap`; it is only reached through `&self` /
// `&mut self` of its owner, so moving it to another thread moves that exclusive access with it.
unsafe impl Send for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` read/write and shared.
    pub fn map(fd: &OwnedFd, len: usize) -> io::Result<Mmap> {
        // SAFETY: a fresh mapping chosen by the kernel; we check for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned NULL"))?;
        Ok(Mmap { ptr, len })
    }

    /// Start of the mapping.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, once mapped).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `map` created; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The errno of an `io::Error`, or 0.
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a-very-long-name0").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(matches!(ifindex("nosuchif-x1"), Err(NicError::NoSuchInterface(_))));
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert!(interface_exists("lo"));
    }

    #[test]
    fn mtu_of_loopback() {
        assert_eq!(mtu("lo").unwrap(), 65536);
        assert!(mtu("nosuchif-x1").is_err());
    }

    #[test]
    fn mmap_of_a_memfd() {
        // SAFETY: memfd_create with a static name.
        let fd =
            fd_or_err(unsafe { libc::memfd_create(c"brick-nic-test".as_ptr(), libc::MFD_CLOEXEC) }).unwrap();
        // SAFETY: ftruncate on our own memfd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 8192) }, 0);
        let m = Mmap::map(&fd, 8192).unwrap();
        // SAFETY: writes within the 8192-byte mapping.
        unsafe { *m.ptr().add(8191) = 7 };
        assert_eq!(m.len(), 8192);
        // SAFETY: reads within the mapping.
        assert_eq!(unsafe { *m.ptr().add(8191) }, 7);
    }
}

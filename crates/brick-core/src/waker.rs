//! An eventfd that wakes a sleeping graph thread, and the epoll set a graph sleeps on.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A Linux eventfd used as a doorbell.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the returned descriptor is checked, then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
        Ok(Waker { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Rings the bell (makes the fd readable).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. Failure (counter
        // saturated) still leaves the fd readable, which is all we need.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Silences the bell.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; non-blocking, EAGAIN is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }

    /// The descriptor, for poll/epoll.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// An epoll instance: registration happens once per fd, so waiting costs the same whether
/// 3 or 300 fds are watched (poll(2) walks every fd on each call), and a wait reports which
/// fds are ready. Level-triggered, like poll(2).
///
/// The set's own fd is readable while any watched fd is, so a brick that must watch several
/// fds (a vhost-user NIC: its control doorbell and each queue's kick fd) can hand the set's
/// fd to the graph as its one [`wake_fd`](crate::Brick::wake_fd).
#[derive(Debug)]
pub struct EpollSet {
    fd: OwnedFd,
}

impl EpollSet {
    /// A new, empty set.
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the descriptor is checked, then owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(EpollSet { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Watches `fd` for readability; waits report `data` for it. Fails with `EEXIST` when the
    /// fd (or another on the same open file) is already watched.
    pub fn add(&self, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
        // SAFETY: registers a caller's fd with our epoll fd, reading an event struct we own.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (which must still be open). Fails with `ENOENT` when it is not
    /// watched.
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: unregisters a caller's fd; the event argument is ignored by the kernel but
        // must be non-null before Linux 2.6.9, so a live one is passed.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The set's own descriptor: readable while any watched fd is.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Waits until a watched fd is readable or `timeout` elapses (nanosecond resolution where
    /// the kernel has epoll_pwait2, Linux ≥ 5.11; else rounded up to a millisecond), and
    /// fills `events` (up to its capacity). Returns how many are ready; EINTR counts as none.
    pub fn wait(&self, events: &mut Vec<libc::epoll_event>, timeout: Duration) -> usize {
        events.clear();
        if events.capacity() == 0 {
            events.reserve(1);
        }
        let cap = events.capacity().min(i32::MAX as usize) as i32;
        let secs = timeout.as_secs().min(i32::MAX as u64);
        let ts = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
        // SAFETY: `events` has room for `cap` entries, the kernel writes at most that many;
        // `ts` lives for the call; a null signal mask leaves the mask unchanged.
        let mut n = unsafe {
            libc::epoll_pwait2(self.fd.as_raw_fd(), events.as_mut_ptr(), cap, &ts, std::ptr::null())
        };
        if n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
            let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
            // SAFETY: as above, with a millisecond timeout.
            n = unsafe { libc::epoll_wait(self.fd.as_raw_fd(), events.as_mut_ptr(), cap, ms) };
        }
        let n = n.max(0) as usize;
        // SAFETY: the kernel initialised the first `n` entries (n ≤ cap ≤ capacity).
        unsafe { events.set_len(n) };
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wake_interrupts_a_wait_and_drain_rearms() {
        let w = Waker::new().unwrap();
        let set = EpollSet::new().unwrap();
        set.add(w.fd(), 1).unwrap();
        let mut events = Vec::with_capacity(2);
        w.wake();
        let t = Instant::now();
        assert_eq!(set.wait(&mut events, Duration::from_secs(5)), 1);
        assert!(t.elapsed() < Duration::from_secs(1));
        w.drain();
        assert_eq!(set.wait(&mut events, Duration::from_millis(20)), 0);
    }

    #[test]
    fn epoll_reports_which_fds_are_ready_and_a_short_timeout_returns_promptly() {
        let (a, b) = (Waker::new().unwrap(), Waker::new().unwrap());
        let set = EpollSet::new().unwrap();
        set.add(a.fd(), 7).unwrap();
        set.add(b.fd(), 9).unwrap();
        assert_eq!(set.add(b.fd(), 10).unwrap_err().raw_os_error(), Some(libc::EEXIST));
        let mut events = Vec::with_capacity(4);
        let t = Instant::now();
        assert_eq!(set.wait(&mut events, Duration::from_micros(200)), 0);
        assert!(t.elapsed() < Duration::from_millis(50));
        b.wake();
        assert_eq!(set.wait(&mut events, Duration::from_secs(5)), 1);
        assert_eq!({ events[0].u64 }, 9);
        // Level-triggered: still ready until drained.
        assert_eq!(set.wait(&mut events, Duration::ZERO), 1);
        b.drain();
        a.wake();
        assert_eq!(set.wait(&mut events, Duration::ZERO), 1);
        assert_eq!({ events[0].u64 }, 7);
        // Capacity bounds what one wait reports; an empty vector gets room for one.
        b.wake();
        let mut one = Vec::with_capacity(1);
        assert_eq!(set.wait(&mut one, Duration::ZERO), 1);
        let mut none = Vec::new();
        assert_eq!(set.wait(&mut none, Duration::ZERO), none.len());
        assert!(!none.is_empty());
    }

    #[test]
    fn a_set_is_readable_while_a_member_is_and_removed_fds_are_not_reported() {
        let (a, b) = (Waker::new().unwrap(), Waker::new().unwrap());
        let inner = EpollSet::new().unwrap();
        inner.add(a.fd(), 1).unwrap();
        inner.add(b.fd(), 2).unwrap();
        let outer = EpollSet::new().unwrap();
        outer.add(inner.fd(), 5).unwrap();
        let mut events = Vec::with_capacity(2);
        assert_eq!(outer.wait(&mut events, Duration::ZERO), 0);
        a.wake();
        assert_eq!(outer.wait(&mut events, Duration::from_secs(5)), 1);
        assert_eq!({ events[0].u64 }, 5);
        inner.remove(a.fd()).unwrap();
        assert_eq!(outer.wait(&mut events, Duration::ZERO), 0, "a removed fd no longer counts");
        assert_eq!(inner.remove(a.fd()).unwrap_err().raw_os_error(), Some(libc::ENOENT));
        b.wake();
        assert_eq!(outer.wait(&mut events, Duration::ZERO), 1);
    }
}

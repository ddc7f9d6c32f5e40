//! An eventfd that wakes a sleeping graph thread, and a `poll(2)` wrapper.

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

/// Waits until one of `fds` is readable or `timeout` elapses (EINTR counts as a wake-up).
/// The timeout has nanosecond resolution: a timer due in 0.4 ms sleeps 0.4 ms, where
/// poll(2)'s milliseconds would have rounded it down to a busy loop of zero-length sleeps.
pub(crate) fn poll_fds(fds: &mut [libc::pollfd], timeout: Duration) {
    let secs = timeout.as_secs().min(i32::MAX as u64);
    let ts = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: timeout.subsec_nanos() as _ };
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole call; `ts`
    // lives on the stack for the call; a null signal mask leaves the mask unchanged.
    unsafe { libc::ppoll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, &ts, std::ptr::null()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wake_interrupts_poll_and_drain_rearms() {
        let w = Waker::new().unwrap();
        w.wake();
        let mut fds = [libc::pollfd { fd: w.fd(), events: libc::POLLIN, revents: 0 }];
        let t = Instant::now();
        poll_fds(&mut fds, Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_ne!(fds[0].revents & libc::POLLIN, 0);
        w.drain();
        fds[0].revents = 0;
        poll_fds(&mut fds, Duration::from_millis(20));
        assert_eq!(fds[0].revents & libc::POLLIN, 0);
    }
}

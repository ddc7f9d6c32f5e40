//! A periodic timerfd: the pacing clock of the ping sender, and its wake fd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A non-blocking periodic `CLOCK_MONOTONIC` timer.
#[derive(Debug)]
pub(crate) struct Ticker {
    fd: OwnedFd,
}

fn timespec(d: Duration) -> libc::timespec {
    libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long }
}

impl Ticker {
    /// A timer firing every `period` (not zero), first after one period.
    pub(crate) fn new(period: Duration) -> io::Result<Ticker> {
        // SAFETY: timerfd_create takes no pointers; the descriptor is checked, then owned.
        let raw =
            unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK | libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let spec = libc::itimerspec { it_interval: timespec(period), it_value: timespec(period) };
        // SAFETY: reads the itimerspec we own; the old value is not asked for (null).
        if unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Ticker { fd })
    }

    /// Whether the timer fired since the last call (and clears it).
    pub(crate) fn expired(&self) -> bool {
        let mut n: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking timerfd;
        // EAGAIN (not fired yet) returns -1.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
        r == 8 && n > 0
    }

    /// The descriptor, readable once the timer fired.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

//! The graph thread's side of each virtqueue of the current connection: the ring view
//! ([`SplitQueue`], rebuilt only when the driver moves the ring or the memory map changes),
//! the kick fd it watches, and whether guest kicks are armed.
//!
//! Kicks: while the graph polls a TX queue the guest is asked not to kick (without EVENT_IDX
//! the used ring's NO_NOTIFY flag; with it, `avail_event` is simply left behind). Only when the
//! graph is about to stop polling ([`Brick::arm_wake`](brick_core::Brick::arm_wake)) are kicks
//! re-enabled, the kick fd drained first and the ring looked at once more. A guest feeding a
//! busy queue therefore makes no system call per burst, and the graph thread is the only
//! thread that wakes for its frames.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use brick_core::EpollSet;
use virtio_queue::Queue;

use crate::backend::NetVring;
use crate::ring::{GuestMap, QueueLayout, RingError, SplitQueue};

/// Epoll data of the NIC's control doorbell in its wake set (queues use their index).
pub(crate) const DOORBELL: u64 = u64::MAX;

/// What [`DeviceQueue::arm`] did.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Armed {
    /// Chains are waiting: the graph must poll instead of sleeping.
    pub(crate) work: bool,
    /// Kicks were enabled just now (the kick fd must be drained).
    pub(crate) newly: bool,
}

/// One virtqueue as the graph thread keeps it.
#[derive(Default)]
pub(crate) struct DeviceQueue {
    ring: Option<SplitQueue>,
    /// A layout that could not be set up in a memory map, reported once until the driver
    /// moves the ring or the map changes.
    refused: Option<(QueueLayout, GuestMap)>,
    /// The kick fd in the wake set, and the slot generation it came from.
    kick: Option<Arc<OwnedFd>>,
    kick_gen: u64,
    /// The avail index at which kicks were last enabled; `None` while polling.
    armed_at: Option<u16>,
    /// The gate version at which the ring view was last found current and the queue running,
    /// under the vring's lock: while the gate stays at it, bursts need no lock.
    confirmed: Option<u64>,
}

impl DeviceQueue {
    /// Forgets the ring (the queue stopped, or the connection changed). The kick fd stays
    /// watched until [`sync_kick`](Self::sync_kick) sees it change.
    pub(crate) fn reset(&mut self) {
        self.ring = None;
        self.refused = None;
        self.armed_at = None;
        self.confirmed = None;
    }

    /// The ring view, if it was confirmed at gate `version` (a stable one): usable without
    /// the vring's lock.
    #[inline]
    pub(crate) fn lock_free(&mut self, version: u64) -> Option<&mut SplitQueue> {
        if self.confirmed == Some(version) {
            self.ring.as_mut()
        } else {
            None
        }
    }

    /// Under the vring's lock, with the queue running and its view current (just returned by
    /// [`ring`](Self::ring)): later bursts at the same stable gate `version` skip the lock.
    #[inline]
    pub(crate) fn confirm(&mut self, version: u64) {
        self.confirmed = (crate::gate::Gate::stable(version) && self.ring.is_some()).then_some(version);
    }

    /// Forgets the confirmation (the memory map changed): the next burst takes the lock.
    pub(crate) fn unconfirm(&mut self) {
        self.confirmed = None;
    }

    /// The ring view as it is, for the burst that just confirmed or looked it up.
    #[inline]
    pub(crate) fn view(&mut self) -> Option<&mut SplitQueue> {
        self.ring.as_mut()
    }

    /// Watches the vring's current kick fd in `set` (under data `index`) if it changed.
    pub(crate) fn sync_kick(&mut self, vring: &NetVring, set: &EpollSet, index: usize) {
        let slot = vring.kick();
        let g = slot.generation();
        if g == self.kick_gen {
            return;
        }
        self.kick_gen = g;
        if let Some(old) = self.kick.take() {
            let _ = set.remove(old.as_raw_fd());
        }
        self.kick = slot.fd();
        if let Some(fd) = &self.kick {
            if let Err(e) = set.add(fd.as_raw_fd(), index as u64) {
                tracing::warn!("watching kick fd of queue {index}: {e}");
            }
        }
        // A new fd has never been armed.
        self.armed_at = None;
    }

    /// Stops watching the kick fd (the connection is gone).
    pub(crate) fn drop_kick(&mut self, set: &EpollSet) {
        if let Some(old) = self.kick.take() {
            let _ = set.remove(old.as_raw_fd());
        }
        self.kick_gen = 0;
        self.armed_at = None;
    }

    /// The ring of `q` as configured now, with the device indexes loaded from it. `None` when
    /// its layout cannot be used (reported once per layout).
    pub(crate) fn ring(&mut self, map: &GuestMap, q: &Queue) -> Option<&mut SplitQueue> {
        let layout = QueueLayout::of(q);
        let stale = match &self.ring {
            Some(r) => r.layout() != layout || !r.map().same_as(map),
            None => true,
        };
        if stale {
            self.ring = None;
            self.confirmed = None;
            if self.refused.as_ref().is_some_and(|(l, m)| *l == layout && m.same_as(map)) {
                return None;
            }
            match SplitQueue::new(map.clone(), layout, 0, 0) {
                Ok(mut r) => {
                    // The graph is polling this queue: no kicks until it arms the queue before
                    // sleeping. A driver starts with notifications on (used flags 0), and one
                    // without EVENT_IDX (DPDK's virtio_user) kicked for every burst while the
                    // graph never slept, since only an arming is followed by a disarming.
                    r.disable_kicks();
                    self.ring = Some(r);
                    self.refused = None;
                    self.armed_at = None;
                }
                Err(e) => {
                    report_refused(&e, &layout);
                    self.refused = Some((layout, map.clone()));
                    return None;
                }
            }
        }
        let ring = self.ring.as_mut()?;
        ring.load_indexes(q);
        Some(ring)
    }

    /// After a burst that took chains from this queue: while the graph polls, no kicks.
    /// Whether this queue has a cached ring view and it shows no chain waiting. A hint for
    /// [`VhostUserNic`](crate::VhostUserNic)'s quiet polls; the full poll decides.
    #[inline]
    pub(crate) fn looks_empty(&mut self) -> bool {
        self.ring.as_mut().is_some_and(|r| r.pending() == Ok(0))
    }

    #[inline]
    pub(crate) fn polling(&mut self) {
        if self.armed_at.take().is_some() {
            if let Some(r) = self.ring.as_mut() {
                r.disable_kicks();
            }
        }
    }

    /// Asks the guest to kick for the next chain of `q` (running, in `map`), unless that was
    /// already done and nothing was published since. `None` when the ring is unusable.
    pub(crate) fn arm(&mut self, map: &GuestMap, q: &Queue) -> Option<Armed> {
        let armed_at = self.armed_at;
        let ring = self.ring(map, q)?;
        let avail = ring.avail_idx();
        if ring.next_avail != avail {
            return Some(Armed { work: true, newly: false });
        }
        if armed_at == Some(avail) {
            return Some(Armed { work: false, newly: false });
        }
        let work = ring.enable_kicks();
        self.armed_at = Some(avail);
        Some(Armed { work, newly: true })
    }

    /// Reads and clears the kick fd; returns the kicks counted since the last read.
    pub(crate) fn drain_kick(&self) -> u64 {
        let Some(fd) = &self.kick else { return 0 };
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from an fd we keep open; the fd is
        // non-blocking (set when it was received), so an empty eventfd answers EAGAIN.
        let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if n == 8 {
            v
        } else {
            0
        }
    }
}

fn report_refused(e: &RingError, layout: &QueueLayout) {
    tracing::warn!("virtqueue at desc {:#x} size {} refused: {e}", layout.desc, layout.size);
}

//! Lending the port's mbufs to other bricks: a VM's NIC copies a guest frame straight into
//! an mbuf, and this port sends that mbuf as it is (the frame is copied once, not into a
//! pool packet and then again into an mbuf).

use super::*;

/// Empty packets in mbufs of one port's mempool, for one brick on one thread. Made by the
/// [`LentBuffers`] of [`DpdkNic::lent_buffers`]. When the first packet of a burst is asked
/// for, the burst's worth announced by [`PacketSource::reserve`] is taken in one bulk (none
/// when no frame of the burst wants an mbuf); what is left over goes back at
/// [`unreserve`](PacketSource::unreserve) or when the source is dropped.
pub struct MbufSource {
    mempool: *mut sys::rte_mempool,
    data_room: usize,
    register_thread: bool,
    scratch: Box<LendScratch>,
    /// `scratch.mbufs[next..have]` are taken and not handed out yet.
    next: usize,
    have: usize,
    /// Packets still expected in this burst ([`PacketSource::reserve`]).
    want: usize,
}

struct LendScratch {
    mbufs: [*mut sys::rte_mbuf; BURST_SIZE],
    views: [sys::brick_mbuf_view; BURST_SIZE],
}

// SAFETY: the mempool is a thread-safe DPDK object that is never freed (a closed port's pool
// is retired, see `RETIRED_POOLS`); the mbufs held between `reserve` and `unreserve` are
// exclusively this source's, whichever thread it is on.
unsafe impl Send for MbufSource {}

impl MbufSource {
    /// Takes `n` (at most a burst) fresh mbufs, none being left; false, with nothing taken,
    /// when the pool has fewer free.
    fn take(&mut self, n: usize) -> bool {
        debug_assert_eq!(self.next, self.have);
        if self.register_thread {
            EAL_THREAD.with(|_| {});
        }
        let n = n.min(BURST_SIZE);
        let s = &mut *self.scratch;
        // SAFETY: mbufs/views have room for BURST_SIZE >= n entries; the mempool is alive
        // for the process.
        let rc = unsafe {
            sys::brick_pktmbuf_alloc_views(self.mempool, s.mbufs.as_mut_ptr(), s.views.as_mut_ptr(), n as u32)
        };
        if rc != 0 {
            return false;
        }
        (self.next, self.have) = (0, n);
        true
    }
}

/// Frames shorter than this are not worth a lent mbuf. Measured with `cargo bench -p
/// butterfly-benches --features dpdk --bench vm_to_dpdk` (a guest ring to `net_null0`,
/// cycles per frame, least / median of 5,000 bursts, pool then every frame lent, two runs):
/// 64 B 102-114/124-154 against 113-114/122-153, 128 B 108-111/128-132 against
/// 116-117/125-127, 256 B 119-123/137-141 against 120-121/129-131, 512 B 144-145/160-163
/// against 128-129/139-141, 1400 B 232-236/250-257 against 178-179/189-191. Below 256 bytes
/// the copy saved is no more than what taking and handing over an mbuf from Rust costs.
pub const MIN_LENT_FRAME: usize = 256;

impl PacketSource for MbufSource {
    fn data_room(&self) -> usize {
        self.data_room
    }

    fn min_frame(&self) -> usize {
        MIN_LENT_FRAME
    }

    #[inline]
    fn push_empty<'b>(&mut self, burst: &'b mut Burst) -> Option<&'b mut Packet> {
        if burst.is_full() || (self.next == self.have && !self.take(self.want.max(1))) {
            return None;
        }
        self.want = self.want.saturating_sub(1);
        let i = self.next;
        let v = &self.scratch.views[i];
        let (buf, handle) =
            (NonNull::new(v.buf.cast::<u8>())?, NonNull::new(self.scratch.mbufs[i].cast::<()>())?);
        // SAFETY: a fresh mbuf from `take` is direct, single-segment and ours alone, its
        // `buf_len` bytes at `buf_addr` plain initialised memory, until the packet frees it
        // through MBUF_OWNER or a DpdkNic sends it; its mempool is never freed. The burst
        // has room (checked above), and an empty packet at `data_off` fits the buffer.
        let pushed = unsafe {
            burst.push_foreign(buf, v.buf_len as usize, v.data_off as usize, 0, &MBUF_OWNER, handle)
        };
        if !pushed {
            return None;
        }
        self.next += 1;
        burst.last_mut()
    }

    fn reserve(&mut self, n: usize) {
        self.unreserve();
        self.want = n;
    }

    fn unreserve(&mut self) {
        let left = self.have - self.next;
        if left > 0 {
            // SAFETY: these mbufs were taken by `take` and never handed out.
            unsafe {
                sys::brick_pktmbuf_free_bulk(self.scratch.mbufs[self.next..].as_mut_ptr(), left as u32)
            };
        }
        (self.next, self.have, self.want) = (0, 0, 0);
    }
}

impl Drop for MbufSource {
    fn drop(&mut self) {
        self.unreserve();
    }
}

impl DpdkNic {
    /// This port's mbufs, lent as empty packets to the bricks that make frames this port
    /// may send (a VM's NIC): the port sends them without copying. Each brick gets its own
    /// [`MbufSource`]. A source holds unused mbufs only during a poll (at most a burst, given
    /// back after it); the frames built in them hold theirs until sent or dropped, so size
    /// [`DpdkConfig::mbufs`] for the frames in flight between the VMs and the port too. When
    /// the pool runs dry, the VM's NIC falls back to its own pool (one more copy, no drop).
    pub fn lent_buffers(&self) -> LentBuffers {
        let mempool = SendPtr(self.port.mempool);
        let data_room = self.port.data_room;
        let register_thread = self.register_thread;
        LentBuffers::new("dpdk mbufs", move || {
            let mempool = mempool.get();
            Box::new(MbufSource {
                mempool,
                data_room,
                register_thread,
                scratch: Box::new(LendScratch {
                    mbufs: [std::ptr::null_mut(); BURST_SIZE],
                    // SAFETY: brick_mbuf_view is plain data (pointers and integers).
                    views: unsafe { std::mem::zeroed() },
                }),
                next: 0,
                have: 0,
                want: 0,
            }) as Box<dyn PacketSource>
        })
    }
}

/// A mempool pointer that may travel to other threads: DPDK mempools are thread-safe and
/// ours are never freed.
#[derive(Clone, Copy)]
struct SendPtr(*mut sys::rte_mempool);

impl SendPtr {
    fn get(self) -> *mut sys::rte_mempool {
        self.0
    }
}

// SAFETY: see the type's documentation.
unsafe impl Send for SendPtr {}
// SAFETY: only copied out, never dereferenced here.
unsafe impl Sync for SendPtr {}

//! The split ring against a simulated guest driver ([`GuestDriver`]).

use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::*;
use crate::testutil::{GuestDriver, F_NEXT, F_WRITE};

fn memory(size: usize) -> Arc<GuestMemoryMmap<()>> {
    Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).unwrap())
}

fn queue(
    mem: &Arc<GuestMemoryMmap<()>>,
    g: &GuestDriver<'_, GuestMemoryMmap<()>>,
    event_idx: bool,
) -> SplitQueue {
    SplitQueue::new(GuestMap::new(Arc::clone(mem)), g.layout(event_idx), 0, 0).unwrap()
}

#[test]
fn guest_map_checks_every_range_against_one_region() {
    // Two regions with a hole between them, and a third right after the second.
    let mem = Arc::new(
        GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 0x1000),
            (GuestAddress(0x10000), 0x1000),
            (GuestAddress(0x11000), 0x1000),
        ])
        .unwrap(),
    );
    let map = GuestMap::new(mem);
    assert!(map.host(0, 0x1000).is_some());
    assert!(map.host(0xfff, 1).is_some());
    assert!(map.host(0xfff, 2).is_none(), "crosses the end of a region");
    assert!(map.host(0x1000, 0).is_none(), "in the hole");
    assert!(map.host(0x10800, 0x1000).is_none(), "spans two adjacent regions: not contiguous for us");
    assert!(map.host(0x11fff, 1).is_some());
    assert!(map.host(u64::MAX, 2).is_none());
    assert!(map.host(0x10000, usize::MAX).is_none());
    let a = map.host(0x10000, 1).unwrap().as_ptr() as usize;
    let b = map.host(0x10010, 1).unwrap().as_ptr() as usize;
    assert_eq!(b - a, 0x10);
}

#[test]
fn a_queue_must_be_a_power_of_two_aligned_and_inside_memory() {
    let mem = memory(0x10000);
    let map = GuestMap::new(Arc::clone(&mem));
    let ok = QueueLayout { desc: 0, avail: 0x1000, used: 0x2000, size: 256, event_idx: true };
    assert!(SplitQueue::new(map.clone(), ok, 0, 0).is_ok());
    for size in [0, 3, 100] {
        let l = QueueLayout { size, ..ok };
        assert_eq!(SplitQueue::new(map.clone(), l, 0, 0).unwrap_err(), RingError::BadSize(size));
    }
    let bad = [
        (QueueLayout { desc: 8, ..ok }, RingError::Misaligned(8)),
        (QueueLayout { avail: 0x1001, ..ok }, RingError::Misaligned(0x1001)),
        (QueueLayout { used: 0x2002, ..ok }, RingError::Misaligned(0x2002)),
        (QueueLayout { used: 0xf800, ..ok }, RingError::OutsideMemory(0xf800)),
        (QueueLayout { desc: 0xf010, ..ok }, RingError::OutsideMemory(0xf010)),
    ];
    for (l, e) in bad {
        assert_eq!(SplitQueue::new(map.clone(), l, 0, 0).unwrap_err(), e);
    }
}

#[test]
fn chains_are_taken_in_order_and_the_avail_index_is_read_once_per_batch() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, false);
    assert_eq!(q.pending(), Ok(0));
    let a = g.put_data(&[1; 64]);
    for i in 0..3 {
        g.write_desc(i, (a, 64, 0, 0));
    }
    g.publish_heads(&[2, 0, 1]);
    assert_eq!(q.pending(), Ok(3));
    assert_eq!(q.take(), 2);
    // The guest publishes more; the device keeps using what it saw until that runs out.
    g.publish_heads(&[1]);
    assert_eq!(q.pending(), Ok(2));
    assert_eq!(q.take(), 0);
    assert_eq!(q.take(), 1);
    assert_eq!(q.pending(), Ok(1), "re-read once the batch is used up");
    assert_eq!(q.take(), 1);
    q.untake(2);
    assert_eq!(q.pending(), Ok(2));
    assert_eq!(q.take(), 1);
    assert_eq!(q.take(), 1);
    for head in [2, 0, 1, 1] {
        q.put_used(head, 7);
    }
    assert_eq!(g.used_idx(), 0, "nothing is visible before publishing");
    q.publish_used();
    assert_eq!(g.used_idx(), 4);
    assert_eq!(g.used_elems(), vec![(2, 7), (0, 7), (1, 7), (1, 7)]);
}

#[test]
fn an_avail_index_jumping_past_the_queue_size_is_an_error() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, false);
    g.publish_heads(&[0; 17]);
    assert_eq!(q.pending(), Err(RingError::AvailJump(17)));
}

#[test]
fn the_device_indexes_round_trip_through_virtio_queue() {
    let mem = memory(0x40_0000);
    let g = GuestDriver::new(&*mem, 16);
    let mut vq = g.queue();
    vq.set_next_avail(5);
    vq.set_next_used(3);
    let mut q = queue(&mem, &g, false);
    q.load_indexes(&vq);
    assert_eq!((q.next_avail, q.next_used), (5, 3));
    q.next_avail = 9;
    q.next_used = 8;
    q.store_indexes(&mut vq);
    assert_eq!((vq.next_avail(), vq.next_used()), (9, 8));
    assert_eq!(QueueLayout::of(&vq), g.layout(false));
}

#[test]
fn kicks_are_suppressed_with_the_flag_without_event_idx() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, false);
    q.disable_kicks();
    assert_eq!(g.used_flags() & 1, 1, "NO_NOTIFY set while polling");
    assert!(!q.enable_kicks(), "nothing pending");
    assert_eq!(g.used_flags() & 1, 0);
    g.publish_heads(&[0]);
    assert!(q.enable_kicks(), "the second look sees what came before the request");
}

#[test]
fn kicks_are_requested_through_avail_event_with_event_idx() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, true);
    g.publish_heads(&[0, 1, 2]);
    assert_eq!(q.pending(), Ok(3));
    for _ in 0..3 {
        q.take();
    }
    assert!(!q.enable_kicks());
    assert_eq!(g.avail_event(), 3, "kick me when you publish entry 3");
    q.disable_kicks();
    assert_eq!(g.avail_event(), 3, "left behind: the guest will not kick while we poll");
    assert_eq!(g.used_flags(), 0, "the flag is not used with EVENT_IDX");
}

#[test]
fn interrupts_follow_no_interrupt_without_event_idx() {
    let mem = memory(0x40_0000);
    let g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, false);
    q.put_used(0, 0);
    q.publish_used();
    assert!(q.needs_interrupt());
    g.set_avail_flags(1);
    assert!(!q.needs_interrupt());
}

#[test]
fn interrupts_follow_used_event_with_event_idx() {
    let mem = memory(0x40_0000);
    let g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, true);
    let publish = |q: &mut SplitQueue, n: u16| {
        for _ in 0..n {
            q.put_used(0, 0);
        }
        q.publish_used();
        q.needs_interrupt()
    };
    assert!(publish(&mut q, 1), "the first decision after setup always interrupts");
    g.set_used_event(5);
    assert!(!publish(&mut q, 2), "used 1..=3 does not cross 5");
    assert!(publish(&mut q, 3), "used 3..=6 crosses 5");
    assert!(!publish(&mut q, 1), "already past, event not moved");
    g.set_used_event(u16::MAX);
    q.next_used = u16::MAX - 1;
    let _ = publish(&mut q, 0);
    assert!(publish(&mut q, 3), "crossing is found across the 16-bit wrap");
}

#[test]
fn chains_follow_next_and_indirect_tables() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let q = queue(&mem, &g, false);
    g.write_desc(0, (0x1_0000, 10, F_NEXT, 3));
    g.write_desc(3, (0x2_0000, 20, F_NEXT | F_WRITE, 7));
    g.write_desc(7, (0x3_0000, 30, 0, 0));
    let lens: Vec<u32> = q.chain(0).map(|d| d.unwrap().len).collect();
    assert_eq!(lens, vec![10, 20, 30]);
    let t = g.put_data(&[0; 48]);
    g.write_desc_at(t, 0, (0x1_0000, 1, F_NEXT, 2));
    g.write_desc_at(t, 2, (0x1_0000, 2, 0, 0));
    g.write_desc(1, (t, 48, DESC_F_INDIRECT, 0));
    let lens: Vec<u32> = q.chain(1).map(|d| d.unwrap().len).collect();
    assert_eq!(lens, vec![1, 2]);
}

#[test]
fn malformed_chains_end_with_an_error() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let q = queue(&mem, &g, false);
    let last = |q: &SplitQueue, head: u16| q.chain(head).last().unwrap();
    // a loop 0 -> 1 -> 0
    g.write_desc(0, (0x1_0000, 1, F_NEXT, 1));
    g.write_desc(1, (0x1_0000, 1, F_NEXT, 0));
    assert_eq!(last(&q, 0), Err(ChainError::Loop));
    assert_eq!(q.chain(0).count(), 17, "16 descriptors, then the error");
    // next out of the table, and a head out of the table
    g.write_desc(2, (0x1_0000, 1, F_NEXT, 16));
    assert_eq!(last(&q, 2), Err(ChainError::BadIndex));
    assert_eq!(last(&q, 99), Err(ChainError::BadIndex));
    let t = g.put_data(&[0; 64]);
    let bad_indirect = [
        (t, 48, DESC_F_INDIRECT | F_NEXT),  // INDIRECT with NEXT
        (t, 0, DESC_F_INDIRECT),            // empty table
        (t, 40, DESC_F_INDIRECT),           // not a multiple of 16
        (0x7000_0000, 32, DESC_F_INDIRECT), // outside memory
        (0x3f_fff0, 32, DESC_F_INDIRECT),   // crossing the end of memory
    ];
    for (addr, len, flags) in bad_indirect {
        g.write_desc(4, (addr, len, flags, 5));
        assert_eq!(last(&q, 4), Err(ChainError::BadIndirect), "{addr:#x} {len} {flags:#x}");
    }
    // nested indirect table
    g.write_desc_at(t, 0, (t, 16, DESC_F_INDIRECT, 0));
    g.write_desc(4, (t, 16, DESC_F_INDIRECT, 0));
    assert_eq!(last(&q, 4), Err(ChainError::BadIndirect));
    // a loop inside an indirect table
    g.write_desc_at(t, 0, (0x1_0000, 1, F_NEXT, 1));
    g.write_desc_at(t, 1, (0x1_0000, 1, F_NEXT, 0));
    g.write_desc(4, (t, 32, DESC_F_INDIRECT, 0));
    assert_eq!(last(&q, 4), Err(ChainError::Loop));
}

#[test]
fn prefetch_is_a_hint_that_survives_garbage_and_takes_nothing() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, false);
    q.prefetch(8, false); // nothing pending
    g.write_desc(0, (0x1_0000, 4096, 0, 0));
    g.write_desc(1, (u64::MAX - 10, 100, 0, 0)); // outside memory
    g.write_desc(2, (0x3f_ffc0, 128, F_WRITE, 0)); // crosses the end of memory
    g.write_desc(3, (0, 0, DESC_F_INDIRECT, 0));
    g.publish_heads(&[0, 1, 2, 3, 999]);
    q.prefetch(64, false);
    q.prefetch(3, true);
    assert_eq!(q.next_avail, 0, "prefetching takes no chain");
    assert_eq!(q.pending(), Ok(5));
}

#[test]
fn a_used_index_moved_by_the_control_side_resets_the_interrupt_state() {
    let mem = memory(0x40_0000);
    let g = GuestDriver::new(&*mem, 16);
    let mut q = queue(&mem, &g, true);
    let mut vq = g.queue();
    vq.set_next_used(29);
    q.load_indexes(&vq);
    q.put_used(0, 0);
    q.publish_used();
    assert!(q.needs_interrupt(), "first decision, at used index 30");
    q.store_indexes(&mut vq);
    // The control side moves the used index (a reconnection set the ring up again), and the
    // guest's used_event is behind the last decision: only a fresh first decision interrupts.
    vq.set_next_used(35);
    g.set_used_event(20);
    q.load_indexes(&vq);
    assert_eq!(q.next_used, 35);
    q.put_used(0, 0);
    q.publish_used();
    assert!(q.needs_interrupt(), "the decision state from before the move was dropped");
}

#[test]
fn prefetchw_is_detected_as_the_kernel_sees_it() {
    // x86 only: other kernels list "Features", and has_prefetchw is false there.
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return };
    let Some(flags) = info.lines().find(|l| l.starts_with("flags")) else {
        assert!(!has_prefetchw());
        return;
    };
    let kernel = flags.split_whitespace().any(|f| f == "3dnowprefetch");
    assert_eq!(has_prefetchw(), kernel, "CPUID and /proc/cpuinfo disagree");
}

#[test]
fn prefetch_looks_at_most_a_burst_ahead_and_around_the_ring() {
    let mem = memory(0x40_0000);
    let mut g = GuestDriver::new(&*mem, 256);
    for i in 0..256u16 {
        g.write_desc(i, (0x1_0000 + 2048 * i as u64, 2048, F_WRITE, 0));
    }
    // The device starts near the end of the rings, so the look-ahead wraps in both.
    let mut q = SplitQueue::new(GuestMap::new(Arc::clone(&mem)), g.layout(false), 250, 250).unwrap();
    g.publish_heads(&[0; 250]);
    let heads: Vec<u16> = (0..200).collect();
    g.publish_heads(&heads);
    q.prefetch(u16::MAX, true);
    q.prefetch(200, false);
    assert_eq!((q.next_avail, q.next_used), (250, 250), "prefetching takes and fills nothing");
    assert_eq!(q.pending(), Ok(200));
}

//! Cache hints for the hot path.

/// Asks the CPU to start loading the cache line holding `p` (a read hint; nothing on other
/// architectures than x86-64). A hint only: any address, valid or not, is fine.
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; it only hints the cache.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefetch_of_any_address_changes_nothing() {
        let v = [7u8; 128];
        for p in [v.as_ptr(), v.as_ptr().wrapping_add(64), std::ptr::null(), usize::MAX as *const u8] {
            prefetch(p);
        }
        assert!(v.iter().all(|&b| b == 7));
    }
}

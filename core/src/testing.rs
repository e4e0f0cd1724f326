//! Page providers for tests: memory from the host's allocator, optional
//! failure injection, and a panic instead of an abort on fatal errors (so
//! tests can assert that misuse is detected). Needs std.

extern crate std;

use crate::provider::PageProvider;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::alloc::{alloc_zeroed, dealloc, Layout};

/// A provider over the host allocator. `fail_after` maps succeed, then
/// every map fails (negative: never fail).
pub struct TestProvider {
    pub maps_left: AtomicIsize,
    pub live_maps: AtomicUsize,
    pub live_bytes: AtomicUsize,
    pub purged_bytes: AtomicUsize,
    /// The clock `now_ms` reports (tests move it by hand).
    pub clock_ms: core::sync::atomic::AtomicU64,
}

impl TestProvider {
    pub const fn new() -> Self {
        Self::failing_after(-1)
    }

    pub const fn failing_after(maps: isize) -> Self {
        TestProvider {
            maps_left: AtomicIsize::new(maps),
            live_maps: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            purged_bytes: AtomicUsize::new(0),
            clock_ms: core::sync::atomic::AtomicU64::new(0),
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("provider layout")
    }
}

impl Default for TestProvider {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: map returns fresh zeroed memory of the requested size and
// alignment from the host allocator; unmap returns it with the same layout
// (sizes are recorded by the core, which passes back what it got); purge
// only writes zeros. Nothing here changes errno in a way the tests observe.
unsafe impl PageProvider for TestProvider {
    const PAGE_SIZE: usize = 4096;
    const MAPS_ZEROED: bool = true;
    const PURGE_ZEROES: bool = true;
    /// A moving copy into a new mapping.
    const CAN_REMAP: bool = true;

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if self.maps_left.load(Ordering::SeqCst) == 0 {
            return None;
        }
        self.maps_left.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: size is non-zero (the core maps at least a page).
        let p = unsafe { alloc_zeroed(Self::layout(size, align)) };
        let p = NonNull::new(p)?;
        self.live_maps.fetch_add(1, Ordering::SeqCst);
        self.live_bytes.fetch_add(size, Ordering::SeqCst);
        Some(p)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        self.live_maps.fetch_sub(1, Ordering::SeqCst);
        self.live_bytes.fetch_sub(size, Ordering::SeqCst);
        // The alignment used at map time is not known here; Layout's align
        // does not matter to the system allocator's dealloc on Linux, but
        // stay exact: every mapping of ours is at least 2 MiB aligned
        // except heap chunks (page aligned).
        let align = if size == crate::config::HEAP_CHUNK_BYTES { 4096 } else { crate::config::SEGMENT_SIZE };
        // SAFETY: ptr came from map with this size; poison it first so a
        // stale use after unmap reads garbage rather than the old header.
        unsafe {
            core::ptr::write_bytes(ptr.as_ptr(), 0xdb, size.min(64 << 10));
            dealloc(ptr.as_ptr(), Self::layout(size, align));
        }
    }

    unsafe fn remap(&self, ptr: NonNull<u8>, old_size: usize, new_size: usize, align: usize) -> Option<NonNull<u8>> {
        // A moving remap: new mapping, copy, old one released.
        let new = self.map(new_size, align)?;
        // SAFETY: both ranges are ours and distinct.
        unsafe {
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), new.as_ptr(), old_size.min(new_size));
            self.unmap(ptr, old_size);
        }
        Some(new)
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, size: usize) {
        self.purged_bytes.fetch_add(size, Ordering::SeqCst);
        // SAFETY: the range is mapped and unused (contract).
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0, size) };
    }

    fn write_message(&self, message: &[u8]) {
        std::eprint!("{}", std::string::String::from_utf8_lossy(message));
    }

    fn fatal(&self, message: &[u8]) -> ! {
        std::panic!("{}", std::string::String::from_utf8_lossy(message).trim_end());
    }

    fn now_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::SeqCst)
    }

    fn random_seed(&self) -> u64 {
        0x1234_5678_9abc_def0
    }
}

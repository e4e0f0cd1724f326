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
    /// Maps refused so far (a null from the core is allowed only after one).
    pub refused: AtomicUsize,
    pub live_maps: AtomicUsize,
    pub live_bytes: AtomicUsize,
    pub purged_bytes: AtomicUsize,
    /// The clock `now_ms` reports (tests move it by hand).
    pub clock_ms: core::sync::atomic::AtomicU64,
    /// Host allocations behind the mappings: (start, size, align, bytes
    /// still mapped), so that subranges can be unmapped (`CAN_SPLIT`).
    allocations: std::sync::Mutex<std::vec::Vec<(usize, usize, usize, usize)>>,
}

impl TestProvider {
    pub const fn new() -> Self {
        Self::failing_after(-1)
    }

    pub const fn failing_after(maps: isize) -> Self {
        TestProvider {
            maps_left: AtomicIsize::new(maps),
            refused: AtomicUsize::new(0),
            live_maps: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            purged_bytes: AtomicUsize::new(0),
            clock_ms: core::sync::atomic::AtomicU64::new(0),
            allocations: std::sync::Mutex::new(std::vec::Vec::new()),
        }
    }

    /// From now on, `maps` more maps succeed, then every map fails.
    pub fn fail_after(&self, maps: isize) {
        self.maps_left.store(maps, Ordering::SeqCst);
    }

    /// Every map succeeds again.
    pub fn recover(&self) {
        self.maps_left.store(-1, Ordering::SeqCst);
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
// alignment from the host allocator; unmap poisons the range and returns
// the host allocation, with its own layout, once every byte of it was
// unmapped (subranges are allowed: CAN_SPLIT); purge only writes zeros.
// Nothing here changes errno in a way the tests observe.
unsafe impl PageProvider for TestProvider {
    const PAGE_SIZE: usize = 4096;
    const MAPS_ZEROED: bool = true;
    const PURGE_ZEROES: bool = true;
    /// A moving copy into a new mapping.
    const CAN_REMAP: bool = true;
    /// Host allocations are returned when all their pieces are unmapped.
    const CAN_SPLIT: bool = true;

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // Take one map from the allowance (negative: unlimited), or refuse.
        let mut left = self.maps_left.load(Ordering::SeqCst);
        while left != 0 {
            match self.maps_left.compare_exchange_weak(left, left - 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => left = now,
            }
        }
        if left == 0 {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        // SAFETY: size is non-zero (the core maps at least a page).
        let p = unsafe { alloc_zeroed(Self::layout(size, align)) };
        let p = NonNull::new(p)?;
        self.allocations.lock().unwrap().push((p.as_ptr() as usize, size, align, size));
        self.live_maps.fetch_add(1, Ordering::SeqCst);
        self.live_bytes.fetch_add(size, Ordering::SeqCst);
        Some(p)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        let start = ptr.as_ptr() as usize;
        let mut allocations = self.allocations.lock().unwrap();
        let index = allocations
            .iter()
            .position(|&(base, len, _, _)| start >= base && start + size <= base + len)
            .expect("unmap of a range the provider never mapped");
        self.live_bytes.fetch_sub(size, Ordering::SeqCst);
        // SAFETY: the range is mapped (found above) and no longer used:
        // poison it so a stale use after unmap reads garbage, not the old header.
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), 0xdb, size.min(64 << 10)) };
        let entry = &mut allocations[index];
        entry.3 = entry.3.checked_sub(size).expect("a range unmapped twice");
        if entry.3 == 0 {
            let (base, len, align, _) = allocations.swap_remove(index);
            self.live_maps.fetch_sub(1, Ordering::SeqCst);
            // SAFETY: every byte of the host allocation was unmapped.
            unsafe { dealloc(base as *mut u8, Self::layout(len, align)) };
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

    /// The calling thread's stack as set by [`set_test_stack`].
    fn backtrace(&self, frames: &mut [usize], _skip: usize) -> usize {
        TEST_STACK.with(|stack| {
            let stack = stack.borrow();
            let n = stack.len().min(frames.len());
            frames[..n].copy_from_slice(&stack[..n]);
            n
        })
    }
}

std::thread_local! {
    static TEST_STACK: core::cell::RefCell<std::vec::Vec<usize>> = const { core::cell::RefCell::new(std::vec::Vec::new()) };
}

/// Make `frames` (innermost first) the stack [`TestProvider`] reports for
/// the calling thread's allocations.
pub fn set_test_stack(frames: &[usize]) {
    TEST_STACK.with(|stack| *stack.borrow_mut() = frames.to_vec());
}

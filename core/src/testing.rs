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
    /// Bytes moved between mappings (`move_pages`).
    pub moved_bytes: AtomicUsize,
    /// Set: `move_pages` fails (moving nothing).
    pub fail_moves: core::sync::atomic::AtomicBool,
    /// The clock `now_ms` reports (tests move it by hand).
    pub clock_ms: core::sync::atomic::AtomicU64,
    /// What `resident_pages` answers: `usize::MAX` unknown (the default),
    /// else that many pages (at most the range's).
    pub resident_answer: AtomicUsize,
    /// Host allocations behind the mappings: (start, size, align, bytes
    /// still mapped), so that subranges can be unmapped (`CAN_SPLIT`).
    allocations: std::sync::Mutex<std::vec::Vec<(usize, usize, usize, usize)>>,
    /// Guarded ranges (start, end): `protect` fills them with `GUARD_FILL`
    /// instead of making them inaccessible, and `unmap` panics when the
    /// fill was written over (the allocator touched a guard).
    guards: std::sync::Mutex<std::vec::Vec<(usize, usize)>>,
}

/// What a guarded range of the test provider holds.
const GUARD_FILL: u8 = 0x6b;

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
            moved_bytes: AtomicUsize::new(0),
            fail_moves: core::sync::atomic::AtomicBool::new(false),
            clock_ms: core::sync::atomic::AtomicU64::new(0),
            resident_answer: AtomicUsize::new(usize::MAX),
            allocations: std::sync::Mutex::new(std::vec::Vec::new()),
            guards: std::sync::Mutex::new(std::vec::Vec::new()),
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

    /// Whether any byte of `start..end` lies in a guarded range.
    pub fn guarded(&self, start: usize, end: usize) -> bool {
        self.guards.lock().unwrap().iter().any(|&(s, e)| s < end.max(start + 1) && start < e)
    }

    /// Guarded ranges in place.
    pub fn guard_count(&self) -> usize {
        self.guards.lock().unwrap().len()
    }

    /// Forget the guards inside `start..end` (unmapped or made accessible),
    /// checking that nothing wrote into them.
    fn drop_guards(&self, start: usize, end: usize) {
        self.guards.lock().unwrap().retain(|&(s, e)| {
            if s < start || e > end {
                return true;
            }
            // SAFETY: a guarded range is mapped until it is unmapped (now).
            let bytes = unsafe { core::slice::from_raw_parts(s as *const u8, e - s) };
            // Compared a page at a time (memcmp: quick under Miri too).
            const FILL: [u8; 4096] = [GUARD_FILL; 4096];
            if let Some(chunk) = bytes.chunks(FILL.len()).position(|chunk| chunk != &FILL[..chunk.len()]) {
                std::panic!("guard page written at {:#x} (guard {s:#x}..{e:#x})", s + chunk * FILL.len());
            }
            false
        });
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
    /// A copy, then the source unmapped.
    const CAN_MOVE: bool = true;
    /// Guards are filled and checked at unmap (see `guards`).
    const CAN_PROTECT: bool = true;

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
        self.drop_guards(start, start + size);
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

    unsafe fn resident_pages(&self, ptr: NonNull<u8>, size: usize) -> Option<usize> {
        let _ = ptr;
        let answer = self.resident_answer.load(Ordering::SeqCst);
        (answer != usize::MAX).then(|| answer.min(size / Self::PAGE_SIZE))
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, size: usize) {
        self.purged_bytes.fetch_add(size, Ordering::SeqCst);
        // Zeros, except over guards (a real guard reads as nothing at all).
        let (start, end) = (ptr.as_ptr() as usize, ptr.as_ptr() as usize + size);
        let mut guards: std::vec::Vec<_> = self.guards.lock().unwrap().iter().copied().filter(|&(s, e)| s < end && start < e).collect();
        guards.sort_unstable();
        let mut at = start;
        for (s, e) in guards.into_iter().chain([(end, end)]) {
            if s > at {
                // SAFETY: the range is mapped and unused (contract).
                unsafe { core::ptr::write_bytes(at as *mut u8, 0, s - at) };
            }
            at = at.max(e);
        }
    }

    unsafe fn move_pages(&self, from: NonNull<u8>, size: usize, to: NonNull<u8>) -> bool {
        if self.fail_moves.load(Ordering::SeqCst) {
            return false;
        }
        self.moved_bytes.fetch_add(size, Ordering::SeqCst);
        // SAFETY: both ranges are mapped, distinct and unused (contract).
        unsafe {
            core::ptr::copy_nonoverlapping(from.as_ptr(), to.as_ptr(), size);
            self.unmap(from, size);
        }
        true
    }

    unsafe fn protect(&self, ptr: NonNull<u8>, size: usize, accessible: bool) {
        let (start, end) = (ptr.as_ptr() as usize, ptr.as_ptr() as usize + size);
        if accessible {
            self.drop_guards(start, end);
            return;
        }
        assert!(!self.guarded(start, end), "{start:#x}..{end:#x} guarded twice");
        // SAFETY: the range is mapped and unused until unmapped (contract).
        unsafe { core::ptr::write_bytes(ptr.as_ptr(), GUARD_FILL, size) };
        self.guards.lock().unwrap().push((start, end));
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

/// [`TestProvider`] with none of the optional capabilities (no remap,
/// split, move or protect): what a minimal embedder's provider offers.
pub struct BasicProvider(pub TestProvider);

// SAFETY: forwards to TestProvider, whose mappings satisfy the contract;
// the capabilities it does not claim are never used.
unsafe impl PageProvider for BasicProvider {
    const PAGE_SIZE: usize = TestProvider::PAGE_SIZE;
    const MAPS_ZEROED: bool = TestProvider::MAPS_ZEROED;
    const PURGE_ZEROES: bool = TestProvider::PURGE_ZEROES;

    fn map(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        self.0.map(size, align)
    }

    unsafe fn unmap(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract.
        unsafe { self.0.unmap(ptr, size) }
    }

    unsafe fn purge(&self, ptr: NonNull<u8>, size: usize) {
        // SAFETY: per the contract.
        unsafe { self.0.purge(ptr, size) }
    }

    fn write_message(&self, message: &[u8]) {
        self.0.write_message(message);
    }

    fn fatal(&self, message: &[u8]) -> ! {
        self.0.fatal(message)
    }

    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }

    fn random_seed(&self) -> u64 {
        self.0.random_seed()
    }
}

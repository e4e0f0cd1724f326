//! Heaps behind locks: the bindings for kernels and other
//! single-address-space embedders that have no thread-local storage.
//!
//! [`LockedHeaps`] holds `N` heaps, each behind a spin lock; a call takes
//! the heap of the caller's CPU (or task) id, as the embedder's `cpu_id`
//! function says, so CPUs do not contend on one lock. A block freed on
//! another CPU than the one that allocated it goes to its owner through
//! the remote-free path (remote.rs), as between threads on Linux.
//!
//! - [`LockedHeap`]: one heap, one lock (`N = 1`).
//! - [`PerCpuHeaps`]: one heap per CPU id.
//!
//! Interrupt safety: an interrupt handler that allocates while the code it
//! interrupted holds the same heap's lock would spin forever. Embedders
//! whose handlers allocate give an [`Interrupts`] implementation; every
//! call then disables interrupts before it reads the CPU id and takes the
//! lock, and restores them after releasing it. The arena provider's lock
//! (arena.rs) is only taken inside these calls, so it is covered too.
//!
//! A wrong or stale CPU id (a task that migrates mid-call) costs only
//! contention: every heap is always used under its own lock.

use crate::global::Global;
use crate::heap::Heap;
use crate::provider::PageProvider;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

/// How the embedder keeps interrupts away from a heap while its lock is
/// held: `disable` masks them and returns the previous state, `restore`
/// puts it back (calls nest: `restore` must not enable interrupts that
/// were off before `disable`).
pub trait Interrupts: Sync {
    type Saved;
    fn disable(&self) -> Self::Saved;
    fn restore(&self, saved: Self::Saved);
}

/// For embedders whose interrupt handlers never allocate (and hosts).
pub struct NoInterrupts;

impl Interrupts for NoInterrupts {
    type Saved = ();
    #[inline(always)]
    fn disable(&self) {}
    #[inline(always)]
    fn restore(&self, _saved: ()) {}
}

struct HeapSlot<P: PageProvider + 'static>(*mut Heap<P>);
// SAFETY: the heap is only used under the slot's lock.
unsafe impl<P: PageProvider> Send for HeapSlot<P> {}

/// `N` spin-locked heaps, chosen by the caller's CPU id; a `GlobalAlloc`.
pub struct LockedHeaps<P: PageProvider + 'static, const N: usize, I: Interrupts> {
    global: &'static Global<P>,
    interrupts: I,
    cpu_id: fn() -> usize,
    slots: [spin::Mutex<HeapSlot<P>>; N],
}

/// One heap behind one spin lock.
pub type LockedHeap<P, I = NoInterrupts> = LockedHeaps<P, 1, I>;
/// One heap per CPU (or task) id, each behind its own lock.
pub type PerCpuHeaps<P, const N: usize, I = NoInterrupts> = LockedHeaps<P, N, I>;

fn only_cpu() -> usize {
    0
}

impl<P: PageProvider + 'static> LockedHeaps<P, 1, NoInterrupts> {
    /// One heap, for embedders whose interrupt handlers never allocate.
    pub const fn new(global: &'static Global<P>) -> Self {
        Self::with_interrupts(global, NoInterrupts)
    }
}

impl<P: PageProvider + 'static, I: Interrupts> LockedHeaps<P, 1, I> {
    /// One heap whose lock is taken with interrupts disabled by `interrupts`.
    pub const fn with_interrupts(global: &'static Global<P>, interrupts: I) -> Self {
        Self::per_cpu(global, interrupts, only_cpu)
    }
}

impl<P: PageProvider + 'static, const N: usize, I: Interrupts> LockedHeaps<P, N, I> {
    /// `N` heaps; `cpu_id` (called with interrupts disabled) gives the
    /// caller's CPU or task id, taken modulo `N`. It must not allocate.
    pub const fn per_cpu(global: &'static Global<P>, interrupts: I, cpu_id: fn() -> usize) -> Self {
        LockedHeaps { global, interrupts, cpu_id, slots: [const { spin::Mutex::new(HeapSlot(null_mut())) }; N] }
    }

    /// Run `f` with the caller's heap locked, creating the heap on first
    /// use (`None`: out of memory for it).
    pub fn with_heap<R>(&self, f: impl FnOnce(Option<&mut Heap<P>>) -> R) -> R {
        self.with_slot(|slot| {
            if slot.0.is_null() {
                slot.0 = self.global.heap_acquire();
            }
            // SAFETY: the heap is live and the lock makes us its only user.
            f(unsafe { slot.0.as_mut() })
        })
    }

    /// Run `f` on the caller's slot, locked, with interrupts disabled
    /// (the CPU id is read with them disabled too).
    #[inline(always)]
    fn with_slot<R>(&self, f: impl FnOnce(&mut HeapSlot<P>) -> R) -> R {
        // One heap: no id to ask for (the call through the pointer was a
        // noticeable share of a locked call's instructions under callgrind).
        self.masked(|| f(&mut self.slots[if N == 1 { 0 } else { (self.cpu_id)() % N }].lock()))
    }

    /// Run `f` with interrupts disabled.
    #[inline(always)]
    fn masked<R>(&self, f: impl FnOnce() -> R) -> R {
        let saved = self.interrupts.disable();
        let result = f();
        self.interrupts.restore(saved);
        result
    }

    /// Give back what can be given back: every heap's empty pages, then
    /// the shared caches. True when something was released.
    pub fn trim(&self) -> bool {
        let mut released = 0;
        // With several heaps, the first pass hands each heap's gathered
        // remote frees to their owners; the second collects them there.
        let passes = if N > 1 { 2 } else { 1 };
        for slot in self.slots.iter().cycle().take(passes * N) {
            self.masked(|| {
                let slot = slot.lock();
                let heap = slot.0;
                if !heap.is_null() {
                    // SAFETY: the lock (held until the end of this closure)
                    // makes us the heap's only user.
                    released += unsafe { (*heap).trim() };
                }
            });
        }
        // Then the shared caches, once, with what the heaps gave back.
        // SAFETY: a null heap: only the shared parts are trimmed.
        let shared = self.masked(|| unsafe { self.global.trim(null_mut()) });
        released > 0 || shared
    }

    pub fn global(&self) -> &'static Global<P> {
        self.global
    }
}

// SAFETY: alloc returns blocks of at least layout.size() bytes aligned to
// layout.align() or null; dealloc takes blocks from alloc; each heap is
// only used under its lock, and a block of another heap goes to its owner
// through the lock-free remote-free path.
unsafe impl<P: PageProvider + 'static, const N: usize, I: Interrupts> GlobalAlloc for LockedHeaps<P, N, I> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|heap| heap.map_or(null_mut(), |heap| heap.malloc_aligned(layout.size(), layout.align())))
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|heap| heap.map_or(null_mut(), |heap| heap.calloc_aligned(layout.size(), layout.align())))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: ptr came from alloc; the slot's heap (null when this CPU
        // never allocated: the block goes to its owner) is ours under the lock.
        self.with_slot(|slot| unsafe { self.global.free(ptr, slot.0) })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.with_heap(|heap| match heap {
            // SAFETY: ptr is a live block of layout.size() bytes (GlobalAlloc contract).
            Some(heap) => unsafe { heap.realloc_aligned(ptr, layout.size(), new_size, layout.align()) },
            None => null_mut(),
        })
    }
}

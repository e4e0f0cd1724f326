//! One heap behind a spin lock: the binding for kernels and other
//! single-address-space embedders that have no thread-local storage.
//!
//! Every allocation and free takes the lock, so every block is "local" to
//! the one heap. An embedder that must mask interrupts around the heap
//! wraps [`Heap`] in its own lock instead; this type is the convenient
//! default.

use crate::global::Global;
use crate::heap::Heap;
use crate::provider::PageProvider;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::null_mut;

struct HeapSlot<P: PageProvider + 'static>(*mut Heap<P>);
// SAFETY: the heap is only used under the lock.
unsafe impl<P: PageProvider> Send for HeapSlot<P> {}

/// A `GlobalAlloc` over one spin-locked heap.
pub struct LockedHeap<P: PageProvider + 'static> {
    global: &'static Global<P>,
    heap: spin::Mutex<HeapSlot<P>>,
}

impl<P: PageProvider + 'static> LockedHeap<P> {
    pub const fn new(global: &'static Global<P>) -> Self {
        LockedHeap { global, heap: spin::Mutex::new(HeapSlot(null_mut())) }
    }

    /// Run `f` with the heap locked (creating it on first use).
    pub fn with_heap<R>(&self, f: impl FnOnce(Option<&mut Heap<P>>) -> R) -> R {
        let mut slot = self.heap.lock();
        if slot.0.is_null() {
            slot.0 = self.global.heap_acquire();
        }
        // SAFETY: the heap is live and the lock makes us its only user.
        f(unsafe { slot.0.as_mut() })
    }

    /// Give back what can be given back.
    pub fn trim(&self) -> bool {
        let slot = self.heap.lock();
        // SAFETY: the lock makes us the heap's only user.
        unsafe { self.global.trim(slot.0) }
    }

    pub fn global(&self) -> &'static Global<P> {
        self.global
    }
}

// SAFETY: alloc returns blocks of at least layout.size() bytes aligned to
// layout.align() or null; dealloc takes blocks from alloc; the lock
// serialises all heap access.
unsafe impl<P: PageProvider + 'static> GlobalAlloc for LockedHeap<P> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|heap| match heap {
            Some(heap) => heap.malloc_aligned(layout.size(), layout.align()),
            None => null_mut(),
        })
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|heap| match heap {
            Some(heap) => heap.calloc_aligned(layout.size(), layout.align()),
            None => null_mut(),
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        let slot = self.heap.lock();
        // SAFETY: ptr came from alloc; the heap (never null after an alloc)
        // is ours under the lock.
        unsafe { self.global.free(ptr, slot.0) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.with_heap(|heap| match heap {
            // SAFETY: ptr is a live block of layout.size() bytes (GlobalAlloc contract).
            Some(heap) => unsafe { heap.realloc_aligned(ptr, layout.size(), new_size, layout.align()) },
            None => null_mut(),
        })
    }
}

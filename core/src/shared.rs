//! What every heap draws from, and knows nothing of heaps: the counted
//! provider ([`Memory`]), the segment store and the huge blocks.
//!
//! ```text
//!  Shared<P>
//!  memory -----> provider (map / unmap / purge), counters, options, keys
//!  segments ---> empty segments (cache), abandoned segments   (segment_store.rs)
//!  huge -------> BigCache + release batch                     (huge.rs)
//! ```
//!
//! `Global` (global.rs) wraps this with the heap pool; a `Heap` holds a
//! `&'static Shared`, so heap code never reaches back into `Global`.
//! Lock order: segments (abandoned -> cache) -> huge.

use crate::huge::HugeBlocks;
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::{segment_is_known, Segment};
use crate::segment_store::SegmentStore;

/// The process-wide state that heaps use.
pub struct Shared<P: PageProvider> {
    pub memory: Memory<P>,
    pub segments: SegmentStore,
    pub huge: HugeBlocks,
}

impl<P: PageProvider> Shared<P> {
    pub const fn new(provider: P) -> Self {
        Shared { memory: Memory::new(provider), segments: SegmentStore::new(), huge: HugeBlocks::new() }
    }

    /// Usable bytes of the block at `ptr` (0 for null); aborts on a pointer
    /// hakmem did not return.
    ///
    /// # Safety
    /// `ptr` is null or a live block from this allocator.
    pub unsafe fn usable_size(&self, ptr: *const u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        let segment = Segment::of_ptr(ptr);
        // SAFETY: `holds` reads the header only once the map says it is mapped.
        if !segment_is_known(segment) || !unsafe { Segment::holds(segment, ptr) } {
            self.memory.fatal_at("malloc_usable_size(): invalid pointer ", ptr as usize);
        }
        // SAFETY: the segment map says the header is mapped; ptr is live.
        unsafe { Segment::usable_size(segment, ptr) }
    }

    /// Give the provider back what the shared caches hold (empty segments,
    /// freed huge mappings). Called by `trim`, and when a mapping failed:
    /// in a fixed arena the caches may hold the memory a request needs.
    /// Returns bytes released.
    pub fn release_caches(&self) -> usize {
        self.segments.release_cached(&self.memory) + self.huge.trim(&self.memory)
    }

    /// Take every lock, in the lock order (before `fork`).
    pub fn lock_all(&self) {
        self.segments.lock_all();
        self.huge.lock_all();
        crate::segment::census_lock_for_fork();
    }

    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: per the contract.
        unsafe {
            crate::segment::census_unlock_after_fork();
            self.huge.unlock_all();
            self.segments.unlock_all();
        }
    }
}

//! The heap profiler's side of malloc: which allocations are sampled, and
//! recording them (the records themselves are in `profile.rs`).
//!
//! ```text
//!  profiler off: malloc_slow pays one test (Profile::is_on); nothing else changes
//!  profiler on:  set_current installs EMPTY_PAGE (and the block cache is
//!                emptied and turned off), so every malloc takes
//!                malloc_slow, which counts its bytes (Sampler::count);
//!                a sampled block: stack from the provider, Profile::record,
//!                its page gets PAGE_SAMPLED (its frees take the slow path,
//!                where checked_block forgets the sample)
//!  huge blocks:  sampled in huge_alloc, forgotten in HugeBlocks::free
//! ```
//!
//! The stack is taken after the block is allocated and before it is
//! returned, with the heap's state complete: should the provider's
//! unwinder allocate, that nested malloc finds a consistent heap, and
//! `Sampler::busy` keeps it from being sampled in turn.

use crate::heap::{empty_page, Heap};
use crate::page::PAGE_SAMPLED;
use crate::profile::MAX_FRAMES;
use crate::provider::PageProvider;
use crate::segment::Segment;

impl<P: PageProvider + 'static> Heap<P> {
    /// A block of a size class just allocated while profiling: count it,
    /// sample it if its turn has come, and return it.
    #[cold]
    #[inline(never)]
    pub(crate) fn sample_paged(&mut self, block: *mut u8, size: usize) -> *mut u8 {
        if !self.sampler.profiling {
            // From now on the fast paths find no page: every malloc comes here.
            self.sampler.profiling = true;
            for class in 0..crate::class::CLASS_COUNT {
                self.set_current(class, empty_page());
            }
            self.block_cache.turn_off();
            self.flush_block_cache();
        }
        // The stack starts at malloc_slow's caller: this frame and
        // malloc_slow's are left out.
        if !block.is_null() && self.take_sample(block, size, 2) {
            // SAFETY: the block was just allocated from a page of this heap.
            unsafe { (*Segment::page_of_block(block)).set_flags(PAGE_SAMPLED) };
        }
        block
    }

    /// A huge block just allocated: sample it if profiling and its turn
    /// has come, leaving the `skip` innermost frames of the caller's out
    /// of its stack.
    #[inline(always)]
    pub(crate) fn sample_huge(&mut self, block: *mut u8, size: usize, skip: usize) {
        if self.shared.memory.profile.is_on() {
            self.take_sample(block, size, skip);
        }
    }

    /// Count `size` bytes toward the next sample; when this block is the
    /// sample, record it with its stack, which leaves out this frame and
    /// the `skip` frames above it (the allocator's; each caller keeps its
    /// frame, not calling this in tail position). True when recorded.
    #[inline(never)]
    fn take_sample(&mut self, block: *mut u8, size: usize, skip: usize) -> bool {
        let profile = &self.shared.memory.profile;
        if !self.sampler.count(size, profile.mean()) || self.sampler.busy {
            return false;
        }
        self.sampler.busy = true;
        let mut frames = [0usize; MAX_FRAMES];
        let depth = self.shared.memory.provider().backtrace(&mut frames, 1 + skip);
        self.sampler.busy = false;
        profile.record(block as usize, size, &frames[..depth.min(MAX_FRAMES)])
    }
}

//! Free blocks of pages in use give their memory back.
//!
//! A page is purged only once all its blocks are free (purge.rs): one live
//! block kept the others' memory resident however long they stayed free (a
//! program that freed nine in ten of its 200 KiB buffers kept most of their
//! memory). So the owner sweeps the local free lists of its pages whose
//! blocks span at least `MIN_OS_PAGES` OS pages (the larger mid classes
//! and every large one), at most once a period (the purge delay, at least
//! `LARGE_SWEEP_MIN_MS`), and purges each block that was already free at
//! the sweep before: a block free for two periods at most, one at least (a
//! sweep runs only on the owner's slow paths: later if it calls seldom).
//! Purged are its whole OS pages after the first one (which holds the list
//! link and the double-free marker); a block taken again faults them back
//! as the program touches them.
//!
//! ```text
//!  sweep (large mallocs, purge checks on slow paths; trim: all now)
//!    page whose list is as the last sweep left it, all purged -> skipped
//!    free block, word 2 == seen(previous sweep) -> purge it, word 2 = purged
//!    free block, word 2 == purged              -> nothing
//!    any other free block                      -> word 2 = seen(this sweep)
//!  a block popped by a slow path (page_pop): word 2 = 0 (seen anew once freed)
//! ```
//!
//! Invariants: only blocks on the local free list of a page of this heap
//! are read, marked or purged (the owner's alone: no other thread touches a
//! free block there), and of each only whole OS pages after its first and
//! before its end. A list a write after free corrupted is walked up to the
//! bad link only (`Page::for_each_free` takes carved blocks of the page).
//! Word 2 of a free block is the allocator's, as its first two are. The
//! marks are keyed by the block's address and the process's marker key: a
//! block the program wrote anything into is seen anew, and a mark it
//! happened to write (key-dependent) only makes a block purged a period
//! early or not at all (memory or time, never a wrong result: a free
//! block's bytes are nobody's). A block leaves a page's list only through
//! `page_pop` (mid blocks come back from the block cache to the program,
//! and go to their page's list from it). Strict and sampled pages (any
//! flag) are left alone (strict mode checks its freed blocks' poison). Mid
//! blocks in the block cache are not on their page's list: not swept.
//! The idle purger, on another thread, does not sweep; nor does a heap
//! whose provider's purge gives nothing back (`PURGE_RELEASES`: an arena).

use crate::class::{class_of, class_size, SegmentKind, CLASS_COUNT};
use crate::config::LARGE_SWEEP_MIN_MS;
use crate::heap::Heap;
use crate::page::{Block, Page};
use crate::provider::PageProvider;
use crate::segment::Segment;
use core::sync::atomic::Ordering;

/// Blocks of at least this many OS pages are swept: a block of four has
/// two or three to give back, besides its first.
const MIN_OS_PAGES: usize = 4;

/// Large mallocs between two looks at the clock on their path.
const MALLOCS_PER_CHECK: u8 = 16;

/// A heap's sweeps of its free blocks.
pub(crate) struct BlockSweeps {
    /// Sweeps made (the marks' generation; the first sweep is 1).
    count: usize,
    /// When the last one ran (ms of the provider's clock).
    at_ms: u64,
    /// Large mallocs until the next look at the clock.
    countdown: u8,
}

impl BlockSweeps {
    pub(crate) const fn new() -> Self {
        BlockSweeps { count: 0, at_ms: 0, countdown: 0 }
    }
}

/// The first class whose blocks are swept, for OS pages of `os_page` bytes.
const fn first_swept_class(os_page: usize) -> usize {
    class_of(MIN_OS_PAGES * os_page)
}

/// The word a sweep marks a free block in.
///
/// # Safety
/// `block` is a block of a swept class (far more than three words).
unsafe fn mark_word(block: *mut Block) -> *mut usize {
    // SAFETY: per the contract.
    unsafe { (block as *mut usize).add(2) }
}

/// A block left its page's list on a slow path (`page_pop`): it will be
/// seen anew once freed again.
///
/// # Safety
/// `block` was just popped from a page of `block_size`-byte blocks.
#[inline]
pub(crate) unsafe fn forget_mark<P: PageProvider>(block: *mut u8, block_size: usize) {
    if block_size >= class_size(first_swept_class(P::PAGE_SIZE)) {
        // SAFETY: per the contract: a block of a swept class, ours now.
        unsafe { *mark_word(block as *mut Block) = 0 };
    }
}

impl<P: PageProvider + 'static> Heap<P> {
    /// On a large malloc's path: sweep now and then (`sweep_free_blocks`).
    #[inline]
    pub(crate) fn large_malloc_sweep(&mut self) {
        match self.block_sweeps.countdown.checked_sub(1) {
            Some(left) => self.block_sweeps.countdown = left,
            None => {
                self.block_sweeps.countdown = MALLOCS_PER_CHECK - 1;
                self.sweep_free_blocks(false);
            }
        }
    }

    /// Sweep this heap's free blocks of the swept classes if a period has
    /// passed since the last sweep (`all`: now, and purge every such free
    /// block, as trim does). Returns bytes purged.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn sweep_free_blocks(&mut self, all: bool) -> usize {
        // Nothing to sweep, or to give the pages to (an arena's).
        let paged = |kind: SegmentKind| !self.segments[kind as usize].is_empty();
        if !P::PURGE_RELEASES || !(paged(SegmentKind::Medium) || paged(SegmentKind::Large)) {
            return 0;
        }
        let memory = &self.shared.memory;
        let now = memory.now_ms();
        let period = (memory.purge_delay_ms() as u64).max(LARGE_SWEEP_MIN_MS);
        // Without a clock (now == 0) only trim sweeps.
        if !all && (now == 0 || now < self.block_sweeps.at_ms.saturating_add(period)) {
            return 0;
        }
        self.block_sweeps.at_ms = now;
        self.block_sweeps.count += 1;
        let mut purged = 0;
        for class in first_swept_class(P::PAGE_SIZE)..CLASS_COUNT {
            let mut page = self.queues[class].first;
            while !page.is_null() {
                // SAFETY: pages in our queues are live pages of our segments.
                unsafe {
                    if (*page).flags.load(Ordering::Relaxed) == 0 {
                        purged += self.sweep_page(page, all);
                    }
                    page = (*page).next.get();
                }
            }
        }
        purged
    }

    /// One page of a sweep. Returns bytes purged.
    ///
    /// # Safety
    /// `page` is a live page of a swept class in one of our queues, with no
    /// flag set.
    unsafe fn sweep_page(&mut self, page: *mut Page, all: bool) -> usize {
        let memory = &self.shared.memory;
        let os_page = P::PAGE_SIZE;
        let key = self.marker_key.rotate_left(29);
        let (seen_now, seen_before) = (self.block_sweeps.count << 1, (self.block_sweeps.count - 1) << 1);
        let mut purged = 0;
        // SAFETY: per the contract: its local list holds free blocks that
        // only we touch.
        unsafe {
            let segment = Segment::of_ptr(page as *const u8);
            let swept = &mut (*segment).swept_free[Segment::page_index(segment, page)];
            let first = (*page).free.get() as usize;
            if *swept == first && !all {
                return 0;
            }
            let block_size = (*page).block_size as usize;
            let mut all_purged = true;
            (*page).for_each_free(self.list_key, |block| {
                let mark = mark_word(block);
                let base = block as usize ^ key;
                match *mark ^ base {
                    1 => {}
                    state if state == seen_before || all => {
                        let start = (block as usize + os_page) & !(os_page - 1);
                        let end = (block as usize + block_size) & !(os_page - 1);
                        if end > start {
                            memory.purge(start, end - start);
                            purged += end - start;
                        }
                        *mark = base ^ 1;
                    }
                    _ => {
                        *mark = base ^ seen_now;
                        all_purged = false;
                    }
                }
            });
            *swept = if all_purged { first } else { 0 };
        }
        purged
    }
}

//! free, from the entry to the block push, with the one validation every
//! free of a paged block goes through.
//!
//! ```text
//!  free(ptr) --- null: nothing
//!     | a segment the heap remembers (local_segments): skip the two checks below
//!     | segment not in the segment map: abort
//!     | segment owner == this heap
//!  Heap::free_local --- one combined test passes: push on the page's free list
//!     | anything else (misuse, aligned blocks, full pages)
//!  free_local_slow ---- checked_block (abort on misuse) -> Heap::return_block
//!
//!  owner is another heap, abandoned, or huge
//!  free_foreign ------- huge: HugeBlocks::free (its own checks)
//!                       else checked_block -> gathered per page (PendingFrees),
//!                       handed over in one push (remote.rs)
//! ```
//!
//! Misuse ends with one line naming the problem and the address: a pointer
//! hakmem never returned (or whose page is unused), a pointer inside a
//! block, a block already free (its marker, see page.rs).

use crate::block_cache::BlockCache;
use crate::config::SMALL_MAX;
use crate::heap::{Heap, Remembered};
use crate::memory::Memory;
use crate::page::{Block, Page, PAGE_ALIGNED, PAGE_SAMPLED, PAGE_STRICT, PAGE_UNUSED};
use crate::provider::PageProvider;
use crate::remote::push_foreign;
use crate::segment::{segment_is_known, Segment, ABANDONED_OWNER, HUGE_OWNER};
use crate::shared::Shared;
use core::sync::atomic::Ordering;

const INVALID: &str = "free(): invalid pointer (not allocated by hakmem, or already freed) ";

/// Free `ptr` (null is ignored). `heap` is the calling thread's heap, or
/// null when it has none; `make_heap` is asked for one (on the cold path
/// only) when the block is another heap's and `heap` is null, so that the
/// thread's remote frees are gathered and counted in a heap of its own
/// (it may return null).
///
/// # Safety
/// `heap`, and what `make_heap` returns, is null or the calling thread's own
/// heap over `shared`. `ptr` is anything: a pointer hakmem did not return
/// (or returned and took back) is detected where the segment map allows,
/// and aborts.
#[inline(always)]
pub unsafe fn free<P: PageProvider>(
    shared: &'static Shared<P>,
    heap: *mut Heap<P>,
    ptr: *mut u8,
    make_heap: impl FnOnce() -> *mut Heap<P>,
) {
    // SAFETY: per the contract.
    unsafe {
        if !heap.is_null() && Heap::free_remembered(heap, ptr) {
            return;
        }
        free_unremembered(shared, heap, ptr, make_heap)
    }
}

/// [`free`] once [`Heap::free_remembered`] said no (or there is no heap).
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub unsafe fn free_unremembered<P: PageProvider>(
    shared: &'static Shared<P>,
    heap: *mut Heap<P>,
    ptr: *mut u8,
    make_heap: impl FnOnce() -> *mut Heap<P>,
) {
    if ptr.is_null() {
        return;
    }
    let segment = Segment::of_ptr(ptr);
    // SAFETY: `holds` reads the header only once the map says it is mapped.
    if !segment_is_known(segment) || !unsafe { Segment::holds(segment, ptr) } {
        shared.memory.fatal_at(INVALID, ptr as usize);
    }
    // SAFETY: the segment map says the header is mapped; an owner equal to
    // `heap` (never null) means `heap` owns the segment and its pages.
    unsafe {
        if (*segment).owner.load(Ordering::Relaxed) == heap as usize {
            (*heap).remember_local(segment);
            let page = Segment::page_of(segment, ptr);
            (*heap).free_local::<false>(page, ptr);
        } else {
            free_foreign(shared, heap, segment, ptr, make_heap);
        }
    }
}

impl<P: PageProvider + 'static> Heap<P> {
    /// Free `ptr` when it lies in a segment `this` heap remembers (then
    /// true); false, with nothing done, for every other pointer (null
    /// included: never remembered, see `NO_SEGMENT`). On an inert heap
    /// ([`Heap::inert`]) always false, and nothing is written.
    ///
    /// # Safety
    /// `this` is the calling thread's heap or an inert heap; `ptr` as for
    /// [`free`].
    #[inline(always)]
    pub unsafe fn free_remembered(this: *mut Self, ptr: *mut u8) -> bool {
        // SAFETY: a segment the heap remembers is mapped and owned by it
        // (the invariant of `local_segments`), so the segment map and the
        // owner need not be read; an inert heap remembers none, so only
        // the calling thread's own heap is borrowed mutably.
        unsafe {
            match (*this).remembered(ptr) {
                Remembered::Listed(page) => {
                    (*this).free_local::<false>(page, ptr);
                    true
                }
                // Mid blocks go to the block cache (block_cache.rs). Off the
                // small free's straight line (mid frees are fewer and slower
                // anyway: a diagnostic pair had `tiny-64` a few percent
                // faster, `mid-1t` level).
                Remembered::Mid(page) => {
                    cold_path();
                    (*this).free_local::<true>(page, ptr);
                    true
                }
                Remembered::No => false,
            }
        }
    }

    /// Free a block of a page this heap owns: onto the block cache when
    /// `MID` (a page of a medium segment), else onto the page's free list.
    /// Budget: one multiply for the block index and whether `ptr` starts a
    /// block, one combined test, four stores.
    ///
    /// # Safety
    /// `page` is the page covering `ptr` in a segment owned by this heap,
    /// a medium segment when `MID`.
    #[inline(always)]
    unsafe fn free_local<const MID: bool>(&mut self, page: *mut Page, ptr: *mut u8) {
        // SAFETY: per the contract; the block lies in the page's area.
        unsafe {
            let block = ptr as *mut Block;
            let marker = block as usize ^ self.marker_key;
            // checked_block's conditions, folded into one branch: a block
            // start, carved, of a page with no flag set (fast_capacity),
            // not marked free.
            if (*page).starts_fast_block(ptr) & ((*block).marker != marker) {
                (*block).marker = marker;
                crate::debug_count!(frees_local_fast);
                if MID {
                    // The page still counts a cached block in use: the
                    // heap counts the free.
                    self.count_free();
                    let index = BlockCache::index_of((*page).class());
                    if !self.block_cache.push(index, block) {
                        self.block_cache_overflow(index, block);
                    }
                    return;
                }
                // The page counts the free (`used`, see page.rs).
                (*page).push(block, self.list_key);
                if (*page).used() == 0 {
                    self.page_empty(page);
                }
                return;
            }
            self.free_local_slow(page, ptr);
        }
    }

    /// Every case the fast free path does not handle: misuse, aligned
    /// blocks, pages in the full queue.
    #[cold]
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    unsafe fn free_local_slow(&mut self, page: *mut Page, ptr: *mut u8) {
        // SAFETY: as for free_local.
        unsafe {
            let block = checked_block(&self.shared.memory, page, ptr, self.marker_key);
            self.count_free();
            crate::debug_count!(frees_local_slow);
            if (*page).flags.load(Ordering::Relaxed) & PAGE_STRICT != 0 {
                return self.quarantine(page, block);
            }
            self.return_block(page, block);
        }
    }
}

/// Free a block the calling thread's heap does not own: a huge block, or a
/// block of another thread's (or an abandoned) segment.
///
/// # Safety
/// As for [`free`]; `segment` is `ptr`'s mapped header.
#[cold]
#[inline(never)]
#[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
unsafe fn free_foreign<P: PageProvider>(
    shared: &'static Shared<P>,
    heap: *mut Heap<P>,
    segment: *mut Segment,
    ptr: *mut u8,
    make_heap: impl FnOnce() -> *mut Heap<P>,
) {
    let memory = &shared.memory;
    // SAFETY: per the contract.
    unsafe {
        let owner = (*segment).owner.load(Ordering::Acquire);
        if owner == HUGE_OWNER {
            crate::debug_count!(frees_huge);
            count_free(memory, heap, false);
            return shared.huge.free(memory, segment, ptr);
        }
        let heap = if heap.is_null() { make_heap() } else { heap };
        count_free(memory, heap, true);
        if owner == ABANDONED_OWNER {
            crate::debug_count!(frees_abandoned);
        }
        let page = Segment::page_of(segment, ptr);
        // The heap's copies of the keys: no call into their `Once`.
        let (list_key, marker_key) = if heap.is_null() { memory.keys() } else { ((*heap).list_key, (*heap).marker_key) };
        let block = checked_block(memory, page, ptr, marker_key);
        if !heap.is_null() && (*page).flags.load(Ordering::Relaxed) & PAGE_STRICT != 0 {
            return (*heap).quarantine(page, block);
        }
        // `heap` does not own the segment: `free_unremembered` saw another
        // owner, and a heap only takes segments on its own thread.
        release_foreign(heap, segment, page, block, list_key);
    }
}

/// Give a block that passed `checked_block` back: to its page when `heap`
/// owns the segment, else to the page's owner.
///
/// # Safety
/// `heap` is null or the calling thread's own heap; `block` is a block of
/// `page` in `segment`, checked and marked free, still counted in use.
pub(crate) unsafe fn release_checked<P: PageProvider>(
    shared: &'static Shared<P>,
    heap: *mut Heap<P>,
    segment: *mut Segment,
    page: *mut Page,
    block: *mut Block,
) {
    // SAFETY: per the contract.
    unsafe {
        if !heap.is_null() && (*segment).owner.load(Ordering::Relaxed) == heap as usize {
            return (*heap).return_block(page, block);
        }
        release_foreign(heap, segment, page, block, shared.memory.keys().0);
    }
}

/// Give a checked block of another heap's page (or an abandoned one's)
/// back to its owner: gathered per page in `heap`, or pushed at once.
///
/// # Safety
/// As for [`release_checked`]; `heap` does not own `segment`.
#[inline(always)]
unsafe fn release_foreign<P: PageProvider>(heap: *mut Heap<P>, segment: *mut Segment, page: *mut Page, block: *mut Block, list_key: usize) {
    // SAFETY: per the contract.
    unsafe {
        // Only small blocks are gathered: the blocks a thread holds back
        // from their owner stay below 64 KiB.
        if heap.is_null() || (*page).block_size as usize > SMALL_MAX {
            crate::debug_count!(frees_remote_pushed);
            push_foreign(segment, page, block, block, list_key);
        } else {
            crate::debug_count!(frees_remote_gathered);
            (*heap).pending.add(segment, page, block, list_key);
        }
    }
}

/// Count a free, and whether it frees another heap's block, in the calling
/// thread's heap, or globally without one.
///
/// # Safety
/// `heap` is null or the calling thread's own heap.
unsafe fn count_free<P: PageProvider>(memory: &Memory<P>, heap: *mut Heap<P>, cross_thread: bool) {
    // SAFETY: per the contract.
    unsafe {
        if heap.is_null() {
            memory.stats.free_calls.fetch_add(1, Ordering::Relaxed);
            if cross_thread {
                memory.stats.cross_thread_frees.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            (*heap).count_free();
            if cross_thread {
                (*heap).count_cross_thread_free();
            }
        }
    }
}

/// The validation of every free of a paged block: `ptr` is a carved block
/// start of a page in use (or inside a block of a page with aligned
/// blocks), and the block is not free already. Marks the block free and
/// returns it; aborts with one line naming the problem otherwise.
///
/// # Safety
/// `page` is the descriptor covering `ptr` in a mapped segment.
#[inline(always)]
unsafe fn checked_block<P: PageProvider>(memory: &Memory<P>, page: *mut Page, ptr: *mut u8, marker_key: usize) -> *mut Block {
    // SAFETY: per the contract; the block start lies in the page's area,
    // inside the mapped segment, so its marker word is readable.
    unsafe {
        let flags = (*page).flags.load(Ordering::Acquire);
        // A strict page's reports name the size class too.
        let fail = |what: &str| -> ! {
            if flags & PAGE_STRICT != 0 {
                memory.fatal_in_class(what, ptr as usize, (*page).block_size as usize)
            }
            memory.fatal_at(what, ptr as usize)
        };
        let block = Page::block_of(page, ptr);
        if flags & PAGE_UNUSED != 0 || !Page::block_is_carved(page, block) {
            fail(INVALID);
        }
        if block != ptr && flags & PAGE_ALIGNED == 0 {
            fail("free(): invalid pointer (inside a block) ");
        }
        let block = block as *mut Block;
        let marker = block as usize ^ marker_key;
        if (*block).marker == marker {
            fail("free(): double free of ");
        }
        if flags & (PAGE_SAMPLED | PAGE_STRICT) != 0 {
            if flags & PAGE_STRICT != 0 {
                // Before the marker overwrites a 16-byte block's tail.
                crate::strict::check_on_free(memory, block as *const u8, (*page).block_size as usize);
            }
            if flags & PAGE_SAMPLED != 0 {
                memory.profile.forget(block as usize);
            }
        }
        (*block).marker = marker;
        block
    }
}

/// Marks the branch that calls it unlikely: its blocks are laid out off
/// the straight line of the fast path (`core::hint::cold_path` from Rust
/// 1.95 on; a call to a cold function has the same effect on block
/// placement, and being empty and inline it leaves no code).
#[cold]
#[inline(always)]
fn cold_path() {}

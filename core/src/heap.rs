//! Thread heaps: the data structure, and the life cycle of its pages. The
//! paths that use it are in their own files: malloc in `alloc.rs`, free in
//! `free.rs`, thread exit, adoption and trim in `adopt.rs`.
//!
//! ```text
//!  Heap
//!  delayed (atomic) -> block -> block              remote frees into full pages (remote.rs)
//!  direct[slot] ----> current page of the class of small size slot*16 (fast path)
//!  current[class] --> current page of the class (or EMPTY_PAGE)
//!  queues[class] ---> page <-> page <-> page     pages that may have free blocks
//!  full           ---> page <-> page               pages with nothing free (DELAYED set)
//!  segments[kind] ---> seg <-> seg <-> seg         owned segments, those with unused pages first
//!  dirty             unused, unpurged page bytes and their deadline (purge.rs)
//!  block_sweeps      when its larger free blocks were last swept (block_purge.rs)
//!  pending           our frees of one foreign page, gathered (remote.rs)
//!  block_cache       free mid blocks kept for the next malloc of their class (block_cache.rs)
//! ```
//!
//! A heap is used by one thread at a time (its owner); only `delayed` and
//! the counters are touched by other threads, and `segments` and `dirty`
//! by the idle purger (`Heap::purge_idle`), under `pages_lock`, which the
//! owner holds whenever it changes them. Invariants:
//! - `current[c] == queues[c].first`, or `&EMPTY_PAGE` when the queue is
//!   empty or the heap is profiling (sampling.rs) or strict (strict.rs), and
//!   `direct[s] == current[c]` for every small size slot `s` of class `c`
//!   (`small_slots_of`).
//! - A page is in `queues[page.class]` iff its flags lack `PAGE_FULL`, in
//!   `full` iff they have it, and in neither only while being moved or freed.
//! - Every segment whose `owner` is this heap is in `segments[kind]`, and
//!   `owner` is the heap's address, which is also `delayed`'s (first field).
//! - each `local_segments` entry is `NO_SEGMENT` or one of those segments, tagged
//!   with its page shift.

use crate::block_cache::{self, BlockCache};
use crate::block_purge::BlockSweeps;
use crate::class::{class_size, kind_of_class, small_slots_of, CLASS_COUNT, PAGED_KINDS, SMALL_SLOTS};
use crate::config::{MEDIUM_PAGE_SHIFT, SEGMENT_MASK, SEGMENT_SHIFT, SMALL_MAX, SMALL_PAGE_SHIFT};
use crate::list::List;
use crate::page::{Block, Page, PAGE_FULL, PAGE_STRICT};
use crate::provider::PageProvider;
use crate::profile::Sampler;
use crate::purge::{DirtyPages, PurgeScope};
use crate::remote::{push_foreign, DelayedFrees, PendingFrees};
use crate::segment::Segment;
use crate::shared::Shared;
use crate::strict::Quarantine;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, Ordering};

/// A page that never has a free block: `current[c]` (and `direct`) point
/// here when class `c` has no page, so the fast path needs no null test.
/// In a cell, since the fast path's pop takes the page by `&mut` (and a
/// static's plain memory must not be reached through one).
struct EmptyPage(core::cell::UnsafeCell<Page>);
// SAFETY: EMPTY_PAGE is never written: its free list is null, so neither
// fast path nor slow path modifies it (slow paths only touch queued pages).
unsafe impl Sync for EmptyPage {}
static EMPTY_PAGE: EmptyPage = EmptyPage(core::cell::UnsafeCell::new(Page::UNUSED));

pub(crate) const fn empty_page() -> *mut Page {
    EMPTY_PAGE.0.get()
}

/// Heaps made so far: a part of each one's sampling seed.
static HEAPS_MADE: AtomicU64 = AtomicU64::new(0);

/// Segments a heap remembers for its local frees: 64 MiB of consecutive
/// segments without two in one slot.
pub(crate) const LOCAL_SEGMENTS: usize = 32;

/// A `local_segments` entry naming no segment: its high bits match no
/// pointer a program can hold (x86_64 and aarch64 user addresses are
/// below 2^48; 0 would match the pointers below 2 MiB, and a free of one,
/// which is misuse, must reach the checks of the segment map).
pub(crate) const NO_SEGMENT: usize = 1 << (usize::BITS - 1);

/// Set in the `local_segments` entry of a segment whose pages are larger
/// than small pages (medium, whose frees go to the block cache, and
/// large): a small segment's entry matches its pointers exactly, so the
/// small free tests one condition and finds its page with a constant
/// shift; the others match only once this bit is taken off, on the path
/// a small free never takes. Like `NO_SEGMENT`, above every pointer a
/// program can hold: a pointer that matched only through it would index
/// a page descriptor at a non-canonical address (it faults, it writes
/// nothing).
pub(crate) const LARGER_PAGES_TAG: usize = 1 << (usize::BITS - 2);

/// Where `local_segments` places a pointer: a block of a page with a free
/// list (small or large pages), a mid block (block cache), or not
/// remembered. The page is the descriptor of the page holding the pointer.
pub(crate) enum Remembered {
    Listed(*mut Page),
    Mid(*mut Page),
    No,
}

/// Slot in `local_segments` of the segment holding `address` (a segment
/// address or a block in it): the low bits of the segment number.
#[inline(always)]
pub(crate) fn local_slot(address: usize) -> usize {
    (address >> SEGMENT_SHIFT) % LOCAL_SEGMENTS
}

/// A thread heap. Obtain one with [`crate::Global::heap_acquire`].
#[repr(C)]
pub struct Heap<P: PageProvider + 'static> {
    /// Remote frees into full pages. First, so that the heap's address is
    /// the list's (see remote.rs), in a cache line of its own.
    pub(crate) delayed: DelayedFrees,
    /// The current page of the class of each small size (`small_slot`):
    /// the malloc fast path's one lookup.
    pub(crate) direct: [*mut Page; SMALL_SLOTS],
    /// The current page of each class: its queue's first page.
    pub(crate) current: [*mut Page; CLASS_COUNT],
    /// Segments local frees went to, by segment number (`local_slot`):
    /// each entry `NO_SEGMENT` or the address of a segment this heap owns (so it is
    /// mapped) with its `page_shift` in the low bits (and
    /// `LARGER_PAGES_TAG` for a medium or large one); cleared whenever the
    /// heap gives segments away (purge, abandon). A free whose segment is
    /// found here skips the segment map and the owner load, and finds its
    /// page without reading the segment header (all headers share one set
    /// of a set-associative cache: a heap with more segments than ways
    /// missed on it at every free). One indexed compare, not a "last
    /// segment" test first: frees spread over a few segments made that
    /// test mispredict on every other free.
    pub(crate) local_segments: [usize; LOCAL_SEGMENTS],
    /// For each `local_segments` entry, where the descriptor of the page
    /// holding `ptr` is found from `ptr` alone: at
    /// `local_pages[slot] + (ptr >> page_shift) * size_of::<Page>()` (the
    /// segment's first descriptor less `segment >> page_shift` of them), one
    /// shift and one add on the free path instead of the offset into the
    /// segment. (An array of its own: both loads keep simple addresses.)
    pub(crate) local_pages: [usize; LOCAL_SEGMENTS],
    pub(crate) list_key: usize,
    pub(crate) marker_key: usize,
    malloc_calls: AtomicU64,
    free_calls: AtomicU64,
    cross_thread_frees: AtomicU64,
    pub(crate) shared: &'static Shared<P>,
    pub(crate) queues: [List<Page>; CLASS_COUNT],
    pub(crate) full: List<Page>,
    pub(crate) segments: [List<Segment>; PAGED_KINDS],
    pub(crate) dirty: DirtyPages,
    /// Sweeps of the larger blocks' free ones (block_purge.rs).
    pub(crate) block_sweeps: BlockSweeps,
    /// Held while `segments`, their pages' dirty state or `dirty` change:
    /// by the owner (slow paths only), or by the idle purger.
    pub(crate) pages_lock: spin::Mutex<()>,
    /// Refills since the last purge check on the refill path.
    pub(crate) refills_unchecked: u8,
    /// This thread's frees into other heaps' pages, not yet handed over.
    pub(crate) pending: PendingFrees,
    /// The heap profiler's byte countdown (sampling.rs).
    pub(crate) sampler: Sampler,
    /// Strict mode (strict.rs): every malloc takes the slow path, pages
    /// get `PAGE_STRICT`, and their freed blocks wait in the quarantine.
    pub(crate) strict: bool,
    pub(crate) strict_quarantine: Quarantine,
    /// Free mid blocks kept for the next mallocs of their class (block_cache.rs).
    pub(crate) block_cache: BlockCache,
    /// Links in the global heap pool.
    pub(crate) pool_next: *mut Heap<P>,
    pub(crate) all_next: *mut Heap<P>,
}

impl<P: PageProvider + 'static> Heap<P> {
    pub(crate) fn new(shared: &'static Shared<P>) -> Self {
        const { assert!(core::mem::offset_of!(Heap<P>, delayed) == 0) };
        let (list_key, marker_key) = shared.memory.keys();
        let seed = list_key as u64 ^ HEAPS_MADE.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // An inert heap with its own keys, sampling seed and mode: the
        // rest of a new heap is the same (nothing in it yet).
        let strict = shared.memory.strict();
        // A strict heap's frees never take the fast path that caches.
        let options = &shared.memory.options;
        let cache_bytes = if strict { 0 } else { options.block_cache_bytes.load(Ordering::Relaxed) };
        let learn = options.learn.load(Ordering::Relaxed) == crate::config::LEARN_ON;
        Heap { list_key, marker_key, sampler: Sampler::new(seed), strict, block_cache: BlockCache::new(cache_bytes, learn), ..Heap::inert(shared) }
    }

    /// A heap that serves nothing: its fast paths find no page and no
    /// remembered segment, so [`Heap::malloc_fast`],
    /// [`Heap::free_remembered`] and [`Heap::realloc_in_place`] give up
    /// without writing anything. A platform can point the thread slot of
    /// every thread without a heap at one shared inert heap (in a static)
    /// instead of null, and its fast paths then need no null test; its
    /// slow paths must treat it as no heap (nothing else may be called on it).
    pub const fn inert(shared: &'static Shared<P>) -> Self {
        Heap {
            delayed: DelayedFrees::new(),
            direct: [empty_page(); SMALL_SLOTS],
            current: [empty_page(); CLASS_COUNT],
            local_segments: [NO_SEGMENT; LOCAL_SEGMENTS],
            local_pages: [0; LOCAL_SEGMENTS],
            list_key: 0,
            marker_key: 0,
            malloc_calls: AtomicU64::new(0),
            free_calls: AtomicU64::new(0),
            cross_thread_frees: AtomicU64::new(0),
            shared,
            queues: [const { List::new() }; CLASS_COUNT],
            full: List::new(),
            segments: [const { List::new() }; PAGED_KINDS],
            dirty: DirtyPages::new(),
            block_sweeps: BlockSweeps::new(),
            pages_lock: spin::Mutex::new(()),
            refills_unchecked: 0,
            pending: PendingFrees::new(),
            sampler: Sampler::new(0),
            strict: false,
            strict_quarantine: Quarantine::new(),
            block_cache: BlockCache::new(0, false),
            pool_next: null_mut(),
            all_next: null_mut(),
        }
    }

    /// This heap's share of the calls served so far: (mallocs, frees, frees
    /// of other heaps' blocks). The two fast paths of a small block (a pop,
    /// a push) are counted by the page (`Page::counts`), not here; every
    /// other path counts here, and takes off what the page counts besides
    /// (`uncount_malloc`, `uncount_frees`), so that the first two are
    /// shares of a sum (`Global::stats`) and may wrap below 0 alone.
    pub fn call_counts(&self) -> (u64, u64, u64) {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        (load(&self.malloc_calls), load(&self.free_calls), load(&self.cross_thread_frees))
    }

    /// Count a malloc (owner only: a relaxed load + store is a plain increment).
    #[inline(always)]
    pub(crate) fn count_malloc(&self) {
        self.malloc_calls.store(self.malloc_calls.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Count a free (owner only).
    #[inline(always)]
    pub(crate) fn count_free(&self) {
        self.free_calls.store(self.free_calls.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// A page counted a pop that a slow path already counted as a malloc
    /// (owner only).
    #[inline(always)]
    pub(crate) fn uncount_malloc(&self) {
        self.malloc_calls.store(self.malloc_calls.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed);
    }

    /// `count` blocks whose frees were counted already (here, by another
    /// heap, or with no heap) went back to a page's `used`, which counts
    /// them as frees again (owner only).
    #[inline(always)]
    pub(crate) fn uncount_frees(&self, count: u16) {
        self.free_calls.store(self.free_calls.load(Ordering::Relaxed).wrapping_sub(count as u64), Ordering::Relaxed);
    }

    /// A page's `taken` wrapped as it popped `block`: fold its 2^16 pops
    /// into the counters (`Stats::fold_taken`); returns `block`. Out of
    /// line: once in 2^16 pops of a page.
    #[cold]
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn taken_wrapped(&self, block: *mut Block) -> *mut Block {
        self.shared.memory.stats.fold_taken(1 << 16);
        // `taken == used` no longer tells that no block came back (page.rs).
        // SAFETY: `block` was just popped from a page of this heap.
        unsafe {
            let segment = Segment::of_ptr(block as *const u8);
            Segment::set_page_zeroed(segment, Segment::page_of(segment, block as *const u8), false);
        }
        block
    }

    /// Count a free of another heap's block (owner only).
    pub(crate) fn count_cross_thread_free(&self) {
        let count = self.cross_thread_frees.load(Ordering::Relaxed).wrapping_add(1);
        self.cross_thread_frees.store(count, Ordering::Relaxed);
    }

    /// Whether `ptr`'s segment belongs to this heap.
    pub fn owns(&self, ptr: *const u8) -> bool {
        let segment = Segment::of_ptr(ptr);
        crate::segment::segment_is_known(segment)
            // SAFETY: the segment map says the header is mapped.
            && unsafe { (*segment).owner.load(Ordering::Relaxed) } == self as *const Self as usize
    }

    /// A pointer to this heap, for [`crate::Global::free`].
    pub fn as_ptr(&mut self) -> NonNull<Heap<P>> {
        NonNull::from(self)
    }

    // ------------------------------------------------------------------
    // page queues

    /// Move the page's remote frees to its local list.
    ///
    /// # Safety
    /// `page` is a live page owned by this heap.
    pub(crate) unsafe fn collect(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        match unsafe { (*page).collect_remote(self.list_key) } {
            // Their frees were counted by the threads that freed them.
            Some(count) => self.uncount_frees(count),
            None => self.shared.memory.fatal_at("corrupted remote free list in page ", page as usize),
        }
    }

    /// Make `page` (or `EMPTY_PAGE`) the current page of `class`.
    /// While profiling or strict, EMPTY_PAGE whatever `page` is: every
    /// malloc then takes the slow path, which samples (sampling.rs) or
    /// checks (strict.rs).
    pub(crate) fn set_current(&mut self, class: usize, page: *mut Page) {
        let page = if self.sampler.profiling || self.strict { empty_page() } else { page };
        self.current[class] = page;
        if class_size(class) <= SMALL_MAX {
            for slot in small_slots_of(class) {
                self.direct[slot] = page;
            }
        }
    }

    /// Make the head of `class`'s queue (or `EMPTY_PAGE`) its current page.
    pub(crate) fn current_from_queue(&mut self, class: usize) {
        let first = if self.queues[class].is_empty() { empty_page() } else { self.queues[class].first };
        self.set_current(class, first);
    }

    /// Remove a page from its class queue, keeping `current` in step.
    ///
    /// # Safety
    /// `page` is in `queues[page.class]`.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) unsafe fn queue_remove(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            let class = (*page).class();
            self.queues[class].remove(page);
            self.current_from_queue(class);
        }
    }

    /// Put a page at the back of its class queue (the current page keeps
    /// serving), keeping `current` in step.
    ///
    /// # Safety
    /// `page` is ours and in no queue.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) unsafe fn queue_push_back(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            let class = (*page).class();
            self.queues[class].push_back(page);
            self.current_from_queue(class);
        }
    }

    /// Move a page from the full queue back to its class queue.
    ///
    /// # Safety
    /// `page` is ours and in the full queue.
    unsafe fn page_unfull(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            self.full.remove(page);
            (*page).clear_flags(PAGE_FULL);
            (*page).clear_delayed();
            // At the back: a page with one free block does not bounce
            // between full and current.
            self.queue_push_back(page);
        }
    }

    // ------------------------------------------------------------------
    // pages

    /// Take an unused page from one of our segments (or a new segment) and
    /// initialise it for `class`. Null when out of memory.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn page_alloc(&mut self, class: usize) -> *mut Page {
        let kind = kind_of_class(class) as usize;
        let me = self as *mut Self as usize;
        let _pages = self.pages_lock.lock();
        // SAFETY: segments in our lists are live and owned by this heap.
        unsafe {
            let mut segment = self.segment_with_room(kind);
            if segment.is_null() {
                segment = self.shared.segments.alloc(&self.shared.memory, kind_of_class(class));
                if segment.is_null() && self.shared.release_caches() > 0 {
                    segment = self.shared.segments.alloc(&self.shared.memory, kind_of_class(class));
                }
                if segment.is_null() {
                    return null_mut();
                }
                (*segment).owner.store(me, Ordering::Release);
                self.segments[kind].push_front(segment);
                // A cached segment may come with resident (dirty) pages.
                self.dirty.released(Segment::dirty_bytes(segment));
            }
            let (page, was_dirty) = Segment::take_page(segment, class, &self.shared.memory);
            if self.strict {
                (*page).set_flags(PAGE_STRICT);
            }
            if was_dirty {
                self.dirty.reused(1 << (*segment).page_shift);
            }
            if (*segment).used_pages == (*segment).page_count {
                // Keep segments with unused pages at the front.
                self.segments[kind].remove(segment);
                self.segments[kind].push_back(segment);
            }
            page
        }
    }

    /// One of our segments of `kind` with an unused page (null: none): of
    /// the first few (those with room are at the front), one with a dirty
    /// page if any. Taking a purged or fresh page while a resident one
    /// waits would fault twice: now, and when the resident one, purged
    /// unused, is taken later.
    fn segment_with_room(&self, kind: usize) -> *mut Segment {
        const LOOK_AHEAD: usize = 8;
        let first = self.segments[kind].first;
        let mut segment = first;
        // SAFETY: segments in our lists are live and owned by this heap.
        unsafe {
            for _ in 0..LOOK_AHEAD {
                if segment.is_null() || (*segment).used_pages == (*segment).page_count {
                    break;
                }
                if (*segment).dirty != 0 {
                    return segment;
                }
                segment = (*segment).next;
            }
            if first.is_null() || (*first).used_pages == (*first).page_count {
                return null_mut();
            }
        }
        first
    }

    /// Give a page that holds no live block back to its segment. Its memory
    /// stays resident for reuse (even when the segment empties) until the
    /// purge policy says otherwise (purge.rs).
    ///
    /// # Safety
    /// `page` is ours, in no queue, and `used == 0`.
    // Not inlined into page_empty: a page is freed far less often than one
    // empties, and every process runs page_empty (see ffi/hot.ld).
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) unsafe fn page_free(&mut self, page: *mut Page) {
        // SAFETY: per the contract; the segment is ours.
        unsafe {
            let _pages = self.pages_lock.lock();
            let segment = Segment::of_ptr(page as *const u8);
            let released = Segment::release_page(segment, page, &self.shared.memory);
            self.dirty.released(released);
            let list = &mut self.segments[(*segment).kind as usize];
            list.remove(segment);
            list.push_front(segment);
        }
        self.purge_if_due();
    }

    /// Called when a page's last block came back. Keeps the page when it is
    /// its class's only one (so alternating malloc/free does not churn).
    ///
    /// # Safety
    /// `page` is ours, in its class queue, with `used == 0`.
    #[cold]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) unsafe fn page_empty(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            let class = (*page).class();
            let queue = &self.queues[class];
            if queue.is_only(page) {
                return;
            }
            // A small page that empties as the current page or right behind
            // it is about to be refilled (a loop whose blocks span two
            // pages freed and carved one of them again on every turn): it
            // stays, so a class keeps at most two empty pages of 64 KiB.
            if class_size(class) <= SMALL_MAX && (queue.first == page || (*queue.first).next.get() == page) {
                return;
            }
            self.queue_remove(page);
            self.page_free(page);
        }
    }

    /// Give a block already marked free back to its page, and requeue the
    /// page as needed (out of the full queue, freed when empty).
    ///
    /// # Safety
    /// `page` is ours and covers `block`, a block start counted in `used`.
    pub(crate) unsafe fn return_block(&mut self, page: *mut Page, block: *mut Block) {
        // SAFETY: per the contract.
        unsafe {
            (*page).push(block, self.list_key);
            // Its free was counted where it was freed.
            self.uncount_frees(1);
            if (*page).flags.load(Ordering::Relaxed) & PAGE_FULL != 0 {
                self.page_unfull(page);
            }
            if (*page).used() == 0 {
                self.page_empty(page);
            }
        }
    }

    /// Stack `index` of the block cache is full: its limit grows, or its
    /// oldest blocks go back to their pages (block_cache.rs), then `block`
    /// goes on it.
    ///
    /// # Safety
    /// `block` is a checked block, marked free, of a page this heap owns
    /// (the block cache's invariant).
    #[cold]
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) unsafe fn block_cache_overflow(&mut self, index: usize, block: *mut Block) {
        crate::debug_count!(block_cache_overflows);
        if self.block_cache.limit(index) == 0 {
            // SAFETY: per the contract.
            return unsafe { self.return_block(Segment::page_of_block(block as *mut u8), block) };
        }
        let release = self.block_cache.overflowed(index, self.malloc_calls.load(Ordering::Relaxed));
        self.release_cached(index, release);
        self.block_cache.push(index, block);
    }

    /// Give every cached block back to its page.
    pub(crate) fn flush_block_cache(&mut self) {
        for index in 0..BlockCache::CLASSES {
            self.release_cached(index, block_cache::SLOTS);
        }
    }

    /// Give the oldest `count` blocks of stack `index` back to their pages.
    fn release_cached(&mut self, index: usize, count: usize) {
        let mut taken = [null_mut(); block_cache::SLOTS];
        let taken_count = self.block_cache.take_oldest(index, count, &mut taken);
        for &block in &taken[..taken_count] {
            // SAFETY: cached blocks are free blocks of pages this heap owns,
            // counted in use (the block cache's invariant).
            unsafe {
                self.return_block(Segment::page_of_block(block as *mut u8), block);
            }
        }
    }

    /// Hand the frees this thread gathered for other heaps' pages over.
    pub(crate) fn hand_over_pending(&mut self) {
        // SAFETY: the gathered blocks are still ours (PendingFrees' invariant).
        unsafe { self.pending.hand_over(self.list_key) };
    }

    /// Process blocks other threads freed into our full pages.
    pub(crate) fn drain_delayed(&mut self) {
        self.drain_delayed_to(|heap, page, block| {
            // SAFETY: our pages are queued (return_block's contract) whenever
            // this runs; abandon, which dequeues them, drains its own way.
            unsafe { heap.return_block(page, block) }
        });
    }

    /// Process blocks other threads freed into our full pages: `give_back`
    /// each one of a page we own, hand the others to their new owners.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn drain_delayed_to(&mut self, give_back: impl Fn(&mut Self, *mut Page, *mut Block)) {
        let me = self as *mut Self as usize;
        let list_key = self.list_key;
        for block in self.delayed.take(list_key) {
            // SAFETY: the blocks were freed into pages by remote threads.
            unsafe {
                let segment = Segment::of_ptr(block as *const u8);
                let page = Segment::page_of(segment, block as *const u8);
                if (*segment).owner.load(Ordering::Acquire) == me {
                    give_back(self, page, block);
                } else {
                    // The segment changed hands (heap reused after abandon).
                    push_foreign(segment, page, block, block, list_key);
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // purging

    /// Purge when the policy says so (purge.rs).
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn purge_if_due(&mut self) {
        self.sweep_free_blocks(false);
        let pages = self.pages_lock.lock();
        if self.dirty.is_due(&self.shared.memory, true) {
            drop(pages);
            self.purge_dirty(PurgeScope::Due);
        }
    }

    /// Purge the dirty pages `scope` takes (`Due` or `All`) and release the
    /// segments left empty and clean. Returns bytes released.
    pub(crate) fn purge_dirty(&mut self, scope: PurgeScope) -> usize {
        self.forget_local_segments(); // the purge may free segments
        let _pages = self.pages_lock.lock();
        self.dirty.purge(&mut self.segments, self.shared, scope)
    }

    /// From any thread: purge the dirty pages of `this` heap that have
    /// waited the purge delay, unless its owner is changing them right now
    /// (then it does so itself soon). Its segments stay listed: only the
    /// owner releases them (its local-free cache names them). Returns
    /// bytes purged.
    ///
    /// # Safety
    /// `this` is a heap from this allocator (heaps are never unmapped).
    pub(crate) unsafe fn purge_idle(this: *mut Self) -> usize {
        // SAFETY: per the contract; the lock field alone is borrowed.
        let Some(_pages) = (unsafe { &(*this).pages_lock }).try_lock() else {
            return 0;
        };
        // SAFETY: holding `pages_lock`, we are the only one using `segments`
        // and `dirty` (the owner takes the lock to change them).
        unsafe {
            let (dirty, segments, shared) = (&mut (*this).dirty, &mut (*this).segments, (*this).shared);
            if !dirty.is_due(&shared.memory, false) {
                return 0;
            }
            dirty.purge(segments, shared, PurgeScope::DueInPlace)
        }
    }

    /// Remember `segment`, which this heap owns, for local frees.
    ///
    /// # Safety
    /// `segment` is a live paged segment.
    #[inline(always)]
    pub(crate) unsafe fn remember_local(&mut self, segment: *mut Segment) {
        // SAFETY: per the contract.
        let page_shift = unsafe { (*segment).page_shift } as usize;
        // A short segment with pages smaller than a small page: a pointer
        // past its end would index a page past the last (`Segment::holds`
        // checks its frees).
        if page_shift < SMALL_PAGE_SHIFT {
            return;
        }
        // SAFETY: per the contract (an address, nothing read).
        let first_page = unsafe { core::ptr::addr_of!((*segment).pages) } as usize;
        let pages = first_page.wrapping_sub((segment as usize >> page_shift) * core::mem::size_of::<Page>());
        let slot = local_slot(segment as usize);
        let larger = if page_shift == SMALL_PAGE_SHIFT { 0 } else { LARGER_PAGES_TAG };
        self.local_segments[slot] = segment as usize | page_shift | larger;
        self.local_pages[slot] = pages;
    }

    /// The segment and page shift of the block at `ptr` when the heap
    /// remembers its segment. `ptr` itself is looked up (no `ptr - 1` as in
    /// `Segment::of_ptr`): a pointer at a 2 MiB boundary starts a huge
    /// block, never in a segment the heap remembers, so it is not found
    /// here. The tag's high bits equal `ptr`'s exactly when it is this
    /// segment's, whatever its low bits, which are the shift.
    #[inline(always)]
    pub(crate) fn remembered_segment_of(&self, ptr: *const u8) -> Option<(*mut Segment, usize)> {
        let tag = self.local_segments[local_slot(ptr as usize)] & !LARGER_PAGES_TAG;
        if (tag ^ ptr as usize) <= SEGMENT_MASK {
            Some(((tag & !SEGMENT_MASK) as *mut Segment, tag & SEGMENT_MASK))
        } else {
            None
        }
    }

    /// The page descriptor of the block at `ptr` when the heap remembers
    /// its segment (as [`Heap::remembered_segment_of`]; never for null).
    #[inline(always)]
    pub(crate) fn remembered_page_of(&self, ptr: *const u8) -> Option<*mut Page> {
        match self.remembered(ptr) {
            Remembered::Listed(page) | Remembered::Mid(page) => Some(page),
            Remembered::No => None,
        }
    }

    /// [`Heap::remembered_page_of`], telling a medium segment's blocks
    /// from the others: a small page's is one compare and a constant shift.
    #[inline(always)]
    pub(crate) fn remembered(&self, ptr: *const u8) -> Remembered {
        let slot = local_slot(ptr as usize);
        let tag = self.local_segments[slot];
        let page = |page_shift: usize| {
            let pages = self.local_pages[slot];
            pages.wrapping_add((ptr as usize >> page_shift) * core::mem::size_of::<Page>()) as *mut Page
        };
        let diff = tag ^ ptr as usize;
        if diff <= SEGMENT_MASK {
            return Remembered::Listed(page(SMALL_PAGE_SHIFT));
        }
        if diff ^ LARGER_PAGES_TAG > SEGMENT_MASK {
            return Remembered::No;
        }
        match tag & SEGMENT_MASK {
            MEDIUM_PAGE_SHIFT => Remembered::Mid(page(MEDIUM_PAGE_SHIFT)),
            page_shift => Remembered::Listed(page(page_shift)),
        }
    }

    /// Forget the remembered segments (before giving segments away).
    pub(crate) fn forget_local_segments(&mut self) {
        self.local_segments = [NO_SEGMENT; LOCAL_SEGMENTS];
    }

    /// Walk every structure and check the invariants in the module docs.
    /// Test and debugging aid: O(heap size).
    #[cfg(any(test, feature = "check-invariants"))]
    pub fn check_invariants(&self) {
        use crate::page::PAGE_UNUSED;
        let _pages = self.pages_lock.lock();
        let me = self as *const Self as usize;
        for (i, &entry) in self.local_segments.iter().enumerate() {
            if entry == NO_SEGMENT {
                continue;
            }
            let local = (entry & !SEGMENT_MASK & !LARGER_PAGES_TAG) as *mut Segment;
            assert!(local_slot(local as usize) == i, "local_segments slot");
            // SAFETY: checked below to be one of our (live) segments.
            let page_shift = unsafe { (*local).page_shift } as usize;
            assert_eq!(entry & SEGMENT_MASK, page_shift, "local_segments tag");
            assert_eq!(entry & LARGER_PAGES_TAG != 0, page_shift != SMALL_PAGE_SHIFT, "local_segments tag of larger pages");
            let listed = self.segments.iter().any(|list| {
                let mut segment = list.first;
                while !segment.is_null() && segment != local {
                    // SAFETY: our segments are live.
                    segment = unsafe { (*segment).next };
                }
                !segment.is_null()
            });
            assert!(listed, "a remembered local segment is not one of the heap's segments");
            // SAFETY: a live segment of ours (just checked).
            let (page_shift, page_count) = unsafe { ((*local).page_shift as usize, (*local).page_count as usize) };
            for index in 0..page_count {
                let inside = (local as usize + (index << page_shift) + 16) as *const u8;
                // SAFETY: as above; `index` is below the segment's page count.
                let expected = unsafe { core::ptr::addr_of_mut!((*local).pages).cast::<Page>().add(index) };
                assert_eq!(self.remembered_page_of(inside), Some(expected), "local_segments pages of page {index}");
            }
        }
        for class in 0..CLASS_COUNT {
            let queue = &self.queues[class];
            let expected = if queue.first.is_null() || self.sampler.profiling || self.strict { empty_page() } else { queue.first };
            assert_eq!(self.current[class], expected, "current[{class}] is not the queue head");
            if class_size(class) <= SMALL_MAX {
                assert!(small_slots_of(class).all(|slot| self.direct[slot] == expected), "direct of class {class}");
            }
            let mut page = queue.first;
            while !page.is_null() {
                // SAFETY: queued pages are ours and live.
                unsafe {
                    assert_eq!((*page).class(), class);
                    assert_eq!((*page).flags.load(Ordering::Relaxed) & (PAGE_FULL | PAGE_UNUSED), 0);
                    let free = (*page).count_free(self.list_key) as u16;
                    assert!((*page).used() + free <= (*page).capacity(), "page accounting");
                    assert!((*page).capacity() <= (*page).reserved);
                    let fast = if (*page).flags.load(Ordering::Relaxed) == 0 { (*page).capacity() } else { 0 };
                    assert_eq!((*page).fast_capacity.get(), fast, "fast_capacity");
                    let segment = Segment::of_ptr(page as *const u8);
                    assert_eq!((*segment).owner.load(Ordering::Relaxed), me);
                    page = (*page).next.get();
                }
            }
        }
        for block in self.block_cache.blocks() {
            // SAFETY: checked to lie in one of our (live) segments first.
            unsafe {
                let segment = Segment::of_ptr(block as *const u8);
                assert_eq!((*segment).owner.load(Ordering::Relaxed), me, "a cached block of another heap's segment");
                let page = Segment::page_of(segment, block as *const u8);
                assert_eq!((*page).flags.load(Ordering::Relaxed) & PAGE_UNUSED, 0, "a cached block of an unused page");
                assert_eq!((*page).block_index_of(block as *const u8).1, block as *mut u8, "a cached block is not a block start");
                assert_eq!((*block).marker, block as usize ^ self.marker_key, "a cached block not marked free");
                let cached = self.block_cache.blocks().filter(|&other| Segment::page_of_block(other) == page).count();
                assert!(cached <= (*page).used() as usize, "cached blocks not counted in use");
            }
        }
        for kind in 0..PAGED_KINDS {
            let mut segment = self.segments[kind].first;
            while !segment.is_null() {
                // SAFETY: our segments are live.
                unsafe {
                    assert_eq!(Segment::pages_in_use(segment).count(), (*segment).used_pages as usize, "used_pages");
                    assert_eq!((*segment).dirty & (*segment).purged, 0, "a page both dirty and purged");
                    for i in 0..(*segment).page_count as usize {
                        if ((*segment).dirty | (*segment).purged) & (1 << i) != 0 {
                            assert!((*segment).pages[i].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0, "dirty or purged page in use");
                        }
                    }
                    assert_eq!((*segment).owner.load(Ordering::Relaxed), me);
                    segment = (*segment).next;
                }
            }
        }
    }
}

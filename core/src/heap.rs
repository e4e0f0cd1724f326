//! Thread heaps: per-class page queues and the malloc / free fast paths.
//!
//! ```text
//!  Heap
//!  direct[class] ---> current page of the class (or EMPTY_PAGE)
//!  queues[class] ---> page <-> page <-> page     pages that may have free blocks
//!  full           ---> page <-> page               pages with nothing free (DELAYED set)
//!  segments[kind] ---> seg <-> seg <-> seg         owned segments, those with unused pages first
//!  delayed (atomic) -> block -> block              remote frees into full pages
//! ```
//!
//! A heap is used by one thread at a time (its owner); only `delayed` and
//! the counters are touched by other threads. Invariants:
//! - `direct[c] == queues[c].first`, or `&EMPTY_PAGE` when the queue is empty.
//! - A page is in `queues[page.class]` iff its flags lack `PAGE_FULL`, in
//!   `full` iff they have it, and in neither only while being moved or freed.
//! - Every segment whose `owner` is this heap is in `segments[kind]`.
//!
//! Fast paths: [`Heap::malloc`] pops from `direct[class]`; [`Heap::free_local`]
//! pushes to the block's page. Everything else is in `_slow` functions.

use crate::class::{class_of, class_size, kind_of_class, small_class_of, CLASS_COUNT, PAGED_KINDS};
use crate::config::{LARGE_MAX, MAX_REQUEST, MIN_ALIGN, SEGMENT_HEADER_BYTES, SMALL_MAX};
use crate::global::Global;
use crate::list::List;
use crate::page::{
    decode, encode, link_is_plausible, Block, Page, PAGE_ALIGNED, PAGE_FULL, PAGE_UNUSED,
};
use crate::provider::PageProvider;
use crate::segment::{Segment, ABANDONED_OWNER};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// A page that never has a free block: `direct[c]` points here when class
/// `c` has no page, so the fast path needs no null test.
struct EmptyPage(Page);
// SAFETY: EMPTY_PAGE is never written: its free list is null, so neither
// fast path nor slow path modifies it (slow paths only touch queued pages).
unsafe impl Sync for EmptyPage {}
static EMPTY_PAGE: EmptyPage = EmptyPage(Page::UNUSED);

fn empty_page() -> *mut Page {
    &EMPTY_PAGE.0 as *const Page as *mut Page
}

/// A thread heap. Obtain one with [`Global::heap_acquire`].
pub struct Heap<P: PageProvider + 'static> {
    direct: [*mut Page; CLASS_COUNT],
    list_key: usize,
    marker_key: usize,
    malloc_calls: AtomicU64,
    free_calls: AtomicU64,
    pub(crate) global: &'static Global<P>,
    queues: [List<Page>; CLASS_COUNT],
    full: List<Page>,
    segments: [List<Segment>; PAGED_KINDS],
    /// Remote frees into full pages: encoded list of blocks.
    pub(crate) delayed: AtomicUsize,
    /// Bytes of dirty unused pages in our segments (see `Segment::dirty`).
    dirty_bytes: usize,
    /// When the current dirty pages are due for purging (`u64::MAX`: none).
    purge_deadline_ms: u64,
    /// Links in the global heap pool.
    pub(crate) pool_next: *mut Heap<P>,
    pub(crate) all_next: *mut Heap<P>,
}

impl<P: PageProvider + 'static> Heap<P> {
    pub(crate) fn new(global: &'static Global<P>, list_key: usize, marker_key: usize) -> Self {
        Heap {
            direct: [empty_page(); CLASS_COUNT],
            list_key,
            marker_key,
            malloc_calls: AtomicU64::new(0),
            free_calls: AtomicU64::new(0),
            global,
            queues: [const { List::new() }; CLASS_COUNT],
            full: List::new(),
            segments: [const { List::new() }; PAGED_KINDS],
            delayed: AtomicUsize::new(0),
            dirty_bytes: 0,
            purge_deadline_ms: u64::MAX,
            pool_next: null_mut(),
            all_next: null_mut(),
        }
    }

    /// The global state this heap draws from.
    pub fn global(&self) -> &'static Global<P> {
        self.global
    }

    /// Calls served by this heap so far: (mallocs, frees).
    pub fn call_counts(&self) -> (u64, u64) {
        (self.malloc_calls.load(Ordering::Relaxed), self.free_calls.load(Ordering::Relaxed))
    }

    #[inline(always)]
    fn count(counter: &AtomicU64) {
        // Owner-only counter: a relaxed load + store is a plain increment.
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    // ------------------------------------------------------------------
    // malloc

    /// Allocate `size` bytes, 16-byte aligned. Null when out of memory.
    /// Budget: table lookup, one load, one test, four stores.
    #[inline(always)]
    pub fn malloc(&mut self, size: usize) -> *mut u8 {
        if size <= SMALL_MAX {
            let page = self.direct[small_class_of(size)];
            // SAFETY: direct entries point to live pages of this heap or to
            // EMPTY_PAGE (whose free list is null, so the branch is skipped).
            unsafe {
                let block = (*page).free;
                if !block.is_null() {
                    let next = decode((*block).next, self.list_key);
                    if link_is_plausible(block, next) {
                        (*page).free = next;
                        (*page).used += 1;
                        (*block).marker = 0;
                        Self::count(&self.malloc_calls);
                        return block as *mut u8;
                    }
                }
            }
        }
        self.malloc_slow(size)
    }

    #[cold]
    #[inline(never)]
    fn malloc_slow(&mut self, size: usize) -> *mut u8 {
        Self::count(&self.malloc_calls);
        if size > LARGE_MAX {
            return self.global.huge_alloc(size, MIN_ALIGN).map_or(null_mut(), |(p, _)| p);
        }
        self.alloc_class(class_of(size))
    }

    /// Allocate `size` bytes aligned to `align` (a power of two).
    pub fn malloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        debug_assert!(align.is_power_of_two());
        if align <= MIN_ALIGN {
            return self.malloc(size);
        }
        if size > MAX_REQUEST || align > MAX_REQUEST {
            return null_mut();
        }
        // Blocks of a class whose size is a multiple of `align` are aligned
        // already when the page start is (pages start at 8 KiB multiples).
        if size <= LARGE_MAX && align <= SEGMENT_HEADER_BYTES && class_size(class_of(size)).is_multiple_of(align) {
            return self.malloc(size);
        }
        let padded = size + align - MIN_ALIGN;
        if padded > LARGE_MAX {
            Self::count(&self.malloc_calls);
            return self.global.huge_alloc(size, align).map_or(null_mut(), |(p, _)| p);
        }
        let block = self.malloc(padded);
        if block.is_null() {
            return block;
        }
        let aligned = (block as usize + align - 1) & !(align - 1);
        if aligned != block as usize {
            // SAFETY: block is a live block of a page of this heap.
            unsafe {
                let page = Segment::page_of(Segment::of_ptr(block), block);
                (*page).flags.fetch_or(PAGE_ALIGNED, Ordering::Relaxed);
            }
        }
        aligned as *mut u8
    }

    /// Allocate `count * size` zeroed bytes; null on overflow or when out
    /// of memory.
    pub fn calloc(&mut self, count: usize, size: usize) -> *mut u8 {
        let Some(total) = count.checked_mul(size) else {
            return null_mut();
        };
        if total > LARGE_MAX {
            Self::count(&self.malloc_calls);
            return match self.global.huge_alloc(total, MIN_ALIGN) {
                Some((p, true)) => p,
                Some((p, false)) => {
                    // SAFETY: p is a fresh block of at least total bytes.
                    unsafe { core::ptr::write_bytes(p, 0, total) };
                    p
                }
                None => null_mut(),
            };
        }
        let p = self.malloc(total);
        if !p.is_null() {
            // SAFETY: p is a fresh block of at least total bytes.
            unsafe { core::ptr::write_bytes(p, 0, total) };
        }
        p
    }

    /// Resize the block at `ptr` (null: allocate) to `size` bytes, keeping
    /// its contents. Returns null, leaving the block alone, when out of memory.
    ///
    /// # Safety
    /// `ptr` is null or a live block from this allocator.
    pub unsafe fn realloc(&mut self, ptr: *mut u8, size: usize) -> *mut u8 {
        if ptr.is_null() {
            return self.malloc(size);
        }
        // SAFETY: ptr is a live block (caller); usable_size validates it.
        let usable = unsafe { self.global.usable_size(ptr) };
        if size <= usable && size >= usable / 2 {
            return ptr;
        }
        if usable > LARGE_MAX && size > LARGE_MAX {
            // Huge to huge: move or grow the mapping instead of copying.
            if let Some(moved) = self.global.huge_realloc(ptr, size) {
                Self::count(&self.malloc_calls);
                return moved;
            }
        }
        let new = self.malloc(size);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and hold at least the
            // copied length.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, usable.min(size));
                self.global.free(ptr, self);
            }
        }
        new
    }

    /// `size` zeroed bytes aligned to `align` (a power of two).
    pub fn calloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        if align <= MIN_ALIGN {
            return self.calloc(1, size);
        }
        let p = self.malloc_aligned(size, align);
        if !p.is_null() {
            // SAFETY: p holds at least size bytes.
            unsafe { core::ptr::write_bytes(p, 0, size) };
        }
        p
    }

    /// Resize a block of `old_size` bytes to `new_size`, keeping it aligned
    /// to `align` (Rust's `GlobalAlloc::realloc`; C realloc only keeps 16).
    /// Null, leaving the block alone, when out of memory.
    ///
    /// # Safety
    /// `ptr` is a live block from this allocator holding `old_size` bytes.
    pub unsafe fn realloc_aligned(&mut self, ptr: *mut u8, old_size: usize, new_size: usize, align: usize) -> *mut u8 {
        if align <= MIN_ALIGN {
            // SAFETY: per the contract.
            return unsafe { self.realloc(ptr, new_size) };
        }
        let new = self.malloc_aligned(new_size, align);
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct, and hold at least the
            // copied length.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, old_size.min(new_size));
                self.global.free(ptr, self);
            }
        }
        new
    }

    // ------------------------------------------------------------------
    // allocation slow paths

    /// Pop a block of `class` from the current page or refill.
    fn alloc_class(&mut self, class: usize) -> *mut u8 {
        let page = self.direct[class];
        // SAFETY: direct entries are live pages or EMPTY_PAGE.
        let block = unsafe { self.page_pop(page) };
        if !block.is_null() {
            return block;
        }
        self.alloc_class_slow(class)
    }

    /// Pop from `page`'s free list (null when it is empty).
    ///
    /// # Safety
    /// `page` is EMPTY_PAGE or a live page of this heap.
    unsafe fn page_pop(&mut self, page: *mut Page) -> *mut u8 {
        // SAFETY: per the contract; blocks on the list belong to the page.
        unsafe {
            let block = (*page).free;
            if block.is_null() {
                return null_mut();
            }
            let next = decode((*block).next, self.list_key);
            if !link_is_plausible(block, next) {
                self.global.fatal_at("corrupted free list (use after free?) at ", block as usize);
            }
            (*page).free = next;
            (*page).used += 1;
            (*block).marker = 0;
            block as *mut u8
        }
    }

    /// Find a page of `class` with a free block, or make one. The refill
    /// path: collects remote frees, carves fresh blocks, retires full pages.
    #[cold]
    #[inline(never)]
    fn alloc_class_slow(&mut self, class: usize) -> *mut u8 {
        self.drain_delayed();
        self.purge_if_due();
        for attempt in 0..2 {
            let mut page = self.queues[class].first;
            while !page.is_null() {
                // SAFETY: pages in our queues are live pages of our segments.
                unsafe {
                    self.collect(page);
                    if (*page).free.is_null() {
                        (*page).extend(self.list_key);
                    }
                    if !(*page).free.is_null() {
                        if self.queues[class].first != page {
                            self.queues[class].remove(page);
                            self.queues[class].push_front(page);
                        }
                        self.direct[class] = page;
                        return self.page_pop(page);
                    }
                    let next = (*page).next;
                    if (*page).try_set_delayed() {
                        self.queue_remove(page);
                        (*page).flags.fetch_or(PAGE_FULL, Ordering::Relaxed);
                        self.full.push_back(page);
                        page = next;
                    }
                    // else: remote frees arrived meanwhile; look again.
                }
            }
            if attempt == 0 && !self.adopt_abandoned() {
                break;
            }
        }
        let page = self.page_alloc(class);
        if page.is_null() {
            return null_mut();
        }
        // SAFETY: page was just initialised for this class and is ours.
        unsafe {
            self.queues[class].push_front(page);
            self.direct[class] = page;
            (*page).extend(self.list_key);
            self.page_pop(page)
        }
    }

    /// Move the page's remote frees to its local list.
    ///
    /// # Safety
    /// `page` is a live page owned by this heap.
    unsafe fn collect(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        if unsafe { (*page).collect_remote(self.list_key) }.is_none() {
            self.global.fatal_at("corrupted remote free list in page ", page as usize);
        }
    }

    /// Remove a page from its class queue, keeping `direct` in step.
    ///
    /// # Safety
    /// `page` is in `queues[page.class]`.
    unsafe fn queue_remove(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            let class = (*page).class as usize;
            self.queues[class].remove(page);
            let first = self.queues[class].first;
            self.direct[class] = if first.is_null() { empty_page() } else { first };
        }
    }

    /// Take an unused page from one of our segments (or a new segment) and
    /// initialise it for `class`. Null when out of memory.
    fn page_alloc(&mut self, class: usize) -> *mut Page {
        let kind = kind_of_class(class);
        let mut segment = self.segments[kind as usize].first;
        // SAFETY: segments in our lists are live and owned by this heap.
        unsafe {
            if segment.is_null() || (*segment).used_pages == (*segment).page_count {
                segment = self.global.segment_alloc(kind);
                if segment.is_null() {
                    return null_mut();
                }
                (*segment).owner.store(self as *mut Self as usize, Ordering::Release);
                self.segments[kind as usize].push_front(segment);
            }
            let shift = (*segment).page_shift as usize;
            let count = (*segment).page_count as usize;
            // A dirty page first: its memory is still resident (no faults).
            let index = if (*segment).dirty != 0 {
                let index = (*segment).dirty.trailing_zeros() as usize;
                (*segment).dirty &= !(1 << index);
                self.dirty_bytes -= 1 << shift;
                index
            } else {
                (0..count)
                    .find(|&i| (*segment).pages[i].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0)
                    .unwrap_or_else(|| self.global.fatal_at("segment page count is wrong at ", segment as usize))
            };
            let page = &raw mut (*segment).pages[index];
            let (start, bytes) = Segment::page_area(segment, index, shift);
            (*page).init(class, class_size(class), start, bytes);
            (*segment).used_pages += 1;
            self.global.stats.pages_in_use.fetch_add(1, Ordering::Relaxed);
            self.global.stats.page_bytes_in_use.fetch_add(1 << shift, Ordering::Relaxed);
            if (*segment).used_pages == (*segment).page_count {
                // Keep segments with unused pages at the front.
                self.segments[kind as usize].remove(segment);
                self.segments[kind as usize].push_back(segment);
            }
            page
        }
    }

    /// Give a page that holds no live block back to its segment; frees the
    /// segment when it was the last page in use.
    ///
    /// # Safety
    /// `page` is ours, in no queue, and `used == 0`.
    unsafe fn page_free(&mut self, page: *mut Page) {
        // SAFETY: per the contract; the segment is ours.
        unsafe {
            let segment = Segment::of_ptr(page as *const u8);
            let kind = (*segment).kind;
            // The memory stays resident for reuse (even when the segment
            // empties) until the purge delay passes or the heap holds too
            // many dirty bytes: see purge_if_due.
            self.dirty_bytes += self.global.page_release(segment, page);
            let list = &mut self.segments[kind as usize];
            list.remove(segment);
            list.push_front(segment);
            self.purge_if_due();
        }
    }

    /// Purge dirty pages when the delay since the first of them passed, or
    /// when there are more than the cap.
    fn purge_if_due(&mut self) {
        if self.dirty_bytes == 0 {
            return;
        }
        let options = &self.global.options;
        let now = self.global.provider().now_ms();
        if self.purge_deadline_ms == u64::MAX {
            self.purge_deadline_ms = now.saturating_add(options.purge_delay_ms.load(Ordering::Relaxed) as u64);
        }
        let due = now >= self.purge_deadline_ms && (now != 0 || self.purge_deadline_ms == 0);
        if due || self.dirty_bytes > options.purge_dirty_bytes.load(Ordering::Relaxed) {
            self.purge_dirty();
        }
    }

    /// Release our empty segments and purge the dirty pages of the others.
    /// Returns bytes released.
    fn purge_dirty(&mut self) -> usize {
        let mut purged = 0;
        for kind in 0..PAGED_KINDS {
            let mut segment = self.segments[kind].first;
            while !segment.is_null() {
                // SAFETY: our segments are live and ours.
                unsafe {
                    let next = (*segment).next;
                    if (*segment).used_pages == 0 {
                        self.segments[kind].remove(segment);
                        (*segment).dirty = 0;
                        self.global.segment_free(segment);
                        purged += crate::config::SEGMENT_SIZE;
                    } else {
                        purged += self.global.purge_dirty_pages(segment);
                    }
                    segment = next;
                }
            }
        }
        self.dirty_bytes = 0;
        self.purge_deadline_ms = u64::MAX;
        purged
    }

    /// Called when a page's last block came back. Keeps the page when it is
    /// its class's only one (so alternating malloc/free does not churn).
    ///
    /// # Safety
    /// `page` is ours, in its class queue, with `used == 0`.
    #[cold]
    unsafe fn page_empty(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            if self.queues[(*page).class as usize].is_only(page) {
                return;
            }
            self.queue_remove(page);
            self.page_free(page);
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
            (*page).flags.fetch_and(!PAGE_FULL, Ordering::Relaxed);
            (*page).clear_delayed();
            // At the back: the current page keeps serving, and a page with
            // one free block does not bounce between full and current.
            let class = (*page).class as usize;
            self.queues[class].push_back(page);
            self.direct[class] = self.queues[class].first;
        }
    }

    // ------------------------------------------------------------------
    // free

    /// Free a block of a page this heap owns. Budget: a multiply for the
    /// block start, one combined test, three stores.
    ///
    /// # Safety
    /// `page` is the page covering `ptr` in a segment owned by this heap.
    #[inline(always)]
    pub(crate) unsafe fn free_local(&mut self, page: *mut Page, ptr: *mut u8) {
        // SAFETY: per the contract; the block lies in the page's area.
        unsafe {
            let block = (*page).block_of(ptr);
            let flags = (*page).flags.load(Ordering::Relaxed);
            let block_ptr = block as *mut Block;
            let marker = block as usize ^ self.marker_key;
            if (block == ptr) & (flags == 0) & (*page).block_is_carved(block) & ((*block_ptr).marker != marker) {
                (*block_ptr).next = encode((*page).free, self.list_key);
                (*block_ptr).marker = marker;
                (*page).free = block_ptr;
                (*page).used -= 1;
                Self::count(&self.free_calls);
                if (*page).used == 0 {
                    self.page_empty(page);
                }
                return;
            }
            self.free_local_slow(page, ptr, block);
        }
    }

    /// Every case the fast free path does not handle: misuse, aligned
    /// blocks, pages in the full queue.
    #[cold]
    #[inline(never)]
    unsafe fn free_local_slow(&mut self, page: *mut Page, ptr: *mut u8, block: *mut u8) {
        // SAFETY: as for free_local.
        unsafe {
            let flags = (*page).flags.load(Ordering::Relaxed);
            if flags & PAGE_UNUSED != 0 || !(*page).block_is_carved(block) {
                self.global.fatal_at("free(): invalid pointer (not allocated by hakmem, or already freed) ", ptr as usize);
            }
            if block != ptr && flags & PAGE_ALIGNED == 0 {
                self.global.fatal_at("free(): invalid pointer (inside a block) ", ptr as usize);
            }
            let block_ptr = block as *mut Block;
            let marker = block as usize ^ self.marker_key;
            if (*block_ptr).marker == marker {
                self.global.fatal_at("free(): double free of ", ptr as usize);
            }
            (*block_ptr).marker = marker;
            Self::count(&self.free_calls);
            self.free_marked(page, block_ptr);
        }
    }

    /// Push a block already marked free onto its page and requeue the page
    /// as needed.
    ///
    /// # Safety
    /// `page` is ours and covers `block`, a block start counted in `used`.
    unsafe fn free_marked(&mut self, page: *mut Page, block: *mut Block) {
        // SAFETY: per the contract.
        unsafe {
            (*block).next = encode((*page).free, self.list_key);
            (*page).free = block;
            (*page).used -= 1;
            if (*page).flags.load(Ordering::Relaxed) & PAGE_FULL != 0 {
                self.page_unfull(page);
            }
            if (*page).used == 0 {
                self.page_empty(page);
            }
        }
    }

    /// Count a free handled on the global path by this thread.
    pub(crate) fn count_free(&self) {
        Self::count(&self.free_calls);
    }

    /// Process blocks other threads freed into our full pages.
    pub(crate) fn drain_delayed(&mut self) {
        if self.delayed.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut stored = self.delayed.swap(0, Ordering::Acquire);
        let me = self as *mut Self as usize;
        while stored != 0 {
            let block = decode(stored, self.list_key);
            // SAFETY: blocks on the delayed list were freed into pages by
            // remote threads (Release on push, Acquire above).
            unsafe {
                stored = (*block).next;
                let segment = Segment::of_ptr(block as *const u8);
                let page = Segment::page_of(segment, block as *const u8);
                if (*segment).owner.load(Ordering::Acquire) == me {
                    self.free_marked(page, block);
                } else {
                    // The segment changed hands (heap reused after abandon).
                    self.global.push_foreign(segment, page, block);
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // thread exit, adoption, trim

    /// Give up every page: empty ones go back to their segments, segments
    /// still holding live blocks go to the global abandoned list, where a
    /// later thread adopts them.
    pub(crate) fn abandon(&mut self) {
        self.drain_delayed();
        for class in 0..CLASS_COUNT {
            loop {
                let page = self.queues[class].pop_front();
                if page.is_null() {
                    break;
                }
                // SAFETY: the page was in our queue.
                unsafe { self.release_page(page) };
            }
            self.direct[class] = empty_page();
        }
        loop {
            let page = self.full.pop_front();
            if page.is_null() {
                break;
            }
            // SAFETY: the page was in our full queue.
            unsafe {
                (*page).flags.fetch_and(!PAGE_FULL, Ordering::Relaxed);
                (*page).clear_delayed();
                self.release_page(page);
            }
        }
        // Blocks that were on their way to us while we cleared DELAYED.
        self.drain_delayed();
        self.purge_dirty(); // releases the segments that emptied
        for kind in 0..PAGED_KINDS {
            loop {
                let segment = self.segments[kind].pop_front();
                if segment.is_null() {
                    break;
                }
                self.global.abandon_segment(segment);
            }
        }
        // Anything that still arrives is routed to the abandoned pages.
        self.drain_delayed();
    }

    /// Collect a dequeued page; free it if empty, else leave it dequeued.
    ///
    /// # Safety
    /// `page` is ours and in no queue.
    unsafe fn release_page(&mut self, page: *mut Page) {
        // SAFETY: per the contract.
        unsafe {
            self.collect(page);
            if (*page).used == 0 {
                self.page_free(page);
            }
        }
    }

    /// Adopt one abandoned segment: its pages join our queues. Returns false
    /// when there was none.
    fn adopt_abandoned(&mut self) -> bool {
        let Some(segment) = self.global.take_abandoned() else {
            return false;
        };
        // SAFETY: take_abandoned hands us exclusive ownership of a live segment.
        unsafe {
            debug_assert_eq!((*segment).owner.load(Ordering::Relaxed), ABANDONED_OWNER);
            (*segment).owner.store(self as *mut Self as usize, Ordering::Release);
            let kind = (*segment).kind as usize;
            self.segments[kind].push_front(segment);
            self.dirty_bytes += ((*segment).dirty.count_ones() as usize) << (*segment).page_shift;
            for index in 0..(*segment).page_count as usize {
                let page = &raw mut (*segment).pages[index];
                if (*page).flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0 {
                    continue;
                }
                self.collect(page);
                if (*page).used == 0 {
                    self.page_free(page);
                } else {
                    self.queues[(*page).class as usize].push_back(page);
                    let class = (*page).class as usize;
                    self.direct[class] = self.queues[class].first;
                }
            }
        }
        true
    }

    /// Return what this heap can: collect remote frees, free every empty
    /// page, purge unused small pages. Returns bytes purged.
    pub(crate) fn trim(&mut self) -> usize {
        self.drain_delayed();
        for class in 0..CLASS_COUNT {
            let mut page = self.queues[class].first;
            while !page.is_null() {
                // SAFETY: queued pages are ours.
                unsafe {
                    let next = (*page).next;
                    self.collect(page);
                    if (*page).used == 0 {
                        self.queue_remove(page);
                        self.page_free(page);
                    }
                    page = next;
                }
            }
        }
        self.purge_dirty()
    }

    /// Whether `ptr`'s segment belongs to this heap.
    pub fn owns(&self, ptr: *const u8) -> bool {
        let segment = Segment::of_ptr(ptr);
        crate::segment::segment_is_known(segment)
            // SAFETY: the segment map says the header is mapped.
            && unsafe { (*segment).owner.load(Ordering::Relaxed) } == self as *const Self as usize
    }

    /// A pointer to this heap, for [`Global::free`].
    pub fn as_ptr(&mut self) -> NonNull<Heap<P>> {
        NonNull::from(self)
    }

    /// Walk every structure and check the invariants in the module docs.
    /// Test and debugging aid: O(heap size).
    #[cfg(any(test, feature = "check-invariants"))]
    pub fn check_invariants(&self) {
        let me = self as *const Self as usize;
        for class in 0..CLASS_COUNT {
            let queue = &self.queues[class];
            let expected = if queue.first.is_null() { empty_page() } else { queue.first };
            assert_eq!(self.direct[class], expected, "direct[{class}] is not the queue head");
            let mut page = queue.first;
            while !page.is_null() {
                // SAFETY: queued pages are ours and live.
                unsafe {
                    assert_eq!((*page).class as usize, class);
                    assert_eq!((*page).flags.load(Ordering::Relaxed) & (PAGE_FULL | PAGE_UNUSED), 0);
                    let free = (*page).count_free(self.list_key) as u16;
                    assert!((*page).used + free <= (*page).capacity, "page accounting");
                    assert!((*page).capacity <= (*page).reserved);
                    let segment = Segment::of_ptr(page as *const u8);
                    assert_eq!((*segment).owner.load(Ordering::Relaxed), me);
                    page = (*page).next;
                }
            }
        }
        for kind in 0..PAGED_KINDS {
            let mut segment = self.segments[kind].first;
            while !segment.is_null() {
                // SAFETY: our segments are live.
                unsafe {
                    let used = (0..(*segment).page_count as usize)
                        .filter(|&i| (*segment).pages[i].flags.load(Ordering::Relaxed) & PAGE_UNUSED == 0)
                        .count();
                    assert_eq!(used, (*segment).used_pages as usize, "used_pages");
                    for i in 0..(*segment).page_count as usize {
                        if (*segment).dirty & (1 << i) != 0 {
                            assert!((*segment).pages[i].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0, "dirty page in use");
                        }
                    }
                    assert_eq!((*segment).owner.load(Ordering::Relaxed), me);
                    segment = (*segment).next;
                }
            }
        }
    }
}

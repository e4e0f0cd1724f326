//! malloc, from the entry to the block pop, and everything it falls back
//! to: the refill path, aligned and zeroed allocation, realloc.
//!
//! ```text
//!  Heap::malloc(size) --- size <= SMALL_MAX: direct[small_slot(size)]->pop() --- block
//!        |               size <= MEDIUM_MAX: current[mid_class_of(size)]->pop()
//!        | empty page, larger size
//!  malloc_slow --------- huge (> LARGE_MAX): HugeBlocks::alloc
//!        |
//!  alloc_class --------- current[class]->pop(), else
//!  alloc_class_slow ----- drain delayed frees, purge if due, then per page
//!                         of the class: collect remote frees, carve more,
//!                         keep it queued (the first KEPT_FULL_PAGES full
//!                         ones) or retire it to the full queue; adopt an
//!                         abandoned segment; else a fresh page; out of
//!                         memory: a block of a larger class
//!
//!  Heap::realloc_in_place - a remembered segment, a block start below the
//!                         page's fast_capacity, the size within its block
//!                         and at least half of it: the same pointer
//!  Heap::realloc -------- in place (any block), huge to huge (the mapping
//!                         moves), else malloc + copy + free; a block grown
//!                         past GROW_REMAP_MIN is copied into a huge block
//! ```
//!
//! The fast path ([`Heap::malloc`]) is a table lookup, one load and test,
//! the link check and four stores; everything else is `#[cold]`.

use crate::class::{class_of, class_stride, mid_class_of, small_slot, CLASS_COUNT};
use crate::config::{KEPT_FULL_PAGES, LARGE_MAX, MAX_REQUEST, MEDIUM_MAX, MIN_ALIGN, REFILLS_PER_PURGE_CHECK, SEGMENT_HEADER_BYTES, SEGMENT_SIZE, SMALL_MAX};
use crate::heap::{empty_page, Heap};
use crate::page::{Block, Page, PAGE_ALIGNED, PAGE_FULL};
use crate::provider::PageProvider;
use crate::segment::Segment;
use crate::strict::STRICT_TAIL;
use core::ptr::{null_mut, NonNull};

/// A block that realloc grows past this many bytes (and up to `LARGE_MAX`)
/// is copied into a huge block, a mapping of its own, rather than a
/// block of the next class: its next growth moves pages instead of
/// copying them (`HugeBlocks::realloc`), so a buffer grown by doubling is
/// copied only while it is small. glibc's mmap threshold (128 KiB) plays
/// the same part. Above `LARGE_MAX` every block is huge anyway (in the
/// small geometry, whose `LARGE_MAX` is this, always). Huge blocks above
/// it resize by remapping, shrinking ones included.
pub const GROW_REMAP_MIN: usize = 128 << 10;

/// The least calloc asks about residency for (`Heap::zero_block`): below
/// it the system call costs a good part of the memset it may save.
pub const CALLOC_PURGE_MIN: usize = 128 << 10;

impl<P: PageProvider + 'static> Heap<P> {
    /// Allocate `size` bytes, 16-byte aligned. Null when out of memory.
    /// Budget: table lookup, one load, one test, the link check, four stores.
    #[inline(always)]
    pub fn malloc(&mut self, size: usize) -> *mut u8 {
        let block = self.malloc_fast(size);
        if !block.is_null() {
            return block;
        }
        self.malloc_slow(size)
    }

    /// The fast path alone: a block of the current page of the size's
    /// class, or null when [`Heap::malloc`] must take its slow path (for
    /// entry points that keep the slow path out of line). Takes `&self`:
    /// it changes pages and the malloc counter, which are cells and
    /// atomics, never the heap's own fields, so it serves an inert heap
    /// ([`Heap::inert`]) shared by threads that have none (null, always).
    #[inline(always)]
    pub fn malloc_fast(&self, size: usize) -> *mut u8 {
        if size <= SMALL_MAX {
            return self.pop_counted(self.direct[small_slot(size)]);
        }
        self.malloc_fast_mid(size)
    }

    /// The fast path of the sizes above `SMALL_MAX`: a block of the
    /// current page of a mid class, or null. Inline: out of line, its call
    /// and the frame around it cost a mid malloc nine instructions, and the
    /// small path is the same run of instructions either way.
    #[inline(always)]
    pub fn malloc_fast_mid(&self, size: usize) -> *mut u8 {
        if size <= MEDIUM_MAX {
            let class = mid_class_of(size);
            if let Some(block) = self.block_cache.pop(class) {
                // SAFETY: a cached block is a free block of this heap's (block_cache.rs).
                unsafe { (*block).marker = 0 };
                self.count_malloc();
                crate::debug_count!(mallocs_block_cache);
                return block as *mut u8;
            }
            return self.pop_counted(self.current[class]);
        }
        null_mut()
    }

    /// The fast path's pop: a block of `page` (the page counts the malloc),
    /// or null.
    #[inline(always)]
    fn pop_counted(&self, page: *mut Page) -> *mut u8 {
        // SAFETY: direct and current entries point to live pages of this
        // heap or to EMPTY_PAGE (whose free list is null: pop returns null).
        unsafe { (*page).pop(self.list_key, |block| self.taken_wrapped(block)) as *mut u8 }
    }

    /// Everything the fast path does not serve (for entry points that tried
    /// [`Heap::malloc_fast`] already): sizes up to `MEDIUM_MAX` whose page
    /// is empty, and every larger request.
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn malloc_slow(&mut self, size: usize) -> *mut u8 {
        if self.strict {
            return self.malloc_strict(size);
        }
        if size > LARGE_MAX {
            return self.huge_alloc(size, MIN_ALIGN).map_or(null_mut(), |(p, _)| p);
        }
        self.count_malloc();
        if size > MEDIUM_MAX {
            self.large_malloc_sweep();
        }
        let block = self.alloc_class(class_of(size));
        if self.shared.memory.profile.is_on() {
            // Not a tail call: this frame stays on the stack, where the
            // sampler counts the frames it leaves out (sampling.rs).
            return core::hint::black_box(self.sample_paged(block, size));
        }
        block
    }

    /// A huge block, counted (and sampled when profiling); see
    /// `HugeBlocks::alloc`. Out of line: a frame of its own, which the
    /// sampler leaves out of the stack.
    #[inline(never)]
    pub(crate) fn huge_alloc(&mut self, size: usize, align: usize) -> Option<(*mut u8, bool)> {
        self.huge_alloc_with_room(size, align, 0)
    }

    /// [`Heap::huge_alloc`] in a mapping of at least `room` bytes
    /// ([`HugeBlocks::alloc_with_room`]).
    pub(crate) fn huge_alloc_with_room(&mut self, size: usize, align: usize, room: usize) -> Option<(*mut u8, bool)> {
        self.count_malloc();
        let shared = self.shared;
        let huge = shared.huge.alloc_with_room(&shared.memory, size, align, room);
        // Out of memory: the caches may hold what the request needs.
        let huge = huge.or_else(|| if shared.release_caches() > 0 { shared.huge.alloc_with_room(&shared.memory, size, align, room) } else { None });
        if let Some((block, _)) = huge {
            // Not in tail position: this frame stays, and is left out.
            self.sample_huge(block, size, 1);
        }
        huge
    }

    /// Pop a block of `class` from the current page (its queue's head),
    /// carving more of it when it has room (the common refill), or take
    /// the refill path.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub(crate) fn alloc_class(&mut self, class: usize) -> *mut u8 {
        // The queue's head, not `current[class]`: the two are the same
        // page except while profiling, when `current` stays EMPTY_PAGE.
        let first = self.queues[class].first;
        let page = if first.is_null() { empty_page() } else { first };
        // SAFETY: queued pages are live pages of this heap; EMPTY_PAGE is
        // never written.
        unsafe {
            let block = self.page_pop(page);
            if !block.is_null() {
                return block;
            }
            if page != empty_page() && !(*page).has_free() && (*page).extend(self.list_key) {
                return self.page_pop(page);
            }
        }
        self.alloc_class_slow(class)
    }

    /// Out of memory for `class`: a free block of any larger class, from
    /// pages this heap already has: in a full arena, the room left in other
    /// classes' pages still serves. A block belongs to its page, so nothing
    /// else changes; the caller gets more usable bytes, aligned to
    /// `MIN_ALIGN` only (`malloc_aligned` checks the blocks it takes so).
    /// Null when there is none.
    #[cold]
    fn alloc_from_larger_class(&mut self, class: usize) -> *mut u8 {
        for larger in class + 1..CLASS_COUNT {
            let mut page = self.queues[larger].first;
            while !page.is_null() {
                // SAFETY: pages in our queues are live pages of our segments.
                unsafe {
                    if self.make_room(page) {
                        return self.page_pop(page);
                    }
                    page = (*page).next.get();
                }
            }
        }
        null_mut()
    }

    /// Give a queued page free blocks if it can have them: collect its
    /// remote frees, then carve more of it. True when it has a free block.
    ///
    /// # Safety
    /// `page` is a live page in one of this heap's queues.
    unsafe fn make_room(&mut self, page: *mut Page) -> bool {
        // SAFETY: per the contract.
        unsafe {
            self.collect(page);
            if !(*page).has_free() {
                (*page).extend(self.list_key);
            }
            (*page).has_free()
        }
    }

    /// Pop from `page`'s free list (null when it is empty); aborts when the
    /// list is corrupt.
    ///
    /// # Safety
    /// `page` is EMPTY_PAGE or a live page of this heap.
    unsafe fn page_pop(&mut self, page: *mut Page) -> *mut u8 {
        // SAFETY: per the contract.
        unsafe {
            let block = (*page).pop(self.list_key, |block| self.taken_wrapped(block));
            if block.is_null() {
                if (*page).has_free() {
                    self.shared.memory.fatal_at("corrupted free list (use after free?) at ", (*page).free.get() as usize);
                }
            } else {
                crate::block_purge::forget_mark::<P>(block as *mut u8, (*page).block_size as usize);
                // The slow paths count the call themselves (malloc_slow,
                // malloc_strict), and the page counted the pop.
                self.uncount_malloc();
            }
            block as *mut u8
        }
    }

    /// Find a page of `class` with a free block, or make one. The refill
    /// path: collects remote frees, carves fresh blocks, retires full pages.
    #[cold]
    #[inline(never)]
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    fn alloc_class_slow(&mut self, class: usize) -> *mut u8 {
        crate::debug_count!(refills);
        self.hand_over_pending();
        self.drain_delayed();
        // Pages become dirty on the release path, which checks every time;
        // here, for a heap that no longer releases, one refill in
        // REFILLS_PER_PURGE_CHECK does (the check reads the clock).
        self.refills_unchecked += 1;
        if self.refills_unchecked >= REFILLS_PER_PURGE_CHECK {
            self.refills_unchecked = 0;
            self.purge_if_due();
        }
        for attempt in 0..2 {
            let mut page = self.queues[class].first;
            let mut kept = 0;
            let mut first_kept = null_mut();
            while !page.is_null() && page != first_kept {
                // SAFETY: pages in our queues are live pages of our segments.
                unsafe {
                    if self.make_room(page) {
                        if self.queues[class].first != page {
                            self.queues[class].remove(page);
                            self.queues[class].push_front(page);
                        }
                        self.set_current(class, page);
                        crate::debug_count!(refill_queued_pages);
                        return self.page_pop(page);
                    }
                    let next = (*page).next.get();
                    if kept < KEPT_FULL_PAGES {
                        // Stays queued, at the back, walked again by a later
                        // refill: its frees take the fast path meanwhile.
                        kept += 1;
                        if !next.is_null() {
                            if first_kept.is_null() {
                                first_kept = page;
                            }
                            self.queues[class].remove(page);
                            self.queues[class].push_back(page);
                        }
                        page = next;
                        continue;
                    }
                    if (*page).try_set_delayed() {
                        self.queue_remove(page);
                        (*page).set_flags(PAGE_FULL);
                        self.full.push_back(page);
                        crate::debug_count!(pages_retired_full);
                        page = next;
                    }
                    // else: remote frees arrived meanwhile; look again.
                }
            }
            if attempt == 0 && !self.adopt_abandoned() {
                break;
            }
            crate::debug_count!(refill_adoptions);
        }
        let mut page = self.page_alloc(class);
        if page.is_null() {
            // Out of memory: this heap's empty pages of other classes may
            // hold what a new page needs (in a fixed arena, they do).
            self.trim();
            page = self.page_alloc(class);
        }
        if page.is_null() {
            // Out of memory: the walk may have moved the queue's head.
            self.current_from_queue(class);
            return self.alloc_from_larger_class(class);
        }
        crate::debug_count!(refill_fresh_pages);
        // SAFETY: page was just initialised for this class and is ours.
        unsafe {
            self.queues[class].push_front(page);
            self.set_current(class, page);
            (*page).extend(self.list_key);
            self.page_pop(page)
        }
    }

    // ------------------------------------------------------------------
    // aligned, zeroed, resized

    /// Allocate `size` bytes aligned to `align` (a power of two).
    pub fn malloc_aligned(&mut self, size: usize, align: usize) -> *mut u8 {
        debug_assert!(align.is_power_of_two());
        if align <= MIN_ALIGN {
            return self.malloc(size);
        }
        if size > MAX_REQUEST || align > MAX_REQUEST {
            return null_mut();
        }
        // Blocks of a class whose stride is a multiple of `align` are aligned
        // already when the page start is (pages start at 8 KiB multiples).
        // (Not in strict mode, whose blocks are of the class of size + STRICT_TAIL.)
        if size <= LARGE_MAX && align <= SEGMENT_HEADER_BYTES && !self.strict && class_stride(class_of(size)).is_multiple_of(align) {
            let block = self.malloc(size);
            // Out of memory, a larger class's block may serve (see
            // alloc_from_larger_class), aligned to MIN_ALIGN only.
            if (block as usize).is_multiple_of(align) {
                return block;
            }
            // SAFETY: a live block this heap's malloc just returned.
            unsafe { crate::free::free(self.shared, self, block, core::ptr::null_mut) };
        }
        // A zero size still needs one byte after the aligned start: padding
        // 0 bytes would round the start up past the end of a 16-byte block.
        let padded = size.max(1) + align - MIN_ALIGN;
        let paged_max = if self.strict { LARGE_MAX - STRICT_TAIL } else { LARGE_MAX };
        if padded > paged_max {
            return self.huge_alloc(size, align).map_or(null_mut(), |(p, _)| p);
        }
        let block = self.malloc(padded);
        if block.is_null() {
            return block;
        }
        let aligned = (block as usize + align - 1) & !(align - 1);
        // SAFETY: block is a live block of a page of this heap, holding
        // `padded` bytes (and the strict tail after them when strict).
        unsafe {
            if aligned != block as usize {
                let page = Segment::page_of_block(block);
                (*page).set_flags(PAGE_ALIGNED);
            }
            if self.strict {
                self.reseal_strict(block, aligned as *mut u8, size);
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
        // A mid or large block malloc takes from a page, not from the
        // block cache (whose blocks the program may have written); for a
        // small one, a memset within one OS page is cheaper than the looks.
        let from_page = total > SMALL_MAX && !(total <= MEDIUM_MAX && self.block_cache.cached(class_of(total)));
        // The bytes of the block that may not be zero.
        let (p, dirty) = if total > LARGE_MAX {
            let (p, zeroed) = self.huge_alloc(total, MIN_ALIGN).unwrap_or((null_mut(), false));
            (p, if zeroed { 0 } else { total })
        } else if let Some(fresh) = from_page.then(|| self.fresh_zeroed_block(total)).flatten() {
            (fresh, 0)
        } else {
            let p = self.malloc(total);
            // SAFETY: p, when not null, is a block malloc just popped.
            let carved_only = from_page && !p.is_null() && unsafe { self.never_handed_out(p) };
            (p, if carved_only { core::mem::size_of::<Block>() } else { total })
        };
        if !p.is_null() {
            // SAFETY: p is a fresh block of at least total >= dirty bytes
            // (a paged block above SMALL_MAX holds a Block).
            unsafe { self.zero_block(p, dirty) };
        }
        p
    }

    /// Zero the first `bytes` of the fresh block `p`. From
    /// `CALLOC_PURGE_MIN` bytes, when most of its whole OS pages are not
    /// resident (the block's last use wrote few of them), they are purged
    /// instead where the provider's purge zeroes: they come back zero when
    /// the program first touches them, so a table used sparsely costs the
    /// pages it writes, where a memset would make all of them resident. A
    /// block mostly resident (its last use wrote it) is memset: a program
    /// that fills its calloc'd arrays would otherwise fault every page in
    /// again (several times the memset's time).
    ///
    /// # Safety
    /// `p` is a block of this heap's, just allocated, of at least `bytes`.
    unsafe fn zero_block(&self, p: *mut u8, bytes: usize) {
        let os_page = P::PAGE_SIZE;
        let (start, end) = ((p as usize).next_multiple_of(os_page), (p as usize + bytes) & !(os_page - 1));
        // SAFETY: per the contract, [p, p + bytes) is ours to write, and
        // the pages asked about and purged lie inside it.
        unsafe {
            if P::PURGE_ZEROES && bytes >= CALLOC_PURGE_MIN && !self.strict && end > start {
                let inner = NonNull::new_unchecked(start as *mut u8);
                let pages = (end - start) / os_page;
                if self.shared.memory.provider().resident_pages(inner, end - start).is_some_and(|resident| resident * 2 < pages) {
                    core::ptr::write_bytes(p, 0, start - p as usize);
                    self.shared.memory.purge(start, end - start);
                    core::ptr::write_bytes(end as *mut u8, 0, p as usize + bytes - end);
                    return;
                }
            }
            core::ptr::write_bytes(p, 0, bytes);
        }
    }

    /// For calloc: whether `block`, just popped from a page, was carved
    /// from a page taken zeroed and never handed out before (no block has
    /// come back to the page since it was taken: page.rs invariants), so
    /// that only its link may not be zero.
    ///
    /// # Safety
    /// `block` was just popped by this heap's malloc.
    unsafe fn never_handed_out(&self, block: *mut u8) -> bool {
        if self.strict {
            return false;
        }
        // SAFETY: per the contract, a block of a page of ours.
        unsafe {
            let segment = Segment::of_ptr(block);
            let page = Segment::page_of(segment, block);
            (*page).flags.load(core::sync::atomic::Ordering::Relaxed) == 0 && Segment::page_zeroed(segment, page) && (*page).none_returned()
        }
    }

    /// For calloc: a block for `size` bytes (a mid or large class whose
    /// malloc takes from a page, not from the block cache: the caller
    /// checked) that is zero as it is, when the malloc it replaces would
    /// have carved one: the class's current page has no free block, was
    /// taken zeroed (`Segment::zeroed`) and has blocks left to carve. Its
    /// pages stay untouched until the program writes them (a fresh calloc'd
    /// array costs no memory for what it never uses, and no time to zero
    /// what is zero). Else `None`.
    fn fresh_zeroed_block(&mut self, size: usize) -> Option<*mut u8> {
        let page = self.current[class_of(size)];
        // SAFETY: current entries are live pages of this heap or EMPTY_PAGE
        // (no block to carve: null before its segment is looked at); a
        // page's segment header is mapped while the page is in use.
        unsafe {
            if (*page).has_free() || (*page).capacity() >= (*page).reserved {
                return None;
            }
            if !Segment::page_zeroed(Segment::of_ptr(page as *const u8), page) {
                return None;
            }
            let block = (*page).take_uncarved(|block| self.taken_wrapped(block));
            (!block.is_null()).then_some(block as *mut u8)
        }
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

    /// realloc's fast path: `ptr` itself when it starts a carved block of a
    /// segment this heap remembers, on a page with no flag set (so not
    /// strict, sampled, aligned or full), and `size` fits the block without
    /// leaving more than half of it unused; else `None` ([`Heap::realloc`]
    /// decides). Nothing is written: a string grown one append at a time
    /// takes this path on all but a few of its reallocs.
    ///
    /// # Safety
    /// `ptr` is null or a live block from this allocator.
    #[inline(always)]
    pub unsafe fn realloc_in_place(&self, ptr: *mut u8, size: usize) -> Option<*mut u8> {
        let page = self.remembered_page_of(ptr)?;
        // SAFETY: a remembered segment is mapped and ours (`local_segments`).
        unsafe {
            let usable = (*page).block_size as usize;
            let fits = (size <= usable) & (size >= usable / 2);
            ((*page).starts_fast_block(ptr) & fits).then_some(ptr)
        }
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
        // SAFETY: ptr is a live block (caller); in a segment the heap
        // remembers (mapped and ours) it needs no segment-map check, and
        // Shared::usable_size validates it otherwise.
        let (usable, huge) = unsafe {
            match self.remembered_segment_of(ptr) {
                Some((segment, _)) => (Segment::usable_size(segment, ptr), false),
                None => (self.shared.usable_size(ptr), Segment::is_huge(Segment::of_ptr(ptr))),
            }
        };
        // (While profiling, a resized block is a new allocation, sampled
        // as such, and the old one is forgotten by its free.)
        if self.strict {
            // SAFETY: ptr is live (the contract).
            if let Some(same) = unsafe { self.realloc_strict_in_place(ptr, size) } {
                return same;
            }
        } else if size <= usable && size >= usable / 2 && !self.shared.memory.profile.is_on() {
            return ptr;
        }
        if huge && size > GROW_REMAP_MIN.min(LARGE_MAX) {
            // Huge to huge: move or grow the mapping instead of copying.
            // SAFETY: ptr is a live huge block the caller hands over.
            if let Some(moved) = unsafe { self.shared.huge.realloc(&self.shared.memory, ptr, size) } {
                self.count_malloc();
                self.shared.memory.profile.forget(ptr as usize);
                self.sample_huge(moved, size, 0);
                return moved;
            }
        }
        let grows = size > usable && !self.strict;
        // A paged block grown past GROW_REMAP_MIN moves, once, into a huge
        // block with room to grow in place. Only where the provider maps
        // virtual memory (it moves pages between mappings): there the
        // room's untouched pages cost nothing, in an arena they would be
        // memory taken.
        let huge_new = if P::CAN_MOVE && grows && size > GROW_REMAP_MIN && size <= LARGE_MAX {
            self.huge_alloc_with_room(size, MIN_ALIGN, SEGMENT_SIZE).map(|(p, _)| p)
        } else {
            None
        };
        // Else (or out of memory for it) a block that grows by copying grows
        // by at least a quarter (up to the paged sizes): a buffer grown by
        // small appends is copied a bounded number of times per doubling,
        // not once per size class. (Not in strict mode: a strict block's
        // usable size is the one asked for, and it grows in place up to its
        // class's size.)
        let new = huge_new.unwrap_or_else(|| {
            let target = if grows && size <= LARGE_MAX { size.max((usable + usable / 4).min(LARGE_MAX)) } else { size };
            self.malloc(target)
        });
        // SAFETY: ptr is live and holds at least usable bytes.
        unsafe { self.move_block(ptr, new, usable.min(size)) }
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
        // SAFETY: per the contract.
        unsafe { self.move_block(ptr, new, old_size.min(new_size)) }
    }

    /// Copy `bytes` from `old` into `new` and free `old`; when `new` is null
    /// (out of memory) leave `old` alone. Returns `new`.
    ///
    /// # Safety
    /// `old` is a live block holding at least `bytes`; `new` is null or a
    /// fresh block of at least `bytes`.
    unsafe fn move_block(&mut self, old: *mut u8, new: *mut u8, bytes: usize) -> *mut u8 {
        if !new.is_null() {
            // SAFETY: per the contract; the blocks are distinct.
            unsafe {
                core::ptr::copy_nonoverlapping(old, new, bytes);
                crate::free::free(self.shared, self, old, core::ptr::null_mut);
            }
        }
        new
    }
}

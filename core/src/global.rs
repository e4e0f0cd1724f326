//! Process-wide state: the provider, the segment cache, the abandoned
//! segments, the heap pool, huge blocks, counters, and the free dispatch.
//!
//! ```text
//!  Global<P>
//!  provider ------------> map / unmap / purge
//!  segment_cache (lock) -> seg -> seg            empty segments, purged, kept mapped
//!  abandoned (lock) -----> seg <-> seg           segments of exited threads
//!  heaps (lock) ---------> free heaps; all heaps ever made (never unmapped)
//!  huge (lock) ----------> BigCache + release batch  (see huge.rs)
//! ```
//!
//! Lock order: heaps -> abandoned -> segment_cache -> huge; no lock is held
//! while calling back into a heap. Only slow paths take these locks.

use crate::class::SegmentKind;
use crate::config::{
    DEFAULT_BIGCACHE_BYTES, DEFAULT_PURGE_DELAY_MS, DEFAULT_PURGE_DIRTY_BYTES, DEFAULT_SEGMENT_CACHE, HEAP_CHUNK_BYTES, MAX_PAGES_PER_SEGMENT,
    SEGMENT_HEADER_BYTES, SEGMENT_SIZE,
};
use crate::heap::Heap;
use crate::huge::HugeCache;
use crate::list::List;
use crate::message::MessageBuffer;
use crate::page::{Block, Page, PAGE_ALIGNED, PAGE_UNUSED};
use crate::provider::PageProvider;
use crate::segment::{
    segment_is_known, segment_map_insert, segment_map_remove, Segment, ABANDONED_OWNER,
    CACHED_OWNER, HUGE_OWNER,
};
use crate::stats::{Mapping, Stats, StatsSnapshot};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;

/// Tunables an embedder may set before (or while) allocating.
pub struct Options {
    /// Empty segments kept mapped for reuse.
    pub segment_cache: AtomicUsize,
    /// Bytes of freed huge blocks kept for reuse.
    pub bigcache_bytes: AtomicUsize,
    /// Dirty (freed, unpurged) page bytes a heap keeps before purging.
    pub purge_dirty_bytes: AtomicUsize,
    /// Milliseconds freed pages stay resident before they are purged.
    pub purge_delay_ms: AtomicUsize,
}

/// Segments in a list behind a lock.
pub(crate) struct SegmentStack {
    pub list: List<Segment>,
    pub count: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl Send for SegmentStack {}

impl SegmentStack {
    /// Take the first segment (null when empty).
    fn pop(&mut self) -> *mut Segment {
        let segment = self.list.pop_front();
        if !segment.is_null() {
            self.count -= 1;
        }
        segment
    }

    /// # Safety
    /// `segment` is live and in no list.
    unsafe fn push(&mut self, segment: *mut Segment) {
        // SAFETY: per the contract.
        unsafe { self.list.push_back(segment) };
        self.count += 1;
    }

    /// # Safety
    /// `segment` is in this stack.
    unsafe fn remove(&mut self, segment: *mut Segment) {
        // SAFETY: per the contract.
        unsafe { self.list.remove(segment) };
        self.count -= 1;
    }
}

pub(crate) struct HeapPool<P: PageProvider + 'static> {
    free: *mut Heap<P>,
    all: *mut Heap<P>,
    chunk_next: usize,
    chunk_end: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl<P: PageProvider> Send for HeapPool<P> {}

/// Everything shared by all heaps of one allocator instance.
pub struct Global<P: PageProvider + 'static> {
    provider: P,
    keys: spin::Once<(usize, usize)>,
    segment_cache: Mutex<SegmentStack>,
    abandoned: Mutex<SegmentStack>,
    abandoned_count: AtomicUsize,
    heaps: Mutex<HeapPool<P>>,
    pub(crate) huge: Mutex<HugeCache>,
    pub stats: Stats,
    pub options: Options,
}

impl<P: PageProvider + 'static> Global<P> {
    pub const fn new(provider: P) -> Self {
        Global {
            provider,
            keys: spin::Once::new(),
            segment_cache: Mutex::new(SegmentStack { list: List::new(), count: 0 }),
            abandoned: Mutex::new(SegmentStack { list: List::new(), count: 0 }),
            abandoned_count: AtomicUsize::new(0),
            heaps: Mutex::new(HeapPool { free: null_mut(), all: null_mut(), chunk_next: 0, chunk_end: 0 }),
            huge: Mutex::new(HugeCache::new()),
            stats: Stats::new(),
            options: Options {
                segment_cache: AtomicUsize::new(DEFAULT_SEGMENT_CACHE),
                bigcache_bytes: AtomicUsize::new(DEFAULT_BIGCACHE_BYTES),
                purge_dirty_bytes: AtomicUsize::new(DEFAULT_PURGE_DIRTY_BYTES),
                purge_delay_ms: AtomicUsize::new(DEFAULT_PURGE_DELAY_MS),
            },
        }
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// (list key, marker key), drawn once from the provider's entropy.
    pub(crate) fn keys(&self) -> (usize, usize) {
        *self.keys.call_once(|| {
            let mut seed = self.provider.random_seed() ^ (self as *const Self as u64);
            let list_key = splitmix64(&mut seed) as usize & !0xf;
            let marker_key = splitmix64(&mut seed) as usize | 1;
            (list_key, marker_key)
        })
    }

    // ------------------------------------------------------------------
    // errors

    /// Abort with `hakmem: <what><address>`.
    #[cold]
    pub fn fatal_at(&self, what: &str, address: usize) -> ! {
        let mut m = MessageBuffer::new();
        m.push_str("hakmem: ").push_str(what).push_hex(address).push_str("\n");
        self.provider.fatal(m.as_bytes())
    }

    // ------------------------------------------------------------------
    // heaps

    /// A heap for the calling thread (or null when out of memory).
    pub fn heap_acquire(&'static self) -> *mut Heap<P> {
        let (list_key, marker_key) = self.keys();
        let heap = {
            let mut pool = self.heaps.lock();
            if !pool.free.is_null() {
                let heap = pool.free;
                // SAFETY: pooled heaps are live, initialised and unused.
                pool.free = unsafe { (*heap).pool_next };
                heap
            } else {
                let size = core::mem::size_of::<Heap<P>>().next_multiple_of(64);
                if pool.chunk_next + size > pool.chunk_end {
                    let Some(chunk) = self.provider.map(HEAP_CHUNK_BYTES, P::PAGE_SIZE) else {
                        return null_mut();
                    };
                    self.stats.mapped(HEAP_CHUNK_BYTES, Mapping::Metadata);
                    pool.chunk_next = chunk.as_ptr() as usize;
                    pool.chunk_end = pool.chunk_next + HEAP_CHUNK_BYTES;
                }
                let heap = pool.chunk_next as *mut Heap<P>;
                pool.chunk_next += size;
                // SAFETY: the slot is fresh, aligned (64) and large enough.
                unsafe {
                    heap.write(Heap::new(self, list_key, marker_key));
                    (*heap).all_next = pool.all;
                }
                pool.all = heap;
                heap
            }
        };
        self.stats.heaps_live.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the heap is ours now; a reused heap may hold delayed
        // frees that arrived after its last owner left.
        unsafe { (*heap).drain_delayed() };
        heap
    }

    /// Abandon `heap` (its thread is exiting) and return it to the pool.
    ///
    /// # Safety
    /// `heap` came from `heap_acquire` and no thread uses it any more.
    pub unsafe fn heap_release(&'static self, heap: *mut Heap<P>) {
        // SAFETY: per the contract, we are the heap's last user.
        unsafe {
            (*heap).abandon();
            let mut pool = self.heaps.lock();
            (*heap).pool_next = pool.free;
            pool.free = heap;
        }
        self.stats.heaps_live.fetch_sub(1, Ordering::Relaxed);
    }

    // ------------------------------------------------------------------
    // segments

    /// An empty segment of `kind`, from the cache or the provider.
    pub(crate) fn segment_alloc(&self, kind: SegmentKind) -> *mut Segment {
        let cached = self.segment_cache.lock().pop();
        let segment = if !cached.is_null() {
            cached
        } else {
            let Some(memory) = self.provider.map(SEGMENT_SIZE, SEGMENT_SIZE) else {
                return null_mut();
            };
            let segment = memory.as_ptr() as *mut Segment;
            self.stats.mapped(SEGMENT_SIZE, Mapping::Segment);
            // SAFETY: fresh memory, large enough for the header.
            unsafe {
                segment.write(Segment {
                    owner: AtomicUsize::new(CACHED_OWNER),
                    kind,
                    page_shift: 0,
                    page_count: 0,
                    used_pages: 0,
                    dirty: 0,
                    next: null_mut(),
                    prev: null_mut(),
                    map_base: memory.as_ptr(),
                    map_size: SEGMENT_SIZE,
                    huge_offset: 0,
                    huge_size: 0,
                    huge_state: AtomicUsize::new(0),
                    pages: [const { Page::UNUSED }; MAX_PAGES_PER_SEGMENT],
                });
            }
            segment_map_insert(segment);
            segment
        };
        // SAFETY: the segment is empty and exclusively ours.
        unsafe {
            (*segment).kind = kind;
            (*segment).page_shift = kind.page_shift() as u8;
            (*segment).page_count = (SEGMENT_SIZE >> kind.page_shift()) as u8;
            (*segment).used_pages = 0;
            (*segment).dirty = 0;
        }
        segment
    }

    /// Take back a segment none of whose pages is in use.
    pub(crate) fn segment_free(&self, segment: *mut Segment) {
        // SAFETY: the caller hands over an empty live segment it owned.
        unsafe {
            debug_assert_eq!((*segment).used_pages, 0);
            (*segment).owner.store(CACHED_OWNER, Ordering::Release);
        }
        let limit = self.options.segment_cache.load(Ordering::Relaxed);
        {
            let mut cache = self.segment_cache.lock();
            if cache.count < limit {
                self.purge_segment_body(segment);
                // SAFETY: the segment is in no list now.
                unsafe { cache.push(segment) };
                return;
            }
        }
        self.segment_unmap(segment);
    }

    fn purge_segment_body(&self, segment: *mut Segment) {
        let start = segment as usize + SEGMENT_HEADER_BYTES;
        // SAFETY: the body of an empty segment holds no live data.
        unsafe { self.purge(start, SEGMENT_SIZE - SEGMENT_HEADER_BYTES) };
    }

    fn segment_unmap(&self, segment: *mut Segment) {
        segment_map_remove(segment);
        self.stats.unmapped(SEGMENT_SIZE, Mapping::Segment);
        // SAFETY: the segment is empty, unlisted, and was one mapping.
        unsafe { self.provider.unmap(NonNull::new_unchecked(segment as *mut u8), SEGMENT_SIZE) };
    }

    /// Purge `bytes` at `start` and count them.
    ///
    /// # Safety
    /// The range is page aligned, inside one mapping, and holds nothing live.
    pub(crate) unsafe fn purge(&self, start: usize, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.stats.purged_bytes.fetch_add(bytes, Ordering::Relaxed);
        // SAFETY: per the contract.
        unsafe { self.provider.purge(NonNull::new_unchecked(start as *mut u8), bytes) };
    }

    /// Mark a page that holds no live block unused and dirty (its memory is
    /// resident until purged), and take it off the segment's and the
    /// counters' books. Returns the page's size in bytes.
    ///
    /// # Safety
    /// The caller owns the segment; `page` is one of its pages, in use, with
    /// `used == 0` and in no queue.
    pub(crate) unsafe fn page_release(&self, segment: *mut Segment, page: *mut Page) -> usize {
        // SAFETY: per the contract.
        unsafe {
            let page_bytes = 1usize << (*segment).page_shift;
            (*page).flags.store(PAGE_UNUSED, Ordering::Release);
            (*page).free = null_mut();
            (*segment).dirty |= 1 << Segment::page_index(segment, page);
            (*segment).used_pages -= 1;
            self.stats.pages_in_use.fetch_sub(1, Ordering::Relaxed);
            self.stats.page_bytes_in_use.fetch_sub(page_bytes, Ordering::Relaxed);
            page_bytes
        }
    }

    /// Purge the area of unused page `index` of a segment.
    pub(crate) fn purge_page(&self, segment: *mut Segment, index: usize) {
        // SAFETY: the page is unused; its area lies in the segment.
        unsafe {
            let (start, bytes) = Segment::page_area(segment, index, (*segment).page_shift as usize);
            self.purge(start as usize, bytes);
        }
    }

    /// Purge every dirty unused page of a live segment; returns bytes purged.
    ///
    /// # Safety
    /// The caller owns the segment (its heap, or the abandoned-list lock).
    pub(crate) unsafe fn purge_dirty_pages(&self, segment: *mut Segment) -> usize {
        let mut purged = 0;
        // SAFETY: per the contract.
        unsafe {
            let mut dirty = (*segment).dirty;
            while dirty != 0 {
                let index = dirty.trailing_zeros() as usize;
                dirty &= dirty - 1;
                debug_assert!((*segment).pages[index].flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0);
                self.purge_page(segment, index);
                purged += 1usize << (*segment).page_shift;
            }
            (*segment).dirty = 0;
        }
        purged
    }

    // ------------------------------------------------------------------
    // abandoned segments

    pub(crate) fn abandon_segment(&self, segment: *mut Segment) {
        // SAFETY: the heap hands over a live segment it no longer lists.
        unsafe { (*segment).owner.store(ABANDONED_OWNER, Ordering::Release) };
        // SAFETY: the segment is in no list.
        unsafe { self.abandoned.lock().push(segment) };
        self.abandoned_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn take_abandoned(&self) -> Option<*mut Segment> {
        if self.abandoned_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let segment = self.abandoned.lock().pop();
        if segment.is_null() {
            return None;
        }
        self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
        Some(segment)
    }

    /// Collect the remote frees of abandoned segments; free the pages and
    /// segments that became empty. Returns bytes released.
    fn trim_abandoned(&self) -> usize {
        let (list_key, _) = self.keys();
        let mut released = 0;
        let mut abandoned = self.abandoned.lock();
        let mut segment = abandoned.list.first;
        while !segment.is_null() {
            // SAFETY: the lock gives us exclusive ownership of listed segments.
            unsafe {
                let next = (*segment).next;
                for index in 0..(*segment).page_count as usize {
                    let page = &raw mut (*segment).pages[index];
                    if (*page).flags.load(Ordering::Relaxed) & PAGE_UNUSED != 0 {
                        continue;
                    }
                    if (*page).collect_remote(list_key).is_none() {
                        self.fatal_at("corrupted remote free list in page ", page as usize);
                    }
                    if (*page).used == 0 {
                        self.page_release(segment, page);
                    }
                }
                if (*segment).used_pages == 0 {
                    abandoned.remove(segment);
                    self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
                    released += SEGMENT_SIZE;
                    self.segment_free(segment);
                } else {
                    released += self.purge_dirty_pages(segment);
                }
                segment = next;
            }
        }
        released
    }

    // ------------------------------------------------------------------
    // free

    /// Free `ptr` (null is ignored). `heap` is the calling thread's heap,
    /// or null when it has none; it is only used when it owns the block.
    ///
    /// # Safety
    /// `heap` is null or the calling thread's own heap from this Global.
    /// `ptr` is anything: a pointer hakmem did not return (or returned and
    /// took back) is detected where the segment map allows and aborts.
    #[inline(always)]
    pub unsafe fn free(&'static self, ptr: *mut u8, heap: *mut Heap<P>) {
        if ptr.is_null() {
            return;
        }
        let segment = Segment::of_ptr(ptr);
        if !segment_is_known(segment) {
            self.fatal_at("free(): invalid pointer (not allocated by hakmem, or already freed) ", ptr as usize);
        }
        // SAFETY: the segment map says the header is mapped.
        unsafe {
            if (*segment).owner.load(Ordering::Relaxed) == heap as usize {
                let page = Segment::page_of(segment, ptr);
                (*heap).free_local(page, ptr);
            } else {
                self.free_foreign(segment, ptr, heap);
            }
        }
    }

    /// Free a block the calling thread's heap does not own: a huge block,
    /// a block of another thread's (or an abandoned) segment.
    #[cold]
    #[inline(never)]
    unsafe fn free_foreign(&'static self, segment: *mut Segment, ptr: *mut u8, heap: *mut Heap<P>) {
        // SAFETY: the segment header is mapped (checked by free).
        unsafe {
            if heap.is_null() {
                self.stats.free_calls_unowned.fetch_add(1, Ordering::Relaxed);
            } else {
                (*heap).count_free();
            }
            let owner = (*segment).owner.load(Ordering::Acquire);
            if owner == HUGE_OWNER {
                return self.huge_free(segment, ptr);
            }
            let page = Segment::page_of(segment, ptr);
            let flags = (*page).flags.load(Ordering::Acquire);
            if owner == CACHED_OWNER || flags & PAGE_UNUSED != 0 {
                self.fatal_at("free(): invalid pointer (not allocated by hakmem, or already freed) ", ptr as usize);
            }
            let block = (*page).block_of(ptr);
            if block != ptr && flags & PAGE_ALIGNED == 0 {
                self.fatal_at("free(): invalid pointer (inside a block) ", ptr as usize);
            }
            let block = block as *mut Block;
            let marker = block as usize ^ self.keys().1;
            if (*block).marker == marker {
                self.fatal_at("free(): double free of ", ptr as usize);
            }
            (*block).marker = marker;
            self.push_foreign(segment, page, block);
        }
    }

    /// Hand a marked block to its page's owner: onto the page's remote list,
    /// or, when the page is full, onto the owning heap's delayed list.
    pub(crate) fn push_foreign(&self, segment: *mut Segment, page: *mut Page, block: *mut Block) {
        let (list_key, _) = self.keys();
        loop {
            // SAFETY: the page is live while it has a block in use; we are
            // freeing the block.
            if unsafe { (*page).push_remote(block, list_key) } {
                return;
            }
            // SAFETY: the segment is live (the block is counted in a page).
            let owner = unsafe { (*segment).owner.load(Ordering::Acquire) };
            if owner > CACHED_OWNER {
                // SAFETY: heaps are never unmapped; a stale owner's delayed
                // list is drained by whoever reuses that heap.
                let delayed = unsafe { &(*(owner as *const Heap<P>)).delayed };
                let mut head = delayed.load(Ordering::Relaxed);
                loop {
                    // SAFETY: we own the block being freed.
                    unsafe { (*block).next = head };
                    match delayed.compare_exchange_weak(
                        head,
                        crate::page::encode(block, list_key),
                        Ordering::Release,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(now) => head = now,
                    }
                }
            }
            // The owner is abandoning the segment right now; retry.
            core::hint::spin_loop();
        }
    }

    /// Usable bytes of the block at `ptr` (0 for null).
    ///
    /// # Safety
    /// `ptr` is null or a live block from this allocator.
    pub unsafe fn usable_size(&self, ptr: *const u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        let segment = Segment::of_ptr(ptr);
        if !segment_is_known(segment) {
            self.fatal_at("malloc_usable_size(): invalid pointer ", ptr as usize);
        }
        // SAFETY: the segment header is mapped.
        unsafe {
            if (*segment).owner.load(Ordering::Relaxed) == HUGE_OWNER {
                return segment as usize + (*segment).huge_offset + (*segment).huge_size - ptr as usize;
            }
            let page = Segment::page_of(segment, ptr);
            let block = (*page).block_of(ptr);
            block as usize + (*page).block_size as usize - ptr as usize
        }
    }

    // ------------------------------------------------------------------
    // trim, stats, fork

    /// Give memory back: the calling thread's empty pages (when `heap` is
    /// not null), abandoned segments, the segment cache and the huge cache.
    /// Returns true when something was released.
    ///
    /// # Safety
    /// `heap` is null or the calling thread's own heap.
    pub unsafe fn trim(&'static self, heap: *mut Heap<P>) -> bool {
        let mut released = 0;
        if !heap.is_null() {
            // SAFETY: per the contract.
            released += unsafe { (*heap).trim() };
        }
        released += self.trim_abandoned();
        // Delayed frees parked on pooled heaps whose threads are gone.
        {
            let pool = self.heaps.lock();
            let mut pooled = pool.free;
            while !pooled.is_null() {
                // SAFETY: pooled heaps are unused; the pool lock keeps them so.
                unsafe {
                    (*pooled).drain_delayed();
                    pooled = (*pooled).pool_next;
                }
            }
        }
        loop {
            let segment = self.segment_cache.lock().pop();
            if segment.is_null() {
                break;
            }
            released += SEGMENT_SIZE;
            self.segment_unmap(segment);
        }
        released += self.huge_trim();
        released > 0
    }

    /// A snapshot of all counters, including the live heaps' call counts.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snapshot = self.stats.snapshot();
        let pool = self.heaps.lock();
        let mut heap = pool.all;
        while !heap.is_null() {
            // SAFETY: heaps are never unmapped; counters are atomics.
            unsafe {
                let (mallocs, frees) = (*heap).call_counts();
                snapshot.malloc_calls += mallocs as usize;
                snapshot.free_calls += frees as usize;
                heap = (*heap).all_next;
            }
        }
        snapshot
    }

    /// Take every global lock (before `fork`), so the child never inherits
    /// a lock held by a thread that does not exist there.
    pub fn lock_all(&self) {
        core::mem::forget(self.heaps.lock());
        core::mem::forget(self.abandoned.lock());
        core::mem::forget(self.segment_cache.lock());
        core::mem::forget(self.huge.lock());
    }

    /// Release the locks taken by [`Global::lock_all`].
    ///
    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: lock_all took these locks and forgot the guards.
        unsafe {
            self.huge.force_unlock();
            self.segment_cache.force_unlock();
            self.abandoned.force_unlock();
            self.heaps.force_unlock();
        }
    }
}

/// One step of splitmix64.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

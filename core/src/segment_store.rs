//! The process-wide segment store: empty segments kept for reuse, and the
//! segments of exited threads waiting for another heap to adopt them.
//!
//! ```text
//!  SegmentStore
//!  cache (lock) -----> seg <-> seg       empty, still mapped            owner CACHED_OWNER
//!                      newest first (the warmest is reused first)
//!  abandoned (lock) -> seg <-> seg       pages still in use             owner ABANDONED_OWNER
//!                      adopted oldest first (the most of its blocks freed since);
//!                      taken back, newest first, by the heap that left them
//! ```
//!
//! Segments come in with their dirty pages (freed, not purged) as they
//! are: a thread that exits does not purge, so the threads that follow
//! reuse its memory without page faults. The store purges a segment's
//! dirty pages once each has waited the purge delay (counted from when it
//! became dirty, across owners: `Segment::dirty_ms`; checked on the store's
//! own calls), or at once when the provider has no clock or the delay is 0.
//! The delay is `Memory::store_purge_delay_ms`: the heaps' learned one, at
//! most the configured one; the dirty bytes the store holds are capped by
//! `HAKMEM_PURGE_DIRTY`:
//! beyond it, whole segments are purged, the oldest abandoned first, down
//! to half of it.
//!
//! Invariants: `count` is the length of each list; `dirty_bytes` is the
//! sum of `Segment::dirty_bytes` over the listed segments;
//! `abandoned_count` is `abandoned.count` outside the lock plus the
//! abandoned segments a purge holds out of the list (it lets refill skip
//! the lock when zero); a segment is in at most one list, and a listed
//! segment's `owner` says which; no listed segment has a dirty page due
//! (`dirty_ms + delay`, the delay in force when it was listed) before
//! `next_purge_ms`. No store method is called with a store lock held.
//! Lock order: purging -> abandoned -> cache.

use crate::class::SegmentKind;
use crate::config::{PURGE_BATCH, SEGMENT_SIZE};
use crate::list::List;
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::{segment_map_remove, Segment, ABANDONED_OWNER, CACHED_OWNER};
use crate::stats::Mapping;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Mutex;

/// Abandoned segments, newest first, that a heap reused from the pool
/// looks through for its own (under the abandoned list's lock).
const OWN_LOOK_BACK: usize = 64;

/// Segments in a list behind a lock.
struct SegmentStack {
    list: List<Segment>,
    count: usize,
}

// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl Send for SegmentStack {}

impl SegmentStack {
    const fn new() -> Self {
        SegmentStack { list: List::new(), count: 0 }
    }

    /// Take the first segment (null when empty); its dirty bytes leave
    /// the store's count `dirty`.
    fn pop(&mut self, dirty: &AtomicUsize) -> *mut Segment {
        let segment = self.list.pop_front();
        if !segment.is_null() {
            self.count -= 1;
            // SAFETY: a segment that was listed is live.
            unsafe { uncount_dirty(segment, dirty) };
        }
        segment
    }

    /// Add a segment to be taken first (`first`) or last; its dirty bytes
    /// join the store's count `dirty`.
    ///
    /// # Safety
    /// `segment` is live and in no list.
    unsafe fn push(&mut self, segment: *mut Segment, first: bool, dirty: &AtomicUsize) {
        // SAFETY: per the contract.
        unsafe {
            if first {
                self.list.push_front(segment);
            } else {
                self.list.push_back(segment);
            }
            dirty.fetch_add(Segment::dirty_bytes(segment), Ordering::Relaxed);
        }
        self.count += 1;
    }

    /// # Safety
    /// `segment` is in this stack.
    unsafe fn remove(&mut self, segment: *mut Segment, dirty: &AtomicUsize) {
        // SAFETY: per the contract.
        unsafe {
            self.list.remove(segment);
            uncount_dirty(segment, dirty);
        }
        self.count -= 1;
    }
}

/// Take a segment leaving the store off its dirty count `dirty`.
///
/// # Safety
/// `segment` is live and was listed, counted, until now.
unsafe fn uncount_dirty(segment: *mut Segment, dirty: &AtomicUsize) {
    // SAFETY: per the contract.
    let bytes = unsafe { Segment::dirty_bytes(segment) };
    debug_assert!(dirty.load(Ordering::Relaxed) >= bytes, "the store's dirty count lost track");
    dirty.fetch_sub(bytes, Ordering::Relaxed);
}

/// Empty and abandoned segments.
pub struct SegmentStore {
    cache: Mutex<SegmentStack>,
    abandoned: Mutex<SegmentStack>,
    abandoned_count: AtomicUsize,
    /// No listed segment's dirty pages are due before this (ms).
    next_purge_ms: AtomicU64,
    /// Held by the one `purge_expired` running (others skip their turn),
    /// and across `fork`: a child never inherits segments a purge holds
    /// out of the lists.
    purging: Mutex<()>,
    /// Dirty bytes of the listed segments (a purge's segments out of the
    /// lists not counted): beyond the dirty-byte cap, the store purges
    /// without waiting for the delay.
    dirty_bytes: AtomicUsize,
}

impl SegmentStore {
    pub const fn new() -> Self {
        SegmentStore {
            cache: Mutex::new(SegmentStack::new()),
            abandoned: Mutex::new(SegmentStack::new()),
            abandoned_count: AtomicUsize::new(0),
            next_purge_ms: AtomicU64::new(u64::MAX),
            purging: Mutex::new(()),
            dirty_bytes: AtomicUsize::new(0),
        }
    }

    /// An empty segment of `kind`, from the cache (the most recently cached,
    /// its dirty pages still resident: see [`Segment::dirty_bytes`]) or
    /// newly mapped; its owner is `CACHED_OWNER` until the caller claims it.
    /// Null when out of memory.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn alloc<P: PageProvider>(&self, memory: &Memory<P>, kind: SegmentKind) -> *mut Segment {
        self.purge_expired(memory);
        let cached = self.cache.lock().pop(&self.dirty_bytes);
        let configured = memory.options.segment_cache.load(Ordering::Relaxed);
        memory.segment_cache.lookup(&memory.options, configured, !cached.is_null());
        if cached.is_null() {
            memory.stats.segment_cache_misses.fetch_add(1, Ordering::Relaxed);
            // A fixed arena with less than a segment of room left serves a
            // short segment from what it has.
            let short_min = Segment::short_min(kind, P::PAGE_SIZE);
            let mapping = memory.map(SEGMENT_SIZE, SEGMENT_SIZE, Mapping::Segment).map(|m| (m, SEGMENT_SIZE));
            let Some((mapping, len)) = mapping.or_else(|| memory.map_up_to(short_min, SEGMENT_SIZE, SEGMENT_SIZE, Mapping::Segment)) else {
                return null_mut();
            };
            let segment = mapping.as_ptr() as *mut Segment;
            // SAFETY: a fresh segment-aligned mapping of at most one segment;
            // one outside the segment map's window goes back unused.
            unsafe {
                if !Segment::write_header(segment, CACHED_OWNER, kind, mapping.as_ptr(), len) {
                    memory.unmap(mapping, len, Mapping::Segment);
                    return null_mut();
                }
                crate::guard::guard_segment(memory, segment);
            }
            return segment;
        }
        memory.stats.segment_cache_hits.fetch_add(1, Ordering::Relaxed);
        // SAFETY: a cached segment is empty and, out of the cache, ours.
        unsafe { Segment::set_kind(cached, kind) };
        cached
    }

    /// Take back a segment none of whose pages is in use: into the cache
    /// (dirty pages and all) while it has room, else (and when short)
    /// unmapped.
    ///
    /// # Safety
    /// The caller owned `segment`, lists it nowhere and uses it no more.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub unsafe fn free<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment) {
        // SAFETY: per the contract.
        unsafe {
            debug_assert_eq!((*segment).used_pages, 0);
            // Cached or unmapped, its pages no longer count calls.
            for index in 0..(*segment).page_count as usize {
                let page = &(*segment).pages[index];
                memory.stats.fold_taken(page.taken() as usize);
                page.clear_taken();
            }
            if Segment::is_short(segment) {
                // Back to its arena at once: there it serves any mapping,
                // where cached it could not serve every kind.
                return Self::unmap(memory, segment);
            }
            (*segment).owner.store(CACHED_OWNER, Ordering::Release);
        }
        let limit = memory.segment_cache_limit();
        {
            let mut cache = self.cache.lock();
            if cache.count < limit {
                // SAFETY: the segment is empty and in no list.
                let due = unsafe {
                    let due = Self::due_ms(memory, segment);
                    cache.push(segment, true, &self.dirty_bytes);
                    due
                };
                memory.segment_cache.held(&memory.options, cache.count);
                drop(cache);
                self.schedule(memory, due);
                self.purge_expired(memory);
                return;
            }
        }
        memory.segment_cache.evicted(&memory.options);
        // SAFETY: empty, unlisted, one whole mapping.
        unsafe { Self::unmap(memory, segment) };
    }

    /// When the dirty pages of a segment entering the store are due (`None`
    /// when it has none), purging them at once when there is no clock or
    /// no delay. The caller lists the segment, then calls [`Self::schedule`]
    /// (in that order, so that a concurrent `purge_expired` cannot lose it).
    ///
    /// # Safety
    /// The caller owns `segment` (it is entering the store).
    unsafe fn due_ms<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment) -> Option<u64> {
        let delay = memory.store_purge_delay_ms() as u64;
        // SAFETY: per the contract.
        unsafe {
            if (*segment).dirty == 0 {
                return None;
            }
            if memory.now_ms() == 0 || delay == 0 {
                Segment::purge_dirty_pages(segment, memory);
                return None;
            }
            Some(Segment::oldest_dirty_ms(segment).saturating_add(delay))
        }
    }

    /// Dirty bytes of the listed segments.
    pub fn dirty_bytes(&self) -> usize {
        self.dirty_bytes.load(Ordering::Relaxed)
    }

    /// Note that a listed segment has dirty pages due at `due`, and that
    /// everything is due when the store holds more dirty bytes than the cap.
    fn schedule<P: PageProvider>(&self, memory: &Memory<P>, due: Option<u64>) {
        let due = if self.over_cap(memory) { Some(0) } else { due };
        if let Some(due) = due {
            self.next_purge_ms.fetch_min(due, Ordering::Relaxed);
        }
    }

    /// The store's dirty-byte cap: the configured one, as a heap's. What the
    /// store holds belongs to no thread (exited threads' segments, empty
    /// ones); the cap bounds it whatever the delay: with the learned
    /// delay and no cap, 3000 short-lived threads grew the process by
    /// 100 MiB (tests/tests/faults.rs, churn).
    fn dirty_cap<P: PageProvider>(memory: &Memory<P>) -> usize {
        memory.options.purge_dirty_bytes.load(Ordering::Relaxed)
    }

    fn over_cap<P: PageProvider>(&self, memory: &Memory<P>) -> bool {
        self.dirty_bytes.load(Ordering::Relaxed) > Self::dirty_cap(memory)
    }

    /// Purge the dirty pages of listed segments held for the purge delay.
    /// The segments with pages due are taken out of their lists (up to
    /// `PURGE_BATCH`; the rest wait for the next call, due at once), purged
    /// with no lock held, then listed again: threads
    /// exiting, adopting and allocating meanwhile do not wait behind the
    /// system calls (with more threads than cores, they spun behind them).
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn purge_expired<P: PageProvider>(&self, memory: &Memory<P>) {
        let now = memory.now_ms();
        if now == 0 || now < self.next_purge_ms.load(Ordering::Relaxed) {
            return;
        }
        let Some(_purging) = self.purging.try_lock() else {
            return;
        };
        let delay = memory.store_purge_delay_ms() as u64;
        let cutoff = now.saturating_sub(delay);
        // (segment, abandoned, purge the pages dirty since)
        let mut due = [(null_mut::<Segment>(), false, 0u64); PURGE_BATCH];
        let mut taken = 0;
        let mut next = u64::MAX;
        {
            let mut abandoned = self.abandoned.lock();
            let mut cache = self.cache.lock();
            self.next_purge_ms.store(u64::MAX, Ordering::Relaxed);
            // Over the cap: purge whole segments, the oldest abandoned
            // first, down to half the cap (not one segment per call).
            let cap = Self::dirty_cap(memory);
            let dirty = self.dirty_bytes.load(Ordering::Relaxed);
            let mut excess = if dirty > cap { dirty - cap / 2 } else { 0 };
            for (stack, is_abandoned) in [(&mut *abandoned, true), (&mut *cache, false)] {
                let mut segment = stack.list.first;
                while !segment.is_null() {
                    // SAFETY: the locks give us exclusive ownership of listed segments.
                    unsafe {
                        let following = (*segment).next;
                        let oldest = Segment::oldest_dirty_ms(segment);
                        // Due: its pages past the delay; over the cap: all of them.
                        let since = if oldest <= cutoff {
                            Some(cutoff)
                        } else if excess > 0 && oldest != u64::MAX {
                            Some(u64::MAX)
                        } else {
                            None
                        };
                        if let Some(since) = since.filter(|_| taken < PURGE_BATCH) {
                            excess = excess.saturating_sub(Segment::dirty_bytes(segment));
                            stack.remove(segment, &self.dirty_bytes);
                            due[taken] = (segment, is_abandoned, since);
                            taken += 1;
                        } else if oldest != u64::MAX {
                            next = next.min(oldest.saturating_add(delay));
                        }
                        segment = following;
                    }
                }
            }
        }
        self.next_purge_ms.fetch_min(next, Ordering::Relaxed);
        for &(segment, is_abandoned, since) in &due[..taken] {
            // SAFETY: taken out of its list, the segment is ours alone
            // (remote frees into its pages touch no page bookkeeping).
            unsafe {
                let (_, oldest_left) = Segment::purge_pages_dirty_since(segment, memory, since);
                // Abandoned ones at the front, with the oldest (the back is
                // where a returning heap looks for its own); cached ones at
                // the back, the cold end (the front is reused first), or
                // unmapped when the cache filled up meanwhile.
                if is_abandoned {
                    self.abandoned.lock().push(segment, true, &self.dirty_bytes);
                } else {
                    let mut cache = self.cache.lock();
                    if cache.count >= memory.segment_cache_limit() {
                        drop(cache); // over the limit while it was out: unmapped
                        memory.segment_cache.evicted(&memory.options);
                        Self::unmap(memory, segment);
                        continue;
                    }
                    cache.push(segment, false, &self.dirty_bytes);
                }
                self.schedule(memory, (oldest_left != u64::MAX).then(|| oldest_left.saturating_add(delay)));
            }
        }
    }

    /// # Safety
    /// `segment` is empty, in no list, and one whole mapping.
    unsafe fn unmap<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment) {
        segment_map_remove(segment);
        // SAFETY: per the contract.
        unsafe { memory.unmap(NonNull::new_unchecked(segment as *mut u8), (*segment).map_size, Mapping::Segment) };
    }

    /// Park a segment whose heap (`by`) was released; its pages stay in
    /// use, its dirty pages resident until the purge delay passes.
    ///
    /// # Safety
    /// The caller owned `segment` and lists it nowhere.
    pub unsafe fn abandon<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment, by: usize) {
        // SAFETY: per the contract.
        let due = unsafe {
            let due = Self::due_ms(memory, segment);
            (*segment).abandoned_by = by;
            (*segment).owner.store(ABANDONED_OWNER, Ordering::Release);
            self.abandoned.lock().push(segment, false, &self.dirty_bytes);
            due
        };
        self.abandoned_count.fetch_add(1, Ordering::Relaxed);
        self.schedule(memory, due);
        self.purge_expired(memory);
    }

    /// An abandoned segment for the caller to adopt (it then owns it).
    pub fn take_abandoned(&self) -> Option<*mut Segment> {
        if self.abandoned_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let segment = self.abandoned.lock().pop(&self.dirty_bytes);
        if segment.is_null() {
            return None;
        }
        self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
        Some(segment)
    }

    /// The most recently abandoned of the segments heap `by` abandoned, if
    /// any is among the newest `OWN_LOOK_BACK`: a heap reused from the
    /// pool (the thread that follows an exited one) takes back, warm, what
    /// it left, also when the threads that exited with it left theirs after
    /// it (a wave of threads exits together).
    pub fn take_abandoned_by(&self, by: usize) -> Option<*mut Segment> {
        if self.abandoned_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut abandoned = self.abandoned.lock();
        let mut segment = abandoned.list.last;
        // SAFETY: listed segments are live; the lock makes them ours.
        unsafe {
            for _ in 0..OWN_LOOK_BACK {
                if segment.is_null() {
                    return None;
                }
                if (*segment).abandoned_by == by {
                    abandoned.remove(segment, &self.dirty_bytes);
                    self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
                    return Some(segment);
                }
                segment = (*segment).prev;
            }
        }
        None
    }

    /// Collect the remote frees of abandoned segments; free the pages and
    /// segments that became empty and purge the others' dirty pages.
    /// Returns bytes released.
    pub fn trim_abandoned<P: PageProvider>(&self, memory: &Memory<P>) -> usize {
        let (list_key, _) = memory.keys();
        let mut released = 0;
        // Segments that emptied, freed once the lock is dropped (free takes
        // the store's locks itself).
        let mut emptied = List::<Segment>::new();
        let mut abandoned = self.abandoned.lock();
        let mut segment = abandoned.list.first;
        while !segment.is_null() {
            // SAFETY: the lock gives us exclusive ownership of listed segments.
            unsafe {
                let next = (*segment).next;
                let dirty_before = Segment::dirty_bytes(segment);
                for page in Segment::pages_in_use(segment) {
                    match (*page).collect_remote(list_key) {
                        // Their frees were counted by the threads that freed them.
                        Some(count) => memory.stats.free_calls.fetch_sub(count as usize, Ordering::Relaxed),
                        None => memory.fatal_at("corrupted remote free list in page ", page as usize),
                    };
                    if (*page).used() == 0 {
                        Segment::release_page(segment, page, memory);
                    }
                }
                if (*segment).used_pages != 0 {
                    released += Segment::purge_dirty_pages(segment, memory);
                }
                // Listed while its pages were released and purged: counted anew.
                self.dirty_bytes.fetch_add(Segment::dirty_bytes(segment).wrapping_sub(dirty_before), Ordering::Relaxed);
                if (*segment).used_pages == 0 {
                    abandoned.remove(segment, &self.dirty_bytes);
                    self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
                    released += (*segment).map_size;
                    emptied.push_back(segment);
                }
                segment = next;
            }
        }
        drop(abandoned);
        loop {
            let segment = emptied.pop_front();
            if segment.is_null() {
                break;
            }
            // SAFETY: an empty segment, out of every list, ours.
            unsafe { self.free(memory, segment) };
        }
        released
    }

    /// Unmap every cached segment. Returns bytes released.
    pub fn release_cached<P: PageProvider>(&self, memory: &Memory<P>) -> usize {
        let mut released = 0;
        loop {
            let segment = self.cache.lock().pop(&self.dirty_bytes);
            if segment.is_null() {
                break;
            }
            // SAFETY: out of the cache, the empty segment is ours alone.
            unsafe {
                released += (*segment).map_size;
                Self::unmap(memory, segment);
            }
        }
        released
    }

    /// Take both locks (before `fork`): abandoned, then cache.
    pub fn lock_all(&self) {
        core::mem::forget(self.purging.lock());
        core::mem::forget(self.abandoned.lock());
        core::mem::forget(self.cache.lock());
    }

    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: lock_all took these locks and forgot the guards.
        unsafe {
            self.cache.force_unlock();
            self.abandoned.force_unlock();
            self.purging.force_unlock();
        }
    }
}

impl Default for SegmentStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[allow(clippy::undocumented_unsafe_blocks)] // test code exercising the contracts
mod tests {
    use super::*;
    use crate::testing::TestProvider;

    #[test]
    fn a_heap_takes_back_its_abandoned_segments_from_among_another_heaps() {
        // Threads that exit together abandon their segments interleaved.
        let memory = Memory::new(TestProvider::new());
        let store = SegmentStore::new();
        // Heap identities (never dereferenced).
        let (a, b) = (0x1000, 0x2000);
        let segment = || store.alloc(&memory, SegmentKind::Small);
        let (a1, b1, a2) = (segment(), segment(), segment());
        assert!(!a1.is_null() && !b1.is_null() && !a2.is_null());
        unsafe {
            store.abandon(&memory, a1, a);
            store.abandon(&memory, b1, b);
            store.abandon(&memory, a2, a);
        }
        assert_eq!(store.take_abandoned_by(a), Some(a2), "the newest first");
        assert_eq!(store.take_abandoned_by(a), Some(a1), "an older one, behind another heap's");
        assert_eq!(store.take_abandoned_by(a), None);
        assert_eq!(store.take_abandoned_by(b), Some(b1));
        assert_eq!(store.take_abandoned_by(b), None);
        for segment in [a1, a2, b1] {
            unsafe { store.free(&memory, segment) };
        }
    }
}

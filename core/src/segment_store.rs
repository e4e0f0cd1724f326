//! The process-wide segment store: empty segments kept for reuse, and the
//! segments of exited threads waiting for another heap to adopt them.
//!
//! ```text
//!  SegmentStore
//!  cache (lock) -----> seg <-> seg       empty, still mapped            owner CACHED_OWNER
//!                      newest first (the warmest is reused first)
//!  abandoned (lock) -> seg <-> seg       pages still in use             owner ABANDONED_OWNER
//!                      adopted oldest first (the most of its blocks freed since);
//!                      the newest taken back by the heap that left them
//! ```
//!
//! Segments come in with their dirty pages (freed, not purged) as they
//! are: a thread that exits does not purge, so the threads that follow
//! reuse its memory without page faults. The store purges a segment's
//! dirty pages once each has waited the purge delay (counted from when it
//! became dirty, across owners: `Segment::dirty_ms`; checked on the store's
//! own calls), or at once when the provider has no clock or the delay is 0.
//!
//! Invariants: `count` is the length of each list; `abandoned_count` is
//! `abandoned.count` outside the lock plus the abandoned segments a purge
//! holds out of the list (it lets refill skip the lock when zero); a segment is in at most one list, and a listed segment's `owner`
//! says which; no listed segment has a dirty page due (`dirty_ms + delay`)
//! before `next_purge_ms`. No store method is called with a store lock held. Lock order: purging -> abandoned -> cache.

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

    /// Take the first segment (null when empty).
    fn pop(&mut self) -> *mut Segment {
        let segment = self.list.pop_front();
        if !segment.is_null() {
            self.count -= 1;
        }
        segment
    }

    /// Add a segment to be taken first (`first`) or last.
    ///
    /// # Safety
    /// `segment` is live and in no list.
    unsafe fn push(&mut self, segment: *mut Segment, first: bool) {
        // SAFETY: per the contract.
        unsafe {
            if first {
                self.list.push_front(segment);
            } else {
                self.list.push_back(segment);
            }
        }
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
}

impl SegmentStore {
    pub const fn new() -> Self {
        SegmentStore {
            cache: Mutex::new(SegmentStack::new()),
            abandoned: Mutex::new(SegmentStack::new()),
            abandoned_count: AtomicUsize::new(0),
            next_purge_ms: AtomicU64::new(u64::MAX),
            purging: Mutex::new(()),
        }
    }

    /// An empty segment of `kind`, from the cache (the most recently cached,
    /// its dirty pages still resident: see [`Segment::dirty_bytes`]) or
    /// newly mapped; its owner is `CACHED_OWNER` until the caller claims it.
    /// Null when out of memory.
    pub fn alloc<P: PageProvider>(&self, memory: &Memory<P>, kind: SegmentKind) -> *mut Segment {
        self.purge_expired(memory);
        let cached = self.cache.lock().pop();
        if cached.is_null() {
            memory.stats.segment_cache_misses.fetch_add(1, Ordering::Relaxed);
            let Some(mapping) = memory.map(SEGMENT_SIZE, SEGMENT_SIZE, Mapping::Segment) else {
                return null_mut();
            };
            let segment = mapping.as_ptr() as *mut Segment;
            // SAFETY: a fresh segment-aligned mapping of one segment; one
            // outside the segment map's window goes back unused.
            unsafe {
                if !Segment::write_header(segment, CACHED_OWNER, kind, mapping.as_ptr(), SEGMENT_SIZE) {
                    memory.unmap(mapping, SEGMENT_SIZE, Mapping::Segment);
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
    /// (dirty pages and all) while it has room, else unmapped.
    ///
    /// # Safety
    /// The caller owned `segment`, lists it nowhere and uses it no more.
    pub unsafe fn free<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment) {
        // SAFETY: per the contract.
        unsafe {
            debug_assert_eq!((*segment).used_pages, 0);
            (*segment).owner.store(CACHED_OWNER, Ordering::Release);
        }
        let limit = memory.options.segment_cache.load(Ordering::Relaxed);
        {
            let mut cache = self.cache.lock();
            if cache.count < limit {
                // SAFETY: the segment is empty and in no list.
                let due = unsafe {
                    let due = Self::due_ms(memory, segment);
                    cache.push(segment, true);
                    due
                };
                drop(cache);
                self.schedule(due);
                self.purge_expired(memory);
                return;
            }
        }
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
        // The configured delay, not the learned one: what the store holds
        // belongs to no thread (exited threads' segments, empty ones), and
        // keeping it as long as live heaps keep theirs let 3000 short-lived
        // threads grow the process by 100 MiB (tests/tests/faults.rs churn).
        let delay = memory.options.purge_delay_ms.load(Ordering::Relaxed) as u64;
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

    /// Note that a listed segment has dirty pages due at `due`.
    fn schedule(&self, due: Option<u64>) {
        if let Some(due) = due {
            self.next_purge_ms.fetch_min(due, Ordering::Relaxed);
        }
    }

    /// Purge the dirty pages of listed segments held for the purge delay.
    /// The segments with pages due are taken out of their lists (up to
    /// `PURGE_BATCH`; the rest wait for the next call, due at once), purged
    /// with no lock held, then listed again: threads
    /// exiting, adopting and allocating meanwhile do not wait behind the
    /// system calls (with more threads than cores, they spun behind them).
    pub fn purge_expired<P: PageProvider>(&self, memory: &Memory<P>) {
        let now = memory.now_ms();
        if now == 0 || now < self.next_purge_ms.load(Ordering::Relaxed) {
            return;
        }
        let Some(_purging) = self.purging.try_lock() else {
            return;
        };
        let delay = memory.options.purge_delay_ms.load(Ordering::Relaxed) as u64;
        let cutoff = now.saturating_sub(delay);
        let mut due = [(null_mut::<Segment>(), false); PURGE_BATCH];
        let mut taken = 0;
        let mut next = u64::MAX;
        {
            let mut abandoned = self.abandoned.lock();
            let mut cache = self.cache.lock();
            self.next_purge_ms.store(u64::MAX, Ordering::Relaxed);
            for (stack, is_abandoned) in [(&mut *abandoned, true), (&mut *cache, false)] {
                let mut segment = stack.list.first;
                while !segment.is_null() {
                    // SAFETY: the locks give us exclusive ownership of listed segments.
                    unsafe {
                        let following = (*segment).next;
                        let oldest = Segment::oldest_dirty_ms(segment);
                        if oldest <= cutoff && taken < PURGE_BATCH {
                            stack.remove(segment);
                            due[taken] = (segment, is_abandoned);
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
        for &(segment, is_abandoned) in &due[..taken] {
            // SAFETY: taken out of its list, the segment is ours alone
            // (remote frees into its pages touch no page bookkeeping).
            unsafe {
                let (_, oldest_left) = Segment::purge_pages_dirty_since(segment, memory, cutoff);
                // Abandoned ones at the front, with the oldest (the back is
                // where a returning heap looks for its own); cached ones at
                // the back, the cold end (the front is reused first), or
                // unmapped when the cache filled up meanwhile.
                if is_abandoned {
                    self.abandoned.lock().push(segment, true);
                } else {
                    let mut cache = self.cache.lock();
                    if cache.count >= memory.options.segment_cache.load(Ordering::Relaxed) {
                        drop(cache); // over the limit while it was out: unmapped
                        Self::unmap(memory, segment);
                        continue;
                    }
                    cache.push(segment, false);
                }
                self.schedule((oldest_left != u64::MAX).then(|| oldest_left.saturating_add(delay)));
            }
        }
    }

    /// # Safety
    /// `segment` is empty, in no list, and one whole mapping.
    unsafe fn unmap<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment) {
        segment_map_remove(segment);
        // SAFETY: per the contract.
        unsafe { memory.unmap(NonNull::new_unchecked(segment as *mut u8), SEGMENT_SIZE, Mapping::Segment) };
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
            self.abandoned.lock().push(segment, false);
            due
        };
        self.abandoned_count.fetch_add(1, Ordering::Relaxed);
        self.schedule(due);
        self.purge_expired(memory);
    }

    /// An abandoned segment for the caller to adopt (it then owns it).
    pub fn take_abandoned(&self) -> Option<*mut Segment> {
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

    /// The most recently abandoned segment, if heap `by` abandoned it: a
    /// heap reused from the pool (the thread that follows an exited one)
    /// takes back, warm, what it left.
    pub fn take_abandoned_by(&self, by: usize) -> Option<*mut Segment> {
        if self.abandoned_count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut abandoned = self.abandoned.lock();
        let newest = abandoned.list.last;
        // SAFETY: listed segments are live; the lock makes them ours.
        if newest.is_null() || unsafe { (*newest).abandoned_by } != by {
            return None;
        }
        // SAFETY: newest is in the list.
        unsafe { abandoned.remove(newest) };
        self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
        Some(newest)
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
                for page in Segment::pages_in_use(segment) {
                    if (*page).collect_remote(list_key).is_none() {
                        memory.fatal_at("corrupted remote free list in page ", page as usize);
                    }
                    if (*page).used() == 0 {
                        Segment::release_page(segment, page, memory);
                    }
                }
                if (*segment).used_pages == 0 {
                    abandoned.remove(segment);
                    self.abandoned_count.fetch_sub(1, Ordering::Relaxed);
                    released += SEGMENT_SIZE;
                    emptied.push_back(segment);
                } else {
                    released += Segment::purge_dirty_pages(segment, memory);
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
            let segment = self.cache.lock().pop();
            if segment.is_null() {
                break;
            }
            released += SEGMENT_SIZE;
            // SAFETY: out of the cache, the empty segment is ours alone.
            unsafe { Self::unmap(memory, segment) };
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

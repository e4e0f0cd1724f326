//! Huge blocks (above `LARGE_MAX`): one mapping each, a reuse cache
//! ("BigCache") and a release batch, all behind one lock in [`HugeBlocks`].
//! Self-contained: it needs only [`Memory`] (provider, counters, options).
//!
//! ```text
//!  free(huge) --> BigCache: up to BIGCACHE_SLOTS mappings, size-keyed
//!                 warm (resident) while within `bigcache_bytes`, and while
//!                 huge calls keep coming (at most BIGCACHE_WARM_MAX_MS); a
//!                 pause of the purge delay between huge calls purges them,
//!                 but they stay mapped (reuse = faults only)
//!                    | LRU eviction (slots or BIGCACHE_MAPPED_BYTES full),
//!                    | too big / odd alignment / trim
//!                    v
//!                 release batch (RELEASE_BATCH mappings) --flush--> purge + unmap
//! ```
//!
//! Rule inherited from the original hakmem: the cache never unmaps; only
//! the batch flush does, so every release goes through one place.
//!
//! Layout of a huge mapping: a segment header at a 2 MiB boundary, the block
//! at `huge_offset` after it (< 2 MiB, so masking the block pointer finds
//! the header). For alignments of 2 MiB and more the header sits 2 MiB
//! before the aligned block and the mapping starts `align - 2 MiB` earlier.

use crate::class::SegmentKind;
use crate::config::{BIGCACHE_MAPPED_BYTES, BIGCACHE_SLOTS, BIGCACHE_WARM_MAX_MS, MAX_REQUEST, RELEASE_BATCH, SEGMENT_HEADER_BYTES, SEGMENT_SIZE};
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::{segment_map_insert, segment_map_remove, Segment, HUGE_CACHED, HUGE_LIVE, HUGE_OWNER};
use crate::stats::Mapping;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering;
use spin::Mutex;

#[derive(Clone, Copy)]
struct CacheSlot {
    segment: *mut Segment,
    /// Insertion tick, for LRU eviction.
    tick: u64,
    /// When it was cached (provider clock, ms), for the purge delay.
    cached_ms: u64,
    /// Still resident (not purged since it was freed).
    warm: bool,
}

/// How a cached mapping serves a request.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reuse {
    /// Resident, and large enough: used as it is.
    Warm,
    /// Resident and larger: its head serves the request, its tail (from
    /// the next 2 MiB boundary) is cached as a mapping of its own.
    Split,
    /// Resident, but resized to the request first (no bytes copied).
    Resize,
    /// Purged (reads as zeros where the provider's purge zeroes): faults again.
    Purged,
}

const EMPTY_SLOT: CacheSlot = CacheSlot { segment: null_mut(), tick: 0, cached_ms: 0, warm: false };

/// BigCache and the release batch (behind the lock of [`HugeBlocks`]).
///
/// Invariants: `cached_bytes` = sum of the cached mappings' sizes,
/// `warm_bytes` = the same over warm slots; `warm_bytes <= bigcache_bytes`
/// after every free; `cached_bytes <= BIGCACHE_MAPPED_BYTES`.
struct HugeCache {
    /// `slots[..len]` are occupied (kept dense: scans touch only those).
    slots: [CacheSlot; BIGCACHE_SLOTS],
    len: usize,
    /// No warm slot reaches its maximum age before this (ms); lets calls
    /// skip the scan.
    next_expiry_ms: u64,
    /// When the last huge alloc or free was (ms), to see pauses.
    last_call_ms: u64,
    /// Moving average of the gap between huge calls (ms).
    gap_avg_ms: u64,
    cached_bytes: usize,
    warm_bytes: usize,
    tick: u64,
    batch: [*mut Segment; RELEASE_BATCH],
    batch_len: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl Send for HugeCache {}

impl HugeCache {
    const fn new() -> Self {
        HugeCache {
            slots: [EMPTY_SLOT; BIGCACHE_SLOTS],
            len: 0,
            next_expiry_ms: u64::MAX,
            last_call_ms: 0,
            gap_avg_ms: 0,
            cached_bytes: 0,
            warm_bytes: 0,
            tick: 0,
            batch: [null_mut(); RELEASE_BATCH],
            batch_len: 0,
        }
    }

    fn size_of(slot: &CacheSlot) -> usize {
        // SAFETY: cached segments are live mappings owned by the cache.
        unsafe { (*slot.segment).map_size }
    }

    /// Take the cached mapping that serves `map_size` best: a warm one that
    /// fits (at most 25 % larger) as it is; else, when `can_split`, the
    /// smallest warm one with at least 2 MiB to spare past the request's
    /// 2 MiB boundary, to be split; else, when `can_resize`, the warm one
    /// nearest in size, to be resized (shrinking is cheap, growing faults
    /// only the growth, so a size above counts a quarter of a size below);
    /// else a purged one that fits. Returns it and how to reuse it.
    fn take(&mut self, map_size: usize, can_resize: bool, can_split: bool) -> Option<(*mut Segment, Reuse)> {
        let fits = |size: usize| size >= map_size && size <= map_size + map_size / 4;
        let slots = &self.slots[..self.len];
        let size = |i: usize| Self::size_of(&slots[i]);
        let warm = |i: &usize| slots[*i].warm;
        let resize_cost = |i: usize| if size(i) >= map_size { (size(i) - map_size) / 4 } else { map_size - size(i) };
        let split_min = map_size.next_multiple_of(SEGMENT_SIZE) + SEGMENT_SIZE;
        let fit_warm = (0..slots.len()).filter(warm).filter(|&i| fits(size(i))).min_by_key(|&i| size(i));
        let split = (0..slots.len()).filter(warm).filter(|&i| can_split && size(i) >= split_min).min_by_key(|&i| size(i));
        let nearest = (0..slots.len()).filter(warm).filter(|_| can_resize).min_by_key(|&i| resize_cost(i));
        let (i, reuse) = if let Some(i) = fit_warm {
            (i, Reuse::Warm)
        } else if let Some(i) = split {
            (i, Reuse::Split)
        } else if let Some(i) = nearest {
            (i, Reuse::Resize)
        } else {
            let i = (0..slots.len()).filter(|&i| fits(size(i))).min_by_key(|&i| size(i))?;
            (i, Reuse::Purged)
        };
        Some((self.remove(i).segment, reuse))
    }

    /// Cut a warm mapping taken for a request of `head_size` bytes at the
    /// first 2 MiB boundary past it; the tail becomes a cached mapping of
    /// its own (a header is written at its start).
    ///
    /// # Safety
    /// `segment` was just taken from the cache (`Reuse::Split`) and the
    /// provider can split mappings; the cache has a free slot.
    unsafe fn split<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment, head_size: usize, now: u64) {
        // SAFETY: per the contract; the tail lies in the taken mapping and
        // holds nothing live.
        unsafe {
            let end = segment as usize + (*segment).map_size;
            let cut = segment as usize + head_size.next_multiple_of(SEGMENT_SIZE);
            let tail = cut as *mut Segment;
            Segment::write_header(tail, HUGE_OWNER, SegmentKind::Huge, tail as *mut u8, end - cut);
            (*tail).used_pages = 1;
            (*tail).huge_state.store(HUGE_CACHED, Ordering::Relaxed);
            (*segment).map_size = cut - segment as usize;
            memory.stats.huge_mapped.fetch_add(1, Ordering::Relaxed);
            let delay = memory.options.purge_delay_ms.load(Ordering::Relaxed) as u64;
            self.tick += 1;
            let slot = CacheSlot { segment: tail, tick: self.tick, cached_ms: now, warm: true };
            self.insert(slot, now.saturating_add(delay.max(BIGCACHE_WARM_MAX_MS)));
        }
    }

    /// Join a freed warm mapping with the warm cached mappings right before
    /// and after it (pieces of one split mapping, or neighbours), so that
    /// large requests find large pieces again. Returns the joined mapping
    /// (the one before, when it absorbed `segment`).
    ///
    /// # Safety
    /// The caller owns `segment` (a freed huge mapping whose header starts
    /// it), which is not cached; the provider can split mappings.
    unsafe fn join_neighbours<P: PageProvider>(&mut self, memory: &Memory<P>, mut segment: *mut Segment) -> *mut Segment {
        // SAFETY: per the contract; cached mappings are live and the cache's.
        unsafe {
            let end = segment as usize + (*segment).map_size;
            if let Some(i) = (0..self.len).find(|&i| self.slots[i].warm && self.slots[i].segment as usize == end) {
                let next = self.remove(i).segment;
                segment_map_remove(next);
                (*segment).map_size += (*next).map_size;
                memory.stats.huge_mapped.fetch_sub(1, Ordering::Relaxed);
            }
            let start = segment as usize;
            if let Some(i) = (0..self.len).find(|&i| self.slots[i].warm && self.slots[i].segment as usize + Self::size_of(&self.slots[i]) == start) {
                let prev = self.remove(i).segment;
                segment_map_remove(segment);
                (*prev).map_size += (*segment).map_size;
                memory.stats.huge_mapped.fetch_sub(1, Ordering::Relaxed);
                segment = prev;
            }
            segment
        }
    }

    fn remove(&mut self, i: usize) -> CacheSlot {
        let slot = self.slots[i];
        let size = Self::size_of(&slot);
        self.cached_bytes -= size;
        if slot.warm {
            self.warm_bytes -= size;
        }
        self.len -= 1;
        self.slots[i] = self.slots[self.len];
        self.slots[self.len] = EMPTY_SLOT;
        slot
    }

    fn insert(&mut self, slot: CacheSlot, expiry_ms: u64) {
        let size = Self::size_of(&slot);
        self.slots[self.len] = slot;
        self.len += 1;
        self.cached_bytes += size;
        self.warm_bytes += size;
        self.next_expiry_ms = self.next_expiry_ms.min(expiry_ms);
    }

    /// Index of the least recently cached slot matching `filter`.
    fn oldest(&self, filter: impl Fn(&CacheSlot) -> bool) -> Option<usize> {
        (0..self.len).filter(|&i| filter(&self.slots[i])).min_by_key(|&i| self.slots[i].tick)
    }
}

/// Offset of the block from the header, and of the header from the mapping
/// start, for an alignment: `(max(align, 8 KiB), 0)` below 2 MiB,
/// `(2 MiB, align - 2 MiB)` from 2 MiB on.
///
/// Written with min/max rather than an if/else: rustc 1.95 at opt-level >= 1
/// folded the if/else form into `(max(align, 8 KiB), align - 2 MiB)`, a wrong
/// block offset for alignments above 2 MiB (caught by the C ABI tests).
/// The unit test below pins the values.
pub fn huge_layout(align: usize) -> (usize, usize) {
    let block_offset = align.clamp(SEGMENT_HEADER_BYTES, SEGMENT_SIZE);
    let header_offset = align.saturating_sub(SEGMENT_SIZE);
    (block_offset, header_offset)
}

impl HugeCache {
    /// Purge warm cached mappings (they stay mapped and cached): the oldest
    /// while there are more warm bytes than `bigcache_bytes`; those older
    /// than the purge delay after a pause (no huge call for the purge delay
    /// and for 8 times the usual gap between huge calls: what the program
    /// freed is not about to be reused); and any warm longer than the
    /// maximum age. Then note `now` as the last call.
    ///
    /// Steady huge-block traffic thus reuses warm what it freed a few
    /// steps ago, however long each step takes, within the byte budget.
    fn purge_warm<P: PageProvider>(&mut self, memory: &Memory<P>, now: u64) {
        let limit = memory.options.bigcache_bytes.load(Ordering::Relaxed);
        let delay = memory.options.purge_delay_ms.load(Ordering::Relaxed) as u64;
        let max_age = delay.max(BIGCACHE_WARM_MAX_MS);
        let gap = now.saturating_sub(self.last_call_ms);
        let pause = delay.max(self.gap_avg_ms.saturating_mul(8));
        let paused = now != 0 && gap >= pause;
        self.gap_avg_ms = (self.gap_avg_ms * 7 + gap.min(pause)) / 8;
        self.last_call_ms = now;
        if self.warm_bytes <= limit && !paused && (now == 0 || now < self.next_expiry_ms) {
            return;
        }
        let age_limit = if paused { delay } else { max_age };
        // Recomputed below from the warm slots that stay warm.
        self.next_expiry_ms = u64::MAX;
        loop {
            let over = self.warm_bytes > limit;
            let expired = |s: &CacheSlot| s.warm && (over || (now != 0 && s.cached_ms.saturating_add(age_limit) <= now));
            let Some(i) = self.oldest(expired) else { break };
            let segment = self.slots[i].segment;
            // SAFETY: a cached mapping holds nothing live; keep its header.
            unsafe {
                let body = segment as usize + SEGMENT_HEADER_BYTES;
                let end = (*segment).map_base as usize + (*segment).map_size;
                memory.purge(body, end - body);
            }
            self.slots[i].warm = false;
            self.warm_bytes -= Self::size_of(&self.slots[i]);
        }
        for slot in &self.slots[..self.len] {
            if slot.warm {
                self.next_expiry_ms = self.next_expiry_ms.min(slot.cached_ms.saturating_add(max_age));
            }
        }
    }

    /// Add a mapping to the release batch; flushes a full batch. Returns
    /// bytes released.
    fn batch_push<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment) -> usize {
        self.batch[self.batch_len] = segment;
        self.batch_len += 1;
        if self.batch_len == RELEASE_BATCH {
            return self.batch_flush(memory);
        }
        0
    }

    /// Purge and unmap every mapping in the batch: the only code that
    /// unmaps huge blocks. Returns bytes released.
    fn batch_flush<P: PageProvider>(&mut self, memory: &Memory<P>) -> usize {
        let mut released = 0;
        for &segment in &self.batch[..self.batch_len] {
            // SAFETY: batched segments are unreachable by the program and
            // owned by the batch; each is one whole mapping.
            unsafe {
                let (base, size) = ((*segment).map_base, (*segment).map_size);
                segment_map_remove(segment);
                memory.purge(base as usize, size);
                memory.unmap(NonNull::new_unchecked(base), size, Mapping::Huge);
                released += size;
            }
        }
        self.batch_len = 0;
        released
    }
}

/// Huge blocks: the cache and batch behind a lock, and the operations on
/// live huge blocks (which need no lock: a live block is its owner's).
pub struct HugeBlocks {
    cache: Mutex<HugeCache>,
}

impl HugeBlocks {
    pub const fn new() -> Self {
        HugeBlocks { cache: Mutex::new(HugeCache::new()) }
    }

    /// Allocate a huge block of `size` bytes aligned to `align`. Returns the
    /// block and whether it is known to be zeroed.
    pub fn alloc<P: PageProvider>(&self, memory: &Memory<P>, size: usize, align: usize) -> Option<(*mut u8, bool)> {
        if size > MAX_REQUEST || align > MAX_REQUEST {
            return None;
        }
        let (block_offset, header_offset) = huge_layout(align);
        let map_size = (header_offset + block_offset + size).next_multiple_of(P::PAGE_SIZE);
        let reused = if header_offset == 0 {
            let mut cache = self.cache.lock();
            let now = memory.now_ms();
            cache.purge_warm(memory, now);
            match cache.take(map_size, P::CAN_REMAP, P::CAN_SPLIT) {
                Some((segment, Reuse::Split)) => {
                    // SAFETY: taken from the cache for a split, so a slot is free.
                    unsafe { cache.split(memory, segment, map_size, now) };
                    Some((segment, Reuse::Warm))
                }
                taken => taken,
            }
        } else {
            None
        };
        let reused = match reused {
            // SAFETY: taken from the cache, the mapping is ours; it holds
            // nothing live.
            Some((segment, Reuse::Resize)) => match unsafe { Self::remap_segment(memory, segment, map_size) } {
                Some(resized) => Some((resized, false)),
                None => {
                    // Keep it cached (warm); serve this request afresh.
                    self.cache_insert(memory, segment, memory.now_ms());
                    None
                }
            },
            // A purged mapping reads as zeros when the provider's purge
            // zeroes (MADV_DONTNEED does): only then is it known.
            Some((segment, reuse)) => Some((segment, reuse == Reuse::Purged && P::PURGE_ZEROES)),
            None => None,
        };
        let (segment, zeroed) = match reused {
            Some(reused) => {
                memory.stats.bigcache_hits.fetch_add(1, Ordering::Relaxed);
                reused
            }
            None => {
                let base = memory.map(map_size, align.max(SEGMENT_SIZE), Mapping::Huge)?.as_ptr();
                let segment = (base as usize + header_offset) as *mut Segment;
                // SAFETY: fresh memory; the header fits before the block.
                unsafe {
                    Segment::write_header(segment, HUGE_OWNER, SegmentKind::Huge, base, map_size);
                    (*segment).used_pages = 1;
                }
                (segment, P::MAPS_ZEROED)
            }
        };
        // SAFETY: the segment is exclusively ours (fresh or taken from the cache).
        unsafe {
            let map_end = (*segment).map_base as usize + (*segment).map_size;
            (*segment).huge_offset = block_offset;
            (*segment).huge_size = map_end - (segment as usize + block_offset);
            (*segment).huge_state.store(HUGE_LIVE, Ordering::Release);
            Some(((segment as usize + block_offset) as *mut u8, zeroed))
        }
    }

    /// Resize a live huge block in place or by moving its pages (no copy)
    /// when the provider can. Returns the new block pointer, or `None`
    /// (block untouched) when the caller must copy.
    ///
    /// # Safety
    /// `ptr` is a live huge block, owned by the caller.
    pub unsafe fn realloc<P: PageProvider>(&self, memory: &Memory<P>, ptr: *mut u8, new_size: usize) -> Option<*mut u8> {
        let segment = Segment::of_ptr(ptr);
        // SAFETY: per the contract, the header is mapped and ours.
        unsafe {
            let base = (*segment).map_base;
            let block_offset = (*segment).huge_offset;
            if base != segment as *mut u8 || ptr != (segment as *mut u8).add(block_offset) || new_size > MAX_REQUEST {
                return None; // over-aligned layout: let the caller copy
            }
            let map_size = (block_offset + new_size).next_multiple_of(P::PAGE_SIZE);
            let segment = Self::remap_segment(memory, segment, map_size)?;
            (*segment).huge_size = map_size - block_offset;
            Some((segment as *mut u8).add(block_offset))
        }
    }

    /// Resize the mapping of a huge segment whose header starts it to
    /// `map_size` bytes with the provider's remap (pages move, no bytes are
    /// copied). Returns the (possibly moved) segment, or `None`, untouched.
    ///
    /// # Safety
    /// The caller owns `segment`, and `map_base == segment`.
    unsafe fn remap_segment<P: PageProvider>(memory: &Memory<P>, segment: *mut Segment, map_size: usize) -> Option<*mut Segment> {
        if !P::CAN_REMAP {
            return None;
        }
        // SAFETY: per the contract; the segment map is updated around the move.
        unsafe {
            let (base, old_size) = ((*segment).map_base, (*segment).map_size);
            segment_map_remove(segment);
            let Some(moved) = memory.remap_huge(NonNull::new_unchecked(base), old_size, map_size, SEGMENT_SIZE) else {
                segment_map_insert(segment);
                return None;
            };
            let segment = moved.as_ptr() as *mut Segment;
            (*segment).map_base = moved.as_ptr();
            (*segment).map_size = map_size;
            segment_map_insert(segment);
            Some(segment)
        }
    }

    /// Free a huge block (checked: its start, and live): into the cache, or
    /// to the release batch.
    ///
    /// # Safety
    /// `segment` is a mapped huge header (the segment map says so) covering `ptr`.
    pub unsafe fn free<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment, ptr: *mut u8) {
        // SAFETY: per the contract.
        unsafe {
            if ptr as usize != segment as usize + (*segment).huge_offset {
                memory.fatal_at("free(): invalid pointer (inside a huge block) ", ptr as usize);
            }
            if (*segment)
                .huge_state
                .compare_exchange(HUGE_LIVE, HUGE_CACHED, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                memory.fatal_at("free(): double free of huge block ", ptr as usize);
            }
        }
        self.cache_insert(memory, segment, memory.now_ms());
    }

    /// Keep a freed mapping in the cache (warm), or send it to the release
    /// batch when it is too big or over-aligned.
    fn cache_insert<P: PageProvider>(&self, memory: &Memory<P>, mut segment: *mut Segment, now: u64) {
        let mut cache = self.cache.lock();
        // SAFETY: the segment is now owned by the cache machinery.
        let aligned_big = unsafe { (*segment).map_base != segment as *mut u8 };
        if P::CAN_SPLIT && !aligned_big {
            // SAFETY: a freed mapping whose header starts it, not cached.
            segment = unsafe { cache.join_neighbours(memory, segment) };
        }
        // SAFETY: as above.
        let size = unsafe { (*segment).map_size };
        if aligned_big || size > BIGCACHE_MAPPED_BYTES / 4 {
            cache.batch_push(memory, segment);
            return;
        }
        // Room in slots and in mapped bytes: release the oldest mappings.
        while cache.len > 0 && (cache.cached_bytes + size > BIGCACHE_MAPPED_BYTES || cache.len == BIGCACHE_SLOTS) {
            let Some(i) = cache.oldest(|_| true) else { break };
            let old = cache.remove(i).segment;
            cache.batch_push(memory, old);
        }
        cache.tick += 1;
        let slot = CacheSlot { segment, tick: cache.tick, cached_ms: now, warm: true };
        let delay = memory.options.purge_delay_ms.load(Ordering::Relaxed) as u64;
        cache.insert(slot, now.saturating_add(delay.max(BIGCACHE_WARM_MAX_MS)));
        cache.purge_warm(memory, now);
    }

    /// Empty the cache through the batch and flush it. Returns bytes released.
    pub fn trim<P: PageProvider>(&self, memory: &Memory<P>) -> usize {
        let mut cache = self.cache.lock();
        let mut released = 0;
        while let Some(i) = cache.oldest(|_| true) {
            let segment = cache.remove(i).segment;
            released += cache.batch_push(memory, segment);
        }
        released + cache.batch_flush(memory)
    }

    /// Take the lock (before `fork`).
    pub fn lock_all(&self) {
        core::mem::forget(self.cache.lock());
    }

    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: lock_all took the lock and forgot the guard.
        unsafe { self.cache.force_unlock() };
    }
}

impl Default for HugeBlocks {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_the_block_within_2_mib_of_its_header() {
        let layout = core::hint::black_box(huge_layout);
        assert_eq!(layout(16), (SEGMENT_HEADER_BYTES, 0));
        assert_eq!(layout(1 << 20), (1 << 20, 0));
        assert_eq!(layout(SEGMENT_SIZE), (SEGMENT_SIZE, 0));
        assert_eq!(layout(4 << 20), (SEGMENT_SIZE, 2 << 20));
        assert_eq!(layout(1 << 30), (SEGMENT_SIZE, (1 << 30) - SEGMENT_SIZE));
    }
}

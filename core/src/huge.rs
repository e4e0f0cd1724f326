//! Huge blocks (above `LARGE_MAX`): one mapping each (or a piece of one,
//! see bigcache.rs), reused through BigCache, behind one lock in
//! [`HugeBlocks`]. Self-contained: it needs only [`Memory`] (provider,
//! counters, options).
//!
//! Layout of a huge mapping: a segment header at a 2 MiB boundary, the block
//! at `huge_offset` after it (< 2 MiB, so masking the block pointer finds
//! the header). For alignments of 2 MiB and more the header sits 2 MiB
//! before the aligned block and the mapping starts `align - 2 MiB` earlier.
//! A live block's `huge_state` is `HUGE_LIVE`; free moves it to
//! `HUGE_CACHED` exactly once (a second free is a double free).
//!
//! With guard pages (strict mode, guard.rs) a huge block has a mapping of
//! its own between guards, is never cached, moves by copying, and once
//! freed waits inaccessible in a quarantine of `HUGE_QUARANTINE` mappings
//! before the release batch unmaps it.

use crate::bigcache::{HugeCache, Reuse};
use crate::capacity::BIGCACHE_FIT_MAX_FACTOR;
use crate::class::SegmentKind;
use crate::config::{MAX_REQUEST, MIN_ALIGN, SEGMENT_HEADER_BYTES, SEGMENT_SIZE};
use crate::guard;
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::{segment_map_insert, segment_map_remove, Segment, HUGE_CACHED, HUGE_LIVE, HUGE_OWNER};
use crate::stats::Mapping;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;
use spin::Mutex;

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

/// Freed guarded huge mappings (strict mode, guard.rs) kept, inaccessible,
/// before they are unmapped.
pub const HUGE_QUARANTINE: usize = 16;

/// Freed guarded huge mappings, oldest first (a ring).
struct HugeQuarantine {
    segments: [*mut Segment; HUGE_QUARANTINE],
    first: usize,
    len: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl Send for HugeQuarantine {}

impl HugeQuarantine {
    const fn new() -> Self {
        HugeQuarantine { segments: [core::ptr::null_mut(); HUGE_QUARANTINE], first: 0, len: 0 }
    }

    /// Keep `segment`; returns the oldest one when that made it too many.
    fn push(&mut self, segment: *mut Segment) -> Option<*mut Segment> {
        let oldest = if self.len == HUGE_QUARANTINE { self.pop() } else { None };
        self.segments[(self.first + self.len) % HUGE_QUARANTINE] = segment;
        self.len += 1;
        oldest
    }

    fn pop(&mut self) -> Option<*mut Segment> {
        if self.len == 0 {
            return None;
        }
        let segment = self.segments[self.first];
        self.first = (self.first + 1) % HUGE_QUARANTINE;
        self.len -= 1;
        Some(segment)
    }
}

/// Huge blocks: the cache and batch behind a lock, and the operations on
/// live huge blocks (which need no lock: a live block is its owner's).
/// Lock order: quarantine -> cache.
pub struct HugeBlocks {
    cache: Mutex<HugeCache>,
    quarantine: Mutex<HugeQuarantine>,
}

impl HugeBlocks {
    pub const fn new() -> Self {
        HugeBlocks { cache: Mutex::new(HugeCache::new()), quarantine: Mutex::new(HugeQuarantine::new()) }
    }

    /// Tell the fit learner (W_MAX, capacity.rs) how a lookup of `map_size`
    /// went: served as it is by a warm mapping within the tolerance (a
    /// hit, with its slack held), or missed where a warm mapping within the
    /// widest tolerance was cached (split or resize would have served it
    /// otherwise, so only a provider that can do neither gets here).
    /// Nothing to learn where purging releases nothing (all stay warm).
    fn learn_fit<P: PageProvider>(memory: &Memory<P>, cache: &HugeCache, map_size: usize, taken: Option<(*mut Segment, Reuse)>) {
        let options = &memory.options;
        if !P::PURGE_RELEASES || options.learn.load(Ordering::Relaxed) == crate::config::LEARN_OFF {
            return;
        }
        let learner = &memory.bigcache_fit;
        let configured = memory.bigcache_fit_configured();
        match taken {
            Some((segment, Reuse::Warm)) => {
                // SAFETY: a cached mapping's header starts it and is ours now.
                let size = unsafe { (*segment).map_size };
                learner.held(options, (size - map_size) * 64 / map_size);
            }
            None | Some((_, Reuse::Purged)) if cache.has_warm_fit(map_size, configured * BIGCACHE_FIT_MAX_FACTOR) => {
                learner.evicted(options);
            }
            _ => {}
        }
        learner.lookup(options, configured, matches!(taken, Some((_, Reuse::Warm))));
    }

    /// Allocate a huge block of `size` bytes aligned to `align`. Returns the
    /// block and whether it is known to be zeroed.
    pub fn alloc<P: PageProvider>(&self, memory: &Memory<P>, size: usize, align: usize) -> Option<(*mut u8, bool)> {
        self.alloc_with_room(memory, size, align, 0)
    }

    /// [`HugeBlocks::alloc`] in a mapping of at least `room` bytes, which
    /// the block may grow into in place (`realloc`); its usable size is
    /// `size` rounded to whole pages, not the mapping's.
    pub fn alloc_with_room<P: PageProvider>(&self, memory: &Memory<P>, size: usize, align: usize, room: usize) -> Option<(*mut u8, bool)> {
        if size > MAX_REQUEST || align > MAX_REQUEST {
            return None;
        }
        if memory.guards() {
            return Self::alloc_guarded(memory, size, align);
        }
        let (block_offset, header_offset) = huge_layout(align);
        let map_size = (header_offset + block_offset + size).next_multiple_of(P::PAGE_SIZE).max(room);
        // Whether the live bytes' peak was noted under the first lock.
        let mut noted = false;
        let reused = if header_offset == 0 {
            let mut cache = self.cache.lock();
            let now = memory.now_ms();
            cache.purge_warm(memory, now, true);
            let fit = memory.bigcache_fit();
            let taken = cache.take(map_size, fit, P::CAN_REMAP, P::CAN_SPLIT, P::CAN_MOVE);
            Self::learn_fit(memory, &cache, map_size, taken);
            let taken = match taken {
                Some((segment, Reuse::Split)) => {
                    // SAFETY: taken from the cache for a split, so a slot is free.
                    unsafe { cache.split(memory, segment, map_size, now) };
                    Some((segment, Reuse::Warm))
                }
                // SAFETY: the provider can move pages.
                None if P::CAN_MOVE => unsafe { cache.stitch(memory, map_size) }.map(|segment| (segment, Reuse::Warm)),
                taken => taken,
            };
            // The warm cache's bound follows the live bytes' peak: noted
            // now when the block's size is final, else below.
            if matches!(taken, Some((_, reuse)) if reuse != Reuse::Resize) {
                cache.note_live(memory, now);
                noted = true;
            }
            taken
        } else {
            None
        };
        let warm = matches!(reused, Some((_, Reuse::Warm | Reuse::Resize)));
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
        if header_offset == 0 && P::PURGE_RELEASES {
            let configured = memory.options.bigcache_bytes.load(Ordering::Relaxed);
            memory.bigcache.lookup(&memory.options, configured, warm && reused.is_some());
        }
        let (segment, zeroed) = match reused {
            Some(reused) => {
                memory.stats.bigcache_hits.fetch_add(1, Ordering::Relaxed);
                reused
            }
            None => {
                memory.stats.bigcache_misses.fetch_add(1, Ordering::Relaxed);
                (Self::map_fresh(memory, map_size, align, header_offset)?, P::MAPS_ZEROED)
            }
        };
        // SAFETY: the segment is exclusively ours (fresh or taken from the cache).
        let block = unsafe {
            let map_end = (*segment).map_base as usize + (*segment).map_size;
            (*segment).huge_offset = block_offset;
            (*segment).huge_size = map_end - (segment as usize + block_offset);
            if room > 0 {
                (*segment).huge_size = (*segment).huge_size.min(size.next_multiple_of(P::PAGE_SIZE));
            }
            (*segment).huge_state.store(HUGE_LIVE, Ordering::Release);
            (segment as usize + block_offset) as *mut u8
        };
        if !noted && P::PURGE_RELEASES {
            self.cache.lock().note_live(memory, memory.now_ms());
        }
        Some((block, zeroed))
    }

    /// A fresh huge mapping of `map_size` bytes aligned for `align`, its
    /// header written `header_offset` bytes in (see `huge_layout`) and
    /// entered in the segment map. `None` when out of memory, or when the
    /// mapping lies outside the map's window (it goes back unused).
    fn map_fresh<P: PageProvider>(memory: &Memory<P>, map_size: usize, align: usize, header_offset: usize) -> Option<*mut Segment> {
        let mapping = memory.map(map_size, align.max(SEGMENT_SIZE), Mapping::Huge)?;
        let base = mapping.as_ptr();
        let segment = (base as usize + header_offset) as *mut Segment;
        // SAFETY: fresh memory; the caller sized it so that the header
        // fits before the block.
        unsafe {
            if !Segment::write_header(segment, HUGE_OWNER, SegmentKind::Huge, base, map_size) {
                memory.unmap(mapping, map_size, Mapping::Huge);
                return None;
            }
            (*segment).used_pages = 1;
        }
        Some(segment)
    }

    /// A huge block between guard pages in a mapping of its own (strict
    /// mode, guard.rs; never cached): its usable size is `size`.
    fn alloc_guarded<P: PageProvider>(memory: &Memory<P>, size: usize, align: usize) -> Option<(*mut u8, bool)> {
        let (block_offset, header_offset) = huge_layout(align);
        // The block area starts past the front guard (guard.rs).
        let block_offset = block_offset.max(guard::front_guard_end::<P>()).next_multiple_of(align.min(SEGMENT_SIZE));
        let map_size = guard::huge_map_size::<P>(header_offset + block_offset, size);
        let segment = Self::map_fresh(memory, map_size, align, header_offset)?;
        // SAFETY: a fresh mapping sized by huge_map_size, ours.
        unsafe {
            let block = guard::place_huge(memory, segment, segment as usize + block_offset, size, align.max(MIN_ALIGN));
            (*segment).huge_offset = block as usize - segment as usize;
            (*segment).huge_size = size;
            (*segment).huge_state.store(HUGE_LIVE, Ordering::Release);
            Some((block, P::MAPS_ZEROED))
        }
    }

    /// Resize a live huge block in place or by moving its pages (no copy)
    /// when the provider can. Returns the new block pointer, or `None`
    /// (block untouched) when the caller must copy.
    ///
    /// # Safety
    /// `ptr` is a live huge block, owned by the caller.
    pub unsafe fn realloc<P: PageProvider>(&self, memory: &Memory<P>, ptr: *mut u8, new_size: usize) -> Option<*mut u8> {
        if memory.guards() {
            return None; // guarded blocks move by copying (and free's checks)
        }
        let segment = Segment::of_ptr(ptr);
        // SAFETY: per the contract, the header is mapped and ours.
        unsafe {
            let base = (*segment).map_base;
            let block_offset = (*segment).huge_offset;
            if base != segment as *mut u8 || ptr != (segment as *mut u8).add(block_offset) || new_size > MAX_REQUEST {
                return None; // over-aligned layout: let the caller copy
            }
            let map_size = (block_offset + new_size).next_multiple_of(P::PAGE_SIZE);
            // Growing: within its mapping when it has room there (a split
            // left some, or `alloc_with_room` gave it: a remap would cut
            // the mapping short of the room or of the cached tail after
            // it), else into the warm cached mapping right after it, if any
            // (that tail), else by remapping, the pages it adds taken from
            // warm cached mappings where that pays (not faulted one by one).
            let old_map_size = (*segment).map_size;
            let grown = if map_size <= old_map_size {
                new_size >= (*segment).huge_size
            } else {
                P::CAN_SPLIT && self.cache.lock().grow_into_next(memory, segment, map_size, memory.now_ms())
            };
            let segment = if grown {
                segment
            } else {
                let remapped = Self::remap_segment(memory, segment, map_size)?;
                if P::CAN_MOVE && map_size > old_map_size {
                    self.cache.lock().fill_grown(memory, remapped, old_map_size);
                }
                remapped
            };
            (*segment).huge_size = map_size - block_offset;
            // The warm cache's bound follows the live bytes' peak.
            if P::PURGE_RELEASES {
                self.cache.lock().note_live(memory, memory.now_ms());
            }
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
                // Back where it was, so inside the window.
                let _ = segment_map_insert(segment);
                return None;
            };
            let segment = moved.as_ptr() as *mut Segment;
            (*segment).map_base = moved.as_ptr();
            (*segment).map_size = map_size;
            if !segment_map_insert(segment) {
                memory.fatal_at("the provider moved a huge block outside the segment map's window to ", segment as usize);
            }
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
        memory.profile.forget(ptr as usize);
        if memory.guards() {
            // SAFETY: a guarded block (every huge block is, in this mode),
            // just marked freed by this call.
            unsafe { self.retire_guarded(memory, segment, ptr) };
            return;
        }
        self.cache_insert(memory, segment, memory.now_ms());
    }

    /// Check a freed guarded block's slack, make its mapping inaccessible
    /// and quarantine it; the oldest quarantined mapping is unmapped.
    ///
    /// # Safety
    /// `ptr` is the guarded block of `segment`, just marked freed.
    unsafe fn retire_guarded<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment, ptr: *mut u8) {
        // SAFETY: per the contract; the mapping is ours until unmapped.
        unsafe {
            guard::check_huge(memory, segment, ptr, (*segment).huge_size);
            guard::retire_huge(memory, segment);
        }
        let oldest = self.quarantine.lock().push(segment);
        if let Some(oldest) = oldest {
            // SAFETY: out of the quarantine, a whole mapping nothing uses.
            unsafe { self.cache.lock().release(memory, oldest) };
        }
    }

    /// Keep a freed mapping in the cache (warm), or send it to the release
    /// batch; see `HugeCache::insert_freed`.
    fn cache_insert<P: PageProvider>(&self, memory: &Memory<P>, segment: *mut Segment, now: u64) {
        // SAFETY: the caller hands over a freed (or never used) mapping.
        unsafe { self.cache.lock().insert_freed(memory, segment, now) }
    }

    /// Purge the warm cached mappings the policy says are idle
    /// (`HugeCache::purge_warm`), between huge calls.
    pub fn purge_idle<P: PageProvider>(&self, memory: &Memory<P>) {
        self.cache.lock().purge_warm(memory, memory.now_ms(), false);
    }

    /// Empty the cache through the batch and flush it. Returns bytes released.
    pub fn trim<P: PageProvider>(&self, memory: &Memory<P>) -> usize {
        let mut quarantine = self.quarantine.lock();
        let mut cache = self.cache.lock();
        while let Some(segment) = quarantine.pop() {
            // SAFETY: out of the quarantine, a whole mapping nothing uses.
            unsafe { cache.release(memory, segment) };
        }
        cache.release_all(memory)
    }

    /// Cached huge mappings: (count, bytes).
    pub fn cached(&self) -> (usize, usize) {
        self.cache.lock().cached()
    }

    /// Take the lock (before `fork`).
    pub fn lock_all(&self) {
        core::mem::forget(self.quarantine.lock());
        core::mem::forget(self.cache.lock());
    }

    /// # Safety
    /// Only after `lock_all` in this thread (or in the forked child).
    pub unsafe fn unlock_all(&self) {
        // SAFETY: lock_all took the locks and forgot the guards.
        unsafe {
            self.cache.force_unlock();
            self.quarantine.force_unlock();
        }
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
    fn layout_keeps_the_block_within_a_segment_of_its_header() {
        let layout = core::hint::black_box(huge_layout);
        assert_eq!(layout(16), (SEGMENT_HEADER_BYTES, 0));
        assert_eq!(layout(SEGMENT_SIZE / 2), (SEGMENT_SIZE / 2, 0));
        assert_eq!(layout(SEGMENT_SIZE), (SEGMENT_SIZE, 0));
        assert_eq!(layout(2 * SEGMENT_SIZE), (SEGMENT_SIZE, SEGMENT_SIZE));
        assert_eq!(layout(1 << 30), (SEGMENT_SIZE, (1 << 30) - SEGMENT_SIZE));
    }
}

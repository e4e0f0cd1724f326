//! BigCache: freed huge mappings kept for reuse, and the release batch,
//! the only code that unmaps huge blocks (the rule inherited from the
//! original hakmem: every release goes through one place).
//!
//! ```text
//!  freed mapping --> join warm neighbours (CAN_SPLIT) --> slot, warm
//!  request -------> warm fit (<= 1.25x) | split a larger warm one (CAN_SPLIT)
//!                   | resize the nearest warm one (CAN_REMAP; only a larger
//!                   one with CAN_MOVE) | stitch the pages of warm ones into
//!                   a new mapping (CAN_MOVE) | purged fit
//!  growing realloc -> the warm mapping right after the block, joined (CAN_SPLIT)
//!                   | remapped, its new pages replaced by warm ones' (CAN_MOVE)
//!  warm --> purged (kept mapped; never where purging releases nothing,
//!           `PageProvider::PURGE_RELEASES`): over the warm limit (`HAKMEM_BIGCACHE_MAX`,
//!           or learned: capacity.rs; oldest first), after
//!           a pause in huge calls (at least BIGCACHE_PAUSE_MIN_MS), or warm
//!           for BIGCACHE_WARM_MAX_MS
//!  evicted (slots or BIGCACHE_MAPPED_BYTES full), too big, trim
//!           --> purge --> release batch (RELEASE_BATCH mappings) --flush--> unmap
//! ```
//!
//! Invariants: `order[..len]` numbers the slots of the cached mappings,
//! sorted by size (so a lookup is a binary search and a short walk), and
//! `order[len..]` the free slots; `cached_bytes` is
//! the sum of their sizes, `warm_bytes` the same over warm slots;
//! `warm_bytes <=` the warm limit (`Memory::bigcache_limit`) after every
//! free; `cached_bytes <= BIGCACHE_MAPPED_BYTES`; every cached mapping's
//! header starts it and its `huge_state` is `HUGE_CACHED`; the edge
//! filter counts each cached mapping's start and end address (a freed
//! mapping looks for neighbours to join only where it says one may be).

use crate::class::SegmentKind;
use crate::config::{
    BIGCACHE_LIVE_FLOOR, BIGCACHE_LIVE_WINDOW_MS, BIGCACHE_MAPPED_BYTES, BIGCACHE_PAUSE_MIN_MS, BIGCACHE_SLOTS, BIGCACHE_WARM_MAX_MS,
    RELEASE_BATCH, SEGMENT_HEADER_BYTES, SEGMENT_SIZE, STITCH_MIN_BYTES,
};
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::{segment_map_remove, Segment, HUGE_CACHED, HUGE_OWNER};
use crate::stats::Mapping;
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering;
use static_assertions::const_assert;

#[derive(Clone, Copy)]
struct CacheSlot {
    segment: *mut Segment,
    /// Its `map_size`, kept here while cached: a lookup compares the sizes
    /// of every slot, and reading each from its header would miss on up to
    /// 128 lines (and pages).
    size: usize,
    /// Insertion tick, for LRU eviction.
    tick: u64,
    /// When it was cached (provider clock, ms), for the purge delay.
    cached_ms: u64,
    /// Still resident (not purged since it was freed).
    warm: bool,
}

/// How a cached mapping serves a request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
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

/// A warm mapping at least this large is split to serve `map_size` bytes:
/// its tail from the 2 MiB boundary past the request is at least 2 MiB.
const fn split_min(map_size: usize) -> usize {
    map_size.next_multiple_of(SEGMENT_SIZE) + SEGMENT_SIZE
}

/// Buckets of the edge filter (`HugeCache::edges`).
const EDGE_BUCKETS: usize = 256;

/// The edge filter's bucket of a mapping's start or end address.
fn edge_bucket(address: usize) -> usize {
    ((address >> 12) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize >> (usize::BITS - EDGE_BUCKETS.trailing_zeros())
}

const EMPTY_SLOT: CacheSlot = CacheSlot { segment: null_mut(), size: 0, tick: 0, cached_ms: 0, warm: false };

/// Every slot free, in order.
const ORDER_START: [u8; BIGCACHE_SLOTS] = {
    let mut order = [0; BIGCACHE_SLOTS];
    let mut i = 0;
    while i < BIGCACHE_SLOTS {
        order[i] = i as u8;
        i += 1;
    }
    order
};
const_assert!(BIGCACHE_SLOTS <= u8::MAX as usize + 1);

/// BigCache and the release batch (behind the lock of `HugeBlocks`).
///
/// Invariants: `cached_bytes` = sum of the cached mappings' sizes,
/// `warm_bytes` = the same over warm slots; `warm_bytes <=` the warm limit
/// after every free; `cached_bytes <= BIGCACHE_MAPPED_BYTES`; `edges[b]`
/// counts the slots whose start or end address falls in bucket `b`.
pub struct HugeCache {
    /// The cached mappings, each in the slot it entered (a slot never
    /// moves: taking one out or putting one in moves bytes of `order`).
    slots: [CacheSlot; BIGCACHE_SLOTS],
    /// A permutation of the slot numbers: `order[..len]` the occupied
    /// ones, sorted by size (index `i` below means `order[i]`'s slot),
    /// `order[len..]` the free ones.
    order: [u8; BIGCACHE_SLOTS],
    len: usize,
    /// How many cached mappings start or end in each bucket
    /// (`edge_bucket`): a freed mapping whose end and start fall in empty
    /// buckets has no cached neighbour to join, and skips the scans for
    /// one (each a pass over every slot).
    edges: [u16; EDGE_BUCKETS],
    /// No warm slot reaches its maximum age before this (ms); lets calls
    /// skip the scan.
    next_expiry_ms: u64,
    /// When the last huge alloc or free was (ms), to see pauses.
    last_call_ms: u64,
    /// Moving average of the gap between huge calls (ms).
    gap_avg_ms: u64,
    cached_bytes: usize,
    warm_bytes: usize,
    /// Peak bytes of live huge blocks in this window and the one before
    /// (`BIGCACHE_LIVE_WINDOW_MS`, numbered `live_window`): the warm
    /// limit's bound (`warm_limit`).
    live_peak: usize,
    live_peak_before: usize,
    live_window: u64,
    tick: u64,
    batch: [*mut Segment; RELEASE_BATCH],
    batch_len: usize,
}
// SAFETY: the raw pointers are only followed under the owning Mutex.
unsafe impl Send for HugeCache {}

impl HugeCache {
    pub const fn new() -> Self {
        HugeCache {
            slots: [EMPTY_SLOT; BIGCACHE_SLOTS],
            order: ORDER_START,
            len: 0,
            edges: [0; EDGE_BUCKETS],
            next_expiry_ms: u64::MAX,
            last_call_ms: 0,
            gap_avg_ms: 0,
            cached_bytes: 0,
            warm_bytes: 0,
            live_peak: 0,
            live_peak_before: 0,
            live_window: 0,
            tick: 0,
            batch: [null_mut(); RELEASE_BATCH],
            batch_len: 0,
        }
    }

    /// Cached mappings: (count, bytes).
    pub fn cached(&self) -> (usize, usize) {
        (self.len, self.cached_bytes)
    }

    /// Take the cached mapping that serves `map_size` best: a warm one that
    /// fits (at most `fit` 64ths of it larger: W_MAX, learned in
    /// capacity.rs) as it is; else, when `can_split`, the
    /// smallest warm one with at least 2 MiB to spare past the request's
    /// 2 MiB boundary, to be split; else, when `can_resize`, the warm one
    /// nearest in size, to be resized (`nearest_warm`; only a larger one
    /// when stitching pays: `can_stitch` and enough warm bytes,
    /// `worth_stitching`); else, when stitching pays, none
    /// (the caller stitches, without faults); else a purged one that fits.
    /// Returns it and how to reuse it.
    pub fn take(&mut self, map_size: usize, fit: usize, can_resize: bool, can_split: bool, can_stitch: bool) -> Option<(*mut Segment, Reuse)> {
        let stitch = can_stitch && Self::worth_stitching(self.warm_bytes, map_size);
        // The slots are sorted by size: each candidate is the first warm
        // (or purged) slot on one side of a size.
        let (at, warm_fit, first_fit) = self.fitting(map_size, fit);
        let (i, reuse) = if let Some(i) = warm_fit {
            (i, Reuse::Warm)
        } else if let Some(i) = can_split.then(|| self.first_warm_from(self.first_at_least(split_min(map_size)))).flatten() {
            (i, Reuse::Split)
        } else if let Some(i) = can_resize.then(|| self.nearest_warm(map_size, at, stitch)).flatten() {
            (i, Reuse::Resize)
        } else if stitch {
            return None;
        } else {
            (first_fit?, Reuse::Purged)
        };
        Some((self.remove(i).segment, reuse))
    }

    /// Whether a warm mapping at least `map_size` bytes and at most `fit`
    /// 64ths larger is cached: one a request missed that a tolerance of
    /// `fit` would have served as it is.
    pub fn has_warm_fit(&self, map_size: usize, fit: usize) -> bool {
        self.fitting(map_size, fit).1.is_some()
    }

    /// Among the slots that serve `map_size` as they are (at least as
    /// large, at most `fit` 64ths larger; the slots are sorted by size):
    /// the index of the smallest warm one and of the smallest one. Also the
    /// index of the first slot at least `map_size` long. The fitting slots
    /// are walked from the first, with no second binary search for their
    /// end: the walk stops at the first warm one, most often the first.
    fn fitting(&self, map_size: usize, fit: usize) -> (usize, Option<usize>, Option<usize>) {
        let top = map_size.saturating_add(map_size / 64 * fit);
        let at = self.first_at_least(map_size);
        let mut fits = (at..self.len).take_while(|&i| self.slot(i).size <= top);
        let first = fits.clone().next();
        (at, fits.find(|&i| self.slot(i).warm), first)
    }

    /// The warm slot nearest `map_size` for a resize (`at`: the first slot
    /// at least that large): shrinking is cheap and growing faults only
    /// the growth, so a size above counts a quarter of a size below; only
    /// one above when stitching pays (`above_only`).
    fn nearest_warm(&self, map_size: usize, at: usize, above_only: bool) -> Option<usize> {
        let above = self.first_warm_from(at);
        let below = if above_only { None } else { (0..at).rev().find(|&i| self.slot(i).warm) };
        match (above, below) {
            (Some(a), Some(b)) if map_size - self.slot(b).size < (self.slot(a).size - map_size) / 4 => Some(b),
            (None, b) => b,
            (a, _) => a,
        }
    }

    /// Index of the first warm slot at or after `i` (the smallest warm one
    /// at least as large as slot `i`).
    fn first_warm_from(&self, i: usize) -> Option<usize> {
        (i..self.len).find(|&i| self.slot(i).warm)
    }

    /// Index of the first slot at least `size` bytes long (`len` if none).
    fn first_at_least(&self, size: usize) -> usize {
        self.order[..self.len].partition_point(|&n| self.slots[n as usize].size < size)
    }

    /// Cut a warm mapping taken for a request of `head_size` bytes at the
    /// first segment boundary past it; the tail becomes a cached mapping of
    /// its own (a header is written at its start), unless it lies outside
    /// the segment map's window (then the mapping stays whole).
    ///
    /// # Safety
    /// `segment` was just taken from the cache (`Reuse::Split`) and the
    /// provider can split mappings; the cache has a free slot.
    pub unsafe fn split<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment, head_size: usize, now: u64) {
        // SAFETY: per the contract; the tail lies in the taken mapping and
        // holds nothing live.
        unsafe {
            let end = segment as usize + (*segment).map_size;
            let cut = segment as usize + head_size.next_multiple_of(SEGMENT_SIZE);
            let tail = cut as *mut Segment;
            if !Segment::write_header(tail, HUGE_OWNER, SegmentKind::Huge, tail as *mut u8, end - cut) {
                return; // the tail lies past the segment map's window: keep the mapping whole
            }
            (*tail).used_pages = 1;
            (*tail).pieced = (*segment).pieced;
            (*tail).huge_state.store(HUGE_CACHED, Ordering::Relaxed);
            (*segment).map_size = cut - segment as usize;
            memory.stats.huge_mapped.fetch_add(1, Ordering::Relaxed);
            let delay = memory.purge_delay_ms() as u64;
            self.tick += 1;
            let slot = CacheSlot { segment: tail, size: end - cut, tick: self.tick, cached_ms: now, warm: true };
            self.insert(slot, now.saturating_add(delay.max(BIGCACHE_WARM_MAX_MS)));
        }
    }

    /// Whether stitching pays for a request of `map_size` bytes: at least
    /// `STITCH_MIN_BYTES` warm (below, the system calls cost more than the
    /// faults saved), and half the request (else a purged mapping that fits
    /// faults about as much, with one call).
    fn worth_stitching(warm_bytes: usize, map_size: usize) -> bool {
        warm_bytes >= STITCH_MIN_BYTES.max(map_size / 2)
    }

    /// Build a mapping of `map_size` bytes for a request no cached mapping
    /// serves alone, from the pages of warm ones (`fill`): a fresh mapping
    /// (nothing of it touched yet) whose pages are replaced by theirs. What
    /// warm pages cannot fill faults as fresh memory does. Returns the
    /// mapping, its header written and entered in the segment map, or
    /// `None` (nothing warm, or out of memory).
    ///
    /// # Safety
    /// The provider can move pages (`CAN_MOVE`).
    pub unsafe fn stitch<P: PageProvider>(&mut self, memory: &Memory<P>, map_size: usize) -> Option<*mut Segment> {
        if !Self::worth_stitching(self.warm_bytes, map_size) {
            return None;
        }
        let mapping = memory.map(map_size, SEGMENT_SIZE, Mapping::Huge)?;
        // SAFETY: the fresh mapping is ours and untouched; per the contract.
        unsafe { self.fill(memory, mapping.as_ptr() as usize, map_size) };
        let segment = mapping.as_ptr() as *mut Segment;
        // SAFETY: the mapping is ours; a header lands on its first page
        // (moved there or fresh). One outside the map's window goes back.
        unsafe {
            if !Segment::write_header(segment, HUGE_OWNER, SegmentKind::Huge, mapping.as_ptr(), map_size) {
                memory.unmap(mapping, map_size, Mapping::Huge);
                return None;
            }
            (*segment).used_pages = 1;
            (*segment).pieced = true;
        }
        Some(segment)
    }

    /// Give the untouched pages a growing `realloc` just added to a live
    /// huge mapping (`segment`, from `old_size` to its `map_size`, by a
    /// remap: fresh pages, each a fault at its first write) the pages of
    /// warm cached mappings instead, when that pays (`worth_stitching` of
    /// the added bytes): the block grows into resident memory, as a new
    /// block would by `stitch`. The live pages do not move.
    ///
    /// # Safety
    /// The caller owns `segment`, a live huge mapping whose header starts
    /// it, whose pages from `old_size` on were added by the remap and are
    /// not used yet; the provider can move pages (`CAN_MOVE`).
    pub unsafe fn fill_grown<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment, old_size: usize) {
        // SAFETY: per the contract.
        unsafe {
            let added = (*segment).map_size - old_size;
            if Self::worth_stitching(self.warm_bytes, added) && self.fill(memory, segment as usize + old_size, added) > 0 {
                (*segment).pieced = true;
            }
        }
    }

    /// Move the pages of warm cached mappings, largest first, over the
    /// `bytes` untouched bytes at `dest` (page aligned, inside one of our
    /// huge mappings), without a copy or a fault (`PageProvider::move_pages`).
    /// A mapping with more than the rest needs gives its tail and stays
    /// cached (its header is at its start). Returns the bytes filled (the
    /// rest stays fresh).
    ///
    /// # Safety
    /// As for `stitch`; nothing uses `dest..dest + bytes` during the call.
    unsafe fn fill<P: PageProvider>(&mut self, memory: &Memory<P>, dest: usize, bytes: usize) -> usize {
        let mut filled = 0;
        // A donor keeps at least its header; one down to that gives no more.
        let gives = |slot: &CacheSlot| slot.warm && slot.size > SEGMENT_HEADER_BYTES;
        // SAFETY: cached mappings are live and the cache's.
        let pieced = |slot: &CacheSlot| unsafe { (*slot.segment).pieced };
        while filled < bytes {
            // The largest first; pieced ones last (see `Segment::pieced`).
            let Some(i) = (0..self.len).filter(|&i| gives(self.slot(i))).max_by_key(|&i| (!pieced(self.slot(i)), self.slot(i).size))
            else {
                break;
            };
            let (donor, size, need) = (self.slot(i).segment, self.slot(i).size, bytes - filled);
            // All of it, or its tail (it keeps at least its header).
            let whole = size <= need;
            let part = if whole { size } else { need.min(size - SEGMENT_HEADER_BYTES) };
            // SAFETY: a cached mapping is the cache's and holds nothing
            // live; the destination is untouched (the contract).
            unsafe {
                if whole {
                    self.remove(i);
                    segment_map_remove(donor);
                } else {
                    // Shorter now: placed again by its new size.
                    let mut slot = self.remove(i);
                    (*donor).map_size -= part;
                    slot.size -= part;
                    self.place(slot);
                }
                // (A failed move unmapped the source: nothing more to undo.)
                if memory.move_huge_pages(donor as usize + size - part, part, dest + filled, whole) {
                    filled += part;
                }
            }
        }
        filled
    }

    /// Grow a live huge mapping in place to at least `map_size` bytes with
    /// the warm cached mapping right after it, when that one is large
    /// enough (a split tail, typically): no syscall, and its pages are
    /// resident. What the growth does not need (from the first 2 MiB
    /// boundary past `map_size`) stays cached. Returns whether it grew.
    ///
    /// # Safety
    /// The caller owns `segment`, a live huge mapping whose header starts
    /// it; the provider can split mappings.
    pub unsafe fn grow_into_next<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment, map_size: usize, now: u64) -> bool {
        // SAFETY: per the contract; cached mappings are live and the cache's.
        unsafe {
            let needed = map_size.saturating_sub((*segment).map_size);
            let Some(i) = self.warm_slot_after(segment, needed) else {
                return false;
            };
            let next = self.remove(i).segment;
            Self::join(memory, segment, next);
            if (*segment).map_size >= split_min(map_size) {
                // A slot is free: one was just removed.
                self.split(memory, segment, map_size, now);
            }
            true
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
            if let Some(i) = self.warm_slot_after(segment, 0) {
                let next = self.remove(i).segment;
                Self::join(memory, segment, next);
            }
            if let Some(i) = self.warm_slot_before(segment as usize) {
                let prev = self.remove(i).segment;
                Self::join(memory, prev, segment);
                segment = prev;
            }
            segment
        }
    }

    /// The warm cached mapping that starts where `segment`'s mapping ends,
    /// at least `min_size` bytes long.
    ///
    /// # Safety
    /// `segment` is a mapped huge header that starts its mapping.
    unsafe fn warm_slot_after(&self, segment: *mut Segment, min_size: usize) -> Option<usize> {
        // SAFETY: per the contract.
        let end = segment as usize + unsafe { (*segment).map_size };
        if self.edges[edge_bucket(end)] == 0 {
            return None;
        }
        (0..self.len).find(|&i| self.slot(i).warm && self.slot(i).segment as usize == end && self.slot(i).size >= min_size)
    }

    /// The warm cached mapping that ends at `start`.
    fn warm_slot_before(&self, start: usize) -> Option<usize> {
        if self.edges[edge_bucket(start)] == 0 {
            return None;
        }
        (0..self.len).find(|&i| self.slot(i).warm && self.slot(i).segment as usize + self.slot(i).size == start)
    }

    /// Count `slot`'s start and end in the edge filter (`sign` 1), or
    /// no longer (`sign` -1, as u16: wrapping).
    fn count_edges(&mut self, slot: &CacheSlot, sign: u16) {
        let start = slot.segment as usize;
        for address in [start, start + slot.size] {
            let count = &mut self.edges[edge_bucket(address)];
            *count = count.wrapping_add(sign);
        }
    }

    /// Make `second`, the mapping right after `first` (taken out of the
    /// cache), part of `first`: one mapping with one header.
    ///
    /// # Safety
    /// Both are huge mappings whose headers start them, `second` starting
    /// where `first` ends; neither is cached.
    unsafe fn join<P: PageProvider>(memory: &Memory<P>, first: *mut Segment, second: *mut Segment) {
        // SAFETY: per the contract.
        unsafe {
            segment_map_remove(second);
            (*first).map_size += (*second).map_size;
            (*first).pieced = true;
        }
        memory.stats.huge_mapped.fetch_sub(1, Ordering::Relaxed);
    }

    /// The slot at index `i` of the size order.
    fn slot(&self, i: usize) -> &CacheSlot {
        &self.slots[self.order[i] as usize]
    }

    fn slot_mut(&mut self, i: usize) -> &mut CacheSlot {
        &mut self.slots[self.order[i] as usize]
    }

    /// The cached slots, in size order.
    fn cached_slots(&self) -> impl Iterator<Item = &CacheSlot> {
        self.order[..self.len].iter().map(|&n| &self.slots[n as usize])
    }

    fn remove(&mut self, i: usize) -> CacheSlot {
        let slot = *self.slot(i);
        // SAFETY: cached segments are live mappings owned by the cache.
        debug_assert_eq!(slot.size, unsafe { (*slot.segment).map_size }, "a cached slot's size went stale");
        self.cached_bytes -= slot.size;
        if slot.warm {
            self.warm_bytes -= slot.size;
        }
        self.count_edges(&slot, u16::MAX);
        // Its number moves to the free ones (the first of them).
        let number = self.order[i];
        self.order.copy_within(i + 1..self.len, i);
        self.len -= 1;
        self.order[self.len] = number;
        slot
    }

    /// Put `slot` in its place by size (after the slots of its size).
    fn place(&mut self, slot: CacheSlot) {
        let at = self.order[..self.len].partition_point(|&n| self.slots[n as usize].size <= slot.size);
        // The first free slot takes it; its number moves into the order.
        let number = self.order[self.len];
        self.slots[number as usize] = slot;
        self.order.copy_within(at..self.len, at + 1);
        self.order[at] = number;
        self.len += 1;
        self.count_edges(&slot, 1);
        self.cached_bytes += slot.size;
        if slot.warm {
            self.warm_bytes += slot.size;
        }
    }

    /// Cache a warm mapping that stays warm until `expiry_ms` at most.
    fn insert(&mut self, slot: CacheSlot, expiry_ms: u64) {
        self.place(slot);
        self.next_expiry_ms = self.next_expiry_ms.min(expiry_ms);
    }

    /// Index of the least recently cached slot matching `filter`.
    fn oldest(&self, filter: impl Fn(&CacheSlot) -> bool) -> Option<usize> {
        (0..self.len).filter(|&i| filter(self.slot(i))).min_by_key(|&i| self.slot(i).tick)
    }
}

impl HugeCache {
    /// Purge warm cached mappings (they stay mapped and cached): the oldest
    /// while there are more warm bytes than the warm limit; those older
    /// than the purge delay after a pause (no huge call for the purge delay,
    /// `BIGCACHE_PAUSE_MIN_MS` and 8 times the usual gap between huge calls:
    /// what the program freed is not about to be reused); and any warm
    /// longer than the maximum age. Then, for a huge call (`is_call`; not
    /// for the idle purger, `Global::purge_idle`), note `now` as the last.
    ///
    /// Steady huge-block traffic thus reuses warm what it freed a few
    /// steps ago, however long each step takes, within the byte budget.
    pub fn purge_warm<P: PageProvider>(&mut self, memory: &Memory<P>, now: u64, is_call: bool) {
        if !P::PURGE_RELEASES {
            return; // purging would free nothing
        }
        let limit = self.warm_limit(memory, now);
        let delay = memory.purge_delay_ms() as u64;
        let max_age = delay.max(BIGCACHE_WARM_MAX_MS);
        let gap = now.saturating_sub(self.last_call_ms);
        let floor = if delay == 0 { 0 } else { delay.max(BIGCACHE_PAUSE_MIN_MS) };
        let pause = floor.max(self.gap_avg_ms.saturating_mul(8));
        let paused = now != 0 && gap >= pause;
        if is_call {
            self.gap_avg_ms = (self.gap_avg_ms * 7 + gap.min(pause)) / 8;
            self.last_call_ms = now;
        }
        if self.warm_bytes <= limit && !paused && (now == 0 || now < self.next_expiry_ms) {
            return;
        }
        let age_limit = if paused { delay } else { max_age };
        loop {
            let over = self.warm_bytes > limit;
            let expired = |s: &CacheSlot| s.warm && (over || (now != 0 && s.cached_ms.saturating_add(age_limit) <= now));
            let Some(i) = self.oldest(expired) else { break };
            if over {
                memory.bigcache.evicted(&memory.options);
            }
            let slot = self.slot_mut(i);
            slot.warm = false;
            let (segment, size) = (slot.segment, slot.size);
            // SAFETY: a cached mapping holds nothing live; keep its header.
            unsafe {
                let body = segment as usize + SEGMENT_HEADER_BYTES;
                let end = (*segment).map_base as usize + (*segment).map_size;
                memory.purge(body, end - body);
            }
            self.warm_bytes -= size;
        }
        // From the warm slots that stay warm.
        let next_expiry = self.cached_slots().filter(|slot| slot.warm).map(|slot| slot.cached_ms.saturating_add(max_age)).min();
        self.next_expiry_ms = next_expiry.unwrap_or(u64::MAX);
    }

    /// Note the bytes of live huge blocks now (the huge mappings' less the
    /// cache's) in the peak of this window (`BIGCACHE_LIVE_WINDOW_MS`);
    /// the peak of the window before is kept, an older one forgotten. Called
    /// after a huge block was taken or grew, and by `warm_limit`.
    pub fn note_live<P: PageProvider>(&mut self, memory: &Memory<P>, now: u64) {
        if !P::PURGE_RELEASES {
            return; // no warm limit to bound
        }
        let live = memory.stats.huge_bytes.load(Ordering::Relaxed).saturating_sub(self.cached_bytes);
        let window = now / BIGCACHE_LIVE_WINDOW_MS;
        if window != self.live_window {
            self.live_peak_before = if window == self.live_window + 1 { self.live_peak } else { 0 };
            self.live_peak = 0;
            self.live_window = window;
        }
        self.live_peak = self.live_peak.max(live);
    }

    /// The most warm bytes to keep now: the configured or learned limit
    /// (`Memory::bigcache_limit`), but no more than the recent peak of live
    /// huge bytes (this window's and the one before's, at least
    /// `BIGCACHE_LIVE_FLOOR`): a program that frees all its huge blocks
    /// and allocates them again each cycle keeps them warm, and one whose
    /// huge blocks shrink to a smaller set lets the rest go within two
    /// windows.
    fn warm_limit<P: PageProvider>(&mut self, memory: &Memory<P>, now: u64) -> usize {
        self.note_live(memory, now);
        let recent = self.live_peak.max(self.live_peak_before).max(BIGCACHE_LIVE_FLOOR);
        memory.bigcache_limit().min(recent)
    }

    /// Add a mapping to the release batch, purged at once (it may wait
    /// for seven more: resident, a batch of freed 64 MiB buffers held half
    /// a GiB); flushes a full batch. Returns bytes released.
    fn batch_push<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment) -> usize {
        // SAFETY: a batched mapping is unreachable by the program; its
        // header (which the flush reads) stays.
        unsafe {
            let (base, end) = ((*segment).map_base as usize, (*segment).map_base as usize + (*segment).map_size);
            let body = segment as usize + SEGMENT_HEADER_BYTES;
            if base < segment as usize {
                memory.purge(base, segment as usize - base);
            }
            memory.purge(body, end - body);
        }
        self.batch[self.batch_len] = segment;
        self.batch_len += 1;
        if self.batch_len == RELEASE_BATCH {
            return self.batch_flush(memory);
        }
        0
    }

    /// Unmap every mapping in the batch (purged when batched, but for its
    /// header): the only code that unmaps huge blocks. Returns bytes
    /// released.
    fn batch_flush<P: PageProvider>(&mut self, memory: &Memory<P>) -> usize {
        let mut released = 0;
        for &segment in &self.batch[..self.batch_len] {
            // SAFETY: batched segments are unreachable by the program and
            // owned by the batch; each is one whole mapping.
            unsafe {
                let (base, size) = ((*segment).map_base, (*segment).map_size);
                segment_map_remove(segment);
                memory.unmap(NonNull::new_unchecked(base), size, Mapping::Huge);
                released += size;
            }
        }
        self.batch_len = 0;
        released
    }

    /// Keep a freed mapping (warm, joined with warm neighbours where the
    /// provider can split), or send it to the release batch when it is too
    /// big or over-aligned; makes room by releasing the oldest mappings.
    ///
    /// # Safety
    /// The caller hands over `segment`, a huge mapping nothing uses, not cached.
    pub unsafe fn insert_freed<P: PageProvider>(&mut self, memory: &Memory<P>, mut segment: *mut Segment, now: u64) {
        // SAFETY: per the contract, the segment is the cache's now.
        let aligned_big = unsafe { (*segment).map_base != segment as *mut u8 };
        if P::CAN_SPLIT && !aligned_big {
            // SAFETY: a freed mapping whose header starts it, not cached.
            segment = unsafe { self.join_neighbours(memory, segment) };
        }
        // SAFETY: as above.
        let size = unsafe { (*segment).map_size };
        if aligned_big || size > BIGCACHE_MAPPED_BYTES / 4 {
            self.batch_push(memory, segment);
            return;
        }
        // Room in slots and in mapped bytes: release the oldest mappings.
        while self.len > 0 && (self.cached_bytes + size > BIGCACHE_MAPPED_BYTES || self.len == BIGCACHE_SLOTS) {
            let Some(i) = self.oldest(|_| true) else { break };
            let old = self.remove(i).segment;
            self.batch_push(memory, old);
        }
        self.tick += 1;
        let slot = CacheSlot { segment, size, tick: self.tick, cached_ms: now, warm: true };
        let delay = memory.purge_delay_ms() as u64;
        self.insert(slot, now.saturating_add(delay.max(BIGCACHE_WARM_MAX_MS)));
        if P::PURGE_RELEASES {
            memory.bigcache.held(&memory.options, self.warm_bytes);
        }
        self.purge_warm(memory, now, true);
    }

    /// Send a huge mapping nothing uses, not cached, to the release batch
    /// (strict mode's quarantine leaves through here).
    ///
    /// # Safety
    /// The caller hands over `segment`, one whole huge mapping.
    pub unsafe fn release<P: PageProvider>(&mut self, memory: &Memory<P>, segment: *mut Segment) {
        self.batch_push(memory, segment);
    }

    /// Send every cached mapping through the batch and flush it. Returns
    /// bytes released.
    pub fn release_all<P: PageProvider>(&mut self, memory: &Memory<P>) -> usize {
        let mut released = 0;
        while let Some(i) = self.oldest(|_| true) {
            let segment = self.remove(i).segment;
            released += self.batch_push(memory, segment);
        }
        released + self.batch_flush(memory)
    }
}

impl Default for HugeCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestProvider;

    /// The unit of the sizes below: a MiB in the default geometry (half a
    /// segment: the split rule counts in segments).
    const UNIT: usize = SEGMENT_SIZE / 2;

    /// A cache holding mappings of these sizes (units; purged when the
    /// flag is false), over headers of their own (only `map_size` is read).
    fn cache_of(sizes: &[(usize, bool)]) -> (HugeCache, std::vec::Vec<core::mem::MaybeUninit<Segment>>) {
        let mut cache = HugeCache::new();
        let mut headers: std::vec::Vec<_> = sizes.iter().map(|_| core::mem::MaybeUninit::<Segment>::zeroed()).collect();
        for (tick, (&(mib, warm), header)) in sizes.iter().zip(headers.iter_mut()).enumerate() {
            let segment = header.as_mut_ptr();
            // SAFETY: a zeroed header of our own; map_size is a plain field.
            unsafe { (*segment).map_size = mib * UNIT };
            cache.place(CacheSlot { segment, size: mib * UNIT, tick: tick as u64, cached_ms: 0, warm });
        }
        (cache, headers)
    }

    /// The edge filter counts exactly the cached slots' starts and ends.
    fn assert_edges_counted(cache: &HugeCache) {
        let mut edges = [0u16; EDGE_BUCKETS];
        for slot in cache.cached_slots() {
            edges[edge_bucket(slot.segment as usize)] += 1;
            edges[edge_bucket(slot.segment as usize + slot.size)] += 1;
        }
        assert_eq!(edges, cache.edges, "the edge filter lost count");
    }

    fn take_mib(cache: &mut HugeCache, mib_x4: usize, can_resize: bool, can_split: bool) -> Option<(usize, bool)> {
        let taken = cache.take(mib_x4 * UNIT / 4, 16, can_resize, can_split, false);
        assert!(cache.cached_slots().is_sorted_by_key(|slot| slot.size), "slots out of order");
        let mut numbers = cache.order;
        numbers.sort_unstable();
        assert_eq!(numbers, ORDER_START, "the order lost or doubled a slot number");
        assert_edges_counted(cache);
        // SAFETY: the header is the test's.
        taken.map(|(segment, reuse)| (unsafe { (*segment).map_size } / UNIT, reuse == Reuse::Warm))
    }

    #[test]
    fn a_freed_mapping_finds_its_cached_neighbours_through_the_edge_filter() {
        // Three adjacent mappings of 1, 2 and 1 pages in one buffer (the
        // filter only reads addresses and sizes); the outer two are cached,
        // the middle one is the freed one.
        const STEP: usize = 4096;
        #[repr(C, align(64))]
        #[derive(Clone, Copy)]
        struct Line([u8; 64]);
        let mut buffer = std::vec![Line([0; 64]); 4 * STEP / 64];
        let base = buffer.as_mut_ptr() as usize;
        let header = |offset: usize, units: usize| {
            let segment = (base + offset * STEP) as *mut Segment;
            // SAFETY: inside the buffer, aligned as a header, zeroed;
            // map_size is a plain field.
            unsafe { (*segment).map_size = units * STEP };
            segment
        };
        let (before, freed, after) = (header(0, 1), header(1, 2), header(3, 1));
        let mut cache = HugeCache::new();
        // SAFETY: the headers are the test's, in the buffer.
        unsafe {
            assert_eq!(cache.warm_slot_after(freed, 0), None);
            for (tick, segment) in [before, after].into_iter().enumerate() {
                cache.place(CacheSlot { segment, size: (*segment).map_size, tick: tick as u64, cached_ms: 0, warm: true });
            }
            assert_edges_counted(&cache);
            assert_eq!(cache.warm_slot_after(freed, 0).map(|i| cache.slot(i).segment), Some(after));
            assert_eq!(cache.warm_slot_before(freed as usize).map(|i| cache.slot(i).segment), Some(before));
            assert_eq!(cache.warm_slot_after(freed, 2 * STEP), None, "too short for the growth asked");
            // Taken out, the neighbour before is no longer found.
            let i = cache.warm_slot_before(freed as usize).unwrap();
            cache.remove(i);
            assert_edges_counted(&cache);
            assert_eq!(cache.warm_slot_before(freed as usize), None);
            assert!(cache.warm_slot_after(freed, 0).is_some());
        }
    }

    #[test]
    fn a_lookup_takes_the_smallest_warm_fit_then_a_split_then_the_nearest_warm_then_a_purged_fit() {
        let sizes = [(20, true), (4, false), (9, true), (5, true), (4, true), (6, false)];
        let (mut cache, _headers) = cache_of(&sizes);
        assert!(cache.cached_slots().is_sorted_by_key(|slot| slot.size));
        assert_eq!(cache.cached(), (6, 48 * UNIT));
        // A warm fit (at most 25 % larger) before a purged one of the same size.
        assert_eq!(take_mib(&mut cache, 16, true, true), Some((4, true)));
        assert_eq!(take_mib(&mut cache, 18, true, true), Some((5, true)));
        // No warm fit: the smallest warm one with 2 MiB to spare past the
        // next 2 MiB boundary is split (6 MiB at least for 3 MiB).
        let (mut cache, _headers) = cache_of(&sizes);
        assert_eq!(take_mib(&mut cache, 12, true, true).map(|(mib, _)| mib), Some(9));
        // No split: the nearest warm one, a size above counting a quarter.
        let (mut cache, _headers) = cache_of(&sizes);
        assert_eq!(take_mib(&mut cache, 12, true, false).map(|(mib, _)| mib), Some(4), "1 MiB above");
        assert_eq!(take_mib(&mut cache, 40, true, false).map(|(mib, _)| mib), Some(9), "1 MiB below, 10 above");
        assert_eq!(take_mib(&mut cache, 48, true, false).map(|(mib, _)| mib), Some(20), "8 MiB above, 7 below");
        // Neither: only a purged one that fits.
        assert_eq!(take_mib(&mut cache, 23, false, false), Some((6, false)));
        assert_eq!(take_mib(&mut cache, 16, false, false), Some((5, true)), "a warm fit still first");
        assert_eq!(take_mib(&mut cache, 16, false, false), Some((4, false)));
        assert_eq!(take_mib(&mut cache, 16, false, false), None);
        assert_eq!(cache.cached(), (0, 0));
    }

    #[test]
    fn the_warm_limit_follows_the_recent_peak_of_live_huge_bytes() {
        let memory = Memory::new(TestProvider::new());
        let configured = memory.bigcache_limit();
        let mut cache = HugeCache::new();
        let live = |cache: &HugeCache, bytes: usize| memory.stats.huge_bytes.store(bytes + cache.cached_bytes, Ordering::Relaxed);
        // Little live: the floor.
        live(&cache, 1 << 20);
        assert_eq!(cache.warm_limit(&memory, 10_000), BIGCACHE_LIVE_FLOOR);
        // A peak of 100 MiB holds for the rest of its window and the next.
        live(&cache, 100 << 20);
        assert_eq!(cache.warm_limit(&memory, 10_100), 100 << 20);
        live(&cache, 0);
        assert_eq!(cache.warm_limit(&memory, 10_900), 100 << 20, "the same window");
        assert_eq!(cache.warm_limit(&memory, 11_500), 100 << 20, "the next window");
        assert_eq!(cache.warm_limit(&memory, 12_100), BIGCACHE_LIVE_FLOOR, "two windows later");
        // A jump over windows forgets the peak at once.
        live(&cache, 100 << 20);
        assert_eq!(cache.warm_limit(&memory, 12_200), 100 << 20);
        live(&cache, 0);
        assert_eq!(cache.warm_limit(&memory, 20_000), BIGCACHE_LIVE_FLOOR, "after a long pause");
        // Never above the configured (or learned) limit.
        live(&cache, configured * 2);
        assert_eq!(cache.warm_limit(&memory, 20_100), configured);
        // Cached bytes are not live.
        cache.cached_bytes = 500 << 20;
        memory.stats.huge_bytes.store(cache.cached_bytes + (40 << 20), Ordering::Relaxed);
        assert_eq!(cache.warm_limit(&memory, 30_000), 40 << 20);
    }
}

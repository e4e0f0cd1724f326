//! What the heaps hold, per size class and per tier, derived from page
//! state when asked (nothing is counted on the fast paths), and the
//! readable statistics table built from it.
//!
//! A census walks the segment map under its lock (`segment::census`: no
//! header is unmapped or re-shaped meanwhile) and reads, of each page in
//! use, only what may be read from any thread: its flags and class
//! (atomics) and its block counts (`Page::counts_seen`). The owners go on
//! allocating meanwhile, so a census is a snapshot; blocks freed by other
//! threads and not yet collected by their owner count as in use. Blocks in
//! the heaps' block caches (block_cache.rs), which their pages count in
//! use, are counted free (read from each heap's stack lengths).

use crate::class::{class_stride, CLASS_COUNT};
use crate::config::{LARGE_MAX, MEDIUM_MAX, SMALL_MAX};
use crate::message::{Lines, MessageBuffer};
use crate::page::{Page, PAGE_UNUSED};
use crate::segment::{Segment, ABANDONED_OWNER, CACHED_OWNER, HUGE_OWNER};
use crate::stats::StatsSnapshot;
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// One size class: the layout of `struct hakmem_class_stats` in `hakmem.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes of each block.
    pub block_size: usize,
    /// Pages of the class in use.
    pub pages: usize,
    /// Blocks handed out (including frees by other threads not yet collected).
    pub blocks_in_use: usize,
    /// `blocks_in_use * block_size`.
    pub bytes_in_use: usize,
    /// Bytes of the blocks of these pages that are free (carved or not).
    pub bytes_free: usize,
}

impl ClassStats {
    fn add(&mut self, other: &ClassStats) {
        self.pages += other.pages;
        self.blocks_in_use += other.blocks_in_use;
        self.bytes_in_use += other.bytes_in_use;
        self.bytes_free += other.bytes_free;
    }
}

/// Who holds a segment of the map, for the allocator `ours` tells.
enum Holder {
    Heap,
    Abandoned,
    Cache,
}

/// The holder of `segment` when it is ours (`Census::take`); None for a
/// huge segment or another allocator's.
///
/// # Safety
/// `segment` is a mapped header, read under the census lock.
unsafe fn holder(segment: *mut Segment, ours: &impl Fn(usize) -> bool) -> Option<Holder> {
    // SAFETY: per the contract; owner is an atomic.
    unsafe {
        match (*segment).owner.load(Ordering::Acquire) {
            HUGE_OWNER => None,
            CACHED_OWNER => Some(Holder::Cache),
            // Abandoned by a heap of another allocator: not ours.
            ABANDONED_OWNER => ours((*segment).abandoned_by).then_some(Holder::Abandoned),
            owner => ours(owner).then_some(Holder::Heap),
        }
    }
}

/// Call `visit(index, page, taken, used)` for each page of a paged
/// segment, in use or not; `visit` reads of the page only what any thread
/// may read (flags, class).
///
/// # Safety
/// `segment` is a mapped paged header, read under the census lock (its
/// geometry is fixed meanwhile).
unsafe fn for_each_page(segment: *mut Segment, mut visit: impl FnMut(usize, *const Page, u16, u16)) {
    // SAFETY: per the contract.
    unsafe {
        for index in 0..(*segment).page_count as usize {
            let page: *const Page = &raw const (*segment).pages[index];
            let (taken, used) = Page::counts_seen(page);
            visit(index, page, taken, used);
        }
    }
}

/// The calls that the pages of the allocator `ours` tells (see
/// `Census::take`) counted and have not folded into the counters yet
/// (`Page::counts`): (mallocs, frees), each to be added, wrapping, to the
/// heaps' and the global counters. A snapshot, as a census.
pub fn page_calls(ours: impl Fn(usize) -> bool) -> (usize, usize) {
    let (mut mallocs, mut frees) = (0usize, 0usize);
    crate::segment::census(|segment| {
        // SAFETY: the census lock keeps the header mapped; a heap's or an
        // abandoned segment is paged.
        unsafe {
            // Unused pages too: they keep their counts (page.rs).
            if matches!(holder(segment, &ours), Some(Holder::Heap | Holder::Abandoned)) {
                for_each_page(segment, |_, _, taken, used| {
                    mallocs += taken as usize;
                    frees = frees.wrapping_add(taken as usize).wrapping_sub(used as usize);
                });
            }
        }
    });
    (mallocs, frees)
}

/// The tiers, by the largest block size of each.
pub const TIERS: [(&str, usize); 3] = [("tiny", SMALL_MAX), ("mid", MEDIUM_MAX), ("large", LARGE_MAX)];

/// What a census found.
#[derive(Clone, Copy, Debug)]
pub struct Census {
    pub classes: [ClassStats; CLASS_COUNT],
    /// Segments held by thread heaps, abandoned by exited threads, and
    /// empty in the segment cache.
    pub segments_owned: usize,
    pub segments_abandoned: usize,
    pub segments_cached: usize,
    /// Huge blocks live and cached (count, bytes).
    pub huge_live: (usize, usize),
    pub huge_cached: (usize, usize),
    /// The debug counters (zero without the `debug-counters` feature).
    pub debug: crate::stats::DebugSnapshot,
}

impl Census {
    /// Walk every segment header. `huge_cached` is (count, bytes) of the
    /// huge-block cache; `stats` the counters (for the live huge blocks);
    /// `ours` tells the owning heaps of this allocator from others' (a
    /// process with several `Global`s, such as the tests, shares one
    /// segment map; an abandoned segment is ours when the heap that
    /// abandoned it is, and cached segments are counted for all).
    /// `cached_blocks[class]`: blocks of the class in its heaps' block
    /// caches, free though their pages count them in use.
    pub fn take(stats: &StatsSnapshot, huge_cached: (usize, usize), cached_blocks: &[usize; CLASS_COUNT], ours: impl Fn(usize) -> bool) -> Census {
        let mut census = Census {
            classes: core::array::from_fn(|class| ClassStats { block_size: class_stride(class), ..ClassStats::default() }),
            segments_owned: 0,
            segments_abandoned: 0,
            segments_cached: 0,
            huge_live: (stats.huge_mapped.saturating_sub(huge_cached.0), stats.huge_bytes.saturating_sub(huge_cached.1)),
            huge_cached,
            debug: crate::stats::DEBUG.snapshot(),
        };
        crate::segment::census(|segment| {
            // SAFETY: the census lock keeps the header mapped.
            unsafe { census.count_segment(segment, &ours) }
        });
        for (class, &cached) in census.classes.iter_mut().zip(cached_blocks) {
            let cached = cached.min(class.blocks_in_use);
            class.blocks_in_use -= cached;
            class.bytes_in_use -= cached * class.block_size;
            class.bytes_free += cached * class.block_size;
        }
        census
    }

    /// # Safety
    /// `segment` is a mapped header, read under the census lock.
    unsafe fn count_segment(&mut self, segment: *mut Segment, ours: &impl Fn(usize) -> bool) {
        // SAFETY: per the contract.
        match unsafe { holder(segment, ours) } {
            Some(Holder::Heap) => self.segments_owned += 1,
            Some(Holder::Abandoned) => self.segments_abandoned += 1,
            Some(Holder::Cache) => return self.segments_cached += 1,
            None => return,
        }
        // SAFETY: per the contract.
        unsafe {
            for_each_page(segment, |index, page, _taken, used| {
                if (*page).flags.load(Ordering::Acquire) & PAGE_UNUSED != 0 {
                    return;
                }
                let class = (*page).class();
                let block_size = class_stride(class);
                let capacity = Segment::page_area(segment, index).1 / block_size;
                let used = (used as usize).min(capacity);
                self.classes[class].add(&ClassStats {
                    block_size,
                    pages: 1,
                    blocks_in_use: used,
                    bytes_in_use: used * block_size,
                    bytes_free: (capacity - used) * block_size,
                });
            });
        }
    }

    /// The classes of tier `TIERS[tier]`, summed.
    pub fn tier(&self, tier: usize) -> ClassStats {
        let smallest = if tier == 0 { 0 } else { TIERS[tier - 1].1 };
        let largest = TIERS[tier].1;
        let mut sum = ClassStats::default();
        for c in self.classes.iter().filter(|c| c.block_size > smallest && c.block_size <= largest) {
            sum.add(c);
        }
        sum
    }
}

/// One aligned row of the class and tier tables.
fn row(out: &mut Lines, cells: [&dyn core::fmt::Display; 6]) {
    let [a, b, c, d, e, f] = cells;
    out.line(format_args!("{a:>8} {b:>10} {c:>7} {d:>14} {e:>14} {f:>14}"));
}

/// Write the readable statistics table, one line per `emit` call.
pub fn write_table(stats: &StatsSnapshot, census: &Census, emit: &mut dyn FnMut(&[u8])) {
    let mut out = Lines::new(emit);
    out.line(format_args!("hakmem {} statistics", crate::VERSION));
    row(&mut out, [&"class", &"block", &"pages", &"blocks in use", &"bytes in use", &"bytes free"]);
    for (class, c) in census.classes.iter().enumerate().filter(|(_, c)| c.pages > 0) {
        row(&mut out, [&class, &c.block_size, &c.pages, &c.blocks_in_use, &c.bytes_in_use, &c.bytes_free]);
    }
    row(&mut out, [&"tier", &"max block", &"pages", &"blocks in use", &"bytes in use", &"bytes free"]);
    for (tier, (name, largest)) in TIERS.into_iter().enumerate() {
        let t = census.tier(tier);
        row(&mut out, [&name, &largest, &t.pages, &t.blocks_in_use, &t.bytes_in_use, &t.bytes_free]);
    }
    row(&mut out, [&"huge", &"-", &"-", &census.huge_live.0, &census.huge_live.1, &census.huge_cached.1]);
    out.line(format_args!("calls      malloc {}  free {}  cross-thread frees {}  heaps live {}",
        stats.malloc_calls, stats.free_calls, stats.cross_thread_frees, stats.heaps_live));
    out.line(format_args!("caches     huge blocks: {} hits, {} misses, {} cached ({} bytes); segments: {} hits, {} misses, {} cached",
        stats.bigcache_hits,
        stats.bigcache_misses,
        census.huge_cached.0,
        census.huge_cached.1,
        stats.segment_cache_hits,
        stats.segment_cache_misses,
        census.segments_cached));
    out.line(format_args!("segments   {} mapped (peak {}): {} in thread heaps, {} abandoned by exited threads",
        stats.segments_mapped, stats.segments_peak, census.segments_owned, census.segments_abandoned));
    out.line(format_args!("memory     mapped {} (peak {})  resident {} (peak {})  purged {}  unmapped {}",
        stats.bytes_mapped, stats.bytes_mapped_peak, stats.resident_bytes, stats.resident_peak_bytes, stats.purged_bytes, stats.unmapped_bytes));
    out.line(format_args!("reuse      freed pages taken again: {} warm, {} after a purge; purge delay {} ms",
        stats.pages_reused_warm, stats.pages_reused_cold, stats.purge_delay_ms));
    if cfg!(feature = "debug-counters") {
        for group in census.debug.entries().chunks(4) {
            let mut line = MessageBuffer::new();
            for (name, value) in group {
                let _ = write!(line, "  {name} {value}");
            }
            out.line(format_args!("debug    {}", core::str::from_utf8(line.as_bytes()).unwrap_or("")));
        }
    }
}

//! Counters, declared once: the field list in `counters!` below makes the
//! global atomics ([`Stats`]), the C-layout copy ([`StatsSnapshot`], the
//! same as `struct hakmem_stats` in `ffi/include/hakmem.h`, checked by a
//! test) and the `hakmem-stats:` line.
//!
//! Updated on slow paths only; the fast paths count calls in per-heap
//! counters and in the pages (see `Heap::call_counts`), which
//! `Global::stats` adds in. Reading
//! never takes a lock that allocation needs, except the heap pool's to walk
//! the live heaps.

use crate::message::MessageBuffer;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What a mapping holds, for the counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mapping {
    Segment,
    Huge,
    Metadata,
}

/// Declares every counter once, with its documentation.
macro_rules! counters {
    ($( $(#[doc = $doc:literal])+ $name:ident, )+) => {
        /// Global counters, updated outside the fast paths. `malloc_calls`
        /// and `free_calls` here count the calls made without a heap, and
        /// what pages counted before they were folded (`fold_taken`).
        pub struct Stats {
            $( $(#[doc = $doc])+ pub $name: AtomicUsize, )+
        }

        /// A copy of all counters; the layout matches `struct hakmem_stats`
        /// in `hakmem.h`.
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $( $(#[doc = $doc])+ pub $name: usize, )+
        }

        impl Stats {
            pub const fn new() -> Self {
                Stats { $( $name: AtomicUsize::new(0), )+ }
            }

            /// Load every global counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $( $name: self.$name.load(Relaxed), )+ }
            }
        }

        impl StatsSnapshot {
            /// The field names, in layout order.
            pub const FIELD_NAMES: [&'static str; [$(stringify!($name)),+].len()] = [$(stringify!($name)),+];

            /// The field values, in the order of [`Self::FIELD_NAMES`].
            pub fn values(&self) -> [usize; Self::FIELD_NAMES.len()] {
                [$(self.$name),+]
            }
        }
    };
}

counters! {
    /// Allocation calls served (all entry points).
    malloc_calls,
    /// Non-null frees served.
    free_calls,
    /// 2 MiB segments currently mapped.
    segments_mapped,
    /// Most segments mapped at once.
    segments_peak,
    /// Huge blocks currently mapped (live or cached).
    huge_mapped,
    /// Bytes currently mapped from the provider.
    bytes_mapped,
    /// Most bytes mapped at once.
    bytes_mapped_peak,
    /// Size-class pages holding live blocks.
    pages_in_use,
    /// Thread heaps in use.
    heaps_live,
    /// Huge allocations served from the reuse cache.
    bigcache_hits,
    /// Bytes returned to the provider with `purge`.
    purged_bytes,
    /// Bytes of huge mappings (live or cached).
    huge_bytes,
    /// Bytes of size-class pages holding live blocks.
    page_bytes_in_use,
    /// Frees of a block by a thread whose heap does not own it.
    cross_thread_frees,
    /// Huge allocations that had to map afresh.
    bigcache_misses,
    /// Segments taken from the empty-segment cache.
    segment_cache_hits,
    /// Segments that had to be mapped afresh.
    segment_cache_misses,
    /// Bytes given back to the provider with `unmap` (cumulative).
    unmapped_bytes,
    /// Resident memory of the process, as the provider reports it (0: unknown).
    resident_bytes,
    /// Most resident memory of the process so far (0: unknown).
    resident_peak_bytes,
    /// Freed pages taken again while still resident (dirty).
    pages_reused_warm,
    /// Freed pages taken again after they were purged (faulted in again).
    pages_reused_cold,
    /// How long freed pages stay resident now (ms; learned or configured).
    purge_delay_ms,
}

impl Stats {
    /// Fold `taken` pops of a page into the call counters, as mallocs and
    /// as frees: its `used` stays as it is, so its share of the frees
    /// (`taken - used`) drops by as many (see page.rs). Once per segment
    /// that leaves its owner, and per 2^16 pops of a page.
    pub fn fold_taken(&self, taken: usize) {
        if taken != 0 {
            self.malloc_calls.fetch_add(taken, Relaxed);
            self.free_calls.fetch_add(taken, Relaxed);
        }
    }

    /// Count a new mapping of `bytes`.
    pub fn mapped(&self, bytes: usize, what: Mapping) {
        let now = self.bytes_mapped.fetch_add(bytes, Relaxed) + bytes;
        self.bytes_mapped_peak.fetch_max(now, Relaxed);
        match what {
            Mapping::Segment => {
                let segments = self.segments_mapped.fetch_add(1, Relaxed) + 1;
                self.segments_peak.fetch_max(segments, Relaxed);
            }
            Mapping::Huge => {
                self.huge_mapped.fetch_add(1, Relaxed);
                self.huge_bytes.fetch_add(bytes, Relaxed);
            }
            Mapping::Metadata => {}
        }
    }

    /// Count an unmapping of `bytes`.
    pub fn unmapped(&self, bytes: usize, what: Mapping) {
        self.bytes_mapped.fetch_sub(bytes, Relaxed);
        self.unmapped_bytes.fetch_add(bytes, Relaxed);
        match what {
            Mapping::Segment => {
                self.segments_mapped.fetch_sub(1, Relaxed);
            }
            Mapping::Huge => {
                self.huge_mapped.fetch_sub(1, Relaxed);
                self.huge_bytes.fetch_sub(bytes, Relaxed);
            }
            Mapping::Metadata => {}
        }
    }

    /// Count `bytes` of a huge mapping whose pages moved into another one
    /// (`Memory::move_huge_pages`): gone from it, and the whole mapping
    /// gone when `whole`.
    pub fn moved_out(&self, bytes: usize, whole: bool) {
        self.bytes_mapped.fetch_sub(bytes, Relaxed);
        self.huge_bytes.fetch_sub(bytes, Relaxed);
        if whole {
            self.huge_mapped.fetch_sub(1, Relaxed);
        }
    }

    /// Count a size-class page of `page_bytes` taken into use.
    pub fn page_taken(&self, page_bytes: usize) {
        self.pages_in_use.fetch_add(1, Relaxed);
        self.page_bytes_in_use.fetch_add(page_bytes, Relaxed);
    }

    /// Count a size-class page of `page_bytes` given back to its segment.
    pub fn page_returned(&self, page_bytes: usize) {
        self.pages_in_use.fetch_sub(1, Relaxed);
        self.page_bytes_in_use.fetch_sub(page_bytes, Relaxed);
    }
}

/// Debug counters (cargo feature `debug-counters`): the stages of the
/// refill path and of the free pipeline, counted where they happen. Off,
/// [`debug_count!`] expands to nothing, so the default build's code is
/// exactly what it is without them. One set per process (all `Global`s).
macro_rules! debug_counters {
    ($( $(#[doc = $doc:literal])+ $name:ident, )+) => {
        pub struct DebugCounters {
            $( $(#[doc = $doc])+ pub $name: AtomicUsize, )+
        }

        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct DebugSnapshot {
            $( $(#[doc = $doc])+ pub $name: usize, )+
        }

        impl DebugCounters {
            pub const fn new() -> Self {
                DebugCounters { $( $name: AtomicUsize::new(0), )+ }
            }

            pub fn snapshot(&self) -> DebugSnapshot {
                DebugSnapshot { $( $name: self.$name.load(Relaxed), )+ }
            }
        }

        impl Default for DebugCounters {
            fn default() -> Self {
                Self::new()
            }
        }

        impl DebugSnapshot {
            /// (name, value) of every counter, in declaration order.
            pub fn entries(&self) -> [(&'static str, usize); [$(stringify!($name)),+].len()] {
                [$((stringify!($name), self.$name)),+]
            }
        }
    };
}

debug_counters! {
    /// Refills: a class's current page had no block left.
    refills,
    /// Refills served by a page already queued (after collecting its remote frees or carving more).
    refill_queued_pages,
    /// Refills that adopted an abandoned segment.
    refill_adoptions,
    /// Refills that took a fresh page.
    refill_fresh_pages,
    /// Full pages retired to the full queue.
    pages_retired_full,
    /// Frees of the heap's own blocks on the fast path.
    frees_local_fast,
    /// Mid mallocs served by the heap's block cache.
    mallocs_block_cache,
    /// Frees that found their class's block-cache stack full.
    block_cache_overflows,
    /// Frees of the heap's own blocks on the slow path (full pages, aligned blocks).
    frees_local_slow,
    /// Frees of other heaps' blocks gathered per page before the hand-over.
    frees_remote_gathered,
    /// Frees of other heaps' blocks pushed at once.
    frees_remote_pushed,
    /// Hand-overs that went to the owner's delayed list (a full page).
    handovers_delayed,
    /// Frees of blocks of segments whose thread exited.
    frees_abandoned,
    /// Frees of huge blocks.
    frees_huge,
}

/// The process's debug counters (counted only with `debug-counters`).
pub static DEBUG: DebugCounters = DebugCounters::new();

/// Count one event in [`DEBUG`] (nothing without `debug-counters`).
#[cfg(feature = "debug-counters")]
#[macro_export]
macro_rules! debug_count {
    ($name:ident) => {
        $crate::stats::DEBUG.$name.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
    };
}

/// Count one event in [`DEBUG`] (nothing without `debug-counters`).
#[cfg(not(feature = "debug-counters"))]
#[macro_export]
macro_rules! debug_count {
    ($name:ident) => {
        ()
    };
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsSnapshot {
    /// Write `hakmem-stats: key=value ...` (one line) into `out`.
    pub fn write_line(&self, out: &mut MessageBuffer) {
        out.push_str("hakmem-stats:");
        for (name, value) in Self::FIELD_NAMES.into_iter().zip(self.values()) {
            out.push_str(" ").push_str(name).push_str("=").push_decimal(value);
        }
        out.push_str("\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field names of `struct hakmem_stats` in the C header, in order.
    fn header_fields() -> std::vec::Vec<&'static str> {
        let header = include_str!("../../ffi/include/hakmem.h");
        let body = header.split("struct hakmem_stats {").nth(1).expect("struct hakmem_stats in hakmem.h");
        let body = body.split("};").next().unwrap();
        body.lines()
            .map(|line| line.split("/*").next().unwrap().trim())
            .filter(|decl| !decl.is_empty())
            .map(|decl| {
                let decl = decl.strip_suffix(';').unwrap_or_else(|| panic!("unexpected line in hakmem.h: {decl}"));
                let (ty, name) = decl.rsplit_once(' ').unwrap();
                assert_eq!(ty.trim(), "size_t", "field {name} of struct hakmem_stats");
                name
            })
            .collect()
    }

    #[test]
    fn c_header_struct_matches_the_snapshot() {
        assert_eq!(header_fields(), StatsSnapshot::FIELD_NAMES, "hakmem.h and stats.rs disagree");
        assert_eq!(core::mem::size_of::<StatsSnapshot>(), StatsSnapshot::FIELD_NAMES.len() * core::mem::size_of::<usize>());
    }

    #[test]
    fn stats_line_names_every_field_with_its_value() {
        let stats = Stats::new();
        stats.mapped(3 << 21, Mapping::Huge);
        stats.free_calls.fetch_add(7, Relaxed);
        let mut line = MessageBuffer::new();
        stats.snapshot().write_line(&mut line);
        let text = core::str::from_utf8(line.as_bytes()).unwrap();
        let expected = "hakmem-stats: malloc_calls=0 free_calls=7 segments_mapped=0 segments_peak=0 huge_mapped=1 \
                        bytes_mapped=6291456 bytes_mapped_peak=6291456 pages_in_use=0 heaps_live=0 bigcache_hits=0 \
                        purged_bytes=0 huge_bytes=6291456 page_bytes_in_use=0 cross_thread_frees=0 bigcache_misses=0 \
                        segment_cache_hits=0 segment_cache_misses=0 unmapped_bytes=0 resident_bytes=0 resident_peak_bytes=0 \
                        pages_reused_warm=0 pages_reused_cold=0 purge_delay_ms=0\n";
        assert_eq!(text, expected);
    }
}

//! Counters: a few global atomics updated on slow paths only, plus two
//! per-heap call counters (see `Heap`). Reading them never takes a lock
//! that allocation needs, except the heap pool's to walk the live heaps.

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// What a mapping holds, for the counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mapping {
    Segment,
    Huge,
    Metadata,
}

/// Global counters, updated outside the fast paths.
pub struct Stats {
    pub segments_mapped: AtomicUsize,
    pub segments_peak: AtomicUsize,
    pub huge_mapped: AtomicUsize,
    pub bytes_mapped: AtomicUsize,
    pub bytes_mapped_peak: AtomicUsize,
    pub pages_in_use: AtomicUsize,
    pub heaps_live: AtomicUsize,
    pub bigcache_hits: AtomicUsize,
    pub purged_bytes: AtomicUsize,
    /// Frees counted where no heap was at hand (thread without a heap).
    pub free_calls_unowned: AtomicUsize,
    pub huge_bytes: AtomicUsize,
    pub page_bytes_in_use: AtomicUsize,
}

/// A copy of all counters; the layout matches `struct hakmem_stats` in
/// `hakmem.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub malloc_calls: usize,
    pub free_calls: usize,
    pub segments_mapped: usize,
    pub segments_peak: usize,
    pub huge_mapped: usize,
    pub bytes_mapped: usize,
    pub bytes_mapped_peak: usize,
    pub pages_in_use: usize,
    pub heaps_live: usize,
    pub bigcache_hits: usize,
    pub purged_bytes: usize,
    pub huge_bytes: usize,
    pub page_bytes_in_use: usize,
}

impl Stats {
    pub const fn new() -> Self {
        Stats {
            segments_mapped: AtomicUsize::new(0),
            segments_peak: AtomicUsize::new(0),
            huge_mapped: AtomicUsize::new(0),
            bytes_mapped: AtomicUsize::new(0),
            bytes_mapped_peak: AtomicUsize::new(0),
            pages_in_use: AtomicUsize::new(0),
            heaps_live: AtomicUsize::new(0),
            bigcache_hits: AtomicUsize::new(0),
            purged_bytes: AtomicUsize::new(0),
            free_calls_unowned: AtomicUsize::new(0),
            huge_bytes: AtomicUsize::new(0),
            page_bytes_in_use: AtomicUsize::new(0),
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

    /// Fill the global part of a snapshot.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            malloc_calls: 0,
            free_calls: self.free_calls_unowned.load(Relaxed),
            segments_mapped: self.segments_mapped.load(Relaxed),
            segments_peak: self.segments_peak.load(Relaxed),
            huge_mapped: self.huge_mapped.load(Relaxed),
            bytes_mapped: self.bytes_mapped.load(Relaxed),
            bytes_mapped_peak: self.bytes_mapped_peak.load(Relaxed),
            pages_in_use: self.pages_in_use.load(Relaxed),
            heaps_live: self.heaps_live.load(Relaxed),
            bigcache_hits: self.bigcache_hits.load(Relaxed),
            purged_bytes: self.purged_bytes.load(Relaxed),
            huge_bytes: self.huge_bytes.load(Relaxed),
            page_bytes_in_use: self.page_bytes_in_use.load(Relaxed),
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl StatsSnapshot {
    /// Write `hakmem-stats: key=value ...` (one line) into `out`.
    pub fn write_line(&self, out: &mut crate::message::MessageBuffer) {
        let fields: [(&str, usize); 13] = [
            ("malloc_calls", self.malloc_calls),
            ("free_calls", self.free_calls),
            ("segments_mapped", self.segments_mapped),
            ("segments_peak", self.segments_peak),
            ("huge_mapped", self.huge_mapped),
            ("bytes_mapped", self.bytes_mapped),
            ("bytes_mapped_peak", self.bytes_mapped_peak),
            ("pages_in_use", self.pages_in_use),
            ("heaps_live", self.heaps_live),
            ("bigcache_hits", self.bigcache_hits),
            ("purged_bytes", self.purged_bytes),
            ("huge_bytes", self.huge_bytes),
            ("page_bytes_in_use", self.page_bytes_in_use),
        ];
        out.push_str("hakmem-stats:");
        for (name, value) in fields {
            out.push_str(" ");
            out.push_str(name);
            out.push_str("=");
            out.push_decimal(value);
        }
        out.push_str("\n");
    }
}

//! When a heap gives freed page memory back: the purge policy.
//!
//! Freed pages stay resident ("dirty") so that the next page taken reuses
//! them without faults. A heap purges all its dirty pages (and releases
//! its empty segments) when the first of them has waited
//! `options.purge_delay_ms`, or at once when it holds more than
//! `options.purge_dirty_bytes`. Checked on slow paths only (page release,
//! refill).
//!
//! Invariant: `bytes` is the sum of the page sizes of the dirty bits of the
//! heap's segments (`Segment::dirty`); `deadline_ms == u64::MAX` iff no
//! deadline is running.

use crate::class::PAGED_KINDS;
use crate::config::SEGMENT_SIZE;
use crate::list::List;
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::Segment;
use crate::shared::Shared;
use core::sync::atomic::Ordering;

/// A heap's dirty page bytes and when they are due.
pub struct DirtyPages {
    bytes: usize,
    /// When the current dirty pages are due for purging (`u64::MAX`: none).
    deadline_ms: u64,
}

impl DirtyPages {
    pub const fn new() -> Self {
        DirtyPages { bytes: 0, deadline_ms: u64::MAX }
    }

    /// Pages of `bytes` became dirty (freed, or adopted dirty).
    pub fn released(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    /// Forget every dirty page: the heap handed its segments over.
    pub fn hand_over(&mut self) {
        *self = Self::new();
    }

    /// A dirty page of `bytes` was taken into use again.
    pub fn reused(&mut self, bytes: usize) {
        self.bytes -= bytes;
    }

    /// Whether the dirty pages should be purged now; starts the delay at
    /// the first call after pages became dirty.
    pub fn is_due<P: PageProvider>(&mut self, memory: &Memory<P>) -> bool {
        if self.bytes == 0 {
            return false;
        }
        let options = &memory.options;
        let now = memory.now_ms();
        if self.deadline_ms == u64::MAX {
            self.deadline_ms = now.saturating_add(options.purge_delay_ms.load(Ordering::Relaxed) as u64);
        }
        // Without a clock (now == 0) only a zero delay is ever due.
        let due = now >= self.deadline_ms && (now != 0 || self.deadline_ms == 0);
        due || self.bytes > options.purge_dirty_bytes.load(Ordering::Relaxed)
    }

    /// Purge the dirty pages of `segments` and release the empty ones.
    /// Returns bytes released.
    pub fn purge<P: PageProvider>(&mut self, segments: &mut [List<Segment>; PAGED_KINDS], shared: &Shared<P>) -> usize {
        let mut purged = 0;
        for list in segments.iter_mut() {
            let mut segment = list.first;
            while !segment.is_null() {
                // SAFETY: the heap's segments are live and its own.
                unsafe {
                    let next = (*segment).next;
                    let purged_pages = Segment::purge_dirty_pages(segment, &shared.memory);
                    if (*segment).used_pages == 0 {
                        list.remove(segment);
                        shared.segments.free(&shared.memory, segment);
                        purged += SEGMENT_SIZE;
                    } else {
                        purged += purged_pages;
                    }
                    segment = next;
                }
            }
        }
        self.bytes = 0;
        self.deadline_ms = u64::MAX;
        purged
    }
}

impl Default for DirtyPages {
    fn default() -> Self {
        Self::new()
    }
}

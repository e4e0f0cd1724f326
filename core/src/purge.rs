//! When a heap gives freed page memory back: the purge policy.
//!
//! Freed pages stay resident ("dirty") so that the next page taken reuses
//! them without faults. When the oldest of a heap's dirty pages has waited
//! the purge delay (`Memory::purge_delay_ms`: learned, learn.rs, or
//! `options.purge_delay_ms`), the heap purges every page that has waited
//! that long, each by its own release time, and releases its segments left
//! empty and clean; over the dirty-byte cap (learned, or
//! `options.purge_dirty_bytes`) it purges them all at once. Checked on
//! slow paths only (page release, refill). An owner back from a pause
//! longer than the delay puts the purge off; back late again, it purges
//! only the pages its last burst left unused (`DirtyPages::is_due`).
//!
//! Invariant: `bytes` is the sum of the page sizes of the dirty bits of the
//! heap's segments (`Segment::dirty`); `deadline_ms == u64::MAX` iff no
//! deadline is running.

use crate::class::PAGED_KINDS;
use crate::list::List;
use crate::memory::Memory;
use crate::provider::PageProvider;
use crate::segment::Segment;
use crate::shared::Shared;
use core::sync::atomic::Ordering;

/// Which dirty pages a purge takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PurgeScope {
    /// Those that have waited the delay (all of them over the dirty-byte
    /// cap); segments left empty and clean are released.
    Due,
    /// All of them (trim); empty segments are released.
    All,
    /// As `Due`, from a thread that does not own the heap (the idle
    /// purger): every segment stays listed.
    DueInPlace,
}

/// A heap's dirty page bytes and when they are due.
pub struct DirtyPages {
    bytes: usize,
    /// When the current dirty pages are due for purging (`u64::MAX`: none).
    deadline_ms: u64,
    /// When the owner came back from a pause and put the purge off
    /// (`u64::MAX`: not since the last purge).
    woke_ms: u64,
    /// The newest release time the next purge takes, below the delay's
    /// (`u64::MAX`: the delay's alone): set at a second late wake-up.
    wake_cutoff_ms: u64,
}

impl DirtyPages {
    pub const fn new() -> Self {
        DirtyPages { bytes: 0, deadline_ms: u64::MAX, woke_ms: u64::MAX, wake_cutoff_ms: u64::MAX }
    }

    /// Pages of `bytes` became dirty (freed, or adopted dirty).
    pub fn released(&mut self, bytes: usize) {
        self.bytes += bytes;
    }

    /// Forget every dirty page: the heap handed its segments over.
    pub fn hand_over(&mut self) {
        *self = Self::new();
    }

    /// Dirty page bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A dirty page of `bytes` was taken into use again.
    pub fn reused(&mut self, bytes: usize) {
        self.bytes -= bytes;
    }

    /// Whether some dirty pages should be purged now; starts the delay at
    /// the first call after pages became dirty (the delay in force then
    /// decides: it is chosen before the purge it governs).
    ///
    /// The owner (`by_owner`) that comes back a whole delay after the
    /// deadline was idle meanwhile: the pages were held through the pause
    /// anyway, and purging them as the program wakes up would fault back
    /// what it is about to reuse (a server's next burst). It puts the
    /// purge off by one delay. Back late again, it purges only the pages
    /// freed before the last wake-up that the burst since left unused
    /// (what the burst freed is what the next one reuses), and then puts
    /// the rest off again. The idle purger, which runs during the pause,
    /// never puts off.
    pub fn is_due<P: PageProvider>(&mut self, memory: &Memory<P>, by_owner: bool) -> bool {
        if self.bytes == 0 {
            return false;
        }
        memory.learner.note_dirty(&memory.options, self.bytes);
        if self.over_cap(memory) {
            return true;
        }
        let now = memory.now_ms();
        let delay = memory.purge_delay_ms() as u64;
        if self.deadline_ms == u64::MAX {
            self.deadline_ms = now.saturating_add(delay);
        }
        // Without a clock (now == 0) only a zero delay is ever due.
        let due = now >= self.deadline_ms && (now != 0 || self.deadline_ms == 0);
        if due && by_owner && delay > 0 && now >= self.deadline_ms.saturating_add(delay) {
            if self.woke_ms == u64::MAX {
                self.woke_ms = now;
                self.deadline_ms = now.saturating_add(delay);
                return false;
            }
            self.wake_cutoff_ms = self.woke_ms.saturating_sub(1);
        }
        due
    }

    fn over_cap<P: PageProvider>(&self, memory: &Memory<P>) -> bool {
        self.bytes > memory.learner.dirty_cap(&memory.options, memory.stats.heaps_live.load(Ordering::Relaxed))
    }

    /// Purge the dirty pages of `segments` that `scope` takes and release
    /// the segments left empty and clean (unless in place). The next
    /// deadline is the oldest page left plus the delay. Returns bytes
    /// released.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn purge<P: PageProvider>(&mut self, segments: &mut [List<Segment>; PAGED_KINDS], shared: &Shared<P>, scope: PurgeScope) -> usize {
        let memory = &shared.memory;
        let delay = memory.purge_delay_ms() as u64;
        let over_cap = self.over_cap(memory);
        if over_cap {
            memory.learner.cap_purged(&memory.options);
        }
        let cutoff = if scope == PurgeScope::All || over_cap {
            u64::MAX
        } else {
            memory.now_ms().saturating_sub(delay).min(self.wake_cutoff_ms)
        };
        let (mut released, mut left, mut oldest_left) = (0, 0, u64::MAX);
        for list in segments.iter_mut() {
            let mut segment = list.first;
            while !segment.is_null() {
                // SAFETY: the heap's segments are live and its own.
                unsafe {
                    let next = (*segment).next;
                    let (purged, oldest) = Segment::purge_pages_dirty_since(segment, memory, cutoff);
                    if (*segment).used_pages == 0 && (*segment).dirty == 0 && scope != PurgeScope::DueInPlace {
                        list.remove(segment);
                        released += (*segment).map_size;
                        shared.segments.free(memory, segment);
                    } else {
                        released += purged;
                        left += Segment::dirty_bytes(segment);
                        oldest_left = oldest_left.min(oldest);
                    }
                    segment = next;
                }
            }
        }
        self.bytes = left;
        self.deadline_ms = if left == 0 { u64::MAX } else { oldest_left.saturating_add(delay) };
        (self.woke_ms, self.wake_cutoff_ms) = (u64::MAX, u64::MAX);
        released
    }
}

impl Default for DirtyPages {
    fn default() -> Self {
        Self::new()
    }
}

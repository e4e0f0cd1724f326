//! Learned cache capacities: how many empty segments the segment store
//! keeps mapped, and how many bytes of freed huge blocks BigCache keeps
//! resident, each moved toward a target hit rate within a memory budget
//! (the original hakmem's CAP learner); and BigCache's fit tolerance (the
//! original's W_MAX: how much larger than a request a warm mapping may be
//! and serve it as it is), moved the same way: a lookup that a warm
//! mapping within the tolerance served is a hit, one that only a wider
//! tolerance would have served counts as an eviction, and the slack of the
//! mappings served is what it holds. Over a provider that splits or
//! resizes mappings no lookup is of the second kind (a larger warm one is
//! split or resized instead), so it stays at the configured one there.
//!
//! ```text
//!  lookup (hit | miss) ---------> window: hits, misses    (WINDOW_LOOKUPS)
//!  evicted (over the capacity) -> window: evictions
//!  held (the cache's fill) -----> window: peak
//!  window closed: hit rate under TARGET_HIT and something was evicted
//!                   -> capacity x2 at once (up to max)
//!                 DWELL_DOWN windows in a row with the peak under half
//!                   -> capacity / 2 (down to the configured one)
//! ```
//!
//! A miss counts against the capacity only in a window where the cache
//! had to evict: misses with nothing evicted are first uses (nothing was
//! there to keep), and a bigger cache would not have served them. The
//! capacity starts at the configured one (`HAKMEM_SEGMENT_CACHE`,
//! `HAKMEM_BIGCACHE_MAX`), which is also its floor; its ceiling is a fixed
//! multiple of it (the budget). The dwell times (up at once, down after
//! eight windows) and the dead band (only a peak under half lets it
//! down) keep a stationary program from oscillating.
//!
//! Modes as the purge learner's (`Options::learn`): off (the configured
//! capacity, nothing observed), on, frozen (observed; the configured one
//! stays in force, [`CapacityLearner::learned`] says what learning would
//! use). Runs on slow paths only (a segment or huge block taken, freed,
//! evicted); a window is closed by the thread whose lookup completes it,
//! under a try-lock, so the result depends on the events alone.
//!
//! Invariant: `configured <= capacity <= configured x max_factor` once
//! learning has changed it (0 before: the configured one stands).

use crate::config::{Options, LEARN_OFF, LEARN_ON};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Lookups per window: enough to tell a hit rate, few enough to follow a
/// phase.
pub const WINDOW_LOOKUPS: u32 = 32;
/// The hit rate (in 1/256) under which a window that evicted wants more.
const TARGET_HIT: u32 = 230; // 90 %
/// Windows in a row with the peak under half the capacity before it halves.
const DWELL_DOWN: u8 = 8;
/// Ceilings, in configured capacities: 128 empty segments by default (256
/// MiB of address space; their dirty pages stay under the store's
/// dirty-byte cap), 1 GiB of warm huge blocks (what BigCache may keep
/// mapped at all, `BIGCACHE_MAPPED_BYTES`).
pub const SEGMENT_CACHE_MAX_FACTOR: usize = 8;
pub const BIGCACHE_MAX_FACTOR: usize = 4;
/// BigCache's fit tolerance (W_MAX) widens to at most 4x the configured
/// one (25 %: a mapping twice the request's size serves it as it is).
pub const BIGCACHE_FIT_MAX_FACTOR: usize = 4;

/// One learned capacity (a count or bytes).
pub struct CapacityLearner {
    /// The learned capacity; 0 until learning has moved it.
    capacity: AtomicUsize,
    /// The ceiling, in configured capacities.
    max_factor: usize,
    hits: AtomicU32,
    misses: AtomicU32,
    evictions: AtomicU32,
    /// Most the cache held in this window.
    peak: AtomicUsize,
    closing: AtomicBool,
    /// Windows in a row with the peak under half the capacity.
    quiet: AtomicU8,
    /// Windows closed and capacity changes made (statistics, tests).
    pub windows: AtomicU32,
    pub changes: AtomicU32,
}

impl CapacityLearner {
    pub const fn new(max_factor: usize) -> Self {
        CapacityLearner {
            capacity: AtomicUsize::new(0),
            max_factor,
            hits: AtomicU32::new(0),
            misses: AtomicU32::new(0),
            evictions: AtomicU32::new(0),
            peak: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            quiet: AtomicU8::new(0),
            windows: AtomicU32::new(0),
            changes: AtomicU32::new(0),
        }
    }

    /// The capacity in force: the learned one when learning is on, else
    /// `configured`.
    #[inline]
    pub fn capacity(&self, options: &Options, configured: usize) -> usize {
        if options.learn.load(Ordering::Relaxed) == LEARN_ON {
            self.learned(configured)
        } else {
            configured
        }
    }

    /// The learned capacity (what learning uses, or would: frozen).
    pub fn learned(&self, configured: usize) -> usize {
        match self.capacity.load(Ordering::Relaxed) {
            0 => configured,
            learned => learned,
        }
    }

    /// A lookup: served from the cache (`hit`) or not.
    #[cfg_attr(target_os = "linux", link_section = ".text.hakmem.hot")]
    pub fn lookup(&self, options: &Options, configured: usize, hit: bool) {
        if options.learn.load(Ordering::Relaxed) == LEARN_OFF {
            return;
        }
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        let lookups = self.hits.load(Ordering::Relaxed) + self.misses.load(Ordering::Relaxed);
        if lookups >= WINDOW_LOOKUPS && self.closing.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            if self.hits.load(Ordering::Relaxed) + self.misses.load(Ordering::Relaxed) >= WINDOW_LOOKUPS {
                self.close_window(configured);
            }
            self.closing.store(false, Ordering::Release);
        }
    }

    /// Something was dropped from the cache because it was full.
    pub fn evicted(&self, options: &Options) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The cache holds `held` (segments or bytes) now.
    pub fn held(&self, options: &Options, held: usize) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF && held > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(held, Ordering::Relaxed);
        }
    }

    fn close_window(&self, configured: usize) {
        let hits = self.hits.swap(0, Ordering::Relaxed);
        let misses = self.misses.swap(0, Ordering::Relaxed);
        let evictions = self.evictions.swap(0, Ordering::Relaxed);
        let peak = self.peak.swap(0, Ordering::Relaxed);
        self.windows.fetch_add(1, Ordering::Relaxed);
        let capacity = self.learned(configured);
        let lookups = (hits + misses) as u64;
        if evictions > 0 && (hits as u64) * 256 < lookups * TARGET_HIT as u64 {
            self.quiet.store(0, Ordering::Relaxed);
            let up = capacity.saturating_mul(2).min(configured.saturating_mul(self.max_factor)).max(configured);
            if up != capacity {
                self.capacity.store(up, Ordering::Relaxed);
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
        } else if peak < capacity / 2 && capacity > configured {
            let quiet = self.quiet.load(Ordering::Relaxed) + 1;
            if quiet >= DWELL_DOWN {
                self.capacity.store((capacity / 2).max(configured), Ordering::Relaxed);
                self.changes.fetch_add(1, Ordering::Relaxed);
                self.quiet.store(0, Ordering::Relaxed);
            } else {
                self.quiet.store(quiet, Ordering::Relaxed);
            }
        } else {
            self.quiet.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LEARN_FROZEN;

    const CONFIGURED: usize = 16;

    fn options(mode: u8) -> Options {
        let options = Options::new();
        options.learn.store(mode, Ordering::Relaxed);
        options
    }

    /// One window: `hits` of WINDOW_LOOKUPS lookups hit, `evictions`
    /// evictions, the cache holding up to `held`. Returns the capacity.
    fn window(l: &CapacityLearner, o: &Options, hits: u32, evictions: u32, held: usize) -> usize {
        for _ in 0..evictions {
            l.evicted(o);
        }
        l.held(o, held);
        for i in 0..WINDOW_LOOKUPS {
            l.lookup(o, CONFIGURED, i < hits);
        }
        l.capacity(o, CONFIGURED)
    }

    #[test]
    fn misses_while_evicting_double_the_capacity_up_to_its_ceiling() {
        let (l, o) = (CapacityLearner::new(8), options(LEARN_ON));
        assert_eq!(l.capacity(&o, CONFIGURED), CONFIGURED, "it starts at the configured capacity");
        let caps: std::vec::Vec<usize> = (0..6).map(|_| window(&l, &o, 8, 4, CONFIGURED)).collect();
        assert_eq!(caps, [32, 64, 128, 128, 128, 128], "x2 a window, bounded by 8x");
    }

    #[test]
    fn misses_without_evictions_do_not_move_it() {
        // First uses: nothing was dropped that a bigger cache would keep.
        let (l, o) = (CapacityLearner::new(8), options(LEARN_ON));
        for _ in 0..20 {
            assert_eq!(window(&l, &o, 0, 0, CONFIGURED), CONFIGURED);
        }
        assert_eq!(l.windows.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_stationary_trace_settles_and_does_not_oscillate() {
        // Needs 40 entries: under 90% hits while it evicts, then full hits
        // with the cache holding 40 of its capacity.
        let (l, o) = (CapacityLearner::new(8), options(LEARN_ON));
        let mut caps = std::vec::Vec::new();
        for _ in 0..40 {
            let capacity = l.capacity(&o, CONFIGURED);
            let (hits, evictions) = if capacity < 40 { (16, 8) } else { (WINDOW_LOOKUPS, 0) };
            caps.push(window(&l, &o, hits, evictions, capacity.min(40)));
        }
        assert_eq!(&caps[..2], [32, 64]);
        assert!(caps[2..].iter().all(|&c| c == 64), "{caps:?}");
        assert_eq!(l.changes.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_unused_capacity_comes_down_to_the_configured_one_slowly() {
        let (l, o) = (CapacityLearner::new(8), options(LEARN_ON));
        for _ in 0..3 {
            window(&l, &o, 0, 1, CONFIGURED);
        }
        assert_eq!(l.capacity(&o, CONFIGURED), 128);
        // The cache holds 4: seven quiet windows are not enough, the eighth halves it.
        let caps: std::vec::Vec<usize> = (0..8).map(|_| window(&l, &o, WINDOW_LOOKUPS, 0, 4)).collect();
        assert_eq!(caps, [128, 128, 128, 128, 128, 128, 128, 64]);
        for _ in 0..100 {
            window(&l, &o, WINDOW_LOOKUPS, 0, 4);
        }
        assert_eq!(l.capacity(&o, CONFIGURED), CONFIGURED, "never below the configured one");
    }

    #[test]
    fn frozen_observes_without_applying_and_off_observes_nothing() {
        let (l, o) = (CapacityLearner::new(8), options(LEARN_FROZEN));
        window(&l, &o, 0, 4, CONFIGURED);
        assert_eq!(l.capacity(&o, CONFIGURED), CONFIGURED, "frozen keeps the configured capacity");
        assert_eq!(l.learned(CONFIGURED), 32, "and says what it would use");
        let (l, o) = (CapacityLearner::new(8), options(LEARN_OFF));
        window(&l, &o, 0, 4, CONFIGURED);
        assert_eq!((l.learned(CONFIGURED), l.windows.load(Ordering::Relaxed)), (CONFIGURED, 0));
    }
}

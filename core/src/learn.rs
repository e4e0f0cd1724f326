//! The learned purge policy: how long freed pages stay resident, chosen
//! from how long the program takes to reuse them, and how many dirty
//! bytes a heap may hold before it purges them all (the cap).
//!
//! ```text
//!  release_page ----------------------------> released += 1
//!  take_page of a page freed d ms ago ------> reuse distance d (log2 bucket),
//!    (dirty: warm; purged since: cold)          whether it was warm or cold
//!  every WINDOW_REUSES reuses: propose the delay that keeps TARGET of them
//!  (by bytes) warm; every RARE_WINDOW_RELEASES releases with few reuses: the floor
//!  (freed pages rarely come back);
//!  apply it at once when it is higher, after 16 agreeing windows when it
//!  is at least 2 buckets lower -> delay_ms, read when a deadline is set
//!  cap: a cold reuse sooner than the delay was purged early (over the
//!  cap, when the cap purged in that window): over 2% of a window's
//!  reuses -> cap x2 at once (from 4x the configured one, up to 16x);
//!  for 8 windows none, and no heap holding a quarter of the cap dirty
//!  -> cap / 2 (down to the configured one); in force, within a budget
//!  of 4 configured caps shared by the live heaps
//! ```
//!
//! The distance is measured from each page's own release to its reuse, so
//! it is the same whatever the current delay: a purged page that comes back
//! says how much longer it should have stayed. Pages reused by another heap
//! (a cached segment) count too; a segment given back to the provider in
//! between is a fresh mapping and tells nothing.
//!
//! The learned delay governs live heaps' pages and the huge-block cache;
//! the segment store (exited threads' segments, empty ones) takes it only
//! up to the configured delay (`Memory::store_purge_delay_ms`). The
//! learned cap governs live heaps only and stays within a process-wide
//! budget; the store keeps the configured cap. Both so that thread churn
//! does not hold much more than with learning off: what waits in the
//! store belongs to no thread, and short-lived threads that each left
//! their segments there kept nearly all of them resident under the learned
//! delay.
//!
//! A window right after the delay went up may count cold reuses purged
//! under the shorter delay as early (the cap then doubles once more than
//! needed: memory it may hold, not faults).
//!
//! Modes (`config::LEARN_*`, in `Options::learn`): off (the options'
//! values, nothing observed), on (observed and applied), frozen
//! (observed, not applied: the options' values stay, and
//! [`PurgeLearner::proposed_ms`] and the learned cap say what learning
//! would have chosen, to be pasted back as fixed settings).
//!
//! Everything here runs on slow paths (a page taken or released); a window
//! is closed by the thread whose event completes it, under a try-lock, so
//! the result depends on the sequence of events alone (deterministic
//! under a test clock).
//!
//! Invariants: `LEARN_DELAY_MIN_MS <= delay_ms <= LEARN_DELAY_MAX_MS` once
//! learning has changed it; `configured <= cap_bytes <= 16 x configured`
//! once it has changed that; `proposed_ms` is the last window's proposal.

use crate::config::{Options, LEARN_OFF, LEARN_ON};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};

/// Bounds of the learned delay (ms): a page is never kept longer than a
/// second for reuse (the BigCache's warm limit), and at least 1 ms.
pub const LEARN_DELAY_MIN_MS: usize = 1;
pub const LEARN_DELAY_MAX_MS: usize = 1024;
/// Reuses per window: enough for a stable quantile, few enough that a
/// program is followed within a burst or two. Counted in reuses, not in
/// events: a phase that only frees (a cache flushed) says nothing yet.
/// Windows and releases count pages; the distances within a window are
/// weighed by bytes, in units of `PAGE_UNIT` (a small page 1, a medium one
/// 8, a large one 32): a cold page costs faults in proportion to its size.
pub const WINDOW_REUSES: u32 = 64;
pub const PAGE_UNIT: usize = 64 << 10;
/// Releases that close a window with fewer than `WINDOW_REUSES` reuses: so
/// many pages freed and few back is a pattern, not a phase.
pub const RARE_WINDOW_RELEASES: u32 = 1024;
/// Fraction of reuses (in 1/256) the delay should find warm.
const TARGET_WARM: u32 = 251; // 98 %: a cold reuse costs faults, time
/// Below this many reuses per release (in 1/256), freed pages rarely come
/// back: keep them no longer than the floor.
const RARE_REUSE: u32 = 32; // 1 in 8
/// Windows in a row whose proposals must agree before the delay moves: up
/// at once (pages purged too soon fault again, which costs time), down
/// only after sixteen (holding them costs memory only meanwhile). Four
/// were too few for short-lived threads that take over each other's
/// pages: most reuses come at once, and the few a few milliseconds later
/// come every 1-10 windows; the delay fell to the floor between them, and
/// each of them found its pages purged (the Rust `thread-strings` shape
/// faulted 4x as often as under the fixed 10 ms).
const DWELL_UP: u8 = 1;
const DWELL_DOWN: u8 = 16;
/// Windows in a row with many early purges before the cap goes up (as
/// the delay: at once).
const CAP_DWELL_UP: u8 = 1;
/// The learned dirty-byte cap goes up to this many times the configured one.
pub const LEARN_CAP_MAX_FACTOR: usize = 16;
/// The memory budget that bounds it: all live heaps together hold at most
/// this many configured caps dirty (a heap never less than one).
pub const LEARN_DIRTY_BUDGET_FACTOR: usize = 4;
/// The learned cap starts at the budget, in configured caps.
pub const LEARN_CAP_START_FACTOR: usize = LEARN_DIRTY_BUDGET_FACTOR;
/// Windows without an early purge before the cap comes down a step.
const CAP_DWELL_DOWN: u8 = 8;

/// Reuse distances in power-of-two buckets of milliseconds: bucket 0 is
/// below 1 ms, bucket `b` is `[2^(b-1), 2^b)`, the last one everything
/// from `LEARN_DELAY_MAX_MS` on (not worth keeping a page for).
const BUCKETS: usize = 12;
static_assertions::const_assert_eq!(1usize << (BUCKETS - 2), LEARN_DELAY_MAX_MS);

fn bucket_of(distance_ms: u64) -> usize {
    ((u64::BITS - distance_ms.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// The delay that keeps a reuse of bucket `b` warm: its upper bound.
fn bucket_delay(bucket: usize) -> usize {
    (1usize << bucket).clamp(LEARN_DELAY_MIN_MS, LEARN_DELAY_MAX_MS)
}

/// The purge learner of one allocator instance: delay and dirty-byte cap.
pub struct PurgeLearner {
    /// The learned delay; 0 until learning has moved it (then the
    /// configured one stands: learning starts from it).
    delay_ms: AtomicUsize,
    /// The last window's proposal (0: none yet).
    proposed_ms: AtomicUsize,
    reuses: [AtomicU32; BUCKETS],
    window_reuses: AtomicU32,
    /// Cold reuses sooner than the delay in force: purged early.
    early_reuses: AtomicU32,
    released: AtomicU32,
    closing: AtomicBool,
    /// Direction and count of agreeing proposals (closing thread only).
    streak: AtomicU8,
    streak_up: AtomicBool,
    /// The least (up) or largest (down) proposal of the streak.
    streak_ms: AtomicUsize,
    /// The learned dirty-byte cap (0: `LEARN_CAP_START_FACTOR` configured
    /// caps stand).
    cap_bytes: AtomicUsize,
    /// Most dirty bytes a heap held in this window.
    peak_dirty: AtomicUsize,
    /// Purges the cap forced in this window (early colds count against
    /// the cap only when it purged something).
    cap_purges: AtomicU32,
    /// Windows in a row with many (up) or no (down) early purges.
    cap_streak_up: AtomicU8,
    cap_streak_down: AtomicU8,
    /// Windows closed, and delay changes made (statistics, tests).
    pub windows: AtomicU32,
    pub changes: AtomicU32,
}

impl PurgeLearner {
    pub const fn new() -> Self {
        PurgeLearner {
            delay_ms: AtomicUsize::new(0),
            proposed_ms: AtomicUsize::new(0),
            reuses: [const { AtomicU32::new(0) }; BUCKETS],
            window_reuses: AtomicU32::new(0),
            early_reuses: AtomicU32::new(0),
            released: AtomicU32::new(0),
            closing: AtomicBool::new(false),
            streak: AtomicU8::new(0),
            streak_up: AtomicBool::new(false),
            streak_ms: AtomicUsize::new(0),
            cap_bytes: AtomicUsize::new(0),
            peak_dirty: AtomicUsize::new(0),
            cap_purges: AtomicU32::new(0),
            cap_streak_up: AtomicU8::new(0),
            cap_streak_down: AtomicU8::new(0),
            windows: AtomicU32::new(0),
            changes: AtomicU32::new(0),
        }
    }

    /// The delay to use now: the learned one when learning is on, else
    /// the configured one.
    #[inline]
    pub fn delay_ms(&self, options: &Options) -> usize {
        if options.learn.load(Ordering::Relaxed) == LEARN_ON {
            self.learned_delay_ms(options)
        } else {
            options.purge_delay_ms.load(Ordering::Relaxed)
        }
    }

    /// The dirty bytes a heap may hold before it purges them all, with
    /// `heaps` heaps live: the learned cap when learning is on (within the
    /// process's budget), else the configured one.
    #[inline]
    pub fn dirty_cap(&self, options: &Options, heaps: usize) -> usize {
        let configured = options.purge_dirty_bytes.load(Ordering::Relaxed);
        if options.learn.load(Ordering::Relaxed) == LEARN_ON {
            let budget = configured.saturating_mul(LEARN_DIRTY_BUDGET_FACTOR) / heaps.max(1);
            self.learned_cap(options).min(budget).max(configured)
        } else {
            configured
        }
    }

    /// The learned delay (what learning uses, or would: frozen).
    pub fn learned_delay_ms(&self, options: &Options) -> usize {
        match self.delay_ms.load(Ordering::Relaxed) {
            0 => options.purge_delay_ms.load(Ordering::Relaxed).clamp(LEARN_DELAY_MIN_MS, LEARN_DELAY_MAX_MS),
            ms => ms,
        }
    }

    /// The learned cap (what learning uses, or would: frozen).
    pub fn learned_cap(&self, options: &Options) -> usize {
        match self.cap_bytes.load(Ordering::Relaxed) {
            // It starts at the budget (a heap that frees a flushed cache
            // keeps it for the refill; the windows that tell come after).
            0 => options.purge_dirty_bytes.load(Ordering::Relaxed).saturating_mul(LEARN_CAP_START_FACTOR),
            bytes => bytes,
        }
    }

    /// Set the learned delay as if windows had moved it there.
    #[cfg(test)]
    pub(crate) fn set_delay_for_tests(&self, ms: usize) {
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// What the last window proposed (0: no window closed yet): in frozen
    /// mode, the value learning would use.
    pub fn proposed_ms(&self) -> usize {
        self.proposed_ms.load(Ordering::Relaxed)
    }

    /// A page was released (became dirty).
    pub fn page_released(&self, options: &Options) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            let released = self.released.fetch_add(1, Ordering::Relaxed) + 1;
            if released >= RARE_WINDOW_RELEASES {
                self.try_close_window(options);
            }
        }
    }

    /// A heap holds `bytes` dirty (checked against the cap).
    #[inline]
    pub fn note_dirty(&self, options: &Options, bytes: usize) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF && bytes > self.peak_dirty.load(Ordering::Relaxed) {
            self.peak_dirty.fetch_max(bytes, Ordering::Relaxed);
        }
    }

    /// A heap purged all its dirty pages because it held more than the cap.
    pub fn cap_purged(&self, options: &Options) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            self.cap_purges.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A page of `units` (its bytes in `PAGE_UNIT`s) released
    /// `distance_ms` ago was taken again, `warm` (still resident) or purged
    /// in between.
    pub fn page_reused(&self, options: &Options, distance_ms: u64, warm: bool, units: u32) {
        if options.learn.load(Ordering::Relaxed) != LEARN_OFF {
            self.reuses[bucket_of(distance_ms)].fetch_add(units, Ordering::Relaxed);
            if !warm && distance_ms < self.delay_ms(options) as u64 {
                self.early_reuses.fetch_add(units, Ordering::Relaxed);
            }
            if self.window_reuses.fetch_add(1, Ordering::Relaxed) + 1 >= WINDOW_REUSES {
                self.try_close_window(options);
            }
        }
    }

    /// Close the window unless another thread is closing it.
    fn try_close_window(&self, options: &Options) {
        if self.closing.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            if self.window_reuses.load(Ordering::Relaxed) >= WINDOW_REUSES
                || self.released.load(Ordering::Relaxed) >= RARE_WINDOW_RELEASES
            {
                self.close_window(options);
            }
            self.closing.store(false, Ordering::Release);
        }
    }

    /// Read and reset the window's counts, propose a delay, and apply it
    /// once enough windows agree.
    fn close_window(&self, options: &Options) {
        let pages_reused = self.window_reuses.swap(0, Ordering::Relaxed);
        let released = self.released.swap(0, Ordering::Relaxed);
        let early = self.early_reuses.swap(0, Ordering::Relaxed);
        let mut counts = [0u32; BUCKETS];
        for (count, bucket) in counts.iter_mut().zip(&self.reuses) {
            *count = bucket.swap(0, Ordering::Relaxed);
        }
        let reuses: u32 = counts.iter().sum();
        let peak_dirty = self.peak_dirty.swap(0, Ordering::Relaxed);
        let cap_purges = self.cap_purges.swap(0, Ordering::Relaxed);
        self.steer_cap(options, if cap_purges > 0 { early } else { 0 }, reuses, peak_dirty);
        let proposal = if pages_reused as u64 * 256 < released as u64 * RARE_REUSE as u64 {
            LEARN_DELAY_MIN_MS
        } else {
            // The least bucket bound that covers TARGET_WARM of the reuses.
            let mut covered = 0u64;
            let mut bucket = BUCKETS - 1;
            for (b, &count) in counts.iter().enumerate() {
                covered += count as u64;
                if covered * 256 >= reuses as u64 * TARGET_WARM as u64 {
                    bucket = b;
                    break;
                }
            }
            bucket_delay(bucket)
        };
        self.proposed_ms.store(proposal, Ordering::Relaxed);
        self.windows.fetch_add(1, Ordering::Relaxed);
        let current = self.learned_delay_ms(options);
        // Dead band: up by any bucket, down only by two or more.
        let up = proposal > current;
        if !up && proposal * 4 > current {
            self.streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self.streak.load(Ordering::Relaxed);
        let (count, bound) = if streak > 0 && self.streak_up.load(Ordering::Relaxed) == up {
            let bound = self.streak_ms.load(Ordering::Relaxed);
            (streak + 1, if up { bound.min(proposal) } else { bound.max(proposal) })
        } else {
            (1, proposal)
        };
        if count >= if up { DWELL_UP } else { DWELL_DOWN } {
            self.delay_ms.store(bound, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
            self.streak.store(0, Ordering::Relaxed);
        } else {
            self.streak.store(count, Ordering::Relaxed);
            self.streak_up.store(up, Ordering::Relaxed);
            self.streak_ms.store(bound, Ordering::Relaxed);
        }
    }
}

impl PurgeLearner {
    /// The cap controller, once per window: double the cap after a window
    /// where over 2% of the reuses were purged early,
    /// halve it (not below the configured one) after eight with none and
    /// no heap holding a quarter of it dirty (the cap is not what keeps
    /// the pages warm there).
    fn steer_cap(&self, options: &Options, early: u32, reuses: u32, peak_dirty: usize) {
        let configured = options.purge_dirty_bytes.load(Ordering::Relaxed);
        let cap = self.learned_cap(options);
        let (up, down) = (&self.cap_streak_up, &self.cap_streak_down);
        if reuses > 0 && early as u64 * 256 > reuses as u64 * (256 - TARGET_WARM) as u64 {
            down.store(0, Ordering::Relaxed);
            let streak = up.load(Ordering::Relaxed) + 1;
            if streak >= CAP_DWELL_UP {
                self.cap_bytes.store(cap.saturating_mul(2).min(configured.saturating_mul(LEARN_CAP_MAX_FACTOR)), Ordering::Relaxed);
                up.store(0, Ordering::Relaxed);
            } else {
                up.store(streak, Ordering::Relaxed);
            }
        } else if early == 0 && peak_dirty < cap / 4 {
            up.store(0, Ordering::Relaxed);
            let streak = down.load(Ordering::Relaxed) + 1;
            if streak >= CAP_DWELL_DOWN && cap > configured {
                self.cap_bytes.store((cap / 2).max(configured), Ordering::Relaxed);
                down.store(0, Ordering::Relaxed);
            } else {
                down.store(streak.min(CAP_DWELL_DOWN), Ordering::Relaxed);
            }
        } else {
            up.store(0, Ordering::Relaxed);
            down.store(0, Ordering::Relaxed);
        }
    }
}

impl Default for PurgeLearner {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LEARN_FROZEN;

    struct Learner {
        learner: PurgeLearner,
        options: Options,
    }

    impl Learner {
        fn delay_ms(&self) -> usize {
            self.learner.delay_ms(&self.options)
        }
    }

    /// Feed `windows` windows of a trace where every released page comes
    /// back after `distance(i)` ms (one release, one reuse per pair).
    fn run(l: &Learner, windows: u32, mut distance: impl FnMut(u32) -> u64) -> std::vec::Vec<usize> {
        let mut delays = std::vec::Vec::new();
        for i in 0..windows * WINDOW_REUSES {
            l.learner.page_released(&l.options);
            let d = distance(i);
            l.learner.page_reused(&l.options, d, d < l.delay_ms() as u64, 1);
            if (i + 1) % WINDOW_REUSES == 0 {
                delays.push(l.delay_ms());
            }
        }
        delays
    }

    /// A learner in `mode` with the default configured delay (10 ms).
    fn learner(mode: u8) -> Learner {
        let options = Options::new();
        options.learn.store(mode, Ordering::Relaxed);
        assert_eq!(options.purge_delay_ms.load(Ordering::Relaxed), 10);
        Learner { learner: PurgeLearner::new(), options }
    }

    #[test]
    fn converges_to_the_reuse_distance_of_bursts_within_a_few_windows() {
        // Bursts every 350 ms: pages come back 300-400 ms after release.
        let l = learner(LEARN_ON);
        assert_eq!(l.delay_ms(), 10, "it starts from the configured delay");
        let delays = run(&l, 6, |i| 300 + (i as u64 * 7) % 101);
        assert_eq!(delays[0], 512, "the first window moves it up: the bucket bound over 300-400 ms");
        assert!(delays[1..].iter().all(|&d| d == 512), "then it stays: {delays:?}");
        assert_eq!(l.learner.changes.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_stationary_trace_does_not_oscillate() {
        // Distances spread over two buckets (3-12 ms), for 40 windows.
        let l = learner(LEARN_ON);
        let delays = run(&l, 40, |i| 3 + (i as u64 * 7) % 10);
        let changes = l.learner.changes.load(Ordering::Relaxed);
        assert_eq!(changes, 1, "one change (up, at once) on a stationary trace: {delays:?}");
        assert!(delays.iter().all(|&d| d == 16), "{delays:?}");
    }

    #[test]
    fn rare_longer_reuses_between_immediate_ones_keep_the_delay_up() {
        // Short-lived threads taking over each other's pages: every reuse
        // at once, except, every 1 to 10 windows, a window in which an
        // eighth of them come 5-7 ms after release.
        let l = learner(LEARN_ON);
        let mut next_long = 0;
        let delays = run(&l, 200, |i| {
            let w = i / WINDOW_REUSES;
            if w == next_long && i % WINDOW_REUSES < WINDOW_REUSES / 8 {
                if i % WINDOW_REUSES == WINDOW_REUSES / 8 - 1 {
                    next_long = w + 1 + (w * 7) % 10;
                }
                5 + (i as u64 % 3)
            } else {
                0
            }
        });
        // The configured 10 ms covers them (a proposal of 8 is inside the
        // dead band), and the runs of immediate windows between them are
        // too short to take it down.
        assert!(delays.iter().all(|&d| d == 10), "{delays:?}");
        assert_eq!(l.learner.changes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn comes_down_slowly_and_only_by_two_buckets_or_more() {
        let l = learner(LEARN_ON);
        run(&l, 4, |_| 300);
        assert_eq!(l.delay_ms(), 512);
        // One bucket lower (130-250 ms): inside the dead band.
        run(&l, 8, |_| 200);
        assert_eq!(l.delay_ms(), 512);
        // Much lower: fifteen windows are not enough, the sixteenth moves it.
        let delays = run(&l, DWELL_DOWN as u32, |_| 5);
        assert!(delays[..DWELL_DOWN as usize - 1].iter().all(|&d| d == 512), "{delays:?}");
        assert_eq!(delays[DWELL_DOWN as usize - 1], 8);
    }

    #[test]
    fn respects_its_bounds() {
        let l = learner(LEARN_ON);
        run(&l, 4, |_| 60_000);
        assert_eq!(l.delay_ms(), LEARN_DELAY_MAX_MS, "distances past the bound keep the bound");
        let l = learner(LEARN_ON);
        run(&l, DWELL_DOWN as u32, |_| 0);
        assert_eq!(l.delay_ms(), LEARN_DELAY_MIN_MS);
    }

    #[test]
    fn pages_that_never_come_back_are_not_kept() {
        let l = learner(LEARN_ON);
        for _ in 0..DWELL_DOWN as u32 * RARE_WINDOW_RELEASES {
            l.learner.page_released(&l.options);
        }
        assert_eq!(l.delay_ms(), LEARN_DELAY_MIN_MS);
    }

    #[test]
    fn the_cap_doubles_while_pages_are_purged_early_and_comes_back_when_they_are_not() {
        let l = learner(LEARN_ON);
        let configured = l.options.purge_dirty_bytes.load(Ordering::Relaxed);
        let cap = |l: &Learner| l.learner.learned_cap(&l.options);
        let start = LEARN_CAP_START_FACTOR * configured;
        assert_eq!(cap(&l), start, "it starts at the budget");
        // Pages come back cold 3 ms after release, under a 10 ms delay:
        // something purged them early (the cap).
        let early = |l: &Learner, windows: u32| {
            for i in 0..windows * WINDOW_REUSES {
                if i % WINDOW_REUSES == 0 {
                    l.learner.cap_purged(&l.options);
                }
                l.learner.page_released(&l.options);
                l.learner.page_reused(&l.options, 3, false, 1);
            }
        };
        // Early colds with no purge by the cap (a trim, another policy) do
        // not move it.
        for _ in 0..4 * WINDOW_REUSES {
            l.learner.page_released(&l.options);
            l.learner.page_reused(&l.options, 3, false, 1);
        }
        assert_eq!(cap(&l), start);
        early(&l, 1);
        assert_eq!(cap(&l), 2 * start, "one window moves it up");
        early(&l, 40);
        assert_eq!(cap(&l), LEARN_CAP_MAX_FACTOR * configured, "bounded");
        // Warm reuses only: down a step every 8 windows, to the configured cap.
        run(&l, 7, |_| 3);
        assert_eq!(cap(&l), LEARN_CAP_MAX_FACTOR * configured);
        run(&l, 1, |_| 3);
        assert_eq!(cap(&l), LEARN_CAP_MAX_FACTOR / 2 * configured);
        run(&l, 100, |_| 3);
        assert_eq!(cap(&l), configured);
    }

    #[test]
    fn the_cap_in_force_stays_within_the_process_budget() {
        let l = learner(LEARN_ON);
        let configured = l.options.purge_dirty_bytes.load(Ordering::Relaxed);
        for i in 0..40 * WINDOW_REUSES {
            if i % WINDOW_REUSES == 0 {
                l.learner.cap_purged(&l.options);
            }
            l.learner.page_released(&l.options);
            l.learner.page_reused(&l.options, 3, false, 1);
        }
        assert_eq!(l.learner.learned_cap(&l.options), LEARN_CAP_MAX_FACTOR * configured);
        let in_force = |heaps| l.learner.dirty_cap(&l.options, heaps);
        assert_eq!(in_force(1), LEARN_DIRTY_BUDGET_FACTOR * configured, "one heap: the whole budget");
        assert_eq!(in_force(2), LEARN_DIRTY_BUDGET_FACTOR / 2 * configured);
        assert_eq!(in_force(64), configured, "never below the configured cap");
        l.options.learn.store(LEARN_OFF, Ordering::Relaxed);
        assert_eq!(in_force(1), configured, "off: the configured cap");
    }

    #[test]
    fn frozen_observes_without_applying_and_off_observes_nothing() {
        let l = learner(LEARN_FROZEN);
        run(&l, 4, |_| 300);
        assert_eq!(l.delay_ms(), 10, "frozen keeps the configured delay");
        assert_eq!(l.learner.proposed_ms(), 512, "and says what it would have chosen");
        assert_eq!(l.learner.learned_delay_ms(&l.options), 512);
        let l = learner(LEARN_OFF);
        run(&l, 4, |_| 300);
        assert_eq!((l.delay_ms(), l.learner.proposed_ms(), l.learner.windows.load(Ordering::Relaxed)), (10, 0, 0));
    }
}
